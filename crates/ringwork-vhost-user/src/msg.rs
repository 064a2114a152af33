//! vhost-user messages: header, request codes, protocol features and
//! payload layouts (vhost-user.rst, "Message Specification").
//!
//! Names follow the protocol text with the `VHOST_USER_` prefix dropped
//! (`VHOST_USER_SET_MEM_TABLE` is [`Request::SET_MEM_TABLE`]); the
//! protocol's older master/slave names are given as doc aliases of the
//! frontend/backend names used here.
//!
//! Trust and panic contract: payloads come from the frontend. Every parser
//! here checks the payload length first and returns [`MsgError`] when it is
//! wrong; values are returned as read (unknown request codes are kept, not
//! rejected, so the caller can answer them). Nothing panics.

/// Protocol version carried in the header's low flag bits.
pub const VERSION: u32 = 0x1;
/// Header flag bits holding the version.
pub const VERSION_MASK: u32 = 0x3;
/// Header flag: this message is a reply.
pub const FLAG_REPLY: u32 = 1 << 2;
/// Header flag: the sender wants a reply (REPLY_ACK).
pub const FLAG_NEED_REPLY: u32 = 1 << 3;
/// Size of the message header.
pub const HEADER_SIZE: usize = 12;
/// Largest payload accepted (the memory table with 8 regions is 328 bytes;
/// config space is at most 256 bytes plus its 12-byte header).
pub const MAX_PAYLOAD: usize = 4096;

/// `VHOST_F_LOG_ALL`: dirty-page logging for migration, reported by some
/// backends (libvhost-user, qemu-storage-daemon) in GET_FEATURES next to
/// the virtio bits; not a virtio feature.
#[doc(alias = "VHOST_F_LOG_ALL")]
pub const F_LOG_ALL: u32 = 26;
/// The virtio feature bit that says the backend speaks protocol features.
#[doc(alias = "VHOST_USER_F_PROTOCOL_FEATURES")]
pub const F_PROTOCOL_FEATURES: u32 = 30;

/// Vring index bits in SET_VRING_KICK/CALL/ERR payloads.
pub const VRING_IDX_MASK: u64 = 0xff;
/// "No file descriptor" flag in SET_VRING_KICK/CALL/ERR payloads.
pub const VRING_NOFD_MASK: u64 = 1 << 8;

/// A frontend request code (vhost-user.rst, "Front-end message types").
/// Unknown codes are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Request(pub u32);

#[allow(missing_docs)]
impl Request {
    pub const GET_FEATURES: Self = Self(1);
    pub const SET_FEATURES: Self = Self(2);
    pub const SET_OWNER: Self = Self(3);
    pub const RESET_OWNER: Self = Self(4);
    pub const SET_MEM_TABLE: Self = Self(5);
    pub const SET_LOG_BASE: Self = Self(6);
    pub const SET_LOG_FD: Self = Self(7);
    pub const SET_VRING_NUM: Self = Self(8);
    pub const SET_VRING_ADDR: Self = Self(9);
    pub const SET_VRING_BASE: Self = Self(10);
    pub const GET_VRING_BASE: Self = Self(11);
    pub const SET_VRING_KICK: Self = Self(12);
    pub const SET_VRING_CALL: Self = Self(13);
    pub const SET_VRING_ERR: Self = Self(14);
    pub const GET_PROTOCOL_FEATURES: Self = Self(15);
    pub const SET_PROTOCOL_FEATURES: Self = Self(16);
    pub const GET_QUEUE_NUM: Self = Self(17);
    pub const SET_VRING_ENABLE: Self = Self(18);
    pub const SEND_RARP: Self = Self(19);
    pub const NET_SET_MTU: Self = Self(20);
    #[doc(alias = "SET_SLAVE_REQ_FD")]
    pub const SET_BACKEND_REQ_FD: Self = Self(21);
    pub const IOTLB_MSG: Self = Self(22);
    pub const SET_VRING_ENDIAN: Self = Self(23);
    pub const GET_CONFIG: Self = Self(24);
    pub const SET_CONFIG: Self = Self(25);
    pub const GET_INFLIGHT_FD: Self = Self(31);
    pub const SET_INFLIGHT_FD: Self = Self(32);
    pub const RESET_DEVICE: Self = Self(34);
    pub const VRING_KICK: Self = Self(35);
    pub const GET_MAX_MEM_SLOTS: Self = Self(36);
    pub const ADD_MEM_REG: Self = Self(37);
    pub const REM_MEM_REG: Self = Self(38);
    pub const SET_STATUS: Self = Self(39);
    pub const GET_STATUS: Self = Self(40);
}

impl Request {
    /// The protocol's name for this request, if known.
    pub fn name(self) -> &'static str {
        match self.0 {
            1 => "GET_FEATURES",
            2 => "SET_FEATURES",
            3 => "SET_OWNER",
            4 => "RESET_OWNER",
            5 => "SET_MEM_TABLE",
            6 => "SET_LOG_BASE",
            7 => "SET_LOG_FD",
            8 => "SET_VRING_NUM",
            9 => "SET_VRING_ADDR",
            10 => "SET_VRING_BASE",
            11 => "GET_VRING_BASE",
            12 => "SET_VRING_KICK",
            13 => "SET_VRING_CALL",
            14 => "SET_VRING_ERR",
            15 => "GET_PROTOCOL_FEATURES",
            16 => "SET_PROTOCOL_FEATURES",
            17 => "GET_QUEUE_NUM",
            18 => "SET_VRING_ENABLE",
            19 => "SEND_RARP",
            20 => "NET_SET_MTU",
            21 => "SET_BACKEND_REQ_FD",
            22 => "IOTLB_MSG",
            23 => "SET_VRING_ENDIAN",
            24 => "GET_CONFIG",
            25 => "SET_CONFIG",
            26 => "CREATE_CRYPTO_SESSION",
            27 => "CLOSE_CRYPTO_SESSION",
            28 => "POSTCOPY_ADVISE",
            29 => "POSTCOPY_LISTEN",
            30 => "POSTCOPY_END",
            31 => "GET_INFLIGHT_FD",
            32 => "SET_INFLIGHT_FD",
            33 => "GPU_SET_SOCKET",
            34 => "RESET_DEVICE",
            35 => "VRING_KICK",
            36 => "GET_MAX_MEM_SLOTS",
            37 => "ADD_MEM_REG",
            38 => "REM_MEM_REG",
            39 => "SET_STATUS",
            40 => "GET_STATUS",
            _ => "unknown",
        }
    }
}

/// Backend-to-frontend requests on the backend channel.
#[allow(missing_docs)]
pub mod backend_req {
    #[doc(alias = "VHOST_USER_SLAVE_IOTLB_MSG")]
    pub const IOTLB_MSG: u32 = 1;
    #[doc(alias = "VHOST_USER_SLAVE_CONFIG_CHANGE_MSG")]
    pub const CONFIG_CHANGE_MSG: u32 = 2;
    #[doc(alias = "VHOST_USER_SLAVE_VRING_CALL")]
    pub const VRING_CALL: u32 = 4;
    #[doc(alias = "VHOST_USER_SLAVE_VRING_ERR")]
    pub const VRING_ERR: u32 = 5;
}

/// Protocol feature bits (vhost-user.rst, "Protocol features").
#[allow(missing_docs)]
pub mod protocol {
    pub const MQ: u32 = 0;
    pub const LOG_SHMFD: u32 = 1;
    pub const RARP: u32 = 2;
    pub const REPLY_ACK: u32 = 3;
    pub const MTU: u32 = 4;
    #[doc(alias = "SLAVE_REQ")]
    pub const BACKEND_REQ: u32 = 5;
    pub const CROSS_ENDIAN: u32 = 6;
    pub const CRYPTO_SESSION: u32 = 7;
    pub const PAGEFAULT: u32 = 8;
    pub const CONFIG: u32 = 9;
    #[doc(alias = "SLAVE_SEND_FD")]
    pub const BACKEND_SEND_FD: u32 = 10;
    pub const HOST_NOTIFIER: u32 = 11;
    pub const INFLIGHT_SHMFD: u32 = 12;
    pub const RESET_DEVICE: u32 = 13;
    pub const INBAND_NOTIFICATIONS: u32 = 14;
    pub const CONFIGURE_MEM_SLOTS: u32 = 15;
    pub const STATUS: u32 = 16;
}

/// A malformed message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MsgError {
    /// The payload has the wrong size for the request.
    #[error("{request}: payload of {got} bytes, expected {expected}")]
    BadSize {
        /// The request's name.
        request: &'static str,
        /// Bytes received.
        got: usize,
        /// Bytes the layout needs.
        expected: &'static str,
    },
    /// The header's version bits are not 1.
    #[error("unsupported protocol version {0}")]
    Version(u32),
    /// The payload is larger than any request needs.
    #[error("payload of {0} bytes exceeds the limit")]
    TooLarge(u32),
    /// A field holds a value the protocol forbids.
    #[error("{0}")]
    Invalid(&'static str),
}

/// A message header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Request code.
    pub request: Request,
    /// Flags (version, REPLY, NEED_REPLY).
    pub flags: u32,
    /// Payload size.
    pub size: u32,
}

impl Header {
    /// Parses and checks a header.
    pub fn parse(b: &[u8; HEADER_SIZE]) -> Result<Self, MsgError> {
        let h = Self {
            request: Request(u32_at(b, 0)),
            flags: u32_at(b, 4),
            size: u32_at(b, 8),
        };
        if h.flags & VERSION_MASK != VERSION {
            return Err(MsgError::Version(h.flags & VERSION_MASK));
        }
        if h.size as usize > MAX_PAYLOAD {
            return Err(MsgError::TooLarge(h.size));
        }
        Ok(h)
    }

    /// Serializes a header.
    pub fn to_bytes(self) -> [u8; HEADER_SIZE] {
        let mut b = [0; HEADER_SIZE];
        b[0..4].copy_from_slice(&self.request.0.to_ne_bytes());
        b[4..8].copy_from_slice(&self.flags.to_ne_bytes());
        b[8..12].copy_from_slice(&self.size.to_ne_bytes());
        b
    }

    /// Whether the frontend asked for a reply.
    pub fn need_reply(&self) -> bool {
        self.flags & FLAG_NEED_REPLY != 0
    }
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    let mut a = [0; 4];
    a.copy_from_slice(&b[off..off + 4]);
    u32::from_ne_bytes(a)
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    let mut a = [0; 8];
    a.copy_from_slice(&b[off..off + 8]);
    u64::from_ne_bytes(a)
}

fn check(request: Request, p: &[u8], n: usize, expected: &'static str) -> Result<(), MsgError> {
    if p.len() != n {
        return Err(MsgError::BadSize {
            request: request.name(),
            got: p.len(),
            expected,
        });
    }
    Ok(())
}

/// Parses a `u64` payload.
pub fn parse_u64(request: Request, p: &[u8]) -> Result<u64, MsgError> {
    check(request, p, 8, "8")?;
    Ok(u64_at(p, 0))
}

/// A vring state description: `index` and `num`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VringState {
    /// The vring index.
    pub index: u32,
    /// The number (size, base, or enable flag).
    pub num: u32,
}

impl VringState {
    /// Parses the 8-byte payload.
    pub fn parse(request: Request, p: &[u8]) -> Result<Self, MsgError> {
        check(request, p, 8, "8")?;
        Ok(Self {
            index: u32_at(p, 0),
            num: u32_at(p, 4),
        })
    }

    /// Serializes it.
    pub fn to_bytes(self) -> [u8; 8] {
        let mut b = [0; 8];
        b[0..4].copy_from_slice(&self.index.to_ne_bytes());
        b[4..8].copy_from_slice(&self.num.to_ne_bytes());
        b
    }
}

/// A vring address description (addresses in the frontend's user space).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VringAddr {
    /// The vring index.
    pub index: u32,
    /// Flags (bit 0: VHOST_VRING_F_LOG).
    pub flags: u32,
    /// Descriptor table (split) or descriptor ring (packed).
    pub desc: u64,
    /// Used ring (split) or device event suppression area (packed).
    pub used: u64,
    /// Available ring (split) or driver event suppression area (packed).
    pub avail: u64,
    /// Guest address for used-ring dirty logging.
    pub log: u64,
}

impl VringAddr {
    /// Parses the 40-byte payload.
    pub fn parse(request: Request, p: &[u8]) -> Result<Self, MsgError> {
        check(request, p, 40, "40")?;
        Ok(Self {
            index: u32_at(p, 0),
            flags: u32_at(p, 4),
            desc: u64_at(p, 8),
            used: u64_at(p, 16),
            avail: u64_at(p, 24),
            log: u64_at(p, 32),
        })
    }
}

/// One memory region of a memory table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemRegion {
    /// Guest physical address of the first byte.
    pub guest_addr: u64,
    /// Size in bytes.
    pub size: u64,
    /// Frontend user-space address of the first byte.
    pub user_addr: u64,
    /// Offset of the first byte in the passed file descriptor.
    pub mmap_offset: u64,
}

impl MemRegion {
    const SIZE: usize = 32;

    fn parse_at(p: &[u8], off: usize) -> Self {
        Self {
            guest_addr: u64_at(p, off),
            size: u64_at(p, off + 8),
            user_addr: u64_at(p, off + 16),
            mmap_offset: u64_at(p, off + 24),
        }
    }

    /// Parses a memory table (SET_MEM_TABLE): count, padding, then
    /// `count` regions (at most 8). QEMU always sends room for 8; fewer is
    /// accepted as long as the count fits.
    pub fn parse_table(request: Request, p: &[u8]) -> Result<Vec<Self>, MsgError> {
        if p.len() < 8 {
            return Err(MsgError::BadSize {
                request: request.name(),
                got: p.len(),
                expected: "8 + 32 per region",
            });
        }
        let n = u32_at(p, 0) as usize;
        if n > 8 {
            return Err(MsgError::Invalid("more than 8 memory regions"));
        }
        if p.len() < 8 + n * Self::SIZE {
            return Err(MsgError::BadSize {
                request: request.name(),
                got: p.len(),
                expected: "8 + 32 per region",
            });
        }
        Ok((0..n)
            .map(|i| Self::parse_at(p, 8 + i * Self::SIZE))
            .collect())
    }

    /// Parses a single region description (ADD_MEM_REG / REM_MEM_REG):
    /// 8 bytes of padding, then the region.
    pub fn parse_single(request: Request, p: &[u8]) -> Result<Self, MsgError> {
        check(request, p, 40, "40")?;
        Ok(Self::parse_at(p, 8))
    }
}

/// A device config space access (GET_CONFIG / SET_CONFIG).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigAccess {
    /// Offset in the config space.
    pub offset: u32,
    /// Access size.
    pub size: u32,
    /// Flags (0: writable fields; 1: live migration).
    pub flags: u32,
    /// The bytes (for SET_CONFIG; for GET_CONFIG the frontend's
    /// placeholder).
    pub data: Vec<u8>,
}

/// Config access flag: the frontend restores state for live migration.
pub const CONFIG_FLAG_MIGRATION: u32 = 1;

impl ConfigAccess {
    /// Parses the payload: a 12-byte header and `size` bytes.
    pub fn parse(request: Request, p: &[u8]) -> Result<Self, MsgError> {
        if p.len() < 12 {
            return Err(MsgError::BadSize {
                request: request.name(),
                got: p.len(),
                expected: "12 + size",
            });
        }
        let size = u32_at(p, 4);
        if p.len() != 12 + size as usize {
            return Err(MsgError::BadSize {
                request: request.name(),
                got: p.len(),
                expected: "12 + size",
            });
        }
        Ok(Self {
            offset: u32_at(p, 0),
            size,
            flags: u32_at(p, 8),
            data: p[12..].to_vec(),
        })
    }

    /// Serializes a reply.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(12 + self.data.len());
        b.extend_from_slice(&self.offset.to_ne_bytes());
        b.extend_from_slice(&(self.data.len() as u32).to_ne_bytes());
        b.extend_from_slice(&self.flags.to_ne_bytes());
        b.extend_from_slice(&self.data);
        b
    }
}

/// An inflight description (GET_INFLIGHT_FD / SET_INFLIGHT_FD).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inflight {
    /// Size of the shared area.
    pub mmap_size: u64,
    /// Offset of the area in the file descriptor.
    pub mmap_offset: u64,
    /// Number of queues.
    pub num_queues: u16,
    /// Queue size.
    pub queue_size: u16,
}

impl Inflight {
    /// Parses the 20-byte payload (QEMU pads it to 24; both accepted).
    pub fn parse(request: Request, p: &[u8]) -> Result<Self, MsgError> {
        if p.len() != 20 && p.len() != 24 {
            return Err(MsgError::BadSize {
                request: request.name(),
                got: p.len(),
                expected: "20 or 24",
            });
        }
        Ok(Self {
            mmap_size: u64_at(p, 0),
            mmap_offset: u64_at(p, 8),
            num_queues: u16::from_ne_bytes([p[16], p[17]]),
            queue_size: u16::from_ne_bytes([p[18], p[19]]),
        })
    }

    /// Serializes it (24 bytes, as QEMU expects).
    pub fn to_bytes(self) -> [u8; 24] {
        let mut b = [0; 24];
        b[0..8].copy_from_slice(&self.mmap_size.to_ne_bytes());
        b[8..16].copy_from_slice(&self.mmap_offset.to_ne_bytes());
        b[16..18].copy_from_slice(&self.num_queues.to_ne_bytes());
        b[18..20].copy_from_slice(&self.queue_size.to_ne_bytes());
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_and_checks() {
        let h = Header {
            request: Request::GET_FEATURES,
            flags: VERSION | FLAG_NEED_REPLY,
            size: 0,
        };
        assert_eq!(Header::parse(&h.to_bytes()).unwrap(), h);
        assert!(h.need_reply());
        let mut b = h.to_bytes();
        b[4] = 2;
        assert_eq!(Header::parse(&b), Err(MsgError::Version(2)));
        let big = Header { size: 1 << 20, ..h };
        assert_eq!(
            Header::parse(&big.to_bytes()),
            Err(MsgError::TooLarge(1 << 20))
        );
    }

    #[test]
    fn payload_sizes_are_checked() {
        assert!(VringState::parse(Request::SET_VRING_NUM, &[0; 7]).is_err());
        assert!(VringAddr::parse(Request::SET_VRING_ADDR, &[0; 39]).is_err());
        let mut t = vec![0u8; 8 + 32];
        t[0] = 1;
        t[8] = 0x10; // guest addr
        t[16] = 0x20; // size
        let r = MemRegion::parse_table(Request::SET_MEM_TABLE, &t).unwrap();
        assert_eq!(r[0].guest_addr, 0x10);
        assert_eq!(r[0].size, 0x20);
        t[0] = 2;
        assert!(MemRegion::parse_table(Request::SET_MEM_TABLE, &t).is_err());
        t[0] = 9;
        assert!(MemRegion::parse_table(Request::SET_MEM_TABLE, &t).is_err());
        let mut c = vec![0u8; 12 + 4];
        c[4] = 4;
        assert_eq!(
            ConfigAccess::parse(Request::GET_CONFIG, &c).unwrap().size,
            4
        );
        c[4] = 5;
        assert!(ConfigAccess::parse(Request::GET_CONFIG, &c).is_err());
    }
}
