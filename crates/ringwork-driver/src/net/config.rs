//! The network device configuration space as the driver uses it (VIRTIO
//! 1.4 §5.1.4): `mac`, `status`, `max_virtqueue_pairs`, `mtu`, `speed` and
//! `duplex`, each read only when its feature was negotiated, inside the
//! generation retry loop (§2.5.1). The driver never writes it (§5.1.4.2
//! MUST NOT).
//!
//! Trust and panic contract: a `max_virtqueue_pairs` (0, or above what a
//! controlq index can address) or an `mtu` (below 68) the driver cannot
//! work with makes it decline VIRTIO_NET_F_MQ or VIRTIO_NET_F_MTU before
//! FEATURES_OK (`drop_invalid_config` in the parent module); should the
//! value read after negotiation still be one of those, setup fails with
//! [`SetupError::BadConfig`]; `speed`
//! above 0x7fffffff and `duplex` other than 0 or 1 read as unknown
//! (§5.1.4.2 MUST). Nothing panics.

use ringwork_spec::features::FeatureSet;
use ringwork_spec::net::{
    speed_mbps, DUPLEX_FULL, DUPLEX_HALF, MTU_MIN, NET_CONFIG_DUPLEX_OFFSET, NET_CONFIG_MAC_OFFSET,
    NET_CONFIG_MAX_VIRTQUEUE_PAIRS_OFFSET, NET_CONFIG_MTU_OFFSET, NET_CONFIG_SPEED_OFFSET,
    NET_CONFIG_STATUS_OFFSET, VIRTIO_NET_F_MAC, VIRTIO_NET_F_MQ, VIRTIO_NET_F_MTU,
    VIRTIO_NET_F_SPEED_DUPLEX, VIRTIO_NET_F_STATUS, VIRTIO_NET_S_ANNOUNCE, VIRTIO_NET_S_LINK_UP,
};
use ringwork_transport::driver::{read_config_consistent, ConfigRead, Transport};

use crate::common::SetupError;

/// MTU assumed without `VIRTIO_NET_F_MTU` (the 1514-byte frames of
/// §5.1.9.3 less the 14-byte Ethernet header).
pub const DEFAULT_MTU: u16 = 1500;

/// Most queue pairs the driver works with: the spec allows
/// `max_virtqueue_pairs` up to 0x8000, but the controlq (index `2N`) of
/// such a device has index 0x10000, which a 16-bit queue index cannot
/// select.
pub const MAX_QUEUE_PAIRS: u16 = 0x7fff;

/// The link's duplex mode (`duplex`, §5.1.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Duplex {
    /// 0x00. §5.1.4's field description says half duplex; its normative
    /// clause (§5.1.4.1) swaps 0x00 and 0x01. The driver follows the
    /// description and Linux (see `ringwork_spec::net::DUPLEX_FULL`).
    Half,
    /// 0x01.
    Full,
    /// Any other value, or `VIRTIO_NET_F_SPEED_DUPLEX` not negotiated
    /// (§5.1.4.2: values other than 0x00 and 0x01 are unknown).
    Unknown,
}

impl Duplex {
    pub(crate) fn from_raw(v: u8) -> Self {
        match v {
            DUPLEX_HALF => Self::Half,
            DUPLEX_FULL => Self::Full,
            _ => Self::Unknown,
        }
    }
}

/// The configuration, as read and checked. Fields whose feature was not
/// negotiated hold the defaults the spec tells drivers to assume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetConfig {
    /// `mac`, with `VIRTIO_NET_F_MAC` (`None` otherwise).
    pub mac: Option<[u8; 6]>,
    /// `status` with `VIRTIO_NET_F_STATUS`; without it `LINK_UP` (§5.1.4.2:
    /// the driver assumes the link is active).
    pub status: u16,
    /// `max_virtqueue_pairs` with `VIRTIO_NET_F_MQ`; 1 otherwise.
    pub max_virtqueue_pairs: u16,
    /// `mtu` with `VIRTIO_NET_F_MTU`; [`DEFAULT_MTU`] otherwise.
    pub mtu: u16,
    /// `speed` in Mbit/s with `VIRTIO_NET_F_SPEED_DUPLEX`; `None` when not
    /// negotiated or above 0x7fffffff (§5.1.4.2).
    pub speed: Option<u32>,
    /// `duplex`.
    pub duplex: Duplex,
}

impl NetConfig {
    /// Whether the link is up (`VIRTIO_NET_S_LINK_UP`).
    pub fn link_up(&self) -> bool {
        self.status & VIRTIO_NET_S_LINK_UP != 0
    }

    /// Whether the device asks for gratuitous packets
    /// (`VIRTIO_NET_S_ANNOUNCE`).
    pub fn announce(&self) -> bool {
        self.status & VIRTIO_NET_S_ANNOUNCE != 0
    }
}

/// Reads the fields the negotiated `features` make valid.
pub(crate) fn read<T: Transport + ?Sized>(
    t: &mut T,
    features: FeatureSet,
) -> Result<NetConfig, SetupError> {
    let has = |b| features.contains(b);
    let raw = read_config_consistent(t, |t| {
        let mut mac = [0u8; 6];
        if has(VIRTIO_NET_F_MAC) {
            t.read_config(NET_CONFIG_MAC_OFFSET, &mut mac);
        }
        (
            mac,
            has(VIRTIO_NET_F_STATUS).then(|| t.config_u16(NET_CONFIG_STATUS_OFFSET)),
            has(VIRTIO_NET_F_MQ).then(|| t.config_u16(NET_CONFIG_MAX_VIRTQUEUE_PAIRS_OFFSET)),
            has(VIRTIO_NET_F_MTU).then(|| t.config_u16(NET_CONFIG_MTU_OFFSET)),
            has(VIRTIO_NET_F_SPEED_DUPLEX).then(|| {
                (
                    t.config_u32(NET_CONFIG_SPEED_OFFSET),
                    t.config_u8(NET_CONFIG_DUPLEX_OFFSET),
                )
            }),
        )
    })?;
    let (mac, status, pairs, mtu, sd) = raw;
    let pairs = pairs.unwrap_or(1);
    if pairs == 0 || pairs > MAX_QUEUE_PAIRS {
        return Err(SetupError::BadConfig {
            field: "max_virtqueue_pairs",
            value: pairs.into(),
            reason: "not in 1..=0x7fff (the controlq index 2N must fit 16 bits)",
        });
    }
    let mtu = mtu.unwrap_or(DEFAULT_MTU);
    if mtu < MTU_MIN {
        return Err(SetupError::BadConfig {
            field: "mtu",
            value: mtu.into(),
            reason: "below 68",
        });
    }
    Ok(NetConfig {
        mac: has(VIRTIO_NET_F_MAC).then_some(mac),
        status: status.unwrap_or(VIRTIO_NET_S_LINK_UP),
        max_virtqueue_pairs: pairs,
        mtu,
        speed: sd.and_then(|(s, _)| speed_mbps(s)),
        duplex: sd.map_or(Duplex::Unknown, |(_, d)| Duplex::from_raw(d)),
    })
}
