//! rust-vmm's `virtio_queue::Queue` over vm-memory's `GuestMemoryMmap`, on
//! the same split-ring layout as ringwork's split case.

use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::{DeviceCase, Shape, SplitLayout, AVAIL, BASE, DESC, MEM_SIZE, QUEUE_SIZE, USED};

/// A virtio-queue split queue with its own guest memory.
pub struct VqSplit {
    mem: GuestMemoryMmap<()>,
    shape: Shape,
    layout: SplitLayout,
    q: Queue,
    popped: Vec<(u16, u32)>,
}

impl VqSplit {
    /// Maps `MEM_SIZE` bytes at `BASE`, lays the ring out, sets the queue up
    /// (size 256, ready, no EVENT_IDX).
    pub fn new(shape: Shape) -> Self {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(BASE), MEM_SIZE)])
            .expect("guest memory");
        let layout = SplitLayout::new(&mem, shape);
        let mut q = Queue::new(QUEUE_SIZE).expect("queue");
        q.set_size(QUEUE_SIZE);
        q.try_set_desc_table_address(GuestAddress(DESC))
            .expect("desc");
        q.try_set_avail_ring_address(GuestAddress(AVAIL))
            .expect("avail");
        q.try_set_used_ring_address(GuestAddress(USED))
            .expect("used");
        q.set_event_idx(false);
        q.set_ready(true);
        assert!(q.is_valid(&mem), "queue is valid");
        Self {
            mem,
            shape,
            layout,
            q,
            popped: Vec::with_capacity(usize::from(QUEUE_SIZE)),
        }
    }

    /// The used ring's bytes (flags, idx, entries), for cross-checking.
    pub fn used_ring(&self) -> Vec<u8> {
        let mut v = vec![0u8; 4 + 8 * usize::from(QUEUE_SIZE)];
        self.mem
            .read_slice(&mut v, GuestAddress(USED))
            .expect("read");
        v
    }
}

impl DeviceCase for VqSplit {
    fn capacity(&self) -> usize {
        self.shape.chains_per_ring()
    }

    fn refill(&mut self, k: usize) {
        self.layout.make_available(&self.mem, k);
    }

    fn consume(&mut self, k: usize) -> u64 {
        let mut bytes = 0u64;
        for _ in 0..k {
            let chain = self
                .q
                .pop_descriptor_chain(&self.mem)
                .expect("a chain is available");
            let head = chain.head_index();
            let mut readable = 0u32;
            let mut writable = 0u32;
            for d in chain {
                if d.is_write_only() {
                    writable = writable.wrapping_add(d.len());
                } else {
                    readable = readable.wrapping_add(d.len());
                }
            }
            bytes += u64::from(readable) + u64::from(writable);
            self.q
                .add_used(&self.mem, head, writable)
                .expect("add_used");
        }
        bytes
    }

    fn pop_only(&mut self, k: usize) {
        self.popped.clear();
        for _ in 0..k {
            let chain = self
                .q
                .pop_descriptor_chain(&self.mem)
                .expect("a chain is available");
            let head = chain.head_index();
            let writable = chain.filter(|d| d.is_write_only()).map(|d| d.len()).sum();
            self.popped.push((head, writable));
        }
    }

    fn complete_only(&mut self, k: usize) {
        debug_assert_eq!(self.popped.len(), k);
        for &(head, len) in &self.popped {
            self.q.add_used(&self.mem, head, len).expect("add_used");
        }
    }

    fn is_drained(&mut self) -> bool {
        self.q.pop_descriptor_chain(&self.mem).is_none()
    }
}
