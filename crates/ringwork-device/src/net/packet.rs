//! Frames as they travel between the device and its backend: a private
//! copy of an Ethernet frame ([`Packet`]) with the checksum-offload request
//! that came with it, plus the few Ethernet/IP facts the device and the
//! switch read from a frame (addresses, VLAN tag, a flow hash) and the
//! software checksum that completes a partially checksummed frame
//! (VIRTIO 1.4 §5.1.9.2, "Packet Transmission" point 3).
//!
//! Trust and panic contract: frames are guest data. Every accessor bounds
//! its reads and answers `None` (or a neutral value) for short frames;
//! nothing here panics.

use std::fmt;
use std::str::FromStr;

use super::gso::Gso;

/// Length of an Ethernet header (destination, source, EtherType).
pub const ETH_HLEN: usize = 14;
/// Length of an 802.1Q VLAN tag.
pub const VLAN_HLEN: usize = 4;
/// EtherType of an 802.1Q VLAN tag.
pub const ETH_P_8021Q: u16 = 0x8100;
/// Largest frame (without the virtio header) the device takes from a
/// transmitq or hands to a receiveq: room for the largest MTU the device
/// offers ([`MAX_MTU`]) with an Ethernet header and a VLAN tag.
pub const MAX_FRAME_LEN: usize = 65550;
/// Largest `mtu` the device offers (so that a tagged frame of that MTU
/// still fits in [`MAX_FRAME_LEN`]).
pub const MAX_MTU: u16 = (MAX_FRAME_LEN - ETH_HLEN - VLAN_HLEN) as u16;
/// Largest frame (without the virtio header) a device whose backend
/// supports segmentation offload ([`NetBackend::offloads`]) takes or
/// hands over: a GSO frame of up to 65589 bytes (Ethernet header, a
/// 40-byte IPv6 header and the largest IP payload, VIRTIO 1.4 §5.1.9.3)
/// plus a VLAN tag. Frames without GSO stay bounded by [`MAX_FRAME_LEN`].
///
/// [`NetBackend::offloads`]: super::NetBackend::offloads
pub const MAX_GSO_FRAME_LEN: usize = ringwork_spec::net::MAX_GSO_PACKET_LEN + VLAN_HLEN;

/// A 48-bit MAC address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// The broadcast address ff:ff:ff:ff:ff:ff.
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);

    /// Whether this is a group (multicast or broadcast) address.
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 != 0
    }

    /// Whether this is the broadcast address.
    pub fn is_broadcast(&self) -> bool {
        *self == Self::BROADCAST
    }

    /// This address plus `n` in its low three bytes (wrapping within them,
    /// keeping the first three), e.g. one address per switch port.
    pub fn offset(&self, n: u32) -> MacAddr {
        let low = u32::from_be_bytes([0, self.0[3], self.0[4], self.0[5]]).wrapping_add(n);
        let b = low.to_be_bytes();
        MacAddr([self.0[0], self.0[1], self.0[2], b[1], b[2], b[3]])
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A MAC address that does not parse (`xx:xx:xx:xx:xx:xx` expected).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad MAC address `{0}` (expected six hex bytes like 52:54:00:12:34:56)")]
pub struct BadMac(pub String);

impl FromStr for MacAddr {
    type Err = BadMac;
    fn from_str(s: &str) -> Result<Self, BadMac> {
        let bad = || BadMac(s.to_owned());
        let mut out = [0u8; 6];
        let mut parts = s.split([':', '-']);
        for b in &mut out {
            let p = parts.next().ok_or_else(bad)?;
            if p.is_empty() || p.len() > 2 {
                return Err(bad());
            }
            *b = u8::from_str_radix(p, 16).map_err(|_| bad())?;
        }
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(MacAddr(out))
    }
}

/// A checksum the receiver of a frame still has to compute (the transmit
/// header's `VIRTIO_NET_HDR_F_NEEDS_CSUM`, §5.1.9.2): the ones' complement
/// sum from `start` to the end of the frame goes at `start + offset`; the
/// frame already holds the pseudo-header sum there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartialCsum {
    /// Where checksumming starts (`csum_start`).
    pub start: u16,
    /// Where the checksum goes, after `start` (`csum_offset`).
    pub offset: u16,
}

impl PartialCsum {
    /// Whether the checksum field (two bytes at `start + offset`) lies
    /// inside a frame of `len` bytes.
    pub fn fits(&self, len: usize) -> bool {
        usize::from(self.start) + usize::from(self.offset) + 2 <= len
    }
}

/// One Ethernet frame (no virtio header), owned.
#[derive(Clone, PartialEq, Eq)]
pub struct Packet {
    /// The frame: destination and source MAC, EtherType, payload.
    pub data: Vec<u8>,
    /// A checksum left for the receiver to complete, if any.
    pub csum: Option<PartialCsum>,
    /// A segmentation request, if the frame is a GSO frame (then `csum`
    /// is set too, [`Packet::check_offloads`]).
    pub gso: Option<Gso>,
}

impl fmt::Debug for Packet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Packet")
            .field("len", &self.data.len())
            .field("dst", &self.dst())
            .field("src", &self.src())
            .field("csum", &self.csum)
            .field("gso", &self.gso)
            .finish()
    }
}

impl Packet {
    /// A complete (fully checksummed) frame.
    pub fn new(data: Vec<u8>) -> Self {
        Self {
            data,
            csum: None,
            gso: None,
        }
    }

    fn mac_at(&self, at: usize) -> Option<MacAddr> {
        let b = self.data.get(at..at + 6)?;
        let mut m = [0u8; 6];
        m.copy_from_slice(b);
        Some(MacAddr(m))
    }

    /// The destination address (`None` for a frame shorter than 6 bytes).
    pub fn dst(&self) -> Option<MacAddr> {
        self.mac_at(0)
    }

    /// The source address.
    pub fn src(&self) -> Option<MacAddr> {
        self.mac_at(6)
    }

    fn be16(&self, at: usize) -> Option<u16> {
        let b = self.data.get(at..at + 2)?;
        Some(u16::from_be_bytes([b[0], b[1]]))
    }

    /// The VLAN id of an 802.1Q-tagged frame.
    pub fn vlan_id(&self) -> Option<u16> {
        (self.be16(12)? == ETH_P_8021Q).then_some(self.be16(14)? & 0x0fff)
    }

    /// Completes a [`PartialCsum`] in place (as `skb_checksum_help` does:
    /// a zero result is stored as 0xffff, equal in ones' complement and
    /// required for UDP) and forgets it. A request that does not fit the
    /// frame is dropped unapplied (the transmit path refuses those).
    pub fn complete_checksum(&mut self) {
        // Read first, cleared only if set: no store for a frame without one.
        let Some(c) = self.csum else {
            return;
        };
        self.csum = None;
        if !c.fits(self.data.len()) {
            return;
        }
        let start = usize::from(c.start);
        let at = start + usize::from(c.offset);
        let sum = ones_complement_sum(&self.data[start..]);
        let folded = !sum;
        let v = if folded == 0 { 0xffff } else { folded };
        self.data[at..at + 2].copy_from_slice(&v.to_be_bytes());
    }

    /// Whether the checksums in front of a [`PartialCsum`] hold, so that
    /// the request can be passed to a receiver as NEEDS_CSUM (which says
    /// "all preceding checksums have been validated", §5.1.9.4.1): an IPv4
    /// header (after at most one VLAN tag) must be complete and sum
    /// correctly; other network protocols carry no header checksum.
    pub fn preceding_checksums_ok(&self) -> bool {
        let mut off = 12;
        let mut ethertype = self.be16(off);
        if ethertype == Some(ETH_P_8021Q) {
            off += VLAN_HLEN;
            ethertype = self.be16(off);
        }
        if ethertype != Some(0x0800) {
            return true;
        }
        let l3 = off + 2;
        let Some(&vihl) = self.data.get(l3) else {
            return false;
        };
        let ihl = usize::from(vihl & 0x0f) * 4;
        if vihl >> 4 != 4 || ihl < 20 {
            return false;
        }
        let Some(hdr) = self.data.get(l3..l3 + ihl) else {
            return false;
        };
        let in_front = self.csum.is_none_or(|c| usize::from(c.start) >= l3 + ihl);
        in_front && ones_complement_sum(hdr) == 0xffff
    }

    /// A hash that is the same for both directions of a flow (IPv4/IPv6
    /// addresses and TCP/UDP ports when present, else the MAC addresses),
    /// for steering a flow to one receive queue.
    pub fn flow_hash(&self) -> u32 {
        let d = &self.data;
        let mut off = 12;
        let mut ethertype = self.be16(off).unwrap_or(0);
        if ethertype == ETH_P_8021Q {
            off += VLAN_HLEN;
            ethertype = self.be16(off).unwrap_or(0);
        }
        let l3 = off + 2;
        let word = |at: usize| -> u32 {
            d.get(at..at + 4)
                .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        };
        let (mut h, proto, l4) = match ethertype {
            0x0800 => {
                let ihl = usize::from(d.get(l3).copied().unwrap_or(0) & 0x0f) * 4;
                let proto = d.get(l3 + 9).copied().unwrap_or(0);
                (word(l3 + 12) ^ word(l3 + 16), proto, l3 + ihl)
            }
            0x86dd => {
                let mut h = 0;
                for i in 0..8 {
                    h ^= word(l3 + 8 + 4 * i);
                }
                (h, d.get(l3 + 6).copied().unwrap_or(0), l3 + 40)
            }
            _ => {
                let a = word(0) ^ word(6);
                let b = u32::from(self.be16(4).unwrap_or(0) ^ self.be16(10).unwrap_or(0));
                return mix(a ^ b);
            }
        };
        if proto == 6 || proto == 17 {
            h ^= u32::from(self.be16(l4).unwrap_or(0) ^ self.be16(l4 + 2).unwrap_or(0));
        }
        mix(h ^ u32::from(proto))
    }
}

fn mix(mut x: u32) -> u32 {
    x ^= x >> 16;
    x = x.wrapping_mul(0x7feb_352d);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846c_a68b);
    x ^ (x >> 16)
}

/// The 16-bit ones' complement sum of `data` (RFC 1071), folded, not
/// inverted (shared with the driver side: `ringwork_spec::net`).
pub use ringwork_spec::net::ones_complement_sum;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_parse_print_offset() {
        let m: MacAddr = "52:54:00:ab:cd:ff".parse().unwrap();
        assert_eq!(m.to_string(), "52:54:00:ab:cd:ff");
        assert_eq!(m.offset(1).to_string(), "52:54:00:ab:ce:00");
        assert_eq!(MacAddr([0, 0, 0, 0xff, 0xff, 0xff]).offset(1).0, [0; 6]);
        assert!("52:54:00:ab:cd".parse::<MacAddr>().is_err());
        assert!("52:54:00:ab:cd:ef:01".parse::<MacAddr>().is_err());
        assert!("52:54:00:ab:cd:xy".parse::<MacAddr>().is_err());
        assert!(MacAddr::BROADCAST.is_multicast() && MacAddr::BROADCAST.is_broadcast());
        assert!(!m.is_multicast());
    }

    #[test]
    fn checksum_matches_rfc1071_example() {
        // RFC 1071 §3 example: 0001 f203 f4f5 f6f7 sums to ddf2.
        assert_eq!(
            ones_complement_sum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            0xddf2
        );
        assert_eq!(ones_complement_sum(&[0x12]), 0x1200);
    }

    #[test]
    fn completes_a_partial_udp_checksum() {
        // IPv4/UDP 10.0.0.1:1000 -> 10.0.0.2:2000, payload "hi".
        let mut f = vec![0u8; 14 + 20 + 8 + 2];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f[14] = 0x45;
        f[14 + 9] = 17;
        f[14 + 12..14 + 16].copy_from_slice(&[10, 0, 0, 1]);
        f[14 + 16..14 + 20].copy_from_slice(&[10, 0, 0, 2]);
        let u = 34;
        f[u..u + 2].copy_from_slice(&1000u16.to_be_bytes());
        f[u + 2..u + 4].copy_from_slice(&2000u16.to_be_bytes());
        f[u + 4..u + 6].copy_from_slice(&10u16.to_be_bytes());
        f[u + 8..].copy_from_slice(b"hi");
        // Pseudo header: src, dst, proto, UDP length.
        let mut ph = Vec::new();
        ph.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2, 0, 17]);
        ph.extend_from_slice(&10u16.to_be_bytes());
        let pseudo = ones_complement_sum(&ph);
        f[u + 6..u + 8].copy_from_slice(&pseudo.to_be_bytes());
        let mut p = Packet {
            data: f,
            csum: Some(PartialCsum {
                start: 34,
                offset: 6,
            }),
            gso: None,
        };
        let h1 = p.flow_hash();
        p.complete_checksum();
        assert!(p.csum.is_none());
        // A correct UDP checksum: pseudo header + segment sums to 0xffff.
        let mut all = ph.clone();
        all.extend_from_slice(&p.data[34..]);
        assert_eq!(ones_complement_sum(&all), 0xffff);
        assert_eq!(p.flow_hash(), h1, "the checksum is not part of the flow");
        // The reverse direction hashes the same.
        let mut r = p.clone();
        r.data[26..30].copy_from_slice(&[10, 0, 0, 2]);
        r.data[30..34].copy_from_slice(&[10, 0, 0, 1]);
        r.data[u..u + 2].copy_from_slice(&2000u16.to_be_bytes());
        r.data[u + 2..u + 4].copy_from_slice(&1000u16.to_be_bytes());
        assert_eq!(r.flow_hash(), p.flow_hash());
    }

    #[test]
    fn ipv4_header_checksum_gates_needs_csum() {
        let mut f = vec![0u8; 14 + 20 + 8];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f[14] = 0x45;
        f[14 + 2..14 + 4].copy_from_slice(&28u16.to_be_bytes());
        f[14 + 9] = 17;
        let c = !ones_complement_sum(&f[14..34]);
        f[24..26].copy_from_slice(&c.to_be_bytes());
        let csum = Some(PartialCsum {
            start: 34,
            offset: 6,
        });
        let mut p = Packet {
            data: f.clone(),
            csum,
            gso: None,
        };
        assert!(p.preceding_checksums_ok());
        p.data[30] ^= 1;
        assert!(!p.preceding_checksums_ok(), "bad IPv4 header checksum");
        p.data = f.clone();
        p.csum = Some(PartialCsum {
            start: 20,
            offset: 6,
        });
        assert!(!p.preceding_checksums_ok(), "checksum inside the IP header");
        p.data.truncate(30);
        assert!(!p.preceding_checksums_ok(), "truncated IPv4 header");
        let mut other = Packet::new(vec![0u8; 60]);
        other.data[12..14].copy_from_slice(&[0x86, 0xdd]);
        assert!(
            other.preceding_checksums_ok(),
            "IPv6 has no header checksum"
        );
    }

    #[test]
    fn short_frames_are_harmless() {
        let mut p = Packet {
            data: vec![1, 2, 3],
            csum: Some(PartialCsum {
                start: 1,
                offset: 1,
            }),
            gso: None,
        };
        assert_eq!((p.dst(), p.src(), p.vlan_id()), (None, None, None));
        let _ = p.flow_hash();
        p.complete_checksum();
        assert_eq!(p.data, [1, 2, 3]);
        let mut tagged = vec![0u8; 18];
        tagged[12..16].copy_from_slice(&[0x81, 0x00, 0x20, 0x05]);
        assert_eq!(Packet::new(tagged).vlan_id(), Some(5));
    }
}
