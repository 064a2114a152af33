//! The one operating-system object the network device needs that `std`
//! does not wrap: an eventfd, the doorbell a backend rings when frames
//! wait for a receive queue. This is the only module of the network
//! device with `unsafe` code; each block says why it is sound.
//!
//! Panic contract: nothing here panics; failures are [`std::io::Error`]s.

#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// A non-blocking Linux eventfd: readable while its counter is non-zero.
#[derive(Debug)]
pub struct Doorbell(OwnedFd);

impl Doorbell {
    /// A new doorbell, not rung.
    pub fn new() -> io::Result<Self> {
        // SAFETY: eventfd takes no pointers; a negative result is an error.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just created and nothing else owns it.
        Ok(Self(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Makes the fd readable (a saturated counter already is).
    pub fn ring(&self) {
        let one = 1u64.to_ne_bytes();
        // SAFETY: writes 8 bytes from a valid local array; the fd is owned.
        let _ = unsafe { libc::write(self.0.as_raw_fd(), one.as_ptr().cast(), one.len()) };
    }

    /// Clears the counter (the fd stops being readable).
    pub fn clear(&self) {
        let mut v = [0u8; 8];
        // SAFETY: reads at most 8 bytes into a valid local array; a
        // non-blocking read of a zero counter fails with EAGAIN, harmlessly.
        let _ = unsafe { libc::read(self.0.as_raw_fd(), v.as_mut_ptr().cast(), v.len()) };
    }

    /// The fd to wait on.
    pub fn fd(&self) -> RawFd {
        self.0.as_raw_fd()
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
    }
}
