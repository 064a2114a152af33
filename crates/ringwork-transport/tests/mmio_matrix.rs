//! The MMIO driver transport against the MMIO device model, version 2
//! (split and packed) and legacy version 1: a full initialization, then
//! real buffers through two queues, with the interrupt path checked.

mod common;

use std::cell::RefCell;
use std::sync::Arc;

use common::{echo_round, make_queue, RecordingIrq};
use ringwork_queue::test_utils::TestMemory;
use ringwork_spec::features::{
    FeatureSet, VIRTIO_F_ANY_LAYOUT, VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC,
    VIRTIO_F_NOTIFICATION_DATA, VIRTIO_F_RING_PACKED, VIRTIO_F_VERSION_1,
};
use ringwork_transport::driver::{self, Transport};
use ringwork_transport::mmio::{MmioConfig, MmioDevice, MmioTransport, MmioVersion};
use ringwork_transport::test_utils::{EchoDevice, EchoEvent, Loopback};
use ringwork_transport::BusDevice;

fn run(version: MmioVersion, supports: &[u32]) {
    let mem = TestMemory::new(0x10_0000, 4 << 20);
    let irq = Arc::new(RecordingIrq::default());
    let config = MmioConfig {
        version,
        vendor_id: 0x1234,
        shm_base: 0,
    };
    let block = RefCell::new(MmioDevice::new(
        EchoDevice::new(&mem, 2, 256),
        irq.clone(),
        config,
    ));
    let mut t = MmioTransport::new(Loopback::new(&block)).unwrap();
    assert_eq!(t.vendor_id(), 0x1234);
    let negotiated = driver::negotiate(&mut t, FeatureSet::from_bits(supports), &[]).unwrap();
    let legacy = version == MmioVersion::Legacy;
    assert_eq!(t.is_legacy(), legacy);
    assert_eq!(negotiated.contains(VIRTIO_F_VERSION_1), !legacy);
    assert_eq!(negotiated.contains(VIRTIO_F_ANY_LAYOUT), legacy);
    for &b in supports {
        // Everything the driver supports and the device offers is taken,
        // except what the legacy interface cannot carry.
        assert_eq!(negotiated.contains(b), !legacy || b < 32, "bit {b}");
    }
    let mut q0 = make_queue(&mut t, &mem, negotiated, 0, 128);
    let mut q1 = make_queue(&mut t, &mem, negotiated, 1, 64);
    driver::set_driver_ok(&mut t);
    assert!(t.status().is_live());

    let packed = negotiated.contains(VIRTIO_F_RING_PACKED);
    {
        let b = block.borrow();
        let events = &b.core().device().events;
        assert_eq!(events[0], EchoEvent::Reset, "negotiate starts with a reset");
        let Some(EchoEvent::Activated(act)) = events.get(1).cloned() else {
            panic!("device not activated: {events:?}");
        };
        assert_eq!(act.legacy, legacy);
        assert_eq!(act.features, negotiated);
        assert_eq!(act.queues.len(), 2);
        assert_eq!((act.queues[0].size, act.queues[1].size), (128, 64));
        assert_eq!(act.queues[0].addresses, q0.addresses());
        assert_eq!(act.queues[1].addresses, q1.addresses());
        assert_eq!(
            act.queues[0].format == ringwork_queue::RingFormat::Packed,
            packed
        );
    }

    for round in 0..3u8 {
        let before = irq.raised();
        assert!(echo_round(&mut t, &mut q0, &mem, 40, round) > 0);
        assert!(irq.raised() > before, "used buffer interrupt raised");
        let cause = t.ack_interrupt();
        assert!(cause.used_buffer && !cause.config_changed);
        assert!(!irq.level(), "line de-asserted after the acknowledge");
        echo_round(&mut t, &mut q1, &mem, 30, round ^ 0x55);
        t.ack_interrupt();
    }
    let b = block.borrow();
    assert_eq!(b.core().device().completed, 3 * 70);
    if negotiated.contains(VIRTIO_F_NOTIFICATION_DATA) {
        let with_data = b
            .core()
            .device()
            .events
            .iter()
            .filter(|e| matches!(e, EchoEvent::Notified(_, Some(_))))
            .count();
        assert!(with_data > 0, "notification data decoded");
    }
    assert_eq!(
        b.core().violations().count(),
        0,
        "{:?}",
        b.core().violations()
    );
}

const ALL: &[u32] = &[
    VIRTIO_F_EVENT_IDX,
    VIRTIO_F_INDIRECT_DESC,
    VIRTIO_F_NOTIFICATION_DATA,
];

#[test]
fn mmio_v2_split() {
    run(MmioVersion::Modern, ALL);
}

#[test]
fn mmio_v2_packed() {
    run(
        MmioVersion::Modern,
        &[
            VIRTIO_F_RING_PACKED,
            VIRTIO_F_EVENT_IDX,
            VIRTIO_F_INDIRECT_DESC,
            VIRTIO_F_NOTIFICATION_DATA,
        ],
    );
}

#[test]
fn mmio_v2_split_no_ring_features() {
    run(MmioVersion::Modern, &[]);
}

#[test]
fn mmio_v1_legacy_split() {
    run(
        MmioVersion::Legacy,
        &[VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC],
    );
}

/// The legacy interface cannot carry bits above 31: a packed-capable driver
/// still gets a split ring.
#[test]
fn mmio_v1_legacy_ignores_high_bits() {
    run(
        MmioVersion::Legacy,
        &[VIRTIO_F_EVENT_IDX, VIRTIO_F_RING_PACKED],
    );
}

/// A legacy driver may use the device before DRIVER_OK (§3.1.2): the first
/// notification activates it.
#[test]
fn mmio_v1_use_before_driver_ok() {
    let mem = TestMemory::new(0x10_0000, 1 << 20);
    let block = RefCell::new(MmioDevice::new(
        EchoDevice::new(&mem, 1, 64),
        Arc::new(RecordingIrq::default()),
        MmioConfig {
            version: MmioVersion::Legacy,
            ..MmioConfig::default()
        },
    ));
    let mut t = MmioTransport::new(Loopback::new(&block)).unwrap();
    let f = driver::negotiate(&mut t, FeatureSet::EMPTY, &[]).unwrap();
    let mut q = make_queue(&mut t, &mem, f, 0, 64);
    echo_round(&mut t, &mut q, &mem, 5, 1);
    let b = block.borrow();
    let events = &b.core().device().events;
    assert!(
        matches!(events.get(1), Some(EchoEvent::Activated(_))),
        "{events:?}"
    );
    assert!(!b.core().signals().status() & 4 != 0, "DRIVER_OK never set");
}

/// Device-side view of the same flow: the registers a driver reads back.
#[test]
fn mmio_v2_register_snapshot() {
    let mem = TestMemory::new(0x10_0000, 1 << 20);
    let mut dev = MmioDevice::new(
        EchoDevice::new(&mem, 3, 512),
        Arc::new(RecordingIrq::default()),
        MmioConfig::default(),
    );
    let mut rd = |off: u64| {
        let mut b = [0u8; 4];
        dev.read(off, &mut b);
        u32::from_le_bytes(b)
    };
    assert_eq!(rd(0x000), 0x7472_6976);
    assert_eq!(rd(0x004), 2);
    assert_eq!(rd(0x008), 4); // entropy device id of EchoDevice
    assert_eq!(rd(0x070), 0);
    assert_eq!(rd(0x060), 0);
    assert_eq!(rd(0x0fc), 0);
}
