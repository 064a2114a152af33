//! The network device on the reflecting backend ([`Loopback`]) through
//! the in-process fake driver, with queues sharing worker threads
//! ([`NetWorkers`]) and the way a polling host calls the workers
//! ([`QueueSet::polling`](ringwork_device::model::QueueSet::polling)):
//! frames come back on the pair they left from, checksum requests are
//! kept for a driver with GUEST_CSUM, and while the host polls the driver
//! is asked not to notify (VIRTIO 1.4 §2.7.10, §2.8.10) until polling
//! ends.

mod net_support;

use std::sync::Arc;

use net_support::*;
use ringwork_device::harness::{fd_readable, Harness};
use ringwork_device::model::Device;
use ringwork_device::net::*;
use ringwork_queue::{RingFormat, Segment};
use ringwork_spec::features::{VIRTIO_F_EVENT_IDX, VIRTIO_F_IN_ORDER, VIRTIO_F_RING_PACKED};
use ringwork_spec::net::ctrl::*;
use ringwork_spec::net::*;

const NONE: [u8; 12] = [0; 12];

fn device(pairs: u16, workers: NetWorkers, features: u64) -> (Harness<Net>, Arc<Loopback>) {
    let lb = Arc::new(Loopback::new(pairs).unwrap());
    let net = Net::new(
        NetOptions {
            queue_pairs: pairs,
            workers,
            ..NetOptions::new(MAC_A)
        },
        lb.clone(),
    )
    .unwrap();
    (Harness::with_features(net, features, 256).unwrap(), lb)
}

#[test]
fn worker_maps() {
    let map = |pairs, workers| {
        let lb = Arc::new(Loopback::new(pairs).unwrap());
        let o = NetOptions {
            queue_pairs: pairs,
            workers,
            ..NetOptions::new(MAC_A)
        };
        Net::new(o, lb).unwrap().worker_map()
    };
    assert_eq!(
        map(2, NetWorkers::PerQueue),
        [vec![0], vec![1], vec![2], vec![3], vec![4]]
    );
    assert_eq!(map(2, NetWorkers::PerPair), [vec![0, 1, 4], vec![2, 3]]);
    assert_eq!(map(2, NetWorkers::One), [vec![0, 1, 2, 3, 4]]);
}

#[test]
fn frames_come_back_with_one_worker() {
    for format in [RingFormat::Split, RingFormat::Packed] {
        let mut f = all_features(1);
        if format == RingFormat::Packed {
            f |= 1 << VIRTIO_F_RING_PACKED;
        }
        let (mut h, lb) = device(1, NetWorkers::One, f);
        post_rx(&mut h, 0, 64, 2048);
        let frames: Vec<Vec<u8>> = (0..40)
            .map(|i| frame(MAC_B, MAC_A, 60 + 37 * i, i as u8))
            .collect();
        for fr in &frames {
            h.submit(1, &[&NONE, fr], &[]).unwrap();
        }
        // One call: transmit first, so the frames are received in it too.
        h.run().unwrap();
        assert_eq!(h.completed(1).unwrap().len(), 40);
        let got = received(&mut h, 0);
        let data: Vec<Vec<u8>> = got.iter().map(|r| r.data.clone()).collect();
        assert_eq!(data, frames, "{format:?}");
        assert!(got.iter().all(|r| r.num_buffers() == 1));
        assert_eq!(lb.reflected(), 40);
        let st = h.device().stats();
        assert_eq!((st.tx_packets, st.rx_packets), (40, 40));
    }
}

/// With `rx_streaming_stores` every frame still arrives byte for byte:
/// lengths around the 16-byte units, buffers starting at every offset
/// from a 16-byte boundary, and with MRG_RXBUF frames spread over several
/// buffers (written the ordinary way) among them; every frame that fit
/// one buffer was streamed (`rx_streamed`).
#[test]
fn frames_come_back_intact_with_streaming_stores() {
    for format in [RingFormat::Split, RingFormat::Packed] {
        for mrg in [true, false] {
            let mut f = all_features(1);
            if format == RingFormat::Packed {
                f |= 1 << VIRTIO_F_RING_PACKED;
            }
            if !mrg {
                f = without(f, &[VIRTIO_NET_F_MRG_RXBUF]);
            }
            let lb = Arc::new(Loopback::new(1).unwrap());
            let opts = NetOptions {
                workers: NetWorkers::One,
                rx_streaming_stores: true,
                ..NetOptions::new(MAC_A)
            };
            let net = Net::new(opts, lb).unwrap();
            let mut h = Harness::with_features(net, f, 256).unwrap();
            // Buffers at offsets 0 to 15 from a 64-byte boundary. Without
            // MRG_RXBUF each holds a 1514-byte frame and its header; with
            // it, the two longest frames take several.
            let size = if mrg { 531 } else { 1531 };
            for i in 0..60u32 {
                let area = h.put(&vec![0u8; size as usize + 16]);
                let buf = Segment::new(area.addr + u64::from(i % 16), size);
                h.submit_segments(0, &[], &[buf]).unwrap();
            }
            let lens: Vec<usize> = (60..100).chain([127, 128, 129, 1000, 1514]).collect();
            let frames: Vec<Vec<u8>> = lens
                .iter()
                .enumerate()
                .map(|(i, &n)| frame(MAC_B, MAC_A, n, i as u8))
                .collect();
            for fr in &frames {
                h.submit(1, &[&NONE, fr], &[]).unwrap();
            }
            h.run().unwrap();
            let got = received(&mut h, 0);
            let data: Vec<Vec<u8>> = got.iter().map(|r| r.data.clone()).collect();
            assert_eq!(data, frames, "{format:?}, mrg {mrg}");
            // One buffer each, but for the two longest with MRG_RXBUF.
            let one_buffer = if mrg { frames.len() - 2 } else { frames.len() };
            assert_eq!(h.device().stats().rx_streamed, one_buffer as u64);
            assert!(h.broken_queues().is_empty());
        }
    }
}

#[test]
fn checksum_request_comes_back_to_a_guest_csum_driver() {
    let (mut h, _) = device(1, NetWorkers::One, all_features(1));
    post_rx(&mut h, 0, 4, 2048);
    let fr = udp_partial(MAC_B, MAC_A, b"hello", 1000, 53);
    transmit(&mut h, 0, &hdr(VIRTIO_NET_HDR_F_NEEDS_CSUM, 0, 34, 6), &fr);
    let got = received(&mut h, 0);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].flags(), VIRTIO_NET_HDR_F_NEEDS_CSUM);
    assert_eq!(got[0].csum(), (34, 6));
    assert_eq!(got[0].data, fr);
    // Without GUEST_CSUM the device completes it.
    let f = without(all_features(1), &[VIRTIO_NET_F_GUEST_CSUM]);
    let (mut h, _) = device(1, NetWorkers::One, f);
    post_rx(&mut h, 0, 4, 2048);
    transmit(&mut h, 0, &hdr(VIRTIO_NET_HDR_F_NEEDS_CSUM, 0, 34, 6), &fr);
    let got = received(&mut h, 0);
    assert_eq!(got[0].flags(), 0);
    assert!(udp_checksum_ok(&got[0].data));
}

#[test]
fn pairs_reflect_onto_themselves_with_a_worker_per_pair() {
    let f = all_features(2);
    let (mut h, _) = device(2, NetWorkers::PerPair, f);
    let q = ctrl_queue(2, f);
    assert_eq!(
        ctrl(
            &mut h,
            q,
            VIRTIO_NET_CTRL_MQ,
            VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET,
            &2u16.to_le_bytes()
        ),
        Some(VIRTIO_NET_OK)
    );
    post_rx(&mut h, 0, 8, 2048);
    post_rx(&mut h, 1, 8, 2048);
    transmit(&mut h, 1, &NONE, &frame(MAC_B, MAC_A, 100, 1));
    transmit(&mut h, 0, &NONE, &frame(MAC_B, MAC_A, 100, 2));
    let on1 = received(&mut h, 1);
    let on0 = received(&mut h, 0);
    assert_eq!(on1.len(), 1);
    assert_eq!(on1[0].data, frame(MAC_B, MAC_A, 100, 1));
    assert_eq!(on0.len(), 1);
    assert_eq!(on0[0].data, frame(MAC_B, MAC_A, 100, 2));
}

#[test]
fn receive_ring_exhaustion_holds_frames_until_buffers_come() {
    let (mut h, lb) = device(1, NetWorkers::One, all_features(1));
    for i in 0..10u8 {
        h.submit(1, &[&NONE, &frame(MAC_B, MAC_A, 64, i)], &[])
            .unwrap();
    }
    h.run().unwrap();
    assert!(received(&mut h, 0).is_empty());
    post_rx(&mut h, 0, 4, 2048);
    assert_eq!(received(&mut h, 0).len(), 4);
    post_rx(&mut h, 0, 16, 2048);
    let rest = received(&mut h, 0);
    assert_eq!(rest.len(), 6);
    assert_eq!(rest[5].data, frame(MAC_B, MAC_A, 64, 9));
    assert_eq!(lb.dropped(), 0);
}

/// While the host polls, adding buffers asks for no notification; once it
/// stops polling, the driver is asked to notify again.
#[test]
fn polling_host_suppresses_notifications_until_it_stops() {
    for event_idx in [false, true] {
        for packed in [false, true] {
            let mut f = all_features(1);
            if !event_idx {
                f &= !(1 << VIRTIO_F_EVENT_IDX);
            }
            if packed {
                f |= 1 << VIRTIO_F_RING_PACKED;
            }
            let what = format!("event_idx {event_idx}, packed {packed}");
            let (mut h, _) = device(1, NetWorkers::One, f);
            post_rx(&mut h, 0, 32, 2048);
            h.submit(1, &[&NONE, &frame(MAC_B, MAC_A, 64, 0)], &[])
                .unwrap();
            h.run().unwrap();
            // Idle and not polling: the transmitq wants to hear of frames.
            h.submit(1, &[&NONE, &frame(MAC_B, MAC_A, 64, 1)], &[])
                .unwrap();
            assert!(h.kick_wanted(1), "{what}");
            for i in 2..6u8 {
                h.run_polling().unwrap();
                h.submit(1, &[&NONE, &frame(MAC_B, MAC_A, 64, i)], &[])
                    .unwrap();
                assert!(!h.kick_wanted(1), "{what}: polling, round {i}");
            }
            // Polling ends: what was added meanwhile is processed, and the
            // driver must notify for the next frame.
            h.end_polling().unwrap();
            assert_eq!(received(&mut h, 0).len(), 6, "{what}");
            h.submit(1, &[&NONE, &frame(MAC_B, MAC_A, 64, 9)], &[])
                .unwrap();
            assert!(h.kick_wanted(1), "{what}: after polling");
        }
    }
}

/// While the host polls, the receive worker reads the backend on every
/// pass, so the backend is told not to ring its doorbell (an eventfd
/// write and read per burst, for nothing); when polling stops, frames
/// still waiting make the doorbell readable at once, so the sleeping
/// worker wakes for them.
#[test]
fn polling_receive_worker_silences_the_backend_doorbell() {
    let (mut h, lb) = device(1, NetWorkers::PerQueue, all_features(1));
    let bell = lb.rx_fd(0).unwrap();
    // No receive buffers: the worker holds RX_BATCH frames, the rest stay
    // in the backend.
    let extra = 8;
    for i in 0..RX_BATCH + extra {
        h.submit(1, &[&NONE, &frame(MAC_B, MAC_A, 64, i as u8)], &[])
            .unwrap();
    }
    for _ in 0..3 {
        h.run_polling().unwrap();
        assert!(!fd_readable(bell), "rung while polling");
    }
    h.end_polling().unwrap();
    assert!(fd_readable(bell), "frames wait: readable once not polling");
    post_rx(&mut h, 0, 64, 2048);
    h.run().unwrap();
    assert_eq!(received(&mut h, 0).len(), RX_BATCH + extra);
    assert!(!fd_readable(bell));
    assert_eq!(lb.reflected(), (RX_BATCH + extra) as u64);
}

/// With VIRTIO_F_IN_ORDER (offered by the network device, negotiated here)
/// a burst of received frames of different sizes keeps every frame's
/// length: receive buffers are only partly written, so each gets its own
/// used entry (VIRTIO 1.4 §2.7.9, §2.8.8: only buffers used completely
/// may share one).
#[test]
fn in_order_bursts_keep_every_frame_length() {
    for packed in [false, true] {
        let mut f = all_features(1);
        assert!(f & 1 << VIRTIO_F_IN_ORDER != 0, "offered");
        if packed {
            f |= 1 << VIRTIO_F_RING_PACKED;
        }
        let (mut h, _) = device(1, NetWorkers::One, f);
        post_rx(&mut h, 0, 16, 2048);
        let sizes = [60usize, 1000, 61, 1514, 64, 99];
        for (i, &n) in sizes.iter().enumerate() {
            h.submit(1, &[&NONE, &frame(MAC_B, MAC_A, n, i as u8)], &[])
                .unwrap();
        }
        h.run().unwrap();
        let got = received(&mut h, 0);
        let lens: Vec<usize> = got.iter().map(|r| r.data.len()).collect();
        assert_eq!(lens, sizes, "packed {packed}");
        for (r, (i, &n)) in got.iter().zip(sizes.iter().enumerate()) {
            assert_eq!(r.data, frame(MAC_B, MAC_A, n, i as u8));
        }
        assert!(h.broken_queues().is_empty());
    }
}
