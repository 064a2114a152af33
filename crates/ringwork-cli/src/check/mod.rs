//! `ringwork check` (being written).

use std::process::ExitCode;

/// Arguments of `ringwork check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The backend's socket.
    #[arg(long)]
    pub socket_path: std::path::PathBuf,
}

/// Runs `ringwork check`.
pub fn run(_a: CheckArgs) -> ExitCode {
    ExitCode::from(crate::EXIT_RUNTIME)
}
