//! The memory balloon suite (VIRTIO 1.4 §5.5): the configuration space,
//! driver initialization with every optional queue the device offers,
//! inflating to the device's target and beyond it (§5.5.6.1: the driver may
//! supply pages when `num_pages` ≥ `actual`), deflating back, `actual`
//! read back as written, statistics when the device asks for them, free
//! page reporting (§5.5.6.7), reset, and both ring formats. The target is the host's
//! (`num_pages`): a check that needs pages inflates beyond it instead.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use ringwork_driver::balloon::{BalloonDriver, BalloonOptions};
use ringwork_driver::RingPreference;
use ringwork_queue::{Dma, Segment};
use ringwork_spec::balloon::{
    BALLOON_FEATURE_RULES, VIRTIO_BALLOON_F_DEFLATE_ON_OOM, VIRTIO_BALLOON_F_FREE_PAGE_HINT,
    VIRTIO_BALLOON_F_MUST_TELL_HOST, VIRTIO_BALLOON_F_PAGE_POISON, VIRTIO_BALLOON_F_PAGE_REPORTING,
    VIRTIO_BALLOON_F_STATS_VQ, VIRTIO_BALLOON_S_MEMFREE, VIRTIO_BALLOON_S_MEMTOT,
};
use ringwork_spec::features::{FeatureSet, VIRTIO_F_RING_PACKED};
use ringwork_transport::driver::Transport;
use ringwork_vhost_user::msg::protocol;
use ringwork_vhost_user::{SharedMemory, VhostUserTransport};

use super::common::{
    check_driver_ok, check_reset_status, feature_checks, first_problem, offered_features, Ctx,
};
use super::report::Outcome;

type Balloon = BalloonDriver<VhostUserTransport, Arc<SharedMemory>>;

const FEATURE_NAMES: &[(u32, &str)] = &[
    (VIRTIO_BALLOON_F_MUST_TELL_HOST, "MUST_TELL_HOST"),
    (VIRTIO_BALLOON_F_STATS_VQ, "STATS_VQ"),
    (VIRTIO_BALLOON_F_DEFLATE_ON_OOM, "DEFLATE_ON_OOM"),
    (VIRTIO_BALLOON_F_FREE_PAGE_HINT, "FREE_PAGE_HINT"),
    (VIRTIO_BALLOON_F_PAGE_POISON, "PAGE_POISON"),
    (VIRTIO_BALLOON_F_PAGE_REPORTING, "PAGE_REPORTING"),
];

/// Pages given beyond the target (4 MiB).
const EXTRA_PAGES: u32 = 1024;

/// How long the device has to ask for statistics.
const STATS_WAIT: Duration = Duration::from_secs(3);

fn options(offered: FeatureSet, ring: RingPreference) -> BalloonOptions {
    BalloonOptions {
        ring,
        stats: if offered.contains(VIRTIO_BALLOON_F_STATS_VQ) {
            vec![VIRTIO_BALLOON_S_MEMFREE, VIRTIO_BALLOON_S_MEMTOT]
        } else {
            Vec::new()
        },
        deflate_on_oom: offered.contains(VIRTIO_BALLOON_F_DEFLATE_ON_OOM),
        reporting: offered.contains(VIRTIO_BALLOON_F_PAGE_REPORTING),
        ..BalloonOptions::default()
    }
}

/// Runs the balloon suite; `t` is the identifying connection.
pub(crate) fn run(ctx: &mut Ctx, mut t: VhostUserTransport) {
    let offered = offered_features(ctx, &mut t);
    feature_checks(ctx, offered, &[BALLOON_FEATURE_RULES], FEATURE_NAMES);
    let has_status = t.has_protocol(protocol::STATUS);
    let mem = t.memory().clone();
    let (id, sec, desc) = (
        "balloon.init",
        "§5.5.5",
        "driver initialization with every optional queue offered (statsq, reporting_vq), DRIVER_OK",
    );
    let mut d = match Balloon::new(t, mem, options(offered, RingPreference::Auto)) {
        Ok(d) => {
            ctx.record(id, sec, desc, Ok(Outcome::Pass));
            d
        }
        Err(e) => {
            ctx.record(id, sec, desc, Err(e.into()));
            return;
        }
    };
    check_driver_ok(ctx, d.transport());
    let r = inflate_and_back(&mut d);
    ctx.record(
        "balloon.inflate-deflate",
        "§5.5.6",
        "pages inflated to the target and beyond it are acknowledged, `actual` reads back as \
         written, and deflating back to the target is acknowledged",
        r,
    );
    let r = stats(&mut d, offered);
    ctx.record(
        "balloon.stats",
        "§5.5.6.3",
        "the device takes the statistics buffer and asks for fresh values by using it",
        r,
    );
    let r = reporting(&mut d, offered);
    ctx.record(
        "balloon.reporting",
        "§5.5.6.7",
        "free page reports (whole 4 KiB pages, device-writable) are acknowledged",
        r,
    );
    ctx.observe(d.transport(), "main session");
    let det = d.reset();
    check_reset_status(ctx, has_status, &det.reset);
    // One connection at a time: the ring sessions need this one closed.
    drop(det);
    for (fmt, pref, sec) in [
        ("split", RingPreference::Split, "§2.7"),
        ("packed", RingPreference::Packed, "§2.8"),
    ] {
        let r = if fmt == "packed" && !offered.contains(VIRTIO_F_RING_PACKED) {
            Ok(Outcome::Skip("VIRTIO_F_RING_PACKED is not offered".into()))
        } else if ctx.opts.quick && fmt == "split" && offered.contains(VIRTIO_F_RING_PACKED) {
            Ok(Outcome::Skip("--quick: one ring format only".into()))
        } else {
            ring_session(ctx, offered, pref, fmt)
        };
        ctx.record(
            format!("balloon.{fmt}.inflate-deflate"),
            sec,
            "with these virtqueues: a fresh session inflates beyond the target and deflates back",
            r,
        );
    }
}

/// `actual` as the device reports it.
fn read_actual(d: &mut Balloon) -> u32 {
    let mut b = [0u8; 4];
    d.transport().read_config(4, &mut b);
    u32::from_le_bytes(b)
}

fn inflate_and_back(d: &mut Balloon) -> anyhow::Result<Outcome> {
    let target = d.target();
    let at_target = d
        .reach_target()
        .with_context(|| format!("inflating to the device's target of {target} pages"))?;
    let added = d
        .inflate(EXTRA_PAGES)
        .context("inflating beyond the target")?;
    let actual = d.actual();
    let seen = read_actual(d);
    let back = d.reach_target().context("deflating back to the target")?;
    let seen_after = read_actual(d);
    Ok(first_problem([
        if added == 0 {
            Outcome::Fail("no page could be inflated beyond the target".into())
        } else {
            Outcome::Pass
        },
        if seen != actual {
            Outcome::Fail(format!(
                "`actual` reads {seen} after the driver wrote {actual}"
            ))
        } else {
            Outcome::Pass
        },
        if back != at_target || seen_after != back {
            Outcome::Fail(format!(
                "after deflating: {back} pages in the balloon, `actual` reads {seen_after}, \
                 target {at_target}"
            ))
        } else {
            Outcome::Pass
        },
    ]))
}

fn stats(d: &mut Balloon, offered: FeatureSet) -> anyhow::Result<Outcome> {
    if !offered.contains(VIRTIO_BALLOON_F_STATS_VQ) {
        return Ok(Outcome::Skip(
            "VIRTIO_BALLOON_F_STATS_VQ is not offered".into(),
        ));
    }
    let t0 = Instant::now();
    while !d.stats_requested()? {
        if t0.elapsed() > STATS_WAIT {
            return Ok(Outcome::Skip(format!(
                "the device did not ask for statistics within {} s (it holds the buffer; \
                 asking is the host's choice)",
                STATS_WAIT.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let total = d.dma().size();
    d.provide_stats(&[
        (VIRTIO_BALLOON_S_MEMFREE, total / 2),
        (VIRTIO_BALLOON_S_MEMTOT, total),
    ])?;
    Ok(Outcome::Pass)
}

fn reporting(d: &mut Balloon, offered: FeatureSet) -> anyhow::Result<Outcome> {
    if !offered.contains(VIRTIO_BALLOON_F_PAGE_REPORTING) {
        return Ok(Outcome::Skip(
            "VIRTIO_BALLOON_F_PAGE_REPORTING is not offered".into(),
        ));
    }
    let mem = d.dma().clone();
    let free = mem
        .alloc(64 << 10, 4096)
        .context("allocating memory to report")?;
    let a = free.device_addr();
    d.report_free(
        &[
            Segment::new(a, 32 << 10),
            Segment::new(a + (32 << 10), 32 << 10),
        ],
        1,
    )?;
    let t0 = Instant::now();
    loop {
        if let Some(token) = d.poll_reported()? {
            mem.dealloc(free);
            return Ok(if token == 1 {
                Outcome::Pass
            } else {
                Outcome::Fail(format!("report {token} acknowledged, 1 was sent"))
            });
        }
        if t0.elapsed() > Duration::from_secs(10) {
            return Ok(Outcome::Fail(
                "the report was not acknowledged within 10 s".into(),
            ));
        }
        d.transport().wait_interrupt()?;
        d.transport().ack_interrupt();
    }
}

fn ring_session(
    ctx: &mut Ctx,
    offered: FeatureSet,
    pref: RingPreference,
    fmt: &str,
) -> anyhow::Result<Outcome> {
    let t = ctx.connect()?;
    let mem = t.memory().clone();
    let mut d = Balloon::new(t, mem, options(offered, pref)).context("driver initialization")?;
    let r = inflate_and_back(&mut d);
    ctx.observe(d.transport(), &format!("{fmt} session"));
    let _ = d.reset();
    r
}
