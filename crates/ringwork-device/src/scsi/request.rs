//! Request-queue framing (VIRTIO 1.4 §5.6.6.1): splits a chain into the
//! command header (`lun`, `id`, `task_attr`, `prio`, `crn`, `cdb` of
//! `cdb_size` bytes), data-out, the response (`sense_len`, `residual`,
//! `status_qualifier`, `status`, `response`, `sense` of `sense_size`
//! bytes) and data-in; runs the command; writes the response.
//!
//! `residual` is the data length (data-in plus data-out space) minus the
//! bytes transferred both ways. `task_attr`, `prio` and `crn` are
//! ignored (every command is SIMPLE, and completes before the next one
//! starts). Sense data is fixed format, truncated to `sense_size`.
//!
//! Trust and panic contract: every size comes from the driver (the chain,
//! and `cdb_size`/`sense_size` in the configuration space) and is checked
//! with wide arithmetic. A chain too short for the command header gets
//! `VIRTIO_SCSI_S_FAILURE`; one without room for the 12 fixed response
//! bytes is completed with used length 0. Segments outside guest memory
//! come back as [`ChainError`] (the caller breaks the queue). Nothing here
//! panics.

use ringwork_queue::device::{ChainError, ChainReader, ChainWriter, DescChain};
use ringwork_queue::mem::GuestMemory;
use ringwork_spec::scsi::{
    ScsiReqCmdHeader, ScsiRespCmdHeader, REQ_CMD_CDB_OFFSET, RESP_CMD_SENSE_OFFSET,
    SCSI_REQ_CMD_HEADER_SIZE, VIRTIO_SCSI_S_FAILURE,
};

use super::exec::{DataIo, Exec, Outcome};
use super::lun::{Lookup, LunTable};
use super::tasks::{Task, TaskGuard, Tasks};

/// Largest CDB the device looks at (longer `cdb_size`s are skipped over).
pub const MAX_CDB: usize = 32;

const ZEROES: [u8; 256] = [0; 256];

/// The data buffers of a chain, past the request and response headers.
struct ChainData<'c, M: GuestMemory + ?Sized> {
    r: ChainReader<'c, M>,
    w: ChainWriter<'c, M>,
    in_len: usize,
    out_len: usize,
    bytes_in: usize,
    bytes_out: usize,
}

impl<M: GuestMemory + ?Sized> DataIo for ChainData<'_, M> {
    fn in_len(&self) -> usize {
        self.in_len
    }
    fn out_len(&self) -> usize {
        self.out_len
    }
    fn write_in(&mut self, data: &[u8]) -> Result<usize, ChainError> {
        let n = self.w.write(data)?;
        self.bytes_in += n;
        Ok(n)
    }
    fn read_out(&mut self, buf: &mut [u8]) -> Result<usize, ChainError> {
        let n = self.r.read(buf)?;
        self.bytes_out += n;
        Ok(n)
    }
}

/// What a request needs besides its chain.
pub(crate) struct Env<'a> {
    /// The LUNs.
    pub luns: &'a LunTable,
    /// The task set.
    pub tasks: &'a Tasks,
    /// `cdb_size` now.
    pub cdb_size: u32,
    /// `sense_size` now.
    pub sense_size: u32,
    /// VIRTIO_SCSI_F_INOUT was negotiated.
    pub inout: bool,
}

/// Handles one request chain. Returns the used length and the task guard
/// to drop once the chain is completed.
pub(crate) fn handle<'e, M: GuestMemory + ?Sized>(
    chain: &DescChain,
    mem: &M,
    env: &Env<'e>,
    exec: &mut Exec,
) -> Result<(u32, Option<TaskGuard<'e>>), ChainError> {
    let readable = u64::from(chain.readable_len());
    let writable = u64::from(chain.writable_len());
    if writable < RESP_CMD_SENSE_OFFSET as u64 {
        tracing::warn!(writable, "SCSI request without room for a response");
        return Ok((0, None));
    }
    let req_len = REQ_CMD_CDB_OFFSET as u64 + u64::from(env.cdb_size);
    let resp_len = (RESP_CMD_SENSE_OFFSET as u64 + u64::from(env.sense_size)).min(writable);
    let in_len = (writable - resp_len) as usize;

    let mut r = chain.reader(mem);
    let mut w = chain.writer(mem);
    w.skip(resp_len as usize);

    let mut guard = None;
    let mut data = None;
    let outcome = if readable < req_len {
        tracing::warn!(readable, req_len, "SCSI request shorter than its header");
        Outcome::response(VIRTIO_SCSI_S_FAILURE)
    } else {
        let Some(hdr) = r.read_array::<SCSI_REQ_CMD_HEADER_SIZE>()? else {
            return Ok((0, None));
        };
        let mut cdb = [0u8; MAX_CDB];
        let cdb_len = (env.cdb_size as usize).min(MAX_CDB);
        r.read(&mut cdb[..cdb_len])?;
        r.skip((req_len as usize).saturating_sub(REQ_CMD_CDB_OFFSET + cdb_len));
        let out_len = (readable - req_len) as usize;
        let Ok(h) = ScsiReqCmdHeader::new_checked(&hdr[..]) else {
            return Ok((0, None));
        };
        if out_len > 0 && in_len > 0 && !env.inout {
            // §5.6.6.1: bidirectional without VIRTIO_SCSI_F_INOUT.
            Outcome::response(VIRTIO_SCSI_S_FAILURE)
        } else {
            let lookup = env.luns.resolve(&h.lun());
            if let Lookup::Present(l) = &lookup {
                guard = Some(env.tasks.begin(Task {
                    target: l.info.target,
                    lun: l.info.lun,
                    id: h.id(),
                }));
            }
            let mut io = ChainData {
                r,
                w,
                in_len,
                out_len,
                bytes_in: 0,
                bytes_out: 0,
            };
            let o = exec.run(&lookup, env.luns, &cdb[..cdb_len], &mut io)?;
            data = Some((
                io.in_len + io.out_len,
                io.bytes_in + io.bytes_out,
                io.bytes_in,
            ));
            o
        }
    };
    let (total, moved, bytes_in) = data.unwrap_or((in_len, 0, 0));
    let residual = u32::try_from(total.saturating_sub(moved)).unwrap_or(u32::MAX);

    let sense = outcome.sense.map(|s| s.to_fixed());
    let sense = sense.as_ref().map_or(&[][..], |s| &s[..]);
    let sense_room = (resp_len as usize - RESP_CMD_SENSE_OFFSET).min(sense.len());
    let mut head = [0u8; RESP_CMD_SENSE_OFFSET];
    if let Ok(mut h) = ScsiRespCmdHeader::new_checked(&mut head[..]) {
        h.set_sense_len(sense_room as u32);
        h.set_residual(residual);
        h.set_status_qualifier(0);
        h.set_status(outcome.status);
        h.set_response(outcome.response);
    }
    let mut w = chain.writer(mem);
    w.write(&head)?;
    w.write(&sense[..sense_room])?;
    // Zero the rest of the sense area, so the whole response is written.
    let mut pad = resp_len as usize - RESP_CMD_SENSE_OFFSET - sense_room;
    while pad > 0 {
        let n = pad.min(ZEROES.len());
        w.write(&ZEROES[..n])?;
        pad -= n;
    }
    let used = resp_len + bytes_in as u64;
    Ok((u32::try_from(used).unwrap_or(u32::MAX), guard))
}
