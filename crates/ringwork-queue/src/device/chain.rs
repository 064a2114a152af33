//! Descriptor chains as the device sees them, and readers/writers over them.
//!
//! [`DescChain`] is a private, validated copy of one chain: each descriptor
//! was read from shared memory exactly once, checked (address inside shared
//! memory, no overflow, readable-before-writable) and copied into the chain.
//! Later changes the driver makes to the ring cannot affect it. Up to
//! [`INLINE_SEGMENTS`] segments live inline; longer chains spill into a heap
//! buffer that [`DeviceQueue::pop_into`](super::DeviceQueue::pop_into)
//! reuses, so steady-state popping allocates nothing.
//!
//! [`ChainReader`] and [`ChainWriter`] move bytes across the readable and
//! writable parts without assuming any descriptor layout (VIRTIO 1.4 §2.7.4
//! "Message Framing": the device must not assume a particular arrangement).

use alloc::vec::Vec;

use super::error::ChainError;
use super::saved::SavedDesc;
use crate::mem::{GuestMemory, MemSlice};
use crate::types::Segment;
use ringwork_spec::ring::{VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE};

/// Segments stored inline in a [`DescChain`] before spilling to the heap.
pub const INLINE_SEGMENTS: usize = 8;

/// What the device needs to complete a chain: returned by
/// [`DescChain::token`], given back to `add_used`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UsedToken {
    pub(crate) id: u16,
    pub(crate) ring_slots: u16,
    pub(crate) seq: u16,
    /// Bytes the chain's writable part holds ([`UNKNOWN_CAPACITY`] for a
    /// token rebuilt without its chain): with VIRTIO_F_IN_ORDER a buffer
    /// may go without a used entry only if it was used completely.
    pub(crate) capacity: u32,
}

/// The capacity of a token rebuilt without its chain: never "used
/// completely", so it always gets its own used entry.
pub(crate) const UNKNOWN_CAPACITY: u32 = u32::MAX;

impl UsedToken {
    /// The id the driver will see in the used ring (split: head index;
    /// packed: buffer id).
    pub fn id(&self) -> u16 {
        self.id
    }

    /// Ring descriptors the chain occupied: packed rings advance the used
    /// position by this much when it is completed (1 for split rings).
    pub fn ring_slots(&self) -> u16 {
        self.ring_slots
    }

    /// Where the chain was taken from: packed rings, the ring offset of its
    /// first descriptor (unique among the chains in flight); split rings,
    /// the available index it was popped at (0 for [`chain_at`]).
    ///
    /// [`chain_at`]: super::DeviceQueue::chain_at
    pub fn position(&self) -> u16 {
        self.seq
    }
}

/// A validated descriptor chain: a private copy made in one pass over the
/// ring, each descriptor read once and checked (inside shared memory, no
/// overflow, readable before writable), so later changes the driver makes to
/// the ring cannot affect it. Up to [`INLINE_SEGMENTS`] segments live inline;
/// longer chains spill into a heap buffer that
/// [`DeviceQueue::pop_into`](super::DeviceQueue::pop_into) reuses.
#[derive(Clone)]
pub struct DescChain {
    token: UsedToken,
    inline: [Segment; INLINE_SEGMENTS],
    spill: Vec<Segment>,
    count: u32,
    readable: u32,
    readable_len: u32,
    writable_len: u32,
    indirect: bool,
    /// The indirect table's address and length (when `indirect`).
    table: (u64, u32),
}

impl Default for DescChain {
    fn default() -> Self {
        Self::new()
    }
}

impl core::fmt::Debug for DescChain {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DescChain")
            .field("id", &self.token.id)
            .field("readable", &self.readable_segments())
            .field("writable", &self.writable_segments())
            .field("indirect", &self.indirect)
            .finish()
    }
}

impl DescChain {
    /// An empty chain, to be filled by `pop_into`.
    pub const fn new() -> Self {
        Self {
            token: UsedToken {
                id: 0,
                ring_slots: 0,
                seq: 0,
                capacity: UNKNOWN_CAPACITY,
            },
            inline: [Segment { addr: 0, len: 0 }; INLINE_SEGMENTS],
            spill: Vec::new(),
            count: 0,
            readable: 0,
            readable_len: 0,
            writable_len: 0,
            indirect: false,
            table: (0, 0),
        }
    }

    /// The token to complete this chain with.
    #[inline]
    pub fn token(&self) -> UsedToken {
        UsedToken {
            capacity: self.writable_len,
            ..self.token
        }
    }

    /// The id the driver will see (split: head index; packed: buffer id).
    #[inline]
    pub fn id(&self) -> u16 {
        self.token.id
    }

    /// Whether the chain came through an indirect table.
    #[inline]
    pub fn is_indirect(&self) -> bool {
        self.indirect
    }

    /// All segments, device-readable ones first.
    #[inline]
    pub fn segments(&self) -> &[Segment] {
        if self.count as usize <= INLINE_SEGMENTS {
            &self.inline[..self.count as usize]
        } else {
            &self.spill
        }
    }

    /// The device-readable segments.
    #[inline]
    pub fn readable_segments(&self) -> &[Segment] {
        &self.segments()[..self.readable as usize]
    }

    /// The device-writable segments.
    #[inline]
    pub fn writable_segments(&self) -> &[Segment] {
        &self.segments()[self.readable as usize..]
    }

    /// The first device-readable segment, read straight from the inline
    /// array (which keeps the first [`INLINE_SEGMENTS`] segments even when
    /// the chain spills), without building the segment slice.
    #[inline]
    fn first_readable(&self) -> Option<Segment> {
        if self.readable == 0 {
            return None;
        }
        self.inline.first().copied()
    }

    /// The first device-writable segment; see [`Self::first_readable`].
    #[inline]
    fn first_writable(&self) -> Option<Segment> {
        let i = self.readable as usize;
        if i >= self.count as usize {
            return None;
        }
        match self.inline.get(i) {
            Some(seg) => Some(*seg),
            None => self.spill.get(i).copied(),
        }
    }

    /// Total bytes of the device-readable part.
    #[inline]
    pub fn readable_len(&self) -> u32 {
        self.readable_len
    }

    /// Total bytes of the device-writable part.
    #[inline]
    pub fn writable_len(&self) -> u32 {
        self.writable_len
    }

    /// The descriptors a packed ring held for this chain, in ring order,
    /// as [`DeviceQueue::chain_from_descriptors`] takes them back: the one
    /// indirect descriptor of an indirect chain, otherwise one descriptor
    /// per segment (`VIRTQ_DESC_F_WRITE` on the device-writable ones,
    /// `VIRTQ_DESC_F_NEXT` on all but the last). Every entry carries the
    /// chain's buffer id. Rebuilt from the validated copy, so it holds no
    /// driver-written bits beyond those (for split chains with direct
    /// descriptors ahead of an indirect table, only the table is listed).
    ///
    /// [`DeviceQueue::chain_from_descriptors`]: super::DeviceQueue::chain_from_descriptors
    pub fn packed_descriptors(&self) -> impl ExactSizeIterator<Item = SavedDesc> + '_ {
        let id = self.token.id;
        let n = if self.indirect { 1 } else { self.count };
        (0..n).map(move |i| {
            if self.indirect {
                return SavedDesc {
                    addr: self.table.0,
                    len: self.table.1,
                    id,
                    flags: VIRTQ_DESC_F_INDIRECT,
                };
            }
            let seg = self.segments()[i as usize];
            let mut flags = 0;
            if i >= self.readable {
                flags |= VIRTQ_DESC_F_WRITE;
            }
            if i + 1 < n {
                flags |= VIRTQ_DESC_F_NEXT;
            }
            SavedDesc {
                addr: seg.addr,
                len: seg.len,
                id,
                flags,
            }
        })
    }

    /// Starts fetching the first `len` bytes (at most
    /// [`PREFETCH_MAX`](crate::mem::PREFETCH_MAX)) of the chain's first
    /// readable segment, or with `write` of its first writable segment,
    /// into the CPU cache: a hint for batching paths, which pop several
    /// chains, prefetch them all, then read or write them, so that the
    /// cache misses on buffers the driver just filled overlap. Does nothing
    /// when the segment is not in `mem`.
    #[inline]
    pub fn prefetch<M: GuestMemory + ?Sized>(&self, mem: &M, len: usize, write: bool) {
        self.prefetch_at(mem, 0, len, write);
    }

    /// [`Self::prefetch`] of the segment's bytes from `offset` on. A
    /// receive path skips the virtio-net header this way: fetching its line
    /// for writing would take it from the driver's cache even when the
    /// header is not rewritten (see [`MemSlice::write_bytes_if_changed`]).
    #[inline]
    pub fn prefetch_at<M: GuestMemory + ?Sized>(
        &self,
        mem: &M,
        offset: usize,
        len: usize,
        write: bool,
    ) {
        let first = if write {
            self.first_writable()
        } else {
            self.first_readable()
        };
        let Some(seg) = first else {
            return;
        };
        let end = offset
            .saturating_add(len.min(crate::mem::PREFETCH_MAX))
            .min(seg.len as usize);
        if let Some(s) = mem.slice(seg.addr, end) {
            s.prefetch(offset, end.saturating_sub(offset), write);
        }
    }

    /// The first `len` bytes of the device-readable part as one window,
    /// when the first readable segment holds them all and lies in `mem`
    /// (`None` otherwise: use [`Self::reader`], which also reports why a
    /// segment cannot be read). A fast path for the common one-segment
    /// request: one translation, no cursor.
    #[inline]
    pub fn readable_window<'m, M: GuestMemory + ?Sized>(
        &self,
        mem: &'m M,
        len: usize,
    ) -> Option<MemSlice<'m>> {
        first_window(self.first_readable(), mem, len)
    }

    /// The first `len` bytes of the device-writable part as one window,
    /// when the first writable segment holds them all and lies in `mem`
    /// (`None` otherwise: use [`Self::writer`]). See
    /// [`Self::readable_window`].
    #[inline]
    pub fn writable_window<'m, M: GuestMemory + ?Sized>(
        &self,
        mem: &'m M,
        len: usize,
    ) -> Option<MemSlice<'m>> {
        first_window(self.first_writable(), mem, len)
    }

    /// A reader over the device-readable part.
    pub fn reader<'c, M: GuestMemory + ?Sized>(&'c self, mem: &'c M) -> ChainReader<'c, M> {
        ChainReader {
            cursor: Cursor::new(self.readable_segments(), self.readable_len),
            mem,
        }
    }

    /// A writer over the device-writable part.
    pub fn writer<'c, M: GuestMemory + ?Sized>(&'c self, mem: &'c M) -> ChainWriter<'c, M> {
        ChainWriter {
            cursor: Cursor::new(self.writable_segments(), self.writable_len),
            mem,
        }
    }

    // ----- building (used by the ring parsers) -----

    #[inline]
    pub(crate) fn clear(&mut self) {
        self.count = 0;
        self.readable = 0;
        self.readable_len = 0;
        self.writable_len = 0;
        self.indirect = false;
        self.spill.clear();
    }

    #[inline]
    pub(crate) fn set_token(&mut self, token: UsedToken) {
        self.token = token;
    }

    #[inline]
    pub(crate) fn set_indirect(&mut self, addr: u64, len: u32) {
        self.indirect = true;
        self.table = (addr, len);
    }

    /// Validates and appends one descriptor's buffer.
    #[inline(always)]
    pub(crate) fn push<M: GuestMemory + ?Sized>(
        &mut self,
        mem: &M,
        addr: u64,
        len: u32,
        writable: bool,
    ) -> Result<(), ChainError> {
        if len != 0 && !mem.contains(addr, len as usize) {
            return Err(ChainError::OutOfMemory { addr, len });
        }
        if writable {
            self.writable_len = self
                .writable_len
                .checked_add(len)
                .ok_or(ChainError::LengthOverflow)?;
        } else {
            if self.writable_len != 0 || self.readable != self.count {
                return Err(ChainError::ReadableAfterWritable);
            }
            self.readable_len = self
                .readable_len
                .checked_add(len)
                .ok_or(ChainError::LengthOverflow)?;
            self.readable += 1;
        }
        if self.readable_len.checked_add(self.writable_len).is_none() {
            return Err(ChainError::LengthOverflow);
        }
        let seg = Segment { addr, len };
        let n = self.count as usize;
        if n < INLINE_SEGMENTS {
            self.inline[n] = seg;
        } else {
            if n == INLINE_SEGMENTS {
                self.spill.extend_from_slice(&self.inline);
            }
            self.spill.push(seg);
        }
        self.count += 1;
        Ok(())
    }
}

/// The first `len` bytes of the segment `first` as one window, when it
/// holds them and lies in `mem`.
#[inline]
fn first_window<'m, M: GuestMemory + ?Sized>(
    first: Option<Segment>,
    mem: &'m M,
    len: usize,
) -> Option<MemSlice<'m>> {
    let seg = first?;
    if (seg.len as usize) < len {
        return None;
    }
    mem.slice(seg.addr, len)
}

/// Position within a list of segments, with the current segment's
/// translation kept, so that reading a header and then a body from one
/// segment looks the memory up once.
#[derive(Debug, Clone)]
struct Cursor<'c> {
    segs: &'c [Segment],
    seg: usize,
    off: u32,
    remaining: u32,
    done: u32,
    /// The whole of `segs[seg]` translated, once touched (`None` before).
    window: Option<MemSlice<'c>>,
}

impl<'c> Cursor<'c> {
    fn new(segs: &'c [Segment], total: u32) -> Self {
        Self {
            segs,
            seg: 0,
            off: 0,
            remaining: total,
            done: 0,
            window: None,
        }
    }

    /// The next contiguous piece of at most `max` bytes, translated. A
    /// segment is translated whole when first touched: one not entirely
    /// in `mem` fails then, even if only its start would be used.
    fn next_piece<M: GuestMemory + ?Sized>(
        &mut self,
        mem: &'c M,
        max: usize,
    ) -> Result<Option<MemSlice<'c>>, ChainError> {
        while let Some(seg) = self.segs.get(self.seg) {
            let left = seg.len - self.off;
            if left == 0 {
                self.seg += 1;
                self.off = 0;
                self.window = None;
                continue;
            }
            let take = (left as usize).min(max);
            let window = match self.window {
                Some(w) => w,
                None => {
                    let w =
                        mem.slice(seg.addr, seg.len as usize)
                            .ok_or(ChainError::OutOfMemory {
                                addr: seg.addr,
                                len: seg.len,
                            })?;
                    self.window = Some(w);
                    w
                }
            };
            let slice = window
                .subslice(self.off as usize, take)
                .map_err(|_| ChainError::LengthOverflow)?;
            self.off += take as u32;
            self.remaining -= take as u32;
            self.done += take as u32;
            return Ok(Some(slice));
        }
        Ok(None)
    }

    fn skip(&mut self, mut n: usize) -> usize {
        let mut skipped = 0;
        while n > 0 {
            let Some(seg) = self.segs.get(self.seg) else {
                break;
            };
            let left = (seg.len - self.off) as usize;
            if left == 0 {
                self.seg += 1;
                self.off = 0;
                self.window = None;
                continue;
            }
            let take = left.min(n);
            self.off += take as u32;
            self.remaining -= take as u32;
            self.done += take as u32;
            skipped += take;
            n -= take;
        }
        skipped
    }
}

/// Reads the device-readable part of a chain in order.
pub struct ChainReader<'c, M: GuestMemory + ?Sized> {
    cursor: Cursor<'c>,
    mem: &'c M,
}

impl<M: GuestMemory + ?Sized> ChainReader<'_, M> {
    /// Bytes not read yet.
    #[inline]
    pub fn remaining(&self) -> usize {
        self.cursor.remaining as usize
    }

    /// Bytes read (or skipped) so far.
    #[inline]
    pub fn bytes_read(&self) -> usize {
        self.cursor.done as usize
    }

    /// Reads up to `buf.len()` bytes; returns how many were read.
    pub fn read(&mut self, buf: &mut [u8]) -> Result<usize, ChainError> {
        let mut n = 0;
        while n < buf.len() {
            let Some(piece) = self.cursor.next_piece(self.mem, buf.len() - n)? else {
                break;
            };
            // The piece is exactly as long as requested, so this cannot fail.
            let dst = &mut buf[n..n + piece.len()];
            piece
                .read_bytes(0, dst)
                .map_err(|_| ChainError::LengthOverflow)?;
            n += piece.len();
        }
        Ok(n)
    }

    /// Reads exactly `buf.len()` bytes, or fails with `None` when the
    /// readable part is shorter (nothing is consumed then).
    pub fn read_exact(&mut self, buf: &mut [u8]) -> Result<Option<()>, ChainError> {
        if self.remaining() < buf.len() {
            return Ok(None);
        }
        self.read(buf).map(|_| Some(()))
    }

    /// Reads a fixed-size array (e.g. a request header), or `None` when the
    /// readable part is shorter.
    pub fn read_array<const N: usize>(&mut self) -> Result<Option<[u8; N]>, ChainError> {
        let mut b = [0u8; N];
        Ok(self.read_exact(&mut b)?.map(|()| b))
    }

    /// Skips up to `n` bytes; returns how many were skipped.
    pub fn skip(&mut self, n: usize) -> usize {
        self.cursor.skip(n)
    }

    /// The next contiguous piece of at most `max` bytes as a host window
    /// (for building iovecs). `None` at the end.
    pub fn next_slice(&mut self, max: usize) -> Result<Option<MemSlice<'_>>, ChainError> {
        self.cursor.next_piece(self.mem, max)
    }
}

/// Writes the device-writable part of a chain in order.
pub struct ChainWriter<'c, M: GuestMemory + ?Sized> {
    cursor: Cursor<'c>,
    mem: &'c M,
}

impl<M: GuestMemory + ?Sized> ChainWriter<'_, M> {
    /// Bytes of space left.
    #[inline]
    pub fn remaining(&self) -> usize {
        self.cursor.remaining as usize
    }

    /// Bytes written (or skipped) so far: the `len` to report in the used
    /// ring when the writes were contiguous from the start.
    #[inline]
    pub fn bytes_written(&self) -> u32 {
        self.cursor.done
    }

    /// Writes up to `data.len()` bytes; returns how many fit.
    pub fn write(&mut self, data: &[u8]) -> Result<usize, ChainError> {
        let mut n = 0;
        while n < data.len() {
            let Some(piece) = self.cursor.next_piece(self.mem, data.len() - n)? else {
                break;
            };
            piece
                .write_bytes(0, &data[n..n + piece.len()])
                .map_err(|_| ChainError::LengthOverflow)?;
            n += piece.len();
        }
        Ok(n)
    }

    /// Writes all of `data`, or nothing and `None` when it does not fit.
    pub fn write_all(&mut self, data: &[u8]) -> Result<Option<()>, ChainError> {
        if self.remaining() < data.len() {
            return Ok(None);
        }
        self.write(data).map(|_| Some(()))
    }

    /// Skips up to `n` bytes (leaving them unwritten); returns how many.
    pub fn skip(&mut self, n: usize) -> usize {
        self.cursor.skip(n)
    }

    /// The next contiguous piece of at most `max` bytes as a host window
    /// (for building iovecs). `None` at the end.
    pub fn next_slice(&mut self, max: usize) -> Result<Option<MemSlice<'_>>, ChainError> {
        self.cursor.next_piece(self.mem, max)
    }
}
