//! `ringwork serve net --tap` with Linux on both ends: the host's network
//! stack behind a tap interface, and a User-Mode Linux guest's own
//! virtio_net (through virtio_uml, a vhost-user frontend) in front of the
//! device. The guest pings the host end of the tap, and an 8 MiB file of
//! pseudo-random bytes crosses each way with busybox nc, checked byte for
//! byte (host side) and by SHA-256 (guest side). The guest negotiates
//! checksum and TCP segmentation offload both ways, and the device's
//! counters must show TSO frames crossing in both directions (frames the
//! guest handed over unsegmented, and the host stack's GSO frames
//! delivered unsegmented to the guest).
//!
//! Isolation: the test creates its own network namespace
//! (`ringwork-test-<pid>-<n>`, deleted by a drop guard even when the test
//! fails) and runs `ringwork serve net --tap tap0` inside it, so the tap
//! and every address exist only there. Addresses are link-local
//! (169.254.77.1 on the host's tap0, 169.254.77.2 in the guest): never
//! routed, and in a namespace that has no other interface than its
//! loopback, they cannot reach anything but each other. The UML guest runs
//! outside the namespace; it only needs the vhost-user socket, a file.
//!
//! Needs root (or CAP_NET_ADMIN and CAP_SYS_ADMIN) for the namespace and
//! the tap; fails loudly, never skips, when that or a tool (`ip` from
//! iproute2, busybox, UML) is missing.

mod common;

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::net::{listen, net_up, send};
use common::*;
use ringwork_guest_tests::{
    boot_uml, require_tool, uml_modules, Backend, Initramfs, TempDir, UmlGuest,
};

const FILE_LEN: usize = 8 << 20;
const HOST_ADDR: &str = "169.254.77.1";
const GUEST_ADDR: &str = "169.254.77.2";

/// A network namespace of this test's own; deleted on drop.
struct Netns {
    name: String,
    ip: std::path::PathBuf,
}

impl Netns {
    fn create() -> Netns {
        let ip = must(require_tool("ip"), "finding `ip` (iproute2)");
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("ringwork-test-{}-{n}", std::process::id());
        // A namespace left by an earlier run with the same pid.
        let _ = Command::new(&ip)
            .args(["netns", "del", &name])
            .stderr(Stdio::null())
            .status();
        let out = Command::new(&ip)
            .args(["netns", "add", &name])
            .output()
            .unwrap_or_else(|e| panic!("running `ip netns add {name}`: {e}"));
        assert!(
            out.status.success(),
            "cannot create network namespace {name} (this test needs root, or \
             CAP_SYS_ADMIN and CAP_NET_ADMIN): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Netns { name, ip }
    }

    /// `ip netns exec NAME program args...`.
    fn exec(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new(&self.ip);
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }

    /// Runs `ip -n NAME args...`, panicking with its output on failure.
    fn ip(&self, args: &[&str]) -> String {
        let out = Command::new(&self.ip)
            .args(["-n", &self.name])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("running ip {args:?}: {e}"));
        assert!(
            out.status.success(),
            "ip -n {} {args:?} failed: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Netns {
    fn has_link(&self, name: &str) -> bool {
        Command::new(&self.ip)
            .args(["-n", &self.name, "link", "show", name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let ok = Command::new(&self.ip)
            .args(["netns", "del", &self.name])
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("warning: could not delete network namespace {}", self.name);
        }
    }
}

/// A helper process killed on drop.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `ringwork serve net --tap tap0 ARGS` inside `ns`.
fn serve_tap(ns: &Netns, socket: &Path, args: &[&str]) -> Backend {
    let mut cmd = ns.exec(env!("CARGO_BIN_EXE_ringwork"));
    cmd.args(["serve", "net", "--tap", "tap0"])
        .args(args)
        .arg("--socket-path")
        .arg(socket)
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
        );
    let mut backend = must(
        Backend::spawn(cmd, socket, Duration::from_secs(10)),
        "starting ringwork serve net --tap inside the namespace",
    );
    // The socket comes first, then the tap.
    let start = Instant::now();
    while !ns.has_link("tap0") {
        must(backend.check_alive(), "ringwork serve net --tap");
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no tap0 after 10 s; log:\n{}",
            backend.output()
        );
        thread::sleep(Duration::from_millis(20));
    }
    backend
}

/// The value of `field: N` in the backend's last "final counters" line.
fn counter(log: &str, field: &str) -> u64 {
    let line = log
        .lines()
        .rev()
        .find(|l| l.contains("final counters"))
        .unwrap_or_else(|| panic!("no final counters in the backend log:\n{log}"));
    let at = line
        .find(&format!(" {field}: "))
        .unwrap_or_else(|| panic!("no {field} in `{line}`"));
    line[at + field.len() + 3..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unreadable {field} in `{line}`"))
}

/// Waits for the backend to exit by itself (it serves one guest), then
/// returns its whole log.
fn wait_exit(mut backend: Backend) -> String {
    let start = Instant::now();
    while backend.check_alive().is_ok() {
        if start.elapsed() > Duration::from_secs(20) {
            let log = backend.stop();
            panic!("ringwork did not exit after the guest left; log:\n{log}");
        }
        thread::sleep(Duration::from_millis(50));
    }
    backend.stop()
}

/// VIRTIO 1.4 §5.1.9.2, §5.1.9.4 through a real tap: Linux's virtio_net
/// negotiates CSUM, GUEST_CSUM, HOST_TSO4 and GUEST_TSO4; 8 MiB each way
/// arrive intact and the device counted TSO frames in both directions.
#[test]
fn uml_guest_on_a_tap_ping_and_transfer_with_tso() {
    let tmp = must(TempDir::new("uml-tap"), "temp dir");
    let busybox = must(require_tool("busybox"), "finding busybox (host side)");
    let ns = Netns::create();
    let socket = tmp.join("net.sock");
    let backend = serve_tap(&ns, &socket, &["--exit-on-disconnect"]);
    let link = ns.ip(&["-d", "link", "show", "tap0"]);
    assert!(link.contains("vnet_hdr on"), "tap0: {link}");
    ns.ip(&["link", "set", "lo", "up"]);
    ns.ip(&["addr", "add", &format!("{HOST_ADDR}/24"), "dev", "tap0"]);
    ns.ip(&["link", "set", "tap0", "up"]);

    let to_host = pattern(0x7a9_0001, FILE_LEN);
    let to_guest = pattern(0x7a9_0002, FILE_LEN);
    let to_guest_path = tmp.join("to-guest.bin");
    std::fs::write(&to_guest_path, &to_guest).unwrap();
    let received_path = tmp.join("from-guest.bin");

    // Host side receiver: busybox nc in the namespace, stdin held open
    // (so it does not half-close first), exits when the guest closes.
    let listener = Reaped(
        ns.exec(&busybox)
            .args(["nc", "-l", "-p", "5000"])
            .stdin(Stdio::piped())
            .stdout(std::fs::File::create(&received_path).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting the host-side nc listener"),
    );

    let body = format!(
        r#"{listen}{up}
info sent-sha256 "$(sha256sum /data.bin | cut -d' ' -f1)"
{send}check receive wait $L
check size test "$(stat -c %s /tmp/recv.bin)" = {len}
info recv-sha256 "$(sha256sum /tmp/recv.bin | cut -d' ' -f1)"
"#,
        listen = listen(5001, "/tmp/recv.bin"),
        up = net_up(GUEST_ADDR, HOST_ADDR, 1500),
        send = send("send", "/data.bin", HOST_ADDR, 5000),
        len = FILE_LEN,
    );
    let modules = must(
        must(uml_modules(), "UML module tree").resolve(&["virtio_net"]),
        "resolving virtio_net",
    );
    let initrd = tmp.join("guest.gz");
    must(
        Initramfs::new()
            .modules(modules)
            .body(body)
            .bytes("/data.bin", to_host.clone(), 0o644)
            .write(&initrd),
        "building the initramfs",
    );
    let mut g = UmlGuest::new(&initrd);
    g.devices.push((socket.clone(), 1));
    g.timeout = Duration::from_secs(240);
    let guest = thread::spawn(move || boot_uml(&g));

    // Host side sender: once the guest answers pings, send it the file
    // (retrying while its listener is not up yet).
    let ping_ok = || {
        ns.exec(&busybox)
            .args(["ping", "-c", "1", "-W", "1", GUEST_ADDR])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let start = Instant::now();
    let mut sent = false;
    while !sent && start.elapsed() < Duration::from_secs(180) && !guest.is_finished() {
        if !ping_ok() {
            thread::sleep(Duration::from_millis(300));
            continue;
        }
        sent = ns
            .exec(&busybox)
            .args(["nc", "-w", "10", GUEST_ADDR, "5001"])
            .stdin(std::fs::File::open(&to_guest_path).unwrap())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !sent {
            thread::sleep(Duration::from_millis(300));
        }
    }
    let run = guest.join().unwrap();
    let run = match run {
        Ok(r) => r,
        Err(e) => panic!("booting the guest: {e}\nbackend log:\n{}", backend.output()),
    };
    let log = wait_exit(backend);
    assert!(
        sent,
        "could not send the file to the guest; console:\n{}\nbackend log:\n{log}",
        run.console
    );
    let report = std::panic::catch_unwind(|| {
        run.assert_checks(&[
            "insmod-virtio_net",
            "set-mtu",
            "link-up",
            "addr",
            "carrier",
            "peer-reachable",
            "ping",
            "ping-full-size",
            "send",
            "receive",
            "size",
        ])
    })
    .unwrap_or_else(|_| panic!("the guest failed; backend log:\n{log}"));

    // Guest → host: byte for byte (the listener exits when the guest
    // closes; give it a moment).
    let mut listener = listener;
    let start = Instant::now();
    while listener.0.try_wait().unwrap().is_none() && start.elapsed() < Duration::from_secs(10) {
        thread::sleep(Duration::from_millis(50));
    }
    let mut got = Vec::new();
    std::fs::File::open(&received_path)
        .unwrap()
        .read_to_end(&mut got)
        .unwrap();
    assert_eq!(got.len(), FILE_LEN, "bytes the host received");
    assert!(got == to_host, "the file the host received differs");
    // Host → guest: the guest's checksum of what it received.
    let want = Command::new("sha256sum")
        .arg(&to_guest_path)
        .output()
        .expect("sha256sum (coreutils)");
    let want = String::from_utf8_lossy(&want.stdout);
    let want = want.split_whitespace().next().unwrap_or_default();
    assert_eq!(
        report.info("recv-sha256"),
        Some(want),
        "file the guest received"
    );

    // What Linux negotiated (one character per feature bit).
    let features = report.info("features").unwrap_or_default().to_owned();
    let bit = |b: u32| features.as_bytes().get(b as usize) == Some(&b'1');
    use ringwork_spec::net::*;
    for b in [
        VIRTIO_NET_F_CSUM,
        VIRTIO_NET_F_GUEST_CSUM,
        VIRTIO_NET_F_HOST_TSO4,
        VIRTIO_NET_F_GUEST_TSO4,
        VIRTIO_NET_F_MRG_RXBUF,
    ] {
        assert!(bit(b), "feature {b} not negotiated: {features}");
    }
    // TSO frames crossed both ways, none was refused.
    let (tx, tx_gso, rx_gso) = (
        counter(&log, "tx_packets"),
        counter(&log, "tx_gso"),
        counter(&log, "rx_gso"),
    );
    assert!(
        tx_gso > 0 && rx_gso > 0,
        "no TSO frames counted (tx_gso {tx_gso}, rx_gso {rx_gso}); log:\n{log}"
    );
    for f in ["tx_malformed", "tx_backend_dropped", "rx_offload_refused"] {
        assert_eq!(counter(&log, f), 0, "{f}; log:\n{log}");
    }
    assert!(!log.contains("ERROR"), "backend logged errors:\n{log}");
    eprintln!("tap counters: tx {tx} frames ({tx_gso} TSO), rx TSO {rx_gso}");
}

/// `--queues 2` opens a multiqueue tap with one queue per pair (the
/// second detached until the driver uses it); one frontend at a time (a
/// second one waits until the first leaves); `--tap` and `--switch`
/// exclude each other; a bad interface name is refused with a reason.
#[test]
fn tap_multiqueue_one_guest_at_a_time_and_option_errors() {
    use ringwork_vhost_user::Frontend;
    let tmp = must(TempDir::new("tap-mq"), "temp dir");
    let ns = Netns::create();
    let socket = tmp.join("net.sock");
    let backend = serve_tap(&ns, &socket, &["--queues", "2"]);
    let link = ns.ip(&["-d", "link", "show", "tap0"]);
    assert!(link.contains("multi_queue"), "tap0: {link}");
    assert!(link.contains("vnet_hdr on"), "tap0: {link}");
    assert!(link.contains("numqueues 1 numdisabled 1"), "tap0: {link}");
    // The first frontend is served (2 pairs and the controlq) ...
    let a = Frontend::connect(&socket).unwrap();
    assert_eq!(a.get_queue_num().unwrap(), 5);
    // ... the second waits ...
    let b = Frontend::connect(&socket).unwrap();
    b.socket()
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    assert!(
        b.get_queue_num().is_err(),
        "a second guest was served at once"
    );
    // ... until the first leaves. (Its timed-out request is answered
    // first: read that reply, then ask again.)
    drop(a);
    b.socket()
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut late = b.get_queue_num();
    if late.is_ok() {
        late = b.get_queue_num();
    }
    assert_eq!(late.unwrap(), 5, "the waiting guest is served next");
    drop(b);
    let log = backend.stop();
    assert!(log.contains("one guest at a time"), "{log}");
    // The tap goes away with the process that created it.
    let start = Instant::now();
    while ns.has_link("tap0") {
        assert!(start.elapsed() < Duration::from_secs(5), "tap0 left behind");
        thread::sleep(Duration::from_millis(50));
    }

    let ringwork = || {
        let mut c = ns.exec(env!("CARGO_BIN_EXE_ringwork"));
        c.args(["serve", "net", "--socket-path"])
            .arg(tmp.join("x.sock"));
        c
    };
    let out = ringwork()
        .args(["--tap", "tap0", "--switch"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot be used with"));
    let out = ringwork().args(["--tap", "no/slash"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad interface name"), "{err}");
}
