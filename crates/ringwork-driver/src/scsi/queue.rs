//! One SCSI request queue: a [`SlotQueue`] whose slots hold a command's
//! request header and response (§5.6.6.1), the decoding of the response,
//! and the per-LUN count of commands in flight (§5.6.4.1: at most
//! `cmd_per_lun` and the queue size per LUN).
//!
//! A queue of size N has N slots for callers' commands and one more for
//! the driver's own blocking commands (see [`crate::slot_queue`]).
//!
//! Trust and panic contract: as for [`SlotQueue`]; the response header is
//! copied out of DMA memory and checked: a used length that does not
//! cover it breaks the queue (modern interfaces), `sense_len` beyond
//! `sense_size` or the used length and `residual` beyond the data length
//! are clamped. Nothing here panics on device input.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use ringwork_queue::{Dma, DriverQueue, Segment, UsedError};
use ringwork_spec::scsi::{RESP_CMD_SENSE_OFFSET, SCSI_RESP_CMD_HEADER_SIZE};

use super::config::MAX_SENSE_SIZE;
use super::error::{CommandError, ScsiCompletion, ScsiError, ScsiResponse};
use super::request::{lay_out, ScsiCommand, SlotLayout};
use crate::common::SetupError;
pub(crate) use crate::slot_queue::Owner;
use crate::slot_queue::{enqueue_error_into, Completed, Decode, Pending, SlotQueue};

enqueue_error_into!(CommandError);

/// What the driver keeps with each command: its (target, LUN) and its
/// data length.
pub(crate) struct CmdInfo {
    key: (u8, u16),
    data_len: u32,
}

/// Commands in flight per (target, LUN), across all queues.
#[derive(Debug, Default)]
pub(crate) struct LunCounts(BTreeMap<(u8, u16), u32>);

impl LunCounts {
    fn count(&self, key: (u8, u16)) -> u32 {
        self.0.get(&key).copied().unwrap_or(0)
    }
    fn inc(&mut self, key: (u8, u16)) {
        *self.0.entry(key).or_insert(0) += 1;
    }
    fn dec(&mut self, key: (u8, u16)) {
        if let Some(n) = self.0.get_mut(&key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.0.remove(&key);
            }
        }
    }
    /// Forgets everything (after a device reset).
    pub(crate) fn clear(&mut self) {
        self.0.clear();
    }
}

/// Decodes the response of a used command and uncounts it from its LUN.
struct Response<'a> {
    counts: &'a mut LunCounts,
    layout: SlotLayout,
}

impl Decode<CmdInfo, ScsiCompletion> for Response<'_> {
    type Error = ScsiError;

    fn decode(
        &mut self,
        queue: u16,
        done: Completed<'_, CmdInfo>,
    ) -> Result<ScsiCompletion, ScsiError> {
        let CmdInfo { key, data_len } = done.extra;
        self.counts.dec(key);
        let mut resp = [0u8; RESP_CMD_SENSE_OFFSET + MAX_SENSE_SIZE as usize];
        let resp_len = self.layout.resp_len.min(resp.len());
        let read = done
            .slot
            .and_then(|mem| {
                mem.read_bytes(self.layout.resp_off, &mut resp[..resp_len])
                    .ok()
            })
            .is_some();
        if !read {
            return Err(ScsiError::ShortResponse {
                queue,
                len: done.len,
            });
        }
        let le32 = |o: usize| u32::from_le_bytes([resp[o], resp[o + 1], resp[o + 2], resp[o + 3]]);
        let sense_len = le32(0);
        let residual = le32(4);
        let sense_size = resp_len - RESP_CMD_SENSE_OFFSET;
        // Legacy devices may report any used length (§2.7.8 legacy note);
        // on a modern interface the slot queue checked it covers the
        // response header.
        let covered = if done.legacy {
            sense_size
        } else {
            (done.len as usize)
                .saturating_sub(SCSI_RESP_CMD_HEADER_SIZE)
                .min(sense_size)
        };
        let n = (sense_len as usize).min(covered);
        let sense = resp[RESP_CMD_SENSE_OFFSET..RESP_CMD_SENSE_OFFSET + n].to_vec();
        Ok(ScsiCompletion {
            token: (),
            response: ScsiResponse::from(resp[11]),
            status: resp[10],
            status_qualifier: u16::from_le_bytes([resp[8], resp[9]]),
            sense,
            residual: residual.min(data_len),
            clamped: sense_len as usize > covered || residual > data_len,
        })
    }

    fn short(&mut self, queue: u16, len: u32, extra: CmdInfo) -> ScsiError {
        self.counts.dec(extra.key);
        ScsiError::ShortResponse { queue, len }
    }

    fn queue_error(&mut self, _queue: u16, source: UsedError) -> ScsiError {
        ScsiError::Queue {
            queue: "requestq",
            source,
        }
    }
}

/// One request queue. See the [module docs](self).
pub(crate) struct ScsiQueue<D: Dma, Tok> {
    q: SlotQueue<D, Tok, CmdInfo, ScsiCompletion>,
    layout: SlotLayout,
}

impl<D: Dma, Tok> ScsiQueue<D, Tok> {
    /// Wraps an attached virtqueue (request queue `number`, 0-based);
    /// allocates `size + 1` slots.
    pub(crate) fn new(
        number: u16,
        vq: DriverQueue<D, Pending<Tok, CmdInfo>>,
        dma: D,
        layout: SlotLayout,
        legacy: bool,
    ) -> Result<Self, SetupError> {
        let min_used = SCSI_RESP_CMD_HEADER_SIZE as u32;
        let q = SlotQueue::new(number, vq, dma, layout.stride, min_used, legacy)?;
        Ok(Self { q, layout })
    }

    /// The virtqueue.
    pub(crate) fn vq(&mut self) -> &mut DriverQueue<D, Pending<Tok, CmdInfo>> {
        self.q.vq()
    }

    /// Caller commands submitted and not yet returned by `poll`.
    pub(crate) fn in_flight(&self) -> u16 {
        self.q.in_flight()
    }

    /// Lays `cmd` out in a slot and makes it available; counts it against
    /// its LUN (at most `lun_limit` in flight). On failure the owner is
    /// handed back.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn enqueue(
        &mut self,
        cmd: &ScsiCommand<'_>,
        id: u64,
        owner: Owner<Tok>,
        counts: &mut LunCounts,
        lun_limit: u32,
        out: &mut Vec<Segment>,
        inp: &mut Vec<Segment>,
    ) -> Result<(), (CommandError, Owner<Tok>)> {
        let queue = self.q.number();
        if self.q.is_broken() {
            return Err((CommandError::Broken { queue }, owner));
        }
        let key = (cmd.target, cmd.lun);
        if counts.count(key) >= lun_limit {
            return Err((
                CommandError::LunBusy {
                    target: cmd.target,
                    lun: cmd.lun,
                    limit: lun_limit,
                },
                owner,
            ));
        }
        let info = CmdInfo {
            key,
            data_len: cmd.data_len().unwrap_or(u32::MAX),
        };
        let layout = self.layout;
        self.q
            .enqueue(owner, info, out, inp, |mem, addr, out, inp| {
                lay_out(cmd, id, &layout, mem, addr, out, inp)
            })
            .map_err(|(e, owner)| (CommandError::from_enqueue(e, queue), owner))?;
        counts.inc(key);
        Ok(())
    }

    /// The next completed caller command, if any.
    pub(crate) fn poll(
        &mut self,
        counts: &mut LunCounts,
    ) -> Result<Option<ScsiCompletion<Tok>>, ScsiError> {
        let layout = self.layout;
        let c = self.q.poll(&mut Response { counts, layout })?;
        Ok(c.map(|(token, c)| with_token(c, token)))
    }

    /// One round of waiting for the driver's own command: takes one used
    /// buffer, keeping a caller's completion for `poll`. `Some(Some(c))`
    /// once the internal command completed, `Some(None)` when something
    /// else was taken.
    pub(crate) fn reap(
        &mut self,
        counts: &mut LunCounts,
    ) -> Result<Option<Option<ScsiCompletion>>, ScsiError> {
        let layout = self.layout;
        self.q.reap(&mut Response { counts, layout })
    }

    /// After a device reset: every caller token not yet returned; the
    /// queue is usable again.
    pub(crate) fn drain_tokens(&mut self) -> Vec<Tok> {
        self.q.drain_tokens()
    }
}

/// `c` with `token`.
pub(crate) fn with_token<A, B>(c: ScsiCompletion<A>, token: B) -> ScsiCompletion<B> {
    ScsiCompletion {
        token,
        response: c.response,
        status: c.status,
        status_qualifier: c.status_qualifier,
        sense: c.sense,
        residual: c.residual,
        clamped: c.clamped,
    }
}
