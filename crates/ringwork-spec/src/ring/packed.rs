//! Packed virtqueue layout (VIRTIO 1.4 §2.8).
//!
//! A packed queue has a descriptor ring (alignment 16, `16 * queue_size`
//! bytes) and two event suppression structures (alignment 4, 4 bytes each):
//! the *driver* area, written by the driver to control used buffer
//! notifications, and the *device* area, written by the device to control
//! available buffer notifications. Queue sizes need not be powers of two.

use crate::le::{Le16, Le32, Le64};
use crate::wire_view;

pub use super::{VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE};

/// Descriptor flag bit 7: available, written by the driver (VIRTIO 1.4 §2.8.1).
#[doc(alias = "VRING_PACKED_DESC_F_AVAIL")]
pub const VIRTQ_DESC_F_AVAIL: u16 = 1 << 7;
/// Descriptor flag bit 15: used, written by the device.
#[doc(alias = "VRING_PACKED_DESC_F_USED")]
pub const VIRTQ_DESC_F_USED: u16 = 1 << 15;

/// Event suppression flags: notifications enabled.
#[doc(alias = "VRING_PACKED_EVENT_FLAG_ENABLE")]
pub const RING_EVENT_FLAGS_ENABLE: u16 = 0x0;
/// Event suppression flags: notifications disabled.
#[doc(alias = "VRING_PACKED_EVENT_FLAG_DISABLE")]
pub const RING_EVENT_FLAGS_DISABLE: u16 = 0x1;
/// Event suppression flags: notify when the descriptor at `desc` is reached
/// (only with VIRTIO_F_EVENT_IDX).
#[doc(alias = "VRING_PACKED_EVENT_FLAG_DESC")]
pub const RING_EVENT_FLAGS_DESC: u16 = 0x2;
/// Mask of the `desc_event_flags` bits in the event suppression `flags` word.
pub const RING_EVENT_FLAGS_MASK: u16 = 0x3;
/// Bit position of the wrap counter in the event suppression `desc` word.
#[doc(alias = "VRING_PACKED_EVENT_F_WRAP_CTR")]
pub const RING_EVENT_WRAP_SHIFT: u32 = 15;

/// Alignment of the descriptor ring.
pub const DESC_RING_ALIGN: usize = 16;
/// Alignment of each event suppression structure.
pub const EVENT_SUPPRESS_ALIGN: usize = 4;
/// Offset of `flags` within a packed descriptor.
pub const DESC_FLAGS_OFFSET: usize = 14;
/// Offset of `id` within a packed descriptor.
pub const DESC_ID_OFFSET: usize = 12;

wire_view! {
    /// A packed-ring descriptor (`struct pvirtq_desc`, VIRTIO 1.4 §2.8.13).
    #[doc(alias = "pvirtq_desc")]
    #[doc(alias = "vring_packed_desc")]
    pub struct PackedDesc, size PACKED_DESC_SIZE = 16 {
        /// Buffer address.
        @0 addr / set_addr: Le64,
        /// Buffer length (for a used descriptor: bytes written).
        @8 len / set_len: Le32,
        /// Buffer ID.
        @12 id / set_id: Le16,
        /// `VIRTQ_DESC_F_*` flags including AVAIL and USED.
        @14 flags / set_flags: Le16,
    }
}

wire_view! {
    /// An event suppression structure (`struct pvirtq_event_suppress`,
    /// VIRTIO 1.4 §2.8.14).
    #[doc(alias = "pvirtq_event_suppress")]
    #[doc(alias = "vring_packed_desc_event")]
    pub struct EventSuppress, size EVENT_SUPPRESS_SIZE = 4 {
        /// `desc_event_off` (bits 0..15) and `desc_event_wrap` (bit 15).
        @0 desc / set_desc: Le16,
        /// `desc_event_flags` (bits 0..2); other bits reserved.
        @2 flags / set_flags: Le16,
    }
}

/// Size in bytes of the descriptor ring for `queue_size` entries.
#[inline]
pub const fn desc_ring_size(queue_size: u16) -> usize {
    16 * queue_size as usize
}

/// Whether `queue_size` is a valid packed-queue size (1..=32768, any value).
#[inline]
pub const fn is_valid_queue_size(queue_size: u16) -> bool {
    queue_size != 0 && queue_size <= super::MAX_QUEUE_SIZE
}

/// Whether a descriptor with `flags` is available to the device for a device
/// whose wrap counter is `wrap` (VIRTIO 1.4 §2.8.1: AVAIL equals the wrap
/// counter and USED differs from it).
#[inline]
pub const fn is_avail(flags: u16, wrap: bool) -> bool {
    // One mask and one compare (this runs for every descriptor popped).
    let want = if wrap {
        VIRTQ_DESC_F_AVAIL
    } else {
        VIRTQ_DESC_F_USED
    };
    flags & (VIRTQ_DESC_F_AVAIL | VIRTQ_DESC_F_USED) == want
}

/// Whether a descriptor with `flags` has been used, for a driver whose used
/// wrap counter is `wrap` (AVAIL and USED both equal the wrap counter).
#[inline]
pub const fn is_used(flags: u16, wrap: bool) -> bool {
    let both = VIRTQ_DESC_F_AVAIL | VIRTQ_DESC_F_USED;
    flags & both == if wrap { both } else { 0 }
}

/// The AVAIL/USED bits a driver writes to make a descriptor available with
/// wrap counter `wrap`.
#[inline]
pub const fn avail_flags(wrap: bool) -> u16 {
    if wrap {
        VIRTQ_DESC_F_AVAIL
    } else {
        VIRTQ_DESC_F_USED
    }
}

/// The AVAIL/USED bits a device writes to mark a descriptor used with wrap
/// counter `wrap`.
#[inline]
pub const fn used_flags(wrap: bool) -> u16 {
    if wrap {
        VIRTQ_DESC_F_AVAIL | VIRTQ_DESC_F_USED
    } else {
        0
    }
}

/// Packs a ring offset and wrap counter into an event suppression `desc`
/// word (`desc_event_off | desc_event_wrap << 15`).
#[inline]
pub const fn event_desc(offset: u16, wrap: bool) -> u16 {
    (offset & 0x7fff) | ((wrap as u16) << RING_EVENT_WRAP_SHIFT)
}

/// Splits an event suppression `desc` word into (offset, wrap counter).
#[inline]
pub const fn split_event_desc(desc: u16) -> (u16, bool) {
    (desc & 0x7fff, desc >> RING_EVENT_WRAP_SHIFT != 0)
}

/// A ring position as a number on a double lap (`0..2 * size`), so that
/// positions can be compared across one wrap: offsets with wrap counter 1
/// map to `size + offset`, with wrap counter 0 to `offset`.
#[inline]
pub const fn lap_position(size: u16, offset: u16, wrap: bool) -> u32 {
    offset as u32 + if wrap { size as u32 } else { 0 }
}

/// The packed-ring form of [`need_event`](super::need_event): whether the
/// position `event` (see [`lap_position`]) lies in `[old, new)`, i.e. was
/// passed by moving from `old` to `new` (all modulo `2 * size`).
///
/// ```
/// use ringwork_spec::ring::packed::{lap_position, need_event_packed};
/// let size = 4;
/// // Moving from offset 3 (wrap 1) to offset 1 (wrap 0) passes 3 and 0.
/// let (old, new) = (lap_position(size, 3, true), lap_position(size, 1, false));
/// assert!(need_event_packed(size, lap_position(size, 0, false), new, old));
/// assert!(!need_event_packed(size, lap_position(size, 1, false), new, old));
/// ```
#[inline]
pub const fn need_event_packed(size: u16, event: u32, new: u32, old: u32) -> bool {
    let lap = 2 * size as u32;
    (new + 2 * lap - event - 1) % lap < (new + lap - old) % lap
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn desc_layout_matches_spec_bytes() {
        let mut b = [0u8; 16];
        let mut d = PackedDesc::new_checked(&mut b[..]).unwrap();
        d.set_addr(0x1000);
        d.set_len(64);
        d.set_id(7);
        d.set_flags(VIRTQ_DESC_F_AVAIL | VIRTQ_DESC_F_NEXT);
        assert_eq!(b, [0, 0x10, 0, 0, 0, 0, 0, 0, 64, 0, 0, 0, 7, 0, 0x81, 0]);
        assert_eq!(PACKED_DESC_SIZE, 16);
    }

    #[test]
    fn event_suppress_layout() {
        let b = [0x05, 0x80, 0x02, 0x00];
        let e = EventSuppress::new_checked(&b[..]).unwrap();
        assert_eq!(split_event_desc(e.desc()), (5, true));
        assert_eq!(e.flags() & RING_EVENT_FLAGS_MASK, RING_EVENT_FLAGS_DESC);
        assert_eq!(event_desc(5, true), 0x8005);
        assert_eq!(EVENT_SUPPRESS_SIZE, 4);
    }

    #[test]
    fn avail_and_used_bits() {
        assert!(is_avail(avail_flags(true), true));
        assert!(is_avail(avail_flags(false), false));
        assert!(!is_avail(avail_flags(true), false));
        assert!(!is_avail(used_flags(true), true));
        assert!(is_used(used_flags(true), true));
        assert!(is_used(used_flags(false), false));
        assert!(!is_used(avail_flags(true), true));
        // A zeroed ring is neither available (wrap 1) nor used (wrap 1).
        assert!(!is_avail(0, true) && !is_used(0, true));
        assert!(is_valid_queue_size(384) && !is_valid_queue_size(0));
        assert_eq!(desc_ring_size(3), 48);
    }

    /// The one-compare forms against the spec's wording (§2.8.1), for
    /// every combination of the two bits, other flag bits and wrap.
    #[test]
    fn avail_and_used_match_the_definition() {
        for other in [0u16, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 0x7f7f] {
            for (a, u) in [(false, false), (false, true), (true, false), (true, true)] {
                let flags = other
                    | if a { VIRTQ_DESC_F_AVAIL } else { 0 }
                    | if u { VIRTQ_DESC_F_USED } else { 0 };
                for wrap in [false, true] {
                    assert_eq!(
                        is_avail(flags, wrap),
                        a == wrap && u != wrap,
                        "{flags:#x} {wrap}"
                    );
                    assert_eq!(
                        is_used(flags, wrap),
                        a == wrap && u == wrap,
                        "{flags:#x} {wrap}"
                    );
                }
            }
        }
    }
}
