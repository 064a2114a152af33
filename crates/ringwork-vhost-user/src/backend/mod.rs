//! One frontend connection: reads requests, keeps the negotiated state,
//! and starts and stops queues on the worker threads.
//!
//! Trust and panic contract: every request is checked (payload size,
//! vring index, ring addresses inside shared memory, sizes, features
//! offered, descriptors present). A request that cannot be honoured but
//! leaves the session sound is answered with a failure (REPLY_ACK) and
//! logged; a malformed message ends the connection with
//! [`BackendError`], after every queue has been stopped. Nothing panics.

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use ringwork_device::model::{Device, DeviceEvents, Notify};
use ringwork_spec::status::VIRTIO_CONFIG_S_NEEDS_RESET as DEVICE_NEEDS_RESET;

use crate::inflight::InflightArea;
use crate::memory::{MemoryError, MemoryTable, MAX_MEM_SLOTS};
use crate::msg::{
    self, backend_req, protocol, ConfigAccess, Header, MemRegion, MsgError, Request, VringAddr,
    VringState,
};
use crate::poll::PollPolicy;
use crate::sys::{self, EventFd};
use crate::worker::Group;

mod vring;
use vring::Vring;

/// Why a connection ended with an error.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// Reading or writing the socket failed.
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
    /// The frontend sent a malformed message.
    #[error("malformed message: {0}")]
    Msg(#[from] MsgError),
    /// The frontend broke the protocol.
    #[error("{request}: {reason}")]
    Protocol {
        /// The offending request.
        request: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// The frontend's memory table was refused.
    #[error("memory table: {0}")]
    Memory(#[from] MemoryError),
}

fn proto(request: Request, reason: impl Into<String>) -> BackendError {
    BackendError::Protocol {
        request: request.name(),
        reason: reason.into(),
    }
}

/// Protocol features this backend offers.
pub fn offered_protocol_features() -> u64 {
    [
        protocol::MQ,
        protocol::REPLY_ACK,
        protocol::BACKEND_REQ,
        protocol::CONFIG,
        protocol::RESET_DEVICE,
        protocol::CONFIGURE_MEM_SLOTS,
        protocol::STATUS,
        protocol::INFLIGHT_SHMFD,
    ]
    .iter()
    .fold(0, |a, b| a | 1 << b)
}

pub(crate) struct CallFd(EventFd);

impl Notify for CallFd {
    fn notify(&self) -> std::io::Result<()> {
        self.0.signal()
    }
}

/// Device events routed to the frontend: config changes over the backend
/// channel, needs-reset through GET_STATUS.
struct Events {
    channel: Mutex<Option<UnixStream>>,
    config_enabled: AtomicBool,
    failed: Arc<AtomicBool>,
}

impl DeviceEvents for Events {
    fn config_changed(&self) {
        if !self.config_enabled.load(Ordering::SeqCst) {
            tracing::debug!("config change not sent: no CONFIG protocol feature");
            return;
        }
        let ch = self.channel.lock().unwrap_or_else(|e| e.into_inner());
        let Some(sock) = ch.as_ref() else {
            tracing::debug!("config change not sent: no backend channel");
            return;
        };
        let h = Header {
            request: Request(backend_req::CONFIG_CHANGE_MSG),
            flags: msg::VERSION,
            size: 0,
        };
        if let Err(e) = sys::send_with_fds(sock, &h.to_bytes(), &[]) {
            tracing::warn!("sending a config change notification failed: {e}");
        }
    }

    fn needs_reset(&self, reason: &str) {
        tracing::error!("device needs reset: {reason}");
        self.failed.store(true, Ordering::SeqCst);
    }
}

/// The state of one frontend session.
pub struct Connection {
    device: Arc<dyn Device>,
    sock: UnixStream,
    features: u64,
    protocol: u64,
    mem: MemoryTable,
    vrings: Vec<Vring>,
    group_of: Vec<usize>,
    group_queues: Vec<Vec<u16>>,
    groups: Vec<Arc<Group>>,
    threads: Vec<JoinHandle<()>>,
    events: Arc<Events>,
    failed: Arc<AtomicBool>,
    status: u8,
    inflight: Option<InflightArea>,
}

impl core::fmt::Debug for Connection {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Connection")
            .field("features", &self.features)
            .field("protocol", &self.protocol)
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// A session serving `device` on `sock`: worker threads are started
    /// now (idle until queues start).
    pub fn new(device: Arc<dyn Device>, sock: UnixStream) -> Result<Self, BackendError> {
        Self::with_poll(device, sock, std::time::Duration::ZERO)
    }

    /// As [`Self::new`], with worker threads that poll their rings for up
    /// to `poll` after processing before they sleep (see
    /// [`Server::set_poll`](crate::Server::set_poll)).
    pub fn with_poll(
        device: Arc<dyn Device>,
        sock: UnixStream,
        poll: std::time::Duration,
    ) -> Result<Self, BackendError> {
        Self::with_poll_policy(device, sock, PollPolicy::fixed(poll))
    }

    /// As [`Self::new`], with worker threads that poll their rings as
    /// `poll` says before they sleep (see [`PollPolicy`]).
    pub fn with_poll_policy(
        device: Arc<dyn Device>,
        sock: UnixStream,
        poll: PollPolicy,
    ) -> Result<Self, BackendError> {
        let n = usize::from(device.num_queues());
        let mut group_queues = device.worker_map();
        // Every queue in exactly one group; others get their own.
        let mut group_of = vec![usize::MAX; n];
        group_queues.retain(|g| !g.is_empty());
        for (gi, g) in group_queues.iter_mut().enumerate() {
            g.retain(|&q| {
                usize::from(q) < n && group_of[usize::from(q)] == usize::MAX && {
                    group_of[usize::from(q)] = gi;
                    true
                }
            });
        }
        for (q, g) in group_of.iter_mut().enumerate() {
            if *g == usize::MAX {
                *g = group_queues.len();
                group_queues.push(vec![q as u16]);
            }
        }
        let failed = Arc::new(AtomicBool::new(false));
        let mem = MemoryTable::default();
        let mut groups = Vec::new();
        let mut threads = Vec::new();
        for gi in 0..group_queues.len() {
            let g = Group::new(mem.memory(), failed.clone(), poll)?;
            threads.push(g.spawn(format!("ringwork-q{gi}"))?);
            groups.push(g);
        }
        Ok(Self {
            events: Arc::new(Events {
                channel: Mutex::new(None),
                config_enabled: AtomicBool::new(false),
                failed: failed.clone(),
            }),
            device,
            sock,
            features: 0,
            protocol: 0,
            mem,
            vrings: (0..n).map(|_| Vring::default()).collect(),
            group_of,
            group_queues,
            groups,
            threads,
            failed,
            status: 0,
            inflight: None,
        })
    }

    /// Serves requests until the frontend disconnects (`Ok`) or breaks
    /// the protocol (`Err`). Every queue is stopped before returning.
    pub fn run(&mut self) -> Result<(), BackendError> {
        let r = self.serve();
        self.stop_all();
        r
    }

    /// The socket (for polling it together with a shutdown signal).
    pub fn socket(&self) -> &UnixStream {
        &self.sock
    }

    fn serve(&mut self) -> Result<(), BackendError> {
        loop {
            if !self.handle_one()? {
                return Ok(());
            }
        }
    }

    /// Reads and handles one request; `false` at end of stream.
    pub fn handle_one(&mut self) -> Result<bool, BackendError> {
        let mut hb = [0u8; msg::HEADER_SIZE];
        let mut fds = Vec::new();
        let n = sys::recv_with_fds(&self.sock, &mut hb, &mut fds)?;
        if n == 0 {
            return Ok(false);
        }
        if n < msg::HEADER_SIZE {
            return Err(MsgError::Invalid("truncated header").into());
        }
        let h = Header::parse(&hb)?;
        let mut payload = vec![0u8; h.size as usize];
        if !payload.is_empty() {
            use std::io::Read;
            (&self.sock).read_exact(&mut payload)?;
        }
        tracing::debug!(
            request = h.request.name(),
            size = h.size,
            fds = fds.len(),
            "request"
        );
        let reply = self.dispatch(h, &payload, fds)?;
        match reply {
            Reply::Payload(p) => self.send_reply(h, &p, &[])?,
            Reply::Sent => {}
            Reply::Ack(ok) => {
                if h.need_reply() && self.has_protocol(protocol::REPLY_ACK) {
                    self.send_reply(h, &u64::from(!ok).to_ne_bytes(), &[])?;
                }
            }
        }
        Ok(true)
    }

    /// Sends the reply to `h` with `payload` and descriptors `fds`.
    fn send_reply(
        &self,
        h: Header,
        payload: &[u8],
        fds: &[std::os::fd::BorrowedFd<'_>],
    ) -> Result<(), BackendError> {
        let rh = Header {
            request: h.request,
            flags: msg::VERSION | msg::FLAG_REPLY,
            size: payload.len() as u32,
        };
        let mut b = Vec::with_capacity(msg::HEADER_SIZE + payload.len());
        b.extend_from_slice(&rh.to_bytes());
        b.extend_from_slice(payload);
        sys::send_with_fds(&self.sock, &b, fds)?;
        Ok(())
    }

    fn has_protocol(&self, bit: u32) -> bool {
        self.protocol & (1 << bit) != 0
    }

    fn protocol_negotiated(&self) -> bool {
        self.features & (1 << msg::F_PROTOCOL_FEATURES) != 0
    }

    fn offered_features(&self) -> u64 {
        self.device.features() | 1 << msg::F_PROTOCOL_FEATURES
    }

    fn vring_index(&self, request: Request, index: u64) -> Result<usize, BackendError> {
        let i = usize::try_from(index).unwrap_or(usize::MAX);
        if i >= self.vrings.len() {
            return Err(proto(
                request,
                format!(
                    "vring {index} out of range (device has {})",
                    self.vrings.len()
                ),
            ));
        }
        Ok(i)
    }

    fn no_fds(request: Request, fds: &[OwnedFd]) -> Result<(), BackendError> {
        if fds.is_empty() {
            Ok(())
        } else {
            Err(proto(request, "unexpected file descriptors"))
        }
    }

    fn one_fd(request: Request, mut fds: Vec<OwnedFd>) -> Result<OwnedFd, BackendError> {
        if fds.len() != 1 {
            return Err(proto(
                request,
                format!("expected one file descriptor, got {}", fds.len()),
            ));
        }
        Ok(fds.pop().expect("length checked"))
    }

    fn dispatch(&mut self, h: Header, p: &[u8], fds: Vec<OwnedFd>) -> Result<Reply, BackendError> {
        let r = h.request;
        match r {
            Request::GET_FEATURES => {
                Self::no_fds(r, &fds)?;
                Ok(Reply::Payload(
                    self.offered_features().to_ne_bytes().to_vec(),
                ))
            }
            Request::SET_FEATURES => {
                Self::no_fds(r, &fds)?;
                let f = msg::parse_u64(r, p)?;
                let extra = f & !self.offered_features();
                if extra != 0 {
                    return Err(proto(r, format!("features {extra:#x} were not offered")));
                }
                if self.vrings.iter().any(|v| v.running) {
                    tracing::warn!("SET_FEATURES while queues run: applies at their next start");
                }
                tracing::debug!("features {f:#x}");
                self.features = f;
                self.device
                    .set_features(f & !(1 << msg::F_PROTOCOL_FEATURES));
                Ok(Reply::Ack(true))
            }
            Request::GET_PROTOCOL_FEATURES => {
                Self::no_fds(r, &fds)?;
                Ok(Reply::Payload(
                    offered_protocol_features().to_ne_bytes().to_vec(),
                ))
            }
            Request::SET_PROTOCOL_FEATURES => {
                Self::no_fds(r, &fds)?;
                let f = msg::parse_u64(r, p)?;
                let extra = f & !offered_protocol_features();
                if extra != 0 {
                    return Err(proto(
                        r,
                        format!("protocol features {extra:#x} were not offered"),
                    ));
                }
                self.protocol = f;
                self.events
                    .config_enabled
                    .store(self.has_protocol(protocol::CONFIG), Ordering::SeqCst);
                Ok(Reply::Ack(true))
            }
            Request::SET_OWNER => {
                Self::no_fds(r, &fds)?;
                Ok(Reply::Ack(true))
            }
            Request::RESET_OWNER | Request::RESET_DEVICE => {
                Self::no_fds(r, &fds)?;
                self.reset();
                Ok(Reply::Ack(true))
            }
            Request::SET_MEM_TABLE => {
                let regions = MemRegion::parse_table(r, p)?;
                for m in &regions {
                    tracing::debug!(
                        "memory region: guest {:#x} size {:#x} user {:#x} offset {:#x}",
                        m.guest_addr,
                        m.size,
                        m.user_addr,
                        m.mmap_offset
                    );
                }
                self.mem.set(regions, fds)?;
                self.memory_changed();
                Ok(Reply::Ack(true))
            }
            Request::GET_MAX_MEM_SLOTS => {
                Self::no_fds(r, &fds)?;
                Ok(Reply::Payload(
                    (MAX_MEM_SLOTS as u64).to_ne_bytes().to_vec(),
                ))
            }
            Request::ADD_MEM_REG => {
                let region = MemRegion::parse_single(r, p)?;
                let fd = Self::one_fd(r, fds)?;
                self.mem.add(region, fd)?;
                self.memory_changed();
                Ok(Reply::Ack(true))
            }
            Request::REM_MEM_REG => {
                let region = MemRegion::parse_single(r, p)?;
                drop(fds); // QEMU sends the region's fd along; close it.
                let found = self.mem.remove(&region)?;
                if !found {
                    tracing::warn!("REM_MEM_REG of an unknown region {region:?}");
                }
                self.memory_changed();
                Ok(Reply::Ack(found))
            }
            Request::SET_VRING_NUM => {
                Self::no_fds(r, &fds)?;
                let s = VringState::parse(r, p)?;
                let i = self.vring_index(r, s.index.into())?;
                let max = u32::from(self.device.max_queue_size());
                if s.num == 0 || s.num > max || s.num > 32768 {
                    return Err(proto(r, format!("queue size {} (max {max})", s.num)));
                }
                self.vrings[i].size = s.num as u16;
                Ok(Reply::Ack(true))
            }
            Request::SET_VRING_ADDR => {
                Self::no_fds(r, &fds)?;
                let a = VringAddr::parse(r, p)?;
                tracing::debug!(?a, "vring addresses");
                let i = self.vring_index(r, a.index.into())?;
                self.vrings[i].addr = Some(a);
                Ok(Reply::Ack(true))
            }
            Request::SET_VRING_BASE => {
                Self::no_fds(r, &fds)?;
                let s = VringState::parse(r, p)?;
                let i = self.vring_index(r, s.index.into())?;
                tracing::debug!("vring {i} base {:#x}", s.num);
                self.vrings[i].base = s.num;
                Ok(Reply::Ack(true))
            }
            Request::GET_VRING_BASE => {
                Self::no_fds(r, &fds)?;
                let s = VringState::parse(r, p)?;
                let i = self.vring_index(r, s.index.into())?;
                let base = self.stop_vring(i);
                Ok(Reply::Payload(
                    VringState {
                        index: s.index,
                        num: base,
                    }
                    .to_bytes()
                    .to_vec(),
                ))
            }
            Request::SET_VRING_KICK | Request::SET_VRING_CALL | Request::SET_VRING_ERR => {
                let v = msg::parse_u64(r, p)?;
                let i = self.vring_index(r, v & msg::VRING_IDX_MASK)?;
                if v & !(msg::VRING_IDX_MASK | msg::VRING_NOFD_MASK) != 0 {
                    return Err(proto(r, format!("reserved bits set in {v:#x}")));
                }
                let fd = if v & msg::VRING_NOFD_MASK != 0 {
                    Self::no_fds(r, &fds)?;
                    None
                } else {
                    let fd = Self::one_fd(r, fds)?;
                    sys::set_nonblocking(std::os::fd::AsFd::as_fd(&fd))?;
                    Some(EventFd::from_owned(fd))
                };
                self.set_vring_fd(r, i, fd)?;
                Ok(Reply::Ack(true))
            }
            Request::SET_VRING_ENABLE => {
                Self::no_fds(r, &fds)?;
                let s = VringState::parse(r, p)?;
                let i = self.vring_index(r, s.index.into())?;
                if s.num > 1 {
                    return Err(proto(r, format!("enable value {}", s.num)));
                }
                self.vrings[i].enabled = s.num == 1;
                self.update_running(i)?;
                Ok(Reply::Ack(true))
            }
            // An in-band kick belongs to INBAND_NOTIFICATIONS, which this
            // backend does not offer (so it is never negotiated): a frontend
            // sending one is not speaking the protocol it agreed to
            // (vhost-user.rst, "In-band notifications").
            Request::VRING_KICK => Err(proto(
                r,
                "in-band kick without INBAND_NOTIFICATIONS negotiated",
            )),
            Request::GET_QUEUE_NUM => {
                Self::no_fds(r, &fds)?;
                Ok(Reply::Payload(
                    u64::from(self.device.num_queues()).to_ne_bytes().to_vec(),
                ))
            }
            Request::GET_CONFIG => {
                Self::no_fds(r, &fds)?;
                let mut c = ConfigAccess::parse(r, p)?;
                let cfg = self.device.config();
                let (off, len) = (c.offset as usize, c.size as usize);
                match cfg.get(off..off.saturating_add(len)) {
                    Some(bytes) if len > 0 => {
                        c.data = bytes.to_vec();
                    }
                    _ => {
                        tracing::warn!(
                            "GET_CONFIG of {len} bytes at {off}: outside the config space"
                        );
                        c.data.clear(); // size 0 signals the error
                    }
                }
                Ok(Reply::Payload(c.to_bytes()))
            }
            Request::SET_CONFIG => {
                Self::no_fds(r, &fds)?;
                let c = ConfigAccess::parse(r, p)?;
                let len = self.device.config().len();
                let ok = (c.offset as usize)
                    .checked_add(c.data.len())
                    .is_some_and(|e| e <= len);
                if ok {
                    self.device.write_config(c.offset, &c.data);
                } else {
                    tracing::warn!("SET_CONFIG outside the config space refused");
                }
                Ok(Reply::Ack(ok))
            }
            Request::SET_BACKEND_REQ_FD => {
                let fd = Self::one_fd(r, fds)?;
                let sock = UnixStream::from(fd);
                *self
                    .events
                    .channel
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()) = Some(sock);
                Ok(Reply::Ack(true))
            }
            Request::SET_STATUS => {
                Self::no_fds(r, &fds)?;
                let v = msg::parse_u64(r, p)?;
                let s = u8::try_from(v).map_err(|_| proto(r, format!("status {v:#x}")))?;
                if s == 0 {
                    self.reset();
                } else {
                    self.status = s;
                }
                Ok(Reply::Ack(true))
            }
            Request::GET_STATUS => {
                Self::no_fds(r, &fds)?;
                let mut s = self.status;
                if self.failed.load(Ordering::SeqCst) {
                    s |= DEVICE_NEEDS_RESET;
                }
                Ok(Reply::Payload(u64::from(s).to_ne_bytes().to_vec()))
            }
            Request::GET_INFLIGHT_FD => {
                Self::no_fds(r, &fds)?;
                let d = msg::Inflight::parse(r, p)?;
                let (area, desc) = InflightArea::create(d.num_queues, d.queue_size)
                    .map_err(|e| proto(r, e.to_string()))?;
                self.send_reply(h, &desc.to_bytes(), &[std::os::fd::AsFd::as_fd(area.fd())])?;
                self.inflight = Some(area);
                Ok(Reply::Sent)
            }
            Request::SET_INFLIGHT_FD => {
                let d = msg::Inflight::parse(r, p)?;
                let fd = Self::one_fd(r, fds)?;
                let area = InflightArea::adopt(d, fd).map_err(|e| proto(r, e.to_string()))?;
                self.inflight = Some(area);
                Ok(Reply::Ack(true))
            }
            Request::SET_LOG_BASE | Request::SET_LOG_FD => {
                Err(proto(r, "dirty logging (migration) is not supported"))
            }
            other => {
                tracing::warn!("unsupported request {} ({})", other.0, other.name());
                Ok(Reply::Ack(false))
            }
        }
    }

    fn memory_changed(&mut self) {
        let mem = self.mem.memory();
        for g in &self.groups {
            g.lock().mem = mem.clone();
        }
    }

    fn reset(&mut self) {
        self.stop_all();
        for v in &mut self.vrings {
            *v = Vring::default();
        }
        self.features = 0;
        self.status = 0;
        self.failed.store(false, Ordering::SeqCst);
        self.device.reset();
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.stop_all();
        for g in &self.groups {
            g.shutdown();
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

enum Reply {
    /// A request with its own reply body.
    Payload(Vec<u8>),
    /// A request whose reply (with REPLY_ACK) is success or failure.
    Ack(bool),
    /// The reply was already sent (with descriptors).
    Sent,
}
