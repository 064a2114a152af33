//! The device side of a virtqueue: split and packed rings behind one API.
//!
//! A [`DeviceQueue`] holds the queue's configuration and the device's private
//! position in it (next available entry, next used entry, wrap counters).
//! It never holds a pointer into guest memory: every operation takes the
//! [`GuestMemory`] to use, translates the ring parts it touches, and checks
//! everything it reads.
//!
//! ```
//! use ringwork_queue::{DeviceQueue, QueueAddresses, QueueFeatures, RingFormat};
//! use ringwork_queue::test_utils::TestMemory;
//!
//! let mem = TestMemory::new(0x1_0000, 1 << 16);
//! let addrs = QueueAddresses { desc: 0x1_0000, driver: 0x1_1000, device: 0x1_2000 };
//! let mut q = DeviceQueue::new(RingFormat::Split, 256, addrs, QueueFeatures::default()).unwrap();
//! // Nothing was made available yet.
//! assert!(q.pop(&mem).unwrap().is_none());
//! ```
//!
//! Trust and panic contract: the driver is hostile. Indices, heads, links,
//! lengths, addresses and flags are all checked; a violation returns an error
//! and marks the queue *broken* (every later call returns
//! [`DeviceQueueError::Broken`] until [`DeviceQueue::reset`]). The device
//! should then set DEVICE_NEEDS_RESET. Nothing here panics, loops without
//! bound or touches memory outside what [`GuestMemory`] hands out.
//! Each ring entry is read once per pop, so a driver rewriting descriptors
//! concurrently cannot make a validated chain invalid.

mod chain;
mod error;
pub(crate) mod packed;
mod saved;
mod split;

pub use chain::{ChainReader, ChainWriter, DescChain, UsedToken, INLINE_SEGMENTS};
pub use error::{ChainError, ConfigError, DeviceQueueError, RingArea};
pub(crate) use packed::advance;
pub use saved::SavedDesc;

use crate::mem::{GuestMemory, MemSlice};
use crate::types::{QueueAddresses, QueueFeatures, QueuePosition, RingFormat};
use ringwork_spec::ring::notify::NotificationData;

/// Default limit on indirect table entries: the larger of the queue size and
/// this value (QEMU accepts up to 1024 as well).
pub const DEFAULT_MAX_INDIRECT: u32 = 1024;

#[derive(Debug, Clone, Copy)]
pub(crate) struct SplitState {
    next_avail: u16,
    avail_shadow: u16,
    next_used: u16,
    signalled_used: u16,
    signalled_valid: bool,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct PackedState {
    avail_pos: u16,
    avail_wrap: bool,
    used_pos: u16,
    used_wrap: bool,
    signalled_pos: u16,
    signalled_wrap: bool,
    signalled_valid: bool,
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Ring {
    Split(SplitState),
    Packed(PackedState),
}

/// Configuration shared by the split and packed code.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Core {
    size: u16,
    addrs: QueueAddresses,
    features: QueueFeatures,
    max_indirect: u32,
}

impl Core {
    /// Translates one ring part.
    #[inline]
    fn area<'m, M: GuestMemory + ?Sized>(
        &self,
        mem: &'m M,
        area: RingArea,
        len: usize,
    ) -> Result<MemSlice<'m>, DeviceQueueError> {
        let addr = match area {
            RingArea::Descriptors => self.addrs.desc,
            RingArea::Driver => self.addrs.driver,
            RingArea::Device => self.addrs.device,
        };
        mem.slice(addr, len)
            .ok_or(DeviceQueueError::RingOutOfMemory { area, addr, len })
    }

    /// Validates an indirect table length; returns its entry count.
    fn indirect_entries(&self, len: u32) -> Result<u32, ChainError> {
        let desc = ringwork_spec::ring::DESC_SIZE as u32;
        if len == 0 || len % desc != 0 {
            return Err(ChainError::IndirectBadLength { len });
        }
        let entries = len / desc;
        if entries > self.max_indirect {
            return Err(ChainError::IndirectTooLarge {
                entries,
                limit: self.max_indirect,
            });
        }
        Ok(entries)
    }
}

/// The device side of one virtqueue. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct DeviceQueue {
    core: Core,
    broken: bool,
    notify_enabled: bool,
    /// Buffers (split) or descriptors (packed) popped but not yet used.
    in_flight: u32,
    ring: Ring,
}

impl DeviceQueue {
    /// A queue of `size` entries at `addrs`, using `format` and the
    /// negotiated `features`.
    ///
    /// Checks the size (VIRTIO 1.4 §2.7: power of two for split; §2.8: any
    /// value up to 32768 for packed) and the alignment of each part (split:
    /// 16/2/4; packed: 16/4/4). Whether the parts are in guest memory is
    /// checked by each operation.
    pub fn new(
        format: RingFormat,
        size: u16,
        addrs: QueueAddresses,
        features: QueueFeatures,
    ) -> Result<Self, ConfigError> {
        use ringwork_spec::ring::{packed as p, split as s};
        let (valid, aligns) = match format {
            RingFormat::Split => (
                s::is_valid_queue_size(size),
                [s::DESC_TABLE_ALIGN, s::AVAIL_RING_ALIGN, s::USED_RING_ALIGN],
            ),
            RingFormat::Packed => (
                p::is_valid_queue_size(size),
                [
                    p::DESC_RING_ALIGN,
                    p::EVENT_SUPPRESS_ALIGN,
                    p::EVENT_SUPPRESS_ALIGN,
                ],
            ),
        };
        if !valid {
            return Err(ConfigError::InvalidSize { format, size });
        }
        for ((area, addr), align) in [
            (RingArea::Descriptors, addrs.desc),
            (RingArea::Driver, addrs.driver),
            (RingArea::Device, addrs.device),
        ]
        .into_iter()
        .zip(aligns)
        {
            if addr % align as u64 != 0 {
                return Err(ConfigError::Misaligned {
                    area,
                    addr,
                    align: align as u64,
                });
            }
        }
        Ok(Self {
            core: Core {
                size,
                addrs,
                features,
                max_indirect: DEFAULT_MAX_INDIRECT.max(u32::from(size)),
            },
            broken: false,
            notify_enabled: true,
            in_flight: 0,
            ring: Self::initial_ring(format),
        })
    }

    fn initial_ring(format: RingFormat) -> Ring {
        match format {
            RingFormat::Split => Ring::Split(SplitState {
                next_avail: 0,
                avail_shadow: 0,
                next_used: 0,
                signalled_used: 0,
                signalled_valid: false,
            }),
            RingFormat::Packed => Ring::Packed(PackedState {
                avail_pos: 0,
                avail_wrap: true,
                used_pos: 0,
                used_wrap: true,
                signalled_pos: 0,
                signalled_wrap: true,
                signalled_valid: false,
            }),
        }
    }

    /// Sets the limit on indirect table entries (default: the larger of the
    /// queue size and [`DEFAULT_MAX_INDIRECT`]; at most 65536).
    pub fn set_max_indirect(&mut self, entries: u32) {
        self.core.max_indirect = entries.clamp(1, 65536);
    }

    /// The queue size.
    pub fn size(&self) -> u16 {
        self.core.size
    }

    /// The ring format.
    pub fn format(&self) -> RingFormat {
        match self.ring {
            Ring::Split(_) => RingFormat::Split,
            Ring::Packed(_) => RingFormat::Packed,
        }
    }

    /// The negotiated features this queue uses.
    pub fn features(&self) -> QueueFeatures {
        self.core.features
    }

    /// The ring addresses.
    pub fn addresses(&self) -> QueueAddresses {
        self.core.addrs
    }

    /// Whether an earlier driver error broke the queue.
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// Marks the queue broken (e.g. the device found a malformed request in
    /// a chain's payload and wants the driver to reset it).
    pub fn mark_broken(&mut self) {
        self.broken = true;
    }

    /// Whether available-buffer notifications are enabled (as
    /// [`Self::enable_notification`] and [`Self::disable_notification`]
    /// last left them; enabled initially and after a reset).
    pub fn notification_enabled(&self) -> bool {
        self.notify_enabled
    }

    /// Buffers (split) or descriptors (packed) popped and not yet used.
    pub fn in_flight(&self) -> u32 {
        self.in_flight
    }

    /// Resets the queue to its initial state (VIRTIO 1.4 §2.6.1.1, "Virtqueue
    /// Reset"): positions back to zero, wrap counters to 1, notifications
    /// enabled, not broken. The configuration is kept.
    pub fn reset(&mut self) {
        self.ring = Self::initial_ring(self.format());
        self.broken = false;
        self.notify_enabled = true;
        self.in_flight = 0;
    }

    /// The device's current position, for saving (see [`QueuePosition`]).
    pub fn position(&self) -> QueuePosition {
        match self.ring {
            Ring::Split(s) => QueuePosition {
                next_avail: s.next_avail,
                next_used: s.next_used,
                ..QueuePosition::default()
            },
            Ring::Packed(p) => QueuePosition {
                next_avail: p.avail_pos,
                avail_wrap: p.avail_wrap,
                next_used: p.used_pos,
                used_wrap: p.used_wrap,
            },
        }
    }

    /// Restores a saved position. Buffers between the used and the avail
    /// position count as in flight (they can be completed with tokens from
    /// [`Self::inflight_token`]). Fails (changing nothing) when a packed
    /// offset is not below the queue size.
    pub fn set_position(&mut self, pos: QueuePosition) -> Result<(), DeviceQueueError> {
        match &mut self.ring {
            Ring::Split(s) => {
                *s = SplitState {
                    next_avail: pos.next_avail,
                    avail_shadow: pos.next_avail,
                    next_used: pos.next_used,
                    signalled_used: pos.next_used,
                    signalled_valid: false,
                };
                self.in_flight = u32::from(pos.next_avail.wrapping_sub(pos.next_used))
                    .min(u32::from(self.core.size));
            }
            Ring::Packed(p) => {
                if pos.next_avail >= self.core.size || pos.next_used >= self.core.size {
                    return Err(DeviceQueueError::Usage("packed position beyond queue size"));
                }
                *p = PackedState {
                    avail_pos: pos.next_avail,
                    avail_wrap: pos.avail_wrap,
                    used_pos: pos.next_used,
                    used_wrap: pos.used_wrap,
                    signalled_pos: pos.next_used,
                    signalled_wrap: pos.used_wrap,
                    signalled_valid: false,
                };
                let size = u32::from(self.core.size);
                let lin = |pos: u16, wrap: bool| u32::from(pos) + if wrap { size } else { 0 };
                self.in_flight = (lin(pos.next_avail, pos.avail_wrap) + 2 * size
                    - lin(pos.next_used, pos.used_wrap))
                    % (2 * size);
            }
        }
        self.broken = false;
        Ok(())
    }

    /// Pops the next available chain, or `None` when the driver has made
    /// nothing new available.
    pub fn pop<M: GuestMemory + ?Sized>(
        &mut self,
        mem: &M,
    ) -> Result<Option<DescChain>, DeviceQueueError> {
        let mut chain = DescChain::new();
        Ok(self.pop_into(mem, &mut chain)?.then_some(chain))
    }

    /// Like [`Self::pop`], but fills `chain` (reusing its heap buffer, so
    /// long chains do not allocate either). Returns `false` when nothing is
    /// available (then `chain` is unspecified).
    pub fn pop_into<M: GuestMemory + ?Sized>(
        &mut self,
        mem: &M,
        chain: &mut DescChain,
    ) -> Result<bool, DeviceQueueError> {
        Ok(self.pop_burst(mem, core::slice::from_mut(chain))? == 1)
    }

    /// Pops up to `chains.len()` available chains into `chains` (reusing
    /// their buffers); returns how many, the first ones. Same checks and
    /// order as that many [`Self::pop_into`] calls, with the rings
    /// translated once per burst. A device that handles chains in bursts
    /// (pop all, prefetch their buffers, then read them) calls this once
    /// per burst. A short burst does not say the ring was found empty
    /// (with EVENT_IDX only a call that pops nothing asks the driver to
    /// notify): call again, or [`Self::enable_notification`], before
    /// waiting for a notification.
    #[inline]
    pub fn pop_burst<M: GuestMemory + ?Sized>(
        &mut self,
        mem: &M,
        chains: &mut [DescChain],
    ) -> Result<usize, DeviceQueueError> {
        if self.broken {
            return Err(DeviceQueueError::Broken);
        }
        let notify = self.notify_enabled;
        let r = match &mut self.ring {
            Ring::Split(st) => split::pop_burst(&self.core, st, notify, mem, chains),
            Ring::Packed(st) => packed::pop_burst(&self.core, st, notify, mem, chains),
        };
        match r {
            Ok(n) => {
                let slots: u32 = chains
                    .iter()
                    .take(n)
                    .map(|c| u32::from(c.token().ring_slots))
                    .sum();
                let in_flight = self.in_flight + slots;
                if in_flight > u32::from(self.core.size) {
                    self.broken = true;
                    return Err(DeviceQueueError::TooManyInFlight {
                        in_flight,
                        size: self.core.size,
                    });
                }
                self.in_flight = in_flight;
                Ok(n)
            }
            Err(e) => {
                self.broken = true;
                Err(e)
            }
        }
    }

    /// Gives the last chains popped back to the ring unused: the available
    /// position goes back to where the first of `tokens` was popped, so the
    /// next pop returns the same chains again (and a saved
    /// [`Self::position`] no longer counts them as taken). For a device
    /// that stops with buffers popped ahead of need: a buffer it never used
    /// stays the driver's available buffer instead of coming back as used
    /// with nothing written (which a network driver counts as an error).
    ///
    /// `tokens` must be the tokens of the most recent chains popped (from a
    /// pop, not rebuilt with [`Self::inflight_token`] or [`Self::chain_at`]),
    /// in the order they were popped, none of them completed. Tokens out of
    /// order, with a gap, not ending at the last chain popped, or more than
    /// are in flight are refused with [`DeviceQueueError::Usage`], changing
    /// nothing (the queue is not marked broken: this is the caller's
    /// mistake, not the driver's). A chain among the last popped that was
    /// already completed is the caller's duty to leave out: the queue keeps
    /// no record per chain and does not see it (the chain would be popped
    /// and completed twice). On a broken queue: [`DeviceQueueError::Broken`].
    pub fn give_back(&mut self, tokens: &[UsedToken]) -> Result<(), DeviceQueueError> {
        if self.broken {
            return Err(DeviceQueueError::Broken);
        }
        let Some(first) = tokens.first() else {
            return Ok(());
        };
        let size = self.core.size;
        let units: u32 = match self.ring {
            Ring::Split(_) => tokens.len() as u32,
            Ring::Packed(_) => tokens.iter().map(|t| u32::from(t.ring_slots)).sum(),
        };
        if units > self.in_flight {
            return Err(DeviceQueueError::Usage(
                "more chains given back than popped",
            ));
        }
        match &mut self.ring {
            Ring::Split(st) => {
                let mut seq = first.seq;
                for t in tokens {
                    if t.seq != seq {
                        return Err(DeviceQueueError::Usage(
                            "chains given back not in pop order",
                        ));
                    }
                    seq = seq.wrapping_add(1);
                }
                if seq != st.next_avail {
                    return Err(DeviceQueueError::Usage(
                        "chains given back not the last popped",
                    ));
                }
                st.next_avail = first.seq;
            }
            Ring::Packed(st) => {
                // At most one lap back (`units` <= in flight <= size): the
                // first chain was popped in the previous lap exactly when
                // walking forward from it crosses the end of the ring.
                if first.seq >= size {
                    return Err(DeviceQueueError::Usage("token from another queue"));
                }
                let start_wrap = if u32::from(first.seq) + units >= u32::from(size) {
                    !st.avail_wrap
                } else {
                    st.avail_wrap
                };
                let (mut pos, mut wrap) = (first.seq, start_wrap);
                for t in tokens {
                    if t.seq != pos || t.ring_slots == 0 || t.ring_slots > size {
                        return Err(DeviceQueueError::Usage(
                            "chains given back not in pop order",
                        ));
                    }
                    packed::advance(size, &mut pos, &mut wrap, t.ring_slots);
                }
                if (pos, wrap) != (st.avail_pos, st.avail_wrap) {
                    return Err(DeviceQueueError::Usage(
                        "chains given back not the last popped",
                    ));
                }
                (st.avail_pos, st.avail_wrap) = (first.seq, start_wrap);
            }
        }
        self.in_flight -= units;
        Ok(())
    }

    /// Completes a chain: `len` bytes were written into its writable part
    /// (VIRTIO 1.4 §2.7.8 / §2.8.4).
    pub fn add_used<M: GuestMemory + ?Sized>(
        &mut self,
        mem: &M,
        token: UsedToken,
        len: u32,
    ) -> Result<(), DeviceQueueError> {
        self.add_used_batch(mem, &[(token, len)])
    }

    /// Completes several chains at once, publishing them to the driver with
    /// one index (split) or flags (packed) store.
    ///
    /// With VIRTIO_F_IN_ORDER negotiated and more than one chain, the batch
    /// must be in the order the chains were popped, and only one used entry
    /// is written for the whole batch (the last chain's id and `len`; the
    /// driver treats the others as fully written), as VIRTIO 1.4 §2.7.9 and
    /// §2.8.8 allow.
    pub fn add_used_batch<M: GuestMemory + ?Sized>(
        &mut self,
        mem: &M,
        batch: &[(UsedToken, u32)],
    ) -> Result<(), DeviceQueueError> {
        if self.broken {
            return Err(DeviceQueueError::Broken);
        }
        if batch.is_empty() {
            return Ok(());
        }
        let units: u32 = match self.ring {
            Ring::Split(_) => batch.len() as u32,
            Ring::Packed(_) => batch.iter().map(|(t, _)| u32::from(t.ring_slots)).sum(),
        };
        if units > self.in_flight {
            return Err(DeviceQueueError::Usage("more buffers used than popped"));
        }
        let r = match &mut self.ring {
            Ring::Split(st) => split::add_used(&self.core, st, mem, batch),
            Ring::Packed(st) => packed::add_used(&self.core, st, mem, batch),
        };
        match r {
            Ok(()) => {
                self.in_flight -= units;
                Ok(())
            }
            Err(e @ DeviceQueueError::Usage(_)) => Err(e),
            Err(e) => {
                self.broken = true;
                Err(e)
            }
        }
    }

    /// Whether the driver wants a used buffer notification now, given what
    /// was added since the last call (VIRTIO 1.4 §2.7.7 / §2.8.10:
    /// VIRTQ_AVAIL_F_NO_INTERRUPT, `used_event`, or the driver event
    /// suppression structure). Issues the full memory barrier the spec asks
    /// for between publishing used entries and reading the driver's choice.
    pub fn needs_notification<M: GuestMemory + ?Sized>(
        &mut self,
        mem: &M,
    ) -> Result<bool, DeviceQueueError> {
        if self.broken {
            return Err(DeviceQueueError::Broken);
        }
        let r = match &mut self.ring {
            Ring::Split(st) => split::needs_notification(&self.core, st, mem),
            Ring::Packed(st) => packed::needs_notification(&self.core, st, mem),
        };
        if r.is_err() {
            self.broken = true;
        }
        r
    }

    /// Asks the driver to send available buffer notifications again, and
    /// returns whether buffers became available meanwhile (then the device
    /// must keep popping: the driver may not notify for them).
    pub fn enable_notification<M: GuestMemory + ?Sized>(
        &mut self,
        mem: &M,
    ) -> Result<bool, DeviceQueueError> {
        if self.broken {
            return Err(DeviceQueueError::Broken);
        }
        self.notify_enabled = true;
        let r = match &mut self.ring {
            Ring::Split(st) => split::set_notification(&self.core, st, mem, true),
            Ring::Packed(st) => packed::set_notification(&self.core, st, mem, true),
        };
        if r.is_err() {
            self.broken = true;
        }
        r
    }

    /// Asks the driver not to send available buffer notifications (the
    /// device is polling). A hint: the driver may notify anyway.
    pub fn disable_notification<M: GuestMemory + ?Sized>(
        &mut self,
        mem: &M,
    ) -> Result<(), DeviceQueueError> {
        if self.broken {
            return Err(DeviceQueueError::Broken);
        }
        self.notify_enabled = false;
        let r = match &mut self.ring {
            Ring::Split(st) => split::set_notification(&self.core, st, mem, false),
            Ring::Packed(st) => packed::set_notification(&self.core, st, mem, false),
        };
        match r {
            Ok(_) => Ok(()),
            Err(e) => {
                self.broken = true;
                Err(e)
            }
        }
    }

    /// Whether the driver has made buffers available that were not popped
    /// yet: one acquire load of the avail index (split) or of the next
    /// descriptor's flags (packed), and no state change. For devices that
    /// poll their rings instead of waiting for notifications; a `true` is
    /// a hint (the chain is validated when popped), and a broken queue or
    /// unreadable ring is an error.
    pub fn has_available<M: GuestMemory + ?Sized>(
        &self,
        mem: &M,
    ) -> Result<bool, DeviceQueueError> {
        if self.broken {
            return Err(DeviceQueueError::Broken);
        }
        match &self.ring {
            Ring::Split(st) => split::has_available(&self.core, st, mem),
            Ring::Packed(st) => packed::has_available(&self.core, st, mem),
        }
    }

    /// Decodes a driver notification's value under VIRTIO_F_NOTIFICATION_DATA
    /// (VIRTIO 1.4 §2.9) and tells whether it names buffers the device has
    /// not consumed: for split rings the avail index it carries differs from
    /// the device's next one; for packed rings the offset or wrap counter
    /// differ. A hint (the driver may notify without new buffers, and the
    /// value is unchecked peer input): the ring stays authoritative.
    pub fn notification_has_work(&self, value: u32) -> bool {
        let d = NotificationData::from_u32(value);
        match self.ring {
            Ring::Split(s) => d.split_avail_idx() != s.next_avail,
            Ring::Packed(p) => (d.next_off, d.next_wrap) != (p.avail_pos, p.avail_wrap),
        }
    }

    /// Reads again the chain a split ring's descriptor `head` starts, for a
    /// buffer that was in flight when the position was restored (vhost-user
    /// inflight tracking: a restarted device resubmits it). The chain is
    /// validated like a popped one; the avail ring is not touched. Packed
    /// rings refuse (their in-flight descriptors may have been overwritten
    /// by used entries; the caller keeps copies and uses
    /// [`Self::chain_from_descriptors`]).
    pub fn chain_at<M: GuestMemory + ?Sized>(
        &self,
        mem: &M,
        head: u16,
        chain: &mut DescChain,
    ) -> Result<(), DeviceQueueError> {
        match self.ring {
            Ring::Split(_) => split::chain_at(&self.core, mem, head, chain),
            Ring::Packed(_) => Err(DeviceQueueError::Usage(
                "chain_at: packed rings keep no descriptor table",
            )),
        }
    }

    /// Rebuilds a packed ring's chain from copies of the ring descriptors
    /// it occupied ([`DescChain::packed_descriptors`], e.g. kept by
    /// vhost-user inflight tracking), for a buffer that was in flight when
    /// the position was restored ([`Self::set_position`]). `pos` is the
    /// ring offset the chain is taken to start at (below the queue size):
    /// under VIRTIO_F_IN_ORDER the chains must be completed from the used
    /// position on, so give consecutive chains consecutive offsets from it.
    ///
    /// The copies are untrusted and validated exactly as a pop validates
    /// the ring (buffers inside shared memory without overflow, readable
    /// before writable, VIRTQ_DESC_F_NEXT on all but the last, indirect
    /// tables only when negotiated, alone, of a valid length within the
    /// limit); the ring itself is not read.
    /// The chain's token carries the last descriptor's buffer id and the
    /// number of descriptors as its ring slots. Split rings refuse (they
    /// re-read their descriptor table with [`Self::chain_at`]). Errors
    /// leave the queue as it was; the caller decides whether to mark it
    /// broken.
    pub fn chain_from_descriptors<M: GuestMemory + ?Sized>(
        &self,
        mem: &M,
        descs: &[SavedDesc],
        pos: u16,
        chain: &mut DescChain,
    ) -> Result<(), DeviceQueueError> {
        match self.ring {
            Ring::Packed(_) => saved::rebuild(&self.core, mem, descs, pos, chain),
            Ring::Split(_) => Err(DeviceQueueError::Usage(
                "chain_from_descriptors: split rings re-read their table (chain_at)",
            )),
        }
    }

    /// A token to complete a buffer that was in flight when the position was
    /// restored ([`Self::set_position`]), e.g. from vhost-user inflight
    /// tracking: `id` is the head (split) or buffer id (packed), and
    /// `ring_slots` the number of ring descriptors it used (packed; 1 for
    /// split).
    pub fn inflight_token(&self, id: u16, ring_slots: u16) -> UsedToken {
        UsedToken {
            id,
            ring_slots: ring_slots.max(1),
            seq: 0,
            capacity: chain::UNKNOWN_CAPACITY,
        }
    }
}
