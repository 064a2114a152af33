//! A userspace Ethernet switch: every [`SwitchPort`] is a [`NetBackend`]
//! for one network device, so several guests served by one process reach
//! each other with no host privileges (no tap, no bridge).
//!
//! Forwarding is that of a learning bridge: the source address of every
//! frame a port sends is learned for that port (entries age out after
//! [`MAC_AGE`] and leave with their port); a frame to a learned unicast
//! address goes to that port, a frame to an unknown unicast, broadcast or
//! multicast address goes to every other port (flooding), and ports whose
//! driver turned on promiscuous mode get a copy of everything. A frame is
//! never sent back to the port it came from. Each receiving device then
//! applies its own receive filter ([`RxFilter`]).
//!
//! Each port has one inbox per queue pair, bounded ([`INBOX_FRAMES`],
//! [`INBOX_BYTES`]); a frame for a full inbox is dropped and counted
//! ([`PortStats::dropped`]), so a guest that stops taking frames never
//! holds up the others. Receive steering: a frame goes to the queue pair
//! its flow was last sent from by that port (VIRTIO 1.4 §5.1.9.5.6), else
//! to one chosen by the flow's hash, among the pairs the driver enabled.
//!
//! Panic contract: frames are guest data; forwarding reads only their
//! addresses (bounded accessors). Nothing here panics; a poisoned lock is
//! taken over (every update is a single insert or remove).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::backend::{NetBackend, SendError};
use super::filter::RxFilter;
use super::packet::{MacAddr, Packet};
use super::sys::Doorbell;

/// How long a learned address stays without being seen again.
pub const MAC_AGE: Duration = Duration::from_secs(300);
/// Frames an inbox (one per port and queue pair) holds at most.
pub const INBOX_FRAMES: usize = 1024;
/// Bytes an inbox holds at most.
pub const INBOX_BYTES: usize = 4 << 20;
/// Flow-to-queue-pair slots per port.
const FLOWS: usize = 256;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

struct Inbox {
    frames: Mutex<(VecDeque<Packet>, usize)>,
    bell: Doorbell,
}

struct Port {
    id: u64,
    inboxes: Vec<Inbox>,
    active: AtomicU16,
    promisc: AtomicBool,
    /// Flow hash slot → queue pair + 1 (0: none yet).
    flows: Vec<AtomicU16>,
    delivered: AtomicU64,
    dropped: AtomicU64,
}

impl Port {
    fn steer(&self, p: &Packet) -> usize {
        let active =
            usize::from(self.active.load(Ordering::Relaxed)).clamp(1, self.inboxes.len().max(1));
        if active == 1 {
            return 0;
        }
        let h = p.flow_hash() as usize;
        match usize::from(self.flows[h % FLOWS].load(Ordering::Relaxed)) {
            f if f >= 1 && f <= active => f - 1,
            _ => h % active,
        }
    }

    /// Queues `p` for this port's device (or drops it when full).
    fn push(&self, p: Packet) {
        let Some(inbox) = self.inboxes.get(self.steer(&p)) else {
            return;
        };
        let mut q = lock(&inbox.frames);
        if q.0.len() >= INBOX_FRAMES || q.1 + p.data.len() > INBOX_BYTES {
            drop(q);
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        q.1 += p.data.len();
        q.0.push_back(p);
        drop(q);
        self.delivered.fetch_add(1, Ordering::Relaxed);
        inbox.bell.ring();
    }
}

#[derive(Default)]
struct State {
    ports: BTreeMap<u64, Arc<Port>>,
    macs: HashMap<MacAddr, (u64, Instant)>,
    next_id: u64,
}

/// The switch. Cloning gives another handle on the same switch.
#[derive(Clone, Default)]
pub struct Switch {
    state: Arc<Mutex<State>>,
}

impl core::fmt::Debug for Switch {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let st = lock(&self.state);
        f.debug_struct("Switch")
            .field("ports", &st.ports.len())
            .field("learned", &st.macs.len())
            .finish()
    }
}

/// Counters of one port.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PortStats {
    /// Frames queued for the port's device.
    pub delivered: u64,
    /// Frames dropped because the port's inbox was full.
    pub dropped: u64,
}

impl Switch {
    /// A switch with no ports.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a port with `queue_pairs` inboxes (the device's
    /// `max_virtqueue_pairs`).
    pub fn add_port(&self, queue_pairs: u16) -> std::io::Result<SwitchPort> {
        let inboxes = (0..queue_pairs.max(1))
            .map(|_| {
                Ok(Inbox {
                    frames: Mutex::new((VecDeque::new(), 0)),
                    bell: Doorbell::new()?,
                })
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        let mut st = lock(&self.state);
        let id = st.next_id;
        st.next_id += 1;
        let port = Arc::new(Port {
            id,
            inboxes,
            active: AtomicU16::new(1),
            promisc: AtomicBool::new(false),
            flows: (0..FLOWS).map(|_| AtomicU16::new(0)).collect(),
            delivered: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        });
        st.ports.insert(id, port.clone());
        Ok(SwitchPort {
            port,
            switch: self.clone(),
        })
    }

    /// The number of ports.
    pub fn num_ports(&self) -> usize {
        lock(&self.state).ports.len()
    }

    /// The port that `mac` was last seen on, if learned and fresh.
    pub fn lookup(&self, mac: MacAddr) -> Option<u64> {
        let st = lock(&self.state);
        st.macs
            .get(&mac)
            .filter(|(_, t)| t.elapsed() < MAC_AGE)
            .map(|(id, _)| *id)
    }

    /// Forwards a frame sent by port `from`.
    fn forward(&self, from: u64, p: Packet) {
        let (Some(dst), Some(src)) = (p.dst(), p.src()) else {
            return;
        };
        let targets: Vec<Arc<Port>> = {
            let mut st = lock(&self.state);
            let now = Instant::now();
            if !src.is_multicast() {
                st.macs.insert(src, (from, now));
            }
            let owner = if dst.is_multicast() {
                None
            } else {
                match st.macs.get(&dst) {
                    Some(&(id, t)) if now.duration_since(t) < MAC_AGE => Some(id),
                    Some(_) => {
                        st.macs.remove(&dst);
                        None
                    }
                    None => None,
                }
            };
            st.ports
                .values()
                .filter(|port| port.id != from)
                .filter(|port| match owner {
                    None => true,
                    Some(o) => port.id == o || port.promisc.load(Ordering::Relaxed),
                })
                .cloned()
                .collect()
        };
        let mut p = Some(p);
        let n = targets.len();
        for (i, port) in targets.into_iter().enumerate() {
            let frame = if i + 1 == n { p.take() } else { p.clone() };
            if let Some(frame) = frame {
                port.push(frame);
            }
        }
    }

    fn remove(&self, id: u64) {
        let mut st = lock(&self.state);
        st.ports.remove(&id);
        st.macs.retain(|_, (port, _)| *port != id);
    }
}

/// One port of a [`Switch`], the [`NetBackend`] of one device. Dropping
/// it takes the port (and the addresses learned on it) off the switch.
pub struct SwitchPort {
    port: Arc<Port>,
    switch: Switch,
}

impl core::fmt::Debug for SwitchPort {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SwitchPort")
            .field("id", &self.port.id)
            .finish_non_exhaustive()
    }
}

impl SwitchPort {
    /// The port's number on its switch (0, 1, ... in order of creation).
    pub fn id(&self) -> u64 {
        self.port.id
    }

    /// The port's counters.
    pub fn stats(&self) -> PortStats {
        PortStats {
            delivered: self.port.delivered.load(Ordering::Relaxed),
            dropped: self.port.dropped.load(Ordering::Relaxed),
        }
    }
}

impl Drop for SwitchPort {
    fn drop(&mut self) {
        self.switch.remove(self.port.id);
    }
}

impl NetBackend for SwitchPort {
    /// Learns, forwards and returns; full inboxes drop (counted on the
    /// receiving port), so this never fails.
    fn send(&self, pair: u16, packet: Packet) -> Result<(), SendError> {
        let slot = packet.flow_hash() as usize % FLOWS;
        let v = pair.saturating_add(1);
        if self.port.flows[slot].load(Ordering::Relaxed) != v {
            self.port.flows[slot].store(v, Ordering::Relaxed);
        }
        self.switch.forward(self.port.id, packet);
        Ok(())
    }

    /// Pops from the pair's inbox; clears its doorbell when it is found
    /// empty (and looks once more, so a frame queued meanwhile is not
    /// missed).
    fn recv(&self, pair: u16) -> Option<Packet> {
        let inbox = self.port.inboxes.get(usize::from(pair))?;
        let pop = || {
            let mut q = lock(&inbox.frames);
            let p = q.0.pop_front()?;
            q.1 -= p.data.len();
            Some(p)
        };
        if let Some(p) = pop() {
            return Some(p);
        }
        inbox.bell.clear();
        pop()
    }

    fn rx_fd(&self, pair: u16) -> Option<RawFd> {
        self.port
            .inboxes
            .get(usize::from(pair))
            .map(|i| i.bell.fd())
    }

    fn set_rx_filter(&self, filter: &RxFilter) {
        self.port.promisc.store(filter.promisc, Ordering::Relaxed);
    }

    fn set_active_pairs(&self, pairs: u16) {
        self.port.active.store(pairs, Ordering::Relaxed);
    }

    fn set_rx_wakeup(&self, pair: u16, wanted: bool) {
        if let Some(inbox) = self.port.inboxes.get(usize::from(pair)) {
            let q = lock(&inbox.frames);
            inbox.bell.set_armed(wanted, !q.0.is_empty());
        }
    }
}
