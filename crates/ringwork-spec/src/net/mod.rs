//! VIRTIO 1.4 §5.1 Network Device: feature bits and their dependency rules
//! ([`NET_FEATURE_RULES`]), the device configuration layout, the per-packet
//! `virtio_net_hdr`, header and buffer sizes, hashing constants and virtqueue
//! numbering.
//!
//! The control virtqueue (classes, commands and their payloads) is in
//! [`ctrl`], device statistics (`VIRTIO_NET_CTRL_STATS`) in [`stats`], and
//! device capabilities (§5.1.6), resource objects (§5.1.7), device parts
//! (§5.1.8) and flow filters (§5.1.9.6) in [`ff`].
//!
//! Feature bits are bit *numbers* (`u32`): the network device uses bits above
//! 63. Helpers that depend on the negotiated features take a predicate
//! `has(bit) -> bool`, so they work with any feature-set representation:
//!
//! ```
//! use ringwork_spec::net::{net_hdr_len, VIRTIO_NET_F_HASH_REPORT, VIRTIO_NET_F_MRG_RXBUF};
//!
//! let features: u128 = (1 << VIRTIO_NET_F_MRG_RXBUF) | (1 << 32); // + VIRTIO_F_VERSION_1
//! assert_eq!(net_hdr_len(|bit| features >> bit & 1 == 1), 12);
//! let features = features | 1 << VIRTIO_NET_F_HASH_REPORT;
//! assert_eq!(net_hdr_len(|bit| features >> bit & 1 == 1), 20);
//! ```
//!
//! # Virtqueues
//! `receiveq1, transmitq1, …, receiveqN, transmitqN, controlq`: with 0-based
//! pair numbers `p`, receiveq(p+1) has index `2p`, transmitq(p+1) index
//! `2p + 1`, and the controlq (only with `VIRTIO_NET_F_CTRL_VQ`) index `2N`,
//! where `N = max_virtqueue_pairs` if `VIRTIO_NET_F_MQ` or `VIRTIO_NET_F_RSS`
//! is negotiated and 1 otherwise. Indexes are `u32` because `2N` reaches
//! 0x10000 for the largest `max_virtqueue_pairs` (0x8000).

use crate::features::VIRTIO_F_VERSION_1;
use crate::le::{Le16, Le32};
use crate::wire_view;

mod bits;
mod csum;
pub mod ctrl;
pub mod ff;
pub mod stats;

pub use bits::*;
pub use csum::ones_complement_sum;

// ---------------------------------------------------------------------------
// Device configuration layout (§5.1.4)
// ---------------------------------------------------------------------------

/// `status` bit: the link is up.
pub const VIRTIO_NET_S_LINK_UP: u16 = 1;
/// `status` bit: the driver is asked to send gratuitous packets.
pub const VIRTIO_NET_S_ANNOUNCE: u16 = 2;

/// `duplex`: half duplex (0x00, per the descriptive text of §5.1.4; the
/// normative clause of §5.1.4.1 swaps 0x00 and 0x01 — see [`DUPLEX_FULL`]).
pub const DUPLEX_HALF: u8 = 0x00;
/// `duplex`: full duplex (0x01 per the descriptive text of §5.1.4 and
/// Linux's `DUPLEX_FULL`; §5.1.4.1 says "0x00 for full duplex, 0x01 for half
/// duplex", contradicting it).
pub const DUPLEX_FULL: u8 = 0x01;
/// `duplex`: unknown duplex state.
pub const DUPLEX_UNKNOWN: u8 = 0xff;
/// `speed`: unknown speed.
pub const SPEED_UNKNOWN: u32 = 0xffff_ffff;
/// Largest meaningful `speed` in Mbit/s; drivers treat anything above as unknown.
pub const SPEED_MAX: u32 = 0x7fff_ffff;

/// Smallest `mtu` a device may report.
pub const MTU_MIN: u16 = 68;
/// Largest `mtu` a device may report.
pub const MTU_MAX: u16 = 65535;
/// `mtu` a device SHOULD at least report.
pub const MTU_RECOMMENDED_MIN: u16 = 1280;
/// Least `rss_max_key_size` with `VIRTIO_NET_F_RSS` or `VIRTIO_NET_F_HASH_REPORT`.
pub const RSS_MAX_KEY_SIZE_MIN: u8 = 40;
/// Least `rss_max_indirection_table_length` with `VIRTIO_NET_F_RSS`.
pub const RSS_MAX_INDIRECTION_TABLE_LENGTH_MIN: u16 = 128;

/// Offset of `mac` in [`NetConfig`].
pub const NET_CONFIG_MAC_OFFSET: usize = 0;
/// Offset of `status` in [`NetConfig`].
pub const NET_CONFIG_STATUS_OFFSET: usize = 6;
/// Offset of `max_virtqueue_pairs` in [`NetConfig`].
pub const NET_CONFIG_MAX_VIRTQUEUE_PAIRS_OFFSET: usize = 8;
/// Offset of `mtu` in [`NetConfig`].
pub const NET_CONFIG_MTU_OFFSET: usize = 10;
/// Offset of `speed` in [`NetConfig`].
pub const NET_CONFIG_SPEED_OFFSET: usize = 12;
/// Offset of `duplex` in [`NetConfig`].
pub const NET_CONFIG_DUPLEX_OFFSET: usize = 16;
/// Offset of `rss_max_key_size` in [`NetConfig`].
pub const NET_CONFIG_RSS_MAX_KEY_SIZE_OFFSET: usize = 17;
/// Offset of `rss_max_indirection_table_length` in [`NetConfig`].
pub const NET_CONFIG_RSS_MAX_INDIRECTION_TABLE_LENGTH_OFFSET: usize = 18;
/// Offset of `supported_hash_types` in [`NetConfig`].
pub const NET_CONFIG_SUPPORTED_HASH_TYPES_OFFSET: usize = 20;
/// Offset of `supported_tunnel_types` in [`NetConfig`].
pub const NET_CONFIG_SUPPORTED_TUNNEL_TYPES_OFFSET: usize = 24;

wire_view! {
    /// The network device configuration space (`struct virtio_net_config`,
    /// VIRTIO 1.4 §5.1.4). Read-only for the driver (legacy drivers could
    /// write `mac`). Fields past `mac` exist only with their features; they
    /// are laid out at fixed offsets regardless.
    #[doc(alias = "virtio_net_config")]
    pub struct NetConfig, size NET_CONFIG_SIZE = 28 {
        /// MAC address; valid with `VIRTIO_NET_F_MAC`.
        @0 mac / set_mac: [u8; 6],
        /// `VIRTIO_NET_S_*` bits; with `VIRTIO_NET_F_STATUS`.
        @6 status / set_status: Le16,
        /// Maximum queue pairs (1..=0x8000); with `VIRTIO_NET_F_MQ` or `VIRTIO_NET_F_RSS`.
        @8 max_virtqueue_pairs / set_max_virtqueue_pairs: Le16,
        /// Maximum MTU (68..=65535); with `VIRTIO_NET_F_MTU`.
        @10 mtu / set_mtu: Le16,
        /// Speed in Mbit/s, or [`SPEED_UNKNOWN`]; with `VIRTIO_NET_F_SPEED_DUPLEX`.
        @12 speed / set_speed: Le32,
        /// [`DUPLEX_HALF`], [`DUPLEX_FULL`] or [`DUPLEX_UNKNOWN`]; with
        /// `VIRTIO_NET_F_SPEED_DUPLEX`.
        @16 duplex / set_duplex: u8,
        /// Maximum RSS key length in bytes; with `VIRTIO_NET_F_RSS` or
        /// `VIRTIO_NET_F_HASH_REPORT`.
        @17 rss_max_key_size / set_rss_max_key_size: u8,
        /// Maximum number of 16-bit indirection table entries; with `VIRTIO_NET_F_RSS`.
        @18 rss_max_indirection_table_length / set_rss_max_indirection_table_length: Le16,
        /// `VIRTIO_NET_HASH_TYPE_*` bitmask; with `VIRTIO_NET_F_RSS` or
        /// `VIRTIO_NET_F_HASH_REPORT`.
        @20 supported_hash_types / set_supported_hash_types: Le32,
        /// `VIRTIO_NET_HASH_TUNNEL_TYPE_*` bitmask; with `VIRTIO_NET_F_HASH_TUNNEL`.
        @24 supported_tunnel_types / set_supported_tunnel_types: Le32,
    }
}

/// Interprets `speed`: `Some(mbit_per_s)` for 0..=0x7fffffff, `None` (unknown)
/// otherwise, as §5.1.4.2 requires drivers to.
#[inline]
pub const fn speed_mbps(speed: u32) -> Option<u32> {
    if speed <= SPEED_MAX {
        Some(speed)
    } else {
        None
    }
}

// ---------------------------------------------------------------------------
// Virtqueue numbering (§5.1.2)
// ---------------------------------------------------------------------------

/// Index of receiveq(`pair` + 1): `2 * pair` (`pair` is 0-based).
#[inline]
pub const fn receiveq_index(pair: u16) -> u32 {
    2 * pair as u32
}

/// Index of transmitq(`pair` + 1): `2 * pair + 1` (`pair` is 0-based).
#[inline]
pub const fn transmitq_index(pair: u16) -> u32 {
    2 * pair as u32 + 1
}

/// Index of the controlq: `2 * pairs`, where `pairs` is [`queue_pairs`].
#[inline]
pub const fn controlq_index(pairs: u16) -> u32 {
    2 * pairs as u32
}

/// The `N` of §5.1.2: `max_virtqueue_pairs` if `VIRTIO_NET_F_MQ` or
/// `VIRTIO_NET_F_RSS` was negotiated (`mq_or_rss`), 1 otherwise.
#[inline]
pub const fn queue_pairs(mq_or_rss: bool, max_virtqueue_pairs: u16) -> u16 {
    if mq_or_rss {
        max_virtqueue_pairs
    } else {
        1
    }
}

/// What a virtqueue index designates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetQueue {
    /// receiveq(pair + 1), `pair` 0-based.
    Receive(u16),
    /// transmitq(pair + 1), `pair` 0-based.
    Transmit(u16),
    /// The control virtqueue.
    Control,
    /// No queue of this device (kept, not rejected).
    Unknown(u32),
}

/// Classifies virtqueue `index` for a device with `pairs` queue pairs (see
/// [`queue_pairs`]) and, if `ctrl_vq`, a control virtqueue.
pub const fn classify_queue(index: u32, pairs: u16, ctrl_vq: bool) -> NetQueue {
    if index < 2 * pairs as u32 {
        let pair = (index / 2) as u16;
        if index % 2 == 0 {
            NetQueue::Receive(pair)
        } else {
            NetQueue::Transmit(pair)
        }
    } else if ctrl_vq && index == controlq_index(pairs) {
        NetQueue::Control
    } else {
        NetQueue::Unknown(index)
    }
}

// ---------------------------------------------------------------------------
// Packet header (§5.1.9)
// ---------------------------------------------------------------------------

/// `flags`: the device (tx) or driver (rx) must complete the checksum.
pub const VIRTIO_NET_HDR_F_NEEDS_CSUM: u8 = 1;
/// `flags` (rx): the device validated the checksum.
pub const VIRTIO_NET_HDR_F_DATA_VALID: u8 = 2;
/// `flags` (rx, `VIRTIO_NET_F_RSC_EXT`): `csum_start` holds the number of
/// coalesced segments and `csum_offset` the number of duplicated ACKs.
pub const VIRTIO_NET_HDR_F_RSC_INFO: u8 = 4;
/// `flags`: the outer UDP checksum of a tunnelled packet is partial/validated.
pub const VIRTIO_NET_HDR_F_UDP_TUNNEL_CSUM: u8 = 8;
/// `flags`: the packet goes through IPsec processing.
pub const VIRTIO_NET_HDR_F_SECURITY: u8 = 16;
/// `flags`: IPsec processing failed.
pub const VIRTIO_NET_HDR_F_SECURITY_ERR: u8 = 32;
/// `flags`: the SA reached its soft lifetime limit.
pub const VIRTIO_NET_HDR_F_SECURITY_SA_SOFT_EXPIRY_WARN: u8 = 64;

/// `gso_type`: not a GSO packet.
pub const VIRTIO_NET_HDR_GSO_NONE: u8 = 0;
/// `gso_type`: TCPv4 segmentation.
pub const VIRTIO_NET_HDR_GSO_TCPV4: u8 = 1;
/// `gso_type`: UDP fragmentation (UFO; deprecated in favour of `UDP_L4`).
pub const VIRTIO_NET_HDR_GSO_UDP: u8 = 3;
/// `gso_type`: TCPv6 segmentation.
pub const VIRTIO_NET_HDR_GSO_TCPV6: u8 = 4;
/// `gso_type`: UDP segmentation (USO).
pub const VIRTIO_NET_HDR_GSO_UDP_L4: u8 = 5;
/// `gso_type` bit: GSO inside a UDP tunnel, inner network header IPv4.
pub const VIRTIO_NET_HDR_GSO_UDP_TUNNEL_IPV4: u8 = 0x20;
/// `gso_type` bit: GSO inside a UDP tunnel, inner network header IPv6.
pub const VIRTIO_NET_HDR_GSO_UDP_TUNNEL_IPV6: u8 = 0x40;
/// `gso_type` bit: the TCP packet has the ECN bit set.
pub const VIRTIO_NET_HDR_GSO_ECN: u8 = 0x80;

/// `gso_type` without the ECN and UDP tunnel bits (the GSO protocol).
#[inline]
pub const fn gso_protocol(gso_type: u8) -> u8 {
    gso_type
        & !(VIRTIO_NET_HDR_GSO_ECN
            | VIRTIO_NET_HDR_GSO_UDP_TUNNEL_IPV4
            | VIRTIO_NET_HDR_GSO_UDP_TUNNEL_IPV6)
}

/// Header size of the legacy interface without `VIRTIO_NET_F_MRG_RXBUF` (no
/// `num_buffers`).
pub const NET_HDR_LEGACY_SIZE: usize = 10;
/// Header size with `VIRTIO_F_VERSION_1` or `VIRTIO_NET_F_MRG_RXBUF`.
pub const NET_HDR_SIZE: usize = 12;
/// Header size with `VIRTIO_NET_F_HASH_REPORT` (up to `padding_reserved`).
pub const NET_HDR_HASH_SIZE: usize = 20;
/// Header size with UDP tunnel GSO (up to `inner_nh_offset`).
pub const NET_HDR_TUNNEL_SIZE: usize = 24;
/// Header size with `VIRTIO_NET_F_OUT_NET_HEADER` or `VIRTIO_NET_F_IPSEC`
/// (up to `padding_reserved_2`).
pub const NET_HDR_FULL_SIZE: usize = 32;

/// Size of `struct virtio_net_hdr` for the negotiated features, `has(bit)`
/// telling whether feature bit `bit` was negotiated (§5.1.9.3 "Setting Up Receive Buffers", §5.1.9.1 for legacy):
///
/// | negotiated                                                   | size |
/// |--------------------------------------------------------------|------|
/// | `OUT_NET_HEADER` or `IPSEC`                                  | 32   |
/// | `HOST_UDP_TUNNEL_GSO` or `GUEST_UDP_TUNNEL_GSO`              | 24   |
/// | `HASH_REPORT`                                                | 20   |
/// | `VIRTIO_F_VERSION_1` or `MRG_RXBUF`                          | 12   |
/// | none of these (legacy)                                       | 10   |
///
/// The size rule of §5.1.9.3.1 names only `HOST_UDP_TUNNEL_GSO` for 24 bytes,
/// while the structure listing makes the tunnel fields present with either
/// `HOST_` or `GUEST_UDP_TUNNEL_GSO`; both are honoured here (as Linux does).
/// Transmit buffers use the same size as receive buffers.
///
/// With a [`FeatureSet`](crate::features::FeatureSet): `net_hdr_len(|bit| set.contains(bit))`.
pub fn net_hdr_len(has: impl Fn(u32) -> bool) -> usize {
    if has(VIRTIO_NET_F_OUT_NET_HEADER) || has(VIRTIO_NET_F_IPSEC) {
        NET_HDR_FULL_SIZE
    } else if has(VIRTIO_NET_F_HOST_UDP_TUNNEL_GSO) || has(VIRTIO_NET_F_GUEST_UDP_TUNNEL_GSO) {
        NET_HDR_TUNNEL_SIZE
    } else if has(VIRTIO_NET_F_HASH_REPORT) {
        NET_HDR_HASH_SIZE
    } else if has(VIRTIO_F_VERSION_1) || has(VIRTIO_NET_F_MRG_RXBUF) {
        NET_HDR_SIZE
    } else {
        NET_HDR_LEGACY_SIZE
    }
}

/// Largest incoming packet with guest GSO (14-byte Ethernet + 40-byte IPv6
/// header + 65535-byte payload).
pub const MAX_GSO_PACKET_LEN: usize = 65589;
/// Largest incoming packet without guest GSO.
pub const MAX_PACKET_LEN: usize = 1514;

/// Minimum receive buffer size (§5.1.9.3.1): with `VIRTIO_NET_F_MRG_RXBUF`
/// the header size; otherwise the header plus [`MAX_GSO_PACKET_LEN`] if any of
/// `GUEST_TSO4/TSO6/UFO/USO4/USO6` was negotiated, else plus
/// [`MAX_PACKET_LEN`] (65601/1526 with the 12-byte header, 65609/1534 with
/// the 20-byte one, as the spec lists).
pub fn min_rx_buffer_len(has: impl Fn(u32) -> bool) -> usize {
    let hdr = net_hdr_len(&has);
    if has(VIRTIO_NET_F_MRG_RXBUF) {
        hdr
    } else if [
        VIRTIO_NET_F_GUEST_TSO4,
        VIRTIO_NET_F_GUEST_TSO6,
        VIRTIO_NET_F_GUEST_UFO,
        VIRTIO_NET_F_GUEST_USO4,
        VIRTIO_NET_F_GUEST_USO6,
    ]
    .iter()
    .any(|&b| has(b))
    {
        hdr + MAX_GSO_PACKET_LEN
    } else {
        hdr + MAX_PACKET_LEN
    }
}

/// Declares a `virtio_net_hdr` view: the ten bytes every variant starts with,
/// then the variant's own fields.
macro_rules! net_hdr_view {
    (
        $(#[$meta:meta])*
        $name:ident, $size_const:ident = $size:tt { $($rest:tt)* }
    ) => {
        wire_view! {
            $(#[$meta])*
            pub struct $name, size $size_const = $size {
                /// `VIRTIO_NET_HDR_F_*` bits.
                @0 flags / set_flags: u8,
                /// `VIRTIO_NET_HDR_GSO_*` value and bits.
                @1 gso_type / set_gso_type: u8,
                /// Header length to replicate per segment (a hint unless
                /// `VIRTIO_NET_F_GUEST_HDRLEN`).
                @2 hdr_len / set_hdr_len: Le16,
                /// Maximum segment size for GSO.
                @4 gso_size / set_gso_size: Le16,
                /// Where checksumming starts (or, with `VIRTIO_NET_HDR_F_RSC_INFO`,
                /// the number of coalesced segments).
                @6 csum_start / set_csum_start: Le16,
                /// Checksum position after `csum_start` (or, with
                /// `VIRTIO_NET_HDR_F_RSC_INFO`, the number of duplicated ACKs).
                @8 csum_offset / set_csum_offset: Le16,
                $($rest)*
            }
        }
    };
}

net_hdr_view! {
    /// The 10-byte legacy header (no `num_buffers`): the legacy interface
    /// without `VIRTIO_NET_F_MRG_RXBUF` (§5.1.9.1).
    #[doc(alias = "virtio_net_hdr")]
    NetHdrLegacy, NET_HDR_LEGACY_LEN = 10 {}
}

net_hdr_view! {
    /// The 12-byte packet header (`struct virtio_net_hdr` up to
    /// `num_buffers`, VIRTIO 1.4 §5.1.9).
    #[doc(alias = "virtio_net_hdr")]
    #[doc(alias = "virtio_net_hdr_v1")]
    #[doc(alias = "virtio_net_hdr_mrg_rxbuf")]
    NetHdr, NET_HDR_LEN = 12 {
        /// Number of buffers the received packet spans (0 on transmit).
        @10 num_buffers / set_num_buffers: Le16,
    }
}

net_hdr_view! {
    /// The 20-byte header with hash report fields (`VIRTIO_NET_F_HASH_REPORT`).
    #[doc(alias = "virtio_net_hdr")]
    #[doc(alias = "virtio_net_hdr_v1_hash")]
    NetHdrHash, NET_HDR_HASH_LEN = 20 {
        /// Number of buffers the received packet spans (0 on transmit).
        @10 num_buffers / set_num_buffers: Le16,
        /// Calculated hash value.
        @12 hash_value / set_hash_value: Le32,
        /// `VIRTIO_NET_HASH_REPORT_*` type of the hash.
        @16 hash_report / set_hash_report: Le16,
        /// Reserved.
        @18 padding_reserved / set_padding_reserved: Le16,
    }
}

net_hdr_view! {
    /// The 24-byte header with UDP tunnel fields
    /// (`VIRTIO_NET_F_HOST_UDP_TUNNEL_GSO` / `VIRTIO_NET_F_GUEST_UDP_TUNNEL_GSO`).
    /// The hash fields keep their place even without `VIRTIO_NET_F_HASH_REPORT`.
    #[doc(alias = "virtio_net_hdr")]
    #[doc(alias = "virtio_net_hdr_v1_hash_tunnel")]
    NetHdrTunnel, NET_HDR_TUNNEL_LEN = 24 {
        /// Number of buffers the received packet spans (0 on transmit).
        @10 num_buffers / set_num_buffers: Le16,
        /// Calculated hash value.
        @12 hash_value / set_hash_value: Le32,
        /// `VIRTIO_NET_HASH_REPORT_*` type of the hash.
        @16 hash_report / set_hash_report: Le16,
        /// Reserved.
        @18 padding_reserved / set_padding_reserved: Le16,
        /// Offset of the outer transport (UDP) header in the packet.
        @20 outer_th_offset / set_outer_th_offset: Le16,
        /// Offset of the inner network header in the packet.
        @22 inner_nh_offset / set_inner_nh_offset: Le16,
    }
}

net_hdr_view! {
    /// The full 32-byte header (`VIRTIO_NET_F_OUT_NET_HEADER` or
    /// `VIRTIO_NET_F_IPSEC`). Bytes 26..32 are a union of
    /// `padding_reserved_2[6]` and `struct ipsec_resource_hdr`.
    #[doc(alias = "virtio_net_hdr")]
    #[doc(alias = "ipsec_resource_hdr")]
    NetHdrFull, NET_HDR_FULL_LEN = 32 {
        /// Number of buffers the received packet spans (0 on transmit).
        @10 num_buffers / set_num_buffers: Le16,
        /// Calculated hash value.
        @12 hash_value / set_hash_value: Le32,
        /// `VIRTIO_NET_HASH_REPORT_*` type of the hash.
        @16 hash_report / set_hash_report: Le16,
        /// Reserved.
        @18 padding_reserved / set_padding_reserved: Le16,
        /// Offset of the outer transport (UDP) header in the packet.
        @20 outer_th_offset / set_outer_th_offset: Le16,
        /// Offset of the inner network header in the packet.
        @22 inner_nh_offset / set_inner_nh_offset: Le16,
        /// Offset of the outer network header (0: not provided).
        @24 outer_nh_offset / set_outer_nh_offset: Le16,
        /// The union's bytes as `padding_reserved_2`.
        @26 padding_reserved_2 / set_padding_reserved_2: [u8; 6],
        /// `ipsec_resource_hdr.resource_id` (with `VIRTIO_NET_HDR_F_SECURITY`).
        @26 resource_id / set_resource_id: Le32,
        /// `ipsec_resource_hdr.resource_type`.
        @30 resource_type / set_resource_type: Le16,
    }
}

// ---------------------------------------------------------------------------
// Hashing (§5.1.9.4 "Processing of Incoming Packets")
// ---------------------------------------------------------------------------

/// Hash type: IPv4 addresses.
#[doc(alias = "VIRTIO_NET_RSS_HASH_TYPE_IPv4")]
pub const VIRTIO_NET_HASH_TYPE_IPV4: u32 = 1 << 0;
/// Hash type: IPv4 addresses and TCP ports.
#[doc(alias = "VIRTIO_NET_RSS_HASH_TYPE_TCPv4")]
pub const VIRTIO_NET_HASH_TYPE_TCPV4: u32 = 1 << 1;
/// Hash type: IPv4 addresses and UDP ports.
#[doc(alias = "VIRTIO_NET_RSS_HASH_TYPE_UDPv4")]
pub const VIRTIO_NET_HASH_TYPE_UDPV4: u32 = 1 << 2;
/// Hash type: IPv6 addresses (no extension headers).
#[doc(alias = "VIRTIO_NET_RSS_HASH_TYPE_IPv6")]
pub const VIRTIO_NET_HASH_TYPE_IPV6: u32 = 1 << 3;
/// Hash type: IPv6 addresses and TCP ports (no extension headers).
#[doc(alias = "VIRTIO_NET_RSS_HASH_TYPE_TCPv6")]
pub const VIRTIO_NET_HASH_TYPE_TCPV6: u32 = 1 << 4;
/// Hash type: IPv6 addresses and UDP ports (no extension headers).
#[doc(alias = "VIRTIO_NET_RSS_HASH_TYPE_UDPv6")]
pub const VIRTIO_NET_HASH_TYPE_UDPV6: u32 = 1 << 5;
/// Hash type: IPv6 with extension headers, addresses.
#[doc(alias = "VIRTIO_NET_RSS_HASH_TYPE_IP_EX")]
pub const VIRTIO_NET_HASH_TYPE_IP_EX: u32 = 1 << 6;
/// Hash type: IPv6 with extension headers, addresses and TCP ports.
#[doc(alias = "VIRTIO_NET_RSS_HASH_TYPE_TCP_EX")]
pub const VIRTIO_NET_HASH_TYPE_TCP_EX: u32 = 1 << 7;
/// Hash type: IPv6 with extension headers, addresses and UDP ports.
#[doc(alias = "VIRTIO_NET_RSS_HASH_TYPE_UDP_EX")]
pub const VIRTIO_NET_HASH_TYPE_UDP_EX: u32 = 1 << 8;

/// `hash_report`: no hash calculated.
pub const VIRTIO_NET_HASH_REPORT_NONE: u16 = 0;
/// `hash_report`: IPv4.
pub const VIRTIO_NET_HASH_REPORT_IPV4: u16 = 1;
/// `hash_report`: TCPv4.
pub const VIRTIO_NET_HASH_REPORT_TCPV4: u16 = 2;
/// `hash_report`: UDPv4.
pub const VIRTIO_NET_HASH_REPORT_UDPV4: u16 = 3;
/// `hash_report`: IPv6.
pub const VIRTIO_NET_HASH_REPORT_IPV6: u16 = 4;
/// `hash_report`: TCPv6.
pub const VIRTIO_NET_HASH_REPORT_TCPV6: u16 = 5;
/// `hash_report`: UDPv6.
pub const VIRTIO_NET_HASH_REPORT_UDPV6: u16 = 6;
/// `hash_report`: IPv6 with extension headers.
pub const VIRTIO_NET_HASH_REPORT_IPV6_EX: u16 = 7;
/// `hash_report`: TCPv6 with extension headers.
pub const VIRTIO_NET_HASH_REPORT_TCPV6_EX: u16 = 8;
/// `hash_report`: UDPv6 with extension headers.
pub const VIRTIO_NET_HASH_REPORT_UDPV6_EX: u16 = 9;

/// The `VIRTIO_NET_HASH_TYPE_*` bit a `hash_report` value corresponds to
/// (`1 << (report - 1)`), or `None` for `NONE` and undefined values.
#[inline]
pub const fn hash_type_of_report(report: u16) -> Option<u32> {
    if report >= 1 && report <= VIRTIO_NET_HASH_REPORT_UDPV6_EX {
        Some(1 << (report - 1))
    } else {
        None
    }
}

/// Encapsulation type for inner header hash: GRE (RFC 2784).
pub const VIRTIO_NET_HASH_TUNNEL_TYPE_GRE_2784: u32 = 1 << 0;
/// Encapsulation type: GRE (RFC 2890).
pub const VIRTIO_NET_HASH_TUNNEL_TYPE_GRE_2890: u32 = 1 << 1;
/// Encapsulation type: GRE (RFC 7676).
pub const VIRTIO_NET_HASH_TUNNEL_TYPE_GRE_7676: u32 = 1 << 2;
/// Encapsulation type: GRE-in-UDP.
pub const VIRTIO_NET_HASH_TUNNEL_TYPE_GRE_UDP: u32 = 1 << 3;
/// Encapsulation type: VXLAN.
pub const VIRTIO_NET_HASH_TUNNEL_TYPE_VXLAN: u32 = 1 << 4;
/// Encapsulation type: VXLAN-GPE.
pub const VIRTIO_NET_HASH_TUNNEL_TYPE_VXLAN_GPE: u32 = 1 << 5;
/// Encapsulation type: GENEVE.
pub const VIRTIO_NET_HASH_TUNNEL_TYPE_GENEVE: u32 = 1 << 6;
/// Encapsulation type: IPIP.
pub const VIRTIO_NET_HASH_TUNNEL_TYPE_IPIP: u32 = 1 << 7;
/// Encapsulation type: NVGRE.
pub const VIRTIO_NET_HASH_TUNNEL_TYPE_NVGRE: u32 = 1 << 8;

#[cfg(test)]
mod tests {
    use super::*;

    fn set(bits: &[u32]) -> impl Fn(u32) -> bool + '_ {
        move |b| bits.contains(&b)
    }

    #[test]
    fn config_layout_matches_spec_bytes() {
        let mut b = [0u8; 28];
        let mut c = NetConfig::new_checked(&mut b[..]).unwrap();
        c.set_mac([1, 2, 3, 4, 5, 6]);
        c.set_status(VIRTIO_NET_S_LINK_UP | VIRTIO_NET_S_ANNOUNCE);
        c.set_max_virtqueue_pairs(0x0807);
        c.set_mtu(1500);
        c.set_speed(0x0c0b_0a09);
        c.set_duplex(DUPLEX_FULL);
        c.set_rss_max_key_size(40);
        c.set_rss_max_indirection_table_length(128);
        c.set_supported_hash_types(0x1ff);
        c.set_supported_tunnel_types(0x1122_3344);
        assert_eq!(
            b,
            [
                1, 2, 3, 4, 5, 6, 3, 0, 7, 8, 0xdc, 0x05, 9, 10, 11, 12, 1, 40, 128, 0, 0xff, 1, 0,
                0, 0x44, 0x33, 0x22, 0x11
            ]
        );
        assert_eq!(NET_CONFIG_SIZE, 28);
        assert_eq!(b[NET_CONFIG_STATUS_OFFSET], 3);
        assert_eq!(b[NET_CONFIG_MAX_VIRTQUEUE_PAIRS_OFFSET], 7);
        assert_eq!(b[NET_CONFIG_MTU_OFFSET], 0xdc);
        assert_eq!(b[NET_CONFIG_SPEED_OFFSET], 9);
        assert_eq!(b[NET_CONFIG_DUPLEX_OFFSET], 1);
        assert_eq!(b[NET_CONFIG_RSS_MAX_KEY_SIZE_OFFSET], 40);
        assert_eq!(b[NET_CONFIG_RSS_MAX_INDIRECTION_TABLE_LENGTH_OFFSET], 128);
        assert_eq!(b[NET_CONFIG_SUPPORTED_HASH_TYPES_OFFSET], 0xff);
        assert_eq!(b[NET_CONFIG_SUPPORTED_TUNNEL_TYPES_OFFSET], 0x44);
        assert_eq!(NET_CONFIG_MAC_OFFSET, 0);
        assert_eq!(
            (speed_mbps(10_000), speed_mbps(SPEED_UNKNOWN)),
            (Some(10_000), None)
        );
        assert_eq!(speed_mbps(0x8000_0000), None);
    }

    #[test]
    fn hdr_base_layout_matches_spec_bytes() {
        let mut b = [0u8; 12];
        let mut h = NetHdr::new_checked(&mut b[..]).unwrap();
        h.set_flags(VIRTIO_NET_HDR_F_NEEDS_CSUM);
        h.set_gso_type(VIRTIO_NET_HDR_GSO_TCPV4 | VIRTIO_NET_HDR_GSO_ECN);
        h.set_hdr_len(54);
        h.set_gso_size(1448);
        h.set_csum_start(34);
        h.set_csum_offset(16);
        h.set_num_buffers(0x0201);
        assert_eq!(b, [1, 0x81, 54, 0, 0xa8, 0x05, 34, 0, 16, 0, 1, 2]);
        assert_eq!((NET_HDR_LEN, NET_HDR_LEGACY_LEN), (12, 10));
        let legacy = NetHdrLegacy::new_checked(&b[..10]).unwrap();
        assert_eq!((legacy.gso_size(), legacy.csum_offset()), (1448, 16));
        assert!(NetHdr::new_checked(&b[..10]).is_err());
        assert_eq!(gso_protocol(0x81), VIRTIO_NET_HDR_GSO_TCPV4);
        assert_eq!(gso_protocol(0x25), VIRTIO_NET_HDR_GSO_UDP_L4);
    }

    #[test]
    fn hdr_extended_layouts_match_spec_bytes() {
        // Geneve example of §5.1.9.2: TCPv4 in a UDPv4 tunnel.
        let mut b = [0u8; 32];
        b[0] = VIRTIO_NET_HDR_F_NEEDS_CSUM;
        b[1] = 0x21;
        b[6] = 84;
        b[8] = 16;
        b[12..16].copy_from_slice(&[0x78, 0x56, 0x34, 0x12]);
        b[16] = 2;
        b[20] = 42;
        b[22] = 62;
        b[24] = 14;
        b[26..32].copy_from_slice(&[1, 0, 0, 0, 0x03, 0x02]);
        let h = NetHdrFull::new_checked(&b[..]).unwrap();
        assert_eq!(
            h.gso_type(),
            VIRTIO_NET_HDR_GSO_TCPV4 | VIRTIO_NET_HDR_GSO_UDP_TUNNEL_IPV4
        );
        assert_eq!((h.csum_start(), h.csum_offset()), (84, 16));
        assert_eq!((h.hash_value(), h.hash_report()), (0x1234_5678, 2));
        assert_eq!(
            (
                h.outer_th_offset(),
                h.inner_nh_offset(),
                h.outer_nh_offset()
            ),
            (42, 62, 14)
        );
        assert_eq!((h.resource_id(), h.resource_type()), (1, 0x0203));
        assert_eq!(h.padding_reserved_2(), [1, 0, 0, 0, 3, 2]);
        let t = NetHdrTunnel::new_checked(&b[..24]).unwrap();
        assert_eq!((t.outer_th_offset(), t.inner_nh_offset()), (42, 62));
        let hh = NetHdrHash::new_checked(&b[..20]).unwrap();
        assert_eq!(
            (hh.hash_value(), hh.hash_report(), hh.padding_reserved()),
            (0x1234_5678, 2, 0)
        );
        assert!(NetHdrTunnel::new_checked(&b[..20]).is_err());
        assert_eq!(
            (NET_HDR_HASH_LEN, NET_HDR_TUNNEL_LEN, NET_HDR_FULL_LEN),
            (20, 24, 32)
        );
    }

    #[test]
    fn header_and_buffer_lengths() {
        assert_eq!(net_hdr_len(set(&[])), 10);
        assert_eq!(net_hdr_len(set(&[VIRTIO_NET_F_MRG_RXBUF])), 12);
        assert_eq!(net_hdr_len(set(&[32])), 12);
        assert_eq!(net_hdr_len(set(&[32, VIRTIO_NET_F_HASH_REPORT])), 20);
        assert_eq!(
            net_hdr_len(set(&[32, VIRTIO_NET_F_HOST_UDP_TUNNEL_GSO])),
            24
        );
        assert_eq!(
            net_hdr_len(set(&[32, VIRTIO_NET_F_GUEST_UDP_TUNNEL_GSO])),
            24
        );
        assert_eq!(net_hdr_len(set(&[32, VIRTIO_NET_F_IPSEC])), 32);
        assert_eq!(net_hdr_len(set(&[32, VIRTIO_NET_F_OUT_NET_HEADER])), 32);
        // The numbers §5.1.8.3 lists.
        assert_eq!(min_rx_buffer_len(set(&[32])), 1526);
        assert_eq!(
            min_rx_buffer_len(set(&[32, VIRTIO_NET_F_HASH_REPORT])),
            1534
        );
        assert_eq!(
            min_rx_buffer_len(set(&[32, VIRTIO_NET_F_GUEST_TSO4])),
            65601
        );
        let f = [32, VIRTIO_NET_F_GUEST_USO6, VIRTIO_NET_F_HASH_REPORT];
        assert_eq!(min_rx_buffer_len(set(&f)), 65609);
        let f = [32, VIRTIO_NET_F_GUEST_TSO4, VIRTIO_NET_F_MRG_RXBUF];
        assert_eq!(min_rx_buffer_len(set(&f)), 12);
    }

    #[test]
    fn queue_numbering() {
        assert_eq!((receiveq_index(0), transmitq_index(0)), (0, 1));
        assert_eq!((receiveq_index(3), transmitq_index(3)), (6, 7));
        assert_eq!(controlq_index(queue_pairs(false, 8)), 2);
        assert_eq!(controlq_index(queue_pairs(true, 8)), 16);
        assert_eq!(controlq_index(0x8000), 0x10000);
        assert_eq!(classify_queue(5, 4, true), NetQueue::Transmit(2));
        assert_eq!(classify_queue(4, 4, true), NetQueue::Receive(2));
        assert_eq!(classify_queue(8, 4, true), NetQueue::Control);
        assert_eq!(classify_queue(8, 4, false), NetQueue::Unknown(8));
        assert_eq!(classify_queue(9, 4, true), NetQueue::Unknown(9));
    }

    #[test]
    fn hash_report_maps_to_hash_type() {
        assert_eq!(hash_type_of_report(VIRTIO_NET_HASH_REPORT_NONE), None);
        assert_eq!(
            hash_type_of_report(VIRTIO_NET_HASH_REPORT_IPV4),
            Some(VIRTIO_NET_HASH_TYPE_IPV4)
        );
        assert_eq!(
            hash_type_of_report(VIRTIO_NET_HASH_REPORT_UDPV6_EX),
            Some(VIRTIO_NET_HASH_TYPE_UDP_EX)
        );
        assert_eq!(hash_type_of_report(10), None);
        assert_eq!(VIRTIO_NET_HASH_TUNNEL_TYPE_NVGRE, 0x100);
    }
}
