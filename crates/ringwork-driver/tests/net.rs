//! The network driver's data path against a fake device over MMIO
//! (VIRTIO 1.4 §5.1): feature negotiation and its dependencies
//! (§5.1.3.1), the configuration read and never written (§5.1.4.2),
//! receive queues filled before DRIVER_OK (§5.1.5), the transmit header
//! (§5.1.9.2.1), single and mergeable receive buffers (§5.1.9.3,
//! §5.1.9.4), batches and busy polling; split and packed rings. Control
//! commands are in `net_ctrl.rs`, the hostile device cases in
//! `net_hostile.rs`.

mod common;

use common::net_dev::{frame, never_accepted, opts, Drv, NetDev, RxHdr, DST, RINGS};
use common::{block, memory, mmio, status, violations, with_dev};
use ringwork_driver::net::{
    complete_checksum, ones_complement_sum, CtrlError, Duplex, NetDriver, NetOptions, RecvError,
    RxChecksum, RxMode, SendError, TxChecksum, TxFrame,
};
use ringwork_driver::RingPreference;
use ringwork_queue::RingFormat;
use ringwork_spec::features::{FeatureSet, VIRTIO_F_RING_PACKED};
use ringwork_spec::net::*;
use ringwork_spec::status::DeviceStatus;

#[test]
fn init_negotiates_reads_config_and_fills_rx_before_driver_ok() {
    for ring in RINGS {
        let mem = memory();
        let b = block(NetDev::new(&mem));
        let d: Drv = NetDriver::new(
            mmio(&b),
            &mem,
            NetOptions {
                queue_pairs: 2,
                ..opts(ring)
            },
        )
        .unwrap();
        let f = d.features();
        for bit in [
            VIRTIO_NET_F_MAC,
            VIRTIO_NET_F_STATUS,
            VIRTIO_NET_F_MTU,
            VIRTIO_NET_F_MRG_RXBUF,
            VIRTIO_NET_F_CSUM,
            VIRTIO_NET_F_GUEST_CSUM,
            VIRTIO_NET_F_CTRL_VQ,
            VIRTIO_NET_F_CTRL_RX,
            VIRTIO_NET_F_CTRL_RX_EXTRA,
            VIRTIO_NET_F_CTRL_VLAN,
            VIRTIO_NET_F_CTRL_MAC_ADDR,
            VIRTIO_NET_F_GUEST_ANNOUNCE,
            VIRTIO_NET_F_MQ,
            VIRTIO_NET_F_SPEED_DUPLEX,
        ] {
            assert!(f.contains(bit), "bit {bit} not negotiated");
        }
        // Offered, never accepted: no segmentation offload, GUEST_HDRLEN,
        // OUT_NET_HEADER, IPSEC, hashing, RSS, RSS contexts, coalescing,
        // statistics, guest offload control or admin virtqueue.
        for bit in never_accepted().iter() {
            assert!(!f.contains(bit), "bit {bit} must not be negotiated");
        }
        assert_eq!(
            d.ring_format() == RingFormat::Packed,
            ring == RingPreference::Packed
        );
        let c = *d.config();
        assert_eq!(c.mac, Some(DST));
        assert_eq!((c.mtu, c.max_virtqueue_pairs), (1500, 2));
        assert_eq!((c.speed, c.duplex), (Some(10_000), Duplex::Full));
        assert!(d.link_up());
        assert_eq!(d.mac(), DST, "§5.1.4.2: the device's mac is used");
        assert_eq!(d.header_len(), 12);
        assert_eq!((d.queue_pairs(), d.active_pairs()), (2, 1));
        assert_ne!(status(&b) & DeviceStatus::DRIVER_OK.bits(), 0);
        assert_eq!(violations(&b), 0);
        with_dev(&b, |dev| {
            // Both receive queues held every buffer when DRIVER_OK was set.
            assert_eq!(
                dev.rx_at_driver_ok,
                vec![(0, 32, d.rx_buffer_len()), (2, 32, d.rx_buffer_len())]
            );
            assert_eq!(dev.early_notifies, 0, "no notification before DRIVER_OK");
            assert!(dev.config_writes.is_empty(), "{:?}", dev.config_writes);
            assert!(dev.ctrls.is_empty(), "no command without a reason");
        });
        assert!(d.reset().reset.is_ok());
    }
}

/// §5.1.3.1: features that need the controlq are dropped without it;
/// commands then are refused by the driver.
#[test]
fn without_ctrl_vq_its_dependents_are_dropped() {
    let mem = memory();
    let b = block(NetDev::new(&mem).without(&[VIRTIO_NET_F_CTRL_VQ]));
    let mut d: Drv = NetDriver::new(
        mmio(&b),
        &mem,
        NetOptions {
            queue_pairs: 2,
            ..opts(RingPreference::Auto)
        },
    )
    .unwrap();
    let f = d.features();
    for bit in [
        VIRTIO_NET_F_CTRL_RX,
        VIRTIO_NET_F_CTRL_RX_EXTRA,
        VIRTIO_NET_F_CTRL_VLAN,
        VIRTIO_NET_F_CTRL_MAC_ADDR,
        VIRTIO_NET_F_GUEST_ANNOUNCE,
        VIRTIO_NET_F_MQ,
    ] {
        assert!(!f.contains(bit), "bit {bit} negotiated without CTRL_VQ");
    }
    assert_eq!(d.queue_pairs(), 1, "without MQ one pair");
    assert!(matches!(
        d.set_promisc(true),
        Err(CtrlError::NotNegotiated {
            feature: VIRTIO_NET_F_CTRL_RX,
            ..
        })
    ));
    assert!(matches!(
        d.set_queue_pairs(1),
        Err(CtrlError::NotNegotiated { .. })
    ));
    with_dev(&b, |dev| assert!(dev.ctrls.is_empty()));
}

#[test]
fn withheld_features_are_not_negotiated() {
    let mem = memory();
    let b = block(NetDev::new(&mem));
    let withhold = FeatureSet::from_bits(&[
        VIRTIO_NET_F_MRG_RXBUF,
        VIRTIO_NET_F_CSUM,
        VIRTIO_NET_F_CTRL_RX_EXTRA,
        VIRTIO_F_RING_PACKED,
    ]);
    let mut d: Drv = NetDriver::new(
        mmio(&b),
        &mem,
        NetOptions {
            withhold,
            ..opts(RingPreference::Auto)
        },
    )
    .unwrap();
    assert!(d.features().intersection(withhold).is_empty());
    assert_eq!(d.ring_format(), RingFormat::Split);
    assert!(
        !d.features().contains(VIRTIO_NET_F_MQ),
        "one pair asked for"
    );
    // §5.1.9.3.1 SHOULD: without MRG_RXBUF, buffers of at least 1526 bytes.
    assert!(d.rx_buffer_len() >= 1526);
    for mode in [
        RxMode::AllUni,
        RxMode::NoMulti,
        RxMode::NoUni,
        RxMode::NoBcast,
    ] {
        assert!(matches!(
            d.set_rx_mode(mode, true),
            Err(CtrlError::NotNegotiated {
                feature: VIRTIO_NET_F_CTRL_RX_EXTRA,
                ..
            })
        ));
    }
    with_dev(&b, |dev| assert!(dev.ctrls.is_empty()));
    d.set_rx_mode(RxMode::Promisc, true).unwrap();
}

/// §5.1.9.5.2.2: no MAC class command without CTRL_RX (even with
/// CTRL_MAC_ADDR).
#[test]
fn no_mac_commands_without_ctrl_rx() {
    let mem = memory();
    let b = block(NetDev::new(&mem).without(&[VIRTIO_NET_F_CTRL_RX]));
    let mut d: Drv = NetDriver::new(mmio(&b), &mem, opts(RingPreference::Auto)).unwrap();
    assert!(d.features().contains(VIRTIO_NET_F_CTRL_MAC_ADDR));
    let no_rx = |r| {
        matches!(
            r,
            Err(CtrlError::NotNegotiated {
                feature: VIRTIO_NET_F_CTRL_RX,
                ..
            })
        )
    };
    assert!(no_rx(d.set_mac([0x02, 1, 2, 3, 4, 5])));
    assert!(no_rx(d.set_mac_table(&[], &[])));
    assert!(no_rx(d.set_promisc(true)));
    assert!(no_rx(d.set_allmulti(true)));
    with_dev(&b, |dev| assert!(dev.ctrls.is_empty()));
    d.vlan_add(1).unwrap();
}

/// §5.1.4.2: room for an mtu-sized frame (plus Ethernet header) with and
/// without MRG_RXBUF; out-of-range `speed` and `duplex` are unknown.
#[test]
fn mtu_sized_frames_fit_and_unknown_speed() {
    for mergeable in [false, true] {
        let mem = memory();
        let mut dev = NetDev::new(&mem);
        dev.mtu = 9000;
        dev.speed = 0xffff_ffff;
        dev.duplex = 0x55;
        if !mergeable {
            dev = dev.without(&[VIRTIO_NET_F_MRG_RXBUF]);
        }
        let b = block(dev);
        let mut d: Drv = NetDriver::new(mmio(&b), &mem, opts(RingPreference::Auto)).unwrap();
        assert_eq!(
            (d.config().speed, d.config().duplex),
            (None, Duplex::Unknown)
        );
        if !mergeable {
            assert!(d.rx_buffer_len() as usize >= 12 + 9000 + 18);
        }
        let f = frame(DST, 9014, 7);
        with_dev(&b, |dev| dev.deliver(0, &f, RxHdr::default(), None)).unwrap();
        assert_eq!(d.recv(0).unwrap().unwrap().data, f);
        d.send(0, &f, None).unwrap();
        assert!(matches!(
            d.send(0, &frame(DST, 9015, 7), None),
            Err(SendError::TooLong { max: 9014, .. })
        ));
    }
}

/// §5.1.9.2.1: header size as for receive, num_buffers 0, NEEDS_CSUM only
/// with CSUM (else flags 0 and the checksum completed by the driver),
/// gso_type NONE, one device-readable descriptor.
#[test]
fn send_builds_the_header() {
    for ring in RINGS {
        for csum_offload in [true, false] {
            let mem = memory();
            let mut dev = NetDev::new(&mem);
            if !csum_offload {
                dev = dev.without(&[VIRTIO_NET_F_CSUM]);
            }
            let b = block(dev);
            let mut d: Drv = NetDriver::new(mmio(&b), &mem, opts(ring)).unwrap();
            let plain = frame(DST, 60, 1);
            d.send(0, &plain, None).unwrap();
            let mut partial = frame(DST, 100, 2);
            partial[50..52].copy_from_slice(&[0x12, 0x34]); // pseudo-header sum
            let c = TxChecksum {
                start: 34,
                offset: 16,
            };
            d.send(0, &partial, Some(c)).unwrap();
            with_dev(&b, |dev| {
                assert_eq!(dev.sent.len(), 2);
                let s = &dev.sent[0];
                assert_eq!(
                    (s.hdr.clone(), s.frame.clone()),
                    (vec![0; 12], plain.clone())
                );
                assert_eq!(s.lens, (72, 0), "one readable descriptor");
                let s = &dev.sent[1];
                if csum_offload {
                    assert_eq!(s.hdr, [1, 0, 0, 0, 0, 0, 34, 0, 16, 0, 0, 0]);
                    assert_eq!(s.frame, partial);
                } else {
                    assert_eq!(s.hdr, [0; 12], "flags 0 without CSUM");
                    let mut done = partial.clone();
                    let v = complete_checksum(&partial, c).unwrap();
                    done[50..52].copy_from_slice(&v);
                    assert_eq!(s.frame, done);
                    // With the pseudo-header sum added back, the segment sums
                    // to 0xffff.
                    let sum = u32::from(ones_complement_sum(&s.frame[34..])) + 0x1234;
                    assert_eq!((sum & 0xffff) + (sum >> 16), 0xffff);
                }
            });
            assert_eq!(d.reclaim(0).unwrap(), 2);
            assert_eq!(d.tx_in_flight(0), 0);
        }
    }
}

#[test]
fn frames_are_checked_before_they_are_sent() {
    let mem = memory();
    let mut dev = NetDev::new(&mem);
    dev.mtu = 200;
    let b = block(dev);
    let mut d: Drv = NetDriver::new(
        mmio(&b),
        &mem,
        NetOptions {
            queue_pairs: 2,
            ..opts(RingPreference::Auto)
        },
    )
    .unwrap();
    assert_eq!(d.mtu(), 200);
    assert_eq!(
        d.send(0, &[0u8; 13], None),
        Err(SendError::TooShort { len: 13, min: 14 })
    );
    // §5.1.4.2 MUST NOT: more than mtu plus the Ethernet header.
    assert_eq!(
        d.send(0, &frame(DST, 215, 0), None),
        Err(SendError::TooLong { len: 215, max: 214 })
    );
    d.send(0, &frame(DST, 214, 0), None).unwrap();
    // A VLAN tag adds 4 bytes of header.
    let mut tagged = frame(DST, 218, 0);
    tagged[12..14].copy_from_slice(&[0x81, 0x00]);
    d.send(0, &tagged, None).unwrap();
    assert_eq!(
        d.send(
            0,
            &frame(DST, 60, 0),
            Some(TxChecksum {
                start: 50,
                offset: 9
            })
        ),
        Err(SendError::BadChecksum {
            start: 50,
            offset: 9,
            len: 60
        })
    );
    // §5.1.9.5.6.1: only transmitq1 before VQ_PAIRS_SET.
    assert_eq!(
        d.send(1, &frame(DST, 60, 0), None),
        Err(SendError::PairNotActive { pair: 1, active: 1 })
    );
    assert_eq!(
        d.send(2, &frame(DST, 60, 0), None),
        Err(SendError::NoSuchPair { pair: 2, pairs: 2 })
    );
    with_dev(&b, |dev| assert_eq!(dev.sent.len(), 2));
}

/// Without MRG_RXBUF a frame is one buffer; with it, `num_buffers`
/// buffers gathered in order (§5.1.9.4). Flags: DATA_VALID and
/// NEEDS_CSUM with GUEST_CSUM.
#[test]
fn receive_single_and_merged_buffers() {
    for ring in RINGS {
        for mergeable in [false, true] {
            let mem = memory();
            let mut dev = NetDev::new(&mem);
            if !mergeable {
                dev = dev.without(&[VIRTIO_NET_F_MRG_RXBUF]);
            }
            let b = block(dev);
            let mut d: Drv = NetDriver::new(
                mmio(&b),
                &mem,
                NetOptions {
                    rx_buffer_len: 256,
                    ..opts(ring)
                },
            )
            .unwrap();
            let f1 = frame(DST, 1514, 3);
            let used = with_dev(&b, |dev| dev.deliver(0, &f1, RxHdr::default(), None)).unwrap();
            assert_eq!(
                used,
                if mergeable {
                    (12 + 1514usize).div_ceil(256)
                } else {
                    1
                }
            );
            let got = d.recv(0).unwrap().unwrap();
            assert_eq!(got.data, f1, "byte-exact");
            assert_eq!(got.info.len, 1514);
            assert_eq!(got.info.num_buffers as usize, used);
            assert_eq!(got.info.csum, RxChecksum::None);
            assert_eq!(d.rx_available(0), 32, "buffers made available again");
            with_dev(&b, |dev| assert_eq!(dev.rx_held(0), 32));
            // Checksum flags.
            let f2 = frame(DST, 80, 4);
            let h = RxHdr {
                flags: VIRTIO_NET_HDR_F_DATA_VALID | 0x40,
                ..RxHdr::default()
            };
            with_dev(&b, |dev| dev.deliver(0, &f2, h, None)).unwrap();
            let h = RxHdr {
                flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
                csum_start: 34,
                csum_offset: 6,
                ..RxHdr::default()
            };
            with_dev(&b, |dev| dev.deliver(0, &f2, h, None)).unwrap();
            let mut buf = [0u8; 2000];
            let i = d.recv_into(0, &mut buf).unwrap().unwrap();
            assert_eq!((&buf[..i.len], i.csum), (&f2[..], RxChecksum::Valid));
            let i = d.recv_into(0, &mut buf).unwrap().unwrap();
            assert_eq!(
                i.csum,
                RxChecksum::Partial(TxChecksum {
                    start: 34,
                    offset: 6
                })
            );
            assert_eq!(d.recv(0).unwrap(), None);
        }
    }
}

/// A buffer too small for the next frame leaves the frame queued.
#[test]
fn recv_into_a_small_buffer_keeps_the_frame() {
    let mem = memory();
    let b = block(NetDev::new(&mem));
    let mut d: Drv = NetDriver::new(mmio(&b), &mem, opts(RingPreference::Auto)).unwrap();
    let f = frame(DST, 900, 5);
    with_dev(&b, |dev| dev.deliver(0, &f, RxHdr::default(), None)).unwrap();
    let mut small = [0u8; 100];
    assert_eq!(
        d.recv_into(0, &mut small),
        Err(RecvError::BufferTooSmall {
            need: 900,
            got: 100
        })
    );
    let mut big = [0u8; 1000];
    let i = d.recv_into(0, &mut big).unwrap().unwrap();
    assert_eq!(&big[..i.len], &f[..]);
}

/// Batches: as many frames as fit are queued with one notification;
/// received frames are handed to a closure.
#[test]
fn batches_send_and_receive() {
    for ring in RINGS {
        let mem = memory();
        let b = block(NetDev::new(&mem));
        let mut d: Drv = NetDriver::new(
            mmio(&b),
            &mem,
            NetOptions {
                rx_buffer_len: 512,
                ..opts(ring)
            },
        )
        .unwrap();
        let frames: Vec<Vec<u8>> = (0..40).map(|i| frame(DST, 60 + i * 30, i as u8)).collect();
        let tx: Vec<TxFrame> = frames.iter().map(|f| TxFrame::new(f)).collect();
        // The fake completes at once, so all 40 pass through 32 slots.
        let n = d.send_batch(0, &tx[..32]).unwrap();
        assert_eq!(n, 32);
        let n = d.send_batch(0, &tx[32..]).unwrap();
        assert_eq!(n, 8);
        with_dev(&b, |dev| {
            let got: Vec<_> = dev.sent.iter().map(|s| s.frame.clone()).collect();
            assert_eq!(got, frames);
        });
        // A bad frame in a batch: nothing is queued.
        let bad = [TxFrame::new(&frames[0]), TxFrame::new(&[0u8; 3])];
        assert!(matches!(
            d.send_batch(0, &bad),
            Err(SendError::TooShort { .. })
        ));
        with_dev(&b, |dev| assert_eq!(dev.sent.len(), 40));
        // Receive ten frames (some merged) in one batch.
        for f in &frames[..10] {
            with_dev(&b, |dev| dev.deliver(0, f, RxHdr::default(), None)).unwrap();
        }
        let mut got = Vec::new();
        let n = d
            .recv_batch(0, 64, |data, info| {
                assert_eq!(data.len(), info.len);
                got.push(data.to_vec());
            })
            .unwrap();
        assert_eq!(n, 10);
        assert_eq!(got, frames[..10]);
        assert_eq!(d.rx_available(0), 32);
    }
}

/// §5.1.9.5: every command's bytes, the device's ack.
/// §2.7.7 / §2.8.10: in busy-poll mode an empty receive does not re-arm
/// used buffer notifications, so the device delivers without signalling;
/// without it, the empty receive re-arms them and the next frame signals.
/// Frames arrive either way; `recv_wait` still works while polling.
#[test]
fn rx_polling_suppresses_notifications() {
    for ring in RINGS {
        let mem = memory();
        let b = block(NetDev::new(&mem));
        let mut d: Drv = NetDriver::new(mmio(&b), &mem, opts(ring)).unwrap();
        let mut buf = [0u8; 2048];
        let f = frame(DST, 60, 1);
        // Warm-up: a device signals its first used buffer regardless (no
        // earlier signal to compare `used_event` against).
        with_dev(&b, |dev| dev.deliver(0, &f, RxHdr::default(), None)).unwrap();
        assert!(d.recv_into(0, &mut buf).unwrap().is_some());
        d.interrupt();
        d.set_rx_polling(true);
        for _ in 0..3 {
            assert_eq!(d.recv_into(0, &mut buf).unwrap(), None);
            with_dev(&b, |dev| dev.deliver(0, &f, RxHdr::default(), None)).unwrap();
            assert!(
                !d.interrupt().used_buffer,
                "{ring:?}: signalled while polling"
            );
            let info = d.recv_into(0, &mut buf).unwrap().unwrap();
            assert_eq!(&buf[..info.len], &f[..]);
        }
        // recv_wait re-arms for its own wait and leaves polling on.
        with_dev(&b, |dev| dev.deliver(0, &f, RxHdr::default(), None)).unwrap();
        let info = d.recv_wait(0, &mut buf).unwrap();
        assert_eq!(&buf[..info.len], &f[..]);
        assert_eq!(d.recv_into(0, &mut buf).unwrap(), None);
        with_dev(&b, |dev| dev.deliver(0, &f, RxHdr::default(), None)).unwrap();
        assert!(
            !d.interrupt().used_buffer,
            "{ring:?}: signalled after recv_wait"
        );
        assert!(d.recv_into(0, &mut buf).unwrap().is_some());
        // Polling off: the empty receive re-arms.
        d.set_rx_polling(false);
        assert_eq!(d.recv_into(0, &mut buf).unwrap(), None);
        with_dev(&b, |dev| dev.deliver(0, &f, RxHdr::default(), None)).unwrap();
        assert!(
            d.interrupt().used_buffer,
            "{ring:?}: no signal with polling off"
        );
        assert!(d.recv_into(0, &mut buf).unwrap().is_some());
    }
}
