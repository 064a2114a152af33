//! The harness's failure paths: a hung guest is killed with all its helper
//! processes, and backends that die or never listen produce clear errors.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use ringwork_guest_tests::{boot_uml, require_tool, Backend, Error, Initramfs, TempDir, UmlGuest};

/// Processes whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|cmdline| String::from_utf8_lossy(&cmdline).replace('\0', " "))
        .filter(|cmdline| cmdline.contains(needle))
        .collect()
}

#[test]
fn hung_uml_guest_is_killed_with_its_helpers_and_output_is_kept() {
    let tmp = TempDir::new("hang").expect("temp dir");
    let initrd = tmp.join("initrd.gz");
    Initramfs::new()
        .body("echo guest-is-about-to-hang\nsleep 1000\n")
        .write(&initrd)
        .unwrap_or_else(|e| panic!("initramfs: {e}"));
    let mut guest = UmlGuest::new(&initrd);
    guest.timeout = Duration::from_secs(8);
    let err = boot_uml(&guest).expect_err("a guest that sleeps forever must time out");
    let Error::Timeout { output, .. } = &err else {
        panic!("expected a timeout, got: {err}")
    };
    assert!(
        output.contains("guest-is-about-to-hang"),
        "console output lost: {err}"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    let initrd_arg = initrd.display().to_string();
    while !processes_mentioning(&initrd_arg).is_empty() {
        assert!(
            Instant::now() < deadline,
            "UML processes survived: {:?}",
            processes_mentioning(&initrd_arg)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn backend_that_exits_early_reports_its_output() {
    let tmp = TempDir::new("early").expect("temp dir");
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "echo 'cannot open disk image' >&2; exit 3"]);
    let err = Backend::spawn(cmd, tmp.join("never.sock"), Duration::from_secs(10))
        .expect_err("must fail");
    let text = err.to_string();
    assert!(
        text.contains("exited") && text.contains("cannot open disk image"),
        "{text}"
    );
}

/// Live (non-zombie) processes in process group `pgid`.
fn group_members(pgid: u32) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter(|stat| {
            // pid (comm) state ppid pgrp ...
            let fields: Vec<&str> = stat
                .rsplit_once(')')
                .map(|(_, rest)| rest.split_whitespace().collect())
                .unwrap_or_default();
            fields.first() != Some(&"Z") && fields.get(2) == Some(&pgid.to_string().as_str())
        })
        .collect()
}

#[test]
fn backend_without_socket_times_out_and_is_killed() {
    let tmp = TempDir::new("nosock").expect("temp dir");
    let pid_file = tmp.join("pid");
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(format!(
        "echo $$ > {}; echo started; sleep 1000; true",
        pid_file.display()
    ));
    let err = Backend::spawn(cmd, tmp.join("never.sock"), Duration::from_millis(500))
        .expect_err("must time out");
    let text = err.to_string();
    assert!(
        text.contains("did not create socket") && text.contains("started"),
        "{text}"
    );
    let pid: u32 = std::fs::read_to_string(&pid_file)
        .expect("pid file")
        .trim()
        .parse()
        .expect("pid");
    // SIGKILL is delivered asynchronously: give the kernel a moment to
    // remove the processes, then require that none is left.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut left = group_members(pid);
    while !left.is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        left = group_members(pid);
    }
    assert!(left.is_empty(), "backend group left running: {left:?}");
}

#[test]
fn missing_tools_name_their_package() {
    let err = require_tool("/nonexistent/qemu-storage-daemon").expect_err("must be missing");
    assert!(
        err.to_string()
            .contains("apt-get install -y qemu-system-common"),
        "{err}"
    );
    assert!(require_tool("sh").is_ok());
    assert!(Path::new(&require_tool("gzip").expect("gzip")).is_file());
}
