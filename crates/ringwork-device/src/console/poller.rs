//! The console worker's wake-up machinery: one level-triggered epoll
//! instance whose fd is the worker's only event fd, with each backend fd
//! registered for exactly what the worker can act on now (input only while
//! there is room for it, output readiness only while output waits), and a
//! socket pair to wake the worker from elsewhere (emergency writes) or from
//! itself (work left over, or fds epoll cannot watch).
//!
//! One fd that never changes suits any host: the host need not re-query
//! the worker's event fds, and the worker never makes it spin, because
//! nothing is registered that the worker would leave unhandled.
//!
//! Panic contract: nothing here panics; registration errors are logged and
//! fall back to waking the worker.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, ErrorKind, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;

use super::sys::Epoll;

/// A socket pair that makes the worker's epoll fd readable.
#[derive(Debug)]
pub(super) struct Wake {
    rx: UnixStream,
    tx: UnixStream,
}

impl Wake {
    /// A new, non-blocking pair.
    pub(super) fn new() -> io::Result<Self> {
        let (rx, tx) = UnixStream::pair()?;
        rx.set_nonblocking(true)?;
        tx.set_nonblocking(true)?;
        Ok(Self { rx, tx })
    }

    /// Another handle on the same pair.
    pub(super) fn try_clone(&self) -> io::Result<Self> {
        Ok(Self {
            rx: self.rx.try_clone()?,
            tx: self.tx.try_clone()?,
        })
    }

    /// The fd to watch.
    pub(super) fn fd(&self) -> RawFd {
        self.rx.as_raw_fd()
    }

    /// Makes the watched fd readable (a no-op when it already is: a full
    /// socket buffer is as good as one byte).
    pub(super) fn ring(&self) {
        let _ = (&self.tx).write(&[1]);
    }

    /// Consumes the pending wake-ups; `true` when there were any.
    pub(super) fn drain(&self) -> bool {
        let mut buf = [0u8; 64];
        let mut any = false;
        loop {
            match (&self.rx).read(&mut buf) {
                Ok(n) if n == buf.len() => any = true,
                Ok(n) => return any || n > 0,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return any,
            }
        }
    }
}

/// Keeps the epoll registrations equal to what the worker wants.
#[derive(Debug)]
pub(super) struct Poller {
    epoll: Epoll,
    registered: BTreeMap<RawFd, u32>,
    /// Fds epoll refuses (regular files, `/dev/null`): always ready.
    unpollable: BTreeSet<RawFd>,
}

impl Poller {
    /// A poller with nothing registered.
    pub(super) fn new() -> io::Result<Self> {
        Ok(Self {
            epoll: Epoll::new()?,
            registered: BTreeMap::new(),
            unpollable: BTreeSet::new(),
        })
    }

    /// The epoll fd.
    pub(super) fn fd(&self) -> RawFd {
        self.epoll.fd()
    }

    /// `fd` was closed (which removed it from the epoll set): forget it,
    /// before its number is reused.
    pub(super) fn forget(&mut self, fd: RawFd) {
        self.registered.remove(&fd);
        self.unpollable.remove(&fd);
    }

    /// Registers exactly `want` (fd → epoll events). Returns `true` when a
    /// wanted fd cannot be watched, so the caller must wake itself.
    pub(super) fn apply(&mut self, want: &BTreeMap<RawFd, u32>) -> bool {
        let stale: Vec<RawFd> = self
            .registered
            .keys()
            .filter(|fd| !want.contains_key(fd))
            .copied()
            .collect();
        for fd in stale {
            self.registered.remove(&fd);
            if let Err(e) = self.epoll.delete(fd) {
                tracing::debug!("virtio-console: epoll delete {fd}: {e}");
            }
        }
        let mut wake = false;
        for (&fd, &events) in want {
            if self.unpollable.contains(&fd) {
                wake = true;
                continue;
            }
            if self.registered.get(&fd) == Some(&events) {
                continue;
            }
            let r = if self.registered.contains_key(&fd) {
                self.epoll
                    .modify(fd, events)
                    .or_else(|e| match e.raw_os_error() {
                        Some(libc::ENOENT) => self.epoll.add(fd, events),
                        _ => Err(e),
                    })
            } else {
                self.epoll
                    .add(fd, events)
                    .or_else(|e| match e.raw_os_error() {
                        Some(libc::EEXIST) => self.epoll.modify(fd, events),
                        _ => Err(e),
                    })
            };
            match r {
                Ok(()) => {
                    self.registered.insert(fd, events);
                }
                Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
                    self.unpollable.insert(fd);
                    wake = true;
                }
                Err(e) => {
                    tracing::warn!("virtio-console: cannot watch fd {fd}: {e}");
                    self.registered.remove(&fd);
                }
            }
        }
        wake
    }
}
