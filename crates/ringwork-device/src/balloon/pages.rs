//! The balloon's record of inflated pages ([`PfnSet`]) and giving guest
//! pages back to the host ([`discard`]).
//!
//! Trust and panic contract: page frame numbers come from the driver.
//! [`page_in_memory`] checks each against guest memory before anything is
//! recorded or discarded, so the set only ever holds pages of guest memory
//! and its size is bounded by the guest memory size (one bit per page, in
//! chunks allocated only where pages are recorded). Nothing here panics.

use std::collections::BTreeMap;

use ringwork_queue::mem::GuestMemory;
use ringwork_spec::balloon::{addr_of_pfn, VIRTIO_BALLOON_PAGE_SIZE};

use crate::model::Memory;

/// Pages per bitmap chunk (16 MiB of guest memory in 512 bytes).
const CHUNK_PAGES: u32 = 4096;
const WORDS: usize = (CHUNK_PAGES / 64) as usize;

/// A set of balloon page frame numbers (4 KiB units, §5.5.6): a sparse
/// bitmap with a count.
#[derive(Debug, Default, Clone)]
pub struct PfnSet {
    chunks: BTreeMap<u32, Box<[u64; WORDS]>>,
    count: u64,
}

fn split(pfn: u32) -> (u32, usize, u64) {
    let within = pfn % CHUNK_PAGES;
    (
        pfn / CHUNK_PAGES,
        (within / 64) as usize,
        1u64 << (within % 64),
    )
}

impl PfnSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Pages in the set.
    pub fn len(&self) -> u64 {
        self.count
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Whether `pfn` is in the set.
    pub fn contains(&self, pfn: u32) -> bool {
        let (c, w, bit) = split(pfn);
        self.chunks
            .get(&c)
            .and_then(|words| words.get(w))
            .is_some_and(|word| word & bit != 0)
    }

    /// Adds `pfn`; `false` when it was already there.
    pub fn insert(&mut self, pfn: u32) -> bool {
        let (c, w, bit) = split(pfn);
        let words = self.chunks.entry(c).or_insert_with(|| Box::new([0; WORDS]));
        let Some(word) = words.get_mut(w) else {
            return false;
        };
        if *word & bit != 0 {
            return false;
        }
        *word |= bit;
        self.count += 1;
        true
    }

    /// Removes `pfn`; `false` when it was not there.
    pub fn remove(&mut self, pfn: u32) -> bool {
        let (c, w, bit) = split(pfn);
        let Some(words) = self.chunks.get_mut(&c) else {
            return false;
        };
        let Some(word) = words.get_mut(w) else {
            return false;
        };
        if *word & bit == 0 {
            return false;
        }
        *word &= !bit;
        self.count -= 1;
        if words.iter().all(|&w| w == 0) {
            self.chunks.remove(&c);
        }
        true
    }

    /// Forgets every page.
    pub fn clear(&mut self) {
        self.chunks.clear();
        self.count = 0;
    }
}

/// Whether the whole 4 KiB balloon page `pfn` lies inside one region of
/// guest memory.
pub fn page_in_memory(mem: &Memory, pfn: u32) -> bool {
    mem.contains(addr_of_pfn(pfn), VIRTIO_BALLOON_PAGE_SIZE)
}

/// Why a range could not be given back.
#[derive(Debug, thiserror::Error)]
pub enum DiscardError {
    /// The range is not inside one region of guest memory.
    #[error("guest range {addr:#x}+{len:#x} is not inside one memory region")]
    OutsideMemory {
        /// Guest address.
        addr: u64,
        /// Length in bytes.
        len: u64,
    },
    /// The kernel refused (e.g. a backing store that cannot punch holes,
    /// or a region offset that is not host-page aligned).
    #[error("discarding guest range {addr:#x}+{len:#x}: {source}")]
    Os {
        /// Guest address.
        addr: u64,
        /// Length in bytes.
        len: u64,
        /// The operating-system error.
        #[source]
        source: std::io::Error,
    },
}

/// Gives the guest range `[addr, addr + len)` back to the host: the pages
/// of the shared mapping are freed (`MADV_REMOVE`, see
/// [`MmapRegion::discard`](ringwork_queue::mmap::MmapRegion::discard)) and
/// read as zeros afterwards, for the guest too. The range must lie in one
/// region; it is not widened or narrowed.
pub fn discard(mem: &Memory, addr: u64, len: u64) -> Result<(), DiscardError> {
    let outside = DiscardError::OutsideMemory { addr, len };
    let end = addr.checked_add(len).ok_or_else(|| outside_of(addr, len))?;
    let (gpa, region) = mem
        .regions()
        .find(|(gpa, r)| addr >= *gpa && end <= gpa + r.len() as u64)
        .ok_or(outside)?;
    let offset = usize::try_from(addr - gpa).map_err(|_| outside_of(addr, len))?;
    let size = usize::try_from(len).map_err(|_| outside_of(addr, len))?;
    region
        .discard(offset, size)
        .map_err(|source| DiscardError::Os { addr, len, source })
}

fn outside_of(addr: u64, len: u64) -> DiscardError {
    DiscardError::OutsideMemory { addr, len }
}

/// The largest part of `[addr, addr + len)` made of whole balloon pages
/// (4 KiB aligned), as (start, length); `None` when it holds none.
pub fn whole_pages(addr: u64, len: u64) -> Option<(u64, u64)> {
    let page = VIRTIO_BALLOON_PAGE_SIZE as u64;
    let start = addr.checked_add(page - 1)? & !(page - 1);
    let end = addr.checked_add(len)? & !(page - 1);
    (end > start).then(|| (start, end - start))
}

/// Collects page frame numbers into runs of consecutive pages and discards
/// each run with one call.
#[derive(Debug, Default)]
pub struct RunDiscarder {
    run: Option<(u32, u32)>,
    /// Pages discarded.
    pub pages: u64,
    /// Runs the kernel refused (each logged).
    pub failures: u64,
}

impl RunDiscarder {
    /// Adds page `pfn` (already checked with [`page_in_memory`]).
    pub fn push(&mut self, mem: &Memory, pfn: u32) {
        match &mut self.run {
            // Repeats inside the pending run cost nothing.
            Some((start, n)) if pfn >= *start && pfn - *start < *n => {}
            Some((start, n)) if start.checked_add(*n) == Some(pfn) => *n += 1,
            _ => {
                self.flush(mem);
                self.run = Some((pfn, 1));
            }
        }
    }

    /// Discards the pending run. A run that crosses a region boundary is
    /// discarded page by page.
    pub fn flush(&mut self, mem: &Memory) {
        let Some((start, n)) = self.run.take() else {
            return;
        };
        let page = VIRTIO_BALLOON_PAGE_SIZE as u64;
        let addr = addr_of_pfn(start);
        match discard(mem, addr, u64::from(n) * page) {
            Ok(()) => self.pages += u64::from(n),
            Err(DiscardError::OutsideMemory { .. }) => {
                for i in 0..n {
                    self.one(mem, addr + u64::from(i) * page);
                }
            }
            Err(e) => {
                self.failures += 1;
                tracing::warn!("balloon: {e}");
            }
        }
    }

    fn one(&mut self, mem: &Memory, addr: u64) {
        match discard(mem, addr, VIRTIO_BALLOON_PAGE_SIZE as u64) {
            Ok(()) => self.pages += 1,
            Err(e) => {
                self.failures += 1;
                tracing::warn!("balloon: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringwork_queue::mmap::MmapRegion;

    #[test]
    fn set_counts_and_frees_chunks() {
        let mut s = PfnSet::new();
        assert!(s.insert(5));
        assert!(!s.insert(5));
        assert!(s.insert(u32::MAX));
        assert!(s.insert(CHUNK_PAGES));
        assert_eq!(s.len(), 3);
        assert!(s.contains(u32::MAX) && s.contains(5) && !s.contains(6));
        assert!(s.remove(u32::MAX));
        assert!(!s.remove(u32::MAX));
        assert!(!s.remove(123_456_789));
        assert_eq!(s.len(), 2);
        assert_eq!(s.chunks.len(), 2);
        s.remove(CHUNK_PAGES);
        assert_eq!(s.chunks.len(), 1, "empty chunk freed");
        s.clear();
        assert!(s.is_empty());
    }

    #[test]
    fn whole_pages_rounds_inward() {
        assert_eq!(whole_pages(0, 4096), Some((0, 4096)));
        assert_eq!(whole_pages(1, 8192), Some((4096, 4096)));
        assert_eq!(whole_pages(1, 4096), None);
        assert_eq!(whole_pages(u64::MAX - 10, 100), None);
    }

    #[test]
    fn runs_cross_regions_page_by_page() {
        let mut mem = Memory::new();
        mem.add_region(0, MmapRegion::anonymous(4 * 4096).unwrap())
            .unwrap();
        mem.add_region(4 * 4096, MmapRegion::anonymous(4 * 4096).unwrap())
            .unwrap();
        for (_, r) in mem.regions() {
            r.as_slice().fill(0, r.len(), 0xee).unwrap();
        }
        let mut d = RunDiscarder::default();
        for pfn in [2, 3, 3, 2, 4, 5, 5] {
            assert!(page_in_memory(&mem, pfn));
            d.push(&mem, pfn);
        }
        d.flush(&mem);
        assert_eq!((d.pages, d.failures), (4, 0));
        let read = |a: u64| mem.slice(a, 1).unwrap().read_u8(0).unwrap();
        assert_eq!(read(4096), 0xee);
        assert_eq!(read(2 * 4096), 0);
        assert_eq!(read(6 * 4096 - 1), 0);
        assert_eq!(read(6 * 4096), 0xee);
        assert!(!page_in_memory(&mem, 8));
        assert!(matches!(
            discard(&mem, 7 * 4096, 2 * 4096),
            Err(DiscardError::OutsideMemory { .. })
        ));
        assert!(matches!(
            discard(&mem, u64::MAX - 4095, 4096 * 2),
            Err(DiscardError::OutsideMemory { .. })
        ));
    }
}
