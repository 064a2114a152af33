//! Shared pieces of the transport tests: recording interrupt hooks and a
//! driver-side workload that moves real buffers through a queue.
#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use ringwork_queue::test_utils::TestMemory;
use ringwork_queue::{Dma, DriverQueue, DriverQueueConfig, Segment};
use ringwork_spec::features::FeatureSet;
use ringwork_transport::driver::{self, Transport};

/// An interrupt line that counts assertions and remembers its level.
#[derive(Default)]
pub struct RecordingIrq {
    pub raised: AtomicUsize,
    pub level: AtomicBool,
}

impl ringwork_transport::IrqLine for RecordingIrq {
    fn set_level(&self, asserted: bool) {
        if asserted {
            self.raised.fetch_add(1, Ordering::SeqCst);
        }
        self.level.store(asserted, Ordering::SeqCst);
    }
}

impl RecordingIrq {
    pub fn raised(&self) -> usize {
        self.raised.load(Ordering::SeqCst)
    }
    pub fn level(&self) -> bool {
        self.level.load(Ordering::SeqCst)
    }
}

/// An MSI sink that records every message.
#[derive(Default)]
pub struct RecordingMsi {
    pub messages: Mutex<Vec<(u64, u32)>>,
}

impl ringwork_transport::pci::MsiSink for RecordingMsi {
    fn send(&self, address: u64, data: u32) {
        self.messages.lock().unwrap().push((address, data));
    }
}

/// Builds queue `index` for transport `t` (legacy alignment if needed) over
/// `mem`, and attaches it.
pub fn make_queue<'m, T: Transport>(
    t: &mut T,
    mem: &'m TestMemory,
    negotiated: FeatureSet,
    index: u16,
    size: u16,
) -> DriverQueue<&'m TestMemory, u32> {
    let (format, qf) = driver::ring_features(t, negotiated);
    let mut cfg = DriverQueueConfig::new(format, size, qf);
    cfg.index = index;
    cfg.legacy_align = t.legacy_queue_align();
    let q = DriverQueue::new(mem, cfg).expect("driver queue");
    driver::attach_queue(t, &q).expect("attach queue");
    q
}

/// Sends `count` requests through `q` (each a distinct payload in one
/// readable segment, with a writable segment twice as large), notifying
/// through `t` as the queue decides, and checks every reply: the device
/// (an `EchoDevice`) copies the payload into the writable segment.
/// `after_notify` runs after each notification (to let a device on another
/// thread, or a test hook, act). Returns the number of notifications sent.
pub fn echo_round<T: Transport>(
    t: &mut T,
    q: &mut DriverQueue<&TestMemory, u32>,
    mem: &TestMemory,
    count: u32,
    tag: u8,
) -> usize {
    let index = q.config().index;
    let mut kicks = 0;
    let mut bufs = Vec::new();
    for i in 0..count {
        let out = mem.alloc(64, 16).expect("dma");
        let inp = mem.alloc(128, 16).expect("dma");
        let payload: Vec<u8> = (0..64).map(|b| (b as u8) ^ (i as u8) ^ tag).collect();
        out.slice().write_bytes(0, &payload).unwrap();
        q.add(
            &[Segment::new(out.device_addr(), 64)],
            &[Segment::new(inp.device_addr(), 128)],
            i,
        )
        .expect("add");
        bufs.push((out, inp, payload));
        if q.kick_prepare().expect("kick") {
            t.notify(index, q.notification_data());
            kicks += 1;
        }
    }
    let mut seen = 0;
    while let Some(used) = q.pop_used().expect("pop_used") {
        let (_, inp, payload) = &bufs[used.token as usize];
        assert_eq!(used.len, 64, "echoed length");
        let mut got = [0u8; 64];
        inp.slice().read_bytes(0, &mut got).unwrap();
        assert_eq!(
            &got[..],
            &payload[..],
            "echoed bytes of request {}",
            used.token
        );
        seen += 1;
    }
    assert_eq!(seen, count, "every request completed");
    // Re-arm used-buffer notifications, as an interrupt handler does after
    // draining the queue.
    assert!(!q.enable_callbacks(), "nothing left unseen");
    for (out, inp, _) in bufs {
        mem.dealloc(out);
        mem.dealloc(inp);
    }
    kicks
}
