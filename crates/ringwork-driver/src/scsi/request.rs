//! Commands (VIRTIO 1.4 §5.6.6.1): what a caller asks for, how the driver
//! checks it, and how it is laid out as a descriptor chain: the request
//! header `virtio_scsi_req_cmd` (device-readable: `lun`, `id`,
//! `task_attr`, `prio`, `crn`, `cdb[cdb_size]`), the data-out segments,
//! then the response header (device-writable: `sense_len`, `residual`,
//! `status_qualifier`, `status`, `response`, `sense[sense_size]`) and the
//! data-in segments.
//!
//! Header and response live in a per-command slot of DMA memory allocated
//! once per queue entry; data segments are the caller's device addresses.
//!
//! Trust and panic contract: nothing here reads device input; every write
//! into a slot is bounds-checked by [`MemSlice`]. Nothing panics.

use alloc::vec::Vec;

use ringwork_queue::{MemSlice, Segment};
use ringwork_spec::scsi::{
    encode_lun, req_cmd_size, resp_cmd_size, MAX_LUN_HINT, REQ_CMD_CDB_OFFSET,
    SCSI_REQ_CMD_HEADER_SIZE, SCSI_RESP_CMD_HEADER_SIZE, VIRTIO_SCSI_S_ACA, VIRTIO_SCSI_S_SIMPLE,
};

use super::config::ScsiConfig;
use super::error::CommandError;

/// Value the `response` byte is preset to, so a device that never writes
/// it is noticed (`ScsiResponse::Other(0xff)`).
pub(crate) const RESPONSE_UNSET: u8 = 0xff;

/// A SCSI command for one logical unit. Data segments are device addresses
/// the caller owns; they must stay valid until the command completes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScsiCommand<'a> {
    /// Target (the `lun` field's second byte).
    pub target: u8,
    /// Logical unit number, 0 to 16383.
    pub lun: u16,
    /// The CDB, 1 to `cdb_size` bytes (zero-padded to `cdb_size`).
    pub cdb: &'a [u8],
    /// Device-readable data (`dataout`).
    pub data_out: &'a [Segment],
    /// Device-writable data (`datain`).
    pub data_in: &'a [Segment],
    /// `task_attr` (`VIRTIO_SCSI_S_SIMPLE` .. `_ACA`); §5.6.6.1.2: SHOULD
    /// be zero (SIMPLE), which [`ScsiCommand::new`] sets. `prio` and `crn`
    /// are always zero.
    pub task_attr: u8,
}

impl<'a> ScsiCommand<'a> {
    /// A command without data, task attribute SIMPLE.
    pub fn new(target: u8, lun: u16, cdb: &'a [u8]) -> Self {
        Self {
            target,
            lun,
            cdb,
            data_out: &[],
            data_in: &[],
            task_attr: VIRTIO_SCSI_S_SIMPLE,
        }
    }

    /// With device-writable data.
    pub fn data_in(self, data_in: &'a [Segment]) -> Self {
        Self { data_in, ..self }
    }

    /// With device-readable data.
    pub fn data_out(self, data_out: &'a [Segment]) -> Self {
        Self { data_out, ..self }
    }

    /// Total data bytes (both directions), if it fits in 32 bits.
    pub(crate) fn data_len(&self) -> Option<u32> {
        self.data_out
            .iter()
            .chain(self.data_in)
            .try_fold(0u32, |a, s| a.checked_add(s.len))
    }
}

/// The `lun` field for `target`:`lun` (§5.6.6.1: byte 0 = 1, byte 1 =
/// target, bytes 2..4 a single-level LUN structure, four zero bytes).
/// LUNs below 256 use peripheral device addressing (`00h`, LUN) as the
/// device side and QEMU write them; larger ones flat space addressing
/// (`40h | LUN >> 8`, LUN).
pub fn lun_address(target: u8, lun: u16) -> [u8; 8] {
    if lun < 256 {
        [1, target, 0, lun as u8, 0, 0, 0, 0]
    } else {
        encode_lun(target, lun)
    }
}

/// What the driver knows when checking a command.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Data segments per command: `seg_max`, and what the queue holds.
    pub max_segments: usize,
    /// `VIRTIO_SCSI_F_INOUT` negotiated.
    pub inout: bool,
}

/// Checks `cmd` against the configuration and the negotiated features.
pub(crate) fn validate(
    cmd: &ScsiCommand<'_>,
    cfg: &ScsiConfig,
    lim: &Limits,
) -> Result<(), CommandError> {
    if cmd.cdb.is_empty() || cmd.cdb.len() > cfg.cdb_size as usize {
        return Err(CommandError::BadCdb {
            len: cmd.cdb.len(),
            max: cfg.cdb_size,
        });
    }
    if u32::from(cmd.lun) > MAX_LUN_HINT {
        return Err(CommandError::BadLun { lun: cmd.lun });
    }
    if cmd.task_attr > VIRTIO_SCSI_S_ACA {
        return Err(CommandError::BadTaskAttr(cmd.task_attr));
    }
    if !cmd.data_out.is_empty() && !cmd.data_in.is_empty() && !lim.inout {
        return Err(CommandError::NoInout);
    }
    let segments = cmd.data_out.len() + cmd.data_in.len();
    if segments > lim.max_segments {
        return Err(CommandError::TooManySegments {
            segments,
            max: lim.max_segments,
        });
    }
    if cmd.data_out.iter().chain(cmd.data_in).any(|s| s.len == 0) {
        return Err(CommandError::EmptySegment);
    }
    let hdr = cfg.cdb_size as u64 + cfg.sense_size as u64 + 64;
    match cmd.data_len() {
        Some(n) if u64::from(n) + hdr <= u64::from(u32::MAX) => Ok(()),
        _ => Err(CommandError::TooLarge),
    }
}

/// Where things are in a slot.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SlotLayout {
    /// Request header bytes (`19 + cdb_size`).
    pub req_len: usize,
    /// Offset of the response header.
    pub resp_off: usize,
    /// Response header bytes (`12 + sense_size`).
    pub resp_len: usize,
    /// Bytes per slot.
    pub stride: usize,
}

impl SlotLayout {
    /// The layout for the device's `cdb_size` and `sense_size`.
    pub(crate) fn new(cfg: &ScsiConfig) -> Self {
        let req_len = req_cmd_size(cfg.cdb_size);
        let resp_off = req_len.next_multiple_of(8);
        let resp_len = resp_cmd_size(cfg.sense_size);
        Self {
            req_len,
            resp_off,
            resp_len,
            stride: (resp_off + resp_len).next_multiple_of(16),
        }
    }
}

/// Writes the request header and presets the response in `slot` (device
/// address `addr`), and lists the chain in `out` / `inp` (cleared first).
/// Returns `false` if the slot is too small (never for a checked command).
pub(crate) fn lay_out(
    cmd: &ScsiCommand<'_>,
    id: u64,
    layout: &SlotLayout,
    slot: MemSlice<'_>,
    addr: u64,
    out: &mut Vec<Segment>,
    inp: &mut Vec<Segment>,
) -> bool {
    out.clear();
    inp.clear();
    let mut hdr = [0u8; SCSI_REQ_CMD_HEADER_SIZE];
    hdr[..8].copy_from_slice(&lun_address(cmd.target, cmd.lun));
    hdr[8..16].copy_from_slice(&id.to_le_bytes());
    hdr[16] = cmd.task_attr;
    // prio and crn stay 0 (§5.6.6.1.2).
    let mut resp = [0u8; SCSI_RESP_CMD_HEADER_SIZE];
    resp[11] = RESPONSE_UNSET;
    let ok = slot.fill(0, layout.stride, 0).is_ok()
        && slot.write_bytes(0, &hdr).is_ok()
        && slot.write_bytes(REQ_CMD_CDB_OFFSET, cmd.cdb).is_ok()
        && slot.write_bytes(layout.resp_off, &resp).is_ok();
    if !ok || cmd.cdb.len() > layout.req_len - REQ_CMD_CDB_OFFSET {
        return false;
    }
    out.push(Segment::new(addr, layout.req_len as u32));
    out.extend_from_slice(cmd.data_out);
    inp.push(Segment::new(
        addr + layout.resp_off as u64,
        layout.resp_len as u32,
    ));
    inp.extend_from_slice(cmd.data_in);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lun_addresses() {
        assert_eq!(lun_address(3, 7), [1, 3, 0, 7, 0, 0, 0, 0]);
        assert_eq!(lun_address(0, 300), [1, 0, 0x41, 0x2c, 0, 0, 0, 0]);
        assert_eq!(
            ringwork_spec::scsi::decode_lun(&lun_address(9, 255)),
            ringwork_spec::scsi::ScsiLun::Lun {
                target: 9,
                lun: 255
            }
        );
    }

    #[test]
    fn slot_layout_of_the_defaults() {
        let cfg = ScsiConfig {
            num_queues: 1,
            seg_max: 1,
            max_sectors: 0,
            cmd_per_lun: 1,
            event_info_size: 16,
            sense_size: 96,
            cdb_size: 32,
            max_channel: 0,
            max_target: 0,
            max_lun: 0,
        };
        let l = SlotLayout::new(&cfg);
        assert_eq!(
            (l.req_len, l.resp_off, l.resp_len, l.stride),
            (51, 56, 108, 176)
        );
    }
}
