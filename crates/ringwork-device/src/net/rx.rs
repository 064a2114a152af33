//! The receive path (VIRTIO 1.4 §5.1.9.3 "Setting Up Receive Buffers",
//! §5.1.9.4 "Processing of Incoming Packets"): frames the backend has for
//! this queue pair are filtered ([`RxFilter`]), bounded by the MTU, given
//! a `virtio_net_hdr` and written into receiveq buffers.
//!
//! Without VIRTIO_NET_F_MRG_RXBUF a frame goes into one buffer with
//! `num_buffers` 1; a buffer too small for header and frame is returned
//! with used length 0 and the frame dropped (`rx_buffer_too_small`). With
//! it, a frame spreads over as many buffers as it needs: every buffer but
//! the last is filled completely, `num_buffers` in the first buffer's
//! header says how many, and all of them are published together. When the
//! ring runs dry in the middle of a frame, the buffers taken so far wait
//! (unpublished) with the frame until the driver adds more.
//!
//! Checksums: a frame that still needs its checksum (the sender's
//! NEEDS_CSUM) keeps the request in the header when the driver negotiated
//! VIRTIO_NET_F_GUEST_CSUM and the checksums in front of it hold (an IPv4
//! header checksum, [`Packet::preceding_checksums_ok`]; §5.1.9.4.1 item
//! 1); otherwise the device completes the checksum in software and sets
//! `flags` to 0 (§5.1.9.4.1: without GUEST_CSUM, flags
//! are zero and the packet fully checksummed).
//!
//! Segmentation offload (only on a backend that supports it,
//! [`NetBackend::offloads`]): a GSO frame from the backend is delivered
//! whole, with its `gso_type`, `hdr_len`, `gso_size` and NEEDS_CSUM, to a
//! driver that negotiated the GUEST_TSO4/TSO6/UFO/USO feature for its
//! type (and GUEST_ECN for the ECN bit); it is bounded by
//! [`MAX_GSO_FRAME_LEN`] instead of the MTU. Any other GSO frame, and a
//! frame whose offload fields do not fit it, is dropped
//! (`rx_offload_refused`); the device does not segment (§5.1.9.4.1: no
//! GSO type the driver did not negotiate, and GSO only with NEEDS_CSUM).
//!
//! [`NetBackend::offloads`]: super::NetBackend::offloads
//! [`NetOptions::rx_streaming_stores`]: super::NetOptions::rx_streaming_stores
//!
//! Receive buffer exhaustion: the worker holds one frame and waits for
//! the driver to add buffers (it stops watching the backend meanwhile);
//! frames arriving meanwhile wait in the backend, which drops what it has
//! no room for. Nothing blocks, nothing breaks.
//!
//! Bursts: the worker fetches up to [`RX_BATCH`] frames from the backend,
//! pops one receive buffer per frame in hand at once and prefetches them
//! for writing before filling the first (their lines sit in the driver's
//! cache); buffers popped for frames the filter then drops serve the next
//! frames, in order. With [`NetOptions::rx_streaming_stores`] no buffer is
//! prefetched, a frame that fits one buffer is written with streaming
//! stores, and one store fence precedes each publication. Used
//! entries are published every [`RX_BATCH`]
//! frames, so a polling driver gets the first frames of a long burst
//! early. While the host polls, the backend is told not to ring its
//! doorbell ([`NetBackend::set_rx_wakeup`](super::NetBackend::set_rx_wakeup)).
//!
//! Trust and panic contract: buffers are driver-controlled and written
//! only through the chain writer; a chain outside guest memory breaks the
//! queue. Nothing here panics.

use std::collections::VecDeque;
use std::os::fd::RawFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use ringwork_queue::device::{DescChain, UsedToken};
use ringwork_spec::net::*;

use super::device::{has, Shared};
use super::filter::RxFilter;
use super::gso::{Offloads, VnetHdr};
use super::packet::{Packet, ETH_HLEN, MAX_FRAME_LEN, MAX_GSO_FRAME_LEN, VLAN_HLEN};
use super::pool;
use super::stats::{add, bump};
use crate::model::{DeviceError, QueueCtx, QueueSet, QueueWorker};

/// Frames per process call; the backend fd stays readable when more wait,
/// so the host calls again.
const BUDGET: usize = 256;
/// Frames a receive worker fetches from its backend at once (and so
/// holds at most while it waits for receive buffers).
pub const RX_BATCH: usize = 32;
/// Bytes of each receive buffer prefetched for writing before a burst is
/// filled: a header and a minimum-size frame.
const PREFETCH_LEN: usize = 128;

/// The worker of receiveq(`pair` + 1).
pub(super) struct RxWorker {
    shared: Arc<Shared>,
    pair: u16,
    queue: u16,
    hdr_len: usize,
    mrg: bool,
    guest_csum: bool,
    /// What the driver accepts (GUEST_ features negotiated).
    guest: Offloads,
    /// Largest frame passed on (untagged; a VLAN tag adds four bytes).
    max_frame: usize,
    filter: RxFilter,
    filter_gen: u64,
    /// A frame taken from the backend and not delivered yet.
    pending: Option<Packet>,
    /// Frames fetched from the backend in one batch, not looked at yet
    /// (empty between calls, except while `pending` waits for buffers).
    inbox: VecDeque<Packet>,
    /// With MRG_RXBUF: buffers already filled with the start of `pending`
    /// (unpublished), and how many frame bytes they hold.
    partial: Vec<(DescChain, u32)>,
    written: usize,
    /// The queue was not running or broken at the last call: do not
    /// watch the backend.
    stalled: bool,
    /// An empty chain, what `popped` falls back to for an index `pop`
    /// never returned (which does not happen).
    spare: DescChain,
    /// Receive buffers popped ahead, `ready[ready_at..ready_len]`, for the
    /// frames in hand: all of a burst are prefetched for writing before the
    /// first is filled (their lines are in the driver's cache). Given back
    /// to the ring by `quiesce` if unused.
    ready: Vec<DescChain>,
    ready_at: usize,
    ready_len: usize,
    /// What the backend was last told by [`NetBackend::set_rx_wakeup`]
    /// (`false` while the host polls).
    ///
    /// [`NetBackend::set_rx_wakeup`]: super::NetBackend::set_rx_wakeup
    wakeup: bool,
    batch: Vec<(UsedToken, u32)>,
    /// Frames are written with streaming stores
    /// ([`NetOptions::rx_streaming_stores`](super::NetOptions::rx_streaming_stores)).
    streaming: bool,
    /// Streaming stores were made since the last fence: `flush` fences
    /// before it publishes.
    streamed: bool,
    /// Frames written with streaming stores in this `process` call (for
    /// `rx_streamed`, published once per call).
    streamed_frames: u64,
}

enum Outcome {
    Delivered,
    Dropped,
    NoBuffers,
}

impl RxWorker {
    pub(super) fn new(shared: Arc<Shared>, pair: u16, features: u64) -> Self {
        let max_frame = if has(features, VIRTIO_NET_F_MTU) {
            usize::from(shared.opts.mtu) + ETH_HLEN
        } else {
            MAX_FRAME_LEN - VLAN_HLEN
        };
        let filter_gen = shared.filter_gen.load(Ordering::Acquire);
        let filter = shared.lock().filter.clone();
        shared.backend.set_rx_wakeup(pair, true);
        let streaming = shared.opts.rx_streaming_stores;
        Self {
            pair,
            queue: 2 * pair,
            hdr_len: net_hdr_len(|b| has(features, b)),
            mrg: has(features, VIRTIO_NET_F_MRG_RXBUF),
            guest_csum: has(features, VIRTIO_NET_F_GUEST_CSUM),
            guest: Offloads::from_guest_features(features),
            max_frame,
            filter,
            filter_gen,
            shared,
            pending: None,
            inbox: VecDeque::with_capacity(RX_BATCH),
            partial: Vec::new(),
            written: 0,
            stalled: false,
            spare: DescChain::new(),
            ready: (0..RX_BATCH).map(|_| DescChain::new()).collect(),
            ready_at: 0,
            ready_len: 0,
            wakeup: true,
            batch: Vec::new(),
            streaming,
            streamed: false,
            streamed_frames: 0,
        }
    }

    fn refresh_filter(&mut self) {
        let g = self.shared.filter_gen.load(Ordering::Acquire);
        if g != self.filter_gen {
            self.filter = self.shared.lock().filter.clone();
            self.filter_gen = g;
        }
    }

    /// The next frame worth delivering, from `pending`, the inbox or the
    /// backend (fetching at most `budget` frames); drops (and counts) the
    /// others.
    fn next_frame(&mut self, budget: usize) -> Option<Packet> {
        if let Some(p) = self.pending.take() {
            return Some(p);
        }
        let st = &self.shared.stats;
        loop {
            if self.inbox.is_empty() {
                let want = budget.clamp(1, RX_BATCH);
                self.shared
                    .backend
                    .recv_batch(self.pair, &mut self.inbox, want);
            }
            let mut p = self.inbox.pop_front()?;
            if self.pair >= self.shared.active_pairs.load(Ordering::Acquire) {
                bump(&st.rx_inactive_queue);
                continue;
            }
            if !self.filter.accepts(&p) {
                bump(&st.rx_filtered);
                continue;
            }
            if p.check_offloads().is_err() || !self.guest.allows(p.gso) {
                bump(&st.rx_offload_refused);
                continue;
            }
            let tag = if p.vlan_id().is_some() { VLAN_HLEN } else { 0 };
            let limit = match p.gso {
                Some(_) => self.shared.max_frame_len.min(MAX_GSO_FRAME_LEN),
                None => (self.max_frame + tag).min(MAX_FRAME_LEN),
            };
            if p.data.len() > limit {
                bump(&st.rx_oversized);
                continue;
            }
            // A GSO frame keeps its request (the guest negotiated GUEST_CSUM
            // with any GUEST_ GSO feature; no preceding checksums are
            // vouched for with GSO, §5.1.9.4).
            // (Only a frame with a checksum pending: the calls, and the
            // store `complete_checksum` makes, are skipped for the rest.)
            if p.gso.is_none()
                && p.csum.is_some()
                && (!self.guest_csum || !p.preceding_checksums_ok())
            {
                p.complete_checksum();
            }
            return Some(p);
        }
    }

    /// The header for `p` spread over `num_buffers` buffers.
    fn header(&self, p: &Packet, num_buffers: u16) -> [u8; NET_HDR_SIZE] {
        VnetHdr::of(p).to_bytes_with(num_buffers)
    }

    /// Pops a receive buffer: the index in `ready` of the next buffer,
    /// valid until the next call; `None` when the ring is empty
    /// (notifications are then enabled, so the driver's next buffer wakes
    /// the worker). `ready` is refilled with one buffer for each frame in
    /// hand.
    #[inline]
    fn pop(&mut self, q: &mut QueueCtx<'_>) -> Result<Option<usize>, DeviceError> {
        if self.ready_at < self.ready_len {
            self.ready_at += 1;
            return Ok(Some(self.ready_at - 1));
        }
        self.pop_refill(q)
    }

    /// [`Self::pop`] when `ready` is used up: refills it (out of line).
    #[inline(never)]
    fn pop_refill(&mut self, q: &mut QueueCtx<'_>) -> Result<Option<usize>, DeviceError> {
        loop {
            if self.ready_at < self.ready_len {
                self.ready_at += 1;
                return Ok(Some(self.ready_at - 1));
            }
            self.refill(q)?;
            if self.ready_len > 0 {
                continue;
            }
            if !q.enable_notification()? {
                return Ok(None);
            }
        }
    }

    /// Takes the buffer `pop` returned out of `ready` (to keep it with a
    /// frame spread over several buffers).
    fn take_popped(&mut self, i: usize) -> DescChain {
        self.ready
            .get_mut(i)
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// The buffer `pop` returned.
    fn popped(&self, i: usize) -> &DescChain {
        // `pop` only returns indices below `ready_len` <= `ready.len()`.
        self.ready.get(i).unwrap_or(&self.spare)
    }

    /// Pops up to one buffer per frame in hand into `ready` (which is
    /// used up) and prefetches them all.
    fn refill(&mut self, q: &mut QueueCtx<'_>) -> Result<(), DeviceError> {
        let want = (self.inbox.len() + 1).min(self.ready.len());
        self.ready_at = 0;
        let burst = self.ready.get_mut(..want).unwrap_or_default();
        self.ready_len = 0;
        self.ready_len = q.pop_burst(burst)?;
        // For writing, the lines from the frame's first byte on: the
        // header's line only when the frame shares it (`fill_one` stores
        // the header only when it changed). Not with streaming stores,
        // which are made not to take the lines.
        if self.streaming {
            return Ok(());
        }
        for c in self.ready.get(..self.ready_len).unwrap_or_default() {
            c.prefetch_at(q.mem(), self.hdr_len, PREFETCH_LEN, true);
        }
        Ok(())
    }

    /// Writes the header and the whole frame into one buffer (which
    /// holds `need` bytes or more).
    #[inline]
    fn fill_one(&mut self, q: &mut QueueCtx<'_>, i: usize, p: &Packet) -> Result<(), DeviceError> {
        let hdr = self.header(p, 1);
        let chain = self.popped(i);
        let need = self.hdr_len + p.data.len();
        let token = chain.token();
        // One segment holding it all (the usual buffer): one translation.
        // The header is stored only when the buffer does not already hold
        // it, which reads 12 bytes of a device-writable buffer: a
        // deliberate exception to VIRTIO 1.4 §2.7.5.1 / §2.8.15's SHOULD
        // NOT (docs/CONFORMANCE.md), to leave the line shared with the
        // driver (docs/PERFORMANCE.md).
        let streaming = self.streaming;
        let fast = chain.writable_window(q.mem(), need).is_some_and(|w| {
            w.write_bytes_if_changed(0, &hdr[..self.hdr_len]).is_ok()
                && if streaming {
                    w.write_bytes_streaming(self.hdr_len, &p.data).is_ok()
                } else {
                    w.write_bytes(self.hdr_len, &p.data).is_ok()
                }
        });
        if !fast {
            let mut w = chain.writer(q.mem());
            let r = w.write(&hdr[..self.hdr_len]).and_then(|_| w.write(&p.data));
            if let Err(e) = r {
                return Err(q.chain_error(e));
            }
        }
        if fast && streaming {
            self.streamed = true;
            self.streamed_frames += 1;
        }
        self.batch
            .push((token, (self.hdr_len + p.data.len()) as u32));
        Ok(())
    }

    fn deliver_single(&mut self, q: &mut QueueCtx<'_>, p: &Packet) -> Result<Outcome, DeviceError> {
        let Some(i) = self.pop(q)? else {
            return Ok(Outcome::NoBuffers);
        };
        let need = self.hdr_len + p.data.len();
        let chain = self.popped(i);
        if (chain.writable_len() as usize) < need {
            self.batch.push((chain.token(), 0));
            return Ok(Outcome::Dropped);
        }
        self.fill_one(q, i, p)?;
        Ok(Outcome::Delivered)
    }

    fn deliver_merged(&mut self, q: &mut QueueCtx<'_>, p: &Packet) -> Result<Outcome, DeviceError> {
        // The common case first: the whole frame fits in the next buffer.
        while self.partial.is_empty() {
            let Some(i) = self.pop(q)? else {
                return Ok(Outcome::NoBuffers);
            };
            let chain = self.popped(i);
            let room = chain.writable_len() as usize;
            if room < self.hdr_len {
                // Cannot even hold the header (§5.1.9.3.1: each buffer is
                // at least that big); give it back empty.
                bump(&self.shared.stats.rx_buffer_too_small);
                self.batch.push((chain.token(), 0));
                continue;
            }
            if room >= self.hdr_len + p.data.len() {
                self.fill_one(q, i, p)?;
                return Ok(Outcome::Delivered);
            }
            // Spread over several buffers: this one first.
            let mut w = chain.writer(q.mem());
            let skip = w.skip(self.hdr_len);
            let n = match w.write(&p.data) {
                Ok(n) => n,
                Err(e) => return Err(q.chain_error(e)),
            };
            self.written = n;
            let chain = self.take_popped(i);
            self.partial.push((chain, (skip + n) as u32));
        }
        while self.written < p.data.len() {
            if self.partial.len() >= usize::from(q.queue().size()) {
                // The whole ring cannot hold the frame: waiting would wait
                // forever. Give the buffers back empty and drop it.
                self.batch
                    .extend(self.partial.drain(..).map(|(c, _)| (c.token(), 0)));
                self.written = 0;
                return Ok(Outcome::Dropped);
            }
            let Some(i) = self.pop(q)? else {
                return Ok(Outcome::NoBuffers);
            };
            let mut w = self.popped(i).writer(q.mem());
            let n = match w.write(p.data.get(self.written..).unwrap_or_default()) {
                Ok(n) => n,
                Err(e) => return Err(q.chain_error(e)),
            };
            self.written += n;
            let chain = self.take_popped(i);
            self.partial.push((chain, n as u32));
        }
        let count = u16::try_from(self.partial.len()).unwrap_or(u16::MAX);
        let hdr = self.header(p, count);
        if let Some((first, _)) = self.partial.first() {
            if let Err(e) = first.writer(q.mem()).write(&hdr[..self.hdr_len]) {
                return Err(q.chain_error(e));
            }
        }
        // Published together, after any buffers given back before them.
        self.batch
            .extend(self.partial.drain(..).map(|(c, len)| (c.token(), len)));
        self.written = 0;
        Ok(Outcome::Delivered)
    }

    fn flush(&mut self, q: &mut QueueCtx<'_>) -> Result<(), DeviceError> {
        if self.streamed {
            // The frames before the used entries that publish them.
            ringwork_queue::streaming_fence();
            self.streamed = false;
        }
        let r = q.add_used_batch(&self.batch);
        self.batch.clear();
        r
    }
}

impl QueueWorker for RxWorker {
    /// The backend's fd while the worker can take frames; nothing while
    /// it waits for receive buffers (the queue's kick wakes it then).
    fn event_fds(&self) -> Vec<RawFd> {
        if self.pending.is_some() || !self.inbox.is_empty() || self.stalled {
            return Vec::new();
        }
        self.shared.backend.rx_fd(self.pair).into_iter().collect()
    }

    fn process(&mut self, qs: &mut QueueSet<'_>) -> Result<(), DeviceError> {
        let wakeup = !qs.is_polling();
        let Some(mut q) = qs.get(self.queue) else {
            self.stalled = true;
            return Ok(());
        };
        self.stalled = q.queue().is_broken();
        if self.stalled {
            return Ok(());
        }
        self.refresh_filter();
        if wakeup != self.wakeup {
            self.shared.backend.set_rx_wakeup(self.pair, wakeup);
            self.wakeup = wakeup;
        }
        let mut result = Ok(());
        // Counted locally and published once per call (an atomic add per
        // frame costs more than the rest of the bookkeeping).
        let (mut packets, mut bytes, mut gso) = (0u64, 0u64, 0u64);
        for done in 0..BUDGET {
            let Some(p) = self.next_frame(BUDGET - done) else {
                break;
            };
            let r = if self.mrg {
                self.deliver_merged(&mut q, &p)
            } else {
                self.deliver_single(&mut q, &p)
            };
            match r {
                Ok(Outcome::Delivered) => {
                    packets += 1;
                    bytes += p.data.len() as u64;
                    gso += u64::from(p.gso.is_some());
                    pool::give(p.data);
                }
                Ok(Outcome::Dropped) => {
                    bump(&self.shared.stats.rx_buffer_too_small);
                    pool::give(p.data);
                }
                Ok(Outcome::NoBuffers) => {
                    self.pending = Some(p);
                    break;
                }
                Err(e) => {
                    self.stalled = true;
                    result = Err(e);
                    break;
                }
            }
            // Published a batch at a time, so a driver that polls gets the
            // first frames while the rest are still being written.
            if self.batch.len() >= RX_BATCH {
                if let Err(e) = self.flush(&mut q) {
                    self.stalled = true;
                    result = Err(e);
                    break;
                }
            }
        }
        if packets > 0 {
            let st = &self.shared.stats;
            add(&st.rx_packets, packets);
            add(&st.rx_bytes, bytes);
            if gso > 0 {
                add(&st.rx_gso, gso);
            }
        }
        if self.streamed_frames > 0 {
            add(&self.shared.stats.rx_streamed, self.streamed_frames);
            self.streamed_frames = 0;
        }
        if !self.batch.is_empty() {
            self.flush(&mut q)?;
        }
        // Every frame written is published, and every streamed one behind
        // its fence, before the call returns.
        debug_assert!(!self.streamed);
        result?;
        q.signal()
    }

    /// Gives the buffers of a half-delivered frame and the buffers popped
    /// ahead and not filled back to the ring unused (the driver's position
    /// goes back to them, [`QueueCtx::give_back`]), and forgets the frames
    /// held. Where the ring cannot take them back (an in-flight record is
    /// kept), they are completed with used length 0, which the driver drops.
    fn quiesce(&mut self, qs: &mut QueueSet<'_>) -> Result<(), DeviceError> {
        let held = usize::from(self.pending.take().is_some()) + self.inbox.len();
        self.inbox.clear();
        add(&self.shared.stats.rx_inactive_queue, held as u64);
        let ready = self.ready.get(self.ready_at..self.ready_len);
        let ready = ready.unwrap_or_default();
        if self.partial.is_empty() && ready.is_empty() {
            return Ok(());
        }
        self.written = 0;
        let Some(mut q) = qs.get(self.queue) else {
            self.partial.clear();
            (self.ready_at, self.ready_len) = (0, 0);
            return Ok(());
        };
        // Popped in this order: the partial frame's buffers, then the ones
        // ahead; everything popped before them is in `batch`.
        let unused: Vec<UsedToken> = self
            .partial
            .drain(..)
            .map(|(c, _)| c.token())
            .chain(ready.iter().map(|c| c.token()))
            .collect();
        (self.ready_at, self.ready_len) = (0, 0);
        self.flush(&mut q)?;
        match q.give_back(&unused) {
            Ok(true) => {}
            given => {
                if let Err(e) = given {
                    // (A broken queue refuses the completions below as well.)
                    if !q.queue().is_broken() {
                        tracing::warn!("virtio-net rx: buffers not given back: {e}");
                    }
                }
                self.batch.extend(unused.iter().map(|&t| (t, 0)));
                self.flush(&mut q)?;
            }
        }
        q.signal()
    }
}
