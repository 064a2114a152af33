//! Port backends at run time ([`PortIo`]): opening what a
//! [`PortBackend`] names, and moving bytes to and from it without blocking
//! (except stdout, see [`PortBackend::Stdio`]).
//!
//! A `PortIo` outlives the workers: it is handed to each worker in turn and
//! keeps the input read but not yet delivered, and the output accepted but
//! not yet written, across device resets.
//!
//! Panic contract: nothing here panics; host I/O errors end the affected
//! direction (input: end of file; output: dropped from then on) or, for a
//! socket, the client's connection.

use std::fs::File;
use std::io::{self, ErrorKind, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use super::options::{ConsoleError, PortBackend, WindowSize};
use super::sys;

/// Input bytes read from a backend and not yet given to the driver, at
/// most. The device stops reading the backend while the buffer is full.
pub(super) const IN_BUF_MAX: usize = 16 * 1024;
/// Output bytes held for a backend that cannot take them yet (emergency
/// writes, transmit buffers abandoned by a quiesce), at most; more is
/// dropped.
pub(super) const OUT_BACKLOG_MAX: usize = 64 * 1024;

/// The size a new pty gets when none is configured.
pub(super) const PTY_DEFAULT_SIZE: WindowSize = WindowSize { cols: 80, rows: 24 };

/// The result of a write to a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Wrote {
    /// This many bytes were consumed (written, or dropped as the backend's
    /// policy says).
    Done(usize),
    /// The backend cannot take bytes now; the device waits for it.
    Blocked,
}

/// What a read from a backend did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Input {
    /// Bytes were appended to the input buffer.
    Data,
    /// Nothing to read now.
    Idle,
    /// The input ended (end of file, or a socket client went away).
    Ended,
}

#[derive(Debug)]
struct SocketPort {
    listener: UnixListener,
    path: PathBuf,
    /// (device, inode) of the socket file we created, to remove only it.
    file_id: Option<(u64, u64)>,
    client: Option<UnixStream>,
}

impl Drop for SocketPort {
    fn drop(&mut self) {
        let same = std::fs::symlink_metadata(&self.path)
            .ok()
            .map(|m| (m.dev(), m.ino()));
        if same.is_some() && same == self.file_id {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[derive(Debug)]
enum Kind {
    Stdio { input: File, output: File },
    Fds { input: File, output: File },
    Pty(sys::Pty),
    Socket(SocketPort),
}

/// A port's backend at run time. See the [module docs](self).
#[derive(Debug)]
pub(super) struct PortIo {
    kind: Kind,
    /// Input read from the backend, not yet given to the driver.
    pub in_buf: Vec<u8>,
    /// The input ended (never for a socket: the next client brings more).
    in_ended: bool,
    /// Output waiting for the backend, written before new output.
    out_backlog: Vec<u8>,
    /// The output failed: output is dropped from now on.
    out_closed: bool,
    /// Output bytes dropped so far (pty full, no client, errors).
    pub dropped: u64,
    /// Fds this backend closed since the last call to
    /// [`Self::take_closed_fds`] (a worker must forget its registrations).
    closed_fds: Vec<RawFd>,
}

fn bind_socket(path: &Path) -> Result<UnixListener, ConsoleError> {
    let err = |source| ConsoleError::Socket {
        path: path.to_owned(),
        source,
    };
    match UnixListener::bind(path) {
        Ok(l) => Ok(l),
        Err(e) if e.kind() == ErrorKind::AddrInUse => {
            // Someone listening, or a stale file left by a process that
            // died: only the latter may be replaced.
            match UnixStream::connect(path) {
                Ok(_) => Err(ConsoleError::SocketBusy(path.to_owned())),
                Err(c) if c.kind() == ErrorKind::ConnectionRefused => {
                    let is_socket = std::fs::symlink_metadata(path)
                        .map(|m| std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()))
                        .unwrap_or(false);
                    if !is_socket {
                        return Err(err(e));
                    }
                    std::fs::remove_file(path).map_err(err)?;
                    UnixListener::bind(path).map_err(err)
                }
                Err(_) => Err(err(e)),
            }
        }
        Err(e) => Err(err(e)),
    }
}

fn dup(fd: std::os::fd::BorrowedFd<'_>) -> io::Result<File> {
    fd.try_clone_to_owned().map(File::from)
}

impl PortIo {
    /// Opens `backend`; `size` is the initial size for a pty.
    pub(super) fn open(
        backend: PortBackend,
        size: Option<WindowSize>,
    ) -> Result<Self, ConsoleError> {
        let kind = match backend {
            PortBackend::Stdio => Kind::Stdio {
                input: dup(io::stdin().as_fd()).map_err(ConsoleError::Stdio)?,
                output: dup(io::stdout().as_fd()).map_err(ConsoleError::Stdio)?,
            },
            PortBackend::Fds { read, write } => {
                let prep = |fd: OwnedFd| -> Result<File, ConsoleError> {
                    sys::set_nonblocking(fd.as_fd()).map_err(ConsoleError::Fds)?;
                    Ok(File::from(fd))
                };
                Kind::Fds {
                    input: prep(read)?,
                    output: prep(write)?,
                }
            }
            PortBackend::Pty => {
                let size = size.unwrap_or(PTY_DEFAULT_SIZE);
                let pty = sys::open_pty(Some(size)).map_err(ConsoleError::Pty)?;
                tracing::info!("virtio-console: pty at {}", pty.path.display());
                Kind::Pty(pty)
            }
            PortBackend::UnixSocket(path) => {
                let listener = bind_socket(&path)?;
                listener
                    .set_nonblocking(true)
                    .map_err(|source| ConsoleError::Socket {
                        path: path.clone(),
                        source,
                    })?;
                let file_id = std::fs::symlink_metadata(&path)
                    .ok()
                    .map(|m| (m.dev(), m.ino()));
                Kind::Socket(SocketPort {
                    listener,
                    path,
                    file_id,
                    client: None,
                })
            }
        };
        Ok(Self {
            kind,
            in_buf: Vec::new(),
            in_ended: false,
            out_backlog: Vec::new(),
            out_closed: false,
            dropped: 0,
            closed_fds: Vec::new(),
        })
    }

    /// The pty slave's path, for a pty backend.
    pub(super) fn pty_path(&self) -> Option<&Path> {
        match &self.kind {
            Kind::Pty(p) => Some(&p.path),
            _ => None,
        }
    }

    /// The socket's path, for a socket backend.
    pub(super) fn socket_path(&self) -> Option<&Path> {
        match &self.kind {
            Kind::Socket(s) => Some(&s.path),
            _ => None,
        }
    }

    /// Whether a host program is on the other side: a socket's client;
    /// always for the other backends.
    pub(super) fn host_connected(&self) -> bool {
        match &self.kind {
            Kind::Socket(s) => s.client.is_some(),
            _ => true,
        }
    }

    /// The terminal size of a pty, or of stdout when it is a terminal.
    pub(super) fn window_size(&self) -> Option<WindowSize> {
        match &self.kind {
            Kind::Pty(p) => sys::window_size(p.master.as_fd()),
            Kind::Stdio { output, .. } => sys::window_size(output.as_fd()),
            _ => None,
        }
    }

    /// The fd input comes from now, if any.
    pub(super) fn input_fd(&self) -> Option<RawFd> {
        self.input().map(|fd| fd.as_raw_fd())
    }

    fn input(&self) -> Option<BorrowedFd<'_>> {
        if self.in_ended {
            return None;
        }
        match &self.kind {
            Kind::Stdio { input, .. } | Kind::Fds { input, .. } => Some(input.as_fd()),
            Kind::Pty(p) => Some(p.master.as_fd()),
            Kind::Socket(s) => s.client.as_ref().map(|c| c.as_fd()),
        }
    }

    /// The fd output goes to now, if any.
    pub(super) fn output_fd(&self) -> Option<RawFd> {
        if self.out_closed {
            return None;
        }
        match &self.kind {
            Kind::Stdio { output, .. } | Kind::Fds { output, .. } => Some(output.as_raw_fd()),
            Kind::Pty(p) => Some(p.master.as_raw_fd()),
            Kind::Socket(s) => s.client.as_ref().map(|c| c.as_raw_fd()),
        }
    }

    /// The listening socket while it waits for a client.
    pub(super) fn listener_fd(&self) -> Option<RawFd> {
        match &self.kind {
            Kind::Socket(s) if s.client.is_none() => Some(s.listener.as_raw_fd()),
            _ => None,
        }
    }

    /// Fds closed since the last call.
    pub(super) fn take_closed_fds(&mut self) -> Vec<RawFd> {
        std::mem::take(&mut self.closed_fds)
    }

    /// Accepts a waiting client when there is none; `true` when one was.
    pub(super) fn accept(&mut self) -> bool {
        let Kind::Socket(s) = &mut self.kind else {
            return false;
        };
        if s.client.is_some() {
            return false;
        }
        match s.listener.accept() {
            Ok((c, _)) => {
                if let Err(e) = c.set_nonblocking(true) {
                    tracing::warn!("virtio-console: client on {}: {e}", s.path.display());
                    return false;
                }
                tracing::info!("virtio-console: client connected to {}", s.path.display());
                s.client = Some(c);
                true
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => false,
            Err(e) if e.kind() == ErrorKind::Interrupted => false,
            Err(e) => {
                tracing::warn!("virtio-console: accept on {}: {e}", s.path.display());
                false
            }
        }
    }

    fn disconnect(&mut self) {
        if let Kind::Socket(s) = &mut self.kind {
            if let Some(c) = s.client.take() {
                tracing::info!("virtio-console: client left {}", s.path.display());
                self.closed_fds.push(c.as_raw_fd());
            }
        }
    }

    /// Whether the input buffer has room.
    pub(super) fn in_room(&self) -> bool {
        self.in_buf.len() < IN_BUF_MAX
    }

    /// Reads what the backend has into the input buffer, while it has
    /// room. Never blocks: the fd is polled first.
    pub(super) fn read_input(&mut self) -> Input {
        let Some(fd) = self.input() else {
            return Input::Idle;
        };
        if !self.in_room() {
            return Input::Idle;
        }
        match sys::poll_readable(fd) {
            Ok(true) => {}
            Ok(false) => return Input::Idle,
            Err(e) => {
                tracing::warn!("virtio-console: poll: {e}");
                return Input::Idle;
            }
        }
        let room = IN_BUF_MAX - self.in_buf.len();
        let start = self.in_buf.len();
        self.in_buf.resize(start + room, 0);
        let buf = &mut self.in_buf[start..];
        let r = match &mut self.kind {
            Kind::Stdio { input, .. } | Kind::Fds { input, .. } => input.read(buf),
            Kind::Pty(p) => p.master.read(buf),
            Kind::Socket(s) => match &mut s.client {
                Some(c) => c.read(buf),
                None => Ok(0),
            },
        };
        match r {
            Ok(0) => {
                self.in_buf.truncate(start);
                self.end_input(None);
                Input::Ended
            }
            Ok(n) => {
                self.in_buf.truncate(start + n);
                Input::Data
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {
                self.in_buf.truncate(start);
                Input::Idle
            }
            Err(e) => {
                self.in_buf.truncate(start);
                self.end_input(Some(e));
                Input::Ended
            }
        }
    }

    fn end_input(&mut self, err: Option<io::Error>) {
        if let Some(e) = &err {
            tracing::warn!("virtio-console: reading port input: {e}");
        }
        if matches!(self.kind, Kind::Socket(_)) {
            self.disconnect();
        } else {
            self.in_ended = true;
        }
    }

    /// Writes `data` (output from the driver) to the backend, after any
    /// backlog. See [`PortBackend`] for what happens when the backend is
    /// slow or absent.
    pub(super) fn write_output(&mut self, data: &[u8]) -> Wrote {
        if !self.flush_backlog() {
            return Wrote::Blocked;
        }
        self.write_now(data)
    }

    /// Writes the backlog; `true` when it is empty afterwards.
    pub(super) fn flush_backlog(&mut self) -> bool {
        while !self.out_backlog.is_empty() {
            let backlog = std::mem::take(&mut self.out_backlog);
            let r = self.write_now(&backlog);
            self.out_backlog = backlog;
            match r {
                Wrote::Done(n) => {
                    self.out_backlog.drain(..n.min(self.out_backlog.len()));
                }
                Wrote::Blocked => return false,
            }
        }
        true
    }

    /// Whether output is waiting for the backend.
    pub(super) fn has_backlog(&self) -> bool {
        !self.out_backlog.is_empty()
    }

    /// Queues `data` behind the backlog (bounded: the excess is dropped).
    pub(super) fn push_backlog(&mut self, data: &[u8]) {
        let room = OUT_BACKLOG_MAX.saturating_sub(self.out_backlog.len());
        let n = room.min(data.len());
        self.out_backlog.extend_from_slice(&data[..n]);
        self.dropped += (data.len() - n) as u64;
    }

    /// An emergency write (VIRTIO 1.4 §5.3.5.1): one byte, now if the
    /// backend takes it, else behind the backlog.
    pub(super) fn emergency_write(&mut self, byte: u8) {
        if self.flush_backlog() && self.write_now(&[byte]) == Wrote::Done(1) {
            return;
        }
        self.push_backlog(&[byte]);
    }

    fn write_now(&mut self, data: &[u8]) -> Wrote {
        if data.is_empty() {
            return Wrote::Done(0);
        }
        if self.out_closed {
            self.dropped += data.len() as u64;
            return Wrote::Done(data.len());
        }
        loop {
            let (r, drop_when_full) = match &mut self.kind {
                // stdout is blocking: this returns once something was
                // written.
                Kind::Stdio { output, .. } => (output.write(data), false),
                Kind::Fds { output, .. } => (output.write(data), false),
                Kind::Pty(p) => (p.master.write(data), true),
                Kind::Socket(s) => match &mut s.client {
                    Some(c) => (c.write(data), false),
                    None => {
                        self.dropped += data.len() as u64;
                        return Wrote::Done(data.len());
                    }
                },
            };
            return match r {
                Ok(0) => {
                    self.fail_output(io::Error::from(ErrorKind::WriteZero));
                    Wrote::Done(data.len())
                }
                Ok(n) => Wrote::Done(n),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    if drop_when_full {
                        self.dropped += data.len() as u64;
                        Wrote::Done(data.len())
                    } else {
                        Wrote::Blocked
                    }
                }
                Err(e) => {
                    self.dropped += data.len() as u64;
                    self.fail_output(e);
                    Wrote::Done(data.len())
                }
            };
        }
    }

    fn fail_output(&mut self, e: io::Error) {
        if matches!(self.kind, Kind::Socket(_)) {
            self.disconnect();
        } else {
            tracing::warn!("virtio-console: port output failed, dropping output from now on: {e}");
            self.out_closed = true;
        }
    }
}
