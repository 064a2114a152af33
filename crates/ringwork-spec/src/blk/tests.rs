//! Byte-level layout tests for the block device structures.
use super::*;

#[test]
fn config_offsets_match_spec() {
    let mut b = [0u8; 96];
    let mut c = BlkConfig::new_checked(&mut b[..]).unwrap();
    c.set_capacity(0x0102_0304_0506_0708);
    c.set_size_max(0x1112_1314);
    c.set_seg_max(0x2122_2324);
    c.set_geometry_cylinders(0x3132);
    c.set_geometry_heads(0x33);
    c.set_geometry_sectors(0x34);
    c.set_blk_size(0x4142_4344);
    c.set_topology_physical_block_exp(0x51);
    c.set_topology_alignment_offset(0x52);
    c.set_topology_min_io_size(0x5354);
    c.set_topology_opt_io_size(0x5556_5758);
    c.set_writeback(0x61);
    c.set_unused0(0x62);
    c.set_num_queues(0x6364);
    c.set_max_discard_sectors(0x7172_7374);
    c.set_max_discard_seg(0x7576_7778);
    c.set_discard_sector_alignment(0x8182_8384);
    c.set_max_write_zeroes_sectors(0x8586_8788);
    c.set_max_write_zeroes_seg(0x9192_9394);
    c.set_write_zeroes_may_unmap(0x95);
    c.set_unused1([0x96, 0x97, 0x98]);
    c.set_max_secure_erase_sectors(0xa1a2_a3a4);
    c.set_max_secure_erase_seg(0xa5a6_a7a8);
    c.set_secure_erase_sector_alignment(0xb1b2_b3b4);
    c.set_zoned_zone_sectors(0xc1c2_c3c4);
    c.set_zoned_max_open_zones(0xc5c6_c7c8);
    c.set_zoned_max_active_zones(0xd1d2_d3d4);
    c.set_zoned_max_append_sectors(0xd5d6_d7d8);
    c.set_zoned_write_granularity(0xe1e2_e3e4);
    c.set_zoned_model(VIRTIO_BLK_Z_HA);
    c.set_zoned_unused2([0xe6, 0xe7, 0xe8]);
    #[rustfmt::skip]
    let expected: [u8; 96] = [
        0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01, // capacity
        0x14, 0x13, 0x12, 0x11, // size_max @8
        0x24, 0x23, 0x22, 0x21, // seg_max @12
        0x32, 0x31, 0x33, 0x34, // geometry @16
        0x44, 0x43, 0x42, 0x41, // blk_size @20
        0x51, 0x52, 0x54, 0x53, 0x58, 0x57, 0x56, 0x55, // topology @24
        0x61, 0x62, 0x64, 0x63, // writeback, unused0, num_queues @32
        0x74, 0x73, 0x72, 0x71, // max_discard_sectors @36
        0x78, 0x77, 0x76, 0x75, // max_discard_seg @40
        0x84, 0x83, 0x82, 0x81, // discard_sector_alignment @44
        0x88, 0x87, 0x86, 0x85, // max_write_zeroes_sectors @48
        0x94, 0x93, 0x92, 0x91, // max_write_zeroes_seg @52
        0x95, 0x96, 0x97, 0x98, // write_zeroes_may_unmap, unused1 @56
        0xa4, 0xa3, 0xa2, 0xa1, // max_secure_erase_sectors @60
        0xa8, 0xa7, 0xa6, 0xa5, // max_secure_erase_seg @64
        0xb4, 0xb3, 0xb2, 0xb1, // secure_erase_sector_alignment @68
        0xc4, 0xc3, 0xc2, 0xc1, // zoned.zone_sectors @72
        0xc8, 0xc7, 0xc6, 0xc5, // zoned.max_open_zones @76
        0xd4, 0xd3, 0xd2, 0xd1, // zoned.max_active_zones @80
        0xd8, 0xd7, 0xd6, 0xd5, // zoned.max_append_sectors @84
        0xe4, 0xe3, 0xe2, 0xe1, // zoned.write_granularity @88
        0x02, 0xe6, 0xe7, 0xe8, // zoned.model, unused2 @92
    ];
    assert_eq!(b, expected);
    assert_eq!(BLK_CONFIG_SIZE, 96);
    assert_eq!(b[BLK_CONFIG_WRITEBACK_OFFSET], 0x61);

    assert!(BlkConfig::new_checked(&b[..95]).is_err());
}

#[test]
fn request_header_is_16_bytes() {
    let bytes = [
        0x0b, 0, 0, 0, 0xaa, 0xbb, 0xcc, 0xdd, 0x00, 0x10, 0, 0, 0, 0, 0, 0x80,
    ];
    let h = BlkReqHeader::new_checked(&bytes[..]).unwrap();
    assert_eq!(h.type_(), VIRTIO_BLK_T_DISCARD);
    assert_eq!(h.reserved(), 0xddcc_bbaa);
    assert_eq!(h.sector(), 0x8000_0000_0000_1000);
    assert_eq!(BLK_REQ_HEADER_SIZE, 16);
    assert!(BlkReqHeader::new_checked(&bytes[..15]).is_err());
}

#[test]
fn discard_segment_is_16_bytes() {
    let mut b = [0u8; 16];
    let mut s = BlkDiscardWriteZeroes::new_checked(&mut b[..]).unwrap();
    s.set_sector(0x0102_0304_0506_0708);
    s.set_num_sectors(0x0a0b_0c0d);
    s.set_flags(VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP);
    assert!(s.unmap());
    assert_eq!(
        b,
        [8, 7, 6, 5, 4, 3, 2, 1, 0x0d, 0x0c, 0x0b, 0x0a, 1, 0, 0, 0]
    );
    assert_eq!(BLK_DISCARD_WRITE_ZEROES_SIZE, 16);
    let s = BlkDiscardWriteZeroes::new_checked(&[0u8; 16][..]).unwrap();
    assert!(!s.unmap());
}

#[test]
fn lifetime_and_za_footer() {
    let l = BlkLifetime::new_checked(&[3u8, 0, 11, 0, 1, 0][..]).unwrap();
    assert_eq!(l.pre_eol_info(), VIRTIO_BLK_PRE_EOL_INFO_URGENT);
    assert_eq!(l.device_lifetime_est_typ_a(), 11);
    assert_eq!(l.device_lifetime_est_typ_b(), 1);
    assert_eq!(BLK_LIFETIME_SIZE, 6);

    let f = BlkZoneAppendFooter::new_checked(&[0x10u8, 0, 0, 0, 0, 0, 0, 0, 4][..]).unwrap();
    assert_eq!(f.append_sector(), 0x10);
    assert_eq!(BlkStatus::from(f.status()), BlkStatus::ZoneUnalignedWp);
    assert_eq!(BLK_ZONE_APPEND_FOOTER_SIZE, 9);
}

#[test]
fn zone_report_layouts() {
    let mut b = [0u8; 64];
    b[0] = 3;
    b[63] = 0xff;
    let r = BlkZoneReport::new_checked(&b[..]).unwrap();
    assert_eq!(r.nr_zones(), 3);
    assert_eq!(r.reserved()[55], 0xff);
    assert_eq!(BLK_ZONE_REPORT_SIZE, 64);

    let mut b = [0u8; 64];
    let mut d = BlkZoneDescriptor::new_checked(&mut b[..]).unwrap();
    d.set_z_cap(0x100);
    d.set_z_start(0x200);
    d.set_z_wp(0x280);
    d.set_z_type(VIRTIO_BLK_ZT_SWR);
    d.set_z_state(VIRTIO_BLK_ZS_IOPEN);
    assert_eq!(&b[0..2], &[0x00, 0x01]);
    assert_eq!(&b[8..10], &[0x00, 0x02]);
    assert_eq!(&b[16..18], &[0x80, 0x02]);
    assert_eq!((b[24], b[25]), (2, 2));
    assert!(b[26..].iter().all(|&x| x == 0));
    assert_eq!(BLK_ZONE_DESCRIPTOR_SIZE, 64);
}

#[test]
fn request_types_round_trip_and_keep_unknowns() {
    let known = [
        0u32, 1, 2, 3, 4, 5, 8, 10, 11, 13, 14, 15, 16, 18, 20, 22, 24, 26,
    ];
    for v in known {
        let t = BlkReqType::from(v);
        assert!(!matches!(t, BlkReqType::Unknown(_)), "{v}");
        assert_eq!(u32::from(t), v);
    }
    for v in [6u32, 7, 9, 12, 17, 19, 27, VIRTIO_BLK_T_BARRIER | 1] {
        assert_eq!(BlkReqType::from(v), BlkReqType::Unknown(v));
        assert_eq!(u32::from(BlkReqType::from(v)), v);
    }
    for v in 0..=255u8 {
        assert_eq!(u8::from(BlkStatus::from(v)), v);
    }
    assert_eq!(BlkStatus::from(7), BlkStatus::Unknown(7));
}

#[test]
fn constants_and_helpers() {
    assert_eq!(VIRTIO_BLK_SECTOR_SIZE, 1 << VIRTIO_BLK_SECTOR_SHIFT);
    assert_eq!(VIRTIO_BLK_ID_BYTES, 20);
    assert_eq!(
        [
            VIRTIO_BLK_F_RO,
            VIRTIO_BLK_F_FLUSH,
            VIRTIO_BLK_F_MQ,
            VIRTIO_BLK_F_ZONED
        ],
        [5, 9, 12, 17]
    );
    assert_eq!(num_request_queues(false, 8), 1);
    assert_eq!(num_request_queues(true, 8), 8);
    assert_eq!(nr_zones(1000, 256), 4);
    assert_eq!(last_zone_sectors(1000, 256), 232);
    assert_eq!(last_zone_sectors(1024, 256), 256);
    assert_eq!((nr_zones(10, 0), last_zone_sectors(0, 8)), (0, 0));
}

#[test]
fn feature_rules() {
    use crate::features::{check_dependencies, negotiate, FeatureSet};
    let legacy_zoned = FeatureSet::from_bits(&[VIRTIO_BLK_F_ZONED]);
    assert!(check_dependencies(&legacy_zoned, BLK_FEATURE_RULES).is_err());
    let zoned = legacy_zoned.with(VIRTIO_F_VERSION_1);
    assert!(check_dependencies(&zoned, BLK_FEATURE_RULES).is_ok());
    // Offering CONFIG_WCE needs FLUSH; accepting it alone is fine.
    let wce = FeatureSet::from_bits(&[VIRTIO_BLK_F_CONFIG_WCE, VIRTIO_F_VERSION_1]);
    assert!(check_dependencies(&wce, BLK_OFFER_RULES).is_err());
    assert!(check_dependencies(&wce.with(VIRTIO_BLK_F_FLUSH), BLK_OFFER_RULES).is_ok());
    assert_eq!(
        negotiate(wce.with(VIRTIO_BLK_F_FLUSH), wce, BLK_FEATURE_RULES),
        wce
    );
    assert_eq!(BLK_SHOULD_ACCEPT_IF_OFFERED, [5]);
}
