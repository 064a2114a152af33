//! Every constant, bit and wire layout of the OASIS VIRTIO 1.4 specification.
//!
//! `no_std`, no `alloc`, no `unsafe`. This crate is data: the other ringwork
//! crates (queues, transports, devices, drivers) take their numbers from here.
//!
//! ```
//! use ringwork_spec::ring::split::{SplitDesc, VIRTQ_DESC_F_WRITE};
//!
//! // A descriptor as it sits in a split ring (VIRTIO 1.4 §2.7.5).
//! let bytes = [0x00, 0x10, 0, 0, 0, 0, 0, 0, 0x00, 0x02, 0, 0, 0x02, 0, 0, 0];
//! let desc = SplitDesc::new_checked(&bytes[..]).unwrap();
//! assert_eq!(desc.addr(), 0x1000);
//! assert_eq!(desc.len(), 512);
//! assert_eq!(desc.flags(), VIRTQ_DESC_F_WRITE);
//! ```
//!
//! # Naming
//! Spec names map to Rust names once, the same way everywhere:
//! - constants keep the spec's name (`VIRTIO_F_RING_PACKED`,
//!   `VIRTQ_DESC_F_NEXT`, `VIRTIO_BLK_T_IN`) and carry `#[doc(alias)]`es where
//!   the Rust path differs;
//! - structures drop the `virtio_`/`virtq_` prefix and become CamelCase views
//!   (`struct virtq_desc` → [`ring::split::SplitDesc`], `struct
//!   virtio_blk_req` → `blk::BlkReqHeader`), with the C name as a doc alias;
//! - fields keep their spec names (`type` becomes `type_`).
//!
//! Wire structures are byte views ([`wire`]); multi-byte fields are
//! little-endian ([`le`]). Unknown values are kept, never rejected.
#![no_std]
#![deny(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(missing_docs)]

pub mod wire;

pub mod le;
pub mod ring;

pub mod device_id;
pub mod features;
pub mod status;

pub mod mmio;
pub mod pci;

pub mod balloon;
pub mod blk;
pub mod console;
pub mod net;
pub mod rng;
pub mod scsi;
