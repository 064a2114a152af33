//! Shared pieces of the network device tests: devices on a switch under
//! the in-process fake driver, frames, headers, receiving and control
//! commands.
#![allow(dead_code)]

use std::sync::Arc;

use ringwork_device::harness::Harness;
use ringwork_device::net::{
    net_ring_features, offered_net_features, MacAddr, Net, NetOptions, Switch,
};
use ringwork_spec::features::VIRTIO_F_RING_PACKED;
use ringwork_spec::net::*;

pub const MAC_A: MacAddr = MacAddr([0x52, 0x54, 0, 0, 0, 0x0a]);
pub const MAC_B: MacAddr = MacAddr([0x52, 0x54, 0, 0, 0, 0x0b]);
pub const MAC_C: MacAddr = MacAddr([0x52, 0x54, 0, 0, 0, 0x0c]);

/// Every feature the device offers (IN_ORDER included), split ring.
pub fn all_features(pairs: u16) -> u64 {
    (net_ring_features() & !(1 << VIRTIO_F_RING_PACKED)) | offered_net_features(pairs)
}

/// `features` without `bits`.
pub fn without(features: u64, bits: &[u32]) -> u64 {
    bits.iter().fold(features, |f, b| f & !(1u64 << b))
}

/// A device with address `mac` and `pairs` queue pairs on `sw`, driven by
/// a fake driver that negotiated `features`.
pub fn port(sw: &Switch, mac: MacAddr, pairs: u16, features: u64) -> Harness<Net> {
    let net = Net::new(
        NetOptions {
            queue_pairs: pairs,
            ..NetOptions::new(mac)
        },
        Arc::new(sw.add_port(pairs).unwrap()),
    )
    .unwrap();
    Harness::with_features(net, features, 256).unwrap()
}

/// The controlq index for a device with `pairs` pairs and `features`.
pub fn ctrl_queue(pairs: u16, features: u64) -> u16 {
    let mq = features >> VIRTIO_NET_F_MQ & 1 == 1;
    controlq_index(queue_pairs(mq, pairs)) as u16
}

/// An Ethernet frame `dst` ← `src`, EtherType 0x88b5 (local
/// experimental), `len` bytes in all, payload a pattern from `seed`.
pub fn frame(dst: MacAddr, src: MacAddr, len: usize, seed: u8) -> Vec<u8> {
    let mut f = Vec::with_capacity(len);
    f.extend_from_slice(&dst.0);
    f.extend_from_slice(&src.0);
    f.extend_from_slice(&[0x88, 0xb5]);
    let mut x = seed;
    while f.len() < len {
        x = x.wrapping_mul(31).wrapping_add(7);
        f.push(x);
    }
    f.truncate(len);
    f
}

/// An IPv4/UDP frame with the pseudo-header checksum in place (as a
/// driver sending with NEEDS_CSUM leaves it), `payload` bytes of payload,
/// ports `sport` → `dport`.
pub fn udp_partial(dst: MacAddr, src: MacAddr, payload: &[u8], sport: u16, dport: u16) -> Vec<u8> {
    let udp_len = 8 + payload.len();
    let mut f = vec![0u8; 14 + 20 + udp_len];
    f[..6].copy_from_slice(&dst.0);
    f[6..12].copy_from_slice(&src.0);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    f[14] = 0x45;
    f[16..18].copy_from_slice(&((20 + udp_len) as u16).to_be_bytes());
    f[22] = 64;
    f[23] = 17;
    f[26..30].copy_from_slice(&[10, 0, 0, 1]);
    f[30..34].copy_from_slice(&[10, 0, 0, 2]);
    f[34..36].copy_from_slice(&sport.to_be_bytes());
    f[36..38].copy_from_slice(&dport.to_be_bytes());
    f[38..40].copy_from_slice(&(udp_len as u16).to_be_bytes());
    f[42..].copy_from_slice(payload);
    let ip = !ringwork_device::net::ones_complement_sum(&f[14..34]);
    f[24..26].copy_from_slice(&ip.to_be_bytes());
    let pseudo = pseudo_sum(&f);
    f[40..42].copy_from_slice(&pseudo.to_be_bytes());
    f
}

/// The UDP pseudo-header sum (folded, not inverted) of an IPv4/UDP frame.
pub fn pseudo_sum(f: &[u8]) -> u16 {
    let mut ph = Vec::new();
    ph.extend_from_slice(&f[26..34]);
    ph.extend_from_slice(&[0, 17]);
    ph.extend_from_slice(&f[38..40]);
    ringwork_device::net::ones_complement_sum(&ph)
}

/// Whether the UDP checksum of an IPv4/UDP frame verifies.
pub fn udp_checksum_ok(f: &[u8]) -> bool {
    let mut all = Vec::new();
    all.extend_from_slice(&f[26..34]);
    all.extend_from_slice(&[0, 17]);
    all.extend_from_slice(&f[38..40]);
    all.extend_from_slice(&f[34..]);
    ringwork_device::net::ones_complement_sum(&all) == 0xffff
}

/// A 12-byte virtio_net_hdr.
pub fn hdr(flags: u8, gso_type: u8, csum_start: u16, csum_offset: u16) -> [u8; 12] {
    let mut b = [0u8; 12];
    let mut h = NetHdr::new_checked(&mut b[..]).unwrap();
    h.set_flags(flags);
    h.set_gso_type(gso_type);
    h.set_csum_start(csum_start);
    h.set_csum_offset(csum_offset);
    b
}

/// Puts a frame on transmitq(`pair` + 1) and runs the device.
pub fn transmit(h: &mut Harness<Net>, pair: u16, header: &[u8], frame: &[u8]) {
    h.submit(2 * pair + 1, &[header, frame], &[]).unwrap();
    h.run().unwrap();
}

/// Adds `n` receive buffers of `size` bytes to receiveq(`pair` + 1).
pub fn post_rx(h: &mut Harness<Net>, pair: u16, n: usize, size: u32) {
    for _ in 0..n {
        h.submit(2 * pair, &[], &[size]).unwrap();
    }
}

/// One received packet: the header and the frame, and how many buffers.
#[derive(Debug, Clone)]
pub struct Rx {
    pub hdr: [u8; 12],
    pub data: Vec<u8>,
    pub buffers: usize,
}

impl Rx {
    pub fn flags(&self) -> u8 {
        self.hdr[0]
    }
    pub fn num_buffers(&self) -> u16 {
        u16::from_le_bytes([self.hdr[10], self.hdr[11]])
    }
    pub fn csum(&self) -> (u16, u16) {
        let h = NetHdr::new_checked(&self.hdr[..]).unwrap();
        (h.csum_start(), h.csum_offset())
    }
}

/// Runs the device and collects what receiveq(`pair` + 1) completed,
/// reassembling merged buffers by `num_buffers`. Used length 0 buffers
/// are returned as packets with no data.
pub fn received(h: &mut Harness<Net>, pair: u16) -> Vec<Rx> {
    h.run().unwrap();
    let done = h.completed(2 * pair).unwrap();
    let mut out = Vec::new();
    let mut it = done.into_iter();
    while let Some((_, first)) = it.next() {
        if first.len() < 12 {
            out.push(Rx {
                hdr: [0; 12],
                data: first,
                buffers: 1,
            });
            continue;
        }
        let mut hdr = [0u8; 12];
        hdr.copy_from_slice(&first[..12]);
        let mut rx = Rx {
            hdr,
            data: first[12..].to_vec(),
            buffers: 1,
        };
        for _ in 1..rx.num_buffers() {
            let (_, more) = it.next().expect("fewer used buffers than num_buffers");
            rx.data.extend_from_slice(&more);
            rx.buffers += 1;
        }
        out.push(rx);
    }
    out
}

/// Sends a control command and returns the ack byte (`None` when the
/// device wrote nothing).
pub fn ctrl(h: &mut Harness<Net>, queue: u16, class: u8, command: u8, data: &[u8]) -> Option<u8> {
    let head = [class, command];
    let out: Vec<&[u8]> = if data.is_empty() {
        vec![&head]
    } else {
        vec![&head, data]
    };
    h.submit(queue, &out, &[1]).unwrap();
    h.run().unwrap();
    let done = h.completed(queue).unwrap();
    assert_eq!(done.len(), 1, "one command, one used buffer");
    done[0].1.first().copied()
}
