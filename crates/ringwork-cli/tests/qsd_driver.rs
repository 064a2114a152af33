//! ringwork's block driver, over the vhost-user frontend transport, against
//! someone else's backend: qemu-storage-daemon's vhost-user-blk export. A
//! data-integrity run writes a distinct pattern over the whole disk with
//! many requests in flight on two queues, flushes, reads everything back
//! through the driver and compares, and checks the image file on the host.
//! Fails loudly when qemu-storage-daemon is missing (.ci/run installs it
//! with qemu-system-x86).

mod common;

use std::time::Duration;

use common::blk_pass::{blk_pass, Driver};

use ringwork_driver::blk::{BlkDriver, BlkOptions};
use ringwork_driver::RingPreference;
use ringwork_guest_tests::{qsd_blk_command, Backend, TempDir};
use ringwork_queue::Dma;
use ringwork_vhost_user::{TransportOptions, VhostUserTransport};

const DISK: usize = 16 << 20;
const REQ: usize = 64 << 10;
const DEPTH: usize = 32;

fn pattern(offset: usize, len: usize) -> Vec<u8> {
    (offset..offset + len)
        .map(|i| (i / 4096 * 131 + i % 4096 * 7 + 1) as u8)
        .collect()
}

#[test]
fn driver_data_integrity_against_qemu_storage_daemon() {
    let dir = TempDir::new("ringwork-qsd-driver").unwrap();
    let image = dir.path().join("disk.img");
    std::fs::write(&image, vec![0u8; DISK]).unwrap();
    let sock = dir.path().join("qsd.sock");
    let cmd = qsd_blk_command(&image, &sock, 2).unwrap_or_else(|e| panic!("{e}"));
    let _qsd = Backend::spawn(cmd, &sock, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("starting qemu-storage-daemon: {e}"));
    let t = VhostUserTransport::connect(
        &sock,
        TransportOptions {
            memory_size: 32 << 20,
            ..TransportOptions::default()
        },
    )
    .unwrap();
    let mem = t.memory().clone();
    let mut d: Driver = BlkDriver::new(
        t,
        mem.clone(),
        BlkOptions {
            queues: 2,
            queue_size: 128,
            ring: RingPreference::Auto,
            ..BlkOptions::default()
        },
    )
    .unwrap();
    assert_eq!(d.config().capacity, (DISK / 512) as u64);
    assert_eq!(d.num_queues(), 2);
    let bufs: Vec<_> = (0..2 * DEPTH)
        .map(|_| mem.alloc(REQ, 4096).unwrap())
        .collect();
    let w = |o, l| pattern(o, l);
    blk_pass(&mut d, &bufs, DISK, REQ, Some(&w), || ());
    d.flush().unwrap();
    let back = blk_pass(&mut d, &bufs, DISK, REQ, None, || ());
    let expected = pattern(0, DISK);
    let first_diff = back.iter().zip(&expected).position(|(a, b)| a != b);
    assert_eq!(first_diff, None, "read back differs");
    let on_disk = std::fs::read(&image).unwrap();
    assert!(
        on_disk == expected,
        "image file differs from what was written"
    );
    let detached = d.reset();
    detached.reset.unwrap();
}
