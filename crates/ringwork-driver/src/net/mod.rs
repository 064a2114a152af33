//! The network driver (VIRTIO 1.4 §5.1).
//!
//! [`NetDriver::new`] runs device initialization (§3.1.1, §5.1.5). It
//! negotiates, each only when offered and not withheld
//! ([`NetOptions::withhold`]): `VIRTIO_NET_F_MAC`, `STATUS`, `MTU`,
//! `MRG_RXBUF`, `CSUM`, `GUEST_CSUM`, `CTRL_VQ`, `CTRL_RX`,
//! `CTRL_RX_EXTRA`, `CTRL_VLAN`, `CTRL_MAC_ADDR`, `GUEST_ANNOUNCE`,
//! `SPEED_DUPLEX`, `MQ` (when more than one pair is asked for), plus the
//! ring features every driver here takes. Features whose dependencies are
//! not met are dropped (§5.1.3.1, e.g. everything on the controlq without
//! `CTRL_VQ`; and `CTRL_RX_EXTRA` without `CTRL_VQ`, §5.1.4.2 SHOULD NOT).
//! No segmentation offload, `HASH_REPORT`, RSS or `GUEST_HDRLEN` is
//! negotiated, so the header is 12 bytes (10 on a legacy interface without
//! `MRG_RXBUF`). It then reads the configuration ([`NetConfig`], never
//! writing it, §5.1.4.2), sets up [`NetOptions::queue_pairs`] queue pairs
//! (at most `max_virtqueue_pairs`) and the controlq (index
//! `2 * max_virtqueue_pairs` with MQ, §5.1.2), fills every receive queue
//! with buffers **before** DRIVER_OK (§5.1.5 step 3, §5.1.9.3.1), sets
//! DRIVER_OK and only then notifies the device.
//!
//! The address ([`NetDriver::mac`]): the device's `mac` when
//! `VIRTIO_NET_F_MAC` was negotiated (§5.1.4.2 MUST) unless the caller
//! gave [`NetOptions::mac`] and the device can be told with
//! `VIRTIO_NET_CTRL_MAC_ADDR_SET`; otherwise the caller's, or a generated
//! locally administered one (§5.1.4.2 SHOULD). A caller's address is sent
//! with `MAC_ADDR_SET` right after DRIVER_OK when `CTRL_MAC_ADDR` (and
//! `CTRL_RX`, which the MAC class needs, §5.1.9.5.2.2) were negotiated.
//!
//! Data path:
//! - [`NetDriver::send`] queues one frame with an optional checksum
//!   request ([`TxChecksum`]: `NEEDS_CSUM` with `VIRTIO_NET_F_CSUM`, the
//!   driver completes the checksum itself without it, §5.1.9.2.1) and
//!   notifies; [`NetDriver::send_batch`] queues many and notifies once.
//!   Completed transmit buffers are taken back on the way
//!   ([`NetDriver::reclaim`]).
//! - [`NetDriver::recv`] returns a [`RxFrame`]; [`NetDriver::recv_into`]
//!   copies into the caller's buffer; [`NetDriver::recv_batch`] hands up to
//!   `n` frames to a closure and notifies once; [`NetDriver::recv_wait`]
//!   blocks (bounded). Receive buffers are made available again as soon as
//!   their frame is copied out. None of these allocate per frame except
//!   [`NetDriver::recv`].
//! - Multiqueue (§5.1.9.5.6): only pair 0 carries frames until
//!   [`NetDriver::set_queue_pairs`] enables more.
//!
//! Control commands (§5.1.9.5) are blocking calls, each checked against
//! the negotiated features before it is issued: RX modes, the MAC filter
//! table, the default address, VLAN filters, `ANNOUNCE_ACK`,
//! `MQ_VQ_PAIRS_SET`. Configuration changes: [`NetDriver::interrupt`]
//! acknowledges the transport's interrupt, [`NetDriver::config_changed`]
//! re-reads `status`, `speed` and `duplex` and acknowledges an announce
//! request (§5.1.9.5.4).
//!
//! # Trust and panic contract
//! The device is hostile. Configuration values the driver cannot work
//! with fail setup ([`SetupError::BadConfig`]). Used ids and lengths are
//! checked by the queues; a receive buffer shorter than the header or an
//! impossible `num_buffers` breaks that receive queue until
//! [`NetDriver::reset`] ([`RecvError`]); checksum offsets are checked
//! before they are reported; a control command's `ack` is anything but
//! trusted ([`CtrlError::Rejected`] carries it). Every wait is bounded.
//! Memory is bounded by the options (queue sizes, buffer sizes, MTU),
//! never by what the device says beyond that. Nothing here panics on
//! device input. One strictness a legacy device may trip over: used
//! lengths on the transmitqs and the controlq are checked like any other
//! (the queue allows none on a transmit buffer), although §5.1.9.1 tells
//! drivers of legacy devices to ignore them (some reported the descriptor
//! length there); such a device breaks its transmitq.

mod bufs;
mod config;
mod ctrl;
mod data;
mod error;
mod hdr;
mod rx;
mod tx;

use alloc::vec::Vec;

pub use bufs::{BufError, NetBuf};
pub use config::{Duplex, NetConfig, DEFAULT_MTU, MAX_QUEUE_PAIRS};
pub use ctrl::{ConfigUpdate, RxMode, MAX_MAC_TABLE};
pub use data::{RxFrame, TxFrame};
pub use error::{CtrlError, NetError, RecvError, SendError};
pub use hdr::{complete_checksum, ones_complement_sum, RxChecksum, RxInfo, TxChecksum};

use ringwork_queue::{Dma, DriverQueue, RingFormat};
use ringwork_spec::device_id::VIRTIO_ID_NET;
use ringwork_spec::features::{FeatureRule, FeatureSet};
use ringwork_spec::net::*;
use ringwork_transport::driver::{self, ConfigRead, Transport};

use crate::common::{
    self, check_device, ring_format, ring_supports, set_failed, Detached, DmaRegion, IrqState,
    LeakOnDrop, RingPreference, SetupError,
};
use rx::{RxLayout, RxQueue};
use tx::{TxQueue, ETH_HLEN, VLAN_HLEN};

/// Default bytes per receive buffer with `VIRTIO_NET_F_MRG_RXBUF`.
pub const DEFAULT_RX_BUFFER_LEN: u32 = 2048;

/// The device-specific features this driver implements.
pub const NET_DRIVER_FEATURES: &[u32] = &[
    VIRTIO_NET_F_MAC,
    VIRTIO_NET_F_STATUS,
    VIRTIO_NET_F_MTU,
    VIRTIO_NET_F_MRG_RXBUF,
    VIRTIO_NET_F_CSUM,
    VIRTIO_NET_F_GUEST_CSUM,
    VIRTIO_NET_F_CTRL_VQ,
    VIRTIO_NET_F_CTRL_RX,
    VIRTIO_NET_F_CTRL_RX_EXTRA,
    VIRTIO_NET_F_CTRL_VLAN,
    VIRTIO_NET_F_CTRL_MAC_ADDR,
    VIRTIO_NET_F_GUEST_ANNOUNCE,
    VIRTIO_NET_F_SPEED_DUPLEX,
    VIRTIO_NET_F_MQ,
];

/// Features not to accept because the configuration field they make
/// valid holds a value the spec forbids: VIRTIO_NET_F_MTU with `mtu` below
/// 68 (§5.1.4.1: the device MUST set it to 68 or more). Linux drops the
/// feature the same way; a vhost-user backend without a configuration
/// space (DPDK's vhost PMD offers MTU, and every field reads 0) is then
/// driven with the default MTU instead of being refused.
///
/// Likewise VIRTIO_NET_F_MQ with `max_virtqueue_pairs` outside 1..=0x7fff
/// (§5.1.4.1: the device MUST set 1..=0x8000; 0x8000 is valid, but its
/// controlq index 0x10000 does not fit the 16-bit queue index): the
/// driver runs one queue pair, as Linux falls back to one.
fn drop_invalid_config<T: Transport + ?Sized>(t: &mut T, wanted: FeatureSet) -> FeatureSet {
    let mut drop = FeatureSet::EMPTY;
    if wanted.contains(VIRTIO_NET_F_MTU) && t.config_u16(NET_CONFIG_MTU_OFFSET) < MTU_MIN {
        drop.insert(VIRTIO_NET_F_MTU);
    }
    if wanted.contains(VIRTIO_NET_F_MQ) {
        let pairs = t.config_u16(NET_CONFIG_MAX_VIRTQUEUE_PAIRS_OFFSET);
        if pairs == 0 || pairs > MAX_QUEUE_PAIRS {
            drop.insert(VIRTIO_NET_F_MQ);
        }
    }
    drop
}

/// How to set up a [`NetDriver`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetOptions {
    /// Queue pairs to set up (at most `max_virtqueue_pairs`; more than one
    /// accepts `VIRTIO_NET_F_MQ`). At least 1. Pairs beyond the first
    /// carry frames once [`NetDriver::set_queue_pairs`] enabled them.
    pub queue_pairs: u16,
    /// Entries per queue wanted; clamped to each queue's maximum (and to a
    /// power of two for split rings). At least 2.
    pub queue_size: u16,
    /// Ring format.
    pub ring: RingPreference,
    /// Bytes per receive buffer with `VIRTIO_NET_F_MRG_RXBUF` (at least the
    /// header; a receive queue must hold an `mtu`-sized frame). Without
    /// it, buffers hold a whole frame (§5.1.9.3.1).
    pub rx_buffer_len: u32,
    /// The address to use. With `VIRTIO_NET_F_MAC` it replaces the
    /// device's only if the device can be told (`CTRL_MAC_ADDR`);
    /// otherwise setup fails. `None`: the device's `mac`, or a generated
    /// locally administered address.
    pub mac: Option<[u8; 6]>,
    /// Features not to accept even if offered.
    pub withhold: FeatureSet,
    /// Receive buffers per queue pair beyond the receiveq's entries, for
    /// frames the caller holds in place ([`NetDriver::recv_bufs`]) or has
    /// sent from their buffers ([`NetDriver::send_bufs`]) while the ring
    /// stays populated. `None`: as many as the receiveq has entries.
    pub rx_spare_buffers: Option<u16>,
}

impl Default for NetOptions {
    /// One pair of 256 entries, packed rings if offered, 2 KiB mergeable
    /// receive buffers (and as many spares as entries), the device's
    /// address, nothing withheld.
    fn default() -> Self {
        Self {
            queue_pairs: 1,
            queue_size: 256,
            ring: RingPreference::Auto,
            rx_buffer_len: DEFAULT_RX_BUFFER_LEN,
            mac: None,
            withhold: FeatureSet::EMPTY,
            rx_spare_buffers: None,
        }
    }
}

/// What the device may access.
pub(crate) struct NetState<D: Dma> {
    rx: Vec<RxQueue<D>>,
    tx: Vec<TxQueue<D>>,
    ctrl: Option<DriverQueue<D, ()>>,
    ctrl_buf: Option<DmaRegion<D>>,
}

impl<D: Dma> Default for NetState<D> {
    fn default() -> Self {
        Self {
            rx: Vec::new(),
            tx: Vec::new(),
            ctrl: None,
            ctrl_buf: None,
        }
    }
}

/// A virtio-net driver. See the [module docs](self).
///
/// Dropping the driver without [`NetDriver::reset`] leaves the device
/// running; its queue memory is then leaked rather than given back.
pub struct NetDriver<T: Transport, D: Dma + Clone> {
    transport: T,
    dma: D,
    features: FeatureSet,
    format: RingFormat,
    config: NetConfig,
    mac: [u8; 6],
    hdr_len: usize,
    rx_buf_len: u32,
    active_pairs: u16,
    state: LeakOnDrop<NetState<D>>,
    scratch: Vec<u8>,
    irq: IrqState,
    legacy: bool,
    ctrl_broken: bool,
}

impl<T: Transport, D: Dma + Clone> core::fmt::Debug for NetDriver<T, D> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("NetDriver")
            .field("features", &self.features)
            .field("format", &self.format)
            .field("config", &self.config)
            .field("mac", &self.mac)
            .field("pairs", &self.state.rx.len())
            .field("active_pairs", &self.active_pairs)
            .finish_non_exhaustive()
    }
}

/// What setup found.
struct Setup {
    format: RingFormat,
    config: NetConfig,
    hdr_len: usize,
    rx_buf_len: u32,
}

/// The rules negotiation drops features by: §5.1.3.1 and the SHOULD NOTs
/// of §5.1.4.2.
fn rules() -> Vec<FeatureRule> {
    NET_FEATURE_RULES
        .iter()
        .chain(NET_SHOULD_RULES)
        .copied()
        .collect()
}

/// A locally administered unicast address derived from `seed` (FNV-1a),
/// for a device without `VIRTIO_NET_F_MAC` when the caller gave none.
fn generated_mac(seed: u64) -> [u8; 6] {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in seed.to_le_bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    let b = h.to_le_bytes();
    // Locally administered (bit 1), unicast (bit 0 clear).
    [0x02, b[0], b[1], b[2], b[3], b[4]]
}

impl<T: Transport, D: Dma + Clone> NetDriver<T, D> {
    /// Initializes the device (VIRTIO 1.4 §3.1.1, §5.1.5). On failure the
    /// device is left with FAILED set.
    pub fn new(mut transport: T, dma: D, opts: NetOptions) -> Result<Self, NetError> {
        check_device(&transport, VIRTIO_ID_NET)?;
        if opts.queue_pairs == 0 {
            return Err(SetupError::BadOption {
                option: "queue_pairs",
                reason: "must not be 0",
            }
            .into());
        }
        if opts.queue_size < 2 {
            return Err(SetupError::BadOption {
                option: "queue_size",
                reason: "must be at least 2",
            }
            .into());
        }
        let mut supports = ring_supports(opts.ring);
        for &f in NET_DRIVER_FEATURES {
            supports.insert(f);
        }
        if opts.queue_pairs < 2 {
            supports.remove(VIRTIO_NET_F_MQ);
        }
        let features = driver::negotiate_validated(
            &mut transport,
            supports.difference(opts.withhold),
            &rules(),
            drop_invalid_config,
        )?;
        let mut state = LeakOnDrop::new(NetState::default());
        let s = match Self::setup(&mut transport, &dma, features, &opts, &mut state) {
            Ok(s) => s,
            Err(e) => {
                set_failed(&mut transport);
                return Err(e.into());
            }
        };
        let (mac, tell) = match Self::choose_mac(features, &s.config, &opts, &state) {
            Ok(m) => m,
            Err(e) => {
                set_failed(&mut transport);
                return Err(e.into());
            }
        };
        driver::set_driver_ok(&mut transport);
        let mut d = Self {
            legacy: transport.is_legacy(),
            transport,
            dma,
            features,
            format: s.format,
            config: s.config,
            mac,
            hdr_len: s.hdr_len,
            rx_buf_len: s.rx_buf_len,
            active_pairs: 1,
            state,
            scratch: Vec::new(),
            irq: IrqState::default(),
            ctrl_broken: false,
        };
        // Notifications only after DRIVER_OK (§3.1.1).
        // Cannot fail: nothing was taken from a queue yet, so none is broken.
        let _ = d.kick_all_rx();
        if tell {
            if let Err(e) = d.set_mac(mac) {
                set_failed(&mut d.transport);
                return Err(e.into());
            }
        }
        Ok(d)
    }

    /// §3.1.1 step 7: configuration, queues, receive buffers.
    fn setup(
        t: &mut T,
        dma: &D,
        features: FeatureSet,
        opts: &NetOptions,
        state: &mut NetState<D>,
    ) -> Result<Setup, SetupError> {
        let (format, qf) = ring_format(t, features, opts.ring)?;
        let config = config::read(t, features)?;
        let has = |b| features.contains(b);
        let hdr_len = net_hdr_len(has);
        let mergeable = has(VIRTIO_NET_F_MRG_RXBUF);
        let max_frame = usize::from(config.mtu) + ETH_HLEN + VLAN_HLEN;
        let rx_buf_len = if mergeable {
            if (opts.rx_buffer_len as usize) < hdr_len {
                return Err(SetupError::BadOption {
                    option: "rx_buffer_len",
                    reason: "shorter than the header (§5.1.9.3.1)",
                });
            }
            opts.rx_buffer_len.min(1 << 20)
        } else {
            // §5.1.9.3.1: at least 1526 (1514 + header), and the MTU.
            (hdr_len + max_frame.max(MAX_PACKET_LEN)) as u32
        };
        let mq = has(VIRTIO_NET_F_MQ);
        let owner = bufs::new_owner();
        let pairs = if mq {
            opts.queue_pairs.min(config.max_virtqueue_pairs)
        } else {
            1
        };
        for p in 0..pairs {
            let ri = receiveq_index(p) as u16;
            let size = common::queue_size(t, ri, opts.queue_size, format)?;
            // §5.1.4.2 MUST: room for one mtu-sized frame.
            if (size as usize) * (rx_buf_len as usize) < hdr_len + max_frame {
                return Err(SetupError::BadOption {
                    option: "rx_buffer_len",
                    reason: "a receive queue cannot hold an mtu-sized frame",
                });
            }
            let vq = common::make_queue(t, dma.clone(), ri, size, format, qf, None)?;
            let layout = RxLayout {
                buf_len: rx_buf_len,
                hdr_len,
                mergeable,
                guest_csum: has(VIRTIO_NET_F_GUEST_CSUM),
            };
            let spare = opts.rx_spare_buffers.unwrap_or(size);
            let mut rq = RxQueue::new(p, vq, dma.clone(), layout, spare, owner)?;
            // §5.1.5 step 3: populated before DRIVER_OK.
            rq.fill().map_err(|_| SetupError::BadConfig {
                field: "queue_size",
                value: size.into(),
                reason: "receive queue could not be filled",
            })?;
            state.rx.push(rq);
            let ti = transmitq_index(p) as u16;
            let size = common::queue_size(t, ti, opts.queue_size, format)?;
            let vq = common::make_queue(t, dma.clone(), ti, size, format, qf, None)?;
            state
                .tx
                .push(TxQueue::new(p, vq, dma.clone(), hdr_len, max_frame)?);
        }
        if has(VIRTIO_NET_F_CTRL_VQ) {
            let n = queue_pairs(mq, config.max_virtqueue_pairs);
            let ci = controlq_index(n) as u16;
            let size = common::queue_size(t, ci, 8, format)?;
            if size < 2 {
                return Err(SetupError::BadConfig {
                    field: "queue_size_max",
                    value: size.into(),
                    reason: "controlq too small for a command",
                });
            }
            state.ctrl = Some(common::make_queue(
                t,
                dma.clone(),
                ci,
                size,
                format,
                qf,
                None,
            )?);
            state.ctrl_buf = Some(DmaRegion::new(dma.clone(), ctrl::CTRL_BUF_LEN, 64)?);
        }
        Ok(Setup {
            format,
            config,
            hdr_len,
            rx_buf_len,
        })
    }

    /// The address to use, and whether the device must be told.
    fn choose_mac(
        features: FeatureSet,
        config: &NetConfig,
        opts: &NetOptions,
        state: &NetState<D>,
    ) -> Result<([u8; 6], bool), SetupError> {
        let can_tell = ctrl::can_set_mac(features);
        match (opts.mac, config.mac) {
            (Some(m), _) if m[0] & 1 != 0 => Err(SetupError::BadOption {
                option: "mac",
                reason: "a group (multicast) address",
            }),
            (Some(m), Some(dev)) if m == dev => Ok((m, false)),
            (Some(_), Some(_)) if !can_tell => Err(SetupError::BadOption {
                option: "mac",
                reason: "differs from the device's mac and VIRTIO_NET_F_CTRL_MAC_ADDR \
                         (with CTRL_RX) was not negotiated (§5.1.4.2)",
            }),
            (Some(m), _) => Ok((m, can_tell)),
            (None, Some(dev)) => Ok((dev, false)),
            (None, None) => {
                let seed = state
                    .rx
                    .first()
                    .map_or(0, |q| q.seed_addr())
                    .wrapping_add(features.as_u64_lossy());
                Ok((generated_mac(seed), can_tell))
            }
        }
    }

    fn kick_all_rx(&mut self) -> Result<(), RecvError> {
        for q in self.state.rx.iter_mut() {
            q.kick(&mut self.transport)?;
        }
        Ok(())
    }

    /// The negotiated features.
    pub fn features(&self) -> FeatureSet {
        self.features
    }

    /// The ring format in use.
    pub fn ring_format(&self) -> RingFormat {
        self.format
    }

    /// The configuration as last read (at setup, or by
    /// [`Self::config_changed`]).
    pub fn config(&self) -> &NetConfig {
        &self.config
    }

    /// The address in use (see the [module docs](self)).
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// The MTU (`mtu` with `VIRTIO_NET_F_MTU`, else [`DEFAULT_MTU`]).
    pub fn mtu(&self) -> u16 {
        self.config.mtu
    }

    /// Whether the link is up: `VIRTIO_NET_S_LINK_UP` as last read with
    /// `VIRTIO_NET_F_STATUS`; always up without it (§5.1.4.2).
    pub fn link_up(&self) -> bool {
        self.config.link_up()
    }

    /// Size of `struct virtio_net_hdr` in use.
    pub fn header_len(&self) -> usize {
        self.hdr_len
    }

    /// Bytes per receive buffer.
    pub fn rx_buffer_len(&self) -> u32 {
        self.rx_buf_len
    }

    /// Queue pairs set up.
    pub fn queue_pairs(&self) -> u16 {
        self.state.rx.len() as u16
    }

    /// Queue pairs frames may be sent on (1 until
    /// [`Self::set_queue_pairs`]).
    pub fn active_pairs(&self) -> u16 {
        self.active_pairs
    }

    /// The transport (for interrupt handling, or tests).
    pub fn transport(&mut self) -> &mut T {
        &mut self.transport
    }

    /// The DMA allocator.
    pub fn dma(&self) -> &D {
        &self.dma
    }

    /// Resets the device (§2.4) and hands back the transport. Frames in
    /// flight are dropped. When the reset does not complete, the queue
    /// memory is leaked, not freed.
    pub fn reset(self) -> Detached<T> {
        let mut s = self;
        let reset = s.transport.reset();
        let st = &mut *s.state;
        for q in st.rx.iter_mut() {
            q.reset();
        }
        for q in st.tx.iter_mut() {
            q.reset();
        }
        if let Some(q) = st.ctrl.as_mut() {
            q.reset();
        }
        if reset.is_ok() {
            s.state.disarm();
        }
        Detached {
            transport: s.transport,
            tokens: Vec::new(),
            reset,
        }
    }
}
