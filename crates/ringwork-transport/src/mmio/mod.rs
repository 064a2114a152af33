//! Virtio over MMIO (VIRTIO 1.4 §4.2): the device-side register block
//! ([`MmioDevice`], version 2 and legacy version 1) and the driver-side
//! transport ([`MmioTransport`]).

mod device;
mod driver;

pub use device::{MmioConfig, MmioDevice, MmioVersion};
pub use driver::{MmioTransport, LEGACY_PAGE_SIZE};
