//! A network device session for the checks, on a [`Raw`] session (VIRTIO
//! 1.4 §5.1): negotiation, the configuration read, receive/transmit queue
//! pairs and the controlq (§5.1.2), receive buffers posted (§5.1.9.3),
//! frames sent with a `virtio_net_hdr` (§5.1.9.2) and received frames
//! gathered over `num_buffers` buffers (§5.1.9.4), control commands
//! (§5.1.9.5); plus the test frames (plain, broadcast, UDP with a partial
//! checksum) and the Internet checksum.
//!
//! Trust and panic contract: everything the device returns (used lengths,
//! `num_buffers`, configuration bytes) is bounded before use; received
//! bytes are copied out of shared memory. Every wait is bounded.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use ringwork_driver::RingPreference;
use ringwork_spec::features::{
    FeatureSet, VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC, VIRTIO_F_IN_ORDER,
    VIRTIO_F_RING_PACKED, VIRTIO_F_VERSION_1,
};
use ringwork_spec::net::ctrl::VIRTIO_NET_CTRL_MQ;
use ringwork_spec::net::{
    net_hdr_len, NetConfig, NET_CONFIG_SIZE, NET_FEATURE_RULES, VIRTIO_NET_F_CSUM,
    VIRTIO_NET_F_CTRL_MAC_ADDR, VIRTIO_NET_F_CTRL_RX, VIRTIO_NET_F_CTRL_RX_EXTRA,
    VIRTIO_NET_F_CTRL_VLAN, VIRTIO_NET_F_CTRL_VQ, VIRTIO_NET_F_GUEST_ANNOUNCE,
    VIRTIO_NET_F_GUEST_CSUM, VIRTIO_NET_F_MAC, VIRTIO_NET_F_MQ, VIRTIO_NET_F_MRG_RXBUF,
    VIRTIO_NET_F_MTU, VIRTIO_NET_F_SPEED_DUPLEX, VIRTIO_NET_F_STATUS,
};
use ringwork_transport::driver::{Transport, TransportError};
use ringwork_vhost_user::msg::protocol;
use ringwork_vhost_user::VhostUserTransport;

use super::common::{pattern, Ctx};
use super::raw::Raw;

/// Queue pairs a session sets up at most.
pub(crate) const MAX_PAIRS: u16 = 4;
/// Bytes per receive buffer (a 1514-byte frame and its header fit).
pub(crate) const RX_BUF: usize = 2048;
/// Receive buffers per receive queue.
const RX_BUFS: u16 = 16;
/// Entries per queue asked for.
const QUEUE_SIZE: u16 = 64;
/// The EtherType of the plain test frames (IEEE local experimental).
pub(crate) const ETHERTYPE: u16 = 0x88b5;
/// Offset of the UDP checksum in the test UDP frame.
pub(crate) const UDP_CSUM_AT: usize = 14 + 20 + 6;

/// Every feature the checks know how to drive.
pub(crate) fn all_features() -> FeatureSet {
    FeatureSet::from_bits(&[
        VIRTIO_F_VERSION_1,
        VIRTIO_F_EVENT_IDX,
        VIRTIO_F_INDIRECT_DESC,
        VIRTIO_F_IN_ORDER,
        VIRTIO_F_RING_PACKED,
        VIRTIO_NET_F_CSUM,
        VIRTIO_NET_F_GUEST_CSUM,
        VIRTIO_NET_F_MTU,
        VIRTIO_NET_F_MAC,
        VIRTIO_NET_F_MRG_RXBUF,
        VIRTIO_NET_F_STATUS,
        VIRTIO_NET_F_CTRL_VQ,
        VIRTIO_NET_F_CTRL_RX,
        VIRTIO_NET_F_CTRL_VLAN,
        VIRTIO_NET_F_CTRL_RX_EXTRA,
        VIRTIO_NET_F_GUEST_ANNOUNCE,
        VIRTIO_NET_F_MQ,
        VIRTIO_NET_F_CTRL_MAC_ADDR,
        VIRTIO_NET_F_SPEED_DUPLEX,
    ])
}

/// The configuration fields, as read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Cfg {
    pub mac: [u8; 6],
    pub status: u16,
    pub max_pairs: u16,
    pub mtu: u16,
    pub speed: u32,
    pub duplex: u8,
}

/// Parses the configuration bytes (zeros beyond what the device has).
pub(crate) fn parse_config(b: &[u8]) -> Cfg {
    let mut bytes = [0u8; NET_CONFIG_SIZE];
    let n = b.len().min(NET_CONFIG_SIZE);
    bytes[..n].copy_from_slice(&b[..n]);
    let c = NetConfig::new_unchecked(&bytes[..]);
    Cfg {
        mac: c.mac(),
        status: c.status(),
        max_pairs: c.max_virtqueue_pairs(),
        mtu: c.mtu(),
        speed: c.speed(),
        duplex: c.duplex(),
    }
}

/// A received frame.
#[derive(Debug, Clone)]
pub(crate) struct Rx {
    /// The receive queue pair (0-based).
    pub pair: u16,
    /// The header bytes.
    pub hdr: Vec<u8>,
    /// The frame.
    pub frame: Vec<u8>,
    /// Buffers used, in order, with their used lengths.
    pub lens: Vec<u32>,
}

impl Rx {
    /// `flags`.
    pub fn flags(&self) -> u8 {
        self.hdr.first().copied().unwrap_or(0)
    }
    /// `gso_type`.
    pub fn gso_type(&self) -> u8 {
        self.hdr.get(1).copied().unwrap_or(0)
    }
    fn le16(&self, at: usize) -> u16 {
        self.hdr
            .get(at..at + 2)
            .map_or(0, |b| u16::from_le_bytes([b[0], b[1]]))
    }
    /// `csum_start`.
    pub fn csum_start(&self) -> u16 {
        self.le16(6)
    }
    /// `csum_offset`.
    pub fn csum_offset(&self) -> u16 {
        self.le16(8)
    }
    /// `num_buffers`.
    pub fn num_buffers(&self) -> u16 {
        self.le16(10)
    }
}

/// A network device session.
pub(crate) struct Net {
    /// The raw session.
    pub raw: Raw,
    /// The configuration read at setup.
    pub cfg: Cfg,
    /// Queue pairs set up.
    pub pairs: u16,
    /// The controlq index, when negotiated.
    pub ctrl: Option<u16>,
    /// Header bytes for the negotiated features.
    pub hdr_len: usize,
    /// The address frames are sent from.
    pub mac: [u8; 6],
    /// Receive buffer offsets and sizes, by token.
    rx_bufs: BTreeMap<u64, (usize, usize)>,
    next: u64,
}

/// Connects: the context's session, or with `quick_connect` a shorter
/// handshake timeout (for a second connection the backend may never
/// accept).
pub(crate) fn connect(ctx: &Ctx, quick_connect: bool) -> anyhow::Result<VhostUserTransport> {
    if !quick_connect {
        return ctx.connect();
    }
    let mut o = ctx.transport_options();
    o.timeout = o.timeout.min(Duration::from_secs(3));
    VhostUserTransport::connect(&ctx.opts.socket_path, o)
        .map_err(|e| anyhow::anyhow!("connecting to {}: {e}", ctx.opts.socket_path.display()))
}

impl Net {
    /// Initializes the device on `t` (§5.1.5): the offered features of
    /// `supports`, up to [`MAX_PAIRS`] queue pairs (with MQ), the controlq
    /// (with CTRL_VQ), `rx_buf`-byte receive buffers, DRIVER_OK.
    pub fn open(
        t: VhostUserTransport,
        supports: FeatureSet,
        ring: RingPreference,
        rx_buf: usize,
        seq: u8,
    ) -> anyhow::Result<Self> {
        let mut raw = Raw::negotiate(t, supports, NET_FEATURE_RULES, ring)?;
        let f = raw.features;
        let cfg = if raw.t.has_protocol(protocol::CONFIG) {
            let mut b = [0u8; NET_CONFIG_SIZE];
            raw.t.read_config(0, &mut b);
            parse_config(&b)
        } else {
            Cfg::default()
        };
        let n = if f.contains(VIRTIO_NET_F_MQ) {
            cfg.max_pairs
        } else {
            1
        };
        if n == 0 {
            anyhow::bail!("max_virtqueue_pairs is 0");
        }
        let pairs = n.min(MAX_PAIRS);
        let ctrl = f
            .contains(VIRTIO_NET_F_CTRL_VQ)
            .then(|| u16::try_from(2 * u32::from(n)))
            .transpose()
            .map_err(|_| anyhow::anyhow!("controlq index {} is beyond 65535", 2 * u32::from(n)))?;
        for p in 0..pairs {
            raw.add_queue(2 * p, QUEUE_SIZE)
                .with_context(|| format!("receiveq{}", p + 1))?;
            raw.add_queue(2 * p + 1, QUEUE_SIZE)
                .with_context(|| format!("transmitq{}", p + 1))?;
        }
        if let Some(c) = ctrl {
            raw.add_queue(c, 16).context("controlq")?;
        }
        raw.driver_ok();
        let hdr_len = net_hdr_len(|b| f.contains(b));
        let mac = if f.contains(VIRTIO_NET_F_MAC) {
            cfg.mac
        } else {
            [0x02, 0x72, 0x77, 0x63, 0x6b, seq]
        };
        let mut s = Self {
            raw,
            cfg,
            pairs,
            ctrl,
            hdr_len,
            mac,
            rx_bufs: BTreeMap::new(),
            next: 1,
        };
        for p in 0..pairs {
            for _ in 0..RX_BUFS {
                let off = s.raw.alloc(rx_buf)?;
                let tok = s.next;
                s.next += 1;
                s.rx_bufs.insert(tok, (off, rx_buf));
                let seg = s.raw.seg(off, rx_buf);
                s.raw.add(2 * p, &[], &[seg], tok)?;
            }
            s.raw.kick(2 * p)?;
        }
        Ok(s)
    }

    /// Whether feature `bit` was negotiated.
    pub fn has(&self, bit: u32) -> bool {
        self.raw.features.contains(bit)
    }

    /// A header: `flags`, `gso_type`, `csum_start`, `csum_offset` (the
    /// rest 0), `hdr_len` bytes.
    pub fn header(&self, flags: u8, gso_type: u8, csum_start: u16, csum_offset: u16) -> Vec<u8> {
        let mut h = vec![0u8; self.hdr_len];
        h[0] = flags;
        h[1] = gso_type;
        h[6..8].copy_from_slice(&csum_start.to_le_bytes());
        h[8..10].copy_from_slice(&csum_offset.to_le_bytes());
        h
    }

    /// Sends `parts` (device-readable segments, in order) on transmitq of
    /// `pair`; returns whether the device used the chain within `within`.
    pub fn tx_raw(&mut self, pair: u16, parts: &[&[u8]], within: Duration) -> anyhow::Result<bool> {
        let mut segs = Vec::new();
        for p in parts {
            segs.push(self.raw.buffer(p)?.0);
        }
        let tok = self.next;
        self.next += 1;
        self.raw.send(2 * pair + 1, &segs, &[], tok)?;
        Ok(self.raw.wait_token(2 * pair + 1, tok, within)?.is_some())
    }

    /// Sends `frame` with a plain header (no offload) on `pair`, header and
    /// frame in one buffer; fails unless it is used in time.
    pub fn tx(&mut self, pair: u16, frame: &[u8], within: Duration) -> anyhow::Result<()> {
        let mut b = self.header(0, 0, 0, 0);
        b.extend_from_slice(frame);
        if !self.tx_raw(pair, &[&b], within)? {
            anyhow::bail!(
                "transmitq{}: a {}-byte frame was not used within {within:?}",
                pair + 1,
                frame.len()
            );
        }
        Ok(())
    }

    /// The next frame received on any receive queue within `within`, its
    /// buffers made available again.
    pub fn rx(&mut self, within: Duration) -> anyhow::Result<Option<Rx>> {
        let deadline = Instant::now() + within;
        loop {
            for p in 0..self.pairs {
                if let Some(u) = self.raw.poll(2 * p)? {
                    return self.gather(p, u.token, u.len, deadline).map(Some);
                }
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            self.raw.t.ack_interrupt();
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Frames received within `within` (until the device is quiet).
    pub fn rx_all(&mut self, within: Duration) -> anyhow::Result<Vec<Rx>> {
        let mut v = Vec::new();
        while let Some(r) = self.rx(within)? {
            v.push(r);
        }
        Ok(v)
    }

    /// Reads one used receive buffer and, with MRG_RXBUF, the
    /// `num_buffers - 1` that follow on the same queue; reposts them.
    fn gather(&mut self, pair: u16, token: u64, len: u32, deadline: Instant) -> anyhow::Result<Rx> {
        let q = 2 * pair;
        let mut bytes = self.take(q, token, len)?;
        let mut lens = vec![len];
        if bytes.len() < self.hdr_len {
            anyhow::bail!(
                "receiveq{}: used length {len} is shorter than the {}-byte header",
                pair + 1,
                self.hdr_len
            );
        }
        let n = if self.has(VIRTIO_NET_F_MRG_RXBUF) {
            u16::from_le_bytes([bytes[10], bytes[11]])
        } else {
            1
        };
        if n == 0 || n > RX_BUFS {
            anyhow::bail!("receiveq{}: num_buffers is {n}", pair + 1);
        }
        for i in 1..n {
            let left = deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(500));
            let Some(u) = self.raw.wait(q, left)? else {
                anyhow::bail!(
                    "receiveq{}: num_buffers {n}, but buffer {} never came",
                    pair + 1,
                    i + 1
                );
            };
            bytes.extend(self.take(q, u.token, u.len)?);
            lens.push(u.len);
        }
        self.raw.kick(q)?;
        let frame = bytes.split_off(self.hdr_len);
        Ok(Rx {
            pair,
            hdr: bytes,
            frame,
            lens,
        })
    }

    /// The `len` bytes of receive buffer `token`, which is made available
    /// again (cleared).
    fn take(&mut self, q: u16, token: u64, len: u32) -> anyhow::Result<Vec<u8>> {
        let Some(&(off, size)) = self.rx_bufs.get(&token) else {
            anyhow::bail!("receive queue {q}: used a buffer with unknown token {token}");
        };
        let data = self.raw.get(off, (len as usize).min(size))?;
        self.raw.put(off, &vec![0u8; size])?;
        let seg = self.raw.seg(off, size);
        self.raw.add(q, &[], &[seg], token)?;
        Ok(data)
    }

    /// A control command: `class`, `cmd` and `data` in separate
    /// device-readable buffers, then the 1-byte ack (preset to 0xff).
    /// Returns the ack, or `None` if the command was not used in time.
    pub fn ctrl(
        &mut self,
        class: u8,
        cmd: u8,
        data: &[u8],
        within: Duration,
    ) -> anyhow::Result<Option<u8>> {
        let mut parts: Vec<Vec<u8>> = vec![vec![class, cmd]];
        if !data.is_empty() {
            parts.push(data.to_vec());
        }
        self.ctrl_raw(&parts, 1, within)
    }

    /// A control chain of `parts` (device-readable) and `ack_len`
    /// device-writable bytes preset to 0xff: the first byte written, or
    /// 0xff when the device wrote none; `None` if not used in time.
    pub fn ctrl_raw(
        &mut self,
        parts: &[Vec<u8>],
        ack_len: usize,
        within: Duration,
    ) -> anyhow::Result<Option<u8>> {
        let Some(q) = self.ctrl else {
            anyhow::bail!("no controlq");
        };
        let mut out = Vec::new();
        for p in parts {
            out.push(self.raw.buffer(p)?.0);
        }
        let (ack, off) = self.raw.buffer(&vec![0xff; ack_len])?;
        let inp: &[_] = if ack_len == 0 { &[] } else { &[ack] };
        let tok = self.next;
        self.next += 1;
        self.raw.send(q, &out, inp, tok)?;
        let Some(len) = self.raw.wait_token(q, tok, within)? else {
            return Ok(None);
        };
        if len == 0 || ack_len == 0 {
            return Ok(Some(0xff));
        }
        Ok(self.raw.get(off, 1)?.first().copied())
    }

    /// VQ_PAIRS_SET with every pair set up (with MQ and CTRL_VQ); the ack.
    pub fn enable_pairs(&mut self, within: Duration) -> anyhow::Result<Option<u8>> {
        let n = self.pairs.to_le_bytes();
        self.ctrl(VIRTIO_NET_CTRL_MQ, 0, &n, within)
    }

    /// Ends the session (observe, reset).
    pub fn finish(
        self,
        ctx: &mut Ctx,
        when: &str,
    ) -> (VhostUserTransport, Result<(), TransportError>) {
        self.raw.finish(ctx, when)
    }
}

/// A plain frame of `len` bytes (at least 60) from `src` to `dst`,
/// carrying `tag` and a pattern.
pub(crate) fn frame(dst: [u8; 6], src: [u8; 6], tag: u64, len: usize) -> Vec<u8> {
    let mut f = Vec::with_capacity(len.max(60));
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ETHERTYPE.to_be_bytes());
    f.extend_from_slice(b"ringwork check ");
    f.extend_from_slice(&tag.to_be_bytes());
    let rest = len.max(60).saturating_sub(f.len());
    f.extend(pattern(tag, rest));
    f
}

/// The Internet checksum sum of `data` added to `sum` (not folded).
fn sum16(mut sum: u32, data: &[u8]) -> u32 {
    for c in data.chunks(2) {
        let w = u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)]);
        sum += u32::from(w);
    }
    sum
}

fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// The UDP pseudo-header sum of an IPv4 frame (bytes 26..34 are the
/// addresses).
fn pseudo(f: &[u8], udp_len: usize) -> u32 {
    sum16(17 + udp_len as u32, f.get(26..34).unwrap_or(&[]))
}

/// An IPv4/UDP frame with `payload` bytes of pattern and, as a driver
/// with checksum offload leaves it, the pseudo-header sum in the UDP
/// checksum field (`csum_start` 34, `csum_offset` 6).
pub(crate) fn udp_partial(dst: [u8; 6], src: [u8; 6], tag: u64, payload: usize) -> Vec<u8> {
    let udp_len = 8 + payload;
    let mut f = Vec::with_capacity(34 + udp_len);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&0x0800u16.to_be_bytes());
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&((20 + udp_len) as u16).to_be_bytes());
    ip[4..6].copy_from_slice(&0x1234u16.to_be_bytes());
    ip[6] = 0x40;
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&[10, 0, 0, 1]);
    ip[16..20].copy_from_slice(&[10, 0, 0, 2]);
    let c = !fold(sum16(0, &ip));
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&40000u16.to_be_bytes());
    f.extend_from_slice(&9u16.to_be_bytes());
    f.extend_from_slice(&(udp_len as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend(pattern(tag, payload));
    let p = fold(pseudo(&f, udp_len));
    f[UDP_CSUM_AT..UDP_CSUM_AT + 2].copy_from_slice(&p.to_be_bytes());
    f
}

/// Whether the UDP checksum of an IPv4/UDP frame verifies.
pub(crate) fn udp_checksum_ok(f: &[u8]) -> bool {
    let Some(udp) = f.get(34..) else {
        return false;
    };
    fold(sum16(pseudo(f, udp.len()), udp)) == 0xffff
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_completed_partial_checksum_verifies() {
        let mut f = udp_partial([2; 6], [4; 6], 7, 101);
        assert!(!udp_checksum_ok(&f));
        // Complete it the way a device does: fold from csum_start, store
        // the complement at csum_start + csum_offset.
        let c = !fold(sum16(0, &f[34..]));
        f[UDP_CSUM_AT..UDP_CSUM_AT + 2].copy_from_slice(&c.to_be_bytes());
        assert!(udp_checksum_ok(&f));
        f[50] ^= 1;
        assert!(!udp_checksum_ok(&f));
        assert_eq!(frame([1; 6], [2; 6], 3, 10).len(), 60);
    }
}
