//! The packed record against a real device queue over test memory: pops,
//! out-of-order completions, restarts, torn updates and hostile contents.

use super::*;
use ringwork_queue::device::DeviceQueue;
use ringwork_queue::test_utils::TestMemory;
use ringwork_queue::{GuestMemory, QueueAddresses, QueueFeatures, RingFormat, Segment};
use ringwork_spec::ring::packed as p;
use ringwork_spec::ring::VIRTQ_DESC_F_WRITE as W;
use ringwork_spec::ring::{VIRTQ_DESC_F_INDIRECT as I, VIRTQ_DESC_F_NEXT as N};

const BASE: u64 = 0x1_0000;
const RING: u64 = BASE;
const DATA: u64 = BASE + 0x4000;
const SIZE: u16 = 8;

/// A device queue and the driver's side of its ring, with an area.
struct Rig {
    mem: TestMemory,
    q: DeviceQueue,
    area: InflightArea,
    log: PackedLog,
    /// The driver's next avail position.
    avail: (u16, bool),
}

impl Rig {
    fn new() -> Self {
        let mem = TestMemory::new(BASE, 0x1_0000);
        let addrs = QueueAddresses {
            desc: RING,
            driver: BASE + 0x1000,
            device: BASE + 0x1100,
        };
        let f = QueueFeatures {
            indirect_desc: true,
            ..QueueFeatures::default()
        };
        let q = DeviceQueue::new(RingFormat::Packed, SIZE, addrs, f).unwrap();
        let (area, _) = InflightArea::create(1, SIZE).unwrap();
        let rec = area
            .packed_queue(0, SIZE, QueuePosition::default(), |_| None)
            .unwrap();
        assert!(rec.chains.is_empty());
        Self {
            mem,
            q,
            area,
            log: rec.log,
            avail: (0, true),
        }
    }

    /// The driver makes a buffer of `(addr, len, flags)` descriptors
    /// available with buffer id `id`.
    fn make_avail(&mut self, descs: &[(u64, u32, u16)], id: u16) {
        for (k, &(addr, len, flags)) in descs.iter().enumerate() {
            let more = if k + 1 < descs.len() { N } else { 0 };
            let s = self
                .mem
                .slice(RING + u64::from(self.avail.0) * 16, 16)
                .unwrap();
            s.write_u64(0, addr).unwrap();
            s.write_u32(8, len).unwrap();
            s.write_u16(12, id).unwrap();
            s.write_u16(14, flags | more | p::avail_flags(self.avail.1))
                .unwrap();
            self.avail = advance(SIZE, self.avail, 1);
        }
    }

    fn pop(&mut self) -> DescChain {
        let c = self
            .q
            .pop(&self.mem)
            .unwrap()
            .expect("a chain is available");
        self.log.popped_chain(&c);
        c
    }

    fn complete(&mut self, chains: &[&DescChain]) {
        let batch: Vec<_> = chains.iter().map(|c| (c.token(), 0)).collect();
        self.log.completing(&batch);
        self.q.add_used_batch(&self.mem, &batch).unwrap();
        self.log.completed(&batch, self.q.position().next_used);
    }

    fn ring_flags(&self) -> impl Fn(u16) -> Option<u16> + '_ {
        |i| {
            self.mem
                .slice(RING + u64::from(i) * 16 + 14, 2)
                .and_then(|s| s.read_u16(0).ok())
        }
    }

    /// A backend restart with the frontend's (stale) initial base.
    fn restart(&self) -> PackedRecovery {
        self.area
            .packed_queue(0, SIZE, QueuePosition::default(), self.ring_flags())
            .unwrap()
    }

    fn region(&self) -> MemSlice<'_> {
        self.area.region(0).unwrap()
    }
}

fn saved(c: &DescChain) -> Vec<SavedDesc> {
    c.packed_descriptors().collect()
}

fn pos(next_used: u16, used_wrap: bool, next_avail: u16, avail_wrap: bool) -> QueuePosition {
    QueuePosition {
        next_avail,
        avail_wrap,
        next_used,
        used_wrap,
    }
}

/// Rebuilds the recovered chains on a fresh queue at the recovered
/// position, as the backend does.
fn rebuild(r: &Rig, rec: &PackedRecovery) -> (DeviceQueue, Vec<DescChain>) {
    let mut q = r.q.clone();
    q.set_position(rec.position).unwrap();
    let chains = rec
        .chains
        .iter()
        .map(|(at, descs)| {
            let mut c = DescChain::new();
            q.chain_from_descriptors(&r.mem, descs, *at, &mut c)
                .unwrap();
            c
        })
        .collect();
    (q, chains)
}

#[test]
fn chains_overwritten_in_the_ring_are_resubmitted_in_pop_order() {
    let mut r = Rig::new();
    // A (2 slots), B (1), C (3, indirect-free), popped in that order.
    r.make_avail(&[(DATA, 16, 0), (DATA + 0x100, 32, W)], 0);
    r.make_avail(&[(DATA + 0x200, 16, 0)], 1);
    r.make_avail(
        &[
            (DATA + 0x300, 8, 0),
            (DATA + 0x400, 8, 0),
            (DATA + 0x500, 64, W),
        ],
        2,
    );
    let a = r.pop();
    let b = r.pop();
    let c = r.pop();
    // B completes first: its used entry overwrites A's first descriptor.
    r.complete(&[&b]);
    assert_eq!(r.q.position().next_used, 1);
    // D reuses B's id and (in the record) B's entry; E lands on ring slot 0
    // in the next lap, where A started.
    r.make_avail(&[(DATA + 0x600, 4, 0), (DATA + 0x700, 4, W)], 1);
    let table = DATA + 0x800;
    r.mem
        .slice(table, 16)
        .unwrap()
        .write_u64(0, DATA + 0x900)
        .unwrap();
    r.mem
        .slice(table + 8, 8)
        .unwrap()
        .write_u64(0, 12 | u64::from(W) << 48)
        .unwrap();
    r.make_avail(&[(table, 16, I)], 3);
    let d = r.pop();
    let e = r.pop();
    assert_eq!((e.token().position(), e.is_indirect()), (0, true));
    assert_eq!(r.q.in_flight(), 8);

    // The backend dies. The restart finds A, C, D, E in pop order (their
    // head entries are 0, 3, 2 and 7), at consecutive offsets from the
    // recorded used position; the stale base is overridden.
    let rec = r.restart();
    let got: Vec<_> = rec.chains.iter().map(|(at, s)| (*at, s.clone())).collect();
    assert_eq!(
        got,
        vec![
            (1, saved(&a)),
            (3, saved(&c)),
            (6, saved(&d)),
            (0, saved(&e))
        ]
    );
    assert_eq!(rec.position, pos(1, true, 1, false));
    let (mut q, chains) = rebuild(&r, &rec);
    for (old, new) in [&a, &c, &d, &e].into_iter().zip(&chains) {
        assert_eq!(old.segments(), new.segments());
        assert_eq!(old.writable_len(), new.writable_len());
        assert_eq!(old.id(), new.id());
    }
    assert_eq!(
        chains[3].writable_segments(),
        [Segment::new(DATA + 0x900, 12)]
    );

    // The recovered record goes on: C and A complete (out of order), then a
    // second restart finds D and E only.
    let mut log = rec.log;
    for ch in [&chains[1], &chains[0]] {
        let batch = [(ch.token(), 0)];
        log.completing(&batch);
        q.add_used_batch(&r.mem, &batch).unwrap();
        log.completed(&batch, q.position().next_used);
    }
    let rec = r.restart();
    let ids: Vec<u16> = rec.chains.iter().map(|(_, s)| s[s.len() - 1].id).collect();
    assert_eq!(ids, [1, 3]);
    assert_eq!(rec.position, pos(6, true, 1, false));
}

#[test]
fn a_chain_whose_entries_precede_its_head_is_recovered() {
    let mut r = Rig::new();
    r.make_avail(&[(DATA, 16, W)], 0);
    r.make_avail(&[(DATA + 0x100, 16, W)], 1);
    let x = r.pop();
    let y = r.pop();
    // The batch puts Y's entry (1) ahead of X's (0) on the free list, so
    // the next chain's head is entry 1 and its second entry is entry 0.
    r.complete(&[&x, &y]);
    r.make_avail(&[(DATA + 0x200, 16, 0), (DATA + 0x300, 16, W)], 2);
    let z = r.pop();
    let rec = r.restart();
    assert_eq!(rec.chains, vec![(2, saved(&z))]);
    assert_eq!(r.region().read_u16(entry(1) + E_NEXT).unwrap(), 0);
}

#[test]
fn a_buffer_id_reused_in_flight_is_told_apart_by_position() {
    let mut r = Rig::new();
    // A misbehaving driver makes two buffers available with id 5.
    r.make_avail(&[(DATA, 16, W)], 5);
    r.make_avail(&[(DATA + 0x100, 16, 0), (DATA + 0x200, 16, W)], 5);
    let x = r.pop();
    let y = r.pop();
    // The older one completes: the record must free it, not the newest
    // chain with that id.
    r.complete(&[&x]);
    let rec = r.restart();
    assert_eq!(rec.chains, vec![(1, saved(&y))]);
    let (mut q, chains) = rebuild(&r, &rec);
    let mut log = rec.log;
    let batch = [(chains[0].token(), 0)];
    log.completing(&batch);
    q.add_used_batch(&r.mem, &batch).unwrap();
    log.completed(&batch, q.position().next_used);
    assert!(r.restart().chains.is_empty());
}

#[test]
fn completed_buffers_are_not_resubmitted_and_an_idle_queue_takes_the_base_unless_stale() {
    let mut r = Rig::new();
    r.make_avail(&[(DATA, 16, W)], 0);
    r.make_avail(&[(DATA + 0x100, 16, W)], 1);
    let a = r.pop();
    let b = r.pop();
    r.complete(&[&b, &a]);
    let base = pos(2, true, 2, true);
    let rec = r.area.packed_queue(0, SIZE, base, r.ring_flags()).unwrap();
    assert!(rec.chains.is_empty());
    assert_eq!(rec.position, base);
    // A stale base (a frontend that could not ask the crashed backend):
    // the ring shows its slot was used in its lap, the record's slot was
    // not, so the record wins.
    let stale = pos(0, true, 0, true);
    let rec = r.area.packed_queue(0, SIZE, stale, r.ring_flags()).unwrap();
    assert_eq!(rec.position, base);
    // A ring the driver re-initialized: the base wins, and the region is
    // laid out again at it.
    r.mem
        .slice(RING, 16 * usize::from(SIZE))
        .unwrap()
        .fill(0, 16 * usize::from(SIZE), 0)
        .unwrap();
    let rec = r.area.packed_queue(0, SIZE, stale, r.ring_flags()).unwrap();
    assert_eq!(rec.position, stale);
    assert_eq!(r.region().read_u16(USED_IDX).unwrap(), 0);
}

#[test]
fn a_batch_that_did_not_reach_the_ring_is_rolled_back() {
    let mut r = Rig::new();
    r.make_avail(&[(DATA, 16, W)], 0);
    r.make_avail(&[(DATA + 0x100, 16, W), (DATA + 0x200, 16, W)], 1);
    let a = r.pop();
    let b = r.pop();
    // Crash after the record moved on, before the used entries were
    // written.
    r.log.completing(&[(a.token(), 0), (b.token(), 0)]);
    assert_ne!(
        r.region().read_u16(USED_IDX).unwrap(),
        r.region().read_u16(OLD_USED_IDX).unwrap()
    );
    let rec = r.restart();
    assert_eq!(rec.chains, vec![(0, saved(&a)), (1, saved(&b))]);
    assert_eq!(rec.position, pos(0, true, 3, true));
}

#[test]
fn a_batch_that_reached_the_ring_is_committed() {
    let mut r = Rig::new();
    r.make_avail(&[(DATA, 16, W)], 0);
    r.make_avail(&[(DATA + 0x100, 16, W)], 1);
    r.make_avail(&[(DATA + 0x200, 16, W)], 2);
    let a = r.pop();
    let b = r.pop();
    let c = r.pop();
    // Crash after the used entries (C, A) were published, before the
    // record was finished.
    let batch = [(c.token(), 0), (a.token(), 0)];
    r.log.completing(&batch);
    r.q.add_used_batch(&r.mem, &batch).unwrap();
    let rec = r.restart();
    assert_eq!(rec.chains, vec![(2, saved(&b))]);
    assert_eq!(rec.position, pos(2, true, 3, true));
    // Committed: the header's old_* copies match.
    assert_eq!(r.region().read_u16(OLD_USED_IDX).unwrap(), 2);
    assert_eq!(r.region().read_u8(E_INFLIGHT + entry(0)).unwrap(), 0);
}

#[test]
fn a_half_recorded_pop_is_rolled_back() {
    let mut r = Rig::new();
    r.make_avail(&[(DATA, 16, W)], 0);
    r.make_avail(&[(DATA + 0x100, 16, 0), (DATA + 0x200, 16, W)], 1);
    let a = r.pop();
    let before = r.region().read_u16(OLD_FREE_HEAD).unwrap();
    let _b = r.pop();
    // Crash before the pop of B was committed (old_free_head not moved).
    r.region().write_u16(OLD_FREE_HEAD, before).unwrap();
    let rec = r.restart();
    assert_eq!(rec.chains, vec![(0, saved(&a))]);
    assert_eq!(rec.position, pos(0, true, 1, true));
    // B's head is back on the free list, its flag cleared.
    assert_eq!(r.region().read_u8(entry(before)).unwrap(), 0);
}

#[test]
fn regions_not_laid_out_for_packed_start_at_the_base() {
    let r = Rig::new();
    let reg = r.region();
    // A split record (no layout mark) with a head in flight.
    reg.fill(0, reg.len(), 0).unwrap();
    reg.write_u16(VERSION_OFF, VERSION).unwrap();
    reg.write_u16(DESC_NUM_OFF, SIZE).unwrap();
    reg.write_u8(16 + 16 * 3, 1).unwrap();
    let base = pos(5, false, 7, false);
    let rec = r.area.packed_queue(0, SIZE, base, |_| None).unwrap();
    assert!(rec.chains.is_empty());
    assert_eq!(rec.position, base);
    assert!(is_laid_out(&reg));
    // Another queue size does not fit; another queue is not covered.
    assert!(r.area.packed_queue(0, 16, base, |_| None).is_none());
    assert!(r.area.packed_queue(1, SIZE, base, |_| None).is_none());
}

/// A record with two chains in flight, to corrupt.
fn two_in_flight() -> Rig {
    let mut r = Rig::new();
    r.make_avail(&[(DATA, 16, 0), (DATA + 0x100, 16, W)], 0);
    r.make_avail(&[(DATA + 0x200, 16, W)], 1);
    r.pop();
    r.pop();
    assert_eq!(r.restart().chains.len(), 2);
    r
}

#[test]
fn inconsistent_records_are_discarded() {
    type Corrupt = fn(&MemSlice<'_>);
    let cases: [(&str, Corrupt); 12] = [
        ("free list loops", |s| {
            s.write_u16(entry(4) + E_NEXT, 3).unwrap()
        }),
        ("free link out of range", |s| {
            s.write_u16(entry(3) + E_NEXT, 9).unwrap()
        }),
        ("free head out of range", |s| {
            s.write_u16(OLD_FREE_HEAD, 9).unwrap()
        }),
        ("used index out of range", |s| {
            s.write_u16(USED_IDX, 8).unwrap();
            s.write_u16(OLD_USED_IDX, 8).unwrap();
        }),
        ("wrap counter", |s| s.write_u8(OLD_USED_WRAP, 2).unwrap()),
        ("zero-length chain", |s| {
            s.write_u16(entry(0) + E_NUM, 0).unwrap()
        }),
        ("chain longer than the queue", |s| {
            s.write_u16(entry(0) + E_NUM, 9).unwrap()
        }),
        ("chain into the free list", |s| {
            s.write_u16(entry(0) + E_NUM, 3).unwrap()
        }),
        ("chain into another head", |s| {
            s.write_u16(entry(0) + E_NEXT, 2).unwrap()
        }),
        ("wrong last entry", |s| {
            s.write_u16(entry(0) + E_LAST, 0).unwrap()
        }),
        ("in-flight flag", |s| s.write_u8(entry(2), 7).unwrap()),
        ("leaked entry", |s| s.write_u8(entry(2), 0).unwrap()),
    ];
    for (what, corrupt) in cases {
        let r = two_in_flight();
        corrupt(&r.region());
        let base = pos(3, true, 3, true);
        let rec = r.area.packed_queue(0, SIZE, base, |_| None).unwrap();
        assert!(rec.chains.is_empty(), "{what}: {:?}", rec.chains);
        assert_eq!(rec.position, base, "{what}");
        // Laid out afresh: a second restart is clean too.
        let again = r.area.packed_queue(0, SIZE, base, |_| None).unwrap();
        assert!(again.chains.is_empty(), "{what}");
    }
}

/// Recovers queue 0 of `r` with ring flags `flags` and checks the result
/// is in bounds and usable; returns the number of chains.
fn recover_checked(r: &Rig, flags: u16) -> usize {
    let rec = r
        .area
        .packed_queue(0, SIZE, QueuePosition::default(), |_| Some(flags))
        .unwrap();
    let slots: usize = rec.chains.iter().map(|(_, d)| d.len()).sum();
    assert!(slots <= usize::from(SIZE));
    assert!(rec.position.next_avail < SIZE && rec.position.next_used < SIZE);
    assert!(rec.chains.iter().all(|(at, _)| *at < SIZE));
    // The recovered log keeps working.
    let n = rec.chains.len();
    let mut log = rec.log;
    let mut q = r.q.clone();
    q.set_position(rec.position).unwrap();
    for (at, descs) in &rec.chains {
        let mut c = DescChain::new();
        if q.chain_from_descriptors(&r.mem, descs, *at, &mut c).is_ok() {
            log.completing(&[(c.token(), 0)]);
            log.completed(&[(c.token(), 0)], 0);
        }
    }
    n
}

#[test]
fn corrupted_records_never_panic_and_stay_in_bounds() {
    let r = two_in_flight();
    let reg = r.region();
    let mut good = vec![0u8; reg.len()];
    reg.read_bytes(0, &mut good).unwrap();
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut kept = 0;
    for _ in 0..3000 {
        reg.write_bytes(0, &good).unwrap();
        // One to three fields of the header or the used entries changed.
        for _ in 0..1 + rnd() % 3 {
            let off = (rnd() as usize % (entry(4) / 2)) * 2;
            let v = rnd();
            let w = if v % 2 == 0 {
                v as u16
            } else {
                (v % 10) as u16
            };
            reg.write_u16(off, w).unwrap();
        }
        if recover_checked(&r, rnd() as u16) > 0 {
            kept += 1;
        }
    }
    // Some corruptions (descriptor contents, counters) leave the record
    // usable; many do not.
    assert!(kept > 100 && kept < 3000, "{kept}");
}

#[test]
fn random_records_never_panic_and_stay_in_bounds() {
    let r = Rig::new();
    let reg = r.region();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for round in 0..2000 {
        // Mostly plausible small values, so that some records get deep into
        // the checks.
        for off in (0..reg.len()).step_by(2) {
            let v = rnd();
            let w = if v % 4 == 0 {
                v as u16
            } else {
                (v % 10) as u16
            };
            reg.write_u16(off, w).unwrap();
        }
        if round % 3 == 0 {
            for i in 0..SIZE {
                reg.write_u8(entry(i), (rnd() % 2) as u8).unwrap();
            }
        }
        reg.write_u16(VERSION_OFF, VERSION).unwrap();
        reg.write_u16(DESC_NUM_OFF, SIZE).unwrap();
        reg.write_u16(LAYOUT, LAYOUT_MARK).unwrap();
        recover_checked(&r, rnd() as u16);
    }
}
