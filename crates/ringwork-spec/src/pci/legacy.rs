//! The legacy PCI interface (VIRTIO 1.4 §4.1.4.10, "Legacy Interfaces: A
//! Note on PCI Device Layout"): the common header in I/O BAR0.
//!
//! Queues use the legacy contiguous layout
//! ([`crate::ring::split::legacy_layout`]) with [`QUEUE_ALIGN`], and the
//! driver writes the queue's physical address divided by 4096 to Queue
//! Address (§4.1.5.1.3.1, "Legacy Interface: A Note on Virtqueue
//! Configuration").
//!
//! Offsets of the header fields; with MSI-X enabled two vector fields follow
//! and the device-specific configuration moves from 20 to 24
//! ([`device_config_offset`]). The header is little-endian; the
//! device-specific configuration behind it is guest-native-endian. Only
//! feature bits 0 to 31 are reachable.

use crate::le::{Le16, Le32};
use crate::wire_view;

/// The BAR holding the legacy interface (an I/O BAR).
pub const LEGACY_BAR: u8 = 0;
/// Device Features bits 0:31 (R, 32-bit).
#[doc(alias = "VIRTIO_PCI_HOST_FEATURES")]
pub const DEVICE_FEATURES: usize = 0;
/// Driver Features bits 0:31 (RW, 32-bit).
#[doc(alias = "VIRTIO_PCI_GUEST_FEATURES")]
pub const DRIVER_FEATURES: usize = 4;
/// Queue Address (RW, 32-bit): physical address >> [`QUEUE_ADDR_SHIFT`].
#[doc(alias = "VIRTIO_PCI_QUEUE_PFN")]
pub const QUEUE_ADDRESS: usize = 8;
/// `queue_size` (R, 16-bit): there is no way to negotiate it.
#[doc(alias = "VIRTIO_PCI_QUEUE_NUM")]
pub const QUEUE_SIZE: usize = 12;
/// `queue_select` (RW, 16-bit).
#[doc(alias = "VIRTIO_PCI_QUEUE_SEL")]
pub const QUEUE_SELECT: usize = 14;
/// Queue Notify (RW, 16-bit).
#[doc(alias = "VIRTIO_PCI_QUEUE_NOTIFY")]
pub const QUEUE_NOTIFY: usize = 16;
/// Device Status (RW, 8-bit). A non-transitional device that wants
/// legacy drivers to fail gracefully answers a zero byte written here by
/// presenting zeroes on every BAR (§4.1.4.11).
#[doc(alias = "VIRTIO_PCI_STATUS")]
pub const DEVICE_STATUS: usize = 18;
/// ISR Status (R, 8-bit).
#[doc(alias = "VIRTIO_PCI_ISR")]
pub const ISR_STATUS: usize = 19;
/// `config_msix_vector` (RW, 16-bit), present only with MSI-X enabled.
#[doc(alias = "VIRTIO_MSI_CONFIG_VECTOR")]
pub const CONFIG_MSIX_VECTOR: usize = 20;
/// `queue_msix_vector` (RW, 16-bit), present only with MSI-X enabled.
#[doc(alias = "VIRTIO_MSI_QUEUE_VECTOR")]
pub const QUEUE_MSIX_VECTOR: usize = 22;
/// Legacy queue alignment (the used ring is aligned to this).
#[doc(alias = "VIRTIO_PCI_VRING_ALIGN")]
pub const QUEUE_ALIGN: usize = 4096;
/// Shift turning a queue's physical address into the Queue Address
/// value (the address is divided by 4096).
#[doc(alias = "VIRTIO_PCI_QUEUE_ADDR_SHIFT")]
pub const QUEUE_ADDR_SHIFT: u32 = 12;
/// Revision ID of the legacy ABI (transitional devices have revision 0).
#[doc(alias = "VIRTIO_PCI_ABI_VERSION")]
pub const ABI_VERSION: u8 = 0;
/// Feature bits reachable through the legacy interface (0 to 31): a
/// transitional device MUST assume bits 32 to 63 are not acknowledged.
pub const FEATURE_BITS: u32 = 32;

/// Offset of the device-specific configuration: 24 with MSI-X enabled,
/// 20 without ("once you enable MSI-X on the device, the other fields
/// move").
#[doc(alias = "VIRTIO_PCI_CONFIG_OFF")]
pub const fn device_config_offset(msix_enabled: bool) -> usize {
    if msix_enabled {
        24
    } else {
        20
    }
}

/// The Queue Address value for a queue at physical address `addr`:
/// `None` if `addr` is not 4096-aligned or `addr >> 12` does not fit in
/// 32 bits.
pub const fn queue_address(addr: u64) -> Option<u32> {
    if addr % QUEUE_ALIGN as u64 != 0 || addr >> QUEUE_ADDR_SHIFT > u32::MAX as u64 {
        None
    } else {
        Some((addr >> QUEUE_ADDR_SHIFT) as u32)
    }
}

wire_view! {
    /// The legacy common header, MSI-X disabled (20 bytes).
    pub struct LegacyHeader, size LEGACY_HEADER_SIZE = 20 {
        /// Device Features bits 0:31.
        @0 device_features / set_device_features: Le32,
        /// Driver Features bits 0:31.
        @4 driver_features / set_driver_features: Le32,
        /// Queue Address (page frame number, 4096-byte pages).
        @8 queue_address / set_queue_address: Le32,
        /// Queue size.
        @12 queue_size / set_queue_size: Le16,
        /// Queue select.
        @14 queue_select / set_queue_select: Le16,
        /// Queue notify.
        @16 queue_notify / set_queue_notify: Le16,
        /// Device status.
        @18 device_status / set_device_status: u8,
        /// ISR status.
        @19 isr_status / set_isr_status: u8,
    }
}

wire_view! {
    /// The two MSI-X vector fields that follow [`LegacyHeader`] (at
    /// offset 20) while MSI-X is enabled.
    pub struct LegacyMsixVectors, size LEGACY_MSIX_VECTORS_SIZE = 4 {
        /// MSI-X vector for configuration changes.
        @0 config_msix_vector / set_config_msix_vector: Le16,
        /// MSI-X vector for the selected queue.
        @2 queue_msix_vector / set_queue_msix_vector: Le16,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_layout() {
        let bytes: [u8; 24] = [
            0x01, 0, 0, 0x01, 0x01, 0, 0, 0, 0x34, 0x12, 0, 0, 0, 1, 2, 0, 2, 0, 0x0f, 0x01, 0, 0,
            1, 0,
        ];
        let h = LegacyHeader::new_checked(&bytes[..]).unwrap();
        assert_eq!(
            (h.device_features(), h.driver_features(), h.queue_address()),
            (0x0100_0001, 1, 0x1234)
        );
        assert_eq!(
            (h.queue_size(), h.queue_select(), h.queue_notify()),
            (256, 2, 2)
        );
        assert_eq!((h.device_status(), h.isr_status()), (0x0f, 1));
        let v = LegacyMsixVectors::new_checked(&bytes[CONFIG_MSIX_VECTOR..]).unwrap();
        assert_eq!((v.config_msix_vector(), v.queue_msix_vector()), (0, 1));
        assert_eq!((LEGACY_HEADER_SIZE, LEGACY_MSIX_VECTORS_SIZE), (20, 4));
        let offs = [
            DEVICE_FEATURES,
            DRIVER_FEATURES,
            QUEUE_ADDRESS,
            QUEUE_SIZE,
            QUEUE_SELECT,
            QUEUE_NOTIFY,
            DEVICE_STATUS,
            ISR_STATUS,
            CONFIG_MSIX_VECTOR,
            QUEUE_MSIX_VECTOR,
        ];
        assert_eq!(offs, [0, 4, 8, 12, 14, 16, 18, 19, 20, 22]);
        assert_eq!(
            (device_config_offset(false), device_config_offset(true)),
            (20, 24)
        );
        assert_eq!((QUEUE_ALIGN, 1usize << QUEUE_ADDR_SHIFT), (4096, 4096));
        assert_eq!(queue_address(0x1234_5000), Some(0x12345));
        assert_eq!(
            (queue_address(0x1234_5800), queue_address(1 << 44)),
            (None, None)
        );
    }
}
