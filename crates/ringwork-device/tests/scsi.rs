//! The SCSI host device (VIRTIO 1.4 §5.6) through the in-process fake
//! driver, in both ring formats: the configuration space, LUN addressing,
//! every emulated command with literal expected bytes where sensible, bad
//! CDBs, out-of-range LBAs, short and hostile buffers, read-only LUNs,
//! UNMAP and WRITE SAME, task management, asynchronous notification,
//! hot-plug events and missed events.

mod scsi_support;

use scsi_support::*;

#[test]
fn config_space_and_reset() {
    let img = Image::zeroed(IMAGE);
    let d = dev1(&img, RingFormat::Split);
    let cfg = d.h.device().config();
    assert_eq!(
        cfg,
        [
            1, 0, 0, 0, 254, 0, 0, 0, 0, 0x20, 0, 0, 128, 0, 0, 0, 16, 0, 0, 0, 96, 0, 0, 0, 32, 0,
            0, 0, 0, 0, 255, 0, 0xff, 0x3f, 0, 0
        ]
    );
    let dev = d.h.device();
    // Only sense_size and cdb_size are writable, also byte by byte.
    dev.write_config(SCSI_CONFIG_SENSE_SIZE_OFFSET as u32, &[40, 0, 0, 0, 16, 0]);
    dev.write_config(0, &[9, 9, 9, 9]);
    dev.write_config(SCSI_CONFIG_CDB_SIZE_OFFSET as u32 + 1, &[1]);
    let c = dev.config();
    assert_eq!(&c[..4], &[1, 0, 0, 0]);
    assert_eq!(&c[20..28], &[40, 0, 0, 0, 16, 1, 0, 0]);
    dev.write_config(1000, &[1, 2, 3]);
    // §5.6.4: reset restores 96 and 32.
    dev.reset();
    assert_eq!(&dev.config()[20..28], &[96, 0, 0, 0, 32, 0, 0, 0]);
    assert_eq!(dev.num_queues(), 3);
    let f = dev.features();
    assert_ne!(f & (1 << VIRTIO_SCSI_F_INOUT), 0);
    assert_ne!(f & (1 << VIRTIO_SCSI_F_HOTPLUG), 0);
    assert_ne!(f & (1 << VIRTIO_SCSI_F_CHANGE), 0);
    assert_eq!(f & (1 << VIRTIO_SCSI_F_T10_PI), 0);
}

#[test]
fn standard_inquiry_and_allocation_length() {
    for format in FORMATS {
        let img = Image::zeroed(IMAGE);
        let mut d = dev1(&img, format);
        let r = d.cmd(l(0, 0), &inquiry(false, 0, 96), &[], 96);
        assert!(r.good(), "{r:?}");
        assert_eq!((r.residual, r.sense_len), (0, 0));
        assert_eq!(&r.data[..8], &[0, 0, 6, 0x12, 91, 0, 0, 2]);
        assert_eq!(&r.data[8..32], b"RINGWORKVIRTIO SCSI DISK");
        assert_eq!(r.used, 108 + 96);
        // Allocation length 5 of a 255-byte buffer: 5 bytes, residual 250.
        let r = d.cmd(l(0, 0), &inquiry(false, 0, 5), &[], 255);
        assert_eq!((r.data.len(), r.residual), (5, 250));
        // A 36-byte buffer for a 96-byte allocation: truncated, residual 0.
        let r = d.cmd(l(0, 0), &inquiry(false, 0, 96), &[], 36);
        assert_eq!((r.data.len(), r.residual, r.status), (36, 0, GOOD));
        // Page code without EVPD, CMDDT.
        let r = d.cmd(l(0, 0), &[0x12, 0, 0x80, 0, 96, 0], &[], 96);
        assert_eq!(r.status, CHECK);
        assert_eq!(r.key_asc(), (5, 0x24, 0));
        assert_eq!(&r.sense[15..18], &[0xc0, 0, 2]);
        let r = d.cmd(l(0, 0), &[0x12, 2, 0, 0, 96, 0], &[], 96);
        assert_eq!(r.key_asc(), (5, 0x24, 0));
        assert_eq!(r.residual, 96);
    }
}

#[test]
fn vpd_pages() {
    let img = Image::zeroed(IMAGE);
    let mut d = Dev::new(
        open(vec![LunSpec {
            serial: Some("SN42".into()),
            ..LunSpec::new(0, 0, &img.path)
        }]),
        RingFormat::Split,
    );
    let r = d.cmd(l(0, 0), &inquiry(true, 0, 255), &[], 255);
    assert_eq!(r.data, [0, 0, 0, 6, 0, 0x80, 0x83, 0xb0, 0xb1, 0xb2]);
    assert_eq!(r.residual, 255 - 10);
    let r = d.cmd(l(0, 0), &inquiry(true, 0x80, 255), &[], 255);
    assert_eq!(r.data, [0, 0x80, 0, 4, b'S', b'N', b'4', b'2']);
    let r = d.cmd(l(0, 0), &inquiry(true, 0x83, 255), &[], 255);
    assert_eq!(
        &r.data[..20],
        b"\x00\x83\x00\x1c\x02\x01\x00\x0cRINGWORKSN42"
    );
    assert_eq!(&r.data[20..24], &[1, 3, 0, 8]);
    let r = d.cmd(l(0, 0), &inquiry(true, 0xb0, 255), &[], 255);
    assert_eq!(r.data.len(), 64);
    assert_eq!(
        &r.data[..12],
        &[0, 0xb0, 0, 0x3c, 1, 0, 0, 8, 0, 0, 0x20, 0]
    );
    // Unmap limits: 2M blocks, 64 descriptors, granularity 8.
    assert_eq!(&r.data[20..32], &[0, 0x20, 0, 0, 0, 0, 0, 64, 0, 0, 0, 8]);
    let r = d.cmd(l(0, 0), &inquiry(true, 0xb1, 255), &[], 255);
    assert_eq!(&r.data[..6], &[0, 0xb1, 0, 0x3c, 0, 1]);
    let r = d.cmd(l(0, 0), &inquiry(true, 0xb2, 255), &[], 255);
    assert_eq!(r.data, [0, 0xb2, 0, 4, 0, 0xe4, 2, 0]);
    // Truncated by the allocation length.
    let r = d.cmd(l(0, 0), &inquiry(true, 0xb0, 4), &[], 255);
    assert_eq!(r.data, [0, 0xb0, 0, 0x3c]);
    let r = d.cmd(l(0, 0), &inquiry(true, 0x89, 255), &[], 255);
    assert_eq!((r.status, r.key_asc()), (CHECK, (5, 0x24, 0)));
}

#[test]
fn addressing_absent_luns_and_bad_targets() {
    let img = Image::zeroed(IMAGE);
    let img2 = Image::zeroed(IMAGE);
    let mut d = Dev::new(
        open(vec![
            LunSpec::new(0, 1, &img.path),
            LunSpec::new(0, 300, &img2.path),
        ]),
        RingFormat::Split,
    );
    // LUN 0 absent: INQUIRY answers PQ 3 / type 1Fh.
    let r = d.cmd(l(0, 0), &inquiry(false, 0, 36), &[], 36);
    assert!(r.good());
    assert_eq!(r.data[0], 0x7f);
    // REPORT LUNS works on the absent LUN 0: peripheral then flat format.
    let rl = [0xa0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0];
    let r = d.cmd(l(0, 0), &rl, &[], 256);
    assert!(r.good());
    assert_eq!(
        r.data,
        [0, 0, 0, 16, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0x41, 0x2c, 0, 0, 0, 0, 0, 0]
    );
    assert_eq!(r.residual, 256 - 24);
    // The REPORT LUNS well-known LU lists target 0 too.
    let r = d.cmd(REPORT_LUNS_WLUN, &rl, &[], 256);
    assert_eq!(r.data.len(), 24);
    // Other commands on an absent LUN: LOGICAL UNIT NOT SUPPORTED.
    let r = d.cmd(l(0, 2), &[0, 0, 0, 0, 0, 0], &[], 0);
    assert_eq!(r.status, CHECK);
    assert_eq!(
        r.sense,
        [0x70, 0, 5, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x25, 0, 0, 0, 0, 0]
    );
    assert_eq!(r.sense_len, 18);
    let r = d.cmd(l(0, 2), &rl, &[], 256);
    assert_eq!(r.key_asc(), (5, 0x25, 0));
    // REQUEST SENSE on an absent LUN returns that sense as data.
    let r = d.cmd(l(0, 2), &[3, 0, 0, 0, 18, 0], &[], 18);
    assert!(r.good());
    assert_eq!(&r.data[12..14], &[0x25, 0]);
    // Unknown target: BAD_TARGET, nothing executed.
    let r = d.cmd(l(1, 0), &inquiry(false, 0, 36), &[], 36);
    assert_eq!(r.response, VIRTIO_SCSI_S_BAD_TARGET);
    assert_eq!((r.data.len(), r.residual), (0, 36));
    // Malformed LUN addresses.
    let r = d.cmd([2, 0, 0x40, 1, 0, 0, 0, 0], &inquiry(false, 0, 36), &[], 36);
    assert_eq!(r.response, VIRTIO_SCSI_S_BAD_TARGET);
    let r = d.cmd([1, 0, 0x40, 1, 0, 0, 0, 9], &[0, 0, 0, 0, 0, 0], &[], 0);
    assert_eq!(r.key_asc(), (5, 0x25, 0));
    // LUN 300 in flat addressing, LUN 1 in peripheral addressing.
    assert!(d.cmd(l(0, 300), &[0; 6], &[], 0).good());
    assert!(d.cmd([1, 0, 0, 1, 0, 0, 0, 0], &[0; 6], &[], 0).good());
}

#[test]
fn read_capacity() {
    let img = Image::zeroed(IMAGE);
    let img4k = Image::zeroed(IMAGE);
    let mut d = Dev::new(
        open(vec![
            LunSpec::new(0, 0, &img.path),
            LunSpec {
                block_size: 4096,
                readonly: true,
                ..LunSpec::new(0, 1, &img4k.path)
            },
        ]),
        RingFormat::Packed,
    );
    let r = d.cmd(l(0, 0), &[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], &[], 8);
    assert_eq!(r.data, [0, 0, 0x07, 0xff, 0, 0, 2, 0]);
    let mut rc16 = [0u8; 16];
    rc16[0] = 0x9e;
    rc16[1] = 0x10;
    rc16[13] = 32;
    let r = d.cmd(l(0, 0), &rc16, &[], 32);
    let mut want = [0u8; 32];
    want[6..8].copy_from_slice(&[0x07, 0xff]);
    want[10] = 2;
    want[14] = 0xc0; // LBPME, LBPRZ
    assert_eq!(r.data, want);
    let r = d.cmd(l(0, 1), &rc16, &[], 32);
    assert_eq!(
        &r.data[..16],
        &[0, 0, 0, 0, 0, 0, 0, 255, 0, 0, 16, 0, 0, 0, 0, 0]
    );
    // Other SERVICE ACTION IN service actions.
    rc16[1] = 0x12;
    let r = d.cmd(l(0, 0), &rc16, &[], 32);
    assert_eq!(r.key_asc(), (5, 0x24, 0));
}

#[test]
fn read_write_all_forms() {
    for format in FORMATS {
        let img = Image::zeroed(IMAGE);
        let mut d = dev1(&img, format);
        let a = pattern(1, 1024);
        let r = d.cmd(l(0, 0), &write10(10, 2), &a, 0);
        assert!(r.good(), "{r:?}");
        assert_eq!(r.residual, 0);
        assert_eq!(&img.contents()[10 * 512..12 * 512], &a[..]);
        let r = d.cmd(l(0, 0), &read10(10, 2), &[], 1024);
        assert_eq!((r.residual, &r.data[..]), (0, &a[..]));
        // 6-byte forms (transfer length 0 = 256 blocks).
        let b = pattern(2, 256 * 512);
        assert!(d.cmd(l(0, 0), &[0x0a, 0, 0, 100, 0, 0], &b, 0).good());
        let r = d.cmd(l(0, 0), &[0x08, 0, 0, 100, 0, 0], &[], 256 * 512);
        assert!(r.data == b);
        // 12- and 16-byte forms, FUA.
        let c = pattern(3, 512);
        let w12 = [0xaa, 0x08, 0, 0, 0x07, 0xff, 0, 0, 0, 1, 0, 0];
        assert!(d.cmd(l(0, 0), &w12, &c, 0).good());
        let r = d.cmd(l(0, 0), &rw16(0x88, 2047, 1), &[], 512);
        assert_eq!(r.data, c);
        assert!(d.cmd(l(0, 0), &rw16(0x8a, 0, 1), &c, 0).good());
        let r = d.cmd(l(0, 0), &[0xa8, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0], &[], 512);
        assert_eq!(r.data, c);
        // A larger data-in buffer: residual.
        let r = d.cmd(l(0, 0), &read10(0, 1), &[], 4096);
        assert_eq!((r.data.len(), r.residual), (512, 3584));
        // A transfer length of 0: nothing moves.
        let r = d.cmd(l(0, 0), &read10(0, 0), &[], 0);
        assert!(r.good());
        assert_eq!(r.used, 108);
    }
}

#[test]
fn lba_range_overrun_and_limits() {
    let img = Image::zeroed(IMAGE);
    let mut d = dev1(&img, RingFormat::Split);
    // Past the end, and wrapping around.
    let r = d.cmd(l(0, 0), &read10(2047, 2), &[], 1024);
    assert_eq!(r.status, CHECK);
    assert_eq!(
        r.sense,
        [0x70, 0, 5, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x21, 0, 0, 0, 0, 0]
    );
    assert_eq!(r.residual, 1024);
    let r = d.cmd(l(0, 0), &rw16(0x88, u64::MAX, 2), &[], 1024);
    assert_eq!(r.key_asc(), (5, 0x21, 0));
    let r = d.cmd(l(0, 0), &rw16(0x8a, BLOCKS, 1), &[0; 512], 0);
    assert_eq!(r.key_asc(), (5, 0x21, 0));
    // A data-in buffer shorter than the transfer: OVERRUN, nothing read.
    let r = d.cmd(l(0, 0), &read10(0, 4), &[], 1024);
    assert_eq!(r.response, VIRTIO_SCSI_S_OVERRUN);
    assert_eq!((r.data.len(), r.residual), (0, 1024));
    // A write without enough data-out, or in the wrong direction.
    let r = d.cmd(l(0, 0), &write10(0, 2), &[1; 512], 0);
    assert_eq!(r.response, VIRTIO_SCSI_S_OVERRUN);
    assert_eq!(img.contents()[0], 0);
    let r = d.cmd(l(0, 0), &write10(0, 1), &[], 512);
    assert_eq!(r.response, VIRTIO_SCSI_S_OVERRUN);
    // Beyond the maximum transfer length (4 MiB).
    let r = d.cmd(l(0, 0), &rw16(0x88, 0, 8193), &[], 512);
    assert_eq!(r.key_asc(), (5, 0x24, 0));
    // RDPROTECT / WRPROTECT.
    let mut c = read10(0, 1);
    c[1] = 0x20;
    assert_eq!(d.cmd(l(0, 0), &c, &[], 512).key_asc(), (5, 0x24, 0));
}

#[test]
fn read_only_lun() {
    let img = Image::with(&pattern(5, IMAGE));
    let mut d = Dev::new(
        open(vec![LunSpec {
            readonly: true,
            ..LunSpec::new(0, 0, &img.path)
        }]),
        RingFormat::Split,
    );
    let r = d.cmd(l(0, 0), &write10(0, 1), &[0; 512], 0);
    assert_eq!(r.status, CHECK);
    assert_eq!(
        r.sense,
        [0x70, 0, 7, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x27, 0, 0, 0, 0, 0]
    );
    assert_eq!(r.residual, 512);
    assert_eq!(
        d.cmd(l(0, 0), &unmap_cdb(24), &unmap_params(&[(0, 1)]), 0)
            .key_asc(),
        (7, 0x27, 0)
    );
    let mut ws = [0u8; 10];
    ws[0] = 0x41;
    ws[8] = 1;
    assert_eq!(d.cmd(l(0, 0), &ws, &[0; 512], 0).key_asc(), (7, 0x27, 0));
    assert!(img.contents() == pattern(5, IMAGE));
    // Reads work; MODE SENSE reports WP; SYNCHRONIZE CACHE is fine.
    let r = d.cmd(l(0, 0), &read10(0, 1), &[], 512);
    assert_eq!(r.data, pattern(5, IMAGE)[..512]);
    let r = d.cmd(l(0, 0), &[0x1a, 0x08, 0x3f, 0, 255, 0], &[], 255);
    assert_eq!(&r.data[..4], &[35, 0, 0x90, 0]);
    assert!(d
        .cmd(l(0, 0), &[0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0], &[], 0)
        .good());
}

#[test]
fn mode_sense() {
    let img = Image::zeroed(IMAGE);
    let mut d = dev1(&img, RingFormat::Packed);
    // MODE SENSE(6), caching page, block descriptor.
    let r = d.cmd(l(0, 0), &[0x1a, 0, 0x08, 0, 255, 0], &[], 255);
    let mut want = vec![31, 0, 0x10, 8, 0, 0, 8, 0, 0, 0, 2, 0, 0x08, 0x12, 0x04];
    want.resize(32, 0);
    assert_eq!(r.data, want);
    // MODE SENSE(10), control page, DBD.
    let r = d.cmd(
        l(0, 0),
        &[0x5a, 0x08, 0x0a, 0, 0, 0, 0, 0, 255, 0],
        &[],
        255,
    );
    assert_eq!(
        r.data,
        [0, 18, 0, 0x10, 0, 0, 0, 0, 0x0a, 0x0a, 0, 0x10, 0, 0, 0, 0, 0, 0, 0, 0]
    );
    // All pages, all subpages.
    let r = d.cmd(l(0, 0), &[0x1a, 0x08, 0x3f, 0xff, 255, 0], &[], 255);
    assert_eq!(r.data.len(), 36);
    // Saved values, unknown page, unknown subpage.
    let r = d.cmd(l(0, 0), &[0x1a, 0, 0xc8, 0, 255, 0], &[], 255);
    assert_eq!(r.key_asc(), (5, 0x39, 0));
    let r = d.cmd(l(0, 0), &[0x1a, 0, 0x1c, 0, 255, 0], &[], 255);
    assert_eq!(r.key_asc(), (5, 0x24, 0));
    let r = d.cmd(l(0, 0), &[0x1a, 0, 0x08, 1, 255, 0], &[], 255);
    assert_eq!(r.key_asc(), (5, 0x24, 0));
}

#[test]
fn unmap_zeroes_and_checks_parameters() {
    for format in FORMATS {
        let img = Image::with(&pattern(9, IMAGE));
        let mut d = dev1(&img, format);
        let p = unmap_params(&[(8, 8), (100, 3)]);
        let r = d.cmd(l(0, 0), &unmap_cdb(p.len() as u16), &p, 0);
        assert!(r.good(), "{r:?}");
        let c = img.contents();
        assert!(c[8 * 512..16 * 512].iter().all(|&b| b == 0));
        assert!(c[100 * 512..103 * 512].iter().all(|&b| b == 0));
        assert_eq!(c[7 * 512..8 * 512], pattern(9, IMAGE)[7 * 512..8 * 512]);
        assert_eq!(c[16 * 512], pattern(9, IMAGE)[16 * 512]);
        let r = d.cmd(l(0, 0), &read10(8, 1), &[], 512);
        assert_eq!(r.data, vec![0; 512]);
        // Out of range: nothing is unmapped.
        let p = unmap_params(&[(200, 1), (BLOCKS, 1)]);
        let r = d.cmd(l(0, 0), &unmap_cdb(p.len() as u16), &p, 0);
        assert_eq!(r.key_asc(), (5, 0x21, 0));
        assert_ne!(img.contents()[200 * 512..201 * 512], vec![0; 512]);
        // Parameter list length 1..7, too many descriptors, too many blocks.
        let r = d.cmd(l(0, 0), &unmap_cdb(4), &[0; 4], 0);
        assert_eq!(r.key_asc(), (5, 0x1a, 0));
        let many: Vec<(u64, u32)> = (0..65).map(|i| (i, 1)).collect();
        let p = unmap_params(&many);
        let r = d.cmd(l(0, 0), &unmap_cdb(p.len() as u16), &p, 0);
        assert_eq!(r.key_asc(), (5, 0x26, 0));
        // A parameter list longer than the data-out buffer.
        let p = unmap_params(&[(0, 1)]);
        let r = d.cmd(l(0, 0), &unmap_cdb(100), &p, 0);
        assert_eq!(r.response, VIRTIO_SCSI_S_OVERRUN);
        // Zero-length parameter list, ANCHOR.
        assert!(d.cmd(l(0, 0), &unmap_cdb(0), &[], 0).good());
        let mut c = unmap_cdb(24);
        c[1] = 1;
        assert_eq!(d.cmd(l(0, 0), &c, &p, 0).key_asc(), (5, 0x24, 0));
    }
}

#[test]
fn write_same() {
    let img = Image::with(&pattern(4, IMAGE));
    let mut d = dev1(&img, RingFormat::Split);
    // WRITE SAME(10) of a pattern block over 3 blocks.
    let blk = pattern(8, 512);
    let ws10 = [0x41, 0, 0, 0, 0, 20, 0, 0, 3, 0];
    assert!(d.cmd(l(0, 0), &ws10, &blk, 0).good());
    let c = img.contents();
    for i in 20..23 {
        assert_eq!(c[i * 512..(i + 1) * 512], blk[..]);
    }
    // WRITE SAME(16) with UNMAP and a zero block; with NDOB.
    let mut ws16 = rw16(0x93, 30, 4);
    ws16[1] = 0x08;
    assert!(d.cmd(l(0, 0), &ws16, &[0; 512], 0).good());
    assert!(img.contents()[30 * 512..34 * 512].iter().all(|&b| b == 0));
    let mut nd = rw16(0x93, 40, 2);
    nd[1] = 0x09;
    assert!(d.cmd(l(0, 0), &nd, &[], 0).good());
    assert!(img.contents()[40 * 512..42 * 512].iter().all(|&b| b == 0));
    // Zero blocks (WSNZ), out of range, missing data block.
    let r = d.cmd(l(0, 0), &[0x41, 0, 0, 0, 0, 0, 0, 0, 0, 0], &blk, 0);
    assert_eq!(r.key_asc(), (5, 0x24, 0));
    let r = d.cmd(l(0, 0), &rw16(0x93, BLOCKS - 1, 2), &blk, 0);
    assert_eq!(r.key_asc(), (5, 0x21, 0));
    let r = d.cmd(l(0, 0), &ws10, &blk[..100], 0);
    assert_eq!(r.response, VIRTIO_SCSI_S_OVERRUN);
}

#[test]
fn simple_commands_and_sense() {
    let img = Image::zeroed(IMAGE);
    let mut d = dev1(&img, RingFormat::Split);
    assert!(d.cmd(l(0, 0), &[0, 0, 0, 0, 0, 0], &[], 0).good());
    assert!(d.cmd(l(0, 0), &[0x1b, 0, 0, 0, 1, 0], &[], 0).good());
    let sc16 = rw16(0x91, 0, 0);
    assert!(d.cmd(l(0, 0), &sc16, &[], 0).good());
    let r = d.cmd(l(0, 0), &rw16(0x91, BLOCKS + 1, 0), &[], 0);
    assert_eq!(r.key_asc(), (5, 0x21, 0));
    // REQUEST SENSE with nothing pending: NO SENSE.
    let r = d.cmd(l(0, 0), &[3, 0, 0, 0, 252, 0], &[], 252);
    assert_eq!(
        r.data,
        [0x70, 0, 0, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    );
    assert_eq!(r.residual, 252 - 18);
    // Descriptor format is refused.
    let r = d.cmd(l(0, 0), &[3, 1, 0, 0, 252, 0], &[], 252);
    assert_eq!(r.key_asc(), (5, 0x24, 0));
    // Unknown and variable-length operation codes.
    for op in [0x04u8, 0x7f, 0xc0, 0xa3, 0x55] {
        let r = d.cmd(
            l(0, 0),
            &[op, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            &[],
            0,
        );
        assert_eq!(r.status, CHECK);
        assert_eq!(
            r.sense,
            [0x70, 0, 5, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x20, 0, 0, 0, 0, 0],
            "opcode {op:#x}"
        );
    }
    // NACA in the control byte.
    let r = d.cmd(l(0, 0), &[0, 0, 0, 0, 0, 4], &[], 0);
    assert_eq!(&r.sense[15..18], &[0xc0, 0, 5]);
}

#[test]
fn hostile_framing() {
    for format in FORMATS {
        let img = Image::zeroed(IMAGE);
        let mut d = dev1(&img, format);
        // A header shorter than 19 + cdb_size: FAILURE.
        let hdr = d.header(l(0, 0), 1, &[0; 6]);
        let t = d.h.submit(RQ, &[&hdr[..40]], &[108]).unwrap();
        d.h.run().unwrap();
        let done = d.h.completed(RQ).unwrap();
        assert_eq!(done[0].0, t);
        assert_eq!(d.parse(&done[0].1).response, VIRTIO_SCSI_S_FAILURE);
        // No room for the response: used length 0.
        d.h.submit(RQ, &[&hdr], &[11]).unwrap();
        d.h.run().unwrap();
        assert_eq!(d.h.completed(RQ).unwrap()[0].1.len(), 0);
        // No writable part at all.
        d.h.submit(RQ, &[&hdr], &[]).unwrap();
        d.h.run().unwrap();
        assert_eq!(d.h.completed(RQ).unwrap()[0].1.len(), 0);
        // Room for the fixed part only: sense truncated to nothing.
        d.h.submit(RQ, &[&d.header(l(0, 0), 1, &[0x04; 6])], &[12])
            .unwrap();
        d.h.run().unwrap();
        let b = d.h.completed(RQ).unwrap()[0].1.clone();
        assert_eq!(b.len(), 12);
        assert_eq!((b[0], b[10], b[11]), (0, CHECK, 0));
        // Header split over many descriptors, data-in in odd pieces.
        let hdr = d.header(l(0, 0), 2, &read10(0, 1));
        let pieces: Vec<&[u8]> = hdr.chunks(5).collect();
        let t = d.h.submit(RQ, &pieces, &[3, 100, 5, 300, 212]).unwrap();
        d.h.run().unwrap();
        let done = d.h.completed(RQ).unwrap();
        assert_eq!(done[0].0, t);
        let r = d.parse(&done[0].1);
        assert!(r.good());
        assert_eq!(r.data, vec![0; 512]);
        // A data segment outside guest memory breaks the queue.
        let hdr = d.header(l(0, 0), 3, &read10(0, 1));
        let seg = d.h.put(&hdr);
        let resp = Segment::new(d.h.put(&[0; 108]).addr, 108);
        d.h.submit_segments(RQ, &[seg], &[resp, Segment::new(1 << 40, 512)]);
        assert!(d.h.run().is_err());
        assert_eq!(d.h.broken_queues(), vec![RQ]);
    }
}

#[test]
fn bidirectional_needs_inout() {
    let img = Image::zeroed(IMAGE);
    let scsi = open(vec![LunSpec::new(0, 0, &img.path)]);
    let f = scsi.features() & !(1 << VIRTIO_SCSI_F_INOUT) & !(1 << 34);
    let mut d = Dev::with_features(scsi, f);
    let r = d.cmd(l(0, 0), &write10(0, 1), &[1; 512], 512);
    assert_eq!(r.response, VIRTIO_SCSI_S_FAILURE);
    assert_eq!(img.contents()[0], 0);
    // With INOUT negotiated the same chain is executed: the write uses
    // data-out, data-in stays untouched (residual counts it).
    let mut d = dev1(&img, RingFormat::Split);
    let r = d.cmd(l(0, 0), &write10(0, 1), &[1; 512], 512);
    assert!(r.good());
    assert_eq!(r.residual, 512);
    assert_eq!(img.contents()[..512], [1; 512]);
}

#[test]
fn sense_and_cdb_size_changes() {
    let img = Image::zeroed(IMAGE);
    let mut d = dev1(&img, RingFormat::Split);
    d.h.device()
        .write_config(SCSI_CONFIG_SENSE_SIZE_OFFSET as u32, &[8, 0, 0, 0]);
    d.h.device()
        .write_config(SCSI_CONFIG_CDB_SIZE_OFFSET as u32, &[16, 0, 0, 0]);
    d.sense_size = 8;
    d.cdb_size = 16;
    let r = d.cmd(l(0, 0), &read10(BLOCKS as u32, 1), &[], 512);
    assert_eq!((r.sense_len, r.status), (8, CHECK));
    assert_eq!(r.sense, [0x70, 0, 5, 0, 0, 0, 0, 10]);
    assert_eq!(r.used, 20);
    // A 16-byte CDB area: the header is 35 bytes and data follows it.
    let a = pattern(1, 512);
    assert!(d.cmd(l(0, 0), &rw16(0x8a, 5, 1), &a, 0).good());
    let r = d.cmd(l(0, 0), &rw16(0x88, 5, 1), &[], 512);
    assert_eq!(r.data, a);
    // A 6-byte CDB area cannot hold READ(10).
    d.h.device()
        .write_config(SCSI_CONFIG_CDB_SIZE_OFFSET as u32, &[6, 0, 0, 0]);
    d.cdb_size = 6;
    let r = d.cmd(l(0, 0), &read10(0, 1), &[], 512);
    assert_eq!((r.status, r.sense[2]), (CHECK, 5));
    // A huge sense_size: the whole writable part is sense area.
    d.h.device()
        .write_config(SCSI_CONFIG_SENSE_SIZE_OFFSET as u32, &[0, 0, 0, 0x80]);
    d.h.device()
        .write_config(SCSI_CONFIG_CDB_SIZE_OFFSET as u32, &[32, 0, 0, 0]);
    d.cdb_size = 32;
    let t = d.submit_cmd(RQ, l(0, 0), &read10(0, 1), &[], 512);
    d.h.run().unwrap();
    let done = d.h.completed(RQ).unwrap();
    assert_eq!(done[0].0, t);
    assert_eq!(done[0].1[11], VIRTIO_SCSI_S_OVERRUN);
}
