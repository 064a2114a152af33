//! The virtio-pci transport (VIRTIO 1.4 §4.1, "Virtio Over PCI Bus").
//!
//! - Identification (§4.1.2, "PCI Device Discovery"): vendor 0x1AF4, device
//!   IDs 0x1040 + virtio device ID, or a transitional ID 0x1000..=0x103F.
//! - Virtio structure capabilities (§4.1.4, "Virtio Structure PCI
//!   Capabilities"): vendor-specific capabilities ([`PciCap`] and its
//!   variants) locate the common configuration ([`PciCommonCfg`]),
//!   notification, ISR, device-specific configuration, shared memory and
//!   vendor data structures within the BARs.
//! - The legacy I/O BAR0 layout ([`legacy`], §4.1.4.10, "Legacy Interfaces:
//!   A Note on PCI Device Layout").
//!
//! Wire structures are [`wire_view!`](crate::wire_view) byte views; since
//! transports address registers by offset, every field also has a plain
//! offset constant. All fields are little-endian; 64-bit fields are accessed
//! as two 32-bit halves, low half first (§4.1.3, "PCI Device Layout"): the
//! driver uses 8-bit accesses for 8-bit fields, 16-bit aligned accesses for
//! 16-bit fields, and 32-bit aligned accesses for 32- and 64-bit fields.

use crate::le::{Le16, Le32};
use crate::wire_view;

pub use crate::mmio::{Access, Register};

mod common_cfg;
pub use common_cfg::*;

pub mod legacy;

/// PCI Vendor ID of every virtio device.
#[doc(alias = "PCI_VENDOR_ID_REDHAT_QUMRANET")]
pub const VIRTIO_PCI_VENDOR_ID: u16 = 0x1af4;
/// First PCI Device ID of the virtio range (0x1000..=0x107F).
pub const DEVICE_ID_FIRST: u16 = 0x1000;
/// Last PCI Device ID of the virtio range.
pub const DEVICE_ID_LAST: u16 = 0x107f;
/// PCI Device ID = this + virtio device ID (non-transitional devices; the
/// range ends at [`DEVICE_ID_LAST`]).
#[doc(alias = "VIRTIO_PCI_ID_BASE")]
pub const MODERN_DEVICE_ID_BASE: u16 = 0x1040;
/// First transitional PCI Device ID.
pub const TRANSITIONAL_DEVICE_ID_FIRST: u16 = 0x1000;
/// Last transitional PCI Device ID.
pub const TRANSITIONAL_DEVICE_ID_LAST: u16 = 0x103f;

/// Transitional PCI Device IDs and the virtio device IDs they stand for
/// (§4.1.2.1): network (1), block (2), memory ballooning (traditional) (5),
/// console (3), SCSI host (8), entropy source (4), 9P transport (9).
pub const TRANSITIONAL_DEVICE_IDS: [(u16, u16); 7] = [
    (0x1000, 1),
    (0x1001, 2),
    (0x1002, 5),
    (0x1003, 3),
    (0x1004, 8),
    (0x1005, 4),
    (0x1009, 9),
];

/// PCI Revision ID transitional devices MUST have.
pub const TRANSITIONAL_REVISION_ID: u8 = 0;
/// Non-transitional devices SHOULD have a PCI Revision ID of at least this
/// (drivers MUST match any Revision ID).
pub const NON_TRANSITIONAL_MIN_REVISION_ID: u8 = 1;
/// Non-transitional devices SHOULD have a PCI Subsystem Device ID of at
/// least this. Transitional devices MUST have a Subsystem Device ID equal to
/// the virtio device ID (§4.1.2.3).
pub const NON_TRANSITIONAL_MIN_SUBSYSTEM_ID: u16 = 0x40;
/// Offset of the Subsystem Vendor ID in the PCI configuration header.
pub const PCI_SUBSYSTEM_VENDOR_ID_OFFSET: usize = 0x2c;
/// Offset of the Subsystem ID in the PCI configuration header.
pub const PCI_SUBSYSTEM_ID_OFFSET: usize = 0x2e;

/// Whether a PCI function with these IDs is a virtio device.
pub const fn is_virtio_pci_id(vendor_id: u16, device_id: u16) -> bool {
    vendor_id == VIRTIO_PCI_VENDOR_ID && device_id >= DEVICE_ID_FIRST && device_id <= DEVICE_ID_LAST
}

/// Whether `device_id` is in the transitional range 0x1000..=0x103F.
pub const fn is_transitional_device_id(device_id: u16) -> bool {
    device_id >= TRANSITIONAL_DEVICE_ID_FIRST && device_id <= TRANSITIONAL_DEVICE_ID_LAST
}

/// The non-transitional PCI Device ID of virtio device type `device_type`
/// (`None` if the sum leaves 0x1040..=0x107F).
pub const fn modern_device_id(device_type: u16) -> Option<u16> {
    if device_type <= DEVICE_ID_LAST - MODERN_DEVICE_ID_BASE {
        Some(MODERN_DEVICE_ID_BASE + device_type)
    } else {
        None
    }
}

/// The transitional PCI Device ID of `device_type`, if the spec assigns one.
pub const fn transitional_device_id(device_type: u16) -> Option<u16> {
    let mut i = 0;
    while i < TRANSITIONAL_DEVICE_IDS.len() {
        if TRANSITIONAL_DEVICE_IDS[i].1 == device_type {
            return Some(TRANSITIONAL_DEVICE_IDS[i].0);
        }
        i += 1;
    }
    None
}

/// The virtio device type a PCI Device ID stands for: `id - 0x1040` in the
/// modern range, the table entry for a transitional ID, `None` otherwise
/// (including transitional IDs the spec assigns to no device).
///
/// ```
/// use ringwork_spec::pci::device_type_from_pci_id;
/// assert_eq!(device_type_from_pci_id(0x1041), Some(1)); // network
/// assert_eq!(device_type_from_pci_id(0x1000), Some(1)); // transitional network
/// assert_eq!(device_type_from_pci_id(0x1002), Some(5)); // traditional balloon
/// assert_eq!(device_type_from_pci_id(0x1006), None);
/// ```
pub const fn device_type_from_pci_id(device_id: u16) -> Option<u16> {
    if device_id >= MODERN_DEVICE_ID_BASE && device_id <= DEVICE_ID_LAST {
        return Some(device_id - MODERN_DEVICE_ID_BASE);
    }
    let mut i = 0;
    while i < TRANSITIONAL_DEVICE_IDS.len() {
        if TRANSITIONAL_DEVICE_IDS[i].0 == device_id {
            return Some(TRANSITIONAL_DEVICE_IDS[i].1);
        }
        i += 1;
    }
    None
}

/// PCI capability ID of a vendor-specific capability (`cap_vndr`).
pub const PCI_CAP_ID_VNDR: u8 = 0x09;
/// Offset of BAR0 in the PCI configuration header; `bar` values 0 to 5 name
/// the BARs from here.
pub const PCI_BAR0_OFFSET: usize = 0x10;
/// Largest valid `bar` value; larger values are reserved and the driver
/// MUST ignore the capability.
pub const BAR_MAX: u8 = 5;

/// `cfg_type`: common configuration.
pub const VIRTIO_PCI_CAP_COMMON_CFG: u8 = 1;
/// `cfg_type`: notifications.
pub const VIRTIO_PCI_CAP_NOTIFY_CFG: u8 = 2;
/// `cfg_type`: ISR status.
pub const VIRTIO_PCI_CAP_ISR_CFG: u8 = 3;
/// `cfg_type`: device-specific configuration.
pub const VIRTIO_PCI_CAP_DEVICE_CFG: u8 = 4;
/// `cfg_type`: PCI configuration access.
pub const VIRTIO_PCI_CAP_PCI_CFG: u8 = 5;
/// `cfg_type`: shared memory region (a [`PciCap64`], one per region).
pub const VIRTIO_PCI_CAP_SHARED_MEMORY_CFG: u8 = 8;
/// `cfg_type`: vendor-specific data ([`PciVndrData`]).
pub const VIRTIO_PCI_CAP_VENDOR_CFG: u8 = 9;

/// The spec name of a `cfg_type`, if defined (other values are reserved and
/// the driver MUST ignore such capabilities).
pub const fn cfg_type_name(cfg_type: u8) -> Option<&'static str> {
    match cfg_type {
        VIRTIO_PCI_CAP_COMMON_CFG => Some("VIRTIO_PCI_CAP_COMMON_CFG"),
        VIRTIO_PCI_CAP_NOTIFY_CFG => Some("VIRTIO_PCI_CAP_NOTIFY_CFG"),
        VIRTIO_PCI_CAP_ISR_CFG => Some("VIRTIO_PCI_CAP_ISR_CFG"),
        VIRTIO_PCI_CAP_DEVICE_CFG => Some("VIRTIO_PCI_CAP_DEVICE_CFG"),
        VIRTIO_PCI_CAP_PCI_CFG => Some("VIRTIO_PCI_CAP_PCI_CFG"),
        VIRTIO_PCI_CAP_SHARED_MEMORY_CFG => Some("VIRTIO_PCI_CAP_SHARED_MEMORY_CFG"),
        VIRTIO_PCI_CAP_VENDOR_CFG => Some("VIRTIO_PCI_CAP_VENDOR_CFG"),
        _ => None,
    }
}

/// Offset of `cap_vndr` in every virtio capability.
#[doc(alias = "VIRTIO_PCI_CAP_VNDR")]
pub const CAP_VNDR: usize = 0;
/// Offset of `cap_next`.
#[doc(alias = "VIRTIO_PCI_CAP_NEXT")]
pub const CAP_NEXT: usize = 1;
/// Offset of `cap_len`.
#[doc(alias = "VIRTIO_PCI_CAP_LEN")]
pub const CAP_LEN: usize = 2;
/// Offset of `cfg_type`.
#[doc(alias = "VIRTIO_PCI_CAP_CFG_TYPE")]
pub const CAP_CFG_TYPE: usize = 3;
/// Offset of `bar`.
#[doc(alias = "VIRTIO_PCI_CAP_BAR")]
pub const CAP_BAR: usize = 4;
/// Offset of `id`.
#[doc(alias = "VIRTIO_PCI_CAP_ID")]
pub const CAP_ID: usize = 5;
/// Offset of `offset`.
#[doc(alias = "VIRTIO_PCI_CAP_OFFSET")]
pub const CAP_OFFSET: usize = 8;
/// Offset of `length`.
#[doc(alias = "VIRTIO_PCI_CAP_LENGTH")]
pub const CAP_LENGTH: usize = 12;
/// Offset of `offset_hi` in [`PciCap64`].
pub const CAP64_OFFSET_HI: usize = 16;
/// Offset of `length_hi` in [`PciCap64`].
pub const CAP64_LENGTH_HI: usize = 20;
/// Offset of `notify_off_multiplier` in [`PciNotifyCap`].
#[doc(alias = "VIRTIO_PCI_NOTIFY_CAP_MULT")]
pub const NOTIFY_CAP_MULT: usize = 16;
/// Offset of `pci_cfg_data` in [`PciCfgCap`].
pub const CFG_CAP_DATA: usize = 16;
/// Offset of `vendor_id` in [`PciVndrData`].
pub const VNDR_DATA_VENDOR_ID: usize = 4;

wire_view! {
    /// A virtio structure capability (`struct virtio_pci_cap`, §4.1.4).
    #[doc(alias = "virtio_pci_cap")]
    pub struct PciCap, size PCI_CAP_SIZE = 16 {
        /// [`PCI_CAP_ID_VNDR`].
        @0 cap_vndr / set_cap_vndr: u8,
        /// Next capability in the list.
        @1 cap_next / set_cap_next: u8,
        /// Length of the capability including any extra data (the driver
        /// MUST accept larger values than it expects).
        @2 cap_len / set_cap_len: u8,
        /// Which structure: `VIRTIO_PCI_CAP_*`.
        @3 cfg_type / set_cfg_type: u8,
        /// BAR holding the structure (0 to 5).
        @4 bar / set_bar: u8,
        /// Distinguishes multiple capabilities of one type, where the device
        /// type defines it.
        @5 id / set_id: u8,
        /// Padding.
        @6 padding / set_padding: [u8; 2],
        /// Offset of the structure within the BAR.
        @8 offset / set_offset: Le32,
        /// Length of the structure in bytes.
        @12 length / set_length: Le32,
    }
}

wire_view! {
    /// A capability with 64-bit offset and length (`struct
    /// virtio_pci_cap64`): `struct virtio_pci_cap cap` (see [`Self::cap`])
    /// then the high halves. Used by shared memory region capabilities,
    /// whose `cap.id` names the region.
    #[doc(alias = "virtio_pci_cap64")]
    pub struct PciCap64, size PCI_CAP64_SIZE = 24 {
        /// High 32 bits of the offset.
        @16 offset_hi / set_offset_hi: Le32,
        /// High 32 bits of the length.
        @20 length_hi / set_length_hi: Le32,
    }
}

wire_view! {
    /// The notification capability (`struct virtio_pci_notify_cap`,
    /// §4.1.4.4): `struct virtio_pci_cap cap` (see [`Self::cap`]) then
    /// `notify_off_multiplier`.
    #[doc(alias = "virtio_pci_notify_cap")]
    pub struct PciNotifyCap, size PCI_NOTIFY_CAP_SIZE = 20 {
        /// Multiplier for `queue_notify_off` (see [`notify_offset`]).
        @16 notify_off_multiplier / set_notify_off_multiplier: Le32,
    }
}

wire_view! {
    /// The PCI configuration access capability (`struct
    /// virtio_pci_cfg_cap`, §4.1.4.9): `struct virtio_pci_cap cap` (see
    /// [`Self::cap`]) then a data window into the BARs. `cap.bar`,
    /// `cap.length` (1, 2 or 4), `cap.offset` (a multiple of `cap.length`)
    /// and `pci_cfg_data` are read-write for the driver.
    #[doc(alias = "virtio_pci_cfg_cap")]
    pub struct PciCfgCap, size PCI_CFG_CAP_SIZE = 20 {
        /// Data for the BAR access.
        @16 pci_cfg_data / set_pci_cfg_data: [u8; 4],
    }
}

/// `cap()`/`cap_mut()` for the capabilities that start with a `struct
/// virtio_pci_cap`.
macro_rules! embedded_cap {
    ($($view:ident),*) => {$(
        impl<B: AsRef<[u8]>> $view<B> {
            /// The leading `struct virtio_pci_cap`.
            #[inline]
            pub fn cap(&self) -> PciCap<&[u8]> {
                PciCap::new_unchecked(&self.buffer.as_ref()[..PCI_CAP_SIZE])
            }
        }

        impl<B: AsRef<[u8]> + AsMut<[u8]>> $view<B> {
            /// The leading `struct virtio_pci_cap`, writable.
            #[inline]
            pub fn cap_mut(&mut self) -> PciCap<&mut [u8]> {
                PciCap::new_unchecked(&mut self.buffer.as_mut()[..PCI_CAP_SIZE])
            }
        }
    )*};
}
embedded_cap!(PciCap64, PciNotifyCap, PciCfgCap);

impl<B: AsRef<[u8]>> PciCap64<B> {
    /// The full 64-bit offset within the BAR.
    #[inline]
    pub fn offset64(&self) -> u64 {
        u64::from(self.cap().offset()) | u64::from(self.offset_hi()) << 32
    }

    /// The full 64-bit length.
    #[inline]
    pub fn length64(&self) -> u64 {
        u64::from(self.cap().length()) | u64::from(self.length_hi()) << 32
    }
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> PciCap64<B> {
    /// Sets `cap.offset` and `offset_hi`.
    #[inline]
    pub fn set_offset64(&mut self, value: u64) {
        self.cap_mut().set_offset(value as u32);
        self.set_offset_hi((value >> 32) as u32);
    }

    /// Sets `cap.length` and `length_hi`.
    #[inline]
    pub fn set_length64(&mut self, value: u64) {
        self.cap_mut().set_length(value as u32);
        self.set_length_hi((value >> 32) as u32);
    }
}

wire_view! {
    /// The header of a vendor data capability (`struct
    /// virtio_pci_vndr_data`, §4.1.4.8). Vendor-defined data follows, padding
    /// the capability to a multiple of 4 bytes; reads have no side effects.
    #[doc(alias = "virtio_pci_vndr_data")]
    pub struct PciVndrData, size PCI_VNDR_DATA_SIZE = 6 {
        /// [`PCI_CAP_ID_VNDR`].
        @0 cap_vndr / set_cap_vndr: u8,
        /// Next capability in the list.
        @1 cap_next / set_cap_next: u8,
        /// Capability length (a multiple of 4).
        @2 cap_len / set_cap_len: u8,
        /// [`VIRTIO_PCI_CAP_VENDOR_CFG`].
        @3 cfg_type / set_cfg_type: u8,
        /// PCI-SIG Vendor ID identifying the format; MUST NOT be 0x1AF4.
        @4 vendor_id / set_vendor_id: Le16,
    }
}

/// Whether a PCI configuration access capability access of `length` bytes at
/// BAR offset `offset` is allowed: length 1, 2 or 4 and `offset` a multiple
/// of it (§4.1.4.9.2).
pub const fn is_valid_cfg_access(offset: u32, length: u32) -> bool {
    matches!(length, 1 | 2 | 4) && offset % length == 0
}

/// Size of a notification without VIRTIO_F_NOTIFICATION_DATA (the 16-bit
/// queue index or `queue_notif_config_data`).
pub const NOTIFY_WIDTH: usize = 2;
/// Size of a notification with VIRTIO_F_NOTIFICATION_DATA
/// ([`crate::ring::notify::NotificationData`]).
pub const NOTIFY_DATA_WIDTH: usize = 4;

/// Offset within the notification capability's BAR of a queue's Queue
/// Notify address: `cap.offset + queue_notify_off * notify_off_multiplier`
/// (§4.1.4.4), computed without overflow.
pub const fn notify_offset(
    cap_offset: u32,
    queue_notify_off: u16,
    notify_off_multiplier: u32,
) -> u64 {
    cap_offset as u64 + queue_notify_off as u64 * notify_off_multiplier as u64
}

/// Whether a device may present `notify_off_multiplier` (§4.1.4.4.1).
///
/// With VIRTIO_F_NOTIFICATION_DATA offered: 0, or a power of 2 that is a
/// multiple of 4. Without: 0, or "an even power of 2", read here as a power
/// of 2 that is even (2, 4, 8, ...), which keeps every 16-bit Queue Notify
/// address aligned; the phrase could also mean 2^(2k) (1, 4, 16, ...).
pub const fn is_valid_notify_off_multiplier(multiplier: u32, notification_data: bool) -> bool {
    let min = if notification_data { 4 } else { 2 };
    multiplier == 0 || (multiplier.is_power_of_two() && multiplier >= min)
}

/// Whether `cap.length` of the notification capability covers a queue's
/// notify address: `cap.length >= queue_notify_off * notify_off_multiplier
/// + 2` (or `+ 4` with VIRTIO_F_NOTIFICATION_DATA).
pub const fn notify_cap_length_ok(
    cap_length: u32,
    queue_notify_off: u16,
    notify_off_multiplier: u32,
    notification_data: bool,
) -> bool {
    let width = if notification_data {
        NOTIFY_DATA_WIDTH
    } else {
        NOTIFY_WIDTH
    } as u64;
    cap_length as u64 >= queue_notify_off as u64 * notify_off_multiplier as u64 + width
}

/// ISR status bit 0: Queue Interrupt (used buffer notification).
#[doc(alias = "VIRTIO_PCI_ISR_QUEUE")]
pub const ISR_QUEUE: u8 = 1 << 0;
/// ISR status bit 1: Device Configuration Interrupt.
#[doc(alias = "VIRTIO_PCI_ISR_CONFIG")]
pub const ISR_CONFIG: u8 = 1 << 1;

/// `config_msix_vector`/`queue_msix_vector` value meaning "no vector"
/// (unmapped, or the mapping failed).
#[doc(alias = "NO_VECTOR")]
pub const VIRTIO_MSI_NO_VECTOR: u16 = 0xffff;
/// Largest valid MSI-X Table entry number.
pub const MSIX_MAX_TABLE_ENTRY: u16 = 0x7ff;
/// Most MSI-X vectors a device SHOULD support (and at least 2).
pub const MSIX_MAX_VECTORS: u16 = 0x800;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        assert_eq!(VIRTIO_PCI_VENDOR_ID, 0x1af4);
        assert_eq!(modern_device_id(1), Some(0x1041));
        assert_eq!(
            (modern_device_id(0x3f), modern_device_id(0x40)),
            (Some(0x107f), None)
        );
        let table = [
            (1, 0x1000),
            (2, 0x1001),
            (5, 0x1002),
            (3, 0x1003),
            (8, 0x1004),
            (4, 0x1005),
            (9, 0x1009),
        ];
        for (ty, id) in table {
            assert_eq!(transitional_device_id(ty), Some(id));
            assert_eq!(device_type_from_pci_id(id), Some(ty));
            assert!(is_transitional_device_id(id) && is_virtio_pci_id(0x1af4, id));
        }
        assert_eq!(transitional_device_id(16), None);
        assert_eq!(device_type_from_pci_id(0x1050), Some(16));
        assert_eq!(
            (
                device_type_from_pci_id(0x103f),
                device_type_from_pci_id(0x1080)
            ),
            (None, None)
        );
        assert!(!is_virtio_pci_id(0x1af4, 0x1080) && !is_virtio_pci_id(0x8086, 0x1041));
        assert!(!is_transitional_device_id(0x1040));
        assert_eq!(
            (TRANSITIONAL_REVISION_ID, NON_TRANSITIONAL_MIN_REVISION_ID),
            (0, 1)
        );
        assert_eq!(NON_TRANSITIONAL_MIN_SUBSYSTEM_ID, 0x40);
    }

    #[test]
    fn cfg_types() {
        let t = [
            (1, "COMMON_CFG"),
            (2, "NOTIFY_CFG"),
            (3, "ISR_CFG"),
            (4, "DEVICE_CFG"),
            (5, "PCI_CFG"),
            (8, "SHARED_MEMORY_CFG"),
            (9, "VENDOR_CFG"),
        ];
        for (v, n) in t {
            assert_eq!(
                cfg_type_name(v).unwrap().strip_prefix("VIRTIO_PCI_CAP_"),
                Some(n)
            );
        }
        assert_eq!(
            (cfg_type_name(0), cfg_type_name(6), cfg_type_name(7)),
            (None, None, None)
        );
    }

    const CAP_BYTES: [u8; 16] = [
        0x09, 0x50, 0x10, 0x01, 0x04, 0x00, 0, 0, 0x00, 0x30, 0, 0, 0x38, 0, 0, 0,
    ];

    #[test]
    fn pci_cap_layout() {
        let c = PciCap::new_checked(&CAP_BYTES[..]).unwrap();
        assert_eq!(
            (c.cap_vndr(), c.cap_next(), c.cap_len(), c.cfg_type()),
            (PCI_CAP_ID_VNDR, 0x50, 16, 1)
        );
        assert_eq!(
            (c.bar(), c.id(), c.offset(), c.length()),
            (4, 0, 0x3000, 0x38)
        );
        let mut b = [0u8; 16];
        let mut w = PciCap::new_checked(&mut b[..]).unwrap();
        w.set_cap_vndr(9);
        w.set_cap_next(0x50);
        w.set_cap_len(16);
        w.set_cfg_type(VIRTIO_PCI_CAP_COMMON_CFG);
        w.set_bar(4);
        w.set_offset(0x3000);
        w.set_length(0x38);
        assert_eq!(b, CAP_BYTES);
        assert_eq!(PCI_CAP_SIZE, 16);
        assert_eq!(
            [
                CAP_VNDR,
                CAP_NEXT,
                CAP_LEN,
                CAP_CFG_TYPE,
                CAP_BAR,
                CAP_ID,
                CAP_OFFSET,
                CAP_LENGTH
            ],
            [0, 1, 2, 3, 4, 5, 8, 12]
        );
    }

    #[test]
    fn extended_caps_layout() {
        let mut b = [0u8; 24];
        let mut c = PciCap64::new_checked(&mut b[..]).unwrap();
        c.cap_mut().set_cfg_type(VIRTIO_PCI_CAP_SHARED_MEMORY_CFG);
        c.set_offset64(0x1_0000_2000);
        c.set_length64(0x2_0000_0000);
        assert_eq!(
            (c.offset64(), c.length64(), c.cap().cfg_type()),
            (0x1_0000_2000, 0x2_0000_0000, 8)
        );
        assert_eq!(
            b,
            [0, 0, 0, 8, 0, 0, 0, 0, 0, 0x20, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0]
        );
        assert_eq!(
            (PCI_CAP64_SIZE, CAP64_OFFSET_HI, CAP64_LENGTH_HI),
            (24, 16, 20)
        );

        let mut b = [0u8; 20];
        b[..16].copy_from_slice(&CAP_BYTES);
        b[16..].copy_from_slice(&[4, 0, 0, 0]);
        let n = PciNotifyCap::new_checked(&b[..]).unwrap();
        assert_eq!((n.notify_off_multiplier(), n.cap().offset()), (4, 0x3000));
        assert_eq!((PCI_NOTIFY_CAP_SIZE, NOTIFY_CAP_MULT), (20, 16));
        assert!(PciNotifyCap::new_checked(&b[..19]).is_err());

        let mut b = [0u8; 20];
        let mut c = PciCfgCap::new_checked(&mut b[..]).unwrap();
        c.cap_mut().set_length(4);
        c.set_pci_cfg_data([1, 2, 3, 4]);
        assert_eq!(&b[12..], &[4, 0, 0, 0, 1, 2, 3, 4]);
        assert_eq!((PCI_CFG_CAP_SIZE, CFG_CAP_DATA), (20, 16));
        assert!(
            is_valid_cfg_access(8, 4) && is_valid_cfg_access(3, 1) && is_valid_cfg_access(6, 2)
        );
        assert!(
            !is_valid_cfg_access(2, 4) && !is_valid_cfg_access(0, 3) && !is_valid_cfg_access(0, 8)
        );

        let v = PciVndrData::new_checked(&[0x09, 0, 8, 9, 0x86, 0x80][..]).unwrap();
        assert_eq!(
            (v.cfg_type(), v.vendor_id(), v.cap_len()),
            (VIRTIO_PCI_CAP_VENDOR_CFG, 0x8086, 8)
        );
        assert_eq!((PCI_VNDR_DATA_SIZE, VNDR_DATA_VENDOR_ID), (6, 4));
    }

    #[test]
    fn notification_rules() {
        assert_eq!(notify_offset(0x3000, 3, 4), 0x300c);
        assert_eq!(
            notify_offset(u32::MAX, u16::MAX, u32::MAX),
            u32::MAX as u64 * 65536
        );
        assert!(
            is_valid_notify_off_multiplier(0, false) && is_valid_notify_off_multiplier(2, false)
        );
        assert!(
            is_valid_notify_off_multiplier(0x1000, false)
                && !is_valid_notify_off_multiplier(1, false)
        );
        assert!(
            !is_valid_notify_off_multiplier(6, false) && !is_valid_notify_off_multiplier(2, true)
        );
        assert!(is_valid_notify_off_multiplier(4, true) && is_valid_notify_off_multiplier(0, true));
        assert!(notify_cap_length_ok(2, 0, 4, false) && !notify_cap_length_ok(3, 0, 4, true));
        assert!(notify_cap_length_ok(16, 3, 4, true) && !notify_cap_length_ok(15, 3, 4, true));
        assert_eq!(
            (ISR_QUEUE, ISR_CONFIG, VIRTIO_MSI_NO_VECTOR),
            (1, 2, 0xffff)
        );
    }
}
