//! Memory statistics from the stats queue (VIRTIO 1.4 §5.5.6.3,
//! §5.5.6.4): parsing a driver's buffer of tagged entries.
//!
//! Trust and panic contract: the buffer is the driver's. Entries are
//! 10-byte `virtio_balloon_stat`s in any order (§5.5.6.3.2: the device
//! MUST accept any order); unknown tags are kept aside (bounded) and never
//! an error (the device MUST ignore them as statistics); a trailing partial
//! entry (a length that is not a multiple of 10, such as the "multiple of
//! 6" the spec's driver clause mentions) is counted and ignored. At most
//! [`MAX_STATS_BYTES`] are read. Nothing here panics.

use std::time::SystemTime;

use ringwork_spec::balloon::{
    BalloonStat, BALLOON_STAT_SIZE, BALLOON_STAT_TAGS, VIRTIO_BALLOON_S_NR,
};

/// Bytes of a stats buffer read at most (a driver supplying every defined
/// statistic needs 100); the rest is ignored.
pub const MAX_STATS_BYTES: usize = 4096;
/// Unknown-tag entries kept at most per buffer.
pub const MAX_UNKNOWN_STATS: usize = 32;

/// One set of statistics the driver supplied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BalloonStats {
    /// Values of the defined tags, indexed by tag (`VIRTIO_BALLOON_S_*`);
    /// `None` for statistics the driver did not supply. A tag given twice
    /// keeps its last value.
    pub values: [Option<u64>; VIRTIO_BALLOON_S_NR as usize],
    /// Entries with tags the spec does not define, in buffer order (at
    /// most [`MAX_UNKNOWN_STATS`]); not interpreted.
    pub unknown: Vec<(u16, u64)>,
    /// Entries read (known and unknown).
    pub entries: usize,
    /// Bytes after the last whole entry (a malformed length), ignored.
    pub trailing_bytes: usize,
    /// Bytes beyond [`MAX_STATS_BYTES`], not read.
    pub truncated_bytes: usize,
    /// When the buffer arrived.
    pub received: SystemTime,
}

impl BalloonStats {
    /// Parses the readable bytes of a stats buffer (at most
    /// [`MAX_STATS_BYTES`] of them; `total_len` is the buffer's full
    /// readable length, for [`Self::truncated_bytes`]).
    pub fn parse(bytes: &[u8], total_len: usize) -> Self {
        let bytes = bytes.get(..MAX_STATS_BYTES).unwrap_or(bytes);
        let mut s = BalloonStats {
            values: [None; VIRTIO_BALLOON_S_NR as usize],
            unknown: Vec::new(),
            entries: 0,
            trailing_bytes: bytes.len() % BALLOON_STAT_SIZE,
            truncated_bytes: total_len.saturating_sub(bytes.len()),
            received: SystemTime::now(),
        };
        for raw in bytes.chunks_exact(BALLOON_STAT_SIZE) {
            let Ok(e) = BalloonStat::new_checked(raw) else {
                continue;
            };
            s.entries += 1;
            let (tag, val) = (e.tag(), e.val());
            match s.values.get_mut(usize::from(tag)) {
                Some(slot) => *slot = Some(val),
                None if s.unknown.len() < MAX_UNKNOWN_STATS => s.unknown.push((tag, val)),
                None => {}
            }
        }
        s
    }

    /// The value of statistic `tag`, if supplied.
    pub fn get(&self, tag: u16) -> Option<u64> {
        self.values.get(usize::from(tag)).copied().flatten()
    }

    /// The supplied statistics as `name=value` words, in tag order, then
    /// unknown tags as `tagN=value`.
    pub fn summary(&self) -> String {
        let mut words: Vec<String> = BALLOON_STAT_TAGS
            .iter()
            .filter_map(|&(tag, name)| Some(format!("{name}={}", self.get(tag)?)))
            .collect();
        words.extend(self.unknown.iter().map(|(t, v)| format!("tag{t}={v}")));
        words.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringwork_spec::balloon::{VIRTIO_BALLOON_S_MEMFREE, VIRTIO_BALLOON_S_MEMTOT};

    fn entry(tag: u16, val: u64) -> Vec<u8> {
        let mut v = tag.to_le_bytes().to_vec();
        v.extend_from_slice(&val.to_le_bytes());
        v
    }

    #[test]
    fn any_order_unknown_kept_trailing_ignored() {
        let mut b = entry(VIRTIO_BALLOON_S_MEMTOT, 1000);
        b.extend(entry(77, 5));
        b.extend(entry(VIRTIO_BALLOON_S_MEMFREE, 300));
        b.extend([1, 2, 3]);
        let s = BalloonStats::parse(&b, b.len());
        assert_eq!(s.get(VIRTIO_BALLOON_S_MEMFREE), Some(300));
        assert_eq!(s.get(VIRTIO_BALLOON_S_MEMTOT), Some(1000));
        assert_eq!(s.get(0), None);
        assert_eq!(s.get(77), None);
        assert_eq!(s.unknown, vec![(77, 5)]);
        assert_eq!((s.entries, s.trailing_bytes, s.truncated_bytes), (3, 3, 0));
        assert_eq!(s.summary(), "free-memory=300 total-memory=1000 tag77=5");
    }

    #[test]
    fn bounded() {
        let mut b = Vec::new();
        for i in 0..1000u16 {
            b.extend(entry(100 + i, u64::from(i)));
        }
        let s = BalloonStats::parse(&b, b.len());
        assert_eq!(s.unknown.len(), MAX_UNKNOWN_STATS);
        assert_eq!(s.entries, MAX_STATS_BYTES / BALLOON_STAT_SIZE);
        assert_eq!(s.trailing_bytes, MAX_STATS_BYTES % BALLOON_STAT_SIZE);
        assert_eq!(s.truncated_bytes, b.len() - MAX_STATS_BYTES);
        let empty = BalloonStats::parse(&[], 0);
        assert_eq!((empty.entries, empty.summary().as_str()), (0, ""));
    }
}
