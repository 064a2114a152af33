//! Two-thread stress test: a driver thread and a device thread share one
//! memory region and talk only through the rings plus notifications over a
//! channel, sent only when the suppression logic says so (VIRTIO 1.4 §2.7.7,
//! §2.7.10, §2.8.21). A lost notification makes a side wait forever, which
//! the test turns into a failure after a timeout; a memory-ordering bug shows
//! up as corrupted or missing bytes.

use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::time::Duration;

use ringwork_queue::test_utils::TestMemory;
use ringwork_queue::{
    DeviceQueue, DriverQueue, DriverQueueConfig, GuestMemory, QueueFeatures, RingFormat, Segment,
};

const DATA: u64 = 0x80_0000;
const PATIENCE: Duration = Duration::from_secs(20);

enum ToDevice {
    Kick,
    Stop,
}

fn wait<T>(rx: &Receiver<T>, what: &str) -> T {
    match rx.recv_timeout(PATIENCE) {
        Ok(v) => v,
        Err(RecvTimeoutError::Timeout) => panic!("lost {what}: nothing for {PATIENCE:?}"),
        Err(RecvTimeoutError::Disconnected) => panic!("{what} channel closed"),
    }
}

fn device_thread(
    mem: &TestMemory,
    mut q: DeviceQueue,
    kicks: Receiver<ToDevice>,
    irq: Sender<()>,
) -> u64 {
    let mut done = 0u64;
    let mut batch = Vec::with_capacity(64);
    loop {
        q.disable_notification(mem).unwrap();
        loop {
            while let Some(chain) = q.pop(mem).unwrap() {
                let mut req = [0u8; 16];
                let mut r = chain.reader(mem);
                assert_eq!(r.read(&mut req).unwrap(), 16);
                let token = u64::from_le_bytes(req[..8].try_into().unwrap());
                assert_eq!(
                    &req[8..],
                    &token.wrapping_mul(3).to_le_bytes(),
                    "request bytes"
                );
                let mut w = chain.writer(mem);
                w.write(&token.wrapping_mul(7).to_le_bytes()).unwrap();
                batch.push((chain.token(), w.bytes_written()));
                if batch.len() == 32 {
                    q.add_used_batch(mem, &batch).unwrap();
                    done += batch.len() as u64;
                    batch.clear();
                    if q.needs_notification(mem).unwrap() {
                        let _ = irq.send(());
                    }
                }
            }
            if !batch.is_empty() {
                q.add_used_batch(mem, &batch).unwrap();
                done += batch.len() as u64;
                batch.clear();
            }
            if q.needs_notification(mem).unwrap() {
                let _ = irq.send(());
            }
            if !q.enable_notification(mem).unwrap() {
                break;
            }
            q.disable_notification(mem).unwrap();
        }
        match wait(&kicks, "available buffer notification") {
            ToDevice::Kick => {}
            ToDevice::Stop => return done,
        }
    }
}

fn run(format: RingFormat, size: u16, features: QueueFeatures, batch: usize, total: u64) {
    run_with(format, size, features, batch, total, false);
}

/// `deferred`: buffers are added with `add_deferred`, so the batch becomes
/// visible at `kick_prepare` (one `avail.idx` store).
fn run_with(
    format: RingFormat,
    size: u16,
    features: QueueFeatures,
    batch: usize,
    total: u64,
    deferred: bool,
) {
    let mem = TestMemory::new(0x1_0000, 16 << 20);
    let mut cfg = DriverQueueConfig::new(format, size, features);
    cfg.indirect_threshold = 3; // our two-segment buffers go direct
    let mut driver = DriverQueue::<_, u64>::new(&mem, cfg).unwrap();
    let device = DeviceQueue::new(format, size, driver.addresses(), features).unwrap();
    let (kick_tx, kick_rx) = channel();
    let (irq_tx, irq_rx) = channel();
    std::thread::scope(|s| {
        let dev = s.spawn(|| device_thread(&mem, device, kick_rx, irq_tx));
        let mut next = 0u64;
        let mut reaped = 0u64;
        while reaped < total {
            let mut added = 0;
            while next < total && added < batch {
                let slot = DATA + (next % u64::from(size)) * 32;
                let w = mem.slice(slot, 32).unwrap();
                w.write_u64(0, next).unwrap();
                w.write_u64(8, next.wrapping_mul(3)).unwrap();
                w.write_u64(16, 0).unwrap();
                let out = Segment::new(slot, 16);
                let inp = Segment::new(slot + 16, 16);
                let r = if deferred {
                    driver.add_deferred(&[out], &[inp], next)
                } else {
                    driver.add(&[out], &[inp], next)
                };
                match r {
                    Ok(_) => {
                        next += 1;
                        added += 1;
                    }
                    Err(_) => break,
                }
            }
            if driver.kick_prepare().unwrap() {
                kick_tx.send(ToDevice::Kick).unwrap();
            }
            let mut got = 0;
            while let Some(u) = driver.pop_used().unwrap() {
                assert_eq!(u.token, reaped, "completions in order");
                assert_eq!(u.len, 8);
                let reply = mem
                    .slice(DATA + (u.token % u64::from(size)) * 32 + 16, 8)
                    .unwrap();
                assert_eq!(
                    reply.read_u64(0).unwrap(),
                    u.token.wrapping_mul(7),
                    "reply bytes"
                );
                reaped += 1;
                got += 1;
            }
            let can_add = next < total && driver.num_free() >= 2;
            if got == 0 && !can_add && reaped < total {
                // Nothing to do: wait for a used buffer notification.
                if !driver.enable_callbacks() {
                    wait(&irq_rx, "used buffer notification");
                }
                driver.disable_callbacks();
            }
        }
        kick_tx.send(ToDevice::Stop).unwrap();
        assert_eq!(dev.join().unwrap(), total);
    });
    assert_eq!(driver.outstanding(), 0);
}

fn features(event_idx: bool) -> QueueFeatures {
    QueueFeatures {
        event_idx,
        indirect_desc: true,
        ..Default::default()
    }
}

#[test]
fn split_threads_event_idx() {
    for batch in [1, 8, 32] {
        run(RingFormat::Split, 256, features(true), batch, 60_000);
    }
}

#[test]
fn split_threads_flags() {
    for batch in [1, 32] {
        run(RingFormat::Split, 64, features(false), batch, 60_000);
    }
}

/// VIRTIO 1.4 §2.7.13.3.1 with deferred publishing: ring entries written
/// one by one, `avail.idx` stored once per batch (release) by
/// `kick_prepare`; the device thread must see every entry and its bytes.
#[test]
fn split_threads_deferred_publish() {
    for batch in [8, 32] {
        run_with(RingFormat::Split, 256, features(true), batch, 60_000, true);
    }
    run_with(RingFormat::Split, 64, features(false), 32, 60_000, true);
}

#[test]
fn packed_threads_event_idx() {
    for batch in [1, 8, 32] {
        run(RingFormat::Packed, 256, features(true), batch, 60_000);
    }
}

#[test]
fn packed_threads_flags_odd_size() {
    for batch in [1, 32] {
        run(RingFormat::Packed, 100, features(false), batch, 60_000);
    }
}
