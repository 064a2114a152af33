//! SCSI driver results and errors: the `response` byte, completions,
//! command validation errors (with the token handed back) and operation
//! errors.
//!
//! Trust and panic contract: nothing here reads device memory; values are
//! whatever the queue code already checked.

use alloc::vec::Vec;

use ringwork_queue::UsedError;
use ringwork_spec::scsi as spec;
use ringwork_transport::driver::TransportError;

use crate::common::{SetupError, WaitError};

/// The `response` byte of a command or control request (VIRTIO 1.4
/// §5.6.6.1, §5.6.6.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScsiResponse {
    /// `VIRTIO_SCSI_S_OK` (also `VIRTIO_SCSI_S_FUNCTION_COMPLETE`): the
    /// command completed and `status` holds its SAM status.
    Ok,
    /// `VIRTIO_SCSI_S_OVERRUN`.
    Overrun,
    /// `VIRTIO_SCSI_S_ABORTED`.
    Aborted,
    /// `VIRTIO_SCSI_S_BAD_TARGET`.
    BadTarget,
    /// `VIRTIO_SCSI_S_RESET`.
    Reset,
    /// `VIRTIO_SCSI_S_BUSY`.
    Busy,
    /// `VIRTIO_SCSI_S_TRANSPORT_FAILURE`.
    TransportFailure,
    /// `VIRTIO_SCSI_S_TARGET_FAILURE`: §5.6.6.1.2, the driver SHOULD NOT
    /// retry on other paths ([`ScsiResponse::retry_elsewhere`] is false).
    TargetFailure,
    /// `VIRTIO_SCSI_S_NEXUS_FAILURE`.
    NexusFailure,
    /// `VIRTIO_SCSI_S_FAILURE`.
    Failure,
    /// `VIRTIO_SCSI_S_FUNCTION_SUCCEEDED` (task management).
    FunctionSucceeded,
    /// `VIRTIO_SCSI_S_FUNCTION_REJECTED` (task management).
    FunctionRejected,
    /// `VIRTIO_SCSI_S_INCORRECT_LUN` (control queue).
    IncorrectLun,
    /// Any other value (the driver presets the byte to `0xff`, so a
    /// device that never wrote it shows up as `Other(0xff)`).
    Other(u8),
}

impl From<u8> for ScsiResponse {
    fn from(v: u8) -> Self {
        match v {
            spec::VIRTIO_SCSI_S_OK => Self::Ok,
            spec::VIRTIO_SCSI_S_OVERRUN => Self::Overrun,
            spec::VIRTIO_SCSI_S_ABORTED => Self::Aborted,
            spec::VIRTIO_SCSI_S_BAD_TARGET => Self::BadTarget,
            spec::VIRTIO_SCSI_S_RESET => Self::Reset,
            spec::VIRTIO_SCSI_S_BUSY => Self::Busy,
            spec::VIRTIO_SCSI_S_TRANSPORT_FAILURE => Self::TransportFailure,
            spec::VIRTIO_SCSI_S_TARGET_FAILURE => Self::TargetFailure,
            spec::VIRTIO_SCSI_S_NEXUS_FAILURE => Self::NexusFailure,
            spec::VIRTIO_SCSI_S_FAILURE => Self::Failure,
            spec::VIRTIO_SCSI_S_FUNCTION_SUCCEEDED => Self::FunctionSucceeded,
            spec::VIRTIO_SCSI_S_FUNCTION_REJECTED => Self::FunctionRejected,
            spec::VIRTIO_SCSI_S_INCORRECT_LUN => Self::IncorrectLun,
            other => Self::Other(other),
        }
    }
}

impl ScsiResponse {
    /// Whether retrying the request on another path may help: false for
    /// `VIRTIO_SCSI_S_TARGET_FAILURE` (§5.6.6.1.2: the driver SHOULD NOT
    /// retry it on other paths) and for success.
    pub fn retry_elsewhere(self) -> bool {
        matches!(
            self,
            Self::TransportFailure | Self::NexusFailure | Self::Busy | Self::Reset
        )
    }
}

impl core::fmt::Display for ScsiResponse {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Other(v) => write!(f, "response {v:#04x}"),
            other => write!(f, "{other:?}"),
        }
    }
}

/// SAM status GOOD.
pub const SAM_STAT_GOOD: u8 = 0x00;
/// SAM status CHECK CONDITION (sense data follows).
pub const SAM_STAT_CHECK_CONDITION: u8 = 0x02;

/// A command the device finished (VIRTIO 1.4 §5.6.6.1), read from the
/// device-writable response header with the device's values checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScsiCompletion<Tok = ()> {
    /// The token given to `submit`.
    pub token: Tok,
    /// `response`.
    pub response: ScsiResponse,
    /// `status`: the SAM status code (meaningful when `response` is OK).
    pub status: u8,
    /// `status_qualifier`.
    pub status_qualifier: u16,
    /// Sense data: `sense_len` bytes, at most `sense_size` and at most
    /// what the used length covers (a larger `sense_len` is clamped).
    pub sense: Vec<u8>,
    /// `residual`, clamped to the command's total data length.
    pub residual: u32,
    /// The device's `sense_len` or `residual` was out of range and was
    /// clamped.
    pub clamped: bool,
}

impl<Tok> ScsiCompletion<Tok> {
    /// `response` OK and `status` GOOD.
    pub fn is_good(&self) -> bool {
        self.response == ScsiResponse::Ok && self.status == SAM_STAT_GOOD
    }
}

/// Why a command was not submitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// The queue index is not one of the driver's request queues.
    #[error("request queue {queue} does not exist ({queues} request queues)")]
    NoSuchQueue {
        /// The queue asked for (0-based request queue number).
        queue: u16,
        /// Request queues in use.
        queues: u16,
    },
    /// No room in the queue right now: poll completions and retry.
    #[error("request queue {queue} is full")]
    QueueFull {
        /// The queue.
        queue: u16,
    },
    /// The LUN already has `limit` commands in flight (`cmd_per_lun` and
    /// the queue size, §5.6.4.1).
    #[error("LUN {target}:{lun} has {limit} commands in flight already")]
    LunBusy {
        /// Target.
        target: u8,
        /// LUN.
        lun: u16,
        /// The limit.
        limit: u32,
    },
    /// The device broke the queue (or a wait timed out); reset the driver.
    #[error("request queue {queue} is broken; reset the driver")]
    Broken {
        /// The queue.
        queue: u16,
    },
    /// An empty CDB, or one longer than `cdb_size`.
    #[error("CDB of {len} bytes, 1 to {max} allowed")]
    BadCdb {
        /// CDB length given.
        len: usize,
        /// `cdb_size`.
        max: u32,
    },
    /// Both data-out and data-in segments without `VIRTIO_SCSI_F_INOUT`.
    #[error("bidirectional command needs VIRTIO_SCSI_F_INOUT, which was not negotiated")]
    NoInout,
    /// More data segments than `seg_max` (or the queue can hold).
    #[error("{segments} data segments, at most {max} allowed")]
    TooManySegments {
        /// Segments given.
        segments: usize,
        /// The limit.
        max: usize,
    },
    /// A zero-length data segment.
    #[error("empty data segment")]
    EmptySegment,
    /// A LUN above 16383 (§5.6.6.1: a single-level LUN structure).
    #[error("LUN {lun} cannot be addressed (at most 16383)")]
    BadLun {
        /// The LUN.
        lun: u16,
    },
    /// A `task_attr` that is not `VIRTIO_SCSI_S_SIMPLE` .. `_ACA`.
    #[error("task attribute {0} is not defined")]
    BadTaskAttr(u8),
    /// More than 2^32 bytes of data.
    #[error("command longer than 2^32 bytes")]
    TooLarge,
}

/// A command was not submitted; its token is handed back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubmitError<Tok> {
    /// Why.
    pub error: CommandError,
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

/// Why a SCSI driver operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScsiError {
    /// Initialization failed.
    #[error(transparent)]
    Setup(#[from] SetupError),
    /// The transport failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// A command was refused by the driver.
    #[error(transparent)]
    Command(#[from] CommandError),
    /// The device put something invalid in a used ring; the queue is
    /// broken until the driver is reset.
    #[error("{queue}: {source}")]
    Queue {
        /// The queue (spec name, `requestq` for request queues).
        queue: &'static str,
        /// What the queue found.
        source: UsedError,
    },
    /// A modern device returned a command with a used length too short
    /// for the response header (12 bytes). The queue is broken until the
    /// driver is reset, which returns the command's token.
    #[error("request queue {queue}: used length {len} does not cover the response header")]
    ShortResponse {
        /// The request queue (0-based).
        queue: u16,
        /// The used length reported.
        len: u32,
    },
    /// A modern device returned a control request with a used length too
    /// short for its response.
    #[error("controlq: used length {len}, the response needs {need}")]
    ShortControl {
        /// The used length reported.
        len: u32,
        /// Bytes the response needs.
        need: u32,
    },
    /// A modern device used an event buffer without a whole event in it
    /// (the buffer is made available again).
    #[error("eventq: used length {len} is shorter than an event")]
    ShortEvent {
        /// The used length reported.
        len: u32,
    },
    /// A blocking command completed, but not with OK / GOOD.
    #[error("command failed: {response}, status {status:#04x}")]
    Failed {
        /// `response`.
        response: ScsiResponse,
        /// SAM status.
        status: u8,
        /// Sense data.
        sense: Vec<u8>,
    },
    /// A blocking command returned less data than its result needs.
    #[error("device returned {got} bytes, {need} needed")]
    ShortData {
        /// Bytes needed.
        need: usize,
        /// Bytes the device transferred.
        got: usize,
    },
    /// A buffer given to a helper is too large for the driver's bounce
    /// buffer.
    #[error("transfer of {len} bytes, the bounce buffer holds {max}")]
    TooLarge {
        /// Bytes asked for.
        len: usize,
        /// Bounce buffer size.
        max: usize,
    },
    /// The device did not complete a blocking request in time. It may
    /// still be in flight: blocking operations are refused until reset.
    #[error("device did not complete the request in time")]
    Timeout,
    /// The device set DEVICE_NEEDS_RESET.
    #[error("device needs a reset")]
    NeedsReset,
    /// A blocking request timed out earlier; reset the driver.
    #[error("driver is broken after a timeout; reset it")]
    Broken,
}

impl From<WaitError> for ScsiError {
    fn from(e: WaitError) -> Self {
        match e {
            WaitError::Transport(t) => Self::Transport(t),
            WaitError::Timeout => Self::Timeout,
            WaitError::NeedsReset => Self::NeedsReset,
        }
    }
}
