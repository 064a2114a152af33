//! Byte-level virtio-mmio register behaviour (VIRTIO 1.4 §4.2.2, §4.2.4)
//! of the device model, and the driver transport's handling of devices
//! that misbehave.

mod common;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::Arc;

use common::RecordingIrq;
use ringwork_queue::test_utils::TestMemory;
use ringwork_queue::{QueueAddresses, RingFormat};
use ringwork_spec::features::{FeatureSet, VIRTIO_F_ANY_LAYOUT, VIRTIO_F_VERSION_1};
use ringwork_spec::mmio::{self as regs, legacy as lregs};
use ringwork_spec::ring::split::legacy_layout;
use ringwork_transport::driver::{self, QueueConfig, RegisterAccess, Transport, TransportError};
use ringwork_transport::mmio::{MmioConfig, MmioDevice, MmioTransport, MmioVersion};
use ringwork_transport::test_utils::{EchoDevice, EchoEvent, Loopback};
use ringwork_transport::{BusDevice, ShmRegion, Violation};

fn rd<D: BusDevice>(d: &mut D, off: usize) -> u32 {
    let mut b = [0u8; 4];
    d.read(off as u64, &mut b);
    u32::from_le_bytes(b)
}

fn wr<D: BusDevice>(d: &mut D, off: usize, v: u32) {
    d.write(off as u64, &v.to_le_bytes());
}

fn modern(mem: &TestMemory) -> (MmioDevice<EchoDevice<&TestMemory>>, Arc<RecordingIrq>) {
    let irq = Arc::new(RecordingIrq::default());
    let d = MmioDevice::new(
        EchoDevice::new(mem, 2, 64),
        irq.clone(),
        MmioConfig::default(),
    );
    (d, irq)
}

#[test]
fn control_registers_need_32_bit_aligned_access() {
    let mem = TestMemory::new(0x10_0000, 1 << 20);
    let (mut d, _) = modern(&mem);
    let mut b2 = [0xffu8; 2];
    d.read(regs::MAGIC_VALUE as u64, &mut b2);
    assert_eq!(b2, [0, 0], "16-bit read of a control register reads 0");
    assert!(matches!(
        d.core().violations().last(),
        Some(Violation::BadAccess {
            width: 2,
            write: false,
            ..
        })
    ));
    let mut b4 = [0xffu8; 4];
    d.read(regs::STATUS as u64 + 1, &mut b4);
    assert_eq!(b4, [0; 4], "misaligned read reads 0");
    d.write(regs::STATUS as u64, &[1]);
    assert_eq!(rd(&mut d, regs::STATUS), 0, "8-bit status write ignored");
    // Undescribed offset (the legacy GuestPageSize slot).
    wr(&mut d, 0x028, 4096);
    assert!(matches!(
        d.core().violations().last(),
        Some(Violation::BadAccess { offset: 0x28, .. })
    ));
}

#[test]
fn direction_rules() {
    let mem = TestMemory::new(0x10_0000, 1 << 20);
    let (mut d, _) = modern(&mem);
    wr(&mut d, regs::MAGIC_VALUE, 0);
    assert_eq!(
        d.core().violations().last(),
        Some(&Violation::ReadOnly { offset: 0 })
    );
    assert_eq!(rd(&mut d, regs::MAGIC_VALUE), regs::MAGIC);
    assert_eq!(rd(&mut d, regs::QUEUE_NOTIFY), 0);
    assert_eq!(
        d.core().violations().last(),
        Some(&Violation::WriteOnly { offset: 0x50 })
    );
    assert_eq!(rd(&mut d, regs::DRIVER_FEATURES), 0);
    assert_eq!(rd(&mut d, regs::INTERRUPT_ACK), 0);
}

#[test]
fn config_space_access_widths() {
    let mem = TestMemory::new(0x10_0000, 1 << 20);
    let (mut d, _) = modern(&mem);
    let magic = EchoDevice::<&TestMemory>::CONFIG_MAGIC.to_le_bytes();
    let mut b1 = [0u8; 1];
    d.read(regs::CONFIG as u64 + 3, &mut b1);
    assert_eq!(b1[0], magic[3]);
    let mut b2 = [0u8; 2];
    d.read(regs::CONFIG as u64 + 2, &mut b2);
    assert_eq!(b2, [magic[2], magic[3]]);
    let mut b8 = [0xffu8; 8];
    d.read(regs::CONFIG as u64, &mut b8);
    assert_eq!(b8, [0; 8], "64-bit access refused");
    let mut b2 = [0xffu8; 2];
    d.read(regs::CONFIG as u64 + 1, &mut b2);
    assert_eq!(b2, [0; 2], "misaligned 16-bit access refused");
}

#[test]
fn interrupt_status_and_acknowledge() {
    let mem = TestMemory::new(0x10_0000, 1 << 20);
    let (d, irq) = modern(&mem);
    let block = RefCell::new(d);
    let mut t = MmioTransport::new(Loopback::new(&block)).unwrap();
    driver::negotiate(&mut t, FeatureSet::EMPTY, &[]).unwrap();
    driver::set_driver_ok(&mut t);
    let mut d = block.borrow_mut();
    assert_eq!(rd(&mut *d, regs::INTERRUPT_STATUS), 0, "no event, no bit");
    let signals = d.signals();
    signals.config_changed();
    assert_eq!(rd(&mut *d, regs::INTERRUPT_STATUS), 2);
    assert!(irq.level());
    // Undefined bits in the acknowledge are recorded; defined ones clear.
    wr(&mut *d, regs::INTERRUPT_ACK, 0x2 | 0x80);
    assert_eq!(
        d.core().violations().last(),
        Some(&Violation::AckReservedBits { bits: 0x80 })
    );
    assert_eq!(rd(&mut *d, regs::INTERRUPT_STATUS), 0);
    assert!(!irq.level());
    // A partial acknowledge keeps the line up.
    d.core_mut().write_status(0);
    assert_eq!(rd(&mut *d, regs::INTERRUPT_STATUS), 0);
}

#[test]
fn legacy_v1_registers() {
    let mem = TestMemory::new(0x10_0000, 1 << 20);
    let mut d = MmioDevice::new(
        EchoDevice::new(&mem, 2, 256),
        Arc::new(RecordingIrq::default()),
        MmioConfig {
            version: MmioVersion::Legacy,
            ..MmioConfig::default()
        },
    );
    assert_eq!(rd(&mut d, regs::VERSION), 1);
    wr(&mut d, lregs::HOST_FEATURES_SEL, 0);
    let low = rd(&mut d, lregs::HOST_FEATURES);
    assert_ne!(low & (1 << VIRTIO_F_ANY_LAYOUT), 0, "ANY_LAYOUT offered");
    wr(&mut d, lregs::HOST_FEATURES_SEL, 1);
    assert_eq!(rd(&mut d, lregs::HOST_FEATURES), 0, "no bits above 31");
    // Modern-only registers do not exist.
    assert_eq!(rd(&mut d, regs::QUEUE_READY), 0);
    assert!(matches!(
        d.core().violations().last(),
        Some(Violation::BadAccess { offset: 0x44, .. })
    ));
    wr(&mut d, regs::STATUS, 1 | 2);
    wr(&mut d, lregs::GUEST_PAGE_SIZE, 4096);
    wr(&mut d, regs::QUEUE_SEL, 1);
    assert_eq!(rd(&mut d, regs::QUEUE_SIZE_MAX), 256);
    wr(&mut d, regs::QUEUE_SIZE, 128);
    wr(&mut d, lregs::QUEUE_ALIGN, 4096);
    wr(&mut d, lregs::QUEUE_PFN, 0x140);
    assert_eq!(rd(&mut d, lregs::QUEUE_PFN), 0x140);
    let q = d.core().queues()[1];
    let l = legacy_layout(128, 4096);
    assert_eq!(
        q.addresses,
        QueueAddresses {
            desc: 0x14_0000,
            driver: 0x14_0000 + l.avail_offset as u64,
            device: 0x14_0000 + l.used_offset as u64,
        }
    );
    assert!(q.ready);
    // A bad alignment is refused; PFN stays 0.
    wr(&mut d, regs::QUEUE_SEL, 0);
    wr(&mut d, lregs::QUEUE_ALIGN, 3000);
    wr(&mut d, lregs::QUEUE_PFN, 0x180);
    assert_eq!(rd(&mut d, lregs::QUEUE_PFN), 0);
    // Reset sets every QueuePFN to 0.
    wr(&mut d, regs::STATUS, 0);
    wr(&mut d, regs::QUEUE_SEL, 1);
    assert_eq!(rd(&mut d, lregs::QUEUE_PFN), 0);
    // Writing 0 to QueuePFN stops a queue.
    wr(&mut d, regs::STATUS, 1 | 2);
    wr(&mut d, lregs::GUEST_PAGE_SIZE, 4096);
    wr(&mut d, regs::QUEUE_SIZE, 64);
    wr(&mut d, lregs::QUEUE_ALIGN, 4096);
    wr(&mut d, lregs::QUEUE_PFN, 0x150);
    assert_eq!(rd(&mut d, lregs::QUEUE_PFN), 0x150);
    wr(&mut d, lregs::QUEUE_PFN, 0);
    assert_eq!(rd(&mut d, lregs::QUEUE_PFN), 0);
    assert!(!d.core().queues()[1].ready);
}

#[test]
fn shared_memory_registers() {
    let mem = TestMemory::new(0x10_0000, 1 << 20);
    let d = MmioDevice::new(
        EchoDevice::new(&mem, 1, 64).with_shm(&[
            ShmRegion {
                id: 0,
                len: 0x1_0000,
            },
            ShmRegion { id: 3, len: 0x1800 },
        ]),
        Arc::new(RecordingIrq::default()),
        MmioConfig {
            shm_base: 0x8000_0000,
            ..MmioConfig::default()
        },
    );
    let block = RefCell::new(d);
    let t = MmioTransport::new(Loopback::new(&block)).unwrap();
    assert_eq!(t.shm_region(0), Some((0x8000_0000, 0x1_0000)));
    assert_eq!(t.shm_region(3), Some((0x8001_0000, 0x1800)));
    assert_eq!(t.shm_region(1), None, "absent region has length -1");
    assert_eq!(block.borrow().shm_region(3), Some((0x8001_0000, 0x1800)));
}

/// A register window that answers from a closure and records offsets.
struct Fake<F: Fn(usize) -> u32> {
    read: F,
    touched: RefCell<Vec<usize>>,
    writes: Cell<usize>,
}

impl<F: Fn(usize) -> u32> Fake<F> {
    fn new(read: F) -> Self {
        Self {
            read,
            touched: RefCell::new(Vec::new()),
            writes: Cell::new(0),
        }
    }
}

impl<F: Fn(usize) -> u32> std::fmt::Debug for Fake<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Fake")
    }
}

impl<F: Fn(usize) -> u32> RegisterAccess for Fake<F> {
    fn read8(&self, offset: usize) -> u8 {
        self.read32(offset) as u8
    }
    fn read16(&self, offset: usize) -> u16 {
        self.read32(offset) as u16
    }
    fn read32(&self, offset: usize) -> u32 {
        self.touched.borrow_mut().push(offset);
        (self.read)(offset)
    }
    fn write8(&self, offset: usize, _: u8) {
        self.write32(offset, 0)
    }
    fn write16(&self, offset: usize, _: u16) {
        self.write32(offset, 0)
    }
    fn write32(&self, offset: usize, _: u32) {
        self.touched.borrow_mut().push(offset);
        self.writes.set(self.writes.get() + 1);
    }
}

fn header(version: u32, id: u32) -> impl Fn(usize) -> u32 {
    move |off| match off {
        regs::MAGIC_VALUE => regs::MAGIC,
        regs::VERSION => version,
        regs::DEVICE_ID => id,
        _ => 0,
    }
}

#[test]
fn driver_probe_checks_magic_version_and_placeholder() {
    let bad = Fake::new(|_| 0x1234);
    assert_eq!(
        MmioTransport::new(&bad).unwrap_err(),
        TransportError::NotVirtio { magic: 0x1234 }
    );
    let v3 = Fake::new(header(3, 2));
    assert_eq!(
        MmioTransport::new(&v3).unwrap_err(),
        TransportError::UnsupportedVersion(3)
    );
    let placeholder = Fake::new(header(2, 0));
    assert_eq!(
        MmioTransport::new(&placeholder).unwrap_err(),
        TransportError::Placeholder
    );
    assert_eq!(
        *placeholder.touched.borrow(),
        [regs::MAGIC_VALUE, regs::VERSION, regs::DEVICE_ID],
        "nothing but MagicValue, Version, DeviceID touched"
    );
    assert_eq!(placeholder.writes.get(), 0);
}

#[test]
fn driver_survives_a_device_that_never_resets() {
    let f = Fake::new(|off| match off {
        regs::STATUS => 1,
        o => header(2, 2)(o),
    });
    let mut t = MmioTransport::new(&f).unwrap();
    assert_eq!(t.reset().unwrap_err(), TransportError::ResetTimeout);
    assert_eq!(
        driver::negotiate(&mut t, FeatureSet::EMPTY, &[]).unwrap_err(),
        TransportError::ResetTimeout
    );
}

#[test]
fn driver_survives_an_ever_changing_generation() {
    let n = Cell::new(0u32);
    let f = Fake::new(|off| match off {
        regs::CONFIG_GENERATION => {
            n.set(n.get().wrapping_add(1));
            n.get()
        }
        o => header(2, 2)(o),
    });
    let mut t = MmioTransport::new(&f).unwrap();
    assert_eq!(
        driver::read_config_consistent(&mut t, |_| ()).unwrap_err(),
        TransportError::ConfigUnstable
    );
}

#[test]
fn driver_refuses_missing_version_1_and_bad_queues() {
    // Offers nothing: no VERSION_1 on a version-2 device.
    let f = Fake::new(header(2, 2));
    let mut t = MmioTransport::new(&f).unwrap();
    assert_eq!(
        driver::negotiate(&mut t, FeatureSet::EMPTY, &[]).unwrap_err(),
        TransportError::NoVersion1
    );
    // QueueSizeMax 0: the queue does not exist.
    let cfg = QueueConfig {
        size: 8,
        addresses: QueueAddresses::default(),
    };
    assert_eq!(
        t.setup_queue(0, &cfg).unwrap_err(),
        TransportError::NoSuchQueue(0)
    );
    // A device that never reports the queue ready.
    let f = Fake::new(|off| match off {
        regs::QUEUE_SIZE_MAX => 16,
        o => header(2, 2)(o),
    });
    let mut t = MmioTransport::new(&f).unwrap();
    assert_eq!(
        t.setup_queue(0, &cfg).unwrap_err(),
        TransportError::QueueNotEnabled(0)
    );
    let big = QueueConfig { size: 32, ..cfg };
    assert!(matches!(
        t.setup_queue(0, &big).unwrap_err(),
        TransportError::QueueSize {
            size: 32,
            max: 16,
            ..
        }
    ));
    // A device that says a queue is in use.
    let f = Fake::new(|off| match off {
        regs::QUEUE_READY => 1,
        o => header(2, 2)(o),
    });
    let mut t = MmioTransport::new(&f).unwrap();
    assert_eq!(
        t.setup_queue(0, &cfg).unwrap_err(),
        TransportError::QueueInUse(0)
    );
    assert_eq!(
        t.reset_queue(0).unwrap_err(),
        TransportError::RingResetNotNegotiated
    );
}

#[test]
fn driver_legacy_queue_memory_must_follow_the_legacy_layout() {
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
    driver::negotiate(&mut t, FeatureSet::EMPTY, &[]).unwrap();
    let not_contiguous = QueueConfig {
        size: 64,
        addresses: QueueAddresses {
            desc: 0x10_0000,
            driver: 0x12_0000,
            device: 0x13_0000,
        },
    };
    assert_eq!(
        t.setup_queue(0, &not_contiguous).unwrap_err(),
        TransportError::LegacyLayout(0)
    );
    assert_eq!(t.legacy_queue_align(), Some(4096));
}

#[test]
fn activation_reports_split_for_legacy_and_version_1_absent() {
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
    assert!(!f.contains(VIRTIO_F_VERSION_1));
    let _q = common::make_queue(&mut t, &mem, f, 0, 64);
    driver::set_driver_ok(&mut t);
    let b = block.borrow();
    let Some(EchoEvent::Activated(a)) = b.core().device().events.last() else {
        panic!("not activated");
    };
    assert!(a.legacy);
    assert_eq!(a.queues[0].format, RingFormat::Split);
}

/// A register file that stores writes, answers reads from the stored value
/// unless `read` overrides it, and logs every access in order.
struct Scripted<F: Fn(usize, &HashMap<usize, u32>) -> Option<u32>> {
    read: F,
    regs: RefCell<HashMap<usize, u32>>,
    log: RefCell<Vec<(char, usize, u32)>>,
}

impl<F: Fn(usize, &HashMap<usize, u32>) -> Option<u32>> Scripted<F> {
    fn new(read: F) -> Self {
        Self {
            read,
            regs: RefCell::new(HashMap::new()),
            log: RefCell::new(Vec::new()),
        }
    }
}

impl<F: Fn(usize, &HashMap<usize, u32>) -> Option<u32>> std::fmt::Debug for Scripted<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Scripted")
    }
}

impl<F: Fn(usize, &HashMap<usize, u32>) -> Option<u32>> RegisterAccess for Scripted<F> {
    fn read8(&self, offset: usize) -> u8 {
        self.read32(offset) as u8
    }
    fn read16(&self, offset: usize) -> u16 {
        self.read32(offset) as u16
    }
    fn read32(&self, offset: usize) -> u32 {
        let regs = self.regs.borrow();
        let v = (self.read)(offset, &regs)
            .or_else(|| Some(header(2, 2)(offset)).filter(|&v| v != 0))
            .unwrap_or_else(|| regs.get(&offset).copied().unwrap_or(0));
        self.log.borrow_mut().push(('r', offset, v));
        v
    }
    fn write8(&self, offset: usize, value: u8) {
        self.write32(offset, value.into())
    }
    fn write16(&self, offset: usize, value: u16) {
        self.write32(offset, value.into())
    }
    fn write32(&self, offset: usize, value: u32) {
        self.log.borrow_mut().push(('w', offset, value));
        self.regs.borrow_mut().insert(offset, value);
    }
}

/// §2.2.1 / §4.2.2.2 / §4.2.3.1.1: offered every bit in every window, the
/// driver accepts only what it supports and the transport can carry, never
/// a reserved bit; it selects each window before reading or writing it, and
/// never touches the shared memory registers.
#[test]
fn driver_accepts_only_valid_offered_bits_and_selects_windows_first() {
    let f = Scripted::new(|off, _| (off == regs::DEVICE_FEATURES).then_some(u32::MAX));
    let mut t = MmioTransport::new(&f).unwrap();
    let everything = FeatureSet::from_words([u32::MAX; 4]);
    let got = driver::negotiate(&mut t, everything, &[]).unwrap();
    for bit in got.iter() {
        assert!(
            !ringwork_spec::features::is_reserved_for_future(bit),
            "reserved bit {bit} accepted"
        );
    }
    for bit in [37, 39, 41] {
        assert!(!got.contains(bit), "bit {bit} cannot be used over MMIO");
    }
    assert!(got.contains(VIRTIO_F_VERSION_1));
    let log = f.log.borrow();
    let mut sel_written = [false; 2];
    let mut written = [0u32; 4];
    let mut driver_sel = None;
    for &(kind, off, v) in log.iter() {
        match (kind, off) {
            ('w', regs::DEVICE_FEATURES_SEL) => sel_written[0] = true,
            ('w', regs::DRIVER_FEATURES_SEL) => {
                sel_written[1] = true;
                driver_sel = Some(v as usize);
            }
            ('r', regs::DEVICE_FEATURES) => assert!(sel_written[0], "read before select"),
            ('w', regs::DRIVER_FEATURES) => {
                let sel = driver_sel.expect("write before select");
                written[sel] = v;
            }
            (_, o) if (regs::SHM_SEL..=regs::SHM_BASE_HIGH).contains(&o) => {
                panic!("shared memory register {o:#x} touched")
            }
            _ => {}
        }
    }
    assert_eq!(FeatureSet::from_words(written), got);
}

/// §4.2.2.2 / §4.2.3.4.1: undefined InterruptStatus bits are ignored and
/// never acknowledged; the handled bits are.
#[test]
fn driver_acknowledges_only_defined_interrupt_bits() {
    let f = Scripted::new(|off, _| (off == regs::INTERRUPT_STATUS).then_some(0xff));
    let mut t = MmioTransport::new(&f).unwrap();
    let cause = t.ack_interrupt();
    assert!(cause.used_buffer && cause.config_changed);
    let log = f.log.borrow();
    let reads = log
        .iter()
        .position(|e| e.1 == regs::INTERRUPT_STATUS)
        .unwrap();
    let ack = log.iter().position(|e| e.1 == regs::INTERRUPT_ACK).unwrap();
    assert!(reads < ack, "status read before the acknowledge");
    assert_eq!(log[ack], ('w', regs::INTERRUPT_ACK, 3));
}

/// §4.2.2.2: to stop using a queue, write 0 to QueueReady and read it back.
#[test]
fn driver_disables_a_queue_and_reads_back() {
    let f = Scripted::new(|_, _| None);
    let mut t = MmioTransport::new(&f).unwrap();
    t.disable_queue(3);
    let log = f.log.borrow();
    let tail: Vec<_> = log.iter().rev().take(3).rev().copied().collect();
    assert_eq!(
        tail,
        [
            ('w', regs::QUEUE_SEL, 3),
            ('w', regs::QUEUE_READY, 0),
            ('r', regs::QUEUE_READY, 0)
        ]
    );
}

/// §4.2.2.2: a queue reset is not complete until QueueReset reads 0; a
/// device that never finishes gives an error, not a hang.
#[test]
fn driver_waits_for_queue_reset_and_gives_up() {
    let f = Scripted::new(|off, _| (off == regs::QUEUE_RESET).then_some(1));
    let mut t = MmioTransport::new(&f).unwrap();
    t.set_driver_features(FeatureSet::from_bits(&[
        VIRTIO_F_VERSION_1,
        ringwork_spec::features::VIRTIO_F_RING_RESET,
    ]));
    assert_eq!(
        t.reset_queue(2).unwrap_err(),
        TransportError::QueueResetTimeout(2)
    );
}
