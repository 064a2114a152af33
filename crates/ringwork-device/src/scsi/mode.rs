//! MODE SENSE(6) and MODE SENSE(10) data (SPC-4 §6.11, §6.12, §7.5):
//! the mode parameter header (WP for a read-only LUN, DPOFUA), an
//! optional short or long LBA block descriptor, and the pages the device
//! has: Caching (08h, write-back: WCE) and Control (0Ah). Nothing is
//! changeable (there is no MODE SELECT) and nothing is saveable.
//!
//! Panic contract: pure functions; nothing here panics.

use super::lun::LunInfo;
use super::sense::Sense;

/// Caching mode page code.
pub const PAGE_CACHING: u8 = 0x08;
/// Control mode page code.
pub const PAGE_CONTROL: u8 = 0x0a;
/// "Return all pages".
pub const PAGE_ALL: u8 = 0x3f;

/// What MODE SENSE asks for (see [`super::cdb::Command::ModeSense`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ModeRequest {
    /// The 10-byte form.
    pub ten: bool,
    /// No block descriptor.
    pub dbd: bool,
    /// A long LBA block descriptor.
    pub llbaa: bool,
    /// Page control (0 current, 1 changeable, 2 default).
    pub pc: u8,
    /// Page code.
    pub page: u8,
    /// Subpage code.
    pub subpage: u8,
}

fn caching(pc: u8) -> [u8; 20] {
    let mut p = [0u8; 20];
    p[0] = PAGE_CACHING;
    p[1] = 0x12;
    if pc != 1 {
        p[2] = 0x04; // WCE: writes are cached until SYNCHRONIZE CACHE.
    }
    p
}

fn control(pc: u8) -> [u8; 12] {
    let mut p = [0u8; 12];
    p[0] = PAGE_CONTROL;
    p[1] = 0x0a;
    if pc != 1 {
        p[3] = 0x10; // QUEUE ALGORITHM MODIFIER 1: unrestricted reordering.
    }
    p
}

/// The MODE SENSE data for `r`, or the ILLEGAL REQUEST to answer.
pub(crate) fn mode_sense(l: &LunInfo, r: ModeRequest) -> Result<Vec<u8>, Sense> {
    let mut pages = Vec::new();
    match (r.page, r.subpage) {
        (PAGE_CACHING, 0) => pages.extend_from_slice(&caching(r.pc)),
        (PAGE_CONTROL, 0) => pages.extend_from_slice(&control(r.pc)),
        (PAGE_ALL, 0 | 0xff) => {
            pages.extend_from_slice(&caching(r.pc));
            pages.extend_from_slice(&control(r.pc));
        }
        (PAGE_CACHING | PAGE_CONTROL | PAGE_ALL, _) => {
            return Err(Sense::invalid_field_in_cdb(3));
        }
        _ => return Err(Sense::invalid_field_in_cdb(2)),
    }
    // DPOFUA: FUA is honoured; WP for a read-only LUN.
    let dev_specific = 0x10 | if l.readonly { 0x80 } else { 0 };
    let mut desc = Vec::new();
    if !r.dbd {
        if r.llbaa {
            desc.extend_from_slice(&l.blocks.to_be_bytes());
            desc.extend_from_slice(&[0; 4]);
            desc.extend_from_slice(&l.block_size.to_be_bytes());
        } else {
            let n = u32::try_from(l.blocks).unwrap_or(u32::MAX);
            desc.extend_from_slice(&n.to_be_bytes());
            desc.push(0);
            desc.extend_from_slice(&l.block_size.to_be_bytes()[1..]);
        }
    }
    let mut b = Vec::new();
    if r.ten {
        let total = 8 + desc.len() + pages.len();
        b.extend_from_slice(&((total - 2) as u16).to_be_bytes());
        b.extend_from_slice(&[0, dev_specific, u8::from(r.llbaa && !r.dbd), 0]);
        b.extend_from_slice(&(desc.len() as u16).to_be_bytes());
    } else {
        let total = 4 + desc.len() + pages.len();
        b.extend_from_slice(&[(total - 1) as u8, 0, dev_specific, desc.len() as u8]);
    }
    b.extend_from_slice(&desc);
    b.extend_from_slice(&pages);
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::super::inquiry::tests::info;
    use super::*;

    fn req(ten: bool, dbd: bool, page: u8) -> ModeRequest {
        ModeRequest {
            ten,
            dbd,
            llbaa: false,
            pc: 0,
            page,
            subpage: 0,
        }
    }

    #[test]
    fn caching_page_six_byte_form() {
        let b = mode_sense(&info(false), req(false, true, PAGE_CACHING)).unwrap();
        let mut want = vec![23, 0, 0x10, 0, 0x08, 0x12, 0x04];
        want.resize(24, 0);
        assert_eq!(b, want);
    }

    #[test]
    fn all_pages_with_descriptors_and_wp() {
        let ro = info(true);
        let b = mode_sense(&ro, req(false, false, PAGE_ALL)).unwrap();
        assert_eq!(b.len(), 4 + 8 + 20 + 12);
        assert_eq!(&b[..12], &[43, 0, 0x90, 8, 0, 0, 8, 0, 0, 0, 2, 0]);
        assert_eq!((b[12], b[32]), (0x08, 0x0a));
        let mut r = req(true, false, PAGE_CONTROL);
        r.llbaa = true;
        let b = mode_sense(&ro, r).unwrap();
        assert_eq!(
            &b[..24],
            &[0, 34, 0, 0x90, 1, 0, 0, 16, 0, 0, 0, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 2, 0]
        );
        assert_eq!(&b[24..28], &[0x0a, 0x0a, 0, 0x10]);
    }

    #[test]
    fn changeable_and_bad_pages() {
        let mut r = req(false, true, PAGE_CACHING);
        r.pc = 1;
        assert_eq!(mode_sense(&info(false), r).unwrap()[6], 0);
        assert_eq!(
            mode_sense(&info(false), req(false, true, 0x1c)),
            Err(Sense::invalid_field_in_cdb(2))
        );
        let mut r = req(false, true, PAGE_CACHING);
        r.subpage = 1;
        assert_eq!(
            mode_sense(&info(false), r),
            Err(Sense::invalid_field_in_cdb(3))
        );
    }
}
