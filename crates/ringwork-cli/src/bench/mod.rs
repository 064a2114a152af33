//! `ringwork bench blk`: fio for vhost-user block backends. The frontend
//! (`ringwork_vhost_user::VhostUserTransport`) and the block driver
//! (`ringwork_driver::blk::BlkDriver`) run in this process on one thread
//! that keeps `iodepth` requests in flight on every queue; the report gives
//! IOPS, bandwidth, latency percentiles and, with `--backend-pid`, the
//! backend's CPU time per I/O.
//!
//! Exit codes: 0 done, 1 the backend failed (a request completed with an
//! error status, the backend closed the connection or stopped answering),
//! 2 bad command line, 3 setup failed (no backend on the socket, not a
//! block device, `--packed` without packed rings, too many queues).
//!
//! `ringwork bench net` (packets per second of the network driver in
//! io-forward mode) is in [`net`].

mod cpu;
mod engine;
mod hist;
pub mod net;
pub mod report;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

pub use report::BenchResult;

/// `ringwork bench TYPE`.
#[derive(Debug, clap::Subcommand)]
pub enum BenchCommand {
    /// Benchmark a block backend (like fio, over vhost-user).
    Blk(BenchArgs),
    /// Packets per second of ringwork's network driver against a
    /// vhost-user net backend (io-forward, like testpmd).
    Net(net::NetArgs),
}

/// The access pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Rw {
    /// Random reads.
    Randread,
    /// Random writes.
    Randwrite,
    /// Sequential reads (wrapping around at the end of the region).
    Read,
    /// Sequential writes (wrapping around at the end of the region).
    Write,
    /// Random reads and writes, `--rwmixread` percent reads.
    Mixed,
}

impl Rw {
    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Rw::Randread => "randread",
            Rw::Randwrite => "randwrite",
            Rw::Read => "read",
            Rw::Write => "write",
            Rw::Mixed => "mixed",
        }
    }

    fn random(self) -> bool {
        matches!(self, Rw::Randread | Rw::Randwrite | Rw::Mixed)
    }
}

/// Arguments of `ringwork bench blk`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Sizes take k/m/g/t suffixes (powers of 1024): 4k, 64k, 1m, 4g. \
                        Durations: 10s, 500ms, 2m (a bare number is seconds).\n\n\
                        Exit codes: 0 done, 1 the backend failed (error status, closed \
                        connection, no answer), 2 bad command line, 3 setup failed."
)]
pub struct BenchArgs {
    /// The backend's socket.
    #[arg(long)]
    pub socket_path: PathBuf,
    /// Access pattern.
    #[arg(long, value_enum, default_value = "randread")]
    pub rw: Rw,
    /// Block size of every request (a multiple of 512).
    #[arg(long, default_value = "4k", value_parser = parse_size)]
    pub bs: u64,
    /// Requests kept in flight per queue.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub iodepth: u16,
    /// Request queues to use (the backend must offer that many).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub queues: u16,
    /// How long to measure.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub time: Duration,
    /// Run this long before measuring (not counted).
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub ramp: Duration,
    /// Use packed rings (fails if the backend does not offer
    /// VIRTIO_F_RING_PACKED); split rings otherwise.
    #[arg(long)]
    pub packed: bool,
    /// Percentage of reads with `--rw mixed`.
    #[arg(long, default_value_t = 70, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub rwmixread: u8,
    /// Bytes of the disk to use, from sector 0 (default: the whole capacity).
    #[arg(long, value_parser = parse_size)]
    pub size: Option<u64>,
    /// Entries per queue (default: the next power of two >= iodepth, at
    /// least 128). The backend must accept it.
    #[arg(long, value_parser = clap::value_parser!(u16).range(2..=32768))]
    pub queue_size: Option<u16>,
    /// Busy-poll for completions instead of waiting for the backend's
    /// call eventfds.
    #[arg(long)]
    pub poll: bool,
    /// The backend's process id: report its CPU time (utime + stime from
    /// /proc/PID/stat) and IOPS per backend CPU-second.
    #[arg(long)]
    pub backend_pid: Option<u32>,
    /// No per-second progress lines on stderr.
    #[arg(long, short)]
    pub quiet: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// What to run (the arguments minus output choices).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlkBenchOptions {
    /// The backend's socket.
    pub socket_path: PathBuf,
    /// Access pattern.
    pub rw: Rw,
    /// Bytes per request (a multiple of 512).
    pub bs: u64,
    /// Requests in flight per queue.
    pub iodepth: u16,
    /// Request queues.
    pub queues: u16,
    /// Measured time.
    pub time: Duration,
    /// Unmeasured warm-up time.
    pub ramp: Duration,
    /// Packed rings (required) rather than split rings.
    pub packed: bool,
    /// Percentage of reads for [`Rw::Mixed`].
    pub rwmixread: u8,
    /// Region of the disk used, in bytes (`None`: the whole disk).
    pub size: Option<u64>,
    /// Queue size (`None`: next power of two >= iodepth, at least 128).
    pub queue_size: Option<u16>,
    /// Busy-poll instead of waiting for interrupts.
    pub poll: bool,
    /// Process whose CPU time to report.
    pub backend_pid: Option<u32>,
}

impl BlkBenchOptions {
    /// The defaults of `ringwork bench blk` (4k random reads, iodepth 32,
    /// one queue, 10 s, split rings) against `socket_path`.
    #[allow(dead_code)] // for `ringwork demo`
    pub fn new(socket_path: impl Into<PathBuf>) -> Self {
        Self {
            socket_path: socket_path.into(),
            rw: Rw::Randread,
            bs: 4096,
            iodepth: 32,
            queues: 1,
            time: Duration::from_secs(10),
            ramp: Duration::ZERO,
            packed: false,
            rwmixread: 70,
            size: None,
            queue_size: None,
            poll: false,
            backend_pid: None,
        }
    }
}

impl From<&BenchArgs> for BlkBenchOptions {
    fn from(a: &BenchArgs) -> Self {
        Self {
            socket_path: a.socket_path.clone(),
            rw: a.rw,
            bs: a.bs,
            iodepth: a.iodepth,
            queues: a.queues,
            time: a.time,
            ramp: a.ramp,
            packed: a.packed,
            rwmixread: a.rwmixread,
            size: a.size,
            queue_size: a.queue_size,
            poll: a.poll,
            backend_pid: a.backend_pid,
        }
    }
}

/// Setup failed (exit code 3): nothing was measured.
#[derive(Debug)]
pub struct SetupFailed(pub String);

impl std::fmt::Display for SetupFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SetupFailed {}

/// Runs a block benchmark; `progress` prints a line per second on stderr.
/// Errors wrapping [`SetupFailed`] happened before any I/O.
pub fn run_blk(opts: &BlkBenchOptions, progress: bool) -> anyhow::Result<BenchResult> {
    engine::run(opts, progress)
}

/// Runs `ringwork bench`.
pub fn run(a: BenchArgs) -> ExitCode {
    let opts = BlkBenchOptions::from(&a);
    finish(
        "ringwork bench blk",
        run_blk(&opts, !a.quiet),
        a.json,
        |r| r.to_json(),
        |r, out| r.print(out),
    )
}

/// Writes a benchmark's report (JSON or text) to stdout and turns the
/// outcome into the exit code: [`crate::EXIT_SETUP`] when the run failed
/// in setup ([`SetupFailed`]), [`crate::EXIT_RUNTIME`] for any other
/// failure, including writing the report.
pub(crate) fn finish<R>(
    name: &str,
    result: anyhow::Result<R>,
    json: bool,
    to_json: impl FnOnce(&R) -> serde_json::Value,
    print: impl FnOnce(&R, &mut std::io::StdoutLock<'static>) -> std::io::Result<()>,
) -> ExitCode {
    use std::io::Write;
    match result {
        Ok(r) => {
            let mut out = std::io::stdout().lock();
            let written = if json {
                serde_json::to_writer_pretty(&mut out, &to_json(&r))
                    .map_err(std::io::Error::from)
                    .and_then(|_| writeln!(out))
            } else {
                print(&r, &mut out)
            };
            match written {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("{name}: writing the report: {e}");
                    ExitCode::from(crate::EXIT_RUNTIME)
                }
            }
        }
        Err(e) => {
            eprintln!("{name}: {e:#}");
            if e.downcast_ref::<SetupFailed>().is_some() {
                ExitCode::from(crate::EXIT_SETUP)
            } else {
                ExitCode::from(crate::EXIT_RUNTIME)
            }
        }
    }
}

/// Parses `4096`, `4k`, `64K`, `1m`, `4g`, `1t` (powers of 1024; an
/// optional `b`, `ib` or `iB` after the unit).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let lower = t.to_ascii_lowercase();
    let t = lower
        .strip_suffix("ib")
        .or_else(|| lower.strip_suffix('b'))
        .unwrap_or(&lower);
    let (num, shift) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 10),
        Some('m') => (&t[..t.len() - 1], 20),
        Some('g') => (&t[..t.len() - 1], 30),
        Some('t') => (&t[..t.len() - 1], 40),
        _ => (t, 0),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a size (e.g. 4096, 4k, 1m, 4g)"))?;
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("`{s}` is too large"))
}

/// Parses `10s`, `500ms`, `2m`, `1h`, `1.5s` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let bad = || format!("`{s}` is not a duration (e.g. 10s, 500ms, 2m)");
    let (num, scale) = if let Some(n) = t.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = t.strip_suffix('h') {
        (n, 3600.0)
    } else {
        (t, 1.0)
    };
    let v: f64 = num.trim().parse().map_err(|_| bad())?;
    if !v.is_finite() || v < 0.0 {
        return Err(bad());
    }
    Duration::try_from_secs_f64(v * scale).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("4k"), Ok(4096));
        assert_eq!(parse_size("64K"), Ok(65536));
        assert_eq!(parse_size("1m"), Ok(1 << 20));
        assert_eq!(parse_size("4g"), Ok(4 << 30));
        assert_eq!(parse_size("4GiB"), Ok(4 << 30));
        assert_eq!(parse_size("1kb"), Ok(1024));
        assert!(parse_size("x").is_err());
        assert!(parse_size("").is_err());
        assert!(parse_size("99999999999t").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("soon").is_err());
    }
}
