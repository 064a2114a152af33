//! A polling backend goes to sleep once its window has passed, even when a
//! ring holds buffers its device leaves there (a network receive queue
//! waiting for input does exactly that), with a fixed and with an adaptive
//! window.

mod common;
use common::temp_dir;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ringwork_device::model::{Device, DeviceError, DeviceEvents, QueueSet, QueueWorker};
use ringwork_queue::driver::{DriverQueue, DriverQueueConfig};
use ringwork_queue::Segment;
use ringwork_spec::device_id::{DeviceType, VIRTIO_ID_RNG};
use ringwork_spec::features::FeatureSet;
use ringwork_transport::driver::{
    attach_queue, negotiate, ring_features, set_driver_ok, Transport,
};
use ringwork_vhost_user::{OnDisconnect, PollPolicy, Server, TransportOptions, VhostUserTransport};

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
    let dir = temp_dir(tag);
    let sock = dir.0.join("idle.sock");
    let mut server = Server::bind(&sock).unwrap();
    server.set_poll_policy(policy);
    let calls = Arc::new(AtomicUsize::new(0));
    let dev: Arc<dyn Device> = Arc::new(Idle {
        calls: calls.clone(),
    });
    let server = std::thread::spawn(move || {
        let _ = server.serve(dev, OnDisconnect::Exit);
    });
    let opts = TransportOptions {
        memory_size: 4 << 20,
        timeout: Duration::from_secs(5),
        ..TransportOptions::default()
    };
    let mut t = VhostUserTransport::connect(&sock, opts).unwrap();
    let negotiated = negotiate(&mut t, FeatureSet::from_bits(&[]), &[]).unwrap();
    let (format, qf) = ring_features(&t, negotiated);
    let mem = t.memory().clone();
    let mut q: DriverQueue<_, u32> =
        DriverQueue::new(mem.clone(), DriverQueueConfig::new(format, 64, qf)).unwrap();
    attach_queue(&mut t, &q).unwrap();
    set_driver_ok(&mut t);
    // Buffers the device will never take, and a kick to wake its worker,
    // a few times so an adaptive window has had gaps to grow on.
    let buf = ringwork_queue::Dma::alloc(&*mem, 4096, 64).unwrap();
    for i in 0..4u32 {
        q.add(&[], &[Segment::new(buf.device_addr(), 16)], i)
            .unwrap();
        t.notify(0, q.notification_data());
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
    t.reset().unwrap();
    drop(t);
    server.join().unwrap();
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
