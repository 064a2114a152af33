//! VIRTIO transports, both sides: the register models a VMM maps onto its
//! bus (device side) and the accessors a guest driver uses (driver side),
//! for virtio-mmio (version 2 and legacy version 1) and virtio-pci (modern,
//! legacy and transitional), with the status/feature negotiation state
//! machine they share.
//!
//! A device implements one trait, [`VirtioDevice`]; any transport hosts it.
//! The VMM forwards guest accesses to the model ([`BusDevice`]) and supplies
//! the interrupt hooks ([`IrqLine`], [`pci::MsiSink`]); nothing here makes
//! an OS call.
//!
//! ```
//! use std::cell::RefCell;
//! use std::sync::Arc;
//! use ringwork_spec::features::FeatureSet;
//! use ringwork_transport::driver::{self, ConfigRead, Transport};
//! use ringwork_transport::mmio::{MmioConfig, MmioDevice, MmioTransport};
//! use ringwork_transport::test_utils::{EchoDevice, Loopback};
//! use ringwork_transport::NoIrq;
//! use ringwork_queue::test_utils::TestMemory;
//!
//! let mem = TestMemory::new(0x10_0000, 1 << 20);
//! // Device side: an echo device behind a virtio-mmio register block.
//! let device = EchoDevice::new(&mem, 2, 64);
//! let block = RefCell::new(MmioDevice::new(device, Arc::new(NoIrq), MmioConfig::default()));
//!
//! // Driver side: the same block seen through registers.
//! let mut t = MmioTransport::new(Loopback::new(&block)).unwrap();
//! let features = driver::negotiate(&mut t, FeatureSet::EMPTY, &[]).unwrap();
//! assert!(features.contains(ringwork_spec::features::VIRTIO_F_VERSION_1));
//! assert_eq!(t.config_u32(0), EchoDevice::<&TestMemory>::CONFIG_MAGIC);
//! driver::set_driver_ok(&mut t);
//! assert!(t.status().is_live());
//! ```
#![no_std]
#![deny(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(missing_docs)]

extern crate alloc;
#[cfg(any(test, feature = "test-utils"))]
extern crate std;

pub mod device_model;
pub mod driver;
pub mod mmio;
pub mod pci;
mod queue_regs;
pub mod signal;
pub mod state;
pub mod violation;

#[cfg(any(test, feature = "test-utils"))]
pub mod test_utils;

pub use crate::state::{DeviceCore, TransportKind};
pub use device_model::{Activation, DeviceError, QueueSetup, ShmRegion, VirtioDevice};
pub use queue_regs::QueueRegs;
pub use signal::{IrqLine, NoIrq, Signals};
pub use violation::{Violation, ViolationLog};

/// A device-side register block as the VMM's bus sees it: reads and writes
/// of 1, 2, 4 (or 8) bytes at an offset from the block's base.
///
/// Implementations validate the access themselves; a bad access reads as 0
/// and is otherwise ignored, never panics.
pub trait BusDevice {
    /// A guest read of `data.len()` bytes at `offset`.
    fn read(&mut self, offset: u64, data: &mut [u8]);
    /// A guest write of `data` at `offset`.
    fn write(&mut self, offset: u64, data: &[u8]);
}

/// The Rust examples of docs/ARCHITECTURE.md, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/ARCHITECTURE.md")]
pub struct ArchitectureDoc;
