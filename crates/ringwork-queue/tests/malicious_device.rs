//! A hostile DEVICE against our driver-side queue ([`DriverQueue`]).
//!
//! Buffers are added through the real driver API; the device side is played
//! by hand, writing bogus used-ring entries (split, VIRTIO 1.4 §2.7.8) or
//! used descriptors (packed, §2.8.6/§2.8.22) straight into ring memory. Each
//! hostile case checks the exact [`UsedError`], that the queue is then
//! broken (`pop_used`, `add` and `kick_prepare` refuse with `Broken`), that
//! [`DriverQueue::reset`] hands back every outstanding token, and that the
//! queue then works against a real [`DeviceQueue`].
//!
//! The positive cases check device behaviour the driver must accept: used
//! length 0, out-of-order completion and VIRTIO_F_IN_ORDER batches.

use ringwork_queue::test_utils::TestMemory;
use ringwork_queue::{
    AddError, DeviceQueue, DriverQueue, DriverQueueConfig, GuestMemory, QueueFeatures, Rejected,
    RingFormat, Segment, Used, UsedError,
};
use ringwork_spec::ring::packed as p;
use ringwork_spec::ring::split as s;
use ringwork_spec::ring::VIRTQ_DESC_F_WRITE;

const BASE: u64 = 0x10_0000;
const MEM_SIZE: usize = 0x20_0000;
/// Buffers live here, 4 KiB per token (the DMA allocator hands out rings
/// from the start of memory, far below).
const DATA: u64 = BASE + 0x10_0000;

type Drv<'m> = DriverQueue<&'m TestMemory, u32>;

fn mem() -> TestMemory {
    TestMemory::new(BASE, MEM_SIZE)
}

fn features(in_order: bool) -> QueueFeatures {
    QueueFeatures {
        in_order,
        ..QueueFeatures::default()
    }
}

fn driver(mem: &TestMemory, format: RingFormat, size: u16, f: QueueFeatures) -> Drv<'_> {
    DriverQueue::new(mem, DriverQueueConfig::new(format, size, f)).expect("queue")
}

/// Segment `i` of the buffer with `token`.
fn seg(token: u32, i: usize, len: u32) -> Segment {
    Segment::new(DATA + 0x1000 * u64::from(token) + 0x100 * i as u64, len)
}

/// Adds a buffer of readable `out` and writable `inp` segment lengths.
fn add(d: &mut Drv<'_>, out: &[u32], inp: &[u32], token: u32) -> u16 {
    let out: Vec<_> = out
        .iter()
        .enumerate()
        .map(|(i, &l)| seg(token, i, l))
        .collect();
    let inp: Vec<_> = (inp.iter().enumerate())
        .map(|(i, &l)| seg(token, 8 + i, l))
        .collect();
    d.add(&out, &inp, token).expect("add")
}

// ----- the hostile device's pen -----

/// Writes split used ring entry `slot`.
fn split_used_entry(mem: &TestMemory, d: &Drv<'_>, slot: u16, id: u32, len: u32) {
    let used = mem.slice(d.addresses().device, s::used_ring_size(d.size()));
    let used = used.expect("used ring in memory");
    let off = s::used_ring_entry_offset(slot);
    used.write_u32(off, id).unwrap();
    used.write_u32(off + 4, len).unwrap();
}

/// Writes the split used ring's `idx`.
fn split_used_idx(mem: &TestMemory, d: &Drv<'_>, idx: u16) {
    let used = mem.slice(d.addresses().device, 4).unwrap();
    used.write_u16(s::USED_IDX_OFFSET, idx).unwrap();
}

/// Writes a packed used descriptor at ring offset `pos` for the first lap
/// (used wrap counter 1), with VIRTQ_DESC_F_WRITE when `write`.
fn packed_used(mem: &TestMemory, d: &Drv<'_>, pos: u16, id: u16, len: u32, write: bool) {
    let desc = mem.slice(d.addresses().desc + 16 * u64::from(pos), 16);
    let desc = desc.expect("descriptor ring in memory");
    desc.write_u32(8, len).unwrap();
    desc.write_u16(p::DESC_ID_OFFSET, id).unwrap();
    let w = if write { VIRTQ_DESC_F_WRITE } else { 0 };
    desc.write_u16(p::DESC_FLAGS_OFFSET, p::used_flags(true) | w)
        .unwrap();
}

// ----- checks -----

/// The next `pop_used` fails with exactly `expected`; the queue is then
/// broken for every operation.
fn expect_broken(d: &mut Drv<'_>, expected: UsedError) {
    assert_eq!(d.pop_used(), Err(expected));
    assert!(d.is_broken());
    assert_eq!(d.pop_used(), Err(UsedError::Broken));
    assert_eq!(
        d.add(&[seg(60, 0, 4)], &[], 60),
        Err(Rejected {
            error: AddError::Broken,
            token: 60
        })
    );
    assert_eq!(d.kick_prepare(), Err(UsedError::Broken));
    assert!(d.is_broken());
}

/// Resets the queue: every outstanding token comes back exactly once; then
/// a request completes through a real device queue.
fn reset_and_recover(mem: &TestMemory, d: &mut Drv<'_>, mut outstanding: Vec<u32>) {
    let mut tokens = d.reset();
    tokens.sort_unstable();
    outstanding.sort_unstable();
    assert_eq!(tokens, outstanding, "reset returns every outstanding token");
    assert!(!d.is_broken());
    assert_eq!((d.outstanding(), d.num_free()), (0, d.size()));
    assert_eq!(d.pop_used(), Ok(None));
    let cfg = *d.config();
    let mut dev = DeviceQueue::new(cfg.format, cfg.size, d.addresses(), cfg.features).unwrap();
    mem.slice(seg(61, 0, 0).addr, 4)
        .unwrap()
        .write_bytes(0, b"ping")
        .unwrap();
    let id = add(d, &[4], &[8], 61);
    assert!(d.kick_prepare().unwrap());
    let chain = dev.pop(mem).unwrap().expect("the device sees the request");
    assert_eq!(chain.id(), id);
    let mut req = [0u8; 4];
    assert_eq!(chain.reader(mem).read(&mut req), Ok(4));
    assert_eq!(&req, b"ping");
    let mut w = chain.writer(mem);
    assert_eq!(w.write(b"pong-ack"), Ok(8));
    dev.add_used(mem, chain.token(), 8).unwrap();
    assert_eq!(
        d.pop_used(),
        Ok(Some(Used {
            token: 61,
            len: 8,
            id
        }))
    );
    assert_eq!(d.pop_used(), Ok(None));
    assert!(!d.is_broken());
}

// ===== split ring =====

/// VIRTIO 1.4 §2.7.8 (`id` "indicates the head entry of the descriptor
/// chain", an index below the queue size): ids at or above the queue size,
/// including one that would alias id 0 if truncated to 16 bits, are refused.
#[test]
fn split_used_id_beyond_queue_size() {
    for bad in [8u32, 0x1_0000, u32::MAX] {
        let m = mem();
        let mut d = driver(&m, RingFormat::Split, 8, features(false));
        assert_eq!(add(&mut d, &[], &[16], 10), 0);
        split_used_entry(&m, &d, 0, bad, 0);
        split_used_idx(&m, &d, 1);
        expect_broken(&mut d, UsedError::BadId { id: bad });
        reset_and_recover(&m, &mut d, vec![10]);
    }
}

/// VIRTIO 1.4 §2.7.8 (the id "matches an entry placed in the available ring
/// by the guest earlier"): an id that was never made available is refused.
#[test]
fn split_used_id_never_added() {
    let m = mem();
    let mut d = driver(&m, RingFormat::Split, 8, features(false));
    add(&mut d, &[], &[16], 10);
    split_used_entry(&m, &d, 0, 3, 0);
    split_used_idx(&m, &d, 1);
    expect_broken(&mut d, UsedError::BadId { id: 3 });
    reset_and_recover(&m, &mut d, vec![10]);
}

/// VIRTIO 1.4 §2.7.8: completing a buffer twice (its id was already
/// returned) is refused.
#[test]
fn split_double_completion() {
    let m = mem();
    let mut d = driver(&m, RingFormat::Split, 8, features(false));
    assert_eq!(add(&mut d, &[], &[16], 10), 0);
    assert_eq!(add(&mut d, &[], &[16], 11), 1);
    split_used_entry(&m, &d, 0, 0, 4);
    split_used_idx(&m, &d, 1);
    let first = Used {
        token: 10,
        len: 4,
        id: 0,
    };
    assert_eq!(d.pop_used(), Ok(Some(first)));
    split_used_entry(&m, &d, 1, 0, 4);
    split_used_idx(&m, &d, 2);
    expect_broken(&mut d, UsedError::BadId { id: 0 });
    reset_and_recover(&m, &mut d, vec![11]);
}

/// VIRTIO 1.4 §2.7.8 (`id` is the *head* of the chain): naming the second
/// or third descriptor of an outstanding three-descriptor chain is refused.
#[test]
fn split_used_id_names_non_head_descriptor() {
    for non_head in [1u32, 2] {
        let m = mem();
        let mut d = driver(&m, RingFormat::Split, 8, features(false));
        assert_eq!(add(&mut d, &[8], &[16, 16], 10), 0); // descriptors 0, 1, 2
        assert_eq!(add(&mut d, &[8], &[], 11), 3);
        split_used_entry(&m, &d, 0, non_head, 0);
        split_used_idx(&m, &d, 1);
        expect_broken(&mut d, UsedError::BadId { id: non_head });
        reset_and_recover(&m, &mut d, vec![10, 11]);
    }
}

/// VIRTIO 1.4 §2.7.8 (`len` is "the total of bytes written into the
/// buffer") and §2.7.8.3: a length up to the writable capacity is accepted,
/// one byte more is refused; so is any length for a read-only buffer.
#[test]
fn split_used_len_beyond_writable_capacity() {
    let m = mem();
    let mut d = driver(&m, RingFormat::Split, 8, features(false));
    let a = add(&mut d, &[16], &[32, 32], 10);
    let b = add(&mut d, &[16], &[32, 32], 11);
    add(&mut d, &[16], &[], 12);
    split_used_entry(&m, &d, 0, u32::from(a), 64);
    split_used_idx(&m, &d, 1);
    let full = Used {
        token: 10,
        len: 64,
        id: a,
    };
    assert_eq!(d.pop_used(), Ok(Some(full)));
    split_used_entry(&m, &d, 1, u32::from(b), 65);
    split_used_idx(&m, &d, 2);
    let err = UsedError::BadLength {
        id: b,
        len: 65,
        capacity: 64,
    };
    expect_broken(&mut d, err);
    reset_and_recover(&m, &mut d, vec![11, 12]);

    let mut d = driver(&m, RingFormat::Split, 8, features(false));
    let c2 = add(&mut d, &[16], &[], 12);
    split_used_entry(&m, &d, 0, u32::from(c2), 1);
    split_used_idx(&m, &d, 1);
    let err = UsedError::BadLength {
        id: c2,
        len: 1,
        capacity: 0,
    };
    expect_broken(&mut d, err);
    reset_and_recover(&m, &mut d, vec![12]);
}

/// VIRTIO 1.4 §2.7.8 (used `idx` counts returned buffers) and §2.7 (at most
/// Queue Size buffers): an idx moving past the number of outstanding
/// buffers is refused, also with nothing outstanding.
#[test]
fn split_used_idx_jump_beyond_outstanding() {
    let m = mem();
    let mut d = driver(&m, RingFormat::Split, 8, features(false));
    add(&mut d, &[], &[16], 10);
    add(&mut d, &[], &[16], 11);
    split_used_entry(&m, &d, 0, 0, 0);
    split_used_idx(&m, &d, 3);
    let err = UsedError::BadUsedIndex {
        last: 0,
        idx: 3,
        outstanding: 2,
    };
    expect_broken(&mut d, err);
    reset_and_recover(&m, &mut d, vec![10, 11]);

    let mut d = driver(&m, RingFormat::Split, 8, features(false));
    split_used_idx(&m, &d, 1);
    let err = UsedError::BadUsedIndex {
        last: 0,
        idx: 1,
        outstanding: 0,
    };
    expect_broken(&mut d, err);
    reset_and_recover(&m, &mut d, vec![]);
}

/// VIRTIO 1.4 §2.7.8 (used `idx` "starts at 0, and increases"): an idx
/// moving backwards is refused.
#[test]
fn split_used_idx_moving_backwards() {
    let m = mem();
    let mut d = driver(&m, RingFormat::Split, 8, features(false));
    add(&mut d, &[], &[16], 10);
    add(&mut d, &[], &[16], 11);
    split_used_entry(&m, &d, 0, 0, 0);
    split_used_idx(&m, &d, 1);
    assert_eq!(d.pop_used().unwrap().map(|u| u.token), Some(10));
    split_used_idx(&m, &d, 0);
    let err = UsedError::BadUsedIndex {
        last: 1,
        idx: 0,
        outstanding: 1,
    };
    expect_broken(&mut d, err);
    reset_and_recover(&m, &mut d, vec![11]);
}

/// VIRTIO 1.4 §2.7.9 (an in-order batch entry carries "the head entry of the
/// descriptor chain describing the last buffer in the batch"): a batch
/// naming an id that is not outstanding is refused.
#[test]
fn split_in_order_batch_id_not_outstanding() {
    let m = mem();
    let mut d = driver(&m, RingFormat::Split, 8, features(true));
    for t in 0..3 {
        assert_eq!(add(&mut d, &[], &[16], t), t as u16);
    }
    split_used_entry(&m, &d, 0, 5, 16);
    split_used_idx(&m, &d, 3);
    expect_broken(&mut d, UsedError::BadId { id: 5 });
    reset_and_recover(&m, &mut d, vec![0, 1, 2]);
}

/// VIRTIO 1.4 §2.7.9 ("it increments the used idx by the size of the
/// batch"): a batch entry covering three buffers with idx moved by one is
/// refused.
#[test]
fn split_in_order_batch_larger_than_used_idx_advance() {
    let m = mem();
    let mut d = driver(&m, RingFormat::Split, 8, features(true));
    for t in 0..3 {
        add(&mut d, &[], &[16], t);
    }
    split_used_entry(&m, &d, 0, 2, 16);
    split_used_idx(&m, &d, 1);
    let err = UsedError::BadUsedIndex {
        last: 0,
        idx: 1,
        outstanding: 3,
    };
    expect_broken(&mut d, err);
    reset_and_recover(&m, &mut d, vec![0, 1, 2]);
}

/// VIRTIO 1.4 §2.7.9 (skipped buffers count as fully used; the batch entry's
/// `len` belongs to the last buffer) with §2.7.8.3: a batch whose last
/// length exceeds that buffer's capacity hands out the skipped buffers, then
/// fails; the failing buffer's token is not lost.
#[test]
fn split_in_order_batch_last_len_beyond_capacity() {
    let m = mem();
    let mut d = driver(&m, RingFormat::Split, 8, features(true));
    for t in 0..3 {
        add(&mut d, &[], &[16], t);
    }
    split_used_entry(&m, &d, 0, 2, 17);
    split_used_idx(&m, &d, 3);
    for t in 0..2 {
        let u = Used {
            token: t,
            len: 16,
            id: t as u16,
        };
        assert_eq!(d.pop_used(), Ok(Some(u)));
    }
    let err = UsedError::BadLength {
        id: 2,
        len: 17,
        capacity: 16,
    };
    expect_broken(&mut d, err);
    reset_and_recover(&m, &mut d, vec![2]);
}

// ===== packed ring =====

/// VIRTIO 1.4 §2.8.6 / §2.8.22 (the used descriptor carries the Buffer ID
/// the driver gave): ids at or above the queue size are refused.
#[test]
fn packed_used_id_beyond_queue_size() {
    for bad in [8u16, u16::MAX] {
        let m = mem();
        let mut d = driver(&m, RingFormat::Packed, 8, features(false));
        assert_eq!(add(&mut d, &[], &[16], 10), 0);
        packed_used(&m, &d, 0, bad, 0, false);
        expect_broken(&mut d, UsedError::BadId { id: u32::from(bad) });
        reset_and_recover(&m, &mut d, vec![10]);
    }
}

/// VIRTIO 1.4 §2.8.6 (Buffer ID): an id that was never made available is
/// refused.
#[test]
fn packed_used_id_never_added() {
    let m = mem();
    let mut d = driver(&m, RingFormat::Packed, 8, features(false));
    add(&mut d, &[], &[16], 10);
    packed_used(&m, &d, 0, 3, 0, false);
    expect_broken(&mut d, UsedError::BadId { id: 3 });
    reset_and_recover(&m, &mut d, vec![10]);
}

/// VIRTIO 1.4 §2.8.22 (the driver checks a descriptor "has been made
/// available" before taking it as used): a used descriptor with nothing
/// outstanding is refused.
#[test]
fn packed_used_with_nothing_outstanding() {
    let m = mem();
    let mut d = driver(&m, RingFormat::Packed, 8, features(false));
    packed_used(&m, &d, 0, 0, 0, false);
    expect_broken(&mut d, UsedError::BadId { id: 0 });
    reset_and_recover(&m, &mut d, vec![]);
}

/// VIRTIO 1.4 §2.8.6: completing a buffer twice is refused.
#[test]
fn packed_double_completion() {
    let m = mem();
    let mut d = driver(&m, RingFormat::Packed, 8, features(false));
    assert_eq!(add(&mut d, &[], &[16], 10), 0);
    assert_eq!(add(&mut d, &[], &[16], 11), 1);
    packed_used(&m, &d, 0, 0, 4, true);
    let first = Used {
        token: 10,
        len: 4,
        id: 0,
    };
    assert_eq!(d.pop_used(), Ok(Some(first)));
    packed_used(&m, &d, 1, 0, 4, true);
    expect_broken(&mut d, UsedError::BadId { id: 0 });
    reset_and_recover(&m, &mut d, vec![11]);
}

/// VIRTIO 1.4 §2.8.4 (Element Length of a used descriptor is the length
/// written): up to the writable capacity is accepted, one byte more is
/// refused.
#[test]
fn packed_used_len_beyond_writable_capacity() {
    let m = mem();
    let mut d = driver(&m, RingFormat::Packed, 8, features(false));
    let a = add(&mut d, &[16], &[32, 32], 10); // offsets 0..3
    let b = add(&mut d, &[16], &[32, 32], 11); // offsets 3..6
    packed_used(&m, &d, 0, a, 64, true);
    let full = Used {
        token: 10,
        len: 64,
        id: a,
    };
    assert_eq!(d.pop_used(), Ok(Some(full)));
    packed_used(&m, &d, 3, b, 65, true);
    let err = UsedError::BadLength {
        id: b,
        len: 65,
        capacity: 64,
    };
    expect_broken(&mut d, err);
    reset_and_recover(&m, &mut d, vec![11]);
}

/// VIRTIO 1.4 §2.8.4 ("Element Length is reserved for used descriptors
/// without the VIRTQ_DESC_F_WRITE flag, and is ignored by drivers"): a
/// garbage length without WRITE reads as 0.
#[test]
fn packed_used_len_without_write_flag_ignored() {
    let m = mem();
    let mut d = driver(&m, RingFormat::Packed, 8, features(false));
    let id = add(&mut d, &[16], &[32], 10);
    packed_used(&m, &d, 0, id, u32::MAX, false);
    let u = Used {
        token: 10,
        len: 0,
        id,
    };
    assert_eq!(d.pop_used(), Ok(Some(u)));
    assert!(!d.is_broken());
}

/// VIRTIO 1.4 §2.8.8 (an in-order batch carries "the Buffer ID
/// corresponding to the last descriptor in the batch"): a batch naming an
/// id that is not outstanding is refused.
#[test]
fn packed_in_order_batch_id_not_outstanding() {
    let m = mem();
    let mut d = driver(&m, RingFormat::Packed, 8, features(true));
    for t in 0..3 {
        add(&mut d, &[], &[16], t);
    }
    packed_used(&m, &d, 0, 5, 16, true);
    expect_broken(&mut d, UsedError::BadId { id: 5 });
    reset_and_recover(&m, &mut d, vec![0, 1, 2]);
}

/// VIRTIO 1.4 §2.8.8 (skipped buffers count as fully used) with §2.8.4: a
/// batch whose last length exceeds that buffer's capacity hands out the
/// skipped buffers, then fails; the failing buffer's token is not lost.
#[test]
fn packed_in_order_batch_last_len_beyond_capacity() {
    let m = mem();
    let mut d = driver(&m, RingFormat::Packed, 8, features(true));
    let ids: Vec<u16> = (0..3).map(|t| add(&mut d, &[8], &[16], t)).collect();
    packed_used(&m, &d, 0, ids[2], 17, true);
    for t in 0..2 {
        let u = Used {
            token: t,
            len: 16,
            id: ids[t as usize],
        };
        assert_eq!(d.pop_used(), Ok(Some(u)));
    }
    let err = UsedError::BadLength {
        id: ids[2],
        len: 17,
        capacity: 16,
    };
    expect_broken(&mut d, err);
    reset_and_recover(&m, &mut d, vec![2]);
}

// ===== device behaviour the driver must accept (both formats) =====

const FORMATS: [RingFormat; 2] = [RingFormat::Split, RingFormat::Packed];

/// VIRTIO 1.4 §2.7.8.2 ("len is permitted to be an underestimate") and
/// §2.8.4: a used length of 0 is accepted, with or without writable space.
#[test]
fn used_len_zero_accepted() {
    for format in FORMATS {
        let m = mem();
        let mut d = driver(&m, format, 8, features(false));
        let mut dev = DeviceQueue::new(format, 8, d.addresses(), features(false)).unwrap();
        let a = add(&mut d, &[8], &[32], 10);
        let b = add(&mut d, &[8], &[], 11);
        for _ in 0..2 {
            let c = dev.pop(&m).unwrap().unwrap();
            dev.add_used(&m, c.token(), 0).unwrap();
        }
        let ua = Used {
            token: 10,
            len: 0,
            id: a,
        };
        let ub = Used {
            token: 11,
            len: 0,
            id: b,
        };
        assert_eq!(d.pop_used(), Ok(Some(ua)), "{format}");
        assert_eq!(d.pop_used(), Ok(Some(ub)), "{format}");
        assert_eq!(d.pop_used(), Ok(None));
        assert_eq!(d.outstanding(), 0);
    }
}

/// VIRTIO 1.4 §2.6 ("Device is not generally required to use buffers in the
/// same order in which they have been made available"): completions out of
/// order give each token back with its own id and length, and the freed
/// descriptors are reusable.
#[test]
fn out_of_order_completions_return_matching_tokens() {
    for format in FORMATS {
        let m = mem();
        let mut d = driver(&m, format, 8, features(false));
        let mut dev = DeviceQueue::new(format, 8, d.addresses(), features(false)).unwrap();
        let ids: Vec<u16> = (0..3).map(|t| add(&mut d, &[8], &[32], t)).collect();
        let chains: Vec<_> = (0..3).map(|_| dev.pop(&m).unwrap().unwrap()).collect();
        for (c, id) in chains.iter().zip(&ids) {
            assert_eq!(c.id(), *id);
        }
        for (t, len) in [(2usize, 30u32), (0, 10), (1, 20)] {
            dev.add_used(&m, chains[t].token(), len).unwrap();
        }
        for (t, len) in [(2u32, 30u32), (0, 10), (1, 20)] {
            let want = Used {
                token: t,
                len,
                id: ids[t as usize],
            };
            assert_eq!(d.pop_used(), Ok(Some(want)), "{format}");
        }
        assert_eq!(d.pop_used(), Ok(None));
        assert_eq!((d.outstanding(), d.num_free()), (0, 8));
        // Two more laps with the recycled descriptors.
        for round in 0..8u32 {
            let id = add(&mut d, &[8], &[32], 3 + round);
            let c = dev.pop(&m).unwrap().unwrap();
            dev.add_used(&m, c.token(), round).unwrap();
            let want = Used {
                token: 3 + round,
                len: round,
                id,
            };
            assert_eq!(d.pop_used(), Ok(Some(want)), "{format}");
        }
        assert!(!d.is_broken());
    }
}

/// VIRTIO 1.4 §2.7.9 and §2.8.8 (VIRTIO_F_IN_ORDER: one used entry for a
/// batch; "the skipped buffers ... are assumed to have been used ...
/// completely"): the skipped buffers come back with their full writable
/// size, the last with the reported length, and the ring stays in step
/// (multi-descriptor buffers included, so packed skips several slots).
#[test]
fn in_order_batched_completions_accepted() {
    for format in FORMATS {
        let m = mem();
        let f = features(true);
        let mut d = driver(&m, format, 8, f);
        let mut dev = DeviceQueue::new(format, 8, d.addresses(), f).unwrap();
        for round in 0..4u32 {
            let t = 10 * round;
            let i0 = add(&mut d, &[], &[16], t);
            let i1 = add(&mut d, &[8], &[32, 8], t + 1);
            let i2 = add(&mut d, &[4], &[64], t + 2);
            // The first two used completely, so the device may skip
            // their entries; the last partly.
            let batch: Vec<_> = [16, 40, 7]
                .into_iter()
                .map(|len| (dev.pop(&m).unwrap().unwrap().token(), len))
                .collect();
            dev.add_used_batch(&m, &batch).unwrap();
            let want = [(t, 16, i0), (t + 1, 40, i1), (t + 2, 7, i2)];
            for (token, len, id) in want {
                let u = Used { token, len, id };
                assert_eq!(d.pop_used(), Ok(Some(u)), "{format} round {round}");
            }
            assert_eq!(d.pop_used(), Ok(None));
            assert_eq!((d.outstanding(), d.num_free()), (0, 8));
        }
        // A single in-order completion afterwards still lines up.
        let id = add(&mut d, &[], &[16], 99);
        let c = dev.pop(&m).unwrap().unwrap();
        dev.add_used(&m, c.token(), 3).unwrap();
        let u = Used {
            token: 99,
            len: 3,
            id,
        };
        assert_eq!(d.pop_used(), Ok(Some(u)));
        assert!(!d.is_broken());
    }
}

/// VIRTIO 1.4 §2.7.9 and §2.8.8, device side: a buffer may go without a
/// used entry only if it was used completely, so an in-order batch whose
/// buffers were partly written gets an entry for each of those (a run of
/// completely used buffers still shares one). The driver sees every exact
/// length.
#[test]
fn in_order_batch_keeps_partial_lengths() {
    for format in FORMATS {
        let m = mem();
        let f = features(true);
        let mut d = driver(&m, format, 8, f);
        let mut dev = DeviceQueue::new(format, 8, d.addresses(), f).unwrap();
        for round in 0..4u32 {
            let t = 10 * round;
            let ids = [
                add(&mut d, &[], &[16], t),
                add(&mut d, &[], &[32], t + 1),
                add(&mut d, &[8], &[32, 8], t + 2),
                add(&mut d, &[], &[64], t + 3),
                add(&mut d, &[4], &[], t + 4),
            ];
            // Partly, completely (shares the next entry), partly, partly,
            // and a readable-only buffer (0 of 0 bytes: complete).
            let lens = [3, 32, 20, 64 - 1, 0];
            let batch: Vec<_> = lens
                .iter()
                .map(|&len| (dev.pop(&m).unwrap().unwrap().token(), len))
                .collect();
            dev.add_used_batch(&m, &batch).unwrap();
            for (k, (&len, id)) in lens.iter().zip(ids).enumerate() {
                let u = Used {
                    token: t + k as u32,
                    len,
                    id,
                };
                assert_eq!(
                    d.pop_used(),
                    Ok(Some(u)),
                    "{format} round {round} buffer {k}"
                );
            }
            assert_eq!(d.pop_used(), Ok(None));
            assert_eq!((d.outstanding(), d.num_free()), (0, 8));
        }
        assert!(!d.is_broken());
    }
}

/// `pop_used_burst` hands buffers over in `pop_used`'s order, stops at
/// `max` and when nothing is left, and on a bad entry keeps what it
/// handed over, reports the error and leaves the queue broken.
#[test]
fn burst_pop_matches_pop_used_and_stops_at_bad_entries() {
    for format in FORMATS {
        for in_order in [false, true] {
            let m = mem();
            let f = features(in_order);
            let mut d = driver(&m, format, 8, f);
            let mut dev = DeviceQueue::new(format, 8, d.addresses(), f).unwrap();
            let ids: Vec<u16> = (0..5).map(|t| add(&mut d, &[], &[64], t)).collect();
            let batch: Vec<_> = (0..5)
                .map(|k| (dev.pop(&m).unwrap().unwrap().token(), 10 + k))
                .collect();
            dev.add_used_batch(&m, &batch).unwrap();
            let mut got = Vec::new();
            assert_eq!(d.pop_used_burst(3, |u| got.push(u)), Ok(3));
            assert_eq!(d.pop_used_burst(8, |u| got.push(u)), Ok(2));
            assert_eq!(d.pop_used_burst(8, |u| got.push(u)), Ok(0));
            let want: Vec<_> = (0..5u32)
                .map(|t| Used {
                    token: t,
                    len: 10 + t,
                    id: ids[t as usize],
                })
                .collect();
            assert_eq!(got, want, "{format} in_order {in_order}");

            // One good completion, then a used entry naming an id not
            // outstanding: the good one is handed over, then the error.
            let id = add(&mut d, &[], &[64], 7);
            let other = add(&mut d, &[], &[64], 8);
            let bad = (0..8u16).find(|&x| x != id && x != other).unwrap();
            let c = dev.pop(&m).unwrap().unwrap();
            dev.add_used(&m, c.token(), 1).unwrap();
            match format {
                RingFormat::Split => {
                    split_used_entry(&m, &d, 6, u32::from(bad), 0);
                    split_used_idx(&m, &d, 7);
                }
                RingFormat::Packed => packed_used(&m, &d, 6, bad, 0, false),
            }
            let mut got = Vec::new();
            assert_eq!(
                d.pop_used_burst(8, |u| got.push(u)),
                Err(UsedError::BadId { id: u32::from(bad) })
            );
            assert_eq!(
                got,
                [Used {
                    token: 7,
                    len: 1,
                    id
                }]
            );
            assert!(d.is_broken());
            assert_eq!(d.pop_used_burst(8, |_| ()), Err(UsedError::Broken));
        }
    }
}

/// `prefetch_adds` is only a hint: at every ring position, for any count
/// (none, more than the ring), it changes nothing the device or the
/// driver can see.
#[test]
fn prefetch_adds_changes_nothing() {
    for format in FORMATS {
        let m = mem();
        let f = features(true);
        let mut d = driver(&m, format, 8, f);
        let mut dev = DeviceQueue::new(format, 8, d.addresses(), f).unwrap();
        for t in 0..20u32 {
            for n in [0, 1, 3, 8, 9, u16::MAX] {
                d.prefetch_adds(n);
            }
            let id = add(&mut d, &[], &[64], t);
            assert_eq!((d.outstanding(), d.num_free()), (1, 7));
            let c = dev.pop(&m).unwrap().unwrap();
            dev.add_used(&m, c.token(), 5).unwrap();
            let u = Used {
                token: t,
                len: 5,
                id,
            };
            assert_eq!(d.pop_used(), Ok(Some(u)), "{format} {t}");
        }
    }
}
