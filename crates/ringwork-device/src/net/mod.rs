//! The network device (VIRTIO 1.4 §5.1): receive/transmit queue pairs and
//! a control queue, connected on the host side to a [`NetBackend`] — the
//! built-in userspace [`Switch`], so that several guests served by one
//! process form a LAN with no host privileges, or a Linux [`Tap`]
//! interface into the host's network stack, with segmentation offloads.
//!
//! ```
//! use std::sync::Arc;
//! use ringwork_device::net::{MacAddr, Net, NetOptions, Switch};
//!
//! let switch = Switch::new();
//! let a = Net::new(
//!     NetOptions::new(MacAddr([0x52, 0x54, 0, 0, 0, 1])),
//!     Arc::new(switch.add_port(1)?),
//! )?;
//! let b = Net::new(
//!     NetOptions::new(MacAddr([0x52, 0x54, 0, 0, 0, 2])),
//!     Arc::new(switch.add_port(1)?),
//! )?;
//! assert_eq!(switch.num_ports(), 2);
//! # drop((a, b));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Features offered: VIRTIO_NET_F_MAC, STATUS (link up), MTU,
//! SPEED_DUPLEX, MRG_RXBUF, CSUM and GUEST_CSUM (checksum offload: a frame
//! sent with NEEDS_CSUM reaches a receiver without GUEST_CSUM with its
//! checksum completed in software), CTRL_VQ with CTRL_RX, CTRL_RX_EXTRA,
//! CTRL_VLAN, CTRL_MAC_ADDR and GUEST_ANNOUNCE, and MQ when more than one
//! queue pair is configured, plus the ring features every ringwork device
//! offers. Segmentation offload (HOST_/GUEST_ TSO4, TSO6, ECN, UFO, USO) is
//! offered only on a backend that carries GSO frames
//! ([`NetBackend::offloads`]: the tap, as far as the kernel takes them;
//! not the switch, which does not segment): GSO frames then pass through
//! whole, with their header fields ([`Gso`]), up to [`MAX_GSO_FRAME_LEN`].
//! No HASH_REPORT or RSS, so the header is 12 bytes (10 for a legacy
//! driver without MRG_RXBUF).
//!
//! Queues (§5.1.2): receiveq(k+1) is `2k`, transmitq(k+1) is `2k+1`, the
//! controlq is `2N` where N is `max_virtqueue_pairs` with MQ negotiated and
//! 1 without. Each queue has its own worker by default, or queues share
//! one per pair or per device ([`NetWorkers`], [`Device::worker_map`]); the
//! state the control queue changes (filter, address, active pairs) is
//! shared with the data path, which reads it without blocking.
//!
//! Frontends that keep the controlq (QEMU's `-netdev vhost-user`): such a
//! frontend negotiates with the device only the features that touch the
//! data path (MQ, CSUM, MRG_RXBUF, ... but not CTRL_VQ), never starts the
//! controlq, and turns the driver's VQ_PAIRS_SET into SET_VRING_ENABLE on
//! each ring. With MQ and without CTRL_VQ, the queue pairs in use are
//! therefore the leading pairs whose rings run
//! ([`Device::queue_running`]); the receive filter stays as after reset
//! (promiscuous), and the address is the frontend's, not the device's.
//!
//! Trust and panic contract: everything the driver puts in the queues is
//! hostile input. Headers and frames are copied out through the chain
//! reader into private buffers and checked; a malformed transmit chain is
//! completed and its frame dropped (counted in [`NetStats`]); a malformed
//! control command is answered VIRTIO_NET_ERR; a chain outside guest
//! memory breaks only its queue. Frames are bounded by [`MAX_FRAME_LEN`]
//! ([`MAX_GSO_FRAME_LEN`] for a GSO frame), and offload fields are checked
//! against the frame ([`BadOffload`]) both ways. Nothing in this module
//! panics.
//!
//! [`Device::worker_map`]: crate::model::Device::worker_map
//! [`Device::queue_running`]: crate::model::Device::queue_running

mod backend;
mod ctrl;
mod device;
mod filter;
mod gso;
mod loopback;
mod options;
mod packet;
mod pool;
mod rx;
mod stats;
mod switch;
mod sys;
mod tap;
mod tun;
mod tx;
mod worker;

pub use backend::{NetBackend, SendError};
pub use ctrl::CTRL_MAX;
pub use device::{net_ring_features, offered_net_features, offered_net_features_with, Net};
pub use filter::{RxFilter, MAC_TABLE_MAX};
pub use gso::{BadOffload, Gso, Offloads, VnetHdr};
pub use loopback::{Loopback, LOOPBACK_FRAMES};
pub use options::{NetError, NetOptions, NetWorkers, MAX_QUEUE_PAIRS};
pub use packet::{
    ones_complement_sum, BadMac, MacAddr, Packet, PartialCsum, ETH_HLEN, ETH_P_8021Q,
    MAX_FRAME_LEN, MAX_GSO_FRAME_LEN, MAX_MTU, VLAN_HLEN,
};
pub use rx::RX_BATCH;
pub use stats::NetStats;
pub use switch::{PortStats, Switch, SwitchPort, INBOX_BYTES, INBOX_FRAMES, MAC_AGE};
pub use sys::Doorbell;
pub use tap::{Tap, TapError, TapStats};
