//! The legacy interface of a transitional [`PciDevice`]: the virtio header
//! in I/O BAR0 (VIRTIO 1.4 §4.1.4.10), with the queue address in 4096-byte
//! pages and the legacy split ring layout (§4.1.5.1.3.1).
//!
//! Header fields are accessed at their natural width; the device-specific
//! configuration that follows (at 20, or at 24 while MSI-X is enabled) may
//! be accessed with any width (§4.1.4.10). Only feature bits 0 to 31 exist
//! here; the core treats the rest as not acknowledged.

use ringwork_spec::pci::legacy::{
    device_config_offset, CONFIG_MSIX_VECTOR, DEVICE_FEATURES, DEVICE_STATUS, DRIVER_FEATURES,
    ISR_STATUS, QUEUE_ADDRESS, QUEUE_ADDR_SHIFT, QUEUE_ALIGN, QUEUE_MSIX_VECTOR, QUEUE_NOTIFY,
    QUEUE_SELECT, QUEUE_SIZE,
};
use ringwork_spec::pci::VIRTIO_MSI_NO_VECTOR;
use ringwork_spec::ring::split::legacy_layout;

use super::device::PciDevice;
use crate::device_model::VirtioDevice;
use crate::violation::Violation;

/// Width and writability of the header field at `off` (the vector fields
/// exist only while MSI-X is enabled).
fn field(off: usize, msix: bool) -> Option<(usize, bool)> {
    Some(match off {
        DEVICE_FEATURES => (4, false),
        DRIVER_FEATURES | QUEUE_ADDRESS => (4, true),
        QUEUE_SIZE => (2, false),
        QUEUE_SELECT | QUEUE_NOTIFY => (2, true),
        DEVICE_STATUS => (1, true),
        ISR_STATUS => (1, false),
        CONFIG_MSIX_VECTOR | QUEUE_MSIX_VECTOR if msix => (2, true),
        _ => return None,
    })
}

impl<D: VirtioDevice> PciDevice<D> {
    fn legacy_config_base(&self) -> u64 {
        device_config_offset(self.irq.msix_enabled()) as u64
    }

    /// Checks a header access; `Some(offset)` if it names one field at its
    /// width, and the field may be accessed that way.
    fn legacy_check(&mut self, offset: u64, width: usize, write: bool) -> Option<usize> {
        let off = usize::try_from(offset).ok()?;
        match field(off, self.irq.msix_enabled()) {
            Some((w, _)) if w != width => None,
            Some((_, false)) if write => {
                self.core.record(Violation::ReadOnly { offset });
                return None;
            }
            Some(_) => Some(off),
            None => None,
        }
        .or_else(|| {
            self.core.record(Violation::BadAccess {
                offset,
                width,
                write,
            });
            None
        })
    }

    /// A read of the legacy I/O BAR.
    pub(super) fn legacy_read(&mut self, offset: u64, data: &mut [u8]) {
        let base = self.legacy_config_base();
        if offset >= base {
            if self.use_interface(true) {
                self.core.read_config(offset - base, data);
            }
            return;
        }
        let Some(off) = self.legacy_check(offset, data.len(), false) else {
            return;
        };
        if !self.use_interface(true) {
            return;
        }
        let sel = usize::from(self.queue_select);
        let q = self.core.queues().get(sel).copied();
        let v: u32 = match off {
            DEVICE_FEATURES => self.core.device_features_word(0),
            DRIVER_FEATURES => self.core.driver_features_word(0),
            QUEUE_ADDRESS => q.map_or(0, |q| q.legacy_pfn),
            // No way to negotiate the size: the maximum, always.
            QUEUE_SIZE => q.map_or(0, |q| q.max_size.into()),
            QUEUE_SELECT => self.queue_select.into(),
            DEVICE_STATUS => self.core.status().into(),
            ISR_STATUS => self.core.ack_interrupts(u32::MAX) & 0xff,
            CONFIG_MSIX_VECTOR => self.irq.config_vector().into(),
            QUEUE_MSIX_VECTOR => self.irq.queue_vector(sel).into(),
            // Queue Notify reads as 0.
            _ => 0,
        };
        data.copy_from_slice(&v.to_le_bytes()[..data.len()]);
    }

    /// A write of the legacy I/O BAR.
    pub(super) fn legacy_write(&mut self, offset: u64, data: &[u8]) {
        let base = self.legacy_config_base();
        if offset >= base {
            if self.use_interface(true) {
                self.core.write_config(offset - base, data);
            }
            return;
        }
        let Some(off) = self.legacy_check(offset, data.len(), true) else {
            return;
        };
        let mut b = [0u8; 4];
        b[..data.len()].copy_from_slice(data);
        let v = u32::from_le_bytes(b);
        // A reset through either interface is always honoured.
        if off == DEVICE_STATUS && v == 0 {
            self.write_status(0);
            self.core.set_legacy(true);
            return;
        }
        if !self.use_interface(true) {
            return;
        }
        let sel = self.queue_select;
        match off {
            DRIVER_FEATURES => self.core.write_driver_features_word(0, v),
            QUEUE_ADDRESS => self.legacy_queue_address(sel.into(), v),
            QUEUE_SELECT => self.queue_select = v as u16,
            QUEUE_NOTIFY => self.notify(v as u16, v),
            DEVICE_STATUS => self.write_status(v as u8),
            CONFIG_MSIX_VECTOR => self.write_config_vector(v as u16),
            QUEUE_MSIX_VECTOR => self.write_queue_vector(sel, v as u16),
            _ => {}
        }
    }

    /// Queue Address: the queue's page number (4096-byte pages) in the
    /// legacy layout with 4096 alignment, at its maximum size; 0 stops the
    /// queue.
    fn legacy_queue_address(&mut self, sel: u32, pfn: u32) {
        if pfn == 0 {
            self.core.disable_queue(sel);
            self.irq
                .set_queue_vector(sel as usize, VIRTIO_MSI_NO_VECTOR);
            return;
        }
        let Some(q) = self.core.queue_config_mut(sel) else {
            return;
        };
        let base = u64::from(pfn) << QUEUE_ADDR_SHIFT;
        let layout = legacy_layout(q.size, QUEUE_ALIGN);
        q.legacy_align = QUEUE_ALIGN as u32;
        q.legacy_pfn = pfn;
        q.addresses.desc = base;
        q.addresses.driver = base + layout.avail_offset as u64;
        q.addresses.device = base + layout.used_offset as u64;
        self.core.enable_queue(sel);
        // A refused configuration leaves the queue unused (reads 0).
        if let Some(q) = self.core.queue_regs_mut(sel) {
            if !q.ready {
                q.legacy_pfn = 0;
            }
        }
    }
}
