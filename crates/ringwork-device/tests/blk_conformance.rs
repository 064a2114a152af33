//! Block device conformance checks (VIRTIO 1.4 §5.2): the features and
//! requests ringwork never offers or serves, and write stability.

mod blk_support;

use blk_support::*;

/// VIRTIO 1.4 §5.2.5.2 and §5.2.6.2: exactly these features are offered.
/// FLUSH always (it MUST be offered with CONFIG_WCE); CONFIG_WCE, LIFETIME,
/// SECURE_ERASE and ZONED never, so the requirements that apply only with
/// them are vacuous; the configuration fields they would use read 0.
#[test]
fn features_offered_and_never_offered() {
    let img = Image::zeroed(IMAGE);
    let bit = |b: u32| 1u64 << b;
    let always = ringwork_device::ring_features()
        | bit(VIRTIO_BLK_F_SIZE_MAX)
        | bit(VIRTIO_BLK_F_SEG_MAX)
        | bit(VIRTIO_BLK_F_BLK_SIZE)
        | bit(VIRTIO_BLK_F_FLUSH)
        | bit(VIRTIO_BLK_F_TOPOLOGY);
    for (readonly, num_queues) in [(false, 1), (false, 4), (true, 1), (true, 2)] {
        let blk = open(&img, Engine::ThreadPool, |o| {
            o.readonly = readonly;
            o.num_queues = num_queues;
        });
        let mut want = always;
        if num_queues > 1 {
            want |= bit(VIRTIO_BLK_F_MQ);
        }
        if readonly {
            want |= bit(VIRTIO_BLK_F_RO);
        } else {
            want |= bit(VIRTIO_BLK_F_DISCARD) | bit(VIRTIO_BLK_F_WRITE_ZEROES);
        }
        let f = blk.features();
        assert_eq!(f, want, "readonly {readonly}, {num_queues} queues: {f:#x}");
        for never in [
            VIRTIO_BLK_F_CONFIG_WCE,
            VIRTIO_BLK_F_LIFETIME,
            VIRTIO_BLK_F_SECURE_ERASE,
            VIRTIO_BLK_F_ZONED,
            VIRTIO_BLK_F_GEOMETRY,
            VIRTIO_BLK_F_BARRIER,
            VIRTIO_BLK_F_SCSI,
        ] {
            assert_eq!(f & bit(never), 0, "feature {never} offered");
        }
        let bytes = blk.config();
        let c = BlkConfig::new_checked(&bytes[..]).unwrap();
        assert_eq!(c.writeback(), 0);
        assert_eq!(c.zoned_model(), VIRTIO_BLK_Z_NONE);
        assert_eq!(
            (
                c.max_secure_erase_sectors(),
                c.secure_erase_sector_alignment()
            ),
            (0, 0)
        );
        assert_eq!(
            (c.zoned_zone_sectors(), c.zoned_max_append_sectors()),
            (0, 0)
        );
        assert_eq!(
            (c.unused0(), c.unused1(), c.zoned_unused2()),
            (0, [0; 3], [0; 3])
        );
    }
}

/// VIRTIO 1.4 §5.2.6.2: without VIRTIO_BLK_F_ZONED every zone request is
/// rejected with VIRTIO_BLK_S_UNSUPP; secure erase (not offered) is
/// UNSUPP too, with or without unknown flags. Nothing is written.
#[test]
fn zone_and_secure_erase_requests_unsupported() {
    for (engine, format) in combos() {
        let img = Image::with(&pattern(0x44, IMAGE));
        let before = img.contents();
        let mut d = Dev::new(open(&img, engine, |_| {}), format);
        let data = pattern(0x45, 512);
        for ty in [
            VIRTIO_BLK_T_ZONE_OPEN,
            VIRTIO_BLK_T_ZONE_CLOSE,
            VIRTIO_BLK_T_ZONE_FINISH,
            VIRTIO_BLK_T_ZONE_RESET,
            VIRTIO_BLK_T_ZONE_RESET_ALL,
        ] {
            assert_eq!(
                d.status(0, &[&hdr(ty, 0)]),
                VIRTIO_BLK_S_UNSUPP,
                "type {ty}"
            );
            assert_eq!(
                d.status(0, &[&hdr(ty, 8)]),
                VIRTIO_BLK_S_UNSUPP,
                "type {ty}"
            );
        }
        // ZONE_APPEND: data, then append_sector (8 bytes) and the status.
        let r = d.one(0, &[&hdr(VIRTIO_BLK_T_ZONE_APPEND, 0), &data], &[9]);
        assert_eq!(r, [0, 0, 0, 0, 0, 0, 0, 0, VIRTIO_BLK_S_UNSUPP]);
        // ZONE_REPORT: a report header and two descriptors' room.
        let r = d.one(0, &[&hdr(VIRTIO_BLK_T_ZONE_REPORT, 0)], &[64 + 2 * 64, 1]);
        assert_eq!(r.len(), 193);
        assert!(r[..192].iter().all(|&b| b == 0));
        assert_eq!(r[192], VIRTIO_BLK_S_UNSUPP);
        // Secure erase, with flags 0, unmap and an unknown flag.
        let unmap = VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP;
        for list in [[(0, 8, 0)], [(0, 8, unmap)], [(0, 8, 4)]] {
            let st = d.ranges(VIRTIO_BLK_T_SECURE_ERASE, &list);
            assert_eq!(st, VIRTIO_BLK_S_UNSUPP, "{list:?}");
        }
        assert!(img.contents() == before, "a rejected request changed data");
        assert!(d.h.broken_queues().is_empty());
    }
}

/// `cachestat(2)` (Linux 6.5): the dirty and under-writeback page counts
/// of `file`'s page cache, or `None` when the kernel lacks it.
#[allow(unsafe_code)]
fn dirty_pages(file: &std::fs::File) -> Option<(u64, u64)> {
    use std::os::fd::AsRawFd;
    #[repr(C)]
    struct Range {
        off: u64,
        len: u64,
    }
    #[repr(C)]
    #[derive(Default)]
    struct Stat {
        nr_cache: u64,
        nr_dirty: u64,
        nr_writeback: u64,
        nr_evicted: u64,
        nr_recently_evicted: u64,
    }
    // The same number on every architecture (the unified syscall table).
    const SYS_CACHESTAT: libc::c_long = 451;
    // len 0: to the end of the file.
    let range = Range { off: 0, len: 0 };
    let mut st = Stat::default();
    // SAFETY: cachestat reads one `struct cachestat_range` and writes one
    // `struct cachestat` (both repr(C) locals of the kernel's layout); the
    // fd is open for the duration of the call.
    let r = unsafe {
        libc::syscall(
            SYS_CACHESTAT,
            file.as_raw_fd(),
            &range as *const Range,
            &mut st as *mut Stat,
            0u32,
        )
    };
    (r == 0).then_some((st.nr_dirty, st.nr_writeback))
}

/// Whether `dirty_pages` can tell written pages from stable ones here: a
/// fresh file's pages are dirty, and clean after `fdatasync`. (Not on
/// tmpfs, whose pages never become clean, nor before Linux 6.5.)
fn stability_observable() -> bool {
    let probe = Image::with(&pattern(0x46, 16384));
    let f = std::fs::File::open(&probe.path).unwrap();
    let Some((dirty, _)) = dirty_pages(&f) else {
        panic!(
            "cachestat(2) is unavailable (Linux 6.5 or later is needed to observe write stability)"
        );
    };
    f.sync_data().unwrap();
    let after = dirty_pages(&f).unwrap();
    if dirty == 0 || after != (0, 0) {
        panic!(
            "{} does not show dirty pages then clean ones after fdatasync \
             ({dirty} dirty, then {after:?}): put TMPDIR on a disk file system",
            probe.path.display()
        );
    }
    true
}

/// VIRTIO 1.4 §5.2.6.2: a device backed by persistent storage commits
/// stable writes before reporting completion: of the write itself when
/// FLUSH is offered but not negotiated (case 1), of the flush that
/// follows it otherwise (case 3). Observed as the image's page cache
/// having no dirty or under-writeback page at that point (`cachestat`).
#[test]
fn completed_writes_are_stable() {
    assert!(stability_observable());
    for (engine, format) in combos() {
        for negotiate_flush in [false, true] {
            let img = Image::zeroed(IMAGE);
            let file = std::fs::File::open(&img.path).unwrap();
            file.sync_data().unwrap();
            assert_eq!(dirty_pages(&file), Some((0, 0)));
            let blk = open(&img, engine, |_| {});
            let mut features = blk.features();
            if !negotiate_flush {
                features &= !(1 << VIRTIO_BLK_F_FLUSH);
            }
            if format == RingFormat::Split {
                features &= !(1 << ringwork_spec::features::VIRTIO_F_RING_PACKED);
            }
            let mut d = Dev {
                h: Harness::with_features(blk, features, 256).unwrap(),
            };
            let what = format!("{engine:?} {format:?} FLUSH negotiated: {negotiate_flush}");
            assert_eq!(d.write(0, 8, &[&pattern(7, 8192)]), VIRTIO_BLK_S_OK);
            let after_write = dirty_pages(&file).unwrap();
            if !negotiate_flush {
                // Case 1: stable when its completion is reported.
                assert_eq!(after_write, (0, 0), "{what}: write completed unstable");
                continue;
            }
            if after_write.0 == 0 {
                eprintln!("{what}: the kernel wrote the pages back on its own");
            }
            // Case 3: stable when the flush after it completes.
            assert_eq!(d.status(0, &[&hdr(VIRTIO_BLK_T_FLUSH, 0)]), VIRTIO_BLK_S_OK);
            assert_eq!(
                dirty_pages(&file),
                Some((0, 0)),
                "{what}: flush completed, data unstable"
            );
            assert_eq!(&img.contents()[8 * 512..24 * 512], &pattern(7, 8192)[..]);
        }
    }
}
