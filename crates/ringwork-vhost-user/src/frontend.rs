//! The frontend side of the protocol, message by message: what a VMM
//! sends to a backend. [`Frontend`] is a thin typed client over one
//! socket; it does not own guest memory or queues (callers map memory and
//! run driver queues themselves).
//!
//! Trust and panic contract: replies come from the backend. Each reply's
//! request code, reply flag and payload size are checked; anything else is
//! a [`FrontendError`]. Nothing panics.

use std::io::Read;
use std::os::fd::BorrowedFd;
use std::os::unix::net::UnixStream;
use std::path::Path;

use crate::msg::{self, ConfigAccess, Header, MemRegion, MsgError, Request, VringAddr, VringState};
use crate::sys;

/// Errors of the frontend client.
#[derive(Debug, thiserror::Error)]
pub enum FrontendError {
    /// The socket failed (or the backend closed it).
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
    /// The backend's reply was malformed.
    #[error("bad reply: {0}")]
    Msg(#[from] MsgError),
    /// The backend answered with a different request code.
    #[error("reply to {got} while waiting for {expected}")]
    WrongReply {
        /// Request awaited.
        expected: &'static str,
        /// Request in the reply.
        got: &'static str,
    },
    /// The backend reported failure (REPLY_ACK non-zero, or an empty
    /// GET_CONFIG reply).
    #[error("{0} failed in the backend")]
    Failed(&'static str),
}

/// A vhost-user frontend connection.
#[derive(Debug)]
pub struct Frontend {
    sock: UnixStream,
    reply_ack: bool,
}

impl Frontend {
    /// Connects to a backend listening on `path`.
    pub fn connect(path: &Path) -> Result<Self, FrontendError> {
        Ok(Self::from_stream(UnixStream::connect(path)?))
    }

    /// Uses a connected socket.
    pub fn from_stream(sock: UnixStream) -> Self {
        Self {
            sock,
            reply_ack: false,
        }
    }

    /// The socket.
    pub fn socket(&self) -> &UnixStream {
        &self.sock
    }

    /// Asks for an ack on every later request without its own reply
    /// (after REPLY_ACK was negotiated).
    pub fn set_reply_ack(&mut self, on: bool) {
        self.reply_ack = on;
    }

    /// Sends one raw message (for tests of hostile input too).
    pub fn send_raw(
        &self,
        request: Request,
        flags: u32,
        payload: &[u8],
        fds: &[BorrowedFd<'_>],
    ) -> Result<(), FrontendError> {
        let h = Header {
            request,
            flags: msg::VERSION | flags,
            size: payload.len() as u32,
        };
        let mut b = h.to_bytes().to_vec();
        b.extend_from_slice(payload);
        sys::send_with_fds(&self.sock, &b, fds)?;
        Ok(())
    }

    fn recv_reply(&self, request: Request) -> Result<Vec<u8>, FrontendError> {
        Ok(self.recv_reply_fds(request)?.0)
    }

    fn recv_reply_fds(
        &self,
        request: Request,
    ) -> Result<(Vec<u8>, Vec<std::os::fd::OwnedFd>), FrontendError> {
        let mut hb = [0u8; msg::HEADER_SIZE];
        let mut fds = Vec::new();
        let n = sys::recv_with_fds(&self.sock, &mut hb, &mut fds)?;
        if n < msg::HEADER_SIZE {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "backend closed the connection",
            )
            .into());
        }
        let h = Header::parse(&hb)?;
        if h.request != request || h.flags & msg::FLAG_REPLY == 0 {
            return Err(FrontendError::WrongReply {
                expected: request.name(),
                got: h.request.name(),
            });
        }
        let mut p = vec![0; h.size as usize];
        (&self.sock).read_exact(&mut p)?;
        Ok((p, fds))
    }

    /// A request with its own reply body.
    pub fn call(
        &self,
        request: Request,
        payload: &[u8],
        fds: &[BorrowedFd<'_>],
    ) -> Result<Vec<u8>, FrontendError> {
        self.send_raw(request, 0, payload, fds)?;
        self.recv_reply(request)
    }

    /// A request without a reply body (acknowledged when REPLY_ACK is on).
    pub fn send(
        &self,
        request: Request,
        payload: &[u8],
        fds: &[BorrowedFd<'_>],
    ) -> Result<(), FrontendError> {
        let flags = if self.reply_ack {
            msg::FLAG_NEED_REPLY
        } else {
            0
        };
        self.send_raw(request, flags, payload, fds)?;
        if self.reply_ack {
            let p = self.recv_reply(request)?;
            if msg::parse_u64(request, &p)? != 0 {
                return Err(FrontendError::Failed(request.name()));
            }
        }
        Ok(())
    }

    fn get_u64(&self, request: Request) -> Result<u64, FrontendError> {
        let p = self.call(request, &[], &[])?;
        Ok(msg::parse_u64(request, &p)?)
    }

    /// GET_FEATURES.
    pub fn get_features(&self) -> Result<u64, FrontendError> {
        self.get_u64(Request::GET_FEATURES)
    }

    /// SET_FEATURES.
    pub fn set_features(&self, f: u64) -> Result<(), FrontendError> {
        self.send(Request::SET_FEATURES, &f.to_ne_bytes(), &[])
    }

    /// GET_PROTOCOL_FEATURES.
    pub fn get_protocol_features(&self) -> Result<u64, FrontendError> {
        self.get_u64(Request::GET_PROTOCOL_FEATURES)
    }

    /// SET_PROTOCOL_FEATURES (turns on REPLY_ACK use when included).
    pub fn set_protocol_features(&mut self, f: u64) -> Result<(), FrontendError> {
        self.send(Request::SET_PROTOCOL_FEATURES, &f.to_ne_bytes(), &[])?;
        self.reply_ack = f & (1 << msg::protocol::REPLY_ACK) != 0;
        Ok(())
    }

    /// SET_OWNER.
    pub fn set_owner(&self) -> Result<(), FrontendError> {
        self.send(Request::SET_OWNER, &[], &[])
    }

    /// GET_QUEUE_NUM.
    pub fn get_queue_num(&self) -> Result<u64, FrontendError> {
        self.get_u64(Request::GET_QUEUE_NUM)
    }

    /// SET_MEM_TABLE with one descriptor per region.
    pub fn set_mem_table(
        &self,
        regions: &[MemRegion],
        fds: &[BorrowedFd<'_>],
    ) -> Result<(), FrontendError> {
        let mut p = Vec::with_capacity(8 + 32 * regions.len());
        p.extend_from_slice(&(regions.len() as u32).to_ne_bytes());
        p.extend_from_slice(&0u32.to_ne_bytes());
        for r in regions {
            for v in [r.guest_addr, r.size, r.user_addr, r.mmap_offset] {
                p.extend_from_slice(&v.to_ne_bytes());
            }
        }
        self.send(Request::SET_MEM_TABLE, &p, fds)
    }

    /// ADD_MEM_REG (CONFIGURE_MEM_SLOTS).
    pub fn add_mem_reg(&self, r: &MemRegion, fd: BorrowedFd<'_>) -> Result<(), FrontendError> {
        self.send(Request::ADD_MEM_REG, &single_region(r), &[fd])
    }

    /// REM_MEM_REG (CONFIGURE_MEM_SLOTS).
    pub fn rem_mem_reg(&self, r: &MemRegion) -> Result<(), FrontendError> {
        self.send(Request::REM_MEM_REG, &single_region(r), &[])
    }

    /// GET_MAX_MEM_SLOTS.
    pub fn get_max_mem_slots(&self) -> Result<u64, FrontendError> {
        self.get_u64(Request::GET_MAX_MEM_SLOTS)
    }

    /// SET_VRING_NUM.
    pub fn set_vring_num(&self, index: u32, num: u32) -> Result<(), FrontendError> {
        self.send(
            Request::SET_VRING_NUM,
            &VringState { index, num }.to_bytes(),
            &[],
        )
    }

    /// SET_VRING_BASE.
    pub fn set_vring_base(&self, index: u32, base: u32) -> Result<(), FrontendError> {
        let s = VringState { index, num: base };
        self.send(Request::SET_VRING_BASE, &s.to_bytes(), &[])
    }

    /// SET_VRING_ADDR (addresses in the frontend's address space).
    pub fn set_vring_addr(&self, a: &VringAddr) -> Result<(), FrontendError> {
        let mut p = Vec::with_capacity(40);
        p.extend_from_slice(&a.index.to_ne_bytes());
        p.extend_from_slice(&a.flags.to_ne_bytes());
        for v in [a.desc, a.used, a.avail, a.log] {
            p.extend_from_slice(&v.to_ne_bytes());
        }
        self.send(Request::SET_VRING_ADDR, &p, &[])
    }

    fn vring_fd(
        &self,
        request: Request,
        index: u32,
        fd: Option<BorrowedFd<'_>>,
    ) -> Result<(), FrontendError> {
        let mut v = u64::from(index) & msg::VRING_IDX_MASK;
        let fds: Vec<BorrowedFd<'_>> = fd.into_iter().collect();
        if fds.is_empty() {
            v |= msg::VRING_NOFD_MASK;
        }
        self.send(request, &v.to_ne_bytes(), &fds)
    }

    /// SET_VRING_KICK (`None`: polling).
    pub fn set_vring_kick(
        &self,
        index: u32,
        fd: Option<BorrowedFd<'_>>,
    ) -> Result<(), FrontendError> {
        self.vring_fd(Request::SET_VRING_KICK, index, fd)
    }

    /// SET_VRING_CALL.
    pub fn set_vring_call(
        &self,
        index: u32,
        fd: Option<BorrowedFd<'_>>,
    ) -> Result<(), FrontendError> {
        self.vring_fd(Request::SET_VRING_CALL, index, fd)
    }

    /// SET_VRING_ERR.
    pub fn set_vring_err(
        &self,
        index: u32,
        fd: Option<BorrowedFd<'_>>,
    ) -> Result<(), FrontendError> {
        self.vring_fd(Request::SET_VRING_ERR, index, fd)
    }

    /// SET_VRING_ENABLE.
    pub fn set_vring_enable(&self, index: u32, on: bool) -> Result<(), FrontendError> {
        let s = VringState {
            index,
            num: u32::from(on),
        };
        self.send(Request::SET_VRING_ENABLE, &s.to_bytes(), &[])
    }

    /// GET_VRING_BASE (stops the ring).
    pub fn get_vring_base(&self, index: u32) -> Result<u32, FrontendError> {
        let p = self.call(
            Request::GET_VRING_BASE,
            &VringState { index, num: 0 }.to_bytes(),
            &[],
        )?;
        Ok(VringState::parse(Request::GET_VRING_BASE, &p)?.num)
    }

    /// GET_CONFIG of `size` bytes at `offset`.
    pub fn get_config(&self, offset: u32, size: u32) -> Result<Vec<u8>, FrontendError> {
        let c = ConfigAccess {
            offset,
            size,
            flags: 0,
            data: vec![0; size as usize],
        };
        let p = self.call(Request::GET_CONFIG, &c.to_bytes(), &[])?;
        let r = ConfigAccess::parse(Request::GET_CONFIG, &p)?;
        if r.size == 0 && size != 0 {
            return Err(FrontendError::Failed("GET_CONFIG"));
        }
        Ok(r.data)
    }

    /// SET_CONFIG.
    pub fn set_config(&self, offset: u32, data: &[u8]) -> Result<(), FrontendError> {
        let c = ConfigAccess {
            offset,
            size: data.len() as u32,
            flags: 0,
            data: data.to_vec(),
        };
        self.send(Request::SET_CONFIG, &c.to_bytes(), &[])
    }

    /// SET_STATUS.
    pub fn set_status(&self, status: u8) -> Result<(), FrontendError> {
        self.send(Request::SET_STATUS, &u64::from(status).to_ne_bytes(), &[])
    }

    /// GET_STATUS.
    pub fn get_status(&self) -> Result<u8, FrontendError> {
        Ok(self.get_u64(Request::GET_STATUS)? as u8)
    }

    /// GET_INFLIGHT_FD: the backend's inflight area for `num_queues`
    /// queues of `queue_size`, and its descriptor.
    pub fn get_inflight_fd(
        &self,
        num_queues: u16,
        queue_size: u16,
    ) -> Result<(msg::Inflight, std::os::fd::OwnedFd), FrontendError> {
        let d = msg::Inflight {
            mmap_size: 0,
            mmap_offset: 0,
            num_queues,
            queue_size,
        };
        self.send_raw(Request::GET_INFLIGHT_FD, 0, &d.to_bytes(), &[])?;
        let (p, mut fds) = self.recv_reply_fds(Request::GET_INFLIGHT_FD)?;
        let d = msg::Inflight::parse(Request::GET_INFLIGHT_FD, &p)?;
        let fd = fds
            .pop()
            .ok_or(FrontendError::Failed("GET_INFLIGHT_FD (no fd)"))?;
        Ok((d, fd))
    }

    /// SET_INFLIGHT_FD.
    pub fn set_inflight_fd(
        &self,
        d: &msg::Inflight,
        fd: BorrowedFd<'_>,
    ) -> Result<(), FrontendError> {
        self.send(Request::SET_INFLIGHT_FD, &d.to_bytes(), &[fd])
    }

    /// RESET_DEVICE.
    pub fn reset_device(&self) -> Result<(), FrontendError> {
        self.send(Request::RESET_DEVICE, &[], &[])
    }

    /// SET_BACKEND_REQ_FD: hands the backend its channel to us.
    pub fn set_backend_req_fd(&self, fd: BorrowedFd<'_>) -> Result<(), FrontendError> {
        self.send(Request::SET_BACKEND_REQ_FD, &[], &[fd])
    }
}

fn single_region(r: &MemRegion) -> Vec<u8> {
    let mut p = vec![0u8; 8];
    for v in [r.guest_addr, r.size, r.user_addr, r.mmap_offset] {
        p.extend_from_slice(&v.to_ne_bytes());
    }
    p
}
