//! The multiport control protocol (VIRTIO 1.4 §5.3.6.2): the state of each
//! port as the driver and the device have announced it, the driver's
//! messages (control transmitq) and the device's (control receiveq).
//!
//! Trust and panic contract: driver messages are untrusted bytes. Short
//! messages, unknown events, messages only the device may send, bad port
//! numbers and out-of-order messages are logged and ignored; nothing here
//! panics.
//!
//! Device messages wait in a queue until the driver offers control
//! receiveq buffers. The queue is bounded without dropping anything:
//! PORT_ADD is queued once per port, CONSOLE_PORT and PORT_NAME once per
//! successful PORT_READY (later ones are ignored), and a new PORT_OPEN or
//! RESIZE for a port replaces the one still queued for it, so it never
//! holds more than five messages per port.

use std::collections::VecDeque;

use ringwork_spec::console::{
    ConsoleControl, ConsoleEvent, ConsoleResize, CONSOLE_CONTROL_SIZE, CONSOLE_RESIZE_SIZE,
    VIRTIO_CONSOLE_CONSOLE_PORT, VIRTIO_CONSOLE_DEVICE_ADD, VIRTIO_CONSOLE_PORT_CLOSED,
    VIRTIO_CONSOLE_PORT_NAME, VIRTIO_CONSOLE_PORT_OPEN, VIRTIO_CONSOLE_PORT_OPENED,
    VIRTIO_CONSOLE_READY_FAILED, VIRTIO_CONSOLE_READY_OK, VIRTIO_CONSOLE_RESIZE,
};

use super::options::WindowSize;

/// Warnings about driver misbehaviour logged at `warn` level before the
/// rest go to `debug` (a hostile driver must not flood the log).
const LOUD_WARNINGS: u32 = 32;

/// Logs driver misbehaviour, loudly for the first [`LOUD_WARNINGS`].
#[derive(Debug, Default)]
pub(super) struct Complaints(u32);

impl Complaints {
    /// Logs `what`.
    pub(super) fn log(&mut self, what: std::fmt::Arguments<'_>) {
        if self.0 < LOUD_WARNINGS {
            self.0 += 1;
            tracing::warn!("virtio-console: {what}");
        } else {
            tracing::debug!("virtio-console: {what}");
        }
    }
}

/// A device → driver control message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ControlMsg {
    /// Port number.
    pub id: u32,
    /// `VIRTIO_CONSOLE_*` event.
    pub event: u16,
    /// Event value.
    pub value: u16,
    /// Bytes after the header (a name, a resize).
    pub payload: Vec<u8>,
}

impl ControlMsg {
    fn new(id: u32, event: u16, value: u16) -> Self {
        Self {
            id,
            event,
            value,
            payload: Vec::new(),
        }
    }

    /// The message as it goes on the wire.
    pub(super) fn encode(&self) -> Vec<u8> {
        let mut b = vec![0u8; CONSOLE_CONTROL_SIZE + self.payload.len()];
        let mut h = ConsoleControl::new_unchecked(&mut b[..CONSOLE_CONTROL_SIZE]);
        h.set_id(self.id);
        h.set_event(self.event);
        h.set_value(self.value);
        b[CONSOLE_CONTROL_SIZE..].copy_from_slice(&self.payload);
        b
    }
}

/// What the device knows about one port (static parts).
#[derive(Debug, Clone)]
pub(super) struct PortConfig {
    /// Nominated as a console (VIRTIO_CONSOLE_CONSOLE_PORT).
    pub console: bool,
    /// Name (VIRTIO_CONSOLE_PORT_NAME).
    pub name: Option<String>,
}

/// The changing host-side facts about a port the protocol announces.
#[derive(Debug, Clone, Copy)]
pub(super) struct HostSide {
    /// A host program is connected (PORT_OPEN 1/0).
    pub connected: bool,
    /// The terminal size, when known (RESIZE, console ports only).
    pub size: Option<WindowSize>,
}

/// The protocol state of one port.
#[derive(Debug, Default, Clone)]
struct PortState {
    /// PORT_ADD was queued.
    added: bool,
    /// The driver answered PORT_READY with success.
    ready: bool,
    /// The driver answered PORT_READY with failure: the port is unused.
    failed: bool,
    /// The driver's last PORT_OPEN value.
    guest_open: bool,
    /// The host-side open state last queued (after PORT_READY).
    host_open_sent: Option<bool>,
    /// The size last queued with RESIZE.
    size_sent: Option<WindowSize>,
}

/// The control protocol of one worker. See the [module docs](self).
#[derive(Debug)]
pub(super) struct Control {
    ports: Vec<PortConfig>,
    state: Vec<PortState>,
    device_ready: bool,
    out: VecDeque<ControlMsg>,
    complaints: Complaints,
}

impl Control {
    /// The state after a device reset: nothing announced.
    pub(super) fn new(ports: Vec<PortConfig>) -> Self {
        let state = vec![PortState::default(); ports.len()];
        Self {
            ports,
            state,
            device_ready: false,
            out: VecDeque::new(),
            complaints: Complaints::default(),
        }
    }

    /// Whether the driver may be given `port`'s input: the port is ready
    /// (ports MUST be added before use, §5.3.6.2.1) and is a console or
    /// was opened by the driver (Linux discards input for closed generic
    /// ports).
    pub(super) fn deliverable(&self, port: usize) -> bool {
        match (self.state.get(port), self.ports.get(port)) {
            (Some(s), Some(p)) => s.ready && (p.console || s.guest_open),
            _ => false,
        }
    }

    /// The next message for the driver, if any.
    pub(super) fn front(&self) -> Option<&ControlMsg> {
        self.out.front()
    }

    /// Drops the front message (it was delivered).
    pub(super) fn pop_front(&mut self) {
        self.out.pop_front();
    }

    /// Messages waiting for control receiveq buffers.
    #[cfg(test)]
    pub(super) fn pending(&self) -> usize {
        self.out.len()
    }

    fn push(&mut self, msg: ControlMsg) {
        if matches!(msg.event, VIRTIO_CONSOLE_PORT_OPEN | VIRTIO_CONSOLE_RESIZE) {
            self.out
                .retain(|m| !(m.id == msg.id && m.event == msg.event));
        }
        self.out.push_back(msg);
    }

    /// Handles one driver message (the readable bytes of a control
    /// transmitq buffer). `host` gives a port's host side.
    pub(super) fn handle(&mut self, bytes: &[u8], host: impl Fn(usize) -> HostSide) {
        let Ok(h) = ConsoleControl::new_checked(bytes) else {
            self.complaints.log(format_args!(
                "control message of {} bytes, shorter than its {CONSOLE_CONTROL_SIZE}-byte header",
                bytes.len()
            ));
            return;
        };
        let (id, value) = (h.id(), h.value());
        match ConsoleEvent::from(h.event()) {
            ConsoleEvent::DeviceReady => self.device_ready_msg(value),
            ConsoleEvent::PortReady => {
                if let Some(p) = self.port_for(id, "PORT_READY") {
                    self.port_ready(p, value, &host(p));
                }
            }
            ConsoleEvent::PortOpen => {
                if let Some(p) = self.port_for(id, "PORT_OPEN") {
                    self.port_open(p, value);
                }
            }
            other => self.complaints.log(format_args!(
                "ignoring control event {other:?} (value {value}) for port {id}: not one a driver sends"
            )),
        }
    }

    /// DEVICE_READY (§5.3.6.2): on success, announce every port with
    /// PORT_ADD, once (the device MUST NOT add a port that exists,
    /// §5.3.6.2.1).
    fn device_ready_msg(&mut self, value: u16) {
        match value {
            VIRTIO_CONSOLE_READY_OK if !self.device_ready => {
                self.device_ready = true;
                for p in 0..self.ports.len() {
                    self.state[p].added = true;
                    self.push(ControlMsg::new(p as u32, VIRTIO_CONSOLE_DEVICE_ADD, 0));
                }
            }
            VIRTIO_CONSOLE_READY_OK => self
                .complaints
                .log(format_args!("repeated DEVICE_READY ignored")),
            VIRTIO_CONSOLE_READY_FAILED => {
                tracing::warn!("virtio-console: the driver failed to set up the device")
            }
            v => self
                .complaints
                .log(format_args!("DEVICE_READY with value {v} ignored")),
        }
    }

    /// The port a driver message names, if it was added (and did not
    /// fail).
    fn port_for(&mut self, id: u32, what: &str) -> Option<usize> {
        let p = usize::try_from(id).ok().filter(|&p| p < self.state.len());
        match p {
            Some(p) if self.state[p].added && !self.state[p].failed => Some(p),
            Some(_) => {
                self.complaints.log(format_args!(
                    "{what} for port {id}, which was not added (or failed)"
                ));
                None
            }
            None => {
                self.complaints
                    .log(format_args!("{what} for port {id}, which does not exist"));
                None
            }
        }
    }

    /// PORT_READY (§5.3.6.2, §5.3.5 step 3): on success, tell the driver
    /// the port's configuration: CONSOLE_PORT (then the size with RESIZE,
    /// when known), PORT_NAME, and PORT_OPEN 1 when the host side is
    /// connected.
    fn port_ready(&mut self, p: usize, value: u16, host: &HostSide) {
        if self.state[p].ready {
            self.complaints
                .log(format_args!("repeated PORT_READY for port {p} ignored"));
            return;
        }
        match value {
            VIRTIO_CONSOLE_READY_OK => {}
            VIRTIO_CONSOLE_READY_FAILED => {
                tracing::warn!("virtio-console: the driver failed to set up port {p}");
                self.state[p].failed = true;
                return;
            }
            v => {
                self.complaints.log(format_args!(
                    "PORT_READY for port {p} with value {v} ignored"
                ));
                return;
            }
        }
        self.state[p].ready = true;
        let id = p as u32;
        if self.ports[p].console {
            self.push(ControlMsg::new(id, VIRTIO_CONSOLE_CONSOLE_PORT, 1));
        }
        if let Some(name) = self.ports[p].name.clone() {
            let mut m = ControlMsg::new(id, VIRTIO_CONSOLE_PORT_NAME, 1);
            m.payload = name.into_bytes();
            self.push(m);
        }
        self.sync_port(p, host);
    }

    /// PORT_OPEN from the driver: record whether the guest side is open.
    fn port_open(&mut self, p: usize, value: u16) {
        if !self.state[p].ready {
            self.complaints.log(format_args!(
                "PORT_OPEN for port {p} before PORT_READY ignored"
            ));
            return;
        }
        match value {
            VIRTIO_CONSOLE_PORT_OPENED => self.state[p].guest_open = true,
            VIRTIO_CONSOLE_PORT_CLOSED => self.state[p].guest_open = false,
            v => self.complaints.log(format_args!(
                "PORT_OPEN for port {p} with value {v} ignored"
            )),
        }
    }

    /// Announces changes of a ready port's host side: PORT_OPEN when the
    /// connection state changed, RESIZE (console ports) when the size did.
    /// Nothing before PORT_READY: PORT_READY announces the state then.
    pub(super) fn sync_port(&mut self, p: usize, host: &HostSide) {
        let Some(s) = self.state.get(p) else {
            return;
        };
        if !s.ready {
            return;
        }
        let id = p as u32;
        if self.ports[p].console && host.size.is_some() && host.size != s.size_sent {
            self.state[p].size_sent = host.size;
            if let Some(size) = host.size {
                let mut m = ControlMsg::new(id, VIRTIO_CONSOLE_RESIZE, 0);
                let mut payload = vec![0u8; CONSOLE_RESIZE_SIZE];
                let mut r = ConsoleResize::new_unchecked(&mut payload[..]);
                r.set_cols(size.cols);
                r.set_rows(size.rows);
                m.payload = payload;
                self.push(m);
            }
        }
        let s = &self.state[p];
        // The driver starts with the host side closed: announce only an
        // open host side at first, then every change.
        let announce = match s.host_open_sent {
            None => host.connected,
            Some(sent) => sent != host.connected,
        };
        self.state[p].host_open_sent = Some(host.connected);
        if announce {
            let value = if host.connected {
                VIRTIO_CONSOLE_PORT_OPENED
            } else {
                VIRTIO_CONSOLE_PORT_CLOSED
            };
            self.push(ControlMsg::new(id, VIRTIO_CONSOLE_PORT_OPEN, value));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringwork_spec::console::{VIRTIO_CONSOLE_DEVICE_READY, VIRTIO_CONSOLE_PORT_READY};

    fn msg(id: u32, event: u16, value: u16) -> Vec<u8> {
        ControlMsg::new(id, event, value).encode()
    }

    fn drain(c: &mut Control) -> Vec<(u32, u16, u16, Vec<u8>)> {
        let mut v = Vec::new();
        while let Some(m) = c.front() {
            v.push((m.id, m.event, m.value, m.payload.clone()));
            c.pop_front();
        }
        v
    }

    #[test]
    fn handshake_and_coalescing() {
        let mut c = Control::new(vec![
            PortConfig {
                console: true,
                name: None,
            },
            PortConfig {
                console: false,
                name: Some("org.test".into()),
            },
        ]);
        let up = |_| HostSide {
            connected: true,
            size: None,
        };
        c.handle(&msg(0, VIRTIO_CONSOLE_PORT_READY, 1), up);
        assert!(drain(&mut c).is_empty(), "PORT_READY before DEVICE_READY");
        c.handle(&msg(0, VIRTIO_CONSOLE_DEVICE_READY, 1), up);
        c.handle(&msg(0, VIRTIO_CONSOLE_DEVICE_READY, 1), up);
        let adds = drain(&mut c);
        assert_eq!(adds.len(), 2);
        c.handle(&msg(1, VIRTIO_CONSOLE_PORT_READY, 1), up);
        let got = drain(&mut c);
        assert_eq!(got[0].1, VIRTIO_CONSOLE_PORT_NAME);
        assert_eq!(got[0].3, b"org.test");
        assert_eq!(got[1].1, VIRTIO_CONSOLE_PORT_OPEN);
        assert!(!c.deliverable(1));
        c.handle(&msg(1, VIRTIO_CONSOLE_PORT_OPEN, 1), up);
        assert!(c.deliverable(1));
        let down = HostSide {
            connected: false,
            size: None,
        };
        c.sync_port(1, &down);
        c.sync_port(1, &up(1));
        c.sync_port(1, &down);
        let got = drain(&mut c);
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].1, got[0].2), (VIRTIO_CONSOLE_PORT_OPEN, 0));
    }

    #[test]
    fn garbage_is_ignored() {
        let mut c = Control::new(vec![PortConfig {
            console: true,
            name: None,
        }]);
        let h = |_| HostSide {
            connected: true,
            size: None,
        };
        c.handle(&[1, 2, 3], h);
        c.handle(&msg(0, 999, 1), h);
        c.handle(&msg(u32::MAX, VIRTIO_CONSOLE_PORT_READY, 1), h);
        c.handle(&msg(0, VIRTIO_CONSOLE_DEVICE_ADD, 1), h);
        assert_eq!(c.pending(), 0);
    }
}
