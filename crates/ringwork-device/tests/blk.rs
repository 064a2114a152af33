//! The block device through the in-process fake driver, for every engine
//! (io_uring when the kernel allows it, the thread pool always) and both
//! ring formats: reads and writes (multi-segment, batched, multiqueue),
//! flush, GET_ID, discard, write zeroes, read-only mode, unsupported and
//! malformed requests, bad guest addresses, the configuration space and
//! `Blk::open`'s errors.

mod blk_support;

use blk_support::*;

#[test]
fn write_then_read_multi_segment() {
    for (engine, format) in combos() {
        let img = Image::zeroed(IMAGE);
        let mut d = Dev::new(open(&img, engine, |_| {}), format);
        let (a, b, c) = (pattern(1, 512), pattern(2, 1024), pattern(3, 512));
        assert_eq!(d.write(0, 10, &[&a, &b, &c]), VIRTIO_BLK_S_OK);
        let (s, data) = d.read(0, 10, &[1536, 512]);
        assert_eq!(s, VIRTIO_BLK_S_OK);
        assert_eq!(data, [&a[..], &b[..], &c[..]].concat());
        assert_eq!(&img.contents()[10 * 512..14 * 512], &data[..]);
        // The header split across descriptors, the data in odd pieces.
        let h = hdr(VIRTIO_BLK_T_OUT, 100);
        let d2 = pattern(9, 1024);
        let st = d.status(0, &[&h[..5], &h[5..], &d2[..100], &d2[100..]]);
        assert_eq!(st, VIRTIO_BLK_S_OK);
        let (s, data) = d.read(0, 100, &[3, 509, 512]);
        assert_eq!((s, data), (VIRTIO_BLK_S_OK, d2));
        // The last sector, and a zero-length read.
        assert_eq!(d.write(0, SECTORS - 1, &[&a]), VIRTIO_BLK_S_OK);
        assert_eq!(d.read(0, SECTORS - 1, &[512]), (VIRTIO_BLK_S_OK, a));
        assert_eq!(d.read(0, 0, &[]), (VIRTIO_BLK_S_OK, vec![]));
        d.h.quiesce().unwrap();
    }
}

#[test]
fn batches_and_long_chains() {
    for (engine, format) in combos() {
        let img = Image::zeroed(IMAGE);
        let mut d = Dev::new(open(&img, engine, |_| {}), format);
        // 48 writes completed by one process call, then 48 reads.
        let h: Vec<[u8; 16]> = (0..48).map(|i| hdr(VIRTIO_BLK_T_OUT, i * 8)).collect();
        let data: Vec<Vec<u8>> = (0..48).map(|i| pattern(i as u8, 4096)).collect();
        let tokens: Vec<Token> = (0..48)
            .map(|i| d.submit(0, &[&h[i], &data[i]], &[1]))
            .collect();
        d.h.run().unwrap();
        let done = d.h.completed(0).unwrap();
        assert_eq!(done.len(), 48);
        for (t, bytes) in &done {
            assert!(tokens.contains(t));
            assert_eq!(bytes, &[VIRTIO_BLK_S_OK]);
        }
        let h: Vec<[u8; 16]> = (0..48).map(|i| hdr(VIRTIO_BLK_T_IN, i * 8)).collect();
        let tokens: Vec<Token> = (0..48).map(|i| d.submit(0, &[&h[i]], &[4096, 1])).collect();
        d.h.run().unwrap();
        let done = d.h.completed(0).unwrap();
        assert_eq!(done.len(), 48);
        for (t, bytes) in done {
            let i = tokens.iter().position(|&x| x == t).unwrap();
            assert_eq!(bytes[4096], VIRTIO_BLK_S_OK);
            assert_eq!(&bytes[..4096], &data[i][..]);
        }
        // One write of 200 descriptors (indirect), read back in one piece.
        let big = pattern(77, 200 * 2048);
        let wh = hdr(VIRTIO_BLK_T_OUT, 1024);
        let mut out = vec![&wh[..]];
        out.extend(big.chunks(2048));
        assert_eq!(d.status(0, &out), VIRTIO_BLK_S_OK);
        let (s, back) = d.read(0, 1024, &[big.len() as u32]);
        assert_eq!(s, VIRTIO_BLK_S_OK);
        assert!(back == big);
    }
}

#[test]
fn multiqueue() {
    for (engine, format) in combos() {
        let img = Image::zeroed(IMAGE);
        let blk = open(&img, engine, |o| o.num_queues = 4);
        assert_ne!(blk.features() & (1 << VIRTIO_BLK_F_MQ), 0);
        let mut d = Dev::new(blk, format);
        let data: Vec<Vec<u8>> = (0..4).map(|q| pattern(q, 1024)).collect();
        let h: Vec<[u8; 16]> = (0..4).map(|q| hdr(VIRTIO_BLK_T_OUT, 64 * q)).collect();
        for q in 0..4u16 {
            d.submit(q, &[&h[q as usize], &data[q as usize]], &[1]);
        }
        d.h.run().unwrap();
        for q in 0..4u16 {
            assert_eq!(d.h.completed(q).unwrap()[0].1, [VIRTIO_BLK_S_OK]);
        }
        // Each queue reads what another one wrote.
        for q in 0..4u16 {
            let from = (q + 1) % 4;
            let (s, back) = d.read(q, 64 * u64::from(from), &[1024]);
            assert_eq!((s, &back), (VIRTIO_BLK_S_OK, &data[from as usize]));
        }
    }
}

#[test]
fn flush_and_get_id() {
    for (engine, format) in combos() {
        let img = Image::zeroed(IMAGE);
        let mut d = Dev::new(
            open(&img, engine, |o| o.serial = Some("disk-0".into())),
            format,
        );
        assert_eq!(d.write(0, 0, &[&pattern(5, 512)]), VIRTIO_BLK_S_OK);
        assert_eq!(d.status(0, &[&hdr(VIRTIO_BLK_T_FLUSH, 0)]), VIRTIO_BLK_S_OK);
        let r = d.one(0, &[&hdr(VIRTIO_BLK_T_GET_ID, 0)], &[20, 1]);
        assert_eq!(r.len(), 21);
        assert_eq!(&r[..20], b"disk-0\0\0\0\0\0\0\0\0\0\0\0\0\0\0");
        assert_eq!(r[20], VIRTIO_BLK_S_OK);

        // A 20-byte serial has no terminator; without one, it is derived.
        let serial = "0123456789abcdefghij";
        let mut d = Dev::new(
            open(&img, engine, |o| o.serial = Some(serial.into())),
            format,
        );
        let r = d.one(0, &[&hdr(VIRTIO_BLK_T_GET_ID, 0)], &[20, 1]);
        assert_eq!(&r[..20], serial.as_bytes());
        let blk = open(&img, engine, |_| {});
        let id = blk.id();
        assert!(id.starts_with(b"rw"), "{id:?}");
        let mut d = Dev::new(blk, format);
        let r = d.one(0, &[&hdr(VIRTIO_BLK_T_GET_ID, 0)], &[8, 12, 1]);
        assert_eq!((&r[..20], r[20]), (&id[..], VIRTIO_BLK_S_OK));
    }
}

#[test]
fn discard_and_write_zeroes() {
    for (engine, format) in combos() {
        let img = Image::with(&pattern(0x40, IMAGE));
        let mut d = Dev::new(open(&img, engine, |_| {}), format);
        let before = img.contents();
        let zeroed = |ranges: &[(u64, u32)]| {
            let mut want = before.clone();
            for &(s, n) in ranges {
                let (a, b) = (s as usize * 512, (s as usize + n as usize) * 512);
                want[a..b].fill(0);
            }
            want
        };
        // Two segments in one discard (4 KiB-aligned so holes are real).
        let st = d.ranges(VIRTIO_BLK_T_DISCARD, &[(8, 8, 0), (64, 16, 0)]);
        assert_eq!(st, VIRTIO_BLK_S_OK);
        assert_eq!(img.contents(), zeroed(&[(8, 8), (64, 16)]));
        // Write zeroes, with and without unmap, unaligned ranges too.
        let unmap = VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP;
        let list = [(128, 8, unmap), (200, 3, 0), (301, 5, unmap), (400, 1, 0)];
        assert_eq!(d.ranges(VIRTIO_BLK_T_WRITE_ZEROES, &list), VIRTIO_BLK_S_OK);
        let all = [(8, 8), (64, 16), (128, 8), (200, 3), (301, 5), (400, 1)];
        assert_eq!(img.contents(), zeroed(&all));
        // Through the device too.
        let (s, back) = d.read(0, 300, &[512 * 7]);
        assert_eq!(s, VIRTIO_BLK_S_OK);
        assert_eq!(back, zeroed(&all)[300 * 512..307 * 512]);
        assert_eq!(img.contents().len(), IMAGE, "size kept");
        // A zero-length segment is a no-op.
        assert_eq!(
            d.ranges(VIRTIO_BLK_T_WRITE_ZEROES, &[(500, 0, 0)]),
            VIRTIO_BLK_S_OK
        );
        assert_eq!(img.contents(), zeroed(&all));
    }
}

#[test]
fn discard_and_write_zeroes_rejections() {
    for (engine, format) in combos() {
        let img = Image::with(&pattern(0x41, IMAGE));
        let before = img.contents();
        let mut d = Dev::new(open(&img, engine, |_| {}), format);
        let unmap = VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP;
        // §5.2.6.2: UNSUPP for unmap on discard and for unknown flags, even
        // when another segment is fine.
        let unsupp: [(u32, &[Seg]); 3] = [
            (VIRTIO_BLK_T_DISCARD, &[(0, 8, 0), (8, 8, unmap)]),
            (VIRTIO_BLK_T_DISCARD, &[(0, 8, 4)]),
            (VIRTIO_BLK_T_WRITE_ZEROES, &[(0, 8, 0), (16, 8, 2 | unmap)]),
        ];
        for (ty, list) in unsupp {
            assert_eq!(d.ranges(ty, list), VIRTIO_BLK_S_UNSUPP, "{ty} {list:?}");
        }
        // Out of range, too many segments, no segment, a partial segment.
        let too_many: Vec<Seg> = (0..=u64::from(MAX_DISCARD_SEG))
            .map(|i| (i, 1, 0))
            .collect();
        for ty in [VIRTIO_BLK_T_DISCARD, VIRTIO_BLK_T_WRITE_ZEROES] {
            assert_eq!(d.ranges(ty, &[(SECTORS - 4, 8, 0)]), VIRTIO_BLK_S_IOERR);
            assert_eq!(d.ranges(ty, &[(u64::MAX / 256, 8, 0)]), VIRTIO_BLK_S_IOERR);
            assert_eq!(d.ranges(ty, &too_many), VIRTIO_BLK_S_IOERR);
            assert_eq!(d.status(0, &[&hdr(ty, 0)]), VIRTIO_BLK_S_IOERR);
            let partial = segments(&[(0, 8, 0)]);
            assert_eq!(
                d.status(0, &[&hdr(ty, 0), &partial[..12]]),
                VIRTIO_BLK_S_IOERR
            );
        }
        assert!(img.contents() == before, "rejected requests changed data");

        // Not negotiated: UNSUPP.
        let blk = open(&img, engine, |_| {});
        let mut features = blk.features();
        features &= !(1 << VIRTIO_BLK_F_DISCARD) & !(1 << VIRTIO_BLK_F_WRITE_ZEROES);
        if format == RingFormat::Split {
            features &= !(1 << ringwork_spec::features::VIRTIO_F_RING_PACKED);
        }
        let mut d = Dev {
            h: Harness::with_features(blk, features, 256).unwrap(),
        };
        for ty in [VIRTIO_BLK_T_DISCARD, VIRTIO_BLK_T_WRITE_ZEROES] {
            assert_eq!(d.ranges(ty, &[(0, 8, 0)]), VIRTIO_BLK_S_UNSUPP);
        }
        assert!(img.contents() == before);
    }
}

#[test]
fn read_only() {
    for (engine, format) in combos() {
        let img = Image::with(&pattern(0x42, IMAGE));
        let before = img.contents();
        let blk = open(&img, engine, |o| o.readonly = true);
        let f = blk.features();
        assert_ne!(f & (1 << VIRTIO_BLK_F_RO), 0);
        assert_eq!(f & (1 << VIRTIO_BLK_F_DISCARD), 0);
        assert_eq!(f & (1 << VIRTIO_BLK_F_WRITE_ZEROES), 0);
        let mut d = Dev::new(blk, format);
        // §5.2.6.2: IOERR, and no data written.
        assert_eq!(d.write(0, 0, &[&[0u8; 512]]), VIRTIO_BLK_S_IOERR);
        for ty in [VIRTIO_BLK_T_DISCARD, VIRTIO_BLK_T_WRITE_ZEROES] {
            assert_eq!(d.ranges(ty, &[(0, 8, 0)]), VIRTIO_BLK_S_IOERR);
        }
        assert_eq!(d.status(0, &[&hdr(VIRTIO_BLK_T_FLUSH, 0)]), VIRTIO_BLK_S_OK);
        let (s, back) = d.read(0, 0, &[1024]);
        assert_eq!((s, &back[..]), (VIRTIO_BLK_S_OK, &before[..1024]));
        assert!(img.contents() == before);
    }
}

#[test]
fn unsupported_types() {
    for (engine, format) in combos() {
        let img = Image::zeroed(IMAGE);
        let mut d = Dev::new(open(&img, engine, |_| {}), format);
        for ty in [
            VIRTIO_BLK_T_GET_LIFETIME,
            VIRTIO_BLK_T_SECURE_ERASE,
            VIRTIO_BLK_T_ZONE_APPEND,
            VIRTIO_BLK_T_ZONE_REPORT,
            VIRTIO_BLK_T_SCSI_CMD,
            6,
            0x8000_0001,
            u32::MAX,
        ] {
            assert_eq!(
                d.status(0, &[&hdr(ty, 0)]),
                VIRTIO_BLK_S_UNSUPP,
                "type {ty}"
            );
            // Writable space the device has nothing for is zeroed.
            let r = d.one(0, &[&hdr(ty, 0)], &[6, 1]);
            assert_eq!(r, [0, 0, 0, 0, 0, 0, VIRTIO_BLK_S_UNSUPP], "type {ty}");
        }
    }
}

#[test]
fn out_of_range_and_bad_lengths() {
    for (engine, format) in combos() {
        let img = Image::with(&pattern(0x43, IMAGE));
        let before = img.contents();
        let mut d = Dev::new(open(&img, engine, |_| {}), format);
        // A failed read still writes (zeroes) the whole used length.
        assert_eq!(
            d.read(0, SECTORS, &[512]),
            (VIRTIO_BLK_S_IOERR, vec![0; 512])
        );
        assert_eq!(d.read(0, SECTORS - 1, &[1024]).0, VIRTIO_BLK_S_IOERR);
        assert_eq!(d.read(0, u64::MAX, &[512]).0, VIRTIO_BLK_S_IOERR);
        assert_eq!(d.read(0, u64::MAX / 512, &[512]).0, VIRTIO_BLK_S_IOERR);
        assert_eq!(d.read(0, 0, &[100]), (VIRTIO_BLK_S_IOERR, vec![0; 100]));
        assert_eq!(d.read(0, 0, &[512, 100]).0, VIRTIO_BLK_S_IOERR);
        assert_eq!(d.write(0, SECTORS, &[&[1; 512]]), VIRTIO_BLK_S_IOERR);
        assert_eq!(d.write(0, SECTORS - 1, &[&[1; 1024]]), VIRTIO_BLK_S_IOERR);
        assert_eq!(d.write(0, u64::MAX, &[&[1; 512]]), VIRTIO_BLK_S_IOERR);
        assert_eq!(d.write(0, 0, &[&[1; 100]]), VIRTIO_BLK_S_IOERR);
        assert!(img.contents() == before);
    }
}

#[test]
fn malformed_requests_do_not_hang() {
    for (engine, format) in combos() {
        let img = Image::zeroed(IMAGE);
        let mut d = Dev::new(open(&img, engine, |_| {}), format);
        // Truncated header: IOERR, writable data zeroed.
        let h = hdr(VIRTIO_BLK_T_IN, 0);
        assert_eq!(d.status(0, &[&h[..8]]), VIRTIO_BLK_S_IOERR);
        let r = d.one(0, &[&h[..15]], &[512, 1]);
        assert_eq!((&r[..512], r[512]), (&[0u8; 512][..], VIRTIO_BLK_S_IOERR));
        // No readable part at all.
        assert_eq!(d.one(0, &[], &[1]), [VIRTIO_BLK_S_IOERR]);
        // No writable part: no status byte to write; used length 0.
        assert_eq!(d.one(0, &[&hdr(VIRTIO_BLK_T_OUT, 0), &[7; 512]], &[]), []);
        assert_eq!(d.one(0, &[&h], &[]), []);
        assert!(
            img.contents().iter().all(|&b| b == 0),
            "status-less write ran"
        );
        // The status in a descriptor shared with read data.
        let r = d.one(0, &[&h], &[513]);
        assert_eq!((r.len(), r[512]), (513, VIRTIO_BLK_S_OK));
        // Still serving.
        assert_eq!(d.write(0, 1, &[&[9; 512]]), VIRTIO_BLK_S_OK);
        assert_eq!(d.read(0, 1, &[512]), (VIRTIO_BLK_S_OK, vec![9; 512]));
        assert!(d.h.broken_queues().is_empty());
    }
}

#[test]
fn segments_outside_guest_memory_break_the_queue() {
    for (engine, format) in combos() {
        let img = Image::zeroed(IMAGE);
        let outside = [
            Segment::new(MEM_SIZE as u64 + 4096, 512),
            Segment::new(MEM_SIZE as u64 - 256, 512),
            Segment::new(u64::MAX - 100, 512),
        ];
        for (i, bad) in outside.into_iter().enumerate() {
            for write in [true, false] {
                let mut d = Dev::new(open(&img, engine, |_| {}), format);
                let ty = if write {
                    VIRTIO_BLK_T_OUT
                } else {
                    VIRTIO_BLK_T_IN
                };
                let h = d.h.put(&hdr(ty, 0));
                let status = d.h.put(&[FILL]);
                let t = if write {
                    d.h.submit_segments(0, &[h, bad], &[status])
                } else {
                    d.h.submit_segments(0, &[h], &[bad, status])
                };
                t.unwrap();
                let err = d.h.run().unwrap_err();
                assert!(err.to_string().contains("queue 0"), "{i}: {err}");
                assert_eq!(d.h.broken_queues(), [0]);
                assert!(d.h.completed(0).unwrap().is_empty());
            }
        }
        assert!(img.contents().iter().all(|&b| b == 0));
    }
}

#[test]
fn write_through_without_flush() {
    for (engine, format) in combos() {
        let img = Image::zeroed(IMAGE);
        let blk = open(&img, engine, |_| {});
        let mut features = blk.features() & !(1 << VIRTIO_BLK_F_FLUSH);
        if format == RingFormat::Split {
            features &= !(1 << ringwork_spec::features::VIRTIO_F_RING_PACKED);
        }
        let mut d = Dev {
            h: Harness::with_features(blk, features, 256).unwrap(),
        };
        let data = pattern(3, 2048);
        assert_eq!(d.write(0, 4, &[&data]), VIRTIO_BLK_S_OK);
        let list = [(20, 4, VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP)];
        assert_eq!(d.ranges(VIRTIO_BLK_T_WRITE_ZEROES, &list), VIRTIO_BLK_S_OK);
        assert_eq!(d.read(0, 4, &[2048]), (VIRTIO_BLK_S_OK, data));
    }
}

#[test]
fn config_space() {
    let img = Image::zeroed(IMAGE);
    for &engine in engines() {
        let blk = open(&img, engine, |o| {
            o.num_queues = 3;
            o.queue_size = 128;
            o.block_size = 1024;
            o.physical_block_size = 4096;
        });
        assert_eq!(blk.max_queue_size(), 128);
        assert_eq!(blk.num_queues(), 3);
        assert_eq!(blk.capacity(), SECTORS);
        let bytes = blk.config();
        assert_eq!(bytes.len(), 96);
        let c = BlkConfig::new_checked(&bytes[..]).unwrap();
        assert_eq!(c.capacity(), SECTORS);
        assert_eq!(c.size_max(), SIZE_MAX);
        assert_eq!(c.seg_max(), 126);
        assert_eq!(c.blk_size(), 1024);
        assert_eq!(c.topology_physical_block_exp(), 2);
        assert_eq!(c.topology_alignment_offset(), 0);
        assert_eq!(c.topology_min_io_size(), 1);
        assert_eq!(c.num_queues(), 3);
        assert_eq!(c.max_discard_seg(), MAX_DISCARD_SEG);
        assert!(c.max_discard_sectors() > 0);
        assert_eq!(c.discard_sector_alignment(), 8);
        assert_eq!(c.max_write_zeroes_seg(), MAX_DISCARD_SEG);
        assert!(c.max_write_zeroes_sectors() > 0);
        assert_eq!(c.write_zeroes_may_unmap(), 1);
        assert_eq!((c.writeback(), c.unused0(), c.unused1()), (0, 0, [0; 3]));
        assert!(bytes[60..].iter().all(|&b| b == 0));

        let c = open(&img, engine, |o| o.readonly = true).config();
        let c = BlkConfig::new_checked(&c[..]).unwrap();
        assert_eq!(
            (c.capacity(), c.seg_max(), c.num_queues()),
            (SECTORS, 254, 1)
        );
        assert_eq!((c.max_discard_sectors(), c.max_write_zeroes_seg()), (0, 0));
    }
    let empty = Image::zeroed(0);
    let blk = open(&empty, Engine::ThreadPool, |_| {});
    assert_eq!(blk.capacity(), 0);
    let mut d = Dev::new(blk, RingFormat::Split);
    assert_eq!(d.read(0, 0, &[512]).0, VIRTIO_BLK_S_IOERR);
}

#[test]
fn open_errors() {
    let err = |o: BlkOptions| Blk::open(o).unwrap_err();
    let dir = std::env::temp_dir();
    let missing = dir.join("ringwork-blk-test-does-not-exist.img");
    let e = err(BlkOptions::new(&missing));
    assert!(matches!(e, BlkError::NotFound { .. }), "{e}");
    assert!(e.to_string().contains("no such file"), "{e}");
    let e = err(BlkOptions::new(&dir));
    assert!(
        matches!(
            e,
            BlkError::NotAFileOrBlockDevice {
                kind: "directory",
                ..
            }
        ),
        "{e}"
    );
    let e = err(BlkOptions::new("/dev/null"));
    assert!(
        matches!(
            e,
            BlkError::NotAFileOrBlockDevice {
                kind: "character device",
                ..
            }
        ),
        "{e}"
    );
    let odd = Image::zeroed(1000);
    let e = err(BlkOptions::new(&odd.path));
    assert!(
        matches!(e, BlkError::UnalignedSize { size: 1000, .. }),
        "{e}"
    );
    assert!(e.to_string().contains("not a multiple of 512"), "{e}");
    let e = err(BlkOptions::default());
    assert!(
        matches!(
            e,
            BlkError::InvalidOption {
                option: "image",
                ..
            }
        ),
        "{e}"
    );

    let img = Image::zeroed(4096);
    type Tweak = fn(&mut BlkOptions);
    let bad: [(&str, Tweak); 7] = [
        ("num_queues", |o| o.num_queues = 0),
        ("queue_size", |o| o.queue_size = 100),
        ("queue_size", |o| o.queue_size = 2),
        ("block_size", |o| o.block_size = 1000),
        ("physical_block_size", |o| o.physical_block_size = 256),
        ("serial", |o| o.serial = Some("x".repeat(21))),
        ("serial", |o| o.serial = Some("tab\there".into())),
    ];
    for (option, tweak) in bad {
        let mut o = BlkOptions::new(&img.path);
        tweak(&mut o);
        match err(o) {
            BlkError::InvalidOption { option: got, .. } => assert_eq!(got, option),
            e => panic!("{option}: {e}"),
        }
    }

    // Permission denied for read-write (unless we are root).
    use std::os::unix::fs::PermissionsExt;
    let ro = Image::zeroed(4096);
    std::fs::set_permissions(&ro.path, std::fs::Permissions::from_mode(0o444)).unwrap();
    let writable = std::fs::OpenOptions::new()
        .write(true)
        .open(&ro.path)
        .is_ok();
    if !writable {
        let e = err(BlkOptions::new(&ro.path));
        assert!(
            matches!(
                e,
                BlkError::PermissionDenied {
                    readonly: false,
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("read-write"), "{e}");
    }
    let ok = Blk::open(BlkOptions {
        readonly: true,
        ..BlkOptions::new(&ro.path)
    });
    assert!(ok.is_ok());

    // Auto resolves to a concrete engine.
    let auto = Blk::open(BlkOptions::new(&img.path)).unwrap();
    assert!(engines().contains(&auto.engine()));
}

#[test]
fn null_engine_reads_zeroes_and_drops_writes() {
    for format in FORMATS {
        let data = pattern(5, IMAGE);
        let img = Image::with(&data);
        let blk = open(&img, Engine::Null, |o| o.num_queues = 2);
        assert_eq!(blk.capacity(), SECTORS);
        let mut d = Dev::new(blk, format);
        // Reads return zeroes although the image holds data (the writable
        // buffers start out as FILL, so the device wrote every byte).
        let (s, got) = d.read(0, 0, &[512, 1536]);
        assert_eq!((s, got), (VIRTIO_BLK_S_OK, vec![0; 2048]));
        let (s, got) = d.read(1, SECTORS - 1, &[3, 509]);
        assert_eq!((s, got), (VIRTIO_BLK_S_OK, vec![0; 512]));
        // Writes, flush, discard and write zeroes succeed without
        // touching the image.
        let w = pattern(9, 1024);
        assert_eq!(d.write(0, 4, &[&w]), VIRTIO_BLK_S_OK);
        assert_eq!(d.write(1, 8, &[&w[..512], &w[512..]]), VIRTIO_BLK_S_OK);
        assert_eq!(d.status(0, &[&hdr(VIRTIO_BLK_T_FLUSH, 0)]), VIRTIO_BLK_S_OK);
        assert_eq!(
            d.ranges(VIRTIO_BLK_T_DISCARD, &[(0, 8, 0)]),
            VIRTIO_BLK_S_OK
        );
        let unmap = VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP;
        assert_eq!(
            d.ranges(VIRTIO_BLK_T_WRITE_ZEROES, &[(16, 8, 0), (32, 8, unmap)]),
            VIRTIO_BLK_S_OK
        );
        // Still zeroes where we wrote; out-of-range requests still fail.
        assert_eq!(d.read(0, 4, &[1024]), (VIRTIO_BLK_S_OK, vec![0; 1024]));
        assert_eq!(d.read(0, SECTORS, &[512]).0, VIRTIO_BLK_S_IOERR);
        d.h.quiesce().unwrap();
        assert!(img.contents() == data, "the null engine wrote to the image");
    }
}
