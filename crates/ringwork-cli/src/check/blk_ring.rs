//! The block I/O checks of one ring format ([`ring_suite`]): pattern
//! integrity at the start, middle and end of the disk, multi-segment
//! requests, many requests in flight, every request queue, and runs
//! without EVENT_IDX and without INDIRECT_DESC. On a read-only device the
//! same checks compare reads with each other (different queues,
//! segmentation, concurrency) instead of writing.

use ringwork_driver::blk::{BlkCompletion, BlkRequest, BlkStatus};
use ringwork_driver::RingPreference;
use ringwork_queue::Segment;
use ringwork_spec::features::{
    FeatureSet, VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC, VIRTIO_F_RING_PACKED,
};

use super::blk_io::{open, options, Io, HALF};
use super::common::{compare, first_problem, Ctx};
use super::report::Outcome;

/// Requests in flight at once (at most).
const IN_FLIGHT: usize = 64;

impl Io {
    /// Pattern integrity of one chunk at `sector` on queue `q`: write,
    /// read back, compare (restoring the chunk). Read-only: two reads
    /// agree.
    pub fn rw_chunk(&mut self, q: u16, sector: u64, tag: u64) -> anyhow::Result<Outcome> {
        let len = self.chunk_bytes();
        let sizes = self.pieces(len);
        if self.read_only {
            let a = self.read_segs(q, sector, &sizes)?;
            let b = self.read_segs(q, sector, &sizes)?;
            return Ok(compare(
                &format!("two reads at sector {sector} differ"),
                &b,
                &a,
            ));
        }
        self.preserve(sector, self.chunk, |io| {
            let data = io.pattern(tag, sector, len);
            io.write_segs(q, sector, &data, &sizes)?;
            let back = io.read_segs(q, sector, &sizes)?;
            Ok(compare(
                &format!("data read back at sector {sector}"),
                &back,
                &data,
            ))
        })
    }

    /// A write and a read of two chunks, each in several unequal segments
    /// placed apart, segmented differently for the read.
    pub fn multi_segment(&mut self, sector: u64) -> anyhow::Result<Outcome> {
        let len = 2 * self.chunk_bytes();
        let max_segs = self.d.max_segments();
        let size_max = self.d.config().size_max.map_or(usize::MAX, |m| m as usize);
        let unit = len / 16;
        let mut w: Vec<usize> = [1, 3, 2, 4, 1, 5].iter().map(|&u| u * unit).collect();
        if w.len() > max_segs || w.iter().any(|&s| s > size_max) {
            w = vec![unit; 16];
            if w.len() > max_segs || unit > size_max {
                return Ok(Outcome::Skip(format!(
                    "seg_max {max_segs} / size_max {size_max} leave no room for a multi-segment request"
                )));
            }
        }
        let r: Vec<usize> = w.iter().rev().copied().collect();
        if self.read_only {
            let a = self.read_whole(0, sector, len)?;
            let b = self.read_segs(0, sector, &w)?;
            return Ok(compare(
                "multi-segment read differs from single-segment read",
                &b,
                &a,
            ));
        }
        self.preserve(sector, 2 * self.chunk, |io| {
            let data = io.pattern(2, sector, len);
            io.write_segs(0, sector, &data, &w)?;
            let back = io.read_segs(0, sector, &r)?;
            Ok(compare(
                &format!("data read back at sector {sector}"),
                &back,
                &data,
            ))
        })
    }

    /// How many requests this session can have in flight on one queue.
    pub fn in_flight_limit(&self) -> usize {
        let qs = usize::from(self.d.queue_size());
        let per = if self.d.features().contains(VIRTIO_F_INDIRECT_DESC) {
            qs
        } else {
            qs / 3
        };
        IN_FLIGHT
            .min(per)
            .min(HALF / self.chunk_bytes())
            .min((self.capacity / 4 / self.chunk) as usize)
    }

    /// `n` chunk writes in flight at once on queue 0, then `n` reads, each
    /// checked against its own pattern; tokens must each come back once.
    pub fn in_flight(&mut self, n: usize) -> anyhow::Result<Outcome> {
        if n < 2 {
            return Ok(Outcome::Skip(
                "the queue or the disk is too small for concurrent requests".into(),
            ));
        }
        let base = (self.capacity / 4) / self.chunk * self.chunk;
        let cb = self.chunk_bytes();
        let sectors = n as u64 * self.chunk;
        self.preserve(base, sectors, |io| {
            let mut expected = Vec::with_capacity(n);
            if io.read_only {
                for i in 0..n {
                    expected.push(io.read_whole(0, base + i as u64 * io.chunk, cb)?);
                }
            } else {
                let mut segs = Vec::with_capacity(n);
                for i in 0..n {
                    let sector = base + i as u64 * io.chunk;
                    let data = io.pattern(3, sector, cb);
                    io.put(i * cb, &data)?;
                    segs.push([io.seg(i * cb, cb)]);
                    expected.push(data);
                }
                let reqs: Vec<BlkRequest<'_>> = segs
                    .iter()
                    .enumerate()
                    .map(|(i, s)| BlkRequest::Write {
                        sector: base + i as u64 * io.chunk,
                        data: s,
                    })
                    .collect();
                let done = io.exec_many(0, &reqs)?;
                check_tokens(&done, n, "write")?;
            }
            io.put(HALF, &vec![0; n * cb])?;
            let segs: Vec<[Segment; 1]> = (0..n).map(|i| [io.seg(HALF + i * cb, cb)]).collect();
            let reqs: Vec<BlkRequest<'_>> = segs
                .iter()
                .enumerate()
                .map(|(i, s)| BlkRequest::Read {
                    sector: base + i as u64 * io.chunk,
                    data: s,
                })
                .collect();
            let done = io.exec_many(0, &reqs)?;
            check_tokens(&done, n, "read")?;
            let mut outcomes = Vec::new();
            for (i, want) in expected.iter().enumerate() {
                let got = io.get(HALF + i * cb, cb)?;
                outcomes.push(compare(
                    &format!("request {i} of {n} (sector {})", base + i as u64 * io.chunk),
                    &got,
                    want,
                ));
            }
            Ok(first_problem(outcomes))
        })
    }

    /// Every request queue: queue `q` writes its own chunk, queue `q + 1`
    /// reads it back (read-only: every queue reads the same chunk).
    pub fn all_queues(&mut self) -> anyhow::Result<Outcome> {
        let nq = self.d.num_queues();
        if nq < 2 {
            return Ok(Outcome::Skip(
                "one request queue (no VIRTIO_BLK_F_MQ, or num_queues 1)".into(),
            ));
        }
        let cb = self.chunk_bytes();
        let base = (self.capacity / 8) / self.chunk * self.chunk;
        if base + u64::from(nq) * self.chunk > self.capacity {
            return Ok(Outcome::Skip("the disk is too small".into()));
        }
        if self.read_only {
            let first = self.read_whole(0, base, cb)?;
            let mut outcomes = Vec::new();
            for q in 1..nq {
                let got = self.read_whole(q, base, cb)?;
                outcomes.push(compare(
                    &format!("read on queue {q} differs from queue 0"),
                    &got,
                    &first,
                ));
            }
            return Ok(first_problem(outcomes));
        }
        self.preserve(base, u64::from(nq) * self.chunk, |io| {
            let mut outcomes = Vec::new();
            for q in 0..nq {
                let sector = base + u64::from(q) * io.chunk;
                let data = io.pattern(4, sector, cb);
                io.write_whole(q, sector, &data)?;
            }
            for q in 0..nq {
                let sector = base + u64::from(q) * io.chunk;
                let data = io.pattern(4, sector, cb);
                let rq = (q + 1) % nq;
                let got = io.read_whole(rq, sector, cb)?;
                outcomes.push(compare(
                    &format!("written on queue {q}, read on queue {rq}"),
                    &got,
                    &data,
                ));
            }
            Ok(first_problem(outcomes))
        })
    }
}

/// Every token `0..n` came back exactly once.
fn check_tokens(done: &[BlkCompletion<usize>], n: usize, what: &str) -> anyhow::Result<()> {
    let mut seen = vec![false; n];
    for c in done {
        if c.status != BlkStatus::Ok {
            anyhow::bail!("{what} {} of {n} completed with {}", c.token, c.status);
        }
        match seen.get_mut(c.token) {
            Some(s) if !*s => *s = true,
            _ => anyhow::bail!("{what} {} completed twice", c.token),
        }
    }
    Ok(())
}

/// A ring format the suite runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fmt {
    Split,
    Packed,
}

impl Fmt {
    fn name(self) -> &'static str {
        match self {
            Fmt::Split => "split",
            Fmt::Packed => "packed",
        }
    }
    fn pref(self) -> RingPreference {
        match self {
            Fmt::Split => RingPreference::Split,
            Fmt::Packed => RingPreference::Packed,
        }
    }
}

/// The checks of one ring format, with their sections and descriptions.
fn ring_checks(fmt: Fmt) -> [(&'static str, &'static str, &'static str); 9] {
    let split = fmt == Fmt::Split;
    [
        (
            "init",
            if split { "§2.7" } else { "§2.8" },
            "driver initialization with these virtqueues on every request queue (§3.1.1)",
        ),
        (
            "rw-start",
            "§5.2.6",
            "write/read pattern integrity of the first sectors",
        ),
        (
            "rw-middle",
            "§5.2.6",
            "write/read pattern integrity in the middle of the disk",
        ),
        (
            "rw-end",
            "§5.2.6",
            "write/read pattern integrity of the last sectors (up to capacity)",
        ),
        (
            "multi-segment",
            if split { "§2.7.4.1" } else { "§2.8.18" },
            "requests split into several unequal, scattered segments",
        ),
        (
            "in-flight",
            "§5.2.6",
            "many requests in flight at once, completed in any order, each exactly once",
        ),
        (
            "all-queues",
            "§5.2.2",
            "every request queue serves I/O (written on one queue, read on the next)",
        ),
        (
            "without-event-idx",
            if split { "§2.7.7" } else { "§2.8.10" },
            "I/O with VIRTIO_F_EVENT_IDX not negotiated (flag-based notification suppression)",
        ),
        (
            "without-indirect",
            if split { "§2.7.5.3" } else { "§2.8.7" },
            "I/O with VIRTIO_F_INDIRECT_DESC not negotiated (direct descriptor chains)",
        ),
    ]
}

/// Runs the I/O checks in `fmt` (`preferred`: the format `--quick` keeps).
pub(crate) fn ring_suite(ctx: &mut Ctx, fmt: Fmt, offered: FeatureSet, preferred: Fmt) {
    let checks = ring_checks(fmt);
    let id = |name: &str| format!("blk.{}.{name}", fmt.name());
    let skip_all = |ctx: &mut Ctx, from: usize, why: String| {
        for &(name, sec, desc) in &checks[from..] {
            ctx.record(id(name), sec, desc, Ok(Outcome::Skip(why.clone())));
        }
    };
    if fmt == Fmt::Packed && !offered.contains(VIRTIO_F_RING_PACKED) {
        return skip_all(ctx, 0, "VIRTIO_F_RING_PACKED is not offered".into());
    }
    if ctx.opts.quick && fmt != preferred {
        return skip_all(ctx, 0, "--quick: one ring format only".into());
    }
    let when = format!("{} session", fmt.name());
    let (name0, sec0, desc0) = checks[0];
    let mut io = match open(ctx, options(fmt.pref(), FeatureSet::EMPTY)) {
        Ok(io) => {
            ctx.record(id(name0), sec0, desc0, Ok(Outcome::Pass));
            io
        }
        Err(e) => {
            ctx.record(id(name0), sec0, desc0, Err(e));
            skip_all(ctx, 1, "not run: initialization failed".into());
            return;
        }
    };
    ctx.note(format!(
        "{when}: {} request queue(s) of {} entries, features negotiated: {}",
        io.d.num_queues(),
        io.d.queue_size(),
        super::common::feature_names(io.d.features(), super::blk::FEATURE_NAMES)
    ));
    if io.too_small() {
        let why = format!("the disk is too small (under {} sectors)", 64 * io.chunk);
        let _ = io.finish(ctx, &when);
        skip_all(ctx, 1, why);
        return;
    }
    let (cap, chunk, mid) = (io.capacity, io.chunk, io.middle());
    let last_q = io.d.num_queues().saturating_sub(1);
    let results = [
        io.rw_chunk(0, 0, 10),
        io.rw_chunk(0, mid, 11),
        io.rw_chunk(last_q, cap - chunk, 12),
        io.multi_segment(mid + 2 * chunk),
        {
            let n = io.in_flight_limit();
            io.in_flight(n)
        },
        io.all_queues(),
    ];
    for (r, &(name, sec, desc)) in results.into_iter().zip(&checks[1..7]) {
        ctx.record(id(name), sec, desc, r);
    }
    let _ = io.finish(ctx, &when);
    for (bit, fname, i) in [
        (VIRTIO_F_EVENT_IDX, "VIRTIO_F_EVENT_IDX", 7),
        (VIRTIO_F_INDIRECT_DESC, "VIRTIO_F_INDIRECT_DESC", 8),
    ] {
        let (name, sec, desc) = checks[i];
        let r = if !offered.contains(bit) {
            Ok(Outcome::Skip(format!(
                "{fname} is not offered: the runs above already went without it"
            )))
        } else if ctx.opts.quick {
            Ok(Outcome::Skip("--quick: no feature-variant runs".into()))
        } else {
            variant(ctx, fmt, bit)
        };
        ctx.record(id(name), sec, desc, r);
    }
}

/// A session with `bit` withheld: pattern integrity, a multi-segment
/// request and requests in flight.
fn variant(ctx: &mut Ctx, fmt: Fmt, bit: u32) -> anyhow::Result<Outcome> {
    let mut io = open(ctx, options(fmt.pref(), FeatureSet::from_bits(&[bit])))?;
    if io.d.features().contains(bit) {
        anyhow::bail!("the feature was negotiated although the driver withheld it");
    }
    let r = (|| {
        let mid = io.middle();
        let a = io.rw_chunk(0, mid, 20)?;
        let b = io.multi_segment(mid + 2 * io.chunk)?;
        let n = io.in_flight_limit().min(16);
        let c = io.in_flight(n)?;
        Ok(first_problem([a, b, c]))
    })();
    let when = format!("{} session without feature bit {bit}", fmt.name());
    let _ = io.finish(ctx, &when);
    r
}
