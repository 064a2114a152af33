//! The balloon driver against a fake device over MMIO: inflating to the
//! device's target and deflating, `actual` written after each change
//! (VIRTIO 1.4 §5.5.6.1), one batch in flight, pages never deflated before
//! their inflation was acknowledged, statistics on request with the same
//! subset every time (§5.5.6.3.1), free page reporting (§5.5.6.7),
//! DEFLATE_ON_OOM, and a hostile `num_pages` beyond the memory available.

mod common;

use common::balloon_dev::BalloonDev;
use common::{block, memory, mmio, with_dev};
use ringwork_driver::balloon::{BalloonDriver, BalloonError, BalloonOptions, Progress, PFN_BATCH};
use ringwork_queue::test_utils::TestMemory;
use ringwork_queue::{Dma, Segment};
use ringwork_spec::balloon::{
    VIRTIO_BALLOON_F_FREE_PAGE_HINT, VIRTIO_BALLOON_F_MUST_TELL_HOST, VIRTIO_BALLOON_F_PAGE_POISON,
    VIRTIO_BALLOON_F_PAGE_REPORTING, VIRTIO_BALLOON_F_STATS_VQ, VIRTIO_BALLOON_S_MEMFREE,
    VIRTIO_BALLOON_S_MEMTOT,
};
use ringwork_spec::features::VIRTIO_F_RING_PACKED;

fn opts() -> BalloonOptions {
    BalloonOptions {
        stats: vec![VIRTIO_BALLOON_S_MEMFREE, VIRTIO_BALLOON_S_MEMTOT],
        deflate_on_oom: true,
        reporting: true,
        ..BalloonOptions::default()
    }
}

#[test]
fn inflates_to_the_target_and_deflates_back() {
    for packed in [false, true] {
        let mem = memory();
        let mut dev = BalloonDev::new(&mem);
        if !packed {
            dev.features.remove(VIRTIO_F_RING_PACKED);
        }
        dev.num_pages = 1000;
        let b = block(dev);
        let mut d = BalloonDriver::new(mmio(&b), &mem, opts()).unwrap();
        assert!(d.features().contains(VIRTIO_BALLOON_F_MUST_TELL_HOST));
        assert_eq!(d.reach_target().unwrap(), 1000);
        with_dev(&b, |dev| {
            assert_eq!(dev.inflated.len(), 1000);
            assert_eq!(dev.actual_writes.last(), Some(&1000));
            // One write per acknowledged batch of at most PFN_BATCH pages.
            assert_eq!(
                dev.actual_writes.len(),
                1000usize.div_ceil(PFN_BATCH as usize)
            );
            assert!(dev.violations.is_empty(), "{:?}", dev.violations);
            // Every PFN is one of the driver's pages, 4 KiB apart.
            assert!(dev
                .inflated
                .iter()
                .all(|&p| u64::from(p) << 12 >= 0x100_0000));
            dev.num_pages = 300;
        });
        assert_eq!(d.reach_target().unwrap(), 300);
        with_dev(&b, |dev| {
            assert_eq!(dev.inflated.len(), 300);
            assert_eq!(dev.actual_writes.last(), Some(&300));
            dev.num_pages = 0;
        });
        assert_eq!(d.reach_target().unwrap(), 0);
        with_dev(&b, |dev| {
            assert!(dev.inflated.is_empty());
            assert_eq!(dev.actual_writes.last(), Some(&0));
            assert!(dev.violations.is_empty(), "{:?}", dev.violations);
        });
        assert!(d.reset().reset.is_ok());
    }
}

/// Pages count only once acknowledged, one batch is in flight at a time,
/// and a target lowered while an inflation is in flight deflates only
/// acknowledged pages.
#[test]
fn nothing_counts_or_is_deflated_before_the_device_acknowledges() {
    let mem = memory();
    let mut dev = BalloonDev::new(&mem);
    dev.num_pages = 600;
    dev.hold = true;
    let b = block(dev);
    let mut d = BalloonDriver::new(mmio(&b), &mem, opts()).unwrap();
    let p = d.step().unwrap();
    assert_eq!(
        p,
        Progress {
            target: 600,
            actual: 0,
            busy: true
        }
    );
    // Still waiting: no second batch, nothing counted, nothing written.
    assert_eq!(d.step().unwrap().actual, 0);
    with_dev(&b, |dev| {
        assert!(dev.actual_writes.is_empty());
        assert!(dev.inflated.is_empty());
        dev.num_pages = 0;
        dev.release();
    });
    // The acknowledged batch counts, then goes back.
    let p = d.step().unwrap();
    assert_eq!((p.target, p.actual, p.busy), (0, PFN_BATCH, true));
    with_dev(&b, |dev| {
        assert_eq!(dev.actual_writes, vec![PFN_BATCH]);
        dev.hold = false;
        dev.release();
    });
    assert_eq!(d.reach_target().unwrap(), 0);
    with_dev(&b, |dev| {
        assert!(dev.violations.is_empty(), "{:?}", dev.violations);
        assert!(dev.inflated.is_empty());
    });
}

#[test]
fn a_target_beyond_memory_stops_with_an_error_and_stays_consistent() {
    let mem = TestMemory::new(0x100_0000, 4 << 20);
    let mut dev = BalloonDev::new(&mem);
    dev.num_pages = u32::MAX;
    let b = block(dev);
    let mut d = BalloonDriver::new(mmio(&b), &mem, opts()).unwrap();
    let e = d.reach_target().unwrap_err();
    let BalloonError::OutOfPages { actual, target } = e else {
        panic!("{e:?}");
    };
    assert_eq!(target, u32::MAX);
    assert!(actual > 0 && actual % 256 == 0, "{actual}");
    assert_eq!(d.actual(), actual);
    with_dev(&b, |dev| {
        assert_eq!(dev.inflated.len() as u32, actual);
        dev.num_pages = 0;
    });
    assert_eq!(d.reach_target().unwrap(), 0);
}

#[test]
fn statistics_on_request_with_the_same_tags_every_time() {
    let mem = memory();
    let b = block(BalloonDev::new(&mem));
    let mut d = BalloonDriver::new(mmio(&b), &mem, opts()).unwrap();
    assert!(d.features().contains(VIRTIO_BALLOON_F_STATS_VQ));
    // The first buffer was made available at setup, initialized.
    with_dev(&b, |dev| {
        assert_eq!(
            dev.stats,
            vec![vec![
                (VIRTIO_BALLOON_S_MEMFREE, 0),
                (VIRTIO_BALLOON_S_MEMTOT, 0)
            ]]
        );
    });
    assert!(!d.stats_requested().unwrap());
    assert_eq!(
        d.provide_stats(&[(VIRTIO_BALLOON_S_MEMFREE, 1), (VIRTIO_BALLOON_S_MEMTOT, 2)]),
        Err(BalloonError::StatsNotRequested),
        "at most one buffer in the queue"
    );
    assert!(with_dev(&b, |dev| dev.request_stats()));
    assert!(d.stats_requested().unwrap());
    assert_eq!(
        d.provide_stats(&[(VIRTIO_BALLOON_S_MEMFREE, 1)]),
        Err(BalloonError::StatsMismatch {
            tag: VIRTIO_BALLOON_S_MEMTOT,
            what: "missing"
        })
    );
    assert!(matches!(
        d.provide_stats(&[
            (9, 1),
            (VIRTIO_BALLOON_S_MEMFREE, 1),
            (VIRTIO_BALLOON_S_MEMTOT, 1)
        ]),
        Err(BalloonError::StatsMismatch { tag: 9, .. })
    ));
    d.provide_stats(&[
        (VIRTIO_BALLOON_S_MEMTOT, 8 << 30),
        (VIRTIO_BALLOON_S_MEMFREE, 5 << 30),
    ])
    .unwrap();
    with_dev(&b, |dev| {
        assert_eq!(
            dev.stats.last().unwrap(),
            &vec![
                (VIRTIO_BALLOON_S_MEMFREE, 5 << 30),
                (VIRTIO_BALLOON_S_MEMTOT, 8 << 30)
            ]
        );
        assert!(dev.violations.is_empty(), "{:?}", dev.violations);
    });
}

#[test]
fn free_page_reports_are_whole_pages_and_acknowledged() {
    let mem = memory();
    let b = block(BalloonDev::new(&mem));
    let mut d = BalloonDriver::new(mmio(&b), &mem, opts()).unwrap();
    assert!(d.features().contains(VIRTIO_BALLOON_F_PAGE_REPORTING));
    let free = mem.alloc(64 << 10, 4096).unwrap();
    let a = free.device_addr();
    assert_eq!(
        d.report_free(&[Segment::new(a + 8, 4096)], 1),
        Err(BalloonError::BadRange {
            addr: a + 8,
            len: 4096
        })
    );
    d.report_free(
        &[
            Segment::new(a, 32 << 10),
            Segment::new(a + (48 << 10), 16 << 10),
        ],
        7,
    )
    .unwrap();
    assert_eq!(d.poll_reported().unwrap(), Some(7));
    assert_eq!(d.poll_reported().unwrap(), None);
    assert_eq!(d.reports_in_flight(), 0);
    with_dev(&b, |dev| {
        assert_eq!(dev.reports, vec![(a, 32 << 10), (a + (48 << 10), 16 << 10)]);
        assert!(dev.violations.is_empty(), "{:?}", dev.violations);
    });
}

#[test]
fn deflate_on_oom_takes_pages_back_below_the_target() {
    let mem = memory();
    let mut dev = BalloonDev::new(&mem);
    dev.num_pages = 512;
    let b = block(dev);
    let mut d = BalloonDriver::new(mmio(&b), &mem, opts()).unwrap();
    d.reach_target().unwrap();
    assert_eq!(d.deflate_on_oom(300).unwrap(), 300);
    assert_eq!(d.actual(), 212);
    with_dev(&b, |dev| {
        assert_eq!(dev.inflated.len(), 212);
        assert_eq!(dev.actual_writes.last(), Some(&212));
    });
    // Without the feature it is refused.
    let mem = memory();
    let b = block(BalloonDev::new(&mem));
    let mut d = BalloonDriver::new(
        mmio(&b),
        &mem,
        BalloonOptions {
            deflate_on_oom: false,
            ..opts()
        },
    )
    .unwrap();
    assert!(matches!(
        d.deflate_on_oom(1),
        Err(BalloonError::NotNegotiated(_))
    ));
}

/// Without the optional features the queues are numbered densely and the
/// optional operations are refused.
#[test]
fn optional_queues_only_when_negotiated() {
    let mem = memory();
    let b = block(BalloonDev::new(&mem));
    let mut d = BalloonDriver::new(mmio(&b), &mem, BalloonOptions::default()).unwrap();
    let q = d.queues();
    assert_eq!((q.statsq, q.reporting_vq), (None, None));
    assert!(matches!(
        d.stats_requested(),
        Err(BalloonError::NotNegotiated(_))
    ));
    assert!(matches!(
        d.report_free(&[], 0),
        Err(BalloonError::NotNegotiated(_))
    ));
    // Stats only, with reporting: reporting is queue 3.
    let mem = memory();
    let b = block(BalloonDev::new(&mem));
    let d = BalloonDriver::new(
        mmio(&b),
        &mem,
        BalloonOptions {
            deflate_on_oom: false,
            ..opts()
        },
    )
    .unwrap();
    assert_eq!(d.queues().reporting_vq, Some(3));
    // A repeated tag is refused at setup.
    let mem = memory();
    let b = block(BalloonDev::new(&mem));
    assert!(BalloonDriver::new(
        mmio(&b),
        &mem,
        BalloonOptions {
            stats: vec![1, 1],
            ..BalloonOptions::default()
        },
    )
    .is_err());
}

/// The driver may give more than the target and take the surplus back.
#[test]
fn inflating_beyond_the_target_and_back() {
    let mem = memory();
    let mut dev = BalloonDev::new(&mem);
    dev.num_pages = 10;
    let b = block(dev);
    let mut d = BalloonDriver::new(mmio(&b), &mem, opts()).unwrap();
    assert_eq!(d.reach_target().unwrap(), 10);
    assert_eq!(d.inflate(300).unwrap(), 300);
    assert_eq!(d.actual(), 310);
    with_dev(&b, |dev| {
        assert_eq!(dev.inflated.len(), 310);
        assert_eq!(dev.actual_writes.last(), Some(&310));
    });
    assert_eq!(d.reach_target().unwrap(), 10);
    with_dev(&b, |dev| {
        assert_eq!(dev.inflated.len(), 10);
        assert!(dev.violations.is_empty(), "{:?}", dev.violations);
    });
}

/// VIRTIO 1.4 §5.5.6.5.1, §5.5.6.6.1: the driver does no free page
/// hinting and no page poisoning, so it refuses both features when the
/// device offers them (their driver rules are then vacuous), numbers the
/// queues without the free page queue and works as usual.
#[test]
fn free_page_hint_and_page_poison_are_refused_when_offered() {
    let mem = memory();
    let mut dev = BalloonDev::new(&mem);
    dev.features.insert(VIRTIO_BALLOON_F_FREE_PAGE_HINT);
    dev.features.insert(VIRTIO_BALLOON_F_PAGE_POISON);
    dev.num_pages = 100;
    let b = block(dev);
    let mut d = BalloonDriver::new(mmio(&b), &mem, opts()).unwrap();
    for bit in [
        VIRTIO_BALLOON_F_FREE_PAGE_HINT,
        VIRTIO_BALLOON_F_PAGE_POISON,
    ] {
        assert!(!d.features().contains(bit), "feature {bit} accepted");
        with_dev(&b, |dev| {
            assert!(dev.features.contains(bit), "feature {bit} offered");
            assert!(!dev.negotiated.contains(bit), "feature {bit} negotiated");
        });
    }
    // Stats and reporting still come after the two mandatory queues.
    assert_eq!(d.queues().statsq, Some(2));
    assert_eq!(d.queues().reporting_vq, Some(3));
    assert_eq!(d.reach_target().unwrap(), 100);
    with_dev(&b, |dev| {
        assert!(dev.violations.is_empty(), "{:?}", dev.violations)
    });
}
