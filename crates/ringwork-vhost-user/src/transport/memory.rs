//! The frontend's shared memory: one memfd the frontend maps and hands to
//! the backend (SET_MEM_TABLE), at device-visible addresses the frontend
//! chooses. Rings and data buffers are allocated from it.
//!
//! Trust and panic contract: the backend writes this memory concurrently,
//! so it is only reached through [`MemSlice`](ringwork_queue::MemSlice)
//! volatile/atomic accessors (the [`GuestMemory`] and [`Dma`] impls), never
//! through Rust references. Allocation failure is `None`, never a panic.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use ringwork_queue::mmap::{GuestMemoryMmap, MmapRegion};
use ringwork_queue::{Dma, DmaBuffer, GuestMemory, MemSlice};

use crate::msg::MemRegion;
use crate::sys;

/// Device-visible address of the first byte (any value works; a
/// recognisable one helps when reading backend logs).
pub const DEFAULT_BASE: u64 = 0x1_0000_0000;

/// A memfd mapped in this process and shareable with a backend.
///
/// [`Dma`] allocations are bump-allocated and only reclaimed when the
/// memory is dropped: drivers allocate their rings and buffers once.
#[derive(Debug)]
pub struct SharedMemory {
    fd: OwnedFd,
    mem: GuestMemoryMmap,
    base: u64,
    size: u64,
    user_addr: u64,
}

impl SharedMemory {
    /// `size` bytes (rounded up to 4 KiB) at device address [`DEFAULT_BASE`].
    pub fn new(size: usize) -> io::Result<Self> {
        Self::with_base(size, DEFAULT_BASE)
    }

    /// `size` bytes (rounded up to 4 KiB) at device address `base`.
    pub fn with_base(size: usize, base: u64) -> io::Result<Self> {
        let size = size.max(4096).div_ceil(4096) * 4096;
        let fd = sys::memfd(c"ringwork-frontend", size as u64)?;
        let region = MmapRegion::from_fd(fd.as_fd(), 0, size)?;
        let user_addr = region.as_slice().as_ptr() as u64;
        let mut mem = GuestMemoryMmap::new();
        mem.add_region(base, region)?;
        Ok(Self {
            fd,
            mem,
            base,
            size: size as u64,
            user_addr,
        })
    }

    /// The memfd.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The region as a vhost-user memory table entry.
    pub fn region(&self) -> MemRegion {
        MemRegion {
            guest_addr: self.base,
            size: self.size,
            user_addr: self.user_addr,
            mmap_offset: 0,
        }
    }

    /// Translates a device address to this process's address for it (the
    /// "user address" vhost-user vring addresses are given in).
    pub fn user_addr(&self, device_addr: u64) -> Option<u64> {
        let off = device_addr.checked_sub(self.base)?;
        (off < self.size).then(|| self.user_addr + off)
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The mapped memory.
    pub fn memory(&self) -> &GuestMemoryMmap {
        &self.mem
    }
}

impl GuestMemory for SharedMemory {
    #[inline]
    fn slice(&self, addr: u64, len: usize) -> Option<MemSlice<'_>> {
        self.mem.slice(addr, len)
    }
}

impl Dma for SharedMemory {
    fn alloc(&self, len: usize, align: usize) -> Option<DmaBuffer> {
        self.mem.alloc(len, align)
    }
    fn dealloc(&self, buffer: DmaBuffer) {
        self.mem.dealloc(buffer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocations_translate() {
        let m = SharedMemory::new(10_000).unwrap();
        assert_eq!(m.size(), 12288);
        let b = m.alloc(100, 64).unwrap();
        assert_eq!(b.device_addr(), DEFAULT_BASE);
        b.slice().write_u32(0, 7).unwrap();
        assert_eq!(m.slice(DEFAULT_BASE, 4).unwrap().read_u32(0).unwrap(), 7);
        let c = m.alloc(8, 64).unwrap();
        assert_eq!(c.device_addr(), DEFAULT_BASE + 128);
        assert_eq!(
            m.user_addr(DEFAULT_BASE + 4),
            Some(m.region().user_addr + 4)
        );
        assert_eq!(m.user_addr(DEFAULT_BASE + 12288), None);
        assert_eq!(m.user_addr(0), None);
        assert!(m.alloc(1 << 20, 8).is_none());
    }
}
