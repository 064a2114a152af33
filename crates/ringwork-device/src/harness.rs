//! An in-process fake driver for testing devices (the `test-utils`
//! feature): guest memory, one [`DriverQueue`] per device queue, and a
//! runner that calls the device's workers the way a host would.
//!
//! ```
//! # use ringwork_device::harness::Harness;
//! # use ringwork_device::rng::Rng;
//! # use ringwork_queue::RingFormat;
//! let mut h = Harness::new(Rng::new(), RingFormat::Split).unwrap();
//! let t = h.submit(0, &[], &[64]).unwrap();
//! h.run().unwrap();
//! let done = h.completed(0).unwrap();
//! assert_eq!(done[0].0, t);
//! assert_eq!(done[0].1.len(), 64);
//! ```
//!
//! Panic contract: this is test code; it returns errors for device
//! misbehaviour (so tests can assert on them) but panics on harness misuse.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use ringwork_queue::device::DeviceQueue;
use ringwork_queue::driver::{DriverQueue, DriverQueueConfig};
use ringwork_queue::mem::GuestMemory;
use ringwork_queue::mmap::MmapRegion;
use ringwork_queue::{QueueFeatures, RingFormat, Segment};
use ringwork_spec::features::VIRTIO_F_RING_PACKED;

use crate::model::{
    Device, DeviceError, DeviceEvents, Memory, QueueSet, QueueWorker, RunningQueue,
};

/// Size of the harness's guest memory.
pub const MEM_SIZE: usize = 64 << 20;
/// Where the harness puts buffers' data (its rings are below).
pub const DATA_BASE: u64 = 16 << 20;

/// Records device events.
#[derive(Debug, Default)]
pub struct EventLog {
    /// Configuration change notifications.
    pub config_changes: AtomicUsize,
    /// Needs-reset reasons.
    pub needs_reset: Mutex<Vec<String>>,
}

impl DeviceEvents for EventLog {
    fn config_changed(&self) {
        self.config_changes.fetch_add(1, Ordering::SeqCst);
    }
    fn needs_reset(&self, reason: &str) {
        self.needs_reset.lock().unwrap().push(reason.to_owned());
    }
}

struct Group {
    worker: Box<dyn QueueWorker>,
    queues: Vec<RunningQueue>,
}

/// A token identifying a submitted buffer.
pub type Token = u64;

struct Pending {
    /// (guest address, len) of each writable segment.
    writable: Vec<(u64, u32)>,
}

/// The fake driver. See the [module docs](self).
pub struct Harness<D: Device> {
    device: Arc<D>,
    mem: Arc<Memory>,
    drivers: Vec<DriverQueue<Arc<Memory>, (Token, Pending)>>,
    groups: Vec<Group>,
    next_data: u64,
    next_token: Token,
    /// Device events seen.
    pub events: Arc<EventLog>,
}

impl<D: Device> core::fmt::Debug for Harness<D> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Harness").finish_non_exhaustive()
    }
}

impl<D: Device> Harness<D> {
    /// Negotiates every feature the device offers that the harness
    /// supports, with queues of 256 entries in `format`.
    pub fn new(device: D, format: RingFormat) -> Result<Self, DeviceError> {
        let offered = device.features();
        let mut features = offered & !(1 << VIRTIO_F_RING_PACKED);
        if format == RingFormat::Packed {
            assert!(
                offered & (1 << VIRTIO_F_RING_PACKED) != 0,
                "device does not offer RING_PACKED"
            );
            features |= 1 << VIRTIO_F_RING_PACKED;
        }
        Self::with_features(device, features, 256)
    }

    /// Negotiates exactly `features`, with queues of `size` entries.
    pub fn with_features(device: D, features: u64, size: u16) -> Result<Self, DeviceError> {
        let mut mem = Memory::new();
        mem.add_region(
            0,
            MmapRegion::anonymous(MEM_SIZE).map_err(|source| DeviceError::Io {
                what: "harness memory",
                source,
            })?,
        )
        .expect("fresh memory");
        let mem = Arc::new(mem);
        let device = Arc::new(device);
        device.set_features(features);
        let (format, qf) = QueueFeatures::from_bits(features);
        let size = size.min(device.max_queue_size());
        let mut drivers = Vec::new();
        for q in 0..device.num_queues() {
            let mut cfg = DriverQueueConfig::new(format, size, qf);
            cfg.index = q;
            drivers
                .push(DriverQueue::new(mem.clone(), cfg).expect("driver queue in harness memory"));
        }
        let events = Arc::new(EventLog::default());
        let mut groups = Vec::new();
        for group in device.worker_map() {
            let worker = device.start_worker(&group, features, events.clone())?;
            let queues = group
                .iter()
                .map(|&q| {
                    let d = &drivers[usize::from(q)];
                    RunningQueue::new(
                        q,
                        DeviceQueue::new(format, d.size(), d.addresses(), qf)
                            .expect("driver queue layout is valid"),
                        None,
                    )
                })
                .collect();
            groups.push(Group { worker, queues });
        }
        Ok(Self {
            device,
            mem,
            drivers,
            groups,
            next_data: DATA_BASE,
            next_token: 1,
            events,
        })
    }

    /// The device.
    pub fn device(&self) -> &D {
        &self.device
    }

    /// Guest memory.
    pub fn mem(&self) -> &Memory {
        &self.mem
    }

    fn alloc_data(&mut self, len: usize) -> u64 {
        let addr = self.next_data;
        let len = (len as u64 + 63) & !63;
        if addr + len > MEM_SIZE as u64 {
            self.next_data = DATA_BASE;
            return self.alloc_data(len as usize);
        }
        self.next_data += len.max(64);
        addr
    }

    /// Makes a buffer available on `queue`: one readable segment per entry
    /// of `out` (with those bytes), one writable segment per entry of
    /// `inp` (of that size, zero-filled). Does not run the device.
    pub fn submit(&mut self, queue: u16, out: &[&[u8]], inp: &[u32]) -> Option<Token> {
        let mut segs = Vec::new();
        for o in out {
            let a = self.alloc_data(o.len());
            self.mem.slice(a, o.len())?.write_bytes(0, o).ok()?;
            segs.push(Segment::new(a, o.len() as u32));
        }
        let mut writable = Vec::new();
        let mut isegs = Vec::new();
        for &l in inp {
            let a = self.alloc_data(l as usize);
            self.mem.slice(a, l as usize)?.fill(0, l as usize, 0).ok()?;
            isegs.push(Segment::new(a, l));
            writable.push((a, l));
        }
        let token = self.next_token;
        self.next_token += 1;
        self.drivers[usize::from(queue)]
            .add(&segs, &isegs, (token, Pending { writable }))
            .ok()?;
        Some(token)
    }

    /// Copies `data` into a fresh place in guest memory and returns the
    /// segment holding it (for [`Self::submit_segments`]).
    pub fn put(&mut self, data: &[u8]) -> Segment {
        let a = self.alloc_data(data.len());
        self.mem
            .slice(a, data.len())
            .expect("harness data area")
            .write_bytes(0, data)
            .expect("in bounds");
        Segment::new(a, data.len() as u32)
    }

    /// Makes a buffer of raw segments available on `queue`: `out` are
    /// device-readable, `inp` device-writable. Addresses are not checked
    /// (to test how devices treat bad ones); [`Self::completed`] reads the
    /// writable ones back.
    pub fn submit_segments(
        &mut self,
        queue: u16,
        out: &[Segment],
        inp: &[Segment],
    ) -> Option<Token> {
        let token = self.next_token;
        self.next_token += 1;
        let writable = inp.iter().map(|s| (s.addr, s.len)).collect();
        self.drivers[usize::from(queue)]
            .add(out, inp, (token, Pending { writable }))
            .ok()?;
        Some(token)
    }

    /// Calls `process` on every worker until none completes anything new
    /// (at most a few rounds), then sends pending notifications.
    pub fn run(&mut self) -> Result<(), DeviceError> {
        for g in &mut self.groups {
            let mut set = QueueSet::new(&self.mem, &mut g.queues);
            g.worker.process(&mut set)?;
            set.signal_all()?;
        }
        Ok(())
    }

    /// As [`Self::run`], the way a polling host calls workers
    /// ([`QueueSet::polling`]: available-buffer notifications disabled).
    pub fn run_polling(&mut self) -> Result<(), DeviceError> {
        for g in &mut self.groups {
            let mut set = QueueSet::polling(&self.mem, &mut g.queues);
            g.worker.process(&mut set)?;
            set.signal_all()?;
        }
        Ok(())
    }

    /// What a polling host does when it stops polling: notifications
    /// enabled again ([`QueueSet::resume_notifications`]), then one
    /// ordinary [`Self::run`].
    pub fn end_polling(&mut self) -> Result<(), DeviceError> {
        for g in &mut self.groups {
            QueueSet::new(&self.mem, &mut g.queues).resume_notifications();
        }
        self.run()
    }

    /// Whether the driver side of `queue` would notify the device after
    /// adding buffers now (the device's event suppression as the driver
    /// reads it, VIRTIO 1.4 §2.7.10 / §2.8.10).
    pub fn kick_wanted(&mut self, queue: u16) -> bool {
        self.drivers
            .get_mut(usize::from(queue))
            .is_some_and(|d| d.kick_prepare().unwrap_or(true))
    }

    /// Runs the workers' `quiesce`.
    pub fn quiesce(&mut self) -> Result<(), DeviceError> {
        for g in &mut self.groups {
            let mut set = QueueSet::new(&self.mem, &mut g.queues);
            g.worker.quiesce(&mut set)?;
        }
        Ok(())
    }

    /// The worker of the group holding `queue` (for its event fds).
    pub fn worker_fds(&self) -> Vec<std::os::fd::RawFd> {
        self.groups
            .iter()
            .flat_map(|g| g.worker.event_fds())
            .collect()
    }

    /// Buffers the device completed on `queue`: token and the bytes it
    /// wrote (the first `len` bytes of the writable segments).
    pub fn completed(&mut self, queue: u16) -> Result<Vec<(Token, Vec<u8>)>, String> {
        let mut out = Vec::new();
        let d = &mut self.drivers[usize::from(queue)];
        while let Some(u) = d.pop_used().map_err(|e| e.to_string())? {
            let (token, pending) = u.token;
            let mut left = u.len as usize;
            let mut data = Vec::with_capacity(left);
            for (a, l) in pending.writable {
                if left == 0 {
                    break;
                }
                let n = left.min(l as usize);
                if n == 0 {
                    // An empty segment (whatever its address) holds nothing.
                    continue;
                }
                let mut buf = vec![0; n];
                self.mem
                    .slice(a, n)
                    .ok_or("writable segment outside memory")?
                    .read_bytes(0, &mut buf)
                    .map_err(|e| e.to_string())?;
                data.extend_from_slice(&buf);
                left -= n;
            }
            out.push((token, data));
        }
        Ok(out)
    }

    /// Whether the device marked any queue broken.
    pub fn broken_queues(&self) -> Vec<u16> {
        self.groups
            .iter()
            .flat_map(|g| g.queues.iter())
            .filter(|q| q.queue.is_broken())
            .map(|q| q.index)
            .collect()
    }
}

/// A placeholder worker while a group's worker is being replaced.
struct Stopped;

impl QueueWorker for Stopped {
    fn process(&mut self, _queues: &mut QueueSet<'_>) -> Result<(), DeviceError> {
        Ok(())
    }
}

impl<D: Device> Harness<D> {
    /// Stops every worker (quiesce, then drop) and starts new ones with
    /// `features`, keeping the queues where they are: what a host does when
    /// queues stop and start again (GET_VRING_BASE, then SET_VRING_KICK).
    pub fn restart_workers(&mut self, features: u64) -> Result<(), DeviceError> {
        self.quiesce()?;
        for g in &mut self.groups {
            g.worker = Box::new(Stopped);
        }
        for g in &mut self.groups {
            let queues: Vec<u16> = g.queues.iter().map(|q| q.index).collect();
            g.worker = self
                .device
                .start_worker(&queues, features, self.events.clone())?;
        }
        Ok(())
    }
}

/// Whether `fd` is readable now (a zero-timeout `poll`; a closed
/// descriptor reads as not readable), for tests watching a worker's or a
/// backend's event fd.
pub fn fd_readable(fd: std::os::fd::RawFd) -> bool {
    crate::console::sys::poll_readable_raw(fd).unwrap_or(false)
}
