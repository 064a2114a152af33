//! Register access for driver-side transports: the one trait that lets the
//! same transport code drive real device registers in a guest and a
//! device-side model in a test.
//!
//! [`VolatileRegisters`] is the guest implementation (volatile loads and
//! stores through a mapped register window); [`crate::Loopback`]
//! (`test-utils`) forwards to a device-side model.
#![allow(unsafe_code)]

use core::ptr::NonNull;

/// A window of device registers (an MMIO block, a PCI BAR region, a legacy
/// I/O port range, or PCI configuration space), accessed with the widths
/// the transports require. Offsets are from the start of the window.
///
/// Accesses the window cannot serve (out of range) read as all ones, like a
/// PCI master abort, and writes are dropped: a driver bug, not a reason to
/// panic.
pub trait RegisterAccess {
    /// An 8-bit read.
    fn read8(&self, offset: usize) -> u8;
    /// A 16-bit little-endian read.
    fn read16(&self, offset: usize) -> u16;
    /// A 32-bit little-endian read.
    fn read32(&self, offset: usize) -> u32;
    /// An 8-bit write.
    fn write8(&self, offset: usize, value: u8);
    /// A 16-bit little-endian write.
    fn write16(&self, offset: usize, value: u16);
    /// A 32-bit little-endian write.
    fn write32(&self, offset: usize, value: u32);
}

impl<R: RegisterAccess + ?Sized> RegisterAccess for &R {
    fn read8(&self, offset: usize) -> u8 {
        (**self).read8(offset)
    }
    fn read16(&self, offset: usize) -> u16 {
        (**self).read16(offset)
    }
    fn read32(&self, offset: usize) -> u32 {
        (**self).read32(offset)
    }
    fn write8(&self, offset: usize, value: u8) {
        (**self).write8(offset, value)
    }
    fn write16(&self, offset: usize, value: u16) {
        (**self).write16(offset, value)
    }
    fn write32(&self, offset: usize, value: u32) {
        (**self).write32(offset, value)
    }
}

/// Memory-mapped device registers, accessed with volatile loads and stores
/// of exactly the requested width (what a guest driver uses).
#[derive(Debug)]
pub struct VolatileRegisters {
    base: NonNull<u8>,
    len: usize,
}

// SAFETY: the window is device memory reached only through volatile
// accesses; the caller of `new` promised it stays mapped.
unsafe impl Send for VolatileRegisters {}
// SAFETY: as above; concurrent volatile accesses are what device registers
// expect (serialisation is the driver's business).
unsafe impl Sync for VolatileRegisters {}

impl VolatileRegisters {
    /// A window of `len` bytes at `base`.
    ///
    /// # Safety
    /// `base` must be non-null, valid for volatile reads and writes of
    /// `len` bytes for the lifetime of the value (device registers mapped
    /// uncached, or memory standing in for them), and aligned to 4 bytes.
    pub unsafe fn new(base: *mut u8, len: usize) -> Self {
        Self {
            // SAFETY: the caller promises non-null.
            base: unsafe { NonNull::new_unchecked(base) },
            len,
        }
    }

    fn ptr(&self, offset: usize, width: usize) -> Option<*mut u8> {
        let end = offset.checked_add(width)?;
        if end > self.len || offset % width != 0 {
            return None;
        }
        // SAFETY: offset + width <= len, so the pointer stays in the window.
        Some(unsafe { self.base.as_ptr().add(offset) })
    }
}

macro_rules! volatile_rw {
    ($read:ident, $write:ident, $t:ty) => {
        fn $read(&self, offset: usize) -> $t {
            match self.ptr(offset, core::mem::size_of::<$t>()) {
                // SAFETY: in bounds and naturally aligned (checked by `ptr`;
                // the base is 4-byte aligned per `new`), valid per `new`.
                Some(p) => <$t>::from_le(unsafe { p.cast::<$t>().read_volatile() }),
                None => <$t>::MAX,
            }
        }
        fn $write(&self, offset: usize, value: $t) {
            if let Some(p) = self.ptr(offset, core::mem::size_of::<$t>()) {
                // SAFETY: as for the read.
                unsafe { p.cast::<$t>().write_volatile(value.to_le()) }
            }
        }
    };
}

impl RegisterAccess for VolatileRegisters {
    fn read8(&self, offset: usize) -> u8 {
        match self.ptr(offset, 1) {
            // SAFETY: in bounds (checked by `ptr`), valid per `new`.
            Some(p) => unsafe { p.read_volatile() },
            None => u8::MAX,
        }
    }
    fn write8(&self, offset: usize, value: u8) {
        if let Some(p) = self.ptr(offset, 1) {
            // SAFETY: in bounds (checked by `ptr`), valid per `new`.
            unsafe { p.write_volatile(value) }
        }
    }
    volatile_rw!(read16, write16, u16);
    volatile_rw!(read32, write32, u32);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volatile_window_reads_writes_and_refuses_out_of_range() {
        let mut backing = [0u32; 4];
        // SAFETY: `backing` outlives `r`, is 16 bytes and 4-byte aligned.
        let r = unsafe { VolatileRegisters::new(backing.as_mut_ptr().cast(), 16) };
        r.write32(4, 0x1122_3344);
        assert_eq!(r.read32(4), 0x1122_3344);
        assert_eq!(r.read16(4), 0x3344);
        assert_eq!(r.read8(7), 0x11);
        r.write16(8, 0xbeef);
        r.write8(12, 0x5a);
        assert_eq!((r.read16(8), r.read8(12)), (0xbeef, 0x5a));
        // Out of range or misaligned: all ones, writes dropped.
        assert_eq!(r.read32(16), u32::MAX);
        assert_eq!(r.read32(2), u32::MAX);
        assert_eq!(r.read16(15), u16::MAX);
        r.write32(14, 0);
        r.write32(usize::MAX - 1, 0);
        let _ = r;
        assert_eq!(backing[1], 0x1122_3344);
        assert_eq!(backing[2], 0xbeef);
        assert_eq!(backing[3], 0x5a);
    }
}
