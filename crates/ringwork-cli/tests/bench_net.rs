//! `ringwork bench net` against `ringwork serve net --loopback` (child
//! processes), split and packed rings: the run ends with exit code 0 and a
//! JSON report in which frames went both ways. Nothing here asserts on
//! speed.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use ringwork_guest_tests::{Backend, TempDir};
use serde_json::Value;

fn ringwork() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ringwork"))
}

fn serve_loopback(dir: &TempDir) -> Backend {
    let socket = dir.join("net.sock");
    let mut cmd = ringwork();
    cmd.args(["serve", "net", "--loopback", "--socket-path"])
        .arg(&socket);
    Backend::spawn(cmd, &socket, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("starting ringwork serve net --loopback: {e}"))
}

fn bench(socket: &Path, args: &[&str]) -> Output {
    ringwork()
        .args(["bench", "net", "--socket-path"])
        .arg(socket)
        .args(args)
        .output()
        .unwrap()
}

fn bench_json(backend: &Backend, args: &[&str]) -> Value {
    let out = bench(backend.socket(), args);
    assert!(
        out.status.success(),
        "bench net {args:?}: {}\nstderr:\n{}\nbackend:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        backend.output()
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "bench net {args:?}: not JSON ({e}):\n{}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn count(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("no `{key}` in {v:#}"))
}

#[test]
fn bench_net_against_the_loopback_device() {
    let dir = TempDir::new("bench-net").unwrap();
    let backend = serve_loopback(&dir);
    for (flag, ring) in [("--split", "split"), ("--packed", "packed")] {
        let r = bench_json(
            &backend,
            &[flag, "--time", "1", "--json", "--quiet", "--inject", "4"],
        );
        assert_eq!(r["ring"], ring, "{r:#}");
        assert_eq!(r["frame_size"], 64, "{r:#}");
        assert_eq!(count(&r, "injected"), 4 * 32, "{r:#}");
        assert!(count(&r, "rx_packets") > 0, "nothing received: {r:#}");
        assert!(count(&r, "tx_packets") > 0, "nothing sent back: {r:#}");
        assert_eq!(count(&r, "rx_bytes"), 64 * count(&r, "rx_packets"), "{r:#}");
        assert!(r["cpu_s"].as_f64().is_some(), "{r:#}");
    }
    // Human-readable report, interrupt waits.
    let out = bench(
        backend.socket(),
        &["--time", "500ms", "--no-poll", "--quiet"],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("interrupt waits") && text.contains("rx: "),
        "{text}"
    );
}

/// `--withhold` and `--rx-buffer-len` reach the driver: the report's
/// negotiated features lack what was withheld, and frames longer than one
/// receive buffer still come back (they span buffers with MRG_RXBUF).
#[test]
fn bench_net_withhold_and_buffer_length() {
    let dir = TempDir::new("bench-net-options").unwrap();
    let backend = serve_loopback(&dir);
    let features = |r: &Value| {
        let s = r["features"].as_str().unwrap_or_else(|| panic!("{r:#}"));
        u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap()
    };
    const EVENT_IDX: u64 = 1 << 29;
    const MRG_RXBUF: u64 = 1 << 15;
    let base = bench_json(&backend, &["--time", "500ms", "--json", "--quiet"]);
    assert_eq!(
        features(&base) & (EVENT_IDX | MRG_RXBUF),
        EVENT_IDX | MRG_RXBUF,
        "{base:#}"
    );
    assert_eq!(count(&base, "rx_buffer_len"), 2048, "{base:#}");
    let r = bench_json(
        &backend,
        &[
            "--time",
            "500ms",
            "--json",
            "--quiet",
            "--withhold",
            "29,15",
        ],
    );
    assert_eq!(features(&r) & (EVENT_IDX | MRG_RXBUF), 0, "{r:#}");
    assert!(count(&r, "tx_packets") > 0, "{r:#}");
    for ring in ["--split", "--packed"] {
        let r = bench_json(
            &backend,
            &[
                ring,
                "--time",
                "500ms",
                "--json",
                "--quiet",
                "--size",
                "300",
                "--rx-buffer-len",
                "128",
            ],
        );
        assert_eq!(count(&r, "rx_buffer_len"), 128, "{r:#}");
        assert!(count(&r, "tx_packets") > 0, "{r:#}");
        assert_eq!(
            count(&r, "rx_bytes"),
            300 * count(&r, "rx_packets"),
            "{r:#}"
        );
    }
}

#[test]
fn bench_net_exit_codes() {
    let dir = TempDir::new("bench-net-exit").unwrap();
    // No backend: setup failed.
    let out = bench(&dir.join("none.sock"), &["--time", "1", "--quiet"]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    // Bad command lines.
    for bad in [
        &["--burst", "0"][..],
        &["--size", "13"],
        &["--split", "--packed"],
        &["--time", "soon"],
        &["--withhold", "128"],
        &["--withhold", "x"],
        &["--rx-buffer-len", "11"],
    ] {
        let out = bench(&dir.join("none.sock"), bad);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {out:?}");
    }
    // A frame the MTU does not allow.
    let backend = serve_loopback(&dir);
    let out = bench(
        backend.socket(),
        &["--size", "9000", "--time", "1", "--quiet"],
    );
    assert_eq!(out.status.code(), Some(3), "{out:?}");
}
