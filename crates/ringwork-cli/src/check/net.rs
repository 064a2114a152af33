//! The network device suite (VIRTIO 1.4 §5.1), without a network driver:
//! raw queues ([`super::net_io`]).
//!
//! Sessions, in order:
//! 1. *main* (the identifying connection): feature bits and their
//!    dependencies (§5.1.3.1), negotiation, the configuration space
//!    (§5.1.4), initialization with every queue pair (up to 4) and the
//!    controlq, receive buffers (§5.1.5, §5.1.9.3), frames transmitted
//!    (§5.1.9.2), malformed transmit chains completed without harm
//!    (§5.1.9.2.2), the control queue ([`super::net_ctrl`]), reset;
//! 2. pairs of concurrent sessions, when the backend accepts a second
//!    connection on the same segment ([`super::net_loop`]): frames byte
//!    for byte, broadcast, every queue pair, in split and packed rings;
//!    checksum offload; mergeable receive buffers;
//! 3. the minimal feature subset.

use std::time::Duration;

use anyhow::Context as _;
use ringwork_driver::RingPreference;
use ringwork_spec::features::{FeatureSet, VIRTIO_F_RING_PACKED, VIRTIO_F_VERSION_1};
use ringwork_spec::net::*;
use ringwork_transport::driver;
use ringwork_vhost_user::msg::protocol;
use ringwork_vhost_user::VhostUserTransport;

use super::common::{
    check_driver_ok, check_reset_status, feature_checks, features_ok_outcome, first_problem,
    offered_features, read_config_for, skip_all, Ctx,
};
use super::net_io::{all_features, frame, parse_config, Cfg, Net, RX_BUF};
use super::report::Outcome;

/// The network feature bits, with their names.
const FEATURE_NAMES: &[(u32, &str)] = &[
    (VIRTIO_NET_F_CSUM, "VIRTIO_NET_F_CSUM"),
    (VIRTIO_NET_F_GUEST_CSUM, "VIRTIO_NET_F_GUEST_CSUM"),
    (
        VIRTIO_NET_F_CTRL_GUEST_OFFLOADS,
        "VIRTIO_NET_F_CTRL_GUEST_OFFLOADS",
    ),
    (VIRTIO_NET_F_MTU, "VIRTIO_NET_F_MTU"),
    (VIRTIO_NET_F_MAC, "VIRTIO_NET_F_MAC"),
    (VIRTIO_NET_F_GSO, "VIRTIO_NET_F_GSO"),
    (VIRTIO_NET_F_GUEST_TSO4, "VIRTIO_NET_F_GUEST_TSO4"),
    (VIRTIO_NET_F_GUEST_TSO6, "VIRTIO_NET_F_GUEST_TSO6"),
    (VIRTIO_NET_F_GUEST_ECN, "VIRTIO_NET_F_GUEST_ECN"),
    (VIRTIO_NET_F_GUEST_UFO, "VIRTIO_NET_F_GUEST_UFO"),
    (VIRTIO_NET_F_HOST_TSO4, "VIRTIO_NET_F_HOST_TSO4"),
    (VIRTIO_NET_F_HOST_TSO6, "VIRTIO_NET_F_HOST_TSO6"),
    (VIRTIO_NET_F_HOST_ECN, "VIRTIO_NET_F_HOST_ECN"),
    (VIRTIO_NET_F_HOST_UFO, "VIRTIO_NET_F_HOST_UFO"),
    (VIRTIO_NET_F_MRG_RXBUF, "VIRTIO_NET_F_MRG_RXBUF"),
    (VIRTIO_NET_F_STATUS, "VIRTIO_NET_F_STATUS"),
    (VIRTIO_NET_F_CTRL_VQ, "VIRTIO_NET_F_CTRL_VQ"),
    (VIRTIO_NET_F_CTRL_RX, "VIRTIO_NET_F_CTRL_RX"),
    (VIRTIO_NET_F_CTRL_VLAN, "VIRTIO_NET_F_CTRL_VLAN"),
    (VIRTIO_NET_F_CTRL_RX_EXTRA, "VIRTIO_NET_F_CTRL_RX_EXTRA"),
    (VIRTIO_NET_F_GUEST_ANNOUNCE, "VIRTIO_NET_F_GUEST_ANNOUNCE"),
    (VIRTIO_NET_F_MQ, "VIRTIO_NET_F_MQ"),
    (VIRTIO_NET_F_CTRL_MAC_ADDR, "VIRTIO_NET_F_CTRL_MAC_ADDR"),
    (VIRTIO_NET_F_GUEST_RSC4, "VIRTIO_NET_F_GUEST_RSC4"),
    (VIRTIO_NET_F_GUEST_RSC6, "VIRTIO_NET_F_GUEST_RSC6"),
    (VIRTIO_NET_F_DEVICE_STATS, "VIRTIO_NET_F_DEVICE_STATS"),
    (VIRTIO_NET_F_HASH_TUNNEL, "VIRTIO_NET_F_HASH_TUNNEL"),
    (VIRTIO_NET_F_VQ_NOTF_COAL, "VIRTIO_NET_F_VQ_NOTF_COAL"),
    (VIRTIO_NET_F_NOTF_COAL, "VIRTIO_NET_F_NOTF_COAL"),
    (VIRTIO_NET_F_GUEST_USO4, "VIRTIO_NET_F_GUEST_USO4"),
    (VIRTIO_NET_F_GUEST_USO6, "VIRTIO_NET_F_GUEST_USO6"),
    (VIRTIO_NET_F_HOST_USO, "VIRTIO_NET_F_HOST_USO"),
    (VIRTIO_NET_F_HASH_REPORT, "VIRTIO_NET_F_HASH_REPORT"),
    (VIRTIO_NET_F_GUEST_HDRLEN, "VIRTIO_NET_F_GUEST_HDRLEN"),
    (VIRTIO_NET_F_RSS, "VIRTIO_NET_F_RSS"),
    (VIRTIO_NET_F_RSC_EXT, "VIRTIO_NET_F_RSC_EXT"),
    (VIRTIO_NET_F_STANDBY, "VIRTIO_NET_F_STANDBY"),
    (VIRTIO_NET_F_SPEED_DUPLEX, "VIRTIO_NET_F_SPEED_DUPLEX"),
    (VIRTIO_NET_F_RSS_CONTEXT, "VIRTIO_NET_F_RSS_CONTEXT"),
    (
        VIRTIO_NET_F_GUEST_UDP_TUNNEL_GSO,
        "VIRTIO_NET_F_GUEST_UDP_TUNNEL_GSO",
    ),
    (
        VIRTIO_NET_F_GUEST_UDP_TUNNEL_GSO_CSUM,
        "VIRTIO_NET_F_GUEST_UDP_TUNNEL_GSO_CSUM",
    ),
    (
        VIRTIO_NET_F_HOST_UDP_TUNNEL_GSO,
        "VIRTIO_NET_F_HOST_UDP_TUNNEL_GSO",
    ),
    (
        VIRTIO_NET_F_HOST_UDP_TUNNEL_GSO_CSUM,
        "VIRTIO_NET_F_HOST_UDP_TUNNEL_GSO_CSUM",
    ),
    (VIRTIO_NET_F_OUT_NET_HEADER, "VIRTIO_NET_F_OUT_NET_HEADER"),
    (VIRTIO_NET_F_IPSEC, "VIRTIO_NET_F_IPSEC"),
];

/// Runs the network suite; `t` is the identifying connection.
pub(crate) fn run(ctx: &mut Ctx, mut t: VhostUserTransport) {
    let offered = offered_features(ctx, &mut t);
    feature_checks(ctx, offered, &[NET_FEATURE_RULES], FEATURE_NAMES);
    ctx.note(format!(
        "vhost-user: {} queue(s), protocol features {:#x} in use",
        t.num_queues(),
        t.protocol_features()
    ));
    let has_status = t.has_protocol(protocol::STATUS);
    let negotiated = driver::negotiate(&mut t, all_features(), NET_FEATURE_RULES);
    ctx.record(
        "status.features-ok",
        "§2.2.2",
        "the device keeps FEATURES_OK for the feature subset the driver accepts",
        Ok(features_ok_outcome(
            has_status,
            negotiated.as_ref().map(|_| ()).map_err(|e| e.to_string()),
        )),
    );
    config_checks(ctx, &mut t, offered);
    main_session(ctx, t, has_status, offered);
    let preferred = if offered.contains(VIRTIO_F_RING_PACKED) {
        "packed"
    } else {
        "split"
    };
    for (fmt, pref) in [
        ("split", RingPreference::Split),
        ("packed", RingPreference::Packed),
    ] {
        let ids = [
            (format!("net.{fmt}.unicast"), "§5.1.9.4", "with these virtqueues: unicast frames of 60, 1000 and MTU+14 bytes sent by one device arrive byte for byte at another; the header is the negotiated size, flags/gso_type 0, num_buffers 1 (§5.1.9.2, §5.1.9.4)".to_owned()),
            (format!("net.{fmt}.broadcast"), "§5.1.9.4", "with these virtqueues: a broadcast frame arrives at the other device".to_owned()),
            (format!("net.{fmt}.queue-pairs"), "§5.1.9.5.6", "with these virtqueues: after VQ_PAIRS_SET on both devices, a frame from every transmitq arrives exactly once".to_owned()),
        ];
        let rs = if fmt == "packed" && !offered.contains(VIRTIO_F_RING_PACKED) {
            let s = || Ok(Outcome::Skip("VIRTIO_F_RING_PACKED is not offered".into()));
            [s(), s(), s()]
        } else if ctx.opts.quick && fmt != preferred {
            let s = || Ok(Outcome::Skip("--quick: one ring format only".into()));
            [s(), s(), s()]
        } else {
            super::net_loop::ring_checks(ctx, fmt, pref)
        };
        for (r, (id, sec, desc)) in rs.into_iter().zip(ids) {
            ctx.record(id, sec, desc, r);
        }
    }
    let r = super::net_loop::checksum(ctx, offered);
    ctx.record(
        "net.csum",
        "§5.1.9.4.1",
        "a NEEDS_CSUM UDP frame (partial checksum) arrives with a correct checksum at a receiver without GUEST_CSUM (flags 0), and with a correct checksum or still NEEDS_CSUM with csum_start/csum_offset kept at one with GUEST_CSUM",
        r,
    );
    let r = super::net_loop::mergeable(ctx, offered);
    ctx.record(
        "net.mrg-rxbuf",
        "§5.1.9.4.1",
        "with MRG_RXBUF, a frame larger than one receive buffer spans several, all but the last full, num_buffers counting them (§5.1.9.3.2)",
        r,
    );
    let r = subset(ctx);
    ctx.record(
        "features.subset",
        "§2.2.2",
        "the device accepts the minimal feature subset (VERSION_1 only) and transmits with it",
        r,
    );
}

/// The configuration checks (§5.1.4), on the raw bytes read after
/// FEATURES_OK.
fn config_checks(ctx: &mut Ctx, t: &mut VhostUserTransport, offered: FeatureSet) {
    const IDS: &[(&str, &str, &str)] = &[
        ("net.config.mac", "§5.1.4", "with VIRTIO_NET_F_MAC, `mac` is a unicast address other than 00:00:00:00:00:00"),
        ("net.config.status", "§5.1.4", "with VIRTIO_NET_F_STATUS, `status` has VIRTIO_NET_S_LINK_UP and no undefined bit"),
        ("net.config.max-pairs", "§5.1.4.1", "with VIRTIO_NET_F_MQ, max_virtqueue_pairs is 1 to 0x8000 and the backend has the queues for them"),
        ("net.config.mtu", "§5.1.4.1", "with VIRTIO_NET_F_MTU, `mtu` is at least 68"),
        ("net.config.speed-duplex", "§5.1.4", "with VIRTIO_NET_F_SPEED_DUPLEX, `speed` is 0 to 0x7fffffff or 0xffffffff (unknown) and `duplex` 0x00, 0x01 or 0xff"),
    ];
    let mut b = [0u8; NET_CONFIG_SIZE];
    if !read_config_for(ctx, t, IDS, &mut b) {
        return;
    }
    let c = parse_config(&b);
    ctx.note(format!(
        "config: mac {}, status {:#x}, max_virtqueue_pairs {}, mtu {}, speed {}, duplex {:#x}",
        c.mac
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":"),
        c.status,
        c.max_pairs,
        c.mtu,
        c.speed,
        c.duplex
    ));
    for (o, &(id, sec, desc)) in
        config_outcomes(&c, offered, t.num_queues(), t.has_protocol(protocol::MQ))
            .into_iter()
            .zip(IDS)
    {
        ctx.record(id, sec, desc, Ok(o));
    }
}

/// The outcomes of the configuration checks, in their order.
fn config_outcomes(c: &Cfg, offered: FeatureSet, queues: u16, has_mq: bool) -> [Outcome; 5] {
    let has = |b| offered.contains(b);
    let not = |name: &str| Outcome::Skip(format!("{name} is not offered"));
    [
        if !has(VIRTIO_NET_F_MAC) {
            not("VIRTIO_NET_F_MAC")
        } else if c.mac[0] & 1 != 0 || c.mac == [0; 6] {
            Outcome::Fail(format!("mac {:02x?} is not a unicast address", c.mac))
        } else {
            Outcome::Pass
        },
        if !has(VIRTIO_NET_F_STATUS) {
            not("VIRTIO_NET_F_STATUS")
        } else if c.status & VIRTIO_NET_S_LINK_UP == 0 {
            Outcome::Fail(format!("status {:#x}: the link is down", c.status))
        } else if c.status & !(VIRTIO_NET_S_LINK_UP | VIRTIO_NET_S_ANNOUNCE) != 0 {
            Outcome::Fail(format!("status {:#x} has undefined bits", c.status))
        } else {
            Outcome::Pass
        },
        if !has(VIRTIO_NET_F_MQ) {
            not("VIRTIO_NET_F_MQ")
        } else if !(1..=0x8000).contains(&c.max_pairs) {
            Outcome::Fail(format!("max_virtqueue_pairs is {}", c.max_pairs))
        } else if has_mq && u32::from(queues) < 2 * u32::from(c.max_pairs) {
            Outcome::Fail(format!(
                "max_virtqueue_pairs {} needs {} queues, GET_QUEUE_NUM says {queues}",
                c.max_pairs,
                2 * u32::from(c.max_pairs)
            ))
        } else {
            Outcome::Pass
        },
        if !has(VIRTIO_NET_F_MTU) {
            not("VIRTIO_NET_F_MTU")
        } else if c.mtu < MTU_MIN {
            Outcome::Fail(format!("mtu is {}", c.mtu))
        } else {
            Outcome::Pass
        },
        if !has(VIRTIO_NET_F_SPEED_DUPLEX) {
            not("VIRTIO_NET_F_SPEED_DUPLEX")
        } else if c.speed > SPEED_MAX && c.speed != SPEED_UNKNOWN {
            Outcome::Fail(format!("speed is {:#x}", c.speed))
        } else if ![DUPLEX_HALF, DUPLEX_FULL, DUPLEX_UNKNOWN].contains(&c.duplex) {
            Outcome::Fail(format!("duplex is {:#04x}", c.duplex))
        } else {
            Outcome::Pass
        },
    ]
}

const MAIN_CHECKS: &[(&str, &str, &str)] = &[
    ("net.tx", "§5.1.9.2", "frames on transmitq1 (header and frame in one buffer, and in two) are used"),
    ("net.tx.malformed", "§5.1.9.2.2", "transmit chains with a cut header, no frame, a frame shorter than an Ethernet header, NEEDS_CSUM offsets outside the frame, or a GSO type not negotiated are used (dropped), and a valid frame is used afterwards"),
];

fn main_session(ctx: &mut Ctx, t: VhostUserTransport, has_status: bool, offered: FeatureSet) {
    let (id, sec, desc) = (
        "net.init",
        "§5.1.5",
        "driver initialization: negotiation, every receive/transmit queue pair (up to 4), the controlq, receive buffers posted, DRIVER_OK (§3.1.1)",
    );
    let mut n = match Net::open(t, all_features(), RingPreference::Auto, RX_BUF, 0) {
        Ok(n) => {
            ctx.record(id, sec, desc, Ok(Outcome::Pass));
            n
        }
        Err(e) => {
            ctx.record(id, sec, desc, Err(e));
            let why = "not run: initialization failed";
            ctx.record("status.driver-ok", "§3.1.1", "after initialization the device status reads ACKNOWLEDGE|DRIVER|FEATURES_OK|DRIVER_OK", Ok(Outcome::Skip(why.into())));
            skip_all(ctx, MAIN_CHECKS, why);
            skip_all(ctx, super::net_ctrl::CTRL_CHECKS, why);
            ctx.record(
                "reset.status",
                "§2.4.1",
                "after a reset the device status reads 0",
                Ok(Outcome::Skip(why.into())),
            );
            ctx.record(
                "reset.reinit",
                "§2.4",
                "after a reset the device initializes again and transmits",
                Ok(Outcome::Skip(why.into())),
            );
            return;
        }
    };
    check_driver_ok(ctx, &mut n.raw.t);
    ctx.note(format!(
        "main session: {} queue pair(s){}, {}-byte header, features negotiated: {}",
        n.pairs,
        if n.ctrl.is_some() {
            " and the controlq"
        } else {
            ""
        },
        n.hdr_len,
        super::common::feature_names(n.raw.features, FEATURE_NAMES)
    ));
    let w = ctx.opts.timeout;
    let r = transmit(&mut n, w);
    ctx.record(MAIN_CHECKS[0].0, MAIN_CHECKS[0].1, MAIN_CHECKS[0].2, r);
    let r = malformed(&mut n, offered, w);
    ctx.record(MAIN_CHECKS[1].0, MAIN_CHECKS[1].1, MAIN_CHECKS[1].2, r);
    super::net_ctrl::run(ctx, &mut n);
    let (t, reset) = n.finish(ctx, "main session");
    check_reset_status(ctx, has_status, &reset);
    let r = Net::open(t, all_features(), RingPreference::Auto, RX_BUF, 0)
        .context("initialization after the reset")
        .and_then(|mut n| {
            let mac = n.mac;
            let r = n
                .tx(0, &frame([0xff; 6], mac, 0x50, 60), w)
                .map(|()| Outcome::Pass);
            let _ = n.finish(ctx, "session after reset");
            r
        });
    ctx.record(
        "reset.reinit",
        "§2.4",
        "after a reset the device initializes again and transmits",
        r,
    );
}

fn transmit(n: &mut Net, w: Duration) -> anyhow::Result<Outcome> {
    let mac = n.mac;
    n.tx(0, &frame([0xff; 6], mac, 0x40, 60), w)?;
    let f = frame([0xff; 6], mac, 0x41, 1514);
    let h = n.header(0, 0, 0, 0);
    if !n.tx_raw(0, &[&h, &f], w)? {
        return Ok(Outcome::Fail(
            "a frame with header and frame in separate buffers was not used".into(),
        ));
    }
    Ok(Outcome::Pass)
}

fn malformed(n: &mut Net, offered: FeatureSet, w: Duration) -> anyhow::Result<Outcome> {
    let mac = n.mac;
    let f = frame([0xff; 6], mac, 0x42, 100);
    let plain = n.header(0, 0, 0, 0);
    let with = |h: Vec<u8>, f: &[u8]| {
        let mut b = h;
        b.extend_from_slice(f);
        b
    };
    let mut chains: Vec<(&str, Vec<u8>)> = vec![
        ("a 4-byte header", plain[..4].to_vec()),
        ("a header without a frame", plain.clone()),
        ("a 10-byte frame", with(plain.clone(), &f[..10])),
        (
            "gso_type TCPV4 without HOST_TSO4",
            with(n.header(0, VIRTIO_NET_HDR_GSO_TCPV4, 0, 0), &f),
        ),
    ];
    if offered.contains(VIRTIO_NET_F_CSUM) && n.has(VIRTIO_NET_F_CSUM) {
        chains.push((
            "NEEDS_CSUM with csum_start beyond the frame",
            with(n.header(VIRTIO_NET_HDR_F_NEEDS_CSUM, 0, 2000, 6), &f),
        ));
        chains.push((
            "NEEDS_CSUM with the checksum field beyond the frame",
            with(n.header(VIRTIO_NET_HDR_F_NEEDS_CSUM, 0, 90, 20), &f),
        ));
    }
    let mut v = Vec::new();
    for (what, b) in &chains {
        if !n.tx_raw(0, &[b], w)? {
            v.push(Outcome::Fail(format!("{what}: not used within {w:?}")));
        }
    }
    n.tx(0, &f, w)
        .context("a valid frame after the malformed ones")?;
    Ok(first_problem(v))
}

fn subset(ctx: &mut Ctx) -> anyhow::Result<Outcome> {
    let t = ctx.connect()?;
    let only = FeatureSet::from_bits(&[VIRTIO_F_VERSION_1]);
    let mut n = Net::open(t, only, RingPreference::Split, RX_BUF, 0).context("initialization")?;
    let r = (|| {
        if n.raw.features != only {
            anyhow::bail!("negotiated {:?} instead of VERSION_1 alone", n.raw.features);
        }
        let mac = n.mac;
        n.tx(0, &frame([0xff; 6], mac, 0x60, 60), ctx.opts.timeout)?;
        Ok(Outcome::Pass)
    })();
    let _ = n.finish(ctx, "minimal-features session");
    r
}
