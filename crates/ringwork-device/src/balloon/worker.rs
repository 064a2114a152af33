//! The balloon's data path: one worker serving every queue (§5.5.6).
//!
//! * `inflateq`: each le32 page frame number is checked against guest
//!   memory, recorded in the balloon and its page discarded (given back to
//!   the host) *before* the buffer is used: the device may modify a page
//!   from detecting it in an inflate request until acknowledging it
//!   (§5.5.6.1), and never touches balloon pages afterwards, so the
//!   driver's reuse rules (with or without MUST_TELL_HOST) always hold.
//! * `deflateq`: page frame numbers leave the record; memory needs nothing
//!   (a discarded page faults in as zeros when the guest touches it).
//! * `statsq`: the device holds the driver's buffer and returns it to ask
//!   for fresh statistics (§5.5.6.3), on a timer or on demand.
//! * `free_page_vq`: command IDs and hinted pages (§5.5.6.5). Hints are
//!   counted, never acted on: using them needs write tracking (migration)
//!   this device does not have, and without it discarding a hinted page
//!   could lose data the guest wrote after hinting.
//! * `reporting_vq`: reported ranges are discarded before the buffer is
//!   used (§5.5.6.7.2 "MAY modify"), except under PAGE_POISON with a
//!   nonzero `poison_val`, when the device MUST NOT change them to anything
//!   but the poison value (a hole reads as zeros).
//!
//! Trust and panic contract: buffers are read only through the chain
//! reader; malformed ones (odd lengths, huge counts, writable parts) are
//! used with length 0 after what can be read was handled; bad page frame
//! numbers are logged, counted and skipped. Nothing here panics.

use std::sync::Arc;

use ringwork_queue::device::DescChain;
use ringwork_spec::balloon::{
    BalloonQueues, BALLOON_CMD_ID_SIZE, BALLOON_PFN_SIZE, VIRTIO_BALLOON_CMD_ID_STOP,
    VIRTIO_BALLOON_F_DEFLATE_ON_OOM, VIRTIO_BALLOON_PAGE_SIZE,
};

use super::handle::{MemoryUsage, Shared, State};
use super::pages::{discard, page_in_memory, whole_pages, RunDiscarder};
use super::stats::{BalloonStats, MAX_STATS_BYTES};
use super::sys::Ticker;
use crate::model::{DeviceError, Memory, QueueCtx, QueueSet, QueueWorker};

/// Page frame numbers handled per inflate/deflate buffer at most (256 MiB
/// of guest memory; Linux sends 256); the rest of a longer buffer is
/// ignored and the buffer counted as malformed.
pub const MAX_PFNS_PER_BUFFER: usize = 1 << 16;
/// Bad page frame numbers logged per buffer (the rest are only counted).
const LOG_BAD: u32 = 4;

pub(super) struct BalloonWorker {
    shared: Arc<Shared>,
    id: u64,
    queues: BalloonQueues,
    ticker: Option<Ticker>,
    chain: DescChain,
    /// The stats buffer the device holds (§5.5.6.3).
    held_stats: Option<DescChain>,
    buf: Vec<u8>,
}

impl BalloonWorker {
    pub(super) fn new(shared: Arc<Shared>, id: u64, features: u64, ticker: Option<Ticker>) -> Self {
        Self {
            shared,
            id,
            queues: BalloonQueues::from_bits(features),
            ticker,
            chain: DescChain::new(),
            held_stats: None,
            buf: vec![0; MAX_STATS_BYTES.max(4096)],
        }
    }
}

impl Drop for BalloonWorker {
    fn drop(&mut self) {
        let mut st = self.shared.lock();
        if st.worker_id == self.id {
            st.worker_id = 0;
        }
    }
}

/// Which PFN queue a buffer came from.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Direction {
    Inflate,
    Deflate,
}

/// Reads le32 page frame numbers from `chain` and hands each to `each`;
/// `true` when the buffer was well-formed (a multiple of 4 bytes, within
/// [`MAX_PFNS_PER_BUFFER`], nothing writable).
fn for_each_pfn(
    chain: &DescChain,
    mem: &Memory,
    buf: &mut [u8],
    mut each: impl FnMut(u32),
) -> Result<bool, ringwork_queue::device::ChainError> {
    let mut r = chain.reader(mem);
    let total = r.remaining();
    let usable = (total / BALLOON_PFN_SIZE).min(MAX_PFNS_PER_BUFFER) * BALLOON_PFN_SIZE;
    let mut left = usable;
    while left > 0 {
        let want = left.min(buf.len() / BALLOON_PFN_SIZE * BALLOON_PFN_SIZE);
        let Some(dst) = buf.get_mut(..want) else {
            break;
        };
        let n = r.read(dst)?;
        if n == 0 {
            break;
        }
        for raw in dst
            .get(..n)
            .unwrap_or_default()
            .chunks_exact(BALLOON_PFN_SIZE)
        {
            let mut b = [0u8; BALLOON_PFN_SIZE];
            b.copy_from_slice(raw);
            each(u32::from_le_bytes(b));
        }
        left -= n;
    }
    Ok(usable == total && chain.writable_len() == 0)
}

impl BalloonWorker {
    fn pfn_queue(&mut self, q: &mut QueueCtx<'_>, dir: Direction) -> Result<(), DeviceError> {
        let mem = q.mem();
        loop {
            while q.pop_into(&mut self.chain)? {
                let mut st = self.shared.lock();
                let ok = match dir {
                    Direction::Inflate => inflate(&self.chain, mem, &mut self.buf, &mut st),
                    Direction::Deflate => deflate(&self.chain, mem, &mut self.buf, &mut st),
                };
                let ok = match ok {
                    Ok(ok) => ok,
                    Err(e) => return Err(q.chain_error(e)),
                };
                if !ok {
                    st.counters.malformed_buffers += 1;
                    tracing::warn!(
                        "balloon {dir:?} buffer of {} readable / {} writable bytes is malformed \
                         (not a multiple of 4, over {MAX_PFNS_PER_BUFFER} entries, or writable)",
                        self.chain.readable_len(),
                        self.chain.writable_len()
                    );
                }
                drop(st);
                // Used only after the pages were handled (§5.5.6.1).
                q.add_used(self.chain.token(), 0)?;
            }
            q.signal()?;
            if !q.enable_notification()? {
                return Ok(());
            }
        }
    }

    fn stats_queue(&mut self, q: &mut QueueCtx<'_>) -> Result<(), DeviceError> {
        let mem = q.mem();
        loop {
            while q.pop_into(&mut self.chain)? {
                let mut r = self.chain.reader(mem);
                let total = r.remaining();
                let want = total.min(MAX_STATS_BYTES);
                let dst = self.buf.get_mut(..want).unwrap_or_default();
                let n = match r.read(dst) {
                    Ok(n) => n,
                    Err(e) => return Err(q.chain_error(e)),
                };
                let stats = BalloonStats::parse(dst.get(..n).unwrap_or_default(), total);
                if stats.trailing_bytes != 0 || stats.truncated_bytes != 0 {
                    tracing::debug!(
                        "balloon stats buffer of {total} bytes: {} trailing, {} unread",
                        stats.trailing_bytes,
                        stats.truncated_bytes
                    );
                }
                let old = self.held_stats.replace(self.chain.clone());
                {
                    let mut st = self.shared.lock();
                    st.stats = Some(stats);
                    st.counters.stats_buffers += 1;
                    if old.is_some() {
                        st.counters.extra_stats_buffers += 1;
                    }
                }
                self.shared.cond.notify_all();
                if let Some(old) = old {
                    tracing::warn!(
                        "balloon: driver added a second stats buffer; returning the first"
                    );
                    q.add_used(old.token(), 0)?;
                }
            }
            q.signal()?;
            if !q.enable_notification()? {
                return Ok(());
            }
        }
    }

    /// Returns the held stats buffer: a request for fresh statistics.
    fn request_stats(&mut self, queues: &mut QueueSet<'_>) -> Result<(), DeviceError> {
        let Some(index) = self.queues.statsq else {
            return Ok(());
        };
        let Some(mut q) = queues.get(index) else {
            return Ok(());
        };
        if let Some(held) = self.held_stats.take() {
            q.add_used(held.token(), 0)?;
            q.signal()?;
        }
        Ok(())
    }

    fn free_page_queue(&mut self, q: &mut QueueCtx<'_>) -> Result<(), DeviceError> {
        let mem = q.mem();
        loop {
            while q.pop_into(&mut self.chain)? {
                let mut r = self.chain.reader(mem);
                let readable = r.remaining();
                let mut st = self.shared.lock();
                if readable == BALLOON_CMD_ID_SIZE {
                    let id = match r.read_array::<BALLOON_CMD_ID_SIZE>() {
                        Ok(Some(b)) => u32::from_le_bytes(b),
                        Ok(None) => VIRTIO_BALLOON_CMD_ID_STOP,
                        Err(e) => return Err(q.chain_error(e)),
                    };
                    st.hint.driver_cmd_id = Some(id);
                    if id == VIRTIO_BALLOON_CMD_ID_STOP {
                        st.hint.driver_stopped = true;
                    } else if id != st.hint.cmd_id {
                        tracing::debug!(
                            "balloon: driver announced stale command ID {id} (current {})",
                            st.hint.cmd_id
                        );
                    }
                } else if readable != 0 {
                    st.hint.malformed += 1;
                    tracing::warn!("balloon: {readable}-byte command ID buffer ignored");
                }
                let hinted = u64::from(self.chain.writable_len());
                if st.accepting_hints() {
                    st.hint.hinted_bytes += hinted;
                } else {
                    st.hint.ignored_bytes += hinted;
                }
                drop(st);
                q.add_used(self.chain.token(), 0)?;
            }
            q.signal()?;
            if !q.enable_notification()? {
                return Ok(());
            }
        }
    }

    fn reporting_queue(&mut self, q: &mut QueueCtx<'_>) -> Result<(), DeviceError> {
        let mem = q.mem();
        loop {
            while q.pop_into(&mut self.chain)? {
                let mut st = self.shared.lock();
                st.counters.report_buffers += 1;
                let keep = st.must_preserve_reported();
                for seg in self.chain.segments() {
                    let Some((addr, len)) = whole_pages(seg.addr, u64::from(seg.len)) else {
                        continue;
                    };
                    if keep {
                        st.counters.reported_kept_bytes += len;
                        continue;
                    }
                    match discard(mem, addr, len) {
                        Ok(()) => {
                            st.counters.reported_bytes += len;
                            st.counters.discarded_pages += len / VIRTIO_BALLOON_PAGE_SIZE as u64;
                        }
                        Err(e) => {
                            st.counters.discard_failures += 1;
                            tracing::warn!("balloon report: {e}");
                        }
                    }
                }
                drop(st);
                q.add_used(self.chain.token(), 0)?;
            }
            q.signal()?;
            if !q.enable_notification()? {
                return Ok(());
            }
        }
    }
}

fn inflate(
    chain: &DescChain,
    mem: &Memory,
    buf: &mut [u8],
    st: &mut State,
) -> Result<bool, ringwork_queue::device::ChainError> {
    st.counters.inflate_buffers += 1;
    let mut runs = RunDiscarder::default();
    let mut bad = 0u32;
    let ok = for_each_pfn(chain, mem, buf, |pfn| {
        if !page_in_memory(mem, pfn) {
            bad += 1;
            if bad <= LOG_BAD {
                tracing::warn!(
                    "balloon: inflate of page frame {pfn:#x} outside guest memory skipped"
                );
            }
        } else {
            // A page already recorded is discarded again: the record may
            // predate this driver (a vhost-user frontend that reconnects
            // without a device reset), and discarding before the buffer is
            // used is always allowed (§5.5.6.2).
            if st.inflated.insert(pfn) {
                st.counters.inflated_pages += 1;
            } else {
                st.counters.duplicate_inflates += 1;
            }
            runs.push(mem, pfn);
        }
    })?;
    runs.flush(mem);
    st.counters.bad_pfns += u64::from(bad);
    st.counters.discarded_pages += runs.pages;
    st.counters.discard_failures += runs.failures;
    Ok(ok)
}

fn deflate(
    chain: &DescChain,
    mem: &Memory,
    buf: &mut [u8],
    st: &mut State,
) -> Result<bool, ringwork_queue::device::ChainError> {
    st.counters.deflate_buffers += 1;
    let oom_allowed = st.has(VIRTIO_BALLOON_F_DEFLATE_ON_OOM);
    let mut bad = 0u32;
    let mut unrequested = 0u64;
    let ok = for_each_pfn(chain, mem, buf, |pfn| {
        if !page_in_memory(mem, pfn) {
            bad += 1;
            if bad <= LOG_BAD {
                tracing::warn!(
                    "balloon: deflate of page frame {pfn:#x} outside guest memory skipped"
                );
            }
        } else if st.inflated.contains(pfn) {
            if st.inflated.len() <= u64::from(st.target) {
                unrequested += 1;
            }
            st.inflated.remove(pfn);
            st.counters.deflated_pages += 1;
        } else {
            st.counters.unknown_deflates += 1;
        }
    })?;
    if unrequested != 0 && !oom_allowed {
        tracing::warn!(
            "balloon: driver took {unrequested} page(s) from a balloon not above its target \
             without VIRTIO_BALLOON_F_DEFLATE_ON_OOM (§5.5.6.1)"
        );
    }
    st.counters.bad_pfns += u64::from(bad);
    st.counters.unrequested_deflates += unrequested;
    Ok(ok)
}

fn scan(mem: &Memory) -> MemoryUsage {
    let mut usage = MemoryUsage {
        total_bytes: 0,
        resident_bytes: 0,
    };
    for (_, r) in mem.regions() {
        usage.total_bytes += r.len() as u64;
        match r.resident_bytes() {
            Ok(n) => usage.resident_bytes += n,
            Err(e) => tracing::warn!("balloon: mincore over guest memory failed: {e}"),
        }
    }
    usage
}

impl QueueWorker for BalloonWorker {
    fn event_fds(&self) -> Vec<std::os::fd::RawFd> {
        let mut fds = vec![self.shared.doorbell.fd()];
        fds.extend(self.ticker.as_ref().map(Ticker::fd));
        fds
    }

    fn process(&mut self, queues: &mut QueueSet<'_>) -> Result<(), DeviceError> {
        self.shared.doorbell.drain();
        let tick = self.ticker.as_ref().is_some_and(Ticker::drain);
        let (want_stats, want_scan) = {
            let mut st = self.shared.lock();
            let w = (tick || st.stats_wanted, st.scan_wanted);
            st.stats_wanted = false;
            st.scan_wanted = false;
            w
        };
        let qs = self.queues;
        if let Some(mut q) = queues.get(qs.inflateq) {
            self.pfn_queue(&mut q, Direction::Inflate)?;
        }
        if let Some(mut q) = queues.get(qs.deflateq) {
            self.pfn_queue(&mut q, Direction::Deflate)?;
        }
        // A request returns the buffer held now; with none held (one is
        // on its way from the driver) the next one is fresh anyway.
        if want_stats {
            self.request_stats(queues)?;
        }
        if let Some(mut q) = qs.statsq.and_then(|i| queues.get(i)) {
            self.stats_queue(&mut q)?;
        }
        if let Some(mut q) = qs.free_page_vq.and_then(|i| queues.get(i)) {
            self.free_page_queue(&mut q)?;
        }
        if let Some(mut q) = qs.reporting_vq.and_then(|i| queues.get(i)) {
            self.reporting_queue(&mut q)?;
        }
        if want_scan {
            let usage = scan(queues.mem());
            let mut st = self.shared.lock();
            st.memory = Some(usage);
            st.memory_scans += 1;
        }
        self.shared.cond.notify_all();
        Ok(())
    }

    /// Returns the held stats buffer, the only chain kept between calls.
    fn quiesce(&mut self, queues: &mut QueueSet<'_>) -> Result<(), DeviceError> {
        self.request_stats(queues)
    }
}
