//! Types both sides of a queue share.

use ringwork_spec::features::{
    VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC, VIRTIO_F_IN_ORDER, VIRTIO_F_NOTIFICATION_DATA,
    VIRTIO_F_RING_PACKED, VIRTIO_F_RING_RESET,
};

/// Which ring format a queue uses (VIRTIO 1.4 §2.7 split, §2.8 packed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RingFormat {
    /// Split virtqueue: descriptor table, available ring, used ring.
    #[default]
    Split,
    /// Packed virtqueue: one descriptor ring and two event suppression areas.
    Packed,
}

impl core::fmt::Display for RingFormat {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            RingFormat::Split => "split",
            RingFormat::Packed => "packed",
        })
    }
}

/// The negotiated transport features a queue's behaviour depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct QueueFeatures {
    /// VIRTIO_F_INDIRECT_DESC: indirect descriptor tables.
    pub indirect_desc: bool,
    /// VIRTIO_F_EVENT_IDX: event-index notification suppression.
    pub event_idx: bool,
    /// VIRTIO_F_IN_ORDER: buffers are used in the order they were made
    /// available, and completions may be batched.
    pub in_order: bool,
    /// VIRTIO_F_NOTIFICATION_DATA: notifications carry the next position.
    pub notification_data: bool,
    /// VIRTIO_F_RING_RESET: single queues can be reset.
    pub ring_reset: bool,
}

impl QueueFeatures {
    /// Picks the queue-relevant bits out of a 64-bit feature word, and the
    /// ring format (VIRTIO_F_RING_PACKED).
    pub fn from_bits(features: u64) -> (RingFormat, Self) {
        let has = |bit: u32| features & (1u64 << bit) != 0;
        let format = if has(VIRTIO_F_RING_PACKED) {
            RingFormat::Packed
        } else {
            RingFormat::Split
        };
        (
            format,
            Self {
                indirect_desc: has(VIRTIO_F_INDIRECT_DESC),
                event_idx: has(VIRTIO_F_EVENT_IDX),
                in_order: has(VIRTIO_F_IN_ORDER),
                notification_data: has(VIRTIO_F_NOTIFICATION_DATA),
                ring_reset: has(VIRTIO_F_RING_RESET),
            },
        )
    }

    /// The 64-bit feature word for these features and `format`.
    pub fn to_bits(self, format: RingFormat) -> u64 {
        let bit = |on: bool, b: u32| if on { 1u64 << b } else { 0 };
        bit(format == RingFormat::Packed, VIRTIO_F_RING_PACKED)
            | bit(self.indirect_desc, VIRTIO_F_INDIRECT_DESC)
            | bit(self.event_idx, VIRTIO_F_EVENT_IDX)
            | bit(self.in_order, VIRTIO_F_IN_ORDER)
            | bit(self.notification_data, VIRTIO_F_NOTIFICATION_DATA)
            | bit(self.ring_reset, VIRTIO_F_RING_RESET)
    }
}

/// One element of a buffer: a device-visible address and a length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Segment {
    /// Device-visible (guest-physical or IOVA) address.
    pub addr: u64,
    /// Length in bytes.
    pub len: u32,
}

impl Segment {
    /// A segment of `len` bytes at `addr`.
    #[inline]
    pub const fn new(addr: u64, len: u32) -> Self {
        Self { addr, len }
    }
}

/// The three guest addresses of a queue, as a transport reports them
/// (VIRTIO 1.4 §2.6: Descriptor Area, Driver Area, Device Area).
///
/// For a split queue they are the descriptor table, available ring and used
/// ring; for a packed queue the descriptor ring, the driver event
/// suppression structure and the device event suppression structure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct QueueAddresses {
    /// Descriptor Area.
    pub desc: u64,
    /// Driver Area.
    pub driver: u64,
    /// Device Area.
    pub device: u64,
}

/// A position in a queue, saved so a queue can be stopped and resumed
/// elsewhere (live reconfiguration, backend restart, migration).
///
/// For split queues the indices are free-running 16-bit counters and the
/// wrap counters are unused (`true`); for packed queues they are ring offsets
/// below the queue size, each with its wrap counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct QueuePosition {
    /// Next available entry the device will read.
    pub next_avail: u16,
    /// Wrap counter belonging to `next_avail` (packed).
    pub avail_wrap: bool,
    /// Next used entry the device will write.
    pub next_used: u16,
    /// Wrap counter belonging to `next_used` (packed).
    pub used_wrap: bool,
}

impl Default for QueuePosition {
    fn default() -> Self {
        Self {
            next_avail: 0,
            avail_wrap: true,
            next_used: 0,
            used_wrap: true,
        }
    }
}

impl QueuePosition {
    /// The vhost-user ring base for a packed queue (vhost-user.rst, "Ring
    /// states"): bits 0-14 last avail index, bit 15 its wrap counter, bits
    /// 16-30 last used index, bit 31 its wrap counter. For split queues only
    /// the low 16 bits (the avail index) are used.
    pub fn to_vhost_user_base(self, format: RingFormat) -> u32 {
        match format {
            RingFormat::Split => u32::from(self.next_avail),
            RingFormat::Packed => {
                u32::from(self.next_avail & 0x7fff)
                    | (u32::from(self.avail_wrap) << 15)
                    | (u32::from(self.next_used & 0x7fff) << 16)
                    | (u32::from(self.used_wrap) << 31)
            }
        }
    }

    /// Decodes a vhost-user ring base (see [`Self::to_vhost_user_base`]).
    /// For split queues the used index starts equal to the avail index.
    pub fn from_vhost_user_base(format: RingFormat, base: u32) -> Self {
        match format {
            RingFormat::Split => Self {
                next_avail: base as u16,
                next_used: base as u16,
                ..Self::default()
            },
            RingFormat::Packed => Self {
                next_avail: (base & 0x7fff) as u16,
                avail_wrap: base & (1 << 15) != 0,
                next_used: ((base >> 16) & 0x7fff) as u16,
                used_wrap: base & (1 << 31) != 0,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feature_bits_round_trip() {
        let bits = (1 << 28) | (1 << 29) | (1 << 34) | (1 << 35) | (1 << 38) | (1 << 40) | 1;
        let (fmt, f) = QueueFeatures::from_bits(bits);
        assert_eq!(fmt, RingFormat::Packed);
        assert!(
            f.indirect_desc && f.event_idx && f.in_order && f.notification_data && f.ring_reset
        );
        assert_eq!(f.to_bits(fmt), bits & !1);
        assert_eq!(QueueFeatures::from_bits(0).0, RingFormat::Split);
    }

    #[test]
    fn vhost_user_base_encoding() {
        let p = QueuePosition {
            next_avail: 5,
            avail_wrap: false,
            next_used: 3,
            used_wrap: true,
        };
        let b = p.to_vhost_user_base(RingFormat::Packed);
        assert_eq!(b, 0x8003_0005);
        assert_eq!(
            QueuePosition::from_vhost_user_base(RingFormat::Packed, b),
            p
        );
        let s = QueuePosition::from_vhost_user_base(RingFormat::Split, 0x1_2345);
        assert_eq!((s.next_avail, s.next_used), (0x2345, 0x2345));
        assert_eq!(s.to_vhost_user_base(RingFormat::Split), 0x2345);
    }
}
