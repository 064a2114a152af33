//! Virtio over PCI (VIRTIO 1.4 §4.1): the device-side function model
//! ([`PciDevice`]) and the driver-side transport ([`PciTransport`]).
//!
//! # Layout of a [`PciDevice`]
//!
//! Configuration space (type-0 header, §4.1.2):
//!
//! | | Non-transitional ([`PciMode::Modern`]) | Transitional |
//! |---|---|---|
//! | Vendor ID | 0x1AF4 | 0x1AF4 |
//! | Device ID | 0x1040 + device type | the transitional ID (0x1000..) |
//! | Revision ID | 1 | 0 |
//! | Subsystem ID | [`MODERN_SUBSYSTEM_ID`] (0x1100, like QEMU) | the device type |
//!
//! Class code: network 0x020000, block and SCSI 0x010000, console 0x078000,
//! GPU 0x038000, input 0x098000, others 0xff0000. Interrupt pin INTA#.
//! Command register: I/O Space (transitional only), Memory Space, Bus
//! Master and Interrupt Disable are writable; Status presents the
//! Capabilities List bit and, with MSI-X disabled, Interrupt Status = OR of
//! the ISR bits (§4.1.4.5.1).
//!
//! BARs (sizes are powers of 2; see [`PciDevice::bars`]):
//!
//! | BAR | Kind | Contents |
//! |---|---|---|
//! | 0 | I/O | legacy interface (§4.1.4.10), transitional devices only |
//! | 1 | 32-bit memory | MSI-X table at 0, PBA at the next 2 KiB boundary (if MSI-X vectors > 0) |
//! | 2/3 | 64-bit prefetchable memory | shared memory regions, 4 KiB aligned, in id order (if any) |
//! | 4/5 | 64-bit memory | common configuration at 0x0000, ISR at 0x1000, device configuration at 0x2000, notifications after it (0x3000 for configurations up to 4 KiB) |
//!
//! Capability list from 0x40, in this order: MSI-X (ID 0x11, if any), then
//! the virtio capabilities (§4.1.4) COMMON_CFG (length 64), NOTIFY_CFG
//! (`queue_notify_off` = queue index, length `(num_queues - 1) *
//! multiplier + 4`), ISR_CFG (length 1), DEVICE_CFG (if the device has a
//! configuration), PCI_CFG, one SHARED_MEMORY_CFG per region (`cap.id` =
//! region id), and one VENDOR_CFG per [`PciConfig::vendor_data`] entry
//! (§4.1.4.8, [`VendorData`]).
//!
//! # Interrupts
//! With MSI-X disabled, a used buffer notification sets ISR bit 0 and a
//! configuration change ISR bit 1, then asserts INTx through the
//! [`IrqLine`](crate::IrqLine) (unless Interrupt Disable is set); reading
//! ISR clears it and de-asserts the line. With MSI-X enabled, the message
//! of the queue's or the configuration vector is sent to the [`MsiSink`]
//! (nothing for NO_VECTOR), or held in the PBA while masked and sent on
//! unmask (§4.1.5.3, §4.1.5.4). Delivery is lock-free: device threads
//! holding [`Signals`](crate::Signals) may fire at any time.
//!
//! ```
//! use std::cell::RefCell;
//! use std::sync::Arc;
//! use ringwork_spec::features::FeatureSet;
//! use ringwork_transport::driver::{self, ConfigRead, Transport};
//! use ringwork_transport::pci::{NoMsi, PciConfig, PciDevice, PciMode, PciTransport};
//! use ringwork_transport::test_utils::{EchoDevice, PciLoopback};
//! use ringwork_transport::NoIrq;
//! use ringwork_queue::test_utils::TestMemory;
//!
//! let mem = TestMemory::new(0x10_0000, 1 << 20);
//! // Device side: a transitional function hosting an echo device.
//! let config = PciConfig { mode: PciMode::Transitional, ..PciConfig::default() };
//! let device = EchoDevice::new(&mem, 2, 64);
//! let function = PciDevice::new(device, Arc::new(NoIrq), Arc::new(NoMsi), config).unwrap();
//! let function = RefCell::new(function);
//!
//! // Driver side: configuration space and BARs seen through windows.
//! let mut t = PciTransport::new(
//!     PciLoopback::config(&function),
//!     PciLoopback::bars(&function),
//! )
//! .unwrap();
//! assert!(!t.is_legacy()); // the capabilities were found
//! driver::negotiate(&mut t, FeatureSet::EMPTY, &[]).unwrap();
//! assert_eq!(t.config_u32(0), EchoDevice::<&TestMemory>::CONFIG_MAGIC);
//! driver::set_driver_ok(&mut t);
//! assert!(t.status().is_live());
//! ```

mod config_space;
mod device;
mod driver;
mod legacy;
#[cfg(any(test, feature = "test-utils"))]
pub(crate) mod loopback;
mod msix;
mod vendor;

pub use config_space::{BarInfo, BarKind};
pub use device::{PciConfig, PciConfigError, PciDevice, PciMode, MODERN_SUBSYSTEM_ID};
pub use driver::PciTransport;
pub use vendor::{VendorData, VendorDataCap};

/// The BAR holding the legacy interface (I/O, transitional devices).
pub const LEGACY_BAR_INDEX: u8 = 0;
/// The BAR holding the MSI-X table and PBA.
pub const MSIX_BAR_INDEX: u8 = 1;
/// The (64-bit) BAR holding the shared memory regions.
pub const SHM_BAR_INDEX: u8 = 2;
/// The (64-bit) BAR holding the modern virtio structures.
pub const MODERN_BAR_INDEX: u8 = 4;
/// Offset of the common configuration structure in the modern BAR.
pub const COMMON_CFG_BAR_OFFSET: u64 = 0x0000;
/// Offset of the ISR status in the modern BAR.
pub const ISR_BAR_OFFSET: u64 = 0x1000;
/// Offset of the device-specific configuration in the modern BAR.
pub const DEVICE_CFG_BAR_OFFSET: u64 = 0x2000;

/// A destination for MSI-X messages, supplied by the VMM.
///
/// Called from whichever thread signals the device's event (a device
/// worker thread, or the vCPU thread that touched a register), with the
/// Message Address and Message Data of the vector's MSI-X table entry.
pub trait MsiSink: Send + Sync {
    /// Sends the message `data` to `address`.
    fn send(&self, address: u64, data: u32);
}

/// An [`MsiSink`] that drops every message (a function without MSI-X, or
/// tests).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoMsi;

impl MsiSink for NoMsi {
    fn send(&self, _address: u64, _data: u32) {}
}
