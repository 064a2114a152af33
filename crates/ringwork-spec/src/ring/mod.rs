//! Virtqueue layouts: split rings (VIRTIO 1.4 §2.7), packed rings (§2.8),
//! driver notification data (§2.9) and the event-index arithmetic both ring
//! formats share.

pub mod notify;
pub mod packed;
pub mod split;

/// Largest queue size the spec allows (VIRTIO 1.4 §2.7: "The maximum Queue
/// Size value is 32768"; §2.8 keeps the same bound).
pub const MAX_QUEUE_SIZE: u16 = 32768;

/// Descriptor flag: the buffer continues via the `next` field (split) or the
/// next descriptor in the ring (packed).
#[doc(alias = "VRING_DESC_F_NEXT")]
pub const VIRTQ_DESC_F_NEXT: u16 = 1;
/// Descriptor flag: the buffer is device-writable (otherwise device-readable).
#[doc(alias = "VRING_DESC_F_WRITE")]
pub const VIRTQ_DESC_F_WRITE: u16 = 2;
/// Descriptor flag: the buffer holds a table of indirect descriptors.
#[doc(alias = "VRING_DESC_F_INDIRECT")]
pub const VIRTQ_DESC_F_INDIRECT: u16 = 4;

/// Size in bytes of one descriptor, split or packed (both are 16 bytes).
pub const DESC_SIZE: usize = 16;

/// Whether an event index asks for a notification now.
///
/// `event_idx` is the index the other side asked to be told about,
/// `new_idx` the index after this update and `old_idx` the index at the
/// previous notification decision. All arithmetic wraps at 2^16, so the check
/// is correct across index wrap (VIRTIO 1.4 §2.7.10, `virtq_need_event` in
/// `virtio_queue.h`).
///
/// ```
/// use ringwork_spec::ring::need_event;
/// assert!(need_event(5, 6, 5)); // the 6th entry was asked for
/// assert!(!need_event(7, 6, 5)); // not there yet
/// assert!(need_event(0xffff, 1, 0xfffe)); // across the wrap
/// ```
#[doc(alias = "virtq_need_event")]
#[doc(alias = "vring_need_event")]
#[inline]
pub const fn need_event(event_idx: u16, new_idx: u16, old_idx: u16) -> bool {
    new_idx.wrapping_sub(event_idx).wrapping_sub(1) < new_idx.wrapping_sub(old_idx)
}

/// Rounds `value` up to a multiple of `align` (a power of two).
#[inline]
pub const fn align_up(value: usize, align: usize) -> usize {
    (value + align - 1) & !(align - 1)
}
