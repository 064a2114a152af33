//! Split-ring records: the protocol's `QueueRegionSplit`, one
//! `DescStateSplit` per descriptor-table head (in-flight flag, pop
//! counter, and a `next` link listing the last batch of used heads).

use std::sync::Arc;

use ringwork_device::model::InflightLog;
use ringwork_queue::device::UsedToken;
use ringwork_queue::mmap::MmapRegion;
use ringwork_queue::MemSlice;

use super::{packed, region_at, region_size, InflightArea, DESC_NUM_OFF, VERSION, VERSION_OFF};

const HEADER: usize = 16;
const SPLIT_DESC: usize = 16;
const LAST_BATCH_HEAD: usize = 12;
const USED_IDX: usize = 14;

impl InflightArea {
    /// The record of split queue `q` of `queue_size` entries, with the
    /// heads that were in flight (oldest first), after rolling back a
    /// half-recorded last batch against the ring's `used_idx` (the
    /// protocol's reconnect steps). `None` when the area does not cover
    /// this queue or its regions are smaller than the ring.
    pub fn split_queue(
        &self,
        q: u16,
        queue_size: u16,
        used_idx: u16,
    ) -> Option<(SplitLog, Vec<u16>)> {
        let (base, r) = self.ring_region(q, queue_size)?;
        let log = SplitLog {
            map: self.map.clone(),
            base,
            size: queue_size,
            counter: 0,
        };
        if r.read_u16(VERSION_OFF).ok()? != VERSION
            || r.read_u16(DESC_NUM_OFF).ok()? != queue_size
            || packed::is_laid_out(&r)
        {
            // Uninitialized, foreign, or laid out for a packed ring: start
            // clean.
            r.fill(0, r.len(), 0).ok()?;
            r.write_u16(VERSION_OFF, VERSION).ok()?;
            r.write_u16(DESC_NUM_OFF, queue_size).ok()?;
            r.write_u16(USED_IDX, used_idx).ok()?;
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
        region_at(&self.map, self.base, self.size)
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
        let recorded = r.read_u16(USED_IDX).ok()?;
        if recorded != used_idx {
            // The last batch was published but not cleared: clear it.
            let mut n = used_idx.wrapping_sub(recorded).min(self.size);
            let mut i = r.read_u16(LAST_BATCH_HEAD).ok()?;
            while n > 0 && i < self.size {
                r.write_u8(Self::desc(i), 0).ok()?;
                i = r.read_u16(Self::desc(i) + 6).ok()?;
                n -= 1;
            }
            r.write_u16(USED_IDX, used_idx).ok()?;
        }
        let mut heads = Vec::new();
        for i in 0..self.size {
            if r.read_u8(Self::desc(i)).ok()? == 1 {
                let c = r.read_u64(Self::desc(i) + 8).ok()?;
                heads.push((c, i));
                self.counter = self.counter.max(c.saturating_add(1));
            }
        }
        heads.sort_unstable();
        Some(heads.into_iter().map(|(_, i)| i).collect())
    }
}

impl InflightLog for SplitLog {
    fn popped(&mut self, id: u16) {
        let (size, c) = (self.size, self.counter);
        self.counter = self.counter.saturating_add(1);
        if let Some(r) = self.region().filter(|_| id < size) {
            let _ = r.write_u64(Self::desc(id) + 8, c);
            let _ = r.write_u8(Self::desc(id), 1);
        }
    }

    fn completing(&mut self, batch: &[(UsedToken, u32)]) {
        let size = self.size;
        if let Some(r) = self.region() {
            for i in batch.iter().map(|(t, _)| t.id()).filter(|&i| i < size) {
                if let Ok(head) = r.read_u16(LAST_BATCH_HEAD) {
                    let _ = r.write_u16(Self::desc(i) + 6, head);
                    let _ = r.write_u16(LAST_BATCH_HEAD, i);
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
            let _ = r.write_u16(USED_IDX, used_idx);
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

    /// One queue size describes every region (the largest queue's): a
    /// smaller ring is tracked in the start of its region.
    #[test]
    fn a_ring_smaller_than_the_regions_is_tracked() {
        let (area, _) = InflightArea::create(2, 16).unwrap();
        let (mut log, heads) = area.split_queue(1, 4, 0).unwrap();
        assert!(heads.is_empty());
        log.popped(3);
        log.popped(1);
        let (_log, heads) = area.split_queue(1, 4, 0).unwrap();
        assert_eq!(heads, vec![3, 1]);
        // The record is for a ring of 4: a ring of another size starts
        // clean, and the neighbouring region is untouched.
        assert!(area.split_queue(1, 8, 0).unwrap().1.is_empty());
        assert!(area.split_queue(0, 16, 0).unwrap().1.is_empty());
        assert!(area.split_queue(0, 32, 0).is_none());
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
        // away, a counter at its limit: recovery terminates with heads
        // inside the queue.
        for i in 0..4u16 {
            r.write_u8(SplitLog::desc(i), 1).unwrap();
            r.write_u16(SplitLog::desc(i) + 6, i).unwrap();
        }
        r.write_u64(SplitLog::desc(2) + 8, u64::MAX).unwrap();
        r.write_u16(LAST_BATCH_HEAD, 1).unwrap();
        r.write_u16(USED_IDX, 999).unwrap();
        let (mut log, heads) = area.split_queue(0, 4, 3).unwrap();
        assert!(heads.iter().all(|&h| h < 4));
        log.popped(0);
    }

    #[test]
    fn a_region_laid_out_for_a_packed_ring_starts_clean() {
        let (area, _) = InflightArea::create(1, 4).unwrap();
        let r = area.region(0).unwrap();
        r.write_u8(SplitLog::desc(1), 1).unwrap();
        packed::mark_laid_out(&r);
        let (_, heads) = area.split_queue(0, 4, 0).unwrap();
        assert!(heads.is_empty());
        assert!(!packed::is_laid_out(&r));
    }
}
