//! What the `ringwork check` tests share: backends served in this
//! process, running the checker binary, and reading its JSON report.

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::thread::JoinHandle;

use ringwork_device::model::Device;
use ringwork_guest_tests::pattern;
use ringwork_vhost_user::{OnDisconnect, Server, ShutdownHandle};
use serde_json::Value;

/// Unwraps a harness result, panicking with the full error (captured
/// backend output, install hints).
pub fn must<T>(result: ringwork_guest_tests::Result<T>, what: &str) -> T {
    result.unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// Size of the test images.
pub const DISK: u64 = 16 << 20;

/// A backend served by this process until dropped.
pub struct InProcess {
    pub socket: PathBuf,
    pub stop: ShutdownHandle,
    pub thread: Option<JoinHandle<()>>,
}

impl InProcess {
    pub fn serve(socket: PathBuf, device: Arc<dyn Device>) -> Self {
        let mut server = Server::bind(&socket).expect("binding the backend socket");
        let stop = server.shutdown_handle();
        let thread = std::thread::spawn(move || {
            if let Err(e) = server.serve(device, OnDisconnect::Listen) {
                eprintln!("backend: {e}");
            }
        });
        Self {
            socket,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        self.stop.shutdown();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What one `ringwork check` run produced.
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

pub fn ringwork_check(socket: &Path, args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_ringwork"))
        .arg("check")
        .arg("--socket-path")
        .arg(socket)
        .args(args)
        .output()
        .expect("running ringwork check");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs `ringwork check --json`, checks the exit code agrees with the
/// failures, and returns the report.
pub fn check_json(socket: &Path, args: &[&str]) -> Value {
    let mut a = vec!["--json"];
    a.extend_from_slice(args);
    let run = ringwork_check(socket, &a);
    let v: Value = serde_json::from_str(&run.stdout).unwrap_or_else(|e| {
        panic!(
            "--json output does not parse ({e}):\n{}\nstderr:\n{}",
            run.stdout, run.stderr
        )
    });
    let failed = v["failed"].as_u64().expect("failed count");
    let want = if failed == 0 { 0 } else { 1 };
    assert_eq!(
        run.code,
        Some(want),
        "exit code with {failed} failures:\n{}",
        run.stdout
    );
    v
}

/// Check ids with `outcome`.
pub fn ids(v: &Value, outcome: &str) -> BTreeSet<String> {
    v["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter(|c| c["outcome"] == outcome)
        .map(|c| c["id"].as_str().expect("id").to_owned())
        .collect()
}

pub fn outcome<'v>(v: &'v Value, id: &str) -> &'v Value {
    v["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("no check {id} in {v:#}"))
}

/// Every check passed or was skipped, and `must_pass` passed (not
/// skipped).
pub fn assert_passes(v: &Value, must_pass: &[&str]) {
    let failed = ids(v, "fail");
    assert!(failed.is_empty(), "failed: {failed:?}\n{v:#}");
    for id in must_pass {
        assert_eq!(outcome(v, id)["outcome"], "pass", "{id}: {v:#}");
    }
}

/// The table lists the same checks, in the same order, as the JSON.
pub fn assert_table_matches(socket: &Path, v: &Value) {
    let run = ringwork_check(socket, &[]);
    let table: Vec<String> = run
        .stdout
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            match w.next() {
                Some("pass" | "FAIL" | "skip") => w.next().map(str::to_owned),
                _ => None,
            }
        })
        .collect();
    let json: Vec<String> = v["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .map(|c| c["id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(table, json, "table:\n{}", run.stdout);
    assert!(run.stdout.contains(" failed, "), "{}", run.stdout);
}

/// An image of `DISK` bytes of pattern data; returns its content.
pub fn image(path: &Path, seed: u64) -> Vec<u8> {
    let data = pattern(seed, DISK as usize);
    std::fs::write(path, &data).expect("writing the image");
    data
}
pub fn set(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|s| (*s).to_owned()).collect()
}
