//! VIRTIO drivers — block ([`blk`], VIRTIO 1.4 §5.2), console
//! ([`console`], §5.3), entropy ([`rng`], §5.4) and memory balloon
//! ([`balloon`], §5.5), SCSI host ([`scsi`], §5.6) and network ([`net`],
//! §5.1) — over any driver-side
//! transport ([`ringwork_transport::driver::Transport`]: MMIO, PCI, or a
//! vhost-user frontend), with queues from `ringwork-queue` in memory from a
//! [`Dma`](ringwork_queue::Dma) allocator. `no_std` + `alloc`, no `unsafe`.
//!
//! An entropy device behind a virtio-mmio register block, in the same
//! process (the device side is a few lines of test scaffolding):
//!
//! ```
//! use std::cell::RefCell;
//! use std::sync::Arc;
//! use ringwork_driver::rng::RngDriver;
//! use ringwork_driver::RingPreference;
//! use ringwork_queue::test_utils::TestMemory;
//! use ringwork_transport::mmio::{MmioConfig, MmioDevice, MmioTransport};
//! use ringwork_transport::test_utils::Loopback;
//! use ringwork_transport::NoIrq;
//! # use ringwork_queue::{DeviceQueue, GuestMemory};
//! # use ringwork_spec::device_id::{DeviceType, VIRTIO_ID_RNG};
//! # use ringwork_spec::features::{FeatureSet, VIRTIO_F_RING_PACKED};
//! # use ringwork_transport::{Activation, DeviceError, Signals, VirtioDevice};
//! # use ringwork_spec::ring::notify::NotificationData;
//! # /// A device that fills every buffer with 0x5a.
//! # struct Rng<'m> { mem: &'m TestMemory, q: Option<DeviceQueue>, signals: Option<Signals> }
//! # impl VirtioDevice for Rng<'_> {
//! #     fn device_type(&self) -> DeviceType { DeviceType(VIRTIO_ID_RNG) }
//! #     fn device_features(&self) -> FeatureSet { FeatureSet::from_bits(&[VIRTIO_F_RING_PACKED]) }
//! #     fn queue_max_sizes(&self) -> &[u16] { &[64] }
//! #     fn config_len(&self) -> usize { 0 }
//! #     fn read_config(&self, _: usize, _: &mut [u8]) {}
//! #     fn activate(&mut self, a: Activation, s: Signals) -> Result<(), DeviceError> {
//! #         let q = &a.queues[0];
//! #         self.q = DeviceQueue::new(q.format, q.size, q.addresses, q.features).ok();
//! #         self.signals = Some(s);
//! #         Ok(())
//! #     }
//! #     fn reset(&mut self) { self.q = None; }
//! #     fn queue_notify(&mut self, _: u16, _: Option<NotificationData>) {
//! #         let Some(q) = self.q.as_mut() else { return };
//! #         while let Ok(Some(chain)) = q.pop(self.mem) {
//! #             let mut w = chain.writer(self.mem);
//! #             let _ = w.write(&vec![0x5a; w.remaining()]);
//! #             let _ = q.add_used(self.mem, chain.token(), w.bytes_written());
//! #         }
//! #         if let Some(s) = &self.signals { s.used_buffer(0); }
//! #     }
//! # }
//!
//! // Guest memory the device can reach; the driver allocates from it.
//! let mem = TestMemory::new(0x10_0000, 1 << 20);
//! let device = Rng { mem: &mem, q: None, signals: None };
//! let block = RefCell::new(MmioDevice::new(device, Arc::new(NoIrq), MmioConfig::default()));
//! let transport = MmioTransport::new(Loopback::new(&block)).unwrap();
//!
//! let mut rng = RngDriver::new(transport, &mem, 64, RingPreference::Auto).unwrap();
//! let mut buf = [0u8; 600];
//! assert_eq!(rng.fill(&mut buf).unwrap(), 600);
//! assert!(buf.iter().all(|&b| b == 0x5a));
//! assert_eq!(rng.ring_format(), ringwork_queue::RingFormat::Packed);
//!
//! // Reset hands the transport back; the device is stopped.
//! let detached = rng.reset();
//! assert!(detached.reset.is_ok());
//! ```
//!
//! # What every driver does
//! `new` runs device initialization (§3.1.1) through
//! [`ringwork_transport::driver`]'s steps: reset, ACKNOWLEDGE, DRIVER,
//! feature negotiation (the device type's features the driver implements,
//! plus VERSION_1, RING_PACKED per [`RingPreference`], EVENT_IDX,
//! INDIRECT_DESC and IN_ORDER), the configuration read in the generation
//! loop, queue setup, DRIVER_OK. A failure sets FAILED. `reset` stops the
//! device and hands back the transport ([`Detached`]).
//!
//! # Trust and panic contract
//! The device is hostile. Configuration values, used ids and lengths,
//! queue sizes and control messages are checked; what the driver cannot
//! work with is an error, never a panic. Memory the driver allocates is
//! bounded by the options the caller gave (queue sizes, buffer counts),
//! never by what the device says. Every wait for the device is bounded.
//! DMA memory the device may still use is never given back to the
//! allocator: a driver dropped without a successful `reset` leaks it.
#![no_std]
#![deny(unsafe_code)]

extern crate alloc;

pub mod balloon;
pub mod blk;
mod common;
pub mod console;
pub mod net;
pub mod rng;
pub mod scsi;
mod slot_queue;

pub use common::{Detached, RingPreference, SetupError, WaitError};
