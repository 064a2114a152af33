//! VIRTIO devices and their host backends.
//!
//! Each device implements the threaded device model of [`model`]: a
//! [`Device`](model::Device) control path and [`QueueWorker`](model::QueueWorker)s
//! that run one per group of queues. Hosts (the vhost-user backend in
//! `ringwork-vhost-user`, or an in-process VMM) run the workers.
//!
//! ```
//! use ringwork_device::harness::Harness;
//! use ringwork_device::rng::Rng;
//! use ringwork_queue::RingFormat;
//!
//! // A fake driver in this process: it offers a 32-byte buffer to the
//! // entropy device and gets random bytes back.
//! let mut h = Harness::new(Rng::new(), RingFormat::Packed).unwrap();
//! h.submit(0, &[], &[32]).unwrap();
//! h.run().unwrap();
//! let done = h.completed(0).unwrap();
//! assert_eq!(done[0].1.len(), 32);
//! ```
//!
//! Trust and panic contract: everything the driver puts in guest memory is
//! hostile input; see [`model`].

pub mod balloon;
pub mod blk;
pub mod console;
pub mod model;
pub mod net;
pub mod rng;
pub mod scsi;

#[cfg(feature = "test-utils")]
pub mod harness;

use ringwork_spec::features::{
    VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC, VIRTIO_F_RING_PACKED, VIRTIO_F_VERSION_1,
};

/// The ring and transport features every ringwork device offers:
/// VERSION_1, RING_PACKED, EVENT_IDX and INDIRECT_DESC.
pub const fn ring_features() -> u64 {
    (1 << VIRTIO_F_VERSION_1)
        | (1 << VIRTIO_F_RING_PACKED)
        | (1 << VIRTIO_F_EVENT_IDX)
        | (1 << VIRTIO_F_INDIRECT_DESC)
}
