//! Interrupt delivery of the device-side virtio-pci model (VIRTIO 1.4
//! §4.1.4.5, §4.1.5.1.2, §4.1.5.3, §4.1.5.4): ISR and INTx, MSI-X vector
//! mapping, masking and the Pending Bit Array, byte by byte.

use ringwork_spec::features::{FeatureSet, VIRTIO_F_VERSION_1};
use ringwork_spec::pci::*;
use ringwork_transport::pci::*;
use ringwork_transport::Violation;

mod pci_common;

use pci_common::*;

// ------------------------------------------------------------------- tests

/// §4.1.4.5, §4.1.5.3, §4.1.5.4 with MSI-X disabled: ISR bits, INTx,
/// read-to-clear, the PCI Status Interrupt Status bit, Interrupt Disable.
#[test]
fn isr_and_intx() {
    let m = mem();
    let (mut d, irq, msi) = echo_dev(&m, PciConfig::default());
    negotiate(&mut d, FeatureSet::from_bits(&[VIRTIO_F_VERSION_1]));
    driver_ok(&mut d);
    let s = d.signals();
    assert!(s.used_buffer(0));
    assert_eq!(irq.last(), Some(true));
    assert_ne!(d.cfg(6, 2) & 0x8, 0, "Interrupt Status");
    assert_eq!(d.bar(MODERN_BAR_INDEX, ISR_BAR_OFFSET, 1), 1);
    assert_eq!(irq.last(), Some(false), "read de-asserts");
    assert_eq!(d.cfg(6, 2) & 0x8, 0);
    assert_eq!(
        d.bar(MODERN_BAR_INDEX, ISR_BAR_OFFSET, 1),
        0,
        "read cleared it"
    );

    d.core_mut().device_mut().set_counter(1, &s);
    s.used_buffer(1);
    assert_eq!(irq.last(), Some(true));
    assert_eq!(d.bar(MODERN_BAR_INDEX, ISR_BAR_OFFSET, 1), 3);

    // Interrupt Disable masks INTx, not the ISR.
    d.set_cfg(4, 2, 0x0400 | 0x6);
    let before = irq.0.lock().unwrap().len();
    s.used_buffer(0);
    assert_eq!(irq.0.lock().unwrap().len(), before);
    assert_ne!(d.cfg(6, 2) & 0x8, 0);
    d.set_cfg(4, 2, 0x6);
    assert_eq!(irq.last(), Some(true), "pending interrupt shows on enable");
    assert_eq!(d.cfg(4, 2), 0x6);
    // ISR writes are refused.
    d.set_bar(MODERN_BAR_INDEX, ISR_BAR_OFFSET, 1, 0);
    assert!(matches!(
        last_violation(&d),
        Some(Violation::ReadOnly { .. })
    ));
    assert!(msi.take().is_empty());
}

/// §4.1.5.1.2.1: vector mapping, refusal as NO_VECTOR, unmapping.
#[test]
fn msix_vector_mapping() {
    let m = mem();
    let (mut d, _, _) = echo_dev(&m, PciConfig::default());
    d.set_cc(COMMON_CFG_CONFIG_MSIX_VECTOR, 2, 3);
    assert_eq!(d.cc(COMMON_CFG_CONFIG_MSIX_VECTOR, 2), 3);
    d.set_cc(COMMON_CFG_CONFIG_MSIX_VECTOR, 2, 4);
    assert_eq!(d.cc(COMMON_CFG_CONFIG_MSIX_VECTOR, 2), 0xffff);
    assert_eq!(
        last_violation(&d),
        Some(Violation::BadVector {
            vector: 4,
            table_size: 4
        })
    );
    d.set_cc(COMMON_CFG_QUEUE_SELECT, 2, 1);
    d.set_cc(COMMON_CFG_QUEUE_MSIX_VECTOR, 2, 0);
    assert_eq!(d.cc(COMMON_CFG_QUEUE_MSIX_VECTOR, 2), 0);
    d.set_cc(COMMON_CFG_QUEUE_MSIX_VECTOR, 2, 0x7ff);
    assert_eq!(d.cc(COMMON_CFG_QUEUE_MSIX_VECTOR, 2), 0xffff);
    d.set_cc(COMMON_CFG_QUEUE_MSIX_VECTOR, 2, 2);
    d.set_cc(COMMON_CFG_QUEUE_MSIX_VECTOR, 2, 0xffff);
    assert_eq!(d.cc(COMMON_CFG_QUEUE_MSIX_VECTOR, 2), 0xffff);
    d.set_cc(COMMON_CFG_QUEUE_SELECT, 2, 9);
    d.set_cc(COMMON_CFG_QUEUE_MSIX_VECTOR, 2, 1);
    assert_eq!(
        last_violation(&d),
        Some(Violation::NoSuchQueue { queue: 9 })
    );
    assert_eq!(d.cc(COMMON_CFG_QUEUE_MSIX_VECTOR, 2), 0xffff);

    // No MSI-X capability: every mapping fails.
    let (mut d, _, _) = echo_dev(&m, transitional(0));
    d.set_cc(COMMON_CFG_CONFIG_MSIX_VECTOR, 2, 0);
    assert_eq!(d.cc(COMMON_CFG_CONFIG_MSIX_VECTOR, 2), 0xffff);
}

/// §4.1.5.3.1, §4.1.5.4.1 with MSI-X enabled: messages from the table,
/// nothing for NO_VECTOR, PBA pending while masked (entry or function
/// mask), delivery on unmask; the ISR queue bit and INTx unused.
#[test]
fn msix_delivery_and_masking() {
    let m = mem();
    let (mut d, irq, msi) = echo_dev(&m, PciConfig::default());
    for v in 0..4u64 {
        msix_entry(&mut d, v, 0xfee0_0000 + (v << 12), 0x40 + v as u32, false);
    }
    msix_enable(&mut d, true, false);
    assert_eq!(d.bar(MSIX_BAR_INDEX, 16 + 8, 4), 0x41);
    negotiate(&mut d, FeatureSet::from_bits(&[VIRTIO_F_VERSION_1]));
    d.set_cc(COMMON_CFG_CONFIG_MSIX_VECTOR, 2, 0);
    d.set_cc(COMMON_CFG_QUEUE_SELECT, 2, 0);
    d.set_cc(COMMON_CFG_QUEUE_MSIX_VECTOR, 2, 2);
    driver_ok(&mut d);
    let s = d.signals();

    s.used_buffer(0);
    assert_eq!(msi.take(), [(0xfee0_2000, 0x42)]);
    s.used_buffer(1); // queue 1: NO_VECTOR
    assert!(msi.take().is_empty());
    d.core_mut().device_mut().set_counter(3, &s);
    assert_eq!(msi.take(), [(0xfee0_0000, 0x40)]);
    assert!(!irq.0.lock().unwrap().contains(&true), "no INTx with MSI-X");
    assert_eq!(d.cfg(6, 2) & 0x8, 0);
    assert_eq!(
        d.bar(MODERN_BAR_INDEX, ISR_BAR_OFFSET, 1),
        2,
        "config bit only"
    );

    // Entry mask: pending, then delivered on unmask.
    let pba = 0x800;
    d.set_bar(MSIX_BAR_INDEX, 16 * 2 + 12, 4, 1);
    s.used_buffer(0);
    assert!(msi.take().is_empty());
    assert_eq!(d.bar(MSIX_BAR_INDEX, pba, 4), 1 << 2);
    d.set_bar(MSIX_BAR_INDEX, pba, 4, 0);
    assert!(matches!(
        last_violation(&d),
        Some(Violation::ReadOnly { .. })
    ));
    d.set_bar(MSIX_BAR_INDEX, 16 * 2 + 12, 4, 0);
    assert_eq!(msi.take(), [(0xfee0_2000, 0x42)]);
    assert_eq!(d.bar(MSIX_BAR_INDEX, pba, 4), 0);

    // Function mask.
    msix_enable(&mut d, true, true);
    d.core_mut().device_mut().set_counter(4, &s);
    s.used_buffer(0);
    assert!(msi.take().is_empty());
    assert_eq!(d.bar(MSIX_BAR_INDEX, pba, 4), 0b101);
    msix_enable(&mut d, true, false);
    let mut got = msi.take();
    got.sort();
    assert_eq!(got, [(0xfee0_0000, 0x40), (0xfee0_2000, 0x42)]);

    // Table access rules: 4 or 8 bytes, aligned.
    assert_eq!(d.bar(MSIX_BAR_INDEX, 2, 2), 0);
    let mut q = [0u8; 8];
    d.bar_read(MSIX_BAR_INDEX, 16, &mut q);
    assert_eq!(u64::from_le_bytes(q), 0xfee0_1000);

    // §4.1.5.4.1: config_msix_vector NO_VECTOR → no interrupt.
    d.set_cc(COMMON_CFG_CONFIG_MSIX_VECTOR, 2, 0xffff);
    d.core_mut().device_mut().set_counter(5, &s);
    assert!(msi.take().is_empty());
    assert_eq!(d.bar(MSIX_BAR_INDEX, pba, 4), 0, "nothing pending either");

    // Disabling MSI-X goes back to the ISR and INTx.
    msix_enable(&mut d, false, false);
    s.used_buffer(0);
    assert!(msi.take().is_empty());
    assert_eq!(irq.last(), Some(true));
}

/// §4.1.5.1.2.1: every event unmapped after a reset.
#[test]
fn reset_unmaps_vectors() {
    let m = mem();
    let (mut d, _, _) = echo_dev(&m, PciConfig::default());
    d.set_cc(COMMON_CFG_CONFIG_MSIX_VECTOR, 2, 1);
    for q in 0..2 {
        d.set_cc(COMMON_CFG_QUEUE_SELECT, 2, q);
        d.set_cc(COMMON_CFG_QUEUE_MSIX_VECTOR, 2, q);
    }
    d.set_cc(COMMON_CFG_DEVICE_FEATURE_SELECT, 4, 1);
    d.set_cc(COMMON_CFG_DEVICE_STATUS, 1, 0);
    assert_eq!(d.cc(COMMON_CFG_CONFIG_MSIX_VECTOR, 2), 0xffff);
    assert_eq!(d.cc(COMMON_CFG_DEVICE_FEATURE_SELECT, 4), 0);
    for q in 0..2 {
        d.set_cc(COMMON_CFG_QUEUE_SELECT, 2, q);
        assert_eq!(d.cc(COMMON_CFG_QUEUE_MSIX_VECTOR, 2), 0xffff);
    }
}

/// The mask/pending handshake with a device thread firing while the
/// driver masks and unmasks: once the vector ends unmasked, nothing is
/// left pending (a message held back by the mask is never lost).
#[test]
fn msix_mask_race_loses_nothing() {
    let m = mem();
    let (mut d, _, msi) = echo_dev(&m, PciConfig::default());
    msix_entry(&mut d, 1, 0xfee0_1000, 0x51, false);
    msix_enable(&mut d, true, false);
    negotiate(&mut d, FeatureSet::from_bits(&[VIRTIO_F_VERSION_1]));
    d.set_cc(COMMON_CFG_QUEUE_SELECT, 2, 0);
    d.set_cc(COMMON_CFG_QUEUE_MSIX_VECTOR, 2, 1);
    driver_ok(&mut d);
    let s = d.signals();
    for round in 0..20 {
        std::thread::scope(|sc| {
            let s = s.clone();
            sc.spawn(move || {
                for _ in 0..2000 {
                    s.used_buffer(0);
                }
            });
            // Ends unmasked (the last value written is 0).
            for i in 0..400u32 {
                d.set_bar(MSIX_BAR_INDEX, 16 + 12, 4, (i + 1) & 1);
            }
        });
        assert_eq!(d.bar(MSIX_BAR_INDEX, 0x800, 4), 0, "round {round}");
    }
    let sent = msi.take();
    assert!(!sent.is_empty());
    assert!(sent.iter().all(|&m| m == (0xfee0_1000, 0x51)));
}
