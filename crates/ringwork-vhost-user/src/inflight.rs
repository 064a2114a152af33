//! In-flight I/O tracking (vhost-user.rst, "Inflight I/O tracking";
//! protocol feature INFLIGHT_SHMFD): a shared area the frontend keeps
//! across backend restarts, recording which buffers were popped and not
//! yet used, so a restarted backend resubmits them.
//!
//! The area is ours: we create it (GET_INFLIGHT_FD) and the frontend hands
//! it back after a restart (SET_INFLIGHT_FD). Each queue's region uses the
//! protocol's split layout (`QueueRegionSplit` with `DescStateSplit`
//! entries); regions are sized for the larger packed layout so one area
//! fits either ring format. Packed rings are not tracked (their in-flight
//! descriptors can be overwritten by used entries, so resubmission needs
//! copies of them): a packed queue restarted after a crash loses its
//! in-flight buffers, and a warning says so.
//!
//! Trust and panic contract: the area is shared with the frontend, so its
//! contents are peer input. Every access is bounds-checked through
//! [`MemSlice`]; heads read back are checked against the queue size and
//! resubmitted chains are validated like popped ones. Nothing panics.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

use ringwork_device::model::InflightLog;
use ringwork_queue::device::UsedToken;
use ringwork_queue::mmap::MmapRegion;
use ringwork_queue::MemSlice;

use crate::msg::Inflight;
use crate::sys;

const HEADER: usize = 16;
const SPLIT_DESC: usize = 16;
const PACKED_DESC: usize = 32;
const VERSION: u16 = 1;

/// Bytes per queue region (room for the packed layout; 64-byte aligned).
pub fn region_size(queue_size: u16) -> usize {
    (32 + PACKED_DESC * usize::from(queue_size)).div_ceil(64) * 64
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
            r.write_u16(8, VERSION)
                .map_err(|_| InflightError::Bad("layout"))?;
            r.write_u16(10, queue_size)
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

    fn region(&self, q: u16) -> Option<MemSlice<'_>> {
        if q >= self.num_queues {
            return None;
        }
        let size = region_size(self.queue_size);
        self.map
            .as_slice()
            .subslice(usize::from(q) * size, size)
            .ok()
    }

    /// The record of split queue `q` of `queue_size` entries, with the
    /// heads that were in flight (oldest first), after rolling back a
    /// half-recorded last batch against the ring's `used_idx` (the
    /// protocol's reconnect steps). `None` when the area does not cover
    /// this queue or was laid out for another size.
    pub fn split_queue(
        &self,
        q: u16,
        queue_size: u16,
        used_idx: u16,
    ) -> Option<(SplitLog, Vec<u16>)> {
        if queue_size != self.queue_size {
            return None;
        }
        let r = self.region(q)?;
        let log = SplitLog {
            map: self.map.clone(),
            base: usize::from(q) * region_size(self.queue_size),
            size: queue_size,
            counter: 0,
        };
        if r.read_u16(8).ok()? != VERSION || r.read_u16(10).ok()? != queue_size {
            // Uninitialized (or foreign): start clean.
            r.fill(0, r.len(), 0).ok()?;
            r.write_u16(8, VERSION).ok()?;
            r.write_u16(10, queue_size).ok()?;
            r.write_u16(14, used_idx).ok()?;
            return Some((log, Vec::new()));
        }
        let mut log = log;
        let heads = log.recover(used_idx)?;
        Some((log, heads))
    }
}

/// The in-flight record of one split queue.
#[derive(Debug)]
pub struct SplitLog {
    map: Arc<MmapRegion>,
    base: usize,
    size: u16,
    counter: u64,
}

impl SplitLog {
    fn region(&self) -> Option<MemSlice<'_>> {
        self.map
            .as_slice()
            .subslice(self.base, region_size(self.size))
            .ok()
    }

    fn desc(i: u16) -> usize {
        HEADER + usize::from(i) * SPLIT_DESC
    }

    fn recover(&mut self, used_idx: u16) -> Option<Vec<u16>> {
        let map = self.map.clone();
        let r = map
            .as_slice()
            .subslice(self.base, region_size(self.size))
            .ok()?;
        let recorded = r.read_u16(14).ok()?;
        if recorded != used_idx {
            // The last batch was published but not cleared: clear it.
            let mut n = used_idx.wrapping_sub(recorded).min(self.size);
            let mut i = r.read_u16(12).ok()?;
            while n > 0 && i < self.size {
                r.write_u8(Self::desc(i), 0).ok()?;
                i = r.read_u16(Self::desc(i) + 6).ok()?;
                n -= 1;
            }
            r.write_u16(14, used_idx).ok()?;
        }
        let mut heads = Vec::new();
        for i in 0..self.size {
            if r.read_u8(Self::desc(i)).ok()? == 1 {
                let c = r.read_u64(Self::desc(i) + 8).ok()?;
                heads.push((c, i));
                self.counter = self.counter.max(c + 1);
            }
        }
        heads.sort_unstable();
        Some(heads.into_iter().map(|(_, i)| i).collect())
    }
}

impl InflightLog for SplitLog {
    fn popped(&mut self, id: u16) {
        let (size, c) = (self.size, self.counter);
        self.counter += 1;
        if let Some(r) = self.region().filter(|_| id < size) {
            let _ = r.write_u64(Self::desc(id) + 8, c);
            let _ = r.write_u8(Self::desc(id), 1);
        }
    }

    fn completing(&mut self, batch: &[(UsedToken, u32)]) {
        let size = self.size;
        if let Some(r) = self.region() {
            for i in batch.iter().map(|(t, _)| t.id()).filter(|&i| i < size) {
                if let Ok(head) = r.read_u16(12) {
                    let _ = r.write_u16(Self::desc(i) + 6, head);
                    let _ = r.write_u16(12, i);
                }
            }
        }
    }

    fn completed(&mut self, batch: &[(UsedToken, u32)], used_idx: u16) {
        let size = self.size;
        if let Some(r) = self.region() {
            for i in batch.iter().map(|(t, _)| t.id()).filter(|&i| i < size) {
                let _ = r.write_u8(Self::desc(i), 0);
            }
            let _ = r.write_u16(14, used_idx);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringwork_queue::device::DeviceQueue;
    use ringwork_queue::{QueueAddresses, QueueFeatures, RingFormat};

    /// A used batch of `ids`, each with length 0.
    fn batch(ids: &[u16]) -> Vec<(UsedToken, u32)> {
        let addrs = QueueAddresses {
            desc: 0,
            driver: 4096,
            device: 8192,
        };
        let q = DeviceQueue::new(RingFormat::Split, 8, addrs, QueueFeatures::default()).unwrap();
        ids.iter().map(|&i| (q.inflight_token(i, 1), 0)).collect()
    }

    #[test]
    fn split_log_records_and_recovers_in_pop_order() {
        let (area, desc) = InflightArea::create(2, 8).unwrap();
        assert_eq!(desc.mmap_size as usize, 2 * region_size(8));
        let (mut log, heads) = area.split_queue(1, 8, 0).unwrap();
        assert!(heads.is_empty());
        log.popped(5);
        log.popped(2);
        log.popped(7);
        log.completing(&batch(&[2]));
        log.completed(&batch(&[2]), 1);
        // A restart finds 5 then 7 in flight, in the order they were popped.
        let (_log, heads) = area.split_queue(1, 8, 1).unwrap();
        assert_eq!(heads, vec![5, 7]);
        // Another queue's region is independent.
        assert!(area.split_queue(0, 8, 0).unwrap().1.is_empty());
        // A different queue size does not fit.
        assert!(area.split_queue(1, 16, 0).is_none());
    }

    #[test]
    fn a_published_but_unrecorded_batch_is_rolled_back() {
        let (area, _) = InflightArea::create(1, 8).unwrap();
        let (mut log, _) = area.split_queue(0, 8, 0).unwrap();
        log.popped(3);
        log.popped(4);
        // Crash after the used index was published (now 2) but before the
        // inflight flags were cleared.
        log.completing(&batch(&[3, 4]));
        let (_, heads) = area.split_queue(0, 8, 2).unwrap();
        assert!(heads.is_empty(), "the last batch was completed: {heads:?}");
    }

    #[test]
    fn hostile_contents_are_bounded() {
        let (area, _) = InflightArea::create(1, 4).unwrap();
        let r = area.region(0).unwrap();
        // Every entry in flight, a batch list that loops, a used index far
        // away: recovery terminates with heads inside the queue.
        for i in 0..4u16 {
            r.write_u8(SplitLog::desc(i), 1).unwrap();
            r.write_u16(SplitLog::desc(i) + 6, i).unwrap();
        }
        r.write_u16(12, 1).unwrap();
        r.write_u16(14, 999).unwrap();
        let (_, heads) = area.split_queue(0, 4, 3).unwrap();
        assert!(heads.iter().all(|&h| h < 4));
    }
}
