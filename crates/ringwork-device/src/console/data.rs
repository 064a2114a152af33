//! The data queues (VIRTIO 1.4 §5.3.6): a port's transmitq (driver → host
//! backend) and receiveq (host backend → driver).
//!
//! Transmit: the readable part of each chain is written to the backend,
//! and the chain completed with used length 0 (transmit buffers have no
//! device-writable part, §5.3.6.1). When the backend cannot take more, the
//! chain stays in flight with its offset and the worker waits for the
//! backend; the next chains stay in the ring.
//!
//! Receive: input bytes buffered by the backend ([`PortIo`]) are copied
//! into the writable part of receiveq chains, each completed with the
//! number of bytes written.
//!
//! Trust and panic contract: chains are driver-controlled. A readable
//! buffer in a receiveq or a writable one in a transmitq breaks a driver
//! requirement (§5.3.6.1); it is logged and its wrong part ignored. A chain
//! outside guest memory breaks the queue ([`QueueCtx::chain_error`]).
//! Nothing here panics.

use ringwork_queue::device::DescChain;

use super::backend::{PortIo, Wrote};
use super::control::Complaints;
use crate::model::{DeviceError, QueueCtx};

/// Receive rounds (read input, fill a chain) per call, so that one busy
/// port cannot hold the worker; the caller wakes itself when it is hit.
const RX_ROUNDS: usize = 256;

/// A port's transmit state.
#[derive(Debug, Default)]
pub(super) struct TxState {
    chain: DescChain,
    /// `chain` was popped and is not completed yet.
    busy: bool,
    /// Bytes of `chain` already written.
    offset: usize,
}

impl TxState {
    /// Whether a chain is in flight.
    pub(super) fn busy(&self) -> bool {
        self.busy
    }
}

/// Moves transmitq chains to the backend until the ring is empty or the
/// backend is full. `q` is `None` when the queue is not running (then only
/// held output is flushed).
pub(super) fn transmit(
    q: Option<QueueCtx<'_>>,
    io: &mut PortIo,
    tx: &mut TxState,
    scratch: &mut [u8],
    complaints: &mut Complaints,
) -> Result<(), DeviceError> {
    if !io.flush_backlog() {
        return Ok(());
    }
    let Some(mut q) = q else {
        return Ok(());
    };
    if q.queue().is_broken() {
        return Ok(());
    }
    let mem = q.mem();
    loop {
        if !tx.busy {
            if !q.pop_into(&mut tx.chain)? {
                if q.enable_notification()? {
                    continue;
                }
                break;
            }
            tx.busy = true;
            tx.offset = 0;
            if tx.chain.writable_len() > 0 {
                complaints.log(format_args!(
                    "queue {}: device-writable buffer in a transmitq (§5.3.6.1); ignoring that part",
                    q.index()
                ));
            }
        }
        let mut r = tx.chain.reader(mem);
        r.skip(tx.offset);
        let done = loop {
            let n = match r.read(scratch) {
                Ok(n) => n,
                Err(e) => return Err(q.chain_error(e)),
            };
            if n == 0 {
                break true;
            }
            let mut at = 0;
            while at < n {
                match io.write_output(&scratch[at..n]) {
                    Wrote::Done(k) => {
                        at += k;
                        tx.offset += k;
                    }
                    Wrote::Blocked => break,
                }
            }
            if at < n {
                break false;
            }
        };
        if !done {
            break;
        }
        tx.busy = false;
        q.add_used(tx.chain.token(), 0)?;
    }
    q.signal()
}

/// Completes the chain in flight (for a quiesce): what the backend does not
/// take now is kept in its backlog (bounded).
pub(super) fn abandon(
    q: Option<QueueCtx<'_>>,
    io: &mut PortIo,
    tx: &mut TxState,
    scratch: &mut [u8],
) -> Result<(), DeviceError> {
    if !tx.busy {
        return Ok(());
    }
    let Some(mut q) = q else {
        return Ok(());
    };
    let mem = q.mem();
    let mut r = tx.chain.reader(mem);
    r.skip(tx.offset);
    loop {
        let n = match r.read(scratch) {
            Ok(n) => n,
            Err(e) => return Err(q.chain_error(e)),
        };
        if n == 0 {
            break;
        }
        io.push_backlog(&scratch[..n]);
    }
    tx.busy = false;
    q.add_used(tx.chain.token(), 0)?;
    q.signal()
}

/// Reads the backend's input and, when `deliver`, fills receiveq chains
/// with it. Returns `true` when it stopped with work left (the caller wakes
/// itself). `q` is `None` when the queue is not running.
pub(super) fn receive(
    q: Option<QueueCtx<'_>>,
    io: &mut PortIo,
    chain: &mut DescChain,
    deliver: bool,
    complaints: &mut Complaints,
) -> Result<bool, DeviceError> {
    let q = match q {
        Some(mut q) if deliver => (!q.queue().is_broken()).then_some(q),
        _ => None,
    };
    let mut q = match q {
        Some(q) => q,
        None => {
            // Buffer what fits; the rest waits in the backend.
            while io.in_room() && io.read_input() == super::backend::Input::Data {}
            return Ok(false);
        }
    };
    let mem = q.mem();
    for _ in 0..RX_ROUNDS {
        if io.in_room() {
            io.read_input();
        }
        if io.in_buf.is_empty() {
            q.signal()?;
            return Ok(false);
        }
        if !q.pop_into(chain)? {
            if q.enable_notification()? {
                continue;
            }
            q.signal()?;
            return Ok(false);
        }
        if chain.readable_len() > 0 {
            complaints.log(format_args!(
                "queue {}: device-readable buffer in a receiveq (§5.3.6.1); ignoring that part",
                q.index()
            ));
        }
        let mut w = chain.writer(mem);
        let n = match w.write(&io.in_buf) {
            Ok(n) => n,
            Err(e) => return Err(q.chain_error(e)),
        };
        io.in_buf.drain(..n);
        q.add_used(chain.token(), n as u32)?;
    }
    q.signal()?;
    Ok(true)
}
