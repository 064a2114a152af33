//! VIRTIO 1.4 §5.5 Traditional Memory Balloon Device.
//!
//! Contents: the feature bits (`VIRTIO_BALLOON_F_*`, bit numbers), the
//! configuration space ([`BalloonConfig`]), the memory statistic entry
//! ([`BalloonStat`]) and its tags (`VIRTIO_BALLOON_S_*`), the page frame
//! unit ([`VIRTIO_BALLOON_PFN_SHIFT`]), the free page hint command IDs
//! (`VIRTIO_BALLOON_CMD_ID_*`), the virtqueue numbering
//! ([`BalloonQueues`]) and the feature rules ([`BALLOON_FEATURE_RULES`],
//! [`BALLOON_RETAINED_CONTENT_RULES`]).
//!
//! Inflate and deflate buffers are arrays of le32 page frame numbers: guest
//! addresses divided by 4096, whatever the guest page size ("This is
//! historical"). Device ID 13 is reserved for a different, future balloon.
//!
//! # Queue numbering
//! The spec lists `inflateq` 0, `deflateq` 1, `statsq` 2, `free_page_vq` 3,
//! `reporting_vq` 4, and says the last three only exist with their
//! features. Linux and QEMU number the queues that exist densely, in that
//! order: without `VIRTIO_BALLOON_F_STATS_VQ`, `free_page_vq` is queue 2.
//! [`BalloonQueues::new`] computes that dense numbering, which matches the
//! spec's list whenever every earlier optional queue exists. The spec's
//! nominal numbers are the `BALLOON_*Q_NOMINAL` constants.
//!
//! ```
//! use ringwork_spec::balloon::BalloonQueues;
//!
//! let q = BalloonQueues::new(false, true, true);
//! assert_eq!((q.inflateq, q.deflateq), (0, 1));
//! assert_eq!((q.statsq, q.free_page_vq, q.reporting_vq), (None, Some(2), Some(3)));
//! assert_eq!(q.num_queues(), 4);
//! ```

use crate::features::FeatureRule;
use crate::le::{Le16, Le32, Le64};
use crate::wire_view;

// ---------------------------------------------------------------------------
// Feature bits (§5.5.3)
// ---------------------------------------------------------------------------

/// Host has to be told before pages from the balloon are used.
pub const VIRTIO_BALLOON_F_MUST_TELL_HOST: u32 = 0;
/// A virtqueue for reporting guest memory statistics is present.
pub const VIRTIO_BALLOON_F_STATS_VQ: u32 = 1;
/// Deflate balloon on guest out of memory condition.
pub const VIRTIO_BALLOON_F_DEFLATE_ON_OOM: u32 = 2;
/// Free page hinting: `free_page_vq` present, `free_page_hint_cmd_id` valid.
pub const VIRTIO_BALLOON_F_FREE_PAGE_HINT: u32 = 3;
/// The driver will immediately write `poison_val` to pages after deflating
/// them; `poison_val` is valid.
pub const VIRTIO_BALLOON_F_PAGE_POISON: u32 = 4;
/// Free page reporting: `reporting_vq` present. Linux:
/// `VIRTIO_BALLOON_F_REPORTING`.
#[doc(alias = "VIRTIO_BALLOON_F_REPORTING")]
pub const VIRTIO_BALLOON_F_PAGE_REPORTING: u32 = 5;

/// Feature dependency rules of §5.5 that hold for every driver and device:
/// none. The spec states no unconditional "X requires Y" between balloon
/// features; see [`BALLOON_RETAINED_CONTENT_RULES`] for the conditional one.
pub const BALLOON_FEATURE_RULES: &[FeatureRule] = &[];

/// Rules for drivers that expect pages to retain an initialized value
/// (§5.5.3.1): such a driver "MUST NOT accept
/// VIRTIO_BALLOON_F_PAGE_REPORTING unless it also negotiates
/// VIRTIO_BALLOON_F_PAGE_POISON". Chain with [`BALLOON_FEATURE_RULES`] when
/// that applies.
pub const BALLOON_RETAINED_CONTENT_RULES: &[FeatureRule] =
    &[
        FeatureRule::new(VIRTIO_BALLOON_F_PAGE_REPORTING, "§5.5.3.1")
            .all_of(&[VIRTIO_BALLOON_F_PAGE_POISON]),
    ];

/// A driver SHOULD accept these if offered: `VIRTIO_BALLOON_F_MUST_TELL_HOST`
/// (§5.5.3.1; the device MAY then refuse FEATURES_OK).
pub const BALLOON_SHOULD_ACCEPT_IF_OFFERED: &[u32] = &[VIRTIO_BALLOON_F_MUST_TELL_HOST];

// ---------------------------------------------------------------------------
// Configuration space (§5.5.4)
// ---------------------------------------------------------------------------

/// Offset of `num_pages` in [`BalloonConfig`] (set by the device; the
/// driver only reads it).
pub const BALLOON_CONFIG_NUM_PAGES_OFFSET: usize = 0;
/// Offset of `actual` in [`BalloonConfig`] (driver-writable; legacy drivers
/// MUST write all 4 bytes at once).
pub const BALLOON_CONFIG_ACTUAL_OFFSET: usize = 4;
/// Offset of `free_page_hint_cmd_id` in [`BalloonConfig`] (set by the
/// device; "read-only by the driver", §5.5.4).
pub const BALLOON_CONFIG_FREE_PAGE_HINT_CMD_ID_OFFSET: usize = 8;
/// Offset of `poison_val` in [`BalloonConfig`] (driver-writable with
/// `VIRTIO_BALLOON_F_PAGE_POISON`).
pub const BALLOON_CONFIG_POISON_VAL_OFFSET: usize = 12;

wire_view! {
    /// The balloon configuration space (`struct virtio_balloon_config`).
    /// Little-endian even through the legacy interface (unlike other
    /// devices).
    #[doc(alias = "virtio_balloon_config")]
    pub struct BalloonConfig, size BALLOON_CONFIG_SIZE = 16 {
        /// Number of pages the device wants in the balloon.
        @0 num_pages / set_num_pages: Le32,
        /// Number of pages in the balloon (written by the driver).
        @4 actual / set_actual: Le32,
        /// Free page hint command ID (`VIRTIO_BALLOON_F_FREE_PAGE_HINT`;
        /// read-only for the driver). See `VIRTIO_BALLOON_CMD_ID_*`.
        @8 free_page_hint_cmd_id / set_free_page_hint_cmd_id: Le32,
        /// Value the driver fills freed pages with
        /// (`VIRTIO_BALLOON_F_PAGE_POISON`; written by the driver).
        @12 poison_val / set_poison_val: Le32,
    }
}

/// Page frame numbers in inflate/deflate buffers are addresses shifted right
/// by 12 (4096-byte units), independent of the guest page size.
pub const VIRTIO_BALLOON_PFN_SHIFT: u32 = 12;
/// `1 << VIRTIO_BALLOON_PFN_SHIFT`: the balloon's page unit in bytes (also
/// the unit of `num_pages` and `actual`).
pub const VIRTIO_BALLOON_PAGE_SIZE: usize = 1 << VIRTIO_BALLOON_PFN_SHIFT;
/// Size of one page frame number in an inflate/deflate buffer (le32).
pub const BALLOON_PFN_SIZE: usize = 4;

/// The balloon PFN of a guest address (`addr >> 12`), or `None` if it does
/// not fit the 32-bit array entry (addresses at or above 16 TiB).
#[inline]
pub const fn pfn_of(addr: u64) -> Option<u32> {
    let pfn = addr >> VIRTIO_BALLOON_PFN_SHIFT;
    if pfn > u32::MAX as u64 {
        None
    } else {
        Some(pfn as u32)
    }
}

/// The guest address of balloon PFN `pfn` (`pfn << 12`).
#[inline]
pub const fn addr_of_pfn(pfn: u32) -> u64 {
    (pfn as u64) << VIRTIO_BALLOON_PFN_SHIFT
}

// ---------------------------------------------------------------------------
// Free page hinting (§5.5.6.5)
// ---------------------------------------------------------------------------

/// Command ID: previous IDs are invalid; stop hinting, keep hinted pages.
/// Also what the driver sends to end a round of hints.
pub const VIRTIO_BALLOON_CMD_ID_STOP: u32 = 0;
/// Command ID: previous IDs are invalid; stop hinting and release all
/// hinted pages.
pub const VIRTIO_BALLOON_CMD_ID_DONE: u32 = 1;
/// Size of the output buffer carrying a command ID on `free_page_vq` (le32).
pub const BALLOON_CMD_ID_SIZE: usize = 4;

/// Whether `cmd_id` is a non-reserved value that starts hinting (2 or
/// greater).
#[inline]
pub const fn is_hinting_cmd_id(cmd_id: u32) -> bool {
    cmd_id > VIRTIO_BALLOON_CMD_ID_DONE
}

// ---------------------------------------------------------------------------
// Memory statistics (§5.5.6.3, §5.5.6.4)
// ---------------------------------------------------------------------------

/// Memory swapped in (bytes).
pub const VIRTIO_BALLOON_S_SWAP_IN: u16 = 0;
/// Memory swapped out to disk (bytes).
pub const VIRTIO_BALLOON_S_SWAP_OUT: u16 = 1;
/// Major page faults.
pub const VIRTIO_BALLOON_S_MAJFLT: u16 = 2;
/// Minor page faults.
pub const VIRTIO_BALLOON_S_MINFLT: u16 = 3;
/// Memory not used for any purpose (bytes).
pub const VIRTIO_BALLOON_S_MEMFREE: u16 = 4;
/// Total memory available (bytes).
pub const VIRTIO_BALLOON_S_MEMTOT: u16 = 5;
/// Estimate of memory available for new applications without swapping
/// (bytes).
pub const VIRTIO_BALLOON_S_AVAIL: u16 = 6;
/// Memory quickly reclaimable without I/O, e.g. file caches (bytes).
pub const VIRTIO_BALLOON_S_CACHES: u16 = 7;
/// Successful hugetlb page allocations.
pub const VIRTIO_BALLOON_S_HTLB_PGALLOC: u16 = 8;
/// Failed hugetlb page allocations.
pub const VIRTIO_BALLOON_S_HTLB_PGFAIL: u16 = 9;

/// Number of statistic tags the spec defines (`0..VIRTIO_BALLOON_S_NR`);
/// Linux: `VIRTIO_BALLOON_S_NR`.
pub const VIRTIO_BALLOON_S_NR: u16 = 10;

/// Every statistic tag the spec defines, with a short name, in tag order.
/// Devices MUST ignore tags they do not recognise.
pub const BALLOON_STAT_TAGS: &[(u16, &str)] = &[
    (VIRTIO_BALLOON_S_SWAP_IN, "swap-in"),
    (VIRTIO_BALLOON_S_SWAP_OUT, "swap-out"),
    (VIRTIO_BALLOON_S_MAJFLT, "major-faults"),
    (VIRTIO_BALLOON_S_MINFLT, "minor-faults"),
    (VIRTIO_BALLOON_S_MEMFREE, "free-memory"),
    (VIRTIO_BALLOON_S_MEMTOT, "total-memory"),
    (VIRTIO_BALLOON_S_AVAIL, "available-memory"),
    (VIRTIO_BALLOON_S_CACHES, "disk-caches"),
    (VIRTIO_BALLOON_S_HTLB_PGALLOC, "hugetlb-allocations"),
    (VIRTIO_BALLOON_S_HTLB_PGFAIL, "hugetlb-failures"),
];

/// A short name for a statistic tag, or `None` for tags the spec does not
/// define (kept by callers, never an error).
pub const fn stat_tag_name(tag: u16) -> Option<&'static str> {
    if (tag as usize) < BALLOON_STAT_TAGS.len() {
        Some(BALLOON_STAT_TAGS[tag as usize].1)
    } else {
        None
    }
}

wire_view! {
    /// One memory statistic in a `statsq` buffer (`struct
    /// virtio_balloon_stat`, packed: 10 bytes, no padding). A buffer is an
    /// array of these, in any order, so its size is a multiple of
    /// [`BALLOON_STAT_SIZE`] (the spec's driver requirement says "a multiple
    /// of 6 bytes", which contradicts the 10-byte entry it defines).
    #[doc(alias = "virtio_balloon_stat")]
    pub struct BalloonStat, size BALLOON_STAT_SIZE = 10 {
        /// `VIRTIO_BALLOON_S_*`.
        @0 tag / set_tag: Le16,
        /// The value.
        @2 val / set_val: Le64,
    }
}

// ---------------------------------------------------------------------------
// Virtqueues (§5.5.2)
// ---------------------------------------------------------------------------

/// Index of `inflateq` (always present).
pub const BALLOON_INFLATEQ: u16 = 0;
/// Index of `deflateq` (always present).
pub const BALLOON_DEFLATEQ: u16 = 1;
/// The spec's listed index of `statsq`; the real index is the same
/// (see [`BalloonQueues`]).
pub const BALLOON_STATSQ_NOMINAL: u16 = 2;
/// The spec's listed index of `free_page_vq`; the real index is 2 without
/// `VIRTIO_BALLOON_F_STATS_VQ` (see [`BalloonQueues`]).
pub const BALLOON_FREE_PAGE_VQ_NOMINAL: u16 = 3;
/// The spec's listed index of `reporting_vq`; the real index is lower when
/// earlier optional queues are absent (see [`BalloonQueues`]).
pub const BALLOON_REPORTING_VQ_NOMINAL: u16 = 4;

/// The most virtqueues a balloon has (all three optional queues present).
pub const BALLOON_MAX_QUEUES: u16 = 5;

/// The balloon's virtqueue indices for a negotiated feature set: the queues
/// that exist, numbered densely in the spec's order (see the
/// [module docs](self) on why this is not always the spec's list).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BalloonQueues {
    /// `inflateq`, always 0.
    pub inflateq: u16,
    /// `deflateq`, always 1.
    pub deflateq: u16,
    /// `statsq`, with `VIRTIO_BALLOON_F_STATS_VQ`.
    pub statsq: Option<u16>,
    /// `free_page_vq`, with `VIRTIO_BALLOON_F_FREE_PAGE_HINT`.
    pub free_page_vq: Option<u16>,
    /// `reporting_vq`, with `VIRTIO_BALLOON_F_PAGE_REPORTING`.
    pub reporting_vq: Option<u16>,
}

impl BalloonQueues {
    /// Computes the indices from which optional queues exist.
    pub const fn new(stats_vq: bool, free_page_hint: bool, page_reporting: bool) -> Self {
        let mut next = BALLOON_DEFLATEQ + 1;
        let statsq = if stats_vq {
            next += 1;
            Some(next - 1)
        } else {
            None
        };
        let free_page_vq = if free_page_hint {
            next += 1;
            Some(next - 1)
        } else {
            None
        };
        let reporting_vq = if page_reporting { Some(next) } else { None };
        Self {
            inflateq: BALLOON_INFLATEQ,
            deflateq: BALLOON_DEFLATEQ,
            statsq,
            free_page_vq,
            reporting_vq,
        }
    }

    /// Computes the indices from a negotiated feature set, given as a
    /// predicate on feature bit numbers (e.g. `|bit| features.contains(bit)`).
    pub fn from_features(has_feature: impl Fn(u32) -> bool) -> Self {
        Self::new(
            has_feature(VIRTIO_BALLOON_F_STATS_VQ),
            has_feature(VIRTIO_BALLOON_F_FREE_PAGE_HINT),
            has_feature(VIRTIO_BALLOON_F_PAGE_REPORTING),
        )
    }

    /// Computes the indices from a feature bit mask (`1 << bit` for each
    /// negotiated `VIRTIO_BALLOON_F_*`; other bits are ignored).
    pub const fn from_bits(features: u64) -> Self {
        Self::new(
            features & (1 << VIRTIO_BALLOON_F_STATS_VQ) != 0,
            features & (1 << VIRTIO_BALLOON_F_FREE_PAGE_HINT) != 0,
            features & (1 << VIRTIO_BALLOON_F_PAGE_REPORTING) != 0,
        )
    }

    /// Number of virtqueues that exist (2 to 5).
    pub const fn num_queues(&self) -> u16 {
        2 + self.statsq.is_some() as u16
            + self.free_page_vq.is_some() as u16
            + self.reporting_vq.is_some() as u16
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_layout() {
        let mut b = [0u8; 16];
        let mut c = BalloonConfig::new_checked(&mut b[..]).unwrap();
        c.set_num_pages(0x0102_0304);
        c.set_actual(0x1112_1314);
        c.set_free_page_hint_cmd_id(0x2122_2324);
        c.set_poison_val(0xaaaa_aaaa);
        assert_eq!(
            b,
            [4, 3, 2, 1, 0x14, 0x13, 0x12, 0x11, 0x24, 0x23, 0x22, 0x21, 0xaa, 0xaa, 0xaa, 0xaa]
        );
        assert_eq!(BALLOON_CONFIG_SIZE, 16);
        assert_eq!(b[BALLOON_CONFIG_ACTUAL_OFFSET], 0x14);
        assert_eq!(b[BALLOON_CONFIG_POISON_VAL_OFFSET], 0xaa);
        assert_eq!(b[BALLOON_CONFIG_NUM_PAGES_OFFSET], 4);
        assert_eq!(b[BALLOON_CONFIG_FREE_PAGE_HINT_CMD_ID_OFFSET], 0x24);
    }

    #[test]
    fn stat_is_packed_10_bytes() {
        // Two stats back to back: MEMFREE = 0x1000, CACHES = 0x0102030405060708.
        let bytes = [
            4u8, 0, 0x00, 0x10, 0, 0, 0, 0, 0, 0, //
            7, 0, 8, 7, 6, 5, 4, 3, 2, 1,
        ];
        let s0 = BalloonStat::new_checked(&bytes[..]).unwrap();
        assert_eq!((s0.tag(), s0.val()), (VIRTIO_BALLOON_S_MEMFREE, 0x1000));
        let s1 = BalloonStat::new_checked(&bytes[BALLOON_STAT_SIZE..]).unwrap();
        assert_eq!(
            (s1.tag(), s1.val()),
            (VIRTIO_BALLOON_S_CACHES, 0x0102_0304_0506_0708)
        );
        assert_eq!(BALLOON_STAT_SIZE, 10);

        let mut b = [0u8; 10];
        let mut s = BalloonStat::new_checked(&mut b[..]).unwrap();
        s.set_tag(VIRTIO_BALLOON_S_HTLB_PGFAIL);
        s.set_val(u64::MAX);
        assert_eq!(b, [9, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
    }

    #[test]
    fn stat_tags() {
        for (i, &(tag, _)) in BALLOON_STAT_TAGS.iter().enumerate() {
            assert_eq!(tag as usize, i);
        }
        assert_eq!(BALLOON_STAT_TAGS.len(), usize::from(VIRTIO_BALLOON_S_NR));
        assert_eq!(stat_tag_name(VIRTIO_BALLOON_S_SWAP_IN), Some("swap-in"));
        assert_eq!(
            stat_tag_name(VIRTIO_BALLOON_S_HTLB_PGFAIL),
            Some("hugetlb-failures")
        );
        assert_eq!(stat_tag_name(10), None);
    }

    #[test]
    fn pfn_and_cmd_ids() {
        assert_eq!(VIRTIO_BALLOON_PAGE_SIZE, 4096);
        assert_eq!(pfn_of(0x1234_5000), Some(0x12345));
        assert_eq!(pfn_of(0x1234_5fff), Some(0x12345));
        assert_eq!(pfn_of(1 << 44), None);
        assert_eq!(addr_of_pfn(0x12345), 0x1234_5000);
        assert!(!is_hinting_cmd_id(VIRTIO_BALLOON_CMD_ID_STOP));
        assert!(!is_hinting_cmd_id(VIRTIO_BALLOON_CMD_ID_DONE));
        assert!(is_hinting_cmd_id(2));
    }

    #[test]
    fn feature_bits() {
        assert_eq!(
            [
                VIRTIO_BALLOON_F_MUST_TELL_HOST,
                VIRTIO_BALLOON_F_STATS_VQ,
                VIRTIO_BALLOON_F_DEFLATE_ON_OOM,
                VIRTIO_BALLOON_F_FREE_PAGE_HINT,
                VIRTIO_BALLOON_F_PAGE_POISON,
                VIRTIO_BALLOON_F_PAGE_REPORTING,
            ],
            [0, 1, 2, 3, 4, 5]
        );
        use crate::features::{check_dependencies, FeatureSet};
        let reporting = FeatureSet::from_bits(&[VIRTIO_BALLOON_F_PAGE_REPORTING]);
        assert!(check_dependencies(&reporting, BALLOON_FEATURE_RULES).is_ok());
        assert!(check_dependencies(&reporting, BALLOON_RETAINED_CONTENT_RULES).is_err());
        let poisoned = reporting.with(VIRTIO_BALLOON_F_PAGE_POISON);
        assert!(check_dependencies(&poisoned, BALLOON_RETAINED_CONTENT_RULES).is_ok());
        assert_eq!(BALLOON_SHOULD_ACCEPT_IF_OFFERED, [0]);
    }

    #[test]
    fn queue_indices_follow_negotiated_features() {
        let all = BalloonQueues::new(true, true, true);
        assert_eq!(all.statsq, Some(BALLOON_STATSQ_NOMINAL));
        assert_eq!(all.free_page_vq, Some(BALLOON_FREE_PAGE_VQ_NOMINAL));
        assert_eq!(all.reporting_vq, Some(BALLOON_REPORTING_VQ_NOMINAL));
        assert_eq!(all.num_queues(), 5);

        let none = BalloonQueues::new(false, false, false);
        assert_eq!((none.inflateq, none.deflateq), (0, 1));
        assert_eq!(
            (none.statsq, none.free_page_vq, none.reporting_vq),
            (None, None, None)
        );
        assert_eq!(none.num_queues(), 2);

        let reporting_only = BalloonQueues::from_features(|b| b == VIRTIO_BALLOON_F_PAGE_REPORTING);
        assert_eq!(reporting_only.reporting_vq, Some(2));
        assert_eq!(reporting_only.num_queues(), 3);

        let stats_and_reporting = BalloonQueues::from_features(|b| {
            b == VIRTIO_BALLOON_F_STATS_VQ || b == VIRTIO_BALLOON_F_PAGE_REPORTING
        });
        assert_eq!(stats_and_reporting.statsq, Some(2));
        assert_eq!(stats_and_reporting.free_page_vq, None);
        assert_eq!(stats_and_reporting.reporting_vq, Some(3));

        assert_eq!(BalloonQueues::from_bits(u64::MAX), all);
        assert_eq!(all.num_queues(), BALLOON_MAX_QUEUES);
        assert_eq!(BalloonQueues::from_bits(0), none);
        assert_eq!(
            BalloonQueues::from_bits(1 << VIRTIO_BALLOON_F_FREE_PAGE_HINT | 1 << 40),
            BalloonQueues::new(false, true, false)
        );
    }
}
