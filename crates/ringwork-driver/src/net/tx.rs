//! One transmit queue (VIRTIO 1.4 §5.1.9.2): a DMA slot per queue entry,
//! allocated once, holding the header and a copy of the frame; each frame
//! is one device-readable descriptor ("the header and packet are added as
//! one output descriptor"). Used buffer notifications are suppressed
//! (§5.1.9.2.3: completions are collected on the transmit path).
//!
//! Frames received in place ([`super::NetBuf`], zero-copy) go out from
//! their receive buffers instead: the header is written over the receive
//! header in front of the frame, and the buffers (one descriptor each) go
//! back to their receive queue's free list once the device completed them
//! ([`TxQueue::take_returned`]).
//!
//! Trust and panic contract: the device only hands slots back; used ids
//! and lengths are checked by the queue (a transmit buffer has no
//! writable part, so any used length above 0 breaks the queue). Nothing
//! here reads device-written memory, and nothing panics.

use alloc::vec::Vec;

use ringwork_queue::{AddError, Dma, DriverQueue, IdFifo, Segment, UsedError};
use ringwork_transport::driver::Transport;

use super::error::SendError;
use super::hdr::{complete_checksum, store_tx_hdr, TxChecksum};
use crate::common::{kick, DmaRegion, SetupError};

/// Ethernet header length.
pub(crate) const ETH_HLEN: usize = 14;
/// 802.1Q tag length.
pub(crate) const VLAN_HLEN: usize = 4;

/// The longest frame the MTU allows for `frame` (§5.1.4.2: `mtu` plus the
/// low level Ethernet header, 18 bytes with an 802.1Q tag).
pub(crate) fn max_frame_for(frame: &[u8], mtu: u16) -> usize {
    let tagged = frame.get(12..14) == Some(&[0x81, 0x00][..]);
    usize::from(mtu) + ETH_HLEN + if tagged { VLAN_HLEN } else { 0 }
}

/// Checks a frame and its checksum request before it is queued.
pub(crate) fn check_frame(
    frame: &[u8],
    csum: Option<TxChecksum>,
    mtu: u16,
) -> Result<(), SendError> {
    let len = frame.len();
    if len < ETH_HLEN {
        return Err(SendError::TooShort { len, min: ETH_HLEN });
    }
    let max = max_frame_for(frame, mtu);
    if len > max {
        return Err(SendError::TooLong { len, max });
    }
    match csum {
        Some(c) if !c.fits(len) => Err(SendError::BadChecksum {
            start: c.start,
            offset: c.offset,
            len,
        }),
        _ => Ok(()),
    }
}

/// What a transmit buffer was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TxToken {
    /// A frame copied into slot `n`.
    Slot(u16),
    /// A frame in the receive buffers of `pair`, first buffer `head`.
    Rx {
        /// The receive queue's pair.
        pair: u16,
        /// The frame's first buffer.
        head: u16,
    },
}

/// A transmit queue. See the [module docs](self).
pub(crate) struct TxQueue<D: Dma> {
    pair: u16,
    vq: DriverQueue<D, TxToken>,
    bufs: DmaRegion<D>,
    slot_len: usize,
    hdr_len: usize,
    /// Free slots, first in, first out: completed in order, slots are
    /// reused in the same order as the ring's descriptors, so a stream
    /// rewrites few descriptors (see the split ring's free list).
    free: IdFifo,
    /// Receive buffers (pair, first buffer) the device completed, for
    /// their receive queue to take back.
    returned: Vec<(u16, u16)>,
    /// Frames queued from receive buffers and not taken back yet. They
    /// hold no slot but do hold descriptors (one per buffer), so they
    /// count for [`Self::in_flight`] and against [`Self::free_slots`].
    in_place: u16,
    /// Segments of the frame being queued in place.
    segs: Vec<Segment>,
}

impl<D: Dma> TxQueue<D> {
    /// Wraps an attached virtqueue; allocates a slot of `hdr_len +
    /// max_frame` bytes per entry.
    pub(crate) fn new(
        pair: u16,
        mut vq: DriverQueue<D, TxToken>,
        dma: D,
        hdr_len: usize,
        max_frame: usize,
    ) -> Result<Self, SetupError> {
        let size = vq.size();
        let slot_len = (hdr_len + max_frame).next_multiple_of(64);
        let bufs = DmaRegion::new(dma, usize::from(size) * slot_len, 64)?;
        vq.disable_callbacks();
        Ok(Self {
            pair,
            vq,
            bufs,
            slot_len,
            hdr_len,
            free: IdFifo::with_ids(usize::from(size), 0..size),
            returned: Vec::with_capacity(usize::from(size)),
            in_place: 0,
            segs: Vec::new(),
        })
    }

    fn err(&self, source: UsedError) -> SendError {
        SendError::Queue {
            pair: self.pair,
            source,
        }
    }

    /// Frames queued and not yet completed by the device.
    pub(crate) fn in_flight(&self) -> u16 {
        (usize::from(self.vq.size()) - self.free.len()) as u16 + self.in_place
    }

    /// Frames that can be queued before a reclaim: a free slot and a free
    /// descriptor each (frames sent in place take descriptors, no slot).
    pub(crate) fn free_slots(&self) -> usize {
        self.free.len().min(usize::from(self.vq.num_free()))
    }

    /// Takes back every transmit buffer the device completed.
    pub(crate) fn reclaim(&mut self) -> Result<usize, SendError> {
        let Self {
            vq,
            free,
            in_place,
            returned,
            ..
        } = self;
        // Bounded: at most `size` buffers are outstanding.
        let max = usize::from(vq.size());
        vq.pop_used_burst(max, |u| match u.token {
            TxToken::Slot(s) => {
                free.push_back(s);
            }
            TxToken::Rx { pair, head } => {
                *in_place = in_place.saturating_sub(1);
                returned.push((pair, head));
            }
        })
        .map_err(|e| self.err(e))
    }

    /// Copies a checked frame into a free slot and makes it available (no
    /// notification). `offload`: `VIRTIO_NET_F_CSUM` was negotiated, so a
    /// checksum request goes in the header; otherwise the driver completes
    /// the checksum itself and `flags` stays 0 (§5.1.9.2.1).
    pub(crate) fn enqueue(
        &mut self,
        frame: &[u8],
        csum: Option<TxChecksum>,
        offload: bool,
    ) -> Result<(), SendError> {
        if self.vq.is_broken() {
            return Err(self.err(UsedError::Broken));
        }
        // Frames sent in place hold descriptors without holding a slot,
        // so a free slot does not mean a free descriptor: take
        // completions back when either is short.
        if self.free.is_empty() || self.vq.num_free() == 0 {
            self.reclaim()?;
        }
        let len = self.hdr_len + frame.len();
        if len > self.slot_len {
            return Err(SendError::TooLong {
                len: frame.len(),
                max: self.slot_len - self.hdr_len,
            });
        }
        if self.vq.num_free() == 0 {
            return Err(SendError::QueueFull { pair: self.pair });
        }
        let Some(slot) = self.free.pop_front() else {
            return Err(SendError::QueueFull { pair: self.pair });
        };
        let off = usize::from(slot) * self.slot_len;
        let mem = self.bufs.slice();
        let mut ok = store_tx_hdr(&mem, off, self.hdr_len, if offload { csum } else { None })
            && mem.write_bytes(off + self.hdr_len, frame).is_ok();
        if let (false, Some(c)) = (offload, csum) {
            let at = off + self.hdr_len + usize::from(c.start) + usize::from(c.offset);
            ok &= complete_checksum(frame, c).is_some_and(|v| mem.write_bytes(at, &v).is_ok());
        }
        if !ok {
            // Cannot happen for a checked frame in its own slot.
            self.free.push_front(slot);
            return Err(self.err(UsedError::Broken));
        }
        let seg = Segment::new(self.bufs.addr(off), len as u32);
        // Published by the kick that ends every send call (one
        // `avail.idx` store per batch).
        match self.vq.add_deferred(&[seg], &[], TxToken::Slot(slot)) {
            Ok(_) => Ok(()),
            Err(r) => {
                self.free.push_front(slot);
                Err(self.add_err(r.error))
            }
        }
    }

    fn add_err(&self, e: AddError) -> SendError {
        match e {
            AddError::NoSpace { .. } => SendError::QueueFull { pair: self.pair },
            AddError::TooManySegments { segments, size } => SendError::TooManyBuffers {
                pair: self.pair,
                buffers: segments,
                size,
            },
            _ => self.err(UsedError::Broken),
        }
    }

    /// Queues a frame held in receive buffers of `pair` (no notification):
    /// `one` is its buffer when it has only one, otherwise `segs` fills in
    /// each buffer's device address and bytes; the first counts the header
    /// already written in front of the frame.
    #[inline]
    pub(crate) fn enqueue_in_place(
        &mut self,
        pair: u16,
        head: u16,
        one: Option<Segment>,
        segs: impl FnOnce(&mut Vec<Segment>),
    ) -> Result<(), SendError> {
        let token = TxToken::Rx { pair, head };
        let r = match one {
            Some(seg) => self.vq.add_deferred(&[seg], &[], token),
            None => {
                let mut v = core::mem::take(&mut self.segs);
                v.clear();
                segs(&mut v);
                let r = self.vq.add_deferred(&v, &[], token);
                self.segs = v;
                r
            }
        };
        match r {
            Ok(_) => {
                self.in_place += 1;
                Ok(())
            }
            Err(r) => Err(self.add_err(r.error)),
        }
    }

    /// A hint before queueing `n` frames: see
    /// [`DriverQueue::prefetch_adds`].
    pub(crate) fn prefetch_adds(&self, n: usize) {
        self.vq.prefetch_adds(n.min(usize::from(u16::MAX)) as u16);
    }

    /// Receive buffers (pair, first buffer) completed since the last call.
    pub(crate) fn take_returned(&mut self) -> impl Iterator<Item = (u16, u16)> + '_ {
        self.returned.drain(..)
    }

    /// Notifies the device if it wants a notification (§2.7.10, §2.8.10).
    pub(crate) fn kick<T: Transport + ?Sized>(&mut self, t: &mut T) -> Result<(), SendError> {
        kick(t, &mut self.vq).map_err(|e| self.err(e))
    }

    /// After a device reset: every slot free again (receive buffers in
    /// flight are forgotten: their queues were reset too).
    pub(crate) fn reset(&mut self) {
        self.vq.reset();
        self.returned.clear();
        self.in_place = 0;
        self.vq.disable_callbacks();
        self.free = IdFifo::with_ids(usize::from(self.vq.size()), 0..self.vq.size());
    }
}
