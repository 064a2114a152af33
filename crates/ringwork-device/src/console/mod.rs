//! The console device (VIRTIO 1.4 §5.3): one or more ports, each a pair of
//! data queues connected to a host backend (stdio, a Unix socket, a
//! pseudo-terminal, or caller-provided fds), plus — with
//! VIRTIO_CONSOLE_F_MULTIPORT — the control queues that announce ports and
//! their state.
//!
//! ```no_run
//! use ringwork_device::console::{Console, ConsoleOptions, PortBackend, PortSpec};
//!
//! // Port 0: a console on a pty; port 1: a named port on a Unix socket.
//! let console = Console::new(ConsoleOptions::new(vec![
//!     PortSpec::console(PortBackend::Pty),
//!     PortSpec::named("org.example.agent", PortBackend::UnixSocket("/tmp/agent.sock".into())),
//! ]))?;
//! println!("console on {}", console.pty_path(0).unwrap().display());
//! # Ok::<(), ringwork_device::console::ConsoleError>(())
//! ```
//!
//! Queues (§5.3.2): receiveq and transmitq of port 0 are 0 and 1; with
//! multiport, the control receiveq (device → driver) is 2, the control
//! transmitq (driver → device) is 3, and port N ≥ 1 has 2 + 2N and 3 + 2N.
//! All of them are served by one worker ([`Device::worker_map`]), so the
//! control protocol and the data paths share state without locks.
//!
//! Multiport protocol (§5.3.6.2), as the device plays it: on the driver's
//! DEVICE_READY(1) it sends PORT_ADD for every port, once; on
//! PORT_READY(1) for a port, CONSOLE_PORT if it is a console (then RESIZE
//! when its size is known), PORT_NAME if it has a name, and PORT_OPEN(1)
//! if the host side is connected; afterwards PORT_OPEN(1/0) whenever a
//! socket client connects or leaves, and RESIZE when a console port's
//! terminal changes size. The driver's PORT_OPEN records whether the guest
//! has the port open: a generic port's input is held (not read further
//! once the buffer is full) until the guest opens it, since Linux discards
//! input for closed ports; a console port takes input once ready. Ports
//! are used only after the driver readied them (§5.3.6.2.1: ports are
//! added before use; no port is added twice or beyond `max_nr_ports`).
//! Without multiport, port 0 is used from the start and other ports are
//! idle.
//!
//! Host wake-ups: the worker's only event fd is an epoll instance (see
//! [`QueueWorker::event_fds`]) that is readable exactly when the worker can
//! make progress: input is watched only while there is room for it,
//! output readiness only while output waits. Input is never dropped; what
//! happens to output nobody takes is per backend (see [`PortBackend`]).
//! Writing to a closed pipe or socket must not kill the process: the host
//! must ignore `SIGPIPE` (Rust programs do by default).
//!
//! Trust and panic contract: everything the driver puts in the queues is
//! hostile input. Malformed control messages (short, unknown event, bad
//! or unready port, wrong value) are logged (rate-limited) and ignored;
//! buffers of the wrong direction have their wrong part ignored; chains
//! outside guest memory break their queue only, and the worker keeps
//! serving the other queues. Host I/O errors end the affected direction of
//! a port. Nothing in this module panics.
//!
//! [`Device::worker_map`]: crate::model::Device::worker_map
//! [`QueueWorker::event_fds`]: crate::model::QueueWorker::event_fds

mod backend;
mod control;
mod data;
mod device;
mod options;
mod poller;
pub(crate) mod sys;
mod worker;

pub use device::Console;
pub use options::{ConsoleError, ConsoleOptions, PortBackend, PortSpec, WindowSize, MAX_PORTS};
