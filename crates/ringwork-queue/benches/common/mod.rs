//! Shared set-up for the device-side benchmarks (`benches/queue.rs`).
//!
//! The split-ring cases run ringwork's [`DeviceQueue`] and rust-vmm's
//! `virtio_queue::Queue` over byte-for-byte identical rings: [`SplitLayout`]
//! writes the descriptor table (and indirect tables) once and then, before
//! each timed batch, the available ring entries and index, through
//! [`RawMem`], into ringwork's `TestMemory` and vm-memory's
//! `GuestMemoryMmap` alike. The chains always occupy the same descriptors,
//! so the used ring the device writes is never read back.
//!
//! The packed-ring cases (ringwork only; virtio-queue has no packed ring)
//! are refilled by ringwork's own [`DriverQueue`], untimed.
//!
//! "Device work per chain" is the same everywhere: pop one chain, visit its
//! descriptors (sum the readable and writable lengths), and `add_used` it
//! with the writable length.

pub mod ours;
pub mod vq;

use ringwork_queue::test_utils::TestMemory;
use ringwork_queue::{GuestMemory, QueueAddresses, Segment};

/// Queue size for every single-threaded case.
pub const QUEUE_SIZE: u16 = 256;
/// Guest address of the memory region.
pub const BASE: u64 = 0x10_0000;
/// Size of the memory region.
pub const MEM_SIZE: usize = 2 << 20;
/// Split ring: descriptor table.
pub const DESC: u64 = BASE;
/// Split ring: available ring.
pub const AVAIL: u64 = BASE + 0x1000;
/// Split ring: used ring.
pub const USED: u64 = BASE + 0x2000;
/// Indirect tables, one per chain.
pub const ITABLES: u64 = BASE + 0x4000;
/// Data buffers (never touched by the device in these cases).
pub const BUFS: u64 = BASE + 0x10_0000;
/// Bytes per data buffer.
pub const BUF_LEN: u32 = 256;

const F_NEXT: u16 = 1;
const F_WRITE: u16 = 2;
const F_INDIRECT: u16 = 4;

/// A chain shape: how many descriptors, how many of them device-readable,
/// and whether they sit in an indirect table.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// Descriptors (buffers) per chain.
    pub descs: usize,
    /// How many of them come first and are device-readable.
    pub readable: usize,
    /// Through one indirect descriptor.
    pub indirect: bool,
}

impl Shape {
    /// One device-writable buffer.
    pub const ONE: Shape = Shape {
        descs: 1,
        readable: 0,
        indirect: false,
    };
    /// Two readable and two writable buffers.
    pub const FOUR: Shape = Shape {
        descs: 4,
        readable: 2,
        indirect: false,
    };
    /// As [`Shape::FOUR`], in an indirect table.
    pub const FOUR_INDIRECT: Shape = Shape {
        descs: 4,
        readable: 2,
        indirect: true,
    };

    /// Label used in benchmark ids.
    pub fn label(self) -> &'static str {
        match (self.descs, self.indirect) {
            (1, false) => "1-desc",
            (4, false) => "4-desc",
            (4, true) => "4-desc-indirect",
            _ => "other",
        }
    }

    /// Ring slots one chain occupies.
    pub fn slots(self) -> usize {
        if self.indirect {
            1
        } else {
            self.descs
        }
    }

    /// Chains that fit in the ring at once.
    pub fn chains_per_ring(self) -> usize {
        usize::from(QUEUE_SIZE) / self.slots()
    }

    /// The buffers of chain `c`: readable ones, then writable ones.
    pub fn segments(self, c: usize) -> (Vec<Segment>, Vec<Segment>) {
        let seg =
            |j: usize| Segment::new(BUFS + ((c * 4 + j) as u64) * u64::from(BUF_LEN), BUF_LEN);
        let all: Vec<Segment> = (0..self.descs).map(seg).collect();
        let (r, w) = all.split_at(self.readable);
        (r.to_vec(), w.to_vec())
    }

    /// Sum of all lengths, and of the writable lengths, of one chain.
    pub fn lens(self) -> (u64, u32) {
        let total = self.descs as u64 * u64::from(BUF_LEN);
        let writable = (self.descs - self.readable) as u32 * BUF_LEN;
        (total, writable)
    }
}

/// Plain byte writes into a memory region by guest address (driver side,
/// not timed).
pub trait RawMem {
    /// Writes `bytes` at guest address `addr`.
    fn write(&self, addr: u64, bytes: &[u8]);
}

impl RawMem for TestMemory {
    fn write(&self, addr: u64, bytes: &[u8]) {
        self.slice(addr, bytes.len())
            .expect("in memory")
            .write_bytes(0, bytes)
            .expect("in window");
    }
}

impl RawMem for ringwork_queue::mmap::GuestMemoryMmap {
    fn write(&self, addr: u64, bytes: &[u8]) {
        self.slice(addr, bytes.len())
            .expect("in memory")
            .write_bytes(0, bytes)
            .expect("in window");
    }
}

/// ringwork's own mmap-backed guest memory: one anonymous region of
/// `MEM_SIZE` bytes at `BASE`.
pub fn ringwork_mmap() -> ringwork_queue::mmap::GuestMemoryMmap {
    let mut m = ringwork_queue::mmap::GuestMemoryMmap::new();
    let region = ringwork_queue::mmap::MmapRegion::anonymous(MEM_SIZE).expect("mmap");
    m.add_region(BASE, region).expect("region");
    m
}

impl RawMem for vm_memory::GuestMemoryMmap<()> {
    fn write(&self, addr: u64, bytes: &[u8]) {
        vm_memory::Bytes::write_slice(self, bytes, vm_memory::GuestAddress(addr))
            .expect("in memory");
    }
}

fn desc_bytes(addr: u64, len: u32, flags: u16, next: u16) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&addr.to_le_bytes());
    b[8..12].copy_from_slice(&len.to_le_bytes());
    b[12..14].copy_from_slice(&flags.to_le_bytes());
    b[14..16].copy_from_slice(&next.to_le_bytes());
    b
}

/// A static split-ring layout: chain `c` always has the same head and
/// descriptors, so only the available ring changes between batches.
#[derive(Debug)]
pub struct SplitLayout {
    shape: Shape,
    avail_idx: u16,
}

impl SplitLayout {
    /// Addresses of the three split-ring parts.
    pub const ADDRS: QueueAddresses = QueueAddresses {
        desc: DESC,
        driver: AVAIL,
        device: USED,
    };

    /// Writes the descriptor table (and indirect tables) for `shape`.
    pub fn new(mem: &impl RawMem, shape: Shape) -> Self {
        let chains = shape.chains_per_ring();
        let mut table = vec![0u8; usize::from(QUEUE_SIZE) * 16];
        for c in 0..chains {
            let (r, w) = shape.segments(c);
            let entries: Vec<(Segment, u16)> = r
                .iter()
                .map(|s| (*s, 0))
                .chain(w.iter().map(|s| (*s, F_WRITE)))
                .collect();
            // Descriptor bytes for the chain, `first` being the index of its
            // first descriptor in whatever table holds it.
            let encode = |first: usize| -> Vec<u8> {
                let n = entries.len();
                entries
                    .iter()
                    .enumerate()
                    .flat_map(|(i, (s, f))| {
                        let last = i + 1 == n;
                        let flags = f | if last { 0 } else { F_NEXT };
                        let next = if last { 0 } else { (first + i + 1) as u16 };
                        desc_bytes(s.addr, s.len, flags, next)
                    })
                    .collect()
            };
            if shape.indirect {
                let taddr = ITABLES + (c * shape.descs * 16) as u64;
                mem.write(taddr, &encode(0));
                let d = desc_bytes(taddr, (shape.descs * 16) as u32, F_INDIRECT, 0);
                table[c * 16..c * 16 + 16].copy_from_slice(&d);
            } else {
                let first = c * shape.descs;
                let bytes = encode(first);
                table[first * 16..first * 16 + bytes.len()].copy_from_slice(&bytes);
            }
        }
        mem.write(DESC, &table);
        // Avail and used rings start zeroed: flags 0, idx 0.
        mem.write(AVAIL, &[0u8; 4]);
        mem.write(USED, &[0u8; 4]);
        Self {
            shape,
            avail_idx: 0,
        }
    }

    /// Head descriptor index of chain `c`.
    pub fn head(&self, c: usize) -> u16 {
        (c * self.shape.slots()) as u16
    }

    /// Makes the first `k` chains available (the device must have consumed
    /// everything made available before).
    pub fn make_available(&mut self, mem: &impl RawMem, k: usize) {
        assert!(k <= self.shape.chains_per_ring());
        for c in 0..k {
            let slot = self.avail_idx.wrapping_add(c as u16) & (QUEUE_SIZE - 1);
            mem.write(AVAIL + 4 + u64::from(slot) * 2, &self.head(c).to_le_bytes());
        }
        self.avail_idx = self.avail_idx.wrapping_add(k as u16);
        mem.write(AVAIL + 2, &self.avail_idx.to_le_bytes());
    }
}

/// A device-side case that can be refilled (untimed) and consumed (timed).
pub trait DeviceCase {
    /// Chains one batch can hold.
    fn capacity(&self) -> usize;
    /// Makes `k` chains available (untimed).
    fn refill(&mut self, k: usize);
    /// Pops, visits and completes `k` chains; returns the bytes visited.
    fn consume(&mut self, k: usize) -> u64;
    /// Pops `k` chains and keeps their tokens (untimed part of the
    /// add_used-only measurement).
    fn pop_only(&mut self, k: usize);
    /// Completes the `k` chains kept by [`DeviceCase::pop_only`].
    fn complete_only(&mut self, k: usize);
    /// Whether the queue is empty now (a check, untimed).
    fn is_drained(&mut self) -> bool;
}
