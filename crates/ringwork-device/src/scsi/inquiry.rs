//! INQUIRY data (SPC-4 §6.6): the standard data and the vital product
//! data pages the device supports (SPC-4 §7.8, SBC-3 §6.6): 00h supported
//! pages, 80h unit serial number, 83h device identification, B0h block
//! limits, B1h block device characteristics, B2h logical block
//! provisioning.
//!
//! Panic contract: pure functions of the LUN's geometry; nothing here
//! panics.

use super::lun::LunInfo;
use super::sense::Sense;

/// T10 vendor identification (8 bytes).
pub const VENDOR: &[u8; 8] = b"RINGWORK";
/// Product identification (16 bytes).
pub const PRODUCT: &[u8; 16] = b"VIRTIO SCSI DISK";
/// Peripheral device type: direct-access block device.
pub const TYPE_DISK: u8 = 0x00;
/// Peripheral qualifier 3, device type 1Fh: no logical unit here.
pub const NO_LUN: u8 = 0x7f;
/// The VPD pages served, in order (page 00h lists them).
pub const VPD_PAGES: [u8; 6] = [0x00, 0x80, 0x83, 0xb0, 0xb1, 0xb2];

/// Length of the standard INQUIRY data returned.
pub const STANDARD_LEN: usize = 96;

fn revision() -> [u8; 4] {
    let mut r = [b' '; 4];
    let v = env!("CARGO_PKG_VERSION").as_bytes();
    let n = v.len().min(4);
    r[..n].copy_from_slice(&v[..n]);
    // "0.1.0" -> "0.1 ", not "0.1.".
    if r[3] == b'.' {
        r[3] = b' ';
    }
    r
}

/// Standard INQUIRY data: a SPC-4 direct-access device with command
/// queuing (CMDQUE), hierarchical addressing (HISUP) and version
/// descriptors for SAM-5, SPC-4 and SBC-3. `byte0` is [`TYPE_DISK`], or
/// [`NO_LUN`] for an address without a logical unit.
pub fn standard(byte0: u8) -> Vec<u8> {
    let mut b = vec![0u8; STANDARD_LEN];
    b[0] = byte0;
    b[2] = 0x06; // VERSION: SPC-4
    b[3] = 0x10 | 0x02; // HISUP, RESPONSE DATA FORMAT 2
    b[4] = (STANDARD_LEN - 5) as u8;
    b[7] = 0x02; // CMDQUE
    b[8..16].copy_from_slice(VENDOR);
    b[16..32].copy_from_slice(PRODUCT);
    b[32..36].copy_from_slice(&revision());
    // Version descriptors: SAM-5, SPC-4, SBC-3.
    for (i, v) in [0x00a0u16, 0x0460, 0x04c0].iter().enumerate() {
        b[58 + 2 * i..60 + 2 * i].copy_from_slice(&v.to_be_bytes());
    }
    b
}

/// FNV-1a, for a stable locally assigned NAA identifier.
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for &c in *p {
            h ^= u64::from(c);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// The locally assigned NAA (type 3) identifier of a LUN: 3h in the top
/// nibble, 60 bits hashed from the serial number and address.
pub(crate) fn naa_id(l: &LunInfo) -> u64 {
    let addr = [l.target, (l.lun >> 8) as u8, l.lun as u8];
    (3u64 << 60) | (fnv1a(&[l.serial.as_bytes(), &addr]) & ((1 << 60) - 1))
}

fn page(code: u8, body: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(4 + body.len());
    b.extend_from_slice(&[TYPE_DISK, code]);
    b.extend_from_slice(&(body.len() as u16).to_be_bytes());
    b.extend_from_slice(body);
    b
}

fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

/// The VPD page `code` of LUN `l`, or INVALID FIELD IN CDB (byte 2) for a
/// page the device does not have.
pub(crate) fn vpd(l: &LunInfo, code: u8) -> Result<Vec<u8>, Sense> {
    Ok(match code {
        0x00 => page(0x00, &VPD_PAGES),
        0x80 => page(0x80, l.serial.as_bytes()),
        0x83 => {
            let mut body = Vec::new();
            // T10 vendor ID designator (ASCII, LU association): vendor
            // identification followed by the serial number.
            let id_len = VENDOR.len() + l.serial.len();
            body.extend_from_slice(&[0x02, 0x01, 0, id_len as u8]);
            body.extend_from_slice(VENDOR);
            body.extend_from_slice(l.serial.as_bytes());
            // NAA designator (binary, LU association), locally assigned.
            body.extend_from_slice(&[0x01, 0x03, 0, 8]);
            body.extend_from_slice(&naa_id(l).to_be_bytes());
            page(0x83, &body)
        }
        0xb0 => {
            let mut body = [0u8; 0x3c];
            body[0] = 0x01; // WSNZ: WRITE SAME with 0 blocks is refused
            let g = l.granularity_blocks();
            body[2..4].copy_from_slice(&(g.min(0xffff) as u16).to_be_bytes());
            put32(&mut body, 4, l.max_transfer_blocks());
            put32(&mut body, 8, l.max_transfer_blocks());
            put32(&mut body, 16, l.max_unmap_blocks());
            put32(&mut body, 20, l.max_unmap_descriptors());
            put32(&mut body, 24, if l.readonly { 0 } else { g });
            body[32..40].copy_from_slice(&u64::from(l.max_unmap_blocks()).to_be_bytes());
            page(0xb0, &body)
        }
        0xb1 => {
            let mut body = [0u8; 0x3c];
            body[1] = 0x01; // MEDIUM ROTATION RATE: non-rotating medium
            page(0xb1, &body)
        }
        0xb2 => {
            let mut body = [0u8; 4];
            if !l.readonly {
                // LBPU, LBPWS, LBPWS10, LBPRZ = 1 (unmapped blocks read as
                // zeroes); provisioning type 2 (thin).
                body[1] = 0x80 | 0x40 | 0x20 | 0x04;
                body[2] = 0x02;
            }
            page(0xb2, &body)
        }
        _ => return Err(Sense::invalid_field_in_cdb(2)),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn info(readonly: bool) -> LunInfo {
        LunInfo {
            target: 0,
            lun: 0,
            blocks: 2048,
            block_size: 512,
            readonly,
            serial: "SER1".into(),
        }
    }

    #[test]
    fn standard_bytes() {
        let b = standard(TYPE_DISK);
        assert_eq!(&b[..8], &[0, 0, 6, 0x12, 91, 0, 0, 2]);
        assert_eq!(&b[8..32], b"RINGWORKVIRTIO SCSI DISK");
        assert_eq!(&b[58..64], &[0, 0xa0, 0x04, 0x60, 0x04, 0xc0]);
        assert_eq!(standard(NO_LUN)[0], 0x7f);
    }

    #[test]
    fn vpd_pages() {
        let l = info(false);
        assert_eq!(
            vpd(&l, 0).unwrap(),
            [0, 0, 0, 6, 0, 0x80, 0x83, 0xb0, 0xb1, 0xb2]
        );
        assert_eq!(
            vpd(&l, 0x80).unwrap(),
            [0, 0x80, 0, 4, b'S', b'E', b'R', b'1']
        );
        let p83 = vpd(&l, 0x83).unwrap();
        assert_eq!(&p83[..8], &[0, 0x83, 0, 28, 2, 1, 0, 12]);
        assert_eq!(&p83[8..20], b"RINGWORKSER1");
        assert_eq!(&p83[20..24], &[1, 3, 0, 8]);
        assert_eq!(p83[24] >> 4, 3);
        let b0 = vpd(&l, 0xb0).unwrap();
        assert_eq!(b0.len(), 64);
        assert_eq!(&b0[..8], &[0, 0xb0, 0, 0x3c, 1, 0, 0, 8]);
        // Max transfer 4 MiB = 8192 blocks; max unmap 1 GiB = 2M blocks.
        assert_eq!(&b0[8..12], &[0, 0, 0x20, 0]);
        assert_eq!(&b0[20..24], &[0, 0x20, 0, 0]);
        assert_eq!(&b0[24..28], &[0, 0, 0, 64]);
        assert_eq!(&b0[36..44], &[0, 0, 0, 0, 0, 0x20, 0, 0]);
        assert_eq!(&vpd(&l, 0xb1).unwrap()[4..6], &[0, 1]);
        assert_eq!(vpd(&l, 0xb2).unwrap(), [0, 0xb2, 0, 4, 0, 0xe4, 2, 0]);
        let ro = info(true);
        assert_eq!(vpd(&ro, 0xb2).unwrap(), [0, 0xb2, 0, 4, 0, 0, 0, 0]);
        assert_eq!(&vpd(&ro, 0xb0).unwrap()[20..28], &[0; 8]);
        assert_eq!(vpd(&l, 0x89), Err(Sense::invalid_field_in_cdb(2)));
    }
}
