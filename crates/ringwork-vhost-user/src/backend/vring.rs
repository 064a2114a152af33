//! Starting, parking and stopping vrings (vhost-user.rst, "Starting and
//! stopping rings"), and building their device-side queues from what the
//! frontend configured. With an inflight area ([`crate::inflight`]), the
//! buffers a previous backend left in flight are resubmitted: split rings
//! re-read them from the descriptor table, packed rings rebuild them from
//! the area's copies and continue from the recorded used position.
//!
//! Trust and panic contract: ring addresses, sizes and bases come from the
//! frontend; a ring that does not lie in shared memory or has an invalid
//! size is refused (the connection ends). Nothing panics.

use std::os::fd::AsRawFd;
use std::sync::Arc;

use ringwork_device::model::{InflightLog, Notify, RunningQueue};
use ringwork_queue::device::{DescChain, DeviceQueue};
use ringwork_queue::{GuestMemory, QueueAddresses, QueueFeatures, QueuePosition, RingFormat};

use super::{proto, BackendError, CallFd, Connection};
use crate::msg::{self, Request, VringAddr};
use crate::sys::EventFd;
use crate::worker::QueueFds;

#[derive(Default)]
pub(super) struct Vring {
    pub(super) size: u16,
    pub(super) addr: Option<VringAddr>,
    pub(super) base: u32,
    pub(super) kick: Option<Arc<EventFd>>,
    pub(super) call: Option<Arc<CallFd>>,
    pub(super) err: Option<Arc<EventFd>>,
    pub(super) enabled: bool,
    pub(super) started: bool,
    /// Whether the queue is in its group's running set.
    pub(super) running: bool,
}

impl Connection {
    pub(super) fn set_vring_fd(
        &mut self,
        r: Request,
        i: usize,
        fd: Option<EventFd>,
    ) -> Result<(), BackendError> {
        let group = self.groups[self.group_of[i]].clone();
        match r {
            Request::SET_VRING_KICK => {
                // A new kick (or polling) starts the ring.
                if self.vrings[i].running {
                    self.park(i);
                }
                if let Some(old) = self.vrings[i].kick.take() {
                    group.unwatch(old.as_raw_fd());
                }
                self.vrings[i].kick = fd.map(Arc::new);
                self.vrings[i].started = true;
                self.update_running(i)?;
            }
            Request::SET_VRING_CALL => {
                let call = fd.map(|f| Arc::new(CallFd(f)));
                self.vrings[i].call = call.clone();
                let mut st = group.lock();
                if let Some(q) = st.queues.iter_mut().find(|q| usize::from(q.index) == i) {
                    q.call = call.map(|c| c as Arc<dyn Notify>);
                }
            }
            _ => {
                let err = fd.map(Arc::new);
                self.vrings[i].err = err.clone();
                let mut st = group.lock();
                if let Some(f) = st.fds.iter_mut().find(|f| usize::from(f.index) == i) {
                    f.err = err;
                }
            }
        }
        Ok(())
    }

    pub(super) fn ring_features(&self) -> (RingFormat, QueueFeatures) {
        QueueFeatures::from_bits(self.features)
    }

    /// Builds the running queue for vring `i` from its configuration (and,
    /// with an inflight area, the buffers to resubmit).
    pub(super) fn build_queue(&self, i: usize) -> Result<RunningQueue, String> {
        let v = &self.vrings[i];
        let a = v.addr.ok_or("no ring addresses (SET_VRING_ADDR)")?;
        if v.size == 0 {
            return Err("no queue size (SET_VRING_NUM)".into());
        }
        let (format, qf) = self.ring_features();
        let size = u64::from(v.size);
        use ringwork_spec::ring::split as sp;
        let (dlen, alen, ulen) = match format {
            RingFormat::Split => (
                sp::desc_table_size(v.size) as u64,
                sp::avail_ring_size(v.size) as u64,
                sp::used_ring_size(v.size) as u64,
            ),
            RingFormat::Packed => (size * ringwork_spec::ring::DESC_SIZE as u64, 4, 4),
        };
        let tr = |uaddr: u64, len: u64, what: &str| {
            self.mem.user_to_guest(uaddr, len).ok_or_else(|| {
                format!("{what} at {uaddr:#x} ({len} bytes) is outside shared memory")
            })
        };
        let addrs = QueueAddresses {
            desc: tr(a.desc, dlen, "descriptor area")?,
            driver: tr(a.avail, alen, "driver area")?,
            device: tr(a.used, ulen, "device area")?,
        };
        let mut q = DeviceQueue::new(format, v.size, addrs, qf).map_err(|e| e.to_string())?;
        let mut pos = QueuePosition::from_vhost_user_base(format, v.base);
        let mem = self.mem.memory();
        let mut heads = Vec::new();
        let mut saved = Vec::new();
        let mut log: Option<Box<dyn InflightLog>> = None;
        if format == RingFormat::Split {
            // The used index lives in the ring (vhost-user gives only the
            // avail base): read it so that restarts continue correctly.
            let idx = mem
                .slice(addrs.device + 2, 2)
                .and_then(|s| s.load_u16_acquire(0).ok())
                .ok_or("used ring unreadable")?;
            pos.next_used = idx;
            if let Some(area) = &self.inflight {
                match area.split_queue(i as u16, v.size, idx) {
                    Some((l, h)) => {
                        // Buffers popped before a restart and never used are
                        // resubmitted; the avail position follows them.
                        pos.next_avail = idx.wrapping_add(h.len() as u16);
                        heads = h;
                        log = Some(Box::new(l));
                    }
                    None => tracing::warn!("vring {i}: inflight area does not fit this queue"),
                }
            }
        } else {
            if v.base == 0 && fresh_packed_ring(&mem, addrs.desc) {
                // Frontends that predate the packed ring-base encoding (Linux's
                // virtio_uml) send 0 for a new ring, whose wrap counters are 1
                // (VIRTIO 1.4 §2.8.1). A ring that really stopped at offset 0
                // with both wrap counters 0 has descriptor 0 marked used (it
                // was used in the previous lap), so the two cannot be confused.
                pos = QueuePosition::default();
            } else if v.base >> 16 == 0 {
                // The 16-bit encoding (DPDK's virtio-user sends 0x8000 for a
                // new ring): only the avail offset and wrap counter. Such
                // frontends start and stop rings with nothing in flight, so
                // the used position is the avail position (as DPDK's vhost
                // library reads it). In-flight records, below, override.
                pos.next_used = pos.next_avail;
                pos.used_wrap = pos.avail_wrap;
            }
            if let Some(area) = &self.inflight {
                // Copies of the in-flight chains' descriptors, and the used
                // position the crashed backend recorded (the frontend's base
                // cannot know it); the ring is read only to tell whether a
                // half-recorded batch of used entries reached the driver.
                let ring_flags = |slot: u16| {
                    let at = addrs.desc + u64::from(slot) * ringwork_spec::ring::DESC_SIZE as u64;
                    mem.slice(at + 14, 2)
                        .and_then(|s| s.load_u16_acquire(0).ok())
                };
                match area.packed_queue(i as u16, v.size, pos, ring_flags) {
                    Some(rec) => {
                        pos = rec.position;
                        saved = rec.chains;
                        log = Some(Box::new(rec.log));
                    }
                    None => tracing::warn!("vring {i}: inflight area does not fit this queue"),
                }
            }
        }
        q.set_position(pos).map_err(|e| e.to_string())?;
        let mut rq = RunningQueue::new(i as u16, q, None);
        for head in heads {
            let mut c = DescChain::new();
            rq.queue
                .chain_at(&*mem, head, &mut c)
                .map_err(|e| format!("resubmitting in-flight head {head}: {e}"))?;
            rq.resubmit.push_back(c);
        }
        for (at, descs) in &saved {
            let mut c = DescChain::new();
            if let Err(e) = rq.queue.chain_from_descriptors(&*mem, descs, *at, &mut c) {
                // The saved copies are the frontend's to corrupt: like a bad
                // buffer from the driver, this breaks the queue (the driver
                // sees DEVICE_NEEDS_RESET once the worker touches it).
                tracing::warn!("vring {i}: in-flight buffer at {at} cannot be resubmitted: {e}");
                rq.queue.mark_broken();
                rq.resubmit.clear();
                break;
            }
            rq.resubmit.push_back(c);
        }
        if !rq.resubmit.is_empty() {
            tracing::info!(
                queue = i,
                count = rq.resubmit.len(),
                "resubmitting in-flight buffers"
            );
        }
        rq.inflight = log;
        Ok(rq)
    }

    /// Puts vring `i` into or out of its group's running set according to
    /// its started/enabled state.
    pub(super) fn update_running(&mut self, i: usize) -> Result<(), BackendError> {
        let v = &self.vrings[i];
        let should = v.started && (v.enabled || !self.protocol_negotiated());
        if should == v.running {
            return Ok(());
        }
        if !should {
            self.park(i);
            return Ok(());
        }
        let mut queue = match self.build_queue(i) {
            Ok(q) => q,
            Err(reason) => {
                return Err(proto(
                    Request::SET_VRING_KICK,
                    format!("vring {i}: {reason}"),
                ));
            }
        };
        let gi = self.group_of[i];
        let group = self.groups[gi].clone();
        let mut st = group.lock();
        if st.worker.is_none() {
            let w = self
                .device
                .start_worker(
                    &self.group_queues[gi],
                    self.features & !(1 << msg::F_PROTOCOL_FEATURES),
                    self.events.clone(),
                )
                .map_err(|e| proto(Request::SET_VRING_KICK, format!("starting queue {i}: {e}")))?;
            st.worker = Some(w);
        }
        st.mem = self.mem.memory();
        let v = &self.vrings[i];
        queue.call = v.call.clone().map(|c| c as Arc<dyn Notify>);
        st.queues.push(queue);
        st.fds.push(QueueFds {
            index: i as u16,
            kick: v.kick.clone(),
            err: v.err.clone(),
        });
        if let Some(k) = &v.kick {
            group.watch_kick(i as u16, k)?;
        }
        drop(st);
        self.vrings[i].running = true;
        self.device.queue_running(i as u16, true);
        group.wake();
        tracing::debug!(queue = i, "queue running");
        Ok(())
    }

    /// Takes vring `i` out of its running set, remembering its position.
    pub(super) fn park(&mut self, i: usize) {
        let group = self.groups[self.group_of[i]].clone();
        if let Some(q) = group.take_queue(i as u16) {
            let format = q.queue.format();
            self.vrings[i].base = q.queue.position().to_vhost_user_base(format);
        }
        if self.vrings[i].running {
            self.device.queue_running(i as u16, false);
        }
        self.vrings[i].running = false;
    }

    /// GET_VRING_BASE: stops the ring and returns its base.
    pub(super) fn stop_vring(&mut self, i: usize) -> u32 {
        if self.vrings[i].running {
            self.park(i);
        }
        let v = &mut self.vrings[i];
        v.started = false;
        if let Some(k) = v.kick.take() {
            self.groups[self.group_of[i]].unwatch(k.as_raw_fd());
        }
        v.base
    }

    pub(super) fn stop_all(&mut self) {
        for i in 0..self.vrings.len() {
            if self.vrings[i].running {
                self.park(i);
            }
        }
    }
}

/// Whether descriptor 0 of a packed ring at `desc` was never used (its
/// VIRTQ_DESC_F_USED flag is clear): a ring in its first lap.
fn fresh_packed_ring(mem: &ringwork_device::model::Memory, desc: u64) -> bool {
    mem.slice(desc + 14, 2)
        .and_then(|s| s.read_u16(0).ok())
        .is_some_and(|flags| flags & ringwork_spec::ring::packed::VIRTQ_DESC_F_USED == 0)
}
