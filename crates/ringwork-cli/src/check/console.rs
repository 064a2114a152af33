//! The console suite (VIRTIO 1.4 §5.3): the emergency write on an
//! unconfigured device (§5.3.5.1), the queues and `max_nr_ports`
//! (§5.3.2, §5.3.4), the multiport control handshake — ports announced
//! after DEVICE_READY, valid port numbers, names (§5.3.6.2) — output on
//! every port, single-port operation in split and packed rings; plus the
//! common feature, status, reset and subset checks.
//!
//! Output is written to the device's ports ("ringwork check" lines); input
//! cannot be checked without a peer on the host side.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use ringwork_driver::console::{
    ConsoleDriver, ConsoleError, ConsoleEvent, ConsoleOptions, ControlError,
};
use ringwork_driver::RingPreference;
use ringwork_spec::console::{
    CONSOLE_CONFIG_EMERG_WR_OFFSET, CONSOLE_FEATURE_RULES, VIRTIO_CONSOLE_F_EMERG_WRITE,
    VIRTIO_CONSOLE_F_MULTIPORT, VIRTIO_CONSOLE_F_SIZE,
};
use ringwork_spec::features::{
    FeatureSet, VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC, VIRTIO_F_IN_ORDER,
    VIRTIO_F_RING_PACKED, VIRTIO_F_VERSION_1,
};
use ringwork_transport::driver::{self, Transport};
use ringwork_vhost_user::msg::protocol;
use ringwork_vhost_user::{SharedMemory, VhostUserTransport};

use super::common::{
    all_but_version_1, check_driver_ok, check_reset_status, feature_checks, features_ok_outcome,
    offered_features, poll_quiet, Ctx, Masked,
};
use super::report::Outcome;

type Console<T> = ConsoleDriver<T, Arc<SharedMemory>>;

/// The console feature bits, with their names.
const FEATURE_NAMES: &[(u32, &str)] = &[
    (VIRTIO_CONSOLE_F_SIZE, "VIRTIO_CONSOLE_F_SIZE"),
    (VIRTIO_CONSOLE_F_MULTIPORT, "VIRTIO_CONSOLE_F_MULTIPORT"),
    (VIRTIO_CONSOLE_F_EMERG_WRITE, "VIRTIO_CONSOLE_F_EMERG_WRITE"),
];

/// How long the device may stay silent before the port announcements are
/// taken as complete.
const QUIET: Duration = Duration::from_millis(500);

const MULTIPORT_CHECKS: &[(&str, &str, &str)] = &[
    (
        "console.multiport.ports",
        "§5.3.6.2.1",
        "after DEVICE_READY the device adds ports, each once, each below max_nr_ports",
    ),
    (
        "console.multiport.names",
        "§5.3.6.2",
        "PORT_NAME messages name added ports in UTF-8",
    ),
    (
        "console.multiport.tx",
        "§5.3.6",
        "output on every added port (after PORT_OPEN) is used by the device",
    ),
];

fn opts(multiport: bool, ring: RingPreference) -> ConsoleOptions {
    ConsoleOptions {
        multiport,
        ring,
        ..ConsoleOptions::default()
    }
}

/// Runs the console suite; `t` is the identifying connection.
pub(crate) fn run(ctx: &mut Ctx, mut t: VhostUserTransport) {
    let offered = offered_features(ctx, &mut t);
    feature_checks(ctx, offered, &[CONSOLE_FEATURE_RULES], FEATURE_NAMES);
    let has_status = t.has_protocol(protocol::STATUS);
    let r = emergency_write(&mut t, offered);
    ctx.record(
        "console.emerg-write",
        "§5.3.5.1",
        "a write to emerg_wr is accepted on an unconfigured device",
        r,
    );
    let supports = FeatureSet::from_bits(&[
        VIRTIO_F_VERSION_1,
        VIRTIO_F_EVENT_IDX,
        VIRTIO_F_INDIRECT_DESC,
        VIRTIO_F_IN_ORDER,
        VIRTIO_F_RING_PACKED,
        VIRTIO_CONSOLE_F_SIZE,
        VIRTIO_CONSOLE_F_MULTIPORT,
        VIRTIO_CONSOLE_F_EMERG_WRITE,
    ]);
    let negotiated = driver::negotiate(&mut t, supports, CONSOLE_FEATURE_RULES);
    ctx.record(
        "status.features-ok",
        "§2.2.2",
        "the device keeps FEATURES_OK for the feature subset the driver accepts",
        Ok(features_ok_outcome(
            has_status,
            negotiated.as_ref().map(|_| ()).map_err(|e| e.to_string()),
        )),
    );
    let r = queues(ctx, &mut t, offered);
    ctx.record(
        "console.queues",
        "§5.3.2",
        "port 0's queues exist; with MULTIPORT, max_nr_ports >= 1 and the control and port queues exist",
        r,
    );
    main_session(ctx, t, has_status, offered);
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
            single_port(ctx, pref, fmt)
        };
        ctx.record(
            format!("console.{fmt}.port0-tx"),
            sec,
            "single-port operation (MULTIPORT not negotiated) with these virtqueues: output on port 0 is used",
            r,
        );
    }
    let r = subset(ctx, offered);
    ctx.record(
        "features.subset",
        "§2.2.2",
        "the device accepts the minimal feature subset (VERSION_1 only) and serves port 0 with it",
        r,
    );
}

fn emergency_write(t: &mut VhostUserTransport, offered: FeatureSet) -> anyhow::Result<Outcome> {
    if !offered.contains(VIRTIO_CONSOLE_F_EMERG_WRITE) {
        return Ok(Outcome::Skip(
            "VIRTIO_CONSOLE_F_EMERG_WRITE is not offered".into(),
        ));
    }
    if !t.has_protocol(protocol::CONFIG) {
        return Ok(Outcome::Skip(
            "backend lacks VHOST_USER_PROTOCOL_F_CONFIG: emerg_wr is not writable".into(),
        ));
    }
    let fe = t.frontend();
    fe.set_config(
        CONSOLE_CONFIG_EMERG_WR_OFFSET as u32,
        &u32::from(b'\n').to_le_bytes(),
    )
    .context("SET_CONFIG of emerg_wr")?;
    // The connection must survive it (without REPLY_ACK nothing else
    // tells).
    fe.get_features()
        .context("the next request after the write")?;
    Ok(Outcome::Pass)
}

fn queues(
    ctx: &mut Ctx,
    t: &mut VhostUserTransport,
    offered: FeatureSet,
) -> anyhow::Result<Outcome> {
    let mut raw = [0u8; 12];
    if t.has_protocol(protocol::CONFIG) {
        t.read_config(0, &mut raw);
    }
    let cols = u16::from_le_bytes([raw[0], raw[1]]);
    let rows = u16::from_le_bytes([raw[2], raw[3]]);
    let max_nr_ports = u32::from_le_bytes([raw[4], raw[5], raw[6], raw[7]]);
    if offered.contains(VIRTIO_CONSOLE_F_SIZE) {
        ctx.note(format!("config: console size {cols}x{rows}"));
    }
    if !t.has_protocol(protocol::MQ) {
        return Ok(Outcome::Skip(
            "backend lacks VHOST_USER_PROTOCOL_F_MQ: the queue count is not observable".into(),
        ));
    }
    let n = u32::from(t.num_queues());
    ctx.note(format!("vhost-user: {n} queues (GET_QUEUE_NUM)"));
    if n < 2 {
        return Ok(Outcome::Fail(format!(
            "{n} queues: port 0 needs receiveq and transmitq"
        )));
    }
    if !offered.contains(VIRTIO_CONSOLE_F_MULTIPORT) {
        return Ok(Outcome::Pass);
    }
    if !t.has_protocol(protocol::CONFIG) {
        return Ok(Outcome::Skip(
            "backend lacks VHOST_USER_PROTOCOL_F_CONFIG: max_nr_ports is not readable".into(),
        ));
    }
    ctx.note(format!("config: max_nr_ports {max_nr_ports}"));
    if max_nr_ports == 0 {
        return Ok(Outcome::Fail(
            "max_nr_ports is 0 (port 0 always exists)".into(),
        ));
    }
    let need = 2 * u64::from(max_nr_ports) + 2;
    if u64::from(n) < need {
        return Ok(Outcome::Fail(format!(
            "{n} queues, but max_nr_ports {max_nr_ports} needs {need}"
        )));
    }
    Ok(Outcome::Pass)
}

/// What the port announcements looked like.
#[derive(Default)]
struct Announced {
    ports: Vec<u32>,
    named: Vec<(u32, String)>,
    port_errors: Vec<String>,
    name_errors: Vec<String>,
}

fn announcements<T: Transport>(d: &mut Console<T>, limit: Duration) -> anyhow::Result<Announced> {
    let mut a = Announced::default();
    poll_quiet(QUIET, limit, || match d.poll() {
        Ok(Some(ConsoleEvent::PortAdded { port })) => {
            a.ports.push(port);
            Ok(true)
        }
        Ok(Some(ConsoleEvent::PortName { port, name })) => {
            a.named.push((port, name));
            Ok(true)
        }
        Ok(Some(_)) => Ok(true),
        Ok(None) => Ok(false),
        Err(ConsoleError::Control(e)) => {
            match e {
                ControlError::BadName { .. } => a.name_errors.push(e.to_string()),
                _ => a.port_errors.push(e.to_string()),
            }
            Ok(true)
        }
        Err(e) => Err(e.into()),
    })?;
    Ok(a)
}

fn main_session(ctx: &mut Ctx, t: VhostUserTransport, has_status: bool, offered: FeatureSet) {
    let mem = t.memory().clone();
    let (id, sec, desc) = (
        "console.init",
        "§5.3.5",
        "driver initialization: negotiation, queues, receive buffers, DRIVER_OK, DEVICE_READY with MULTIPORT (§3.1.1)",
    );
    let mut d = match Console::new(t, mem, opts(true, RingPreference::Auto)) {
        Ok(d) => {
            ctx.record(id, sec, desc, Ok(Outcome::Pass));
            d
        }
        Err(e) => {
            ctx.record(id, sec, desc, Err(e.into()));
            let why = "not run: initialization failed";
            ctx.record("status.driver-ok", "§3.1.1", "after initialization the device status reads ACKNOWLEDGE|DRIVER|FEATURES_OK|DRIVER_OK", Ok(Outcome::Skip(why.into())));
            for &(id, sec, desc) in MULTIPORT_CHECKS {
                ctx.record(id, sec, desc, Ok(Outcome::Skip(why.into())));
            }
            ctx.record(
                "reset.status",
                "§2.4.1",
                "after a reset the device status reads 0",
                Ok(Outcome::Skip(why.into())),
            );
            ctx.record(
                "reset.reinit",
                "§2.4",
                "after a reset the device initializes again and serves port 0",
                Ok(Outcome::Skip(why.into())),
            );
            return;
        }
    };
    check_driver_ok(ctx, d.transport());
    if !d.is_multiport() {
        let why = if offered.contains(VIRTIO_CONSOLE_F_MULTIPORT) {
            "VIRTIO_CONSOLE_F_MULTIPORT was not negotiated"
        } else {
            "VIRTIO_CONSOLE_F_MULTIPORT is not offered"
        };
        for &(id, sec, desc) in MULTIPORT_CHECKS {
            ctx.record(id, sec, desc, Ok(Outcome::Skip(why.into())));
        }
    } else {
        let limit = ctx.opts.timeout;
        match announcements(&mut d, limit) {
            Err(e) => {
                let e = format!("{e:#}");
                for &(id, sec, desc) in MULTIPORT_CHECKS {
                    ctx.record(id, sec, desc, Ok(Outcome::Fail(e.clone())));
                }
            }
            Ok(a) => multiport_checks(ctx, &mut d, a),
        }
    }
    ctx.observe(d.transport(), "main session");
    let det = d.reset();
    check_reset_status(ctx, has_status, &det.reset);
    let mem = det.transport.memory().clone();
    let r = Console::new(det.transport, mem, opts(false, RingPreference::Auto))
        .context("initialization after the reset")
        .and_then(|mut d| {
            let r = d
                .write(0, b"ringwork check: after reset\n")
                .map(|()| Outcome::Pass);
            ctx.observe(d.transport(), "session after reset");
            let _ = d.reset();
            r.map_err(Into::into)
        });
    ctx.record(
        "reset.reinit",
        "§2.4",
        "after a reset the device initializes again and serves port 0",
        r,
    );
}

fn multiport_checks<T: Transport>(ctx: &mut Ctx, d: &mut Console<T>, a: Announced) {
    let ports: Vec<u32> = d.ports().collect();
    ctx.note(format!(
        "ports announced: {ports:?}, names: {}",
        if a.named.is_empty() {
            "none".to_owned()
        } else {
            a.named
                .iter()
                .map(|(p, n)| format!("{p}={n}"))
                .collect::<Vec<_>>()
                .join(" ")
        }
    ));
    let r = if !a.port_errors.is_empty() {
        Outcome::Fail(a.port_errors.join("; "))
    } else if a.ports.is_empty() {
        Outcome::Fail(format!(
            "no port was added within {:?} after DEVICE_READY",
            ctx.opts.timeout
        ))
    } else {
        Outcome::Pass
    };
    let (id, sec, desc) = MULTIPORT_CHECKS[0];
    ctx.record(id, sec, desc, Ok(r));
    let r = if !a.name_errors.is_empty() {
        Outcome::Fail(a.name_errors.join("; "))
    } else if a.named.is_empty() {
        Outcome::Skip("the device named no port".into())
    } else {
        Outcome::Pass
    };
    let (id, sec, desc) = MULTIPORT_CHECKS[1];
    ctx.record(id, sec, desc, Ok(r));
    let r = (|| -> anyhow::Result<Outcome> {
        if ports.is_empty() {
            return Ok(Outcome::Skip("no port was added".into()));
        }
        for &p in &ports {
            d.open_port(p)
                .with_context(|| format!("PORT_OPEN for port {p}"))?;
            d.write(p, format!("ringwork check: port {p}\n").as_bytes())
                .with_context(|| format!("output on port {p}"))?;
        }
        Ok(Outcome::Pass)
    })();
    let (id, sec, desc) = MULTIPORT_CHECKS[2];
    ctx.record(id, sec, desc, r);
}

/// Port 0 without MULTIPORT: 3 KiB of output (three transmit buffers).
fn port0_output<T: Transport>(d: &mut Console<T>) -> anyhow::Result<Outcome> {
    let mut line = b"ringwork check: port 0 output\n".repeat(104);
    line.truncate(3000);
    line.push(b'\n');
    d.write(0, &line).context("output on port 0")?;
    Ok(Outcome::Pass)
}

fn single_port(ctx: &mut Ctx, pref: RingPreference, fmt: &str) -> anyhow::Result<Outcome> {
    let t = ctx.connect()?;
    let mem = t.memory().clone();
    let mut d = Console::new(t, mem, opts(false, pref)).context("driver initialization")?;
    let r = port0_output(&mut d);
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
    let mut d = Console::new(t, mem, opts(false, RingPreference::Split))
        .context("driver initialization")?;
    let r = (|| {
        if d.features() != FeatureSet::from_bits(&[VIRTIO_F_VERSION_1]) {
            anyhow::bail!("negotiated {:?} instead of VERSION_1 alone", d.features());
        }
        port0_output(&mut d)
    })();
    ctx.observe(&mut d.transport().inner, "minimal-features session");
    let _ = d.reset();
    r
}
