//! The network device's control queue (VIRTIO 1.4 §5.1.9.5) through the
//! in-process fake driver: every command the device supports, its effect
//! on the frames a port receives, and malformed or unnegotiated commands
//! (VIRTIO_NET_ERR, state unchanged, never a panic or a broken queue).

mod net_support;

use std::sync::atomic::Ordering;

use net_support::*;
use ringwork_device::harness::Harness;
use ringwork_device::model::Device;
use ringwork_device::net::*;
use ringwork_queue::Segment;
use ringwork_spec::net::ctrl::*;
use ringwork_spec::net::*;

const NONE: [u8; 12] = [0; 12];
const OK: Option<u8> = Some(VIRTIO_NET_OK);
const ERR: Option<u8> = Some(VIRTIO_NET_ERR);
const MCAST: MacAddr = MacAddr([0x01, 0, 0x5e, 0, 0, 0x42]);
const OTHER: MacAddr = MacAddr([0x52, 0x54, 0, 0, 0, 0x99]);

/// A sender and a receiver on a switch, the receiver with buffers.
fn setup(features: u64) -> (Switch, Harness<Net>, Harness<Net>, u16) {
    let sw = Switch::new();
    let a = port(&sw, MAC_A, 1, features);
    let mut b = port(&sw, MAC_B, 1, features);
    post_rx(&mut b, 0, 64, 2048);
    (sw, a, b, ctrl_queue(1, features))
}

/// Whether `b` receives a frame `a` sends to `dst` (optionally tagged).
fn gets(a: &mut Harness<Net>, b: &mut Harness<Net>, dst: MacAddr, vlan: Option<u16>) -> bool {
    let mut f = frame(dst, MAC_A, 80, 1);
    if let Some(v) = vlan {
        let tag = [0x81, 0x00, (v >> 8) as u8, v as u8];
        f.splice(12..12, tag);
    }
    transmit(a, 0, &NONE, &f);
    match received(b, 0).as_slice() {
        [] => false,
        [one] => {
            assert_eq!(one.data, f);
            true
        }
        more => panic!("{} frames for one", more.len()),
    }
}

fn rx(b: &mut Harness<Net>, q: u16, cmd: u8, on: bool) -> Option<u8> {
    ctrl(b, q, VIRTIO_NET_CTRL_RX, cmd, &[u8::from(on)])
}

fn mac_tables(uc: &[MacAddr], mc: &[MacAddr]) -> Vec<u8> {
    let mut d = Vec::new();
    d.extend_from_slice(&(uc.len() as u32).to_le_bytes());
    uc.iter().for_each(|m| d.extend_from_slice(&m.0));
    d.extend_from_slice(&(mc.len() as u32).to_le_bytes());
    mc.iter().for_each(|m| d.extend_from_slice(&m.0));
    d
}

#[test]
fn rx_mode_commands_filter_frames() {
    let (_sw, mut a, mut b, q) = setup(all_features(1));
    // Promiscuous after reset.
    assert!(gets(&mut a, &mut b, OTHER, None));
    assert_eq!(rx(&mut b, q, VIRTIO_NET_CTRL_RX_PROMISC, false), OK);
    assert!(!gets(&mut a, &mut b, OTHER, None));
    assert!(gets(&mut a, &mut b, MAC_B, None));
    assert!(gets(&mut a, &mut b, MacAddr::BROADCAST, None));
    assert!(!gets(&mut a, &mut b, MCAST, None));
    // ALLMULTI.
    assert_eq!(rx(&mut b, q, VIRTIO_NET_CTRL_RX_ALLMULTI, true), OK);
    assert!(gets(&mut a, &mut b, MCAST, None));
    // NOMULTI wins over ALLMULTI, not over broadcast.
    assert_eq!(rx(&mut b, q, VIRTIO_NET_CTRL_RX_NOMULTI, true), OK);
    assert!(!gets(&mut a, &mut b, MCAST, None));
    assert!(gets(&mut a, &mut b, MacAddr::BROADCAST, None));
    // NOBCAST.
    assert_eq!(rx(&mut b, q, VIRTIO_NET_CTRL_RX_NOBCAST, true), OK);
    assert!(!gets(&mut a, &mut b, MacAddr::BROADCAST, None));
    // ALLUNI.
    assert_eq!(rx(&mut b, q, VIRTIO_NET_CTRL_RX_ALLUNI, true), OK);
    assert!(gets(&mut a, &mut b, OTHER, None));
    // NOUNI wins over ALLUNI and the device's own address.
    assert_eq!(rx(&mut b, q, VIRTIO_NET_CTRL_RX_NOUNI, true), OK);
    assert!(!gets(&mut a, &mut b, OTHER, None));
    assert!(!gets(&mut a, &mut b, MAC_B, None));
    // Promiscuous wins over all of them.
    assert_eq!(rx(&mut b, q, VIRTIO_NET_CTRL_RX_PROMISC, true), OK);
    assert!(gets(&mut a, &mut b, MAC_B, None));
    assert!(gets(&mut a, &mut b, MCAST, None));
    let f = b.device().rx_filter();
    assert!(f.promisc && f.allmulti && f.alluni && f.nomulti && f.nouni && f.nobcast);
    assert_eq!(b.device().stats().ctrl_ok, 7);
}

#[test]
fn mac_table_set_and_addr_set() {
    let (_sw, mut a, mut b, q) = setup(all_features(1));
    assert_eq!(rx(&mut b, q, VIRTIO_NET_CTRL_RX_PROMISC, false), OK);
    assert!(!gets(&mut a, &mut b, OTHER, None));
    assert_eq!(
        ctrl(
            &mut b,
            q,
            VIRTIO_NET_CTRL_MAC,
            VIRTIO_NET_CTRL_MAC_TABLE_SET,
            &mac_tables(&[OTHER], &[MCAST])
        ),
        OK
    );
    assert!(gets(&mut a, &mut b, OTHER, None));
    assert!(gets(&mut a, &mut b, MCAST, None));
    assert!(!gets(&mut a, &mut b, MacAddr([1, 0, 0x5e, 0, 0, 1]), None));
    // Empty tables.
    assert_eq!(
        ctrl(
            &mut b,
            q,
            VIRTIO_NET_CTRL_MAC,
            VIRTIO_NET_CTRL_MAC_TABLE_SET,
            &mac_tables(&[], &[])
        ),
        OK
    );
    assert!(!gets(&mut a, &mut b, OTHER, None));
    // Too many entries: the table becomes "all unicast".
    let many: Vec<MacAddr> = (0..MAC_TABLE_MAX as u32 + 1)
        .map(|i| OTHER.offset(i + 1))
        .collect();
    assert_eq!(
        ctrl(
            &mut b,
            q,
            VIRTIO_NET_CTRL_MAC,
            VIRTIO_NET_CTRL_MAC_TABLE_SET,
            &mac_tables(&many, &[])
        ),
        OK
    );
    assert!(gets(&mut a, &mut b, OTHER, None));
    // ADDR_SET: the config space shows it before the command is used, and
    // the filter follows it.
    let new = MacAddr([0x52, 0x54, 0, 0, 0, 0x77]);
    assert_eq!(
        ctrl(
            &mut b,
            q,
            VIRTIO_NET_CTRL_MAC,
            VIRTIO_NET_CTRL_MAC_ADDR_SET,
            &new.0
        ),
        OK
    );
    assert_eq!(b.device().mac(), new);
    assert_eq!(
        NetConfig::new_checked(&b.device().config()[..])
            .unwrap()
            .mac(),
        new.0
    );
    assert!(gets(&mut a, &mut b, new, None));
    // A reset brings back the configured address and empty tables.
    b.device().reset();
    assert_eq!(b.device().mac(), MAC_B);
    let f = b.device().rx_filter();
    assert!(f.unicast.is_empty() && f.multicast.is_empty() && !f.unicast_overflow);
}

#[test]
fn vlan_filter_add_and_del() {
    let (_sw, mut a, mut b, q) = setup(all_features(1));
    assert_eq!(rx(&mut b, q, VIRTIO_NET_CTRL_RX_PROMISC, false), OK);
    // The table starts empty: tagged frames are dropped, untagged pass.
    assert!(!gets(&mut a, &mut b, MAC_B, Some(10)));
    assert!(gets(&mut a, &mut b, MAC_B, None));
    let add = |b: &mut Harness<Net>, cmd, vid: u16| {
        ctrl(b, q, VIRTIO_NET_CTRL_VLAN, cmd, &vid.to_le_bytes())
    };
    assert_eq!(add(&mut b, VIRTIO_NET_CTRL_VLAN_ADD, 10), OK);
    assert!(gets(&mut a, &mut b, MAC_B, Some(10)));
    assert!(!gets(&mut a, &mut b, MAC_B, Some(11)));
    assert_eq!(add(&mut b, VIRTIO_NET_CTRL_VLAN_ADD, 4095), OK);
    assert_eq!(add(&mut b, VIRTIO_NET_CTRL_VLAN_DEL, 10), OK);
    assert!(!gets(&mut a, &mut b, MAC_B, Some(10)));
    assert!(gets(&mut a, &mut b, MAC_B, Some(4095)));
    assert_eq!(add(&mut b, VIRTIO_NET_CTRL_VLAN_ADD, 4096), ERR);
    // Without CTRL_VLAN every tagged frame is accepted.
    let (_sw2, mut a2, mut b2, q2) = setup(without(all_features(1), &[VIRTIO_NET_F_CTRL_VLAN]));
    assert_eq!(rx(&mut b2, q2, VIRTIO_NET_CTRL_RX_PROMISC, false), OK);
    assert!(gets(&mut a2, &mut b2, MAC_B, Some(10)));
    assert_eq!(add(&mut b2, VIRTIO_NET_CTRL_VLAN_ADD, 10), ERR);
}

#[test]
fn announce_sets_status_and_ack_clears_it() {
    let (_sw, _a, mut b, q) = setup(all_features(1));
    let status = |b: &Harness<Net>| {
        NetConfig::new_checked(&b.device().config()[..])
            .unwrap()
            .status()
    };
    assert_eq!(status(&b), VIRTIO_NET_S_LINK_UP);
    let before = b.events.config_changes.load(Ordering::SeqCst);
    assert!(b.device().announce());
    assert_eq!(status(&b), VIRTIO_NET_S_LINK_UP | VIRTIO_NET_S_ANNOUNCE);
    assert_eq!(b.events.config_changes.load(Ordering::SeqCst), before + 1);
    assert_eq!(
        ctrl(
            &mut b,
            q,
            VIRTIO_NET_CTRL_ANNOUNCE,
            VIRTIO_NET_CTRL_ANNOUNCE_ACK,
            &[]
        ),
        OK
    );
    assert_eq!(status(&b), VIRTIO_NET_S_LINK_UP);
    // Without GUEST_ANNOUNCE the device does not ask, and the ack is refused.
    let (_sw2, _a2, mut b2, q2) = setup(without(all_features(1), &[VIRTIO_NET_F_GUEST_ANNOUNCE]));
    assert!(!b2.device().announce());
    assert_eq!(
        ctrl(
            &mut b2,
            q2,
            VIRTIO_NET_CTRL_ANNOUNCE,
            VIRTIO_NET_CTRL_ANNOUNCE_ACK,
            &[]
        ),
        ERR
    );
}

#[test]
fn mq_pairs_set_validates_the_range() {
    let sw = Switch::new();
    let f = all_features(4);
    let mut b = port(&sw, MAC_B, 4, f);
    let q = ctrl_queue(4, f);
    let set = |b: &mut Harness<Net>, n: u16| {
        ctrl(
            b,
            q,
            VIRTIO_NET_CTRL_MQ,
            VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET,
            &n.to_le_bytes(),
        )
    };
    assert_eq!(set(&mut b, 0), ERR);
    assert_eq!(set(&mut b, 5), ERR);
    assert_eq!(set(&mut b, 0x8000), ERR);
    assert_eq!(b.device().active_pairs(), 1);
    assert_eq!(set(&mut b, 4), OK);
    assert_eq!(b.device().active_pairs(), 4);
    assert_eq!(set(&mut b, 1), OK);
    assert_eq!(b.device().active_pairs(), 1);
    // RSS and hash configuration are not offered.
    assert_eq!(
        ctrl(
            &mut b,
            q,
            VIRTIO_NET_CTRL_MQ,
            VIRTIO_NET_CTRL_MQ_RSS_CONFIG,
            &[0; 16]
        ),
        ERR
    );
    assert_eq!(
        ctrl(
            &mut b,
            q,
            VIRTIO_NET_CTRL_MQ,
            VIRTIO_NET_CTRL_MQ_HASH_CONFIG,
            &[0; 13]
        ),
        ERR
    );
    // Without MQ (one pair) the class is refused.
    let (_sw2, _a2, mut one, q1) = setup(all_features(1));
    assert_eq!(
        ctrl(
            &mut one,
            q1,
            VIRTIO_NET_CTRL_MQ,
            VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET,
            &1u16.to_le_bytes()
        ),
        ERR
    );
}

#[test]
fn malformed_commands_get_err_and_change_nothing() {
    let (_sw, _a, mut b, q) = setup(all_features(1));
    let before = b.device().rx_filter();
    let cases: Vec<(u8, u8, Vec<u8>)> = vec![
        // On/off data of the wrong size or value.
        (VIRTIO_NET_CTRL_RX, VIRTIO_NET_CTRL_RX_PROMISC, vec![]),
        (VIRTIO_NET_CTRL_RX, VIRTIO_NET_CTRL_RX_PROMISC, vec![0, 0]),
        (VIRTIO_NET_CTRL_RX, VIRTIO_NET_CTRL_RX_ALLMULTI, vec![2]),
        (VIRTIO_NET_CTRL_RX, 6, vec![1]),
        // MAC tables: truncated, counts beyond the data, trailing bytes.
        (
            VIRTIO_NET_CTRL_MAC,
            VIRTIO_NET_CTRL_MAC_TABLE_SET,
            vec![1, 0, 0],
        ),
        (
            VIRTIO_NET_CTRL_MAC,
            VIRTIO_NET_CTRL_MAC_TABLE_SET,
            mac_tables(&[OTHER], &[])[..10].to_vec(),
        ),
        (
            VIRTIO_NET_CTRL_MAC,
            VIRTIO_NET_CTRL_MAC_TABLE_SET,
            vec![0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0],
        ),
        (VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_TABLE_SET, {
            let mut d = mac_tables(&[OTHER], &[]);
            d.push(0);
            d
        }),
        // ADDR_SET: short, long, multicast.
        (
            VIRTIO_NET_CTRL_MAC,
            VIRTIO_NET_CTRL_MAC_ADDR_SET,
            vec![0x52, 0x54, 0, 0, 1],
        ),
        (
            VIRTIO_NET_CTRL_MAC,
            VIRTIO_NET_CTRL_MAC_ADDR_SET,
            vec![0x52, 0x54, 0, 0, 1, 2, 3],
        ),
        (
            VIRTIO_NET_CTRL_MAC,
            VIRTIO_NET_CTRL_MAC_ADDR_SET,
            MCAST.0.to_vec(),
        ),
        (VIRTIO_NET_CTRL_MAC, 2, vec![]),
        // VLAN: wrong sizes, too big.
        (VIRTIO_NET_CTRL_VLAN, VIRTIO_NET_CTRL_VLAN_ADD, vec![1]),
        (
            VIRTIO_NET_CTRL_VLAN,
            VIRTIO_NET_CTRL_VLAN_DEL,
            vec![1, 0, 0],
        ),
        (
            VIRTIO_NET_CTRL_VLAN,
            VIRTIO_NET_CTRL_VLAN_ADD,
            vec![0x00, 0x10],
        ),
        (VIRTIO_NET_CTRL_VLAN, 2, vec![1, 0]),
        // Announce with data; unknown classes, classes not offered.
        (
            VIRTIO_NET_CTRL_ANNOUNCE,
            VIRTIO_NET_CTRL_ANNOUNCE_ACK,
            vec![0],
        ),
        (VIRTIO_NET_CTRL_ANNOUNCE, 1, vec![]),
        (
            VIRTIO_NET_CTRL_GUEST_OFFLOADS,
            VIRTIO_NET_CTRL_GUEST_OFFLOADS_SET,
            vec![0; 8],
        ),
        (
            VIRTIO_NET_CTRL_NOTF_COAL,
            VIRTIO_NET_CTRL_NOTF_COAL_TX_SET,
            vec![0; 8],
        ),
        (VIRTIO_NET_CTRL_STATS, VIRTIO_NET_CTRL_STATS_QUERY, vec![]),
        (0xff, 0xff, vec![1, 2, 3]),
    ];
    for (class, cmd, data) in &cases {
        assert_eq!(
            ctrl(&mut b, q, *class, *cmd, data),
            ERR,
            "class {class} command {cmd} data {data:?}"
        );
    }
    // Only a class byte; nothing readable at all.
    b.submit(q, &[&[VIRTIO_NET_CTRL_RX]], &[1]).unwrap();
    b.submit(q, &[], &[1]).unwrap();
    // Longer than CTRL_MAX.
    let huge = vec![0u8; CTRL_MAX + 1];
    b.submit(q, &[&huge], &[1]).unwrap();
    b.run().unwrap();
    let done = b.completed(q).unwrap();
    assert_eq!(done.len(), 3);
    assert!(done.iter().all(|d| d.1 == [VIRTIO_NET_ERR]));
    // No writable byte for the ack: completed with used length 0.
    b.submit(
        q,
        &[&[VIRTIO_NET_CTRL_RX, VIRTIO_NET_CTRL_RX_PROMISC, 0]],
        &[],
    )
    .unwrap();
    b.run().unwrap();
    let done = b.completed(q).unwrap();
    assert_eq!(done.len(), 1);
    assert!(done[0].1.is_empty());
    assert!(b.device().rx_filter().promisc, "not carried out");
    assert_eq!(b.device().rx_filter(), before);
    assert_eq!(b.device().mac(), MAC_B);
    assert_eq!(b.device().stats().ctrl_ok, 0);
    assert_eq!(b.device().stats().ctrl_err, cases.len() as u64 + 4);
    assert!(b.broken_queues().is_empty());
    // The command may be split anywhere across descriptors.
    let split = [VIRTIO_NET_CTRL_RX];
    let rest = [VIRTIO_NET_CTRL_RX_PROMISC];
    let val = [0u8];
    b.submit(q, &[&split, &rest, &val], &[1]).unwrap();
    b.run().unwrap();
    assert_eq!(b.completed(q).unwrap()[0].1, [VIRTIO_NET_OK]);
    // A command outside guest memory breaks the control queue only.
    b.submit_segments(q, &[Segment::new(1 << 40, 3)], &[Segment::new(1 << 40, 1)]);
    assert!(b.run().is_err());
    assert_eq!(b.broken_queues(), [q]);
}

#[test]
fn unnegotiated_classes_are_refused() {
    let f = without(
        all_features(1),
        &[
            VIRTIO_NET_F_CTRL_RX,
            VIRTIO_NET_F_CTRL_RX_EXTRA,
            VIRTIO_NET_F_CTRL_MAC_ADDR,
            VIRTIO_NET_F_CTRL_VLAN,
        ],
    );
    let (_sw, _a, mut b, q) = setup(f);
    assert_eq!(rx(&mut b, q, VIRTIO_NET_CTRL_RX_PROMISC, false), ERR);
    assert_eq!(
        ctrl(
            &mut b,
            q,
            VIRTIO_NET_CTRL_MAC,
            VIRTIO_NET_CTRL_MAC_TABLE_SET,
            &mac_tables(&[], &[])
        ),
        ERR
    );
    assert_eq!(
        ctrl(
            &mut b,
            q,
            VIRTIO_NET_CTRL_MAC,
            VIRTIO_NET_CTRL_MAC_ADDR_SET,
            &OTHER.0
        ),
        ERR
    );
    assert_eq!(
        ctrl(
            &mut b,
            q,
            VIRTIO_NET_CTRL_VLAN,
            VIRTIO_NET_CTRL_VLAN_ADD,
            &[1, 0]
        ),
        ERR
    );
    // CTRL_RX without CTRL_RX_EXTRA: PROMISC/ALLMULTI yes, the others no.
    let f = without(all_features(1), &[VIRTIO_NET_F_CTRL_RX_EXTRA]);
    let (_sw, _a, mut b, q) = setup(f);
    assert_eq!(rx(&mut b, q, VIRTIO_NET_CTRL_RX_ALLMULTI, true), OK);
    for cmd in [
        VIRTIO_NET_CTRL_RX_ALLUNI,
        VIRTIO_NET_CTRL_RX_NOMULTI,
        VIRTIO_NET_CTRL_RX_NOUNI,
        VIRTIO_NET_CTRL_RX_NOBCAST,
    ] {
        assert_eq!(rx(&mut b, q, cmd, true), ERR);
    }
}
