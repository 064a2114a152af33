//! The network driver's control path against a fake device over MMIO
//! (VIRTIO 1.4 §5.1.9.5): every control command with the device's `ack`
//! (a refused or short `ack` is an error), VQ_PAIRS_SET (§5.1.9.5.6),
//! announce and link status (§5.1.9.5.4), and the device address
//! (§5.1.4.2, §5.1.9.5.2); split and packed rings. The data path is in
//! `net.rs`, the hostile device cases in `net_hostile.rs`.

mod common;

use common::net_dev::{frame, opts, Drv, NetDev, RxHdr, DST, RINGS};
use common::{block, memory, mmio, status, with_dev};
use ringwork_driver::net::{CtrlError, Duplex, NetDriver, NetError, NetOptions, RxMode, SendError};
use ringwork_driver::{RingPreference, SetupError};
use ringwork_spec::net::ctrl::*;
use ringwork_spec::net::*;
use ringwork_spec::status::DeviceStatus;

#[test]
fn control_commands_and_acks() {
    for ring in RINGS {
        let mem = memory();
        let b = block(NetDev::new(&mem));
        let mut d: Drv = NetDriver::new(mmio(&b), &mem, opts(ring)).unwrap();
        d.set_promisc(true).unwrap();
        d.set_allmulti(false).unwrap();
        for (m, c) in [
            (RxMode::AllUni, VIRTIO_NET_CTRL_RX_ALLUNI),
            (RxMode::NoMulti, VIRTIO_NET_CTRL_RX_NOMULTI),
            (RxMode::NoUni, VIRTIO_NET_CTRL_RX_NOUNI),
            (RxMode::NoBcast, VIRTIO_NET_CTRL_RX_NOBCAST),
        ] {
            d.set_rx_mode(m, true).unwrap();
            with_dev(&b, |dev| {
                assert_eq!(dev.ctrls.last().unwrap(), &(VIRTIO_NET_CTRL_RX, c, vec![1]))
            });
        }
        let uc = [[0x02, 0, 0, 0, 0, 1]];
        let mc = [[0x01, 0, 0x5e, 0, 0, 1], [0x33, 0x33, 0, 0, 0, 1]];
        d.set_mac_table(&uc, &mc).unwrap();
        d.set_mac_table(&[], &[]).unwrap();
        let new_mac = [0x02, 0x11, 0x22, 0x33, 0x44, 0x55];
        d.set_mac(new_mac).unwrap();
        assert_eq!(d.mac(), new_mac);
        d.vlan_add(42).unwrap();
        d.vlan_del(42).unwrap();
        with_dev(&b, |dev| {
            let mut table = vec![1, 0, 0, 0];
            table.extend_from_slice(&uc[0]);
            table.extend_from_slice(&[2, 0, 0, 0]);
            table.extend_from_slice(&mc[0]);
            table.extend_from_slice(&mc[1]);
            assert_eq!(
                dev.ctrls[..2],
                [
                    (VIRTIO_NET_CTRL_RX, VIRTIO_NET_CTRL_RX_PROMISC, vec![1]),
                    (VIRTIO_NET_CTRL_RX, VIRTIO_NET_CTRL_RX_ALLMULTI, vec![0]),
                ]
            );
            assert_eq!(
                dev.ctrls[6..],
                [
                    (VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_TABLE_SET, table),
                    (
                        VIRTIO_NET_CTRL_MAC,
                        VIRTIO_NET_CTRL_MAC_TABLE_SET,
                        vec![0; 8]
                    ),
                    (
                        VIRTIO_NET_CTRL_MAC,
                        VIRTIO_NET_CTRL_MAC_ADDR_SET,
                        new_mac.to_vec()
                    ),
                    (VIRTIO_NET_CTRL_VLAN, VIRTIO_NET_CTRL_VLAN_ADD, vec![42, 0]),
                    (VIRTIO_NET_CTRL_VLAN, VIRTIO_NET_CTRL_VLAN_DEL, vec![42, 0]),
                ]
            );
            assert_eq!(dev.mac, new_mac);
            assert!(
                dev.config_writes.is_empty(),
                "MAC set by command, not config"
            );
        });
        // §5.1.9.5.2.2: entries in the right table, checked by the driver.
        assert_eq!(
            d.set_mac_table(&[mc[0]], &[]),
            Err(CtrlError::WrongTable { index: 0 })
        );
        assert_eq!(
            d.set_mac_table(&uc, &uc),
            Err(CtrlError::WrongTable { index: 1 })
        );
        let many = vec![[0x02, 0, 0, 0, 0, 1]; 600];
        assert!(matches!(
            d.set_mac_table(&many, &[]),
            Err(CtrlError::TooManyMacs { entries: 600, .. })
        ));
        // The device's ack, whatever it is.
        for ack in [VIRTIO_NET_ERR, 0x7f] {
            with_dev(&b, |dev| dev.ack = Some(ack));
            assert_eq!(
                d.vlan_add(4095),
                Err(CtrlError::Rejected {
                    class: VIRTIO_NET_CTRL_VLAN,
                    command: VIRTIO_NET_CTRL_VLAN_ADD,
                    ack
                })
            );
        }
        assert_eq!(
            d.set_mac([0x02; 6]).unwrap_err(),
            CtrlError::Rejected {
                class: VIRTIO_NET_CTRL_MAC,
                command: VIRTIO_NET_CTRL_MAC_ADDR_SET,
                ack: 0x7f
            }
        );
        assert_eq!(d.mac(), new_mac, "a refused address is not taken");
        // A used length that does not cover the ack.
        with_dev(&b, |dev| {
            dev.ack = None;
            dev.ctrl_used_len = Some(0);
        });
        assert_eq!(d.set_promisc(false), Err(CtrlError::ShortAck { len: 0 }));
        with_dev(&b, |dev| dev.ctrl_used_len = None);
        d.set_promisc(false).unwrap();
    }
}

/// §5.1.9.5.6: pairs enabled with VQ_PAIRS_SET, in range, and only those
/// carry frames.
#[test]
fn queue_pairs_set() {
    for ring in RINGS {
        let mem = memory();
        let b = block(NetDev::new(&mem));
        let mut d: Drv = NetDriver::new(
            mmio(&b),
            &mem,
            NetOptions {
                queue_pairs: 4, // the device has 2
                ..opts(ring)
            },
        )
        .unwrap();
        assert_eq!(d.queue_pairs(), 2);
        assert_eq!(
            d.set_queue_pairs(0),
            Err(CtrlError::BadPairs {
                requested: 0,
                max: 2
            })
        );
        assert_eq!(
            d.set_queue_pairs(3),
            Err(CtrlError::BadPairs {
                requested: 3,
                max: 2
            })
        );
        with_dev(&b, |dev| assert!(dev.ctrls.is_empty()));
        d.set_queue_pairs(2).unwrap();
        assert_eq!(d.active_pairs(), 2);
        let f = frame(DST, 64, 1);
        d.send(1, &f, None).unwrap();
        with_dev(&b, |dev| {
            assert_eq!(
                dev.ctrls,
                [(
                    VIRTIO_NET_CTRL_MQ,
                    VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET,
                    vec![2, 0]
                )]
            );
            assert_eq!((dev.sent[0].pair, &dev.sent[0].frame), (1, &f));
        });
        // Receive on the second pair.
        with_dev(&b, |dev| dev.deliver(1, &f, RxHdr::default(), None)).unwrap();
        assert_eq!(d.recv(1).unwrap().unwrap().data, f);
        // Refused: the old number stays.
        with_dev(&b, |dev| dev.ack = Some(VIRTIO_NET_ERR));
        assert!(matches!(
            d.set_queue_pairs(1),
            Err(CtrlError::Rejected { .. })
        ));
        assert_eq!(d.active_pairs(), 2);
        with_dev(&b, |dev| dev.ack = None);
        d.set_queue_pairs(1).unwrap();
        assert_eq!(
            d.send(1, &f, None),
            Err(SendError::PairNotActive { pair: 1, active: 1 })
        );
    }
    // §5.1.9.5.6.1: only pairs the driver configured can be enabled.
    let mem = memory();
    let mut dev = NetDev::new(&mem);
    dev.max_pairs = 4;
    dev.max_sizes = vec![64; 9];
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
    assert_eq!(
        d.set_queue_pairs(3),
        Err(CtrlError::BadPairs {
            requested: 3,
            max: 2
        })
    );
    with_dev(&b, |dev| {
        assert!(dev.ctrls.is_empty());
        let rx: Vec<u16> = dev
            .rx_at_driver_ok
            .iter()
            .filter(|r| r.1 > 0)
            .map(|r| r.0)
            .collect();
        assert_eq!(rx, [0, 2], "two receive queues configured");
    });
    d.set_queue_pairs(2).unwrap();
    // The controlq is 2 * max_virtqueue_pairs (§5.1.2).
    with_dev(&b, |dev| assert_eq!(dev.ctrls.len(), 1));
}

/// §5.1.9.5.4: an announce request is acknowledged; link status follows
/// `status` with STATUS, is assumed up without (§5.1.4.2).
#[test]
fn announce_and_link_status() {
    let mem = memory();
    let b = block(NetDev::new(&mem));
    let mut d: Drv = NetDriver::new(mmio(&b), &mem, opts(RingPreference::Auto)).unwrap();
    with_dev(&b, |dev| {
        dev.speed = 0x8000_0000; // unknown (§5.1.4.2)
        dev.duplex = 7;
        dev.change_status(VIRTIO_NET_S_LINK_UP | VIRTIO_NET_S_ANNOUNCE)
    });
    assert!(d.interrupt().config_changed);
    assert!(d.config_change_pending());
    let u = d.config_changed().unwrap();
    assert!(u.announce && u.link_up && !u.link_changed);
    assert_eq!((u.speed, u.duplex), (None, Duplex::Unknown));
    assert!(!d.config_change_pending());
    with_dev(&b, |dev| {
        assert_eq!(
            dev.ctrls,
            [(
                VIRTIO_NET_CTRL_ANNOUNCE,
                VIRTIO_NET_CTRL_ANNOUNCE_ACK,
                vec![]
            )]
        );
        assert_eq!(dev.status, VIRTIO_NET_S_LINK_UP, "device cleared ANNOUNCE");
        dev.change_status(0);
    });
    d.interrupt();
    let u = d.config_changed().unwrap();
    assert!(!u.announce && !u.link_up && u.link_changed);
    assert!(!d.link_up());
    with_dev(&b, |dev| assert_eq!(dev.ctrls.len(), 1));
    // Without STATUS the link is up whatever the field says.
    let mem = memory();
    let mut dev = NetDev::new(&mem).without(&[VIRTIO_NET_F_STATUS]);
    dev.status = 0;
    let b = block(dev);
    let d: Drv = NetDriver::new(mmio(&b), &mem, opts(RingPreference::Auto)).unwrap();
    assert!(d.link_up());
}

/// §5.1.4.2: without VIRTIO_NET_F_MAC the caller's address (or a locally
/// administered one) is used and set with MAC_ADDR_SET when possible; a
/// different address with MAC offered needs CTRL_MAC_ADDR.
#[test]
fn addresses() {
    let user = [0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0xee];
    // No MAC offered, user address: set on the device after DRIVER_OK.
    let mem = memory();
    let b = block(NetDev::new(&mem).without(&[VIRTIO_NET_F_MAC]));
    let d: Drv = NetDriver::new(
        mmio(&b),
        &mem,
        NetOptions {
            mac: Some(user),
            ..opts(RingPreference::Auto)
        },
    )
    .unwrap();
    assert_eq!(d.mac(), user);
    assert_eq!(d.config().mac, None);
    with_dev(&b, |dev| {
        assert_eq!(
            dev.ctrls,
            [(
                VIRTIO_NET_CTRL_MAC,
                VIRTIO_NET_CTRL_MAC_ADDR_SET,
                user.to_vec()
            )]
        )
    });
    // No MAC offered, no address given: locally administered unicast.
    let mem = memory();
    let b = block(NetDev::new(&mem).without(&[VIRTIO_NET_F_MAC, VIRTIO_NET_F_CTRL_VQ]));
    let d: Drv = NetDriver::new(mmio(&b), &mem, opts(RingPreference::Auto)).unwrap();
    assert_eq!(d.mac()[0] & 0x03, 0x02);
    // MAC offered, a different address, no way to tell the device.
    let mem = memory();
    let b = block(NetDev::new(&mem).without(&[VIRTIO_NET_F_CTRL_MAC_ADDR]));
    let e = Drv::new(
        mmio(&b),
        &mem,
        NetOptions {
            mac: Some(user),
            ..opts(RingPreference::Auto)
        },
    )
    .unwrap_err();
    assert!(matches!(
        e,
        NetError::Setup(SetupError::BadOption { option: "mac", .. })
    ));
    assert_ne!(status(&b) & DeviceStatus::FAILED.bits(), 0);
    // The device refuses the address: setup fails, FAILED set.
    let mem = memory();
    let mut dev = NetDev::new(&mem);
    dev.ack = Some(VIRTIO_NET_ERR);
    let b = block(dev);
    let e = Drv::new(
        mmio(&b),
        &mem,
        NetOptions {
            mac: Some(user),
            ..opts(RingPreference::Auto)
        },
    )
    .unwrap_err();
    assert!(matches!(
        e,
        NetError::Ctrl(CtrlError::Rejected { ack: 1, .. })
    ));
    assert_ne!(status(&b) & DeviceStatus::FAILED.bits(), 0);
}
