//! The one operating-system object the network device needs that `std`
//! does not wrap: an eventfd, the doorbell a backend rings when frames
//! wait for a receive queue. This is the only module of the network
//! device with `unsafe` code; each block says why it is sound.
//!
//! Panic contract: nothing here panics; failures are [`std::io::Error`]s.

#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

/// A non-blocking Linux eventfd: readable while its counter is non-zero.
///
/// It remembers whether it is rung, so a stream of frames costs one
/// `write` when the first arrives and one `read` when the consumer finds
/// nothing, not a system call per frame; and it can be disarmed while the
/// consumer polls anyway ([`Self::set_armed`]), so it is not rung at all.
/// The flags only ever err towards a readable fd (a spurious wakeup, never
/// a lost one): a consumer clears, then looks at its queue once more.
#[derive(Debug)]
pub struct Doorbell {
    fd: OwnedFd,
    /// The counter may be non-zero.
    rung: AtomicBool,
    /// The consumer wants to be woken (default).
    armed: AtomicBool,
}

impl Doorbell {
    /// A new doorbell, not rung, armed.
    pub fn new() -> io::Result<Self> {
        // SAFETY: eventfd takes no pointers; a negative result is an error.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self {
            // SAFETY: `fd` was just created and nothing else owns it.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            rung: AtomicBool::new(false),
            armed: AtomicBool::new(true),
        })
    }

    /// Something arrived: makes the fd readable, unless it is already rung
    /// or the consumer is not armed.
    pub fn ring(&self) {
        if self.armed.load(Ordering::SeqCst) && !self.rung.swap(true, Ordering::SeqCst) {
            self.write_one();
        }
    }

    fn write_one(&self) {
        let one = 1u64.to_ne_bytes();
        // SAFETY: writes 8 bytes from a valid local array; the fd is owned.
        let _ = unsafe { libc::write(self.fd.as_raw_fd(), one.as_ptr().cast(), one.len()) };
    }

    /// The consumer found nothing: the fd stops being readable (if it was
    /// rung). The consumer looks at its queue once more afterwards.
    pub fn clear(&self) {
        if !self.rung.swap(false, Ordering::SeqCst) {
            return;
        }
        let mut v = [0u8; 8];
        // SAFETY: reads at most 8 bytes into a valid local array; a
        // non-blocking read of a zero counter fails with EAGAIN, harmlessly.
        let _ = unsafe { libc::read(self.fd.as_raw_fd(), v.as_mut_ptr().cast(), v.len()) };
    }

    /// Arms (the consumer may sleep on the fd: `waiting` says whether
    /// something is already queued, which rings at once) or disarms (the
    /// consumer polls its queue; nothing rings).
    pub fn set_armed(&self, armed: bool, waiting: bool) {
        self.armed.store(armed, Ordering::SeqCst);
        if armed && waiting {
            self.ring();
        }
    }

    /// The fd to wait on.
    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn readable(fd: RawFd) -> bool {
        crate::console::sys::poll_readable_raw(fd).unwrap_or(false)
    }

    #[test]
    fn ring_and_clear() {
        let d = Doorbell::new().unwrap();
        assert!(!readable(d.fd()));
        d.ring();
        d.ring();
        assert!(readable(d.fd()));
        d.clear();
        assert!(!readable(d.fd()));
        d.clear();
        // Disarmed: nothing rings; armed with something waiting: rung.
        d.set_armed(false, false);
        d.ring();
        assert!(!readable(d.fd()));
        d.set_armed(true, true);
        assert!(readable(d.fd()));
        d.clear();
        d.set_armed(true, false);
        assert!(!readable(d.fd()));
    }
}
