//! The vhost-user backend: serves any [`ringwork_device`] device to a
//! vhost-user frontend (QEMU, User-Mode Linux, DPDK's virtio-user, or
//! ringwork's own frontend) over a unix socket.
//!
//! ```no_run
//! use std::sync::Arc;
//! use ringwork_device::rng::Rng;
//! use ringwork_vhost_user::{OnDisconnect, Server};
//!
//! let mut server = Server::bind("/tmp/rng.sock".as_ref())?;
//! server.serve(Arc::new(Rng::new()), OnDisconnect::Listen)?;
//! # Ok::<(), ringwork_vhost_user::ServeError>(())
//! ```
//!
//! The protocol is vhost-user.rst in the shared spec directory; request
//! and feature names follow it (see [`msg`]). One worker thread serves
//! each group of queues the device asks for
//! ([`Device::worker_map`](ringwork_device::model::Device::worker_map)); the
//! data path has no async runtime.
//!
//! Trust and panic contract: the frontend is not trusted. Every message is
//! checked; a malformed one closes that connection with a logged reason.
//! Guest memory is reached only inside the regions the frontend shared.

pub mod backend;
pub mod frontend;
pub mod inflight;
pub mod memory;
pub mod msg;
mod poll;
pub mod server;
pub mod sys;
pub mod transport;
mod worker;

pub use backend::{offered_protocol_features, BackendError, Connection};
pub use frontend::{Frontend, FrontendError};
pub use poll::PollPolicy;
pub use server::{OnDisconnect, ServeError, Server, ShutdownHandle};
pub use transport::{SharedMemory, TransportOptions, VhostUserTransport};
