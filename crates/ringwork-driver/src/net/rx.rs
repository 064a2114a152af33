//! One receive queue (VIRTIO 1.4 §5.1.9.3, §5.1.9.4): a DMA buffer per
//! queue entry, allocated once and made available again as soon as the
//! frame in it was copied out, so the queue stays fully populated.
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
//! have filled more: buffers are not made available again while a frame
//! is gathered) is an error that breaks the queue until reset. A
//! `gso_type` the driver did not negotiate, or checksum offsets outside
//! the frame, drop that frame only. Without MRG_RXBUF `num_buffers` is
//! ignored (devices that copy a tap header leave it 0). Bytes are copied
//! out with bounds-checked reads; nothing here panics.

use alloc::vec::Vec;

use ringwork_queue::{Dma, DriverQueue, Segment, UsedError};
use ringwork_spec::net::VIRTIO_NET_HDR_GSO_NONE;
use ringwork_transport::driver::Transport;

use super::error::RecvError;
use super::hdr::{parse_rx, RxHdr, RxInfo, MAX_HDR};
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

/// A receive queue. See the [module docs](self).
pub(crate) struct RxQueue<D: Dma> {
    pair: u16,
    vq: DriverQueue<D, u16>,
    bufs: DmaRegion<D>,
    layout: RxLayout,
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

impl<D: Dma> RxQueue<D> {
    /// Wraps an attached virtqueue and allocates its buffers.
    pub(crate) fn new(
        pair: u16,
        vq: DriverQueue<D, u16>,
        dma: D,
        layout: RxLayout,
    ) -> Result<Self, SetupError> {
        let size = usize::from(vq.size());
        let bufs = DmaRegion::new(dma, size * layout.buf_len as usize, 64)?;
        Ok(Self {
            pair,
            vq,
            bufs,
            layout,
            parts: Vec::with_capacity(size),
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

    /// Makes every buffer available (setup, and after a reset); no
    /// notification.
    pub(crate) fn fill(&mut self) -> Result<(), RecvError> {
        for slot in 0..self.vq.size() {
            self.post(slot)?;
        }
        self.vq.publish();
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

    /// Notifies the device if it wants a notification.
    pub(crate) fn kick<T: Transport + ?Sized>(&mut self, t: &mut T) -> Result<(), RecvError> {
        kick(t, &mut self.vq).map_err(|e| self.queue_err(e))
    }

    fn fail(&mut self, e: RecvError) -> RecvError {
        self.broken = true;
        e
    }

    /// Takes used buffers until a whole frame is gathered (`None`: not
    /// yet; used buffer notifications are re-armed first).
    fn gather(&mut self) -> Result<Option<RxInfo>, RecvError> {
        if self.broken || self.vq.is_broken() {
            return Err(self.queue_err(UsedError::Broken));
        }
        // Bounded: at most `size` buffers are outstanding.
        for _ in 0..=self.vq.size() {
            if self.expected != 0 && self.parts.len() >= usize::from(self.expected) {
                return Ok(Some(self.frame_info()));
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
        let mut raw = [0u8; MAX_HDR];
        let off = usize::from(slot) * self.layout.buf_len as usize;
        if self
            .bufs
            .slice()
            .read_bytes(off, &mut raw[..hdr_len])
            .is_err()
        {
            return Err(self.fail(self.queue_err(UsedError::Broken)));
        }
        self.hdr = parse_rx(&raw[..hdr_len]);
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

    fn frame_info(&self) -> RxInfo {
        let total: usize = self.parts.iter().map(|&(_, l)| l as usize).sum();
        RxInfo {
            len: total.saturating_sub(self.layout.hdr_len),
            csum: super::hdr::RxChecksum::None,
            num_buffers: self.expected,
            flags: self.hdr.flags,
        }
    }

    /// Makes the gathered frame's buffers available again.
    fn recycle(&mut self) -> Result<(), RecvError> {
        let mut parts = core::mem::take(&mut self.parts);
        self.expected = 0;
        let mut r = Ok(());
        for &(slot, _) in &parts {
            if r.is_ok() {
                r = self.post(slot);
            }
        }
        parts.clear();
        self.parts = parts;
        r
    }

    /// The next whole frame, checked; a frame that fails the per-frame
    /// checks is dropped (its buffers reposted) and reported.
    pub(crate) fn next(&mut self) -> Result<Option<RxInfo>, RecvError> {
        let Some(mut info) = self.gather()? else {
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
        match self.hdr.checksum(info.len, self.layout.guest_csum) {
            Some(c) => info.csum = c,
            None => {
                let h = self.hdr;
                self.recycle()?;
                return Err(RecvError::BadChecksum {
                    pair: self.pair,
                    start: h.csum_start,
                    offset: h.csum_offset,
                    len: info.len,
                });
            }
        }
        Ok(Some(info))
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

    /// After a device reset: buffers forgotten and made available again
    /// (before DRIVER_OK; no notification), not broken.
    pub(crate) fn reset(&mut self) {
        self.vq.reset();
        self.parts.clear();
        self.expected = 0;
        self.broken = false;
        if self.polling {
            self.vq.disable_callbacks();
        }
    }
}
