//! The multiport control protocol, driver side (VIRTIO 1.4 §5.3.6.2):
//! device messages from the control receiveq (one buffer each, reposted
//! before the message is acted on) and driver messages to the control
//! transmitq (sent one at a time, waiting until the device used them).
//!
//! Every device message is checked: its length, the port number against
//! `max_nr_ports` and the driver's own port limit, the port's state (added
//! or not), values and names. A bad message gives a [`ControlError`] and
//! is otherwise ignored.

use alloc::string::String;

use ringwork_queue::{Dma, DriverQueue, Segment};
use ringwork_spec::console::{
    ConsoleControl, ConsoleEvent as Wire, ConsoleResize, CONSOLE_CONTROL_SIZE, CONSOLE_RESIZE_SIZE,
    VIRTIO_CONSOLE_PORT_OPEN, VIRTIO_CONSOLE_PORT_READY, VIRTIO_CONSOLE_READY_FAILED,
    VIRTIO_CONSOLE_READY_OK,
};
use ringwork_transport::driver::Transport;

use super::error::{ConsoleError, ConsoleEvent, ControlError};
use super::port::ConsoleSize;
use super::ConsoleDriver;
use crate::common::{kick, pop_or_arm, wait_for, DmaRegion};

/// Bytes per control receive buffer: a header and a name of up to 504
/// bytes.
pub const CONTROL_BUFFER_SIZE: usize = 512;

/// Control receive buffers (fewer with a smaller queue).
pub const CONTROL_BUFFERS: u16 = 8;

/// The control queues and their buffers.
pub(crate) struct ControlQueues<D: Dma> {
    pub rx: DriverQueue<D, u16>,
    pub tx: DriverQueue<D, ()>,
    pub rx_mem: DmaRegion<D>,
    pub tx_mem: DmaRegion<D>,
}

impl<D: Dma> ControlQueues<D> {
    /// Makes control receive buffer `slot` available.
    pub(crate) fn post(&mut self, slot: u16) -> Result<(), ConsoleError> {
        let queue = self.rx.config().index;
        let seg = Segment::new(
            self.rx_mem.addr(usize::from(slot) * CONTROL_BUFFER_SIZE),
            CONTROL_BUFFER_SIZE as u32,
        );
        self.rx.add(&[], &[seg], slot).map(|_| ()).map_err(|r| {
            let source = match r.error {
                ringwork_queue::AddError::Broken => ringwork_queue::UsedError::Broken,
                _ => ringwork_queue::UsedError::BadId { id: slot.into() },
            };
            ConsoleError::Queue { queue, source }
        })
    }
}

impl<T: Transport, D: Dma + Clone> ConsoleDriver<T, D> {
    /// Takes one control message and acts on it. `Ok(None)`: none waiting.
    pub(crate) fn take_control(&mut self) -> Result<Option<Option<ConsoleEvent>>, ConsoleError> {
        let mut msg = [0u8; CONTROL_BUFFER_SIZE];
        let len = {
            let Some(ctrl) = self.state.ctrl.as_mut() else {
                return Ok(None);
            };
            let queue = ctrl.rx.config().index;
            let Some(used) =
                pop_or_arm(&mut ctrl.rx).map_err(|source| ConsoleError::Queue { queue, source })?
            else {
                return Ok(None);
            };
            // The queue checked the length against the buffer.
            let len = (used.len as usize).min(CONTROL_BUFFER_SIZE);
            let off = usize::from(used.token) * CONTROL_BUFFER_SIZE;
            let copied = ctrl.rx_mem.slice().read_bytes(off, &mut msg[..len]);
            // The buffer goes back before the message is acted on, so a bad
            // message never costs a buffer.
            ctrl.post(used.token)?;
            kick(&mut self.transport, &mut ctrl.rx)
                .map_err(|source| ConsoleError::Queue { queue, source })?;
            if copied.is_err() {
                return Ok(Some(None));
            }
            len
        };
        self.handle_control(&msg[..len]).map(Some)
    }

    /// Acts on one device message.
    fn handle_control(&mut self, msg: &[u8]) -> Result<Option<ConsoleEvent>, ConsoleError> {
        let Ok(h) = ConsoleControl::new_checked(msg) else {
            return Err(ControlError::Truncated {
                len: msg.len() as u32,
                needed: CONSOLE_CONTROL_SIZE as u32,
            }
            .into());
        };
        let (port, event, value) = (h.id(), h.event(), h.value());
        let payload = &msg[CONSOLE_CONTROL_SIZE..];
        let max_nr_ports = self.config.max_nr_ports.unwrap_or(1);
        if port >= max_nr_ports {
            return Err(ControlError::BadPort { port, max_nr_ports }.into());
        }
        let wire = Wire::from(event);
        if wire == Wire::DeviceAdd {
            return self.port_add(port);
        }
        // Every other message is about an added port.
        let known = matches!(
            wire,
            Wire::DeviceRemove | Wire::ConsolePort | Wire::Resize | Wire::PortOpen | Wire::PortName
        );
        if !known {
            return Err(ControlError::UnexpectedEvent { port, event }.into());
        }
        let p = port as usize;
        if !self.ports.get(p).is_some_and(|s| s.added) {
            return Err(ControlError::UnknownPort { port }.into());
        }
        match wire {
            Wire::DeviceRemove => {
                let slots: alloc::vec::Vec<u16> = self.ports[p].remove().collect();
                if let Some(Some(q)) = self.state.ports.get_mut(p) {
                    for slot in slots {
                        q.post(slot)?;
                    }
                    q.kick(&mut self.transport)?;
                }
                Ok(Some(ConsoleEvent::PortRemoved { port }))
            }
            Wire::ConsolePort => {
                self.ports[p].info.console = true;
                // §5.3.6.2.2: MUST answer with PORT_OPEN 1.
                self.send_control(port, VIRTIO_CONSOLE_PORT_OPEN, 1)?;
                self.ports[p].info.guest_open = true;
                Ok(Some(ConsoleEvent::ConsolePort { port }))
            }
            Wire::Resize => {
                let Ok(r) = ConsoleResize::new_checked(payload) else {
                    return Err(ControlError::Truncated {
                        len: msg.len() as u32,
                        needed: (CONSOLE_CONTROL_SIZE + CONSOLE_RESIZE_SIZE) as u32,
                    }
                    .into());
                };
                let (cols, rows) = (r.cols(), r.rows());
                self.ports[p].info.size = Some(ConsoleSize { cols, rows });
                Ok(Some(ConsoleEvent::Resize { port, cols, rows }))
            }
            Wire::PortOpen => {
                let open = match value {
                    0 => false,
                    1 => true,
                    _ => return Err(ControlError::BadValue { event, value }.into()),
                };
                self.ports[p].info.host_open = open;
                Ok(Some(ConsoleEvent::PortOpened { port, open }))
            }
            _ => {
                // PORT_NAME: UTF-8, no NUL terminator (some devices send
                // one anyway: cut at the first NUL).
                let end = payload
                    .iter()
                    .position(|&b| b == 0)
                    .unwrap_or(payload.len());
                let Ok(name) = core::str::from_utf8(&payload[..end]) else {
                    return Err(ControlError::BadName { port }.into());
                };
                let name = String::from(name);
                self.ports[p].info.name = Some(name.clone());
                Ok(Some(ConsoleEvent::PortName { port, name }))
            }
        }
    }

    /// DEVICE_ADD: set the port up and answer PORT_READY (§5.3.5 step 3).
    fn port_add(&mut self, port: u32) -> Result<Option<ConsoleEvent>, ConsoleError> {
        let p = port as usize;
        if self.ports.get(p).is_some_and(|s| s.added) {
            return Err(ControlError::DuplicatePort { port }.into());
        }
        let buffers = self.rx_buffers;
        let ready = match self.state.ports.get_mut(p) {
            Some(Some(q)) => q
                .fill(&mut self.transport, &self.dma, buffers, true)
                .map(|()| true),
            _ => Ok(false),
        };
        match ready {
            Ok(true) => {
                self.send_control(port, VIRTIO_CONSOLE_PORT_READY, VIRTIO_CONSOLE_READY_OK)?;
                if let Some(s) = self.ports.get_mut(p) {
                    s.added = true;
                }
                Ok(Some(ConsoleEvent::PortAdded { port }))
            }
            Ok(false) | Err(ConsoleError::Setup(_)) => {
                self.send_control(port, VIRTIO_CONSOLE_PORT_READY, VIRTIO_CONSOLE_READY_FAILED)?;
                Err(ControlError::PortUnavailable { port }.into())
            }
            Err(e) => Err(e),
        }
    }

    /// Sends a driver message and waits (bounded) until the device used
    /// it.
    pub(crate) fn send_control(
        &mut self,
        port: u32,
        event: u16,
        value: u16,
    ) -> Result<(), ConsoleError> {
        if self.broken {
            return Err(ConsoleError::Broken);
        }
        let Self {
            transport,
            state,
            irq,
            ..
        } = self;
        let Some(ctrl) = state.ctrl.as_mut() else {
            return Err(ConsoleError::NotNegotiated {
                feature: "VIRTIO_CONSOLE_F_MULTIPORT",
            });
        };
        let queue = ctrl.tx.config().index;
        let mut bytes = [0u8; CONSOLE_CONTROL_SIZE];
        {
            let mut m = ConsoleControl::new_unchecked(&mut bytes[..]);
            m.set_id(port);
            m.set_event(event);
            m.set_value(value);
        }
        let _ = ctrl.tx_mem.slice().write_bytes(0, &bytes);
        let seg = Segment::new(ctrl.tx_mem.addr(0), CONSOLE_CONTROL_SIZE as u32);
        // §5.3.6.1: only device-readable buffers in a transmitq.
        ctrl.tx
            .add(&[seg], &[], ())
            .map_err(|r| ConsoleError::Queue {
                queue,
                source: match r.error {
                    ringwork_queue::AddError::Broken => ringwork_queue::UsedError::Broken,
                    _ => ringwork_queue::UsedError::BadId { id: 0 },
                },
            })?;
        kick(transport, &mut ctrl.tx).map_err(|source| ConsoleError::Queue { queue, source })?;
        let r = wait_for(transport, irq, || {
            pop_or_arm(&mut ctrl.tx)
                .map(|u| u.map(|_| ()))
                .map_err(|source| ConsoleError::Queue { queue, source })
        });
        if matches!(r, Err(ConsoleError::Timeout)) {
            self.broken = true;
        }
        r
    }
}
