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
use ringwork_vhost_user::{OnDisconnect, PollPolicy, ServeError, Server};

use crate::{EXIT_RUNTIME, EXIT_SETUP};

mod balloon;
mod net;
mod scsi;

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
    /// Queue worker threads poll their rings this many microseconds after
    /// processing before they sleep (0: sleep at once). Spends CPU to save
    /// wakeups; pays off for one busy queue where wakeups are expensive.
    #[arg(long, value_name = "MICROSECONDS", default_value_t = 0,
          value_parser = clap::value_parser!(u64).range(0..=1_000_000))]
    poll_us: u64,
    /// Adaptive polling instead of a fixed window: each worker sizes its
    /// window between 0 and this many microseconds by what it sees (it
    /// grows while the driver comes back shortly after the worker went to
    /// sleep, and shrinks when it sleeps longer), as QEMU's poll-max-ns.
    #[arg(long, value_name = "MICROSECONDS", conflicts_with = "poll_us",
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    poll_max_us: Option<u64>,
}

#[derive(Debug, Subcommand)]
enum DeviceArgs {
    /// Block device (VIRTIO 1.4 §5.2) on a raw image file: read, write,
    /// flush (fdatasync), get id, discard, write zeroes; multiqueue.
    Blk {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        opts: BlkArgs,
    },
    /// Entropy device (VIRTIO 1.4 §5.4): random bytes from the OS CSPRNG.
    Rng {
        #[command(flatten)]
        common: Common,
    },
    /// Console device (VIRTIO 1.4 §5.3): one console port, or several
    /// named ports (multiport), each on stdio, a pty or a unix socket.
    Console {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        opts: ConsoleArgs,
    },
    /// Memory balloon (VIRTIO 1.4 §5.5): inflated and reported pages are
    /// given back to the host; target, status and statistics through a
    /// control socket (--control).
    Balloon {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        opts: balloon::BalloonArgs,
    },
    /// Network device (VIRTIO 1.4 §5.1): every guest that connects to the
    /// socket gets its own device on one userspace switch (`--switch`), or
    /// one guest at a time is connected to a Linux tap interface (`--tap`,
    /// with segmentation offloads); multiqueue, checksum offload, receive
    /// filters, VLAN filtering.
    Net {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        opts: net::NetArgs,
    },
    /// SCSI host device (VIRTIO 1.4 §5.6): image files as disks on several
    /// targets/LUNs, multiqueue, task management, hot-plug (--control).
    Scsi {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        opts: scsi::ScsiArgs,
    },
}

/// Block device options.
#[derive(Debug, Args)]
pub struct BlkArgs {
    /// The raw disk image (a regular file or block device; size a multiple
    /// of 512 bytes).
    #[arg(long, alias = "blk-file", value_name = "PATH")]
    image: Option<PathBuf>,
    /// Serve the image read-only (VIRTIO_BLK_F_RO; writes fail).
    #[arg(long, alias = "read-only")]
    readonly: bool,
    /// Number of request queues (more than one offers VIRTIO_BLK_F_MQ).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    queues: u16,
    /// Largest queue size accepted (a power of two, 4 to 32768).
    #[arg(long, default_value_t = 256)]
    queue_size: u16,
    /// I/O engine: auto (io_uring, else threads; inline system calls on
    /// tmpfs), io-uring, threads, or null (no I/O: reads return zeros,
    /// writes are dropped (benchmarking the virtio path, like
    /// qemu-storage-daemon's null-co)).
    #[arg(long, default_value = "auto", value_parser = ["auto", "io-uring", "threads", "null"])]
    engine: String,
    /// Serial number returned by GET_ID (at most 20 ASCII characters).
    #[arg(long)]
    serial: Option<String>,
}

fn build_blk(a: &BlkArgs) -> anyhow::Result<Arc<dyn Device>> {
    use ringwork_device::blk::{Blk, BlkOptions, Engine};
    let image = a
        .image
        .clone()
        .ok_or_else(|| anyhow::anyhow!("--image PATH is required"))?;
    let opts = BlkOptions {
        readonly: a.readonly,
        num_queues: a.queues,
        queue_size: a.queue_size,
        engine: match a.engine.as_str() {
            "io-uring" => Engine::IoUring,
            "threads" => Engine::ThreadPool,
            "null" => Engine::Null,
            _ => Engine::Auto,
        },
        serial: a.serial.clone(),
        ..BlkOptions::new(image.clone())
    };
    let blk = Blk::open(opts).with_context(|| format!("opening image {}", image.display()))?;
    tracing::info!(
        "image {}: {} sectors, {} queue(s), engine {:?}{}",
        image.display(),
        blk.capacity(),
        a.queues,
        blk.engine(),
        if a.readonly { ", read-only" } else { "" }
    );
    Ok(Arc::new(blk))
}

/// Console options.
#[derive(Debug, Args)]
pub struct ConsoleArgs {
    /// Where the console port (port 0) goes: `stdio`, `pty` (the path is
    /// logged), or `socket:PATH` (a unix socket this process listens on).
    #[arg(long, value_name = "BACKEND", default_value = "stdio")]
    output: String,
    /// An extra named port, NAME=BACKEND (BACKEND as for --output; not
    /// stdio). Repeatable; any extra port turns on multiport.
    #[arg(long = "port", value_name = "NAME=BACKEND")]
    ports: Vec<String>,
    /// Offer VIRTIO_CONSOLE_F_MULTIPORT even with a single port.
    #[arg(long)]
    multiport: bool,
}

fn console_backend(spec: &str) -> anyhow::Result<ringwork_device::console::PortBackend> {
    use ringwork_device::console::PortBackend;
    Ok(match spec {
        "stdio" => PortBackend::Stdio,
        "pty" => PortBackend::Pty,
        s => match s.strip_prefix("socket:") {
            Some(p) if !p.is_empty() => PortBackend::UnixSocket(p.into()),
            _ => {
                anyhow::bail!("unknown console backend `{s}` (expected stdio, pty or socket:PATH)")
            }
        },
    })
}

fn build_console(a: &ConsoleArgs) -> anyhow::Result<Arc<dyn Device>> {
    use ringwork_device::console::{Console, ConsoleOptions, PortSpec};
    let mut ports = vec![PortSpec::console(console_backend(&a.output)?)];
    for p in &a.ports {
        let (name, backend) = p
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("--port `{p}`: expected NAME=BACKEND"))?;
        if backend == "stdio" {
            anyhow::bail!("--port {name}: stdio is reserved for the console port (--output)");
        }
        ports.push(PortSpec::named(name.to_owned(), console_backend(backend)?));
    }
    let mut opts = ConsoleOptions::new(ports);
    opts.multiport |= a.multiport;
    let c = Console::new(opts).context("setting up the console")?;
    for i in 0..c.num_ports() {
        if let Some(p) = c.pty_path(i) {
            tracing::info!("console port {i}: pty {}", p.display());
        }
    }
    Ok(Arc::new(c))
}

impl DeviceArgs {
    fn common(&self) -> &Common {
        match self {
            DeviceArgs::Rng { common }
            | DeviceArgs::Console { common, .. }
            | DeviceArgs::Blk { common, .. }
            | DeviceArgs::Balloon { common, .. }
            | DeviceArgs::Net { common, .. }
            | DeviceArgs::Scsi { common, .. } => common,
        }
    }

    /// The vhost-user.json backend type and features. The schema has no
    /// balloon type: the balloon reports `balloon` (the VIRTIO device's
    /// name) with its optional features as option names.
    fn capabilities(&self) -> (&'static str, &'static [&'static str]) {
        match self {
            DeviceArgs::Rng { .. } => ("rng", &[]),
            DeviceArgs::Console { .. } => ("console", &[]),
            DeviceArgs::Blk { .. } => ("block", &["read-only", "blk-file"]),
            DeviceArgs::Balloon { .. } => (
                "balloon",
                &[
                    "control",
                    "stats-interval",
                    "deflate-on-oom",
                    "free-page-hint",
                    "page-reporting",
                    "page-poison",
                ],
            ),
            DeviceArgs::Net { .. } => ("net", &[]),
            DeviceArgs::Scsi { .. } => ("scsi", &[]),
        }
    }

    fn build(&self) -> anyhow::Result<Arc<dyn Device>> {
        match self {
            DeviceArgs::Rng { .. } => Ok(Arc::new(ringwork_device::rng::Rng::new())),
            DeviceArgs::Console { opts, .. } => build_console(opts),
            DeviceArgs::Blk { opts, .. } => build_blk(opts),
            DeviceArgs::Balloon { opts, .. } => balloon::build(opts),
            // Served by `net::serve`, a device per connection.
            DeviceArgs::Net { .. } => anyhow::bail!("net devices are made per connection"),
            DeviceArgs::Scsi { opts, .. } => scsi::build_scsi(opts),
        }
    }
}

/// Binds a `--control` socket, replacing a stale socket file (one nobody
/// listens on) but never a live one or another kind of file.
fn bind_control(path: &std::path::Path) -> anyhow::Result<std::os::unix::net::UnixListener> {
    use std::os::unix::fs::FileTypeExt;
    use std::os::unix::net::{UnixListener, UnixStream};
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            anyhow::bail!("--control {}: exists and is not a socket", path.display());
        }
        if UnixStream::connect(path).is_ok() {
            anyhow::bail!(
                "--control {}: another process listens there",
                path.display()
            );
        }
        std::fs::remove_file(path)
            .with_context(|| format!("removing stale socket {}", path.display()))?;
    }
    UnixListener::bind(path).with_context(|| format!("binding --control {}", path.display()))
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
    server.set_poll_policy(match common.poll_max_us {
        Some(max) => PollPolicy::Adaptive {
            max: std::time::Duration::from_micros(max),
        },
        None => PollPolicy::fixed(std::time::Duration::from_micros(common.poll_us)),
    });
    let device = match &dev {
        DeviceArgs::Net { .. } => None,
        _ => match dev.build() {
            Ok(d) => Some(d),
            Err(e) => return setup_error(e),
        },
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
    let result = match (device, &dev) {
        (Some(device), _) => server.serve(device, policy).map_err(|e| e.to_string()),
        (None, DeviceArgs::Net { opts, .. }) => {
            net::serve(&mut server, opts, policy).map_err(|e| format!("{e:#}"))
        }
        (None, _) => Ok(()),
    };
    match result {
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
            #[allow(unsafe_code)]
            // SAFETY: the descriptor is open (checked above) and, by the
            // vhost-user conventions, handed to this process to own.
            let owned = unsafe { OwnedFd::from_raw_fd(fd) };
            Server::from_fd(owned).context("using --fd")
        }
        (None, None) => anyhow::bail!("one of --socket-path or --fd is required"),
        (Some(_), Some(_)) => anyhow::bail!("--socket-path and --fd are mutually exclusive"),
    }
}
