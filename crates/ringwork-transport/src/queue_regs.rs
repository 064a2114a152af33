//! The per-queue registers every transport has in some form, and their
//! validation into a [`QueueSetup`].

use ringwork_queue::{QueueAddresses, QueueFeatures, RingFormat};
use ringwork_spec::pci::VIRTIO_MSI_NO_VECTOR;
use ringwork_spec::ring::{packed, split};

use crate::device_model::QueueSetup;
use crate::violation::Violation;

/// One queue's driver-visible configuration (VIRTIO 1.4 §4.1.4.3 and
/// §4.2.2: size, enable/ready, ring addresses, MSI-X vector, and the legacy
/// interfaces' page-based address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueRegs {
    /// Maximum size the device supports (0: queue unavailable).
    pub max_size: u16,
    /// Size the driver chose; `max_size` after reset (§4.1.4.3).
    pub size: u16,
    /// `QueueReady` / `queue_enable` (legacy: a non-zero queue address).
    pub ready: bool,
    /// Ring addresses as the driver wrote them (legacy: derived from the
    /// page number).
    pub addresses: QueueAddresses,
    /// `queue_msix_vector` (PCI); `VIRTIO_MSI_NO_VECTOR` after reset.
    pub msix_vector: u16,
    /// `queue_notif_config_data` (PCI, VIRTIO_F_NOTIF_CONFIG_DATA).
    pub notif_config_data: u16,
    /// Legacy MMIO `QueueAlign` (4096 for the PCI legacy interface).
    pub legacy_align: u32,
    /// Legacy `QueuePFN` / PCI legacy `Queue Address` (page number).
    pub legacy_pfn: u32,
}

impl QueueRegs {
    /// The registers of queue `index` after reset.
    pub fn new(index: u16, max_size: u16) -> Self {
        Self {
            max_size,
            size: max_size,
            ready: false,
            addresses: QueueAddresses::default(),
            msix_vector: VIRTIO_MSI_NO_VECTOR,
            notif_config_data: index,
            legacy_align: 4096,
            legacy_pfn: 0,
        }
    }

    /// Back to the state after reset (device reset, or virtqueue reset).
    pub fn reset(&mut self, index: u16) {
        *self = Self::new(index, self.max_size);
    }

    /// Checks the configuration for `format` and turns it into what a
    /// device needs to start the queue.
    pub fn setup(
        &self,
        index: u16,
        format: RingFormat,
        features: QueueFeatures,
    ) -> Result<QueueSetup, Violation> {
        let size_ok = self.size != 0
            && self.size <= self.max_size
            && match format {
                RingFormat::Split => split::is_valid_queue_size(self.size),
                RingFormat::Packed => packed::is_valid_queue_size(self.size),
            };
        if !size_ok {
            return Err(Violation::QueueSize {
                queue: index,
                size: self.size,
                max: self.max_size,
            });
        }
        // §2.7 table "Virtqueue Part Alignment" and §2.8 (packed: 16 for
        // the descriptor ring, 4 for the event suppression structures).
        let (d, dr, dv) = match format {
            RingFormat::Split => (16, 2, 4),
            RingFormat::Packed => (16, 4, 4),
        };
        let a = self.addresses;
        for (area, addr, align) in [
            ("descriptor area", a.desc, d),
            ("driver area", a.driver, dr),
            ("device area", a.device, dv),
        ] {
            if addr % align != 0 {
                return Err(Violation::QueueAlignment {
                    queue: index,
                    area,
                    addr,
                    align,
                });
            }
        }
        Ok(QueueSetup {
            index,
            size: self.size,
            format,
            features,
            addresses: a,
        })
    }
}

/// Sets the low (`high == false`) or high 32 bits of a 64-bit register.
pub(crate) fn set_half(reg: &mut u64, high: bool, value: u32) {
    if high {
        *reg = (*reg & 0xffff_ffff) | ((value as u64) << 32);
    } else {
        *reg = (*reg & !0xffff_ffff) | value as u64;
    }
}

/// The low or high 32 bits of a 64-bit register.
pub(crate) fn half(reg: u64, high: bool) -> u32 {
    if high {
        (reg >> 32) as u32
    } else {
        reg as u32
    }
}
