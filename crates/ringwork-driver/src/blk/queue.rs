//! One block request queue: a [`SlotQueue`] whose slots hold a request's
//! header, status byte and range table (§5.2.6), and the decoding of the
//! status byte a device wrote.
//!
//! A queue of size N has N slots for callers' requests and one more for
//! the driver's own blocking requests (see [`crate::slot_queue`]).
//!
//! Trust and panic contract: as for [`SlotQueue`]; a used length that
//! does not cover the status byte is [`BlkError::NoStatus`] and breaks the
//! queue (modern interfaces; legacy devices may report any used length,
//! §5.2.6.3). Nothing here panics on device input.

use alloc::vec::Vec;

use ringwork_queue::{Dma, DriverQueue, Segment, UsedError};
use ringwork_spec::blk::BLK_STATUS_SIZE;

use super::error::{BlkCompletion, BlkError, BlkStatus, RequestError};
use super::request::{lay_out, BlkRequest, STATUS_OFF, STATUS_UNSET};
use crate::common::SetupError;
pub(crate) use crate::slot_queue::Owner;
use crate::slot_queue::{enqueue_error_into, Completed, Decode, Pending, SlotQueue};

enqueue_error_into!(RequestError);

/// What a completed request reports: its status and the bytes written
/// into its data segments.
type Done = (BlkStatus, u32);

/// Decodes the status byte of a used request.
struct StatusByte;

impl Decode<(), Done> for StatusByte {
    type Error = BlkError;

    fn decode(&mut self, _queue: u16, done: Completed<'_, ()>) -> Result<Done, BlkError> {
        let status = done
            .slot
            .and_then(|mem| mem.read_u8(STATUS_OFF).ok())
            .unwrap_or(STATUS_UNSET);
        Ok((
            BlkStatus::from(status),
            done.len.saturating_sub(BLK_STATUS_SIZE as u32),
        ))
    }

    fn short(&mut self, queue: u16, len: u32, _: ()) -> BlkError {
        BlkError::NoStatus { queue, len }
    }

    fn queue_error(&mut self, queue: u16, source: UsedError) -> BlkError {
        BlkError::Queue { queue, source }
    }
}

/// One request queue. See the [module docs](self).
pub(crate) struct BlkQueue<D: Dma, Tok>(SlotQueue<D, Tok, (), Done>);

impl<D: Dma, Tok> BlkQueue<D, Tok> {
    /// Wraps an attached virtqueue; allocates its slots (`size + 1` of
    /// `stride` bytes).
    pub(crate) fn new(
        vq: DriverQueue<D, Pending<Tok, ()>>,
        dma: D,
        stride: usize,
        legacy: bool,
    ) -> Result<Self, SetupError> {
        let index = vq.config().index;
        let min_used = BLK_STATUS_SIZE as u32;
        SlotQueue::new(index, vq, dma, stride, min_used, legacy).map(Self)
    }

    /// The virtqueue.
    pub(crate) fn vq(&mut self) -> &mut DriverQueue<D, Pending<Tok, ()>> {
        self.0.vq()
    }

    /// Caller requests submitted and not yet returned by `poll`.
    pub(crate) fn in_flight(&self) -> u16 {
        self.0.in_flight()
    }

    /// Lays `req` out in a slot and makes it available. On failure the
    /// owner is handed back.
    pub(crate) fn enqueue(
        &mut self,
        req: &BlkRequest<'_>,
        owner: Owner<Tok>,
        out: &mut Vec<Segment>,
        inp: &mut Vec<Segment>,
    ) -> Result<(), (RequestError, Owner<Tok>)> {
        let queue = self.0.number();
        self.0
            .enqueue(owner, (), out, inp, |mem, addr, out, inp| {
                lay_out(req, mem, addr, out, inp)
            })
            .map(|_| ())
            .map_err(|(e, owner)| (RequestError::from_enqueue(e, queue), owner))
    }

    /// The next completed caller request, if any.
    pub(crate) fn poll(&mut self) -> Result<Option<BlkCompletion<Tok>>, BlkError> {
        let c = self.0.poll(&mut StatusByte)?;
        Ok(c.map(|(token, (status, written))| BlkCompletion {
            token,
            status,
            written,
        }))
    }

    /// One round of waiting for the driver's own request: takes one used
    /// buffer, keeping a caller's completion for `poll`. Returns the
    /// internal request's status and written length once it completed, and
    /// `Some(None)` when something else was taken.
    pub(crate) fn reap(&mut self) -> Result<Option<Option<Done>>, BlkError> {
        self.0.reap(&mut StatusByte)
    }

    /// After a device reset: every caller token not yet returned (in
    /// flight, completed but not polled, or completed invalidly); the
    /// queue is usable again.
    pub(crate) fn drain_tokens(&mut self) -> Vec<Tok> {
        self.0.drain_tokens()
    }
}
