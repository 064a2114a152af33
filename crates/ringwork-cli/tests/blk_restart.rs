//! A backend that dies mid-run: `ringwork serve blk` is killed (SIGKILL)
//! while our block driver has requests in flight on two queues, and
//! restarted on the same socket. The driver's vhost-user transport
//! reconnects on its own (`TransportOptions::reconnect`), the new backend
//! resubmits what the old one left in flight (INFLIGHT_SHMFD), every
//! request completes exactly once, and the disk holds exactly what was
//! written, read back through the driver and checked in the image file.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::blk_pass::{blk_pass, Driver};
use common::{must, serve};
use ringwork_driver::blk::{BlkDriver, BlkOptions};
use ringwork_driver::RingPreference;
use ringwork_guest_tests::TempDir;
use ringwork_queue::Dma;
use ringwork_vhost_user::{TransportOptions, VhostUserTransport};

const DISK: usize = 8 << 20;
const REQ: usize = 16 << 10;
const DEPTH: usize = 32;

fn pattern(generation: usize, offset: usize, len: usize) -> Vec<u8> {
    (offset..offset + len)
        .map(|i| (i / 4096 * 131 + i % 4096 * 7 + generation * 29 + 1) as u8)
        .collect()
}

#[test]
fn split_rings_survive_a_backend_restart() {
    restart(RingPreference::Split);
}

#[test]
fn packed_rings_survive_a_backend_restart() {
    restart(RingPreference::Packed);
}

fn restart(ring: RingPreference) {
    let dir = must(TempDir::new("ringwork-blk-restart"), "temp dir");
    let image = dir.join("disk.img");
    std::fs::write(&image, vec![0u8; DISK]).unwrap();
    let sock = dir.join("blk.sock");
    let args = [
        "blk",
        "--image",
        image.to_str().unwrap(),
        "--queues",
        "2",
        "--engine",
        "threads",
    ];
    let backend = Arc::new(Mutex::new(Some(serve(&args, &sock))));
    let opts = TransportOptions {
        memory_size: 16 << 20,
        reconnect: Some(Duration::from_secs(20)),
        ..TransportOptions::default()
    };
    // The socket file appears a moment before the backend listens on it.
    let mut tries = 0;
    let t = loop {
        match VhostUserTransport::connect(&sock, opts.clone()) {
            Ok(t) => break t,
            Err(e) if tries < 100 => {
                tries += 1;
                eprintln!("connect: {e}; retrying");
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("connecting: {e}"),
        }
    };
    let mem = t.memory().clone();
    let mut d: Driver = BlkDriver::new(
        t,
        mem.clone(),
        BlkOptions {
            queues: 2,
            queue_size: 64,
            ring,
            ..BlkOptions::default()
        },
    )
    .unwrap();
    let bufs: Vec<_> = (0..2 * DEPTH)
        .map(|_| mem.alloc(REQ, 4096).unwrap())
        .collect();

    // The killer: once the driver is well into its writes, SIGKILL the
    // backend and start a new one on the same socket.
    let done = Arc::new(AtomicUsize::new(0));
    let restarted = Arc::new(AtomicBool::new(false));
    let killer = {
        let (done, restarted, backend) = (done.clone(), restarted.clone(), backend.clone());
        let (args, sock) = (args.map(str::to_owned), sock.clone());
        std::thread::spawn(move || {
            while done.load(Ordering::SeqCst) < 200 {
                std::thread::sleep(Duration::from_millis(1));
            }
            let old = backend.lock().unwrap().take().unwrap();
            let log = old.stop();
            std::thread::sleep(Duration::from_millis(50));
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            *backend.lock().unwrap() = Some(serve(&args, &sock));
            restarted.store(true, Ordering::SeqCst);
            log
        })
    };
    let mut generation = 0;
    while !restarted.load(Ordering::SeqCst) {
        generation += 1;
        assert!(generation < 1000, "the backend was never restarted");
        let w = |o, l| pattern(generation, o, l);
        blk_pass(&mut d, &bufs, DISK, REQ, Some(&w), || {
            done.fetch_add(1, Ordering::SeqCst);
        });
    }
    let first_log = killer.join().unwrap();
    // One more full pass on the new backend, then everything read back.
    generation += 1;
    let w = |o, l| pattern(generation, o, l);
    blk_pass(&mut d, &bufs, DISK, REQ, Some(&w), || ());
    d.flush().unwrap();
    let back = blk_pass(&mut d, &bufs, DISK, REQ, None, || ());
    let expected = pattern(generation, 0, DISK);
    let first_diff = back.iter().zip(&expected).position(|(a, b)| a != b);
    assert_eq!(first_diff, None, "read back differs after the restart");
    assert!(
        std::fs::read(&image).unwrap() == expected,
        "image file differs from what was written"
    );
    let second_log = backend.lock().unwrap().as_ref().unwrap().output();
    eprintln!(
        "{ring:?}: restart after {} passes, in-flight requests resubmitted: {}\n\
         first backend:\n{first_log}\nsecond backend:\n{second_log}",
        generation - 1,
        second_log.contains("resubmitting in-flight buffers")
    );
    assert!(d.transport().error().is_none());
    let detached = d.reset();
    detached.reset.unwrap();
}
