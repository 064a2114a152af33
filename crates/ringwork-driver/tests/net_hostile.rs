//! The network driver against a hostile fake device over MMIO (VIRTIO
//! 1.4 §5.1): a first receive buffer shorter than the header, used
//! lengths beyond a buffer, unknown used ids, `num_buffers` 0 or beyond
//! what the device holds (each breaks the queue until reset), checksum
//! offsets outside the frame and GSO types (only the frame is dropped),
//! and configuration values the driver cannot work with (setup fails with
//! FAILED set); split and packed rings.

mod common;

use common::net_dev::{frame, opts, Drv, NetDev, RxHdr, DST, RINGS};
use common::{block, memory, mmio, status, with_dev};
use ringwork_driver::net::{NetDriver, NetError, NetOptions, RecvError, SendError};
use ringwork_driver::{RingPreference, SetupError};
use ringwork_queue::UsedError;
use ringwork_spec::net::*;
use ringwork_spec::status::DeviceStatus;

/// Hostile used lengths and ids break the receive queue with a clear
/// error until reset.
#[test]
fn hostile_used_lengths_and_ids() {
    for ring in RINGS {
        // First buffer shorter than the header.
        let mem = memory();
        let b = block(NetDev::new(&mem));
        let mut d: Drv = NetDriver::new(mmio(&b), &mem, opts(ring)).unwrap();
        with_dev(&b, |dev| {
            dev.deliver(0, &frame(DST, 60, 0), RxHdr::default(), Some(5))
        });
        assert_eq!(
            d.recv(0),
            Err(RecvError::ShortBuffer {
                pair: 0,
                len: 5,
                hdr: 12
            })
        );
        assert_eq!(
            d.recv(0),
            Err(RecvError::Queue {
                pair: 0,
                source: UsedError::Broken
            }),
            "broken until reset"
        );
        // A used length beyond the buffer.
        let mem = memory();
        let b = block(NetDev::new(&mem));
        let mut d: Drv = NetDriver::new(mmio(&b), &mem, opts(ring)).unwrap();
        with_dev(&b, |dev| {
            dev.deliver(0, &frame(DST, 60, 0), RxHdr::default(), Some(1 << 20))
        });
        assert!(matches!(
            d.recv(0),
            Err(RecvError::Queue {
                source: UsedError::BadLength { len: 1048576, .. },
                ..
            })
        ));
        assert!(d.recv(0).is_err());
        // An id naming no buffer: a transmit completion for a frame never
        // sent (the receive queue has every id outstanding).
        let mem = memory();
        let b = block(NetDev::new(&mem));
        let mut d: Drv = NetDriver::new(mmio(&b), &mem, opts(ring)).unwrap();
        with_dev(&b, |dev| dev.hold_tx = true);
        d.send(0, &frame(DST, 60, 0), None).unwrap();
        let bogus = with_dev(&b, |dev| {
            let bogus = (dev.held_tx_id().unwrap() + 1) % 32;
            dev.forge_used(1, bogus, 0);
            bogus
        });
        assert!(matches!(
            d.reclaim(0),
            Err(SendError::Queue {
                source: UsedError::BadId { id },
                ..
            }) if id == u32::from(bogus)
        ));
        assert!(matches!(
            d.reclaim(0),
            Err(SendError::Queue {
                source: UsedError::Broken,
                ..
            })
        ));
        assert!(matches!(
            d.send(0, &frame(DST, 60, 0), None),
            Err(SendError::Queue { .. })
        ));
        let det = d.reset();
        assert!(det.reset.is_ok());
        // After reset the transport drives a fresh driver.
        let mut d: Drv = NetDriver::new(det.transport, &mem, opts(ring)).unwrap();
        let f = frame(DST, 70, 9);
        with_dev(&b, |dev| dev.deliver(0, &f, RxHdr::default(), None)).unwrap();
        assert_eq!(d.recv(0).unwrap().unwrap().data, f);
    }
}

/// `num_buffers` 0, or more than the device holds, breaks the queue.
#[test]
fn hostile_num_buffers() {
    for ring in RINGS {
        for (nb, available) in [(0u16, 32u16), (33, 32), (0xffff, 32)] {
            let mem = memory();
            let b = block(NetDev::new(&mem));
            let mut d: Drv = NetDriver::new(mmio(&b), &mem, opts(ring)).unwrap();
            let h = RxHdr {
                num_buffers: Some(nb),
                ..RxHdr::default()
            };
            with_dev(&b, |dev| dev.deliver(0, &frame(DST, 60, 0), h, None)).unwrap();
            assert_eq!(
                d.recv(0),
                Err(RecvError::BadNumBuffers {
                    pair: 0,
                    num_buffers: nb,
                    available
                })
            );
            assert!(d.recv(0).is_err(), "broken");
        }
        // More buffers than were used, but no more than the device holds:
        // the driver waits for the rest.
        let mem = memory();
        let b = block(NetDev::new(&mem));
        let mut d: Drv = NetDriver::new(mmio(&b), &mem, opts(ring)).unwrap();
        let h = RxHdr {
            num_buffers: Some(3),
            ..RxHdr::default()
        };
        with_dev(&b, |dev| dev.deliver(0, &frame(DST, 60, 0), h, None)).unwrap();
        assert_eq!(d.recv(0), Ok(None), "frame incomplete");
    }
}

/// Per-frame faults drop the frame; the queue goes on.
#[test]
fn bad_offsets_and_gso_drop_only_the_frame() {
    let mem = memory();
    let b = block(NetDev::new(&mem));
    let mut d: Drv = NetDriver::new(mmio(&b), &mem, opts(RingPreference::Auto)).unwrap();
    let f = frame(DST, 60, 1);
    let h = RxHdr {
        flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
        csum_start: 50,
        csum_offset: 9,
        ..RxHdr::default()
    };
    with_dev(&b, |dev| dev.deliver(0, &f, h, None)).unwrap();
    let h = RxHdr {
        gso_type: VIRTIO_NET_HDR_GSO_TCPV4 | VIRTIO_NET_HDR_GSO_UDP_TUNNEL_IPV4,
        ..RxHdr::default()
    };
    with_dev(&b, |dev| dev.deliver(0, &f, h, None)).unwrap();
    // `hdr_len` is never relied on.
    let h = RxHdr {
        hdr_len: 0xffff,
        ..RxHdr::default()
    };
    with_dev(&b, |dev| dev.deliver(0, &f, h, None)).unwrap();
    assert_eq!(
        d.recv(0),
        Err(RecvError::BadChecksum {
            pair: 0,
            start: 50,
            offset: 9,
            len: 60
        })
    );
    assert_eq!(
        d.recv(0),
        Err(RecvError::UnexpectedGso {
            pair: 0,
            gso_type: 0x21
        })
    );
    assert_eq!(d.recv(0).unwrap().unwrap().data, f);
    // Any other gso_type: both tunnel bits, a tunnel bit without a GSO
    // protocol, ECN alone.
    for gso_type in [0x61, 0x20, 0x80, VIRTIO_NET_HDR_GSO_UDP_L4] {
        let h = RxHdr {
            gso_type,
            flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
            csum_start: 14,
            ..RxHdr::default()
        };
        with_dev(&b, |dev| dev.deliver(0, &f, h, None)).unwrap();
        assert_eq!(
            d.recv(0),
            Err(RecvError::UnexpectedGso { pair: 0, gso_type })
        );
    }
    assert_eq!(d.rx_available(0), 32);
}

/// VIRTIO_NET_F_MTU offered with an `mtu` below 68 (§5.1.4.1 forbids
/// it; a vhost-user backend without a configuration space reads 0): the
/// driver does not accept the feature (checked before FEATURES_OK, as
/// Linux does) and runs with the default MTU instead of failing.
#[test]
fn mtu_below_68_is_not_accepted() {
    for mtu in [0u16, 20, 67] {
        let mem = memory();
        let mut dev = NetDev::new(&mem);
        dev.mtu = mtu;
        let b = block(dev);
        let d = Drv::new(mmio(&b), &mem, opts(RingPreference::Auto)).unwrap();
        assert!(!d.features().contains(VIRTIO_NET_F_MTU), "mtu {mtu}");
        assert_eq!(d.mtu(), 1500, "mtu {mtu}");
        assert_eq!(status(&b) & DeviceStatus::FAILED.bits(), 0);
    }
    // 68 is valid and accepted.
    let mem = memory();
    let mut dev = NetDev::new(&mem);
    dev.mtu = 68;
    let b = block(dev);
    let d = Drv::new(mmio(&b), &mem, opts(RingPreference::Auto)).unwrap();
    assert!(d.features().contains(VIRTIO_NET_F_MTU));
    assert_eq!(d.mtu(), 68);
}

/// VIRTIO_NET_F_MQ with a `max_virtqueue_pairs` the driver cannot use (0,
/// which §5.1.4.1 forbids, or 0x8000, whose controlq index does not fit 16
/// bits) is not accepted before FEATURES_OK: the driver runs one pair, as
/// Linux does, instead of failing setup. A usable value keeps MQ.
#[test]
fn unusable_max_virtqueue_pairs_falls_back_to_one_pair() {
    for (max_pairs, mq) in [(0u16, false), (0x8000, false), (2, true)] {
        let mem = memory();
        let mut dev = NetDev::new(&mem);
        dev.max_pairs = max_pairs;
        let b = block(dev);
        let d = Drv::new(
            mmio(&b),
            &mem,
            NetOptions {
                queue_pairs: 2,
                ..opts(RingPreference::Auto)
            },
        )
        .unwrap();
        assert_eq!(d.features().contains(VIRTIO_NET_F_MQ), mq, "{max_pairs}");
        assert_eq!(d.queue_pairs(), if mq { 2 } else { 1 }, "{max_pairs}");
        assert_eq!(status(&b) & DeviceStatus::FAILED.bits(), 0);
    }
}

#[test]
fn bad_config_fails_setup() {
    // §5.1.9.3.1: mergeable buffers at least the header; a receive queue
    // that holds an mtu-sized frame (§5.1.4.2).
    for (queue_size, rx_buffer_len) in [(32, 11), (4, 64)] {
        let mem = memory();
        let b = block(NetDev::new(&mem));
        let e = Drv::new(
            mmio(&b),
            &mem,
            NetOptions {
                queue_size,
                rx_buffer_len,
                ..opts(RingPreference::Auto)
            },
        )
        .unwrap_err();
        assert!(matches!(
            e,
            NetError::Setup(SetupError::BadOption {
                option: "rx_buffer_len",
                ..
            })
        ));
    }
}
