//! The block device's data path: one [`BlkWorker`] per queue group.
//!
//! Each [`process`](QueueWorker::process) call, per queue: pop every
//! available chain and parse it ([`request::parse`]), run the I/O of all of
//! them together in rounds (each round runs the next operation of every
//! unfinished request on the engine and waits for all of them), write the
//! status bytes, complete the whole batch with one used-ring publication,
//! notify, and start over while the driver keeps adding requests (the
//! `enable_notification` loop).
//!
//! Trust and panic contract: see the [parent module](super). Nothing is in
//! flight between calls, so the default `quiesce` is right.

use std::io;
use std::os::fd::AsFd;
use std::sync::Arc;

use ringwork_queue::device::{DescChain, UsedToken};

use super::request::{self, Request, Rules};
use super::sys::{IoOp, Pool, Ring};
use super::Backend;
use crate::model::{DeviceError, QueueSet, QueueWorker};

/// The engine of one worker.
#[derive(Debug)]
pub(crate) enum Executor {
    /// One io_uring.
    Uring(Box<Ring>),
    /// A pool of threads doing blocking system calls.
    Pool(Pool),
}

impl Executor {
    /// Runs every request's I/O to the end.
    fn run_all(
        &mut self,
        backend: &Backend,
        reqs: &mut [Request<'_>],
        results: &mut Vec<io::Result<usize>>,
    ) {
        let fd = backend.file.as_fd();
        let mut which = Vec::new();
        loop {
            which.clear();
            let ops: Vec<IoOp<'_>> = reqs
                .iter()
                .enumerate()
                .filter_map(|(i, r)| {
                    let op = r.job.op()?;
                    which.push(i);
                    Some(op)
                })
                .collect();
            if ops.is_empty() {
                return;
            }
            match self {
                Executor::Uring(ring) => ring.run(fd, &ops, results),
                Executor::Pool(pool) => pool.run(fd, &ops, results),
            }
            drop(ops);
            for (&i, res) in which.iter().zip(results.drain(..)) {
                if let Some(r) = reqs.get_mut(i) {
                    r.job.complete(res);
                }
            }
        }
    }
}

/// Serves the requests of a group of queues. See the [module docs](self).
#[derive(Debug)]
pub(crate) struct BlkWorker {
    backend: Arc<Backend>,
    queues: Vec<u16>,
    rules: Rules,
    exec: Executor,
    chain: DescChain,
    used: Vec<(UsedToken, u32)>,
    results: Vec<io::Result<usize>>,
}

impl BlkWorker {
    pub(crate) fn new(
        backend: Arc<Backend>,
        queues: Vec<u16>,
        rules: Rules,
        exec: Executor,
    ) -> Self {
        Self {
            backend,
            queues,
            rules,
            exec,
            chain: DescChain::new(),
            used: Vec::new(),
            results: Vec::new(),
        }
    }
}

impl QueueWorker for BlkWorker {
    fn process(&mut self, queues: &mut QueueSet<'_>) -> Result<(), DeviceError> {
        let Self {
            backend,
            queues: ours,
            rules,
            exec,
            chain,
            used,
            results,
        } = self;
        let backend: &Backend = backend;
        let mem = queues.mem();
        for &index in ours.iter() {
            let Some(mut q) = queues.get(index) else {
                continue;
            };
            loop {
                let mut reqs = Vec::new();
                while q.pop_into(chain)? {
                    match request::parse(chain, mem, rules, &backend.caps) {
                        Ok(r) => reqs.push(r),
                        Err(e) => return Err(q.chain_error(e)),
                    }
                }
                if !reqs.is_empty() {
                    exec.run_all(backend, &mut reqs, results);
                    used.clear();
                    used.extend(reqs.iter().map(Request::finish));
                    drop(reqs);
                    q.add_used_batch(used)?;
                    q.signal()?;
                }
                if !q.enable_notification()? {
                    break;
                }
            }
        }
        Ok(())
    }
}
