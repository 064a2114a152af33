//! Block driver results and errors: request status, completions, request
//! validation errors (with the token handed back) and operation errors.

use ringwork_queue::UsedError;
use ringwork_spec::blk::{VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_OK, VIRTIO_BLK_S_UNSUPP};
use ringwork_transport::driver::TransportError;

use crate::common::{SetupError, WaitError};

/// The `status` byte a device wrote at the end of a request (VIRTIO 1.4
/// §5.2.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BlkStatus {
    /// `VIRTIO_BLK_S_OK`.
    Ok,
    /// `VIRTIO_BLK_S_IOERR`: device or driver error.
    IoErr,
    /// `VIRTIO_BLK_S_UNSUPP`: request unsupported by the device.
    Unsupp,
    /// Any other value (zoned statuses, or a status the device never wrote:
    /// the driver presets the byte to `0xff`).
    Other(u8),
}

impl From<u8> for BlkStatus {
    fn from(v: u8) -> Self {
        match v {
            VIRTIO_BLK_S_OK => Self::Ok,
            VIRTIO_BLK_S_IOERR => Self::IoErr,
            VIRTIO_BLK_S_UNSUPP => Self::Unsupp,
            other => Self::Other(other),
        }
    }
}

impl From<BlkStatus> for u8 {
    fn from(s: BlkStatus) -> u8 {
        match s {
            BlkStatus::Ok => VIRTIO_BLK_S_OK,
            BlkStatus::IoErr => VIRTIO_BLK_S_IOERR,
            BlkStatus::Unsupp => VIRTIO_BLK_S_UNSUPP,
            BlkStatus::Other(v) => v,
        }
    }
}

impl core::fmt::Display for BlkStatus {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Ok => f.write_str("VIRTIO_BLK_S_OK"),
            Self::IoErr => f.write_str("VIRTIO_BLK_S_IOERR"),
            Self::Unsupp => f.write_str("VIRTIO_BLK_S_UNSUPP"),
            Self::Other(v) => write!(f, "status {v:#04x}"),
        }
    }
}

/// A request the device finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlkCompletion<Tok> {
    /// The token given to `submit`.
    pub token: Tok,
    /// The status byte the device wrote.
    pub status: BlkStatus,
    /// Bytes the device reports writing into the request's writable data
    /// segments (the used length minus the status byte). Only meaningful
    /// for requests that read data; legacy devices may report anything
    /// here (§5.2.6.3).
    pub written: u32,
}

/// Why a request was not submitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The queue index is not one of the driver's request queues.
    #[error("queue {queue} does not exist ({queues} request queues)")]
    NoSuchQueue {
        /// The queue asked for.
        queue: u16,
        /// Request queues in use.
        queues: u16,
    },
    /// No room in the queue right now: poll completions and retry.
    #[error("queue {queue} is full")]
    QueueFull {
        /// The queue.
        queue: u16,
    },
    /// The device broke the queue (or the driver timed out waiting for
    /// it); reset the driver.
    #[error("queue {queue} is broken; reset the driver")]
    Broken {
        /// The queue.
        queue: u16,
    },
    /// A write (or discard / write zeroes) to a device that negotiated
    /// `VIRTIO_BLK_F_RO` (§5.2.5).
    #[error("the device is read-only")]
    ReadOnly,
    /// The request needs a feature that was not negotiated.
    #[error("request needs {feature}, which was not negotiated")]
    NotNegotiated {
        /// The feature (spec name).
        feature: &'static str,
    },
    /// The request reaches beyond `capacity` (§5.2.6.1: a driver MUST NOT
    /// submit such a request).
    #[error("sectors {sector}..+{sectors} are beyond the capacity of {capacity} sectors")]
    BeyondCapacity {
        /// First sector.
        sector: u64,
        /// Sectors.
        sectors: u64,
        /// Device capacity in sectors.
        capacity: u64,
    },
    /// Read/write data that is not a (non-zero) multiple of 512 bytes
    /// (§5.2.6.1).
    #[error("data length {len} is not a non-zero multiple of 512")]
    NotSectorMultiple {
        /// Total data length.
        len: u64,
    },
    /// More data segments than `seg_max` (or than the queue can hold).
    #[error("{segments} data segments, at most {max} allowed")]
    TooManySegments {
        /// Segments given.
        segments: usize,
        /// The limit.
        max: usize,
    },
    /// A data segment longer than `size_max`.
    #[error("segment of {len} bytes, at most {max} allowed")]
    SegmentTooLarge {
        /// Segment length.
        len: u32,
        /// `size_max`.
        max: u32,
    },
    /// A zero-length data segment.
    #[error("empty data segment")]
    EmptySegment,
    /// A GET_ID buffer that is not 20 bytes (§5.2.6.1).
    #[error("GET_ID buffer of {len} bytes, must be 20")]
    BadIdLength {
        /// The length given.
        len: u32,
    },
    /// Discard / write-zeroes with no ranges or more than the device (or
    /// the driver's per-slot table) allows.
    #[error("{ranges} ranges, between 1 and {max} allowed")]
    BadRangeCount {
        /// Ranges given.
        ranges: usize,
        /// The limit.
        max: usize,
    },
    /// A discard / write-zeroes range of 0 sectors or more than the device
    /// allows per request.
    #[error("range of {sectors} sectors, between 1 and {max} allowed")]
    BadRangeLength {
        /// Sectors in the range.
        sectors: u32,
        /// `max_discard_sectors` / `max_write_zeroes_sectors`.
        max: u32,
    },
    /// The request is longer than 2^32 bytes in total (§2.7.5).
    #[error("request longer than 2^32 bytes")]
    TooLarge,
}

/// A request was not submitted; its token is handed back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubmitError<Tok> {
    /// Why.
    pub error: RequestError,
    /// The token that was not queued.
    pub token: Tok,
}

impl<Tok> core::fmt::Display for SubmitError<Tok> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        core::fmt::Display::fmt(&self.error, f)
    }
}

impl<Tok: core::fmt::Debug> core::error::Error for SubmitError<Tok> {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        Some(&self.error)
    }
}

/// Why a block driver operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlkError {
    /// Initialization failed.
    #[error(transparent)]
    Setup(#[from] SetupError),
    /// The transport failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// A queue index that is not one of the driver's request queues.
    #[error("queue {queue} does not exist ({queues} request queues)")]
    NoSuchQueue {
        /// The queue asked for.
        queue: u16,
        /// Request queues in use.
        queues: u16,
    },
    /// The device put something invalid in a used ring; the queue is broken
    /// until the driver is reset.
    #[error("queue {queue}: {source}")]
    Queue {
        /// The queue.
        queue: u16,
        /// What the queue found.
        source: UsedError,
    },
    /// A modern device returned a request with a used length too short to
    /// contain the status byte (§5.2.6: the device writes `status` last).
    /// The queue is broken until the driver is reset, which returns the
    /// request's token.
    #[error("queue {queue}: used length {len} does not cover the status byte")]
    NoStatus {
        /// The queue.
        queue: u16,
        /// The used length reported.
        len: u32,
    },
    /// A blocking operation's request was refused by the driver.
    #[error(transparent)]
    Request(#[from] RequestError),
    /// A blocking operation completed with a status other than OK.
    #[error("device completed the request with {status}")]
    Status {
        /// The status.
        status: BlkStatus,
    },
    /// A blocking read completed OK but the device reported writing less
    /// data than was asked for.
    #[error("device returned {written} of {expected} bytes")]
    ShortRead {
        /// Bytes asked for.
        expected: u32,
        /// Bytes the device reported.
        written: u32,
    },
    /// The device did not complete a blocking request in time. The request
    /// may still be in flight: the driver refuses further blocking
    /// operations until it is reset.
    #[error("device did not complete the request in time")]
    Timeout,
    /// The device set DEVICE_NEEDS_RESET.
    #[error("device needs a reset")]
    NeedsReset,
    /// A blocking request timed out earlier; reset the driver.
    #[error("driver is broken after a timeout; reset it")]
    Broken,
}

impl From<WaitError> for BlkError {
    fn from(e: WaitError) -> Self {
        match e {
            WaitError::Transport(t) => Self::Transport(t),
            WaitError::Timeout => Self::Timeout,
            WaitError::NeedsReset => Self::NeedsReset,
        }
    }
}
