//! VIRTIO virtqueues, split and packed, device side and driver side.
//!
//! A sans-I/O core: no threads, clocks, locks or system calls. Shared memory
//! is reached through [`GuestMemory`] (the device side) and [`Dma`] (the
//! driver side); notifications are decisions returned to the caller
//! (`needs_notification`, `kick_prepare`), never actions taken here.
//!
//! ```
//! use ringwork_queue::{DeviceQueue, DriverQueue, DriverQueueConfig, QueueFeatures, RingFormat, Segment};
//! use ringwork_queue::test_utils::TestMemory;
//!
//! // One memory region stands for guest RAM, shared by both sides.
//! let mem = TestMemory::new(0x1_0000, 1 << 20);
//! let features = QueueFeatures { event_idx: true, indirect_desc: true, ..Default::default() };
//! let cfg = DriverQueueConfig::new(RingFormat::Packed, 64, features);
//! let mut driver = DriverQueue::<_, &str>::new(&mem, cfg).unwrap();
//! let mut device = DeviceQueue::new(RingFormat::Packed, 64, driver.addresses(), features).unwrap();
//!
//! // The driver offers a 4-byte request and an 8-byte reply buffer.
//! let req = Segment::new(0x8_0000, 4);
//! let reply = Segment::new(0x8_1000, 8);
//! mem.all().write_bytes(0x7_0000, b"ping").unwrap();
//! driver.add(&[req], &[reply], "request #1").unwrap();
//! assert!(driver.kick_prepare().unwrap());
//!
//! // The device pops the chain, reads the request, writes the reply.
//! let chain = device.pop(&mem).unwrap().unwrap();
//! let mut request = [0u8; 4];
//! chain.reader(&mem).read(&mut request).unwrap();
//! assert_eq!(&request, b"ping");
//! let mut w = chain.writer(&mem);
//! w.write(b"pong-ack").unwrap();
//! device.add_used(&mem, chain.token(), w.bytes_written()).unwrap();
//! assert!(device.needs_notification(&mem).unwrap());
//!
//! // The driver gets its token back with the length written.
//! let used = driver.pop_used().unwrap().unwrap();
//! assert_eq!((used.token, used.len), ("request #1", 8));
//! ```
//!
//! # Safety model
//! Memory the peer can write is never a Rust reference ([`MemSlice`]: bounds
//! checked volatile and atomic accesses). Each side keeps private shadows of
//! what it wrote and never trusts a value read back. Everything read from the
//! peer is validated; a violation marks the queue broken and returns an
//! error. Nothing panics on peer input.
#![cfg_attr(not(feature = "std"), no_std)]
#![deny(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(missing_docs)]

extern crate alloc;

pub mod device;
pub mod driver;
pub mod fifo;
pub mod mem;
#[cfg(feature = "std")]
pub mod mmap;
mod types;

/// Fakes of the other side, for tests.
#[cfg(any(test, feature = "test-utils"))]
pub mod test_utils {
    pub use crate::test_mem::TestMemory;
}
#[cfg(any(test, feature = "test-utils"))]
mod test_mem;

pub use device::{
    ChainError, ChainReader, ChainWriter, ConfigError, DescChain, DeviceQueue, DeviceQueueError,
    UsedToken,
};
pub use driver::{
    AddError, DriverQueue, DriverQueueConfig, DriverQueueError, Rejected, Used, UsedError,
};
pub use fifo::IdFifo;
pub use mem::{streaming_fence, Dma, DmaBuffer, GuestMemory, MemSlice, OutOfBounds};
pub use types::{QueueAddresses, QueueFeatures, QueuePosition, RingFormat, Segment};
