//! `Server::serve_many`: several frontends on one listening socket at
//! once, each with its own device from the factory (here network devices
//! on one switch, as `ringwork serve net --switch` does), a connection
//! limit, isolation of a misbehaving frontend, and both ways of ending.

mod common;

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::temp_dir;
use ringwork_device::model::Device;
use ringwork_device::net::{MacAddr, Net, NetOptions, Switch};
use ringwork_spec::net::NetConfig;
use ringwork_vhost_user::{Frontend, OnDisconnect, Server};

type Factory =
    Box<dyn FnMut(u64) -> Result<Arc<dyn Device>, Box<dyn std::error::Error + Send + Sync>> + Send>;

fn net_factory(sw: Switch, made: Arc<AtomicU64>) -> Factory {
    Box::new(move |n| {
        made.fetch_add(1, Ordering::SeqCst);
        let mac = MacAddr([0x52, 0x54, 0, 0, 0, 1]).offset(n as u32);
        let port = sw.add_port(1)?;
        Ok(Arc::new(Net::new(NetOptions::new(mac), Arc::new(port))?) as Arc<dyn Device>)
    })
}

fn mac_of(f: &Frontend) -> [u8; 6] {
    let c = f.get_config(0, 28).unwrap();
    NetConfig::new_checked(&c[..]).unwrap().mac()
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "timed out: {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn concurrent_frontends_get_their_own_devices() {
    let dir = temp_dir("many");
    let path = dir.0.join("net.sock");
    let sw = Switch::new();
    let made = Arc::new(AtomicU64::new(0));
    let mut server = Server::bind(&path).unwrap();
    let stop = server.shutdown_handle();
    let factory = net_factory(sw.clone(), made.clone());
    let t = std::thread::spawn(move || server.serve_many(factory, OnDisconnect::Listen, 3));

    let a = Frontend::connect(&path).unwrap();
    let b = Frontend::connect(&path).unwrap();
    // Both are served at the same time, each by its own device.
    assert_eq!(mac_of(&a), [0x52, 0x54, 0, 0, 0, 1]);
    assert_eq!(mac_of(&b), [0x52, 0x54, 0, 0, 0, 2]);
    assert_eq!(mac_of(&a), [0x52, 0x54, 0, 0, 0, 1]);
    assert_eq!(a.get_queue_num().unwrap(), 3);
    assert_eq!(sw.num_ports(), 2);

    // A frontend that sends garbage loses only its own connection.
    let mut bad = std::os::unix::net::UnixStream::connect(&path).unwrap();
    bad.write_all(&[0xff; 12]).unwrap();
    wait_until("the bad connection's device is dropped", || {
        made.load(Ordering::SeqCst) == 3 && sw.num_ports() == 2
    });
    assert_eq!(mac_of(&b), [0x52, 0x54, 0, 0, 0, 2]);
    // (The thread ends just after its device is dropped.)
    std::thread::sleep(Duration::from_millis(100));

    // The limit: a third live connection is served, a fourth refused.
    let c = Frontend::connect(&path).unwrap();
    assert_eq!(mac_of(&c), [0x52, 0x54, 0, 0, 0, 4]);
    let d = Frontend::connect(&path).unwrap();
    assert!(d.get_features().is_err(), "over the limit: closed");
    assert_eq!(made.load(Ordering::SeqCst), 4);

    // A frontend that leaves frees its port; a new one gets a new device.
    drop(a);
    wait_until("A's port is gone", || sw.num_ports() == 2);
    let e = Frontend::connect(&path).unwrap();
    assert_eq!(mac_of(&e), [0x52, 0x54, 0, 0, 0, 5]);
    assert_eq!(sw.num_ports(), 3);

    // Shutdown ends every connection and returns.
    stop.shutdown();
    t.join().unwrap().unwrap();
    assert_eq!(sw.num_ports(), 0);
    assert!(b.get_features().is_err());
    drop((c, e));
}

#[test]
fn exit_policy_returns_when_the_last_frontend_leaves() {
    let dir = temp_dir("many-exit");
    let path = dir.0.join("net.sock");
    let sw = Switch::new();
    let mut server = Server::bind(&path).unwrap();
    let factory = net_factory(sw.clone(), Arc::new(AtomicU64::new(0)));
    let t = std::thread::spawn(move || server.serve_many(factory, OnDisconnect::Exit, 8));
    let a = Frontend::connect(&path).unwrap();
    let b = Frontend::connect(&path).unwrap();
    assert_ne!(mac_of(&a), mac_of(&b));
    drop(a);
    std::thread::sleep(Duration::from_millis(100));
    assert!(!t.is_finished(), "B is still connected");
    assert_eq!(mac_of(&b), [0x52, 0x54, 0, 0, 0, 2]);
    drop(b);
    wait_until("serve_many returns", || t.is_finished());
    t.join().unwrap().unwrap();
    assert_eq!(sw.num_ports(), 0);
}

#[test]
fn factory_failure_closes_only_that_connection() {
    let dir = temp_dir("many-fail");
    let path = dir.0.join("net.sock");
    let sw = Switch::new();
    let mut server = Server::bind(&path).unwrap();
    let stop = server.shutdown_handle();
    let inner = net_factory(sw.clone(), Arc::new(AtomicU64::new(0)));
    let mut inner = Some(inner);
    let factory =
        move |n: u64| -> Result<Arc<dyn Device>, Box<dyn std::error::Error + Send + Sync>> {
            if n == 0 {
                return Err("no device for you".into());
            }
            (inner.as_mut().unwrap())(n)
        };
    let t = std::thread::spawn(move || server.serve_many(factory, OnDisconnect::Listen, 8));
    let a = Frontend::connect(&path).unwrap();
    assert!(a.get_features().is_err());
    let b = Frontend::connect(&path).unwrap();
    assert_eq!(mac_of(&b), [0x52, 0x54, 0, 0, 0, 2]);
    stop.shutdown();
    t.join().unwrap().unwrap();
}
