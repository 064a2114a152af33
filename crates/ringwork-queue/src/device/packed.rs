//! Packed ring, device side (VIRTIO 1.4 §2.8).

use ringwork_spec::ring::packed as p;
use ringwork_spec::ring::packed::{lap_position as linear, need_event_packed as packed_need_event};
use ringwork_spec::ring::{
    DESC_SIZE, VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE,
};

use super::chain::{DescChain, UsedToken, UNKNOWN_CAPACITY};
use super::error::{ChainError, DeviceQueueError, RingArea};
use super::{Core, PackedState};
use crate::mem::{GuestMemory, MemSlice};

/// Reads a packed descriptor: addr, len, id and flags (the head's flags are
/// also loaded separately, with acquire, before this).
#[inline]
fn read_desc(ring: &MemSlice<'_>, pos: u16) -> Result<(u64, u32, u16, u16), DeviceQueueError> {
    let off = usize::from(pos) * DESC_SIZE;
    let addr = ring.read_u64(off)?;
    let rest = ring.read_u64(off + 8)?;
    Ok((addr, rest as u32, (rest >> 32) as u16, (rest >> 48) as u16))
}

#[inline]
pub(crate) fn advance(size: u16, pos: &mut u16, wrap: &mut bool, by: u16) {
    let next = u32::from(*pos) + u32::from(by);
    if next >= u32::from(size) {
        *pos = (next - u32::from(size)) as u16;
        *wrap = !*wrap;
    } else {
        *pos = next as u16;
    }
}

/// Pops up to `chains.len()` available chains; returns how many. The ring
/// is translated once per burst. Only a burst that finds nothing at all
/// publishes the event suppression position (with EVENT_IDX) and looks
/// again; a short burst leaves that to the next call.
#[inline]
pub(super) fn pop_burst<M: GuestMemory + ?Sized>(
    q: &Core,
    st: &mut PackedState,
    notify_enabled: bool,
    mem: &M,
    chains: &mut [DescChain],
) -> Result<usize, DeviceQueueError> {
    if chains.is_empty() {
        return Ok(0);
    }
    let ring = q.area(mem, RingArea::Descriptors, p::desc_ring_size(q.size))?;
    let mut n = 0;
    for chain in chains.iter_mut() {
        if !pop_in(q, st, notify_enabled && n == 0, mem, &ring, chain)? {
            break;
        }
        n += 1;
    }
    Ok(n)
}

/// Pops one chain from the translated descriptor ring.
#[inline]
fn pop_in<M: GuestMemory + ?Sized>(
    q: &Core,
    st: &mut PackedState,
    notify_enabled: bool,
    mem: &M,
    ring: &MemSlice<'_>,
    chain: &mut DescChain,
) -> Result<bool, DeviceQueueError> {
    let size = q.size;
    let flags_off = usize::from(st.avail_pos) * DESC_SIZE + 14;
    let mut first_flags = ring.load_u16_acquire(flags_off)?;
    if !p::is_avail(first_flags, st.avail_wrap) {
        if !(notify_enabled && q.features.event_idx) {
            return Ok(false);
        }
        // Empty: ask to hear about this position (VIRTIO 1.4 §2.8.10), then
        // look again, so a buffer published meanwhile is not missed.
        let dev = q.area(mem, RingArea::Device, p::EVENT_SUPPRESS_SIZE)?;
        dev.write_u16(0, p::event_desc(st.avail_pos, st.avail_wrap))?;
        core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
        first_flags = ring.load_u16_acquire(flags_off)?;
        if !p::is_avail(first_flags, st.avail_wrap) {
            return Ok(false);
        }
    }
    if first_flags & (VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_INDIRECT) == 0 {
        // The common one-descriptor chain, checked as the loop below would
        // check it, without the loop.
        let (addr, len, id, _) = read_desc(ring, st.avail_pos)?;
        chain.clear();
        chain.push(mem, addr, len, first_flags & VIRTQ_DESC_F_WRITE != 0)?;
        chain.set_token(UsedToken {
            id,
            ring_slots: 1,
            seq: st.avail_pos,
            capacity: UNKNOWN_CAPACITY,
        });
        advance(size, &mut st.avail_pos, &mut st.avail_wrap, 1);
        return Ok(true);
    }
    chain.clear();
    let start = st.avail_pos;
    let (mut pos, mut wrap) = (st.avail_pos, st.avail_wrap);
    // One step along the ring (a chain may wrap around its end).
    let step = |pos: &mut u16, wrap: &mut bool| {
        *pos += 1;
        if *pos == size {
            *pos = 0;
            *wrap = !*wrap;
        }
    };
    // The head, whose flags were loaded (acquire) above: an indirect
    // descriptor, or the first of several (a lone direct one returned
    // above).
    let (addr, len, mut id, _) = read_desc(ring, pos)?;
    step(&mut pos, &mut wrap);
    let mut n: u16 = 1;
    if first_flags & VIRTQ_DESC_F_INDIRECT != 0 {
        if !q.features.indirect_desc {
            return Err(ChainError::IndirectNotNegotiated.into());
        }
        // VIRTIO 1.4 §2.8.19: an indirect descriptor stands alone.
        if first_flags & VIRTQ_DESC_F_NEXT != 0 {
            return Err(ChainError::IndirectChained.into());
        }
        push_indirect(q, mem, chain, addr, len)?;
    } else {
        chain.push(mem, addr, len, first_flags & VIRTQ_DESC_F_WRITE != 0)?;
        // The rest, each made available by the driver too.
        loop {
            if n >= size {
                return Err(ChainError::TooLong {
                    limit: u32::from(size),
                }
                .into());
            }
            let (addr, len, desc_id, flags) = read_desc(ring, pos)?;
            // Available and not indirect, in one compare; which of the
            // two failed is sorted out only when one did.
            let want = if wrap {
                p::VIRTQ_DESC_F_AVAIL
            } else {
                p::VIRTQ_DESC_F_USED
            };
            let checked = p::VIRTQ_DESC_F_AVAIL | p::VIRTQ_DESC_F_USED | VIRTQ_DESC_F_INDIRECT;
            if flags & checked != want {
                if !p::is_avail(flags, wrap) {
                    return Err(ChainError::NotAvailable { index: pos }.into());
                }
                if !q.features.indirect_desc {
                    return Err(ChainError::IndirectNotNegotiated.into());
                }
                return Err(ChainError::IndirectChained.into());
            }
            n += 1;
            step(&mut pos, &mut wrap);
            chain.push(mem, addr, len, flags & VIRTQ_DESC_F_WRITE != 0)?;
            if flags & VIRTQ_DESC_F_NEXT == 0 {
                // The buffer id is the last descriptor's (§2.8.6).
                id = desc_id;
                break;
            }
        }
    }
    chain.set_token(UsedToken {
        id,
        ring_slots: n,
        seq: start,
        capacity: UNKNOWN_CAPACITY,
    });
    st.avail_pos = pos;
    st.avail_wrap = wrap;
    Ok(true)
}

/// Validates an indirect table (length, limit, inside shared memory) and
/// appends its entries to `chain`.
#[inline]
pub(super) fn push_indirect<M: GuestMemory + ?Sized>(
    q: &Core,
    mem: &M,
    chain: &mut DescChain,
    addr: u64,
    len: u32,
) -> Result<(), DeviceQueueError> {
    let entries = q.indirect_entries(len)?;
    let table = mem
        .slice(addr, len as usize)
        .ok_or(ChainError::OutOfMemory { addr, len })?;
    chain.set_indirect(addr, len);
    for i in 0..entries as usize {
        let off = i * DESC_SIZE;
        let a = table.read_u64(off)?;
        let rest = table.read_u64(off + 8)?;
        // Only WRITE is valid in an indirect table; other flags and the
        // buffer id are reserved and ignored (§2.8.7).
        let f = (rest >> 48) as u16;
        chain.push(mem, a, rest as u32, f & VIRTQ_DESC_F_WRITE != 0)?;
    }
    Ok(())
}

/// The flags of a used descriptor: AVAIL and USED equal to the used wrap
/// counter, and WRITE when the device wrote into the buffer (§2.8.4).
#[inline]
fn used_desc_flags(wrap: bool, len: u32) -> u16 {
    p::used_flags(wrap) | if len > 0 { VIRTQ_DESC_F_WRITE } else { 0 }
}

/// Completes `batch`: [`add_used_one`] for the common single chain,
/// [`add_used_many`] otherwise.
pub(super) fn add_used<M: GuestMemory + ?Sized>(
    q: &Core,
    st: &mut PackedState,
    mem: &M,
    batch: &[(UsedToken, u32)],
) -> Result<(), DeviceQueueError> {
    match *batch {
        [(t, len)] if t.ring_slots != 0 && t.ring_slots <= q.size => {
            add_used_one(q, st, mem, t, len)
        }
        _ => add_used_many(q, st, mem, batch),
    }
}

/// One used descriptor (a token whose slot count is in range): length, id
/// and flags in one release store at an 8-aligned ring, as
/// [`add_used_many`] publishes its descriptors; an in-order violation or an
/// unaligned ring (or a target without 64-bit atomics) goes the general
/// way.
#[inline]
fn add_used_one<M: GuestMemory + ?Sized>(
    q: &Core,
    st: &mut PackedState,
    mem: &M,
    t: UsedToken,
    len: u32,
) -> Result<(), DeviceQueueError> {
    if q.features.in_order && t.seq != st.used_pos {
        return add_used_many(q, st, mem, &[(t, len)]);
    }
    let ring = q.area(mem, RingArea::Descriptors, p::desc_ring_size(q.size))?;
    // One atomic store needs 64-bit atomics and an 8-aligned ring.
    if !cfg!(target_has_atomic = "64") || (ring.as_ptr() as usize) % 8 != 0 {
        return add_used_many(q, st, mem, &[(t, len)]);
    }
    let flags = used_desc_flags(st.used_wrap, len);
    let v = u64::from(len) | u64::from(t.id) << 32 | u64::from(flags) << 48;
    ring.store_u64_release(usize::from(st.used_pos) * DESC_SIZE + 8, v)?;
    advance(q.size, &mut st.used_pos, &mut st.used_wrap, t.ring_slots);
    Ok(())
}

/// Completes several chains (or one that [`add_used_one`] passes on).
#[inline(never)]
fn add_used_many<M: GuestMemory + ?Sized>(
    q: &Core,
    st: &mut PackedState,
    mem: &M,
    batch: &[(UsedToken, u32)],
) -> Result<(), DeviceQueueError> {
    let size = q.size;
    let in_order = q.features.in_order;
    if batch
        .iter()
        .any(|(t, _)| t.ring_slots == 0 || t.ring_slots > size)
    {
        return Err(DeviceQueueError::Usage("token from another queue"));
    }
    if in_order {
        let (mut pos, mut wrap) = (st.used_pos, st.used_wrap);
        for (t, _) in batch {
            if t.seq != pos {
                return Err(DeviceQueueError::Usage(
                    "VIRTIO_F_IN_ORDER: chains completed out of order",
                ));
            }
            advance(size, &mut pos, &mut wrap, t.ring_slots);
        }
    }
    let ring = q.area(mem, RingArea::Descriptors, p::desc_ring_size(size))?;
    let write = |pos: u16, id: u16, len: u32| -> Result<(), DeviceQueueError> {
        let off = usize::from(pos) * DESC_SIZE;
        ring.write_u32(off + 8, len)?;
        ring.write_u16(off + 12, id)?;
        Ok(())
    };
    let flags = used_desc_flags;
    // A used descriptor (one alone comes here only when `add_used_one`
    // passes it on): length, id and
    // flags in one release store of the descriptor's last eight bytes (the
    // driver reads the flags first and the rest after them). That store is
    // one atomic access only at an 8-aligned address, which the ring's
    // 16-byte alignment (checked at setup) gives in any sane mapping, and
    // on a target with 64-bit atomics; otherwise length and id first, then
    // the flags with release.
    let atomic8 = cfg!(target_has_atomic = "64") && (ring.as_ptr() as usize) % 8 == 0;
    let publish = |pos: u16, wrap: bool, id: u16, len: u32| -> Result<(), DeviceQueueError> {
        let off = usize::from(pos) * DESC_SIZE;
        if atomic8 {
            let v = u64::from(len) | u64::from(id) << 32 | u64::from(flags(wrap, len)) << 48;
            ring.store_u64_release(off + 8, v)?;
        } else {
            write(pos, id, len)?;
            ring.store_u16_release(off + 14, flags(wrap, len))?;
        }
        Ok(())
    };
    // The batch's first used descriptor, where the driver polls, is
    // published last and whole, in one store where possible: not its
    // length and id first and its flags at the end, which let the
    // driver's polling reads in between move its line across twice.
    let (first_pos, first_wrap) = (st.used_pos, st.used_wrap);
    let (mut pos, mut wrap) = (st.used_pos, st.used_wrap);
    match batch {
        [_, _, ..] if in_order => {
            // VIRTIO 1.4 §2.8.8 "In-order use of descriptors": one used
            // descriptor per run of buffers, over the run's first
            // descriptor, naming its last; a buffer may go without one only
            // if it was used completely, so a run ends at every buffer that
            // was not, and at the end of the batch. The first run's flags
            // are stored last, so the driver sees the whole batch at once.
            // The caller checked the slots against the entries in flight,
            // so they are at most the queue size: one lap at most.
            let (mut run_pos, mut run_wrap) = (pos, wrap);
            let mut first: Option<(u16, bool, u16, u32)> = None;
            for (i, &(t, len)) in batch.iter().enumerate() {
                advance(size, &mut pos, &mut wrap, t.ring_slots);
                if i + 1 == batch.len() || len != t.capacity {
                    if first.is_none() {
                        first = Some((run_pos, run_wrap, t.id, len));
                    } else {
                        publish(run_pos, run_wrap, t.id, len)?;
                    }
                    (run_pos, run_wrap) = (pos, wrap);
                }
            }
            if let Some((p0, w0, id0, len0)) = first {
                publish(p0, w0, id0, len0)?;
            }
        }
        _ => {
            // Write every entry; publish the first one last so the driver
            // sees the whole batch at once.
            for (i, &(t, len)) in batch.iter().enumerate() {
                if i > 0 {
                    publish(pos, wrap, t.id, len)?;
                }
                advance(size, &mut pos, &mut wrap, t.ring_slots);
            }
            if let Some(&(t0, len0)) = batch.first() {
                publish(first_pos, first_wrap, t0.id, len0)?;
            }
        }
    }
    st.used_pos = pos;
    st.used_wrap = wrap;
    Ok(())
}

pub(super) fn needs_notification<M: GuestMemory + ?Sized>(
    q: &Core,
    st: &mut PackedState,
    mem: &M,
) -> Result<bool, DeviceQueueError> {
    let size = q.size;
    let drv = q.area(mem, RingArea::Driver, p::EVENT_SUPPRESS_SIZE)?;
    core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
    let new = linear(size, st.used_pos, st.used_wrap);
    let old = linear(size, st.signalled_pos, st.signalled_wrap);
    let valid = st.signalled_valid;
    st.signalled_pos = st.used_pos;
    st.signalled_wrap = st.used_wrap;
    st.signalled_valid = true;
    let flags = drv.read_u16(2)? & p::RING_EVENT_FLAGS_MASK;
    match flags {
        p::RING_EVENT_FLAGS_ENABLE => Ok(true),
        p::RING_EVENT_FLAGS_DISABLE => Ok(false),
        p::RING_EVENT_FLAGS_DESC if q.features.event_idx => {
            if !valid {
                return Ok(true);
            }
            let (off, wrap) = p::split_event_desc(drv.read_u16(0)?);
            if off >= size {
                // A position outside the ring never comes: no notification
                // is owed (the driver broke its own suppression).
                return Ok(false);
            }
            Ok(packed_need_event(size, linear(size, off, wrap), new, old))
        }
        // DESC without EVENT_IDX, or the reserved value 3: notify, erring on
        // the side of liveness.
        _ => Ok(true),
    }
}

/// Whether the descriptor at the next avail position is available.
pub(super) fn has_available<M: GuestMemory + ?Sized>(
    q: &Core,
    st: &PackedState,
    mem: &M,
) -> Result<bool, DeviceQueueError> {
    let ring = q.area(mem, RingArea::Descriptors, p::desc_ring_size(q.size))?;
    let flags = ring.load_u16_acquire(usize::from(st.avail_pos) * DESC_SIZE + 14)?;
    Ok(p::is_avail(flags, st.avail_wrap))
}

pub(super) fn set_notification<M: GuestMemory + ?Sized>(
    q: &Core,
    st: &mut PackedState,
    mem: &M,
    enable: bool,
) -> Result<bool, DeviceQueueError> {
    let size = q.size;
    let dev = q.area(mem, RingArea::Device, p::EVENT_SUPPRESS_SIZE)?;
    if !enable {
        dev.write_u16(2, p::RING_EVENT_FLAGS_DISABLE)?;
        return Ok(false);
    }
    if q.features.event_idx {
        dev.write_u16(0, p::event_desc(st.avail_pos, st.avail_wrap))?;
        dev.write_u16(2, p::RING_EVENT_FLAGS_DESC)?;
    } else {
        dev.write_u16(2, p::RING_EVENT_FLAGS_ENABLE)?;
    }
    core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
    let ring = q.area(mem, RingArea::Descriptors, p::desc_ring_size(size))?;
    let flags = ring.load_u16_acquire(usize::from(st.avail_pos) * DESC_SIZE + 14)?;
    Ok(p::is_avail(flags, st.avail_wrap))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn need_event_over_positions() {
        let size = 4;
        // Driver wants to hear when position 2 (wrap 1) is used.
        let ev = linear(size, 2, true);
        assert!(packed_need_event(
            size,
            ev,
            linear(size, 3, true),
            linear(size, 1, true)
        ));
        assert!(!packed_need_event(
            size,
            ev,
            linear(size, 2, true),
            linear(size, 1, true)
        ));
        // Across the wrap: old at 3/w1, new at 1/w0 (two entries used: 3, 0).
        let ev = linear(size, 0, false);
        assert!(packed_need_event(
            size,
            ev,
            linear(size, 1, false),
            linear(size, 3, true)
        ));
        let ev = linear(size, 3, false);
        assert!(!packed_need_event(
            size,
            ev,
            linear(size, 1, false),
            linear(size, 3, true)
        ));
    }
}
