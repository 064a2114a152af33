//! The PCI configuration space of a [`PciDevice`](super::PciDevice): the
//! type-0 header (PCI Local Bus 3.0 §6.1, §6.2), BAR registers with size
//! probing (§6.2.5.1), and the capability list (§6.7) holding the MSI-X
//! capability, the virtio structure capabilities (VIRTIO 1.4 §4.1.4) and
//! the vendor data capabilities (§4.1.4.8).
//!
//! Each byte has a write mask: bits outside it are read-only and writes to
//! them are dropped, as PCI requires of read-only registers. Writes to the
//! read-only bytes of a virtio capability are also reported (§4.1.4.1: the
//! driver MUST NOT write them, PCI_CFG's `cap.bar`, `cap.offset`,
//! `cap.length` and `pci_cfg_data` excepted). Reads have no side effects
//! here; the PCI_CFG data window's BAR access is done by the caller.

use alloc::vec::Vec;

use ringwork_spec::pci::{
    is_valid_cfg_access, CAP_BAR, CAP_CFG_TYPE, CAP_ID, CAP_LEN, CAP_LENGTH, CAP_NEXT, CAP_OFFSET,
    CFG_CAP_DATA, PCI_BAR0_OFFSET, PCI_CAP_ID_VNDR, PCI_CAP_SIZE, PCI_SUBSYSTEM_ID_OFFSET,
    PCI_SUBSYSTEM_VENDOR_ID_OFFSET, PCI_VNDR_DATA_SIZE, VIRTIO_PCI_CAP_PCI_CFG,
    VIRTIO_PCI_CAP_VENDOR_CFG, VNDR_DATA_VENDOR_ID,
};

use super::device::PciDevice;
use super::msix::{Interrupts, MSIX_CAP_ID, MSIX_CAP_LEN};
use super::MODERN_BAR_INDEX;
use crate::device_model::VirtioDevice;
use crate::violation::Violation;

/// Size of the configuration space (conventional PCI).
pub(crate) const CONFIG_SPACE_SIZE: usize = 256;
/// Vendor ID offset.
pub(crate) const VENDOR_ID: usize = 0x00;
/// Device ID offset.
pub(crate) const DEVICE_ID: usize = 0x02;
/// Command register offset.
pub(crate) const COMMAND: usize = 0x04;
/// Status register offset.
pub(crate) const STATUS: usize = 0x06;
/// Revision ID offset; the class code follows (prog-if, subclass, class).
pub(crate) const REVISION_ID: usize = 0x08;
/// Cache Line Size offset.
const CACHE_LINE_SIZE: usize = 0x0c;
/// Capabilities Pointer offset.
pub(crate) const CAP_POINTER: usize = 0x34;
/// Interrupt Line offset.
const INTERRUPT_LINE: usize = 0x3c;
/// Interrupt Pin offset.
pub(crate) const INTERRUPT_PIN: usize = 0x3d;
/// First byte after the header: where the capability list starts.
pub(crate) const CAP_START: usize = 0x40;

/// Command: I/O Space enable.
pub(crate) const COMMAND_IO: u16 = 1 << 0;
/// Command: Memory Space enable.
pub(crate) const COMMAND_MEMORY: u16 = 1 << 1;
/// Command: Bus Master enable.
pub(crate) const COMMAND_BUS_MASTER: u16 = 1 << 2;
/// Command: Interrupt Disable (INTx).
pub(crate) const COMMAND_INTX_DISABLE: u16 = 1 << 10;
/// Status: Interrupt Status.
pub(crate) const STATUS_INTERRUPT: u16 = 1 << 3;
/// Status: Capabilities List.
pub(crate) const STATUS_CAP_LIST: u16 = 1 << 4;

/// What kind of space a BAR maps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BarKind {
    /// I/O space (the transitional legacy interface).
    Io,
    /// 32-bit memory space.
    Mem32,
    /// 64-bit memory space: the BAR and the next one form a pair.
    Mem64,
}

/// A BAR the device implements, for the VMM to allocate space to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BarInfo {
    /// BAR index (0 to 5; the lower index of a 64-bit pair).
    pub index: u8,
    /// Size in bytes (a power of 2).
    pub size: u64,
    /// I/O, 32-bit or 64-bit memory.
    pub kind: BarKind,
    /// Whether the memory is prefetchable.
    pub prefetchable: bool,
}

impl BarInfo {
    /// The read-only low bits of the BAR register.
    fn flags(&self) -> u32 {
        let pf = if self.prefetchable { 0x8 } else { 0 };
        match self.kind {
            BarKind::Io => 0x1,
            BarKind::Mem32 => pf,
            BarKind::Mem64 => 0x4 | pf,
        }
    }

    /// The writable address bits of the full (64-bit) register.
    fn address_mask(&self) -> u64 {
        let low = if self.kind == BarKind::Io { 0x3 } else { 0xf };
        let mask = !(self.size - 1) & !low;
        if self.kind == BarKind::Mem64 {
            mask
        } else {
            mask & 0xffff_ffff
        }
    }
}

/// The identification part of the header.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Header {
    pub(crate) vendor_id: u16,
    pub(crate) device_id: u16,
    pub(crate) revision: u8,
    /// Class code: class << 16 | subclass << 8 | prog-if.
    pub(crate) class: u32,
    pub(crate) subsystem_vendor_id: u16,
    pub(crate) subsystem_id: u16,
}

/// What a configuration write did, beyond storing bytes.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct WriteEffects {
    /// The first read-only byte of a virtio capability the write touched.
    pub(crate) cap_write: Option<usize>,
    /// The write reached `pci_cfg_data`: do the BAR write.
    pub(crate) cfg_data: bool,
    /// Interrupt Disable or MSI-X Enable may have changed: re-evaluate INTx.
    pub(crate) intx: bool,
}

/// The 256-byte configuration space. See the [module docs](crate::pci).
pub(crate) struct ConfigSpace {
    bytes: [u8; CONFIG_SPACE_SIZE],
    wmask: [u8; CONFIG_SPACE_SIZE],
    initial: [u8; CONFIG_SPACE_SIZE],
    /// `[start, end)` of every virtio and vendor data capability.
    virtio_caps: Vec<(usize, usize)>,
    msix_cap: Option<usize>,
    cfg_cap: Option<usize>,
    last_cap: Option<usize>,
    next_free: usize,
    bars: [Option<BarInfo>; 6],
}

fn put(bytes: &mut [u8], at: usize, value: &[u8]) {
    bytes[at..at + value.len()].copy_from_slice(value);
}

impl ConfigSpace {
    /// A header with `h`, INTA, no BARs and an empty capability list.
    pub(crate) fn new(h: Header) -> Self {
        let mut b = [0u8; CONFIG_SPACE_SIZE];
        put(&mut b, VENDOR_ID, &h.vendor_id.to_le_bytes());
        put(&mut b, DEVICE_ID, &h.device_id.to_le_bytes());
        put(&mut b, STATUS, &STATUS_CAP_LIST.to_le_bytes());
        b[REVISION_ID] = h.revision;
        put(&mut b, REVISION_ID + 1, &h.class.to_le_bytes()[..3]);
        put(
            &mut b,
            PCI_SUBSYSTEM_VENDOR_ID_OFFSET,
            &h.subsystem_vendor_id.to_le_bytes(),
        );
        put(
            &mut b,
            PCI_SUBSYSTEM_ID_OFFSET,
            &h.subsystem_id.to_le_bytes(),
        );
        b[INTERRUPT_PIN] = 1; // INTA#
        let mut wmask = [0u8; CONFIG_SPACE_SIZE];
        let cmd = COMMAND_MEMORY | COMMAND_BUS_MASTER | COMMAND_INTX_DISABLE;
        put(&mut wmask, COMMAND, &cmd.to_le_bytes());
        wmask[CACHE_LINE_SIZE] = 0xff;
        wmask[INTERRUPT_LINE] = 0xff;
        Self {
            bytes: b,
            wmask,
            initial: b,
            virtio_caps: Vec::new(),
            msix_cap: None,
            cfg_cap: None,
            last_cap: None,
            next_free: CAP_START,
            bars: [None; 6],
        }
    }

    /// Declares a BAR (size a power of 2: at least 4 for I/O, 16 for
    /// memory). An I/O BAR makes the command register's I/O Space bit
    /// writable.
    pub(crate) fn add_bar(&mut self, bar: BarInfo) {
        let i = usize::from(bar.index);
        let at = PCI_BAR0_OFFSET + 4 * i;
        let mask = bar.address_mask();
        put(&mut self.bytes, at, &bar.flags().to_le_bytes());
        put(&mut self.wmask, at, &(mask as u32).to_le_bytes());
        if bar.kind == BarKind::Mem64 {
            put(
                &mut self.wmask,
                at + 4,
                &((mask >> 32) as u32).to_le_bytes(),
            );
        }
        if bar.kind == BarKind::Io {
            self.wmask[COMMAND] |= COMMAND_IO as u8;
        }
        self.bars[i] = Some(bar);
        self.initial = self.bytes;
    }

    /// The BARs, in index order.
    pub(crate) fn bars(&self) -> impl Iterator<Item = BarInfo> + '_ {
        self.bars.iter().flatten().copied()
    }

    /// BAR `index` if the device implements it (lower index of a pair).
    pub(crate) fn bar(&self, index: u8) -> Option<BarInfo> {
        self.bars.get(usize::from(index)).copied().flatten()
    }

    fn dword(&self, at: usize) -> u32 {
        u32::from_le_bytes([
            self.bytes[at],
            self.bytes[at + 1],
            self.bytes[at + 2],
            self.bytes[at + 3],
        ])
    }

    /// The address BAR `index` is programmed with.
    pub(crate) fn bar_address(&self, index: u8) -> Option<u64> {
        let bar = self.bar(index)?;
        let at = PCI_BAR0_OFFSET + 4 * usize::from(index);
        let mut v = u64::from(self.dword(at));
        if bar.kind == BarKind::Mem64 {
            v |= u64::from(self.dword(at + 4)) << 32;
        }
        Some(v & bar.address_mask())
    }

    /// Programs BAR `index` (for VMMs that place BARs themselves).
    pub(crate) fn set_bar_address(&mut self, index: u8, address: u64) -> bool {
        let Some(bar) = self.bar(index) else {
            return false;
        };
        let at = PCI_BAR0_OFFSET + 4 * usize::from(index);
        let v = (address & bar.address_mask()) | u64::from(bar.flags());
        put(&mut self.bytes, at, &(v as u32).to_le_bytes());
        if bar.kind == BarKind::Mem64 {
            put(&mut self.bytes, at + 4, &((v >> 32) as u32).to_le_bytes());
        }
        true
    }

    /// Appends a capability of `len` bytes with ID `id`, linked from the
    /// previous one; `None` when the space is full.
    fn alloc_cap(&mut self, len: usize, id: u8) -> Option<usize> {
        let at = self.next_free;
        if at + len > CONFIG_SPACE_SIZE {
            return None;
        }
        match self.last_cap {
            Some(prev) => self.bytes[prev + CAP_NEXT] = at as u8,
            None => self.bytes[CAP_POINTER] = at as u8,
        }
        self.bytes[at] = id;
        self.bytes[at + CAP_NEXT] = 0;
        self.last_cap = Some(at);
        // Capabilities start on a dword boundary.
        self.next_free = (at + len).next_multiple_of(4);
        self.initial = self.bytes;
        Some(at)
    }

    /// Appends the MSI-X capability (Message Control is presented by
    /// `Interrupts`).
    pub(crate) fn add_msix(&mut self, bar: u8, table: u32, pba: u32) -> Option<()> {
        let at = self.alloc_cap(MSIX_CAP_LEN, MSIX_CAP_ID)?;
        put(
            &mut self.bytes,
            at + 4,
            &(table | u32::from(bar)).to_le_bytes(),
        );
        put(
            &mut self.bytes,
            at + 8,
            &(pba | u32::from(bar)).to_le_bytes(),
        );
        self.msix_cap = Some(at);
        self.initial = self.bytes;
        Some(())
    }

    /// Appends a virtio structure capability (`struct virtio_pci_cap`,
    /// §4.1.4) followed by `extra`; `cap_len` covers both (§4.1.4.2).
    pub(crate) fn add_virtio(
        &mut self,
        cfg_type: u8,
        bar: u8,
        id: u8,
        offset: u32,
        length: u32,
        extra: &[u8],
    ) -> Option<usize> {
        let len = PCI_CAP_SIZE + extra.len();
        let at = self.alloc_cap(len, PCI_CAP_ID_VNDR)?;
        let b = &mut self.bytes[at..at + len];
        b[CAP_LEN] = len as u8;
        b[CAP_CFG_TYPE] = cfg_type;
        b[CAP_BAR] = bar;
        b[CAP_ID] = id;
        put(b, CAP_OFFSET, &offset.to_le_bytes());
        put(b, CAP_LENGTH, &length.to_le_bytes());
        put(b, PCI_CAP_SIZE, extra);
        if cfg_type == VIRTIO_PCI_CAP_PCI_CFG {
            // §4.1.4.9: cap.bar, cap.offset, cap.length and pci_cfg_data
            // are read-write.
            self.wmask[at + CAP_BAR] = 0xff;
            self.wmask[at + CAP_OFFSET..at + CFG_CAP_DATA + 4].fill(0xff);
            self.cfg_cap = Some(at);
        }
        self.virtio_caps.push((at, at + len));
        self.initial = self.bytes;
        Some(at)
    }

    /// Appends a vendor data capability (`struct virtio_pci_vndr_data`,
    /// VIRTIO 1.4 §4.1.4.8): the 6-byte header, `data`, then zeros up to the
    /// next multiple of 4 bytes, which `cap_len` covers. Every byte is
    /// read-only: reads have no side effects and writes are dropped and
    /// reported like those to the virtio capabilities. `None` when it does
    /// not fit (configuration space, or the 8-bit `cap_len`).
    pub(crate) fn add_vendor_data(&mut self, vendor_id: u16, data: &[u8]) -> Option<usize> {
        let len = PCI_VNDR_DATA_SIZE
            .checked_add(data.len())?
            .next_multiple_of(4);
        if len > usize::from(u8::MAX) {
            return None;
        }
        let at = self.alloc_cap(len, PCI_CAP_ID_VNDR)?;
        let b = &mut self.bytes[at..at + len];
        b[CAP_LEN] = len as u8;
        b[CAP_CFG_TYPE] = VIRTIO_PCI_CAP_VENDOR_CFG;
        put(b, VNDR_DATA_VENDOR_ID, &vendor_id.to_le_bytes());
        put(b, PCI_VNDR_DATA_SIZE, data);
        b[PCI_VNDR_DATA_SIZE + data.len()..].fill(0);
        self.virtio_caps.push((at, at + len));
        self.initial = self.bytes;
        Some(at)
    }

    /// The command register.
    pub(crate) fn command(&self) -> u16 {
        u16::from_le_bytes([self.bytes[COMMAND], self.bytes[COMMAND + 1]])
    }

    /// Offset of the PCI_CFG capability.
    pub(crate) fn cfg_cap(&self) -> Option<usize> {
        self.cfg_cap
    }

    /// The PCI_CFG window as the driver set it: (`cap.bar`, `cap.offset`,
    /// `cap.length`).
    pub(crate) fn cfg_window(&self) -> Option<(u8, u32, u32)> {
        let at = self.cfg_cap?;
        Some((
            self.bytes[at + CAP_BAR],
            self.dword(at + CAP_OFFSET),
            self.dword(at + CAP_LENGTH),
        ))
    }

    /// `pci_cfg_data`.
    pub(crate) fn cfg_data(&self) -> [u8; 4] {
        let at = self.cfg_cap.map_or(0, |c| c + CFG_CAP_DATA);
        let mut d = [0u8; 4];
        d.copy_from_slice(&self.bytes[at..at + 4]);
        d
    }

    /// Stores the result of a window read into `pci_cfg_data`.
    pub(crate) fn set_cfg_data(&mut self, data: &[u8]) {
        if let Some(at) = self.cfg_cap {
            let n = data.len().min(4);
            put(&mut self.bytes, at + CFG_CAP_DATA, &data[..n]);
        }
    }

    /// A read of `data.len()` bytes at `offset` (in range, checked by the
    /// caller). `isr` is the ISR status, for the Interrupt Status bit.
    pub(crate) fn read(&self, offset: usize, data: &mut [u8], irq: &Interrupts, isr: u32) {
        let mut b = self.bytes;
        // §4.1.4.5.1: with MSI-X disabled, Interrupt Status is the OR of
        // the ISR bits.
        if isr != 0 && !irq.msix_enabled() {
            b[STATUS] |= STATUS_INTERRUPT as u8;
        }
        if let (Some(at), Some(m)) = (self.msix_cap, &irq.msix) {
            put(&mut b, at + 2, &m.control().to_le_bytes());
        }
        data.copy_from_slice(&b[offset..offset + data.len()]);
    }

    /// A write of `data` at `offset` (in range, checked by the caller):
    /// writable bits are stored, read-only bits dropped.
    pub(crate) fn write(&mut self, offset: usize, data: &[u8], irq: &Interrupts) -> WriteEffects {
        let mut fx = WriteEffects::default();
        let mut msix_ctrl = None;
        for (i, &v) in data.iter().enumerate() {
            let at = offset + i;
            let m = self.wmask[at];
            self.bytes[at] = (self.bytes[at] & !m) | (v & m);
            if m == 0 && fx.cap_write.is_none() && self.in_virtio_cap(at) {
                fx.cap_write = Some(at);
            }
            if let (Some(c), Some(msix)) = (self.msix_cap, &irq.msix) {
                if at == c + 2 || at == c + 3 {
                    let cur = msix_ctrl.unwrap_or_else(|| msix.control()).to_le_bytes();
                    let mut ctrl = cur;
                    ctrl[at - c - 2] = v;
                    msix_ctrl = Some(u16::from_le_bytes(ctrl));
                }
            }
            if let Some(c) = self.cfg_cap {
                fx.cfg_data |= (c + CFG_CAP_DATA..c + CFG_CAP_DATA + 4).contains(&at);
            }
            fx.intx |= at == COMMAND + 1;
        }
        if let (Some(ctrl), Some(msix)) = (msix_ctrl, &irq.msix) {
            msix.write_control(ctrl);
            fx.intx = true;
        }
        fx
    }

    fn in_virtio_cap(&self, at: usize) -> bool {
        self.virtio_caps.iter().any(|&(s, e)| (s..e).contains(&at))
    }

    /// PCI function reset: the header and capabilities as built (BARs
    /// unprogrammed, command 0, PCI_CFG window cleared).
    pub(crate) fn reset(&mut self) {
        self.bytes = self.initial;
    }
}

impl<D: VirtioDevice> PciDevice<D> {
    fn config_access_ok(&mut self, offset: u64, width: usize, write: bool) -> bool {
        let ok = matches!(width, 1 | 2 | 4)
            && offset % width as u64 == 0
            && offset + width as u64 <= CONFIG_SPACE_SIZE as u64;
        if !ok {
            self.bad(offset, width, write);
        }
        ok
    }

    /// A read of PCI configuration space (1, 2 or 4 bytes, naturally
    /// aligned). Reading `pci_cfg_data` performs the PCI_CFG window's BAR
    /// read first (§4.1.4.9.1).
    pub fn config_read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        if !self.config_access_ok(offset, data.len(), false) {
            return;
        }
        let off = offset as usize;
        if self.touches_cfg_data(off, data.len()) {
            if let Some((bar, at, len)) = self.cfg_window() {
                let mut tmp = [0u8; 4];
                self.bar_read(bar, at, &mut tmp[..len]);
                self.cfg.set_cfg_data(&tmp[..len]);
            }
        }
        let isr = self.core.interrupt_status();
        self.cfg.read(off, data, &self.irq, isr);
    }

    /// A write of PCI configuration space. Writing `pci_cfg_data` performs
    /// the PCI_CFG window's BAR write (§4.1.4.9.1); writes to the other
    /// bytes of virtio capabilities are dropped and recorded.
    pub fn config_write(&mut self, offset: u64, data: &[u8]) {
        if !self.config_access_ok(offset, data.len(), true) {
            return;
        }
        let fx = self.cfg.write(offset as usize, data, &self.irq);
        if let Some(at) = fx.cap_write {
            self.core
                .record(Violation::CapabilityWrite { offset: at as u16 });
        }
        if fx.intx {
            self.refresh_intx();
        }
        if fx.cfg_data {
            if let Some((bar, at, len)) = self.cfg_window() {
                let d = self.cfg.cfg_data();
                self.bar_write(bar, at, &d[..len]);
            }
        }
    }

    pub(super) fn refresh_intx(&self) {
        let disabled = self.cfg.command() & super::config_space::COMMAND_INTX_DISABLE != 0;
        self.irq
            .refresh_intx(disabled, self.core.interrupt_status());
    }

    fn touches_cfg_data(&self, off: usize, len: usize) -> bool {
        self.cfg.cfg_cap().is_some_and(|c| {
            let d = c + CFG_CAP_DATA;
            off < d + 4 && d < off + len
        })
    }

    /// The PCI_CFG window, if it addresses `cap.length` (1, 2 or 4) aligned
    /// bytes inside one structure of the modern BAR (§4.1.4.9.2); anything
    /// else is recorded. Shared memory regions are the VMM's memory, not
    /// the model's, so they cannot be reached this way.
    fn cfg_window(&mut self) -> Option<(u8, u64, usize)> {
        let (bar, offset, length) = self.cfg.cfg_window()?;
        let ok = is_valid_cfg_access(offset, length)
            && bar == MODERN_BAR_INDEX
            && self.region(offset.into(), length as usize).is_some();
        if !ok {
            self.core.record(Violation::PciCfgWindow {
                bar,
                offset,
                length,
            });
            return None;
        }
        Some((bar, offset.into(), length as usize))
    }
}
