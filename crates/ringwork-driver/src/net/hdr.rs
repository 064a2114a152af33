//! The per-packet header `struct virtio_net_hdr` (VIRTIO 1.4 §5.1.9): how
//! the driver writes it for a transmitted frame (§5.1.9.2) and reads it
//! from a received one (§5.1.9.4), and the ones' complement checksum the
//! driver completes itself when `VIRTIO_NET_F_CSUM` was not negotiated.
//!
//! The driver negotiates no segmentation offload, so `gso_type` is always
//! `VIRTIO_NET_HDR_GSO_NONE` on transmit (§5.1.9.2.1 MUST), `hdr_len` and
//! `gso_size` are 0, and a received header with any other `gso_type` is
//! not accepted (this covers the §5.1.9.4.2 MUST NOTs about UDP tunnel
//! bits).
//!
//! Trust and panic contract: received headers are parsed from a private
//! copy; offsets the device gives are checked against the frame length
//! before they are reported. Nothing panics.

use ringwork_queue::MemSlice;
pub use ringwork_spec::net::ones_complement_sum;
use ringwork_spec::net::{
    VIRTIO_NET_HDR_F_DATA_VALID, VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_F_RSC_INFO,
    VIRTIO_NET_HDR_GSO_NONE,
};

/// Largest header the driver lays out (12 bytes with `VIRTIO_F_VERSION_1`
/// or `VIRTIO_NET_F_MRG_RXBUF`, 10 on a legacy interface without it; no
/// feature growing it is negotiated).
pub(crate) const MAX_HDR: usize = 12;

/// A checksum for the device (or the driver) to complete on transmit
/// (§5.1.9.2 point 3): the ones' complement sum from `start` to the end of
/// the frame is stored at `start + offset`; the frame must already hold
/// the pseudo-header sum there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TxChecksum {
    /// `csum_start`: where checksumming starts.
    pub start: u16,
    /// `csum_offset`: where the checksum goes, counted from `start`.
    pub offset: u16,
}

impl TxChecksum {
    /// Whether the 16-bit checksum field lies inside a frame of `len`
    /// bytes.
    pub fn fits(&self, len: usize) -> bool {
        usize::from(self.start) + usize::from(self.offset) + 2 <= len
    }
}

/// What a received header says about the frame's checksum (§5.1.9.4;
/// reported only with `VIRTIO_NET_F_GUEST_CSUM`, otherwise always
/// [`RxChecksum::None`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RxChecksum {
    /// Neither `DATA_VALID` nor `NEEDS_CSUM`: the driver must not rely on
    /// the checksum being correct (§5.1.9.4.2).
    None,
    /// `VIRTIO_NET_HDR_F_DATA_VALID`: the device validated the checksum.
    Valid,
    /// `VIRTIO_NET_HDR_F_NEEDS_CSUM`: the checksum at `start + offset` is
    /// incomplete (it holds the pseudo-header sum); everything before it
    /// was validated. The offsets were checked to lie inside the frame.
    Partial(TxChecksum),
}

/// What the driver learned from a received frame's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RxInfo {
    /// Frame length (without the header).
    pub len: usize,
    /// Checksum state.
    pub csum: RxChecksum,
    /// Used buffers the frame spanned (`num_buffers` with
    /// `VIRTIO_NET_F_MRG_RXBUF`, 1 otherwise).
    pub num_buffers: u16,
    /// The raw `flags` byte (bits the driver does not know are ignored,
    /// §5.1.9.4.2).
    pub flags: u8,
}

/// The transmit header, 12 bytes (a 10-byte legacy header is the first
/// 10): `flags` NEEDS_CSUM and the offsets when `csum` is given (only done
/// with `VIRTIO_NET_F_CSUM`), everything else zero — `gso_type` NONE and
/// `num_buffers` 0 (§5.1.9.2.1). The layout [`store_tx_hdr`] stores.
#[cfg(test)]
pub(crate) fn tx_hdr(csum: Option<TxChecksum>) -> [u8; MAX_HDR] {
    let mut h = [0u8; MAX_HDR];
    if let Some(c) = csum {
        h[0] = VIRTIO_NET_HDR_F_NEEDS_CSUM;
        h[1] = VIRTIO_NET_HDR_GSO_NONE;
        h[6..8].copy_from_slice(&c.start.to_le_bytes());
        h[8..10].copy_from_slice(&c.offset.to_le_bytes());
    }
    h
}

/// Stores the transmit header ([`tx_hdr`]) for `csum` at `off` of `mem`,
/// `hdr_len` (12, or 10 on a legacy interface) bytes, as whole
/// little-endian words (no byte array in between: bytes stored one by one
/// and loaded back as a word stall the load). `false` if it does not fit.
#[inline]
pub(crate) fn store_tx_hdr(
    mem: &MemSlice<'_>,
    off: usize,
    hdr_len: usize,
    csum: Option<TxChecksum>,
) -> bool {
    // flags, gso_type, hdr_len, gso_size, csum_start | csum_offset,
    // num_buffers: all zero but the checksum request.
    let (lo, hi) = match csum {
        Some(c) => (
            u64::from(VIRTIO_NET_HDR_F_NEEDS_CSUM)
                | u64::from(VIRTIO_NET_HDR_GSO_NONE) << 8
                | u64::from(c.start) << 48,
            u32::from(c.offset),
        ),
        None => (0, 0),
    };
    let fits = off.checked_add(hdr_len).is_some_and(|end| end <= mem.len());
    fits && mem.write_u64(off, lo).is_ok()
        && match hdr_len {
            12 => mem.write_u32(off + 8, hi).is_ok(),
            10 => mem.write_u16(off + 8, hi as u16).is_ok(),
            _ => false,
        }
}

/// Reads and parses the `hdr_len`-byte received header at `off` of `mem`
/// (two volatile loads for the usual 12 bytes); `None` if it does not fit.
#[inline]
pub(crate) fn load_rx(mem: &MemSlice<'_>, off: usize, hdr_len: usize) -> Option<RxHdr> {
    if hdr_len == 12 {
        // Little-endian fields: flags, gso_type, hdr_len, gso_size,
        // csum_start in the first 8 bytes; csum_offset, num_buffers after.
        let lo = mem.read_u64(off).ok()?;
        let hi = mem.read_u32(off + 8).ok()?;
        return Some(RxHdr {
            flags: lo as u8,
            gso_type: (lo >> 8) as u8,
            csum_start: (lo >> 48) as u16,
            csum_offset: hi as u16,
            num_buffers: (hi >> 16) as u16,
        });
    }
    let mut raw = [0u8; MAX_HDR];
    let raw = raw.get_mut(..hdr_len)?;
    mem.read_bytes(off, raw).ok()?;
    Some(parse_rx(raw))
}

/// A received header, raw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RxHdr {
    pub flags: u8,
    pub gso_type: u8,
    pub csum_start: u16,
    pub csum_offset: u16,
    /// `num_buffers` (0 when the header has no such field).
    pub num_buffers: u16,
}

/// Parses the first `hdr.len()` bytes of a received buffer.
pub(crate) fn parse_rx(hdr: &[u8]) -> RxHdr {
    let b = |i: usize| hdr.get(i).copied().unwrap_or(0);
    let le16 = |i: usize| u16::from_le_bytes([b(i), b(i + 1)]);
    RxHdr {
        flags: b(0),
        gso_type: b(1),
        csum_start: le16(6),
        csum_offset: le16(8),
        num_buffers: if hdr.len() >= 12 { le16(10) } else { 0 },
    }
}

impl RxHdr {
    /// The checksum state, `None` if NEEDS_CSUM offsets lie outside a
    /// frame of `len` bytes. `guest_csum`: `VIRTIO_NET_F_GUEST_CSUM` was
    /// negotiated (without it the flags are not the device's to set, and
    /// are ignored). With `RSC_INFO` the offsets are not used
    /// (§5.1.9.4.2 MUST NOT).
    pub(crate) fn checksum(&self, len: usize, guest_csum: bool) -> Option<RxChecksum> {
        if !guest_csum {
            return Some(RxChecksum::None);
        }
        if self.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM != 0
            && self.flags & VIRTIO_NET_HDR_F_RSC_INFO == 0
        {
            let c = TxChecksum {
                start: self.csum_start,
                offset: self.csum_offset,
            };
            return c.fits(len).then_some(RxChecksum::Partial(c));
        }
        if self.flags & VIRTIO_NET_HDR_F_DATA_VALID != 0 {
            return Some(RxChecksum::Valid);
        }
        Some(RxChecksum::None)
    }
}

/// The checksum field value completing `c` over `frame` (which holds the
/// pseudo-header sum at the field): the inverted sum from `start`, 0
/// stored as 0xffff (equal in ones' complement, required for UDP), as
/// Linux's `skb_checksum_help`. `None` if `c` does not fit.
pub fn complete_checksum(frame: &[u8], c: TxChecksum) -> Option<[u8; 2]> {
    if !c.fits(frame.len()) {
        return None;
    }
    let sum = !ones_complement_sum(frame.get(usize::from(c.start)..)?);
    Some(if sum == 0 { 0xffff } else { sum }.to_be_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tx_header_layout() {
        assert_eq!(tx_hdr(None), [0; 12]);
        let h = tx_hdr(Some(TxChecksum {
            start: 34,
            offset: 16,
        }));
        assert_eq!(h, [1, 0, 0, 0, 0, 0, 34, 0, 16, 0, 0, 0]);
    }

    #[test]
    fn tx_header_stores_like_it_lays_out() {
        use ringwork_queue::test_utils::TestMemory;
        use ringwork_queue::Dma;
        let tm = TestMemory::new(0x1000, 0x1000);
        let buf = tm.alloc(64, 8).unwrap();
        let mem = buf.slice();
        let c = TxChecksum {
            start: 34,
            offset: 16,
        };
        for (hdr_len, csum) in [(12, None), (12, Some(c)), (10, None), (10, Some(c))] {
            mem.fill(0, 64, 0xaa).unwrap();
            assert!(store_tx_hdr(&mem, 8, hdr_len, csum));
            let mut got = [0u8; 16];
            mem.read_bytes(8, &mut got).unwrap();
            assert_eq!(
                &got[..hdr_len],
                &tx_hdr(csum)[..hdr_len],
                "{hdr_len} {csum:?}"
            );
            assert!(got[hdr_len..].iter().all(|&b| b == 0xaa), "nothing past it");
        }
        assert!(!store_tx_hdr(&mem, 56, 12, None), "does not fit");
        assert!(!store_tx_hdr(&mem, 0, 11, None), "not a header size");
        tm.dealloc(buf);
    }

    #[test]
    fn rx_header_loads_like_it_parses() {
        use ringwork_queue::test_utils::TestMemory;
        use ringwork_queue::Dma;
        let bytes = [1u8, 4, 0x11, 0x22, 0x33, 0x44, 10, 1, 6, 2, 3, 4];
        let tm = TestMemory::new(0x1000, 0x1000);
        let buf = tm.alloc(64, 8).unwrap();
        let mem = buf.slice();
        mem.write_bytes(16, &bytes).unwrap();
        let h = load_rx(&mem, 16, 12).unwrap();
        assert_eq!(h, parse_rx(&bytes));
        assert_eq!(
            (h.csum_start, h.csum_offset, h.num_buffers),
            (266, 518, 1027)
        );
        assert_eq!(load_rx(&mem, 16, 10).unwrap(), parse_rx(&bytes[..10]));
        assert_eq!(load_rx(&mem, 60, 12), None);
        tm.dealloc(buf);
    }

    #[test]
    fn rx_checksum_states() {
        let h = parse_rx(&[1, 0, 0, 0, 0, 0, 10, 0, 6, 0, 3, 0]);
        assert_eq!(h.num_buffers, 3);
        assert_eq!(h.checksum(100, false), Some(RxChecksum::None));
        assert_eq!(
            h.checksum(18, true),
            Some(RxChecksum::Partial(TxChecksum {
                start: 10,
                offset: 6
            }))
        );
        assert_eq!(h.checksum(17, true), None, "field past the end");
        let rsc = parse_rx(&[1 | 4, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 1, 0]);
        assert_eq!(rsc.checksum(20, true), Some(RxChecksum::None));
        let v = parse_rx(&[2 | 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]);
        assert_eq!(v.checksum(20, true), Some(RxChecksum::Valid));
    }

    #[test]
    fn software_checksum_completes_a_sum() {
        // Sum over [0x4500, 0x0000] with the field at offset 2.
        let frame = [0x45, 0x00, 0x00, 0x00];
        let c = TxChecksum {
            start: 0,
            offset: 2,
        };
        assert_eq!(complete_checksum(&frame, c), Some([0xba, 0xff]));
        let mut done = frame;
        done[2..4].copy_from_slice(&[0xba, 0xff]);
        assert_eq!(ones_complement_sum(&done), 0xffff);
        assert_eq!(complete_checksum(&frame[..3], c), None);
    }
}
