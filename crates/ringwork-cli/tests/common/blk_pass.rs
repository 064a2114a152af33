//! One pass of block I/O over a whole disk through ringwork's block
//! driver, many requests in flight on two queues.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ringwork_driver::blk::{BlkDriver, BlkRequest, BlkStatus};
use ringwork_queue::{DmaBuffer, Segment};
use ringwork_transport::driver::Transport;
use ringwork_vhost_user::{SharedMemory, VhostUserTransport};

/// The driver these passes run on.
pub type Driver = BlkDriver<VhostUserTransport, Arc<SharedMemory>, usize>;

/// Runs one request per `req`-byte block of a `disk`-byte disk, writes of
/// `write(offset, len)` or reads, alternating queues 0 and 1, one request
/// per buffer of `bufs` in flight (a buffer is reused only after its
/// request completed); calls `on_done` per completion and returns the data
/// read.
pub fn blk_pass(
    d: &mut Driver,
    bufs: &[DmaBuffer],
    disk: usize,
    req: usize,
    write: Option<&dyn Fn(usize, usize) -> Vec<u8>>,
    mut on_done: impl FnMut(),
) -> Vec<u8> {
    let n = disk / req;
    let mut out = vec![0u8; if write.is_some() { 0 } else { disk }];
    let (mut next, mut done) = (0, 0);
    let slots = bufs.len();
    let mut slot_of = vec![usize::MAX; slots];
    let t0 = Instant::now();
    while done < n {
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "pass stuck at {done}/{n}"
        );
        while next < n && slot_of[next % slots] == usize::MAX {
            let slot = next % slots;
            let seg = [Segment::new(bufs[slot].device_addr(), req as u32)];
            let sector = (next * req / 512) as u64;
            let r = match write {
                Some(w) => {
                    bufs[slot]
                        .slice()
                        .write_bytes(0, &w(next * req, req))
                        .unwrap();
                    BlkRequest::Write { sector, data: &seg }
                }
                None => BlkRequest::Read { sector, data: &seg },
            };
            d.submit((next % 2) as u16, r, next)
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
                assert_eq!(
                    slot_of[slot], c.token,
                    "completion of a request not in flight"
                );
                if write.is_none() {
                    bufs[slot]
                        .slice()
                        .read_bytes(0, &mut out[c.token * req..(c.token + 1) * req])
                        .unwrap();
                }
                slot_of[slot] = usize::MAX;
                done += 1;
                on_done();
                any = true;
            }
        }
        if !any {
            d.transport()
                .wait_interrupt()
                .unwrap_or_else(|e| panic!("waiting: {e:?} ({:?})", d.transport().error()));
        }
    }
    out
}
