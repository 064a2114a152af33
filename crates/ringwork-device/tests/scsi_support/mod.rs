//! Helpers shared by the SCSI device tests: images, a fake driver over
//! the harness that builds virtio-scsi requests and parses responses.
#![allow(dead_code, unused_imports)]

#[path = "../blk_support/mod.rs"]
mod blk_support;

pub use blk_support::Image;
pub use std::path::PathBuf;
pub use std::sync::atomic::{AtomicU32, Ordering};

pub use ringwork_device::harness::{Harness, Token};
pub use ringwork_device::model::Device;
pub use ringwork_device::scsi::{LunSpec, Scsi, ScsiError, ScsiHandle, ScsiOptions};
pub use ringwork_queue::{RingFormat, Segment};
pub use ringwork_spec::scsi::*;

pub const FORMATS: [RingFormat; 2] = [RingFormat::Split, RingFormat::Packed];
/// Default image: 1 MiB, 2048 blocks of 512 bytes.
pub const IMAGE: usize = 1 << 20;
pub const BLOCKS: u64 = (IMAGE / 512) as u64;
pub const GOOD: u8 = 0;
pub const CHECK: u8 = 2;
/// Request queue 0.
pub const RQ: u16 = 2;

pub fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// A parsed command response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resp {
    pub sense_len: u32,
    pub residual: u32,
    pub status: u8,
    pub response: u8,
    /// The first `sense_len` sense bytes.
    pub sense: Vec<u8>,
    /// Data-in bytes written.
    pub data: Vec<u8>,
    /// The used length.
    pub used: usize,
}

impl Resp {
    /// (sense key, ASC, ASCQ) of fixed-format sense.
    pub fn key_asc(&self) -> (u8, u8, u8) {
        assert!(self.sense.len() >= 14, "no sense data: {self:?}");
        (self.sense[2] & 0xf, self.sense[12], self.sense[13])
    }

    pub fn good(&self) -> bool {
        self.response == VIRTIO_SCSI_S_OK && self.status == GOOD
    }
}

/// A fake driver for one SCSI device.
pub struct Dev {
    pub h: Harness<Scsi>,
    pub handle: ScsiHandle,
    pub cdb_size: usize,
    pub sense_size: usize,
}

impl Dev {
    pub fn new(scsi: Scsi, format: RingFormat) -> Self {
        let handle = scsi.handle();
        Self {
            h: Harness::new(scsi, format).unwrap(),
            handle,
            cdb_size: 32,
            sense_size: 96,
        }
    }

    pub fn with_features(scsi: Scsi, features: u64) -> Self {
        let handle = scsi.handle();
        Self {
            h: Harness::with_features(scsi, features, 256).unwrap(),
            handle,
            cdb_size: 32,
            sense_size: 96,
        }
    }

    /// A request header for `lun` with `cdb` (zero-padded to cdb_size).
    pub fn header(&self, lun: [u8; 8], id: u64, cdb: &[u8]) -> Vec<u8> {
        let mut h = vec![0u8; 19 + self.cdb_size];
        h[..8].copy_from_slice(&lun);
        h[8..16].copy_from_slice(&id.to_le_bytes());
        let n = cdb.len().min(self.cdb_size);
        h[19..19 + n].copy_from_slice(&cdb[..n]);
        h
    }

    /// Submits a command without running the device.
    pub fn submit_cmd(
        &mut self,
        q: u16,
        lun: [u8; 8],
        cdb: &[u8],
        out: &[u8],
        in_len: u32,
    ) -> Token {
        let hdr = self.header(lun, 7, cdb);
        let resp = (12 + self.sense_size) as u32;
        let outs: Vec<&[u8]> = if out.is_empty() {
            vec![&hdr]
        } else {
            vec![&hdr, out]
        };
        let ins: Vec<u32> = if in_len == 0 {
            vec![resp]
        } else {
            vec![resp, in_len]
        };
        self.h.submit(q, &outs, &ins).unwrap()
    }

    /// Parses completed bytes of a command.
    pub fn parse(&self, bytes: &[u8]) -> Resp {
        assert!(bytes.len() >= 12, "response too short: {bytes:?}");
        let le32 = |a: usize| u32::from_le_bytes(bytes[a..a + 4].try_into().unwrap());
        let sense_len = le32(0);
        let sense_end = 12 + (sense_len as usize).min(self.sense_size);
        let resp_end = (12 + self.sense_size).min(bytes.len());
        Resp {
            sense_len,
            residual: le32(4),
            status: bytes[10],
            response: bytes[11],
            sense: bytes[12..sense_end.min(bytes.len())].to_vec(),
            data: bytes[resp_end..].to_vec(),
            used: bytes.len(),
        }
    }

    /// Runs one command on request queue 0 and returns the response.
    pub fn cmd_q(&mut self, q: u16, lun: [u8; 8], cdb: &[u8], out: &[u8], in_len: u32) -> Resp {
        let t = self.submit_cmd(q, lun, cdb, out, in_len);
        self.h.run().unwrap();
        let done = self.h.completed(q).unwrap();
        assert_eq!(done.len(), 1, "one completion expected");
        assert_eq!(done[0].0, t);
        self.parse(&done[0].1)
    }

    pub fn cmd(&mut self, lun: [u8; 8], cdb: &[u8], out: &[u8], in_len: u32) -> Resp {
        self.cmd_q(RQ, lun, cdb, out, in_len)
    }

    /// A control request: returns the device-writable bytes.
    pub fn ctrl(&mut self, req: &[u8], resp_len: u32) -> Vec<u8> {
        let t = self.h.submit(0, &[req], &[resp_len]).unwrap();
        self.h.run().unwrap();
        let done = self.h.completed(0).unwrap();
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].0, t);
        done[0].1.clone()
    }

    pub fn tmf(&mut self, subtype: u32, lun: [u8; 8], id: u64) -> u8 {
        let mut r = vec![0u8; 24];
        r[4..8].copy_from_slice(&subtype.to_le_bytes());
        r[8..16].copy_from_slice(&lun);
        r[16..24].copy_from_slice(&id.to_le_bytes());
        let b = self.ctrl(&r, 1);
        assert_eq!(b.len(), 1);
        b[0]
    }

    /// Makes `n` event buffers of `len` bytes available.
    pub fn event_buffers(&mut self, n: usize, len: u32) -> Vec<Token> {
        (0..n)
            .map(|_| self.h.submit(1, &[], &[len]).unwrap())
            .collect()
    }

    /// Events completed so far: (event, lun, reason).
    pub fn events(&mut self) -> Vec<(u32, [u8; 8], u32)> {
        self.h.run().unwrap();
        self.h
            .completed(1)
            .unwrap()
            .into_iter()
            .map(|(_, b)| {
                assert_eq!(b.len(), 16, "event of {} bytes", b.len());
                (
                    u32::from_le_bytes(b[..4].try_into().unwrap()),
                    b[4..12].try_into().unwrap(),
                    u32::from_le_bytes(b[12..16].try_into().unwrap()),
                )
            })
            .collect()
    }
}

pub fn open(luns: Vec<LunSpec>) -> Scsi {
    Scsi::open(ScsiOptions {
        luns,
        ..ScsiOptions::default()
    })
    .unwrap()
}

/// One read-write LUN 0:0 over `img`.
pub fn dev1(img: &Image, format: RingFormat) -> Dev {
    Dev::new(open(vec![LunSpec::new(0, 0, &img.path)]), format)
}

pub fn l(target: u8, lun: u16) -> [u8; 8] {
    encode_lun(target, lun)
}

pub fn read10(lba: u32, blocks: u16) -> Vec<u8> {
    let mut c = vec![0x28, 0];
    c.extend_from_slice(&lba.to_be_bytes());
    c.push(0);
    c.extend_from_slice(&blocks.to_be_bytes());
    c.push(0);
    c
}

pub fn write10(lba: u32, blocks: u16) -> Vec<u8> {
    let mut c = read10(lba, blocks);
    c[0] = 0x2a;
    c
}

pub fn rw16(op: u8, lba: u64, blocks: u32) -> Vec<u8> {
    let mut c = vec![op, 0];
    c.extend_from_slice(&lba.to_be_bytes());
    c.extend_from_slice(&blocks.to_be_bytes());
    c.extend_from_slice(&[0, 0]);
    c
}

pub fn inquiry(evpd: bool, page: u8, alloc: u16) -> Vec<u8> {
    let a = alloc.to_be_bytes();
    vec![0x12, u8::from(evpd), page, a[0], a[1], 0]
}

pub fn unmap_params(ranges: &[(u64, u32)]) -> Vec<u8> {
    let mut p = vec![0u8; 8];
    p[..2].copy_from_slice(&((6 + 16 * ranges.len()) as u16).to_be_bytes());
    p[2..4].copy_from_slice(&((16 * ranges.len()) as u16).to_be_bytes());
    for (lba, n) in ranges {
        p.extend_from_slice(&lba.to_be_bytes());
        p.extend_from_slice(&n.to_be_bytes());
        p.extend_from_slice(&[0; 4]);
    }
    p
}

pub fn unmap_cdb(param_len: u16) -> Vec<u8> {
    let p = param_len.to_be_bytes();
    vec![0x42, 0, 0, 0, 0, 0, 0, p[0], p[1], 0]
}
