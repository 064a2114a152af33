//! The SCSI host device (VIRTIO 1.4 §5.6): raw image files served as
//! direct-access logical units on several targets, with 1 to N request
//! queues, task management on the control queue and hot-plug events on
//! the event queue.
//!
//! ```no_run
//! use ringwork_device::scsi::{LunSpec, Scsi, ScsiOptions};
//!
//! let scsi = Scsi::open(ScsiOptions {
//!     luns: vec![LunSpec::new(0, 0, "disk0.raw")],
//!     num_queues: 2,
//!     ..ScsiOptions::default()
//! })?;
//! // From any thread, while a driver runs the device:
//! let h = scsi.handle();
//! h.add_lun(LunSpec { readonly: true, ..LunSpec::new(0, 1, "disk1.raw") })?;
//! h.remove_lun(0, 1)?;
//! # Ok::<(), ringwork_device::scsi::ScsiError>(())
//! ```
//!
//! Addressing (§5.6.6.1): `lun[0]` = 1, `lun[1]` = target, `lun[2..4]` a
//! single-level LUN (flat space or peripheral addressing), four zero
//! bytes; the REPORT LUNS well-known LU (`C1 01 ...`) lists target 0. A
//! target with no LUN is `VIRTIO_SCSI_S_BAD_TARGET`; on an existing target
//! a missing LUN answers INQUIRY with peripheral qualifier 3 and device
//! type 1Fh, REPORT LUNS on LUN 0, and everything else with CHECK
//! CONDITION, ILLEGAL REQUEST, LOGICAL UNIT NOT SUPPORTED.
//!
//! Commands emulated ([`cdb`]): TEST UNIT READY, REQUEST SENSE, INQUIRY
//! (standard data and VPD pages 00h, 80h, 83h, B0h, B1h, B2h), MODE SENSE
//! (6/10; caching and control pages), START STOP UNIT, READ CAPACITY
//! (10/16), READ and WRITE (6/10/12/16), SYNCHRONIZE CACHE (10/16,
//! `fdatasync`), UNMAP and WRITE SAME (10/16; hole punching), REPORT
//! LUNS. Anything else is CHECK CONDITION with fixed-format sense data
//! ([`sense`]).
//!
//! Features offered: the [ring features](crate::ring_features),
//! `VIRTIO_SCSI_F_INOUT`, `VIRTIO_SCSI_F_HOTPLUG` and
//! `VIRTIO_SCSI_F_CHANGE` (no parameter change is ever due: see
//! [`Scsi::features`](crate::model::Device::features)). Without
//! `VIRTIO_SCSI_F_INOUT`, a request with both data-in and data-out buffers
//! is answered `VIRTIO_SCSI_S_FAILURE`; without `VIRTIO_SCSI_F_HOTPLUG`,
//! LUN changes are reported only as unit attention conditions (REPORTED
//! LUNS DATA HAS CHANGED on the other LUNs of the target).
//!
//! Trust and panic contract: everything the driver sends is validated
//! (see the `request`, `control` and `events` modules); malformed requests get a
//! virtio-scsi response or sense data, a descriptor outside guest memory
//! breaks its queue. Nothing panics on driver input or host I/O errors.

pub mod cdb;
mod control;
mod events;
mod exec;
mod inquiry;
mod lun;
mod mode;
mod options;
mod request;
pub mod sense;
mod sys;
mod tasks;
mod worker;

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use ringwork_spec::device_id::{DeviceType, VIRTIO_ID_SCSI};
use ringwork_spec::scsi::{
    ScsiConfig, MAX_LUN_HINT, SCSI_CONFIG_CDB_SIZE_OFFSET, SCSI_CONFIG_SENSE_SIZE_OFFSET,
    SCSI_CONFIG_SIZE, SCSI_EVENT_SIZE, VIRTIO_SCSI_CDB_DEFAULT_SIZE, VIRTIO_SCSI_EVT_RESET_REMOVED,
    VIRTIO_SCSI_EVT_RESET_RESCAN, VIRTIO_SCSI_F_CHANGE, VIRTIO_SCSI_F_HOTPLUG, VIRTIO_SCSI_F_INOUT,
    VIRTIO_SCSI_SENSE_DEFAULT_SIZE, VIRTIO_SCSI_T_TRANSPORT_RESET,
};

pub use control::TMF_WAIT;
pub use events::MAX_PENDING_EVENTS;
pub use lun::{
    MAX_TRANSFER_BYTES, MAX_UNMAP_BYTES, MAX_UNMAP_DESCRIPTORS, UNMAP_GRANULARITY_BYTES,
};
pub use options::{LunSpec, ScsiError, ScsiOptions, MAX_QUEUES};

use crate::model::{Device, DeviceError, DeviceEvents, QueueWorker};
use crate::ring_features;
use events::{Event, Events};
use lun::{Lun, LunTable};
use tasks::Tasks;
use worker::ScsiWorker;

/// `cmd_per_lun` in the configuration space (at most the queue size).
pub const CMD_PER_LUN: u32 = 128;

/// State shared by the device, its workers and its handles.
#[derive(Debug)]
struct Shared {
    luns: LunTable,
    tasks: Tasks,
    events: Events,
    sense_size: AtomicU32,
    cdb_size: AtomicU32,
    features: AtomicU64,
}

impl Shared {
    fn hotplug(&self) -> bool {
        self.features.load(Ordering::SeqCst) & (1 << VIRTIO_SCSI_F_HOTPLUG) != 0
    }
}

/// A virtio-scsi device. See the [module docs](self).
#[derive(Debug)]
pub struct Scsi {
    shared: Arc<Shared>,
    opts: ScsiOptions,
}

/// Adds and removes logical units of a running [`Scsi`] device from any
/// thread; with `VIRTIO_SCSI_F_HOTPLUG` negotiated, the driver is told on
/// the event queue (`VIRTIO_SCSI_T_TRANSPORT_RESET` with
/// `VIRTIO_SCSI_EVT_RESET_RESCAN` or `_REMOVED`, §5.6.6.3).
#[derive(Debug, Clone)]
pub struct ScsiHandle {
    shared: Arc<Shared>,
}

impl ScsiHandle {
    /// Opens `spec`'s image and adds the LUN.
    pub fn add_lun(&self, spec: LunSpec) -> Result<(), ScsiError> {
        let lun = Lun::open(&spec)?;
        self.shared.luns.insert(lun)?;
        self.event(spec.target, spec.lun, VIRTIO_SCSI_EVT_RESET_RESCAN);
        Ok(())
    }

    /// Removes a LUN; commands already running on it finish.
    pub fn remove_lun(&self, target: u8, lun: u16) -> Result<(), ScsiError> {
        self.shared.luns.remove(target, lun)?;
        self.event(target, lun, VIRTIO_SCSI_EVT_RESET_REMOVED);
        Ok(())
    }

    /// The LUNs present, as (target, lun), ascending.
    pub fn luns(&self) -> Vec<(u8, u16)> {
        self.shared
            .luns
            .all()
            .iter()
            .map(|l| (l.info.target, l.info.lun))
            .collect()
    }

    fn event(&self, target: u8, lun: u16, reason: u32) {
        // §5.6.6.3: no RESCAN/REMOVED events without VIRTIO_SCSI_F_HOTPLUG.
        if self.shared.hotplug() {
            self.shared.events.push(Event {
                event: VIRTIO_SCSI_T_TRANSPORT_RESET,
                target,
                lun,
                reason,
            });
        }
    }
}

impl Scsi {
    /// Opens every LUN's image and checks every option.
    pub fn open(opts: ScsiOptions) -> Result<Self, ScsiError> {
        opts.validate()?;
        let luns = LunTable::default();
        for spec in &opts.luns {
            luns.insert(Lun::open(spec)?)?;
        }
        // Nothing can be pending at start.
        for l in luns.all() {
            l.take_unit_attention();
        }
        Ok(Self {
            shared: Arc::new(Shared {
                luns,
                tasks: Tasks::default(),
                events: Events::new().map_err(ScsiError::EventFd)?,
                sense_size: AtomicU32::new(VIRTIO_SCSI_SENSE_DEFAULT_SIZE),
                cdb_size: AtomicU32::new(VIRTIO_SCSI_CDB_DEFAULT_SIZE),
                features: AtomicU64::new(0),
            }),
            opts,
        })
    }

    /// A handle to add and remove LUNs from other threads.
    pub fn handle(&self) -> ScsiHandle {
        ScsiHandle {
            shared: self.shared.clone(),
        }
    }

    /// The options the device was opened with (the LUNs at start).
    pub fn options(&self) -> &ScsiOptions {
        &self.opts
    }
}

impl Device for Scsi {
    fn device_type(&self) -> DeviceType {
        DeviceType(VIRTIO_ID_SCSI)
    }

    /// §5.6.3: INOUT, HOTPLUG and CHANGE (no T10_PI). CHANGE is offered
    /// because QEMU's vhost-user-scsi passes it through to the guest
    /// unfiltered (and acknowledges it whether the backend offered it or
    /// not); a LUN's parameters never change while it exists (its
    /// capacity and caching are fixed when it is opened), so no
    /// `VIRTIO_SCSI_T_PARAM_CHANGE` event is ever due.
    fn features(&self) -> u64 {
        ring_features()
            | (1 << VIRTIO_SCSI_F_INOUT)
            | (1 << VIRTIO_SCSI_F_HOTPLUG)
            | (1 << VIRTIO_SCSI_F_CHANGE)
    }

    fn num_queues(&self) -> u16 {
        2 + self.opts.num_queues
    }

    fn max_queue_size(&self) -> u16 {
        self.opts.queue_size
    }

    /// `struct virtio_scsi_config` (§5.6.4), all 36 bytes.
    fn config(&self) -> Vec<u8> {
        let mut bytes = vec![0u8; SCSI_CONFIG_SIZE];
        let Ok(mut c) = ScsiConfig::new_checked(&mut bytes[..]) else {
            return bytes;
        };
        let o = &self.opts;
        c.set_num_queues(u32::from(o.num_queues));
        c.set_seg_max(u32::from(o.queue_size) - 2);
        c.set_max_sectors(MAX_TRANSFER_BYTES / 512);
        c.set_cmd_per_lun(CMD_PER_LUN.min(u32::from(o.queue_size)));
        c.set_event_info_size(SCSI_EVENT_SIZE as u32);
        c.set_sense_size(self.shared.sense_size.load(Ordering::SeqCst));
        c.set_cdb_size(self.shared.cdb_size.load(Ordering::SeqCst));
        c.set_max_channel(0);
        c.set_max_target(o.max_target);
        c.set_max_lun(MAX_LUN_HINT);
        bytes
    }

    /// Only `sense_size` and `cdb_size` are writable (any byte-aligned
    /// part of them); writes elsewhere are ignored.
    fn write_config(&self, offset: u32, data: &[u8]) {
        let mut cfg = self.config();
        let start = offset as usize;
        for (i, &b) in data.iter().enumerate() {
            let at = start.saturating_add(i);
            if (SCSI_CONFIG_SENSE_SIZE_OFFSET..SCSI_CONFIG_CDB_SIZE_OFFSET + 4).contains(&at) {
                cfg[at] = b;
            } else {
                tracing::debug!(offset = at, "ignored write to read-only SCSI config byte");
            }
        }
        let Ok(c) = ScsiConfig::new_checked(&cfg[..]) else {
            return;
        };
        self.shared
            .sense_size
            .store(c.sense_size(), Ordering::SeqCst);
        self.shared.cdb_size.store(c.cdb_size(), Ordering::SeqCst);
    }

    fn set_features(&self, features: u64) {
        self.shared.features.store(features, Ordering::SeqCst);
    }

    fn start_worker(
        &self,
        queues: &[u16],
        features: u64,
        _events: Arc<dyn DeviceEvents>,
    ) -> Result<Box<dyn QueueWorker>, DeviceError> {
        let inout = features & (1 << VIRTIO_SCSI_F_INOUT) != 0;
        Ok(Box::new(ScsiWorker::new(
            self.shared.clone(),
            queues,
            inout,
        )))
    }

    /// §5.6.4: `sense_size` and `cdb_size` back to 96 and 32; pending
    /// events and the negotiated features are forgotten.
    fn reset(&self) {
        let s = &self.shared;
        s.sense_size
            .store(VIRTIO_SCSI_SENSE_DEFAULT_SIZE, Ordering::SeqCst);
        s.cdb_size
            .store(VIRTIO_SCSI_CDB_DEFAULT_SIZE, Ordering::SeqCst);
        s.features.store(0, Ordering::SeqCst);
        s.events.reset();
    }
}
