//! The I/O engine: one thread drives every queue. Each round it refills
//! every queue to `iodepth` requests (one kick per queue per round), then
//! takes every completion; when nothing completed it waits for the
//! backend's call eventfds (or spins, with `--poll`).
//!
//! Buffers are allocated once from the frontend's shared memory (a bump
//! allocator): `iodepth` buffers of `bs` bytes per queue. Tokens are slot
//! numbers; a slot keeps its request's submission time and kind.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use ringwork_driver::blk::{BlkDriver, BlkError, BlkOptions, BlkRequest, BlkStatus, RequestError};
use ringwork_driver::{RingPreference, SetupError as DriverSetupError};
use ringwork_queue::{Dma, RingFormat, Segment};
use ringwork_spec::device_id::VIRTIO_ID_BLOCK;
use ringwork_spec::features::FeatureSet;
use ringwork_transport::driver::{Transport, TransportError};
use ringwork_vhost_user::{SharedMemory, TransportOptions, VhostUserTransport};

use super::cpu::cpu_time;
use super::hist::Histogram;
use super::report::{human_bytes, human_count, BenchResult, OpStats};
use super::{BlkBenchOptions, Rw, SetupFailed};

type Driver = BlkDriver<VhostUserTransport, Arc<SharedMemory>, u32>;

/// How long one reply or one wait for a completion may take.
const TIMEOUT: Duration = Duration::from_secs(10);
/// With `--poll`, how long to spin without a completion before blocking
/// once (which also notices a backend that went away).
const SPIN_LIMIT: Duration = Duration::from_millis(100);
/// Smallest default queue size.
const MIN_QUEUE_SIZE: u16 = 128;

fn setup_err(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(SetupFailed(msg.into()))
}

/// The default queue size: the next power of two >= iodepth, at least 128.
fn default_queue_size(iodepth: u16) -> u16 {
    iodepth
        .max(MIN_QUEUE_SIZE)
        .checked_next_power_of_two()
        .unwrap_or(0x8000)
}

/// xorshift64* (Vigna): small, fast, good enough to pick offsets.
struct Rng(u64);

impl Rng {
    #[inline]
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in 0..n (n > 0), by multiply-shift.
    #[inline]
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }
}

/// Picks the next request: kind and offset.
struct Workload {
    rw: Rw,
    rwmixread: u64,
    blocks: u64,
    sectors_per_block: u64,
    cursor: u64,
    rng: Rng,
}

impl Workload {
    /// (is_write, first sector)
    #[inline]
    fn next(&mut self) -> (bool, u64) {
        let write = match self.rw {
            Rw::Randread | Rw::Read => false,
            Rw::Randwrite | Rw::Write => true,
            Rw::Mixed => self.rng.below(100) >= self.rwmixread,
        };
        let block = if self.rw.random() {
            self.rng.below(self.blocks)
        } else {
            let b = self.cursor;
            self.cursor = if b + 1 >= self.blocks { 0 } else { b + 1 };
            b
        };
        (write, block * self.sectors_per_block)
    }
}

/// Nanoseconds since the start of the run.
struct Clock(Instant);

impl Clock {
    #[inline]
    fn now(&self) -> u64 {
        self.0.elapsed().as_nanos() as u64
    }
}

/// Counts per progress interval.
#[derive(Default)]
struct Tick {
    ios: u64,
    start: u64,
}

/// Everything a run needs once set up.
struct Bench {
    drv: Driver,
    queues: u16,
    iodepth: usize,
    /// Data segments of slot `s`: `segs[s * nseg..][..nseg]`.
    segs: Vec<Segment>,
    nseg: usize,
    /// Free slots per queue.
    free: Vec<Vec<u32>>,
    /// Submission time of each slot's request.
    started: Vec<u64>,
    /// Whether each slot's request is a write.
    writes: Vec<bool>,
    /// Sector of each slot's request (for error messages).
    sectors: Vec<u64>,
    poll: bool,
    /// A ring was full before its queue had `iodepth` requests (chains
    /// without indirect descriptors take several ring entries).
    ring_limited: bool,
}

/// Connects, sets the device up and allocates the buffers.
fn setup(opts: &BlkBenchOptions) -> anyhow::Result<(Bench, Workload, u64)> {
    if opts.bs == 0 || opts.bs % 512 != 0 || opts.bs > u64::from(u32::MAX / 2) {
        return Err(setup_err(format!(
            "--bs {}: must be a non-zero multiple of 512 below 2 GiB",
            opts.bs
        )));
    }
    if opts.iodepth == 0 || opts.queues == 0 {
        return Err(setup_err("--iodepth and --queues must be at least 1"));
    }
    if opts.time.is_zero() {
        return Err(setup_err("--time must be more than 0"));
    }
    if opts.rwmixread > 100 {
        return Err(setup_err("--rwmixread must be 0 to 100"));
    }
    if let Some(pid) = opts.backend_pid {
        cpu_time(Some(pid))
            .map_err(|e| setup_err(format!("--backend-pid {pid}: /proc/{pid}/stat: {e}")))?;
    }
    let queue_size = opts
        .queue_size
        .unwrap_or_else(|| default_queue_size(opts.iodepth));
    if queue_size < opts.iodepth {
        return Err(setup_err(format!(
            "--queue-size {queue_size} is smaller than --iodepth {}",
            opts.iodepth
        )));
    }
    let iodepth = usize::from(opts.iodepth);
    let nq = usize::from(opts.queues);
    let bs = opts.bs as usize;
    let stride = bs.div_ceil(4096) * 4096;
    // Buffers, then per queue: rings, indirect tables (at most 128 of 64
    // entries), request slots (header, status, range table), with slack.
    let memory_size =
        nq * iodepth * stride + nq * (usize::from(queue_size) * 512 + (256 << 10)) + (4 << 20);
    let topts = TransportOptions {
        max_queue_size: queue_size,
        timeout: TIMEOUT,
        memory_size,
        ..TransportOptions::default()
    };
    let path = &opts.socket_path;
    let transport = VhostUserTransport::connect(path, topts)
        .map_err(|e| setup_err(format!("connecting to {}: {e}", path.display())))?;
    if transport.device_type().id() != VIRTIO_ID_BLOCK {
        return Err(setup_err(format!(
            "{} is not a block device (device type {})",
            path.display(),
            transport.device_type().id()
        )));
    }
    if transport.num_queues() < opts.queues {
        return Err(setup_err(format!(
            "--queues {}: the backend has {} queue(s)",
            opts.queues,
            transport.num_queues()
        )));
    }
    let mem = transport.memory().clone();
    let bopts = BlkOptions {
        queues: opts.queues,
        queue_size,
        ring: if opts.packed {
            RingPreference::Packed
        } else {
            RingPreference::Split
        },
        withhold: FeatureSet::EMPTY,
    };
    let drv: Driver = BlkDriver::new(transport, mem.clone(), bopts).map_err(|e| match e {
        BlkError::Setup(DriverSetupError::PackedUnavailable) => {
            setup_err("--packed: the backend does not offer VIRTIO_F_RING_PACKED")
        }
        e => {
            let hint = if queue_size > 256 {
                format!(
                    " (queues of {queue_size} entries: the backend may accept fewer; see --queue-size)"
                )
            } else {
                String::new()
            };
            setup_err(format!("setting up the block device: {e}{hint}"))
        }
    })?;
    if drv.num_queues() < opts.queues {
        return Err(setup_err(format!(
            "--queues {}: the device has {} request queue(s)",
            opts.queues,
            drv.num_queues()
        )));
    }
    if drv.queue_size() < opts.iodepth {
        return Err(setup_err(format!(
            "queues of {} entries cannot hold --iodepth {}",
            drv.queue_size(),
            opts.iodepth
        )));
    }
    let writes = match opts.rw {
        Rw::Randread | Rw::Read => false,
        Rw::Randwrite | Rw::Write => true,
        Rw::Mixed => opts.rwmixread < 100,
    };
    if writes && drv.is_read_only() {
        return Err(setup_err(format!(
            "--rw {}: the device is read-only",
            opts.rw.name()
        )));
    }
    let capacity = drv.config().capacity_bytes();
    let region = opts.size.unwrap_or(capacity);
    if region > capacity {
        return Err(setup_err(format!(
            "--size {region}: the disk has {capacity} bytes"
        )));
    }
    let blocks = region / opts.bs;
    if blocks == 0 {
        return Err(setup_err(format!(
            "the region ({region} bytes) is smaller than --bs {}",
            opts.bs
        )));
    }
    // Segments of at most size_max bytes.
    let seg_len = drv
        .config()
        .size_max
        .map_or(bs, |m| (m as usize).min(bs))
        .max(1);
    let nseg = bs.div_ceil(seg_len);
    if nseg > drv.max_segments() {
        return Err(setup_err(format!(
            "--bs {bs}: needs {nseg} segments of at most {seg_len} bytes, the device takes {}",
            drv.max_segments()
        )));
    }
    let slots = nq * iodepth;
    let buf = mem
        .alloc(slots * stride, 4096)
        .ok_or_else(|| setup_err(format!("allocating {} bytes of buffers", slots * stride)))?;
    let mut segs = Vec::with_capacity(slots * nseg);
    for s in 0..slots {
        let off = s * stride;
        // Writes write this; reads overwrite it.
        buf.slice()
            .fill(off, bs, (s as u8) | 0x81)
            .map_err(|_| anyhow!("buffer fill out of bounds"))?;
        let mut done = 0;
        while done < bs {
            let n = seg_len.min(bs - done);
            segs.push(Segment::new(
                buf.device_addr() + (off + done) as u64,
                n as u32,
            ));
            done += n;
        }
    }
    let free = (0..nq)
        .map(|q| {
            ((q * iodepth) as u32..((q + 1) * iodepth) as u32)
                .rev()
                .collect()
        })
        .collect();
    let seed = 0x9e37_79b9_7f4a_7c15 ^ opts.bs ^ (u64::from(opts.iodepth) << 32);
    let work = Workload {
        rw: opts.rw,
        rwmixread: u64::from(opts.rwmixread),
        blocks,
        sectors_per_block: opts.bs / 512,
        cursor: 0,
        rng: Rng(seed | 1),
    };
    let bench = Bench {
        drv,
        queues: opts.queues,
        iodepth,
        segs,
        nseg,
        free,
        started: vec![0; slots],
        writes: vec![false; slots],
        sectors: vec![0; slots],
        poll: opts.poll,
        ring_limited: false,
    };
    Ok((bench, work, region))
}

/// Measured state of the run.
struct Stats {
    read: Histogram,
    write: Histogram,
    tick: Tick,
}

impl Bench {
    /// Refills every queue to `iodepth` and kicks it.
    fn submit_all(&mut self, work: &mut Workload, now: u64) -> anyhow::Result<()> {
        for q in 0..self.queues {
            let mut added = 0;
            while let Some(slot) = self.free[usize::from(q)].pop() {
                let s = slot as usize;
                let (write, sector) = work.next();
                let data = &self.segs[s * self.nseg..][..self.nseg];
                let req = if write {
                    BlkRequest::Write { sector, data }
                } else {
                    BlkRequest::Read { sector, data }
                };
                match self.drv.submit(q, req, slot) {
                    Ok(()) => {
                        self.started[s] = now;
                        self.writes[s] = write;
                        self.sectors[s] = sector;
                        added += 1;
                    }
                    Err(e) if matches!(e.error, RequestError::QueueFull { .. }) => {
                        // The ring is full (chains without indirect
                        // descriptors take several entries): retry later.
                        self.free[usize::from(q)].push(e.token);
                        self.ring_limited = true;
                        break;
                    }
                    Err(e) => bail!("queue {q}: submitting a request: {}", e.error),
                }
            }
            if added > 0 {
                self.drv
                    .kick(q)
                    .with_context(|| format!("queue {q}: notifying the backend"))?;
            }
        }
        Ok(())
    }

    /// Takes every completion; returns how many. Completions at or after
    /// `count_until` (ns), or before `count_from`, are not recorded.
    fn complete_all(
        &mut self,
        clock: &Clock,
        stats: &mut Stats,
        count_from: u64,
        count_until: u64,
    ) -> anyhow::Result<u64> {
        let mut got = 0;
        for q in 0..self.queues {
            let mut t = None;
            loop {
                let c = match self.drv.poll(q) {
                    Ok(Some(c)) => c,
                    Ok(None) => break,
                    Err(e) => bail!("queue {q}: {e}"),
                };
                let t = *t.get_or_insert_with(|| clock.now());
                let s = c.token as usize;
                if c.status != BlkStatus::Ok {
                    bail!(
                        "queue {q}: {} of {} bytes at sector {} completed with {}",
                        if self.writes[s] { "write" } else { "read" },
                        self.nseg_bytes(),
                        self.sectors[s],
                        c.status
                    );
                }
                if t >= count_from && t < count_until {
                    let lat = t.saturating_sub(self.started[s]);
                    if self.writes[s] {
                        stats.write.record(lat);
                    } else {
                        stats.read.record(lat);
                    }
                    stats.tick.ios += 1;
                }
                self.free[usize::from(q)].push(c.token);
                got += 1;
            }
        }
        Ok(got)
    }

    fn nseg_bytes(&self) -> u64 {
        self.segs[..self.nseg]
            .iter()
            .map(|s| u64::from(s.len))
            .sum()
    }

    fn in_flight(&self) -> usize {
        self.free.iter().map(|f| self.iodepth - f.len()).sum()
    }

    /// Blocks until the backend signals a used buffer (bounded).
    fn wait(&mut self) -> anyhow::Result<()> {
        match self.drv.transport().wait_interrupt() {
            Ok(()) => Ok(()),
            Err(e) => Err(self.backend_failure(e)),
        }
    }

    fn backend_failure(&mut self, e: TransportError) -> anyhow::Error {
        let t = self.drv.transport();
        let why = t.error().map_or_else(|| e.to_string(), str::to_owned);
        let queue_errors: Vec<u16> = (0..self.queues)
            .filter(|&q| t.take_queue_error(q))
            .collect();
        let qe = if queue_errors.is_empty() {
            String::new()
        } else {
            format!("; the backend signalled an error on queue(s) {queue_errors:?}")
        };
        match e {
            TransportError::Unresponsive => anyhow!(
                "the backend completed nothing in {} s{qe}",
                TIMEOUT.as_secs()
            ),
            _ => anyhow!("lost the backend: {why}{qe}"),
        }
    }

    /// Checks the backend's error eventfds.
    fn check_queue_errors(&mut self) -> anyhow::Result<()> {
        for q in 0..self.queues {
            if self.drv.transport().take_queue_error(q) {
                bail!("the backend signalled an error on queue {q} (its err eventfd)");
            }
        }
        Ok(())
    }

    /// After the measured time: takes the requests still in flight
    /// (bounded), then resets the device so the backend stops its rings.
    fn finish(mut self, clock: &Clock, stats: &mut Stats) -> anyhow::Result<()> {
        let deadline = clock.now() + TIMEOUT.as_nanos() as u64;
        while self.in_flight() > 0 {
            if self.complete_all(clock, stats, u64::MAX, 0)? == 0 {
                if clock.now() > deadline {
                    bail!(
                        "{} requests still in flight after the run",
                        self.in_flight()
                    );
                }
                self.wait()?;
            }
        }
        let detached = self.drv.reset();
        if let Err(e) = detached.reset {
            tracing::debug!("device reset after the run: {e}");
        }
        Ok(())
    }
}

fn progress_line(label: &str, ios: u64, nanos: u64, bs: u64) {
    if nanos == 0 {
        return;
    }
    let s = nanos as f64 / 1e9;
    let iops = ios as f64 / s;
    eprintln!(
        "[{label}] {} IOPS, {:.1} MiB/s",
        human_count(iops),
        iops * bs as f64 / f64::from(1 << 20)
    );
}

fn cpu_seconds(pid: Option<u32>) -> anyhow::Result<f64> {
    cpu_time(pid)
        .map(|d| d.as_secs_f64())
        .with_context(|| match pid {
            Some(p) => format!("reading /proc/{p}/stat"),
            None => "reading /proc/self/stat".to_owned(),
        })
}

/// Runs the benchmark described by `opts`.
pub fn run(opts: &BlkBenchOptions, progress: bool) -> anyhow::Result<BenchResult> {
    let (mut b, mut work, region) = setup(opts)?;
    let ring = match b.drv.ring_format() {
        RingFormat::Split => "split",
        RingFormat::Packed => "packed",
    };
    let queue_size = b.drv.queue_size();
    if progress {
        eprintln!(
            "ringwork bench blk: {} {} iodepth {} x {} queue(s) of {}, {ring} rings, {} region, {} waits, {:.1} s{}",
            opts.rw.name(),
            human_bytes(opts.bs),
            opts.iodepth,
            opts.queues,
            queue_size,
            human_bytes(region),
            if opts.poll { "polled" } else { "interrupt" },
            opts.time.as_secs_f64(),
            if opts.ramp.is_zero() {
                String::new()
            } else {
                format!(" after {:.1} s ramp", opts.ramp.as_secs_f64())
            }
        );
    }
    let clock = Clock(Instant::now());
    let ns = |d: Duration| d.as_nanos().min(u128::from(u64::MAX / 4)) as u64;
    let ramp = ns(opts.ramp);
    let mut measuring = ramp == 0;
    let mut measure_start = 0u64;
    let mut end = if measuring { ns(opts.time) } else { ramp };
    let mut stats = Stats {
        read: Histogram::new(),
        write: Histogram::new(),
        tick: Tick::default(),
    };
    let (mut self_cpu0, mut backend_cpu0) = (cpu_seconds(None)?, None);
    if let Some(pid) = opts.backend_pid {
        backend_cpu0 = Some(cpu_seconds(Some(pid))?);
    }
    let second = 1_000_000_000u64;
    let mut next_tick = second;
    let mut idle_since: Option<u64> = None;
    let mut now = clock.now();
    // Completions are recorded when they arrive in [count_from,
    // count_until): during the ramp everything (for the progress lines;
    // discarded when measuring starts), then the measured time.
    let mut count_from = 0u64;
    let mut count_until = if measuring { end } else { u64::MAX };
    loop {
        if now >= end {
            if measuring {
                break;
            }
            // Ramp over: start measuring.
            measuring = true;
            measure_start = now;
            end = now + ns(opts.time);
            count_from = now;
            count_until = end;
            stats.read = Histogram::new();
            stats.write = Histogram::new();
            stats.tick = Tick { ios: 0, start: now };
            next_tick = now + second;
            self_cpu0 = cpu_seconds(None)?;
            if let Some(pid) = opts.backend_pid {
                backend_cpu0 = Some(cpu_seconds(Some(pid))?);
            }
        }
        if now >= next_tick {
            if progress {
                let label = if measuring {
                    format!("{:>3}s", (now - measure_start + second / 2) / second)
                } else {
                    format!("ramp {}s", (now + second / 2) / second)
                };
                progress_line(&label, stats.tick.ios, now - stats.tick.start, opts.bs);
            }
            stats.tick = Tick { ios: 0, start: now };
            next_tick += second;
            b.check_queue_errors()?;
        }
        b.submit_all(&mut work, now)?;
        let got = b.complete_all(&clock, &mut stats, count_from, count_until)?;
        if got == 0 {
            if b.poll {
                let since = *idle_since.get_or_insert(now);
                if now - since > ns(SPIN_LIMIT) {
                    b.wait()?;
                    idle_since = None;
                } else {
                    std::hint::spin_loop();
                }
            } else {
                b.wait()?;
            }
        } else {
            idle_since = None;
        }
        now = clock.now();
    }
    let seconds = (end - measure_start) as f64 / 1e9;
    let frontend_cpu_s = cpu_seconds(None)? - self_cpu0;
    let backend_cpu_s = match (opts.backend_pid, backend_cpu0) {
        (Some(pid), Some(c0)) => Some(cpu_seconds(Some(pid))? - c0),
        _ => None,
    };
    if b.ring_limited {
        eprintln!(
            "ringwork bench blk: warning: queues of {queue_size} entries were full before \
             {} requests were in flight (a larger --queue-size helps if the backend accepts it)",
            opts.iodepth
        );
    }
    let mut after = Stats {
        read: Histogram::new(),
        write: Histogram::new(),
        tick: Tick::default(),
    };
    b.finish(&clock, &mut after)?;
    let mut total = stats.read.clone();
    total.merge(&stats.write);
    let mixed = opts.rw == Rw::Mixed;
    Ok(BenchResult {
        rw: opts.rw,
        bs: opts.bs,
        iodepth: opts.iodepth,
        queues: opts.queues,
        queue_size,
        ring,
        wait: if opts.poll { "poll" } else { "interrupt" },
        region_bytes: region,
        seconds,
        total: OpStats::from_hist(&total, opts.bs),
        read: mixed.then(|| OpStats::from_hist(&stats.read, opts.bs)),
        write: mixed.then(|| OpStats::from_hist(&stats.write, opts.bs)),
        frontend_cpu_s,
        backend_cpu_s,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_sizes() {
        assert_eq!(default_queue_size(1), 128);
        assert_eq!(default_queue_size(128), 128);
        assert_eq!(default_queue_size(129), 256);
        assert_eq!(default_queue_size(1024), 1024);
    }

    #[test]
    fn offsets_stay_in_the_region() {
        for rw in [Rw::Randread, Rw::Write, Rw::Mixed] {
            let mut w = Workload {
                rw,
                rwmixread: 70,
                blocks: 10,
                sectors_per_block: 8,
                cursor: 0,
                rng: Rng(12345),
            };
            let mut writes = 0;
            let mut seen = [false; 10];
            for _ in 0..10_000 {
                let (write, sector) = w.next();
                assert_eq!(sector % 8, 0);
                assert!(sector < 80);
                seen[(sector / 8) as usize] = true;
                writes += u32::from(write);
            }
            assert!(seen.iter().all(|&s| s), "{rw:?}");
            match rw {
                Rw::Randread => assert_eq!(writes, 0),
                Rw::Write => assert_eq!(writes, 10_000),
                _ => assert!((2500..3500).contains(&writes), "{writes}"),
            }
        }
    }
}
