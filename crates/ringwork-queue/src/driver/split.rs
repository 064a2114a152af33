//! Split ring, driver side (VIRTIO 1.4 §2.7).

use alloc::vec::Vec;

use ringwork_spec::ring::split as s;
use ringwork_spec::ring::{
    align_up, need_event, DESC_SIZE, VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE,
};

use super::{Common, Prepared, Used, UsedError, NO_TABLE};
use crate::mem::{MemSlice, OutOfBounds};
use crate::types::{QueueAddresses, Segment};

/// The driver's private state of a descriptor: the free-list link (or,
/// in use, the chain link), and what it last wrote to the shared table.
#[derive(Debug, Clone, Copy, Default)]
struct ShadowDesc {
    next: u16,
    /// (addr, len, flags, next) as last written; `None` after a reset.
    written: Option<(u64, u32, u16, u16)>,
}

/// An `avail.ring` entry not written since the last reset.
const NO_ENTRY: u16 = u16::MAX;

pub(crate) struct SplitRing {
    size: u16,
    avail_off: usize,
    used_off: usize,
    total: usize,
    shadow: Vec<ShadowDesc>,
    /// Free-list head, or (IN_ORDER) the next descriptor in ring order.
    /// The list is first in, first out: a stream whose buffers complete
    /// in order reuses descriptors, ring slots and buffers in the same
    /// order every lap, so most writes find the table and ring already
    /// holding what they would write, and are skipped (no store to a line
    /// the device has cached).
    free_head: u16,
    /// Last descriptor of the free list (meaningful while `num_free > 0`).
    free_tail: u16,
    /// What was last written to each `avail.ring` entry ([`NO_ENTRY`]
    /// after a reset).
    avail_written: Vec<u16>,
    num_free: u16,
    avail_idx: u16,
    /// `avail.idx` as last stored (behind `avail_idx` while additions are
    /// deferred, [`crate::driver::DriverQueue::add_deferred`]).
    published_idx: u16,
    kicked_idx: u16,
    last_used: u16,
    /// The device's `used.idx` as last read (and checked): entries up to
    /// it are visible, so they are taken without reading `idx` again.
    used_seen: u16,
}

#[inline]
fn write_desc(
    mem: &MemSlice<'_>,
    index: usize,
    addr: u64,
    len: u32,
    flags: u16,
    next: u16,
) -> Result<(), OutOfBounds> {
    let off = index * DESC_SIZE;
    mem.write_u64(off, addr)?;
    mem.write_u64(
        off + 8,
        u64::from(len) | (u64::from(flags) << 32) | (u64::from(next) << 48),
    )
}

impl SplitRing {
    pub(crate) fn new(size: u16, legacy_align: Option<u32>) -> Self {
        let avail_off = s::desc_table_size(size);
        let (used_off, total) = match legacy_align {
            Some(a) => {
                let l = s::legacy_layout(size, a as usize);
                (l.used_offset, l.total_size)
            }
            None => {
                let used = align_up(avail_off + s::avail_ring_size(size), s::USED_RING_ALIGN);
                (used, used + s::used_ring_size(size))
            }
        };
        Self {
            size,
            avail_off,
            used_off,
            total,
            shadow: alloc::vec![ShadowDesc::default(); usize::from(size)],
            free_head: 0,
            free_tail: size - 1,
            avail_written: alloc::vec![NO_ENTRY; usize::from(size)],
            num_free: size,
            avail_idx: 0,
            published_idx: 0,
            kicked_idx: 0,
            last_used: 0,
            used_seen: 0,
        }
    }

    pub(crate) fn total_len(&self) -> usize {
        self.total
    }

    pub(crate) fn init(&mut self) {
        for (i, d) in self.shadow.iter_mut().enumerate() {
            d.next = ((i + 1) % usize::from(self.size)) as u16;
            d.written = None;
        }
        self.avail_written.fill(NO_ENTRY);
        self.free_head = 0;
        self.free_tail = self.size - 1;
        self.num_free = self.size;
        self.avail_idx = 0;
        self.published_idx = 0;
        self.kicked_idx = 0;
        self.last_used = 0;
        self.used_seen = 0;
    }

    pub(crate) fn addresses(&self, base: u64) -> QueueAddresses {
        QueueAddresses {
            desc: base,
            driver: base + self.avail_off as u64,
            device: base + self.used_off as u64,
        }
    }

    pub(crate) fn num_free(&self) -> u16 {
        self.num_free
    }

    pub(crate) fn avail_idx(&self) -> u16 {
        self.avail_idx
    }

    /// The descriptor after `index` in a chain being allocated.
    #[inline]
    fn following(&self, index: u16, in_order: bool) -> u16 {
        if in_order {
            (index + 1) & (self.size - 1)
        } else {
            self.shadow[usize::from(index)].next
        }
    }

    /// Writes descriptor `index` of the ring's table, unless it already
    /// holds exactly that (as we last wrote it: the device only reads the
    /// table, and one that scribbles on it misleads only itself).
    #[inline]
    fn put_desc(
        &mut self,
        mem: &MemSlice<'_>,
        index: u16,
        addr: u64,
        len: u32,
        flags: u16,
        next: u16,
    ) {
        let Some(d) = self.shadow.get_mut(usize::from(index)) else {
            return;
        };
        let w = (addr, len, flags, next);
        if d.written == Some(w) {
            return;
        }
        if write_desc(mem, usize::from(index), addr, len, flags, next).is_ok() {
            d.written = Some(w);
        }
    }

    pub(crate) fn add<T>(
        &mut self,
        mem: &MemSlice<'_>,
        common: &mut Common<T>,
        out: &[Segment],
        inp: &[Segment],
        prep: Prepared,
        publish: bool,
    ) -> u16 {
        let in_order = common.features.in_order;
        let n = out.len() + inp.len();
        let segs = out
            .iter()
            .map(|s| (s, 0))
            .chain(inp.iter().map(|s| (s, VIRTQ_DESC_F_WRITE)));
        let head = self.free_head;
        // Writes to our own ring and tables are in bounds by construction;
        // an error here would mean a broken allocator, not device input.
        if prep.table != NO_TABLE {
            if let Some((table, taddr)) = common.table(prep.table) {
                for (i, (seg, w)) in segs.enumerate() {
                    let last = i + 1 == n;
                    let flags = w | if last { 0 } else { VIRTQ_DESC_F_NEXT };
                    let next = if last { 0 } else { (i + 1) as u16 };
                    let _ = write_desc(&table, i, seg.addr, seg.len, flags, next);
                }
                self.put_desc(
                    mem,
                    head,
                    taddr,
                    (n * DESC_SIZE) as u32,
                    VIRTQ_DESC_F_INDIRECT,
                    0,
                );
            }
            self.free_head = self.following(head, in_order);
        } else {
            let mut idx = head;
            for (i, (seg, w)) in segs.enumerate() {
                let next = self.following(idx, in_order);
                let last = i + 1 == n;
                let flags = w | if last { 0 } else { VIRTQ_DESC_F_NEXT };
                // The last descriptor's `next` is unused (no NEXT flag):
                // written as 0, so it does not change with the free list
                // and an unchanged descriptor is not rewritten.
                let written_next = if last { 0 } else { next };
                self.put_desc(mem, idx, seg.addr, seg.len, flags, written_next);
                self.shadow[usize::from(idx)].next = next;
                idx = next;
            }
            self.free_head = idx;
        }
        self.num_free -= prep.ring_slots;
        self.put_avail(mem, head);
        if publish {
            self.publish(mem);
        }
        head
    }

    /// [`Self::add`] for a buffer of one direct descriptor (`flags` 0 or
    /// WRITE): the same writes, without the chain and table walk.
    #[inline(always)]
    pub(crate) fn add_one(
        &mut self,
        mem: &MemSlice<'_>,
        in_order: bool,
        seg: &Segment,
        flags: u16,
        publish: bool,
    ) -> u16 {
        let head = self.free_head;
        let next = self.following(head, in_order);
        // One descriptor is its chain's last: `next` written as 0.
        self.put_desc(mem, head, seg.addr, seg.len, flags, 0);
        if let Some(d) = self.shadow.get_mut(usize::from(head)) {
            d.next = next;
        }
        self.free_head = next;
        self.num_free -= 1;
        self.put_avail(mem, head);
        if publish {
            self.publish(mem);
        }
        head
    }

    /// See [`crate::driver::DriverQueue::prefetch_adds`]: the descriptors
    /// from the free-list head on (in table order, which is the order an
    /// in-order or first-in-first-out stream takes them) and the next
    /// `avail.ring` entries.
    pub(crate) fn prefetch_adds(&self, mem: &MemSlice<'_>, n: usize) {
        let size = usize::from(self.size);
        let first = usize::from(self.free_head);
        let head = n.min(size - first);
        super::prefetch_span(mem, first * DESC_SIZE, head * DESC_SIZE);
        super::prefetch_span(mem, 0, (n - head) * DESC_SIZE);
        let slot = usize::from(self.avail_idx & (self.size - 1));
        let entries = self.avail_off + s::avail_ring_entry_offset(slot as u16);
        super::prefetch_span(mem, entries, n.min(size - slot) * 2);
    }

    /// Writes `head` to the next `avail.ring` entry (skipped when it
    /// already holds it) and advances the private `avail_idx`.
    #[inline]
    fn put_avail(&mut self, mem: &MemSlice<'_>, head: u16) {
        let slot = self.avail_idx & (self.size - 1);
        if let Some(w) = self.avail_written.get_mut(usize::from(slot)) {
            if *w != head
                && mem
                    .write_u16(self.avail_off + s::avail_ring_entry_offset(slot), head)
                    .is_ok()
            {
                *w = head;
            }
        }
        self.avail_idx = self.avail_idx.wrapping_add(1);
    }

    /// Stores `avail.idx` if entries were added since it was last stored
    /// (VIRTIO 1.4 §2.7.13.3.1: the ring entries before idx, release).
    pub(crate) fn publish(&mut self, mem: &MemSlice<'_>) {
        if self.published_idx == self.avail_idx {
            return;
        }
        let _ = mem.store_u16_release(self.avail_off + s::AVAIL_IDX_OFFSET, self.avail_idx);
        self.published_idx = self.avail_idx;
    }

    #[inline]
    fn free_chain(&mut self, head: u16, count: u16, in_order: bool) {
        if !in_order {
            let mut last = head;
            for _ in 1..count {
                last = self.shadow[usize::from(last)].next;
            }
            // Appended: first in, first out.
            if self.num_free == 0 {
                self.free_head = head;
            } else {
                self.shadow[usize::from(self.free_tail)].next = head;
            }
            self.free_tail = last;
        }
        self.num_free += count;
    }

    #[inline(always)]
    fn finish<T>(
        &mut self,
        common: &mut Common<T>,
        id: u16,
        len: Option<u32>,
    ) -> Result<Option<Used<T>>, UsedError> {
        let (used, slots) = common.complete(id, len)?;
        self.free_chain(id, slots, common.features.in_order);
        Ok(Some(used))
    }

    #[inline]
    pub(crate) fn pop_used<T>(
        &mut self,
        mem: &MemSlice<'_>,
        common: &mut Common<T>,
    ) -> Result<Option<Used<T>>, UsedError> {
        if let Some((id, len)) = common.next_in_batch() {
            return self.finish(common, id, len);
        }
        let used = mem.subslice(self.used_off, s::used_ring_size(self.size))?;
        if self.used_seen == self.last_used {
            // Everything seen was taken: read (acquire) the device's index.
            let idx = used.load_u16_acquire(s::USED_IDX_OFFSET)?;
            if idx == self.last_used {
                return Ok(None);
            }
            if idx.wrapping_sub(self.last_used) > common.outstanding {
                return Err(UsedError::BadUsedIndex {
                    last: self.last_used,
                    idx,
                    outstanding: common.outstanding,
                });
            }
            self.used_seen = idx;
        }
        // Checked against `outstanding` when read; both shrink together.
        let idx = self.used_seen;
        let pending = idx.wrapping_sub(self.last_used);
        let bad_index = UsedError::BadUsedIndex {
            last: self.last_used,
            idx,
            outstanding: common.outstanding,
        };
        if pending > common.outstanding {
            return Err(bad_index);
        }
        let slot = self.last_used & (self.size - 1);
        let elem = used.read_u64(s::used_ring_entry_offset(slot))?;
        let (id, len) = (elem as u32, (elem >> 32) as u32);
        if !common.is_outstanding(id) {
            return Err(UsedError::BadId { id });
        }
        let id = id as u16;
        if common.features.in_order {
            let k = common
                .in_order_count(id)
                .ok_or(UsedError::BadId { id: u32::from(id) })?;
            if pending < k {
                return Err(bad_index);
            }
            self.last_used = self.last_used.wrapping_add(k);
            if k > 1 {
                common.batch = Some((id, len));
                let front = common.order.front().unwrap_or(id);
                return self.finish(common, front, None);
            }
        } else {
            self.last_used = self.last_used.wrapping_add(1);
        }
        self.finish(common, id, Some(len))
    }

    pub(crate) fn has_used(&self, mem: &MemSlice<'_>) -> bool {
        mem.load_u16_acquire(self.used_off + s::USED_IDX_OFFSET)
            .is_ok_and(|idx| idx != self.last_used)
    }

    pub(crate) fn kick_prepare(
        &mut self,
        mem: &MemSlice<'_>,
        event_idx: bool,
        size: u16,
    ) -> Result<bool, OutOfBounds> {
        self.publish(mem);
        let (new, old) = (self.avail_idx, self.kicked_idx);
        if new == old {
            // Nothing made available since the last check: no notification,
            // and no fence needed.
            return Ok(false);
        }
        core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
        self.kicked_idx = new;
        let need = if event_idx {
            let ev = mem.read_u16(self.used_off + s::avail_event_offset(size))?;
            need_event(ev, new, old)
        } else {
            let flags = mem.read_u16(self.used_off + s::USED_FLAGS_OFFSET)?;
            flags & s::VIRTQ_USED_F_NO_NOTIFY == 0
        };
        Ok(need)
    }

    pub(crate) fn disable_cb(&mut self, mem: &MemSlice<'_>, event_idx: bool) {
        let _ = if event_idx {
            // Half a lap ahead: never reached while at most `size` buffers
            // are outstanding. (flags must stay 0 with EVENT_IDX, §2.7.7.1.)
            mem.write_u16(
                self.avail_off + s::used_event_offset(self.size),
                self.last_used.wrapping_add(0x8000),
            )
        } else {
            mem.write_u16(
                self.avail_off + s::AVAIL_FLAGS_OFFSET,
                s::VIRTQ_AVAIL_F_NO_INTERRUPT,
            )
        };
    }

    pub(crate) fn enable_cb(&mut self, mem: &MemSlice<'_>, event_idx: bool, ahead: u16) {
        let _ = if event_idx {
            mem.write_u16(
                self.avail_off + s::used_event_offset(self.size),
                self.last_used.wrapping_add(ahead),
            )
        } else {
            mem.write_u16(self.avail_off + s::AVAIL_FLAGS_OFFSET, 0)
        };
    }
}
