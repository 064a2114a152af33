//! `ringwork check` against ringwork's SCSI host and network devices:
//! every check passes on the real backends (the network one as the
//! `ringwork serve net --switch` binary, whose connections are ports on
//! one switch, so frames are checked between two concurrent sessions),
//! and deliberately broken devices show up as exactly the corresponding
//! failed checks.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use ringwork_device::model::{Device, DeviceError, DeviceEvents, QueueWorker};
use ringwork_guest_tests::{Backend, TempDir};
use ringwork_spec::device_id::DeviceType;
use ringwork_vhost_user::{OnDisconnect, Server};

mod check_common;
use check_common::*;

/// The SCSI checks that must really run (pass, not skip) on our SCSI host
/// with a writable LUN, a read-only one on another target, and 2 request
/// queues.
const SCSI_CORE: &[&str] = &[
    "features.version-1",
    "status.features-ok",
    "status.driver-ok",
    "scsi.config.num-queues",
    "scsi.config.defaults",
    "scsi.config.hints",
    "scsi.init",
    "scsi.eventq",
    "scsi.report-luns",
    "scsi.inquiry",
    "scsi.inquiry.vpd",
    "scsi.test-unit-ready",
    "scsi.read-capacity",
    "scsi.read-write",
    "scsi.unsupported-opcode",
    "scsi.absent-lun",
    "scsi.bad-target",
    "scsi.cmd-per-lun",
    "scsi.all-queues",
    "scsi.tmf",
    "reset.status",
    "reset.reinit",
    "scsi.config.writable",
    "scsi.config.reset-defaults",
    "scsi.short-request",
    "scsi.split.io",
    "scsi.packed.io",
    "features.subset",
    "status.no-device-errors",
];

/// Our SCSI host: LUN 0:0 (writable) and 1:3 (read-only), 2 request
/// queues, `max_target` 7 (so REPORT LUNS scans 8 targets and target 2
/// answers BAD_TARGET).
fn scsi_device(tmp: &Path) -> (ringwork_device::scsi::Scsi, PathBuf, Vec<u8>) {
    use ringwork_device::scsi::{LunSpec, Scsi, ScsiOptions};
    let a = tmp.join("a.img");
    let before = image(&a, 0x5c5);
    let b = tmp.join("b.img");
    image(&b, 0x5c6);
    let dev = Scsi::open(ScsiOptions {
        luns: vec![
            LunSpec::new(0, 0, &a),
            LunSpec {
                readonly: true,
                ..LunSpec::new(1, 3, &b)
            },
        ],
        num_queues: 2,
        max_target: 7,
        ..ScsiOptions::default()
    })
    .expect("SCSI device");
    (dev, a, before)
}

/// The SCSI suite against ringwork's SCSI host, type inferred: every core
/// check passes and the disk keeps its data.
#[test]
fn our_scsi_backend_passes_and_keeps_the_data() {
    let tmp = must(TempDir::new("check-scsi"), "temp dir");
    let (dev, img, before) = scsi_device(tmp.path());
    let b = InProcess::serve(tmp.join("scsi.sock"), Arc::new(dev));
    let v = check_json(&b.socket, &[]);
    assert_eq!(v["device"], "scsi");
    assert_passes(&v, SCSI_CORE);
    let notes = v["notes"].to_string();
    assert!(notes.contains("logical units: 0:0 1:3"), "{notes}");
    assert_table_matches(&b.socket, &v);
    drop(b);
    assert!(
        std::fs::read(&img).expect("image") == before,
        "ringwork check changed the SCSI disk's data"
    );
}

/// A SCSI host that ignores the driver's writes to `sense_size` and
/// `cdb_size` (§5.6.4 lets the driver change both): exactly the check
/// that writes them fails.
struct ScsiIgnoringConfigWrites(ringwork_device::scsi::Scsi);

impl Device for ScsiIgnoringConfigWrites {
    fn device_type(&self) -> DeviceType {
        self.0.device_type()
    }
    fn features(&self) -> u64 {
        self.0.features()
    }
    fn num_queues(&self) -> u16 {
        self.0.num_queues()
    }
    fn max_queue_size(&self) -> u16 {
        self.0.max_queue_size()
    }
    fn config(&self) -> Vec<u8> {
        self.0.config()
    }
    fn write_config(&self, _offset: u32, _data: &[u8]) {}
    fn set_features(&self, features: u64) {
        self.0.set_features(features)
    }
    fn start_worker(
        &self,
        queues: &[u16],
        features: u64,
        events: Arc<dyn DeviceEvents>,
    ) -> Result<Box<dyn QueueWorker>, DeviceError> {
        self.0.start_worker(queues, features, events)
    }
    fn reset(&self) {
        self.0.reset()
    }
}

#[test]
fn a_scsi_host_ignoring_config_writes_fails_only_that_check() {
    let tmp = must(TempDir::new("check-scsi-cfg"), "temp dir");
    let (dev, _, _) = scsi_device(tmp.path());
    let b = InProcess::serve(
        tmp.join("scsi.sock"),
        Arc::new(ScsiIgnoringConfigWrites(dev)),
    );
    let v = check_json(&b.socket, &["--device-type", "scsi", "--quick"]);
    assert_eq!(ids(&v, "fail"), set(&["scsi.config.writable"]), "{v:#}");
    let why = outcome(&v, "scsi.config.writable")["reason"]
        .as_str()
        .unwrap();
    assert!(why.contains("read 96 and 32"), "{why}");
    // --quick keeps one ring format.
    assert_eq!(outcome(&v, "scsi.split.io")["outcome"], "skip");
    assert_eq!(outcome(&v, "scsi.packed.io")["outcome"], "pass");
}

/// The network checks that must really run (pass, not skip) on `ringwork
/// serve net --switch` with 2 queue pairs.
const NET_CORE: &[&str] = &[
    "features.version-1",
    "features.dependencies",
    "status.features-ok",
    "status.driver-ok",
    "net.config.mac",
    "net.config.status",
    "net.config.max-pairs",
    "net.config.mtu",
    "net.config.speed-duplex",
    "net.init",
    "net.tx",
    "net.tx.malformed",
    "net.ctrl.rx-mode",
    "net.ctrl.mac-table",
    "net.ctrl.mac-addr",
    "net.ctrl.vlan",
    "net.ctrl.mq",
    "net.ctrl.unknown",
    "net.ctrl.malformed",
    "reset.status",
    "reset.reinit",
    "net.split.unicast",
    "net.split.broadcast",
    "net.split.queue-pairs",
    "net.packed.unicast",
    "net.packed.broadcast",
    "net.packed.queue-pairs",
    "net.csum",
    "net.mrg-rxbuf",
    "features.subset",
    "status.no-device-errors",
];

/// The network suite against the `ringwork serve net --switch` binary
/// (each connection a port on one switch), type inferred: every check
/// passes, the frame checks between two concurrent connections included.
#[test]
fn our_net_switch_passes_with_frames_between_two_connections() {
    let tmp = must(TempDir::new("check-net"), "temp dir");
    let socket = tmp.join("net.sock");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ringwork"));
    cmd.args(["serve", "net", "--switch", "--queues", "2", "--socket-path"])
        .arg(&socket);
    let mut net = must(
        Backend::spawn(cmd, &socket, Duration::from_secs(10)),
        "starting ringwork serve net",
    );
    let v = check_json(&socket, &[]);
    assert_eq!(v["device"], "net");
    assert_passes(&v, NET_CORE);
    // ringwork passes NEEDS_CSUM on to a receiver with GUEST_CSUM (the
    // pseudo-header sum byte for byte) and completes it for one without.
    let notes = v["notes"].to_string();
    assert!(
        notes.contains("receiver with GUEST_CSUM: NEEDS_CSUM kept")
            && notes.contains("receiver without GUEST_CSUM: checksum completed"),
        "{notes}"
    );
    assert_table_matches(&socket, &v);
    must(net.check_alive(), "ringwork serve net after the check");
}

/// Serves network devices, one per connection, from `make` (given the
/// connection number), until dropped.
fn serve_net_many(
    socket: PathBuf,
    make: impl Fn(u64) -> Arc<dyn Device> + Send + 'static,
) -> InProcess {
    let mut server = Server::bind(&socket).expect("binding the backend socket");
    let stop = server.shutdown_handle();
    let thread = std::thread::spawn(move || {
        let r = server.serve_many(|n| Ok(make(n)), OnDisconnect::Listen, 8);
        if let Err(e) = r {
            eprintln!("backend: {e}");
        }
    });
    InProcess {
        socket,
        stop,
        thread: Some(thread),
    }
}

fn net_device(port: ringwork_device::net::SwitchPort, n: u64) -> ringwork_device::net::Net {
    use ringwork_device::net::{MacAddr, Net, NetOptions};
    let opts = NetOptions {
        queue_pairs: 2,
        ..NetOptions::new(MacAddr([0x52, 0x54, 0, 0x12, 0x34, 1 + n as u8]))
    };
    Net::new(opts, Arc::new(port)).expect("net device")
}

/// A backend that serves one connection at a time: the checks that need
/// two concurrent connections are skipped, saying why; the rest pass.
#[test]
fn a_single_connection_net_backend_skips_the_frame_checks() {
    use ringwork_device::net::Switch;
    let tmp = must(TempDir::new("check-net1"), "temp dir");
    let switch = Switch::new();
    let dev = net_device(switch.add_port(2).expect("port"), 0);
    let b = InProcess::serve(tmp.join("net.sock"), Arc::new(dev));
    let v = check_json(&b.socket, &["--device-type", "net", "--quick"]);
    assert_passes(
        &v,
        &[
            "net.tx",
            "net.ctrl.mq",
            "net.tx.malformed",
            "features.subset",
        ],
    );
    for id in ["net.packed.unicast", "net.csum", "net.mrg-rxbuf"] {
        let o = outcome(&v, id);
        assert_eq!(o["outcome"], "skip", "{id}: {o}");
        assert!(
            o["reason"]
                .as_str()
                .unwrap()
                .contains("second concurrent connection"),
            "{o}"
        );
    }
}

/// Every connection on a switch of its own: the second connection is
/// accepted but frames never reach it, so exactly the frame checks fail.
#[test]
fn net_ports_that_are_not_connected_fail_the_frame_checks() {
    use ringwork_device::net::Switch;
    let tmp = must(TempDir::new("check-net-apart"), "temp dir");
    let b = serve_net_many(tmp.join("net.sock"), |n| {
        let own = Switch::new();
        let port = own.add_port(2).expect("port");
        Arc::new(net_device(port, n))
    });
    let v = check_json(&b.socket, &["--quick"]);
    assert_eq!(
        ids(&v, "fail"),
        set(&[
            "net.packed.unicast",
            "net.packed.broadcast",
            "net.packed.queue-pairs",
            "net.csum",
            "net.mrg-rxbuf",
        ]),
        "{v:#}"
    );
}

/// A network device whose `status` says the link is down.
struct LinkDown(ringwork_device::net::Net);

impl Device for LinkDown {
    fn device_type(&self) -> DeviceType {
        self.0.device_type()
    }
    fn features(&self) -> u64 {
        self.0.features()
    }
    fn num_queues(&self) -> u16 {
        self.0.num_queues()
    }
    fn max_queue_size(&self) -> u16 {
        self.0.max_queue_size()
    }
    fn config(&self) -> Vec<u8> {
        let mut c = self.0.config();
        c[6] &= !1;
        c
    }
    fn set_features(&self, features: u64) {
        self.0.set_features(features)
    }
    fn queue_running(&self, index: u16, running: bool) {
        self.0.queue_running(index, running)
    }
    fn worker_map(&self) -> Vec<Vec<u16>> {
        self.0.worker_map()
    }
    fn start_worker(
        &self,
        queues: &[u16],
        features: u64,
        events: Arc<dyn DeviceEvents>,
    ) -> Result<Box<dyn QueueWorker>, DeviceError> {
        self.0.start_worker(queues, features, events)
    }
    fn reset(&self) {
        self.0.reset()
    }
}

#[test]
fn a_link_down_status_fails_only_the_status_check() {
    use ringwork_device::net::Switch;
    let tmp = must(TempDir::new("check-net-down"), "temp dir");
    let switch = Switch::new();
    let b = serve_net_many(tmp.join("net.sock"), move |n| {
        let port = switch.add_port(2).expect("port");
        Arc::new(LinkDown(net_device(port, n)))
    });
    let v = check_json(&b.socket, &["--quick"]);
    assert_eq!(ids(&v, "fail"), set(&["net.config.status"]), "{v:#}");
    let why = outcome(&v, "net.config.status")["reason"].as_str().unwrap();
    assert!(why.contains("link is down"), "{why}");
    assert_eq!(outcome(&v, "net.packed.unicast")["outcome"], "pass");
}
