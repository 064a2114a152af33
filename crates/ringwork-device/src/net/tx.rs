//! The transmit path (VIRTIO 1.4 §5.1.9.2 "Packet Transmission"): each
//! transmitq chain is a `virtio_net_hdr` followed by one frame, both in
//! the device-readable part. The worker copies the frame into a private
//! buffer, checks the header, hands the frame to the backend and completes
//! the chain with used length 0 (transmit buffers have nothing for the
//! device to write). Chains are handled in bursts of up to 32: popped
//! together, each frame's first lines prefetched, then read (a header and
//! frame in one segment through one translated window), handed to the
//! backend in one batch and completed together. In a worker
//! [`Group`](super::worker::Group) with receive queues the worker returns
//! after each full burst so the receive side runs in between.
//!
//! What is refused (the chain completes, the frame is dropped and counted
//! in `tx_malformed`): a readable part shorter than the negotiated header,
//! a frame shorter than an Ethernet header or longer than
//! [`MAX_FRAME_LEN`] (a GSO frame: than [`MAX_GSO_FRAME_LEN`], on a
//! backend with segmentation offload), a `gso_type` other than NONE whose
//! HOST_TSO4/TSO6/UFO/USO (and, with the ECN bit, HOST_ECN) feature was
//! not negotiated (the ECN bit alone is ignored), or offload fields that
//! do not fit the frame ([`BadOffload`]: a NEEDS_CSUM checksum field
//! outside it, a GSO frame without NEEDS_CSUM, with `gso_size` 0 or
//! `hdr_len` past its end). Flag bits the device does not know are
//! ignored, `csum_start`/`csum_offset` are used only with NEEDS_CSUM and
//! `hdr_len` only as the hint passed on with a GSO frame (§5.1.9.2.2). A
//! GSO frame goes to the backend whole, with its header fields. A backend
//! that cannot take a frame drops it (`tx_backend_dropped`): transmission
//! never waits on a peer.
//!
//! Trust and panic contract: chains are driver-controlled and read only
//! through the chain reader; a chain outside guest memory breaks the
//! queue. Nothing here panics.

use std::sync::Arc;

use ringwork_queue::device::{DescChain, UsedToken};
use ringwork_queue::mem::MemSlice;
use ringwork_spec::net::*;

use super::device::{has, Shared};
use super::gso::{BadOffload, Offloads, VnetHdr};
use super::packet::{Packet, ETH_HLEN, MAX_FRAME_LEN, MAX_GSO_FRAME_LEN};
use super::pool;
use super::stats::{add, bump};
use crate::model::{DeviceError, QueueCtx, QueueSet, QueueWorker};

/// Chains popped, read and completed per burst.
const BATCH: usize = 32;
/// Bytes of each chain's first readable segment prefetched before the
/// burst is read: a header and a minimum-size frame.
const PREFETCH_LEN: usize = 128;

/// The worker of transmitq(`pair` + 1).
pub(super) struct TxWorker {
    shared: Arc<Shared>,
    pair: u16,
    queue: u16,
    hdr_len: usize,
    /// What the driver may send (HOST_ features negotiated).
    host: Offloads,
    /// A burst of popped chains: all are prefetched before any is read,
    /// so the cache misses on frames the driver just wrote overlap.
    chains: Vec<DescChain>,
    done: Vec<(UsedToken, u32)>,
    /// Frames read from `done`'s chains, for the backend.
    out: Vec<Packet>,
    /// Scratch: their lengths and whether each is a GSO frame.
    lens: Vec<(u64, bool)>,
}

/// Why a transmit chain was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TxRefusal {
    ShortHeader,
    ShortFrame,
    LongFrame,
    Gso,
    Offload(BadOffload),
}

/// Builds the packet from a header and a frame, or says why not; `host`
/// is what the driver may send ([`Offloads::from_host_features`]).
pub(super) fn packet_from(
    hdr: &VnetHdr,
    frame: Vec<u8>,
    host: &Offloads,
) -> Result<Packet, TxRefusal> {
    if frame.len() < ETH_HLEN {
        return Err(TxRefusal::ShortFrame);
    }
    let p = hdr.into_packet(frame).map_err(|e| match e {
        BadOffload::GsoType(_) => TxRefusal::Gso,
        e => TxRefusal::Offload(e),
    })?;
    if !host.allows(p.gso) {
        return Err(TxRefusal::Gso);
    }
    if p.gso.is_none() && p.data.len() > MAX_FRAME_LEN {
        return Err(TxRefusal::LongFrame);
    }
    Ok(p)
}

impl TxWorker {
    pub(super) fn new(shared: Arc<Shared>, pair: u16, features: u64) -> Self {
        Self {
            shared,
            pair,
            queue: 2 * pair + 1,
            hdr_len: net_hdr_len(|b| has(features, b)),
            host: Offloads::from_host_features(features),
            chains: (0..BATCH).map(|_| DescChain::new()).collect(),
            done: Vec::with_capacity(BATCH),
            out: Vec::with_capacity(BATCH),
            lens: Vec::with_capacity(BATCH),
        }
    }

    /// Handles the queue's chains, burst by burst; with `one_burst`,
    /// returns after the first full burst (so a [`Group`] can run the
    /// receive side in between) and says whether chains may remain
    /// (`true`: call again). Without, drains the ring as
    /// [`QueueWorker::process`] does and returns `false`.
    ///
    /// [`Group`]: super::worker::Group
    pub(super) fn run(
        &mut self,
        qs: &mut QueueSet<'_>,
        one_burst: bool,
    ) -> Result<bool, DeviceError> {
        let Some(mut q) = qs.get(self.queue) else {
            return Ok(false);
        };
        if q.queue().is_broken() {
            return Ok(false);
        }
        loop {
            let n = q.pop_burst(&mut self.chains)?;
            let burst = self.chains.get(..n).unwrap_or_default();
            // Each chain's header and frame as one window when they sit in
            // one segment (translated once, for the prefetch and the read).
            let mem = q.mem();
            let mut windows = [None; BATCH];
            for (c, w) in burst.iter().zip(windows.iter_mut()) {
                *w = c.readable_window(mem, c.readable_len() as usize);
                match w {
                    Some(w) => w.prefetch(0, PREFETCH_LEN, false),
                    None => c.prefetch(mem, PREFETCH_LEN, false),
                }
            }
            for (c, w) in burst.iter().zip(windows) {
                match self.read(c, w, &mut q)? {
                    Ok(p) => self.out.push(p),
                    Err(why) => {
                        tracing::debug!("virtio-net tx: dropping a malformed chain: {why:?}");
                        bump(&self.shared.stats.tx_malformed);
                    }
                }
                self.done.push((c.token(), 0));
            }
            self.flush(&mut q)?;
            if n == BATCH {
                q.signal()?;
                if one_burst {
                    return Ok(true);
                }
                continue;
            }
            if !q.enable_notification()? {
                break;
            }
        }
        q.signal()?;
        Ok(false)
    }

    /// Reads one chain into a packet.
    /// `window`: the readable part as one window, if it is one segment.
    fn read(
        &self,
        chain: &DescChain,
        window: Option<MemSlice<'_>>,
        q: &mut QueueCtx<'_>,
    ) -> Result<Result<Packet, TxRefusal>, DeviceError> {
        let total = chain.readable_len() as usize;
        if total < self.hdr_len {
            return Ok(Err(TxRefusal::ShortHeader));
        }
        let len = total - self.hdr_len;
        if len > self.shared.max_frame_len.min(MAX_GSO_FRAME_LEN) {
            return Ok(Err(TxRefusal::LongFrame));
        }
        let mut hdr = [0u8; NET_HDR_FULL_SIZE];
        let hdr = &mut hdr[..self.hdr_len];
        // Header and frame in one segment (the usual layout): one
        // translation, no cursor, no zero-filling of the frame buffer.
        let mut frame = pool::take_empty(len);
        let fast = window.is_some_and(|w| {
            w.read_bytes(0, hdr).is_ok() && w.read_append(self.hdr_len, len, &mut frame).is_ok()
        });
        if !fast {
            frame.clear();
            frame.resize(len, 0);
            let mut r = chain.reader(q.mem());
            if let Err(e) = r.read(hdr) {
                pool::give(frame);
                return Err(q.chain_error(e));
            }
            match r.read(&mut frame) {
                Ok(n) if n == len => {}
                Ok(_) => {
                    pool::give(frame);
                    return Ok(Err(TxRefusal::ShortFrame));
                }
                Err(e) => {
                    pool::give(frame);
                    return Err(q.chain_error(e));
                }
            }
        }
        let Some(h) = VnetHdr::parse(hdr) else {
            return Ok(Err(TxRefusal::ShortHeader));
        };
        Ok(packet_from(&h, frame, &self.host))
    }

    /// Hands the frames read so far to the backend, then completes their
    /// chains (the guest may reuse a buffer only once its frame is copied
    /// out, which it was when read).
    fn flush(&mut self, q: &mut QueueCtx<'_>) -> Result<(), DeviceError> {
        if !self.out.is_empty() {
            let st = &self.shared.stats;
            self.lens.clear();
            self.lens.extend(
                self.out
                    .iter()
                    .map(|p| (p.data.len() as u64, p.gso.is_some())),
            );
            let taken = self
                .shared
                .backend
                .send_batch(self.pair, &mut self.out)
                .min(self.lens.len());
            self.out.clear();
            add(&st.tx_packets, taken as u64);
            let sent = &self.lens[..taken];
            add(&st.tx_bytes, sent.iter().map(|l| l.0).sum());
            add(&st.tx_gso, sent.iter().filter(|l| l.1).count() as u64);
            add(&st.tx_backend_dropped, (self.lens.len() - taken) as u64);
        }
        let r = q.add_used_batch(&self.done);
        self.done.clear();
        r
    }
}

impl QueueWorker for TxWorker {
    fn process(&mut self, qs: &mut QueueSet<'_>) -> Result<(), DeviceError> {
        self.run(qs, false).map(drop)
    }
}
