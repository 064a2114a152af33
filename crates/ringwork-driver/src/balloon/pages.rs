//! The pages a userspace balloon driver gives to the device: DMA memory
//! allocated in chunks of [`CHUNK_PAGES`] pages. Pages in the balloon are
//! a prefix of each chunk and every chunk but the last is full, so
//! inflation fills the last chunk (allocating a new one when it is full)
//! and deflation empties it (giving it back to the allocator once empty).
//!
//! Trust and panic contract: nothing here reads device input; counts are
//! bounded by the chunk size. Nothing panics.

use alloc::vec::Vec;

use ringwork_queue::{Dma, DmaBuffer};
use ringwork_spec::balloon::{pfn_of, VIRTIO_BALLOON_PAGE_SIZE};

/// Pages per DMA allocation (1 MiB).
pub const CHUNK_PAGES: u32 = 256;

/// A run of pages inside one chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Run {
    pub chunk: usize,
    pub first: u32,
    pub count: u32,
}

struct Chunk {
    buf: DmaBuffer,
    /// Pages `0..used` are in the balloon.
    used: u32,
}

/// See the [module docs](self).
pub(super) struct PagePool<D: Dma> {
    dma: D,
    chunks: Vec<Chunk>,
}

impl<D: Dma> PagePool<D> {
    pub fn new(dma: D) -> Self {
        Self {
            dma,
            chunks: Vec::new(),
        }
    }

    /// Pages in the balloon.
    pub fn pages(&self) -> u32 {
        self.chunks.iter().map(|c| c.used).sum()
    }

    /// Up to `n` pages to inflate next (a new chunk when the last one is
    /// full); `None` when the allocator has no memory left.
    pub fn next_inflate(&mut self, n: u32) -> Option<Run> {
        let full = self.chunks.last().is_none_or(|c| c.used == CHUNK_PAGES);
        if full {
            let len = CHUNK_PAGES as usize * VIRTIO_BALLOON_PAGE_SIZE;
            let buf = self.dma.alloc(len, VIRTIO_BALLOON_PAGE_SIZE)?;
            self.chunks.push(Chunk { buf, used: 0 });
        }
        let chunk = self.chunks.len() - 1;
        let c = &self.chunks[chunk];
        Some(Run {
            chunk,
            first: c.used,
            count: n.min(CHUNK_PAGES - c.used),
        })
    }

    /// The device acknowledged the inflation of `r`.
    pub fn inflated(&mut self, r: Run) {
        if let Some(c) = self.chunks.get_mut(r.chunk) {
            c.used = (c.used + r.count).min(CHUNK_PAGES);
        }
    }

    /// Up to `n` pages to deflate next (the last pages inflated).
    pub fn next_deflate(&self, n: u32) -> Option<Run> {
        let chunk = self.chunks.iter().rposition(|c| c.used > 0)?;
        let used = self.chunks[chunk].used;
        let count = n.min(used);
        Some(Run {
            chunk,
            first: used - count,
            count,
        })
    }

    /// The device acknowledged the deflation of `r`: the pages are ours
    /// again; empty chunks at the end go back to the allocator.
    pub fn deflated(&mut self, r: Run) {
        if let Some(c) = self.chunks.get_mut(r.chunk) {
            c.used = c.used.saturating_sub(r.count);
        }
        while self.chunks.last().is_some_and(|c| c.used == 0) {
            if let Some(c) = self.chunks.pop() {
                self.dma.dealloc(c.buf);
            }
        }
    }

    /// The balloon page frame numbers of `r` (`None` if a page lies at or
    /// above 16 TiB, which a 32-bit PFN cannot name).
    pub fn pfns(&self, r: Run) -> Option<impl Iterator<Item = u32>> {
        let base = self.chunks.get(r.chunk)?.buf.device_addr();
        let first = pfn_of(base + u64::from(r.first) * VIRTIO_BALLOON_PAGE_SIZE as u64)?;
        pfn_of(base + u64::from(r.first + r.count) * VIRTIO_BALLOON_PAGE_SIZE as u64)?;
        Some(first..first + r.count)
    }
}

impl<D: Dma> Drop for PagePool<D> {
    fn drop(&mut self) {
        for c in self.chunks.drain(..) {
            self.dma.dealloc(c.buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::cell::Cell;
    use ringwork_queue::test_utils::TestMemory;

    /// Counts what is given back.
    struct Counting<'m>(&'m TestMemory, Cell<usize>);

    impl Dma for &Counting<'_> {
        fn alloc(&self, len: usize, align: usize) -> Option<DmaBuffer> {
            self.0.alloc(len, align)
        }
        fn dealloc(&self, buffer: DmaBuffer) {
            self.1.set(self.1.get() + 1);
            self.0.dealloc(buffer);
        }
    }

    #[test]
    fn inflate_fills_chunks_and_deflate_returns_them() {
        let mem = TestMemory::new(0x40_0000, 4 << 20);
        let counting = Counting(&mem, Cell::new(0));
        let mut p = PagePool::new(&counting);
        let r = p.next_inflate(300).unwrap();
        assert_eq!((r.chunk, r.first, r.count), (0, 0, CHUNK_PAGES));
        let pfns: Vec<u32> = p.pfns(r).unwrap().collect();
        assert_eq!(pfns.len(), 256);
        assert_eq!(pfns[1], pfns[0] + 1);
        p.inflated(r);
        let r = p.next_inflate(44).unwrap();
        assert_eq!((r.chunk, r.first, r.count), (1, 0, 44));
        p.inflated(r);
        assert_eq!(p.pages(), 300);
        let d = p.next_deflate(100).unwrap();
        assert_eq!((d.chunk, d.first, d.count), (1, 0, 44));
        p.deflated(d);
        assert_eq!(counting.1.get(), 1, "the empty chunk is given back");
        let d = p.next_deflate(100).unwrap();
        assert_eq!((d.chunk, d.first, d.count), (0, 156, 100));
        p.deflated(d);
        assert_eq!(p.pages(), 156);
        drop(p);
        assert_eq!(counting.1.get(), 2, "everything is given back on drop");
    }

    #[test]
    fn no_memory_is_none() {
        let mem = TestMemory::new(0x40_0000, 512 << 10);
        let mut p = PagePool::new(&mem);
        assert!(p.next_inflate(1).is_none());
        assert!(p.next_deflate(1).is_none());
    }
}
