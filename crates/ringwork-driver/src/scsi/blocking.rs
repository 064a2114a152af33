//! Blocking commands on request queue 0: [`ScsiDriver::command`] with the
//! caller's DMA segments, and helpers for common commands (INQUIRY, TEST
//! UNIT READY, READ CAPACITY (16), READ (16), WRITE (16), REPORT LUNS).
//! Each submits one command in the driver's own slot and waits (bounded)
//! with [`Transport::wait_interrupt`]; completions of callers' commands
//! that arrive meanwhile are kept for `poll`. Helpers that return data
//! copy it through a bounce buffer in DMA memory (allocated on first
//! use).
//!
//! A timeout leaves the command possibly in flight (the device may still
//! write the slot or the buffers), so the driver then refuses further
//! blocking operations ([`ScsiError::Broken`]) until it is reset.
//!
//! Trust and panic contract: data returned by the device is bounded by
//! the allocation length asked for and by `residual` (clamped); parsers
//! check lengths before reading. Nothing here panics on device input.

use alloc::vec::Vec;

use ringwork_queue::{Dma, Segment};
use ringwork_transport::driver::Transport;

use super::error::{CommandError, ScsiCompletion, ScsiError};
use super::queue::Owner;
use super::request::{validate, ScsiCommand};
use super::ScsiDriver;
use crate::common::{kick, wait_for, DmaRegion};

/// Size of the bounce buffer the data-returning helpers use.
pub const BOUNCE_SIZE: usize = 64 * 1024;

/// What READ CAPACITY (16) reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacity {
    /// The last logical block address.
    pub last_lba: u64,
    /// Bytes per logical block.
    pub block_size: u32,
}

impl Capacity {
    /// Logical blocks (`last_lba + 1`, saturating).
    pub fn blocks(&self) -> u64 {
        self.last_lba.saturating_add(1)
    }
}

fn be32(b: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(..4)?.try_into().ok()?))
}

fn be64(b: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(..8)?.try_into().ok()?))
}

/// A READ (16) / WRITE (16) CDB.
fn rw16(op: u8, lba: u64, blocks: u32) -> [u8; 16] {
    let mut cdb = [0u8; 16];
    cdb[0] = op;
    cdb[2..10].copy_from_slice(&lba.to_be_bytes());
    cdb[10..14].copy_from_slice(&blocks.to_be_bytes());
    cdb
}

/// Parses REPORT LUNS parameter data: the single-level LUNs listed, in
/// peripheral (bus 0) or flat space addressing; other entries are
/// skipped.
fn parse_report_luns(data: &[u8]) -> Vec<u16> {
    let listed = be32(data).map_or(0, |n| n as usize);
    let end = listed.saturating_add(8).min(data.len());
    data.get(8..end)
        .unwrap_or(&[])
        .chunks_exact(8)
        .filter(|e| e[2..].iter().all(|&b| b == 0))
        .filter_map(|e| match e[0] >> 6 {
            0b00 if e[0] == 0 => Some(u16::from(e[1])),
            0b01 => Some((u16::from(e[0] & 0x3f) << 8) | u16::from(e[1])),
            _ => None,
        })
        .collect()
}

impl<T: Transport, D: Dma + Clone, Tok> ScsiDriver<T, D, Tok> {
    /// Runs `cmd` on request queue 0 and waits for it. The completion is
    /// returned whatever its `response` and `status`.
    pub fn command(&mut self, cmd: ScsiCommand<'_>) -> Result<ScsiCompletion, ScsiError> {
        if self.broken {
            return Err(ScsiError::Broken);
        }
        validate(&cmd, &self.config, &self.limits)?;
        let r = self.run_validated(&cmd);
        if matches!(r, Err(ScsiError::Timeout)) {
            self.broken = true;
        }
        r
    }

    fn run_validated(&mut self, cmd: &ScsiCommand<'_>) -> Result<ScsiCompletion, ScsiError> {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        let Self {
            transport,
            state,
            irq,
            counts,
            lun_limit,
            scratch_out,
            scratch_in,
            ..
        } = self;
        let Some(q) = state.queues.get_mut(0) else {
            return Err(CommandError::NoSuchQueue {
                queue: 0,
                queues: 0,
            }
            .into());
        };
        let queue_err = |source| ScsiError::Queue {
            queue: "requestq",
            source,
        };
        // When the ring is full of callers' commands, take completions
        // (kept for `poll`) until this one fits.
        loop {
            match q.enqueue(
                cmd,
                id,
                Owner::Internal,
                counts,
                *lun_limit,
                scratch_out,
                scratch_in,
            ) {
                Ok(()) => break,
                Err((CommandError::QueueFull { .. }, _)) if q.vq().outstanding() > 0 => {
                    kick(transport, q.vq()).map_err(queue_err)?;
                    wait_for(transport, irq, || -> Result<_, ScsiError> {
                        Ok(q.reap(counts)?.map(|_| ()))
                    })?;
                }
                Err((e, _)) => return Err(e.into()),
            }
        }
        kick(transport, q.vq()).map_err(queue_err)?;
        wait_for(transport, irq, || -> Result<_, ScsiError> {
            // Bounded: one used entry per outstanding command.
            loop {
                match q.reap(counts)? {
                    Some(Some(done)) => return Ok(Some(done)),
                    Some(None) => continue,
                    None => return Ok(None),
                }
            }
        })
    }

    /// Runs `cmd`, failing unless the response is OK and the status GOOD.
    fn run_good(&mut self, cmd: ScsiCommand<'_>) -> Result<ScsiCompletion, ScsiError> {
        let c = self.command(cmd)?;
        if !c.is_good() {
            return Err(ScsiError::Failed {
                response: c.response,
                status: c.status,
                sense: c.sense,
            });
        }
        Ok(c)
    }

    /// Runs a data-in command with `len` bytes of the bounce buffer and
    /// returns the bytes transferred (`len - residual`).
    fn data_in(
        &mut self,
        target: u8,
        lun: u16,
        cdb: &[u8],
        len: usize,
    ) -> Result<Vec<u8>, ScsiError> {
        if self.broken {
            return Err(ScsiError::Broken);
        }
        if self.state.bounce.is_none() {
            self.state.bounce = Some(DmaRegion::new(self.dma.clone(), BOUNCE_SIZE, 4096)?);
        }
        let len = len.min(BOUNCE_SIZE);
        let addr = self.state.bounce.as_ref().map_or(0, |b| b.addr(0));
        if let Some(b) = &self.state.bounce {
            let _ = b.slice().fill(0, len, 0);
        }
        let seg = [Segment::new(addr, len as u32)];
        let c = self.run_good(ScsiCommand::new(target, lun, cdb).data_in(&seg))?;
        let got = len - (c.residual as usize).min(len);
        let mut out = alloc::vec![0u8; got];
        if let Some(b) = &self.state.bounce {
            b.slice()
                .read_bytes(0, &mut out)
                .map_err(|_| ScsiError::TooLarge {
                    len,
                    max: BOUNCE_SIZE,
                })?;
        }
        Ok(out)
    }

    /// INQUIRY (standard data, up to 255 bytes): the bytes returned.
    pub fn inquiry(&mut self, target: u8, lun: u16) -> Result<Vec<u8>, ScsiError> {
        let cdb = [0x12, 0, 0, 0, 0xff, 0];
        self.data_in(target, lun, &cdb, 255)
    }

    /// TEST UNIT READY. The completion is returned as the device gave it
    /// (CHECK CONDITION with sense data is an answer, not an error).
    pub fn test_unit_ready(&mut self, target: u8, lun: u16) -> Result<ScsiCompletion, ScsiError> {
        self.command(ScsiCommand::new(target, lun, &[0; 6]))
    }

    /// READ CAPACITY (16).
    pub fn read_capacity16(&mut self, target: u8, lun: u16) -> Result<Capacity, ScsiError> {
        let mut cdb = [0u8; 16];
        cdb[0] = 0x9e;
        cdb[1] = 0x10;
        cdb[10..14].copy_from_slice(&32u32.to_be_bytes());
        let d = self.data_in(target, lun, &cdb, 32)?;
        match (be64(&d), d.get(8..).and_then(be32)) {
            (Some(last_lba), Some(block_size)) => Ok(Capacity {
                last_lba,
                block_size,
            }),
            _ => Err(ScsiError::ShortData {
                need: 12,
                got: d.len(),
            }),
        }
    }

    /// READ (16) of `blocks` logical blocks from `lba` into the caller's
    /// device-writable `data` segments. Fails unless OK / GOOD.
    pub fn read16(
        &mut self,
        target: u8,
        lun: u16,
        lba: u64,
        blocks: u32,
        data: &[Segment],
    ) -> Result<ScsiCompletion, ScsiError> {
        let cdb = rw16(0x88, lba, blocks);
        self.run_good(ScsiCommand::new(target, lun, &cdb).data_in(data))
    }

    /// WRITE (16) of `blocks` logical blocks at `lba` from the caller's
    /// device-readable `data` segments. Fails unless OK / GOOD.
    pub fn write16(
        &mut self,
        target: u8,
        lun: u16,
        lba: u64,
        blocks: u32,
        data: &[Segment],
    ) -> Result<ScsiCompletion, ScsiError> {
        let cdb = rw16(0x8a, lba, blocks);
        self.run_good(ScsiCommand::new(target, lun, &cdb).data_out(data))
    }

    /// REPORT LUNS to `target` (addressed at its LUN 0): the single-level
    /// LUNs it lists.
    pub fn report_luns(&mut self, target: u8) -> Result<Vec<u16>, ScsiError> {
        const LEN: u32 = 4096;
        let mut cdb = [0u8; 12];
        cdb[0] = 0xa0;
        cdb[6..10].copy_from_slice(&LEN.to_be_bytes());
        let d = self.data_in(target, 0, &cdb, LEN as usize)?;
        Ok(parse_report_luns(&d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_luns_parsing_is_bounded() {
        let mut d = alloc::vec![0u8; 8];
        d[3] = 24; // three entries listed, two present
        d.extend_from_slice(&[0, 5, 0, 0, 0, 0, 0, 0]);
        d.extend_from_slice(&[0x41, 0x2c, 0, 0, 0, 0, 0, 0]);
        assert_eq!(parse_report_luns(&d), [5, 300]);
        assert!(parse_report_luns(&[0xff; 3]).is_empty());
        let mut d = alloc::vec![0u8, 0, 0, 8, 0, 0, 0, 0];
        d.extend_from_slice(&[0xc1, 1, 0, 0, 0, 0, 0, 0]); // well-known LU
        assert!(parse_report_luns(&d).is_empty());
    }
}
