//! The balloon worker's two file descriptors: an eventfd the handle rings
//! ([`Doorbell`]) and a periodic timer for statistics requests
//! ([`Ticker`], a `timerfd`).
//!
//! Panic contract: nothing here panics; system call failures are returned
//! (creation) or ignored where a lost wake-up is harmless (a doorbell that
//! is already ringing, a drained counter).
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

fn owned(fd: libc::c_int) -> io::Result<OwnedFd> {
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor returned by the kernel to this call,
    // owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Reads and discards an 8-byte counter (eventfd or timerfd); `true` when
/// there was one.
fn drain_counter(fd: RawFd) -> bool {
    let mut v = 0u64;
    // SAFETY: reads at most 8 bytes into `v`, a local u64.
    let n = unsafe { libc::read(fd, (&mut v as *mut u64).cast(), 8) };
    n == 8
}

/// A non-blocking eventfd: [`Self::ring`] makes it readable until
/// [`Self::drain`].
#[derive(Debug)]
pub(super) struct Doorbell(OwnedFd);

impl Doorbell {
    pub(super) fn new() -> io::Result<Self> {
        // SAFETY: eventfd has no memory effects; the result is checked.
        owned(unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) }).map(Self)
    }

    pub(super) fn fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }

    /// Makes the fd readable (a full counter is as good as a ring).
    pub(super) fn ring(&self) {
        let one = 1u64;
        // SAFETY: writes 8 bytes from `one`, a local u64.
        let _ = unsafe { libc::write(self.fd(), (&one as *const u64).cast(), 8) };
    }

    /// Consumes pending rings; `true` when there were any.
    pub(super) fn drain(&self) -> bool {
        drain_counter(self.fd())
    }
}

/// A non-blocking periodic timer (`CLOCK_MONOTONIC`).
#[derive(Debug)]
pub(super) struct Ticker(OwnedFd);

impl Ticker {
    /// A timer firing every `interval` (first after one interval).
    pub(super) fn new(interval: Duration) -> io::Result<Self> {
        // SAFETY: timerfd_create has no memory effects; checked.
        let fd = owned(unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        })?;
        // A zero interval would disarm the timer: use at least 1 ms.
        let interval = interval.max(Duration::from_millis(1));
        let ts = libc::timespec {
            tv_sec: libc::time_t::try_from(interval.as_secs()).unwrap_or(libc::time_t::MAX),
            tv_nsec: libc::c_long::from(interval.subsec_nanos() as i32),
        };
        let spec = libc::itimerspec {
            it_interval: ts,
            it_value: ts,
        };
        // SAFETY: `spec` is a valid itimerspec read by the kernel; the old
        // value pointer is null (not wanted).
        let rc = unsafe { libc::timerfd_settime(fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self(fd))
    }

    pub(super) fn fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }

    /// Consumes expirations; `true` when the timer fired.
    pub(super) fn drain(&self) -> bool {
        drain_counter(self.fd())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doorbell_and_ticker() {
        let d = Doorbell::new().unwrap();
        assert!(!d.drain());
        d.ring();
        d.ring();
        assert!(d.drain());
        assert!(!d.drain());
        let t = Ticker::new(Duration::from_millis(5)).unwrap();
        assert!(!t.drain());
        std::thread::sleep(Duration::from_millis(20));
        assert!(t.drain());
    }
}
