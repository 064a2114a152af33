//! The frontend's memory table: the regions it shared (SET_MEM_TABLE,
//! ADD_MEM_REG, REM_MEM_REG), mapped into this process.
//!
//! Guest (driver) addresses are translated by [`Memory`], whose regions
//! are placed at their guest addresses; ring addresses arrive as frontend
//! user-space addresses and are translated to guest addresses first
//! ([`MemoryTable::user_to_guest`]).
//!
//! One connection may carry several frontend devices: QEMU's
//! `-netdev vhost-user` with `queues=N` drives each queue pair as its own
//! vhost device over the same socket, and each of them sends ADD_MEM_REG
//! for every region (only SET_MEM_TABLE is sent once). A region identical
//! to one already in the table (same guest address, size, user address and
//! mmap offset) is therefore counted instead of refused; REM_MEM_REG
//! unmaps a region only when its count reaches zero.
//!
//! Trust and panic contract: region descriptions come from the frontend.
//! Regions must be non-empty, must not overflow or overlap, and must be
//! mappable from the descriptor sent with them; anything else is an error
//! and the table is left as it was. Nothing panics.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

use ringwork_device::model::Memory;
use ringwork_queue::mmap::MmapRegion;

use crate::msg::MemRegion;

/// Most regions the table holds (what GET_MAX_MEM_SLOTS answers).
pub const MAX_MEM_SLOTS: usize = 32;

/// A refused memory table change.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    /// A region is empty, overflows, or overlaps another.
    #[error("bad memory region (guest {guest_addr:#x}, size {size:#x}): {reason}")]
    BadRegion {
        /// Its guest address.
        guest_addr: u64,
        /// Its size.
        size: u64,
        /// Why it was refused.
        reason: &'static str,
    },
    /// The number of descriptors does not match the number of regions.
    #[error("{regions} regions but {fds} file descriptors")]
    FdCount {
        /// Regions described.
        regions: usize,
        /// Descriptors received.
        fds: usize,
    },
    /// More regions than [`MAX_MEM_SLOTS`].
    #[error("more than {MAX_MEM_SLOTS} memory regions")]
    TooMany,
    /// mmap failed.
    #[error("mapping a region failed: {0}")]
    Map(#[source] std::io::Error),
}

/// The memory table and its current mapping.
#[derive(Debug)]
pub struct MemoryTable {
    regions: Vec<(MemRegion, OwnedFd)>,
    /// How many times each region (same index) was added.
    refs: Vec<u32>,
    mem: Arc<Memory>,
}

impl Default for MemoryTable {
    fn default() -> Self {
        Self {
            regions: Vec::new(),
            refs: Vec::new(),
            mem: Arc::new(Memory::new()),
        }
    }
}

impl MemoryTable {
    /// The current mapping (shared with workers; a table change makes a
    /// new one, and the old one is unmapped when the last user drops it).
    pub fn memory(&self) -> Arc<Memory> {
        self.mem.clone()
    }

    /// The regions.
    pub fn regions(&self) -> impl Iterator<Item = &MemRegion> {
        self.regions.iter().map(|(r, _)| r)
    }

    fn check(r: &MemRegion) -> Result<(), MemoryError> {
        let bad = |reason| MemoryError::BadRegion {
            guest_addr: r.guest_addr,
            size: r.size,
            reason,
        };
        if r.size == 0 {
            return Err(bad("empty"));
        }
        if usize::try_from(r.size).is_err()
            || r.guest_addr.checked_add(r.size).is_none()
            || r.user_addr.checked_add(r.size).is_none()
            || r.mmap_offset.checked_add(r.size).is_none()
        {
            return Err(bad("overflows"));
        }
        Ok(())
    }

    fn build(regions: &[(MemRegion, OwnedFd)]) -> Result<Memory, MemoryError> {
        let mut mem = Memory::new();
        for (r, fd) in regions {
            let map = MmapRegion::from_fd(fd.as_fd(), r.mmap_offset, r.size as usize)
                .map_err(MemoryError::Map)?;
            mem.add_region(r.guest_addr, map)
                .map_err(|_| MemoryError::BadRegion {
                    guest_addr: r.guest_addr,
                    size: r.size,
                    reason: "overlaps another region",
                })?;
        }
        Ok(mem)
    }

    fn user_overlap(regions: &[(MemRegion, OwnedFd)]) -> Option<MemRegion> {
        for (i, (a, _)) in regions.iter().enumerate() {
            for (b, _) in &regions[i + 1..] {
                if a.user_addr < b.user_addr + b.size && b.user_addr < a.user_addr + a.size {
                    return Some(*b);
                }
            }
        }
        None
    }

    fn install(&mut self, regions: Vec<(MemRegion, OwnedFd)>) -> Result<(), MemoryError> {
        if regions.len() > MAX_MEM_SLOTS {
            return Err(MemoryError::TooMany);
        }
        for (r, _) in &regions {
            Self::check(r)?;
        }
        if let Some(r) = Self::user_overlap(&regions) {
            return Err(MemoryError::BadRegion {
                guest_addr: r.guest_addr,
                size: r.size,
                reason: "user addresses overlap another region",
            });
        }
        let mem = Self::build(&regions)?;
        self.regions = regions;
        self.mem = Arc::new(mem);
        Ok(())
    }

    /// Replaces the whole table (SET_MEM_TABLE).
    pub fn set(&mut self, regions: Vec<MemRegion>, fds: Vec<OwnedFd>) -> Result<(), MemoryError> {
        if regions.len() != fds.len() {
            return Err(MemoryError::FdCount {
                regions: regions.len(),
                fds: fds.len(),
            });
        }
        self.install(regions.into_iter().zip(fds).collect())?;
        self.refs = vec![1; self.regions.len()];
        Ok(())
    }

    /// Adds one region (ADD_MEM_REG); a region identical to one in the
    /// table only counts once more (see the [module docs](self)), and its
    /// descriptor is closed.
    pub fn add(&mut self, region: MemRegion, fd: OwnedFd) -> Result<(), MemoryError> {
        if let Some(i) = self.regions.iter().position(|(r, _)| *r == region) {
            Self::check(&region)?;
            if let Some(n) = self.refs.get_mut(i) {
                *n = n.saturating_add(1);
            }
            drop(fd);
            return Ok(());
        }
        let mut next: Vec<(MemRegion, OwnedFd)> = Vec::with_capacity(self.regions.len() + 1);
        for (r, f) in &self.regions {
            next.push((*r, f.try_clone().map_err(MemoryError::Map)?));
        }
        next.push((region, fd));
        self.install(next)?;
        self.refs.push(1);
        Ok(())
    }

    /// Removes the region with this guest address and size (REM_MEM_REG);
    /// `false` when there is none. A region added more than once stays
    /// mapped until it was removed as often.
    pub fn remove(&mut self, region: &MemRegion) -> Result<bool, MemoryError> {
        let Some(i) = self
            .regions
            .iter()
            .position(|(r, _)| r.guest_addr == region.guest_addr && r.size == region.size)
        else {
            return Ok(false);
        };
        if let Some(n) = self.refs.get_mut(i).filter(|n| **n > 1) {
            *n -= 1;
            return Ok(true);
        }
        let mut next: Vec<(MemRegion, OwnedFd)> = Vec::with_capacity(self.regions.len());
        for (j, (r, f)) in self.regions.iter().enumerate() {
            if j != i {
                next.push((*r, f.try_clone().map_err(MemoryError::Map)?));
            }
        }
        self.install(next)?;
        if i < self.refs.len() {
            self.refs.remove(i);
        }
        Ok(true)
    }

    /// Drops every region.
    pub fn clear(&mut self) {
        *self = Self::default();
    }

    /// Translates a frontend user-space range to a guest address; `None`
    /// when it is not entirely inside one region.
    pub fn user_to_guest(&self, user_addr: u64, len: u64) -> Option<u64> {
        let end = user_addr.checked_add(len)?;
        self.regions.iter().find_map(|(r, _)| {
            (user_addr >= r.user_addr && end <= r.user_addr + r.size)
                .then(|| r.guest_addr + (user_addr - r.user_addr))
        })
    }
}
