//! The console's control path: [`Console`], its features, queues and
//! configuration space (VIRTIO 1.4 §5.3.2–§5.3.4), and emergency writes
//! (§5.3.5.1).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use ringwork_spec::console::{
    num_queues, ConsoleConfig, CONSOLE_CONFIG_EMERG_WR_OFFSET, CONSOLE_CONFIG_SIZE,
    VIRTIO_CONSOLE_F_EMERG_WRITE, VIRTIO_CONSOLE_F_MULTIPORT, VIRTIO_CONSOLE_F_SIZE,
};
use ringwork_spec::device_id::{DeviceType, VIRTIO_ID_CONSOLE};

use super::backend::PortIo;
use super::control::PortConfig;
use super::options::{ConsoleError, ConsoleOptions, WindowSize, MAX_PORTS};
use super::poller::{Poller, Wake};
use super::worker::{
    lock, pack_size, unpack_size, ConsoleWorker, PortMeta, Shared, WorkerSetup, EMERG_MAX,
};
use crate::model::{Device, DeviceError, DeviceEvents, QueueWorker};
use crate::ring_features;

/// The console device. See the [module docs](super).
#[derive(Debug)]
pub struct Console {
    meta: Vec<PortMeta>,
    shared: Arc<Mutex<Shared>>,
    wake: Wake,
    multiport: bool,
    features: u64,
    /// Port 0's size as the configuration space shows it (see
    /// [`pack_size`]).
    config_size: Arc<AtomicU32>,
    pty_paths: Vec<Option<PathBuf>>,
    socket_paths: Vec<Option<PathBuf>>,
}

fn check_names(opts: &ConsoleOptions) -> Result<(), ConsoleError> {
    let mut seen = BTreeSet::new();
    for (port, spec) in opts.ports.iter().enumerate() {
        let Some(name) = &spec.name else {
            continue;
        };
        if name.is_empty() || name.contains('\0') {
            return Err(ConsoleError::BadName {
                port,
                name: name.clone(),
            });
        }
        if !seen.insert(name.as_str()) {
            return Err(ConsoleError::DuplicateName(name.clone()));
        }
    }
    Ok(())
}

impl Console {
    /// Builds a console: opens every port's backend (binds sockets, opens
    /// ptys). Multiport is offered when asked for, when there is more than
    /// one port, or when a port has a name.
    pub fn new(opts: ConsoleOptions) -> Result<Self, ConsoleError> {
        if opts.ports.is_empty() {
            return Err(ConsoleError::NoPorts);
        }
        if opts.ports.len() > MAX_PORTS {
            return Err(ConsoleError::TooManyPorts(opts.ports.len()));
        }
        check_names(&opts)?;
        let multiport =
            opts.multiport || opts.ports.len() > 1 || opts.ports.iter().any(|p| p.name.is_some());
        let mut meta = Vec::new();
        let mut io = Vec::new();
        for (i, spec) in opts.ports.into_iter().enumerate() {
            let fixed = if i == 0 { opts.size } else { None };
            let port = PortIo::open(spec.backend, fixed)?;
            let size = fixed.or_else(|| port.window_size());
            meta.push(PortMeta {
                config: PortConfig {
                    // Without multiport, port 0 is the console anyway.
                    console: spec.console || (i == 0 && !multiport),
                    name: spec.name,
                },
                follow_size: fixed.is_none(),
                size,
            });
            io.push(port);
        }
        let port0_size = meta[0].size;
        let mut features = ring_features();
        if multiport {
            features |= 1 << VIRTIO_CONSOLE_F_MULTIPORT;
        }
        if port0_size.is_some() {
            features |= 1 << VIRTIO_CONSOLE_F_SIZE;
        }
        if opts.emerg_write {
            features |= 1 << VIRTIO_CONSOLE_F_EMERG_WRITE;
        }
        Ok(Self {
            pty_paths: io
                .iter()
                .map(|p| p.pty_path().map(Path::to_owned))
                .collect(),
            socket_paths: io
                .iter()
                .map(|p| p.socket_path().map(Path::to_owned))
                .collect(),
            meta,
            shared: Arc::new(Mutex::new(Shared {
                ports: Some(io),
                ..Shared::default()
            })),
            wake: Wake::new().map_err(ConsoleError::Wake)?,
            multiport,
            features,
            config_size: Arc::new(AtomicU32::new(pack_size(port0_size))),
        })
    }

    /// The number of ports.
    pub fn num_ports(&self) -> usize {
        self.meta.len()
    }

    /// Whether VIRTIO_CONSOLE_F_MULTIPORT is offered.
    pub fn is_multiport(&self) -> bool {
        self.multiport
    }

    /// The slave path of port `port`'s pseudo-terminal (`/dev/pts/N`), for
    /// a [`PortBackend::Pty`](super::PortBackend::Pty) port.
    pub fn pty_path(&self, port: usize) -> Option<&Path> {
        self.pty_paths.get(port)?.as_deref()
    }

    /// The socket path of a
    /// [`PortBackend::UnixSocket`](super::PortBackend::UnixSocket) port.
    pub fn socket_path(&self, port: usize) -> Option<&Path> {
        self.socket_paths.get(port)?.as_deref()
    }

    /// Port 0's console size as the configuration space shows it.
    pub fn window_size(&self) -> Option<WindowSize> {
        unpack_size(self.config_size.load(Ordering::Acquire))
    }

    /// An emergency write (§5.3.5.1: allowed even on an unconfigured
    /// device): straight to port 0's backend when no worker runs, else
    /// handed to the worker (bounded; excess dropped).
    fn emergency_write(&self, byte: u8) {
        let mut shared = lock(&self.shared);
        if let Some(port0) = shared.ports.as_mut().and_then(|p| p.first_mut()) {
            port0.emergency_write(byte);
            return;
        }
        if shared.emerg.len() < EMERG_MAX {
            shared.emerg.push(byte);
        }
        drop(shared);
        self.wake.ring();
    }
}

impl Device for Console {
    fn device_type(&self) -> DeviceType {
        DeviceType(VIRTIO_ID_CONSOLE)
    }

    fn features(&self) -> u64 {
        self.features
    }

    fn num_queues(&self) -> u16 {
        // At most 2 * MAX_PORTS + 2 = 65534.
        num_queues(self.multiport, self.meta.len() as u32) as u16
    }

    /// `cols`/`rows` (port 0's size, 0 when unknown), `max_nr_ports` (the
    /// number of ports) and `emerg_wr` (reads as 0).
    fn config(&self) -> Vec<u8> {
        let mut b = vec![0u8; CONSOLE_CONFIG_SIZE];
        let mut c = ConsoleConfig::new_unchecked(&mut b[..]);
        let size = self.window_size();
        c.set_cols(size.map_or(0, |s| s.cols));
        c.set_rows(size.map_or(0, |s| s.rows));
        c.set_max_nr_ports(self.meta.len() as u32);
        b
    }

    /// A write covering `emerg_wr`'s low byte is an emergency write when
    /// VIRTIO_CONSOLE_F_EMERG_WRITE is offered (whether or not it was
    /// negotiated, §5.3.4); every other write is ignored.
    fn write_config(&self, offset: u32, data: &[u8]) {
        if self.features & (1 << VIRTIO_CONSOLE_F_EMERG_WRITE) == 0 {
            return;
        }
        let at = (CONSOLE_CONFIG_EMERG_WR_OFFSET as u64).checked_sub(u64::from(offset));
        if let Some(&byte) = at.and_then(|i| data.get(usize::try_from(i).ok()?)) {
            self.emergency_write(byte);
        }
    }

    /// Forgets the control protocol state (the driver starts again with
    /// DEVICE_READY); the backends, their connections and buffered data
    /// stay.
    fn reset(&self) {
        let mut shared = lock(&self.shared);
        shared.control = None;
        shared.resets += 1;
    }

    fn worker_map(&self) -> Vec<Vec<u16>> {
        vec![(0..self.num_queues()).collect()]
    }

    fn start_worker(
        &self,
        _queues: &[u16],
        features: u64,
        events: Arc<dyn DeviceEvents>,
    ) -> Result<Box<dyn QueueWorker>, DeviceError> {
        let io_err = |what| move |source| DeviceError::Io { what, source };
        let wake = self
            .wake
            .try_clone()
            .map_err(io_err("console wake-up socket"))?;
        let poller = Poller::new().map_err(io_err("console epoll"))?;
        let (io, control, resets) = {
            let mut shared = lock(&self.shared);
            let io = shared
                .ports
                .take()
                .ok_or(DeviceError::Unsupported("a second console worker"))?;
            (io, shared.control.take(), shared.resets)
        };
        Ok(Box::new(ConsoleWorker::new(WorkerSetup {
            shared: self.shared.clone(),
            io,
            control,
            resets,
            meta: self.meta.clone(),
            multiport: self.multiport && features & (1 << VIRTIO_CONSOLE_F_MULTIPORT) != 0,
            size_feature: features & (1 << VIRTIO_CONSOLE_F_SIZE) != 0,
            config_size: self.config_size.clone(),
            events,
            wake,
            poller,
        })))
    }
}
