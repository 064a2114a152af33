//! SCSI status codes (SAM-5) and fixed-format sense data (SPC-4 §4.5.3):
//! what a logical unit answers when a command fails.
//!
//! ```
//! use ringwork_device::scsi::sense::{Sense, ILLEGAL_REQUEST};
//!
//! let s = Sense::invalid_field_in_cdb(2);
//! let b = s.to_fixed();
//! assert_eq!(b.len(), 18);
//! assert_eq!((b[0], b[2], b[12], b[13]), (0x70, ILLEGAL_REQUEST, 0x24, 0));
//! // Sense-key specific: SKSV, C/D (an error in the CDB), byte 2.
//! assert_eq!(&b[15..18], &[0xc0, 0, 2]);
//! ```
//!
//! Panic contract: pure data; nothing here panics.

/// SAM status: GOOD.
pub const STATUS_GOOD: u8 = 0x00;
/// SAM status: CHECK CONDITION (sense data follows).
pub const STATUS_CHECK_CONDITION: u8 = 0x02;

/// Sense key: NO SENSE.
pub const NO_SENSE: u8 = 0x0;
/// Sense key: NOT READY.
pub const NOT_READY: u8 = 0x2;
/// Sense key: MEDIUM ERROR.
pub const MEDIUM_ERROR: u8 = 0x3;
/// Sense key: HARDWARE ERROR.
pub const HARDWARE_ERROR: u8 = 0x4;
/// Sense key: ILLEGAL REQUEST.
pub const ILLEGAL_REQUEST: u8 = 0x5;
/// Sense key: UNIT ATTENTION.
pub const UNIT_ATTENTION: u8 = 0x6;
/// Sense key: DATA PROTECT.
pub const DATA_PROTECT: u8 = 0x7;
/// Sense key: ABORTED COMMAND.
pub const ABORTED_COMMAND: u8 = 0xb;

/// Response code of current, fixed-format sense data.
pub const FIXED_CURRENT: u8 = 0x70;
/// Length of the fixed-format sense data this device writes.
pub const FIXED_SENSE_LEN: usize = 18;

/// One sense condition: key, additional sense code and qualifier, and
/// where in the CDB or parameter list the error is, if known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sense {
    /// Sense key (`ILLEGAL_REQUEST`, ...).
    pub key: u8,
    /// Additional sense code.
    pub asc: u8,
    /// Additional sense code qualifier.
    pub ascq: u8,
    /// Field pointer for ILLEGAL REQUEST: `(in_cdb, byte)`; `in_cdb`
    /// false means the parameter list.
    pub field: Option<(bool, u16)>,
}

impl Sense {
    /// A condition without a field pointer.
    pub const fn new(key: u8, asc: u8, ascq: u8) -> Self {
        Self {
            key,
            asc,
            ascq,
            field: None,
        }
    }

    /// NO SENSE, no additional code (what REQUEST SENSE returns when
    /// nothing is pending).
    pub const NONE: Self = Self::new(NO_SENSE, 0, 0);
    /// ILLEGAL REQUEST, INVALID COMMAND OPERATION CODE (20h/00h).
    pub const INVALID_OPCODE: Self = Self::new(ILLEGAL_REQUEST, 0x20, 0x00);
    /// ILLEGAL REQUEST, LOGICAL BLOCK ADDRESS OUT OF RANGE (21h/00h).
    pub const LBA_OUT_OF_RANGE: Self = Self::new(ILLEGAL_REQUEST, 0x21, 0x00);
    /// ILLEGAL REQUEST, LOGICAL UNIT NOT SUPPORTED (25h/00h).
    pub const LUN_NOT_SUPPORTED: Self = Self::new(ILLEGAL_REQUEST, 0x25, 0x00);
    /// ILLEGAL REQUEST, PARAMETER LIST LENGTH ERROR (1Ah/00h).
    pub const PARAM_LIST_LENGTH: Self = Self::new(ILLEGAL_REQUEST, 0x1a, 0x00);
    /// ILLEGAL REQUEST, SAVING PARAMETERS NOT SUPPORTED (39h/00h).
    pub const SAVING_NOT_SUPPORTED: Self = Self::new(ILLEGAL_REQUEST, 0x39, 0x00);
    /// DATA PROTECT, WRITE PROTECTED (27h/00h).
    pub const WRITE_PROTECTED: Self = Self::new(DATA_PROTECT, 0x27, 0x00);
    /// DATA PROTECT, SPACE ALLOCATION FAILED WRITE PROTECT (27h/07h): the
    /// host file system is full.
    pub const SPACE_ALLOCATION_FAILED: Self = Self::new(DATA_PROTECT, 0x27, 0x07);
    /// MEDIUM ERROR, UNRECOVERED READ ERROR (11h/00h).
    pub const READ_ERROR: Self = Self::new(MEDIUM_ERROR, 0x11, 0x00);
    /// MEDIUM ERROR, WRITE ERROR (0Ch/00h).
    pub const WRITE_ERROR: Self = Self::new(MEDIUM_ERROR, 0x0c, 0x00);
    /// HARDWARE ERROR, INTERNAL TARGET FAILURE (44h/00h).
    pub const INTERNAL_TARGET_FAILURE: Self = Self::new(HARDWARE_ERROR, 0x44, 0x00);
    /// UNIT ATTENTION, REPORTED LUNS DATA HAS CHANGED (3Fh/0Eh).
    pub const REPORTED_LUNS_CHANGED: Self = Self::new(UNIT_ATTENTION, 0x3f, 0x0e);
    /// UNIT ATTENTION, BUS DEVICE RESET FUNCTION OCCURRED (29h/03h): a
    /// LOGICAL UNIT RESET.
    pub const LUN_RESET_OCCURRED: Self = Self::new(UNIT_ATTENTION, 0x29, 0x03);
    /// UNIT ATTENTION, I_T NEXUS LOSS OCCURRED (29h/07h).
    pub const NEXUS_LOSS_OCCURRED: Self = Self::new(UNIT_ATTENTION, 0x29, 0x07);

    /// ILLEGAL REQUEST, INVALID FIELD IN CDB (24h/00h), pointing at CDB
    /// byte `byte`.
    pub const fn invalid_field_in_cdb(byte: u16) -> Self {
        Self {
            key: ILLEGAL_REQUEST,
            asc: 0x24,
            ascq: 0,
            field: Some((true, byte)),
        }
    }

    /// ILLEGAL REQUEST, INVALID FIELD IN PARAMETER LIST (26h/00h),
    /// pointing at parameter list byte `byte`.
    pub const fn invalid_field_in_param(byte: u16) -> Self {
        Self {
            key: ILLEGAL_REQUEST,
            asc: 0x26,
            ascq: 0,
            field: Some((false, byte)),
        }
    }

    /// Whether this is a unit attention condition.
    pub const fn is_unit_attention(&self) -> bool {
        self.key == UNIT_ATTENTION
    }

    /// The fixed-format sense data (SPC-4 §4.5.3): response code 70h,
    /// sense key, additional length 10, ASC, ASCQ and, for a field
    /// pointer, the sense-key specific bytes (SKSV, C/D, field pointer).
    pub fn to_fixed(&self) -> [u8; FIXED_SENSE_LEN] {
        let mut b = [0u8; FIXED_SENSE_LEN];
        b[0] = FIXED_CURRENT;
        b[2] = self.key & 0x0f;
        b[7] = (FIXED_SENSE_LEN - 8) as u8;
        b[12] = self.asc;
        b[13] = self.ascq;
        if let Some((cdb, byte)) = self.field {
            b[15] = 0x80 | if cdb { 0x40 } else { 0 };
            b[16..18].copy_from_slice(&byte.to_be_bytes());
        }
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_format_bytes() {
        assert_eq!(
            Sense::LBA_OUT_OF_RANGE.to_fixed(),
            [0x70, 0, 5, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x21, 0, 0, 0, 0, 0]
        );
        assert_eq!(
            Sense::invalid_field_in_param(0x102).to_fixed()[15..],
            [0x80, 0x01, 0x02]
        );
        assert_eq!(Sense::WRITE_PROTECTED.to_fixed()[2], 7);
        assert!(Sense::REPORTED_LUNS_CHANGED.is_unit_attention());
        assert!(!Sense::NONE.is_unit_attention());
    }
}
