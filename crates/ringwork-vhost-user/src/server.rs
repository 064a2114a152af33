//! Listening for frontends and serving them: one at a time with one
//! device ([`Server::serve`]), or several at once, each with a device of
//! its own ([`Server::serve_many`], e.g. one network device per guest, all
//! on one switch).
//!
//! Follows the vhost-user "Backend program conventions": the socket comes
//! from a path (`--socket-path`) or an inherited descriptor (`--fd`); the
//! process never daemonizes; a termination signal ends it promptly after
//! every running queue has been stopped (in-flight requests completed).
//!
//! Trust and panic contract: a frontend that breaks the protocol loses its
//! connection (the reason is logged); the server then listens again or
//! exits, as configured. Nothing panics.

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use ringwork_device::model::Device;

use crate::backend::{BackendError, Connection};
use crate::poll::PollPolicy;
use crate::sys::{self, EventFd};

/// What to do when a frontend disconnects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnDisconnect {
    /// Accept the next frontend (reconnection after a frontend restart).
    #[default]
    Listen,
    /// Return from [`Server::serve`].
    Exit,
}

/// Errors of the server.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Another process is listening on the socket path.
    #[error("socket {0} is busy: another backend is listening on it")]
    Busy(PathBuf),
    /// Binding the socket failed.
    #[error("cannot listen on {path}: {source}")]
    Bind {
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The inherited descriptor is not a unix socket.
    #[error("--fd {fd}: {reason}")]
    BadFd {
        /// The descriptor number.
        fd: i32,
        /// Why it is unusable.
        reason: String,
    },
    /// Accepting or polling failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The (only) frontend broke the protocol.
    #[error("frontend error: {0}")]
    Backend(#[from] BackendError),
}

enum Source {
    Listener(UnixListener, Option<PathBuf>),
    Stream(Option<UnixStream>),
}

/// A vhost-user server for one device.
pub struct Server {
    source: Source,
    shutdown: Arc<EventFd>,
    poll: PollPolicy,
}

impl core::fmt::Debug for Server {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Server").finish_non_exhaustive()
    }
}

/// Ends a running [`Server::serve`] from another thread or a signal
/// handler (see [`Server::shutdown_fd`]).
#[derive(Debug, Clone)]
pub struct ShutdownHandle(Arc<EventFd>);

impl ShutdownHandle {
    /// Asks the server to stop.
    pub fn shutdown(&self) {
        let _ = self.0.signal();
    }
}

impl Server {
    /// Listens on `path`. A stale socket file (nobody listening) is
    /// replaced; a live one is [`ServeError::Busy`].
    pub fn bind(path: &Path) -> Result<Self, ServeError> {
        if path.exists() {
            if UnixStream::connect(path).is_ok() {
                return Err(ServeError::Busy(path.to_owned()));
            }
            let _ = std::fs::remove_file(path);
        }
        let l = UnixListener::bind(path).map_err(|source| ServeError::Bind {
            path: path.to_owned(),
            source,
        })?;
        Self::with_source(Source::Listener(l, Some(path.to_owned())))
    }

    /// Uses an inherited descriptor: a listening socket (accepts
    /// frontends) or a connected one (serves that frontend).
    pub fn from_fd(fd: OwnedFd) -> Result<Self, ServeError> {
        use std::os::fd::AsRawFd;
        let n = fd.as_raw_fd();
        let listening = sys::is_listening(fd.as_fd()).map_err(|e| ServeError::BadFd {
            fd: n,
            reason: format!("not a socket ({e})"),
        })?;
        let source = if listening {
            Source::Listener(UnixListener::from(fd), None)
        } else {
            Source::Stream(Some(UnixStream::from(fd)))
        };
        Self::with_source(source)
    }

    fn with_source(source: Source) -> Result<Self, ServeError> {
        Ok(Self {
            source,
            shutdown: Arc::new(EventFd::new()?),
            poll: PollPolicy::Off,
        })
    }

    /// Makes worker threads poll their rings for up to `budget` after
    /// processing before they sleep (default: zero, sleep at once). Polling
    /// spends CPU to save the sleep, the wakeup and the driver's kick when
    /// the driver makes buffers available again within `budget`; on
    /// machines where wakeups are expensive (VMs) it pays off for a single
    /// busy queue (docs/PERFORMANCE.md).
    pub fn set_poll(&mut self, budget: std::time::Duration) {
        self.poll = PollPolicy::fixed(budget);
    }

    /// Sets how worker threads poll their rings before they sleep: off,
    /// a fixed window ([`Self::set_poll`]) or one that adapts
    /// ([`PollPolicy::Adaptive`]).
    pub fn set_poll_policy(&mut self, policy: PollPolicy) {
        self.poll = policy;
    }

    /// A handle that stops [`Self::serve`].
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle(self.shutdown.clone())
    }

    /// The eventfd that stops the server when signalled (for
    /// [`crate::sys::signal_on_termination`]).
    pub fn shutdown_fd(&self) -> Arc<EventFd> {
        self.shutdown.clone()
    }

    /// Serves frontends until shutdown, or until the first disconnects
    /// with [`OnDisconnect::Exit`] (or when serving an inherited connected
    /// socket). Returns `Ok` on shutdown or a clean disconnect.
    pub fn serve(
        &mut self,
        device: Arc<dyn Device>,
        on_disconnect: OnDisconnect,
    ) -> Result<(), ServeError> {
        loop {
            let stream = match &mut self.source {
                Source::Stream(s) => match s.take() {
                    Some(s) => s,
                    None => return Ok(()),
                },
                Source::Listener(l, _) => {
                    let (ready, stop) = sys::poll2(l.as_fd(), self.shutdown.as_fd())?;
                    if stop {
                        tracing::info!("shutting down");
                        return Ok(());
                    }
                    if !ready {
                        continue;
                    }
                    l.accept()?.0
                }
            };
            tracing::info!("frontend connected");
            let last =
                matches!(self.source, Source::Stream(_)) || on_disconnect == OnDisconnect::Exit;
            match self.serve_one(device.clone(), stream) {
                Ok(true) => {
                    tracing::info!("shutting down");
                    return Ok(());
                }
                Ok(false) => tracing::info!("frontend disconnected"),
                Err(e) => {
                    tracing::error!("closing the connection: {e}");
                    if last {
                        return Err(e.into());
                    }
                }
            }
            device.reset();
            if last {
                return Ok(());
            }
        }
    }

    /// Serves one connection; `Ok(true)` when shutdown was requested.
    fn serve_one(&self, device: Arc<dyn Device>, stream: UnixStream) -> Result<bool, BackendError> {
        serve_connection(device, stream, &self.shutdown, self.poll)
    }

    /// Serves any number of frontends at once (at most `max_connections`;
    /// more are refused, that is, closed at once), each on its own thread
    /// with its own device: `factory(n)` makes the device for the `n`th
    /// connection (0, 1, ...); when it fails, that connection is closed.
    /// A device is dropped when its connection ends.
    ///
    /// Returns `Ok` on shutdown (after every connection stopped its
    /// queues), or, with [`OnDisconnect::Exit`], once the last open
    /// connection ended. An inherited connected socket is served alone.
    /// A connection that breaks the protocol is logged and closed; the
    /// others go on.
    pub fn serve_many<F>(
        &mut self,
        mut factory: F,
        on_disconnect: OnDisconnect,
        max_connections: usize,
    ) -> Result<(), ServeError>
    where
        F: FnMut(u64) -> Result<Arc<dyn Device>, Box<dyn std::error::Error + Send + Sync>>,
    {
        let listener = match &mut self.source {
            Source::Stream(s) => {
                let Some(stream) = s.take() else {
                    return Ok(());
                };
                let device = factory(0).map_err(|e| {
                    ServeError::Io(std::io::Error::other(format!("creating the device: {e}")))
                })?;
                self.serve_one(device, stream)?;
                return Ok(());
            }
            Source::Listener(l, _) => l,
        };
        let ended = Arc::new(EventFd::new()?);
        // Each connection's thread, and a flag it sets as it ends.
        let mut running: Vec<(u64, JoinHandle<()>, Arc<AtomicBool>)> = Vec::new();
        let mut next = 0u64;
        loop {
            let ready = sys::poll_fds(
                &[listener.as_fd(), self.shutdown.as_fd(), ended.as_fd()],
                -1,
            )?;
            if ready[1] {
                tracing::info!("shutting down {} connection(s)", running.len());
                for (_, t, _) in running {
                    let _ = t.join();
                }
                return Ok(());
            }
            if ready[2] {
                let _ = ended.drain();
            }
            // Reap every round, so the limit counts only live connections.
            let (done, live): (Vec<_>, Vec<_>) = running
                .into_iter()
                .partition(|(_, _, ended)| ended.load(Ordering::SeqCst));
            running = live;
            for (n, t, _) in done {
                let _ = t.join();
                tracing::info!("connection {n} ended ({} open)", running.len());
            }
            if on_disconnect == OnDisconnect::Exit && running.is_empty() && next > 0 {
                return Ok(());
            }
            if !ready[0] {
                continue;
            }
            let (stream, _) = listener.accept()?;
            if running.len() >= max_connections {
                tracing::warn!("refusing a connection: {max_connections} already open");
                continue;
            }
            let n = next;
            next += 1;
            let device = match factory(n) {
                Ok(d) => d,
                Err(e) => {
                    tracing::error!("connection {n}: creating its device failed: {e}");
                    continue;
                }
            };
            tracing::info!("connection {n}: frontend connected");
            let (stop, done, poll) = (self.shutdown.clone(), ended.clone(), self.poll);
            let flag = Arc::new(AtomicBool::new(false));
            let flag2 = flag.clone();
            let t = std::thread::Builder::new()
                .name(format!("ringwork-conn{n}"))
                .spawn(move || {
                    match serve_connection(device, stream, &stop, poll) {
                        Ok(_) => tracing::info!("connection {n}: frontend disconnected"),
                        Err(e) => tracing::error!("connection {n}: closing: {e}"),
                    }
                    flag2.store(true, Ordering::SeqCst);
                    let _ = done.signal();
                })?;
            running.push((n, t, flag));
        }
    }
}

/// Serves one connection until the frontend leaves (`Ok(false)`) or
/// `shutdown` is signalled (`Ok(true)`; the signal stays set for others).
fn serve_connection(
    device: Arc<dyn Device>,
    stream: UnixStream,
    shutdown: &EventFd,
    poll: PollPolicy,
) -> Result<bool, BackendError> {
    let mut conn = Connection::with_poll_policy(device, stream, poll)?;
    loop {
        let (ready, stop) = sys::poll2(conn.socket().as_fd(), shutdown.as_fd())?;
        if stop {
            // Dropping the connection stops every queue first.
            return Ok(true);
        }
        if ready && !conn.handle_one()? {
            return Ok(false);
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Source::Listener(_, Some(path)) = &self.source {
            let _ = std::fs::remove_file(path);
        }
    }
}
