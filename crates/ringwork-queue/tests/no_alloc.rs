//! No heap allocation per chain, on either side, once a queue runs in a
//! steady state: a counting global allocator (per thread, so the test
//! harness's own threads do not count) must see zero allocations while a
//! driver-side and a device-side queue move thousands of chains through
//! every lap position. Covered: split and packed; 1- and 4-buffer chains,
//! direct and through indirect tables; EVENT_IDX and IN_ORDER on and off;
//! device `pop_into` and `pop`, `add_used` and `add_used_batch`, reading
//! and writing payload bytes, notification decisions on both sides.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use ringwork_queue::test_utils::TestMemory;
use ringwork_queue::{
    DescChain, DeviceQueue, DriverQueue, DriverQueueConfig, QueueFeatures, RingFormat, Segment,
    UsedToken,
};

/// Counts allocations (alloc, alloc_zeroed, realloc) made by this thread.
struct Counting;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

fn bump() {
    // `try_with`: the slot may be gone while the thread is being torn down.
    let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
}

fn allocs() -> u64 {
    ALLOCS.with(Cell::get)
}

// SAFETY: every method forwards to `System` unchanged; counting touches only
// a const-initialised thread-local `Cell`, which never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        bump();
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        bump();
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        bump();
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const SIZE: u16 = 64;
const BASE: u64 = 0x10_0000;
const BUFS: u64 = BASE + 0x8_0000;

#[derive(Debug, Clone, Copy)]
struct Case {
    format: RingFormat,
    segments: usize,
    indirect: bool,
    event_idx: bool,
    in_order: bool,
    by_value: bool,
    batched: bool,
}

/// Everything one steady-state loop needs, allocated up front.
struct Rig<'m> {
    mem: &'m TestMemory,
    case: Case,
    driver: DriverQueue<&'m TestMemory, u64>,
    device: DeviceQueue,
    chain: DescChain,
    used: Vec<(UsedToken, u32)>,
    out: Vec<Segment>,
    inp: Vec<Segment>,
    next_token: u64,
    expected_token: u64,
}

impl<'m> Rig<'m> {
    fn new(mem: &'m TestMemory, case: Case) -> Self {
        let features = QueueFeatures {
            indirect_desc: case.indirect,
            event_idx: case.event_idx,
            in_order: case.in_order,
            ..QueueFeatures::default()
        };
        let mut cfg = DriverQueueConfig::new(case.format, SIZE, features);
        cfg.indirect_threshold = if case.indirect { 2 } else { 0 };
        cfg.indirect_max = 8;
        cfg.indirect_tables = SIZE;
        let driver = DriverQueue::new(mem, cfg).expect("driver queue");
        assert!(mem.allocated() < (BUFS - BASE) as usize);
        let device =
            DeviceQueue::new(case.format, SIZE, driver.addresses(), features).expect("device");
        let readable = case.segments / 2;
        let seg = |j: usize| Segment::new(BUFS + j as u64 * 64, 64);
        Self {
            mem,
            case,
            driver,
            device,
            chain: DescChain::new(),
            used: Vec::with_capacity(usize::from(SIZE)),
            out: (0..readable).map(seg).collect(),
            inp: (readable..case.segments).map(seg).collect(),
            next_token: 0,
            expected_token: 0,
        }
    }

    /// Device side: handle one popped chain (read the request, write a
    /// reply) and return its token and used length.
    fn serve(mem: &TestMemory, chain: &DescChain) -> (UsedToken, u32) {
        let mut req = [0u8; 8];
        let n = chain.reader(mem).read(&mut req).expect("read");
        assert_eq!(n, if chain.readable_len() > 0 { 8 } else { 0 });
        let mut w = chain.writer(mem);
        w.write(&[0xa5; 16]).expect("write");
        (chain.token(), w.bytes_written())
    }

    /// One round: the driver adds `n` chains (as many as fit), the device
    /// serves them all, the driver reclaims them all.
    fn round(&mut self, n: usize) {
        let mem = self.mem;
        for _ in 0..n {
            let token = self.next_token;
            match self.driver.add(&self.out, &self.inp, token) {
                Ok(_) => self.next_token += 1,
                Err(rejected) => {
                    assert!(
                        matches!(rejected.error, ringwork_queue::AddError::NoSpace { .. }),
                        "{:?}",
                        rejected.error
                    );
                    break;
                }
            }
        }
        let _ = self.driver.kick_prepare().expect("kick_prepare");

        self.used.clear();
        loop {
            let served = if self.case.by_value {
                self.device
                    .pop(mem)
                    .expect("pop")
                    .map(|chain| Self::serve(mem, &chain))
            } else if self.device.pop_into(mem, &mut self.chain).expect("pop") {
                Some(Self::serve(mem, &self.chain))
            } else {
                None
            };
            let Some((token, len)) = served else {
                break;
            };
            if self.case.batched {
                self.used.push((token, len));
            } else {
                self.device.add_used(mem, token, len).expect("add_used");
            }
        }
        if self.case.batched {
            self.device
                .add_used_batch(mem, &self.used)
                .expect("add_used_batch");
        }
        let _ = self.device.needs_notification(mem).expect("needs_notif");
        let _ = self.device.enable_notification(mem).expect("enable");

        self.driver.disable_callbacks();
        while let Some(u) = self.driver.pop_used().expect("pop_used") {
            assert_eq!(u.token, self.expected_token, "tokens come back in order");
            self.expected_token += 1;
        }
        assert_eq!(self.driver.outstanding(), 0);
        let _ = self.driver.enable_callbacks();
    }
}

fn check(case: Case) {
    let mem = TestMemory::new(BASE, 1 << 20);
    let mut rig = Rig::new(&mem, case);
    // Warm up: several laps with varying batch sizes, so every index wraps
    // and every buffer the queues keep has reached its working size.
    for i in 0..4 * usize::from(SIZE) {
        rig.round(1 + i % 9);
    }
    let before = allocs();
    let chains_before = rig.expected_token;
    for i in 0..16 * usize::from(SIZE) {
        rig.round(1 + i % 9);
    }
    let count = allocs() - before;
    let chains = rig.expected_token - chains_before;
    assert!(chains > 4000, "{case:?}: only {chains} chains");
    assert_eq!(
        count, 0,
        "{case:?}: {count} allocations over {chains} chains in steady state"
    );
}

fn all_cases() -> impl Iterator<Item = Case> {
    let formats = [RingFormat::Split, RingFormat::Packed];
    formats.into_iter().flat_map(|format| {
        [1usize, 4].into_iter().flat_map(move |segments| {
            [false, true].into_iter().flat_map(move |indirect| {
                [false, true].into_iter().flat_map(move |event_idx| {
                    [false, true].into_iter().map(move |in_order| Case {
                        format,
                        segments,
                        indirect,
                        event_idx,
                        in_order,
                        by_value: false,
                        batched: false,
                    })
                })
            })
        })
    })
}

#[test]
fn counting_allocator_counts() {
    let before = allocs();
    let v: Vec<u8> = Vec::with_capacity(16);
    drop(v);
    assert_eq!(allocs() - before, 1);
}

#[test]
fn steady_state_pop_into_add_used() {
    for case in all_cases() {
        check(case);
    }
}

#[test]
fn steady_state_pop_by_value_add_used_batch() {
    for case in all_cases() {
        check(Case {
            by_value: true,
            batched: true,
            ..case
        });
    }
}
