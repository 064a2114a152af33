//! The SCSI host configuration space as the driver uses it (VIRTIO 1.4
//! §5.6.4): every field read with its own width inside the generation
//! retry loop (§2.5.1), then checked. The driver never writes it
//! (§5.6.4.1: only `sense_size` and `cdb_size` may be written; the driver
//! uses the device's values).
//!
//! Trust and panic contract: values the driver cannot work with
//! (`num_queues` 0, `seg_max` 0, `cdb_size` or `sense_size` beyond what
//! the driver allocates per request) fail setup with
//! [`SetupError::BadConfig`]; hints beyond the spec's range (`max_target`,
//! `max_lun`, `event_info_size`) are clamped. Nothing panics.

use ringwork_spec::scsi::{
    MAX_LUN_HINT, SCSI_CONFIG_CDB_SIZE_OFFSET, SCSI_CONFIG_CMD_PER_LUN_OFFSET,
    SCSI_CONFIG_EVENT_INFO_SIZE_OFFSET, SCSI_CONFIG_MAX_CHANNEL_OFFSET, SCSI_CONFIG_MAX_LUN_OFFSET,
    SCSI_CONFIG_MAX_SECTORS_OFFSET, SCSI_CONFIG_MAX_TARGET_OFFSET, SCSI_CONFIG_NUM_QUEUES_OFFSET,
    SCSI_CONFIG_SEG_MAX_OFFSET, SCSI_CONFIG_SENSE_SIZE_OFFSET, SCSI_EVENT_SIZE,
};
use ringwork_transport::driver::{read_config_consistent, ConfigRead, Transport};

use crate::common::SetupError;

/// Largest `cdb_size` the driver works with (SPC's largest CDB is 260
/// bytes).
pub const MAX_CDB_SIZE: u32 = 260;
/// Largest `sense_size` the driver works with (SPC sense data is at most
/// 252 bytes).
pub const MAX_SENSE_SIZE: u32 = 252;
/// Largest event buffer the driver posts (`event_info_size` above this is
/// clamped).
pub const MAX_EVENT_SIZE: u32 = 256;

/// The configuration, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScsiConfig {
    /// `num_queues`: request queues the device has.
    pub num_queues: u32,
    /// `seg_max`: data segments per command.
    pub seg_max: u32,
    /// `max_sectors` (a hint; 0 as the device wrote it).
    pub max_sectors: u32,
    /// `cmd_per_lun`, 0 read as 1 (as Linux).
    pub cmd_per_lun: u32,
    /// `event_info_size`.
    pub event_info_size: u32,
    /// `sense_size`: the sense area of every response.
    pub sense_size: u32,
    /// `cdb_size`: the CDB area of every request.
    pub cdb_size: u32,
    /// `max_channel` (a hint).
    pub max_channel: u16,
    /// `max_target`, clamped to 255.
    pub max_target: u16,
    /// `max_lun`, clamped to 16383.
    pub max_lun: u32,
}

impl ScsiConfig {
    /// Bytes of each event buffer: `event_info_size`, at least an event
    /// (§5.6.6.3.1 MUST) and at most [`MAX_EVENT_SIZE`].
    pub fn event_buffer_len(&self) -> u32 {
        self.event_info_size
            .clamp(SCSI_EVENT_SIZE as u32, MAX_EVENT_SIZE)
    }
}

fn bad(field: &'static str, value: u32, reason: &'static str) -> SetupError {
    SetupError::BadConfig {
        field,
        value: value.into(),
        reason,
    }
}

/// Reads and checks the configuration (read only, §5.6.4.1).
pub(crate) fn read<T: Transport + ?Sized>(t: &mut T) -> Result<ScsiConfig, SetupError> {
    let c = read_config_consistent(t, |t| ScsiConfig {
        num_queues: t.config_u32(SCSI_CONFIG_NUM_QUEUES_OFFSET),
        seg_max: t.config_u32(SCSI_CONFIG_SEG_MAX_OFFSET),
        max_sectors: t.config_u32(SCSI_CONFIG_MAX_SECTORS_OFFSET),
        cmd_per_lun: t.config_u32(SCSI_CONFIG_CMD_PER_LUN_OFFSET),
        event_info_size: t.config_u32(SCSI_CONFIG_EVENT_INFO_SIZE_OFFSET),
        sense_size: t.config_u32(SCSI_CONFIG_SENSE_SIZE_OFFSET),
        cdb_size: t.config_u32(SCSI_CONFIG_CDB_SIZE_OFFSET),
        max_channel: t.config_u16(SCSI_CONFIG_MAX_CHANNEL_OFFSET),
        max_target: t.config_u16(SCSI_CONFIG_MAX_TARGET_OFFSET),
        max_lun: t.config_u32(SCSI_CONFIG_MAX_LUN_OFFSET),
    })?;
    check(c)
}

/// Checks the values read.
pub(crate) fn check(mut c: ScsiConfig) -> Result<ScsiConfig, SetupError> {
    if c.num_queues == 0 {
        return Err(bad("num_queues", 0, "must not be 0"));
    }
    if c.seg_max == 0 {
        return Err(bad("seg_max", 0, "must not be 0"));
    }
    if c.cdb_size == 0 || c.cdb_size > MAX_CDB_SIZE {
        return Err(bad("cdb_size", c.cdb_size, "not in 1..=260"));
    }
    if c.sense_size > MAX_SENSE_SIZE {
        return Err(bad("sense_size", c.sense_size, "above 252"));
    }
    c.cmd_per_lun = c.cmd_per_lun.max(1);
    c.max_target = c.max_target.min(255);
    c.max_lun = c.max_lun.min(MAX_LUN_HINT);
    Ok(c)
}
