//! `ringwork serve net --switch`: one vhost-user socket, any number of
//! guests, each connection a network device on its own port of one
//! userspace switch (no host networking, no privileges). `--loopback`:
//! each connection's frames come back to it (a far end for driver tests
//! and packets-per-second benchmarks, like DPDK testpmd's io forwarding).
//!
//! `ringwork serve net --tap IFNAME`: one guest at a time on a Linux tap
//! interface (created when absent; CAP_NET_ADMIN), with checksum and
//! segmentation offloads passed through; a second frontend waits until
//! the first disconnects.

use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use ringwork_device::model::Device;
use ringwork_device::net::{
    Loopback, MacAddr, Net, NetBackend, NetOptions, NetWorkers, Switch, Tap, MAX_MTU,
    MAX_QUEUE_PAIRS,
};
use ringwork_vhost_user::{OnDisconnect, Server};

/// Most guests connected at once.
pub const MAX_CONNECTIONS: usize = 64;

/// Network device options.
#[derive(Debug, Args)]
pub struct NetArgs {
    /// Connect every guest to a built-in userspace L2 switch (learning,
    /// flooding; no host networking). Each connection to the socket is a
    /// new guest on its own switch port.
    #[arg(long, required_unless_present_any = ["print_capabilities", "loopback", "tap"])]
    switch: bool,
    /// Connect the guest to the Linux tap interface IFNAME (created when
    /// absent, removed again at exit; needs CAP_NET_ADMIN). One guest at a
    /// time: a second connection waits until the first leaves. Checksum
    /// and segmentation offloads (TSO, UFO, USO) pass through.
    #[arg(long, value_name = "IFNAME", conflicts_with_all = ["switch", "loopback"])]
    tap: Option<String>,
    /// Send every frame a guest transmits back to that guest (on the
    /// receive queue of the same pair): a far end for testing a driver
    /// on its own, or for packets-per-second benchmarks.
    #[arg(long, conflicts_with = "switch")]
    loopback: bool,
    /// How a device's queues share worker threads: `queue` (one thread
    /// per queue), `pair` (one per queue pair), `device` (one thread;
    /// with --poll-us, a polling device on one core).
    #[arg(long, value_enum, default_value_t = Workers::Queue)]
    workers: Workers,
    /// Queue pairs per device (more than one offers VIRTIO_NET_F_MQ; with
    /// --tap, a multiqueue tap with one queue per pair).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=i64::from(MAX_QUEUE_PAIRS)))]
    queues: u16,
    /// MTU offered to the guests (VIRTIO_NET_F_MTU).
    #[arg(long, default_value_t = 1500, value_parser = clap::value_parser!(u16).range(68..=i64::from(MAX_MTU)))]
    mtu: u16,
    /// MAC address of the first guest; the nth connection (0, 1, ...) gets
    /// this address plus n.
    #[arg(long, value_name = "MAC", default_value = "52:54:00:12:34:01", value_parser = unicast_mac)]
    mac: MacAddr,
    /// Write received frames into the guest's buffers with streaming
    /// (non-temporal) stores: the device's core does not wait for the
    /// buffers' cache lines (for the frame's bytes from its first 16-byte
    /// boundary on), and the guest reads the frames from memory. Measured
    /// faster with a polling guest on another core (docs/PERFORMANCE.md);
    /// expected slower with one on a sibling hyperthread.
    #[arg(long)]
    rx_streaming_stores: bool,
}

/// `--workers`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Workers {
    /// One thread per queue.
    Queue,
    /// One thread per queue pair.
    Pair,
    /// One thread per device.
    Device,
}

impl From<Workers> for NetWorkers {
    fn from(w: Workers) -> Self {
        match w {
            Workers::Queue => NetWorkers::PerQueue,
            Workers::Pair => NetWorkers::PerPair,
            Workers::Device => NetWorkers::One,
        }
    }
}

fn unicast_mac(s: &str) -> Result<MacAddr, String> {
    let mac: MacAddr = s.parse().map_err(|e| format!("{e}"))?;
    if mac.is_multicast() {
        return Err(format!("{mac} is a multicast address"));
    }
    Ok(mac)
}

/// Serves guests until shutdown (or, with `policy` Exit, until the last
/// connected guest left).
pub fn serve(server: &mut Server, a: &NetArgs, policy: OnDisconnect) -> anyhow::Result<()> {
    if let Some(name) = &a.tap {
        return serve_tap(server, a, name, policy);
    }
    let switch = (!a.loopback).then(Switch::new);
    let (queues, mtu, base, workers) = (a.queues, a.mtu, a.mac, a.workers.into());
    let rx_streaming_stores = a.rx_streaming_stores;
    let what = if a.loopback { "loopback" } else { "switch" };
    tracing::info!(
        "{what}: guests get {base} and up, {queues} queue pair(s), MTU {mtu}, at most {MAX_CONNECTIONS} at once"
    );
    let factory =
        move |n: u64| -> Result<Arc<dyn Device>, Box<dyn std::error::Error + Send + Sync>> {
            let mac = base.offset(n as u32);
            let (backend, port): (Arc<dyn NetBackend>, String) = match &switch {
                Some(switch) => {
                    let port = switch.add_port(queues)?;
                    let id = port.id();
                    (Arc::new(port), format!("switch port {id}"))
                }
                None => (Arc::new(Loopback::new(queues)?), "loopback".to_string()),
            };
            let opts = NetOptions {
                queue_pairs: queues,
                mtu,
                workers,
                rx_streaming_stores,
                ..NetOptions::new(mac)
            };
            let dev = Net::new(opts, backend)?;
            tracing::info!("connection {n}: {port}, MAC {mac}");
            Ok(Arc::new(dev))
        };
    server
        .serve_many(factory, policy, MAX_CONNECTIONS)
        .context("serving")
}

/// Serves one guest at a time on tap `name` (the device, and the tap,
/// live across connections; the device is reset between them).
fn serve_tap(
    server: &mut Server,
    a: &NetArgs,
    name: &str,
    policy: OnDisconnect,
) -> anyhow::Result<()> {
    let tap = Arc::new(Tap::open(name, a.queues).context("opening the tap")?);
    let opts = NetOptions {
        queue_pairs: a.queues,
        mtu: a.mtu,
        workers: a.workers.into(),
        rx_streaming_stores: a.rx_streaming_stores,
        ..NetOptions::new(a.mac)
    };
    let dev = Arc::new(Net::new(opts, tap.clone())?);
    tracing::info!(
        "tap {}: guest MAC {}, {} queue pair(s), MTU {}, offloads {:?}; one guest at a time (a second connection waits until the first leaves)",
        tap.name(),
        a.mac,
        a.queues,
        a.mtu,
        tap.offloads()
    );
    let r = server.serve(dev.clone(), policy).context("serving");
    tracing::info!(
        "tap {}: final counters {:?}, tap {:?}",
        tap.name(),
        dev.stats(),
        tap.stats()
    );
    r
}
