//! What a driver did wrong, as the device-side register models record it.
//!
//! The spec rarely prescribes what a device does when the driver breaks a
//! rule; ringwork's register models ignore the offending access (or refuse
//! the status bit, or set DEVICE_NEEDS_RESET where the device can no longer
//! work), and record a [`Violation`] the VMM can log. Nothing panics.

use ringwork_spec::features::FeatureSet;
use ringwork_spec::features::FeatureViolation;

use crate::device_model::DeviceError;

/// A driver access that broke a rule of the spec. See the
/// [module docs](self).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    /// An access to an offset no register or field is at, or with a width
    /// or alignment the transport does not allow.
    #[error("bad {width}-byte {} at offset {offset:#x}", if *.write { "write" } else { "read" })]
    BadAccess {
        /// Offset within the register block.
        offset: u64,
        /// Access width in bytes.
        width: usize,
        /// Write (`true`) or read.
        write: bool,
    },
    /// A write to a register that is read-only for the driver.
    #[error("write to read-only register at offset {offset:#x}")]
    ReadOnly {
        /// Offset within the register block.
        offset: u64,
    },
    /// A read of a register that is write-only for the driver.
    #[error("read of write-only register at offset {offset:#x}")]
    WriteOnly {
        /// Offset within the register block.
        offset: u64,
    },
    /// The driver cleared a status bit without resetting (§2.1.1).
    #[error("driver cleared device status bits {cleared:#04x}")]
    StatusCleared {
        /// The bits it tried to clear (they stay set).
        cleared: u8,
    },
    /// A status bit set before the steps it follows (§3.1.1).
    #[error("status {bit:#04x} set out of order (status was {status:#04x})")]
    StatusOrder {
        /// The bit.
        bit: u8,
        /// The status before the write.
        status: u8,
    },
    /// FEATURES_OK with bits the device did not offer (§2.2.1).
    #[error("driver accepted features the device did not offer: {unoffered:?}")]
    UnofferedFeatures {
        /// The bits accepted but not offered.
        unoffered: FeatureSet,
    },
    /// FEATURES_OK without VIRTIO_F_VERSION_1 on a non-legacy interface
    /// (§6.1, §6.2).
    #[error("driver did not accept VIRTIO_F_VERSION_1")]
    MissingVersion1,
    /// FEATURES_OK with a feature whose dependencies are missing (§2.2.1).
    #[error("{0}")]
    FeatureDependency(FeatureViolation),
    /// The device refused the feature set.
    #[error("device refused the features: {0}")]
    FeaturesRefused(DeviceError),
    /// Non-zero driver features written to a window beyond bit 127, where
    /// no feature is defined.
    #[error("driver features {value:#x} written to window {select}, beyond every defined feature")]
    FeatureWindow {
        /// The window (`DriverFeaturesSel`).
        select: u32,
        /// The bits written.
        value: u32,
    },
    /// Driver features written after FEATURES_OK (§3.1.1 step 5).
    #[error("driver features written after FEATURES_OK")]
    FeaturesAfterFeaturesOk,
    /// A queue register access with an out-of-range queue selected.
    #[error("queue {queue} does not exist")]
    NoSuchQueue {
        /// The selected index.
        queue: u32,
    },
    /// A queue's configuration changed while it is enabled (§4.2.2.2,
    /// §4.1.4.3.2).
    #[error("queue {queue} configured while enabled")]
    QueueBusy {
        /// The queue index.
        queue: u16,
    },
    /// A queue enabled with an invalid size.
    #[error("queue {queue}: size {size} is not valid (max {max})")]
    QueueSize {
        /// The queue index.
        queue: u16,
        /// The size written.
        size: u16,
        /// The maximum the device presents.
        max: u16,
    },
    /// A queue enabled with a misaligned ring address.
    #[error("queue {queue}: {area} address {addr:#x} is not {align}-byte aligned")]
    QueueAlignment {
        /// The queue index.
        queue: u16,
        /// Which ring area.
        area: &'static str,
        /// The address.
        addr: u64,
        /// The required alignment.
        align: u64,
    },
    /// A queue enabled before the ring format is known (before FEATURES_OK).
    #[error("queue {queue} enabled before FEATURES_OK")]
    QueueBeforeFeaturesOk {
        /// The queue index.
        queue: u16,
    },
    /// A 0 written to `queue_enable` (PCI, §4.1.4.3.2).
    #[error("0 written to queue_enable of queue {queue}")]
    QueueDisableWrite {
        /// The queue index.
        queue: u16,
    },
    /// A queue reset without VIRTIO_F_RING_RESET negotiated.
    #[error("queue reset of queue {queue} without VIRTIO_F_RING_RESET")]
    RingResetNotNegotiated {
        /// The queue index.
        queue: u16,
    },
    /// An available buffer notification before DRIVER_OK (§3.1.1) or for a
    /// queue that is not enabled.
    #[error("notification for queue {queue} while it cannot run")]
    NotifyNotReady {
        /// The queue index (or raw notification value).
        queue: u32,
    },
    /// Reserved bits set in an interrupt acknowledge (§4.2.2.2).
    #[error("interrupt acknowledge with undefined bits {bits:#x}")]
    AckReservedBits {
        /// The undefined bits.
        bits: u32,
    },
    /// A configuration-space access outside the device's configuration.
    #[error("configuration access of {len} bytes at {offset:#x} outside the {size}-byte space")]
    ConfigOutOfRange {
        /// Offset within the configuration space.
        offset: u64,
        /// Access length.
        len: usize,
        /// Size of the space.
        size: usize,
    },
    /// A configuration write while the device is suspended (ignored, §3.4.2).
    #[error("configuration write while suspended")]
    ConfigWriteSuspended,
    /// An MSI-X vector outside the table (§4.1.5.1.2.2).
    #[error("MSI-X vector {vector} outside the {table_size}-entry table")]
    BadVector {
        /// The vector written.
        vector: u16,
        /// Entries in the table.
        table_size: u16,
    },
    /// A legacy-interface value that cannot be used (page size, alignment,
    /// queue address).
    #[error("legacy interface: {0}")]
    Legacy(&'static str),
    /// A write to a read-only byte of a virtio capability in PCI
    /// configuration space (§4.1.4.1: only PCI_CFG's window fields are
    /// writable).
    #[error("write to virtio capability byte at configuration offset {offset:#x}")]
    CapabilityWrite {
        /// Offset in configuration space.
        offset: u16,
    },
    /// A `pci_cfg_data` access whose window does not address `cap.length`
    /// (1, 2 or 4) aligned bytes inside another virtio structure
    /// (§4.1.4.9.2).
    #[error("PCI_CFG window bar {bar} offset {offset:#x} length {length} addresses no structure")]
    PciCfgWindow {
        /// `cap.bar`.
        bar: u8,
        /// `cap.offset`.
        offset: u32,
        /// `cap.length`.
        length: u32,
    },
    /// The device failed to activate, re-enable a queue, suspend or resume;
    /// DEVICE_NEEDS_RESET was set.
    #[error("device failure: {0}")]
    Device(DeviceError),
}

/// The record of violations a register model keeps: a count and the last
/// one, for the VMM to log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ViolationLog {
    count: u64,
    last: Option<Violation>,
}

impl ViolationLog {
    pub(crate) fn record(&mut self, v: Violation) {
        self.count = self.count.saturating_add(1);
        self.last = Some(v);
    }

    /// How many violations were recorded since the model was created.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The most recent violation.
    pub fn last(&self) -> Option<&Violation> {
        self.last.as_ref()
    }

    /// Takes the most recent violation, leaving `None`.
    pub fn take_last(&mut self) -> Option<Violation> {
        self.last.take()
    }
}
