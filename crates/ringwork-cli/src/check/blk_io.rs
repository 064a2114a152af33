//! Block I/O for the checks: a driver session with data buffers in shared
//! memory ([`Io`]): submit on any queue and wait, pattern writes and reads
//! with chosen segmentation, save/restore of the sectors a check changes.

use std::sync::Arc;

use anyhow::Context as _;
use ringwork_driver::blk::{BlkCompletion, BlkDriver, BlkOptions, BlkRequest, BlkStatus};
use ringwork_driver::RingPreference;
use ringwork_queue::{Dma, DmaBuffer, Segment};
use ringwork_spec::blk::{VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT};
use ringwork_spec::features::FeatureSet;
use ringwork_transport::driver::TransportError;
use ringwork_vhost_user::{SharedMemory, VhostUserTransport};

use super::common::{pattern, wait_device, Ctx, MAX_WAKEUPS};
use super::report::Outcome;

/// The block driver the checks use (tokens are request numbers).
pub(crate) type Drv = BlkDriver<VhostUserTransport, Arc<SharedMemory>, usize>;

/// Bytes of data buffers per session; writes use the first half, reads
/// the second.
const SCRATCH: usize = 2 << 20;
/// Offset (and size) of the read half of the data buffers.
pub(crate) const HALF: usize = SCRATCH / 2;
/// Entries per queue asked for.
pub(crate) const QUEUE_SIZE: u16 = 128;
/// Request queues used at most.
pub(crate) const MAX_QUEUES: u16 = 16;
const SECTOR: usize = 512;

/// A driver session with data buffers.
pub(crate) struct Io {
    /// The driver.
    pub d: Drv,
    scratch: DmaBuffer,
    /// Sectors per test chunk (4 KiB, or one logical block if larger).
    pub chunk: u64,
    /// Capacity in sectors.
    pub capacity: u64,
    /// `VIRTIO_BLK_F_RO` negotiated: checks compare reads instead.
    pub read_only: bool,
    /// Restores that failed (reported as notes).
    pub warnings: Vec<String>,
    seed: u64,
    /// The token of the next request.
    next_token: usize,
    /// Why requests are no longer sent (a wait failed).
    stalled: Option<String>,
}

impl Io {
    /// Wraps an initialized driver.
    pub fn new(d: Drv, seed: u64) -> anyhow::Result<Self> {
        let scratch = d
            .dma()
            .alloc(SCRATCH, 4096)
            .context("allocating data buffers in shared memory")?;
        let cfg = *d.config();
        let chunk = u64::from((cfg.blk_size.unwrap_or(512) / 512).max(8));
        Ok(Self {
            read_only: d.is_read_only(),
            capacity: cfg.capacity,
            d,
            scratch,
            chunk,
            warnings: Vec::new(),
            seed,
            next_token: 0,
            stalled: None,
        })
    }

    /// Whether the disk is too small for the checks (64 chunks).
    pub fn too_small(&self) -> bool {
        self.capacity < 64 * self.chunk
    }

    /// Bytes per chunk.
    pub fn chunk_bytes(&self) -> usize {
        self.chunk as usize * SECTOR
    }

    /// A pattern for this run, `tag` and `sector`.
    pub fn pattern(&self, tag: u64, sector: u64, len: usize) -> Vec<u8> {
        pattern(
            self.seed ^ tag.rotate_left(48) ^ sector.wrapping_mul(0x9e37_79b9),
            len,
        )
    }

    /// The sector in the middle of the disk, chunk-aligned.
    pub fn middle(&self) -> u64 {
        (self.capacity / 2) / self.chunk * self.chunk
    }

    /// A segment of the data buffers.
    pub fn seg(&self, off: usize, len: usize) -> Segment {
        Segment::new(self.scratch.device_addr() + off as u64, len as u32)
    }

    /// Writes `data` into the data buffers at `off`.
    pub fn put(&self, off: usize, data: &[u8]) -> anyhow::Result<()> {
        self.scratch
            .slice()
            .write_bytes(off, data)
            .map_err(|_| anyhow::anyhow!("data buffer overflow"))
    }

    /// Reads `len` bytes of the data buffers at `off`.
    pub fn get(&self, off: usize, len: usize) -> anyhow::Result<Vec<u8>> {
        let mut v = vec![0u8; len];
        self.scratch
            .slice()
            .read_bytes(off, &mut v)
            .map_err(|_| anyhow::anyhow!("data buffer overflow"))?;
        Ok(v)
    }

    /// Segment sizes covering `len` bytes, each at most `size_max` (and
    /// 64 KiB).
    pub fn pieces(&self, len: usize) -> Vec<usize> {
        let max = self
            .d
            .config()
            .size_max
            .map_or(65536, |m| m as usize)
            .clamp(1, 65536);
        let mut v = Vec::new();
        let mut at = 0;
        while at < len {
            let n = max.min(len - at);
            v.push(n);
            at += n;
        }
        v
    }

    /// Submits `reqs` on queue `q`, notifies once, and waits for all of
    /// them; completions in the order the device used them, their tokens
    /// the requests' indices in `reqs`. Completions of requests an earlier
    /// call gave up on (a timeout) are recognised by their tokens and
    /// dropped.
    pub fn exec_many(
        &mut self,
        q: u16,
        reqs: &[BlkRequest<'_>],
    ) -> anyhow::Result<Vec<BlkCompletion<usize>>> {
        if let Some(why) = &self.stalled {
            anyhow::bail!("not sent: earlier in this session {why}");
        }
        let base = self.next_token;
        self.next_token += reqs.len();
        for (i, r) in reqs.iter().enumerate() {
            if let Err(e) = self.d.submit(q, *r, base + i) {
                if i > 0 {
                    let _ = self.d.kick(q);
                    let _ = self.wait(q, base, i);
                }
                anyhow::bail!("submitting request {i} on queue {q}: {}", e.error);
            }
        }
        self.d.kick(q)?;
        let r = self.wait(q, base, reqs.len());
        if let Err(e) = &r {
            // Requests may still be in flight: later ones would only wait
            // out the timeout again.
            self.stalled = Some(format!("{e:#}"));
        }
        r
    }

    /// Waits for the completions of tokens `base..base + n` on queue `q`.
    fn wait(&mut self, q: u16, base: usize, n: usize) -> anyhow::Result<Vec<BlkCompletion<usize>>> {
        let mut done = Vec::with_capacity(n);
        for _ in 0..MAX_WAKEUPS {
            while done.len() < n {
                match self.d.poll(q)? {
                    Some(mut c) if (base..base + n).contains(&c.token) => {
                        c.token -= base;
                        done.push(c);
                    }
                    Some(_) => {}
                    None => break,
                }
            }
            if done.len() == n {
                return Ok(done);
            }
            wait_device(self.d.transport())?;
            self.d.handle_interrupt()?;
        }
        anyhow::bail!("the device kept notifying without completing the requests")
    }

    /// One request on queue `q`.
    pub fn exec(&mut self, q: u16, req: BlkRequest<'_>) -> anyhow::Result<BlkCompletion<usize>> {
        Ok(self.exec_many(q, &[req])?.remove(0))
    }

    /// Writes `data` at `sector` on queue `q` with the given segment sizes
    /// (buffers spaced apart), expecting OK.
    pub fn write_segs(
        &mut self,
        q: u16,
        sector: u64,
        data: &[u8],
        sizes: &[usize],
    ) -> anyhow::Result<()> {
        let segs = self.spread(0, data, sizes)?;
        let c = self.exec(
            q,
            BlkRequest::Write {
                sector,
                data: &segs,
            },
        )?;
        expect_ok(&c, "write", sector)
    }

    /// Reads `len` bytes at `sector` on queue `q` with the given segment
    /// sizes (buffers spaced apart), expecting OK and the full length.
    pub fn read_segs(&mut self, q: u16, sector: u64, sizes: &[usize]) -> anyhow::Result<Vec<u8>> {
        let len: usize = sizes.iter().sum();
        let zero = vec![0u8; len];
        let segs = self.spread(HALF, &zero, sizes)?;
        let c = self.exec(
            q,
            BlkRequest::Read {
                sector,
                data: &segs,
            },
        )?;
        expect_ok(&c, "read", sector)?;
        if c.written as usize != len {
            anyhow::bail!(
                "read at sector {sector}: the device reported {} bytes of {len}",
                c.written
            );
        }
        let mut out = Vec::with_capacity(len);
        for s in &segs {
            let off = (s.addr - self.scratch.device_addr()) as usize;
            out.extend(self.get(off, s.len as usize)?);
        }
        Ok(out)
    }

    /// Reads `len` bytes at `sector` on queue `q` (segments of at most
    /// `size_max`).
    pub fn read_whole(&mut self, q: u16, sector: u64, len: usize) -> anyhow::Result<Vec<u8>> {
        let p = self.pieces(len);
        self.read_segs(q, sector, &p)
    }

    /// Writes `data` at `sector` on queue `q` (segments of at most
    /// `size_max`).
    pub fn write_whole(&mut self, q: u16, sector: u64, data: &[u8]) -> anyhow::Result<()> {
        let p = self.pieces(data.len());
        self.write_segs(q, sector, data, &p)
    }

    /// Places `data` in buffers of `sizes` bytes from `base`, each on its
    /// own 4 KiB-aligned slot plus a varying offset (so no two are
    /// adjacent).
    fn spread(&self, base: usize, data: &[u8], sizes: &[usize]) -> anyhow::Result<Vec<Segment>> {
        let mut segs = Vec::with_capacity(sizes.len());
        let (mut at, mut off) = (0, base);
        for (i, &n) in sizes.iter().enumerate() {
            let slot = off + (i % 4) * 64;
            if slot + n > base + HALF {
                anyhow::bail!("data buffer overflow");
            }
            self.put(slot, &data[at..at + n])?;
            segs.push(self.seg(slot, n));
            at += n;
            off = (slot + n + 4096).next_multiple_of(4096);
        }
        Ok(segs)
    }

    /// Runs `f`, restoring sectors `sector..sector + sectors` afterwards
    /// (read first, written back after). Not on a read-only device.
    pub fn preserve(
        &mut self,
        sector: u64,
        sectors: u64,
        f: impl FnOnce(&mut Self) -> anyhow::Result<Outcome>,
    ) -> anyhow::Result<Outcome> {
        if self.read_only {
            return f(self);
        }
        let mut saved = vec![0u8; sectors as usize * SECTOR];
        self.d
            .read(sector, &mut saved)
            .with_context(|| format!("reading sectors {sector}.. to restore them afterwards"))?;
        let r = f(self);
        match self.d.write(sector, &saved) {
            Ok(()) => r,
            Err(e) => {
                let msg = format!(
                    "sectors {sector}..{} could not be restored: {e}",
                    sector + sectors
                );
                self.warnings.push(format!("WARNING: {msg}"));
                match r {
                    Ok(Outcome::Pass) => Ok(Outcome::Fail(msg)),
                    other => other,
                }
            }
        }
    }

    /// Ends the session: flush (if negotiated), device-error
    /// observation, reset. Returns the transport.
    pub fn finish(self, ctx: &mut Ctx, when: &str) -> VhostUserTransport {
        self.finish_with_reset(ctx, when).0
    }

    /// [`Self::finish`], also returning how the device reset went.
    pub fn finish_with_reset(
        mut self,
        ctx: &mut Ctx,
        when: &str,
    ) -> (VhostUserTransport, Result<(), TransportError>) {
        if self.d.features().contains(VIRTIO_BLK_F_FLUSH) {
            if let Err(e) = self.d.flush() {
                self.warnings.push(format!(
                    "WARNING: {when}: flush after restoring data failed: {e}"
                ));
            }
        }
        ctx.report.notes.append(&mut self.warnings);
        ctx.observe(self.d.transport(), when);
        let det = self.d.reset();
        (det.transport, det.reset)
    }
}

/// The status must be OK.
pub(crate) fn expect_ok(c: &BlkCompletion<usize>, what: &str, sector: u64) -> anyhow::Result<()> {
    if c.status == BlkStatus::Ok {
        Ok(())
    } else {
        anyhow::bail!("{what} at sector {sector} completed with {}", c.status)
    }
}

/// A raw request of `req_type` (unchecked by the driver).
pub(crate) fn raw<'a>(
    req_type: u32,
    sector: u64,
    out: &'a [Segment],
    inp: &'a [Segment],
) -> BlkRequest<'a> {
    BlkRequest::Raw {
        req_type,
        sector,
        out,
        inp,
    }
}

/// `VIRTIO_BLK_T_IN` / `OUT`, for raw requests the driver would refuse.
pub(crate) const T_IN: u32 = VIRTIO_BLK_T_IN;
pub(crate) const T_OUT: u32 = VIRTIO_BLK_T_OUT;

/// Driver options for a session.
pub(crate) fn options(ring: RingPreference, withhold: FeatureSet) -> BlkOptions {
    BlkOptions {
        queues: MAX_QUEUES,
        queue_size: QUEUE_SIZE,
        ring,
        withhold,
    }
}

/// Opens a session with a block driver.
pub(crate) fn open(ctx: &Ctx, opts: BlkOptions) -> anyhow::Result<Io> {
    let t = ctx.connect()?;
    let mem = t.memory().clone();
    let d = Drv::new(t, mem, opts).context("driver initialization")?;
    Io::new(d, ctx.seed)
}
