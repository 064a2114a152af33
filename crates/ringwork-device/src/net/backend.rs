//! What the network device is connected to on the host side: a
//! [`NetBackend`], one port of something that moves Ethernet frames (the
//! built-in [`Switch`](super::Switch), later a tap device or a packet
//! socket).
//!
//! The contract keeps the device's workers simple and non-blocking:
//! [`NetBackend::send`] never blocks (a backend that cannot take a frame
//! now drops it and says so), [`NetBackend::recv`] never blocks, and
//! [`NetBackend::rx_fd`] is a level-triggered fd that is readable while
//! `recv` may return a frame for that queue pair. Receive steering across
//! queue pairs is the backend's job (a multiqueue tap does it in the
//! kernel); the device tells it how many pairs are in use and which pair
//! each transmitted frame came from.
//!
//! Segmentation offload: a backend that can carry GSO frames (a tap: the
//! kernel segments, or hands over unsegmented frames) says so with
//! [`NetBackend::offloads`]; the device then offers the matching
//! HOST_/GUEST_ TSO4, TSO6, ECN, UFO and USO features, takes frames up to
//! [`MAX_GSO_FRAME_LEN`](super::MAX_GSO_FRAME_LEN), and tells the backend
//! what the driver accepts on receive ([`NetBackend::set_guest_offloads`]).
//! The default is no segmentation offload at all (the [`Switch`]).
//!
//! Trust and panic contract: frames handed to `send` are guest data the
//! device has bounded ([`MAX_FRAME_LEN`](super::MAX_FRAME_LEN), or
//! [`MAX_GSO_FRAME_LEN`](super::MAX_GSO_FRAME_LEN) for a GSO frame) and
//! checked ([`Packet::check_offloads`], and only GSO types the driver
//! negotiated), nothing more; backends must not panic on them. Frames a
//! backend returns from `recv` are checked again by the device.
//!
//! [`Switch`]: super::Switch

use std::os::fd::RawFd;

use super::filter::RxFilter;
use super::gso::Offloads;
use super::packet::Packet;

/// Why a backend did not take a frame (the device counts it as a
/// transmit drop; the guest never waits for it).
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The backend has no room for it now.
    #[error("backend full")]
    Full,
    /// The backend is down (e.g. a tap whose interface is down).
    #[error("backend down")]
    Down,
    /// The backend failed.
    #[error("backend I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// One port of a host-side frame mover (see [`crate::net`]).
pub trait NetBackend: Send + Sync {
    /// Sends a frame the guest put on transmitq(`pair` + 1). Never
    /// blocks. A frame with a [`Packet::csum`] request may be passed on
    /// as is when the receiver can complete it, else the backend (or the
    /// receiving device) completes it.
    fn send(&self, pair: u16, packet: Packet) -> Result<(), SendError>;

    /// Sends several frames from transmitq(`pair` + 1), in order, taking
    /// them all out of `packets`; returns how many were taken: the first
    /// ones, the rest were dropped. Never blocks. Default: [`Self::send`]
    /// for each (a frame refused does not stop the ones after it from
    /// being tried, so the count is exact only for backends that refuse
    /// a suffix; it is used for statistics). Backends with a lock per
    /// queue implement it to take the lock once.
    fn send_batch(&self, pair: u16, packets: &mut Vec<Packet>) -> usize {
        let mut n = 0;
        for p in packets.drain(..) {
            match self.send(pair, p) {
                Ok(()) => n += 1,
                Err(e) => tracing::trace!("virtio-net tx: backend dropped a frame: {e}"),
            }
        }
        n
    }

    /// The next frame for receiveq(`pair` + 1), if one is ready. Never
    /// blocks.
    fn recv(&self, pair: u16) -> Option<Packet>;

    /// Appends up to `max` frames for receiveq(`pair` + 1) to `out`;
    /// returns how many. Never blocks. Default: [`Self::recv`] until it
    /// has none. After a call that returned fewer than `max`,
    /// [`Self::rx_fd`] must not stay readable for frames already handed
    /// out.
    fn recv_batch(
        &self,
        pair: u16,
        out: &mut std::collections::VecDeque<Packet>,
        max: usize,
    ) -> usize {
        let mut n = 0;
        while n < max {
            let Some(p) = self.recv(pair) else { break };
            out.push_back(p);
            n += 1;
        }
        n
    }

    /// A level-triggered fd, readable while [`Self::recv`] for `pair` may
    /// return a frame; `None` when there is nothing to wait on (the device
    /// then only receives when woken for another reason).
    fn rx_fd(&self, pair: u16) -> Option<RawFd>;

    /// Whether the receive worker of `pair` wants [`Self::rx_fd`] to
    /// become readable when frames arrive. A worker whose host is polling
    /// the rings says `false` (it looks at the backend on every pass, so
    /// ringing costs a system call per burst for nothing) and `true` before
    /// it may sleep again; on `true` the fd must become readable if frames
    /// already wait. A hint: a backend may keep the fd live regardless.
    /// Default: nothing to do (the fd is always live).
    fn set_rx_wakeup(&self, pair: u16, wanted: bool) {
        let _ = (pair, wanted);
    }

    /// The driver changed the receive filter (a hint: the device applies
    /// the filter itself; a backend may use it to avoid copying frames
    /// the device would drop, or to see promiscuous ports).
    fn set_rx_filter(&self, filter: &RxFilter) {
        let _ = filter;
    }

    /// The driver now uses `pairs` queue pairs (1 after a reset): frames
    /// go to receiveq1..receiveq`pairs` only (VIRTIO 1.4 §5.1.9.5.6).
    fn set_active_pairs(&self, pairs: u16) {
        let _ = pairs;
    }

    /// The offloads the backend carries both ways: segmentation offloads
    /// here make the device offer the matching HOST_ and GUEST_ features
    /// (so `send` may get GSO frames, and `recv` may return them). Asked
    /// once, when the device is made. Default: none.
    fn offloads(&self) -> Offloads {
        Offloads::NONE
    }

    /// What the driver accepts on receive, from the features it
    /// negotiated ([`Offloads::from_guest_features`]; [`Offloads::NONE`]
    /// after a reset): `recv` should hand over only frames within it (the
    /// device drops and counts the others). Default: nothing to do.
    fn set_guest_offloads(&self, offloads: Offloads) {
        let _ = offloads;
    }
}
