//! VIRTIO 1.4 §5.1.9.5 Network Device control virtqueue: the command header,
//! ack values, every class and command, and their command-specific data.
//!
//! A command is `class`, `command`, command-specific data (device-readable),
//! then the `ack` byte and optional command-specific result
//! (device-writable). Device statistics structures are in
//! [`super::stats`].
//!
//! ```
//! use ringwork_spec::net::ctrl::*;
//!
//! // VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET with 4 pairs.
//! let bytes = [VIRTIO_NET_CTRL_MQ, VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET, 4, 0];
//! let hdr = NetCtrlHeader::new_checked(&bytes[..]).unwrap();
//! assert_eq!((hdr.class(), hdr.command()), (4, 0));
//! let data = NetCtrlMqPairsSet::new_checked(&bytes[NET_CTRL_HEADER_SIZE..]).unwrap();
//! assert_eq!(data.virtqueue_pairs(), 4);
//! ```

use crate::le::{Le16, Le32, Le64};
use crate::wire::Truncated;
use crate::wire_view;

wire_view! {
    /// The command header (`class`, `command` of `struct virtio_net_ctrl`).
    #[doc(alias = "virtio_net_ctrl")]
    #[doc(alias = "virtio_net_ctrl_hdr")]
    pub struct NetCtrlHeader, size NET_CTRL_HEADER_SIZE = 2 {
        /// `VIRTIO_NET_CTRL_*` class.
        @0 class / set_class: u8,
        /// Command within the class.
        @1 command / set_command: u8,
    }
}

/// Size of the device-written `ack` byte.
pub const NET_CTRL_ACK_SIZE: usize = 1;
/// `ack`: success.
pub const VIRTIO_NET_OK: u8 = 0;
/// `ack`: failure.
pub const VIRTIO_NET_ERR: u8 = 1;

// --- RX mode (§5.1.9.5.1) --------------------------------------------------

/// Class: packet receive filtering (`VIRTIO_NET_F_CTRL_RX`, `_RX_EXTRA`).
/// Every command takes one byte: 0 (off) or 1 (on).
pub const VIRTIO_NET_CTRL_RX: u8 = 0;
/// Promiscuous mode on/off.
pub const VIRTIO_NET_CTRL_RX_PROMISC: u8 = 0;
/// All-multicast receive on/off.
pub const VIRTIO_NET_CTRL_RX_ALLMULTI: u8 = 1;
/// All-unicast receive on/off (`VIRTIO_NET_F_CTRL_RX_EXTRA`).
pub const VIRTIO_NET_CTRL_RX_ALLUNI: u8 = 2;
/// Suppress multicast receive (`VIRTIO_NET_F_CTRL_RX_EXTRA`).
pub const VIRTIO_NET_CTRL_RX_NOMULTI: u8 = 3;
/// Suppress unicast receive (`VIRTIO_NET_F_CTRL_RX_EXTRA`).
pub const VIRTIO_NET_CTRL_RX_NOUNI: u8 = 4;
/// Suppress broadcast receive (`VIRTIO_NET_F_CTRL_RX_EXTRA`).
pub const VIRTIO_NET_CTRL_RX_NOBCAST: u8 = 5;

// --- MAC filtering (§5.1.9.5.2) --------------------------------------------

/// Class: MAC address filtering (`VIRTIO_NET_F_CTRL_RX`).
pub const VIRTIO_NET_CTRL_MAC: u8 = 1;
/// Set the filter table: a unicast then a multicast [`NetCtrlMacHeader`]
/// table (see [`parse_mac_tables`]).
pub const VIRTIO_NET_CTRL_MAC_TABLE_SET: u8 = 0;
/// Set the default MAC address: 6 bytes.
pub const VIRTIO_NET_CTRL_MAC_ADDR_SET: u8 = 1;
/// Size of one MAC address.
#[doc(alias = "ETH_ALEN")]
pub const MAC_ADDR_LEN: usize = 6;

wire_view! {
    /// Head of one MAC table (`struct virtio_net_ctrl_mac`: `le32 entries`,
    /// then `entries` 6-byte addresses).
    #[doc(alias = "virtio_net_ctrl_mac")]
    pub struct NetCtrlMacHeader, size NET_CTRL_MAC_HEADER_SIZE = 4 {
        /// Number of MAC addresses that follow.
        @0 entries / set_entries: Le32,
    }
}

/// Byte length of a MAC table with `entries` addresses (`4 + 6 * entries`).
#[inline]
pub const fn mac_table_len(entries: u32) -> usize {
    NET_CTRL_MAC_HEADER_SIZE + MAC_ADDR_LEN * entries as usize
}

/// Offset of address `i` within a MAC table.
#[inline]
pub const fn mac_table_entry_offset(i: u32) -> usize {
    NET_CTRL_MAC_HEADER_SIZE + MAC_ADDR_LEN * i as usize
}

/// A parsed MAC table borrowed from command-specific data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MacTable<'a> {
    macs: &'a [u8],
}

impl<'a> MacTable<'a> {
    /// Parses one table at the start of `data`; returns it and the rest.
    pub fn parse(data: &'a [u8]) -> Result<(Self, &'a [u8]), Truncated> {
        let hdr = NetCtrlMacHeader::new_checked(data)?;
        let needed = usize::try_from(hdr.entries())
            .ok()
            .and_then(|n| n.checked_mul(MAC_ADDR_LEN))
            .and_then(|n| n.checked_add(NET_CTRL_MAC_HEADER_SIZE))
            .unwrap_or(usize::MAX);
        if data.len() < needed {
            return Err(Truncated {
                needed,
                got: data.len(),
            });
        }
        let macs = &data[NET_CTRL_MAC_HEADER_SIZE..needed];
        Ok((Self { macs }, &data[needed..]))
    }

    /// Number of addresses.
    #[inline]
    pub fn len(&self) -> usize {
        self.macs.len() / MAC_ADDR_LEN
    }

    /// Whether the table is empty.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.macs.is_empty()
    }

    /// Address `i`, if present.
    pub fn get(&self, i: usize) -> Option<[u8; MAC_ADDR_LEN]> {
        let chunk = self.macs.get(i * MAC_ADDR_LEN..(i + 1) * MAC_ADDR_LEN)?;
        let mut mac = [0u8; MAC_ADDR_LEN];
        mac.copy_from_slice(chunk);
        Some(mac)
    }

    /// Iterates over the addresses.
    pub fn iter(&self) -> impl Iterator<Item = [u8; MAC_ADDR_LEN]> + 'a {
        self.macs.chunks_exact(MAC_ADDR_LEN).map(|c| {
            let mut mac = [0u8; MAC_ADDR_LEN];
            mac.copy_from_slice(c);
            mac
        })
    }
}

/// Parses the data of `VIRTIO_NET_CTRL_MAC_TABLE_SET`: the unicast table then
/// the multicast table. Trailing bytes are ignored.
pub fn parse_mac_tables(data: &[u8]) -> Result<(MacTable<'_>, MacTable<'_>), Truncated> {
    let (unicast, rest) = MacTable::parse(data)?;
    let (multicast, _) = MacTable::parse(rest)?;
    Ok((unicast, multicast))
}

// --- VLAN filtering (§5.1.9.5.3) -------------------------------------------

/// Class: VLAN filtering (`VIRTIO_NET_F_CTRL_VLAN`). Both commands take a
/// little-endian 16-bit VLAN id.
pub const VIRTIO_NET_CTRL_VLAN: u8 = 2;
/// Add a VLAN id to the filter table.
pub const VIRTIO_NET_CTRL_VLAN_ADD: u8 = 0;
/// Remove a VLAN id from the filter table.
pub const VIRTIO_NET_CTRL_VLAN_DEL: u8 = 1;

// --- Announce (§5.1.9.5.4) -------------------------------------------------

/// Class: gratuitous packet sending (`VIRTIO_NET_F_GUEST_ANNOUNCE`).
pub const VIRTIO_NET_CTRL_ANNOUNCE: u8 = 3;
/// The driver saw `VIRTIO_NET_S_ANNOUNCE`; the device clears it. No data.
pub const VIRTIO_NET_CTRL_ANNOUNCE_ACK: u8 = 0;

// --- Multiqueue, RSS, hash (§5.1.9.5.5–§5.1.9.5.7) -------------------------

/// Class: multiqueue mode selection.
pub const VIRTIO_NET_CTRL_MQ: u8 = 4;
/// Automatic receive steering: data is [`NetCtrlMqPairsSet`].
pub const VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET: u8 = 0;
/// Receive-side scaling: data is `struct virtio_net_rss_config` ([`RssConfig`]).
pub const VIRTIO_NET_CTRL_MQ_RSS_CONFIG: u8 = 1;
/// Hash calculation: data is `struct virtio_net_hash_config` ([`NetHashConfigHeader`]).
pub const VIRTIO_NET_CTRL_MQ_HASH_CONFIG: u8 = 2;
/// Smallest `virtqueue_pairs`.
pub const VIRTIO_NET_CTRL_MQ_VQ_PAIRS_MIN: u16 = 1;
/// Largest `virtqueue_pairs`.
pub const VIRTIO_NET_CTRL_MQ_VQ_PAIRS_MAX: u16 = 0x8000;

wire_view! {
    /// Data of `VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET`.
    #[doc(alias = "virtio_net_ctrl_mq_pairs_set")]
    #[doc(alias = "virtio_net_ctrl_mq")]
    pub struct NetCtrlMqPairsSet, size NET_CTRL_MQ_PAIRS_SET_SIZE = 2 {
        /// Number of queue pairs to use (1..=`max_virtqueue_pairs`).
        @0 virtqueue_pairs / set_virtqueue_pairs: Le16,
    }
}

wire_view! {
    /// Fixed head of `struct virtio_net_rss_config`; the indirection table
    /// (`indirection_table_mask + 1` `rss_rq_id`s) follows at offset 8, then
    /// `le16 max_tx_vq`, `u8 hash_key_length` and the key ([`rss_config_layout`]).
    #[doc(alias = "virtio_net_rss_config")]
    #[doc(alias = "virtio_net_rss_config_hdr")]
    pub struct NetRssConfigHeader, size NET_RSS_CONFIG_HEADER_SIZE = 8 {
        /// `VIRTIO_NET_HASH_TYPE_*` bits to enable.
        @0 hash_types / set_hash_types: Le32,
        /// Mask applied to the hash to index the table (table length - 1).
        @4 indirection_table_mask / set_indirection_table_mask: Le16,
        /// `rss_rq_id` of the queue for unclassified packets.
        @6 unclassified_queue / set_unclassified_queue: Le16,
    }
}

/// Offsets within a `virtio_net_rss_config` of given mask and key length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RssConfigLayout {
    /// Offset of `indirection_table[0]`.
    pub indirection_table: usize,
    /// Number of indirection table entries (`indirection_table_mask + 1`).
    pub indirection_table_len: usize,
    /// Offset of `max_tx_vq`.
    pub max_tx_vq: usize,
    /// Offset of `hash_key_length`.
    pub hash_key_length: usize,
    /// Offset of `hash_key_data`.
    pub hash_key_data: usize,
    /// Total size.
    pub size: usize,
}

/// Layout of a `virtio_net_rss_config` with `indirection_table_mask` and
/// `hash_key_length`.
pub const fn rss_config_layout(
    indirection_table_mask: u16,
    hash_key_length: u8,
) -> RssConfigLayout {
    let len = indirection_table_mask as usize + 1;
    let max_tx_vq = NET_RSS_CONFIG_HEADER_SIZE + 2 * len;
    RssConfigLayout {
        indirection_table: NET_RSS_CONFIG_HEADER_SIZE,
        indirection_table_len: len,
        max_tx_vq,
        hash_key_length: max_tx_vq + 2,
        hash_key_data: max_tx_vq + 3,
        size: max_tx_vq + 3 + hash_key_length as usize,
    }
}

/// The `rss_rq_id` of virtqueue `vq_index` (bits 1..16 of the index, bit 15
/// reserved zero): receiveq(k+1) at index `2k` has id `k`.
#[inline]
pub const fn rss_rq_id(vq_index: u32) -> u16 {
    ((vq_index >> 1) & 0x7fff) as u16
}

/// The receive virtqueue index an `rss_rq_id` designates (reserved bit ignored).
#[inline]
pub const fn rss_rq_id_to_vq_index(id: u16) -> u32 {
    ((id & 0x7fff) as u32) << 1
}

/// A parsed, length-checked `struct virtio_net_rss_config` (also the `rss`
/// member of `virtnet_rss_ctx_add_modify`).
#[doc(alias = "virtio_net_rss_config")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RssConfig<'a> {
    bytes: &'a [u8],
    layout: RssConfigLayout,
}

impl<'a> RssConfig<'a> {
    /// Checks that `bytes` holds the whole structure (table and key included).
    pub fn new_checked(bytes: &'a [u8]) -> Result<Self, Truncated> {
        let hdr = NetRssConfigHeader::new_checked(bytes)?;
        let partial = rss_config_layout(hdr.indirection_table_mask(), 0);
        if bytes.len() < partial.size {
            return Err(Truncated {
                needed: partial.size,
                got: bytes.len(),
            });
        }
        let layout =
            rss_config_layout(hdr.indirection_table_mask(), bytes[partial.hash_key_length]);
        if bytes.len() < layout.size {
            return Err(Truncated {
                needed: layout.size,
                got: bytes.len(),
            });
        }
        Ok(Self { bytes, layout })
    }

    fn le16(&self, off: usize) -> u16 {
        u16::from_le_bytes([self.bytes[off], self.bytes[off + 1]])
    }

    /// The layout of this instance.
    pub fn layout(&self) -> RssConfigLayout {
        self.layout
    }
    /// `hash_types`.
    pub fn hash_types(&self) -> u32 {
        NetRssConfigHeader::new_unchecked(self.bytes).hash_types()
    }
    /// `indirection_table_mask`.
    pub fn indirection_table_mask(&self) -> u16 {
        self.le16(4)
    }
    /// `unclassified_queue` (an `rss_rq_id`).
    pub fn unclassified_queue(&self) -> u16 {
        self.le16(6)
    }
    /// `indirection_table[i]` (an `rss_rq_id`), if `i` is in the table.
    pub fn indirection_table(&self, i: usize) -> Option<u16> {
        (i < self.layout.indirection_table_len)
            .then(|| self.le16(self.layout.indirection_table + 2 * i))
    }
    /// `max_tx_vq`.
    pub fn max_tx_vq(&self) -> u16 {
        self.le16(self.layout.max_tx_vq)
    }
    /// `hash_key_length`.
    pub fn hash_key_length(&self) -> u8 {
        self.bytes[self.layout.hash_key_length]
    }
    /// `hash_key_data`.
    pub fn hash_key_data(&self) -> &'a [u8] {
        &self.bytes[self.layout.hash_key_data..self.layout.size]
    }
}

wire_view! {
    /// Fixed head of `struct virtio_net_hash_config`; `hash_key_data` follows
    /// at offset 13. Laid out like an RSS config with a one-entry table.
    #[doc(alias = "virtio_net_hash_config")]
    pub struct NetHashConfigHeader, size NET_HASH_CONFIG_HEADER_SIZE = 13 {
        /// `VIRTIO_NET_HASH_TYPE_*` bits to enable.
        @0 hash_types / set_hash_types: Le32,
        /// `le16 reserved[4]`, zero.
        @4 reserved / set_reserved: [u8; 8],
        /// Length of the key that follows.
        @12 hash_key_length / set_hash_key_length: u8,
    }
}

// --- Inner header hash (§5.1.9.4) ----------------------------------------

/// Class: inner header hash (`VIRTIO_NET_F_HASH_TUNNEL`).
pub const VIRTIO_NET_CTRL_HASH_TUNNEL: u8 = 7;
/// Set the enabled encapsulation types: data is [`NetHashTunnel`].
pub const VIRTIO_NET_CTRL_HASH_TUNNEL_SET: u8 = 0;

wire_view! {
    /// Data of `VIRTIO_NET_CTRL_HASH_TUNNEL_SET`.
    #[doc(alias = "virtnet_hash_tunnel")]
    pub struct NetHashTunnel, size NET_HASH_TUNNEL_SIZE = 4 {
        /// `VIRTIO_NET_HASH_TUNNEL_TYPE_*` bits to enable (0 disables).
        @0 enabled_tunnel_types / set_enabled_tunnel_types: Le32,
    }
}

// --- RSS contexts (§5.1.9.5.8) ---------------------------------------------

/// Class: RSS contexts (`VIRTIO_NET_F_RSS_CONTEXT`).
pub const VIRTNET_RSS_CTX_CTRL: u8 = 9;
/// Query the capability: result is [`RssCtxCap`].
pub const VIRTNET_RSS_CTX_CTRL_CAP_GET: u8 = 0;
/// Add a context: data is [`RssCtxAddModifyHeader`] + RSS config.
pub const VIRTNET_RSS_CTX_CTRL_ADD: u8 = 1;
/// Modify a context: data is [`RssCtxAddModifyHeader`] + RSS config.
pub const VIRTNET_RSS_CTX_CTRL_MOD: u8 = 2;
/// Delete a context: data is [`RssCtxDel`].
pub const VIRTNET_RSS_CTX_CTRL_DEL: u8 = 3;

wire_view! {
    /// Result of `VIRTNET_RSS_CTX_CTRL_CAP_GET`.
    #[doc(alias = "virtnet_rss_ctx_cap")]
    pub struct RssCtxCap, size RSS_CTX_CAP_SIZE = 2 {
        /// Maximum number of RSS contexts (at least 1).
        @0 max_rss_contexts / set_max_rss_contexts: Le16,
    }
}

wire_view! {
    /// Head of `struct virtnet_rss_ctx_add_modify`; the `rss`
    /// (`virtio_net_rss_config`, see [`RssConfig`]) follows at offset 8.
    #[doc(alias = "virtnet_rss_ctx_add_modify")]
    pub struct RssCtxAddModifyHeader, size RSS_CTX_ADD_MODIFY_HEADER_SIZE = 8 {
        /// Context id, 1..=`max_rss_contexts`.
        @0 rss_ctx_id / set_rss_ctx_id: Le16,
        /// Reserved, ignored by the device.
        @2 reserved / set_reserved: [u8; 6],
    }
}

wire_view! {
    /// Data of `VIRTNET_RSS_CTX_CTRL_DEL`.
    #[doc(alias = "virtnet_rss_ctx_del")]
    pub struct RssCtxDel, size RSS_CTX_DEL_SIZE = 2 {
        /// Context id to delete.
        @0 rss_ctx_id / set_rss_ctx_id: Le16,
    }
}

// --- Guest offloads (§5.1.9.5.9) -------------------------------------------

/// Class: offloads state configuration (`VIRTIO_NET_F_CTRL_GUEST_OFFLOADS`).
pub const VIRTIO_NET_CTRL_GUEST_OFFLOADS: u8 = 5;
/// Apply an offloads bitmask: data is [`NetCtrlGuestOffloads`].
pub const VIRTIO_NET_CTRL_GUEST_OFFLOADS_SET: u8 = 0;

/// Offloads bit (in the le64 `offloads` mask, not a feature bit) for
/// `VIRTIO_NET_F_GUEST_UDP_TUNNEL_GSO` (feature bit 65). The spec's offloads
/// listing names it `VIRTIO_NET_F_GUEST_UDP_TUNNEL_GSO` too.
pub const VIRTIO_NET_F_GUEST_UDP_TUNNEL_GSO_MAPPED: u32 = 46;
/// Offloads bit for `VIRTIO_NET_F_GUEST_UDP_TUNNEL_GSO_CSUM` (feature bit 66).
pub const VIRTIO_NET_F_GUEST_UDP_TUNNEL_GSO_CSUM_MAPPED: u32 = 47;

/// The bit of the `offloads` mask controlling guest offload feature
/// `feature`, or `None` if `feature` is not a guest offload. The offload bit
/// equals the feature bit except for the UDP tunnel features (65, 66 → 46, 47).
pub const fn guest_offload_bit(feature: u32) -> Option<u32> {
    use super::*;
    match feature {
        VIRTIO_NET_F_GUEST_CSUM
        | VIRTIO_NET_F_GUEST_TSO4
        | VIRTIO_NET_F_GUEST_TSO6
        | VIRTIO_NET_F_GUEST_ECN
        | VIRTIO_NET_F_GUEST_UFO
        | VIRTIO_NET_F_GUEST_USO4
        | VIRTIO_NET_F_GUEST_USO6 => Some(feature),
        VIRTIO_NET_F_GUEST_UDP_TUNNEL_GSO => Some(VIRTIO_NET_F_GUEST_UDP_TUNNEL_GSO_MAPPED),
        VIRTIO_NET_F_GUEST_UDP_TUNNEL_GSO_CSUM => {
            Some(VIRTIO_NET_F_GUEST_UDP_TUNNEL_GSO_CSUM_MAPPED)
        }
        _ => None,
    }
}

wire_view! {
    /// Data of `VIRTIO_NET_CTRL_GUEST_OFFLOADS_SET` (`le64 offloads`).
    pub struct NetCtrlGuestOffloads, size NET_CTRL_GUEST_OFFLOADS_SIZE = 8 {
        /// Bits set enable, bits clear disable (see [`guest_offload_bit`]).
        @0 offloads / set_offloads: Le64,
    }
}

// --- Notification coalescing (§5.1.9.5.10) ---------------------------------

/// Class: notification coalescing (`VIRTIO_NET_F_NOTF_COAL`, `_VQ_NOTF_COAL`).
pub const VIRTIO_NET_CTRL_NOTF_COAL: u8 = 6;
/// Set parameters of all transmit queues: data is [`NetCtrlCoal`].
pub const VIRTIO_NET_CTRL_NOTF_COAL_TX_SET: u8 = 0;
/// Set parameters of all receive queues: data is [`NetCtrlCoal`].
pub const VIRTIO_NET_CTRL_NOTF_COAL_RX_SET: u8 = 1;
/// Set parameters of one queue: data is [`NetCtrlCoalVq`].
pub const VIRTIO_NET_CTRL_NOTF_COAL_VQ_SET: u8 = 2;
/// Get parameters of one queue: `vq_index`/`reserved` written by the driver,
/// the [`NetCtrlCoal`] part by the device.
pub const VIRTIO_NET_CTRL_NOTF_COAL_VQ_GET: u8 = 3;

wire_view! {
    /// Coalescing parameters (`struct virtio_net_ctrl_coal`).
    #[doc(alias = "virtio_net_ctrl_coal")]
    #[doc(alias = "virtio_net_ctrl_coal_tx")]
    #[doc(alias = "virtio_net_ctrl_coal_rx")]
    pub struct NetCtrlCoal, size NET_CTRL_COAL_SIZE = 8 {
        /// Packets before a notification (0: notify every packet).
        @0 max_packets / set_max_packets: Le32,
        /// Microseconds before a notification (0: notify every packet).
        @4 max_usecs / set_max_usecs: Le32,
    }
}

wire_view! {
    /// Per-virtqueue coalescing parameters (`struct virtio_net_ctrl_coal_vq`).
    #[doc(alias = "virtio_net_ctrl_coal_vq")]
    pub struct NetCtrlCoalVq, size NET_CTRL_COAL_VQ_SIZE = 12 {
        /// Index of an enabled transmit or receive virtqueue.
        @0 vq_index / set_vq_index: Le16,
        /// Reserved, ignored by the device.
        @2 reserved / set_reserved: Le16,
        /// `coal.max_packets`.
        @4 max_packets / set_max_packets: Le32,
        /// `coal.max_usecs`.
        @8 max_usecs / set_max_usecs: Le32,
    }
}

/// Offset of the `coal` member in [`NetCtrlCoalVq`].
pub const NET_CTRL_COAL_VQ_COAL_OFFSET: usize = 4;

// --- Statistics (§5.1.9.5.11) ----------------------------------------------

/// Class: device statistics (`VIRTIO_NET_F_DEVICE_STATS`); see [`super::stats`].
pub const VIRTIO_NET_CTRL_STATS: u8 = 8;
/// Query capabilities: result is `struct virtio_net_stats_capabilities`.
pub const VIRTIO_NET_CTRL_STATS_QUERY: u8 = 0;
/// Get statistics: data is `struct virtio_net_ctrl_queue_stats`, result a
/// sequence of replies each starting with `struct virtio_net_stats_reply_hdr`.
pub const VIRTIO_NET_CTRL_STATS_GET: u8 = 1;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::*;

    #[test]
    fn header_and_small_payloads() {
        let mut b = [0u8; 2];
        let mut h = NetCtrlHeader::new_checked(&mut b[..]).unwrap();
        h.set_class(VIRTIO_NET_CTRL_NOTF_COAL);
        h.set_command(VIRTIO_NET_CTRL_NOTF_COAL_VQ_GET);
        assert_eq!(b, [6, 3]);
        assert_eq!((NET_CTRL_HEADER_SIZE, NET_CTRL_ACK_SIZE), (2, 1));

        let p = NetCtrlMqPairsSet::new_checked(&[0x00, 0x80][..]).unwrap();
        assert_eq!(p.virtqueue_pairs(), VIRTIO_NET_CTRL_MQ_VQ_PAIRS_MAX);
        let t = NetHashTunnel::new_checked(&[0x10, 0, 0, 0][..]).unwrap();
        assert_eq!(t.enabled_tunnel_types(), VIRTIO_NET_HASH_TUNNEL_TYPE_VXLAN);
        let o = NetCtrlGuestOffloads::new_checked(&[0x82, 0x01, 0, 0, 0, 0xc0, 0, 0][..]).unwrap();
        assert_eq!(o.offloads(), (1 << 1) | (1 << 7) | (1 << 8) | (3 << 46));
        assert_eq!(
            RssCtxCap::new_checked(&[5, 0][..])
                .unwrap()
                .max_rss_contexts(),
            5
        );
        assert_eq!(
            RssCtxDel::new_checked(&[2, 1][..]).unwrap().rss_ctx_id(),
            0x102
        );
        assert_eq!(
            (
                NET_CTRL_MQ_PAIRS_SET_SIZE,
                NET_HASH_TUNNEL_SIZE,
                NET_CTRL_GUEST_OFFLOADS_SIZE
            ),
            (2, 4, 8)
        );
        assert_eq!((RSS_CTX_CAP_SIZE, RSS_CTX_DEL_SIZE), (2, 2));
    }

    #[test]
    fn guest_offload_bits() {
        assert_eq!(guest_offload_bit(VIRTIO_NET_F_GUEST_TSO4), Some(7));
        assert_eq!(guest_offload_bit(VIRTIO_NET_F_GUEST_USO6), Some(55));
        assert_eq!(
            guest_offload_bit(VIRTIO_NET_F_GUEST_UDP_TUNNEL_GSO),
            Some(46)
        );
        assert_eq!(
            guest_offload_bit(VIRTIO_NET_F_GUEST_UDP_TUNNEL_GSO_CSUM),
            Some(47)
        );
        assert_eq!(guest_offload_bit(VIRTIO_NET_F_HOST_TSO4), None);
    }

    #[test]
    fn mac_tables_parse_from_bytes() {
        let data = [
            1, 0, 0, 0, 0x52, 0x54, 0, 0x12, 0x34, 0x56, // 1 unicast
            2, 0, 0, 0, 0x01, 0, 0x5e, 0, 0, 1, 0x33, 0x33, 0, 0, 0, 1, // 2 multicast
        ];
        let (uc, mc) = parse_mac_tables(&data).unwrap();
        assert_eq!((uc.len(), mc.len()), (1, 2));
        assert_eq!(uc.get(0), Some([0x52, 0x54, 0, 0x12, 0x34, 0x56]));
        assert_eq!(uc.get(1), None);
        let mut it = mc.iter();
        assert_eq!(it.next(), Some([0x01, 0, 0x5e, 0, 0, 1]));
        assert_eq!(it.next(), Some([0x33, 0x33, 0, 0, 0, 1]));
        assert_eq!(it.next(), None);
        assert_eq!((mac_table_len(2), mac_table_entry_offset(1)), (16, 10));
        assert_eq!(NET_CTRL_MAC_HEADER_SIZE, 4);
        let e = parse_mac_tables(&data[..25]).unwrap_err();
        assert_eq!((e.needed, e.got), (16, 15));
        assert!(parse_mac_tables(&[0xff, 0xff, 0xff, 0xff]).is_err());
        let (empty, _) = MacTable::parse(&[0, 0, 0, 0]).unwrap();
        assert!(empty.is_empty());
    }

    #[test]
    fn rss_config_parses_from_bytes() {
        let data = [
            0x12, 0, 0, 0, // hash_types: TCPv4 | TCPv6
            3, 0, // indirection_table_mask: 4 entries
            0, 0, // unclassified_queue: receiveq1
            0, 0, 1, 0, 2, 0, 0x03, 0x80, // table (last entry has the reserved bit)
            4, 0, // max_tx_vq
            3, 0xaa, 0xbb, 0xcc, // key
        ];
        let r = RssConfig::new_checked(&data).unwrap();
        assert_eq!(
            r.hash_types(),
            VIRTIO_NET_HASH_TYPE_TCPV4 | VIRTIO_NET_HASH_TYPE_TCPV6
        );
        assert_eq!((r.indirection_table_mask(), r.unclassified_queue()), (3, 0));
        assert_eq!(r.indirection_table(2), Some(2));
        assert_eq!(r.indirection_table(3), Some(0x8003)); // kept as is
        assert_eq!(r.indirection_table(4), None);
        assert_eq!(rss_rq_id_to_vq_index(0x8003), 6);
        assert_eq!((r.max_tx_vq(), r.hash_key_length()), (4, 3));
        assert_eq!(r.hash_key_data(), &[0xaa, 0xbb, 0xcc]);
        let l = rss_config_layout(3, 3);
        assert_eq!(
            (l.indirection_table, l.max_tx_vq, l.hash_key_length),
            (8, 16, 18)
        );
        assert_eq!((l.hash_key_data, l.size, r.layout()), (19, 22, l));
        assert!(RssConfig::new_checked(&data[..21]).is_err());
        assert!(RssConfig::new_checked(&data[..18]).is_err());
        assert_eq!((rss_rq_id(6), rss_rq_id(receiveq_index(3))), (3, 3));
        assert_eq!(NET_RSS_CONFIG_HEADER_SIZE, 8);
    }

    #[test]
    fn hash_config_matches_rss_layout_with_one_entry() {
        let mut b = [0u8; 13];
        let mut h = NetHashConfigHeader::new_checked(&mut b[..]).unwrap();
        h.set_hash_types(VIRTIO_NET_HASH_TYPE_IPV4);
        h.set_hash_key_length(40);
        assert_eq!(b, [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 40]);
        assert_eq!(rss_config_layout(0, 40).hash_key_length, 12);
        assert_eq!(NET_HASH_CONFIG_HEADER_SIZE, 13);
    }

    #[test]
    fn rss_ctx_and_coalescing_layouts() {
        let mut b = [0u8; 8];
        let mut h = RssCtxAddModifyHeader::new_checked(&mut b[..]).unwrap();
        h.set_rss_ctx_id(0x0102);
        assert_eq!(b, [2, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(RSS_CTX_ADD_MODIFY_HEADER_SIZE, 8);

        let mut b = [0u8; 8];
        let mut c = NetCtrlCoal::new_checked(&mut b[..]).unwrap();
        c.set_max_packets(15);
        c.set_max_usecs(10);
        assert_eq!(b, [15, 0, 0, 0, 10, 0, 0, 0]);

        let b = [3, 0, 0xff, 0xff, 15, 0, 0, 0, 10, 0, 0, 0];
        let v = NetCtrlCoalVq::new_checked(&b[..]).unwrap();
        assert_eq!(
            (v.vq_index(), v.reserved(), v.max_packets(), v.max_usecs()),
            (3, 0xffff, 15, 10)
        );
        let inner = NetCtrlCoal::new_checked(&b[NET_CTRL_COAL_VQ_COAL_OFFSET..]).unwrap();
        assert_eq!(inner.max_usecs(), 10);
        assert_eq!((NET_CTRL_COAL_SIZE, NET_CTRL_COAL_VQ_SIZE), (8, 12));
    }
}
