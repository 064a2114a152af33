//! The driver side of virtio-mmio (VIRTIO 1.4 §4.2.2.2, §4.2.3; legacy
//! §4.2.4), over any [`RegisterAccess`].
//!
//! Every control-register access is 32 bits wide and aligned; the
//! configuration space is accessed with the field's width (64-bit fields as
//! two 32-bit halves). Registers marked W are never read, R never written.

use ringwork_spec::device_id::DeviceType;
use ringwork_spec::features::{
    FeatureSet, FEATURE_WORDS, PCI_ONLY_FEATURES, VIRTIO_F_NOTIFICATION_DATA,
    VIRTIO_F_NOTIF_CONFIG_DATA, VIRTIO_F_RING_PACKED, VIRTIO_F_RING_RESET,
};
use ringwork_spec::mmio::{self as regs, legacy as lregs};
use ringwork_spec::ring::split::legacy_layout;
use ringwork_spec::ring::{packed, split};
use ringwork_spec::status::DeviceStatus;

use crate::driver::POLL_LIMIT;
use crate::driver::{InterruptCause, QueueConfig, RegisterAccess, Transport, TransportError};

/// Guest page size the legacy driver announces (`GuestPageSize`), and the
/// used-ring alignment it asks for (`QueueAlign`).
pub const LEGACY_PAGE_SIZE: u32 = 4096;

/// A virtio-mmio device as a driver sees it. See the [module docs](crate::mmio).
#[derive(Debug)]
pub struct MmioTransport<R> {
    regs: R,
    version: u32,
    device_type: DeviceType,
    driver_features: FeatureSet,
}

impl<R: RegisterAccess> MmioTransport<R> {
    /// Probes the block (§4.2.3.1.1): checks `MagicValue` and `Version` (2,
    /// or 1 for a legacy device), then reads `DeviceID`. A placeholder
    /// device (id 0) gives [`TransportError::Placeholder`] and no other
    /// register is touched.
    pub fn new(regs: R) -> Result<Self, TransportError> {
        let magic = regs.read32(regs::MAGIC_VALUE);
        if magic != regs::MAGIC {
            return Err(TransportError::NotVirtio { magic });
        }
        let version = regs.read32(regs::VERSION);
        if version != regs::VERSION_MODERN && version != regs::VERSION_LEGACY {
            return Err(TransportError::UnsupportedVersion(version));
        }
        let id = regs.read32(regs::DEVICE_ID);
        if id == regs::DEVICE_ID_PLACEHOLDER {
            return Err(TransportError::Placeholder);
        }
        let t = Self {
            regs,
            version,
            device_type: DeviceType::from(id),
            driver_features: FeatureSet::EMPTY,
        };
        if version == regs::VERSION_LEGACY {
            t.regs.write32(lregs::GUEST_PAGE_SIZE, LEGACY_PAGE_SIZE);
        }
        Ok(t)
    }

    /// The `Version` register (1 legacy, 2 modern).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// `VendorID`.
    pub fn vendor_id(&self) -> u32 {
        self.regs.read32(regs::VENDOR_ID)
    }

    /// The register window.
    pub fn registers(&self) -> &R {
        &self.regs
    }

    /// Shared memory region `id` (§4.2.2): `(base, len)`, or `None` when the
    /// device has no such region (length reads as -1).
    pub fn shm_region(&self, id: u8) -> Option<(u64, u64)> {
        if self.is_legacy() {
            return None;
        }
        self.regs.write32(regs::SHM_SEL, id.into());
        let len = u64::from(self.regs.read32(regs::SHM_LEN_LOW))
            | u64::from(self.regs.read32(regs::SHM_LEN_HIGH)) << 32;
        if len == regs::SHM_LEN_NONE {
            return None;
        }
        let base = u64::from(self.regs.read32(regs::SHM_BASE_LOW))
            | u64::from(self.regs.read32(regs::SHM_BASE_HIGH)) << 32;
        Some((base, len))
    }

    /// Stops using queue `queue` (§4.2.2.2: write 0 to `QueueReady` and
    /// read it back; legacy: `QueuePFN` 0).
    pub fn disable_queue(&mut self, queue: u16) {
        self.regs.write32(regs::QUEUE_SEL, queue.into());
        if self.is_legacy() {
            self.regs.write32(lregs::QUEUE_PFN, 0);
        } else {
            self.regs.write32(regs::QUEUE_READY, 0);
            let _ = self.regs.read32(regs::QUEUE_READY);
        }
    }

    fn write_addr(&self, low: usize, high: usize, addr: u64) {
        self.regs.write32(low, addr as u32);
        self.regs.write32(high, (addr >> 32) as u32);
    }
}

impl<R: RegisterAccess> Transport for MmioTransport<R> {
    fn device_type(&self) -> DeviceType {
        self.device_type
    }

    fn is_legacy(&self) -> bool {
        self.version == regs::VERSION_LEGACY
    }

    fn device_features(&mut self) -> FeatureSet {
        let windows = if self.is_legacy() { 1 } else { FEATURE_WORDS };
        let mut words = [0u32; FEATURE_WORDS];
        for (sel, w) in words.iter_mut().enumerate().take(windows) {
            // §4.2.2.2: select before reading DeviceFeatures.
            self.regs.write32(regs::DEVICE_FEATURES_SEL, sel as u32);
            *w = self.regs.read32(regs::DEVICE_FEATURES);
        }
        FeatureSet::from_words(words)
    }

    fn set_driver_features(&mut self, features: FeatureSet) {
        let windows = if self.is_legacy() { 1 } else { FEATURE_WORDS };
        for (sel, w) in features.words().iter().enumerate().take(windows) {
            self.regs.write32(regs::DRIVER_FEATURES_SEL, sel as u32);
            self.regs.write32(regs::DRIVER_FEATURES, *w);
        }
        self.driver_features = features;
    }

    fn status(&mut self) -> DeviceStatus {
        DeviceStatus::from_bits(self.regs.read32(regs::STATUS) as u8)
    }

    fn set_status(&mut self, status: DeviceStatus) {
        self.regs.write32(regs::STATUS, status.bits().into());
    }

    fn max_queue_size(&mut self, queue: u16) -> u16 {
        self.regs.write32(regs::QUEUE_SEL, queue.into());
        let max = self.regs.read32(regs::QUEUE_SIZE_MAX);
        u16::try_from(max).unwrap_or(u16::MAX)
    }

    fn legacy_queue_align(&self) -> Option<u32> {
        self.is_legacy().then_some(LEGACY_PAGE_SIZE)
    }

    fn setup_queue(&mut self, queue: u16, config: &QueueConfig) -> Result<(), TransportError> {
        let legacy = self.is_legacy();
        self.regs.write32(regs::QUEUE_SEL, queue.into());
        let in_use = if legacy {
            self.regs.read32(lregs::QUEUE_PFN) != 0
        } else {
            self.regs.read32(regs::QUEUE_READY) != 0
        };
        if in_use {
            return Err(TransportError::QueueInUse(queue));
        }
        let max = u16::try_from(self.regs.read32(regs::QUEUE_SIZE_MAX)).unwrap_or(0);
        if max == 0 {
            return Err(TransportError::NoSuchQueue(queue));
        }
        let packed = !legacy && self.driver_features.contains(VIRTIO_F_RING_PACKED);
        let size = config.size;
        let size_ok = size <= max
            && if packed {
                packed::is_valid_queue_size(size)
            } else {
                split::is_valid_queue_size(size)
            };
        if !size_ok {
            return Err(TransportError::QueueSize { queue, size, max });
        }
        self.regs.write32(regs::QUEUE_SIZE, size.into());
        let a = config.addresses;
        if legacy {
            let layout = legacy_layout(size, LEGACY_PAGE_SIZE as usize);
            let pfn = lregs::queue_pfn(a.desc, LEGACY_PAGE_SIZE);
            let matches = a.driver.checked_sub(a.desc) == Some(layout.avail_offset as u64)
                && a.device.checked_sub(a.desc) == Some(layout.used_offset as u64);
            let Some(pfn) = pfn.filter(|_| matches) else {
                return Err(TransportError::LegacyLayout(queue));
            };
            self.regs.write32(lregs::QUEUE_ALIGN, LEGACY_PAGE_SIZE);
            self.regs.write32(lregs::QUEUE_PFN, pfn);
            if self.regs.read32(lregs::QUEUE_PFN) != pfn {
                return Err(TransportError::QueueNotEnabled(queue));
            }
            return Ok(());
        }
        self.write_addr(regs::QUEUE_DESC_LOW, regs::QUEUE_DESC_HIGH, a.desc);
        self.write_addr(regs::QUEUE_DRIVER_LOW, regs::QUEUE_DRIVER_HIGH, a.driver);
        self.write_addr(regs::QUEUE_DEVICE_LOW, regs::QUEUE_DEVICE_HIGH, a.device);
        self.regs.write32(regs::QUEUE_READY, 1);
        if self.regs.read32(regs::QUEUE_READY) != 1 {
            return Err(TransportError::QueueNotEnabled(queue));
        }
        Ok(())
    }

    fn reset_queue(&mut self, queue: u16) -> Result<(), TransportError> {
        if self.is_legacy() || !self.driver_features.contains(VIRTIO_F_RING_RESET) {
            return Err(TransportError::RingResetNotNegotiated);
        }
        self.regs.write32(regs::QUEUE_SEL, queue.into());
        self.regs.write32(regs::QUEUE_RESET, 1);
        // §4.2.2.2: not complete until QueueReset reads back 0.
        for _ in 0..POLL_LIMIT {
            if self.regs.read32(regs::QUEUE_RESET) == 0 {
                return Ok(());
            }
            core::hint::spin_loop();
        }
        Err(TransportError::QueueResetTimeout(queue))
    }

    fn notify(&mut self, queue: u16, data: u32) {
        let value =
            if !self.is_legacy() && self.driver_features.contains(VIRTIO_F_NOTIFICATION_DATA) {
                data
            } else {
                queue.into()
            };
        self.regs.write32(regs::QUEUE_NOTIFY, value);
    }

    fn config_generation(&mut self) -> u32 {
        if self.is_legacy() {
            0
        } else {
            self.regs.read32(regs::CONFIG_GENERATION)
        }
    }

    fn read_config(&mut self, offset: usize, data: &mut [u8]) {
        let Some(base) = regs::CONFIG.checked_add(offset) else {
            return;
        };
        match data.len() {
            1 => data[0] = self.regs.read8(base),
            2 => data.copy_from_slice(&self.regs.read16(base).to_le_bytes()),
            4 => data.copy_from_slice(&self.regs.read32(base).to_le_bytes()),
            8 => {
                let lo = self.regs.read32(base);
                let hi = self.regs.read32(base + 4);
                data[..4].copy_from_slice(&lo.to_le_bytes());
                data[4..].copy_from_slice(&hi.to_le_bytes());
            }
            _ => {
                for (i, b) in data.iter_mut().enumerate() {
                    *b = self.regs.read8(base + i);
                }
            }
        }
    }

    fn write_config(&mut self, offset: usize, data: &[u8]) {
        let Some(base) = regs::CONFIG.checked_add(offset) else {
            return;
        };
        match data.len() {
            1 => self.regs.write8(base, data[0]),
            2 => self
                .regs
                .write16(base, u16::from_le_bytes([data[0], data[1]])),
            4 | 8 => {
                for (i, c) in data.chunks_exact(4).enumerate() {
                    let v = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                    self.regs.write32(base + 4 * i, v);
                }
            }
            _ => {
                for (i, &b) in data.iter().enumerate() {
                    self.regs.write8(base + i, b);
                }
            }
        }
    }

    fn supports_feature(&self, bit: u32) -> bool {
        // Reserved for future use on MMIO (§4.2.5), or PCI-only; MMIO has no
        // queue_notif_config_data register.
        !PCI_ONLY_FEATURES.contains(&bit)
            && !regs::MMIO_RESERVED_FEATURES.contains(&bit)
            && bit != VIRTIO_F_NOTIF_CONFIG_DATA
    }

    fn ack_interrupt(&mut self) -> InterruptCause {
        // §4.2.3.4: read InterruptStatus, then acknowledge the handled
        // (defined) bits only.
        let status = self.regs.read32(regs::INTERRUPT_STATUS) & regs::INTERRUPT_KNOWN_BITS;
        if status != 0 {
            self.regs.write32(regs::INTERRUPT_ACK, status);
        }
        InterruptCause {
            used_buffer: status & regs::INTERRUPT_USED_BUFFER != 0,
            config_changed: status & regs::INTERRUPT_CONFIG_CHANGE != 0,
        }
    }
}
