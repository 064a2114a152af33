//! The block device suite (VIRTIO 1.4 §5.2).
//!
//! Sessions, in order:
//! 1. *main* (the identifying connection): feature bits, negotiation
//!    (FEATURES_OK), the configuration space (§5.2.4, §5.2.5.2), driver
//!    initialization, then request checks — GET_ID, FLUSH, error statuses
//!    (unknown and zoned request types, beyond capacity, writes to a
//!    read-only device, discard / write-zeroes flags), discard, write
//!    zeroes — and reset (status 0, re-initialization, data kept);
//! 2. the I/O suite in split and in packed rings ([`blk_ring::ring_suite`]);
//! 3. the minimal feature subset, and (with CONFIG_WCE) FLUSH withheld.
//!
//! Every check that writes restores what it overwrote ([`Io::preserve`]).

use anyhow::Context as _;
use ringwork_driver::blk::BLK_FEATURES;
use ringwork_driver::RingPreference;
use ringwork_spec::blk::{
    BlkConfig, BLK_CONFIG_SIZE, BLK_FEATURE_RULES, BLK_OFFER_RULES, VIRTIO_BLK_F_BLK_SIZE,
    VIRTIO_BLK_F_CONFIG_WCE, VIRTIO_BLK_F_DISCARD, VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_F_MQ,
    VIRTIO_BLK_F_RO, VIRTIO_BLK_F_SEG_MAX, VIRTIO_BLK_F_SIZE_MAX, VIRTIO_BLK_F_TOPOLOGY,
    VIRTIO_BLK_F_WRITE_ZEROES,
};
use ringwork_spec::features::{
    FeatureSet, VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC, VIRTIO_F_IN_ORDER,
    VIRTIO_F_RING_PACKED, VIRTIO_F_VERSION_1,
};
use ringwork_transport::driver;
use ringwork_vhost_user::msg::protocol;
use ringwork_vhost_user::transport::BLK_CONFIG_PROBE;
use ringwork_vhost_user::VhostUserTransport;

use super::blk_io::{open, options, Drv, Io};
use super::blk_req::{requests, REQUEST_CHECKS};
use super::blk_ring::{self, Fmt};
use super::common::{
    check_driver_ok, check_reset_status, compare, feature_checks, features_ok_outcome,
    first_problem, offered_features, read_config_for, skip_all, Ctx,
};
use super::report::Outcome;

/// The block feature bits the spec describes, with their names.
pub(crate) const FEATURE_NAMES: &[(u32, &str)] = &[
    (0, "VIRTIO_BLK_F_BARRIER"),
    (1, "VIRTIO_BLK_F_SIZE_MAX"),
    (2, "VIRTIO_BLK_F_SEG_MAX"),
    (4, "VIRTIO_BLK_F_GEOMETRY"),
    (5, "VIRTIO_BLK_F_RO"),
    (6, "VIRTIO_BLK_F_BLK_SIZE"),
    (7, "VIRTIO_BLK_F_SCSI"),
    (9, "VIRTIO_BLK_F_FLUSH"),
    (10, "VIRTIO_BLK_F_TOPOLOGY"),
    (11, "VIRTIO_BLK_F_CONFIG_WCE"),
    (12, "VIRTIO_BLK_F_MQ"),
    (13, "VIRTIO_BLK_F_DISCARD"),
    (14, "VIRTIO_BLK_F_WRITE_ZEROES"),
    (15, "VIRTIO_BLK_F_LIFETIME"),
    (16, "VIRTIO_BLK_F_SECURE_ERASE"),
    (17, "VIRTIO_BLK_F_ZONED"),
];

const RESET_CHECKS: &[(&str, &str, &str)] = &[
    (
        "reset.status",
        "§2.4.1",
        "after a reset the device status reads 0",
    ),
    (
        "reset.reinit",
        "§2.4",
        "after a reset the device initializes again and still holds the data written before it",
    ),
];

/// Runs the block suite; `t` is the identifying connection.
pub(crate) fn run(ctx: &mut Ctx, mut t: VhostUserTransport) {
    let offered = offered_features(ctx, &mut t);
    feature_checks(
        ctx,
        offered,
        &[BLK_FEATURE_RULES, BLK_OFFER_RULES],
        FEATURE_NAMES,
    );
    ctx.note(format!(
        "vhost-user: {} queue(s), protocol features {:#x} in use",
        t.num_queues(),
        t.protocol_features()
    ));
    let has_status = t.has_protocol(protocol::STATUS);
    let supports = FeatureSet::from_bits(BLK_FEATURES).union(FeatureSet::from_bits(&[
        VIRTIO_F_VERSION_1,
        VIRTIO_F_EVENT_IDX,
        VIRTIO_F_INDIRECT_DESC,
        VIRTIO_F_IN_ORDER,
        VIRTIO_F_RING_PACKED,
    ]));
    let negotiated = driver::negotiate(&mut t, supports, BLK_FEATURE_RULES);
    ctx.record(
        "status.features-ok",
        "§2.2.2",
        "the device keeps FEATURES_OK for the feature subset the driver accepts",
        Ok(features_ok_outcome(
            has_status,
            negotiated.as_ref().map(|_| ()).map_err(|e| e.to_string()),
        )),
    );
    let features = negotiated.unwrap_or(offered);
    config_checks(ctx, &mut t, features);

    main_session(ctx, t, has_status);

    let preferred = if offered.contains(VIRTIO_F_RING_PACKED) {
        Fmt::Packed
    } else {
        Fmt::Split
    };
    blk_ring::ring_suite(ctx, Fmt::Split, offered, preferred);
    blk_ring::ring_suite(ctx, Fmt::Packed, offered, preferred);

    let r = subset(ctx, offered);
    ctx.record(
        "features.subset",
        "§2.2.2",
        "the device accepts the minimal feature subset (VERSION_1 only) and serves I/O with it",
        r,
    );
    let r = if offered.contains(VIRTIO_BLK_F_CONFIG_WCE) {
        writeback_without_flush(ctx)
    } else {
        Ok(Outcome::Skip(
            "VIRTIO_BLK_F_CONFIG_WCE is not offered".into(),
        ))
    };
    ctx.record(
        "blk.config.writeback",
        "§5.2.5.2",
        "with CONFIG_WCE negotiated but not FLUSH, writeback starts at 0",
        r,
    );
}

/// The configuration checks (§5.2.4, §5.2.5.2), on the raw bytes read
/// after FEATURES_OK.
fn config_checks(ctx: &mut Ctx, t: &mut VhostUserTransport, f: FeatureSet) {
    const IDS: &[(&str, &str, &str)] = &[
        ("blk.config.capacity", "§5.2.4", "capacity is not 0"),
        ("blk.config.seg-max", "§5.2.4", "seg_max is not 0 (VIRTIO_BLK_F_SEG_MAX)"),
        ("blk.config.blk-size", "§5.2.4", "blk_size is a power of two, at least 512 (VIRTIO_BLK_F_BLK_SIZE)"),
        ("blk.config.topology", "§5.2.4", "topology is consistent: alignment_offset below the logical blocks per physical block, min_io_size <= opt_io_size (VIRTIO_BLK_F_TOPOLOGY)"),
        ("blk.config.num-queues", "§5.2.4", "num_queues is at least 1 and matches GET_QUEUE_NUM (VIRTIO_BLK_F_MQ)"),
        ("blk.config.discard", "§5.2.4", "max_discard_sectors and max_discard_seg are not 0 (VIRTIO_BLK_F_DISCARD)"),
        ("blk.config.write-zeroes", "§5.2.4", "max_write_zeroes_sectors and max_write_zeroes_seg are not 0 (VIRTIO_BLK_F_WRITE_ZEROES)"),
        ("blk.config.padding", "§5.2.5.2", "padding bytes unused0 and unused1 are 0"),
    ];
    let mut bytes = [0u8; BLK_CONFIG_SIZE];
    if !read_config_for(ctx, t, IDS, &mut bytes[..BLK_CONFIG_PROBE as usize]) {
        return;
    }
    let c = BlkConfig::new_unchecked(&bytes[..]);
    let has = |b| f.contains(b);
    let not = |name: &str| Outcome::Skip(format!("{name} is not offered"));
    let nonzero = |what: &str, v: u64| {
        if v == 0 {
            Outcome::Fail(format!("{what} is 0"))
        } else {
            Outcome::Pass
        }
    };
    ctx.note(format!(
        "config: capacity {} sectors ({} MiB){}{}{}",
        c.capacity(),
        c.capacity() / 2048,
        if has(VIRTIO_BLK_F_SIZE_MAX) {
            format!(", size_max {}", c.size_max())
        } else {
            String::new()
        },
        if has(VIRTIO_BLK_F_SEG_MAX) {
            format!(", seg_max {}", c.seg_max())
        } else {
            String::new()
        },
        if has(VIRTIO_BLK_F_BLK_SIZE) {
            format!(", blk_size {}", c.blk_size())
        } else {
            String::new()
        },
    ));
    let outcomes = [
        nonzero("capacity", c.capacity()),
        if has(VIRTIO_BLK_F_SEG_MAX) {
            nonzero("seg_max", c.seg_max().into())
        } else {
            not("VIRTIO_BLK_F_SEG_MAX")
        },
        if !has(VIRTIO_BLK_F_BLK_SIZE) {
            not("VIRTIO_BLK_F_BLK_SIZE")
        } else if c.blk_size().is_power_of_two() && c.blk_size() >= 512 {
            Outcome::Pass
        } else {
            Outcome::Fail(format!("blk_size is {}", c.blk_size()))
        },
        if !has(VIRTIO_BLK_F_TOPOLOGY) {
            not("VIRTIO_BLK_F_TOPOLOGY")
        } else {
            topology(
                c.topology_physical_block_exp(),
                c.topology_alignment_offset(),
                c.topology_min_io_size(),
                c.topology_opt_io_size(),
            )
        },
        if !has(VIRTIO_BLK_F_MQ) {
            not("VIRTIO_BLK_F_MQ")
        } else if c.num_queues() == 0 {
            Outcome::Fail("num_queues is 0".into())
        } else if t.has_protocol(protocol::MQ)
            && u64::from(c.num_queues()) != u64::from(t.num_queues())
        {
            Outcome::Fail(format!(
                "num_queues is {}, GET_QUEUE_NUM says {}",
                c.num_queues(),
                t.num_queues()
            ))
        } else {
            Outcome::Pass
        },
        if has(VIRTIO_BLK_F_DISCARD) {
            first_problem([
                nonzero("max_discard_sectors", c.max_discard_sectors().into()),
                nonzero("max_discard_seg", c.max_discard_seg().into()),
            ])
        } else {
            not("VIRTIO_BLK_F_DISCARD")
        },
        if has(VIRTIO_BLK_F_WRITE_ZEROES) {
            first_problem([
                nonzero(
                    "max_write_zeroes_sectors",
                    c.max_write_zeroes_sectors().into(),
                ),
                nonzero("max_write_zeroes_seg", c.max_write_zeroes_seg().into()),
            ])
        } else {
            not("VIRTIO_BLK_F_WRITE_ZEROES")
        },
        if c.unused0() != 0 || c.unused1() != [0; 3] {
            Outcome::Fail(format!(
                "unused0 = {:#x}, unused1 = {:x?}",
                c.unused0(),
                c.unused1()
            ))
        } else {
            Outcome::Pass
        },
    ];
    for (o, &(id, sec, desc)) in outcomes.into_iter().zip(IDS) {
        ctx.record(id, sec, desc, Ok(o));
    }
}

fn topology(exp: u8, align: u8, min_io: u16, opt_io: u32) -> Outcome {
    if exp >= 32 {
        return Outcome::Fail(format!("physical_block_exp {exp} is absurd"));
    }
    if u32::from(align) >= 1u32 << exp {
        return Outcome::Fail(format!(
            "alignment_offset {align} is not below 2^physical_block_exp = {}",
            1u32 << exp
        ));
    }
    if opt_io != 0 && u32::from(min_io) > opt_io {
        return Outcome::Fail(format!("min_io_size {min_io} > opt_io_size {opt_io}"));
    }
    Outcome::Pass
}

/// The main session: initialization, requests, reset.
fn main_session(ctx: &mut Ctx, t: VhostUserTransport, has_status: bool) {
    let mem = t.memory().clone();
    let init = Drv::new(t, mem, options(RingPreference::Auto, FeatureSet::EMPTY))
        .context("driver initialization")
        .and_then(|d| Io::new(d, ctx.seed));
    let (id, sec, desc) = (
        "blk.init",
        "§5.2.5",
        "driver initialization: negotiation, configuration, every request queue, DRIVER_OK (§3.1.1)",
    );
    let mut io = match init {
        Ok(io) => {
            ctx.record(id, sec, desc, Ok(Outcome::Pass));
            io
        }
        Err(e) => {
            ctx.record(id, sec, desc, Err(e));
            ctx.record(
                "status.driver-ok",
                "§3.1.1",
                "after initialization the device status reads ACKNOWLEDGE|DRIVER|FEATURES_OK|DRIVER_OK",
                Ok(Outcome::Skip("not run: initialization failed".into())),
            );
            skip_all(ctx, REQUEST_CHECKS, "not run: initialization failed");
            skip_all(ctx, RESET_CHECKS, "not run: initialization failed");
            return;
        }
    };
    check_driver_ok(ctx, io.d.transport());
    if io.too_small() {
        let why = format!("the disk is too small (under {} sectors)", 64 * io.chunk);
        skip_all(ctx, REQUEST_CHECKS, &why);
        skip_all(ctx, RESET_CHECKS, &why);
        let _ = io.finish(ctx, "main session");
        return;
    }
    let results = requests(&mut io);
    for (r, &(id, sec, desc)) in results.into_iter().zip(REQUEST_CHECKS) {
        ctx.record(id, sec, desc, r);
    }
    reset_checks(ctx, io, has_status);
}

/// Reset: status 0, then re-initialization with the data kept.
fn reset_checks(ctx: &mut Ctx, mut io: Io, has_status: bool) {
    let sector = (io.capacity / 8 * 7) / io.chunk * io.chunk;
    let cb = io.chunk_bytes();
    let ro = io.read_only;
    let saved = io.read_whole(0, sector, cb);
    let want = match &saved {
        Ok(s) if ro => Ok(s.clone()),
        Ok(s) => {
            let data = io.pattern(50, sector, cb);
            let w = io.write_whole(0, sector, &data).map(|()| data);
            if w.is_err() {
                let _ = io.write_whole(0, sector, s);
            }
            w
        }
        Err(e) => Err(anyhow::anyhow!("{e:#}")),
    };
    let (t, reset) = io.finish_with_reset(ctx, "main session");
    check_reset_status(ctx, has_status, &reset);
    let (id, sec, desc) = RESET_CHECKS[1];
    let (saved, want) = match (saved, want) {
        (Ok(s), Ok(w)) => (s, w),
        (_, Err(e)) => return ctx.record(id, sec, desc, Err(e.context("before the reset"))),
        (Err(e), _) => return ctx.record(id, sec, desc, Err(e.context("before the reset"))),
    };
    let mem = t.memory().clone();
    let mut io = match Drv::new(t, mem, options(RingPreference::Auto, FeatureSet::EMPTY))
        .context("initialization after the reset")
        .and_then(|d| Io::new(d, ctx.seed))
    {
        Ok(io) => io,
        Err(e) => {
            ctx.record(id, sec, desc, Err(e));
            if !ro {
                restore_in_new_session(ctx, sector, &saved);
            }
            return;
        }
    };
    let r = io
        .read_whole(0, sector, cb)
        .map(|got| compare(&format!("sector {sector} after the reset"), &got, &want));
    if !ro {
        if let Err(e) = io.write_whole(0, sector, &saved) {
            io.warnings.push(format!(
                "WARNING: sectors {sector}..{} could not be restored: {e:#}",
                sector + io.chunk
            ));
        }
    }
    ctx.record(id, sec, desc, r);
    let _ = io.finish(ctx, "session after reset");
}

/// Writes `saved` back at `sector` from a new session (when the session
/// that changed it broke).
fn restore_in_new_session(ctx: &mut Ctx, sector: u64, saved: &[u8]) {
    let r = open(ctx, options(RingPreference::Auto, FeatureSet::EMPTY)).and_then(|mut io| {
        let r = io.write_whole(0, sector, saved);
        let _ = io.finish(ctx, "restore session");
        r
    });
    if let Err(e) = r {
        ctx.note(format!(
            "WARNING: sectors {sector}..{} could not be restored: {e:#}",
            sector + (saved.len() / 512) as u64
        ));
    }
}

/// `features.subset`: VERSION_1 only, then pattern integrity.
fn subset(ctx: &mut Ctx, offered: FeatureSet) -> anyhow::Result<Outcome> {
    let withhold = FeatureSet::from_bits(BLK_FEATURES).union(FeatureSet::from_bits(&[
        VIRTIO_F_EVENT_IDX,
        VIRTIO_F_INDIRECT_DESC,
        VIRTIO_F_IN_ORDER,
        VIRTIO_F_RING_PACKED,
    ]));
    let mut io = open(ctx, options(RingPreference::Split, withhold))?;
    // A device that offers RO refuses writes whether or not RO is
    // negotiated (§5.2.6.2).
    io.read_only |= offered.contains(VIRTIO_BLK_F_RO);
    let r = (|| {
        let f = io.d.features();
        if f != FeatureSet::from_bits(&[VIRTIO_F_VERSION_1]) {
            anyhow::bail!("negotiated {f:?} instead of VERSION_1 alone");
        }
        if io.too_small() {
            return Ok(Outcome::Skip("the disk is too small".into()));
        }
        let mid = io.middle();
        io.rw_chunk(0, mid, 60)
    })();
    let _ = io.finish(ctx, "minimal-features session");
    r
}

/// `blk.config.writeback`: CONFIG_WCE without FLUSH starts writethrough.
fn writeback_without_flush(ctx: &mut Ctx) -> anyhow::Result<Outcome> {
    let withhold = FeatureSet::from_bits(&[VIRTIO_BLK_F_FLUSH]);
    let io = open(ctx, options(RingPreference::Auto, withhold))?;
    let f = io.d.features();
    let r = if !f.contains(VIRTIO_BLK_F_CONFIG_WCE) {
        Outcome::Fail("VIRTIO_BLK_F_CONFIG_WCE was not negotiated".into())
    } else if io.d.config().writeback {
        Outcome::Fail("writeback reads 1".into())
    } else {
        Outcome::Pass
    };
    let _ = io.finish(ctx, "session without FLUSH");
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topology_sanity() {
        assert_eq!(topology(3, 0, 1, 0), Outcome::Pass);
        assert_eq!(topology(3, 7, 1, 8), Outcome::Pass);
        assert!(matches!(topology(3, 8, 1, 0), Outcome::Fail(_)));
        assert!(matches!(topology(0, 0, 16, 8), Outcome::Fail(_)));
        assert!(matches!(topology(40, 0, 1, 0), Outcome::Fail(_)));
    }
}
