//! The event queue (VIRTIO 1.4 §5.6.6.3): hot-plug events waiting for a
//! driver buffer, the "events missed" flag, and the eventfd that wakes
//! the event worker when the hot-plug handle queues an event.
//!
//! Policy: like the spec's reference behaviour, the device does not hold
//! events for an empty eventq. When the event worker has events and finds
//! no buffer, it drops them and remembers that events were missed; the
//! next event it delivers carries `VIRTIO_SCSI_T_EVENTS_MISSED`, and if
//! there is none, the next buffer the driver makes available is used for a
//! `VIRTIO_SCSI_T_NO_EVENT | VIRTIO_SCSI_T_EVENTS_MISSED` event. A buffer
//! shorter than `struct virtio_scsi_event` is returned at once holding as
//! much of a `VIRTIO_SCSI_T_NO_EVENT` event as fits.
//!
//! Trust and panic contract: buffers come from the driver; only their
//! writable part is used, through the chain writer. Nothing here panics.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};

use ringwork_queue::device::DescChain;
use ringwork_spec::scsi::{
    ScsiEvent, SCSI_EVENT_SIZE, VIRTIO_SCSI_T_EVENTS_MISSED, VIRTIO_SCSI_T_NO_EVENT,
};

use super::lun::single_level_lun;
use super::sys::EventFd;
use crate::model::{DeviceError, QueueCtx};

/// Most events kept waiting for the worker (older ones are dropped and
/// reported as missed).
pub const MAX_PENDING_EVENTS: usize = 64;

/// One event: `event`, target, LUN, `reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Event {
    /// `VIRTIO_SCSI_T_*`.
    pub event: u32,
    /// Target.
    pub target: u8,
    /// LUN.
    pub lun: u16,
    /// Event-specific reason.
    pub reason: u32,
}

impl Event {
    fn bytes(&self, missed: bool) -> [u8; SCSI_EVENT_SIZE] {
        let mut b = [0u8; SCSI_EVENT_SIZE];
        if let Ok(mut e) = ScsiEvent::new_checked(&mut b[..]) {
            e.set_event(
                self.event
                    | if missed {
                        VIRTIO_SCSI_T_EVENTS_MISSED
                    } else {
                        0
                    },
            );
            if self.event != VIRTIO_SCSI_T_NO_EVENT {
                let [a, b] = single_level_lun(self.lun);
                e.set_lun([1, self.target, a, b, 0, 0, 0, 0]);
            }
            e.set_reason(self.reason);
        }
        b
    }
}

#[derive(Debug, Default)]
struct State {
    pending: VecDeque<Event>,
    missed: bool,
}

/// The device's event state. See the [module docs](self).
#[derive(Debug)]
pub(crate) struct Events {
    state: Mutex<State>,
    wake: EventFd,
}

impl Events {
    /// Empty, with a fresh wake-up eventfd.
    pub(crate) fn new() -> std::io::Result<Self> {
        Ok(Self {
            state: Mutex::default(),
            wake: EventFd::new()?,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The fd the event worker waits on.
    pub(crate) fn fd(&self) -> std::os::fd::RawFd {
        self.wake.fd()
    }

    /// Queues an event and wakes the worker.
    pub(crate) fn push(&self, e: Event) {
        let mut s = self.lock();
        if s.pending.len() == MAX_PENDING_EVENTS {
            s.pending.pop_front();
            s.missed = true;
        }
        s.pending.push_back(e);
        drop(s);
        self.wake.signal();
    }

    /// Forgets everything (device reset).
    pub(crate) fn reset(&self) {
        *self.lock() = State::default();
        self.wake.drain();
    }

    /// Delivers what can be delivered on the event queue `q`.
    pub(crate) fn deliver(
        &self,
        q: &mut QueueCtx<'_>,
        chain: &mut DescChain,
    ) -> Result<(), DeviceError> {
        self.wake.drain();
        let mem = q.mem();
        let mut s = self.lock();
        loop {
            let next = match s.pending.front() {
                Some(e) => *e,
                None if s.missed => Event {
                    event: VIRTIO_SCSI_T_NO_EVENT,
                    target: 0,
                    lun: 0,
                    reason: 0,
                },
                None => return Ok(()),
            };
            if !q.pop_into(chain)? {
                if !s.pending.is_empty() {
                    tracing::info!(
                        dropped = s.pending.len(),
                        "SCSI events dropped: no eventq buffer"
                    );
                    s.pending.clear();
                    s.missed = true;
                }
                return Ok(());
            }
            let mut w = chain.writer(mem);
            if w.remaining() < SCSI_EVENT_SIZE {
                let dummy = Event {
                    event: VIRTIO_SCSI_T_NO_EVENT,
                    target: 0,
                    lun: 0,
                    reason: 0,
                }
                .bytes(false);
                let n = w.remaining();
                if let Err(e) = w.write(&dummy[..n]) {
                    return Err(q.chain_error(e));
                }
                let len = w.bytes_written();
                q.add_used(chain.token(), len)?;
                continue;
            }
            if let Err(e) = w.write(&next.bytes(s.missed)) {
                return Err(q.chain_error(e));
            }
            let len = w.bytes_written();
            q.add_used(chain.token(), len)?;
            s.missed = false;
            s.pending.pop_front();
        }
    }
}
