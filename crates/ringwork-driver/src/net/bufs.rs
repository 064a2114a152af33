//! Zero-copy receive and forward ([`NetBuf`]): frames left in their
//! receive buffers, read or changed in place through bounds-checked
//! volatile accessors, and sent back out from the same buffers, the way
//! DPDK's `testpmd` forwards mbufs. [`NetDriver::recv_bufs`] hands frames
//! over, [`NetDriver::send_bufs`] queues them on a transmitq (the header
//! is written over the receive header in front of the frame, each buffer
//! is one descriptor), and [`NetDriver::release_bufs`] gives them back
//! unsent. A receive queue has spare buffers for the frames held or in
//! flight ([`super::NetOptions::rx_spare_buffers`]); when they run out,
//! the ring is refilled as frames come back.
//!
//! Trust and panic contract: a [`NetBuf`] is a claim on buffers the
//! driver checks before every use (held by the caller, on a pair that
//! exists), so a stale or already-sent handle is refused with
//! [`BufError::NotHeld`], never sent twice. Frame bytes live in memory the
//! device shares: they are read and written with volatile accessors only,
//! and a device that writes them after handing them back only changes the
//! frame it forwards. Nothing here panics.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, Ordering};

use ringwork_queue::{Dma, Segment};
use ringwork_spec::net::VIRTIO_NET_F_CSUM;
use ringwork_transport::driver::Transport;

use super::error::{RecvError, SendError};
use super::hdr::{complete_checksum, store_tx_hdr, RxChecksum, RxInfo, TxChecksum};
use super::tx::{ETH_HLEN, VLAN_HLEN};
use super::{NetDriver, NetState};

/// A received frame left in its receive buffer(s), held by the caller
/// until sent ([`NetDriver::send_bufs`]) or released
/// ([`NetDriver::release_bufs`]). Not `Clone`: one handle, one owner.
/// Dropping it instead loses its buffers for the life of the driver (the
/// receive ring then runs on fewer spares).
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a NetBuf holds receive buffers until it is sent or released"]
pub struct NetBuf {
    owner: u32,
    pair: u16,
    head: u16,
    info: RxInfo,
}

/// Identities of drivers, so that one driver refuses another's [`NetBuf`].
static NEXT_OWNER: AtomicU32 = AtomicU32::new(1);

/// A new driver identity.
#[cfg(target_has_atomic = "32")]
pub(crate) fn new_owner() -> u32 {
    NEXT_OWNER.fetch_add(1, Ordering::Relaxed)
}

/// A new driver identity (targets without atomic read-modify-write: two
/// drivers set up at the same instant on two threads may share one,
/// which only weakens the check against another driver's handles).
#[cfg(not(target_has_atomic = "32"))]
pub(crate) fn new_owner() -> u32 {
    let v = NEXT_OWNER.load(Ordering::Relaxed);
    NEXT_OWNER.store(v.wrapping_add(1), Ordering::Relaxed);
    v
}

impl NetBuf {
    pub(crate) fn new(owner: u32, pair: u16, head: u16, info: RxInfo) -> Self {
        Self {
            owner,
            pair,
            head,
            info,
        }
    }

    pub(crate) fn owner(&self) -> u32 {
        self.owner
    }

    /// The queue pair it was received on.
    pub fn pair(&self) -> u16 {
        self.pair
    }

    /// Frame length (no virtio header).
    pub fn len(&self) -> usize {
        self.info.len
    }

    /// Whether the frame is empty (never, for a frame the driver accepted
    /// on a device that follows the spec; a hostile one may send it).
    pub fn is_empty(&self) -> bool {
        self.info.len == 0
    }

    /// What the header said.
    pub fn info(&self) -> RxInfo {
        self.info
    }

    pub(crate) fn head(&self) -> u16 {
        self.head
    }
}

/// Why a [`NetBuf`] could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BufError {
    /// The caller does not hold this frame (already sent or released, or
    /// from before a reset, or another driver's).
    #[error("frame at buffer {id} of pair {pair} is not held by the caller")]
    NotHeld {
        /// The pair.
        pair: u16,
        /// The frame's first buffer.
        id: u16,
    },
    /// The byte range does not lie inside the frame.
    #[error("bytes {offset}..{offset}+{len} are outside a {frame}-byte frame")]
    OutOfRange {
        /// Start of the range.
        offset: usize,
        /// Its length.
        len: usize,
        /// Frame length.
        frame: usize,
    },
}

impl<T: Transport, D: Dma + Clone> NetDriver<T, D> {
    /// Hands up to `max` frames of receiveq `pair` to the caller without
    /// copying them (appended to `out`), then refills the ring from the
    /// spare buffers and notifies the device once. Returns how many. A
    /// frame dropped for a per-frame error ends the batch with that error
    /// (see [`Self::recv_batch`]).
    pub fn recv_bufs(
        &mut self,
        pair: u16,
        max: usize,
        out: &mut Vec<NetBuf>,
    ) -> Result<usize, RecvError> {
        let pairs = self.queue_pairs();
        let Self {
            transport, state, ..
        } = self;
        let NetState { rx, tx, .. } = &mut **state;
        let q = rx
            .get_mut(usize::from(pair))
            .ok_or(RecvError::NoSuchPair { pair, pairs })?;
        let mut n = 0;
        let mut r = Ok(());
        while n < max {
            match q.next() {
                Ok(Some(info)) => {
                    out.push(q.take_buf(info));
                    n += 1;
                }
                Ok(None) => break,
                Err(e) => {
                    r = Err(e);
                    break;
                }
            }
        }
        // Sent buffers come back when transmit completions are taken; a
        // caller that only receives would otherwise see the ring run dry.
        // (A transmitq the device broke is reported by the next send.)
        if q.starved() {
            for t in tx.iter_mut() {
                let _ = t.reclaim();
                hand_back(t, rx);
            }
        }
        let k = match rx.get_mut(usize::from(pair)) {
            Some(q) => q.kick(transport),
            None => Ok(()),
        };
        r?;
        k.map(|()| n)
    }

    /// Queues the frames of `bufs` on transmitq `pair` from their own
    /// buffers, as many as fit (taking completed buffers back first), and
    /// notifies the device once. The queued ones are removed from the
    /// front of `bufs`; their buffers return to their receive queue when
    /// the device completed them. Returns how many. Frames received on any
    /// pair may go out on any pair. A frame whose checksum the device left
    /// to complete ([`RxChecksum::Partial`]) goes out with a `NEEDS_CSUM`
    /// request with `VIRTIO_NET_F_CSUM`, completed by the driver without;
    /// a frame left in `bufs` after its checksum was completed reports
    /// [`RxChecksum::Valid`] from then on.
    pub fn send_bufs(&mut self, pair: u16, bufs: &mut Vec<NetBuf>) -> Result<usize, SendError> {
        self.txq(pair)?.reclaim()?;
        self.settle(pair);
        let mtu = self.config.mtu;
        let hdr_len = self.hdr_len;
        let offload = self.features.contains(VIRTIO_NET_F_CSUM);
        let mut scratch = core::mem::take(&mut self.scratch);
        let Self {
            transport, state, ..
        } = self;
        let NetState { rx, tx, .. } = &mut **state;
        let Some(txq) = tx.get_mut(usize::from(pair)) else {
            return Ok(0);
        };
        // The headers are written over lines the device wrote last: ask for
        // them all first, so their transfers overlap instead of queueing
        // one after another (a hint: nothing is read or written here).
        for b in bufs.iter() {
            if let Some(rq) = rx.get(usize::from(b.pair)) {
                rq.buffer(b.head).prefetch(0, 16, true);
            }
        }
        txq.prefetch_adds(bufs.len());
        let mut sent = 0;
        let mut r = Ok(());
        for b in bufs.iter_mut() {
            let Some(rq) = rx.get_mut(usize::from(b.pair)) else {
                r = Err(BufError::NotHeld {
                    pair: b.pair,
                    id: b.head,
                }
                .into());
                break;
            };
            // Held (and, for the usual one-buffer frame, its segment).
            let one = match rq.held_single(b) {
                Ok(one) => one,
                Err(e) => {
                    r = Err(e.into());
                    break;
                }
            };
            if let Err(e) = check_len(rq, b, mtu) {
                r = Err(e);
                break;
            }
            let csum = match b.info.csum {
                RxChecksum::Partial(c) => Some(c),
                _ => None,
            };
            if let (Some(c), false) = (csum, offload) {
                if !complete_in_place(rq, b, c, &mut scratch) {
                    r = Err(SendError::BadChecksum {
                        start: c.start,
                        offset: c.offset,
                        len: b.info.len,
                    });
                    break;
                }
                // The checksum in the buffers is complete now. Should the
                // frame stay with the caller (a full transmitq below), a
                // later send must not complete it again: that would sum
                // over the finished checksum and put the pseudo-header
                // sum back.
                b.info.csum = RxChecksum::Valid;
            }
            let csum = if offload { csum } else { None };
            if !store_tx_hdr(&rq.buffer(b.head), 0, hdr_len, csum) {
                r = Err(BufError::NotHeld {
                    pair: b.pair,
                    id: b.head,
                }
                .into());
                break;
            }
            let q = txq.enqueue_in_place(b.pair, b.head, one, |v| {
                rq.segments(b.head, |_, addr, len| v.push(Segment::new(addr, len)));
            });
            match q {
                Ok(()) => {
                    rq.mark_sent(b.head);
                    sent += 1;
                }
                Err(SendError::QueueFull { .. }) => break,
                Err(e) => {
                    r = Err(e);
                    break;
                }
            }
        }
        bufs.drain(..sent);
        let k = txq.kick(transport);
        self.scratch = scratch;
        r?;
        k.map(|()| sent)
    }

    /// Gives frames back unsent: their buffers return to their receive
    /// queues (made available at the next receive call). Handles the
    /// caller does not hold are skipped.
    pub fn release_bufs(&mut self, bufs: impl IntoIterator<Item = NetBuf>) {
        for b in bufs {
            if let Some(rq) = self.state.rx.get_mut(usize::from(b.pair)) {
                if rq.check_held(&b).is_ok() {
                    rq.release(b.head);
                }
            }
        }
    }

    /// Copies bytes `[offset, offset + dst.len())` of a held frame into
    /// `dst`.
    pub fn read_buf(&self, buf: &NetBuf, offset: usize, dst: &mut [u8]) -> Result<(), BufError> {
        self.buf_io(buf, offset, dst.len(), |w, at, pos, n| {
            dst.get_mut(pos..pos + n)
                .is_some_and(|d| w.read_bytes(at, d).is_ok())
        })
    }

    /// Overwrites bytes `[offset, offset + src.len())` of a held frame
    /// with `src` (e.g. swapping addresses before forwarding).
    pub fn write_buf(&mut self, buf: &NetBuf, offset: usize, src: &[u8]) -> Result<(), BufError> {
        self.buf_io(buf, offset, src.len(), |w, at, pos, n| {
            src.get(pos..pos + n)
                .is_some_and(|s| w.write_bytes(at, s).is_ok())
        })
    }

    fn buf_io(
        &self,
        buf: &NetBuf,
        offset: usize,
        len: usize,
        f: impl FnMut(&ringwork_queue::MemSlice<'_>, usize, usize, usize) -> bool,
    ) -> Result<(), BufError> {
        let not_held = BufError::NotHeld {
            pair: buf.pair,
            id: buf.head,
        };
        let rq = self.state.rx.get(usize::from(buf.pair)).ok_or(not_held)?;
        rq.check_held(buf)?;
        if rq.frame_chunks(buf.head, offset, len, f) {
            Ok(())
        } else {
            Err(BufError::OutOfRange {
                offset,
                len,
                frame: buf.info.len,
            })
        }
    }

    /// Hands the receive buffers transmitq `pair` completed back to their
    /// receive queues.
    pub(crate) fn settle(&mut self, pair: u16) {
        let NetState { rx, tx, .. } = &mut *self.state;
        if let Some(q) = tx.get_mut(usize::from(pair)) {
            hand_back(q, rx);
        }
    }
}

/// Gives the receive buffers `t` has taken back since the last call to
/// their receive queues.
fn hand_back<D: Dma>(t: &mut super::tx::TxQueue<D>, rx: &mut [super::rx::RxQueue<D>]) {
    for (p, head) in t.take_returned() {
        if let Some(q) = rx.get_mut(usize::from(p)) {
            q.release(head);
        }
    }
}

/// §5.1.4.2: a frame no longer than `mtu` plus its Ethernet header (18
/// bytes with an 802.1Q tag), and at least an Ethernet header.
#[inline]
fn check_len<D: Dma>(rq: &super::rx::RxQueue<D>, b: &NetBuf, mtu: u16) -> Result<(), SendError> {
    let len = b.info.len;
    if len < ETH_HLEN {
        return Err(SendError::TooShort { len, min: ETH_HLEN });
    }
    let untagged = usize::from(mtu) + ETH_HLEN;
    if len <= untagged {
        return Ok(());
    }
    let mut tpid = [0u8; 2];
    let tagged = rq.frame_chunks(b.head, 12, 2, |w, at, pos, n| {
        tpid.get_mut(pos..pos + n)
            .is_some_and(|d| w.read_bytes(at, d).is_ok())
    }) && tpid == [0x81, 0x00];
    let max = untagged + if tagged { VLAN_HLEN } else { 0 };
    if len > max {
        return Err(SendError::TooLong { len, max });
    }
    Ok(())
}

/// Completes a partial checksum in the frame's buffers (no
/// `VIRTIO_NET_F_CSUM`: the driver sends fully checksummed frames,
/// §5.1.9.2.1). The frame is read into `scratch` once.
fn complete_in_place<D: Dma>(
    rq: &super::rx::RxQueue<D>,
    b: &NetBuf,
    c: TxChecksum,
    scratch: &mut Vec<u8>,
) -> bool {
    let len = b.info.len;
    if scratch.len() < len {
        scratch.resize(len, 0);
    }
    let frame = &mut scratch[..len];
    let read = rq.frame_chunks(b.head, 0, len, |w, at, pos, n| {
        frame
            .get_mut(pos..pos + n)
            .is_some_and(|d| w.read_bytes(at, d).is_ok())
    });
    let Some(v) = complete_checksum(frame, c).filter(|_| read) else {
        return false;
    };
    let at = usize::from(c.start) + usize::from(c.offset);
    rq.frame_chunks(b.head, at, 2, |w, off, pos, n| {
        v.get(pos..pos + n)
            .is_some_and(|s| w.write_bytes(off, s).is_ok())
    })
}
