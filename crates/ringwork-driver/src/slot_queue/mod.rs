//! A slotted request queue: what the block (VIRTIO 1.4 §5.2) and SCSI
//! (§5.6) drivers share for their request queues.
//!
//! A [`SlotQueue`] is a driver-side virtqueue plus one request slot per
//! queue entry in DMA memory, allocated once at setup (a queue of size N
//! has N slots for callers' requests and one more, slot N, for the
//! driver's own blocking request, so a blocking operation never waits for
//! a caller to poll). It allocates a slot per request, lets the driver lay
//! the request out in it, makes the chain available, and maps each used
//! buffer back to its slot and owner. Completions of callers' requests
//! taken while the driver waits for its own request are kept (at most N)
//! and handed out by the next [`SlotQueue::poll`].
//!
//! What stays with each driver: the request layout inside a slot (the
//! `lay_out` closure given to [`SlotQueue::enqueue`]), per-request data it
//! needs back at completion (`X`), decoding the device's response from the
//! slot ([`Decode`]) and its error types.
//!
//! # Trust and panic contract
//! The device is hostile. Used ids and lengths are checked by the
//! virtqueue ([`DriverQueue::pop_used`]): an id that names no outstanding
//! request (never made available, or already completed) and a used length
//! beyond the request's writable part are [`UsedError`]s that break the
//! virtqueue. On a modern interface, a used length below what every
//! response must hold (`min_used`, e.g. the block status byte or the SCSI
//! response header) is [`Decode::short`] and breaks the slot queue, as
//! does a response [`Decode::decode`] refuses; the caller's token is kept
//! and handed back by [`SlotQueue::drain_tokens`]. Legacy interfaces may
//! report any used length (§2.7.8, legacy note): it is not checked against
//! `min_used`. A broken queue refuses new requests and reports
//! [`UsedError::Broken`] until `drain_tokens` after a device reset; tokens
//! are never lost. Every loop is bounded by the queue size, slot memory is
//! only reached through [`MemSlice`] accessors, and nothing here panics on
//! device input.

use alloc::collections::VecDeque;
use alloc::vec::Vec;

use ringwork_queue::{AddError, Dma, DriverQueue, MemSlice, Rejected, Segment, UsedError};

use crate::common::{pop_or_arm, DmaRegion, SetupError};

#[cfg(test)]
mod tests;

/// Who a request belongs to.
pub(crate) enum Owner<Tok> {
    /// A caller of `submit`.
    User(Tok),
    /// The driver's own blocking request (in the extra slot).
    Internal,
}

/// The token the virtqueue carries for each request: its slot, its owner
/// and what the driver keeps for decoding the completion.
pub(crate) struct Pending<Tok, X> {
    slot: u16,
    owner: Owner<Tok>,
    extra: X,
}

/// Why [`SlotQueue::enqueue`] did not make a request available. Each
/// driver maps it to its own error type ([`enqueue_error_into!`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EnqueueError {
    /// The queue is broken.
    Broken,
    /// No free slot or not enough free descriptors.
    QueueFull,
    /// More segments than the queue can ever hold.
    TooManySegments {
        /// Segments in the chain.
        segments: usize,
        /// The queue size.
        max: usize,
    },
    /// The request does not fit its slot, or is longer than 2^32 bytes.
    TooLarge,
    /// A zero-length segment (no segments at all).
    EmptySegment,
}

/// Implements `$ty::from_enqueue(EnqueueError, queue)` for a driver's
/// request error type, which has the variants `Broken { queue }`,
/// `QueueFull { queue }`, `TooManySegments { segments, max }`, `TooLarge`
/// and `EmptySegment`.
macro_rules! enqueue_error_into {
    ($ty:ty) => {
        impl $ty {
            /// The error for [`EnqueueError`](crate::slot_queue::EnqueueError)
            /// `e` on queue `queue`.
            pub(crate) fn from_enqueue(e: $crate::slot_queue::EnqueueError, queue: u16) -> Self {
                use $crate::slot_queue::EnqueueError as E;
                match e {
                    E::Broken => Self::Broken { queue },
                    E::QueueFull => Self::QueueFull { queue },
                    E::TooManySegments { segments, max } => Self::TooManySegments { segments, max },
                    E::TooLarge => Self::TooLarge,
                    E::EmptySegment => Self::EmptySegment,
                }
            }
        }
    };
}
pub(crate) use enqueue_error_into;

/// A used buffer whose length passed the checks, handed to
/// [`Decode::decode`].
pub(crate) struct Completed<'m, X> {
    /// The request's slot (`None` only if the slot region is smaller than
    /// laid out, which a sound allocator never causes).
    pub slot: Option<MemSlice<'m>>,
    /// The used length: at most the writable size of the chain; at least
    /// `min_used` unless `legacy`.
    pub len: u32,
    /// Legacy interface: `len` is not to be trusted.
    pub legacy: bool,
    /// What the driver kept with the request.
    pub extra: X,
}

/// How a driver turns a used buffer into a completion `Done` (or an error
/// of its own type).
pub(crate) trait Decode<X, Done> {
    /// The driver's error type.
    type Error;
    /// Decodes a completion from its slot. An error means the response
    /// is unusable: the queue breaks and the caller's token is kept for
    /// [`SlotQueue::drain_tokens`].
    fn decode(&mut self, queue: u16, done: Completed<'_, X>) -> Result<Done, Self::Error>;
    /// The device used a request with `len` bytes, fewer than every
    /// response holds (the queue is now broken).
    fn short(&mut self, queue: u16, len: u32, extra: X) -> Self::Error;
    /// The virtqueue failed (or the queue is broken).
    fn queue_error(&mut self, queue: u16, source: UsedError) -> Self::Error;
}

/// A virtqueue with a request slot per entry. See the [module
/// docs](self).
pub(crate) struct SlotQueue<D: Dma, Tok, X, Done> {
    /// The queue number the driver reports in errors.
    number: u16,
    vq: DriverQueue<D, Pending<Tok, X>>,
    slots: DmaRegion<D>,
    stride: usize,
    /// Bytes every response holds (checked on modern interfaces).
    min_used: u32,
    /// Free caller slots.
    free: Vec<u16>,
    /// Completed caller requests not yet polled (their slots are free).
    ready: VecDeque<(Tok, Done)>,
    /// Tokens of requests the device completed invalidly (returned by
    /// `drain_tokens`).
    orphans: Vec<Tok>,
    /// The device returned an unusable response.
    broken: bool,
    /// Legacy interface: used lengths are not trusted.
    legacy: bool,
}

impl<D: Dma, Tok, X, Done> SlotQueue<D, Tok, X, Done> {
    /// Wraps an attached virtqueue; allocates its `size + 1` slots of
    /// `stride` bytes. `number` names the queue in errors.
    pub(crate) fn new(
        number: u16,
        vq: DriverQueue<D, Pending<Tok, X>>,
        dma: D,
        stride: usize,
        min_used: u32,
        legacy: bool,
    ) -> Result<Self, SetupError> {
        let size = vq.size();
        let len = (usize::from(size) + 1) * stride;
        let slots = DmaRegion::new(dma, len, 16)?;
        Ok(Self {
            number,
            vq,
            slots,
            stride,
            min_used,
            free: (0..size).rev().collect(),
            ready: VecDeque::new(),
            orphans: Vec::new(),
            broken: false,
            legacy,
        })
    }

    /// The virtqueue.
    pub(crate) fn vq(&mut self) -> &mut DriverQueue<D, Pending<Tok, X>> {
        &mut self.vq
    }

    /// Queue size.
    pub(crate) fn size(&self) -> u16 {
        self.vq.size()
    }

    /// The queue number errors report.
    pub(crate) fn number(&self) -> u16 {
        self.number
    }

    /// Whether the queue refuses requests (the device broke it).
    pub(crate) fn is_broken(&self) -> bool {
        self.broken || self.vq.is_broken()
    }

    /// Caller requests made available and not yet returned by `poll`.
    pub(crate) fn in_flight(&self) -> u16 {
        (usize::from(self.size()) - self.free.len() + self.ready.len()) as u16
    }

    /// The window on slot `slot` and its device address.
    fn slot(&self, slot: u16) -> Option<(MemSlice<'_>, u64)> {
        let off = usize::from(slot) * self.stride;
        let w = self.slots.slice().subslice(off, self.stride).ok()?;
        Some((w, self.slots.addr(off)))
    }

    fn release(&mut self, slot: u16) {
        if slot < self.size() {
            self.free.push(slot);
        }
    }

    /// Takes a slot for `owner` (a free caller slot, or the driver's own),
    /// has `lay_out` write the request into it (window, device address)
    /// and list the chain in `out` / `inp`, and makes the chain available.
    /// `lay_out` returning `false` is [`EnqueueError::TooLarge`]. Returns
    /// the chain's ring id; on failure the owner is handed back.
    pub(crate) fn enqueue(
        &mut self,
        owner: Owner<Tok>,
        extra: X,
        out: &mut Vec<Segment>,
        inp: &mut Vec<Segment>,
        lay_out: impl FnOnce(MemSlice<'_>, u64, &mut Vec<Segment>, &mut Vec<Segment>) -> bool,
    ) -> Result<u16, (EnqueueError, Owner<Tok>)> {
        if self.is_broken() {
            return Err((EnqueueError::Broken, owner));
        }
        let slot = match owner {
            Owner::User(_) => {
                // Completions kept for `poll` count as in flight.
                if self.ready.len() >= self.free.len() {
                    return Err((EnqueueError::QueueFull, owner));
                }
                match self.free.pop() {
                    Some(s) => s,
                    None => return Err((EnqueueError::QueueFull, owner)),
                }
            }
            Owner::Internal => self.size(),
        };
        let laid = match self.slot(slot) {
            Some((mem, addr)) => lay_out(mem, addr, out, inp),
            None => false,
        };
        if !laid {
            self.release(slot);
            return Err((EnqueueError::TooLarge, owner));
        }
        match self.vq.add(out, inp, Pending { slot, owner, extra }) {
            Ok(id) => Ok(id),
            Err(Rejected { error, token }) => {
                self.release(slot);
                let e = match error {
                    AddError::Broken => EnqueueError::Broken,
                    AddError::NoSpace { .. } => EnqueueError::QueueFull,
                    AddError::TooManySegments { segments, size } => EnqueueError::TooManySegments {
                        segments,
                        max: usize::from(size),
                    },
                    AddError::TooLarge => EnqueueError::TooLarge,
                    AddError::Empty => EnqueueError::EmptySegment,
                };
                Err((e, token.owner))
            }
        }
    }

    /// Takes one used buffer and decodes it (see the module docs for the
    /// checks).
    fn pop<C: Decode<X, Done>>(
        &mut self,
        codec: &mut C,
    ) -> Result<Option<(Owner<Tok>, Done)>, C::Error> {
        if self.broken {
            return Err(codec.queue_error(self.number, UsedError::Broken));
        }
        let used = match pop_or_arm(&mut self.vq) {
            Ok(Some(used)) => used,
            Ok(None) => return Ok(None),
            Err(source) => return Err(codec.queue_error(self.number, source)),
        };
        let Pending { slot, owner, extra } = used.token;
        let r = if !self.legacy && used.len < self.min_used {
            Err(codec.short(self.number, used.len, extra))
        } else {
            let done = Completed {
                slot: self.slot(slot).map(|(mem, _)| mem),
                len: used.len,
                legacy: self.legacy,
                extra,
            };
            codec.decode(self.number, done)
        };
        self.release(slot);
        match r {
            Ok(done) => Ok(Some((owner, done))),
            Err(e) => {
                self.broken = true;
                if let Owner::User(t) = owner {
                    self.orphans.push(t);
                }
                Err(e)
            }
        }
    }

    /// The next completed caller request, if any. Re-arms used buffer
    /// notifications before reporting `None`.
    pub(crate) fn poll<C: Decode<X, Done>>(
        &mut self,
        codec: &mut C,
    ) -> Result<Option<(Tok, Done)>, C::Error> {
        if let Some(c) = self.ready.pop_front() {
            return Ok(Some(c));
        }
        // Bounded: each round takes one used buffer, at most `size` + 1
        // can be outstanding.
        for _ in 0..=usize::from(self.size()) {
            match self.pop(codec)? {
                Some((Owner::User(token), done)) => return Ok(Some((token, done))),
                // A blocking request that timed out earlier: nothing waits
                // for it any more.
                Some((Owner::Internal, _)) => continue,
                None => return Ok(None),
            }
        }
        Ok(None)
    }

    /// One round of waiting for the driver's own request: takes one used
    /// buffer, keeping a caller's completion for `poll`. `Some(Some(done))`
    /// once the driver's request completed, `Some(None)` when something
    /// else was taken, `None` when nothing was used.
    pub(crate) fn reap<C: Decode<X, Done>>(
        &mut self,
        codec: &mut C,
    ) -> Result<Option<Option<Done>>, C::Error> {
        match self.pop(codec)? {
            Some((Owner::User(token), done)) => {
                self.ready.push_back((token, done));
                Ok(Some(None))
            }
            Some((Owner::Internal, done)) => Ok(Some(Some(done))),
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
        tokens.extend(self.ready.drain(..).map(|(t, _)| t));
        tokens.append(&mut self.orphans);
        self.free = (0..self.size()).rev().collect();
        self.broken = false;
        tokens
    }
}
