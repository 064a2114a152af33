//! Shared pieces of the driver tests: an MMIO loopback rig and the
//! device-side queue plumbing the fake devices share.
#![allow(dead_code)]

pub mod balloon_dev;
pub mod blk_dev;
pub mod console_dev;
pub mod net_dev;
pub mod rng_dev;
pub mod scsi_dev;

use std::cell::RefCell;
use std::sync::Arc;

use ringwork_queue::test_utils::TestMemory;
use ringwork_queue::{DescChain, DeviceQueue, Dma, DmaBuffer, Segment, UsedToken};
use ringwork_transport::mmio::{MmioConfig, MmioDevice, MmioTransport, MmioVersion};
use ringwork_transport::test_utils::Loopback;
use ringwork_transport::{Activation, NoIrq, Signals, VirtioDevice};

/// A device behind a virtio-mmio register block.
pub type Block<Dev> = RefCell<MmioDevice<Dev>>;

/// The driver's view of a [`Block`].
pub type Mmio<'b, Dev> = MmioTransport<Loopback<'b, MmioDevice<Dev>>>;

/// Guest memory for a test (16 MiB).
pub fn memory() -> TestMemory {
    TestMemory::new(0x100_0000, 16 << 20)
}

/// Hosts `dev` behind a modern (version 2) MMIO block.
pub fn block<Dev: VirtioDevice>(dev: Dev) -> Block<Dev> {
    RefCell::new(MmioDevice::new(dev, Arc::new(NoIrq), MmioConfig::default()))
}

/// Hosts `dev` behind a legacy (version 1) MMIO block.
pub fn legacy_block<Dev: VirtioDevice>(dev: Dev) -> Block<Dev> {
    RefCell::new(MmioDevice::new(
        dev,
        Arc::new(NoIrq),
        MmioConfig {
            version: MmioVersion::Legacy,
            ..MmioConfig::default()
        },
    ))
}

/// The driver-side transport of `b`.
pub fn mmio<Dev: VirtioDevice>(b: &Block<Dev>) -> Mmio<'_, Dev> {
    MmioTransport::new(Loopback::new(b)).expect("an MMIO device")
}

/// Runs `f` on the device inside `b`.
pub fn with_dev<Dev: VirtioDevice, R>(b: &Block<Dev>, f: impl FnOnce(&mut Dev) -> R) -> R {
    f(b.borrow_mut().core_mut().device_mut())
}

/// The device status as the driver would read it.
pub fn status<Dev: VirtioDevice>(b: &Block<Dev>) -> u8 {
    b.borrow().core().status()
}

/// The violations the transport recorded (driver misbehaviour).
pub fn violations<Dev: VirtioDevice>(b: &Block<Dev>) -> u64 {
    b.borrow().core().violations().count()
}

/// Device-side queues of a fake device.
#[derive(Default)]
pub struct Queues {
    qs: Vec<Option<DeviceQueue>>,
    signals: Option<Signals>,
    /// The activation the device got.
    pub activation: Option<Activation>,
}

impl Queues {
    /// DRIVER_OK: builds every enabled queue.
    pub fn activate(&mut self, a: Activation, s: Signals) {
        self.qs.clear();
        for q in &a.queues {
            let i = q.index as usize;
            if self.qs.len() <= i {
                self.qs.resize_with(i + 1, || None);
            }
            self.qs[i] = DeviceQueue::new(q.format, q.size, q.addresses, q.features).ok();
        }
        self.activation = Some(a);
        self.signals = Some(s);
    }

    /// Device reset.
    pub fn reset(&mut self) {
        self.qs.clear();
        self.signals = None;
        self.activation = None;
    }

    /// Whether queue `q` is running.
    pub fn is_active(&self, q: u16) -> bool {
        matches!(self.qs.get(q as usize), Some(Some(_)))
    }

    /// Pops the next chain of queue `q`.
    pub fn pop(&mut self, mem: &TestMemory, q: u16) -> Option<DescChain> {
        let dq = self.qs.get_mut(q as usize)?.as_mut()?;
        dq.pop(mem).expect("driver made a valid chain available")
    }

    /// Completes a chain of queue `q` and notifies the driver if it wants.
    pub fn used(&mut self, mem: &TestMemory, q: u16, token: UsedToken, len: u32) {
        let Some(Some(dq)) = self.qs.get_mut(q as usize) else {
            return;
        };
        dq.add_used(mem, token, len).expect("add_used");
        if dq.needs_notification(mem).unwrap_or(false) {
            if let Some(s) = &self.signals {
                s.used_buffer(q);
            }
        }
    }

    /// A token for a used entry with id `id` on queue `q`, whatever the
    /// driver made available (to forge hostile completions).
    pub fn forge_token(&self, q: u16, id: u16) -> Option<UsedToken> {
        let dq = self.qs.get(q as usize)?.as_ref()?;
        Some(dq.inflight_token(id, 1))
    }

    /// The device's notification handle.
    pub fn signals(&self) -> Option<&Signals> {
        self.signals.as_ref()
    }
}

/// Reads a chain's whole device-readable part.
pub fn read_all(mem: &TestMemory, chain: &DescChain) -> Vec<u8> {
    let mut out = vec![0u8; chain.readable_len() as usize];
    let n = chain.reader(mem).read(&mut out).expect("readable");
    out.truncate(n);
    out
}

/// `len` bytes of a recognizable pattern.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect()
}

/// A DMA buffer of `len` bytes starting with `bytes`, and its segment.
pub fn buffer(mem: &TestMemory, len: usize, bytes: &[u8]) -> (DmaBuffer, Segment) {
    let b = mem.alloc(len, 512).expect("dma");
    b.slice().write_bytes(0, bytes).unwrap();
    let seg = Segment::new(b.device_addr(), len as u32);
    (b, seg)
}

/// A DMA buffer's bytes.
pub fn contents(b: &DmaBuffer) -> Vec<u8> {
    let mut v = vec![0u8; b.len()];
    b.slice().read_bytes(0, &mut v).unwrap();
    v
}
