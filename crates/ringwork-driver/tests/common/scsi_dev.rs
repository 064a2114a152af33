//! A fake virtio-scsi host: one RAM disk of [`BLOCKS`] 512-byte blocks
//! per LUN in `luns`, serving INQUIRY, TEST UNIT READY (with a pending
//! unit attention), READ CAPACITY (16), READ (16), WRITE (16), REPORT
//! LUNS; task management and AN requests on the control queue; events
//! pushed on demand (with EVENTS_MISSED when no buffer was there). Records
//! what the driver sent, and can hold commands or lie about `sense_len`,
//! `residual` and used lengths.

use std::collections::BTreeMap;

use ringwork_queue::test_utils::TestMemory;
use ringwork_queue::DescChain;
use ringwork_spec::device_id::{DeviceType, VIRTIO_ID_SCSI};
use ringwork_spec::features::{
    FeatureSet, VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC, VIRTIO_F_RING_PACKED,
};
use ringwork_spec::ring::notify::NotificationData;
use ringwork_spec::scsi::*;
use ringwork_transport::{Activation, DeviceError, Signals, VirtioDevice};

use super::{read_all, Queues};

/// Blocks per LUN.
pub const BLOCKS: u64 = 64;

/// A command as the device received it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// The request queue (virtqueue index).
    pub queue: u16,
    /// `lun`.
    pub lun: [u8; 8],
    /// `id`.
    pub id: u64,
    /// `task_attr`, `prio`, `crn`.
    pub attrs: [u8; 3],
    /// `cdb[cdb_size]`.
    pub cdb: Vec<u8>,
    /// Device-readable bytes after the header.
    pub data_out: usize,
    /// Device-writable bytes after the response header.
    pub data_in: usize,
}

/// The fake device. See the [module docs](self).
pub struct ScsiDev<'m> {
    mem: &'m TestMemory,
    /// Offered features.
    pub features: FeatureSet,
    /// Negotiated features.
    pub negotiated: FeatureSet,
    /// The configuration space (36 bytes), as fields.
    pub num_queues: u32,
    /// `seg_max`.
    pub seg_max: u32,
    /// `cmd_per_lun`.
    pub cmd_per_lun: u32,
    /// `event_info_size`.
    pub event_info_size: u32,
    /// `sense_size`.
    pub sense_size: u32,
    /// `cdb_size`.
    pub cdb_size: u32,
    /// `max_target`.
    pub max_target: u16,
    /// `max_lun`.
    pub max_lun: u32,
    /// Queue maximum sizes.
    pub max_sizes: Vec<u16>,
    /// Disks by (target, lun).
    pub luns: BTreeMap<(u8, u16), Vec<u8>>,
    /// A unit attention pending on every LUN (reported once by TUR).
    pub unit_attention: bool,
    /// Commands received.
    pub seen: Vec<Seen>,
    /// Control requests received: (type, subtype or events, lun, id).
    pub controls: Vec<(u32, u32, [u8; 8], u64)>,
    /// TMF response to give.
    pub tmf_response: u8,
    /// Configuration writes (offset, bytes) — the driver must make none.
    pub config_writes: Vec<(usize, Vec<u8>)>,
    /// Hold commands instead of completing them.
    pub hold: bool,
    /// Write this `sense_len` instead of the real one.
    pub sense_len: Option<u32>,
    /// Write this `residual` instead of the real one.
    pub residual: Option<u32>,
    /// Report this used length for commands.
    pub used_len: Option<u32>,
    /// Report this used length for events.
    pub event_used_len: Option<u32>,
    /// Event buffers the driver made available: (readable, writable) bytes.
    pub event_buffers_seen: Vec<(u32, u32)>,
    /// Events were lost (no buffer): the next one carries bit 31.
    pub missed: bool,
    queues: Queues,
    held: Vec<(u16, DescChain)>,
    event_bufs: Vec<DescChain>,
}

impl<'m> ScsiDev<'m> {
    /// A device offering INOUT, HOTPLUG, CHANGE and T10_PI, two request
    /// queues, LUNs 0:0 and 0:1 and 1:300.
    pub fn new(mem: &'m TestMemory) -> Self {
        let disk = vec![0u8; BLOCKS as usize * 512];
        Self {
            mem,
            features: FeatureSet::from_bits(&[
                VIRTIO_F_RING_PACKED,
                VIRTIO_F_EVENT_IDX,
                VIRTIO_F_INDIRECT_DESC,
                VIRTIO_SCSI_F_INOUT,
                VIRTIO_SCSI_F_HOTPLUG,
                VIRTIO_SCSI_F_CHANGE,
                VIRTIO_SCSI_F_T10_PI,
            ]),
            negotiated: FeatureSet::new(),
            num_queues: 2,
            seg_max: 126,
            cmd_per_lun: 128,
            event_info_size: 16,
            sense_size: VIRTIO_SCSI_SENSE_DEFAULT_SIZE,
            cdb_size: VIRTIO_SCSI_CDB_DEFAULT_SIZE,
            max_target: 255,
            max_lun: 16383,
            max_sizes: vec![128; 4],
            luns: [(0, 0), (0, 1), (1, 300)]
                .into_iter()
                .map(|k| (k, disk.clone()))
                .collect(),
            unit_attention: false,
            seen: Vec::new(),
            controls: Vec::new(),
            tmf_response: VIRTIO_SCSI_S_FUNCTION_COMPLETE,
            config_writes: Vec::new(),
            hold: false,
            sense_len: None,
            residual: None,
            used_len: None,
            event_used_len: None,
            event_buffers_seen: Vec::new(),
            missed: false,
            queues: Queues::default(),
            held: Vec::new(),
            event_bufs: Vec::new(),
        }
    }

    fn config(&self) -> [u8; 36] {
        let mut b = [0u8; 36];
        let mut c = ScsiConfig::new_unchecked(&mut b[..]);
        c.set_num_queues(self.num_queues);
        c.set_seg_max(self.seg_max);
        c.set_max_sectors(0xffff);
        c.set_cmd_per_lun(self.cmd_per_lun);
        c.set_event_info_size(self.event_info_size);
        c.set_sense_size(self.sense_size);
        c.set_cdb_size(self.cdb_size);
        c.set_max_target(self.max_target);
        c.set_max_lun(self.max_lun);
        b
    }

    /// Completes held commands (with `response`).
    pub fn release(&mut self, response: u8) {
        for (q, c) in std::mem::take(&mut self.held) {
            self.finish(q, c, response);
        }
    }

    /// Commands held.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// Event buffers the device holds.
    pub fn event_buffers(&self) -> usize {
        self.event_bufs.len()
    }

    /// Reports an event; with no buffer, remembers it was missed.
    pub fn push_event(&mut self, event: u32, lun: [u8; 8], reason: u32) -> bool {
        if self.event_bufs.is_empty() {
            self.missed = true;
            return false;
        }
        let c = self.event_bufs.remove(0);
        let mut b = [0u8; 16];
        let missed = if std::mem::take(&mut self.missed) {
            VIRTIO_SCSI_T_EVENTS_MISSED
        } else {
            0
        };
        b[0..4].copy_from_slice(&(event | missed).to_le_bytes());
        b[4..12].copy_from_slice(&lun);
        b[12..16].copy_from_slice(&reason.to_le_bytes());
        let n = c.writer(self.mem).write(&b).unwrap() as u32;
        let len = self.event_used_len.unwrap_or(n);
        self.queues
            .used(self.mem, EVENTQ_INDEX as u16, c.token(), len);
        true
    }

    fn lun_of(lun: &[u8; 8]) -> Option<(u8, u16)> {
        match decode_lun(lun) {
            ScsiLun::Lun { target, lun } => Some((target, lun)),
            _ => None,
        }
    }

    /// Executes a command: (response, status, sense, data in, data-out
    /// bytes consumed).
    fn exec(&mut self, s: &Seen, out: &[u8]) -> (u8, u8, Vec<u8>, Vec<u8>) {
        let Some(key) = Self::lun_of(&s.lun) else {
            return (VIRTIO_SCSI_S_BAD_TARGET, 0, vec![], vec![]);
        };
        if !self.luns.keys().any(|k| k.0 == key.0) {
            return (VIRTIO_SCSI_S_BAD_TARGET, 0, vec![], vec![]);
        }
        let check = |key: u8, asc: u8| {
            let mut sense = vec![0u8; 18];
            sense[0] = 0x70;
            sense[2] = key;
            sense[7] = 10;
            sense[12] = asc;
            (VIRTIO_SCSI_S_OK, 2u8, sense, vec![])
        };
        let cdb = &s.cdb;
        if cdb[0] == 0xa0 {
            let mut d = vec![0u8; 8];
            for k in self.luns.keys().filter(|k| k.0 == key.0) {
                let l = k.1;
                let e = if l < 256 {
                    [0, l as u8]
                } else {
                    [0x40 | (l >> 8) as u8, l as u8]
                };
                d.extend_from_slice(&[e[0], e[1], 0, 0, 0, 0, 0, 0]);
            }
            let n = (d.len() - 8) as u32;
            d[0..4].copy_from_slice(&n.to_be_bytes());
            return (VIRTIO_SCSI_S_OK, 0, vec![], d);
        }
        let Some(disk) = self.luns.get_mut(&key) else {
            return check(5, 0x25); // LOGICAL UNIT NOT SUPPORTED
        };
        let be64 = |b: &[u8]| u64::from_be_bytes(b[..8].try_into().unwrap());
        let be32 = |b: &[u8]| u32::from_be_bytes(b[..4].try_into().unwrap());
        match cdb[0] {
            0x00 => {
                if std::mem::take(&mut self.unit_attention) {
                    check(6, 0x29) // POWER ON, RESET
                } else {
                    (VIRTIO_SCSI_S_OK, 0, vec![], vec![])
                }
            }
            0x12 => {
                let mut d = vec![0u8; 36];
                d[2] = 6;
                d[3] = 2;
                d[4] = 31;
                d[8..16].copy_from_slice(b"RINGWORK");
                d[16..32].copy_from_slice(b"FAKE DISK       ");
                (VIRTIO_SCSI_S_OK, 0, vec![], d)
            }
            0x9e => {
                let mut d = vec![0u8; 32];
                d[0..8].copy_from_slice(&(BLOCKS - 1).to_be_bytes());
                d[8..12].copy_from_slice(&512u32.to_be_bytes());
                (VIRTIO_SCSI_S_OK, 0, vec![], d)
            }
            0x88 | 0x8a => {
                let lba = be64(&cdb[2..]);
                let n = u64::from(be32(&cdb[10..]));
                if lba + n > BLOCKS {
                    return check(5, 0x21); // LBA OUT OF RANGE
                }
                let r = lba as usize * 512..(lba + n) as usize * 512;
                if cdb[0] == 0x88 {
                    (VIRTIO_SCSI_S_OK, 0, vec![], disk[r].to_vec())
                } else {
                    if out.len() < r.len() {
                        return (VIRTIO_SCSI_S_OVERRUN, 0, vec![], vec![]);
                    }
                    disk[r.clone()].copy_from_slice(&out[..r.len()]);
                    (VIRTIO_SCSI_S_OK, 0, vec![], vec![])
                }
            }
            _ => check(5, 0x20), // INVALID COMMAND OPERATION CODE
        }
    }

    fn finish(&mut self, q: u16, c: DescChain, forced: u8) {
        let bytes = read_all(self.mem, &c);
        let hlen = req_cmd_size(self.cdb_size);
        let s = self.parse(q, &c, &bytes);
        let (response, status, sense, data) = if forced != 0xff {
            (forced, 0, vec![], vec![])
        } else {
            self.exec(&s, bytes.get(hlen..).unwrap_or(&[]))
        };
        let rlen = resp_cmd_size(self.sense_size);
        let mut resp = vec![0u8; rlen];
        let data_len = (s.data_out + s.data_in) as u32;
        let moved = if s.data_in > 0 {
            data.len().min(s.data_in)
        } else {
            s.data_out.min(data_len as usize)
        } as u32;
        let n = sense.len().min(self.sense_size as usize);
        resp[0..4].copy_from_slice(&self.sense_len.unwrap_or(n as u32).to_le_bytes());
        let residual = self.residual.unwrap_or(data_len.saturating_sub(moved));
        resp[4..8].copy_from_slice(&residual.to_le_bytes());
        resp[10] = status;
        resp[11] = response;
        resp[12..12 + n].copy_from_slice(&sense[..n]);
        let mut w = c.writer(self.mem);
        w.write(&resp).unwrap();
        w.write(&data[..data.len().min(s.data_in)]).unwrap();
        let len = self.used_len.unwrap_or(w.bytes_written());
        self.queues.used(self.mem, q, c.token(), len);
    }

    fn parse(&self, queue: u16, c: &DescChain, bytes: &[u8]) -> Seen {
        let hlen = req_cmd_size(self.cdb_size);
        let mut lun = [0u8; 8];
        lun.copy_from_slice(&bytes[..8]);
        Seen {
            queue,
            lun,
            id: u64::from_le_bytes(bytes[8..16].try_into().unwrap()),
            attrs: [bytes[16], bytes[17], bytes[18]],
            cdb: bytes[19..hlen].to_vec(),
            data_out: bytes.len() - hlen,
            data_in: c.writable_len() as usize - resp_cmd_size(self.sense_size),
        }
    }

    fn control(&mut self, c: DescChain) {
        let b = read_all(self.mem, &c);
        let ty = u32::from_le_bytes(b[0..4].try_into().unwrap());
        let mut lun = [0u8; 8];
        let resp: Vec<u8> = if ty == VIRTIO_SCSI_T_TMF {
            let sub = u32::from_le_bytes(b[4..8].try_into().unwrap());
            lun.copy_from_slice(&b[8..16]);
            let id = u64::from_le_bytes(b[16..24].try_into().unwrap());
            self.controls.push((ty, sub, lun, id));
            if sub == VIRTIO_SCSI_T_TMF_ABORT_TASK {
                // Abort the held command with that tag.
                let held = std::mem::take(&mut self.held);
                for (q, h) in held {
                    let hb = read_all(self.mem, &h);
                    if u64::from_le_bytes(hb[8..16].try_into().unwrap()) == id {
                        self.finish(q, h, VIRTIO_SCSI_S_ABORTED);
                    } else {
                        self.held.push((q, h));
                    }
                }
            }
            vec![self.tmf_response]
        } else {
            lun.copy_from_slice(&b[4..12]);
            let ev = u32::from_le_bytes(b[12..16].try_into().unwrap());
            self.controls.push((ty, ev, lun, 0));
            let actual = ev & VIRTIO_SCSI_EVT_ASYNC_MEDIA_CHANGE;
            let mut r = actual.to_le_bytes().to_vec();
            r.push(VIRTIO_SCSI_S_OK);
            r
        };
        let mut w = c.writer(self.mem);
        w.write(&resp).unwrap();
        let n = w.bytes_written();
        self.queues
            .used(self.mem, CONTROLQ_INDEX as u16, c.token(), n);
    }
}

impl VirtioDevice for ScsiDev<'_> {
    fn device_type(&self) -> DeviceType {
        DeviceType(VIRTIO_ID_SCSI)
    }
    fn device_features(&self) -> FeatureSet {
        self.features
    }
    fn queue_max_sizes(&self) -> &[u16] {
        &self.max_sizes
    }
    fn config_len(&self) -> usize {
        36
    }
    fn read_config(&self, offset: usize, data: &mut [u8]) {
        let c = self.config();
        for (i, b) in data.iter_mut().enumerate() {
            *b = c.get(offset + i).copied().unwrap_or(0);
        }
    }
    fn write_config(&mut self, offset: usize, data: &[u8]) {
        self.config_writes.push((offset, data.to_vec()));
    }
    fn accept_features(&mut self, features: FeatureSet) -> Result<(), DeviceError> {
        self.negotiated = features;
        Ok(())
    }
    fn activate(&mut self, a: Activation, s: Signals) -> Result<(), DeviceError> {
        self.queues.activate(a, s);
        Ok(())
    }
    fn reset(&mut self) {
        self.queues.reset();
        self.held.clear();
        self.event_bufs.clear();
    }
    fn queue_notify(&mut self, queue: u16, _: Option<NotificationData>) {
        while let Some(c) = self.queues.pop(self.mem, queue) {
            match u32::from(queue) {
                CONTROLQ_INDEX => self.control(c),
                EVENTQ_INDEX => {
                    self.event_buffers_seen
                        .push((c.readable_len(), c.writable_len()));
                    self.event_bufs.push(c);
                }
                _ => {
                    let bytes = read_all(self.mem, &c);
                    let s = self.parse(queue, &c, &bytes);
                    self.seen.push(s);
                    if self.hold {
                        self.held.push((queue, c));
                    } else {
                        self.finish(queue, c, 0xff);
                    }
                }
            }
        }
    }
}
