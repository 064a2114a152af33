//! What the three drivers share: the ring-format preference, device
//! initialization steps (VIRTIO 1.4 §3.1.1) around `ringwork-transport`'s
//! helpers, queue construction, DMA ownership, and the bounded wait for a
//! device.
//!
//! # Trust and panic contract
//! The device is hostile. Queue sizes it reports are clamped to what the
//! driver asked for (and to a power of two for split rings), a missing
//! queue is an error, and every wait for the device is bounded
//! ([`POLL_LIMIT`] rounds of [`Transport::wait_interrupt`]). Nothing here
//! panics on device input.
//!
//! DMA memory the device was told about is never handed back to the [`Dma`]
//! allocator while the device may still use it: drivers keep it in a
//! [`LeakOnDrop`] that forgets (leaks) its contents when a driver is dropped
//! without a successful device reset.

use alloc::vec::Vec;
use core::ops::{Deref, DerefMut};

use ringwork_queue::{
    Dma, DmaBuffer, DriverQueue, DriverQueueConfig, DriverQueueError, MemSlice, QueueFeatures,
    RingFormat,
};
use ringwork_spec::features::{
    FeatureSet, VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC, VIRTIO_F_IN_ORDER,
    VIRTIO_F_RING_PACKED, VIRTIO_F_VERSION_1,
};
use ringwork_spec::status::DeviceStatus;
use ringwork_transport::driver::{self, Transport, TransportError, POLL_LIMIT};

/// Which ring format a driver asks for (VIRTIO 1.4 §2.7 split, §2.8
/// packed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RingPreference {
    /// Packed rings if the device offers `VIRTIO_F_RING_PACKED`, split
    /// rings otherwise.
    #[default]
    Auto,
    /// Split rings, even if packed ones are offered.
    Split,
    /// Packed rings; initialization fails if the device does not offer
    /// them (or is driven through a legacy interface).
    Packed,
}

/// What a driver gives back when it is reset: the transport, the tokens of
/// every request that had not been returned by `poll`, and whether the
/// device reset completed.
///
/// When `reset` is an error, the device may still be using its queues:
/// their memory was not given back to the [`Dma`] allocator (it is leaked).
#[derive(Debug)]
pub struct Detached<T, Tok = ()> {
    /// The transport, to drive the device again (or another driver).
    pub transport: T,
    /// Tokens of requests that were outstanding (or completed but not yet
    /// polled), so nothing is lost.
    pub tokens: Vec<Tok>,
    /// The outcome of the device reset (§2.4).
    pub reset: Result<(), TransportError>,
}

/// Why a driver could not initialize its device (VIRTIO 1.4 §3.1.1).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SetupError {
    /// The transport failed (reset, feature negotiation, queue setup).
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The transport hosts another device type.
    #[error("device type {found} is not the expected {expected}")]
    WrongDevice {
        /// The device id this driver handles.
        expected: u32,
        /// The device id the transport reports.
        found: u32,
    },
    /// [`RingPreference::Packed`] was asked for, but the device does not
    /// offer `VIRTIO_F_RING_PACKED` (or the interface is legacy).
    #[error("packed rings were asked for but not offered")]
    PackedUnavailable,
    /// A queue the driver needs does not exist (maximum size 0).
    #[error("queue {queue} does not exist")]
    MissingQueue {
        /// The queue index.
        queue: u16,
    },
    /// A driver-side queue could not be built.
    #[error("queue {queue}: {source}")]
    Queue {
        /// The queue index.
        queue: u16,
        /// Why.
        source: DriverQueueError,
    },
    /// The DMA allocator could not provide memory the driver needs.
    #[error("DMA allocation of {len} bytes failed")]
    OutOfDmaMemory {
        /// Bytes asked for.
        len: usize,
    },
    /// A configuration field holds a value the driver cannot work with.
    #[error("configuration field {field} = {value}: {reason}")]
    BadConfig {
        /// The field (spec name).
        field: &'static str,
        /// The value read.
        value: u64,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An option the caller gave is unusable.
    #[error("option {option}: {reason}")]
    BadOption {
        /// The option.
        option: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// Why a bounded wait for the device ended without the awaited event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WaitError {
    /// The transport's wait failed (peer gone, or silent).
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The device did not complete the request within [`POLL_LIMIT`]
    /// rounds of waiting.
    #[error("device did not complete the request in time")]
    Timeout,
    /// The device set DEVICE_NEEDS_RESET (§2.1.2).
    #[error("device needs a reset")]
    NeedsReset,
}

/// The ring features every driver here implements, plus
/// `VIRTIO_F_RING_PACKED` unless `pref` is [`RingPreference::Split`].
pub(crate) fn ring_supports(pref: RingPreference) -> FeatureSet {
    let mut s = FeatureSet::from_bits(&[
        VIRTIO_F_VERSION_1,
        VIRTIO_F_EVENT_IDX,
        VIRTIO_F_INDIRECT_DESC,
        VIRTIO_F_IN_ORDER,
    ]);
    if pref != RingPreference::Split {
        s.insert(VIRTIO_F_RING_PACKED);
    }
    s
}

/// Checks the transport hosts device type `expected`.
pub(crate) fn check_device<T: Transport + ?Sized>(t: &T, expected: u32) -> Result<(), SetupError> {
    let found = t.device_type().id();
    if found == expected {
        Ok(())
    } else {
        Err(SetupError::WrongDevice { expected, found })
    }
}

/// The ring format and queue features after negotiation, checked against
/// the preference.
pub(crate) fn ring_format<T: Transport + ?Sized>(
    t: &T,
    features: FeatureSet,
    pref: RingPreference,
) -> Result<(RingFormat, QueueFeatures), SetupError> {
    let (format, qf) = driver::ring_features(t, features);
    if pref == RingPreference::Packed && format != RingFormat::Packed {
        return Err(SetupError::PackedUnavailable);
    }
    Ok((format, qf))
}

/// Sets the FAILED status bit (§3.1.1: "If any of these steps go
/// irrecoverably wrong, the driver SHOULD set the FAILED status bit").
pub(crate) fn set_failed<T: Transport + ?Sized>(t: &mut T) {
    let s = t.status();
    t.set_status(s | DeviceStatus::FAILED);
}

/// The size to give queue `queue`: `wanted` clamped to the device's
/// maximum, rounded down to a power of two for split rings.
pub(crate) fn queue_size<T: Transport + ?Sized>(
    t: &mut T,
    queue: u16,
    wanted: u16,
    format: RingFormat,
) -> Result<u16, SetupError> {
    if wanted == 0 {
        return Err(SetupError::BadOption {
            option: "queue_size",
            reason: "must not be 0",
        });
    }
    let max = t.max_queue_size(queue);
    if max == 0 {
        return Err(SetupError::MissingQueue { queue });
    }
    let size = wanted.min(max).min(0x8000);
    Ok(match format {
        RingFormat::Split => 1u16 << (15 - size.leading_zeros().min(15)),
        RingFormat::Packed => size,
    })
}

/// How a queue uses indirect tables (`None`: never).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Indirect {
    /// Entries per table.
    pub max: u16,
    /// Tables preallocated.
    pub tables: u16,
}

/// Builds queue `index` for this transport and attaches it (§3.1.1 step 7).
pub(crate) fn make_queue<T: Transport + ?Sized, D: Dma, Tok>(
    t: &mut T,
    dma: D,
    index: u16,
    size: u16,
    format: RingFormat,
    qf: QueueFeatures,
    indirect: Option<Indirect>,
) -> Result<DriverQueue<D, Tok>, SetupError> {
    let mut cfg = DriverQueueConfig::new(format, size, qf);
    cfg.index = index;
    cfg.legacy_align = t.legacy_queue_align();
    match indirect {
        Some(i) if i.max > 1 && i.tables > 0 => {
            cfg.indirect_threshold = 2;
            cfg.indirect_max = i.max;
            cfg.indirect_tables = i.tables;
        }
        _ => {
            cfg.indirect_threshold = 0;
            cfg.indirect_tables = 0;
        }
    }
    let q = DriverQueue::new(dma, cfg).map_err(|source| SetupError::Queue {
        queue: index,
        source,
    })?;
    driver::attach_queue(t, &q)?;
    Ok(q)
}

/// A DMA allocation the driver owns; given back to its allocator on drop.
pub(crate) struct DmaRegion<D: Dma> {
    dma: D,
    buf: Option<DmaBuffer>,
}

impl<D: Dma> DmaRegion<D> {
    /// Allocates `len` zeroed bytes aligned to `align`.
    pub(crate) fn new(dma: D, len: usize, align: usize) -> Result<Self, SetupError> {
        let buf = dma
            .alloc(len.max(1), align)
            .ok_or(SetupError::OutOfDmaMemory { len })?;
        Ok(Self {
            dma,
            buf: Some(buf),
        })
    }

    /// The host window on the region.
    #[inline]
    pub(crate) fn slice(&self) -> MemSlice<'_> {
        self.buf
            .as_ref()
            .map_or_else(MemSlice::empty, |b| b.slice())
    }

    /// The device address of byte `offset`.
    #[inline]
    pub(crate) fn addr(&self, offset: usize) -> u64 {
        self.buf
            .as_ref()
            .map_or(0, |b| b.device_addr().wrapping_add(offset as u64))
    }
}

impl<D: Dma> Drop for DmaRegion<D> {
    fn drop(&mut self) {
        if let Some(b) = self.buf.take() {
            self.dma.dealloc(b);
        }
    }
}

/// Holds what the device may access (queues, request memory). Dropped while
/// armed, it forgets its contents instead of freeing them: the device may
/// still write there. [`LeakOnDrop::disarm`] after a successful device
/// reset lets them be freed normally.
pub(crate) struct LeakOnDrop<X: Default> {
    value: X,
    armed: bool,
}

impl<X: Default> LeakOnDrop<X> {
    /// Armed.
    pub(crate) fn new(value: X) -> Self {
        Self { value, armed: true }
    }

    /// The device no longer uses the contents: free them normally.
    pub(crate) fn disarm(&mut self) {
        self.armed = false;
    }
}

impl<X: Default> Deref for LeakOnDrop<X> {
    type Target = X;
    fn deref(&self) -> &X {
        &self.value
    }
}

impl<X: Default> DerefMut for LeakOnDrop<X> {
    fn deref_mut(&mut self) -> &mut X {
        &mut self.value
    }
}

impl<X: Default> Drop for LeakOnDrop<X> {
    fn drop(&mut self) {
        if self.armed {
            core::mem::forget(core::mem::take(&mut self.value));
        }
    }
}

/// Interrupt bookkeeping the blocking waits keep: a configuration change
/// acknowledged while waiting is remembered for the driver to act on.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct IrqState {
    /// A configuration change notification was seen and not yet handled.
    pub config_changed: bool,
}

/// Runs `step` until it yields a value, waiting for the device between
/// tries ([`Transport::wait_interrupt`], then acknowledging the interrupt),
/// at most [`POLL_LIMIT`] times. `step` must re-arm used buffer
/// notifications (`enable_callbacks`) before reporting "nothing yet", so a
/// blocking transport wakes up. A configuration change with
/// DEVICE_NEEDS_RESET set ends the wait.
pub(crate) fn wait_for<T: Transport + ?Sized, R, E: From<WaitError>>(
    t: &mut T,
    irq: &mut IrqState,
    mut step: impl FnMut() -> Result<Option<R>, E>,
) -> Result<R, E> {
    for _ in 0..POLL_LIMIT {
        if let Some(r) = step()? {
            return Ok(r);
        }
        t.wait_interrupt().map_err(WaitError::from)?;
        let cause = t.ack_interrupt();
        if cause.config_changed {
            irq.config_changed = true;
            if t.status().contains(DeviceStatus::DEVICE_NEEDS_RESET) {
                return Err(WaitError::NeedsReset.into());
            }
        }
    }
    Err(WaitError::Timeout.into())
}

/// Pops the next used buffer; when there is none, re-arms used buffer
/// notifications and looks once more (buffers used in between would
/// otherwise raise no notification).
pub(crate) fn pop_or_arm<D: Dma, Tok>(
    q: &mut DriverQueue<D, Tok>,
) -> Result<Option<ringwork_queue::Used<Tok>>, ringwork_queue::UsedError> {
    if let Some(u) = q.pop_used()? {
        return Ok(Some(u));
    }
    if q.enable_callbacks() {
        return q.pop_used();
    }
    Ok(None)
}

/// Sends an available buffer notification if the queue says the device
/// wants one (§2.7.10, §2.8.10).
pub(crate) fn kick<T: Transport + ?Sized, D: Dma, Tok>(
    t: &mut T,
    q: &mut DriverQueue<D, Tok>,
) -> Result<(), ringwork_queue::UsedError> {
    if q.kick_prepare()? {
        t.notify(q.config().index, q.notification_data());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_supports_follows_the_preference() {
        assert!(ring_supports(RingPreference::Auto).contains(VIRTIO_F_RING_PACKED));
        assert!(ring_supports(RingPreference::Packed).contains(VIRTIO_F_RING_PACKED));
        assert!(!ring_supports(RingPreference::Split).contains(VIRTIO_F_RING_PACKED));
        assert!(ring_supports(RingPreference::Split).contains(VIRTIO_F_VERSION_1));
    }
}
