//! Targeted checks of normative statements that random workloads do not pin
//! down: ring alignment, notification suppression in both directions and
//! both formats, queue reset / re-enable, position save/restore and
//! notification data. Each test names the section it checks.

use ringwork_queue::test_utils::TestMemory;
use ringwork_queue::{
    DeviceQueue, DriverQueue, DriverQueueConfig, GuestMemory, QueueFeatures, QueuePosition,
    RingFormat, Segment,
};
use ringwork_spec::ring::notify::NotificationData;
use ringwork_spec::ring::packed as p;
use ringwork_spec::ring::split as s;

const DATA: u64 = 0x8_0000;

fn feats(event_idx: bool) -> QueueFeatures {
    QueueFeatures {
        event_idx,
        ..Default::default()
    }
}

mod common;
use common::pair;

/// Adds one 1-segment writable buffer; the device pops and completes it.
fn one_round(
    mem: &TestMemory,
    drv: &mut DriverQueue<&TestMemory, u32>,
    dev: &mut DeviceQueue,
    t: u32,
) {
    drv.add(&[], &[Segment::new(DATA + u64::from(t % 64) * 64, 64)], t)
        .unwrap();
    let c = dev.pop(mem).unwrap().expect("available");
    dev.add_used(mem, c.token(), 0).unwrap();
}

/// VIRTIO 1.4 §2.7 / §2.8 driver normative "Virtqueues": each part is
/// aligned (split 16/2/4, packed 16/4/4), for power-of-two and other sizes.
#[test]
fn driver_ring_parts_are_aligned() {
    let mem = TestMemory::new(0x1_0000, 4 << 20);
    for size in [1u16, 2, 256, 4096] {
        let q = DriverQueue::<_, ()>::new(
            &mem,
            DriverQueueConfig::new(RingFormat::Split, size, feats(true)),
        )
        .unwrap();
        let a = q.addresses();
        assert_eq!(
            (a.desc % 16, a.driver % 2, a.device % 4),
            (0, 0, 0),
            "split {size}"
        );
    }
    for size in [1u16, 3, 100, 257] {
        let q = DriverQueue::<_, ()>::new(
            &mem,
            DriverQueueConfig::new(RingFormat::Packed, size, feats(true)),
        )
        .unwrap();
        let a = q.addresses();
        assert_eq!(
            (a.desc % 16, a.driver % 4, a.device % 4),
            (0, 0, 0),
            "packed {size}"
        );
    }
}

/// VIRTIO 1.4 §2.7 legacy layout (§2.7.2): a queue laid out with Queue
/// Align puts the used ring on the next Queue Align boundary.
#[test]
fn legacy_layout_is_contiguous() {
    let mem = TestMemory::new(0x1_0000, 1 << 20);
    let mut cfg = DriverQueueConfig::new(RingFormat::Split, 256, feats(false));
    cfg.legacy_align = Some(4096);
    let q = DriverQueue::<_, ()>::new(&mem, cfg).unwrap();
    let a = q.addresses();
    assert_eq!(a.driver - a.desc, 4096);
    assert_eq!(a.device - a.desc, 8192);
}

/// VIRTIO 1.4 §2.7.7.2 device normative, without EVENT_IDX: notify when
/// `flags` is 0, not when 1, and ignore `used_event`.
#[test]
fn split_device_follows_no_interrupt_flag() {
    let mem = TestMemory::new(0x1_0000, 1 << 20);
    let (mut drv, mut dev) = pair(&mem, RingFormat::Split, 8, feats(false));
    let avail = drv.addresses().driver;
    // used_event says "far away": must be ignored.
    mem.slice(avail + s::used_event_offset(8) as u64, 2)
        .unwrap()
        .write_u16(0, 100)
        .unwrap();
    one_round(&mem, &mut drv, &mut dev, 0);
    assert!(
        dev.needs_notification(&mem).unwrap(),
        "flags 0: MUST notify"
    );
    drv.disable_callbacks();
    assert_eq!(
        mem.slice(avail, 2).unwrap().read_u16(0).unwrap(),
        s::VIRTQ_AVAIL_F_NO_INTERRUPT
    );
    one_round(&mem, &mut drv, &mut dev, 1);
    assert!(
        !dev.needs_notification(&mem).unwrap(),
        "flags 1: no notification"
    );
    drv.enable_callbacks();
    one_round(&mem, &mut drv, &mut dev, 2);
    assert!(dev.needs_notification(&mem).unwrap());
}

/// VIRTIO 1.4 §2.7.7.2 device normative, with EVENT_IDX: ignore the low bit
/// of `flags`; notify when the entry placed at `used_event` was written.
/// Driver normative §2.7.7.1: with EVENT_IDX the driver keeps `flags` 0.
#[test]
fn split_device_follows_used_event() {
    let mem = TestMemory::new(0x1_0000, 1 << 20);
    let (mut drv, mut dev) = pair(&mem, RingFormat::Split, 8, feats(true));
    let avail = drv.addresses().driver;
    let used_event = mem
        .slice(avail + s::used_event_offset(8) as u64, 2)
        .unwrap();
    one_round(&mem, &mut drv, &mut dev, 0);
    let _ = dev.needs_notification(&mem).unwrap(); // first call: always
    drv.disable_callbacks();
    assert_eq!(
        mem.slice(avail, 2).unwrap().read_u16(0).unwrap(),
        0,
        "flags stay 0"
    );
    // A set low bit in flags must be ignored; used_event 1 = next entry.
    mem.slice(avail, 2).unwrap().write_u16(0, 1).unwrap();
    used_event.write_u16(0, 1).unwrap();
    one_round(&mem, &mut drv, &mut dev, 1);
    assert!(dev.needs_notification(&mem).unwrap(), "idx was used_event");
    used_event.write_u16(0, 5).unwrap();
    one_round(&mem, &mut drv, &mut dev, 2);
    assert!(!dev.needs_notification(&mem).unwrap(), "not there yet");
    for t in 3..5 {
        one_round(&mem, &mut drv, &mut dev, t);
    }
    assert!(!dev.needs_notification(&mem).unwrap());
    one_round(&mem, &mut drv, &mut dev, 5);
    assert!(dev.needs_notification(&mem).unwrap(), "entry 5 written");
}

/// VIRTIO 1.4 §2.7.10 driver normative: without EVENT_IDX notify unless
/// VIRTQ_USED_F_NO_NOTIFY, ignoring `avail_event`; with EVENT_IDX ignore the
/// flag and follow `avail_event`, wrap-safely.
#[test]
fn split_driver_kick_follows_device_suppression() {
    let mem = TestMemory::new(0x1_0000, 1 << 20);
    let (mut drv, mut dev) = pair(&mem, RingFormat::Split, 8, feats(false));
    let used = drv.addresses().device;
    let add = |drv: &mut DriverQueue<&TestMemory, u32>, t| {
        drv.add(&[Segment::new(DATA, 8)], &[], t).unwrap();
    };
    mem.slice(used + s::avail_event_offset(8) as u64, 2)
        .unwrap()
        .write_u16(0, 1000)
        .unwrap();
    add(&mut drv, 0);
    assert!(
        drv.kick_prepare().unwrap(),
        "flags 0: notify (avail_event ignored)"
    );
    dev.disable_notification(&mem).unwrap();
    assert_eq!(
        mem.slice(used, 2).unwrap().read_u16(0).unwrap(),
        s::VIRTQ_USED_F_NO_NOTIFY
    );
    add(&mut drv, 1);
    assert!(!drv.kick_prepare().unwrap(), "NO_NOTIFY set");
    assert!(
        dev.enable_notification(&mem).unwrap(),
        "buffers arrived meanwhile"
    );
    add(&mut drv, 2);
    assert!(drv.kick_prepare().unwrap());

    // EVENT_IDX: the device's avail_event decides; the flag is ignored.
    let mem = TestMemory::new(0x1_0000, 1 << 20);
    let (mut drv, mut dev) = pair(&mem, RingFormat::Split, 8, feats(true));
    let used = drv.addresses().device;
    let avail_event = mem
        .slice(used + s::avail_event_offset(8) as u64, 2)
        .unwrap();
    mem.slice(used, 2).unwrap().write_u16(0, 1).unwrap();
    add(&mut drv, 0);
    assert!(drv.kick_prepare().unwrap(), "avail_event 0 reached");
    avail_event.write_u16(0, 3).unwrap();
    add(&mut drv, 1);
    assert!(!drv.kick_prepare().unwrap(), "entry 1 < avail_event 3");
    add(&mut drv, 2);
    add(&mut drv, 3);
    assert!(drv.kick_prepare().unwrap(), "entries 2..4 passed 3");
    // The device writes avail_event = next avail when it enables.
    while let Some(c) = dev.pop(&mem).unwrap() {
        dev.add_used(&mem, c.token(), 0).unwrap();
    }
    assert!(!dev.enable_notification(&mem).unwrap());
    assert_eq!(avail_event.read_u16(0).unwrap(), 4);
}

/// VIRTIO 1.4 §2.8.21 (packed event suppression), both directions:
/// ENABLE / DISABLE / DESC in the driver and device areas.
#[test]
fn packed_event_suppression_both_ways() {
    let mem = TestMemory::new(0x1_0000, 1 << 20);
    let (mut drv, mut dev) = pair(&mem, RingFormat::Packed, 5, feats(true));
    let a = drv.addresses();
    let drv_evt = mem.slice(a.driver, 4).unwrap();
    let dev_evt = mem.slice(a.device, 4).unwrap();
    one_round(&mem, &mut drv, &mut dev, 0);
    assert!(dev.needs_notification(&mem).unwrap(), "ENABLE (initial 0)");
    drv.disable_callbacks();
    assert_eq!(drv_evt.read_u16(2).unwrap(), p::RING_EVENT_FLAGS_DISABLE);
    one_round(&mem, &mut drv, &mut dev, 1);
    assert!(!dev.needs_notification(&mem).unwrap(), "DISABLE");
    // DESC: ask for the descriptor at offset 3 (wrap 1).
    drv_evt.write_u16(0, p::event_desc(3, true)).unwrap();
    drv_evt.write_u16(2, p::RING_EVENT_FLAGS_DESC).unwrap();
    one_round(&mem, &mut drv, &mut dev, 2);
    assert!(
        !dev.needs_notification(&mem).unwrap(),
        "offset 2 used, not 3"
    );
    one_round(&mem, &mut drv, &mut dev, 3);
    assert!(dev.needs_notification(&mem).unwrap(), "offset 3 used");
    assert!(drv.pop_used().unwrap().is_some());
    while drv.pop_used().unwrap().is_some() {}
    // Driver side: the device's area decides kicks.
    dev.disable_notification(&mem).unwrap();
    assert_eq!(dev_evt.read_u16(2).unwrap(), p::RING_EVENT_FLAGS_DISABLE);
    drv.add(&[Segment::new(DATA, 8)], &[], 9).unwrap();
    assert!(
        !drv.kick_prepare().unwrap(),
        "device disabled notifications"
    );
    assert!(
        dev.enable_notification(&mem).unwrap(),
        "one arrived meanwhile"
    );
    assert_eq!(dev_evt.read_u16(2).unwrap(), p::RING_EVENT_FLAGS_DESC);
    assert_eq!(p::split_event_desc(dev_evt.read_u16(0).unwrap()), (4, true));
    // The device polls the one that arrived, then re-enables: the event
    // moves across the wrap to offset 0 with wrap counter 0.
    let c = dev.pop(&mem).unwrap().unwrap();
    dev.add_used(&mem, c.token(), 0).unwrap();
    assert!(!dev.enable_notification(&mem).unwrap());
    assert_eq!(
        p::split_event_desc(dev_evt.read_u16(0).unwrap()),
        (0, false)
    );
    drv.add(&[Segment::new(DATA, 8)], &[], 10).unwrap();
    assert!(
        drv.kick_prepare().unwrap(),
        "offset 0 (wrap 0) made available"
    );
    drv.add(&[Segment::new(DATA, 8)], &[], 11).unwrap();
    assert!(
        !drv.kick_prepare().unwrap(),
        "offset 1: event already passed"
    );
}

/// VIRTIO 1.4 §2.6.1.1 (Virtqueue Reset) device normative: after a reset the
/// device executes nothing from the old queue state and starts from the
/// default state; §2.6.1.2 re-enable observes the new configuration.
#[test]
fn queue_reset_and_reenable() {
    let mem = TestMemory::new(0x1_0000, 2 << 20);
    for format in [RingFormat::Split, RingFormat::Packed] {
        let f = QueueFeatures {
            event_idx: true,
            ring_reset: true,
            ..Default::default()
        };
        let (mut drv, mut dev) = pair(&mem, format, 16, f);
        for t in 0..5 {
            drv.add(&[Segment::new(DATA, 8)], &[], t).unwrap();
        }
        let c = dev.pop(&mem).unwrap().unwrap();
        dev.add_used(&mem, c.token(), 0).unwrap();
        let _ = dev.pop(&mem).unwrap().unwrap();
        // Reset both sides: nothing is lost, nothing old is executed.
        dev.reset();
        assert_eq!(dev.position(), QueuePosition::default());
        assert_eq!(dev.in_flight(), 0);
        let mut back = drv.reset();
        back.sort();
        assert_eq!(back, vec![0, 1, 2, 3, 4], "every token returned");
        assert!(dev.pop(&mem).unwrap().is_none(), "old buffers not executed");
        // Re-enable with a different size: a new queue on the same memory.
        let (mut drv, mut dev) = pair(&mem, format, 8, f);
        for t in 0..20 {
            one_round(&mem, &mut drv, &mut dev, t);
            assert_eq!(drv.pop_used().unwrap().unwrap().token, t);
        }
    }
}

/// Save/restore of the device position (live reconfiguration, backend
/// restart): a second device continues where the first stopped, including
/// across the vhost-user ring-base encoding.
#[test]
fn position_save_restore_continues_the_queue() {
    let mem = TestMemory::new(0x1_0000, 2 << 20);
    for format in [RingFormat::Split, RingFormat::Packed] {
        let (mut drv, mut dev) = pair(&mem, format, 7u16.next_power_of_two(), feats(true));
        let mut next = 0;
        for _ in 0..30 {
            one_round(&mem, &mut drv, &mut dev, next);
            next += 1;
            assert!(drv.pop_used().unwrap().is_some());
        }
        let pos = dev.position();
        let base = pos.to_vhost_user_base(format);
        let restored = QueuePosition::from_vhost_user_base(format, base);
        let mut dev2 =
            DeviceQueue::new(format, dev.size(), dev.addresses(), dev.features()).unwrap();
        dev2.set_position(restored).unwrap();
        for _ in 0..30 {
            one_round(&mem, &mut drv, &mut dev2, next);
            assert_eq!(drv.pop_used().unwrap().unwrap().token, next);
            next += 1;
        }
    }
}

/// VIRTIO 1.4 §2.9 notification data: the driver's value names the next
/// available position (split: the avail idx; packed: offset + wrap).
#[test]
fn notification_data_names_next_position() {
    let mem = TestMemory::new(0x1_0000, 1 << 20);
    let mut f = feats(false);
    f.notification_data = true;
    let mut cfg = DriverQueueConfig::new(RingFormat::Split, 4, f);
    cfg.index = 3;
    let mut drv = DriverQueue::<_, u32>::new(&mem, cfg).unwrap();
    let mut dev = DeviceQueue::new(RingFormat::Split, 4, drv.addresses(), f).unwrap();
    assert!(!dev.notification_has_work(drv.notification_data()));
    drv.add(&[Segment::new(DATA, 8)], &[], 0).unwrap();
    let d = NotificationData::from_u32(drv.notification_data());
    assert_eq!((d.vq, d.split_avail_idx()), (3, 1));
    assert!(dev.notification_has_work(drv.notification_data()));
    dev.pop(&mem).unwrap().unwrap();
    assert!(!dev.notification_has_work(drv.notification_data()));
    let mut cfg = DriverQueueConfig::new(RingFormat::Packed, 3, f);
    cfg.index = 1;
    let mut drv = DriverQueue::<_, u32>::new(&mem, cfg).unwrap();
    let mut dev = DeviceQueue::new(RingFormat::Packed, 3, drv.addresses(), f).unwrap();
    for t in 0..3 {
        drv.add(&[Segment::new(DATA, 8)], &[], t).unwrap();
    }
    let d = NotificationData::from_u32(drv.notification_data());
    assert_eq!((d.vq, d.next_off, d.next_wrap), (1, 0, false), "wrapped");
    assert!(dev.notification_has_work(drv.notification_data()));
    while dev.pop(&mem).unwrap().is_some() {}
    assert!(!dev.notification_has_work(drv.notification_data()));
}

/// VIRTIO 1.4 §2.7.5.1 device normative: the device never writes a
/// descriptor table entry or a device-readable buffer (checked by
/// snapshotting both around a full round trip, direct and indirect).
#[test]
fn split_device_never_writes_descriptors_or_readable_buffers() {
    let mem = TestMemory::new(0x1_0000, 1 << 20);
    let f = QueueFeatures {
        indirect_desc: true,
        ..Default::default()
    };
    let (mut drv, mut dev) = pair(&mem, RingFormat::Split, 8, f);
    let table = mem.slice(drv.addresses().desc, 16 * 8).unwrap();
    let out = mem.slice(DATA, 64).unwrap();
    out.fill(0, 64, 0x3c).unwrap();
    let snapshot = |w: &ringwork_queue::MemSlice<'_>| {
        let mut v = vec![0u8; w.len()];
        w.read_bytes(0, &mut v).unwrap();
        v
    };
    for segs in [1usize, 3] {
        let outs: Vec<Segment> = (0..segs)
            .map(|i| Segment::new(DATA + i as u64 * 16, 16))
            .collect();
        drv.add(&outs, &[Segment::new(DATA + 0x100, 32)], segs as u32)
            .unwrap();
        let (t0, d0) = (snapshot(&table), snapshot(&out));
        let c = dev.pop(&mem).unwrap().unwrap();
        let mut w = c.writer(&mem);
        w.write(&[0xff; 32]).unwrap();
        dev.add_used(&mem, c.token(), 32).unwrap();
        assert_eq!(snapshot(&table), t0, "descriptor table untouched");
        assert_eq!(snapshot(&out), d0, "readable buffers untouched");
        assert_eq!(drv.pop_used().unwrap().unwrap().len, 32);
    }
}

/// VIRTIO 1.4 §2.7.5.2 driver normative: with IN_ORDER, a descriptor at
/// offset x with NEXT links to x + 1, and the last one in the table to 0;
/// heads follow ring order.
#[test]
fn split_in_order_driver_links_descriptors_sequentially() {
    let mem = TestMemory::new(0x1_0000, 1 << 20);
    let f = QueueFeatures {
        in_order: true,
        ..Default::default()
    };
    let (mut drv, mut dev) = pair(&mem, RingFormat::Split, 4, f);
    let table = mem.slice(drv.addresses().desc, 16 * 4).unwrap();
    // 3 + 3 descriptors: the second chain wraps 3 -> 0 -> 1.
    let three = [
        Segment::new(DATA, 8),
        Segment::new(DATA + 8, 8),
        Segment::new(DATA + 16, 8),
    ];
    assert_eq!(drv.add(&three, &[], 0).unwrap(), 0);
    let c = dev.pop(&mem).unwrap().unwrap();
    dev.add_used(&mem, c.token(), 0).unwrap();
    assert_eq!(drv.pop_used().unwrap().unwrap().token, 0);
    assert_eq!(
        drv.add(&three, &[], 1).unwrap(),
        3,
        "next head in ring order"
    );
    let next = |i: usize| table.read_u16(i * 16 + 14).unwrap();
    let flags = |i: usize| table.read_u16(i * 16 + 12).unwrap();
    assert_eq!((next(3), next(0)), (0, 1), "x -> x + 1, last -> 0");
    assert_eq!(flags(1) & 1, 0, "chain ends at descriptor 1");
    let c = dev.pop(&mem).unwrap().unwrap();
    assert_eq!(c.segments().len(), 3);
}

/// VIRTIO 1.4 §2.7.9 / §2.8.8 ("In-order use of descriptors"): under
/// IN_ORDER the device uses buffers in the order they were made available;
/// completing a later chain alone first is refused, and the ring is left
/// as it was, on both formats (one chain at a time takes the single-entry
/// path).
#[test]
fn in_order_refuses_a_single_completion_out_of_order() {
    let mem = TestMemory::new(0x1_0000, 1 << 20);
    let f = QueueFeatures {
        in_order: true,
        ..Default::default()
    };
    for format in [RingFormat::Split, RingFormat::Packed] {
        let (mut drv, mut dev) = pair(&mem, format, 4, f);
        drv.add(&[Segment::new(DATA, 8)], &[], 0).unwrap();
        drv.add(&[Segment::new(DATA + 8, 8)], &[], 1).unwrap();
        let a = dev.pop(&mem).unwrap().unwrap();
        let b = dev.pop(&mem).unwrap().unwrap();
        let before = dev.position();
        let e = dev.add_used(&mem, b.token(), 0).unwrap_err();
        assert!(
            matches!(e, ringwork_queue::DeviceQueueError::Usage(_)),
            "{format:?}: {e:?}"
        );
        assert_eq!(dev.position(), before, "{format:?}");
        assert!(drv.pop_used().unwrap().is_none(), "{format:?}");
        // In order, one at a time, both come back.
        dev.add_used(&mem, a.token(), 0).unwrap();
        dev.add_used(&mem, b.token(), 0).unwrap();
        assert_eq!(drv.pop_used().unwrap().unwrap().token, 0);
        assert_eq!(drv.pop_used().unwrap().unwrap().token, 1);
    }
}

/// VIRTIO 1.4 §2.7.5.2 / §2.7.5.3.1 / §2.8.18 driver normative: no chain
/// longer than 2^32 bytes or than the queue size; the token comes back.
#[test]
fn driver_refuses_oversized_chains() {
    let mem = TestMemory::new(0x1_0000, 1 << 20);
    for format in [RingFormat::Split, RingFormat::Packed] {
        let (mut drv, _dev) = pair(&mem, format, 4, feats(false));
        let big = [Segment::new(DATA, u32::MAX), Segment::new(DATA, 1)];
        let r = drv.add(&big, &[], 7).unwrap_err();
        assert_eq!((r.error, r.token), (ringwork_queue::AddError::TooLarge, 7));
        let five = [Segment::new(DATA, 1); 5];
        let r = drv.add(&five, &[], 8).unwrap_err();
        assert_eq!(
            r.error,
            ringwork_queue::AddError::TooManySegments {
                segments: 5,
                size: 4
            }
        );
        assert_eq!(drv.outstanding(), 0);
        assert_eq!(drv.num_free(), 4);
    }
}

/// VIRTIO 1.4 §2.7.5.3.1 driver normative: with IN_ORDER, indirect
/// descriptors appear sequentially (`next` = index + 1).
#[test]
fn split_in_order_indirect_table_is_sequential() {
    let mem = TestMemory::new(0x1_0000, 1 << 20);
    let f = QueueFeatures {
        in_order: true,
        indirect_desc: true,
        ..Default::default()
    };
    let (mut drv, mut dev) = pair(&mem, RingFormat::Split, 4, f);
    let segs = [Segment::new(DATA, 8); 5];
    let head = drv.add(&segs, &[], 0).unwrap();
    let table = mem.slice(drv.addresses().desc, 64).unwrap();
    let off = usize::from(head) * 16;
    assert_eq!(
        table.read_u16(off + 12).unwrap(),
        4,
        "VIRTQ_DESC_F_INDIRECT"
    );
    let taddr = table.read_u64(off).unwrap();
    let itable = mem.slice(taddr, 5 * 16).unwrap();
    for i in 0..4 {
        assert_eq!(itable.read_u16(i * 16 + 14).unwrap(), i as u16 + 1);
        assert_eq!(itable.read_u16(i * 16 + 12).unwrap(), 1, "NEXT only");
    }
    assert_eq!(itable.read_u16(4 * 16 + 12).unwrap(), 0, "last: no NEXT");
    assert_eq!(dev.pop(&mem).unwrap().unwrap().segments().len(), 5);
}

/// VIRTIO 1.4 §2.7.10.2 device normative: with EVENT_IDX the device keeps
/// the used ring `flags` at 0 (it suppresses through `avail_event`).
#[test]
fn split_device_keeps_used_flags_zero_with_event_idx() {
    let mem = TestMemory::new(0x1_0000, 1 << 20);
    let (drv, mut dev) = pair(&mem, RingFormat::Split, 8, feats(true));
    let used = mem.slice(drv.addresses().device, 4).unwrap();
    dev.disable_notification(&mem).unwrap();
    assert_eq!(used.read_u16(0).unwrap(), 0);
    assert!(!dev.enable_notification(&mem).unwrap());
    assert_eq!(used.read_u16(0).unwrap(), 0);
}

/// `has_available` (for polling devices) sees exactly the buffers not yet
/// popped, in both formats and across packed wrap laps, without changing
/// the queue.
#[test]
fn has_available_peeks_without_popping() {
    for format in [RingFormat::Split, RingFormat::Packed] {
        let mem = TestMemory::new(0x1_0000, 1 << 20);
        let (mut drv, mut dev) = pair(&mem, format, 4, feats(true));
        for round in 0..10u32 {
            assert!(
                !dev.has_available(&mem).unwrap(),
                "{format:?} round {round}"
            );
            drv.add(&[Segment::new(DATA, 8)], &[], round).unwrap();
            assert!(dev.has_available(&mem).unwrap(), "{format:?} round {round}");
            assert!(dev.has_available(&mem).unwrap(), "peeking changes nothing");
            let c = dev.pop(&mem).unwrap().expect("the buffer");
            assert!(!dev.has_available(&mem).unwrap());
            dev.add_used(&mem, c.token(), 0).unwrap();
            assert_eq!(drv.pop_used().unwrap().map(|u| u.token), Some(round));
        }
        dev.mark_broken();
        assert!(dev.has_available(&mem).is_err());
    }
}

/// VIRTIO 1.4 §2.7.13.3 "Updating idx": buffers added with
/// `add_deferred` are invisible until `avail.idx` is stored once for the
/// batch (by `publish`, `kick_prepare` or a plain `add`), after their ring
/// entries; the device then pops them all, in order.
#[test]
fn split_deferred_additions_appear_together() {
    let mem = TestMemory::new(0x1_0000, 1 << 20);
    let (mut drv, mut dev) = pair(&mem, RingFormat::Split, 8, feats(true));
    let idx_at = drv.addresses().driver + s::AVAIL_IDX_OFFSET as u64;
    let idx = |m: &TestMemory| m.slice(idx_at, 2).unwrap().read_u16(0).unwrap();
    let seg = |t: u32| [Segment::new(DATA + u64::from(t) * 64, 64)];
    for t in 0..3 {
        drv.add_deferred(&[], &seg(t), t).unwrap();
    }
    assert_eq!(idx(&mem), 0, "not published yet");
    assert!(dev.pop(&mem).unwrap().is_none());
    drv.publish();
    assert_eq!(idx(&mem), 3);
    for t in 0..3 {
        let c = dev.pop(&mem).unwrap().expect("published");
        assert_eq!(c.writable_segments(), seg(t));
        dev.add_used(&mem, c.token(), 0).unwrap();
    }
    // kick_prepare publishes too (and says whether to notify).
    drv.add_deferred(&[], &seg(3), 3).unwrap();
    assert_eq!(idx(&mem), 3);
    assert!(drv.kick_prepare().unwrap());
    assert_eq!(idx(&mem), 4);
    // A plain add publishes what was deferred before it.
    drv.add_deferred(&[], &seg(4), 4).unwrap();
    drv.add(&[], &seg(5), 5).unwrap();
    assert_eq!(idx(&mem), 6);
    drv.publish();
    assert_eq!(idx(&mem), 6, "nothing new to store");
}

/// Split ring, driver side: descriptors are reused first in, first out,
/// and a descriptor or `avail.ring` entry that already holds what the
/// driver would write is not written again (the driver's shadow of the
/// table decides; only the driver writes the table, §2.7.5). A stream of
/// the same buffers completed in order therefore stores nothing but
/// `avail.idx` from the second lap on.
#[test]
fn split_driver_skips_unchanged_descriptors() {
    let mem = TestMemory::new(0x1_0000, 1 << 20);
    let size = 4u16;
    let (mut drv, mut dev) = pair(&mem, RingFormat::Split, size, feats(false));
    let a = drv.addresses();
    let seg = |t: u32| [Segment::new(DATA + u64::from(t % 4) * 64, 64)];
    let mut heads = Vec::new();
    for t in 0..12u32 {
        if t == 8 {
            // Third lap: scribble over the table and ring in place of the
            // device; the driver's shadow says they already hold the right
            // values, so nothing is rewritten.
            let junk = [0xeeu8; 16];
            for i in 0..u64::from(size) {
                mem.slice(a.desc + i * 16, 16)
                    .unwrap()
                    .write_bytes(0, &junk)
                    .unwrap();
                mem.slice(a.driver + 4 + i * 2, 2)
                    .unwrap()
                    .write_bytes(0, &junk[..2])
                    .unwrap();
            }
        }
        let id = drv.add(&[], &seg(t), t).unwrap();
        heads.push(id);
        if t < 8 {
            let c = dev.pop(&mem).unwrap().expect("available");
            assert_eq!(c.writable_segments(), seg(t));
            dev.add_used(&mem, c.token(), 0).unwrap();
            assert_eq!(drv.pop_used().unwrap().unwrap().token, t);
        }
    }
    // FIFO: the same descriptor for the same buffer, lap after lap.
    assert_eq!(heads[..4], heads[4..8]);
    assert_eq!(heads[4..8], heads[8..12]);
    let entry = mem.slice(a.desc + u64::from(heads[8]) * 16, 16).unwrap();
    assert_eq!(
        entry.read_u64(0).unwrap(),
        0xeeee_eeee_eeee_eeee,
        "not rewritten"
    );
    // After a reset the shadow is forgotten and everything is written.
    drv.reset();
    let id = drv.add(&[], &seg(0), 0).unwrap();
    let entry = mem.slice(a.desc + u64::from(id) * 16, 16).unwrap();
    assert_eq!(entry.read_u64(0).unwrap(), DATA);
}

/// Device side, both formats: `pop_burst` hands out the available chains
/// in ring order (VIRTIO 1.4 §2.7.13, §2.8.14), no more than asked for or
/// available, and counts them in flight like single pops.
#[test]
fn pop_burst_matches_single_pops() {
    for format in [RingFormat::Split, RingFormat::Packed] {
        let mem = TestMemory::new(0x1_0000, 1 << 20);
        let (mut drv, mut dev) = pair(&mem, format, 8, feats(true));
        let seg = |t: u32| [Segment::new(DATA + u64::from(t) * 64, 64)];
        for t in 0..5 {
            drv.add(&[], &seg(t), t).unwrap();
        }
        let mut chains: Vec<_> = (0..3)
            .map(|_| ringwork_queue::device::DescChain::new())
            .collect();
        assert_eq!(dev.pop_burst(&mem, &mut chains).unwrap(), 3, "{format:?}");
        assert_eq!(dev.in_flight(), 3);
        for (t, c) in chains.iter().enumerate() {
            assert_eq!(c.writable_segments(), seg(t as u32), "{format:?}");
        }
        assert_eq!(dev.pop_burst(&mem, &mut chains).unwrap(), 2, "{format:?}");
        assert_eq!(chains[1].writable_segments(), seg(4));
        assert_eq!(dev.pop_burst(&mem, &mut chains).unwrap(), 0);
        assert_eq!(dev.pop_burst(&mem, &mut []).unwrap(), 0);
        assert_eq!(dev.in_flight(), 5);
    }
}
