//! The block driver against an in-memory block device over the MMIO
//! loopback: every request type, blocking and non-blocking, split and
//! packed rings, out-of-order completions, multiqueue, configuration
//! changes, legacy MMIO, reset.

mod common;

use common::blk_dev::{driver, BlkDev, Driver, Mode};
use common::{block, buffer, contents, legacy_block, pattern, violations, with_dev};
use ringwork_driver::blk::{
    BlkDriver, BlkError, BlkOptions, BlkRequest, BlkStatus, DiscardRange, RequestError,
};
use ringwork_driver::RingPreference;
use ringwork_queue::RingFormat;
use ringwork_spec::blk::{
    VIRTIO_BLK_F_CONFIG_WCE, VIRTIO_BLK_F_DISCARD, VIRTIO_BLK_F_MQ, VIRTIO_BLK_F_WRITE_ZEROES,
    VIRTIO_BLK_T_DISCARD, VIRTIO_BLK_T_FLUSH, VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_T_IN,
    VIRTIO_BLK_T_OUT, VIRTIO_BLK_T_WRITE_ZEROES,
};
use ringwork_spec::features::{FeatureSet, VIRTIO_F_IN_ORDER};

fn blocking_round_trip(ring: RingPreference, format: RingFormat) {
    let mem = common::memory();
    let b = block(BlkDev::new(&mem, 2048));
    let opts = BlkOptions {
        ring,
        ..BlkOptions::default()
    };
    let mut d = driver(&b, &mem, opts);
    assert_eq!(d.ring_format(), format);
    assert_eq!(d.config().capacity, 2048);
    assert_eq!(d.config().blk_size, Some(4096));
    // Larger than the bounce buffer: several requests.
    let data = pattern(100 * 1024, 7);
    d.write(10, &data).unwrap();
    assert_eq!(
        with_dev(&b, |dev| dev.disk[10 * 512..10 * 512 + data.len()].to_vec()),
        data
    );
    let mut back = vec![0u8; data.len()];
    d.read(10, &mut back).unwrap();
    assert_eq!(back, data);
    let requests = with_dev(&b, |dev| dev.log.len());
    assert_eq!(requests, 4, "two 64 KiB-bounded requests each way");
    assert_eq!(violations(&b), 0);
}

#[test]
fn blocking_read_write_split() {
    blocking_round_trip(RingPreference::Split, RingFormat::Split);
}

#[test]
fn blocking_read_write_packed() {
    blocking_round_trip(RingPreference::Packed, RingFormat::Packed);
}

#[test]
fn auto_prefers_packed_and_falls_back_to_split() {
    let mem = common::memory();
    let b = block(BlkDev::new(&mem, 64));
    assert_eq!(
        driver(&b, &mem, BlkOptions::default()).ring_format(),
        RingFormat::Packed
    );
    let b = block(BlkDev::new(&mem, 64).withdraw(&[ringwork_spec::features::VIRTIO_F_RING_PACKED]));
    assert_eq!(
        driver(&b, &mem, BlkOptions::default()).ring_format(),
        RingFormat::Split
    );
}

#[test]
fn every_request_type_non_blocking() {
    for ring in [RingPreference::Split, RingPreference::Packed] {
        let mem = common::memory();
        let dev = BlkDev::new(&mem, 256).offer(&[VIRTIO_BLK_F_DISCARD, VIRTIO_BLK_F_WRITE_ZEROES]);
        let b = block(dev);
        with_dev(&b, |dev| {
            dev.disk.fill(0x11);
            dev.edit(|c| {
                c.set_max_discard_sectors(64);
                c.set_max_discard_seg(4);
                c.set_max_write_zeroes_sectors(64);
                c.set_max_write_zeroes_seg(4);
                c.set_write_zeroes_may_unmap(1);
            });
        });
        let mut d = driver(
            &b,
            &mem,
            BlkOptions {
                ring,
                ..BlkOptions::default()
            },
        );
        let wz = d.config().write_zeroes.unwrap();
        assert!(wz.may_unmap);
        assert_eq!(d.config().discard.unwrap().max_seg, 4);

        let data = pattern(2048, 3);
        let (_wbuf, wseg) = buffer(&mem, 2048, &data);
        // Two segments for the read.
        let (r1, s1) = buffer(&mem, 1024, &[]);
        let (r2, s2) = buffer(&mem, 1024, &[]);
        let (idb, idseg) = buffer(&mem, 20, &[]);
        let (_raw, rawseg) = buffer(&mem, 512, &[]);
        let discard = [
            DiscardRange {
                sector: 100,
                sectors: 8,
            },
            DiscardRange {
                sector: 120,
                sectors: 2,
            },
        ];
        let zero = [DiscardRange {
            sector: 200,
            sectors: 4,
        }];

        d.submit(
            0,
            BlkRequest::Write {
                sector: 4,
                data: &[wseg],
            },
            1,
        )
        .unwrap();
        d.submit(0, BlkRequest::Flush, 2).unwrap();
        d.kick(0).unwrap();
        d.submit(
            0,
            BlkRequest::Read {
                sector: 4,
                data: &[s1, s2],
            },
            3,
        )
        .unwrap();
        d.submit(0, BlkRequest::GetId { buf: idseg }, 4).unwrap();
        d.submit(0, BlkRequest::Discard { ranges: &discard }, 5)
            .unwrap();
        d.submit(
            0,
            BlkRequest::WriteZeroes {
                ranges: &zero,
                unmap: true,
            },
            6,
        )
        .unwrap();
        let unknown = BlkRequest::Raw {
            req_type: 0x7777,
            sector: 0,
            out: &[],
            inp: &[],
        };
        d.submit(0, unknown, 7).unwrap();
        // Beyond capacity: only Raw gets this to the device.
        let beyond = BlkRequest::Raw {
            req_type: VIRTIO_BLK_T_IN,
            sector: 256,
            out: &[],
            inp: &[rawseg],
        };
        d.submit(0, beyond, 8).unwrap();
        d.kick(0).unwrap();

        let mut done = Vec::new();
        while let Some(c) = d.poll(0).unwrap() {
            done.push((c.token, c.status, c.written));
        }
        assert_eq!(
            done,
            vec![
                (1, BlkStatus::Ok, 0),
                (2, BlkStatus::Ok, 0),
                (3, BlkStatus::Ok, 2048),
                (4, BlkStatus::Ok, 20),
                (5, BlkStatus::Ok, 0),
                (6, BlkStatus::Ok, 0),
                (7, BlkStatus::Unsupp, 0),
                (8, BlkStatus::IoErr, 0),
            ],
            "{ring:?}"
        );
        assert_eq!(d.in_flight(0), 0);
        let mut read = contents(&r1);
        read.extend(contents(&r2));
        assert_eq!(read, data);
        assert_eq!(&contents(&idb), b"ringwork-fake-disk\0\0");

        with_dev(&b, |dev| {
            let types: Vec<u32> = dev.log.iter().map(|s| s.req_type).collect();
            assert_eq!(
                types,
                [
                    VIRTIO_BLK_T_OUT,
                    VIRTIO_BLK_T_FLUSH,
                    VIRTIO_BLK_T_IN,
                    VIRTIO_BLK_T_GET_ID,
                    VIRTIO_BLK_T_DISCARD,
                    VIRTIO_BLK_T_WRITE_ZEROES,
                    0x7777,
                    VIRTIO_BLK_T_IN
                ]
            );
            // §5.2.6.1: sector 0 for flush; header | data | status.
            assert_eq!(dev.log[1].sector, 0);
            assert_eq!((dev.log[1].out_len, dev.log[1].in_len), (0, 0));
            assert_eq!(dev.log[2].in_len, 2048);
            assert_eq!(dev.log[4].ranges, vec![(100, 8, 0), (120, 2, 0)]);
            assert_eq!(dev.log[5].ranges, vec![(200, 4, 1)], "unmap flag set");
            assert!(dev.disk[100 * 512..108 * 512].iter().all(|&x| x == 0xdd));
            assert!(dev.disk[200 * 512..204 * 512].iter().all(|&x| x == 0));
            assert_eq!(dev.disk[204 * 512], 0x11);
        });
        assert_eq!(violations(&b), 0);
    }
}

/// The device completes in reverse; every completion still carries its
/// own token and data.
#[test]
fn out_of_order_completions() {
    for ring in [RingPreference::Split, RingPreference::Packed] {
        let mem = common::memory();
        let mut dev = BlkDev::new(&mem, 64);
        for s in 0..64 {
            dev.disk[s * 512..(s + 1) * 512].fill(s as u8);
        }
        dev.mode = Mode::Reverse(4);
        let b = block(dev);
        let opts = BlkOptions {
            ring,
            withhold: FeatureSet::from_bits(&[VIRTIO_F_IN_ORDER]),
            ..BlkOptions::default()
        };
        let mut d = driver(&b, &mem, opts);
        let bufs: Vec<_> = (0..4).map(|_| buffer(&mem, 512, &[])).collect();
        for (i, (_, seg)) in bufs.iter().enumerate() {
            let sector = 10 + i as u64;
            d.submit(
                0,
                BlkRequest::Read {
                    sector,
                    data: &[*seg],
                },
                i as u32,
            )
            .unwrap();
            d.kick(0).unwrap();
        }
        let order: Vec<u32> = std::iter::from_fn(|| d.poll(0).unwrap())
            .map(|c| c.token)
            .collect();
        assert_eq!(order, vec![3, 2, 1, 0], "{ring:?}");
        for (i, (buf, _)) in bufs.iter().enumerate() {
            assert!(contents(buf).iter().all(|&x| x == 10 + i as u8));
        }
    }
}

#[test]
fn multiqueue() {
    let mem = common::memory();
    let mut dev = BlkDev::new(&mem, 128).offer(&[VIRTIO_BLK_F_MQ]);
    dev.max_sizes = vec![64; 4];
    dev.edit(|c| c.set_num_queues(4));
    let b = block(dev);
    let opts = BlkOptions {
        queues: 3,
        queue_size: 32,
        ..BlkOptions::default()
    };
    let mut d = driver(&b, &mem, opts);
    assert_eq!((d.num_queues(), d.queue_size()), (3, 32));
    assert_eq!(d.config().num_queues, Some(4));
    let bufs: Vec<_> = (0..3u8).map(|q| buffer(&mem, 512, &[q + 1; 512])).collect();
    for (q, (_, seg)) in bufs.iter().enumerate() {
        let req = BlkRequest::Write {
            sector: q as u64,
            data: &[*seg],
        };
        d.submit(q as u16, req, 100 + q as u32).unwrap();
        assert_eq!(d.in_flight(q as u16), 1);
    }
    for q in 0..3 {
        d.kick(q).unwrap();
    }
    for q in 0..3u16 {
        let c = d.poll(q).unwrap().expect("completion on its own queue");
        assert_eq!((c.token, c.status), (100 + u32::from(q), BlkStatus::Ok));
        assert!(d.poll(q).unwrap().is_none());
    }
    with_dev(&b, |dev| {
        let queues: Vec<u16> = dev.log.iter().map(|s| s.queue).collect();
        assert_eq!(queues, vec![0, 1, 2]);
        assert_eq!(&dev.disk[1024..1030], &[3; 6]);
    });
    assert!(matches!(
        d.poll(3),
        Err(BlkError::NoSuchQueue {
            queue: 3,
            queues: 3
        })
    ));
    let e = d.submit(3, BlkRequest::Flush, 9).unwrap_err();
    assert_eq!(
        (e.error, e.token),
        (
            RequestError::NoSuchQueue {
                queue: 3,
                queues: 3
            },
            9
        )
    );

    // More queues asked for than the device has: its num_queues.
    let mut dev = BlkDev::new(&mem, 8).offer(&[VIRTIO_BLK_F_MQ]);
    dev.max_sizes = vec![64; 2];
    dev.edit(|c| c.set_num_queues(2));
    let b = block(dev);
    let d = driver(
        &b,
        &mem,
        BlkOptions {
            queues: 8,
            ..BlkOptions::default()
        },
    );
    assert_eq!(d.num_queues(), 2);
    // MQ withheld: one queue.
    let mut dev = BlkDev::new(&mem, 8).offer(&[VIRTIO_BLK_F_MQ]);
    dev.max_sizes = vec![64; 2];
    dev.edit(|c| c.set_num_queues(2));
    let b = block(dev);
    let opts = BlkOptions {
        queues: 2,
        withhold: FeatureSet::from_bits(&[VIRTIO_BLK_F_MQ]),
        ..BlkOptions::default()
    };
    assert_eq!(driver(&b, &mem, opts).num_queues(), 1);
}

#[test]
fn blocking_flush_get_id_discard_write_zeroes() {
    let mem = common::memory();
    let dev = BlkDev::new(&mem, 256).offer(&[VIRTIO_BLK_F_DISCARD, VIRTIO_BLK_F_WRITE_ZEROES]);
    let b = block(dev);
    with_dev(&b, |dev| {
        dev.disk.fill(0x22);
        dev.edit(|c| {
            c.set_max_discard_sectors(8);
            c.set_max_discard_seg(1);
            c.set_max_write_zeroes_sectors(16);
            c.set_max_write_zeroes_seg(1);
        });
    });
    let mut d = driver(&b, &mem, BlkOptions::default());
    d.flush().unwrap();
    assert_eq!(&d.get_id().unwrap(), b"ringwork-fake-disk\0\0");
    // 20 sectors in ranges of at most 8.
    d.discard(10, 20).unwrap();
    d.write_zeroes(50, 20, true).unwrap();
    d.write_zeroes(80, 1, false).unwrap();
    with_dev(&b, |dev| {
        let ranges: Vec<_> = dev.log.iter().flat_map(|s| s.ranges.clone()).collect();
        assert_eq!(
            ranges,
            vec![
                (10, 8, 0),
                (18, 8, 0),
                (26, 4, 0),
                (50, 16, 1),
                (66, 4, 1),
                (80, 1, 0),
            ]
        );
        assert!(dev.disk[10 * 512..30 * 512].iter().all(|&x| x == 0xdd));
        assert_eq!(dev.disk[30 * 512], 0x22);
        assert!(dev.disk[50 * 512..70 * 512].iter().all(|&x| x == 0));
    });
    let e = d.discard(250, 10).unwrap_err();
    assert!(matches!(
        e,
        BlkError::Request(RequestError::BeyondCapacity { sector: 250, .. })
    ));
}

/// Completions of the caller's requests that arrive while a blocking
/// operation waits are kept for `poll`.
#[test]
fn completions_seen_by_blocking_calls_are_kept() {
    let mem = common::memory();
    let b = block(BlkDev::new(&mem, 64));
    let mut d = driver(&b, &mem, BlkOptions::default());
    d.submit(0, BlkRequest::Flush, 1).unwrap();
    d.submit(0, BlkRequest::Flush, 2).unwrap();
    d.kick(0).unwrap();
    d.write(0, &[5u8; 1024]).unwrap();
    assert_eq!(d.in_flight(0), 2, "completed, not yet polled");
    let tokens: Vec<u32> = std::iter::from_fn(|| d.poll(0).unwrap())
        .map(|c| c.token)
        .collect();
    assert_eq!(tokens, vec![1, 2]);
    assert_eq!(d.in_flight(0), 0);
}

#[test]
fn capacity_change_is_picked_up() {
    let mem = common::memory();
    let b = block(BlkDev::new(&mem, 64));
    let mut d = driver(&b, &mem, BlkOptions::default());
    let mut buf = [0u8; 512];
    assert!(d.read(100, &mut buf).is_err());
    with_dev(&b, |dev| dev.set_capacity(256));
    let cause = d.handle_interrupt().unwrap();
    assert!(cause.config_changed);
    assert_eq!(d.config().capacity, 256);
    d.read(100, &mut buf).unwrap();
}

#[test]
fn writeback_toggle() {
    let mem = common::memory();
    let b = block(BlkDev::new(&mem, 64).offer(&[VIRTIO_BLK_F_CONFIG_WCE]));
    let mut d = driver(&b, &mem, BlkOptions::default());
    assert!(!d.config().writeback);
    d.set_writeback(true).unwrap();
    assert!(d.config().writeback);
    assert_eq!(with_dev(&b, |dev| dev.config[32]), 1);
    // Without CONFIG_WCE: FLUSH means a writeback cache (§5.2.5.1).
    let b = block(BlkDev::new(&mem, 64));
    let mut d = driver(&b, &mem, BlkOptions::default());
    assert!(d.config().writeback);
    assert!(d.set_writeback(false).is_err());
}

#[test]
fn legacy_mmio() {
    let mem = common::memory();
    let b = legacy_block(BlkDev::new(&mem, 64));
    let mut d = driver(&b, &mem, BlkOptions::default());
    assert_eq!(d.ring_format(), RingFormat::Split);
    d.write(3, &pattern(1024, 9)).unwrap();
    let mut back = vec![0u8; 1024];
    d.read(3, &mut back).unwrap();
    assert_eq!(back, pattern(1024, 9));
    assert_eq!(violations(&b), 0);
}

#[test]
fn reset_hands_back_every_token_and_the_transport() {
    let mem = common::memory();
    let mut dev = BlkDev::new(&mem, 64);
    dev.mode = Mode::Hold;
    let b = block(dev);
    let mut d = driver(&b, &mem, BlkOptions::default());
    for t in 10..13 {
        d.submit(0, BlkRequest::Flush, t).unwrap();
    }
    d.kick(0).unwrap();
    assert_eq!(with_dev(&b, |dev| dev.held()), 3);
    let det = d.reset();
    assert!(det.reset.is_ok());
    let mut tokens = det.tokens;
    tokens.sort();
    assert_eq!(tokens, vec![10, 11, 12]);
    assert_eq!(common::status(&b), 0);
    // The transport drives a new driver.
    with_dev(&b, |dev| dev.mode = Mode::Immediate);
    let mut d: Driver<'_, '_> = BlkDriver::new(det.transport, &mem, BlkOptions::default()).unwrap();
    d.flush().unwrap();
}
