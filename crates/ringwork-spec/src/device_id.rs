//! Device IDs (VIRTIO 1.4 §5 "Device Types", the Device ID / Virtio Device
//! table).
//!
//! Every transport reports a device ID that says which device type sits
//! behind it (for PCI it is encoded in the PCI device ID, for MMIO it is the
//! `DeviceID` register). This module holds one `VIRTIO_ID_*` constant per row
//! of the spec's table and the [`DeviceType`] newtype, which keeps any value
//! (unknown ids are kept, not rejected) and names the known ones.
//!
//! The spec's table gives numbers and descriptions but no macro names; the
//! constants use the names of Linux's `virtio_ids.h` where it has one, so they
//! grep the same way. ID 0 is reserved (invalid); ids 14, 15 and 37 are not
//! listed by the spec. Most devices in the table are not specified by the
//! document ("unspecified ... because they are seen as immature or especially
//! niche").
//!
//! ```
//! use ringwork_spec::device_id::{DeviceType, VIRTIO_ID_BLOCK};
//!
//! let t = DeviceType::from(2);
//! assert_eq!(t.id(), VIRTIO_ID_BLOCK);
//! assert_eq!(t.name(), Some("block device"));
//! assert_eq!(DeviceType(14).name(), None); // kept, just not named
//! ```

macro_rules! device_ids {
    ($(
        $(#[$m:meta])*
        $name:ident = $id:literal, $desc:literal;
    )*) => {
        $(
            #[doc = concat!("Device ID ", stringify!($id), ": ", $desc, ".")]
            $(#[$m])*
            pub const $name: u32 = $id;
        )*

        /// Every row of the spec's device-id table, as `(id, description)`,
        /// in increasing id order (reserved id 0 included).
        pub const DEVICE_ID_TABLE: &[(u32, &str)] = &[$(($id, $desc)),*];

        impl DeviceType {
            /// The spec's description of this device type (its row in the
            /// Device ID table), or `None` for ids the table does not list.
            pub const fn name(self) -> Option<&'static str> {
                match self.0 {
                    $($id => Some($desc),)*
                    _ => None,
                }
            }
        }
    };
}

/// A device ID as read from a transport. Any `u32` is kept; [`name`](Self::name)
/// says whether the spec's table lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct DeviceType(pub u32);

device_ids! {
    /// Reserved: no device has this id (transports use 0 for "no device").
    VIRTIO_ID_INVALID = 0, "reserved (invalid)";
    /// VIRTIO 1.4 §5.1 Network Device.
    VIRTIO_ID_NET = 1, "network device";
    /// VIRTIO 1.4 §5.2 Block Device.
    #[doc(alias = "VIRTIO_ID_BLK")]
    VIRTIO_ID_BLOCK = 2, "block device";
    /// VIRTIO 1.4 §5.3 Console Device.
    VIRTIO_ID_CONSOLE = 3, "console";
    /// VIRTIO 1.4 §5.4 Entropy Device.
    #[doc(alias = "VIRTIO_ID_ENTROPY")]
    VIRTIO_ID_RNG = 4, "entropy source";
    /// VIRTIO 1.4 §5.5 Traditional Memory Balloon Device.
    VIRTIO_ID_BALLOON = 5, "memory ballooning (traditional)";
    /// Not specified by the standard.
    VIRTIO_ID_IOMEM = 6, "ioMemory";
    /// Not specified by the standard.
    VIRTIO_ID_RPMSG = 7, "rpmsg";
    /// VIRTIO 1.4 §5.6 SCSI Host Device.
    VIRTIO_ID_SCSI = 8, "SCSI host";
    /// Not specified by the standard.
    VIRTIO_ID_9P = 9, "9P transport";
    /// Not specified by the standard.
    VIRTIO_ID_MAC80211_WLAN = 10, "mac80211 wlan";
    /// Not specified by the standard.
    VIRTIO_ID_RPROC_SERIAL = 11, "rproc serial";
    /// Not specified by the standard.
    VIRTIO_ID_CAIF = 12, "virtio CAIF";
    /// Reserved for a future, non-traditional memory balloon interface.
    VIRTIO_ID_MEMORY_BALLOON = 13, "memory balloon";
    /// GPU Device.
    VIRTIO_ID_GPU = 16, "GPU device";
    /// RTC Device (Linux calls it `VIRTIO_ID_CLOCK`).
    #[doc(alias = "VIRTIO_ID_CLOCK")]
    VIRTIO_ID_RTC = 17, "RTC (Real Time Clock) device";
    /// Input Device.
    VIRTIO_ID_INPUT = 18, "Input device";
    /// Socket Device.
    #[doc(alias = "VIRTIO_ID_SOCKET")]
    VIRTIO_ID_VSOCK = 19, "Socket device";
    /// Crypto Device.
    VIRTIO_ID_CRYPTO = 20, "Crypto device";
    /// Not specified by the standard.
    VIRTIO_ID_SIGNAL_DIST = 21, "Signal Distribution Module";
    /// Not specified by the standard.
    VIRTIO_ID_PSTORE = 22, "pstore device";
    /// IOMMU Device.
    VIRTIO_ID_IOMMU = 23, "IOMMU device";
    /// Memory Device.
    VIRTIO_ID_MEM = 24, "Memory device";
    /// Sound Device.
    VIRTIO_ID_SOUND = 25, "Sound device";
    /// File System Device.
    VIRTIO_ID_FS = 26, "file system device";
    /// PMEM Device.
    VIRTIO_ID_PMEM = 27, "PMEM device";
    /// RPMB Device.
    VIRTIO_ID_RPMB = 28, "RPMB device";
    /// Not specified by the standard.
    VIRTIO_ID_MAC80211_HWSIM = 29, "mac80211 hwsim wireless simulation device";
    /// Not specified by the standard.
    VIRTIO_ID_VIDEO_ENCODER = 30, "Video encoder device";
    /// Not specified by the standard.
    VIRTIO_ID_VIDEO_DECODER = 31, "Video decoder device";
    /// SCMI Device.
    VIRTIO_ID_SCMI = 32, "SCMI device";
    /// Not specified by the standard.
    VIRTIO_ID_NITRO_SEC_MOD = 33, "NitroSecureModule";
    /// I2C Adapter Device.
    VIRTIO_ID_I2C_ADAPTER = 34, "I2C adapter";
    /// Not specified by the standard.
    VIRTIO_ID_WATCHDOG = 35, "Watchdog";
    /// CAN Device.
    VIRTIO_ID_CAN = 36, "CAN device";
    /// Not specified by the standard.
    VIRTIO_ID_PARAM_SERV = 38, "Parameter Server";
    /// Not specified by the standard.
    VIRTIO_ID_AUDIO_POLICY = 39, "Audio policy device";
    /// Not specified by the standard.
    #[doc(alias = "VIRTIO_ID_BLUETOOTH")]
    VIRTIO_ID_BT = 40, "Bluetooth device";
    /// GPIO Device.
    VIRTIO_ID_GPIO = 41, "GPIO device";
    /// Not specified by the standard.
    VIRTIO_ID_RDMA = 42, "RDMA device";
    /// Not specified by the standard.
    VIRTIO_ID_CAMERA = 43, "Camera device";
    /// Not specified by the standard.
    VIRTIO_ID_ISM = 44, "ISM device";
    /// SPI Controller Device.
    VIRTIO_ID_SPI = 45, "SPI controller";
    /// Not specified by the standard.
    VIRTIO_ID_TEE = 46, "TEE device";
    /// Not specified by the standard.
    VIRTIO_ID_CPU_BALLOON = 47, "CPU balloon device";
    /// Media Device.
    VIRTIO_ID_MEDIA = 48, "Media device";
    /// Not specified by the standard.
    VIRTIO_ID_USB = 49, "USB controller";
}

impl DeviceType {
    /// The raw device ID.
    #[inline]
    pub const fn id(self) -> u32 {
        self.0
    }

    /// Whether this is the reserved id 0, which names no device.
    #[inline]
    pub const fn is_invalid(self) -> bool {
        self.0 == VIRTIO_ID_INVALID
    }

    /// Whether the spec's table lists this id (reserved id 0 included).
    #[inline]
    pub const fn is_known(self) -> bool {
        self.name().is_some()
    }
}

impl From<u32> for DeviceType {
    #[inline]
    fn from(id: u32) -> Self {
        Self(id)
    }
}

impl From<DeviceType> for u32 {
    #[inline]
    fn from(t: DeviceType) -> u32 {
        t.0
    }
}

impl core::fmt::Display for DeviceType {
    /// The spec's description and the id, e.g. `block device (2)`, or
    /// `unknown device type (99)`.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{name} ({})", self.0),
            None => write!(f, "unknown device type ({})", self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use std::string::ToString;

    #[test]
    fn table_matches_spec() {
        // Ids listed in content.tex, "Device Types" chapter.
        let ids: std::vec::Vec<u32> = DEVICE_ID_TABLE.iter().map(|&(id, _)| id).collect();
        let mut expected: std::vec::Vec<u32> = (0..=13).collect();
        expected.extend(16..=36);
        expected.extend(38..=49);
        assert_eq!(ids, expected);
        for &(id, desc) in DEVICE_ID_TABLE {
            assert_eq!(DeviceType(id).name(), Some(desc));
        }
        for id in [14, 15, 37, 50, 0xffff_ffff] {
            assert_eq!(DeviceType(id).name(), None, "{id}");
        }
    }

    #[test]
    fn well_known_values() {
        assert_eq!(VIRTIO_ID_NET, 1);
        assert_eq!(VIRTIO_ID_BLOCK, 2);
        assert_eq!(VIRTIO_ID_CONSOLE, 3);
        assert_eq!(VIRTIO_ID_RNG, 4);
        assert_eq!(VIRTIO_ID_BALLOON, 5);
        assert_eq!(VIRTIO_ID_SCSI, 8);
        assert_eq!(VIRTIO_ID_GPU, 16);
        assert_eq!(VIRTIO_ID_VSOCK, 19);
        assert_eq!(VIRTIO_ID_FS, 26);
        assert_eq!(VIRTIO_ID_GPIO, 41);
        assert_eq!(VIRTIO_ID_USB, 49);
    }

    #[test]
    fn unknown_ids_are_kept_and_displayed() {
        let t = DeviceType::from(1234);
        assert_eq!(u32::from(t), 1234);
        assert!(!t.is_known());
        assert_eq!(t.to_string(), "unknown device type (1234)");
        assert_eq!(DeviceType(2).to_string(), "block device (2)");
        assert!(DeviceType(0).is_invalid() && DeviceType(0).is_known());
    }
}
