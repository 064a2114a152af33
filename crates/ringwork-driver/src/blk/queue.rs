//! One request queue: the driver-side virtqueue, the per-entry request
//! slots (header, status byte, range table) in DMA memory allocated once,
//! and the bookkeeping that maps completions back to tokens.
//!
//! A queue of size N has N slots for callers' requests and one more for the
//! driver's own blocking requests, so a blocking operation never waits for
//! a caller to poll. Completions of callers' requests that arrive while a
//! blocking operation waits are kept (at most N) and handed out by the next
//! `poll`.

use alloc::collections::VecDeque;
use alloc::vec::Vec;

use ringwork_queue::{AddError, Dma, DriverQueue, MemSlice, Rejected, Segment, Used};
use ringwork_spec::blk::BLK_STATUS_SIZE;

use super::error::{BlkCompletion, BlkError, BlkStatus, RequestError};
use super::request::{lay_out, BlkRequest, STATUS_OFF};
use crate::common::{pop_or_arm, DmaRegion, SetupError};

/// Who a request belongs to.
pub(crate) enum Owner<Tok> {
    /// A caller of `submit`.
    User(Tok),
    /// The driver's own blocking operation.
    Internal,
}

/// The token the virtqueue carries for each request.
pub(crate) struct Pending<Tok> {
    slot: u16,
    owner: Owner<Tok>,
}

/// A completion the queue produced.
pub(crate) struct Done<Tok> {
    pub owner: Owner<Tok>,
    pub status: BlkStatus,
    pub written: u32,
}

/// One request queue. See the [module docs](self).
pub(crate) struct BlkQueue<D: Dma, Tok> {
    index: u16,
    vq: DriverQueue<D, Pending<Tok>>,
    slots: DmaRegion<D>,
    stride: usize,
    /// Free caller slots.
    free: Vec<u16>,
    /// Completed caller requests not yet polled (their slots are free).
    ready: VecDeque<BlkCompletion<Tok>>,
    /// Tokens of requests the device completed invalidly (returned by
    /// reset).
    orphans: Vec<Tok>,
    /// The device returned a request without a status byte.
    broken: bool,
    /// Legacy interface: used lengths are not trusted (§5.2.6.3).
    legacy: bool,
}

impl<D: Dma, Tok> BlkQueue<D, Tok> {
    /// Wraps an attached virtqueue; allocates its slots (`size + 1` of
    /// `stride` bytes).
    pub(crate) fn new(
        vq: DriverQueue<D, Pending<Tok>>,
        dma: D,
        stride: usize,
        legacy: bool,
    ) -> Result<Self, SetupError> {
        let size = vq.size();
        let len = (usize::from(size) + 1) * stride;
        let slots = DmaRegion::new(dma, len, 16)?;
        Ok(Self {
            index: vq.config().index,
            vq,
            slots,
            stride,
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

    /// Caller requests submitted and not yet returned by `poll`.
    pub(crate) fn in_flight(&self) -> u16 {
        (usize::from(self.size()) - self.free.len() + self.ready.len()) as u16
    }

    fn slot(&self, slot: u16) -> Option<(MemSlice<'_>, u64)> {
        let off = usize::from(slot) * self.stride;
        let w = self.slots.slice().subslice(off, self.stride).ok()?;
        Some((w, self.slots.addr(off)))
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
        let queue = self.index;
        if self.broken || self.vq.is_broken() {
            return Err((RequestError::Broken { queue }, owner));
        }
        let slot = match owner {
            Owner::User(_) => {
                // Completions kept for `poll` count as in flight.
                if self.ready.len() >= self.free.len() {
                    return Err((RequestError::QueueFull { queue }, owner));
                }
                match self.free.pop() {
                    Some(s) => s,
                    None => return Err((RequestError::QueueFull { queue }, owner)),
                }
            }
            Owner::Internal => self.size(),
        };
        let laid = match self.slot(slot) {
            Some((mem, addr)) => lay_out(req, mem, addr, out, inp),
            None => false,
        };
        if !laid {
            self.release(slot);
            return Err((RequestError::TooLarge, owner));
        }
        match self.vq.add(out, inp, Pending { slot, owner }) {
            Ok(_) => Ok(()),
            Err(Rejected { error, token }) => {
                self.release(slot);
                let e = match error {
                    AddError::Broken => RequestError::Broken { queue },
                    AddError::NoSpace { .. } => RequestError::QueueFull { queue },
                    AddError::TooManySegments { segments, size } => RequestError::TooManySegments {
                        segments,
                        max: size.into(),
                    },
                    AddError::TooLarge => RequestError::TooLarge,
                    AddError::Empty => RequestError::EmptySegment,
                };
                Err((e, token.owner))
            }
        }
    }

    fn release(&mut self, slot: u16) {
        if slot < self.size() {
            self.free.push(slot);
        }
    }

    /// Turns a used buffer into a completion: reads the status byte and
    /// checks the used length covers it (modern interfaces).
    fn complete(&mut self, used: Used<Pending<Tok>>) -> Result<Done<Tok>, BlkError> {
        let Pending { slot, owner } = used.token;
        let status = self
            .slot(slot)
            .and_then(|(mem, _)| mem.read_u8(STATUS_OFF).ok())
            .unwrap_or(super::request::STATUS_UNSET);
        self.release(slot);
        if !self.legacy && used.len < BLK_STATUS_SIZE as u32 {
            self.broken = true;
            if let Owner::User(t) = owner {
                self.orphans.push(t);
            }
            return Err(BlkError::NoStatus {
                queue: self.index,
                len: used.len,
            });
        }
        Ok(Done {
            owner,
            status: BlkStatus::from(status),
            written: used.len.saturating_sub(BLK_STATUS_SIZE as u32),
        })
    }

    fn pop(&mut self) -> Result<Option<Done<Tok>>, BlkError> {
        if self.broken {
            return Err(BlkError::Queue {
                queue: self.index,
                source: ringwork_queue::UsedError::Broken,
            });
        }
        match pop_or_arm(&mut self.vq) {
            Ok(Some(used)) => self.complete(used).map(Some),
            Ok(None) => Ok(None),
            Err(source) => Err(BlkError::Queue {
                queue: self.index,
                source,
            }),
        }
    }

    /// The next completed caller request, if any.
    pub(crate) fn poll(&mut self) -> Result<Option<BlkCompletion<Tok>>, BlkError> {
        if let Some(c) = self.ready.pop_front() {
            return Ok(Some(c));
        }
        // Bounded: each round takes one used buffer, at most `size` + 1
        // can be outstanding.
        for _ in 0..=usize::from(self.size()) {
            match self.pop()? {
                Some(Done {
                    owner: Owner::User(token),
                    status,
                    written,
                }) => {
                    return Ok(Some(BlkCompletion {
                        token,
                        status,
                        written,
                    }))
                }
                // A blocking request that timed out earlier: nothing waits
                // for it any more.
                Some(Done {
                    owner: Owner::Internal,
                    ..
                }) => continue,
                None => return Ok(None),
            }
        }
        Ok(None)
    }

    /// One round of waiting for the driver's own request: takes one used
    /// buffer, keeping a caller's completion for `poll`. Returns the
    /// internal request's status and written length once it completed, and
    /// `Some(None)` when something else was taken.
    pub(crate) fn reap(&mut self) -> Result<Option<Option<(BlkStatus, u32)>>, BlkError> {
        match self.pop()? {
            Some(Done {
                owner: Owner::User(token),
                status,
                written,
            }) => {
                self.ready.push_back(BlkCompletion {
                    token,
                    status,
                    written,
                });
                Ok(Some(None))
            }
            Some(Done {
                owner: Owner::Internal,
                status,
                written,
            }) => Ok(Some(Some((status, written)))),
            None => Ok(None),
        }
    }

    /// After a device reset: every caller token not yet returned (in
    /// flight, completed but not polled, or completed invalidly); the
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
