//! One receive queue (VIRTIO 1.4 §5.1.9.3, §5.1.9.4): DMA buffers
//! allocated once, one per queue entry plus `spare` more. A frame copied
//! out makes its buffers available again at once, so the queue stays fully
//! populated. A frame handed to the caller in place ([`NetBuf`],
//! zero-copy) keeps its buffers until the caller sends it (they come back
//! when the transmitq completes it) or releases it; spare buffers take
//! their place in the ring meanwhile, and the ring runs short only when
//! the caller holds more than the spares.
//!
//! Without `VIRTIO_NET_F_MRG_RXBUF` every buffer holds the header and a
//! whole frame (§5.1.9.3.1: at least 1526 bytes with the 12-byte header,
//! and room for an `mtu`-sized frame); a frame is one used buffer. With
//! it, a frame spans `num_buffers` used buffers: the first starts with the
//! header, the others continue the frame (§5.1.9.4).
//!
//! Trust and panic contract: the device is hostile. Used ids and lengths
//! are checked by the queue. A first buffer shorter than the header, or a
//! `num_buffers` of 0 or above the buffers the device holds (it cannot
//! have filled more: every buffer of a frame is still counted as held by
//! the device until it is taken back, even when spares were made
//! available meanwhile) is an error that breaks the queue until reset. A
//! `gso_type` the driver did not negotiate, or checksum offsets outside
//! the frame, drop that frame only. Without MRG_RXBUF `num_buffers` is
//! ignored (devices that copy a tap header leave it 0). Bytes are copied
//! out with bounds-checked reads; nothing here panics.

use alloc::vec::Vec;

use ringwork_queue::{Dma, DriverQueue, IdFifo, MemSlice, Segment, UsedError};
use ringwork_spec::net::VIRTIO_NET_HDR_GSO_NONE;
use ringwork_transport::driver::Transport;

use super::bufs::{BufError, NetBuf};
use super::error::RecvError;
use super::hdr::{load_rx, parse_rx, RxHdr, RxInfo};
use crate::common::{kick, pop_or_arm, DmaRegion, SetupError};

/// How a receive queue lays out its buffers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RxLayout {
    /// Bytes per buffer.
    pub buf_len: u32,
    /// Header size.
    pub hdr_len: usize,
    /// `VIRTIO_NET_F_MRG_RXBUF` negotiated.
    pub mergeable: bool,
    /// `VIRTIO_NET_F_GUEST_CSUM` negotiated.
    pub guest_csum: bool,
}

/// Who holds a receive buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Holder {
    /// Made available to the device (or taken back and part of the frame
    /// being gathered).
    Ring,
    /// Neither: waiting in the free list.
    Free,
    /// The caller, through a [`NetBuf`].
    Caller,
    /// A transmitq (sent with [`NetBuf`], not completed yet).
    Tx,
}

/// A receive queue. See the [module docs](self).
pub(crate) struct RxQueue<D: Dma> {
    pair: u16,
    vq: DriverQueue<D, u16>,
    bufs: DmaRegion<D>,
    layout: RxLayout,
    /// Buffers neither in the ring nor held, first in, first out.
    free: IdFifo,
    /// Per buffer: who holds it.
    holder: Vec<Holder>,
    /// The driver's identity, in every [`NetBuf`] handed out.
    owner: u32,
    /// Per buffer of a frame held in place: the frame's next buffer
    /// ([`NO_LINK`]: the last) and the frame bytes in this one.
    link: Vec<(u16, u32)>,
    /// Used buffers of the frame being gathered: (slot, used length).
    parts: Vec<(u16, u32)>,
    /// Buffers the frame being gathered spans (0: none started).
    expected: u16,
    /// The header of the frame being gathered.
    hdr: RxHdr,
    broken: bool,
    /// Busy-polled: used buffer notifications stay suppressed, an empty
    /// queue does not re-arm them.
    polling: bool,
}

/// The last buffer of a held frame.
const NO_LINK: u16 = u16::MAX;

impl<D: Dma> RxQueue<D> {
    /// Wraps an attached virtqueue and allocates its buffers: one per
    /// entry and `spare` more (at most 65535 in all).
    pub(crate) fn new(
        pair: u16,
        vq: DriverQueue<D, u16>,
        dma: D,
        layout: RxLayout,
        spare: u16,
        owner: u32,
    ) -> Result<Self, SetupError> {
        let vq_size = vq.size();
        let count = (usize::from(vq_size) + usize::from(spare)).min(usize::from(NO_LINK));
        let bufs = DmaRegion::new(dma, count * layout.buf_len as usize, 64)?;
        Ok(Self {
            pair,
            vq,
            bufs,
            layout,
            free: IdFifo::new(count),
            owner,
            holder: alloc::vec![Holder::Free; count],
            link: alloc::vec![(NO_LINK, 0); count],
            parts: Vec::with_capacity(usize::from(vq_size)),
            expected: 0,
            hdr: parse_rx(&[]),
            broken: false,
            polling: false,
        })
    }

    fn queue_err(&self, source: UsedError) -> RecvError {
        RecvError::Queue {
            pair: self.pair,
            source,
        }
    }

    #[inline(always)]
    fn post(&mut self, slot: u16) -> Result<(), RecvError> {
        let len = self.layout.buf_len;
        let seg = Segment::new(self.bufs.addr(usize::from(slot) * len as usize), len);
        // Published by the kick that ends every receive call (one
        // `avail.idx` store per batch).
        match self.vq.add_deferred(&[], &[seg], slot) {
            Ok(_) => Ok(()),
            Err(_) => {
                self.broken = true;
                Err(self.queue_err(UsedError::Broken))
            }
        }
    }

    /// Makes a buffer per entry available and puts the spares in the
    /// free list (setup, and after a reset); no notification.
    pub(crate) fn fill(&mut self) -> Result<(), RecvError> {
        self.free.clear();
        let size = self.vq.size();
        for slot in 0..self.holder.len() as u16 {
            if slot < size {
                self.holder[usize::from(slot)] = Holder::Ring;
                self.post(slot)?;
            } else {
                self.holder[usize::from(slot)] = Holder::Free;
                self.free.push_back(slot);
            }
        }
        self.vq.publish();
        Ok(())
    }

    /// Whether the ring has room and no free buffer to fill it with
    /// (frames held by the caller or in flight on a transmitq).
    pub(crate) fn starved(&self) -> bool {
        self.free.is_empty() && self.vq.num_free() > 0
    }

    /// Makes free buffers available while the ring has room (published
    /// by the next kick).
    fn refill(&mut self) -> Result<(), RecvError> {
        let n = usize::from(self.vq.num_free()).min(self.free.len());
        if n > 1 {
            self.vq.prefetch_adds(n as u16);
        }
        let Self {
            vq,
            free,
            holder,
            bufs,
            layout,
            ..
        } = self;
        let len = layout.buf_len;
        let (_, refused) = vq.add_deferred_burst(true, || {
            let slot = free.pop_front()?;
            if let Some(h) = holder.get_mut(usize::from(slot)) {
                *h = Holder::Ring;
            }
            let seg = Segment::new(bufs.addr(usize::from(slot) * len as usize), len);
            Some((seg, slot))
        });
        // Published by the kick that ends every receive call.
        if let Some(r) = refused {
            // Not in the ring after all: back to the free list.
            let slot = r.token;
            if let Some(h) = self.holder.get_mut(usize::from(slot)) {
                *h = Holder::Free;
            }
            self.free.push_front(slot);
            return Err(self.fail(self.queue_err(UsedError::Broken)));
        }
        Ok(())
    }

    /// The device address of the buffers (a seed for a generated MAC).
    pub(crate) fn seed_addr(&self) -> u64 {
        self.bufs.addr(0)
    }

    /// Buffers the device holds.
    pub(crate) fn available(&self) -> u16 {
        self.vq.outstanding()
    }

    /// Busy-poll mode on or off: on suppresses used buffer notifications
    /// now and keeps them suppressed (§2.7.7, §2.8.10); off lets the next
    /// empty poll re-arm them.
    pub(crate) fn set_polling(&mut self, on: bool) {
        self.polling = on;
        if on {
            self.vq.disable_callbacks();
        }
    }

    /// Whether the queue is in busy-poll mode.
    pub(crate) fn polling(&self) -> bool {
        self.polling
    }

    /// Makes free buffers available (if the ring has room) and notifies
    /// the device if it wants a notification.
    pub(crate) fn kick<T: Transport + ?Sized>(&mut self, t: &mut T) -> Result<(), RecvError> {
        let r = if self.broken { Ok(()) } else { self.refill() };
        kick(t, &mut self.vq).map_err(|e| self.queue_err(e))?;
        r
    }

    fn fail(&mut self, e: RecvError) -> RecvError {
        self.broken = true;
        e
    }

    /// Takes used buffers until a whole frame is gathered and returns its
    /// length (`None`: not yet; used buffer notifications are re-armed
    /// first).
    fn gather(&mut self) -> Result<Option<usize>, RecvError> {
        if self.broken || self.vq.is_broken() {
            return Err(self.queue_err(UsedError::Broken));
        }
        // Bounded: at most `size` buffers are outstanding.
        for _ in 0..=self.vq.size() {
            if self.expected != 0 && self.parts.len() >= usize::from(self.expected) {
                return Ok(Some(self.frame_len()));
            }
            let popped = if self.polling {
                self.vq.pop_used()
            } else {
                pop_or_arm(&mut self.vq)
            };
            let used = match popped {
                Ok(Some(u)) => u,
                Ok(None) => return Ok(None),
                Err(e) => return Err(self.fail(self.queue_err(e))),
            };
            if self.expected == 0 {
                self.start(used.token, used.len)?;
                if self.expected == 1 {
                    // The usual frame, in one buffer (checked by `start`).
                    return Ok(Some(
                        (used.len as usize).saturating_sub(self.layout.hdr_len),
                    ));
                }
            } else {
                self.parts.push((used.token, used.len));
            }
        }
        Err(self.fail(self.queue_err(UsedError::Broken)))
    }

    /// The first buffer of a frame: reads and checks its header.
    fn start(&mut self, slot: u16, len: u32) -> Result<(), RecvError> {
        let hdr_len = self.layout.hdr_len;
        if (len as usize) < hdr_len {
            self.parts.push((slot, len));
            return Err(self.fail(RecvError::ShortBuffer {
                pair: self.pair,
                len,
                hdr: hdr_len,
            }));
        }
        let off = usize::from(slot) * self.layout.buf_len as usize;
        let Some(hdr) = load_rx(&self.bufs.slice(), off, hdr_len) else {
            return Err(self.fail(self.queue_err(UsedError::Broken)));
        };
        self.hdr = hdr;
        self.parts.push((slot, len));
        self.expected = if self.layout.mergeable {
            // The device cannot have used more buffers than it held.
            let available = self.vq.outstanding().saturating_add(1);
            let n = self.hdr.num_buffers;
            if n == 0 || n > available {
                return Err(self.fail(RecvError::BadNumBuffers {
                    pair: self.pair,
                    num_buffers: n,
                    available,
                }));
            }
            n
        } else {
            1
        };
        Ok(())
    }

    /// The gathered frame's length (without the header).
    fn frame_len(&self) -> usize {
        let total: usize = self.parts.iter().map(|&(_, l)| l as usize).sum();
        total.saturating_sub(self.layout.hdr_len)
    }

    /// Makes the gathered frame's buffers available again.
    fn recycle(&mut self) -> Result<(), RecvError> {
        let mut parts = core::mem::take(&mut self.parts);
        self.expected = 0;
        let mut r = Ok(());
        for &(slot, _) in &parts {
            if r.is_err() {
                break;
            }
            // Reposted at once while the ring has room (the same buffer
            // goes back where it was, so unchanged ring entries are not
            // rewritten); otherwise a spare took its place meanwhile.
            if self.vq.num_free() > 0 {
                r = self.post(slot);
            } else if let Some(h) = self.holder.get_mut(usize::from(slot)) {
                *h = Holder::Free;
                self.free.push_back(slot);
            }
        }
        parts.clear();
        self.parts = parts;
        r
    }

    /// The next whole frame, checked; a frame that fails the per-frame
    /// checks is dropped (its buffers reposted) and reported.
    pub(crate) fn next(&mut self) -> Result<Option<RxInfo>, RecvError> {
        let Some(len) = self.gather()? else {
            return Ok(None);
        };
        if self.hdr.gso_type != VIRTIO_NET_HDR_GSO_NONE {
            let gso_type = self.hdr.gso_type;
            self.recycle()?;
            return Err(RecvError::UnexpectedGso {
                pair: self.pair,
                gso_type,
            });
        }
        let Some(csum) = self.hdr.checksum(len, self.layout.guest_csum) else {
            let h = self.hdr;
            self.recycle()?;
            return Err(RecvError::BadChecksum {
                pair: self.pair,
                start: h.csum_start,
                offset: h.csum_offset,
                len,
            });
        };
        // Built whole, not patched field by field: a struct written in
        // pieces and then copied as a block stalls the copy's loads.
        Ok(Some(RxInfo {
            len,
            csum,
            num_buffers: self.expected,
            flags: self.hdr.flags,
        }))
    }

    /// Copies the frame [`Self::next`] returned into `dst` (at least
    /// `info.len` bytes) and reposts its buffers.
    pub(crate) fn take(&mut self, dst: &mut [u8]) -> Result<(), RecvError> {
        let buf_len = self.layout.buf_len as usize;
        let mem = self.bufs.slice();
        let mut pos = 0;
        let mut ok = true;
        for (i, &(slot, len)) in self.parts.iter().enumerate() {
            let skip = if i == 0 { self.layout.hdr_len } else { 0 };
            let n = (len as usize).saturating_sub(skip);
            let off = usize::from(slot) * buf_len + skip;
            ok &= dst
                .get_mut(pos..pos + n)
                .is_some_and(|d| mem.read_bytes(off, d).is_ok());
            pos += n;
        }
        self.recycle()?;
        if ok {
            Ok(())
        } else {
            Err(self.fail(self.queue_err(UsedError::Broken)))
        }
    }

    /// Leaves the frame [`Self::next`] returned in its buffers and hands
    /// it to the caller; spare buffers take their place at the next kick.
    pub(crate) fn take_buf(&mut self, info: RxInfo) -> NetBuf {
        let hdr_len = self.layout.hdr_len as u32;
        let mut next = NO_LINK;
        for (i, &(slot, len)) in self.parts.iter().enumerate().rev() {
            let s = usize::from(slot);
            let bytes = if i == 0 {
                len.saturating_sub(hdr_len)
            } else {
                len
            };
            if let (Some(h), Some(l)) = (self.holder.get_mut(s), self.link.get_mut(s)) {
                *h = Holder::Caller;
                *l = (next, bytes);
            }
            next = slot;
        }
        self.parts.clear();
        self.expected = 0;
        NetBuf::new(self.owner, self.pair, next, info)
    }

    /// Checks that the caller holds `buf`'s frame (every buffer of it).
    pub(crate) fn check_held(&self, buf: &NetBuf) -> Result<(), BufError> {
        let not_held = BufError::NotHeld {
            pair: self.pair,
            id: buf.head(),
        };
        if buf.owner() != self.owner {
            return Err(not_held);
        }
        let mut slot = buf.head();
        // Bounded: a frame has at most one link per buffer.
        for _ in 0..self.holder.len() {
            if self.holder.get(usize::from(slot)) != Some(&Holder::Caller) {
                return Err(not_held);
            }
            match self.link.get(usize::from(slot)) {
                Some(&(NO_LINK, _)) => return Ok(()),
                Some(&(next, _)) => slot = next,
                None => return Err(not_held),
            }
        }
        Err(not_held)
    }

    /// The buffers of a held frame, in order: (buffer id, device address,
    /// bytes in it; the first starts with room for the header, counted).
    /// Call after [`Self::check_held`].
    pub(crate) fn segments(&self, head: u16, mut f: impl FnMut(u16, u64, u32)) {
        let buf_len = self.layout.buf_len as usize;
        let hdr_len = self.layout.hdr_len as u32;
        let mut slot = head;
        let mut first = true;
        for _ in 0..self.holder.len() {
            let Some(&(next, bytes)) = self.link.get(usize::from(slot)) else {
                return;
            };
            let len = if first { bytes + hdr_len } else { bytes };
            f(slot, self.bufs.addr(usize::from(slot) * buf_len), len);
            first = false;
            if next == NO_LINK {
                return;
            }
            slot = next;
        }
    }

    /// Checks that the caller holds `buf`'s frame ([`Self::check_held`])
    /// and returns its one buffer (header and frame) as a segment, or
    /// `None` when it spans several.
    #[inline]
    pub(crate) fn held_single(&self, buf: &NetBuf) -> Result<Option<Segment>, BufError> {
        let head = buf.head();
        let s = usize::from(head);
        match (self.holder.get(s), self.link.get(s)) {
            (Some(Holder::Caller), Some(&(NO_LINK, bytes))) if buf.owner() == self.owner => {
                let buf_len = self.layout.buf_len as usize;
                Ok(Some(Segment::new(
                    self.bufs.addr(s * buf_len),
                    bytes + self.layout.hdr_len as u32,
                )))
            }
            _ => self.check_held(buf).map(|()| None),
        }
    }

    /// Visits the bytes `[offset, offset + len)` of a held frame, buffer by
    /// buffer: `f(window, offset in the window, offset in the range,
    /// bytes)`, stopping at the first `false`. Returns whether the range
    /// lies inside the frame (nothing is visited when it does not) and
    /// every visit succeeded. Call after
    /// [`Self::check_held`].
    pub(crate) fn frame_chunks(
        &self,
        head: u16,
        offset: usize,
        len: usize,
        mut f: impl FnMut(&MemSlice<'_>, usize, usize, usize) -> bool,
    ) -> bool {
        let Some(end) = offset.checked_add(len) else {
            return false;
        };
        // The range is checked against the whole frame before anything is
        // visited, so a refused `write_buf` changes no byte.
        let mut frame = 0usize;
        self.segments(head, |_, _, bytes| frame += bytes as usize);
        if end > frame.saturating_sub(self.layout.hdr_len) {
            return false;
        }
        let mut pos = 0usize;
        let mut ok = true;
        let mut first = true;
        let hdr_len = self.layout.hdr_len;
        self.segments(head, |slot, _, bytes| {
            let skip = if first { hdr_len } else { 0 };
            first = false;
            let bytes = (bytes as usize).saturating_sub(skip);
            let (lo, hi) = (offset.max(pos), end.min(pos + bytes));
            if ok && lo < hi {
                ok = f(&self.buffer(slot), skip + lo - pos, lo - offset, hi - lo);
            }
            pos += bytes;
        });
        ok && end <= pos
    }

    /// The window on buffer `slot`.
    pub(crate) fn buffer(&self, slot: u16) -> MemSlice<'_> {
        let len = self.layout.buf_len as usize;
        self.bufs
            .slice()
            .subslice(usize::from(slot) * len, len)
            .unwrap_or_else(|_| MemSlice::empty())
    }

    /// Marks a held frame's buffers as given to a transmitq (call after
    /// [`Self::check_held`]).
    pub(crate) fn mark_sent(&mut self, head: u16) {
        self.walk_set(head, Holder::Tx);
    }

    /// A held or sent frame's buffers go back to the free list.
    pub(crate) fn release(&mut self, head: u16) {
        let mut slot = head;
        for _ in 0..self.holder.len() {
            let s = usize::from(slot);
            match self.holder.get(s) {
                Some(Holder::Caller | Holder::Tx) => {}
                _ => return,
            }
            self.holder[s] = Holder::Free;
            self.free.push_back(slot);
            match self.link.get(s) {
                Some(&(next, _)) if next != NO_LINK => slot = next,
                _ => return,
            }
        }
    }

    fn walk_set(&mut self, head: u16, to: Holder) {
        let mut slot = head;
        for _ in 0..self.holder.len() {
            let s = usize::from(slot);
            let Some(h) = self.holder.get_mut(s) else {
                return;
            };
            *h = to;
            match self.link.get(s) {
                Some(&(next, _)) if next != NO_LINK => slot = next,
                _ => return,
            }
        }
    }

    /// After a device reset: every buffer forgotten (none in the ring, none
    /// free, none held: [`Self::fill`] starts over), not broken. Frames
    /// the caller held are no longer valid.
    pub(crate) fn reset(&mut self) {
        self.vq.reset();
        self.parts.clear();
        self.expected = 0;
        self.broken = false;
        self.holder.fill(Holder::Free);
        self.free.clear();
        if self.polling {
            self.vq.disable_callbacks();
        }
    }
}
