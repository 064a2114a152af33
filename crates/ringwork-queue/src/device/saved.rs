//! Packed-ring chains rebuilt from saved descriptors.
//!
//! A packed ring's device overwrites descriptor slots with used entries, so
//! a chain that is still in flight may no longer be in the ring. A device
//! that must resubmit such chains after a restart (vhost-user inflight
//! tracking) keeps copies of the ring descriptors it popped
//! ([`DescChain::packed_descriptors`]) and rebuilds the chains from them
//! with [`DeviceQueue::chain_from_descriptors`].
//!
//! Trust and panic contract: saved descriptors come from memory another
//! party can write (the vhost-user frontend keeps them), so they are
//! validated exactly as a pop validates the ring: buffers inside shared
//! memory without overflow, readable before writable, total length below
//! 2^32, indirect tables only when negotiated, standing alone, with a valid
//! length within the limit. Nothing panics.
//!
//! [`DeviceQueue::chain_from_descriptors`]: super::DeviceQueue::chain_from_descriptors

use ringwork_spec::ring::{VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE};

use super::chain::{DescChain, UsedToken};
use super::error::{ChainError, DeviceQueueError};
use super::packed::push_indirect;
use super::Core;
use crate::mem::GuestMemory;

/// One packed-ring descriptor as the device read it (VIRTIO 1.4 §2.8.13:
/// address, length, buffer id, flags). Only VIRTQ_DESC_F_NEXT, _WRITE and
/// _INDIRECT matter when a chain is rebuilt; the AVAIL/USED bits and other
/// flags are ignored, and the buffer id of the last descriptor is the
/// chain's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SavedDesc {
    /// Buffer (or indirect table) address.
    pub addr: u64,
    /// Buffer (or indirect table) length.
    pub len: u32,
    /// Buffer id.
    pub id: u16,
    /// Descriptor flags.
    pub flags: u16,
}

/// Rebuilds the chain `descs` describe, as if popped at ring offset `pos`.
pub(super) fn rebuild<M: GuestMemory + ?Sized>(
    q: &Core,
    mem: &M,
    descs: &[SavedDesc],
    pos: u16,
    chain: &mut DescChain,
) -> Result<(), DeviceQueueError> {
    let size = q.size;
    if pos >= size {
        return Err(DeviceQueueError::Usage(
            "chain_from_descriptors: position beyond queue size",
        ));
    }
    let Some(last) = descs.last() else {
        return Err(ChainError::SavedListMismatch { index: 0 }.into());
    };
    if descs.len() > usize::from(size) {
        return Err(ChainError::TooLong {
            limit: u32::from(size),
        }
        .into());
    }
    chain.clear();
    for (k, d) in descs.iter().enumerate() {
        let is_last = k + 1 == descs.len();
        if d.flags & VIRTQ_DESC_F_INDIRECT != 0 {
            if !q.features.indirect_desc {
                return Err(ChainError::IndirectNotNegotiated.into());
            }
            // VIRTIO 1.4 §2.8.19: an indirect descriptor stands alone.
            if descs.len() > 1 || d.flags & VIRTQ_DESC_F_NEXT != 0 {
                return Err(ChainError::IndirectChained.into());
            }
            push_indirect(q, mem, chain, d.addr, d.len)?;
            break;
        }
        if (d.flags & VIRTQ_DESC_F_NEXT != 0) == is_last {
            // The list ends before the chain does, or goes on after it.
            return Err(ChainError::SavedListMismatch { index: k as u16 }.into());
        }
        chain.push(mem, d.addr, d.len, d.flags & VIRTQ_DESC_F_WRITE != 0)?;
    }
    chain.set_token(UsedToken {
        id: last.id,
        ring_slots: descs.len() as u16,
        seq: pos,
        capacity: super::chain::UNKNOWN_CAPACITY,
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::DeviceQueue;
    use crate::test_utils::TestMemory;
    use crate::types::{QueueAddresses, QueueFeatures, QueuePosition, RingFormat, Segment};
    use ringwork_spec::ring::packed as p;

    const BASE: u64 = 0x1_0000;
    const RING: u64 = BASE;
    const DATA: u64 = BASE + 0x4000;
    const SIZE: u16 = 8;
    const R: u16 = 0;
    const W: u16 = VIRTQ_DESC_F_WRITE;
    const N: u16 = VIRTQ_DESC_F_NEXT;
    const I: u16 = VIRTQ_DESC_F_INDIRECT;

    fn rig(indirect: bool) -> (TestMemory, DeviceQueue) {
        let mem = TestMemory::new(BASE, 0x1_0000);
        let addrs = QueueAddresses {
            desc: RING,
            driver: BASE + 0x1000,
            device: BASE + 0x1100,
        };
        let f = QueueFeatures {
            indirect_desc: indirect,
            ..QueueFeatures::default()
        };
        let q = DeviceQueue::new(RingFormat::Packed, SIZE, addrs, f).unwrap();
        (mem, q)
    }

    fn d(addr: u64, len: u32, id: u16, flags: u16) -> SavedDesc {
        SavedDesc {
            addr,
            len,
            id,
            flags,
        }
    }

    /// Writes a descriptor at guest address `at` (ring slot or table entry).
    fn put(mem: &TestMemory, at: u64, x: SavedDesc) {
        let s = mem.slice(at, 16).unwrap();
        s.write_u64(0, x.addr).unwrap();
        s.write_u32(8, x.len).unwrap();
        s.write_u16(12, x.id).unwrap();
        s.write_u16(14, x.flags).unwrap();
    }

    fn rebuild(
        q: &DeviceQueue,
        mem: &TestMemory,
        descs: &[SavedDesc],
    ) -> Result<DescChain, DeviceQueueError> {
        let mut c = DescChain::new();
        q.chain_from_descriptors(mem, descs, 0, &mut c).map(|()| c)
    }

    fn same(a: &DescChain, b: &DescChain) {
        assert_eq!(a.segments(), b.segments());
        assert_eq!(a.readable_segments().len(), b.readable_segments().len());
        assert_eq!(
            (a.readable_len(), a.writable_len()),
            (b.readable_len(), b.writable_len())
        );
        assert_eq!(a.is_indirect(), b.is_indirect());
        assert_eq!(a.token(), b.token());
    }

    #[test]
    fn popped_chains_round_trip_through_their_saved_descriptors() {
        let (mem, mut q) = rig(true);
        let av = p::avail_flags(true);
        // A direct chain of three (two readable, one writable) at 0..3...
        put(&mem, RING, d(DATA, 16, 9, av | N));
        put(&mem, RING + 16, d(DATA + 16, 0, 9, av | N));
        put(&mem, RING + 32, d(DATA + 32, 64, 4, av | W));
        // ...and an indirect one (readable, writable) at 3.
        let table = DATA + 0x1000;
        put(&mem, table, d(DATA + 0x200, 8, 0, 0));
        put(&mem, table + 16, d(DATA + 0x300, 32, 0, W));
        put(&mem, RING + 48, d(table, 32, 6, av | I));
        let a = q.pop(&mem).unwrap().unwrap();
        let b = q.pop(&mem).unwrap().unwrap();
        assert_eq!((a.token().ring_slots(), a.token().position()), (3, 0));
        assert_eq!((b.token().ring_slots(), b.token().position()), (1, 3));
        let sa: Vec<SavedDesc> = a.packed_descriptors().collect();
        assert_eq!(
            sa,
            [
                d(DATA, 16, 4, N),
                d(DATA + 16, 0, 4, N),
                d(DATA + 32, 64, 4, W)
            ]
        );
        let sb: Vec<SavedDesc> = b.packed_descriptors().collect();
        assert_eq!(sb, [d(table, 32, 6, I)]);
        // A used entry for `b` overwrites `a`'s first slot: the copies
        // still rebuild both chains.
        q.add_used(&mem, b.token(), 32).unwrap();
        let mut c = DescChain::new();
        q.chain_from_descriptors(&mem, &sa, 0, &mut c).unwrap();
        same(&a, &c);
        q.chain_from_descriptors(&mem, &sb, 3, &mut c).unwrap();
        same(&b, &c);
        // AVAIL/USED bits and other flags in the copies are ignored.
        let raw = [
            d(DATA, 16, 4, N | av),
            d(DATA + 16, 0, 4, N | p::used_flags(false)),
            d(DATA + 32, 64, 4, W | 0x40),
        ];
        q.chain_from_descriptors(&mem, &raw, 0, &mut c).unwrap();
        same(&a, &c);
    }

    #[test]
    fn rebuilt_tokens_complete_at_the_restored_position() {
        let (mem, mut q) = rig(false);
        // Two chains in flight after a restart: 3 slots at 6 (wrapping),
        // then 1 at 1; the used position is 6 in lap 1.
        q.set_position(QueuePosition {
            next_avail: 2,
            avail_wrap: false,
            next_used: 6,
            used_wrap: true,
        })
        .unwrap();
        assert_eq!(q.in_flight(), 4);
        let mut a = DescChain::new();
        let descs = [
            d(DATA, 8, 0, N),
            d(DATA + 8, 8, 0, N),
            d(DATA + 16, 8, 7, W),
        ];
        q.chain_from_descriptors(&mem, &descs, 6, &mut a).unwrap();
        let mut b = DescChain::new();
        q.chain_from_descriptors(&mem, &[d(DATA, 4, 5, W)], 1, &mut b)
            .unwrap();
        assert_eq!(a.writable_segments(), [Segment::new(DATA + 16, 8)]);
        q.add_used(&mem, a.token(), 8).unwrap();
        let slot = mem.slice(RING + 6 * 16, 16).unwrap();
        assert_eq!(
            slot.read_u16(12).unwrap(),
            7,
            "buffer id of the last descriptor"
        );
        assert_eq!(slot.read_u32(8).unwrap(), 8);
        assert_eq!(slot.read_u16(14).unwrap(), p::used_flags(true) | W);
        assert_eq!(q.position().next_used, 1, "advanced by three slots");
        q.add_used(&mem, b.token(), 0).unwrap();
        assert_eq!(mem.slice(RING + 16, 16).unwrap().read_u16(12).unwrap(), 5);
        assert_eq!(q.in_flight(), 0);
    }

    #[test]
    fn hostile_saved_descriptors_are_refused() {
        let (mem, q) = rig(false);
        let end = BASE + 0x1_0000;
        let chain = |e: ChainError| Err::<(), _>(DeviceQueueError::Chain(e));
        let check = |descs: &[SavedDesc], want: Result<(), DeviceQueueError>| {
            assert_eq!(rebuild(&q, &mem, descs).map(|_| ()), want, "{descs:?}");
        };
        check(&[], chain(ChainError::SavedListMismatch { index: 0 }));
        check(
            &[d(DATA, 8, 0, N)],
            chain(ChainError::SavedListMismatch { index: 0 }),
        );
        check(
            &[d(DATA, 8, 0, R), d(DATA, 8, 0, R)],
            chain(ChainError::SavedListMismatch { index: 0 }),
        );
        check(
            &[d(DATA, 8, 0, N); 9],
            chain(ChainError::TooLong { limit: 8 }),
        );
        check(
            &[d(end - 4, 8, 0, R)],
            chain(ChainError::OutOfMemory {
                addr: end - 4,
                len: 8,
            }),
        );
        check(
            &[d(u64::MAX - 2, 8, 0, R)],
            chain(ChainError::OutOfMemory {
                addr: u64::MAX - 2,
                len: 8,
            }),
        );
        check(
            &[d(DATA, 8, 0, W | N), d(DATA, 8, 0, R)],
            chain(ChainError::ReadableAfterWritable),
        );
        check(
            &[d(DATA, u32::MAX, 0, N | W), d(DATA, 2, 0, W)],
            chain(ChainError::OutOfMemory {
                addr: DATA,
                len: u32::MAX,
            }),
        );
        check(
            &[d(DATA, 64, 0, I)],
            chain(ChainError::IndirectNotNegotiated),
        );
        // A zero-length buffer anywhere is accepted, as in the ring.
        check(&[d(0, 0, 0, R)], Ok(()));

        let (mem, q) = rig(true);
        let check = |descs: &[SavedDesc], want: Result<(), DeviceQueueError>| {
            assert_eq!(rebuild(&q, &mem, descs).map(|_| ()), want, "{descs:?}");
        };
        check(&[d(DATA, 32, 0, I | N)], chain(ChainError::IndirectChained));
        check(
            &[d(DATA, 16, 0, N), d(DATA, 32, 0, I)],
            chain(ChainError::IndirectChained),
        );
        check(
            &[d(DATA, 24, 0, I)],
            chain(ChainError::IndirectBadLength { len: 24 }),
        );
        check(
            &[d(DATA, 0, 0, I)],
            chain(ChainError::IndirectBadLength { len: 0 }),
        );
        check(
            &[d(DATA, 16 * 1025, 0, I)],
            chain(ChainError::IndirectTooLarge {
                entries: 1025,
                limit: 1024,
            }),
        );
        check(
            &[d(end - 16, 32, 0, I)],
            chain(ChainError::OutOfMemory {
                addr: end - 16,
                len: 32,
            }),
        );
        // The table's entries are checked too.
        put(&mem, DATA, d(DATA + 0x100, 8, 0, W));
        put(&mem, DATA + 16, d(DATA + 0x200, 8, 0, R));
        check(
            &[d(DATA, 32, 0, I)],
            chain(ChainError::ReadableAfterWritable),
        );
        put(&mem, DATA + 16, d(end, 8, 0, W));
        check(
            &[d(DATA, 32, 0, I)],
            chain(ChainError::OutOfMemory { addr: end, len: 8 }),
        );
        // Usage errors: a position outside the ring, a split queue.
        let mut c = DescChain::new();
        assert!(matches!(
            q.chain_from_descriptors(&mem, &[d(DATA, 8, 0, R)], 8, &mut c),
            Err(DeviceQueueError::Usage(_))
        ));
        let split = DeviceQueue::new(
            RingFormat::Split,
            8,
            q.addresses(),
            QueueFeatures::default(),
        )
        .unwrap();
        assert!(matches!(
            split.chain_from_descriptors(&mem, &[d(DATA, 8, 0, R)], 0, &mut c),
            Err(DeviceQueueError::Usage(_))
        ));
    }
}
