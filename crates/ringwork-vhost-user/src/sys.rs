//! The operating-system pieces: eventfds, epoll, memfds, and unix-socket
//! messages with file descriptors (SCM_RIGHTS).
//!
//! Trust and panic contract: received control messages are parsed by the
//! kernel's CMSG layout; every received descriptor is wrapped in an
//! [`OwnedFd`] at once (so none leaks, even when the message is then
//! refused), and a truncated control buffer is reported as an error.
//! Nothing here panics.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

/// Most file descriptors one vhost-user message carries (the protocol's
/// limit is 8 for memory tables; a little headroom detects abuse).
pub const MAX_FDS: usize = 32;

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// A Linux eventfd.
#[derive(Debug)]
pub struct EventFd(OwnedFd);

impl EventFd {
    /// A new non-blocking, close-on-exec eventfd.
    pub fn new() -> io::Result<Self> {
        // SAFETY: eventfd takes no pointers; the result is checked.
        let fd = cvt(unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) })?;
        // SAFETY: `fd` is a fresh descriptor we exclusively own.
        Ok(Self(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Wraps a descriptor the peer sent. It is not checked: frontends send
    /// eventfds, but User-Mode Linux's call descriptor is not one (it needs
    /// SIGIO, which eventfds do not raise), so other kinds are served too.
    /// The backend makes it non-blocking first. Hazards a hostile frontend
    /// can cause with a pipe or socket: a write after its
    /// reader went away raises SIGPIPE (a process serving vhost-user must
    /// ignore SIGPIPE; the `ringwork` binary does, as Rust programs do by
    /// default), and one at end of file stays readable: [`Self::drain`]
    /// reports that as an error, and a worker that sees it on a kick
    /// descriptor stops watching it instead of waking without end.
    pub fn from_owned(fd: OwnedFd) -> Self {
        Self(fd)
    }

    /// Adds 1 to the counter (wakes the reader).
    pub fn signal(&self) -> io::Result<()> {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a valid local u64.
        let r = unsafe {
            libc::write(
                self.0.as_raw_fd(),
                (&one as *const u64).cast(),
                core::mem::size_of::<u64>(),
            )
        };
        if r == 8 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        // A saturated counter (EAGAIN) already means "signalled".
        if r < 0 && e.kind() == io::ErrorKind::WouldBlock {
            return Ok(());
        }
        Err(e)
    }

    /// Reads and clears the counter; `Ok(0)` when it was zero (the fd is
    /// non-blocking) or when a descriptor of another kind gave fewer than 8
    /// bytes. A descriptor at end of file (a pipe or socket whose writer
    /// is gone, which stays readable for ever) gives an error of kind
    /// [`io::ErrorKind::UnexpectedEof`].
    pub fn drain(&self) -> io::Result<u64> {
        let mut v: u64 = 0;
        // SAFETY: reads at most 8 bytes into a valid local u64.
        let r = unsafe {
            libc::read(
                self.0.as_raw_fd(),
                (&mut v as *mut u64).cast(),
                core::mem::size_of::<u64>(),
            )
        };
        if r == 8 {
            return Ok(v);
        }
        let e = io::Error::last_os_error();
        if r < 0 && e.kind() == io::ErrorKind::WouldBlock {
            return Ok(0);
        }
        if r == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "end of file on a notification descriptor",
            ));
        }
        if r > 0 {
            return Ok(0);
        }
        Err(e)
    }
}

impl AsRawFd for EventFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

impl AsFd for EventFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

/// Makes a descriptor non-blocking (peer-sent kick fds may be blocking).
pub fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: fcntl on a valid descriptor with integer arguments.
    let flags = cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) })?;
    // SAFETY: as above.
    cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) })?;
    Ok(())
}

/// An epoll instance (level-triggered).
#[derive(Debug)]
pub struct Epoll(OwnedFd);

impl Epoll {
    /// A new close-on-exec epoll instance.
    pub fn new() -> io::Result<Self> {
        // SAFETY: no pointers; result checked.
        let fd = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        // SAFETY: a fresh descriptor we own.
        Ok(Self(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Watches `fd` for readability, reporting `token`. Adding an fd that
    /// is already watched updates its token.
    pub fn add(&self, fd: RawFd, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: token,
        };
        // SAFETY: `ev` is a valid epoll_event for the duration of the call.
        let r = unsafe { libc::epoll_ctl(self.0.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) };
        if r < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EEXIST) {
            // SAFETY: as above.
            cvt(unsafe { libc::epoll_ctl(self.0.as_raw_fd(), libc::EPOLL_CTL_MOD, fd, &mut ev) })?;
            return Ok(());
        }
        cvt(r).map(drop)
    }

    /// Stops watching `fd` (no error if it was not watched).
    pub fn remove(&self, fd: RawFd) {
        let mut ev = libc::epoll_event { events: 0, u64: 0 };
        // SAFETY: `ev` is valid (ignored by DEL on modern kernels).
        unsafe { libc::epoll_ctl(self.0.as_raw_fd(), libc::EPOLL_CTL_DEL, fd, &mut ev) };
    }

    /// Waits up to `timeout_ms` (-1: forever) and returns the tokens of
    /// ready descriptors in `out` (cleared first).
    pub fn wait(&self, out: &mut Vec<u64>, timeout_ms: i32) -> io::Result<()> {
        out.clear();
        let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 32];
        // SAFETY: the kernel writes at most `evs.len()` entries into `evs`.
        let n = unsafe {
            libc::epoll_wait(
                self.0.as_raw_fd(),
                evs.as_mut_ptr(),
                evs.len() as libc::c_int,
                timeout_ms,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                return Ok(());
            }
            return Err(e);
        }
        out.extend(evs[..n as usize].iter().map(|e| e.u64));
        Ok(())
    }
}

/// A sealed-size memfd of `len` bytes (for the inflight region).
pub fn memfd(name: &core::ffi::CStr, len: u64) -> io::Result<OwnedFd> {
    // SAFETY: `name` is a valid NUL-terminated string.
    let fd = cvt(unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) })?;
    // SAFETY: a fresh descriptor we own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let len = libc::off_t::try_from(len)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "memfd too large"))?;
    // SAFETY: ftruncate on our own descriptor.
    cvt(unsafe { libc::ftruncate(fd.as_raw_fd(), len) })?;
    Ok(fd)
}

/// Receives one datagram-like chunk of up to `buf.len()` bytes with any
/// descriptors attached (appended to `fds`). Returns the byte count (0 at
/// end of stream). Descriptors beyond [`MAX_FDS`] or a truncated control
/// message are an error (the ones received are still closed properly).
pub fn recv_with_fds(
    sock: &UnixStream,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
) -> io::Result<usize> {
    const CMSG_SPACE: usize = 256; // >= CMSG_SPACE(MAX_FDS * 4)
    #[repr(C, align(8))]
    struct Cmsg([u8; CMSG_SPACE]);
    let mut cbuf = Cmsg([0; CMSG_SPACE]);
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: msghdr is plain data; zeroed is a valid initial value.
    let mut msg: libc::msghdr = unsafe { core::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.0.as_mut_ptr().cast();
    msg.msg_controllen = CMSG_SPACE as _;
    let n = loop {
        // SAFETY: `msg` points at `iov` (our `buf`) and `cbuf`, both valid
        // and writable for their stated lengths during the call.
        let n = unsafe {
            libc::recvmsg(
                sock.as_raw_fd(),
                &mut msg,
                libc::MSG_CMSG_CLOEXEC | libc::MSG_WAITALL,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        break n as usize;
    };
    let mut too_many = false;
    // SAFETY: CMSG_FIRSTHDR/NXTHDR walk the control buffer the kernel
    // filled, bounded by msg_controllen.
    let mut c = unsafe { libc::CMSG_FIRSTHDR(&msg) };
    while !c.is_null() {
        // SAFETY: `c` is a valid cmsghdr inside `cbuf` (from CMSG_*HDR).
        let hdr = unsafe { &*c };
        if hdr.cmsg_level == libc::SOL_SOCKET && hdr.cmsg_type == libc::SCM_RIGHTS {
            // SAFETY: CMSG_LEN(0) is a pure computation.
            let header_len = unsafe { libc::CMSG_LEN(0) } as usize;
            let data_len = (hdr.cmsg_len as usize).saturating_sub(header_len);
            let count = data_len / core::mem::size_of::<RawFd>();
            // SAFETY: CMSG_DATA points at `data_len` bytes inside `cbuf`.
            let data = unsafe { libc::CMSG_DATA(c) }.cast::<RawFd>();
            for i in 0..count {
                // SAFETY: `i < count`, inside the cmsg data; unaligned read
                // because CMSG_DATA alignment is only guaranteed for cmsghdr.
                let fd = unsafe { data.add(i).read_unaligned() };
                if fd >= 0 {
                    // SAFETY: the kernel installed this descriptor for us
                    // (SCM_RIGHTS); we are its only owner.
                    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
                    if fds.len() < MAX_FDS {
                        fds.push(owned);
                    } else {
                        too_many = true; // dropped (closed) here
                    }
                }
            }
        }
        // SAFETY: as for CMSG_FIRSTHDR.
        c = unsafe { libc::CMSG_NXTHDR(&msg, c) };
    }
    if msg.msg_flags & libc::MSG_CTRUNC != 0 || too_many {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "too many file descriptors in one message",
        ));
    }
    Ok(n)
}

/// Sends `buf` with `fds` attached (SCM_RIGHTS when non-empty).
pub fn send_with_fds(sock: &UnixStream, buf: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    if fds.len() > MAX_FDS {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "too many fds"));
    }
    const CMSG_SPACE: usize = 256;
    #[repr(C, align(8))]
    struct Cmsg([u8; CMSG_SPACE]);
    let mut cbuf = Cmsg([0; CMSG_SPACE]);
    let mut iov = libc::iovec {
        iov_base: buf.as_ptr() as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // SAFETY: msghdr is plain data; zeroed is a valid initial value.
    let mut msg: libc::msghdr = unsafe { core::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !fds.is_empty() {
        let bytes = core::mem::size_of_val(fds) as u32;
        // SAFETY: pure computation.
        let space = unsafe { libc::CMSG_SPACE(bytes) } as usize;
        msg.msg_control = cbuf.0.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        // SAFETY: the control buffer is `space <= CMSG_SPACE` bytes, so the
        // first header and its data fit.
        unsafe {
            let c = libc::CMSG_FIRSTHDR(&msg);
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = libc::CMSG_LEN(bytes) as _;
            let data = libc::CMSG_DATA(c).cast::<RawFd>();
            for (i, fd) in fds.iter().enumerate() {
                data.add(i).write_unaligned(fd.as_raw_fd());
            }
        }
    }
    let mut sent = 0;
    while sent < buf.len() {
        // SAFETY: `msg` points at valid buffers for the call.
        let n = unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        sent += n as usize;
        if sent < buf.len() {
            // Partial write: send the rest without descriptors.
            iov.iov_base = buf[sent..].as_ptr() as *mut libc::c_void;
            iov.iov_len = buf.len() - sent;
            msg.msg_iov = &mut iov;
            msg.msg_control = core::ptr::null_mut();
            msg.msg_controllen = 0;
        }
    }
    Ok(())
}

/// Waits until `a` or `b` is readable (or hung up); returns `(a_ready,
/// b_ready)`.
pub fn poll2(a: BorrowedFd<'_>, b: BorrowedFd<'_>) -> io::Result<(bool, bool)> {
    let mut fds = [
        libc::pollfd {
            fd: a.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: b.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    loop {
        // SAFETY: `fds` is a valid array of two pollfd for the call.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        return Ok((fds[0].revents != 0, fds[1].revents != 0));
    }
}

/// Waits up to `timeout_ms` (-1: forever) until one of `fds` is readable
/// or hung up; returns which are (all false on timeout).
pub fn poll_fds(fds: &[BorrowedFd<'_>], timeout_ms: i32) -> io::Result<Vec<bool>> {
    let mut p: Vec<libc::pollfd> = fds
        .iter()
        .map(|f| libc::pollfd {
            fd: f.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    loop {
        // SAFETY: `p` is a valid array of `p.len()` pollfd for the call.
        let n = unsafe { libc::poll(p.as_mut_ptr(), p.len() as libc::nfds_t, timeout_ms) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        return Ok(p.iter().map(|x| x.revents != 0).collect());
    }
}

/// Whether the peer of a connected socket closed it (or it failed): a
/// non-blocking peek that sees end of file or an error other than "no data".
pub fn peer_closed(sock: &UnixStream) -> bool {
    let mut b = 0u8;
    // SAFETY: recv writes at most 1 byte into a valid local.
    let n = unsafe {
        libc::recv(
            sock.as_raw_fd(),
            (&mut b as *mut u8).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    if n == 0 {
        return true;
    }
    n < 0 && io::Error::last_os_error().kind() != io::ErrorKind::WouldBlock
}

static SHUTDOWN_FD: core::sync::atomic::AtomicI32 = core::sync::atomic::AtomicI32::new(-1);

extern "C" fn on_shutdown_signal(_sig: libc::c_int) {
    let fd = SHUTDOWN_FD.load(core::sync::atomic::Ordering::SeqCst);
    if fd >= 0 {
        let one: u64 = 1;
        // SAFETY: write(2) is async-signal-safe; it reads 8 bytes from a
        // valid local.
        unsafe { libc::write(fd, (&one as *const u64).cast(), 8) };
    }
}

/// Makes SIGTERM, SIGINT and SIGHUP signal `fd` (an eventfd that lives for
/// the rest of the process) instead of killing the process.
pub fn signal_on_termination(fd: &'static EventFd) -> io::Result<()> {
    SHUTDOWN_FD.store(fd.as_raw_fd(), core::sync::atomic::Ordering::SeqCst);
    for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
        // SAFETY: sigaction is plain data; zeroed is a valid start.
        let mut sa: libc::sigaction = unsafe { core::mem::zeroed() };
        sa.sa_sigaction = on_shutdown_signal as *const () as usize;
        sa.sa_flags = libc::SA_RESTART;
        // SAFETY: installs an async-signal-safe handler; `sa` is valid.
        cvt(unsafe { libc::sigaction(sig, &sa, core::ptr::null_mut()) })?;
    }
    Ok(())
}

/// Whether `fd` is a listening socket.
pub fn is_listening(fd: BorrowedFd<'_>) -> io::Result<bool> {
    let mut v: libc::c_int = 0;
    let mut len = core::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `v` and `len` are valid for the call.
    cvt(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ACCEPTCONN,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        )
    })?;
    Ok(v != 0)
}
