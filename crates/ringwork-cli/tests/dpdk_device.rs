//! Our network device against a driver someone else wrote: DPDK's
//! virtio-user PMD (`dpdk-testpmd --vdev net_virtio_user0`), a vhost-user
//! frontend that drives the rings itself, in split and packed layouts.
//! testpmd forwards whatever it receives back out (io forwarding) and
//! starts the stream with `start tx_first`; `ringwork serve net
//! --loopback` reflects every frame, so frames circle between the two.
//! The test checks that frames flowed both ways (testpmd's counters) and
//! that the device reported no error. DPDK is a hard requirement: a
//! missing `dpdk-testpmd` fails the test (install the `dpdk` package).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn temp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ringwork-dpdk-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Kills and reaps a child on drop.
struct Reap(Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_socket(sock: &Path) {
    let start = Instant::now();
    while !sock.exists() {
        assert!(start.elapsed() < Duration::from_secs(10), "no socket");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn testpmd() -> &'static str {
    let ok = Command::new("dpdk-testpmd")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    assert!(
        ok,
        "dpdk-testpmd not found: install the Debian packages `dpdk` and `dpdk-dev` (apt-get install -y dpdk dpdk-dev; dpdk-dev has dpdk-testpmd)"
    );
    "dpdk-testpmd"
}

/// The value after `key` in the last "Accumulated forward statistics"
/// block of testpmd's output.
fn accumulated(out: &str, key: &str) -> u64 {
    let block = out
        .rsplit("Accumulated forward statistics")
        .next()
        .unwrap_or_default();
    block
        .split_whitespace()
        .skip_while(|w| *w != key)
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in testpmd's output:\n{out}"))
}

/// `tag` names the run's directory and EAL prefix (tests run in parallel);
/// `extra`: more `serve net` options.
fn frames_circle(packed: bool, tag: &str, extra: &[&str]) {
    let bin = testpmd();
    let dir = temp(tag);
    let sock = dir.join("net.sock");
    let log = dir.join("serve.log");
    let serve = Command::new(env!("CARGO_BIN_EXE_ringwork"))
        .args(["serve", "net", "--loopback", "--workers", "device"])
        .args(extra)
        .args(["--poll-us", "50", "--exit-on-disconnect", "--socket-path"])
        .arg(&sock)
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let _serve = Reap(serve);
    wait_socket(&sock);
    let prefix = format!("rwdev{}{tag}", std::process::id());
    let vdev = format!(
        "net_virtio_user0,mac=00:01:02:03:04:05,path={},queues=1,packed_vq={}",
        sock.display(),
        u8::from(packed)
    );
    let mut pmd = Command::new(bin)
        .args([
            "--no-huge",
            "-m",
            "256",
            "--no-pci",
            "--file-prefix",
            &prefix,
        ])
        .args([
            "--vdev",
            &vdev,
            "--",
            "-i",
            "--nb-cores=1",
            "--forward-mode=io",
        ])
        .arg("--total-num-mbufs=16384")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = pmd.stdin.take().unwrap();
    let script = [
        (Duration::from_secs(3), "start tx_first 4"),
        (Duration::from_secs(3), "stop"),
        (Duration::from_millis(500), "quit"),
    ];
    for (wait, cmd) in script {
        std::thread::sleep(wait);
        // testpmd may already have exited on an error: its output says why.
        let _ = writeln!(stdin, "{cmd}");
    }
    drop(stdin);
    let start = Instant::now();
    while pmd.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(20) {
            let _ = pmd.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = pmd.wait_with_output().unwrap();
    // EAL's runtime directory for this --file-prefix (root: /var/run), left
    // behind by testpmd.
    let mut runtime = vec![PathBuf::from("/var/run/dpdk")];
    if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR") {
        runtime.push(PathBuf::from(d).join("dpdk"));
    }
    for d in runtime {
        let _ = std::fs::remove_dir_all(d.join(&prefix));
    }
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let rx = accumulated(&text, "RX-packets:");
    let tx = accumulated(&text, "TX-packets:");
    // Frames injected by tx_first (4 bursts of 32) came back, and went
    // round again: many more than were injected.
    assert!(rx > 1000, "packed {packed}: testpmd received {rx}\n{text}");
    assert!(tx > 1000, "packed {packed}: testpmd sent {tx}\n{text}");
    let serve_log = std::fs::read_to_string(&log).unwrap();
    assert!(
        !serve_log.contains("ERROR"),
        "packed {packed}: the device reported an error:\n{serve_log}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn dpdk_virtio_user_split_ring_frames_circle() {
    frames_circle(false, "split", &[]);
}

#[test]
fn dpdk_virtio_user_packed_ring_frames_circle() {
    frames_circle(true, "packed", &[]);
}

/// The same with received frames written by streaming stores
/// (`--rx-streaming-stores`, the setting docs/PERFORMANCE.md measures).
#[test]
fn dpdk_virtio_user_packed_ring_frames_circle_with_streaming_stores() {
    frames_circle(true, "packed-nt", &["--rx-streaming-stores"]);
}
