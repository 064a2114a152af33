//! The block device driver (VIRTIO 1.4 §5.2).
//!
//! [`BlkDriver::new`] runs device initialization (§3.1.1): it negotiates
//! the block features it implements ([`BLK_FEATURES`]) and the ring
//! features (VERSION_1, RING_PACKED per [`RingPreference`], EVENT_IDX,
//! INDIRECT_DESC, IN_ORDER), reads the configuration ([`BlkConfig`]),
//! builds and attaches the request queues (one, or up to `num_queues` with
//! `VIRTIO_BLK_F_MQ`), and sets DRIVER_OK.
//!
//! Two ways to do I/O:
//! - non-blocking: [`BlkDriver::submit`] a [`BlkRequest`] with a token of
//!   the caller's type, [`BlkDriver::kick`] the queue, and
//!   [`BlkDriver::poll`] completions ([`BlkCompletion`]) in whatever order
//!   the device finishes them (§5.2: "serviced (probably out of order)");
//! - blocking conveniences on queue 0 ([`BlkDriver::read`],
//!   [`BlkDriver::write`], [`BlkDriver::flush`], [`BlkDriver::get_id`],
//!   [`BlkDriver::discard`], [`BlkDriver::write_zeroes`]) that copy through
//!   a bounce buffer in DMA memory and wait with
//!   [`Transport::wait_interrupt`].
//!
//! Request headers, status bytes and range tables live in slots of DMA
//! memory allocated once per queue entry at setup; nothing is allocated per
//! request (the [`Dma`] may be a bump allocator).
//!
//! # Trust and panic contract
//! The device is hostile. Configuration values the driver cannot work with
//! (`seg_max`, `size_max` or `num_queues` 0, `blk_size` not a power of two
//! in 512..=64 KiB, queues that do not exist) fail initialization with
//! [`SetupError::BadConfig`] / [`SetupError::MissingQueue`]; huge values
//! are clamped to what the driver allocated for. Used ids, lengths and
//! indices are checked by the queue ([`BlkError::Queue`]); a used length
//! that does not cover the status byte is [`BlkError::NoStatus`]; both
//! break the queue until [`BlkDriver::reset`], which hands back every
//! token. Every wait is bounded ([`BlkError::Timeout`]). Nothing here
//! panics on device input, and nothing the device says makes the driver
//! allocate more than the queue sizes the caller chose.

mod blocking;
mod config;
mod error;
mod queue;
mod request;
mod zoned;

use alloc::vec::Vec;

pub use blocking::BOUNCE_SIZE;
pub use config::{
    BlkConfig, BlkGeometry, BlkTopology, DiscardLimits, WriteZeroesLimits, MAX_BLK_SIZE,
};
pub use error::{BlkCompletion, BlkError, BlkStatus, RequestError, SubmitError};
pub use request::{BlkRequest, DiscardRange, MAX_RANGES};

use ringwork_queue::{Dma, RingFormat, Segment};
use ringwork_spec::blk::{
    BLK_CONFIG_WRITEBACK_OFFSET, BLK_FEATURE_RULES, VIRTIO_BLK_F_BLK_SIZE, VIRTIO_BLK_F_CONFIG_WCE,
    VIRTIO_BLK_F_DISCARD, VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_F_GEOMETRY, VIRTIO_BLK_F_MQ,
    VIRTIO_BLK_F_RO, VIRTIO_BLK_F_SEG_MAX, VIRTIO_BLK_F_SIZE_MAX, VIRTIO_BLK_F_TOPOLOGY,
    VIRTIO_BLK_F_WRITE_ZEROES, VIRTIO_BLK_Z_HM,
};
use ringwork_spec::device_id::VIRTIO_ID_BLOCK;
use ringwork_spec::features::FeatureSet;
use ringwork_transport::driver::{self, InterruptCause, Transport};

use crate::common::{
    self, check_device, kick, ring_format, ring_supports, set_failed, Detached, DmaRegion,
    Indirect, IrqState, LeakOnDrop, RingPreference, SetupError,
};
use queue::{BlkQueue, Owner};
use request::{slot_stride, validate, Limits};

/// The block features the driver implements and accepts when offered
/// (unless withheld): SIZE_MAX, SEG_MAX, GEOMETRY, RO, BLK_SIZE, FLUSH,
/// TOPOLOGY, CONFIG_WCE, MQ, DISCARD, WRITE_ZEROES. GET_ID needs no
/// feature. Never accepted: LIFETIME, SECURE_ERASE, ZONED (§5.2.5.1: a
/// driver that cannot handle zoned devices MUST NOT negotiate ZONED). A
/// device offering ZONED with the host-managed zone model is not offered
/// DISCARD either (§5.2.5.1) and fails initialization with
/// [`SetupError::BadConfig`] (`zoned.model`), FEATURES_OK never set.
pub const BLK_FEATURES: &[u32] = &[
    VIRTIO_BLK_F_SIZE_MAX,
    VIRTIO_BLK_F_SEG_MAX,
    VIRTIO_BLK_F_GEOMETRY,
    VIRTIO_BLK_F_RO,
    VIRTIO_BLK_F_BLK_SIZE,
    VIRTIO_BLK_F_FLUSH,
    VIRTIO_BLK_F_TOPOLOGY,
    VIRTIO_BLK_F_CONFIG_WCE,
    VIRTIO_BLK_F_MQ,
    VIRTIO_BLK_F_DISCARD,
    VIRTIO_BLK_F_WRITE_ZEROES,
];

/// Entries per indirect table, at most.
const MAX_INDIRECT: u16 = 64;

/// How to set up a [`BlkDriver`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlkOptions {
    /// Request queues wanted; the driver uses at most the device's
    /// `num_queues` (1 without `VIRTIO_BLK_F_MQ`). At least 1.
    pub queues: u16,
    /// Entries per queue wanted; clamped to the device's maximum (and to a
    /// power of two for split rings). Requests in flight per queue are at
    /// most this many.
    pub queue_size: u16,
    /// Ring format.
    pub ring: RingPreference,
    /// Features not to accept even if offered (block or ring features).
    pub withhold: FeatureSet,
}

impl Default for BlkOptions {
    /// One queue of 128 entries, packed rings if offered, nothing withheld.
    fn default() -> Self {
        Self {
            queues: 1,
            queue_size: 128,
            ring: RingPreference::Auto,
            withhold: FeatureSet::EMPTY,
        }
    }
}

/// Everything the device may access: queues (rings and request slots) and
/// the bounce buffer.
pub(crate) struct BlkState<D: Dma, Tok> {
    queues: Vec<BlkQueue<D, Tok>>,
    bounce: Option<DmaRegion<D>>,
}

impl<D: Dma, Tok> Default for BlkState<D, Tok> {
    fn default() -> Self {
        Self {
            queues: Vec::new(),
            bounce: None,
        }
    }
}

/// A virtio block device driver. See the [module docs](self).
///
/// `Tok` is the caller's token type for [`BlkDriver::submit`]. Dropping the
/// driver without [`BlkDriver::reset`] leaves the device running; its queue
/// memory is then leaked rather than given back to the [`Dma`] allocator.
pub struct BlkDriver<T: Transport, D: Dma + Clone, Tok> {
    transport: T,
    dma: D,
    features: FeatureSet,
    format: RingFormat,
    config: BlkConfig,
    limits: Limits,
    queue_size: u16,
    legacy: bool,
    state: LeakOnDrop<BlkState<D, Tok>>,
    scratch_out: Vec<Segment>,
    scratch_in: Vec<Segment>,
    scratch_data: Vec<Segment>,
    irq: IrqState,
    broken: bool,
}

impl<T: Transport, D: Dma + Clone, Tok> core::fmt::Debug for BlkDriver<T, D, Tok> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("BlkDriver")
            .field("features", &self.features)
            .field("format", &self.format)
            .field("config", &self.config)
            .field("queues", &self.state.queues.len())
            .field("queue_size", &self.queue_size)
            .field("broken", &self.broken)
            .finish_non_exhaustive()
    }
}

impl<T: Transport, D: Dma + Clone, Tok> BlkDriver<T, D, Tok> {
    /// Initializes the device (VIRTIO 1.4 §3.1.1, §5.2.5) and returns a
    /// live driver. On failure the device is left with FAILED set.
    pub fn new(mut transport: T, dma: D, opts: BlkOptions) -> Result<Self, BlkError> {
        check_device(&transport, VIRTIO_ID_BLOCK)?;
        if opts.queues == 0 {
            return Err(SetupError::BadOption {
                option: "queues",
                reason: "must not be 0",
            }
            .into());
        }
        let supports = FeatureSet::from_bits(BLK_FEATURES)
            .union(ring_supports(opts.ring))
            .difference(opts.withhold);
        // §5.2.5.1: no DISCARD (and no FEATURES_OK) for a host-managed
        // zoned device.
        let mut guard = zoned::ZonedGuard::new(&mut transport);
        let negotiated = driver::negotiate(&mut guard, supports, BLK_FEATURE_RULES);
        if guard.host_managed {
            // FAILED is already set, except on a legacy interface (no
            // FEATURES_OK), where a device must not offer ZONED anyway.
            set_failed(&mut transport);
            return Err(SetupError::BadConfig {
                field: "zoned.model",
                value: VIRTIO_BLK_Z_HM.into(),
                reason: "host-managed zoned devices need VIRTIO_BLK_F_ZONED, \
                         which this driver does not implement",
            }
            .into());
        }
        let features = negotiated?;
        let mut state = LeakOnDrop::new(BlkState::default());
        match Self::setup(&mut transport, &dma, features, opts, &mut state) {
            Ok((format, config, limits, queue_size)) => {
                driver::set_driver_ok(&mut transport);
                Ok(Self {
                    legacy: transport.is_legacy(),
                    transport,
                    dma,
                    features,
                    format,
                    config,
                    limits,
                    queue_size,
                    state,
                    scratch_out: Vec::new(),
                    scratch_in: Vec::new(),
                    scratch_data: Vec::new(),
                    irq: IrqState::default(),
                    broken: false,
                })
            }
            Err(e) => {
                // Queues already attached stay with the device: `state`
                // leaks them.
                set_failed(&mut transport);
                Err(e.into())
            }
        }
    }

    /// §3.1.1 step 7: configuration and queues.
    fn setup(
        t: &mut T,
        dma: &D,
        features: FeatureSet,
        opts: BlkOptions,
        state: &mut BlkState<D, Tok>,
    ) -> Result<(RingFormat, BlkConfig, Limits, u16), SetupError> {
        let (format, qf) = ring_format(t, features, opts.ring)?;
        let config = config::read(t, features)?;
        let nq = opts.queues.min(config.num_queues.unwrap_or(1));
        let size = common::queue_size(t, 0, opts.queue_size, format)?;
        // A request is at least header, one data segment and status, and a
        // chain must not be longer than the queue (§2.7.5.3.1).
        if size < 3 {
            return Err(SetupError::BadConfig {
                field: "queue_size_max",
                value: size.into(),
                reason: "too small for a request",
            });
        }
        let seg_max = config.seg_max.map_or(usize::MAX, |s| s as usize);
        let limits = Limits {
            max_data_segments: seg_max.min(usize::from(size) - 2),
            table_ranges: table_ranges(&config),
            read_only: features.contains(VIRTIO_BLK_F_RO),
            flush: features.contains(VIRTIO_BLK_F_FLUSH),
        };
        let indirect = qf.indirect_desc.then(|| Indirect {
            max: (limits.max_data_segments + 2).min(usize::from(MAX_INDIRECT)) as u16,
            tables: size.min(128),
        });
        let stride = slot_stride(limits.table_ranges);
        let legacy = t.is_legacy();
        for q in 0..nq {
            // Every queue gets the size of queue 0, if the device allows.
            let qsize = common::queue_size(t, q, size, format)?;
            if qsize != size {
                return Err(SetupError::BadConfig {
                    field: "queue_size_max",
                    value: qsize.into(),
                    reason: "request queues differ in size",
                });
            }
            let vq = common::make_queue(t, dma.clone(), q, size, format, qf, indirect)?;
            state
                .queues
                .push(BlkQueue::new(vq, dma.clone(), stride, legacy)?);
        }
        Ok((format, config, limits, size))
    }

    /// The parsed configuration.
    pub fn config(&self) -> &BlkConfig {
        &self.config
    }

    /// The negotiated features.
    pub fn features(&self) -> FeatureSet {
        self.features
    }

    /// The ring format in use.
    pub fn ring_format(&self) -> RingFormat {
        self.format
    }

    /// Request queues in use.
    pub fn num_queues(&self) -> u16 {
        self.state.queues.len() as u16
    }

    /// Entries per queue.
    pub fn queue_size(&self) -> u16 {
        self.queue_size
    }

    /// The transport (for interrupt handling, or tests).
    pub fn transport(&mut self) -> &mut T {
        &mut self.transport
    }

    /// The DMA allocator.
    pub fn dma(&self) -> &D {
        &self.dma
    }

    /// Whether `VIRTIO_BLK_F_RO` was negotiated (writes are refused).
    pub fn is_read_only(&self) -> bool {
        self.limits.read_only
    }

    /// Data segments a read or write may have (`seg_max`, and what a queue
    /// can hold).
    pub fn max_segments(&self) -> usize {
        self.limits.max_data_segments
    }

    fn queue_mut(&mut self, queue: u16) -> Result<&mut BlkQueue<D, Tok>, BlkError> {
        let queues = self.num_queues();
        self.state
            .queues
            .get_mut(usize::from(queue))
            .ok_or(BlkError::NoSuchQueue { queue, queues })
    }

    /// Checks `req` (§5.2.6.1, except [`BlkRequest::Raw`]) and makes it
    /// available on `queue`; call [`Self::kick`] afterwards. The token is
    /// handed back on any error; [`RequestError::QueueFull`] means: poll,
    /// then retry.
    pub fn submit(
        &mut self,
        queue: u16,
        req: BlkRequest<'_>,
        token: Tok,
    ) -> Result<(), SubmitError<Tok>> {
        let queues = self.num_queues();
        let Some(q) = self.state.queues.get_mut(usize::from(queue)) else {
            return Err(SubmitError {
                error: RequestError::NoSuchQueue { queue, queues },
                token,
            });
        };
        if let Err(error) = validate(&req, &self.config, &self.limits) {
            return Err(SubmitError { error, token });
        }
        match q.enqueue(
            &req,
            Owner::User(token),
            &mut self.scratch_out,
            &mut self.scratch_in,
        ) {
            Ok(()) => Ok(()),
            Err((error, Owner::User(token))) => Err(SubmitError { error, token }),
            // `enqueue` hands back the owner it was given.
            Err((_, Owner::Internal)) => Ok(()),
        }
    }

    /// Notifies the device about requests submitted to `queue`, if it
    /// wants a notification (event suppression, §2.7.10 / §2.8.10).
    pub fn kick(&mut self, queue: u16) -> Result<(), BlkError> {
        let queues = self.num_queues();
        let q = self
            .state
            .queues
            .get_mut(usize::from(queue))
            .ok_or(BlkError::NoSuchQueue { queue, queues })?;
        kick(&mut self.transport, q.vq()).map_err(|source| BlkError::Queue { queue, source })
    }

    /// The next request `queue` completed, or `None`. Re-arms used buffer
    /// notifications before reporting `None`.
    pub fn poll(&mut self, queue: u16) -> Result<Option<BlkCompletion<Tok>>, BlkError> {
        self.queue_mut(queue)?.poll()
    }

    /// Requests submitted to `queue` and not yet returned by
    /// [`Self::poll`] (0 for a queue that does not exist).
    pub fn in_flight(&self, queue: u16) -> u16 {
        self.state
            .queues
            .get(usize::from(queue))
            .map_or(0, |q| q.in_flight())
    }

    /// Acknowledges an interrupt (for callers that take them): on a
    /// configuration change, re-reads the fields the device may change
    /// (`capacity`, `writeback`, `write_zeroes_may_unmap`, §5.2.6.2) and
    /// reports DEVICE_NEEDS_RESET as [`BlkError::NeedsReset`].
    pub fn handle_interrupt(&mut self) -> Result<InterruptCause, BlkError> {
        let cause = self.transport.ack_interrupt();
        if cause.config_changed {
            self.irq.config_changed = true;
            self.config_changed()?;
        }
        Ok(cause)
    }

    /// Re-reads the fields of the configuration the device may change
    /// (`capacity`, `writeback`, `write_zeroes_may_unmap`).
    pub fn refresh_config(&mut self) -> Result<&BlkConfig, BlkError> {
        config::refresh(&mut self.transport, self.features, &mut self.config)?;
        Ok(&self.config)
    }

    /// Handles a configuration change seen while waiting.
    fn config_changed(&mut self) -> Result<(), BlkError> {
        if !core::mem::take(&mut self.irq.config_changed) {
            return Ok(());
        }
        if self
            .transport
            .status()
            .contains(ringwork_spec::status::DeviceStatus::DEVICE_NEEDS_RESET)
        {
            return Err(BlkError::NeedsReset);
        }
        self.refresh_config().map(|_| ())
    }

    /// Switches the cache mode (`VIRTIO_BLK_F_CONFIG_WCE`, §5.2.6.1): 0
    /// writethrough, 1 writeback. Reads the field back.
    pub fn set_writeback(&mut self, writeback: bool) -> Result<(), BlkError> {
        if !self.features.contains(VIRTIO_BLK_F_CONFIG_WCE) {
            return Err(RequestError::NotNegotiated {
                feature: "VIRTIO_BLK_F_CONFIG_WCE",
            }
            .into());
        }
        self.transport
            .write_config(BLK_CONFIG_WRITEBACK_OFFSET, &[u8::from(writeback)]);
        self.refresh_config().map(|_| ())
    }

    /// Resets the device (§2.4) and hands back the transport and the token
    /// of every request not yet returned by [`Self::poll`]. When the reset
    /// does not complete, the queue memory is leaked, not freed.
    pub fn reset(self) -> Detached<T, Tok> {
        let mut s = self;
        let reset = s.transport.reset();
        let mut tokens = Vec::new();
        for q in s.state.queues.iter_mut() {
            tokens.extend(q.drain_tokens());
        }
        if reset.is_ok() {
            s.state.disarm();
        }
        Detached {
            transport: s.transport,
            tokens,
            reset,
        }
    }
}

/// Ranges one slot's table holds: the larger of the negotiated limits,
/// capped at [`MAX_RANGES`].
fn table_ranges(c: &BlkConfig) -> usize {
    let d = c.discard.map_or(0, |d| d.max_seg);
    let w = c.write_zeroes.map_or(0, |w| w.max_seg);
    (d.max(w) as usize).min(MAX_RANGES)
}
