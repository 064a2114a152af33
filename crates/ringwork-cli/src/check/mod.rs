//! `ringwork check`: connects to any vhost-user backend as a frontend,
//! identifies the device type, and runs a conformance suite for it
//! against VIRTIO 1.4 — feature bits, configuration layout and values,
//! device status and reset, every offered feature exercised, both ring
//! formats when offered, bad requests answered with the right status,
//! data integrity. Each check names the spec section it comes from.
//!
//! Suites: [`blk`] (§5.2), [`rng`] (§5.4), [`console`] (§5.3), [`balloon`]
//! (§5.5), [`scsi`] (§5.6), [`net`] (§5.1), on top of
//! the checks every device gets ([`common`]). A check that needs a freshly
//! initialized device opens a new connection (a new *session*): backends
//! serve the next frontend after a disconnect.
//!
//! **Safe on a disk with data**: every block check that writes (patterns,
//! discard, write zeroes, requests a correct device must refuse) first
//! reads the sectors it may change and writes them back afterwards,
//! followed by a flush when the device has one. A failure to restore is
//! reported as a note (and fails the check). Concurrent users of the disk
//! may still see the temporary data, so check a disk nobody else uses.
//! The SCSI suite does the same for the blocks it writes on each LUN.
//!
//! Exit codes: 0 every check passed (skips allowed), 1 a check failed, 3
//! the backend could not be reached or identified.

mod balloon;
mod blk;
mod blk_io;
mod blk_req;
mod blk_ring;
mod common;
mod console;
mod net;
mod net_ctrl;
mod net_io;
mod net_loop;
mod raw;
mod report;
mod rng;
mod scsi;
mod scsi_cmd;
mod scsi_raw;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use ringwork_spec::device_id::{
    DeviceType, VIRTIO_ID_BALLOON, VIRTIO_ID_BLOCK, VIRTIO_ID_CONSOLE, VIRTIO_ID_NET,
    VIRTIO_ID_RNG, VIRTIO_ID_SCSI,
};
use ringwork_transport::driver::Transport;
use ringwork_vhost_user::VhostUserTransport;

#[allow(unused_imports)]
pub use report::{CheckResult, Outcome, Report};

/// A device type `ringwork check` has a suite for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DeviceKind {
    /// Block device (VIRTIO 1.4 §5.2).
    Blk,
    /// Entropy device (§5.4).
    Rng,
    /// Console (§5.3).
    Console,
    /// Memory balloon (§5.5).
    Balloon,
    /// SCSI host (§5.6).
    Scsi,
    /// Network device (§5.1).
    Net,
}

impl DeviceKind {
    fn device_type(self) -> DeviceType {
        DeviceType(match self {
            DeviceKind::Blk => VIRTIO_ID_BLOCK,
            DeviceKind::Rng => VIRTIO_ID_RNG,
            DeviceKind::Console => VIRTIO_ID_CONSOLE,
            DeviceKind::Balloon => VIRTIO_ID_BALLOON,
            DeviceKind::Scsi => VIRTIO_ID_SCSI,
            DeviceKind::Net => VIRTIO_ID_NET,
        })
    }
}

/// Arguments of `ringwork check`.
#[derive(Debug, clap::Args)]
#[command(
    after_long_help = "Connects as a vhost-user frontend, identifies the device type, negotiates, and \
                       runs a conformance suite for it: feature bits, configuration, status and reset, \
                       every offered feature, both ring formats, error statuses, data integrity. Each \
                       check names the VIRTIO 1.4 section it comes from.\n\nBlock and SCSI checks that \
                       write restore the sectors they changed; still, check a disk nobody else is \
                       using. The network checks send frames between two connections when the \
                       backend accepts a second one (`ringwork serve net --switch`).\n\n\
                       Exit codes: 0 all checks passed (skips allowed), 1 a check failed, 3 the backend \
                       could not be reached or identified."
)]
pub struct CheckArgs {
    /// The backend's socket.
    #[arg(long)]
    pub socket_path: PathBuf,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// The device type (default: inferred from what the backend offers).
    #[arg(long, value_enum)]
    pub device_type: Option<DeviceKind>,
    /// Seconds one reply or one request may take.
    #[arg(long, default_value_t = 10, value_name = "SECS")]
    pub timeout: u64,
    /// Fewer sessions: one ring format, no feature-variant runs.
    #[arg(long)]
    pub quick: bool,
}

/// What to check and how (the library-style entry, [`run_checks`]).
#[derive(Debug, Clone)]
pub struct CheckOptions {
    /// The backend's socket.
    pub socket_path: PathBuf,
    /// The device type; `None` infers it.
    pub device_type: Option<DeviceKind>,
    /// How long one reply or one request may take.
    pub timeout: Duration,
    /// Fewer sessions: one ring format, no feature-variant runs.
    pub quick: bool,
}

impl CheckOptions {
    /// Default options for the backend at `socket_path`: type inferred,
    /// 10 s timeout, full suite.
    pub fn new(socket_path: impl Into<PathBuf>) -> Self {
        Self {
            socket_path: socket_path.into(),
            device_type: None,
            timeout: Duration::from_secs(10),
            quick: false,
        }
    }
}

/// Connects to the backend, identifies it and runs its suite. An error
/// means the backend could not be reached or identified; failed checks are
/// in the report.
pub fn run_checks(opts: &CheckOptions) -> anyhow::Result<Report> {
    let topts = ringwork_vhost_user::TransportOptions {
        device_type: opts.device_type.map(DeviceKind::device_type),
        timeout: opts.timeout,
        memory_size: common::SESSION_MEMORY,
        ..Default::default()
    };
    // The error's own message says it all (its source repeats it).
    let first = VhostUserTransport::connect(&opts.socket_path, topts).map_err(|e| {
        use ringwork_vhost_user::transport::ConnectError;
        use ringwork_vhost_user::FrontendError;
        let silent = matches!(&e, ConnectError::Frontend(FrontendError::Io(io))
            if matches!(io.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut));
        let hint = if silent {
            format!(" (no reply within {:?})", opts.timeout)
        } else {
            String::new()
        };
        anyhow::anyhow!("connecting to {}: {e}{hint}", opts.socket_path.display())
    })?;
    let device_type = first.device_type();
    let (name, suite): (&str, fn(&mut common::Ctx, VhostUserTransport)) = match device_type.0 {
        VIRTIO_ID_BLOCK => ("blk", blk::run),
        VIRTIO_ID_RNG => ("rng", rng::run),
        VIRTIO_ID_CONSOLE => ("console", console::run),
        VIRTIO_ID_BALLOON => ("balloon", balloon::run),
        VIRTIO_ID_SCSI => ("scsi", scsi::run),
        VIRTIO_ID_NET => ("net", net::run),
        other => anyhow::bail!("no conformance suite for device type {other}"),
    };
    let mut ctx = common::Ctx::new(opts.clone(), device_type, name);
    if opts.device_type.is_none() {
        ctx.note(format!(
            "device type inferred: {name} (override with --device-type)"
        ));
    }
    suite(&mut ctx, first);
    ctx.record_device_errors();
    Ok(ctx.report)
}

/// Runs `ringwork check`.
pub fn run(a: CheckArgs) -> ExitCode {
    let mut opts = CheckOptions::new(a.socket_path);
    opts.device_type = a.device_type;
    opts.timeout = Duration::from_secs(a.timeout.max(1));
    opts.quick = a.quick;
    let report = match run_checks(&opts) {
        Ok(r) => r,
        Err(e) => {
            if a.json {
                println!("{}", serde_json::json!({ "error": format!("{e:#}") }));
            }
            eprintln!("ringwork check: {e:#}");
            return ExitCode::from(crate::EXIT_SETUP);
        }
    };
    let mut out = std::io::stdout().lock();
    let printed = if a.json {
        serde_json::to_writer_pretty(&mut out, &report.to_json())
            .map_err(std::io::Error::from)
            .and_then(|()| writeln!(out))
    } else {
        report.print_table(&mut out)
    };
    if let Err(e) = printed {
        eprintln!("ringwork check: writing the report: {e}");
    }
    if report.failed() > 0 {
        ExitCode::from(crate::EXIT_RUNTIME)
    } else {
        ExitCode::SUCCESS
    }
}
