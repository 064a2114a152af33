//! Command descriptor block parsing (SPC-4, SBC-3): the operation codes
//! the SCSI device emulates, decoded into [`Command`]s with every field
//! the device honours. Reserved or unsupported bits that change a
//! command's meaning are rejected with ILLEGAL REQUEST, INVALID FIELD IN
//! CDB (pointing at the byte); unknown operation codes with INVALID
//! COMMAND OPERATION CODE.
//!
//! ```
//! use ringwork_device::scsi::cdb::{parse, Command};
//!
//! // READ(10) of 8 blocks at LBA 0x1234 with FUA.
//! let c = parse(&[0x28, 0x08, 0, 0, 0x12, 0x34, 0, 0, 8, 0]).unwrap();
//! assert_eq!(c, Command::Read { lba: 0x1234, blocks: 8, fua: true });
//! ```
//!
//! Panic contract: the CDB is driver-controlled; every access is bounds
//! checked and nothing here panics.

use super::sense::Sense;

/// TEST UNIT READY.
pub const TEST_UNIT_READY: u8 = 0x00;
/// REQUEST SENSE.
pub const REQUEST_SENSE: u8 = 0x03;
/// READ(6).
pub const READ_6: u8 = 0x08;
/// WRITE(6).
pub const WRITE_6: u8 = 0x0a;
/// INQUIRY.
pub const INQUIRY: u8 = 0x12;
/// MODE SENSE(6).
pub const MODE_SENSE_6: u8 = 0x1a;
/// START STOP UNIT.
pub const START_STOP_UNIT: u8 = 0x1b;
/// READ CAPACITY(10).
pub const READ_CAPACITY_10: u8 = 0x25;
/// READ(10).
pub const READ_10: u8 = 0x28;
/// WRITE(10).
pub const WRITE_10: u8 = 0x2a;
/// SYNCHRONIZE CACHE(10).
pub const SYNCHRONIZE_CACHE_10: u8 = 0x35;
/// WRITE SAME(10).
pub const WRITE_SAME_10: u8 = 0x41;
/// UNMAP.
pub const UNMAP: u8 = 0x42;
/// MODE SENSE(10).
pub const MODE_SENSE_10: u8 = 0x5a;
/// READ(16).
pub const READ_16: u8 = 0x88;
/// WRITE(16).
pub const WRITE_16: u8 = 0x8a;
/// SYNCHRONIZE CACHE(16).
pub const SYNCHRONIZE_CACHE_16: u8 = 0x91;
/// WRITE SAME(16).
pub const WRITE_SAME_16: u8 = 0x93;
/// SERVICE ACTION IN(16); READ CAPACITY(16) is its service action 10h.
pub const SERVICE_ACTION_IN_16: u8 = 0x9e;
/// Service action of READ CAPACITY(16).
pub const SAI_READ_CAPACITY_16: u8 = 0x10;
/// REPORT LUNS.
pub const REPORT_LUNS: u8 = 0xa0;
/// READ(12).
pub const READ_12: u8 = 0xa8;
/// WRITE(12).
pub const WRITE_12: u8 = 0xaa;

/// A decoded command. Lengths are in bytes for allocation and parameter
/// lengths, in logical blocks for transfers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// TEST UNIT READY.
    TestUnitReady,
    /// REQUEST SENSE (fixed format only).
    RequestSense {
        /// Allocation length.
        alloc: u32,
    },
    /// INQUIRY: standard data, or the vital product data page `page`.
    Inquiry {
        /// EVPD: a VPD page is asked for.
        evpd: bool,
        /// The page code (0 without EVPD).
        page: u8,
        /// Allocation length.
        alloc: u32,
    },
    /// MODE SENSE(6) or (10).
    ModeSense {
        /// The 10-byte form (8-byte header).
        ten: bool,
        /// DBD: no block descriptor.
        dbd: bool,
        /// LLBAA: a long LBA block descriptor (10-byte form only).
        llbaa: bool,
        /// Page control: 0 current, 1 changeable, 2 default (3, saved, is
        /// rejected while parsing).
        pc: u8,
        /// Page code (3Fh: all pages).
        page: u8,
        /// Subpage code.
        subpage: u8,
        /// Allocation length.
        alloc: u32,
    },
    /// START STOP UNIT (accepted; the medium is always ready).
    StartStopUnit,
    /// READ CAPACITY(10).
    ReadCapacity10,
    /// READ CAPACITY(16).
    ReadCapacity16 {
        /// Allocation length.
        alloc: u32,
    },
    /// READ(6/10/12/16).
    Read {
        /// First logical block.
        lba: u64,
        /// Number of blocks.
        blocks: u32,
        /// Force unit access (no effect on reads from a file).
        fua: bool,
    },
    /// WRITE(6/10/12/16).
    Write {
        /// First logical block.
        lba: u64,
        /// Number of blocks.
        blocks: u32,
        /// Force unit access: stable before completion.
        fua: bool,
    },
    /// SYNCHRONIZE CACHE(10/16).
    SyncCache {
        /// First logical block.
        lba: u64,
        /// Number of blocks (0: to the end).
        blocks: u32,
    },
    /// UNMAP.
    Unmap {
        /// Parameter list length.
        param_len: u32,
    },
    /// WRITE SAME(10/16).
    WriteSame {
        /// First logical block.
        lba: u64,
        /// Number of blocks (nonzero: the device reports WSNZ).
        blocks: u32,
        /// UNMAP: deallocate when the data is all zeroes.
        unmap: bool,
        /// NDOB: no data-out buffer, the block is all zeroes (16 only).
        ndob: bool,
    },
    /// REPORT LUNS.
    ReportLuns {
        /// SELECT REPORT (0, 1 or 2).
        select: u8,
        /// Allocation length.
        alloc: u32,
    },
}

/// Length of a CDB given its operation code's group (SPC-4 §4.2.5.1);
/// `None` for groups with vendor-specific or variable lengths.
pub const fn cdb_len(opcode: u8) -> Option<usize> {
    match opcode >> 5 {
        0 => Some(6),
        1 | 2 => Some(10),
        4 => Some(16),
        5 => Some(12),
        _ => None,
    }
}

fn be16(b: &[u8], at: usize) -> u32 {
    u32::from(u16::from_be_bytes([b[at], b[at + 1]]))
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn be64(b: &[u8], at: usize) -> u64 {
    (u64::from(be32(b, at)) << 32) | u64::from(be32(b, at + 4))
}

/// Fails with INVALID FIELD IN CDB at `byte` when `cdb[byte] & mask` is
/// nonzero.
fn reserved(cdb: &[u8], byte: usize, mask: u8) -> Result<(), Sense> {
    if cdb[byte] & mask != 0 {
        return Err(Sense::invalid_field_in_cdb(byte as u16));
    }
    Ok(())
}

/// Decodes a CDB (`cdb` holds at least the CDB's bytes; extra bytes are
/// ignored).
pub fn parse(cdb: &[u8]) -> Result<Command, Sense> {
    let Some(&op) = cdb.first() else {
        return Err(Sense::invalid_field_in_cdb(0));
    };
    let Some(len) = cdb_len(op) else {
        return Err(Sense::INVALID_OPCODE);
    };
    if cdb.len() < len {
        // The driver's cdb_size cannot hold this command.
        return Err(Sense::invalid_field_in_cdb(cdb.len() as u16));
    }
    let cdb = &cdb[..len];
    // CONTROL byte: NACA is not supported (INQUIRY reports NormACA = 0).
    reserved(cdb, len - 1, 0x04)?;
    let rw_flags = |cdb: &[u8]| -> Result<bool, Sense> {
        // RDPROTECT/WRPROTECT: no protection information.
        reserved(cdb, 1, 0xe0)?;
        Ok(cdb[1] & 0x08 != 0)
    };
    Ok(match op {
        TEST_UNIT_READY => Command::TestUnitReady,
        REQUEST_SENSE => {
            // DESC: descriptor-format sense is not supported.
            reserved(cdb, 1, 0x01)?;
            Command::RequestSense {
                alloc: u32::from(cdb[4]),
            }
        }
        INQUIRY => {
            // CMDDT (obsolete) must be zero.
            reserved(cdb, 1, 0x02)?;
            let evpd = cdb[1] & 0x01 != 0;
            if !evpd && cdb[2] != 0 {
                return Err(Sense::invalid_field_in_cdb(2));
            }
            Command::Inquiry {
                evpd,
                page: cdb[2],
                alloc: be16(cdb, 3),
            }
        }
        MODE_SENSE_6 | MODE_SENSE_10 => {
            let ten = op == MODE_SENSE_10;
            let pc = cdb[2] >> 6;
            if pc == 3 {
                return Err(Sense::SAVING_NOT_SUPPORTED);
            }
            Command::ModeSense {
                ten,
                dbd: cdb[1] & 0x08 != 0,
                llbaa: ten && cdb[1] & 0x10 != 0,
                pc,
                page: cdb[2] & 0x3f,
                subpage: cdb[3],
                alloc: if ten { be16(cdb, 7) } else { u32::from(cdb[4]) },
            }
        }
        START_STOP_UNIT => Command::StartStopUnit,
        READ_CAPACITY_10 => {
            // PMI with a nonzero LBA (obsolete): refuse an LBA without PMI.
            if cdb[8] & 0x01 == 0 && be32(cdb, 2) != 0 {
                return Err(Sense::invalid_field_in_cdb(2));
            }
            Command::ReadCapacity10
        }
        SERVICE_ACTION_IN_16 => {
            if cdb[1] & 0x1f != SAI_READ_CAPACITY_16 {
                return Err(Sense::invalid_field_in_cdb(1));
            }
            Command::ReadCapacity16 {
                alloc: be32(cdb, 10),
            }
        }
        READ_6 | WRITE_6 => {
            let lba = u64::from(be32(cdb, 0) & 0x001f_ffff);
            // A transfer length of 0 means 256 blocks in the 6-byte form.
            let blocks = match cdb[4] {
                0 => 256,
                n => u32::from(n),
            };
            if op == READ_6 {
                Command::Read {
                    lba,
                    blocks,
                    fua: false,
                }
            } else {
                Command::Write {
                    lba,
                    blocks,
                    fua: false,
                }
            }
        }
        READ_10 | WRITE_10 | READ_12 | WRITE_12 | READ_16 | WRITE_16 => {
            let fua = rw_flags(cdb)?;
            let (lba, blocks) = match op {
                READ_10 | WRITE_10 => (u64::from(be32(cdb, 2)), be16(cdb, 7)),
                READ_12 | WRITE_12 => (u64::from(be32(cdb, 2)), be32(cdb, 6)),
                _ => (be64(cdb, 2), be32(cdb, 10)),
            };
            if matches!(op, READ_10 | READ_12 | READ_16) {
                Command::Read { lba, blocks, fua }
            } else {
                Command::Write { lba, blocks, fua }
            }
        }
        SYNCHRONIZE_CACHE_10 => Command::SyncCache {
            lba: u64::from(be32(cdb, 2)),
            blocks: be16(cdb, 7),
        },
        SYNCHRONIZE_CACHE_16 => Command::SyncCache {
            lba: be64(cdb, 2),
            blocks: be32(cdb, 10),
        },
        UNMAP => {
            // ANCHOR: anchored LBAs are not supported (VPD B2h ANC_SUP 0).
            reserved(cdb, 1, 0x01)?;
            Command::Unmap {
                param_len: be16(cdb, 7),
            }
        }
        WRITE_SAME_10 | WRITE_SAME_16 => {
            // WRPROTECT, ANCHOR, and the obsolete PBDATA/LBDATA.
            reserved(cdb, 1, 0xf6)?;
            let ndob = op == WRITE_SAME_16 && cdb[1] & 0x01 != 0;
            if op == WRITE_SAME_10 {
                reserved(cdb, 1, 0x01)?;
            }
            let (lba, blocks) = if op == WRITE_SAME_10 {
                (u64::from(be32(cdb, 2)), be16(cdb, 7))
            } else {
                (be64(cdb, 2), be32(cdb, 10))
            };
            if blocks == 0 {
                // WSNZ = 1 in the Block Limits VPD page.
                return Err(Sense::invalid_field_in_cdb(if op == WRITE_SAME_10 {
                    7
                } else {
                    10
                }));
            }
            Command::WriteSame {
                lba,
                blocks,
                unmap: cdb[1] & 0x08 != 0,
                ndob,
            }
        }
        REPORT_LUNS => {
            let select = cdb[2];
            if select > 2 {
                return Err(Sense::invalid_field_in_cdb(2));
            }
            Command::ReportLuns {
                select,
                alloc: be32(cdb, 6),
            }
        }
        _ => return Err(Sense::INVALID_OPCODE),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rw_forms() {
        assert_eq!(
            parse(&[READ_6, 0x1f, 0xff, 0xff, 0, 0]),
            Ok(Command::Read {
                lba: 0x1f_ffff,
                blocks: 256,
                fua: false
            })
        );
        assert_eq!(
            parse(&[WRITE_12, 0, 0, 0, 0, 9, 0, 1, 0, 0, 0, 0]),
            Ok(Command::Write {
                lba: 9,
                blocks: 0x10000,
                fua: false
            })
        );
        let mut c = [0u8; 16];
        c[0] = READ_16;
        c[2] = 1;
        c[13] = 4;
        assert_eq!(
            parse(&c),
            Ok(Command::Read {
                lba: 1 << 56,
                blocks: 4,
                fua: false
            })
        );
        c[1] = 0x20; // RDPROTECT
        assert_eq!(parse(&c), Err(Sense::invalid_field_in_cdb(1)));
    }

    #[test]
    fn short_and_unknown() {
        assert_eq!(parse(&[]), Err(Sense::invalid_field_in_cdb(0)));
        assert_eq!(parse(&[READ_10, 0, 0]), Err(Sense::invalid_field_in_cdb(3)));
        assert_eq!(parse(&[0xff; 16]), Err(Sense::INVALID_OPCODE));
        assert_eq!(parse(&[0x04, 0, 0, 0, 0, 0]), Err(Sense::INVALID_OPCODE));
        // NACA in the control byte.
        assert_eq!(
            parse(&[TEST_UNIT_READY, 0, 0, 0, 0, 4]),
            Err(Sense::invalid_field_in_cdb(5))
        );
    }

    #[test]
    fn inquiry_and_mode_sense_fields() {
        assert_eq!(
            parse(&[INQUIRY, 1, 0x83, 1, 0, 0]),
            Ok(Command::Inquiry {
                evpd: true,
                page: 0x83,
                alloc: 256
            })
        );
        assert_eq!(
            parse(&[INQUIRY, 0, 0x83, 0, 36, 0]),
            Err(Sense::invalid_field_in_cdb(2))
        );
        assert_eq!(
            parse(&[MODE_SENSE_6, 0, 0xc8, 0, 4, 0]),
            Err(Sense::SAVING_NOT_SUPPORTED)
        );
        assert_eq!(
            parse(&[MODE_SENSE_10, 0x18, 0x3f, 0, 0, 0, 0, 1, 0, 0]),
            Ok(Command::ModeSense {
                ten: true,
                dbd: true,
                llbaa: true,
                pc: 0,
                page: 0x3f,
                subpage: 0,
                alloc: 256
            })
        );
    }

    #[test]
    fn write_same_and_report_luns() {
        assert_eq!(
            parse(&[WRITE_SAME_10, 0x08, 0, 0, 0, 1, 0, 0, 0, 0]),
            Err(Sense::invalid_field_in_cdb(7))
        );
        let mut c = [0u8; 16];
        c[0] = WRITE_SAME_16;
        c[1] = 0x09;
        c[13] = 2;
        assert_eq!(
            parse(&c),
            Ok(Command::WriteSame {
                lba: 0,
                blocks: 2,
                unmap: true,
                ndob: true
            })
        );
        assert_eq!(
            parse(&[REPORT_LUNS, 0, 2, 0, 0, 0, 0, 0, 0, 8, 0, 0]),
            Ok(Command::ReportLuns {
                select: 2,
                alloc: 8
            })
        );
        assert_eq!(
            parse(&[REPORT_LUNS, 0, 3, 0, 0, 0, 0, 0, 1, 0, 0, 0]),
            Err(Sense::invalid_field_in_cdb(2))
        );
    }
}
