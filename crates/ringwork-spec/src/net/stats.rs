//! VIRTIO 1.4 §5.1.9.5.11 Network Device statistics: the type bits, the
//! `VIRTIO_NET_CTRL_STATS_GET` request entries, the reply header and every
//! reply structure.
//!
//! Each reply view covers the whole reply, header included; its counters
//! start at offset 8 (after [`StatsReplyHdr`]). Use [`StatsReplies`] to walk
//! the command-specific result.

use crate::le::{Le16, Le64};
use crate::wire_view;

/// Statistics type bit: controlq statistics.
pub const VIRTIO_NET_STATS_TYPE_CVQ: u64 = 1 << 32;
/// Statistics type bit: receiveq basic statistics.
pub const VIRTIO_NET_STATS_TYPE_RX_BASIC: u64 = 1 << 0;
/// Statistics type bit: receiveq checksum statistics.
pub const VIRTIO_NET_STATS_TYPE_RX_CSUM: u64 = 1 << 1;
/// Statistics type bit: receiveq GSO statistics.
pub const VIRTIO_NET_STATS_TYPE_RX_GSO: u64 = 1 << 2;
/// Statistics type bit: receiveq speed statistics.
pub const VIRTIO_NET_STATS_TYPE_RX_SPEED: u64 = 1 << 3;
/// Statistics type bit: transmitq basic statistics.
pub const VIRTIO_NET_STATS_TYPE_TX_BASIC: u64 = 1 << 16;
/// Statistics type bit: transmitq checksum statistics.
pub const VIRTIO_NET_STATS_TYPE_TX_CSUM: u64 = 1 << 17;
/// Statistics type bit: transmitq GSO statistics.
pub const VIRTIO_NET_STATS_TYPE_TX_GSO: u64 = 1 << 18;
/// Statistics type bit: transmitq speed statistics.
pub const VIRTIO_NET_STATS_TYPE_TX_SPEED: u64 = 1 << 19;

/// Reply `type`: controlq ([`StatsCvq`]).
pub const VIRTIO_NET_STATS_TYPE_REPLY_CVQ: u8 = 32;
/// Reply `type`: receiveq basic ([`StatsRxBasic`]).
pub const VIRTIO_NET_STATS_TYPE_REPLY_RX_BASIC: u8 = 0;
/// Reply `type`: receiveq checksum ([`StatsRxCsum`]).
pub const VIRTIO_NET_STATS_TYPE_REPLY_RX_CSUM: u8 = 1;
/// Reply `type`: receiveq GSO ([`StatsRxGso`]).
pub const VIRTIO_NET_STATS_TYPE_REPLY_RX_GSO: u8 = 2;
/// Reply `type`: receiveq speed ([`StatsRxSpeed`]).
pub const VIRTIO_NET_STATS_TYPE_REPLY_RX_SPEED: u8 = 3;
/// Reply `type`: transmitq basic ([`StatsTxBasic`]).
pub const VIRTIO_NET_STATS_TYPE_REPLY_TX_BASIC: u8 = 16;
/// Reply `type`: transmitq checksum ([`StatsTxCsum`]).
pub const VIRTIO_NET_STATS_TYPE_REPLY_TX_CSUM: u8 = 17;
/// Reply `type`: transmitq GSO ([`StatsTxGso`]).
pub const VIRTIO_NET_STATS_TYPE_REPLY_TX_GSO: u8 = 18;
/// Reply `type`: transmitq speed ([`StatsTxSpeed`]).
pub const VIRTIO_NET_STATS_TYPE_REPLY_TX_SPEED: u8 = 19;

/// The type bit a reply `type` corresponds to (`1 << type`), `None` past 63.
#[inline]
pub const fn stats_type_bit(reply_type: u8) -> Option<u64> {
    if reply_type < 64 {
        Some(1 << reply_type)
    } else {
        None
    }
}

/// Size of the reply structure for a reply `type` the spec defines.
pub const fn stats_reply_size(reply_type: u8) -> Option<usize> {
    match reply_type {
        VIRTIO_NET_STATS_TYPE_REPLY_CVQ => Some(STATS_CVQ_SIZE),
        VIRTIO_NET_STATS_TYPE_REPLY_RX_BASIC => Some(STATS_RX_BASIC_SIZE),
        VIRTIO_NET_STATS_TYPE_REPLY_RX_CSUM => Some(STATS_RX_CSUM_SIZE),
        VIRTIO_NET_STATS_TYPE_REPLY_RX_GSO => Some(STATS_RX_GSO_SIZE),
        VIRTIO_NET_STATS_TYPE_REPLY_RX_SPEED => Some(STATS_RX_SPEED_SIZE),
        VIRTIO_NET_STATS_TYPE_REPLY_TX_BASIC => Some(STATS_TX_BASIC_SIZE),
        VIRTIO_NET_STATS_TYPE_REPLY_TX_CSUM => Some(STATS_TX_CSUM_SIZE),
        VIRTIO_NET_STATS_TYPE_REPLY_TX_GSO => Some(STATS_TX_GSO_SIZE),
        VIRTIO_NET_STATS_TYPE_REPLY_TX_SPEED => Some(STATS_TX_SPEED_SIZE),
        _ => None,
    }
}

wire_view! {
    /// Result of `VIRTIO_NET_CTRL_STATS_QUERY`.
    #[doc(alias = "virtio_net_stats_capabilities")]
    pub struct StatsCapabilities, size STATS_CAPABILITIES_SIZE = 8 {
        /// `VIRTIO_NET_STATS_TYPE_*` bits the device supports.
        @0 supported_stats_types / set_supported_stats_types: Le64,
    }
}

wire_view! {
    /// One entry of `struct virtio_net_ctrl_queue_stats` (the data of
    /// `VIRTIO_NET_CTRL_STATS_GET` is an array of these).
    #[doc(alias = "virtio_net_ctrl_queue_stats")]
    pub struct CtrlQueueStats, size CTRL_QUEUE_STATS_SIZE = 16 {
        /// Virtqueue to query.
        @0 vq_index / set_vq_index: Le16,
        /// `le16 reserved[3]`.
        @2 reserved / set_reserved: [u8; 6],
        /// `VIRTIO_NET_STATS_TYPE_*` bits to obtain.
        @8 types_bitmap / set_types_bitmap: Le64,
    }
}

wire_view! {
    /// Header of every statistics reply.
    #[doc(alias = "virtio_net_stats_reply_hdr")]
    pub struct StatsReplyHdr, size STATS_REPLY_HDR_SIZE = 8 {
        /// `VIRTIO_NET_STATS_TYPE_REPLY_*`.
        @0 type_ / set_type: u8,
        /// Reserved.
        @1 reserved / set_reserved: u8,
        /// Virtqueue the reply is for.
        @2 vq_index / set_vq_index: Le16,
        /// Reserved.
        @4 reserved1 / set_reserved1: Le16,
        /// Bytes of this reply, header included.
        @6 size / set_size: Le16,
    }
}

/// Iterator over the replies in a `VIRTIO_NET_CTRL_STATS_GET` result:
/// yields each reply's header and its `size` bytes (header included). Stops
/// at the end of the buffer, at a truncated reply, or at a `size` smaller
/// than the header. Unknown reply types are yielded as they are.
#[derive(Debug, Clone)]
pub struct StatsReplies<'a> {
    rest: &'a [u8],
}

impl<'a> StatsReplies<'a> {
    /// Walks `result` (the bytes the device wrote after `ack`).
    pub fn new(result: &'a [u8]) -> Self {
        Self { rest: result }
    }
}

impl<'a> Iterator for StatsReplies<'a> {
    type Item = (StatsReplyHdr<&'a [u8]>, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let hdr = StatsReplyHdr::new_checked(self.rest).ok()?;
        let size = hdr.size() as usize;
        if size < STATS_REPLY_HDR_SIZE || size > self.rest.len() {
            self.rest = &[];
            return None;
        }
        let (reply, rest) = self.rest.split_at(size);
        self.rest = rest;
        Some((StatsReplyHdr::new_unchecked(reply), reply))
    }
}

wire_view! {
    /// Controlq statistics reply (`VIRTIO_NET_STATS_TYPE_CVQ`).
    #[doc(alias = "virtio_net_stats_cvq")]
    pub struct StatsCvq, size STATS_CVQ_SIZE = 24 {
        /// Commands received, including the current one.
        @8 command_num / set_command_num: Le64,
        /// Commands completed successfully, including the current one.
        @16 ok_num / set_ok_num: Le64,
    }
}

wire_view! {
    /// Receiveq basic statistics reply.
    #[doc(alias = "virtio_net_stats_rx_basic")]
    pub struct StatsRxBasic, size STATS_RX_BASIC_SIZE = 56 {
        /// Driver notifications received for this receiveq.
        @8 rx_notifications / set_rx_notifications: Le64,
        /// Packets passed to the driver.
        @16 rx_packets / set_rx_packets: Le64,
        /// Bytes of packets passed to the driver.
        @24 rx_bytes / set_rx_bytes: Le64,
        /// Interrupts generated for this receiveq.
        @32 rx_interrupts / set_rx_interrupts: Le64,
        /// Packets dropped, all causes.
        @40 rx_drops / set_rx_drops: Le64,
        /// Packets dropped for lack of descriptors.
        @48 rx_drop_overruns / set_rx_drop_overruns: Le64,
    }
}

wire_view! {
    /// Transmitq basic statistics reply.
    #[doc(alias = "virtio_net_stats_tx_basic")]
    pub struct StatsTxBasic, size STATS_TX_BASIC_SIZE = 56 {
        /// Driver notifications received for this transmitq.
        @8 tx_notifications / set_tx_notifications: Le64,
        /// Packets sent by the device.
        @16 tx_packets / set_tx_packets: Le64,
        /// Bytes sent by the device.
        @24 tx_bytes / set_tx_bytes: Le64,
        /// Interrupts generated for this transmitq.
        @32 tx_interrupts / set_tx_interrupts: Le64,
        /// Packets dropped, all causes.
        @40 tx_drops / set_tx_drops: Le64,
        /// Packets dropped because the descriptors were malformed.
        @48 tx_drop_malformed / set_tx_drop_malformed: Le64,
    }
}

wire_view! {
    /// Receiveq checksum statistics reply (needs `VIRTIO_NET_F_GUEST_CSUM`).
    #[doc(alias = "virtio_net_stats_rx_csum")]
    pub struct StatsRxCsum, size STATS_RX_CSUM_SIZE = 40 {
        /// Packets with `VIRTIO_NET_HDR_F_DATA_VALID`.
        @8 rx_csum_valid / set_rx_csum_valid: Le64,
        /// Packets with `VIRTIO_NET_HDR_F_NEEDS_CSUM`.
        @16 rx_needs_csum / set_rx_needs_csum: Le64,
        /// Packets without hardware checksum.
        @24 rx_csum_none / set_rx_csum_none: Le64,
        /// Packets with checksum mismatch.
        @32 rx_csum_bad / set_rx_csum_bad: Le64,
    }
}

wire_view! {
    /// Transmitq checksum statistics reply (needs `VIRTIO_NET_F_CSUM`).
    #[doc(alias = "virtio_net_stats_tx_csum")]
    pub struct StatsTxCsum, size STATS_TX_CSUM_SIZE = 24 {
        /// Packets not requiring hardware checksum.
        @8 tx_csum_none / set_tx_csum_none: Le64,
        /// Packets requiring checksum calculation by the device.
        @16 tx_needs_csum / set_tx_needs_csum: Le64,
    }
}

wire_view! {
    /// Receiveq GSO statistics reply.
    #[doc(alias = "virtio_net_stats_rx_gso")]
    pub struct StatsRxGso, size STATS_RX_GSO_SIZE = 40 {
        /// GSO packets received.
        @8 rx_gso_packets / set_rx_gso_packets: Le64,
        /// Bytes of GSO packets received (headers included).
        @16 rx_gso_bytes / set_rx_gso_bytes: Le64,
        /// GSO packets coalesced.
        @24 rx_gso_packets_coalesced / set_rx_gso_packets_coalesced: Le64,
        /// Bytes of GSO packets coalesced (headers included).
        @32 rx_gso_bytes_coalesced / set_rx_gso_bytes_coalesced: Le64,
    }
}

wire_view! {
    /// Transmitq GSO statistics reply.
    #[doc(alias = "virtio_net_stats_tx_gso")]
    pub struct StatsTxGso, size STATS_TX_GSO_SIZE = 56 {
        /// GSO packets sent.
        @8 tx_gso_packets / set_tx_gso_packets: Le64,
        /// Bytes of GSO packets sent.
        @16 tx_gso_bytes / set_tx_gso_bytes: Le64,
        /// Segments prepared from GSO packets.
        @24 tx_gso_segments / set_tx_gso_segments: Le64,
        /// Bytes of segments prepared from GSO packets.
        @32 tx_gso_segments_bytes / set_tx_gso_segments_bytes: Le64,
        /// GSO packets sent without segmentation.
        @40 tx_gso_packets_noseg / set_tx_gso_packets_noseg: Le64,
        /// Bytes of GSO packets sent without segmentation.
        @48 tx_gso_bytes_noseg / set_tx_gso_bytes_noseg: Le64,
    }
}

wire_view! {
    /// Receiveq speed statistics reply.
    #[doc(alias = "virtio_net_stats_rx_speed")]
    pub struct StatsRxSpeed, size STATS_RX_SPEED_SIZE = 24 {
        /// Packets dropped for exceeding `speed`.
        @8 rx_packets_allowance_exceeded / set_rx_packets_allowance_exceeded: Le64,
        /// Bytes dropped for exceeding `speed`.
        @16 rx_bytes_allowance_exceeded / set_rx_bytes_allowance_exceeded: Le64,
    }
}

wire_view! {
    /// Transmitq speed statistics reply.
    #[doc(alias = "virtio_net_stats_tx_speed")]
    pub struct StatsTxSpeed, size STATS_TX_SPEED_SIZE = 24 {
        /// Packets dropped for exceeding `speed`.
        @8 tx_packets_allowance_exceeded / set_tx_packets_allowance_exceeded: Le64,
        /// Bytes dropped for exceeding `speed`.
        @16 tx_bytes_allowance_exceeded / set_tx_bytes_allowance_exceeded: Le64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_and_capability_layouts() {
        let mut b = [0u8; 16];
        let mut q = CtrlQueueStats::new_checked(&mut b[..]).unwrap();
        q.set_vq_index(0x0102);
        q.set_types_bitmap(VIRTIO_NET_STATS_TYPE_TX_BASIC | VIRTIO_NET_STATS_TYPE_CVQ);
        assert_eq!(b, [2, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0]);
        let c = StatsCapabilities::new_checked(&[0x0f, 0, 0x0f, 0, 1, 0, 0, 0][..]).unwrap();
        assert_eq!(c.supported_stats_types(), 0x1_000f_000f);
        assert_eq!((CTRL_QUEUE_STATS_SIZE, STATS_CAPABILITIES_SIZE), (16, 8));
    }

    #[test]
    fn reply_header_and_bodies() {
        let mut b = [0u8; 8];
        let mut h = StatsReplyHdr::new_checked(&mut b[..]).unwrap();
        h.set_type(VIRTIO_NET_STATS_TYPE_REPLY_TX_CSUM);
        h.set_vq_index(3);
        h.set_size(24);
        assert_eq!(b, [17, 0, 3, 0, 0, 0, 24, 0]);
        assert_eq!(STATS_REPLY_HDR_SIZE, 8);

        let mut r = [0u8; 56];
        r[8] = 1;
        r[16] = 2;
        r[24] = 3;
        r[32] = 4;
        r[40] = 5;
        r[48] = 6;
        let rx = StatsRxBasic::new_checked(&r[..]).unwrap();
        assert_eq!(
            [
                rx.rx_notifications(),
                rx.rx_packets(),
                rx.rx_bytes(),
                rx.rx_interrupts()
            ],
            [1, 2, 3, 4]
        );
        assert_eq!((rx.rx_drops(), rx.rx_drop_overruns()), (5, 6));
        let tx = StatsTxBasic::new_checked(&r[..]).unwrap();
        assert_eq!((tx.tx_notifications(), tx.tx_drop_malformed()), (1, 6));
        let g = StatsTxGso::new_checked(&r[..]).unwrap();
        assert_eq!(
            (
                g.tx_gso_packets(),
                g.tx_gso_segments_bytes(),
                g.tx_gso_bytes_noseg()
            ),
            (1, 4, 6)
        );
        let g = StatsRxGso::new_checked(&r[..40]).unwrap();
        assert_eq!((g.rx_gso_packets(), g.rx_gso_bytes_coalesced()), (1, 4));
        let c = StatsRxCsum::new_checked(&r[..40]).unwrap();
        assert_eq!(
            (
                c.rx_csum_valid(),
                c.rx_needs_csum(),
                c.rx_csum_none(),
                c.rx_csum_bad()
            ),
            (1, 2, 3, 4)
        );
        let c = StatsTxCsum::new_checked(&r[..24]).unwrap();
        assert_eq!((c.tx_csum_none(), c.tx_needs_csum()), (1, 2));
        let s = StatsRxSpeed::new_checked(&r[..24]).unwrap();
        assert_eq!(
            (
                s.rx_packets_allowance_exceeded(),
                s.rx_bytes_allowance_exceeded()
            ),
            (1, 2)
        );
        let s = StatsTxSpeed::new_checked(&r[..24]).unwrap();
        assert_eq!(
            (
                s.tx_packets_allowance_exceeded(),
                s.tx_bytes_allowance_exceeded()
            ),
            (1, 2)
        );
        let q = StatsCvq::new_checked(&r[..24]).unwrap();
        assert_eq!((q.command_num(), q.ok_num()), (1, 2));
        assert!(StatsRxBasic::new_checked(&r[..55]).is_err());
    }

    #[test]
    fn reply_sizes_and_type_bits() {
        assert_eq!(stats_reply_size(VIRTIO_NET_STATS_TYPE_REPLY_CVQ), Some(24));
        assert_eq!(
            stats_reply_size(VIRTIO_NET_STATS_TYPE_REPLY_RX_BASIC),
            Some(56)
        );
        assert_eq!(
            stats_reply_size(VIRTIO_NET_STATS_TYPE_REPLY_RX_CSUM),
            Some(40)
        );
        assert_eq!(
            stats_reply_size(VIRTIO_NET_STATS_TYPE_REPLY_RX_GSO),
            Some(40)
        );
        assert_eq!(
            stats_reply_size(VIRTIO_NET_STATS_TYPE_REPLY_RX_SPEED),
            Some(24)
        );
        assert_eq!(
            stats_reply_size(VIRTIO_NET_STATS_TYPE_REPLY_TX_BASIC),
            Some(56)
        );
        assert_eq!(
            stats_reply_size(VIRTIO_NET_STATS_TYPE_REPLY_TX_CSUM),
            Some(24)
        );
        assert_eq!(
            stats_reply_size(VIRTIO_NET_STATS_TYPE_REPLY_TX_GSO),
            Some(56)
        );
        assert_eq!(
            stats_reply_size(VIRTIO_NET_STATS_TYPE_REPLY_TX_SPEED),
            Some(24)
        );
        assert_eq!(stats_reply_size(4), None);
        assert_eq!(
            stats_type_bit(VIRTIO_NET_STATS_TYPE_REPLY_CVQ),
            Some(VIRTIO_NET_STATS_TYPE_CVQ)
        );
        assert_eq!(
            stats_type_bit(VIRTIO_NET_STATS_TYPE_REPLY_TX_SPEED),
            Some(VIRTIO_NET_STATS_TYPE_TX_SPEED)
        );
        assert_eq!(stats_type_bit(64), None);
    }

    #[test]
    fn replies_iterate() {
        let mut buf = [0u8; 24 + 24 + 8];
        buf[0] = VIRTIO_NET_STATS_TYPE_REPLY_CVQ;
        buf[2] = 8;
        buf[6] = 24;
        buf[8] = 7;
        buf[24] = 99; // unknown type, kept
        buf[30] = 24;
        buf[48 + 6] = 4; // size smaller than the header: stop
        let mut it = StatsReplies::new(&buf);
        let (h, r) = it.next().unwrap();
        assert_eq!((h.type_(), h.vq_index(), r.len()), (32, 8, 24));
        assert_eq!(StatsCvq::new_checked(r).unwrap().command_num(), 7);
        let (h, _) = it.next().unwrap();
        assert_eq!(h.type_(), 99);
        assert!(it.next().is_none());
        assert!(StatsReplies::new(&buf[..20]).nth(1).is_none());
    }
}
