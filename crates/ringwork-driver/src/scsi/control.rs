//! The control queue (VIRTIO 1.4 §5.6.6.2: task management functions,
//! asynchronous notification query and subscription) and the event queue
//! (§5.6.6.3).
//!
//! Control requests are blocking, one at a time, in a small DMA buffer
//! allocated at setup. Event buffers are `event_info_size` bytes (at least
//! `struct virtio_scsi_event`, §5.6.6.3.1 MUST; device-writable only) in
//! one DMA region; each is made available again as soon as its event was
//! read, so the queue stays populated (§5.6.6.3.1 SHOULD).
//!
//! Trust and panic contract: responses and events are copied out of DMA
//! memory; a used length too short for them is an error (modern
//! interfaces), and an event buffer is re-posted either way. Nothing here
//! panics on device input.

use ringwork_queue::{Dma, Segment, UsedError};
use ringwork_spec::scsi::{
    decode_lun, event_type, events_missed, ScsiLun, SCSI_CTRL_AN_REQ_SIZE, SCSI_CTRL_AN_RESP_SIZE,
    SCSI_CTRL_TMF_REQ_SIZE, SCSI_CTRL_TMF_RESP_SIZE, SCSI_EVENT_SIZE,
    VIRTIO_SCSI_EVT_RESET_REMOVED, VIRTIO_SCSI_EVT_RESET_RESCAN, VIRTIO_SCSI_T_AN_QUERY,
    VIRTIO_SCSI_T_AN_SUBSCRIBE, VIRTIO_SCSI_T_TMF, VIRTIO_SCSI_T_TRANSPORT_RESET,
};
use ringwork_transport::driver::Transport;

use super::error::{CommandError, ScsiError, ScsiResponse};
use super::request::lun_address;
use super::ScsiDriver;
use crate::common::{kick, pop_or_arm, wait_for};

/// Offset of the response in the control buffer.
const CTRL_RESP_OFF: usize = 32;

/// An event the device reported on the event queue (§5.6.6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScsiEvent {
    /// The event (`VIRTIO_SCSI_T_*`) without the `EVENTS_MISSED` bit.
    pub event: u32,
    /// `VIRTIO_SCSI_T_EVENTS_MISSED` was set: events were lost.
    pub missed: bool,
    /// The `lun` field, decoded.
    pub lun: ScsiLun,
    /// `reason`.
    pub reason: u32,
}

impl ScsiEvent {
    /// Whether the driver should rescan (§5.6.6.3.1): events were missed
    /// (poll the logical units for unit attentions, scan the bus), or a
    /// transport reset reports LUN 0 of a target removed or to be
    /// rescanned (the whole target may have come or gone).
    pub fn needs_rescan(&self) -> bool {
        self.missed
            || (self.event == VIRTIO_SCSI_T_TRANSPORT_RESET
                && matches!(self.lun, ScsiLun::Lun { lun: 0, .. })
                && matches!(
                    self.reason,
                    VIRTIO_SCSI_EVT_RESET_REMOVED | VIRTIO_SCSI_EVT_RESET_RESCAN
                ))
    }
}

fn ctrl_err(source: UsedError) -> ScsiError {
    ScsiError::Queue {
        queue: "controlq",
        source,
    }
}

fn event_err(source: UsedError) -> ScsiError {
    ScsiError::Queue {
        queue: "eventq",
        source,
    }
}

impl<T: Transport, D: Dma + Clone, Tok> ScsiDriver<T, D, Tok> {
    /// Makes up to `n` event buffers available (at setup).
    pub(super) fn fill_events(&mut self, n: u16) -> Result<(), ScsiError> {
        let st = &mut *self.state;
        let Some(q) = st.events.as_mut() else {
            return Ok(());
        };
        let n = n.min(q.size());
        if n == 0 {
            return Ok(());
        }
        let len = self.event_len as usize;
        let region = crate::common::DmaRegion::new(self.dma.clone(), len * usize::from(n), 16)?;
        for i in 0..n {
            let seg = Segment::new(region.addr(usize::from(i) * len), len as u32);
            q.add(&[], &[seg], i)
                .map_err(|_| event_err(UsedError::Broken))?;
        }
        st.event_bufs = Some(region);
        kick(&mut self.transport, q).map_err(event_err)
    }

    /// The next event, or `None` (non-blocking; re-arms used buffer
    /// notifications first). Its buffer is made available again at once.
    pub fn poll_event(&mut self) -> Result<Option<ScsiEvent>, ScsiError> {
        let len = self.event_len as usize;
        let st = &mut *self.state;
        let (Some(q), Some(bufs)) = (st.events.as_mut(), st.event_bufs.as_ref()) else {
            return Ok(None);
        };
        let Some(used) = pop_or_arm(q).map_err(event_err)? else {
            return Ok(None);
        };
        let off = usize::from(used.token) * len;
        let mut raw = [0u8; SCSI_EVENT_SIZE];
        let read = bufs.slice().read_bytes(off, &mut raw).is_ok();
        // Re-post before looking at the event (§5.6.6.3.1 SHOULD keep the
        // queue populated). Cleared so stale bytes never read as an event.
        let _ = bufs.slice().fill(off, len, 0);
        let seg = Segment::new(bufs.addr(off), len as u32);
        q.add(&[], &[seg], used.token)
            .map_err(|_| event_err(UsedError::Broken))?;
        kick(&mut self.transport, q).map_err(event_err)?;
        if !read || (!self.legacy && (used.len as usize) < SCSI_EVENT_SIZE) {
            return Err(ScsiError::ShortEvent { len: used.len });
        }
        let le32 = |o: usize| u32::from_le_bytes([raw[o], raw[o + 1], raw[o + 2], raw[o + 3]]);
        let event = le32(0);
        let mut lun = [0u8; 8];
        lun.copy_from_slice(&raw[4..12]);
        Ok(Some(ScsiEvent {
            event: event_type(event),
            missed: events_missed(event),
            lun: decode_lun(&lun),
            reason: le32(12),
        }))
    }

    /// Event buffers the device holds.
    pub fn event_buffers(&self) -> u16 {
        self.state.events.as_ref().map_or(0, |q| q.outstanding())
    }

    /// Sends a task management function (`VIRTIO_SCSI_T_TMF`, §5.6.6.2)
    /// for `target`:`lun` and waits for its `response`. `id` is the tag
    /// of the command it applies to (ABORT TASK, QUERY TASK), as
    /// [`Self::submit`] returned it; 0 otherwise.
    pub fn task_management(
        &mut self,
        target: u8,
        lun: u16,
        subtype: u32,
        id: u64,
    ) -> Result<ScsiResponse, ScsiError> {
        let mut req = [0u8; SCSI_CTRL_TMF_REQ_SIZE];
        req[0..4].copy_from_slice(&VIRTIO_SCSI_T_TMF.to_le_bytes());
        req[4..8].copy_from_slice(&subtype.to_le_bytes());
        req[8..16].copy_from_slice(&lun_address(target, lun));
        req[16..24].copy_from_slice(&id.to_le_bytes());
        let mut resp = [0u8; SCSI_CTRL_TMF_RESP_SIZE];
        self.control(lun, &req, &mut resp)?;
        Ok(ScsiResponse::from(resp[0]))
    }

    /// Asks which asynchronous events of `events`
    /// (`VIRTIO_SCSI_EVT_ASYNC_*`) the device supports for `target`:`lun`
    /// (`VIRTIO_SCSI_T_AN_QUERY`). Returns `response` and `event_actual`.
    pub fn an_query(
        &mut self,
        target: u8,
        lun: u16,
        events: u32,
    ) -> Result<(ScsiResponse, u32), ScsiError> {
        self.an(VIRTIO_SCSI_T_AN_QUERY, target, lun, events)
    }

    /// Subscribes to asynchronous events `events` for `target`:`lun`
    /// (`VIRTIO_SCSI_T_AN_SUBSCRIBE`). Returns `response` and
    /// `event_actual`.
    pub fn an_subscribe(
        &mut self,
        target: u8,
        lun: u16,
        events: u32,
    ) -> Result<(ScsiResponse, u32), ScsiError> {
        self.an(VIRTIO_SCSI_T_AN_SUBSCRIBE, target, lun, events)
    }

    fn an(
        &mut self,
        kind: u32,
        target: u8,
        lun: u16,
        events: u32,
    ) -> Result<(ScsiResponse, u32), ScsiError> {
        let mut req = [0u8; SCSI_CTRL_AN_REQ_SIZE];
        req[0..4].copy_from_slice(&kind.to_le_bytes());
        req[4..12].copy_from_slice(&lun_address(target, lun));
        req[12..16].copy_from_slice(&events.to_le_bytes());
        let mut resp = [0u8; SCSI_CTRL_AN_RESP_SIZE];
        self.control(lun, &req, &mut resp)?;
        let actual = u32::from_le_bytes([resp[0], resp[1], resp[2], resp[3]]);
        Ok((ScsiResponse::from(resp[4]), actual))
    }

    /// One control request: `req` device-readable, `resp` device-writable
    /// (preset to `0xff` bytes), waits (bounded) for the device.
    fn control(&mut self, lun: u16, req: &[u8], resp: &mut [u8]) -> Result<(), ScsiError> {
        if self.broken {
            return Err(ScsiError::Broken);
        }
        if u32::from(lun) > ringwork_spec::scsi::MAX_LUN_HINT {
            return Err(CommandError::BadLun { lun }.into());
        }
        let Self {
            transport,
            state,
            irq,
            legacy,
            broken,
            ..
        } = self;
        let st = &mut **state;
        let (Some(q), Some(buf)) = (st.control.as_mut(), st.control_buf.as_ref()) else {
            return Err(ctrl_err(UsedError::Broken));
        };
        let mem = buf.slice();
        let ok = mem.fill(0, 64, 0).is_ok()
            && mem.write_bytes(0, req).is_ok()
            && mem.fill(CTRL_RESP_OFF, resp.len(), 0xff).is_ok();
        if !ok {
            return Err(ctrl_err(UsedError::Broken));
        }
        let out = [Segment::new(buf.addr(0), req.len() as u32)];
        let inp = [Segment::new(buf.addr(CTRL_RESP_OFF), resp.len() as u32)];
        q.add(&out, &inp, ())
            .map_err(|_| ctrl_err(UsedError::Broken))?;
        kick(transport, q).map_err(ctrl_err)?;
        let r = wait_for(transport, irq, || -> Result<_, ScsiError> {
            pop_or_arm(q).map_err(ctrl_err)
        });
        let used = match r {
            Ok(u) => u,
            Err(e) => {
                if matches!(e, ScsiError::Timeout) {
                    // The device may still write the control buffer.
                    *broken = true;
                }
                return Err(e);
            }
        };
        if !*legacy && (used.len as usize) < resp.len() {
            return Err(ScsiError::ShortControl {
                len: used.len,
                need: resp.len() as u32,
            });
        }
        mem.read_bytes(CTRL_RESP_OFF, resp)
            .map_err(|e| ctrl_err(UsedError::Memory(e)))
    }
}
