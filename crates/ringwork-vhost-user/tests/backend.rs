//! The backend against our frontend client: a full session (features,
//! memory table from a memfd, split and packed rings, kicks and calls,
//! GET_VRING_BASE) with the entropy device, and hostile frontends.

mod common;
use common::{temp_dir, TempDir};

use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ringwork_device::rng::Rng;
use ringwork_queue::driver::{DriverQueue, DriverQueueConfig};
use ringwork_queue::mmap::{GuestMemoryMmap, MmapRegion};
use ringwork_queue::{GuestMemory, QueueFeatures, RingFormat, Segment};
use ringwork_spec::features::{
    VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC, VIRTIO_F_RING_PACKED, VIRTIO_F_VERSION_1,
};
use ringwork_vhost_user::msg::{self, protocol, MemRegion, Request, VringAddr};
use ringwork_vhost_user::sys::{memfd, EventFd};
use ringwork_vhost_user::{Frontend, OnDisconnect, ServeError, Server};

const MEM: u64 = 4 << 20;
/// Where the frontend "maps" guest memory (any value; the backend only
/// uses it to translate ring addresses).
const UADDR: u64 = 0x7f00_0000_0000;
const DATA: u64 = 1 << 20;

struct Session {
    fe: Frontend,
    mem: Arc<GuestMemoryMmap>,
    _memfd: OwnedFd,
    server: JoinHandle<Result<(), ServeError>>,
    _dir: TempDir,
}

fn start(tag: &str) -> Session {
    let dir = temp_dir(tag);
    let path = dir.0.join("rng.sock");
    let mut server = Server::bind(&path).unwrap();
    let handle = std::thread::spawn(move || server.serve(Arc::new(Rng::new()), OnDisconnect::Exit));
    let fe = Frontend::connect(&path).unwrap();
    let fd = memfd(c"guest", MEM).unwrap();
    let mut mem = GuestMemoryMmap::new();
    mem.add_region(0, MmapRegion::from_fd(fd.as_fd(), 0, MEM as usize).unwrap())
        .unwrap();
    Session {
        fe,
        mem: Arc::new(mem),
        _memfd: fd,
        server: handle,
        _dir: dir,
    }
}

struct Ring {
    dq: DriverQueue<Arc<GuestMemoryMmap>, u32>,
    kick: EventFd,
    call: EventFd,
    err: EventFd,
}

/// Dma over an Arc'd memory, for the driver queue.
fn setup(s: &mut Session, format: RingFormat) -> Ring {
    let offered = s.fe.get_features().unwrap();
    assert!(offered & (1 << msg::F_PROTOCOL_FEATURES) != 0);
    let mut want = (1 << VIRTIO_F_VERSION_1)
        | (1 << VIRTIO_F_EVENT_IDX)
        | (1 << VIRTIO_F_INDIRECT_DESC)
        | (1 << msg::F_PROTOCOL_FEATURES);
    if format == RingFormat::Packed {
        want |= 1 << VIRTIO_F_RING_PACKED;
    }
    assert_eq!(offered & want, want, "offered {offered:#x}");
    s.fe.set_owner().unwrap();
    let pf = s.fe.get_protocol_features().unwrap();
    let pwant = (1 << protocol::REPLY_ACK) | (1 << protocol::CONFIG) | (1 << protocol::STATUS);
    assert_eq!(pf & pwant, pwant);
    s.fe.set_protocol_features(pwant).unwrap();
    s.fe.set_features(want).unwrap();
    s.fe.set_mem_table(
        &[MemRegion {
            guest_addr: 0,
            size: MEM,
            user_addr: UADDR,
            mmap_offset: 0,
        }],
        &[s._memfd.as_fd()],
    )
    .unwrap();
    let (fmt, qf) = QueueFeatures::from_bits(want);
    assert_eq!(fmt, format);
    let dq = DriverQueue::new(s.mem.clone(), DriverQueueConfig::new(format, 64, qf)).unwrap();
    let a = dq.addresses();
    let (kick, call, err) = (
        EventFd::new().unwrap(),
        EventFd::new().unwrap(),
        EventFd::new().unwrap(),
    );
    s.fe.set_vring_num(0, 64).unwrap();
    let base = ringwork_queue::QueuePosition::default().to_vhost_user_base(format);
    s.fe.set_vring_base(0, base).unwrap();
    s.fe.set_vring_addr(&VringAddr {
        index: 0,
        flags: 0,
        desc: UADDR + a.desc,
        used: UADDR + a.device,
        avail: UADDR + a.driver,
        log: 0,
    })
    .unwrap();
    s.fe.set_vring_call(0, Some(call.as_fd())).unwrap();
    s.fe.set_vring_err(0, Some(err.as_fd())).unwrap();
    s.fe.set_vring_kick(0, Some(kick.as_fd())).unwrap();
    s.fe.set_vring_enable(0, true).unwrap();
    Ring {
        dq,
        kick,
        call,
        err,
    }
}

fn wait(ev: &EventFd) -> bool {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(10) {
        if ev.drain().unwrap() > 0 {
            return true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    false
}

fn request(s: &Session, r: &mut Ring, token: u32, len: u32) -> Vec<u8> {
    let addr = DATA + u64::from(token) * 4096;
    r.dq.add(&[], &[Segment::new(addr, len)], token).unwrap();
    if r.dq.kick_prepare().unwrap() {
        r.kick.signal().unwrap();
    }
    // Ask for a notification (EVENT_IDX: at the next used buffer) unless
    // the buffer is already back; a notification may be left over from an
    // earlier buffer, so check the ring after each.
    let u = loop {
        if let Some(u) = r.dq.pop_used().unwrap() {
            break u;
        }
        if !r.dq.enable_callbacks() {
            assert!(
                wait(&r.call),
                "no used-buffer notification for token {token}"
            );
        }
    };
    assert_eq!(u.token, token);
    let mut b = vec![0; u.len as usize];
    s.mem
        .slice(addr, b.len())
        .unwrap()
        .read_bytes(0, &mut b)
        .unwrap();
    b
}

fn session(format: RingFormat) {
    let mut s = start(&format!("{format:?}"));
    let mut r = setup(&mut s, format);
    for t in 0..100u32 {
        let b = request(&s, &mut r, t % 200, 256);
        assert_eq!(b.len(), 256);
        assert!(b.iter().any(|&x| x != 0), "entropy should not be all zeros");
    }
    // Stop the ring: the base says where a restart continues.
    let base = s.fe.get_vring_base(0).unwrap();
    match format {
        RingFormat::Split => assert_eq!(base, 100),
        // 100 descriptors in a 64-entry ring: offset 36, wrapped once.
        RingFormat::Packed => assert_eq!(base, 36 | 36 << 16),
    }
    assert_eq!(s.fe.get_status().unwrap() & 0x40, 0);
    drop(s.fe);
    s.server.join().unwrap().unwrap();
}

#[test]
fn split_session_moves_entropy() {
    session(RingFormat::Split);
}

#[test]
fn packed_session_moves_entropy() {
    session(RingFormat::Packed);
}

#[test]
fn restart_continues_from_the_base() {
    let mut s = start("restart");
    let mut r = setup(&mut s, RingFormat::Split);
    request(&s, &mut r, 1, 16);
    let base = s.fe.get_vring_base(0).unwrap();
    assert_eq!(base, 1);
    // Restart the same ring from its base with a new kick fd.
    s.fe.set_vring_base(0, base).unwrap();
    let kick = EventFd::new().unwrap();
    s.fe.set_vring_kick(0, Some(kick.as_fd())).unwrap();
    r.kick = kick;
    assert_eq!(request(&s, &mut r, 2, 16).len(), 16);
}

#[test]
fn broken_ring_signals_err_and_needs_reset_but_session_lives() {
    let mut s = start("broken");
    let mut r = setup(&mut s, RingFormat::Split);
    // A buffer outside shared memory: the ring is broken, not the backend.
    r.dq.add(&[], &[Segment::new(MEM + 4096, 16)], 9).unwrap();
    r.kick.signal().unwrap();
    assert!(wait(&r.err), "error eventfd not signalled");
    assert_ne!(s.fe.get_status().unwrap() & 0x40, 0, "DEVICE_NEEDS_RESET");
    // The connection still answers.
    assert!(s.fe.get_features().is_ok());
}

#[test]
fn config_reads_are_bounded() {
    let mut s = start("config");
    let _r = setup(&mut s, RingFormat::Split);
    // The entropy device has no config space: any read is refused.
    assert!(s.fe.get_config(0, 4).is_err());
}

fn expect_closed(s: Session) {
    let r = s.server.join().unwrap();
    assert!(r.is_err(), "the server should report the protocol error");
}

#[test]
fn out_of_range_vring_closes_the_connection() {
    let s = start("range");
    s.fe.set_vring_num(7, 64).ok();
    expect_closed(s);
}

#[test]
fn wrong_payload_size_closes_the_connection() {
    let s = start("size");
    s.fe.send_raw(Request::SET_VRING_NUM, 0, &[0; 5], &[])
        .unwrap();
    expect_closed(s);
}

#[test]
fn inband_kick_without_the_protocol_feature_closes_the_connection() {
    let mut s = start("inband");
    let _r = setup(&mut s, RingFormat::Split);
    // VRING_KICK (35) is only part of the protocol once INBAND_NOTIFICATIONS
    // is negotiated, which this backend never offers.
    let index_and_num = [0u8; 8];
    s.fe.send_raw(Request::VRING_KICK, 0, &index_and_num, &[])
        .unwrap();
    // The next request finds the connection closed (a backend that took
    // the kick would answer it).
    assert!(
        s.fe.get_features().is_err(),
        "the in-band kick was accepted"
    );
    expect_closed(s);
}

#[test]
fn bad_version_closes_the_connection() {
    let s = start("version");
    // flags version 2 (VERSION is or'ed in by send_raw: 1 | 2 = 3).
    s.fe.send_raw(Request::GET_FEATURES, 2, &[], &[]).unwrap();
    expect_closed(s);
}

#[test]
fn ring_outside_memory_closes_the_connection() {
    let mut s = start("ringaddr");
    let _ = s.fe.get_features().unwrap();
    s.fe.set_features(1 << VIRTIO_F_VERSION_1).unwrap();
    s.fe.set_mem_table(
        &[MemRegion {
            guest_addr: 0,
            size: MEM,
            user_addr: UADDR,
            mmap_offset: 0,
        }],
        &[s._memfd.as_fd()],
    )
    .unwrap();
    s.fe.set_vring_num(0, 64).unwrap();
    s.fe.set_vring_addr(&VringAddr {
        index: 0,
        flags: 0,
        desc: UADDR + MEM - 16,
        used: UADDR,
        avail: UADDR + 4096,
        log: 0,
    })
    .unwrap();
    let kick = EventFd::new().unwrap();
    let _ = s.fe.set_vring_kick(0, Some(kick.as_fd()));
    let _ = &mut s;
    expect_closed(s);
}

#[test]
fn memory_table_without_fds_closes_the_connection() {
    let s = start("memfds");
    let _ = s.fe.set_mem_table(
        &[MemRegion {
            guest_addr: 0,
            size: MEM,
            user_addr: UADDR,
            mmap_offset: 0,
        }],
        &[],
    );
    expect_closed(s);
}

/// A region larger than the file shared for it: mapping it would succeed,
/// but the first access past the file's end would raise SIGBUS and kill the
/// backend. The table is refused and the connection closed instead.
#[test]
fn memory_region_past_the_end_of_its_file_closes_the_connection() {
    let s = start("memshort");
    let _ = s.fe.get_features().unwrap();
    let _ = s.fe.set_mem_table(
        &[MemRegion {
            guest_addr: 0,
            size: 2 * MEM,
            user_addr: UADDR,
            mmap_offset: 0,
        }],
        &[s._memfd.as_fd()],
    );
    assert!(
        s.fe.get_features().is_err(),
        "the backend accepted a region past the end of its file"
    );
    expect_closed(s);
}

#[test]
fn unoffered_features_close_the_connection() {
    let s = start("feat");
    let _ = s.fe.set_features(1 << 63);
    expect_closed(s);
}

#[test]
fn busy_socket_is_refused() {
    let dir = temp_dir("busy");
    let path = dir.0.join("x.sock");
    let _a = Server::bind(&path).unwrap();
    assert!(matches!(Server::bind(&path), Err(ServeError::Busy(_))));
}

/// A device that reports a configuration change whenever a worker starts.
struct ConfigChanger;

impl ringwork_device::model::Device for ConfigChanger {
    fn device_type(&self) -> ringwork_spec::device_id::DeviceType {
        ringwork_spec::device_id::DeviceType(ringwork_spec::device_id::VIRTIO_ID_RNG)
    }
    fn features(&self) -> u64 {
        ringwork_device::ring_features()
    }
    fn num_queues(&self) -> u16 {
        1
    }
    fn config(&self) -> Vec<u8> {
        vec![7; 8]
    }
    fn start_worker(
        &self,
        _queues: &[u16],
        _features: u64,
        events: Arc<dyn ringwork_device::model::DeviceEvents>,
    ) -> Result<Box<dyn ringwork_device::model::QueueWorker>, ringwork_device::model::DeviceError>
    {
        events.config_changed();
        Ok(Box::new(Idle))
    }
}

struct Idle;

impl ringwork_device::model::QueueWorker for Idle {
    fn process(
        &mut self,
        _queues: &mut ringwork_device::model::QueueSet<'_>,
    ) -> Result<(), ringwork_device::model::DeviceError> {
        Ok(())
    }
}

/// CONFIG + BACKEND_REQ: a device's configuration change reaches the
/// frontend as VHOST_USER_BACKEND_CONFIG_CHANGE_MSG on the backend channel;
/// GET_CONFIG reads in range work, reads beyond the space are refused.
#[test]
fn config_change_goes_through_the_backend_channel() {
    use std::io::Read;
    let dir = temp_dir("cfgchange");
    let path = dir.0.join("c.sock");
    let mut server = Server::bind(&path).unwrap();
    let handle =
        std::thread::spawn(move || server.serve(Arc::new(ConfigChanger), OnDisconnect::Exit));
    let mut fe = Frontend::connect(&path).unwrap();
    let features = (1 << VIRTIO_F_VERSION_1) | (1 << msg::F_PROTOCOL_FEATURES);
    fe.set_features(features).unwrap();
    let pf = (1 << protocol::REPLY_ACK) | (1 << protocol::CONFIG) | (1 << protocol::BACKEND_REQ);
    fe.set_protocol_features(pf).unwrap();
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    fe.set_backend_req_fd(theirs.as_fd()).unwrap();
    drop(theirs);
    assert_eq!(fe.get_config(2, 4).unwrap(), vec![7; 4]);
    assert!(fe.get_config(6, 4).is_err(), "read past the config space");
    // Start a ring: the device's worker reports a config change.
    let fd = memfd(c"guest", MEM).unwrap();
    fe.set_mem_table(
        &[MemRegion {
            guest_addr: 0,
            size: MEM,
            user_addr: UADDR,
            mmap_offset: 0,
        }],
        &[fd.as_fd()],
    )
    .unwrap();
    fe.set_vring_num(0, 64).unwrap();
    fe.set_vring_addr(&VringAddr {
        index: 0,
        flags: 0,
        desc: UADDR,
        used: UADDR + 8192,
        avail: UADDR + 4096,
        log: 0,
    })
    .unwrap();
    let kick = EventFd::new().unwrap();
    fe.set_vring_kick(0, Some(kick.as_fd())).unwrap();
    fe.set_vring_enable(0, true).unwrap();
    let mut hdr = [0u8; 12];
    ours.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    (&ours).read_exact(&mut hdr).unwrap();
    let h = msg::Header::parse(&hdr).unwrap();
    assert_eq!(h.request.0, msg::backend_req::CONFIG_CHANGE_MSG);
    assert_eq!(h.size, 0);
    drop(fe);
    handle.join().unwrap().unwrap();
}

/// INFLIGHT_SHMFD (split ring): buffers a crashed backend had popped but not
/// used are resubmitted by the next one in the order they were popped
/// (recorded counters), ahead of anything new; afterwards the area shows
/// nothing in flight.
#[test]
fn inflight_buffers_are_resubmitted_in_pop_order() {
    use ringwork_queue::mmap::MmapRegion;
    let mut s = start("inflight");
    let (desc, area_fd) = s.fe.get_inflight_fd(1, 64).unwrap();
    assert!(desc.mmap_size > 0);
    s.fe.set_inflight_fd(&desc, area_fd.as_fd()).unwrap();
    let mut r = setup(&mut s, RingFormat::Split);
    assert_eq!(request(&s, &mut r, 1, 16).len(), 16);
    assert_eq!(s.fe.get_vring_base(0).unwrap(), 1);
    // While the ring is stopped the driver adds B then C; pretend a crashed
    // backend popped both, C first (counters 5 and 6).
    let hb =
        r.dq.add(&[], &[Segment::new(DATA + 2 * 4096, 16)], 2)
            .unwrap();
    let hc =
        r.dq.add(&[], &[Segment::new(DATA + 3 * 4096, 16)], 3)
            .unwrap();
    let area = MmapRegion::from_fd(area_fd.as_fd(), 0, desc.mmap_size as usize).unwrap();
    let w = area.as_slice();
    for (head, counter) in [(hc, 5u64), (hb, 6u64)] {
        let off = 16 + 16 * usize::from(head);
        w.write_u64(off + 8, counter).unwrap();
        w.write_u8(off, 1).unwrap();
    }
    // Restart as a frontend does after a crash: base = the used index.
    s.fe.set_vring_base(0, 1).unwrap();
    let kick = EventFd::new().unwrap();
    s.fe.set_vring_kick(0, Some(kick.as_fd())).unwrap();
    r.kick = kick;
    let mut order = Vec::new();
    let t = Instant::now();
    while order.len() < 2 && t.elapsed() < Duration::from_secs(10) {
        while let Some(u) = r.dq.pop_used().unwrap() {
            order.push(u.token);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(order, vec![3, 2], "resubmitted in pop order (C, then B)");
    for head in [hb, hc] {
        assert_eq!(w.read_u8(16 + 16 * usize::from(head)).unwrap(), 0);
    }
    assert_eq!(w.read_u16(14).unwrap(), 3, "recorded used index");
}

/// CONFIGURE_MEM_SLOTS: memory added with ADD_MEM_REG serves a ring and
/// buffers; a region added twice (QEMU's multiqueue net sends every region
/// once per queue pair) stays mapped until removed twice; REM_MEM_REG of
/// an unknown region is refused (REPLY_ACK),
/// RESET_DEVICE stops everything and the session can start again.
#[test]
fn mem_slots_and_reset_device() {
    let mut s = start("memslots");
    let _ = s.fe.get_features().unwrap();
    let pf = (1 << protocol::REPLY_ACK)
        | (1 << protocol::CONFIGURE_MEM_SLOTS)
        | (1 << protocol::RESET_DEVICE);
    s.fe.set_protocol_features(pf).unwrap();
    assert_eq!(s.fe.get_max_mem_slots().unwrap(), 32);
    let features = (1 << VIRTIO_F_VERSION_1) | (1 << msg::F_PROTOCOL_FEATURES);
    s.fe.set_features(features).unwrap();
    let region = MemRegion {
        guest_addr: 0,
        size: MEM,
        user_addr: UADDR,
        mmap_offset: 0,
    };
    s.fe.add_mem_reg(&region, s._memfd.as_fd()).unwrap();
    s.fe.add_mem_reg(&region, s._memfd.as_fd()).unwrap();
    s.fe.add_mem_reg(&region, s._memfd.as_fd()).unwrap();
    s.fe.rem_mem_reg(&region).unwrap();
    s.fe.rem_mem_reg(&region).unwrap();
    let bogus = MemRegion {
        guest_addr: 1 << 40,
        ..region
    };
    assert!(s.fe.rem_mem_reg(&bogus).is_err(), "unknown region");
    let (_, qf) = QueueFeatures::from_bits(features);
    let mut dq = DriverQueue::new(
        s.mem.clone(),
        DriverQueueConfig::new(RingFormat::Split, 64, qf),
    )
    .unwrap();
    let a = dq.addresses();
    let (kick, call) = (EventFd::new().unwrap(), EventFd::new().unwrap());
    s.fe.set_vring_num(0, 64).unwrap();
    s.fe.set_vring_addr(&VringAddr {
        index: 0,
        flags: 0,
        desc: UADDR + a.desc,
        used: UADDR + a.device,
        avail: UADDR + a.driver,
        log: 0,
    })
    .unwrap();
    s.fe.set_vring_call(0, Some(call.as_fd())).unwrap();
    s.fe.set_vring_kick(0, Some(kick.as_fd())).unwrap();
    s.fe.set_vring_enable(0, true).unwrap();
    dq.add(&[], &[Segment::new(DATA, 32)], 1).unwrap();
    kick.signal().unwrap();
    assert!(wait(&call));
    assert_eq!(dq.pop_used().unwrap().unwrap().len, 32);
    s.fe.reset_device().unwrap();
    assert_eq!(s.fe.get_status().unwrap(), 0);
    s.fe.rem_mem_reg(&region).unwrap();
    assert!(
        s.fe.rem_mem_reg(&region).is_err(),
        "removed as often as added"
    );
}
