//! The device model: the one trait a virtio device implements, hosted by
//! every transport (MMIO and PCI here, vhost-user in its own crate).
//!
//! A transport owns the register file, the status/feature state machine
//! ([`crate::DeviceCore`]) and the interrupt plumbing; the device owns its
//! configuration space and its queues. The transport calls the device at the
//! points the spec defines: feature acceptance at FEATURES_OK (VIRTIO 1.4
//! §3.1.1), activation at DRIVER_OK, available-buffer notifications (§2.9),
//! virtqueue reset and re-enable (§2.6.1), suspend (§3.4), device reset
//! (§2.4). The device talks back through [`Signals`]: used-buffer and
//! configuration-change notifications, and "needs reset" (§2.1.2).
//!
//! # Trust and panic contract
//! The transport validates everything the driver wrote before it reaches the
//! device: configuration accesses are inside [`VirtioDevice::config_len`],
//! queue indices are below `queue_max_sizes().len()`, queue sizes and ring
//! addresses are checked against the negotiated ring format. The ring
//! *contents* are not checked here; that is `ringwork-queue`'s job. A device
//! that cannot do what is asked returns an error, and the transport sets
//! DEVICE_NEEDS_RESET; nothing here panics on driver input.

use alloc::vec::Vec;

use ringwork_queue::{QueueAddresses, QueueFeatures, RingFormat};
use ringwork_spec::device_id::DeviceType;
use ringwork_spec::features::FeatureRule;
use ringwork_spec::features::FeatureSet;
use ringwork_spec::ring::notify::NotificationData;

use crate::signal::Signals;

/// A virtio device, as every transport sees it.
///
/// Implementations are the device types (`ringwork-device`, or a VMM's own).
/// Methods are called from the thread that runs the transport's register
/// model; a device with worker threads hands them [`Signals`] (which is
/// `Send + Sync`) from [`VirtioDevice::activate`].
pub trait VirtioDevice {
    /// The device type (VIRTIO 1.4 §5, "Device Types").
    fn device_type(&self) -> DeviceType;

    /// Every feature the device offers, device-type bits and transport bits
    /// (`VIRTIO_F_VERSION_1`, `VIRTIO_F_RING_PACKED`, `VIRTIO_F_EVENT_IDX`,
    /// ...) alike. The transport removes the bits it cannot support
    /// (§2.2.2: a device MUST NOT offer what it could not handle) and adds
    /// `VIRTIO_F_VERSION_1` on non-legacy interfaces (§6.2).
    fn device_features(&self) -> FeatureSet;

    /// The device type's feature dependency rules (for example
    /// `ringwork_spec::blk::BLK_FEATURE_RULES`), checked when the driver
    /// sets FEATURES_OK.
    fn feature_rules(&self) -> &'static [FeatureRule] {
        &[]
    }

    /// Maximum size of each queue; the length is the number of queues, and a
    /// 0 entry is a queue that is not available.
    fn queue_max_sizes(&self) -> &[u16];

    /// Size in bytes of the device-specific configuration space.
    fn config_len(&self) -> usize;

    /// Reads `data.len()` bytes of configuration space at `offset`. The
    /// transport guarantees `offset + data.len() <= config_len()`.
    ///
    /// Multi-byte fields are little-endian, except on a legacy interface
    /// where the device type says otherwise (`legacy` in [`Activation`]).
    fn read_config(&self, offset: usize, data: &mut [u8]);

    /// A driver write of `data` at `offset` (in range, as for reads). The
    /// default ignores writes (read-only configuration spaces).
    fn write_config(&mut self, offset: usize, data: &[u8]) {
        let _ = (offset, data);
    }

    /// The device's last word on a feature set that passed the transport's
    /// checks (offered bits only, dependencies satisfied, VERSION_1 rules).
    /// `Err` makes the transport refuse FEATURES_OK (§2.2.2).
    fn accept_features(&mut self, features: FeatureSet) -> Result<(), DeviceError> {
        let _ = features;
        Ok(())
    }

    /// Starts the device: called when the driver sets DRIVER_OK (or, on a
    /// legacy interface, when the driver first uses the device), with the
    /// negotiated features and every queue the driver enabled. `signals`
    /// stays valid until [`VirtioDevice::reset`].
    fn activate(&mut self, activation: Activation, signals: Signals) -> Result<(), DeviceError>;

    /// Stops the device and returns it to its initial state (§2.4). When
    /// this returns, the device no longer touches guest memory and no longer
    /// uses the [`Signals`] it was given.
    fn reset(&mut self);

    /// An available buffer notification for `queue` (an enabled queue of an
    /// active device). `data` is the decoded notification data when
    /// VIRTIO_F_NOTIFICATION_DATA was negotiated (§2.9).
    fn queue_notify(&mut self, queue: u16, data: Option<NotificationData>);

    /// Stops one queue and forgets its state (virtqueue reset, §2.6.1.1, or
    /// an MMIO driver writing 0 to `QueueReady`). When this returns the
    /// device no longer executes requests from the queue nor notifies for
    /// it. Called only for a queue of an active device.
    fn queue_reset(&mut self, queue: u16) {
        let _ = queue;
    }

    /// Starts one queue on an already active device: a queue re-enabled
    /// after a virtqueue reset (§2.6.1.2), with possibly new parameters the
    /// device must observe. The default refuses, which makes the transport
    /// set DEVICE_NEEDS_RESET; devices offering `VIRTIO_F_RING_RESET`
    /// implement it.
    fn queue_enable(&mut self, queue: QueueSetup) -> Result<(), DeviceError> {
        let _ = queue;
        Err(DeviceError::Unsupported("re-enabling a queue"))
    }

    /// Suspends the device (VIRTIO_F_SUSPEND, §3.4): stop consuming
    /// buffers, finish those in flight, send their used notifications, then
    /// return. `Err` makes the transport set DEVICE_NEEDS_RESET.
    fn suspend(&mut self) -> Result<(), DeviceError> {
        Err(DeviceError::Unsupported("suspend"))
    }

    /// Resumes a suspended device. `Err` makes the transport set
    /// DEVICE_NEEDS_RESET.
    fn resume(&mut self) -> Result<(), DeviceError> {
        Err(DeviceError::Unsupported("resume"))
    }

    /// Shared memory regions (§2.10), by id. The transport places them.
    fn shm_regions(&self) -> &[ShmRegion] {
        &[]
    }
}

/// What the device is started with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Activation {
    /// The negotiated features.
    pub features: FeatureSet,
    /// Whether the driver uses the legacy interface (MMIO version 1, or the
    /// PCI legacy I/O BAR): guest-endian configuration, split rings in the
    /// legacy layout, no FEATURES_OK.
    pub legacy: bool,
    /// Every queue the driver enabled, in index order.
    pub queues: Vec<QueueSetup>,
}

/// One enabled queue, as the driver configured it; everything a
/// `ringwork_queue::DeviceQueue` needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueSetup {
    /// The queue index.
    pub index: u16,
    /// The size the driver chose (validated for `format`).
    pub size: u16,
    /// Split or packed, from the negotiated features.
    pub format: RingFormat,
    /// The negotiated ring features.
    pub features: QueueFeatures,
    /// Ring addresses (alignment validated for `format`).
    pub addresses: QueueAddresses,
}

/// A shared memory region a device exposes (§2.10).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShmRegion {
    /// The region id (`shmid`).
    pub id: u8,
    /// Length in bytes.
    pub len: u64,
}

/// A device could not do what the transport asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceError {
    /// The device does not implement the operation.
    #[error("the device does not support {0}")]
    Unsupported(&'static str),
    /// The request is valid for the spec but this device refuses it.
    #[error("refused: {0}")]
    Refused(&'static str),
    /// A queue's configuration is unusable for this device.
    #[error("queue {queue}: {reason}")]
    Queue {
        /// The queue index.
        queue: u16,
        /// What is wrong.
        reason: &'static str,
    },
    /// The backend failed (I/O error, resource exhaustion).
    #[error("backend failure: {0}")]
    Backend(&'static str),
}
