//! What the network device's receive queue does with the buffers it
//! popped ahead of need (one per frame in hand, to prefetch them together):
//! used in the order posted, and given back to the ring unused when the
//! queue stops (split and packed, with a mergeable frame cut short), through
//! the in-process fake driver.

mod net_support;

use net_support::*;
use ringwork_device::harness::Harness;
use ringwork_device::net::*;
use ringwork_spec::net::ctrl::*;

const NONE: [u8; 12] = [0; 12];

/// The receive worker pops one buffer per frame in hand before filling
/// any (to prefetch them together); buffers popped for frames the filter
/// then drops serve the next frames in order, and `quiesce` gives the
/// unused ones back to the ring (not completed empty, which a driver counts
/// as an error), where the restarted worker finds them again.
#[test]
fn buffers_popped_ahead_are_used_in_order_or_given_back() {
    let sw = Switch::new();
    let f = all_features(1);
    let q = ctrl_queue(1, f);
    let mut a = port(&sw, MAC_A, 1, f);
    let mut c = port(&sw, MAC_C, 1, f);
    assert_eq!(
        ctrl(
            &mut c,
            q,
            VIRTIO_NET_CTRL_RX,
            VIRTIO_NET_CTRL_RX_PROMISC,
            &[0]
        ),
        Some(VIRTIO_NET_OK)
    );
    post_rx(&mut c, 0, 4, 2048);
    // One frame C takes, then two for an unknown port (flooded, and
    // dropped by C's filter), all waiting before C's worker runs.
    let first = frame(MacAddr::BROADCAST, MAC_A, 100, 1);
    transmit(&mut a, 0, &NONE, &first);
    transmit(&mut a, 0, &NONE, &frame(MAC_B, MAC_A, 100, 2));
    transmit(&mut a, 0, &NONE, &frame(MAC_B, MAC_A, 100, 3));
    c.run().unwrap();
    let done = c.completed(0).unwrap();
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].1[12..], first[..]);
    assert_eq!(c.device().stats().rx_filtered, 2);
    // The next frame lands in the next buffer the driver posted.
    let second = broadcast_lands_in_one_buffer(&mut a, &mut c, 4);
    assert_eq!(second, done[0].0 + 1, "buffers used in the order posted");
    // Stopping gives the buffer popped for the third frame back to the
    // ring: nothing is completed. Started again, the device fills that
    // buffer with the next frame.
    c.quiesce().unwrap();
    let back = c.completed(0).unwrap();
    assert!(back.is_empty(), "{back:?}");
    c.restart_workers(f).unwrap();
    let third = broadcast_lands_in_one_buffer(&mut a, &mut c, 5);
    assert_eq!(
        third,
        second + 1,
        "the buffer given back is the next one used"
    );
    assert!(c.broken_queues().is_empty());
}

/// `from` sends a 100-byte broadcast frame (`seed`); `to` receives exactly
/// it, in one buffer, whose token is returned.
fn broadcast_lands_in_one_buffer(from: &mut Harness<Net>, to: &mut Harness<Net>, seed: u8) -> u64 {
    let f = frame(MacAddr::BROADCAST, MAC_A, 100, seed);
    transmit(from, 0, &NONE, &f);
    to.run().unwrap();
    let done = to.completed(0).unwrap();
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].1[12..], f[..]);
    done[0].0
}

/// A frame spread over mergeable buffers and cut short by an empty ring
/// holds the buffers it took; stopping gives them back to the ring (split
/// and packed), and after a restart the next frame starts in the first of
/// them.
#[test]
fn partial_mergeable_frame_gives_its_buffers_back_at_quiesce() {
    for packed in [false, true] {
        let sw = Switch::new();
        let f =
            all_features(1) | u64::from(packed) << ringwork_spec::features::VIRTIO_F_RING_PACKED;
        let mut a = port(&sw, MAC_A, 1, f);
        let mut b = port(&sw, MAC_B, 1, f);
        let first = b.submit(0, &[], &[256]).unwrap();
        b.submit(0, &[], &[256]).unwrap();
        // 12 + 1000 bytes need four 256-byte buffers: two are taken and
        // the frame waits for more.
        transmit(&mut a, 0, &NONE, &frame(MAC_B, MAC_A, 1000, 1));
        b.run().unwrap();
        assert!(b.completed(0).unwrap().is_empty());
        b.quiesce().unwrap();
        assert!(b.completed(0).unwrap().is_empty(), "packed {packed}");
        b.restart_workers(f).unwrap();
        post_rx(&mut b, 0, 2, 256);
        let next = frame(MAC_B, MAC_A, 1000, 2);
        transmit(&mut a, 0, &NONE, &next);
        b.run().unwrap();
        let done = b.completed(0).unwrap();
        let tokens: Vec<_> = done.iter().map(|d| d.0).collect();
        assert_eq!(
            tokens,
            (first..first + 4).collect::<Vec<_>>(),
            "packed {packed}"
        );
        let mut data = done[0].1[12..].to_vec();
        for d in &done[1..] {
            data.extend_from_slice(&d.1);
        }
        assert_eq!(data, next);
        assert!(b.broken_queues().is_empty());
    }
}
