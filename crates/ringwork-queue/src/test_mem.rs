//! A fake of the other side's memory, for tests (`test-utils` feature).
//!
//! [`TestMemory`] is one zeroed, 4096-aligned block placed at a chosen guest
//! address. It is both [`GuestMemory`] (what a device sees) and [`Dma`] (what
//! a driver allocates from, with a bump allocator), so a driver-side queue
//! and a device-side queue can share it exactly as they would share guest
//! RAM. It is `Sync`: threads may share it by reference.
#![allow(unsafe_code)]

use alloc::alloc::{alloc_zeroed, dealloc, Layout};
use core::sync::atomic::{AtomicUsize, Ordering};

use crate::mem::{Dma, DmaBuffer, GuestMemory, MemSlice};

/// A block of fake guest memory. See the [module docs](self).
pub struct TestMemory {
    ptr: *mut u8,
    size: usize,
    base: u64,
    next: AtomicUsize,
}

// SAFETY: the block is only reached through MemSlice (volatile/atomic
// accesses) and the bump pointer is atomic.
unsafe impl Send for TestMemory {}
// SAFETY: as above.
unsafe impl Sync for TestMemory {}

impl core::fmt::Debug for TestMemory {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TestMemory")
            .field("base", &format_args!("{:#x}", self.base))
            .field("size", &self.size)
            .field("allocated", &self.next.load(Ordering::Relaxed))
            .finish()
    }
}

impl TestMemory {
    /// Alignment of the block.
    pub const ALIGN: usize = 4096;

    /// `size` zeroed bytes at guest address `base` (a multiple of 4096).
    ///
    /// # Panics
    /// If `size` is 0, `base` is not 4096-aligned, `base + size` overflows,
    /// or the host is out of memory. (Test set-up, not peer input.)
    pub fn new(base: u64, size: usize) -> Self {
        assert!(size > 0 && base % Self::ALIGN as u64 == 0);
        assert!(base.checked_add(size as u64).is_some());
        let layout = Layout::from_size_align(size, Self::ALIGN).expect("layout");
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { alloc_zeroed(layout) };
        assert!(!ptr.is_null(), "out of memory");
        Self {
            ptr,
            size,
            base,
            next: AtomicUsize::new(0),
        }
    }

    /// Guest address of the first byte.
    pub fn base(&self) -> u64 {
        self.base
    }

    /// Size in bytes.
    pub fn size(&self) -> usize {
        self.size
    }

    /// The whole block as a window.
    pub fn all(&self) -> MemSlice<'_> {
        // SAFETY: the block is valid for `size` bytes while `self` lives and
        // is only reached through raw/volatile accesses.
        unsafe { MemSlice::from_raw_parts(self.ptr, self.size) }
    }

    /// Bytes handed out by the bump allocator so far.
    pub fn allocated(&self) -> usize {
        self.next.load(Ordering::Relaxed)
    }
}

impl Drop for TestMemory {
    fn drop(&mut self) {
        let layout = Layout::from_size_align(self.size, Self::ALIGN).expect("layout");
        // SAFETY: allocated in `new` with this layout; no window outlives
        // `self` (they borrow it).
        unsafe { dealloc(self.ptr, layout) };
    }
}

impl GuestMemory for TestMemory {
    #[inline]
    fn slice(&self, addr: u64, len: usize) -> Option<MemSlice<'_>> {
        let off = addr.checked_sub(self.base)?;
        let end = off.checked_add(len as u64)?;
        if end > self.size as u64 {
            return None;
        }
        // SAFETY: [off, end) is inside the block, which is valid while `self`
        // lives (the window borrows `self`).
        Some(unsafe { MemSlice::from_raw_parts(self.ptr.add(off as usize), len) })
    }
}

impl Dma for TestMemory {
    fn alloc(&self, len: usize, align: usize) -> Option<DmaBuffer> {
        if !align.is_power_of_two() || align > Self::ALIGN {
            return None;
        }
        let mut cur = self.next.load(Ordering::Relaxed);
        loop {
            let start = cur.checked_add(align - 1)? & !(align - 1);
            let end = start.checked_add(len)?;
            if end > self.size {
                return None;
            }
            match self
                .next
                .compare_exchange(cur, end, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => {
                    let window = self.all().subslice(start, len).ok()?;
                    window.fill(0, len, 0).ok()?;
                    // SAFETY: the range is inside the block, handed out once by
                    // the bump allocator, valid while `self` lives.
                    return Some(unsafe {
                        DmaBuffer::from_raw_parts(
                            self.ptr.add(start),
                            len,
                            self.base + start as u64,
                        )
                    });
                }
                Err(now) => cur = now,
            }
        }
    }

    fn dealloc(&self, _buffer: DmaBuffer) {
        // A bump allocator: memory is reclaimed when the TestMemory drops.
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn translate_and_allocate() {
        let m = TestMemory::new(0x10000, 8192);
        assert!(m.slice(0x10000, 8192).is_some());
        assert!(m.slice(0xffff, 1).is_none());
        assert!(m.slice(0x10000 + 8192, 1).is_none());
        assert!(m.slice(u64::MAX, 2).is_none());
        let a = m.alloc(10, 16).unwrap();
        let b = m.alloc(4, 16).unwrap();
        assert_eq!(a.device_addr(), 0x10000);
        assert_eq!(b.device_addr(), 0x10010);
        assert!(m.alloc(1 << 20, 8).is_none());
        b.slice().write_u32(0, 5).unwrap();
        assert_eq!(m.slice(0x10010, 4).unwrap().read_u32(0).unwrap(), 5);
    }
}
