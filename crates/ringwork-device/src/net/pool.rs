//! Frame buffers recycled per thread: the transmit path takes an empty
//! buffer to copy a frame into, the receive path gives it back once the frame is
//! delivered. When a device's queues share a thread ([`NetWorkers`]) a
//! steady stream allocates nothing; across threads the pool of the
//! receiving thread fills up to [`POOL_FRAMES`] and the rest is freed.
//!
//! Only buffers up to [`POOL_BUFFER_MAX`] bytes of capacity are kept, so
//! a burst of 64 KiB GSO frames does not pin memory.
//!
//! Panic contract: nothing here panics (a pool being used re-entrantly,
//! which cannot happen, would just allocate).
//!
//! [`NetWorkers`]: super::NetWorkers

use std::cell::RefCell;

/// Buffers a thread keeps at most.
pub const POOL_FRAMES: usize = 512;
/// Largest capacity kept.
pub const POOL_BUFFER_MAX: usize = 2048;

thread_local! {
    static POOL: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// An empty buffer with room for `len` bytes, recycled when one is at
/// hand (for filling without zeroing first).
#[inline]
pub(super) fn take_empty(len: usize) -> Vec<u8> {
    if len <= POOL_BUFFER_MAX {
        let reused = POOL
            .try_with(|p| p.try_borrow_mut().ok().and_then(|mut p| p.pop()))
            .ok()
            .flatten();
        if let Some(mut v) = reused {
            v.clear();
            return v;
        }
        return Vec::with_capacity(len.max(256));
    }
    Vec::with_capacity(len)
}

/// Gives a buffer back (or frees it when the pool is full or it is big).
#[inline]
pub(super) fn give(v: Vec<u8>) {
    if v.capacity() > POOL_BUFFER_MAX || v.capacity() == 0 {
        return;
    }
    let _ = POOL.try_with(|p| {
        if let Ok(mut p) = p.try_borrow_mut() {
            if p.len() < POOL_FRAMES {
                p.push(v);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recycles_small_buffers_empty() {
        let mut a = take_empty(100);
        assert!(a.is_empty() && a.capacity() >= 100);
        a.resize(100, 0xaa);
        let ptr = a.as_ptr();
        give(a);
        let b = take_empty(60);
        assert_eq!(b.as_ptr(), ptr, "reused");
        assert!(b.is_empty(), "emptied");
        give(b);
        // Big buffers are not kept.
        let mut big = take_empty(POOL_BUFFER_MAX + 1);
        big.resize(POOL_BUFFER_MAX + 1, 0);
        give(big);
        POOL.with(|p| assert!(p.borrow().iter().all(|v| v.capacity() <= POOL_BUFFER_MAX)));
    }

    #[test]
    fn bounded() {
        let bufs: Vec<Vec<u8>> = (0..POOL_FRAMES + 10).map(|_| take_empty(64)).collect();
        for b in bufs {
            give(b);
        }
        POOL.with(|p| assert_eq!(p.borrow().len(), POOL_FRAMES));
    }
}
