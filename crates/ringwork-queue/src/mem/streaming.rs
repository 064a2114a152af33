//! Streaming (non-temporal) stores into shared memory, for
//! [`MemSlice::write_bytes_streaming`](super::MemSlice::write_bytes_streaming),
//! and the fence that orders them ([`streaming_fence`]).
//!
//! An ordinary store to a line the peer's core holds first takes the line
//! from that core (a read for ownership) and keeps it in ours. A streaming
//! store does neither: it goes to memory through a write-combining buffer
//! and invalidates the copies in other caches, so the writing core never
//! waits for the line. The peer then reads the bytes from memory rather
//! than from our cache. On x86_64 the 16-byte-aligned middle of the range
//! is written with `MOVNTDQ`; the unaligned head and tail, and every byte
//! on other targets (and under Miri), with the ordinary volatile copy.
//!
//! Streaming stores are weakly ordered: a later ordinary store (the one
//! that tells the peer the bytes are there: a used entry, an available
//! index) may become visible before them. [`streaming_fence`] (`SFENCE`)
//! must come between the two.
//!
//! Trust and panic contract: nothing here panics; the caller checks the
//! bounds and passes pointers valid for the whole length.
#![allow(unsafe_code)]

use super::copy::volatile_copy;

/// Copies `len` bytes from the private buffer `src` into shared memory at
/// `dst`, with streaming stores where the target has them.
///
/// # Safety
/// `dst` valid for writes and `src` for reads of `len` bytes, the ranges
/// not overlapping. `dst` is only accessed by volatile units or inline
/// assembly.
#[inline(always)]
pub(super) unsafe fn streaming_copy(dst: *mut u8, src: *const u8, len: usize) {
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    {
        // Bytes up to the first 16-byte boundary of `dst`, then whole
        // 16-byte units, then the rest.
        let head = ((16 - (dst as usize) % 16) % 16).min(len);
        let body = (len - head) & !15;
        if body > 0 {
            // SAFETY: `[0, head)`, `[head, head + body)` and
            // `[head + body, len)` split `[0, len)`, valid on both sides
            // (the caller's contract); `dst + head` is 16-byte aligned and
            // `body` a nonzero multiple of 16. The head and tail copies
            // keep `volatile_copy`'s contract; the assembly moves 16-byte
            // units inside the body only, keeps the stack untouched and
            // clobbers only the registers named.
            unsafe {
                volatile_copy(dst, src.cast_mut(), head, true);
                core::arch::asm!(
                    "2:",
                    "movdqu {x}, xmmword ptr [{src} + {i}]",
                    "movntdq xmmword ptr [{dst} + {i}], {x}",
                    "add {i}, 16",
                    "cmp {i}, {body}",
                    "jb 2b",
                    src = in(reg) src.add(head),
                    dst = in(reg) dst.add(head),
                    i = inout(reg) 0usize => _,
                    body = in(reg) body,
                    x = out(xmm_reg) _,
                    options(nostack),
                );
                let done = head + body;
                volatile_copy(dst.add(done), src.add(done).cast_mut(), len - done, true);
            }
            return;
        }
    }
    // SAFETY: the caller's contract (`src` is only read in this direction).
    unsafe { volatile_copy(dst, src.cast_mut(), len, true) }
}

/// Orders every streaming store this thread made
/// ([`MemSlice::write_bytes_streaming`](super::MemSlice::write_bytes_streaming))
/// before the stores that follow: call it after the bytes are written and
/// before the store that publishes them to the peer. `SFENCE` on x86_64;
/// nothing elsewhere, where no streaming stores are made. Also a compiler
/// barrier for memory.
#[inline]
pub fn streaming_fence() {
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    // SAFETY: SFENCE only orders this core's stores: it reads and writes
    // no memory, touches no stack and changes no flags. (`nomem` is left
    // out on purpose: the compiler must not move memory accesses across
    // the fence either.)
    unsafe {
        core::arch::asm!("sfence", options(nostack, preserves_flags))
    };
    #[cfg(not(all(target_arch = "x86_64", not(miri))))]
    core::sync::atomic::compiler_fence(core::sync::atomic::Ordering::SeqCst);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every alignment of the destination and lengths around the 16-byte
    /// units: the bytes land exactly where they belong and nowhere else.
    #[test]
    fn writes_exactly_the_range_at_every_alignment() {
        let src: Vec<u8> = (0..200u32).map(|i| (i * 7 + 3) as u8).collect();
        for align in 0..32 {
            for len in (0..40).chain([47, 48, 49, 63, 64, 65, 100, 128, 150]) {
                let mut buf = vec![0xeeu8; 256];
                let dst = buf.as_mut_ptr().wrapping_add(16 + align);
                // SAFETY: `16 + align + len <= 16 + 31 + 150 < 256`, inside
                // `buf`; `src` holds 200 bytes; they do not overlap.
                unsafe { streaming_copy(dst, src.as_ptr(), len) };
                streaming_fence();
                let at = 16 + align;
                assert_eq!(&buf[at..at + len], &src[..len], "align {align} len {len}");
                assert!(
                    buf[..at].iter().all(|&b| b == 0xee),
                    "before, {align}/{len}"
                );
                assert!(
                    buf[at + len..].iter().all(|&b| b == 0xee),
                    "after, {align}/{len}"
                );
            }
        }
    }
}
