//! One request queue: the driver-side virtqueue, per-entry command slots
//! (request header and response) in DMA memory allocated once, the
//! bookkeeping that maps completions back to tokens, and the per-LUN
//! count of commands in flight (§5.6.4.1: at most `cmd_per_lun` and the
//! queue size per LUN).
//!
//! A queue of size N has N slots for callers' commands and one more for
//! the driver's own blocking commands. Completions of callers' commands
//! that arrive while a blocking command waits are kept (at most N) for the
//! next `poll`.
//!
//! Trust and panic contract: the response header is copied out of DMA
//! memory and checked: a used length that does not cover it breaks the
//! queue (modern interfaces), `sense_len` beyond `sense_size` or the used
//! length and `residual` beyond the data length are clamped. Nothing here
//! panics on device input.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::vec::Vec;

use ringwork_queue::{AddError, Dma, DriverQueue, MemSlice, Rejected, Segment, Used, UsedError};
use ringwork_spec::scsi::{RESP_CMD_SENSE_OFFSET, SCSI_RESP_CMD_HEADER_SIZE};

use super::config::MAX_SENSE_SIZE;
use super::error::{CommandError, ScsiCompletion, ScsiError, ScsiResponse};
use super::request::{lay_out, ScsiCommand, SlotLayout};
use crate::common::{pop_or_arm, DmaRegion, SetupError};

/// Who a command belongs to.
pub(crate) enum Owner<Tok> {
    /// A caller of `submit`.
    User(Tok),
    /// The driver's own blocking command.
    Internal,
}

/// The token the virtqueue carries for each command.
pub(crate) struct Pending<Tok> {
    slot: u16,
    owner: Owner<Tok>,
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

/// One request queue. See the [module docs](self).
pub(crate) struct ScsiQueue<D: Dma, Tok> {
    /// 0-based request queue number.
    number: u16,
    vq: DriverQueue<D, Pending<Tok>>,
    slots: DmaRegion<D>,
    layout: SlotLayout,
    free: Vec<u16>,
    ready: VecDeque<ScsiCompletion<Tok>>,
    orphans: Vec<Tok>,
    broken: bool,
    legacy: bool,
}

impl<D: Dma, Tok> ScsiQueue<D, Tok> {
    /// Wraps an attached virtqueue; allocates `size + 1` slots.
    pub(crate) fn new(
        number: u16,
        vq: DriverQueue<D, Pending<Tok>>,
        dma: D,
        layout: SlotLayout,
        legacy: bool,
    ) -> Result<Self, SetupError> {
        let size = vq.size();
        let slots = DmaRegion::new(dma, (usize::from(size) + 1) * layout.stride, 16)?;
        Ok(Self {
            number,
            vq,
            slots,
            layout,
            free: (0..size).rev().collect(),
            ready: VecDeque::new(),
            orphans: Vec::new(),
            broken: false,
            legacy,
        })
    }

    /// The virtqueue.
    pub(crate) fn vq(&mut self) -> &mut DriverQueue<D, Pending<Tok>> {
        &mut self.vq
    }

    /// Queue size.
    pub(crate) fn size(&self) -> u16 {
        self.vq.size()
    }

    /// Caller commands submitted and not yet returned by `poll`.
    pub(crate) fn in_flight(&self) -> u16 {
        (usize::from(self.size()) - self.free.len() + self.ready.len()) as u16
    }

    fn slot(&self, slot: u16) -> Option<(MemSlice<'_>, u64)> {
        let off = usize::from(slot) * self.layout.stride;
        let w = self.slots.slice().subslice(off, self.layout.stride).ok()?;
        Some((w, self.slots.addr(off)))
    }

    fn release(&mut self, slot: u16) {
        if slot < self.size() {
            self.free.push(slot);
        }
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
        let queue = self.number;
        if self.broken || self.vq.is_broken() {
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
        let slot = match owner {
            Owner::User(_) => {
                if self.ready.len() >= self.free.len() {
                    return Err((CommandError::QueueFull { queue }, owner));
                }
                match self.free.pop() {
                    Some(s) => s,
                    None => return Err((CommandError::QueueFull { queue }, owner)),
                }
            }
            Owner::Internal => self.size(),
        };
        let layout = self.layout;
        let laid = match self.slot(slot) {
            Some((mem, addr)) => lay_out(cmd, id, &layout, mem, addr, out, inp),
            None => false,
        };
        if !laid {
            self.release(slot);
            return Err((CommandError::TooLarge, owner));
        }
        let data_len = cmd.data_len().unwrap_or(u32::MAX);
        let pending = Pending {
            slot,
            owner,
            key,
            data_len,
        };
        match self.vq.add(out, inp, pending) {
            Ok(_) => {
                counts.inc(key);
                Ok(())
            }
            Err(Rejected { error, token }) => {
                self.release(slot);
                let e = match error {
                    AddError::Broken => CommandError::Broken { queue },
                    AddError::NoSpace { .. } => CommandError::QueueFull { queue },
                    AddError::TooManySegments { segments, size } => CommandError::TooManySegments {
                        segments,
                        max: usize::from(size),
                    },
                    AddError::TooLarge => CommandError::TooLarge,
                    AddError::Empty => CommandError::EmptySegment,
                };
                Err((e, token.owner))
            }
        }
    }

    /// Turns a used buffer into a completion (see the module docs).
    fn complete(
        &mut self,
        used: Used<Pending<Tok>>,
        counts: &mut LunCounts,
    ) -> Result<ScsiCompletion<Owner<Tok>>, ScsiError> {
        let Pending {
            slot,
            owner,
            key,
            data_len,
        } = used.token;
        counts.dec(key);
        let mut resp = [0u8; RESP_CMD_SENSE_OFFSET + MAX_SENSE_SIZE as usize];
        let resp_len = self.layout.resp_len.min(resp.len());
        let read = self
            .slot(slot)
            .and_then(|(mem, _)| {
                mem.read_bytes(self.layout.resp_off, &mut resp[..resp_len])
                    .ok()
            })
            .is_some();
        self.release(slot);
        if !read || (!self.legacy && used.len < SCSI_RESP_CMD_HEADER_SIZE as u32) {
            self.broken = true;
            if let Owner::User(t) = owner {
                self.orphans.push(t);
            }
            return Err(ScsiError::ShortResponse {
                queue: self.number,
                len: used.len,
            });
        }
        let le32 = |o: usize| u32::from_le_bytes([resp[o], resp[o + 1], resp[o + 2], resp[o + 3]]);
        let sense_len = le32(0);
        let residual = le32(4);
        let sense_size = resp_len - RESP_CMD_SENSE_OFFSET;
        // Legacy devices may report any used length (§2.7.8 legacy note).
        let covered = if self.legacy {
            sense_size
        } else {
            (used.len as usize - SCSI_RESP_CMD_HEADER_SIZE).min(sense_size)
        };
        let n = (sense_len as usize).min(covered);
        let sense = resp[RESP_CMD_SENSE_OFFSET..RESP_CMD_SENSE_OFFSET + n].to_vec();
        Ok(ScsiCompletion {
            token: owner,
            response: ScsiResponse::from(resp[11]),
            status: resp[10],
            status_qualifier: u16::from_le_bytes([resp[8], resp[9]]),
            sense,
            residual: residual.min(data_len),
            clamped: sense_len as usize > covered || residual > data_len,
        })
    }

    fn pop(
        &mut self,
        counts: &mut LunCounts,
    ) -> Result<Option<ScsiCompletion<Owner<Tok>>>, ScsiError> {
        if self.broken {
            return Err(queue_err(UsedError::Broken));
        }
        match pop_or_arm(&mut self.vq) {
            Ok(Some(used)) => self.complete(used, counts).map(Some),
            Ok(None) => Ok(None),
            Err(source) => Err(queue_err(source)),
        }
    }

    /// The next completed caller command, if any.
    pub(crate) fn poll(
        &mut self,
        counts: &mut LunCounts,
    ) -> Result<Option<ScsiCompletion<Tok>>, ScsiError> {
        if let Some(c) = self.ready.pop_front() {
            return Ok(Some(c));
        }
        // Bounded: at most `size` + 1 commands are outstanding.
        for _ in 0..=usize::from(self.size()) {
            match self.pop(counts)? {
                Some(c) => match split(c) {
                    (Owner::User(token), c) => return Ok(Some(with_token(c, token))),
                    // A blocking command that timed out earlier.
                    (Owner::Internal, _) => continue,
                },
                None => return Ok(None),
            }
        }
        Ok(None)
    }

    /// One round of waiting for the driver's own command: takes one used
    /// buffer, keeping a caller's completion for `poll`. `Some(Some(c))`
    /// once the internal command completed, `Some(None)` when something
    /// else was taken.
    pub(crate) fn reap(
        &mut self,
        counts: &mut LunCounts,
    ) -> Result<Option<Option<ScsiCompletion>>, ScsiError> {
        match self.pop(counts)? {
            Some(c) => match split(c) {
                (Owner::User(token), c) => {
                    self.ready.push_back(with_token(c, token));
                    Ok(Some(None))
                }
                (Owner::Internal, c) => Ok(Some(Some(c))),
            },
            None => Ok(None),
        }
    }

    /// After a device reset: every caller token not yet returned; the
    /// queue is usable again.
    pub(crate) fn drain_tokens(&mut self) -> Vec<Tok> {
        let mut tokens: Vec<Tok> = self
            .vq
            .reset()
            .into_iter()
            .filter_map(|p| match p.owner {
                Owner::User(t) => Some(t),
                Owner::Internal => None,
            })
            .collect();
        tokens.extend(self.ready.drain(..).map(|c| c.token));
        tokens.append(&mut self.orphans);
        self.free = (0..self.size()).rev().collect();
        self.broken = false;
        tokens
    }
}

fn queue_err(source: UsedError) -> ScsiError {
    ScsiError::Queue {
        queue: "requestq",
        source,
    }
}

fn split<Tok>(c: ScsiCompletion<Owner<Tok>>) -> (Owner<Tok>, ScsiCompletion) {
    let ScsiCompletion {
        token,
        response,
        status,
        status_qualifier,
        sense,
        residual,
        clamped,
    } = c;
    (
        token,
        ScsiCompletion {
            token: (),
            response,
            status,
            status_qualifier,
            sense,
            residual,
            clamped,
        },
    )
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
