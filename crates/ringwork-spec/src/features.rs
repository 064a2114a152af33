//! Feature bits (VIRTIO 1.4 §2.2, "Feature Bits") and the device-independent
//! feature bits of chapter 6, "Reserved Feature Bits".
//!
//! Feature bits are numbered, not masked: the spec allocates bits 0 to 127
//! and reserves 128 and above for future extensions, so a single `u64` cannot
//! hold them. The constants here are bit *numbers* (`u32`), and
//! [`FeatureSet`] holds a set of them. Transports expose features as 32-bit
//! windows chosen by a select register ([`FeatureSet::word`] /
//! [`FeatureSet::set_word`]).
//!
//! Allocation (§2.2):
//! - 0 to 23, 41, 42 and 50 to 127: device-type-specific;
//! - 24 to 40, and 43: reserved for extensions to the queue and feature
//!   negotiation mechanisms (the `VIRTIO_F_*` bits below);
//! - 44 to 49, and 128 and above: reserved for future extensions.
//!
//! (Chapter 6 nonetheless defines `VIRTIO_F_ADMIN_VQ` as bit 41; see
//! [`is_device_independent`].)
//!
//! Dependencies between features ("X requires Y") are data: [`FeatureRule`]
//! lists, checked by [`check_dependencies`]. Device-type modules publish
//! their own rule lists; [`TRANSPORT_RULES`] holds the device-independent
//! ones.
//!
//! ```
//! use ringwork_spec::features::*;
//!
//! let offered = FeatureSet::from_bits(&[VIRTIO_F_VERSION_1, VIRTIO_F_RING_PACKED, 0, 5]);
//! let wanted = FeatureSet::from_bits(&[VIRTIO_F_VERSION_1, VIRTIO_F_RING_PACKED, 0, 100]);
//! let accepted = negotiate(offered, wanted, TRANSPORT_RULES);
//! assert_eq!(accepted.word(0), 0x0000_0001); // bits 0..31, via *_feature_select = 0
//! assert_eq!(accepted.word(1), 0x0000_0005); // bits 32..63: VERSION_1 | RING_PACKED
//! assert!(accepted.is_subset(offered));
//! ```

use core::fmt;
use core::ops::{BitAnd, BitOr, Sub};

mod rules;
pub use rules::*;

/// Legacy (bit 24): the device issues a used buffer notification when it runs
/// out of available descriptors, even if notifications are suppressed
/// (§6.3, "Legacy Interface: Reserved Feature Bits").
pub const VIRTIO_F_NOTIFY_ON_EMPTY: u32 = 24;
/// Legacy (bit 27): the device accepts arbitrary descriptor layouts
/// (§6.3). Transitional devices MUST offer it and transitional drivers MUST
/// accept it if offered.
pub const VIRTIO_F_ANY_LAYOUT: u32 = 27;
/// Bit 28: the driver can use descriptors with `VIRTQ_DESC_F_INDIRECT`.
#[doc(alias = "VIRTIO_RING_F_INDIRECT_DESC")]
pub const VIRTIO_F_INDIRECT_DESC: u32 = 28;
/// Bit 29: enables the `used_event` and `avail_event` fields (split rings)
/// and descriptor event suppression (packed rings).
#[doc(alias = "VIRTIO_RING_F_EVENT_IDX")]
pub const VIRTIO_F_EVENT_IDX: u32 = 29;
/// Legacy "UNUSED (30)": used by QEMU to detect early virtio versions that
/// did not negotiate features correctly; SHOULD NOT be negotiated (§6.3).
#[doc(alias = "VIRTIO_F_BAD_FEATURE")]
#[doc(alias = "UNUSED")]
pub const VIRTIO_F_UNUSED: u32 = 30;
/// Bit 32: compliance with this specification (absent: legacy device or
/// driver).
pub const VIRTIO_F_VERSION_1: u32 = 32;
/// Bit 33: the device's memory access can be limited and/or translated by
/// the platform (e.g. an IOMMU).
#[doc(alias = "VIRTIO_F_IOMMU_PLATFORM")]
pub const VIRTIO_F_ACCESS_PLATFORM: u32 = 33;
/// Bit 34: the packed virtqueue layout (§2.8).
pub const VIRTIO_F_RING_PACKED: u32 = 34;
/// Bit 35: the device uses all buffers in the order they were made
/// available.
pub const VIRTIO_F_IN_ORDER: u32 = 35;
/// Bit 36: memory accesses are ordered as the platform describes for
/// hardware devices (drivers must use device-grade barriers).
pub const VIRTIO_F_ORDER_PLATFORM: u32 = 36;
/// Bit 37: the device supports PCI Single Root I/O Virtualization (PCI only).
pub const VIRTIO_F_SR_IOV: u32 = 37;
/// Bit 38: driver notifications carry extra data (§2.9, "Driver
/// Notifications").
pub const VIRTIO_F_NOTIFICATION_DATA: u32 = 38;
/// Bit 39: the driver uses device-provided data (PCI:
/// `queue_notif_config_data`) instead of the virtqueue index in available
/// buffer notifications.
pub const VIRTIO_F_NOTIF_CONFIG_DATA: u32 = 39;
/// Bit 40: the driver can reset a queue individually (§2.6.1, "Virtqueue
/// Reset").
pub const VIRTIO_F_RING_RESET: u32 = 40;
/// Bit 41: the device exposes administration virtqueues (currently PCI
/// only).
pub const VIRTIO_F_ADMIN_VQ: u32 = 41;
/// Bit 43: the driver can suspend the device with the SUSPEND status bit
/// (§3.4, "Device Suspend").
pub const VIRTIO_F_SUSPEND: u32 = 43;

/// Every device-independent feature bit VIRTIO 1.4 defines, with its name,
/// in bit order (legacy bits included).
pub const TRANSPORT_FEATURES: [(u32, &str); 16] = [
    (VIRTIO_F_NOTIFY_ON_EMPTY, "VIRTIO_F_NOTIFY_ON_EMPTY"),
    (VIRTIO_F_ANY_LAYOUT, "VIRTIO_F_ANY_LAYOUT"),
    (VIRTIO_F_INDIRECT_DESC, "VIRTIO_F_INDIRECT_DESC"),
    (VIRTIO_F_EVENT_IDX, "VIRTIO_F_EVENT_IDX"),
    (VIRTIO_F_UNUSED, "UNUSED"),
    (VIRTIO_F_VERSION_1, "VIRTIO_F_VERSION_1"),
    (VIRTIO_F_ACCESS_PLATFORM, "VIRTIO_F_ACCESS_PLATFORM"),
    (VIRTIO_F_RING_PACKED, "VIRTIO_F_RING_PACKED"),
    (VIRTIO_F_IN_ORDER, "VIRTIO_F_IN_ORDER"),
    (VIRTIO_F_ORDER_PLATFORM, "VIRTIO_F_ORDER_PLATFORM"),
    (VIRTIO_F_SR_IOV, "VIRTIO_F_SR_IOV"),
    (VIRTIO_F_NOTIFICATION_DATA, "VIRTIO_F_NOTIFICATION_DATA"),
    (VIRTIO_F_NOTIF_CONFIG_DATA, "VIRTIO_F_NOTIF_CONFIG_DATA"),
    (VIRTIO_F_RING_RESET, "VIRTIO_F_RING_RESET"),
    (VIRTIO_F_ADMIN_VQ, "VIRTIO_F_ADMIN_VQ"),
    (VIRTIO_F_SUSPEND, "VIRTIO_F_SUSPEND"),
];

/// The spec name of a device-independent feature bit, if it has one.
///
/// ```
/// use ringwork_spec::features::{transport_feature_name, VIRTIO_F_IN_ORDER};
/// assert_eq!(transport_feature_name(VIRTIO_F_IN_ORDER), Some("VIRTIO_F_IN_ORDER"));
/// assert_eq!(transport_feature_name(0), None);
/// ```
pub const fn transport_feature_name(bit: u32) -> Option<&'static str> {
    let mut i = 0;
    while i < TRANSPORT_FEATURES.len() {
        if TRANSPORT_FEATURES[i].0 == bit {
            return Some(TRANSPORT_FEATURES[i].1);
        }
        i += 1;
    }
    None
}

/// Whether `bit` is a device-independent bit: the range §2.2 reserves for
/// queue and negotiation extensions (24 to 40, and 43), plus bit 41, which
/// chapter 6 defines as `VIRTIO_F_ADMIN_VQ` although §2.2 lists 41 among the
/// device-type bits (legacy net used it for `VIRTIO_NET_F_GUEST_RSC4`).
pub const fn is_device_independent(bit: u32) -> bool {
    matches!(bit, 24..=41 | 43)
}

/// Whether §2.2 reserves `bit` for future extensions (44 to 49, 128 and up):
/// nobody may offer or accept it.
pub const fn is_reserved_for_future(bit: u32) -> bool {
    matches!(bit, 44..=49) || bit >= 128
}

/// A driver MUST accept these if offered (§6.1, "Driver Requirements:
/// Reserved Feature Bits").
pub const MUST_ACCEPT_IF_OFFERED: &[u32] = &[VIRTIO_F_VERSION_1];
/// A driver SHOULD accept these if offered (§6.1).
pub const SHOULD_ACCEPT_IF_OFFERED: &[u32] = &[
    VIRTIO_F_ACCESS_PLATFORM,
    VIRTIO_F_RING_PACKED,
    VIRTIO_F_ORDER_PLATFORM,
    VIRTIO_F_NOTIF_CONFIG_DATA,
];
/// Through the legacy interface, transitional devices MUST offer these and
/// transitional drivers MUST accept them if offered (§6.3).
pub const LEGACY_MUST_ACCEPT_IF_OFFERED: &[u32] = &[VIRTIO_F_ANY_LAYOUT];
/// SHOULD NOT be negotiated (§6.3: "UNUSED (30)").
pub const SHOULD_NOT_NEGOTIATE: &[u32] = &[VIRTIO_F_UNUSED];
/// Features only the PCI transport supports: `VIRTIO_F_SR_IOV` ("Currently
/// only PCI devices support this feature"; §6.1: a driver MUST NOT negotiate
/// it for a non-PCI device) and `VIRTIO_F_ADMIN_VQ` ("only supported for
/// devices using Virtio Over PCI Bus", chapter 6).
pub const PCI_ONLY_FEATURES: &[u32] = &[VIRTIO_F_SR_IOV, VIRTIO_F_ADMIN_VQ];
/// Features Virtio over channel I/O does not support (§4.3, "Features
/// reserved for future use"). Shared memory regions are not supported
/// either, which is device-type specific (e.g. `VIRTIO_PMEM_F_SHMEM_REGION`).
/// The MMIO list is [`crate::mmio::MMIO_RESERVED_FEATURES`].
pub const CCW_RESERVED_FEATURES: &[u32] = &[VIRTIO_F_ADMIN_VQ, VIRTIO_F_RING_RESET];

/// Number of feature bits a [`FeatureSet`] holds: bits 0 to 127, every bit
/// VIRTIO 1.4 allocates (128 and above are reserved for future extensions).
pub const FEATURE_BITS: u32 = 128;
/// Number of 32-bit words in a [`FeatureSet`] (feature select values 0 to 3).
pub const FEATURE_WORDS: usize = (FEATURE_BITS / 32) as usize;

/// A set of feature bits 0 to 127.
///
/// Bits at or above [`FEATURE_BITS`] cannot be represented: `contains`
/// reports them absent, `insert` ignores them, and `word`/`set_word` treat
/// select values of 4 and above as all-zero windows (as a device presents
/// 0 for feature bits it does not offer). That is the behaviour the spec
/// asks for bits nobody defines: don't offer, don't accept.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct FeatureSet {
    words: [u32; FEATURE_WORDS],
}

impl FeatureSet {
    /// The empty set.
    pub const EMPTY: Self = Self {
        words: [0; FEATURE_WORDS],
    };

    /// The empty set.
    #[inline]
    pub const fn new() -> Self {
        Self::EMPTY
    }

    /// Whether `bit` fits in a `FeatureSet` (is below [`FEATURE_BITS`]).
    #[inline]
    pub const fn is_representable(bit: u32) -> bool {
        bit < FEATURE_BITS
    }

    /// A set of the given bit numbers (unrepresentable ones are dropped).
    pub const fn from_bits(bits: &[u32]) -> Self {
        let mut s = Self::EMPTY;
        let mut i = 0;
        while i < bits.len() {
            s = s.with(bits[i]);
            i += 1;
        }
        s
    }

    /// A set from its 32-bit words, word `i` holding bits `32*i ..= 32*i+31`.
    #[inline]
    pub const fn from_words(words: [u32; FEATURE_WORDS]) -> Self {
        Self { words }
    }

    /// The 32-bit words, word `i` holding bits `32*i ..= 32*i+31`.
    #[inline]
    pub const fn words(&self) -> [u32; FEATURE_WORDS] {
        self.words
    }

    /// A set of bits 0 to 63 from a 64-bit mask (bit `n` of `mask` is
    /// feature `n`).
    #[inline]
    pub const fn from_u64(mask: u64) -> Self {
        Self {
            words: [mask as u32, (mask >> 32) as u32, 0, 0],
        }
    }

    /// Bits 0 to 63 as a mask; bits 64 and above are dropped.
    #[inline]
    pub const fn as_u64_lossy(&self) -> u64 {
        self.words[0] as u64 | (self.words[1] as u64) << 32
    }

    /// Whether the set holds a bit at or above 64 (so [`Self::as_u64_lossy`]
    /// would lose it).
    #[inline]
    pub const fn has_bits_above_63(&self) -> bool {
        self.words[2] != 0 || self.words[3] != 0
    }

    /// Whether `bit` is in the set (`false` for unrepresentable bits).
    #[inline]
    pub const fn contains(&self, bit: u32) -> bool {
        bit < FEATURE_BITS && self.words[(bit / 32) as usize] & (1 << (bit % 32)) != 0
    }

    /// The set with `bit` added (unchanged if `bit` is unrepresentable).
    #[inline]
    #[must_use]
    pub const fn with(mut self, bit: u32) -> Self {
        if bit < FEATURE_BITS {
            self.words[(bit / 32) as usize] |= 1 << (bit % 32);
        }
        self
    }

    /// The set with `bit` removed.
    #[inline]
    #[must_use]
    pub const fn without(mut self, bit: u32) -> Self {
        if bit < FEATURE_BITS {
            self.words[(bit / 32) as usize] &= !(1 << (bit % 32));
        }
        self
    }

    /// Adds `bit`; returns `false` (and does nothing) if it is unrepresentable.
    #[inline]
    pub fn insert(&mut self, bit: u32) -> bool {
        *self = self.with(bit);
        bit < FEATURE_BITS
    }

    /// Removes `bit`; returns whether it was present.
    #[inline]
    pub fn remove(&mut self, bit: u32) -> bool {
        let was = self.contains(bit);
        *self = self.without(bit);
        was
    }

    /// Removes every bit of `bits`.
    pub fn remove_all(&mut self, bits: &[u32]) {
        for &b in bits {
            self.remove(b);
        }
    }

    /// The 32-bit window a transport shows for feature select value
    /// `select`: bits `select*32 ..= select*32+31`. 0 for select values
    /// beyond the set (§4.1.4.3: the device presents 0 there).
    #[inline]
    pub const fn word(&self, select: u32) -> u32 {
        if (select as usize) < FEATURE_WORDS {
            self.words[select as usize]
        } else {
            0
        }
    }

    /// Stores the 32-bit window for feature select value `select`; ignored
    /// (returns `false`) for select values beyond the set.
    #[inline]
    pub fn set_word(&mut self, select: u32, value: u32) -> bool {
        match self.words.get_mut(select as usize) {
            Some(w) => {
                *w = value;
                true
            }
            None => false,
        }
    }

    /// Bits in both sets.
    #[inline]
    pub const fn intersection(self, other: Self) -> Self {
        let mut i = 0;
        let mut words = self.words;
        while i < FEATURE_WORDS {
            words[i] &= other.words[i];
            i += 1;
        }
        Self { words }
    }

    /// Bits in either set.
    #[inline]
    pub const fn union(self, other: Self) -> Self {
        let mut i = 0;
        let mut words = self.words;
        while i < FEATURE_WORDS {
            words[i] |= other.words[i];
            i += 1;
        }
        Self { words }
    }

    /// Bits in `self` but not in `other`.
    #[inline]
    pub const fn difference(self, other: Self) -> Self {
        let mut i = 0;
        let mut words = self.words;
        while i < FEATURE_WORDS {
            words[i] &= !other.words[i];
            i += 1;
        }
        Self { words }
    }

    /// Whether every bit of `self` is in `other` (e.g. accepted ⊆ offered).
    #[inline]
    pub const fn is_subset(&self, other: Self) -> bool {
        let mut i = 0;
        while i < FEATURE_WORDS {
            if self.words[i] & !other.words[i] != 0 {
                return false;
            }
            i += 1;
        }
        true
    }

    /// Whether the set is empty.
    #[inline]
    pub const fn is_empty(&self) -> bool {
        let mut i = 0;
        while i < FEATURE_WORDS {
            if self.words[i] != 0 {
                return false;
            }
            i += 1;
        }
        true
    }

    /// Number of bits in the set.
    #[inline]
    pub const fn len(&self) -> usize {
        let mut i = 0;
        let mut n = 0;
        while i < FEATURE_WORDS {
            n += self.words[i].count_ones() as usize;
            i += 1;
        }
        n
    }

    /// The bit numbers in the set, ascending.
    #[inline]
    pub fn iter(&self) -> FeatureIter {
        FeatureIter {
            set: *self,
            next: 0,
        }
    }
}

impl BitAnd for FeatureSet {
    type Output = Self;
    #[inline]
    fn bitand(self, rhs: Self) -> Self {
        self.intersection(rhs)
    }
}

impl BitOr for FeatureSet {
    type Output = Self;
    #[inline]
    fn bitor(self, rhs: Self) -> Self {
        self.union(rhs)
    }
}

impl Sub for FeatureSet {
    type Output = Self;
    #[inline]
    fn sub(self, rhs: Self) -> Self {
        self.difference(rhs)
    }
}

impl From<u64> for FeatureSet {
    #[inline]
    fn from(mask: u64) -> Self {
        Self::from_u64(mask)
    }
}

impl FromIterator<u32> for FeatureSet {
    fn from_iter<I: IntoIterator<Item = u32>>(iter: I) -> Self {
        let mut s = Self::EMPTY;
        for b in iter {
            s.insert(b);
        }
        s
    }
}

impl Extend<u32> for FeatureSet {
    fn extend<I: IntoIterator<Item = u32>>(&mut self, iter: I) {
        for b in iter {
            self.insert(b);
        }
    }
}

impl IntoIterator for FeatureSet {
    type Item = u32;
    type IntoIter = FeatureIter;
    #[inline]
    fn into_iter(self) -> FeatureIter {
        self.iter()
    }
}

impl IntoIterator for &FeatureSet {
    type Item = u32;
    type IntoIter = FeatureIter;
    #[inline]
    fn into_iter(self) -> FeatureIter {
        self.iter()
    }
}

/// Iterator over the bit numbers of a [`FeatureSet`], ascending.
#[derive(Debug, Clone)]
pub struct FeatureIter {
    set: FeatureSet,
    next: u32,
}

impl Iterator for FeatureIter {
    type Item = u32;

    fn next(&mut self) -> Option<u32> {
        while self.next < FEATURE_BITS {
            let w = (self.next / 32) as usize;
            let rest = self.set.words[w] >> (self.next % 32);
            if rest == 0 {
                self.next = (w as u32 + 1) * 32;
                continue;
            }
            let bit = self.next + rest.trailing_zeros();
            self.next = bit + 1;
            return Some(bit);
        }
        None
    }
}

/// One bit in `Debug` output: its number, and its name if it is a
/// device-independent bit.
struct BitName(u32);

impl fmt::Debug for BitName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match transport_feature_name(self.0) {
            Some(name) => write!(f, "{}({})", name, self.0),
            None => write!(f, "{}", self.0),
        }
    }
}

impl fmt::Debug for FeatureSet {
    /// `{0, 5, VIRTIO_F_VERSION_1(32)}`: device-type bits by number,
    /// device-independent bits by name and number.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter().map(BitName)).finish()
    }
}

/// Dependency rules between the device-independent feature bits.
///
/// Empty, on purpose: the VIRTIO 1.4 text of chapter 6 ("Reserved Feature
/// Bits", with its driver and device requirements §6.1, §6.2 and the legacy
/// note §6.3) and of the transport chapters states no "X requires Y" or
/// exclusion between these bits. What it does state is encoded as data
/// elsewhere: accept-if-offered rules ([`MUST_ACCEPT_IF_OFFERED`],
/// [`SHOULD_ACCEPT_IF_OFFERED`], [`LEGACY_MUST_ACCEPT_IF_OFFERED`],
/// [`SHOULD_NOT_NEGOTIATE`]) and per-transport support
/// ([`PCI_ONLY_FEATURES`], [`CCW_RESERVED_FEATURES`],
/// [`crate::mmio::MMIO_RESERVED_FEATURES`]). Chain this list with a device
/// type's rules when checking a full set.
pub const TRANSPORT_RULES: &[FeatureRule] = &[];

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::{format, vec::Vec};

    #[test]
    fn bit_numbers_match_chapter_6() {
        let numbers: Vec<u32> = TRANSPORT_FEATURES.iter().map(|e| e.0).collect();
        assert_eq!(
            numbers,
            [24, 27, 28, 29, 30, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 43]
        );
        assert!(TRANSPORT_FEATURES.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(TRANSPORT_FEATURES
            .iter()
            .all(|&(b, _)| is_device_independent(b) && !is_reserved_for_future(b)));
        assert_eq!(
            transport_feature_name(VIRTIO_F_ADMIN_VQ),
            Some("VIRTIO_F_ADMIN_VQ")
        );
        assert_eq!(transport_feature_name(VIRTIO_F_UNUSED), Some("UNUSED"));
        assert_eq!(transport_feature_name(42), None);
        assert_eq!(transport_feature_name(u32::MAX), None);
        assert!(!is_device_independent(23) && !is_device_independent(42));
        assert!(is_reserved_for_future(44) && is_reserved_for_future(49));
        assert!(is_reserved_for_future(128) && !is_reserved_for_future(50));
    }

    #[test]
    fn words_follow_feature_select() {
        let s = FeatureSet::from_bits(&[0, 31, 32, 63, 64, 127, 128, 1000]);
        assert_eq!(s.words(), [0x8000_0001, 0x8000_0001, 1, 0x8000_0000]);
        assert_eq!(
            (s.word(0), s.word(1), s.word(2), s.word(3)),
            (0x8000_0001, 0x8000_0001, 1, 0x8000_0000)
        );
        assert_eq!(s.word(4), 0);
        assert_eq!(s.word(u32::MAX), 0);
        assert!(!s.contains(128) && !s.contains(u32::MAX));
        let mut t = FeatureSet::new();
        assert!(t.set_word(1, 0x0000_0005));
        assert!(!t.set_word(4, 0xffff_ffff));
        assert_eq!(
            t,
            FeatureSet::from_bits(&[VIRTIO_F_VERSION_1, VIRTIO_F_RING_PACKED])
        );
        assert_eq!(FeatureSet::from_words(s.words()), s);
    }

    #[test]
    fn u64_conversions() {
        let s = FeatureSet::from_u64(0x0000_0001_0000_0020);
        assert!(s.contains(5) && s.contains(32));
        assert_eq!(s.as_u64_lossy(), 0x0000_0001_0000_0020);
        assert!(!s.has_bits_above_63());
        let wide = s.with(64);
        assert!(wide.has_bits_above_63());
        assert_eq!(wide.as_u64_lossy(), 0x0000_0001_0000_0020);
        assert_eq!(FeatureSet::from(u64::MAX).len(), 64);
    }

    #[test]
    fn insert_remove_and_set_operations() {
        let mut s = FeatureSet::EMPTY;
        assert!(s.is_empty());
        assert!(s.insert(VIRTIO_F_EVENT_IDX));
        assert!(!s.insert(200));
        assert_eq!(s.len(), 1);
        assert!(s.remove(VIRTIO_F_EVENT_IDX));
        assert!(!s.remove(VIRTIO_F_EVENT_IDX));
        let a = FeatureSet::from_bits(&[1, 2, 3, 100]);
        let b = FeatureSet::from_bits(&[2, 3, 4]);
        assert_eq!(a & b, FeatureSet::from_bits(&[2, 3]));
        assert_eq!(a | b, FeatureSet::from_bits(&[1, 2, 3, 4, 100]));
        assert_eq!(a - b, FeatureSet::from_bits(&[1, 100]));
        assert!((a & b).is_subset(a) && (a & b).is_subset(b));
        assert!(!a.is_subset(b));
        assert!(FeatureSet::EMPTY.is_subset(b));
        let mut c = a;
        c.remove_all(&[1, 100, 7]);
        assert_eq!(c, FeatureSet::from_bits(&[2, 3]));
        let mut d: FeatureSet = [5u32, 6].into_iter().collect();
        d.extend([7u32]);
        assert_eq!(d, FeatureSet::from_bits(&[5, 6, 7]));
    }

    #[test]
    fn iteration_is_ascending_across_words() {
        let bits = [0u32, 1, 31, 32, 40, 63, 64, 95, 96, 127];
        let s = FeatureSet::from_bits(&bits);
        assert_eq!(s.iter().collect::<Vec<_>>(), bits);
        assert_eq!((&s).into_iter().count(), bits.len());
        assert_eq!(FeatureSet::EMPTY.iter().next(), None);
        assert_eq!(
            FeatureSet::from_bits(&[127])
                .into_iter()
                .collect::<Vec<_>>(),
            [127]
        );
    }

    #[test]
    fn debug_names_transport_bits() {
        let s = FeatureSet::from_bits(&[0, 5, VIRTIO_F_VERSION_1, VIRTIO_F_RING_PACKED, 100]);
        assert_eq!(
            format!("{s:?}"),
            "{0, 5, VIRTIO_F_VERSION_1(32), VIRTIO_F_RING_PACKED(34), 100}"
        );
        assert_eq!(format!("{:?}", FeatureSet::EMPTY), "{}");
    }

    #[test]
    fn transport_lists() {
        assert!(TRANSPORT_RULES.is_empty());
        let all =
            FeatureSet::from_bits(&[24, 27, 28, 29, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 43]);
        assert!(check_dependencies(&all, TRANSPORT_RULES).is_ok());
        assert_eq!(MUST_ACCEPT_IF_OFFERED, [32]);
        assert_eq!(SHOULD_ACCEPT_IF_OFFERED, [33, 34, 36, 39]);
        assert_eq!(LEGACY_MUST_ACCEPT_IF_OFFERED, [27]);
        assert_eq!(SHOULD_NOT_NEGOTIATE, [30]);
        assert_eq!(PCI_ONLY_FEATURES, [37, 41]);
        assert_eq!(CCW_RESERVED_FEATURES, [41, 40]);
        let mut s = all;
        s.remove_all(PCI_ONLY_FEATURES);
        assert!(!s.contains(VIRTIO_F_SR_IOV) && s.contains(VIRTIO_F_SUSPEND));
    }
}
