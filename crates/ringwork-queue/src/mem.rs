//! Access to memory shared with the peer.
//!
//! Memory the other side can write is never a Rust reference: it is reached
//! through [`MemSlice`], a bounds-checked window whose every access is a
//! volatile or atomic load or store. Ring indices and flags use
//! acquire/release atomics; payload bytes use volatile word copies or, on
//! x86_64, inline-assembly copies the compiler cannot see into (`copy.rs`). A
//! `MemSlice` can also give its raw pointer for handing to the kernel as an
//! iovec.
//!
//! Two traits say where memory comes from:
//! - [`GuestMemory`] (device side) translates a driver-given address range to
//!   host memory, or refuses it.
//! - [`Dma`] (driver side) allocates memory the device can reach and says at
//!   which device-visible address.
//!
//! Trust and panic contract: nothing here panics. Every offset and length is
//! checked against the window; a failed check is an [`OutOfBounds`] error or
//! `None`. Creating a window is `unsafe` ([`MemSlice::from_raw_parts`]):
//! that is where an implementer promises the memory is really there.
#![allow(unsafe_code)]

use core::marker::PhantomData;
use core::ptr::NonNull;
use core::sync::atomic::{fence, AtomicU16, Ordering};

mod copy;
mod streaming;
use copy::volatile_copy;
pub use streaming::streaming_fence;

/// An access fell outside a memory window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("access of {len} bytes at offset {offset} is outside a {size}-byte window")]
pub struct OutOfBounds {
    /// Offset of the access.
    pub offset: usize,
    /// Length of the access.
    pub len: usize,
    /// Size of the window.
    pub size: usize,
}

/// A bounds-checked window on memory shared with the peer.
///
/// Copying a `MemSlice` copies the window, not the memory. All accesses are
/// volatile or atomic, so concurrent writes by the peer are never undefined
/// behaviour on our side; they can only make us read values we then validate.
#[derive(Clone, Copy)]
pub struct MemSlice<'a> {
    ptr: NonNull<u8>,
    len: usize,
    _life: PhantomData<&'a core::cell::UnsafeCell<[u8]>>,
}

// SAFETY: a MemSlice is a pointer and a length; every access through it is a
// volatile or atomic operation, which is sound to perform from any thread on
// memory that (by the `from_raw_parts` contract) stays valid for 'a.
unsafe impl Send for MemSlice<'_> {}
// SAFETY: as above; shared use from several threads only issues volatile or
// atomic accesses.
unsafe impl Sync for MemSlice<'_> {}

impl core::fmt::Debug for MemSlice<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("MemSlice")
            .field("ptr", &self.ptr)
            .field("len", &self.len)
            .finish()
    }
}

macro_rules! volatile_int {
    ($read:ident, $write:ident, $t:ty, $n:expr) => {
        /// Reads a little-endian value with a volatile load.
        #[inline]
        pub fn $read(&self, offset: usize) -> Result<$t, OutOfBounds> {
            let p = self.ptr_at(offset, $n)?;
            let v = if (p as usize) % $n == 0 {
                // SAFETY: `ptr_at` checked that the $n bytes are inside the
                // window, which is valid memory for 'a; the pointer is aligned.
                unsafe { p.cast::<$t>().read_volatile() }
            } else {
                // SAFETY: in bounds as above; a byte array has alignment 1.
                <$t>::from_ne_bytes(unsafe { p.cast::<[u8; $n]>().read_volatile() })
            };
            Ok(<$t>::from_le(v))
        }

        /// Writes a little-endian value with a volatile store.
        #[inline]
        pub fn $write(&self, offset: usize, value: $t) -> Result<(), OutOfBounds> {
            let p = self.ptr_at(offset, $n)?;
            let v = value.to_le();
            if (p as usize) % $n == 0 {
                // SAFETY: in bounds and aligned (checked above); the window is
                // valid for writes for 'a.
                unsafe { p.cast::<$t>().write_volatile(v) }
            } else {
                // SAFETY: in bounds; byte arrays have alignment 1.
                unsafe { p.cast::<[u8; $n]>().write_volatile(v.to_ne_bytes()) }
            }
            Ok(())
        }
    };
}

impl<'a> MemSlice<'a> {
    /// Creates a window on `len` bytes at `ptr`.
    ///
    /// # Safety
    /// For all of `'a`, the `len` bytes at `ptr` must stay mapped, readable
    /// and writable, and must not be accessed through Rust references (only
    /// through raw-pointer, volatile or atomic accesses, by us or the peer).
    /// `ptr` must be non-null (it may be dangling when `len` is 0).
    #[inline]
    pub unsafe fn from_raw_parts(ptr: *mut u8, len: usize) -> Self {
        Self {
            // SAFETY: the caller promises `ptr` is non-null.
            ptr: unsafe { NonNull::new_unchecked(ptr) },
            len,
            _life: PhantomData,
        }
    }

    /// An empty window.
    #[inline]
    pub fn empty() -> Self {
        Self {
            ptr: NonNull::dangling(),
            len: 0,
            _life: PhantomData,
        }
    }

    /// Size of the window in bytes.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the window is empty.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The raw pointer to the first byte, for handing to the kernel (iovecs).
    /// Dereferencing it is the caller's responsibility.
    #[inline]
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    #[inline]
    fn ptr_at(&self, offset: usize, len: usize) -> Result<*mut u8, OutOfBounds> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len => {
                // SAFETY: offset + len <= self.len, so the result stays inside
                // (or one past) the window's allocation.
                Ok(unsafe { self.ptr.as_ptr().add(offset) })
            }
            _ => Err(OutOfBounds {
                offset,
                len,
                size: self.len,
            }),
        }
    }

    /// The sub-window `[offset, offset + len)`.
    #[inline]
    pub fn subslice(&self, offset: usize, len: usize) -> Result<MemSlice<'a>, OutOfBounds> {
        let p = self.ptr_at(offset, len)?;
        // SAFETY: the sub-range lies inside this window, which satisfies the
        // contract for 'a.
        Ok(unsafe { MemSlice::from_raw_parts(p, len) })
    }

    /// Asks the CPU to start fetching the cache lines of `[offset, offset +
    /// len)` (clamped to the window, at most [`PREFETCH_MAX`] bytes) into
    /// its cache, for reading or, with `write`, for writing. A hint only:
    /// no memory is accessed in the Rust sense, nothing is returned, and an
    /// architecture without a prefetch instruction does nothing. Batching
    /// paths use it to overlap the cache misses of several buffers the peer
    /// just wrote (a frame, a descriptor) instead of taking them one after
    /// another.
    #[inline]
    pub fn prefetch(&self, offset: usize, len: usize, write: bool) {
        if offset >= self.len {
            return;
        }
        let len = len.min(self.len - offset).min(PREFETCH_MAX);
        let start = self.ptr.as_ptr() as usize + offset;
        let mut line = start & !(CACHE_LINE - 1);
        while line < start + len {
            prefetch_line(line as *const u8, write);
            line += CACHE_LINE;
        }
    }

    volatile_int!(read_u16, write_u16, u16, 2);
    volatile_int!(read_u32, write_u32, u32, 4);
    volatile_int!(read_u64, write_u64, u64, 8);

    /// Reads one byte with a volatile load.
    #[inline]
    pub fn read_u8(&self, offset: usize) -> Result<u8, OutOfBounds> {
        let p = self.ptr_at(offset, 1)?;
        // SAFETY: in bounds (checked), valid for 'a.
        Ok(unsafe { p.read_volatile() })
    }

    /// Writes one byte with a volatile store.
    #[inline]
    pub fn write_u8(&self, offset: usize, value: u8) -> Result<(), OutOfBounds> {
        let p = self.ptr_at(offset, 1)?;
        // SAFETY: in bounds (checked), valid for writes for 'a.
        unsafe { p.write_volatile(value) };
        Ok(())
    }

    /// Loads a little-endian `u16` with acquire ordering (ring indices and
    /// flags: everything the peer wrote before its release store is visible
    /// after this load).
    #[inline]
    pub fn load_u16_acquire(&self, offset: usize) -> Result<u16, OutOfBounds> {
        let p = self.ptr_at(offset, 2)?;
        if (p as usize) % 2 == 0 {
            // SAFETY: in bounds, aligned to 2, valid for 'a; all concurrent
            // accesses to this location are atomic or volatile.
            let a = unsafe { AtomicU16::from_ptr(p.cast::<u16>()) };
            Ok(u16::from_le(a.load(Ordering::Acquire)))
        } else {
            let v = self.read_u16(offset)?;
            fence(Ordering::Acquire);
            Ok(v)
        }
    }

    /// Stores a little-endian `u16` with release ordering (publishes every
    /// earlier write to the peer).
    #[inline]
    pub fn store_u16_release(&self, offset: usize, value: u16) -> Result<(), OutOfBounds> {
        let p = self.ptr_at(offset, 2)?;
        if (p as usize) % 2 == 0 {
            // SAFETY: in bounds, aligned, valid for writes for 'a.
            let a = unsafe { AtomicU16::from_ptr(p.cast::<u16>()) };
            a.store(value.to_le(), Ordering::Release);
        } else {
            fence(Ordering::Release);
            self.write_u16(offset, value)?;
        }
        Ok(())
    }

    /// Stores a little-endian `u64` with release ordering (publishes every
    /// earlier write to the peer). At an 8-aligned address it is one atomic
    /// store, so the peer sees all eight bytes change at once (a packed
    /// ring's used descriptor: length, id and flags together); elsewhere a
    /// release fence and a volatile store, whose bytes may then become
    /// visible in any order.
    #[inline]
    pub fn store_u64_release(&self, offset: usize, value: u64) -> Result<(), OutOfBounds> {
        let p = self.ptr_at(offset, 8)?;
        #[cfg(target_has_atomic = "64")]
        if (p as usize) % 8 == 0 {
            // SAFETY: in bounds, aligned, valid for writes for 'a; all
            // concurrent accesses to this location are atomic or volatile.
            let a = unsafe { core::sync::atomic::AtomicU64::from_ptr(p.cast::<u64>()) };
            a.store(value.to_le(), Ordering::Release);
            return Ok(());
        }
        let _ = p;
        fence(Ordering::Release);
        self.write_u64(offset, value)
    }

    /// Copies `dst.len()` bytes starting at `offset` out of the window.
    #[inline]
    pub fn read_bytes(&self, offset: usize, dst: &mut [u8]) -> Result<(), OutOfBounds> {
        let src = self.ptr_at(offset, dst.len())?;
        // SAFETY: `src..src+len` is inside the window (checked); `dst` is our
        // own private buffer of the same length.
        unsafe { volatile_copy(src, dst.as_mut_ptr(), dst.len(), false) };
        Ok(())
    }

    /// Appends the `len` bytes at `offset` to `v` (growing it if needed),
    /// without zero-filling them first.
    #[inline]
    pub fn read_append(
        &self,
        offset: usize,
        len: usize,
        v: &mut alloc::vec::Vec<u8>,
    ) -> Result<(), OutOfBounds> {
        let src = self.ptr_at(offset, len)?;
        v.reserve(len);
        let dst = v.spare_capacity_mut().as_mut_ptr().cast::<u8>();
        // SAFETY: `src..src+len` is inside the window (checked); `dst` is
        // the vector's spare capacity, at least `len` bytes after
        // `reserve`, private and not overlapping shared memory. The copy
        // initialises all `len` bytes, so the new length covers only
        // initialised bytes.
        unsafe {
            volatile_copy(src, dst, len, false);
            v.set_len(v.len() + len);
        }
        Ok(())
    }

    /// Copies `src` into the window starting at `offset`.
    #[inline]
    pub fn write_bytes(&self, offset: usize, src: &[u8]) -> Result<(), OutOfBounds> {
        let dst = self.ptr_at(offset, src.len())?;
        // SAFETY: `dst..dst+len` is inside the window (checked), valid for
        // writes; `src` is our own buffer, only read in this direction
        // (the `*mut` is never written through).
        unsafe { volatile_copy(dst, src.as_ptr().cast_mut(), src.len(), true) };
        Ok(())
    }

    /// [`Self::write_bytes`] with streaming (non-temporal) stores where the
    /// target has them (x86_64: the 16-byte-aligned middle of the range):
    /// the bytes go to memory without this core first taking their cache
    /// lines from the peer's cache, and the peer reads them from memory.
    /// For a receive copy whose buffers the peer's core last held, where
    /// waiting for those lines costs the writer more than the peer's read
    /// from memory costs the peer.
    ///
    /// The stores are weakly ordered: call [`streaming_fence`] after them
    /// and before the store that publishes the bytes (a used entry, an
    /// available index), or the peer may see that store first.
    #[inline]
    pub fn write_bytes_streaming(&self, offset: usize, src: &[u8]) -> Result<(), OutOfBounds> {
        let dst = self.ptr_at(offset, src.len())?;
        // SAFETY: `dst..dst+len` is inside the window (checked), valid for
        // writes; `src` is our own buffer, only read.
        unsafe { streaming::streaming_copy(dst, src.as_ptr(), src.len()) };
        Ok(())
    }

    /// Copies `src` (at most 16 bytes) into the window at `offset` unless
    /// the window already holds exactly those bytes; returns whether it
    /// stored. Longer `src` is always written, as by [`Self::write_bytes`].
    ///
    /// For a small field rewritten with the same value on every use, such
    /// as the virtio-net header at the start of a receive buffer: a store
    /// takes the line out of the peer's cache even when nothing changes,
    /// and the peer, reading it next, waits for it to come back across
    /// cores. A load leaves the line shared in both caches. (DPDK's vhost
    /// library compares its header fields before storing them for the same
    /// reason.) A peer changing the bytes meanwhile only changes what it
    /// reads from its own buffer.
    #[inline]
    pub fn write_bytes_if_changed(&self, offset: usize, src: &[u8]) -> Result<bool, OutOfBounds> {
        if let Ok(h) = <&[u8; 12]>::try_from(src) {
            // The virtio-net header with `num_buffers`: two loads, no
            // byte compare.
            let (lo, hi) = h.split_at(8);
            let lo = u64::from_le_bytes(lo.try_into().unwrap_or_default());
            let hi = u32::from_le_bytes(hi.try_into().unwrap_or_default());
            if self.read_u64(offset)? == lo && self.read_u32(offset + 8)? == hi {
                return Ok(false);
            }
        } else if let Some(cur) = [0u8; 16].get_mut(..src.len()) {
            self.read_bytes(offset, cur)?;
            if cur == src {
                return Ok(false);
            }
        }
        self.write_bytes(offset, src)?;
        Ok(true)
    }

    /// Sets `len` bytes starting at `offset` to `byte`.
    pub fn fill(&self, offset: usize, len: usize, byte: u8) -> Result<(), OutOfBounds> {
        let dst = self.ptr_at(offset, len)?;
        // Bytes up to the first 8-aligned address, then whole words, then
        // the tail: as fast as a copy, still one volatile store per unit.
        let head = dst.align_offset(8).min(len);
        let word = u64::from_ne_bytes([byte; 8]);
        let mut i = 0;
        while i < head {
            // SAFETY: i < len and the range is inside the window (checked).
            unsafe { dst.add(i).write_volatile(byte) };
            i += 1;
        }
        while i + 8 <= len {
            // SAFETY: i + 8 <= len, inside the window; `dst + i` is 8-aligned
            // (i - head is a multiple of 8 and `dst + head` is aligned).
            unsafe { dst.add(i).cast::<u64>().write_volatile(word) };
            i += 8;
        }
        while i < len {
            // SAFETY: i < len.
            unsafe { dst.add(i).write_volatile(byte) };
            i += 1;
        }
        Ok(())
    }
}

/// Most bytes [`MemSlice::prefetch`] asks for at once (four cache lines).
pub const PREFETCH_MAX: usize = 256;

/// The cache-line size the prefetch hints step by.
const CACHE_LINE: usize = 64;

/// One prefetch hint for the line holding `p`.
#[inline(always)]
#[allow(unused_variables)]
fn prefetch_line(p: *const u8, write: bool) {
    #[cfg(target_arch = "x86_64")]
    {
        if write {
            // SAFETY: PREFETCHW is a hint: it never faults, does not change
            // memory or flags and touches no stack (CPUs without it decode it
            // as a no-op). `p` lies inside a window the caller holds.
            unsafe {
                core::arch::asm!("prefetchw [{0}]", in(reg) p,
                    options(nostack, preserves_flags, readonly))
            };
        } else {
            // SAFETY: as above, for PREFETCHT0.
            unsafe {
                core::arch::asm!("prefetcht0 [{0}]", in(reg) p,
                    options(nostack, preserves_flags, readonly))
            };
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        if write {
            // SAFETY: PRFM is a hint: it never faults, does not change memory
            // or flags and touches no stack.
            unsafe {
                core::arch::asm!("prfm pstl1keep, [{0}]", in(reg) p,
                    options(nostack, preserves_flags, readonly))
            };
        } else {
            // SAFETY: as above.
            unsafe {
                core::arch::asm!("prfm pldl1keep, [{0}]", in(reg) p,
                    options(nostack, preserves_flags, readonly))
            };
        }
    }
}

/// Memory the driver shared with the device, as the device sees it.
///
/// Implementations translate a driver-given address range to a host window.
/// They must refuse (return `None`) any range not entirely inside memory
/// shared with this device, and must check `addr + len` for overflow. The
/// soundness promise is made where the implementation calls
/// [`MemSlice::from_raw_parts`].
pub trait GuestMemory {
    /// The host window for `[addr, addr + len)`, or `None` when any byte of
    /// it is outside shared memory (or the range overflows).
    fn slice(&self, addr: u64, len: usize) -> Option<MemSlice<'_>>;

    /// Whether `[addr, addr + len)` is entirely inside shared memory.
    #[inline]
    fn contains(&self, addr: u64, len: usize) -> bool {
        self.slice(addr, len).is_some()
    }
}

impl<T: GuestMemory + ?Sized> GuestMemory for &T {
    #[inline]
    fn slice(&self, addr: u64, len: usize) -> Option<MemSlice<'_>> {
        (**self).slice(addr, len)
    }
    #[inline]
    fn contains(&self, addr: u64, len: usize) -> bool {
        (**self).contains(addr, len)
    }
}

/// A block of DMA-able memory: a host window and the address the device uses
/// for its first byte.
#[derive(Debug)]
pub struct DmaBuffer {
    ptr: NonNull<u8>,
    len: usize,
    device_addr: u64,
}

// SAFETY: a DmaBuffer is a pointer, a length and an address; it is only used
// through `MemSlice` (volatile/atomic accesses), which is thread-safe.
unsafe impl Send for DmaBuffer {}
// SAFETY: as above.
unsafe impl Sync for DmaBuffer {}

impl DmaBuffer {
    /// Describes an allocation.
    ///
    /// # Safety
    /// `ptr` must be non-null and valid for reads and writes of `len` bytes
    /// until the buffer is given back to the [`Dma::dealloc`] of the
    /// allocator that made it, and must be accessed only through raw or
    /// volatile/atomic accesses (never Rust references).
    pub unsafe fn from_raw_parts(ptr: *mut u8, len: usize, device_addr: u64) -> Self {
        Self {
            // SAFETY: the caller promises non-null.
            ptr: unsafe { NonNull::new_unchecked(ptr) },
            len,
            device_addr,
        }
    }

    /// The host window on the buffer.
    #[inline]
    pub fn slice(&self) -> MemSlice<'_> {
        // SAFETY: by the `from_raw_parts` contract the memory is valid while
        // the buffer exists, and the window's lifetime is tied to `self`.
        unsafe { MemSlice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// Device-visible address of the first byte.
    #[inline]
    pub fn device_addr(&self) -> u64 {
        self.device_addr
    }

    /// Size in bytes.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the buffer is empty.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// An allocator of memory the device can access (driver side).
pub trait Dma {
    /// Allocates `len` zeroed bytes aligned (both host pointer and device
    /// address) to `align`, a power of two; `None` when out of memory.
    fn alloc(&self, len: usize, align: usize) -> Option<DmaBuffer>;

    /// Gives a buffer from [`Dma::alloc`] back.
    fn dealloc(&self, buffer: DmaBuffer);
}

#[cfg(feature = "std")]
impl<T: Dma + ?Sized> Dma for std::sync::Arc<T> {
    fn alloc(&self, len: usize, align: usize) -> Option<DmaBuffer> {
        (**self).alloc(len, align)
    }
    fn dealloc(&self, buffer: DmaBuffer) {
        (**self).dealloc(buffer)
    }
}

#[cfg(feature = "std")]
impl<T: GuestMemory + ?Sized> GuestMemory for std::sync::Arc<T> {
    #[inline]
    fn slice(&self, addr: u64, len: usize) -> Option<MemSlice<'_>> {
        (**self).slice(addr, len)
    }
}

impl<T: Dma + ?Sized> Dma for &T {
    fn alloc(&self, len: usize, align: usize) -> Option<DmaBuffer> {
        (**self).alloc(len, align)
    }
    fn dealloc(&self, buffer: DmaBuffer) {
        (**self).dealloc(buffer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_checked() {
        let mut backing = [0u64; 4];
        // SAFETY: a local array, accessed only through the window below.
        let s = unsafe { MemSlice::from_raw_parts(backing.as_mut_ptr().cast(), 32) };
        s.write_u32(0, 0x1122_3344).unwrap();
        assert_eq!(s.read_u8(0).unwrap(), 0x44);
        assert_eq!(s.read_u16(1).unwrap(), 0x2233); // unaligned path
        s.write_u64(24, u64::MAX).unwrap();
        assert_eq!(
            s.write_u64(25, 1),
            Err(OutOfBounds {
                offset: 25,
                len: 8,
                size: 32
            })
        );
        assert!(s.read_u16(usize::MAX).is_err());
        assert!(s.subslice(30, 4).is_err());
        let sub = s.subslice(8, 8).unwrap();
        sub.store_u16_release(0, 7).unwrap();
        assert_eq!(s.load_u16_acquire(8).unwrap(), 7);
        // Aligned (one atomic store) and unaligned (fence and bytes).
        s.store_u64_release(16, 0x0102_0304_0506_0708).unwrap();
        assert_eq!(s.read_u32(16).unwrap(), 0x0506_0708);
        assert_eq!(s.read_u16(22).unwrap(), 0x0102);
        s.store_u64_release(3, 0x1122_3344_5566_7788).unwrap();
        assert_eq!(s.read_u64(3).unwrap(), 0x1122_3344_5566_7788);
        assert!(s.store_u64_release(25, 0).is_err());
        let mut out = [0u8; 13];
        s.write_bytes(3, b"hello, world!").unwrap();
        s.read_bytes(3, &mut out).unwrap();
        assert_eq!(&out, b"hello, world!");
        let mut before = [0u8; 32];
        s.read_bytes(0, &mut before).unwrap();
        assert!(s.write_bytes_streaming(20, &[0; 13]).is_err());
        let mut after = [0u8; 32];
        s.read_bytes(0, &mut after).unwrap();
        assert_eq!(before, after, "a refused copy stores nothing");
        s.fill(0, 32, 0xab).unwrap();
        assert_eq!(s.read_u64(16).unwrap(), 0xabab_abab_abab_abab);
        assert!(s.fill(1, 32, 0).is_err());
        assert!(MemSlice::empty().is_empty());
    }

    #[test]
    fn fill_covers_exactly_the_range_at_any_alignment() {
        let mut buf = [0u64; 8];
        // SAFETY: a private, live, writable buffer of 64 bytes.
        let s = unsafe { MemSlice::from_raw_parts(buf.as_mut_ptr().cast(), 64) };
        for start in 0..12 {
            for len in [0, 1, 7, 8, 9, 17, 40] {
                s.fill(0, 64, 0x11).unwrap();
                s.fill(start, len, 0xee).unwrap();
                let mut out = [0u8; 64];
                s.read_bytes(0, &mut out).unwrap();
                for (i, b) in out.iter().enumerate() {
                    let inside = i >= start && i < start + len;
                    assert_eq!(*b, if inside { 0xee } else { 0x11 }, "{start}+{len} @{i}");
                }
            }
        }
    }

    #[test]
    fn copies_are_exact_at_any_alignment_and_length() {
        let mut buf = [0u64; 16];
        // SAFETY: a private, live, writable buffer of 128 bytes.
        let s = unsafe { MemSlice::from_raw_parts(buf.as_mut_ptr().cast(), 128) };
        let pattern: Vec<u8> = (0..80u8)
            .map(|i| i.wrapping_mul(37).wrapping_add(1))
            .collect();
        for (start, streaming) in (0..16).flat_map(|s| [(s, false), (s, true)]) {
            for len in 0..=pattern.len().min(128 - start) {
                s.fill(0, 128, 0).unwrap();
                if streaming {
                    s.write_bytes_streaming(start, &pattern[..len]).unwrap();
                    streaming_fence();
                } else {
                    s.write_bytes(start, &pattern[..len]).unwrap();
                }
                let mut all = [0u8; 128];
                s.read_bytes(0, &mut all).unwrap();
                for (i, b) in all.iter().enumerate() {
                    let want = if i >= start && i < start + len {
                        pattern[i - start]
                    } else {
                        0
                    };
                    assert_eq!(*b, want, "write {start}+{len} @{i}");
                }
                let mut back = vec![0xffu8; len];
                s.read_bytes(start, &mut back).unwrap();
                assert_eq!(back, pattern[..len], "read {start}+{len}");
            }
        }
    }

    #[test]
    fn write_bytes_if_changed_stores_exactly_what_differs() {
        let mut buf = [0u64; 8];
        // SAFETY: a private, live, writable buffer of 64 bytes.
        let s = unsafe { MemSlice::from_raw_parts(buf.as_mut_ptr().cast(), 64) };
        // The 12-byte path (two loads) at every alignment, and other
        // lengths (byte compare, or always stored above 16 bytes).
        for len in [12, 0, 1, 10, 16, 20] {
            let new: Vec<u8> = (0..len as u8).map(|i| i ^ 0x5a).collect();
            for start in 0..8 {
                s.fill(0, 64, 0x11).unwrap();
                // Any byte different: stored, and only those bytes.
                if len > 0 {
                    assert!(s.write_bytes_if_changed(start, &new).unwrap());
                }
                let mut all = [0u8; 64];
                s.read_bytes(0, &mut all).unwrap();
                for (i, b) in all.iter().enumerate() {
                    let inside = i >= start && i < start + len;
                    let want = if inside { new[i - start] } else { 0x11 };
                    assert_eq!(*b, want, "{len} bytes at {start}, byte {i}");
                }
                // The same bytes again: nothing to store (always stored
                // above 16 bytes).
                assert_eq!(s.write_bytes_if_changed(start, &new).unwrap(), len > 16);
                // One byte different, the last (caught by the second load
                // of the 12-byte path) or the first.
                for at in [len.saturating_sub(1), 0] {
                    if len == 0 {
                        break;
                    }
                    let mut other = new.clone();
                    other[at] ^= 0xff;
                    assert!(s.write_bytes_if_changed(start, &other).unwrap());
                    let mut back = vec![0u8; len];
                    s.read_bytes(start, &mut back).unwrap();
                    assert_eq!(back, other, "{len} bytes at {start}, changed byte {at}");
                    s.write_bytes(start, &new).unwrap();
                }
            }
        }
        assert!(s.write_bytes_if_changed(60, &[0; 12]).is_err());
        assert!(s.write_bytes_if_changed(50, &[0; 20]).is_err());
    }

    #[test]
    fn read_append_adds_exactly_the_bytes() {
        let mut buf = [0u64; 8];
        // SAFETY: a private, live, writable buffer of 64 bytes.
        let s = unsafe { MemSlice::from_raw_parts(buf.as_mut_ptr().cast(), 64) };
        let pattern: Vec<u8> = (1..=64u8).collect();
        s.write_bytes(0, &pattern).unwrap();
        for start in 0..8 {
            for len in [0, 1, 5, 8, 13, 40] {
                let mut v = vec![0xee];
                s.read_append(start, len, &mut v).unwrap();
                assert_eq!(v[0], 0xee);
                assert_eq!(v[1..], pattern[start..start + len], "{start}+{len}");
            }
        }
        let mut v = Vec::new();
        assert!(s.read_append(60, 5, &mut v).is_err());
        assert!(v.is_empty());
    }
}
