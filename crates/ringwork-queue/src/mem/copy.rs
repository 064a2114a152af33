//! Byte copies between shared memory and a private buffer, for
//! [`MemSlice`](super::MemSlice)'s `read_bytes`, `read_append` and
//! `write_bytes`.
//!
//! Shared memory is never reached through a Rust reference or through plain
//! loads and stores the compiler may merge, split, repeat or drop. Two ways
//! are used:
//! - on x86_64 (outside Miri), copies of 4 bytes or more are inline assembly
//!   moving unaligned 16-, 8- or 4-byte units, the last unit overlapping the
//!   one before it so no tail loop is needed (as `memcpy` implementations
//!   do). The compiler treats an `asm!` block as opaque code that reads and
//!   writes the memory its pointers reach, like a call into an external
//!   `memcpy`, so it assumes nothing about the bytes: the same contract a
//!   volatile access gives. Overlapping units read or write a few bytes
//!   twice; written, they get the same value twice; read, a peer changing
//!   them meanwhile only changes which bytes we get, as with any copy of
//!   memory the peer writes.
//! - everywhere else, and for shorter copies, naturally aligned volatile
//!   units ([`units`]).
//!
//! Trust and panic contract: nothing here panics; the callers check the
//! bounds and pass pointers valid for the whole length.
#![allow(unsafe_code)]

/// Copies `len` bytes between shared memory and a private buffer:
/// `shared` → `private`, or `private` → `shared` with `to_shared`.
///
/// # Safety
/// `shared` and `private` must be valid for `len` bytes (reads and writes
/// as the direction needs; `shared` is only accessed by volatile units or
/// inline assembly), and the ranges must not overlap.
#[inline(always)]
pub(super) unsafe fn volatile_copy(shared: *mut u8, private: *mut u8, len: usize, to_shared: bool) {
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    if len >= 4 {
        let (dst, src) = if to_shared {
            (shared, private.cast_const())
        } else {
            (private, shared.cast_const())
        };
        // SAFETY: the caller's contract: both valid for `len` bytes in the
        // direction used, not overlapping; `len >= 4`.
        unsafe { x86::copy(dst, src, len) };
        return;
    }
    // SAFETY: the caller's contract.
    unsafe { units(shared, private, len, to_shared) }
}

#[cfg(all(target_arch = "x86_64", not(miri)))]
mod x86 {
    use core::arch::asm;

    /// Copies `len >= 4` bytes from `src` to `dst` in unaligned units:
    /// 16-byte SSE2 moves (always present on x86_64) from the start, and
    /// one more ending exactly at `len`; below 16 bytes, two 8- or two
    /// 4-byte moves, the second ending at `len`.
    ///
    /// # Safety
    /// `src` valid for reads and `dst` for writes of `len` bytes, the
    /// ranges not overlapping, and `len >= 4`.
    #[inline(always)]
    pub(super) unsafe fn copy(dst: *mut u8, src: *const u8, len: usize) {
        if len >= 16 {
            // SAFETY: every access is `[p + i, p + i + 16)` with
            // `i <= len - 16` (the loop runs while `i < last`, `last =
            // len - 16`, then copies at `last`): inside both ranges. The
            // block keeps the stack untouched and only clobbers the
            // registers named.
            unsafe {
                asm!(
                    "2:",
                    "movdqu {x}, xmmword ptr [{src} + {i}]",
                    "movdqu xmmword ptr [{dst} + {i}], {x}",
                    "add {i}, 16",
                    "cmp {i}, {last}",
                    "jb 2b",
                    "movdqu {x}, xmmword ptr [{src} + {last}]",
                    "movdqu xmmword ptr [{dst} + {last}], {x}",
                    src = in(reg) src,
                    dst = in(reg) dst,
                    i = inout(reg) 0usize => _,
                    last = in(reg) len - 16,
                    x = out(xmm_reg) _,
                    options(nostack),
                )
            };
        } else if len >= 8 {
            // SAFETY: `[0, 8)` and `[len - 8, len)` with `8 <= len`: inside
            // both ranges.
            unsafe {
                asm!(
                    "mov {t}, qword ptr [{src}]",
                    "mov qword ptr [{dst}], {t}",
                    "mov {t}, qword ptr [{src} + {last}]",
                    "mov qword ptr [{dst} + {last}], {t}",
                    src = in(reg) src,
                    dst = in(reg) dst,
                    last = in(reg) len - 8,
                    t = out(reg) _,
                    options(nostack, preserves_flags),
                )
            };
        } else {
            // SAFETY: `[0, 4)` and `[len - 4, len)` with `4 <= len`: inside
            // both ranges.
            unsafe {
                asm!(
                    "mov {t:e}, dword ptr [{src}]",
                    "mov dword ptr [{dst}], {t:e}",
                    "mov {t:e}, dword ptr [{src} + {last}]",
                    "mov dword ptr [{dst} + {last}], {t:e}",
                    src = in(reg) src,
                    dst = in(reg) dst,
                    last = in(reg) len - 4,
                    t = out(reg) _,
                    options(nostack, preserves_flags),
                )
            };
        }
    }
}

/// Moves one naturally aligned unit of `T` between shared memory and a
/// private buffer: a volatile load from `shared` into `private` or, with
/// `to_shared`, a volatile store of `private` into `shared`.
///
/// # Safety
/// `shared` is aligned for `T`; both pointers are valid for
/// `size_of::<T>()` bytes (`private` is accessed unaligned).
#[inline(always)]
unsafe fn unit<T: Copy>(shared: *mut u8, private: *mut u8, to_shared: bool) {
    // SAFETY: the caller's contract.
    unsafe {
        if to_shared {
            shared
                .cast::<T>()
                .write_volatile(private.cast::<T>().read_unaligned());
        } else {
            private
                .cast::<T>()
                .write_unaligned(shared.cast::<T>().read_volatile());
        }
    }
}

/// Volatile copy in naturally aligned units on the shared side: up to one
/// byte, one `u16` and one `u32` to reach an 8-byte boundary, then `u64`
/// words, then one `u32`, `u16` and byte at most. Each unit is accessed
/// once.
///
/// # Safety
/// As [`volatile_copy`].
#[inline(always)]
pub(super) unsafe fn units(shared: *mut u8, private: *mut u8, len: usize, to_shared: bool) {
    let base = shared as usize;
    let mut i = 0;
    // SAFETY: for every unit below, `i + size <= len` is checked, and the
    // alignment of `shared + i` follows from the address bits tested.
    unsafe {
        let (s, p) = (|i| shared.add(i), |i| private.add(i));
        if base & 1 != 0 && i < len {
            unit::<u8>(s(i), p(i), to_shared);
            i += 1;
        }
        if (base + i) & 2 != 0 && i + 2 <= len {
            unit::<u16>(s(i), p(i), to_shared);
            i += 2;
        }
        if (base + i) & 4 != 0 && i + 4 <= len {
            unit::<u32>(s(i), p(i), to_shared);
            i += 4;
        }
        if (base + i) & 7 == 0 {
            while i + 8 <= len {
                unit::<u64>(s(i), p(i), to_shared);
                i += 8;
            }
        }
        while i + 4 <= len && (base + i) & 3 == 0 {
            unit::<u32>(s(i), p(i), to_shared);
            i += 4;
        }
        while i + 2 <= len && (base + i) & 1 == 0 {
            unit::<u16>(s(i), p(i), to_shared);
            i += 2;
        }
        while i < len {
            unit::<u8>(s(i), p(i), to_shared);
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both copy paths (the platform's and the aligned volatile units), both
    /// directions, every alignment of both sides and lengths through several
    /// 16-byte loop turns: exactly the bytes asked for, nothing around them.
    #[test]
    fn every_path_copies_exactly_the_range() {
        // Every byte value but the two fill bytes below.
        let pattern: Vec<u8> = (0..300u32)
            .map(|i| (i * 37 + 1) as u8)
            .map(|b| if b == 0xee || b == 0x55 { b ^ 1 } else { b })
            .collect();
        type Copy = unsafe fn(*mut u8, *mut u8, usize, bool);
        let paths: [(&str, Copy); 2] = [("platform", volatile_copy), ("units", units)];
        for (name, copy) in paths {
            for to_shared in [false, true] {
                for a in 0..16 {
                    for b in [0, 1, 3, 8] {
                        for len in (0..=70).chain([95, 96, 97, 200, 255]) {
                            // Source bytes around the range differ from the
                            // destination's, so a copy past either end shows.
                            let (src_fill, dst_fill) = (0xee, 0x55);
                            let (mut shared, mut private) = if to_shared {
                                (vec![dst_fill; 300 + 32], vec![src_fill; 300 + 32])
                            } else {
                                (vec![src_fill; 300 + 32], vec![dst_fill; 300 + 32])
                            };
                            if to_shared {
                                private[b..b + len].copy_from_slice(&pattern[..len]);
                            } else {
                                shared[a..a + len].copy_from_slice(&pattern[..len]);
                            }
                            // SAFETY: both buffers are private, live, hold
                            // `len` bytes past the offsets, and are distinct.
                            unsafe {
                                copy(
                                    shared.as_mut_ptr().add(a),
                                    private.as_mut_ptr().add(b),
                                    len,
                                    to_shared,
                                )
                            };
                            let (out, at) = if to_shared {
                                (&shared, a)
                            } else {
                                (&private, b)
                            };
                            for (i, &v) in out.iter().enumerate() {
                                let want = if i >= at && i < at + len {
                                    pattern[i - at]
                                } else {
                                    dst_fill
                                };
                                assert_eq!(
                                    v, want,
                                    "{name} to_shared={to_shared} {a}/{b}+{len} @{i}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}
