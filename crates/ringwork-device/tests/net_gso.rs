//! Segmentation offload through the network device (VIRTIO 1.4 §5.1.9.2,
//! §5.1.9.4): on a backend that carries GSO frames (a stand-in for a
//! tap), the device offers HOST_/GUEST_ TSO4, TSO6, ECN, UFO and USO, hands
//! a driver's TSO frame to the backend whole with its header fields,
//! delivers the backend's GSO frames only to a driver that negotiated
//! their type, tells the backend what the driver accepts, and drops every
//! malformed offload request. On the switch (no GSO) none of it is
//! offered.

mod net_support;

use std::collections::VecDeque;
use std::os::fd::RawFd;
use std::sync::{Arc, Mutex};

use net_support::*;
use ringwork_device::harness::Harness;
use ringwork_device::model::Device;
use ringwork_device::net::{
    offered_net_features_with, Doorbell, Gso, MacAddr, Net, NetBackend, NetOptions, Offloads,
    Packet, PartialCsum, SendError, Switch, MAX_FRAME_LEN, MAX_GSO_FRAME_LEN,
};
use ringwork_device::ring_features;
use ringwork_spec::features::VIRTIO_F_RING_PACKED;
use ringwork_spec::net::*;

const ALL: Offloads = Offloads {
    csum: true,
    tso4: true,
    tso6: true,
    ecn: true,
    ufo: true,
    uso4: true,
    uso6: true,
};

/// A backend that carries GSO frames: records what it is sent and what
/// it is told, and hands over the frames queued in `inbox`.
struct GsoBackend {
    sent: Mutex<Vec<Packet>>,
    inbox: Mutex<VecDeque<Packet>>,
    guest: Mutex<Vec<Offloads>>,
    bell: Doorbell,
}

impl GsoBackend {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            sent: Mutex::new(Vec::new()),
            inbox: Mutex::new(VecDeque::new()),
            guest: Mutex::new(Vec::new()),
            bell: Doorbell::new().unwrap(),
        })
    }

    fn push(&self, p: Packet) {
        self.inbox.lock().unwrap().push_back(p);
        self.bell.ring();
    }

    fn sent(&self) -> Vec<Packet> {
        std::mem::take(&mut *self.sent.lock().unwrap())
    }

    fn last_guest(&self) -> Option<Offloads> {
        self.guest.lock().unwrap().last().copied()
    }
}

impl NetBackend for GsoBackend {
    fn send(&self, _pair: u16, packet: Packet) -> Result<(), SendError> {
        self.sent.lock().unwrap().push(packet);
        Ok(())
    }
    fn recv(&self, _pair: u16) -> Option<Packet> {
        self.inbox.lock().unwrap().pop_front()
    }
    fn rx_fd(&self, _pair: u16) -> Option<RawFd> {
        Some(self.bell.fd())
    }
    fn offloads(&self) -> Offloads {
        ALL
    }
    fn set_guest_offloads(&self, offloads: Offloads) {
        self.guest.lock().unwrap().push(offloads);
    }
}

fn gso_features() -> u64 {
    (ring_features() & !(1 << VIRTIO_F_RING_PACKED)) | offered_net_features_with(1, ALL)
}

fn device(backend: &Arc<GsoBackend>, features: u64) -> Harness<Net> {
    let net = Net::new(NetOptions::new(MAC_A), backend.clone()).unwrap();
    Harness::with_features(net, features, 256).unwrap()
}

/// An IPv4/TCP frame `len` bytes long (54 bytes of headers), as a TSO
/// sender leaves it: checksum field holding the pseudo-header sum.
fn tcp4(dst: MacAddr, src: MacAddr, len: usize) -> Vec<u8> {
    let mut f = frame(dst, src, len, 9);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    f[14..34].fill(0);
    f[14] = 0x45;
    f[16..18].copy_from_slice(&((len - 14).min(0xffff) as u16).to_be_bytes());
    f[22] = 64;
    f[23] = 6;
    f[26..30].copy_from_slice(&[169, 254, 77, 2]);
    f[30..34].copy_from_slice(&[169, 254, 77, 1]);
    let ip = !ringwork_device::net::ones_complement_sum(&f[14..34]);
    f[24..26].copy_from_slice(&ip.to_be_bytes());
    f[46] = 5 << 4;
    f
}

/// A 12-byte header with every field.
fn gso_hdr(flags: u8, gso_type: u8, hdr_len: u16, gso_size: u16, start: u16, off: u16) -> [u8; 12] {
    let mut b = hdr(flags, gso_type, start, off);
    b[2..4].copy_from_slice(&hdr_len.to_le_bytes());
    b[4..6].copy_from_slice(&gso_size.to_le_bytes());
    b
}

const F: u8 = VIRTIO_NET_HDR_F_NEEDS_CSUM;
const T4: u8 = VIRTIO_NET_HDR_GSO_TCPV4;

fn gso_packet(len: usize, gso_type: u8) -> Packet {
    Packet {
        data: tcp4(MAC_A, MAC_B, len),
        csum: Some(PartialCsum {
            start: 34,
            offset: 16,
        }),
        gso: Some(Gso {
            gso_type,
            hdr_len: 54,
            gso_size: 1448,
        }),
    }
}

/// VIRTIO 1.4 §5.1.3: the segmentation features depend on the backend.
#[test]
fn segmentation_features_follow_the_backend() {
    let sw = Switch::new();
    let on_switch = Net::new(NetOptions::new(MAC_A), Arc::new(sw.add_port(1).unwrap())).unwrap();
    let b = GsoBackend::new();
    let on_gso = Net::new(NetOptions::new(MAC_A), b.clone()).unwrap();
    let gso_bits = [
        VIRTIO_NET_F_HOST_TSO4,
        VIRTIO_NET_F_HOST_TSO6,
        VIRTIO_NET_F_HOST_ECN,
        VIRTIO_NET_F_HOST_UFO,
        VIRTIO_NET_F_HOST_USO,
        VIRTIO_NET_F_GUEST_TSO4,
        VIRTIO_NET_F_GUEST_TSO6,
        VIRTIO_NET_F_GUEST_ECN,
        VIRTIO_NET_F_GUEST_UFO,
        VIRTIO_NET_F_GUEST_USO4,
        VIRTIO_NET_F_GUEST_USO6,
    ];
    for bit in gso_bits {
        assert_eq!(on_switch.features() >> bit & 1, 0, "switch: bit {bit}");
        assert_eq!(on_gso.features() >> bit & 1, 1, "gso backend: bit {bit}");
    }
    assert_eq!(
        on_gso.features() & !on_switch.features(),
        gso_bits.iter().fold(0, |a, b| a | 1u64 << b)
    );
    let set = ringwork_spec::features::FeatureSet::from(on_gso.features());
    ringwork_spec::features::check_dependencies(&set, NET_FEATURE_RULES).unwrap();
    // Nothing accepted before a driver says so.
    assert_eq!(b.last_guest(), Some(Offloads::NONE));
}

/// §5.1.9.2: a TSO frame (with HOST_TSO4 negotiated) reaches the backend
/// whole, with `gso_type`, `hdr_len`, `gso_size` and the partial
/// checksum; GSO frames up to MAX_GSO_FRAME_LEN pass.
#[test]
fn tso_frame_from_the_driver_reaches_the_backend_whole() {
    let b = GsoBackend::new();
    let mut h = device(&b, gso_features());
    let f = tcp4(MAC_B, MAC_A, 20_000);
    transmit(&mut h, 0, &gso_hdr(F, T4, 54, 1448, 34, 16), &f);
    let got = b.sent();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].data, f);
    assert_eq!(
        got[0].gso,
        Some(Gso {
            gso_type: T4,
            hdr_len: 54,
            gso_size: 1448
        })
    );
    assert_eq!(
        got[0].csum,
        Some(PartialCsum {
            start: 34,
            offset: 16
        })
    );
    // TCPv6 with ECN, USO, UFO.
    for t in [
        VIRTIO_NET_HDR_GSO_TCPV6 | VIRTIO_NET_HDR_GSO_ECN,
        VIRTIO_NET_HDR_GSO_UDP_L4,
        VIRTIO_NET_HDR_GSO_UDP,
    ] {
        transmit(&mut h, 0, &gso_hdr(F, t, 54, 1000, 34, 16), &f);
        assert_eq!(b.sent()[0].gso.unwrap().gso_type, t);
    }
    // The largest GSO frame.
    let max = tcp4(MAC_B, MAC_A, MAX_GSO_FRAME_LEN);
    transmit(&mut h, 0, &gso_hdr(F, T4, 54, 1448, 34, 16), &max);
    assert_eq!(b.sent()[0].data.len(), MAX_GSO_FRAME_LEN);
    let s = h.device().stats();
    assert_eq!((s.tx_packets, s.tx_gso, s.tx_malformed), (5, 5, 0));
    // A plain frame has no GSO and no hdr_len.
    transmit(
        &mut h,
        0,
        &gso_hdr(0, 0, 14, 0, 0, 0),
        &tcp4(MAC_B, MAC_A, 100),
    );
    assert_eq!(b.sent()[0].gso, None);
    assert_eq!(h.device().stats().tx_gso, 5);
}

/// §5.1.9.2.1/§5.1.9.2.2: GSO requests the driver could not make, or
/// whose fields do not fit the frame, are dropped and counted, never
/// passed on, never fatal.
#[test]
fn bad_gso_requests_are_dropped() {
    let b = GsoBackend::new();
    let f = tcp4(MAC_B, MAC_A, 20_000);
    // HOST_TSO4 and HOST_ECN not negotiated (the rest is).
    let fewer = without(
        gso_features(),
        &[VIRTIO_NET_F_HOST_TSO4, VIRTIO_NET_F_HOST_ECN],
    );
    let mut h = device(&b, fewer);
    let cases: Vec<[u8; 12]> = vec![
        gso_hdr(F, T4, 54, 1448, 34, 16), // TSO4 not negotiated
        gso_hdr(F, VIRTIO_NET_HDR_GSO_TCPV6 | 0x80, 54, 1448, 34, 16), // ECN not negotiated
        gso_hdr(0, VIRTIO_NET_HDR_GSO_TCPV6, 54, 1448, 34, 16), // no NEEDS_CSUM
        gso_hdr(F, VIRTIO_NET_HDR_GSO_TCPV6, 54, 0, 34, 16), // gso_size 0
        gso_hdr(F, VIRTIO_NET_HDR_GSO_TCPV6, 20_001, 1448, 34, 16), // hdr_len past the end
        gso_hdr(F, VIRTIO_NET_HDR_GSO_TCPV6, 54, 1448, 19_990, 16), // csum outside
        gso_hdr(F, VIRTIO_NET_HDR_GSO_TCPV6 | 0x20, 54, 1448, 34, 16), // UDP tunnel bit
        gso_hdr(F, 2, 54, 1448, 34, 16),  // unknown type
    ];
    for c in &cases {
        h.submit(1, &[c, &f], &[]).unwrap();
    }
    // A GSO frame one byte over the GSO bound, a plain frame over the
    // plain bound (it would fit the GSO one).
    let big = tcp4(MAC_B, MAC_A, MAX_GSO_FRAME_LEN + 1);
    h.submit(1, &[&gso_hdr(F, 4, 54, 1448, 34, 16), &big], &[])
        .unwrap();
    let plain = tcp4(MAC_B, MAC_A, MAX_FRAME_LEN + 1);
    h.submit(1, &[&gso_hdr(0, 0, 0, 0, 0, 0), &plain], &[])
        .unwrap();
    h.run().unwrap();
    assert_eq!(h.completed(1).unwrap().len(), cases.len() + 2);
    assert!(b.sent().is_empty(), "nothing reached the backend");
    let s = h.device().stats();
    assert_eq!((s.tx_malformed, s.tx_packets), (cases.len() as u64 + 2, 0));
    // The queue still works: TSO6 was negotiated.
    transmit(&mut h, 0, &gso_hdr(F, 4, 54, 1448, 34, 16), &f);
    assert_eq!(b.sent().len(), 1);
    assert!(h.broken_queues().is_empty());
}

/// §5.1.9.4.1: a GSO frame from the backend reaches a driver that
/// negotiated GUEST_TSO4 whole, with NEEDS_CSUM and its GSO fields,
/// spread over merged buffers; the backend was told what the driver
/// accepts, and nothing after a reset.
#[test]
fn gso_frame_reaches_a_driver_with_guest_tso() {
    let b = GsoBackend::new();
    let mut h = device(&b, gso_features());
    assert_eq!(b.last_guest(), Some(ALL));
    post_rx(&mut h, 0, 64, 4096);
    let p = gso_packet(30_000, T4);
    b.push(p.clone());
    let got = received(&mut h, 0);
    assert_eq!(got.len(), 1);
    let r = &got[0];
    assert_eq!(r.data, p.data);
    assert_eq!(r.flags(), VIRTIO_NET_HDR_F_NEEDS_CSUM);
    assert_eq!(r.csum(), (34, 16));
    let hd = NetHdr::new_checked(&r.hdr[..]).unwrap();
    assert_eq!((hd.gso_type(), hd.hdr_len(), hd.gso_size()), (T4, 54, 1448));
    assert!(r.buffers > 1, "merged buffers");
    let s = h.device().stats();
    assert_eq!((s.rx_packets, s.rx_gso, s.rx_offload_refused), (1, 1, 0));
    // The largest GSO frame is delivered; one byte more is not.
    b.push(gso_packet(MAX_GSO_FRAME_LEN, T4));
    b.push(gso_packet(MAX_GSO_FRAME_LEN + 1, T4));
    let got = received(&mut h, 0);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].data.len(), MAX_GSO_FRAME_LEN);
    assert_eq!(h.device().stats().rx_oversized, 1);
    h.device().reset();
    assert_eq!(b.last_guest(), Some(Offloads::NONE));
}

/// §5.1.9.4.1: no GSO type the driver did not negotiate, no GSO without
/// NEEDS_CSUM, no ECN without GUEST_ECN: such frames are dropped and
/// counted (the device does not segment); plain frames still flow.
#[test]
fn gso_frames_a_driver_cannot_take_are_dropped() {
    let b = GsoBackend::new();
    let features = without(
        gso_features(),
        &[VIRTIO_NET_F_GUEST_TSO4, VIRTIO_NET_F_GUEST_ECN],
    );
    let mut h = device(&b, features);
    let told = b.last_guest().unwrap();
    assert!(!told.tso4 && !told.ecn && told.tso6 && told.csum);
    post_rx(&mut h, 0, 64, 4096);
    b.push(gso_packet(30_000, T4)); // GUEST_TSO4 not negotiated
    b.push(gso_packet(
        30_000,
        VIRTIO_NET_HDR_GSO_TCPV6 | VIRTIO_NET_HDR_GSO_ECN,
    ));
    let mut no_csum = gso_packet(30_000, VIRTIO_NET_HDR_GSO_TCPV6);
    no_csum.csum = None;
    b.push(no_csum);
    let mut tunnel = gso_packet(30_000, VIRTIO_NET_HDR_GSO_TCPV6 | 0x40);
    tunnel.gso.as_mut().unwrap().gso_size = 1000;
    b.push(tunnel);
    let mut zero = gso_packet(30_000, VIRTIO_NET_HDR_GSO_TCPV6);
    zero.gso.as_mut().unwrap().gso_size = 0;
    b.push(zero);
    b.push(gso_packet(30_000, VIRTIO_NET_HDR_GSO_TCPV6)); // fine
    b.push(Packet::new(frame(MAC_A, MAC_B, 1000, 3))); // fine
    let got = received(&mut h, 0);
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].hdr[1], VIRTIO_NET_HDR_GSO_TCPV6);
    assert_eq!(got[1].hdr[1], VIRTIO_NET_HDR_GSO_NONE);
    let s = h.device().stats();
    assert_eq!((s.rx_offload_refused, s.rx_gso, s.rx_packets), (5, 1, 2));

    // A driver without GUEST_CSUM takes no GSO at all and is told so.
    let b2 = GsoBackend::new();
    let mut h2 = device(&b2, without(gso_features(), &[VIRTIO_NET_F_GUEST_CSUM]));
    assert_eq!(b2.last_guest(), Some(Offloads::NONE));
    post_rx(&mut h2, 0, 64, 4096);
    b2.push(gso_packet(30_000, T4));
    assert!(received(&mut h2, 0).is_empty());
    assert_eq!(h2.device().stats().rx_offload_refused, 1);
}
