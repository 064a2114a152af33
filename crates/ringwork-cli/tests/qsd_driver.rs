//! ringwork's block driver, over the vhost-user frontend transport, against
//! someone else's backend: qemu-storage-daemon's vhost-user-blk export. A
//! data-integrity run writes a distinct pattern over the whole disk with
//! many requests in flight on two queues, flushes, reads everything back
//! through the driver and compares, and checks the image file on the host.
//! Fails loudly when qemu-storage-daemon is missing (.ci/run installs it
//! with qemu-system-x86).

use std::time::Duration;

use ringwork_driver::blk::{BlkDriver, BlkOptions, BlkRequest, BlkStatus};
use ringwork_driver::RingPreference;
use ringwork_guest_tests::{qsd_blk_command, Backend, TempDir};
use ringwork_queue::{Dma, Segment};
use ringwork_transport::driver::Transport;
use ringwork_vhost_user::{TransportOptions, VhostUserTransport};

const DISK: usize = 16 << 20;
const REQ: usize = 64 << 10;
const DEPTH: usize = 32;

fn pattern(offset: usize, len: usize) -> Vec<u8> {
    (offset..offset + len)
        .map(|i| (i / 4096 * 131 + i % 4096 * 7 + 1) as u8)
        .collect()
}

/// Runs every request of `offsets` (read or write, REQ bytes each), DEPTH
/// in flight per queue, alternating queues; returns the read data.
fn run<T: Transport>(
    d: &mut BlkDriver<T, std::sync::Arc<ringwork_vhost_user::SharedMemory>, usize>,
    bufs: &[ringwork_queue::DmaBuffer],
    write: bool,
) -> Vec<u8> {
    let n = DISK / REQ;
    let mut out = vec![0u8; if write { 0 } else { DISK }];
    let mut next = 0;
    let mut done = 0;
    // Buffer slot i serves request i % (2 * DEPTH); a slot is reused only
    // after its request completed.
    let slots = 2 * DEPTH;
    let mut slot_of = vec![usize::MAX; slots];
    while done < n {
        while next < n && next - done < slots && slot_of[next % slots] == usize::MAX {
            let slot = next % slots;
            let buf = &bufs[slot];
            if write {
                buf.slice()
                    .write_bytes(0, &pattern(next * REQ, REQ))
                    .unwrap();
            }
            let seg = [Segment::new(buf.device_addr(), REQ as u32)];
            let sector = (next * REQ / 512) as u64;
            let req = if write {
                BlkRequest::Write { sector, data: &seg }
            } else {
                BlkRequest::Read { sector, data: &seg }
            };
            d.submit((next % 2) as u16, req, next)
                .unwrap_or_else(|e| panic!("submit {next}: {:?}", e.error));
            slot_of[slot] = next;
            next += 1;
        }
        d.kick(0).unwrap();
        d.kick(1).unwrap();
        let mut any = false;
        for q in 0..2 {
            while let Some(c) = d.poll(q).unwrap() {
                assert_eq!(c.status, BlkStatus::Ok, "request {}", c.token);
                let slot = c.token % slots;
                assert_eq!(slot_of[slot], c.token);
                if !write {
                    bufs[slot]
                        .slice()
                        .read_bytes(0, &mut out[c.token * REQ..(c.token + 1) * REQ])
                        .unwrap();
                }
                slot_of[slot] = usize::MAX;
                done += 1;
                any = true;
            }
        }
        if !any {
            d.transport().wait_interrupt().unwrap();
        }
    }
    out
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
    let mut d: BlkDriver<_, _, usize> = BlkDriver::new(
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
    run(&mut d, &bufs, true);
    d.flush().unwrap();
    let back = run(&mut d, &bufs, false);
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
