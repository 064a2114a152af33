//! Byte-level tests of the device-side virtio-pci model (VIRTIO 1.4 §4.1)
//! through `config_read`/`config_write`/`bar_read`/`bar_write`, as a VMM
//! would forward guest accesses.

use std::sync::Arc;

use ringwork_queue::test_utils::TestMemory;
use ringwork_spec::device_id::{VIRTIO_ID_GPU, VIRTIO_ID_NET};
use ringwork_spec::features::{
    FeatureSet, VIRTIO_F_ANY_LAYOUT, VIRTIO_F_NOTIFICATION_DATA, VIRTIO_F_RING_RESET,
    VIRTIO_F_VERSION_1,
};
use ringwork_spec::pci::legacy as lregs;
use ringwork_spec::pci::*;
use ringwork_spec::ring::notify::NotificationData;
use ringwork_spec::ring::split::legacy_layout;
use ringwork_spec::status::{
    VIRTIO_CONFIG_S_ACKNOWLEDGE as ACK, VIRTIO_CONFIG_S_DRIVER as DRIVER,
    VIRTIO_CONFIG_S_DRIVER_OK as DRIVER_OK, VIRTIO_CONFIG_S_FEATURES_OK as FEATURES_OK,
};
use ringwork_transport::pci::*;
use ringwork_transport::test_utils::{EchoDevice, EchoEvent};
use ringwork_transport::{ShmRegion, Violation, VirtioDevice};

mod pci_common;

use pci_common::*;

// ------------------------------------------------------------------- tests

/// §4.1.2.1, §4.1.2.3: identification of non-transitional and transitional
/// functions.
#[test]
fn identification_modern_and_transitional() {
    let m = mem();
    let cfg = PciConfig {
        subsystem_vendor_id: 0x1234,
        ..PciConfig::default()
    };
    let (mut d, _, _) = echo_dev(&m, cfg);
    assert_eq!(d.cfg(0, 2), 0x1af4);
    assert_eq!(d.cfg(2, 2), 0x1040 + 4); // entropy device
    assert!(d.cfg(8, 1) >= 1, "revision ≥ 1");
    assert_eq!(d.cfg(0x2c, 2), 0x1234);
    assert!(d.cfg(0x2e, 2) >= 0x40, "subsystem id ≥ 0x40");
    assert_eq!(d.cfg(0x08, 4) >> 8, 0xff_0000); // class "other"
    assert_eq!(d.cfg(0x0e, 1), 0, "type 0 header");
    assert_eq!(d.cfg(0x3d, 1), 1, "INTA#");
    assert_ne!(d.cfg(6, 2) & 0x10, 0, "capabilities list");
    assert_eq!(d.cfg(0x34, 1), 0x40);
    assert!(d.bars().iter().all(|b| b.kind != BarKind::Io));

    let (mut t, _, _) = echo_dev(&m, transitional(0));
    assert_eq!(t.cfg(2, 2), 0x1005);
    assert_eq!(t.cfg(8, 1), 0, "transitional revision 0");
    assert_eq!(t.cfg(0x2e, 2), 4, "subsystem id = device type");
    let bar0 = t.bars()[0];
    assert_eq!((bar0.index, bar0.kind), (0, BarKind::Io));

    let net = PciDevice::new(
        Dummy::new(VIRTIO_ID_NET),
        Arc::new(Irq::default()),
        Arc::new(Msi::default()),
        PciConfig::default(),
    );
    assert_eq!(net.unwrap().cfg(0x08, 4) >> 8, 0x02_0000);
}

#[test]
fn construction_errors() {
    let mk = |dev: Dummy, cfg: PciConfig| {
        PciDevice::new(dev, Arc::new(Irq::default()), Arc::new(Msi::default()), cfg).err()
    };
    // GPU (16) has no transitional ID.
    assert_eq!(
        mk(Dummy::new(VIRTIO_ID_GPU), transitional(0)),
        Some(PciConfigError::NoTransitionalId(16))
    );
    assert_eq!(
        mk(Dummy::new(0x40), PciConfig::default()),
        Some(PciConfigError::NoDeviceId(0x40))
    );
    let vectors = PciConfig {
        msix_vectors: 0x801,
        ..PciConfig::default()
    };
    assert_eq!(
        mk(Dummy::new(4), vectors),
        Some(PciConfigError::TooManyVectors(0x801))
    );
    // §4.1.4.4.1: 2 is fine without NOTIFICATION_DATA, not with it; 3 never.
    let mult = |m| PciConfig {
        notify_off_multiplier: m,
        ..PciConfig::default()
    };
    assert_eq!(mk(Dummy::new(4), mult(2)), None);
    assert_eq!(
        mk(Dummy::new(4), mult(3)),
        Some(PciConfigError::NotifyMultiplier(3))
    );
    let mut nd = Dummy::new(4);
    nd.features = FeatureSet::from_bits(&[VIRTIO_F_NOTIFICATION_DATA]);
    assert_eq!(mk(nd, mult(2)), Some(PciConfigError::NotifyMultiplier(2)));
    let mut q = Dummy::new(4);
    q.queues = vec![16, 24];
    assert_eq!(
        mk(q, PciConfig::default()),
        Some(PciConfigError::QueueSize { queue: 1, size: 24 })
    );
    let mut shm = Dummy::new(4);
    shm.shm = vec![
        ShmRegion { id: 1, len: 4096 },
        ShmRegion { id: 1, len: 4096 },
    ];
    assert_eq!(
        mk(shm, PciConfig::default()),
        Some(PciConfigError::DuplicateShmId(1))
    );
}

/// §4.1.4: the capability chain, each capability's contents, cap_len with
/// the extra fields (§4.1.4.2), 4-byte aligned offsets (§4.1.4.3.1,
/// §4.1.4.6.1), the notify multiplier and length rules (§4.1.4.4.1).
#[test]
fn capability_chain_and_contents() {
    let m = mem();
    let (mut d, _, _) = echo_dev(&m, PciConfig::default());
    let caps = cap_list(&mut d);
    let ids: Vec<u8> = caps.iter().map(|c| c.1).collect();
    assert_eq!(ids, [0x11, 9, 9, 9, 9, 9]);
    for &(p, _) in &caps {
        assert!(p >= 0x40 && p % 4 == 0);
    }
    assert_eq!(d.cfg(caps[5].0 + 1, 1), 0, "chain ends");

    // MSI-X: 4 vectors, table in BAR1 at 0, PBA in BAR1 at 0x800.
    let mx = caps[0].0;
    assert_eq!(d.cfg(mx + 2, 2) & 0x7ff, 3);
    assert_eq!(d.cfg(mx + 4, 4), MSIX_BAR_INDEX as u32);
    assert_eq!(d.cfg(mx + 8, 4), 0x800 | MSIX_BAR_INDEX as u32);

    let types: Vec<u32> = caps[1..].iter().map(|c| d.cfg(c.0 + 3, 1)).collect();
    assert_eq!(types, [1, 2, 3, 4, 5]);
    let lens: Vec<u32> = caps[1..].iter().map(|c| d.cfg(c.0 + 2, 1)).collect();
    assert_eq!(lens, [16, 20, 16, 16, 20]);
    for &(p, _) in &caps[1..5] {
        assert_eq!(d.cfg(p + 4, 1), MODERN_BAR_INDEX.into());
        assert_eq!(d.cfg(p + 8, 4) % 4, 0, "offset 4-byte aligned");
    }
    let field = |d: &mut Dev<'_>, ty, off| {
        let p = find_cap(d, ty);
        d.cfg(p + off, 4)
    };
    assert_eq!(field(&mut d, VIRTIO_PCI_CAP_COMMON_CFG, 8), 0);
    assert_eq!(field(&mut d, VIRTIO_PCI_CAP_COMMON_CFG, 12), 64);
    assert_eq!(field(&mut d, VIRTIO_PCI_CAP_ISR_CFG, 8), 0x1000);
    assert_eq!(field(&mut d, VIRTIO_PCI_CAP_ISR_CFG, 12), 1);
    assert_eq!(field(&mut d, VIRTIO_PCI_CAP_DEVICE_CFG, 8), 0x2000);
    assert_eq!(field(&mut d, VIRTIO_PCI_CAP_DEVICE_CFG, 12), 16);
    let n_off = field(&mut d, VIRTIO_PCI_CAP_NOTIFY_CFG, 8);
    let n_len = field(&mut d, VIRTIO_PCI_CAP_NOTIFY_CFG, 12);
    let mult = field(&mut d, VIRTIO_PCI_CAP_NOTIFY_CFG, 16);
    assert_eq!((n_off, mult), (0x3000, 4));
    assert!(is_valid_notify_off_multiplier(mult, true));
    for q in 0..2u16 {
        d.set_cc(COMMON_CFG_QUEUE_SELECT, 2, q.into());
        let noff = d.cc(COMMON_CFG_QUEUE_NOTIFY_OFF, 2) as u16;
        assert!(notify_cap_length_ok(n_len, noff, mult, true));
        assert_eq!(
            d.notify_offset(q),
            Some((MODERN_BAR_INDEX, notify_offset(n_off, noff, mult)))
        );
    }
    assert_eq!(d.notify_offset(2), None);

    // Without MSI-X there is no MSI-X capability and no BAR1.
    let (mut d, _, _) = echo_dev(&m, transitional(0));
    assert!(cap_list(&mut d).iter().all(|c| c.1 != 0x11));
    let idx: Vec<u8> = d.bars().iter().map(|b| b.index).collect();
    assert_eq!(idx, [0, 4]);
}

/// §4.1.4.7: one SHARED_MEMORY_CFG capability per region, unique ids,
/// each region inside its BAR.
#[test]
fn shared_memory_capabilities() {
    let mut dev = Dummy::new(VIRTIO_ID_GPU);
    dev.shm = vec![
        ShmRegion {
            id: 3,
            len: 0x1_0000,
        },
        ShmRegion {
            id: 0,
            len: 0x1_2000_0000,
        },
    ];
    let mut d = PciDevice::new(
        dev,
        Arc::new(Irq::default()),
        Arc::new(Msi::default()),
        PciConfig::default(),
    )
    .unwrap();
    let bar = d
        .bars()
        .into_iter()
        .find(|b| b.index == SHM_BAR_INDEX)
        .unwrap();
    assert_eq!((bar.kind, bar.prefetchable), (BarKind::Mem64, true));
    let shm: Vec<u64> = cap_list(&mut d)
        .into_iter()
        .filter(|&(p, id)| id == 9 && d.cfg(p + 3, 1) == 8)
        .map(|c| c.0)
        .collect();
    assert_eq!(shm.len(), 2);
    let mut ids = Vec::new();
    for p in shm {
        assert_eq!(d.cfg(p + 2, 1), 24, "cap_len covers offset_hi/length_hi");
        assert_eq!(d.cfg(p + 4, 1), SHM_BAR_INDEX.into());
        let id = d.cfg(p + 5, 1) as u8;
        let off = u64::from(d.cfg(p + 8, 4)) | u64::from(d.cfg(p + 16, 4)) << 32;
        let len = u64::from(d.cfg(p + 12, 4)) | u64::from(d.cfg(p + 20, 4)) << 32;
        assert!(off + len <= bar.size, "region inside the BAR");
        assert_eq!(d.shm_region(id), Some((SHM_BAR_INDEX, off, len)));
        ids.push((id, len));
    }
    assert_eq!(ids, [(3, 0x1_0000), (0, 0x1_2000_0000)]);
}

/// BAR size probing: all ones written, size mask read back; 64-bit pairs;
/// the I/O indicator; unimplemented BARs read 0.
#[test]
fn bar_size_probing() {
    let m = mem();
    let (mut d, _, _) = echo_dev(&m, transitional(8));
    let bars = d.bars();
    let kinds: Vec<(u8, BarKind)> = bars.iter().map(|b| (b.index, b.kind)).collect();
    assert_eq!(
        kinds,
        [(0, BarKind::Io), (1, BarKind::Mem32), (4, BarKind::Mem64)]
    );
    for b in &bars {
        let reg = 0x10 + 4 * u64::from(b.index);
        let flags = d.cfg(reg, 4) & 0xf;
        d.set_cfg(reg, 4, u32::MAX);
        let lo = d.cfg(reg, 4);
        let size = match b.kind {
            BarKind::Io => {
                assert_eq!(flags & 1, 1);
                u64::from(!(lo & !3)) + 1
            }
            BarKind::Mem32 => {
                assert_eq!(flags, 0);
                u64::from(!(lo & !0xf)) + 1
            }
            BarKind::Mem64 => {
                assert_eq!(flags & 0x6, 0x4);
                d.set_cfg(reg + 4, 4, u32::MAX);
                let full = u64::from(lo & !0xf) | u64::from(d.cfg(reg + 4, 4)) << 32;
                !full + 1
            }
        };
        assert_eq!(size, b.size, "BAR{}", b.index);
        assert!(size.is_power_of_two());
    }
    // BAR4/5 at a 64-bit address.
    d.set_cfg(0x20, 4, 0x8000_0000);
    d.set_cfg(0x24, 4, 0x1);
    assert_eq!(d.bar_address(4), Some(0x1_8000_0000));
    assert_eq!(d.bar_address(5), None);
    assert!(d.set_bar_address(1, 0xfe00_0000));
    assert_eq!(d.cfg(0x14, 4), 0xfe00_0000);
    for reg in [0x18u64, 0x1c, 0x30] {
        d.set_cfg(reg, 4, u32::MAX);
        assert_eq!(d.cfg(reg, 4), 0, "unimplemented BAR/ROM at {reg:#x}");
    }
    // Function reset forgets the programming.
    d.reset_function();
    assert_eq!(d.bar_address(4), Some(0));
}

/// §4.1.4.3: every field of the common configuration.
#[test]
fn common_cfg_fields() {
    let m = mem();
    let (mut d, _, _) = echo_dev(&m, PciConfig::default());
    let want = EchoDevice::new(&m, 1, 1)
        .device_features()
        .with(VIRTIO_F_VERSION_1);
    assert_eq!(offered(&mut d), want);
    // §4.1.4.3.1: 0 for windows beyond the features.
    for sel in [2u32, 3, 4, 0xffff_ffff] {
        d.set_cc(COMMON_CFG_DEVICE_FEATURE_SELECT, 4, sel);
        assert_eq!(d.cc(COMMON_CFG_DEVICE_FEATURE, 4), 0);
        assert_eq!(d.cc(COMMON_CFG_DEVICE_FEATURE_SELECT, 4), sel);
    }
    // driver_feature reads back what was written, per window.
    d.set_cc(COMMON_CFG_DEVICE_STATUS, 1, (ACK | DRIVER).into());
    d.set_cc(COMMON_CFG_DRIVER_FEATURE_SELECT, 4, 1);
    d.set_cc(COMMON_CFG_DRIVER_FEATURE, 4, 1);
    d.set_cc(COMMON_CFG_DRIVER_FEATURE_SELECT, 4, 0);
    d.set_cc(COMMON_CFG_DRIVER_FEATURE, 4, 1 << 28);
    assert_eq!(d.cc(COMMON_CFG_DRIVER_FEATURE, 4), 1 << 28);
    d.set_cc(COMMON_CFG_DRIVER_FEATURE_SELECT, 4, 1);
    assert_eq!(d.cc(COMMON_CFG_DRIVER_FEATURE, 4), 1);

    assert_eq!(d.cc(COMMON_CFG_NUM_QUEUES, 2), 2);
    assert_eq!(d.cc(COMMON_CFG_CONFIG_MSIX_VECTOR, 2), 0xffff);
    for q in 0..2u32 {
        d.set_cc(COMMON_CFG_QUEUE_SELECT, 2, q);
        assert_eq!(d.cc(COMMON_CFG_QUEUE_SELECT, 2), q);
        assert_eq!(d.cc(COMMON_CFG_QUEUE_SIZE, 2), 64);
        assert_eq!(d.cc(COMMON_CFG_QUEUE_MSIX_VECTOR, 2), 0xffff);
        assert_eq!(d.cc(COMMON_CFG_QUEUE_ENABLE, 2), 0);
        assert_eq!(d.cc(COMMON_CFG_QUEUE_NOTIFY_OFF, 2), q);
        assert_eq!(d.cc(COMMON_CFG_QUEUE_NOTIF_CONFIG_DATA, 2), q);
        assert_eq!(d.cc(COMMON_CFG_QUEUE_RESET, 2), 0);
    }
    assert_eq!(d.cc(COMMON_CFG_ADMIN_QUEUE_INDEX, 2), 0);
    assert_eq!(d.cc(COMMON_CFG_ADMIN_QUEUE_NUM, 2), 0);
    // §4.1.4.3.1: 0 in queue_size for an unavailable queue.
    d.set_cc(COMMON_CFG_QUEUE_SELECT, 2, 7);
    assert_eq!(d.cc(COMMON_CFG_QUEUE_SIZE, 2), 0);
    assert_eq!(d.cc(COMMON_CFG_QUEUE_ENABLE, 2), 0);

    // 64-bit fields as two independent 32-bit halves (§4.1.3.2).
    negotiate(&mut d, want);
    d.set_cc(COMMON_CFG_QUEUE_SELECT, 2, 1);
    d.set_cc(COMMON_CFG_QUEUE_SIZE, 2, 32);
    d.set_cc(COMMON_CFG_QUEUE_DRIVER_HI, 4, 0x12);
    d.set_cc(COMMON_CFG_QUEUE_DRIVER, 4, 0x3456_7000);
    assert_eq!(d.cc(COMMON_CFG_QUEUE_DRIVER, 4), 0x3456_7000);
    assert_eq!(d.cc(COMMON_CFG_QUEUE_DRIVER_HI, 4), 0x12);
    assert_eq!(d.cc(COMMON_CFG_QUEUE_SIZE, 2), 32);
    assert_eq!(d.core().queues()[1].addresses.driver, 0x12_3456_7000);
    assert_eq!(
        d.cc(COMMON_CFG_DEVICE_STATUS, 1) as u8,
        ACK | DRIVER | FEATURES_OK
    );
}

/// §4.1.3.1, §4.1.4.3.2: wrong widths, misaligned and read-only accesses
/// read 0, change nothing, and are recorded.
#[test]
fn common_cfg_access_rules() {
    let m = mem();
    let (mut d, _, _) = echo_dev(&m, PciConfig::default());
    let n = d.core().violations().count();
    assert_eq!(
        d.cc(COMMON_CFG_QUEUE_SIZE, 4),
        0,
        "4-byte read of a 16-bit field"
    );
    assert!(matches!(
        last_violation(&d),
        Some(Violation::BadAccess { width: 4, .. })
    ));
    assert_eq!(d.cc(COMMON_CFG_QUEUE_SIZE + 1, 1), 0, "misaligned");
    assert_eq!(
        d.cc(COMMON_CFG_NUM_QUEUES, 1),
        0,
        "8-bit read of a 16-bit field"
    );
    assert_eq!(d.cc(COMMON_CFG_DEVICE_FEATURE, 2), 0);
    assert_eq!(d.core().violations().count(), n + 4);

    d.set_cc(COMMON_CFG_NUM_QUEUES, 2, 9);
    assert!(matches!(
        last_violation(&d),
        Some(Violation::ReadOnly { .. })
    ));
    assert_eq!(d.cc(COMMON_CFG_NUM_QUEUES, 2), 2);
    for ro in [
        COMMON_CFG_QUEUE_NOTIFY_OFF,
        COMMON_CFG_QUEUE_NOTIF_CONFIG_DATA,
    ] {
        d.set_cc(ro, 2, 5);
        assert_eq!(d.cc(ro, 2), 0);
    }
    d.set_cc(COMMON_CFG_DEVICE_FEATURE, 4, 0);
    d.set_cc(COMMON_CFG_CONFIG_GENERATION, 1, 5);
    assert_eq!(d.core().violations().count(), n + 9);
    // A 32-bit write to the 8-bit status is not a status write.
    d.set_cc(COMMON_CFG_DEVICE_STATUS, 4, ACK.into());
    assert_eq!(d.cc(COMMON_CFG_DEVICE_STATUS, 1), 0);
    // Past the structure, and a read of the notification structure.
    assert_eq!(d.bar(MODERN_BAR_INDEX, 0x40, 4), 0);
    assert_eq!(d.bar(MODERN_BAR_INDEX, 0x3000, 2), 0);
    assert!(matches!(
        last_violation(&d),
        Some(Violation::WriteOnly { .. })
    ));
    // ISR and device configuration widths.
    assert_eq!(d.bar(MODERN_BAR_INDEX, ISR_BAR_OFFSET, 4), 0);
    assert_eq!(d.bar(MODERN_BAR_INDEX, DEVICE_CFG_BAR_OFFSET + 2, 4), 0);
    assert_eq!(
        d.bar(MODERN_BAR_INDEX, DEVICE_CFG_BAR_OFFSET, 4),
        EchoDevice::<&TestMemory>::CONFIG_MAGIC
    );
    assert_eq!(
        d.bar(MODERN_BAR_INDEX, DEVICE_CFG_BAR_OFFSET + 2, 2),
        0xec40
    );
    // No such BAR.
    assert_eq!(d.bar(3, 0, 4), 0);
    assert_eq!(d.core().violations().count(), n + 15);
}

/// §4.1.4.3.1/.2: queue_enable 0 writes are ignored; queue_reset resets the
/// queue synchronously (reads 0, queue_enable 0, size back to maximum).
#[test]
fn queue_enable_and_reset() {
    let m = mem();
    let (mut d, _, _) = echo_dev(&m, PciConfig::default());
    let f = FeatureSet::from_bits(&[VIRTIO_F_VERSION_1, VIRTIO_F_RING_RESET]);
    negotiate(&mut d, f);
    d.set_cc(COMMON_CFG_QUEUE_SELECT, 2, 0);
    d.set_cc(COMMON_CFG_QUEUE_SIZE, 2, 16);
    enable_queue(&mut d, 0, m.base());
    d.set_cc(COMMON_CFG_QUEUE_ENABLE, 2, 0);
    assert_eq!(
        last_violation(&d),
        Some(Violation::QueueDisableWrite { queue: 0 })
    );
    assert_eq!(d.cc(COMMON_CFG_QUEUE_ENABLE, 2), 1);
    // Configuration of an enabled queue is refused.
    d.set_cc(COMMON_CFG_QUEUE_SIZE, 2, 8);
    assert_eq!(last_violation(&d), Some(Violation::QueueBusy { queue: 0 }));
    assert_eq!(d.cc(COMMON_CFG_QUEUE_SIZE, 2), 16);
    d.set_cc(COMMON_CFG_QUEUE_MSIX_VECTOR, 2, 1);
    assert_eq!(d.cc(COMMON_CFG_QUEUE_MSIX_VECTOR, 2), 1);
    driver_ok(&mut d);

    d.set_cc(COMMON_CFG_QUEUE_RESET, 2, 1);
    assert_eq!(d.cc(COMMON_CFG_QUEUE_RESET, 2), 0);
    assert_eq!(d.cc(COMMON_CFG_QUEUE_ENABLE, 2), 0);
    assert_eq!(d.cc(COMMON_CFG_QUEUE_SIZE, 2), 64);
    assert_eq!(d.cc(COMMON_CFG_QUEUE_MSIX_VECTOR, 2), 0xffff);
    assert!(d.core().device().events.contains(&EchoEvent::QueueReset(0)));
    // Re-enable (§2.6.1.2) with a new size.
    d.set_cc(COMMON_CFG_QUEUE_SIZE, 2, 32);
    enable_queue(&mut d, 0, m.base() + 0x4000);
    assert!(matches!(
        d.core().device().events.last(),
        Some(EchoEvent::QueueEnabled(s)) if s.size == 32 && s.addresses.desc == m.base() + 0x4000
    ));

    // Without VIRTIO_F_RING_RESET the write is refused.
    let (mut d, _, _) = echo_dev(&m, PciConfig::default());
    negotiate(&mut d, FeatureSet::from_bits(&[VIRTIO_F_VERSION_1]));
    enable_queue(&mut d, 1, m.base());
    d.set_cc(COMMON_CFG_QUEUE_RESET, 2, 1);
    assert_eq!(
        last_violation(&d),
        Some(Violation::RingResetNotNegotiated { queue: 1 })
    );
    assert_eq!(d.cc(COMMON_CFG_QUEUE_ENABLE, 2), 1);
    // Device reset: queue_enable 0 (§4.1.4.3.1), selectors back to 0.
    d.set_cc(COMMON_CFG_DEVICE_STATUS, 1, 0);
    assert_eq!(d.cc(COMMON_CFG_DEVICE_STATUS, 1), 0);
    assert_eq!(d.cc(COMMON_CFG_QUEUE_SELECT, 2), 0);
    d.set_cc(COMMON_CFG_QUEUE_SELECT, 2, 1);
    assert_eq!(d.cc(COMMON_CFG_QUEUE_ENABLE, 2), 0);
}

/// §4.1.4.3.1: config_generation changes once the driver read a changed
/// configuration.
#[test]
fn config_generation_changes() {
    let m = mem();
    let (mut d, _, _) = echo_dev(&m, PciConfig::default());
    let g0 = d.cc(COMMON_CFG_CONFIG_GENERATION, 1);
    let s = d.signals();
    d.core_mut().device_mut().set_counter(0x55, &s);
    assert_eq!(d.bar(MODERN_BAR_INDEX, DEVICE_CFG_BAR_OFFSET + 4, 4), 0x55);
    let g1 = d.cc(COMMON_CFG_CONFIG_GENERATION, 1);
    assert_ne!(g0, g1);
    assert_eq!(
        d.cc(COMMON_CFG_CONFIG_GENERATION, 1),
        g1,
        "stable without change"
    );
}

/// §4.1.4.9: the PCI configuration access window reads and writes the
/// common configuration; windows outside the structures are refused.
#[test]
fn pci_cfg_access_window() {
    let m = mem();
    let (mut d, _, _) = echo_dev(&m, PciConfig::default());
    let c = find_cap(&mut d, VIRTIO_PCI_CAP_PCI_CFG);
    let window = |d: &mut Dev<'_>, bar: u32, off: u32, len: u32| {
        d.set_cfg(c + 4, 1, bar);
        d.set_cfg(c + 8, 4, off);
        d.set_cfg(c + 12, 4, len);
    };
    window(&mut d, 4, COMMON_CFG_NUM_QUEUES as u32, 2);
    assert_eq!(d.cfg(c + 16, 2), 2);
    assert_eq!(d.cfg(c + 4, 1), 4, "cap.bar is read-write");
    window(&mut d, 4, COMMON_CFG_DEVICE_FEATURE_SELECT as u32, 4);
    d.set_cfg(c + 16, 4, 1);
    assert_eq!(d.cc(COMMON_CFG_DEVICE_FEATURE_SELECT, 4), 1);
    window(&mut d, 4, COMMON_CFG_DEVICE_FEATURE as u32, 4);
    assert_eq!(d.cfg(c + 16, 4) & 1, 1, "VERSION_1 is bit 32");
    // Status through the window, then the device configuration.
    window(&mut d, 4, COMMON_CFG_DEVICE_STATUS as u32, 1);
    d.set_cfg(c + 16, 1, ACK.into());
    assert_eq!(d.cc(COMMON_CFG_DEVICE_STATUS, 1), ACK.into());
    window(&mut d, 4, DEVICE_CFG_BAR_OFFSET as u32, 4);
    assert_eq!(d.cfg(c + 16, 4), EchoDevice::<&TestMemory>::CONFIG_MAGIC);

    // Misaligned, bad length, other BAR, outside every structure.
    let n = d.core().violations().count();
    for (bar, off, len) in [(4, 2, 4), (4, 0, 3), (1, 0, 4), (4, 0x40, 4), (4, 62, 4)] {
        window(&mut d, bar, off, len);
        d.set_cfg(c + 16, 4, 0xdead_beef);
        let _ = d.cfg(c + 16, 4);
        assert!(matches!(
            last_violation(&d),
            Some(Violation::PciCfgWindow { .. })
        ));
    }
    assert_eq!(d.core().violations().count(), n + 10);
    assert_eq!(
        d.cc(COMMON_CFG_DEVICE_FEATURE_SELECT, 4),
        1,
        "nothing written"
    );
}

/// §4.1.4.1: the driver MUST NOT write capabilities other than PCI_CFG's
/// window: such writes are dropped and recorded; reads have no effect.
#[test]
fn capability_writes_ignored() {
    let m = mem();
    let (mut d, _, _) = echo_dev(&m, PciConfig::default());
    let common = find_cap(&mut d, VIRTIO_PCI_CAP_COMMON_CFG);
    let cfgcap = find_cap(&mut d, VIRTIO_PCI_CAP_PCI_CFG);
    // Every dword but pci_cfg_data (reading it performs the window access).
    let snapshot = |d: &mut Dev<'_>| -> Vec<u32> {
        (0x40..0x100)
            .step_by(4)
            .filter(|&o| o != cfgcap + 16)
            .map(|o| d.cfg(o, 4))
            .collect()
    };
    let before = snapshot(&mut d);
    d.set_cfg(common + 8, 4, 0x1234);
    assert_eq!(
        last_violation(&d),
        Some(Violation::CapabilityWrite {
            offset: (common + 8) as u16
        })
    );
    d.set_cfg(cfgcap, 1, 0);
    d.set_cfg(cfgcap + 3, 1, 1);
    let notify = find_cap(&mut d, VIRTIO_PCI_CAP_NOTIFY_CFG);
    d.set_cfg(notify + 16, 4, 0);
    let after = snapshot(&mut d);
    assert_eq!(before, after);
    assert_eq!(d.core().violations().count(), 4);
    // Header read-only fields: dropped (ordinary PCI, not recorded).
    d.set_cfg(0, 4, 0);
    assert_eq!(d.cfg(0, 2), 0x1af4);
}

/// §4.1.5.2: notifications at each queue's address; 16-bit without and
/// 32-bit with VIRTIO_F_NOTIFICATION_DATA; other widths refused.
#[test]
fn notify_region_decoding() {
    let m = mem();
    let (mut d, _, _) = echo_dev(&m, PciConfig::default());
    let f = FeatureSet::from_bits(&[VIRTIO_F_VERSION_1]);
    negotiate(&mut d, f);
    enable_queue(&mut d, 1, m.base());
    driver_ok(&mut d);
    let (bar, at) = d.notify_offset(1).unwrap();
    d.set_bar(bar, at, 2, 1);
    assert_eq!(
        d.core().device().events.last(),
        Some(&EchoEvent::Notified(1, None))
    );
    let n = d.core().device().events.len();
    d.set_bar(bar, at, 4, 1);
    d.set_bar(bar, at + 1, 2, 1);
    assert_eq!(d.core().device().events.len(), n, "refused");

    let (mut d, _, _) = echo_dev(&m, PciConfig::default());
    negotiate(&mut d, f.with(VIRTIO_F_NOTIFICATION_DATA));
    enable_queue(&mut d, 1, m.base());
    driver_ok(&mut d);
    let (bar, at) = d.notify_offset(1).unwrap();
    d.set_bar(bar, at, 2, 1);
    d.set_bar(bar, at, 4, 0x8005_0001);
    let data = NotificationData::from_u32(0x8005_0001);
    assert_eq!(
        d.core().device().events.last(),
        Some(&EchoEvent::Notified(1, Some(data)))
    );
    let notified = d.core().device().events.iter();
    let notified = notified.filter(|e| matches!(e, EchoEvent::Notified(..)));
    assert_eq!(notified.count(), 1, "the 16-bit write was refused");

    // Multiplier 0: one address, the value names the queue.
    let cfg = PciConfig {
        notify_off_multiplier: 0,
        ..PciConfig::default()
    };
    let (mut d, _, _) = echo_dev(&m, cfg);
    negotiate(&mut d, f);
    enable_queue(&mut d, 1, m.base());
    driver_ok(&mut d);
    assert_eq!(d.notify_offset(0), d.notify_offset(1));
    let (bar, at) = d.notify_offset(1).unwrap();
    d.set_bar(bar, at, 2, 1);
    assert_eq!(
        d.core().device().events.last(),
        Some(&EchoEvent::Notified(1, None))
    );
}

/// §4.1.4.10: the legacy header without MSI-X (device configuration at 20).
#[test]
fn legacy_bar_layout_without_msix() {
    let m = mem();
    let (mut d, irq, _) = echo_dev(&m, transitional(0));
    let io = LEGACY_BAR_INDEX;
    let feats = d.bar(io, lregs::DEVICE_FEATURES as u64, 4);
    assert!(d.core().is_legacy());
    let want = EchoDevice::new(&m, 1, 1).device_features().word(0) | 1 << VIRTIO_F_ANY_LAYOUT;
    assert_eq!(feats, want);
    assert_eq!(d.bar(io, lregs::QUEUE_SIZE as u64, 2), 64);
    d.set_bar(io, lregs::QUEUE_SELECT as u64, 2, 5);
    assert_eq!(d.bar(io, lregs::QUEUE_SIZE as u64, 2), 0);
    assert_eq!(
        d.bar(io, 20, 4),
        EchoDevice::<&TestMemory>::CONFIG_MAGIC,
        "configuration at 20"
    );
    // Any width in the configuration.
    assert_eq!(d.bar(io, 21, 1), 0x00);
    assert_eq!(d.bar(io, 22, 2), 0xec40);
    assert_eq!(d.bar(io, 21, 2), 0x4000);
    // Header widths are fixed; read-only fields refuse writes.
    assert_eq!(d.bar(io, lregs::QUEUE_SIZE as u64, 4), 0);
    d.set_bar(io, lregs::QUEUE_SIZE as u64, 2, 8);
    assert!(matches!(
        last_violation(&d),
        Some(Violation::ReadOnly { .. })
    ));
    // ISR read-to-clear and INTx.
    d.set_bar(io, lregs::DEVICE_STATUS as u64, 1, (ACK | DRIVER).into());
    d.set_bar(io, lregs::DRIVER_FEATURES as u64, 4, 0);
    d.set_bar(
        io,
        lregs::DEVICE_STATUS as u64,
        1,
        (ACK | DRIVER | DRIVER_OK).into(),
    );
    assert_eq!(
        d.bar(io, lregs::DEVICE_STATUS as u64, 1) as u8,
        ACK | DRIVER | DRIVER_OK
    );
    d.signals().used_buffer(0);
    assert_eq!(irq.last(), Some(true));
    assert_eq!(d.bar(io, lregs::ISR_STATUS as u64, 1), 1);
    assert_eq!(d.bar(io, lregs::ISR_STATUS as u64, 1), 0);
    assert_eq!(irq.last(), Some(false));
}

/// §4.1.4.10: with MSI-X enabled the two vector fields follow the header
/// and the device configuration moves to 24 (and back when disabled).
#[test]
fn legacy_bar_layout_with_msix() {
    let m = mem();
    let (mut d, _, msi) = echo_dev(&m, transitional(2));
    let io = LEGACY_BAR_INDEX;
    assert_eq!(d.bar(io, 20, 4), EchoDevice::<&TestMemory>::CONFIG_MAGIC);
    msix_enable(&mut d, true, false);
    assert_eq!(d.bar(io, 24, 4), EchoDevice::<&TestMemory>::CONFIG_MAGIC);
    assert_eq!(d.bar(io, lregs::CONFIG_MSIX_VECTOR as u64, 2), 0xffff);
    d.set_bar(io, lregs::CONFIG_MSIX_VECTOR as u64, 2, 1);
    assert_eq!(d.bar(io, lregs::CONFIG_MSIX_VECTOR as u64, 2), 1);
    d.set_bar(io, lregs::QUEUE_SELECT as u64, 2, 1);
    d.set_bar(io, lregs::QUEUE_MSIX_VECTOR as u64, 2, 2);
    assert_eq!(
        d.bar(io, lregs::QUEUE_MSIX_VECTOR as u64, 2),
        0xffff,
        "2 ≥ table size"
    );
    d.set_bar(io, lregs::QUEUE_MSIX_VECTOR as u64, 2, 0);
    assert_eq!(d.bar(io, lregs::QUEUE_MSIX_VECTOR as u64, 2), 0);
    msix_entry(&mut d, 1, 0xfee0_1000, 7, false);
    d.set_bar(
        io,
        lregs::DEVICE_STATUS as u64,
        1,
        (ACK | DRIVER | DRIVER_OK).into(),
    );
    let s = d.signals();
    d.core_mut().device_mut().set_counter(9, &s);
    assert_eq!(msi.take(), [(0xfee0_1000, 7)]);
    msix_enable(&mut d, false, false);
    assert_eq!(d.bar(io, 20, 4), EchoDevice::<&TestMemory>::CONFIG_MAGIC);
}

/// §4.1.5.1.3.1: the legacy queue address is a 4096-byte page number; the
/// rings follow the legacy layout with 4096 alignment.
#[test]
fn legacy_pfn_queue_setup() {
    let m = mem();
    let (mut d, _, _) = echo_dev(&m, transitional(0));
    let io = LEGACY_BAR_INDEX;
    d.set_bar(io, lregs::DEVICE_STATUS as u64, 1, 0);
    d.set_bar(io, lregs::DEVICE_STATUS as u64, 1, (ACK | DRIVER).into());
    d.set_bar(io, lregs::QUEUE_SELECT as u64, 2, 1);
    let base = m.base() + 0x8000;
    d.set_bar(io, lregs::QUEUE_ADDRESS as u64, 4, (base >> 12) as u32);
    assert_eq!(
        d.bar(io, lregs::QUEUE_ADDRESS as u64, 4),
        (base >> 12) as u32
    );
    let q = d.core().queues()[1];
    let l = legacy_layout(64, 4096);
    assert!(q.ready);
    assert_eq!(q.addresses.desc, base);
    assert_eq!(q.addresses.driver, base + l.avail_offset as u64);
    assert_eq!(q.addresses.device, base + l.used_offset as u64);
    // A legacy driver may notify before DRIVER_OK: the device starts.
    d.set_bar(io, lregs::QUEUE_NOTIFY as u64, 2, 1);
    assert!(d
        .core()
        .device()
        .events
        .contains(&EchoEvent::Notified(1, None)));
    // Address 0 stops the queue.
    d.set_bar(io, lregs::QUEUE_ADDRESS as u64, 4, 0);
    assert_eq!(d.bar(io, lregs::QUEUE_ADDRESS as u64, 4), 0);
    assert!(!d.core().queues()[1].ready);
}

/// A transitional device follows the interface a reset driver uses; the
/// other one is refused mid-session, except for a reset.
#[test]
fn transitional_interfaces_do_not_mix() {
    let m = mem();
    let (mut d, _, _) = echo_dev(&m, transitional(0));
    negotiate(&mut d, FeatureSet::from_bits(&[VIRTIO_F_VERSION_1]));
    assert!(!d.core().is_legacy());
    assert_eq!(d.bar(LEGACY_BAR_INDEX, lregs::DEVICE_STATUS as u64, 1), 0);
    assert!(matches!(last_violation(&d), Some(Violation::Legacy(_))));
    d.set_bar(LEGACY_BAR_INDEX, lregs::DEVICE_STATUS as u64, 1, 0);
    assert!(d.core().is_legacy());
    assert_eq!(d.cc(COMMON_CFG_DEVICE_STATUS, 1), 0);
    assert!(!d.core().is_legacy(), "reset driver switched back");
    d.set_bar(LEGACY_BAR_INDEX, lregs::DEVICE_STATUS as u64, 1, ACK.into());
    assert_eq!(d.cc(COMMON_CFG_DEVICE_STATUS, 1), 0, "modern refused now");
    d.set_cc(COMMON_CFG_DEVICE_STATUS, 1, 0);
    assert_eq!(d.cc(COMMON_CFG_DEVICE_STATUS, 1), 0);
    assert!(!d.core().is_legacy());
}
