//! A hostile driver: random register accesses (any offset, width, value,
//! direction) against the device models never panic, and the state they
//! leave stays coherent: the status only holds bits the state machine can
//! set, and a reset always brings everything back.

mod common;

use std::sync::Arc;

use common::RecordingIrq;
use proptest::prelude::*;
use ringwork_queue::test_utils::TestMemory;
use ringwork_spec::mmio as regs;
use ringwork_transport::mmio::{MmioConfig, MmioDevice, MmioVersion};
use ringwork_transport::pci::{NoMsi, PciConfig, PciDevice, PciMode};
use ringwork_transport::test_utils::EchoDevice;
use ringwork_transport::BusDevice;

#[derive(Debug, Clone)]
struct Access {
    offset: u64,
    width: usize,
    write: bool,
    value: u64,
}

fn access() -> impl Strategy<Value = Access> {
    (
        prop_oneof![
            // Mostly real registers, sometimes anything.
            (0u64..0x40).prop_map(|i| i * 4),
            0u64..0x200,
            any::<u64>(),
        ],
        prop_oneof![
            Just(4usize),
            Just(1),
            Just(2),
            Just(8),
            Just(3),
            Just(0),
            Just(16)
        ],
        any::<bool>(),
        prop_oneof![0u64..8, 0u64..0x1_0000, any::<u64>()],
    )
        .prop_map(|(offset, width, write, value)| Access {
            offset,
            width,
            write,
            value,
        })
}

fn drive<D: BusDevice>(dev: &mut D, script: &[Access]) {
    for a in script {
        let mut buf = vec![0u8; a.width];
        if a.write {
            let bytes = a.value.to_le_bytes();
            for (i, b) in buf.iter_mut().enumerate() {
                *b = bytes[i % 8];
            }
            dev.write(a.offset, &buf);
        } else {
            dev.read(a.offset, &mut buf);
        }
    }
}

fn rd<D: BusDevice>(d: &mut D, off: usize) -> u32 {
    let mut b = [0u8; 4];
    d.read(off as u64, &mut b);
    u32::from_le_bytes(b)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_mmio_accesses_never_panic(
        legacy in any::<bool>(),
        script in proptest::collection::vec(access(), 0..200),
    ) {
        let mem = TestMemory::new(0x10_0000, 1 << 20);
        let version = if legacy { MmioVersion::Legacy } else { MmioVersion::Modern };
        let mut d = MmioDevice::new(
            EchoDevice::new(&mem, 3, 128),
            Arc::new(RecordingIrq::default()),
            MmioConfig { version, ..MmioConfig::default() },
        );
        drive(&mut d, &script);
        let status = rd(&mut d, regs::STATUS);
        prop_assert_eq!(status & !0xdf, 0, "only defined status bits");
        // A reset always brings the device back.
        d.write(regs::STATUS as u64, &0u32.to_le_bytes());
        prop_assert_eq!(rd(&mut d, regs::STATUS), 0);
        prop_assert_eq!(rd(&mut d, regs::INTERRUPT_STATUS), 0);
        prop_assert!(d.core().queues().iter().all(|q| !q.ready));
        prop_assert_eq!(rd(&mut d, regs::MAGIC_VALUE), regs::MAGIC);
    }
}

#[derive(Debug, Clone)]
enum PciAccess {
    Config(Access),
    Bar(u8, Access),
}

fn pci_access() -> impl Strategy<Value = PciAccess> {
    prop_oneof![
        access().prop_map(|mut a| {
            a.offset %= 0x1100;
            PciAccess::Config(a)
        }),
        (0u8..8, access(), 0u64..0x4000).prop_map(|(bar, mut a, near)| {
            // Mostly inside the interesting regions of the modern BAR.
            if a.offset > 0x1_0000 {
                a.offset = near;
            }
            PciAccess::Bar(bar, a)
        }),
    ]
}

fn bytes(a: &Access) -> Vec<u8> {
    let v = a.value.to_le_bytes();
    (0..a.width).map(|i| v[i % 8]).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_pci_accesses_never_panic(
        transitional in any::<bool>(),
        vectors in prop_oneof![Just(0u16), Just(2), Just(5)],
        script in proptest::collection::vec(pci_access(), 0..300),
    ) {
        let mem = TestMemory::new(0x10_0000, 1 << 20);
        let mode = if transitional { PciMode::Transitional } else { PciMode::Modern };
        let mut d = PciDevice::new(
            EchoDevice::new(&mem, 3, 128),
            Arc::new(RecordingIrq::default()),
            Arc::new(NoMsi),
            PciConfig { mode, msix_vectors: vectors, ..PciConfig::default() },
        )
        .unwrap();
        for a in &script {
            match a {
                PciAccess::Config(a) if a.write => d.config_write(a.offset, &bytes(a)),
                PciAccess::Config(a) => d.config_read(a.offset, &mut vec![0; a.width]),
                PciAccess::Bar(b, a) if a.write => d.bar_write(*b, a.offset, &bytes(a)),
                PciAccess::Bar(b, a) => d.bar_read(*b, a.offset, &mut vec![0; a.width]),
            }
        }
        prop_assert_eq!(d.core().status() & !0xdf, 0);
        // Vendor id stays; a function reset brings the device back.
        let mut id = [0u8; 2];
        d.config_read(0, &mut id);
        prop_assert_eq!(u16::from_le_bytes(id), 0x1af4);
        d.reset_function();
        prop_assert_eq!(d.core().status(), 0);
        prop_assert!(d.core().queues().iter().all(|q| !q.ready));
    }
}
