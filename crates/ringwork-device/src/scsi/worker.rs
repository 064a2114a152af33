//! The SCSI device's worker: serves whichever of its queues a host gives
//! it, by role (VIRTIO 1.4 §5.6.2): the control queue (task management,
//! asynchronous notification), the event queue (hot-plug events; its
//! eventfd is the worker's event fd) and request queues (commands).
//!
//! Every request is executed and completed inside one `process` call, so
//! nothing is in flight between calls and `quiesce` has nothing to do.
//!
//! Panic contract: nothing here panics on driver input; a chain with
//! segments outside guest memory breaks its queue.

use std::os::fd::RawFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use ringwork_queue::device::DescChain;
use ringwork_spec::scsi::{CONTROLQ_INDEX, EVENTQ_INDEX};

use super::control::{self, MAX_CTRL_REQ};
use super::exec::Exec;
use super::request::{self, Env};
use super::Shared;
use crate::model::{DeviceError, QueueCtx, QueueSet, QueueWorker};

/// The worker. See the [module docs](self).
pub(super) struct ScsiWorker {
    shared: Arc<Shared>,
    queues: Vec<u16>,
    inout: bool,
    exec: Exec,
    chain: DescChain,
}

impl ScsiWorker {
    pub(super) fn new(shared: Arc<Shared>, queues: &[u16], inout: bool) -> Self {
        Self {
            shared,
            queues: queues.to_vec(),
            inout,
            exec: Exec::new(),
            chain: DescChain::new(),
        }
    }

    fn control(&mut self, q: &mut QueueCtx<'_>) -> Result<(), DeviceError> {
        let mem = q.mem();
        loop {
            while q.pop_into(&mut self.chain)? {
                let mut req = [0u8; MAX_CTRL_REQ];
                let mut r = self.chain.reader(mem);
                let n = match r.read(&mut req) {
                    Ok(n) => n,
                    Err(e) => return Err(q.chain_error(e)),
                };
                let resp = control::handle(&req[..n], &self.shared.luns, &self.shared.tasks);
                let mut w = self.chain.writer(mem);
                let len = if w.remaining() < resp.len() {
                    tracing::warn!(
                        room = w.remaining(),
                        need = resp.len(),
                        "SCSI control request without room for its response"
                    );
                    0
                } else {
                    if let Err(e) = w.write(&resp) {
                        return Err(q.chain_error(e));
                    }
                    w.bytes_written()
                };
                q.add_used(self.chain.token(), len)?;
            }
            q.signal()?;
            if !q.enable_notification()? {
                return Ok(());
            }
        }
    }

    fn requests(&mut self, q: &mut QueueCtx<'_>) -> Result<(), DeviceError> {
        let mem = q.mem();
        let sh = &*self.shared;
        loop {
            while q.pop_into(&mut self.chain)? {
                let env = Env {
                    luns: &sh.luns,
                    tasks: &sh.tasks,
                    cdb_size: sh.cdb_size.load(Ordering::Relaxed),
                    sense_size: sh.sense_size.load(Ordering::Relaxed),
                    inout: self.inout,
                };
                match request::handle(&self.chain, mem, &env, &mut self.exec) {
                    Ok((len, guard)) => {
                        q.add_used(self.chain.token(), len)?;
                        // The command left the task set only now that it
                        // is completed (a waiting TMF may finish).
                        drop(guard);
                    }
                    Err(e) => return Err(q.chain_error(e)),
                }
            }
            q.signal()?;
            if !q.enable_notification()? {
                return Ok(());
            }
        }
    }
}

impl QueueWorker for ScsiWorker {
    fn event_fds(&self) -> Vec<RawFd> {
        if self.queues.contains(&(EVENTQ_INDEX as u16)) {
            vec![self.shared.events.fd()]
        } else {
            Vec::new()
        }
    }

    fn process(&mut self, queues: &mut QueueSet<'_>) -> Result<(), DeviceError> {
        let mut first_err = None;
        for i in self.queues.clone() {
            let Some(mut q) = queues.get(i) else {
                continue;
            };
            let r = match u32::from(i) {
                CONTROLQ_INDEX => self.control(&mut q),
                EVENTQ_INDEX => {
                    let r = self.shared.events.deliver(&mut q, &mut self.chain);
                    r.and_then(|()| q.signal())
                }
                _ => self.requests(&mut q),
            };
            if let Err(e) = r {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}
