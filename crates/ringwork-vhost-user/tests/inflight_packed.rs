//! INFLIGHT_SHMFD with packed rings, end to end: our frontend drives a
//! packed `DriverQueue` against a backend whose device holds some buffers;
//! the backend goes away with buffers in flight (their ring slots partly
//! overwritten by used entries), and a new backend given the same inflight
//! area resubmits exactly those, in the order they were made available,
//! with their data intact. Garbage in the area does not take the backend
//! down.

mod common;
use common::holder::Holder;
use common::temp_dir;

use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ringwork_queue::driver::{DriverQueue, DriverQueueConfig};
use ringwork_queue::mmap::{GuestMemoryMmap, MmapRegion};
use ringwork_queue::{GuestMemory, QueueFeatures, QueuePosition, RingFormat, Segment};
use ringwork_spec::ring::packed::VIRTQ_DESC_F_USED;
use ringwork_vhost_user::msg::{self, protocol, Inflight, MemRegion, VringAddr};
use ringwork_vhost_user::sys::{memfd, EventFd};
use ringwork_vhost_user::{Frontend, OnDisconnect, ServeError, Server};

const MEM: u64 = 4 << 20;
const UADDR: u64 = 0x7f00_0000_0000;
const DATA: u64 = 1 << 20;
const QSIZE: u16 = 64;
/// Offsets in the packed inflight region (vhost-user.rst, QueueRegionPacked
/// and DescStatePacked).
const FREE_HEAD: usize = 12;
const OLD_FREE_HEAD: usize = 14;
const DESC: usize = 32;
const E_ADDR: usize = 24;

/// The guest: memory, its driver queue, and the request payloads.
struct Guest {
    memfd: OwnedFd,
    mem: Arc<GuestMemoryMmap>,
    dq: DriverQueue<Arc<GuestMemoryMmap>, u32>,
}

fn features() -> u64 {
    ringwork_device::ring_features() | (1 << msg::F_PROTOCOL_FEATURES)
}

impl Guest {
    fn new() -> Self {
        let memfd = memfd(c"guest", MEM).unwrap();
        let mut mem = GuestMemoryMmap::new();
        mem.add_region(
            0,
            MmapRegion::from_fd(memfd.as_fd(), 0, MEM as usize).unwrap(),
        )
        .unwrap();
        let mem = Arc::new(mem);
        let (fmt, qf) = QueueFeatures::from_bits(features());
        assert_eq!(fmt, RingFormat::Packed);
        let mut cfg = DriverQueueConfig::new(fmt, QSIZE, qf);
        // Two-segment buffers go direct (two ring slots), longer ones
        // through an indirect table (one slot).
        cfg.indirect_threshold = 3;
        let dq = DriverQueue::new(mem.clone(), cfg).unwrap();
        Self { memfd, mem, dq }
    }

    fn payload(t: u32) -> u64 {
        DATA + u64::from(t) * 4096
    }

    /// Makes request `t` available: 16 readable bytes `[cmd, t, target,
    /// 0xa0 + t...]` (in two segments when `split`), 16 writable bytes.
    fn add(&mut self, t: u32, cmd: u8, target: u8, split: bool) {
        let mut p = [0xa0 + t as u8; 16];
        (p[0], p[1], p[2]) = (cmd, t as u8, target);
        let at = Self::payload(t);
        self.mem.slice(at, 16).unwrap().write_bytes(0, &p).unwrap();
        let out = if split {
            vec![Segment::new(at, 8), Segment::new(at + 8, 8)]
        } else {
            vec![Segment::new(at, 16)]
        };
        self.dq
            .add(&out, &[Segment::new(at + 2048, 16)], t)
            .unwrap();
    }

    /// Waits for `n` used buffers; checks each one's echoed data.
    fn used(&mut self, n: usize) -> Vec<u32> {
        let mut got = Vec::new();
        let t0 = Instant::now();
        while got.len() < n && t0.elapsed() < Duration::from_secs(10) {
            match self.dq.pop_used().unwrap() {
                Some(u) => {
                    let at = Self::payload(u.token);
                    let (mut p, mut w) = ([0u8; 16], [0u8; 16]);
                    self.mem
                        .slice(at, 16)
                        .unwrap()
                        .read_bytes(0, &mut p)
                        .unwrap();
                    self.mem
                        .slice(at + 2048, 16)
                        .unwrap()
                        .read_bytes(0, &mut w)
                        .unwrap();
                    assert_eq!((u.len, w), (16, p), "request {} data", u.token);
                    got.push(u.token);
                }
                None => std::thread::sleep(Duration::from_millis(2)),
            }
        }
        got
    }

    /// Flags of ring descriptor `slot`.
    fn ring_flags(&self, slot: u16) -> u16 {
        let at = self.dq.addresses().desc + u64::from(slot) * 16 + 14;
        self.mem.slice(at, 2).unwrap().read_u16(0).unwrap()
    }
}

/// One backend serving `dev` on a fresh socket, and our connection to it.
struct Backend {
    fe: Frontend,
    server: JoinHandle<Result<(), ServeError>>,
    kick: EventFd,
    call: EventFd,
    err: EventFd,
}

fn serve(dir: &Path, name: &str, dev: Holder) -> (Frontend, JoinHandle<Result<(), ServeError>>) {
    let path = dir.join(name);
    let mut server = Server::bind(&path).unwrap();
    let h = std::thread::spawn(move || server.serve(Arc::new(dev), OnDisconnect::Exit));
    (Frontend::connect(&path).unwrap(), h)
}

/// Connects to a new backend, negotiates, hands it the inflight area (a new
/// one from GET_INFLIGHT_FD when `area` is `None`) and starts the ring
/// from `base`.
fn start(
    dir: &Path,
    name: &str,
    dev: Holder,
    g: &Guest,
    area: &mut Option<(Inflight, OwnedFd)>,
    base: QueuePosition,
) -> Backend {
    let (mut fe, server) = serve(dir, name, dev);
    assert_eq!(fe.get_features().unwrap() & features(), features());
    fe.set_owner().unwrap();
    let pf = (1 << protocol::REPLY_ACK) | (1 << protocol::INFLIGHT_SHMFD) | (1 << protocol::STATUS);
    assert_eq!(fe.get_protocol_features().unwrap() & pf, pf);
    fe.set_protocol_features(pf).unwrap();
    fe.set_features(features()).unwrap();
    let region = MemRegion {
        guest_addr: 0,
        size: MEM,
        user_addr: UADDR,
        mmap_offset: 0,
    };
    fe.set_mem_table(&[region], &[g.memfd.as_fd()]).unwrap();
    if area.is_none() {
        *area = Some(fe.get_inflight_fd(1, QSIZE).unwrap());
    }
    let (desc, fd) = area.as_ref().unwrap();
    fe.set_inflight_fd(desc, fd.as_fd()).unwrap();
    let a = g.dq.addresses();
    let (kick, call, err) = (
        EventFd::new().unwrap(),
        EventFd::new().unwrap(),
        EventFd::new().unwrap(),
    );
    fe.set_vring_num(0, u32::from(QSIZE)).unwrap();
    fe.set_vring_base(0, base.to_vhost_user_base(RingFormat::Packed))
        .unwrap();
    fe.set_vring_addr(&VringAddr {
        index: 0,
        flags: 0,
        desc: UADDR + a.desc,
        used: UADDR + a.device,
        avail: UADDR + a.driver,
        log: 0,
    })
    .unwrap();
    fe.set_vring_call(0, Some(call.as_fd())).unwrap();
    fe.set_vring_err(0, Some(err.as_fd())).unwrap();
    fe.set_vring_kick(0, Some(kick.as_fd())).unwrap();
    fe.set_vring_enable(0, true).unwrap();
    Backend {
        fe,
        server,
        kick,
        call,
        err,
    }
}

impl Backend {
    fn kick(&self) {
        self.kick.signal().unwrap();
    }

    /// The frontend goes away: the backend stops, abandoning what it holds.
    fn stop(self) {
        drop(self.fe);
        self.server.join().unwrap().unwrap();
        let _ = (self.call, self.err);
    }
}

fn holder(hold: bool) -> (Holder, Arc<AtomicUsize>) {
    let popped = Arc::new(AtomicUsize::new(0));
    (
        Holder {
            queues: 1,
            queue: 0,
            hold,
            popped: popped.clone(),
        },
        popped,
    )
}

fn wait_for(what: &str, cond: impl Fn() -> bool) {
    let t0 = Instant::now();
    while !cond() {
        assert!(t0.elapsed() < Duration::from_secs(10), "timed out: {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The stale base a frontend has after a crash: the initial one.
fn initial() -> QueuePosition {
    QueuePosition::default()
}

/// A backend holding A, B, C (two ring slots each), completing B when D
/// asks (B's used entry lands on ring slot 0, where A starts), then holding
/// E and F (indirect, one slot); it goes away with A, C, E, F in flight.
/// In the record, F reuses B's entry: the head entries (0, 4, 6, 2) are not
/// in the order the buffers were made available, the counters are.
fn crash_with_four_in_flight(dir: &Path, g: &mut Guest) -> (Inflight, OwnedFd) {
    let mut area = None;
    let (dev, popped) = holder(true);
    let b = start(dir, "one.sock", dev, g, &mut area, initial());
    for t in 1..=3 {
        g.add(t, b'H', 0, false);
    }
    b.kick();
    wait_for("three buffers held", || popped.load(Ordering::SeqCst) == 3);
    g.add(4, b'R', 2, false);
    b.kick();
    assert_eq!(g.used(2), [2, 4]);
    g.add(5, b'H', 0, false);
    g.add(6, b'H', 0, true);
    b.kick();
    wait_for("six buffers popped", || popped.load(Ordering::SeqCst) == 6);
    // A's first descriptor is gone from the ring: slot 0 holds B's used
    // entry.
    assert_ne!(g.ring_flags(0) & VIRTQ_DESC_F_USED, 0);
    b.stop();
    area.unwrap()
}

#[test]
fn packed_in_flight_buffers_are_resubmitted_in_available_order() {
    let dir = temp_dir("resubmit");
    let mut g = Guest::new();
    let mut area = Some(crash_with_four_in_flight(&dir.0, &mut g));
    // A new backend with the same area; the frontend only has the initial
    // base. It resubmits A, C, E, F (not B or D, which were used), in the
    // order they were made available, with their data.
    let (dev, popped) = holder(false);
    let b = start(&dir.0, "two.sock", dev, &g, &mut area, initial());
    assert_eq!(g.used(4), [1, 3, 5, 6]);
    assert_eq!(popped.load(Ordering::SeqCst), 4);
    // The ring continues after them.
    g.add(7, b'E', 0, false);
    b.kick();
    assert_eq!(g.used(1), [7]);
    // 13 ring slots made available and used, in the first lap.
    let base = b.fe.get_vring_base(0).unwrap();
    assert_eq!(base, 13 | 1 << 15 | 13 << 16 | 1 << 31);
    assert_eq!(b.fe.get_status().unwrap() & 0x40, 0);
    assert!(g.dq.pop_used().unwrap().is_none(), "nothing else was used");
    b.stop();
}

#[test]
fn packed_buffers_used_before_the_crash_are_not_resubmitted() {
    let dir = temp_dir("done");
    let mut g = Guest::new();
    let mut area = None;
    let (dev, _) = holder(false);
    let b = start(&dir.0, "one.sock", dev, &g, &mut area, initial());
    for t in 1..=5 {
        g.add(t, b'E', 0, t == 3);
    }
    b.kick();
    assert_eq!(g.used(5), [1, 2, 3, 4, 5]);
    b.stop();
    // Nothing in flight; the frontend's base is stale (the ring shows its
    // slot already used), so the backend continues from its record.
    let (dev, popped) = holder(false);
    let b = start(&dir.0, "two.sock", dev, &g, &mut area, initial());
    g.add(6, b'E', 0, false);
    b.kick();
    assert_eq!(g.used(1), [6]);
    assert_eq!(popped.load(Ordering::SeqCst), 1, "nothing was resubmitted");
    // 5 * 2 - 1 + 2 slots.
    assert_eq!(
        b.fe.get_vring_base(0).unwrap(),
        11 | 1 << 15 | 11 << 16 | 1 << 31
    );
    b.stop();
}

/// A garbage record (here: a free list that loops) is discarded with a
/// warning: the in-flight buffers are lost, the queue starts from the
/// frontend's base and serves new buffers.
#[test]
fn a_garbage_packed_record_starts_the_queue_afresh() {
    let dir = temp_dir("garbage");
    let mut g = Guest::new();
    let (desc, fd) = crash_with_four_in_flight(&dir.0, &mut g);
    let map = MmapRegion::from_fd(fd.as_fd(), 0, desc.mmap_size as usize).unwrap();
    let r = map.as_slice();
    let head = r.read_u16(OLD_FREE_HEAD).unwrap();
    assert_eq!(r.read_u16(FREE_HEAD).unwrap(), head);
    r.write_u16(DESC + DESC * usize::from(head) + 2, head)
        .unwrap();
    // This frontend knows where the driver is (used 4, avail 11).
    let base = QueuePosition {
        next_avail: 11,
        avail_wrap: true,
        next_used: 4,
        used_wrap: true,
    };
    let mut area = Some((desc, fd));
    let (dev, popped) = holder(false);
    let b = start(&dir.0, "two.sock", dev, &g, &mut area, base);
    g.add(7, b'E', 0, false);
    b.kick();
    assert_eq!(g.used(1), [7]);
    assert_eq!(popped.load(Ordering::SeqCst), 1, "nothing was resubmitted");
    b.stop();
}

/// A record that holds together but whose saved descriptor points outside
/// guest memory: the chain is refused as a popped one would be, the queue
/// breaks (error eventfd, DEVICE_NEEDS_RESET) and the backend lives on.
#[test]
fn a_hostile_saved_descriptor_breaks_the_queue() {
    let dir = temp_dir("hostile");
    let mut g = Guest::new();
    let (desc, fd) = crash_with_four_in_flight(&dir.0, &mut g);
    let map = MmapRegion::from_fd(fd.as_fd(), 0, desc.mmap_size as usize).unwrap();
    // Entry 0 holds A's first descriptor.
    map.as_slice().write_u64(DESC + E_ADDR, MEM - 8).unwrap();
    let mut area = Some((desc, fd));
    let (dev, popped) = holder(false);
    let b = start(&dir.0, "two.sock", dev, &g, &mut area, initial());
    wait_for("error eventfd", || b.err.drain().unwrap() > 0);
    assert_ne!(b.fe.get_status().unwrap() & 0x40, 0, "DEVICE_NEEDS_RESET");
    assert_eq!(popped.load(Ordering::SeqCst), 0);
    assert!(b.fe.get_features().is_ok(), "the connection lives");
    b.stop();
}
