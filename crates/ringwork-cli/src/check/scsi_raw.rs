//! SCSI checks that need requests a driver would not send ([`Raw`]
//! sessions): `sense_size` and `cdb_size` written by the driver and
//! honoured (the request and response headers change size, §5.6.4), both
//! back to 96 and 32 after a reset (§5.6.4.2), and requests too short for
//! their headers answered without hanging the queue (§5.6.6.1.1).
//!
//! Trust and panic contract: responses are copied out of shared memory
//! and parsed with bounds checks; every wait is bounded.

use std::time::Duration;

use ringwork_driver::scsi::lun_address;
use ringwork_driver::RingPreference;
use ringwork_spec::features::{FeatureSet, VIRTIO_F_VERSION_1};
use ringwork_spec::scsi::{
    ScsiConfig, CONTROLQ_INDEX, EVENTQ_INDEX, REQ_CMD_CDB_OFFSET, SCSI_CONFIG_CDB_SIZE_OFFSET,
    SCSI_CONFIG_SENSE_SIZE_OFFSET, SCSI_CONFIG_SIZE, VIRTIO_SCSI_CDB_DEFAULT_SIZE,
    VIRTIO_SCSI_SENSE_DEFAULT_SIZE, VIRTIO_SCSI_S_OK,
};
use ringwork_transport::driver::Transport;
use ringwork_vhost_user::msg::protocol;

use super::common::{first_problem, Ctx};
use super::raw::Raw;
use super::report::Outcome;
use super::scsi_cmd::{sense_key, Lu, ILLEGAL_REQUEST, UNIT_ATTENTION};

/// The request queue raw sessions use (request queue 0).
const REQUESTQ: u16 = 2;
/// `sense_size` the driver writes: below the 18 bytes of fixed-format
/// sense data, so the device has to truncate.
const SENSE: u32 = 8;
/// `cdb_size` the driver writes: shorter than the default, so a device
/// that keeps using 32 misreads every request.
const CDB: u32 = 16;
/// SAM status CHECK CONDITION.
const CHECK_CONDITION: u8 = 2;

/// A response header, parsed.
#[derive(Debug)]
struct Resp {
    used: u32,
    sense_len: u32,
    status: u8,
    response: u8,
    sense: Vec<u8>,
    data: Vec<u8>,
}

/// Sends one request on [`REQUESTQ`]: `readable` bytes of header, then a
/// device-writable response area of `resp_len` bytes (preset to 0xff) and
/// `data_in` bytes of data. `None`: not completed within `within`.
fn request(
    raw: &mut Raw,
    readable: &[u8],
    resp_len: usize,
    data_in: usize,
    within: Duration,
) -> anyhow::Result<Option<Resp>> {
    let (out, _) = raw.buffer(readable)?;
    let (resp, roff) = raw.buffer(&vec![0xff; resp_len])?;
    let (data, doff) = raw.buffer(&vec![0; data_in])?;
    let mut inp = Vec::new();
    if resp_len > 0 {
        inp.push(resp);
    }
    if data_in > 0 {
        inp.push(data);
    }
    let outs: &[_] = if readable.is_empty() { &[] } else { &[out] };
    let token = roff as u64;
    raw.send(REQUESTQ, outs, &inp, token)?;
    let Some(used) = raw.wait_token(REQUESTQ, token, within)? else {
        return Ok(None);
    };
    let r = raw.get(roff, resp_len)?;
    let le32 = |o: usize| {
        r.get(o..o + 4)
            .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let sense_len = le32(0);
    let got = (used as usize).saturating_sub(resp_len).min(data_in);
    Ok(Some(Resp {
        used,
        sense_len,
        status: r.get(10).copied().unwrap_or(0xff),
        response: r.get(11).copied().unwrap_or(0xff),
        sense: r
            .get(12..12 + (sense_len as usize).min(resp_len.saturating_sub(12)))
            .unwrap_or(&[])
            .to_vec(),
        data: raw.get(doff, got)?,
    }))
}

/// A request header for `lu` with `cdb` padded to `cdb_size`.
fn header(lu: Lu, id: u64, cdb: &[u8], cdb_size: usize) -> Vec<u8> {
    let mut h = vec![0u8; REQ_CMD_CDB_OFFSET + cdb_size];
    h[..8].copy_from_slice(&lun_address(lu.0, lu.1));
    h[8..16].copy_from_slice(&id.to_le_bytes());
    let n = cdb.len().min(cdb_size);
    h[REQ_CMD_CDB_OFFSET..REQ_CMD_CDB_OFFSET + n].copy_from_slice(&cdb[..n]);
    h
}

/// Opens a raw session with controlq, eventq and request queue 0;
/// `configure` runs after FEATURES_OK, before the queues.
fn open(ctx: &Ctx, configure: impl FnOnce(&mut Raw)) -> anyhow::Result<Raw> {
    let t = ctx.connect()?;
    let mut raw = Raw::negotiate(
        t,
        FeatureSet::from_bits(&[VIRTIO_F_VERSION_1]),
        &[],
        RingPreference::Split,
    )?;
    if !raw.features.contains(VIRTIO_F_VERSION_1) {
        anyhow::bail!("VIRTIO_F_VERSION_1 was not negotiated");
    }
    configure(&mut raw);
    for q in [CONTROLQ_INDEX as u16, EVENTQ_INDEX as u16, REQUESTQ] {
        raw.add_queue(q, 16)?;
    }
    raw.driver_ok();
    Ok(raw)
}

/// The raw checks; `lu` is a logical unit found by the main session.
pub(crate) fn run(ctx: &mut Ctx, lu: Option<Lu>) {
    const IDS: &[(&str, &str, &str)] = &[
        ("scsi.config.writable", "§5.6.4", "sense_size 8 and cdb_size 16 written by the driver read back and are honoured: 35-byte request headers parsed, sense truncated to 8 bytes, data-in placed after the shorter response"),
        ("scsi.config.reset-defaults", "§5.6.4.2", "after a reset sense_size reads 96 and cdb_size 32 again"),
        ("scsi.short-request", "§5.6.6.1.1", "requests too short for the request header, with a response area shorter than the response header, or with no device-writable part are completed (not OK/GOOD) and the queue keeps working"),
    ];
    let Some(lu) = lu else {
        for &(id, sec, desc) in IDS {
            ctx.record(
                id,
                sec,
                desc,
                Ok(Outcome::Skip("no logical unit found".into())),
            );
        }
        return;
    };
    let (w, d) = sizes(ctx, lu);
    ctx.record(IDS[0].0, IDS[0].1, IDS[0].2, w);
    ctx.record(IDS[1].0, IDS[1].1, IDS[1].2, d);
    let r = short_requests(ctx, lu);
    ctx.record(IDS[2].0, IDS[2].1, IDS[2].2, r);
}

/// TEST UNIT READY until GOOD (a UNIT ATTENTION consumed, up to 4 tries).
fn ready(
    raw: &mut Raw,
    lu: Lu,
    cdb_size: usize,
    resp_len: usize,
    timeout: Duration,
) -> anyhow::Result<Outcome> {
    let mut last = String::new();
    for i in 0..4 {
        let h = header(lu, 100 + i, &[0; 6], cdb_size);
        let Some(r) = request(raw, &h, resp_len, 0, timeout)? else {
            return Ok(Outcome::Fail("TEST UNIT READY was not completed".into()));
        };
        if r.response == VIRTIO_SCSI_S_OK && r.status == 0 {
            return Ok(Outcome::Pass);
        }
        last = format!("response {:#04x}, status {:#04x}", r.response, r.status);
        let ua = sense_key(&r.sense).map(|k| k.0) == Some(UNIT_ATTENTION);
        if r.response != VIRTIO_SCSI_S_OK || r.status != CHECK_CONDITION || !ua {
            break;
        }
    }
    Ok(Outcome::Fail(format!("TEST UNIT READY: {last}")))
}

/// `scsi.config.writable` and `scsi.config.reset-defaults`.
fn sizes(ctx: &mut Ctx, lu: Lu) -> (anyhow::Result<Outcome>, anyhow::Result<Outcome>) {
    let timeout = ctx.opts.timeout;
    let mut raw = match open(ctx, |raw| {
        raw.t
            .write_config(SCSI_CONFIG_SENSE_SIZE_OFFSET, &SENSE.to_le_bytes());
        raw.t
            .write_config(SCSI_CONFIG_CDB_SIZE_OFFSET, &CDB.to_le_bytes());
    }) {
        Ok(r) => r,
        Err(e) => {
            return (
                Err(e),
                Ok(Outcome::Skip("not run: the session failed".into())),
            )
        }
    };
    if !raw.t.has_protocol(protocol::CONFIG) {
        let why =
            "backend lacks VHOST_USER_PROTOCOL_F_CONFIG: the configuration space is not writable";
        let _ = raw.finish(ctx, "sense/cdb size session");
        return (Ok(Outcome::Skip(why.into())), Ok(Outcome::Skip(why.into())));
    }
    let written = (|| -> anyhow::Result<Outcome> {
        let mut b = [0u8; SCSI_CONFIG_SIZE];
        raw.t.read_config(0, &mut b);
        let c = ScsiConfig::new_unchecked(&b[..]);
        if c.sense_size() != SENSE || c.cdb_size() != CDB {
            return Ok(Outcome::Fail(format!(
                "after writing sense_size {SENSE} and cdb_size {CDB} they read {} and {}",
                c.sense_size(),
                c.cdb_size()
            )));
        }
        let cdb = CDB as usize;
        let resp = 12 + SENSE as usize;
        let tur = ready(&mut raw, lu, cdb, resp, timeout)?;
        let h = header(lu, 200, &[0x02, 0, 0, 0, 0, 0], cdb);
        let bad = match request(&mut raw, &h, resp, 0, timeout)? {
            None => Outcome::Fail("an unsupported opcode was not completed".into()),
            Some(r) if r.response != VIRTIO_SCSI_S_OK || r.status != CHECK_CONDITION => {
                Outcome::Fail(format!(
                    "unsupported opcode: response {:#04x}, status {:#04x}",
                    r.response, r.status
                ))
            }
            Some(r) if r.sense_len > SENSE || r.used as usize > resp => Outcome::Fail(format!(
                "sense_len {} and used length {} with sense_size {SENSE}",
                r.sense_len, r.used
            )),
            Some(r) if sense_key(&r.sense).map(|k| k.0) != Some(ILLEGAL_REQUEST) => {
                Outcome::Fail(format!("unsupported opcode: sense {:02x?}", r.sense))
            }
            Some(_) => Outcome::Pass,
        };
        let h = header(lu, 201, &[0x12, 0, 0, 0, 96, 0], cdb);
        let inq = match request(&mut raw, &h, resp, 96, timeout)? {
            None => Outcome::Fail("INQUIRY was not completed".into()),
            Some(r) if r.response != VIRTIO_SCSI_S_OK || r.status != 0 => Outcome::Fail(format!(
                "INQUIRY: response {:#04x}, status {:#04x}",
                r.response, r.status
            )),
            Some(r) if r.data.len() < 36 || r.data[0] >> 5 != 0 || r.data[3] & 0xf != 2 => {
                Outcome::Fail(format!(
                    "INQUIRY data misplaced: {} bytes after the {resp}-byte response, starting {:02x?}",
                    r.data.len(),
                    &r.data[..r.data.len().min(8)]
                ))
            }
            Some(_) => Outcome::Pass,
        };
        Ok(first_problem([tur, bad, inq]))
    })();
    let (mut t, reset) = raw.finish(ctx, "sense/cdb size session");
    let defaults = match reset {
        Err(e) => Ok(Outcome::Fail(format!("reset: {e}"))),
        Ok(()) => match t.frontend().get_config(0, SCSI_CONFIG_SIZE as u32) {
            Err(e) => Err(anyhow::anyhow!("GET_CONFIG after the reset: {e}")),
            Ok(b) => {
                let mut bytes = [0u8; SCSI_CONFIG_SIZE];
                let n = b.len().min(SCSI_CONFIG_SIZE);
                bytes[..n].copy_from_slice(&b[..n]);
                let c = ScsiConfig::new_unchecked(&bytes[..]);
                Ok(
                    if c.sense_size() == VIRTIO_SCSI_SENSE_DEFAULT_SIZE
                        && c.cdb_size() == VIRTIO_SCSI_CDB_DEFAULT_SIZE
                    {
                        Outcome::Pass
                    } else {
                        Outcome::Fail(format!(
                            "after a reset sense_size reads {} and cdb_size {}",
                            c.sense_size(),
                            c.cdb_size()
                        ))
                    },
                )
            }
        },
    };
    (written, defaults)
}

/// `scsi.short-request`.
fn short_requests(ctx: &mut Ctx, lu: Lu) -> anyhow::Result<Outcome> {
    let timeout = ctx.opts.timeout;
    let mut raw = open(ctx, |_| {})?;
    let r = (|| -> anyhow::Result<Outcome> {
        let cdb = VIRTIO_SCSI_CDB_DEFAULT_SIZE as usize;
        let resp = 12 + VIRTIO_SCSI_SENSE_DEFAULT_SIZE as usize;
        let full = header(lu, 300, &[0; 6], cdb);
        let mut v = Vec::new();
        for (what, readable, resp_len) in [
            ("a 10-byte request header", &full[..10], resp),
            ("an empty request header", &full[..0], resp),
            ("a 4-byte response area", &full[..], 4),
            ("no device-writable part", &full[..], 0),
        ] {
            v.push(match request(&mut raw, readable, resp_len, 0, timeout)? {
                None => Outcome::Fail(format!("{what}: not completed within {timeout:?}")),
                Some(r)
                    if resp_len >= 12
                        && r.used >= 12
                        && r.response == VIRTIO_SCSI_S_OK
                        && r.status == 0 =>
                {
                    Outcome::Fail(format!("{what}: answered VIRTIO_SCSI_S_OK with GOOD"))
                }
                Some(r) if r.used as usize > resp_len => Outcome::Fail(format!(
                    "{what}: used length {} beyond the {resp_len} writable bytes",
                    r.used
                )),
                Some(_) => Outcome::Pass,
            });
        }
        v.push(ready(&mut raw, lu, cdb, resp, timeout)?);
        Ok(first_problem(v))
    })();
    let _ = raw.finish(ctx, "short request session");
    r
}
