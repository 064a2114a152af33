//! Block requests (VIRTIO 1.4 §5.2.6): what a caller asks for, how the
//! driver checks it against the negotiated features and the configuration
//! (§5.2.6.1, driver requirements), and how it is laid out as a descriptor
//! chain: header (device-readable) | data | status (device-writable).
//!
//! The header, the status byte and the discard / write-zeroes range table
//! live in a per-request *slot* of DMA memory the driver allocated once per
//! queue entry at setup; data segments are caller-provided device
//! addresses.

use alloc::vec::Vec;

use ringwork_queue::{MemSlice, Segment};
use ringwork_spec::blk::{
    BlkDiscardWriteZeroes, BlkReqHeader, BLK_DISCARD_WRITE_ZEROES_SIZE, BLK_REQ_HEADER_SIZE,
    BLK_STATUS_SIZE, VIRTIO_BLK_ID_BYTES, VIRTIO_BLK_SECTOR_SIZE, VIRTIO_BLK_T_DISCARD,
    VIRTIO_BLK_T_FLUSH, VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT,
    VIRTIO_BLK_T_WRITE_ZEROES, VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP,
};

use super::config::BlkConfig;
use super::error::RequestError;

/// Ranges per discard / write-zeroes request the driver can hold in one
/// slot (the device's `max_discard_seg` / `max_write_zeroes_seg` may be
/// lower).
pub const MAX_RANGES: usize = 16;

/// Value the status byte is preset to, so a device that never writes it is
/// noticed (`BlkStatus::Other(0xff)`).
pub(crate) const STATUS_UNSET: u8 = 0xff;

/// Offset of the header in a slot.
pub(crate) const HDR_OFF: usize = 0;
/// Offset of the status byte in a slot.
pub(crate) const STATUS_OFF: usize = 16;
/// Offset of the range table in a slot.
pub(crate) const TABLE_OFF: usize = 32;

/// Bytes per slot for a table of `ranges` entries (a multiple of 16).
pub(crate) const fn slot_stride(ranges: usize) -> usize {
    TABLE_OFF + ranges * BLK_DISCARD_WRITE_ZEROES_SIZE
}

/// One range of a discard or write-zeroes request
/// (`struct virtio_blk_discard_write_zeroes`, without the flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DiscardRange {
    /// First sector (512-byte units).
    pub sector: u64,
    /// Number of sectors.
    pub sectors: u32,
}

/// A block request (VIRTIO 1.4 §5.2.6). Data segments are device addresses
/// the caller owns; they must stay valid until the request completes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlkRequest<'a> {
    /// `VIRTIO_BLK_T_IN`: read sectors into `data` (device-writable), a
    /// non-zero multiple of 512 bytes in total.
    Read {
        /// First sector.
        sector: u64,
        /// Where the data goes.
        data: &'a [Segment],
    },
    /// `VIRTIO_BLK_T_OUT`: write `data` (device-readable), a non-zero
    /// multiple of 512 bytes in total.
    Write {
        /// First sector.
        sector: u64,
        /// The data.
        data: &'a [Segment],
    },
    /// `VIRTIO_BLK_T_FLUSH` (needs `VIRTIO_BLK_F_FLUSH`).
    Flush,
    /// `VIRTIO_BLK_T_GET_ID`: the 20-byte device id string into `buf`.
    GetId {
        /// A 20-byte device-writable buffer.
        buf: Segment,
    },
    /// `VIRTIO_BLK_T_DISCARD` (needs `VIRTIO_BLK_F_DISCARD`).
    Discard {
        /// The ranges (at most `max_discard_seg` and [`MAX_RANGES`]).
        ranges: &'a [DiscardRange],
    },
    /// `VIRTIO_BLK_T_WRITE_ZEROES` (needs `VIRTIO_BLK_F_WRITE_ZEROES`).
    WriteZeroes {
        /// The ranges (at most `max_write_zeroes_seg` and [`MAX_RANGES`]).
        ranges: &'a [DiscardRange],
        /// Set the `unmap` flag: the device may deallocate the ranges.
        unmap: bool,
    },
    /// Any request, unchecked: header `req_type` / `sector`, then `out`
    /// (device-readable), then `inp` (device-writable), then the status
    /// byte. Only the queue index and the queue's capacity are checked: this
    /// is for conformance checkers sending deliberately odd requests.
    Raw {
        /// The header's `type`.
        req_type: u32,
        /// The header's `sector`.
        sector: u64,
        /// Device-readable segments after the header.
        out: &'a [Segment],
        /// Device-writable segments before the status byte.
        inp: &'a [Segment],
    },
}

/// What the driver knows when checking a request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Data segments per request: `seg_max`, and what the queue can hold.
    pub max_data_segments: usize,
    /// Ranges one slot's table holds.
    pub table_ranges: usize,
    /// `VIRTIO_BLK_F_RO` negotiated.
    pub read_only: bool,
    /// `VIRTIO_BLK_F_FLUSH` negotiated.
    pub flush: bool,
}

fn check_data(
    data: &[Segment],
    sector: u64,
    cfg: &BlkConfig,
    lim: &Limits,
) -> Result<(), RequestError> {
    if data.len() > lim.max_data_segments {
        return Err(RequestError::TooManySegments {
            segments: data.len(),
            max: lim.max_data_segments,
        });
    }
    let mut total = 0u64;
    for s in data {
        if s.len == 0 {
            return Err(RequestError::EmptySegment);
        }
        if let Some(max) = cfg.size_max {
            if s.len > max {
                return Err(RequestError::SegmentTooLarge { len: s.len, max });
            }
        }
        total += u64::from(s.len);
    }
    if total == 0 || total % VIRTIO_BLK_SECTOR_SIZE as u64 != 0 {
        return Err(RequestError::NotSectorMultiple { len: total });
    }
    if total > u64::from(u32::MAX) {
        return Err(RequestError::TooLarge);
    }
    check_range(sector, total / VIRTIO_BLK_SECTOR_SIZE as u64, cfg.capacity)
}

fn check_range(sector: u64, sectors: u64, capacity: u64) -> Result<(), RequestError> {
    match sector.checked_add(sectors) {
        Some(end) if end <= capacity => Ok(()),
        _ => Err(RequestError::BeyondCapacity {
            sector,
            sectors,
            capacity,
        }),
    }
}

fn check_ranges(
    ranges: &[DiscardRange],
    max_seg: u32,
    max_sectors: u32,
    cfg: &BlkConfig,
    lim: &Limits,
) -> Result<(), RequestError> {
    let max = lim.table_ranges.min(max_seg as usize);
    if ranges.is_empty() || ranges.len() > max {
        return Err(RequestError::BadRangeCount {
            ranges: ranges.len(),
            max,
        });
    }
    for r in ranges {
        if r.sectors == 0 || r.sectors > max_sectors {
            return Err(RequestError::BadRangeLength {
                sectors: r.sectors,
                max: max_sectors,
            });
        }
        check_range(r.sector, r.sectors.into(), cfg.capacity)?;
    }
    Ok(())
}

/// Checks `req` against the negotiated features and the configuration
/// (§5.2.6.1). [`BlkRequest::Raw`] is not checked.
pub(crate) fn validate(
    req: &BlkRequest<'_>,
    cfg: &BlkConfig,
    lim: &Limits,
) -> Result<(), RequestError> {
    match *req {
        BlkRequest::Read { sector, data } => check_data(data, sector, cfg, lim),
        BlkRequest::Write { sector, data } => {
            if lim.read_only {
                return Err(RequestError::ReadOnly);
            }
            check_data(data, sector, cfg, lim)
        }
        BlkRequest::Flush => {
            if lim.flush {
                Ok(())
            } else {
                Err(RequestError::NotNegotiated {
                    feature: "VIRTIO_BLK_F_FLUSH",
                })
            }
        }
        BlkRequest::GetId { buf } => {
            if buf.len as usize == VIRTIO_BLK_ID_BYTES {
                Ok(())
            } else {
                Err(RequestError::BadIdLength { len: buf.len })
            }
        }
        BlkRequest::Discard { ranges } => {
            let Some(d) = cfg.discard else {
                return Err(RequestError::NotNegotiated {
                    feature: "VIRTIO_BLK_F_DISCARD",
                });
            };
            if lim.read_only {
                return Err(RequestError::ReadOnly);
            }
            check_ranges(ranges, d.max_seg, d.max_sectors, cfg, lim)
        }
        BlkRequest::WriteZeroes { ranges, .. } => {
            let Some(w) = cfg.write_zeroes else {
                return Err(RequestError::NotNegotiated {
                    feature: "VIRTIO_BLK_F_WRITE_ZEROES",
                });
            };
            if lim.read_only {
                return Err(RequestError::ReadOnly);
            }
            check_ranges(ranges, w.max_seg, w.max_sectors, cfg, lim)
        }
        BlkRequest::Raw { .. } => Ok(()),
    }
}

/// Writes the header, presets the status byte and writes the range table
/// into the slot at `slot` (device address `addr`), and lists the chain's
/// segments in `out` / `inp` (cleared first). Returns `false` when the
/// slot is too small for the table (only for a `Raw`-free caller error; a
/// validated request always fits).
pub(crate) fn lay_out(
    req: &BlkRequest<'_>,
    slot: MemSlice<'_>,
    addr: u64,
    out: &mut Vec<Segment>,
    inp: &mut Vec<Segment>,
) -> bool {
    out.clear();
    inp.clear();
    let (req_type, sector) = match *req {
        BlkRequest::Read { sector, .. } => (VIRTIO_BLK_T_IN, sector),
        BlkRequest::Write { sector, .. } => (VIRTIO_BLK_T_OUT, sector),
        BlkRequest::Flush => (VIRTIO_BLK_T_FLUSH, 0),
        BlkRequest::GetId { .. } => (VIRTIO_BLK_T_GET_ID, 0),
        BlkRequest::Discard { .. } => (VIRTIO_BLK_T_DISCARD, 0),
        BlkRequest::WriteZeroes { .. } => (VIRTIO_BLK_T_WRITE_ZEROES, 0),
        BlkRequest::Raw {
            req_type, sector, ..
        } => (req_type, sector),
    };
    let mut hdr = [0u8; BLK_REQ_HEADER_SIZE];
    {
        let mut h = BlkReqHeader::new_unchecked(&mut hdr[..]);
        h.set_type_(req_type);
        h.set_reserved(0);
        h.set_sector(sector);
    }
    if slot.write_bytes(HDR_OFF, &hdr).is_err() || slot.write_u8(STATUS_OFF, STATUS_UNSET).is_err()
    {
        return false;
    }
    out.push(Segment::new(
        addr + HDR_OFF as u64,
        BLK_REQ_HEADER_SIZE as u32,
    ));
    let status = Segment::new(addr + STATUS_OFF as u64, BLK_STATUS_SIZE as u32);
    match *req {
        BlkRequest::Read { data, .. } => inp.extend_from_slice(data),
        BlkRequest::Write { data, .. } => out.extend_from_slice(data),
        BlkRequest::Flush => {}
        BlkRequest::GetId { buf } => inp.push(buf),
        BlkRequest::Discard { ranges } => {
            if !write_table(slot, ranges, 0) {
                return false;
            }
            out.push(table_segment(addr, ranges.len()));
        }
        BlkRequest::WriteZeroes { ranges, unmap } => {
            let flags = if unmap {
                VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP
            } else {
                0
            };
            if !write_table(slot, ranges, flags) {
                return false;
            }
            out.push(table_segment(addr, ranges.len()));
        }
        BlkRequest::Raw { out: o, inp: i, .. } => {
            out.extend_from_slice(o);
            inp.extend_from_slice(i);
        }
    }
    inp.push(status);
    true
}

fn table_segment(addr: u64, ranges: usize) -> Segment {
    Segment::new(
        addr + TABLE_OFF as u64,
        (ranges * BLK_DISCARD_WRITE_ZEROES_SIZE) as u32,
    )
}

fn write_table(slot: MemSlice<'_>, ranges: &[DiscardRange], flags: u32) -> bool {
    for (i, r) in ranges.iter().enumerate() {
        let mut e = [0u8; BLK_DISCARD_WRITE_ZEROES_SIZE];
        {
            let mut v = BlkDiscardWriteZeroes::new_unchecked(&mut e[..]);
            v.set_sector(r.sector);
            v.set_num_sectors(r.sectors);
            v.set_flags(flags);
        }
        let off = TABLE_OFF + i * BLK_DISCARD_WRITE_ZEROES_SIZE;
        if slot.write_bytes(off, &e).is_err() {
            return false;
        }
    }
    true
}
