//! The console's operating-system calls that `std` does not wrap: `poll`,
//! `epoll`, `fcntl(O_NONBLOCK)`, pseudo-terminals and terminal window
//! sizes. This is the only module of the console with `unsafe` code; each
//! block says why it is sound.
//!
//! Panic contract: nothing here panics; every failure is an
//! [`std::io::Error`] (or `None` for "not a terminal").

#![allow(unsafe_code)]

use std::ffi::CStr;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use super::options::WindowSize;

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Whether a read from `fd` would not block now (data, end of file, or an
/// error to report): `poll(2)` with a zero timeout.
pub(crate) fn poll_readable(fd: BorrowedFd<'_>) -> io::Result<bool> {
    poll_readable_raw(fd.as_raw_fd())
}

/// [`poll_readable`] on a raw descriptor (for tests holding one; a closed
/// or foreign number only makes `poll` report POLLNVAL, which reads as not
/// readable).
pub(crate) fn poll_readable_raw(fd: RawFd) -> io::Result<bool> {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    loop {
        // SAFETY: `p` is one valid, exclusively borrowed pollfd and we pass
        // a count of 1; `poll` only reads the descriptor number.
        let r = unsafe { libc::poll(&mut p, 1, 0) };
        match cvt(r) {
            Ok(0) => return Ok(false),
            Ok(_) => return Ok(p.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Puts `fd` in non-blocking mode (`O_NONBLOCK`, which is shared by every
/// duplicate of the file description).
pub(super) fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: F_GETFL takes no pointer argument; the fd is borrowed, so it
    // is open for the call.
    let flags = cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) })?;
    if flags & libc::O_NONBLOCK == 0 {
        // SAFETY: F_SETFL takes an integer argument; the fd is open.
        cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) })?;
    }
    Ok(())
}

/// An epoll instance (level-triggered registrations).
#[derive(Debug)]
pub(super) struct Epoll(OwnedFd);

impl Epoll {
    /// A new, close-on-exec epoll instance.
    pub(super) fn new() -> io::Result<Self> {
        // SAFETY: epoll_create1 takes only flags; on success it returns a
        // new fd that nothing else owns, which we wrap at once.
        let fd = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        // SAFETY: `fd` was just created and is owned by nobody else.
        Ok(Self(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// The epoll fd: readable while a registered fd is ready.
    pub(super) fn fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, events: u32) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events,
            u64: fd as u64,
        };
        // SAFETY: `ev` is a valid epoll_event that outlives the call (the
        // kernel copies it); a stale or invalid `fd` only makes the call
        // fail with EBADF/ENOENT.
        cvt(unsafe { libc::epoll_ctl(self.0.as_raw_fd(), op, fd, &mut ev) }).map(drop)
    }

    /// Registers `fd` for `events`.
    pub(super) fn add(&self, fd: RawFd, events: u32) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd, events)
    }

    /// Changes the events of a registered `fd`.
    pub(super) fn modify(&self, fd: RawFd, events: u32) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_MOD, fd, events)
    }

    /// Unregisters `fd`.
    pub(super) fn delete(&self, fd: RawFd) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_DEL, fd, 0)
    }
}

/// `EPOLLIN` as the `u32` epoll_event wants.
pub(super) const EPOLLIN: u32 = libc::EPOLLIN as u32;
/// `EPOLLOUT` as the `u32` epoll_event wants.
pub(super) const EPOLLOUT: u32 = libc::EPOLLOUT as u32;

/// A pseudo-terminal pair: the master (the device's end) and the slave
/// (which the device keeps open so that the master never reports a hang-up
/// while no host program has the slave open).
#[derive(Debug)]
pub(super) struct Pty {
    /// The master side, non-blocking.
    pub master: File,
    /// The slave side, in raw mode; only held open.
    #[allow(dead_code)]
    pub slave: File,
    /// The slave's path (`/dev/pts/N`).
    pub path: PathBuf,
}

/// Opens a pseudo-terminal (`posix_openpt`, `grantpt`, `unlockpt`,
/// `ptsname_r`, the portable spelling of `openpty`), puts the slave in raw
/// mode (so the line discipline neither echoes the guest's output back nor
/// rewrites it) and sets the window size if given.
pub(super) fn open_pty(size: Option<WindowSize>) -> io::Result<Pty> {
    let flags = libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC;
    // SAFETY: posix_openpt takes only flags and returns a new fd owned by
    // nobody else, which we wrap at once.
    let raw = cvt(unsafe { libc::posix_openpt(flags) })?;
    // SAFETY: `raw` was just created and is owned by nobody else.
    let master = File::from(unsafe { OwnedFd::from_raw_fd(raw) });
    let m = master.as_raw_fd();
    // SAFETY: grantpt/unlockpt take an open master fd and no pointers.
    cvt(unsafe { libc::grantpt(m) })?;
    // SAFETY: as above.
    cvt(unsafe { libc::unlockpt(m) })?;
    let mut name = [0 as libc::c_char; 128];
    // SAFETY: `name` is a writable buffer of exactly the length we pass;
    // ptsname_r NUL-terminates within it or fails with ERANGE.
    let r = unsafe { libc::ptsname_r(m, name.as_mut_ptr(), name.len()) };
    if r != 0 {
        return Err(io::Error::from_raw_os_error(r));
    }
    // SAFETY: ptsname_r succeeded, so `name` holds a NUL-terminated string
    // inside the buffer, which lives for this borrow.
    let path = unsafe { CStr::from_ptr(name.as_ptr()) };
    let path = PathBuf::from(path.to_string_lossy().into_owned());
    let slave = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open(&path)?;
    make_raw(&slave)?;
    if let Some(size) = size {
        set_window_size(&master, size)?;
    }
    set_nonblocking(std::os::fd::AsFd::as_fd(&master))?;
    Ok(Pty {
        master,
        slave,
        path,
    })
}

fn make_raw(tty: &File) -> io::Result<()> {
    // SAFETY: termios is plain data (integers and arrays); all-zero is a
    // valid value, and tcgetattr overwrites it before use.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: `t` is a valid, exclusively borrowed termios; the fd is open.
    cvt(unsafe { libc::tcgetattr(tty.as_raw_fd(), &mut t) })?;
    // SAFETY: cfmakeraw only rewrites the fields of the termios it is given.
    unsafe { libc::cfmakeraw(&mut t) };
    // SAFETY: `t` is a valid termios read back from this terminal.
    cvt(unsafe { libc::tcsetattr(tty.as_raw_fd(), libc::TCSANOW, &t) }).map(drop)
}

fn set_window_size(tty: &File, size: WindowSize) -> io::Result<()> {
    let ws = libc::winsize {
        ws_row: size.rows,
        ws_col: size.cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize from the pointer, which points
    // to a valid local; the fd is open.
    cvt(unsafe { libc::ioctl(tty.as_raw_fd(), libc::TIOCSWINSZ, &ws) }).map(drop)
}

/// The window size of the terminal `fd` refers to; `None` when it is not a
/// terminal or reports a zero size.
pub(super) fn window_size(fd: BorrowedFd<'_>) -> Option<WindowSize> {
    // SAFETY: winsize is plain integers; all-zero is valid.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ writes one winsize through the pointer, which
    // points to a valid, exclusively borrowed local; the fd is borrowed.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) };
    if r < 0 || ws.ws_col == 0 || ws.ws_row == 0 {
        return None;
    }
    Some(WindowSize {
        cols: ws.ws_col,
        rows: ws.ws_row,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::fd::AsFd;

    #[test]
    fn pty_round_trip_and_size() {
        let mut pty = open_pty(Some(WindowSize {
            cols: 100,
            rows: 30,
        }))
        .unwrap();
        assert!(pty.path.starts_with("/dev/pts"));
        assert_eq!(
            window_size(pty.master.as_fd()),
            Some(WindowSize {
                cols: 100,
                rows: 30
            })
        );
        pty.slave.write_all(b"hi\n").unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 16];
        for _ in 0..1000 {
            if got.len() >= 3 {
                break;
            }
            if poll_readable(pty.master.as_fd()).unwrap() {
                let n = pty.master.read(&mut buf).unwrap();
                got.extend_from_slice(&buf[..n]);
            } else {
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
        }
        // Raw mode: no "\n" → "\r\n" rewriting.
        assert_eq!(got, b"hi\n");
    }
}
