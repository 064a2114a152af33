//! The memory balloon device (VIRTIO 1.4 §5.5) through the in-process fake
//! driver: inflate gives pages back (they read as zeros afterwards),
//! deflate, hostile page frame numbers and malformed buffers, statistics,
//! configuration writes, target changes, free page reporting and hinting.

use std::sync::atomic::Ordering;
use std::time::Duration;

use ringwork_device::balloon::{Balloon, BalloonHandle, BalloonOptions, MAX_PFNS_PER_BUFFER};
use ringwork_device::harness::{Harness, MEM_SIZE};
use ringwork_device::model::Device;
use ringwork_device::ring_features;
use ringwork_queue::mem::GuestMemory;
use ringwork_queue::{RingFormat, Segment};
use ringwork_spec::balloon::*;
use ringwork_spec::features::VIRTIO_F_RING_PACKED;

const FORMATS: [RingFormat; 2] = [RingFormat::Split, RingFormat::Packed];
const PAGE: u64 = 4096;
/// Pages used as balloon pages: 8 MiB into guest memory, clear of the
/// harness's rings (at 0) and data area (from 16 MiB).
const BASE_PFN: u32 = 0x800;

fn balloon(opts: BalloonOptions, format: RingFormat) -> (Harness<Balloon>, BalloonHandle) {
    let b = Balloon::new(opts).unwrap();
    let handle = b.handle();
    let mut features = b.features() & !(1 << VIRTIO_F_RING_PACKED);
    if format == RingFormat::Packed {
        features |= 1 << VIRTIO_F_RING_PACKED;
    }
    (Harness::with_features(b, features, 256).unwrap(), handle)
}

fn plain() -> BalloonOptions {
    BalloonOptions {
        stats_vq: false,
        ..BalloonOptions::default()
    }
}

fn pfns(list: impl IntoIterator<Item = u32>) -> Vec<u8> {
    list.into_iter().flat_map(u32::to_le_bytes).collect()
}

fn fill_pages<D: Device>(h: &Harness<D>, first: u32, n: u32, byte: u8) {
    let s = h
        .mem()
        .slice(u64::from(first) * PAGE, (u64::from(n) * PAGE) as usize)
        .unwrap();
    s.fill(0, s.len(), byte).unwrap();
}

/// Every byte of page `pfn`, checked to equal `byte`.
fn page_is<D: Device>(h: &Harness<D>, pfn: u32, byte: u8) -> bool {
    let mut buf = vec![0u8; PAGE as usize];
    h.mem()
        .slice(u64::from(pfn) * PAGE, PAGE as usize)
        .unwrap()
        .read_bytes(0, &mut buf)
        .unwrap();
    buf.iter().all(|&b| b == byte)
}

fn resident(h: &mut Harness<Balloon>, handle: &BalloonHandle) -> u64 {
    let before = handle.request_memory_scan();
    h.run().unwrap();
    let st = handle.status();
    assert_eq!(st.memory_scans, before + 1, "the worker ran the scan");
    let m = st.memory.unwrap();
    assert_eq!(m.total_bytes, MEM_SIZE as u64);
    m.resident_bytes
}

/// §5.5.6 inflate/deflate and §5.5.6.1 (device MAY modify an inflated page
/// before using the inflate buffer): inflated pages are discarded — they
/// read as zeros and stop being resident — neighbouring pages keep their
/// contents, buffers come back with used length 0, deflate takes pages
/// out of the record, and `actual` is the driver's to write.
#[test]
fn inflate_discards_pages_and_deflate_forgets_them() {
    for format in FORMATS {
        let (mut h, handle) = balloon(plain(), format);
        fill_pages(&h, BASE_PFN, 16, 0xab);
        let before = resident(&mut h, &handle);
        let list: Vec<u32> = (BASE_PFN..BASE_PFN + 8).chain([BASE_PFN + 10]).collect();
        let t = h
            .submit(BALLOON_INFLATEQ, &[&pfns(list.clone())], &[])
            .unwrap();
        h.run().unwrap();
        assert_eq!(h.completed(BALLOON_INFLATEQ).unwrap(), vec![(t, vec![])]);
        // Measured before reading the pages back: a read of a hole in
        // shared memory allocates a fresh zero page.
        let after = resident(&mut h, &handle);
        // The PFN buffer itself may have faulted in one page.
        assert!(
            after + 9 * PAGE <= before + PAGE,
            "{format:?}: resident {before} -> {after}"
        );
        for &pfn in &list {
            assert!(page_is(&h, pfn, 0), "{format:?}: page {pfn:#x} discarded");
        }
        for pfn in [BASE_PFN + 8, BASE_PFN + 9, BASE_PFN + 11, BASE_PFN + 15] {
            assert!(page_is(&h, pfn, 0xab), "{format:?}: page {pfn:#x} kept");
        }
        let st = handle.status();
        assert_eq!(st.inflated_pages, 9);
        assert_eq!(st.counters.discarded_pages, 9);
        assert_eq!(st.actual_pages, 0, "actual is written by the driver");

        h.device()
            .write_config(BALLOON_CONFIG_ACTUAL_OFFSET as u32, &9u32.to_le_bytes());
        let t = h
            .submit(
                BALLOON_DEFLATEQ,
                &[&pfns([
                    BASE_PFN,
                    BASE_PFN + 1,
                    BASE_PFN + 10,
                    BASE_PFN + 12,
                ])],
                &[],
            )
            .unwrap();
        h.run().unwrap();
        assert_eq!(h.completed(BALLOON_DEFLATEQ).unwrap(), vec![(t, vec![])]);
        let st = handle.status();
        assert_eq!(st.inflated_pages, 6);
        assert_eq!(st.counters.deflated_pages, 3);
        assert_eq!(
            st.counters.unknown_deflates,
            1,
            "{:#x} was never inflated",
            BASE_PFN + 12
        );
        assert_eq!(st.actual_pages, 9);
        // A deflated page is the guest's again: writes stick.
        fill_pages(&h, BASE_PFN, 1, 0x11);
        assert!(page_is(&h, BASE_PFN, 0x11));
        assert!(h.broken_queues().is_empty());
    }
}

/// Hostile inflate/deflate buffers: page frame numbers outside guest
/// memory (just past the end, far away, u32::MAX) are skipped without
/// touching any memory; odd lengths, writable parts, empty buffers and
/// buffers over the per-buffer limit are used (length 0) and counted;
/// duplicates are counted once. No queue breaks, nothing panics.
#[test]
fn hostile_pfns_and_malformed_buffers_are_skipped() {
    for format in FORMATS {
        let (mut h, handle) = balloon(plain(), format);
        let last = (MEM_SIZE as u64 / PAGE) as u32 - 1;
        fill_pages(&h, last, 1, 0x77);
        fill_pages(&h, BASE_PFN, 4, 0x55);
        let mut tokens = vec![
            h.submit(
                BALLOON_INFLATEQ,
                &[&pfns([last + 1, 0x10_0000, u32::MAX, BASE_PFN])],
                &[],
            )
            .unwrap(),
            // Odd length: one PFN and 3 stray bytes.
            h.submit(
                BALLOON_INFLATEQ,
                &[&[pfns([BASE_PFN + 1]), vec![1, 2, 3]].concat()],
                &[],
            )
            .unwrap(),
            // A writable part on an inflate buffer.
            h.submit(BALLOON_INFLATEQ, &[&pfns([BASE_PFN + 2])], &[64])
                .unwrap(),
            // Empty (one zero-length segment), and a duplicate.
            h.submit_segments(
                BALLOON_INFLATEQ,
                &[Segment::new(u64::from(BASE_PFN) * PAGE, 0)],
                &[],
            )
            .unwrap(),
            h.submit(BALLOON_INFLATEQ, &[&pfns([BASE_PFN, BASE_PFN])], &[])
                .unwrap(),
        ];
        // Far more PFNs than the per-buffer limit, all pointing at the
        // same page: the limit bounds the work.
        let huge = pfns(std::iter::repeat_n(BASE_PFN + 3, MAX_PFNS_PER_BUFFER + 10));
        tokens.push(h.submit(BALLOON_INFLATEQ, &[&huge], &[]).unwrap());
        h.run().unwrap();
        let done = h.completed(BALLOON_INFLATEQ).unwrap();
        assert_eq!(done.len(), tokens.len(), "{format:?}: every buffer used");
        assert!(done.iter().all(|(_, d)| d.is_empty()), "nothing written");
        assert!(page_is(&h, last, 0x77), "the last page was never named");
        for pfn in BASE_PFN..BASE_PFN + 4 {
            assert!(page_is(&h, pfn, 0), "{format:?}: {pfn:#x} inflated");
        }
        let st = handle.status();
        assert_eq!(st.inflated_pages, 4);
        assert_eq!(st.counters.bad_pfns, 3);
        assert_eq!(st.counters.malformed_buffers, 3, "odd, writable, huge");
        assert_eq!(
            st.counters.duplicate_inflates,
            2 + (MAX_PFNS_PER_BUFFER as u64 - 1)
        );
        // A page inflated again (say, a record older than this driver) is
        // discarded again.
        fill_pages(&h, BASE_PFN, 1, 0x66);
        h.submit(BALLOON_INFLATEQ, &[&pfns([BASE_PFN])], &[])
            .unwrap();
        h.run().unwrap();
        assert_eq!(h.completed(BALLOON_INFLATEQ).unwrap().len(), 1);
        assert!(page_is(&h, BASE_PFN, 0), "{format:?}: discarded again");
        let st = handle.status();
        assert_eq!(st.inflated_pages, 4);
        assert_eq!(
            st.counters.duplicate_inflates,
            3 + (MAX_PFNS_PER_BUFFER as u64 - 1)
        );

        let t = h
            .submit(
                BALLOON_DEFLATEQ,
                &[&[pfns([u32::MAX, BASE_PFN]), vec![9]].concat()],
                &[],
            )
            .unwrap();
        h.run().unwrap();
        assert_eq!(h.completed(BALLOON_DEFLATEQ).unwrap(), vec![(t, vec![])]);
        let st = handle.status();
        assert_eq!((st.inflated_pages, st.counters.bad_pfns), (3, 4));
        assert_eq!(st.counters.malformed_buffers, 4);
        assert!(h.broken_queues().is_empty(), "{format:?}");

        // A descriptor outside guest memory is a ring-level error: the
        // queue breaks (reported as an error), the device does not panic.
        h.submit_segments(
            BALLOON_INFLATEQ,
            &[Segment::new(MEM_SIZE as u64 + PAGE, 4)],
            &[],
        )
        .unwrap();
        assert!(h.run().is_err());
        assert_eq!(h.broken_queues(), vec![BALLOON_INFLATEQ]);
    }
}

fn stat(tag: u16, val: u64) -> Vec<u8> {
    let mut v = tag.to_le_bytes().to_vec();
    v.extend_from_slice(&val.to_le_bytes());
    v
}

/// §5.5.6.3: the device holds the stats buffer and uses it to request
/// fresh statistics; entries in any order are accepted and unknown tags
/// ignored as statistics (§5.5.6.3.2); a trailing partial entry is
/// ignored; a second buffer makes the device return the first.
#[test]
fn stats_buffer_is_held_parsed_and_returned_on_request() {
    for format in FORMATS {
        let (mut h, handle) = balloon(BalloonOptions::default(), format);
        let statsq = BALLOON_STATSQ_NOMINAL;
        assert!(
            handle.request_stats().is_ok(),
            "STATS_VQ negotiated: request accepted"
        );
        let buf = [
            stat(VIRTIO_BALLOON_S_MEMTOT, 256 << 20),
            stat(999, 42),
            stat(VIRTIO_BALLOON_S_MEMFREE, 100 << 20),
            stat(VIRTIO_BALLOON_S_SWAP_IN, 0),
            vec![0xff; 4],
        ]
        .concat();
        let first = h.submit(statsq, &[&buf], &[]).unwrap();
        h.run().unwrap();
        // The pending request was for a buffer in flight: this one is held.
        assert!(h.completed(statsq).unwrap().is_empty(), "{format:?}: held");
        let st = handle.status();
        let s = st.stats.unwrap();
        assert_eq!(s.get(VIRTIO_BALLOON_S_MEMTOT), Some(256 << 20));
        assert_eq!(s.get(VIRTIO_BALLOON_S_MEMFREE), Some(100 << 20));
        assert_eq!(s.get(VIRTIO_BALLOON_S_SWAP_IN), Some(0));
        assert_eq!(s.get(VIRTIO_BALLOON_S_CACHES), None);
        assert_eq!(s.unknown, vec![(999, 42)]);
        assert_eq!((s.entries, s.trailing_bytes), (4, 4));
        assert_eq!(st.stats_updates, 1);

        handle.request_stats().unwrap();
        h.run().unwrap();
        assert_eq!(h.completed(statsq).unwrap(), vec![(first, vec![])]);

        let second = h
            .submit(statsq, &[&stat(VIRTIO_BALLOON_S_MEMFREE, 7)], &[])
            .unwrap();
        h.run().unwrap();
        assert_eq!(
            handle.status().stats.unwrap().get(VIRTIO_BALLOON_S_MEMFREE),
            Some(7)
        );
        assert!(handle.wait_stats(1, Duration::ZERO));
        // A driver that adds another buffer gets the held one back.
        let third = h
            .submit(statsq, &[&stat(VIRTIO_BALLOON_S_MEMFREE, 8)], &[])
            .unwrap();
        h.run().unwrap();
        assert_eq!(h.completed(statsq).unwrap(), vec![(second, vec![])]);
        let st = handle.status();
        assert_eq!((st.stats_updates, st.counters.extra_stats_buffers), (3, 1));
        // Stopping the queues returns the held buffer (nothing stays popped).
        h.quiesce().unwrap();
        assert_eq!(h.completed(statsq).unwrap(), vec![(third, vec![])]);
        assert!(h.broken_queues().is_empty());
    }
}

/// The periodic stats request: with an interval, the worker's timer fd
/// makes it return the held buffer.
#[test]
fn stats_interval_returns_the_buffer_periodically() {
    let (mut h, handle) = balloon(
        BalloonOptions {
            stats_interval: Some(Duration::from_millis(10)),
            ..BalloonOptions::default()
        },
        RingFormat::Split,
    );
    assert_eq!(h.worker_fds().len(), 2, "doorbell and timer");
    let t = h
        .submit(
            BALLOON_STATSQ_NOMINAL,
            &[&stat(VIRTIO_BALLOON_S_AVAIL, 1)],
            &[],
        )
        .unwrap();
    h.run().unwrap();
    assert!(h.completed(BALLOON_STATSQ_NOMINAL).unwrap().is_empty());
    std::thread::sleep(Duration::from_millis(30));
    h.run().unwrap();
    assert_eq!(
        h.completed(BALLOON_STATSQ_NOMINAL).unwrap(),
        vec![(t, vec![])]
    );
    assert_eq!(handle.status().stats_updates, 1);
}

/// §5.5.4: `actual` (driver-written) is taken once its last byte is
/// written (§5.5.6.2.1 for byte-wise writers); `num_pages` and
/// `free_page_hint_cmd_id` ignore driver writes; `poison_val` is writable
/// only with VIRTIO_BALLOON_F_PAGE_POISON.
#[test]
fn config_writes() {
    let (h, handle) = balloon(plain(), RingFormat::Split);
    let d = h.device();
    handle.set_target_pages(5);
    d.write_config(0, &[0xff; 16]);
    let c = d.config();
    assert_eq!(c.len(), BALLOON_CONFIG_SIZE);
    assert_eq!(&c[0..4], &5u32.to_le_bytes(), "num_pages is the device's");
    assert_eq!(&c[4..8], &u32::MAX.to_le_bytes(), "actual taken");
    assert_eq!(&c[8..12], &VIRTIO_BALLOON_CMD_ID_DONE.to_le_bytes());
    assert_eq!(&c[12..16], &[0; 4], "poison_val needs PAGE_POISON");
    // Byte by byte, least significant first: visible only when complete.
    for (i, b) in 0x0102_0304u32.to_le_bytes().into_iter().enumerate() {
        d.write_config(BALLOON_CONFIG_ACTUAL_OFFSET as u32 + i as u32, &[b]);
        let want = if i < 3 { u32::MAX } else { 0x0102_0304 };
        assert_eq!(handle.status().actual_pages, want, "after byte {i}");
    }
    d.write_config(u32::MAX, &[1, 2, 3]);
    d.write_config(40, &[1]);
    assert_eq!(handle.status().actual_pages, 0x0102_0304);

    let (h, handle) = balloon(
        BalloonOptions {
            page_poison: true,
            ..plain()
        },
        RingFormat::Split,
    );
    h.device().write_config(
        BALLOON_CONFIG_POISON_VAL_OFFSET as u32,
        &0xaaaa_aaaau32.to_le_bytes(),
    );
    assert_eq!(handle.status().poison_val, Some(0xaaaa_aaaa));
    assert_eq!(&h.device().config()[12..16], &[0xaa; 4]);
}

/// §5.5.6: the host changes `num_pages` and the driver hears of it through
/// a configuration change notification (observed in the harness's
/// DeviceEvents); without a running driver the value waits in the
/// configuration space.
#[test]
fn target_change_sends_config_change_notification() {
    let idle = Balloon::new(BalloonOptions::default()).unwrap();
    assert!(!idle.handle().set_target_pages(77), "no driver, no event");
    assert_eq!(&idle.config()[..4], &77u32.to_le_bytes());

    let (h, handle) = balloon(BalloonOptions::default(), RingFormat::Packed);
    assert_eq!(h.events.config_changes.load(Ordering::SeqCst), 0);
    assert!(handle.set_target_pages(16384));
    assert_eq!(h.events.config_changes.load(Ordering::SeqCst), 1);
    assert_eq!(&h.device().config()[..4], &16384u32.to_le_bytes());
    let st = handle.status();
    assert_eq!((st.target_pages, st.driver_active), (16384, true));
    drop(h);
    assert!(!handle.status().driver_active, "worker gone with the host");
}

/// §5.5.6.7: reported ranges are discarded before the buffer is used
/// (device MAY modify them) — unless PAGE_POISON was negotiated with a
/// nonzero `poison_val`, when the device MUST NOT change them to another
/// value (§5.5.6.7.2); a zero poison value is what a hole reads as.
#[test]
fn free_page_reporting_discards_unless_poison_must_be_kept() {
    for (poison, poison_val, kept) in [
        (false, 0, false),
        (true, 0, false),
        (true, 0x5a5a_5a5a, true),
    ] {
        let (mut h, handle) = balloon(
            BalloonOptions {
                page_reporting: true,
                page_poison: poison,
                ..plain()
            },
            RingFormat::Split,
        );
        if poison {
            h.device().write_config(
                BALLOON_CONFIG_POISON_VAL_OFFSET as u32,
                &u32::to_le_bytes(poison_val),
            );
        }
        let q = BalloonQueues::from_bits(h.device().features())
            .reporting_vq
            .unwrap();
        assert_eq!(q, 2, "dense numbering without stats or hints");
        fill_pages(&h, BASE_PFN, 64, 0x5a);
        let base = u64::from(BASE_PFN) * PAGE;
        let t = h
            .submit_segments(
                q,
                &[],
                &[
                    Segment::new(base, 32 * PAGE as u32),
                    Segment::new(base + 40 * PAGE, 100),
                ],
            )
            .unwrap();
        h.run().unwrap();
        let done = h.completed(q).unwrap();
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].0, t);
        let fill = if kept { 0x5a } else { 0 };
        assert!(page_is(&h, BASE_PFN, fill) && page_is(&h, BASE_PFN + 31, fill));
        assert!(page_is(&h, BASE_PFN + 32, 0x5a), "outside the report");
        assert!(page_is(&h, BASE_PFN + 40, 0x5a), "partial page left alone");
        let c = handle.status().counters;
        assert_eq!(c.report_buffers, 1);
        if kept {
            assert_eq!((c.reported_bytes, c.reported_kept_bytes), (0, 32 * PAGE));
        } else {
            assert_eq!((c.reported_bytes, c.reported_kept_bytes), (32 * PAGE, 0));
        }
        assert_eq!(
            handle.status().inflated_pages,
            0,
            "reports are not the balloon"
        );
    }
}

/// §5.5.6.5: a hinting round. The host starts it (a fresh command ID in
/// the configuration space, with a notification); hints count only while
/// the driver's announced ID is the current one (§5.5.6.5.2 MUST
/// ignore others); the driver's STOP ends its round; the host's STOP
/// and DONE are written to `free_page_hint_cmd_id`; IDs are never reused.
#[test]
fn free_page_hint_round() {
    let (mut h, handle) = balloon(
        BalloonOptions {
            free_page_hint: true,
            ..plain()
        },
        RingFormat::Split,
    );
    let q = BalloonQueues::from_bits(h.device().features())
        .free_page_vq
        .unwrap();
    assert_eq!(q, 2, "free_page_vq is 2 without STATS_VQ");
    let cmd =
        |h: &Harness<Balloon>| u32::from_le_bytes(h.device().config()[8..12].try_into().unwrap());
    assert_eq!(cmd(&h), VIRTIO_BALLOON_CMD_ID_DONE, "no round yet");
    let id = handle.start_free_page_hint().unwrap();
    assert!(id >= 2);
    assert_eq!(cmd(&h), id);
    assert_eq!(h.events.config_changes.load(Ordering::SeqCst), 1);
    // A hint before the driver announced the ID is ignored.
    h.submit(q, &[], &[4096]).unwrap();
    h.submit(q, &[&id.to_le_bytes()], &[]).unwrap();
    // Hinted pages holding data: the device never modifies them.
    fill_pages(&h, BASE_PFN, 4, 0x3c);
    h.submit_segments(
        q,
        &[],
        &[Segment::new(u64::from(BASE_PFN) * PAGE, 4 * PAGE as u32)],
    )
    .unwrap();
    h.submit(q, &[], &[4096 * 2]).unwrap();
    h.submit(q, &[&VIRTIO_BALLOON_CMD_ID_STOP.to_le_bytes()], &[])
        .unwrap();
    h.submit(q, &[&[1, 2, 3]], &[]).unwrap();
    h.run().unwrap();
    assert_eq!(h.completed(q).unwrap().len(), 6, "every buffer used");
    let f = handle.status().free_page_hint;
    assert_eq!(f.hinted_bytes, 6 * 4096);
    assert_eq!(f.ignored_bytes, 4096);
    assert_eq!(f.driver_cmd_id, Some(VIRTIO_BALLOON_CMD_ID_STOP));
    assert!(f.driver_stopped);
    assert_eq!(f.malformed, 1);

    // A new round: a new ID; a hint under the old ID is ignored.
    let id2 = handle.start_free_page_hint().unwrap();
    assert_ne!(id2, id);
    h.submit(q, &[&id.to_le_bytes()], &[4096]).unwrap();
    h.submit(q, &[&id2.to_le_bytes()], &[4096 * 3]).unwrap();
    h.run().unwrap();
    let f = handle.status().free_page_hint;
    assert_eq!(
        (f.hinted_bytes, f.ignored_bytes, f.rounds),
        (3 * 4096, 2 * 4096, 2)
    );
    // The host stops: later hints are ignored.
    handle.stop_free_page_hint().unwrap();
    assert_eq!(cmd(&h), VIRTIO_BALLOON_CMD_ID_STOP);
    h.submit(q, &[], &[4096]).unwrap();
    h.run().unwrap();
    assert_eq!(handle.status().free_page_hint.ignored_bytes, 3 * 4096);
    handle.finish_free_page_hint().unwrap();
    assert_eq!(cmd(&h), VIRTIO_BALLOON_CMD_ID_DONE);
    assert_eq!(h.events.config_changes.load(Ordering::SeqCst), 4);
    for pfn in BASE_PFN..BASE_PFN + 4 {
        assert!(page_is(&h, pfn, 0x3c), "hinted page {pfn:#x} untouched");
    }
    assert!(h.broken_queues().is_empty());

    // Without the feature the handle refuses.
    let (_h, plain_handle) = balloon(plain(), RingFormat::Split);
    assert!(plain_handle.start_free_page_hint().is_err());
    assert!(plain_handle.request_stats().is_err());
}

/// VIRTIO_BALLOON_F_DEFLATE_ON_OOM (§5.5.6.1): deflates that take the
/// balloon below its target are accepted and counted; a device reset
/// forgets the balloon.
#[test]
fn deflate_below_target_is_counted_and_reset_forgets() {
    let (mut h, handle) = balloon(
        BalloonOptions {
            deflate_on_oom: true,
            ..plain()
        },
        RingFormat::Split,
    );
    assert_ne!(
        h.device().features() & (1 << VIRTIO_BALLOON_F_DEFLATE_ON_OOM),
        0
    );
    handle.set_target_pages(4);
    h.submit(BALLOON_INFLATEQ, &[&pfns(BASE_PFN..BASE_PFN + 6)], &[])
        .unwrap();
    h.run().unwrap();
    // 6 inflated, target 4: two deflates were asked for, the next are OOM.
    h.submit(BALLOON_DEFLATEQ, &[&pfns(BASE_PFN..BASE_PFN + 3)], &[])
        .unwrap();
    h.run().unwrap();
    let st = handle.status();
    assert_eq!(
        (st.inflated_pages, st.counters.unrequested_deflates),
        (3, 1)
    );
    h.device().reset();
    let st = handle.status();
    assert_eq!((st.inflated_pages, st.target_pages, st.features), (0, 4, 0));
}

/// §5.5.2: the device offers as many queues as its offered features need,
/// numbered densely in the spec's order.
#[test]
fn queue_count_follows_offered_features() {
    let n = |o: BalloonOptions| Balloon::new(o).unwrap().num_queues();
    assert_eq!(n(plain()), 2);
    assert_eq!(n(BalloonOptions::default()), 3);
    let all = BalloonOptions {
        free_page_hint: true,
        page_reporting: true,
        ..BalloonOptions::default()
    };
    assert_eq!(n(all.clone()), 5);
    let b = Balloon::new(all).unwrap();
    assert_eq!(b.worker_map(), vec![vec![0, 1, 2, 3, 4]]);
    assert_eq!(b.features() & ring_features(), ring_features());
    assert_eq!(b.device_type().0, 5);
}

/// §5.5.3.2: the device does not depend on VIRTIO_BALLOON_F_MUST_TELL_HOST
/// (it never refuses FEATURES_OK): a driver that leaves it out inflates
/// and deflates as usual, and may reuse pages before the deflate is
/// acknowledged because the device never touches balloon pages after
/// acknowledging the inflate.
#[test]
fn works_without_must_tell_host() {
    let b = Balloon::new(plain()).unwrap();
    let handle = b.handle();
    assert_ne!(
        b.features() & (1 << VIRTIO_BALLOON_F_MUST_TELL_HOST),
        0,
        "offered"
    );
    let features =
        b.features() & !(1 << VIRTIO_BALLOON_F_MUST_TELL_HOST | 1 << VIRTIO_F_RING_PACKED);
    let mut h = Harness::with_features(b, features, 64).unwrap();
    fill_pages(&h, BASE_PFN, 2, 0x99);
    h.submit(BALLOON_INFLATEQ, &[&pfns([BASE_PFN, BASE_PFN + 1])], &[])
        .unwrap();
    h.run().unwrap();
    assert!(page_is(&h, BASE_PFN, 0));
    // The driver reuses a page before even submitting the deflate.
    fill_pages(&h, BASE_PFN, 1, 0x42);
    h.submit(BALLOON_DEFLATEQ, &[&pfns([BASE_PFN])], &[])
        .unwrap();
    h.run().unwrap();
    assert!(
        page_is(&h, BASE_PFN, 0x42),
        "the device left the reused page alone"
    );
    let st = handle.status();
    assert_eq!((st.inflated_pages, st.features & 1), (1, 0));
    assert_eq!(h.completed(BALLOON_INFLATEQ).unwrap().len(), 1);
    assert_eq!(h.completed(BALLOON_DEFLATEQ).unwrap().len(), 1);
}
