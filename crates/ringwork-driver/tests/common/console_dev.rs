//! A fake console device, single port or multiport: records what the
//! driver sends (control messages, output per port), delivers input and
//! control messages as the driver makes buffers available, and can answer
//! the driver the way a real device does (ports added after DEVICE_READY;
//! CONSOLE_PORT, PORT_NAME and PORT_OPEN after PORT_READY). Tests can also
//! send any bytes as a control message (hostile ones included).

use std::collections::{BTreeMap, VecDeque};

use ringwork_queue::test_utils::TestMemory;
use ringwork_spec::console::{
    port_receiveq, queue_role, ConsoleConfig, ConsoleControl, ConsoleQueue, CONSOLE_CONFIG_SIZE,
    CONSOLE_CONTROL_RECEIVEQ, VIRTIO_CONSOLE_CONSOLE_PORT, VIRTIO_CONSOLE_DEVICE_ADD,
    VIRTIO_CONSOLE_DEVICE_READY, VIRTIO_CONSOLE_F_MULTIPORT, VIRTIO_CONSOLE_F_SIZE,
    VIRTIO_CONSOLE_PORT_NAME, VIRTIO_CONSOLE_PORT_OPEN, VIRTIO_CONSOLE_PORT_READY,
};
use ringwork_spec::device_id::{DeviceType, VIRTIO_ID_CONSOLE};
use ringwork_spec::features::{
    FeatureSet, VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC, VIRTIO_F_RING_PACKED,
};
use ringwork_spec::ring::notify::NotificationData;
use ringwork_transport::{Activation, DeviceError, Signals, VirtioDevice};

use super::{read_all, Queues};

/// A port the device announces after DEVICE_READY.
#[derive(Debug, Clone)]
pub struct PortSpec {
    /// Port number.
    pub id: u32,
    /// Name (PORT_NAME).
    pub name: Option<&'static str>,
    /// Console port (CONSOLE_PORT).
    pub console: bool,
}

/// The fake console. See the [module docs](self).
pub struct ConsoleDev<'m> {
    mem: &'m TestMemory,
    /// Offered features.
    pub features: FeatureSet,
    /// The configuration space.
    pub config: [u8; CONSOLE_CONFIG_SIZE],
    /// Queue maximum sizes.
    pub max_sizes: Vec<u16>,
    /// Ports added once the driver is ready.
    pub auto_ports: Vec<PortSpec>,
    /// Control messages the driver sent: (id, event, value).
    pub control_in: Vec<(u32, u16, u16)>,
    /// Output per port.
    pub output: BTreeMap<u32, Vec<u8>>,
    /// Most bytes per receive buffer delivered.
    pub input_chunk: usize,
    /// Bytes written to `emerg_wr`.
    pub emergency: Vec<u8>,
    /// Buffers taken from a receiveq (port or control).
    pub rx_buffers_seen: usize,
    /// Device-readable bytes in them (the driver must put none, §5.3.6.1).
    pub rx_readable_seen: usize,
    outbox: VecDeque<Vec<u8>>,
    input: BTreeMap<u32, VecDeque<u8>>,
    queues: Queues,
}

impl<'m> ConsoleDev<'m> {
    /// A console with `max_nr_ports` ports (MULTIPORT offered when above
    /// 0, with all the port queues), SIZE (80x25) and the ring features
    /// (no IN_ORDER).
    pub fn new(mem: &'m TestMemory, max_nr_ports: u32) -> Self {
        let mut features = FeatureSet::from_bits(&[
            VIRTIO_CONSOLE_F_SIZE,
            VIRTIO_F_RING_PACKED,
            VIRTIO_F_EVENT_IDX,
            VIRTIO_F_INDIRECT_DESC,
        ]);
        let queues = if max_nr_ports > 0 {
            features.insert(VIRTIO_CONSOLE_F_MULTIPORT);
            (2 * max_nr_ports.min(64) + 2) as usize
        } else {
            2
        };
        let mut d = Self {
            mem,
            features,
            config: [0u8; CONSOLE_CONFIG_SIZE],
            max_sizes: vec![64; queues],
            auto_ports: Vec::new(),
            control_in: Vec::new(),
            output: BTreeMap::new(),
            input_chunk: usize::MAX,
            emergency: Vec::new(),
            rx_buffers_seen: 0,
            rx_readable_seen: 0,
            outbox: VecDeque::new(),
            input: BTreeMap::new(),
            queues: Queues::default(),
        };
        d.edit(|c| {
            c.set_cols(80);
            c.set_rows(25);
            c.set_max_nr_ports(max_nr_ports);
        });
        d
    }

    /// Edits the configuration space.
    pub fn edit(&mut self, f: impl FnOnce(&mut ConsoleConfig<&mut [u8]>)) {
        f(&mut ConsoleConfig::new_unchecked(&mut self.config[..]));
    }

    /// Changes the console size and signals a configuration change.
    pub fn resize(&mut self, cols: u16, rows: u16) {
        self.edit(|c| {
            c.set_cols(cols);
            c.set_rows(rows);
        });
        if let Some(s) = self.queues.signals() {
            s.config_changed();
        }
    }

    /// The device's signal handle (after DRIVER_OK).
    pub fn signals(&self) -> Option<Signals> {
        self.queues.signals().cloned()
    }

    /// Sends a control message with `payload`.
    pub fn send(&mut self, id: u32, event: u16, value: u16, payload: &[u8]) {
        let mut b = vec![0u8; 8];
        let mut m = ConsoleControl::new_unchecked(&mut b[..]);
        m.set_id(id);
        m.set_event(event);
        m.set_value(value);
        b.extend_from_slice(payload);
        self.send_raw(b);
    }

    /// Sends any bytes as a control message.
    pub fn send_raw(&mut self, bytes: Vec<u8>) {
        self.outbox.push_back(bytes);
        self.deliver_control();
    }

    /// Control messages waiting for buffers.
    pub fn pending_control(&self) -> usize {
        self.outbox.len()
    }

    /// Queues input for `port`.
    pub fn push_input(&mut self, port: u32, bytes: &[u8]) {
        self.input.entry(port).or_default().extend(bytes);
        self.deliver_input(port);
    }

    /// Input not yet delivered.
    pub fn pending_input(&self, port: u32) -> usize {
        self.input.get(&port).map_or(0, |q| q.len())
    }

    fn deliver_control(&mut self) {
        while !self.outbox.is_empty() {
            let Some(chain) = self.queues.pop(self.mem, CONSOLE_CONTROL_RECEIVEQ) else {
                return;
            };
            self.rx_buffers_seen += 1;
            self.rx_readable_seen += chain.readable_len() as usize;
            let msg = self.outbox.pop_front().unwrap_or_default();
            let mut w = chain.writer(self.mem);
            w.write(&msg).expect("write control message");
            let n = w.bytes_written();
            self.queues
                .used(self.mem, CONSOLE_CONTROL_RECEIVEQ, chain.token(), n);
        }
    }

    fn deliver_input(&mut self, port: u32) {
        let Some(q) = port_receiveq(port) else { return };
        loop {
            let Some(pending) = self.input.get_mut(&port).filter(|p| !p.is_empty()) else {
                return;
            };
            let Some(chain) = self.queues.pop(self.mem, q) else {
                return;
            };
            self.rx_buffers_seen += 1;
            self.rx_readable_seen += chain.readable_len() as usize;
            let n = pending
                .len()
                .min(chain.writable_len() as usize)
                .min(self.input_chunk);
            let bytes: Vec<u8> = pending.drain(..n).collect();
            let mut w = chain.writer(self.mem);
            w.write(&bytes).expect("write input");
            let len = w.bytes_written();
            self.queues.used(self.mem, q, chain.token(), len);
        }
    }

    fn control_message(&mut self, id: u32, event: u16, value: u16) {
        self.control_in.push((id, event, value));
        match event {
            VIRTIO_CONSOLE_DEVICE_READY if value == 1 => {
                for p in self.auto_ports.clone() {
                    self.send(p.id, VIRTIO_CONSOLE_DEVICE_ADD, 0, &[]);
                }
            }
            VIRTIO_CONSOLE_PORT_READY if value == 1 => {
                let Some(p) = self.auto_ports.iter().find(|p| p.id == id).cloned() else {
                    return;
                };
                if p.console {
                    self.send(id, VIRTIO_CONSOLE_CONSOLE_PORT, 1, &[]);
                }
                if let Some(name) = p.name {
                    self.send(id, VIRTIO_CONSOLE_PORT_NAME, 0, name.as_bytes());
                }
                self.send(id, VIRTIO_CONSOLE_PORT_OPEN, 1, &[]);
            }
            _ => {}
        }
    }
}

impl VirtioDevice for ConsoleDev<'_> {
    fn device_type(&self) -> DeviceType {
        DeviceType(VIRTIO_ID_CONSOLE)
    }
    fn device_features(&self) -> FeatureSet {
        self.features
    }
    fn queue_max_sizes(&self) -> &[u16] {
        &self.max_sizes
    }
    fn config_len(&self) -> usize {
        CONSOLE_CONFIG_SIZE
    }
    fn read_config(&self, offset: usize, data: &mut [u8]) {
        data.copy_from_slice(&self.config[offset..offset + data.len()]);
    }
    fn write_config(&mut self, offset: usize, data: &[u8]) {
        if offset == 8 {
            self.emergency.push(data[0]);
        }
    }
    fn activate(&mut self, a: Activation, s: Signals) -> Result<(), DeviceError> {
        self.queues.activate(a, s);
        Ok(())
    }
    fn reset(&mut self) {
        self.queues.reset();
        self.outbox.clear();
    }
    fn queue_notify(&mut self, queue: u16, _: Option<NotificationData>) {
        match queue_role(queue) {
            ConsoleQueue::ControlReceive => self.deliver_control(),
            ConsoleQueue::ControlTransmit => {
                while let Some(chain) = self.queues.pop(self.mem, queue) {
                    let bytes = read_all(self.mem, &chain);
                    assert_eq!(chain.writable_len(), 0, "device-writable control tx");
                    self.queues.used(self.mem, queue, chain.token(), 0);
                    if let Ok(m) = ConsoleControl::new_checked(&bytes[..]) {
                        self.control_message(m.id(), m.event(), m.value());
                    }
                }
            }
            ConsoleQueue::Receive { port } => self.deliver_input(port),
            ConsoleQueue::Transmit { port } => {
                while let Some(chain) = self.queues.pop(self.mem, queue) {
                    assert_eq!(chain.writable_len(), 0, "device-writable tx buffer");
                    let bytes = read_all(self.mem, &chain);
                    self.output.entry(port).or_default().extend(bytes);
                    self.queues.used(self.mem, queue, chain.token(), 0);
                }
            }
        }
    }
}
