//! SCSI commands for the checks: a driver session with its own data
//! buffers ([`Scsi`]), sense data parsing, and the per-LUN checks —
//! INQUIRY (standard data and the VPD pages the LUN lists), TEST UNIT
//! READY, READ CAPACITY (10) and (16), and a READ/WRITE round trip that
//! restores what it overwrote (VIRTIO 1.4 §5.6.6.1; the command set is
//! SPC/SBC's).
//!
//! Trust and panic contract: data the device returns is bounded by the
//! buffers given and checked for length before it is parsed; nothing here
//! panics on device input.

use std::sync::Arc;

use anyhow::Context as _;
use ringwork_driver::scsi::{
    ScsiCommand, ScsiCompletion, ScsiDriver, ScsiError, ScsiResponse, SAM_STAT_CHECK_CONDITION,
};
use ringwork_queue::{Dma, DmaBuffer, Segment};
use ringwork_transport::driver::Transport;
use ringwork_vhost_user::SharedMemory;

use super::common::{compare, pattern};
use super::report::Outcome;

/// The SCSI driver the checks use (tokens are command numbers).
pub(crate) type Drv<T> = ScsiDriver<T, Arc<SharedMemory>, usize>;

/// Bytes of data buffers per session: the first half data-out, the second
/// data-in.
const SCRATCH: usize = 1 << 20;
const HALF: usize = SCRATCH / 2;

/// Sense key ILLEGAL REQUEST.
pub(crate) const ILLEGAL_REQUEST: u8 = 0x5;
/// Sense key UNIT ATTENTION.
pub(crate) const UNIT_ATTENTION: u8 = 0x6;
/// Sense key DATA PROTECT.
pub(crate) const DATA_PROTECT: u8 = 0x7;

/// A logical unit: target and LUN.
pub(crate) type Lu = (u8, u16);

/// The sense key, ASC and ASCQ of fixed (70h/71h) or descriptor
/// (72h/73h) format sense data.
pub(crate) fn sense_key(s: &[u8]) -> Option<(u8, u8, u8)> {
    match s.first()? & 0x7f {
        0x70 | 0x71 => Some((
            s.get(2)? & 0xf,
            s.get(12).copied().unwrap_or(0),
            s.get(13).copied().unwrap_or(0),
        )),
        0x72 | 0x73 => Some((
            s.get(1)? & 0xf,
            s.get(2).copied().unwrap_or(0),
            s.get(3).copied().unwrap_or(0),
        )),
        _ => None,
    }
}

/// A completion in words.
pub(crate) fn describe<Tok>(c: &ScsiCompletion<Tok>) -> String {
    let mut s = format!("response {}, status {:#04x}", c.response, c.status);
    if let Some((k, asc, ascq)) = sense_key(&c.sense) {
        s.push_str(&format!(
            ", sense key {k:#x} ASC/ASCQ {asc:#04x}/{ascq:#04x}"
        ));
    }
    s
}

/// Whether `c` is CHECK CONDITION with sense key `key`.
pub(crate) fn is_check<Tok>(c: &ScsiCompletion<Tok>, key: u8) -> bool {
    c.response == ScsiResponse::Ok
        && c.status == SAM_STAT_CHECK_CONDITION
        && sense_key(&c.sense).map(|s| s.0) == Some(key)
}

fn be16(b: &[u8], at: usize) -> usize {
    b.get(at..at + 2)
        .map_or(0, |x| usize::from(u16::from_be_bytes([x[0], x[1]])))
}

/// A driver session with data buffers.
pub(crate) struct Scsi<T: Transport> {
    /// The driver.
    pub d: Drv<T>,
    buf: DmaBuffer,
}

impl<T: Transport> Scsi<T> {
    /// Wraps an initialized driver.
    pub fn new(d: Drv<T>) -> anyhow::Result<Self> {
        let buf = d
            .dma()
            .alloc(SCRATCH, 4096)
            .context("allocating data buffers in shared memory")?;
        Ok(Self { d, buf })
    }

    /// The segment of `len` bytes at `off` in the data buffers.
    pub fn seg(&self, off: usize, len: usize) -> Segment {
        Segment::new(self.buf.device_addr() + off as u64, len as u32)
    }

    fn put(&self, off: usize, data: &[u8]) -> anyhow::Result<()> {
        self.buf
            .slice()
            .write_bytes(off, data)
            .map_err(|_| anyhow::anyhow!("data buffer overflow"))
    }

    fn get(&self, off: usize, len: usize) -> anyhow::Result<Vec<u8>> {
        let mut v = vec![0u8; len];
        self.buf
            .slice()
            .read_bytes(off, &mut v)
            .map_err(|_| anyhow::anyhow!("data buffer overflow"))?;
        Ok(v)
    }

    /// A command without data.
    pub fn cmd(&mut self, lu: Lu, cdb: &[u8]) -> anyhow::Result<ScsiCompletion> {
        Ok(self.d.command(ScsiCommand::new(lu.0, lu.1, cdb))?)
    }

    /// A data-in command of `len` bytes (at most half the buffers): the
    /// completion and the bytes transferred (`len - residual`).
    pub fn cmd_in(
        &mut self,
        lu: Lu,
        cdb: &[u8],
        len: usize,
    ) -> anyhow::Result<(ScsiCompletion, Vec<u8>)> {
        let len = len.min(HALF);
        self.buf
            .slice()
            .fill(HALF, len, 0)
            .map_err(|_| anyhow::anyhow!("data buffer overflow"))?;
        let seg = [self.seg(HALF, len)];
        let c = self
            .d
            .command(ScsiCommand::new(lu.0, lu.1, cdb).data_in(&seg))?;
        let got = len - (c.residual as usize).min(len);
        let data = self.get(HALF, got)?;
        Ok((c, data))
    }

    /// TEST UNIT READY until GOOD: a UNIT ATTENTION (after a reset or a
    /// LUN change) is consumed and the command repeated, up to 4 times.
    pub fn ready(&mut self, lu: Lu) -> anyhow::Result<Outcome> {
        let mut last = String::new();
        for _ in 0..4 {
            let c = self.cmd(lu, &[0; 6])?;
            if c.is_good() {
                return Ok(Outcome::Pass);
            }
            last = describe(&c);
            if !is_check(&c, UNIT_ATTENTION) {
                break;
            }
        }
        Ok(Outcome::Fail(format!(
            "TEST UNIT READY on {}:{}: {last}",
            lu.0, lu.1
        )))
    }

    /// Standard INQUIRY data: at least 36 bytes, peripheral qualifier 0,
    /// response data format 2, printable vendor, product and revision.
    /// Returns the outcome and the peripheral device type.
    pub fn inquiry(&mut self, lu: Lu) -> anyhow::Result<(Outcome, u8)> {
        let (c, d) = self.cmd_in(lu, &[0x12, 0, 0, 0, 0xff, 0], 255)?;
        let name = format!("{}:{}", lu.0, lu.1);
        if !c.is_good() {
            return Ok((
                Outcome::Fail(format!("INQUIRY on {name}: {}", describe(&c))),
                0,
            ));
        }
        if d.len() < 36 {
            return Ok((
                Outcome::Fail(format!(
                    "INQUIRY on {name}: {} bytes, at least 36 expected",
                    d.len()
                )),
                0,
            ));
        }
        let o = if d[0] >> 5 != 0 {
            Outcome::Fail(format!(
                "INQUIRY on {name}: peripheral qualifier {} for a LUN listed by REPORT LUNS",
                d[0] >> 5
            ))
        } else if d[3] & 0xf != 2 {
            Outcome::Fail(format!(
                "INQUIRY on {name}: response data format {}, expected 2",
                d[3] & 0xf
            ))
        } else if usize::from(d[4]) + 5 < 36 {
            Outcome::Fail(format!(
                "INQUIRY on {name}: additional length {} (under 31)",
                d[4]
            ))
        } else if let Some(i) = d[8..36].iter().position(|&b| !(0x20..=0x7e).contains(&b)) {
            Outcome::Fail(format!(
                "INQUIRY on {name}: byte {} of vendor/product/revision is {:#04x}, not printable ASCII",
                8 + i,
                d[8 + i]
            ))
        } else {
            Outcome::Pass
        };
        Ok((o, d[0] & 0x1f))
    }

    /// VPD page 00h and every page it lists: each returned with its own
    /// page code, the LUN's device type and a length that fits.
    pub fn vpd(&mut self, lu: Lu, device_type: u8) -> anyhow::Result<Outcome> {
        let name = format!("{}:{}", lu.0, lu.1);
        let page = |s: &mut Self, code: u8| s.cmd_in(lu, &[0x12, 1, code, 0x10, 0, 0], 4096);
        let (c, list) = page(self, 0)?;
        if !c.is_good() {
            return Ok(Outcome::Fail(format!(
                "INQUIRY VPD page 00h on {name}: {}",
                describe(&c)
            )));
        }
        if list.len() < 4 {
            return Ok(Outcome::Fail(format!(
                "VPD page 00h on {name}: {} bytes",
                list.len()
            )));
        }
        let n = be16(&list, 2).min(list.len() - 4);
        let pages: Vec<u8> = list[4..4 + n].to_vec();
        if !pages.contains(&0) {
            return Ok(Outcome::Fail(format!(
                "VPD page 00h on {name} does not list itself: {pages:02x?}"
            )));
        }
        for &p in &pages {
            let (c, d) = page(self, p)?;
            let what = format!("VPD page {p:02x}h on {name}");
            if !c.is_good() {
                return Ok(Outcome::Fail(format!("{what}: {}", describe(&c))));
            }
            if d.len() < 4 {
                return Ok(Outcome::Fail(format!("{what}: {} bytes", d.len())));
            }
            if d[1] != p {
                return Ok(Outcome::Fail(format!("{what}: page code {:#04x}", d[1])));
            }
            if d[0] & 0x1f != device_type {
                return Ok(Outcome::Fail(format!(
                    "{what}: device type {:#04x}, standard INQUIRY says {device_type:#04x}",
                    d[0] & 0x1f
                )));
            }
            if be16(&d, 2) + 4 < d.len() {
                return Ok(Outcome::Fail(format!(
                    "{what}: {} bytes transferred, the page length says {}",
                    d.len(),
                    be16(&d, 2) + 4
                )));
            }
        }
        Ok(Outcome::Pass)
    }

    /// READ CAPACITY (10) and (16): they agree, the block size is a power
    /// of two of at least 512. Returns the outcome and (blocks, size).
    pub fn capacity(&mut self, lu: Lu) -> anyhow::Result<(Outcome, Option<(u64, u32)>)> {
        let name = format!("{}:{}", lu.0, lu.1);
        let (c10, d10) = self.cmd_in(lu, &[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], 8)?;
        let mut cdb16 = [0u8; 16];
        cdb16[0] = 0x9e;
        cdb16[1] = 0x10;
        cdb16[13] = 32;
        let (c16, d16) = self.cmd_in(lu, &cdb16, 32)?;
        if !c10.is_good() || !c16.is_good() {
            return Ok((
                Outcome::Fail(format!(
                    "READ CAPACITY on {name}: (10) {}, (16) {}",
                    describe(&c10),
                    describe(&c16)
                )),
                None,
            ));
        }
        if d10.len() < 8 || d16.len() < 12 {
            return Ok((
                Outcome::Fail(format!(
                    "READ CAPACITY on {name}: {} and {} bytes returned",
                    d10.len(),
                    d16.len()
                )),
                None,
            ));
        }
        let last10 = u32::from_be_bytes([d10[0], d10[1], d10[2], d10[3]]);
        let bs10 = u32::from_be_bytes([d10[4], d10[5], d10[6], d10[7]]);
        let mut l = [0u8; 8];
        l.copy_from_slice(&d16[..8]);
        let last16 = u64::from_be_bytes(l);
        let bs16 = u32::from_be_bytes([d16[8], d16[9], d16[10], d16[11]]);
        let want10 = u32::try_from(last16).unwrap_or(u32::MAX);
        let o = if !bs16.is_power_of_two() || bs16 < 512 {
            Outcome::Fail(format!("{name}: block size {bs16}"))
        } else if bs10 != bs16 || last10 != want10 {
            Outcome::Fail(format!(
                "{name}: READ CAPACITY (10) says last LBA {last10}, {bs10}-byte blocks; (16) says \
                 {last16}, {bs16}-byte blocks"
            ))
        } else {
            Outcome::Pass
        };
        Ok((o, Some((last16.saturating_add(1), bs16))))
    }

    /// READ (16) of `blocks` at `lba` into the data-in half.
    pub fn read(&mut self, lu: Lu, lba: u64, blocks: u32, bs: u32) -> anyhow::Result<Vec<u8>> {
        let len = blocks as usize * bs as usize;
        let seg = [self.seg(HALF, len)];
        self.d
            .read16(lu.0, lu.1, lba, blocks, &seg)
            .with_context(|| format!("READ (16) of LBA {lba} on {}:{}", lu.0, lu.1))?;
        self.get(HALF, len)
    }

    /// WRITE (16) of `data` at `lba`.
    pub fn write(&mut self, lu: Lu, lba: u64, bs: u32, data: &[u8]) -> Result<(), ScsiError> {
        let blocks = (data.len() / bs as usize) as u32;
        if self.put(0, data).is_err() {
            return Err(ScsiError::TooLarge {
                len: data.len(),
                max: HALF,
            });
        }
        let seg = [self.seg(0, data.len())];
        self.d.write16(lu.0, lu.1, lba, blocks, &seg).map(|_| ())
    }

    /// Writes a pattern over `blocks` at `lba`, reads it back, and writes
    /// the original data back (verified). A write refused with DATA
    /// PROTECT passes if the data did not change.
    pub fn round_trip(
        &mut self,
        lu: Lu,
        lba: u64,
        blocks: u32,
        bs: u32,
        seed: u64,
        warnings: &mut Vec<String>,
    ) -> anyhow::Result<Outcome> {
        let name = format!("{}:{}", lu.0, lu.1);
        let len = blocks as usize * bs as usize;
        if len > HALF {
            anyhow::bail!("{blocks} blocks of {bs} bytes exceed the data buffers");
        }
        let saved = self.read(lu, lba, blocks, bs)?;
        let data = pattern(seed ^ lba.rotate_left(17) ^ u64::from(lu.1), len);
        match self.write(lu, lba, bs, &data) {
            Ok(()) => {}
            Err(ScsiError::Failed { sense, .. })
                if sense_key(&sense).map(|s| s.0) == Some(DATA_PROTECT) =>
            {
                let after = self.read(lu, lba, blocks, bs)?;
                return Ok(compare("data after a refused write", &after, &saved));
            }
            Err(e) => {
                // It may have written part: put the original back.
                let _ = self.write(lu, lba, bs, &saved);
                return Err(
                    anyhow::Error::new(e).context(format!("WRITE (16) of LBA {lba} on {name}"))
                );
            }
        }
        let back = self.read(lu, lba, blocks, bs);
        let restored = self
            .write(lu, lba, bs, &saved)
            .map_err(anyhow::Error::new)
            .and_then(|()| self.read(lu, lba, blocks, bs))
            .map(|r| r == saved);
        if !matches!(restored, Ok(true)) {
            warnings.push(format!(
                "WARNING: {name} LBAs {lba}..{} could not be restored ({})",
                lba + u64::from(blocks),
                match &restored {
                    Ok(_) => "they read back differently".to_owned(),
                    Err(e) => format!("{e:#}"),
                }
            ));
        }
        let o = compare(&format!("{name} LBA {lba} read back"), &back?, &data);
        Ok(match (o, restored) {
            (Outcome::Pass, Ok(false)) => {
                Outcome::Fail("the original data read back differently after restoring it".into())
            }
            (Outcome::Pass, Err(e)) => Outcome::Fail(format!("restoring the data: {e:#}")),
            (o, _) => o,
        })
    }

    /// `n` one-block READ (16)s of consecutive LBAs from `lba` in flight at
    /// once on request queue `q`, notified once: each completes GOOD, each
    /// exactly once, with the data a single READ returns.
    pub fn concurrent_reads(
        &mut self,
        lu: Lu,
        q: u16,
        n: usize,
        lba: u64,
        bs: u32,
    ) -> anyhow::Result<Outcome> {
        let bsz = bs as usize;
        let n = n.min(HALF / bsz.max(1)).max(1);
        let want = self.read(lu, lba, n as u32, bs)?;
        self.buf
            .slice()
            .fill(HALF, n * bsz, 0)
            .map_err(|_| anyhow::anyhow!("data buffer overflow"))?;
        let cdbs: Vec<[u8; 16]> = (0..n)
            .map(|i| {
                let mut c = [0u8; 16];
                c[0] = 0x88;
                c[2..10].copy_from_slice(&(lba + i as u64).to_be_bytes());
                c[13] = 1;
                c
            })
            .collect();
        let segs: Vec<[Segment; 1]> = (0..n).map(|i| [self.seg(HALF + i * bsz, bsz)]).collect();
        for i in 0..n {
            let cmd = ScsiCommand::new(lu.0, lu.1, &cdbs[i]).data_in(&segs[i]);
            self.d.submit(q, cmd, i).map_err(|e| {
                anyhow::anyhow!("submitting READ {i} of {n} on queue {q}: {}", e.error)
            })?;
        }
        self.d.kick(q)?;
        let mut seen = vec![false; n];
        let mut done = 0;
        for _ in 0..super::common::MAX_WAKEUPS {
            while let Some(c) = self.d.poll(q)? {
                match seen.get_mut(c.token) {
                    Some(s) if !*s => *s = true,
                    _ => return Ok(Outcome::Fail(format!("READ {} completed twice", c.token))),
                }
                if !c.is_good() {
                    return Ok(Outcome::Fail(format!(
                        "READ {} of {n} in flight: {}",
                        c.token,
                        describe(&c)
                    )));
                }
                done += 1;
            }
            if done == n {
                let got = self.get(HALF, n * bsz)?;
                return Ok(compare(
                    &format!("{n} READs in flight on queue {q} against one READ"),
                    &got,
                    &want,
                ));
            }
            super::common::wait_device(self.d.transport())?;
            self.d.transport().ack_interrupt();
        }
        anyhow::bail!("the device kept notifying without completing the commands")
    }

    /// Gives the data buffers back and resets the device.
    pub fn finish(self) -> ringwork_driver::Detached<T, usize> {
        let Self { d, buf } = self;
        let dma = d.dma().clone();
        let det = d.reset();
        if det.reset.is_ok() {
            dma.dealloc(buf);
        }
        det
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sense_formats() {
        let mut fixed = [0u8; 18];
        fixed[0] = 0x70;
        fixed[2] = 0x05;
        fixed[12] = 0x20;
        assert_eq!(sense_key(&fixed), Some((5, 0x20, 0)));
        assert_eq!(sense_key(&[0x72, 0x06, 0x29, 0x01]), Some((6, 0x29, 1)));
        assert_eq!(sense_key(&[0x70]), None);
        assert_eq!(sense_key(&[]), None);
        assert_eq!(sense_key(&[0x12, 0, 5]), None);
    }
}
