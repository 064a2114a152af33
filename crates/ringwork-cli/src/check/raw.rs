//! A raw driver session for the checks that need to send what a real
//! driver never would (malformed chains, truncated requests) or that
//! have no driver in `ringwork-driver` (the network device): feature
//! negotiation (§3.1.1), queues built directly from `ringwork-queue`,
//! data buffers bump-allocated from one region of the session's shared
//! memory, and bounded waits for used buffers.
//!
//! Trust and panic contract: the backend is the peer. Used ids and
//! lengths are validated by the queue; a broken queue is an error, never
//! a panic. Every wait is bounded by a deadline. Buffers are read and
//! written only through the memory accessors.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use ringwork_driver::RingPreference;
use ringwork_queue::{
    Dma, DmaBuffer, DriverQueue, DriverQueueConfig, QueueFeatures, RingFormat, Segment, Used,
};
use ringwork_spec::features::{FeatureRule, FeatureSet, VIRTIO_F_RING_PACKED};
use ringwork_transport::driver::{self, Transport, TransportError};
use ringwork_vhost_user::{SharedMemory, VhostUserTransport};

use super::common::Ctx;

/// Bytes of data buffers per raw session.
const SCRATCH: usize = 4 << 20;

type Queue = DriverQueue<Arc<SharedMemory>, u64>;

/// One raw driver session. Queues are keyed by their index.
pub(crate) struct Raw {
    /// The transport.
    pub t: VhostUserTransport,
    /// The negotiated features.
    pub features: FeatureSet,
    /// The ring format in use.
    pub format: RingFormat,
    mem: Arc<SharedMemory>,
    qf: QueueFeatures,
    queues: BTreeMap<u16, Queue>,
    scratch: DmaBuffer,
    next: usize,
}

impl Raw {
    /// Steps 1 to 6 of initialization on `t` (§3.1.1): the features of
    /// `supports` that are offered (RING_PACKED dropped unless `ring`
    /// allows it; required for [`RingPreference::Packed`]).
    pub fn negotiate(
        mut t: VhostUserTransport,
        mut supports: FeatureSet,
        rules: &[FeatureRule],
        ring: RingPreference,
    ) -> anyhow::Result<Self> {
        if ring == RingPreference::Split {
            supports = supports.without(VIRTIO_F_RING_PACKED);
        }
        let features = driver::negotiate(&mut t, supports, rules).context("feature negotiation")?;
        let (format, qf) = driver::ring_features(&t, features);
        if ring == RingPreference::Packed && format != RingFormat::Packed {
            anyhow::bail!("packed rings were not negotiated");
        }
        let mem = t.memory().clone();
        let scratch = mem
            .alloc(SCRATCH, 4096)
            .context("allocating data buffers in shared memory")?;
        Ok(Self {
            t,
            features,
            format,
            mem,
            qf,
            queues: BTreeMap::new(),
            scratch,
            next: 0,
        })
    }

    /// Builds queue `index` with at most `wanted` entries and attaches it;
    /// returns its size.
    pub fn add_queue(&mut self, index: u16, wanted: u16) -> anyhow::Result<u16> {
        let max = self.t.max_queue_size(index);
        if max == 0 {
            anyhow::bail!("queue {index} does not exist");
        }
        let mut size = wanted.min(max).max(1);
        if self.format == RingFormat::Split {
            size = 1 << (15 - size.leading_zeros().min(15));
        }
        let mut cfg = DriverQueueConfig::new(self.format, size, self.qf);
        cfg.index = index;
        cfg.indirect_threshold = 0;
        cfg.indirect_tables = 0;
        let q = DriverQueue::new(self.mem.clone(), cfg)
            .map_err(|e| anyhow::anyhow!("building queue {index}: {e}"))?;
        driver::attach_queue(&mut self.t, &q)
            .with_context(|| format!("setting up queue {index}"))?;
        self.queues.insert(index, q);
        Ok(size)
    }

    /// Step 8: DRIVER_OK.
    pub fn driver_ok(&mut self) {
        driver::set_driver_ok(&mut self.t);
    }

    /// Allocates `len` bytes of the data buffers (64-byte aligned); returns
    /// their offset.
    pub fn alloc(&mut self, len: usize) -> anyhow::Result<usize> {
        let off = self.next.next_multiple_of(64);
        if off + len > SCRATCH {
            anyhow::bail!("out of data buffer space");
        }
        self.next = off + len;
        Ok(off)
    }

    /// The segment of `len` bytes at offset `off` of the data buffers.
    pub fn seg(&self, off: usize, len: usize) -> Segment {
        Segment::new(self.scratch.device_addr() + off as u64, len as u32)
    }

    /// Writes `data` at offset `off` of the data buffers.
    pub fn put(&self, off: usize, data: &[u8]) -> anyhow::Result<()> {
        self.scratch
            .slice()
            .write_bytes(off, data)
            .map_err(|_| anyhow::anyhow!("data buffer overflow"))
    }

    /// Reads `len` bytes at offset `off` of the data buffers.
    pub fn get(&self, off: usize, len: usize) -> anyhow::Result<Vec<u8>> {
        let mut v = vec![0u8; len];
        self.scratch
            .slice()
            .read_bytes(off, &mut v)
            .map_err(|_| anyhow::anyhow!("data buffer overflow"))?;
        Ok(v)
    }

    /// Allocates a buffer holding `data`; returns its segment and offset.
    pub fn buffer(&mut self, data: &[u8]) -> anyhow::Result<(Segment, usize)> {
        let off = self.alloc(data.len().max(1))?;
        self.put(off, data)?;
        Ok((self.seg(off, data.len()), off))
    }

    fn queue(&mut self, q: u16) -> anyhow::Result<&mut Queue> {
        self.queues
            .get_mut(&q)
            .ok_or_else(|| anyhow::anyhow!("queue {q} was not set up"))
    }

    /// Makes a chain available on queue `q` (no notification).
    pub fn add(
        &mut self,
        q: u16,
        out: &[Segment],
        inp: &[Segment],
        token: u64,
    ) -> anyhow::Result<()> {
        self.queue(q)?
            .add(out, inp, token)
            .map_err(|r| anyhow::anyhow!("queue {q}: {}", r.error))?;
        Ok(())
    }

    /// Notifies the device about queue `q` if it wants a notification.
    pub fn kick(&mut self, q: u16) -> anyhow::Result<()> {
        let vq = self.queue(q)?;
        if vq
            .kick_prepare()
            .map_err(|e| anyhow::anyhow!("queue {q}: {e}"))?
        {
            let data = vq.notification_data();
            self.t.notify(q, data);
        }
        Ok(())
    }

    /// [`Self::add`] then [`Self::kick`].
    pub fn send(
        &mut self,
        q: u16,
        out: &[Segment],
        inp: &[Segment],
        token: u64,
    ) -> anyhow::Result<()> {
        self.add(q, out, inp, token)?;
        self.kick(q)
    }

    /// The next used buffer of queue `q`, if any (non-blocking).
    pub fn poll(&mut self, q: u16) -> anyhow::Result<Option<Used<u64>>> {
        self.queue(q)?
            .pop_used()
            .map_err(|e| anyhow::anyhow!("queue {q}: {e}"))
    }

    /// Waits up to `within` for the next used buffer of queue `q`
    /// (`None`: nothing was used in time).
    pub fn wait(&mut self, q: u16, within: Duration) -> anyhow::Result<Option<Used<u64>>> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(u) = self.poll(q)? {
                return Ok(Some(u));
            }
            if let Some(e) = self.t.error() {
                anyhow::bail!("the connection failed: {e}");
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            // Drains the call eventfds and the backend channel.
            self.t.ack_interrupt();
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Waits up to `within` for the buffer with `token` on queue `q`;
    /// buffers with other tokens are dropped. Returns its used length.
    pub fn wait_token(
        &mut self,
        q: u16,
        token: u64,
        within: Duration,
    ) -> anyhow::Result<Option<u32>> {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.wait(q, left)? {
                Some(u) if u.token == token => return Ok(Some(u.len)),
                Some(_) => {}
                None => return Ok(None),
            }
        }
    }

    /// Ends the session: device-error observation, then reset. Returns the
    /// transport and how the reset went.
    pub fn finish(
        mut self,
        ctx: &mut Ctx,
        when: &str,
    ) -> (VhostUserTransport, Result<(), TransportError>) {
        ctx.observe(&mut self.t, when);
        let r = self.t.reset();
        let Self {
            t,
            queues,
            scratch,
            mem,
            ..
        } = self;
        if r.is_ok() {
            drop(queues);
            mem.dealloc(scratch);
        } else {
            // The device may still use them: leave them allocated.
            std::mem::forget(queues);
        }
        (t, r)
    }
}
