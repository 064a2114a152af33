//! Adding buffers to a driver queue: one at a time (direct or through an
//! indirect table), deferred, or a burst of one-segment buffers
//! ([`DriverQueue::add_deferred_burst`]).

use super::{window, AddError, Common, DriverQueue, Prepared, Rejected, Ring, NO_TABLE};
use crate::mem::Dma;
use crate::types::Segment;
use ringwork_spec::ring::VIRTQ_DESC_F_WRITE;

impl<D: Dma, T> DriverQueue<D, T> {
    /// Adds a buffer: `out` segments the device reads, then `inp` segments
    /// it writes. Returns the id it got in the ring. The buffer is visible
    /// to the device at once; call [`Self::kick_prepare`] to learn whether
    /// to notify it.
    pub fn add(&mut self, out: &[Segment], inp: &[Segment], token: T) -> Result<u16, Rejected<T>> {
        self.add_inner(out, inp, token, true)
    }

    /// As [`Self::add`], but on a split ring the buffer is not visible to
    /// the device yet: `avail.idx` is stored by the next [`Self::publish`],
    /// [`Self::kick_prepare`] or [`Self::add`], once for a whole batch (one
    /// store to the line the device polls instead of one per buffer). On a
    /// packed ring the buffer is visible at once, as with [`Self::add`].
    /// A caller that adds deferred buffers must publish or kick before it
    /// waits for them.
    #[inline(always)]
    pub fn add_deferred(
        &mut self,
        out: &[Segment],
        inp: &[Segment],
        token: T,
    ) -> Result<u16, Rejected<T>> {
        self.add_inner(out, inp, token, false)
    }

    /// Adds one-segment buffers (device-writable if `writable`) as
    /// [`Self::add_deferred`] does, while the ring has room and `next`
    /// yields a segment and its token. The checks `add_deferred` makes per
    /// buffer (broken queue, room) are made once for the burst, and the
    /// ring format is matched once. `next` is not called when the ring is
    /// full. Returns how many were added, and, on a queue the device broke,
    /// the first buffer `next` gave, refused with its token (nothing more
    /// is asked for).
    #[inline(always)]
    pub fn add_deferred_burst(
        &mut self,
        writable: bool,
        mut next: impl FnMut() -> Option<(Segment, T)>,
    ) -> (usize, Option<Rejected<T>>) {
        let room = usize::from(self.num_free());
        if room == 0 {
            return (0, None);
        }
        if self.common.broken {
            let refused = next().map(|(_, token)| Rejected {
                error: AddError::Broken,
                token,
            });
            return (0, refused);
        }
        if self.common.indirect_single {
            // One-segment buffers take indirect tables: the general path.
            let mut n = 0;
            while self.num_free() > 0 {
                let Some((seg, token)) = next() else {
                    break;
                };
                let s = [seg];
                let (out, inp): (&[Segment], &[Segment]) =
                    if writable { (&[], &s) } else { (&s, &[]) };
                if let Err(rej) = self.add_chain(out, inp, token, false) {
                    return (n, Some(rej));
                }
                n += 1;
            }
            return (n, None);
        }
        let flags = if writable { VIRTQ_DESC_F_WRITE } else { 0 };
        let capacity = |seg: &Segment| if writable { seg.len } else { 0 };
        let mem = window(&self.ring_mem);
        let common = &mut self.common;
        // A one-descriptor add takes one slot and one id (checked by
        // `num_free`), so `room` counts down exactly.
        let n = match &mut self.ring {
            Ring::Split(r) => fill(room, &mut next, |seg, token| {
                let id = r.add_one(&mem, common.features.in_order, &seg, flags, false);
                common.record(id, token, 1, capacity(&seg), NO_TABLE);
            }),
            Ring::Packed(r) => fill(room, &mut next, |seg, token| {
                let id = r.add_one(&mem, &seg, flags);
                common.record(id, token, 1, capacity(&seg), NO_TABLE);
            }),
        };
        (n, None)
    }

    /// One direct segment (the data path's usual buffer) is added inline in
    /// the caller; everything else goes through [`Self::add_chain`].
    #[inline(always)]
    fn add_inner(
        &mut self,
        out: &[Segment],
        inp: &[Segment],
        token: T,
        publish: bool,
    ) -> Result<u16, Rejected<T>> {
        if !self.common.indirect_single {
            match (out, inp) {
                ([s], []) => return self.add_one(*s, 0, token, publish),
                ([], [s]) => return self.add_one(*s, VIRTQ_DESC_F_WRITE, token, publish),
                _ => {}
            }
        }
        self.add_chain(out, inp, token, publish)
    }

    #[inline(never)]
    fn add_chain(
        &mut self,
        out: &[Segment],
        inp: &[Segment],
        token: T,
        publish: bool,
    ) -> Result<u16, Rejected<T>> {
        match self.try_add(out, inp) {
            Ok(prep) => {
                let mem = window(&self.ring_mem);
                let id = match &mut self.ring {
                    Ring::Split(r) => r.add(&mem, &mut self.common, out, inp, prep, publish),
                    Ring::Packed(r) => r.add(&mem, &mut self.common, out, inp, prep),
                };
                self.common
                    .record(id, token, prep.ring_slots, prep.capacity, prep.table);
                Ok(id)
            }
            Err(error) => Err(Rejected { error, token }),
        }
    }

    /// [`Self::add_inner`] for one segment that goes direct (`flags` 0 or
    /// WRITE): the same checks and records, without the scatter-gather
    /// walk.
    #[inline(always)]
    fn add_one(
        &mut self,
        seg: Segment,
        flags: u16,
        token: T,
        publish: bool,
    ) -> Result<u16, Rejected<T>> {
        if self.common.broken {
            return Err(Rejected {
                error: AddError::Broken,
                token,
            });
        }
        let free = self.num_free();
        if free == 0 {
            return Err(Rejected {
                error: AddError::NoSpace { needed: 1, free },
                token,
            });
        }
        let mem = window(&self.ring_mem);
        let id = match &mut self.ring {
            Ring::Split(r) => r.add_one(&mem, self.common.features.in_order, &seg, flags, publish),
            Ring::Packed(r) => r.add_one(&mem, &seg, flags),
        };
        let capacity = if flags == 0 { 0 } else { seg.len };
        self.common.record(id, token, 1, capacity, NO_TABLE);
        Ok(id)
    }

    fn try_add(&mut self, out: &[Segment], inp: &[Segment]) -> Result<Prepared, AddError> {
        if self.common.broken {
            return Err(AddError::Broken);
        }
        let n = out.len() + inp.len();
        if n == 0 {
            return Err(AddError::Empty);
        }
        let sum = |s: &[Segment]| {
            s.iter()
                .try_fold(0u32, |acc, seg| acc.checked_add(seg.len))
                .ok_or(AddError::TooLarge)
        };
        let capacity = sum(inp)?;
        sum(out)?.checked_add(capacity).ok_or(AddError::TooLarge)?;
        let free = self.num_free();
        let table = self.common.take_table(n);
        let ring_slots = if table.is_some() { 1 } else { n };
        let fail = |common: &mut Common<T>, e| {
            if let Some(t) = table {
                common.free_tables.push(t);
            }
            Err(e)
        };
        if ring_slots > usize::from(self.config.size) {
            return fail(
                &mut self.common,
                AddError::TooManySegments {
                    segments: n,
                    size: self.config.size,
                },
            );
        }
        if ring_slots > usize::from(free) {
            return fail(
                &mut self.common,
                AddError::NoSpace {
                    needed: ring_slots as u16,
                    free,
                },
            );
        }
        Ok(Prepared {
            ring_slots: ring_slots as u16,
            capacity,
            table: table.unwrap_or(NO_TABLE),
        })
    }
}

/// Hands up to `room` buffers from `next` to `add`; returns how many.
#[inline(always)]
fn fill<T>(
    room: usize,
    next: &mut impl FnMut() -> Option<(Segment, T)>,
    mut add: impl FnMut(Segment, T),
) -> usize {
    let mut n = 0;
    while n < room {
        let Some((seg, token)) = next() else {
            break;
        };
        add(seg, token);
        n += 1;
    }
    n
}
