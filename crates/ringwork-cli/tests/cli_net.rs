//! `ringwork serve net --switch` as scripts use it: options, exit codes,
//! several frontends on one socket (each a device with its own MAC), and
//! a prompt, clean exit on SIGTERM.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ringwork_spec::net::NetConfig;
use ringwork_vhost_user::Frontend;

fn ringwork() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ringwork"))
}

fn temp(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("ringwork-cli-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn mac_of(f: &Frontend) -> [u8; 6] {
    let c = f.get_config(0, 28).unwrap();
    NetConfig::new_checked(&c[..]).unwrap().mac()
}

fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "no exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn wait_socket(sock: &Path) {
    let start = Instant::now();
    while !sock.exists() {
        assert!(start.elapsed() < Duration::from_secs(10), "no socket");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn net_options_and_capabilities() {
    let out = ringwork()
        .args(["serve", "net", "--print-capabilities"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"type\": \"net\""));
    for bad in [
        &["--socket-path", "/tmp/x"][..],
        &[
            "--switch",
            "--socket-path",
            "/tmp/x",
            "--mac",
            "52:54:00:12:34",
        ],
        &[
            "--switch",
            "--socket-path",
            "/tmp/x",
            "--mac",
            "01:00:5e:00:00:01",
        ],
        &["--switch", "--socket-path", "/tmp/x", "--mtu", "67"],
        &["--switch", "--socket-path", "/tmp/x", "--queues", "0"],
        &["--switch", "--socket-path", "/tmp/x", "--queues", "65"],
    ] {
        let out = ringwork()
            .args(["serve", "net"])
            .args(bad)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
    }
}

#[test]
fn several_frontends_on_one_socket_then_sigterm() {
    let d = temp("net");
    let sock = d.join("net.sock");
    let mut child = ringwork()
        .args([
            "serve",
            "net",
            "--switch",
            "--queues",
            "2",
            "--mtu",
            "9000",
            "--mac",
            "52:54:00:aa:00:10",
            "--socket-path",
        ])
        .arg(&sock)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_socket(&sock);
    let a = Frontend::connect(&sock).unwrap();
    let b = Frontend::connect(&sock).unwrap();
    assert_eq!(mac_of(&a), [0x52, 0x54, 0, 0xaa, 0, 0x10]);
    assert_eq!(mac_of(&b), [0x52, 0x54, 0, 0xaa, 0, 0x11]);
    // 2 pairs and a controlq; MTU and pairs in the config space.
    assert_eq!(a.get_queue_num().unwrap(), 5);
    let c = b.get_config(0, 28).unwrap();
    let cfg = NetConfig::new_checked(&c[..]).unwrap();
    assert_eq!((cfg.max_virtqueue_pairs(), cfg.mtu()), (2, 9000));
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = wait_exit(&mut child);
    assert!(status.success(), "{status:?}");
    assert!(!sock.exists(), "socket left behind");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn exit_on_disconnect_waits_for_the_last_guest() {
    let d = temp("net-exit");
    let sock = d.join("net.sock");
    let mut child = ringwork()
        .args([
            "serve",
            "net",
            "--switch",
            "--exit-on-disconnect",
            "--socket-path",
        ])
        .arg(&sock)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_socket(&sock);
    let a = Frontend::connect(&sock).unwrap();
    let b = Frontend::connect(&sock).unwrap();
    assert_ne!(mac_of(&a), mac_of(&b));
    drop(a);
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        child.try_wait().unwrap().is_none(),
        "exited with a guest left"
    );
    drop(b);
    assert!(wait_exit(&mut child).success());
    let _ = std::fs::remove_dir_all(&d);
}
