//! The network device through the in-process fake driver, several devices
//! on one userspace switch: frames between ports (VIRTIO 1.4 §5.1.9.2,
//! §5.1.9.4), learning and flooding, MRG_RXBUF (§5.1.9.3), checksum
//! offload with software completion, receive buffer exhaustion and
//! recovery, multiqueue steering (§5.1.9.5.6), hostile transmit and
//! receive chains, the configuration space (§5.1.4).

mod net_support;

use net_support::*;
use ringwork_device::harness::Harness;
use ringwork_device::model::Device;
use ringwork_device::net::*;
use ringwork_queue::{RingFormat, Segment};
use ringwork_spec::features::{VIRTIO_F_ADMIN_VQ, VIRTIO_F_RING_RESET, VIRTIO_F_VERSION_1};
use ringwork_spec::net::ctrl::*;
use ringwork_spec::net::*;
use std::sync::Arc;

const NONE: [u8; 12] = [0; 12];

#[test]
fn frames_cross_the_switch_both_ways() {
    let sw = Switch::new();
    let f = all_features(1);
    let mut a = port(&sw, MAC_A, 1, f);
    let mut b = port(&sw, MAC_B, 1, f);
    post_rx(&mut a, 0, 8, 2048);
    post_rx(&mut b, 0, 8, 2048);
    let to_b = frame(MAC_B, MAC_A, 1000, 1);
    transmit(&mut a, 0, &NONE, &to_b);
    // Transmit buffers are completed with used length 0.
    let tx_done = a.completed(1).unwrap();
    assert_eq!(tx_done.len(), 1);
    assert!(tx_done[0].1.is_empty());
    let got = received(&mut b, 0);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].data, to_b);
    assert_eq!(got[0].flags(), 0);
    assert_eq!(got[0].hdr[1], VIRTIO_NET_HDR_GSO_NONE);
    assert_eq!(got[0].num_buffers(), 1);
    let to_a = frame(MAC_A, MAC_B, 60, 2);
    transmit(&mut b, 0, &NONE, &to_a);
    let got = received(&mut a, 0);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].data, to_a);
    let (sa, sb) = (a.device().stats(), b.device().stats());
    assert_eq!((sa.tx_packets, sa.rx_packets), (1, 1));
    assert_eq!((sa.rx_bytes, sb.rx_bytes), (60, 1000));
    assert_eq!((sb.tx_packets, sb.rx_packets), (1, 1));
    assert!(a.broken_queues().is_empty() && b.broken_queues().is_empty());
}

#[test]
fn learning_switch_floods_unknown_and_forwards_known() {
    let sw = Switch::new();
    let f = all_features(1);
    let q = ctrl_queue(1, f);
    let mut hs: Vec<_> = [MAC_A, MAC_B, MAC_C]
        .into_iter()
        .map(|m| port(&sw, m, 1, f))
        .collect();
    for h in &mut hs {
        // Promiscuous off, so only the switch decides who sees what.
        assert_eq!(
            ctrl(h, q, VIRTIO_NET_CTRL_RX, VIRTIO_NET_CTRL_RX_PROMISC, &[0]),
            Some(VIRTIO_NET_OK)
        );
        post_rx(h, 0, 8, 2048);
    }
    // B is unknown yet: A's frame is flooded; C's filter drops it.
    transmit(&mut hs[0], 0, &NONE, &frame(MAC_B, MAC_A, 100, 1));
    assert_eq!(received(&mut hs[1], 0).len(), 1);
    assert_eq!(received(&mut hs[2], 0).len(), 0);
    assert_eq!(hs[2].device().stats().rx_filtered, 1);
    // B answers: now the switch knows B and sends A's frames only there.
    transmit(&mut hs[1], 0, &NONE, &frame(MAC_A, MAC_B, 100, 2));
    assert_eq!(received(&mut hs[0], 0).len(), 1);
    assert_eq!(sw.lookup(MAC_B), Some(1));
    transmit(&mut hs[0], 0, &NONE, &frame(MAC_B, MAC_A, 100, 3));
    assert_eq!(received(&mut hs[1], 0).len(), 1);
    assert_eq!(received(&mut hs[2], 0).len(), 0);
    assert_eq!(
        hs[2].device().stats().rx_filtered,
        1,
        "not even flooded to C"
    );
    // Broadcast reaches everyone else, not the sender.
    transmit(
        &mut hs[2],
        0,
        &NONE,
        &frame(MacAddr::BROADCAST, MAC_C, 100, 4),
    );
    assert_eq!(received(&mut hs[0], 0).len(), 1);
    assert_eq!(received(&mut hs[1], 0).len(), 1);
    assert_eq!(received(&mut hs[2], 0).len(), 0);
    // A promiscuous port sees known unicast between others.
    assert_eq!(
        ctrl(
            &mut hs[2],
            q,
            VIRTIO_NET_CTRL_RX,
            VIRTIO_NET_CTRL_RX_PROMISC,
            &[1]
        ),
        Some(VIRTIO_NET_OK)
    );
    transmit(&mut hs[0], 0, &NONE, &frame(MAC_B, MAC_A, 100, 5));
    assert_eq!(received(&mut hs[1], 0).len(), 1);
    assert_eq!(received(&mut hs[2], 0).len(), 1);
    // A port that goes away takes its addresses along.
    let c = hs.pop().unwrap();
    drop(c);
    assert_eq!(sw.num_ports(), 2);
    assert_eq!(sw.lookup(MAC_C), None);
}

#[test]
fn mrg_rxbuf_spreads_a_frame_over_buffers() {
    let sw = Switch::new();
    let f = all_features(1);
    let mut a = port(&sw, MAC_A, 1, f);
    let mut b = port(&sw, MAC_B, 1, f);
    post_rx(&mut b, 0, 8, 256);
    let big = frame(MAC_B, MAC_A, 1000, 7);
    transmit(&mut a, 0, &NONE, &big);
    b.run().unwrap();
    let done = b.completed(0).unwrap();
    // 12 + 1000 bytes over 256-byte buffers: 4 buffers, all but the last full.
    let lens: Vec<usize> = done.iter().map(|d| d.1.len()).collect();
    assert_eq!(lens, [256, 256, 256, 1012 - 768]);
    assert_eq!(u16::from_le_bytes([done[0].1[10], done[0].1[11]]), 4);
    let mut data = done[0].1[12..].to_vec();
    for d in &done[1..] {
        data.extend_from_slice(&d.1);
    }
    assert_eq!(data, big);
    // A frame that fits one buffer says num_buffers 1.
    transmit(&mut a, 0, &NONE, &frame(MAC_B, MAC_A, 200, 8));
    let got = received(&mut b, 0);
    assert_eq!((got.len(), got[0].num_buffers(), got[0].buffers), (1, 1, 1));
}

#[test]
fn mrg_rxbuf_waits_for_more_buffers_mid_frame() {
    let sw = Switch::new();
    let f = all_features(1);
    let mut a = port(&sw, MAC_A, 1, f);
    let mut b = port(&sw, MAC_B, 1, f);
    post_rx(&mut b, 0, 2, 256);
    let big = frame(MAC_B, MAC_A, 1000, 9);
    transmit(&mut a, 0, &NONE, &big);
    b.run().unwrap();
    assert!(
        b.completed(0).unwrap().is_empty(),
        "nothing published early"
    );
    post_rx(&mut b, 0, 2, 256);
    let got = received(&mut b, 0);
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].buffers, got[0].data.clone()), (4, big));
}

#[test]
fn without_mrg_rxbuf_a_small_buffer_drops_the_frame() {
    let sw = Switch::new();
    let f = without(all_features(1), &[VIRTIO_NET_F_MRG_RXBUF]);
    let mut a = port(&sw, MAC_A, 1, f);
    let mut b = port(&sw, MAC_B, 1, f);
    post_rx(&mut b, 0, 1, 500);
    post_rx(&mut b, 0, 1, 1526);
    transmit(&mut a, 0, &NONE, &frame(MAC_B, MAC_A, 1000, 1));
    transmit(&mut a, 0, &NONE, &frame(MAC_B, MAC_A, 1000, 2));
    let got = received(&mut b, 0);
    assert_eq!(got.len(), 2);
    assert!(
        got[0].data.is_empty(),
        "too small: returned with used length 0"
    );
    assert_eq!(got[1].data, frame(MAC_B, MAC_A, 1000, 2));
    // Without MRG_RXBUF (but with VERSION_1) num_buffers is still 1.
    assert_eq!(got[1].num_buffers(), 1);
    assert_eq!(b.device().stats().rx_buffer_too_small, 1);
}

#[test]
fn legacy_header_is_ten_bytes() {
    let sw = Switch::new();
    let f = without(
        all_features(1),
        &[VIRTIO_NET_F_MRG_RXBUF, VIRTIO_F_VERSION_1],
    );
    let mut a = port(&sw, MAC_A, 1, f);
    let mut b = port(&sw, MAC_B, 1, f);
    post_rx(&mut b, 0, 1, 2048);
    let fr = frame(MAC_B, MAC_A, 100, 3);
    transmit(&mut a, 0, &NONE[..10], &fr);
    b.run().unwrap();
    let done = b.completed(0).unwrap();
    assert_eq!(done[0].1.len(), 110);
    assert_eq!(&done[0].1[10..], &fr[..]);
}

#[test]
fn checksum_completed_in_software_for_a_port_without_guest_csum() {
    let sw = Switch::new();
    let f = all_features(1);
    let mut a = port(&sw, MAC_A, 1, f);
    // B cannot take partial checksums, C can.
    let mut b = port(&sw, MAC_B, 1, without(f, &[VIRTIO_NET_F_GUEST_CSUM]));
    let mut c = port(&sw, MAC_C, 1, f);
    post_rx(&mut b, 0, 4, 2048);
    post_rx(&mut c, 0, 4, 2048);
    let partial = udp_partial(
        MacAddr::BROADCAST,
        MAC_A,
        b"checksum me, please",
        1000,
        2000,
    );
    assert!(!udp_checksum_ok(&partial));
    transmit(
        &mut a,
        0,
        &hdr(VIRTIO_NET_HDR_F_NEEDS_CSUM, 0, 34, 6),
        &partial,
    );
    let gb = received(&mut b, 0);
    assert_eq!(gb.len(), 1);
    assert_eq!(gb[0].flags(), 0, "flags zero without GUEST_CSUM");
    assert!(udp_checksum_ok(&gb[0].data), "checksum completed");
    assert_eq!(gb[0].data[..40], partial[..40]);
    assert_eq!(gb[0].data[42..], partial[42..]);
    let gc = received(&mut c, 0);
    assert_eq!(gc[0].flags(), VIRTIO_NET_HDR_F_NEEDS_CSUM);
    assert_eq!(gc[0].csum(), (34, 6));
    assert_eq!(gc[0].data, partial, "passed on untouched");
    // A broken IPv4 header checksum in front: NEEDS_CSUM would claim it
    // valid (§5.1.9.4.1), so C gets the checksum completed instead.
    let mut bad_ip = partial.clone();
    bad_ip[24] ^= 0xff;
    transmit(
        &mut a,
        0,
        &hdr(VIRTIO_NET_HDR_F_NEEDS_CSUM, 0, 34, 6),
        &bad_ip,
    );
    let gc = received(&mut c, 0);
    assert_eq!(gc[0].flags(), 0);
    assert!(udp_checksum_ok(&gc[0].data));
    assert_eq!(received(&mut b, 0).len(), 1);
}

#[test]
fn rx_exhaustion_drops_then_recovers() {
    let sw = Switch::new();
    let f = all_features(1);
    let mut a = port(&sw, MAC_A, 1, f);
    let b_port = Arc::new(sw.add_port(1).unwrap());
    let b_dev = Net::new(NetOptions::new(MAC_B), b_port.clone()).unwrap();
    let mut b = Harness::with_features(b_dev, f, 256).unwrap();
    // B has no receive buffers; A sends more than B's inbox holds.
    let n = INBOX_FRAMES + 200;
    let mut tx_done = 0;
    for i in 0..n {
        a.submit(1, &[&NONE, &frame(MAC_B, MAC_A, 64, i as u8)], &[])
            .unwrap();
        if i % 100 == 99 {
            a.run().unwrap();
            b.run().unwrap();
            tx_done += a.completed(1).unwrap().len();
        }
    }
    a.run().unwrap();
    b.run().unwrap();
    tx_done += a.completed(1).unwrap().len();
    assert_eq!(a.device().stats().tx_packets, n as u64, "tx never stalls");
    assert_eq!(tx_done, n);
    // The switch counted what B's full inbox refused.
    let ps = b_port.stats();
    // The inbox held INBOX_FRAMES, the worker one batch more; the rest
    // were dropped.
    let held = INBOX_FRAMES + RX_BATCH;
    assert_eq!(ps.delivered, held as u64);
    assert_eq!(ps.dropped, n as u64 - ps.delivered);
    assert!(b.completed(0).unwrap().is_empty());
    assert!(b.broken_queues().is_empty());
    // Recovery: buffers arrive, the held frames flow, then new ones.
    post_rx(&mut b, 0, 256, 2048);
    let got = received(&mut b, 0);
    assert_eq!(got.len(), 256);
    assert_eq!(got[0].data, frame(MAC_B, MAC_A, 64, 0), "oldest first");
    let mut total = got.len();
    while total < held {
        post_rx(&mut b, 0, 256, 2048);
        let got = received(&mut b, 0);
        assert!(!got.is_empty(), "stalled after {total}");
        total += got.len();
    }
    assert_eq!(total, held);
    transmit(&mut a, 0, &NONE, &frame(MAC_B, MAC_A, 64, 99));
    let got = received(&mut b, 0);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].data, frame(MAC_B, MAC_A, 64, 99));
}

#[test]
fn multiqueue_pairs_and_steering() {
    let sw = Switch::new();
    let f = all_features(4);
    let q = ctrl_queue(4, f);
    assert_eq!(q, 8);
    let mut a = port(&sw, MAC_A, 4, f);
    let mut b = port(&sw, MAC_B, 4, f);
    for p in 0..4 {
        post_rx(&mut b, p, 128, 2048);
        post_rx(&mut a, p, 16, 2048);
    }
    let flows = |a: &mut Harness<Net>| {
        for sport in 0..32u16 {
            let fr = udp_partial(MAC_B, MAC_A, b"x", 1000 + sport, 53);
            transmit(a, 0, &NONE, &fr);
        }
    };
    // After reset only receiveq1 is used.
    flows(&mut a);
    let counts: Vec<usize> = (0..4).map(|p| received(&mut b, p).len()).collect();
    assert_eq!(counts, [32, 0, 0, 0]);
    assert_eq!(
        ctrl(
            &mut b,
            q,
            VIRTIO_NET_CTRL_MQ,
            VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET,
            &3u16.to_le_bytes()
        ),
        Some(VIRTIO_NET_OK)
    );
    assert_eq!(b.device().active_pairs(), 3);
    flows(&mut a);
    let counts: Vec<usize> = (0..4).map(|p| received(&mut b, p).len()).collect();
    assert_eq!(counts.iter().sum::<usize>(), 32);
    assert_eq!(counts[3], 0, "never beyond virtqueue_pairs");
    assert!(counts.iter().filter(|&&c| c > 0).count() >= 2, "{counts:?}");
    // A flow B sends on transmitq3 comes back on receiveq3.
    let from_b = udp_partial(MAC_A, MAC_B, b"y", 4242, 4343);
    transmit(&mut b, 2, &NONE, &from_b);
    assert_eq!(received(&mut a, 0).len(), 1);
    let mut reply = udp_partial(MAC_B, MAC_A, b"z", 4343, 4242);
    reply[26..30].copy_from_slice(&[10, 0, 0, 2]);
    reply[30..34].copy_from_slice(&[10, 0, 0, 1]);
    transmit(&mut a, 0, &NONE, &reply);
    assert_eq!(received(&mut b, 2).len(), 1);
    // Back to one pair.
    assert_eq!(
        ctrl(
            &mut b,
            q,
            VIRTIO_NET_CTRL_MQ,
            VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET,
            &1u16.to_le_bytes()
        ),
        Some(VIRTIO_NET_OK)
    );
    flows(&mut a);
    let counts: Vec<usize> = (0..4).map(|p| received(&mut b, p).len()).collect();
    assert_eq!(counts, [32, 0, 0, 0]);
}

/// A frontend that keeps the controlq to itself (QEMU's `-netdev
/// vhost-user`: MQ negotiated with the device, CTRL_VQ not) chooses the
/// queue pairs by running their rings: the leading pairs whose receiveq
/// and transmitq both run are in use, at least one.
#[test]
fn mq_without_ctrl_vq_follows_the_running_rings() {
    let sw = Switch::new();
    let f = without(
        all_features(4),
        &[
            VIRTIO_NET_F_CTRL_VQ,
            VIRTIO_NET_F_CTRL_RX,
            VIRTIO_NET_F_CTRL_RX_EXTRA,
            VIRTIO_NET_F_CTRL_VLAN,
            VIRTIO_NET_F_CTRL_MAC_ADDR,
            VIRTIO_NET_F_GUEST_ANNOUNCE,
        ],
    );
    let mut a = port(&sw, MAC_A, 4, f);
    let mut b = port(&sw, MAC_B, 4, f);
    for p in 0..4 {
        post_rx(&mut b, p, 128, 2048);
        post_rx(&mut a, p, 16, 2048);
    }
    let flows = |a: &mut Harness<Net>, b: &mut Harness<Net>| {
        for sport in 0..32u16 {
            let fr = udp_partial(MAC_B, MAC_A, b"x", 1000 + sport, 53);
            transmit(a, 0, &NONE, &fr);
        }
        (0..4).map(|p| received(b, p).len()).collect::<Vec<usize>>()
    };
    assert_eq!(b.device().active_pairs(), 1);
    assert_eq!(flows(&mut a, &mut b), [32, 0, 0, 0]);
    // Pairs 1 and 2 run, pair 3 has only its receiveq: two pairs in use.
    for q in [0, 1, 2, 3, 6] {
        b.device().queue_running(q, true);
    }
    assert_eq!(b.device().active_pairs(), 2);
    let counts = flows(&mut a, &mut b);
    assert_eq!(counts.iter().sum::<usize>(), 32);
    assert_eq!(counts[2..], [0, 0], "never beyond the running pairs");
    assert!(counts[1] > 0, "{counts:?}");
    // A gap: pair 2's transmitq stops, then pair 3 runs; still two.
    b.device().queue_running(7, true);
    assert_eq!(b.device().active_pairs(), 2);
    b.device().queue_running(4, true);
    b.device().queue_running(5, true);
    assert_eq!(b.device().active_pairs(), 4);
    b.device().queue_running(3, false);
    assert_eq!(b.device().active_pairs(), 1);
    assert_eq!(flows(&mut a, &mut b), [32, 0, 0, 0]);
    // Index out of range: ignored. Reset: one pair.
    b.device().queue_running(999, true);
    b.device().queue_running(3, true);
    assert_eq!(b.device().active_pairs(), 4);
    b.device().reset();
    assert_eq!(b.device().active_pairs(), 1);
}

#[test]
fn without_mq_the_controlq_is_queue_two() {
    let sw = Switch::new();
    let f = without(all_features(4), &[VIRTIO_NET_F_MQ]);
    let mut b = port(&sw, MAC_B, 4, f);
    assert_eq!(ctrl_queue(4, f), 2);
    assert_eq!(
        ctrl(
            &mut b,
            2,
            VIRTIO_NET_CTRL_RX,
            VIRTIO_NET_CTRL_RX_PROMISC,
            &[0]
        ),
        Some(VIRTIO_NET_OK)
    );
    assert!(!b.device().rx_filter().promisc);
}

#[test]
fn hostile_transmit_chains_are_dropped_not_fatal() {
    let sw = Switch::new();
    let f = all_features(1);
    let mut a = port(&sw, MAC_A, 1, f);
    let mut b = port(&sw, MAC_B, 1, f);
    post_rx(&mut b, 0, 16, 2048);
    let fr = frame(MAC_B, MAC_A, 100, 1);
    // A header shorter than 12 bytes.
    a.submit(1, &[&NONE[..5]], &[]).unwrap();
    // A frame shorter than an Ethernet header.
    a.submit(1, &[&NONE, &fr[..10]], &[]).unwrap();
    // A GSO frame (no HOST_TSO offered).
    a.submit(1, &[&hdr(0, VIRTIO_NET_HDR_GSO_TCPV4, 0, 0), &fr], &[])
        .unwrap();
    // A checksum request pointing past the frame.
    a.submit(1, &[&hdr(VIRTIO_NET_HDR_F_NEEDS_CSUM, 0, 90, 16), &fr], &[])
        .unwrap();
    // Oversized: one byte more than MAX_FRAME_LEN.
    let huge = vec![0u8; MAX_FRAME_LEN + 1];
    a.submit(1, &[&NONE, &huge], &[]).unwrap();
    // A device-writable part is ignored; unknown flag bits too.
    a.submit(1, &[&hdr(0x80, VIRTIO_NET_HDR_GSO_ECN, 0, 0), &fr], &[8])
        .unwrap();
    a.run().unwrap();
    assert_eq!(a.completed(1).unwrap().len(), 6, "every chain completed");
    let s = a.device().stats();
    assert_eq!((s.tx_malformed, s.tx_packets), (5, 1));
    assert_eq!(received(&mut b, 0).len(), 1);
    // The largest allowed frame goes through (to a port with big buffers).
    let max = frame(MAC_B, MAC_A, MAX_FRAME_LEN, 5);
    transmit(&mut a, 0, &NONE, &max);
    assert_eq!(a.device().stats().tx_packets, 2);
    // ... and is dropped by B as larger than its MTU.
    assert!(received(&mut b, 0).is_empty());
    assert_eq!(b.device().stats().rx_oversized, 1);
    assert!(a.broken_queues().is_empty());
}

#[test]
fn transmit_chain_outside_memory_breaks_only_that_queue() {
    let sw = Switch::new();
    let f = all_features(1);
    let mut a = port(&sw, MAC_A, 1, f);
    let mut b = port(&sw, MAC_B, 1, f);
    post_rx(&mut a, 0, 4, 2048);
    a.submit_segments(1, &[Segment::new(1 << 40, 64)], &[])
        .unwrap();
    assert!(a.run().is_err());
    assert_eq!(a.broken_queues(), [1]);
    // A still receives.
    transmit(&mut b, 0, &NONE, &frame(MAC_A, MAC_B, 64, 1));
    assert_eq!(received(&mut a, 0).len(), 1);
}

#[test]
fn receive_buffers_outside_memory_break_only_that_queue() {
    let sw = Switch::new();
    let f = all_features(1);
    let mut a = port(&sw, MAC_A, 1, f);
    let mut b = port(&sw, MAC_B, 1, f);
    b.submit_segments(0, &[], &[Segment::new(1 << 40, 2048)])
        .unwrap();
    transmit(&mut a, 0, &NONE, &frame(MAC_B, MAC_A, 64, 1));
    assert!(b.run().is_err());
    assert_eq!(b.broken_queues(), [0]);
    // B's transmit side still works.
    post_rx(&mut a, 0, 1, 2048);
    transmit(&mut b, 0, &NONE, &frame(MAC_A, MAC_B, 64, 2));
    assert_eq!(received(&mut a, 0).len(), 1);
    // A readable-only chain on the receiveq of another port: with
    // MRG_RXBUF it cannot hold a header and is returned empty.
    let mut c = port(&sw, MAC_C, 1, f);
    let junk = c.put(&[1, 2, 3]);
    c.submit_segments(0, &[junk], &[]).unwrap();
    post_rx(&mut c, 0, 1, 2048);
    transmit(&mut a, 0, &NONE, &frame(MAC_C, MAC_A, 64, 3));
    let got = received(&mut c, 0);
    assert_eq!(got.len(), 2);
    assert!(got[0].data.is_empty());
    assert_eq!(got[1].data, frame(MAC_C, MAC_A, 64, 3));
}

#[test]
fn packed_rings_carry_frames_too() {
    let sw = Switch::new();
    let mk = |mac| Net::new(NetOptions::new(mac), Arc::new(sw.add_port(1).unwrap())).unwrap();
    let mut a = Harness::new(mk(MAC_A), RingFormat::Packed).unwrap();
    let mut b = Harness::new(mk(MAC_B), RingFormat::Packed).unwrap();
    post_rx(&mut b, 0, 4, 300);
    let fr = frame(MAC_B, MAC_A, 1000, 4);
    transmit(&mut a, 0, &NONE, &fr);
    let got = received(&mut b, 0);
    assert_eq!((got.len(), got[0].buffers), (1, 4));
    assert_eq!(got[0].data, fr);
}

#[test]
fn features_and_config_space() {
    let sw = Switch::new();
    let opts = NetOptions {
        queue_pairs: 3,
        mtu: 9000,
        speed: 25_000,
        ..NetOptions::new(MAC_A)
    };
    let dev = Net::new(opts, Arc::new(sw.add_port(3).unwrap())).unwrap();
    let f = dev.features();
    for bit in [
        VIRTIO_NET_F_CSUM,
        VIRTIO_NET_F_GUEST_CSUM,
        VIRTIO_NET_F_MTU,
        VIRTIO_NET_F_MAC,
        VIRTIO_NET_F_MRG_RXBUF,
        VIRTIO_NET_F_STATUS,
        VIRTIO_NET_F_CTRL_VQ,
        VIRTIO_NET_F_CTRL_RX,
        VIRTIO_NET_F_CTRL_VLAN,
        VIRTIO_NET_F_CTRL_RX_EXTRA,
        VIRTIO_NET_F_GUEST_ANNOUNCE,
        VIRTIO_NET_F_MQ,
        VIRTIO_NET_F_CTRL_MAC_ADDR,
        VIRTIO_NET_F_SPEED_DUPLEX,
        VIRTIO_F_VERSION_1,
    ] {
        assert!(f >> bit & 1 == 1, "feature {bit} offered");
    }
    for bit in [
        VIRTIO_NET_F_HOST_TSO4,
        VIRTIO_NET_F_HOST_TSO6,
        VIRTIO_NET_F_HOST_UFO,
        VIRTIO_NET_F_GUEST_TSO4,
        VIRTIO_NET_F_GUEST_UFO,
        VIRTIO_NET_F_HASH_REPORT,
        VIRTIO_NET_F_RSS,
        // What CONFORMANCE.md counts as vacuously satisfied: inner header
        // hash (§5.1.9.4.4.4), notification coalescing (§5.1.9.5.10.6),
        // device statistics (§5.1.9.5.11.12), RSC_INFO (§5.1.9.4.1), and
        // the core features a net queue reset (§5.1.9.5.6.2) and flow
        // filters' administration commands (§5.1.9.6.4) need.
        VIRTIO_NET_F_HASH_TUNNEL,
        VIRTIO_NET_F_NOTF_COAL,
        VIRTIO_NET_F_VQ_NOTF_COAL,
        VIRTIO_NET_F_DEVICE_STATS,
        VIRTIO_NET_F_RSC_EXT,
        VIRTIO_F_RING_RESET,
        VIRTIO_F_ADMIN_VQ,
    ] {
        assert!(f >> bit & 1 == 0, "feature {bit} not offered");
    }
    // RSS contexts (§5.1.9.5.8.3) and IPsec (§5.1.9.4.1, §5.1.9.7.4) are
    // bits beyond 63, which a device's 64-bit feature word cannot offer.
    const _: () = assert!(VIRTIO_NET_F_RSS_CONTEXT >= 64 && VIRTIO_NET_F_IPSEC >= 64);
    // Every dependency of §5.1.3.1 holds among the offered bits.
    let set = ringwork_spec::features::FeatureSet::from(f);
    ringwork_spec::features::check_dependencies(&set, NET_FEATURE_RULES).unwrap();
    assert_eq!(dev.num_queues(), 7);
    let c = dev.config();
    assert_eq!(c.len(), NET_CONFIG_SIZE);
    let cfg = NetConfig::new_checked(&c[..]).unwrap();
    assert_eq!(cfg.mac(), MAC_A.0);
    assert_eq!(cfg.status(), VIRTIO_NET_S_LINK_UP);
    assert_eq!(cfg.max_virtqueue_pairs(), 3);
    assert_eq!(cfg.mtu(), 9000);
    assert_eq!((cfg.speed(), cfg.duplex()), (25_000, DUPLEX_FULL));
    dev.set_link_up(false);
    assert_eq!(
        NetConfig::new_checked(&dev.config()[..]).unwrap().status(),
        0
    );
    // One queue pair: no MQ.
    let one = Net::new(NetOptions::new(MAC_B), Arc::new(sw.add_port(1).unwrap())).unwrap();
    assert_eq!(one.features() >> VIRTIO_NET_F_MQ & 1, 0);
    assert_eq!(one.num_queues(), 3);
}

#[test]
fn option_errors() {
    let sw = Switch::new();
    let bad = [
        NetOptions::new(MacAddr([0x01, 0, 0x5e, 0, 0, 1])),
        NetOptions {
            queue_pairs: 0,
            ..NetOptions::new(MAC_A)
        },
        NetOptions {
            queue_pairs: MAX_QUEUE_PAIRS + 1,
            ..NetOptions::new(MAC_A)
        },
        NetOptions {
            mtu: 67,
            ..NetOptions::new(MAC_A)
        },
        NetOptions {
            mtu: MAX_MTU + 1,
            ..NetOptions::new(MAC_A)
        },
        NetOptions {
            queue_size: 1000,
            ..NetOptions::new(MAC_A)
        },
    ];
    for o in bad {
        let port = Arc::new(sw.add_port(1).unwrap());
        assert!(Net::new(o.clone(), port).is_err(), "{o:?} accepted");
    }
}

/// The receive header is compared with what the buffer holds and stored
/// only when it differs (a cache-line optimisation): whatever the buffer
/// held before, the driver gets exactly the right header, including a
/// buffer whose old header differs only in `num_buffers`.
#[test]
fn receive_header_is_right_whatever_the_buffer_held() {
    let sw = Switch::new();
    let f = all_features(1);
    let mut a = port(&sw, MAC_A, 1, f);
    let mut b = port(&sw, MAC_B, 1, f);
    let mut want = [0u8; 12];
    want[10] = 1; // num_buffers 1, nothing else set
    let mut stale_count = want;
    stale_count[10] = 2;
    let olds: [Vec<u8>; 4] = [
        vec![0xaa; 2048],
        [&want[..], &[0x55; 2036]].concat(),
        [&stale_count[..], &[0x55; 2036]].concat(),
        [&[1u8][..], &want[1..], &[0; 2036]].concat(),
    ];
    for old in &olds {
        let seg = b.put(old);
        b.submit_segments(0, &[], &[seg]).unwrap();
    }
    let frames: Vec<Vec<u8>> = (0..olds.len())
        .map(|i| frame(MAC_B, MAC_A, 60 + 100 * i, i as u8))
        .collect();
    for f in &frames {
        transmit(&mut a, 0, &NONE, f);
    }
    let got = received(&mut b, 0);
    assert_eq!(got.len(), frames.len());
    for (i, (rx, f)) in got.iter().zip(&frames).enumerate() {
        assert_eq!(rx.hdr, want, "buffer {i}");
        assert_eq!(&rx.data, f, "buffer {i}");
    }
}
