//! Driver-side windows onto a device-side [`PciDevice`], for tests
//! (`test-utils`): [`PciLoopback`] is a [`RegisterAccess`] over the
//! function's configuration space or one of its BARs, so
//! [`PciTransport`](super::PciTransport) and [`PciDevice`] meet without a
//! VM.

use core::cell::RefCell;

use super::config_space::CONFIG_SPACE_SIZE;
use super::device::PciDevice;
use crate::device_model::VirtioDevice;
use crate::driver::RegisterAccess;

/// Which region of the function a [`PciLoopback`] forwards to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PciRegion {
    /// PCI configuration space (256 bytes).
    Config,
    /// BAR `n`, offsets from its start.
    Bar(u8),
}

/// A register window onto one region of a [`PciDevice`]. Accesses past the
/// region's end read as all ones and are dropped (a master abort), without
/// reaching the device.
#[derive(Debug)]
pub struct PciLoopback<'a, D> {
    target: &'a RefCell<PciDevice<D>>,
    region: PciRegion,
    size: u64,
}

impl<'a, D: VirtioDevice> PciLoopback<'a, D> {
    /// A window onto `target`'s configuration space.
    pub fn config(target: &'a RefCell<PciDevice<D>>) -> Self {
        Self {
            target,
            region: PciRegion::Config,
            size: CONFIG_SPACE_SIZE as u64,
        }
    }

    /// A window onto `target`'s BAR `index` (empty if it has no such BAR).
    pub fn bar(target: &'a RefCell<PciDevice<D>>, index: u8) -> Self {
        let size = target
            .borrow()
            .bars()
            .iter()
            .find(|b| b.index == index)
            .map_or(0, |b| b.size);
        Self {
            target,
            region: PciRegion::Bar(index),
            size,
        }
    }

    /// A window for each BAR `target` implements (`None` for the others
    /// and for the upper halves of 64-bit BARs), as
    /// [`PciTransport::new`](super::PciTransport::new) takes them.
    pub fn bars(target: &'a RefCell<PciDevice<D>>) -> [Option<Self>; 6] {
        let infos = target.borrow().bars();
        core::array::from_fn(|i| {
            infos
                .iter()
                .any(|b| usize::from(b.index) == i)
                .then(|| Self::bar(target, i as u8))
        })
    }

    /// The region this window forwards to.
    pub fn region(&self) -> PciRegion {
        self.region
    }

    fn in_range(&self, offset: usize, len: usize) -> bool {
        (offset as u64)
            .checked_add(len as u64)
            .is_some_and(|end| end <= self.size)
    }

    fn rd<const N: usize>(&self, offset: usize) -> [u8; N] {
        let mut b = [0xffu8; N];
        if !self.in_range(offset, N) {
            return b;
        }
        let mut dev = self.target.borrow_mut();
        match self.region {
            PciRegion::Config => dev.config_read(offset as u64, &mut b),
            PciRegion::Bar(i) => dev.bar_read(i, offset as u64, &mut b),
        }
        b
    }

    fn wr(&self, offset: usize, data: &[u8]) {
        if !self.in_range(offset, data.len()) {
            return;
        }
        let mut dev = self.target.borrow_mut();
        match self.region {
            PciRegion::Config => dev.config_write(offset as u64, data),
            PciRegion::Bar(i) => dev.bar_write(i, offset as u64, data),
        }
    }
}

impl<D: VirtioDevice> RegisterAccess for PciLoopback<'_, D> {
    fn read8(&self, offset: usize) -> u8 {
        self.rd::<1>(offset)[0]
    }
    fn read16(&self, offset: usize) -> u16 {
        u16::from_le_bytes(self.rd(offset))
    }
    fn read32(&self, offset: usize) -> u32 {
        u32::from_le_bytes(self.rd(offset))
    }
    fn write8(&self, offset: usize, value: u8) {
        self.wr(offset, &[value]);
    }
    fn write16(&self, offset: usize, value: u16) {
        self.wr(offset, &value.to_le_bytes());
    }
    fn write32(&self, offset: usize, value: u32) {
        self.wr(offset, &value.to_le_bytes());
    }
}
