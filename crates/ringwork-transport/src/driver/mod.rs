//! The driver side: the [`Transport`] trait drivers use, and the
//! transport-independent steps of device initialization (VIRTIO 1.4
//! §3.1.1), feature negotiation (§2.2.1, §6.1) and configuration reads with
//! the generation retry loop (§2.5.1).
//!
//! Implementations: [`crate::mmio::MmioTransport`] and
//! [`crate::pci::PciTransport`], both over [`RegisterAccess`].
//!
//! # Trust and panic contract
//! The device is the peer here: values it presents (queue sizes, status,
//! generation, capabilities) are checked before use, loops that wait for
//! the device are bounded, and a device that does not behave gives a
//! [`TransportError`]. Nothing panics on device input.

mod regs;

pub use regs::{RegisterAccess, VolatileRegisters};

use ringwork_queue::{Dma, DriverQueue, QueueAddresses, QueueFeatures, RingFormat};
use ringwork_spec::device_id::DeviceType;
use ringwork_spec::features::{
    is_reserved_for_future, FeatureSet, PCI_ONLY_FEATURES, TRANSPORT_RULES, VIRTIO_F_ANY_LAYOUT,
    VIRTIO_F_VERSION_1,
};
use ringwork_spec::features::{without_unsatisfied, FeatureRule};
use ringwork_spec::status::DeviceStatus;

/// How many times a driver polls the device for a state change (reset
/// completion, queue reset, a stable configuration generation) before
/// giving up. Our own device models complete at once; hardware may need a
/// few thousand reads.
pub const POLL_LIMIT: u32 = 1 << 20;

/// Why a driver-side transport operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// The register block is not a virtio device (bad magic value).
    #[error("not a virtio device (magic {magic:#x})")]
    NotVirtio {
        /// The value read.
        magic: u32,
    },
    /// A version this driver does not support.
    #[error("unsupported transport version {0}")]
    UnsupportedVersion(u32),
    /// A placeholder device (MMIO `DeviceID` 0): to be ignored silently.
    #[error("placeholder device (device id 0)")]
    Placeholder,
    /// Not a virtio PCI function (vendor or device id).
    #[error("not a virtio PCI function ({vendor:#06x}:{device:#06x})")]
    NotVirtioPci {
        /// PCI vendor id.
        vendor: u16,
        /// PCI device id.
        device: u16,
    },
    /// A required structure is missing or malformed (PCI capabilities).
    #[error("device layout: {0}")]
    Layout(&'static str),
    /// The device did not complete a reset.
    #[error("device did not complete the reset")]
    ResetTimeout,
    /// The device did not offer VIRTIO_F_VERSION_1 on a 1.x interface.
    #[error("device does not offer VIRTIO_F_VERSION_1")]
    NoVersion1,
    /// The device refused the feature subset (FEATURES_OK did not stick).
    #[error("device refused the features {0:?}")]
    FeaturesRejected(FeatureSet),
    /// The queue does not exist or is unavailable.
    #[error("queue {0} is not available")]
    NoSuchQueue(u16),
    /// The queue is already in use.
    #[error("queue {0} is already in use")]
    QueueInUse(u16),
    /// The requested size is larger than the device allows, or not valid.
    #[error("queue {queue}: size {size} is not allowed (max {max})")]
    QueueSize {
        /// The queue.
        queue: u16,
        /// The size asked for.
        size: u16,
        /// The device's maximum.
        max: u16,
    },
    /// The queue memory cannot be described to a legacy interface
    /// (page-based addresses).
    #[error("queue {0}: memory layout unusable on the legacy interface")]
    LegacyLayout(u16),
    /// The device did not accept the queue (it reads back disabled).
    #[error("queue {0} was not enabled by the device")]
    QueueNotEnabled(u16),
    /// Virtqueue reset was asked for without VIRTIO_F_RING_RESET.
    #[error("queue reset needs VIRTIO_F_RING_RESET")]
    RingResetNotNegotiated,
    /// The device did not complete a virtqueue reset.
    #[error("queue {0} did not complete its reset")]
    QueueResetTimeout(u16),
    /// The configuration generation never stabilised.
    #[error("configuration kept changing")]
    ConfigUnstable,
    /// The device neither suspended/resumed nor reported it in time, or set
    /// DEVICE_NEEDS_RESET instead (§3.4.2).
    #[error("device failed to suspend or resume")]
    SuspendFailed,
    /// The connection to the device is gone (a vhost-user backend closed
    /// its socket, or a message failed).
    #[error("device connection lost: {0}")]
    Disconnected(&'static str),
    /// The device did not answer in time (a bounded wait ran out).
    #[error("device did not respond in time")]
    Unresponsive,
    /// The device refused an MSI-X vector mapping (reads back NO_VECTOR).
    #[error("MSI-X vector {0} refused")]
    VectorRefused(u16),
    /// An MSI-X vector outside the device's table (or no MSI-X at all): the
    /// driver must not map it (§4.1.5.1.2.2).
    #[error("MSI-X vector {vector} outside the {table_size}-entry table")]
    VectorOutOfRange {
        /// The vector asked for.
        vector: u16,
        /// The MSI-X Table Size (0 without MSI-X).
        table_size: u16,
    },
}

/// What a device notification was about (MMIO `InterruptStatus`, PCI ISR).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct InterruptCause {
    /// A used buffer notification (for one or more queues).
    pub used_buffer: bool,
    /// A configuration change notification.
    pub config_changed: bool,
}

/// How the driver lays out one queue for the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueConfig {
    /// Number of entries.
    pub size: u16,
    /// Ring addresses (on a legacy interface: the legacy contiguous layout,
    /// starting on a page, see [`Transport::legacy_queue_align`]).
    pub addresses: QueueAddresses,
}

/// What drivers need from a transport (VIRTIO 1.4 §4.1, §4.2): the same
/// operations over MMIO and PCI, legacy and modern.
pub trait Transport {
    /// The device type.
    fn device_type(&self) -> DeviceType;

    /// Whether the device is driven through a legacy interface (MMIO
    /// version 1, PCI legacy I/O BAR): no FEATURES_OK, 32 feature bits,
    /// split rings in the legacy layout.
    fn is_legacy(&self) -> bool;

    /// The features the device offers (all windows).
    fn device_features(&mut self) -> FeatureSet;

    /// Writes the features the driver accepts (all windows). The transport
    /// remembers them for its own decisions (notification format).
    fn set_driver_features(&mut self, features: FeatureSet);

    /// Reads the device status.
    fn status(&mut self) -> DeviceStatus;

    /// Writes the device status.
    fn set_status(&mut self, status: DeviceStatus);

    /// Resets the device and waits (bounded) until it reads status 0
    /// (§2.4.2, §4.1.4.3.2).
    fn reset(&mut self) -> Result<(), TransportError> {
        self.set_status(DeviceStatus::RESET);
        for _ in 0..POLL_LIMIT {
            if self.status().is_reset() {
                return Ok(());
            }
            core::hint::spin_loop();
        }
        Err(TransportError::ResetTimeout)
    }

    /// The largest size queue `queue` may have; 0 when it does not exist.
    fn max_queue_size(&mut self, queue: u16) -> u16;

    /// For legacy interfaces, the used-ring alignment the queue memory must
    /// follow (and the page its start must lie on); `None` on 1.x
    /// interfaces.
    fn legacy_queue_align(&self) -> Option<u32>;

    /// Tells the device where queue `queue` lives and enables it.
    fn setup_queue(&mut self, queue: u16, config: &QueueConfig) -> Result<(), TransportError>;

    /// Resets one queue (VIRTIO_F_RING_RESET, §2.6.1) and waits (bounded)
    /// for the device to confirm.
    fn reset_queue(&mut self, queue: u16) -> Result<(), TransportError>;

    /// Sends an available buffer notification for `queue`. `data` is the
    /// queue's notification data (`DriverQueue::notification_data`); the
    /// transport sends it if VIRTIO_F_NOTIFICATION_DATA was negotiated and
    /// the plain queue index (or `queue_notif_config_data`) otherwise.
    fn notify(&mut self, queue: u16, data: u32);

    /// The configuration generation (0 on legacy interfaces, which have
    /// none).
    fn config_generation(&mut self) -> u32;

    /// Reads configuration space. `data.len()` is the field width (1, 2, 4
    /// or 8, read as two 32-bit halves, low first) at a field-aligned
    /// `offset`.
    fn read_config(&mut self, offset: usize, data: &mut [u8]);

    /// Writes configuration space, with the same width rules.
    fn write_config(&mut self, offset: usize, data: &[u8]);

    /// Reads (and acknowledges) why the device interrupted.
    fn ack_interrupt(&mut self) -> InterruptCause;

    /// Waits until the device may have sent a notification (a used buffer
    /// or a configuration change) and returns; spurious returns are
    /// allowed. Callers check their queues and [`Transport::ack_interrupt`]
    /// afterwards. The default only hints a spin loop (polling); transports
    /// with something to block on (vhost-user call eventfds) block, for a
    /// bounded time, and report a dead peer as
    /// [`TransportError::Disconnected`] or a silent one as
    /// [`TransportError::Unresponsive`].
    fn wait_interrupt(&mut self) -> Result<(), TransportError> {
        core::hint::spin_loop();
        Ok(())
    }

    /// Whether this transport can carry transport feature `bit` (§2.2.1:
    /// the driver ignores features not supported for the transport). The
    /// default refuses the PCI-only features (VIRTIO_F_SR_IOV,
    /// VIRTIO_F_ADMIN_VQ), which ringwork's drivers never use anyway.
    fn supports_feature(&self, bit: u32) -> bool {
        !PCI_ONLY_FEATURES.contains(&bit)
    }
}

/// Steps 1 to 6 of device initialization (§3.1.1; §3.1.2 on legacy
/// interfaces): reset, ACKNOWLEDGE, DRIVER, read the offered features,
/// accept the subset the driver `supports`, drop features whose
/// dependencies (`rules` and the transport rules) are not met, write them,
/// then set FEATURES_OK and check it stuck. Returns the negotiated set.
///
/// The driver never accepts what was not offered, nor bits reserved for the
/// future (§2.2.1); VIRTIO_F_VERSION_1 is always accepted when offered
/// (§6.1). On failure the FAILED bit is set (§3.1.1) where the spec asks.
pub fn negotiate<T: Transport + ?Sized>(
    t: &mut T,
    supports: FeatureSet,
    rules: &[FeatureRule],
) -> Result<FeatureSet, TransportError> {
    negotiate_validated(t, supports, rules, |_, _| FeatureSet::EMPTY)
}

/// [`negotiate`] with a check of the device before accepting features:
/// `validate` is called after the offered features are read (status
/// DRIVER, §3.1.1 step 4: the driver "MAY read (but MUST NOT write) the
/// device-specific configuration fields to check that it can support the
/// device before accepting it") with the transport and the features the
/// driver would accept, and returns features to drop (e.g. a feature whose
/// configuration field holds a value the spec forbids, which Linux drops
/// too). Dependencies are re-checked after the drop.
pub fn negotiate_validated<T: Transport + ?Sized>(
    t: &mut T,
    supports: FeatureSet,
    rules: &[FeatureRule],
    mut validate: impl FnMut(&mut T, FeatureSet) -> FeatureSet,
) -> Result<FeatureSet, TransportError> {
    t.reset()?;
    t.set_status(DeviceStatus::ACKNOWLEDGE);
    t.set_status(DeviceStatus::ACKNOWLEDGE | DeviceStatus::DRIVER);
    let offered = t.device_features();
    let legacy = t.is_legacy();
    if !legacy && !offered.contains(VIRTIO_F_VERSION_1) {
        let s = t.status();
        t.set_status(s | DeviceStatus::FAILED);
        return Err(TransportError::NoVersion1);
    }
    let mut wanted = offered.intersection(supports);
    if legacy {
        // 32 feature bits; ANY_LAYOUT MUST be accepted if offered (§6.3).
        wanted = FeatureSet::from_words([wanted.word(0), 0, 0, 0]);
        if offered.contains(VIRTIO_F_ANY_LAYOUT) {
            wanted.insert(VIRTIO_F_ANY_LAYOUT);
        }
    } else {
        wanted.insert(VIRTIO_F_VERSION_1);
    }
    // §2.2.1: never bits reserved for the future, nor bits this transport
    // cannot carry.
    let reserved: FeatureSet = wanted
        .iter()
        .filter(|&b| is_reserved_for_future(b) || !t.supports_feature(b))
        .fold(FeatureSet::EMPTY, |s, b| s.with(b));
    wanted = wanted.difference(reserved);
    let drop = validate(t, wanted);
    wanted = wanted.difference(drop);
    wanted = without_unsatisfied(wanted, TRANSPORT_RULES);
    wanted = without_unsatisfied(wanted, rules);
    t.set_driver_features(wanted);
    if legacy {
        return Ok(wanted);
    }
    let s = t.status();
    t.set_status(s | DeviceStatus::FEATURES_OK);
    if !t.status().contains(DeviceStatus::FEATURES_OK) {
        let s = t.status();
        t.set_status(s | DeviceStatus::FAILED);
        return Err(TransportError::FeaturesRejected(wanted));
    }
    Ok(wanted)
}

/// Step 8 of device initialization: sets DRIVER_OK; the device is live.
pub fn set_driver_ok<T: Transport + ?Sized>(t: &mut T) {
    let s = t.status();
    t.set_status(s | DeviceStatus::DRIVER_OK);
}

/// Suspends the device (VIRTIO_F_SUSPEND, §3.4.1): sets SUSPEND, then
/// re-reads the status until the device shows SUSPEND set and DRIVER_OK
/// clear (bounded). A device that sets DEVICE_NEEDS_RESET instead gives
/// [`TransportError::SuspendFailed`]. While suspended the driver must not
/// make buffers available, notify, or write configuration space.
pub fn suspend<T: Transport + ?Sized>(t: &mut T) -> Result<(), TransportError> {
    let s = t.status();
    t.set_status(s | DeviceStatus::SUSPEND);
    wait_status(t, DeviceStatus::SUSPEND, DeviceStatus::DRIVER_OK)
}

/// Resumes a suspended device (§3.4.1): sets DRIVER_OK, then waits
/// (bounded) for SUSPEND to clear and DRIVER_OK to read 1 before normal
/// operation.
pub fn resume<T: Transport + ?Sized>(t: &mut T) -> Result<(), TransportError> {
    let s = t.status();
    t.set_status(s | DeviceStatus::DRIVER_OK);
    wait_status(t, DeviceStatus::DRIVER_OK, DeviceStatus::SUSPEND)
}

fn wait_status<T: Transport + ?Sized>(
    t: &mut T,
    set: DeviceStatus,
    clear: DeviceStatus,
) -> Result<(), TransportError> {
    for _ in 0..POLL_LIMIT {
        let s = t.status();
        if s.contains(DeviceStatus::DEVICE_NEEDS_RESET) {
            return Err(TransportError::SuspendFailed);
        }
        if s.contains(set) && !s.intersects(clear) {
            return Ok(());
        }
        core::hint::spin_loop();
    }
    Err(TransportError::SuspendFailed)
}

/// The ring format and ring features a negotiated feature set implies (a
/// legacy interface always uses split rings).
pub fn ring_features<T: Transport + ?Sized>(
    t: &T,
    negotiated: FeatureSet,
) -> (RingFormat, QueueFeatures) {
    let (format, qf) = QueueFeatures::from_bits(negotiated.as_u64_lossy());
    if t.is_legacy() {
        (RingFormat::Split, qf)
    } else {
        (format, qf)
    }
}

/// Tells the device about a driver-side queue built for this transport
/// (with [`Transport::legacy_queue_align`] as its `legacy_align`) and
/// enables it.
pub fn attach_queue<T: Transport + ?Sized, D: Dma, Tok>(
    t: &mut T,
    queue: &DriverQueue<D, Tok>,
) -> Result<(), TransportError> {
    let config = QueueConfig {
        size: queue.size(),
        addresses: queue.addresses(),
    };
    t.setup_queue(queue.config().index, &config)
}

/// Runs `read` until the configuration generation is the same before and
/// after it (§2.5.1), at most [`POLL_LIMIT`] times.
pub fn read_config_consistent<T: Transport + ?Sized, R>(
    t: &mut T,
    mut read: impl FnMut(&mut T) -> R,
) -> Result<R, TransportError> {
    for _ in 0..POLL_LIMIT {
        let before = t.config_generation();
        let value = read(t);
        if t.config_generation() == before {
            return Ok(value);
        }
    }
    Err(TransportError::ConfigUnstable)
}

/// Little-endian configuration field readers over [`Transport::read_config`].
pub trait ConfigRead {
    /// An 8-bit field.
    fn config_u8(&mut self, offset: usize) -> u8;
    /// A 16-bit field.
    fn config_u16(&mut self, offset: usize) -> u16;
    /// A 32-bit field.
    fn config_u32(&mut self, offset: usize) -> u32;
    /// A 64-bit field (two 32-bit reads; wrap in
    /// [`read_config_consistent`]).
    fn config_u64(&mut self, offset: usize) -> u64;
}

impl<T: Transport + ?Sized> ConfigRead for T {
    fn config_u8(&mut self, offset: usize) -> u8 {
        let mut b = [0u8; 1];
        self.read_config(offset, &mut b);
        b[0]
    }
    fn config_u16(&mut self, offset: usize) -> u16 {
        let mut b = [0u8; 2];
        self.read_config(offset, &mut b);
        u16::from_le_bytes(b)
    }
    fn config_u32(&mut self, offset: usize) -> u32 {
        let mut b = [0u8; 4];
        self.read_config(offset, &mut b);
        u32::from_le_bytes(b)
    }
    fn config_u64(&mut self, offset: usize) -> u64 {
        let mut b = [0u8; 8];
        self.read_config(offset, &mut b);
        u64::from_le_bytes(b)
    }
}
