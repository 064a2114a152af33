//! The driver side of a virtqueue: split and packed rings behind one API.
//!
//! A [`DriverQueue`] allocates its rings from a [`Dma`] allocator, adds
//! buffers as scatter-gather lists (direct, or through a preallocated
//! indirect table), decides when to notify the device, and hands back the
//! caller's token for each used buffer, in whatever order the device used
//! them. It keeps a private shadow of every descriptor it wrote and never
//! reads one back from shared memory.
//!
//! Trust and panic contract: the device is hostile. Used ids, lengths and
//! indices are validated against the driver's own records; a violation
//! returns a [`UsedError`] and marks the queue broken (later calls return
//! `Broken` until [`DriverQueue::reset`]). Nothing here panics on device
//! input. Tokens are never lost: an error leaves them in place and
//! [`DriverQueue::reset`] returns every outstanding one.

mod add;
mod error;
mod packed;
mod split;

use alloc::vec::Vec;

pub use error::{AddError, DriverQueueError, Rejected, UsedError};

use crate::fifo::IdFifo;
use crate::mem::{Dma, DmaBuffer, MemSlice};
use crate::types::{QueueAddresses, QueueFeatures, RingFormat};
use ringwork_spec::ring::notify::NotificationData;

/// How to build a [`DriverQueue`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DriverQueueConfig {
    /// Ring format.
    pub format: RingFormat,
    /// Queue size (a power of two for split rings).
    pub size: u16,
    /// Negotiated features.
    pub features: QueueFeatures,
    /// Queue index (or `vq_notif_config_data`), used in notification data.
    pub index: u16,
    /// Use an indirect table for buffers of at least this many segments
    /// (with VIRTIO_F_INDIRECT_DESC); 0 disables indirect tables.
    pub indirect_threshold: u16,
    /// Entries per indirect table; longer buffers go direct.
    pub indirect_max: u16,
    /// Indirect tables preallocated (buffers beyond this go direct).
    pub indirect_tables: u16,
    /// Split rings only: lay the queue out contiguously with this Queue Align,
    /// as legacy interfaces require (VIRTIO 1.4 §2.7.2).
    pub legacy_align: Option<u32>,
}

impl DriverQueueConfig {
    /// Defaults: indirect tables for buffers of 2+ segments (up to 32 each,
    /// `min(size, 128)` tables), modern layout, queue index 0.
    pub fn new(format: RingFormat, size: u16, features: QueueFeatures) -> Self {
        Self {
            format,
            size,
            features,
            index: 0,
            indirect_threshold: 2,
            indirect_max: 32,
            indirect_tables: size.min(128),
            legacy_align: None,
        }
    }
}

/// A buffer the device finished with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Used<T> {
    /// The token given to [`DriverQueue::add`].
    pub token: T,
    /// Bytes the device wrote into the writable part (validated to be at
    /// most its size). For buffers completed as part of an in-order batch
    /// without their own used entry, the whole writable size (VIRTIO 1.4
    /// §2.7.9: "assumed to have been used completely").
    pub len: u32,
    /// The id the buffer had in the ring.
    pub id: u16,
}

const NO_TABLE: u16 = u16::MAX;

#[derive(Debug)]
pub(crate) struct Slot<T> {
    token: Option<T>,
    ring_slots: u16,
    capacity: u32,
    table: u16,
}

/// State both ring formats share.
pub(crate) struct Common<T> {
    size: u16,
    features: QueueFeatures,
    slots: Vec<Slot<T>>,
    /// Outstanding ids in submission order (VIRTIO_F_IN_ORDER only).
    order: IdFifo,
    /// An in-order batch being handed out: (last id, its len).
    batch: Option<(u16, u32)>,
    outstanding: u16,
    broken: bool,
    pool: Option<DmaBuffer>,
    free_tables: Vec<u16>,
    indirect_threshold: u16,
    indirect_max: u16,
    /// Whether a one-segment buffer takes an indirect table.
    indirect_single: bool,
}

impl<T> Common<T> {
    /// Whether to use an indirect table for `n` segments; takes one.
    fn take_table(&mut self, n: usize) -> Option<u16> {
        if !self.features.indirect_desc
            || self.indirect_threshold == 0
            || n < usize::from(self.indirect_threshold)
            || n > usize::from(self.indirect_max)
        {
            return None;
        }
        self.free_tables.pop()
    }

    /// The window and device address of indirect table `t`.
    fn table(&self, t: u16) -> Option<(MemSlice<'_>, u64)> {
        let pool = self.pool.as_ref()?;
        let bytes = usize::from(self.indirect_max) * 16;
        let off = usize::from(t) * bytes;
        let w = pool.slice().subslice(off, bytes).ok()?;
        Some((w, pool.device_addr() + off as u64))
    }

    /// Records a new outstanding buffer.
    #[inline]
    fn record(&mut self, id: u16, token: T, ring_slots: u16, capacity: u32, table: u16) {
        if let Some(slot) = self.slots.get_mut(usize::from(id)) {
            *slot = Slot {
                token: Some(token),
                ring_slots,
                capacity,
                table,
            };
        }
        if self.features.in_order {
            self.order.push_back(id);
        }
        self.outstanding += 1;
    }

    /// Whether `id` names an outstanding buffer.
    #[inline]
    fn is_outstanding(&self, id: u32) -> bool {
        id < u32::from(self.size)
            && self
                .slots
                .get(id as usize)
                .is_some_and(|s| s.token.is_some())
    }

    /// How many outstanding buffers an in-order completion of `id` covers
    /// (its 1-based position in submission order), or `None`.
    #[inline(always)]
    fn in_order_count(&self, id: u16) -> Option<u16> {
        // The usual case, one used entry per buffer, without the search.
        if self.order.front() == Some(id) {
            return Some(1);
        }
        self.order
            .iter()
            .position(|x| x == id)
            .map(|p| p as u16 + 1)
    }

    /// The next buffer of an in-order batch being handed out, with its
    /// length (`None`: the whole writable size), or `None` outside a batch.
    #[inline]
    fn next_in_batch(&mut self) -> Option<(u16, Option<u32>)> {
        let (last_id, len) = self.batch?;
        let Some(front) = self.order.front() else {
            self.batch = None;
            return None;
        };
        if front == last_id {
            self.batch = None;
            Some((front, Some(len)))
        } else {
            Some((front, None))
        }
    }

    /// Takes buffer `id`'s token back; validates `len` (`None`: whole
    /// capacity). Returns the token, len and ring slots to free.
    #[inline(always)]
    fn complete(&mut self, id: u16, len: Option<u32>) -> Result<(Used<T>, u16), UsedError> {
        let Some(slot) = self.slots.get_mut(usize::from(id)) else {
            return Err(UsedError::BadId { id: u32::from(id) });
        };
        let len = len.unwrap_or(slot.capacity);
        if len > slot.capacity {
            return Err(UsedError::BadLength {
                id,
                len,
                capacity: slot.capacity,
            });
        }
        let Some(token) = slot.token.take() else {
            return Err(UsedError::BadId { id: u32::from(id) });
        };
        if slot.table != NO_TABLE {
            self.free_tables.push(slot.table);
            slot.table = NO_TABLE;
        }
        let slots = slot.ring_slots;
        self.outstanding -= 1;
        if self.features.in_order && self.order.front() == Some(id) {
            self.order.pop_front();
        }
        Ok((Used { token, len, id }, slots))
    }
}

pub(crate) enum Ring {
    Split(split::SplitRing),
    Packed(packed::PackedRing),
}

/// The driver side of one virtqueue. See the [module docs](self).
///
/// `D` allocates the ring memory (and frees it on drop); `T` is the token
/// the caller gets back with each used buffer.
pub struct DriverQueue<D: Dma, T> {
    dma: D,
    config: DriverQueueConfig,
    common: Common<T>,
    ring: Ring,
    ring_mem: Option<DmaBuffer>,
}

impl<D: Dma, T> core::fmt::Debug for DriverQueue<D, T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DriverQueue")
            .field("config", &self.config)
            .field("outstanding", &self.common.outstanding)
            .field("broken", &self.common.broken)
            .finish_non_exhaustive()
    }
}

impl<D: Dma, T> DriverQueue<D, T> {
    /// Allocates and initialises a queue (rings zeroed, wrap counters 1).
    pub fn new(dma: D, config: DriverQueueConfig) -> Result<Self, DriverQueueError> {
        let size = config.size;
        let valid = match config.format {
            RingFormat::Split => ringwork_spec::ring::split::is_valid_queue_size(size),
            RingFormat::Packed => ringwork_spec::ring::packed::is_valid_queue_size(size),
        };
        if !valid {
            return Err(DriverQueueError::InvalidSize {
                format: config.format,
                size,
            });
        }
        if let Some(a) = config.legacy_align {
            if !a.is_power_of_two() {
                return Err(DriverQueueError::BadLegacyAlign(a));
            }
        }
        let (ring, layout_len) = match config.format {
            RingFormat::Split => {
                let r = split::SplitRing::new(size, config.legacy_align);
                let len = r.total_len();
                (Ring::Split(r), len)
            }
            RingFormat::Packed => {
                let r = packed::PackedRing::new(size);
                (Ring::Packed(r), packed::PackedRing::total_len(size))
            }
        };
        let align = config.legacy_align.map_or(4096, |a| a as usize).max(16);
        let ring_mem = dma
            .alloc(layout_len, align)
            .ok_or(DriverQueueError::OutOfDmaMemory { len: layout_len })?;
        let use_indirect = config.features.indirect_desc
            && config.indirect_threshold != 0
            && config.indirect_max > 1
            && config.indirect_tables > 0;
        let pool = if use_indirect {
            let len = usize::from(config.indirect_tables) * usize::from(config.indirect_max) * 16;
            match dma.alloc(len, 16) {
                Some(p) => Some(p),
                None => {
                    dma.dealloc(ring_mem);
                    return Err(DriverQueueError::OutOfDmaMemory { len });
                }
            }
        } else {
            None
        };
        let free_tables = if pool.is_some() {
            (0..config.indirect_tables).rev().collect()
        } else {
            Vec::new()
        };
        let mut slots = Vec::with_capacity(usize::from(size));
        slots.resize_with(usize::from(size), || Slot {
            token: None,
            ring_slots: 0,
            capacity: 0,
            table: NO_TABLE,
        });
        let mut q = Self {
            dma,
            config,
            common: Common {
                size,
                features: config.features,
                slots,
                order: IdFifo::new(usize::from(size)),
                batch: None,
                outstanding: 0,
                broken: false,
                pool,
                free_tables,
                indirect_threshold: config.indirect_threshold,
                indirect_max: config.indirect_max,
                indirect_single: use_indirect && config.indirect_threshold <= 1,
            },
            ring,
            ring_mem: Some(ring_mem),
        };
        q.init_ring();
        Ok(q)
    }

    fn init_ring(&mut self) {
        let mem = window(&self.ring_mem);
        // Zeroing our own allocation cannot fail.
        let _ = mem.fill(0, mem.len(), 0);
        match &mut self.ring {
            Ring::Split(r) => r.init(),
            Ring::Packed(r) => r.init(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &DriverQueueConfig {
        &self.config
    }

    /// Queue size.
    pub fn size(&self) -> u16 {
        self.config.size
    }

    /// The device-visible addresses to give the transport.
    pub fn addresses(&self) -> QueueAddresses {
        let base = self.ring_mem.as_ref().map_or(0, |b| b.device_addr());
        match &self.ring {
            Ring::Split(r) => r.addresses(base),
            Ring::Packed(_) => packed::PackedRing::addresses(base, self.config.size),
        }
    }

    /// Buffers added and not yet returned.
    pub fn outstanding(&self) -> u16 {
        self.common.outstanding
    }

    /// Free descriptors in the ring.
    #[inline]
    pub fn num_free(&self) -> u16 {
        match &self.ring {
            Ring::Split(r) => r.num_free(),
            Ring::Packed(r) => r.num_free(),
        }
    }

    /// Whether the device broke the queue.
    pub fn is_broken(&self) -> bool {
        self.common.broken
    }

    /// A hint before adding `n` one-descriptor buffers: asks the CPU to
    /// start fetching, for writing, the ring lines those additions will
    /// write (descriptors, and the available ring of a split ring), so the
    /// transfers of lines the device touched last overlap instead of
    /// stalling each store in turn. Nothing is read or written.
    pub fn prefetch_adds(&self, n: u16) {
        let mem = window(&self.ring_mem);
        let n = usize::from(n.min(self.config.size));
        match &self.ring {
            Ring::Split(r) => r.prefetch_adds(&mem, n),
            Ring::Packed(r) => r.prefetch_adds(&mem, n),
        }
    }

    /// Makes the buffers added with [`Self::add_deferred`] visible to the
    /// device (no notification; see [`Self::kick_prepare`]).
    pub fn publish(&mut self) {
        if let Ring::Split(r) = &mut self.ring {
            r.publish(&window(&self.ring_mem));
        }
    }

    /// Decides whether the device wants an available buffer notification
    /// for what was added since the last call (VIRTIO 1.4 §2.7.10 /
    /// §2.8.10; wrap-safe with EVENT_IDX), after publishing deferred
    /// additions ([`Self::add_deferred`]). Issues the full barrier the spec
    /// requires before reading the device's suppression state.
    pub fn kick_prepare(&mut self) -> Result<bool, UsedError> {
        if self.common.broken {
            return Err(UsedError::Broken);
        }
        let mem = window(&self.ring_mem);
        let event_idx = self.config.features.event_idx;
        let size = self.config.size;
        match &mut self.ring {
            Ring::Split(r) => r.kick_prepare(&mem, event_idx, size),
            Ring::Packed(r) => r.kick_prepare(&mem, event_idx, size),
        }
        .map_err(UsedError::from)
    }

    /// The notification value for VIRTIO_F_NOTIFICATION_DATA (VIRTIO 1.4
    /// §2.9): queue index, next offset and wrap counter.
    pub fn notification_data(&self) -> u32 {
        match &self.ring {
            Ring::Split(r) => NotificationData::split(self.config.index, r.avail_idx()),
            Ring::Packed(r) => {
                let (pos, wrap) = r.avail_pos();
                NotificationData::packed(self.config.index, pos, wrap)
            }
        }
        .to_u32()
    }

    /// Takes the next used buffer, or `None` when the device has returned
    /// nothing new.
    #[inline]
    pub fn pop_used(&mut self) -> Result<Option<Used<T>>, UsedError> {
        if self.common.broken {
            return Err(UsedError::Broken);
        }
        let mem = window(&self.ring_mem);
        let r = match &mut self.ring {
            Ring::Split(r) => r.pop_used(&mem, &mut self.common),
            Ring::Packed(r) => r.pop_used(&mem, &mut self.common),
        };
        if r.is_err() {
            self.common.broken = true;
        }
        r
    }

    /// Takes up to `max` used buffers, handing each to `f` in the order
    /// [`Self::pop_used`] would return them; returns how many. The same
    /// checks as `pop_used`, with the per-call work done once per burst.
    /// On an error the buffers handed over before it stay handed over.
    pub fn pop_used_burst(
        &mut self,
        max: usize,
        mut f: impl FnMut(Used<T>),
    ) -> Result<usize, UsedError> {
        if self.common.broken {
            return Err(UsedError::Broken);
        }
        let mem = window(&self.ring_mem);
        let common = &mut self.common;
        let r = match &mut self.ring {
            Ring::Split(r) => burst(max, &mut f, || r.pop_used(&mem, common)),
            Ring::Packed(r) => burst(max, &mut f, || r.pop_used(&mem, common)),
        };
        if r.is_err() {
            self.common.broken = true;
        }
        r
    }

    /// Whether used buffers are waiting.
    pub fn has_used(&self) -> bool {
        if self.common.batch.is_some() {
            return true;
        }
        let mem = window(&self.ring_mem);
        match &self.ring {
            Ring::Split(r) => r.has_used(&mem),
            Ring::Packed(r) => r.has_used(&mem),
        }
    }

    /// Asks the device not to send used buffer notifications (a hint).
    pub fn disable_callbacks(&mut self) {
        let mem = window(&self.ring_mem);
        let event_idx = self.config.features.event_idx;
        match &mut self.ring {
            Ring::Split(r) => r.disable_cb(&mem, event_idx),
            Ring::Packed(r) => r.disable_cb(&mem),
        }
    }

    /// Asks for a used buffer notification at the next used buffer. Returns
    /// `true` when used buffers are already waiting (poll them: no
    /// notification may come for those).
    pub fn enable_callbacks(&mut self) -> bool {
        self.enable_callbacks_after(0)
    }

    /// Like [`Self::enable_callbacks`], but asks to be notified only once
    /// about three quarters of the outstanding buffers were used (a
    /// "delayed callback", with EVENT_IDX; otherwise the same as
    /// `enable_callbacks`).
    pub fn enable_callbacks_delayed(&mut self) -> bool {
        let ahead = match &self.ring {
            Ring::Split(_) => u32::from(self.common.outstanding),
            Ring::Packed(r) => u32::from(self.config.size - r.num_free()),
        } * 3
            / 4;
        self.enable_callbacks_after(ahead as u16)
    }

    fn enable_callbacks_after(&mut self, ahead: u16) -> bool {
        let mem = window(&self.ring_mem);
        let event_idx = self.config.features.event_idx;
        let size = self.config.size;
        match &mut self.ring {
            Ring::Split(r) => r.enable_cb(&mem, event_idx, ahead),
            Ring::Packed(r) => r.enable_cb(&mem, event_idx, size, ahead),
        }
        core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
        self.has_used()
    }

    /// Resets the queue after the device reset it (device reset or
    /// VIRTIO_F_RING_RESET): rings zeroed, positions and wrap counters back
    /// to their initial values, not broken. Returns the tokens of every
    /// buffer that was outstanding, in id order, so nothing is lost.
    pub fn reset(&mut self) -> Vec<T> {
        let mut tokens = Vec::new();
        for slot in &mut self.common.slots {
            if let Some(t) = slot.token.take() {
                tokens.push(t);
            }
            if slot.table != NO_TABLE {
                self.common.free_tables.push(slot.table);
                slot.table = NO_TABLE;
            }
        }
        self.common.order.clear();
        self.common.batch = None;
        self.common.outstanding = 0;
        self.common.broken = false;
        self.init_ring();
        tokens
    }
}

impl<D: Dma, T> Drop for DriverQueue<D, T> {
    fn drop(&mut self) {
        if let Some(b) = self.ring_mem.take() {
            self.dma.dealloc(b);
        }
        if let Some(p) = self.common.pool.take() {
            self.dma.dealloc(p);
        }
    }
}

/// Up to `max` results of `pop`, handed to `f` in order, until it returns
/// nothing or an error; returns how many.
#[inline(always)]
fn burst<T>(
    max: usize,
    f: &mut impl FnMut(Used<T>),
    mut pop: impl FnMut() -> Result<Option<Used<T>>, UsedError>,
) -> Result<usize, UsedError> {
    let mut n = 0;
    while n < max {
        match pop()? {
            Some(u) => {
                f(u);
                n += 1;
            }
            None => break,
        }
    }
    Ok(n)
}

/// Prefetches `[offset, offset + len)` of `mem` for writing, in the
/// chunks [`MemSlice::prefetch`] takes (a hint).
fn prefetch_span(mem: &MemSlice<'_>, offset: usize, len: usize) {
    let mut at = 0;
    while at < len {
        mem.prefetch(offset + at, len - at, true);
        at += crate::mem::PREFETCH_MAX;
    }
}

/// The window on the ring memory (borrows only that field, so it can be
/// used while the ring state is borrowed mutably).
#[inline]
fn window(buf: &Option<DmaBuffer>) -> MemSlice<'_> {
    buf.as_ref().map_or_else(MemSlice::empty, |b| b.slice())
}

/// What `try_add` decided.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Prepared {
    ring_slots: u16,
    capacity: u32,
    table: u16,
}
