//! `ringwork bench` (being written).

use std::process::ExitCode;

/// `ringwork bench TYPE`.
#[derive(Debug, clap::Subcommand)]
pub enum BenchCommand {
    /// Benchmark a block backend (like fio, over vhost-user).
    Blk(BenchArgs),
}

/// Arguments of `ringwork bench blk`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// The backend's socket.
    #[arg(long)]
    pub socket_path: std::path::PathBuf,
}

/// Runs `ringwork bench`.
pub fn run(_a: BenchArgs) -> ExitCode {
    ExitCode::from(crate::EXIT_RUNTIME)
}
