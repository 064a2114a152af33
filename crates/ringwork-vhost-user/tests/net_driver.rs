//! ringwork's network driver against ringwork's network device over
//! vhost-user (VIRTIO 1.4 §5.1): two devices on one userspace switch, each
//! served on its own socket, each driven by a `NetDriver` through the
//! `VhostUserTransport` frontend. Frames sent by A arrive at B byte-exact
//! with and without MRG_RXBUF, on split and packed rings, with two queue
//! pairs enabled by VQ_PAIRS_SET; a checksum-offload frame arrives with
//! NEEDS_CSUM (receiver with GUEST_CSUM) or completed by the device
//! (receiver without); commands the device refuses return its ack; an
//! announce request is acknowledged. And one device on the loopback
//! backend: frames forwarded in place (`recv_bufs`, `write_buf`,
//! `send_bufs`) lap after lap come back intact and in order.

mod common;
use common::{serve, temp_dir};

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ringwork_device::net::{Loopback, MacAddr, Net, NetOptions as DevNetOptions, Switch};
use ringwork_driver::net::{
    ones_complement_sum, CtrlError, NetDriver, NetOptions, RxChecksum, RxInfo, TxChecksum, TxFrame,
};
use ringwork_driver::RingPreference;
use ringwork_queue::RingFormat;
use ringwork_spec::device_id::{DeviceType, VIRTIO_ID_NET};
use ringwork_spec::features::FeatureSet;
use ringwork_spec::net::ctrl::{VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_VLAN, VIRTIO_NET_ERR};
use ringwork_spec::net::{
    VIRTIO_NET_F_GUEST_CSUM, VIRTIO_NET_F_MQ, VIRTIO_NET_F_MRG_RXBUF, VIRTIO_NET_S_ANNOUNCE,
};
use ringwork_vhost_user::{SharedMemory, TransportOptions, VhostUserTransport};

type Drv = NetDriver<VhostUserTransport, Arc<SharedMemory>>;

const MAC_A: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x01];
const MAC_B: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x02];

fn connect(path: &Path) -> (VhostUserTransport, Arc<SharedMemory>) {
    let t = VhostUserTransport::connect(
        path,
        TransportOptions {
            device_type: Some(DeviceType(VIRTIO_ID_NET)),
            memory_size: 16 << 20,
            timeout: Duration::from_secs(5),
            ..TransportOptions::default()
        },
    )
    .unwrap();
    let m = t.memory().clone();
    (t, m)
}

/// An Ethernet frame from `src` to `dst` of `len` bytes (EtherType
/// 0x88b5, local experimental), numbered `n`.
fn frame(dst: [u8; 6], src: [u8; 6], len: usize, n: u32) -> Vec<u8> {
    let mut f: Vec<u8> = (0..len)
        .map(|i| (i as u32).wrapping_mul(7).wrapping_add(n * 13) as u8)
        .collect();
    f[..6].copy_from_slice(&dst);
    f[6..12].copy_from_slice(&src);
    f[12..14].copy_from_slice(&[0x88, 0xb5]);
    f[14..18].copy_from_slice(&n.to_be_bytes());
    f
}

/// An IPv4/UDP frame with a valid IP header checksum and, in the UDP
/// checksum field, the pseudo-header sum (a partial checksum: start 34,
/// offset 6).
fn udp_frame(dst: [u8; 6], src: [u8; 6], payload: usize) -> Vec<u8> {
    let udp_len = 8 + payload;
    let ip_len = 20 + udp_len;
    let mut f = vec![0u8; 14 + ip_len];
    f[..6].copy_from_slice(&dst);
    f[6..12].copy_from_slice(&src);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip = &mut f[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&(ip_len as u16).to_be_bytes());
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&[10, 0, 0, 1]);
    ip[16..20].copy_from_slice(&[10, 0, 0, 2]);
    let c = !ones_complement_sum(ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let udp = &mut f[34..];
    udp[0..2].copy_from_slice(&4000u16.to_be_bytes());
    udp[2..4].copy_from_slice(&5000u16.to_be_bytes());
    udp[4..6].copy_from_slice(&(udp_len as u16).to_be_bytes());
    for (i, b) in udp[8..].iter_mut().enumerate() {
        *b = (i * 3) as u8;
    }
    let pseudo = pseudo_sum(&f);
    f[40..42].copy_from_slice(&pseudo.to_be_bytes());
    f
}

/// The UDP pseudo-header sum of an [`udp_frame`].
fn pseudo_sum(f: &[u8]) -> u16 {
    let mut p = Vec::new();
    p.extend_from_slice(&f[26..34]);
    p.extend_from_slice(&[0, 17]);
    p.extend_from_slice(&f[38..40]);
    ones_complement_sum(&p)
}

/// Whether the UDP checksum of `f` is complete and correct.
fn udp_checksum_ok(f: &[u8]) -> bool {
    let sum = u32::from(ones_complement_sum(&f[34..])) + u32::from(pseudo_sum(f));
    (sum & 0xffff) + (sum >> 16) == 0xffff
}

/// The next frame on any active pair of `d` (polling, up to 5 s).
fn recv_any(d: &mut Drv, buf: &mut [u8]) -> (u16, RxInfo) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        for pair in 0..d.queue_pairs() {
            if let Some(i) = d.recv_into(pair, buf).unwrap() {
                return (pair, i);
            }
        }
        assert!(Instant::now() < deadline, "no frame arrived");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Sends `f` on `pair`, retrying while the transmit queue is full.
fn send(d: &mut Drv, pair: u16, f: &[u8], csum: Option<TxChecksum>) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match d.send(pair, f, csum) {
            Ok(()) => return,
            Err(ringwork_driver::net::SendError::QueueFull { .. }) => {
                assert!(Instant::now() < deadline, "transmitq stayed full");
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => panic!("send: {e}"),
        }
    }
}

fn two_on_a_switch(ring: RingPreference, mergeable: bool) {
    let dir = temp_dir(&format!("net-{ring:?}-{mergeable}"));
    let switch = Switch::new();
    let mk = |mac: [u8; 6]| {
        let opts = DevNetOptions {
            queue_pairs: 2,
            ..DevNetOptions::new(MacAddr(mac))
        };
        Arc::new(Net::new(opts, Arc::new(switch.add_port(2).unwrap())).unwrap())
    };
    let (dev_a, dev_b) = (mk(MAC_A), mk(MAC_B));
    let (sock_a, sock_b) = (dir.0.join("a.sock"), dir.0.join("b.sock"));
    serve(&sock_a, dev_a.clone());
    serve(&sock_b, dev_b.clone());
    let mut withhold = FeatureSet::EMPTY;
    if !mergeable {
        withhold.insert(VIRTIO_NET_F_MRG_RXBUF);
    }
    let opts = NetOptions {
        queue_pairs: 2,
        ring,
        // Small mergeable buffers: full-size frames span several.
        rx_buffer_len: 512,
        withhold,
        ..NetOptions::default()
    };
    let (t, mem) = connect(&sock_a);
    let mut a: Drv = NetDriver::new(t, mem, opts).unwrap();
    // B without GUEST_CSUM when not mergeable: the device completes
    // checksums for it.
    let mut b_opts = opts;
    if !mergeable {
        b_opts.withhold.insert(VIRTIO_NET_F_GUEST_CSUM);
    }
    let (t, mem) = connect(&sock_b);
    let mut b: Drv = NetDriver::new(t, mem, b_opts).unwrap();
    for d in [&a, &b] {
        assert_eq!(d.features().contains(VIRTIO_NET_F_MRG_RXBUF), mergeable);
        assert!(d.features().contains(VIRTIO_NET_F_MQ));
        assert_eq!(
            d.ring_format() == RingFormat::Packed,
            ring == RingPreference::Packed
        );
        assert!(d.link_up());
        assert_eq!(d.mtu(), 1500);
    }
    assert_eq!((a.mac(), b.mac()), (MAC_A, MAC_B));

    // Pair 0: frames of every size class, byte-exact, in order.
    let mut buf = vec![0u8; 2048];
    let sizes = [60usize, 64, 511, 512, 1000, 1400, 1514];
    for (n, &len) in sizes.iter().enumerate() {
        let f = frame(MAC_B, MAC_A, len, n as u32);
        send(&mut a, 0, &f, None);
        let (pair, i) = recv_any(&mut b, &mut buf);
        assert_eq!(pair, 0, "one pair in use before VQ_PAIRS_SET");
        assert_eq!(&buf[..i.len], &f[..], "frame {n} of {len} bytes");
        if mergeable {
            assert_eq!(usize::from(i.num_buffers), (12 + len).div_ceil(512));
        } else {
            assert_eq!(i.num_buffers, 1);
        }
    }
    // And back.
    let f = frame(MAC_A, MAC_B, 300, 99);
    send(&mut b, 0, &f, None);
    let (_, i) = recv_any(&mut a, &mut buf);
    assert_eq!(&buf[..i.len], &f[..]);

    // Two pairs: VQ_PAIRS_SET on both, frames on pair 1 arrive too.
    a.set_queue_pairs(2).unwrap();
    b.set_queue_pairs(2).unwrap();
    assert_eq!((dev_a.active_pairs(), dev_b.active_pairs()), (2, 2));
    let frames: Vec<Vec<u8>> = (0..64)
        .map(|n| frame(MAC_B, MAC_A, 100 + n * 20, 1000 + n as u32))
        .collect();
    let batch: Vec<TxFrame> = frames.iter().map(|f| TxFrame::new(f)).collect();
    let mut queued = 0;
    while queued < batch.len() {
        queued += a.send_batch(1, &batch[queued..]).unwrap();
        if queued < batch.len() {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let mut got = Vec::new();
    while got.len() < frames.len() {
        let (_, i) = recv_any(&mut b, &mut buf);
        got.push(buf[..i.len].to_vec());
    }
    // One flow, one receive queue: in order.
    assert_eq!(got, frames);

    // Checksum offload.
    let u = udp_frame(MAC_B, MAC_A, 777);
    assert!(!udp_checksum_ok(&u));
    send(
        &mut a,
        1,
        &u,
        Some(TxChecksum {
            start: 34,
            offset: 6,
        }),
    );
    let (_, i) = recv_any(&mut b, &mut buf);
    let got = &buf[..i.len];
    if b.features().contains(VIRTIO_NET_F_GUEST_CSUM) {
        assert_eq!(
            i.csum,
            RxChecksum::Partial(TxChecksum {
                start: 34,
                offset: 6
            })
        );
        assert_eq!(got, &u[..], "passed on untouched");
    } else {
        assert_eq!(i.csum, RxChecksum::None);
        assert!(udp_checksum_ok(got), "completed by the device");
        assert_eq!((&got[..40], &got[42..]), (&u[..40], &u[42..]));
    }

    // Commands the device refuses: the ack comes back.
    assert_eq!(
        b.vlan_add(4096),
        Err(CtrlError::Rejected {
            class: VIRTIO_NET_CTRL_VLAN,
            command: 0,
            ack: VIRTIO_NET_ERR
        })
    );
    assert_eq!(
        b.set_mac([0x01, 0, 0x5e, 0, 0, 1]),
        Err(CtrlError::Rejected {
            class: VIRTIO_NET_CTRL_MAC,
            command: 1,
            ack: VIRTIO_NET_ERR
        })
    );
    assert_eq!(b.mac(), MAC_B);
    b.vlan_add(10).unwrap();
    assert!(dev_b.rx_filter().has_vlan(10));
    b.set_promisc(false).unwrap();

    // Announce: the configuration change notification, then the ack.
    let acks = dev_a.stats().ctrl_ok;
    assert!(dev_a.announce());
    let deadline = Instant::now() + Duration::from_secs(5);
    while !a.interrupt().config_changed {
        assert!(Instant::now() < deadline, "no configuration change");
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(a.config_change_pending());
    let up = a.config_changed().unwrap();
    assert!(up.announce && up.link_up);
    assert_eq!(dev_a.stats().ctrl_ok, acks + 1, "ANNOUNCE_ACK accepted");
    assert_eq!(a.config().status & VIRTIO_NET_S_ANNOUNCE, 0);

    // Nothing was malformed or too big for a buffer on either side.
    for dev in [&dev_a, &dev_b] {
        let s = dev.stats();
        assert_eq!((s.tx_malformed, s.rx_buffer_too_small), (0, 0), "{s:?}");
    }

    for d in [a, b] {
        assert!(d.reset().reset.is_ok());
    }
}

#[test]
fn net_split_mergeable() {
    two_on_a_switch(RingPreference::Split, true);
}

#[test]
fn net_split_big_buffers() {
    two_on_a_switch(RingPreference::Split, false);
}

#[test]
fn net_packed_mergeable() {
    two_on_a_switch(RingPreference::Packed, true);
}

#[test]
fn net_packed_big_buffers() {
    two_on_a_switch(RingPreference::Packed, false);
}

/// Frames circulating through [`forward_in_place`].
const IN_FLIGHT: u32 = 48;
/// Times each goes round.
const LAPS: u32 = 80;

/// Length of circulating frame `n`: 60 to 1514 bytes.
fn fwd_len(n: u32) -> usize {
    60 + (n as usize * 331) % 1455
}

/// Circulating frame `n` on lap `lap`: the lap number in bytes 18..22 and
/// in the last four bytes.
fn fwd_frame(n: u32, lap: u32) -> Vec<u8> {
    let mut f = frame(MAC_A, MAC_B, fwd_len(n), n);
    let end = f.len();
    f[18..22].copy_from_slice(&lap.to_be_bytes());
    f[end - 4..].copy_from_slice(&lap.to_be_bytes());
    f
}

/// One device on the loopback backend: 48 frames (some spanning three
/// 512-byte mergeable buffers) injected with the copying API, then
/// forwarded in place 80 times each (3840 frames): received with
/// `recv_bufs`, checked byte-exact with `read_buf`, their lap number
/// rewritten in place with `write_buf` (at the front and at the end, in
/// another buffer for long mergeable frames) and sent back from the same
/// buffers with `send_bufs`. One pair, one flow: the frames come back in
/// order, none lost. Afterwards every receive buffer is back in the ring.
fn forward_in_place(ring: RingPreference, mergeable: bool) {
    let dir = temp_dir(&format!("net-fwd-{ring:?}-{mergeable}"));
    let backend = Arc::new(Loopback::new(1).unwrap());
    let dev = Arc::new(Net::new(DevNetOptions::new(MacAddr(MAC_A)), backend.clone()).unwrap());
    let sock = dir.0.join("lo.sock");
    serve(&sock, dev.clone());
    let mut withhold = FeatureSet::EMPTY;
    if !mergeable {
        withhold.insert(VIRTIO_NET_F_MRG_RXBUF);
    }
    let (t, mem) = connect(&sock);
    let mut d: Drv = NetDriver::new(
        t,
        mem,
        NetOptions {
            ring,
            rx_buffer_len: 512,
            withhold,
            ..NetOptions::default()
        },
    )
    .unwrap();
    assert_eq!(d.features().contains(VIRTIO_NET_F_MRG_RXBUF), mergeable);
    assert_eq!(
        d.ring_format() == RingFormat::Packed,
        ring == RingPreference::Packed
    );
    let size = d.rx_available(0);
    assert!(size >= 64, "receive ring of {size}");
    d.set_rx_polling(true);

    let first: Vec<Vec<u8>> = (0..IN_FLIGHT).map(|n| fwd_frame(n, 0)).collect();
    let batch: Vec<TxFrame> = first.iter().map(|f| TxFrame::new(f)).collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut queued = 0;
    while queued < batch.len() {
        queued += d.send_batch(0, &batch[queued..]).unwrap();
        assert!(Instant::now() < deadline, "transmitq stayed full");
    }

    let total = u64::from(IN_FLIGHT) * u64::from(LAPS);
    let (mut received, mut multi) = (0u64, 0u64);
    let mut held = Vec::new();
    let mut back = Vec::new();
    let mut done = Vec::new();
    let mut got = Vec::new();
    while received < total {
        assert!(
            Instant::now() < deadline,
            "{received} of {total} frames came back; device {:?}, loopback {backend:?}",
            dev.stats()
        );
        if d.recv_bufs(0, 64, &mut held).unwrap() == 0 {
            std::thread::yield_now();
            continue;
        }
        for nb in held.drain(..) {
            // In order: the k-th frame back is frame k % IN_FLIGHT on lap
            // k / IN_FLIGHT.
            let (n, lap) = (
                (received % u64::from(IN_FLIGHT)) as u32,
                (received / u64::from(IN_FLIGHT)) as u32,
            );
            received += 1;
            got.resize(nb.len(), 0);
            d.read_buf(&nb, 0, &mut got).unwrap();
            assert_eq!(got, fwd_frame(n, lap), "frame {n} on lap {lap}");
            if nb.info().num_buffers > 1 {
                multi += 1;
            }
            if lap + 1 == LAPS {
                done.push(nb);
                continue;
            }
            let next = (lap + 1).to_be_bytes();
            d.write_buf(&nb, 18, &next).unwrap();
            d.write_buf(&nb, nb.len() - 4, &next).unwrap();
            back.push(nb);
        }
        while !back.is_empty() {
            d.send_bufs(0, &mut back).unwrap();
            assert!(Instant::now() < deadline, "transmitq stayed full");
        }
    }
    assert_eq!(multi > 0, mergeable, "{multi} frames spanned buffers");
    d.release_bufs(done.drain(..));
    // Nothing else comes back; every buffer returns to the ring.
    std::thread::sleep(Duration::from_millis(50));
    d.reclaim(0).unwrap();
    assert_eq!(d.recv_bufs(0, 64, &mut held).unwrap(), 0, "an extra frame");
    assert_eq!(d.tx_in_flight(0), 0);
    assert_eq!(d.rx_available(0), size);
    let s = dev.stats();
    assert_eq!(
        (s.tx_packets, s.rx_packets),
        (total, total),
        "every frame through the device once per lap: {s:?}"
    );
    assert_eq!(
        (s.tx_malformed, s.tx_backend_dropped, s.rx_buffer_too_small),
        (0, 0, 0)
    );
    assert_eq!((backend.reflected(), backend.dropped()), (total, 0));
    assert!(d.reset().reset.is_ok());
}

#[test]
fn net_forward_in_place_split() {
    forward_in_place(RingPreference::Split, true);
    forward_in_place(RingPreference::Split, false);
}

#[test]
fn net_forward_in_place_packed() {
    forward_in_place(RingPreference::Packed, true);
    forward_in_place(RingPreference::Packed, false);
}
