//! Interrupt delivery for the PCI device model: the MSI-X capability's
//! state, table and Pending Bit Array, the virtio vector mappings, and INTx
//! with the ISR status (VIRTIO 1.4 §4.1.4.5, §4.1.5.1.2, §4.1.5.3,
//! §4.1.5.4; MSI-X itself is PCI Local Bus 3.0 §6.8.2).
//!
//! Everything here is atomics: [`PciRoute`] runs on whatever thread calls
//! [`crate::Signals`] (device worker threads included) while the register
//! model changes vectors, masks and the enable bit on the vCPU thread.
//!
//! Mask/pending handshake: a vector that fires while masked sets its pending
//! bit and then re-checks the mask; an unmask clears the mask and then
//! scans the pending bits. Both sides claim a pending bit with an atomic
//! clear before sending, so a message held back by a mask is delivered
//! exactly once, whichever side sees the unmask (sequentially consistent
//! operations order the two "store then load" sequences).

use alloc::boxed::Box;
use alloc::sync::Arc;
use core::sync::atomic::{AtomicBool, AtomicU16, AtomicU32, AtomicU64, Ordering};

use ringwork_spec::pci::{ISR_CONFIG, ISR_QUEUE, VIRTIO_MSI_NO_VECTOR};

use super::MsiSink;
use crate::signal::{IrqLine, Route};

/// PCI capability ID of MSI-X.
pub(crate) const MSIX_CAP_ID: u8 = 0x11;
/// Length of the MSI-X capability structure.
pub(crate) const MSIX_CAP_LEN: usize = 12;
/// Message Control: MSI-X Enable.
pub(crate) const MSIX_CTRL_ENABLE: u16 = 1 << 15;
/// Message Control: Function Mask.
pub(crate) const MSIX_CTRL_FUNCTION_MASK: u16 = 1 << 14;
/// Message Control: Table Size field (N - 1).
pub(crate) const MSIX_CTRL_TABLE_SIZE: u16 = 0x7ff;
/// Bytes per MSI-X Table entry.
pub(crate) const MSIX_ENTRY_SIZE: u64 = 16;
/// Vector Control: Mask Bit.
const VECTOR_CTRL_MASK: u32 = 1;

const SC: Ordering = Ordering::SeqCst;

/// One MSI-X Table entry: Message Address (low, high), Message Data,
/// Vector Control.
struct Entry {
    words: [AtomicU32; 4],
}

impl Entry {
    fn new() -> Self {
        Self {
            words: [
                AtomicU32::new(0),
                AtomicU32::new(0),
                AtomicU32::new(0),
                AtomicU32::new(VECTOR_CTRL_MASK),
            ],
        }
    }
}

/// The MSI-X function state: Message Control bits, table and PBA. The table
/// is at offset 0 of its BAR and the PBA at [`Msix::pba_offset`].
pub(crate) struct Msix {
    entries: Box<[Entry]>,
    pba: Box<[AtomicU64]>,
    /// Message Control, Enable and Function Mask bits only.
    control: AtomicU16,
    sink: Arc<dyn MsiSink>,
}

impl Msix {
    /// A function with `vectors` table entries (1 to 0x800), all masked.
    pub(crate) fn new(vectors: u16, sink: Arc<dyn MsiSink>) -> Self {
        let n = usize::from(vectors);
        Self {
            entries: (0..n).map(|_| Entry::new()).collect(),
            pba: (0..n.div_ceil(64)).map(|_| AtomicU64::new(0)).collect(),
            control: AtomicU16::new(0),
            sink,
        }
    }

    /// Number of table entries.
    pub(crate) fn table_size(&self) -> u16 {
        self.entries.len() as u16
    }

    /// Offset of the PBA in the BAR: after the table, on a 2 KiB boundary
    /// (QEMU's layout for small tables: table at 0, PBA at 0x800).
    pub(crate) fn pba_offset(&self) -> u64 {
        (self.entries.len() as u64 * MSIX_ENTRY_SIZE).next_multiple_of(0x800)
    }

    /// Size of the BAR holding table and PBA: a power of 2, at least 4 KiB.
    pub(crate) fn bar_size(&self) -> u64 {
        (self.pba_offset() + self.pba.len() as u64 * 8)
            .next_power_of_two()
            .max(0x1000)
    }

    /// Message Control as the capability presents it.
    pub(crate) fn control(&self) -> u16 {
        self.control.load(SC) | (self.table_size() - 1)
    }

    /// A write of Message Control (Enable and Function Mask are writable).
    pub(crate) fn write_control(&self, value: u16) {
        self.control
            .store(value & (MSIX_CTRL_ENABLE | MSIX_CTRL_FUNCTION_MASK), SC);
        self.release_pending();
    }

    /// Whether MSI-X is enabled.
    pub(crate) fn enabled(&self) -> bool {
        self.control.load(SC) & MSIX_CTRL_ENABLE != 0
    }

    fn masked(&self, vector: usize) -> bool {
        self.control.load(SC) & MSIX_CTRL_FUNCTION_MASK != 0
            || self.entries[vector].words[3].load(SC) & VECTOR_CTRL_MASK != 0
    }

    fn take_pending(&self, vector: usize) -> bool {
        let bit = 1u64 << (vector % 64);
        self.pba[vector / 64].fetch_and(!bit, SC) & bit != 0
    }

    fn send(&self, vector: usize) {
        let w = &self.entries[vector].words;
        let addr = u64::from(w[0].load(SC)) | u64::from(w[1].load(SC)) << 32;
        self.sink.send(addr, w[2].load(SC));
    }

    /// Requests the message of `vector`: sent now, or held in the PBA while
    /// the vector is masked. NO_VECTOR and vectors outside the table send
    /// nothing (§4.1.5.3.1, §4.1.5.4.1).
    pub(crate) fn fire(&self, vector: u16) {
        let v = usize::from(vector);
        if v >= self.entries.len() {
            return;
        }
        if !self.masked(v) {
            self.send(v);
            return;
        }
        self.pba[v / 64].fetch_or(1 << (v % 64), SC);
        // An unmask may have happened between the check and the pending
        // bit: whoever clears the bit sends.
        if !self.masked(v) && self.take_pending(v) {
            self.send(v);
        }
    }

    /// Sends every pending message whose vector is no longer masked.
    fn release_pending(&self) {
        for v in 0..self.entries.len() {
            if self.pba[v / 64].load(SC) & (1 << (v % 64)) != 0
                && !self.masked(v)
                && self.take_pending(v)
            {
                self.send(v);
            }
        }
    }

    /// Forgets pending messages (device reset: they belong to the driver
    /// session that ended).
    pub(crate) fn clear_pending(&self) {
        for p in self.pba.iter() {
            p.store(0, SC);
        }
    }

    /// PCI function reset: MSI-X disabled, every entry zeroed and masked.
    pub(crate) fn reset(&self) {
        self.control.store(0, SC);
        for e in self.entries.iter() {
            for (i, w) in e.words.iter().enumerate() {
                w.store(if i == 3 { VECTOR_CTRL_MASK } else { 0 }, SC);
            }
        }
        self.clear_pending();
    }

    /// A read of the table/PBA BAR: aligned 32- or 64-bit accesses (PCI
    /// 3.0 §6.8.2). `false` for an access that hits nothing.
    pub(crate) fn bar_read(&self, offset: u64, data: &mut [u8]) -> bool {
        let Some(words) = self.dwords(offset, data.len()) else {
            return false;
        };
        for (i, chunk) in data.chunks_exact_mut(4).enumerate() {
            let off = offset + 4 * i as u64;
            let v = match words {
                Area::Table => {
                    let e = (off / MSIX_ENTRY_SIZE) as usize;
                    self.entries[e].words[(off % MSIX_ENTRY_SIZE / 4) as usize].load(SC)
                }
                Area::Pba => {
                    let rel = off - self.pba_offset();
                    let q = self.pba[(rel / 8) as usize].load(SC);
                    (q >> (8 * (rel % 8))) as u32
                }
            };
            chunk.copy_from_slice(&v.to_le_bytes());
        }
        true
    }

    /// A write of the table (the PBA is read-only). `Err(true)` for a write
    /// to the PBA, `Err(false)` for an access that hits nothing.
    pub(crate) fn bar_write(&self, offset: u64, data: &[u8]) -> Result<(), bool> {
        match self.dwords(offset, data.len()) {
            None => return Err(false),
            Some(Area::Pba) => return Err(true),
            Some(Area::Table) => {}
        }
        for (i, chunk) in data.chunks_exact(4).enumerate() {
            let off = offset + 4 * i as u64;
            let e = (off / MSIX_ENTRY_SIZE) as usize;
            let word = (off % MSIX_ENTRY_SIZE / 4) as usize;
            let v = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
            if word == 3 {
                // Only the Mask Bit is defined; an unmask releases a
                // pending message.
                self.entries[e].words[3].store(v & VECTOR_CTRL_MASK, SC);
                if v & VECTOR_CTRL_MASK == 0 && !self.masked(e) && self.take_pending(e) {
                    self.send(e);
                }
            } else {
                self.entries[e].words[word].store(v, SC);
            }
        }
        Ok(())
    }

    /// Which area an access of `len` bytes at `offset` falls in, if it is
    /// an aligned 4- or 8-byte access inside the table or the PBA.
    fn dwords(&self, offset: u64, len: usize) -> Option<Area> {
        if !matches!(len, 4 | 8) || offset % len as u64 != 0 {
            return None;
        }
        let end = offset.checked_add(len as u64)?;
        let table_end = self.entries.len() as u64 * MSIX_ENTRY_SIZE;
        let pba = self.pba_offset();
        if end <= table_end {
            Some(Area::Table)
        } else if offset >= pba && end <= pba + self.pba.len() as u64 * 8 {
            Some(Area::Pba)
        } else {
            None
        }
    }
}

#[derive(Clone, Copy)]
enum Area {
    Table,
    Pba,
}

/// Everything that decides where a device event goes: MSI-X (if the
/// function has it) with the virtio vector mappings, or INTx.
pub(crate) struct Interrupts {
    pub(crate) msix: Option<Msix>,
    config_vector: AtomicU16,
    queue_vectors: Box<[AtomicU16]>,
    intx: Arc<dyn IrqLine>,
    /// Command register Interrupt Disable.
    intx_disabled: AtomicBool,
    /// The level last given to `intx`.
    intx_level: AtomicBool,
}

impl Interrupts {
    pub(crate) fn new(msix: Option<Msix>, queues: usize, intx: Arc<dyn IrqLine>) -> Self {
        Self {
            msix,
            config_vector: AtomicU16::new(VIRTIO_MSI_NO_VECTOR),
            queue_vectors: (0..queues)
                .map(|_| AtomicU16::new(VIRTIO_MSI_NO_VECTOR))
                .collect(),
            intx,
            intx_disabled: AtomicBool::new(false),
            intx_level: AtomicBool::new(false),
        }
    }

    /// Whether the MSI-X capability exists and is enabled.
    pub(crate) fn msix_enabled(&self) -> bool {
        self.msix.as_ref().is_some_and(Msix::enabled)
    }

    /// MSI-X Table Size (0 without an MSI-X capability).
    pub(crate) fn table_size(&self) -> u16 {
        self.msix.as_ref().map_or(0, Msix::table_size)
    }

    /// Whether the device can map an event to `vector` (§4.1.5.1.2.1: any
    /// entry of the table, and NO_VECTOR to unmap).
    fn mappable(&self, vector: u16) -> bool {
        vector == VIRTIO_MSI_NO_VECTOR || vector < self.table_size()
    }

    /// Maps configuration changes to `vector`; a vector the device cannot
    /// map leaves the event unmapped (reads NO_VECTOR) and returns `false`.
    pub(crate) fn set_config_vector(&self, vector: u16) -> bool {
        let ok = self.mappable(vector);
        let v = if ok { vector } else { VIRTIO_MSI_NO_VECTOR };
        self.config_vector.store(v, SC);
        ok
    }

    pub(crate) fn config_vector(&self) -> u16 {
        self.config_vector.load(SC)
    }

    /// Maps queue `queue`'s used buffer notifications to `vector`, as
    /// [`Self::set_config_vector`]. A queue that does not exist is ignored.
    pub(crate) fn set_queue_vector(&self, queue: usize, vector: u16) -> bool {
        let ok = self.mappable(vector);
        if let Some(q) = self.queue_vectors.get(queue) {
            q.store(if ok { vector } else { VIRTIO_MSI_NO_VECTOR }, SC);
        }
        ok
    }

    pub(crate) fn queue_vector(&self, queue: usize) -> u16 {
        self.queue_vectors
            .get(queue)
            .map_or(VIRTIO_MSI_NO_VECTOR, |v| v.load(SC))
    }

    /// Device reset: every event unmapped (§4.1.5.1.2.1), nothing pending.
    pub(crate) fn unmap_all(&self) {
        self.config_vector.store(VIRTIO_MSI_NO_VECTOR, SC);
        for v in self.queue_vectors.iter() {
            v.store(VIRTIO_MSI_NO_VECTOR, SC);
        }
        if let Some(m) = &self.msix {
            m.clear_pending();
        }
    }

    /// Command register Interrupt Disable changed, or MSI-X was enabled or
    /// disabled: brings INTx to the level `isr` and the masks call for.
    pub(crate) fn refresh_intx(&self, intx_disabled: bool, isr: u32) {
        self.intx_disabled.store(intx_disabled, SC);
        let level = isr != 0 && !intx_disabled && !self.msix_enabled();
        if self.intx_level.swap(level, SC) != level {
            self.intx.set_level(level);
        }
    }

    fn raise_intx(&self) {
        if !self.intx_disabled.load(SC) {
            self.intx_level.store(true, SC);
            self.intx.set_level(true);
        }
    }
}

/// The PCI [`Route`]: MSI-X messages when enabled, ISR and INTx otherwise.
pub(crate) struct PciRoute(pub(crate) Arc<Interrupts>);

impl Route for PciRoute {
    /// §4.1.5.3: MSI-X enabled → the queue's vector (nothing for
    /// NO_VECTOR); disabled → ISR bit 0, then INTx.
    fn used_buffer(&self, queue: u16, isr: &AtomicU32) {
        let irq = &self.0;
        match &irq.msix {
            Some(m) if m.enabled() => m.fire(irq.queue_vector(queue.into())),
            _ => {
                isr.fetch_or(ISR_QUEUE.into(), SC);
                irq.raise_intx();
            }
        }
    }

    /// §4.1.5.4, §4.1.4.5.1: ISR bit 1 is set in any case (before the
    /// notification); then the config vector, or INTx.
    fn config_changed(&self, isr: &AtomicU32) {
        let irq = &self.0;
        isr.fetch_or(ISR_CONFIG.into(), SC);
        match &irq.msix {
            Some(m) if m.enabled() => m.fire(irq.config_vector()),
            _ => irq.raise_intx(),
        }
    }

    /// ISR read (or reset) cleared the bits: de-assert INTx when none is
    /// left (§4.1.4.5).
    fn status_cleared(&self, isr: &AtomicU32) {
        if isr.load(SC) == 0 {
            self.0.intx_level.store(false, SC);
            self.0.intx.set_level(false);
        }
    }
}
