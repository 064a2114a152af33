//! Offloads carried with a frame: the `virtio_net_hdr` fields
//! ([`VnetHdr`]), the segmentation request of a large frame ([`Gso`],
//! VIRTIO 1.4 §5.1.9.2 "Packet Transmission" point 4, §5.1.9.4
//! "Processing of Incoming Packets"), their checks ([`BadOffload`]), and
//! the set of offloads a backend supports or a driver accepts
//! ([`Offloads`]), which decides the HOST_/GUEST_ TSO4, TSO6, ECN, UFO
//! and USO feature bits the device offers.
//!
//! The header layout is the one Linux's tun/tap speaks too (with
//! `IFF_VNET_HDR` and a 12-byte header size), so a backend on a tap can
//! pass it through unchanged.
//!
//! Trust and panic contract: headers come from the driver (transmit) or a
//! backend (receive) and are hostile; [`VnetHdr::into_packet`] checks
//! every length and offset against the frame ([`BadOffload`]); nothing
//! here panics.

use ringwork_spec::net::*;

use super::packet::{Packet, PartialCsum};

/// A segmentation request: the frame is larger than the MTU and the
/// receiver cuts it into segments of `gso_size` payload bytes, repeating
/// the first `hdr_len` bytes (a hint, §5.1.9.2.2) in front of each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gso {
    /// `VIRTIO_NET_HDR_GSO_TCPV4`, `TCPV6`, `UDP` or `UDP_L4`, possibly
    /// with `VIRTIO_NET_HDR_GSO_ECN` (never NONE, never a UDP tunnel bit).
    pub gso_type: u8,
    /// Length of the headers to repeat per segment (`hdr_len`).
    pub hdr_len: u16,
    /// Payload bytes per segment, the MSS (`gso_size`, non-zero).
    pub gso_size: u16,
}

impl Gso {
    /// The protocol without the ECN bit.
    pub fn protocol(&self) -> u8 {
        gso_protocol(self.gso_type)
    }

    /// Whether the ECN bit is set (the TCP segments carry CWR handling).
    pub fn ecn(&self) -> bool {
        self.gso_type & VIRTIO_NET_HDR_GSO_ECN != 0
    }
}

/// Why the offload fields of a frame cannot be honoured (the frame is
/// dropped and counted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BadOffload {
    /// The checksum field (`csum_start + csum_offset`, two bytes) lies
    /// outside the frame.
    #[error("checksum at {start}+{offset} outside a {len}-byte frame")]
    CsumOutside {
        /// `csum_start`.
        start: u16,
        /// `csum_offset`.
        offset: u16,
        /// Frame length.
        len: usize,
    },
    /// A `gso_type` that is not TCPV4, TCPV6, UDP or UDP_L4 (with or
    /// without ECN), or carries a UDP tunnel bit.
    #[error("unsupported gso_type {0:#04x}")]
    GsoType(u8),
    /// A GSO frame without NEEDS_CSUM (§5.1.9.2.1, §5.1.9.4.1: GSO
    /// frames always carry a partial checksum).
    #[error("gso_type {0:#04x} without NEEDS_CSUM")]
    GsoWithoutCsum(u8),
    /// A GSO frame with `gso_size` zero.
    #[error("gso_type {0:#04x} with gso_size 0")]
    GsoSizeZero(u8),
    /// `hdr_len` beyond the end of the frame.
    #[error("hdr_len {hdr_len} beyond a {len}-byte frame")]
    HdrLenPastEnd {
        /// `hdr_len`.
        hdr_len: u16,
        /// Frame length.
        len: usize,
    },
    /// A GSO type the receiver (or, on transmit, the device) did not
    /// negotiate.
    #[error("gso_type {0:#04x} not negotiated")]
    NotNegotiated(u8),
}

impl Packet {
    /// Checks the offload fields against the frame: the checksum field
    /// inside it; a GSO request of a known type, with NEEDS_CSUM, a
    /// non-zero `gso_size` and `hdr_len` within the frame.
    pub fn check_offloads(&self) -> Result<(), BadOffload> {
        let len = self.data.len();
        if let Some(c) = self.csum {
            if !c.fits(len) {
                return Err(BadOffload::CsumOutside {
                    start: c.start,
                    offset: c.offset,
                    len,
                });
            }
        }
        let Some(g) = self.gso else {
            return Ok(());
        };
        let t = g.gso_type;
        if !matches!(
            t & !VIRTIO_NET_HDR_GSO_ECN,
            VIRTIO_NET_HDR_GSO_TCPV4
                | VIRTIO_NET_HDR_GSO_TCPV6
                | VIRTIO_NET_HDR_GSO_UDP
                | VIRTIO_NET_HDR_GSO_UDP_L4
        ) {
            return Err(BadOffload::GsoType(t));
        }
        if self.csum.is_none() {
            return Err(BadOffload::GsoWithoutCsum(t));
        }
        if g.gso_size == 0 {
            return Err(BadOffload::GsoSizeZero(t));
        }
        if usize::from(g.hdr_len) > len {
            return Err(BadOffload::HdrLenPastEnd {
                hdr_len: g.hdr_len,
                len,
            });
        }
        Ok(())
    }
}

/// The first ten bytes of a `virtio_net_hdr` (common to every header
/// size; `num_buffers` and later fields are the device's own business).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VnetHdr {
    /// `VIRTIO_NET_HDR_F_*`.
    pub flags: u8,
    /// `VIRTIO_NET_HDR_GSO_*`.
    pub gso_type: u8,
    /// `hdr_len`.
    pub hdr_len: u16,
    /// `gso_size`.
    pub gso_size: u16,
    /// `csum_start`.
    pub csum_start: u16,
    /// `csum_offset`.
    pub csum_offset: u16,
}

impl VnetHdr {
    /// Parses the first ten bytes of `b` (`None` when shorter).
    pub fn parse(b: &[u8]) -> Option<Self> {
        let h = NetHdrLegacy::new_checked(b.get(..NET_HDR_LEGACY_SIZE)?).ok()?;
        Some(Self {
            flags: h.flags(),
            gso_type: h.gso_type(),
            hdr_len: h.hdr_len(),
            gso_size: h.gso_size(),
            csum_start: h.csum_start(),
            csum_offset: h.csum_offset(),
        })
    }

    /// The header describing `p`: NEEDS_CSUM with its checksum request,
    /// its GSO fields; `hdr_len` is 0 for a frame without GSO.
    pub fn of(p: &Packet) -> Self {
        let mut h = Self::default();
        if let Some(c) = p.csum {
            h.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
            h.csum_start = c.start;
            h.csum_offset = c.offset;
        }
        if let Some(g) = p.gso {
            h.gso_type = g.gso_type;
            h.hdr_len = g.hdr_len;
            h.gso_size = g.gso_size;
        }
        h
    }

    /// The 12-byte header (`num_buffers` 0).
    pub fn to_bytes(&self) -> [u8; NET_HDR_SIZE] {
        self.to_bytes_with(0)
    }

    /// The 12-byte header with `num_buffers`, assembled as one 8-byte and
    /// one 4-byte little-endian word: a header stored byte by byte and
    /// then copied out as words stalls the copy's loads (every frame).
    #[inline]
    pub fn to_bytes_with(&self, num_buffers: u16) -> [u8; NET_HDR_SIZE] {
        let lo = u64::from(self.flags)
            | u64::from(self.gso_type) << 8
            | u64::from(self.hdr_len) << 16
            | u64::from(self.gso_size) << 32
            | u64::from(self.csum_start) << 48;
        let hi = u32::from(self.csum_offset) | u32::from(num_buffers) << 16;
        let mut b = [0u8; NET_HDR_SIZE];
        b[..8].copy_from_slice(&lo.to_le_bytes());
        b[8..].copy_from_slice(&hi.to_le_bytes());
        b
    }

    /// The frame `data` with this header's offloads, checked
    /// ([`Packet::check_offloads`]). Flags other than NEEDS_CSUM are
    /// ignored (§5.1.9.2.2; DATA_VALID only saves the receiver a check);
    /// `csum_start`/`csum_offset` are used only with NEEDS_CSUM, `hdr_len`
    /// and `gso_size` only with a GSO type; the ECN bit alone (no GSO
    /// type) is ignored.
    pub fn into_packet(self, data: Vec<u8>) -> Result<Packet, BadOffload> {
        let csum = (self.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM != 0).then_some(PartialCsum {
            start: self.csum_start,
            offset: self.csum_offset,
        });
        let gso =
            (self.gso_type & !VIRTIO_NET_HDR_GSO_ECN != VIRTIO_NET_HDR_GSO_NONE).then_some(Gso {
                gso_type: self.gso_type,
                hdr_len: self.hdr_len,
                gso_size: self.gso_size,
            });
        let p = Packet { data, csum, gso };
        p.check_offloads()?;
        Ok(p)
    }
}

/// A set of offloads: what a backend can carry ([`NetBackend::offloads`])
/// or what a driver accepts on receive
/// ([`NetBackend::set_guest_offloads`]).
///
/// [`NetBackend::offloads`]: super::NetBackend::offloads
/// [`NetBackend::set_guest_offloads`]: super::NetBackend::set_guest_offloads
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Offloads {
    /// Partial checksums (NEEDS_CSUM). The device completes checksums in
    /// software for a receiver that cannot take them, so a backend's
    /// answer here does not change the features offered.
    pub csum: bool,
    /// TCP over IPv4 segmentation (HOST_/GUEST_TSO4).
    pub tso4: bool,
    /// TCP over IPv6 segmentation (HOST_/GUEST_TSO6).
    pub tso6: bool,
    /// Segmentation of TCP with ECN (HOST_/GUEST_ECN; needs TSO4 or TSO6).
    pub ecn: bool,
    /// UDP fragmentation offload (HOST_/GUEST_UFO).
    pub ufo: bool,
    /// UDP over IPv4 segmentation (HOST_USO, GUEST_USO4).
    pub uso4: bool,
    /// UDP over IPv6 segmentation (HOST_USO, GUEST_USO6).
    pub uso6: bool,
}

fn bit(features: u64, b: u32) -> bool {
    b < 64 && features >> b & 1 == 1
}

impl Offloads {
    /// None at all: full frames, complete checksums.
    pub const NONE: Offloads = Offloads {
        csum: false,
        tso4: false,
        tso6: false,
        ecn: false,
        ufo: false,
        uso4: false,
        uso6: false,
    };

    /// Whether any segmentation offload is in the set.
    pub fn any_gso(&self) -> bool {
        self.tso4 || self.tso6 || self.ufo || self.uso4 || self.uso6
    }

    /// The segmentation feature bits a device on a backend with these
    /// offloads offers: for each offload both directions (HOST_ and
    /// GUEST_), ECN only with TSO4 or TSO6 (§5.1.3.1).
    pub fn offered_features(&self) -> u64 {
        let mut bits = Vec::new();
        if self.tso4 {
            bits.extend([VIRTIO_NET_F_HOST_TSO4, VIRTIO_NET_F_GUEST_TSO4]);
        }
        if self.tso6 {
            bits.extend([VIRTIO_NET_F_HOST_TSO6, VIRTIO_NET_F_GUEST_TSO6]);
        }
        if self.ecn && (self.tso4 || self.tso6) {
            bits.extend([VIRTIO_NET_F_HOST_ECN, VIRTIO_NET_F_GUEST_ECN]);
        }
        if self.ufo {
            bits.extend([VIRTIO_NET_F_HOST_UFO, VIRTIO_NET_F_GUEST_UFO]);
        }
        if self.uso4 && self.uso6 {
            bits.push(VIRTIO_NET_F_HOST_USO);
        }
        if self.uso4 {
            bits.push(VIRTIO_NET_F_GUEST_USO4);
        }
        if self.uso6 {
            bits.push(VIRTIO_NET_F_GUEST_USO6);
        }
        bits.iter().fold(0, |f, b| f | 1 << b)
    }

    /// What a driver that negotiated `features` accepts on receive:
    /// GUEST_CSUM, GUEST_TSO4/TSO6/ECN/UFO/USO4/USO6 (no segmentation
    /// offload without GUEST_CSUM, which each requires, §5.1.3.1).
    pub fn from_guest_features(features: u64) -> Self {
        let b = |x| bit(features, x);
        if !b(VIRTIO_NET_F_GUEST_CSUM) {
            return Self::NONE;
        }
        Self {
            csum: b(VIRTIO_NET_F_GUEST_CSUM),
            tso4: b(VIRTIO_NET_F_GUEST_TSO4),
            tso6: b(VIRTIO_NET_F_GUEST_TSO6),
            ecn: b(VIRTIO_NET_F_GUEST_ECN),
            ufo: b(VIRTIO_NET_F_GUEST_UFO),
            uso4: b(VIRTIO_NET_F_GUEST_USO4),
            uso6: b(VIRTIO_NET_F_GUEST_USO6),
        }
    }

    /// What a driver that negotiated `features` may send: CSUM,
    /// HOST_TSO4/TSO6/ECN/UFO, HOST_USO (both IP versions); no
    /// segmentation offload without CSUM, which each requires (§5.1.3.1).
    pub fn from_host_features(features: u64) -> Self {
        let b = |x| bit(features, x);
        if !b(VIRTIO_NET_F_CSUM) {
            return Self::NONE;
        }
        Self {
            csum: b(VIRTIO_NET_F_CSUM),
            tso4: b(VIRTIO_NET_F_HOST_TSO4),
            tso6: b(VIRTIO_NET_F_HOST_TSO6),
            ecn: b(VIRTIO_NET_F_HOST_ECN),
            ufo: b(VIRTIO_NET_F_HOST_UFO),
            uso4: b(VIRTIO_NET_F_HOST_USO),
            uso6: b(VIRTIO_NET_F_HOST_USO),
        }
    }

    /// Whether a frame with `gso` may cross under this set: its protocol
    /// is in the set (UDP_L4 with USO4 or USO6), and the ECN bit only
    /// with `ecn`. A frame without GSO always may.
    pub fn allows(&self, gso: Option<Gso>) -> bool {
        let Some(g) = gso else {
            return true;
        };
        let proto = match g.protocol() {
            VIRTIO_NET_HDR_GSO_TCPV4 => self.tso4,
            VIRTIO_NET_HDR_GSO_TCPV6 => self.tso6,
            VIRTIO_NET_HDR_GSO_UDP => self.ufo,
            VIRTIO_NET_HDR_GSO_UDP_L4 => self.uso4 || self.uso6,
            _ => false,
        };
        proto
            && (!g.ecn() || self.ecn)
            && g.gso_type
                & (VIRTIO_NET_HDR_GSO_UDP_TUNNEL_IPV4 | VIRTIO_NET_HDR_GSO_UDP_TUNNEL_IPV6)
                == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A TCPv4 TSO header as Linux's virtio_net sends it: NEEDS_CSUM,
    /// gso_type 1, hdr_len 66, gso_size 1448, csum 34+16.
    const TSO4: [u8; 12] = [1, 1, 66, 0, 0xa8, 0x05, 34, 0, 16, 0, 0, 0];

    #[test]
    fn header_bytes_round_trip() {
        let h = VnetHdr::parse(&TSO4).unwrap();
        assert_eq!(
            h,
            VnetHdr {
                flags: 1,
                gso_type: VIRTIO_NET_HDR_GSO_TCPV4,
                hdr_len: 66,
                gso_size: 1448,
                csum_start: 34,
                csum_offset: 16,
            }
        );
        let p = h.into_packet(vec![0u8; 3000]).unwrap();
        assert_eq!(
            p.gso,
            Some(Gso {
                gso_type: 1,
                hdr_len: 66,
                gso_size: 1448
            })
        );
        assert_eq!(
            p.csum,
            Some(PartialCsum {
                start: 34,
                offset: 16
            })
        );
        assert_eq!(VnetHdr::of(&p).to_bytes(), TSO4);
        assert!(VnetHdr::parse(&TSO4[..9]).is_none());
    }

    #[test]
    fn plain_frames_carry_no_hdr_len_and_ignore_other_flags() {
        // DATA_VALID (2) and an unknown flag (0x80), hdr_len 14 and
        // csum fields without NEEDS_CSUM, the ECN bit alone.
        let b = [0x82, 0x80, 14, 0, 0, 0, 99, 0, 99, 0, 0, 0];
        let p = VnetHdr::parse(&b)
            .unwrap()
            .into_packet(vec![0; 60])
            .unwrap();
        assert_eq!((p.csum, p.gso), (None, None));
        assert_eq!(VnetHdr::of(&p).to_bytes(), [0u8; 12]);
    }

    #[test]
    fn bad_offload_fields_are_refused() {
        let parse = |b: [u8; 12], len: usize| VnetHdr::parse(&b).unwrap().into_packet(vec![0; len]);
        // Checksum field ends one byte past the frame.
        assert_eq!(
            parse([1, 0, 0, 0, 0, 0, 34, 0, 16, 0, 0, 0], 51),
            Err(BadOffload::CsumOutside {
                start: 34,
                offset: 16,
                len: 51
            })
        );
        assert!(parse([1, 0, 0, 0, 0, 0, 34, 0, 16, 0, 0, 0], 52).is_ok());
        // csum_start + csum_offset overflowing u16 arithmetic.
        assert!(parse([1, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0], 100).is_err());
        // GSO without NEEDS_CSUM.
        let mut b = TSO4;
        b[0] = 0;
        assert_eq!(parse(b, 3000), Err(BadOffload::GsoWithoutCsum(1)));
        // gso_size 0.
        let mut b = TSO4;
        b[4..6].copy_from_slice(&[0, 0]);
        assert_eq!(parse(b, 3000), Err(BadOffload::GsoSizeZero(1)));
        // hdr_len past the end.
        let mut b = TSO4;
        b[2..4].copy_from_slice(&3001u16.to_le_bytes());
        assert_eq!(
            parse(b, 3000),
            Err(BadOffload::HdrLenPastEnd {
                hdr_len: 3001,
                len: 3000
            })
        );
        assert!(parse(TSO4, 66).is_ok(), "hdr_len == len is a whole header");
        // Unknown GSO types and UDP tunnel bits.
        for t in [2u8, 6, 0x7f, 0x21, 0x41, 0x20] {
            let mut b = TSO4;
            b[1] = t;
            assert_eq!(parse(b, 3000), Err(BadOffload::GsoType(t)), "{t:#x}");
        }
        // TCPV6 | ECN, UDP, UDP_L4 are fine.
        for t in [0x84u8, 3, 5] {
            let mut b = TSO4;
            b[1] = t;
            assert!(parse(b, 3000).is_ok(), "{t:#x}");
        }
    }

    #[test]
    fn offload_sets_and_features() {
        assert_eq!(Offloads::NONE.offered_features(), 0);
        assert!(!Offloads::NONE.any_gso());
        let all = Offloads {
            csum: true,
            tso4: true,
            tso6: true,
            ecn: true,
            ufo: true,
            uso4: true,
            uso6: true,
        };
        let f = all.offered_features();
        for b in [
            VIRTIO_NET_F_HOST_TSO4,
            VIRTIO_NET_F_HOST_TSO6,
            VIRTIO_NET_F_HOST_ECN,
            VIRTIO_NET_F_HOST_UFO,
            VIRTIO_NET_F_HOST_USO,
            VIRTIO_NET_F_GUEST_TSO4,
            VIRTIO_NET_F_GUEST_TSO6,
            VIRTIO_NET_F_GUEST_ECN,
            VIRTIO_NET_F_GUEST_UFO,
            VIRTIO_NET_F_GUEST_USO4,
            VIRTIO_NET_F_GUEST_USO6,
        ] {
            assert!(bit(f, b), "bit {b}");
        }
        assert_eq!(f.count_ones(), 11);
        assert_eq!(Offloads::from_host_features(f | 1), all);
        assert_eq!(Offloads::from_guest_features(f | 2), all);
        assert_eq!(Offloads::from_host_features(f), Offloads::NONE, "no CSUM");
        assert_eq!(Offloads::from_guest_features(f | 1), Offloads::NONE);
        // ECN alone is not offered.
        let ecn_only = Offloads {
            ecn: true,
            ..Offloads::NONE
        };
        assert_eq!(ecn_only.offered_features(), 0);

        let tso4 = Offloads {
            csum: true,
            tso4: true,
            ..Offloads::NONE
        };
        let g = |t: u8| {
            Some(Gso {
                gso_type: t,
                hdr_len: 54,
                gso_size: 1000,
            })
        };
        assert!(tso4.allows(None));
        assert!(tso4.allows(g(VIRTIO_NET_HDR_GSO_TCPV4)));
        assert!(!tso4.allows(g(VIRTIO_NET_HDR_GSO_TCPV4 | VIRTIO_NET_HDR_GSO_ECN)));
        assert!(!tso4.allows(g(VIRTIO_NET_HDR_GSO_TCPV6)));
        assert!(!tso4.allows(g(VIRTIO_NET_HDR_GSO_UDP_L4)));
        assert!(!all.allows(g(VIRTIO_NET_HDR_GSO_TCPV4 | 0x20)));
        assert!(all.allows(g(VIRTIO_NET_HDR_GSO_TCPV6 | VIRTIO_NET_HDR_GSO_ECN)));
        assert!(!Offloads::NONE.allows(g(VIRTIO_NET_HDR_GSO_UDP)));
    }
}
