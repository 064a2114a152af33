//! A Linux tap interface as the host side of the network device: the
//! [`Tap`] backend (what it does is documented there).
//!
//! Trust and panic contract: frames from the kernel are checked like
//! guest frames (header length, frame bounds, [`Packet::check_offloads`])
//! and dropped when bad ([`TapStats::rx_dropped`]); a read the kernel
//! reports as longer than the buffer is dropped, never sliced. A queue
//! whose file fails (the interface was deleted) stops being read. Nothing
//! here panics.

use std::fs::File;
use std::io::{self, IoSlice, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use super::backend::{NetBackend, SendError};
use super::gso::{BadOffload, Offloads, VnetHdr};
use super::options::MAX_QUEUE_PAIRS;
use super::packet::{Packet, ETH_HLEN, MAX_GSO_FRAME_LEN};
use super::tun::{self, IFNAMSIZ, VNET_HDR_LEN};

/// Reads tried per [`NetBackend::recv`] call past dropped frames (the fd
/// stays readable, so the device calls again).
const READS_PER_RECV: usize = 64;
/// Read buffer: a header, the largest frame, and one byte to tell a
/// frame that was cut.
const BUF_LEN: usize = VNET_HDR_LEN + MAX_GSO_FRAME_LEN + 1;

/// Errors opening a [`Tap`].
#[derive(Debug, thiserror::Error)]
pub enum TapError {
    /// The interface name is not one Linux accepts.
    #[error("bad interface name `{name}`: {reason}")]
    BadName {
        /// The name given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The number of queues is out of range.
    #[error("{0} tap queues (1 to {MAX_QUEUE_PAIRS})")]
    Queues(u16),
    /// Opening `/dev/net/tun` or attaching a queue to the interface
    /// failed.
    #[error("tap {name}: opening queue {queue}: {source}{hint}", hint = hint(.source))]
    Attach {
        /// The interface.
        name: String,
        /// Which queue (0-based).
        queue: u16,
        /// The operating-system error.
        #[source]
        source: io::Error,
    },
    /// Setting up an attached queue failed.
    #[error("tap {name}: {what}: {source}")]
    Setup {
        /// The interface.
        name: String,
        /// What was being set up.
        what: &'static str,
        /// The operating-system error.
        #[source]
        source: io::Error,
    },
}

fn hint(e: &io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => {
            " (needs CAP_NET_ADMIN, or a tap made for this user: ip tuntap add dev NAME mode tap user USER)"
        }
        Some(libc::ENOENT) | Some(libc::ENODEV) => {
            " (no /dev/net/tun: load the tun module, or create the device node)"
        }
        Some(libc::EINVAL) => {
            " (is it another kind of interface, or a tap with a different multi_queue setting than --queues asks for?)"
        }
        Some(libc::EBUSY) => " (another process has it open)",
        _ => "",
    }
}

/// Linux's `dev_valid_name`: 1 to 15 bytes, not `.` or `..`, no `/`,
/// `:` or whitespace.
fn check_name(name: &str) -> Result<(), TapError> {
    let bad = |reason| {
        Err(TapError::BadName {
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() || name.len() >= IFNAMSIZ {
        return bad("1 to 15 bytes");
    }
    if name == "." || name == ".." {
        return bad("`.` and `..` are not interface names");
    }
    if name
        .bytes()
        .any(|b| b == b'/' || b == b':' || b == 0 || b.is_ascii_whitespace())
    {
        return bad("no `/`, `:`, NUL or whitespace");
    }
    Ok(())
}

/// Counters of a [`Tap`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TapStats {
    /// Frames read from the tap and dropped: shorter than a header and an
    /// Ethernet header, longer than [`MAX_GSO_FRAME_LEN`], with offload
    /// fields that do not fit ([`BadOffload`]), or refused by the kernel
    /// as it handed them over.
    pub rx_dropped: u64,
    /// Frames the kernel refused on write (e.g. a GSO frame whose headers
    /// it could not parse); the device counts them as backend drops.
    pub tx_refused: u64,
}

struct Queue {
    file: File,
    /// Attached to the interface (a multiqueue tap's queue beyond the
    /// pairs in use is detached).
    attached: AtomicBool,
    /// Its file failed: no longer read.
    dead: AtomicBool,
    buf: Mutex<Vec<u8>>,
}

impl Queue {
    fn new(file: File) -> Self {
        Self {
            file,
            attached: AtomicBool::new(true),
            dead: AtomicBool::new(false),
            buf: Mutex::new(vec![0; BUF_LEN]),
        }
    }

    fn buf(&self) -> MutexGuard<'_, Vec<u8>> {
        self.buf.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A Linux tap interface as the host side of the network device, a
/// [`NetBackend`]: guest frames go into the host's network stack through
/// the tap, and what the host sends to the tap goes to the guest.
///
/// Each queue pair has its own tap queue (`IFF_MULTI_QUEUE` with more than
/// one pair), a non-blocking `/dev/net/tun` file whose fd is the pair's
/// [`NetBackend::rx_fd`]; the kernel steers flows across the attached
/// queues, and queues beyond the pairs the driver uses are detached
/// (`TUNSETQUEUE`), so no frame waits where nobody reads. Every frame
/// carries a 12-byte `virtio_net_hdr` (`IFF_VNET_HDR`, `TUNSETVNETHDRSZ`),
/// the format the device speaks, so checksum and segmentation offloads
/// pass through unchanged: a TSO frame from the guest reaches the kernel
/// whole (it segments, or hands the frame on unsegmented), and the
/// kernel may hand over GSO frames, within what the guest accepts
/// ([`NetBackend::set_guest_offloads`] sets `TUNSETOFFLOAD` from the
/// GUEST_ features the driver negotiated). Which offloads the running
/// kernel knows is probed when the tap is opened
/// ([`NetBackend::offloads`]).
///
/// Needs CAP_NET_ADMIN (or a tap created for this user with
/// `ip tuntap add dev NAME mode tap user USER`). A tap that does not
/// exist is created, and disappears when the [`Tap`] is dropped.
pub struct Tap {
    name: String,
    queues: Vec<Queue>,
    multi_queue: bool,
    offloads: Offloads,
    rx_dropped: AtomicU64,
    tx_refused: AtomicU64,
}

impl core::fmt::Debug for Tap {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Tap")
            .field("name", &self.name)
            .field("queues", &self.queues.len())
            .field("offloads", &self.offloads)
            .finish_non_exhaustive()
    }
}

impl Tap {
    /// Opens tap `name` with `queues` queues (`IFF_MULTI_QUEUE` with more
    /// than one; with one, an existing multiqueue tap is accepted too),
    /// creating the interface when it does not exist, and probes which
    /// offloads the kernel takes.
    pub fn open(name: &str, queues: u16) -> Result<Tap, TapError> {
        check_name(name)?;
        if queues == 0 || queues > MAX_QUEUE_PAIRS {
            return Err(TapError::Queues(queues));
        }
        let attach = |name: &str, queue: u16, mq: bool| {
            tun::open_queue(name, mq).map_err(|source| TapError::Attach {
                name: name.to_owned(),
                queue,
                source,
            })
        };
        let mut multi_queue = queues > 1;
        let (first, real) = match attach(name, 0, multi_queue) {
            Err(TapError::Attach { source, .. })
                if !multi_queue && source.raw_os_error() == Some(libc::EINVAL) =>
            {
                multi_queue = true;
                attach(name, 0, true)?
            }
            r => r?,
        };
        let mut files = vec![first];
        for q in 1..queues {
            files.push(attach(&real, q, true)?.0);
        }
        for f in &files {
            tun::set_vnet_hdr(f, VNET_HDR_LEN).map_err(|source| TapError::Setup {
                name: real.clone(),
                what: "setting the virtio-net header size (TUNSETVNETHDRSZ)",
                source,
            })?;
        }
        let offloads = probe_offloads(&files[0]);
        tracing::info!(
            "tap {real}: {queues} queue(s){}, offloads {offloads:?}",
            if multi_queue { ", multiqueue" } else { "" }
        );
        Ok(Tap {
            name: real,
            queues: files.into_iter().map(Queue::new).collect(),
            multi_queue,
            offloads,
            rx_dropped: AtomicU64::new(0),
            tx_refused: AtomicU64::new(0),
        })
    }

    /// The interface's name (as the kernel has it).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The number of queues.
    pub fn num_queues(&self) -> u16 {
        self.queues.len() as u16
    }

    /// The counters.
    pub fn stats(&self) -> TapStats {
        TapStats {
            rx_dropped: self.rx_dropped.load(Ordering::Relaxed),
            tx_refused: self.tx_refused.load(Ordering::Relaxed),
        }
    }

    /// The queue frames from `pair` go out on: its own while attached,
    /// else the first.
    fn tx_queue(&self, pair: u16) -> Option<&Queue> {
        match self.queues.get(usize::from(pair)) {
            Some(q) if q.attached.load(Ordering::Acquire) => Some(q),
            _ => self.queues.first(),
        }
    }

    fn drop_rx(&self, why: &dyn core::fmt::Display) {
        self.rx_dropped.fetch_add(1, Ordering::Relaxed);
        tracing::debug!("tap {}: dropping a frame: {why}", self.name);
    }
}

/// The offloads the kernel takes: each `TUNSETOFFLOAD` combination tried
/// on `f`, then all turned off again (until a driver says what it
/// accepts).
fn probe_offloads(f: &File) -> Offloads {
    let ok = |flags| tun::set_offload(f, flags).is_ok();
    let csum = ok(libc::TUN_F_CSUM);
    let c = libc::TUN_F_CSUM;
    let tso = csum && ok(c | libc::TUN_F_TSO4 | libc::TUN_F_TSO6);
    let o = Offloads {
        csum,
        tso4: tso,
        tso6: tso,
        ecn: tso && ok(c | libc::TUN_F_TSO4 | libc::TUN_F_TSO6 | libc::TUN_F_TSO_ECN),
        ufo: csum && ok(c | libc::TUN_F_UFO),
        // The kernel takes USO for both IP versions or neither.
        uso4: csum && ok(c | libc::TUN_F_USO4 | libc::TUN_F_USO6),
        uso6: false,
    };
    let _ = tun::set_offload(f, 0);
    Offloads { uso6: o.uso4, ..o }
}

/// The `TUNSETOFFLOAD` flags for a driver that accepts `guest`, on a
/// kernel that takes `supported`: nothing without a partial checksum;
/// ECN only with TSO; USO only for both IP versions at once (the kernel
/// takes neither alone), so a driver with only one of GUEST_USO4/USO6
/// gets UDP segmented by the kernel instead.
pub(super) fn tun_offload_flags(guest: Offloads, supported: Offloads) -> libc::c_uint {
    if !(guest.csum && supported.csum) {
        return 0;
    }
    let mut f = libc::TUN_F_CSUM;
    if guest.tso4 && supported.tso4 {
        f |= libc::TUN_F_TSO4;
    }
    if guest.tso6 && supported.tso6 {
        f |= libc::TUN_F_TSO6;
    }
    if guest.ecn && supported.ecn && f & (libc::TUN_F_TSO4 | libc::TUN_F_TSO6) != 0 {
        f |= libc::TUN_F_TSO_ECN;
    }
    if guest.ufo && supported.ufo {
        f |= libc::TUN_F_UFO;
    }
    if guest.uso4 && guest.uso6 && supported.uso4 && supported.uso6 {
        f |= libc::TUN_F_USO4 | libc::TUN_F_USO6;
    }
    f
}

/// Why a frame read from the tap was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(super) enum TapRxError {
    /// Shorter than the header plus an Ethernet header.
    #[error("{0}-byte read: too short")]
    Short(usize),
    /// Longer than the buffer (the kernel cut it) or than
    /// [`MAX_GSO_FRAME_LEN`].
    #[error("{0}-byte frame: too long")]
    Long(usize),
    /// Offload fields that do not fit.
    #[error("{0}")]
    Offload(#[from] BadOffload),
}

/// A frame read from the tap: `read` is what the kernel said it wrote
/// (possibly more than `buf` holds), `buf` the buffer.
pub(super) fn decode(buf: &[u8], read: usize) -> Result<Packet, TapRxError> {
    let Some(frame_len) = read.checked_sub(VNET_HDR_LEN) else {
        return Err(TapRxError::Short(read));
    };
    if frame_len < ETH_HLEN {
        return Err(TapRxError::Short(read));
    }
    if frame_len > MAX_GSO_FRAME_LEN || read > buf.len() {
        return Err(TapRxError::Long(frame_len));
    }
    let (Some(h), Some(frame)) = (VnetHdr::parse(buf), buf.get(VNET_HDR_LEN..read)) else {
        return Err(TapRxError::Short(read));
    };
    Ok(h.into_packet(frame.to_vec())?)
}

/// The bytes written to the tap for `p`: the header, then the frame.
pub(super) fn encode(p: &Packet) -> [u8; VNET_HDR_LEN] {
    VnetHdr::of(p).to_bytes()
}

impl NetBackend for Tap {
    /// Writes the header and the frame in one `writev`; a full tap is
    /// [`SendError::Full`], a refused frame [`SendError::Io`].
    fn send(&self, pair: u16, packet: Packet) -> Result<(), SendError> {
        let Some(q) = self.tx_queue(pair) else {
            return Err(SendError::Down);
        };
        let hdr = encode(&packet);
        let want = hdr.len() + packet.data.len();
        let bufs = [IoSlice::new(&hdr), IoSlice::new(&packet.data)];
        match (&q.file).write_vectored(&bufs) {
            Ok(n) if n == want => Ok(()),
            Ok(n) => Err(SendError::Io(io::Error::other(format!(
                "short write to the tap: {n} of {want} bytes"
            )))),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(SendError::Full),
            Err(e) if e.raw_os_error() == Some(libc::EBADFD) => Err(SendError::Down),
            Err(e) => {
                self.tx_refused.fetch_add(1, Ordering::Relaxed);
                Err(SendError::Io(e))
            }
        }
    }

    /// Reads the next frame of the pair's queue, skipping (and counting)
    /// frames that are too short or too long or carry offload fields
    /// that do not fit.
    fn recv(&self, pair: u16) -> Option<Packet> {
        let q = self.queues.get(usize::from(pair))?;
        if !q.attached.load(Ordering::Acquire) || q.dead.load(Ordering::Acquire) {
            return None;
        }
        let mut buf = q.buf();
        for _ in 0..READS_PER_RECV {
            match (&q.file).read(&mut buf) {
                Ok(n) => match decode(&buf, n) {
                    Ok(p) => return Some(p),
                    Err(e) => self.drop_rx(&e),
                },
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // The kernel refused to hand a frame over (it is gone).
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EINVAL) | Some(libc::EFAULT) | Some(libc::EMSGSIZE)
                    ) =>
                {
                    self.drop_rx(&e)
                }
                Err(e) => {
                    // Detached meanwhile: not an error.
                    if q.attached.load(Ordering::Acquire) {
                        tracing::error!("tap {} queue {pair}: {e}; no longer read", self.name);
                        q.dead.store(true, Ordering::Release);
                    }
                    return None;
                }
            }
        }
        None
    }

    /// The queue's fd while it is attached and working.
    fn rx_fd(&self, pair: u16) -> Option<RawFd> {
        let q = self.queues.get(usize::from(pair))?;
        (q.attached.load(Ordering::Acquire) && !q.dead.load(Ordering::Acquire))
            .then(|| q.file.as_raw_fd())
    }

    /// Attaches the first `pairs` queues and detaches the others (a
    /// multiqueue tap only), so the kernel steers frames to queues that
    /// are read.
    fn set_active_pairs(&self, pairs: u16) {
        if !self.multi_queue {
            return;
        }
        for (i, q) in self.queues.iter().enumerate() {
            let want = i < usize::from(pairs.max(1));
            if q.attached.load(Ordering::Acquire) == want {
                continue;
            }
            if !want {
                q.attached.store(false, Ordering::Release);
            }
            match tun::set_queue(&q.file, want) {
                Ok(()) => q.attached.store(want, Ordering::Release),
                Err(e) => tracing::warn!(
                    "tap {}: {} queue {i}: {e}",
                    self.name,
                    if want { "attaching" } else { "detaching" }
                ),
            }
        }
    }

    fn offloads(&self) -> Offloads {
        self.offloads
    }

    /// `TUNSETOFFLOAD` with what the driver accepts (USO only when it
    /// accepts both IP versions): the kernel hands over partial checksums
    /// only to a driver with GUEST_CSUM and GSO frames only of the types
    /// it negotiated, and completes or segments everything else itself.
    fn set_guest_offloads(&self, offloads: Offloads) {
        let flags = tun_offload_flags(offloads, self.offloads);
        let Some(q) = self.queues.first() else {
            return;
        };
        match tun::set_offload(&q.file, flags) {
            Ok(()) => tracing::debug!("tap {}: TUNSETOFFLOAD {flags:#x}", self.name),
            Err(e) => {
                tracing::warn!("tap {}: TUNSETOFFLOAD {flags:#x}: {e}", self.name);
                let _ = tun::set_offload(&q.file, 0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::{Gso, PartialCsum};
    use ringwork_spec::net::*;

    /// What Linux's tun writes for a 3000-byte TCPv4 GSO frame it
    /// leaves to us: NEEDS_CSUM, TCPV4, hdr_len 66, gso_size 1448,
    /// csum_start 34, csum_offset 16, then two bytes it does not touch.
    const KERNEL_TSO4: [u8; 12] = [1, 1, 66, 0, 0xa8, 5, 34, 0, 16, 0, 0xee, 0xee];

    fn read_of(hdr: &[u8], frame_len: usize) -> Vec<u8> {
        let mut b = hdr.to_vec();
        b.extend((0..frame_len).map(|i| i as u8));
        b
    }

    #[test]
    fn decodes_kernel_headers() {
        let b = read_of(&KERNEL_TSO4, 3000);
        let p = decode(&b, b.len()).unwrap();
        assert_eq!(p.data.len(), 3000);
        assert_eq!(p.data[..4], [0, 1, 2, 3]);
        assert_eq!(
            p.gso,
            Some(Gso {
                gso_type: VIRTIO_NET_HDR_GSO_TCPV4,
                hdr_len: 66,
                gso_size: 1448
            })
        );
        assert_eq!(
            p.csum,
            Some(PartialCsum {
                start: 34,
                offset: 16
            })
        );
        // Written back, the same ten bytes (num_buffers zero).
        assert_eq!(encode(&p)[..10], KERNEL_TSO4[..10]);
        assert_eq!(encode(&p)[10..], [0, 0]);
        // DATA_VALID alone: a plain complete frame.
        let b = read_of(&[2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], 60);
        let p = decode(&b, b.len()).unwrap();
        assert_eq!((p.csum, p.gso, p.data.len()), (None, None, 60));
        assert_eq!(encode(&p), [0; 12]);
    }

    #[test]
    fn refuses_bad_reads() {
        let b = read_of(&KERNEL_TSO4, 3000);
        assert_eq!(decode(&b, 11), Err(TapRxError::Short(11)));
        assert_eq!(decode(&b, 12 + 13), Err(TapRxError::Short(25)));
        // The kernel reports more than the buffer holds (a cut frame).
        assert_eq!(decode(&b, b.len() + 1), Err(TapRxError::Long(3001)));
        // Longer than any GSO frame.
        let big = vec![0u8; BUF_LEN];
        assert_eq!(
            decode(&big, BUF_LEN),
            Err(TapRxError::Long(MAX_GSO_FRAME_LEN + 1))
        );
        let mut ok = vec![0u8; BUF_LEN];
        ok[..12].copy_from_slice(&[0; 12]);
        assert!(decode(&ok, BUF_LEN - 1).is_ok(), "the largest frame");
        // hdr_len past the end of a short frame.
        let b = read_of(&KERNEL_TSO4, 60);
        assert_eq!(
            decode(&b, b.len()),
            Err(TapRxError::Offload(BadOffload::HdrLenPastEnd {
                hdr_len: 66,
                len: 60
            }))
        );
        // A UDP tunnel GSO type.
        let mut h = KERNEL_TSO4;
        h[1] = VIRTIO_NET_HDR_GSO_TCPV4 | VIRTIO_NET_HDR_GSO_UDP_TUNNEL_IPV4;
        let b = read_of(&h, 3000);
        assert!(matches!(
            decode(&b, b.len()),
            Err(TapRxError::Offload(BadOffload::GsoType(_)))
        ));
    }

    #[test]
    fn offload_flags_follow_the_guest() {
        let all = Offloads {
            csum: true,
            tso4: true,
            tso6: true,
            ecn: true,
            ufo: true,
            uso4: true,
            uso6: true,
        };
        assert_eq!(tun_offload_flags(all, all), 0x7f);
        assert_eq!(tun_offload_flags(Offloads::NONE, all), 0);
        // No partial checksums, no GSO either.
        let no_csum = Offloads { csum: false, ..all };
        assert_eq!(tun_offload_flags(no_csum, all), 0);
        assert_eq!(tun_offload_flags(all, no_csum), 0);
        let tso4 = Offloads {
            csum: true,
            tso4: true,
            ecn: true,
            ..Offloads::NONE
        };
        assert_eq!(
            tun_offload_flags(tso4, all),
            libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO_ECN
        );
        // ECN needs TSO; USO needs both IP versions.
        let odd = Offloads {
            csum: true,
            ecn: true,
            uso4: true,
            ..Offloads::NONE
        };
        assert_eq!(tun_offload_flags(odd, all), libc::TUN_F_CSUM);
        // Never more than the kernel takes.
        let old_kernel = Offloads {
            uso4: false,
            uso6: false,
            ..all
        };
        assert_eq!(tun_offload_flags(all, old_kernel), 0x1f);
    }

    #[test]
    fn names_are_checked() {
        for bad in ["", ".", "..", "a/b", "a:b", "a b", "sixteen-bytes-xx"] {
            assert!(
                matches!(Tap::open(bad, 1), Err(TapError::BadName { .. })),
                "{bad:?}"
            );
        }
        assert!(check_name("tap0").is_ok());
        assert!(check_name("fifteen-bytes-x").is_ok());
        assert!(matches!(Tap::open("tap0", 0), Err(TapError::Queues(0))));
        assert!(matches!(Tap::open("tap0", 65), Err(TapError::Queues(65))));
    }
}
