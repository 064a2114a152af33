//! Test data: disk images and deterministic patterns.

use std::fs::File;
use std::path::Path;

/// A deterministic, incompressible-looking pattern of `len` bytes
/// (xorshift64 from `seed`).
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Creates a zero-filled (sparse) raw image of `size` bytes; panics with
/// the path on failure (test support).
pub fn make_image(path: &Path, size: u64) {
    File::create(path)
        .and_then(|f| f.set_len(size))
        .unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
}
