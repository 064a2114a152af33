//! Driver-side errors.

/// A queue could not be created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DriverQueueError {
    /// Size 0, above 32768, or (split) not a power of two.
    #[error("invalid {format} queue size {size}")]
    InvalidSize {
        /// The format.
        format: crate::RingFormat,
        /// The size.
        size: u16,
    },
    /// The DMA allocator could not provide `len` bytes.
    #[error("DMA allocation of {len} bytes failed")]
    OutOfDmaMemory {
        /// Bytes asked for.
        len: usize,
    },
    /// A legacy queue alignment that is not a power of two.
    #[error("legacy queue alignment {0} is not a power of two")]
    BadLegacyAlign(u32),
}

/// A buffer could not be added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AddError {
    /// The queue is broken (the device misbehaved); reset it.
    #[error("queue is broken; reset it")]
    Broken,
    /// No segments were given.
    #[error("a buffer needs at least one segment")]
    Empty,
    /// Not enough free descriptors right now; retry after completions.
    #[error("{needed} descriptors needed, {free} free")]
    NoSpace {
        /// Descriptors needed.
        needed: u16,
        /// Descriptors free.
        free: u16,
    },
    /// More segments than the queue can ever hold (and no indirect table fits).
    #[error("{segments} segments cannot fit a queue of {size}")]
    TooManySegments {
        /// Segments in the buffer.
        segments: usize,
        /// Queue size.
        size: u16,
    },
    /// The buffer is longer than 2^32 bytes in total (VIRTIO 1.4 §2.7.5).
    #[error("buffer longer than 2^32 bytes")]
    TooLarge,
}

/// An add was rejected; the token is handed back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected<T> {
    /// Why.
    pub error: AddError,
    /// The token that was not queued.
    pub token: T,
}

impl<T> core::fmt::Display for Rejected<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        core::fmt::Display::fmt(&self.error, f)
    }
}

impl<T: core::fmt::Debug> core::error::Error for Rejected<T> {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        Some(&self.error)
    }
}

/// The device returned something invalid in the used ring (the queue is
/// now broken), or the queue was already broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UsedError {
    /// The queue is broken; reset it.
    #[error("queue is broken; reset it")]
    Broken,
    /// A used id that names no outstanding buffer.
    #[error("device returned id {id}, which names no outstanding buffer")]
    BadId {
        /// The id.
        id: u32,
    },
    /// A used length larger than the buffer's writable part.
    #[error("device wrote {len} bytes into buffer {id} of {capacity} writable bytes")]
    BadLength {
        /// The id.
        id: u16,
        /// The length the device reported.
        len: u32,
        /// The writable capacity.
        capacity: u32,
    },
    /// The used index moved by more than the number of outstanding buffers.
    #[error("used index moved from {last} to {idx} with {outstanding} buffers outstanding")]
    BadUsedIndex {
        /// Last index seen.
        last: u16,
        /// New index.
        idx: u16,
        /// Outstanding buffers.
        outstanding: u16,
    },
    /// Ring memory access failed (cannot happen with a sound allocator).
    #[error(transparent)]
    Memory(#[from] crate::mem::OutOfBounds),
}
