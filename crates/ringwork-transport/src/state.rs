//! The transport-independent half of every device-side transport: the
//! device status state machine and feature negotiation (VIRTIO 1.4 §2.1,
//! §2.2, §2.4, §3.1, §3.4), queue enable/reset, notifications, and
//! configuration-space access with the generation counter (§2.5).
//!
//! Transports ([`crate::mmio::MmioDevice`], [`crate::pci::PciDevice`]) decode
//! register accesses and call [`DeviceCore`]; a VMM with its own transport
//! can do the same.
//!
//! # Trust and panic contract
//! Every value comes from the driver and is checked. A write the spec
//! forbids is ignored (or, for FEATURES_OK, refused by leaving the bit
//! clear) and recorded in the [`ViolationLog`]; a failure of the device
//! sets DEVICE_NEEDS_RESET. Nothing here panics on driver input.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use ringwork_queue::{QueueFeatures, RingFormat};
use ringwork_spec::features::{check_dependencies, without_unsatisfied};
use ringwork_spec::features::{
    is_reserved_for_future, FeatureSet, TRANSPORT_RULES, VIRTIO_F_ADMIN_VQ, VIRTIO_F_ANY_LAYOUT,
    VIRTIO_F_NOTIFY_ON_EMPTY, VIRTIO_F_NOTIF_CONFIG_DATA, VIRTIO_F_RING_PACKED,
    VIRTIO_F_RING_RESET, VIRTIO_F_SR_IOV, VIRTIO_F_SUSPEND, VIRTIO_F_UNUSED, VIRTIO_F_VERSION_1,
};
use ringwork_spec::ring::notify::NotificationData;
use ringwork_spec::status::{
    VIRTIO_CONFIG_S_ACKNOWLEDGE as ACK, VIRTIO_CONFIG_S_DRIVER as DRIVER,
    VIRTIO_CONFIG_S_DRIVER_OK as DRIVER_OK, VIRTIO_CONFIG_S_FAILED as FAILED,
    VIRTIO_CONFIG_S_FEATURES_OK as FEATURES_OK, VIRTIO_CONFIG_S_NEEDS_RESET as NEEDS_RESET,
    VIRTIO_CONFIG_S_SUSPEND as SUSPEND,
};

use crate::device_model::{Activation, VirtioDevice};
use crate::queue_regs::QueueRegs;
use crate::signal::{Shared, Signals};
use crate::violation::{Violation, ViolationLog};

/// Which transport hosts the device: decides which transport feature bits
/// can be offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    /// Virtio over MMIO (§4.2).
    Mmio,
    /// Virtio over PCI (§4.1).
    Pci,
}

/// Status bits the driver writes (the others are set by the device).
const DRIVER_BITS: u8 = ACK | DRIVER | FEATURES_OK | DRIVER_OK | FAILED;

/// The device status state machine and everything transports share. See the
/// [module docs](self).
pub struct DeviceCore<D> {
    device: D,
    shared: Arc<Shared>,
    kind: TransportKind,
    offered: FeatureSet,
    driver_features: FeatureSet,
    negotiated: Option<FeatureSet>,
    legacy: bool,
    queues: Vec<QueueRegs>,
    log: ViolationLog,
}

impl<D: VirtioDevice> DeviceCore<D> {
    pub(crate) fn new(device: D, kind: TransportKind, shared: Arc<Shared>, legacy: bool) -> Self {
        let queues = device
            .queue_max_sizes()
            .iter()
            .enumerate()
            .map(|(i, &max)| QueueRegs::new(i as u16, max))
            .collect();
        // §2.2.2: never offer a feature whose dependencies are not offered.
        let offered = without_unsatisfied(
            without_unsatisfied(
                Self::filter_offer(device.device_features(), kind),
                TRANSPORT_RULES,
            ),
            device.feature_rules(),
        );
        Self {
            device,
            shared,
            kind,
            offered,
            driver_features: FeatureSet::EMPTY,
            negotiated: None,
            legacy,
            queues,
            log: ViolationLog::default(),
        }
    }

    /// What a non-legacy interface offers: the device's bits, without those
    /// this transport or ringwork cannot support (§2.2.2, §6.2), with
    /// VERSION_1 (§6.2: a device MUST offer it).
    fn filter_offer(features: FeatureSet, kind: TransportKind) -> FeatureSet {
        let mut f = features;
        let unsupported: FeatureSet = f
            .iter()
            .filter(|&b| is_reserved_for_future(b))
            .fold(FeatureSet::EMPTY, |s, b| s.with(b));
        f = f.difference(unsupported);
        // No SR-IOV capability and no administration virtqueues here; the
        // legacy-only bits do not exist on a 1.x interface.
        f.remove_all(&[
            VIRTIO_F_SR_IOV,
            VIRTIO_F_ADMIN_VQ,
            VIRTIO_F_NOTIFY_ON_EMPTY,
            VIRTIO_F_ANY_LAYOUT,
            VIRTIO_F_UNUSED,
        ]);
        if kind == TransportKind::Mmio {
            // MMIO has no queue_notif_config_data register.
            f.remove(VIRTIO_F_NOTIF_CONFIG_DATA);
        }
        f.with(VIRTIO_F_VERSION_1)
    }

    /// The device.
    pub fn device(&self) -> &D {
        &self.device
    }

    /// The device, mutably (for the VMM; the transport's rules still hold).
    pub fn device_mut(&mut self) -> &mut D {
        &mut self.device
    }

    /// A handle for notifying the driver (what the device gets at
    /// activation); the VMM may hold one too.
    pub fn signals(&self) -> Signals {
        Signals {
            shared: self.shared.clone(),
        }
    }

    /// The violations recorded so far.
    pub fn violations(&self) -> &ViolationLog {
        &self.log
    }

    /// Records a violation (for transports built on this core).
    pub fn record(&mut self, v: Violation) {
        self.log.record(v);
    }

    /// The hosting transport.
    pub fn kind(&self) -> TransportKind {
        self.kind
    }

    /// The device status.
    pub fn status(&self) -> u8 {
        self.shared.status()
    }

    /// Whether the driver uses the legacy interface.
    pub fn is_legacy(&self) -> bool {
        self.legacy
    }

    /// Switches between the legacy and the modern interface (a transitional
    /// PCI device, when a reset driver starts using the other one).
    pub fn set_legacy(&mut self, legacy: bool) {
        self.legacy = legacy;
    }

    /// Features offered on the current interface. A legacy interface offers
    /// bits 0..31 only, with VIRTIO_F_ANY_LAYOUT (§6.3: transitional devices
    /// MUST offer it).
    pub fn offered(&self) -> FeatureSet {
        if self.legacy {
            let low = self.offered.word(0);
            FeatureSet::from_words([low, 0, 0, 0]).with(VIRTIO_F_ANY_LAYOUT)
        } else {
            self.offered
        }
    }

    /// `DeviceFeatures` for window `select` (bits `select*32 ..+31`).
    pub fn device_features_word(&self, select: u32) -> u32 {
        self.offered().word(select)
    }

    /// `DriverFeatures` as written, for window `select` (PCI lets the driver
    /// read it back, §4.1.4.3.1).
    pub fn driver_features_word(&self, select: u32) -> u32 {
        self.driver_features.word(select)
    }

    /// A driver write of feature window `select`. Ignored (and recorded)
    /// after FEATURES_OK or DRIVER_OK.
    pub fn write_driver_features_word(&mut self, select: u32, value: u32) {
        if self.status() & (FEATURES_OK | DRIVER_OK) != 0 {
            self.log.record(Violation::FeaturesAfterFeaturesOk);
            return;
        }
        // Windows beyond the 128 representable bits hold no feature: only
        // non-zero writes there are worth noting.
        if !self.driver_features.set_word(select, value) && value != 0 {
            self.log.record(Violation::FeatureWindow { select, value });
        }
    }

    /// The features both sides agreed on, once FEATURES_OK was accepted (or
    /// a legacy device was activated).
    pub fn negotiated(&self) -> Option<FeatureSet> {
        self.negotiated
    }

    fn negotiated_has(&self, bit: u32) -> bool {
        self.negotiated.is_some_and(|f| f.contains(bit))
    }

    /// A driver write of the device status (§2.1, §3.1, §3.4). 0 resets.
    pub fn write_status(&mut self, value: u8) {
        if value == 0 {
            self.reset();
            return;
        }
        let old = self.status();
        if old & SUSPEND != 0 {
            self.write_status_suspended(old, value);
            return;
        }
        let cleared = old & DRIVER_BITS & !value;
        if cleared != 0 {
            self.log.record(Violation::StatusCleared { cleared });
        }
        let mut new = old | (value & DRIVER_BITS);
        let added = new & !old;
        if added & FEATURES_OK != 0 {
            if self.legacy {
                // Legacy interfaces have no FEATURES_OK (§3.1.2).
                new &= !FEATURES_OK;
            } else if new & (ACK | DRIVER) != ACK | DRIVER {
                self.log.record(Violation::StatusOrder {
                    bit: FEATURES_OK,
                    status: old,
                });
                new &= !FEATURES_OK;
            } else if let Err(v) = self.check_features() {
                self.log.record(v);
                new &= !FEATURES_OK;
            } else {
                self.negotiated = Some(self.driver_features);
            }
        }
        if added & DRIVER_OK != 0 && !self.legacy && new & FEATURES_OK == 0 {
            self.log.record(Violation::StatusOrder {
                bit: DRIVER_OK,
                status: old,
            });
            new &= !DRIVER_OK;
        }
        self.store_status(new);
        if new & !old & DRIVER_OK != 0 && !self.shared.active.load(Ordering::Acquire) {
            self.activate();
        }
        if value & SUSPEND != 0 {
            self.suspend();
        }
    }

    /// Stores a new status, keeping DEVICE_NEEDS_RESET if a device thread
    /// set it meanwhile (only a reset clears it).
    fn store_status(&self, new: u8) {
        let _ = self
            .shared
            .status
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |cur| {
                Some(new | (cur & NEEDS_RESET))
            });
    }

    /// Status writes while suspended: DRIVER_OK resumes (§3.4); FAILED is
    /// kept; the rest is ignored.
    fn write_status_suspended(&mut self, old: u8, value: u8) {
        if value & FAILED != 0 {
            self.shared.status.fetch_or(FAILED, Ordering::AcqRel);
        }
        if value & DRIVER_OK == 0 {
            return;
        }
        match self.device.resume() {
            Ok(()) => {
                let s = (self.status() & !SUSPEND) | DRIVER_OK;
                self.store_status(s);
                self.shared.flush_deferred_config();
            }
            Err(e) => {
                self.log.record(Violation::Device(e));
                self.shared.set_needs_reset();
            }
        }
        let _ = old;
    }

    /// SUSPEND set by the driver: honoured only when negotiated on a fully
    /// initialized device (§3.4.2: otherwise ignored).
    fn suspend(&mut self) {
        let s = self.status();
        if !self.negotiated_has(VIRTIO_F_SUSPEND)
            || s & DRIVER_OK == 0
            || !self.shared.active.load(Ordering::Acquire)
        {
            return;
        }
        match self.device.suspend() {
            Ok(()) => {
                let s = (self.status() & !DRIVER_OK) | SUSPEND;
                self.store_status(s);
            }
            Err(e) => {
                self.log.record(Violation::Device(e));
                self.shared.set_needs_reset();
            }
        }
    }

    /// FEATURES_OK checks (§2.2.1, §2.2.2, §6): offered bits only, VERSION_1
    /// accepted, dependencies satisfied, and the device agrees.
    fn check_features(&mut self) -> Result<(), Violation> {
        let f = self.driver_features;
        let unoffered = f.difference(self.offered());
        if !unoffered.is_empty() {
            return Err(Violation::UnofferedFeatures { unoffered });
        }
        if !f.contains(VIRTIO_F_VERSION_1) {
            return Err(Violation::MissingVersion1);
        }
        check_dependencies(&f, TRANSPORT_RULES).map_err(Violation::FeatureDependency)?;
        check_dependencies(&f, self.device.feature_rules())
            .map_err(Violation::FeatureDependency)?;
        self.device
            .accept_features(f)
            .map_err(Violation::FeaturesRefused)
    }

    /// The ring format and queue features the negotiated set implies.
    pub fn ring_format(&self) -> (RingFormat, QueueFeatures) {
        let f = self.negotiated.unwrap_or(FeatureSet::EMPTY);
        let (format, qf) = QueueFeatures::from_bits(f.as_u64_lossy());
        if self.legacy {
            (RingFormat::Split, qf)
        } else {
            (format, qf)
        }
    }

    fn activate(&mut self) {
        if self.legacy && self.negotiated.is_none() {
            // Legacy: features are final at first use (§3.1.2).
            let offered = self.offered();
            let unoffered = self.driver_features.difference(offered);
            if !unoffered.is_empty() {
                self.log.record(Violation::UnofferedFeatures { unoffered });
            }
            self.negotiated = Some(self.driver_features.intersection(offered));
        }
        let Some(features) = self.negotiated else {
            return;
        };
        let (format, qf) = self.ring_format();
        let mut queues = Vec::new();
        for (i, q) in self.queues.iter().enumerate() {
            if q.ready {
                match q.setup(i as u16, format, qf) {
                    Ok(s) => queues.push(s),
                    Err(v) => {
                        self.log.record(v);
                        self.shared.set_needs_reset();
                        return;
                    }
                }
            }
        }
        self.shared.active.store(true, Ordering::Release);
        let activation = Activation {
            features,
            legacy: self.legacy,
            queues,
        };
        let signals = self.signals();
        if let Err(e) = self.device.activate(activation, signals) {
            self.shared.active.store(false, Ordering::Release);
            self.log.record(Violation::Device(e));
            self.shared.set_needs_reset();
        }
    }

    /// Device reset (§2.4): stops the device, returns every register to its
    /// reset value, and presents status 0 last, as the completion.
    pub fn reset(&mut self) {
        self.shared.active.store(false, Ordering::Release);
        self.device.reset();
        for (i, q) in self.queues.iter_mut().enumerate() {
            q.reset(i as u16);
        }
        self.driver_features = FeatureSet::EMPTY;
        self.negotiated = None;
        self.shared.config_deferred.store(false, Ordering::Release);
        self.shared.clear_isr(u32::MAX);
        self.shared.status.store(0, Ordering::Release);
    }

    /// Number of queues.
    pub fn queue_count(&self) -> usize {
        self.queues.len()
    }

    /// Queue `index`'s registers, or `None` (recorded) when it does not exist.
    pub fn queue(&mut self, index: u32) -> Option<&QueueRegs> {
        if index as usize >= self.queues.len() {
            self.log.record(Violation::NoSuchQueue { queue: index });
            return None;
        }
        self.queues.get(index as usize)
    }

    /// Queue `index`'s registers for a configuration write: `None`
    /// (recorded) when it does not exist or is enabled (§4.2.2.2,
    /// §4.1.4.3.2: not while the queue is enabled).
    pub fn queue_config_mut(&mut self, index: u32) -> Option<&mut QueueRegs> {
        match self.queues.get(index as usize) {
            None => {
                self.log.record(Violation::NoSuchQueue { queue: index });
                None
            }
            Some(q) if q.ready => {
                self.log.record(Violation::QueueBusy {
                    queue: index as u16,
                });
                None
            }
            Some(_) => self.queues.get_mut(index as usize),
        }
    }

    /// Queue `index`'s registers, unchecked beyond existence (vector
    /// registers may change while the queue runs).
    pub fn queue_regs_mut(&mut self, index: u32) -> Option<&mut QueueRegs> {
        if index as usize >= self.queues.len() {
            self.log.record(Violation::NoSuchQueue { queue: index });
        }
        self.queues.get_mut(index as usize)
    }

    /// Every queue's registers.
    pub fn queues(&self) -> &[QueueRegs] {
        &self.queues
    }

    /// The driver enables queue `index` (`QueueReady`/`queue_enable` = 1, or
    /// a legacy queue address). An invalid configuration is refused (the
    /// queue stays disabled) and recorded; on an active device the device
    /// is asked to start the queue (re-enable, §2.6.1.2), and a refusal
    /// sets DEVICE_NEEDS_RESET.
    pub fn enable_queue(&mut self, index: u32) {
        let Some(q) = self.queues.get(index as usize).copied() else {
            self.log.record(Violation::NoSuchQueue { queue: index });
            return;
        };
        if q.ready {
            return;
        }
        let i = index as u16;
        if !self.legacy && self.negotiated.is_none() {
            self.log
                .record(Violation::QueueBeforeFeaturesOk { queue: i });
            return;
        }
        let (format, qf) = self.ring_format();
        let setup = match q.setup(i, format, qf) {
            Ok(s) => s,
            Err(v) => {
                self.log.record(v);
                return;
            }
        };
        self.queues[index as usize].ready = true;
        if self.shared.active.load(Ordering::Acquire) {
            if let Err(e) = self.device.queue_enable(setup) {
                self.queues[index as usize].ready = false;
                self.log.record(Violation::Device(e));
                self.shared.set_needs_reset();
            }
        }
    }

    /// The driver stops using queue `index` (MMIO `QueueReady` = 0, legacy
    /// queue address 0): the device stops it and its registers return to
    /// their reset values.
    pub fn disable_queue(&mut self, index: u32) {
        let Some(q) = self.queues.get(index as usize).copied() else {
            self.log.record(Violation::NoSuchQueue { queue: index });
            return;
        };
        if q.ready && self.shared.active.load(Ordering::Acquire) {
            self.device.queue_reset(index as u16);
        }
        self.queues[index as usize].reset(index as u16);
    }

    /// Virtqueue reset (§2.6.1.1, VIRTIO_F_RING_RESET): the device stops
    /// the queue and forgets its state; the registers return to their reset
    /// values (enable 0, size = max). Completes before returning, so
    /// `queue_reset` reads 0 right after.
    pub fn reset_queue(&mut self, index: u32) {
        if index as usize >= self.queues.len() {
            self.log.record(Violation::NoSuchQueue { queue: index });
            return;
        }
        if !self.negotiated_has(VIRTIO_F_RING_RESET) {
            self.log.record(Violation::RingResetNotNegotiated {
                queue: index as u16,
            });
            return;
        }
        self.disable_queue(index);
    }

    /// Whether `VIRTIO_F_RING_PACKED` was negotiated.
    pub fn packed(&self) -> bool {
        !self.legacy && self.negotiated_has(VIRTIO_F_RING_PACKED)
    }

    /// Whether a negotiated feature is set.
    pub fn has_feature(&self, bit: u32) -> bool {
        self.negotiated_has(bit)
    }

    /// An available buffer notification for `queue` (already decoded by the
    /// transport). Ignored (and recorded) unless the device is active, not
    /// suspended, and the queue enabled. On a legacy interface, the first
    /// notification activates the device (§3.1.2: legacy drivers may use
    /// the device before DRIVER_OK).
    pub fn notify(&mut self, queue: u32, data: Option<NotificationData>) {
        if self.legacy && !self.shared.active.load(Ordering::Acquire) && self.status() & DRIVER != 0
        {
            self.activate();
        }
        let runnable = self.shared.active.load(Ordering::Acquire)
            && self.status() & SUSPEND == 0
            && self.queues.get(queue as usize).is_some_and(|q| q.ready);
        if !runnable {
            self.log.record(Violation::NotifyNotReady { queue });
            return;
        }
        self.device.queue_notify(queue as u16, data);
    }

    /// The configuration generation (§2.5), bumped first if the
    /// configuration changed since the driver last looked.
    pub fn config_generation(&self) -> u32 {
        self.shared.generation()
    }

    fn config_in_range(&mut self, offset: u64, len: usize) -> Option<usize> {
        let size = self.device.config_len();
        match (offset as usize).checked_add(len) {
            Some(end) if offset <= usize::MAX as u64 && end <= size => Some(offset as usize),
            _ => {
                self.log
                    .record(Violation::ConfigOutOfRange { offset, len, size });
                None
            }
        }
    }

    /// A driver read of the device configuration space; bytes outside it
    /// read as 0 (recorded).
    pub fn read_config(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        // A changed configuration is visible in the generation from now on.
        let _ = self.shared.generation();
        if let Some(off) = self.config_in_range(offset, data.len()) {
            self.device.read_config(off, data);
        }
    }

    /// A driver write of the device configuration space; ignored (recorded)
    /// outside it or while suspended (§3.4.2).
    pub fn write_config(&mut self, offset: u64, data: &[u8]) {
        if self.status() & SUSPEND != 0 {
            self.log.record(Violation::ConfigWriteSuspended);
            return;
        }
        if let Some(off) = self.config_in_range(offset, data.len()) {
            self.device.write_config(off, data);
        }
    }

    /// Clears interrupt status bits (MMIO `InterruptACK`, PCI ISR read);
    /// returns the bits set before.
    pub fn ack_interrupts(&self, bits: u32) -> u32 {
        self.shared.clear_isr(bits)
    }

    /// The interrupt status bits now set.
    pub fn interrupt_status(&self) -> u32 {
        self.shared.isr.load(Ordering::Acquire)
    }
}

impl<D: core::fmt::Debug> core::fmt::Debug for DeviceCore<D> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DeviceCore")
            .field("device", &self.device)
            .field("kind", &self.kind)
            .field("status", &self.shared.status())
            .field("offered", &self.offered)
            .field("negotiated", &self.negotiated)
            .field("legacy", &self.legacy)
            .field("queues", &self.queues)
            .finish()
    }
}
