//! The entropy driver against a fake entropy device over the MMIO
//! loopback: blocking fills (split and packed, short answers, empty
//! answers), the non-blocking core, and a hostile or silent device.

mod common;

use common::rng_dev::RngDev;
use common::{block, mmio, violations, with_dev, Block, Mmio};
use ringwork_driver::rng::{RngDriver, RngError, RNG_BUFFER_SIZE, RNG_MAX_BUFFERS};
use ringwork_driver::{RingPreference, SetupError};
use ringwork_queue::test_utils::TestMemory;
use ringwork_queue::{RingFormat, UsedError};
use ringwork_spec::features::VIRTIO_F_RING_PACKED;

type Driver<'b, 'm> = RngDriver<Mmio<'b, RngDev<'m>>, &'m TestMemory>;

fn driver<'b, 'm>(
    b: &'b Block<RngDev<'m>>,
    mem: &'m TestMemory,
    ring: RingPreference,
) -> Driver<'b, 'm> {
    RngDriver::new(mmio(b), mem, 64, ring).expect("driver")
}

/// The fake's bytes are a running counter starting at 1.
fn counter(n: usize) -> Vec<u8> {
    (1..=n).map(|i| i as u8).collect()
}

#[test]
fn fill_split_and_packed() {
    for (ring, format) in [
        (RingPreference::Split, RingFormat::Split),
        (RingPreference::Packed, RingFormat::Packed),
    ] {
        let mem = common::memory();
        let b = block(RngDev::new(&mem));
        let mut d = driver(&b, &mem, ring);
        assert_eq!(d.ring_format(), format);
        let mut buf = vec![0u8; 1000];
        assert_eq!(d.fill(&mut buf).unwrap(), 1000);
        assert_eq!(buf, counter(1000));
        with_dev(&b, |dev| {
            // 256-byte requests, device-writable only (§5.4.6.1).
            assert_eq!(dev.completed, 4);
            assert_eq!(dev.readable_seen, 0);
        });
        assert_eq!(d.in_flight(), 0);
        assert_eq!(violations(&b), 0);
    }
}

#[test]
fn short_answers_are_collected_until_full() {
    let mem = common::memory();
    let b = block(RngDev::new(&mem));
    with_dev(&b, |dev| dev.per_request = Some(7));
    let mut d = driver(&b, &mem, RingPreference::Auto);
    let mut buf = [0u8; 50];
    assert_eq!(d.fill(&mut buf).unwrap(), 50);
    assert_eq!(buf.to_vec(), counter(50));
    assert_eq!(
        with_dev(&b, |dev| dev.completed),
        8,
        "ceil(50 / 7) requests"
    );
}

#[test]
fn empty_answers_end_a_fill_early() {
    let mem = common::memory();
    let b = block(RngDev::new(&mem));
    with_dev(&b, |dev| dev.per_request = Some(0));
    let mut d = driver(&b, &mem, RingPreference::Auto);
    let mut buf = [0u8; 64];
    assert_eq!(d.fill(&mut buf).unwrap(), 0);
    with_dev(&b, |dev| dev.per_request = Some(10));
    assert_eq!(d.fill(&mut buf).unwrap(), 64);
    assert_eq!(&buf[..10], &counter(10)[..]);
}

#[test]
fn submit_and_poll() {
    let mem = common::memory();
    let b = block(RngDev::new(&mem));
    with_dev(&b, |dev| dev.hold = true);
    let mut d = driver(&b, &mem, RingPreference::Split);
    assert_eq!(
        d.submit(0),
        Err(RngError::BadLength {
            len: 0,
            max: RNG_BUFFER_SIZE as u32
        })
    );
    assert_eq!(
        d.submit(257),
        Err(RngError::BadLength { len: 257, max: 256 })
    );
    for len in 1..=u32::from(RNG_MAX_BUFFERS) {
        d.submit(len).unwrap();
    }
    assert_eq!(d.in_flight(), RNG_MAX_BUFFERS);
    assert_eq!(d.submit(1), Err(RngError::QueueFull));
    assert!(d.poll().unwrap().is_none());
    with_dev(&b, |dev| dev.release());
    let mut total = Vec::new();
    let mut lens = Vec::new();
    while let Some(e) = d.poll().unwrap() {
        lens.push(e.bytes().len());
        total.extend_from_slice(e.bytes());
    }
    assert_eq!(lens, (1..=RNG_MAX_BUFFERS as usize).collect::<Vec<_>>());
    assert_eq!(total, counter(total.len()));
    assert_eq!(d.in_flight(), 0);
    d.submit(5).unwrap();
}

#[test]
fn fill_uses_earlier_submissions() {
    let mem = common::memory();
    let b = block(RngDev::new(&mem));
    with_dev(&b, |dev| dev.hold = true);
    let mut d = driver(&b, &mem, RingPreference::Packed);
    for _ in 0..RNG_MAX_BUFFERS {
        d.submit(4).unwrap();
    }
    with_dev(&b, |dev| {
        dev.release();
        dev.hold = false;
    });
    let mut buf = [0u8; 8];
    assert_eq!(d.fill(&mut buf).unwrap(), 8);
    assert_eq!(buf.to_vec(), counter(8));
}

#[test]
fn hostile_used_length() {
    let mem = common::memory();
    let b = block(RngDev::new(&mem));
    with_dev(&b, |dev| dev.used_len = Some(4096));
    let mut d = driver(&b, &mem, RingPreference::Auto);
    let mut buf = [0u8; 16];
    match d.fill(&mut buf) {
        Err(RngError::Queue(UsedError::BadLength {
            len: 4096,
            capacity: 16,
            ..
        })) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(d.submit(1), Err(RngError::Queue(UsedError::Broken)));
    let det = d.reset();
    assert!(det.reset.is_ok());
    // A fresh driver on the same transport works.
    with_dev(&b, |dev| dev.used_len = None);
    let mut d: Driver<'_, '_> =
        RngDriver::new(det.transport, &mem, 8, RingPreference::Auto).unwrap();
    assert_eq!(d.fill(&mut buf).unwrap(), 16);
}

#[test]
fn silent_device_times_out() {
    let mem = common::memory();
    let b = block(RngDev::new(&mem));
    with_dev(&b, |dev| dev.hold = true);
    let mut d = driver(&b, &mem, RingPreference::Auto);
    let mut buf = [0u8; 16];
    assert_eq!(d.fill(&mut buf), Err(RngError::Timeout));
    assert_eq!(d.in_flight(), 1, "the request stays in flight");
    // A late answer is used by the next fill.
    with_dev(&b, |dev| {
        dev.release();
        dev.hold = false;
    });
    assert_eq!(d.fill(&mut buf).unwrap(), 16);
    assert_eq!(buf.to_vec(), counter(16));
    // The fill's own request completed too; poll hands it out.
    assert_eq!(d.in_flight(), 1);
    let e = d.poll().unwrap().expect("the second request");
    assert_eq!(e.bytes(), &counter(32)[16..]);
    assert_eq!(d.in_flight(), 0);
}

#[test]
fn setup_errors() {
    let mem = common::memory();
    let mut dev = RngDev::new(&mem);
    dev.features.remove(VIRTIO_F_RING_PACKED);
    let b = block(dev);
    let e = RngDriver::new(mmio(&b), &mem, 64, RingPreference::Packed).unwrap_err();
    assert_eq!(e, RngError::Setup(SetupError::PackedUnavailable));
    let mut dev = RngDev::new(&mem);
    dev.max_size = [0];
    let b = block(dev);
    let e = RngDriver::new(mmio(&b), &mem, 64, RingPreference::Auto).unwrap_err();
    assert_eq!(e, RngError::Setup(SetupError::MissingQueue { queue: 0 }));
    // A queue smaller than asked for, split: a power of two below it.
    let mut dev = RngDev::new(&mem);
    dev.max_size = [100];
    let b = block(dev);
    let mut d = RngDriver::new(mmio(&b), &mem, 1000, RingPreference::Split).unwrap();
    let mut buf = [0u8; 4];
    d.fill(&mut buf).unwrap();
    let size = b.borrow().core().queues()[0].size;
    assert_eq!(size, 64);
}
