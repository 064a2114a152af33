//! `ringwork demo` (being written).

use std::process::ExitCode;

/// Arguments of `ringwork demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {}

/// Runs `ringwork demo`.
pub fn run(_a: DemoArgs) -> ExitCode {
    ExitCode::from(crate::EXIT_RUNTIME)
}
