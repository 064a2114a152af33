//! The network device's control path: [`Net`], its features, queues and
//! configuration space (VIRTIO 1.4 §5.1.2–§5.1.4), and the state the
//! control queue changes and the data path reads.

use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use ringwork_spec::device_id::{DeviceType, VIRTIO_ID_NET};
use ringwork_spec::features::VIRTIO_F_IN_ORDER;
use ringwork_spec::net::*;

use super::backend::NetBackend;
use super::filter::RxFilter;
use super::gso::Offloads;
use super::options::{NetError, NetOptions, NetWorkers};
use super::packet::{MacAddr, MAX_FRAME_LEN, MAX_GSO_FRAME_LEN};
use super::stats::{Counters, NetStats};
use super::worker::{start, Group, Role};
use crate::model::{Device, DeviceError, DeviceEvents, QueueWorker};
use crate::ring_features;

/// The ring features the network device offers: [`ring_features`] and
/// VIRTIO_F_IN_ORDER (VIRTIO 1.4 §2.7.9, §2.8.8): every queue's buffers
/// are used in the order they were made available (transmit chains are
/// completed in pop order, receive buffers filled in pop order, merged
/// frames' buffers kept in order, unused ones given back in order).
pub const fn net_ring_features() -> u64 {
    ring_features() | 1 << VIRTIO_F_IN_ORDER
}

/// The device-specific features offered (see the [module docs](super)).
pub fn offered_net_features(queue_pairs: u16) -> u64 {
    let mut f = [
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
        VIRTIO_NET_F_CTRL_MAC_ADDR,
        VIRTIO_NET_F_SPEED_DUPLEX,
    ]
    .iter()
    .fold(0u64, |a, b| a | 1 << b);
    if queue_pairs > 1 {
        f |= 1 << VIRTIO_NET_F_MQ;
    }
    f
}

/// The device-specific features offered on a backend with `offloads`
/// ([`NetBackend::offloads`]): [`offered_net_features`] plus the
/// segmentation features the backend carries
/// ([`Offloads::offered_features`]).
pub fn offered_net_features_with(queue_pairs: u16, offloads: Offloads) -> u64 {
    offered_net_features(queue_pairs) | offloads.offered_features()
}

/// Whether feature bit `bit` is in `features`.
pub(super) fn has(features: u64, bit: u32) -> bool {
    bit < 64 && features >> bit & 1 == 1
}

/// What the control queue changes.
pub(super) struct State {
    /// The current default address (VIRTIO_NET_CTRL_MAC_ADDR_SET).
    pub mac: MacAddr,
    /// `status` bits.
    pub status: u16,
    /// The receive filter.
    pub filter: RxFilter,
    /// Negotiated features.
    pub features: u64,
    /// The driver's event channel, once a worker started.
    pub events: Option<Arc<dyn DeviceEvents>>,
    /// Which queues the host runs ([`Device::queue_running`]).
    pub running: Vec<bool>,
    /// What the backend was last told the driver accepts on receive.
    pub guest_offloads: Offloads,
    /// The counters as last logged (at a reset).
    pub logged: NetStats,
}

/// State shared by the device and its workers.
pub(super) struct Shared {
    pub opts: NetOptions,
    pub backend: Arc<dyn NetBackend>,
    /// Longest frame taken or handed over: [`MAX_GSO_FRAME_LEN`] on a
    /// backend with segmentation offload, else [`MAX_FRAME_LEN`].
    pub max_frame_len: usize,
    pub state: Mutex<State>,
    /// Bumped whenever [`State::filter`] changes (receive workers keep a
    /// copy and refresh it when this moves).
    pub filter_gen: AtomicU64,
    /// Queue pairs in use ([`Shared::update_pairs`]).
    pub active_pairs: AtomicU16,
    /// The last VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET (1 after reset).
    pub ctrl_pairs: AtomicU16,
    pub stats: Counters,
}

impl Shared {
    /// Locks the state, ignoring poisoning (every update is a plain
    /// assignment; a panicking holder cannot leave it half-done in a way
    /// that matters).
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Publishes a filter change to the receive workers and the backend.
    pub fn filter_changed(&self, st: &State) {
        self.filter_gen.fetch_add(1, Ordering::Release);
        self.backend.set_rx_filter(&st.filter);
    }

    /// Recomputes the queue pairs in use and tells the backend when they
    /// changed. With VIRTIO_NET_F_CTRL_VQ the driver chooses them through
    /// the controlq (VQ_PAIRS_SET, VIRTIO 1.4 §5.1.9.5.6). A frontend
    /// that keeps the controlq to itself (QEMU's `-netdev vhost-user`
    /// negotiates VIRTIO_NET_F_MQ with the backend but not CTRL_VQ, and
    /// carries VQ_PAIRS_SET out as SET_VRING_ENABLE on each ring) chooses
    /// them by running the rings: the pairs in use are then the leading
    /// pairs whose receiveq and transmitq both run (at least one, as after
    /// a reset). Without MQ, one pair.
    pub fn update_pairs(&self, st: &State) {
        let max = self.opts.queue_pairs;
        let pairs = if has(st.features, VIRTIO_NET_F_CTRL_VQ) {
            self.ctrl_pairs.load(Ordering::Acquire)
        } else if has(st.features, VIRTIO_NET_F_MQ) {
            let on = |q: u16| st.running.get(usize::from(q)).copied().unwrap_or(false);
            (0..max).take_while(|&p| on(2 * p) && on(2 * p + 1)).count() as u16
        } else {
            1
        }
        .clamp(1, max);
        if self.active_pairs.swap(pairs, Ordering::AcqRel) != pairs {
            tracing::info!("virtio-net {}: {pairs} queue pair(s) in use", self.opts.mac);
            self.backend.set_active_pairs(pairs);
        }
    }

    /// Tells the backend what the driver accepts on receive, when that
    /// changed.
    pub fn update_guest_offloads(&self, st: &mut State, offloads: Offloads) {
        if st.guest_offloads != offloads {
            st.guest_offloads = offloads;
            self.backend.set_guest_offloads(offloads);
        }
    }

    /// Sends a configuration change notification if a driver is there.
    pub fn config_changed(&self, st: &State) {
        if let Some(ev) = &st.events {
            ev.config_changed();
        }
    }
}

/// The network device. See the [module docs](super).
pub struct Net {
    shared: Arc<Shared>,
    features: u64,
}

impl core::fmt::Debug for Net {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Net")
            .field("opts", &self.shared.opts)
            .finish_non_exhaustive()
    }
}

impl Net {
    /// A device with `opts`, connected to `backend`.
    pub fn new(opts: NetOptions, backend: Arc<dyn NetBackend>) -> Result<Self, NetError> {
        opts.check()?;
        let offloads = backend.offloads();
        let features = net_ring_features() | offered_net_features_with(opts.queue_pairs, offloads);
        let filter = RxFilter::new(opts.mac);
        backend.set_rx_filter(&filter);
        backend.set_active_pairs(1);
        backend.set_guest_offloads(Offloads::NONE);
        Ok(Self {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    mac: opts.mac,
                    status: VIRTIO_NET_S_LINK_UP,
                    filter,
                    features: 0,
                    events: None,
                    running: vec![false; usize::from(2 * opts.queue_pairs + 1)],
                    guest_offloads: Offloads::NONE,
                    logged: NetStats::default(),
                }),
                opts,
                backend,
                max_frame_len: if offloads.any_gso() {
                    MAX_GSO_FRAME_LEN
                } else {
                    MAX_FRAME_LEN
                },
                filter_gen: AtomicU64::new(0),
                active_pairs: AtomicU16::new(1),
                ctrl_pairs: AtomicU16::new(1),
                stats: Counters::default(),
            }),
            features,
        })
    }

    /// The options the device was made with.
    pub fn options(&self) -> &NetOptions {
        &self.shared.opts
    }

    /// The current address (the configured one until the driver sets
    /// another with VIRTIO_NET_CTRL_MAC_ADDR_SET).
    pub fn mac(&self) -> MacAddr {
        self.shared.lock().mac
    }

    /// A copy of the receive filter as the driver programmed it.
    pub fn rx_filter(&self) -> RxFilter {
        self.shared.lock().filter.clone()
    }

    /// Queue pairs in use: those the driver set with VQ_PAIRS_SET, or,
    /// when the frontend keeps the controlq (MQ without CTRL_VQ), the
    /// leading pairs whose rings run; 1 after a reset.
    pub fn active_pairs(&self) -> u16 {
        self.shared.active_pairs.load(Ordering::Acquire)
    }

    /// The counters.
    pub fn stats(&self) -> NetStats {
        self.shared.stats.snapshot()
    }

    /// Sets or clears VIRTIO_NET_S_LINK_UP and notifies the driver of the
    /// configuration change.
    pub fn set_link_up(&self, up: bool) {
        let mut st = self.shared.lock();
        if up {
            st.status |= VIRTIO_NET_S_LINK_UP;
        } else {
            st.status &= !VIRTIO_NET_S_LINK_UP;
        }
        self.shared.config_changed(&st);
    }

    /// Asks the driver to announce itself (VIRTIO 1.4 §5.1.9.5.4): sets
    /// VIRTIO_NET_S_ANNOUNCE and notifies a configuration change. Returns
    /// `false` (doing nothing) when VIRTIO_NET_F_GUEST_ANNOUNCE was not
    /// negotiated.
    pub fn announce(&self) -> bool {
        let mut st = self.shared.lock();
        if !has(st.features, VIRTIO_NET_F_GUEST_ANNOUNCE) {
            return false;
        }
        st.status |= VIRTIO_NET_S_ANNOUNCE;
        self.shared.config_changed(&st);
        true
    }
}

impl Device for Net {
    fn device_type(&self) -> DeviceType {
        DeviceType(VIRTIO_ID_NET)
    }

    fn features(&self) -> u64 {
        self.features
    }

    /// Every receiveq/transmitq pair plus the controlq. Which index is the
    /// controlq depends on VIRTIO_NET_F_MQ (§5.1.2), so queues are given
    /// their roles when their workers start.
    fn num_queues(&self) -> u16 {
        2 * self.shared.opts.queue_pairs + 1
    }

    fn max_queue_size(&self) -> u16 {
        self.shared.opts.queue_size
    }

    /// `mac`, `status`, `max_virtqueue_pairs`, `mtu`, `speed`, `duplex`;
    /// the RSS and hash fields read as zero (not offered).
    fn config(&self) -> Vec<u8> {
        let st = self.shared.lock();
        let o = &self.shared.opts;
        let mut b = vec![0u8; NET_CONFIG_SIZE];
        let mut c = NetConfig::new_unchecked(&mut b[..]);
        c.set_mac(st.mac.0);
        c.set_status(st.status);
        c.set_max_virtqueue_pairs(o.queue_pairs);
        c.set_mtu(o.mtu);
        c.set_speed(o.speed);
        c.set_duplex(o.duplex);
        b
    }

    fn set_features(&self, features: u64) {
        let mut st = self.shared.lock();
        st.features = features;
        self.shared
            .update_guest_offloads(&mut st, Offloads::from_guest_features(features));
        let vlan = has(features, VIRTIO_NET_F_CTRL_VLAN);
        if st.filter.vlan_filtering != vlan {
            st.filter.vlan_filtering = vlan;
            self.shared.filter_changed(&st);
        }
        self.shared.update_pairs(&st);
    }

    /// Without VIRTIO_NET_F_CTRL_VQ but with MQ, the running rings decide
    /// the queue pairs in use ([`Net::active_pairs`]).
    fn queue_running(&self, index: u16, running: bool) {
        let mut st = self.shared.lock();
        if let Some(r) = st.running.get_mut(usize::from(index)) {
            *r = running;
        }
        self.shared.update_pairs(&st);
    }

    /// As [`NetOptions::workers`] says: one worker per queue (receiveqs
    /// and transmitqs on their own threads, the controlq on another), one
    /// per queue pair (the controlq with the first pair), or one for the
    /// whole device.
    fn worker_map(&self) -> Vec<Vec<u16>> {
        let n = self.num_queues();
        match self.shared.opts.workers {
            NetWorkers::PerQueue => (0..n).map(|q| vec![q]).collect(),
            NetWorkers::PerPair => {
                let pairs = self.shared.opts.queue_pairs;
                let mut groups: Vec<Vec<u16>> =
                    (0..pairs).map(|p| vec![2 * p, 2 * p + 1]).collect();
                if let Some(g) = groups.first_mut() {
                    g.push(2 * pairs);
                }
                groups
            }
            NetWorkers::One => vec![(0..n).collect()],
        }
    }

    fn start_worker(
        &self,
        queues: &[u16],
        features: u64,
        events: Arc<dyn DeviceEvents>,
    ) -> Result<Box<dyn QueueWorker>, DeviceError> {
        self.set_features(features);
        self.shared.lock().events = Some(events);
        let pairs = queue_pairs(has(features, VIRTIO_NET_F_MQ), self.shared.opts.queue_pairs);
        let ctrl = has(features, VIRTIO_NET_F_CTRL_VQ);
        let role = |q: u16| match classify_queue(u32::from(q), pairs, ctrl) {
            NetQueue::Receive(p) => Role::Rx(p),
            NetQueue::Transmit(p) => Role::Tx(p),
            NetQueue::Control => Role::Ctrl,
            NetQueue::Unknown(_) => Role::Idle,
        };
        Ok(match queues {
            [q] => start(self.shared.clone(), role(*q), features),
            _ => Box::new(Group::new(
                &self.shared,
                queues.iter().map(|&q| role(q)).collect(),
                features,
            )),
        })
    }

    /// Back to the state after construction: the configured address,
    /// link up, no announcement pending, a promiscuous filter with empty
    /// tables, one queue pair, no receive offloads. Logs the counters
    /// when they moved since the last reset.
    fn reset(&self) {
        let mut st = self.shared.lock();
        let stats = self.shared.stats.snapshot();
        if stats != st.logged {
            tracing::info!("virtio-net {}: reset; counters {stats:?}", st.mac);
            st.logged = stats;
        }
        self.shared.update_guest_offloads(&mut st, Offloads::NONE);
        st.mac = self.shared.opts.mac;
        st.status = VIRTIO_NET_S_LINK_UP;
        st.filter = RxFilter::new(self.shared.opts.mac);
        st.features = 0;
        st.running.fill(false);
        self.shared.filter_changed(&st);
        drop(st);
        self.shared.ctrl_pairs.store(1, Ordering::Release);
        self.shared.active_pairs.store(1, Ordering::Release);
        self.shared.backend.set_active_pairs(1);
    }
}
