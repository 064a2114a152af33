//! The Linux tun/tap interface the [`Tap`](super::Tap) backend needs and
//! `std` does not wrap: attaching a `/dev/net/tun` file to a tap
//! interface (`TUNSETIFF`, creating the interface when absent), the
//! virtio-net header size and byte order (`TUNSETVNETHDRSZ`,
//! `TUNSETVNETLE`), the offloads the kernel may hand over
//! (`TUNSETOFFLOAD`), and attaching or detaching one queue of a
//! multiqueue tap (`TUNSETQUEUE`). Reading and writing frames is plain
//! `std` file I/O. These ioctls are the only `unsafe` code of the tap
//! backend; each block says why it is sound.
//!
//! Panic contract: nothing here panics; failures are
//! [`std::io::Error`]s.

#![allow(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;

/// Longest interface name plus its NUL (`IFNAMSIZ`).
pub(super) const IFNAMSIZ: usize = 16;
/// The virtio-net header size set on every queue (`virtio_net_hdr_v1`,
/// with `num_buffers`).
pub(super) const VNET_HDR_LEN: usize = 12;

/// `struct ifreq` as the tun ioctls use it: the name and the flags (the
/// union is 24 bytes on 64-bit Linux, 16 on 32-bit; the larger size is
/// always enough, since the kernel copies `sizeof(struct ifreq)`).
#[repr(C)]
struct IfReq {
    name: [u8; IFNAMSIZ],
    flags: libc::c_short,
    _rest: [u8; 22],
}

impl IfReq {
    fn new(name: &str, flags: libc::c_int) -> Self {
        let mut r = IfReq {
            name: [0; IFNAMSIZ],
            flags: flags as libc::c_short,
            _rest: [0; 22],
        };
        let n = name.len().min(IFNAMSIZ - 1);
        r.name[..n].copy_from_slice(&name.as_bytes()[..n]);
        r
    }

    fn name(&self) -> String {
        let end = self.name.iter().position(|&b| b == 0).unwrap_or(IFNAMSIZ);
        String::from_utf8_lossy(&self.name[..end]).into_owned()
    }
}

fn check(r: libc::c_int) -> io::Result<()> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Opens `/dev/net/tun` (non-blocking, close-on-exec) and attaches it to
/// tap `name` with `IFF_TAP | IFF_NO_PI | IFF_VNET_HDR`, plus
/// `IFF_MULTI_QUEUE` when `multi_queue`; the kernel creates the interface
/// when it does not exist (CAP_NET_ADMIN needed). Returns the file and
/// the interface's name as the kernel has it.
pub(super) fn open_queue(name: &str, multi_queue: bool) -> io::Result<(File, String)> {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open("/dev/net/tun")?;
    let mut flags = libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR;
    if multi_queue {
        flags |= libc::IFF_MULTI_QUEUE;
    }
    let mut req = IfReq::new(name, flags);
    // SAFETY: TUNSETIFF reads and writes one `struct ifreq`; `req` is a
    // live, writable `#[repr(C)]` value at least that large, and `f` is an
    // open tun file owned here.
    check(unsafe { libc::ioctl(f.as_raw_fd(), libc::TUNSETIFF, &mut req as *mut IfReq) })?;
    Ok((f, req.name()))
}

/// Sets the virtio-net header size the queue reads and writes, and its
/// byte order to little-endian (VIRTIO 1.x; `TUNSETVNETLE` is refused by
/// kernels without cross-endian support, where the host's little-endian
/// order is already used, so its failure is ignored on little-endian
/// hosts).
pub(super) fn set_vnet_hdr(f: &File, len: usize) -> io::Result<()> {
    let mut size = len as libc::c_int;
    // SAFETY: TUNSETVNETHDRSZ reads one `int` through the pointer, which
    // points at a live local; `f` is an open tun file.
    check(unsafe {
        libc::ioctl(
            f.as_raw_fd(),
            libc::TUNSETVNETHDRSZ,
            &mut size as *mut libc::c_int,
        )
    })?;
    let mut le: libc::c_int = 1;
    // SAFETY: TUNSETVNETLE reads one `int` through the pointer, which
    // points at a live local; `f` is an open tun file.
    let r = check(unsafe {
        libc::ioctl(
            f.as_raw_fd(),
            libc::TUNSETVNETLE,
            &mut le as *mut libc::c_int,
        )
    });
    if cfg!(target_endian = "big") {
        r?;
    }
    Ok(())
}

/// `TUNSETOFFLOAD`: the `TUN_F_*` offloads the kernel may leave to this
/// side in frames it hands over (a partial checksum, GSO types). Refused
/// (`EINVAL`) when the kernel does not know a bit.
pub(super) fn set_offload(f: &File, tun_flags: libc::c_uint) -> io::Result<()> {
    // SAFETY: TUNSETOFFLOAD takes its argument by value (no memory is
    // accessed through it); `f` is an open tun file.
    check(unsafe {
        libc::ioctl(
            f.as_raw_fd(),
            libc::TUNSETOFFLOAD,
            libc::c_ulong::from(tun_flags),
        )
    })
}

/// `TUNSETQUEUE`: attaches (`IFF_ATTACH_QUEUE`) or detaches
/// (`IFF_DETACH_QUEUE`) this queue of a multiqueue tap. A detached queue
/// gets no frames and its reads and writes fail.
pub(super) fn set_queue(f: &File, attach: bool) -> io::Result<()> {
    let flag = if attach {
        libc::IFF_ATTACH_QUEUE
    } else {
        libc::IFF_DETACH_QUEUE
    };
    let mut req = IfReq::new("", flag);
    // SAFETY: TUNSETQUEUE reads one `struct ifreq`; `req` is a live
    // `#[repr(C)]` value at least that large; `f` is an open tun file.
    check(unsafe { libc::ioctl(f.as_raw_fd(), libc::TUNSETQUEUE, &mut req as *mut IfReq) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ifreq_layout_and_names() {
        assert!(std::mem::size_of::<IfReq>() >= 40);
        let r = IfReq::new("tap0", libc::IFF_TAP);
        assert_eq!(&r.name[..5], b"tap0\0");
        assert_eq!(r.name(), "tap0");
        assert_eq!(r.flags, 2);
        // Too long: cut to 15 bytes, NUL-terminated.
        let r = IfReq::new("abcdefghijklmnopqrstuvwxyz", 0);
        assert_eq!(r.name(), "abcdefghijklmno");
        assert_eq!(r.name[15], 0);
    }
}
