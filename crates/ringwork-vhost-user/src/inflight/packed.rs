//! Packed-ring records: the protocol's `QueueRegionPacked`.
//!
//! A packed ring's device writes used entries over descriptor slots, so an
//! in-flight chain may be gone from the ring when a backend restarts. The
//! region therefore keeps copies of the ring descriptors of every chain in
//! flight, as vhost-user.rst describes:
//!
//! - `desc[]` is a pool of `queue_size` entries. Free entries form a list
//!   through `next`, starting at `free_head` (the end is `queue_size`).
//! - Popping a chain of `n` ring descriptors takes the first `n` free
//!   entries and writes each descriptor (`addr`, `len`, `id`, `flags`) into
//!   one; the first entry is the chain's head and gets `num = n`, `last`
//!   (the entry holding the last descriptor), `counter` (the pop order) and
//!   `inflight = 1`; then `free_head` and `old_free_head` move past it. An
//!   indirect chain occupies one ring descriptor, so its one entry holds the
//!   indirect descriptor (the table is in guest memory, which the driver
//!   leaves alone while the buffer is in flight); a direct chain's entries
//!   are its segments with NEXT/WRITE flags ([`DescChain::packed_descriptors`]).
//! - Completing a batch (before the used entries are written to the ring)
//!   links each chain back onto the free list (`desc[last].next =
//!   free_head; free_head = head`) and advances `used_idx` /
//!   `used_wrap_counter` by the batch's ring slots; once the entries are
//!   published the heads' `inflight` flags are cleared and `old_free_head`,
//!   `old_used_idx`, `old_used_wrap_counter` take the new values.
//! - At a restart, `used_*` differing from `old_*` means a batch was being
//!   completed. It reached the driver when the ring descriptor at
//!   `old_used_idx` is marked used in the `old_used_wrap_counter` lap
//!   (its USED flag equals that counter: the driver cannot reuse the slot
//!   before it is used); then the batch is committed (`old_* = used_*`).
//!   Anything else half done (that batch, or a pop) is rolled back
//!   (`free_head`, `used_*` = `old_*`), the free list's `inflight` flags
//!   are cleared, and the heads still in flight are resubmitted in
//!   `counter` order.
//!
//! The used position (`used_idx`, `used_wrap_counter`) is the device's own
//! record, which a frontend cannot know after a crash: when chains are in
//! flight the queue continues from it, the avail position following them
//! (each in-flight chain accounts for its `num` slots between the two).
//! With nothing in flight the frontend's ring base is used (so a ring the
//! driver re-initialized, or any cleanly stopped ring, continues where the
//! frontend says), unless the ring shows the base is stale and the record
//! right: the descriptor at the base's used offset is already marked used
//! in the base's lap while the one at the recorded offset is not (a correct
//! used position never names a slot used in its own lap). The region is
//! then laid out again at the chosen position.
//!
//! The layout is marked in the header's padding (`LAYOUT`), so a region
//! written for a split ring (or never laid out) is not taken for a packed
//! record. Values read back are peer input: everything is range-checked,
//! the free list and the chains must partition the entries exactly, and a
//! record that does not hold together is discarded with a warning.
//!
//! [`DescChain::packed_descriptors`]: ringwork_queue::device::DescChain::packed_descriptors

use std::collections::HashMap;
use std::sync::Arc;

use ringwork_device::model::InflightLog;
use ringwork_queue::device::{DescChain, SavedDesc, UsedToken};
use ringwork_queue::mmap::MmapRegion;
use ringwork_queue::{MemSlice, QueuePosition};
use ringwork_spec::ring::packed::VIRTQ_DESC_F_USED;

use super::{region_at, InflightArea, DESC_NUM_OFF, PACKED_DESC, VERSION, VERSION_OFF};

const FREE_HEAD: usize = 12;
const OLD_FREE_HEAD: usize = 14;
const USED_IDX: usize = 16;
const OLD_USED_IDX: usize = 18;
const USED_WRAP: usize = 20;
const OLD_USED_WRAP: usize = 21;
/// In the header's padding: marks a region laid out by [`PackedLog`].
const LAYOUT: usize = 22;
/// The mark: at least 0x8000, a value the split layout never puts there
/// (its `desc[0].next`, always a head below the queue size).
const LAYOUT_MARK: u16 = 0xa5c1;

// DescStatePacked fields.
const E_INFLIGHT: usize = 0;
const E_NEXT: usize = 2;
const E_LAST: usize = 4;
const E_NUM: usize = 6;
const E_COUNTER: usize = 8;
const E_ID: usize = 16;
const E_FLAGS: usize = 18;
const E_LEN: usize = 20;
const E_ADDR: usize = 24;

/// No entry (end of a list of heads).
const NONE: u16 = u16::MAX;

fn entry(i: u16) -> usize {
    PACKED_DESC + usize::from(i) * PACKED_DESC
}

/// Whether `r` carries the packed layout mark.
pub(super) fn is_laid_out(r: &MemSlice<'_>) -> bool {
    r.read_u16(LAYOUT).is_ok_and(|m| m == LAYOUT_MARK)
}

#[cfg(test)]
pub(super) fn mark_laid_out(r: &MemSlice<'_>) {
    r.write_u16(LAYOUT, LAYOUT_MARK).unwrap();
}

/// Moves a ring position (offset, wrap counter) on by `by` slots.
fn advance(size: u16, (pos, wrap): (u16, bool), by: u16) -> (u16, bool) {
    let v = u32::from(pos) + u32::from(by);
    let laps = v / u32::from(size);
    ((v % u32::from(size)) as u16, wrap ^ (laps % 2 == 1))
}

/// A packed queue's record after a restart: the log to attach, where the
/// queue continues, and the chains to resubmit.
#[derive(Debug)]
pub struct PackedRecovery {
    /// The record, ready for the running queue.
    pub log: PackedLog,
    /// Where the queue continues: the frontend's base, or (with chains in
    /// flight) the recorded used position and the avail position after
    /// the chains.
    pub position: QueuePosition,
    /// The chains still in flight, oldest first: the ring offset each is
    /// taken to start at (consecutive from the used position) and copies of
    /// its ring descriptors, to rebuild with
    /// [`DeviceQueue::chain_from_descriptors`](ringwork_queue::device::DeviceQueue::chain_from_descriptors).
    pub chains: Vec<(u16, Vec<SavedDesc>)>,
}

impl InflightArea {
    /// The record of packed queue `q` of `queue_size` entries, recovered as
    /// the protocol's reconnect steps say; `base` is the position the
    /// frontend gave (SET_VRING_BASE) and `ring_flags(i)` reads the flags
    /// of ring descriptor `i` (to tell whether a half-recorded batch of
    /// used entries reached the driver). `None` when the area does not
    /// cover this queue or its regions are smaller than the ring.
    pub fn packed_queue(
        &self,
        q: u16,
        queue_size: u16,
        base: QueuePosition,
        ring_flags: impl Fn(u16) -> Option<u16>,
    ) -> Option<PackedRecovery> {
        let (region_base, r) = self.ring_region(q, queue_size)?;
        let mut log = PackedLog {
            map: self.map.clone(),
            base: region_base,
            size: queue_size,
            counter: 0,
            next: Vec::new(),
            last: vec![0; usize::from(queue_size)],
            num: vec![0; usize::from(queue_size)],
            free_head: 0,
            free_count: 0,
            by_id: HashMap::new(),
            older: vec![NONE; usize::from(queue_size)],
            start: vec![0; usize::from(queue_size)],
            used: (0, true),
            pending: None,
            warned: false,
        };
        let laid_out = r.read_u16(VERSION_OFF).ok()? == VERSION
            && r.read_u16(DESC_NUM_OFF).ok()? == queue_size
            && is_laid_out(&r);
        let (chains, recorded) = if laid_out {
            match log.recover(&ring_flags) {
                Ok(chains) => (chains, Some(log.used)),
                Err(why) => {
                    tracing::warn!(
                        queue = q,
                        "inflight record is inconsistent ({why}); \
                         in-flight buffers are lost, the queue starts from its base"
                    );
                    (Vec::new(), None)
                }
            }
        } else {
            (Vec::new(), None)
        };
        if chains.is_empty() {
            // Nothing to resubmit: the frontend's base, unless the ring shows
            // it is stale (the device already used the slot it names, in its
            // lap: a frontend that could not ask a crashed backend) and
            // agrees with the record (whose slot is not used yet).
            let from_base = (base.next_used, base.used_wrap);
            let stale = |(at, wrap): (u16, bool)| {
                at < queue_size
                    && ring_flags(at).is_some_and(|f| (f & VIRTQ_DESC_F_USED != 0) == wrap)
            };
            let position = match recorded {
                Some(r) if r != from_base && stale(from_base) && !stale(r) => {
                    tracing::info!(
                        queue = q,
                        ?base,
                        "ring base is stale; continuing from the inflight record"
                    );
                    QueuePosition {
                        next_avail: r.0,
                        avail_wrap: r.1,
                        next_used: r.0,
                        used_wrap: r.1,
                    }
                }
                _ => base,
            };
            log.lay_out((position.next_used, position.used_wrap))?;
            return Some(PackedRecovery {
                log,
                position,
                chains,
            });
        }
        let avail = chains
            .iter()
            .fold(log.used, |p, (_, d)| advance(queue_size, p, d.len() as u16));
        let position = QueuePosition {
            next_avail: avail.0,
            avail_wrap: avail.1,
            next_used: log.used.0,
            used_wrap: log.used.1,
        };
        if position != base {
            tracing::info!(
                queue = q,
                ?base,
                ?position,
                "continuing from the inflight record, not the ring base"
            );
        }
        Some(PackedRecovery {
            log,
            position,
            chains,
        })
    }
}

/// The in-flight record of one packed queue. Private copies of the free
/// list, of each chain's head data and of the used position drive every
/// update; the region is only written while the queue runs.
#[derive(Debug)]
pub struct PackedLog {
    map: Arc<MmapRegion>,
    base: usize,
    size: u16,
    counter: u64,
    /// Entry links: the free list, and each chain's entries in order.
    next: Vec<u16>,
    /// Per head entry: the chain's last entry and its length.
    last: Vec<u16>,
    num: Vec<u16>,
    free_head: u16,
    free_count: u16,
    /// Buffer id -> head entry of the newest chain in flight with it.
    by_id: HashMap<u16, u16>,
    /// Per head entry: the next older head with the same buffer id (only
    /// a misbehaving driver reuses an id in flight), or [`NONE`].
    older: Vec<u16>,
    /// Per head entry: the ring offset the chain was taken at (tells
    /// chains with the same id apart).
    start: Vec<u16>,
    /// The used position (offset, wrap counter).
    used: (u16, bool),
    /// Free head and used position of a batch being completed.
    pending: Option<(u16, (u16, bool))>,
    warned: bool,
}

impl PackedLog {
    fn region(&self) -> Option<MemSlice<'_>> {
        region_at(&self.map, self.base, self.size)
    }

    fn warn_once(&mut self, what: &str) {
        if !self.warned {
            self.warned = true;
            tracing::warn!("inflight record: {what}; later buffers may not be resubmitted");
        }
    }

    /// Lays the region out empty, with the used position at `used`.
    fn lay_out(&mut self, used: (u16, bool)) -> Option<()> {
        let size = self.size;
        self.next = (1..=size).collect();
        self.free_head = 0;
        self.free_count = size;
        self.by_id.clear();
        self.used = used;
        self.counter = 0;
        let r = self.region()?;
        r.fill(0, r.len(), 0).ok()?;
        for i in 0..size {
            r.write_u16(entry(i) + E_NEXT, i + 1).ok()?;
        }
        write_position(&r, FREE_HEAD, USED_IDX, USED_WRAP, 0, used)?;
        write_position(&r, OLD_FREE_HEAD, OLD_USED_IDX, OLD_USED_WRAP, 0, used)?;
        r.write_u16(DESC_NUM_OFF, size).ok()?;
        r.write_u16(LAYOUT, LAYOUT_MARK).ok()?;
        r.write_u16(VERSION_OFF, VERSION).ok()
    }

    /// Runs the protocol's reconnect steps over a laid-out region, checking
    /// everything, and fills the private state. Returns the chains in
    /// flight in pop order with the ring offsets they are taken to start at.
    fn recover(
        &mut self,
        ring_flags: &dyn Fn(u16) -> Option<u16>,
    ) -> Result<Vec<(u16, Vec<SavedDesc>)>, &'static str> {
        const OOB: &str = "region out of bounds";
        let map = self.map.clone();
        let r = region_at(&map, self.base, self.size).ok_or(OOB)?;
        let size = self.size;
        let n = usize::from(size);
        let rd16 = |off: usize| r.read_u16(off).map_err(|_| OOB);
        let rd8 = |off: usize| r.read_u8(off).map_err(|_| OOB);
        let mut free_head = rd16(FREE_HEAD)?;
        let mut old_free_head = rd16(OLD_FREE_HEAD)?;
        let used_idx = rd16(USED_IDX)?;
        let mut old_used_idx = rd16(OLD_USED_IDX)?;
        let (wrap, mut old_wrap) = (rd8(USED_WRAP)?, rd8(OLD_USED_WRAP)?);
        if free_head > size || old_free_head > size {
            return Err("free list head out of range");
        }
        if used_idx >= size || old_used_idx >= size {
            return Err("used index out of range");
        }
        if wrap > 1 || old_wrap > 1 {
            return Err("wrap counter neither 0 nor 1");
        }
        if (used_idx, wrap) != (old_used_idx, old_wrap) {
            // A batch was being completed: did its used entries reach the
            // ring? Unreadable flags count as "no" (resubmitting a buffer
            // twice is better than losing it).
            let published = ring_flags(old_used_idx)
                .is_some_and(|f| (f & VIRTQ_DESC_F_USED != 0) == (old_wrap == 1));
            if published {
                (old_free_head, old_used_idx, old_wrap) = (free_head, used_idx, wrap);
            }
        }
        // Roll back whatever is half done.
        free_head = old_free_head;
        let used = (old_used_idx, old_wrap == 1);

        let mut seen = vec![false; n];
        let mut next = vec![size; n];
        // The free list: its entries are not in flight.
        let (mut cur, mut free_count) = (free_head, 0u16);
        while cur != size {
            let i = usize::from(cur);
            if seen[i] {
                return Err("free list loops");
            }
            seen[i] = true;
            free_count += 1;
            let nx = rd16(entry(cur) + E_NEXT)?;
            if nx > size {
                return Err("free list link out of range");
            }
            next[i] = nx;
            r.write_u8(entry(cur) + E_INFLIGHT, 0).map_err(|_| OOB)?;
            cur = nx;
        }
        // The heads in flight and their chains.
        let mut heads = Vec::new();
        for h in 0..size {
            if seen[usize::from(h)] {
                continue;
            }
            match rd8(entry(h) + E_INFLIGHT)? {
                // Not a head: a later chain's member, or leaked (below).
                0 => continue,
                1 => {}
                _ => return Err("in-flight flag neither 0 nor 1"),
            }
            let num = rd16(entry(h) + E_NUM)?;
            let last = rd16(entry(h) + E_LAST)?;
            let counter = r.read_u64(entry(h) + E_COUNTER).map_err(|_| OOB)?;
            if num == 0 || num > size {
                return Err("chain length out of range");
            }
            let mut descs = Vec::with_capacity(usize::from(num));
            let mut e = h;
            for k in 0..num {
                if e >= size {
                    return Err("chain link out of range");
                }
                if seen[usize::from(e)] {
                    return Err("an entry is in two lists");
                }
                if k > 0 && rd8(entry(e) + E_INFLIGHT)? != 0 {
                    return Err("a chain runs into another head");
                }
                seen[usize::from(e)] = true;
                descs.push(SavedDesc {
                    addr: r.read_u64(entry(e) + E_ADDR).map_err(|_| OOB)?,
                    len: r.read_u32(entry(e) + E_LEN).map_err(|_| OOB)?,
                    id: rd16(entry(e) + E_ID)?,
                    flags: rd16(entry(e) + E_FLAGS)?,
                });
                let nx = rd16(entry(e) + E_NEXT)?;
                next[usize::from(e)] = nx;
                if k + 1 < num {
                    e = nx;
                }
            }
            if e != last {
                return Err("a chain does not end at its last entry");
            }
            heads.push((counter, h, last, descs));
        }
        if seen.contains(&false) {
            return Err("an entry is neither free nor in flight");
        }
        // The entries are partitioned (every one seen once), so the chains
        // hold at most `size` descriptors: they fit between the used and
        // the avail position.
        heads.sort_unstable_by_key(|&(c, h, _, _)| (c, h));
        self.next = next;
        self.free_head = free_head;
        self.free_count = free_count;
        self.used = used;
        self.counter = heads.last().map_or(0, |&(c, _, _, _)| c.saturating_add(1));
        let mut pos = used;
        let mut chains = Vec::with_capacity(heads.len());
        for (_, h, last, descs) in heads {
            let num = descs.len() as u16;
            self.num[usize::from(h)] = num;
            self.last[usize::from(h)] = last;
            let id = descs.last().map_or(0, |d| d.id);
            self.track(h, id, pos.0);
            chains.push((pos.0, descs));
            pos = advance(size, pos, num);
        }
        write_position(&r, FREE_HEAD, USED_IDX, USED_WRAP, free_head, used).ok_or(OOB)?;
        write_position(
            &r,
            OLD_FREE_HEAD,
            OLD_USED_IDX,
            OLD_USED_WRAP,
            free_head,
            used,
        )
        .ok_or(OOB)?;
        Ok(chains)
    }
}

/// Writes a free head and a used position to the given header fields.
fn write_position(
    r: &MemSlice<'_>,
    head_off: usize,
    idx_off: usize,
    wrap_off: usize,
    head: u16,
    (idx, wrap): (u16, bool),
) -> Option<()> {
    r.write_u16(head_off, head).ok()?;
    r.write_u16(idx_off, idx).ok()?;
    r.write_u8(wrap_off, u8::from(wrap)).ok()
}

impl PackedLog {
    /// Files head entry `h` (buffer `id`, taken at ring offset `pos`) as
    /// in flight.
    fn track(&mut self, h: u16, id: u16, pos: u16) {
        let i = usize::from(h);
        self.older[i] = self.by_id.insert(id, h).unwrap_or(NONE);
        self.start[i] = pos;
    }

    /// The head entry a completion token names, and the head before it in
    /// its id's list ([`NONE`] when first): the chain taken at the token's
    /// ring offset, else the newest with the id.
    fn find(&self, t: &UsedToken) -> Option<(u16, u16)> {
        let first = *self.by_id.get(&t.id())?;
        let (mut h, mut prev) = (first, NONE);
        // The lists are acyclic and at most `size` long; bound it anyway.
        for _ in 0..self.size {
            if self.start.get(usize::from(h)) == Some(&t.position()) {
                return Some((h, prev));
            }
            match self.older.get(usize::from(h)) {
                Some(&o) if o != NONE => (prev, h) = (h, o),
                _ => break,
            }
        }
        Some((first, NONE))
    }

    /// Like [`Self::find`], and takes the head out of the in-flight set.
    fn untrack(&mut self, t: &UsedToken) -> Option<u16> {
        let (h, prev) = self.find(t)?;
        let older = self.older[usize::from(h)];
        if prev == NONE {
            if older == NONE {
                self.by_id.remove(&t.id());
            } else {
                self.by_id.insert(t.id(), older);
            }
        } else {
            self.older[usize::from(prev)] = older;
        }
        self.older[usize::from(h)] = NONE;
        Some(h)
    }
}

impl InflightLog for PackedLog {
    fn popped(&mut self, _id: u16) {
        // A packed record needs the descriptors (`popped_chain`).
        self.warn_once("a popped buffer was reported without its descriptors");
    }

    fn popped_chain(&mut self, chain: &DescChain) {
        let descs = chain.packed_descriptors();
        let n = chain.token().ring_slots();
        let pos = chain.token().position();
        if descs.len() != usize::from(n) || n == 0 || n > self.free_count || pos >= self.size {
            self.warn_once("no room to record a popped buffer");
            return;
        }
        let head = self.free_head;
        let (mut e, mut last) = (head, head);
        {
            let Some(r) = region_at(&self.map, self.base, self.size) else {
                return;
            };
            for d in descs {
                let Some(&nx) = self.next.get(usize::from(e)) else {
                    self.warned = true;
                    tracing::warn!("inflight record: free list broken");
                    return;
                };
                let o = entry(e);
                let _ = r.write_u16(o + E_ID, d.id);
                let _ = r.write_u16(o + E_FLAGS, d.flags);
                let _ = r.write_u32(o + E_LEN, d.len);
                let _ = r.write_u64(o + E_ADDR, d.addr);
                (last, e) = (e, nx);
            }
            let o = entry(head);
            let _ = r.write_u16(o + E_NUM, n);
            let _ = r.write_u16(o + E_LAST, last);
            let _ = r.write_u64(o + E_COUNTER, self.counter);
            let _ = r.write_u8(o + E_INFLIGHT, 1);
            // The pop is recorded once the free list has moved past it.
            let _ = r.write_u16(FREE_HEAD, e);
            let _ = r.write_u16(OLD_FREE_HEAD, e);
        }
        self.counter = self.counter.saturating_add(1);
        self.free_head = e;
        self.free_count -= n;
        self.last[usize::from(head)] = last;
        self.num[usize::from(head)] = n;
        self.track(head, chain.id(), pos);
    }

    fn completing(&mut self, batch: &[(UsedToken, u32)]) {
        let Some(r) = self.region() else {
            return;
        };
        let (mut head, mut used) = (self.free_head, self.used);
        for (t, _) in batch {
            if let Some((h, _)) = self.find(t) {
                let _ = r.write_u16(entry(self.last[usize::from(h)]) + E_NEXT, head);
                head = h;
            }
            used = advance(self.size, used, t.ring_slots());
        }
        // Recorded before the ring sees the batch: a restart compares
        // these with the `old_*` copies to find a half-done batch.
        let _ = write_position(&r, FREE_HEAD, USED_IDX, USED_WRAP, head, used);
        self.pending = Some((head, used));
    }

    fn completed(&mut self, batch: &[(UsedToken, u32)], used_idx: u16) {
        let Some((_, used)) = self.pending.take() else {
            return;
        };
        let map = self.map.clone();
        let Some(r) = region_at(&map, self.base, self.size) else {
            return;
        };
        for (t, _) in batch {
            let Some(h) = self.untrack(t) else {
                continue;
            };
            let l = self.last[usize::from(h)];
            self.next[usize::from(l)] = self.free_head;
            // Written again from the private copy (a repeated token in the
            // batch would have linked the chain twice).
            let _ = r.write_u16(entry(l) + E_NEXT, self.free_head);
            let _ = r.write_u8(entry(h) + E_INFLIGHT, 0);
            self.free_head = h;
            self.free_count = self.free_count.saturating_add(self.num[usize::from(h)]);
        }
        if used.0 != used_idx {
            tracing::debug!(used_idx, ?used, "inflight record: used position differs");
        }
        self.used = used;
        let _ = write_position(&r, FREE_HEAD, USED_IDX, USED_WRAP, self.free_head, used);
        let _ = write_position(
            &r,
            OLD_FREE_HEAD,
            OLD_USED_IDX,
            OLD_USED_WRAP,
            self.free_head,
            used,
        );
    }
}

#[cfg(test)]
mod tests;
