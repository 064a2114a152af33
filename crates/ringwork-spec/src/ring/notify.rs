//! Driver notification data (VIRTIO 1.4 §2.9, with VIRTIO_F_NOTIFICATION_DATA).
//!
//! ```text
//! le32 { vq_index or vq_notif_config_data: 16; next_off: 15; next_wrap: 1; }
//! ```
//! For split rings `next_off`/`next_wrap` are the low 15 bits and bit 15 of
//! the available index; for packed rings the ring offset and wrap counter of
//! the next descriptor the driver will make available.

/// Decoded driver notification data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotificationData {
    /// Virtqueue index, or the device-supplied `vq_notif_config_data` when
    /// VIRTIO_F_NOTIF_CONFIG_DATA was negotiated.
    pub vq: u16,
    /// `next_off`: 15 bits.
    pub next_off: u16,
    /// `next_wrap`: 1 bit.
    pub next_wrap: bool,
}

impl NotificationData {
    /// Decodes the 32-bit value a driver wrote.
    #[inline]
    pub const fn from_u32(value: u32) -> Self {
        Self {
            vq: value as u16,
            next_off: ((value >> 16) & 0x7fff) as u16,
            next_wrap: value >> 31 != 0,
        }
    }

    /// Encodes the value a driver writes.
    #[inline]
    pub const fn to_u32(self) -> u32 {
        self.vq as u32 | ((self.next_off as u32 & 0x7fff) << 16) | ((self.next_wrap as u32) << 31)
    }

    /// Notification data for a split ring whose next available index is
    /// `avail_idx`.
    #[inline]
    pub const fn split(vq: u16, avail_idx: u16) -> Self {
        Self {
            vq,
            next_off: avail_idx & 0x7fff,
            next_wrap: avail_idx & 0x8000 != 0,
        }
    }

    /// Notification data for a packed ring whose next available descriptor
    /// is at `offset` with wrap counter `wrap`.
    #[inline]
    pub const fn packed(vq: u16, offset: u16, wrap: bool) -> Self {
        Self {
            vq,
            next_off: offset & 0x7fff,
            next_wrap: wrap,
        }
    }

    /// For a split ring: the full 16-bit available index this data names.
    #[inline]
    pub const fn split_avail_idx(self) -> u16 {
        self.next_off | ((self.next_wrap as u16) << 15)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_literal_values() {
        let d = NotificationData::from_u32(0x8005_0003);
        assert_eq!(
            d,
            NotificationData {
                vq: 3,
                next_off: 5,
                next_wrap: true
            }
        );
        assert_eq!(d.to_u32(), 0x8005_0003);
        let s = NotificationData::split(1, 0x8123);
        assert_eq!(s.to_u32(), 0x8123_0001);
        assert_eq!(s.split_avail_idx(), 0x8123);
        assert_eq!(NotificationData::packed(2, 7, false).to_u32(), 0x0007_0002);
    }
}
