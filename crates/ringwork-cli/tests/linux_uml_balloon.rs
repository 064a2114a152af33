//! Linux as the judge, under User-Mode Linux: the kernel's virtio_balloon
//! driver (through virtio_uml, a vhost-user frontend) drives the balloon
//! served by `ringwork serve balloon`, while this test steers the target
//! through the backend's control socket.
//!
//! Fails loudly (with the guest console and the backend log) when a check
//! fails or a host tool is missing; never skips.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use ringwork_guest_tests::{boot_uml, read_module, uml_modules, Initramfs, TempDir, UmlGuest};

const MIB: u64 = 1 << 20;
const TARGET: u64 = 64 * MIB;

/// One control-socket conversation.
struct Control {
    out: UnixStream,
    input: BufReader<UnixStream>,
}

impl Control {
    fn connect(path: &Path) -> Control {
        let start = Instant::now();
        let s = loop {
            match UnixStream::connect(path) {
                Ok(s) => break s,
                Err(e) if start.elapsed() > Duration::from_secs(10) => {
                    panic!("connecting to {}: {e}", path.display())
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Control {
            out: s.try_clone().unwrap(),
            input: BufReader::new(s),
        }
    }

    fn ask(&mut self, line: &str) -> String {
        writeln!(self.out, "{line}").unwrap();
        let mut answer = String::new();
        self.input
            .read_line(&mut answer)
            .unwrap_or_else(|e| panic!("control answer to {line:?}: {e}"));
        answer.trim_end().to_owned()
    }

    /// `key=value` from a `status`/`stats` answer.
    fn field(answer: &str, key: &str) -> Option<u64> {
        answer
            .split_whitespace()
            .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
            .and_then(|v| v.parse().ok())
    }

    /// Asks `status` until `pred` holds for the answer (or panics after
    /// `limit` with the last answer).
    fn wait_status(&mut self, what: &str, limit: Duration, pred: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let a = self.ask("status");
            if pred(&a) {
                return a;
            }
            if start.elapsed() > limit {
                panic!("{what}: not reached within {limit:?}; last status: {a}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// What the host side saw.
#[derive(Debug)]
struct HostView {
    resident_before: u64,
    resident_inflated: u64,
    total_before: u64,
    total_inflated: u64,
    log: Vec<String>,
}

/// The host side: waits for the driver, measures, sets the target, waits
/// for the balloon to reach it, measures again, then lets it deflate.
fn steer(control: &Path) -> HostView {
    let mut c = Control::connect(control);
    let mut log = Vec::new();
    let idle = c.wait_status("driver start", Duration::from_secs(90), |a| {
        a.contains("driver=active") && Control::field(a, "stats_updates").unwrap_or(0) > 0
    });
    log.push(format!("started: {idle}"));
    let before = c.ask("stats");
    log.push(format!("before: {before}"));
    let resident_before = Control::field(&before, "resident").expect("resident before");
    let total_before = Control::field(&before, "total-memory").expect("guest MemTotal stat");
    assert_eq!(c.ask("target 64M"), "ok");
    let inflated = c.wait_status("inflation", Duration::from_secs(120), |a| {
        Control::field(a, "actual") == Some(TARGET) && Control::field(a, "inflated") == Some(TARGET)
    });
    log.push(format!("inflated: {inflated}"));
    let resident_inflated = Control::field(&inflated, "resident").expect("resident after");
    let stats = c.ask("stats");
    log.push(format!("inflated stats: {stats}"));
    let total_inflated = Control::field(&stats, "total-memory").expect("MemTotal stat");
    // Give the guest (polling every 0.1 s) time to see the smaller
    // MemTotal before the balloon deflates again.
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(c.ask("target 0"), "ok");
    let deflated = c.wait_status("deflation", Duration::from_secs(120), |a| {
        Control::field(a, "actual") == Some(0) && Control::field(a, "inflated") == Some(0)
    });
    log.push(format!("deflated: {deflated}"));
    HostView {
        resident_before,
        resident_inflated,
        total_before,
        total_inflated,
        log,
    }
}

/// A UML guest with 256 MiB whose body records MemTotal as `$t0` (with a
/// `memtotal` shell function), loads virtio_balloon (checks
/// `insmod-balloon-N`) and runs `body`; `init_on_free=1` on its command
/// line. Returns the guest and the names of the insmod checks.
fn balloon_guest(tmp: &TempDir, socket: &Path, body: &str) -> (UmlGuest, Vec<String>) {
    // The module is loaded by the body, after the guest recorded MemTotal.
    let modules = must(
        must(uml_modules(), "UML module tree").resolve(&["virtio_balloon"]),
        "resolving virtio_balloon",
    );
    let mut initramfs = Initramfs::new();
    let mut insmods = String::new();
    let mut names = Vec::new();
    for (i, m) in modules.iter().enumerate() {
        let guest_path = format!("/balloon/{i:02}.ko");
        initramfs = initramfs.bytes(&guest_path, must(read_module(m), "reading module"), 0o644);
        insmods.push_str(&format!("check insmod-balloon-{i} insmod {guest_path}\n"));
        names.push(format!("insmod-balloon-{i}"));
    }
    let script = format!(
        r#"
memtotal() {{ while read k v u; do [ "$k" = MemTotal: ] && echo $v; done < /proc/meminfo; }}
t0=$(memtotal)
info memtotal-before $t0
{insmods}
{body}
"#
    );
    let initrd = tmp.join("initrd.gz");
    must(
        initramfs.body(script).write(&initrd),
        "building the initramfs",
    );
    let mut guest = UmlGuest::new(&initrd);
    guest.mem = "256M".into();
    guest.timeout = Duration::from_secs(300);
    guest.devices.push((socket.to_path_buf(), 5));
    // Linux zeroes pages as it frees them, all memory at boot included:
    // every guest page is then resident on the host before the balloon
    // starts, so the pages it gives back show in the resident count
    // (untouched pages of the shared memory file would not).
    guest.extra_args.push("init_on_free=1".into());
    (guest, names)
}

/// Guest shell: waits (up to 3 minutes) until MemTotal is `$1` KiB.
const WAIT_MEMTOTAL: &str = r#"
wait_memtotal() {
    i=0
    while [ $(memtotal) -ne $1 ]; do i=$((i+1)); [ $i -gt 1800 ] && return 1; sleep 0.1; done
}
"#;

fn join_host<T>(host: std::thread::JoinHandle<T>, console: &str, backend: &str) -> T {
    match host.join() {
        Ok(v) => v,
        Err(e) => panic!(
            "host side failed: {:?}\n--- guest console ---\n{console}\n--- backend ---\n{backend}",
            e.downcast_ref::<String>()
        ),
    }
}

/// VIRTIO 1.4 §5.5.6 through Linux's virtio_balloon: the host sets a 64 MiB
/// target over the control socket; the configuration change notification
/// reaches the guest (vhost-user BACKEND_CONFIG_CHANGE_MSG), the driver
/// inflates until the backend's `actual` and its own record both say
/// 64 MiB, the guest's MemTotal drops by exactly 64 MiB (seen in the guest
/// and in its memory statistics), and the guest memory resident on the
/// host drops by most of that (the pages were discarded). Then target 0:
/// the balloon deflates, `actual` returns to 0 and MemTotal to its old
/// value.
#[test]
fn uml_balloon_inflates_to_target_and_deflates() {
    let tmp = must(TempDir::new("uml-balloon"), "temp dir");
    let socket = tmp.join("balloon.sock");
    let control = tmp.join("control.sock");
    let mut backend = serve(
        &[
            "balloon",
            "--control",
            control.to_str().unwrap(),
            "--stats-interval",
            "1",
        ],
        &socket,
    );
    let c2 = control.clone();
    let host = std::thread::spawn(move || steer(&c2));
    let body = format!(
        r#"{WAIT_MEMTOTAL}
# The host sets a 64 MiB target: MemTotal drops by exactly 64 MiB.
check inflated wait_memtotal $((t0 - 65536))
info memtotal-inflated $(memtotal)
# Then target 0: MemTotal comes back.
check deflated wait_memtotal $t0
"#
    );
    let (guest, mut expected) = balloon_guest(&tmp, &socket, &body);
    let run = must(boot_uml(&guest), "booting the UML guest");
    let view = join_host(host, &run.console, &backend.output());
    expected.extend(["inflated".to_string(), "deflated".to_string()]);
    let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
    run.assert_checks(&expected);
    let context = format!("{view:#?}\n--- backend ---\n{}", backend.output());
    for line in &view.log {
        eprintln!("control: {line}");
    }
    assert_eq!(
        view.total_before - view.total_inflated,
        TARGET,
        "guest MemTotal statistic dropped by the target; {context}"
    );
    assert!(
        view.resident_before >= view.resident_inflated + TARGET * 7 / 8,
        "host resident guest memory dropped by most of the target; {context}"
    );
    must(
        backend.check_alive(),
        "ringwork serve balloon after the guest",
    );
}

/// VIRTIO 1.4 §5.5.6.7 and §5.5.6.5 through Linux's virtio_balloon, with
/// PAGE_REPORTING, PAGE_POISON and FREE_PAGE_HINT offered. Linux (with
/// init_on_free) negotiates PAGE_POISON with a poison value of 0, which a
/// discarded page satisfies: memory the guest frees is reported and given
/// back (the backend's reported bytes grow and host residency drops). A
/// hinting round started over the control socket gets hints under its
/// command ID and the driver's STOP; DONE ends it. Finally a 4 MiB target
/// tells the guest to finish.
#[test]
fn uml_balloon_free_page_reporting_and_hinting() {
    let tmp = must(TempDir::new("uml-balloon-report"), "temp dir");
    let socket = tmp.join("balloon.sock");
    let control = tmp.join("control.sock");
    let mut backend = serve(
        &[
            "balloon",
            "--control",
            control.to_str().unwrap(),
            "--page-reporting",
            "--page-poison",
            "--free-page-hint",
        ],
        &socket,
    );
    let c2 = control.clone();
    let host = std::thread::spawn(move || {
        let mut c = Control::connect(&c2);
        let mut log = Vec::new();
        let started = c.wait_status("driver start", Duration::from_secs(90), |a| {
            a.contains("driver=active")
        });
        log.push(format!("started: {started}"));
        // The guest frees ~96 MiB after loading the driver; Linux reports
        // free high-order blocks about 2 s after they appear.
        let reported = c.wait_status("free page reporting", Duration::from_secs(120), |a| {
            Control::field(a, "reported").unwrap_or(0) >= 32 * MIB
        });
        log.push(format!("reported: {reported}"));
        let hint = c.ask("hint start");
        log.push(format!("hint start: {hint}"));
        let id: u64 = hint
            .strip_prefix("ok ")
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("hint start answered {hint:?}"));
        let hinted = c.wait_status("hinting round", Duration::from_secs(120), |a| {
            Control::field(a, "hinted").unwrap_or(0) > 0
                && Control::field(a, "driver_cmd") == Some(0)
        });
        log.push(format!("hinted: {hinted}"));
        assert_eq!(Control::field(&hinted, "hint_cmd"), Some(id), "{log:#?}");
        assert_eq!(c.ask("hint done"), "ok 1");
        assert_eq!(c.ask("target 4M"), "ok");
        let last = c.wait_status("final inflation", Duration::from_secs(120), |a| {
            Control::field(a, "actual") == Some(4 * MIB)
        });
        log.push(format!("final: {last}"));
        (started, reported, hinted, log)
    });
    let body = format!(
        r#"{WAIT_MEMTOTAL}
check fill dd if=/dev/zero of=/tmp/fill bs=1M count=96
rm -f /tmp/fill
# The host ends the test by asking for 4 MiB.
check finish wait_memtotal $((t0 - 4096))
# MemTotal drops while the driver inflates, before it writes `actual`:
# stay connected long enough for the host to see `actual` too.
sleep 3
"#
    );
    let (guest, mut expected) = balloon_guest(&tmp, &socket, &body);
    let run = must(boot_uml(&guest), "booting the UML guest");
    let (started, reported, hinted, log) = join_host(host, &run.console, &backend.output());
    expected.extend(["fill".to_string(), "finish".to_string()]);
    let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
    run.assert_checks(&expected);
    for line in &log {
        eprintln!("control: {line}");
    }
    let context = format!("{log:#?}\n--- backend ---\n{}", backend.output());
    assert!(
        started.contains("poison=0x0"),
        "PAGE_POISON negotiated with 0; {context}"
    );
    assert_eq!(
        Control::field(&reported, "reported_kept"),
        Some(0),
        "{context}"
    );
    let resident = |a: &str| Control::field(a, "resident").expect("resident");
    assert!(
        resident(&started) >= resident(&reported) + 16 * MIB,
        "reported memory left the host; {context}"
    );
    assert!(
        Control::field(&hinted, "hinted").unwrap() >= 4 * MIB,
        "{context}"
    );
    must(
        backend.check_alive(),
        "ringwork serve balloon after the guest",
    );
}
