//! The traditional memory balloon driver (VIRTIO 1.4 §5.5), for programs
//! that drive a device the way a guest would: the balloon's pages are this
//! driver's own DMA memory, allocated in chunks ([`CHUNK_PAGES`] pages) as
//! the device asks for more and given back as it asks for less.
//!
//! Queues (§5.5.2), numbered densely as Linux and QEMU do
//! ([`BalloonQueues`]): `inflateq`, `deflateq`, then `statsq` with
//! [`BalloonOptions::stats`], `reporting_vq` with
//! [`BalloonOptions::reporting`]. Free page hinting and page poisoning are
//! not offered to the device (the driver does not accept them, §5.5.3.1).
//! `VIRTIO_BALLOON_F_MUST_TELL_HOST` is accepted when offered (§5.5.3.1
//! SHOULD); whether or not it is, pages are used again only after the
//! device acknowledged their deflation.
//!
//! The core is non-blocking: [`BalloonDriver::step`] collects the device's
//! acknowledgement of the batch in flight, updates `actual` in the
//! configuration space when the count changed (§5.5.6.1 MUST), and sends
//! the next batch of at most [`PFN_BATCH`] page frame numbers toward
//! `num_pages` (one batch in flight at a time, so no page is deflated
//! before its inflation was acknowledged). [`BalloonDriver::reach_target`]
//! repeats that until the balloon holds `num_pages` pages. Statistics
//! (§5.5.6.3): the tags are chosen once, a first buffer is made available
//! at setup, and the device asks for fresh values by using it
//! ([`BalloonDriver::stats_requested`], [`BalloonDriver::provide_stats`]).
//! Free page reporting (§5.5.6.7): [`BalloonDriver::report_free`] hands
//! the device ranges of the caller's free memory, which the caller must
//! treat as uninitialized once acknowledged ([`BalloonDriver::poll_reported`]).
//!
//! # Trust and panic contract
//! The device is hostile: `num_pages` may be anything (the balloon grows
//! only as far as the allocator lets it: [`BalloonError::OutOfPages`]),
//! used ids are checked by the queues, and every wait is bounded. Nothing
//! here panics on device input.

mod error;
mod pages;

pub use error::BalloonError;
pub use pages::CHUNK_PAGES;

use alloc::vec::Vec;

use error::queue_err;
use pages::{PagePool, Run};
use ringwork_queue::{AddError, Dma, DriverQueue, RingFormat, Segment, UsedError};
use ringwork_spec::balloon::{
    BalloonQueues, BALLOON_CONFIG_ACTUAL_OFFSET, BALLOON_PFN_SIZE, VIRTIO_BALLOON_F_DEFLATE_ON_OOM,
    VIRTIO_BALLOON_F_MUST_TELL_HOST, VIRTIO_BALLOON_F_PAGE_REPORTING, VIRTIO_BALLOON_F_STATS_VQ,
    VIRTIO_BALLOON_PAGE_SIZE,
};
use ringwork_spec::device_id::VIRTIO_ID_BALLOON;
use ringwork_spec::features::FeatureSet;
use ringwork_transport::driver::{self, Transport};

use crate::common::{
    self, check_device, kick, pop_or_arm, ring_format, ring_supports, set_failed, wait_for,
    Detached, DmaRegion, IrqState, LeakOnDrop, RingPreference, SetupError,
};

/// Page frame numbers per inflate or deflate buffer, at most (as Linux).
pub const PFN_BATCH: u32 = 256;

/// Bytes of one statistic entry (`struct virtio_balloon_stat`: le16 tag,
/// le64 value, packed).
pub const STAT_ENTRY_SIZE: usize = 10;

/// How to set the driver up.
#[derive(Debug, Clone)]
pub struct BalloonOptions {
    /// Queue size asked for (clamped to the device's maximum).
    pub queue_size: u16,
    /// Ring format.
    pub ring: RingPreference,
    /// Statistic tags (`VIRTIO_BALLOON_S_*`) this driver will supply;
    /// non-empty accepts `VIRTIO_BALLOON_F_STATS_VQ`.
    pub stats: Vec<u16>,
    /// Accept `VIRTIO_BALLOON_F_DEFLATE_ON_OOM`.
    pub deflate_on_oom: bool,
    /// Accept `VIRTIO_BALLOON_F_PAGE_REPORTING`.
    pub reporting: bool,
}

impl Default for BalloonOptions {
    fn default() -> Self {
        Self {
            queue_size: 64,
            ring: RingPreference::Auto,
            stats: Vec::new(),
            deflate_on_oom: false,
            reporting: false,
        }
    }
}

/// Where the balloon stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// `num_pages`: what the device asks for.
    pub target: u32,
    /// Pages in the balloon (acknowledged by the device).
    pub actual: u32,
    /// A batch is waiting for the device's acknowledgement.
    pub busy: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dir {
    Inflate,
    Deflate,
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    dir: Dir,
    run: Run,
}

/// What the device may access.
struct State<D: Dma> {
    inflate: Option<DriverQueue<D, u16>>,
    deflate: Option<DriverQueue<D, u16>>,
    stats: Option<DriverQueue<D, u16>>,
    reporting: Option<DriverQueue<D, u32>>,
    pfns: Option<DmaRegion<D>>,
    stats_buf: Option<DmaRegion<D>>,
    pool: Option<PagePool<D>>,
}

impl<D: Dma> Default for State<D> {
    fn default() -> Self {
        Self {
            inflate: None,
            deflate: None,
            stats: None,
            reporting: None,
            pfns: None,
            stats_buf: None,
            pool: None,
        }
    }
}

/// A virtio memory balloon driver. See the [module docs](self).
///
/// Dropping the driver without [`BalloonDriver::reset`] leaves the device
/// running; the balloon's pages and the queues are then leaked.
pub struct BalloonDriver<T: Transport, D: Dma + Clone> {
    transport: T,
    dma: D,
    features: FeatureSet,
    format: RingFormat,
    queues: BalloonQueues,
    state: LeakOnDrop<State<D>>,
    pending: Option<Pending>,
    stats_tags: Vec<u16>,
    stats_out: bool,
    reports: u32,
    written_actual: Option<u32>,
    irq: IrqState,
}

impl<T: Transport, D: Dma + Clone> core::fmt::Debug for BalloonDriver<T, D> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("BalloonDriver")
            .field("features", &self.features)
            .field("format", &self.format)
            .field("actual", &self.actual())
            .finish_non_exhaustive()
    }
}

fn check_tags(tags: &[u16]) -> Result<(), SetupError> {
    for (i, t) in tags.iter().enumerate() {
        if tags[..i].contains(t) {
            return Err(SetupError::BadOption {
                option: "stats",
                reason: "a statistic tag is repeated",
            });
        }
    }
    Ok(())
}

impl<T: Transport, D: Dma + Clone> BalloonDriver<T, D> {
    /// Initializes the device (VIRTIO 1.4 §3.1.1, §5.5.5). On failure the
    /// device is left with FAILED set.
    pub fn new(mut transport: T, dma: D, opts: BalloonOptions) -> Result<Self, BalloonError> {
        check_device(&transport, VIRTIO_ID_BALLOON)?;
        check_tags(&opts.stats)?;
        let mut supports = ring_supports(opts.ring);
        supports.insert(VIRTIO_BALLOON_F_MUST_TELL_HOST);
        if !opts.stats.is_empty() {
            supports.insert(VIRTIO_BALLOON_F_STATS_VQ);
        }
        if opts.deflate_on_oom {
            supports.insert(VIRTIO_BALLOON_F_DEFLATE_ON_OOM);
        }
        if opts.reporting {
            supports.insert(VIRTIO_BALLOON_F_PAGE_REPORTING);
        }
        let features = driver::negotiate(&mut transport, supports, &[])?;
        let queues = BalloonQueues::from_features(|b| features.contains(b));
        let mut state = LeakOnDrop::new(State::default());
        let setup = (|| {
            let (format, qf) = ring_format(&transport, features, opts.ring)?;
            let make = |t: &mut T, index: u16| {
                let size = common::queue_size(t, index, opts.queue_size, format)?;
                common::make_queue(t, dma.clone(), index, size, format, qf, None)
            };
            state.inflate = Some(make(&mut transport, queues.inflateq)?);
            state.deflate = Some(make(&mut transport, queues.deflateq)?);
            if let Some(i) = queues.statsq {
                state.stats = Some(make(&mut transport, i)?);
                let len = opts.stats.len() * STAT_ENTRY_SIZE;
                state.stats_buf = Some(DmaRegion::new(dma.clone(), len, 8)?);
            }
            if let Some(i) = queues.reporting_vq {
                let size = common::queue_size(&mut transport, i, opts.queue_size, format)?;
                state.reporting = Some(common::make_queue(
                    &mut transport,
                    dma.clone(),
                    i,
                    size,
                    format,
                    qf,
                    None,
                )?);
            }
            let len = PFN_BATCH as usize * BALLOON_PFN_SIZE;
            state.pfns = Some(DmaRegion::new(dma.clone(), len, 8)?);
            state.pool = Some(PagePool::new(dma.clone()));
            Ok::<_, SetupError>(format)
        })();
        let format = match setup {
            Ok(f) => f,
            Err(e) => {
                set_failed(&mut transport);
                return Err(e.into());
            }
        };
        driver::set_driver_ok(&mut transport);
        let stats_tags = if queues.statsq.is_some() {
            opts.stats
        } else {
            Vec::new()
        };
        let mut d = Self {
            transport,
            dma,
            features,
            format,
            queues,
            state,
            pending: None,
            stats_tags,
            stats_out: false,
            reports: 0,
            written_actual: None,
            irq: IrqState::default(),
        };
        if d.queues.statsq.is_some() {
            // §5.5.6.3.1: a first buffer, initialized, once the device is
            // running (the device ignores its values).
            let zeros: Vec<(u16, u64)> = d.stats_tags.iter().map(|&t| (t, 0)).collect();
            d.provide_stats(&zeros)?;
        }
        Ok(d)
    }

    /// The negotiated features.
    pub fn features(&self) -> FeatureSet {
        self.features
    }

    /// The ring format in use.
    pub fn ring_format(&self) -> RingFormat {
        self.format
    }

    /// The queue numbering in use.
    pub fn queues(&self) -> BalloonQueues {
        self.queues
    }

    /// The transport.
    pub fn transport(&mut self) -> &mut T {
        &mut self.transport
    }

    /// The DMA allocator.
    pub fn dma(&self) -> &D {
        &self.dma
    }

    /// `num_pages`: the pages the device wants in the balloon.
    pub fn target(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.transport.read_config(0, &mut b);
        // Little-endian through every interface (§5.5.4).
        u32::from_le_bytes(b)
    }

    /// Pages in the balloon, acknowledged by the device.
    pub fn actual(&self) -> u32 {
        self.state.pool.as_ref().map_or(0, PagePool::pages)
    }

    fn progress(&mut self) -> Progress {
        Progress {
            target: self.target(),
            actual: self.actual(),
            busy: self.pending.is_some(),
        }
    }

    /// Collects the acknowledgement of the batch in flight (non-blocking),
    /// then sends the next batch toward the target. See the
    /// [module docs](self).
    pub fn step(&mut self) -> Result<Progress, BalloonError> {
        self.collect()?;
        let p = self.progress();
        if !p.busy {
            if p.target > p.actual {
                self.submit(Dir::Inflate, p.target - p.actual)?;
            } else if p.target < p.actual {
                self.submit(Dir::Deflate, p.actual - p.target)?;
            }
        }
        Ok(self.progress())
    }

    /// Inflates or deflates until the balloon holds `num_pages` pages
    /// (read again after every batch, so a target changed meanwhile is
    /// followed). Returns the pages in the balloon.
    pub fn reach_target(&mut self) -> Result<u32, BalloonError> {
        // A step sends nothing only when the target moved under it; a
        // device that keeps moving it without waiting gets a timeout, not
        // a spinning driver.
        let mut idle = 0;
        loop {
            let p = self.step()?;
            if !p.busy {
                if p.actual == p.target {
                    return Ok(p.actual);
                }
                idle += 1;
                if idle > 64 {
                    return Err(BalloonError::Timeout);
                }
                continue;
            }
            idle = 0;
            self.wait_pending()?;
        }
    }

    /// Gives the device up to `pages` pages more than it holds, whatever
    /// the target (§5.5.6.1: the driver MAY supply pages when `num_pages`
    /// is at least `actual`), waiting for its acknowledgements. Returns
    /// the pages added (fewer when the allocator runs out).
    /// [`Self::step`] takes pages above the target back.
    pub fn inflate(&mut self, pages: u32) -> Result<u32, BalloonError> {
        if self.pending.is_some() {
            self.wait_pending()?;
        }
        let start = self.actual();
        let goal = start.saturating_add(pages);
        while self.actual() < goal {
            match self.submit(Dir::Inflate, goal - self.actual()) {
                Ok(()) => {}
                Err(BalloonError::OutOfPages { .. }) => break,
                Err(e) => return Err(e),
            }
            self.wait_pending()?;
        }
        Ok(self.actual() - start)
    }

    /// Takes up to `pages` pages back from the balloon below the target
    /// (with `VIRTIO_BALLOON_F_DEFLATE_ON_OOM`, §5.5.6.1: when the memory
    /// is needed), waiting for the device's acknowledgements. Returns the
    /// pages taken back. [`Self::step`] would inflate them again: the
    /// caller decides when to resume following the target.
    pub fn deflate_on_oom(&mut self, pages: u32) -> Result<u32, BalloonError> {
        if !self.features.contains(VIRTIO_BALLOON_F_DEFLATE_ON_OOM) {
            return Err(BalloonError::NotNegotiated(
                "VIRTIO_BALLOON_F_DEFLATE_ON_OOM",
            ));
        }
        if self.pending.is_some() {
            self.wait_pending()?;
        }
        let start = self.actual();
        let goal = start.saturating_sub(pages);
        while self.actual() > goal {
            self.submit(Dir::Deflate, self.actual() - goal)?;
            self.wait_pending()?;
        }
        Ok(start - self.actual())
    }

    /// Sends a batch of up to `n` pages (at most [`PFN_BATCH`]).
    fn submit(&mut self, dir: Dir, n: u32) -> Result<(), BalloonError> {
        let n = n.min(PFN_BATCH);
        let actual = self.actual();
        let target = self.target();
        let st = &mut *self.state;
        let (Some(pool), Some(pfns)) = (st.pool.as_mut(), st.pfns.as_ref()) else {
            return Err(queue_err("inflateq")(UsedError::Broken));
        };
        let run = match dir {
            Dir::Inflate => pool.next_inflate(n),
            Dir::Deflate => pool.next_deflate(n),
        };
        let Some(run) = run.filter(|r| r.count > 0) else {
            return match dir {
                Dir::Inflate => Err(BalloonError::OutOfPages { actual, target }),
                Dir::Deflate => Ok(()),
            };
        };
        let Some(list) = pool.pfns(run) else {
            return Err(BalloonError::OutOfPages { actual, target });
        };
        let mut bytes = [0u8; PFN_BATCH as usize * BALLOON_PFN_SIZE];
        for (i, pfn) in list.enumerate() {
            bytes[i * 4..i * 4 + 4].copy_from_slice(&pfn.to_le_bytes());
        }
        let len = run.count as usize * BALLOON_PFN_SIZE;
        pfns.slice()
            .write_bytes(0, &bytes[..len])
            .map_err(|e| queue_err("inflateq")(UsedError::Memory(e)))?;
        let seg = Segment::new(pfns.addr(0), len as u32);
        let (q, name) = queue(st, dir);
        let Some(q) = q else {
            return Err(queue_err(name)(UsedError::Broken));
        };
        q.add(&[seg], &[], 0).map_err(|r| match r.error {
            AddError::Broken => queue_err(name)(UsedError::Broken),
            _ => BalloonError::QueueFull(name),
        })?;
        kick(&mut self.transport, q).map_err(queue_err(name))?;
        self.pending = Some(Pending { dir, run });
        Ok(())
    }

    /// Applies the acknowledgement of the batch in flight, if it came.
    fn collect(&mut self) -> Result<bool, BalloonError> {
        let Some(p) = self.pending else {
            return Ok(false);
        };
        if !acknowledged(&mut self.state, p)? {
            return Ok(false);
        }
        self.finish(p);
        Ok(true)
    }

    /// The batch `p` was acknowledged: the pool and `actual` follow.
    fn finish(&mut self, p: Pending) {
        self.pending = None;
        if let Some(pool) = self.state.pool.as_mut() {
            match p.dir {
                Dir::Inflate => pool.inflated(p.run),
                Dir::Deflate => pool.deflated(p.run),
            }
        }
        let actual = self.actual();
        if self.written_actual != Some(actual) {
            self.transport
                .write_config(BALLOON_CONFIG_ACTUAL_OFFSET, &actual.to_le_bytes());
            self.written_actual = Some(actual);
        }
    }

    /// Waits (bounded) for the batch in flight to be acknowledged.
    fn wait_pending(&mut self) -> Result<(), BalloonError> {
        let Some(p) = self.pending else {
            return Ok(());
        };
        let Self {
            transport,
            state,
            irq,
            ..
        } = self;
        wait_for(transport, irq, || {
            acknowledged(state, p).map(|done| done.then_some(()))
        })?;
        self.finish(p);
        Ok(())
    }

    /// The statistic tags chosen at setup (empty without the stats queue).
    pub fn stats_tags(&self) -> &[u16] {
        &self.stats_tags
    }

    /// Whether the device asked for fresh statistics (it used the buffer
    /// the driver gave it). Non-blocking.
    pub fn stats_requested(&mut self) -> Result<bool, BalloonError> {
        let Some(q) = self.state.stats.as_mut() else {
            return Err(BalloonError::NotNegotiated("VIRTIO_BALLOON_F_STATS_VQ"));
        };
        if !self.stats_out {
            return Ok(true);
        }
        if pop_or_arm(q).map_err(queue_err("statsq"))?.is_some() {
            self.stats_out = false;
            return Ok(true);
        }
        Ok(false)
    }

    /// Gives the device statistics, one value for each tag chosen at setup
    /// (in any order), after it asked for them (§5.5.6.3.1: at most one
    /// buffer in the queue; the same subset every time).
    pub fn provide_stats(&mut self, stats: &[(u16, u64)]) -> Result<(), BalloonError> {
        let st = &mut *self.state;
        let (Some(q), Some(buf)) = (st.stats.as_mut(), st.stats_buf.as_ref()) else {
            return Err(BalloonError::NotNegotiated("VIRTIO_BALLOON_F_STATS_VQ"));
        };
        if self.stats_out {
            return Err(BalloonError::StatsNotRequested);
        }
        for (i, (tag, _)) in stats.iter().enumerate() {
            if !self.stats_tags.contains(tag) {
                return Err(BalloonError::StatsMismatch {
                    tag: *tag,
                    what: "not one of the tags chosen at setup",
                });
            }
            if stats[..i].iter().any(|(t, _)| t == tag) {
                return Err(BalloonError::StatsMismatch {
                    tag: *tag,
                    what: "repeated",
                });
            }
        }
        let mut bytes = Vec::with_capacity(self.stats_tags.len() * STAT_ENTRY_SIZE);
        for &tag in &self.stats_tags {
            let Some(&(_, v)) = stats.iter().find(|(t, _)| *t == tag) else {
                return Err(BalloonError::StatsMismatch {
                    tag,
                    what: "missing",
                });
            };
            bytes.extend_from_slice(&tag.to_le_bytes());
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        buf.slice()
            .write_bytes(0, &bytes)
            .map_err(|e| queue_err("statsq")(UsedError::Memory(e)))?;
        let seg = Segment::new(buf.addr(0), bytes.len() as u32);
        q.add(&[seg], &[], 0).map_err(|r| match r.error {
            AddError::Broken => queue_err("statsq")(UsedError::Broken),
            _ => BalloonError::QueueFull("statsq"),
        })?;
        kick(&mut self.transport, q).map_err(queue_err("statsq"))?;
        self.stats_out = true;
        Ok(())
    }

    /// Reports free memory (§5.5.6.7): `ranges` of whole 4 KiB pages the
    /// caller does not use; `token` comes back from
    /// [`Self::poll_reported`] once the device acknowledged them. Until
    /// then the caller must not touch them, and afterwards must treat their
    /// contents as uninitialized.
    pub fn report_free(&mut self, ranges: &[Segment], token: u32) -> Result<(), BalloonError> {
        let Some(q) = self.state.reporting.as_mut() else {
            return Err(BalloonError::NotNegotiated(
                "VIRTIO_BALLOON_F_PAGE_REPORTING",
            ));
        };
        let page = VIRTIO_BALLOON_PAGE_SIZE as u64;
        if let Some(s) = ranges
            .iter()
            .find(|s| s.addr % page != 0 || u64::from(s.len) % page != 0 || s.len == 0)
        {
            return Err(BalloonError::BadRange {
                addr: s.addr,
                len: s.len,
            });
        }
        q.add(&[], ranges, token).map_err(|r| match r.error {
            AddError::Broken => queue_err("reporting_vq")(UsedError::Broken),
            _ => BalloonError::QueueFull("reporting_vq"),
        })?;
        kick(&mut self.transport, q).map_err(queue_err("reporting_vq"))?;
        self.reports += 1;
        Ok(())
    }

    /// The token of a report the device acknowledged, or `None`.
    pub fn poll_reported(&mut self) -> Result<Option<u32>, BalloonError> {
        let Some(q) = self.state.reporting.as_mut() else {
            return Err(BalloonError::NotNegotiated(
                "VIRTIO_BALLOON_F_PAGE_REPORTING",
            ));
        };
        let u = pop_or_arm(q).map_err(queue_err("reporting_vq"))?;
        if u.is_some() {
            self.reports = self.reports.saturating_sub(1);
        }
        Ok(u.map(|u| u.token))
    }

    /// Reports not yet acknowledged.
    pub fn reports_in_flight(&self) -> u32 {
        self.reports
    }

    /// Resets the device (§2.4) and hands back the transport; the balloon's
    /// pages go back to the allocator. When the reset does not complete,
    /// the pages and queues are leaked, not freed.
    pub fn reset(self) -> Detached<T> {
        let mut s = self;
        let reset = s.transport.reset();
        let st = &mut *s.state;
        for q in [st.inflate.as_mut(), st.deflate.as_mut(), st.stats.as_mut()]
            .into_iter()
            .flatten()
        {
            q.reset();
        }
        if let Some(q) = st.reporting.as_mut() {
            q.reset();
        }
        if reset.is_ok() {
            s.state.disarm();
        }
        Detached {
            transport: s.transport,
            tokens: Vec::new(),
            reset,
        }
    }
}

/// The inflate or deflate queue.
fn queue<D: Dma>(st: &mut State<D>, dir: Dir) -> (Option<&mut DriverQueue<D, u16>>, &'static str) {
    match dir {
        Dir::Inflate => (st.inflate.as_mut(), "inflateq"),
        Dir::Deflate => (st.deflate.as_mut(), "deflateq"),
    }
}

/// Whether the device used the buffer of batch `p` (re-arms used buffer
/// notifications when not).
fn acknowledged<D: Dma>(st: &mut State<D>, p: Pending) -> Result<bool, BalloonError> {
    let (q, name) = queue(st, p.dir);
    let Some(q) = q else {
        return Err(queue_err(name)(UsedError::Broken));
    };
    Ok(pop_or_arm(q).map_err(queue_err(name))?.is_some())
}
