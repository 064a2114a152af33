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
use super::sys::{self, IoOp, Pool, Ring};
use super::Backend;
use crate::model::{DeviceError, QueueSet, QueueWorker};

/// The engine of one worker.
#[derive(Debug)]
pub(crate) enum Executor {
    /// One io_uring.
    Uring(Box<Ring>),
    /// A pool of threads doing blocking system calls.
    Pool(Pool),
    /// No I/O ([`Engine::Null`](super::Engine::Null)); reads are zeroed
    /// from this `/dev/zero`.
    Null(std::fs::File),
}

/// Empties `v` and returns its allocation as a vector of another element
/// type. Used with types that differ only in lifetimes, so the standard
/// library's in-place collection keeps the buffer (at worst this allocates
/// later, as a fresh vector would).
fn recycle<T, U>(mut v: Vec<T>) -> Vec<U> {
    v.clear();
    v.into_iter().filter_map(|_| None).collect()
}

/// Buffers kept across batches so the hot path does not allocate. Always
/// empty between uses (the lifetimes are only placeholders).
#[derive(Debug, Default)]
struct Scratch {
    reqs: Vec<Request<'static>>,
    ops: Vec<IoOp<'static>>,
    which: Vec<usize>,
    used: Vec<(UsedToken, u32)>,
    results: Vec<io::Result<usize>>,
    iovecs: sys::IovScratch,
}

impl Executor {
    /// Runs every request's I/O to the end.
    fn run_all(&mut self, backend: &Backend, reqs: &mut [Request<'_>], scratch: &mut Scratch) {
        let fd = backend.file.as_fd();
        let Scratch {
            ops: ops_buf,
            which,
            results,
            iovecs,
            ..
        } = scratch;
        loop {
            which.clear();
            let mut ops: Vec<IoOp<'_>> = recycle(std::mem::take(ops_buf));
            for (i, r) in reqs.iter().enumerate() {
                if let Some(op) = r.job.op() {
                    which.push(i);
                    ops.push(op);
                }
            }
            if ops.is_empty() {
                *ops_buf = recycle(ops);
                return;
            }
            match self {
                Executor::Uring(ring) => ring.run(fd, &ops, results),
                Executor::Pool(pool) => pool.run(fd, &ops, results),
                Executor::Null(zero) => {
                    sys::execute_null_batch(zero.as_fd(), &ops, results, iovecs);
                }
            }
            *ops_buf = recycle(ops);
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
    scratch: Scratch,
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
            scratch: Scratch::default(),
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
            scratch,
        } = self;
        let backend: &Backend = backend;
        let mem = queues.mem();
        // On an error return the buffer is simply lost (the queue is broken
        // or the device is failing anyway).
        let mut reqs: Vec<Request<'_>> = recycle(std::mem::take(&mut scratch.reqs));
        for &index in ours.iter() {
            let Some(mut q) = queues.get(index) else {
                continue;
            };
            loop {
                reqs.clear();
                while q.pop_into(chain)? {
                    match request::parse(chain, mem, rules, &backend.caps) {
                        Ok(r) => reqs.push(r),
                        Err(e) => return Err(q.chain_error(e)),
                    }
                }
                if !reqs.is_empty() {
                    exec.run_all(backend, &mut reqs, scratch);
                    scratch.used.clear();
                    scratch.used.extend(reqs.iter().map(Request::finish));
                    reqs.clear();
                    q.add_used_batch(&scratch.used)?;
                    q.signal()?;
                }
                if !q.enable_notification()? {
                    break;
                }
            }
        }
        scratch.reqs = recycle(reqs);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recycle_keeps_the_allocation() {
        let x = 7u8;
        let mut v: Vec<&u8> = Vec::with_capacity(64);
        v.push(&x);
        let p = v.as_ptr() as usize;
        let w: Vec<&'static u8> = recycle(v);
        assert!(w.is_empty());
        assert_eq!(w.capacity(), 64);
        assert_eq!(w.as_ptr() as usize, p);
    }
}
