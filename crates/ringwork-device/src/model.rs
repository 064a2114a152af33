//! The threaded device model every ringwork device implements.
//!
//! A [`Device`] is the control-path object: it says what it offers (type,
//! features, queues, configuration space) and, when the driver starts its
//! queues, creates [`QueueWorker`]s, one per group of queues given by
//! [`Device::worker_map`]. A host (the vhost-user backend, or the test
//! harness) runs each worker on its own thread: whenever a queue of the
//! group is kicked, or one of the worker's own file descriptors
//! ([`QueueWorker::event_fds`]) becomes readable, it calls
//! [`QueueWorker::process`] with the group's running queues.
//!
//! Trust and panic contract: everything read from guest memory is
//! peer-controlled. Queue-level errors (a malformed ring) come back from
//! [`QueueCtx`] methods as [`DeviceQueueError`]s and mark that queue broken;
//! request-level errors (a malformed request header in a well-formed chain)
//! are answered with the device type's error status. Workers never panic on
//! peer input.

use std::os::fd::RawFd;
use std::sync::Arc;

use ringwork_queue::device::{DescChain, DeviceQueue, DeviceQueueError, UsedToken};
use ringwork_queue::mmap::GuestMemoryMmap;
use ringwork_spec::device_id::DeviceType;

/// Guest memory as devices see it: mmap'd regions at guest addresses.
pub type Memory = GuestMemoryMmap;

/// Errors of the device model.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// A ring-level error on one queue (the queue is now broken).
    #[error("queue {queue}: {source}")]
    Queue {
        /// Queue index.
        queue: u16,
        /// What went wrong.
        #[source]
        source: DeviceQueueError,
    },
    /// The host backend failed (a file, a socket, io_uring).
    #[error("{what}: {source}")]
    Io {
        /// What the device was doing.
        what: &'static str,
        /// The operating-system error.
        #[source]
        source: std::io::Error,
    },
    /// The driver asked for something this device does not support.
    #[error("unsupported: {0}")]
    Unsupported(&'static str),
}

/// Tells the driver that something happened (a used-buffer notification:
/// an eventfd write for vhost-user, an interrupt for an in-process VMM).
pub trait Notify: Send + Sync {
    /// Sends the notification. Errors are the host's (e.g. a closed fd).
    fn notify(&self) -> std::io::Result<()>;
}

/// Device-initiated events that go to the driver outside the queues.
pub trait DeviceEvents: Send + Sync {
    /// The configuration space changed (VIRTIO 1.4 §2.5): send a
    /// configuration change notification.
    fn config_changed(&self);
    /// The device hit an error it cannot recover from without a reset
    /// (VIRTIO 1.4 §2.1.2: DEVICE_NEEDS_RESET).
    fn needs_reset(&self, reason: &str);
}

/// Device events that go nowhere (for hosts with no such channel).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoEvents;

impl DeviceEvents for NoEvents {
    fn config_changed(&self) {}
    fn needs_reset(&self, _reason: &str) {}
}

/// A device type's control path. See the [module docs](self).
pub trait Device: Send + Sync + 'static {
    /// The VIRTIO device type.
    fn device_type(&self) -> DeviceType;
    /// Every feature bit offered, device-specific and reserved (VERSION_1,
    /// ring features such as RING_PACKED, EVENT_IDX, INDIRECT_DESC).
    fn features(&self) -> u64;
    /// The number of queues.
    fn num_queues(&self) -> u16;
    /// The largest queue size the device accepts.
    fn max_queue_size(&self) -> u16 {
        1024
    }
    /// The configuration space as it reads now, all of it (the host
    /// serves partial reads from it).
    fn config(&self) -> Vec<u8>;
    /// A driver write to the configuration space. Default: ignored, as the
    /// spec asks of read-only fields.
    fn write_config(&self, offset: u32, data: &[u8]) {
        let _ = (offset, data);
    }
    /// The driver accepted `features` (a subset of [`Self::features`]).
    /// Called before any worker starts.
    fn set_features(&self, features: u64) {
        let _ = features;
    }
    /// Which queues each worker thread serves; every queue in exactly one
    /// group. Default: one worker per queue.
    fn worker_map(&self) -> Vec<Vec<u16>> {
        (0..self.num_queues()).map(|q| vec![q]).collect()
    }
    /// Creates the worker for a group of queues, when the first of them
    /// starts. `features` are the negotiated features; `events` reaches the
    /// driver outside the queues.
    fn start_worker(
        &self,
        queues: &[u16],
        features: u64,
        events: Arc<dyn DeviceEvents>,
    ) -> Result<Box<dyn QueueWorker>, DeviceError>;
    /// The host put queue `index` into (`true`) or took it out of
    /// (`false`) its worker's running set: a vhost-user ring that is both
    /// started (SET_VRING_KICK) and enabled (SET_VRING_ENABLE, once
    /// VHOST_USER_F_PROTOCOL_FEATURES is negotiated), or stopped
    /// (GET_VRING_BASE, reset, disconnect). Devices whose data path
    /// depends on which queues the frontend uses (a network device whose
    /// control queue the frontend keeps to itself) watch this. Default:
    /// nothing.
    fn queue_running(&self, index: u16, running: bool) {
        let _ = (index, running);
    }
    /// The device is reset: forget negotiated state.
    fn reset(&self) {}
}

/// The data path of a group of queues. See the [module docs](self).
pub trait QueueWorker: Send {
    /// File descriptors this worker waits on besides the queue kicks
    /// (input sources, I/O completion eventfds). Level-triggered: the host
    /// calls [`Self::process`] while one is readable. The list is
    /// re-queried after every process call, so a worker may change it
    /// (e.g. leave out an input fd while it has nowhere to put the input).
    fn event_fds(&self) -> Vec<RawFd> {
        Vec::new()
    }
    /// Processes whatever is ready on `queues`: available buffers, input,
    /// I/O completions. Called after a kick, when an event fd is readable,
    /// and once when a queue starts.
    fn process(&mut self, queues: &mut QueueSet<'_>) -> Result<(), DeviceError>;
    /// The queues are about to stop (GET_VRING_BASE, reset, disconnect):
    /// finish or abandon in-flight work so that every popped chain has been
    /// completed or given back unused ([`QueueCtx::give_back`]). Default:
    /// nothing is ever left in flight between calls to [`Self::process`].
    fn quiesce(&mut self, queues: &mut QueueSet<'_>) -> Result<(), DeviceError> {
        let _ = queues;
        Ok(())
    }
}

/// A record of in-flight buffers kept outside the process, so that a
/// restarted device can resubmit them (vhost-user INFLIGHT_SHMFD). Hosts
/// attach one to a [`RunningQueue`]; [`QueueCtx`] calls it.
pub trait InflightLog: Send {
    /// A chain with head (split) or buffer id (packed) `id` was popped.
    fn popped(&mut self, id: u16);
    /// `chain` was popped. [`QueueCtx`] calls this; the default records
    /// the id with [`Self::popped`]. A log that keeps copies of the
    /// descriptors (packed rings, whose slots the used entries overwrite)
    /// reads them from the chain
    /// ([`DescChain::packed_descriptors`](ringwork_queue::device::DescChain::packed_descriptors)).
    fn popped_chain(&mut self, chain: &DescChain) {
        self.popped(chain.id());
    }
    /// These buffers (tokens and lengths) are about to be published as
    /// used.
    fn completing(&mut self, batch: &[(UsedToken, u32)]);
    /// They were published; the device's used index is now `used_idx`.
    fn completed(&mut self, batch: &[(UsedToken, u32)], used_idx: u16);
}

/// One running queue, as hosts hand it to workers.
pub struct RunningQueue {
    /// The queue index.
    pub index: u16,
    /// The device side of the ring.
    pub queue: DeviceQueue,
    /// The used-buffer notification.
    pub call: Option<Arc<dyn Notify>>,
    /// Whether used buffers were added since the last notification check.
    pub pending: bool,
    /// Chains to hand out before new ones (resubmitted in-flight buffers).
    pub resubmit: std::collections::VecDeque<DescChain>,
    /// The in-flight record, when the host keeps one.
    pub inflight: Option<Box<dyn InflightLog>>,
}

impl RunningQueue {
    /// A running queue with nothing to resubmit and no in-flight record.
    pub fn new(index: u16, queue: DeviceQueue, call: Option<Arc<dyn Notify>>) -> Self {
        Self {
            index,
            queue,
            call,
            pending: false,
            resubmit: Default::default(),
            inflight: None,
        }
    }
}

impl core::fmt::Debug for RunningQueue {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RunningQueue")
            .field("index", &self.index)
            .field("queue", &self.queue)
            .field("pending", &self.pending)
            .finish()
    }
}

/// The running queues of one worker group, with guest memory.
pub struct QueueSet<'a> {
    mem: &'a Memory,
    queues: &'a mut [RunningQueue],
    polling: bool,
}

impl<'a> QueueSet<'a> {
    /// A set over `queues` (those of the group that are running).
    pub fn new(mem: &'a Memory, queues: &'a mut [RunningQueue]) -> Self {
        Self {
            mem,
            queues,
            polling: false,
        }
    }

    /// A set for a host that is polling the rings: available-buffer
    /// notifications are disabled on every queue (a driver's kick would
    /// only cost it a system call), and [`QueueCtx::enable_notification`]
    /// keeps them disabled. When it stops polling, the host calls
    /// [`Self::resume_notifications`] and then the worker once more with
    /// an ordinary set, so that nothing made available meanwhile is
    /// missed. A ring that cannot be written is left for the worker to
    /// find (its next pop fails).
    pub fn polling(mem: &'a Memory, queues: &'a mut [RunningQueue]) -> Self {
        for q in queues.iter_mut() {
            if q.queue.notification_enabled() && !q.queue.is_broken() {
                let _ = q.queue.disable_notification(mem);
            }
        }
        Self {
            mem,
            queues,
            polling: true,
        }
    }

    /// Enables available-buffer notifications again on every queue (after
    /// polling; see [`Self::polling`]).
    pub fn resume_notifications(&mut self) {
        for q in self.queues.iter_mut() {
            if !q.queue.notification_enabled() && !q.queue.is_broken() {
                let _ = q.queue.enable_notification(self.mem);
            }
        }
    }

    /// Whether the host is polling the rings ([`Self::polling`]).
    pub fn is_polling(&self) -> bool {
        self.polling
    }

    /// Guest memory.
    pub fn mem(&self) -> &'a Memory {
        self.mem
    }

    /// The running queue `index`, or `None` when it is not running.
    pub fn get(&mut self, index: u16) -> Option<QueueCtx<'_>> {
        let mem = self.mem;
        let polling = self.polling;
        self.queues
            .iter_mut()
            .find(|q| q.index == index)
            .map(|q| QueueCtx { mem, q, polling })
    }

    /// The indices of the running queues.
    pub fn running(&self) -> impl Iterator<Item = u16> + '_ {
        self.queues.iter().map(|q| q.index)
    }

    /// Sends every notification still pending (see [`QueueCtx::signal`]).
    pub fn signal_all(&mut self) -> Result<(), DeviceError> {
        let mem = self.mem;
        let polling = self.polling;
        for q in self.queues.iter_mut() {
            QueueCtx { mem, q, polling }.signal()?;
        }
        Ok(())
    }
}

/// One running queue with guest memory: pop, complete, notify.
pub struct QueueCtx<'a> {
    mem: &'a Memory,
    q: &'a mut RunningQueue,
    polling: bool,
}

impl<'a> QueueCtx<'a> {
    /// The queue index.
    pub fn index(&self) -> u16 {
        self.q.index
    }

    /// Guest memory.
    pub fn mem(&self) -> &'a Memory {
        self.mem
    }

    /// The device side of the ring, for operations not wrapped here.
    pub fn queue(&mut self) -> &mut DeviceQueue {
        &mut self.q.queue
    }

    fn err(&self, source: DeviceQueueError) -> DeviceError {
        DeviceError::Queue {
            queue: self.q.index,
            source,
        }
    }

    /// Marks the queue broken because a chain's buffers were unusable
    /// (e.g. a segment outside guest memory), returning the error to
    /// propagate.
    pub fn chain_error(&mut self, e: ringwork_queue::device::ChainError) -> DeviceError {
        self.q.queue.mark_broken();
        self.err(e.into())
    }

    /// Pops the next available chain into `chain`; `false` when none.
    /// Resubmitted in-flight chains come first.
    pub fn pop_into(&mut self, chain: &mut DescChain) -> Result<bool, DeviceError> {
        Ok(self.pop_burst(core::slice::from_mut(chain))? == 1)
    }

    /// Pops up to `chains.len()` chains into `chains`; returns how many
    /// (the first ones). Resubmitted in-flight chains come first. One ring
    /// translation per burst ([`DeviceQueue::pop_burst`]).
    pub fn pop_burst(&mut self, chains: &mut [DescChain]) -> Result<usize, DeviceError> {
        let mut n = 0;
        while n < chains.len() {
            let Some(c) = self.q.resubmit.pop_front() else {
                break;
            };
            if let Some(slot) = chains.get_mut(n) {
                *slot = c;
            }
            n += 1;
        }
        let rest = chains.get_mut(n..).unwrap_or_default();
        let got = self
            .q
            .queue
            .pop_burst(self.mem, rest)
            .map_err(|e| self.err(e))?;
        if let Some(log) = self.q.inflight.as_mut() {
            for c in rest.iter().take(got) {
                log.popped_chain(c);
            }
        }
        Ok(n + got)
    }

    /// Pops the next available chain.
    pub fn pop(&mut self) -> Result<Option<DescChain>, DeviceError> {
        let mut c = DescChain::new();
        Ok(self.pop_into(&mut c)?.then_some(c))
    }

    /// Gives the last chains popped back to the ring unused
    /// ([`DeviceQueue::give_back`]): `Ok(false)`, changing nothing, when
    /// the host keeps an in-flight record or has chains to resubmit (their
    /// record would have to be rewound too); the caller then completes the
    /// chains instead.
    pub fn give_back(&mut self, tokens: &[UsedToken]) -> Result<bool, DeviceError> {
        if self.q.inflight.is_some() || !self.q.resubmit.is_empty() {
            return Ok(false);
        }
        self.q
            .queue
            .give_back(tokens)
            .map(|()| true)
            .map_err(|e| self.err(e))
    }

    /// Completes a chain with `len` bytes written. The notification is
    /// sent by [`Self::signal`] (or [`QueueSet::signal_all`]).
    pub fn add_used(&mut self, token: UsedToken, len: u32) -> Result<(), DeviceError> {
        self.add_used_batch(&[(token, len)])
    }

    /// Completes several chains with one publication.
    pub fn add_used_batch(&mut self, batch: &[(UsedToken, u32)]) -> Result<(), DeviceError> {
        if batch.is_empty() {
            return Ok(());
        }
        if let Some(log) = self.q.inflight.as_mut() {
            log.completing(batch);
        }
        self.q
            .queue
            .add_used_batch(self.mem, batch)
            .map_err(|e| self.err(e))?;
        self.q.pending = true;
        if let Some(log) = self.q.inflight.as_mut() {
            log.completed(batch, self.q.queue.position().next_used);
        }
        Ok(())
    }

    /// Sends the used-buffer notification if buffers were completed since
    /// the last one and the driver wants it (EVENT_IDX or flags).
    pub fn signal(&mut self) -> Result<(), DeviceError> {
        if !self.q.pending {
            return Ok(());
        }
        self.q.pending = false;
        let want = self
            .q
            .queue
            .needs_notification(self.mem)
            .map_err(|e| self.err(e))?;
        if want {
            if let Some(call) = &self.q.call {
                call.notify().map_err(|source| DeviceError::Io {
                    what: "used buffer notification",
                    source,
                })?;
            }
        }
        Ok(())
    }

    /// Re-enables available-buffer notifications; `true` when buffers
    /// arrived meanwhile (keep popping). While the host polls
    /// ([`QueueSet::polling`]) notifications stay disabled and this
    /// returns `false`: the host looks at the ring again soon anyway.
    pub fn enable_notification(&mut self) -> Result<bool, DeviceError> {
        if self.polling {
            return Ok(false);
        }
        self.q
            .queue
            .enable_notification(self.mem)
            .map_err(|e| self.err(e))
    }

    /// Disables available-buffer notifications (a hint to the driver).
    pub fn disable_notification(&mut self) -> Result<(), DeviceError> {
        self.q
            .queue
            .disable_notification(self.mem)
            .map_err(|e| self.err(e))
    }
}
