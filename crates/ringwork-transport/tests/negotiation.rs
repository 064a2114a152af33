//! The status/feature state machine (VIRTIO 1.4 §2.1, §2.2, §2.4, §2.5,
//! §3.1, §3.4, §2.6.1) driven through raw MMIO register writes, including
//! the driver mistakes the spec forbids: each gets the prescribed (or a
//! safe, recorded) behaviour and never a panic.

mod common;

use std::cell::RefCell;
use std::sync::Arc;

use common::{echo_round, make_queue, RecordingIrq};
use ringwork_queue::test_utils::TestMemory;
use ringwork_spec::features::{
    FeatureRule, FeatureSet, VIRTIO_F_EVENT_IDX, VIRTIO_F_RING_PACKED, VIRTIO_F_RING_RESET,
    VIRTIO_F_SUSPEND, VIRTIO_F_VERSION_1,
};
use ringwork_spec::mmio as regs;
use ringwork_spec::status::DeviceStatus;
use ringwork_transport::driver::{self, ConfigRead, Transport, TransportError};
use ringwork_transport::mmio::{MmioConfig, MmioDevice, MmioTransport};
use ringwork_transport::test_utils::{EchoDevice, EchoEvent, Loopback};
use ringwork_transport::{BusDevice, Violation, VirtioDevice};

type Dev<'m> = MmioDevice<EchoDevice<&'m TestMemory>>;

fn device(mem: &TestMemory) -> (Dev<'_>, Arc<RecordingIrq>) {
    let irq = Arc::new(RecordingIrq::default());
    let d = MmioDevice::new(
        EchoDevice::new(mem, 2, 64),
        irq.clone(),
        MmioConfig::default(),
    );
    (d, irq)
}

fn rd<D: BusDevice>(d: &mut D, off: usize) -> u32 {
    let mut b = [0u8; 4];
    d.read(off as u64, &mut b);
    u32::from_le_bytes(b)
}

fn wr<D: BusDevice>(d: &mut D, off: usize, v: u32) {
    d.write(off as u64, &v.to_le_bytes());
}

fn write_features<D: BusDevice>(d: &mut D, f: FeatureSet) {
    for (sel, w) in f.words().iter().enumerate() {
        wr(d, regs::DRIVER_FEATURES_SEL, sel as u32);
        wr(d, regs::DRIVER_FEATURES, *w);
    }
}

fn offered<D: BusDevice>(d: &mut D) -> FeatureSet {
    let mut words = [0u32; 4];
    for (sel, w) in words.iter_mut().enumerate() {
        wr(d, regs::DEVICE_FEATURES_SEL, sel as u32);
        *w = rd(d, regs::DEVICE_FEATURES);
    }
    FeatureSet::from_words(words)
}

const ACK_DRIVER: u32 = 1 | 2;
const FEATURES_OK: u32 = 8;
const DRIVER_OK: u32 = 4;

/// Writes `features`, sets FEATURES_OK, and returns whether it stuck.
fn try_features(d: &mut Dev<'_>, f: FeatureSet) -> bool {
    wr(d, regs::STATUS, 0);
    wr(d, regs::STATUS, 1);
    wr(d, regs::STATUS, ACK_DRIVER);
    write_features(d, f);
    wr(d, regs::STATUS, ACK_DRIVER | FEATURES_OK);
    rd(d, regs::STATUS) & FEATURES_OK != 0
}

#[test]
fn device_offers_version_1_and_only_supportable_bits() {
    let mem = TestMemory::new(0x10_0000, 1 << 20);
    let (mut d, _) = device(&mem);
    let f = offered(&mut d);
    assert!(f.contains(VIRTIO_F_VERSION_1));
    // MMIO cannot carry NOTIF_CONFIG_DATA; nothing reserved or PCI-only.
    for bit in [24, 27, 30, 37, 39, 41, 44, 45, 49] {
        assert!(!f.contains(bit), "bit {bit} offered");
    }
    // Windows beyond the defined features read 0.
    wr(&mut d, regs::DEVICE_FEATURES_SEL, 9);
    assert_eq!(rd(&mut d, regs::DEVICE_FEATURES), 0);
}

#[test]
fn features_ok_accepts_a_valid_subset() {
    let mem = TestMemory::new(0x10_0000, 1 << 20);
    let (mut d, _) = device(&mem);
    let want = FeatureSet::from_bits(&[VIRTIO_F_VERSION_1, VIRTIO_F_EVENT_IDX]);
    assert!(try_features(&mut d, want));
    assert_eq!(d.core().negotiated(), Some(want));
    assert_eq!(d.core().violations().count(), 0);
}

#[test]
fn features_ok_refused_for_unoffered_bits() {
    let mem = TestMemory::new(0x10_0000, 1 << 20);
    let (mut d, _) = device(&mem);
    let want = FeatureSet::from_bits(&[VIRTIO_F_VERSION_1, 5]);
    assert!(!try_features(&mut d, want));
    assert!(matches!(
        d.core().violations().last(),
        Some(Violation::UnofferedFeatures { unoffered }) if unoffered.contains(5)
    ));
    assert_eq!(d.core().negotiated(), None);
}

#[test]
fn features_ok_refused_without_version_1() {
    let mem = TestMemory::new(0x10_0000, 1 << 20);
    let (mut d, _) = device(&mem);
    assert!(!try_features(
        &mut d,
        FeatureSet::from_bits(&[VIRTIO_F_EVENT_IDX])
    ));
    assert_eq!(
        d.core().violations().last(),
        Some(&Violation::MissingVersion1)
    );
}

#[test]
fn features_ok_refused_when_the_device_says_no() {
    let mem = TestMemory::new(0x10_0000, 1 << 20);
    let (mut d, _) = device(&mem);
    d.core_mut().device_mut().refuse_features = true;
    assert!(!try_features(
        &mut d,
        FeatureSet::from_bits(&[VIRTIO_F_VERSION_1])
    ));
    assert!(matches!(
        d.core().violations().last(),
        Some(Violation::FeaturesRefused(_))
    ));
}

/// Feature 1 requires feature 0.
static RULES: &[FeatureRule] = &[FeatureRule::new(1, "§test").all_of(&[0])];

#[test]
fn features_ok_refused_for_a_broken_dependency_and_driver_side_drops_it() {
    let mem = TestMemory::new(0x10_0000, 1 << 20);
    let irq = Arc::new(RecordingIrq::default());
    let echo = EchoDevice::new(&mem, 1, 64);
    let features = echo.device_features().with(0).with(1);
    let mut d = MmioDevice::new(
        echo.with_features(features).with_rules(RULES),
        irq,
        MmioConfig::default(),
    );
    wr(&mut d, regs::STATUS, 1);
    wr(&mut d, regs::STATUS, ACK_DRIVER);
    write_features(&mut d, FeatureSet::from_bits(&[VIRTIO_F_VERSION_1, 1]));
    wr(&mut d, regs::STATUS, ACK_DRIVER | FEATURES_OK);
    assert_eq!(rd(&mut d, regs::STATUS) & FEATURES_OK, 0);
    assert!(matches!(
        d.core().violations().last(),
        Some(Violation::FeatureDependency(_))
    ));
    // The driver-side negotiation drops bit 1 when it cannot take bit 0.
    let block = RefCell::new(d);
    let mut t = MmioTransport::new(Loopback::new(&block)).unwrap();
    let rules = [FeatureRule::new(1, "§test").all_of(&[0])];
    let f = driver::negotiate(&mut t, FeatureSet::from_bits(&[1]), &rules).unwrap();
    assert!(!f.contains(1));
    let f = driver::negotiate(&mut t, FeatureSet::from_bits(&[0, 1]), &rules).unwrap();
    assert!(f.contains(0) && f.contains(1));
}

/// §2.2.2: a feature whose dependency the device does not offer is not
/// offered either.
#[test]
fn device_never_offers_a_feature_without_its_dependency() {
    let mem = TestMemory::new(0x10_0000, 1 << 20);
    let echo = EchoDevice::new(&mem, 1, 64);
    let features = echo.device_features().without(0).with(1);
    let mut d = MmioDevice::new(
        echo.with_features(features).with_rules(RULES),
        Arc::new(RecordingIrq::default()),
        MmioConfig::default(),
    );
    let f = offered(&mut d);
    assert!(!f.contains(1) && !f.contains(0));
    assert!(f.contains(VIRTIO_F_VERSION_1));
}

#[test]
fn driver_side_reports_rejection_and_sets_failed() {
    let mem = TestMemory::new(0x10_0000, 1 << 20);
    let (d, _) = device(&mem);
    let block = RefCell::new(d);
    block.borrow_mut().core_mut().device_mut().refuse_features = true;
    let mut t = MmioTransport::new(Loopback::new(&block)).unwrap();
    let err = driver::negotiate(&mut t, FeatureSet::EMPTY, &[]).unwrap_err();
    assert!(matches!(err, TransportError::FeaturesRejected(_)));
    assert!(t.status().contains(DeviceStatus::FAILED));
    // FAILED stays until the driver resets (§2.1.1), which then works.
    block.borrow_mut().core_mut().device_mut().refuse_features = false;
    driver::negotiate(&mut t, FeatureSet::EMPTY, &[]).unwrap();
    assert!(!t.status().contains(DeviceStatus::FAILED));
}

#[test]
fn status_written_out_of_order_is_refused() {
    let mem = TestMemory::new(0x10_0000, 1 << 20);
    let (mut d, _) = device(&mem);
    // FEATURES_OK without ACKNOWLEDGE | DRIVER.
    write_features(&mut d, FeatureSet::from_bits(&[VIRTIO_F_VERSION_1]));
    wr(&mut d, regs::STATUS, FEATURES_OK);
    assert_eq!(rd(&mut d, regs::STATUS), 0);
    assert!(matches!(
        d.core().violations().last(),
        Some(Violation::StatusOrder { bit: 8, .. })
    ));
    // DRIVER_OK without FEATURES_OK: not set, device not activated.
    wr(&mut d, regs::STATUS, ACK_DRIVER);
    wr(&mut d, regs::STATUS, ACK_DRIVER | DRIVER_OK);
    assert_eq!(rd(&mut d, regs::STATUS), ACK_DRIVER);
    assert!(!d
        .core()
        .device()
        .events
        .iter()
        .any(|e| matches!(e, EchoEvent::Activated(_))));
}

#[test]
fn clearing_status_bits_is_ignored_and_features_frozen_after_features_ok() {
    let mem = TestMemory::new(0x10_0000, 1 << 20);
    let (mut d, _) = device(&mem);
    let want = FeatureSet::from_bits(&[VIRTIO_F_VERSION_1]);
    assert!(try_features(&mut d, want));
    wr(&mut d, regs::STATUS, 1); // clears DRIVER and FEATURES_OK
    assert_eq!(rd(&mut d, regs::STATUS), ACK_DRIVER | FEATURES_OK);
    assert_eq!(
        d.core().violations().last(),
        Some(&Violation::StatusCleared { cleared: 2 | 8 })
    );
    write_features(&mut d, want.with(VIRTIO_F_EVENT_IDX));
    assert_eq!(
        d.core().violations().last(),
        Some(&Violation::FeaturesAfterFeaturesOk)
    );
    assert_eq!(d.core().negotiated(), Some(want));
}

#[test]
fn notifications_before_driver_ok_are_ignored() {
    let mem = TestMemory::new(0x10_0000, 1 << 20);
    let (mut d, _) = device(&mem);
    assert!(try_features(
        &mut d,
        FeatureSet::from_bits(&[VIRTIO_F_VERSION_1])
    ));
    wr(&mut d, regs::QUEUE_NOTIFY, 0);
    assert!(!d
        .core()
        .device()
        .events
        .iter()
        .any(|e| matches!(e, EchoEvent::Notified(..))));
    assert_eq!(
        d.core().violations().last(),
        Some(&Violation::NotifyNotReady { queue: 0 })
    );
    assert!(!d.signals().used_buffer(0), "no used notification yet");
}

/// §4.2.2.1: no virtqueue access while QueueReady is 0: a notification for
/// a queue that is not enabled reaches nobody.
#[test]
fn notifications_for_disabled_queues_are_ignored() {
    let mem = TestMemory::new(0x10_0000, 1 << 20);
    let (d, _) = device(&mem);
    let block = RefCell::new(d);
    let mut t = MmioTransport::new(Loopback::new(&block)).unwrap();
    let f = driver::negotiate(&mut t, FeatureSet::EMPTY, &[]).unwrap();
    let _q0 = make_queue(&mut t, &mem, f, 0, 16);
    driver::set_driver_ok(&mut t);
    t.notify(1, 1);
    let b = block.borrow();
    assert!(!b
        .core()
        .device()
        .events
        .iter()
        .any(|e| matches!(e, EchoEvent::Notified(..))));
    assert_eq!(
        b.core().violations().last(),
        Some(&Violation::NotifyNotReady { queue: 1 })
    );
}

#[test]
fn queue_registers_out_of_range_and_while_enabled() {
    let mem = TestMemory::new(0x10_0000, 1 << 20);
    let (mut d, _) = device(&mem);
    assert!(try_features(
        &mut d,
        FeatureSet::from_bits(&[VIRTIO_F_VERSION_1])
    ));
    wr(&mut d, regs::QUEUE_SEL, 7);
    assert_eq!(rd(&mut d, regs::QUEUE_SIZE_MAX), 0);
    wr(&mut d, regs::QUEUE_SIZE, 8);
    wr(&mut d, regs::QUEUE_READY, 1);
    assert_eq!(rd(&mut d, regs::QUEUE_READY), 0);
    assert_eq!(
        d.core().violations().last(),
        Some(&Violation::NoSuchQueue { queue: 7 })
    );
    // Queue 0 with a bad size: refused, stays disabled.
    wr(&mut d, regs::QUEUE_SEL, 0);
    wr(&mut d, regs::QUEUE_SIZE, 48);
    wr(&mut d, regs::QUEUE_READY, 1);
    assert_eq!(rd(&mut d, regs::QUEUE_READY), 0);
    assert!(matches!(
        d.core().violations().last(),
        Some(Violation::QueueSize { size: 48, .. })
    ));
    // Misaligned descriptor area: refused.
    wr(&mut d, regs::QUEUE_SIZE, 16);
    wr(&mut d, regs::QUEUE_DESC_LOW, 0x10_0008);
    wr(&mut d, regs::QUEUE_READY, 1);
    assert_eq!(rd(&mut d, regs::QUEUE_READY), 0);
    assert!(matches!(
        d.core().violations().last(),
        Some(Violation::QueueAlignment { .. })
    ));
    // A good one is enabled; then its configuration is frozen.
    wr(&mut d, regs::QUEUE_DESC_LOW, 0x10_0000);
    wr(&mut d, regs::QUEUE_DRIVER_LOW, 0x10_1000);
    wr(&mut d, regs::QUEUE_DEVICE_LOW, 0x10_2000);
    wr(&mut d, regs::QUEUE_READY, 1);
    assert_eq!(rd(&mut d, regs::QUEUE_READY), 1);
    wr(&mut d, regs::QUEUE_SIZE, 32);
    assert_eq!(
        d.core().violations().last(),
        Some(&Violation::QueueBusy { queue: 0 })
    );
    assert_eq!(d.core().queues()[0].size, 16);
}

#[test]
fn queue_enabled_before_features_ok_is_refused() {
    let mem = TestMemory::new(0x10_0000, 1 << 20);
    let (mut d, _) = device(&mem);
    wr(&mut d, regs::STATUS, ACK_DRIVER);
    wr(&mut d, regs::QUEUE_SEL, 0);
    wr(&mut d, regs::QUEUE_SIZE, 16);
    wr(&mut d, regs::QUEUE_READY, 1);
    assert_eq!(rd(&mut d, regs::QUEUE_READY), 0);
    assert_eq!(
        d.core().violations().last(),
        Some(&Violation::QueueBeforeFeaturesOk { queue: 0 })
    );
}

/// Reset in the middle of operation (§2.4): the device stops, every
/// register returns to its reset value, and a new initialization works.
#[test]
fn reset_mid_operation_then_reinitialize() {
    let mem = TestMemory::new(0x10_0000, 4 << 20);
    let (d, irq) = device(&mem);
    let block = RefCell::new(d);
    let mut t = MmioTransport::new(Loopback::new(&block)).unwrap();
    let f = driver::negotiate(&mut t, FeatureSet::from_bits(&[VIRTIO_F_EVENT_IDX]), &[]).unwrap();
    let mut q = make_queue(&mut t, &mem, f, 0, 64);
    driver::set_driver_ok(&mut t);
    // Leave a request in flight (not yet notified) and an interrupt pending.
    echo_round(&mut t, &mut q, &mem, 4, 1);
    block.borrow().signals().config_changed();
    assert!(irq.level());
    t.reset().unwrap();
    {
        let mut b = block.borrow_mut();
        assert_eq!(b.core().device().events.last(), Some(&EchoEvent::Reset));
        assert_eq!(rd(&mut *b, regs::STATUS), 0);
        assert_eq!(rd(&mut *b, regs::INTERRUPT_STATUS), 0);
        wr(&mut *b, regs::QUEUE_SEL, 0);
        assert_eq!(rd(&mut *b, regs::QUEUE_READY), 0);
        assert!(!irq.level(), "interrupt de-asserted by the reset");
        // No notification after the reset completed (§2.4.1).
        assert!(!b.signals().used_buffer(0));
    }
    let tokens = q.reset();
    assert!(tokens.is_empty());
    drop(q);
    let f = driver::negotiate(&mut t, FeatureSet::EMPTY, &[]).unwrap();
    let mut q = make_queue(&mut t, &mem, f, 0, 32);
    driver::set_driver_ok(&mut t);
    echo_round(&mut t, &mut q, &mem, 10, 2);
}

/// Virtqueue reset of one queue while the other keeps running, then
/// re-enable with a different size (§2.6.1, §4.2.2.1).
#[test]
fn queue_reset_of_one_queue_while_the_other_runs() {
    let mem = TestMemory::new(0x10_0000, 4 << 20);
    let (d, _) = device(&mem);
    let block = RefCell::new(d);
    let mut t = MmioTransport::new(Loopback::new(&block)).unwrap();
    let f = driver::negotiate(
        &mut t,
        FeatureSet::from_bits(&[VIRTIO_F_RING_RESET, VIRTIO_F_RING_PACKED]),
        &[],
    )
    .unwrap();
    assert!(f.contains(VIRTIO_F_RING_RESET));
    let mut q0 = make_queue(&mut t, &mem, f, 0, 64);
    let mut q1 = make_queue(&mut t, &mem, f, 1, 64);
    driver::set_driver_ok(&mut t);
    echo_round(&mut t, &mut q1, &mem, 8, 1);
    t.reset_queue(1).unwrap();
    {
        let mut b = block.borrow_mut();
        assert_eq!(
            b.core().device().events.last(),
            Some(&EchoEvent::QueueReset(1))
        );
        wr(&mut *b, regs::QUEUE_SEL, 1);
        assert_eq!(rd(&mut *b, regs::QUEUE_RESET), 0);
        assert_eq!(rd(&mut *b, regs::QUEUE_READY), 0);
        assert_eq!(rd(&mut *b, regs::QUEUE_SIZE_MAX), 64);
    }
    // Queue 0 is unaffected.
    echo_round(&mut t, &mut q0, &mem, 20, 2);
    q1.reset();
    drop(q1);
    let mut q1 = make_queue(&mut t, &mem, f, 1, 16);
    assert!(matches!(
        block.borrow().core().device().events.last(),
        Some(EchoEvent::QueueEnabled(s)) if s.size == 16 && s.index == 1
    ));
    {
        let mut b = block.borrow_mut();
        wr(&mut *b, regs::QUEUE_SEL, 1);
        assert_eq!(rd(&mut *b, regs::QUEUE_READY), 1);
        assert_eq!(rd(&mut *b, regs::QUEUE_RESET), 0, "0 after re-enable");
    }
    echo_round(&mut t, &mut q1, &mem, 8, 3);
    echo_round(&mut t, &mut q0, &mem, 8, 4);
    // After a device reset QueueReset reads 0 too.
    t.reset().unwrap();
    let mut b = block.borrow_mut();
    wr(&mut *b, regs::QUEUE_SEL, 1);
    assert_eq!(rd(&mut *b, regs::QUEUE_RESET), 0);
}

#[test]
fn queue_reset_without_ring_reset_is_ignored() {
    let mem = TestMemory::new(0x10_0000, 1 << 20);
    let (mut d, _) = device(&mem);
    assert!(try_features(
        &mut d,
        FeatureSet::from_bits(&[VIRTIO_F_VERSION_1])
    ));
    wr(&mut d, regs::QUEUE_SEL, 0);
    wr(&mut d, regs::QUEUE_RESET, 1);
    assert_eq!(
        d.core().violations().last(),
        Some(&Violation::RingResetNotNegotiated { queue: 0 })
    );
}

/// A configuration change between the reads of a multi-field value is
/// caught by the generation loop (§2.5.1), and notified after DRIVER_OK.
#[test]
fn config_change_during_a_multi_field_read_is_retried() {
    let mem = TestMemory::new(0x10_0000, 1 << 20);
    let (d, irq) = device(&mem);
    let block = RefCell::new(d);
    let signals = block.borrow().signals();
    let mut t = MmioTransport::new(Loopback::new(&block)).unwrap();
    driver::negotiate(&mut t, FeatureSet::EMPTY, &[]).unwrap();
    {
        let mut b = block.borrow_mut();
        b.core_mut()
            .device_mut()
            .set_counter(0x1111_1111_2222_2222, &signals);
    }
    assert_eq!(irq.raised(), 0, "no config notification before DRIVER_OK");
    let mut attempts = 0;
    let v = driver::read_config_consistent(&mut t, |t| {
        attempts += 1;
        let lo = t.config_u32(4);
        if attempts == 1 {
            // The device changes the value between the two halves.
            let mut b = block.borrow_mut();
            b.core_mut().device_mut().poke_counter_high(0x3333_3333);
            b.core_mut()
                .device_mut()
                .set_counter(0x4444_4444_5555_5555, &signals);
        }
        let hi = t.config_u32(8);
        (u64::from(hi) << 32) | u64::from(lo)
    })
    .unwrap();
    assert_eq!(attempts, 2);
    assert_eq!(v, 0x4444_4444_5555_5555);
    driver::set_driver_ok(&mut t);
    block
        .borrow_mut()
        .core_mut()
        .device_mut()
        .set_counter(7, &signals);
    assert_eq!(irq.raised(), 1);
    let cause = t.ack_interrupt();
    assert!(cause.config_changed && !cause.used_buffer);
}

#[test]
fn config_space_reads_before_features_ok_and_out_of_range() {
    let mem = TestMemory::new(0x10_0000, 1 << 20);
    let (mut d, _) = device(&mem);
    let magic = EchoDevice::<&TestMemory>::CONFIG_MAGIC;
    assert_eq!(rd(&mut d, regs::CONFIG), magic);
    let mut b = [0u8; 4];
    d.read(regs::CONFIG as u64 + 16, &mut b);
    assert_eq!(b, [0; 4]);
    assert!(matches!(
        d.core().violations().last(),
        Some(Violation::ConfigOutOfRange { offset: 16, .. })
    ));
    d.write(regs::CONFIG as u64 + 12, &[9, 8]);
    let mut b = [0u8; 2];
    d.read(regs::CONFIG as u64 + 12, &mut b);
    assert_eq!(b, [9, 8]);
}

#[test]
fn device_needs_reset_when_activation_fails() {
    let mem = TestMemory::new(0x10_0000, 1 << 20);
    let (d, irq) = device(&mem);
    let block = RefCell::new(d);
    block.borrow_mut().core_mut().device_mut().fail_activate = true;
    let mut t = MmioTransport::new(Loopback::new(&block)).unwrap();
    driver::negotiate(&mut t, FeatureSet::EMPTY, &[]).unwrap();
    driver::set_driver_ok(&mut t);
    let s = t.status();
    assert!(s.contains(DeviceStatus::DEVICE_NEEDS_RESET | DeviceStatus::DRIVER_OK));
    assert_eq!(irq.raised(), 1, "configuration change notification sent");
    assert!(t.ack_interrupt().config_changed);
    // Reset clears it.
    t.reset().unwrap();
    assert!(t.status().is_reset());
}

#[test]
fn suspend_and_resume() {
    let mem = TestMemory::new(0x10_0000, 4 << 20);
    let (d, irq) = device(&mem);
    let block = RefCell::new(d);
    let signals = block.borrow().signals();
    let mut t = MmioTransport::new(Loopback::new(&block)).unwrap();
    let f = driver::negotiate(&mut t, FeatureSet::from_bits(&[VIRTIO_F_SUSPEND]), &[]).unwrap();
    assert!(f.contains(VIRTIO_F_SUSPEND));
    let mut q = make_queue(&mut t, &mem, f, 0, 16);
    // SUSPEND before the device is initialized is ignored (§3.4.2).
    let s = t.status();
    t.set_status(s | DeviceStatus::SUSPEND);
    assert!(!t.status().contains(DeviceStatus::SUSPEND));
    driver::set_driver_ok(&mut t);
    echo_round(&mut t, &mut q, &mem, 3, 1);
    t.ack_interrupt();
    driver::suspend(&mut t).unwrap();
    let s = t.status();
    assert!(s.contains(DeviceStatus::SUSPEND) && !s.contains(DeviceStatus::DRIVER_OK));
    // A notification while suspended does not reach the device (§3.4.2: no
    // virtqueue access).
    let notified = |b: &RefCell<MmioDevice<EchoDevice<&TestMemory>>>| {
        b.borrow()
            .core()
            .device()
            .events
            .iter()
            .filter(|e| matches!(e, EchoEvent::Notified(..)))
            .count()
    };
    let before = notified(&block);
    t.notify(0, 0);
    assert_eq!(notified(&block), before);
    // While suspended: no notifications, config changes held, config
    // writes ignored.
    let raised = irq.raised();
    assert!(!signals.used_buffer(0));
    block
        .borrow_mut()
        .core_mut()
        .device_mut()
        .set_counter(5, &signals);
    assert_eq!(irq.raised(), raised);
    t.write_config(12, &[1, 2, 3, 4]);
    assert_eq!(
        block.borrow().core().violations().last(),
        Some(&Violation::ConfigWriteSuspended)
    );
    // Resume: DRIVER_OK again; the held config change is sent.
    driver::resume(&mut t).unwrap();
    let s = t.status();
    assert!(s.contains(DeviceStatus::DRIVER_OK) && !s.contains(DeviceStatus::SUSPEND));
    assert_eq!(irq.raised(), raised + 1);
    assert!(t.ack_interrupt().config_changed);
    {
        let b = block.borrow();
        let ev = &b.core().device().events;
        assert!(ev.contains(&EchoEvent::Suspended) && ev.contains(&EchoEvent::Resumed));
    }
    echo_round(&mut t, &mut q, &mem, 3, 2);
}

/// §3.4.2: a device that cannot suspend sets DEVICE_NEEDS_RESET, and the
/// driver's suspend reports it.
#[test]
fn failed_suspend_sets_needs_reset() {
    let mem = TestMemory::new(0x10_0000, 1 << 20);
    let (d, irq) = device(&mem);
    let block = RefCell::new(d);
    block.borrow_mut().core_mut().device_mut().fail_suspend = true;
    let mut t = MmioTransport::new(Loopback::new(&block)).unwrap();
    driver::negotiate(&mut t, FeatureSet::from_bits(&[VIRTIO_F_SUSPEND]), &[]).unwrap();
    driver::set_driver_ok(&mut t);
    assert_eq!(
        driver::suspend(&mut t).unwrap_err(),
        TransportError::SuspendFailed
    );
    assert!(t.status().contains(DeviceStatus::DEVICE_NEEDS_RESET));
    assert_eq!(irq.raised(), 1, "configuration change notification");
}

/// Without VIRTIO_F_SUSPEND negotiated the SUSPEND bit is ignored.
#[test]
fn suspend_without_the_feature_is_ignored() {
    let mem = TestMemory::new(0x10_0000, 1 << 20);
    let (d, _) = device(&mem);
    let block = RefCell::new(d);
    let mut t = MmioTransport::new(Loopback::new(&block)).unwrap();
    driver::negotiate(&mut t, FeatureSet::EMPTY, &[]).unwrap();
    driver::set_driver_ok(&mut t);
    let s = t.status();
    t.set_status(s | DeviceStatus::SUSPEND);
    assert!(t.status().is_live());
    assert!(!block
        .borrow()
        .core()
        .device()
        .events
        .contains(&EchoEvent::Suspended));
}

/// DEVICE_NEEDS_RESET set by a device thread while the driver writes the
/// status is never lost (only a reset clears it).
#[test]
fn needs_reset_from_another_thread_survives_status_writes() {
    let mem = TestMemory::new(0x10_0000, 1 << 20);
    let (mut d, _) = device(&mem);
    for _ in 0..200 {
        wr(&mut d, regs::STATUS, 0);
        let signals = d.signals();
        let worker = std::thread::spawn(move || signals.needs_reset());
        for s in [1, ACK_DRIVER, 1, ACK_DRIVER, ACK_DRIVER] {
            wr(&mut d, regs::STATUS, s);
        }
        worker.join().unwrap();
        assert_ne!(
            rd(&mut d, regs::STATUS) & 0x40,
            0,
            "DEVICE_NEEDS_RESET lost"
        );
    }
}
