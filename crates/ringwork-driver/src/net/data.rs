//! The data path on [`NetDriver`]: sending frames (VIRTIO 1.4 §5.1.9.2),
//! receiving them (§5.1.9.4), one at a time or in batches that notify the
//! device once.
//!
//! Frames are copied: into a transmit slot on send, out of the receive
//! buffers on receive, so the caller's memory is never shared with the
//! device. [`NetDriver::send_batch`], [`NetDriver::recv_into`] and
//! [`NetDriver::recv_batch`] allocate nothing per frame
//! ([`NetDriver::recv_batch`] grows one scratch buffer to the largest
//! frame seen).
//!
//! Trust and panic contract: see the [module docs](super); nothing here
//! panics on device input.

use alloc::vec;
use alloc::vec::Vec;

use ringwork_queue::Dma;
use ringwork_spec::net::VIRTIO_NET_F_CSUM;
use ringwork_transport::driver::Transport;

use super::error::{RecvError, SendError};
use super::hdr::{RxInfo, TxChecksum};
use super::rx::RxQueue;
use super::tx::{check_frame, TxQueue};
use super::NetDriver;
use crate::common::wait_for;

/// A received frame with what its header said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RxFrame {
    /// The Ethernet frame (no virtio header).
    pub data: Vec<u8>,
    /// Header information (`info.len == data.len()`).
    pub info: RxInfo,
}

/// A frame for [`NetDriver::send_batch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxFrame<'a> {
    /// The Ethernet frame (no virtio header).
    pub data: &'a [u8],
    /// A checksum to complete, if any.
    pub csum: Option<TxChecksum>,
}

impl<'a> TxFrame<'a> {
    /// A fully checksummed frame.
    pub fn new(data: &'a [u8]) -> Self {
        Self { data, csum: None }
    }
}

impl<T: Transport, D: Dma + Clone> NetDriver<T, D> {
    pub(crate) fn txq(&mut self, pair: u16) -> Result<&mut TxQueue<D>, SendError> {
        let pairs = self.queue_pairs();
        let active = self.active_pairs;
        if pair >= pairs {
            return Err(SendError::NoSuchPair { pair, pairs });
        }
        if pair >= active {
            return Err(SendError::PairNotActive { pair, active });
        }
        self.state
            .tx
            .get_mut(usize::from(pair))
            .ok_or(SendError::NoSuchPair { pair, pairs })
    }

    fn rxq(&mut self, pair: u16) -> Result<&mut RxQueue<D>, RecvError> {
        let pairs = self.queue_pairs();
        self.state
            .rx
            .get_mut(usize::from(pair))
            .ok_or(RecvError::NoSuchPair { pair, pairs })
    }

    /// Queues `frame` on transmitq `pair` and notifies the device (if it
    /// wants). `csum`: a checksum to complete — by the device with
    /// `VIRTIO_NET_F_CSUM` (`NEEDS_CSUM`), by the driver otherwise
    /// (§5.1.9.2.1: `flags` 0, a fully checksummed frame). Completed
    /// transmit buffers are taken back first when the queue is full.
    pub fn send(
        &mut self,
        pair: u16,
        frame: &[u8],
        csum: Option<TxChecksum>,
    ) -> Result<(), SendError> {
        check_frame(frame, csum, self.config.mtu)?;
        let offload = self.features.contains(VIRTIO_NET_F_CSUM);
        let r = self.txq(pair)?.enqueue(frame, csum, offload);
        self.settle(pair);
        r?;
        let Self {
            transport, state, ..
        } = self;
        match state.tx.get_mut(usize::from(pair)) {
            Some(q) => q.kick(transport),
            None => Ok(()),
        }
    }

    /// Queues as many of `frames` as fit on transmitq `pair` (taking back
    /// completed buffers first) and notifies the device once. Returns how
    /// many were queued (the first ones). Every frame is checked before
    /// any is queued.
    pub fn send_batch(&mut self, pair: u16, frames: &[TxFrame<'_>]) -> Result<usize, SendError> {
        let mtu = self.config.mtu;
        for f in frames {
            check_frame(f.data, f.csum, mtu)?;
        }
        let offload = self.features.contains(VIRTIO_NET_F_CSUM);
        self.txq(pair)?.reclaim()?;
        self.settle(pair);
        let q = self.txq(pair)?;
        let mut sent = 0;
        let mut r = Ok(());
        for f in frames {
            match q.enqueue(f.data, f.csum, offload) {
                Ok(()) => sent += 1,
                Err(SendError::QueueFull { .. }) => break,
                Err(e) => {
                    r = Err(e);
                    break;
                }
            }
        }
        // The frames queued before an error go out too; that error comes
        // first.
        self.settle(pair);
        let Self {
            transport, state, ..
        } = self;
        let k = match state.tx.get_mut(usize::from(pair)) {
            Some(q) => q.kick(transport),
            None => Ok(()),
        };
        r?;
        k.map(|()| sent)
    }

    /// Takes back the transmit buffers the device completed on `pair`;
    /// returns how many.
    pub fn reclaim(&mut self, pair: u16) -> Result<usize, SendError> {
        let pairs = self.queue_pairs();
        let n = self
            .state
            .tx
            .get_mut(usize::from(pair))
            .ok_or(SendError::NoSuchPair { pair, pairs })?
            .reclaim();
        self.settle(pair);
        n
    }

    /// Frames queued on transmitq `pair` and not yet taken back (0 for a
    /// pair that does not exist).
    pub fn tx_in_flight(&self, pair: u16) -> u16 {
        self.state
            .tx
            .get(usize::from(pair))
            .map_or(0, |q| q.in_flight())
    }

    /// Frames transmitq `pair` can take before completions must be taken
    /// back (0 for a pair that does not exist).
    pub fn tx_free(&self, pair: u16) -> usize {
        self.state
            .tx
            .get(usize::from(pair))
            .map_or(0, |q| q.free_slots())
    }

    /// Receive buffers the device holds on `pair` (0 for a pair that does
    /// not exist).
    pub fn rx_available(&self, pair: u16) -> u16 {
        self.state
            .rx
            .get(usize::from(pair))
            .map_or(0, |q| q.available())
    }

    /// Copies the next frame of receiveq `pair` into `buf`, makes its
    /// buffers available again and notifies the device (if it wants).
    /// `None` when no whole frame is there (used buffer notifications are
    /// re-armed). [`RecvError::BufferTooSmall`] leaves the frame queued.
    pub fn recv_into(&mut self, pair: u16, buf: &mut [u8]) -> Result<Option<RxInfo>, RecvError> {
        let r = self.recv_one(pair, buf);
        let Self {
            transport, state, ..
        } = self;
        if let Some(q) = state.rx.get_mut(usize::from(pair)) {
            q.kick(transport)?;
        }
        r
    }

    fn recv_one(&mut self, pair: u16, buf: &mut [u8]) -> Result<Option<RxInfo>, RecvError> {
        take_next(self.rxq(pair)?, buf)
    }

    /// The next frame of receiveq `pair`, in a new vector (see
    /// [`Self::recv_into`]).
    pub fn recv(&mut self, pair: u16) -> Result<Option<RxFrame>, RecvError> {
        let q = self.rxq(pair)?;
        // Every path kicks: a dropped frame's buffers were reposted too.
        // The frame's own error comes first.
        let r = match q.next() {
            Ok(Some(info)) => {
                let mut data = vec![0u8; info.len];
                q.take(&mut data).map(|()| Some(RxFrame { data, info }))
            }
            other => other.map(|_| None),
        };
        let Self {
            transport, state, ..
        } = self;
        let k = match state.rx.get_mut(usize::from(pair)) {
            Some(q) => q.kick(transport),
            None => Ok(()),
        };
        let frame = r?;
        k.map(|()| frame)
    }

    /// Hands up to `max` frames of receiveq `pair` to `f` (the frame
    /// bytes and their header information), making each frame's buffers
    /// available again at once and notifying the device once at the end.
    /// Returns how many frames `f` got. A frame dropped for a per-frame
    /// error ([`RecvError::BadChecksum`], [`RecvError::UnexpectedGso`])
    /// ends the batch with that error after the notification.
    pub fn recv_batch(
        &mut self,
        pair: u16,
        max: usize,
        mut f: impl FnMut(&[u8], RxInfo),
    ) -> Result<usize, RecvError> {
        let mut scratch = core::mem::take(&mut self.scratch);
        let mut n = 0;
        let mut r = Ok(());
        {
            let q = self.rxq(pair)?;
            while n < max {
                match q.next() {
                    Ok(Some(info)) => {
                        if scratch.len() < info.len {
                            scratch.resize(info.len, 0);
                        }
                        let dst = &mut scratch[..info.len];
                        if let Err(e) = q.take(dst) {
                            r = Err(e);
                            break;
                        }
                        f(dst, info);
                        n += 1;
                    }
                    Ok(None) => break,
                    Err(e) => {
                        r = Err(e);
                        break;
                    }
                }
            }
        }
        self.scratch = scratch;
        let Self {
            transport, state, ..
        } = self;
        if let Some(q) = state.rx.get_mut(usize::from(pair)) {
            q.kick(transport)?;
        }
        r.map(|()| n)
    }

    /// Busy-poll mode for every receive queue: with `on`, the driver asks
    /// the device not to send used buffer notifications (§2.7.7.1:
    /// `VIRTQ_AVAIL_F_NO_INTERRUPT`, or `used_event` out of reach with
    /// `VIRTIO_F_EVENT_IDX`; §2.8.10 for packed rings) and an empty
    /// [`Self::recv_into`] / [`Self::recv_batch`] no longer re-arms them, so
    /// a device that polls its rings never has to signal. Off (the default):
    /// an empty receive re-arms notifications, so interrupts wake a waiter.
    /// [`Self::recv_wait`] re-arms for its own wait either way. Transmit
    /// queues never ask for notifications (§5.1.9.2.3).
    pub fn set_rx_polling(&mut self, on: bool) {
        for q in self.state.rx.iter_mut() {
            q.set_polling(on);
        }
    }

    /// Waits (bounded, [`Transport::wait_interrupt`]) for the next frame of
    /// receiveq `pair` and copies it into `buf` (see [`Self::recv_into`]).
    pub fn recv_wait(&mut self, pair: u16, buf: &mut [u8]) -> Result<RxInfo, RecvError> {
        let pairs = self.queue_pairs();
        let Self {
            transport,
            state,
            irq,
            ..
        } = self;
        let q = state
            .rx
            .get_mut(usize::from(pair))
            .ok_or(RecvError::NoSuchPair { pair, pairs })?;
        let polling = q.polling();
        q.set_polling(false);
        let r = wait_for(transport, irq, || take_next(q, buf));
        if polling {
            q.set_polling(true);
        }
        q.kick(transport)?;
        r
    }
}

/// Copies the next whole frame of `q` into `buf`.
fn take_next<D: Dma>(q: &mut RxQueue<D>, buf: &mut [u8]) -> Result<Option<RxInfo>, RecvError> {
    let Some(info) = q.next()? else {
        return Ok(None);
    };
    if buf.len() < info.len {
        return Err(RecvError::BufferTooSmall {
            need: info.len,
            got: buf.len(),
        });
    }
    q.take(&mut buf[..info.len])?;
    Ok(Some(info))
}
