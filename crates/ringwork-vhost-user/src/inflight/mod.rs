//! In-flight I/O tracking (vhost-user.rst, "Inflight I/O tracking";
//! protocol feature INFLIGHT_SHMFD): a shared area the frontend keeps
//! across backend restarts, recording which buffers were popped and not
//! yet used, so a restarted backend resubmits them, oldest first.
//!
//! The area is ours: we create it (GET_INFLIGHT_FD) and the frontend hands
//! it back after a restart (SET_INFLIGHT_FD). Regions are sized for the
//! larger packed layout, so one area fits either ring format, and for the
//! one queue size of the description, so it fits any ring up to that size
//! (a device's queues may differ: a SCSI controlq is smaller than its
//! request queues); each queue's region is laid out for its ring format
//! and size when the queue first starts:
//!
//! - split rings ([`split`]): the protocol's `QueueRegionSplit`, one
//!   `DescStateSplit` per head with an in-flight flag and a pop counter; a
//!   restart re-reads the chains from the descriptor table;
//! - packed rings ([`packed`]): the protocol's `QueueRegionPacked`. Used
//!   entries overwrite descriptor slots, so the region keeps *copies* of
//!   the ring descriptors of every chain in flight (`DescStatePacked`
//!   entries linked through `next`, the head carrying the counter, length
//!   and last entry), a free list of entries, and the used position with
//!   `old_*` copies that make a half-published batch of used entries
//!   recoverable. A restart rebuilds the chains from the copies.
//!
//! Trust and panic contract: the area is shared with the frontend, so its
//! contents are peer input. Every access is bounds-checked through
//! [`MemSlice`]; the logs keep private copies of what they wrote and never
//! read the area back while a queue runs. At a restart every value read
//! is range-checked, a record that does not hold together is discarded
//! with a warning (the queue starts afresh from the frontend's base), and
//! resubmitted chains are validated like popped ones. Nothing panics.

pub mod packed;
pub mod split;

use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

use ringwork_queue::mmap::MmapRegion;
use ringwork_queue::MemSlice;

use crate::msg::Inflight;
use crate::sys;

pub use packed::{PackedLog, PackedRecovery};
pub use split::SplitLog;

/// Offset of a region's `version` (both layouts).
const VERSION_OFF: usize = 8;
/// Offset of a region's `desc_num` (both layouts).
const DESC_NUM_OFF: usize = 10;
/// Bytes of a packed region's header and of each of its entries.
const PACKED_DESC: usize = 32;
const VERSION: u16 = 1;

/// Bytes per queue region (room for the packed layout; 64-byte aligned).
pub fn region_size(queue_size: u16) -> usize {
    (PACKED_DESC + PACKED_DESC * usize::from(queue_size)).div_ceil(64) * 64
}

/// A refused inflight area.
#[derive(Debug, thiserror::Error)]
pub enum InflightError {
    /// The description does not fit the descriptor or is inconsistent.
    #[error("inflight area: {0}")]
    Bad(&'static str),
    /// Creating or mapping it failed.
    #[error("inflight area: {0}")]
    Io(#[from] std::io::Error),
}

/// The mapped inflight area.
#[derive(Debug)]
pub struct InflightArea {
    map: Arc<MmapRegion>,
    fd: OwnedFd,
    num_queues: u16,
    queue_size: u16,
}

impl InflightArea {
    /// Creates a zeroed area for `num_queues` queues of `queue_size`
    /// (GET_INFLIGHT_FD), returning it and its description.
    pub fn create(num_queues: u16, queue_size: u16) -> Result<(Self, Inflight), InflightError> {
        if num_queues == 0 || queue_size == 0 || queue_size > 32768 {
            return Err(InflightError::Bad("queue count or size out of range"));
        }
        let size = region_size(queue_size) * usize::from(num_queues);
        let fd = sys::memfd(c"ringwork-inflight", size as u64)?;
        let map = MmapRegion::from_fd(fd.as_fd(), 0, size)?;
        let area = Self {
            map: Arc::new(map),
            fd,
            num_queues,
            queue_size,
        };
        for q in 0..num_queues {
            let r = area.region(q).ok_or(InflightError::Bad("layout"))?;
            r.write_u16(VERSION_OFF, VERSION)
                .map_err(|_| InflightError::Bad("layout"))?;
            r.write_u16(DESC_NUM_OFF, queue_size)
                .map_err(|_| InflightError::Bad("layout"))?;
        }
        let desc = Inflight {
            mmap_size: size as u64,
            mmap_offset: 0,
            num_queues,
            queue_size,
        };
        Ok((area, desc))
    }

    /// Maps an area the frontend hands back (SET_INFLIGHT_FD).
    pub fn adopt(desc: Inflight, fd: OwnedFd) -> Result<Self, InflightError> {
        if desc.num_queues == 0 || desc.queue_size == 0 || desc.queue_size > 32768 {
            return Err(InflightError::Bad("queue count or size out of range"));
        }
        let need = region_size(desc.queue_size) as u64 * u64::from(desc.num_queues);
        if desc.mmap_size < need {
            return Err(InflightError::Bad("smaller than its queues need"));
        }
        let map = MmapRegion::from_fd(fd.as_fd(), desc.mmap_offset, need as usize)?;
        Ok(Self {
            map: Arc::new(map),
            fd,
            num_queues: desc.num_queues,
            queue_size: desc.queue_size,
        })
    }

    /// The descriptor to send to the frontend.
    pub fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    /// Byte offset of queue `q`'s region, when the area covers it.
    fn region_base(&self, q: u16) -> Option<usize> {
        (q < self.num_queues).then(|| usize::from(q) * region_size(self.queue_size))
    }

    fn region(&self, q: u16) -> Option<MemSlice<'_>> {
        region_at(&self.map, self.region_base(q)?, self.queue_size)
    }

    /// The part of queue `q`'s region a ring of `size` entries uses: the
    /// description has one queue size for every region (vhost-user.rst,
    /// "Inflight description"), the largest of the device's queues, so a
    /// smaller ring (a SCSI controlq next to larger request queues) is
    /// laid out for its own size at the start of its region. `None` when
    /// the area does not cover `q` or the ring is larger than a region.
    fn ring_region(&self, q: u16, size: u16) -> Option<(usize, MemSlice<'_>)> {
        if size == 0 || size > self.queue_size {
            return None;
        }
        let base = self.region_base(q)?;
        Some((base, region_at(&self.map, base, size)?))
    }
}

/// The region of a queue of `size` entries at byte `base` of `map`.
fn region_at(map: &MmapRegion, base: usize, size: u16) -> Option<MemSlice<'_>> {
    map.as_slice().subslice(base, region_size(size)).ok()
}
