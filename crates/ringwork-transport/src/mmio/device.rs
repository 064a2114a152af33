//! The device side of virtio-mmio: a register block a VMM maps on its bus
//! (VIRTIO 1.4 §4.2.2, version 2, and §4.2.4, legacy version 1).
//!
//! The VMM forwards every guest access in the block to
//! [`MmioDevice::read`] / [`MmioDevice::write`] (offsets from the block's
//! base) and wires an [`IrqLine`] to the block's interrupt. Available-buffer
//! notifications (`QueueNotify` writes) reach the device model directly; a
//! VMM that catches them elsewhere (an ioeventfd) calls
//! [`MmioDevice::notify`] with the written value.
//!
//! # Trust and panic contract
//! Every access comes from the driver. Accesses the spec forbids (wrong
//! width or alignment, write-only registers read, read-only registers
//! written, undescribed offsets) read as 0 and are ignored on write, and
//! are recorded ([`DeviceCore::violations`]). Nothing panics.

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, Ordering};

use ringwork_spec::features::VIRTIO_F_NOTIFICATION_DATA;
use ringwork_spec::mmio::{self as regs, legacy as lregs, Access};
use ringwork_spec::ring::notify::NotificationData;
use ringwork_spec::ring::split::legacy_layout;

use crate::device_model::VirtioDevice;
use crate::queue_regs::{half, set_half};
use crate::signal::{IrqLine, Route, Shared, Signals};
use crate::state::{DeviceCore, TransportKind};
use crate::violation::Violation;
use crate::BusDevice;

/// Which register layout the block presents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MmioVersion {
    /// Version 2, VIRTIO 1.x (§4.2.2).
    Modern,
    /// Version 1, the legacy page-based layout (§4.2.4).
    Legacy,
}

/// How the VMM sets the block up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MmioConfig {
    /// Register layout version.
    pub version: MmioVersion,
    /// `VendorID` (the virtio subsystem vendor ID; 0 if none).
    pub vendor_id: u32,
    /// Guest-physical address where the VMM maps the device's shared memory
    /// regions, one after the other in id order, each 4 KiB aligned.
    pub shm_base: u64,
}

impl Default for MmioConfig {
    fn default() -> Self {
        Self {
            version: MmioVersion::Modern,
            vendor_id: 0,
            shm_base: 0,
        }
    }
}

struct MmioRoute {
    line: Arc<dyn IrqLine>,
}

impl Route for MmioRoute {
    fn used_buffer(&self, _queue: u16, isr: &AtomicU32) {
        isr.fetch_or(regs::INTERRUPT_USED_BUFFER, Ordering::AcqRel);
        self.line.set_level(true);
    }
    fn config_changed(&self, isr: &AtomicU32) {
        isr.fetch_or(regs::INTERRUPT_CONFIG_CHANGE, Ordering::AcqRel);
        self.line.set_level(true);
    }
    fn status_cleared(&self, isr: &AtomicU32) {
        if isr.load(Ordering::Acquire) == 0 {
            self.line.set_level(false);
        }
    }
}

/// A virtio-mmio register block hosting a device. See the
/// [module docs](crate::mmio).
pub struct MmioDevice<D> {
    core: DeviceCore<D>,
    config: MmioConfig,
    device_features_sel: u32,
    driver_features_sel: u32,
    queue_sel: u32,
    shm_sel: u32,
    guest_page_size: u32,
    /// (id, base, len) of each shared memory region.
    shm: Vec<(u8, u64, u64)>,
}

impl<D: VirtioDevice> MmioDevice<D> {
    /// A block hosting `device`, raising `irq` for its notifications.
    pub fn new(device: D, irq: Arc<dyn IrqLine>, config: MmioConfig) -> Self {
        let mut shm = Vec::new();
        let mut next = config.shm_base;
        for r in device.shm_regions() {
            shm.push((r.id, next, r.len));
            next = next.saturating_add(r.len.saturating_add(0xfff) & !0xfff);
        }
        let shared = Arc::new(Shared::new(Box::new(MmioRoute { line: irq })));
        let legacy = config.version == MmioVersion::Legacy;
        Self {
            core: DeviceCore::new(device, TransportKind::Mmio, shared, legacy),
            config,
            device_features_sel: 0,
            driver_features_sel: 0,
            queue_sel: 0,
            shm_sel: 0,
            guest_page_size: 0,
            shm,
        }
    }

    /// The state machine and device behind the registers.
    pub fn core(&self) -> &DeviceCore<D> {
        &self.core
    }

    /// The state machine and device, mutably.
    pub fn core_mut(&mut self) -> &mut DeviceCore<D> {
        &mut self.core
    }

    /// The device's notification handle.
    pub fn signals(&self) -> Signals {
        self.core.signals()
    }

    /// Guest-physical base and length of shared memory region `id`.
    pub fn shm_region(&self, id: u8) -> Option<(u64, u64)> {
        self.shm
            .iter()
            .find(|r| r.0 == id)
            .map(|&(_, base, len)| (base, len))
    }

    fn table(&self) -> &'static [regs::Register] {
        match self.config.version {
            MmioVersion::Modern => &regs::REGISTERS,
            MmioVersion::Legacy => &lregs::REGISTERS,
        }
    }

    /// Checks a control-register access; `None` (recorded) if forbidden.
    fn check(&mut self, offset: u64, width: usize, write: bool) -> Option<usize> {
        let off = usize::try_from(offset).ok()?;
        let Some(r) = regs::register_at(self.table(), off) else {
            self.core.record(Violation::BadAccess {
                offset,
                width,
                write,
            });
            return None;
        };
        if width != regs::REGISTER_ACCESS_WIDTH {
            self.core.record(Violation::BadAccess {
                offset,
                width,
                write,
            });
            return None;
        }
        match (r.access, write) {
            (Access::ReadOnly, true) => {
                self.core.record(Violation::ReadOnly { offset });
                None
            }
            (Access::WriteOnly, false) => {
                self.core.record(Violation::WriteOnly { offset });
                None
            }
            _ => Some(off),
        }
    }

    fn config_access_ok(&mut self, offset: u64, width: usize, write: bool) -> bool {
        let ok = matches!(width, 1 | 2 | 4) && offset % width as u64 == 0;
        if !ok {
            self.core.record(Violation::BadAccess {
                offset,
                width,
                write,
            });
        }
        ok
    }

    fn selected_shm(&self) -> Option<(u64, u64)> {
        self.shm
            .iter()
            .find(|r| u32::from(r.0) == self.shm_sel)
            .map(|&(_, base, len)| (base, len))
    }

    fn read_reg(&mut self, off: usize) -> u32 {
        let sel = self.queue_sel;
        let legacy = self.config.version == MmioVersion::Legacy;
        match off {
            regs::MAGIC_VALUE => regs::MAGIC,
            regs::VERSION => match self.config.version {
                MmioVersion::Modern => regs::VERSION_MODERN,
                MmioVersion::Legacy => regs::VERSION_LEGACY,
            },
            regs::DEVICE_ID => self.core.device().device_type().id(),
            regs::VENDOR_ID => self.config.vendor_id,
            regs::DEVICE_FEATURES => self.core.device_features_word(self.device_features_sel),
            regs::QUEUE_SIZE_MAX => self.core.queue(sel).map_or(0, |q| q.max_size.into()),
            regs::QUEUE_READY => self.core.queue(sel).map_or(0, |q| q.ready.into()),
            lregs::QUEUE_PFN if legacy => self.core.queue(sel).map_or(0, |q| q.legacy_pfn),
            regs::INTERRUPT_STATUS => self.core.interrupt_status(),
            regs::STATUS => self.core.status().into(),
            regs::SHM_LEN_LOW | regs::SHM_LEN_HIGH => {
                let len = self.selected_shm().map_or(regs::SHM_LEN_NONE, |r| r.1);
                half(len, off == regs::SHM_LEN_HIGH)
            }
            regs::SHM_BASE_LOW | regs::SHM_BASE_HIGH => {
                let base = self.selected_shm().map_or(regs::SHM_BASE_NONE, |r| r.0);
                half(base, off == regs::SHM_BASE_HIGH)
            }
            // Resets complete before the write returns (§4.2.2.1: 0 once
            // the reset is done, and 0 after the queue is enabled).
            regs::QUEUE_RESET => 0,
            regs::CONFIG_GENERATION => self.core.config_generation(),
            _ => 0,
        }
    }

    fn write_reg(&mut self, off: usize, v: u32) {
        let sel = self.queue_sel;
        let legacy = self.config.version == MmioVersion::Legacy;
        match off {
            regs::DEVICE_FEATURES_SEL => self.device_features_sel = v,
            regs::DRIVER_FEATURES => self
                .core
                .write_driver_features_word(self.driver_features_sel, v),
            regs::DRIVER_FEATURES_SEL => self.driver_features_sel = v,
            regs::QUEUE_SEL => self.queue_sel = v,
            regs::QUEUE_SIZE => {
                if let Some(q) = self.core.queue_config_mut(sel) {
                    // A size beyond 16 bits is invalid; 0 is refused at enable.
                    q.size = u16::try_from(v).unwrap_or(0);
                }
            }
            regs::QUEUE_READY => {
                if v & 1 != 0 {
                    self.core.enable_queue(sel);
                } else {
                    self.core.disable_queue(sel);
                }
            }
            regs::QUEUE_NOTIFY => self.notify(v),
            regs::INTERRUPT_ACK => {
                let undefined = v & !regs::INTERRUPT_KNOWN_BITS;
                if undefined != 0 {
                    self.core
                        .record(Violation::AckReservedBits { bits: undefined });
                }
                self.core.ack_interrupts(v & regs::INTERRUPT_KNOWN_BITS);
            }
            regs::STATUS => self.write_status(v as u8),
            regs::QUEUE_DESC_LOW
            | regs::QUEUE_DESC_HIGH
            | regs::QUEUE_DRIVER_LOW
            | regs::QUEUE_DRIVER_HIGH
            | regs::QUEUE_DEVICE_LOW
            | regs::QUEUE_DEVICE_HIGH
                if !legacy =>
            {
                if let Some(q) = self.core.queue_config_mut(sel) {
                    let a = &mut q.addresses;
                    let (reg, high) = match off {
                        regs::QUEUE_DESC_LOW => (&mut a.desc, false),
                        regs::QUEUE_DESC_HIGH => (&mut a.desc, true),
                        regs::QUEUE_DRIVER_LOW => (&mut a.driver, false),
                        regs::QUEUE_DRIVER_HIGH => (&mut a.driver, true),
                        regs::QUEUE_DEVICE_LOW => (&mut a.device, false),
                        _ => (&mut a.device, true),
                    };
                    set_half(reg, high, v);
                }
            }
            regs::SHM_SEL => self.shm_sel = v,
            regs::QUEUE_RESET if v == 1 => self.core.reset_queue(sel),
            lregs::GUEST_PAGE_SIZE if legacy => {
                if !v.is_power_of_two() {
                    self.core
                        .record(Violation::Legacy("GuestPageSize is not a power of 2"));
                }
                self.guest_page_size = v;
            }
            lregs::QUEUE_ALIGN if legacy => {
                if let Some(q) = self.core.queue_config_mut(sel) {
                    q.legacy_align = v;
                }
            }
            lregs::QUEUE_PFN if legacy => self.write_pfn(sel, v),
            _ => {}
        }
    }

    fn write_status(&mut self, v: u8) {
        self.core.write_status(v);
        if v == 0 {
            self.device_features_sel = 0;
            self.driver_features_sel = 0;
            self.queue_sel = 0;
            self.shm_sel = 0;
        }
    }

    /// Legacy `QueuePFN`: the queue's page number; 0 stops the queue.
    fn write_pfn(&mut self, sel: u32, pfn: u32) {
        if pfn == 0 {
            self.core.disable_queue(sel);
            return;
        }
        let page = self.guest_page_size;
        let Some(q) = self.core.queue_config_mut(sel) else {
            return;
        };
        let align = q.legacy_align;
        if !page.is_power_of_two() || !align.is_power_of_two() {
            self.core.record(Violation::Legacy(
                "queue used before a power-of-2 GuestPageSize and QueueAlign",
            ));
            return;
        }
        let base = u64::from(pfn) * u64::from(page);
        let layout = legacy_layout(q.size, align as usize);
        q.legacy_pfn = pfn;
        q.addresses.desc = base;
        q.addresses.driver = base + layout.avail_offset as u64;
        q.addresses.device = base + layout.used_offset as u64;
        self.core.enable_queue(sel);
        // A refused configuration leaves the queue unused (PFN reads 0).
        if let Some(q) = self.core.queue_regs_mut(sel) {
            if !q.ready {
                q.legacy_pfn = 0;
            }
        }
    }

    /// An available buffer notification: the value written to
    /// `QueueNotify` (§4.2.3.3), for VMMs that catch these writes outside
    /// the register model.
    pub fn notify(&mut self, value: u32) {
        if self.core.has_feature(VIRTIO_F_NOTIFICATION_DATA) {
            let data = NotificationData::from_u32(value);
            self.core.notify(data.vq.into(), Some(data));
        } else {
            self.core.notify(value, None);
        }
    }
}

impl<D: VirtioDevice> BusDevice for MmioDevice<D> {
    /// A driver read of `data.len()` bytes at `offset` from the block base.
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        let width = data.len();
        if offset >= regs::CONFIG as u64 {
            if self.config_access_ok(offset, width, false) {
                self.core.read_config(offset - regs::CONFIG as u64, data);
            }
            return;
        }
        if let Some(off) = self.check(offset, width, false) {
            let v = self.read_reg(off);
            data.copy_from_slice(&v.to_le_bytes());
        }
    }

    /// A driver write of `data` at `offset` from the block base.
    fn write(&mut self, offset: u64, data: &[u8]) {
        let width = data.len();
        if offset >= regs::CONFIG as u64 {
            if self.config_access_ok(offset, width, true) {
                self.core.write_config(offset - regs::CONFIG as u64, data);
            }
            return;
        }
        if let Some(off) = self.check(offset, width, true) {
            let mut b = [0u8; 4];
            b.copy_from_slice(data);
            self.write_reg(off, u32::from_le_bytes(b));
        }
    }
}

impl<D: core::fmt::Debug> core::fmt::Debug for MmioDevice<D> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("MmioDevice")
            .field("core", &self.core)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}
