//! What a console is made of: its ports ([`PortSpec`]), each with a host
//! backend ([`PortBackend`]), and the device-wide [`ConsoleOptions`];
//! [`ConsoleError`] says why a console could not be built.

use std::os::fd::OwnedFd;
use std::path::PathBuf;

/// Ports a console may have at most: every port needs two virtqueues and
/// the control pair takes two more (VIRTIO 1.4 §5.3.2), and queue indices
/// are 16-bit.
pub const MAX_PORTS: usize = 32766;

/// A terminal size in character cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WindowSize {
    /// Columns.
    pub cols: u16,
    /// Rows.
    pub rows: u16,
}

/// Where a port's data goes on the host, and where its input comes from.
///
/// Output (guest → host) and input (host → guest) behave per backend:
///
/// | backend        | input                 | output when the host is slow or absent |
/// |----------------|-----------------------|----------------------------------------|
/// | `Stdio`        | stdin                 | blocks the worker (stdout stays blocking) |
/// | `UnixSocket`   | the connected client  | no client: dropped; slow client: the guest waits |
/// | `Pty`          | the pty master        | dropped when the pty's buffer is full (nobody may be reading the slave) |
/// | `Fds`          | `read`                | the guest waits |
///
/// Input is never dropped: the device stops reading a backend while it has
/// nowhere to put the bytes.
#[derive(Debug)]
pub enum PortBackend {
    /// The process's standard input and output (duplicated file
    /// descriptors; stdin is not made non-blocking and terminal modes are
    /// left alone: an embedding program that wants a raw terminal sets it
    /// up itself).
    Stdio,
    /// A Unix stream socket the device listens on at this path, serving
    /// one client at a time (further clients wait in the listen backlog
    /// until the current one disconnects). The host side counts as open
    /// while a client is connected. A stale socket file (nobody listening)
    /// is replaced; the file is removed when the console is dropped.
    UnixSocket(PathBuf),
    /// A new pseudo-terminal; the slave's path is logged and returned by
    /// [`Console::pty_path`](super::Console::pty_path). The slave is put in
    /// raw mode and starts at 80x24 (or [`ConsoleOptions::size`] for port
    /// 0); the device follows later size changes. The device keeps the
    /// slave open, so the host side always counts as connected.
    Pty,
    /// Two caller-provided file descriptors (pipes, a socketpair, a file):
    /// the device reads input from `read` and writes output to `write`,
    /// both put in non-blocking mode. Useful for tests and for embedding.
    Fds {
        /// Input source (host → guest).
        read: OwnedFd,
        /// Output sink (guest → host).
        write: OwnedFd,
    },
}

/// One port of the console.
#[derive(Debug)]
pub struct PortSpec {
    /// The port's name, sent with VIRTIO_CONSOLE_PORT_NAME (Linux shows it
    /// as `/dev/virtio-ports/NAME`). Needs multiport.
    pub name: Option<String>,
    /// The host backend.
    pub backend: PortBackend,
    /// Whether the device nominates the port as a console
    /// (VIRTIO_CONSOLE_CONSOLE_PORT; an `hvc` device in Linux). Port 0 of
    /// a single-port console always is one.
    pub console: bool,
}

impl PortSpec {
    /// A console port on `backend`.
    pub fn console(backend: PortBackend) -> Self {
        Self {
            name: None,
            backend,
            console: true,
        }
    }

    /// A named generic (non-console) port on `backend`.
    pub fn named(name: impl Into<String>, backend: PortBackend) -> Self {
        Self {
            name: Some(name.into()),
            backend,
            console: false,
        }
    }
}

/// Options of a console device.
#[derive(Debug)]
pub struct ConsoleOptions {
    /// The ports; port `i` is the `i`-th entry. At least one.
    pub ports: Vec<PortSpec>,
    /// Offer VIRTIO_CONSOLE_F_MULTIPORT. Turned on automatically when
    /// there is more than one port or a port has a name.
    pub multiport: bool,
    /// The console size of port 0 (VIRTIO_CONSOLE_F_SIZE). `None`: taken
    /// from port 0's backend when it is a terminal (a pty, or stdout on a
    /// terminal), and then followed as it changes; otherwise F_SIZE is not
    /// offered.
    pub size: Option<WindowSize>,
    /// Offer VIRTIO_CONSOLE_F_EMERG_WRITE: bytes the driver writes to
    /// `emerg_wr` go to port 0's backend.
    pub emerg_write: bool,
}

impl ConsoleOptions {
    /// Options for `ports`, with multiport decided by the ports, the size
    /// taken from port 0's backend, and emergency write offered.
    pub fn new(ports: Vec<PortSpec>) -> Self {
        Self {
            ports,
            multiport: false,
            size: None,
            emerg_write: true,
        }
    }

    /// A single console port on `backend`.
    pub fn single(backend: PortBackend) -> Self {
        Self::new(vec![PortSpec::console(backend)])
    }
}

/// Why a console could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// No ports.
    #[error("a console needs at least one port")]
    NoPorts,
    /// More than [`MAX_PORTS`] ports.
    #[error("{0} ports requested; a console has at most {MAX_PORTS}")]
    TooManyPorts(usize),
    /// A port name is empty or holds a NUL byte.
    #[error("port {port}: invalid name {name:?} (empty or containing NUL)")]
    BadName {
        /// The port.
        port: usize,
        /// The name.
        name: String,
    },
    /// Two ports have the same name.
    #[error("port name {0:?} is used by more than one port")]
    DuplicateName(String),
    /// Another process is listening on the socket path.
    #[error("socket path {} is busy: another process is listening on it", .0.display())]
    SocketBusy(PathBuf),
    /// The socket could not be created.
    #[error("cannot listen on {}: {source}", path.display())]
    Socket {
        /// The path.
        path: PathBuf,
        /// The operating-system error.
        #[source]
        source: std::io::Error,
    },
    /// No pseudo-terminal could be opened.
    #[error("cannot open a pseudo-terminal: {0}")]
    Pty(#[source] std::io::Error),
    /// Standard input or output could not be duplicated.
    #[error("cannot use stdin/stdout: {0}")]
    Stdio(#[source] std::io::Error),
    /// Caller-provided file descriptors could not be set up.
    #[error("cannot set up the port's file descriptors: {0}")]
    Fds(#[source] std::io::Error),
    /// The device's wake-up channel could not be created.
    #[error("cannot create the console's wake-up socket pair: {0}")]
    Wake(#[source] std::io::Error),
}
