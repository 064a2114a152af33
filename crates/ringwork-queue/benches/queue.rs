//! Device-side cost per chain: ringwork's split and packed rings, and
//! rust-vmm's `virtio-queue` on the same split-ring workload.
//!
//! Run with `cargo bench -p ringwork-queue --bench queue`. One criterion
//! iteration is one chain: chains are made available in batches of up to a
//! ring's worth (untimed), then the device side pops, visits and completes
//! the batch (timed). See `benches/common/mod.rs` for the ring layouts and
//! `docs/PERFORMANCE.md` for results.

mod common;

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ringwork_queue::test_utils::TestMemory;

use common::ours::{OursPacked, OursSplit, PopApi};
use common::vq::VqSplit;
use common::{ringwork_mmap, DeviceCase, Shape, BASE, MEM_SIZE};

const SHAPES: [Shape; 3] = [Shape::ONE, Shape::FOUR, Shape::FOUR_INDIRECT];

/// Times `iters` chains of pop + visit + add_used, refilling untimed.
fn time_consume<C: DeviceCase>(case: &mut C, shape: Shape, iters: u64) -> Duration {
    let cap = case.capacity() as u64;
    let (per_chain, _) = shape.lens();
    let mut left = iters;
    let mut total = Duration::ZERO;
    while left > 0 {
        let k = left.min(cap) as usize;
        case.refill(k);
        let t = Instant::now();
        let bytes = timed_consume(case, k);
        total += t.elapsed();
        assert_eq!(black_box(bytes), per_chain * k as u64);
        left -= k as u64;
    }
    total
}

/// Chains consumed by [`timed_consume`] since the last [`report_chains`]
/// (`bench/queue-ir.sh` divides the instructions callgrind counts in
/// `timed_consume` by this).
static CHAINS: AtomicU64 = AtomicU64::new(0);

/// The timed part of [`time_consume`], out of line so callgrind can count
/// its instructions alone.
#[inline(never)]
fn timed_consume<C: DeviceCase>(case: &mut C, k: usize) -> u64 {
    CHAINS.fetch_add(k as u64, Ordering::Relaxed);
    case.consume(k)
}

/// Prints (to stderr) how many chains the bench just run consumed.
fn report_chains(what: &str) {
    let n = CHAINS.swap(0, Ordering::Relaxed);
    if n > 0 {
        eprintln!("queue {what}: {n} chains consumed");
    }
}

/// Times `iters` add_used calls alone (popping untimed).
fn time_add_used<C: DeviceCase>(case: &mut C, iters: u64) -> Duration {
    let cap = case.capacity() as u64;
    let mut left = iters;
    let mut total = Duration::ZERO;
    while left > 0 {
        let k = left.min(cap) as usize;
        case.refill(k);
        case.pop_only(k);
        let t = Instant::now();
        case.complete_only(k);
        total += t.elapsed();
        left -= k as u64;
    }
    total
}

fn new_mem() -> TestMemory {
    TestMemory::new(BASE, MEM_SIZE)
}

/// Both implementations, one full ring of each split shape: they must
/// write byte-identical used rings.
fn check_same_work() {
    for shape in SHAPES {
        let mem = new_mem();
        let mut ours = OursSplit::new(&mem, shape, false, PopApi::Into);
        let mmap = ringwork_mmap();
        let mut ours_mmap = OursSplit::new(&mmap, shape, false, PopApi::Into);
        let mut theirs = VqSplit::new(shape);
        for _ in 0..3 {
            let k = ours.capacity();
            ours.refill(k);
            ours_mmap.refill(k);
            theirs.refill(k);
            let bytes = theirs.consume(k);
            assert_eq!(ours.consume(k), bytes);
            assert_eq!(ours_mmap.consume(k), bytes);
            assert!(ours.is_drained() && ours_mmap.is_drained() && theirs.is_drained());
        }
        let used = theirs.used_ring();
        assert_eq!(ours.used_ring(), used, "{}", shape.label());
        assert_eq!(ours_mmap.used_ring(), used, "{}", shape.label());
    }
}

fn device_split(c: &mut Criterion) {
    check_same_work();
    let mut g = c.benchmark_group("device_split");
    g.throughput(Throughput::Elements(1));
    for shape in SHAPES {
        let mem = new_mem();
        let mut ours = OursSplit::new(&mem, shape, false, PopApi::Into);
        g.bench_function(BenchmarkId::new("ringwork", shape.label()), |b| {
            b.iter_custom(|iters| time_consume(&mut ours, shape, iters))
        });
        report_chains(&format!("split/{}", shape.label()));
        let mmap = ringwork_mmap();
        let mut ours_mmap = OursSplit::new(&mmap, shape, false, PopApi::Into);
        g.bench_function(BenchmarkId::new("ringwork-mmap", shape.label()), |b| {
            b.iter_custom(|iters| time_consume(&mut ours_mmap, shape, iters))
        });
        report_chains(&format!("split-mmap/{}", shape.label()));
        let mut theirs = VqSplit::new(shape);
        g.bench_function(BenchmarkId::new("virtio-queue", shape.label()), |b| {
            b.iter_custom(|iters| time_consume(&mut theirs, shape, iters))
        });
        report_chains(&format!("virtio-queue/{}", shape.label()));
    }
    g.finish();
}

fn device_packed(c: &mut Criterion) {
    let mut g = c.benchmark_group("device_packed");
    g.throughput(Throughput::Elements(1));
    for shape in SHAPES {
        let mem = new_mem();
        let mut ours = OursPacked::new(&mem, shape, false, PopApi::Into);
        g.bench_function(BenchmarkId::new("ringwork", shape.label()), |b| {
            b.iter_custom(|iters| time_consume(&mut ours, shape, iters))
        });
        report_chains(&format!("packed/{}", shape.label()));
    }
    g.finish();
}

fn add_used(c: &mut Criterion) {
    let mut g = c.benchmark_group("add_used");
    g.throughput(Throughput::Elements(1));
    let shape = Shape::ONE;
    let mem = new_mem();
    let mut ours = OursSplit::new(&mem, shape, false, PopApi::Into);
    g.bench_function(BenchmarkId::new("ringwork", "split"), |b| {
        b.iter_custom(|iters| time_add_used(&mut ours, iters))
    });
    let mut theirs = VqSplit::new(shape);
    g.bench_function(BenchmarkId::new("virtio-queue", "split"), |b| {
        b.iter_custom(|iters| time_add_used(&mut theirs, iters))
    });
    let mem = new_mem();
    let mut packed = OursPacked::new(&mem, shape, false, PopApi::Into);
    g.bench_function(BenchmarkId::new("ringwork", "packed"), |b| {
        b.iter_custom(|iters| time_add_used(&mut packed, iters))
    });
    g.finish();
}

/// Variants of the 1-descriptor case: `pop` by value instead of
/// `pop_into`, and EVENT_IDX on (each pop then also writes avail_event).
fn device_variants(c: &mut Criterion) {
    let mut g = c.benchmark_group("device_variants");
    g.throughput(Throughput::Elements(1));
    let shape = Shape::ONE;
    let mem = new_mem();
    let mut split_pop = OursSplit::new(&mem, shape, false, PopApi::ByValue);
    g.bench_function(
        BenchmarkId::new("ringwork", "split-1-desc-pop-by-value"),
        |b| b.iter_custom(|iters| time_consume(&mut split_pop, shape, iters)),
    );
    let mem = new_mem();
    let mut split_ev = OursSplit::new(&mem, shape, true, PopApi::Into);
    g.bench_function(
        BenchmarkId::new("ringwork", "split-1-desc-event-idx"),
        |b| b.iter_custom(|iters| time_consume(&mut split_ev, shape, iters)),
    );
    let mem = new_mem();
    let mut packed_pop = OursPacked::new(&mem, shape, false, PopApi::ByValue);
    g.bench_function(
        BenchmarkId::new("ringwork", "packed-1-desc-pop-by-value"),
        |b| b.iter_custom(|iters| time_consume(&mut packed_pop, shape, iters)),
    );
    let mem = new_mem();
    let mut packed_ev = OursPacked::new(&mem, shape, true, PopApi::Into);
    g.bench_function(
        BenchmarkId::new("ringwork", "packed-1-desc-event-idx"),
        |b| b.iter_custom(|iters| time_consume(&mut packed_ev, shape, iters)),
    );
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = device_split, device_packed, add_used, device_variants
}
criterion_main!(benches);
