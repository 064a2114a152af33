//! A hostile vhost-user frontend against our backend
//! (`ringwork_vhost_user::backend::Connection`) serving an entropy,
//! network (loopback, two queue pairs) or block device, over a socket
//! pair in-process.
//!
//! Input layout: byte 0 picks the device (0 entropy, 1 network, 2 block);
//! then messages until the input runs out, each:
//! - a request code byte (taken modulo 64, so unknown codes come too);
//! - a flags byte: bit 0 asks for a reply (NEED_REPLY);
//! - a little-endian u16 payload length (modulo 512) and that many bytes
//!   (short input is padded with zeroes);
//! - an fd byte: bits 0-1 attach that many memfds of 1 MiB, bit 3 one end
//!   of a socket pair (a backend-request channel), bit 2 an eventfd (in
//!   that order).
//!
//! Each message is sent with `Frontend::send_raw` (well-formed header,
//! payload of the stated size) and handled with `Connection::handle_one`;
//! a protocol error ends the session, as the server does. The backend must
//! never panic or hang, whatever it is sent; replies are drained as they
//! come.
#![no_main]

use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use ringwork_device::blk::{Blk, BlkOptions};
use ringwork_device::model::Device;
use ringwork_device::net::{Loopback, MacAddr, Net, NetOptions};
use ringwork_device::rng::Rng;
use ringwork_vhost_user::backend::Connection;
use ringwork_vhost_user::frontend::Frontend;
use ringwork_vhost_user::msg::{Request, FLAG_NEED_REPLY};
use ringwork_vhost_user::sys::{memfd, EventFd};

/// A 1 MiB disk image for the block device, made once per process.
fn image() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let base = if std::path::Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let p = base.join(format!("ringwork-fuzz-be-{}.img", std::process::id()));
        let f = std::fs::File::create(&p).expect("image");
        f.set_len(1 << 20).expect("image size");
        p
    })
    .clone()
}

/// Reads the input front to back; past the end it yields zeroes.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let take = n.min(self.0.len());
        let mut v = self.0[..take].to_vec();
        self.0 = &self.0[take..];
        v.resize(n, 0);
        v
    }
}

fn device(kind: u8) -> Option<Arc<dyn Device>> {
    Some(match kind % 3 {
        0 => Arc::new(Rng::new()),
        1 => Arc::new(
            Net::new(
                NetOptions {
                    queue_pairs: 2,
                    ..NetOptions::new(MacAddr([0x52, 0x54, 0, 0x12, 0x34, 0x56]))
                },
                Arc::new(Loopback::new(2).ok()?),
            )
            .ok()?,
        ),
        _ => Arc::new(Blk::open(BlkOptions::new(image())).ok()?),
    })
}

/// Reads whatever replies are waiting (the socket is non-blocking).
fn drain(sock: &mut UnixStream) {
    let mut buf = [0u8; 4096];
    while matches!(sock.read(&mut buf), Ok(n) if n > 0) {}
}

fuzz_target!(|data: &[u8]| {
    // As the `ringwork` binary does (Rust's default for programs; a libFuzzer
    // target has no Rust `main`): a socket sent as a call descriptor whose
    // other end is gone must give EPIPE, not kill the process.
    static SIGPIPE_IGNORED: std::sync::Once = std::sync::Once::new();
    // SAFETY: setting a signal's disposition to SIG_IGN installs no handler
    // code and touches no memory of ours.
    SIGPIPE_IGNORED.call_once(|| unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    });
    let mut input = Input(data);
    let Some(dev) = device(input.u8()) else {
        return;
    };
    let Ok((ours, theirs)) = UnixStream::pair() else {
        return;
    };
    let Ok(mut replies) = ours.try_clone() else {
        return;
    };
    replies.set_nonblocking(true).expect("non-blocking");
    let fe = Frontend::from_stream(ours);
    let Ok(mut conn) = Connection::new(dev, theirs) else {
        return;
    };
    while !input.0.is_empty() {
        let request = Request(u32::from(input.u8() % 64));
        let flags = if input.u8() & 1 != 0 {
            FLAG_NEED_REPLY
        } else {
            0
        };
        let len = usize::from(u16::from_le_bytes([input.u8(), input.u8()]) % 512);
        let payload = input.bytes(len);
        let fd_spec = input.u8();
        let mut owned: Vec<OwnedFd> = Vec::new();
        for _ in 0..(fd_spec & 3) {
            if let Ok(m) = memfd(c"ringwork-fuzz", 1 << 20) {
                owned.push(m);
            }
        }
        let event = (fd_spec & 4 != 0).then(EventFd::new).and_then(Result::ok);
        let mut peer = None;
        if fd_spec & 8 != 0 {
            if let Ok((a, b)) = UnixStream::pair() {
                owned.push(a.into());
                peer = Some(b);
            }
        }
        let fds: Vec<BorrowedFd<'_>> = owned
            .iter()
            .map(|f| f.as_fd())
            .chain(event.iter().map(|e| e.as_fd()))
            .collect();
        if fe.send_raw(request, flags, &payload, &fds).is_err() {
            break;
        }
        drop((owned, event));
        let r = conn.handle_one();
        drain(&mut replies);
        if let Some(mut p) = peer {
            let _ = p.set_nonblocking(true);
            drain(&mut p);
        }
        if !matches!(r, Ok(true)) {
            break;
        }
    }
    drop(conn);
});
