//! The SCSI host driver (VIRTIO 1.4 §5.6).
//!
//! [`ScsiDriver::new`] runs device initialization (§3.1.1, §5.6.5): it
//! negotiates `VIRTIO_SCSI_F_HOTPLUG` and `VIRTIO_SCSI_F_CHANGE` when
//! offered, `VIRTIO_SCSI_F_INOUT` when offered and asked for
//! ([`ScsiOptions::inout`]), never `VIRTIO_SCSI_F_T10_PI`; reads and checks
//! the configuration ([`ScsiConfig`]) without writing it (§5.6.4.1); builds
//! the control queue, the event queue and up to `num_queues` request
//! queues (§5.6.2); sets DRIVER_OK and fills the event queue with
//! [`ScsiOptions::event_buffers`] device-writable buffers of
//! `event_info_size` bytes (at least 16, §5.6.6.3.1).
//!
//! Commands (§5.6.6.1):
//! - non-blocking: [`ScsiDriver::submit`] a [`ScsiCommand`] with a token
//!   of the caller's type (it returns the command's `id` tag),
//!   [`ScsiDriver::kick`], and [`ScsiDriver::poll`] for
//!   [`ScsiCompletion`]s in whatever order the device finishes them;
//! - blocking: [`ScsiDriver::command`] on request queue 0 with the
//!   caller's DMA segments, and helpers for common commands
//!   ([`ScsiDriver::inquiry`], [`ScsiDriver::test_unit_ready`],
//!   [`ScsiDriver::read_capacity16`], [`ScsiDriver::read16`],
//!   [`ScsiDriver::write16`], [`ScsiDriver::report_luns`]).
//!
//! At most `cmd_per_lun` commands (and at most a queue's size) are in
//! flight per LUN, across all queues (§5.6.4.1; every command is counted,
//! not only linked ones). `prio` and `crn` are always zero; `task_attr` is
//! zero (SIMPLE) unless the caller sets it (§5.6.6.1.2).
//!
//! Task management and asynchronous notification (§5.6.6.2) are blocking
//! calls on the control queue ([`ScsiDriver::task_management`],
//! [`ScsiDriver::an_query`], [`ScsiDriver::an_subscribe`]). Events
//! (§5.6.6.3): [`ScsiDriver::poll_event`] returns the next [`ScsiEvent`]
//! and makes its buffer available again at once, so the queue stays
//! populated (§5.6.6.3.1); [`ScsiEvent::needs_rescan`] tells when the
//! spec asks the driver to rescan.
//!
//! # Trust and panic contract
//! The device is hostile. Configuration values the driver cannot work with
//! fail setup ([`SetupError::BadConfig`]); hints are clamped. Used ids,
//! lengths and indices are checked by the queues; a used length that does
//! not cover a command's response header is
//! [`ScsiError::ShortResponse`] and breaks that queue until
//! [`ScsiDriver::reset`] (which hands back every token); `sense_len` and
//! `residual` beyond what is possible are clamped
//! ([`ScsiCompletion::clamped`]). Every wait is bounded. Nothing here
//! panics on device input, and nothing the device says makes the driver
//! allocate more than the options the caller chose.

mod blocking;
mod config;
mod control;
mod error;
mod queue;
mod request;

use alloc::vec::Vec;

pub use blocking::{Capacity, BOUNCE_SIZE};
pub use config::{ScsiConfig, MAX_CDB_SIZE, MAX_EVENT_SIZE, MAX_SENSE_SIZE};
pub use control::ScsiEvent;
pub use error::{
    CommandError, ScsiCompletion, ScsiError, ScsiResponse, SubmitError, SAM_STAT_CHECK_CONDITION,
    SAM_STAT_GOOD,
};
pub use request::{lun_address, ScsiCommand};

use ringwork_queue::{Dma, DriverQueue, RingFormat, Segment};
use ringwork_spec::device_id::VIRTIO_ID_SCSI;
use ringwork_spec::features::FeatureSet;
use ringwork_spec::scsi::{
    request_queue_index, CONTROLQ_INDEX, EVENTQ_INDEX, VIRTIO_SCSI_F_CHANGE, VIRTIO_SCSI_F_HOTPLUG,
    VIRTIO_SCSI_F_INOUT,
};
use ringwork_transport::driver::{self, Transport};

use crate::common::{
    self, check_device, kick, ring_format, ring_supports, set_failed, Detached, DmaRegion,
    Indirect, IrqState, LeakOnDrop, RingPreference, SetupError,
};
use queue::{LunCounts, Owner, ScsiQueue};
use request::{validate, Limits, SlotLayout};

/// Entries per indirect table, at most.
const MAX_INDIRECT: u16 = 64;

/// How to set up a [`ScsiDriver`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScsiOptions {
    /// Request queues wanted; the driver uses at most `num_queues`. At
    /// least 1.
    pub queues: u16,
    /// Entries per queue wanted; clamped to each queue's maximum (and to a
    /// power of two for split rings).
    pub queue_size: u16,
    /// Ring format.
    pub ring: RingPreference,
    /// Accept `VIRTIO_SCSI_F_INOUT` (bidirectional commands) if offered.
    pub inout: bool,
    /// Event buffers kept in the event queue (clamped to its size); 0
    /// leaves the event queue empty.
    pub event_buffers: u16,
    /// Features not to accept even if offered.
    pub withhold: FeatureSet,
}

impl Default for ScsiOptions {
    /// One request queue of 128 entries, packed rings if offered, INOUT
    /// accepted, 8 event buffers, nothing withheld.
    fn default() -> Self {
        Self {
            queues: 1,
            queue_size: 128,
            ring: RingPreference::Auto,
            inout: true,
            event_buffers: 8,
            withhold: FeatureSet::EMPTY,
        }
    }
}

/// What the device may access.
pub(crate) struct ScsiState<D: Dma, Tok> {
    queues: Vec<ScsiQueue<D, Tok>>,
    control: Option<DriverQueue<D, ()>>,
    control_buf: Option<DmaRegion<D>>,
    events: Option<DriverQueue<D, u16>>,
    event_bufs: Option<DmaRegion<D>>,
    bounce: Option<DmaRegion<D>>,
}

impl<D: Dma, Tok> Default for ScsiState<D, Tok> {
    fn default() -> Self {
        Self {
            queues: Vec::new(),
            control: None,
            control_buf: None,
            events: None,
            event_bufs: None,
            bounce: None,
        }
    }
}

/// A virtio-scsi host driver. See the [module docs](self).
///
/// `Tok` is the caller's token type for [`ScsiDriver::submit`]. Dropping
/// the driver without [`ScsiDriver::reset`] leaves the device running;
/// its queue memory is then leaked rather than given back.
pub struct ScsiDriver<T: Transport, D: Dma + Clone, Tok = ()> {
    transport: T,
    dma: D,
    features: FeatureSet,
    format: RingFormat,
    config: ScsiConfig,
    limits: Limits,
    lun_limit: u32,
    event_len: u32,
    state: LeakOnDrop<ScsiState<D, Tok>>,
    counts: LunCounts,
    next_id: u64,
    scratch_out: Vec<Segment>,
    scratch_in: Vec<Segment>,
    irq: IrqState,
    legacy: bool,
    broken: bool,
}

impl<T: Transport, D: Dma + Clone, Tok> core::fmt::Debug for ScsiDriver<T, D, Tok> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ScsiDriver")
            .field("features", &self.features)
            .field("format", &self.format)
            .field("config", &self.config)
            .field("queues", &self.state.queues.len())
            .field("broken", &self.broken)
            .finish_non_exhaustive()
    }
}

/// What setup found.
struct Setup {
    format: RingFormat,
    config: ScsiConfig,
    limits: Limits,
    lun_limit: u32,
    event_len: u32,
}

impl<T: Transport, D: Dma + Clone, Tok> ScsiDriver<T, D, Tok> {
    /// Initializes the device (VIRTIO 1.4 §3.1.1, §5.6.5). On failure the
    /// device is left with FAILED set.
    pub fn new(mut transport: T, dma: D, opts: ScsiOptions) -> Result<Self, ScsiError> {
        check_device(&transport, VIRTIO_ID_SCSI)?;
        if opts.queues == 0 {
            return Err(SetupError::BadOption {
                option: "queues",
                reason: "must not be 0",
            }
            .into());
        }
        let mut supports = ring_supports(opts.ring);
        supports.insert(VIRTIO_SCSI_F_HOTPLUG);
        supports.insert(VIRTIO_SCSI_F_CHANGE);
        if opts.inout {
            supports.insert(VIRTIO_SCSI_F_INOUT);
        }
        // VIRTIO_SCSI_F_T10_PI is never accepted.
        let features = driver::negotiate(&mut transport, supports.difference(opts.withhold), &[])?;
        let mut state = LeakOnDrop::new(ScsiState::default());
        let s = match Self::setup(&mut transport, &dma, features, opts, &mut state) {
            Ok(s) => s,
            Err(e) => {
                set_failed(&mut transport);
                return Err(e.into());
            }
        };
        driver::set_driver_ok(&mut transport);
        let mut d = Self {
            legacy: transport.is_legacy(),
            transport,
            dma,
            features,
            format: s.format,
            config: s.config,
            limits: s.limits,
            lun_limit: s.lun_limit,
            event_len: s.event_len,
            state,
            counts: LunCounts::default(),
            next_id: 1,
            scratch_out: Vec::new(),
            scratch_in: Vec::new(),
            irq: IrqState::default(),
            broken: false,
        };
        // §5.6.5: at least one buffer in the eventq, once the device runs.
        d.fill_events(opts.event_buffers)?;
        Ok(d)
    }

    /// §3.1.1 step 7: configuration and queues.
    fn setup(
        t: &mut T,
        dma: &D,
        features: FeatureSet,
        opts: ScsiOptions,
        state: &mut ScsiState<D, Tok>,
    ) -> Result<Setup, SetupError> {
        let (format, qf) = ring_format(t, features, opts.ring)?;
        let config = config::read(t)?;
        let legacy = t.is_legacy();
        // Control queue: a request and a response descriptor.
        let cq = CONTROLQ_INDEX as u16;
        let size = common::queue_size(t, cq, opts.queue_size.min(16), format)?;
        if size < 2 {
            return Err(SetupError::BadConfig {
                field: "queue_size_max",
                value: size.into(),
                reason: "controlq too small for a request",
            });
        }
        state.control = Some(common::make_queue(
            t,
            dma.clone(),
            cq,
            size,
            format,
            qf,
            None,
        )?);
        state.control_buf = Some(DmaRegion::new(dma.clone(), 64, 16)?);
        let eq = EVENTQ_INDEX as u16;
        let size = common::queue_size(t, eq, opts.event_buffers.max(1), format)?;
        state.events = Some(common::make_queue(
            t,
            dma.clone(),
            eq,
            size,
            format,
            qf,
            None,
        )?);
        let layout = SlotLayout::new(&config);
        let nq = u32::from(opts.queues).min(config.num_queues).min(0xfffd) as u16;
        let mut max_segments = usize::MAX;
        let mut lun_limit = config.cmd_per_lun;
        for n in 0..nq {
            let index = request_queue_index(u32::from(n)) as u16;
            let size = common::queue_size(t, index, opts.queue_size, format)?;
            if size < 3 {
                return Err(SetupError::BadConfig {
                    field: "queue_size_max",
                    value: size.into(),
                    reason: "request queue too small for a command",
                });
            }
            let segs = (config.seg_max as usize).min(usize::from(size) - 2);
            max_segments = max_segments.min(segs);
            lun_limit = lun_limit.min(u32::from(size));
            let indirect = qf.indirect_desc.then(|| Indirect {
                max: (segs + 2).min(usize::from(MAX_INDIRECT)) as u16,
                tables: size.min(128),
            });
            let vq = common::make_queue(t, dma.clone(), index, size, format, qf, indirect)?;
            state
                .queues
                .push(ScsiQueue::new(n, vq, dma.clone(), layout, legacy)?);
        }
        Ok(Setup {
            format,
            config,
            limits: Limits {
                max_segments,
                inout: features.contains(VIRTIO_SCSI_F_INOUT),
            },
            lun_limit,
            event_len: config.event_buffer_len(),
        })
    }

    /// The configuration read at setup.
    pub fn config(&self) -> &ScsiConfig {
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

    /// Data segments one command may have (`seg_max`, and what a queue
    /// holds).
    pub fn max_segments(&self) -> usize {
        self.limits.max_segments
    }

    /// Commands in flight per LUN, at most (`cmd_per_lun` and the queue
    /// size).
    pub fn lun_limit(&self) -> u32 {
        self.lun_limit
    }

    /// The transport (for interrupt handling, or tests).
    pub fn transport(&mut self) -> &mut T {
        &mut self.transport
    }

    /// The DMA allocator.
    pub fn dma(&self) -> &D {
        &self.dma
    }

    /// Checks `cmd` and makes it available on request queue `queue`
    /// (0-based); call [`Self::kick`] afterwards. Returns the command's
    /// `id` (its tag, for [`Self::task_management`]). The token is handed
    /// back on any error; [`CommandError::QueueFull`] and
    /// [`CommandError::LunBusy`] mean: poll, then retry.
    pub fn submit(
        &mut self,
        queue: u16,
        cmd: ScsiCommand<'_>,
        token: Tok,
    ) -> Result<u64, SubmitError<Tok>> {
        let queues = self.num_queues();
        let Some(q) = self.state.queues.get_mut(usize::from(queue)) else {
            return Err(SubmitError {
                error: CommandError::NoSuchQueue { queue, queues },
                token,
            });
        };
        if let Err(error) = validate(&cmd, &self.config, &self.limits) {
            return Err(SubmitError { error, token });
        }
        let id = self.next_id;
        match q.enqueue(
            &cmd,
            id,
            Owner::User(token),
            &mut self.counts,
            self.lun_limit,
            &mut self.scratch_out,
            &mut self.scratch_in,
        ) {
            Ok(()) => {
                self.next_id = self.next_id.wrapping_add(1);
                Ok(id)
            }
            Err((error, Owner::User(token))) => Err(SubmitError { error, token }),
            // `enqueue` hands back the owner it was given.
            Err((_, Owner::Internal)) => Ok(id),
        }
    }

    /// Notifies the device about commands submitted to request queue
    /// `queue`, if it wants a notification (§2.7.10 / §2.8.10).
    pub fn kick(&mut self, queue: u16) -> Result<(), ScsiError> {
        let queues = self.num_queues();
        let q = self
            .state
            .queues
            .get_mut(usize::from(queue))
            .ok_or(CommandError::NoSuchQueue { queue, queues })?;
        kick(&mut self.transport, q.vq()).map_err(|source| ScsiError::Queue {
            queue: "requestq",
            source,
        })
    }

    /// The next command request queue `queue` completed, or `None`.
    /// Re-arms used buffer notifications before reporting `None`.
    pub fn poll(&mut self, queue: u16) -> Result<Option<ScsiCompletion<Tok>>, ScsiError> {
        let queues = self.num_queues();
        let q = self
            .state
            .queues
            .get_mut(usize::from(queue))
            .ok_or(CommandError::NoSuchQueue { queue, queues })?;
        q.poll(&mut self.counts)
    }

    /// Commands submitted to `queue` and not yet returned by
    /// [`Self::poll`] (0 for a queue that does not exist).
    pub fn in_flight(&self, queue: u16) -> u16 {
        self.state
            .queues
            .get(usize::from(queue))
            .map_or(0, |q| q.in_flight())
    }

    /// Resets the device (§2.4) and hands back the transport and the token
    /// of every command not yet returned by [`Self::poll`]. When the reset
    /// does not complete, the queue memory is leaked, not freed.
    pub fn reset(self) -> Detached<T, Tok> {
        let mut s = self;
        let reset = s.transport.reset();
        let mut tokens = Vec::new();
        for q in s.state.queues.iter_mut() {
            tokens.extend(q.drain_tokens());
        }
        if let Some(q) = s.state.control.as_mut() {
            q.reset();
        }
        if let Some(q) = s.state.events.as_mut() {
            q.reset();
        }
        s.counts.clear();
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
