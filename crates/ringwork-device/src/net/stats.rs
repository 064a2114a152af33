//! Per-device counters: what was moved, and what was dropped and why.
//! Dropping is how a network device says "no" (a malformed transmit
//! chain, a full peer, a filter, no receive buffers); the counters make
//! each reason visible.

use std::sync::atomic::{AtomicU64, Ordering};

/// Live counters (relaxed atomics; read with [`Counters::snapshot`]).
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub tx_packets: AtomicU64,
    pub tx_bytes: AtomicU64,
    pub tx_malformed: AtomicU64,
    pub tx_backend_dropped: AtomicU64,
    pub rx_packets: AtomicU64,
    pub rx_bytes: AtomicU64,
    pub rx_filtered: AtomicU64,
    pub rx_oversized: AtomicU64,
    pub rx_buffer_too_small: AtomicU64,
    pub rx_inactive_queue: AtomicU64,
    pub tx_gso: AtomicU64,
    pub rx_gso: AtomicU64,
    pub rx_streamed: AtomicU64,
    pub rx_offload_refused: AtomicU64,
    pub ctrl_ok: AtomicU64,
    pub ctrl_err: AtomicU64,
}

pub(super) fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

pub(super) fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

/// A snapshot of a device's counters ([`Net::stats`](super::Net::stats)).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct NetStats {
    /// Frames taken from the transmitqs and handed to the backend.
    pub tx_packets: u64,
    /// Their bytes (frames only, no virtio headers).
    pub tx_bytes: u64,
    /// Transmit chains dropped as malformed: a header shorter than the
    /// negotiated one, a frame shorter than an Ethernet header or longer
    /// than [`MAX_FRAME_LEN`](super::MAX_FRAME_LEN) (a GSO frame: than
    /// [`MAX_GSO_FRAME_LEN`](super::MAX_GSO_FRAME_LEN)), a GSO type that
    /// was not negotiated, checksum offsets outside the frame, other
    /// offload fields that do not fit ([`BadOffload`](super::BadOffload)).
    pub tx_malformed: u64,
    /// Frames the backend refused ([`SendError`](super::SendError)).
    pub tx_backend_dropped: u64,
    /// Frames delivered to the receiveqs.
    pub rx_packets: u64,
    /// Their bytes (frames only).
    pub rx_bytes: u64,
    /// Frames the receive filter dropped.
    pub rx_filtered: u64,
    /// Frames dropped for exceeding the MTU (plus Ethernet header and VLAN tag).
    pub rx_oversized: u64,
    /// Frames dropped because a receive buffer could not hold them
    /// (without VIRTIO_NET_F_MRG_RXBUF) or the header (the buffer is
    /// returned with used length 0).
    pub rx_buffer_too_small: u64,
    /// Frames for a queue pair the driver does not use (dropped).
    pub rx_inactive_queue: u64,
    /// Of `tx_packets`, GSO frames (the driver's HOST_TSO4/TSO6/UFO/USO
    /// segmentation requests, passed to the backend unsegmented).
    pub tx_gso: u64,
    /// Of `rx_packets`, GSO frames (delivered unsegmented to a driver
    /// that negotiated the GUEST_ feature for them).
    pub rx_gso: u64,
    /// Of `rx_packets`, frames written with streaming stores
    /// ([`NetOptions::rx_streaming_stores`](super::NetOptions::rx_streaming_stores)).
    pub rx_streamed: u64,
    /// Frames from the backend dropped for their offloads: a GSO type the
    /// driver did not negotiate, or malformed offload fields
    /// ([`BadOffload`](super::BadOffload)).
    pub rx_offload_refused: u64,
    /// Control commands acknowledged with VIRTIO_NET_OK.
    pub ctrl_ok: u64,
    /// Control commands answered with VIRTIO_NET_ERR.
    pub ctrl_err: u64,
}

impl Counters {
    /// The current values.
    pub fn snapshot(&self) -> NetStats {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        NetStats {
            tx_packets: g(&self.tx_packets),
            tx_bytes: g(&self.tx_bytes),
            tx_malformed: g(&self.tx_malformed),
            tx_backend_dropped: g(&self.tx_backend_dropped),
            rx_packets: g(&self.rx_packets),
            rx_bytes: g(&self.rx_bytes),
            rx_filtered: g(&self.rx_filtered),
            rx_oversized: g(&self.rx_oversized),
            rx_buffer_too_small: g(&self.rx_buffer_too_small),
            rx_inactive_queue: g(&self.rx_inactive_queue),
            tx_gso: g(&self.tx_gso),
            rx_gso: g(&self.rx_gso),
            rx_streamed: g(&self.rx_streamed),
            rx_offload_refused: g(&self.rx_offload_refused),
            ctrl_ok: g(&self.ctrl_ok),
            ctrl_err: g(&self.ctrl_err),
        }
    }
}
