//! The entropy device driver (VIRTIO 1.4 §5.4).
//!
//! One queue (`requestq`, [`RNG_REQUESTQ`]); the driver makes
//! device-writable buffers available and the device fills them with random
//! bytes, possibly fewer than asked (§5.4.6: the driver reads the used
//! length). No device features, no configuration space.
//!
//! [`RngDriver::submit`] / [`RngDriver::poll`] are the non-blocking core
//! (buffers of up to [`RNG_BUFFER_SIZE`] bytes from a pool allocated once at
//! setup); [`RngDriver::fill`] blocks until a caller's buffer is full.
//!
//! # Trust and panic contract
//! The device is hostile: used lengths and ids are checked by the queue (a
//! length beyond the buffer is [`RngError::Queue`] and breaks the queue
//! until [`RngDriver::reset`]); every wait is bounded
//! ([`RngError::Timeout`], after which the request stays in flight in the
//! driver's own buffer); a device that returns empty buffers makes
//! [`RngDriver::fill`] return early, never spin. Nothing here panics on
//! device input.

use alloc::vec::Vec;

use ringwork_queue::{AddError, Dma, DriverQueue, RingFormat, Segment, UsedError};
use ringwork_spec::device_id::VIRTIO_ID_RNG;
use ringwork_spec::features::FeatureSet;
use ringwork_spec::rng::RNG_REQUESTQ;
use ringwork_transport::driver::{self, Transport, TransportError};

use crate::common::{
    self, check_device, kick, pop_or_arm, ring_format, ring_supports, set_failed, wait_for,
    Detached, DmaRegion, IrqState, LeakOnDrop, RingPreference, SetupError, WaitError,
};

/// Bytes one request asks for, at most.
pub const RNG_BUFFER_SIZE: usize = 256;

/// Requests in flight at once, at most (fewer with a smaller queue).
pub const RNG_MAX_BUFFERS: u16 = 16;

/// Random bytes one request returned.
#[derive(Clone, PartialEq, Eq)]
pub struct Entropy {
    bytes: [u8; RNG_BUFFER_SIZE],
    len: usize,
}

impl Entropy {
    /// The bytes (as many as the device wrote, possibly none).
    pub fn bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

impl core::fmt::Debug for Entropy {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Entropy").field("len", &self.len).finish()
    }
}

/// Why an entropy driver operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RngError {
    /// Initialization failed.
    #[error(transparent)]
    Setup(#[from] SetupError),
    /// The transport failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The device put something invalid in the used ring (or the queue was
    /// already broken); reset the driver.
    #[error("requestq: {0}")]
    Queue(#[from] UsedError),
    /// A request length of 0 or more than [`RNG_BUFFER_SIZE`].
    #[error("request of {len} bytes, between 1 and {max} allowed")]
    BadLength {
        /// Bytes asked for.
        len: u32,
        /// [`RNG_BUFFER_SIZE`].
        max: u32,
    },
    /// Every buffer is in flight: poll, then retry.
    #[error("every request buffer is in flight")]
    QueueFull,
    /// The device did not complete a request in time. The request stays
    /// in flight (its buffer is the driver's own): a later completion is
    /// returned by [`RngDriver::poll`] or used by the next fill.
    #[error("device did not complete the request in time")]
    Timeout,
    /// The device set DEVICE_NEEDS_RESET.
    #[error("device needs a reset")]
    NeedsReset,
}

impl From<WaitError> for RngError {
    fn from(e: WaitError) -> Self {
        match e {
            WaitError::Transport(t) => Self::Transport(t),
            WaitError::Timeout => Self::Timeout,
            WaitError::NeedsReset => Self::NeedsReset,
        }
    }
}

/// What the device may access.
struct RngState<D: Dma> {
    vq: Option<DriverQueue<D, u16>>,
    buffers: Option<DmaRegion<D>>,
}

impl<D: Dma> Default for RngState<D> {
    fn default() -> Self {
        Self {
            vq: None,
            buffers: None,
        }
    }
}

/// A virtio entropy device driver. See the [module docs](self).
///
/// Dropping the driver without [`RngDriver::reset`] leaves the device
/// running; its queue memory is then leaked rather than freed.
pub struct RngDriver<T: Transport, D: Dma + Clone> {
    transport: T,
    dma: D,
    features: FeatureSet,
    format: RingFormat,
    state: LeakOnDrop<RngState<D>>,
    free: Vec<u16>,
    buffers: u16,
    irq: IrqState,
}

impl<T: Transport, D: Dma + Clone> core::fmt::Debug for RngDriver<T, D> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RngDriver")
            .field("features", &self.features)
            .field("format", &self.format)
            .field("in_flight", &self.in_flight())
            .finish_non_exhaustive()
    }
}

impl<T: Transport, D: Dma + Clone> RngDriver<T, D> {
    /// Initializes the device (VIRTIO 1.4 §3.1.1, §5.4.5) with a queue of
    /// (at most) `queue_size` entries. On failure the device is left with
    /// FAILED set.
    pub fn new(
        mut transport: T,
        dma: D,
        queue_size: u16,
        ring: RingPreference,
    ) -> Result<Self, RngError> {
        check_device(&transport, VIRTIO_ID_RNG)?;
        let features = driver::negotiate(&mut transport, ring_supports(ring), &[])?;
        let mut state = LeakOnDrop::new(RngState::default());
        let setup = (|| {
            let (format, qf) = ring_format(&transport, features, ring)?;
            let size = common::queue_size(&mut transport, RNG_REQUESTQ, queue_size, format)?;
            let vq = common::make_queue(
                &mut transport,
                dma.clone(),
                RNG_REQUESTQ,
                size,
                format,
                qf,
                None,
            )?;
            state.vq = Some(vq);
            let buffers = size.min(RNG_MAX_BUFFERS);
            let region = DmaRegion::new(dma.clone(), usize::from(buffers) * RNG_BUFFER_SIZE, 64)?;
            state.buffers = Some(region);
            Ok::<_, SetupError>((format, buffers))
        })();
        match setup {
            Ok((format, buffers)) => {
                driver::set_driver_ok(&mut transport);
                Ok(Self {
                    transport,
                    dma,
                    features,
                    format,
                    state,
                    free: (0..buffers).rev().collect(),
                    buffers,
                    irq: IrqState::default(),
                })
            }
            Err(e) => {
                set_failed(&mut transport);
                Err(e.into())
            }
        }
    }

    /// The negotiated features.
    pub fn features(&self) -> FeatureSet {
        self.features
    }

    /// The ring format in use.
    pub fn ring_format(&self) -> RingFormat {
        self.format
    }

    /// The transport.
    pub fn transport(&mut self) -> &mut T {
        &mut self.transport
    }

    /// The DMA allocator.
    pub fn dma(&self) -> &D {
        &self.dma
    }

    /// Requests submitted and not yet returned.
    pub fn in_flight(&self) -> u16 {
        self.buffers - self.free.len() as u16
    }

    /// Asks the device for `len` (1..=[`RNG_BUFFER_SIZE`]) random bytes and
    /// notifies it. The bytes arrive through [`Self::poll`].
    pub fn submit(&mut self, len: u32) -> Result<(), RngError> {
        if len == 0 || len as usize > RNG_BUFFER_SIZE {
            return Err(RngError::BadLength {
                len,
                max: RNG_BUFFER_SIZE as u32,
            });
        }
        let st = &mut *self.state;
        let (Some(vq), Some(buffers)) = (st.vq.as_mut(), st.buffers.as_ref()) else {
            return Err(UsedError::Broken.into());
        };
        let Some(slot) = self.free.pop() else {
            return Err(RngError::QueueFull);
        };
        let seg = Segment::new(buffers.addr(usize::from(slot) * RNG_BUFFER_SIZE), len);
        // §5.4.6.1: only device-writable buffers.
        if let Err(r) = vq.add(&[], &[seg], slot) {
            self.free.push(r.token);
            return Err(match r.error {
                AddError::Broken => RngError::Queue(UsedError::Broken),
                _ => RngError::QueueFull,
            });
        }
        kick(&mut self.transport, vq)?;
        Ok(())
    }

    /// The next completed request's bytes, or `None`. Re-arms used buffer
    /// notifications before reporting `None`.
    pub fn poll(&mut self) -> Result<Option<Entropy>, RngError> {
        let st = &mut *self.state;
        let (Some(vq), Some(buffers)) = (st.vq.as_mut(), st.buffers.as_ref()) else {
            return Err(UsedError::Broken.into());
        };
        take(vq, buffers, &mut self.free)
    }

    /// Fills `buf` with random bytes, one request at a time, waiting for
    /// the device. Returns the bytes filled: `buf.len()`, or fewer if the
    /// device returned an empty buffer (it has no entropy to give right
    /// now). Completions of earlier [`Self::submit`] calls are used too.
    pub fn fill(&mut self, buf: &mut [u8]) -> Result<usize, RngError> {
        let mut filled = 0;
        while filled < buf.len() {
            let want = (buf.len() - filled).min(RNG_BUFFER_SIZE) as u32;
            match self.submit(want) {
                Ok(()) => {}
                // Earlier submissions hold every buffer: use theirs.
                Err(RngError::QueueFull) if self.in_flight() > 0 => {}
                Err(e) => return Err(e),
            }
            let Self {
                transport,
                state,
                free,
                irq,
                ..
            } = self;
            let st = &mut **state;
            let (Some(vq), Some(buffers)) = (st.vq.as_mut(), st.buffers.as_ref()) else {
                return Err(UsedError::Broken.into());
            };
            let e = wait_for(transport, irq, || take(vq, buffers, free))?;
            if e.len == 0 {
                break;
            }
            let n = e.len.min(buf.len() - filled);
            buf[filled..filled + n].copy_from_slice(&e.bytes[..n]);
            filled += n;
        }
        Ok(filled)
    }

    /// Resets the device (§2.4) and hands back the transport. When the
    /// reset does not complete, the queue memory is leaked, not freed.
    pub fn reset(self) -> Detached<T> {
        let mut s = self;
        let reset = s.transport.reset();
        if let Some(vq) = s.state.vq.as_mut() {
            vq.reset();
        }
        if reset.is_ok() {
            s.state.disarm();
        }
        Detached {
            transport: s.transport,
            tokens: Vec::new(),
            reset,
        }
    }
}

/// Takes one completed request: copies its bytes out, frees its buffer.
fn take<D: Dma>(
    vq: &mut DriverQueue<D, u16>,
    buffers: &DmaRegion<D>,
    free: &mut Vec<u16>,
) -> Result<Option<Entropy>, RngError> {
    let Some(used) = pop_or_arm(vq)? else {
        return Ok(None);
    };
    let slot = used.token;
    free.push(slot);
    // The queue checked `len` against the buffer's length (at most
    // RNG_BUFFER_SIZE).
    let len = (used.len as usize).min(RNG_BUFFER_SIZE);
    let mut e = Entropy {
        bytes: [0u8; RNG_BUFFER_SIZE],
        len,
    };
    buffers
        .slice()
        .read_bytes(usize::from(slot) * RNG_BUFFER_SIZE, &mut e.bytes[..len])
        .map_err(|e| RngError::Queue(UsedError::Memory(e)))?;
    Ok(Some(e))
}
