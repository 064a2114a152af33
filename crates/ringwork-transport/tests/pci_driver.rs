//! The driver-side `PciTransport` against the device-side `PciDevice`
//! through `PciLoopback` windows: full initialization and real buffers
//! through split and packed queues, for every device/driver combination
//! (VIRTIO 1.4 §4.1), plus notifications, interrupts, queue reset and
//! hostile peers.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use ringwork_queue::test_utils::TestMemory;
use ringwork_queue::{Dma, DriverQueue, DriverQueueConfig, Segment};
use ringwork_spec::features::{
    FeatureSet, VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC, VIRTIO_F_NOTIFICATION_DATA,
    VIRTIO_F_NOTIF_CONFIG_DATA, VIRTIO_F_RING_PACKED, VIRTIO_F_RING_RESET,
};
use ringwork_spec::pci::{
    COMMON_CFG_CONFIG_MSIX_VECTOR, COMMON_CFG_QUEUE_NOTIFY_OFF, COMMON_CFG_QUEUE_NOTIF_CONFIG_DATA,
    VIRTIO_MSI_NO_VECTOR,
};
use ringwork_spec::ring::notify::NotificationData;
use ringwork_transport::driver::{self, ConfigRead, RegisterAccess, Transport, TransportError};
use ringwork_transport::pci::*;
use ringwork_transport::test_utils::{EchoDevice, EchoEvent, PciLoopback};
use ringwork_transport::VirtioDevice;

mod pci_common;

use pci_common::{mem, transitional, Irq, Msi, NoCaps, Spy, SpyState};

// ---------------------------------------------------------------- fixtures

type Echo<'m> = EchoDevice<&'m TestMemory>;
type Dev<'m> = RefCell<PciDevice<Echo<'m>>>;
type Window<'a, 'm> = PciLoopback<'a, Echo<'m>>;
type Pci<'a, 'm> = PciTransport<Window<'a, 'm>, Window<'a, 'm>>;

struct Rig<'m> {
    dev: Dev<'m>,
    irq: Arc<Irq>,
    msi: Arc<Msi>,
}

fn rig<'m>(mem: &'m TestMemory, echo: Echo<'m>, config: PciConfig) -> Rig<'m> {
    let irq = Arc::new(Irq::default());
    let msi = Arc::new(Msi::default());
    let dev = PciDevice::new(echo, irq.clone(), msi.clone(), config).unwrap();
    let _ = mem;
    Rig {
        dev: RefCell::new(dev),
        irq,
        msi,
    }
}

fn modern_driver<'a, 'm>(dev: &'a Dev<'m>) -> Pci<'a, 'm> {
    PciTransport::new(PciLoopback::config(dev), PciLoopback::bars(dev)).unwrap()
}

/// Builds a driver queue for this transport and attaches it (§3.1.1 step
/// 7, §4.1.5.1.3).
fn queue<'m, T: Transport>(
    t: &mut T,
    mem: &'m TestMemory,
    features: FeatureSet,
    index: u16,
    size: u16,
) -> DriverQueue<&'m TestMemory, u32> {
    let (format, qf) = driver::ring_features(t, features);
    let mut cfg = DriverQueueConfig::new(format, size, qf);
    cfg.index = index;
    cfg.legacy_align = t.legacy_queue_align();
    let q = DriverQueue::new(mem, cfg).unwrap();
    driver::attach_queue(t, &q).unwrap();
    q
}

/// Sends `n` requests through queue `index` and checks the echoed bytes;
/// returns the notification values sent.
fn echo<T: Transport>(
    t: &mut T,
    mem: &TestMemory,
    q: &mut DriverQueue<&TestMemory, u32>,
    index: u16,
    n: u32,
) -> Vec<u32> {
    let mut sent = Vec::new();
    for i in 0..n {
        let len = 16 + i % 7;
        let req = mem.alloc(64, 8).unwrap();
        let resp = mem.alloc(64, 8).unwrap();
        let pattern: Vec<u8> = (0..len)
            .map(|b| (b as u8) ^ (i as u8) ^ index as u8)
            .collect();
        req.slice().write_bytes(0, &pattern).unwrap();
        let out = [Segment::new(req.device_addr(), len)];
        let inp = [Segment::new(resp.device_addr(), 64)];
        q.add(&out, &inp, i).unwrap();
        if q.kick_prepare().unwrap() {
            let data = q.notification_data();
            sent.push(data);
            t.notify(index, data);
        }
        let used = q.pop_used().unwrap().expect("device answered");
        assert_eq!((used.token, used.len), (i, len));
        let mut got = vec![0u8; len as usize];
        resp.slice().read_bytes(0, &mut got).unwrap();
        assert_eq!(got, pattern);
    }
    sent
}

/// Negotiates `supports`, sets up `queues` queues, DRIVER_OK, moves
/// buffers through each; returns the negotiated features.
fn full_run<T: Transport>(
    t: &mut T,
    mem: &TestMemory,
    supports: FeatureSet,
    queues: u16,
) -> FeatureSet {
    let features = driver::negotiate(t, supports, &[]).unwrap();
    let mut qs = Vec::new();
    for i in 0..queues {
        let max = t.max_queue_size(i);
        assert_eq!(max, 64);
        qs.push(queue(t, mem, features, i, max));
    }
    driver::set_driver_ok(t);
    assert!(t.status().is_live());
    for (i, q) in qs.iter_mut().enumerate() {
        echo(t, mem, q, i as u16, 5);
    }
    features
}

fn features(bits: &[u32]) -> FeatureSet {
    FeatureSet::from_bits(bits)
}

// ------------------------------------------------------------------- tests

/// Non-transitional device, modern driver, split and packed rings.
#[test]
fn modern_device_modern_driver() {
    for supports in [
        features(&[VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC]),
        features(&[VIRTIO_F_RING_PACKED, VIRTIO_F_EVENT_IDX]),
    ] {
        let m = mem();
        let r = rig(&m, EchoDevice::new(&m, 2, 64), PciConfig::default());
        let mut t = modern_driver(&r.dev);
        assert!(!t.is_legacy());
        assert_eq!(t.device_type().id(), 4);
        assert_eq!(t.device_id(), 0x1044);
        assert_eq!(t.notify_off_multiplier(), Some(4));
        let f = full_run(&mut t, &m, supports, 2);
        assert_eq!(
            f.contains(VIRTIO_F_RING_PACKED),
            supports.contains(VIRTIO_F_RING_PACKED)
        );
        assert_eq!(t.config_u32(0), EchoDevice::<&TestMemory>::CONFIG_MAGIC);
        let d = r.dev.borrow();
        assert_eq!(d.core().device().completed, 10);
        assert_eq!(
            d.core().violations().count(),
            0,
            "{:?}",
            d.core().violations()
        );
    }
}

/// Transitional device with a modern driver: the modern interface.
#[test]
fn transitional_device_modern_driver() {
    for packed in [false, true] {
        let m = mem();
        let r = rig(&m, EchoDevice::new(&m, 2, 64), transitional(4));
        let mut t = modern_driver(&r.dev);
        assert!(!t.is_legacy());
        assert_eq!(t.device_id(), 0x1005);
        assert_eq!(t.device_type().id(), 4, "from the subsystem ID");
        let supports = if packed {
            features(&[VIRTIO_F_RING_PACKED])
        } else {
            FeatureSet::EMPTY
        };
        full_run(&mut t, &m, supports, 2);
        assert!(!r.dev.borrow().core().is_legacy());
        assert_eq!(r.dev.borrow().core().violations().count(), 0);
    }
}

/// Transitional device with a legacy driver (§4.1.4.10, §4.1.5.1.3.1):
/// I/O BAR0, 32 feature bits, page-number queue addresses; with and
/// without MSI-X (device configuration at 24 or 20).
#[test]
fn transitional_device_legacy_driver() {
    for msix in [false, true] {
        let m = mem();
        let r = rig(&m, EchoDevice::new(&m, 2, 64), transitional(4));
        let mut t =
            PciTransport::new_legacy(PciLoopback::config(&r.dev), PciLoopback::bars(&r.dev))
                .unwrap();
        assert!(t.is_legacy());
        assert_eq!(t.legacy_queue_align(), Some(4096));
        if msix {
            assert_eq!(t.enable_msix(), Ok(4));
            t.set_msix_entry(1, 0xfee0_1000, 0x31).unwrap();
        }
        let f = driver::negotiate(&mut t, features(&[VIRTIO_F_EVENT_IDX]), &[]).unwrap();
        assert_eq!(f.words()[1..], [0, 0, 0]);
        if msix {
            t.set_queue_vector(0, 1).unwrap();
        }
        // The legacy queue size cannot be negotiated.
        let mut cfg = DriverQueueConfig::new(Default::default(), 32, Default::default());
        cfg.legacy_align = Some(4096);
        let small = DriverQueue::<_, u32>::new(&m, cfg).unwrap();
        assert!(matches!(
            driver::attach_queue(&mut t, &small),
            Err(TransportError::QueueSize {
                size: 32,
                max: 64,
                ..
            })
        ));
        let mut q0 = queue(&mut t, &m, f, 0, 64);
        driver::set_driver_ok(&mut t);
        echo(&mut t, &m, &mut q0, 0, 4);
        assert_eq!(t.config_u32(0), EchoDevice::<&TestMemory>::CONFIG_MAGIC);
        assert_eq!(t.config_generation(), 0);
        let d = r.dev.borrow();
        assert!(d.core().is_legacy());
        assert_eq!(
            d.core().queues()[0].legacy_pfn as u64,
            q0.addresses().desc >> 12
        );
        assert_eq!(
            d.core().violations().count(),
            0,
            "{:?}",
            d.core().violations()
        );
        drop(d);
        if msix {
            assert!(r.msi.take().contains(&(0xfee0_1000, 0x31)));
        } else {
            assert_eq!(r.irq.last(), Some(true));
            assert!(t.ack_interrupt().used_buffer);
        }
    }
}

/// §4.1.5.1.1.1: no virtio capabilities on a transitional ID → legacy; on
/// a non-transitional ID → refused.
#[test]
fn legacy_detected_without_capabilities() {
    let m = mem();
    let r = rig(&m, EchoDevice::new(&m, 1, 64), transitional(0));
    let mut t = PciTransport::new(
        NoCaps(PciLoopback::config(&r.dev)),
        PciLoopback::bars(&r.dev),
    )
    .unwrap();
    assert!(t.is_legacy());
    full_run(&mut t, &m, FeatureSet::EMPTY, 1);
    assert!(r.dev.borrow().core().is_legacy());

    let r = rig(&m, EchoDevice::new(&m, 1, 64), PciConfig::default());
    let e = PciTransport::new(
        NoCaps(PciLoopback::config(&r.dev)),
        PciLoopback::bars(&r.dev),
    );
    assert!(matches!(e, Err(TransportError::Layout(_))));
    let e = PciTransport::new_legacy(PciLoopback::config(&r.dev), PciLoopback::bars(&r.dev));
    assert!(matches!(e, Err(TransportError::Layout(_))));
}

/// §4.1.5.2: with VIRTIO_F_NOTIFICATION_DATA the device receives the
/// 32-bit notification data (split and packed).
#[test]
fn notification_data_reaches_device() {
    for packed in [false, true] {
        let m = mem();
        let r = rig(&m, EchoDevice::new(&m, 2, 64), PciConfig::default());
        let mut t = modern_driver(&r.dev);
        let mut bits = vec![VIRTIO_F_NOTIFICATION_DATA];
        if packed {
            bits.push(VIRTIO_F_RING_PACKED);
        }
        let f = driver::negotiate(&mut t, features(&bits), &[]).unwrap();
        assert!(f.contains(VIRTIO_F_NOTIFICATION_DATA));
        let mut q = queue(&mut t, &m, f, 1, 64);
        driver::set_driver_ok(&mut t);
        let sent = echo(&mut t, &m, &mut q, 1, 3);
        assert_eq!(sent.len(), 3);
        let got: Vec<_> = r
            .dev
            .borrow()
            .core()
            .device()
            .events
            .iter()
            .filter_map(|e| match e {
                EchoEvent::Notified(q, d) => Some((*q, *d)),
                _ => None,
            })
            .collect();
        let want: Vec<_> = sent
            .iter()
            .map(|&v| (1, Some(NotificationData::from_u32(v))))
            .collect();
        assert_eq!(got, want);
        assert_eq!(want[1].1.unwrap().vq, 1);
        assert_ne!(want[1].1.unwrap().next_off, 0);
    }
}

fn spied<'a, 'm>(
    dev: &'a Dev<'m>,
    state: &Rc<RefCell<SpyState>>,
) -> PciTransport<Window<'a, 'm>, Spy<Window<'a, 'm>>> {
    let bars = PciLoopback::bars(dev);
    let mut i = 0u8;
    let bars = bars.map(|b| {
        i += 1;
        b.map(|inner| Spy {
            inner,
            bar: i - 1,
            state: state.clone(),
        })
    });
    PciTransport::new(PciLoopback::config(dev), bars).unwrap()
}

/// §4.1.4.4 with `notify_off_multiplier` 0: every queue shares one Queue
/// Notify address and the value the driver writes names the queue.
#[test]
fn shared_notify_address() {
    for nd in [false, true] {
        let m = mem();
        let config = PciConfig {
            notify_off_multiplier: 0,
            ..PciConfig::default()
        };
        let r = rig(&m, EchoDevice::new(&m, 3, 64), config);
        let mut t = modern_driver(&r.dev);
        assert_eq!(t.notify_off_multiplier(), Some(0));
        let supports = if nd {
            features(&[VIRTIO_F_NOTIFICATION_DATA])
        } else {
            FeatureSet::EMPTY
        };
        full_run(&mut t, &m, supports, 3);
        let d = r.dev.borrow();
        assert_eq!(d.core().device().completed, 15);
        assert_eq!(d.core().violations().count(), 0);
    }
}

/// §4.1.5.2: with VIRTIO_F_NOTIF_CONFIG_DATA the driver notifies with the
/// device's `queue_notif_config_data`, 16-bit alone or in the vq field of
/// the notification data.
#[test]
fn notif_config_data_is_used() {
    for nd in [false, true] {
        let m = mem();
        let base = EchoDevice::new(&m, 2, 64);
        let offer = base.device_features().with(VIRTIO_F_NOTIF_CONFIG_DATA);
        let r = rig(&m, base.with_features(offer), PciConfig::default());
        let state = Rc::new(RefCell::new(SpyState::default()));
        state.borrow_mut().overrides.push((
            MODERN_BAR_INDEX,
            COMMON_CFG_QUEUE_NOTIF_CONFIG_DATA,
            0x0077,
        ));
        let mut t = spied(&r.dev, &state);
        let mut bits = vec![VIRTIO_F_NOTIF_CONFIG_DATA];
        if nd {
            bits.push(VIRTIO_F_NOTIFICATION_DATA);
        }
        let f = driver::negotiate(&mut t, features(&bits), &[]).unwrap();
        assert!(f.contains(VIRTIO_F_NOTIF_CONFIG_DATA));
        let mut q = queue(&mut t, &m, f, 1, 64);
        driver::set_driver_ok(&mut t);
        let sent = echo(&mut t, &m, &mut q, 1, 2);
        let (_, at) = r.dev.borrow().notify_offset(1).unwrap();
        let notes: Vec<(u32, usize)> = state
            .borrow()
            .writes
            .iter()
            .filter(|w| w.0 == MODERN_BAR_INDEX && w.1 as u64 == at)
            .map(|w| (w.2, w.3))
            .collect();
        let want: Vec<(u32, usize)> = if nd {
            sent.iter().map(|v| ((v & !0xffff) | 0x77, 4)).collect()
        } else {
            vec![(0x77, 2); sent.len()]
        };
        assert_eq!(notes, want);
        // The device identifies the queue by address; the data carries the
        // value the driver was given.
        let last = r.dev.borrow().core().device().events.last().cloned();
        let data = nd.then(|| NotificationData::from_u32(want[1].0));
        assert_eq!(last, Some(EchoEvent::Notified(1, data)));
        if nd {
            assert_eq!(data.unwrap().vq, 0x77);
        }
    }
}

/// §4.1.5.1.2, §4.1.5.3, §4.1.5.4: MSI-X end to end, and the driver's
/// vector rules (§4.1.5.1.2.2).
#[test]
fn msix_end_to_end() {
    let m = mem();
    let r = rig(&m, EchoDevice::new(&m, 2, 64), PciConfig::default());
    let mut t = modern_driver(&r.dev);
    assert_eq!(t.msix_table_size(), Some(4));
    assert_eq!(t.enable_msix(), Ok(4));
    for v in 0..4u16 {
        t.set_msix_entry(v, 0xfee0_0000 | u64::from(v) << 12, 0x20 + u32::from(v))
            .unwrap();
    }
    let f = driver::negotiate(&mut t, FeatureSet::EMPTY, &[]).unwrap();
    t.set_config_vector(0).unwrap();
    t.set_queue_vector(0, 1).unwrap();
    t.set_queue_vector(1, VIRTIO_MSI_NO_VECTOR).unwrap();
    assert_eq!(
        t.set_queue_vector(1, 4),
        Err(TransportError::VectorOutOfRange {
            vector: 4,
            table_size: 4
        })
    );
    assert!(matches!(
        t.set_msix_entry(4, 0, 0),
        Err(TransportError::VectorOutOfRange { .. })
    ));
    let mut q0 = queue(&mut t, &m, f, 0, 64);
    let mut q1 = queue(&mut t, &m, f, 1, 64);
    driver::set_driver_ok(&mut t);
    echo(&mut t, &m, &mut q0, 0, 1);
    assert_eq!(r.msi.take(), [(0xfee0_1000, 0x21)]);
    echo(&mut t, &m, &mut q1, 1, 1);
    assert!(r.msi.take().is_empty(), "NO_VECTOR: nothing delivered");
    let s = r.dev.borrow().signals();
    r.dev
        .borrow_mut()
        .core_mut()
        .device_mut()
        .set_counter(7, &s);
    assert_eq!(r.msi.take(), [(0xfee0_0000, 0x20)]);
    assert_eq!(t.config_u64(4), 7);
    // Masked vector: held, then delivered on unmask.
    t.mask_msix_vector(1, true).unwrap();
    echo(&mut t, &m, &mut q0, 0, 1);
    assert!(r.msi.take().is_empty());
    t.mask_msix_vector(1, false).unwrap();
    assert_eq!(r.msi.take(), [(0xfee0_1000, 0x21)]);
    assert!(!r.irq.0.lock().unwrap().contains(&true), "no INTx");

    // A device that cannot map the vector reads back NO_VECTOR.
    let r = rig(&m, EchoDevice::new(&m, 2, 64), PciConfig::default());
    let state = Rc::new(RefCell::new(SpyState::default()));
    state.borrow_mut().overrides.push((
        MODERN_BAR_INDEX,
        COMMON_CFG_CONFIG_MSIX_VECTOR,
        u32::from(VIRTIO_MSI_NO_VECTOR),
    ));
    let mut t = spied(&r.dev, &state);
    t.enable_msix().unwrap();
    assert_eq!(
        t.set_config_vector(2),
        Err(TransportError::VectorRefused(2))
    );
    // No MSI-X capability: no vector may be mapped.
    let r = rig(&m, EchoDevice::new(&m, 2, 64), transitional(0));
    let mut t = modern_driver(&r.dev);
    assert_eq!(t.msix_table_size(), None);
    assert!(t.enable_msix().is_err());
    assert_eq!(
        t.set_config_vector(0),
        Err(TransportError::VectorOutOfRange {
            vector: 0,
            table_size: 0
        })
    );
}

/// §4.1.4.5, §4.1.5.3, §4.1.5.4 without MSI-X: INTx and the ISR end to
/// end.
#[test]
fn intx_end_to_end() {
    let m = mem();
    let r = rig(&m, EchoDevice::new(&m, 1, 64), PciConfig::default());
    let mut t = modern_driver(&r.dev);
    let f = driver::negotiate(&mut t, FeatureSet::EMPTY, &[]).unwrap();
    let mut q = queue(&mut t, &m, f, 0, 64);
    driver::set_driver_ok(&mut t);
    echo(&mut t, &m, &mut q, 0, 1);
    assert_eq!(r.irq.last(), Some(true));
    let cause = t.ack_interrupt();
    assert!(cause.used_buffer && !cause.config_changed);
    assert_eq!(r.irq.last(), Some(false));
    let s = r.dev.borrow().signals();
    r.dev
        .borrow_mut()
        .core_mut()
        .device_mut()
        .set_counter(3, &s);
    assert_eq!(r.irq.last(), Some(true));
    let cause = t.ack_interrupt();
    assert!(cause.config_changed && !cause.used_buffer);
    assert_eq!(t.ack_interrupt(), Default::default());
    // §4.1.5.4.2: one interrupt for both causes.
    echo(&mut t, &m, &mut q, 0, 1);
    r.dev
        .borrow_mut()
        .core_mut()
        .device_mut()
        .set_counter(4, &s);
    let cause = t.ack_interrupt();
    assert!(cause.config_changed && cause.used_buffer);
    assert!(r.msi.take().is_empty());
}

/// §2.6.1, §4.1.4.3.2: one queue reset and re-enabled while the other
/// keeps running.
#[test]
fn queue_reset_while_other_runs() {
    for packed in [false, true] {
        let m = mem();
        let r = rig(&m, EchoDevice::new(&m, 2, 64), PciConfig::default());
        let mut t = modern_driver(&r.dev);
        let mut bits = vec![VIRTIO_F_RING_RESET];
        if packed {
            bits.push(VIRTIO_F_RING_PACKED);
        }
        let f = driver::negotiate(&mut t, features(&bits), &[]).unwrap();
        let mut q0 = queue(&mut t, &m, f, 0, 64);
        let mut q1 = queue(&mut t, &m, f, 1, 64);
        driver::set_driver_ok(&mut t);
        echo(&mut t, &m, &mut q0, 0, 2);
        echo(&mut t, &m, &mut q1, 1, 2);
        t.reset_queue(0).unwrap();
        assert!(r
            .dev
            .borrow()
            .core()
            .device()
            .events
            .contains(&EchoEvent::QueueReset(0)));
        echo(&mut t, &m, &mut q1, 1, 3);
        // Re-enable with a different size.
        let mut q0 = queue(&mut t, &m, f, 0, 16);
        echo(&mut t, &m, &mut q0, 0, 3);
        echo(&mut t, &m, &mut q1, 1, 1);
        let d = r.dev.borrow();
        assert!(d
            .core()
            .device()
            .events
            .iter()
            .any(|e| matches!(e, EchoEvent::QueueEnabled(s) if s.index == 0 && s.size == 16)));
        assert_eq!(d.core().violations().count(), 0);
    }
    // Not negotiated: refused by the driver.
    let m = mem();
    let r = rig(&m, EchoDevice::new(&m, 1, 64), PciConfig::default());
    let mut t = modern_driver(&r.dev);
    driver::negotiate(&mut t, FeatureSet::EMPTY, &[]).unwrap();
    assert_eq!(
        t.reset_queue(0),
        Err(TransportError::RingResetNotNegotiated)
    );
}

/// §4.1.4.3.2: queue_size rules on the driver side.
#[test]
fn queue_size_rules() {
    let m = mem();
    let r = rig(&m, EchoDevice::new(&m, 2, 64), PciConfig::default());
    let mut t = modern_driver(&r.dev);
    let f = driver::negotiate(&mut t, FeatureSet::EMPTY, &[]).unwrap();
    let a = Default::default();
    for size in [0u16, 24, 128] {
        let cfg = driver::QueueConfig { size, addresses: a };
        assert!(matches!(
            t.setup_queue(0, &cfg),
            Err(TransportError::QueueSize { .. })
        ));
    }
    assert_eq!(t.max_queue_size(2), 0);
    let cfg = driver::QueueConfig {
        size: 8,
        addresses: a,
    };
    assert_eq!(t.setup_queue(2, &cfg), Err(TransportError::NoSuchQueue(2)));
    let _q = queue(&mut t, &m, f, 0, 8);
    let cfg = driver::QueueConfig {
        size: 8,
        addresses: a,
    };
    assert_eq!(t.setup_queue(0, &cfg), Err(TransportError::QueueInUse(0)));
}

/// A fake configuration space, for devices too broken to build.
struct FakeConfig(RefCell<[u8; 256]>);
impl FakeConfig {
    fn new(device_id: u16) -> Self {
        let mut b = [0u8; 256];
        b[0..2].copy_from_slice(&0x1af4u16.to_le_bytes());
        b[2..4].copy_from_slice(&device_id.to_le_bytes());
        b[6] = 0x10;
        b[0x34] = 0x40;
        Self(RefCell::new(b))
    }
    fn set(&self, at: usize, bytes: &[u8]) {
        self.0.borrow_mut()[at..at + bytes.len()].copy_from_slice(bytes);
    }
    fn rd(&self, o: usize, n: usize) -> u32 {
        let b = self.0.borrow();
        (0..n).fold(0, |v, i| {
            v | u32::from(*b.get(o + i).unwrap_or(&0xff)) << (8 * i)
        })
    }
}
impl RegisterAccess for FakeConfig {
    fn read8(&self, o: usize) -> u8 {
        self.rd(o, 1) as u8
    }
    fn read16(&self, o: usize) -> u16 {
        self.rd(o, 2) as u16
    }
    fn read32(&self, o: usize) -> u32 {
        self.rd(o, 4)
    }
    fn write8(&self, _: usize, _: u8) {}
    fn write16(&self, _: usize, _: u16) {}
    fn write32(&self, _: usize, _: u32) {}
}

/// A virtio cap: vndr, next, len, type, bar, id, pad, offset, length.
fn vcap(next: u8, cfg_type: u8, bar: u8, offset: u32, length: u32) -> [u8; 20] {
    let mut c = [0u8; 20];
    c[..6].copy_from_slice(&[9, next, 20, cfg_type, bar, 0]);
    c[8..12].copy_from_slice(&offset.to_le_bytes());
    c[12..16].copy_from_slice(&length.to_le_bytes());
    c[16..].copy_from_slice(&4u32.to_le_bytes());
    c
}

/// Hostile devices: capability loops terminate; reserved cfg_type and bar
/// values, pointers into the header, short caps are ignored (§4.1.4.1);
/// foreign IDs are refused (§4.1.2.2).
#[test]
fn hostile_capability_lists() {
    fn probe(c: FakeConfig) -> Option<TransportError> {
        PciTransport::<_, FakeConfig>::new(c, Default::default()).err()
    }
    // A capability pointing at itself, and a two-entry cycle of caps with
    // a reserved cfg_type and a reserved bar.
    let c = FakeConfig::new(0x1041);
    c.set(0x40, &vcap(0x40, 1, 4, 0, 64));
    assert!(matches!(probe(c), Some(TransportError::Layout(_))));
    let c = FakeConfig::new(0x1041);
    c.set(0x40, &vcap(0x80, 6, 4, 0, 64));
    c.set(0x80, &vcap(0x40, 1, 7, 0, 64));
    assert!(matches!(probe(c), Some(TransportError::Layout(_))));
    // Pointer into the header.
    let c = FakeConfig::new(0x1041);
    c.set(0x34, &[0x10]);
    assert!(matches!(probe(c), Some(TransportError::Layout(_))));
    // A cap running off the end of the space.
    let c = FakeConfig::new(0x1041);
    c.set(0x34, &[0xf8]);
    c.set(0xf8, &[9, 0, 20, 1, 4, 0, 0, 0]);
    assert!(matches!(probe(c), Some(TransportError::Layout(_))));
    // Foreign IDs.
    assert_eq!(
        probe(FakeConfig::new(0x1080)),
        Some(TransportError::NotVirtioPci {
            vendor: 0x1af4,
            device: 0x1080
        })
    );

    // Reserved type and bar before the real capabilities are skipped, and
    // a larger cap_len is accepted: the transport still works.
    let m = mem();
    let r = rig(&m, EchoDevice::new(&m, 1, 64), PciConfig::default());
    struct Patched<'a, 'm> {
        inner: Window<'a, 'm>,
        fake: FakeConfig,
    }
    impl RegisterAccess for Patched<'_, '_> {
        fn read8(&self, o: usize) -> u8 {
            if o == 0x34 || o >= 0xd0 {
                self.fake.read8(o)
            } else {
                self.inner.read8(o)
            }
        }
        fn read16(&self, o: usize) -> u16 {
            if o >= 0xd0 {
                self.fake.read16(o)
            } else {
                self.inner.read16(o)
            }
        }
        fn read32(&self, o: usize) -> u32 {
            if o >= 0xd0 {
                self.fake.read32(o)
            } else {
                self.inner.read32(o)
            }
        }
        fn write8(&self, o: usize, v: u8) {
            self.inner.write8(o, v)
        }
        fn write16(&self, o: usize, v: u16) {
            self.inner.write16(o, v)
        }
        fn write32(&self, o: usize, v: u32) {
            self.inner.write32(o, v)
        }
    }
    let fake = FakeConfig::new(0x1044);
    fake.set(0x34, &[0xd0]);
    // A COMMON_CFG in reserved bar 6 (pointing at garbage), then a first
    // NOTIFY_CFG with a larger cap_len and multiplier 8 (queue 0's address
    // is the same), then the device's own list.
    fake.set(0xd0, &vcap(0xe4, 1, 6, 0x100, 64));
    let mut notify = vcap(0x40, 2, 4, 0x3000, 8).to_vec();
    notify[2] = 24;
    notify[16..20].copy_from_slice(&8u32.to_le_bytes());
    fake.set(0xe4, &notify);
    let patched = Patched {
        inner: PciLoopback::config(&r.dev),
        fake,
    };
    let mut t = PciTransport::new(patched, PciLoopback::bars(&r.dev)).unwrap();
    assert_eq!(
        t.notify_off_multiplier(),
        Some(8),
        "first usable NOTIFY_CFG"
    );
    full_run(&mut t, &m, FeatureSet::EMPTY, 1);
}

/// A hostile device whose queue_notify_off points outside the notification
/// structure: the queue is refused, nothing is written out of bounds.
#[test]
fn hostile_notify_offset() {
    let m = mem();
    let r = rig(&m, EchoDevice::new(&m, 1, 64), PciConfig::default());
    let state = Rc::new(RefCell::new(SpyState::default()));
    state
        .borrow_mut()
        .overrides
        .push((MODERN_BAR_INDEX, COMMON_CFG_QUEUE_NOTIFY_OFF, 0x7fff));
    let mut t = spied(&r.dev, &state);
    let f = driver::negotiate(&mut t, FeatureSet::EMPTY, &[]).unwrap();
    let (format, qf) = driver::ring_features(&t, f);
    let q = DriverQueue::<_, u32>::new(&m, DriverQueueConfig::new(format, 64, qf)).unwrap();
    assert!(matches!(
        driver::attach_queue(&mut t, &q),
        Err(TransportError::Layout(_))
    ));
    assert!(!r.dev.borrow().core().queues()[0].ready);
}
