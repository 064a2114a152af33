//! The common configuration structure (VIRTIO 1.4 §4.1.4.3, "Common
//! configuration structure layout"), re-exported by [`crate::pci`].

use crate::le::{Le16, Le32, Le64};
use crate::mmio::{Access, Register};
use crate::wire_view;

/// Offset of `device_feature_select` in the common configuration.
#[doc(alias = "VIRTIO_PCI_COMMON_DFSELECT")]
pub const COMMON_CFG_DEVICE_FEATURE_SELECT: usize = 0;
/// Offset of `device_feature`.
#[doc(alias = "VIRTIO_PCI_COMMON_DF")]
pub const COMMON_CFG_DEVICE_FEATURE: usize = 4;
/// Offset of `driver_feature_select`.
#[doc(alias = "VIRTIO_PCI_COMMON_GFSELECT")]
pub const COMMON_CFG_DRIVER_FEATURE_SELECT: usize = 8;
/// Offset of `driver_feature`.
#[doc(alias = "VIRTIO_PCI_COMMON_GF")]
pub const COMMON_CFG_DRIVER_FEATURE: usize = 12;
/// Offset of `config_msix_vector`.
#[doc(alias = "VIRTIO_PCI_COMMON_MSIX")]
pub const COMMON_CFG_CONFIG_MSIX_VECTOR: usize = 16;
/// Offset of `num_queues`.
#[doc(alias = "VIRTIO_PCI_COMMON_NUMQ")]
pub const COMMON_CFG_NUM_QUEUES: usize = 18;
/// Offset of `device_status`.
#[doc(alias = "VIRTIO_PCI_COMMON_STATUS")]
pub const COMMON_CFG_DEVICE_STATUS: usize = 20;
/// Offset of `config_generation`.
#[doc(alias = "VIRTIO_PCI_COMMON_CFGGENERATION")]
pub const COMMON_CFG_CONFIG_GENERATION: usize = 21;
/// Offset of `queue_select`.
#[doc(alias = "VIRTIO_PCI_COMMON_Q_SELECT")]
pub const COMMON_CFG_QUEUE_SELECT: usize = 22;
/// Offset of `queue_size`.
#[doc(alias = "VIRTIO_PCI_COMMON_Q_SIZE")]
pub const COMMON_CFG_QUEUE_SIZE: usize = 24;
/// Offset of `queue_msix_vector`.
#[doc(alias = "VIRTIO_PCI_COMMON_Q_MSIX")]
pub const COMMON_CFG_QUEUE_MSIX_VECTOR: usize = 26;
/// Offset of `queue_enable`.
#[doc(alias = "VIRTIO_PCI_COMMON_Q_ENABLE")]
pub const COMMON_CFG_QUEUE_ENABLE: usize = 28;
/// Offset of `queue_notify_off`.
#[doc(alias = "VIRTIO_PCI_COMMON_Q_NOFF")]
pub const COMMON_CFG_QUEUE_NOTIFY_OFF: usize = 30;
/// Offset of `queue_desc` (low half).
#[doc(alias = "VIRTIO_PCI_COMMON_Q_DESCLO")]
pub const COMMON_CFG_QUEUE_DESC: usize = 32;
/// Offset of the high half of `queue_desc`.
#[doc(alias = "VIRTIO_PCI_COMMON_Q_DESCHI")]
pub const COMMON_CFG_QUEUE_DESC_HI: usize = 36;
/// Offset of `queue_driver` (low half).
#[doc(alias = "VIRTIO_PCI_COMMON_Q_AVAILLO")]
pub const COMMON_CFG_QUEUE_DRIVER: usize = 40;
/// Offset of the high half of `queue_driver`.
#[doc(alias = "VIRTIO_PCI_COMMON_Q_AVAILHI")]
pub const COMMON_CFG_QUEUE_DRIVER_HI: usize = 44;
/// Offset of `queue_device` (low half).
#[doc(alias = "VIRTIO_PCI_COMMON_Q_USEDLO")]
pub const COMMON_CFG_QUEUE_DEVICE: usize = 48;
/// Offset of the high half of `queue_device`.
#[doc(alias = "VIRTIO_PCI_COMMON_Q_USEDHI")]
pub const COMMON_CFG_QUEUE_DEVICE_HI: usize = 52;
/// Offset of `queue_notif_config_data` (previously `queue_notify_data`).
#[doc(alias = "VIRTIO_PCI_COMMON_Q_NDATA")]
#[doc(alias = "COMMON_CFG_QUEUE_NOTIFY_DATA")]
pub const COMMON_CFG_QUEUE_NOTIF_CONFIG_DATA: usize = 56;
/// Offset of `queue_reset`.
#[doc(alias = "VIRTIO_PCI_COMMON_Q_RESET")]
pub const COMMON_CFG_QUEUE_RESET: usize = 58;
/// Offset of `admin_queue_index`.
#[doc(alias = "VIRTIO_PCI_COMMON_ADM_Q_IDX")]
pub const COMMON_CFG_ADMIN_QUEUE_INDEX: usize = 60;
/// Offset of `admin_queue_num`.
#[doc(alias = "VIRTIO_PCI_COMMON_ADM_Q_NUM")]
pub const COMMON_CFG_ADMIN_QUEUE_NUM: usize = 62;

wire_view! {
    /// The common configuration structure (`struct virtio_pci_common_cfg`,
    /// §4.1.4.3), found through a [`VIRTIO_PCI_CAP_COMMON_CFG`](super::VIRTIO_PCI_CAP_COMMON_CFG) capability
    /// at a 4-byte aligned offset. Fields after `queue_device` exist only
    /// with the feature that introduces them (`queue_notif_config_data`:
    /// VIRTIO_F_NOTIF_CONFIG_DATA, `queue_reset`: VIRTIO_F_RING_RESET,
    /// `admin_queue_*`: VIRTIO_F_ADMIN_VQ).
    #[doc(alias = "virtio_pci_common_cfg")]
    pub struct PciCommonCfg, size COMMON_CFG_SIZE = 64 {
        /// Selects the 32-bit window of `device_feature` (0: bits 0 to 31,
        /// 1: bits 32 to 63, ...). RW.
        @0 device_feature_select / set_device_feature_select: Le32,
        /// Feature bits the device offers, in the selected window. RO.
        @4 device_feature / set_device_feature: Le32,
        /// Selects the 32-bit window of `driver_feature`. RW.
        @8 driver_feature_select / set_driver_feature_select: Le32,
        /// Feature bits the driver accepts, in the selected window. RW.
        @12 driver_feature / set_driver_feature: Le32,
        /// MSI-X vector for configuration change notifications. RW.
        @16 config_msix_vector / set_config_msix_vector: Le16,
        /// Maximum number of virtqueues, administration queues excluded. RO.
        @18 num_queues / set_num_queues: Le16,
        /// Device status; writing 0 resets the device. RW.
        @20 device_status / set_device_status: u8,
        /// Configuration atomicity value. RO.
        @21 config_generation / set_config_generation: u8,
        /// Selects the virtqueue the `queue_*` fields refer to. RW.
        @22 queue_select / set_queue_select: Le16,
        /// Queue size (maximum on reset; 0: queue unavailable). RW.
        @24 queue_size / set_queue_size: Le16,
        /// MSI-X vector for the selected queue. RW.
        @26 queue_msix_vector / set_queue_msix_vector: Le16,
        /// 1: enabled, 0: disabled (the driver MUST NOT write 0). RW.
        @28 queue_enable / set_queue_enable: Le16,
        /// Queue notification offset, in units of `notify_off_multiplier`. RO.
        @30 queue_notify_off / set_queue_notify_off: Le16,
        /// Descriptor Area physical address. RW.
        @32 queue_desc / set_queue_desc: Le64,
        /// Driver Area physical address. RW.
        @40 queue_driver / set_queue_driver: Le64,
        /// Device Area physical address. RW.
        @48 queue_device / set_queue_device: Le64,
        /// Value to notify with instead of the queue index
        /// (VIRTIO_F_NOTIF_CONFIG_DATA). RO.
        #[doc(alias = "queue_notify_data")]
        @56 queue_notif_config_data / set_queue_notif_config_data: Le16,
        /// Write 1 to reset the selected queue; reads 1 until done
        /// (VIRTIO_F_RING_RESET). RW.
        @58 queue_reset / set_queue_reset: Le16,
        /// Index of the first administration virtqueue (VIRTIO_F_ADMIN_VQ). RO.
        @60 admin_queue_index / set_admin_queue_index: Le16,
        /// Number of administration virtqueues (VIRTIO_F_ADMIN_VQ). RO.
        @62 admin_queue_num / set_admin_queue_num: Le16,
    }
}

const fn field(name: &'static str, offset: usize, width: usize, access: Access) -> Register {
    Register {
        name,
        offset,
        width,
        access,
    }
}

/// The fields of [`PciCommonCfg`] as data, with the driver's access
/// ("read-only for driver": the driver MUST NOT write them, §4.1.4.3.2).
/// 64-bit fields have width 8 and are accessed as two 32-bit halves.
pub const COMMON_CFG_FIELDS: [Register; 20] = {
    use Access::{ReadOnly as R, ReadWrite as RW};
    [
        field(
            "device_feature_select",
            COMMON_CFG_DEVICE_FEATURE_SELECT,
            4,
            RW,
        ),
        field("device_feature", COMMON_CFG_DEVICE_FEATURE, 4, R),
        field(
            "driver_feature_select",
            COMMON_CFG_DRIVER_FEATURE_SELECT,
            4,
            RW,
        ),
        field("driver_feature", COMMON_CFG_DRIVER_FEATURE, 4, RW),
        field("config_msix_vector", COMMON_CFG_CONFIG_MSIX_VECTOR, 2, RW),
        field("num_queues", COMMON_CFG_NUM_QUEUES, 2, R),
        field("device_status", COMMON_CFG_DEVICE_STATUS, 1, RW),
        field("config_generation", COMMON_CFG_CONFIG_GENERATION, 1, R),
        field("queue_select", COMMON_CFG_QUEUE_SELECT, 2, RW),
        field("queue_size", COMMON_CFG_QUEUE_SIZE, 2, RW),
        field("queue_msix_vector", COMMON_CFG_QUEUE_MSIX_VECTOR, 2, RW),
        field("queue_enable", COMMON_CFG_QUEUE_ENABLE, 2, RW),
        field("queue_notify_off", COMMON_CFG_QUEUE_NOTIFY_OFF, 2, R),
        field("queue_desc", COMMON_CFG_QUEUE_DESC, 8, RW),
        field("queue_driver", COMMON_CFG_QUEUE_DRIVER, 8, RW),
        field("queue_device", COMMON_CFG_QUEUE_DEVICE, 8, RW),
        field(
            "queue_notif_config_data",
            COMMON_CFG_QUEUE_NOTIF_CONFIG_DATA,
            2,
            R,
        ),
        field("queue_reset", COMMON_CFG_QUEUE_RESET, 2, RW),
        field("admin_queue_index", COMMON_CFG_ADMIN_QUEUE_INDEX, 2, R),
        field("admin_queue_num", COMMON_CFG_ADMIN_QUEUE_NUM, 2, R),
    ]
};

/// The common configuration field that holds byte `offset`, if any.
pub fn common_cfg_field_at(offset: usize) -> Option<&'static Register> {
    COMMON_CFG_FIELDS
        .iter()
        .find(|f| f.offset <= offset && offset < f.offset + f.width)
}

/// Whether a driver access of `width` bytes at `offset` into the common
/// configuration follows §4.1.3.1 and §4.1.4.3.2: exactly one field at its
/// natural width (a 64-bit field as either 32-bit half), and no write to a
/// field that is read-only for the driver.
pub fn is_valid_common_cfg_access(offset: usize, width: usize, write: bool) -> bool {
    let Some(f) = common_cfg_field_at(offset) else {
        return false;
    };
    let shape_ok = if f.width == 8 {
        width == 4 && (offset == f.offset || offset == f.offset + 4)
    } else {
        width == f.width && offset == f.offset
    };
    shape_ok
        && if write {
            f.access.writable()
        } else {
            f.access.readable()
        }
}

/// Required alignment of the common configuration structure's `offset`.
pub const COMMON_CFG_OFFSET_ALIGN: u32 = 4;
/// Required alignment of the device-specific configuration's `offset`.
pub const DEVICE_CFG_OFFSET_ALIGN: u32 = 4;

/// Whether the administration queue fields are consistent, as the device
/// MUST keep them with VIRTIO_F_ADMIN_VQ (§4.1.4.3.1): `admin_queue_index`
/// ≥ `num_queues` and `admin_queue_num` ≤ 0x10000 − `admin_queue_index`.
pub const fn admin_queues_valid(
    num_queues: u16,
    admin_queue_index: u16,
    admin_queue_num: u16,
) -> bool {
    admin_queue_index >= num_queues && admin_queue_num as u32 <= 0x10000 - admin_queue_index as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_cfg_layout() {
        let mut b = [0u8; 64];
        let mut c = PciCommonCfg::new_checked(&mut b[..]).unwrap();
        c.set_device_feature_select(0x0403_0201);
        c.set_device_feature(0x0807_0605);
        c.set_driver_feature_select(0x0c0b_0a09);
        c.set_driver_feature(0x100f_0e0d);
        c.set_config_msix_vector(0x1211);
        c.set_num_queues(0x1413);
        c.set_device_status(0x15);
        c.set_config_generation(0x16);
        c.set_queue_select(0x1817);
        c.set_queue_size(0x1a19);
        c.set_queue_msix_vector(0x1c1b);
        c.set_queue_enable(0x1e1d);
        c.set_queue_notify_off(0x201f);
        c.set_queue_desc(0x2827_2625_2423_2221);
        c.set_queue_driver(0x302f_2e2d_2c2b_2a29);
        c.set_queue_device(0x3837_3635_3433_3231);
        c.set_queue_notif_config_data(0x3a39);
        c.set_queue_reset(0x3c3b);
        c.set_admin_queue_index(0x3e3d);
        c.set_admin_queue_num(0x403f);
        let expected: [u8; 64] = core::array::from_fn(|i| i as u8 + 1);
        assert_eq!(b, expected);
        assert_eq!(COMMON_CFG_SIZE, 64);
        let offsets = [
            COMMON_CFG_DEVICE_FEATURE_SELECT,
            COMMON_CFG_DEVICE_FEATURE,
            COMMON_CFG_DRIVER_FEATURE_SELECT,
            COMMON_CFG_DRIVER_FEATURE,
            COMMON_CFG_CONFIG_MSIX_VECTOR,
            COMMON_CFG_NUM_QUEUES,
            COMMON_CFG_DEVICE_STATUS,
            COMMON_CFG_CONFIG_GENERATION,
            COMMON_CFG_QUEUE_SELECT,
            COMMON_CFG_QUEUE_SIZE,
            COMMON_CFG_QUEUE_MSIX_VECTOR,
            COMMON_CFG_QUEUE_ENABLE,
            COMMON_CFG_QUEUE_NOTIFY_OFF,
            COMMON_CFG_QUEUE_DESC,
            COMMON_CFG_QUEUE_DRIVER,
            COMMON_CFG_QUEUE_DEVICE,
            COMMON_CFG_QUEUE_NOTIF_CONFIG_DATA,
            COMMON_CFG_QUEUE_RESET,
            COMMON_CFG_ADMIN_QUEUE_INDEX,
            COMMON_CFG_ADMIN_QUEUE_NUM,
        ];
        assert_eq!(
            offsets,
            [0, 4, 8, 12, 16, 18, 20, 21, 22, 24, 26, 28, 30, 32, 40, 48, 56, 58, 60, 62]
        );
        assert_eq!(
            (
                COMMON_CFG_QUEUE_DESC_HI,
                COMMON_CFG_QUEUE_DRIVER_HI,
                COMMON_CFG_QUEUE_DEVICE_HI
            ),
            (36, 44, 52)
        );
        // The field table tiles the structure exactly.
        let mut end = 0;
        for (f, off) in COMMON_CFG_FIELDS.iter().zip(offsets) {
            assert_eq!((f.offset, f.offset), (off, end), "{}", f.name);
            end = f.offset + f.width;
        }
        assert_eq!(end, COMMON_CFG_SIZE);
    }

    #[test]
    fn common_cfg_access_rules() {
        assert!(is_valid_common_cfg_access(
            COMMON_CFG_DEVICE_FEATURE,
            4,
            false
        ));
        assert!(!is_valid_common_cfg_access(
            COMMON_CFG_DEVICE_FEATURE,
            4,
            true
        ));
        assert!(is_valid_common_cfg_access(
            COMMON_CFG_DEVICE_STATUS,
            1,
            true
        ));
        assert!(!is_valid_common_cfg_access(
            COMMON_CFG_DEVICE_STATUS,
            2,
            true
        ));
        assert!(!is_valid_common_cfg_access(
            COMMON_CFG_CONFIG_GENERATION,
            1,
            true
        ));
        assert!(is_valid_common_cfg_access(
            COMMON_CFG_QUEUE_DESC_HI,
            4,
            true
        ));
        assert!(!is_valid_common_cfg_access(COMMON_CFG_QUEUE_DESC, 8, true));
        assert!(!is_valid_common_cfg_access(
            COMMON_CFG_QUEUE_SIZE + 1,
            1,
            false
        ));
        assert!(!is_valid_common_cfg_access(
            COMMON_CFG_QUEUE_NOTIF_CONFIG_DATA,
            2,
            true
        ));
        assert!(!is_valid_common_cfg_access(64, 4, false));
        assert_eq!(common_cfg_field_at(45).unwrap().name, "queue_driver");
        assert!(admin_queues_valid(2, 2, 1) && admin_queues_valid(0, 0xffff, 1));
        assert!(!admin_queues_valid(3, 2, 1) && !admin_queues_valid(0, 0xffff, 2));
    }
}
