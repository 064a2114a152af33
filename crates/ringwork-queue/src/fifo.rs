//! [`IdFifo`]: a first-in, first-out queue of 16-bit ids (descriptor ids,
//! buffer slots) with a capacity fixed at creation, for driver-side
//! bookkeeping on the data path: no allocation after [`IdFifo::new`],
//! every operation inlined and O(1) except the searches.
//!
//! Trust and panic contract: only the owner's own ids go in; a push
//! beyond the capacity is refused (`false`), never a panic or a growth.

use alloc::vec::Vec;

/// A fixed-capacity FIFO of `u16`. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct IdFifo {
    buf: Vec<u16>,
    mask: usize,
    head: usize,
    len: usize,
}

impl IdFifo {
    /// An empty FIFO holding at least `capacity` ids (at most 65,536:
    /// there are no more distinct ids).
    pub fn new(capacity: usize) -> Self {
        let cap = capacity.clamp(1, 1 << 16).next_power_of_two();
        Self {
            buf: alloc::vec![0; cap],
            mask: cap - 1,
            head: 0,
            len: 0,
        }
    }

    /// A FIFO holding `ids`, in order (capacity: at least `capacity` and
    /// their number, at most 65,536; ids beyond a full FIFO are dropped).
    pub fn with_ids(capacity: usize, ids: impl ExactSizeIterator<Item = u16>) -> Self {
        let mut f = Self::new(capacity.max(ids.len()));
        for id in ids {
            f.push_back(id);
        }
        f
    }

    /// Ids held.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it holds nothing.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Forgets every id.
    pub fn clear(&mut self) {
        self.head = 0;
        self.len = 0;
    }

    /// Appends `id`; `false` (and nothing changes) when full.
    #[inline]
    pub fn push_back(&mut self, id: u16) -> bool {
        if self.len > self.mask {
            return false;
        }
        let at = (self.head + self.len) & self.mask;
        if let Some(x) = self.buf.get_mut(at) {
            *x = id;
        }
        self.len += 1;
        true
    }

    /// Puts `id` first; `false` (and nothing changes) when full.
    #[inline]
    pub fn push_front(&mut self, id: u16) -> bool {
        if self.len > self.mask {
            return false;
        }
        self.head = self.head.wrapping_sub(1) & self.mask;
        if let Some(x) = self.buf.get_mut(self.head) {
            *x = id;
        }
        self.len += 1;
        true
    }

    /// The first id.
    #[inline]
    pub fn front(&self) -> Option<u16> {
        if self.len == 0 {
            return None;
        }
        self.buf.get(self.head).copied()
    }

    /// Takes the first id.
    #[inline]
    pub fn pop_front(&mut self) -> Option<u16> {
        let id = self.front()?;
        self.head = (self.head + 1) & self.mask;
        self.len -= 1;
        Some(id)
    }

    /// The ids, first to last.
    pub fn iter(&self) -> impl Iterator<Item = u16> + '_ {
        (0..self.len).map(move |i| {
            self.buf
                .get((self.head + i) & self.mask)
                .copied()
                .unwrap_or(0)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_in_first_out_across_the_wrap() {
        let mut f = IdFifo::new(3);
        assert_eq!(f.len(), 0);
        for round in 0..10u16 {
            assert!(f.push_back(round));
            assert!(f.push_back(round + 100));
            assert_eq!(f.pop_front(), Some(round));
            assert_eq!(f.pop_front(), Some(round + 100));
        }
        assert_eq!(f.pop_front(), None);
        assert!(f.is_empty());
    }

    #[test]
    fn full_refuses_and_push_front_goes_first() {
        let mut f = IdFifo::new(4);
        for i in 0..4 {
            assert!(f.push_back(i));
        }
        assert!(!f.push_back(9));
        assert!(!f.push_front(9));
        assert_eq!(f.iter().collect::<Vec<_>>(), [0, 1, 2, 3]);
        assert_eq!(f.pop_front(), Some(0));
        assert!(f.push_front(7));
        assert_eq!(f.front(), Some(7));
        assert_eq!(f.iter().collect::<Vec<_>>(), [7, 1, 2, 3]);
        f.clear();
        assert_eq!(f.front(), None);
        let g = IdFifo::with_ids(2, 5..8);
        assert_eq!(g.iter().collect::<Vec<_>>(), [5, 6, 7]);
        let mut h = IdFifo::new(usize::MAX);
        assert!(
            h.push_back(1) && h.pop_front() == Some(1),
            "capped, not broken"
        );
    }
}
