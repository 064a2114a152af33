//! What every device type's suite shares: the context ([`Ctx`]) that
//! connects sessions and records results, the feature-bit checks every
//! device must pass (§2.2.2, §6.2), the status and reset checks (§2.1,
//! §2.4, §3.1.1), device-error bookkeeping, and the bounded wait a
//! non-blocking driver needs.
//!
//! A *session* is one vhost-user connection: a suite opens a new one
//! whenever a check needs a freshly initialized device (the backend serves
//! the next frontend after a disconnect).

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use ringwork_spec::device_id::DeviceType;
use ringwork_spec::features::{
    violations, FeatureRule, FeatureSet, TRANSPORT_FEATURES, TRANSPORT_RULES, VIRTIO_F_VERSION_1,
};
use ringwork_spec::status::DeviceStatus;
use ringwork_transport::driver::{Transport, TransportError};
use ringwork_vhost_user::msg::protocol;
use ringwork_vhost_user::{TransportOptions, VhostUserTransport};

use super::report::{CheckResult, Outcome, Report};
use super::CheckOptions;

/// Shared memory per session: rings, request slots and data buffers.
pub(crate) const SESSION_MEMORY: usize = 32 << 20;

/// Wake-ups a wait tolerates without progress before giving up (each is
/// bounded by the timeout; this only stops a device that keeps sending
/// spurious notifications).
pub(crate) const MAX_WAKEUPS: u32 = 100_000;

/// The state of one `ringwork check` run.
pub(crate) struct Ctx {
    /// What the user asked for.
    pub opts: CheckOptions,
    /// The device type being checked.
    pub device_type: DeviceType,
    /// The report being built.
    pub report: Report,
    /// Device errors seen in any session (DEVICE_NEEDS_RESET, vring error
    /// notifications, broken connections).
    pub errors: Vec<String>,
    /// Varies the data patterns from run to run, so data left on a disk by
    /// an earlier run cannot make a device that drops writes look right.
    pub seed: u64,
}

impl Ctx {
    /// A context for `device_type`, with an empty report.
    pub fn new(opts: CheckOptions, device_type: DeviceType, device: &str) -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let report = Report {
            device: device.into(),
            target: opts.socket_path.display().to_string(),
            ..Report::default()
        };
        Self {
            opts,
            device_type,
            report,
            errors: Vec::new(),
            seed: nanos ^ u64::from(std::process::id()).rotate_left(32),
        }
    }

    /// Records a check; an error becomes a failure with the error chain as
    /// the reason.
    pub fn record(
        &mut self,
        id: impl Into<String>,
        section: &'static str,
        description: impl Into<String>,
        result: anyhow::Result<Outcome>,
    ) {
        let outcome = result.unwrap_or_else(|e| Outcome::Fail(format!("{e:#}")));
        self.report.checks.push(CheckResult {
            id: id.into(),
            section,
            description: description.into(),
            outcome,
        });
    }

    /// Adds a note to the report.
    pub fn note(&mut self, note: impl Into<String>) {
        self.report.notes.push(note.into());
    }

    /// Transport options for a session.
    pub fn transport_options(&self) -> TransportOptions {
        TransportOptions {
            device_type: Some(self.device_type),
            timeout: self.opts.timeout,
            memory_size: SESSION_MEMORY,
            ..TransportOptions::default()
        }
    }

    /// Opens a session: a new connection and handshake.
    pub fn connect(&self) -> anyhow::Result<VhostUserTransport> {
        VhostUserTransport::connect(&self.opts.socket_path, self.transport_options())
            .map_err(|e| anyhow::anyhow!("connecting to {}: {e}", self.opts.socket_path.display()))
    }

    /// Looks for device errors on a session's transport: a failed
    /// connection, DEVICE_NEEDS_RESET (with the STATUS protocol feature),
    /// error notifications on any vring. `when` names the session.
    pub fn observe(&mut self, t: &mut VhostUserTransport, when: &str) {
        if let Some(e) = t.error() {
            self.errors.push(format!("{when}: connection failed: {e}"));
            return;
        }
        if t.has_protocol(protocol::STATUS) && t.status().contains(DeviceStatus::DEVICE_NEEDS_RESET)
        {
            self.errors
                .push(format!("{when}: device status has DEVICE_NEEDS_RESET"));
        }
        for q in 0..t.num_queues() {
            if t.take_queue_error(q) {
                self.errors
                    .push(format!("{when}: error notification on vring {q}"));
            }
        }
    }

    /// Records `status.no-device-errors` from everything [`Self::observe`]
    /// saw.
    pub fn record_device_errors(&mut self) {
        let outcome = if self.errors.is_empty() {
            Outcome::Pass
        } else {
            Outcome::Fail(self.errors.join("; "))
        };
        self.record(
            "status.no-device-errors",
            "§2.1.2",
            "no DEVICE_NEEDS_RESET, vring error notification or dropped connection in any session",
            Ok(outcome),
        );
    }
}

/// The virtio features the backend offers: GET_FEATURES without the
/// vhost-user bits (the transport drops VHOST_USER_F_PROTOCOL_FEATURES and
/// VHOST_F_LOG_ALL; the latter gets a note).
pub(crate) fn offered_features(ctx: &mut Ctx, t: &mut VhostUserTransport) -> FeatureSet {
    if t.vhost_features() & (1 << ringwork_vhost_user::msg::F_LOG_ALL) != 0 {
        ctx.note(
            "GET_FEATURES has VHOST_F_LOG_ALL (bit 26, vhost-user dirty logging): not a virtio \
             feature, left out of the feature checks",
        );
    }
    t.device_features()
}

/// The device-independent feature bits the spec describes.
fn transport_bit_known(bit: u32) -> bool {
    TRANSPORT_FEATURES.iter().any(|&(b, _)| b == bit)
}

/// Spec names of `bits`, for notes (`names` are the device type's).
/// Records every check of `checks` (id, section, description) as skipped
/// for `why`.
pub(crate) fn skip_all(ctx: &mut Ctx, checks: &[(&str, &'static str, &str)], why: &str) {
    for &(id, sec, desc) in checks {
        ctx.record(id, sec, desc, Ok(Outcome::Skip(why.into())));
    }
}

/// Reads the configuration space from offset 0 into `buf` for the
/// configuration checks `checks`; `false` (with every check recorded as
/// skipped, or failed when GET_CONFIG fails) when there is nothing to
/// check.
pub(crate) fn read_config_for(
    ctx: &mut Ctx,
    t: &mut VhostUserTransport,
    checks: &[(&str, &'static str, &str)],
    buf: &mut [u8],
) -> bool {
    if !t.has_protocol(protocol::CONFIG) {
        skip_all(
            ctx,
            checks,
            "backend lacks VHOST_USER_PROTOCOL_F_CONFIG: the configuration space is not readable",
        );
        return false;
    }
    t.read_config(0, buf);
    if let Some(e) = t.error() {
        let e = e.to_owned();
        for &(id, sec, desc) in checks {
            ctx.record(id, sec, desc, Ok(Outcome::Fail(format!("GET_CONFIG: {e}"))));
        }
        return false;
    }
    true
}

pub(crate) fn feature_names(bits: FeatureSet, names: &[(u32, &str)]) -> String {
    let v: Vec<String> = bits
        .iter()
        .map(|b| {
            names
                .iter()
                .find(|&&(n, _)| n == b)
                .map(|&(_, s)| s.to_owned())
                .or_else(|| {
                    TRANSPORT_FEATURES
                        .iter()
                        .find(|&&(n, _)| n == b)
                        .map(|&(_, s)| s.to_owned())
                })
                .unwrap_or_else(|| format!("bit {b}"))
        })
        .collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(" ")
    }
}

/// The feature checks every device type gets: VERSION_1 offered (§6.2),
/// no offered feature missing one it requires (§2.2.2, `rules` and the
/// transport rules), and no bit the spec does not describe for this device
/// type (§2.2.2). `names` lists the device type's bits.
pub(crate) fn feature_checks(
    ctx: &mut Ctx,
    offered: FeatureSet,
    rules: &[&[FeatureRule]],
    names: &[(u32, &str)],
) {
    ctx.note(format!(
        "features offered: {}",
        feature_names(offered, names)
    ));
    let v1 = if offered.contains(VIRTIO_F_VERSION_1) {
        Outcome::Pass
    } else {
        Outcome::Fail("VIRTIO_F_VERSION_1 (bit 32) is not offered".into())
    };
    ctx.record(
        "features.version-1",
        "§6.2",
        "the device offers VIRTIO_F_VERSION_1",
        Ok(v1),
    );
    let mut broken: Vec<String> = violations(&offered, TRANSPORT_RULES)
        .map(|v| v.to_string())
        .collect();
    for r in rules {
        broken.extend(violations(&offered, r).map(|v| v.to_string()));
    }
    let deps = if broken.is_empty() {
        Outcome::Pass
    } else {
        Outcome::Fail(broken.join("; "))
    };
    ctx.record(
        "features.dependencies",
        "§2.2.2",
        "no offered feature requires a feature that is not offered",
        Ok(deps),
    );
    let unknown: Vec<u32> = offered
        .iter()
        .filter(|&b| !transport_bit_known(b) && !names.iter().any(|&(n, _)| n == b))
        .collect();
    let known = if unknown.is_empty() {
        Outcome::Pass
    } else {
        Outcome::Fail(format!(
            "bits {unknown:?} are not described for this device type (or reserved)"
        ))
    };
    ctx.record(
        "features.known",
        "§2.2.2",
        "every offered feature bit is one the spec describes for this device type",
        Ok(known),
    );
}

/// What a driver's initialization error says about FEATURES_OK (§2.2.2:
/// a device that refuses the subset MUST clear it; one that accepts keeps
/// it).
pub(crate) fn features_ok_outcome(has_status: bool, init: Result<(), String>) -> Outcome {
    if !has_status {
        return Outcome::Skip(
            "backend lacks VHOST_USER_PROTOCOL_F_STATUS: device status is not observable".into(),
        );
    }
    match init {
        Ok(()) => Outcome::Pass,
        Err(e) => Outcome::Fail(e),
    }
}

/// `status.driver-ok`: after initialization the status reads exactly
/// ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK (§3.1.1).
pub(crate) fn check_driver_ok(ctx: &mut Ctx, t: &mut VhostUserTransport) {
    let outcome = if !t.has_protocol(protocol::STATUS) {
        Outcome::Skip(
            "backend lacks VHOST_USER_PROTOCOL_F_STATUS: device status is not observable".into(),
        )
    } else {
        let want = DeviceStatus::ACKNOWLEDGE
            | DeviceStatus::DRIVER
            | DeviceStatus::FEATURES_OK
            | DeviceStatus::DRIVER_OK;
        let got = t.status();
        if got == want {
            Outcome::Pass
        } else {
            Outcome::Fail(format!(
                "status reads {:#04x}, expected {:#04x}",
                got.bits(),
                want.bits()
            ))
        }
    };
    ctx.record(
        "status.driver-ok",
        "§3.1.1",
        "after initialization the device status reads ACKNOWLEDGE|DRIVER|FEATURES_OK|DRIVER_OK",
        Ok(outcome),
    );
}

/// `reset.status`: a reset completes with status 0 (§2.4.1). `reset` is
/// the outcome of the driver's reset (which reads the status back).
pub(crate) fn check_reset_status(
    ctx: &mut Ctx,
    has_status: bool,
    reset: &Result<(), TransportError>,
) {
    let outcome = if !has_status {
        Outcome::Skip(
            "backend lacks VHOST_USER_PROTOCOL_F_STATUS: device status is not observable".into(),
        )
    } else {
        match reset {
            Ok(()) => Outcome::Pass,
            Err(e) => Outcome::Fail(format!("reset: {e}")),
        }
    };
    ctx.record(
        "reset.status",
        "§2.4.1",
        "after a reset the device status reads 0",
        Ok(outcome),
    );
}

/// One bounded wait for a device notification
/// ([`Transport::wait_interrupt`]), with a clear message when the device
/// stays silent for the whole timeout.
pub(crate) fn wait_device(t: &mut impl Transport) -> anyhow::Result<()> {
    t.wait_interrupt().map_err(|e| match e {
        TransportError::Unresponsive => {
            anyhow::anyhow!("the device did not complete the request within the timeout")
        }
        e => anyhow::Error::new(e),
    })
}

/// A transport that hides some offered features from the driver on top
/// of it (for drivers without a "withhold" option): the minimal-subset
/// checks.
pub(crate) struct Masked {
    /// The real transport.
    pub inner: VhostUserTransport,
    /// Offered features the driver does not see.
    pub hide: FeatureSet,
}

impl Transport for Masked {
    fn device_type(&self) -> DeviceType {
        self.inner.device_type()
    }
    fn is_legacy(&self) -> bool {
        self.inner.is_legacy()
    }
    fn device_features(&mut self) -> FeatureSet {
        self.inner.device_features().difference(self.hide)
    }
    fn set_driver_features(&mut self, features: FeatureSet) {
        self.inner.set_driver_features(features)
    }
    fn status(&mut self) -> DeviceStatus {
        self.inner.status()
    }
    fn set_status(&mut self, status: DeviceStatus) {
        self.inner.set_status(status)
    }
    fn reset(&mut self) -> Result<(), TransportError> {
        self.inner.reset()
    }
    fn max_queue_size(&mut self, queue: u16) -> u16 {
        self.inner.max_queue_size(queue)
    }
    fn legacy_queue_align(&self) -> Option<u32> {
        self.inner.legacy_queue_align()
    }
    fn setup_queue(
        &mut self,
        queue: u16,
        config: &ringwork_transport::driver::QueueConfig,
    ) -> Result<(), TransportError> {
        self.inner.setup_queue(queue, config)
    }
    fn reset_queue(&mut self, queue: u16) -> Result<(), TransportError> {
        self.inner.reset_queue(queue)
    }
    fn notify(&mut self, queue: u16, data: u32) {
        self.inner.notify(queue, data)
    }
    fn config_generation(&mut self) -> u32 {
        self.inner.config_generation()
    }
    fn read_config(&mut self, offset: usize, data: &mut [u8]) {
        self.inner.read_config(offset, data)
    }
    fn write_config(&mut self, offset: usize, data: &[u8]) {
        self.inner.write_config(offset, data)
    }
    fn ack_interrupt(&mut self) -> ringwork_transport::driver::InterruptCause {
        self.inner.ack_interrupt()
    }
    fn wait_interrupt(&mut self) -> Result<(), TransportError> {
        self.inner.wait_interrupt()
    }
    fn supports_feature(&self, bit: u32) -> bool {
        self.inner.supports_feature(bit)
    }
}

/// Every offered feature but VERSION_1 (for [`Masked`]).
pub(crate) fn all_but_version_1(offered: FeatureSet) -> FeatureSet {
    offered.without(VIRTIO_F_VERSION_1)
}

/// Polls `step` (non-blocking) every few milliseconds until it reports
/// done, or `quiet` passes without it making progress, or `limit` passes.
/// `step` returns whether it made progress.
pub(crate) fn poll_quiet(
    quiet: std::time::Duration,
    limit: std::time::Duration,
    mut step: impl FnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    let start = Instant::now();
    let mut last = Instant::now();
    while start.elapsed() < limit {
        if step()? {
            last = Instant::now();
        } else if last.elapsed() >= quiet {
            return Ok(());
        } else {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
    Ok(())
}

/// A deterministic pattern of `len` bytes for `seed` (xorshift64).
pub(crate) fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Where two buffers first differ, as a failure message.
pub(crate) fn compare(what: &str, got: &[u8], want: &[u8]) -> Outcome {
    match got.iter().zip(want).position(|(a, b)| a != b) {
        None if got.len() == want.len() => Outcome::Pass,
        None => Outcome::Fail(format!(
            "{what}: {} bytes instead of {}",
            got.len(),
            want.len()
        )),
        Some(i) => Outcome::Fail(format!(
            "{what}: byte {i} is {:#04x}, expected {:#04x}",
            got[i], want[i]
        )),
    }
}

/// The first outcome that is not a pass, or a pass.
pub(crate) fn first_problem(outcomes: impl IntoIterator<Item = Outcome>) -> Outcome {
    outcomes
        .into_iter()
        .find(|o| *o != Outcome::Pass)
        .unwrap_or(Outcome::Pass)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compare_reports_the_first_difference() {
        assert_eq!(compare("x", b"abc", b"abc"), Outcome::Pass);
        assert_eq!(
            compare("x", b"abd", b"abc"),
            Outcome::Fail("x: byte 2 is 0x64, expected 0x63".into())
        );
        assert!(matches!(compare("x", b"ab", b"abc"), Outcome::Fail(_)));
        assert_ne!(pattern(1, 64), pattern(2, 64));
        assert_eq!(pattern(7, 13).len(), 13);
    }

    #[test]
    fn unknown_bits_fail_features_known() {
        let mut ctx = Ctx::new(CheckOptions::new("/tmp/none.sock"), DeviceType(4), "rng");
        let offered = FeatureSet::from_bits(&[VIRTIO_F_VERSION_1, 3, 45]);
        feature_checks(&mut ctx, offered, &[], &[]);
        let known = &ctx.report.checks[2];
        assert_eq!(known.id, "features.known");
        assert!(matches!(known.outcome, Outcome::Fail(_)), "{known:?}");
        assert_eq!(ctx.report.checks[0].outcome, Outcome::Pass);
    }
}
