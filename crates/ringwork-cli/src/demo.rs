//! `ringwork demo`: the main job in one command, with nothing installed
//! beyond the build. It creates a temporary disk image, serves it with
//! ringwork's vhost-user block backend (this same binary, `ringwork serve
//! blk`, in a child process), connects to it over the unix socket as a
//! VMM would, runs the `check` conformance suite and a short `bench` in
//! both ring formats, and prints a readable report. Everything it created
//! is removed at the end (also on failure).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::bench::{self, BlkBenchOptions};
use crate::check::{self, CheckOptions};

/// Arguments of `ringwork demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Size of the temporary disk image (e.g. 64m, 1g).
    #[arg(long, default_value = "64m", value_parser = crate::bench::parse_size)]
    pub size: u64,
    /// Length of each benchmark run (e.g. 2s, 500ms).
    #[arg(long, default_value = "2s", value_parser = crate::bench::parse_duration)]
    pub time: Duration,
    /// Queues of the served disk (and of the benchmark).
    #[arg(long, default_value_t = 2)]
    pub queues: u16,
    /// Keep the temporary directory (image, socket, backend log) afterwards.
    #[arg(long)]
    pub keep: bool,
}

/// A temporary directory removed on drop (unless kept).
struct Scratch {
    path: PathBuf,
    keep: bool,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if self.keep {
            println!("kept {}", self.path.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// The backend child, killed and reaped on drop.
struct BackendProcess(Child);

impl Drop for BackendProcess {
    fn drop(&mut self) {
        terminate(&mut self.0);
    }
}

fn terminate(child: &mut Child) {
    // The backend keeps nothing worth a graceful stop: the image is
    // temporary. SIGKILL (std's `Child::kill`) and reap.
    let _ = child.kill();
    let _ = child.wait();
}

fn wait_for_socket(path: &Path, child: &mut Child) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            bail!("the backend exited early ({status})");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!("the backend did not open {} within 10 s", path.display())
}

/// Runs the demo.
pub fn run(a: DemoArgs) -> ExitCode {
    match demo(&a) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(crate::EXIT_RUNTIME),
        Err(e) => {
            eprintln!("ringwork demo: {e:#}");
            ExitCode::from(crate::EXIT_RUNTIME)
        }
    }
}

fn demo(a: &DemoArgs) -> Result<bool> {
    let mut out = std::io::stdout().lock();
    let scratch = Scratch {
        path: std::env::temp_dir().join(format!("ringwork-demo-{}", std::process::id())),
        keep: a.keep,
    };
    std::fs::create_dir_all(&scratch.path)
        .with_context(|| format!("creating {}", scratch.path.display()))?;
    let image = scratch.path.join("disk.img");
    let socket = scratch.path.join("blk.sock");
    let log = scratch.path.join("backend.log");
    std::fs::File::create(&image)
        .and_then(|f| f.set_len(a.size))
        .with_context(|| format!("creating {}", image.display()))?;

    writeln!(out, "ringwork demo")?;
    writeln!(out, "=============")?;
    writeln!(
        out,
        "1. A {} MiB disk image: {}",
        a.size >> 20,
        image.display()
    )?;
    let exe = std::env::current_exe().context("finding the ringwork binary")?;
    let mut cmd = Command::new(exe);
    cmd.args(["serve", "blk", "--image"])
        .arg(&image)
        .arg("--socket-path")
        .arg(&socket)
        .args([
            "--queues",
            &a.queues.to_string(),
            "--serial",
            "ringwork-demo",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?);
    let mut backend = BackendProcess(cmd.spawn().context("starting `ringwork serve blk`")?);
    wait_for_socket(&socket, &mut backend.0)?;
    writeln!(
        out,
        "2. Served by `ringwork serve blk` (pid {}, {} queues) on {}",
        backend.0.id(),
        a.queues,
        socket.display()
    )?;
    writeln!(
        out,
        "3. `ringwork check`: connect as a VMM would (memfd memory, eventfds), negotiate, and run\n   the block device conformance suite in both ring formats\n"
    )?;
    let report = check::run_checks(&CheckOptions::new(&socket))?;
    report.print_table(&mut out)?;
    let failed = report.failed();
    writeln!(out)?;

    writeln!(
        out,
        "4. `ringwork bench blk`: 4k random reads, iodepth 32, {} queues, {:?} per ring format\n",
        a.queues, a.time
    )?;
    let mut results = Vec::new();
    for packed in [false, true] {
        let mut o = BlkBenchOptions::new(&socket);
        o.queues = a.queues;
        o.iodepth = 32;
        o.time = a.time;
        o.packed = packed;
        o.backend_pid = Some(backend.0.id());
        let r = bench::run_blk(&o, false)
            .with_context(|| format!("bench ({} ring)", if packed { "packed" } else { "split" }))?;
        writeln!(out, "   {} ring:", if packed { "packed" } else { "split" })?;
        let mut text = Vec::new();
        r.print(&mut text)?;
        for line in String::from_utf8_lossy(&text).lines() {
            writeln!(out, "     {line}")?;
        }
        results.push(r);
    }
    drop(backend);
    writeln!(out)?;
    writeln!(out, "Summary")?;
    writeln!(out, "-------")?;
    writeln!(out, "check: {}", report.summary())?;
    if failed == 0 {
        writeln!(
            out,
            "The backend behaves; the driver side moved real data over vhost-user."
        )?;
    } else {
        writeln!(out, "Some checks failed; backend log: {}", log.display())?;
    }
    writeln!(
        out,
        "Next: `ringwork serve blk --help`, `ringwork check --help`, `ringwork bench blk --help`."
    )?;
    Ok(failed == 0)
}
