//! Fakes of the other side, for tests (`test-utils` feature):
//! [`Loopback`], a driver-side [`RegisterAccess`] that forwards to a
//! device-side [`BusDevice`], and [`EchoDevice`], a device that answers
//! every request by copying what it read into what it may write.

use alloc::vec;
use alloc::vec::Vec;
use core::cell::RefCell;

use ringwork_queue::{DeviceQueue, GuestMemory};
use ringwork_spec::device_id::{DeviceType, VIRTIO_ID_RNG};
use ringwork_spec::features::{
    FeatureRule, FeatureSet, VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC, VIRTIO_F_IN_ORDER,
    VIRTIO_F_NOTIFICATION_DATA, VIRTIO_F_RING_PACKED, VIRTIO_F_RING_RESET, VIRTIO_F_SUSPEND,
};
use ringwork_spec::ring::notify::NotificationData;

use crate::device_model::{Activation, DeviceError, QueueSetup, ShmRegion, VirtioDevice};
use crate::driver::RegisterAccess;
use crate::signal::Signals;
use crate::BusDevice;

pub use crate::pci::loopback::{PciLoopback, PciRegion};

/// A driver-side register window that forwards every access to a
/// device-side model at `base` + offset: the driver transports and the
/// device models meet without a VM.
#[derive(Debug)]
pub struct Loopback<'a, T> {
    target: &'a RefCell<T>,
    base: u64,
}

impl<'a, T: BusDevice> Loopback<'a, T> {
    /// A window onto `target` starting at its offset 0.
    pub fn new(target: &'a RefCell<T>) -> Self {
        Self { target, base: 0 }
    }

    /// A window onto `target` starting at its offset `base`.
    pub fn at(target: &'a RefCell<T>, base: u64) -> Self {
        Self { target, base }
    }

    fn rd<const N: usize>(&self, offset: usize) -> [u8; N] {
        let mut b = [0u8; N];
        self.target
            .borrow_mut()
            .read(self.base.wrapping_add(offset as u64), &mut b);
        b
    }

    fn wr(&self, offset: usize, data: &[u8]) {
        self.target
            .borrow_mut()
            .write(self.base.wrapping_add(offset as u64), data);
    }
}

impl<T: BusDevice> RegisterAccess for Loopback<'_, T> {
    fn read8(&self, offset: usize) -> u8 {
        self.rd::<1>(offset)[0]
    }
    fn read16(&self, offset: usize) -> u16 {
        u16::from_le_bytes(self.rd(offset))
    }
    fn read32(&self, offset: usize) -> u32 {
        u32::from_le_bytes(self.rd(offset))
    }
    fn write8(&self, offset: usize, value: u8) {
        self.wr(offset, &[value]);
    }
    fn write16(&self, offset: usize, value: u16) {
        self.wr(offset, &value.to_le_bytes());
    }
    fn write32(&self, offset: usize, value: u32) {
        self.wr(offset, &value.to_le_bytes());
    }
}

/// What happened to an [`EchoDevice`], in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EchoEvent {
    /// Activated with these features and queues.
    Activated(Activation),
    /// Reset.
    Reset,
    /// A notification for a queue.
    Notified(u16, Option<NotificationData>),
    /// A queue was reset.
    QueueReset(u16),
    /// A queue was (re-)enabled on the active device.
    QueueEnabled(QueueSetup),
    /// Suspended.
    Suspended,
    /// Resumed.
    Resumed,
    /// The driver wrote configuration space.
    ConfigWritten(usize, Vec<u8>),
}

/// A test device: every chain is answered by copying its readable bytes
/// into its writable bytes. Offers the ring features (packed, event idx,
/// indirect, in-order, notification data, ring reset, suspend) and has a
/// 16-byte configuration space: a 32-bit magic, a 64-bit counter the
/// test can change with [`EchoDevice::set_counter`], and 4 writable bytes.
pub struct EchoDevice<M> {
    mem: M,
    queues: Vec<u16>,
    features: FeatureSet,
    config: [u8; 16],
    active: Vec<Option<DeviceQueue>>,
    signals: Option<Signals>,
    /// Everything the transport asked of the device.
    pub events: Vec<EchoEvent>,
    /// Requests completed.
    pub completed: u64,
    /// Make the next `activate` fail.
    pub fail_activate: bool,
    /// Make `accept_features` refuse.
    pub refuse_features: bool,
    /// Make `suspend` fail.
    pub fail_suspend: bool,
    rules: &'static [FeatureRule],
    shm: Vec<ShmRegion>,
}

impl<M: GuestMemory> EchoDevice<M> {
    /// The 32-bit value at configuration offset 0.
    pub const CONFIG_MAGIC: u32 = 0xec40_0001;

    /// An echo device over `mem` with `queues` queues of at most `max_size`
    /// entries.
    pub fn new(mem: M, queues: u16, max_size: u16) -> Self {
        let mut config = [0u8; 16];
        config[..4].copy_from_slice(&Self::CONFIG_MAGIC.to_le_bytes());
        Self {
            mem,
            queues: vec![max_size; queues.into()],
            features: FeatureSet::from_bits(&[
                VIRTIO_F_RING_PACKED,
                VIRTIO_F_EVENT_IDX,
                VIRTIO_F_INDIRECT_DESC,
                VIRTIO_F_IN_ORDER,
                VIRTIO_F_NOTIFICATION_DATA,
                VIRTIO_F_RING_RESET,
                VIRTIO_F_SUSPEND,
                0, // a device-type bit, so the device-specific range is used
            ]),
            config,
            active: Vec::new(),
            signals: None,
            events: Vec::new(),
            completed: 0,
            fail_activate: false,
            refuse_features: false,
            fail_suspend: false,
            rules: &[],
            shm: Vec::new(),
        }
    }

    /// Replaces the offered features.
    pub fn with_features(mut self, features: FeatureSet) -> Self {
        self.features = features;
        self
    }

    /// Gives the device feature dependency rules (checked at FEATURES_OK).
    pub fn with_rules(mut self, rules: &'static [FeatureRule]) -> Self {
        self.rules = rules;
        self
    }

    /// Gives the device shared memory regions.
    pub fn with_shm(mut self, regions: &[ShmRegion]) -> Self {
        self.shm = regions.to_vec();
        self
    }

    /// Changes the 64-bit counter at configuration offset 4 and signals a
    /// configuration change (if activated; the generation changes anyway
    /// through `signals`).
    pub fn set_counter(&mut self, value: u64, signals: &Signals) {
        self.config[4..12].copy_from_slice(&value.to_le_bytes());
        signals.config_changed();
    }

    /// Changes only the high half of the counter, without signalling: for
    /// tests that interleave a change with a driver's read.
    pub fn poke_counter_high(&mut self, value: u32) {
        self.config[8..12].copy_from_slice(&value.to_le_bytes());
    }

    fn serve(&mut self, queue: u16) {
        let Some(Some(q)) = self.active.get_mut(queue as usize) else {
            return;
        };
        let mut buf = [0u8; 256];
        while let Ok(Some(chain)) = q.pop(&self.mem) {
            let mut total = Vec::new();
            let mut r = chain.reader(&self.mem);
            loop {
                match r.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => total.extend_from_slice(&buf[..n]),
                }
            }
            let mut w = chain.writer(&self.mem);
            let _ = w.write(&total);
            let written = w.bytes_written();
            if q.add_used(&self.mem, chain.token(), written).is_err() {
                break;
            }
            self.completed += 1;
        }
        if q.needs_notification(&self.mem).unwrap_or(false) {
            if let Some(s) = &self.signals {
                s.used_buffer(queue);
            }
        }
    }

    fn start(&mut self, setup: &QueueSetup) -> Result<(), DeviceError> {
        let q = DeviceQueue::new(setup.format, setup.size, setup.addresses, setup.features)
            .map_err(|_| DeviceError::Queue {
                queue: setup.index,
                reason: "unusable ring",
            })?;
        let i = setup.index as usize;
        if self.active.len() <= i {
            self.active.resize_with(i + 1, || None);
        }
        self.active[i] = Some(q);
        Ok(())
    }
}

impl<M: GuestMemory> VirtioDevice for EchoDevice<M> {
    fn device_type(&self) -> DeviceType {
        DeviceType::from(VIRTIO_ID_RNG)
    }
    fn device_features(&self) -> FeatureSet {
        self.features
    }
    fn feature_rules(&self) -> &'static [FeatureRule] {
        self.rules
    }
    fn shm_regions(&self) -> &[ShmRegion] {
        &self.shm
    }
    fn queue_max_sizes(&self) -> &[u16] {
        &self.queues
    }
    fn config_len(&self) -> usize {
        self.config.len()
    }
    fn read_config(&self, offset: usize, data: &mut [u8]) {
        data.copy_from_slice(&self.config[offset..offset + data.len()]);
    }
    fn write_config(&mut self, offset: usize, data: &[u8]) {
        // Only the last 4 bytes are writable.
        if offset >= 12 {
            self.config[offset..offset + data.len()].copy_from_slice(data);
        }
        self.events
            .push(EchoEvent::ConfigWritten(offset, data.to_vec()));
    }
    fn accept_features(&mut self, _features: FeatureSet) -> Result<(), DeviceError> {
        if self.refuse_features {
            Err(DeviceError::Refused("test refuses features"))
        } else {
            Ok(())
        }
    }
    fn activate(&mut self, activation: Activation, signals: Signals) -> Result<(), DeviceError> {
        self.events.push(EchoEvent::Activated(activation.clone()));
        if self.fail_activate {
            return Err(DeviceError::Backend("test activation failure"));
        }
        for q in &activation.queues {
            self.start(q)?;
        }
        self.signals = Some(signals);
        Ok(())
    }
    fn reset(&mut self) {
        self.events.push(EchoEvent::Reset);
        self.active.clear();
        self.signals = None;
    }
    fn queue_notify(&mut self, queue: u16, data: Option<NotificationData>) {
        self.events.push(EchoEvent::Notified(queue, data));
        self.serve(queue);
    }
    fn queue_reset(&mut self, queue: u16) {
        self.events.push(EchoEvent::QueueReset(queue));
        if let Some(slot) = self.active.get_mut(queue as usize) {
            *slot = None;
        }
    }
    fn queue_enable(&mut self, queue: QueueSetup) -> Result<(), DeviceError> {
        self.events.push(EchoEvent::QueueEnabled(queue));
        self.start(&queue)
    }
    fn suspend(&mut self) -> Result<(), DeviceError> {
        if self.fail_suspend {
            return Err(DeviceError::Backend("test suspend failure"));
        }
        self.events.push(EchoEvent::Suspended);
        Ok(())
    }
    fn resume(&mut self) -> Result<(), DeviceError> {
        self.events.push(EchoEvent::Resumed);
        Ok(())
    }
}

impl<M> core::fmt::Debug for EchoDevice<M> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("EchoDevice")
            .field("queues", &self.queues)
            .field("completed", &self.completed)
            .finish_non_exhaustive()
    }
}
