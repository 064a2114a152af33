//! The console's single worker: every queue of the device, so that the
//! control protocol and the ports' data paths share state without locks
//! (the one lock, [`Shared`], is only taken at start, at drop, at a device
//! reset and for emergency writes).
//!
//! Each [`process`](QueueWorker::process) call: takes emergency-write
//! bytes, follows terminal sizes, handles the driver's control messages,
//! moves each active port's data both ways, queues control messages for
//! host-side changes, delivers control messages, and finally re-arms the
//! epoll set ([`Poller`]) that is the worker's only event fd.
//!
//! Panic contract: nothing here panics on driver input or host I/O. An
//! error on one queue (a broken ring) does not stop the other queues: it
//! is returned after every queue was served.

use std::collections::BTreeMap;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use ringwork_queue::device::DescChain;
use ringwork_spec::console::{
    port_receiveq, port_transmitq, CONSOLE_CONTROL_RECEIVEQ, CONSOLE_CONTROL_SIZE,
    CONSOLE_CONTROL_TRANSMITQ,
};

use super::backend::{PortIo, OUT_BACKLOG_MAX};
use super::control::{Complaints, Control, HostSide, PortConfig};
use super::data::{self, TxState};
use super::options::WindowSize;
use super::poller::{Poller, Wake};
use super::sys::{EPOLLIN, EPOLLOUT};
use crate::model::{DeviceError, DeviceEvents, QueueSet, QueueWorker};

/// State shared by the device and its worker.
#[derive(Debug, Default)]
pub(super) struct Shared {
    /// The ports' backends while no worker holds them.
    pub ports: Option<Vec<PortIo>>,
    /// The control protocol state while no worker holds it; `None` after
    /// a device reset (a worker then starts from scratch). It outlives a
    /// worker, since queues may stop and restart without a reset.
    pub control: Option<Control>,
    /// Device resets so far: a worker started before a reset does not give
    /// its (stale) control state back.
    pub resets: u64,
    /// Emergency-write bytes for port 0 that a running worker has not
    /// taken yet (at most [`OUT_BACKLOG_MAX`]).
    pub emerg: Vec<u8>,
}

/// Locks `shared`, ignoring poisoning (the data stays consistent: every
/// update is a single assignment or push).
pub(super) fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

/// Packs a size into the device's configuration word (0: unknown).
pub(super) fn pack_size(size: Option<WindowSize>) -> u32 {
    size.map_or(0, |s| u32::from(s.cols) | (u32::from(s.rows) << 16))
}

/// The inverse of [`pack_size`].
pub(super) fn unpack_size(v: u32) -> Option<WindowSize> {
    (v != 0).then_some(WindowSize {
        cols: v as u16,
        rows: (v >> 16) as u16,
    })
}

/// What the worker needs from the device, per port.
#[derive(Debug, Clone)]
pub(super) struct PortMeta {
    /// Protocol configuration.
    pub config: PortConfig,
    /// Follow the backend's terminal size.
    pub follow_size: bool,
    /// The size at start.
    pub size: Option<WindowSize>,
}

/// What [`ConsoleWorker::new`] needs.
pub(super) struct WorkerSetup {
    pub shared: Arc<Mutex<Shared>>,
    pub io: Vec<PortIo>,
    /// The control state, `None` for a fresh one.
    pub control: Option<Control>,
    /// [`Shared::resets`] at start.
    pub resets: u64,
    pub meta: Vec<PortMeta>,
    pub multiport: bool,
    pub size_feature: bool,
    pub config_size: Arc<AtomicU32>,
    pub events: Arc<dyn DeviceEvents>,
    pub wake: Wake,
    pub poller: Poller,
}

/// The worker. See the [module docs](self).
pub(super) struct ConsoleWorker {
    shared: Arc<Mutex<Shared>>,
    io: Vec<PortIo>,
    tx: Vec<TxState>,
    meta: Vec<PortMeta>,
    sizes: Vec<Option<WindowSize>>,
    control: Control,
    resets: u64,
    multiport: bool,
    size_feature: bool,
    config_size: Arc<AtomicU32>,
    events: Arc<dyn DeviceEvents>,
    poller: Poller,
    wake: Wake,
    chain: DescChain,
    scratch: Vec<u8>,
    complaints: Complaints,
}

impl ConsoleWorker {
    /// A worker over the ports' backends; registers the wake fd.
    pub(super) fn new(s: WorkerSetup) -> Self {
        let control = s
            .control
            .unwrap_or_else(|| Control::new(s.meta.iter().map(|m| m.config.clone()).collect()));
        // Port 0 as the configuration space has it (no spurious change
        // notification); the others as announced (RESIZE is deduplicated).
        let mut sizes: Vec<_> = s.meta.iter().map(|m| m.size).collect();
        if let Some(s0) = sizes.first_mut() {
            *s0 = unpack_size(s.config_size.load(Ordering::Acquire)).or(*s0);
        }
        let mut w = Self {
            tx: s.io.iter().map(|_| TxState::default()).collect(),
            sizes,
            resets: s.resets,
            shared: s.shared,
            io: s.io,
            meta: s.meta,
            control,
            multiport: s.multiport,
            size_feature: s.size_feature,
            config_size: s.config_size,
            events: s.events,
            poller: s.poller,
            wake: s.wake,
            chain: DescChain::new(),
            scratch: vec![0; 16 * 1024],
            complaints: Complaints::default(),
        };
        w.rearm(false);
        w
    }

    /// Ports whose queues exist: all with multiport, else port 0.
    fn active_ports(&self) -> usize {
        if self.multiport {
            self.io.len()
        } else {
            self.io.len().min(1)
        }
    }

    fn host_side(&self, p: usize) -> HostSide {
        HostSide {
            connected: self.io[p].host_connected(),
            size: self.sizes[p],
        }
    }

    /// Emergency writes made while this worker runs go to port 0.
    fn take_emergency(&mut self) {
        let bytes = std::mem::take(&mut lock(&self.shared).emerg);
        if let Some(io) = self.io.first_mut() {
            io.push_backlog(&bytes);
        }
    }

    /// Follows terminal sizes (§5.3.6 step 3; RESIZE in §5.3.6.2): port 0's
    /// goes to the configuration space, announced with a configuration
    /// change notification when F_SIZE is in use without multiport; with
    /// multiport, [`Control::sync_port`] sends RESIZE.
    fn follow_sizes(&mut self) {
        for p in 0..self.active_ports() {
            if !self.meta[p].follow_size {
                continue;
            }
            let now = self.io[p].window_size();
            if now.is_none() || now == self.sizes[p] {
                continue;
            }
            self.sizes[p] = now;
            if p == 0 {
                self.config_size.store(pack_size(now), Ordering::Release);
                if self.size_feature && !self.multiport {
                    self.events.config_changed();
                }
            }
        }
    }

    /// Driver → device control messages (§5.3.6.2).
    fn control_transmit(&mut self, qs: &mut QueueSet<'_>) -> Result<(), DeviceError> {
        let Some(mut q) = qs.get(CONSOLE_CONTROL_TRANSMITQ) else {
            return Ok(());
        };
        if q.queue().is_broken() {
            return Ok(());
        }
        let mem = q.mem();
        loop {
            while q.pop_into(&mut self.chain)? {
                let mut buf = [0u8; CONSOLE_CONTROL_SIZE];
                let n = match self.chain.reader(mem).read(&mut buf) {
                    Ok(n) => n,
                    Err(e) => return Err(q.chain_error(e)),
                };
                if self.chain.writable_len() > 0 {
                    self.complaints.log(format_args!(
                        "device-writable buffer in the control transmitq; ignoring that part"
                    ));
                }
                let hosts: Vec<HostSide> = (0..self.io.len()).map(|p| self.host_side(p)).collect();
                self.control.handle(&buf[..n], |p| hosts[p]);
                q.add_used(self.chain.token(), 0)?;
            }
            if !q.enable_notification()? {
                break;
            }
        }
        q.signal()
    }

    /// Device → driver control messages, while the driver offers buffers.
    fn control_receive(&mut self, qs: &mut QueueSet<'_>) -> Result<(), DeviceError> {
        let Some(mut q) = qs.get(CONSOLE_CONTROL_RECEIVEQ) else {
            return Ok(());
        };
        if q.queue().is_broken() {
            return Ok(());
        }
        let mem = q.mem();
        while let Some(msg) = self.control.front() {
            let bytes = msg.encode();
            if !q.pop_into(&mut self.chain)? {
                if q.enable_notification()? {
                    continue;
                }
                break;
            }
            let mut w = self.chain.writer(mem);
            if w.remaining() < CONSOLE_CONTROL_SIZE {
                // The message waits for a usable buffer.
                self.complaints.log(format_args!(
                    "control receiveq buffer of {} bytes cannot hold a message",
                    w.remaining()
                ));
                q.add_used(self.chain.token(), 0)?;
                continue;
            }
            let n = match w.write(&bytes) {
                Ok(n) => n,
                Err(e) => return Err(q.chain_error(e)),
            };
            if n < bytes.len() {
                self.complaints.log(format_args!(
                    "control message for port {} truncated to {n} bytes by a short buffer",
                    msg.id
                ));
            }
            self.control.pop_front();
            q.add_used(self.chain.token(), n as u32)?;
        }
        q.signal()
    }

    /// Registers what each active port can act on; `busy` means work was
    /// left over. Wakes itself when needed.
    fn rearm(&mut self, mut busy: bool) {
        for io in &mut self.io {
            for fd in io.take_closed_fds() {
                self.poller.forget(fd);
            }
        }
        let mut want: BTreeMap<RawFd, u32> = BTreeMap::new();
        want.insert(self.wake.fd(), EPOLLIN);
        for p in 0..self.active_ports() {
            let io = &self.io[p];
            if io.in_room() {
                if let Some(fd) = io.input_fd() {
                    *want.entry(fd).or_default() |= EPOLLIN;
                }
            }
            if self.tx[p].busy() || io.has_backlog() {
                match io.output_fd() {
                    Some(fd) => *want.entry(fd).or_default() |= EPOLLOUT,
                    // The next call drops the output.
                    None => busy = true,
                }
            }
            if let Some(fd) = io.listener_fd() {
                *want.entry(fd).or_default() |= EPOLLIN;
            }
        }
        if self.poller.apply(&want) || busy {
            self.wake.ring();
        }
    }
}

fn note(first: &mut Option<DeviceError>, r: Result<(), DeviceError>) {
    if let Err(e) = r {
        first.get_or_insert(e);
    }
}

impl QueueWorker for ConsoleWorker {
    /// The epoll fd (constant for the worker's life).
    fn event_fds(&self) -> Vec<RawFd> {
        vec![self.poller.fd()]
    }

    fn process(&mut self, qs: &mut QueueSet<'_>) -> Result<(), DeviceError> {
        let mut first = None;
        let mut busy = false;
        // Emergency writers ring the wake after queueing their bytes.
        if self.wake.drain() {
            self.take_emergency();
        }
        self.follow_sizes();
        if self.multiport {
            let r = self.control_transmit(qs);
            note(&mut first, r);
        }
        for p in 0..self.active_ports() {
            let (rx, tx) = match (port_receiveq(p as u32), port_transmitq(p as u32)) {
                (Some(rx), Some(tx)) => (rx, tx),
                _ => continue,
            };
            self.io[p].accept();
            let r = data::transmit(
                qs.get(tx),
                &mut self.io[p],
                &mut self.tx[p],
                &mut self.scratch,
                &mut self.complaints,
            );
            note(&mut first, r);
            let deliver = !self.multiport || self.control.deliverable(p);
            match data::receive(
                qs.get(rx),
                &mut self.io[p],
                &mut self.chain,
                deliver,
                &mut self.complaints,
            ) {
                Ok(b) => busy |= b,
                Err(e) => note(&mut first, Err(e)),
            }
        }
        if self.multiport {
            for p in 0..self.io.len() {
                let host = self.host_side(p);
                self.control.sync_port(p, &host);
            }
            let r = self.control_receive(qs);
            note(&mut first, r);
        }
        self.rearm(busy);
        first.map_or(Ok(()), Err)
    }

    fn quiesce(&mut self, qs: &mut QueueSet<'_>) -> Result<(), DeviceError> {
        let mut first = None;
        for p in 0..self.active_ports() {
            let Some(tx) = port_transmitq(p as u32) else {
                continue;
            };
            let r = data::abandon(
                qs.get(tx),
                &mut self.io[p],
                &mut self.tx[p],
                &mut self.scratch,
            );
            note(&mut first, r);
        }
        first.map_or(Ok(()), Err)
    }
}

impl Drop for ConsoleWorker {
    /// Gives the backends (with their buffered input and output, and any
    /// emergency bytes not taken yet) and the control state back to the
    /// device for the next worker.
    fn drop(&mut self) {
        let mut io = std::mem::take(&mut self.io);
        let control = std::mem::replace(&mut self.control, Control::new(Vec::new()));
        let mut shared = lock(&self.shared);
        if let Some(port0) = io.first_mut() {
            let emerg = std::mem::take(&mut shared.emerg);
            port0.push_backlog(&emerg);
        }
        shared.ports = Some(io);
        if shared.resets == self.resets {
            shared.control = Some(control);
        }
    }
}

/// Bytes of emergency output a running worker may have waiting.
pub(super) const EMERG_MAX: usize = OUT_BACKLOG_MAX;
