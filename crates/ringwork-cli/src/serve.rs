//! `ringwork serve`: a vhost-user backend for one device, following the
//! vhost-user "Backend program conventions" (`--socket-path`, `--fd`,
//! `--print-capabilities`, no daemonizing, prompt exit on SIGTERM).

use std::os::fd::{FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Subcommand};
use ringwork_device::model::Device;
use ringwork_vhost_user::{OnDisconnect, ServeError, Server};

use crate::{EXIT_RUNTIME, EXIT_SETUP};

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(subcommand)]
    device: DeviceArgs,
}

/// Options every backend takes (vhost-user.rst, "Backend program
/// conventions").
#[derive(Debug, Args)]
pub struct Common {
    /// Listen for the frontend on this unix socket path.
    #[arg(long, value_name = "PATH", conflicts_with = "fd")]
    socket_path: Option<PathBuf>,
    /// Use the already-open unix socket FDNUM (listening or connected).
    #[arg(long, value_name = "FDNUM")]
    fd: Option<i32>,
    /// Print the backend's capabilities as JSON and exit.
    #[arg(long)]
    print_capabilities: bool,
    /// Exit when the frontend disconnects (default: listen for the next).
    #[arg(long)]
    exit_on_disconnect: bool,
}

#[derive(Debug, Subcommand)]
enum DeviceArgs {
    /// Entropy device (VIRTIO 1.4 §5.4): random bytes from the OS CSPRNG.
    Rng {
        #[command(flatten)]
        common: Common,
    },
}

impl DeviceArgs {
    fn common(&self) -> &Common {
        match self {
            DeviceArgs::Rng { common } => common,
        }
    }

    /// The vhost-user.json backend type and features.
    fn capabilities(&self) -> (&'static str, &'static [&'static str]) {
        match self {
            DeviceArgs::Rng { .. } => ("rng", &[]),
        }
    }

    fn build(&self) -> anyhow::Result<Arc<dyn Device>> {
        match self {
            DeviceArgs::Rng { .. } => Ok(Arc::new(ringwork_device::rng::Rng::new())),
        }
    }
}

fn capabilities_json(kind: &str, features: &[&str]) -> String {
    let f: Vec<String> = features.iter().map(|f| format!("\"{f}\"")).collect();
    format!(
        "{{\n  \"type\": \"{kind}\",\n  \"features\": [{}]\n}}",
        f.join(", ")
    )
}

fn setup_error(e: anyhow::Error) -> ExitCode {
    eprintln!("ringwork: {e:#}");
    ExitCode::from(EXIT_SETUP)
}

pub fn run(a: ServeArgs) -> ExitCode {
    let dev = a.device;
    let common = dev.common();
    if common.print_capabilities {
        let (kind, features) = dev.capabilities();
        println!("{}", capabilities_json(kind, features));
        return ExitCode::SUCCESS;
    }
    let mut server = match open(common) {
        Ok(s) => s,
        Err(e) => return setup_error(e),
    };
    let device = match dev.build() {
        Ok(d) => d,
        Err(e) => return setup_error(e),
    };
    // SIGTERM/SIGINT/SIGHUP stop the server; the eventfd lives for the
    // rest of the process.
    let stop: &'static _ = Box::leak(Box::new(server.shutdown_fd()));
    if let Err(e) = ringwork_vhost_user::sys::signal_on_termination(stop) {
        return setup_error(anyhow::anyhow!("installing signal handlers: {e}"));
    }
    let policy = if common.exit_on_disconnect {
        OnDisconnect::Exit
    } else {
        OnDisconnect::Listen
    };
    tracing::info!(
        "serving {} on {}",
        dev.capabilities().0,
        common
            .socket_path
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| format!("fd {}", common.fd.unwrap_or(-1)))
    );
    match server.serve(device, policy) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ringwork: {e}");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}

fn open(c: &Common) -> anyhow::Result<Server> {
    match (&c.socket_path, c.fd) {
        (Some(p), None) => Server::bind(p).map_err(|e| match e {
            ServeError::Busy(_) => anyhow::Error::new(e)
                .context("stop the other backend or choose another --socket-path"),
            e => e.into(),
        }),
        (None, Some(fd)) => {
            if fd < 3 {
                anyhow::bail!("--fd {fd}: descriptors 0-2 are stdin/stdout/stderr");
            }
            // Refuse descriptor numbers that are not open, before owning one.
            if std::fs::metadata(format!("/proc/self/fd/{fd}")).is_err() {
                anyhow::bail!("--fd {fd}: no such open file descriptor");
            }
            // SAFETY: the descriptor is open (checked above) and, by the
            // vhost-user conventions, handed to this process to own.
            #[allow(unsafe_code)]
            let owned = unsafe { OwnedFd::from_raw_fd(fd) };
            Server::from_fd(owned).context("using --fd")
        }
        (None, None) => anyhow::bail!("one of --socket-path or --fd is required"),
        (Some(_), Some(_)) => anyhow::bail!("--socket-path and --fd are mutually exclusive"),
    }
}
