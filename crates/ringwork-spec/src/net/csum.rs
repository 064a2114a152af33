//! The Internet checksum (RFC 1071) behind `VIRTIO_NET_HDR_F_NEEDS_CSUM`
//! (VIRTIO 1.4 §5.1.9.2): whoever completes a partial checksum stores the
//! inverted ones' complement sum from `csum_start` to the end of the frame
//! at `csum_start + csum_offset`.

/// The 16-bit ones' complement sum of `data` (big-endian words, an odd
/// last byte padded with zero), folded, not inverted (RFC 1071).
///
/// ```
/// use ringwork_spec::net::ones_complement_sum;
///
/// assert_eq!(ones_complement_sum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]), 0xddf2);
/// assert_eq!(ones_complement_sum(&[0x12]), 0x1200);
/// ```
pub fn ones_complement_sum(data: &[u8]) -> u16 {
    let mut sum: u64 = 0;
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u64::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u64::from(*last) << 8;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}
