//! The control queue (VIRTIO 1.4 §5.6.6.2): task management functions
//! and asynchronous notification query/subscribe.
//!
//! Requests complete synchronously on the request queues, so the task
//! set only ever holds commands a request worker is executing right now
//! ([`Tasks`]): ABORT TASK, ABORT TASK SET, CLEAR TASK SET, LOGICAL UNIT
//! RESET and I_T NEXUS RESET wait for them to complete and answer
//! FUNCTION COMPLETE (FUNCTION REJECTED if they do not complete in
//! [`TMF_WAIT`]); QUERY TASK and QUERY TASK SET answer FUNCTION SUCCEEDED
//! while a matching command is active, FUNCTION COMPLETE otherwise;
//! CLEAR ACA is FUNCTION REJECTED (NormACA is 0: ACA is never
//! established). Resets establish unit attention conditions (29h/03h
//! after a LOGICAL UNIT RESET, 29h/07h on every LUN of the target after an
//! I_T NEXUS RESET). The device reports no asynchronous events: AN QUERY
//! and AN SUBSCRIBE answer `event_actual` 0.
//!
//! Trust and panic contract: requests are driver-controlled bytes; short
//! or unknown requests get `VIRTIO_SCSI_S_FAILURE` (or nothing, when
//! there is no room for a response byte). Nothing here panics.

use std::time::Duration;

use ringwork_spec::scsi::*;

use super::lun::{Lookup, LunTable};
use super::sense::Sense;
use super::tasks::Tasks;

/// Longest a TMF waits for the commands it addresses.
pub const TMF_WAIT: Duration = Duration::from_secs(10);

/// Most device-readable bytes a control request has.
pub(crate) const MAX_CTRL_REQ: usize = SCSI_CTRL_TMF_REQ_SIZE;

fn le32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at + 4)?;
    Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

/// Answers one control request. `req` holds the first
/// [`MAX_CTRL_REQ`] (or fewer, if the request is shorter) device-readable
/// bytes. Returns the device-writable bytes to write.
pub(crate) fn handle(req: &[u8], luns: &LunTable, tasks: &Tasks) -> Vec<u8> {
    match le32(req, 0) {
        Some(VIRTIO_SCSI_T_TMF) if req.len() >= SCSI_CTRL_TMF_REQ_SIZE => {
            vec![tmf(req, luns, tasks)]
        }
        Some(VIRTIO_SCSI_T_AN_QUERY | VIRTIO_SCSI_T_AN_SUBSCRIBE)
            if req.len() >= SCSI_CTRL_AN_REQ_SIZE =>
        {
            let mut lun = [0u8; 8];
            lun.copy_from_slice(&req[4..12]);
            let response = match luns.resolve(&lun) {
                Lookup::BadTarget => VIRTIO_SCSI_S_BAD_TARGET,
                Lookup::Absent { .. } => VIRTIO_SCSI_S_INCORRECT_LUN,
                Lookup::Present(_) | Lookup::ReportLunsWlun => VIRTIO_SCSI_S_OK,
            };
            // event_actual: no asynchronous events are supported.
            vec![0, 0, 0, 0, response]
        }
        t => {
            tracing::warn!(?t, len = req.len(), "malformed SCSI control request");
            vec![VIRTIO_SCSI_S_FAILURE]
        }
    }
}

fn tmf(req: &[u8], luns: &LunTable, tasks: &Tasks) -> u8 {
    let Some(r) = ScsiCtrlTmfReq::new_checked(req).ok() else {
        return VIRTIO_SCSI_S_FAILURE;
    };
    let (subtype, id) = (r.subtype(), r.id());
    let lookup = luns.resolve(&r.lun());
    if subtype == VIRTIO_SCSI_T_TMF_I_T_NEXUS_RESET {
        // The single-level LUN is ignored for a whole I_T nexus.
        let target = r.lun()[1];
        if r.lun()[0] != 1 || !luns.has_target(target) {
            return VIRTIO_SCSI_S_BAD_TARGET;
        }
        if !tasks.wait_idle(|t| t.target == target, TMF_WAIT) {
            return VIRTIO_SCSI_S_FUNCTION_REJECTED;
        }
        for l in luns.all().iter().filter(|l| l.info.target == target) {
            l.add_unit_attention(Sense::NEXUS_LOSS_OCCURRED);
        }
        return VIRTIO_SCSI_S_FUNCTION_COMPLETE;
    }
    let lun = match lookup {
        Lookup::BadTarget => return VIRTIO_SCSI_S_BAD_TARGET,
        Lookup::Absent { .. } | Lookup::ReportLunsWlun => return VIRTIO_SCSI_S_INCORRECT_LUN,
        Lookup::Present(l) => l,
    };
    let (target, lun_no) = (lun.info.target, lun.info.lun);
    let on_lun = |t: &super::tasks::Task| t.target == target && t.lun == lun_no;
    let wait = |f: &dyn Fn(&super::tasks::Task) -> bool| {
        if tasks.wait_idle(f, TMF_WAIT) {
            VIRTIO_SCSI_S_FUNCTION_COMPLETE
        } else {
            VIRTIO_SCSI_S_FUNCTION_REJECTED
        }
    };
    match subtype {
        VIRTIO_SCSI_T_TMF_ABORT_TASK => wait(&|t| on_lun(t) && t.id == id),
        VIRTIO_SCSI_T_TMF_ABORT_TASK_SET | VIRTIO_SCSI_T_TMF_CLEAR_TASK_SET => wait(&on_lun),
        VIRTIO_SCSI_T_TMF_LOGICAL_UNIT_RESET => {
            let r = wait(&on_lun);
            if r == VIRTIO_SCSI_S_FUNCTION_COMPLETE {
                lun.add_unit_attention(Sense::LUN_RESET_OCCURRED);
            }
            r
        }
        VIRTIO_SCSI_T_TMF_QUERY_TASK => {
            if tasks.any(|t| on_lun(t) && t.id == id) {
                VIRTIO_SCSI_S_FUNCTION_SUCCEEDED
            } else {
                VIRTIO_SCSI_S_FUNCTION_COMPLETE
            }
        }
        VIRTIO_SCSI_T_TMF_QUERY_TASK_SET => {
            if tasks.any(on_lun) {
                VIRTIO_SCSI_S_FUNCTION_SUCCEEDED
            } else {
                VIRTIO_SCSI_S_FUNCTION_COMPLETE
            }
        }
        // VIRTIO_SCSI_T_TMF_CLEAR_ACA (no ACA) and unknown functions.
        _ => VIRTIO_SCSI_S_FUNCTION_REJECTED,
    }
}
