//! `ringwork`: serve VIRTIO devices to vhost-user frontends.
//!
//! Exit codes: 0 success (including a clean shutdown on SIGTERM), 1 the
//! frontend broke the protocol or the device failed, 2 bad command line,
//! 3 setup failed (missing image, busy socket, unusable `--fd`).

mod bench;
mod check;
mod demo;
mod serve;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit code: setup failed (missing files, busy socket, bad descriptor).
pub const EXIT_SETUP: u8 = 3;
/// Exit code: serving failed.
pub const EXIT_RUNTIME: u8 = 1;

#[derive(Debug, Parser)]
#[command(
    name = "ringwork",
    version,
    about = "VIRTIO devices and drivers: serve devices to vhost-user frontends (QEMU, User-Mode Linux)",
    long_about = "VIRTIO devices and drivers.\n\n`ringwork serve TYPE` runs a vhost-user backend for a device type \
                  (blk, rng, console, scsi) on a unix socket. Logs go to stderr; set RUST_LOG \
                  (e.g. RUST_LOG=debug) for more.\n\nExit codes: 0 success or clean shutdown, 1 the frontend \
                  or device failed, 2 bad command line, 3 setup failed (missing image, busy socket)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve a device over vhost-user.
    Serve(serve::ServeArgs),
    /// Check a vhost-user backend against the VIRTIO spec.
    Check(check::CheckArgs),
    /// Benchmark a vhost-user backend.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Serve a temporary disk, check it and benchmark it: the main job in one command.
    Demo(demo::DemoArgs),
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

/// Arguments, with the busybox-style aliases: invoked as
/// `ringwork-vhost-user-blk` (a symlink, as the vhost-user JSON backend
/// descriptions name), the program behaves as `ringwork serve blk`.
fn args() -> Vec<std::ffi::OsString> {
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let prog = args
        .first()
        .and_then(|a| std::path::Path::new(a).file_name())
        .and_then(|n| n.to_str())
        .unwrap_or("ringwork")
        .to_owned();
    if let Some(kind) = prog.strip_prefix("ringwork-vhost-user-") {
        args.splice(1..1, ["serve".into(), kind.to_owned().into()]);
    }
    args
}

fn main() -> ExitCode {
    let cli = Cli::parse_from(args());
    init_logging();
    match cli.command {
        Command::Serve(a) => serve::run(a),
        Command::Check(a) => check::run(a),
        Command::Bench(bench::BenchCommand::Blk(a)) => bench::run(a),
        Command::Bench(bench::BenchCommand::Net(a)) => bench::net::run(a),
        Command::Demo(a) => demo::run(a),
    }
}
