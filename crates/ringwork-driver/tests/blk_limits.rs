//! Block requests at the edges: checks before submission (capacity,
//! segments, sizes, features, ranges), read-only devices, and a full queue
//! handing the token back.

mod common;

use common::blk_dev::{driver, BlkDev, Mode};
use common::{block, buffer, with_dev};
use ringwork_driver::blk::{
    BlkError, BlkOptions, BlkRequest, BlkStatus, DiscardRange, RequestError,
};
use ringwork_driver::RingPreference;
use ringwork_queue::Segment;
use ringwork_spec::blk::{VIRTIO_BLK_F_DISCARD, VIRTIO_BLK_F_RO, VIRTIO_BLK_T_IN};
use ringwork_spec::features::{FeatureSet, VIRTIO_F_INDIRECT_DESC};

#[test]
fn read_only_device() {
    let mem = common::memory();
    let b = block(BlkDev::new(&mem, 64).offer(&[VIRTIO_BLK_F_RO, VIRTIO_BLK_F_DISCARD]));
    let mut d = driver(&b, &mem, BlkOptions::default());
    assert!(d.is_read_only());
    let (_buf, seg) = buffer(&mem, 512, &[1; 512]);
    let e = d
        .submit(
            0,
            BlkRequest::Write {
                sector: 0,
                data: &[seg],
            },
            42,
        )
        .unwrap_err();
    assert_eq!((e.error, e.token), (RequestError::ReadOnly, 42));
    let ranges = [DiscardRange {
        sector: 0,
        sectors: 1,
    }];
    let e = d
        .submit(0, BlkRequest::Discard { ranges: &ranges }, 43)
        .unwrap_err();
    assert_eq!((e.error, e.token), (RequestError::ReadOnly, 43));
    assert!(matches!(
        d.write(0, &[0u8; 512]),
        Err(BlkError::Request(RequestError::ReadOnly))
    ));
    let mut back = [0u8; 512];
    d.read(0, &mut back).unwrap();
    assert!(with_dev(&b, |dev| dev
        .log
        .iter()
        .all(|s| s.req_type == VIRTIO_BLK_T_IN)));

    // RO withheld: the driver does not know, the device refuses (§5.2.6.2).
    let b = block(BlkDev::new(&mem, 64).offer(&[VIRTIO_BLK_F_RO]));
    let opts = BlkOptions {
        withhold: FeatureSet::from_bits(&[VIRTIO_BLK_F_RO]),
        ..BlkOptions::default()
    };
    let mut d = driver(&b, &mem, opts);
    assert!(!d.is_read_only());
    assert_eq!(
        d.write(0, &[1u8; 512]),
        Err(BlkError::Status {
            status: BlkStatus::IoErr
        })
    );
    assert!(with_dev(&b, |dev| dev.disk.iter().all(|&x| x == 0)));
}

#[test]
fn full_queue_hands_the_token_back() {
    let mem = common::memory();
    // Indirect tables: one ring entry per request, so the slots run out.
    let mut dev = BlkDev::new(&mem, 64);
    dev.mode = Mode::Hold;
    let b = block(dev);
    let opts = BlkOptions {
        queue_size: 4,
        ring: RingPreference::Split,
        ..BlkOptions::default()
    };
    let mut d = driver(&b, &mem, opts);
    for t in 0..4 {
        d.submit(0, BlkRequest::Flush, t).unwrap();
    }
    let e = d.submit(0, BlkRequest::Flush, 4).unwrap_err();
    assert_eq!(
        (e.error, e.token),
        (RequestError::QueueFull { queue: 0 }, 4)
    );
    assert_eq!(d.in_flight(0), 4);
    d.kick(0).unwrap();
    assert!(d.poll(0).unwrap().is_none());
    with_dev(&b, |dev| dev.release());
    let tokens: Vec<u32> = std::iter::from_fn(|| d.poll(0).unwrap())
        .map(|c| c.token)
        .collect();
    assert_eq!(tokens.len(), 4);
    d.submit(0, BlkRequest::Flush, 5).unwrap();

    // Without indirect tables a flush takes two descriptors: a queue of 4
    // holds two.
    let mut dev = BlkDev::new(&mem, 64);
    dev.mode = Mode::Hold;
    let b = block(dev);
    let opts = BlkOptions {
        queue_size: 4,
        ring: RingPreference::Split,
        withhold: FeatureSet::from_bits(&[VIRTIO_F_INDIRECT_DESC]),
        ..BlkOptions::default()
    };
    let mut d = driver(&b, &mem, opts);
    d.submit(0, BlkRequest::Flush, 0).unwrap();
    d.submit(0, BlkRequest::Flush, 1).unwrap();
    let e = d.submit(0, BlkRequest::Flush, 2).unwrap_err();
    assert_eq!(
        (e.error, e.token),
        (RequestError::QueueFull { queue: 0 }, 2)
    );
    assert_eq!(d.in_flight(0), 2);
}

#[test]
fn requests_are_checked_before_submission() {
    let mem = common::memory();
    let mut dev = BlkDev::new(&mem, 100).withdraw(&[ringwork_spec::blk::VIRTIO_BLK_F_FLUSH]);
    dev.edit(|c| {
        c.set_seg_max(2);
        c.set_size_max(1024);
    });
    let b = block(dev);
    let mut d = driver(&b, &mem, BlkOptions::default());
    assert_eq!(d.max_segments(), 2);
    let s = |len| Segment::new(mem.base() + 0x10_0000, len);
    let (one_k, half, odd, three) = ([s(1024)], [s(512)], [s(100)], [s(512), s(512), s(512)]);
    let (two_k, empty) = ([s(2048)], [s(0), s(512)]);
    let range = [DiscardRange {
        sector: 0,
        sectors: 1,
    }];
    let cases: Vec<(BlkRequest<'_>, RequestError)> = vec![
        (
            BlkRequest::Read {
                sector: 99,
                data: &one_k,
            },
            RequestError::BeyondCapacity {
                sector: 99,
                sectors: 2,
                capacity: 100,
            },
        ),
        (
            BlkRequest::Read {
                sector: u64::MAX,
                data: &half,
            },
            RequestError::BeyondCapacity {
                sector: u64::MAX,
                sectors: 1,
                capacity: 100,
            },
        ),
        (
            BlkRequest::Read {
                sector: 0,
                data: &odd,
            },
            RequestError::NotSectorMultiple { len: 100 },
        ),
        (
            BlkRequest::Read {
                sector: 0,
                data: &[],
            },
            RequestError::NotSectorMultiple { len: 0 },
        ),
        (
            BlkRequest::Write {
                sector: 0,
                data: &three,
            },
            RequestError::TooManySegments {
                segments: 3,
                max: 2,
            },
        ),
        (
            BlkRequest::Write {
                sector: 0,
                data: &two_k,
            },
            RequestError::SegmentTooLarge {
                len: 2048,
                max: 1024,
            },
        ),
        (
            BlkRequest::Write {
                sector: 0,
                data: &empty,
            },
            RequestError::EmptySegment,
        ),
        (
            BlkRequest::GetId { buf: s(16) },
            RequestError::BadIdLength { len: 16 },
        ),
        (
            BlkRequest::Flush,
            RequestError::NotNegotiated {
                feature: "VIRTIO_BLK_F_FLUSH",
            },
        ),
        (
            BlkRequest::Discard { ranges: &range },
            RequestError::NotNegotiated {
                feature: "VIRTIO_BLK_F_DISCARD",
            },
        ),
        (
            BlkRequest::WriteZeroes {
                ranges: &[],
                unmap: false,
            },
            RequestError::NotNegotiated {
                feature: "VIRTIO_BLK_F_WRITE_ZEROES",
            },
        ),
    ];
    for (i, (req, want)) in cases.into_iter().enumerate() {
        let e = d.submit(0, req, i as u32).unwrap_err();
        assert_eq!((e.error, e.token), (want, i as u32), "case {i}");
    }
    assert_eq!(d.in_flight(0), 0);
    assert!(matches!(
        d.flush(),
        Err(BlkError::Request(RequestError::NotNegotiated { .. }))
    ));
    let mut odd = [0u8; 100];
    assert!(matches!(
        d.read(0, &mut odd),
        Err(BlkError::Request(RequestError::NotSectorMultiple { .. }))
    ));
    let mut big = vec![0u8; 101 * 512];
    assert!(matches!(
        d.read(0, &mut big),
        Err(BlkError::Request(RequestError::BeyondCapacity { .. }))
    ));
    assert!(
        with_dev(&b, |dev| dev.log.is_empty()),
        "nothing reached the device"
    );

    // Blocking reads respect seg_max and size_max: 2 x 1024 per request.
    let mut data = vec![0u8; 8 * 512];
    d.read(0, &mut data).unwrap();
    with_dev(&b, |dev| {
        assert_eq!(dev.log.len(), 2);
        assert!(dev.log.iter().all(|s| s.segments == 4 && s.in_len == 2048));
    });
}

#[test]
fn range_limits() {
    let mem = common::memory();
    let mut dev = BlkDev::new(&mem, 100).offer(&[VIRTIO_BLK_F_DISCARD]);
    dev.edit(|c| {
        c.set_max_discard_sectors(8);
        c.set_max_discard_seg(2);
    });
    let b = block(dev);
    let mut d = driver(&b, &mem, BlkOptions::default());
    let r = |sector, sectors| DiscardRange { sector, sectors };
    let three = [r(0, 1), r(2, 1), r(4, 1)];
    let e = d
        .submit(0, BlkRequest::Discard { ranges: &three }, 0)
        .unwrap_err();
    assert_eq!(e.error, RequestError::BadRangeCount { ranges: 3, max: 2 });
    let e = d
        .submit(0, BlkRequest::Discard { ranges: &[] }, 0)
        .unwrap_err();
    assert_eq!(e.error, RequestError::BadRangeCount { ranges: 0, max: 2 });
    let e = d
        .submit(0, BlkRequest::Discard { ranges: &[r(0, 9)] }, 0)
        .unwrap_err();
    assert_eq!(e.error, RequestError::BadRangeLength { sectors: 9, max: 8 });
    let e = d
        .submit(0, BlkRequest::Discard { ranges: &[r(0, 0)] }, 0)
        .unwrap_err();
    assert_eq!(e.error, RequestError::BadRangeLength { sectors: 0, max: 8 });
    let e = d
        .submit(
            0,
            BlkRequest::Discard {
                ranges: &[r(95, 8)],
            },
            0,
        )
        .unwrap_err();
    assert_eq!(
        e.error,
        RequestError::BeyondCapacity {
            sector: 95,
            sectors: 8,
            capacity: 100
        }
    );
    d.submit(
        0,
        BlkRequest::Discard {
            ranges: &[r(0, 8), r(90, 8)],
        },
        1,
    )
    .unwrap();
    d.kick(0).unwrap();
    assert_eq!(d.poll(0).unwrap().map(|c| c.status), Some(BlkStatus::Ok));
}
