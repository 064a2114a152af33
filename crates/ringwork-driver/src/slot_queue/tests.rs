//! Unit tests of the slot queue against a device played by hand: used ring
//! entries (split ring, VIRTIO 1.4 §2.7.8) and responses are written
//! straight into memory, so hostile entries (an unknown id, an id completed
//! twice, lengths out of range) can be produced.

use alloc::vec;
use alloc::vec::Vec;

use ringwork_queue::test_utils::TestMemory;
use ringwork_queue::{
    DriverQueue, DriverQueueConfig, GuestMemory, QueueFeatures, RingFormat, Segment, UsedError,
};
use ringwork_spec::ring::split as s;

use super::*;

const SIZE: u16 = 4;
const STRIDE: usize = 32;
/// The queue number errors carry.
const NUMBER: u16 = 7;
/// Bytes every response holds.
const MIN_USED: u32 = 2;
/// Offset of the writable response in a slot.
const RESP_OFF: usize = 16;
/// Writable response bytes per request.
const RESP: u32 = 8;
/// A first response byte the test codec refuses.
const REFUSED: u8 = 0xee;

/// A completion: the tag kept with the request, the first response byte
/// and the used length.
type Done = (u32, u8, u32);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TestError {
    Queue(u16, UsedError),
    Short { queue: u16, len: u32, tag: u32 },
    Refused { queue: u16, tag: u32 },
}

/// Reads the first response byte out of the slot.
struct Codec;

impl Decode<u32, Done> for Codec {
    type Error = TestError;

    fn decode(&mut self, queue: u16, done: Completed<'_, u32>) -> Result<Done, TestError> {
        let byte = done
            .slot
            .and_then(|m| m.read_u8(RESP_OFF).ok())
            .unwrap_or(0);
        if byte == REFUSED {
            return Err(TestError::Refused {
                queue,
                tag: done.extra,
            });
        }
        Ok((done.extra, byte, done.len))
    }

    fn short(&mut self, queue: u16, len: u32, tag: u32) -> TestError {
        TestError::Short { queue, len, tag }
    }

    fn queue_error(&mut self, queue: u16, source: UsedError) -> TestError {
        TestError::Queue(queue, source)
    }
}

type Queue<'m> = SlotQueue<&'m TestMemory, u32, u32, Done>;

fn mem() -> TestMemory {
    TestMemory::new(0x10_0000, 0x10_0000)
}

fn queue(mem: &TestMemory, legacy: bool) -> Queue<'_> {
    let cfg = DriverQueueConfig::new(RingFormat::Split, SIZE, QueueFeatures::default());
    let vq = DriverQueue::new(mem, cfg).expect("queue");
    SlotQueue::new(NUMBER, vq, mem, STRIDE, MIN_USED, legacy).expect("slots")
}

/// A request made available: its ring id and its slot's device address.
struct Sent {
    id: u16,
    slot: u64,
}

/// Makes a request with `tag` available: the tag goes into the slot, the
/// chain is one writable segment at `RESP_OFF`.
fn send(
    q: &mut Queue<'_>,
    owner: Owner<u32>,
    tag: u32,
) -> Result<Sent, (EnqueueError, Owner<u32>)> {
    let (mut out, mut inp) = (Vec::new(), Vec::new());
    let mut slot = 0;
    let id = q.enqueue(owner, tag, &mut out, &mut inp, |m, addr, out, inp| {
        slot = addr;
        out.clear();
        inp.clear();
        inp.push(Segment::new(addr + RESP_OFF as u64, RESP));
        m.write_bytes(0, &tag.to_le_bytes()).is_ok()
    })?;
    Ok(Sent { id, slot })
}

fn user(q: &mut Queue<'_>, token: u32) -> Sent {
    match send(q, Owner::User(token), token + 100) {
        Ok(s) => s,
        Err((e, _)) => panic!("request {token} refused: {e:?}"),
    }
}

/// The device writes `byte` as the first response byte of `sent`.
fn respond(mem: &TestMemory, sent: &Sent, byte: u8) {
    let m = mem.slice(sent.slot, STRIDE).expect("slot in memory");
    m.write_u8(RESP_OFF, byte).unwrap();
}

/// The device puts (`id`, `len`) at used ring position `pos` and
/// publishes it.
fn used(mem: &TestMemory, q: &mut Queue<'_>, pos: u16, id: u32, len: u32) {
    let ring = mem.slice(q.vq().addresses().device, s::used_ring_size(SIZE));
    let ring = ring.expect("used ring in memory");
    let off = s::used_ring_entry_offset(pos % SIZE);
    ring.write_u32(off, id).unwrap();
    ring.write_u32(off + 4, len).unwrap();
    ring.write_u16(s::USED_IDX_OFFSET, pos.wrapping_add(1))
        .unwrap();
}

fn sorted(mut v: Vec<u32>) -> Vec<u32> {
    v.sort_unstable();
    v
}

/// The queue refuses everything with `Broken` until it is drained.
fn expect_broken(q: &mut Queue<'_>) {
    assert!(q.is_broken());
    assert_eq!(
        q.poll(&mut Codec),
        Err(TestError::Queue(NUMBER, UsedError::Broken))
    );
    assert_eq!(
        q.reap(&mut Codec),
        Err(TestError::Queue(NUMBER, UsedError::Broken))
    );
    match send(q, Owner::User(99), 0) {
        Err((EnqueueError::Broken, Owner::User(99))) => {}
        _ => panic!("a broken queue must refuse requests and hand the token back"),
    }
}

/// After `drain_tokens` the queue works again: a request completes.
fn expect_recovered(mem: &TestMemory, q: &mut Queue<'_>) {
    assert!(!q.is_broken());
    assert_eq!(q.in_flight(), 0);
    let a = user(q, 50);
    respond(mem, &a, 0x55);
    used(mem, q, 0, a.id.into(), 1 + MIN_USED);
    assert_eq!(
        q.poll(&mut Codec),
        Ok(Some((50, (150, 0x55, 1 + MIN_USED))))
    );
}

#[test]
fn completions_come_back_to_their_slots_in_device_order() {
    let m = mem();
    let mut q = queue(&m, false);
    let sent: Vec<Sent> = (10..13).map(|t| user(&mut q, t)).collect();
    assert_eq!(q.in_flight(), 3);
    for (i, s) in sent.iter().enumerate() {
        // Each request has its own slot, holding its tag.
        let slot = m.slice(s.slot, STRIDE).unwrap();
        let mut tag = [0u8; 4];
        slot.read_bytes(0, &mut tag).unwrap();
        assert_eq!(u32::from_le_bytes(tag), 110 + i as u32);
        respond(&m, s, 0xa0 + i as u8);
    }
    used(&m, &mut q, 0, sent[2].id.into(), 3);
    used(&m, &mut q, 1, sent[0].id.into(), RESP);
    assert_eq!(q.poll(&mut Codec), Ok(Some((12, (112, 0xa2, 3)))));
    assert_eq!(q.poll(&mut Codec), Ok(Some((10, (110, 0xa0, RESP)))));
    assert_eq!(q.poll(&mut Codec), Ok(None));
    assert_eq!(q.in_flight(), 1);
    // The freed slots are reused; nothing is lost.
    let again = user(&mut q, 13);
    assert!(sent.iter().any(|s| s.slot == again.slot));
    assert_eq!(sorted(q.drain_tokens()), vec![11, 13]);
}

#[test]
fn the_driver_slot_is_extra_and_reap_keeps_callers_completions() {
    let m = mem();
    let mut q = queue(&m, false);
    let users: Vec<Sent> = (1..4).map(|t| user(&mut q, t)).collect();
    let own = match send(&mut q, Owner::Internal, 7) {
        Ok(s) => s,
        Err((e, _)) => panic!("driver request refused: {e:?}"),
    };
    // The driver's slot is the one after the callers' slots.
    let base = users.iter().map(|s| s.slot).min().unwrap();
    assert_eq!(own.slot, base + u64::from(SIZE) * STRIDE as u64);
    // All descriptors are in use: a fourth caller request does not fit;
    // its slot is released and its token handed back.
    match send(&mut q, Owner::User(4), 104) {
        Err((EnqueueError::QueueFull, Owner::User(4))) => {}
        _ => panic!("expected QueueFull with the token back"),
    }
    assert_eq!(q.in_flight(), 3);
    respond(&m, &users[1], 0x22);
    respond(&m, &own, 0x77);
    used(&m, &mut q, 0, users[1].id.into(), MIN_USED);
    used(&m, &mut q, 1, own.id.into(), RESP);
    // Waiting for its own request, the driver keeps the caller's
    // completion for `poll`.
    assert_eq!(q.reap(&mut Codec), Ok(Some(None)));
    assert_eq!(q.reap(&mut Codec), Ok(Some(Some((7, 0x77, RESP)))));
    assert_eq!(q.reap(&mut Codec), Ok(None));
    assert_eq!(q.in_flight(), 3, "a kept completion still counts");
    assert_eq!(q.poll(&mut Codec), Ok(Some((2, (102, 0x22, MIN_USED)))));
    assert_eq!(q.in_flight(), 2);
    assert_eq!(sorted(q.drain_tokens()), vec![1, 3]);
}

#[test]
fn kept_completions_count_against_free_slots() {
    let m = mem();
    let mut q = queue(&m, false);
    let users: Vec<Sent> = (1..5).map(|t| user(&mut q, t)).collect();
    for (pos, s) in users.iter().enumerate() {
        used(&m, &mut q, pos as u16, s.id.into(), MIN_USED);
        assert_eq!(q.reap(&mut Codec), Ok(Some(None)));
    }
    // Every slot is free, but four completions wait for `poll`.
    assert_eq!(q.in_flight(), SIZE);
    match send(&mut q, Owner::User(5), 105) {
        Err((EnqueueError::QueueFull, Owner::User(5))) => {}
        _ => panic!("expected QueueFull while completions wait"),
    }
    assert_eq!(q.poll(&mut Codec).unwrap().map(|c| c.0), Some(1));
    user(&mut q, 5);
}

#[test]
fn an_unknown_used_id_breaks_the_queue_and_every_token_comes_back() {
    let m = mem();
    let mut q = queue(&m, false);
    let a = user(&mut q, 10);
    let b = user(&mut q, 11);
    let unknown = (0..u32::from(SIZE))
        .find(|&i| i != a.id.into() && i != b.id.into())
        .unwrap();
    used(&m, &mut q, 0, unknown, MIN_USED);
    assert_eq!(
        q.poll(&mut Codec),
        Err(TestError::Queue(NUMBER, UsedError::BadId { id: unknown }))
    );
    expect_broken(&mut q);
    assert_eq!(sorted(q.drain_tokens()), vec![10, 11]);
    expect_recovered(&m, &mut q);
}

#[test]
fn an_id_completed_twice_breaks_the_queue() {
    let m = mem();
    let mut q = queue(&m, false);
    let a = user(&mut q, 10);
    let _b = user(&mut q, 11);
    respond(&m, &a, 0x10);
    used(&m, &mut q, 0, a.id.into(), MIN_USED);
    assert_eq!(q.poll(&mut Codec), Ok(Some((10, (110, 0x10, MIN_USED)))));
    used(&m, &mut q, 1, a.id.into(), MIN_USED);
    assert_eq!(
        q.poll(&mut Codec),
        Err(TestError::Queue(
            NUMBER,
            UsedError::BadId { id: a.id.into() }
        ))
    );
    expect_broken(&mut q);
    assert_eq!(q.drain_tokens(), vec![11], "token 10 was returned once");
    expect_recovered(&m, &mut q);
}

#[test]
fn a_used_length_beyond_the_buffer_breaks_the_queue() {
    let m = mem();
    let mut q = queue(&m, false);
    let a = user(&mut q, 10);
    used(&m, &mut q, 0, a.id.into(), RESP + 1);
    assert_eq!(
        q.poll(&mut Codec),
        Err(TestError::Queue(
            NUMBER,
            UsedError::BadLength {
                id: a.id,
                len: RESP + 1,
                capacity: RESP
            }
        ))
    );
    expect_broken(&mut q);
    assert_eq!(q.drain_tokens(), vec![10]);
    expect_recovered(&m, &mut q);
}

#[test]
fn a_used_length_below_the_minimum_breaks_a_modern_queue() {
    let m = mem();
    let mut q = queue(&m, false);
    let a = user(&mut q, 10);
    let _b = user(&mut q, 11);
    used(&m, &mut q, 0, a.id.into(), MIN_USED - 1);
    assert_eq!(
        q.poll(&mut Codec),
        Err(TestError::Short {
            queue: NUMBER,
            len: MIN_USED - 1,
            tag: 110
        })
    );
    assert_eq!(q.in_flight(), 1, "the invalid completion's slot is free");
    expect_broken(&mut q);
    // The token of the request completed invalidly is not lost.
    assert_eq!(sorted(q.drain_tokens()), vec![10, 11]);
    expect_recovered(&m, &mut q);
}

#[test]
fn a_short_driver_request_breaks_the_queue_without_a_caller_token() {
    let m = mem();
    let mut q = queue(&m, false);
    let own = send(&mut q, Owner::Internal, 7).ok().unwrap();
    used(&m, &mut q, 0, own.id.into(), 0);
    assert_eq!(
        q.reap(&mut Codec),
        Err(TestError::Short {
            queue: NUMBER,
            len: 0,
            tag: 7
        })
    );
    expect_broken(&mut q);
    assert_eq!(q.drain_tokens(), Vec::<u32>::new());
}

#[test]
fn legacy_used_lengths_are_not_checked_against_the_minimum() {
    let m = mem();
    let mut q = queue(&m, true);
    let a = user(&mut q, 10);
    respond(&m, &a, 0x42);
    used(&m, &mut q, 0, a.id.into(), 0);
    assert_eq!(q.poll(&mut Codec), Ok(Some((10, (110, 0x42, 0)))));
    assert!(!q.is_broken());
}

#[test]
fn a_response_the_driver_refuses_breaks_the_queue() {
    let m = mem();
    let mut q = queue(&m, false);
    let a = user(&mut q, 10);
    respond(&m, &a, REFUSED);
    used(&m, &mut q, 0, a.id.into(), RESP);
    assert_eq!(
        q.poll(&mut Codec),
        Err(TestError::Refused {
            queue: NUMBER,
            tag: 110
        })
    );
    expect_broken(&mut q);
    assert_eq!(q.drain_tokens(), vec![10]);
}

#[test]
fn refused_layouts_and_chains_free_their_slot() {
    let m = mem();
    let mut q = queue(&m, false);
    let (mut out, mut inp) = (Vec::new(), Vec::new());
    // The layout does not fit.
    let r = q.enqueue(Owner::User(1), 0, &mut out, &mut inp, |_, _, _, _| false);
    assert!(matches!(r, Err((EnqueueError::TooLarge, Owner::User(1)))));
    // No segments at all.
    let r = q.enqueue(Owner::User(2), 0, &mut out, &mut inp, |_, _, o, i| {
        o.clear();
        i.clear();
        true
    });
    assert!(matches!(
        r,
        Err((EnqueueError::EmptySegment, Owner::User(2)))
    ));
    // More segments than the queue has descriptors.
    let r = q.enqueue(Owner::User(3), 0, &mut out, &mut inp, |_, addr, o, _| {
        o.clear();
        o.extend((0..5).map(|i| Segment::new(addr + i, 1)));
        true
    });
    assert!(matches!(
        r,
        Err((
            EnqueueError::TooManySegments {
                segments: 5,
                max: 4
            },
            Owner::User(3)
        ))
    ));
    // Every slot is still free.
    assert_eq!(q.in_flight(), 0);
    for t in 0..SIZE {
        user(&mut q, t.into());
    }
    assert_eq!(q.in_flight(), SIZE);
}

/// A driver error type with the variants [`enqueue_error_into!`] maps to.
#[derive(Debug, PartialEq, Eq)]
enum DriverError {
    Broken { queue: u16 },
    QueueFull { queue: u16 },
    TooManySegments { segments: usize, max: usize },
    TooLarge,
    EmptySegment,
}

enqueue_error_into!(DriverError);

#[test]
fn enqueue_errors_map_to_the_drivers_variants() {
    let cases = [
        (EnqueueError::Broken, DriverError::Broken { queue: 3 }),
        (EnqueueError::QueueFull, DriverError::QueueFull { queue: 3 }),
        (
            EnqueueError::TooManySegments {
                segments: 9,
                max: 8,
            },
            DriverError::TooManySegments {
                segments: 9,
                max: 8,
            },
        ),
        (EnqueueError::TooLarge, DriverError::TooLarge),
        (EnqueueError::EmptySegment, DriverError::EmptySegment),
    ];
    for (e, want) in cases {
        assert_eq!(DriverError::from_enqueue(e, 3), want);
    }
}
