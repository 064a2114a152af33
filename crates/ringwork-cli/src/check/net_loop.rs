//! Data checks between two network devices of one backend (VIRTIO 1.4
//! §5.1.9.2, §5.1.9.4): a backend that serves a second connection at the
//! same time as a port on the same segment (`ringwork serve net
//! --switch`) lets one session's frames be checked byte for byte at the
//! other: unicast and broadcast, the header the receiver gets (its size
//! for the negotiated features, `flags`, `gso_type`, `num_buffers`), a
//! NEEDS_CSUM frame arriving with a correct checksum (or still marked
//! NEEDS_CSUM for a receiver with GUEST_CSUM), frames spread over several
//! receive buffers with MRG_RXBUF, and every queue pair. When the second
//! connection is not accepted, the checks are skipped.

use std::time::Duration;

use ringwork_driver::RingPreference;
use ringwork_spec::features::FeatureSet;
use ringwork_spec::net::{
    VIRTIO_NET_F_CSUM, VIRTIO_NET_F_CTRL_VQ, VIRTIO_NET_F_GUEST_CSUM, VIRTIO_NET_F_MQ,
    VIRTIO_NET_F_MRG_RXBUF, VIRTIO_NET_F_MTU, VIRTIO_NET_HDR_F_DATA_VALID,
    VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_NONE,
};

use super::common::{compare, first_problem, Ctx};
use super::net_io::{
    all_features, connect, frame, udp_checksum_ok, udp_partial, Net, Rx, RX_BUF, UDP_CSUM_AT,
};
use super::report::Outcome;

/// How long a frame may take to cross the backend.
const CROSS: Duration = Duration::from_secs(2);
/// How long to wait for frames that should not come.
const QUIET: Duration = Duration::from_millis(300);

/// Two sessions on the same segment, or why there are none.
struct Pair {
    a: Net,
    b: Net,
}

/// Opens session A, then B on a second connection (a short handshake
/// timeout: a backend that serves one connection at a time never answers
/// it). `Err(skip reason)` when B is refused; other failures are errors.
fn open_pair(
    ctx: &Ctx,
    ring: RingPreference,
    b_supports: FeatureSet,
    b_rx_buf: usize,
) -> anyhow::Result<Result<Pair, String>> {
    let ta = connect(ctx, false)?;
    let a = Net::open(ta, all_features(), ring, RX_BUF, 1)?;
    let tb = match connect(ctx, true) {
        Ok(t) => t,
        Err(e) => {
            return Ok(Err(format!(
                "the backend did not accept a second concurrent connection ({e:#})"
            )))
        }
    };
    let b = Net::open(tb, b_supports, ring, b_rx_buf, 2)?;
    Ok(Ok(Pair { a, b }))
}

impl Pair {
    /// Ends both sessions.
    fn finish(self, ctx: &mut Ctx, when: &str) {
        let _ = self.b.finish(ctx, &format!("{when} (second connection)"));
        let _ = self.a.finish(ctx, when);
    }

    /// B announces itself (so a learning switch knows its port); A takes
    /// the broadcast. Drains both.
    fn introduce(&mut self) -> anyhow::Result<()> {
        let mac = self.b.mac;
        self.b.tx(0, &frame([0xff; 6], mac, 0x10, 60), CROSS)?;
        self.a.rx_all(QUIET)?;
        self.b.rx_all(Duration::from_millis(50))?;
        Ok(())
    }
}

/// The receiver's MTU: `mtu` with VIRTIO_NET_F_MTU, 1500 without.
fn mtu(n: &Net) -> usize {
    if n.has(VIRTIO_NET_F_MTU) {
        usize::from(n.cfg.mtu).max(68)
    } else {
        1500
    }
}

/// What is wrong with the header of a frame sent without offloads, if
/// anything.
fn header_problem(b: &Net, r: &Rx, mrg_ok: bool) -> Option<String> {
    if r.gso_type() != VIRTIO_NET_HDR_GSO_NONE {
        return Some(format!(
            "gso_type {:#04x} for a frame sent without GSO",
            r.gso_type()
        ));
    }
    if r.flags() & !(VIRTIO_NET_HDR_F_DATA_VALID) != 0 {
        return Some(format!(
            "flags {:#04x} for a frame sent without offload",
            r.flags()
        ));
    }
    if r.flags() & VIRTIO_NET_HDR_F_DATA_VALID != 0 && !b.has(VIRTIO_NET_F_GUEST_CSUM) {
        return Some("DATA_VALID set without VIRTIO_NET_F_GUEST_CSUM".into());
    }
    if b.has(VIRTIO_NET_F_MRG_RXBUF) && usize::from(r.num_buffers()) != r.lens.len() {
        return Some(format!(
            "num_buffers {} for {} buffers",
            r.num_buffers(),
            r.lens.len()
        ));
    }
    if !mrg_ok && r.lens.len() != 1 {
        return Some(format!("{} buffers for one frame", r.lens.len()));
    }
    let used: usize = r.lens.iter().map(|&l| l as usize).sum();
    if used != b.hdr_len + r.frame.len() {
        return Some(format!(
            "used length {used} is not the {}-byte header plus the {}-byte frame",
            b.hdr_len,
            r.frame.len()
        ));
    }
    None
}

/// Receives on `b` until a frame equal to `want` arrives (other frames
/// are dropped); checks its header.
fn expect_frame(b: &mut Net, want: &[u8], what: &str, mrg_ok: bool) -> anyhow::Result<Outcome> {
    loop {
        let Some(r) = b.rx(CROSS)? else {
            return Ok(Outcome::Fail(format!(
                "{what}: not received within {CROSS:?}"
            )));
        };
        if r.frame.len() < 14 || r.frame[..14] != want[..14] {
            continue;
        }
        if let Some(p) = header_problem(b, &r, mrg_ok) {
            return Ok(Outcome::Fail(format!("{what}: {p}")));
        }
        return Ok(compare(what, &r.frame, want));
    }
}

/// The loopback checks of one ring format: unicast (with the header
/// checks), broadcast, every queue pair.
pub(crate) fn ring_checks(
    ctx: &mut Ctx,
    fmt: &str,
    pref: RingPreference,
) -> [anyhow::Result<Outcome>; 3] {
    let pair = match open_pair(ctx, pref, all_features(), RX_BUF) {
        Err(e) => {
            return [
                Err(e),
                Ok(Outcome::Skip("not run: sessions failed".into())),
                Ok(Outcome::Skip("not run: sessions failed".into())),
            ]
        }
        Ok(Err(why)) => {
            return [
                Ok(Outcome::Skip(why.clone())),
                Ok(Outcome::Skip(why.clone())),
                Ok(Outcome::Skip(why)),
            ]
        }
        Ok(Ok(p)) => p,
    };
    let mut p = pair;
    let seed = ctx.seed;
    let r = (|| -> anyhow::Result<[Outcome; 3]> {
        p.introduce()?;
        let (am, bm) = (p.a.mac, p.b.mac);
        let mut uni = Vec::new();
        let max = mtu(&p.b).min(1500) + 14;
        for (i, len) in [60usize, 1000, max].into_iter().enumerate() {
            let f = frame(bm, am, seed ^ (0x100 + i as u64), len);
            p.a.tx(0, &f, CROSS)?;
            let o = expect_frame(&mut p.b, &f, &format!("{len}-byte unicast frame"), true)?;
            let failed = o != Outcome::Pass;
            uni.push(o);
            if failed {
                break;
            }
        }
        let f = frame([0xff; 6], am, seed ^ 0x200, 200);
        p.a.tx(0, &f, CROSS)?;
        let bcast = expect_frame(&mut p.b, &f, "broadcast frame", true)?;
        let mq = pairs(&mut p, seed)?;
        Ok([first_problem(uni), bcast, mq])
    })();
    p.finish(ctx, &format!("{fmt} loopback sessions"));
    match r {
        Ok([a, b, c]) => [Ok(a), Ok(b), Ok(c)],
        Err(e) => {
            let s = format!("{e:#}");
            [Err(e), Ok(Outcome::Fail(s.clone())), Ok(Outcome::Fail(s))]
        }
    }
}

/// Every transmitq of A delivers to B (any receive queue), once each.
fn pairs(p: &mut Pair, seed: u64) -> anyhow::Result<Outcome> {
    if !p.a.has(VIRTIO_NET_F_MQ) {
        return Ok(Outcome::Skip("VIRTIO_NET_F_MQ is not offered".into()));
    }
    if !p.a.has(VIRTIO_NET_F_CTRL_VQ) {
        return Ok(Outcome::Skip(
            "MQ without CTRL_VQ: the queue pairs cannot be enabled".into(),
        ));
    }
    if p.a.pairs < 2 {
        return Ok(Outcome::Skip("max_virtqueue_pairs is 1".into()));
    }
    for s in [&mut p.a, &mut p.b] {
        if s.enable_pairs(CROSS)? != Some(0) {
            anyhow::bail!("VQ_PAIRS_SET {} was not answered VIRTIO_NET_OK", s.pairs);
        }
    }
    let (am, bm) = (p.a.mac, p.b.mac);
    let sent: Vec<Vec<u8>> = (0..p.a.pairs)
        .map(|q| frame(bm, am, seed ^ (0x300 + u64::from(q)), 128))
        .collect();
    for (q, f) in sent.iter().enumerate() {
        p.a.tx(q as u16, f, CROSS)?;
    }
    let mut seen = vec![0u32; sent.len()];
    let mut queues = Vec::new();
    while let Some(r) = p.b.rx(CROSS.min(Duration::from_millis(500)))? {
        if let Some(i) = sent.iter().position(|f| *f == r.frame) {
            seen[i] += 1;
            queues.push(r.pair);
        }
        if seen.iter().all(|&n| n >= 1) {
            break;
        }
    }
    p.b.rx_all(QUIET)?.iter().for_each(|r| {
        if let Some(i) = sent.iter().position(|f| *f == r.frame) {
            seen[i] += 1;
        }
    });
    Ok(match seen.iter().position(|&n| n != 1) {
        None => Outcome::Pass,
        Some(i) => Outcome::Fail(format!(
            "the frame sent on transmitq{} arrived {} times",
            i + 1,
            seen[i]
        )),
    })
}

/// `net.csum`: a NEEDS_CSUM UDP frame from A to a receiver with
/// GUEST_CSUM and to one without.
pub(crate) fn checksum(ctx: &mut Ctx, offered: FeatureSet) -> anyhow::Result<Outcome> {
    if !offered.contains(VIRTIO_NET_F_CSUM) {
        return Ok(Outcome::Skip("VIRTIO_NET_F_CSUM is not offered".into()));
    }
    let mut v = Vec::new();
    let mut notes = Vec::new();
    let variants: &[bool] = if offered.contains(VIRTIO_NET_F_GUEST_CSUM) {
        &[true, false]
    } else {
        &[false]
    };
    for &guest_csum in variants {
        let b_supports = if guest_csum {
            all_features()
        } else {
            all_features().without(VIRTIO_NET_F_GUEST_CSUM)
        };
        let mut p = match open_pair(ctx, RingPreference::Auto, b_supports, RX_BUF)? {
            Ok(p) => p,
            Err(why) => return Ok(Outcome::Skip(why)),
        };
        let r = (|| -> anyhow::Result<Outcome> {
            p.introduce()?;
            let (am, bm) = (p.a.mac, p.b.mac);
            let f = udp_partial(bm, am, ctx.seed ^ 0x400, 301);
            let mut b = p.a.header(VIRTIO_NET_HDR_F_NEEDS_CSUM, 0, 34, 6);
            b.extend_from_slice(&f);
            if !p.a.tx_raw(0, &[&b], CROSS)? {
                anyhow::bail!("the NEEDS_CSUM frame was not used");
            }
            let what = if guest_csum {
                "receiver with GUEST_CSUM"
            } else {
                "receiver without GUEST_CSUM"
            };
            loop {
                let Some(r) = p.b.rx(CROSS)? else {
                    return Ok(Outcome::Fail(format!("{what}: the frame did not arrive")));
                };
                if r.frame.len() != f.len() || r.frame[..14] != f[..14] {
                    continue;
                }
                let kept = r.flags() & VIRTIO_NET_HDR_F_NEEDS_CSUM != 0;
                notes.push(format!(
                    "net.csum: {what}: {}",
                    if kept {
                        "NEEDS_CSUM kept, the pseudo-header sum in the checksum field"
                    } else {
                        "checksum completed"
                    }
                ));
                return Ok(csum_outcome(what, &r, &f, guest_csum));
            }
        })();
        p.finish(ctx, "checksum sessions");
        ctx.report.notes.append(&mut notes);
        v.push(r?);
    }
    Ok(first_problem(v))
}

fn csum_outcome(what: &str, r: &Rx, sent: &[u8], guest_csum: bool) -> Outcome {
    if r.flags() & VIRTIO_NET_HDR_F_NEEDS_CSUM != 0 {
        if !guest_csum {
            return Outcome::Fail(format!("{what}: NEEDS_CSUM set without GUEST_CSUM"));
        }
        if (r.csum_start(), r.csum_offset()) != (34, 6) {
            return Outcome::Fail(format!(
                "{what}: NEEDS_CSUM with csum_start {} / csum_offset {}, sent 34 / 6",
                r.csum_start(),
                r.csum_offset()
            ));
        }
        return compare(what, &r.frame, sent);
    }
    if r.flags() & VIRTIO_NET_HDR_F_DATA_VALID != 0 && !guest_csum {
        return Outcome::Fail(format!("{what}: DATA_VALID set without GUEST_CSUM"));
    }
    if !udp_checksum_ok(&r.frame) {
        return Outcome::Fail(format!(
            "{what}: the UDP checksum does not verify (field {:02x?})",
            &r.frame[UDP_CSUM_AT..UDP_CSUM_AT + 2]
        ));
    }
    let mut a = r.frame.clone();
    let mut b = sent.to_vec();
    a[UDP_CSUM_AT..UDP_CSUM_AT + 2].fill(0);
    b[UDP_CSUM_AT..UDP_CSUM_AT + 2].fill(0);
    compare(&format!("{what}: bytes other than the checksum"), &a, &b)
}

/// `net.mrg-rxbuf`: a 1400-byte frame to a receiver with MRG_RXBUF and
/// 256-byte buffers arrives over several buffers, all but the last full,
/// `num_buffers` counting them.
pub(crate) fn mergeable(ctx: &mut Ctx, offered: FeatureSet) -> anyhow::Result<Outcome> {
    if !offered.contains(VIRTIO_NET_F_MRG_RXBUF) {
        return Ok(Outcome::Skip(
            "VIRTIO_NET_F_MRG_RXBUF is not offered".into(),
        ));
    }
    const SMALL: usize = 256;
    let mut p = match open_pair(ctx, RingPreference::Auto, all_features(), SMALL)? {
        Ok(p) => p,
        Err(why) => return Ok(Outcome::Skip(why)),
    };
    let r = (|| -> anyhow::Result<Outcome> {
        p.introduce()?;
        let (am, bm) = (p.a.mac, p.b.mac);
        let len = mtu(&p.b).min(1400) + 14;
        let f = frame(bm, am, ctx.seed ^ 0x500, len);
        p.a.tx(0, &f, CROSS)?;
        loop {
            let Some(r) = p.b.rx(CROSS)? else {
                return Ok(Outcome::Fail("the frame did not arrive".into()));
            };
            if r.frame.len() < 14 || r.frame[..14] != f[..14] {
                continue;
            }
            if let Some(e) = header_problem(&p.b, &r, true) {
                return Ok(Outcome::Fail(e));
            }
            let need = (p.b.hdr_len + len).div_ceil(SMALL);
            let full = r.lens[..r.lens.len() - 1]
                .iter()
                .all(|&l| l as usize == SMALL);
            return Ok(first_problem([
                if r.lens.len() == need && full {
                    Outcome::Pass
                } else {
                    Outcome::Fail(format!(
                        "a {len}-byte frame in {SMALL}-byte buffers used {:?}, expected {need} buffers, all but the last full",
                        r.lens
                    ))
                },
                compare("the frame gathered from the buffers", &r.frame, &f),
            ]));
        }
    })();
    p.finish(ctx, "mergeable buffer sessions");
    r
}
