//! Notifications from the device to the driver, and the state they share
//! with the register model.
//!
//! [`Signals`] is the device's handle: used-buffer notifications,
//! configuration changes and "needs reset". It is `Clone + Send + Sync`, so
//! device worker threads can hold it. Each transport supplies the route an
//! event takes to the driver (MMIO: `InterruptStatus` and one interrupt
//! line; PCI: ISR and INTx, or an MSI-X vector), and the VMM supplies the
//! last hop ([`IrqLine`], `MsiSink`): no OS calls happen here.
//!
//! Rules enforced here, whoever calls:
//! - no used-buffer notification unless the device is active and not
//!   suspended (VIRTIO 1.4 §2.1.2, §2.4.1, §3.4.2);
//! - configuration changes are notified only after DRIVER_OK; while
//!   suspended they are held and sent on resume (§3.4.2);
//! - setting DEVICE_NEEDS_RESET sends a configuration change notification
//!   when DRIVER_OK is set (§2.1.2);
//! - the configuration generation changes after any configuration change,
//!   before the driver can read the new value (§2.5, §4.1.4.3.1).

use alloc::boxed::Box;
use alloc::sync::Arc;
use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU8, Ordering};

use ringwork_spec::status::{
    VIRTIO_CONFIG_S_DRIVER_OK, VIRTIO_CONFIG_S_NEEDS_RESET, VIRTIO_CONFIG_S_SUSPEND,
};

/// An interrupt line the VMM wires to its interrupt controller.
///
/// `set_level(true)` is called for every new event (so an edge-triggered
/// implementation, such as an irqfd, can simply fire on `true`);
/// `set_level(false)` when nothing is pending any more.
pub trait IrqLine: Send + Sync {
    /// Asserts (`true`) or de-asserts (`false`) the line.
    fn set_level(&self, asserted: bool);
}

/// An [`IrqLine`] that goes nowhere (a device whose driver polls).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoIrq;

impl IrqLine for NoIrq {
    fn set_level(&self, _asserted: bool) {}
}

/// How a transport delivers device events to the driver.
pub(crate) trait Route: Send + Sync {
    /// A used-buffer notification for `queue`; `isr` is the transport's
    /// interrupt status word (MMIO `InterruptStatus`, PCI ISR).
    fn used_buffer(&self, queue: u16, isr: &AtomicU32);
    /// A configuration change notification.
    fn config_changed(&self, isr: &AtomicU32);
    /// The interrupt status was cleared (driver acknowledge, read of ISR,
    /// or reset): de-assert level-triggered lines if nothing is pending.
    fn status_cleared(&self, isr: &AtomicU32);
}

/// State shared between the register model and the device's [`Signals`].
pub(crate) struct Shared {
    pub(crate) status: AtomicU8,
    /// Set while the device is activated (DRIVER_OK, or legacy first use)
    /// and not reset.
    pub(crate) active: AtomicBool,
    pub(crate) generation: AtomicU32,
    pub(crate) config_dirty: AtomicBool,
    pub(crate) config_deferred: AtomicBool,
    pub(crate) isr: AtomicU32,
    pub(crate) route: Box<dyn Route>,
}

impl Shared {
    pub(crate) fn new(route: Box<dyn Route>) -> Self {
        Self {
            status: AtomicU8::new(0),
            active: AtomicBool::new(false),
            generation: AtomicU32::new(0),
            config_dirty: AtomicBool::new(false),
            config_deferred: AtomicBool::new(false),
            isr: AtomicU32::new(0),
            route,
        }
    }

    /// The generation the driver sees now: bumped once if the configuration
    /// changed since the driver last looked (the flag scheme of the note in
    /// §4.1.4.3.1, which cannot wrap back to a value the driver saw).
    pub(crate) fn generation(&self) -> u32 {
        if self.config_dirty.swap(false, Ordering::AcqRel) {
            self.generation
                .fetch_add(1, Ordering::AcqRel)
                .wrapping_add(1)
        } else {
            self.generation.load(Ordering::Acquire)
        }
    }

    pub(crate) fn status(&self) -> u8 {
        self.status.load(Ordering::Acquire)
    }

    fn notify_config(&self) {
        let s = self.status();
        if s & VIRTIO_CONFIG_S_SUSPEND != 0 {
            self.config_deferred.store(true, Ordering::Release);
        } else if s & VIRTIO_CONFIG_S_DRIVER_OK != 0 {
            self.route.config_changed(&self.isr);
        }
    }

    pub(crate) fn set_needs_reset(&self) {
        self.status
            .fetch_or(VIRTIO_CONFIG_S_NEEDS_RESET, Ordering::AcqRel);
        if self.status() & VIRTIO_CONFIG_S_DRIVER_OK != 0 {
            self.route.config_changed(&self.isr);
        }
    }

    /// Sends a configuration change held back during suspension.
    pub(crate) fn flush_deferred_config(&self) {
        if self.config_deferred.swap(false, Ordering::AcqRel) {
            self.notify_config();
        }
    }

    /// Clears interrupt status bits (acknowledge); returns the bits that
    /// were set before.
    pub(crate) fn clear_isr(&self, bits: u32) -> u32 {
        let old = self.isr.fetch_and(!bits, Ordering::AcqRel);
        self.route.status_cleared(&self.isr);
        old
    }
}

/// The device's handle for notifying the driver. See the
/// [module docs](self).
#[derive(Clone)]
pub struct Signals {
    pub(crate) shared: Arc<Shared>,
}

impl fmt::Debug for Signals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signals")
            .field("status", &self.shared.status())
            .field("active", &self.shared.active.load(Ordering::Relaxed))
            .finish()
    }
}

impl Signals {
    /// Sends a used-buffer notification for `queue`, if the device may send
    /// one now (active and not suspended). Returns whether it was sent.
    ///
    /// Whether a notification is *needed* (event suppression) is the
    /// queue's decision (`DeviceQueue::needs_notification`); call this only
    /// when it says so.
    pub fn used_buffer(&self, queue: u16) -> bool {
        let s = &self.shared;
        if !s.active.load(Ordering::Acquire) || s.status() & VIRTIO_CONFIG_S_SUSPEND != 0 {
            return false;
        }
        s.route.used_buffer(queue, &s.isr);
        true
    }

    /// The device changed its configuration space: the generation changes
    /// and, after DRIVER_OK, the driver is notified (held while suspended).
    pub fn config_changed(&self) {
        self.shared.config_dirty.store(true, Ordering::Release);
        self.shared.notify_config();
    }

    /// The device entered an error state it cannot leave without a reset:
    /// sets DEVICE_NEEDS_RESET and, after DRIVER_OK, notifies the driver.
    pub fn needs_reset(&self) {
        self.shared.set_needs_reset();
    }

    /// The device status as the driver sees it.
    pub fn status(&self) -> u8 {
        self.shared.status()
    }

    /// Whether the device is active (activated and not reset).
    pub fn is_active(&self) -> bool {
        self.shared.active.load(Ordering::Acquire)
    }
}
