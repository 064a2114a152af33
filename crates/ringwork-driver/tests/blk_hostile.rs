//! The block driver against a hostile (or broken) device: configuration
//! values it cannot work with, missing queues, used lengths that do not
//! cover the status byte or exceed the buffer, a device that never
//! completes. Each gives an error, never a panic, and tokens come back.

mod common;

use common::blk_dev::{BlkDev, Mode};
use common::rng_dev::RngDev;
use common::{block, mmio, status, with_dev, Block, Mmio};
use ringwork_driver::blk::{BlkDriver, BlkError, BlkOptions, BlkRequest, BlkStatus, RequestError};
use ringwork_driver::{RingPreference, SetupError};
use ringwork_queue::test_utils::TestMemory;
use ringwork_queue::UsedError;
use ringwork_spec::blk::{BlkConfig, VIRTIO_BLK_F_MQ};
use ringwork_spec::features::VIRTIO_F_RING_PACKED;
use ringwork_spec::status::VIRTIO_CONFIG_S_FAILED;

type Driver<'b, 'm> = BlkDriver<Mmio<'b, BlkDev<'m>>, &'m TestMemory, u32>;

fn try_driver<'b, 'm>(
    b: &'b Block<BlkDev<'m>>,
    mem: &'m TestMemory,
    opts: BlkOptions,
) -> Result<Driver<'b, 'm>, BlkError> {
    BlkDriver::new(mmio(b), mem, opts)
}

fn setup_error(dev: BlkDev<'_>, mem: &TestMemory, opts: BlkOptions) -> SetupError {
    let b = block(dev);
    let e = try_driver(&b, mem, opts).expect_err("setup must fail");
    assert_ne!(
        status(&b) & VIRTIO_CONFIG_S_FAILED,
        0,
        "FAILED set after {e:?}"
    );
    match e {
        BlkError::Setup(s) => s,
        other => panic!("not a setup error: {other:?}"),
    }
}

#[test]
fn unusable_configuration_values_fail_setup() {
    let mem = common::memory();
    type Edit = fn(&mut BlkConfig<&mut [u8]>);
    let cases: [(&str, Edit); 4] = [
        ("seg_max", |c| c.set_seg_max(0)),
        ("blk_size", |c| c.set_blk_size(1000)),
        ("blk_size", |c| c.set_blk_size(0)),
        ("num_queues", |c| c.set_num_queues(0)),
    ];
    for (field, edit) in cases {
        let mut dev = BlkDev::new(&mem, 64).offer(&[VIRTIO_BLK_F_MQ]);
        dev.edit(edit);
        match setup_error(dev, &mem, BlkOptions::default()) {
            SetupError::BadConfig { field: f, .. } => assert_eq!(f, field),
            other => panic!("{field}: {other:?}"),
        }
    }
}

#[test]
fn missing_or_tiny_queues_fail_setup() {
    let mem = common::memory();
    // num_queues says 4, only 2 exist.
    let mut dev = BlkDev::new(&mem, 64).offer(&[VIRTIO_BLK_F_MQ]);
    dev.max_sizes = vec![64, 64];
    dev.edit(|c| c.set_num_queues(4));
    let opts = BlkOptions {
        queues: 4,
        ..BlkOptions::default()
    };
    assert_eq!(
        setup_error(dev, &mem, opts),
        SetupError::MissingQueue { queue: 2 }
    );
    // No queue at all.
    let mut dev = BlkDev::new(&mem, 64);
    dev.max_sizes = vec![0];
    assert_eq!(
        setup_error(dev, &mem, BlkOptions::default()),
        SetupError::MissingQueue { queue: 0 }
    );
    // Too small for header, data and status.
    let mut dev = BlkDev::new(&mem, 64);
    dev.max_sizes = vec![2];
    assert!(matches!(
        setup_error(dev, &mem, BlkOptions::default()),
        SetupError::BadConfig {
            field: "queue_size_max",
            value: 2,
            ..
        }
    ));
}

/// Huge values are clamped to what the caller asked for: no allocation
/// grows with them.
#[test]
fn huge_values_are_clamped() {
    let mem = common::memory();
    let mut dev = BlkDev::new(&mem, 64).offer(&[VIRTIO_BLK_F_MQ]);
    dev.max_sizes = vec![u16::MAX; 2];
    dev.edit(|c| {
        c.set_capacity(u64::MAX);
        c.set_num_queues(u16::MAX);
        c.set_seg_max(u32::MAX);
        c.set_size_max(u32::MAX);
    });
    let b = block(dev);
    let before = mem.allocated();
    let opts = BlkOptions {
        queues: 2,
        queue_size: 64,
        ..BlkOptions::default()
    };
    let d = try_driver(&b, &mem, opts).unwrap();
    assert_eq!((d.num_queues(), d.queue_size()), (2, 64));
    assert_eq!(d.max_segments(), 62);
    assert!(
        mem.allocated() - before < 512 * 1024,
        "{} bytes",
        mem.allocated() - before
    );
    // Capacity near u64::MAX: range checks do not overflow.
    let mut d = d;
    let e = d
        .submit(
            0,
            BlkRequest::Read {
                sector: u64::MAX - 1,
                data: &[ringwork_queue::Segment::new(mem.base(), 1024)],
            },
            1,
        )
        .unwrap_err();
    assert!(matches!(e.error, RequestError::BeyondCapacity { .. }));
}

#[test]
fn used_length_without_status_breaks_the_queue() {
    let mem = common::memory();
    let mut dev = BlkDev::new(&mem, 64);
    dev.used_len = Some(0);
    let b = block(dev);
    let mut d = try_driver(
        &b,
        &mem,
        BlkOptions {
            ring: RingPreference::Split,
            ..BlkOptions::default()
        },
    )
    .unwrap();
    d.submit(0, BlkRequest::Flush, 7).unwrap();
    d.kick(0).unwrap();
    assert_eq!(d.poll(0), Err(BlkError::NoStatus { queue: 0, len: 0 }));
    let e = d.submit(0, BlkRequest::Flush, 8).unwrap_err();
    assert_eq!((e.error, e.token), (RequestError::Broken { queue: 0 }, 8));
    assert!(d.poll(0).is_err());
    let det = d.reset();
    assert_eq!(det.tokens, vec![7], "the token is not lost");
}

#[test]
fn used_length_beyond_the_buffer_breaks_the_queue() {
    for ring in [RingPreference::Split, RingPreference::Packed] {
        let mem = common::memory();
        let mut dev = BlkDev::new(&mem, 64);
        dev.used_len = Some(1 << 20);
        let b = block(dev);
        let mut d = try_driver(
            &b,
            &mem,
            BlkOptions {
                ring,
                ..BlkOptions::default()
            },
        )
        .unwrap();
        let seg = ringwork_queue::Segment::new(mem.base() + 0x80_0000, 512);
        d.submit(
            0,
            BlkRequest::Read {
                sector: 0,
                data: &[seg],
            },
            1,
        )
        .unwrap();
        d.kick(0).unwrap();
        match d.poll(0) {
            Err(BlkError::Queue {
                queue: 0,
                source: UsedError::BadLength { len, capacity, .. },
            }) => {
                assert_eq!((len, capacity), (1 << 20, 513));
            }
            other => panic!("{ring:?}: {other:?}"),
        }
        // Blocking calls report the broken queue too.
        assert!(matches!(
            d.write(0, &[0u8; 512]),
            Err(BlkError::Request(RequestError::Broken { queue: 0 }))
        ));
        assert_eq!(d.reset().tokens, vec![1]);
    }
}

#[test]
fn a_device_that_never_completes_times_out() {
    let mem = common::memory();
    let mut dev = BlkDev::new(&mem, 64);
    dev.mode = Mode::Hold;
    let b = block(dev);
    let mut d = try_driver(&b, &mem, BlkOptions::default()).unwrap();
    d.submit(0, BlkRequest::Flush, 1).unwrap();
    let mut buf = [0u8; 512];
    assert_eq!(d.read(0, &mut buf), Err(BlkError::Timeout));
    // The bounce buffer may still be written by the device: no more
    // blocking calls until reset.
    assert_eq!(d.read(0, &mut buf), Err(BlkError::Broken));
    assert_eq!(d.flush(), Err(BlkError::Broken));
    let det = d.reset();
    assert!(det.reset.is_ok());
    assert_eq!(det.tokens, vec![1]);
}

#[test]
fn status_the_device_never_wrote_is_reported() {
    let mem = common::memory();
    let mut dev = BlkDev::new(&mem, 64);
    dev.skip_status = true;
    let b = block(dev);
    let mut d = try_driver(&b, &mem, BlkOptions::default()).unwrap();
    d.submit(0, BlkRequest::Flush, 1).unwrap();
    d.kick(0).unwrap();
    let c = d.poll(0).unwrap().unwrap();
    assert_eq!((c.token, c.status), (1, BlkStatus::Other(0xff)));
    assert_eq!(
        d.flush(),
        Err(BlkError::Status {
            status: BlkStatus::Other(0xff)
        })
    );
}

#[test]
fn wrong_device_or_ring() {
    let mem = common::memory();
    let b = block(RngDev::new(&mem));
    let e = BlkDriver::<_, _, u32>::new(mmio(&b), &mem, BlkOptions::default()).unwrap_err();
    assert_eq!(
        e,
        BlkError::Setup(SetupError::WrongDevice {
            expected: 2,
            found: 4
        })
    );

    let dev = BlkDev::new(&mem, 64).withdraw(&[VIRTIO_F_RING_PACKED]);
    let opts = BlkOptions {
        ring: RingPreference::Packed,
        ..BlkOptions::default()
    };
    assert_eq!(setup_error(dev, &mem, opts), SetupError::PackedUnavailable);

    let b = block(BlkDev::new(&mem, 64));
    let opts = BlkOptions {
        queues: 0,
        ..BlkOptions::default()
    };
    assert!(matches!(
        try_driver(&b, &mem, opts),
        Err(BlkError::Setup(SetupError::BadOption { .. }))
    ));
}

/// size_max and seg_max too small to carry one sector: blocking I/O is
/// refused, not attempted.
#[test]
fn limits_too_small_for_a_sector() {
    let mem = common::memory();
    let mut dev = BlkDev::new(&mem, 64);
    dev.edit(|c| {
        c.set_seg_max(2);
        c.set_size_max(100);
    });
    let b = block(dev);
    let mut d = try_driver(&b, &mem, BlkOptions::default()).unwrap();
    let mut buf = [0u8; 512];
    assert!(matches!(
        d.read(0, &mut buf),
        Err(BlkError::Request(RequestError::TooManySegments { .. }))
    ));
    assert!(with_dev(&b, |dev| dev.log.is_empty()));
}
