//! Feature bits of the network device (VIRTIO 1.4 §5.1.3) and their
//! dependency rules (§5.1.3.1). Re-exported by [`crate::net`].

use crate::features::FeatureRule;

/// Device handles packets with partial checksum offload.
pub const VIRTIO_NET_F_CSUM: u32 = 0;
/// Driver handles packets with partial checksum.
pub const VIRTIO_NET_F_GUEST_CSUM: u32 = 1;
/// Control channel offloads reconfiguration support.
pub const VIRTIO_NET_F_CTRL_GUEST_OFFLOADS: u32 = 2;
/// Device maximum MTU reporting (`mtu` in the configuration space).
pub const VIRTIO_NET_F_MTU: u32 = 3;
/// Device has given MAC address (`mac` in the configuration space).
pub const VIRTIO_NET_F_MAC: u32 = 5;
/// Driver can receive TSOv4.
pub const VIRTIO_NET_F_GUEST_TSO4: u32 = 7;
/// Driver can receive TSOv6.
pub const VIRTIO_NET_F_GUEST_TSO6: u32 = 8;
/// Driver can receive TSO with ECN.
pub const VIRTIO_NET_F_GUEST_ECN: u32 = 9;
/// Driver can receive UFO.
pub const VIRTIO_NET_F_GUEST_UFO: u32 = 10;
/// Device can receive TSOv4.
pub const VIRTIO_NET_F_HOST_TSO4: u32 = 11;
/// Device can receive TSOv6.
pub const VIRTIO_NET_F_HOST_TSO6: u32 = 12;
/// Device can receive TSO with ECN.
pub const VIRTIO_NET_F_HOST_ECN: u32 = 13;
/// Device can receive UFO.
pub const VIRTIO_NET_F_HOST_UFO: u32 = 14;
/// Driver can merge receive buffers (`num_buffers` may exceed 1).
pub const VIRTIO_NET_F_MRG_RXBUF: u32 = 15;
/// Configuration `status` field is available.
pub const VIRTIO_NET_F_STATUS: u32 = 16;
/// Control channel (controlq) is available.
pub const VIRTIO_NET_F_CTRL_VQ: u32 = 17;
/// Control channel RX mode support.
pub const VIRTIO_NET_F_CTRL_RX: u32 = 18;
/// Control channel VLAN filtering.
pub const VIRTIO_NET_F_CTRL_VLAN: u32 = 19;
/// Control channel RX extra mode support.
pub const VIRTIO_NET_F_CTRL_RX_EXTRA: u32 = 20;
/// Driver can send gratuitous packets.
pub const VIRTIO_NET_F_GUEST_ANNOUNCE: u32 = 21;
/// Device supports multiqueue with automatic receive steering.
pub const VIRTIO_NET_F_MQ: u32 = 22;
/// Set MAC address through control channel.
pub const VIRTIO_NET_F_CTRL_MAC_ADDR: u32 = 23;
/// Device can provide device-level statistics through the controlq.
pub const VIRTIO_NET_F_DEVICE_STATS: u32 = 50;
/// Device supports inner header hash for encapsulated packets.
pub const VIRTIO_NET_F_HASH_TUNNEL: u32 = 51;
/// Device supports virtqueue notification coalescing.
pub const VIRTIO_NET_F_VQ_NOTF_COAL: u32 = 52;
/// Device supports notifications coalescing.
pub const VIRTIO_NET_F_NOTF_COAL: u32 = 53;
/// Driver can receive USOv4 packets.
pub const VIRTIO_NET_F_GUEST_USO4: u32 = 54;
/// Driver can receive USOv6 packets.
pub const VIRTIO_NET_F_GUEST_USO6: u32 = 55;
/// Device can receive USO packets (segmentation, each segment with a UDP
/// header, unlike UFO's fragmentation).
pub const VIRTIO_NET_F_HOST_USO: u32 = 56;
/// Device can report per-packet hash value and type.
pub const VIRTIO_NET_F_HASH_REPORT: u32 = 57;
/// Driver can provide the exact `hdr_len` value.
pub const VIRTIO_NET_F_GUEST_HDRLEN: u32 = 59;
/// Device supports RSS with Toeplitz hash and configurable parameters.
pub const VIRTIO_NET_F_RSS: u32 = 60;
/// Device can process duplicated ACKs and report coalesced segments and
/// duplicated ACKs (in `csum_start` / `csum_offset`).
pub const VIRTIO_NET_F_RSC_EXT: u32 = 61;
/// Device may act as a standby for a primary device with the same MAC.
pub const VIRTIO_NET_F_STANDBY: u32 = 62;
/// Device reports speed and duplex.
pub const VIRTIO_NET_F_SPEED_DUPLEX: u32 = 63;
/// Device supports multiple RSS contexts.
pub const VIRTIO_NET_F_RSS_CONTEXT: u32 = 64;
/// Driver can receive GSO packets carried by a UDP tunnel.
pub const VIRTIO_NET_F_GUEST_UDP_TUNNEL_GSO: u32 = 65;
/// Driver handles UDP-tunnelled packets with partial csum for the outer header.
pub const VIRTIO_NET_F_GUEST_UDP_TUNNEL_GSO_CSUM: u32 = 66;
/// Device can receive GSO packets carried by a UDP tunnel.
pub const VIRTIO_NET_F_HOST_UDP_TUNNEL_GSO: u32 = 67;
/// Device handles UDP-tunnelled packets with partial csum for the outer header.
pub const VIRTIO_NET_F_HOST_UDP_TUNNEL_GSO_CSUM: u32 = 68;
/// Driver can provide `outer_nh_offset`.
pub const VIRTIO_NET_F_OUT_NET_HEADER: u32 = 69;
/// Device supports inline IPsec processing (header grows to 32 bytes).
pub const VIRTIO_NET_F_IPSEC: u32 = 70;

/// Legacy: device handles packets with any GSO type (§5.1.3.2).
pub const VIRTIO_NET_F_GSO: u32 = 6;
/// Legacy: device coalesces TCP/IPv4 packets (§5.1.3.2).
pub const VIRTIO_NET_F_GUEST_RSC4: u32 = 41;
/// Legacy: device coalesces TCP/IPv6 packets (§5.1.3.2).
pub const VIRTIO_NET_F_GUEST_RSC6: u32 = 42;

/// Every "X requires Y" of §5.1.3.1 ("Feature bit requirements"). Applies
/// to the features a device offers and to those a driver accepts (§2.2).
///
/// `VIRTIO_NET_F_RSC_EXT` requires `HOST_TSO4` or `HOST_TSO6` as the list
/// says, although §5.1.9.4 describes it as implying `GUEST_TSO4`/`TSO6`.
pub const NET_FEATURE_RULES: &[FeatureRule] = &[
    FeatureRule::new(VIRTIO_NET_F_GUEST_TSO4, S).all_of(&[VIRTIO_NET_F_GUEST_CSUM]),
    FeatureRule::new(VIRTIO_NET_F_GUEST_TSO6, S).all_of(&[VIRTIO_NET_F_GUEST_CSUM]),
    FeatureRule::new(VIRTIO_NET_F_GUEST_ECN, S)
        .any_of(&[VIRTIO_NET_F_GUEST_TSO4, VIRTIO_NET_F_GUEST_TSO6]),
    FeatureRule::new(VIRTIO_NET_F_GUEST_UFO, S).all_of(&[VIRTIO_NET_F_GUEST_CSUM]),
    FeatureRule::new(VIRTIO_NET_F_GUEST_USO4, S).all_of(&[VIRTIO_NET_F_GUEST_CSUM]),
    FeatureRule::new(VIRTIO_NET_F_GUEST_USO6, S).all_of(&[VIRTIO_NET_F_GUEST_CSUM]),
    FeatureRule::new(VIRTIO_NET_F_GUEST_UDP_TUNNEL_GSO, S).all_of(&[
        VIRTIO_NET_F_GUEST_TSO4,
        VIRTIO_NET_F_GUEST_TSO6,
        VIRTIO_NET_F_GUEST_USO4,
        VIRTIO_NET_F_GUEST_USO6,
    ]),
    FeatureRule::new(VIRTIO_NET_F_GUEST_UDP_TUNNEL_GSO_CSUM, S)
        .all_of(&[VIRTIO_NET_F_GUEST_UDP_TUNNEL_GSO]),
    FeatureRule::new(VIRTIO_NET_F_HOST_TSO4, S).all_of(&[VIRTIO_NET_F_CSUM]),
    FeatureRule::new(VIRTIO_NET_F_HOST_TSO6, S).all_of(&[VIRTIO_NET_F_CSUM]),
    FeatureRule::new(VIRTIO_NET_F_HOST_ECN, S)
        .any_of(&[VIRTIO_NET_F_HOST_TSO4, VIRTIO_NET_F_HOST_TSO6]),
    FeatureRule::new(VIRTIO_NET_F_HOST_UFO, S).all_of(&[VIRTIO_NET_F_CSUM]),
    FeatureRule::new(VIRTIO_NET_F_HOST_USO, S).all_of(&[VIRTIO_NET_F_CSUM]),
    FeatureRule::new(VIRTIO_NET_F_HOST_UDP_TUNNEL_GSO, S).all_of(&[
        VIRTIO_NET_F_HOST_TSO4,
        VIRTIO_NET_F_HOST_TSO6,
        VIRTIO_NET_F_HOST_USO,
    ]),
    FeatureRule::new(VIRTIO_NET_F_HOST_UDP_TUNNEL_GSO_CSUM, S)
        .all_of(&[VIRTIO_NET_F_HOST_UDP_TUNNEL_GSO]),
    FeatureRule::new(VIRTIO_NET_F_CTRL_RX, S).all_of(&[VIRTIO_NET_F_CTRL_VQ]),
    FeatureRule::new(VIRTIO_NET_F_CTRL_VLAN, S).all_of(&[VIRTIO_NET_F_CTRL_VQ]),
    FeatureRule::new(VIRTIO_NET_F_GUEST_ANNOUNCE, S).all_of(&[VIRTIO_NET_F_CTRL_VQ]),
    FeatureRule::new(VIRTIO_NET_F_MQ, S).all_of(&[VIRTIO_NET_F_CTRL_VQ]),
    FeatureRule::new(VIRTIO_NET_F_CTRL_MAC_ADDR, S).all_of(&[VIRTIO_NET_F_CTRL_VQ]),
    FeatureRule::new(VIRTIO_NET_F_NOTF_COAL, S).all_of(&[VIRTIO_NET_F_CTRL_VQ]),
    FeatureRule::new(VIRTIO_NET_F_RSC_EXT, S)
        .any_of(&[VIRTIO_NET_F_HOST_TSO4, VIRTIO_NET_F_HOST_TSO6]),
    FeatureRule::new(VIRTIO_NET_F_RSS, S).all_of(&[VIRTIO_NET_F_CTRL_VQ]),
    FeatureRule::new(VIRTIO_NET_F_VQ_NOTF_COAL, S).all_of(&[VIRTIO_NET_F_CTRL_VQ]),
    FeatureRule::new(VIRTIO_NET_F_HASH_TUNNEL, S)
        .all_of(&[VIRTIO_NET_F_CTRL_VQ])
        .any_of(&[VIRTIO_NET_F_RSS, VIRTIO_NET_F_HASH_REPORT]),
    FeatureRule::new(VIRTIO_NET_F_RSS_CONTEXT, S).all_of(&[VIRTIO_NET_F_CTRL_VQ, VIRTIO_NET_F_RSS]),
];

const S: &str = "§5.1.3.1";

/// SHOULD-level dependencies, not in [`NET_FEATURE_RULES`]: the device
/// SHOULD NOT offer, and the driver SHOULD NOT negotiate,
/// `VIRTIO_NET_F_HASH_REPORT` or `VIRTIO_NET_F_CTRL_RX_EXTRA` without
/// `VIRTIO_NET_F_CTRL_VQ` (§5.1.4.1, §5.1.4.2).
pub const NET_SHOULD_RULES: &[FeatureRule] = &[
    FeatureRule::new(VIRTIO_NET_F_HASH_REPORT, "§5.1.4.1").all_of(&[VIRTIO_NET_F_CTRL_VQ]),
    FeatureRule::new(VIRTIO_NET_F_CTRL_RX_EXTRA, "§5.1.4.1").all_of(&[VIRTIO_NET_F_CTRL_VQ]),
];

/// SHOULD-level rule on the features a device *offers*: a device offering
/// `VIRTIO_NET_F_IPSEC` SHOULD also offer `VIRTIO_NET_F_OUT_NET_HEADER`
/// (§5.1.3).
pub const NET_SHOULD_OFFER_RULES: &[FeatureRule] =
    &[FeatureRule::new(VIRTIO_NET_F_IPSEC, "§5.1.3").all_of(&[VIRTIO_NET_F_OUT_NET_HEADER])];

/// A driver SHOULD accept these if offered: `VIRTIO_NET_F_MAC`,
/// `VIRTIO_NET_F_MTU`, `VIRTIO_NET_F_STANDBY` (§5.1.4.2). It also SHOULD
/// accept `VIRTIO_NET_F_GUEST_HDRLEN` when it can provide the exact header
/// length (§5.1.9.2.1), which is not listed here.
pub const NET_SHOULD_ACCEPT_IF_OFFERED: &[u32] =
    &[VIRTIO_NET_F_MAC, VIRTIO_NET_F_MTU, VIRTIO_NET_F_STANDBY];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::{check_dependencies, negotiate, FeatureSet, ViolationKind};

    #[test]
    fn feature_bit_numbers() {
        assert_eq!(
            [
                VIRTIO_NET_F_CSUM,
                VIRTIO_NET_F_MTU,
                VIRTIO_NET_F_MAC,
                VIRTIO_NET_F_CTRL_MAC_ADDR
            ],
            [0, 3, 5, 23]
        );
        let bits = [
            VIRTIO_NET_F_DEVICE_STATS,
            VIRTIO_NET_F_HASH_REPORT,
            VIRTIO_NET_F_SPEED_DUPLEX,
        ];
        assert_eq!(bits, [50, 57, 63]);
        assert_eq!([VIRTIO_NET_F_RSS_CONTEXT, VIRTIO_NET_F_IPSEC], [64, 70]);
        assert_eq!(
            [
                VIRTIO_NET_F_GSO,
                VIRTIO_NET_F_GUEST_RSC4,
                VIRTIO_NET_F_GUEST_RSC6
            ],
            [6, 41, 42]
        );
    }

    #[test]
    fn rules_follow_the_requirements_list() {
        assert_eq!(NET_FEATURE_RULES.len(), 26);
        let ok = FeatureSet::from_bits(&[
            VIRTIO_NET_F_CSUM,
            VIRTIO_NET_F_HOST_TSO4,
            VIRTIO_NET_F_HOST_TSO6,
            VIRTIO_NET_F_HOST_USO,
            VIRTIO_NET_F_HOST_UDP_TUNNEL_GSO,
            VIRTIO_NET_F_HOST_ECN,
            VIRTIO_NET_F_RSC_EXT,
            VIRTIO_NET_F_CTRL_VQ,
            VIRTIO_NET_F_HASH_REPORT,
            VIRTIO_NET_F_HASH_TUNNEL,
        ]);
        assert!(check_dependencies(&ok, NET_FEATURE_RULES).is_ok());
        let v = check_dependencies(&ok.without(VIRTIO_NET_F_HOST_USO), NET_FEATURE_RULES);
        assert_eq!(v.unwrap_err().feature, VIRTIO_NET_F_HOST_UDP_TUNNEL_GSO);
        let v = check_dependencies(&ok.without(VIRTIO_NET_F_HASH_REPORT), NET_FEATURE_RULES);
        let v = v.unwrap_err();
        assert_eq!(v.feature, VIRTIO_NET_F_HASH_TUNNEL);
        assert!(matches!(v.kind, ViolationKind::MissingAnyOf(_)));
        // Without CTRL_VQ a driver drops everything that needs it.
        let offered = ok.with(VIRTIO_NET_F_MQ).with(VIRTIO_NET_F_RSS_CONTEXT);
        let got = negotiate(
            offered,
            offered.without(VIRTIO_NET_F_CTRL_VQ),
            NET_FEATURE_RULES,
        );
        assert!(!got.contains(VIRTIO_NET_F_MQ) && !got.contains(VIRTIO_NET_F_HASH_TUNNEL));
        assert!(got.contains(VIRTIO_NET_F_HASH_REPORT)); // only a SHOULD
        let soft = FeatureSet::from_bits(&[VIRTIO_NET_F_HASH_REPORT]);
        assert!(check_dependencies(&soft, NET_SHOULD_RULES).is_err());
        let ipsec = FeatureSet::from_bits(&[VIRTIO_NET_F_IPSEC]);
        assert!(check_dependencies(&ipsec, NET_SHOULD_OFFER_RULES).is_err());
        assert!(NET_SHOULD_ACCEPT_IF_OFFERED.contains(&VIRTIO_NET_F_MAC));
    }
}
