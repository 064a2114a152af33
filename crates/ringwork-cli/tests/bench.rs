//! `ringwork bench blk` against `ringwork serve blk` (child processes):
//! the JSON report, writes reaching the image, and a backend that dies
//! mid-run. Nothing here asserts on speed.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use ringwork_guest_tests::{Backend, TempDir};
use serde_json::Value;

const IMAGE_SIZE: u64 = 16 << 20;

fn ringwork() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ringwork"))
}

/// A zeroed image and `ringwork serve blk` on it with `queues` queues.
fn serve(dir: &TempDir, queues: u32) -> Backend {
    let image = dir.join("disk.img");
    std::fs::File::create(&image)
        .and_then(|f| f.set_len(IMAGE_SIZE))
        .unwrap();
    let socket = dir.join("blk.sock");
    let mut cmd = ringwork();
    cmd.args(["serve", "blk", "--image"])
        .arg(&image)
        .arg("--socket-path")
        .arg(&socket)
        .args(["--queues", &queues.to_string()]);
    Backend::spawn(cmd, &socket, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("starting ringwork serve blk: {e}"))
}

fn bench(socket: &Path, args: &[&str]) -> Output {
    ringwork()
        .args(["bench", "blk", "--socket-path"])
        .arg(socket)
        .args(args)
        .output()
        .unwrap()
}

/// Runs a bench that must succeed with `--json`; returns the report.
fn bench_json(backend: &Backend, args: &[&str]) -> Value {
    let out = bench(backend.socket(), args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "bench {args:?}: {}\nstderr:\n{stderr}\nbackend:\n{}",
        out.status,
        backend.output()
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "bench {args:?}: not JSON ({e}):\n{}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn f(v: &Value, path: &[&str]) -> f64 {
    let mut x = v;
    for p in path {
        x = &x[*p];
    }
    x.as_f64()
        .unwrap_or_else(|| panic!("{path:?} is not a number in {v:#}"))
}

/// ios > 0 and ordered percentiles, for the whole report or a section.
fn check_stats(v: &Value) {
    assert!(f(v, &["ios"]) > 0.0, "{v:#}");
    assert!(f(v, &["iops"]) > 0.0, "{v:#}");
    assert!(f(v, &["bandwidth_bytes_per_s"]) > 0.0, "{v:#}");
    let l = |k| f(v, &["lat_us", k]);
    assert!(l("min") > 0.0, "{v:#}");
    assert!(l("min") <= l("p50"), "{v:#}");
    assert!(l("p50") <= l("p99"), "{v:#}");
    assert!(l("p99") <= l("p999"), "{v:#}");
    assert!(l("p999") <= l("max"), "{v:#}");
    assert!(l("min") <= l("mean") && l("mean") <= l("max"), "{v:#}");
}

#[test]
fn randread_split_reports_json() {
    let dir = TempDir::new("bench-rr").unwrap();
    let backend = serve(&dir, 1);
    let pid = backend.pid().to_string();
    let v = bench_json(
        &backend,
        &[
            "--rw",
            "randread",
            "--bs",
            "4k",
            "--iodepth",
            "16",
            "--time",
            "1s",
            "--ramp",
            "200ms",
            "--backend-pid",
            &pid,
            "--json",
        ],
    );
    check_stats(&v);
    assert_eq!(v["rw"], "randread");
    assert_eq!(v["ring"], "split");
    assert_eq!(v["queues"], 1);
    assert_eq!(v["iodepth"], 16);
    assert_eq!(v["bs"], 4096);
    assert_eq!(v["size"], IMAGE_SIZE);
    assert!((f(&v, &["seconds"]) - 1.0).abs() < 0.01, "{v:#}");
    assert!(f(&v, &["backend_cpu_s"]) >= 0.0, "{v:#}");
    assert!(f(&v, &["frontend_cpu_s"]) >= 0.0, "{v:#}");
    assert!(v["iops_per_backend_cpu_s"].is_number(), "{v:#}");
    assert!(v.get("read").is_none(), "no split for randread: {v:#}");
}

#[test]
fn randwrite_packed_modifies_the_image() {
    let dir = TempDir::new("bench-rw").unwrap();
    let backend = serve(&dir, 1);
    let image = dir.join("disk.img");
    let v = bench_json(
        &backend,
        &[
            "--rw",
            "randwrite",
            "--packed",
            "--time",
            "1s",
            "--json",
            "--quiet",
        ],
    );
    check_stats(&v);
    assert_eq!(v["rw"], "randwrite");
    assert_eq!(v["ring"], "packed");
    let mut data = Vec::new();
    std::fs::File::open(&image)
        .unwrap()
        .read_to_end(&mut data)
        .unwrap();
    assert_eq!(data.len() as u64, IMAGE_SIZE);
    let nonzero = data.iter().filter(|&&b| b != 0).count();
    assert!(nonzero > 0, "randwrite left the image all zeroes");
    assert_eq!(
        nonzero % 4096,
        0,
        "whole 4k blocks written (pattern bytes are never 0)"
    );
}

#[test]
fn mixed_on_two_queues_splits_reads_and_writes() {
    let dir = TempDir::new("bench-mx").unwrap();
    let backend = serve(&dir, 2);
    let v = bench_json(
        &backend,
        &[
            "--rw",
            "mixed",
            "--rwmixread",
            "60",
            "--queues",
            "2",
            "--iodepth",
            "8",
            "--bs",
            "8k",
            "--size",
            "4m",
            "--time",
            "1s",
            "--json",
        ],
    );
    check_stats(&v);
    check_stats(&v["read"]);
    check_stats(&v["write"]);
    assert_eq!(v["rw"], "mixed");
    assert_eq!(v["queues"], 2);
    assert_eq!(v["size"], 4 << 20);
    assert_eq!(
        f(&v, &["read", "ios"]) + f(&v, &["write", "ios"]),
        f(&v, &["ios"])
    );
    assert!(f(&v, &["read", "ios"]) > f(&v, &["write", "ios"]), "{v:#}");
}

#[test]
fn polling_and_the_human_report() {
    let dir = TempDir::new("bench-poll").unwrap();
    let backend = serve(&dir, 1);
    let out = bench(
        backend.socket(),
        &[
            "--rw",
            "read",
            "--poll",
            "--iodepth",
            "4",
            "--time",
            "1500ms",
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("IOPS"), "{stdout}");
    assert!(stdout.contains("p99.9"), "{stdout}");
    assert!(stdout.contains("poll waits"), "{stdout}");
    // One progress line per second on stderr.
    assert!(stderr.contains("[  1s]"), "{stderr}");
}

#[test]
fn setup_errors_exit_3_and_bad_options_exit_2() {
    let dir = TempDir::new("bench-err").unwrap();
    let out = bench(&dir.join("nothing.sock"), &["--time", "1s"]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("connecting to"),
        "{out:?}"
    );
    let backend = serve(&dir, 1);
    let out = bench(backend.socket(), &["--queues", "2", "--time", "1s"]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--queues 2"),
        "{out:?}"
    );
    let out = bench(backend.socket(), &["--bs", "1000"]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let out = bench(backend.socket(), &["--bs", "4q"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let out = bench(backend.socket(), &["--rw", "sideways"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

#[test]
fn a_backend_killed_mid_run_fails_the_bench() {
    let dir = TempDir::new("bench-kill").unwrap();
    let backend = serve(&dir, 1);
    let mut child = ringwork()
        .args(["bench", "blk", "--socket-path"])
        .arg(backend.socket())
        .args(["--time", "60s", "--quiet"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Let it run (the backend logs the connection), then kill the backend.
    let start = Instant::now();
    while !backend.output().contains("frontend connected") {
        assert!(start.elapsed() < Duration::from_secs(20), "never connected");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    backend.stop();
    // Bounded: the bench must notice, not hang (its own waits are bounded
    // by 10 s).
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("bench did not exit after the backend was killed");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(status.code(), Some(1), "{status}: {stderr}");
    assert!(stderr.contains("backend"), "{stderr}");
}
