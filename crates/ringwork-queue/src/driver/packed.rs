//! Packed ring, driver side (VIRTIO 1.4 §2.8).

use alloc::vec::Vec;

use ringwork_spec::ring::packed as p;
use ringwork_spec::ring::packed::{lap_position, need_event_packed};
use ringwork_spec::ring::{
    DESC_SIZE, VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE,
};

use super::{Common, Prepared, Used, UsedError, NO_TABLE};
use crate::device::advance;
use crate::mem::{MemSlice, OutOfBounds};
use crate::types::{QueueAddresses, Segment};

pub(crate) struct PackedRing {
    size: u16,
    avail_pos: u16,
    avail_wrap: bool,
    used_pos: u16,
    used_wrap: bool,
    kicked: (u16, bool),
    num_free: u16,
    free_ids: Vec<u16>,
}

impl PackedRing {
    pub(crate) fn new(size: u16) -> Self {
        Self {
            size,
            avail_pos: 0,
            avail_wrap: true,
            used_pos: 0,
            used_wrap: true,
            kicked: (0, true),
            num_free: size,
            free_ids: Vec::with_capacity(usize::from(size)),
        }
    }

    fn driver_event_off(size: u16) -> usize {
        p::desc_ring_size(size)
    }

    fn device_event_off(size: u16) -> usize {
        p::desc_ring_size(size) + p::EVENT_SUPPRESS_SIZE
    }

    pub(crate) fn total_len(size: u16) -> usize {
        p::desc_ring_size(size) + 2 * p::EVENT_SUPPRESS_SIZE
    }

    pub(crate) fn addresses(base: u64, size: u16) -> QueueAddresses {
        QueueAddresses {
            desc: base,
            driver: base + Self::driver_event_off(size) as u64,
            device: base + Self::device_event_off(size) as u64,
        }
    }

    pub(crate) fn init(&mut self) {
        *self = Self {
            free_ids: core::mem::take(&mut self.free_ids),
            ..Self::new(self.size)
        };
        self.free_ids.clear();
        self.free_ids.extend((0..self.size).rev());
    }

    #[inline]
    pub(crate) fn num_free(&self) -> u16 {
        // An id is needed per buffer too; with no free id nothing fits.
        if self.free_ids.is_empty() {
            0
        } else {
            self.num_free
        }
    }

    pub(crate) fn avail_pos(&self) -> (u16, bool) {
        (self.avail_pos, self.avail_wrap)
    }

    pub(crate) fn add<T>(
        &mut self,
        mem: &MemSlice<'_>,
        common: &mut Common<T>,
        out: &[Segment],
        inp: &[Segment],
        prep: Prepared,
    ) -> u16 {
        // `num_free()` reported 0 without a free id, so the caller checked.
        let id = self.free_ids.pop().unwrap_or_default();
        let n = out.len() + inp.len();
        let segs = out
            .iter()
            .map(|s| (s, 0))
            .chain(inp.iter().map(|s| (s, VIRTQ_DESC_F_WRITE)));
        let (start, start_wrap) = (self.avail_pos, self.avail_wrap);
        let mut head_flags = 0;
        // Writes to our own ring and tables are in bounds by construction.
        if prep.table != NO_TABLE {
            if let Some((table, taddr)) = common.table(prep.table) {
                for (i, (seg, w)) in segs.enumerate() {
                    let off = i * DESC_SIZE;
                    let _ = table.write_u64(off, seg.addr);
                    let _ = table.write_u64(off + 8, u64::from(seg.len) | (u64::from(w) << 48));
                }
                let off = usize::from(start) * DESC_SIZE;
                let _ = mem.write_u64(off, taddr);
                let _ = mem.write_u32(off + 8, (n * DESC_SIZE) as u32);
                let _ = mem.write_u16(off + 12, id);
                head_flags = VIRTQ_DESC_F_INDIRECT | p::avail_flags(start_wrap);
            }
            advance(self.size, &mut self.avail_pos, &mut self.avail_wrap, 1);
        } else {
            for (i, (seg, w)) in segs.enumerate() {
                let off = usize::from(self.avail_pos) * DESC_SIZE;
                let flags = w
                    | p::avail_flags(self.avail_wrap)
                    | if i + 1 == n { 0 } else { VIRTQ_DESC_F_NEXT };
                let _ = mem.write_u64(off, seg.addr);
                if i == 0 {
                    let _ = mem.write_u32(off + 8, seg.len);
                    let _ = mem.write_u16(off + 12, id);
                    head_flags = flags;
                } else {
                    let _ = mem.write_u64(
                        off + 8,
                        u64::from(seg.len) | (u64::from(id) << 32) | (u64::from(flags) << 48),
                    );
                }
                advance(self.size, &mut self.avail_pos, &mut self.avail_wrap, 1);
            }
        }
        // VIRTIO 1.4 §2.8.21.1.1: the head's flags last, with release.
        let _ = mem.store_u16_release(usize::from(start) * DESC_SIZE + 14, head_flags);
        self.num_free -= prep.ring_slots;
        id
    }

    /// [`Self::add`] for a buffer of one direct descriptor (`flags` 0 or
    /// WRITE).
    #[inline(always)]
    pub(crate) fn add_one(&mut self, mem: &MemSlice<'_>, seg: &Segment, flags: u16) -> u16 {
        // `num_free()` reported 0 without a free id, so the caller checked.
        let id = self.free_ids.pop().unwrap_or_default();
        let off = usize::from(self.avail_pos) * DESC_SIZE;
        let flags = flags | p::avail_flags(self.avail_wrap);
        // Writes to our own ring are in bounds by construction.
        let _ = mem.write_u64(off, seg.addr);
        let _ = mem.write_u32(off + 8, seg.len);
        let _ = mem.write_u16(off + 12, id);
        // VIRTIO 1.4 §2.8.21.1.1: flags last, with release.
        let _ = mem.store_u16_release(off + 14, flags);
        advance(self.size, &mut self.avail_pos, &mut self.avail_wrap, 1);
        self.num_free -= 1;
        id
    }

    #[inline(always)]
    /// See [`crate::driver::DriverQueue::prefetch_adds`]: the descriptors
    /// from the next available position on.
    pub(crate) fn prefetch_adds(&self, mem: &MemSlice<'_>, n: usize) {
        let size = usize::from(self.size);
        let first = usize::from(self.avail_pos);
        let head = n.min(size - first);
        super::prefetch_span(mem, first * DESC_SIZE, head * DESC_SIZE);
        super::prefetch_span(mem, 0, (n - head) * DESC_SIZE);
    }

    #[inline(always)]
    fn finish<T>(
        &mut self,
        common: &mut Common<T>,
        id: u16,
        len: Option<u32>,
    ) -> Result<Option<Used<T>>, UsedError> {
        let (used, slots) = common.complete(id, len)?;
        self.num_free += slots;
        self.free_ids.push(id);
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
        let off = usize::from(self.used_pos) * DESC_SIZE;
        let flags = mem.load_u16_acquire(off + 14)?;
        if !p::is_used(flags, self.used_wrap) {
            return Ok(None);
        }
        let id = mem.read_u16(off + 12)?;
        let len = if flags & VIRTQ_DESC_F_WRITE != 0 {
            mem.read_u32(off + 8)?
        } else {
            0
        };
        if !common.is_outstanding(u32::from(id)) {
            return Err(UsedError::BadId { id: u32::from(id) });
        }
        let k = if common.features.in_order {
            common
                .in_order_count(id)
                .ok_or(UsedError::BadId { id: u32::from(id) })?
        } else {
            1
        };
        let slots: u32 = if k == 1 {
            u32::from(common.slots[usize::from(id)].ring_slots)
        } else {
            common
                .order
                .iter()
                .take(usize::from(k))
                .map(|x| u32::from(common.slots[usize::from(x)].ring_slots))
                .sum()
        };
        // At most `size` descriptors are outstanding, so this fits a lap.
        advance(
            self.size,
            &mut self.used_pos,
            &mut self.used_wrap,
            slots as u16,
        );
        if k > 1 {
            common.batch = Some((id, len));
            let front = common.order.front().unwrap_or(id);
            return self.finish(common, front, None);
        }
        self.finish(common, id, Some(len))
    }

    pub(crate) fn has_used(&self, mem: &MemSlice<'_>) -> bool {
        mem.load_u16_acquire(usize::from(self.used_pos) * DESC_SIZE + 14)
            .is_ok_and(|f| p::is_used(f, self.used_wrap))
    }

    pub(crate) fn kick_prepare(
        &mut self,
        mem: &MemSlice<'_>,
        event_idx: bool,
        size: u16,
    ) -> Result<bool, OutOfBounds> {
        let new = (self.avail_pos, self.avail_wrap);
        let old = self.kicked;
        if new == old {
            // Nothing made available since the last check: no notification,
            // and no fence needed.
            return Ok(false);
        }
        core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
        self.kicked = new;
        let dev = Self::device_event_off(size);
        let flags = mem.read_u16(dev + 2)? & p::RING_EVENT_FLAGS_MASK;
        let need = match flags {
            p::RING_EVENT_FLAGS_DISABLE => false,
            p::RING_EVENT_FLAGS_DESC if event_idx => {
                let (off, wrap) = p::split_event_desc(mem.read_u16(dev)?);
                off >= size
                    || need_event_packed(
                        size,
                        lap_position(size, off, wrap),
                        lap_position(size, new.0, new.1),
                        lap_position(size, old.0, old.1),
                    )
            }
            _ => true,
        };
        Ok(need)
    }

    pub(crate) fn disable_cb(&mut self, mem: &MemSlice<'_>) {
        let _ = mem.write_u16(
            Self::driver_event_off(self.size) + 2,
            p::RING_EVENT_FLAGS_DISABLE,
        );
    }

    pub(crate) fn enable_cb(&mut self, mem: &MemSlice<'_>, event_idx: bool, size: u16, ahead: u16) {
        let drv = Self::driver_event_off(size);
        if event_idx {
            let (mut pos, mut wrap) = (self.used_pos, self.used_wrap);
            advance(size, &mut pos, &mut wrap, ahead.min(size - 1));
            let _ = mem.write_u16(drv, p::event_desc(pos, wrap));
            let _ = mem.write_u16(drv + 2, p::RING_EVENT_FLAGS_DESC);
        } else {
            let _ = mem.write_u16(drv + 2, p::RING_EVENT_FLAGS_ENABLE);
        }
    }
}
