//! A fake virtio-net device: records the receive buffers it holds at
//! DRIVER_OK, every transmitted header and frame, every control command;
//! delivers frames into the driver's receive buffers (spread over several
//! with MRG_RXBUF), and can lie: a hostile `num_buffers`, first used
//! length, used id, or control `ack`.

use std::collections::VecDeque;

use ringwork_queue::test_utils::TestMemory;
use ringwork_queue::{DescChain, UsedToken};
use ringwork_spec::device_id::{DeviceType, VIRTIO_ID_NET};
use ringwork_spec::features::{
    FeatureSet, VIRTIO_F_ADMIN_VQ, VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC, VIRTIO_F_RING_PACKED,
};
use ringwork_spec::net::ctrl::*;
use ringwork_spec::net::*;
use ringwork_spec::ring::notify::NotificationData;
use ringwork_transport::{Activation, DeviceError, Signals, VirtioDevice};

use ringwork_driver::net::{NetBuf, NetDriver, NetOptions, NET_DRIVER_FEATURES};
use ringwork_driver::RingPreference;

use super::{pattern, read_all, with_dev, Block, Mmio, Queues};

/// The driver on a [`NetDev`].
pub type Drv<'b, 'm> = NetDriver<Mmio<'b, NetDev<'m>>, &'m TestMemory>;

/// Both ring formats.
pub const RINGS: [RingPreference; 2] = [RingPreference::Split, RingPreference::Packed];

/// The fake's default `mac`.
pub const DST: [u8; 6] = [0x52, 0x54, 0, 0xab, 0xcd, 0xef];

/// Driver options for the tests: queues of 32 entries.
pub fn opts(ring: RingPreference) -> NetOptions {
    NetOptions {
        ring,
        queue_size: 32,
        ..NetOptions::default()
    }
}

/// Driver options with 256-byte mergeable receive buffers, so a frame of
/// a few hundred bytes spans several.
pub fn small_buffers(ring: RingPreference) -> NetOptions {
    NetOptions {
        rx_buffer_len: 256,
        ..opts(ring)
    }
}

/// Receive buffers `len`-byte frames take with `buf_len`-byte buffers
/// (behind the 12-byte header).
pub fn buffers_for(len: usize, buf_len: usize) -> usize {
    (12 + len).div_ceil(buf_len)
}

/// Receives every whole frame of `pair` in place.
pub fn recv_all(d: &mut Drv<'_, '_>, pair: u16) -> Vec<NetBuf> {
    let mut v = Vec::new();
    let n = d.recv_bufs(pair, usize::MAX, &mut v).unwrap();
    assert_eq!(n, v.len());
    v
}

/// A held frame's bytes, through `read_buf`.
pub fn bytes(d: &Drv<'_, '_>, b: &NetBuf) -> Vec<u8> {
    let mut v = vec![0u8; b.len()];
    d.read_buf(b, 0, &mut v).unwrap();
    v
}

/// Delivers `f` on `pair` with a plain header; returns the buffers used.
pub fn deliver(b: &Block<NetDev<'_>>, pair: u16, f: &[u8]) -> usize {
    with_dev(b, |dev| dev.deliver(pair, f, RxHdr::default(), None)).expect("device held buffers")
}

/// An IPv4-typed Ethernet frame to `dst` of `len` bytes.
pub fn frame(dst: [u8; 6], len: usize, seed: u8) -> Vec<u8> {
    let mut f = pattern(len, seed);
    f[..6].copy_from_slice(&dst);
    f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 9]);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    f
}

/// A transmitted frame as the device received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// Queue pair (0-based).
    pub pair: u16,
    /// The header bytes.
    pub hdr: Vec<u8>,
    /// The frame.
    pub frame: Vec<u8>,
    /// Descriptors (readable, writable) bytes.
    pub lens: (u32, u32),
}

/// A control command: class, command, data.
pub type Ctrl = (u8, u8, Vec<u8>);

/// A header for [`NetDev::deliver`].
#[derive(Debug, Clone, Copy, Default)]
pub struct RxHdr {
    /// `flags`.
    pub flags: u8,
    /// `gso_type`.
    pub gso_type: u8,
    /// `hdr_len`.
    pub hdr_len: u16,
    /// `csum_start`.
    pub csum_start: u16,
    /// `csum_offset`.
    pub csum_offset: u16,
    /// Write this `num_buffers` instead of the real count.
    pub num_buffers: Option<u16>,
}

/// Features the fake offers that the driver never accepts (every
/// segmentation offload, hashing, RSS, coalescing, statistics, IPsec,
/// guest offload control, the admin virtqueue).
pub fn never_accepted() -> FeatureSet {
    FeatureSet::from_bits(&[
        VIRTIO_NET_F_GUEST_TSO4,
        VIRTIO_NET_F_GUEST_TSO6,
        VIRTIO_NET_F_GUEST_UFO,
        VIRTIO_NET_F_GUEST_USO4,
        VIRTIO_NET_F_GUEST_USO6,
        VIRTIO_NET_F_HOST_TSO4,
        VIRTIO_NET_F_HOST_TSO6,
        VIRTIO_NET_F_HOST_UFO,
        VIRTIO_NET_F_HOST_USO,
        VIRTIO_NET_F_HOST_ECN,
        VIRTIO_NET_F_HOST_UDP_TUNNEL_GSO,
        VIRTIO_NET_F_HOST_UDP_TUNNEL_GSO_CSUM,
        VIRTIO_NET_F_GUEST_HDRLEN,
        VIRTIO_NET_F_OUT_NET_HEADER,
        VIRTIO_NET_F_IPSEC,
        VIRTIO_NET_F_HASH_REPORT,
        VIRTIO_NET_F_HASH_TUNNEL,
        VIRTIO_NET_F_RSS,
        VIRTIO_NET_F_RSS_CONTEXT,
        VIRTIO_NET_F_RSC_EXT,
        VIRTIO_NET_F_NOTF_COAL,
        VIRTIO_NET_F_VQ_NOTF_COAL,
        VIRTIO_NET_F_DEVICE_STATS,
        VIRTIO_NET_F_CTRL_GUEST_OFFLOADS,
        VIRTIO_F_ADMIN_VQ,
    ])
}

/// The fake device. See the [module docs](self).
pub struct NetDev<'m> {
    mem: &'m TestMemory,
    /// Offered features.
    pub features: FeatureSet,
    /// Negotiated features.
    pub negotiated: FeatureSet,
    /// `mac`.
    pub mac: [u8; 6],
    /// `status`.
    pub status: u16,
    /// `max_virtqueue_pairs`.
    pub max_pairs: u16,
    /// `mtu`.
    pub mtu: u16,
    /// `speed`.
    pub speed: u32,
    /// `duplex`.
    pub duplex: u8,
    /// Queue maximum sizes.
    pub max_sizes: Vec<u16>,
    /// Receive buffers held per queue index when DRIVER_OK was set:
    /// (queue index, count, writable bytes of the first).
    pub rx_at_driver_ok: Vec<(u16, usize, u32)>,
    /// Notifications received before DRIVER_OK.
    pub early_notifies: usize,
    /// Frames the driver sent.
    pub sent: Vec<Sent>,
    /// Control commands received.
    pub ctrls: Vec<Ctrl>,
    /// `ack` to answer control commands with (None: OK, or ERR for an
    /// unknown command).
    pub ack: Option<u8>,
    /// Used length for control commands (None: 1).
    pub ctrl_used_len: Option<u32>,
    /// Hold transmitted chains instead of completing them.
    pub hold_tx: bool,
    /// Transmit chains held.
    pub held_tx: Vec<DescChain>,
    /// Every receive buffer filled by [`Self::deliver`], in order: its
    /// first segment's address and the used length.
    pub rx_used: Vec<(u64, u32)>,
    /// Configuration writes (the driver must make none).
    pub config_writes: Vec<(usize, Vec<u8>)>,
    queues: Queues,
    rx: Vec<VecDeque<DescChain>>,
}

impl<'m> NetDev<'m> {
    /// A device offering everything the driver implements, with 2 queue
    /// pairs, MTU 1500, link up.
    pub fn new(mem: &'m TestMemory) -> Self {
        Self {
            mem,
            features: FeatureSet::from_bits(&[
                VIRTIO_F_RING_PACKED,
                VIRTIO_F_EVENT_IDX,
                VIRTIO_F_INDIRECT_DESC,
            ])
            .union(FeatureSet::from_bits(NET_DRIVER_FEATURES))
            .union(never_accepted()),
            negotiated: FeatureSet::new(),
            mac: DST,
            status: VIRTIO_NET_S_LINK_UP,
            max_pairs: 2,
            mtu: 1500,
            speed: 10_000,
            duplex: DUPLEX_FULL,
            max_sizes: vec![64; 5],
            rx_at_driver_ok: Vec::new(),
            early_notifies: 0,
            sent: Vec::new(),
            ctrls: Vec::new(),
            ack: None,
            ctrl_used_len: None,
            hold_tx: false,
            held_tx: Vec::new(),
            rx_used: Vec::new(),
            config_writes: Vec::new(),
            queues: Queues::default(),
            rx: Vec::new(),
        }
    }

    /// Without feature bits `bits`.
    pub fn without(mut self, bits: &[u32]) -> Self {
        for &b in bits {
            self.features.remove(b);
        }
        self
    }

    fn has(&self, bit: u32) -> bool {
        self.negotiated.contains(bit)
    }

    /// Header size for the negotiated features.
    pub fn hdr_len(&self) -> usize {
        net_hdr_len(|b| self.has(b))
    }

    fn pairs(&self) -> u16 {
        queue_pairs(self.has(VIRTIO_NET_F_MQ), self.max_pairs)
    }

    fn config(&self) -> [u8; NET_CONFIG_SIZE] {
        let mut b = [0u8; NET_CONFIG_SIZE];
        let mut c = NetConfig::new_unchecked(&mut b[..]);
        c.set_mac(self.mac);
        c.set_status(self.status);
        c.set_max_virtqueue_pairs(self.max_pairs);
        c.set_mtu(self.mtu);
        c.set_speed(self.speed);
        c.set_duplex(self.duplex);
        b
    }

    /// Receive buffers held for `pair`.
    pub fn rx_held(&self, pair: u16) -> usize {
        self.rx.get(usize::from(pair)).map_or(0, |q| q.len())
    }

    /// Sets `status` and raises a configuration change notification.
    pub fn change_status(&mut self, status: u16) {
        self.status = status;
        if let Some(s) = self.queues.signals() {
            s.config_changed();
        }
    }

    /// Delivers `frame` on receiveq `pair` behind header `h`: one buffer
    /// without MRG_RXBUF, as many as needed with it. `first_len` replaces
    /// the first buffer's used length. Returns the buffers used, or `None`
    /// when too few were held.
    pub fn deliver(
        &mut self,
        pair: u16,
        frame: &[u8],
        h: RxHdr,
        first_len: Option<u32>,
    ) -> Option<usize> {
        let hl = self.hdr_len();
        let mut bytes = vec![0u8; hl];
        bytes[0] = h.flags;
        bytes[1] = h.gso_type;
        bytes[2..4].copy_from_slice(&h.hdr_len.to_le_bytes());
        bytes[6..8].copy_from_slice(&h.csum_start.to_le_bytes());
        bytes[8..10].copy_from_slice(&h.csum_offset.to_le_bytes());
        bytes.extend_from_slice(frame);
        // Split into buffers.
        let q = self.rx.get_mut(usize::from(pair))?;
        let mut chunks: Vec<(DescChain, Vec<u8>)> = Vec::new();
        let mut rest = &bytes[..];
        while !rest.is_empty() || chunks.is_empty() {
            let c = q.pop_front()?;
            let n = (c.writable_len() as usize).min(rest.len());
            chunks.push((c, rest[..n].to_vec()));
            rest = &rest[n..];
        }
        if !self.has(VIRTIO_NET_F_MRG_RXBUF) && chunks.len() > 1 {
            return None;
        }
        let nb = h.num_buffers.unwrap_or(chunks.len() as u16);
        if hl >= 12 {
            chunks[0].1[10..12].copy_from_slice(&nb.to_le_bytes());
        }
        let count = chunks.len();
        let qi = receiveq_index(pair) as u16;
        for (i, (c, data)) in chunks.into_iter().enumerate() {
            let mut w = c.writer(self.mem);
            w.write(&data).unwrap();
            let len = match (i, first_len) {
                (0, Some(l)) => l,
                _ => w.bytes_written(),
            };
            let addr = c.segments().first().map_or(0, |s| s.addr);
            self.rx_used.push((addr, len));
            self.queues.used(self.mem, qi, c.token(), len);
        }
        Some(count)
    }

    /// Completes a used entry on queue `queue` with id `id` (whatever
    /// the driver made available) and length `len`; the device must hold
    /// a chain of that queue (it gives up the first held transmit chain).
    pub fn forge_used(&mut self, queue: u16, id: u16, len: u32) {
        let t: UsedToken = self.queues.forge_token(queue, id).unwrap();
        self.queues.used(self.mem, queue, t, len);
    }

    /// The used id of the first held transmit chain.
    pub fn held_tx_id(&self) -> Option<u16> {
        self.held_tx.first().map(|c| c.token().id())
    }

    /// Completes the transmit chains of `pair` held with
    /// [`Self::hold_tx`] (recorded in [`Self::sent`] like any other), in
    /// order; returns how many.
    pub fn complete_held(&mut self, pair: u16) -> usize {
        let held = std::mem::take(&mut self.held_tx);
        let n = held.len();
        let hold = std::mem::replace(&mut self.hold_tx, false);
        for c in held {
            self.transmit(pair, c);
        }
        self.hold_tx = hold;
        n
    }

    fn transmit(&mut self, pair: u16, c: DescChain) {
        if self.hold_tx {
            self.held_tx.push(c);
            return;
        }
        let b = read_all(self.mem, &c);
        let hl = self.hdr_len().min(b.len());
        self.sent.push(Sent {
            pair,
            hdr: b[..hl].to_vec(),
            frame: b[hl..].to_vec(),
            lens: (c.readable_len(), c.writable_len()),
        });
        self.queues
            .used(self.mem, transmitq_index(pair) as u16, c.token(), 0);
    }

    fn control(&mut self, queue: u16, c: DescChain) {
        let b = read_all(self.mem, &c);
        let (class, cmd) = (b.first().copied(), b.get(1).copied());
        let data = b.get(2..).unwrap_or(&[]).to_vec();
        self.ctrls
            .push((class.unwrap_or(0xff), cmd.unwrap_or(0xff), data));
        if (class, cmd)
            == (
                Some(VIRTIO_NET_CTRL_ANNOUNCE),
                Some(VIRTIO_NET_CTRL_ANNOUNCE_ACK),
            )
        {
            self.status &= !VIRTIO_NET_S_ANNOUNCE;
        }
        if (class, cmd)
            == (
                Some(VIRTIO_NET_CTRL_MAC),
                Some(VIRTIO_NET_CTRL_MAC_ADDR_SET),
            )
            && b.len() == 8
        {
            self.mac.copy_from_slice(&b[2..8]);
        }
        let ack = self.ack.unwrap_or(VIRTIO_NET_OK);
        let mut w = c.writer(self.mem);
        w.write(&[ack]).unwrap();
        let len = self.ctrl_used_len.unwrap_or(1);
        self.queues.used(self.mem, queue, c.token(), len);
    }
}

impl VirtioDevice for NetDev<'_> {
    fn device_type(&self) -> DeviceType {
        DeviceType(VIRTIO_ID_NET)
    }
    fn device_features(&self) -> FeatureSet {
        self.features
    }
    fn queue_max_sizes(&self) -> &[u16] {
        &self.max_sizes
    }
    fn config_len(&self) -> usize {
        NET_CONFIG_SIZE
    }
    fn read_config(&self, offset: usize, data: &mut [u8]) {
        let c = self.config();
        for (i, b) in data.iter_mut().enumerate() {
            *b = c.get(offset + i).copied().unwrap_or(0);
        }
    }
    fn write_config(&mut self, offset: usize, data: &[u8]) {
        self.config_writes.push((offset, data.to_vec()));
    }
    fn accept_features(&mut self, features: FeatureSet) -> Result<(), DeviceError> {
        self.negotiated = features;
        Ok(())
    }
    fn activate(&mut self, a: Activation, s: Signals) -> Result<(), DeviceError> {
        self.queues.activate(a, s);
        self.rx.clear();
        for p in 0..self.pairs() {
            let qi = receiveq_index(p) as u16;
            let mut held = VecDeque::new();
            while let Some(c) = self.queues.pop(self.mem, qi) {
                held.push_back(c);
            }
            let first = held.front().map_or(0, |c| c.writable_len());
            self.rx_at_driver_ok.push((qi, held.len(), first));
            self.rx.push(held);
        }
        Ok(())
    }
    fn reset(&mut self) {
        self.queues.reset();
        self.rx.clear();
        self.held_tx.clear();
    }
    fn queue_notify(&mut self, queue: u16, _: Option<NotificationData>) {
        if !self.queues.is_active(queue) {
            self.early_notifies += 1;
            return;
        }
        let pairs = self.pairs();
        let ctrl = self.has(VIRTIO_NET_F_CTRL_VQ);
        while let Some(c) = self.queues.pop(self.mem, queue) {
            match classify_queue(u32::from(queue), pairs, ctrl) {
                NetQueue::Receive(p) => {
                    if let Some(q) = self.rx.get_mut(usize::from(p)) {
                        q.push_back(c);
                    }
                }
                NetQueue::Transmit(p) => self.transmit(p, c),
                NetQueue::Control => self.control(queue, c),
                NetQueue::Unknown(_) => {}
            }
        }
    }
}
