//! The network device's control virtqueue checks (VIRTIO 1.4 §5.1.9.5):
//! each command class the negotiated features announce answered
//! VIRTIO_NET_OK for valid input — receive modes (§5.1.9.5.1), MAC table
//! and address (§5.1.9.5.2), VLAN filter (§5.1.9.5.3), queue pairs
//! (§5.1.9.5.6, then a frame on every transmitq) — and VIRTIO_NET_ERR
//! for invalid input: pairs out of range, unknown classes and commands,
//! truncated commands.

use std::time::Duration;

use ringwork_spec::net::ctrl::{
    VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_ADDR_SET, VIRTIO_NET_CTRL_MAC_TABLE_SET,
    VIRTIO_NET_CTRL_MQ, VIRTIO_NET_CTRL_MQ_VQ_PAIRS_MAX, VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET,
    VIRTIO_NET_CTRL_RX, VIRTIO_NET_CTRL_RX_ALLMULTI, VIRTIO_NET_CTRL_RX_ALLUNI,
    VIRTIO_NET_CTRL_RX_NOBCAST, VIRTIO_NET_CTRL_RX_NOMULTI, VIRTIO_NET_CTRL_RX_NOUNI,
    VIRTIO_NET_CTRL_RX_PROMISC, VIRTIO_NET_CTRL_VLAN, VIRTIO_NET_CTRL_VLAN_ADD,
    VIRTIO_NET_CTRL_VLAN_DEL, VIRTIO_NET_ERR, VIRTIO_NET_OK,
};
use ringwork_spec::net::{
    VIRTIO_NET_F_CTRL_MAC_ADDR, VIRTIO_NET_F_CTRL_RX, VIRTIO_NET_F_CTRL_RX_EXTRA,
    VIRTIO_NET_F_CTRL_VLAN, VIRTIO_NET_F_CTRL_VQ, VIRTIO_NET_F_MQ,
};
use ringwork_vhost_user::msg::protocol;

use super::common::{first_problem, Ctx};
use super::net_io::{frame, Net};
use super::report::Outcome;

/// The control queue checks, in order.
pub(crate) const CTRL_CHECKS: &[(&str, &str, &str)] = &[
    ("net.ctrl.rx-mode", "§5.1.9.5.1", "PROMISC and ALLMULTI off and on (CTRL_RX), ALLUNI, NOMULTI, NOUNI, NOBCAST on and off (CTRL_RX_EXTRA): each answered VIRTIO_NET_OK"),
    ("net.ctrl.mac-table", "§5.1.9.5.2", "MAC_TABLE_SET with a unicast and a multicast entry, then with empty tables: VIRTIO_NET_OK; a table whose entry count exceeds its data: VIRTIO_NET_ERR"),
    ("net.ctrl.mac-addr", "§5.1.9.5.2", "MAC_ADDR_SET answered VIRTIO_NET_OK with `mac` in the configuration space already changed; set back afterwards"),
    ("net.ctrl.vlan", "§5.1.9.5.3", "VLAN_ADD and VLAN_DEL of VLAN 100 answered VIRTIO_NET_OK"),
    ("net.ctrl.mq", "§5.1.9.5.6", "VQ_PAIRS_SET within 1..=max_virtqueue_pairs answered VIRTIO_NET_OK and every enabled transmitq takes a frame; 0 and max_virtqueue_pairs + 1 answered VIRTIO_NET_ERR"),
    ("net.ctrl.unknown", "§5.1.9.5", "an unknown class and an unknown command answered VIRTIO_NET_ERR"),
    ("net.ctrl.malformed", "§5.1.9.5", "truncated commands (no data, a 1-byte header) and extra data answered VIRTIO_NET_ERR (or left without an ack), a command without an ack byte is still used; never VIRTIO_NET_OK"),
];

fn expect(
    n: &mut Net,
    what: &str,
    class: u8,
    cmd: u8,
    data: &[u8],
    want: u8,
    within: Duration,
) -> anyhow::Result<Outcome> {
    Ok(match n.ctrl(class, cmd, data, within)? {
        None => Outcome::Fail(format!("{what}: not used within {within:?}")),
        Some(a) if a == want => Outcome::Pass,
        Some(a) => Outcome::Fail(format!(
            "{what}: ack {a:#04x}, expected {}",
            if want == VIRTIO_NET_OK {
                "VIRTIO_NET_OK"
            } else {
                "VIRTIO_NET_ERR"
            }
        )),
    })
}

/// Runs the control checks on an initialized session.
pub(crate) fn run(ctx: &mut Ctx, n: &mut Net) {
    if n.ctrl.is_none() {
        let why = if n.has(VIRTIO_NET_F_CTRL_VQ) {
            "no controlq"
        } else {
            "VIRTIO_NET_F_CTRL_VQ is not offered"
        };
        for &(id, sec, desc) in CTRL_CHECKS {
            ctx.record(id, sec, desc, Ok(Outcome::Skip(why.into())));
        }
        return;
    }
    let w = ctx.opts.timeout;
    let results = [
        rx_mode(n, w),
        mac_table(n, w),
        mac_addr(n, w),
        vlan(n, w),
        mq(n, w),
        unknown(n, w),
        malformed(n, w),
    ];
    for (r, &(id, sec, desc)) in results.into_iter().zip(CTRL_CHECKS) {
        ctx.record(id, sec, desc, r);
    }
}

fn rx_mode(n: &mut Net, w: Duration) -> anyhow::Result<Outcome> {
    if !n.has(VIRTIO_NET_F_CTRL_RX) {
        return Ok(Outcome::Skip("VIRTIO_NET_F_CTRL_RX is not offered".into()));
    }
    let mut v = Vec::new();
    for (name, cmd) in [
        ("PROMISC", VIRTIO_NET_CTRL_RX_PROMISC),
        ("ALLMULTI", VIRTIO_NET_CTRL_RX_ALLMULTI),
    ] {
        for on in [0u8, 1] {
            let what = format!("{name} {on}");
            v.push(expect(
                n,
                &what,
                VIRTIO_NET_CTRL_RX,
                cmd,
                &[on],
                VIRTIO_NET_OK,
                w,
            )?);
        }
    }
    if n.has(VIRTIO_NET_F_CTRL_RX_EXTRA) {
        for (name, cmd) in [
            ("ALLUNI", VIRTIO_NET_CTRL_RX_ALLUNI),
            ("NOMULTI", VIRTIO_NET_CTRL_RX_NOMULTI),
            ("NOUNI", VIRTIO_NET_CTRL_RX_NOUNI),
            ("NOBCAST", VIRTIO_NET_CTRL_RX_NOBCAST),
        ] {
            for on in [1u8, 0] {
                let what = format!("{name} {on}");
                v.push(expect(
                    n,
                    &what,
                    VIRTIO_NET_CTRL_RX,
                    cmd,
                    &[on],
                    VIRTIO_NET_OK,
                    w,
                )?);
            }
        }
    }
    Ok(first_problem(v))
}

/// A MAC table: entry count (le32) and the entries.
fn table(entries: &[[u8; 6]]) -> Vec<u8> {
    let mut t = (entries.len() as u32).to_le_bytes().to_vec();
    for e in entries {
        t.extend_from_slice(e);
    }
    t
}

fn mac_table(n: &mut Net, w: Duration) -> anyhow::Result<Outcome> {
    if !n.has(VIRTIO_NET_F_CTRL_RX) {
        return Ok(Outcome::Skip("VIRTIO_NET_F_CTRL_RX is not offered".into()));
    }
    let uni = [0x02, 0x72, 0x77, 0, 0, 0x42];
    let multi = [0x01, 0x00, 0x5e, 0x00, 0x00, 0x01];
    let mut both = table(&[uni]);
    both.extend(table(&[multi]));
    let mut empty = table(&[]);
    empty.extend(table(&[]));
    let mut short = 3u32.to_le_bytes().to_vec();
    short.extend_from_slice(&uni);
    short.extend(table(&[]));
    let set = VIRTIO_NET_CTRL_MAC_TABLE_SET;
    let c = VIRTIO_NET_CTRL_MAC;
    Ok(first_problem([
        expect(
            n,
            "a table of one unicast and one multicast address",
            c,
            set,
            &both,
            VIRTIO_NET_OK,
            w,
        )?,
        expect(n, "empty tables", c, set, &empty, VIRTIO_NET_OK, w)?,
        expect(
            n,
            "a unicast table claiming 3 entries with 1",
            c,
            set,
            &short,
            VIRTIO_NET_ERR,
            w,
        )?,
    ]))
}

fn mac_addr(n: &mut Net, w: Duration) -> anyhow::Result<Outcome> {
    if !n.has(VIRTIO_NET_F_CTRL_MAC_ADDR) {
        return Ok(Outcome::Skip(
            "VIRTIO_NET_F_CTRL_MAC_ADDR is not offered".into(),
        ));
    }
    if !n.raw.t.has_protocol(protocol::CONFIG) {
        return Ok(Outcome::Skip(
            "backend lacks VHOST_USER_PROTOCOL_F_CONFIG: `mac` is not readable".into(),
        ));
    }
    let old = n.cfg.mac;
    let new = [0x02, 0x72, 0x77, 0x63, 0x6b, old[5] ^ 0x5a];
    let set = |n: &mut Net, mac: [u8; 6]| {
        expect(
            n,
            &format!("MAC_ADDR_SET {mac:02x?}"),
            VIRTIO_NET_CTRL_MAC,
            VIRTIO_NET_CTRL_MAC_ADDR_SET,
            &mac,
            VIRTIO_NET_OK,
            w,
        )
    };
    let first = set(n, new)?;
    let seen = n
        .raw
        .t
        .frontend()
        .get_config(0, 6)
        .map_err(|e| anyhow::anyhow!("GET_CONFIG of `mac`: {e}"))?;
    let back = set(n, old)?;
    Ok(first_problem([
        first,
        if seen.get(..6) == Some(&new[..]) {
            Outcome::Pass
        } else {
            Outcome::Fail(format!(
                "after MAC_ADDR_SET {new:02x?} `mac` reads {seen:02x?}"
            ))
        },
        back,
    ]))
}

fn vlan(n: &mut Net, w: Duration) -> anyhow::Result<Outcome> {
    if !n.has(VIRTIO_NET_F_CTRL_VLAN) {
        return Ok(Outcome::Skip(
            "VIRTIO_NET_F_CTRL_VLAN is not offered".into(),
        ));
    }
    let id = 100u16.to_le_bytes();
    Ok(first_problem([
        expect(
            n,
            "VLAN_ADD 100",
            VIRTIO_NET_CTRL_VLAN,
            VIRTIO_NET_CTRL_VLAN_ADD,
            &id,
            VIRTIO_NET_OK,
            w,
        )?,
        expect(
            n,
            "VLAN_DEL 100",
            VIRTIO_NET_CTRL_VLAN,
            VIRTIO_NET_CTRL_VLAN_DEL,
            &id,
            VIRTIO_NET_OK,
            w,
        )?,
    ]))
}

fn mq(n: &mut Net, w: Duration) -> anyhow::Result<Outcome> {
    if !n.has(VIRTIO_NET_F_MQ) {
        return Ok(Outcome::Skip("VIRTIO_NET_F_MQ is not offered".into()));
    }
    let max = n.cfg.max_pairs;
    let c = VIRTIO_NET_CTRL_MQ;
    let s = VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET;
    let above = if max < VIRTIO_NET_CTRL_MQ_VQ_PAIRS_MAX {
        max + 1
    } else {
        VIRTIO_NET_CTRL_MQ_VQ_PAIRS_MAX + 1
    };
    let mut v = vec![
        expect(
            n,
            "VQ_PAIRS_SET 0",
            c,
            s,
            &0u16.to_le_bytes(),
            VIRTIO_NET_ERR,
            w,
        )?,
        expect(
            n,
            &format!("VQ_PAIRS_SET {above}"),
            c,
            s,
            &above.to_le_bytes(),
            VIRTIO_NET_ERR,
            w,
        )?,
        expect(
            n,
            "VQ_PAIRS_SET 1",
            c,
            s,
            &1u16.to_le_bytes(),
            VIRTIO_NET_OK,
            w,
        )?,
    ];
    let pairs = n.pairs;
    v.push(expect(
        n,
        &format!("VQ_PAIRS_SET {pairs}"),
        c,
        s,
        &pairs.to_le_bytes(),
        VIRTIO_NET_OK,
        w,
    )?);
    let (mac, dst) = (n.mac, [0xff; 6]);
    for p in 0..pairs {
        n.tx(p, &frame(dst, mac, 0x3000 + u64::from(p), 64), w)?;
    }
    Ok(first_problem(v))
}

fn unknown(n: &mut Net, w: Duration) -> anyhow::Result<Outcome> {
    Ok(first_problem([
        expect(n, "class 0x7f", 0x7f, 0, &[0], VIRTIO_NET_ERR, w)?,
        expect(
            n,
            "class RX, command 0x7f",
            VIRTIO_NET_CTRL_RX,
            0x7f,
            &[1],
            VIRTIO_NET_ERR,
            w,
        )?,
    ]))
}

fn malformed(n: &mut Net, w: Duration) -> anyhow::Result<Outcome> {
    let rx = VIRTIO_NET_CTRL_RX;
    let promisc = VIRTIO_NET_CTRL_RX_PROMISC;
    let mut v = Vec::new();
    for (what, parts, ack_len) in [
        ("PROMISC without its data byte", vec![vec![rx, promisc]], 1),
        (
            "PROMISC with 2 data bytes",
            vec![vec![rx, promisc], vec![1, 1]],
            1,
        ),
        ("a 1-byte command header", vec![vec![rx]], 1),
        (
            "a command without an ack byte",
            vec![vec![rx, promisc], vec![1]],
            0,
        ),
    ] {
        v.push(match n.ctrl_raw(&parts, ack_len, w)? {
            None => Outcome::Fail(format!("{what}: not used within {w:?}")),
            Some(VIRTIO_NET_OK) => Outcome::Fail(format!("{what}: answered VIRTIO_NET_OK")),
            Some(_) => Outcome::Pass,
        });
    }
    // The queue still works.
    v.push(if n.has(VIRTIO_NET_F_CTRL_RX) {
        expect(
            n,
            "PROMISC 1 afterwards",
            rx,
            promisc,
            &[1],
            VIRTIO_NET_OK,
            w,
        )?
    } else {
        expect(n, "class 0x7f afterwards", 0x7f, 0, &[0], VIRTIO_NET_ERR, w)?
    });
    Ok(first_problem(v))
}
