//! Split ring, device side (VIRTIO 1.4 §2.7).

use ringwork_spec::ring::split as s;
use ringwork_spec::ring::{
    need_event, DESC_SIZE, VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE,
};

use super::chain::{DescChain, UsedToken, UNKNOWN_CAPACITY};
use super::error::{ChainError, DeviceQueueError, RingArea};
use super::{Core, SplitState};
use crate::mem::{GuestMemory, MemSlice};

/// One split descriptor, read with two volatile 8-byte loads.
#[inline]
fn read_desc(table: &MemSlice<'_>, index: u32) -> Result<(u64, u32, u16, u16), DeviceQueueError> {
    let off = index as usize * DESC_SIZE;
    let addr = table.read_u64(off)?;
    let rest = table.read_u64(off + 8)?;
    Ok((addr, rest as u32, (rest >> 32) as u16, (rest >> 48) as u16))
}

/// Pops up to `chains.len()` available chains into `chains`; returns how
/// many. The rings are translated once for the burst and `avail.idx` is
/// read at most twice (once more after publishing `avail_event` when the
/// ring looked empty). An error breaks the queue: chains popped before it
/// in the burst are lost with it.
#[inline]
pub(super) fn pop_burst<M: GuestMemory + ?Sized>(
    q: &Core,
    st: &mut SplitState,
    notify_enabled: bool,
    mem: &M,
    chains: &mut [DescChain],
) -> Result<usize, DeviceQueueError> {
    if chains.is_empty() {
        return Ok(0);
    }
    let size = q.size;
    let avail = q.area(mem, RingArea::Driver, s::avail_ring_size(size))?;
    if st.next_avail == st.avail_shadow {
        let mut idx = avail.load_u16_acquire(s::AVAIL_IDX_OFFSET)?;
        if idx == st.next_avail && notify_enabled && q.features.event_idx {
            // Empty: ask to hear about the next entry (VIRTIO 1.4 §2.7.10),
            // then look again, so a buffer published meanwhile is not missed.
            let used = q.area(mem, RingArea::Device, s::used_ring_size(size))?;
            used.write_u16(s::avail_event_offset(size), st.next_avail)?;
            core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
            idx = avail.load_u16_acquire(s::AVAIL_IDX_OFFSET)?;
        }
        if idx.wrapping_sub(st.next_avail) > size {
            return Err(DeviceQueueError::AvailIndexJump {
                last: st.next_avail,
                idx,
                size,
            });
        }
        st.avail_shadow = idx;
        if idx == st.next_avail {
            return Ok(0);
        }
    }
    let ready = usize::from(st.avail_shadow.wrapping_sub(st.next_avail));
    let n = ready.min(chains.len());
    let table = q.area(mem, RingArea::Descriptors, s::desc_table_size(size))?;
    for chain in chains.iter_mut().take(n) {
        let slot = st.next_avail & (size - 1);
        let head = avail.read_u16(s::avail_ring_entry_offset(slot))?;
        read_chain_in(q, mem, &table, head, st.next_avail, chain)?;
        st.next_avail = st.next_avail.wrapping_add(1);
    }
    Ok(n)
}

/// Reads the chain whose head is descriptor `head` again, without
/// touching the available ring (resubmitting in-flight requests).
pub(super) fn chain_at<M: GuestMemory + ?Sized>(
    q: &Core,
    mem: &M,
    head: u16,
    chain: &mut DescChain,
) -> Result<(), DeviceQueueError> {
    let table = q.area(mem, RingArea::Descriptors, s::desc_table_size(q.size))?;
    read_chain_in(q, mem, &table, head, 0, chain)
}

/// Reads the chain starting at descriptor `head` (popped at `seq`) from
/// the translated descriptor table.
#[inline]
fn read_chain_in<M: GuestMemory + ?Sized>(
    q: &Core,
    mem: &M,
    table: &MemSlice<'_>,
    head: u16,
    seq: u16,
    chain: &mut DescChain,
) -> Result<(), DeviceQueueError> {
    let size = q.size;
    if head >= size {
        return Err(DeviceQueueError::HeadOutOfRange { head, size });
    }
    chain.clear();
    chain.set_token(UsedToken {
        id: head,
        ring_slots: 1,
        seq,
        capacity: UNKNOWN_CAPACITY,
    });
    let (addr, len, flags, _) = read_desc(table, u32::from(head))?;
    if flags & (VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_INDIRECT) == 0 {
        // The common one-descriptor chain, checked as `walk` would check
        // it, without the walk's loop and frame.
        chain.push(mem, addr, len, flags & VIRTQ_DESC_F_WRITE != 0)?;
        return Ok(());
    }
    walk(q, mem, table, u32::from(size), head, chain, false)
}

/// Walks a chain through `table` (the main table, or an indirect one),
/// reading its first descriptor again.
fn walk<M: GuestMemory + ?Sized>(
    q: &Core,
    mem: &M,
    table: &MemSlice<'_>,
    table_len: u32,
    head: u16,
    chain: &mut DescChain,
    in_indirect: bool,
) -> Result<(), DeviceQueueError> {
    let mut index = head;
    let mut seen = 0u32;
    loop {
        if seen >= table_len {
            return Err(ChainError::TooLong { limit: table_len }.into());
        }
        seen += 1;
        let (addr, len, flags, next) = read_desc(table, u32::from(index))?;
        if flags & VIRTQ_DESC_F_INDIRECT != 0 {
            if in_indirect {
                return Err(ChainError::NestedIndirect.into());
            }
            if !q.features.indirect_desc {
                return Err(ChainError::IndirectNotNegotiated.into());
            }
            if flags & VIRTQ_DESC_F_NEXT != 0 {
                return Err(ChainError::IndirectChained.into());
            }
            // VIRTIO 1.4 §2.7.5.3.2: zero or more direct descriptors followed
            // by one indirect; its WRITE flag is ignored.
            let entries = q.indirect_entries(len)?;
            let itable = mem
                .slice(addr, len as usize)
                .ok_or(ChainError::OutOfMemory { addr, len })?;
            chain.set_indirect(addr, len);
            return walk(q, mem, &itable, entries, 0, chain, true);
        }
        chain.push(mem, addr, len, flags & VIRTQ_DESC_F_WRITE != 0)?;
        if flags & VIRTQ_DESC_F_NEXT == 0 {
            return Ok(());
        }
        if u32::from(next) >= table_len {
            return Err(ChainError::NextOutOfRange {
                index,
                next,
                table_len,
            }
            .into());
        }
        index = next;
    }
}

pub(super) fn add_used<M: GuestMemory + ?Sized>(
    q: &Core,
    st: &mut SplitState,
    mem: &M,
    batch: &[(UsedToken, u32)],
) -> Result<(), DeviceQueueError> {
    let size = q.size;
    let in_order = q.features.in_order;
    let mut next_used = st.next_used;
    if in_order {
        for (i, (t, _)) in batch.iter().enumerate() {
            if t.seq != next_used.wrapping_add(i as u16) {
                return Err(DeviceQueueError::Usage(
                    "VIRTIO_F_IN_ORDER: chains completed out of order",
                ));
            }
        }
    }
    if batch.iter().any(|(t, _)| t.id >= size) {
        return Err(DeviceQueueError::Usage("used id beyond queue size"));
    }
    let used = q.area(mem, RingArea::Device, s::used_ring_size(size))?;
    match batch {
        [_, _, ..] if in_order => {
            // VIRTIO 1.4 §2.7.9: one entry per run of buffers, at the slot
            // of the run's first buffer, naming its last; a buffer may go
            // without an entry only if it was used completely (all its
            // writable bytes written), so a run ends at every buffer that
            // was not, and at the end of the batch.
            let mut run = 0u16;
            for (i, &(t, len)) in batch.iter().enumerate() {
                run += 1;
                if i + 1 == batch.len() || len != t.capacity {
                    let off = s::used_ring_entry_offset(next_used & (size - 1));
                    used.write_u64(off, u64::from(t.id) | (u64::from(len) << 32))?;
                    next_used = next_used.wrapping_add(run);
                    run = 0;
                }
            }
        }
        _ => {
            for &(t, len) in batch {
                let off = s::used_ring_entry_offset(next_used & (size - 1));
                used.write_u64(off, u64::from(t.id) | (u64::from(len) << 32))?;
                next_used = next_used.wrapping_add(1);
            }
        }
    }
    // VIRTIO 1.4 §2.7.8.1: len is set before idx is updated (release).
    used.store_u16_release(s::USED_IDX_OFFSET, next_used)?;
    st.next_used = next_used;
    Ok(())
}

pub(super) fn needs_notification<M: GuestMemory + ?Sized>(
    q: &Core,
    st: &mut SplitState,
    mem: &M,
) -> Result<bool, DeviceQueueError> {
    let size = q.size;
    let avail = q.area(mem, RingArea::Driver, s::avail_ring_size(size))?;
    // Order our used idx store before reading the driver's suppression.
    core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
    let new = st.next_used;
    let old = st.signalled_used;
    let valid = st.signalled_valid;
    st.signalled_used = new;
    st.signalled_valid = true;
    if !q.features.event_idx {
        // VIRTIO 1.4 §2.7.7.2: notify unless VIRTQ_AVAIL_F_NO_INTERRUPT.
        let flags = avail.read_u16(s::AVAIL_FLAGS_OFFSET)?;
        return Ok(flags & s::VIRTQ_AVAIL_F_NO_INTERRUPT == 0);
    }
    if !valid {
        return Ok(true);
    }
    let used_event = avail.read_u16(s::used_event_offset(size))?;
    Ok(need_event(used_event, new, old))
}

/// Whether the driver made buffers available that were not popped yet.
pub(super) fn has_available<M: GuestMemory + ?Sized>(
    q: &Core,
    st: &SplitState,
    mem: &M,
) -> Result<bool, DeviceQueueError> {
    let avail = q.area(mem, RingArea::Driver, s::avail_ring_size(q.size))?;
    Ok(avail.load_u16_acquire(s::AVAIL_IDX_OFFSET)? != st.next_avail)
}

pub(super) fn set_notification<M: GuestMemory + ?Sized>(
    q: &Core,
    st: &mut SplitState,
    mem: &M,
    enable: bool,
) -> Result<bool, DeviceQueueError> {
    let size = q.size;
    let used = q.area(mem, RingArea::Device, s::used_ring_size(size))?;
    if q.features.event_idx {
        if enable {
            used.write_u16(s::avail_event_offset(size), st.next_avail)?;
        }
        // Disabling with EVENT_IDX: leave avail_event behind; the driver
        // stops notifying once it has passed it.
    } else {
        used.write_u16(
            s::USED_FLAGS_OFFSET,
            if enable { 0 } else { s::VIRTQ_USED_F_NO_NOTIFY },
        )?;
    }
    if !enable {
        return Ok(false);
    }
    core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
    let avail = q.area(mem, RingArea::Driver, s::avail_ring_size(size))?;
    let idx = avail.load_u16_acquire(s::AVAIL_IDX_OFFSET)?;
    Ok(idx != st.next_avail)
}
