//! The driver-side requirements of the block (§5.2.5.1, §5.2.6.1), console
//! (§5.3.6.1) and entropy (§5.4.6.1) devices that the other test files do
//! not check directly, each against a fake device that records what the
//! driver did (docs/CONFORMANCE.md maps every requirement to its test).

mod common;

use common::blk_dev::{driver, BlkDev};
use common::console_dev::{ConsoleDev, PortSpec};
use common::{block, buffer, contents, mmio, pattern, status, violations, with_dev};
use ringwork_driver::blk::{
    BlkDriver, BlkError, BlkOptions, BlkRequest, BlkStatus, DiscardRange, RequestError,
};
use ringwork_driver::console::{ConsoleDriver, ConsoleOptions};
use ringwork_driver::{RingPreference, SetupError};
use ringwork_queue::test_utils::TestMemory;
use ringwork_spec::blk::{
    BLK_CONFIG_WRITEBACK_OFFSET, BLK_DISCARD_WRITE_ZEROES_SIZE, VIRTIO_BLK_F_CONFIG_WCE,
    VIRTIO_BLK_F_DISCARD, VIRTIO_BLK_F_LIFETIME, VIRTIO_BLK_F_SECURE_ERASE,
    VIRTIO_BLK_F_WRITE_ZEROES, VIRTIO_BLK_F_ZONED, VIRTIO_BLK_ID_BYTES, VIRTIO_BLK_T_DISCARD,
    VIRTIO_BLK_T_FLUSH, VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT,
    VIRTIO_BLK_T_WRITE_ZEROES, VIRTIO_BLK_Z_HA, VIRTIO_BLK_Z_HM, VIRTIO_BLK_Z_NONE,
};
use ringwork_spec::features::{FeatureSet, VIRTIO_F_INDIRECT_DESC};
use ringwork_spec::status::{VIRTIO_CONFIG_S_FAILED, VIRTIO_CONFIG_S_FEATURES_OK};

/// Offset of `zoned.model` in the block configuration space.
const ZONED_MODEL: usize = 92;

// ---------------------------------------------------------------------------
// Block: device initialization (§5.2.5.1)
// ---------------------------------------------------------------------------

/// "The driver MUST NOT read `writeback` before setting the FEATURES_OK
/// device status bit." The fake records every configuration read and
/// whether FEATURES_OK was set by then; ZONED is offered too, so the driver
/// does read the configuration before FEATURES_OK (`zoned.model`), which
/// shows the recording tells the two apart.
#[test]
fn blk_writeback_not_read_before_features_ok() {
    let mem = common::memory();
    let b = block(BlkDev::new(&mem, 64).offer(&[VIRTIO_BLK_F_CONFIG_WCE, VIRTIO_BLK_F_ZONED]));
    with_dev(&b, |dev| {
        dev.edit(|c| {
            c.set_writeback(1);
            c.set_zoned_model(VIRTIO_BLK_Z_NONE);
        })
    });
    let mut d = driver(&b, &mem, BlkOptions::default());
    assert!(d.config().writeback, "writeback read (after FEATURES_OK)");
    d.set_writeback(false).unwrap();
    d.refresh_config().unwrap();
    let reads = with_dev(&b, |dev| dev.config_reads.borrow().clone());
    let covers = |&(off, len, _): &(usize, usize, bool), at: usize| off <= at && at < off + len;
    let early: Vec<_> = reads.iter().filter(|r| !r.2).collect();
    assert!(
        early.iter().any(|r| covers(r, ZONED_MODEL)),
        "the model is read before FEATURES_OK: {reads:?}"
    );
    assert!(
        !early.iter().any(|r| covers(r, BLK_CONFIG_WRITEBACK_OFFSET)),
        "writeback read before FEATURES_OK: {early:?}"
    );
    let late = reads
        .iter()
        .filter(|r| covers(r, BLK_CONFIG_WRITEBACK_OFFSET))
        .count();
    assert!(
        late >= 3,
        "writeback read at setup, after the write, on refresh"
    );
    assert_eq!(violations(&b), 0);
}

/// "Drivers MUST NOT negotiate the VIRTIO_BLK_F_ZONED feature if they are
/// incapable of supporting devices with the VIRTIO_BLK_Z_HM, VIRTIO_BLK_Z_HA
/// or VIRTIO_BLK_Z_NONE zoned model": ringwork's driver cannot, and never
/// accepts ZONED (nor SECURE_ERASE or LIFETIME, whose requirements are then
/// vacuous). With the HA or NONE model it may still negotiate DISCARD, and
/// drives the device as a regular one.
#[test]
fn blk_zoned_secure_erase_lifetime_never_negotiated() {
    for model in [VIRTIO_BLK_Z_NONE, VIRTIO_BLK_Z_HA] {
        let mem = common::memory();
        let dev = BlkDev::new(&mem, 64).offer(&[
            VIRTIO_BLK_F_ZONED,
            VIRTIO_BLK_F_SECURE_ERASE,
            VIRTIO_BLK_F_LIFETIME,
            VIRTIO_BLK_F_DISCARD,
        ]);
        let b = block(dev);
        with_dev(&b, |dev| {
            dev.edit(|c| {
                c.set_zoned_model(model);
                c.set_zoned_zone_sectors(16);
                c.set_max_discard_sectors(8);
                c.set_max_discard_seg(1);
                c.set_max_secure_erase_sectors(8);
                c.set_max_secure_erase_seg(1);
            })
        });
        let mut d = driver(&b, &mem, BlkOptions::default());
        let proposed = with_dev(&b, |dev| dev.proposed).expect("FEATURES_OK");
        for f in [proposed, d.features()] {
            for bit in [
                VIRTIO_BLK_F_ZONED,
                VIRTIO_BLK_F_SECURE_ERASE,
                VIRTIO_BLK_F_LIFETIME,
            ] {
                assert!(!f.contains(bit), "bit {bit} accepted (model {model})");
            }
            assert!(f.contains(VIRTIO_BLK_F_DISCARD), "model {model}");
        }
        d.write(0, &[7u8; 4096]).unwrap();
        d.discard(0, 8).unwrap();
        let types: Vec<u32> = with_dev(&b, |dev| dev.log.iter().map(|s| s.req_type).collect());
        assert_eq!(types, vec![VIRTIO_BLK_T_OUT, VIRTIO_BLK_T_DISCARD]);
    }
}

/// "If the VIRTIO_BLK_F_ZONED feature is offered by the device with the
/// VIRTIO_BLK_Z_HM zone model, then the VIRTIO_BLK_F_DISCARD feature MUST
/// NOT be offered by the driver." The driver, which cannot drive such a
/// device, offers neither DISCARD nor ZONED, does not set FEATURES_OK, sets
/// FAILED and says why. (The fake would accept any feature set, so only
/// the driver's own check stops it.)
#[test]
fn blk_host_managed_zoned_device_gets_no_discard() {
    let mem = common::memory();
    let dev = BlkDev::new(&mem, 64).offer(&[VIRTIO_BLK_F_ZONED, VIRTIO_BLK_F_DISCARD]);
    let b = block(dev);
    with_dev(&b, |dev| dev.edit(|c| c.set_zoned_model(VIRTIO_BLK_Z_HM)));
    let e = BlkDriver::<_, _, u32>::new(mmio(&b), &mem, BlkOptions::default()).unwrap_err();
    assert!(
        matches!(
            e,
            BlkError::Setup(SetupError::BadConfig {
                field: "zoned.model",
                value: 1,
                ..
            })
        ),
        "{e:?}"
    );
    let written = FeatureSet::from_words([b.borrow().core().driver_features_word(0), 0, 0, 0]);
    assert!(!written.contains(VIRTIO_BLK_F_DISCARD), "DISCARD offered");
    assert!(!written.contains(VIRTIO_BLK_F_ZONED));
    assert!(written.contains(ringwork_spec::blk::VIRTIO_BLK_F_FLUSH));
    let s = status(&b);
    assert_eq!(s & VIRTIO_CONFIG_S_FEATURES_OK, 0, "status {s:#x}");
    assert_ne!(s & VIRTIO_CONFIG_S_FAILED, 0, "status {s:#x}");
    assert_eq!(with_dev(&b, |dev| dev.proposed), None);

    // The model field means nothing without ZONED offered.
    let dev = BlkDev::new(&mem, 64).offer(&[VIRTIO_BLK_F_DISCARD]);
    let b = block(dev);
    with_dev(&b, |dev| {
        dev.edit(|c| {
            c.set_zoned_model(VIRTIO_BLK_Z_HM);
            c.set_max_discard_sectors(8);
            c.set_max_discard_seg(1);
        })
    });
    let d = driver(&b, &mem, BlkOptions::default());
    assert!(d.features().contains(VIRTIO_BLK_F_DISCARD));
}

// ---------------------------------------------------------------------------
// Block: device operation (§5.2.6.1)
// ---------------------------------------------------------------------------

/// The layout rules of §5.2.6.1, as the device sees the requests, for both
/// ring formats, with and without indirect descriptors, through `submit`
/// and the blocking calls: FLUSH has sector 0 and no data (also when its
/// slot last held a request with another sector); IN/OUT data is a
/// multiple of 512 bytes; DISCARD/WRITE_ZEROES data is a multiple of 16
/// bytes (one struct per range); GET_ID data is 20 bytes; `unmap` is 0 in
/// every discard range.
#[test]
fn blk_requests_are_laid_out_as_required() {
    for ring in [RingPreference::Split, RingPreference::Packed] {
        for withhold in [
            FeatureSet::EMPTY,
            FeatureSet::from_bits(&[VIRTIO_F_INDIRECT_DESC]),
        ] {
            let mem = common::memory();
            let dev =
                BlkDev::new(&mem, 256).offer(&[VIRTIO_BLK_F_DISCARD, VIRTIO_BLK_F_WRITE_ZEROES]);
            let b = block(dev);
            with_dev(&b, |dev| {
                dev.edit(|c| {
                    c.set_max_discard_sectors(16);
                    c.set_max_discard_seg(3);
                    c.set_max_write_zeroes_sectors(16);
                    c.set_max_write_zeroes_seg(3);
                })
            });
            let opts = BlkOptions {
                ring,
                withhold,
                queue_size: 8,
                ..BlkOptions::default()
            };
            let mut d = driver(&b, &mem, opts);
            let (_w, wseg) = buffer(&mem, 1536, &pattern(1536, 1));
            let (_r, rseg) = buffer(&mem, 1024, &[]);
            let (_id, idseg) = buffer(&mem, 20, &[]);
            let r = |sector, sectors| DiscardRange { sector, sectors };
            let three = [r(10, 2), r(20, 3), r(30, 4)];
            // Non-blocking: a write at sector 77 first, so the flush that
            // follows in the same slot must clear the sector.
            let requests = [
                BlkRequest::Write {
                    sector: 77,
                    data: &[wseg],
                },
                BlkRequest::Flush,
                BlkRequest::Read {
                    sector: 5,
                    data: &[rseg],
                },
                BlkRequest::GetId { buf: idseg },
                BlkRequest::Discard { ranges: &three },
                BlkRequest::WriteZeroes {
                    ranges: &three[..2],
                    unmap: true,
                },
            ];
            for (i, req) in requests.into_iter().enumerate() {
                d.submit(0, req, i as u32).unwrap();
                d.kick(0).unwrap();
                let c = d.poll(0).unwrap().expect("completed");
                assert_eq!((c.token, c.status), (i as u32, BlkStatus::Ok));
            }
            // Blocking: the driver's own slot, same rules.
            d.write(99, &[3u8; 2048]).unwrap();
            d.flush().unwrap();
            let mut back = [0u8; 512];
            d.read(99, &mut back).unwrap();
            d.get_id().unwrap();
            d.discard(100, 40).unwrap();
            d.write_zeroes(150, 20, false).unwrap();

            let log = with_dev(&b, |dev| dev.log.clone());
            let what = format!("{ring:?}, withheld {withhold:?}");
            assert_eq!(log.len(), 6 + 4 + 3 + 2, "{what}");
            for s in &log {
                match s.req_type {
                    VIRTIO_BLK_T_FLUSH => {
                        assert_eq!((s.sector, s.out_len, s.in_len), (0, 0, 0), "{what}")
                    }
                    VIRTIO_BLK_T_IN => {
                        assert_eq!(s.out_len, 0);
                        assert!(s.in_len > 0 && s.in_len % 512 == 0, "{what}: {s:?}");
                    }
                    VIRTIO_BLK_T_OUT => {
                        assert_eq!(s.in_len, 0);
                        assert!(s.out_len > 0 && s.out_len % 512 == 0, "{what}: {s:?}");
                    }
                    VIRTIO_BLK_T_GET_ID => {
                        assert_eq!((s.out_len, s.in_len), (0, VIRTIO_BLK_ID_BYTES), "{what}")
                    }
                    VIRTIO_BLK_T_DISCARD | VIRTIO_BLK_T_WRITE_ZEROES => {
                        assert_eq!(s.in_len, 0);
                        assert!(!s.ranges.is_empty());
                        assert_eq!(
                            s.out_len,
                            s.ranges.len() * BLK_DISCARD_WRITE_ZEROES_SIZE,
                            "{what}: {s:?}"
                        );
                        if s.req_type == VIRTIO_BLK_T_DISCARD {
                            assert!(s.ranges.iter().all(|r| r.2 == 0), "unmap set: {s:?}");
                        }
                    }
                    t => panic!("unexpected request type {t}"),
                }
                assert_eq!(s.status, 0, "{what}: {s:?}");
            }
            let flushes = log
                .iter()
                .filter(|s| s.req_type == VIRTIO_BLK_T_FLUSH)
                .count();
            assert_eq!(flushes, 2);
            assert_eq!(violations(&b), 0);
        }
    }
}

/// "VIRTIO_BLK_T_WRITE_ZEROES requests MUST NOT contain more than
/// `max_write_zeroes_seg` struct virtio_blk_discard_write_zeroes segments"
/// (and discard more than `max_discard_seg`), each limit for its own
/// request type.
#[test]
fn blk_range_counts_follow_their_own_limits() {
    let mem = common::memory();
    let dev = BlkDev::new(&mem, 256).offer(&[VIRTIO_BLK_F_DISCARD, VIRTIO_BLK_F_WRITE_ZEROES]);
    let b = block(dev);
    with_dev(&b, |dev| {
        dev.edit(|c| {
            c.set_max_discard_sectors(64);
            c.set_max_discard_seg(1);
            c.set_max_write_zeroes_sectors(64);
            c.set_max_write_zeroes_seg(3);
        })
    });
    let mut d = driver(&b, &mem, BlkOptions::default());
    let r = |sector, sectors| DiscardRange { sector, sectors };
    let four = [r(0, 1), r(10, 1), r(20, 1), r(30, 1)];
    let e = d
        .submit(
            0,
            BlkRequest::WriteZeroes {
                ranges: &four,
                unmap: false,
            },
            1,
        )
        .unwrap_err();
    assert_eq!(e.error, RequestError::BadRangeCount { ranges: 4, max: 3 });
    let e = d
        .submit(0, BlkRequest::Discard { ranges: &four[..2] }, 2)
        .unwrap_err();
    assert_eq!(e.error, RequestError::BadRangeCount { ranges: 2, max: 1 });
    assert!(with_dev(&b, |dev| dev.log.is_empty()), "nothing sent");
    d.submit(
        0,
        BlkRequest::WriteZeroes {
            ranges: &four[..3],
            unmap: false,
        },
        3,
    )
    .unwrap();
    d.submit(0, BlkRequest::Discard { ranges: &four[..1] }, 4)
        .unwrap();
    d.kick(0).unwrap();
    while d.poll(0).unwrap().is_some() {}
    let counts: Vec<usize> = with_dev(&b, |dev| dev.log.iter().map(|s| s.ranges.len()).collect());
    assert_eq!(counts, vec![3, 1]);
}

/// "A driver MUST NOT submit a request which would cause a read or write
/// beyond `capacity`", with the capacity as it is now: after the device
/// shrinks it (configuration change), requests beyond the new end are
/// refused before they reach the device.
#[test]
fn blk_requests_stay_within_a_shrunk_capacity() {
    let mem = common::memory();
    let b = block(BlkDev::new(&mem, 64).offer(&[VIRTIO_BLK_F_WRITE_ZEROES]));
    with_dev(&b, |dev| {
        dev.edit(|c| {
            c.set_max_write_zeroes_sectors(64);
            c.set_max_write_zeroes_seg(1);
        })
    });
    let mut d = driver(&b, &mem, BlkOptions::default());
    let mut buf = [0u8; 1024];
    d.read(40, &mut buf).unwrap();
    with_dev(&b, |dev| dev.set_capacity(32));
    assert!(d.handle_interrupt().unwrap().config_changed);
    assert_eq!(d.config().capacity, 32);
    let sent = with_dev(&b, |dev| dev.log.len());
    assert!(matches!(
        d.read(40, &mut buf),
        Err(BlkError::Request(RequestError::BeyondCapacity { .. }))
    ));
    assert!(matches!(
        d.write(31, &[0u8; 1024]),
        Err(BlkError::Request(RequestError::BeyondCapacity { .. }))
    ));
    assert!(matches!(
        d.write_zeroes(30, 3, false),
        Err(BlkError::Request(RequestError::BeyondCapacity { .. }))
    ));
    let (_r, seg) = buffer(&mem, 512, &[]);
    let e = d
        .submit(
            0,
            BlkRequest::Read {
                sector: 32,
                data: &[seg],
            },
            1,
        )
        .unwrap_err();
    assert!(matches!(e.error, RequestError::BeyondCapacity { .. }));
    assert_eq!(with_dev(&b, |dev| dev.log.len()), sent, "nothing sent");
    d.read(31, &mut buf[..512]).unwrap();
}

/// "After writing a 0 to `writeback`, the driver MUST NOT assume that any
/// volatile writes have been committed to persistent device backend
/// storage": switching to writethrough does not make the driver skip the
/// flush that commits earlier writes.
#[test]
fn blk_writethrough_switch_does_not_skip_flushes() {
    let mem = common::memory();
    let b = block(BlkDev::new(&mem, 64).offer(&[VIRTIO_BLK_F_CONFIG_WCE]));
    with_dev(&b, |dev| dev.edit(|c| c.set_writeback(1)));
    let mut d = driver(&b, &mem, BlkOptions::default());
    assert!(d.config().writeback);
    d.write(0, &[9u8; 512]).unwrap();
    d.set_writeback(false).unwrap();
    assert!(!d.config().writeback);
    assert_eq!(
        with_dev(&b, |dev| dev.config[BLK_CONFIG_WRITEBACK_OFFSET]),
        0
    );
    d.flush().unwrap();
    d.submit(0, BlkRequest::Flush, 1).unwrap();
    d.kick(0).unwrap();
    assert_eq!(d.poll(0).unwrap().map(|c| c.status), Some(BlkStatus::Ok));
    let types: Vec<u32> = with_dev(&b, |dev| dev.log.iter().map(|s| s.req_type).collect());
    assert_eq!(
        types,
        vec![VIRTIO_BLK_T_OUT, VIRTIO_BLK_T_FLUSH, VIRTIO_BLK_T_FLUSH]
    );
}

/// "The driver MUST NOT assume anything about the data returned by read
/// requests after a range of sectors has been discarded": reads after a
/// discard return whatever the device returns (the fake: 0xdd), not the
/// data written before nor zeroes.
#[test]
fn blk_reads_after_discard_return_what_the_device_returns() {
    let mem = common::memory();
    let b = block(BlkDev::new(&mem, 64).offer(&[VIRTIO_BLK_F_DISCARD]));
    with_dev(&b, |dev| {
        dev.edit(|c| {
            c.set_max_discard_sectors(64);
            c.set_max_discard_seg(1);
        })
    });
    let mut d = driver(&b, &mem, BlkOptions::default());
    let data = pattern(8 * 512, 5);
    d.write(8, &data).unwrap();
    let mut back = vec![0u8; data.len()];
    d.read(8, &mut back).unwrap();
    assert_eq!(back, data);
    d.discard(8, 8).unwrap();
    d.read(8, &mut back).unwrap();
    assert!(back.iter().all(|&x| x == 0xdd), "blocking read");
    let (rb, seg) = buffer(&mem, 4096, &[]);
    d.submit(
        0,
        BlkRequest::Read {
            sector: 8,
            data: &[seg],
        },
        1,
    )
    .unwrap();
    d.kick(0).unwrap();
    assert_eq!(d.poll(0).unwrap().map(|c| c.status), Some(BlkStatus::Ok));
    assert!(contents(&rb).iter().all(|&x| x == 0xdd), "submitted read");
}

/// "A driver MUST NOT assume that individual segments in a multi-segment
/// VIRTIO_BLK_T_DISCARD or VIRTIO_BLK_T_WRITE_ZEROES request completed
/// successfully, failed, or were processed by the device at all if the
/// request failed with VIRTIO_BLK_S_IOERR": the fake processes the ranges
/// it can and fails the request; the driver reports the whole request as
/// failed, with no per-range outcome, and a blocking call that needed it
/// fails.
#[test]
fn blk_failed_multi_range_request_is_one_failure() {
    let mem = common::memory();
    let dev = BlkDev::new(&mem, 64).offer(&[VIRTIO_BLK_F_DISCARD, VIRTIO_BLK_F_WRITE_ZEROES]);
    let b = block(dev);
    with_dev(&b, |dev| {
        dev.edit(|c| {
            c.set_max_discard_sectors(8);
            c.set_max_discard_seg(4);
            c.set_max_write_zeroes_sectors(8);
            c.set_max_write_zeroes_seg(4);
        })
    });
    let mut d = driver(&b, &mem, BlkOptions::default());
    // The device shrinks without telling: its second range is now beyond.
    with_dev(&b, |dev| dev.edit(|c| c.set_capacity(16)));
    let r = |sector, sectors| DiscardRange { sector, sectors };
    let ranges = [r(0, 4), r(40, 4)];
    d.submit(0, BlkRequest::Discard { ranges: &ranges }, 1)
        .unwrap();
    d.submit(
        0,
        BlkRequest::WriteZeroes {
            ranges: &ranges,
            unmap: false,
        },
        2,
    )
    .unwrap();
    d.kick(0).unwrap();
    for token in [1, 2] {
        let c = d.poll(0).unwrap().expect("completed");
        assert_eq!((c.token, c.status, c.written), (token, BlkStatus::IoErr, 0));
    }
    // Blocking: 12 sectors from 8 in requests of at most 8 sectors; the
    // second is beyond the device's end: the call fails as a whole.
    assert_eq!(
        d.discard(8, 12),
        Err(BlkError::Status {
            status: BlkStatus::IoErr
        })
    );
    assert_eq!(
        d.write_zeroes(8, 12, false),
        Err(BlkError::Status {
            status: BlkStatus::IoErr
        })
    );
}

// ---------------------------------------------------------------------------
// Console (§5.3.6.1)
// ---------------------------------------------------------------------------

type ConsoleDrv<'b, 'm> = ConsoleDriver<common::Mmio<'b, ConsoleDev<'m>>, &'m TestMemory>;

/// Polls and reads every port until nothing happens.
fn drain(d: &mut ConsoleDrv<'_, '_>) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 64];
    for _ in 0..1000 {
        let ports: Vec<u32> = d.ports().collect();
        let mut n = 0;
        for p in ports {
            let k = d.read(p, &mut buf);
            got.extend_from_slice(&buf[..k]);
            n += k;
        }
        if d.poll().expect("poll").is_none() && n == 0 {
            break;
        }
    }
    got
}

/// "The driver MUST NOT put a device-readable buffer in a receiveq. The
/// driver MUST NOT put a device-writable buffer in a transmitq." Single
/// port and multiport, both ring formats: every buffer the device takes
/// from a receiveq (port or control, including buffers the driver posts
/// again after reading) has no device-readable part; the fake panics on a
/// transmitq (port or control) buffer with a device-writable part.
#[test]
fn console_buffer_directions() {
    for ring in [RingPreference::Split, RingPreference::Packed] {
        for ports in [0u32, 4] {
            let mem = common::memory();
            let mut dev = ConsoleDev::new(&mem, ports);
            dev.input_chunk = 3;
            if ports > 0 {
                dev.auto_ports = (0..ports)
                    .map(|id| PortSpec {
                        id,
                        name: Some("p"),
                        console: id == 0,
                    })
                    .collect();
            }
            let b = block(dev);
            let opts = ConsoleOptions {
                ring,
                rx_buffers: 2,
                ..ConsoleOptions::default()
            };
            let mut d: ConsoleDrv<'_, '_> = ConsoleDriver::new(mmio(&b), &mem, opts).unwrap();
            drain(&mut d);
            let active: Vec<u32> = d.ports().collect();
            assert_eq!(active.len(), ports.max(1) as usize);
            let input = pattern(40, 9);
            for &p in &active {
                with_dev(&b, |dev| dev.push_input(p, &input));
                d.write(p, b"out").unwrap();
            }
            let got = drain(&mut d);
            assert_eq!(got.len(), input.len() * active.len(), "all input read");
            with_dev(&b, |dev| {
                // 40 bytes in chunks of 3, per port, through 2 buffers.
                assert!(
                    dev.rx_buffers_seen >= 14 * active.len(),
                    "{}",
                    dev.rx_buffers_seen
                );
                assert_eq!(dev.rx_readable_seen, 0, "device-readable rx bytes");
                for &p in &active {
                    assert_eq!(dev.output[&p], b"out");
                }
            });
            assert_eq!(violations(&b), 0);
        }
    }
}
