//! Two-thread streaming: chains per second between a driver thread
//! ([`DriverQueue`]) and a device thread ([`DeviceQueue`]) sharing one
//! `TestMemory`, EVENT_IDX on, split and packed, batch sizes 1, 8 and 32.
//!
//! Run with `cargo bench -p ringwork-queue --bench stream`; prints a table.
//! Each run is bounded (`RINGWORK_STREAM_CHAINS` chains, default 4,000,000,
//! or `RINGWORK_STREAM_MS` milliseconds, default 2000, whichever comes
//! first) and repeated `RINGWORK_STREAM_RUNS` times (default 5; the median
//! is reported). Without `--bench` (as under `cargo test --benches`) it
//! does one short run per configuration.
//!
//! Protocol. The driver adds `B` one-buffer chains, calls `kick_prepare`
//! and rings the device's doorbell only when told to; it reclaims used
//! chains with `pop_used`, keeping used-buffer notifications disabled
//! unless it has to wait (ring full), when it enables them and sleeps.
//! The device pops up to `B` chains, completes them with one
//! `add_used_batch`, and rings the driver's doorbell only when
//! `needs_notification` says so; with nothing available it re-enables
//! available-buffer notifications and sleeps. A doorbell is a flag plus
//! `thread::park`/`unpark`, after a short spin. The driver stops adding at
//! the bound, waits for every chain to come back, then tells the device to
//! stop; both threads end by themselves. With `RINGWORK_STREAM_PIN=1`
//! (the default) the driver thread is pinned to CPU 0 and the device thread
//! to CPU 1 when the machine has two or more CPUs.
#![allow(unsafe_code)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use ringwork_queue::test_utils::TestMemory;
use ringwork_queue::{
    DescChain, DeviceQueue, DriverQueue, DriverQueueConfig, QueueFeatures, RingFormat, Segment,
    UsedToken,
};

const QUEUE_SIZE: u16 = 256;
const SPIN: u32 = 2_000;

/// A doorbell: a flag and the thread to unpark.
struct Bell {
    rung: AtomicBool,
    waiter: OnceLock<Thread>,
}

impl Bell {
    fn new() -> Self {
        Self {
            rung: AtomicBool::new(false),
            waiter: OnceLock::new(),
        }
    }

    fn register(&self) {
        let _ = self.waiter.set(thread::current());
    }

    fn ring(&self) {
        if !self.rung.swap(true, Ordering::AcqRel) {
            if let Some(t) = self.waiter.get() {
                t.unpark();
            }
        }
    }

    fn wait(&self) {
        for _ in 0..SPIN {
            if self.rung.swap(false, Ordering::AcqRel) {
                return;
            }
            std::hint::spin_loop();
        }
        while !self.rung.swap(false, Ordering::AcqRel) {
            thread::park();
        }
    }
}

/// Pins the calling thread to `cpu` (best effort).
fn pin(cpu: usize) {
    if std::env::var("RINGWORK_STREAM_PIN").is_ok_and(|v| v == "0") {
        return;
    }
    if thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
        return;
    }
    // SAFETY: `set` is a plain bit set on a zeroed cpu_set_t that lives on
    // our stack; sched_setaffinity(0, ..) only reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        let _ = libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

#[derive(Debug, Clone, Copy)]
struct Outcome {
    chains: u64,
    elapsed: Duration,
    kicks: u64,
    interrupts: u64,
}

impl Outcome {
    fn per_sec(&self) -> f64 {
        self.chains as f64 / self.elapsed.as_secs_f64()
    }
}

fn run(format: RingFormat, batch: usize, max_chains: u64, max_time: Duration) -> Outcome {
    let mem = TestMemory::new(0x10_0000, 4 << 20);
    let features = QueueFeatures {
        event_idx: true,
        ..QueueFeatures::default()
    };
    let cfg = DriverQueueConfig::new(format, QUEUE_SIZE, features);
    let mut driver = DriverQueue::<_, u32>::new(&mem, cfg).expect("driver queue");
    let mut device =
        DeviceQueue::new(format, QUEUE_SIZE, driver.addresses(), features).expect("device queue");
    let bufs = 0x10_0000 + 0x20_0000;
    let segs: Vec<Segment> = (0..u64::from(QUEUE_SIZE))
        .map(|i| Segment::new(bufs + i * 4096, 1500))
        .collect();
    let device_bell = Bell::new();
    let driver_bell = Bell::new();
    let stop = AtomicBool::new(false);
    let mem = &mem;

    thread::scope(|s| {
        let dev = s.spawn(|| {
            pin(1);
            device_bell.register();
            let mut chain = DescChain::new();
            let mut used: Vec<(UsedToken, u32)> = Vec::with_capacity(batch);
            let mut interrupts = 0u64;
            let mut flush = |device: &mut DeviceQueue, used: &mut Vec<(UsedToken, u32)>| {
                if used.is_empty() {
                    return;
                }
                device.add_used_batch(mem, used).expect("add_used_batch");
                used.clear();
                if device.needs_notification(mem).expect("needs_notification") {
                    interrupts += 1;
                    driver_bell.ring();
                }
            };
            loop {
                let mut progressed = false;
                while device.pop_into(mem, &mut chain).expect("pop") {
                    let len: u32 = chain.writable_segments().iter().map(|s| s.len).sum();
                    used.push((chain.token(), len));
                    if used.len() == batch {
                        flush(&mut device, &mut used);
                    }
                    progressed = true;
                }
                flush(&mut device, &mut used);
                if progressed {
                    continue;
                }
                if stop.load(Ordering::Acquire) {
                    break;
                }
                if device.enable_notification(mem).expect("enable") {
                    device.disable_notification(mem).expect("disable");
                    continue;
                }
                device_bell.wait();
                device.disable_notification(mem).expect("disable");
            }
            interrupts
        });

        let drv = s.spawn(|| {
            pin(0);
            driver_bell.register();
            driver.disable_callbacks();
            let (mut added, mut completed, mut kicks) = (0u64, 0u64, 0u64);
            let mut adding = true;
            let start = Instant::now();
            loop {
                while let Some(u) = driver.pop_used().expect("pop_used") {
                    debug_assert_eq!(u.len, 1500);
                    completed += 1;
                }
                if adding && usize::from(driver.num_free()) >= batch {
                    for _ in 0..batch {
                        let seg = segs[(added % u64::from(QUEUE_SIZE)) as usize];
                        driver.add(&[], &[seg], added as u32).expect("add");
                        added += 1;
                    }
                    if driver.kick_prepare().expect("kick_prepare") {
                        kicks += 1;
                        device_bell.ring();
                    }
                    if added >= max_chains
                        || (added % 4096 < batch as u64 && start.elapsed() >= max_time)
                    {
                        adding = false;
                    }
                    continue;
                }
                if !adding && completed == added {
                    break;
                }
                if driver.enable_callbacks() {
                    driver.disable_callbacks();
                    continue;
                }
                driver_bell.wait();
                driver.disable_callbacks();
            }
            let elapsed = start.elapsed();
            stop.store(true, Ordering::Release);
            device_bell.ring();
            (completed, elapsed, kicks)
        });

        let (chains, elapsed, kicks) = drv.join().expect("driver thread");
        let interrupts = dev.join().expect("device thread");
        Outcome {
            chains,
            elapsed,
            kicks,
            interrupts,
        }
    })
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let (max_chains, max_ms, runs) = if bench {
        (
            env_u64("RINGWORK_STREAM_CHAINS", 4_000_000),
            env_u64("RINGWORK_STREAM_MS", 2_000),
            env_u64("RINGWORK_STREAM_RUNS", 5).max(1),
        )
    } else {
        (20_000, 200, 1)
    };
    println!(
        "two-thread streaming, queue size {QUEUE_SIZE}, EVENT_IDX, 1-buffer chains, \
         bound {max_chains} chains or {max_ms} ms, median of {runs} run(s)"
    );
    println!(
        "| ring | batch | chains/s (median) | ns/chain | min..max chains/s | kicks/chain | interrupts/chain |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for format in [RingFormat::Split, RingFormat::Packed] {
        for batch in [1usize, 8, 32] {
            let mut outs: Vec<Outcome> = (0..runs)
                .map(|_| run(format, batch, max_chains, Duration::from_millis(max_ms)))
                .collect();
            outs.sort_by(|a, b| a.per_sec().total_cmp(&b.per_sec()));
            let med = outs[outs.len() / 2];
            println!(
                "| {format} | {batch} | {:.2} M | {:.1} | {:.2}..{:.2} M | {:.3} | {:.3} |",
                med.per_sec() / 1e6,
                1e9 / med.per_sec(),
                outs[0].per_sec() / 1e6,
                outs[outs.len() - 1].per_sec() / 1e6,
                med.kicks as f64 / med.chains as f64,
                med.interrupts as f64 / med.chains as f64,
            );
        }
    }
}
