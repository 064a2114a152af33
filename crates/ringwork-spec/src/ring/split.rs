//! Split virtqueue layout (VIRTIO 1.4 §2.7).
//!
//! A split queue has three parts, each with its own alignment:
//!
//! | part            | alignment | size                       |
//! |-----------------|-----------|----------------------------|
//! | descriptor table| 16        | `16 * queue_size`          |
//! | available ring  | 2         | `6 + 2 * queue_size`       |
//! | used ring       | 4         | `6 + 8 * queue_size`       |
//!
//! (The sizes include the `used_event` / `avail_event` trailers that exist
//! only with `VIRTIO_F_EVENT_IDX`; allocating them always is what the spec's
//! table does.) Queue sizes are powers of two up to 32768.

use crate::le::{Le16, Le32, Le64};
use crate::wire_view;

pub use super::{VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE};

/// Used ring flag: the device asks the driver not to send available buffer
/// notifications (ignored by drivers when EVENT_IDX is negotiated).
#[doc(alias = "VRING_USED_F_NO_NOTIFY")]
pub const VIRTQ_USED_F_NO_NOTIFY: u16 = 1;
/// Available ring flag: the driver asks the device not to send used buffer
/// notifications (ignored by devices when EVENT_IDX is negotiated).
#[doc(alias = "VRING_AVAIL_F_NO_INTERRUPT")]
pub const VIRTQ_AVAIL_F_NO_INTERRUPT: u16 = 1;

/// Alignment of the descriptor table.
pub const DESC_TABLE_ALIGN: usize = 16;
/// Alignment of the available ring.
pub const AVAIL_RING_ALIGN: usize = 2;
/// Alignment of the used ring.
pub const USED_RING_ALIGN: usize = 4;

/// Offset of `flags` in the available ring.
pub const AVAIL_FLAGS_OFFSET: usize = 0;
/// Offset of `idx` in the available ring.
pub const AVAIL_IDX_OFFSET: usize = 2;
/// Offset of `ring[0]` in the available ring.
pub const AVAIL_RING_OFFSET: usize = 4;
/// Offset of `flags` in the used ring.
pub const USED_FLAGS_OFFSET: usize = 0;
/// Offset of `idx` in the used ring.
pub const USED_IDX_OFFSET: usize = 2;
/// Offset of `ring[0]` in the used ring.
pub const USED_RING_OFFSET: usize = 4;
/// Size of one used ring element.
pub const USED_ELEM_SIZE: usize = 8;

wire_view! {
    /// A split-ring descriptor (`struct virtq_desc`, VIRTIO 1.4 §2.7.5).
    #[doc(alias = "virtq_desc")]
    #[doc(alias = "vring_desc")]
    pub struct SplitDesc, size SPLIT_DESC_SIZE = 16 {
        /// Guest-physical (device-visible) address of the buffer.
        @0 addr / set_addr: Le64,
        /// Length of the buffer in bytes.
        @8 len / set_len: Le32,
        /// `VIRTQ_DESC_F_*` flags.
        @12 flags / set_flags: Le16,
        /// Index of the next descriptor when `flags & VIRTQ_DESC_F_NEXT`.
        @14 next / set_next: Le16,
    }
}

wire_view! {
    /// A used ring element (`struct virtq_used_elem`).
    #[doc(alias = "virtq_used_elem")]
    #[doc(alias = "vring_used_elem")]
    pub struct UsedElem, size USED_ELEM_LEN = 8 {
        /// Index of the head descriptor of the used chain (le32 for padding).
        @0 id / set_id: Le32,
        /// Bytes written into the device-writable part of the buffer.
        @4 len / set_len: Le32,
    }
}

/// Size in bytes of the descriptor table for `queue_size` entries.
#[inline]
pub const fn desc_table_size(queue_size: u16) -> usize {
    16 * queue_size as usize
}

/// Size in bytes of the available ring, `used_event` trailer included.
#[inline]
pub const fn avail_ring_size(queue_size: u16) -> usize {
    6 + 2 * queue_size as usize
}

/// Size in bytes of the used ring, `avail_event` trailer included.
#[inline]
pub const fn used_ring_size(queue_size: u16) -> usize {
    6 + USED_ELEM_SIZE * queue_size as usize
}

/// Offset of `ring[i]` in the available ring.
#[inline]
pub const fn avail_ring_entry_offset(i: u16) -> usize {
    AVAIL_RING_OFFSET + 2 * i as usize
}

/// Offset of `used_event` (after `ring[queue_size]`) in the available ring.
#[doc(alias = "virtq_used_event")]
#[inline]
pub const fn used_event_offset(queue_size: u16) -> usize {
    AVAIL_RING_OFFSET + 2 * queue_size as usize
}

/// Offset of `ring[i]` in the used ring.
#[inline]
pub const fn used_ring_entry_offset(i: u16) -> usize {
    USED_RING_OFFSET + USED_ELEM_SIZE * i as usize
}

/// Offset of `avail_event` (after `ring[queue_size]`) in the used ring.
#[doc(alias = "virtq_avail_event")]
#[inline]
pub const fn avail_event_offset(queue_size: u16) -> usize {
    USED_RING_OFFSET + USED_ELEM_SIZE * queue_size as usize
}

/// Whether `queue_size` is a valid split-queue size (a power of two, 1..=32768).
#[inline]
pub const fn is_valid_queue_size(queue_size: u16) -> bool {
    queue_size != 0 && queue_size.is_power_of_two() && queue_size <= super::MAX_QUEUE_SIZE
}

/// The legacy contiguous layout (VIRTIO 1.4 §2.7.2, "Legacy Interfaces: A
/// Note on Virtqueue Layout"): descriptor table, available ring, padding to
/// `queue_align`, used ring, all in one physically-contiguous area.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LegacyLayout {
    /// Offset of the available ring from the start of the area.
    pub avail_offset: usize,
    /// Offset of the used ring from the start of the area.
    pub used_offset: usize,
    /// Total bytes of the area (`virtq_size` in the spec).
    pub total_size: usize,
}

/// Computes the legacy layout for `queue_size` and `queue_align` (a power of
/// two, usually 4096).
///
/// ```
/// use ringwork_spec::ring::split::legacy_layout;
/// // Linux's vring_size(256, 4096) is 10246 rounded as below.
/// let l = legacy_layout(256, 4096);
/// assert_eq!((l.avail_offset, l.used_offset, l.total_size), (4096, 8192, 12288));
/// ```
pub const fn legacy_layout(queue_size: u16, queue_align: usize) -> LegacyLayout {
    let qsz = queue_size as usize;
    let avail_offset = 16 * qsz;
    let used_offset = super::align_up(16 * qsz + 2 * (3 + qsz), queue_align);
    let total_size = used_offset + super::align_up(2 * 3 + USED_ELEM_SIZE * qsz, queue_align);
    LegacyLayout {
        avail_offset,
        used_offset,
        total_size,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn desc_layout_matches_spec_bytes() {
        let mut b = [0u8; 16];
        let mut d = SplitDesc::new_checked(&mut b[..]).unwrap();
        d.set_addr(0x1122_3344_5566_7788);
        d.set_len(0xaabb_ccdd);
        d.set_flags(VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE);
        d.set_next(0x0102);
        assert_eq!(
            b,
            [
                0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, 0xdd, 0xcc, 0xbb, 0xaa, 0x03, 0x00,
                0x02, 0x01
            ]
        );
        assert_eq!(SPLIT_DESC_SIZE, 16);
    }

    #[test]
    fn used_elem_layout() {
        let b = [1, 0, 0, 0, 0, 2, 0, 0];
        let e = UsedElem::new_checked(&b[..]).unwrap();
        assert_eq!((e.id(), e.len()), (1, 0x200));
        assert_eq!(USED_ELEM_LEN, 8);
    }

    #[test]
    fn ring_sizes_follow_the_spec_table() {
        assert_eq!(desc_table_size(256), 4096);
        assert_eq!(avail_ring_size(256), 6 + 512);
        assert_eq!(used_ring_size(256), 6 + 2048);
        assert_eq!(used_event_offset(256), 4 + 512);
        assert_eq!(avail_event_offset(256), 4 + 2048);
        assert_eq!(avail_ring_entry_offset(3), 10);
        assert_eq!(used_ring_entry_offset(3), 28);
        assert!(is_valid_queue_size(1) && is_valid_queue_size(32768));
        assert!(!is_valid_queue_size(0) && !is_valid_queue_size(3) && !is_valid_queue_size(384));
    }

    #[test]
    fn legacy_layout_matches_virtq_size_formula() {
        // ALIGN(16*qsz + 2*(3+qsz)) + ALIGN(2*3 + 8*qsz), qalign 4096.
        for (qsz, total) in [(1u16, 8192usize), (128, 8192), (256, 12288), (1024, 32768)] {
            assert_eq!(legacy_layout(qsz, 4096).total_size, total, "qsz {qsz}");
        }
        let l = legacy_layout(4, 64);
        assert_eq!((l.avail_offset, l.used_offset), (64, 128));
    }
}
