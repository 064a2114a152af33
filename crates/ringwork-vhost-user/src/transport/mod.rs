//! The frontend as a driver-side transport: [`VhostUserTransport`]
//! implements `ringwork_transport::driver::Transport`, so the same drivers
//! that run over MMIO and PCI run against any vhost-user backend from a
//! normal process, the way a VMM would drive it.
//!
//! The mapping (vhost-user.rst, "Starting and stopping rings" and the
//! message list):
//! - device features: GET_FEATURES, without VHOST_USER_F_PROTOCOL_FEATURES,
//!   which the transport negotiates on its own (with MQ, REPLY_ACK, CONFIG,
//!   STATUS, RESET_DEVICE, BACKEND_REQ, INFLIGHT_SHMFD when offered);
//! - driver features: SET_FEATURES; status: SET_STATUS/GET_STATUS with
//!   STATUS, a local shadow without it; reset: RESET_DEVICE when offered,
//!   and every started ring stopped with GET_VRING_BASE;
//! - queues: the memory table is sent with the first queue, and the
//!   inflight area (GET/SET_INFLIGHT_FD with INFLIGHT_SHMFD) asked for
//!   every queue at [`TransportOptions::max_queue_size`], then
//!   SET_VRING_NUM/BASE/ADDR/KICK/CALL/ERR and SET_VRING_ENABLE;
//!   notifications go through the kick eventfd, interrupts come back on
//!   the call eventfds; configuration: GET_CONFIG/SET_CONFIG (the whole
//!   space read from offset 0 and cached, since some backends ignore the
//!   offset), configuration changes from the backend channel
//!   (CONFIG_CHANGE_MSG) bump the generation.
//!
//! # Trust and panic contract
//! The backend is the peer. Replies are checked by [`Frontend`]; a failed
//! or missing reply (the socket has a timeout) marks the transport failed:
//! [`Transport::status`] then shows DEVICE_NEEDS_RESET and
//! [`VhostUserTransport::error`] says why. Configuration bytes are only
//! copied within the cache; nothing panics on backend input.

mod handshake;
mod identify;
mod memory;
mod reconnect;

use handshake::Handshake;

pub use identify::{identify, Probe, BLK_CONFIG_PROBE};
pub use memory::{SharedMemory, DEFAULT_BASE};

use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ringwork_spec::balloon::BALLOON_CONFIG_SIZE;
use ringwork_spec::device_id::{
    DeviceType, VIRTIO_ID_BALLOON, VIRTIO_ID_BLOCK, VIRTIO_ID_CONSOLE, VIRTIO_ID_NET,
    VIRTIO_ID_SCSI,
};
use ringwork_spec::features::{
    FeatureSet, PCI_ONLY_FEATURES, VIRTIO_F_ACCESS_PLATFORM, VIRTIO_F_NOTIFICATION_DATA,
    VIRTIO_F_RING_PACKED, VIRTIO_F_RING_RESET,
};
use ringwork_spec::net::NET_CONFIG_SIZE;
use ringwork_spec::ring::MAX_QUEUE_SIZE;
use ringwork_spec::scsi::SCSI_CONFIG_SIZE;
use ringwork_spec::status::DeviceStatus;
use ringwork_transport::driver::{InterruptCause, QueueConfig, Transport, TransportError};

use crate::frontend::{Frontend, FrontendError};
use crate::msg::{self, backend_req, protocol, Header, Request, VringAddr};
use crate::sys::{self, EventFd};

/// The protocol features this frontend uses when the backend offers them.
pub const WANTED_PROTOCOL_FEATURES: u64 = 1 << protocol::MQ
    | 1 << protocol::REPLY_ACK
    | 1 << protocol::BACKEND_REQ
    | 1 << protocol::CONFIG
    | 1 << protocol::RESET_DEVICE
    | 1 << protocol::STATUS
    | 1 << protocol::INFLIGHT_SHMFD;

/// How to connect.
#[derive(Debug, Clone)]
pub struct TransportOptions {
    /// The device type; `None` infers it ([`identify`]).
    pub device_type: Option<DeviceType>,
    /// The largest queue size offered to drivers (vhost-user has no limit
    /// of its own; 1024 is what QEMU allows). The inflight area is sized
    /// for every queue at this size.
    pub max_queue_size: u16,
    /// How long one reply, or one [`Transport::wait_interrupt`], may take.
    pub timeout: Duration,
    /// Bytes of shared memory (rings and buffers).
    pub memory_size: usize,
    /// Protocol features not to use even if offered (tests, `check`).
    pub withhold_protocol: u64,
    /// How long [`Transport::wait_interrupt`] keeps trying to reconnect to
    /// a backend that went away (a restarted backend on the same socket
    /// path, see [`VhostUserTransport::reconnect`]); `None`: a backend
    /// that goes away is an error.
    pub reconnect: Option<Duration>,
}

impl Default for TransportOptions {
    fn default() -> Self {
        Self {
            device_type: None,
            max_queue_size: 1024,
            timeout: Duration::from_secs(10),
            memory_size: 64 << 20,
            withhold_protocol: 0,
            reconnect: None,
        }
    }
}

/// Why connecting failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// A message exchange failed.
    #[error("vhost-user handshake: {0}")]
    Frontend(#[from] FrontendError),
    /// Sockets, eventfds or memory.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The backend that answered a reconnection cannot continue the
    /// session (it offers less than was negotiated).
    #[error("the reconnected backend cannot continue the session: {0}")]
    Mismatch(String),
    /// The transport was not connected through a socket path.
    #[error("no socket path to reconnect to")]
    NoPath,
    /// The device type could not be inferred.
    #[error("cannot tell the device type (features {features:#x}, {queues:?} queues); name it explicitly")]
    Unidentified {
        /// Offered features.
        features: u64,
        /// GET_QUEUE_NUM.
        queues: Option<u64>,
    },
}

#[derive(Debug)]
struct Vring {
    kick: EventFd,
    call: EventFd,
    err: EventFd,
    started: bool,
    /// What the ring was started with, to start it again on a
    /// reconnected backend.
    setup: Option<reconnect::RingSetup>,
}

/// A vhost-user backend seen as a virtio device.
#[derive(Debug)]
pub struct VhostUserTransport {
    fe: Frontend,
    mem: Arc<SharedMemory>,
    opts: TransportOptions,
    device_type: DeviceType,
    offered: u64,
    vhost_features: u64,
    protocol_offered: u64,
    protocol: u64,
    has_protocol_features: bool,
    driver_features: u64,
    status: u8,
    num_queues: u16,
    vrings: Vec<Vring>,
    mem_sent: bool,
    inflight: Option<(msg::Inflight, OwnedFd)>,
    channel: Option<UnixStream>,
    config: Option<Vec<u8>>,
    generation: u32,
    pending: InterruptCause,
    error: Option<String>,
    /// Where [`Self::connect`] connected (for reconnecting).
    path: Option<std::path::PathBuf>,
}

impl VhostUserTransport {
    /// Connects to the backend listening on `path` and runs the handshake
    /// (SET_OWNER, features, protocol features, queue count, backend
    /// channel).
    pub fn connect(path: &Path, opts: TransportOptions) -> Result<Self, ConnectError> {
        let sock = UnixStream::connect(path)?;
        let mut t = Self::from_stream(sock, opts)?;
        t.path = Some(path.to_owned());
        Ok(t)
    }

    /// Runs the handshake over a connected socket.
    pub fn from_stream(sock: UnixStream, opts: TransportOptions) -> Result<Self, ConnectError> {
        let mem = Arc::new(SharedMemory::new(opts.memory_size)?);
        let Handshake {
            fe,
            features,
            has_pf,
            protocol_offered,
            protocol,
            queue_num,
            channel,
        } = Handshake::run(sock, &opts, None)?;
        // The vhost-user bits are not virtio features (PROTOCOL_FEATURES is
        // negotiated here; LOG_ALL is migration logging, never used).
        let offered = features & !(1 << msg::F_PROTOCOL_FEATURES) & !(1 << msg::F_LOG_ALL);
        let mut t = Self {
            fe,
            mem,
            opts,
            device_type: DeviceType(0),
            offered,
            vhost_features: features,
            protocol_offered,
            protocol,
            has_protocol_features: has_pf,
            driver_features: 0,
            status: 0,
            num_queues: 0,
            vrings: Vec::new(),
            mem_sent: false,
            inflight: None,
            channel,
            config: None,
            generation: 0,
            pending: InterruptCause::default(),
            error: None,
            path: None,
        };
        t.device_type = match t.opts.device_type {
            Some(d) => d,
            None => {
                let has_config = protocol & (1 << protocol::CONFIG) != 0;
                let probe = Probe {
                    features: offered,
                    queue_num,
                    large_config: has_config.then(|| t.fe.get_config(0, BLK_CONFIG_PROBE).is_ok()),
                    console_config: has_config.then(|| t.fe.get_config(0, 12).is_ok()),
                    balloon_config: has_config
                        .then(|| t.fe.get_config(0, BALLOON_CONFIG_SIZE as u32).is_ok()),
                    scsi_config: has_config
                        .then(|| t.fe.get_config(0, SCSI_CONFIG_SIZE as u32).is_ok()),
                };
                identify(&probe).ok_or(ConnectError::Unidentified {
                    features: offered,
                    queues: queue_num,
                })?
            }
        };
        // Without MQ the queue count is the device type's (VIRTIO 1.4 §5):
        // network receiveq1 + transmitq1 (+ controlq with CTRL_VQ, bit 17),
        // SCSI controlq + eventq + one request queue.
        let default_queues = match t.device_type.0 {
            VIRTIO_ID_CONSOLE => 2,
            VIRTIO_ID_NET => 2 + ((offered >> 17) & 1),
            VIRTIO_ID_SCSI => 3,
            _ => 1,
        };
        let n = queue_num
            .unwrap_or(default_queues)
            .min(u64::from(u8::MAX) + 1);
        t.num_queues = n as u16;
        for _ in 0..t.num_queues {
            t.vrings.push(Vring {
                kick: EventFd::new()?,
                call: EventFd::new()?,
                err: EventFd::new()?,
                started: false,
                setup: None,
            });
        }
        Ok(t)
    }

    /// The shared memory drivers allocate rings and buffers from.
    pub fn memory(&self) -> &Arc<SharedMemory> {
        &self.mem
    }

    /// The underlying message client (for checks that send raw messages).
    pub fn frontend(&mut self) -> &mut Frontend {
        &mut self.fe
    }

    /// GET_FEATURES as the backend answered it, vhost-user bits included
    /// ([`Transport::device_features`] has only the virtio bits).
    pub fn vhost_features(&self) -> u64 {
        self.vhost_features
    }

    /// Protocol features the backend offered.
    pub fn protocol_offered(&self) -> u64 {
        self.protocol_offered
    }

    /// Protocol features in use.
    pub fn protocol_features(&self) -> u64 {
        self.protocol
    }

    /// Whether protocol feature `bit` is in use.
    pub fn has_protocol(&self, bit: u32) -> bool {
        self.protocol & (1 << bit) != 0
    }

    /// Queue count (GET_QUEUE_NUM, or the device type's default).
    pub fn num_queues(&self) -> u16 {
        self.num_queues
    }

    /// The first failure, if any (the transport is unusable after one).
    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }

    /// Whether the backend signalled an error on `queue`'s err eventfd
    /// (and clears it).
    pub fn take_queue_error(&mut self, queue: u16) -> bool {
        self.vrings
            .get(usize::from(queue))
            .is_some_and(|v| v.err.drain().unwrap_or(0) > 0)
    }

    fn fail(&mut self, what: &str, e: impl std::fmt::Display) {
        tracing::warn!("vhost-user {what}: {e}");
        if self.error.is_none() {
            self.error = Some(format!("{what}: {e}"));
        }
    }

    fn check<T>(&mut self, what: &str, r: Result<T, FrontendError>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.fail(what, e);
                None
            }
        }
    }

    fn send_mem_table(&mut self) -> Result<(), TransportError> {
        if self.mem_sent {
            return Ok(());
        }
        let region = self.mem.region();
        let r = self.fe.set_mem_table(&[region], &[self.mem.fd()]);
        self.check("SET_MEM_TABLE", r)
            .ok_or(TransportError::Disconnected("SET_MEM_TABLE failed"))?;
        self.mem_sent = true;
        Ok(())
    }

    /// GET_INFLIGHT_FD / SET_INFLIGHT_FD, once, before the first ring
    /// starts (vhost-user.rst, "Inflight I/O tracking"). The description
    /// has one queue count and one queue size for all regions, and rings
    /// are set up one at a time, so the area is asked for every queue of
    /// the device (`num_queues`) at the largest size a ring can be given
    /// ([`TransportOptions::max_queue_size`], at most [`MAX_QUEUE_SIZE`]).
    /// A small first queue (the SCSI controlq) thus no longer leaves the
    /// larger queues set up after it without a region; a backend tracks a
    /// smaller ring in the first entries of its region.
    fn setup_inflight(&mut self) -> Result<(), TransportError> {
        if self.inflight.is_some() || !self.has_protocol(protocol::INFLIGHT_SHMFD) {
            return Ok(());
        }
        let size = self.opts.max_queue_size.min(MAX_QUEUE_SIZE);
        let r = self.fe.get_inflight_fd(self.num_queues, size);
        let (d, fd) = self
            .check("GET_INFLIGHT_FD", r)
            .ok_or(TransportError::Disconnected("GET_INFLIGHT_FD failed"))?;
        let r = self.fe.set_inflight_fd(&d, fd.as_fd());
        self.check("SET_INFLIGHT_FD", r)
            .ok_or(TransportError::Disconnected("SET_INFLIGHT_FD failed"))?;
        self.inflight = Some((d, fd));
        Ok(())
    }

    /// SET_VRING_NUM/BASE/ADDR/CALL/ERR/KICK/ENABLE for one ring.
    fn start_vring(&self, num: u32, addr: &VringAddr, base: u32) -> Result<(), FrontendError> {
        let q = addr.index;
        let v = &self.vrings[q as usize];
        self.fe.set_vring_num(q, num)?;
        self.fe.set_vring_base(q, base)?;
        self.fe.set_vring_addr(addr)?;
        self.fe.set_vring_call(q, Some(v.call.as_fd()))?;
        self.fe.set_vring_err(q, Some(v.err.as_fd()))?;
        self.fe.set_vring_kick(q, Some(v.kick.as_fd()))?;
        if self.has_protocol_features {
            self.fe.set_vring_enable(q, true)?;
        }
        Ok(())
    }

    fn stop_rings(&mut self) {
        for i in 0..self.vrings.len() {
            if self.vrings[i].started {
                self.vrings[i].started = false;
                self.vrings[i].setup = None;
                let r = self.fe.get_vring_base(i as u32);
                self.check("GET_VRING_BASE", r);
            }
        }
    }

    fn load_config(&mut self) {
        if self.config.is_some() || !self.has_protocol(protocol::CONFIG) {
            return;
        }
        // The whole space of the device type, largest layout first: a
        // backend refuses reads beyond its space, whose size can depend on
        // features (net) or the spec version the backend follows.
        let sizes: &[u32] = match self.device_type.0 {
            VIRTIO_ID_BLOCK => &[BLK_CONFIG_PROBE],
            VIRTIO_ID_CONSOLE => &[12, 8, 4],
            VIRTIO_ID_BALLOON => &[BALLOON_CONFIG_SIZE as u32, 8],
            VIRTIO_ID_SCSI => &[SCSI_CONFIG_SIZE as u32],
            VIRTIO_ID_NET => &[NET_CONFIG_SIZE as u32, 24, 20, 16, 12, 10, 8, 6],
            _ => &[],
        };
        if sizes.is_empty() {
            self.config = Some(Vec::new());
            return;
        }
        let mut last = None;
        for &want in sizes {
            match self.fe.get_config(0, want) {
                Ok(mut c) => {
                    c.truncate(want as usize);
                    self.config = Some(c);
                    return;
                }
                Err(e) => last = Some(e),
            }
        }
        if let Some(e) = last {
            self.fail("GET_CONFIG", e);
        }
    }

    /// Handles whatever the backend sent on its channel (non-blocking).
    fn poll_channel(&mut self) {
        loop {
            let Some(ch) = self.channel.as_ref() else {
                return;
            };
            match sys::poll_fds(&[ch.as_fd()], 0) {
                Ok(r) if r[0] => {}
                _ => return,
            }
            let mut hb = [0u8; msg::HEADER_SIZE];
            let mut fds = Vec::new();
            let got = sys::recv_with_fds(ch, &mut hb, &mut fds);
            let h = match got {
                Ok(n) if n == msg::HEADER_SIZE => Header::parse(&hb),
                Ok(_) => {
                    tracing::debug!("backend channel closed");
                    self.channel = None;
                    return;
                }
                Err(e) => {
                    self.fail("backend channel", e);
                    self.channel = None;
                    return;
                }
            };
            let Ok(h) = h else {
                self.fail("backend channel", "malformed header");
                self.channel = None;
                return;
            };
            let mut payload = vec![0u8; h.size as usize];
            if let Err(e) = (&*ch).read_exact(&mut payload) {
                self.fail("backend channel", e);
                self.channel = None;
                return;
            }
            let ok = h.request == Request(backend_req::CONFIG_CHANGE_MSG);
            if ok {
                self.generation = self.generation.wrapping_add(1);
                self.config = None;
                self.pending.config_changed = true;
            } else {
                tracing::debug!("backend request {} not handled", h.request.0);
            }
            if h.flags & msg::FLAG_NEED_REPLY != 0 {
                let rh = Header {
                    request: h.request,
                    flags: msg::VERSION | msg::FLAG_REPLY,
                    size: 8,
                };
                let mut b = rh.to_bytes().to_vec();
                b.extend_from_slice(&u64::from(!ok).to_ne_bytes());
                if let Err(e) = sys::send_with_fds(ch, &b, &[]) {
                    self.fail("backend channel reply", e);
                }
            }
        }
    }

    fn drain_calls(&mut self) {
        for v in &self.vrings {
            if v.call.drain().unwrap_or(0) > 0 {
                self.pending.used_buffer = true;
            }
        }
    }
}

impl Transport for VhostUserTransport {
    fn device_type(&self) -> DeviceType {
        self.device_type
    }

    fn is_legacy(&self) -> bool {
        false
    }

    fn device_features(&mut self) -> FeatureSet {
        FeatureSet::from_u64(self.offered)
    }

    fn set_driver_features(&mut self, features: FeatureSet) {
        let mut f = features.as_u64_lossy() & self.offered;
        self.driver_features = f;
        if self.has_protocol_features {
            f |= 1 << msg::F_PROTOCOL_FEATURES;
        }
        let r = self.fe.set_features(f);
        self.check("SET_FEATURES", r);
    }

    fn status(&mut self) -> DeviceStatus {
        if self.error.is_some() {
            return DeviceStatus::from_bits(self.status) | DeviceStatus::DEVICE_NEEDS_RESET;
        }
        if self.has_protocol(protocol::STATUS) {
            let r = self.fe.get_status();
            if let Some(s) = self.check("GET_STATUS", r) {
                return DeviceStatus::from_bits(s);
            }
            return DeviceStatus::from_bits(self.status) | DeviceStatus::DEVICE_NEEDS_RESET;
        }
        DeviceStatus::from_bits(self.status)
    }

    fn set_status(&mut self, status: DeviceStatus) {
        let s = status.bits();
        if s == 0 {
            self.stop_rings();
            if self.has_protocol(protocol::RESET_DEVICE) {
                let r = self.fe.reset_device();
                self.check("RESET_DEVICE", r);
            }
            self.config = None;
            self.driver_features = 0;
            for v in &self.vrings {
                let _ = v.call.drain();
                let _ = v.err.drain();
            }
            self.pending = InterruptCause::default();
        }
        if self.has_protocol(protocol::STATUS) {
            let r = self.fe.set_status(s);
            self.check("SET_STATUS", r);
        }
        self.status = s;
    }

    fn reset(&mut self) -> Result<(), TransportError> {
        self.set_status(DeviceStatus::RESET);
        if self.error.is_some() {
            return Err(TransportError::Disconnected("reset failed"));
        }
        if self.status().is_reset() {
            Ok(())
        } else {
            Err(TransportError::ResetTimeout)
        }
    }

    fn max_queue_size(&mut self, queue: u16) -> u16 {
        if queue < self.num_queues {
            self.opts.max_queue_size
        } else {
            0
        }
    }

    fn legacy_queue_align(&self) -> Option<u32> {
        None
    }

    fn setup_queue(&mut self, queue: u16, config: &QueueConfig) -> Result<(), TransportError> {
        if queue >= self.num_queues {
            return Err(TransportError::NoSuchQueue(queue));
        }
        let i = usize::from(queue);
        if self.vrings[i].started {
            return Err(TransportError::QueueInUse(queue));
        }
        if config.size == 0 || config.size > self.opts.max_queue_size {
            return Err(TransportError::QueueSize {
                queue,
                size: config.size,
                max: self.opts.max_queue_size,
            });
        }
        if self.error.is_some() {
            return Err(TransportError::Disconnected("transport failed earlier"));
        }
        let a = &config.addresses;
        let (Some(desc), Some(driver), Some(device)) = (
            self.mem.user_addr(a.desc),
            self.mem.user_addr(a.driver),
            self.mem.user_addr(a.device),
        ) else {
            return Err(TransportError::Layout(
                "queue memory outside the shared memory",
            ));
        };
        self.send_mem_table()?;
        self.setup_inflight()?;
        let packed = self.driver_features & (1 << VIRTIO_F_RING_PACKED) != 0;
        // A fresh ring: index 0, wrap counters 1 (vhost-user.rst packed
        // encoding: avail in the low 16 bits, used in the high 16 bits).
        let base = if packed { 0x8000_8000 } else { 0 };
        let addr = VringAddr {
            index: u32::from(queue),
            flags: 0,
            desc,
            used: device,
            avail: driver,
            log: 0,
        };
        let r = self.start_vring(u32::from(config.size), &addr, base);
        self.check("vring setup", r)
            .ok_or(TransportError::Disconnected("vring setup failed"))?;
        self.vrings[i].started = true;
        self.vrings[i].setup = Some(reconnect::RingSetup {
            num: u32::from(config.size),
            addr,
            base,
            packed,
            used_ring: a.device,
        });
        Ok(())
    }

    fn reset_queue(&mut self, queue: u16) -> Result<(), TransportError> {
        Err(if self.driver_features & (1 << VIRTIO_F_RING_RESET) == 0 {
            TransportError::RingResetNotNegotiated
        } else {
            TransportError::QueueResetTimeout(queue)
        })
    }

    fn notify(&mut self, queue: u16, _data: u32) {
        if let Some(v) = self.vrings.get(usize::from(queue)) {
            if let Err(e) = v.kick.signal() {
                self.fail("kick", e);
            }
        }
    }

    fn config_generation(&mut self) -> u32 {
        self.poll_channel();
        self.generation
    }

    fn read_config(&mut self, offset: usize, data: &mut [u8]) {
        self.load_config();
        data.fill(0);
        if let Some(c) = &self.config {
            if let Some(src) = offset
                .checked_add(data.len())
                .and_then(|e| c.get(offset..e))
            {
                data.copy_from_slice(src);
            }
        }
    }

    fn write_config(&mut self, offset: usize, data: &[u8]) {
        let r = self.fe.set_config(offset as u32, data);
        self.check("SET_CONFIG", r);
        self.config = None;
    }

    fn ack_interrupt(&mut self) -> InterruptCause {
        self.drain_calls();
        self.poll_channel();
        core::mem::take(&mut self.pending)
    }

    fn wait_interrupt(&mut self) -> Result<(), TransportError> {
        if let Some(e) = &self.error {
            if self.opts.reconnect.is_some() {
                return self.auto_reconnect();
            }
            tracing::debug!("wait on a failed transport: {e}");
            return Err(TransportError::Disconnected("transport failed earlier"));
        }
        let mut fds: Vec<BorrowedFd<'_>> = self.vrings.iter().map(|v| v.call.as_fd()).collect();
        fds.push(self.fe.socket().as_fd());
        if let Some(ch) = &self.channel {
            fds.push(ch.as_fd());
        }
        let ms = i32::try_from(self.opts.timeout.as_millis()).unwrap_or(i32::MAX);
        let ready = match sys::poll_fds(&fds, ms) {
            Ok(r) => r,
            Err(e) => {
                self.fail("poll", e);
                return Err(TransportError::Disconnected("poll failed"));
            }
        };
        drop(fds);
        let n = self.vrings.len();
        if ready[n] {
            // Nothing is due on the main socket between requests: readable
            // means closed, or a backend sending what nobody asked for.
            let why = if sys::peer_closed(self.fe.socket()) {
                "backend closed the connection"
            } else {
                "unsolicited data on the vhost-user socket"
            };
            self.fail("socket", why);
            if self.opts.reconnect.is_some() {
                return self.auto_reconnect();
            }
            return Err(TransportError::Disconnected(why));
        }
        if !ready.iter().any(|&r| r) {
            return Err(TransportError::Unresponsive);
        }
        // Only the descriptors that fired: one read each, not one per queue.
        for (v, _) in self.vrings.iter().zip(&ready).filter(|(_, &r)| r) {
            if v.call.drain().unwrap_or(0) > 0 {
                self.pending.used_buffer = true;
            }
        }
        if ready.get(n + 1).copied().unwrap_or(false) {
            self.poll_channel();
        }
        Ok(())
    }

    fn supports_feature(&self, bit: u32) -> bool {
        // No notification data, ring reset or IOTLB over this frontend.
        !PCI_ONLY_FEATURES.contains(&bit)
            && bit != VIRTIO_F_NOTIFICATION_DATA
            && bit != VIRTIO_F_RING_RESET
            && bit != VIRTIO_F_ACCESS_PLATFORM
            && bit != msg::F_PROTOCOL_FEATURES
            && bit != msg::F_LOG_ALL
    }
}
