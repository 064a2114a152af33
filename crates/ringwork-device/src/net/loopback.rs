//! A reflecting backend: every frame a device transmits on
//! transmitq(k) comes back to it on receiveq(k), like a cable plugged
//! from a port back into itself, or DPDK testpmd's io forwarding on the
//! far side of a link. It needs no peers and no privileges, which makes
//! it the backend for exercising a driver's data path on its own and for
//! packets-per-second benchmarks (`ringwork serve net --loopback`).
//!
//! Each queue pair has one bounded ring of frames ([`LOOPBACK_FRAMES`]); a
//! frame sent while it is full is refused ([`SendError::Full`], counted
//! by the device as a transmit drop), so a driver that stops receiving
//! never makes the device block. Frames keep their checksum request, so
//! a NEEDS_CSUM frame comes back as NEEDS_CSUM to a driver that
//! negotiated VIRTIO_NET_F_GUEST_CSUM (and completed otherwise, by the
//! device's receive path).
//!
//! The doorbell ([`NetBackend::rx_fd`]) is rung when frames arrive and it
//! is not rung yet, and cleared when a receive empties the ring, so a
//! steady stream costs two eventfd system calls per burst, not per frame;
//! while the receive worker polls ([`NetBackend::set_rx_wakeup`] `false`)
//! it is not rung at all (the [`Doorbell`] keeps that state).
//!
//! Panic contract: frames are guest data and are only moved, never
//! parsed. Nothing here panics; a poisoned lock is taken over.

use std::collections::VecDeque;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use super::backend::{NetBackend, SendError};
use super::packet::Packet;
use super::sys::Doorbell;

/// Frames a queue pair's ring holds at most.
pub const LOOPBACK_FRAMES: usize = 4096;

struct Ring {
    frames: Mutex<VecDeque<Packet>>,
    bell: Doorbell,
}

impl Ring {
    fn lock(&self) -> MutexGuard<'_, VecDeque<Packet>> {
        self.frames.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The reflecting backend: what a device sends on a pair comes back on
/// that pair, through a bounded ring of [`LOOPBACK_FRAMES`] frames per pair
/// (a full ring refuses; the device counts a transmit drop).
pub struct Loopback {
    rings: Vec<Ring>,
    reflected: AtomicU64,
    dropped: AtomicU64,
}

impl core::fmt::Debug for Loopback {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Loopback")
            .field("queue_pairs", &self.rings.len())
            .field("reflected", &self.reflected())
            .field("dropped", &self.dropped())
            .finish()
    }
}

impl Loopback {
    /// A backend for a device with `queue_pairs` queue pairs.
    pub fn new(queue_pairs: u16) -> std::io::Result<Self> {
        let rings = (0..queue_pairs.max(1))
            .map(|_| {
                Ok(Ring {
                    frames: Mutex::new(VecDeque::with_capacity(256)),
                    bell: Doorbell::new()?,
                })
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        Ok(Self {
            rings,
            reflected: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        })
    }

    /// Frames sent back so far.
    pub fn reflected(&self) -> u64 {
        self.reflected.load(Ordering::Relaxed)
    }

    /// Frames refused because their pair's ring was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl NetBackend for Loopback {
    fn send(&self, pair: u16, packet: Packet) -> Result<(), SendError> {
        let Some(ring) = self.rings.get(usize::from(pair)) else {
            return Err(SendError::Down);
        };
        let mut st = ring.lock();
        if st.len() >= LOOPBACK_FRAMES {
            drop(st);
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return Err(SendError::Full);
        }
        st.push_back(packet);
        ring.bell.ring();
        drop(st);
        self.reflected.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn send_batch(&self, pair: u16, packets: &mut Vec<Packet>) -> usize {
        let Some(ring) = self.rings.get(usize::from(pair)) else {
            self.dropped
                .fetch_add(packets.len() as u64, Ordering::Relaxed);
            packets.clear();
            return 0;
        };
        let mut st = ring.lock();
        let room = LOOPBACK_FRAMES.saturating_sub(st.len());
        let taken = packets.len().min(room);
        if st.is_empty() && taken == packets.len() {
            // The whole batch into an empty ring: exchange the buffers
            // (both conversions are O(1) here) instead of moving frames.
            let old = std::mem::replace(&mut *st, VecDeque::from(std::mem::take(packets)));
            *packets = Vec::from(old);
        } else {
            st.extend(packets.drain(..taken));
        }
        if taken > 0 {
            ring.bell.ring();
        }
        drop(st);
        let dropped = packets.len();
        packets.clear();
        self.reflected.fetch_add(taken as u64, Ordering::Relaxed);
        if dropped > 0 {
            self.dropped.fetch_add(dropped as u64, Ordering::Relaxed);
        }
        taken
    }

    fn recv_batch(&self, pair: u16, out: &mut VecDeque<Packet>, max: usize) -> usize {
        let Some(ring) = self.rings.get(usize::from(pair)) else {
            return 0;
        };
        let mut st = ring.lock();
        let n = st.len().min(max);
        if out.is_empty() && n == st.len() {
            // Everything into an empty queue: exchange the buffers.
            std::mem::swap(&mut *st, out);
        } else {
            out.extend(st.drain(..n));
        }
        if st.is_empty() {
            ring.bell.clear();
        }
        n
    }

    fn recv(&self, pair: u16) -> Option<Packet> {
        let ring = self.rings.get(usize::from(pair))?;
        let mut st = ring.lock();
        let p = st.pop_front();
        if st.is_empty() {
            ring.bell.clear();
        }
        p
    }

    fn set_rx_wakeup(&self, pair: u16, wanted: bool) {
        if let Some(ring) = self.rings.get(usize::from(pair)) {
            let st = ring.lock();
            ring.bell.set_armed(wanted, !st.is_empty());
        }
    }

    fn rx_fd(&self, pair: u16) -> Option<RawFd> {
        self.rings.get(usize::from(pair)).map(|r| r.bell.fd())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::PartialCsum;

    fn frame(n: u8) -> Packet {
        let mut d = vec![0xff; 6];
        d.extend_from_slice(&[0x52, 0x54, 0, 0, 0, 1, 0x08, 0x00]);
        d.push(n);
        Packet::new(d)
    }

    #[test]
    fn frames_come_back_in_order_on_their_pair() {
        let l = Loopback::new(2).unwrap();
        l.send(0, frame(1)).unwrap();
        l.send(1, frame(2)).unwrap();
        l.send(0, frame(3)).unwrap();
        assert_eq!(l.recv(0).unwrap().data[14], 1);
        assert_eq!(l.recv(0).unwrap().data[14], 3);
        assert!(l.recv(0).is_none());
        assert_eq!(l.recv(1).unwrap().data[14], 2);
        assert_eq!(l.reflected(), 3);
        assert!(matches!(l.send(2, frame(4)), Err(SendError::Down)));
        assert!(l.recv(2).is_none());
        assert!(l.rx_fd(2).is_none());
    }

    #[test]
    fn batches() {
        let l = Loopback::new(1).unwrap();
        let mut v: Vec<Packet> = (0..5).map(frame).collect();
        assert_eq!(l.send_batch(0, &mut v), 5);
        assert!(v.is_empty());
        let mut out = VecDeque::new();
        assert_eq!(l.recv_batch(0, &mut out, 3), 3);
        assert_eq!(l.recv_batch(0, &mut out, 3), 2);
        assert_eq!(l.recv_batch(0, &mut out, 3), 0);
        let seq: Vec<u8> = out.iter().map(|p| p.data[14]).collect();
        assert_eq!(seq, [0, 1, 2, 3, 4]);
        let mut v: Vec<Packet> = (0..4).map(frame).collect();
        assert_eq!(l.send_batch(1, &mut v), 0);
        assert!(v.is_empty());
        assert_eq!(l.dropped(), 4);
        // A full ring takes a prefix.
        let mut v: Vec<Packet> = (0..=LOOPBACK_FRAMES).map(|i| frame(i as u8)).collect();
        assert_eq!(l.send_batch(0, &mut v), LOOPBACK_FRAMES);
        assert_eq!(l.dropped(), 5);
    }

    #[test]
    fn checksum_request_kept() {
        let l = Loopback::new(1).unwrap();
        let mut p = frame(9);
        p.csum = Some(PartialCsum {
            start: 0,
            offset: 4,
        });
        l.send(0, p).unwrap();
        assert_eq!(l.recv(0).unwrap().csum.unwrap().offset, 4);
    }

    #[test]
    fn doorbell_follows_frames_and_the_wakeup_hint() {
        let readable = |fd| crate::console::sys::poll_readable_raw(fd).unwrap_or(false);
        let l = Loopback::new(1).unwrap();
        let fd = l.rx_fd(0).unwrap();
        assert!(!readable(fd));
        l.send(0, frame(1)).unwrap();
        assert!(readable(fd), "rung for a frame");
        let mut out = VecDeque::new();
        assert_eq!(l.recv_batch(0, &mut out, 8), 1);
        assert!(!readable(fd), "cleared once empty");
        // A polling worker: no ringing, frames still delivered.
        l.set_rx_wakeup(0, false);
        l.send(0, frame(2)).unwrap();
        assert!(!readable(fd), "not rung while the worker polls");
        // Going back to sleep with a frame waiting rings at once.
        l.set_rx_wakeup(0, true);
        assert!(readable(fd), "rung when re-armed with frames waiting");
        assert_eq!(l.recv(0).unwrap().data[14], 2);
        assert!(!readable(fd));
        l.set_rx_wakeup(0, true);
        assert!(!readable(fd), "nothing waiting: not rung");
    }

    #[test]
    fn full_ring_refuses() {
        let l = Loopback::new(1).unwrap();
        for _ in 0..LOOPBACK_FRAMES {
            l.send(0, frame(0)).unwrap();
        }
        assert!(matches!(l.send(0, frame(0)), Err(SendError::Full)));
        assert_eq!(l.dropped(), 1);
        assert!(l.recv(0).is_some());
        l.send(0, frame(0)).unwrap();
    }
}
