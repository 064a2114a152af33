//! Guest memory backed by `mmap` (the `std` feature).
//!
//! [`MmapRegion`] owns one shared mapping (anonymous, or of a file
//! descriptor such as a memfd a VMM passed over a vhost-user socket).
//! [`GuestMemoryMmap`] places regions at guest addresses and implements
//! [`GuestMemory`]; it also implements [`Dma`] with a bump allocator over its
//! first region, for driver-side users (a frontend that owns guest memory).
//!
//! Trust and panic contract: translations check every range against the
//! regions and refuse what does not fit entirely in one region. Mapping
//! errors are returned as `std::io::Error`. Nothing panics.
#![allow(unsafe_code)]

use std::io;
#[cfg(test)]
use std::os::fd::AsFd;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::vec::Vec;

use crate::mem::{Dma, DmaBuffer, GuestMemory, MemSlice};

const PAGE: usize = 4096;

/// One shared memory mapping, unmapped on drop.
#[derive(Debug)]
pub struct MmapRegion {
    /// First byte of the region (inside the mapping, `skip` bytes in).
    ptr: *mut u8,
    len: usize,
    /// Bytes mapped before `ptr` because mmap offsets must be page-aligned.
    skip: usize,
}

// SAFETY: the mapping is process-wide memory reached only through MemSlice
// (volatile/atomic accesses); the pointer itself is never mutated.
unsafe impl Send for MmapRegion {}
// SAFETY: as above.
unsafe impl Sync for MmapRegion {}

impl MmapRegion {
    /// A zeroed anonymous shared mapping of `len` bytes.
    pub fn anonymous(len: usize) -> io::Result<Self> {
        Self::map(len, libc::MAP_SHARED | libc::MAP_ANONYMOUS, -1, 0)
    }

    /// A shared mapping of `len` bytes of `fd` starting at `offset` (any
    /// offset: the page-aligned start below it is mapped too, but the
    /// region only ever reaches `[offset, offset + len)`).
    ///
    /// When `fd` is a regular file (a memfd, a file on tmpfs or hugetlbfs:
    /// what vhost-user frontends share), the range must lie inside the
    /// file: `mmap` accepts a mapping past the end of a file, but touching
    /// those pages raises SIGBUS, so a peer that sends a short file could
    /// otherwise crash the process. A peer that shrinks the file after this
    /// check still can; only a memfd sealed with `F_SEAL_SHRINK` rules that
    /// out (see docs/ARCHITECTURE.md).
    pub fn from_fd(fd: BorrowedFd<'_>, offset: u64, len: usize) -> io::Result<Self> {
        let meta = std::fs::File::from(fd.try_clone_to_owned()?).metadata()?;
        if meta.file_type().is_file() {
            let end = offset.checked_add(len as u64).ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, "mmap range overflows")
            })?;
            if end > meta.len() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    std::format!(
                        "mapping [{offset:#x}, {end:#x}) goes past the end of its {}-byte file",
                        meta.len()
                    ),
                ));
            }
        }
        let skip = (offset % PAGE as u64) as usize;
        let off = libc::off_t::try_from(offset - skip as u64)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "mmap offset too large"))?;
        let total = len
            .checked_add(skip)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "mmap length overflows"))?;
        let mut r = Self::map(total, libc::MAP_SHARED, fd.as_raw_fd(), off)?;
        r.ptr = r.ptr.wrapping_add(skip);
        r.len = len;
        r.skip = skip;
        Ok(r)
    }

    fn map(len: usize, flags: libc::c_int, fd: libc::c_int, off: libc::off_t) -> io::Result<Self> {
        if len == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty mapping"));
        }
        // SAFETY: a fresh mapping chosen by the kernel (addr NULL); no
        // existing memory is affected. The result is checked below.
        let ptr = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                fd,
                off,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Self {
            ptr: ptr.cast(),
            len,
            skip: 0,
        })
    }

    /// Size in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the region is empty (never: mappings are non-empty).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The whole mapping as a window.
    pub fn as_slice(&self) -> MemSlice<'_> {
        // SAFETY: the mapping stays valid until `self` drops; the window
        // borrows `self`, and nothing takes Rust references into it.
        unsafe { MemSlice::from_raw_parts(self.ptr, self.len) }
    }

    /// Gives `[offset, offset + len)` back to the kernel with
    /// `MADV_REMOVE`: the backing pages of the shared mapping (shmem,
    /// memfd, hugetlbfs, or a file on a filesystem that can punch holes)
    /// are freed, as `fallocate(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE)`
    /// would; every mapping of the same file (the guest's too) then reads
    /// zeros there. The range must be page-aligned in the mapping.
    ///
    /// There is deliberately no `MADV_DONTNEED` fallback: on a shared file
    /// mapping it only drops this process's page table entries, frees
    /// nothing and leaves the old contents in place. Where the backing
    /// store cannot punch holes the kernel's error (`EOPNOTSUPP`, `EINVAL`,
    /// `EPERM` for a sealed memfd) is returned and nothing changed.
    pub fn discard(&self, offset: usize, len: usize) -> io::Result<()> {
        if (offset + self.skip) % PAGE != 0 || offset.checked_add(len).is_none_or(|e| e > self.len)
        {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "bad range"));
        }
        let addr = self.ptr.wrapping_add(offset).cast::<libc::c_void>();
        // SAFETY: the range is inside our own mapping (checked above).
        // MADV_REMOVE frees the backing pages but keeps the mapping valid;
        // nothing in this process holds Rust references into guest memory
        // (only MemSlice's volatile accesses), so no reference observes the
        // contents changing to zeros.
        if unsafe { libc::madvise(addr, len, libc::MADV_REMOVE) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Bytes of the region whose pages are resident (in the page cache of
    /// the backing file or memfd, whichever process touched them), by
    /// `mincore(2)`, counted in whole host pages over the page-aligned
    /// mapping (so at most one page more than `len` at either end).
    pub fn resident_bytes(&self) -> io::Result<u64> {
        // SAFETY: sysconf has no memory effects.
        let page = match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
            n if n > 0 => n as usize,
            _ => PAGE,
        };
        let start = self.ptr.wrapping_sub(self.skip);
        let total = self.len + self.skip;
        let mut resident = 0u64;
        // Bounded chunks keep the vector small for big regions.
        const CHUNK_PAGES: usize = 1 << 16;
        let mut vec = vec![0u8; CHUNK_PAGES];
        let mut done = 0usize;
        while done < total {
            let len = (total - done).min(CHUNK_PAGES * page);
            let pages = len.div_ceil(page);
            // SAFETY: `start + done` is page-aligned (mmap returns aligned
            // mappings and `done` advances in whole pages) and the range
            // lies inside our own mapping; mincore writes `pages` bytes into
            // `vec`, which holds CHUNK_PAGES >= pages bytes.
            let rc = unsafe {
                libc::mincore(
                    start.wrapping_add(done).cast::<libc::c_void>(),
                    len,
                    vec.as_mut_ptr().cast(),
                )
            };
            if rc != 0 {
                return Err(io::Error::last_os_error());
            }
            let n = vec.iter().take(pages).filter(|&&b| b & 1 != 0).count();
            resident += (n * page) as u64;
            done += len;
        }
        Ok(resident)
    }
}

impl Drop for MmapRegion {
    fn drop(&mut self) {
        let (start, len) = (self.ptr.wrapping_sub(self.skip), self.len + self.skip);
        // SAFETY: we own this mapping (`start`, `len`); windows borrow `self`.
        unsafe { libc::munmap(start.cast(), len) };
    }
}

/// Guest memory made of mmap'd regions at guest addresses.
#[derive(Debug, Default)]
pub struct GuestMemoryMmap {
    regions: Vec<(u64, MmapRegion)>,
    next: AtomicUsize,
}

impl GuestMemoryMmap {
    /// Empty guest memory.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a region at guest address `gpa`; refuses overlapping or
    /// overflowing placements.
    pub fn add_region(&mut self, gpa: u64, region: MmapRegion) -> io::Result<()> {
        let end = gpa
            .checked_add(region.len() as u64)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "region overflows"))?;
        if self
            .regions
            .iter()
            .any(|(g, r)| gpa < g + r.len() as u64 && *g < end)
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "region overlaps another",
            ));
        }
        self.regions.push((gpa, region));
        Ok(())
    }

    /// Removes the region starting at `gpa`, returning it.
    pub fn remove_region(&mut self, gpa: u64) -> Option<MmapRegion> {
        let i = self.regions.iter().position(|(g, _)| *g == gpa)?;
        Some(self.regions.remove(i).1)
    }

    /// The regions, as (guest address, region).
    pub fn regions(&self) -> impl Iterator<Item = (u64, &MmapRegion)> {
        self.regions.iter().map(|(g, r)| (*g, r))
    }
}

impl GuestMemory for GuestMemoryMmap {
    #[inline]
    fn slice(&self, addr: u64, len: usize) -> Option<MemSlice<'_>> {
        let end = addr.checked_add(len as u64)?;
        for (gpa, region) in &self.regions {
            if addr >= *gpa && end <= gpa + region.len() as u64 {
                return region.as_slice().subslice((addr - gpa) as usize, len).ok();
            }
        }
        None
    }
}

impl Dma for GuestMemoryMmap {
    fn alloc(&self, len: usize, align: usize) -> Option<DmaBuffer> {
        let (gpa, region) = self.regions.first()?;
        if !align.is_power_of_two() || align > 4096 {
            return None;
        }
        let mut cur = self.next.load(Ordering::Relaxed);
        loop {
            let start = cur.checked_add(align - 1)? & !(align - 1);
            let end = start.checked_add(len)?;
            if end > region.len() {
                return None;
            }
            if self
                .next
                .compare_exchange(cur, end, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
            {
                let w = region.as_slice().subslice(start, len).ok()?;
                w.fill(0, len, 0).ok()?;
                // SAFETY: the range lies in a mapping that lives as long as
                // `self`, handed out once by the bump allocator.
                return Some(unsafe {
                    DmaBuffer::from_raw_parts(w.as_ptr(), len, gpa + start as u64)
                });
            }
            cur = self.next.load(Ordering::Relaxed);
        }
    }

    fn dealloc(&self, _buffer: DmaBuffer) {
        // Bump allocator: reclaimed when the memory drops.
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `write_bytes_if_changed` does not store when nothing changes: on a
    /// read-only page a store would fault and end the test process.
    #[test]
    fn unchanged_bytes_are_not_stored() {
        let r = MmapRegion::anonymous(PAGE).unwrap();
        let hdr = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0];
        r.as_slice().write_bytes(116, &hdr).unwrap();
        r.as_slice().write_bytes(300, &[7; 5]).unwrap();
        // The region's own page-aligned mapping of PAGE bytes (`skip` is 0
        // for an anonymous mapping), made writable again before it is unmapped.
        // SAFETY: changes only the protection of memory this region owns.
        let rc = unsafe { libc::mprotect(r.ptr.cast(), PAGE, libc::PROT_READ) };
        assert_eq!(rc, 0);
        let s = r.as_slice();
        assert_eq!(s.write_bytes_if_changed(116, &hdr), Ok(false));
        assert_eq!(s.write_bytes_if_changed(300, &[7; 5]), Ok(false));
        // SAFETY: as above.
        let rc = unsafe { libc::mprotect(r.ptr.cast(), PAGE, libc::PROT_READ | libc::PROT_WRITE) };
        assert_eq!(rc, 0);
        assert_eq!(s.write_bytes_if_changed(300, &[7, 7, 7, 7, 8]), Ok(true));
        assert_eq!(s.read_u8(304), Ok(8));
    }

    #[test]
    fn regions_translate_and_refuse() {
        let mut m = GuestMemoryMmap::new();
        m.add_region(0x1000, MmapRegion::anonymous(0x2000).unwrap())
            .unwrap();
        m.add_region(0x10_0000, MmapRegion::anonymous(0x1000).unwrap())
            .unwrap();
        assert!(m
            .add_region(0x2000, MmapRegion::anonymous(0x1000).unwrap())
            .is_err());
        assert!(m.slice(0x1000, 0x2000).is_some());
        assert!(m.slice(0x2fff, 2).is_none(), "straddles the end");
        assert!(m.slice(0x10_0000, 16).is_some());
        assert!(m.slice(u64::MAX - 1, 4).is_none());
        m.slice(0x1008, 8).unwrap().write_u64(0, 42).unwrap();
        assert_eq!(m.slice(0x1008, 8).unwrap().read_u64(0).unwrap(), 42);
        let (_, r) = m.regions().next().unwrap();
        r.discard(0, 4096).unwrap();
        assert_eq!(m.slice(0x1008, 8).unwrap().read_u64(0).unwrap(), 0);
        let b = m.alloc(64, 16).unwrap();
        assert_eq!(b.device_addr(), 0x1000);
        assert!(m.remove_region(0x10_0000).is_some());
        assert!(m.slice(0x10_0000, 1).is_none());
    }

    fn memfd(len: usize, flags: libc::c_uint) -> std::os::fd::OwnedFd {
        use std::os::fd::FromRawFd;
        // SAFETY: memfd_create with a NUL-terminated name; the result is
        // checked before it is owned.
        let fd =
            unsafe { libc::memfd_create(c"ringwork-test".as_ptr(), libc::MFD_CLOEXEC | flags) };
        assert!(fd >= 0, "memfd_create: {}", io::Error::last_os_error());
        // SAFETY: a fresh descriptor nothing else owns.
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
        let f = std::fs::File::from(fd);
        f.set_len(len as u64).unwrap();
        f.into()
    }

    /// A range past the end of a regular file is refused (touching it
    /// would raise SIGBUS); ranges inside it, up to its last byte, map.
    #[test]
    fn mapping_past_the_end_of_a_file_is_refused() {
        let fd = memfd(2 * PAGE, 0);
        for (offset, len) in [
            (0, 3 * PAGE),
            (PAGE as u64, 2 * PAGE),
            (2 * PAGE as u64, 1),
            (u64::MAX, 2),
        ] {
            let e = MmapRegion::from_fd(fd.as_fd(), offset, len).unwrap_err();
            assert_eq!(
                e.kind(),
                io::ErrorKind::InvalidInput,
                "{offset:#x}+{len:#x}: {e}"
            );
        }
        for (offset, len) in [
            (0, 2 * PAGE),
            (PAGE as u64, PAGE),
            (2 * PAGE as u64 - 1, 1),
            (100, 7),
        ] {
            let r = MmapRegion::from_fd(fd.as_fd(), offset, len).unwrap();
            r.as_slice().write_u8(len - 1, 1).unwrap();
        }
    }

    fn allocated_bytes(fd: &std::os::fd::OwnedFd) -> u64 {
        use std::os::unix::fs::MetadataExt;
        let f = std::fs::File::from(fd.try_clone().unwrap());
        f.metadata().unwrap().blocks() * 512
    }

    /// A shared memfd mapping (what a vhost-user frontend hands over):
    /// discard frees the file's pages (the memfd's allocated size and the
    /// resident count drop) and another mapping of the same file reads
    /// zeros, which MADV_DONTNEED would not do.
    #[test]
    fn discard_frees_shared_memfd_pages() {
        const LEN: usize = 64 * PAGE;
        let fd = memfd(LEN, 0);
        let a = MmapRegion::from_fd(fd.as_fd(), 0, LEN).unwrap();
        let b = MmapRegion::from_fd(fd.as_fd(), 0, LEN).unwrap();
        a.as_slice().fill(0, LEN, 0x5a).unwrap();
        assert_eq!(allocated_bytes(&fd), LEN as u64);
        assert_eq!(a.resident_bytes().unwrap(), LEN as u64);
        a.discard(8 * PAGE, 16 * PAGE).unwrap();
        assert_eq!(allocated_bytes(&fd), (LEN - 16 * PAGE) as u64);
        assert_eq!(a.resident_bytes().unwrap(), (LEN - 16 * PAGE) as u64);
        assert_eq!(b.resident_bytes().unwrap(), (LEN - 16 * PAGE) as u64);
        let s = b.as_slice();
        assert_eq!(s.read_u8(8 * PAGE).unwrap(), 0, "other mapping sees zeros");
        assert_eq!(s.read_u8(24 * PAGE - 1).unwrap(), 0);
        assert_eq!(s.read_u8(8 * PAGE - 1).unwrap(), 0x5a, "before the range");
        assert_eq!(s.read_u8(24 * PAGE).unwrap(), 0x5a, "after the range");
        assert!(a.discard(1, PAGE).is_err(), "unaligned");
        assert!(a.discard(LEN - PAGE, 2 * PAGE).is_err(), "past the end");
    }

    /// Where the backing store refuses to punch holes the error comes
    /// back (no silent MADV_DONTNEED) and the contents stay: a memfd
    /// sealed with F_SEAL_FUTURE_WRITE (allowed while writable mappings
    /// exist) refuses hole punching with EPERM.
    #[test]
    fn discard_reports_failure_instead_of_pretending() {
        const LEN: usize = 4 * PAGE;
        let fd = memfd(LEN, libc::MFD_ALLOW_SEALING);
        let r = MmapRegion::from_fd(fd.as_fd(), 0, LEN).unwrap();
        r.as_slice().fill(0, LEN, 7).unwrap();
        // SAFETY: fcntl on our own descriptor.
        let rc =
            unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, libc::F_SEAL_FUTURE_WRITE) };
        assert_eq!(rc, 0, "F_ADD_SEALS: {}", io::Error::last_os_error());
        assert!(r.discard(0, PAGE).is_err());
        assert_eq!(r.as_slice().read_u8(0).unwrap(), 7, "contents kept");
        assert_eq!(r.resident_bytes().unwrap(), LEN as u64);
    }
}
