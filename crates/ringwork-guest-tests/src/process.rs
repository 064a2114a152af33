//! Running a guest process: process groups, output capture, timeouts.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::checks::{self, CheckReport};
use crate::{io_err, Error, Result};

/// What a guest printed and how it ended.
#[derive(Debug, Clone)]
pub struct GuestRun {
    /// The console output (stdout and stderr of the guest process, interleaved
    /// by arrival; carriage returns removed).
    pub console: String,
    /// The guest process's exit status. Both UML and QEMU exit with 0 after
    /// `poweroff -f` *and* after a kernel panic (with `panic=-1`), so judge a
    /// run by its markers ([`GuestRun::checks`]), not by this.
    pub status: ExitStatus,
    /// Wall time from spawning the guest to its exit.
    pub elapsed: Duration,
}

impl GuestRun {
    /// Parses the marker lines of the console output.
    pub fn checks(&self) -> CheckReport {
        checks::parse_checks(&self.console)
    }

    /// [`assert_checks`](crate::assert_checks) on this run's console output.
    #[track_caller]
    pub fn assert_checks(&self, expected: &[&str]) -> CheckReport {
        checks::assert_checks(&self.console, expected)
    }
}

/// A shared buffer filled by reader threads.
pub(crate) type OutputBuf = Arc<Mutex<Vec<u8>>>;

/// Copies everything from `reader` into `buf` until EOF.
pub(crate) fn spawn_reader(
    mut reader: impl Read + Send + 'static,
    buf: OutputBuf,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut chunk = [0u8; 8192];
        loop {
            match reader.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => buf
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .extend_from_slice(&chunk[..n]),
            }
        }
    })
}

/// The text in `buf` so far, lossily decoded, without carriage returns.
pub(crate) fn snapshot(buf: &OutputBuf) -> String {
    let bytes = buf.lock().unwrap_or_else(|e| e.into_inner()).clone();
    String::from_utf8_lossy(&bytes).replace('\r', "")
}

/// Sends SIGKILL to every process of process group `pgid` (via `kill(1)`,
/// which avoids `unsafe`). Errors (e.g. the group is already gone) are ignored.
pub(crate) fn kill_group(pgid: u32) {
    let _ = Command::new("kill")
        .args(["-s", "KILL", "--", &format!("-{pgid}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Spawns `cmd` as the leader of a new process group with stdin from
/// /dev/null and stdout+stderr captured into one buffer.
pub(crate) fn spawn_captured(
    cmd: &mut Command,
    what: &str,
) -> Result<(Child, OutputBuf, Vec<JoinHandle<()>>)> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = cmd
        .spawn()
        .map_err(io_err(format!("spawning {what} ({cmd:?})")))?;
    let buf = OutputBuf::default();
    let mut readers = Vec::new();
    if let Some(out) = child.stdout.take() {
        readers.push(spawn_reader(out, buf.clone()));
    }
    if let Some(err) = child.stderr.take() {
        readers.push(spawn_reader(err, buf.clone()));
    }
    Ok((child, buf, readers))
}

/// Waits (bounded) for the reader threads to reach EOF. Returns false when
/// some process still holds the pipes open after `limit`.
fn join_readers(readers: Vec<JoinHandle<()>>, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if readers.iter().all(|r| r.is_finished()) {
            for r in readers {
                let _ = r.join();
            }
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

/// Runs a guest command to completion or until `timeout`, capturing its
/// console. On timeout the whole process group is killed (UML forks helper
/// processes) and [`Error::Timeout`] carries the output so far.
pub(crate) fn run_guest(mut cmd: Command, what: &str, timeout: Duration) -> Result<GuestRun> {
    let start = Instant::now();
    let (mut child, buf, readers) = spawn_captured(&mut cmd, what)?;
    let pgid = child.id();
    let status = loop {
        if let Some(status) = child
            .try_wait()
            .map_err(io_err(format!("waiting for {what}")))?
        {
            break status;
        }
        if start.elapsed() >= timeout {
            kill_group(pgid);
            let _ = child.kill();
            let _ = child.wait();
            join_readers(readers, Duration::from_secs(5));
            return Err(Error::Timeout {
                what: what.to_string(),
                after: timeout,
                output: snapshot(&buf),
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let elapsed = start.elapsed();
    // Helpers that outlive the leader keep the pipes open. While they exist the
    // group id cannot be reused, so killing the group here is safe.
    if !join_readers(readers, Duration::from_secs(2)) {
        kill_group(pgid);
    }
    eprintln!(
        "ringwork-guest-tests: {what} exited ({status}) after {:.2} s",
        elapsed.as_secs_f64()
    );
    let console = snapshot(&buf);
    if std::env::var_os("RINGWORK_SHOW_CONSOLE").is_some_and(|v| v == "1") {
        eprintln!("===== {what} console =====\n{console}\n===== end of {what} console =====");
    }
    Ok(GuestRun {
        console,
        status,
        elapsed,
    })
}

/// Runs a short host command, failing with its output when it does not
/// succeed. Returns its stdout.
pub(crate) fn run_host(cmd: &mut Command) -> Result<Vec<u8>> {
    let command = format!("{cmd:?}");
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(io_err(format!("running {command}")))?;
    if !out.status.success() {
        let mut output = String::from_utf8_lossy(&out.stdout).into_owned();
        output.push_str(&String::from_utf8_lossy(&out.stderr));
        return Err(Error::Command {
            command,
            message: format!("failed ({})", out.status),
            output,
        });
    }
    Ok(out.stdout)
}
