//! Console driver events and errors.

use alloc::string::String;

use ringwork_queue::UsedError;
use ringwork_transport::driver::TransportError;

use crate::common::{SetupError, WaitError};

/// Something that happened on the device side, reported by
/// `ConsoleDriver::poll`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsoleEvent {
    /// The device added a port (`VIRTIO_CONSOLE_DEVICE_ADD`); the driver
    /// set up its receive buffers and answered PORT_READY.
    PortAdded {
        /// The port.
        port: u32,
    },
    /// The device removed a port (`VIRTIO_CONSOLE_DEVICE_REMOVE`); unread
    /// input was dropped.
    PortRemoved {
        /// The port.
        port: u32,
    },
    /// The device named a port (`VIRTIO_CONSOLE_PORT_NAME`).
    PortName {
        /// The port.
        port: u32,
        /// The name (trailing NUL bytes removed).
        name: String,
    },
    /// The host side of a port opened or closed (`VIRTIO_CONSOLE_PORT_OPEN`
    /// from the device).
    PortOpened {
        /// The port.
        port: u32,
        /// Open (`true`) or closed.
        open: bool,
    },
    /// The device nominated a console port (`VIRTIO_CONSOLE_CONSOLE_PORT`);
    /// the driver answered PORT_OPEN 1 (§5.3.6.2.2).
    ConsolePort {
        /// The port.
        port: u32,
    },
    /// A console size change: a `VIRTIO_CONSOLE_RESIZE` message, or (port 0,
    /// with `VIRTIO_CONSOLE_F_SIZE`) a configuration change of
    /// `cols`/`rows`.
    Resize {
        /// The port.
        port: u32,
        /// Columns.
        cols: u16,
        /// Rows.
        rows: u16,
    },
    /// Input arrived for a port: read it with `ConsoleDriver::read`.
    Data {
        /// The port.
        port: u32,
    },
}

/// A control message from the device that the driver rejected
/// (§5.3.6.2). The message is dropped and its buffer reused; the driver
/// keeps working.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    /// Shorter than its header (or its RESIZE payload).
    #[error("control message of {len} bytes, {needed} needed")]
    Truncated {
        /// Bytes the device wrote.
        len: u32,
        /// Bytes the message needs.
        needed: u32,
    },
    /// A port number at or beyond `max_nr_ports` (§5.3.6.2.1: the device
    /// MUST NOT send one).
    #[error("port {port} is beyond max_nr_ports {max_nr_ports}")]
    BadPort {
        /// The port.
        port: u32,
        /// The device's `max_nr_ports`.
        max_nr_ports: u32,
    },
    /// A port the driver cannot serve (beyond its port limit, or its queues
    /// do not exist, or no memory for its buffers); refused with PORT_READY
    /// 0.
    #[error("port {port} cannot be used by this driver")]
    PortUnavailable {
        /// The port.
        port: u32,
    },
    /// DEVICE_ADD for a port that exists (§5.3.6.2.1).
    #[error("port {port} was added twice")]
    DuplicatePort {
        /// The port.
        port: u32,
    },
    /// A message about a port that was not added.
    #[error("port {port} was not added")]
    UnknownPort {
        /// The port.
        port: u32,
    },
    /// A PORT_OPEN value other than 0 or 1.
    #[error("event {event}: value {value} is not 0 or 1")]
    BadValue {
        /// The event.
        event: u16,
        /// The value.
        value: u16,
    },
    /// A PORT_NAME that is not UTF-8.
    #[error("port {port}: name is not UTF-8")]
    BadName {
        /// The port.
        port: u32,
    },
    /// An event the device does not send (DEVICE_READY, PORT_READY) or an
    /// unknown one.
    #[error("unexpected control event {event} for port {port}")]
    UnexpectedEvent {
        /// The port.
        port: u32,
        /// The event.
        event: u16,
    },
}

/// Why a console driver operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConsoleError {
    /// Initialization failed.
    #[error(transparent)]
    Setup(#[from] SetupError),
    /// The transport failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The device put something invalid in a used ring (or the queue was
    /// already broken); reset the driver.
    #[error("queue {queue}: {source}")]
    Queue {
        /// The queue.
        queue: u16,
        /// What the queue found.
        source: UsedError,
    },
    /// A control message was rejected (not fatal).
    #[error(transparent)]
    Control(#[from] ControlError),
    /// The caller named a port that does not exist or was not added.
    #[error("port {port} is not available")]
    NoSuchPort {
        /// The port.
        port: u32,
    },
    /// The operation needs a feature that was not negotiated.
    #[error("{feature} was not negotiated")]
    NotNegotiated {
        /// The feature (spec name).
        feature: &'static str,
    },
    /// The device did not use a buffer in time; the driver refuses further
    /// blocking operations until it is reset.
    #[error("device did not use the buffer in time")]
    Timeout,
    /// The device set DEVICE_NEEDS_RESET.
    #[error("device needs a reset")]
    NeedsReset,
    /// A blocking operation timed out earlier; reset the driver.
    #[error("driver is broken after a timeout; reset it")]
    Broken,
}

impl ConsoleError {
    /// Whether the driver cannot go on without a reset. Rejected control
    /// messages and bad port numbers from the caller are not fatal.
    pub fn is_fatal(&self) -> bool {
        !matches!(
            self,
            Self::Control(_) | Self::NoSuchPort { .. } | Self::NotNegotiated { .. }
        )
    }
}

impl From<WaitError> for ConsoleError {
    fn from(e: WaitError) -> Self {
        match e {
            WaitError::Transport(t) => Self::Transport(t),
            WaitError::Timeout => Self::Timeout,
            WaitError::NeedsReset => Self::NeedsReset,
        }
    }
}
