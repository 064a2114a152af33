//! VIRTIO 1.4 §5.3 Console Device.
//!
//! Contents: the feature bits (`VIRTIO_CONSOLE_F_*`, bit numbers), the
//! configuration space ([`ConsoleConfig`]), the multiport control message
//! ([`ConsoleControl`]) and its events (`VIRTIO_CONSOLE_*`,
//! [`ConsoleEvent`]), the resize payload ([`ConsoleResize`]) and the
//! port ↔ virtqueue numbering ([`port_receiveq`], [`port_transmitq`],
//! [`queue_role`], [`num_queues`]).
//!
//! Queue layout (§5.3.2):
//!
//! | index | queue              |
//! |-------|--------------------|
//! | 0     | receiveq(port0)    |
//! | 1     | transmitq(port0)   |
//! | 2     | control receiveq   |
//! | 3     | control transmitq  |
//! | 4     | receiveq(port1)    |
//! | 5     | transmitq(port1)   |
//! | ...   | ...                |
//!
//! Port 0's queues always exist; the others only with
//! `VIRTIO_CONSOLE_F_MULTIPORT`.
//!
//! ```
//! use ringwork_spec::console::{port_receiveq, port_transmitq, queue_role, ConsoleQueue};
//!
//! assert_eq!((port_receiveq(0), port_transmitq(0)), (Some(0), Some(1)));
//! assert_eq!((port_receiveq(1), port_transmitq(1)), (Some(4), Some(5)));
//! assert_eq!(queue_role(2), ConsoleQueue::ControlReceive);
//! assert_eq!(queue_role(7), ConsoleQueue::Transmit { port: 2 });
//! ```

use crate::features::FeatureRule;
use crate::le::{Le16, Le32};
use crate::wire_view;

// ---------------------------------------------------------------------------
// Feature bits (§5.3.3)
// ---------------------------------------------------------------------------

/// Configuration `cols` and `rows` are valid.
pub const VIRTIO_CONSOLE_F_SIZE: u32 = 0;
/// Device supports multiple ports; `max_nr_ports` is valid and the control
/// virtqueues are used.
pub const VIRTIO_CONSOLE_F_MULTIPORT: u32 = 1;
/// Device supports emergency write; `emerg_wr` is valid.
pub const VIRTIO_CONSOLE_F_EMERG_WRITE: u32 = 2;

/// Feature dependency rules of §5.3: none. The console section states no
/// "X requires Y" between its features (the control queues and extra ports
/// come with `VIRTIO_CONSOLE_F_MULTIPORT` alone).
pub const CONSOLE_FEATURE_RULES: &[FeatureRule] = &[];

// ---------------------------------------------------------------------------
// Configuration space (§5.3.4)
// ---------------------------------------------------------------------------

/// Offset of `emerg_wr` in [`ConsoleConfig`]: the driver writes a character
/// there (usable before queues are set up, or even before the feature is
/// acknowledged).
pub const CONSOLE_CONFIG_EMERG_WR_OFFSET: usize = 8;

wire_view! {
    /// The console configuration space (`struct virtio_console_config`).
    #[doc(alias = "virtio_console_config")]
    pub struct ConsoleConfig, size CONSOLE_CONFIG_SIZE = 12 {
        /// Console width (`VIRTIO_CONSOLE_F_SIZE`); applies to port 0.
        @0 cols / set_cols: Le16,
        /// Console height (`VIRTIO_CONSOLE_F_SIZE`); applies to port 0.
        @2 rows / set_rows: Le16,
        /// Maximum number of ports (`VIRTIO_CONSOLE_F_MULTIPORT`).
        @4 max_nr_ports / set_max_nr_ports: Le32,
        /// Emergency write register (`VIRTIO_CONSOLE_F_EMERG_WRITE`): the
        /// device outputs the low byte of what the driver writes.
        @8 emerg_wr / set_emerg_wr: Le32,
    }
}

// ---------------------------------------------------------------------------
// Control messages (§5.3.6.2)
// ---------------------------------------------------------------------------

/// Driver → device: ready for control messages (`value` 1 success, 0
/// failure; `id` unused).
pub const VIRTIO_CONSOLE_DEVICE_READY: u16 = 0;
/// Device → driver: create port `id` (`value` unused). The spec's prose also
/// calls it `VIRTIO_CONSOLE_PORT_ADD`, which is Linux's name.
#[doc(alias = "VIRTIO_CONSOLE_PORT_ADD")]
pub const VIRTIO_CONSOLE_DEVICE_ADD: u16 = 1;
/// Device → driver: remove port `id` (`value` unused). Linux:
/// `VIRTIO_CONSOLE_PORT_REMOVE`.
#[doc(alias = "VIRTIO_CONSOLE_PORT_REMOVE")]
pub const VIRTIO_CONSOLE_DEVICE_REMOVE: u16 = 2;
/// Driver → device: port `id` is ready (`value` 1 success, 0 failure).
pub const VIRTIO_CONSOLE_PORT_READY: u16 = 3;
/// Device → driver: port `id` is a console port (driver answers with
/// PORT_OPEN, `value` 1).
pub const VIRTIO_CONSOLE_CONSOLE_PORT: u16 = 4;
/// Device → driver: console size change; followed by [`ConsoleResize`].
pub const VIRTIO_CONSOLE_RESIZE: u16 = 5;
/// Both directions: port `id` opened (`value` 1) or closed (`value` 0).
pub const VIRTIO_CONSOLE_PORT_OPEN: u16 = 6;
/// Device → driver: port name; followed by the UTF-8 name, no NUL.
pub const VIRTIO_CONSOLE_PORT_NAME: u16 = 7;

/// A control event, for matching. Unknown values are kept in
/// [`Unknown`](Self::Unknown); `u16::from` gives back the wire value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConsoleEvent {
    /// [`VIRTIO_CONSOLE_DEVICE_READY`].
    DeviceReady,
    /// [`VIRTIO_CONSOLE_DEVICE_ADD`].
    DeviceAdd,
    /// [`VIRTIO_CONSOLE_DEVICE_REMOVE`].
    DeviceRemove,
    /// [`VIRTIO_CONSOLE_PORT_READY`].
    PortReady,
    /// [`VIRTIO_CONSOLE_CONSOLE_PORT`].
    ConsolePort,
    /// [`VIRTIO_CONSOLE_RESIZE`].
    Resize,
    /// [`VIRTIO_CONSOLE_PORT_OPEN`].
    PortOpen,
    /// [`VIRTIO_CONSOLE_PORT_NAME`].
    PortName,
    /// Any other value.
    Unknown(u16),
}

impl From<u16> for ConsoleEvent {
    fn from(v: u16) -> Self {
        match v {
            VIRTIO_CONSOLE_DEVICE_READY => Self::DeviceReady,
            VIRTIO_CONSOLE_DEVICE_ADD => Self::DeviceAdd,
            VIRTIO_CONSOLE_DEVICE_REMOVE => Self::DeviceRemove,
            VIRTIO_CONSOLE_PORT_READY => Self::PortReady,
            VIRTIO_CONSOLE_CONSOLE_PORT => Self::ConsolePort,
            VIRTIO_CONSOLE_RESIZE => Self::Resize,
            VIRTIO_CONSOLE_PORT_OPEN => Self::PortOpen,
            VIRTIO_CONSOLE_PORT_NAME => Self::PortName,
            other => Self::Unknown(other),
        }
    }
}

impl From<ConsoleEvent> for u16 {
    fn from(e: ConsoleEvent) -> u16 {
        match e {
            ConsoleEvent::DeviceReady => VIRTIO_CONSOLE_DEVICE_READY,
            ConsoleEvent::DeviceAdd => VIRTIO_CONSOLE_DEVICE_ADD,
            ConsoleEvent::DeviceRemove => VIRTIO_CONSOLE_DEVICE_REMOVE,
            ConsoleEvent::PortReady => VIRTIO_CONSOLE_PORT_READY,
            ConsoleEvent::ConsolePort => VIRTIO_CONSOLE_CONSOLE_PORT,
            ConsoleEvent::Resize => VIRTIO_CONSOLE_RESIZE,
            ConsoleEvent::PortOpen => VIRTIO_CONSOLE_PORT_OPEN,
            ConsoleEvent::PortName => VIRTIO_CONSOLE_PORT_NAME,
            ConsoleEvent::Unknown(v) => v,
        }
    }
}

wire_view! {
    /// A control message on the control receiveq / transmitq
    /// (`struct virtio_console_control`). RESIZE and PORT_NAME messages carry
    /// a payload right after these 8 bytes.
    #[doc(alias = "virtio_console_control")]
    pub struct ConsoleControl, size CONSOLE_CONTROL_SIZE = 8 {
        /// Port number.
        @0 id / set_id: Le32,
        /// `VIRTIO_CONSOLE_*` event (see [`ConsoleEvent`]).
        @4 event / set_event: Le16,
        /// Extra information for the event.
        @6 value / set_value: Le16,
    }
}

wire_view! {
    /// Payload of a `VIRTIO_CONSOLE_RESIZE` control message
    /// (`struct virtio_console_resize`): `cols` then `rows`, as the spec
    /// says. Linux before commit 5326ab737a47 (and devices written against
    /// it) used `rows` then `cols`; peers of either age exist.
    #[doc(alias = "virtio_console_resize")]
    pub struct ConsoleResize, size CONSOLE_RESIZE_SIZE = 4 {
        /// Number of columns.
        @0 cols / set_cols: Le16,
        /// Number of rows.
        @2 rows / set_rows: Le16,
    }
}

/// `value` of a DEVICE_READY / PORT_READY message: success.
pub const VIRTIO_CONSOLE_READY_OK: u16 = 1;
/// `value` of a DEVICE_READY / PORT_READY message: failure.
pub const VIRTIO_CONSOLE_READY_FAILED: u16 = 0;
/// `value` of a PORT_OPEN message: port open.
pub const VIRTIO_CONSOLE_PORT_OPENED: u16 = 1;
/// `value` of a PORT_OPEN message: port closed.
pub const VIRTIO_CONSOLE_PORT_CLOSED: u16 = 0;

// ---------------------------------------------------------------------------
// Queue numbering (§5.3.2)
// ---------------------------------------------------------------------------

/// Virtqueue index of port 0's receiveq.
pub const CONSOLE_RECEIVEQ_PORT0: u16 = 0;
/// Virtqueue index of port 0's transmitq.
pub const CONSOLE_TRANSMITQ_PORT0: u16 = 1;
/// Virtqueue index of the control receiveq (device → driver messages).
pub const CONSOLE_CONTROL_RECEIVEQ: u16 = 2;
/// Virtqueue index of the control transmitq (driver → device messages).
pub const CONSOLE_CONTROL_TRANSMITQ: u16 = 3;

/// Virtqueue index of `port`'s receiveq, or `None` if it would not fit in a
/// 16-bit queue index (ports above 32766).
#[inline]
pub const fn port_receiveq(port: u32) -> Option<u16> {
    if port == 0 {
        return Some(CONSOLE_RECEIVEQ_PORT0);
    }
    // receiveq(portN) = 2 + 2N for N >= 1.
    let idx = 2 + 2 * port as u64;
    if idx + 1 > u16::MAX as u64 {
        None
    } else {
        Some(idx as u16)
    }
}

/// Virtqueue index of `port`'s transmitq, or `None` if it would not fit in
/// a 16-bit queue index (ports above 32766).
#[inline]
pub const fn port_transmitq(port: u32) -> Option<u16> {
    match port_receiveq(port) {
        Some(rx) => Some(rx + 1),
        None => None,
    }
}

/// What a console virtqueue index is used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConsoleQueue {
    /// A port's receiveq (device → driver data).
    Receive {
        /// The port number.
        port: u32,
    },
    /// A port's transmitq (driver → device data).
    Transmit {
        /// The port number.
        port: u32,
    },
    /// The control receiveq.
    ControlReceive,
    /// The control transmitq.
    ControlTransmit,
}

/// The role of virtqueue `index` (inverse of [`port_receiveq`] /
/// [`port_transmitq`]). Whether the queue exists depends on
/// `VIRTIO_CONSOLE_F_MULTIPORT` and `max_nr_ports` ([`num_queues`]).
#[inline]
pub const fn queue_role(index: u16) -> ConsoleQueue {
    match index {
        0 => ConsoleQueue::Receive { port: 0 },
        1 => ConsoleQueue::Transmit { port: 0 },
        2 => ConsoleQueue::ControlReceive,
        3 => ConsoleQueue::ControlTransmit,
        i => {
            let port = (i as u32 - 2) / 2;
            if i % 2 == 0 {
                ConsoleQueue::Receive { port }
            } else {
                ConsoleQueue::Transmit { port }
            }
        }
    }
}

/// Number of virtqueues the device has: 2 without
/// `VIRTIO_CONSOLE_F_MULTIPORT`, otherwise `2 * max_nr_ports + 2` (a pair
/// per port plus the control pair; port 0 always counts). The result may
/// exceed the 65536 virtqueues a device can have if `max_nr_ports` is huge.
#[inline]
pub const fn num_queues(multiport: bool, max_nr_ports: u32) -> u64 {
    if !multiport {
        return 2;
    }
    let ports = if max_nr_ports == 0 {
        1
    } else {
        max_nr_ports as u64
    };
    2 * ports + 2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_layout() {
        let mut b = [0u8; 12];
        let mut c = ConsoleConfig::new_checked(&mut b[..]).unwrap();
        c.set_cols(80);
        c.set_rows(25);
        c.set_max_nr_ports(0x0102_0304);
        c.set_emerg_wr(u32::from(b'!'));
        assert_eq!(b, [80, 0, 25, 0, 4, 3, 2, 1, b'!', 0, 0, 0]);
        assert_eq!(CONSOLE_CONFIG_SIZE, 12);
        assert_eq!(b[CONSOLE_CONFIG_EMERG_WR_OFFSET], b'!');
    }

    #[test]
    fn control_layout() {
        let bytes = [7u8, 0, 0, 0, 6, 0, 1, 0];
        let m = ConsoleControl::new_checked(&bytes[..]).unwrap();
        assert_eq!(m.id(), 7);
        assert_eq!(ConsoleEvent::from(m.event()), ConsoleEvent::PortOpen);
        assert_eq!(m.value(), VIRTIO_CONSOLE_PORT_OPENED);
        assert_eq!(CONSOLE_CONTROL_SIZE, 8);

        let mut b = [0u8; 8];
        let mut m = ConsoleControl::new_checked(&mut b[..]).unwrap();
        m.set_id(0x0a0b_0c0d);
        m.set_event(VIRTIO_CONSOLE_PORT_READY);
        m.set_value(VIRTIO_CONSOLE_READY_OK);
        assert_eq!(b, [0x0d, 0x0c, 0x0b, 0x0a, 3, 0, 1, 0]);
    }

    #[test]
    fn resize_is_cols_then_rows() {
        // A RESIZE message followed by its payload: 132 columns, 43 rows.
        let bytes = [0u8, 0, 0, 0, 5, 0, 0, 0, 132, 0, 43, 0];
        let m = ConsoleControl::new_checked(&bytes[..]).unwrap();
        assert_eq!(ConsoleEvent::from(m.event()), ConsoleEvent::Resize);
        let r = ConsoleResize::new_checked(&bytes[CONSOLE_CONTROL_SIZE..]).unwrap();
        assert_eq!((r.cols(), r.rows()), (132, 43));
        assert_eq!(CONSOLE_RESIZE_SIZE, 4);
    }

    #[test]
    fn events_round_trip() {
        for v in 0..=u16::MAX {
            assert_eq!(u16::from(ConsoleEvent::from(v)), v);
        }
        assert_eq!(ConsoleEvent::from(0), ConsoleEvent::DeviceReady);
        assert_eq!(ConsoleEvent::from(7), ConsoleEvent::PortName);
        assert_eq!(ConsoleEvent::from(8), ConsoleEvent::Unknown(8));
        assert_eq!(
            [
                VIRTIO_CONSOLE_F_SIZE,
                VIRTIO_CONSOLE_F_MULTIPORT,
                VIRTIO_CONSOLE_F_EMERG_WRITE
            ],
            [0, 1, 2]
        );
    }

    #[test]
    fn queue_numbering() {
        assert_eq!(port_receiveq(0), Some(0));
        assert_eq!(port_transmitq(0), Some(1));
        assert_eq!(port_receiveq(1), Some(4));
        assert_eq!(port_transmitq(1), Some(5));
        assert_eq!(port_receiveq(2), Some(6));
        assert_eq!(port_transmitq(32766), Some(65535));
        assert_eq!(port_receiveq(32767), None);
        assert_eq!(port_transmitq(u32::MAX), None);
        assert_eq!(queue_role(3), ConsoleQueue::ControlTransmit);
        for port in [0u32, 1, 2, 100, 32766] {
            let rx = port_receiveq(port).unwrap();
            let tx = port_transmitq(port).unwrap();
            assert_eq!(queue_role(rx), ConsoleQueue::Receive { port });
            assert_eq!(queue_role(tx), ConsoleQueue::Transmit { port });
        }
        assert_eq!(num_queues(false, 8), 2);
        assert_eq!(num_queues(true, 1), 4);
        assert_eq!(num_queues(true, 4), 10);
        assert_eq!(num_queues(true, 0), 4);
    }
}
