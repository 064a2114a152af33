//! Errors of the balloon driver.

use ringwork_queue::UsedError;
use ringwork_transport::driver::TransportError;

use crate::common::{SetupError, WaitError};

/// Why a balloon driver operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BalloonError {
    /// Initialization failed.
    #[error(transparent)]
    Setup(#[from] SetupError),
    /// The transport failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The device put something invalid in a used ring (or the queue was
    /// already broken); reset the driver.
    #[error("{queue}: {source}")]
    Queue {
        /// The queue (spec name).
        queue: &'static str,
        /// What was wrong.
        #[source]
        source: UsedError,
    },
    /// The allocator has no memory left for the balloon: it holds
    /// `actual` pages, short of the device's `target`.
    #[error("no memory left to inflate: {actual} of {target} pages in the balloon")]
    OutOfPages {
        /// Pages in the balloon.
        actual: u32,
        /// Pages the device asked for.
        target: u32,
    },
    /// A feature the operation needs was not negotiated.
    #[error("{0} was not negotiated")]
    NotNegotiated(&'static str),
    /// The statistics given do not match the tags chosen at setup
    /// (VIRTIO 1.4 §5.5.6.3.1: the same subset in every buffer).
    #[error("statistic tag {tag} is {what}")]
    StatsMismatch {
        /// The offending tag.
        tag: u16,
        /// "missing", "repeated" or "not one of the tags chosen at setup".
        what: &'static str,
    },
    /// Statistics can be given only after the device asked for them.
    #[error("the device has not asked for statistics")]
    StatsNotRequested,
    /// A free page report range is not whole 4 KiB pages.
    #[error("report range {addr:#x}+{len:#x} is not made of whole 4 KiB pages")]
    BadRange {
        /// Start address.
        addr: u64,
        /// Length in bytes.
        len: u32,
    },
    /// The queue has no room: poll for acknowledgements first.
    #[error("{0} is full")]
    QueueFull(&'static str),
    /// The device did not acknowledge in time.
    #[error("device did not acknowledge in time")]
    Timeout,
    /// The device set DEVICE_NEEDS_RESET.
    #[error("device needs a reset")]
    NeedsReset,
}

impl From<WaitError> for BalloonError {
    fn from(e: WaitError) -> Self {
        match e {
            WaitError::Transport(t) => Self::Transport(t),
            WaitError::Timeout => Self::Timeout,
            WaitError::NeedsReset => Self::NeedsReset,
        }
    }
}

/// `UsedError` of `queue` as a [`BalloonError`].
pub(super) fn queue_err(queue: &'static str) -> impl Fn(UsedError) -> BalloonError {
    move |source| BalloonError::Queue { queue, source }
}
