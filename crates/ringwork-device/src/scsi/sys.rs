//! The SCSI device's operating-system calls that `std` does not wrap:
//! `eventfd(2)` (the hot-plug wake-up) and `fallocate(2)` hole punching
//! (UNMAP). This is the only module of the SCSI device with `unsafe`
//! code; each block says why it is sound.
//!
//! Panic contract: nothing here panics; every failure is an
//! [`std::io::Error`].

#![allow(unsafe_code)]

use std::fs::File;
use std::io::{self, ErrorKind, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// A non-blocking eventfd: readable while it was signalled and not
/// drained.
#[derive(Debug)]
pub(super) struct EventFd(File);

impl EventFd {
    /// A new, close-on-exec, non-blocking eventfd with counter 0.
    pub(super) fn new() -> io::Result<Self> {
        // SAFETY: eventfd takes an initial value and flags and returns a
        // new fd that nothing else owns, or -1.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just created and is owned by nobody else.
        Ok(Self(File::from(unsafe { OwnedFd::from_raw_fd(fd) })))
    }

    /// The fd to watch.
    pub(super) fn fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }

    /// Makes the fd readable (adds 1 to the counter; a saturated counter
    /// is as readable as 1, so `EAGAIN` is ignored).
    pub(super) fn signal(&self) {
        let _ = (&self.0).write(&1u64.to_ne_bytes());
    }

    /// Resets the counter; `true` when it was signalled.
    pub(super) fn drain(&self) -> bool {
        let mut b = [0u8; 8];
        loop {
            match (&self.0).read(&mut b) {
                Ok(_) => return true,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return false,
            }
        }
    }
}

/// Deallocates `len` bytes at `offset` of `file`, keeping its size
/// (`FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE`); the range then reads as
/// zeroes.
pub(super) fn punch_hole(file: &File, offset: u64, len: u64) -> io::Result<()> {
    let off =
        libc::off_t::try_from(offset).map_err(|_| io::Error::from_raw_os_error(libc::EOVERFLOW))?;
    let len =
        libc::off_t::try_from(len).map_err(|_| io::Error::from_raw_os_error(libc::EOVERFLOW))?;
    let mode = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
    loop {
        // SAFETY: a system call on an open descriptor (borrowed from
        // `file` for the call); no memory is passed.
        let r = unsafe { libc::fallocate(file.as_raw_fd(), mode, off, len) };
        if r == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eventfd_signal_and_drain() {
        let e = EventFd::new().unwrap();
        assert!(!e.drain());
        e.signal();
        e.signal();
        assert!(e.drain());
        assert!(!e.drain());
        assert!(e.fd() >= 0);
    }
}
