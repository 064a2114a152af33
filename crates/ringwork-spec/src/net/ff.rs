//! VIRTIO 1.4 §5.1.6 Network Device capabilities, §5.1.7 resource objects,
//! §5.1.8 device parts and §5.1.9.6 flow filters.
//!
//! Flow filter groups, classifiers and rules are device resource objects
//! managed with the group administration commands for device resource
//! objects; this module holds their
//! identifiers and the network-specific payload layouts. IPsec SA objects
//! (`VIRTIO_NET_RESOURCE_OBJ_IPSEC_*`) use structures defined by the crypto
//! device section and only their identifiers are here.

use crate::le::{Le16, Le32};
use crate::wire_view;

/// Capability: flow filter resource limits ([`FfCapData`]).
pub const VIRTIO_NET_FF_RESOURCE_CAP: u16 = 0x0800;
/// Capability: supported flow filter selectors ([`FfListHeader`] + selectors).
pub const VIRTIO_NET_FF_SELECTOR_CAP: u16 = 0x0801;
/// Capability: supported flow filter actions ([`FfListHeader`] + action bytes).
pub const VIRTIO_NET_FF_ACTION_CAP: u16 = 0x0802;
/// Capability: IPsec resource limits.
pub const VIRTIO_NET_IPSEC_RESOURCE_CAP: u16 = 0x0803;
/// Capability: IPsec security association parameters.
pub const VIRTIO_NET_IPSEC_SA_CAP: u16 = 0x0804;

/// Resource object type: flow filter group ([`FfGroup`]).
pub const VIRTIO_NET_RESOURCE_OBJ_FF_GROUP: u16 = 0x0200;
/// Resource object type: flow filter classifier ([`FfListHeader`] + selectors).
pub const VIRTIO_NET_RESOURCE_OBJ_FF_CLASSIFIER: u16 = 0x0201;
/// Resource object type: flow filter rule ([`FfRuleHeader`] + keys).
pub const VIRTIO_NET_RESOURCE_OBJ_FF_RULE: u16 = 0x0202;
/// Resource object type: IPsec outbound SA.
pub const VIRTIO_NET_RESOURCE_OBJ_IPSEC_OUTB_SA: u16 = 0x0203;
/// Resource object type: IPsec inbound SA.
pub const VIRTIO_NET_RESOURCE_OBJ_IPSEC_INB_SA: u16 = 0x0204;

/// Device part type: configuration done through a controlq command; the
/// selector is [`DevPartCvqSelector`], the value the command's data. Types
/// 0x201..=0x5ff are reserved.
pub const VIRTIO_NET_DEV_PART_CVQ_CFG_PART: u16 = 0x200;

wire_view! {
    /// Selector of a `VIRTIO_NET_DEV_PART_CVQ_CFG_PART` device part.
    #[doc(alias = "virtio_net_dev_part_cvq_selector")]
    pub struct DevPartCvqSelector, size DEV_PART_CVQ_SELECTOR_SIZE = 8 {
        /// `VIRTIO_NET_CTRL_*` class.
        @0 class / set_class: u8,
        /// Command within the class.
        @1 command / set_command: u8,
        /// Reserved, zero.
        @2 reserved / set_reserved: [u8; 6],
    }
}

wire_view! {
    /// `cap_specific_data` of `VIRTIO_NET_FF_RESOURCE_CAP`.
    #[doc(alias = "virtio_net_ff_cap_data")]
    pub struct FfCapData, size FF_CAP_DATA_SIZE = 20 {
        /// Maximum flow filter groups.
        @0 groups_limit / set_groups_limit: Le32,
        /// Maximum classifiers.
        @4 classifiers_limit / set_classifiers_limit: Le32,
        /// Maximum rules across all groups.
        @8 rules_limit / set_rules_limit: Le32,
        /// Maximum rules per group.
        @12 rules_per_group_limit / set_rules_per_group_limit: Le32,
        /// Highest rule priority.
        @16 last_rule_priority / set_last_rule_priority: u8,
        /// Maximum selectors per classifier.
        @17 selectors_per_classifier_limit / set_selectors_per_classifier_limit: u8,
        /// Reserved, zero.
        @18 reserved / set_reserved: [u8; 2],
    }
}

wire_view! {
    /// The `count` + 7 reserved bytes that start
    /// `struct virtio_net_ff_cap_mask_data`, `struct
    /// virtio_net_resource_obj_ff_classifier` (each followed by `count`
    /// selectors, see [`FfSelectors`]) and `struct virtio_net_ff_actions`
    /// (followed by `count` action bytes).
    #[doc(alias = "virtio_net_ff_cap_mask_data")]
    #[doc(alias = "virtio_net_resource_obj_ff_classifier")]
    #[doc(alias = "virtio_net_ff_actions")]
    pub struct FfListHeader, size FF_LIST_HEADER_SIZE = 8 {
        /// Number of entries that follow.
        @0 count / set_count: u8,
        /// Reserved, zero.
        @1 reserved / set_reserved: [u8; 7],
    }
}

/// Selector flag: partial masking is supported / used.
pub const VIRTIO_NET_FF_MASK_F_PARTIAL_MASK: u8 = 1 << 0;

/// Selector type: Ethernet header (14 bytes).
pub const VIRTIO_NET_FF_MASK_TYPE_ETH: u8 = 0x1;
/// Selector type: IPv4 header (20 bytes).
pub const VIRTIO_NET_FF_MASK_TYPE_IPV4: u8 = 0x2;
/// Selector type: IPv6 header (40 bytes).
pub const VIRTIO_NET_FF_MASK_TYPE_IPV6: u8 = 0x3;
/// Selector type: TCP header (20 bytes).
pub const VIRTIO_NET_FF_MASK_TYPE_TCP: u8 = 0x4;
/// Selector type: UDP header (8 bytes).
pub const VIRTIO_NET_FF_MASK_TYPE_UDP: u8 = 0x5;
/// Selector type: ESP header (8 bytes).
pub const VIRTIO_NET_FF_MASK_TYPE_ESP: u8 = 0x6;

/// Header bytes a selector type covers, for the types the spec defines.
pub const fn ff_mask_type_len(type_: u8) -> Option<usize> {
    match type_ {
        VIRTIO_NET_FF_MASK_TYPE_ETH => Some(14),
        VIRTIO_NET_FF_MASK_TYPE_IPV4 | VIRTIO_NET_FF_MASK_TYPE_TCP => Some(20),
        VIRTIO_NET_FF_MASK_TYPE_IPV6 => Some(40),
        VIRTIO_NET_FF_MASK_TYPE_UDP | VIRTIO_NET_FF_MASK_TYPE_ESP => Some(8),
        _ => None,
    }
}

wire_view! {
    /// Fixed head of `struct virtio_net_ff_selector`; `length` mask bytes
    /// (network byte order) follow at offset 8.
    #[doc(alias = "virtio_net_ff_selector")]
    pub struct FfSelectorHeader, size FF_SELECTOR_HEADER_SIZE = 8 {
        /// `VIRTIO_NET_FF_MASK_TYPE_*`.
        @0 type_ / set_type: u8,
        /// `VIRTIO_NET_FF_MASK_F_*`.
        @1 flags / set_flags: u8,
        /// Reserved, zero.
        @2 reserved / set_reserved: [u8; 2],
        /// Length of `mask` in bytes.
        @4 length / set_length: u8,
        /// Reserved, zero.
        @5 reserved1 / set_reserved1: [u8; 3],
    }
}

/// Iterator over a packed array of selectors (after an [`FfListHeader`]):
/// yields each selector's header and mask. Stops early at a truncated entry.
#[derive(Debug, Clone)]
pub struct FfSelectors<'a> {
    rest: &'a [u8],
    remaining: u8,
}

impl<'a> FfSelectors<'a> {
    /// Walks `count` selectors packed in `bytes`.
    pub fn new(bytes: &'a [u8], count: u8) -> Self {
        Self {
            rest: bytes,
            remaining: count,
        }
    }
}

impl<'a> Iterator for FfSelectors<'a> {
    type Item = (FfSelectorHeader<&'a [u8]>, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        let hdr = FfSelectorHeader::new_checked(self.rest).ok()?;
        let end = FF_SELECTOR_HEADER_SIZE + hdr.length() as usize;
        if end > self.rest.len() {
            self.remaining = 0;
            return None;
        }
        let (entry, rest) = self.rest.split_at(end);
        self.rest = rest;
        self.remaining -= 1;
        Some((
            FfSelectorHeader::new_unchecked(entry),
            &entry[FF_SELECTOR_HEADER_SIZE..],
        ))
    }
}

/// Rule action: drop the packet.
pub const VIRTIO_NET_FF_ACTION_DROP: u8 = 0x1;
/// Rule action: direct the packet to the receive queue `vq_index`.
pub const VIRTIO_NET_FF_ACTION_DIRECT_RX_VQ: u8 = 0x2;
/// Rule action: IPsec processing.
pub const VIRTIO_NET_FF_ACTION_IPSEC: u8 = 0x3;
/// Rule action: IPsec processing, then the flow filter rules once more.
pub const VIRTIO_NET_FF_ACTION_IPSEC_RECIRCULATE: u8 = 0x4;

wire_view! {
    /// Data of a `VIRTIO_NET_RESOURCE_OBJ_FF_GROUP` object.
    #[doc(alias = "virtio_net_resource_obj_ff_group")]
    pub struct FfGroup, size FF_GROUP_SIZE = 2 {
        /// Group priority (distinct per group; higher first).
        @0 group_priority / set_group_priority: Le16,
    }
}

wire_view! {
    /// Fixed head of a `VIRTIO_NET_RESOURCE_OBJ_FF_RULE` object; `key_length`
    /// key bytes follow at offset 16.
    #[doc(alias = "virtio_net_resource_obj_ff_rule")]
    pub struct FfRuleHeader, size FF_RULE_HEADER_SIZE = 16 {
        /// Resource id of the group.
        @0 group_id / set_group_id: Le32,
        /// Resource id of the classifier.
        @4 classifier_id / set_classifier_id: Le32,
        /// Priority within the group.
        @8 rule_priority / set_rule_priority: u8,
        /// Total length of the keys in bytes.
        @9 key_length / set_key_length: u8,
        /// `VIRTIO_NET_FF_ACTION_*`.
        @10 action / set_action: u8,
        /// Reserved, zero.
        @11 reserved / set_reserved: u8,
        /// Receive virtqueue for `VIRTIO_NET_FF_ACTION_DIRECT_RX_VQ`.
        @12 vq_index / set_vq_index: Le16,
        /// Reserved, zero.
        @14 reserved1 / set_reserved1: [u8; 2],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_data_layout() {
        let b = [1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0, 5, 6, 0, 0];
        let c = FfCapData::new_checked(&b[..]).unwrap();
        assert_eq!(
            (c.groups_limit(), c.classifiers_limit(), c.rules_limit()),
            (1, 2, 3)
        );
        assert_eq!(c.rules_per_group_limit(), 4);
        assert_eq!(
            (c.last_rule_priority(), c.selectors_per_classifier_limit()),
            (5, 6)
        );
        assert_eq!(FF_CAP_DATA_SIZE, 20);
    }

    #[test]
    fn classifier_selectors_parse() {
        // Classifier: ETH (EtherType only) then IPv6, as in §5.1.9.6.
        let mut b = [0u8; 8 + 8 + 14 + 8 + 40];
        b[0] = 2;
        b[8] = VIRTIO_NET_FF_MASK_TYPE_ETH;
        b[12] = 14;
        b[8 + 8 + 12] = 0xff;
        b[8 + 8 + 13] = 0xff;
        b[30] = VIRTIO_NET_FF_MASK_TYPE_IPV6;
        b[31] = VIRTIO_NET_FF_MASK_F_PARTIAL_MASK;
        b[34] = 40;
        let l = FfListHeader::new_checked(&b[..]).unwrap();
        let mut it = FfSelectors::new(&b[FF_LIST_HEADER_SIZE..], l.count());
        let (h, mask) = it.next().unwrap();
        assert_eq!(
            (h.type_(), h.flags(), h.length(), mask.len()),
            (1, 0, 14, 14)
        );
        assert_eq!(&mask[12..], &[0xff, 0xff]);
        let (h, mask) = it.next().unwrap();
        assert_eq!((h.type_(), h.flags(), mask.len()), (3, 1, 40));
        assert!(it.next().is_none());
        assert!(FfSelectors::new(&b[8..60], 2).nth(1).is_none());
        assert_eq!(ff_mask_type_len(VIRTIO_NET_FF_MASK_TYPE_ETH), Some(14));
        assert_eq!(ff_mask_type_len(VIRTIO_NET_FF_MASK_TYPE_IPV6), Some(40));
        assert_eq!(ff_mask_type_len(VIRTIO_NET_FF_MASK_TYPE_ESP), Some(8));
        assert_eq!(ff_mask_type_len(7), None);
        assert_eq!((FF_SELECTOR_HEADER_SIZE, FF_LIST_HEADER_SIZE), (8, 8));
    }

    #[test]
    fn rule_group_and_selector_layouts() {
        let mut b = [0u8; 16];
        let mut r = FfRuleHeader::new_checked(&mut b[..]).unwrap();
        r.set_group_id(0x0403_0201);
        r.set_classifier_id(5);
        r.set_rule_priority(6);
        r.set_key_length(54);
        r.set_action(VIRTIO_NET_FF_ACTION_DIRECT_RX_VQ);
        r.set_vq_index(0x0a08);
        assert_eq!(b, [1, 2, 3, 4, 5, 0, 0, 0, 6, 54, 2, 0, 8, 0x0a, 0, 0]);
        assert_eq!(FF_RULE_HEADER_SIZE, 16);
        assert_eq!(
            FfGroup::new_checked(&[4, 1][..]).unwrap().group_priority(),
            0x104
        );
        assert_eq!(FF_GROUP_SIZE, 2);
        let s = DevPartCvqSelector::new_checked(&[4, 1, 0, 0, 0, 0, 0, 0][..]).unwrap();
        assert_eq!((s.class(), s.command()), (4, 1));
        assert_eq!(DEV_PART_CVQ_SELECTOR_SIZE, 8);
    }
}
