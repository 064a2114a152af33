//! Backends whose workers poll their rings before sleeping, with a fixed
//! and with an adaptive window: they serve the same requests (buffers found
//! by polling and by kicks alike), and they go to sleep once the window has
//! passed, even when a ring holds buffers the device leaves there (a network
//! receive queue waiting for input does exactly that).

mod common;
use common::temp_dir;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use std::thread::JoinHandle;

use ringwork_device::model::{Device, DeviceError, DeviceEvents, QueueSet, QueueWorker};
use ringwork_device::rng::Rng;
use ringwork_queue::driver::{DriverQueue, DriverQueueConfig};
use ringwork_queue::{Dma, DmaBuffer, Segment};
use ringwork_spec::device_id::{DeviceType, VIRTIO_ID_RNG};
use ringwork_spec::features::{FeatureSet, VIRTIO_F_EVENT_IDX};
use ringwork_transport::driver::{
    attach_queue, negotiate, ring_features, set_driver_ok, Transport,
};
use ringwork_vhost_user::{
    OnDisconnect, PollPolicy, Server, SharedMemory, TransportOptions, VhostUserTransport,
};

/// A served device with its one queue set up and running.
struct Rig {
    t: VhostUserTransport,
    q: DriverQueue<Arc<SharedMemory>, u32>,
    buf: DmaBuffer,
    server: JoinHandle<()>,
    _dir: common::TempDir,
}

fn rig(tag: &str, policy: PollPolicy, dev: Arc<dyn Device>, features: &[u32]) -> Rig {
    let dir = temp_dir(tag);
    let sock = dir.0.join("dev.sock");
    let mut server = Server::bind(&sock).unwrap();
    server.set_poll_policy(policy);
    let server = std::thread::spawn(move || {
        let _ = server.serve(dev, OnDisconnect::Exit);
    });
    let opts = TransportOptions {
        memory_size: 4 << 20,
        timeout: Duration::from_secs(5),
        ..TransportOptions::default()
    };
    let mut t = VhostUserTransport::connect(&sock, opts).unwrap();
    let negotiated = negotiate(&mut t, FeatureSet::from_bits(features), &[]).unwrap();
    let (format, qf) = ring_features(&t, negotiated);
    let mem = t.memory().clone();
    let q = DriverQueue::new(mem.clone(), DriverQueueConfig::new(format, 64, qf)).unwrap();
    attach_queue(&mut t, &q).unwrap();
    set_driver_ok(&mut t);
    let buf = Dma::alloc(&*mem, 4096, 64).unwrap();
    Rig {
        t,
        q,
        buf,
        server,
        _dir: dir,
    }
}

impl Rig {
    fn finish(mut self) {
        self.t.reset().unwrap();
        drop(self.t);
        self.server.join().unwrap();
    }
}

fn serves_requests_with(policy: PollPolicy, tag: &str) {
    let mut r = rig(tag, policy, Arc::new(Rng::new()), &[VIRTIO_F_EVENT_IDX]);
    for round in 0..200u32 {
        let seg = Segment::new(r.buf.device_addr(), 16);
        r.q.add(&[], &[seg], round).unwrap();
        r.q.enable_callbacks();
        if r.q.kick_prepare().unwrap() {
            r.t.notify(0, r.q.notification_data());
        }
        let used = loop {
            if let Some(u) = r.q.pop_used().unwrap() {
                break u;
            }
            r.t.wait_interrupt().unwrap();
        };
        assert_eq!((used.token, used.len), (round, 16));
        // Now and then a pause longer than any window, so an adaptive one
        // shrinks as well as grows.
        if round % 50 == 49 {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    r.finish();
}

#[test]
fn a_polling_backend_serves_requests() {
    serves_requests_with(PollPolicy::fixed(Duration::from_micros(500)), "poll-fixed");
}

#[test]
fn an_adaptively_polling_backend_serves_requests() {
    let max = Duration::from_micros(200);
    serves_requests_with(PollPolicy::Adaptive { max }, "poll-adaptive");
}

/// One queue; its worker counts its calls and never pops a buffer.
struct Idle {
    calls: Arc<AtomicUsize>,
}

struct IdleWorker {
    calls: Arc<AtomicUsize>,
}

impl Device for Idle {
    fn device_type(&self) -> DeviceType {
        DeviceType(VIRTIO_ID_RNG)
    }
    fn features(&self) -> u64 {
        ringwork_device::ring_features()
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
        _events: Arc<dyn DeviceEvents>,
    ) -> Result<Box<dyn QueueWorker>, DeviceError> {
        Ok(Box::new(IdleWorker {
            calls: self.calls.clone(),
        }))
    }
}

impl QueueWorker for IdleWorker {
    fn process(&mut self, _queues: &mut QueueSet<'_>) -> Result<(), DeviceError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

fn sleeps_with(policy: PollPolicy, tag: &str) {
    let calls = Arc::new(AtomicUsize::new(0));
    let dev = Arc::new(Idle {
        calls: calls.clone(),
    });
    let mut r = rig(tag, policy, dev, &[]);
    // Buffers the device will never take, and a kick to wake its worker,
    // a few times so an adaptive window has had gaps to grow on.
    for i in 0..4u32 {
        let seg = Segment::new(r.buf.device_addr(), 16);
        r.q.add(&[], &[seg], i).unwrap();
        r.t.notify(0, r.q.notification_data());
        std::thread::sleep(Duration::from_micros(20));
    }
    // Far longer than any window here (at most 500 µs): the worker must be
    // asleep by now, so no further calls come while nothing happens.
    std::thread::sleep(Duration::from_millis(200));
    let before = calls.load(Ordering::SeqCst);
    assert!(before > 0, "the worker ran");
    std::thread::sleep(Duration::from_millis(100));
    let after = calls.load(Ordering::SeqCst);
    assert_eq!(
        after, before,
        "{policy:?}: the worker kept polling a ring it does not take buffers from"
    );
    r.finish();
}

#[test]
fn a_fixed_window_ends_in_sleep_with_buffers_left_in_the_ring() {
    sleeps_with(PollPolicy::fixed(Duration::from_micros(500)), "idle-fixed");
}

#[test]
fn an_adaptive_window_ends_in_sleep_with_buffers_left_in_the_ring() {
    sleeps_with(
        PollPolicy::Adaptive {
            max: Duration::from_micros(500),
        },
        "idle-adaptive",
    );
}
