//! Command execution: one CDB against one addressed logical unit, with
//! the data-in and data-out buffers behind [`DataIo`] (the chain writer
//! and reader in the device, plain vectors in tests). Block I/O goes
//! through a private bounce buffer (`pread`/`pwrite` on the image), never
//! straight between the file and guest memory.
//!
//! Unit attention conditions are reported (and cleared) by the first
//! command other than INQUIRY, REPORT LUNS and REQUEST SENSE (SPC-4
//! §5.14); REQUEST SENSE returns and clears one.
//!
//! Trust and panic contract: the CDB and the data-out bytes are
//! driver-controlled; every length is checked against the image, the
//! buffers and the advertised limits before anything is transferred.
//! Guest-memory faults come back as [`ChainError`]s (the caller breaks the
//! queue); file errors become MEDIUM ERROR / DATA PROTECT sense. Nothing
//! here panics.

use std::io;

use ringwork_queue::device::ChainError;
use ringwork_spec::scsi::{VIRTIO_SCSI_S_OK, VIRTIO_SCSI_S_OVERRUN};

use super::cdb::{self, Command};
use super::inquiry::{self, NO_LUN, TYPE_DISK};
use super::lun::{single_level_lun, Lookup, Lun, LunInfo, LunTable};
use super::mode::{self, ModeRequest};
use super::sense::{Sense, STATUS_CHECK_CONDITION, STATUS_GOOD};

/// Size of a worker's bounce buffer (a multiple of every block size).
pub(crate) const BOUNCE_LEN: usize = 1 << 20;

/// Peripheral device type of a well-known logical unit.
const TYPE_WLUN: u8 = 0x1e;

/// The data buffers of one command.
pub(crate) trait DataIo {
    /// Bytes of data-in space (device-writable, after the response).
    fn in_len(&self) -> usize;
    /// Bytes of data-out (device-readable, after the request header).
    fn out_len(&self) -> usize;
    /// Appends to data-in; returns how many bytes fit.
    fn write_in(&mut self, data: &[u8]) -> Result<usize, ChainError>;
    /// Reads the next data-out bytes; returns how many were read.
    fn read_out(&mut self, buf: &mut [u8]) -> Result<usize, ChainError>;
}

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Outcome {
    /// `VIRTIO_SCSI_S_*`.
    pub response: u8,
    /// SAM status.
    pub status: u8,
    /// Sense data for CHECK CONDITION.
    pub sense: Option<Sense>,
}

impl Outcome {
    /// GOOD.
    pub(crate) const GOOD: Self = Self {
        response: VIRTIO_SCSI_S_OK,
        status: STATUS_GOOD,
        sense: None,
    };

    /// CHECK CONDITION with `s`.
    pub(crate) const fn check(s: Sense) -> Self {
        Self {
            response: VIRTIO_SCSI_S_OK,
            status: STATUS_CHECK_CONDITION,
            sense: Some(s),
        }
    }

    /// A virtio-level response (the command was not executed).
    pub(crate) const fn response(r: u8) -> Self {
        Self {
            response: r,
            status: STATUS_GOOD,
            sense: None,
        }
    }
}

type Res = Result<Outcome, ChainError>;

/// Returns `Ok(CHECK CONDITION)` from the enclosing function on error.
macro_rules! check {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(s) => return Ok(Outcome::check(s)),
        }
    };
}

/// Copies at most `alloc` bytes of `data` to data-in.
fn data_in(io: &mut dyn DataIo, data: &[u8], alloc: u32) -> Res {
    let n = data.len().min(alloc as usize);
    io.write_in(&data[..n])?;
    Ok(Outcome::GOOD)
}

/// Sense for a failed write: a full file system is DATA PROTECT, SPACE
/// ALLOCATION FAILED WRITE PROTECT, anything else MEDIUM ERROR.
fn write_error(e: &io::Error) -> Sense {
    tracing::warn!(error = %e, "SCSI write failed");
    match e.raw_os_error() {
        Some(libc::ENOSPC | libc::EDQUOT) => Sense::SPACE_ALLOCATION_FAILED,
        _ => Sense::WRITE_ERROR,
    }
}

/// The REPORT LUNS parameter data for `luns` (SPC-4 §6.33): single-level
/// LUNs, peripheral addressing below 256, flat space addressing above.
pub(crate) fn report_luns(luns: &[u16]) -> Vec<u8> {
    let mut b = Vec::with_capacity(8 + 8 * luns.len());
    b.extend_from_slice(&((8 * luns.len()) as u32).to_be_bytes());
    b.extend_from_slice(&[0; 4]);
    for &l in luns {
        b.extend_from_slice(&single_level_lun(l));
        b.extend_from_slice(&[0; 6]);
    }
    b
}

/// READ CAPACITY(16) parameter data (SBC-3 §5.16.2): LBPME and LBPRZ
/// for a writable LUN (UNMAP punches holes that read back as zeroes).
pub(crate) fn read_capacity16(l: &LunInfo) -> [u8; 32] {
    let mut b = [0u8; 32];
    b[..8].copy_from_slice(&(l.blocks - 1).to_be_bytes());
    b[8..12].copy_from_slice(&l.block_size.to_be_bytes());
    if !l.readonly {
        b[14] = 0x80 | 0x40;
    }
    b
}

/// READ CAPACITY(10) parameter data; the last LBA saturates at
/// FFFFFFFFh (use READ CAPACITY(16)).
pub(crate) fn read_capacity10(l: &LunInfo) -> [u8; 8] {
    let mut b = [0u8; 8];
    let last = u32::try_from(l.blocks - 1).unwrap_or(u32::MAX);
    b[..4].copy_from_slice(&last.to_be_bytes());
    b[4..].copy_from_slice(&l.block_size.to_be_bytes());
    b
}

/// A worker's command executor (owns the bounce buffer).
#[derive(Debug, Default)]
pub(crate) struct Exec {
    bounce: Vec<u8>,
}

/// The shared, immutable zero buffer hole punching falls back to
/// (allocated on first use).
fn zeroes() -> &'static [u8] {
    static ZEROES: std::sync::OnceLock<Box<[u8]>> = std::sync::OnceLock::new();
    ZEROES.get_or_init(|| vec![0u8; BOUNCE_LEN].into_boxed_slice())
}

impl Exec {
    /// An executor; buffers are allocated on first use.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    fn bounce(&mut self) -> &mut [u8] {
        if self.bounce.len() != BOUNCE_LEN {
            self.bounce = vec![0; BOUNCE_LEN];
        }
        &mut self.bounce
    }

    /// Runs `cdb` on the unit `target` resolved to in `table`.
    pub(crate) fn run(
        &mut self,
        target: &Lookup,
        table: &LunTable,
        cdb: &[u8],
        io: &mut dyn DataIo,
    ) -> Res {
        let luns_of_target = &|t: u8| table.luns_of(t);
        match target {
            Lookup::BadTarget => Ok(Outcome::response(
                ringwork_spec::scsi::VIRTIO_SCSI_S_BAD_TARGET,
            )),
            Lookup::Absent { target, lun0 } => {
                Self::absent(*target, *lun0, cdb, io, luns_of_target)
            }
            Lookup::ReportLunsWlun => Self::wlun(cdb, io, luns_of_target),
            Lookup::Present(lun) => self.present(lun, cdb, io, luns_of_target),
        }
    }

    /// An address on an existing target without a logical unit (SPC-4
    /// §4.6.4): INQUIRY reports peripheral qualifier 3, REQUEST SENSE
    /// returns LOGICAL UNIT NOT SUPPORTED, LUN 0 answers REPORT LUNS,
    /// everything else fails with LOGICAL UNIT NOT SUPPORTED.
    fn absent(
        target: u8,
        lun0: bool,
        cdb: &[u8],
        io: &mut dyn DataIo,
        luns_of_target: &dyn Fn(u8) -> Vec<u16>,
    ) -> Res {
        match cdb::parse(cdb) {
            Ok(Command::Inquiry {
                evpd: false, alloc, ..
            }) => data_in(io, &inquiry::standard(NO_LUN), alloc),
            Ok(Command::RequestSense { alloc }) => {
                data_in(io, &Sense::LUN_NOT_SUPPORTED.to_fixed(), alloc)
            }
            Ok(Command::ReportLuns { select, alloc }) if lun0 => {
                let luns = if select == 1 {
                    Vec::new()
                } else {
                    luns_of_target(target)
                };
                data_in(io, &report_luns(&luns), alloc)
            }
            _ => Ok(Outcome::check(Sense::LUN_NOT_SUPPORTED)),
        }
    }

    /// The REPORT LUNS well-known logical unit (VIRTIO 1.4 §5.6.6.1): it
    /// lists the LUNs of target 0.
    fn wlun(cdb: &[u8], io: &mut dyn DataIo, luns_of_target: &dyn Fn(u8) -> Vec<u16>) -> Res {
        match check!(cdb::parse(cdb)) {
            Command::Inquiry {
                evpd: false, alloc, ..
            } => data_in(io, &inquiry::standard(TYPE_WLUN), alloc),
            Command::TestUnitReady => Ok(Outcome::GOOD),
            Command::RequestSense { alloc } => data_in(io, &Sense::NONE.to_fixed(), alloc),
            Command::ReportLuns { select, alloc } => {
                let luns = if select == 1 {
                    Vec::new()
                } else {
                    luns_of_target(0)
                };
                data_in(io, &report_luns(&luns), alloc)
            }
            Command::Inquiry { .. } => Ok(Outcome::check(Sense::invalid_field_in_cdb(1))),
            _ => Ok(Outcome::check(Sense::INVALID_OPCODE)),
        }
    }

    fn present(
        &mut self,
        lun: &Lun,
        cdb: &[u8],
        io: &mut dyn DataIo,
        luns_of_target: &dyn Fn(u8) -> Vec<u16>,
    ) -> Res {
        let op = cdb.first().copied().unwrap_or(0xff);
        if !matches!(op, cdb::INQUIRY | cdb::REPORT_LUNS | cdb::REQUEST_SENSE) {
            if let Some(ua) = lun.take_unit_attention() {
                return Ok(Outcome::check(ua));
            }
        }
        let l = &lun.info;
        match check!(cdb::parse(cdb)) {
            Command::TestUnitReady | Command::StartStopUnit => Ok(Outcome::GOOD),
            Command::RequestSense { alloc } => {
                let s = lun.take_unit_attention().unwrap_or(Sense::NONE);
                data_in(io, &s.to_fixed(), alloc)
            }
            Command::Inquiry { evpd, page, alloc } => {
                let data = if evpd {
                    check!(inquiry::vpd(l, page))
                } else {
                    inquiry::standard(TYPE_DISK)
                };
                data_in(io, &data, alloc)
            }
            Command::ModeSense {
                ten,
                dbd,
                llbaa,
                pc,
                page,
                subpage,
                alloc,
            } => {
                let r = ModeRequest {
                    ten,
                    dbd,
                    llbaa,
                    pc,
                    page,
                    subpage,
                };
                data_in(io, &check!(mode::mode_sense(l, r)), alloc)
            }
            Command::ReadCapacity10 => data_in(io, &read_capacity10(l), 8),
            Command::ReadCapacity16 { alloc } => data_in(io, &read_capacity16(l), alloc),
            Command::ReportLuns { select, alloc } => {
                let luns = if select == 1 {
                    Vec::new()
                } else {
                    luns_of_target(l.target)
                };
                data_in(io, &report_luns(&luns), alloc)
            }
            Command::Read { lba, blocks, .. } => self.read(lun, lba, blocks, io),
            Command::Write { lba, blocks, fua } => self.write(lun, lba, blocks, fua, io),
            Command::SyncCache { lba, blocks } => {
                if blocks == 0 {
                    check!(l.range(lba, 0));
                } else {
                    check!(l.range(lba, u64::from(blocks)));
                }
                if !l.readonly {
                    if let Err(e) = lun.sync() {
                        return Ok(Outcome::check(write_error(&e)));
                    }
                }
                Ok(Outcome::GOOD)
            }
            Command::Unmap { param_len } => self.unmap(lun, param_len, io),
            Command::WriteSame {
                lba,
                blocks,
                unmap,
                ndob,
            } => self.write_same(lun, lba, blocks, unmap, ndob, io),
        }
    }

    /// Checks a READ/WRITE's range and length; `Err` is the outcome.
    fn rw_range(l: &LunInfo, lba: u64, blocks: u32, buf: usize) -> Result<(u64, u64), Outcome> {
        if blocks > l.max_transfer_blocks() {
            return Err(Outcome::check(Sense::new(
                super::sense::ILLEGAL_REQUEST,
                0x24,
                0,
            )));
        }
        let (off, len) = l.range(lba, u64::from(blocks)).map_err(Outcome::check)?;
        if (buf as u64) < len {
            // VIRTIO 1.4 §5.6.6.1: the transfer size needs more data than
            // the buffers hold.
            return Err(Outcome::response(VIRTIO_SCSI_S_OVERRUN));
        }
        Ok((off, len))
    }

    fn read(&mut self, lun: &Lun, lba: u64, blocks: u32, io: &mut dyn DataIo) -> Res {
        let (off, len) = match Self::rw_range(&lun.info, lba, blocks, io.in_len()) {
            Ok(r) => r,
            Err(o) => return Ok(o),
        };
        let mut done = 0u64;
        while done < len {
            let n = (len - done).min(BOUNCE_LEN as u64) as usize;
            let buf = &mut self.bounce()[..n];
            if let Err(e) = lun.read_at(buf, off + done) {
                tracing::warn!(error = %e, "SCSI read failed");
                return Ok(Outcome::check(Sense::READ_ERROR));
            }
            io.write_in(&self.bounce[..n])?;
            done += n as u64;
        }
        Ok(Outcome::GOOD)
    }

    fn write(&mut self, lun: &Lun, lba: u64, blocks: u32, fua: bool, io: &mut dyn DataIo) -> Res {
        if lun.info.readonly {
            return Ok(Outcome::check(Sense::WRITE_PROTECTED));
        }
        let (off, len) = match Self::rw_range(&lun.info, lba, blocks, io.out_len()) {
            Ok(r) => r,
            Err(o) => return Ok(o),
        };
        let mut done = 0u64;
        while done < len {
            let n = (len - done).min(BOUNCE_LEN as u64) as usize;
            let got = io.read_out(&mut self.bounce()[..n])?;
            if got != n {
                return Ok(Outcome::response(VIRTIO_SCSI_S_OVERRUN));
            }
            if let Err(e) = lun.write_at(&self.bounce[..n], off + done) {
                return Ok(Outcome::check(write_error(&e)));
            }
            done += n as u64;
        }
        if fua {
            if let Err(e) = lun.sync() {
                return Ok(Outcome::check(write_error(&e)));
            }
        }
        Ok(Outcome::GOOD)
    }

    /// UNMAP (SBC-3 §5.28): every descriptor is checked before any range
    /// is deallocated.
    fn unmap(&mut self, lun: &Lun, param_len: u32, io: &mut dyn DataIo) -> Res {
        let l = &lun.info;
        if l.readonly {
            return Ok(Outcome::check(Sense::WRITE_PROTECTED));
        }
        if param_len == 0 {
            return Ok(Outcome::GOOD);
        }
        if param_len < 8 {
            return Ok(Outcome::check(Sense::PARAM_LIST_LENGTH));
        }
        let plen = param_len as usize;
        if io.out_len() < plen {
            return Ok(Outcome::response(VIRTIO_SCSI_S_OVERRUN));
        }
        let mut p = vec![0u8; plen];
        if io.read_out(&mut p)? != plen {
            return Ok(Outcome::response(VIRTIO_SCSI_S_OVERRUN));
        }
        let bd_len = usize::from(u16::from_be_bytes([p[2], p[3]]));
        let count = bd_len.min(plen - 8) / 16;
        if count as u64 > u64::from(l.max_unmap_descriptors()) {
            return Ok(Outcome::check(Sense::invalid_field_in_param(2)));
        }
        let mut ranges = Vec::with_capacity(count);
        let mut total = 0u64;
        for i in 0..count {
            let d = &p[8 + 16 * i..24 + 16 * i];
            let mut lba = [0u8; 8];
            lba.copy_from_slice(&d[..8]);
            let lba = u64::from_be_bytes(lba);
            let n = u64::from(u32::from_be_bytes([d[8], d[9], d[10], d[11]]));
            let r = check!(l.range(lba, n));
            total += n;
            if total > u64::from(l.max_unmap_blocks()) {
                return Ok(Outcome::check(Sense::invalid_field_in_param(
                    (16 + 16 * i) as u16,
                )));
            }
            if n > 0 {
                ranges.push(r);
            }
        }
        for (off, len) in ranges {
            if let Err(e) = lun.punch(off, len, zeroes()) {
                return Ok(Outcome::check(write_error(&e)));
            }
        }
        Ok(Outcome::GOOD)
    }

    /// WRITE SAME(10/16) (SBC-3 §5.41, §5.42): an all-zero block with
    /// UNMAP (or NDOB) deallocates; anything else is written block by
    /// block.
    fn write_same(
        &mut self,
        lun: &Lun,
        lba: u64,
        blocks: u32,
        unmap: bool,
        ndob: bool,
        io: &mut dyn DataIo,
    ) -> Res {
        let l = &lun.info;
        if l.readonly {
            return Ok(Outcome::check(Sense::WRITE_PROTECTED));
        }
        if blocks > l.max_unmap_blocks() {
            return Ok(Outcome::check(Sense::new(
                super::sense::ILLEGAL_REQUEST,
                0x24,
                0,
            )));
        }
        let (off, len) = check!(l.range(lba, u64::from(blocks)));
        let bs = l.block_size as usize;
        let mut block = vec![0u8; bs];
        if !ndob && (io.out_len() < bs || io.read_out(&mut block)? != bs) {
            return Ok(Outcome::response(VIRTIO_SCSI_S_OVERRUN));
        }
        let zero = block.iter().all(|&b| b == 0);
        if zero && (unmap || ndob) {
            if let Err(e) = lun.punch(off, len, zeroes()) {
                return Ok(Outcome::check(write_error(&e)));
            }
            return Ok(Outcome::GOOD);
        }
        let buf = self.bounce();
        for chunk in buf.chunks_exact_mut(bs) {
            chunk.copy_from_slice(&block);
        }
        let mut done = 0u64;
        while done < len {
            let n = (len - done).min(BOUNCE_LEN as u64) as usize;
            if let Err(e) = lun.write_at(&self.bounce[..n], off + done) {
                return Ok(Outcome::check(write_error(&e)));
            }
            done += n as u64;
        }
        Ok(Outcome::GOOD)
    }
}
