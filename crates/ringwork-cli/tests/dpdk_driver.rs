//! ringwork's network driver (`ringwork bench net`, io-forward) against
//! someone else's device: DPDK's vhost library as the vhost-user backend
//! (`dpdk-testpmd --vdev net_vhost0`, io forwarding), split and packed
//! rings. Frames must flow both ways: the bench receives frames (its JSON
//! report) and testpmd's port statistics count received and sent frames.
//! Fails loudly when dpdk-testpmd is missing (.ci/run installs `dpdk` and
//! `dpdk-dev`). Nothing here asserts on speed.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use ringwork_guest_tests::TempDir;
use serde_json::Value;

/// A running dpdk-testpmd; killed and reaped on drop.
struct Testpmd {
    child: Child,
    stdin: Option<ChildStdin>,
    log: PathBuf,
    prefix: String,
}

impl Testpmd {
    /// testpmd serving a vhost-user net device on `socket`, io forwarding
    /// on one core, output in `log`. `prefix` must be unique among running
    /// DPDK processes (`--file-prefix`).
    fn spawn(socket: &Path, prefix: &str, log: PathBuf) -> Testpmd {
        let out = File::create(&log).unwrap();
        let err = out.try_clone().unwrap();
        let child = Command::new("dpdk-testpmd")
            .args(["--no-huge", "-m", "256", "--no-pci", "--lcores", "0@0,1@0"])
            .arg(format!("--file-prefix={prefix}"))
            .arg(format!(
                "--vdev=net_vhost0,iface={},queues=1",
                socket.display()
            ))
            .args([
                "--",
                "-i",
                "--nb-cores=1",
                "--forward-mode=io",
                "--total-num-mbufs=8192",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run dpdk-testpmd ({e}): install the Debian packages `dpdk` and \
                     `dpdk-dev` (apt-get install -y dpdk dpdk-dev)"
                )
            });
        let mut t = Testpmd {
            stdin: None,
            child,
            log,
            prefix: prefix.to_owned(),
        };
        t.stdin = t.child.stdin.take();
        let start = Instant::now();
        while !socket.exists() {
            if let Ok(Some(s)) = t.child.try_wait() {
                panic!(
                    "dpdk-testpmd exited ({s}) before listening:\n{}",
                    t.output()
                );
            }
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "dpdk-testpmd did not create {} in 15 s:\n{}",
                socket.display(),
                t.output()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        t
    }

    fn command(&mut self, line: &str) {
        let out = self.output();
        let stdin = self.stdin.as_mut().expect("testpmd stdin open");
        writeln!(stdin, "{line}")
            .and_then(|()| stdin.flush())
            .unwrap_or_else(|e| panic!("testpmd command `{line}`: {e}\n{out}"));
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Asks for the port statistics, quits and waits (bounded) for the
    /// exit; returns everything testpmd printed.
    fn finish(mut self) -> String {
        self.command("show port stats all");
        std::thread::sleep(Duration::from_millis(300));
        self.command("quit");
        self.stdin = None;
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.output()
    }
}

impl Drop for Testpmd {
    fn drop(&mut self) {
        self.stdin = None;
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        // EAL's runtime directory for this --file-prefix (root: /var/run).
        let mut dirs = vec![PathBuf::from("/var/run/dpdk")];
        if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR") {
            dirs.push(PathBuf::from(d).join("dpdk"));
        }
        for d in dirs {
            let _ = std::fs::remove_dir_all(d.join(&self.prefix));
        }
    }
}

/// The first `KEY: N` in the port statistics of `log`.
fn port_stat(log: &str, key: &str) -> Option<u64> {
    let stats = &log[log.find("NIC statistics for port 0")?..];
    let rest = &stats[stats.find(key)? + key.len()..];
    rest.trim_start_matches([':', ' '])
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn driver_against_testpmd(ring: &str) {
    let dir = TempDir::new(&format!("dpdk-drv-{ring}")).unwrap();
    let socket = dir.join("vh.sock");
    let prefix = format!("rw-drv-{ring}-{}", std::process::id());
    let mut tp = Testpmd::spawn(&socket, &prefix, dir.join("testpmd.log"));
    tp.command("start");
    let out = Command::new(env!("CARGO_BIN_EXE_ringwork"))
        .args(["bench", "net", "--socket-path"])
        .arg(&socket)
        .args([&format!("--{ring}"), "--time", "2", "--json", "--quiet"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let log = tp.finish();
    assert!(
        out.status.success(),
        "bench net --{ring}: {}\nstderr:\n{stderr}\ntestpmd:\n{log}",
        out.status
    );
    let r: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", String::from_utf8_lossy(&out.stdout)));
    assert_eq!(r["ring"], ring, "{r:#}");
    let rx = r["rx_packets"].as_u64().unwrap_or(0);
    let tx = r["tx_packets"].as_u64().unwrap_or(0);
    assert!(
        rx > 0 && tx > 0,
        "frames did not flow: {r:#}\ntestpmd:\n{log}"
    );
    let tp_rx = port_stat(&log, "RX-packets");
    let tp_tx = port_stat(&log, "TX-packets");
    assert!(
        tp_rx.is_some_and(|n| n > 0) && tp_tx.is_some_and(|n| n > 0),
        "testpmd counted RX {tp_rx:?}, TX {tp_tx:?}:\n{log}"
    );
    // testpmd received at least what the bench sent back after injecting.
    assert!(
        tp_rx.unwrap_or(0) >= tx,
        "testpmd RX {tp_rx:?} < bench TX {tx}"
    );
}

#[test]
fn driver_against_dpdk_vhost_split() {
    driver_against_testpmd("split");
}

#[test]
fn driver_against_dpdk_vhost_packed() {
    driver_against_testpmd("packed");
}
