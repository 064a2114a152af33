//! Vendor data capabilities (`struct virtio_pci_vndr_data`, VIRTIO 1.4
//! §4.1.4.8), both sides: [`VendorData`] is what a VMM asks
//! [`PciDevice`](super::PciDevice) to present (through
//! [`PciConfig::vendor_data`](super::PciConfig::vendor_data)), and
//! [`VendorDataCap`] is what [`PciTransport`] found while walking the
//! capability list.
//!
//! Layout in configuration space: `cap_vndr` = 0x09, `cap_next`,
//! `cap_len`, `cfg_type` = VIRTIO_PCI_CAP_VENDOR_CFG (9), `vendor_id`
//! (le16), then the vendor-defined data, padded with zeros to a multiple
//! of 4 bytes. The capability is read-only and reads have no side effects.

use ringwork_spec::pci::{
    CAP_CFG_TYPE, CAP_LEN, PCI_VNDR_DATA_SIZE, VIRTIO_PCI_CAP_VENDOR_CFG, VIRTIO_PCI_VENDOR_ID,
    VNDR_DATA_VENDOR_ID,
};

use super::config_space::{ConfigSpace, CONFIG_SPACE_SIZE};
use super::device::PciConfigError;
use super::PciTransport;
use crate::driver::RegisterAccess;

/// A vendor data capability a [`PciDevice`](super::PciDevice) presents
/// (VIRTIO 1.4 §4.1.4.8), for debugging and reporting.
///
/// The capability is the 6-byte header followed by `data`, padded with
/// zeros so its size (`cap_len`) is a multiple of 4 bytes as §4.1.4.8
/// requires: a driver reads the padding as part of the data. It must fit
/// in configuration space together with the other capabilities.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VendorData {
    /// PCI-SIG Vendor ID identifying the format of `data`; any value but
    /// 0x1AF4 (§4.1.4.8: the device MUST NOT use it), and it need not
    /// match the function's Vendor or Subsystem Vendor ID.
    pub vendor_id: u16,
    /// The vendor-defined bytes.
    pub data: &'static [u8],
}

/// Checks and appends the vendor data capabilities, in order (§4.1.4.8).
pub(super) fn add_vendor_caps(
    cfg: &mut ConfigSpace,
    caps: &[VendorData],
) -> Result<(), PciConfigError> {
    if let Some(v) = caps.iter().find(|v| v.vendor_id == VIRTIO_PCI_VENDOR_ID) {
        return Err(PciConfigError::VendorId(v.vendor_id));
    }
    for v in caps {
        cfg.add_vendor_data(v.vendor_id, v.data)
            .ok_or(PciConfigError::CapabilitySpace)?;
    }
    Ok(())
}

/// A vendor data capability found by [`PciTransport`] (VIRTIO 1.4
/// §4.1.4.8). Its contents are only meaningful to a driver that knows the
/// format `vendor_id` names: see [`PciTransport::read_vendor_data`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VendorDataCap {
    /// `vendor_id`: the PCI-SIG Vendor ID of the data's format.
    pub vendor_id: u16,
    /// Offset of the capability in configuration space.
    pub offset: u8,
    /// `cap_len`: the whole capability, header included.
    pub cap_len: u8,
}

impl VendorDataCap {
    /// Bytes of vendor data (padding included) after the 6-byte header.
    pub fn data_len(&self) -> usize {
        usize::from(self.cap_len).saturating_sub(PCI_VNDR_DATA_SIZE)
    }
}

/// The vendor data capability at `at` (its `cfg_type` already read as
/// VIRTIO_PCI_CAP_VENDOR_CFG): `None` when `cap_len` is shorter than the
/// header or runs past the end of configuration space.
pub(super) fn vendor_cap<C: RegisterAccess>(config: &C, at: usize) -> Option<VendorDataCap> {
    let cap_len = config.read8(at + CAP_LEN);
    let fits = at + usize::from(cap_len) <= CONFIG_SPACE_SIZE;
    (usize::from(cap_len) >= PCI_VNDR_DATA_SIZE && fits).then(|| VendorDataCap {
        vendor_id: config.read16(at + VNDR_DATA_VENDOR_ID),
        offset: at as u8,
        cap_len,
    })
}

impl<C: RegisterAccess, B: RegisterAccess> PciTransport<C, B> {
    /// The vendor data capabilities (`cfg_type` VIRTIO_PCI_CAP_VENDOR_CFG,
    /// VIRTIO 1.4 §4.1.4.8) found in the capability list, in list order.
    /// They play no part in the transport's layout.
    pub fn vendor_data(&self) -> impl Iterator<Item = VendorDataCap> + '_ {
        self.vendor_caps().iter().copied()
    }

    /// Copies the data of the `index`-th vendor data capability whose
    /// `vendor_id` is `expected_vendor_id` (counting only those) into
    /// `buf`, and returns how many bytes were copied: the data length
    /// ([`VendorDataCap::data_len`], padding included) or `buf.len()`,
    /// whichever is smaller.
    ///
    /// §4.1.4.8: the driver MUST qualify `vendor_id` before interpreting
    /// the capability, so `vendor_id` is read again from configuration
    /// space before the data, and capabilities of any other vendor are
    /// never read: `None` if there is no such capability. Only reads are
    /// made (they have no side effects).
    pub fn read_vendor_data(
        &self,
        expected_vendor_id: u16,
        index: usize,
        buf: &mut [u8],
    ) -> Option<usize> {
        let cap = self
            .vendor_data()
            .filter(|c| c.vendor_id == expected_vendor_id)
            .nth(index)?;
        let at = usize::from(cap.offset);
        let config = self.pci_config();
        if config.read8(at + CAP_CFG_TYPE) != VIRTIO_PCI_CAP_VENDOR_CFG
            || config.read16(at + VNDR_DATA_VENDOR_ID) != expected_vendor_id
        {
            return None;
        }
        let n = cap.data_len().min(buf.len());
        for (i, b) in buf[..n].iter_mut().enumerate() {
            *b = config.read8(at + PCI_VNDR_DATA_SIZE + i);
        }
        Some(n)
    }
}
