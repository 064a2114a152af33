//! The device side of virtio-pci: a PCI function a VMM puts on its bus
//! (VIRTIO 1.4 §4.1): configuration space with the virtio capabilities,
//! the modern BAR (common configuration, notifications, ISR, device
//! configuration), MSI-X, and for transitional devices the legacy I/O BAR.
//!
//! The VMM forwards configuration-space accesses to
//! [`PciDevice::config_read`] / [`PciDevice::config_write`] and accesses to
//! the BARs it mapped (see [`PciDevice::bars`], [`PciDevice::bar_address`])
//! to [`PciDevice::bar_read`] / [`PciDevice::bar_write`], with offsets from
//! the BAR's start. Decoding (Memory/I/O Space enable, where each BAR is
//! mapped) is the VMM's: the model serves whatever it is given. The layout
//! is described in the [module docs](super).
//!
//! # Trust and panic contract
//! Every access comes from the driver. Accesses the spec forbids (wrong
//! width or alignment, read-only fields written, undescribed offsets,
//! writes to virtio capabilities, PCI_CFG windows outside the structures,
//! use of the other interface of a transitional device mid-session) read
//! as 0 and are ignored on write, and are recorded
//! ([`DeviceCore::violations`]). Nothing panics.

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;

use ringwork_spec::device_id::{
    VIRTIO_ID_BLOCK, VIRTIO_ID_CONSOLE, VIRTIO_ID_GPU, VIRTIO_ID_INPUT, VIRTIO_ID_NET,
    VIRTIO_ID_SCSI,
};
use ringwork_spec::features::{VIRTIO_F_NOTIFICATION_DATA, VIRTIO_F_RING_RESET};
use ringwork_spec::pci::*;
use ringwork_spec::ring::notify::NotificationData;
use ringwork_spec::ring::split;

use super::config_space::{BarInfo, BarKind, ConfigSpace, Header};
use super::msix::{Interrupts, Msix, PciRoute};
use super::vendor::{add_vendor_caps, VendorData};
use super::{
    MsiSink, COMMON_CFG_BAR_OFFSET, DEVICE_CFG_BAR_OFFSET, ISR_BAR_OFFSET, LEGACY_BAR_INDEX,
    MODERN_BAR_INDEX, MSIX_BAR_INDEX, SHM_BAR_INDEX,
};
use crate::device_model::VirtioDevice;
use crate::queue_regs::{half, set_half};
use crate::signal::{IrqLine, Shared, Signals};
use crate::state::{DeviceCore, TransportKind};
use crate::violation::Violation;

/// Which interfaces the function presents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PciMode {
    /// Non-transitional (§4.1.2): device ID 0x1040 + type, revision 1, no
    /// I/O BAR.
    #[default]
    Modern,
    /// Transitional (§4.1.2.3, §4.1.4.10): the transitional device ID,
    /// revision 0, subsystem ID = device type, and the legacy interface in
    /// I/O BAR0 next to the modern one.
    Transitional,
}

/// How the VMM sets the function up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PciConfig {
    /// Non-transitional or transitional.
    pub mode: PciMode,
    /// MSI-X Table Size; 0 = no MSI-X capability (INTx only). At most
    /// 0x800 (§4.1.5.1.2.1).
    pub msix_vectors: u16,
    /// PCI Subsystem Vendor ID (informational, §4.1.2).
    pub subsystem_vendor_id: u16,
    /// `notify_off_multiplier` (§4.1.4.4): 0, or a power of 2 (a multiple
    /// of 4 when the device offers VIRTIO_F_NOTIFICATION_DATA).
    pub notify_off_multiplier: u32,
    /// Vendor data capabilities (VIRTIO 1.4 §4.1.4.8), placed in this
    /// order after the other capabilities; see [`VendorData`].
    pub vendor_data: &'static [VendorData],
}

/// Non-transitional, 4 MSI-X vectors (§4.1.5.1.2.1 suggests at least 2),
/// Subsystem Vendor ID 0x1AF4, `notify_off_multiplier` 4, no vendor data.
impl Default for PciConfig {
    fn default() -> Self {
        Self {
            mode: PciMode::Modern,
            msix_vectors: 4,
            subsystem_vendor_id: VIRTIO_PCI_VENDOR_ID,
            notify_off_multiplier: 4,
            vendor_data: &[],
        }
    }
}

/// Why [`PciDevice::new`] refused a configuration (a VMM error, not a
/// driver one).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PciConfigError {
    /// The device type has no PCI device ID (above 0x3f).
    #[error("device type {0} has no virtio PCI device ID")]
    NoDeviceId(u32),
    /// Transitional mode for a type the spec gives no transitional ID.
    #[error("device type {0} has no transitional PCI device ID")]
    NoTransitionalId(u32),
    /// More MSI-X vectors than a table can hold.
    #[error("{0} MSI-X vectors requested (at most 0x800)")]
    TooManyVectors(u16),
    /// A `notify_off_multiplier` §4.1.4.4.1 does not allow.
    #[error("notify_off_multiplier {0} is not allowed")]
    NotifyMultiplier(u32),
    /// More queues than `num_queues` can count, or a notification
    /// structure larger than a capability can describe.
    #[error("{0} queues do not fit the PCI transport")]
    TooManyQueues(usize),
    /// A queue maximum that is neither 0 nor a power of 2 (§4.1.4.3.1).
    #[error("queue {queue}: maximum size {size} is not 0 or a power of 2")]
    QueueSize {
        /// The queue.
        queue: usize,
        /// Its maximum size.
        size: u16,
    },
    /// The capabilities do not fit in configuration space (too many shared
    /// memory regions), or a region is too large.
    #[error("capabilities do not fit the configuration space")]
    CapabilitySpace,
    /// Two shared memory regions with one ID (§4.1.4.7.1).
    #[error("shared memory region id {0} used twice")]
    DuplicateShmId(u8),
    /// A vendor data capability with `vendor_id` 0x1AF4, which VIRTIO 1.4
    /// §4.1.4.8 forbids.
    #[error("vendor data capability with vendor_id {0:#06x}")]
    VendorId(u16),
}

/// Where the structures sit in the modern BAR.
#[derive(Debug, Clone, Copy)]
pub(super) struct Layout {
    pub(super) notify: u64,
    pub(super) notify_len: u64,
    pub(super) multiplier: u32,
    pub(super) config_len: u64,
}

/// One of the modern BAR's structures.
pub(super) enum Region {
    Common(u64),
    Isr,
    Device(u64),
    Notify(u64),
}

/// A virtio PCI function hosting a device. See the [module docs](crate::pci).
pub struct PciDevice<D> {
    pub(super) core: DeviceCore<D>,
    pub(super) cfg: ConfigSpace,
    pub(super) irq: Arc<Interrupts>,
    pub(super) mode: PciMode,
    pub(super) layout: Layout,
    pub(super) device_feature_select: u32,
    pub(super) driver_feature_select: u32,
    pub(super) queue_select: u16,
    /// (id, offset in the shared memory BAR, length).
    shm: Vec<(u8, u64, u64)>,
}

/// PCI class code for a device type: network and mass storage like QEMU,
/// communication/display/input for console/GPU/input, "unassigned" (0xff)
/// for the rest.
fn class_code(device_type: u32) -> u32 {
    match device_type {
        VIRTIO_ID_NET => 0x02_00_00,
        VIRTIO_ID_BLOCK | VIRTIO_ID_SCSI => 0x01_00_00,
        VIRTIO_ID_CONSOLE => 0x07_80_00,
        VIRTIO_ID_GPU => 0x03_80_00,
        VIRTIO_ID_INPUT => 0x09_80_00,
        _ => 0xff_00_00,
    }
}

/// Subsystem Device ID of non-transitional functions (QEMU's; ≥ 0x40 as
/// §4.1.2.1 asks, so legacy drivers leave the function alone).
pub const MODERN_SUBSYSTEM_ID: u16 = 0x1100;

impl<D: VirtioDevice> PciDevice<D> {
    /// A function hosting `device`, raising `intx` (INTA#) or sending MSI-X
    /// messages to `msi` for its notifications.
    pub fn new(
        device: D,
        intx: Arc<dyn IrqLine>,
        msi: Arc<dyn MsiSink>,
        config: PciConfig,
    ) -> Result<Self, PciConfigError> {
        let ty = device.device_type().id();
        let ty16 = u16::try_from(ty).ok();
        let (device_id, revision, subsystem_id) = match config.mode {
            PciMode::Modern => (
                ty16.and_then(modern_device_id)
                    .ok_or(PciConfigError::NoDeviceId(ty))?,
                NON_TRANSITIONAL_MIN_REVISION_ID,
                MODERN_SUBSYSTEM_ID,
            ),
            PciMode::Transitional => {
                let id = ty16
                    .and_then(transitional_device_id)
                    .ok_or(PciConfigError::NoTransitionalId(ty))?;
                (id, TRANSITIONAL_REVISION_ID, ty as u16)
            }
        };
        if config.msix_vectors > MSIX_MAX_VECTORS {
            return Err(PciConfigError::TooManyVectors(config.msix_vectors));
        }
        let m = config.notify_off_multiplier;
        let nd = device
            .device_features()
            .contains(VIRTIO_F_NOTIFICATION_DATA);
        if !is_valid_notify_off_multiplier(m, nd) {
            return Err(PciConfigError::NotifyMultiplier(m));
        }
        let maxes = device.queue_max_sizes();
        let queues = maxes.len();
        if queues > usize::from(u16::MAX) {
            return Err(PciConfigError::TooManyQueues(queues));
        }
        if let Some((queue, &size)) = maxes
            .iter()
            .enumerate()
            .find(|(_, &s)| s != 0 && !split::is_valid_queue_size(s))
        {
            return Err(PciConfigError::QueueSize { queue, size });
        }
        // §4.1.4.4.1: cap.length >= queue_notify_off * multiplier + 4 (2
        // without NOTIFICATION_DATA; 4 covers both) for every queue.
        let notify_len = queues.saturating_sub(1) as u64 * u64::from(m) + 4;
        let config_len = device.config_len() as u64;
        if notify_len > u64::from(u32::MAX) {
            return Err(PciConfigError::TooManyQueues(queues));
        }
        if config_len > u64::from(u32::MAX) {
            return Err(PciConfigError::CapabilitySpace);
        }
        let notify = DEVICE_CFG_BAR_OFFSET + config_len.next_multiple_of(0x1000).max(0x1000);
        let layout = Layout {
            notify,
            notify_len,
            multiplier: m,
            config_len,
        };

        let mut cfg = ConfigSpace::new(Header {
            vendor_id: VIRTIO_PCI_VENDOR_ID,
            device_id,
            revision,
            class: class_code(ty),
            subsystem_vendor_id: config.subsystem_vendor_id,
            subsystem_id,
        });
        let msix = (config.msix_vectors > 0).then(|| Msix::new(config.msix_vectors, msi));
        let space = PciConfigError::CapabilitySpace;
        if config.mode == PciMode::Transitional {
            cfg.add_bar(BarInfo {
                index: LEGACY_BAR_INDEX,
                size: (24 + config_len).next_power_of_two().max(32),
                kind: BarKind::Io,
                prefetchable: false,
            });
        }
        if let Some(m) = &msix {
            cfg.add_bar(BarInfo {
                index: MSIX_BAR_INDEX,
                size: m.bar_size(),
                kind: BarKind::Mem32,
                prefetchable: false,
            });
            cfg.add_msix(MSIX_BAR_INDEX, 0, m.pba_offset() as u32)
                .ok_or(space.clone())?;
        }
        // Shared memory regions (§2.10, §4.1.4.7): one after the other in
        // a 64-bit prefetchable BAR, each 4 KiB aligned.
        let mut shm = Vec::new();
        let mut next = 0u64;
        for r in device.shm_regions() {
            if shm.iter().any(|&(id, _, _)| id == r.id) {
                return Err(PciConfigError::DuplicateShmId(r.id));
            }
            shm.push((r.id, next, r.len));
            next = next
                .checked_add(
                    r.len
                        .checked_next_multiple_of(0x1000)
                        .ok_or(space.clone())?,
                )
                .filter(|n| *n <= 1 << 62)
                .ok_or(space.clone())?;
        }
        if !shm.is_empty() {
            cfg.add_bar(BarInfo {
                index: SHM_BAR_INDEX,
                size: next.next_power_of_two().max(0x1000),
                kind: BarKind::Mem64,
                prefetchable: true,
            });
        }
        cfg.add_bar(BarInfo {
            index: MODERN_BAR_INDEX,
            size: (notify + notify_len.next_multiple_of(0x1000)).next_power_of_two(),
            kind: BarKind::Mem64,
            prefetchable: false,
        });
        let bar = MODERN_BAR_INDEX;
        let caps = [
            (
                VIRTIO_PCI_CAP_COMMON_CFG,
                COMMON_CFG_BAR_OFFSET,
                COMMON_CFG_SIZE as u64,
            ),
            (VIRTIO_PCI_CAP_NOTIFY_CFG, notify, notify_len),
            (VIRTIO_PCI_CAP_ISR_CFG, ISR_BAR_OFFSET, 1),
            (VIRTIO_PCI_CAP_DEVICE_CFG, DEVICE_CFG_BAR_OFFSET, config_len),
        ];
        for (ty, off, len) in caps {
            if ty == VIRTIO_PCI_CAP_DEVICE_CFG && len == 0 {
                continue;
            }
            let extra = if ty == VIRTIO_PCI_CAP_NOTIFY_CFG {
                &m.to_le_bytes()[..]
            } else {
                &[]
            };
            cfg.add_virtio(ty, bar, 0, off as u32, len as u32, extra)
                .ok_or(space.clone())?;
        }
        cfg.add_virtio(VIRTIO_PCI_CAP_PCI_CFG, 0, 0, 0, 0, &[0; 4])
            .ok_or(space.clone())?;
        for &(id, off, len) in &shm {
            let mut hi = [0u8; 8];
            hi[..4].copy_from_slice(&((off >> 32) as u32).to_le_bytes());
            hi[4..].copy_from_slice(&((len >> 32) as u32).to_le_bytes());
            let (o, l) = (off as u32, len as u32);
            cfg.add_virtio(
                VIRTIO_PCI_CAP_SHARED_MEMORY_CFG,
                SHM_BAR_INDEX,
                id,
                o,
                l,
                &hi,
            )
            .ok_or(space.clone())?;
        }
        add_vendor_caps(&mut cfg, config.vendor_data)?;

        let irq = Arc::new(Interrupts::new(msix, queues, intx));
        let shared = Arc::new(Shared::new(Box::new(PciRoute(irq.clone()))));
        Ok(Self {
            core: DeviceCore::new(device, TransportKind::Pci, shared, false),
            cfg,
            irq,
            mode: config.mode,
            layout,
            device_feature_select: 0,
            driver_feature_select: 0,
            queue_select: 0,
            shm,
        })
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

    /// Non-transitional or transitional.
    pub fn mode(&self) -> PciMode {
        self.mode
    }

    /// The BARs the VMM must allocate space to (a 64-bit BAR is listed
    /// once, at its lower index).
    pub fn bars(&self) -> Vec<BarInfo> {
        self.cfg.bars().collect()
    }

    /// The address BAR `index` is programmed with (`None` if the function
    /// does not implement it).
    pub fn bar_address(&self, index: u8) -> Option<u64> {
        self.cfg.bar_address(index)
    }

    /// Programs BAR `index` with `address` (for VMMs that assign addresses
    /// themselves instead of firmware); `false` if there is no such BAR.
    pub fn set_bar_address(&mut self, index: u8, address: u64) -> bool {
        self.cfg.set_bar_address(index, address)
    }

    /// The command register (I/O and Memory Space enables tell the VMM
    /// whether to decode the BARs).
    pub fn command(&self) -> u16 {
        self.cfg.command()
    }

    /// Shared memory region `id`: (BAR, offset in the BAR, length).
    pub fn shm_region(&self, id: u8) -> Option<(u8, u64, u64)> {
        self.shm
            .iter()
            .find(|r| r.0 == id)
            .map(|&(_, off, len)| (SHM_BAR_INDEX, off, len))
    }

    /// Where queue `queue`'s Queue Notify address is (§4.1.4.4): (BAR,
    /// offset in the BAR), for VMMs that catch notifications with an
    /// ioeventfd and call [`PciDevice::notify`].
    pub fn notify_offset(&self, queue: u16) -> Option<(u8, u64)> {
        (usize::from(queue) < self.core.queue_count()).then(|| {
            let off = u64::from(queue) * u64::from(self.layout.multiplier);
            (MODERN_BAR_INDEX, self.layout.notify + off)
        })
    }

    /// PCI function reset (FLR, bus reset): the device is reset and the
    /// configuration space, MSI-X included, returns to its initial state.
    pub fn reset_function(&mut self) {
        self.write_status(0);
        self.cfg.reset();
        if let Some(m) = &self.irq.msix {
            m.reset();
        }
        self.refresh_intx();
    }

    /// An available buffer notification for `queue`, with `value` the
    /// value the driver wrote (the notification data with
    /// VIRTIO_F_NOTIFICATION_DATA, §4.1.5.2).
    pub fn notify(&mut self, queue: u16, value: u32) {
        let data = self
            .core
            .has_feature(VIRTIO_F_NOTIFICATION_DATA)
            .then(|| NotificationData::from_u32(value));
        self.core.notify(queue.into(), data);
    }

    pub(super) fn bad(&mut self, offset: u64, width: usize, write: bool) {
        self.core.record(Violation::BadAccess {
            offset,
            width,
            write,
        });
    }

    /// A driver read of `data.len()` bytes at `offset` in BAR `bar`.
    pub fn bar_read(&mut self, bar: u8, offset: u64, data: &mut [u8]) {
        data.fill(0);
        match bar {
            LEGACY_BAR_INDEX if self.mode == PciMode::Transitional => {
                self.legacy_read(offset, data)
            }
            MSIX_BAR_INDEX if self.irq.msix.is_some() => {
                if !self
                    .irq
                    .msix
                    .as_ref()
                    .is_some_and(|m| m.bar_read(offset, data))
                {
                    self.bad(offset, data.len(), false);
                }
            }
            MODERN_BAR_INDEX => self.modern_read(offset, data),
            _ => self.bad(offset, data.len(), false),
        }
    }

    /// A driver write of `data` at `offset` in BAR `bar`.
    pub fn bar_write(&mut self, bar: u8, offset: u64, data: &[u8]) {
        match bar {
            LEGACY_BAR_INDEX if self.mode == PciMode::Transitional => {
                self.legacy_write(offset, data)
            }
            MSIX_BAR_INDEX if self.irq.msix.is_some() => {
                let r = self.irq.msix.as_ref().map(|m| m.bar_write(offset, data));
                match r {
                    Some(Err(true)) => self.core.record(Violation::ReadOnly { offset }),
                    Some(Err(false)) => self.bad(offset, data.len(), true),
                    _ => {}
                }
            }
            MODERN_BAR_INDEX => self.modern_write(offset, data),
            _ => self.bad(offset, data.len(), true),
        }
    }

    /// The structure an access of `len` bytes at `offset` of the modern BAR
    /// falls in entirely, with the offset inside it.
    pub(super) fn region(&self, offset: u64, len: usize) -> Option<Region> {
        let l = &self.layout;
        let end = offset.checked_add(len as u64)?;
        let inside = |base: u64, size: u64| offset >= base && end <= base + size;
        if inside(COMMON_CFG_BAR_OFFSET, COMMON_CFG_SIZE as u64) {
            Some(Region::Common(offset - COMMON_CFG_BAR_OFFSET))
        } else if inside(ISR_BAR_OFFSET, 1) {
            Some(Region::Isr)
        } else if inside(DEVICE_CFG_BAR_OFFSET, l.config_len) {
            Some(Region::Device(offset - DEVICE_CFG_BAR_OFFSET))
        } else if inside(l.notify, l.notify_len) {
            Some(Region::Notify(offset - l.notify))
        } else {
            None
        }
    }

    /// Whether the driver may use the modern (`legacy == false`) or the
    /// legacy interface now. A transitional device follows whichever one a
    /// reset driver touches first (§4.1.4.10); mixing them mid-session is
    /// refused and recorded.
    pub(super) fn use_interface(&mut self, legacy: bool) -> bool {
        if self.core.is_legacy() == legacy {
            return true;
        }
        if self.core.status() == 0 {
            self.core.set_legacy(legacy);
            return true;
        }
        self.core.record(Violation::Legacy(if legacy {
            "legacy I/O BAR used while the modern interface is in use"
        } else {
            "modern interface used while the legacy interface is in use"
        }));
        false
    }

    fn modern_read(&mut self, offset: u64, data: &mut [u8]) {
        let width = data.len();
        let Some(region) = self.region(offset, width) else {
            return self.bad(offset, width, false);
        };
        if !self.use_interface(false) {
            return;
        }
        match region {
            Region::Common(off) => {
                if !is_valid_common_cfg_access(off as usize, width, false) {
                    return self.bad(offset, width, false);
                }
                let v = self.common_read(off as usize);
                data.copy_from_slice(&v.to_le_bytes()[..width]);
            }
            // §4.1.4.5: reading ISR status clears it and de-asserts INTx.
            Region::Isr if width == 1 => data[0] = self.core.ack_interrupts(u32::MAX) as u8,
            Region::Device(off) if matches!(width, 1 | 2 | 4) && off % width as u64 == 0 => {
                self.core.read_config(off, data)
            }
            Region::Notify(_) => self.core.record(Violation::WriteOnly { offset }),
            _ => self.bad(offset, width, false),
        }
    }

    fn modern_write(&mut self, offset: u64, data: &[u8]) {
        let width = data.len();
        let Some(region) = self.region(offset, width) else {
            return self.bad(offset, width, true);
        };
        // A reset through either interface is always honoured.
        let reset = matches!(region, Region::Common(o) if o == COMMON_CFG_DEVICE_STATUS as u64)
            && data == [0];
        if reset {
            self.write_status(0);
            self.core.set_legacy(false);
            return;
        }
        if !self.use_interface(false) {
            return;
        }
        match region {
            Region::Common(off) => {
                let off = off as usize;
                if !is_valid_common_cfg_access(off, width, true) {
                    if is_valid_common_cfg_access(off, width, false) {
                        self.core.record(Violation::ReadOnly { offset });
                    } else {
                        self.bad(offset, width, true);
                    }
                    return;
                }
                let mut b = [0u8; 4];
                b[..width].copy_from_slice(data);
                self.common_write(off, u32::from_le_bytes(b));
            }
            Region::Isr => self.core.record(Violation::ReadOnly { offset }),
            Region::Device(off) if matches!(width, 1 | 2 | 4) && off % width as u64 == 0 => {
                self.core.write_config(off, data)
            }
            Region::Notify(off) => self.notify_write(offset, off, data),
            _ => self.bad(offset, width, true),
        }
    }

    /// A write to the notification structure (§4.1.5.2): 16-bit, or 32-bit
    /// notification data with VIRTIO_F_NOTIFICATION_DATA, at a queue's
    /// Queue Notify address. With a multiplier of 0 every queue shares the
    /// address and the value names the queue.
    fn notify_write(&mut self, offset: u64, rel: u64, data: &[u8]) {
        let nd = self.core.has_feature(VIRTIO_F_NOTIFICATION_DATA);
        let width = if nd { NOTIFY_DATA_WIDTH } else { NOTIFY_WIDTH };
        let m = u64::from(self.layout.multiplier);
        let aligned = if m == 0 { rel == 0 } else { rel % m == 0 };
        if data.len() != width || !aligned {
            return self.bad(offset, data.len(), true);
        }
        let mut b = [0u8; 4];
        b[..width].copy_from_slice(data);
        let value = u32::from_le_bytes(b);
        let queue = rel.checked_div(m).map_or(value as u16, |q| q as u16);
        self.notify(queue, value);
    }

    /// Device status write; a 0 resets the device, the selectors and the
    /// MSI-X vector mappings (§4.1.4.3.1, §4.1.5.1.2.1).
    pub(super) fn write_status(&mut self, v: u8) {
        self.core.write_status(v);
        if v == 0 {
            self.device_feature_select = 0;
            self.driver_feature_select = 0;
            self.queue_select = 0;
            self.irq.unmap_all();
        }
    }

    /// Maps queue `sel` to `vector` (recording a refusal, §4.1.5.1.2.1).
    pub(super) fn write_queue_vector(&mut self, sel: u16, vector: u16) {
        let q = usize::from(sel);
        if q >= self.core.queue_count() {
            self.core
                .record(Violation::NoSuchQueue { queue: sel.into() });
            return;
        }
        if !self.irq.set_queue_vector(q, vector) {
            self.record_bad_vector(vector);
        }
        let v = self.irq.queue_vector(q);
        if let Some(r) = self.core.queue_regs_mut(sel.into()) {
            r.msix_vector = v;
        }
    }

    /// Maps configuration changes to `vector`.
    pub(super) fn write_config_vector(&mut self, vector: u16) {
        if !self.irq.set_config_vector(vector) {
            self.record_bad_vector(vector);
        }
    }

    fn record_bad_vector(&mut self, vector: u16) {
        let table_size = self.irq.table_size();
        self.core
            .record(Violation::BadVector { vector, table_size });
    }

    fn common_read(&mut self, off: usize) -> u32 {
        let sel = usize::from(self.queue_select);
        let q = self.core.queues().get(sel).copied();
        match off {
            COMMON_CFG_DEVICE_FEATURE_SELECT => self.device_feature_select,
            COMMON_CFG_DEVICE_FEATURE => self.core.device_features_word(self.device_feature_select),
            COMMON_CFG_DRIVER_FEATURE_SELECT => self.driver_feature_select,
            COMMON_CFG_DRIVER_FEATURE => self.core.driver_features_word(self.driver_feature_select),
            COMMON_CFG_CONFIG_MSIX_VECTOR => self.irq.config_vector().into(),
            COMMON_CFG_NUM_QUEUES => self.core.queue_count() as u32,
            COMMON_CFG_DEVICE_STATUS => self.core.status().into(),
            COMMON_CFG_CONFIG_GENERATION => self.core.config_generation() & 0xff,
            COMMON_CFG_QUEUE_SELECT => self.queue_select.into(),
            // §4.1.4.3.1: 0 for an unavailable queue.
            COMMON_CFG_QUEUE_SIZE => q.map_or(0, |q| q.size.into()),
            COMMON_CFG_QUEUE_MSIX_VECTOR => self.irq.queue_vector(sel).into(),
            COMMON_CFG_QUEUE_ENABLE => q.map_or(0, |q| q.ready.into()),
            COMMON_CFG_QUEUE_NOTIFY_OFF => q.map_or(0, |_| sel as u32),
            COMMON_CFG_QUEUE_DESC | COMMON_CFG_QUEUE_DESC_HI => q.map_or(0, |q| {
                half(q.addresses.desc, off == COMMON_CFG_QUEUE_DESC_HI)
            }),
            COMMON_CFG_QUEUE_DRIVER | COMMON_CFG_QUEUE_DRIVER_HI => q.map_or(0, |q| {
                half(q.addresses.driver, off == COMMON_CFG_QUEUE_DRIVER_HI)
            }),
            COMMON_CFG_QUEUE_DEVICE | COMMON_CFG_QUEUE_DEVICE_HI => q.map_or(0, |q| {
                half(q.addresses.device, off == COMMON_CFG_QUEUE_DEVICE_HI)
            }),
            COMMON_CFG_QUEUE_NOTIF_CONFIG_DATA => q.map_or(0, |q| q.notif_config_data.into()),
            // Resets complete before the write returns (§4.1.4.3.1).
            COMMON_CFG_QUEUE_RESET => 0,
            // No administration virtqueues: index 0, number 0.
            _ => 0,
        }
    }

    fn common_write(&mut self, off: usize, v: u32) {
        let sel = u32::from(self.queue_select);
        match off {
            COMMON_CFG_DEVICE_FEATURE_SELECT => self.device_feature_select = v,
            COMMON_CFG_DRIVER_FEATURE_SELECT => self.driver_feature_select = v,
            COMMON_CFG_DRIVER_FEATURE => self
                .core
                .write_driver_features_word(self.driver_feature_select, v),
            COMMON_CFG_CONFIG_MSIX_VECTOR => self.write_config_vector(v as u16),
            COMMON_CFG_DEVICE_STATUS => self.write_status(v as u8),
            COMMON_CFG_QUEUE_SELECT => self.queue_select = v as u16,
            COMMON_CFG_QUEUE_SIZE => {
                if let Some(q) = self.core.queue_config_mut(sel) {
                    q.size = v as u16;
                }
            }
            COMMON_CFG_QUEUE_MSIX_VECTOR => self.write_queue_vector(sel as u16, v as u16),
            COMMON_CFG_QUEUE_ENABLE => match v {
                1 => self.core.enable_queue(sel),
                // §4.1.4.3.2: the driver MUST NOT write 0.
                0 => self
                    .core
                    .record(Violation::QueueDisableWrite { queue: sel as u16 }),
                _ => self.bad(off as u64, 2, true),
            },
            COMMON_CFG_QUEUE_DESC
            | COMMON_CFG_QUEUE_DESC_HI
            | COMMON_CFG_QUEUE_DRIVER
            | COMMON_CFG_QUEUE_DRIVER_HI
            | COMMON_CFG_QUEUE_DEVICE
            | COMMON_CFG_QUEUE_DEVICE_HI => {
                if let Some(q) = self.core.queue_config_mut(sel) {
                    let a = &mut q.addresses;
                    let (reg, high) = match off {
                        COMMON_CFG_QUEUE_DESC => (&mut a.desc, false),
                        COMMON_CFG_QUEUE_DESC_HI => (&mut a.desc, true),
                        COMMON_CFG_QUEUE_DRIVER => (&mut a.driver, false),
                        COMMON_CFG_QUEUE_DRIVER_HI => (&mut a.driver, true),
                        COMMON_CFG_QUEUE_DEVICE => (&mut a.device, false),
                        _ => (&mut a.device, true),
                    };
                    set_half(reg, high, v);
                }
            }
            COMMON_CFG_QUEUE_RESET if v == 1 => {
                let known = (sel as usize) < self.core.queue_count();
                self.core.reset_queue(sel);
                // The queue's state returns to its default (§2.6.1.1), its
                // vector mapping included.
                if known && self.core.has_feature(VIRTIO_F_RING_RESET) {
                    self.irq
                        .set_queue_vector(sel as usize, VIRTIO_MSI_NO_VECTOR);
                }
            }
            _ => {}
        }
    }
}

impl<D: core::fmt::Debug> core::fmt::Debug for PciDevice<D> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PciDevice")
            .field("core", &self.core)
            .field("mode", &self.mode)
            .field("layout", &self.layout)
            .finish_non_exhaustive()
    }
}
