//! Reconnecting to a restarted backend (vhost-user.rst, "Inflight I/O
//! tracking"): the session is replayed on a new connection — protocol
//! features, driver features, the memory table, the saved inflight area
//! (SET_INFLIGHT_FD with the same descriptor), and every started ring with
//! its old addresses and eventfds — so the driver above notices nothing
//! but a delay. A backend that offers INFLIGHT_SHMFD resubmits the
//! requests that were in flight when it went away; without it, requests
//! the old backend had taken but not completed are taken again from the
//! ring (split rings restart at the used index, as QEMU does) or lost.
//!
//! Ring bases: a split ring restarts at its used index (read from the ring,
//! which lives in our memory); a packed ring is sent the base it was
//! started with, since only the crashed backend knew its position: a
//! backend keeping an inflight record continues from that record.
//!
//! Trust and panic contract: the new backend is a peer like the old one;
//! it must offer every feature and protocol feature in use and enough
//! queues, or the reconnection fails with [`ConnectError::Mismatch`] and
//! the transport stays failed. Nothing panics.

use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use ringwork_queue::GuestMemory;
use ringwork_spec::status::DeviceStatus;
use ringwork_transport::driver::TransportError;

use super::{ConnectError, Handshake, VhostUserTransport};
use crate::msg::{self, VringAddr};

/// How a started ring was set up.
#[derive(Debug, Clone)]
pub(super) struct RingSetup {
    /// SET_VRING_NUM.
    pub num: u32,
    /// SET_VRING_ADDR (frontend addresses).
    pub addr: VringAddr,
    /// SET_VRING_BASE when it started.
    pub base: u32,
    /// Packed ring format.
    pub packed: bool,
    /// Device-visible address of the used ring (split: used index at +2).
    pub used_ring: u64,
}

/// Pause between connection attempts while the backend restarts.
const RETRY: Duration = Duration::from_millis(20);

impl VhostUserTransport {
    /// Connects again to the socket path given to [`Self::connect`] and
    /// restores the session (see the module docs). Called by
    /// [`Transport::wait_interrupt`](ringwork_transport::driver::Transport::wait_interrupt)
    /// when [`TransportOptions::reconnect`](super::TransportOptions::reconnect)
    /// is set.
    pub fn reconnect(&mut self) -> Result<(), ConnectError> {
        let path = self.path.clone().ok_or(ConnectError::NoPath)?;
        let sock = UnixStream::connect(&path)?;
        self.reconnect_stream(sock)
    }

    /// Restores the session over a new connection to the (restarted)
    /// backend.
    pub fn reconnect_stream(&mut self, sock: UnixStream) -> Result<(), ConnectError> {
        let r = self.restore(sock);
        if let Err(e) = &r {
            self.fail("reconnect", e);
        }
        r
    }

    fn restore(&mut self, sock: UnixStream) -> Result<(), ConnectError> {
        let hs = Handshake::run(sock, &self.opts, Some(self.protocol))?;
        if hs.has_pf != self.has_protocol_features || hs.protocol != self.protocol {
            return Err(ConnectError::Mismatch(format!(
                "protocol features {:#x} in use, {:#x} offered",
                self.protocol, hs.protocol_offered
            )));
        }
        let offered = hs.features & !(1 << msg::F_PROTOCOL_FEATURES) & !(1 << msg::F_LOG_ALL);
        if self.driver_features & !offered != 0 {
            return Err(ConnectError::Mismatch(format!(
                "features {:#x} negotiated, {offered:#x} offered",
                self.driver_features
            )));
        }
        if hs.queue_num.is_some_and(|n| n < u64::from(self.num_queues)) {
            return Err(ConnectError::Mismatch(format!(
                "{} queues in use, {:?} offered",
                self.num_queues, hs.queue_num
            )));
        }
        self.fe = hs.fe;
        self.channel = hs.channel;
        self.vhost_features = hs.features;
        self.offered = offered;
        self.protocol_offered = hs.protocol_offered;
        self.config = None;
        if DeviceStatus::from_bits(self.status).contains(DeviceStatus::FEATURES_OK) {
            let mut f = self.driver_features;
            if self.has_protocol_features {
                f |= 1 << msg::F_PROTOCOL_FEATURES;
            }
            self.fe.set_features(f)?;
        }
        if self.mem_sent {
            let region = self.mem.region();
            self.fe.set_mem_table(&[region], &[self.mem.fd()])?;
        }
        if let Some((d, fd)) = &self.inflight {
            self.fe.set_inflight_fd(d, fd.as_fd())?;
        }
        for i in 0..self.vrings.len() {
            let Some(s) = self.vrings[i].setup.clone() else {
                continue;
            };
            let base = if s.packed {
                s.base
            } else {
                let used = self
                    .mem
                    .memory()
                    .slice(s.used_ring + 2, 2)
                    .and_then(|m| m.load_u16_acquire(0).ok())
                    .ok_or(ConnectError::Mismatch(format!(
                        "used ring of queue {i} unreadable"
                    )))?;
                u32::from(used)
            };
            self.start_vring(s.num, &s.addr, base)?;
        }
        if self.has_protocol(crate::msg::protocol::STATUS) {
            self.fe.set_status(self.status)?;
        }
        // Buffers made available while nobody listened: the new backend
        // looks at every started ring.
        for v in self.vrings.iter().filter(|v| v.setup.is_some()) {
            v.kick.signal()?;
        }
        self.error = None;
        self.pending.used_buffer = true;
        tracing::info!("reconnected to the vhost-user backend");
        Ok(())
    }

    /// Retries [`Self::reconnect`] until it works or the configured time is
    /// up.
    pub(super) fn auto_reconnect(&mut self) -> Result<(), TransportError> {
        let limit = self.opts.reconnect.unwrap_or_default();
        let deadline = Instant::now() + limit;
        loop {
            match self.reconnect() {
                Ok(()) => return Ok(()),
                Err(ConnectError::NoPath) => {
                    return Err(TransportError::Disconnected(
                        "no socket path to reconnect to",
                    ))
                }
                Err(ConnectError::Mismatch(_)) => {
                    return Err(TransportError::Disconnected(
                        "the restarted backend cannot continue the session",
                    ))
                }
                Err(e) => tracing::debug!("reconnect attempt: {e}"),
            }
            if Instant::now() >= deadline {
                return Err(TransportError::Disconnected(
                    "the backend did not come back",
                ));
            }
            std::thread::sleep(RETRY);
        }
    }
}
