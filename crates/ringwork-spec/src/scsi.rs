//! VIRTIO 1.4 §5.6 SCSI Host Device: feature bits, virtqueue numbering, the
//! device configuration layout, request-queue command requests and
//! responses (with T10 PI), control-queue task management and asynchronous
//! notification, event-queue events, and the 8-byte LUN address.
//!
//! The CDB and sense areas have driver-configurable sizes (`cdb_size`,
//! `sense_size` in the configuration space, 32 and 96 by default), so the
//! variable parts are described by views over the fixed parts plus offset
//! helpers; [`ScsiReqCmd`] and [`ScsiRespCmd`] cover the default sizes.
//!
//! ```
//! use ringwork_spec::scsi::*;
//!
//! let mut req = [0u8; SCSI_REQ_CMD_SIZE];
//! let mut r = ScsiReqCmd::new_checked(&mut req[..]).unwrap();
//! r.set_lun(encode_lun(2, 5));
//! r.set_id(7);
//! r.set_task_attr(VIRTIO_SCSI_S_SIMPLE);
//! assert_eq!(&req[..4], &[1, 2, 0x40, 5]);
//! assert_eq!(decode_lun(&[1, 2, 0x40, 5, 0, 0, 0, 0]), ScsiLun::Lun { target: 2, lun: 5 });
//! ```

use crate::le::{Le16, Le32, Le64};
use crate::wire_view;

// ---------------------------------------------------------------------------
// Feature bits, virtqueues (§5.6.2, §5.6.3)
// ---------------------------------------------------------------------------

/// A request may have both device-readable and device-writable data.
pub const VIRTIO_SCSI_F_INOUT: u32 = 0;
/// Hot-plug and hot-unplug events for LUNs and targets.
pub const VIRTIO_SCSI_F_HOTPLUG: u32 = 1;
/// LUN parameter changes are reported (`VIRTIO_SCSI_T_PARAM_CHANGE`).
pub const VIRTIO_SCSI_F_CHANGE: u32 = 2;
/// T10 protection information fields are in the request header.
pub const VIRTIO_SCSI_F_T10_PI: u32 = 3;

/// Index of the control virtqueue.
pub const CONTROLQ_INDEX: u32 = 0;
/// Index of the event virtqueue.
pub const EVENTQ_INDEX: u32 = 1;
/// Index of the first request virtqueue.
pub const REQUEST_QUEUE_BASE: u32 = 2;

/// Index of request queue `n` (0-based): `2 + n`.
#[inline]
pub const fn request_queue_index(n: u32) -> u32 {
    REQUEST_QUEUE_BASE + n
}

// ---------------------------------------------------------------------------
// Device configuration layout (§5.6.4)
// ---------------------------------------------------------------------------

/// Default (and reset) `cdb_size`.
pub const VIRTIO_SCSI_CDB_DEFAULT_SIZE: u32 = 32;
/// Default (and reset) `sense_size`.
pub const VIRTIO_SCSI_SENSE_DEFAULT_SIZE: u32 = 96;
/// `max_target` SHOULD be at most this.
pub const MAX_TARGET_HINT: u16 = 255;
/// `max_lun` SHOULD be at most this (the largest LUN [`encode_lun`] can carry).
pub const MAX_LUN_HINT: u32 = 16383;

/// Offset of `num_queues` in [`ScsiConfig`].
pub const SCSI_CONFIG_NUM_QUEUES_OFFSET: usize = 0;
/// Offset of `seg_max` in [`ScsiConfig`].
pub const SCSI_CONFIG_SEG_MAX_OFFSET: usize = 4;
/// Offset of `max_sectors` in [`ScsiConfig`].
pub const SCSI_CONFIG_MAX_SECTORS_OFFSET: usize = 8;
/// Offset of `cmd_per_lun` in [`ScsiConfig`].
pub const SCSI_CONFIG_CMD_PER_LUN_OFFSET: usize = 12;
/// Offset of `event_info_size` in [`ScsiConfig`].
pub const SCSI_CONFIG_EVENT_INFO_SIZE_OFFSET: usize = 16;
/// Offset of `sense_size` (driver-writable) in [`ScsiConfig`].
pub const SCSI_CONFIG_SENSE_SIZE_OFFSET: usize = 20;
/// Offset of `cdb_size` (driver-writable) in [`ScsiConfig`].
pub const SCSI_CONFIG_CDB_SIZE_OFFSET: usize = 24;
/// Offset of `max_channel` in [`ScsiConfig`].
pub const SCSI_CONFIG_MAX_CHANNEL_OFFSET: usize = 28;
/// Offset of `max_target` in [`ScsiConfig`].
pub const SCSI_CONFIG_MAX_TARGET_OFFSET: usize = 30;
/// Offset of `max_lun` in [`ScsiConfig`].
pub const SCSI_CONFIG_MAX_LUN_OFFSET: usize = 32;

wire_view! {
    /// The SCSI host device configuration space (`struct virtio_scsi_config`,
    /// VIRTIO 1.4 §5.6.4). All fields always exist; the driver may write only
    /// `sense_size` and `cdb_size`.
    #[doc(alias = "virtio_scsi_config")]
    pub struct ScsiConfig, size SCSI_CONFIG_SIZE = 36 {
        /// Number of request virtqueues.
        @0 num_queues / set_num_queues: Le32,
        /// Maximum segments in a command (per direction).
        @4 seg_max / set_seg_max: Le32,
        /// Hint: maximum transfer size in sectors.
        @8 max_sectors / set_max_sectors: Le32,
        /// Maximum linked commands per LUN.
        @12 cmd_per_lun / set_cmd_per_lun: Le32,
        /// Maximum bytes the device fills in an eventq buffer.
        @16 event_info_size / set_event_info_size: Le32,
        /// Maximum sense data size (default 96, driver-writable).
        @20 sense_size / set_sense_size: Le32,
        /// Maximum CDB size (default 32, driver-writable).
        @24 cdb_size / set_cdb_size: Le32,
        /// Hint: highest channel (SHOULD be 0).
        @28 max_channel / set_max_channel: Le16,
        /// Hint: highest target (SHOULD be <= 255).
        @30 max_target / set_max_target: Le16,
        /// Hint: highest LUN (SHOULD be <= 16383).
        @32 max_lun / set_max_lun: Le32,
    }
}

// ---------------------------------------------------------------------------
// Request queues (§5.6.6.1)
// ---------------------------------------------------------------------------

/// Response: completed; `status` holds the SCSI status. Also
/// `VIRTIO_SCSI_S_FUNCTION_COMPLETE` for TMFs.
pub const VIRTIO_SCSI_S_OK: u8 = 0;
/// Response: the CDB needs more data than the buffers provide.
pub const VIRTIO_SCSI_S_OVERRUN: u8 = 1;
/// Response: cancelled by ABORT TASK or ABORT TASK SET.
pub const VIRTIO_SCSI_S_ABORTED: u8 = 2;
/// Response: the target does not exist.
pub const VIRTIO_SCSI_S_BAD_TARGET: u8 = 3;
/// Response: cancelled by a bus or device reset.
pub const VIRTIO_SCSI_S_RESET: u8 = 4;
/// Response: failed; retrying on the same path is likely to work.
pub const VIRTIO_SCSI_S_BUSY: u8 = 5;
/// Response: connection between host and target failed.
pub const VIRTIO_SCSI_S_TRANSPORT_FAILURE: u8 = 6;
/// Response: target failure; do not retry on other paths.
pub const VIRTIO_SCSI_S_TARGET_FAILURE: u8 = 7;
/// Response: nexus failure; other paths might work.
pub const VIRTIO_SCSI_S_NEXUS_FAILURE: u8 = 8;
/// Response: other host or driver error.
pub const VIRTIO_SCSI_S_FAILURE: u8 = 9;
/// TMF response: function complete (same value as `VIRTIO_SCSI_S_OK`).
pub const VIRTIO_SCSI_S_FUNCTION_COMPLETE: u8 = 0;
/// TMF response: function succeeded.
pub const VIRTIO_SCSI_S_FUNCTION_SUCCEEDED: u8 = 10;
/// TMF response: function rejected.
pub const VIRTIO_SCSI_S_FUNCTION_REJECTED: u8 = 11;
/// Control queue response: incorrect LUN.
pub const VIRTIO_SCSI_S_INCORRECT_LUN: u8 = 12;

/// `task_attr`: SIMPLE.
pub const VIRTIO_SCSI_S_SIMPLE: u8 = 0;
/// `task_attr`: ORDERED.
pub const VIRTIO_SCSI_S_ORDERED: u8 = 1;
/// `task_attr`: HEAD OF QUEUE.
pub const VIRTIO_SCSI_S_HEAD: u8 = 2;
/// `task_attr`: ACA.
pub const VIRTIO_SCSI_S_ACA: u8 = 3;

/// Offset of `cdb` in a command request (after `lun`, `id`, `task_attr`,
/// `prio`, `crn`).
pub const REQ_CMD_CDB_OFFSET: usize = 19;
/// Offset of `sense` in a command response.
pub const RESP_CMD_SENSE_OFFSET: usize = 12;

/// Size of the device-readable command header for a `cdb_size`-byte CDB
/// (without PI): `19 + cdb_size`.
#[inline]
pub const fn req_cmd_size(cdb_size: u32) -> usize {
    REQ_CMD_CDB_OFFSET + cdb_size as usize
}

/// Size of the device-writable response header for a `sense_size`-byte sense
/// area: `12 + sense_size`.
#[inline]
pub const fn resp_cmd_size(sense_size: u32) -> usize {
    RESP_CMD_SENSE_OFFSET + sense_size as usize
}

wire_view! {
    /// Fixed part of a command request (`struct virtio_scsi_req_cmd` up to
    /// `cdb`, which follows at [`REQ_CMD_CDB_OFFSET`]).
    #[doc(alias = "virtio_scsi_req_cmd")]
    #[doc(alias = "virtio_scsi_cmd_req")]
    pub struct ScsiReqCmdHeader, size SCSI_REQ_CMD_HEADER_SIZE = 19 {
        /// LUN address ([`encode_lun`] / [`decode_lun`]).
        @0 lun / set_lun: [u8; 8],
        /// Command identifier ("tag").
        @8 id / set_id: Le64,
        /// `VIRTIO_SCSI_S_SIMPLE` etc.
        @16 task_attr / set_task_attr: u8,
        /// SAM command priority.
        @17 prio / set_prio: u8,
        /// Command reference number.
        @18 crn / set_crn: u8,
    }
}

wire_view! {
    /// A command request with the default 32-byte CDB (no PI), 51 bytes.
    #[doc(alias = "virtio_scsi_req_cmd")]
    #[doc(alias = "virtio_scsi_cmd_req")]
    pub struct ScsiReqCmd, size SCSI_REQ_CMD_SIZE = 51 {
        /// LUN address ([`encode_lun`] / [`decode_lun`]).
        @0 lun / set_lun: [u8; 8],
        /// Command identifier ("tag").
        @8 id / set_id: Le64,
        /// `VIRTIO_SCSI_S_SIMPLE` etc.
        @16 task_attr / set_task_attr: u8,
        /// SAM command priority.
        @17 prio / set_prio: u8,
        /// Command reference number.
        @18 crn / set_crn: u8,
        /// The CDB.
        @19 cdb / set_cdb: [u8; 32],
    }
}

wire_view! {
    /// Fixed part of a command response (`sense` follows at
    /// [`RESP_CMD_SENSE_OFFSET`]).
    #[doc(alias = "virtio_scsi_cmd_resp")]
    pub struct ScsiRespCmdHeader, size SCSI_RESP_CMD_HEADER_SIZE = 12 {
        /// Bytes actually written to `sense`.
        @0 sense_len / set_sense_len: Le32,
        /// Residual: data length minus bytes transferred.
        @4 residual / set_residual: Le32,
        /// SAM status qualifier.
        @8 status_qualifier / set_status_qualifier: Le16,
        /// SAM status code.
        @10 status / set_status: u8,
        /// `VIRTIO_SCSI_S_*` response.
        @11 response / set_response: u8,
    }
}

wire_view! {
    /// A command response with the default 96-byte sense area, 108 bytes.
    #[doc(alias = "virtio_scsi_cmd_resp")]
    pub struct ScsiRespCmd, size SCSI_RESP_CMD_SIZE = 108 {
        /// Bytes actually written to `sense`.
        @0 sense_len / set_sense_len: Le32,
        /// Residual: data length minus bytes transferred.
        @4 residual / set_residual: Le32,
        /// SAM status qualifier.
        @8 status_qualifier / set_status_qualifier: Le16,
        /// SAM status code.
        @10 status / set_status: u8,
        /// `VIRTIO_SCSI_S_*` response.
        @11 response / set_response: u8,
        /// Sense data.
        @12 sense / set_sense: [u8; 96],
    }
}

wire_view! {
    /// The two T10 PI length fields (`VIRTIO_SCSI_F_T10_PI`), placed at
    /// [`ReqCmdPiLayout::pi_bytesout`] of a request.
    #[doc(alias = "virtio_scsi_cmd_req_pi")]
    pub struct ScsiReqPiFields, size SCSI_REQ_PI_FIELDS_SIZE = 8 {
        /// Bytes of `pi_out` (outgoing protection information).
        @0 pi_bytesout / set_pi_bytesout: Le32,
        /// Bytes of `pi_in` (incoming protection information).
        @4 pi_bytesin / set_pi_bytesin: Le32,
    }
}

/// Where the T10 PI fields sit relative to the CDB.
///
/// The spec's listing (§5.6.6.1) puts `pi_bytesout`/`pi_bytesin` *after*
/// `cdb[cdb_size]`; Linux's `struct virtio_scsi_cmd_req_pi`, vhost-scsi and
/// QEMU put them *before* `cdb` (right after `crn`). Both orders give the same
/// total size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PiOrder {
    /// `… crn, cdb[cdb_size], pi_bytesout, pi_bytesin` (the spec's text).
    SpecText,
    /// `… crn, pi_bytesout, pi_bytesin, cdb[cdb_size]` (deployed implementations).
    PiBeforeCdb,
}

/// Offsets in a T10 PI command request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReqCmdPiLayout {
    /// Offset of `pi_bytesout` (then `pi_bytesin` 4 bytes later).
    pub pi_bytesout: usize,
    /// Offset of `pi_bytesin`.
    pub pi_bytesin: usize,
    /// Offset of `cdb`.
    pub cdb: usize,
    /// Size of the header; `pi_out[pi_bytesout]` then `dataout` follow.
    pub size: usize,
}

/// Layout of a T10 PI command request with a `cdb_size`-byte CDB.
pub const fn req_cmd_pi_layout(cdb_size: u32, order: PiOrder) -> ReqCmdPiLayout {
    let cdb_size = cdb_size as usize;
    let (pi, cdb) = match order {
        PiOrder::SpecText => (REQ_CMD_CDB_OFFSET + cdb_size, REQ_CMD_CDB_OFFSET),
        PiOrder::PiBeforeCdb => (
            REQ_CMD_CDB_OFFSET,
            REQ_CMD_CDB_OFFSET + SCSI_REQ_PI_FIELDS_SIZE,
        ),
    };
    ReqCmdPiLayout {
        pi_bytesout: pi,
        pi_bytesin: pi + 4,
        cdb,
        size: REQ_CMD_CDB_OFFSET + SCSI_REQ_PI_FIELDS_SIZE + cdb_size,
    }
}

// ---------------------------------------------------------------------------
// Control queue (§5.6.6.2)
// ---------------------------------------------------------------------------

/// Control request type: task management function.
pub const VIRTIO_SCSI_T_TMF: u32 = 0;
/// Control request type: asynchronous notification query.
pub const VIRTIO_SCSI_T_AN_QUERY: u32 = 1;
/// Control request type: asynchronous notification subscription.
pub const VIRTIO_SCSI_T_AN_SUBSCRIBE: u32 = 2;

/// TMF subtype: ABORT TASK.
pub const VIRTIO_SCSI_T_TMF_ABORT_TASK: u32 = 0;
/// TMF subtype: ABORT TASK SET.
pub const VIRTIO_SCSI_T_TMF_ABORT_TASK_SET: u32 = 1;
/// TMF subtype: CLEAR ACA.
pub const VIRTIO_SCSI_T_TMF_CLEAR_ACA: u32 = 2;
/// TMF subtype: CLEAR TASK SET.
pub const VIRTIO_SCSI_T_TMF_CLEAR_TASK_SET: u32 = 3;
/// TMF subtype: I_T NEXUS RESET.
pub const VIRTIO_SCSI_T_TMF_I_T_NEXUS_RESET: u32 = 4;
/// TMF subtype: LOGICAL UNIT RESET.
pub const VIRTIO_SCSI_T_TMF_LOGICAL_UNIT_RESET: u32 = 5;
/// TMF subtype: QUERY TASK.
pub const VIRTIO_SCSI_T_TMF_QUERY_TASK: u32 = 6;
/// TMF subtype: QUERY TASK SET.
pub const VIRTIO_SCSI_T_TMF_QUERY_TASK_SET: u32 = 7;

/// Asynchronous event bit: operational change.
pub const VIRTIO_SCSI_EVT_ASYNC_OPERATIONAL_CHANGE: u32 = 2;
/// Asynchronous event bit: power management.
pub const VIRTIO_SCSI_EVT_ASYNC_POWER_MGMT: u32 = 4;
/// Asynchronous event bit: external request.
pub const VIRTIO_SCSI_EVT_ASYNC_EXTERNAL_REQUEST: u32 = 8;
/// Asynchronous event bit: media change.
pub const VIRTIO_SCSI_EVT_ASYNC_MEDIA_CHANGE: u32 = 16;
/// Asynchronous event bit: multi-host.
pub const VIRTIO_SCSI_EVT_ASYNC_MULTI_HOST: u32 = 32;
/// Asynchronous event bit: device busy.
pub const VIRTIO_SCSI_EVT_ASYNC_DEVICE_BUSY: u32 = 64;

wire_view! {
    /// The `type` every control request starts with (`struct virtio_scsi_ctrl`).
    #[doc(alias = "virtio_scsi_ctrl")]
    pub struct ScsiCtrlHeader, size SCSI_CTRL_HEADER_SIZE = 4 {
        /// `VIRTIO_SCSI_T_TMF`, `_AN_QUERY` or `_AN_SUBSCRIBE`.
        @0 type_ / set_type: Le32,
    }
}

wire_view! {
    /// Device-readable part of a task management request
    /// (`struct virtio_scsi_ctrl_tmf`).
    #[doc(alias = "virtio_scsi_ctrl_tmf")]
    #[doc(alias = "virtio_scsi_ctrl_tmf_req")]
    pub struct ScsiCtrlTmfReq, size SCSI_CTRL_TMF_REQ_SIZE = 24 {
        /// `VIRTIO_SCSI_T_TMF`.
        @0 type_ / set_type: Le32,
        /// `VIRTIO_SCSI_T_TMF_*`.
        @4 subtype / set_subtype: Le32,
        /// LUN address.
        @8 lun / set_lun: [u8; 8],
        /// Command id the function applies to, when relevant.
        @16 id / set_id: Le64,
    }
}

wire_view! {
    /// Device-writable part of a task management request.
    #[doc(alias = "virtio_scsi_ctrl_tmf")]
    #[doc(alias = "virtio_scsi_ctrl_tmf_resp")]
    pub struct ScsiCtrlTmfResp, size SCSI_CTRL_TMF_RESP_SIZE = 1 {
        /// `VIRTIO_SCSI_S_FUNCTION_*` or a generic `VIRTIO_SCSI_S_*`.
        @0 response / set_response: u8,
    }
}

wire_view! {
    /// Device-readable part of an asynchronous notification query or
    /// subscription (`struct virtio_scsi_ctrl_an`).
    #[doc(alias = "virtio_scsi_ctrl_an")]
    #[doc(alias = "virtio_scsi_ctrl_an_req")]
    pub struct ScsiCtrlAnReq, size SCSI_CTRL_AN_REQ_SIZE = 16 {
        /// `VIRTIO_SCSI_T_AN_QUERY` or `VIRTIO_SCSI_T_AN_SUBSCRIBE`.
        @0 type_ / set_type: Le32,
        /// LUN address.
        @4 lun / set_lun: [u8; 8],
        /// `VIRTIO_SCSI_EVT_ASYNC_*` bits the driver is interested in.
        @12 event_requested / set_event_requested: Le32,
    }
}

wire_view! {
    /// Device-writable part of an asynchronous notification query or
    /// subscription.
    #[doc(alias = "virtio_scsi_ctrl_an")]
    #[doc(alias = "virtio_scsi_ctrl_an_resp")]
    pub struct ScsiCtrlAnResp, size SCSI_CTRL_AN_RESP_SIZE = 5 {
        /// `VIRTIO_SCSI_EVT_ASYNC_*` bits the device supports.
        @0 event_actual / set_event_actual: Le32,
        /// Generic `VIRTIO_SCSI_S_*` response.
        @4 response / set_response: u8,
    }
}

// ---------------------------------------------------------------------------
// Event queue (§5.6.6.3)
// ---------------------------------------------------------------------------

/// `event` flag (bit 31): events were lost for lack of buffers.
pub const VIRTIO_SCSI_T_EVENTS_MISSED: u32 = 0x8000_0000;
/// Event: none (dummy, or only to report `EVENTS_MISSED`).
pub const VIRTIO_SCSI_T_NO_EVENT: u32 = 0;
/// Event: a logical unit was reset, appeared or disappeared.
pub const VIRTIO_SCSI_T_TRANSPORT_RESET: u32 = 1;
/// Event: asynchronous notification; `reason` holds `VIRTIO_SCSI_EVT_ASYNC_*` bits.
pub const VIRTIO_SCSI_T_ASYNC_NOTIFY: u32 = 2;
/// Event: LUN parameter change; `reason` holds ASC (bits 0..7) and ASCQ (8..15).
pub const VIRTIO_SCSI_T_PARAM_CHANGE: u32 = 3;

/// Transport reset reason: LUN hard reset (still present).
pub const VIRTIO_SCSI_EVT_RESET_HARD: u32 = 0;
/// Transport reset reason: LUN/target appeared, rescan.
pub const VIRTIO_SCSI_EVT_RESET_RESCAN: u32 = 1;
/// Transport reset reason: LUN/target removed.
pub const VIRTIO_SCSI_EVT_RESET_REMOVED: u32 = 2;

wire_view! {
    /// An event written by the device to an eventq buffer
    /// (`struct virtio_scsi_event`).
    #[doc(alias = "virtio_scsi_event")]
    pub struct ScsiEvent, size SCSI_EVENT_SIZE = 16 {
        /// `VIRTIO_SCSI_T_*` event, possibly with `VIRTIO_SCSI_T_EVENTS_MISSED`.
        @0 event / set_event: Le32,
        /// LUN address.
        @4 lun / set_lun: [u8; 8],
        /// Event-specific reason.
        @12 reason / set_reason: Le32,
    }
}

/// The event type without the `VIRTIO_SCSI_T_EVENTS_MISSED` flag.
#[inline]
pub const fn event_type(event: u32) -> u32 {
    event & !VIRTIO_SCSI_T_EVENTS_MISSED
}

/// Whether `event` carries `VIRTIO_SCSI_T_EVENTS_MISSED`.
#[inline]
pub const fn events_missed(event: u32) -> bool {
    event & VIRTIO_SCSI_T_EVENTS_MISSED != 0
}

/// Splits a `VIRTIO_SCSI_T_PARAM_CHANGE` `reason` into (ASC, ASCQ).
#[inline]
pub const fn param_change_sense(reason: u32) -> (u8, u8) {
    (reason as u8, (reason >> 8) as u8)
}

// ---------------------------------------------------------------------------
// LUN addressing (§5.6.6.1)
// ---------------------------------------------------------------------------

/// The `lun` that addresses the REPORT LUNS well-known logical unit.
pub const REPORT_LUNS_WLUN: [u8; 8] = [0xc1, 0x01, 0, 0, 0, 0, 0, 0];

/// Encodes target and LUN: byte 0 = 1, byte 1 = target, bytes 2..4 a
/// single-level LUN structure in SAM flat space addressing
/// (`0x40 | lun >> 8`, `lun & 0xff`, as Linux writes it), four zero bytes.
/// `lun` is truncated to 14 bits (0..=16383).
#[inline]
pub const fn encode_lun(target: u8, lun: u16) -> [u8; 8] {
    [
        1,
        target,
        0x40 | ((lun >> 8) as u8 & 0x3f),
        lun as u8,
        0,
        0,
        0,
        0,
    ]
}

/// A decoded `lun` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScsiLun {
    /// A target and logical unit.
    Lun {
        /// Target (byte 1).
        target: u8,
        /// Logical unit number (14 bits).
        lun: u16,
    },
    /// The REPORT LUNS well-known logical unit ([`REPORT_LUNS_WLUN`]).
    ReportLuns,
    /// Any other encoding, kept as is (for example a well-known LU in
    /// bytes 2..4, which devices MAY support).
    Other([u8; 8]),
}

/// Decodes a `lun` field. Bytes 2..4 are accepted in flat space addressing
/// (`01b` in the top two bits) and in peripheral device addressing with bus
/// 0 (`byte 2 == 0`, LUN < 256); anything else is [`ScsiLun::Other`].
pub const fn decode_lun(lun: &[u8; 8]) -> ScsiLun {
    let tail_zero = lun[4] == 0 && lun[5] == 0 && lun[6] == 0 && lun[7] == 0;
    if lun[0] == 0xc1 && lun[1] == 0x01 && lun[2] == 0 && lun[3] == 0 && tail_zero {
        return ScsiLun::ReportLuns;
    }
    if lun[0] == 1 && tail_zero {
        if lun[2] >> 6 == 0b01 {
            let n = ((lun[2] as u16 & 0x3f) << 8) | lun[3] as u16;
            return ScsiLun::Lun {
                target: lun[1],
                lun: n,
            };
        }
        if lun[2] == 0 {
            return ScsiLun::Lun {
                target: lun[1],
                lun: lun[3] as u16,
            };
        }
    }
    ScsiLun::Other(*lun)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_layout_matches_spec_bytes() {
        let mut b = [0u8; 36];
        let mut c = ScsiConfig::new_checked(&mut b[..]).unwrap();
        c.set_num_queues(1);
        c.set_seg_max(2);
        c.set_max_sectors(3);
        c.set_cmd_per_lun(4);
        c.set_event_info_size(5);
        c.set_sense_size(VIRTIO_SCSI_SENSE_DEFAULT_SIZE);
        c.set_cdb_size(VIRTIO_SCSI_CDB_DEFAULT_SIZE);
        c.set_max_channel(0x0908);
        c.set_max_target(0x0b0a);
        c.set_max_lun(0x0f0e_0d0c);
        assert_eq!(
            b,
            [
                1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0, 5, 0, 0, 0, 96, 0, 0, 0, 32, 0, 0,
                0, 8, 9, 10, 11, 12, 13, 14, 15
            ]
        );
        assert_eq!(SCSI_CONFIG_SIZE, 36);
        let offs = [
            SCSI_CONFIG_NUM_QUEUES_OFFSET,
            SCSI_CONFIG_SEG_MAX_OFFSET,
            SCSI_CONFIG_MAX_SECTORS_OFFSET,
            SCSI_CONFIG_CMD_PER_LUN_OFFSET,
            SCSI_CONFIG_EVENT_INFO_SIZE_OFFSET,
        ];
        for (i, o) in offs.iter().enumerate() {
            assert_eq!(b[*o], i as u8 + 1);
        }
        assert_eq!(b[SCSI_CONFIG_SENSE_SIZE_OFFSET], 96);
        assert_eq!(b[SCSI_CONFIG_CDB_SIZE_OFFSET], 32);
        assert_eq!(b[SCSI_CONFIG_MAX_CHANNEL_OFFSET], 8);
        assert_eq!(b[SCSI_CONFIG_MAX_TARGET_OFFSET], 10);
        assert_eq!(b[SCSI_CONFIG_MAX_LUN_OFFSET], 12);
    }

    #[test]
    fn req_cmd_layout_matches_spec_bytes() {
        let mut b = [0u8; 51];
        let mut r = ScsiReqCmd::new_checked(&mut b[..]).unwrap();
        r.set_lun(encode_lun(1, 0x123));
        r.set_id(0x1122_3344_5566_7788);
        r.set_task_attr(VIRTIO_SCSI_S_ORDERED);
        r.set_prio(2);
        r.set_crn(3);
        let mut cdb = [0u8; 32];
        cdb[0] = 0x12; // INQUIRY
        cdb[4] = 96;
        r.set_cdb(cdb);
        assert_eq!(
            &b[..24],
            &[
                1, 1, 0x41, 0x23, 0, 0, 0, 0, 0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, 1, 2,
                3, 0x12, 0, 0, 0, 96
            ]
        );
        let h = ScsiReqCmdHeader::new_checked(&b[..19]).unwrap();
        assert_eq!(
            (h.id(), h.task_attr(), h.prio(), h.crn()),
            (0x1122_3344_5566_7788, 1, 2, 3)
        );
        assert_eq!((SCSI_REQ_CMD_SIZE, SCSI_REQ_CMD_HEADER_SIZE), (51, 19));
        assert_eq!(req_cmd_size(VIRTIO_SCSI_CDB_DEFAULT_SIZE), 51);
        assert_eq!(req_cmd_size(16), 35);
    }

    #[test]
    fn resp_cmd_layout_matches_spec_bytes() {
        let mut b = [0u8; 108];
        b[..14].copy_from_slice(&[18, 0, 0, 0, 0, 2, 0, 0, 0x01, 0x00, 0x02, 0, 0x70, 0]);
        let r = ScsiRespCmd::new_checked(&b[..]).unwrap();
        assert_eq!(
            (r.sense_len(), r.residual(), r.status_qualifier()),
            (18, 512, 1)
        );
        assert_eq!((r.status(), r.response()), (2, VIRTIO_SCSI_S_OK)); // CHECK CONDITION
        assert_eq!(r.sense()[0], 0x70);
        let h = ScsiRespCmdHeader::new_checked(&b[..12]).unwrap();
        assert_eq!((h.sense_len(), h.status()), (18, 2));
        assert_eq!((SCSI_RESP_CMD_SIZE, SCSI_RESP_CMD_HEADER_SIZE), (108, 12));
        assert_eq!(resp_cmd_size(VIRTIO_SCSI_SENSE_DEFAULT_SIZE), 108);
    }

    #[test]
    fn pi_layouts() {
        let spec = req_cmd_pi_layout(32, PiOrder::SpecText);
        assert_eq!(
            spec,
            ReqCmdPiLayout {
                pi_bytesout: 51,
                pi_bytesin: 55,
                cdb: 19,
                size: 59
            }
        );
        let deployed = req_cmd_pi_layout(32, PiOrder::PiBeforeCdb);
        assert_eq!(
            deployed,
            ReqCmdPiLayout {
                pi_bytesout: 19,
                pi_bytesin: 23,
                cdb: 27,
                size: 59
            }
        );
        let mut b = [0u8; 59];
        b[19..27].copy_from_slice(&[0, 2, 0, 0, 8, 0, 0, 0]);
        let pi = ScsiReqPiFields::new_checked(&b[deployed.pi_bytesout..]).unwrap();
        assert_eq!((pi.pi_bytesout(), pi.pi_bytesin()), (512, 8));
        assert_eq!(SCSI_REQ_PI_FIELDS_SIZE, 8);
        assert_eq!(req_cmd_pi_layout(16, PiOrder::SpecText).pi_bytesin, 39);
    }

    #[test]
    fn ctrl_layouts_match_spec_bytes() {
        let mut b = [0u8; 24];
        let mut t = ScsiCtrlTmfReq::new_checked(&mut b[..]).unwrap();
        t.set_type(VIRTIO_SCSI_T_TMF);
        t.set_subtype(VIRTIO_SCSI_T_TMF_LOGICAL_UNIT_RESET);
        t.set_lun(encode_lun(0, 1));
        t.set_id(9);
        assert_eq!(
            b,
            [0, 0, 0, 0, 5, 0, 0, 0, 1, 0, 0x40, 1, 0, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(
            ScsiCtrlHeader::new_checked(&b[..]).unwrap().type_(),
            VIRTIO_SCSI_T_TMF
        );
        let r = ScsiCtrlTmfResp::new_checked(&[11u8][..]).unwrap();
        assert_eq!(r.response(), VIRTIO_SCSI_S_FUNCTION_REJECTED);
        assert_eq!(
            (
                SCSI_CTRL_TMF_REQ_SIZE,
                SCSI_CTRL_TMF_RESP_SIZE,
                SCSI_CTRL_HEADER_SIZE
            ),
            (24, 1, 4)
        );

        let b = [2, 0, 0, 0, 1, 3, 0x40, 0, 0, 0, 0, 0, 0x12, 0, 0, 0];
        let a = ScsiCtrlAnReq::new_checked(&b[..]).unwrap();
        assert_eq!(a.type_(), VIRTIO_SCSI_T_AN_SUBSCRIBE);
        assert_eq!(decode_lun(&a.lun()), ScsiLun::Lun { target: 3, lun: 0 });
        assert_eq!(
            a.event_requested(),
            VIRTIO_SCSI_EVT_ASYNC_OPERATIONAL_CHANGE | VIRTIO_SCSI_EVT_ASYNC_MEDIA_CHANGE
        );
        let r = ScsiCtrlAnResp::new_checked(&[0x10, 0, 0, 0, 12][..]).unwrap();
        assert_eq!(
            (r.event_actual(), r.response()),
            (16, VIRTIO_SCSI_S_INCORRECT_LUN)
        );
        assert_eq!((SCSI_CTRL_AN_REQ_SIZE, SCSI_CTRL_AN_RESP_SIZE), (16, 5));
    }

    #[test]
    fn event_layout_matches_spec_bytes() {
        let b = [3, 0, 0, 0x80, 1, 0, 0x40, 2, 0, 0, 0, 0, 0x2a, 0x09, 0, 0];
        let e = ScsiEvent::new_checked(&b[..]).unwrap();
        assert!(events_missed(e.event()));
        assert_eq!(event_type(e.event()), VIRTIO_SCSI_T_PARAM_CHANGE);
        assert_eq!(param_change_sense(e.reason()), (0x2a, 0x09)); // CAPACITY DATA HAS CHANGED
        assert_eq!(decode_lun(&e.lun()), ScsiLun::Lun { target: 0, lun: 2 });
        assert_eq!(SCSI_EVENT_SIZE, 16);
        assert!(!events_missed(VIRTIO_SCSI_T_TRANSPORT_RESET));
    }

    #[test]
    fn lun_encoding() {
        assert_eq!(encode_lun(255, 16383), [1, 255, 0x7f, 0xff, 0, 0, 0, 0]);
        assert_eq!(
            decode_lun(&encode_lun(255, 16383)),
            ScsiLun::Lun {
                target: 255,
                lun: 16383
            }
        );
        assert_eq!(
            decode_lun(&[1, 4, 0, 7, 0, 0, 0, 0]),
            ScsiLun::Lun { target: 4, lun: 7 }
        );
        assert_eq!(decode_lun(&REPORT_LUNS_WLUN), ScsiLun::ReportLuns);
        let odd = [1, 0, 0xc1, 0x01, 0, 0, 0, 0];
        assert_eq!(decode_lun(&odd), ScsiLun::Other(odd));
        let odd = [1, 0, 0x40, 0, 0, 0, 0, 1];
        assert_eq!(decode_lun(&odd), ScsiLun::Other(odd));
        assert_eq!(request_queue_index(0), 2);
        assert_eq!((CONTROLQ_INDEX, EVENTQ_INDEX), (0, 1));
    }
}
