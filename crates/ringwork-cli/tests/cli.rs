//! The `ringwork` command line as scripts use it: exit codes, clear
//! messages, `--print-capabilities`, prompt exit on SIGTERM.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn ringwork() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ringwork"))
}

fn temp(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("ringwork-cli-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn print_capabilities_is_json_and_ignores_other_options() {
    let out = ringwork()
        .args(["serve", "blk", "--print-capabilities"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let s = String::from_utf8(out.stdout).unwrap();
    assert!(s.contains("\"type\": \"block\""), "{s}");
    assert!(s.contains("\"read-only\""), "{s}");
    let out = ringwork()
        .args(["serve", "rng", "--print-capabilities"])
        .output()
        .unwrap();
    assert!(String::from_utf8(out.stdout)
        .unwrap()
        .contains("\"type\": \"rng\""));
}

#[test]
fn missing_image_is_a_setup_error_with_a_clear_message() {
    let d = temp("missing");
    let out = ringwork()
        .args(["serve", "blk", "--image"])
        .arg(d.join("nope.img"))
        .arg("--socket-path")
        .arg(d.join("s.sock"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("nope.img") && err.contains("no such file"),
        "{err}"
    );
}

#[test]
fn bad_options_are_usage_errors() {
    let out = ringwork()
        .args(["serve", "blk", "--queues", "0", "--socket-path", "/tmp/x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = ringwork()
        .args(["serve", "rng", "--socket-path", "/tmp/x", "--fd", "5"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "--socket-path and --fd conflict"
    );
    let out = ringwork().args(["serve", "rng"]).output().unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--socket-path"));
}

#[test]
fn busy_socket_is_refused_and_sigterm_exits_promptly() {
    let d = temp("busy");
    let sock = d.join("rng.sock");
    let mut first = ringwork()
        .args(["serve", "rng", "--socket-path"])
        .arg(&sock)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !sock.exists() {
        assert!(start.elapsed() < Duration::from_secs(10), "no socket");
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = ringwork()
        .args(["serve", "rng", "--socket-path"])
        .arg(&sock)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("busy"));
    // SIGTERM: a clean, prompt exit (status 0) that removes the socket.
    let kill = Command::new("kill")
        .args(["-TERM", &first.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let start = Instant::now();
    let status = loop {
        if let Some(s) = first.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no exit on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
    assert!(!sock.exists(), "socket left behind");
}

#[test]
fn invoked_as_a_vhost_user_backend_binary_name() {
    let d = temp("alias");
    let link = d.join("ringwork-vhost-user-blk");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_ringwork"), &link).unwrap();
    let out = Command::new(&link)
        .arg("--print-capabilities")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"block\""));
}

/// The shipped vhost-user.json backend descriptions name a binary whose
/// basename makes `ringwork` act as that backend, with the same type
/// `--print-capabilities` reports.
#[test]
fn shipped_backend_descriptions_match_the_binary() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("share/vhost-user");
    for kind in ["blk", "rng", "console"] {
        let text = std::fs::read_to_string(dir.join(format!("50-ringwork-{kind}.json"))).unwrap();
        let binary = format!("ringwork-vhost-user-{kind}\"");
        assert!(text.contains(&binary), "{kind}: {text}");
        let out = ringwork()
            .args(["serve", kind, "--print-capabilities"])
            .output()
            .unwrap();
        let caps = String::from_utf8(out.stdout).unwrap();
        let ty = caps
            .lines()
            .find(|l| l.contains("\"type\""))
            .unwrap()
            .trim()
            .trim_end_matches(',');
        assert!(text.contains(ty), "{kind}: {ty} not in {text}");
    }
}

/// `ringwork demo` (the README's first command): self-contained, serves a
/// temporary disk with our backend, checks it and benchmarks it, and cleans
/// up after itself.
#[test]
fn demo_runs_end_to_end_and_cleans_up() {
    let out = ringwork()
        .args(["demo", "--time", "300ms", "--size", "16m"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(" 0 failed"), "{stdout}");
    assert!(stdout.contains("split ring:") && stdout.contains("packed ring:"));
    assert!(stdout.contains("IOPS"));
    let pid_dir = stdout
        .lines()
        .find_map(|l| l.strip_prefix("1. A 16 MiB disk image: "))
        .map(std::path::PathBuf::from)
        .and_then(|p| p.parent().map(|d| d.to_owned()))
        .expect("the demo names its image");
    assert!(!pid_dir.exists(), "{} left behind", pid_dir.display());
}
