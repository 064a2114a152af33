//! The entropy device suite (VIRTIO 1.4 §5.4): every used buffer holds at
//! least one byte and no more than asked for (§5.4.6.2), many buffers in
//! flight, output that is not constant, in split and packed rings; plus
//! the common feature, status, reset and subset checks.

use std::sync::Arc;

use anyhow::Context as _;
use ringwork_driver::rng::{Entropy, RngDriver, RNG_BUFFER_SIZE, RNG_MAX_BUFFERS};
use ringwork_driver::RingPreference;
use ringwork_spec::features::{
    FeatureSet, VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC, VIRTIO_F_IN_ORDER,
    VIRTIO_F_RING_PACKED, VIRTIO_F_VERSION_1,
};
use ringwork_transport::driver::{self, Transport};
use ringwork_vhost_user::msg::protocol;
use ringwork_vhost_user::{SharedMemory, VhostUserTransport};

use super::common::{
    all_but_version_1, check_driver_ok, check_reset_status, feature_checks, features_ok_outcome,
    first_problem, offered_features, wait_device, Ctx, Masked, MAX_WAKEUPS,
};
use super::report::Outcome;

type Rng<T> = RngDriver<T, Arc<SharedMemory>>;

const QUEUE_SIZE: u16 = 64;

/// Runs the entropy suite; `t` is the identifying connection.
pub(crate) fn run(ctx: &mut Ctx, mut t: VhostUserTransport) {
    let offered = offered_features(ctx, &mut t);
    feature_checks(ctx, offered, &[], &[]);
    let has_status = t.has_protocol(protocol::STATUS);
    let supports = FeatureSet::from_bits(&[
        VIRTIO_F_VERSION_1,
        VIRTIO_F_EVENT_IDX,
        VIRTIO_F_INDIRECT_DESC,
        VIRTIO_F_IN_ORDER,
        VIRTIO_F_RING_PACKED,
    ]);
    let negotiated = driver::negotiate(&mut t, supports, &[]);
    ctx.record(
        "status.features-ok",
        "§2.2.2",
        "the device keeps FEATURES_OK for the feature subset the driver accepts",
        Ok(features_ok_outcome(
            has_status,
            negotiated.as_ref().map(|_| ()).map_err(|e| e.to_string()),
        )),
    );
    main_session(ctx, t, has_status);
    for (fmt, pref, sec) in [
        ("split", RingPreference::Split, "§2.7"),
        ("packed", RingPreference::Packed, "§2.8"),
    ] {
        let preferred = if offered.contains(VIRTIO_F_RING_PACKED) {
            "packed"
        } else {
            "split"
        };
        let r = if fmt == "packed" && !offered.contains(VIRTIO_F_RING_PACKED) {
            Ok(Outcome::Skip("VIRTIO_F_RING_PACKED is not offered".into()))
        } else if ctx.opts.quick && fmt != preferred {
            Ok(Outcome::Skip("--quick: one ring format only".into()))
        } else {
            ring_session(ctx, pref, fmt)
        };
        ctx.record(
            format!("rng.{fmt}.io"),
            sec,
            "with these virtqueues: single requests and many in flight return 1..=asked bytes",
            r,
        );
    }
    let r = subset(ctx, offered);
    ctx.record(
        "features.subset",
        "§2.2.2",
        "the device accepts the minimal feature subset (VERSION_1 only) and serves requests with it",
        r,
    );
}

fn main_session(ctx: &mut Ctx, t: VhostUserTransport, has_status: bool) {
    const CHECKS: &[(&str, &str, &str)] = &[
        (
            "rng.read",
            "§5.4.6.2",
            "every used buffer holds at least one byte, at most the buffer's length",
        ),
        (
            "rng.many-buffers",
            "§5.4.6",
            "16 buffers of different sizes in flight at once all come back",
        ),
        (
            "rng.entropy",
            "§5.4",
            "the output is not constant: 4 KiB has many distinct byte values, two reads differ",
        ),
        (
            "reset.status",
            "§2.4.1",
            "after a reset the device status reads 0",
        ),
        (
            "reset.reinit",
            "§2.4",
            "after a reset the device initializes again and serves requests",
        ),
    ];
    let mem = t.memory().clone();
    let (id, sec, desc) = (
        "rng.init",
        "§5.4.5",
        "driver initialization: negotiation, requestq, DRIVER_OK (§3.1.1)",
    );
    let mut d = match Rng::new(t, mem, QUEUE_SIZE, RingPreference::Auto) {
        Ok(d) => {
            ctx.record(id, sec, desc, Ok(Outcome::Pass));
            d
        }
        Err(e) => {
            ctx.record(id, sec, desc, Err(e.into()));
            for &(id, sec, desc) in CHECKS {
                ctx.record(
                    id,
                    sec,
                    desc,
                    Ok(Outcome::Skip("not run: initialization failed".into())),
                );
            }
            return;
        }
    };
    check_driver_ok(ctx, d.transport());
    ctx.record(
        CHECKS[0].0,
        CHECKS[0].1,
        CHECKS[0].2,
        single_reads(&mut d, 16),
    );
    ctx.record(CHECKS[1].0, CHECKS[1].1, CHECKS[1].2, many(&mut d));
    ctx.record(CHECKS[2].0, CHECKS[2].1, CHECKS[2].2, entropy(&mut d));
    ctx.observe(d.transport(), "main session");
    let det = d.reset();
    check_reset_status(ctx, has_status, &det.reset);
    let mem = det.transport.memory().clone();
    let r = Rng::new(det.transport, mem, QUEUE_SIZE, RingPreference::Auto)
        .context("initialization after the reset")
        .and_then(|mut d| {
            let r = single_reads(&mut d, 4);
            ctx.observe(d.transport(), "session after reset");
            let _ = d.reset();
            r
        });
    ctx.record(CHECKS[4].0, CHECKS[4].1, CHECKS[4].2, r);
}

/// Waits for `n` completed requests.
fn collect<T: Transport>(d: &mut Rng<T>, n: usize) -> anyhow::Result<Vec<Entropy>> {
    let mut v = Vec::with_capacity(n);
    for _ in 0..MAX_WAKEUPS {
        while v.len() < n {
            match d.poll()? {
                Some(e) => v.push(e),
                None => break,
            }
        }
        if v.len() == n {
            return Ok(v);
        }
        wait_device(d.transport())?;
        d.transport().ack_interrupt();
    }
    anyhow::bail!("the device kept notifying without completing the requests")
}

/// `n` requests of the full buffer size, one at a time.
fn single_reads<T: Transport>(d: &mut Rng<T>, n: usize) -> anyhow::Result<Outcome> {
    for i in 0..n {
        d.submit(RNG_BUFFER_SIZE as u32)?;
        let e = collect(d, 1)?.remove(0);
        if e.bytes().is_empty() {
            return Ok(Outcome::Fail(format!(
                "request {i}: the device used the buffer without placing a byte in it"
            )));
        }
    }
    Ok(Outcome::Pass)
}

/// Buffers of sizes 1, 17, 33, ... in flight at once.
fn many<T: Transport>(d: &mut Rng<T>) -> anyhow::Result<Outcome> {
    let n = usize::from(RNG_MAX_BUFFERS);
    let mut asked = Vec::new();
    for i in 0..n {
        let len = (1 + i * 16).min(RNG_BUFFER_SIZE) as u32;
        match d.submit(len) {
            Ok(()) => asked.push(len),
            Err(ringwork_driver::rng::RngError::QueueFull) => break,
            Err(e) => return Err(e.into()),
        }
    }
    let got = collect(d, asked.len())?;
    let empty = got.iter().filter(|e| e.bytes().is_empty()).count();
    if empty > 0 {
        return Ok(Outcome::Fail(format!(
            "{empty} of {} buffers came back without a byte",
            got.len()
        )));
    }
    Ok(Outcome::Pass)
}

fn entropy<T: Transport>(d: &mut Rng<T>) -> anyhow::Result<Outcome> {
    let mut buf = vec![0u8; 4096];
    let n = d.fill(&mut buf)?;
    if n < buf.len() {
        return Ok(Outcome::Fail(format!(
            "asked for {} bytes, got {n} before an empty buffer",
            buf.len()
        )));
    }
    let mut seen = [false; 256];
    for &b in &buf {
        seen[usize::from(b)] = true;
    }
    let distinct = seen.iter().filter(|&&s| s).count();
    let mut again = vec![0u8; 256];
    d.fill(&mut again)?;
    Ok(first_problem([
        if distinct < 64 {
            Outcome::Fail(format!(
                "4 KiB of output has only {distinct} distinct byte values"
            ))
        } else {
            Outcome::Pass
        },
        if again[..] == buf[..256] {
            Outcome::Fail("two reads returned the same 256 bytes".into())
        } else {
            Outcome::Pass
        },
    ]))
}

fn ring_session(ctx: &mut Ctx, pref: RingPreference, fmt: &str) -> anyhow::Result<Outcome> {
    let t = ctx.connect()?;
    let mem = t.memory().clone();
    let mut d = Rng::new(t, mem, QUEUE_SIZE, pref).context("driver initialization")?;
    let r = (|| Ok(first_problem([single_reads(&mut d, 8)?, many(&mut d)?])))();
    ctx.observe(d.transport(), &format!("{fmt} session"));
    let _ = d.reset();
    r
}

fn subset(ctx: &mut Ctx, offered: FeatureSet) -> anyhow::Result<Outcome> {
    let inner = ctx.connect()?;
    let mem = inner.memory().clone();
    let t = Masked {
        inner,
        hide: all_but_version_1(offered),
    };
    let mut d =
        Rng::new(t, mem, QUEUE_SIZE, RingPreference::Split).context("driver initialization")?;
    let r = (|| {
        if d.features() != FeatureSet::from_bits(&[VIRTIO_F_VERSION_1]) {
            anyhow::bail!("negotiated {:?} instead of VERSION_1 alone", d.features());
        }
        single_reads(&mut d, 4)
    })();
    ctx.observe(&mut d.transport().inner, "minimal-features session");
    let _ = d.reset();
    r
}
