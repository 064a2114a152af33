//! ringwork's device side ([`DeviceQueue`]) over `TestMemory`.

use ringwork_queue::test_utils::TestMemory;
use ringwork_queue::{
    DescChain, DeviceQueue, DriverQueue, DriverQueueConfig, GuestMemory, QueueFeatures, RingFormat,
    Segment, UsedToken,
};

use super::{DeviceCase, RawMem, Shape, SplitLayout, QUEUE_SIZE, USED};

/// Sums the lengths of a popped chain: (all bytes, writable bytes).
#[inline(always)]
fn visit(chain: &DescChain) -> (u64, u32) {
    let mut readable = 0u32;
    for s in chain.readable_segments() {
        readable = readable.wrapping_add(s.len);
    }
    let mut writable = 0u32;
    for s in chain.writable_segments() {
        writable = writable.wrapping_add(s.len);
    }
    (u64::from(readable) + u64::from(writable), writable)
}

/// Features of the device-side queue in the single-threaded cases.
pub fn features(event_idx: bool) -> QueueFeatures {
    QueueFeatures {
        indirect_desc: true,
        event_idx,
        ..QueueFeatures::default()
    }
}

/// How a case pops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PopApi {
    /// `pop_into` with one reused `DescChain`.
    Into,
    /// `pop`, returning a `DescChain` by value.
    ByValue,
}

/// Pops, visits and completes `k` chains.
#[inline(always)]
fn consume<M: GuestMemory>(
    q: &mut DeviceQueue,
    mem: &M,
    chain: &mut DescChain,
    api: PopApi,
    k: usize,
) -> u64 {
    let mut bytes = 0u64;
    for _ in 0..k {
        let (b, w, token) = match api {
            PopApi::Into => {
                let ok = q.pop_into(mem, chain).expect("pop");
                assert!(ok, "a chain is available");
                let (b, w) = visit(chain);
                (b, w, chain.token())
            }
            PopApi::ByValue => {
                let c = q.pop(mem).expect("pop").expect("a chain is available");
                let (b, w) = visit(&c);
                (b, w, c.token())
            }
        };
        bytes += b;
        q.add_used(mem, token, w).expect("add_used");
    }
    bytes
}

fn pop_tokens<M: GuestMemory>(
    q: &mut DeviceQueue,
    mem: &M,
    chain: &mut DescChain,
    out: &mut Vec<(UsedToken, u32)>,
    k: usize,
) {
    out.clear();
    for _ in 0..k {
        assert!(q.pop_into(mem, chain).expect("pop"));
        out.push((chain.token(), chain.writable_len()));
    }
}

/// Split ring, static layout shared with the virtio-queue case, over
/// `TestMemory` or ringwork's own mmap-backed `GuestMemoryMmap`.
pub struct OursSplit<'m, M: GuestMemory + RawMem = TestMemory> {
    mem: &'m M,
    shape: Shape,
    layout: SplitLayout,
    q: DeviceQueue,
    chain: DescChain,
    api: PopApi,
    popped: Vec<(UsedToken, u32)>,
}

impl<'m, M: GuestMemory + RawMem> OursSplit<'m, M> {
    /// A split queue over `mem` (laid out anew).
    pub fn new(mem: &'m M, shape: Shape, event_idx: bool, api: PopApi) -> Self {
        let layout = SplitLayout::new(mem, shape);
        let q = DeviceQueue::new(
            RingFormat::Split,
            QUEUE_SIZE,
            SplitLayout::ADDRS,
            features(event_idx),
        )
        .expect("queue");
        Self {
            mem,
            shape,
            layout,
            q,
            chain: DescChain::new(),
            api,
            popped: Vec::with_capacity(usize::from(QUEUE_SIZE)),
        }
    }

    /// The used ring's bytes (flags, idx, entries), for cross-checking.
    pub fn used_ring(&self) -> Vec<u8> {
        let len = 4 + 8 * usize::from(QUEUE_SIZE);
        let mut v = vec![0u8; len];
        self.mem
            .slice(USED, len)
            .expect("used ring")
            .read_bytes(0, &mut v)
            .expect("read");
        v
    }
}

impl<M: GuestMemory + RawMem> DeviceCase for OursSplit<'_, M> {
    fn capacity(&self) -> usize {
        self.shape.chains_per_ring()
    }

    fn refill(&mut self, k: usize) {
        self.layout.make_available(self.mem, k);
    }

    fn consume(&mut self, k: usize) -> u64 {
        consume(&mut self.q, self.mem, &mut self.chain, self.api, k)
    }

    fn pop_only(&mut self, k: usize) {
        pop_tokens(&mut self.q, self.mem, &mut self.chain, &mut self.popped, k);
    }

    fn complete_only(&mut self, k: usize) {
        debug_assert_eq!(self.popped.len(), k);
        for &(t, len) in &self.popped {
            self.q.add_used(self.mem, t, len).expect("add_used");
        }
    }

    fn is_drained(&mut self) -> bool {
        !self.q.pop_into(self.mem, &mut self.chain).expect("pop")
    }
}

/// Packed ring, refilled by ringwork's [`DriverQueue`].
pub struct OursPacked<'m> {
    mem: &'m TestMemory,
    shape: Shape,
    driver: DriverQueue<&'m TestMemory, u32>,
    q: DeviceQueue,
    chain: DescChain,
    api: PopApi,
    segs: Vec<(Vec<Segment>, Vec<Segment>)>,
    popped: Vec<(UsedToken, u32)>,
}

impl<'m> OursPacked<'m> {
    /// A packed queue whose rings the driver allocates from `mem` (which
    /// should be fresh: its bump allocator starts below the data buffers).
    pub fn new(mem: &'m TestMemory, shape: Shape, event_idx: bool, api: PopApi) -> Self {
        let mut cfg = DriverQueueConfig::new(RingFormat::Packed, QUEUE_SIZE, features(event_idx));
        cfg.features.indirect_desc = shape.indirect;
        cfg.indirect_threshold = if shape.indirect { 2 } else { 0 };
        cfg.indirect_max = 4;
        cfg.indirect_tables = QUEUE_SIZE;
        let driver = DriverQueue::new(mem, cfg).expect("driver queue");
        assert!(mem.allocated() < 0x10_0000, "rings below the data buffers");
        let q = DeviceQueue::new(
            RingFormat::Packed,
            QUEUE_SIZE,
            driver.addresses(),
            features(event_idx),
        )
        .expect("queue");
        let segs = (0..shape.chains_per_ring())
            .map(|c| shape.segments(c))
            .collect();
        Self {
            mem,
            shape,
            driver,
            q,
            chain: DescChain::new(),
            api,
            segs,
            popped: Vec::with_capacity(usize::from(QUEUE_SIZE)),
        }
    }
}

impl DeviceCase for OursPacked<'_> {
    fn capacity(&self) -> usize {
        self.shape.chains_per_ring()
    }

    fn refill(&mut self, k: usize) {
        let (_, writable) = self.shape.lens();
        while let Some(u) = self.driver.pop_used().expect("pop_used") {
            assert_eq!(u.len, writable);
        }
        assert_eq!(self.driver.outstanding(), 0);
        for (c, (r, w)) in self.segs.iter().take(k).enumerate() {
            self.driver.add(r, w, c as u32).expect("add");
        }
    }

    fn consume(&mut self, k: usize) -> u64 {
        consume(&mut self.q, self.mem, &mut self.chain, self.api, k)
    }

    fn pop_only(&mut self, k: usize) {
        pop_tokens(&mut self.q, self.mem, &mut self.chain, &mut self.popped, k);
    }

    fn complete_only(&mut self, k: usize) {
        debug_assert_eq!(self.popped.len(), k);
        for &(t, len) in &self.popped {
            self.q.add_used(self.mem, t, len).expect("add_used");
        }
    }

    fn is_drained(&mut self) -> bool {
        !self.q.pop_into(self.mem, &mut self.chain).expect("pop")
    }
}
