//! The virtio-mmio transport (VIRTIO 1.4 §4.2, "Virtio Over MMIO").
//!
//! A virtio-mmio device is a block of 32-bit little-endian control registers
//! followed, at offset 0x100, by the device-specific configuration space
//! (§4.2.2, "MMIO Device Register Layout"). There is no discovery mechanism:
//! the platform tells the driver where the block is (e.g. a device-tree node
//! with `compatible = "virtio,mmio"`, §4.2.1).
//!
//! Register offsets are plain `usize` constants named after the spec's
//! register names (`QueueSizeMax` → [`QUEUE_SIZE_MAX`]), with the spec name
//! and Linux's `VIRTIO_MMIO_*` name as doc aliases. The legacy (version 1)
//! layout is in [`legacy`]. [`REGISTERS`] and [`legacy::REGISTERS`] give
//! the same tables as data, with each register's direction.
//!
//! Access rules (§4.2.2.2, "Driver Requirements: MMIO Device Register
//! Layout"): control registers only with 32-bit wide, aligned reads and
//! writes ([`REGISTER_ACCESS_WIDTH`]); the driver must not write registers
//! marked R, must not read those marked W, and must not touch offsets the
//! table does not describe. In the configuration space, 8-bit accesses for
//! 8-bit fields, 16-bit aligned for 16-bit fields, 32-bit aligned for 32- and
//! 64-bit fields.
//!
//! `QueueNotify` takes the queue index, or with `VIRTIO_F_NOTIFICATION_DATA`
//! the 32-bit value of [`crate::ring::notify::NotificationData`]
//! (`vq_index: 16, next_off: 15, next_wrap: 1`; §4.2.3.3, "Available Buffer
//! Notifications").

use crate::features::VIRTIO_F_ADMIN_VQ;

/// `MagicValue` register contents: 0x74726976, "virt" read as a
/// little-endian `u32`.
#[doc(alias = "VIRTIO_MMIO_MAGIC")]
pub const MAGIC: u32 = 0x7472_6976;
/// `Version` of a (non-legacy) device conforming to VIRTIO 1.x.
pub const VERSION_MODERN: u32 = 2;
/// `Version` of a legacy device (§4.2.4, "Legacy interface").
pub const VERSION_LEGACY: u32 = 1;
/// `DeviceID` 0: a placeholder device; the driver MUST ignore it without
/// reporting an error and MUST NOT access any other register.
pub const DEVICE_ID_PLACEHOLDER: u32 = 0;
/// Device-tree `compatible` string of the suggested binding (§4.2.1).
pub const DT_COMPATIBLE: &str = "virtio,mmio";

/// `InterruptStatus`/`InterruptACK` bit 0: Used Buffer Notification (the
/// device used a buffer in at least one active virtqueue).
#[doc(alias = "VIRTIO_MMIO_INT_VRING")]
pub const INTERRUPT_USED_BUFFER: u32 = 1 << 0;
/// `InterruptStatus`/`InterruptACK` bit 1: Configuration Change
/// Notification.
#[doc(alias = "VIRTIO_MMIO_INT_CONFIG")]
pub const INTERRUPT_CONFIG_CHANGE: u32 = 1 << 1;
/// The defined `InterruptStatus` bits; drivers MUST ignore the others and
/// MUST NOT set them in `InterruptACK`.
pub const INTERRUPT_KNOWN_BITS: u32 = INTERRUPT_USED_BUFFER | INTERRUPT_CONFIG_CHANGE;

/// `SHMLenLow`/`SHMLenHigh` for a region that does not exist (a length of
/// -1).
pub const SHM_LEN_NONE: u64 = u64::MAX;
/// `SHMBaseLow`/`SHMBaseHigh` for a region that does not exist.
pub const SHM_BASE_NONE: u64 = 0xffff_ffff_ffff_ffff;

/// Width in bytes of every control-register access (32-bit, aligned).
pub const REGISTER_ACCESS_WIDTH: usize = 4;

/// Features the MMIO transport does not support (§4.2.5, "Features reserved
/// for future use").
pub const MMIO_RESERVED_FEATURES: &[u32] = &[VIRTIO_F_ADMIN_VQ];

/// `MagicValue` (R): [`MAGIC`].
#[doc(alias = "MagicValue", alias = "VIRTIO_MMIO_MAGIC_VALUE")]
pub const MAGIC_VALUE: usize = 0x000;
/// `Version` (R): [`VERSION_MODERN`] (legacy devices: [`VERSION_LEGACY`]).
#[doc(alias = "Version", alias = "VIRTIO_MMIO_VERSION")]
pub const VERSION: usize = 0x004;
/// `DeviceID` (R): the virtio device ID (chapter 5, "Device Types").
#[doc(alias = "DeviceID", alias = "VIRTIO_MMIO_DEVICE_ID")]
pub const DEVICE_ID: usize = 0x008;
/// `VendorID` (R): the virtio subsystem vendor ID.
#[doc(alias = "VendorID", alias = "VIRTIO_MMIO_VENDOR_ID")]
pub const VENDOR_ID: usize = 0x00c;
/// `DeviceFeatures` (R): feature bits `DeviceFeaturesSel*32 ..+31` offered
/// by the device.
#[doc(alias = "DeviceFeatures", alias = "VIRTIO_MMIO_DEVICE_FEATURES")]
pub const DEVICE_FEATURES: usize = 0x010;
/// `DeviceFeaturesSel` (W): selects the 32-bit window of `DeviceFeatures`.
#[doc(alias = "DeviceFeaturesSel", alias = "VIRTIO_MMIO_DEVICE_FEATURES_SEL")]
pub const DEVICE_FEATURES_SEL: usize = 0x014;
/// `DriverFeatures` (W): feature bits `DriverFeaturesSel*32 ..+31` accepted
/// by the driver.
#[doc(alias = "DriverFeatures", alias = "VIRTIO_MMIO_DRIVER_FEATURES")]
pub const DRIVER_FEATURES: usize = 0x020;
/// `DriverFeaturesSel` (W): selects the 32-bit window of `DriverFeatures`.
#[doc(alias = "DriverFeaturesSel", alias = "VIRTIO_MMIO_DRIVER_FEATURES_SEL")]
pub const DRIVER_FEATURES_SEL: usize = 0x024;
/// `QueueSel` (W): selects the virtqueue the `Queue*` registers refer to.
#[doc(alias = "QueueSel", alias = "VIRTIO_MMIO_QUEUE_SEL")]
pub const QUEUE_SEL: usize = 0x030;
/// `QueueSizeMax` (R): maximum size of the selected queue, 0 if it is not
/// available (previously `QueueNumMax`).
#[doc(
    alias = "QueueSizeMax",
    alias = "QueueNumMax",
    alias = "VIRTIO_MMIO_QUEUE_NUM_MAX"
)]
pub const QUEUE_SIZE_MAX: usize = 0x034;
/// `QueueSize` (W): size the driver will use for the selected queue
/// (previously `QueueNum`).
#[doc(
    alias = "QueueSize",
    alias = "QueueNum",
    alias = "VIRTIO_MMIO_QUEUE_NUM"
)]
pub const QUEUE_SIZE: usize = 0x038;
/// `QueueReady` (RW): 1 lets the device execute requests from the selected
/// queue; writing 0 stops it (read back to synchronize).
#[doc(alias = "QueueReady", alias = "VIRTIO_MMIO_QUEUE_READY")]
pub const QUEUE_READY: usize = 0x044;
/// `QueueNotify` (W): available buffer notification (queue index or
/// notification data).
#[doc(alias = "QueueNotify", alias = "VIRTIO_MMIO_QUEUE_NOTIFY")]
pub const QUEUE_NOTIFY: usize = 0x050;
/// `InterruptStatus` (R): [`INTERRUPT_USED_BUFFER`] |
/// [`INTERRUPT_CONFIG_CHANGE`] events behind the asserted interrupt.
#[doc(alias = "InterruptStatus", alias = "VIRTIO_MMIO_INTERRUPT_STATUS")]
pub const INTERRUPT_STATUS: usize = 0x060;
/// `InterruptACK` (W): the events the driver handled.
#[doc(alias = "InterruptACK", alias = "VIRTIO_MMIO_INTERRUPT_ACK")]
pub const INTERRUPT_ACK: usize = 0x064;
/// `Status` (RW): the device status field ([`crate::status`]); writing 0
/// resets the device.
#[doc(alias = "Status", alias = "VIRTIO_MMIO_STATUS")]
pub const STATUS: usize = 0x070;
/// `QueueDescLow` (W): low 32 bits of the Descriptor Area address.
#[doc(alias = "QueueDescLow", alias = "VIRTIO_MMIO_QUEUE_DESC_LOW")]
pub const QUEUE_DESC_LOW: usize = 0x080;
/// `QueueDescHigh` (W): high 32 bits of the Descriptor Area address.
#[doc(alias = "QueueDescHigh", alias = "VIRTIO_MMIO_QUEUE_DESC_HIGH")]
pub const QUEUE_DESC_HIGH: usize = 0x084;
/// `QueueDriverLow` (W): low 32 bits of the Driver Area address.
#[doc(alias = "QueueDriverLow", alias = "VIRTIO_MMIO_QUEUE_AVAIL_LOW")]
pub const QUEUE_DRIVER_LOW: usize = 0x090;
/// `QueueDriverHigh` (W): high 32 bits of the Driver Area address.
#[doc(alias = "QueueDriverHigh", alias = "VIRTIO_MMIO_QUEUE_AVAIL_HIGH")]
pub const QUEUE_DRIVER_HIGH: usize = 0x094;
/// `QueueDeviceLow` (W): low 32 bits of the Device Area address.
#[doc(alias = "QueueDeviceLow", alias = "VIRTIO_MMIO_QUEUE_USED_LOW")]
pub const QUEUE_DEVICE_LOW: usize = 0x0a0;
/// `QueueDeviceHigh` (W): high 32 bits of the Device Area address.
#[doc(alias = "QueueDeviceHigh", alias = "VIRTIO_MMIO_QUEUE_USED_HIGH")]
pub const QUEUE_DEVICE_HIGH: usize = 0x0a4;
/// `SHMSel` (W): selects the shared memory region the `SHM*` registers
/// refer to (§2.10, "Shared Memory Regions").
#[doc(alias = "SHMSel", alias = "VIRTIO_MMIO_SHM_SEL")]
pub const SHM_SEL: usize = 0x0ac;
/// `SHMLenLow` (R): low 32 bits of the selected region's length.
#[doc(alias = "SHMLenLow", alias = "VIRTIO_MMIO_SHM_LEN_LOW")]
pub const SHM_LEN_LOW: usize = 0x0b0;
/// `SHMLenHigh` (R): high 32 bits of the selected region's length.
#[doc(alias = "SHMLenHigh", alias = "VIRTIO_MMIO_SHM_LEN_HIGH")]
pub const SHM_LEN_HIGH: usize = 0x0b4;
/// `SHMBaseLow` (R): low 32 bits of the selected region's physical address.
#[doc(alias = "SHMBaseLow", alias = "VIRTIO_MMIO_SHM_BASE_LOW")]
pub const SHM_BASE_LOW: usize = 0x0b8;
/// `SHMBaseHigh` (R): high 32 bits of the selected region's physical
/// address.
#[doc(alias = "SHMBaseHigh", alias = "VIRTIO_MMIO_SHM_BASE_HIGH")]
pub const SHM_BASE_HIGH: usize = 0x0bc;
/// `QueueReset` (RW): with `VIRTIO_F_RING_RESET`, writing 1 resets the
/// selected queue; it reads 1 until the reset completes.
#[doc(alias = "QueueReset", alias = "VIRTIO_MMIO_QUEUE_RESET")]
pub const QUEUE_RESET: usize = 0x0c0;
/// `ConfigGeneration` (R): configuration atomicity value.
#[doc(alias = "ConfigGeneration", alias = "VIRTIO_MMIO_CONFIG_GENERATION")]
pub const CONFIG_GENERATION: usize = 0x0fc;
/// `Config` (RW): start of the device-specific configuration space.
#[doc(alias = "Config", alias = "VIRTIO_MMIO_CONFIG")]
pub const CONFIG: usize = 0x100;

/// Direction of a register, from the driver's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    /// "R": the driver MUST NOT write it.
    ReadOnly,
    /// "W": the driver MUST NOT read it.
    WriteOnly,
    /// "RW".
    ReadWrite,
}

impl Access {
    /// Whether the driver may read a register with this direction.
    #[inline]
    pub const fn readable(self) -> bool {
        !matches!(self, Access::WriteOnly)
    }

    /// Whether the driver may write a register with this direction.
    #[inline]
    pub const fn writable(self) -> bool {
        !matches!(self, Access::ReadOnly)
    }
}

/// One register of a register table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Register {
    /// The spec's name (`"QueueSizeMax"`).
    pub name: &'static str,
    /// Byte offset from the base of the block.
    pub offset: usize,
    /// Width in bytes.
    pub width: usize,
    /// Direction for the driver.
    pub access: Access,
}

const fn reg(name: &'static str, offset: usize, access: Access) -> Register {
    Register {
        name,
        offset,
        width: 4,
        access,
    }
}

use Access::{ReadOnly as R, ReadWrite as RW, WriteOnly as W};

/// The version 2 control registers (the table of §4.2.2), by offset.
/// `Config` (0x100 onwards) is not listed.
pub const REGISTERS: [Register; 29] = [
    reg("MagicValue", MAGIC_VALUE, R),
    reg("Version", VERSION, R),
    reg("DeviceID", DEVICE_ID, R),
    reg("VendorID", VENDOR_ID, R),
    reg("DeviceFeatures", DEVICE_FEATURES, R),
    reg("DeviceFeaturesSel", DEVICE_FEATURES_SEL, W),
    reg("DriverFeatures", DRIVER_FEATURES, W),
    reg("DriverFeaturesSel", DRIVER_FEATURES_SEL, W),
    reg("QueueSel", QUEUE_SEL, W),
    reg("QueueSizeMax", QUEUE_SIZE_MAX, R),
    reg("QueueSize", QUEUE_SIZE, W),
    reg("QueueReady", QUEUE_READY, RW),
    reg("QueueNotify", QUEUE_NOTIFY, W),
    reg("InterruptStatus", INTERRUPT_STATUS, R),
    reg("InterruptACK", INTERRUPT_ACK, W),
    reg("Status", STATUS, RW),
    reg("QueueDescLow", QUEUE_DESC_LOW, W),
    reg("QueueDescHigh", QUEUE_DESC_HIGH, W),
    reg("QueueDriverLow", QUEUE_DRIVER_LOW, W),
    reg("QueueDriverHigh", QUEUE_DRIVER_HIGH, W),
    reg("QueueDeviceLow", QUEUE_DEVICE_LOW, W),
    reg("QueueDeviceHigh", QUEUE_DEVICE_HIGH, W),
    reg("SHMSel", SHM_SEL, W),
    reg("SHMLenLow", SHM_LEN_LOW, R),
    reg("SHMLenHigh", SHM_LEN_HIGH, R),
    reg("SHMBaseLow", SHM_BASE_LOW, R),
    reg("SHMBaseHigh", SHM_BASE_HIGH, R),
    reg("QueueReset", QUEUE_RESET, RW),
    reg("ConfigGeneration", CONFIG_GENERATION, R),
];

/// Looks up the control register at exactly `offset` in `table`.
///
/// ```
/// use ringwork_spec::mmio::{register_at, Access, REGISTERS};
/// let r = register_at(&REGISTERS, 0x050).unwrap();
/// assert_eq!((r.name, r.access), ("QueueNotify", Access::WriteOnly));
/// assert!(register_at(&REGISTERS, 0x028).is_none()); // legacy GuestPageSize
/// ```
pub fn register_at(table: &[Register], offset: usize) -> Option<&Register> {
    table.iter().find(|r| r.offset == offset)
}

/// Whether a driver access of `width` bytes at `offset` obeys §4.2.2.2 for
/// the control registers of `table` (a described register, 32-bit wide and
/// aligned, and in the register's direction), or falls in the configuration
/// space at [`CONFIG`] and above (whose field widths only the device type
/// knows, so any 1-, 2- or 4-byte naturally aligned access is allowed here).
pub fn is_valid_driver_access(
    table: &[Register],
    offset: usize,
    width: usize,
    write: bool,
) -> bool {
    if offset >= CONFIG {
        return matches!(width, 1 | 2 | 4) && offset % width == 0;
    }
    match register_at(table, offset) {
        Some(r) => {
            width == REGISTER_ACCESS_WIDTH
                && if write {
                    r.access.writable()
                } else {
                    r.access.readable()
                }
        }
        None => false,
    }
}

pub mod legacy {
    //! The legacy (version 1) register layout (VIRTIO 1.4 §4.2.4, "Legacy
    //! interface").
    //!
    //! Legacy devices use page-based queue addressing: the driver writes the
    //! guest page size once ([`GUEST_PAGE_SIZE`]), then per queue its size,
    //! the used ring alignment ([`QUEUE_ALIGN`]) and the page number of the
    //! queue ([`QUEUE_PFN`]). The queue follows the legacy contiguous layout
    //! ([`crate::ring::split::legacy_layout`]) with that alignment. Writing 0
    //! to `Status` resets the device, which also sets `QueuePFN` to 0 for
    //! every queue. The registers not listed here (`QueueReady`, the
    //! `Queue{Desc,Driver,Device}*` pairs, `SHM*`, `QueueReset`,
    //! `ConfigGeneration`) do not exist.

    use super::{reg, Register, R, RW, W};

    pub use super::{
        CONFIG, DEVICE_ID, INTERRUPT_ACK, INTERRUPT_STATUS, MAGIC_VALUE, QUEUE_NOTIFY, QUEUE_SEL,
        QUEUE_SIZE, QUEUE_SIZE_MAX, STATUS, VENDOR_ID, VERSION,
    };

    /// `HostFeatures` (R): device features, window chosen by
    /// `HostFeaturesSel`.
    #[doc(alias = "HostFeatures", alias = "VIRTIO_MMIO_HOST_FEATURES")]
    pub const HOST_FEATURES: usize = 0x010;
    /// `HostFeaturesSel` (W).
    #[doc(alias = "HostFeaturesSel", alias = "VIRTIO_MMIO_HOST_FEATURES_SEL")]
    pub const HOST_FEATURES_SEL: usize = 0x014;
    /// `GuestFeatures` (W): driver features, window chosen by
    /// `GuestFeaturesSel`.
    #[doc(alias = "GuestFeatures", alias = "VIRTIO_MMIO_GUEST_FEATURES")]
    pub const GUEST_FEATURES: usize = 0x020;
    /// `GuestFeaturesSel` (W).
    #[doc(alias = "GuestFeaturesSel", alias = "VIRTIO_MMIO_GUEST_FEATURES_SEL")]
    pub const GUEST_FEATURES_SEL: usize = 0x024;
    /// `GuestPageSize` (W): the guest page size in bytes (a power of 2),
    /// written before any queue is used; the unit of [`QUEUE_PFN`].
    #[doc(alias = "GuestPageSize", alias = "VIRTIO_MMIO_GUEST_PAGE_SIZE")]
    pub const GUEST_PAGE_SIZE: usize = 0x028;
    /// `QueueAlign` (W): alignment in bytes (a power of 2) of the used ring
    /// of the selected queue.
    #[doc(alias = "QueueAlign", alias = "VIRTIO_MMIO_QUEUE_ALIGN")]
    pub const QUEUE_ALIGN: usize = 0x03c;
    /// `QueuePFN` (RW): page number (in `GuestPageSize` units) of the
    /// selected queue's descriptor table; 0 means not in use (written by the
    /// driver to stop using the queue).
    #[doc(alias = "QueuePFN", alias = "VIRTIO_MMIO_QUEUE_PFN")]
    pub const QUEUE_PFN: usize = 0x040;

    /// The legacy control registers (the table of §4.2.4), by offset.
    pub const REGISTERS: [Register; 18] = [
        reg("MagicValue", MAGIC_VALUE, R),
        reg("Version", VERSION, R),
        reg("DeviceID", DEVICE_ID, R),
        reg("VendorID", VENDOR_ID, R),
        reg("HostFeatures", HOST_FEATURES, R),
        reg("HostFeaturesSel", HOST_FEATURES_SEL, W),
        reg("GuestFeatures", GUEST_FEATURES, W),
        reg("GuestFeaturesSel", GUEST_FEATURES_SEL, W),
        reg("GuestPageSize", GUEST_PAGE_SIZE, W),
        reg("QueueSel", QUEUE_SEL, W),
        reg("QueueSizeMax", QUEUE_SIZE_MAX, R),
        reg("QueueSize", QUEUE_SIZE, W),
        reg("QueueAlign", QUEUE_ALIGN, W),
        reg("QueuePFN", QUEUE_PFN, RW),
        reg("QueueNotify", QUEUE_NOTIFY, W),
        reg("InterruptStatus", INTERRUPT_STATUS, R),
        reg("InterruptACK", INTERRUPT_ACK, W),
        reg("Status", STATUS, RW),
    ];

    /// The `QueuePFN` value for a queue at guest-physical `addr`: `None` if
    /// `guest_page_size` is not a power of 2, `addr` is not page-aligned,
    /// is 0 (physical address 0 is illegal), or its page number does not
    /// fit in 32 bits.
    ///
    /// ```
    /// use ringwork_spec::mmio::legacy::queue_pfn;
    /// assert_eq!(queue_pfn(0x8000_0000, 4096), Some(0x8_0000));
    /// assert_eq!(queue_pfn(0x8000_0800, 4096), None);
    /// assert_eq!(queue_pfn(0, 4096), None);
    /// ```
    pub const fn queue_pfn(addr: u64, guest_page_size: u32) -> Option<u32> {
        if !guest_page_size.is_power_of_two() || addr == 0 {
            return None;
        }
        let page = guest_page_size as u64;
        if addr % page != 0 || addr / page > u32::MAX as u64 {
            return None;
        }
        Some((addr / page) as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Offsets as listed in the §4.2.2 table.
    #[test]
    fn modern_offsets_match_spec_table() {
        let expected: [(&str, usize); 29] = [
            ("MagicValue", 0x000),
            ("Version", 0x004),
            ("DeviceID", 0x008),
            ("VendorID", 0x00c),
            ("DeviceFeatures", 0x010),
            ("DeviceFeaturesSel", 0x014),
            ("DriverFeatures", 0x020),
            ("DriverFeaturesSel", 0x024),
            ("QueueSel", 0x030),
            ("QueueSizeMax", 0x034),
            ("QueueSize", 0x038),
            ("QueueReady", 0x044),
            ("QueueNotify", 0x050),
            ("InterruptStatus", 0x060),
            ("InterruptACK", 0x064),
            ("Status", 0x070),
            ("QueueDescLow", 0x080),
            ("QueueDescHigh", 0x084),
            ("QueueDriverLow", 0x090),
            ("QueueDriverHigh", 0x094),
            ("QueueDeviceLow", 0x0a0),
            ("QueueDeviceHigh", 0x0a4),
            ("SHMSel", 0x0ac),
            ("SHMLenLow", 0x0b0),
            ("SHMLenHigh", 0x0b4),
            ("SHMBaseLow", 0x0b8),
            ("SHMBaseHigh", 0x0bc),
            ("QueueReset", 0x0c0),
            ("ConfigGeneration", 0x0fc),
        ];
        for (r, (name, off)) in REGISTERS.iter().zip(expected) {
            assert_eq!((r.name, r.offset), (name, off));
            assert_eq!(r.width, 4);
            assert_eq!(r.offset % 4, 0);
        }
        assert!(REGISTERS.windows(2).all(|w| w[0].offset < w[1].offset));
        assert_eq!(CONFIG, 0x100);
        assert!(REGISTERS.iter().all(|r| r.offset + r.width <= CONFIG));
    }

    #[test]
    fn legacy_offsets_match_spec_table() {
        use legacy::*;
        let expected: [(&str, usize); 18] = [
            ("MagicValue", 0x000),
            ("Version", 0x004),
            ("DeviceID", 0x008),
            ("VendorID", 0x00c),
            ("HostFeatures", 0x010),
            ("HostFeaturesSel", 0x014),
            ("GuestFeatures", 0x020),
            ("GuestFeaturesSel", 0x024),
            ("GuestPageSize", 0x028),
            ("QueueSel", 0x030),
            ("QueueSizeMax", 0x034),
            ("QueueSize", 0x038),
            ("QueueAlign", 0x03c),
            ("QueuePFN", 0x040),
            ("QueueNotify", 0x050),
            ("InterruptStatus", 0x060),
            ("InterruptACK", 0x064),
            ("Status", 0x070),
        ];
        for (r, (name, off)) in legacy::REGISTERS.iter().zip(expected) {
            assert_eq!((r.name, r.offset), (name, off));
        }
        assert!(legacy::REGISTERS
            .windows(2)
            .all(|w| w[0].offset < w[1].offset));
        assert_eq!(legacy::CONFIG, 0x100);
        assert_eq!(
            register_at(&legacy::REGISTERS, QUEUE_PFN).unwrap().access,
            Access::ReadWrite
        );
        assert!(register_at(&legacy::REGISTERS, super::QUEUE_READY).is_none());
    }

    #[test]
    fn magic_is_virt_in_little_endian() {
        assert_eq!(MAGIC.to_le_bytes(), *b"virt");
        assert_eq!(u32::from_le_bytes([0x76, 0x69, 0x72, 0x74]), MAGIC);
        assert_eq!((VERSION_MODERN, VERSION_LEGACY), (2, 1));
    }

    #[test]
    fn interrupt_bits() {
        assert_eq!(INTERRUPT_USED_BUFFER, 1);
        assert_eq!(INTERRUPT_CONFIG_CHANGE, 2);
        assert_eq!(INTERRUPT_KNOWN_BITS, 3);
    }

    #[test]
    fn driver_access_rules() {
        let t = &REGISTERS;
        assert!(is_valid_driver_access(t, MAGIC_VALUE, 4, false));
        assert!(!is_valid_driver_access(t, MAGIC_VALUE, 4, true)); // R
        assert!(!is_valid_driver_access(t, QUEUE_NOTIFY, 4, false)); // W
        assert!(is_valid_driver_access(t, QUEUE_NOTIFY, 4, true));
        assert!(!is_valid_driver_access(t, QUEUE_NOTIFY, 2, true)); // 32-bit only
        assert!(!is_valid_driver_access(t, 0x028, 4, true)); // not described
        assert!(!is_valid_driver_access(t, STATUS + 1, 4, false));
        assert!(
            is_valid_driver_access(t, STATUS, 4, true)
                && is_valid_driver_access(t, STATUS, 4, false)
        );
        assert!(is_valid_driver_access(t, CONFIG + 1, 1, false));
        assert!(is_valid_driver_access(t, CONFIG + 2, 2, true));
        assert!(!is_valid_driver_access(t, CONFIG + 2, 4, false));
        assert!(!is_valid_driver_access(t, CONFIG, 8, false));
        assert!(is_valid_driver_access(
            &legacy::REGISTERS,
            legacy::GUEST_PAGE_SIZE,
            4,
            true
        ));
    }

    #[test]
    fn legacy_pfn() {
        assert_eq!(legacy::queue_pfn(0x1000, 4096), Some(1));
        assert_eq!(legacy::queue_pfn(0x10_0000, 0x10000), Some(0x10));
        assert_eq!(legacy::queue_pfn(0x1000, 3000), None);
        assert_eq!(legacy::queue_pfn(0xfff_ffff_f000, 4096), Some(0xffff_ffff));
        assert_eq!(legacy::queue_pfn(0x1000_0000_0000, 4096), None);
    }

    #[test]
    fn reserved_features() {
        assert_eq!(MMIO_RESERVED_FEATURES, [41]);
        assert_eq!((SHM_LEN_NONE, SHM_BASE_NONE), (u64::MAX, u64::MAX));
    }
}
