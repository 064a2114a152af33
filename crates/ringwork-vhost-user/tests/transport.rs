//! The frontend as a driver-side transport against our backends: device
//! identification, negotiation through the generic `negotiate`, queues in
//! both ring formats, configuration reads, and a dead backend.

mod common;
use common::{serve, temp_dir};

use std::sync::Arc;

use ringwork_device::blk::{Blk, BlkOptions};
use ringwork_device::model::Device;
use ringwork_device::rng::Rng;
use ringwork_queue::driver::{DriverQueue, DriverQueueConfig};
use ringwork_queue::{GuestMemory, RingFormat, Segment};
use ringwork_spec::device_id::{DeviceType, VIRTIO_ID_BLOCK, VIRTIO_ID_RNG};
use ringwork_spec::features::{
    FeatureSet, VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC, VIRTIO_F_RING_PACKED,
};
use ringwork_spec::status::DeviceStatus;
use ringwork_transport::driver::{
    attach_queue, negotiate, ring_features, set_driver_ok, ConfigRead, Transport, TransportError,
};
use ringwork_vhost_user::{OnDisconnect, Server, TransportOptions, VhostUserTransport};

fn opts() -> TransportOptions {
    TransportOptions {
        memory_size: 4 << 20,
        timeout: std::time::Duration::from_secs(5),
        ..TransportOptions::default()
    }
}

fn rng_round_trip(packed: bool) {
    let dir = temp_dir(if packed { "rng-packed" } else { "rng-split" });
    let sock = dir.0.join("rng.sock");
    let server = serve(&sock, Arc::new(Rng::new()));
    let mut t = VhostUserTransport::connect(&sock, opts()).unwrap();
    assert_eq!(t.device_type(), DeviceType(VIRTIO_ID_RNG));
    let mut supports = FeatureSet::from_bits(&[VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC]);
    if packed {
        supports.insert(VIRTIO_F_RING_PACKED);
    }
    let negotiated = negotiate(&mut t, supports, &[]).unwrap();
    assert_eq!(negotiated.contains(VIRTIO_F_RING_PACKED), packed);
    let (format, qf) = ring_features(&t, negotiated);
    assert_eq!(format == RingFormat::Packed, packed);
    let mem = t.memory().clone();
    let mut q: DriverQueue<_, u32> =
        DriverQueue::new(mem.clone(), DriverQueueConfig::new(format, 64, qf)).unwrap();
    attach_queue(&mut t, &q).unwrap();
    set_driver_ok(&mut t);
    assert!(t.status().contains(DeviceStatus::DRIVER_OK));
    let buf = ringwork_queue::Dma::alloc(&*mem, 4096, 64).unwrap();
    for round in 0..20u32 {
        q.add(&[], &[Segment::new(buf.device_addr(), 256)], round)
            .unwrap();
        q.enable_callbacks();
        if q.kick_prepare().unwrap() {
            t.notify(0, q.notification_data());
        }
        let used = loop {
            if let Some(u) = q.pop_used().unwrap() {
                break u;
            }
            t.wait_interrupt().unwrap();
        };
        assert_eq!(used.token, round);
        assert_eq!(used.len, 256);
    }
    let mut bytes = [0u8; 256];
    mem.slice(buf.device_addr(), 256)
        .unwrap()
        .read_bytes(0, &mut bytes)
        .unwrap();
    assert!(bytes.iter().any(|&b| b != 0), "random bytes arrived");
    t.reset().unwrap();
    drop(t);
    server.join().unwrap();
}

#[test]
fn rng_split() {
    rng_round_trip(false);
}

#[test]
fn rng_packed() {
    rng_round_trip(true);
}

#[test]
fn blk_is_identified_and_its_config_read() {
    let dir = temp_dir("blk");
    let image = dir.0.join("disk.img");
    std::fs::write(&image, vec![0u8; 1 << 20]).unwrap();
    let mut o = BlkOptions::new(&image);
    o.num_queues = 3;
    let sock = dir.0.join("blk.sock");
    let server = serve(&sock, Arc::new(Blk::open(o).unwrap()));
    let mut t = VhostUserTransport::connect(&sock, opts()).unwrap();
    assert_eq!(t.device_type(), DeviceType(VIRTIO_ID_BLOCK));
    assert_eq!(t.num_queues(), 3);
    assert_eq!(t.max_queue_size(2), 1024);
    assert_eq!(t.max_queue_size(3), 0);
    negotiate(&mut t, FeatureSet::new(), &[]).unwrap();
    assert_eq!(t.config_u64(0), 2048, "capacity in sectors");
    assert_eq!(t.config_u16(34), 3, "num_queues");
    drop(t);
    server.join().unwrap();
}

#[test]
fn a_dead_backend_is_reported_not_waited_for() {
    let dir = temp_dir("dead");
    let sock = dir.0.join("rng.sock");
    let mut server = Server::bind(&sock).unwrap();
    let stop = server.shutdown_handle();
    let dev: Arc<dyn Device> = Arc::new(Rng::new());
    let server = std::thread::spawn(move || {
        let _ = server.serve(dev, OnDisconnect::Exit);
    });
    let mut t = VhostUserTransport::connect(&sock, opts()).unwrap();
    negotiate(&mut t, FeatureSet::new(), &[]).unwrap();
    // The backend goes away mid-session.
    stop.shutdown();
    server.join().unwrap();
    assert!(matches!(
        t.wait_interrupt(),
        Err(TransportError::Disconnected(_))
    ));
    assert!(t.status().contains(DeviceStatus::DEVICE_NEEDS_RESET));
    assert!(t.error().is_some());
}

/// A backend that writes on the main socket without being asked is broken:
/// the wait reports it instead of waking up for it forever.
#[test]
fn unsolicited_data_on_the_socket_is_an_error() {
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;
    let (ours, mut theirs) = UnixStream::pair().unwrap();
    let fake = std::thread::spawn(move || {
        // SET_OWNER (no reply), then GET_FEATURES: VERSION_1 only.
        let mut h = [0u8; 12];
        theirs.read_exact(&mut h).unwrap();
        assert_eq!(u32::from_ne_bytes(h[0..4].try_into().unwrap()), 3);
        theirs.read_exact(&mut h).unwrap();
        assert_eq!(u32::from_ne_bytes(h[0..4].try_into().unwrap()), 1);
        let mut reply = Vec::new();
        for v in [1u32, 0x5, 8] {
            reply.extend_from_slice(&v.to_ne_bytes());
        }
        reply.extend_from_slice(&(1u64 << 32).to_ne_bytes());
        theirs.write_all(&reply).unwrap();
        // Then junk nobody asked for.
        theirs.write_all(b"junk").unwrap();
        theirs
    });
    let mut t = VhostUserTransport::from_stream(
        ours,
        TransportOptions {
            device_type: Some(DeviceType(VIRTIO_ID_RNG)),
            ..opts()
        },
    )
    .unwrap();
    let _keep_open = fake.join().unwrap();
    assert_eq!(
        t.wait_interrupt(),
        Err(TransportError::Disconnected(
            "unsolicited data on the vhost-user socket"
        ))
    );
    assert!(t.status().contains(DeviceStatus::DEVICE_NEEDS_RESET));
}
