//! More virtio-pci tests, device and driver side: vendor data capabilities
//! (VIRTIO 1.4 §4.1.4.8), structure capabilities advertising more `length`
//! and `cap_len` than needed (§4.1.4.1), and every MSI-X Table Size
//! (§4.1.5.1.2.2).

use std::cell::RefCell;
use std::sync::Arc;

use ringwork_queue::test_utils::TestMemory;
use ringwork_queue::{Dma, DriverQueue, DriverQueueConfig, Segment};
use ringwork_spec::features::{
    FeatureSet, VIRTIO_F_EVENT_IDX, VIRTIO_F_RING_RESET, VIRTIO_F_VERSION_1,
};
use ringwork_spec::pci::*;
use ringwork_transport::driver::{self, ConfigRead, RegisterAccess, Transport, TransportError};
use ringwork_transport::pci::*;
use ringwork_transport::test_utils::{EchoDevice, PciLoopback};
use ringwork_transport::{NoIrq, Violation};

mod pci_common;

use pci_common::{cap_list, find_cap, last_violation, mem, negotiate, Bytes, Echo, Irq, Msi};

// ---------------------------------------------------------------- fixtures

type Dev<'m> = RefCell<PciDevice<Echo<'m>>>;
type Window<'a, 'm> = PciLoopback<'a, Echo<'m>>;

fn device(mem: &TestMemory, config: PciConfig) -> Result<PciDevice<Echo<'_>>, PciConfigError> {
    PciDevice::new(
        EchoDevice::new(mem, 2, 64),
        Arc::new(NoIrq),
        Arc::new(NoMsi),
        config,
    )
}

fn with_vendor_data(vendor_data: &'static [VendorData]) -> PciConfig {
    PciConfig {
        vendor_data,
        ..PciConfig::default()
    }
}

/// Builds a driver queue for this transport and attaches it (§4.1.5.1.3).
fn queue<'m, T: Transport>(
    t: &mut T,
    mem: &'m TestMemory,
    features: FeatureSet,
    index: u16,
) -> DriverQueue<&'m TestMemory, u32> {
    let (format, qf) = driver::ring_features(t, features);
    let mut cfg = DriverQueueConfig::new(format, 64, qf);
    cfg.index = index;
    let q = DriverQueue::new(mem, cfg).unwrap();
    driver::attach_queue(t, &q).unwrap();
    q
}

/// Sends `n` requests through queue `index` and checks the echoed bytes.
fn echo<T: Transport>(
    t: &mut T,
    mem: &TestMemory,
    q: &mut DriverQueue<&TestMemory, u32>,
    index: u16,
    n: u32,
) {
    for i in 0..n {
        let len = 16 + i % 7;
        let req = mem.alloc(64, 8).unwrap();
        let resp = mem.alloc(64, 8).unwrap();
        let pattern: Vec<u8> = (0..len).map(|b| (b as u8) ^ (i as u8) ^ 0x5a).collect();
        req.slice().write_bytes(0, &pattern).unwrap();
        let out = [Segment::new(req.device_addr(), len)];
        let inp = [Segment::new(resp.device_addr(), 64)];
        q.add(&out, &inp, i).unwrap();
        if q.kick_prepare().unwrap() {
            let data = q.notification_data();
            t.notify(index, data);
        }
        let used = q.pop_used().unwrap().expect("device answered");
        assert_eq!((used.token, used.len), (i, len));
        let mut got = vec![0u8; len as usize];
        resp.slice().read_bytes(0, &mut got).unwrap();
        assert_eq!(got, pattern);
    }
}

/// Negotiates `supports`, sets up both queues, DRIVER_OK, and moves
/// buffers through each.
fn full_run<T: Transport>(t: &mut T, mem: &TestMemory, supports: FeatureSet) -> FeatureSet {
    let f = driver::negotiate(t, supports, &[]).unwrap();
    let mut q0 = queue(t, mem, f, 0);
    let mut q1 = queue(t, mem, f, 1);
    driver::set_driver_ok(t);
    assert!(t.status().is_live());
    echo(t, mem, &mut q0, 0, 3);
    echo(t, mem, &mut q1, 1, 3);
    assert_eq!(t.config_u32(0), EchoDevice::<&TestMemory>::CONFIG_MAGIC);
    f
}

fn assert_no_violations(dev: &Dev<'_>) {
    let d = dev.borrow();
    assert_eq!(
        d.core().violations().count(),
        0,
        "{:?}",
        d.core().violations()
    );
}

/// Configuration-space bytes of `len` at `at`, read one at a time.
fn cfg_bytes<D: ringwork_transport::VirtioDevice>(
    d: &mut PciDevice<D>,
    at: u64,
    len: usize,
) -> Vec<u8> {
    (0..len as u64).map(|i| d.cfg(at + i, 1) as u8).collect()
}

/// A configuration window presenting some bytes differently from the
/// device (a device of that design), and logging the offsets the driver
/// reads.
struct Patched<R> {
    inner: R,
    /// (offset, byte) read overrides.
    bytes: Vec<(usize, u8)>,
    reads: RefCell<Vec<(usize, usize)>>,
}

impl<R: RegisterAccess> Patched<R> {
    fn new(inner: R) -> Self {
        Self {
            inner,
            bytes: Vec::new(),
            reads: RefCell::new(Vec::new()),
        }
    }
    fn patch(&mut self, at: usize, value: &[u8]) {
        for (i, &b) in value.iter().enumerate() {
            self.bytes.push((at + i, b));
        }
    }
    fn fix<const N: usize>(&self, o: usize, mut v: [u8; N]) -> [u8; N] {
        self.reads.borrow_mut().push((o, N));
        for &(at, b) in &self.bytes {
            if (o..o + N).contains(&at) {
                v[at - o] = b;
            }
        }
        v
    }
}

impl<R: RegisterAccess> RegisterAccess for Patched<R> {
    fn read8(&self, o: usize) -> u8 {
        self.fix(o, [self.inner.read8(o)])[0]
    }
    fn read16(&self, o: usize) -> u16 {
        u16::from_le_bytes(self.fix(o, self.inner.read16(o).to_le_bytes()))
    }
    fn read32(&self, o: usize) -> u32 {
        u32::from_le_bytes(self.fix(o, self.inner.read32(o).to_le_bytes()))
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

// ------------------------------------------------------------------- tests

/// 11, 6 and 8 bytes of capability before padding.
const THREE_VENDORS: &[VendorData] = &[
    VendorData {
        vendor_id: 0x8086,
        data: &[1, 2, 3, 4, 5],
    },
    VendorData {
        vendor_id: 0x1b36,
        data: &[],
    },
    VendorData {
        vendor_id: 0x10de,
        data: &[0xaa, 0xbb],
    },
];

/// §4.1.4.8, device side: the vendor data capabilities follow the other
/// capabilities, with `cap_len` a multiple of 4 (data padded with zeros);
/// `vendor_id` 0x1AF4 and capabilities that do not fit are refused; reads
/// have no side effects and writes are dropped and recorded (§4.1.4.1).
#[test]
fn vendor_data_capabilities_presented() {
    let m = mem();
    let mut d = device(&m, with_vendor_data(THREE_VENDORS)).unwrap();
    let caps = cap_list(&mut d);
    assert_eq!(caps.len(), 9, "MSI-X, 5 virtio structures, 3 vendor data");
    let types: Vec<u8> = caps[1..]
        .iter()
        .map(|&(p, id)| {
            assert_eq!(id, PCI_CAP_ID_VNDR);
            d.cfg(p + 3, 1) as u8
        })
        .collect();
    assert_eq!(types, [1, 2, 3, 4, 5, 9, 9, 9]);
    let v: Vec<u64> = caps[6..].iter().map(|c| c.0).collect();
    let want: [Vec<u8>; 3] = [
        vec![9, v[1] as u8, 12, 9, 0x86, 0x80, 1, 2, 3, 4, 5, 0],
        vec![9, v[2] as u8, 8, 9, 0x36, 0x1b, 0, 0],
        vec![9, 0, 8, 9, 0xde, 0x10, 0xaa, 0xbb],
    ];
    for (&at, want) in v.iter().zip(&want) {
        assert_eq!(at % 4, 0);
        let len = d.cfg(at + 2, 1) as usize;
        assert_eq!(len % 4, 0, "cap_len a multiple of 4");
        assert_eq!(&cfg_bytes(&mut d, at, len), want);
    }
    // After a function reset too.
    d.reset_function();
    assert_eq!(cfg_bytes(&mut d, v[0], 12), want[0]);

    // Reads have no side effects: a device with an interrupt pending keeps
    // it, and nothing else changes.
    let (mut d, irq, _) = pci_common::echo_dev(&m, with_vendor_data(THREE_VENDORS));
    negotiate(&mut d, FeatureSet::from_bits(&[VIRTIO_F_VERSION_1]));
    pci_common::driver_ok(&mut d);
    let s = d.signals();
    d.core_mut().device_mut().set_counter(5, &s);
    let state = |d: &PciDevice<Echo<'_>>| {
        let c = d.core();
        let v = c.violations();
        (
            c.status(),
            c.interrupt_status(),
            c.config_generation(),
            v.count(),
            v.last().cloned(),
        )
    };
    let before = state(&d);
    assert_ne!(before.1, 0, "ISR bit pending");
    assert_eq!(irq.last(), Some(true));
    let irq_events = irq.0.lock().unwrap().len();
    let dump = |d: &mut PciDevice<Echo<'_>>| -> Vec<u32> {
        let mut out = Vec::new();
        for &at in &v {
            let len = d.cfg(at + 2, 1) as u64;
            for w in [1, 2, 4] {
                out.extend((at..at + len).step_by(w).map(|o| d.cfg(o, w)));
            }
        }
        out
    };
    let first = dump(&mut d);
    assert_eq!(dump(&mut d), first, "identical on every read");
    assert_eq!(state(&d), before);
    assert_eq!(irq.0.lock().unwrap().len(), irq_events);

    // Writes: dropped and recorded.
    d.set_cfg(v[0] + 4, 2, 0x1af4);
    assert_eq!(
        last_violation(&d),
        Some(Violation::CapabilityWrite {
            offset: (v[0] + 4) as u16
        })
    );
    d.set_cfg(v[2] + 4, 4, 0);
    assert_eq!(
        last_violation(&d),
        Some(Violation::CapabilityWrite {
            offset: (v[2] + 4) as u16
        })
    );
    assert_eq!(d.core().violations().count(), before.3 + 2);
    assert_eq!(dump(&mut d), first);

    // §4.1.4.8: vendor_id MUST NOT be 0x1AF4, wherever it appears.
    let bad = with_vendor_data(&[
        VendorData {
            vendor_id: 0x8086,
            data: &[1],
        },
        VendorData {
            vendor_id: 0x1af4,
            data: &[],
        },
    ]);
    assert_eq!(
        device(&m, bad).err(),
        Some(PciConfigError::VendorId(0x1af4))
    );
    // After the other capabilities (up to 0xa4), 92 bytes are left: 86 bytes
    // of data fit, 87 (padded to 96) do not, nor do many small ones.
    let fits = device(
        &m,
        with_vendor_data(&[VendorData {
            vendor_id: 1,
            data: &[0x11; 86],
        }]),
    );
    let mut d = fits.unwrap();
    let last = cap_list(&mut d).last().unwrap().0;
    assert_eq!(last + u64::from(d.cfg(last + 2, 1) as u8), 0x100);
    for vendor_data in [
        &[VendorData {
            vendor_id: 1,
            data: &[0x11; 87],
        }][..],
        &[VendorData {
            vendor_id: 1,
            data: &[0; 300],
        }],
        &[VendorData {
            vendor_id: 1,
            data: &[0; 10],
        }; 6],
    ] {
        assert_eq!(
            device(&m, with_vendor_data(vendor_data)).err(),
            Some(PciConfigError::CapabilitySpace)
        );
    }
}

/// Two formats, the first appearing twice; 14, 12 and 8 bytes before
/// padding.
const TWO_VENDORS: &[VendorData] = &[
    VendorData {
        vendor_id: 0x8086,
        data: b"dbg:v1.2",
    },
    VendorData {
        vendor_id: 0x10de,
        data: &[1, 2, 3, 4, 5, 6],
    },
    VendorData {
        vendor_id: 0x8086,
        data: &[7, 7],
    },
];

/// §4.1.4.8, driver side: vendor data capabilities are listed; their data
/// is only given to a caller naming the right `vendor_id`, and capabilities
/// of other vendors are never read past their header. They do not disturb
/// the layout: the transport works as without them.
#[test]
fn driver_qualifies_vendor_id() {
    let m = mem();
    let dev = RefCell::new(device(&m, with_vendor_data(TWO_VENDORS)).unwrap());
    let offsets: Vec<u64> = cap_list(&mut dev.borrow_mut())[6..]
        .iter()
        .map(|c| c.0)
        .collect();
    let mut t = PciTransport::new(
        Patched::new(PciLoopback::config(&dev)),
        PciLoopback::bars(&dev),
    )
    .unwrap();
    let found: Vec<VendorDataCap> = t.vendor_data().collect();
    let want: Vec<VendorDataCap> = [(0x8086, 16), (0x10de, 12), (0x8086, 8)]
        .iter()
        .zip(&offsets)
        .map(|(&(vendor_id, cap_len), &at)| VendorDataCap {
            vendor_id,
            offset: at as u8,
            cap_len,
        })
        .collect();
    assert_eq!(found, want);
    assert_eq!(found[0].data_len(), 10);

    let mut buf = [0xeeu8; 32];
    t.pci_config().reads.borrow_mut().clear();
    for (id, index) in [(0x1af4, 0), (0x1234, 0), (0x10de, 1), (0x8086, 2)] {
        assert_eq!(t.read_vendor_data(id, index, &mut buf), None);
    }
    assert!(t.pci_config().reads.borrow().is_empty(), "nothing read");
    assert_eq!(buf, [0xee; 32]);

    assert_eq!(t.read_vendor_data(0x10de, 0, &mut buf), Some(6));
    assert_eq!(buf[..6], [1, 2, 3, 4, 5, 6]);
    // Only that capability was read: its vendor_id first, then its data.
    let reads = t.pci_config().reads.take();
    let at = offsets[1] as usize;
    assert_eq!(reads.iter().find(|r| r.1 == 2), Some(&(at + 4, 2)));
    assert!(reads.iter().all(|r| (at..at + 12).contains(&r.0)));
    assert_eq!(t.read_vendor_data(0x8086, 0, &mut buf), Some(10));
    assert_eq!(&buf[..10], b"dbg:v1.2\0\0", "padding included");
    assert_eq!(t.read_vendor_data(0x8086, 1, &mut buf), Some(2));
    assert_eq!(buf[..2], [7, 7]);
    let mut short = [0u8; 3];
    assert_eq!(t.read_vendor_data(0x8086, 0, &mut short), Some(3));
    assert_eq!(&short, b"dbg");

    // A device whose vendor_id no longer matches what was listed: refused.
    let mut p = Patched::new(PciLoopback::config(&dev));
    let t2 = PciTransport::new(
        Patched::new(PciLoopback::config(&dev)),
        PciLoopback::bars(&dev),
    )
    .unwrap();
    p.patch(offsets[1] as usize + 4, &0x8087u16.to_le_bytes());
    let t3 = PciTransport::new(p, PciLoopback::bars(&dev)).unwrap();
    assert_eq!(t3.vendor_data().nth(1).unwrap().vendor_id, 0x8087);
    assert_eq!(t3.read_vendor_data(0x10de, 0, &mut buf), None);
    assert_eq!(t2.read_vendor_data(0x10de, 0, &mut buf), Some(6));
    drop((t2, t3));

    // The layout is that of a device without vendor data, and it works.
    assert!(!t.is_legacy());
    assert_eq!(t.notify_off_multiplier(), Some(4));
    assert_eq!(t.msix_table_size(), Some(4));
    full_run(&mut t, &m, FeatureSet::from_bits(&[VIRTIO_F_EVENT_IDX]));
    assert_eq!(dev.borrow().core().device().completed, 6);
    assert_no_violations(&dev);
}

/// §4.1.4.1: the driver MUST handle an unexpectedly large `length` (and
/// accept a larger `cap_len`): common, notification, ISR and device
/// configuration capabilities advertising up to 4 GiB still work, queue
/// reset (which needs `queue_reset` covered) included.
#[test]
fn driver_accepts_unexpectedly_large_structure_lengths() {
    for huge in [0x10_0000u32, 0x8000_0000, 0xffff_ffff] {
        let m = mem();
        let irq = Arc::new(Irq::default());
        let d = PciDevice::new(
            EchoDevice::new(&m, 2, 64),
            irq.clone(),
            Arc::new(NoMsi),
            PciConfig::default(),
        );
        let dev: Dev<'_> = RefCell::new(d.unwrap());
        let mut config: Patched<Window<'_, '_>> = Patched::new(PciLoopback::config(&dev));
        for ty in [
            VIRTIO_PCI_CAP_COMMON_CFG,
            VIRTIO_PCI_CAP_NOTIFY_CFG,
            VIRTIO_PCI_CAP_ISR_CFG,
            VIRTIO_PCI_CAP_DEVICE_CFG,
        ] {
            let at = find_cap(&mut dev.borrow_mut(), ty) as usize;
            let cap_len = dev.borrow_mut().cfg(at as u64 + 2, 1) as u8;
            config.patch(at + CAP_LEN, &[cap_len + 32]);
            config.patch(at + CAP_LENGTH, &huge.to_le_bytes());
        }
        // The patches are what the driver sees.
        let at = find_cap(&mut dev.borrow_mut(), VIRTIO_PCI_CAP_COMMON_CFG) as usize;
        assert_eq!(config.read32(at + CAP_LENGTH), huge);
        assert_eq!(config.read8(at + CAP_LEN), 48);

        let mut t = PciTransport::new(config, PciLoopback::bars(&dev)).unwrap();
        assert!(!t.is_legacy());
        assert_eq!(t.notify_off_multiplier(), Some(4));
        let f = full_run(
            &mut t,
            &m,
            FeatureSet::from_bits(&[VIRTIO_F_RING_RESET, VIRTIO_F_EVENT_IDX]),
        );
        // ISR (INTx, MSI-X not enabled).
        assert_eq!(irq.last(), Some(true));
        assert!(t.ack_interrupt().used_buffer);
        assert_eq!(irq.last(), Some(false));
        // Queue reset, then the queue again.
        t.reset_queue(0).unwrap();
        let mut q0 = queue(&mut t, &m, f, 0);
        echo(&mut t, &m, &mut q0, 0, 2);
        assert_eq!(dev.borrow().core().device().completed, 8);
        assert_no_violations(&dev);
    }
}

/// §4.1.5.1.2.2: the driver MUST support any MSI-X Table Size (field 0 to
/// 0x7FF, 1 to 0x800 vectors) and MUST NOT map an event outside the table.
/// For each size: the count is reported, the last vector can be mapped and
/// delivers messages (held in the right PBA bit while masked), and the
/// first vector past the table is refused by the driver before the device
/// sees it.
#[test]
fn driver_supports_any_msix_table_size() {
    for n in [1u16, 2, 3, 64, 0x800] {
        let m = mem();
        let msi = Arc::new(Msi::default());
        let config = PciConfig {
            msix_vectors: n,
            ..PciConfig::default()
        };
        let d = PciDevice::new(
            EchoDevice::new(&m, 2, 64),
            Arc::new(Irq::default()),
            msi.clone(),
            config,
        );
        let dev: Dev<'_> = RefCell::new(d.unwrap());

        // Device side: Table Size field, table and PBA inside the BAR.
        let (pba, bar_size) = {
            let mut d = dev.borrow_mut();
            let mx = cap_list(&mut d)
                .into_iter()
                .find(|c| c.1 == 0x11)
                .unwrap()
                .0;
            assert_eq!(d.cfg(mx + 2, 2) & 0x7ff, u32::from(n - 1));
            assert_eq!(d.cfg(mx + 4, 4), u32::from(MSIX_BAR_INDEX), "table at 0");
            let pba = u64::from(d.cfg(mx + 8, 4) & !7);
            let bar = d.bars().into_iter().find(|b| b.index == MSIX_BAR_INDEX);
            (pba, bar.unwrap().size)
        };
        assert!(pba >= 16 * u64::from(n) && pba % 8 == 0);
        assert!(pba + 8 * u64::from(n).div_ceil(64) <= bar_size);

        let mut t = PciTransport::new(PciLoopback::config(&dev), PciLoopback::bars(&dev)).unwrap();
        assert_eq!(t.msix_table_size(), Some(n));
        assert_eq!(t.enable_msix(), Ok(n));
        let last = n - 1;
        let (addr, data) = (
            0xfee0_0000 | (u64::from(last) << 4),
            0x4000 + u32::from(last),
        );
        t.set_msix_entry(last, addr, data).unwrap();
        let out = Err(TransportError::VectorOutOfRange {
            vector: n,
            table_size: n,
        });
        assert_eq!(t.set_msix_entry(n, 0, 0), out);
        assert_eq!(t.mask_msix_vector(n, true), out);

        let f = driver::negotiate(&mut t, FeatureSet::EMPTY, &[]).unwrap();
        t.set_config_vector(last).unwrap();
        t.set_queue_vector(1, last).unwrap();
        assert_eq!(t.set_queue_vector(1, n), out);
        assert_eq!(t.set_config_vector(n), out);
        assert_eq!(dev.borrow().core().queues()[1].msix_vector, last);
        let mut q1 = queue(&mut t, &m, f, 1);
        driver::set_driver_ok(&mut t);

        echo(&mut t, &m, &mut q1, 1, 1);
        assert_eq!(msi.take(), [(addr, data)], "{n} vectors");
        // Masked: pending in the PBA at bit `last`, sent on unmask.
        t.mask_msix_vector(last, true).unwrap();
        echo(&mut t, &m, &mut q1, 1, 1);
        assert!(msi.take().is_empty());
        let pending = |dev: &Dev<'_>| {
            let mut b = [0u8; 8];
            let word = pba + 8 * u64::from(last / 64);
            dev.borrow_mut().bar_read(MSIX_BAR_INDEX, word, &mut b);
            u64::from_le_bytes(b)
        };
        assert_eq!(pending(&dev), 1 << (last % 64));
        t.mask_msix_vector(last, false).unwrap();
        assert_eq!(msi.take(), [(addr, data)]);
        assert_eq!(pending(&dev), 0);
        // Configuration changes go to the same vector.
        let s = dev.borrow().signals();
        dev.borrow_mut().core_mut().device_mut().set_counter(9, &s);
        assert_eq!(msi.take(), [(addr, data)]);
        assert_eq!(t.config_u64(4), 9);
        assert_no_violations(&dev);
    }
}
