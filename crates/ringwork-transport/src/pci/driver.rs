//! The driver side of virtio-pci (VIRTIO 1.4 §4.1.2.2, §4.1.3.1,
//! §4.1.4.1, §4.1.5), over [`RegisterAccess`] windows: one onto PCI
//! configuration space, one per BAR.
//!
//! [`PciTransport::new`] identifies the function, walks the capability
//! list (bounded, loops survived) and picks the first usable instance of
//! each virtio structure; without them, a transitional device is driven
//! through its legacy I/O BAR0 (§4.1.5.1.1.1) and a non-transitional one
//! is refused. Capability fields are only ever read. Fields are accessed
//! at their width (§4.1.3.1): 64-bit ones as two 32-bit halves, low first.
//!
//! # Trust and panic contract
//! The device is the peer: capability pointers, lengths, offsets, queue
//! sizes and notify offsets are checked before use, polling is bounded
//! ([`POLL_LIMIT`]), and nothing panics on device input.

use alloc::vec::Vec;

use ringwork_spec::device_id::DeviceType;
use ringwork_spec::features::{
    FeatureSet, FEATURE_WORDS, VIRTIO_F_NOTIFICATION_DATA, VIRTIO_F_NOTIF_CONFIG_DATA,
    VIRTIO_F_RING_PACKED, VIRTIO_F_RING_RESET,
};
use ringwork_spec::pci::legacy as lregs;
use ringwork_spec::pci::*;
use ringwork_spec::ring::split::legacy_layout;
use ringwork_spec::ring::{packed, split};
use ringwork_spec::status::DeviceStatus;

use super::config_space::{
    CAP_POINTER, COMMAND, COMMAND_BUS_MASTER, COMMAND_IO, COMMAND_MEMORY, CONFIG_SPACE_SIZE,
    DEVICE_ID, STATUS, STATUS_CAP_LIST, VENDOR_ID,
};
use super::msix::{
    MSIX_CAP_ID, MSIX_CAP_LEN, MSIX_CTRL_ENABLE, MSIX_CTRL_FUNCTION_MASK, MSIX_CTRL_TABLE_SIZE,
    MSIX_ENTRY_SIZE,
};
use super::vendor::{vendor_cap, VendorDataCap};
use crate::driver::{
    InterruptCause, QueueConfig, RegisterAccess, Transport, TransportError, POLL_LIMIT,
};

/// Most capabilities walked: a 256-byte space holds at most 48 (4-byte
/// aligned, after the 64-byte header), so a longer walk is a loop.
const MAX_CAPS: usize = 48;
/// Smallest common configuration a driver can work with (up to
/// `queue_device`, the VIRTIO 1.0 structure).
const COMMON_CFG_MIN: u32 = 56;

/// A structure in a BAR.
#[derive(Debug, Clone, Copy)]
struct Loc {
    bar: usize,
    offset: usize,
    len: u64,
}

#[derive(Debug, Clone, Copy)]
struct MsixCap {
    at: usize,
    table_size: u16,
    table_bar: usize,
    table_offset: usize,
}

/// What the capability walk found.
#[derive(Debug, Default)]
struct Caps {
    common: Option<Loc>,
    notify: Option<(Loc, u32)>,
    isr: Option<Loc>,
    device: Option<Loc>,
    shm: Vec<(u8, usize, u64, u64)>,
    msix: Option<MsixCap>,
    /// Vendor data capabilities (§4.1.4.8), in list order.
    vendor: Vec<VendorDataCap>,
}

/// A virtio PCI function as a driver sees it. See the [module docs](crate::pci).
#[derive(Debug)]
pub struct PciTransport<C, B> {
    config: C,
    bars: [Option<B>; 6],
    device_id: u16,
    device_type: DeviceType,
    legacy: bool,
    caps: Caps,
    msix_enabled: bool,
    driver_features: FeatureSet,
    /// Per queue, once set up: (offset in the notification BAR, the
    /// 16-bit notification value).
    notify_targets: Vec<Option<(usize, u16)>>,
}

impl<C: RegisterAccess, B: RegisterAccess> PciTransport<C, B> {
    /// Probes the function: vendor 0x1AF4 and a device ID in
    /// 0x1000..=0x107F, any revision and subsystem (§4.1.2.2), then the
    /// capability list (§4.1.5.1.1). Without usable common, notification
    /// and ISR capabilities, a transitional device is used through its
    /// legacy interface (§4.1.5.1.1.1) and any other gives
    /// [`TransportError::Layout`]. Sets Memory Space (or I/O Space) and Bus
    /// Master in the command register.
    pub fn new(config: C, bars: [Option<B>; 6]) -> Result<Self, TransportError> {
        Self::probe(config, bars, false)
    }

    /// Like [`PciTransport::new`], but drives a transitional device through
    /// its legacy interface in I/O BAR0 even when it has the virtio
    /// capabilities (a legacy driver, §4.1.4.10).
    pub fn new_legacy(config: C, bars: [Option<B>; 6]) -> Result<Self, TransportError> {
        Self::probe(config, bars, true)
    }

    fn probe(config: C, bars: [Option<B>; 6], force_legacy: bool) -> Result<Self, TransportError> {
        let vendor = config.read16(VENDOR_ID);
        let device = config.read16(DEVICE_ID);
        if !is_virtio_pci_id(vendor, device) {
            return Err(TransportError::NotVirtioPci { vendor, device });
        }
        let caps = walk(&config, &bars);
        let modern = caps.common.is_some() && caps.notify.is_some() && caps.isr.is_some();
        let legacy = force_legacy || !modern;
        if legacy {
            if !is_transitional_device_id(device) {
                return Err(TransportError::Layout(if force_legacy {
                    "not a transitional device: no legacy interface"
                } else {
                    "no usable virtio capabilities on a non-transitional device"
                }));
            }
            if bars[usize::from(lregs::LEGACY_BAR)].is_none() {
                return Err(TransportError::Layout("legacy interface needs BAR0"));
            }
        }
        let ty = if is_transitional_device_id(device) {
            // Transitional devices carry the type in the Subsystem Device
            // ID (§4.1.2.3), as legacy drivers always read it.
            match config.read16(PCI_SUBSYSTEM_ID_OFFSET) {
                0 => device_type_from_pci_id(device).unwrap_or(0),
                s => s,
            }
        } else {
            device - MODERN_DEVICE_ID_BASE
        };
        let enable = if legacy { COMMAND_IO } else { COMMAND_MEMORY };
        let cmd = config.read16(COMMAND);
        config.write16(COMMAND, cmd | enable | COMMAND_BUS_MASTER);
        Ok(Self {
            config,
            bars,
            device_id: device,
            device_type: DeviceType::from(u32::from(ty)),
            legacy,
            caps,
            msix_enabled: false,
            driver_features: FeatureSet::EMPTY,
            notify_targets: Vec::new(),
        })
    }

    /// The PCI Device ID.
    pub fn device_id(&self) -> u16 {
        self.device_id
    }

    /// The configuration-space window.
    pub fn pci_config(&self) -> &C {
        &self.config
    }

    /// `notify_off_multiplier` (`None` on the legacy interface).
    pub fn notify_off_multiplier(&self) -> Option<u32> {
        (!self.legacy)
            .then_some(self.caps.notify.map(|n| n.1))
            .flatten()
    }

    /// Shared memory region `id` (§4.1.4.7): (BAR, offset, length).
    pub fn shm_region(&self, id: u8) -> Option<(u8, u64, u64)> {
        self.caps
            .shm
            .iter()
            .find(|r| r.0 == id)
            .map(|&(_, bar, off, len)| (bar as u8, off, len))
    }

    /// MSI-X Table Size (`None` without an MSI-X capability).
    pub fn msix_table_size(&self) -> Option<u16> {
        self.caps.msix.map(|m| m.table_size)
    }

    /// The vendor data capabilities found (see [`super::vendor`]).
    pub(super) fn vendor_caps(&self) -> &[VendorDataCap] {
        &self.caps.vendor
    }

    fn msix_cap(&self) -> Result<MsixCap, TransportError> {
        self.caps
            .msix
            .ok_or(TransportError::Layout("no MSI-X capability"))
    }

    /// Enables MSI-X (Message Control, through configuration space) with
    /// no function mask; returns the Table Size. On the legacy interface
    /// the device configuration moves to offset 24 (§4.1.4.10).
    pub fn enable_msix(&mut self) -> Result<u16, TransportError> {
        let m = self.msix_cap()?;
        let ctrl = self.config.read16(m.at + 2);
        let new = (ctrl | MSIX_CTRL_ENABLE) & !MSIX_CTRL_FUNCTION_MASK;
        self.config.write16(m.at + 2, new);
        if self.config.read16(m.at + 2) & MSIX_CTRL_ENABLE == 0 {
            return Err(TransportError::Layout("MSI-X could not be enabled"));
        }
        self.msix_enabled = true;
        Ok(m.table_size)
    }

    /// Disables MSI-X (back to INTx and the ISR).
    pub fn disable_msix(&mut self) {
        if let Some(m) = self.caps.msix {
            let ctrl = self.config.read16(m.at + 2);
            self.config.write16(m.at + 2, ctrl & !MSIX_CTRL_ENABLE);
        }
        self.msix_enabled = false;
    }

    fn check_vector(&self, vector: u16) -> Result<(), TransportError> {
        let table_size = self.msix_table_size().unwrap_or(0);
        if vector == VIRTIO_MSI_NO_VECTOR || vector < table_size {
            Ok(())
        } else {
            Err(TransportError::VectorOutOfRange { vector, table_size })
        }
    }

    fn table_entry(&self, vector: u16) -> Result<(&B, usize), TransportError> {
        let m = self.msix_cap()?;
        if vector >= m.table_size {
            return Err(TransportError::VectorOutOfRange {
                vector,
                table_size: m.table_size,
            });
        }
        let bar = self.bars[m.table_bar]
            .as_ref()
            .ok_or(TransportError::Layout("MSI-X table BAR not mapped"))?;
        let off = m
            .table_offset
            .saturating_add(usize::from(vector) * MSIX_ENTRY_SIZE as usize);
        Ok((bar, off))
    }

    /// Programs MSI-X table entry `vector` with a message and unmasks it.
    pub fn set_msix_entry(
        &mut self,
        vector: u16,
        address: u64,
        data: u32,
    ) -> Result<(), TransportError> {
        let (bar, off) = self.table_entry(vector)?;
        bar.write32(off, address as u32);
        bar.write32(off.saturating_add(4), (address >> 32) as u32);
        bar.write32(off.saturating_add(8), data);
        bar.write32(off.saturating_add(12), 0);
        Ok(())
    }

    /// Sets or clears the Mask Bit of MSI-X table entry `vector`.
    pub fn mask_msix_vector(&mut self, vector: u16, masked: bool) -> Result<(), TransportError> {
        let (bar, off) = self.table_entry(vector)?;
        bar.write32(off.saturating_add(12), masked.into());
        Ok(())
    }

    /// Maps configuration change notifications to MSI-X `vector` (or
    /// unmaps them with NO_VECTOR) and verifies the device took it
    /// (§4.1.5.1.2.2). The legacy interface has the field only while MSI-X
    /// is enabled.
    pub fn set_config_vector(&mut self, vector: u16) -> Result<(), TransportError> {
        self.check_vector(vector)?;
        let got = if self.legacy {
            self.legacy_vectors_present()?;
            self.lw16(lregs::CONFIG_MSIX_VECTOR, vector);
            self.lr16(lregs::CONFIG_MSIX_VECTOR)
        } else {
            self.cw16(COMMON_CFG_CONFIG_MSIX_VECTOR, vector);
            self.cr16(COMMON_CFG_CONFIG_MSIX_VECTOR)
        };
        verify_vector(vector, got)
    }

    /// Maps queue `queue`'s used buffer notifications to MSI-X `vector`
    /// (before or after [`Transport::setup_queue`]) and verifies it.
    pub fn set_queue_vector(&mut self, queue: u16, vector: u16) -> Result<(), TransportError> {
        self.check_vector(vector)?;
        let got = if self.legacy {
            self.legacy_vectors_present()?;
            self.lw16(lregs::QUEUE_SELECT, queue);
            self.lw16(lregs::QUEUE_MSIX_VECTOR, vector);
            self.lr16(lregs::QUEUE_MSIX_VECTOR)
        } else {
            if queue >= self.cr16(COMMON_CFG_NUM_QUEUES) {
                return Err(TransportError::NoSuchQueue(queue));
            }
            self.cw16(COMMON_CFG_QUEUE_SELECT, queue);
            self.cw16(COMMON_CFG_QUEUE_MSIX_VECTOR, vector);
            self.cr16(COMMON_CFG_QUEUE_MSIX_VECTOR)
        };
        verify_vector(vector, got)
    }

    fn legacy_vectors_present(&self) -> Result<(), TransportError> {
        if self.msix_enabled {
            Ok(())
        } else {
            Err(TransportError::Layout(
                "legacy MSI-X vector fields exist only with MSI-X enabled",
            ))
        }
    }

    // Common configuration accessors (modern).
    fn common_at(&self, off: usize) -> Option<(&B, usize)> {
        let c = self.caps.common?;
        Some((self.bars[c.bar].as_ref()?, c.offset.checked_add(off)?))
    }
    fn cr8(&self, off: usize) -> u8 {
        self.common_at(off).map_or(u8::MAX, |(b, o)| b.read8(o))
    }
    fn cr16(&self, off: usize) -> u16 {
        self.common_at(off).map_or(u16::MAX, |(b, o)| b.read16(o))
    }
    fn cr32(&self, off: usize) -> u32 {
        self.common_at(off).map_or(u32::MAX, |(b, o)| b.read32(o))
    }
    fn cw8(&self, off: usize, v: u8) {
        if let Some((b, o)) = self.common_at(off) {
            b.write8(o, v);
        }
    }
    fn cw16(&self, off: usize, v: u16) {
        if let Some((b, o)) = self.common_at(off) {
            b.write16(o, v);
        }
    }
    fn cw32(&self, off: usize, v: u32) {
        if let Some((b, o)) = self.common_at(off) {
            b.write32(o, v);
        }
    }
    fn cw64(&self, off: usize, v: u64) {
        self.cw32(off, v as u32);
        self.cw32(off + 4, (v >> 32) as u32);
    }

    // Legacy header accessors (I/O BAR0).
    fn legacy_bar(&self) -> Option<&B> {
        self.bars[usize::from(lregs::LEGACY_BAR)].as_ref()
    }
    fn lr16(&self, off: usize) -> u16 {
        self.legacy_bar().map_or(u16::MAX, |b| b.read16(off))
    }
    fn lr32(&self, off: usize) -> u32 {
        self.legacy_bar().map_or(u32::MAX, |b| b.read32(off))
    }
    fn lw16(&self, off: usize, v: u16) {
        if let Some(b) = self.legacy_bar() {
            b.write16(off, v);
        }
    }
    fn lw32(&self, off: usize, v: u32) {
        if let Some(b) = self.legacy_bar() {
            b.write32(off, v);
        }
    }

    /// The device configuration window: (BAR, base offset).
    fn device_cfg(&self) -> Option<(&B, usize)> {
        if self.legacy {
            let base = lregs::device_config_offset(self.msix_enabled);
            return Some((self.legacy_bar()?, base));
        }
        let d = self.caps.device?;
        Some((self.bars[d.bar].as_ref()?, d.offset))
    }

    /// The Queue Notify location of `queue` (§4.1.4.4) and the value to
    /// notify with (§4.1.5.2): `queue_notif_config_data` with
    /// VIRTIO_F_NOTIF_CONFIG_DATA, the index otherwise.
    fn notify_target(&self, queue: u16) -> Result<(usize, u16), TransportError> {
        let (loc, mult) = self
            .caps
            .notify
            .ok_or(TransportError::Layout("no notification capability"))?;
        self.cw16(COMMON_CFG_QUEUE_SELECT, queue);
        let off = self.cr16(COMMON_CFG_QUEUE_NOTIFY_OFF);
        let nd = self.driver_features.contains(VIRTIO_F_NOTIFICATION_DATA);
        let len = u32::try_from(loc.len).unwrap_or(u32::MAX);
        let at = usize::try_from(notify_offset(0, off, mult))
            .ok()
            .and_then(|o| o.checked_add(loc.offset))
            .filter(|_| notify_cap_length_ok(len, off, mult, nd))
            .ok_or(TransportError::Layout(
                "queue notify address outside the notification structure",
            ))?;
        let value = if self.driver_features.contains(VIRTIO_F_NOTIF_CONFIG_DATA) {
            self.cr16(COMMON_CFG_QUEUE_NOTIF_CONFIG_DATA)
        } else {
            queue
        };
        Ok((at, value))
    }

    fn setup_legacy_queue(
        &mut self,
        queue: u16,
        config: &QueueConfig,
    ) -> Result<(), TransportError> {
        self.lw16(lregs::QUEUE_SELECT, queue);
        if self.lr32(lregs::QUEUE_ADDRESS) != 0 {
            return Err(TransportError::QueueInUse(queue));
        }
        let max = self.lr16(lregs::QUEUE_SIZE);
        if max == 0 || max == u16::MAX {
            return Err(TransportError::NoSuchQueue(queue));
        }
        // There is no way to negotiate the size (§4.1.4.10).
        if config.size != max {
            return Err(TransportError::QueueSize {
                queue,
                size: config.size,
                max,
            });
        }
        let a = config.addresses;
        let layout = legacy_layout(config.size, lregs::QUEUE_ALIGN);
        let matches = a.driver.checked_sub(a.desc) == Some(layout.avail_offset as u64)
            && a.device.checked_sub(a.desc) == Some(layout.used_offset as u64);
        let Some(pfn) = lregs::queue_address(a.desc).filter(|_| matches) else {
            return Err(TransportError::LegacyLayout(queue));
        };
        self.lw32(lregs::QUEUE_ADDRESS, pfn);
        if self.lr32(lregs::QUEUE_ADDRESS) != pfn {
            return Err(TransportError::QueueNotEnabled(queue));
        }
        Ok(())
    }
}

/// §4.1.5.1.2.2: a mapping succeeded if the field reads back the value
/// written; NO_VECTOR means the device could not map it.
fn verify_vector(vector: u16, got: u16) -> Result<(), TransportError> {
    if got == vector {
        Ok(())
    } else {
        Err(TransportError::VectorRefused(vector))
    }
}

/// Walks the capability list (§4.1.4, §4.1.5.1.1): at most [`MAX_CAPS`]
/// entries, pointers below 0x40 end the walk; the first usable instance of
/// each structure wins (§4.1.4.1), capabilities with a reserved `cfg_type`
/// or `bar`, or naming a BAR the caller did not map, are ignored, `cap_len`
/// may be larger than the structure and `length` larger than needed (only
/// minimums are checked). Vendor data capabilities (§4.1.4.8) are listed,
/// not used.
fn walk<C: RegisterAccess, B>(config: &C, bars: &[Option<B>; 6]) -> Caps {
    let mut caps = Caps::default();
    if config.read16(STATUS) & STATUS_CAP_LIST == 0 {
        return caps;
    }
    let mut ptr = usize::from(config.read8(CAP_POINTER) & !3);
    for _ in 0..MAX_CAPS {
        if ptr < 0x40 || ptr + 2 > CONFIG_SPACE_SIZE {
            break;
        }
        match config.read8(ptr) {
            PCI_CAP_ID_VNDR => virtio_cap(config, bars, ptr, &mut caps),
            MSIX_CAP_ID if ptr + MSIX_CAP_LEN <= CONFIG_SPACE_SIZE && caps.msix.is_none() => {
                let ctrl = config.read16(ptr + 2);
                let table = config.read32(ptr + 4);
                caps.msix = Some(MsixCap {
                    at: ptr,
                    table_size: (ctrl & MSIX_CTRL_TABLE_SIZE) + 1,
                    table_bar: (table & 7) as usize,
                    table_offset: (table & !7) as usize,
                });
            }
            _ => {}
        }
        ptr = usize::from(config.read8(ptr + CAP_NEXT) & !3);
    }
    caps
}

fn virtio_cap<C: RegisterAccess, B>(config: &C, bars: &[Option<B>; 6], at: usize, caps: &mut Caps) {
    // §4.1.4.8: no `bar` field; recorded (once, the walk may loop) only.
    if config.read8(at + CAP_CFG_TYPE) == VIRTIO_PCI_CAP_VENDOR_CFG {
        let found =
            vendor_cap(config, at).filter(|v| caps.vendor.iter().all(|c| c.offset != v.offset));
        caps.vendor.extend(found);
        return;
    }
    let len = usize::from(config.read8(at + CAP_LEN));
    if len < PCI_CAP_SIZE || at + len > CONFIG_SPACE_SIZE {
        return;
    }
    let bar = config.read8(at + CAP_BAR);
    if bar > BAR_MAX || bars[usize::from(bar)].is_none() {
        return;
    }
    let offset = config.read32(at + CAP_OFFSET);
    let length = config.read32(at + CAP_LENGTH);
    let Ok(off) = usize::try_from(offset) else {
        return;
    };
    let loc = Loc {
        bar: usize::from(bar),
        offset: off,
        len: length.into(),
    };
    match config.read8(at + CAP_CFG_TYPE) {
        VIRTIO_PCI_CAP_COMMON_CFG if caps.common.is_none() && length >= COMMON_CFG_MIN => {
            caps.common = Some(loc)
        }
        VIRTIO_PCI_CAP_NOTIFY_CFG
            if caps.notify.is_none() && len >= PCI_NOTIFY_CAP_SIZE && length >= 2 =>
        {
            caps.notify = Some((loc, config.read32(at + NOTIFY_CAP_MULT)));
        }
        VIRTIO_PCI_CAP_ISR_CFG if caps.isr.is_none() && length >= 1 => caps.isr = Some(loc),
        VIRTIO_PCI_CAP_DEVICE_CFG if caps.device.is_none() => caps.device = Some(loc),
        VIRTIO_PCI_CAP_SHARED_MEMORY_CFG if len >= PCI_CAP64_SIZE => {
            let id = config.read8(at + CAP_ID);
            let off64 = u64::from(offset) | u64::from(config.read32(at + CAP64_OFFSET_HI)) << 32;
            let len64 = u64::from(length) | u64::from(config.read32(at + CAP64_LENGTH_HI)) << 32;
            if !caps.shm.iter().any(|r| r.0 == id) {
                caps.shm.push((id, usize::from(bar), off64, len64));
            }
        }
        // PCI_CFG and reserved types: not used here.
        _ => {}
    }
}

impl<C: RegisterAccess, B: RegisterAccess> Transport for PciTransport<C, B> {
    fn device_type(&self) -> DeviceType {
        self.device_type
    }

    fn is_legacy(&self) -> bool {
        self.legacy
    }

    fn device_features(&mut self) -> FeatureSet {
        let mut words = [0u32; FEATURE_WORDS];
        if self.legacy {
            words[0] = self.lr32(lregs::DEVICE_FEATURES);
        } else {
            for (sel, w) in words.iter_mut().enumerate() {
                self.cw32(COMMON_CFG_DEVICE_FEATURE_SELECT, sel as u32);
                *w = self.cr32(COMMON_CFG_DEVICE_FEATURE);
            }
        }
        FeatureSet::from_words(words)
    }

    fn set_driver_features(&mut self, features: FeatureSet) {
        if self.legacy {
            self.lw32(lregs::DRIVER_FEATURES, features.word(0));
        } else {
            for (sel, w) in features.words().iter().enumerate() {
                self.cw32(COMMON_CFG_DRIVER_FEATURE_SELECT, sel as u32);
                self.cw32(COMMON_CFG_DRIVER_FEATURE, *w);
            }
        }
        self.driver_features = features;
    }

    fn status(&mut self) -> DeviceStatus {
        let s = if self.legacy {
            self.legacy_bar()
                .map_or(u8::MAX, |b| b.read8(lregs::DEVICE_STATUS))
        } else {
            self.cr8(COMMON_CFG_DEVICE_STATUS)
        };
        DeviceStatus::from_bits(s)
    }

    fn set_status(&mut self, status: DeviceStatus) {
        if self.legacy {
            if let Some(b) = self.legacy_bar() {
                b.write8(lregs::DEVICE_STATUS, status.bits());
            }
        } else {
            self.cw8(COMMON_CFG_DEVICE_STATUS, status.bits());
        }
    }

    fn max_queue_size(&mut self, queue: u16) -> u16 {
        if self.legacy {
            self.lw16(lregs::QUEUE_SELECT, queue);
            return self.lr16(lregs::QUEUE_SIZE);
        }
        if queue >= self.cr16(COMMON_CFG_NUM_QUEUES) {
            return 0;
        }
        self.cw16(COMMON_CFG_QUEUE_SELECT, queue);
        self.cr16(COMMON_CFG_QUEUE_SIZE)
    }

    fn legacy_queue_align(&self) -> Option<u32> {
        self.legacy.then_some(lregs::QUEUE_ALIGN as u32)
    }

    fn setup_queue(&mut self, queue: u16, config: &QueueConfig) -> Result<(), TransportError> {
        if self.legacy {
            return self.setup_legacy_queue(queue, config);
        }
        if queue >= self.cr16(COMMON_CFG_NUM_QUEUES) {
            return Err(TransportError::NoSuchQueue(queue));
        }
        self.cw16(COMMON_CFG_QUEUE_SELECT, queue);
        if self.cr16(COMMON_CFG_QUEUE_ENABLE) != 0 {
            return Err(TransportError::QueueInUse(queue));
        }
        let max = self.cr16(COMMON_CFG_QUEUE_SIZE);
        if max == 0 {
            return Err(TransportError::NoSuchQueue(queue));
        }
        // §4.1.4.3.2: never 0; a power of 2 unless the ring is packed.
        let size = config.size;
        let size_ok = size <= max
            && if self.driver_features.contains(VIRTIO_F_RING_PACKED) {
                packed::is_valid_queue_size(size)
            } else {
                split::is_valid_queue_size(size)
            };
        if !size_ok {
            return Err(TransportError::QueueSize { queue, size, max });
        }
        let target = self.notify_target(queue)?;
        // notify_target selected the queue again; configure, then enable.
        self.cw16(COMMON_CFG_QUEUE_SIZE, size);
        let a = config.addresses;
        self.cw64(COMMON_CFG_QUEUE_DESC, a.desc);
        self.cw64(COMMON_CFG_QUEUE_DRIVER, a.driver);
        self.cw64(COMMON_CFG_QUEUE_DEVICE, a.device);
        self.cw16(COMMON_CFG_QUEUE_ENABLE, 1);
        if self.cr16(COMMON_CFG_QUEUE_ENABLE) != 1 {
            return Err(TransportError::QueueNotEnabled(queue));
        }
        let i = usize::from(queue);
        if self.notify_targets.len() <= i {
            self.notify_targets.resize(i + 1, None);
        }
        self.notify_targets[i] = Some(target);
        Ok(())
    }

    fn reset_queue(&mut self, queue: u16) -> Result<(), TransportError> {
        let covered = self
            .caps
            .common
            .is_some_and(|c| c.len >= COMMON_CFG_QUEUE_RESET as u64 + 2);
        if self.legacy || !covered || !self.driver_features.contains(VIRTIO_F_RING_RESET) {
            return Err(TransportError::RingResetNotNegotiated);
        }
        self.cw16(COMMON_CFG_QUEUE_SELECT, queue);
        self.cw16(COMMON_CFG_QUEUE_RESET, 1);
        // §4.1.4.3.2: not complete until queue_reset reads back 0.
        for _ in 0..POLL_LIMIT {
            if self.cr16(COMMON_CFG_QUEUE_RESET) == 0 {
                if let Some(t) = self.notify_targets.get_mut(usize::from(queue)) {
                    *t = None;
                }
                return Ok(());
            }
            core::hint::spin_loop();
        }
        Err(TransportError::QueueResetTimeout(queue))
    }

    fn notify(&mut self, queue: u16, data: u32) {
        if self.legacy {
            self.lw16(lregs::QUEUE_NOTIFY, queue);
            return;
        }
        let cached = self
            .notify_targets
            .get(usize::from(queue))
            .copied()
            .flatten();
        let Some((at, value)) = cached.or_else(|| self.notify_target(queue).ok()) else {
            return;
        };
        let Some(bar) = self.caps.notify.and_then(|n| self.bars[n.0.bar].as_ref()) else {
            return;
        };
        if self.driver_features.contains(VIRTIO_F_NOTIFICATION_DATA) {
            // vq_index / vq_notif_config_data in the low 16 bits.
            bar.write32(at, (data & !0xffff) | u32::from(value));
        } else {
            bar.write16(at, value);
        }
    }

    fn config_generation(&mut self) -> u32 {
        if self.legacy {
            0
        } else {
            self.cr8(COMMON_CFG_CONFIG_GENERATION).into()
        }
    }

    fn read_config(&mut self, offset: usize, data: &mut [u8]) {
        let Some((bar, base)) = self.device_cfg() else {
            data.fill(0);
            return;
        };
        let Some(base) = base.checked_add(offset) else {
            return;
        };
        match data.len() {
            1 => data[0] = bar.read8(base),
            2 => data.copy_from_slice(&bar.read16(base).to_le_bytes()),
            4 => data.copy_from_slice(&bar.read32(base).to_le_bytes()),
            8 => {
                let lo = bar.read32(base);
                let hi = bar.read32(base.wrapping_add(4));
                data[..4].copy_from_slice(&lo.to_le_bytes());
                data[4..].copy_from_slice(&hi.to_le_bytes());
            }
            _ => {
                for (i, b) in data.iter_mut().enumerate() {
                    *b = bar.read8(base.wrapping_add(i));
                }
            }
        }
    }

    fn write_config(&mut self, offset: usize, data: &[u8]) {
        let Some((bar, base)) = self.device_cfg() else {
            return;
        };
        let Some(base) = base.checked_add(offset) else {
            return;
        };
        match data.len() {
            1 => bar.write8(base, data[0]),
            2 => bar.write16(base, u16::from_le_bytes([data[0], data[1]])),
            4 | 8 => {
                for (i, c) in data.chunks_exact(4).enumerate() {
                    let v = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                    bar.write32(base.wrapping_add(4 * i), v);
                }
            }
            _ => {
                for (i, &b) in data.iter().enumerate() {
                    bar.write8(base.wrapping_add(i), b);
                }
            }
        }
    }

    fn ack_interrupt(&mut self) -> InterruptCause {
        // §4.1.4.5: the read clears ISR and de-asserts the interrupt.
        let isr = if self.legacy {
            self.legacy_bar().map_or(0, |b| b.read8(lregs::ISR_STATUS))
        } else {
            self.caps
                .isr
                .and_then(|l| Some(self.bars[l.bar].as_ref()?.read8(l.offset)))
                .unwrap_or(0)
        };
        InterruptCause {
            used_buffer: isr & ISR_QUEUE != 0,
            config_changed: isr & ISR_CONFIG != 0,
        }
    }
}
