//! Reconnecting to a restarted backend: the frontend transport replays the
//! session on a new connection, the new backend resubmits what the old one
//! left in flight (INFLIGHT_SHMFD), and the driver gets every buffer back
//! exactly once with its data, in both ring formats, whether the
//! reconnection is automatic (`TransportOptions::reconnect`) or explicit.

mod common;
use common::holder::Holder;
use common::temp_dir;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ringwork_device::model::Device;
use ringwork_queue::driver::{DriverQueue, DriverQueueConfig};
use ringwork_queue::{Dma, DmaBuffer, GuestMemory, RingFormat, Segment};
use ringwork_spec::device_id::{DeviceType, VIRTIO_ID_RNG};
use ringwork_spec::features::{FeatureSet, VIRTIO_F_EVENT_IDX, VIRTIO_F_RING_PACKED};
use ringwork_transport::driver::{
    attach_queue, negotiate, ring_features, set_driver_ok, Transport, TransportError,
};
use ringwork_vhost_user::msg::protocol;
use ringwork_vhost_user::SharedMemory;
use ringwork_vhost_user::{
    OnDisconnect, Server, ShutdownHandle, TransportOptions, VhostUserTransport,
};

/// Serves a [`Holder`] on `path`: `queues` queues, `hold` buffers on
/// queue `queues - 1`.
fn backend(
    path: &Path,
    queues: u16,
    hold: bool,
) -> (Arc<AtomicUsize>, ShutdownHandle, JoinHandle<()>) {
    let popped = Arc::new(AtomicUsize::new(0));
    let dev: Arc<dyn Device> = Arc::new(Holder {
        queues,
        queue: queues - 1,
        hold,
        popped: popped.clone(),
    });
    let mut server = Server::bind(path).unwrap();
    let stop = server.shutdown_handle();
    let h = std::thread::spawn(move || {
        let _ = server.serve(dev, OnDisconnect::Exit);
    });
    (popped, stop, h)
}

struct Driver {
    t: VhostUserTransport,
    /// The queue requests go to, and its index.
    q: DriverQueue<Arc<SharedMemory>, u32>,
    index: u16,
    buf: DmaBuffer,
}

impl Driver {
    fn slot(&self, token: u32) -> u64 {
        self.buf.device_addr() + u64::from(token) * 64
    }

    /// Request `token`: 16 readable bytes `[cmd, token, 0xa0 + token...]`
    /// and 16 writable ones the echo device fills with them.
    fn add(&mut self, token: u32, cmd: u8) {
        let mut p = [0xa0 + token as u8; 16];
        (p[0], p[1]) = (cmd, token as u8);
        let at = self.slot(token);
        let mem = self.t.memory().clone();
        mem.slice(at, 32).unwrap().write_bytes(0, &p).unwrap();
        mem.slice(at + 16, 16)
            .unwrap()
            .write_bytes(0, &[0; 16])
            .unwrap();
        self.q
            .add(&[Segment::new(at, 16)], &[Segment::new(at + 16, 16)], token)
            .unwrap();
        if self.q.kick_prepare().unwrap() {
            self.t.notify(self.index, self.q.notification_data());
        }
    }

    /// Waits for `want` completions, checking each one's echoed bytes.
    fn used(&mut self, want: usize) -> BTreeSet<u32> {
        let mut got = BTreeSet::new();
        let t0 = Instant::now();
        while got.len() < want {
            assert!(t0.elapsed() < Duration::from_secs(20), "got only {got:?}");
            self.q.enable_callbacks();
            while let Some(u) = self.q.pop_used().unwrap() {
                let at = self.slot(u.token);
                let (mut p, mut w) = ([0u8; 16], [0u8; 16]);
                let mem = self.t.memory();
                mem.slice(at, 16).unwrap().read_bytes(0, &mut p).unwrap();
                mem.slice(at + 16, 16)
                    .unwrap()
                    .read_bytes(0, &mut w)
                    .unwrap();
                assert_eq!((u.len, w), (16, p), "request {} data", u.token);
                assert!(got.insert(u.token), "request {} completed twice", u.token);
            }
            if got.len() < want {
                self.t.wait_interrupt().unwrap();
            }
        }
        got
    }
}

/// One queue of 16 entries.
fn restart(packed: bool, auto: bool) {
    restart_with(packed, auto, 16, false);
}

/// Two of four requests are held by a backend that goes away; its
/// successor completes them, and a new one, exactly once. Requests go to
/// one queue of `size` entries; with `small_first`, the device has two
/// queues and a small one (4 entries) is set up before it.
fn restart_with(packed: bool, auto: bool, size: u16, small_first: bool) {
    let dir = temp_dir(&format!("reconnect-{packed}-{auto}-{small_first}"));
    let sock = dir.0.join("holder.sock");
    let queues = 1 + u16::from(small_first);
    let (popped1, stop1, h1) = backend(&sock, queues, true);
    let opts = TransportOptions {
        device_type: Some(DeviceType(VIRTIO_ID_RNG)),
        memory_size: 4 << 20,
        timeout: Duration::from_secs(5),
        reconnect: auto.then_some(Duration::from_secs(10)),
        ..TransportOptions::default()
    };
    let mut t = VhostUserTransport::connect(&sock, opts).unwrap();
    assert!(t.has_protocol(protocol::INFLIGHT_SHMFD));
    let mut supports = FeatureSet::from_bits(&[VIRTIO_F_EVENT_IDX]);
    if packed {
        supports.insert(VIRTIO_F_RING_PACKED);
    }
    let negotiated = negotiate(&mut t, supports, &[]).unwrap();
    let (format, qf) = ring_features(&t, negotiated);
    assert_eq!(format == RingFormat::Packed, packed);
    assert_eq!(t.num_queues(), queues);
    let mem = t.memory().clone();
    let make = |index: u16, size: u16| {
        let mut cfg = DriverQueueConfig::new(format, size, qf);
        cfg.index = index;
        DriverQueue::new(mem.clone(), cfg).unwrap()
    };
    let small = small_first.then(|| make(0, 4));
    if let Some(small) = &small {
        attach_queue(&mut t, small).unwrap();
    }
    let index = queues - 1;
    let q = make(index, size);
    attach_queue(&mut t, &q).unwrap();
    set_driver_ok(&mut t);
    let buf = Dma::alloc(&*mem, 4096, 64).unwrap();
    let mut d = Driver { t, q, index, buf };

    // Two of four requests are held by the first backend when it goes away.
    for (token, cmd) in [(0, b'E'), (1, b'H'), (2, b'H'), (3, b'E')] {
        d.add(token, cmd);
    }
    assert_eq!(d.used(2), BTreeSet::from([0, 3]));
    assert_eq!(popped1.load(Ordering::SeqCst), 4);
    stop1.shutdown();
    h1.join().unwrap();

    let (popped2, stop2, h2) = backend(&sock, queues, false);
    if !auto {
        assert!(matches!(
            d.t.wait_interrupt(),
            Err(TransportError::Disconnected(_))
        ));
        d.t.reconnect().unwrap();
    }
    assert!(d.t.error().is_none() || auto);
    // A new request after the restart, and the held ones resubmitted.
    d.add(4, b'E');
    assert_eq!(d.used(3), BTreeSet::from([1, 2, 4]));
    assert!(d.t.error().is_none(), "{:?}", d.t.error());
    assert_eq!(
        popped2.load(Ordering::SeqCst),
        3,
        "the new backend took exactly the held requests and the new one"
    );
    // The session goes on normally.
    d.add(5, b'E');
    assert_eq!(d.used(1), BTreeSet::from([5]));
    d.t.reset().unwrap();
    stop2.shutdown();
    drop(d);
    drop(small);
    h2.join().unwrap();
}

#[test]
fn split_ring_reconnects_automatically() {
    restart(false, true);
}

#[test]
fn packed_ring_reconnects_automatically() {
    restart(true, true);
}

#[test]
fn split_ring_reconnects_on_request() {
    restart(false, false);
}

#[test]
fn packed_ring_reconnects_on_request() {
    restart(true, false);
}

/// vhost-user.rst, "Inflight I/O tracking": the frontend asks for one
/// inflight area, with one queue size for every queue, before the first
/// ring starts. A device whose first queue is small and a later one large
/// (like SCSI's controlq and request queues): queue 0 is set up first with
/// 4 entries, queue 1 after it with 64, and the requests the backend holds
/// on queue 1 when it goes away are resubmitted by its successor, exactly
/// once. (An area sized for the first queue has no room for queue 1: its
/// held requests were lost and completed ones taken again.)
#[test]
fn split_ring_inflight_covers_a_queue_larger_than_the_first() {
    restart_with(false, true, 64, true);
}

/// As above, packed rings.
#[test]
fn packed_ring_inflight_covers_a_queue_larger_than_the_first() {
    restart_with(true, true, 64, true);
}

/// A backend that comes back offering less than the session uses is
/// refused, and the transport stays failed.
#[test]
fn a_backend_that_offers_less_is_refused() {
    let dir = temp_dir("reconnect-less");
    let sock = dir.0.join("holder.sock");
    let (_p, stop1, h1) = backend(&sock, 1, false);
    let mut t = VhostUserTransport::connect(
        &sock,
        TransportOptions {
            device_type: Some(DeviceType(VIRTIO_ID_RNG)),
            memory_size: 4 << 20,
            ..TransportOptions::default()
        },
    )
    .unwrap();
    negotiate(&mut t, FeatureSet::from_bits(&[VIRTIO_F_EVENT_IDX]), &[]).unwrap();
    stop1.shutdown();
    h1.join().unwrap();
    // The replacement is an entropy device without EVENT_IDX.
    let mut server = Server::bind(&sock).unwrap();
    let stop2 = server.shutdown_handle();
    let h2 = std::thread::spawn(move || {
        let dev: Arc<dyn Device> = Arc::new(NoEventIdx);
        let _ = server.serve(dev, OnDisconnect::Exit);
    });
    let e = t.reconnect().unwrap_err();
    assert!(e.to_string().contains("features"), "{e}");
    assert!(t.error().is_some());
    stop2.shutdown();
    h2.join().unwrap();
}

struct NoEventIdx;

impl Device for NoEventIdx {
    fn device_type(&self) -> DeviceType {
        DeviceType(VIRTIO_ID_RNG)
    }
    fn features(&self) -> u64 {
        ringwork_device::ring_features() & !(1 << VIRTIO_F_EVENT_IDX)
    }
    fn num_queues(&self) -> u16 {
        1
    }
    fn config(&self) -> Vec<u8> {
        Vec::new()
    }
    fn start_worker(
        &self,
        _queues: &[u16],
        _features: u64,
        _events: Arc<dyn ringwork_device::model::DeviceEvents>,
    ) -> Result<Box<dyn ringwork_device::model::QueueWorker>, ringwork_device::model::DeviceError>
    {
        Err(ringwork_device::model::DeviceError::Unsupported(
            "never started",
        ))
    }
}
