//! Block requests (VIRTIO 1.4 §5.2.6): from a descriptor chain to a
//! [`Job`] and, when it is done, to a status byte and a used length.
//!
//! A request is a device-readable header ([`BlkReqHeader`], 16 bytes), data
//! (device-readable for writes, discard and write zeroes; device-writable
//! for reads and GET_ID) and a device-writable status byte, the last byte of
//! the chain. Nothing is assumed about how these are split into descriptors
//! (§2.7.4 "Message Framing").
//!
//! Used length: the whole device-writable part (data, then status). The
//! device writes every byte of it (§2.7.8.2: "MUST write at least len
//! bytes"): data for successful reads and GET_ID, zeroes wherever it has
//! nothing to return (failed reads, unexpected writable space), and the
//! status last. For well-formed requests that is "data + 1" for reads and
//! GET_ID and 1 for everything else. A chain with no device-writable byte
//! cannot carry a status: it is completed with used length 0.
//!
//! Trust and panic contract: the chain's layout was validated when it was
//! popped (every segment inside guest memory), but its contents are the
//! driver's: every field is checked and nothing here panics. Bad requests
//! are answered with `VIRTIO_BLK_S_IOERR` or `VIRTIO_BLK_S_UNSUPP`; only a
//! segment that stopped translating (a [`ChainError`]) breaks the queue.

use ringwork_queue::device::{ChainError, DescChain, UsedToken};
use ringwork_queue::mem::{GuestMemory, MemSlice};
use ringwork_queue::Segment;
use ringwork_spec::blk::{
    BlkDiscardWriteZeroes, BlkReqHeader, BlkReqType, BLK_DISCARD_WRITE_ZEROES_SIZE,
    BLK_REQ_HEADER_SIZE, VIRTIO_BLK_ID_BYTES, VIRTIO_BLK_SECTOR_SIZE, VIRTIO_BLK_S_IOERR,
    VIRTIO_BLK_S_OK, VIRTIO_BLK_S_UNSUPP, VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP,
};

use super::job::{Caps, Job, Range};
use super::sys::IoVecs;
use crate::model::Memory;

const SECTOR: u64 = VIRTIO_BLK_SECTOR_SIZE as u64;

/// Everything request validation depends on (fixed per worker).
#[derive(Debug, Clone)]
pub(crate) struct Rules {
    /// Size of the disk in bytes (a multiple of 512).
    pub(crate) capacity_bytes: u64,
    /// VIRTIO_BLK_F_RO offered.
    pub(crate) readonly: bool,
    /// VIRTIO_BLK_F_DISCARD negotiated.
    pub(crate) discard: bool,
    /// VIRTIO_BLK_F_WRITE_ZEROES negotiated.
    pub(crate) write_zeroes: bool,
    /// Writes must be stable on completion (FLUSH offered, not negotiated).
    pub(crate) write_through: bool,
    /// `max_discard_sectors`.
    pub(crate) max_discard_sectors: u32,
    /// `max_discard_seg`.
    pub(crate) max_discard_seg: u32,
    /// `max_write_zeroes_sectors`.
    pub(crate) max_write_zeroes_sectors: u32,
    /// `max_write_zeroes_seg`.
    pub(crate) max_write_zeroes_seg: u32,
    /// The GET_ID string, NUL-padded.
    pub(crate) id: [u8; VIRTIO_BLK_ID_BYTES],
}

/// A parsed request: where its status goes, and its I/O.
#[derive(Debug)]
pub(crate) struct Request<'m> {
    token: UsedToken,
    status: Option<MemSlice<'m>>,
    used_len: u32,
    /// The I/O still to do.
    pub(crate) job: Job<'m>,
}

impl Request<'_> {
    /// Writes the status byte (and zeroes over unread data) and returns
    /// what to complete the chain with.
    pub(crate) fn finish(&self) -> (UsedToken, u32) {
        let Some(slot) = self.status else {
            return (self.token, 0);
        };
        let status = self.job.status().unwrap_or(VIRTIO_BLK_S_IOERR);
        if status != VIRTIO_BLK_S_OK {
            self.job.fill_unread();
        }
        // Cannot fail: the window is exactly one byte.
        let _ = slot.write_u8(0, status);
        (self.token, self.used_len)
    }
}

/// Calls `f` on consecutive windows covering `len` bytes of `segs` after
/// the first `skip` bytes (or fewer, if the segments are shorter).
fn for_each_slice<'m>(
    mem: &'m Memory,
    segs: &[Segment],
    mut skip: u64,
    mut len: u64,
    mut f: impl FnMut(MemSlice<'m>),
) -> Result<(), ChainError> {
    for s in segs {
        if len == 0 {
            break;
        }
        let seg_len = u64::from(s.len);
        if skip >= seg_len {
            skip -= seg_len;
            continue;
        }
        let take = (seg_len - skip).min(len);
        let addr = s.addr.wrapping_add(skip);
        let window = mem
            .slice(addr, take as usize)
            .ok_or(ChainError::OutOfMemory {
                addr,
                len: take as u32,
            })?;
        f(window);
        skip = 0;
        len -= take;
    }
    Ok(())
}

/// Writes `prefix` then zeroes over the first `len` writable bytes.
fn write_writable(
    mem: &Memory,
    segs: &[Segment],
    len: u64,
    mut prefix: &[u8],
) -> Result<(), ChainError> {
    for_each_slice(mem, segs, 0, len, |w| {
        let n = prefix.len().min(w.len());
        // Cannot fail: both ranges are inside the window.
        let _ = w.write_bytes(0, &prefix[..n]);
        let _ = w.fill(n, w.len() - n, 0);
        prefix = &prefix[n..];
    })
}

/// The last device-writable byte (the status), if there is one.
fn status_byte<'m>(chain: &DescChain, mem: &'m Memory) -> Result<Option<MemSlice<'m>>, ChainError> {
    let Some(seg) = chain.writable_segments().iter().rev().find(|s| s.len > 0) else {
        return Ok(None);
    };
    let addr = seg.addr.wrapping_add(u64::from(seg.len) - 1);
    mem.slice(addr, 1)
        .map(Some)
        .ok_or(ChainError::OutOfMemory { addr, len: 1 })
}

/// The byte offset of `bytes` bytes at `sector`, if they are inside the
/// disk (VIRTIO 1.4 §5.2.6.1: the driver MUST NOT read or write beyond
/// `capacity`; the device answers IOERR).
fn span(sector: u64, bytes: u64, capacity_bytes: u64) -> Option<u64> {
    let offset = sector.checked_mul(SECTOR)?;
    let end = offset.checked_add(bytes)?;
    (end <= capacity_bytes).then_some(offset)
}

/// Parses one chain. Errors are chain errors only (a segment that does not
/// translate); everything else becomes a status.
pub(crate) fn parse<'m>(
    chain: &DescChain,
    mem: &'m Memory,
    rules: &Rules,
    caps: &'m Caps,
) -> Result<Request<'m>, ChainError> {
    let token = chain.token();
    let Some(status) = status_byte(chain, mem)? else {
        tracing::debug!(
            id = chain.id(),
            "block request without a device-writable status byte; completing it with length 0"
        );
        return Ok(Request {
            token,
            status: None,
            used_len: 0,
            job: Job::done(VIRTIO_BLK_S_IOERR),
        });
    };
    let wlen = chain.writable_len();
    let data_w = u64::from(wlen - 1);
    let wsegs = chain.writable_segments();
    let mut req = Request {
        token,
        status: Some(status),
        used_len: wlen,
        job: Job::done(VIRTIO_BLK_S_IOERR),
    };

    let mut reader = chain.reader(mem);
    let header = reader.read_array::<BLK_REQ_HEADER_SIZE>()?;
    let Some(hdr) = header
        .as_ref()
        .and_then(|h| BlkReqHeader::new_checked(&h[..]).ok())
    else {
        tracing::debug!(
            id = chain.id(),
            "block request header shorter than 16 bytes"
        );
        write_writable(mem, wsegs, data_w, &[])?;
        return Ok(req);
    };
    let (ty, sector) = (BlkReqType::from(hdr.type_()), hdr.sector());
    let data_r = u64::from(chain.readable_len()) - BLK_REQ_HEADER_SIZE as u64;

    req.job = match ty {
        BlkReqType::In => {
            if data_w % SECTOR != 0 {
                Job::done(VIRTIO_BLK_S_IOERR)
            } else if let Some(offset) = span(sector, data_w, rules.capacity_bytes) {
                if data_w == 0 {
                    Job::done(VIRTIO_BLK_S_OK)
                } else {
                    let mut iov = IoVecs::new();
                    for_each_slice(mem, wsegs, 0, data_w, |w| iov.push(w))?;
                    Job::read(iov, offset)
                }
            } else {
                Job::done(VIRTIO_BLK_S_IOERR)
            }
        }
        BlkReqType::Out => {
            // §5.2.6.2: with VIRTIO_BLK_F_RO offered, IOERR and write nothing.
            if rules.readonly || data_r % SECTOR != 0 {
                Job::done(VIRTIO_BLK_S_IOERR)
            } else if let Some(offset) = span(sector, data_r, rules.capacity_bytes) {
                if data_r == 0 {
                    Job::done(VIRTIO_BLK_S_OK)
                } else {
                    let mut iov = IoVecs::new();
                    let rsegs = chain.readable_segments();
                    for_each_slice(mem, rsegs, BLK_REQ_HEADER_SIZE as u64, data_r, |r| {
                        iov.push(r)
                    })?;
                    Job::write(iov, offset, rules.write_through)
                }
            } else {
                Job::done(VIRTIO_BLK_S_IOERR)
            }
        }
        // FLUSH_OUT is the legacy synonym drivers must treat as FLUSH
        // (§5.2.6.3); serving it costs nothing.
        BlkReqType::Flush | BlkReqType::FlushOut => Job::flush(),
        BlkReqType::GetId => {
            // §5.2.6: up to 20 bytes, NUL-padded; the driver gives exactly
            // 20 (§5.2.6.1), we fill whatever it gave.
            write_writable(mem, wsegs, data_w, &rules.id)?;
            return Ok(Request {
                job: Job::done(VIRTIO_BLK_S_OK),
                ..req
            });
        }
        BlkReqType::Discard | BlkReqType::WriteZeroes => {
            let discard = ty == BlkReqType::Discard;
            let negotiated = if discard {
                rules.discard
            } else {
                rules.write_zeroes
            };
            if rules.readonly {
                Job::done(VIRTIO_BLK_S_IOERR)
            } else if !negotiated {
                Job::done(VIRTIO_BLK_S_UNSUPP)
            } else {
                ranges(&mut reader, data_r, discard, rules, caps)?
            }
        }
        // Lifetime, secure erase, zoned requests without ZONED negotiated
        // (§5.2.6.2 "MUST reject ... with VIRTIO_BLK_S_UNSUPP"), legacy
        // SCSI commands, unknown types.
        _ => Job::done(VIRTIO_BLK_S_UNSUPP),
    };
    if !req.job.is_read() {
        write_writable(mem, wsegs, data_w, &[])?;
    }
    Ok(req)
}

/// Parses the segments of a discard or write-zeroes request (VIRTIO 1.4
/// §5.2.6, device requirements §5.2.6.2).
fn ranges<'m, M: GuestMemory + ?Sized>(
    reader: &mut ringwork_queue::device::ChainReader<'_, M>,
    data_r: u64,
    discard: bool,
    rules: &Rules,
    caps: &'m Caps,
) -> Result<Job<'m>, ChainError> {
    let seg_size = BLK_DISCARD_WRITE_ZEROES_SIZE as u64;
    let (max_seg, max_sectors) = if discard {
        (rules.max_discard_seg, rules.max_discard_sectors)
    } else {
        (rules.max_write_zeroes_seg, rules.max_write_zeroes_sectors)
    };
    // §5.2.6.1: data is one or more whole segments, at most max_*_seg.
    let count = data_r / seg_size;
    if data_r % seg_size != 0 || count == 0 || count > u64::from(max_seg) {
        return Ok(Job::done(VIRTIO_BLK_S_IOERR));
    }
    let mut list = Vec::with_capacity(count as usize);
    let (mut unsupported, mut invalid) = (false, false);
    for _ in 0..count {
        let Some(bytes) = reader.read_array::<BLK_DISCARD_WRITE_ZEROES_SIZE>()? else {
            invalid = true;
            break;
        };
        let Ok(seg) = BlkDiscardWriteZeroes::new_checked(&bytes[..]) else {
            invalid = true;
            break;
        };
        let flags = seg.flags();
        // §5.2.6.2: UNSUPP for any unknown flag, and for discard with unmap.
        if flags & !VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP != 0 || (discard && seg.unmap()) {
            unsupported = true;
        }
        let len = u64::from(seg.num_sectors()) * SECTOR;
        match span(seg.sector(), len, rules.capacity_bytes) {
            Some(offset) if seg.num_sectors() <= max_sectors => list.push(Range {
                offset,
                len,
                unmap: seg.unmap(),
            }),
            _ => invalid = true,
        }
    }
    Ok(if unsupported {
        Job::done(VIRTIO_BLK_S_UNSUPP)
    } else if invalid {
        Job::done(VIRTIO_BLK_S_IOERR)
    } else {
        Job::ranges(discard, list, caps, rules.write_through && !discard)
    })
}
