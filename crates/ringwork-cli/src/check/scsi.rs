//! The SCSI host suite (VIRTIO 1.4 §5.6).
//!
//! Sessions, in order:
//! 1. *main* (the identifying connection): feature bits, negotiation, the
//!    configuration space (§5.6.4), driver initialization with every
//!    request queue (up to 4) and event buffers (§5.6.5), REPORT LUNS on
//!    every target up to `max_target`, then per logical unit INQUIRY
//!    (standard and every VPD page listed), TEST UNIT READY, READ
//!    CAPACITY (10)/(16) and a READ/WRITE round trip; an unsupported
//!    opcode, an absent LUN and an absent target (§5.6.6.1.1), `cmd_per_lun`
//!    commands in flight, every request queue, task management (§5.6.6.2),
//!    and reset;
//! 2. raw sessions ([`super::scsi_raw`]): `sense_size`/`cdb_size` written
//!    by the driver and honoured, back to 96/32 after a reset (§5.6.4.2),
//!    requests too short for their header;
//! 3. I/O in split and in packed rings, and the minimal feature subset.
//!
//! Writes restore what they overwrote (read first, written back and
//! verified); check a target nobody else uses.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use ringwork_driver::scsi::{ScsiError, ScsiOptions, ScsiResponse};
use ringwork_driver::RingPreference;
use ringwork_spec::features::{
    FeatureSet, VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC, VIRTIO_F_IN_ORDER,
    VIRTIO_F_RING_PACKED, VIRTIO_F_VERSION_1,
};
use ringwork_spec::scsi::{
    ScsiConfig, SCSI_CONFIG_SIZE, SCSI_EVENT_SIZE, VIRTIO_SCSI_CDB_DEFAULT_SIZE,
    VIRTIO_SCSI_F_CHANGE, VIRTIO_SCSI_F_HOTPLUG, VIRTIO_SCSI_F_INOUT, VIRTIO_SCSI_F_T10_PI,
    VIRTIO_SCSI_SENSE_DEFAULT_SIZE, VIRTIO_SCSI_T_ASYNC_NOTIFY, VIRTIO_SCSI_T_NO_EVENT,
    VIRTIO_SCSI_T_PARAM_CHANGE, VIRTIO_SCSI_T_TMF_ABORT_TASK, VIRTIO_SCSI_T_TMF_LOGICAL_UNIT_RESET,
    VIRTIO_SCSI_T_TRANSPORT_RESET,
};
use ringwork_transport::driver;
use ringwork_vhost_user::msg::protocol;
use ringwork_vhost_user::VhostUserTransport;

use super::common::{
    all_but_version_1, check_driver_ok, check_reset_status, feature_checks, features_ok_outcome,
    first_problem, offered_features, read_config_for, skip_all, Ctx, Masked,
};
use super::report::Outcome;
use super::scsi_cmd::{describe, is_check, Drv, Lu, Scsi, ILLEGAL_REQUEST};

/// The SCSI feature bits, with their names.
const FEATURE_NAMES: &[(u32, &str)] = &[
    (VIRTIO_SCSI_F_INOUT, "VIRTIO_SCSI_F_INOUT"),
    (VIRTIO_SCSI_F_HOTPLUG, "VIRTIO_SCSI_F_HOTPLUG"),
    (VIRTIO_SCSI_F_CHANGE, "VIRTIO_SCSI_F_CHANGE"),
    (VIRTIO_SCSI_F_T10_PI, "VIRTIO_SCSI_F_T10_PI"),
];

/// Request queues used at most.
const MAX_QUEUES: u16 = 4;
/// Logical units the per-LUN checks run on at most.
const MAX_LUS: usize = 8;
/// An opcode unassigned for direct-access devices (SBC-4 lists 02h as
/// obsolete/vendor specific, never implemented by an emulated disk).
const UNSUPPORTED_OPCODE: u8 = 0x02;

/// Driver options for a session.
pub(crate) fn options(ring: RingPreference, queues: u16) -> ScsiOptions {
    ScsiOptions {
        queues,
        queue_size: 128,
        ring,
        inout: true,
        event_buffers: 8,
        withhold: FeatureSet::EMPTY,
    }
}

/// Runs the SCSI suite; `t` is the identifying connection.
pub(crate) fn run(ctx: &mut Ctx, mut t: VhostUserTransport) {
    let offered = offered_features(ctx, &mut t);
    feature_checks(ctx, offered, &[], FEATURE_NAMES);
    if offered.contains(VIRTIO_SCSI_F_T10_PI) {
        ctx.note(
            "VIRTIO_SCSI_F_T10_PI is offered: this suite never negotiates it, protection \
             information is not checked",
        );
    }
    ctx.note(format!(
        "vhost-user: {} queue(s), protocol features {:#x} in use",
        t.num_queues(),
        t.protocol_features()
    ));
    let has_status = t.has_protocol(protocol::STATUS);
    let supports = FeatureSet::from_bits(&[
        VIRTIO_F_VERSION_1,
        VIRTIO_F_EVENT_IDX,
        VIRTIO_F_INDIRECT_DESC,
        VIRTIO_F_IN_ORDER,
        VIRTIO_F_RING_PACKED,
        VIRTIO_SCSI_F_INOUT,
        VIRTIO_SCSI_F_HOTPLUG,
        VIRTIO_SCSI_F_CHANGE,
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
    config_checks(ctx, &mut t, offered);
    let lus = main_session(ctx, t, has_status);
    super::scsi_raw::run(ctx, lus.first().copied());
    let preferred = if offered.contains(VIRTIO_F_RING_PACKED) {
        "packed"
    } else {
        "split"
    };
    for (fmt, pref, sec) in [
        ("split", RingPreference::Split, "§2.7"),
        ("packed", RingPreference::Packed, "§2.8"),
    ] {
        let r = if fmt == "packed" && !offered.contains(VIRTIO_F_RING_PACKED) {
            Ok(Outcome::Skip("VIRTIO_F_RING_PACKED is not offered".into()))
        } else if ctx.opts.quick && fmt != preferred {
            Ok(Outcome::Skip("--quick: one ring format only".into()))
        } else {
            match lus.first() {
                Some(&lu) => ring_session(ctx, pref, fmt, lu),
                None => Ok(Outcome::Skip("no logical unit found".into())),
            }
        };
        ctx.record(
            format!("scsi.{fmt}.io"),
            sec,
            "with these virtqueues: TEST UNIT READY, a READ/WRITE round trip and READs in flight",
            r,
        );
    }
    let r = match lus.first() {
        Some(&lu) => subset(ctx, offered, lu),
        None => Ok(Outcome::Skip("no logical unit found".into())),
    };
    ctx.record(
        "features.subset",
        "§2.2.2",
        "the device accepts the minimal feature subset (VERSION_1 only) and serves commands with it",
        r,
    );
}

/// The configuration checks (§5.6.4), on the raw bytes read after
/// FEATURES_OK.
fn config_checks(ctx: &mut Ctx, t: &mut VhostUserTransport, offered: FeatureSet) {
    const IDS: &[(&str, &str, &str)] = &[
        ("scsi.config.num-queues", "§5.6.4", "num_queues is at least 1 (and GET_QUEUE_NUM is num_queues + 2)"),
        ("scsi.config.limits", "§5.6.4", "seg_max, max_sectors and cmd_per_lun are not 0"),
        ("scsi.config.event-info-size", "§5.6.4", "with HOTPLUG or CHANGE offered, event_info_size holds at least a struct virtio_scsi_event (16 bytes)"),
        ("scsi.config.defaults", "§5.6.4.2", "sense_size reads 96 and cdb_size 32 on a freshly reset device"),
        ("scsi.config.hints", "§5.6.4", "max_channel is 0, max_target at most 255, max_lun at most 16383 (SHOULDs)"),
    ];
    let mut bytes = [0u8; SCSI_CONFIG_SIZE];
    if !read_config_for(ctx, t, IDS, &mut bytes) {
        return;
    }
    let c = ScsiConfig::new_unchecked(&bytes[..]);
    ctx.note(format!(
        "config: num_queues {}, seg_max {}, max_sectors {}, cmd_per_lun {}, event_info_size {}, \
         sense_size {}, cdb_size {}, max_channel {}, max_target {}, max_lun {}",
        c.num_queues(),
        c.seg_max(),
        c.max_sectors(),
        c.cmd_per_lun(),
        c.event_info_size(),
        c.sense_size(),
        c.cdb_size(),
        c.max_channel(),
        c.max_target(),
        c.max_lun()
    ));
    let zero: Vec<&str> = [
        ("seg_max", c.seg_max()),
        ("max_sectors", c.max_sectors()),
        ("cmd_per_lun", c.cmd_per_lun()),
    ]
    .iter()
    .filter(|(_, v)| *v == 0)
    .map(|(n, _)| *n)
    .collect();
    let events = offered.contains(VIRTIO_SCSI_F_HOTPLUG) || offered.contains(VIRTIO_SCSI_F_CHANGE);
    let outcomes = [
        if c.num_queues() == 0 {
            Outcome::Fail("num_queues is 0".into())
        } else if t.has_protocol(protocol::MQ)
            && u64::from(c.num_queues()) + 2 != u64::from(t.num_queues())
        {
            Outcome::Fail(format!(
                "num_queues is {}, GET_QUEUE_NUM says {} (controlq + eventq + request queues)",
                c.num_queues(),
                t.num_queues()
            ))
        } else {
            Outcome::Pass
        },
        if zero.is_empty() {
            Outcome::Pass
        } else {
            Outcome::Fail(format!("{} is 0", zero.join(", ")))
        },
        if !events {
            Outcome::Skip(
                "neither VIRTIO_SCSI_F_HOTPLUG nor VIRTIO_SCSI_F_CHANGE is offered".into(),
            )
        } else if (c.event_info_size() as usize) < SCSI_EVENT_SIZE {
            Outcome::Fail(format!("event_info_size is {}", c.event_info_size()))
        } else {
            Outcome::Pass
        },
        if c.sense_size() == VIRTIO_SCSI_SENSE_DEFAULT_SIZE
            && c.cdb_size() == VIRTIO_SCSI_CDB_DEFAULT_SIZE
        {
            Outcome::Pass
        } else {
            Outcome::Fail(format!(
                "sense_size {}, cdb_size {}",
                c.sense_size(),
                c.cdb_size()
            ))
        },
        if c.max_channel() != 0 || c.max_target() > 255 || c.max_lun() > 16383 {
            Outcome::Fail(format!(
                "max_channel {}, max_target {}, max_lun {}",
                c.max_channel(),
                c.max_target(),
                c.max_lun()
            ))
        } else {
            Outcome::Pass
        },
    ];
    for (o, &(id, sec, desc)) in outcomes.into_iter().zip(IDS) {
        ctx.record(id, sec, desc, Ok(o));
    }
}

/// The checks of the main session after initialization, in order.
const MAIN_CHECKS: &[(&str, &str, &str)] = &[
    ("scsi.eventq", "§5.6.6.3", "the device takes the event buffers (at least event_info_size bytes each) and whatever it returns is a valid event"),
    ("scsi.report-luns", "§5.6.6.1", "REPORT LUNS on every target up to max_target: GOOD with a LUN list, or VIRTIO_SCSI_S_BAD_TARGET for a target that does not exist; at least one LUN"),
    ("scsi.inquiry", "§5.6.6.1", "standard INQUIRY of each LUN: GOOD, at least 36 bytes, peripheral qualifier 0, response data format 2, printable identification"),
    ("scsi.inquiry.vpd", "§5.6.6.1", "INQUIRY VPD page 00h and every page it lists: GOOD, right page code and device type, length consistent"),
    ("scsi.test-unit-ready", "§5.6.6.1", "TEST UNIT READY on each LUN is GOOD (after at most one UNIT ATTENTION)"),
    ("scsi.read-capacity", "§5.6.6.1", "READ CAPACITY (10) and (16) agree; the block size is a power of two, at least 512"),
    ("scsi.read-write", "§5.6.6.1", "READ/WRITE (16) round trip of 8 blocks on each LUN (original data restored and verified; a write-protected LUN refuses with DATA PROTECT and keeps its data)"),
    ("scsi.unsupported-opcode", "§5.6.6.1.1", "an unsupported opcode is answered VIRTIO_SCSI_S_OK with CHECK CONDITION, sense key ILLEGAL REQUEST, sense_len within sense_size"),
    ("scsi.absent-lun", "§5.6.6.1.1", "INQUIRY and TEST UNIT READY to a LUN the target does not list: peripheral qualifier 3 / ILLEGAL REQUEST (or VIRTIO_SCSI_S_BAD_TARGET), never GOOD"),
    ("scsi.bad-target", "§5.6.6.1.1", "a command to a target that does not exist is answered VIRTIO_SCSI_S_BAD_TARGET"),
    ("scsi.cmd-per-lun", "§5.6.4", "cmd_per_lun commands (at most the queue size, 32) in flight to one LUN all complete GOOD, once each, with the right data"),
    ("scsi.all-queues", "§5.6.6.1", "every request queue used serves commands (READs in flight on each)"),
    ("scsi.tmf", "§5.6.6.2", "LOGICAL UNIT RESET answered FUNCTION COMPLETE/SUCCEEDED; ABORT TASK of a finished command answered with a TMF response; the LUN works afterwards"),
];

const RESET_CHECKS: &[(&str, &str, &str)] = &[
    ("reset.status", "§2.4.1", "after a reset the device status reads 0"),
    ("reset.reinit", "§2.4", "after a reset the device initializes again and the first LUN is ready with the same capacity"),
];

/// What discovery found.
struct Found {
    lus: Vec<Lu>,
    /// Per target with LUNs, the LUNs it lists.
    targets: Vec<(u8, Vec<u16>)>,
    /// A target that answered BAD_TARGET (or one above `max_target`).
    absent: Option<u8>,
}

/// The main session. Returns the logical units found.
fn main_session(ctx: &mut Ctx, t: VhostUserTransport, has_status: bool) -> Vec<Lu> {
    let mem = t.memory().clone();
    let nq = t.num_queues().saturating_sub(2).clamp(1, MAX_QUEUES);
    let (id, sec, desc) = (
        "scsi.init",
        "§5.6.5",
        "driver initialization: negotiation, configuration, controlq, eventq with buffers, every request queue (up to 4), DRIVER_OK (§3.1.1)",
    );
    let init = Drv::new(t, mem, options(RingPreference::Auto, nq))
        .map_err(anyhow::Error::new)
        .and_then(Scsi::new);
    let mut s = match init {
        Ok(s) => {
            ctx.record(id, sec, desc, Ok(Outcome::Pass));
            s
        }
        Err(e) => {
            ctx.record(id, sec, desc, Err(e));
            let why = "not run: initialization failed";
            ctx.record("status.driver-ok", "§3.1.1", "after initialization the device status reads ACKNOWLEDGE|DRIVER|FEATURES_OK|DRIVER_OK", Ok(Outcome::Skip(why.into())));
            skip_all(ctx, MAIN_CHECKS, why);
            skip_all(ctx, RESET_CHECKS, why);
            return Vec::new();
        }
    };
    check_driver_ok(ctx, s.d.transport());
    ctx.note(format!(
        "main session: {} request queue(s), {} ring, features negotiated: {}, at most {} commands per LUN",
        s.d.num_queues(),
        if s.d.ring_format() == ringwork_queue::RingFormat::Packed { "packed" } else { "split" },
        super::common::feature_names(s.d.features(), FEATURE_NAMES),
        s.d.lun_limit()
    ));
    let mut results: Vec<anyhow::Result<Outcome>> = vec![eventq(&mut s)];
    let found = match discover(&mut s) {
        Ok((o, f)) => {
            results.push(Ok(o));
            f
        }
        Err(e) => {
            results.push(Err(e));
            Found {
                lus: Vec::new(),
                targets: Vec::new(),
                absent: None,
            }
        }
    };
    ctx.note(format!(
        "logical units: {}",
        if found.lus.is_empty() {
            "none".to_owned()
        } else {
            found
                .lus
                .iter()
                .map(|(t, l)| format!("{t}:{l}"))
                .collect::<Vec<_>>()
                .join(" ")
        }
    ));
    let mut warnings = Vec::new();
    if found.lus.is_empty() {
        let why = "no logical unit found";
        // inquiry .. absent-lun, then bad-target, then the rest.
        for _ in 2..9 {
            results.push(Ok(Outcome::Skip(why.into())));
        }
        results.push(bad_target(&mut s, found.absent));
        for _ in 10..MAIN_CHECKS.len() {
            results.push(Ok(Outcome::Skip(why.into())));
        }
    } else {
        let lus: Vec<Lu> = found.lus.iter().copied().take(MAX_LUS).collect();
        let seed = ctx.seed;
        let mut caps = Vec::new();
        let (mut inq, mut vpd, mut tur, mut cap, mut rw) = (vec![], vec![], vec![], vec![], vec![]);
        for &lu in &lus {
            let r = s.inquiry(lu);
            let dt = r.as_ref().map_or(0, |(_, dt)| *dt);
            inq.push(r.map(|(o, _)| o));
            vpd.push(s.vpd(lu, dt));
            tur.push(s.ready(lu));
            let c = s.capacity(lu);
            caps.push(c.as_ref().ok().and_then(|(_, c)| *c));
            cap.push(c.map(|(o, _)| o));
        }
        for (&lu, c) in lus.iter().zip(&caps) {
            rw.push(match *c {
                Some((blocks, bs)) if blocks >= 64 => {
                    s.round_trip(lu, blocks / 2, 8, bs, seed, &mut warnings)
                }
                Some(_) => Ok(Outcome::Skip(format!(
                    "{}:{}: fewer than 64 blocks",
                    lu.0, lu.1
                ))),
                None => Ok(Outcome::Skip("READ CAPACITY failed".into())),
            });
        }
        for v in [inq, vpd, tur, cap, rw] {
            results.push(combine(v));
        }
        let first = lus[0];
        let geometry = caps[0];
        results.push(unsupported_opcode(&mut s, first));
        results.push(absent_lun(&mut s, &found.targets));
        results.push(bad_target(&mut s, found.absent));
        results.push(match geometry {
            Some((blocks, bs)) if blocks >= 64 => {
                let n = (s.d.lun_limit() as usize).min(32);
                s.concurrent_reads(first, 0, n, blocks / 4, bs)
            }
            _ => Ok(Outcome::Skip("no usable capacity on the first LUN".into())),
        });
        results.push(match geometry {
            Some((blocks, bs)) if blocks >= 64 => all_queues(&mut s, first, blocks, bs),
            _ => Ok(Outcome::Skip("no usable capacity on the first LUN".into())),
        });
        results.push(tmf(&mut s, first));
    }
    for (r, &(id, sec, desc)) in results.into_iter().zip(MAIN_CHECKS) {
        ctx.record(id, sec, desc, r);
    }
    ctx.report.notes.append(&mut warnings);
    ctx.observe(s.d.transport(), "main session");
    let capacity = found.lus.first().and_then(|&lu| s.capacity(lu).ok()?.1);
    let det = s.finish();
    check_reset_status(ctx, has_status, &det.reset);
    let (id, sec, desc) = RESET_CHECKS[1];
    let r = match found.lus.first() {
        None => Ok(Outcome::Skip("no logical unit found".into())),
        Some(&lu) => {
            let mem = det.transport.memory().clone();
            Drv::new(det.transport, mem, options(RingPreference::Auto, 1))
                .map_err(anyhow::Error::new)
                .and_then(Scsi::new)
                .context("initialization after the reset")
                .and_then(|mut s| {
                    let r = (|| {
                        let ready = s.ready(lu)?;
                        let again = s.capacity(lu)?.1;
                        Ok(first_problem([
                            ready,
                            if again == capacity {
                                Outcome::Pass
                            } else {
                                Outcome::Fail(format!(
                                    "capacity {again:?} after the reset, {capacity:?} before"
                                ))
                            },
                        ]))
                    })();
                    ctx.observe(s.d.transport(), "session after reset");
                    let _ = s.finish();
                    r
                })
        }
    };
    ctx.record(id, sec, desc, r);
    found.lus
}

/// The first failure among per-LUN results (errors become failures), or
/// a pass when at least one passed.
fn combine(v: Vec<anyhow::Result<Outcome>>) -> anyhow::Result<Outcome> {
    let mut skip = None;
    let mut passed = false;
    for r in v {
        match r? {
            Outcome::Pass => passed = true,
            Outcome::Skip(s) => skip = Some(s),
            f => return Ok(f),
        }
    }
    Ok(match (passed, skip) {
        (true, _) => Outcome::Pass,
        (false, Some(s)) => Outcome::Skip(s),
        (false, None) => Outcome::Skip("no logical unit".into()),
    })
}

/// `scsi.eventq`: the event buffers stay with the device (or come back as
/// valid events) for a moment after initialization.
fn eventq(s: &mut Scsi<VhostUserTransport>) -> anyhow::Result<Outcome> {
    if s.d.event_buffers() == 0 {
        return Ok(Outcome::Fail(
            "no event buffer could be made available".into(),
        ));
    }
    let t0 = Instant::now();
    let mut seen = Vec::new();
    while t0.elapsed() < Duration::from_millis(200) {
        match s.d.poll_event() {
            Ok(Some(e)) => {
                if ![
                    VIRTIO_SCSI_T_NO_EVENT,
                    VIRTIO_SCSI_T_TRANSPORT_RESET,
                    VIRTIO_SCSI_T_ASYNC_NOTIFY,
                    VIRTIO_SCSI_T_PARAM_CHANGE,
                ]
                .contains(&e.event)
                {
                    return Ok(Outcome::Fail(format!(
                        "event type {:#x} is not defined",
                        e.event
                    )));
                }
                seen.push(e.event);
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Ok(Outcome::Fail(format!("{e}"))),
        }
    }
    Ok(Outcome::Pass)
}

/// REPORT LUNS on every target up to `max_target`.
fn discover(s: &mut Scsi<VhostUserTransport>) -> anyhow::Result<(Outcome, Found)> {
    let max_target = s.d.config().max_target.min(255) as u8;
    let mut f = Found {
        lus: Vec::new(),
        targets: Vec::new(),
        absent: None,
    };
    for target in 0..=max_target {
        let mut r = s.d.report_luns(target);
        if let Err(ScsiError::Failed { sense, .. }) = &r {
            if super::scsi_cmd::sense_key(sense).map(|k| k.0)
                == Some(super::scsi_cmd::UNIT_ATTENTION)
            {
                r = s.d.report_luns(target);
            }
        }
        match r {
            Ok(luns) => {
                if luns.is_empty() {
                    continue;
                }
                f.lus.extend(luns.iter().map(|&l| (target, l)));
                f.targets.push((target, luns));
            }
            Err(ScsiError::Failed {
                response: ScsiResponse::BadTarget,
                ..
            }) => {
                f.absent.get_or_insert(target);
            }
            Err(ScsiError::Failed {
                response,
                status,
                sense,
            }) => {
                let c = ringwork_driver::scsi::ScsiCompletion {
                    token: (),
                    response,
                    status,
                    status_qualifier: 0,
                    sense,
                    residual: 0,
                    clamped: false,
                };
                return Ok((
                    Outcome::Fail(format!("REPORT LUNS on target {target}: {}", describe(&c))),
                    f,
                ));
            }
            Err(e) => {
                return Err(anyhow::Error::new(e).context(format!("REPORT LUNS on target {target}")))
            }
        }
    }
    if f.absent.is_none() && max_target < 255 {
        f.absent = Some(max_target + 1);
    }
    let o = if f.lus.is_empty() {
        Outcome::Fail(format!("no target up to {max_target} lists a LUN"))
    } else {
        Outcome::Pass
    };
    Ok((o, f))
}

fn unsupported_opcode(s: &mut Scsi<VhostUserTransport>, lu: Lu) -> anyhow::Result<Outcome> {
    s.ready(lu)?;
    let c = s.cmd(lu, &[UNSUPPORTED_OPCODE, 0, 0, 0, 0, 0])?;
    Ok(if c.clamped {
        Outcome::Fail(format!(
            "opcode {UNSUPPORTED_OPCODE:#04x}: sense_len or residual out of range ({})",
            describe(&c)
        ))
    } else if is_check(&c, ILLEGAL_REQUEST) {
        Outcome::Pass
    } else {
        Outcome::Fail(format!(
            "opcode {UNSUPPORTED_OPCODE:#04x}: {}",
            describe(&c)
        ))
    })
}

fn absent_lun(
    s: &mut Scsi<VhostUserTransport>,
    targets: &[(u8, Vec<u16>)],
) -> anyhow::Result<Outcome> {
    let max_lun = s.d.config().max_lun.min(16383) as u16;
    let Some((target, lun)) = targets
        .iter()
        .find_map(|(t, luns)| (0..=max_lun).find(|l| !luns.contains(l)).map(|l| (*t, l)))
    else {
        return Ok(Outcome::Skip("every LUN up to max_lun exists".into()));
    };
    let lu = (target, lun);
    let name = format!("{target}:{lun}");
    let (c, d) = s.cmd_in(lu, &[0x12, 0, 0, 0, 0xff, 0], 255)?;
    let inq = if c.response == ScsiResponse::BadTarget {
        Outcome::Pass
    } else if !c.is_good() {
        if is_check(&c, ILLEGAL_REQUEST) {
            Outcome::Pass
        } else {
            Outcome::Fail(format!("INQUIRY on absent LUN {name}: {}", describe(&c)))
        }
    } else if d.first().is_some_and(|b| b >> 5 == 3 || b >> 5 == 1) {
        Outcome::Pass
    } else {
        Outcome::Fail(format!(
            "INQUIRY on absent LUN {name}: GOOD with peripheral qualifier {:?} (3 expected)",
            d.first().map(|b| b >> 5)
        ))
    };
    let c = s.cmd(lu, &[0; 6])?;
    let tur = if c.response == ScsiResponse::BadTarget || is_check(&c, ILLEGAL_REQUEST) {
        Outcome::Pass
    } else {
        Outcome::Fail(format!(
            "TEST UNIT READY on absent LUN {name}: {}",
            describe(&c)
        ))
    };
    Ok(first_problem([inq, tur]))
}

fn bad_target(s: &mut Scsi<VhostUserTransport>, absent: Option<u8>) -> anyhow::Result<Outcome> {
    let Some(target) = absent else {
        return Ok(Outcome::Skip("every target up to 255 exists".into()));
    };
    let c = s.cmd((target, 0), &[0; 6])?;
    Ok(if c.response == ScsiResponse::BadTarget {
        Outcome::Pass
    } else {
        Outcome::Fail(format!(
            "TEST UNIT READY to target {target} (no LUN listed): {}",
            describe(&c)
        ))
    })
}

fn all_queues(
    s: &mut Scsi<VhostUserTransport>,
    lu: Lu,
    blocks: u64,
    bs: u32,
) -> anyhow::Result<Outcome> {
    let nq = s.d.num_queues();
    if nq < 2 {
        return Ok(Outcome::Skip("one request queue (num_queues 1)".into()));
    }
    let mut v = Vec::new();
    for q in 0..nq {
        v.push(s.concurrent_reads(lu, q, 4, blocks / 8 + u64::from(q) * 8, bs)?);
    }
    Ok(first_problem(v))
}

fn tmf(s: &mut Scsi<VhostUserTransport>, lu: Lu) -> anyhow::Result<Outcome> {
    let r =
        s.d.task_management(lu.0, lu.1, VIRTIO_SCSI_T_TMF_LOGICAL_UNIT_RESET, 0)?;
    if !matches!(r, ScsiResponse::Ok | ScsiResponse::FunctionSucceeded) {
        return Ok(Outcome::Fail(format!("LOGICAL UNIT RESET answered {r}")));
    }
    let r =
        s.d.task_management(lu.0, lu.1, VIRTIO_SCSI_T_TMF_ABORT_TASK, 1)?;
    if !matches!(
        r,
        ScsiResponse::Ok | ScsiResponse::FunctionSucceeded | ScsiResponse::FunctionRejected
    ) {
        return Ok(Outcome::Fail(format!(
            "ABORT TASK of a finished command answered {r}"
        )));
    }
    s.ready(lu)
}

fn ring_session(ctx: &mut Ctx, pref: RingPreference, fmt: &str, lu: Lu) -> anyhow::Result<Outcome> {
    let t = ctx.connect()?;
    let mem = t.memory().clone();
    let mut s = Drv::new(t, mem, options(pref, 1))
        .map_err(anyhow::Error::new)
        .and_then(Scsi::new)
        .context("driver initialization")?;
    let mut warnings = Vec::new();
    let seed = ctx.seed ^ 0x5c51;
    let r = (|| {
        let ready = s.ready(lu)?;
        let Some((blocks, bs)) = s.capacity(lu)?.1 else {
            anyhow::bail!("READ CAPACITY failed");
        };
        if blocks < 64 {
            return Ok(Outcome::Skip("fewer than 64 blocks".into()));
        }
        let rw = s.round_trip(lu, blocks / 2 + 16, 8, bs, seed, &mut warnings)?;
        let n = (s.d.lun_limit() as usize).min(16);
        let fl = s.concurrent_reads(lu, 0, n, blocks / 4, bs)?;
        Ok(first_problem([ready, rw, fl]))
    })();
    ctx.report.notes.append(&mut warnings);
    ctx.observe(s.d.transport(), &format!("{fmt} session"));
    let _ = s.finish();
    r
}

fn subset(ctx: &mut Ctx, offered: FeatureSet, lu: Lu) -> anyhow::Result<Outcome> {
    let inner = ctx.connect()?;
    let mem = inner.memory().clone();
    let t = Masked {
        inner,
        hide: all_but_version_1(offered),
    };
    let mut s = Drv::new(t, mem, options(RingPreference::Split, 1))
        .map_err(anyhow::Error::new)
        .and_then(Scsi::new)
        .context("driver initialization")?;
    let r = (|| {
        if s.d.features() != FeatureSet::from_bits(&[VIRTIO_F_VERSION_1]) {
            anyhow::bail!("negotiated {:?} instead of VERSION_1 alone", s.d.features());
        }
        let ready = s.ready(lu)?;
        let (o, _) = s.inquiry(lu)?;
        Ok(first_problem([ready, o]))
    })();
    ctx.observe(&mut s.d.transport().inner, "minimal-features session");
    let _ = s.finish();
    r
}
