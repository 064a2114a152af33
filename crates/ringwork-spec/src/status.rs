//! The device status field (VIRTIO 1.4 §2.1, "Device Status Field").
//!
//! The driver records its progress through device initialization (§3.1,
//! "Device Initialization") by setting bits in this 8-bit field; the device
//! uses it to report `DEVICE_NEEDS_RESET`, and with `VIRTIO_F_SUSPEND` to
//! acknowledge a suspend (§3.4, "Device Suspend"). Writing 0 resets the
//! device, and the field reads 0 after reset.
//!
//! The spec names the bits without a prefix (`ACKNOWLEDGE`, `DRIVER_OK`, ...);
//! those names are the associated constants of [`DeviceStatus`]. The plain
//! `u8` constants below use the `VIRTIO_CONFIG_S_` prefix every C
//! implementation uses (Linux's `<linux/virtio_config.h>`), so they can be
//! imported without clashing.
//!
//! ```
//! use ringwork_spec::status::DeviceStatus;
//!
//! let s = DeviceStatus::ACKNOWLEDGE | DeviceStatus::DRIVER | DeviceStatus::FEATURES_OK;
//! assert_eq!(s.bits(), 0x0b);
//! assert!(s.contains(DeviceStatus::FEATURES_OK));
//! assert!(!s.contains(DeviceStatus::DRIVER_OK));
//! extern crate std;
//! assert_eq!(std::format!("{s}"), "ACKNOWLEDGE | DRIVER | FEATURES_OK");
//! // Unknown bits are kept and shown in hex.
//! assert_eq!(std::format!("{}", DeviceStatus::from_bits(0x21)), "ACKNOWLEDGE | 0x20");
//! ```

use core::fmt;
use core::ops::{BitAnd, BitOr, BitOrAssign};

/// ACKNOWLEDGE (1): the guest OS has found the device and recognized it as a
/// valid virtio device.
#[doc(alias = "ACKNOWLEDGE")]
pub const VIRTIO_CONFIG_S_ACKNOWLEDGE: u8 = 1;
/// DRIVER (2): the guest OS knows how to drive the device.
#[doc(alias = "DRIVER")]
pub const VIRTIO_CONFIG_S_DRIVER: u8 = 2;
/// DRIVER_OK (4): the driver is set up and ready to drive the device.
#[doc(alias = "DRIVER_OK")]
pub const VIRTIO_CONFIG_S_DRIVER_OK: u8 = 4;
/// FEATURES_OK (8): the driver has acknowledged all the features it
/// understands, and feature negotiation is complete.
#[doc(alias = "FEATURES_OK")]
pub const VIRTIO_CONFIG_S_FEATURES_OK: u8 = 8;
/// SUSPEND (16): with `VIRTIO_F_SUSPEND` negotiated, the device has been
/// suspended by the driver (§3.4).
#[doc(alias = "SUSPEND")]
pub const VIRTIO_CONFIG_S_SUSPEND: u8 = 16;
/// DEVICE_NEEDS_RESET (64): the device has experienced an error from which it
/// can't recover.
#[doc(alias = "DEVICE_NEEDS_RESET")]
pub const VIRTIO_CONFIG_S_NEEDS_RESET: u8 = 64;
/// FAILED (128): something went wrong in the guest and it has given up on
/// the device.
#[doc(alias = "FAILED")]
pub const VIRTIO_CONFIG_S_FAILED: u8 = 128;

/// Every bit VIRTIO 1.4 defines in the device status field (bit 5, value 32,
/// is undefined).
pub const KNOWN_STATUS_BITS: u8 = VIRTIO_CONFIG_S_ACKNOWLEDGE
    | VIRTIO_CONFIG_S_DRIVER
    | VIRTIO_CONFIG_S_DRIVER_OK
    | VIRTIO_CONFIG_S_FEATURES_OK
    | VIRTIO_CONFIG_S_SUSPEND
    | VIRTIO_CONFIG_S_NEEDS_RESET
    | VIRTIO_CONFIG_S_FAILED;

/// The bits a driver sets, in order, during a successful initialization
/// (§3.1.1, "Driver Requirements: Device Initialization"): ACKNOWLEDGE,
/// DRIVER, FEATURES_OK (then re-read to check it stuck), DRIVER_OK.
///
/// Legacy drivers skip FEATURES_OK (§3.1.2).
pub const INIT_SEQUENCE: [DeviceStatus; 4] = [
    DeviceStatus::ACKNOWLEDGE,
    DeviceStatus::DRIVER,
    DeviceStatus::FEATURES_OK,
    DeviceStatus::DRIVER_OK,
];

/// Names of the defined bits, lowest bit first, for formatting.
const NAMES: [(u8, &str); 7] = [
    (VIRTIO_CONFIG_S_ACKNOWLEDGE, "ACKNOWLEDGE"),
    (VIRTIO_CONFIG_S_DRIVER, "DRIVER"),
    (VIRTIO_CONFIG_S_DRIVER_OK, "DRIVER_OK"),
    (VIRTIO_CONFIG_S_FEATURES_OK, "FEATURES_OK"),
    (VIRTIO_CONFIG_S_SUSPEND, "SUSPEND"),
    (VIRTIO_CONFIG_S_NEEDS_RESET, "DEVICE_NEEDS_RESET"),
    (VIRTIO_CONFIG_S_FAILED, "FAILED"),
];

/// The name the spec gives a single status bit, if it defines one.
///
/// ```
/// use ringwork_spec::status::{status_bit_name, VIRTIO_CONFIG_S_NEEDS_RESET};
/// assert_eq!(status_bit_name(VIRTIO_CONFIG_S_NEEDS_RESET), Some("DEVICE_NEEDS_RESET"));
/// assert_eq!(status_bit_name(32), None);
/// ```
pub const fn status_bit_name(bit: u8) -> Option<&'static str> {
    let mut i = 0;
    while i < NAMES.len() {
        if NAMES[i].0 == bit {
            return Some(NAMES[i].1);
        }
        i += 1;
    }
    None
}

/// The value of the device status field.
///
/// A plain wrapper over the byte: every value is representable, including
/// bits the spec does not define (kept as they are, shown in hex by
/// `Display`). The associated constants carry the spec's bit names.
#[doc(alias = "device status")]
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceStatus(u8);

impl DeviceStatus {
    /// 0: the value after reset; writing it resets the device.
    pub const RESET: Self = Self(0);
    /// ACKNOWLEDGE (1).
    pub const ACKNOWLEDGE: Self = Self(VIRTIO_CONFIG_S_ACKNOWLEDGE);
    /// DRIVER (2).
    pub const DRIVER: Self = Self(VIRTIO_CONFIG_S_DRIVER);
    /// DRIVER_OK (4).
    pub const DRIVER_OK: Self = Self(VIRTIO_CONFIG_S_DRIVER_OK);
    /// FEATURES_OK (8).
    pub const FEATURES_OK: Self = Self(VIRTIO_CONFIG_S_FEATURES_OK);
    /// SUSPEND (16).
    pub const SUSPEND: Self = Self(VIRTIO_CONFIG_S_SUSPEND);
    /// DEVICE_NEEDS_RESET (64).
    pub const DEVICE_NEEDS_RESET: Self = Self(VIRTIO_CONFIG_S_NEEDS_RESET);
    /// FAILED (128).
    pub const FAILED: Self = Self(VIRTIO_CONFIG_S_FAILED);

    /// Wraps a raw status byte (unknown bits are kept).
    #[inline]
    pub const fn from_bits(bits: u8) -> Self {
        Self(bits)
    }

    /// The raw status byte.
    #[inline]
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// Whether every bit of `other` is set.
    #[inline]
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether any bit of `other` is set.
    #[inline]
    pub const fn intersects(self, other: Self) -> bool {
        self.0 & other.0 != 0
    }

    /// `self` with the bits of `other` added.
    #[inline]
    pub const fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// `self` with the bits of `other` cleared.
    #[inline]
    pub const fn difference(self, other: Self) -> Self {
        Self(self.0 & !other.0)
    }

    /// Sets the bits of `other`.
    #[inline]
    pub fn insert(&mut self, other: Self) {
        self.0 |= other.0;
    }

    /// Clears the bits of `other` (drivers never do this, §2.1.1; devices do
    /// for DRIVER_OK/SUSPEND around a suspend, §3.4).
    #[inline]
    pub fn remove(&mut self, other: Self) {
        self.0 &= !other.0;
    }

    /// Whether the field is 0 (reset, or reset completed).
    #[inline]
    pub const fn is_reset(self) -> bool {
        self.0 == 0
    }

    /// The bits VIRTIO 1.4 does not define.
    #[inline]
    pub const fn unknown_bits(self) -> u8 {
        self.0 & !KNOWN_STATUS_BITS
    }

    /// Whether the device is live: DRIVER_OK set and neither FAILED nor
    /// DEVICE_NEEDS_RESET nor SUSPEND (§2.1, §3.4).
    #[inline]
    pub const fn is_live(self) -> bool {
        self.contains(Self::DRIVER_OK)
            && !self.intersects(Self(
                VIRTIO_CONFIG_S_FAILED | VIRTIO_CONFIG_S_NEEDS_RESET | VIRTIO_CONFIG_S_SUSPEND,
            ))
    }
}

impl From<u8> for DeviceStatus {
    #[inline]
    fn from(bits: u8) -> Self {
        Self(bits)
    }
}

impl From<DeviceStatus> for u8 {
    #[inline]
    fn from(s: DeviceStatus) -> u8 {
        s.0
    }
}

impl BitOr for DeviceStatus {
    type Output = Self;
    #[inline]
    fn bitor(self, rhs: Self) -> Self {
        self.union(rhs)
    }
}

impl BitOrAssign for DeviceStatus {
    #[inline]
    fn bitor_assign(&mut self, rhs: Self) {
        self.insert(rhs);
    }
}

impl BitAnd for DeviceStatus {
    type Output = Self;
    #[inline]
    fn bitand(self, rhs: Self) -> Self {
        Self(self.0 & rhs.0)
    }
}

impl fmt::Display for DeviceStatus {
    /// Lists the set bits by name, lowest first, joined by ` | `; undefined
    /// bits follow as one hex value; 0 is shown as `0`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == 0 {
            return f.write_str("0");
        }
        let mut first = true;
        for (bit, name) in NAMES {
            if self.0 & bit != 0 {
                if !first {
                    f.write_str(" | ")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        let unknown = self.unknown_bits();
        if unknown != 0 {
            if !first {
                f.write_str(" | ")?;
            }
            write!(f, "{unknown:#04x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for DeviceStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DeviceStatus({:#04x}: {})", self.0, self)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::format;

    #[test]
    fn bit_values_match_the_spec_list() {
        // VIRTIO 1.4 §2.1: ACKNOWLEDGE (1), DRIVER (2), DRIVER_OK (4),
        // FEATURES_OK (8), SUSPEND (16), DEVICE_NEEDS_RESET (64), FAILED (128).
        assert_eq!(
            [
                VIRTIO_CONFIG_S_ACKNOWLEDGE,
                VIRTIO_CONFIG_S_DRIVER,
                VIRTIO_CONFIG_S_DRIVER_OK,
                VIRTIO_CONFIG_S_FEATURES_OK,
                VIRTIO_CONFIG_S_SUSPEND,
                VIRTIO_CONFIG_S_NEEDS_RESET,
                VIRTIO_CONFIG_S_FAILED,
            ],
            [1, 2, 4, 8, 16, 64, 128]
        );
        assert_eq!(KNOWN_STATUS_BITS, 0xdf);
        assert_eq!(DeviceStatus::DEVICE_NEEDS_RESET.bits(), 0x40);
        assert_eq!(core::mem::size_of::<DeviceStatus>(), 1);
    }

    #[test]
    fn contains_insert_remove() {
        let mut s = DeviceStatus::RESET;
        assert!(s.is_reset());
        for step in INIT_SEQUENCE {
            s |= step;
        }
        assert_eq!(s.bits(), 0x0f);
        assert!(s.contains(DeviceStatus::ACKNOWLEDGE | DeviceStatus::DRIVER_OK));
        assert!(s.is_live());
        s.insert(DeviceStatus::SUSPEND);
        assert!(!s.is_live());
        s.remove(DeviceStatus::DRIVER_OK);
        assert_eq!(s.bits(), 0x1b);
        assert!(!s.contains(DeviceStatus::DRIVER_OK | DeviceStatus::SUSPEND));
        assert!(s.intersects(DeviceStatus::DRIVER_OK | DeviceStatus::SUSPEND));
        assert_eq!((s & DeviceStatus::SUSPEND).bits(), VIRTIO_CONFIG_S_SUSPEND);
        assert_eq!(s.difference(DeviceStatus::SUSPEND).bits(), 0x0b);
        assert_eq!(u8::from(DeviceStatus::from(0xffu8)), 0xff);
    }

    #[test]
    fn unknown_bits_are_kept() {
        let s = DeviceStatus::from_bits(0x20 | 0x04);
        assert_eq!(s.bits(), 0x24);
        assert_eq!(s.unknown_bits(), 0x20);
        assert!(s.contains(DeviceStatus::DRIVER_OK));
    }

    #[test]
    fn display_and_debug() {
        assert_eq!(format!("{}", DeviceStatus::RESET), "0");
        assert_eq!(
            format!("{}", DeviceStatus::from_bits(0xff)),
            "ACKNOWLEDGE | DRIVER | DRIVER_OK | FEATURES_OK | SUSPEND | DEVICE_NEEDS_RESET | FAILED | 0x20"
        );
        assert_eq!(format!("{}", DeviceStatus::from_bits(0x20)), "0x20");
        assert_eq!(
            format!("{:?}", DeviceStatus::FAILED),
            "DeviceStatus(0x80: FAILED)"
        );
        assert_eq!(status_bit_name(16), Some("SUSPEND"));
        assert_eq!(status_bit_name(3), None);
    }
}
