//! Device-side errors. Every variant names what the driver did wrong (or, for
//! [`DeviceQueueError::Usage`], what the device code did wrong).

use crate::mem::OutOfBounds;

/// Which part of a queue an address belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RingArea {
    /// Descriptor table (split) or descriptor ring (packed).
    Descriptors,
    /// Available ring (split) or driver event suppression area (packed).
    Driver,
    /// Used ring (split) or device event suppression area (packed).
    Device,
}

impl core::fmt::Display for RingArea {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            RingArea::Descriptors => "descriptor area",
            RingArea::Driver => "driver area",
            RingArea::Device => "device area",
        })
    }
}

/// A descriptor chain the driver made available is malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    /// A `next` index points outside the descriptor table.
    #[error("descriptor {index} links to {next}, outside the {table_len}-entry table")]
    NextOutOfRange {
        /// The descriptor holding the link.
        index: u16,
        /// The link.
        next: u16,
        /// Entries in the table.
        table_len: u32,
    },
    /// The chain is longer than allowed (or loops).
    #[error("descriptor chain longer than {limit} descriptors (loop?)")]
    TooLong {
        /// The limit.
        limit: u32,
    },
    /// A buffer lies (partly) outside shared memory.
    #[error("buffer [{addr:#x}, +{len}) is outside shared memory")]
    OutOfMemory {
        /// Buffer address.
        addr: u64,
        /// Buffer length.
        len: u32,
    },
    /// A device-readable descriptor follows a device-writable one
    /// (VIRTIO 1.4 §2.7.4.2: writable elements come last).
    #[error("device-readable descriptor after a device-writable one")]
    ReadableAfterWritable,
    /// The total length of the chain exceeds 2^32 bytes (VIRTIO 1.4 §2.7.5).
    #[error("descriptor chain longer than 2^32 bytes")]
    LengthOverflow,
    /// VIRTQ_DESC_F_INDIRECT without VIRTIO_F_INDIRECT_DESC negotiated.
    #[error("indirect descriptor but VIRTIO_F_INDIRECT_DESC was not negotiated")]
    IndirectNotNegotiated,
    /// An indirect table contains an indirect descriptor.
    #[error("indirect descriptor inside an indirect table")]
    NestedIndirect,
    /// An indirect descriptor also has VIRTQ_DESC_F_NEXT, or (packed) is
    /// part of a longer chain.
    #[error("indirect descriptor chained with other descriptors")]
    IndirectChained,
    /// An indirect table length is zero or not a multiple of 16.
    #[error("indirect table length {len} is not a non-zero multiple of 16")]
    IndirectBadLength {
        /// The length.
        len: u32,
    },
    /// An indirect table has more entries than allowed.
    #[error("indirect table of {entries} entries exceeds the limit of {limit}")]
    IndirectTooLarge {
        /// Entries in the table.
        entries: u32,
        /// The limit.
        limit: u32,
    },
    /// (Packed) a chain continues into a descriptor that is not available.
    #[error("chain continues into descriptor {index}, which is not available")]
    NotAvailable {
        /// Ring offset of the descriptor.
        index: u16,
    },
    /// (Packed) a saved descriptor list does not form exactly one chain
    /// (see [`DeviceQueue::chain_from_descriptors`]): it is empty, a
    /// descriptor before the last lacks VIRTQ_DESC_F_NEXT, or the last has
    /// it.
    ///
    /// [`DeviceQueue::chain_from_descriptors`]: super::DeviceQueue::chain_from_descriptors
    #[error("saved descriptor {index} does not fit one chain (VIRTQ_DESC_F_NEXT)")]
    SavedListMismatch {
        /// Position of the offending descriptor in the list.
        index: u16,
    },
}

/// An operation on a device-side queue failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DeviceQueueError {
    /// An earlier error broke the queue; it must be reset (the device should
    /// set DEVICE_NEEDS_RESET).
    #[error("queue is broken by an earlier error and must be reset")]
    Broken,
    /// A ring part is not (entirely) in shared memory.
    #[error("{area} [{addr:#x}, +{len}) is outside shared memory")]
    RingOutOfMemory {
        /// Which part.
        area: RingArea,
        /// Its address.
        addr: u64,
        /// Its length.
        len: usize,
    },
    /// The driver moved the available index by more than the queue size.
    #[error("available index moved from {last} to {idx}, more than the queue size {size}")]
    AvailIndexJump {
        /// Last index the device saw.
        last: u16,
        /// Index the driver wrote.
        idx: u16,
        /// Queue size.
        size: u16,
    },
    /// The available ring names a head outside the descriptor table.
    #[error("available ring names head {head}, outside the {size}-entry table")]
    HeadOutOfRange {
        /// The head index.
        head: u16,
        /// Queue size.
        size: u16,
    },
    /// The driver made more buffers available than the queue can hold
    /// while the device still holds earlier ones (VIRTIO 1.4 §2.7: at most
    /// Queue Size buffers are queued at any time).
    #[error("{in_flight} ring entries in flight exceed the queue size {size}")]
    TooManyInFlight {
        /// Entries (split: buffers; packed: descriptors) popped and not used.
        in_flight: u32,
        /// Queue size.
        size: u16,
    },
    /// A malformed descriptor chain.
    #[error("malformed descriptor chain: {0}")]
    Chain(#[from] ChainError),
    /// Ring memory access failed (cannot happen for a validated queue).
    #[error(transparent)]
    Memory(#[from] OutOfBounds),
    /// The device code misused the queue (not the driver's fault; the queue
    /// stays usable): e.g. completing more buffers than were popped, or out
    /// of order under VIRTIO_F_IN_ORDER.
    #[error("queue misuse by the device: {0}")]
    Usage(&'static str),
}

impl DeviceQueueError {
    /// Whether the error came from the driver (and broke the queue).
    pub fn is_driver_fault(&self) -> bool {
        !matches!(self, DeviceQueueError::Usage(_) | DeviceQueueError::Broken)
    }
}

/// A queue configuration was rejected when the queue was created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Size 0, above 32768, or (split) not a power of two.
    #[error("invalid {format} queue size {size}")]
    InvalidSize {
        /// The format.
        format: crate::RingFormat,
        /// The size.
        size: u16,
    },
    /// A ring part is not aligned as the spec requires.
    #[error("{area} address {addr:#x} is not aligned to {align}")]
    Misaligned {
        /// Which part.
        area: RingArea,
        /// Its address.
        addr: u64,
        /// The required alignment.
        align: u64,
    },
}
