//! The console device driver (VIRTIO 1.4 §5.3), single port and multiport.
//!
//! Without `VIRTIO_CONSOLE_F_MULTIPORT` (or with
//! [`ConsoleOptions::multiport`] off) the device has one port, port 0, on
//! queues 0 (receiveq) and 1 (transmitq). With it, the driver sets up the
//! control queues (2, 3) and the data queues of every port up to
//! `max_nr_ports` (at most [`MAX_PORTS`]) before DRIVER_OK (§3.1.1 step 7),
//! sends `VIRTIO_CONSOLE_DEVICE_READY`, and then follows the device's
//! control messages (§5.3.6.2): DEVICE_ADD (the port's receive buffers are
//! posted and PORT_READY answered), DEVICE_REMOVE, CONSOLE_PORT (answered
//! with PORT_OPEN 1), RESIZE, PORT_OPEN and PORT_NAME.
//!
//! [`ConsoleDriver::poll`] is non-blocking: it processes one control
//! message, configuration change or received buffer and reports what
//! happened as a [`ConsoleEvent`]. [`ConsoleDriver::read`] copies received
//! input (non-blocking); [`ConsoleDriver::write`] blocks until the device
//! used the transmit buffer. Driver control messages (PORT_READY,
//! PORT_OPEN) are sent the same way, waiting until the device used them.
//!
//! # Trust and panic contract
//! The device is hostile. `max_nr_ports` is capped at [`MAX_PORTS`] (ports
//! beyond, or whose queues do not exist, are refused with PORT_READY 0);
//! control messages are checked (length, port number, port state, values,
//! UTF-8 names) and a bad one is reported as [`ConsoleError::Control`]
//! (not fatal: see [`ConsoleError::is_fatal`]); used lengths and ids are
//! checked by the queues ([`ConsoleError::Queue`], which needs a reset).
//! Memory is bounded by the options: receive buffers are allocated once per
//! port, input waits in them until read, names are at most one control
//! buffer long. Every wait is bounded ([`ConsoleError::Timeout`]). Nothing
//! here panics on device input.

mod control;
mod error;
mod port;

use alloc::vec::Vec;

pub use control::{CONTROL_BUFFERS, CONTROL_BUFFER_SIZE};
pub use error::{ConsoleError, ConsoleEvent, ControlError};
pub use port::{ConsoleSize, PortInfo, RX_BUFFER_SIZE};

use ringwork_queue::{Dma, RingFormat, Segment};
use ringwork_spec::console::{
    port_receiveq, port_transmitq, CONSOLE_CONFIG_EMERG_WR_OFFSET, CONSOLE_CONTROL_RECEIVEQ,
    CONSOLE_CONTROL_SIZE, CONSOLE_CONTROL_TRANSMITQ, CONSOLE_FEATURE_RULES,
    VIRTIO_CONSOLE_DEVICE_READY, VIRTIO_CONSOLE_F_EMERG_WRITE, VIRTIO_CONSOLE_F_MULTIPORT,
    VIRTIO_CONSOLE_F_SIZE, VIRTIO_CONSOLE_PORT_CLOSED, VIRTIO_CONSOLE_PORT_OPEN,
    VIRTIO_CONSOLE_PORT_OPENED, VIRTIO_CONSOLE_READY_OK,
};
use ringwork_spec::device_id::VIRTIO_ID_CONSOLE;
use ringwork_spec::features::FeatureSet;
use ringwork_spec::status::DeviceStatus;
use ringwork_transport::driver::{self, read_config_consistent, ConfigRead, Transport};

use crate::common::{
    self, check_device, kick, pop_or_arm, ring_format, ring_supports, set_failed, wait_for,
    Detached, DmaRegion, IrqState, LeakOnDrop, RingPreference, SetupError,
};
use control::ControlQueues;
use port::{Port, PortQueues};

/// Ports the driver serves at most, whatever `max_nr_ports` says.
pub const MAX_PORTS: u32 = 32;

/// Bytes per transmit buffer: longer writes go in several.
pub const TX_BUFFER_SIZE: usize = 1024;

/// Configuration offsets of `cols`, `rows`, `max_nr_ports` (those of
/// `ringwork_spec::console::ConsoleConfig`, checked by a test).
const COLS_OFFSET: usize = 0;
const ROWS_OFFSET: usize = 2;
const MAX_NR_PORTS_OFFSET: usize = 4;

/// How to set up a [`ConsoleDriver`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsoleOptions {
    /// Accept `VIRTIO_CONSOLE_F_MULTIPORT` if offered.
    pub multiport: bool,
    /// Entries per queue wanted (clamped to each queue's maximum, and to a
    /// power of two for split rings).
    pub queue_size: u16,
    /// Ring format.
    pub ring: RingPreference,
    /// Receive buffers per port (at least 1; at most the queue size).
    pub rx_buffers: u16,
}

impl Default for ConsoleOptions {
    /// Multiport if offered, queues of 64 entries, packed rings if offered,
    /// 4 receive buffers per port.
    fn default() -> Self {
        Self {
            multiport: true,
            queue_size: 64,
            ring: RingPreference::Auto,
            rx_buffers: 4,
        }
    }
}

/// The parsed configuration (VIRTIO 1.4 §5.3.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsoleConfig {
    /// `cols` / `rows` (`VIRTIO_CONSOLE_F_SIZE`; port 0).
    pub size: Option<ConsoleSize>,
    /// `max_nr_ports` (`VIRTIO_CONSOLE_F_MULTIPORT`), as the device says.
    pub max_nr_ports: Option<u32>,
    /// `VIRTIO_CONSOLE_F_EMERG_WRITE`: `emerg_wr` is usable.
    pub emerg_wr: bool,
}

/// Everything the device may access.
pub(crate) struct ConsoleState<D: Dma> {
    ports: Vec<Option<PortQueues<D>>>,
    ctrl: Option<ControlQueues<D>>,
    tx_mem: Option<DmaRegion<D>>,
}

impl<D: Dma> Default for ConsoleState<D> {
    fn default() -> Self {
        Self {
            ports: Vec::new(),
            ctrl: None,
            tx_mem: None,
        }
    }
}

/// A virtio console driver. See the [module docs](self).
///
/// Dropping the driver without [`ConsoleDriver::reset`] leaves the device
/// running; its queue memory is then leaked rather than freed.
pub struct ConsoleDriver<T: Transport, D: Dma + Clone> {
    transport: T,
    dma: D,
    features: FeatureSet,
    format: RingFormat,
    config: ConsoleConfig,
    multiport: bool,
    rx_buffers: u16,
    ports: Vec<Port>,
    state: LeakOnDrop<ConsoleState<D>>,
    irq: IrqState,
    /// An error met by `read` (which cannot return one), reported by the
    /// next `poll`.
    deferred: Option<ConsoleError>,
    next_rx: usize,
    broken: bool,
}

impl<T: Transport, D: Dma + Clone> core::fmt::Debug for ConsoleDriver<T, D> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ConsoleDriver")
            .field("features", &self.features)
            .field("format", &self.format)
            .field("config", &self.config)
            .field("multiport", &self.multiport)
            .field("ports", &self.ports)
            .finish_non_exhaustive()
    }
}

/// Reads the configuration fields of the negotiated features.
fn read_config<T: Transport + ?Sized>(
    t: &mut T,
    features: FeatureSet,
) -> Result<ConsoleConfig, SetupError> {
    Ok(read_config_consistent(t, |t| {
        let size = features
            .contains(VIRTIO_CONSOLE_F_SIZE)
            .then(|| ConsoleSize {
                cols: t.config_u16(COLS_OFFSET),
                rows: t.config_u16(ROWS_OFFSET),
            });
        let max_nr_ports = features
            .contains(VIRTIO_CONSOLE_F_MULTIPORT)
            .then(|| t.config_u32(MAX_NR_PORTS_OFFSET));
        ConsoleConfig {
            size,
            max_nr_ports,
            emerg_wr: features.contains(VIRTIO_CONSOLE_F_EMERG_WRITE),
        }
    })?)
}

impl<T: Transport, D: Dma + Clone> ConsoleDriver<T, D> {
    /// Initializes the device (VIRTIO 1.4 §3.1.1, §5.3.5): negotiates
    /// SIZE, EMERG_WRITE, MULTIPORT (if asked for) and the ring features,
    /// sets up the queues, posts receive buffers (port 0, or the control
    /// receiveq), sets DRIVER_OK and, with MULTIPORT, sends DEVICE_READY.
    /// On failure the device is left with FAILED set.
    pub fn new(mut transport: T, dma: D, opts: ConsoleOptions) -> Result<Self, ConsoleError> {
        check_device(&transport, VIRTIO_ID_CONSOLE)?;
        if opts.rx_buffers == 0 {
            return Err(SetupError::BadOption {
                option: "rx_buffers",
                reason: "must not be 0",
            }
            .into());
        }
        let mut supports =
            FeatureSet::from_bits(&[VIRTIO_CONSOLE_F_SIZE, VIRTIO_CONSOLE_F_EMERG_WRITE])
                .union(ring_supports(opts.ring));
        if opts.multiport {
            supports.insert(VIRTIO_CONSOLE_F_MULTIPORT);
        }
        let features = driver::negotiate(&mut transport, supports, CONSOLE_FEATURE_RULES)?;
        let mut state = LeakOnDrop::new(ConsoleState::default());
        let setup = Self::setup(&mut transport, &dma, features, opts, &mut state);
        let (format, config, nports, rx_buffers) = match setup {
            Ok(v) => v,
            Err(e) => {
                set_failed(&mut transport);
                return Err(e);
            }
        };
        let multiport = features.contains(VIRTIO_CONSOLE_F_MULTIPORT);
        let mut ports: Vec<Port> = (0..nports).map(|_| Port::default()).collect();
        if !multiport {
            if let Some(p) = ports.get_mut(0) {
                p.added = true;
                p.info.guest_open = true;
            }
        }
        driver::set_driver_ok(&mut transport);
        let mut d = Self {
            transport,
            dma,
            features,
            format,
            config,
            multiport,
            rx_buffers,
            ports,
            state,
            irq: IrqState::default(),
            deferred: None,
            next_rx: 0,
            broken: false,
        };
        d.start()?;
        Ok(d)
    }

    /// §3.1.1 step 7: configuration, queues, receive buffers (not yet
    /// notified: no notification before DRIVER_OK).
    fn setup(
        t: &mut T,
        dma: &D,
        features: FeatureSet,
        opts: ConsoleOptions,
        state: &mut ConsoleState<D>,
    ) -> Result<(RingFormat, ConsoleConfig, usize, u16), ConsoleError> {
        let (format, qf) = ring_format(t, features, opts.ring)?;
        let config = read_config(t, features)?;
        let multiport = features.contains(VIRTIO_CONSOLE_F_MULTIPORT);
        let nports = if multiport {
            // §5.3.2: port 0 always exists.
            config.max_nr_ports.unwrap_or(1).clamp(1, MAX_PORTS)
        } else {
            1
        };
        let mut rx_buffers = opts.rx_buffers;
        for port in 0..nports {
            let (Some(rxq), Some(txq)) = (port_receiveq(port), port_transmitq(port)) else {
                state.ports.push(None);
                continue;
            };
            let exists = t.max_queue_size(rxq) != 0 && t.max_queue_size(txq) != 0;
            if !exists && port != 0 {
                // A port the driver will refuse when the device adds it.
                state.ports.push(None);
                continue;
            }
            let rs = common::queue_size(t, rxq, opts.queue_size, format)?;
            let ts = common::queue_size(t, txq, opts.queue_size, format)?;
            rx_buffers = rx_buffers.min(rs);
            let rx = common::make_queue(t, dma.clone(), rxq, rs, format, qf, None)?;
            let tx = common::make_queue(t, dma.clone(), txq, ts, format, qf, None)?;
            state.ports.push(Some(PortQueues {
                rx,
                tx,
                rx_mem: None,
            }));
        }
        if multiport {
            let rs = common::queue_size(t, CONSOLE_CONTROL_RECEIVEQ, opts.queue_size, format)?;
            let ts = common::queue_size(t, CONSOLE_CONTROL_TRANSMITQ, opts.queue_size, format)?;
            let rx = common::make_queue(
                t,
                dma.clone(),
                CONSOLE_CONTROL_RECEIVEQ,
                rs,
                format,
                qf,
                None,
            )?;
            let tx = common::make_queue(
                t,
                dma.clone(),
                CONSOLE_CONTROL_TRANSMITQ,
                ts,
                format,
                qf,
                None,
            )?;
            let buffers = rs.min(CONTROL_BUFFERS);
            let rx_mem =
                DmaRegion::new(dma.clone(), usize::from(buffers) * CONTROL_BUFFER_SIZE, 64)?;
            let tx_mem = DmaRegion::new(dma.clone(), CONSOLE_CONTROL_SIZE, 64)?;
            let mut ctrl = ControlQueues {
                rx,
                tx,
                rx_mem,
                tx_mem,
            };
            for slot in 0..buffers {
                ctrl.post(slot)?;
            }
            state.ctrl = Some(ctrl);
        } else if let Some(Some(p0)) = state.ports.get_mut(0) {
            p0.fill(t, dma, rx_buffers, false)?;
        }
        state.tx_mem = Some(DmaRegion::new(dma.clone(), TX_BUFFER_SIZE, 64)?);
        Ok((format, config, nports as usize, rx_buffers))
    }

    /// After DRIVER_OK: notifies the device of the posted receive buffers
    /// and, with MULTIPORT, sends DEVICE_READY (§5.3.6.2.2: MUST).
    fn start(&mut self) -> Result<(), ConsoleError> {
        if let Some(ctrl) = self.state.ctrl.as_mut() {
            let queue = ctrl.rx.config().index;
            kick(&mut self.transport, &mut ctrl.rx)
                .map_err(|source| ConsoleError::Queue { queue, source })?;
            self.send_control(0, VIRTIO_CONSOLE_DEVICE_READY, VIRTIO_CONSOLE_READY_OK)
        } else if let Some(Some(p0)) = self.state.ports.get_mut(0) {
            p0.kick(&mut self.transport)
        } else {
            Ok(())
        }
    }

    /// The parsed configuration.
    pub fn config(&self) -> &ConsoleConfig {
        &self.config
    }

    /// The negotiated features.
    pub fn features(&self) -> FeatureSet {
        self.features
    }

    /// The ring format in use.
    pub fn ring_format(&self) -> RingFormat {
        self.format
    }

    /// Whether `VIRTIO_CONSOLE_F_MULTIPORT` is in use.
    pub fn is_multiport(&self) -> bool {
        self.multiport
    }

    /// The transport.
    pub fn transport(&mut self) -> &mut T {
        &mut self.transport
    }

    /// The DMA allocator.
    pub fn dma(&self) -> &D {
        &self.dma
    }

    /// The ports that exist now (added by the device; port 0 without
    /// MULTIPORT), in increasing order.
    pub fn ports(&self) -> impl Iterator<Item = u32> + '_ {
        self.ports
            .iter()
            .enumerate()
            .filter(|(_, p)| p.added)
            .map(|(i, _)| i as u32)
    }

    /// What the driver knows about an existing port.
    pub fn port_info(&self, port: u32) -> Option<&PortInfo> {
        self.port(port).map(|p| &p.info)
    }

    /// The name the device gave an existing port.
    pub fn port_name(&self, port: u32) -> Option<&str> {
        self.port_info(port)?.name.as_deref()
    }

    fn port(&self, port: u32) -> Option<&Port> {
        self.ports.get(port as usize).filter(|p| p.added)
    }

    /// Processes what the device did, one thing at a time, and reports it;
    /// `None` when there is nothing (used buffer notifications are re-armed
    /// then). Configuration changes come first, then control messages, then
    /// input. A [`ConsoleError::Control`] error is about one message; call
    /// again.
    pub fn poll(&mut self) -> Result<Option<ConsoleEvent>, ConsoleError> {
        if let Some(e) = self.deferred.take() {
            return Err(e);
        }
        let cause = self.transport.ack_interrupt();
        let seen = core::mem::take(&mut self.irq.config_changed);
        if cause.config_changed || seen {
            if let Some(e) = self.config_changed()? {
                return Ok(Some(e));
            }
        }
        // Bounded: each round consumes one control buffer.
        for _ in 0..=CONTROL_BUFFERS {
            match self.take_control()? {
                Some(Some(event)) => return Ok(Some(event)),
                Some(None) => continue,
                None => break,
            }
        }
        let n = self.ports.len();
        for i in 0..n {
            let p = (self.next_rx + i) % n;
            let (Some(Some(q)), Some(port)) = (self.state.ports.get_mut(p), self.ports.get_mut(p))
            else {
                continue;
            };
            if let Some(event) = q.take_input(p as u32, port)? {
                self.next_rx = (p + 1) % n;
                return Ok(Some(event));
            }
        }
        Ok(None)
    }

    /// A configuration change: DEVICE_NEEDS_RESET, or a new size for port
    /// 0 (§5.3.6 item 3).
    fn config_changed(&mut self) -> Result<Option<ConsoleEvent>, ConsoleError> {
        if self
            .transport
            .status()
            .contains(DeviceStatus::DEVICE_NEEDS_RESET)
        {
            return Err(ConsoleError::NeedsReset);
        }
        let new = read_config(&mut self.transport, self.features)?;
        let old = core::mem::replace(&mut self.config.size, new.size);
        match new.size {
            Some(s) if old != Some(s) => Ok(Some(ConsoleEvent::Resize {
                port: 0,
                cols: s.cols,
                rows: s.rows,
            })),
            _ => Ok(None),
        }
    }

    /// Copies input received for `port` into `buf` (non-blocking); returns
    /// the bytes copied, 0 when none is waiting or the port does not exist.
    /// Emptied receive buffers go back to the device.
    pub fn read(&mut self, port: u32, buf: &mut [u8]) -> usize {
        let p = port as usize;
        let (Some(Some(q)), Some(st)) = (self.state.ports.get_mut(p), self.ports.get_mut(p)) else {
            return 0;
        };
        if !st.added {
            return 0;
        }
        let (n, r) = q.read(st, buf);
        let r = match r {
            Ok(true) => q.kick(&mut self.transport),
            Ok(false) => Ok(()),
            Err(e) => Err(e),
        };
        if let Err(e) = r {
            self.deferred.get_or_insert(e);
        }
        n
    }

    /// Whether input is waiting for `port`.
    pub fn has_input(&self, port: u32) -> bool {
        self.port(port).is_some_and(|p| p.has_input())
    }

    /// Writes `data` to `port`, in buffers of [`TX_BUFFER_SIZE`] bytes,
    /// waiting (bounded) until the device used each.
    pub fn write(&mut self, port: u32, data: &[u8]) -> Result<(), ConsoleError> {
        if self.broken {
            return Err(ConsoleError::Broken);
        }
        if self.port(port).is_none() {
            return Err(ConsoleError::NoSuchPort { port });
        }
        let Self {
            transport,
            state,
            irq,
            ..
        } = self;
        let st = &mut **state;
        let (Some(Some(q)), Some(mem)) = (st.ports.get_mut(port as usize), st.tx_mem.as_ref())
        else {
            return Err(ConsoleError::NoSuchPort { port });
        };
        let queue = q.tx.config().index;
        let qerr = |source| ConsoleError::Queue { queue, source };
        let mut result = Ok(());
        for chunk in data.chunks(TX_BUFFER_SIZE) {
            if mem.slice().write_bytes(0, chunk).is_err() {
                break;
            }
            let seg = Segment::new(mem.addr(0), chunk.len() as u32);
            if let Err(r) = q.tx.add(&[seg], &[], ()) {
                result = Err(qerr(match r.error {
                    ringwork_queue::AddError::Broken => ringwork_queue::UsedError::Broken,
                    _ => ringwork_queue::UsedError::BadId { id: 0 },
                }));
                break;
            }
            if let Err(e) = kick(transport, &mut q.tx) {
                result = Err(qerr(e));
                break;
            }
            result = wait_for(transport, irq, || {
                pop_or_arm(&mut q.tx).map(|u| u.map(|_| ())).map_err(qerr)
            });
            if result.is_err() {
                break;
            }
        }
        if matches!(result, Err(ConsoleError::Timeout)) {
            self.broken = true;
        }
        result
    }

    /// Announces `port` open to the device (`VIRTIO_CONSOLE_PORT_OPEN` 1);
    /// a no-op without MULTIPORT.
    pub fn open_port(&mut self, port: u32) -> Result<(), ConsoleError> {
        self.set_open(port, true)
    }

    /// Announces `port` closed to the device (`VIRTIO_CONSOLE_PORT_OPEN`
    /// 0); a no-op without MULTIPORT.
    pub fn close_port(&mut self, port: u32) -> Result<(), ConsoleError> {
        self.set_open(port, false)
    }

    fn set_open(&mut self, port: u32, open: bool) -> Result<(), ConsoleError> {
        if self.port(port).is_none() {
            return Err(ConsoleError::NoSuchPort { port });
        }
        if self.multiport {
            let value = if open {
                VIRTIO_CONSOLE_PORT_OPENED
            } else {
                VIRTIO_CONSOLE_PORT_CLOSED
            };
            self.send_control(port, VIRTIO_CONSOLE_PORT_OPEN, value)?;
        }
        if let Some(p) = self.ports.get_mut(port as usize) {
            p.info.guest_open = open;
        }
        Ok(())
    }

    /// Writes one character to `emerg_wr` (`VIRTIO_CONSOLE_F_EMERG_WRITE`,
    /// §5.3.5): works without queues.
    pub fn emergency_write(&mut self, byte: u8) -> Result<(), ConsoleError> {
        if !self.config.emerg_wr {
            return Err(ConsoleError::NotNegotiated {
                feature: "VIRTIO_CONSOLE_F_EMERG_WRITE",
            });
        }
        self.transport.write_config(
            CONSOLE_CONFIG_EMERG_WR_OFFSET,
            &u32::from(byte).to_le_bytes(),
        );
        Ok(())
    }

    /// Resets the device (§2.4) and hands back the transport. When the
    /// reset does not complete, the queue memory is leaked, not freed.
    pub fn reset(self) -> Detached<T> {
        let mut s = self;
        let reset = s.transport.reset();
        if reset.is_ok() {
            s.state.disarm();
        }
        Detached {
            transport: s.transport,
            tokens: Vec::new(),
            reset,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringwork_spec::console::{ConsoleConfig as Wire, CONSOLE_CONFIG_SIZE};

    #[test]
    fn offsets_match_the_spec_layout() {
        let mut b = [0u8; CONSOLE_CONFIG_SIZE];
        let mut c = Wire::new_unchecked(&mut b[..]);
        c.set_cols(0x0102);
        c.set_rows(0x0304);
        c.set_max_nr_ports(0x0506_0708);
        assert_eq!(
            u16::from_le_bytes([b[COLS_OFFSET], b[COLS_OFFSET + 1]]),
            0x0102
        );
        assert_eq!(
            u16::from_le_bytes([b[ROWS_OFFSET], b[ROWS_OFFSET + 1]]),
            0x0304
        );
        let m = &b[MAX_NR_PORTS_OFFSET..MAX_NR_PORTS_OFFSET + 4];
        assert_eq!(u32::from_le_bytes([m[0], m[1], m[2], m[3]]), 0x0506_0708);
    }
}
