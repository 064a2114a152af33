//! The SCSI host driver against a fake device over MMIO (VIRTIO 1.4
//! §5.6): feature negotiation (never T10_PI), the configuration read and
//! never written (§5.6.4.1), the event queue kept populated with buffers
//! of at least `event_info_size` bytes (§5.6.5, §5.6.6.3.1), commands with
//! data in both directions, sense data, hostile `sense_len`, `residual`
//! and used lengths, the per-LUN limit (`cmd_per_lun`), task management
//! and asynchronous notification, events with EVENTS_MISSED.

mod common;

use common::scsi_dev::{ScsiDev, BLOCKS};
use common::{block, buffer, contents, memory, mmio, pattern, status, with_dev};
use ringwork_driver::scsi::{
    CommandError, ScsiCommand, ScsiDriver, ScsiError, ScsiOptions, ScsiResponse,
    SAM_STAT_CHECK_CONDITION,
};
use ringwork_driver::SetupError;
use ringwork_queue::{RingFormat, Segment};
use ringwork_spec::features::{FeatureSet, VIRTIO_F_RING_PACKED};
use ringwork_spec::scsi::*;
use ringwork_spec::status::DeviceStatus;

type Drv<'b, 'm> =
    ScsiDriver<common::Mmio<'b, ScsiDev<'m>>, &'m ringwork_queue::test_utils::TestMemory, u32>;

fn opts() -> ScsiOptions {
    ScsiOptions {
        queues: 2,
        ..ScsiOptions::default()
    }
}

#[test]
fn setup_negotiates_reads_config_and_fills_the_eventq() {
    for packed in [false, true] {
        let mem = memory();
        let mut dev = ScsiDev::new(&mem);
        if !packed {
            dev.features.remove(VIRTIO_F_RING_PACKED);
        }
        dev.event_info_size = 40;
        dev.max_lun = 70000; // a hint beyond the spec's range: clamped
        let b = block(dev);
        let d: Drv = ScsiDriver::new(mmio(&b), &mem, opts()).unwrap();
        let f = d.features();
        assert!(f.contains(VIRTIO_SCSI_F_HOTPLUG) && f.contains(VIRTIO_SCSI_F_CHANGE));
        assert!(f.contains(VIRTIO_SCSI_F_INOUT));
        assert!(
            !f.contains(VIRTIO_SCSI_F_T10_PI),
            "T10_PI is never accepted"
        );
        assert_eq!(d.ring_format() == RingFormat::Packed, packed);
        assert_eq!(d.num_queues(), 2);
        let c = d.config();
        assert_eq!((c.num_queues, c.seg_max, c.cmd_per_lun), (2, 126, 128));
        assert_eq!((c.sense_size, c.cdb_size, c.max_lun), (96, 32, 16383));
        assert_eq!(d.event_buffers(), 8);
        with_dev(&b, |dev| {
            assert!(dev.config_writes.is_empty(), "{:?}", dev.config_writes);
            assert_eq!(dev.event_buffers(), 8);
            assert!(dev
                .event_buffers_seen
                .iter()
                .all(|&(r, w)| r == 0 && w >= 40));
        });
        assert_ne!(status(&b) & DeviceStatus::DRIVER_OK.bits(), 0);
        assert!(d.reset().reset.is_ok());
    }
}

/// §5.6.6.3.1: event buffers are at least `struct virtio_scsi_event`
/// even when `event_info_size` is smaller.
#[test]
fn event_buffers_are_at_least_an_event() {
    let mem = memory();
    let mut dev = ScsiDev::new(&mem);
    dev.event_info_size = 0;
    let b = block(dev);
    let _d: Drv = ScsiDriver::new(mmio(&b), &mem, opts()).unwrap();
    with_dev(&b, |dev| {
        assert!(!dev.event_buffers_seen.is_empty());
        assert!(dev.event_buffers_seen.iter().all(|&(_, w)| w == 16));
    });
}

#[test]
fn bad_config_fails_setup() {
    type Case = (&'static str, fn(&mut ScsiDev));
    let cases: [Case; 4] = [
        ("num_queues", |d| d.num_queues = 0),
        ("seg_max", |d| d.seg_max = 0),
        ("cdb_size", |d| d.cdb_size = 100_000),
        ("sense_size", |d| d.sense_size = 1 << 20),
    ];
    for (field, f) in cases {
        let mem = memory();
        let mut dev = ScsiDev::new(&mem);
        f(&mut dev);
        let b = block(dev);
        let e = Drv::new(mmio(&b), &mem, opts()).unwrap_err();
        assert!(
            matches!(e, ScsiError::Setup(SetupError::BadConfig { field: f, .. }) if f == field),
            "{field}: {e:?}"
        );
        assert_ne!(status(&b) & DeviceStatus::FAILED.bits(), 0);
        with_dev(&b, |dev| assert!(dev.config_writes.is_empty()));
    }
}

#[test]
fn blocking_helpers_round_trip() {
    let mem = memory();
    let b = block(ScsiDev::new(&mem));
    let mut d: Drv = ScsiDriver::new(mmio(&b), &mem, opts()).unwrap();
    let inq = d.inquiry(0, 0).unwrap();
    assert_eq!(inq.len(), 36, "residual trims the data");
    assert_eq!(&inq[8..16], b"RINGWORK");
    let cap = d.read_capacity16(0, 1).unwrap();
    assert_eq!((cap.blocks(), cap.block_size), (BLOCKS, 512));
    assert_eq!(d.report_luns(0).unwrap(), [0, 1]);
    assert_eq!(d.report_luns(1).unwrap(), [300]);
    // Write two blocks from two segments, read them back into one.
    let data = pattern(1024, 7);
    let (b1, s1) = buffer(&mem, 512, &data[..512]);
    let (b2, s2) = buffer(&mem, 512, &data[512..]);
    d.write16(1, 300, 5, 2, &[s1, s2]).unwrap();
    let (rb, rs) = buffer(&mem, 1024, &[]);
    let c = d.read16(1, 300, 5, 2, &[rs]).unwrap();
    assert_eq!(c.residual, 0);
    assert_eq!(contents(&rb), data);
    let _ = (b1, b2);
    with_dev(&b, |dev| {
        assert_eq!(&dev.luns[&(1, 300)][5 * 512..7 * 512], &data[..]);
        // §5.6.6.1: lun[0] = 1, lun[1] = target, single-level LUN; LUN
        // 300 in flat space addressing, small LUNs peripheral.
        let s = dev.seen.iter().find(|s| s.cdb[0] == 0x8a).unwrap();
        assert_eq!(s.lun, [1, 1, 0x41, 0x2c, 0, 0, 0, 0]);
        assert_eq!(dev.seen[1].lun, [1, 0, 0, 1, 0, 0, 0, 0]);
        // §5.6.6.1.2: task_attr, prio and crn zero.
        assert!(dev.seen.iter().all(|s| s.attrs == [0, 0, 0]));
        // The CDB area is cdb_size bytes, zero-padded.
        assert!(dev.seen.iter().all(|s| s.cdb.len() == 32));
        let mut ids: Vec<u64> = dev.seen.iter().map(|s| s.id).collect();
        ids.dedup();
        assert_eq!(ids.len(), dev.seen.len(), "every command has its own id");
    });
    // Beyond the disk: CHECK CONDITION, ILLEGAL REQUEST.
    let e = d.read16(0, 0, BLOCKS, 1, &[rs]).unwrap_err();
    assert!(
        matches!(&e, ScsiError::Failed { response: ScsiResponse::Ok, status: SAM_STAT_CHECK_CONDITION, sense } if sense.len() == 18 && sense[2] == 5),
        "{e:?}"
    );
    // A missing target.
    let e = d.inquiry(9, 0).unwrap_err();
    assert!(matches!(
        e,
        ScsiError::Failed {
            response: ScsiResponse::BadTarget,
            ..
        }
    ));
    assert!(d.reset().reset.is_ok());
}

#[test]
fn sense_data_is_returned() {
    let mem = memory();
    let mut dev = ScsiDev::new(&mem);
    dev.unit_attention = true;
    let b = block(dev);
    let mut d: Drv = ScsiDriver::new(mmio(&b), &mem, opts()).unwrap();
    let c = d.test_unit_ready(0, 0).unwrap();
    assert_eq!(c.response, ScsiResponse::Ok);
    assert_eq!(c.status, SAM_STAT_CHECK_CONDITION);
    assert_eq!(
        (c.sense.len(), c.sense[0], c.sense[2], c.sense[12]),
        (18, 0x70, 6, 0x29)
    );
    assert!(!c.clamped);
    let c = d.test_unit_ready(0, 0).unwrap();
    assert!(c.is_good() && c.sense.is_empty());
}

#[test]
fn non_blocking_commands_on_two_queues() {
    for packed in [false, true] {
        let mem = memory();
        let mut dev = ScsiDev::new(&mem);
        if !packed {
            dev.features.remove(VIRTIO_F_RING_PACKED);
        }
        let b = block(dev);
        let mut d: Drv = ScsiDriver::new(mmio(&b), &mem, opts()).unwrap();
        let bufs: Vec<_> = (0..32u8)
            .map(|i| buffer(&mem, 512, &pattern(512, i)))
            .collect();
        for (i, (_, seg)) in bufs.iter().enumerate() {
            let cdb = write16_cdb(i as u64, 1);
            let segs = [*seg];
            d.submit(
                (i % 2) as u16,
                ScsiCommand::new(0, 1, &cdb).data_out(&segs),
                i as u32,
            )
            .unwrap();
        }
        d.kick(0).unwrap();
        d.kick(1).unwrap();
        let mut done = [false; 32];
        for q in 0..2 {
            while let Some(c) = d.poll(q).unwrap() {
                assert!(c.is_good(), "{c:?}");
                assert!(!done[c.token as usize]);
                done[c.token as usize] = true;
            }
        }
        assert!(done.iter().all(|&x| x));
        with_dev(&b, |dev| {
            for i in 0..32usize {
                assert_eq!(
                    dev.luns[&(0, 1)][i * 512..(i + 1) * 512],
                    pattern(512, i as u8)
                );
            }
            assert!(dev.seen.iter().any(|s| s.queue == 3));
        });
        assert!(d.reset().reset.is_ok());
    }
}

fn write16_cdb(lba: u64, blocks: u32) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = 0x8a;
    c[2..10].copy_from_slice(&lba.to_be_bytes());
    c[10..14].copy_from_slice(&blocks.to_be_bytes());
    c
}

#[test]
fn bidirectional_commands_need_inout() {
    let mem = memory();
    let b = block(ScsiDev::new(&mem));
    let mut d: Drv = ScsiDriver::new(mmio(&b), &mem, opts()).unwrap();
    let (_o, so) = buffer(&mem, 512, &pattern(512, 1));
    let (_i, si) = buffer(&mem, 512, &[]);
    let cdb = write16_cdb(0, 1);
    let (so, si) = ([so], [si]);
    let cmd = ScsiCommand::new(0, 0, &cdb).data_out(&so).data_in(&si);
    d.command(cmd).unwrap();
    with_dev(&b, |dev| {
        let s = dev.seen.last().unwrap();
        assert_eq!((s.data_out, s.data_in), (512, 512));
    });
    drop(d);

    let mem = memory();
    let b = block(ScsiDev::new(&mem));
    let o = ScsiOptions {
        withhold: FeatureSet::from_bits(&[VIRTIO_SCSI_F_INOUT]),
        ..opts()
    };
    let mut d: Drv = ScsiDriver::new(mmio(&b), &mem, o).unwrap();
    assert!(!d.features().contains(VIRTIO_SCSI_F_INOUT));
    let (_o, so) = buffer(&mem, 512, &[]);
    let (_i, si) = buffer(&mem, 512, &[]);
    let (so, si) = ([so], [si]);
    let cmd = ScsiCommand::new(0, 0, &cdb).data_out(&so).data_in(&si);
    let e = d.submit(0, cmd, 5).unwrap_err();
    assert_eq!((e.error, e.token), (CommandError::NoInout, 5));
}

#[test]
fn commands_are_checked_before_submission() {
    let mem = memory();
    let b = block(ScsiDev::new(&mem));
    let mut d: Drv = ScsiDriver::new(mmio(&b), &mem, opts()).unwrap();
    let long = [0u8; 33];
    let empty = [Segment::new(0x100_0000, 0)];
    let cases: Vec<(ScsiCommand, CommandError)> = vec![
        (
            ScsiCommand::new(0, 0, &[]),
            CommandError::BadCdb { len: 0, max: 32 },
        ),
        (
            ScsiCommand::new(0, 0, &long),
            CommandError::BadCdb { len: 33, max: 32 },
        ),
        (
            ScsiCommand::new(0, 16384, &[0; 6]),
            CommandError::BadLun { lun: 16384 },
        ),
        (
            ScsiCommand {
                task_attr: 4,
                ..ScsiCommand::new(0, 0, &[0; 6])
            },
            CommandError::BadTaskAttr(4),
        ),
        (
            ScsiCommand::new(0, 0, &[0; 6]).data_in(&empty),
            CommandError::EmptySegment,
        ),
    ];
    for (cmd, want) in cases {
        assert_eq!(d.submit(0, cmd, 1).unwrap_err().error, want);
    }
    let segs = vec![Segment::new(0x100_0000, 512); 127];
    let e = d.submit(0, ScsiCommand::new(0, 0, &[0x28; 10]).data_in(&segs), 1);
    assert!(matches!(
        e.unwrap_err().error,
        CommandError::TooManySegments { max: 126, .. }
    ));
    assert_eq!(
        d.submit(2, ScsiCommand::new(0, 0, &[0; 6]), 1)
            .unwrap_err()
            .error,
        CommandError::NoSuchQueue {
            queue: 2,
            queues: 2
        }
    );
    with_dev(&b, |dev| assert!(dev.seen.is_empty()));
}

/// `sense_len` beyond `sense_size` and `residual` beyond the data length
/// are clamped, not trusted.
#[test]
fn hostile_sense_len_and_residual_are_clamped() {
    let mem = memory();
    let mut dev = ScsiDev::new(&mem);
    dev.sense_len = Some(u32::MAX);
    dev.residual = Some(u32::MAX);
    dev.unit_attention = true;
    let b = block(dev);
    let mut d: Drv = ScsiDriver::new(mmio(&b), &mem, opts()).unwrap();
    let c = d.test_unit_ready(0, 0).unwrap();
    assert_eq!(c.sense.len(), 96, "clamped to sense_size");
    assert!(c.clamped);
    assert_eq!(c.residual, 0, "no data: residual clamped to 0");
    let (_rb, rs) = buffer(&mem, 1024, &[]);
    let c = d
        .command(ScsiCommand::new(0, 0, &[0x12, 0, 0, 4, 0, 0]).data_in(&[rs]))
        .unwrap();
    assert_eq!(c.residual, 1024);
    // INQUIRY through the helper: residual clamped to the allocation.
    assert!(d.inquiry(0, 0).unwrap().is_empty());
    // A used length covering only part of the sense area bounds sense_len.
    with_dev(&b, |dev| {
        dev.used_len = Some(12 + 5);
        dev.unit_attention = true;
    });
    let c = d.test_unit_ready(0, 0).unwrap();
    assert_eq!(c.sense.len(), 5);
    assert!(c.clamped);
}

/// A used length shorter than the response header breaks the queue; reset
/// hands the token back.
#[test]
fn short_used_length_is_an_error() {
    let mem = memory();
    let mut dev = ScsiDev::new(&mem);
    dev.used_len = Some(4);
    let b = block(dev);
    let mut d: Drv = ScsiDriver::new(mmio(&b), &mem, opts()).unwrap();
    d.submit(0, ScsiCommand::new(0, 0, &[0; 6]), 77).unwrap();
    d.kick(0).unwrap();
    assert_eq!(
        d.poll(0).unwrap_err(),
        ScsiError::ShortResponse { queue: 0, len: 4 }
    );
    assert!(matches!(d.poll(0), Err(ScsiError::Queue { .. })));
    assert!(matches!(
        d.submit(0, ScsiCommand::new(0, 0, &[0; 6]), 78)
            .unwrap_err()
            .error,
        CommandError::Broken { queue: 0 }
    ));
    // Queue 1 is unaffected.
    with_dev(&b, |dev| dev.used_len = None);
    d.submit(1, ScsiCommand::new(0, 0, &[0; 6]), 79).unwrap();
    d.kick(1).unwrap();
    assert_eq!(d.poll(1).unwrap().unwrap().token, 79);
    let det = d.reset();
    assert!(det.reset.is_ok());
    assert_eq!(det.tokens, [77]);
}

/// §5.6.4.1: no more than `cmd_per_lun` (and the queue size) commands in
/// flight per LUN.
#[test]
fn commands_per_lun_are_limited() {
    let mem = memory();
    let mut dev = ScsiDev::new(&mem);
    dev.cmd_per_lun = 2;
    dev.hold = true;
    let b = block(dev);
    let mut d: Drv = ScsiDriver::new(mmio(&b), &mem, opts()).unwrap();
    assert_eq!(d.lun_limit(), 2);
    d.submit(0, ScsiCommand::new(0, 0, &[0; 6]), 1).unwrap();
    d.submit(1, ScsiCommand::new(0, 0, &[0; 6]), 2).unwrap();
    let e = d.submit(0, ScsiCommand::new(0, 0, &[0; 6]), 3).unwrap_err();
    assert_eq!(
        e.error,
        CommandError::LunBusy {
            target: 0,
            lun: 0,
            limit: 2
        }
    );
    // Another LUN is not limited by this one.
    d.submit(0, ScsiCommand::new(0, 1, &[0; 6]), 4).unwrap();
    d.kick(0).unwrap();
    d.kick(1).unwrap();
    with_dev(&b, |dev| {
        assert_eq!(dev.held(), 3);
        dev.release(0xff);
    });
    let mut n = 0;
    for q in 0..2 {
        while d.poll(q).unwrap().is_some() {
            n += 1;
        }
    }
    assert_eq!(n, 3);
    d.submit(0, ScsiCommand::new(0, 0, &[0; 6]), 3).unwrap();

    // A device with cmd_per_lun 0 gets one command per LUN (as Linux).
    let mem = memory();
    let mut dev = ScsiDev::new(&mem);
    dev.cmd_per_lun = 0;
    let b = block(dev);
    let d: Drv = ScsiDriver::new(mmio(&b), &mem, opts()).unwrap();
    assert_eq!(d.lun_limit(), 1);
}

#[test]
fn task_management_aborts_a_command() {
    let mem = memory();
    let mut dev = ScsiDev::new(&mem);
    dev.hold = true;
    let b = block(dev);
    let mut d: Drv = ScsiDriver::new(mmio(&b), &mem, opts()).unwrap();
    let id = d.submit(0, ScsiCommand::new(1, 300, &[0; 6]), 9).unwrap();
    d.kick(0).unwrap();
    assert!(d.poll(0).unwrap().is_none());
    let r = d
        .task_management(1, 300, VIRTIO_SCSI_T_TMF_ABORT_TASK, id)
        .unwrap();
    assert_eq!(r, ScsiResponse::Ok);
    let c = d.poll(0).unwrap().unwrap();
    assert_eq!((c.token, c.response), (9, ScsiResponse::Aborted));
    with_dev(&b, |dev| {
        assert_eq!(
            dev.controls,
            [(
                VIRTIO_SCSI_T_TMF,
                VIRTIO_SCSI_T_TMF_ABORT_TASK,
                [1, 1, 0x41, 0x2c, 0, 0, 0, 0],
                id
            )]
        );
        dev.tmf_response = VIRTIO_SCSI_S_FUNCTION_REJECTED;
    });
    let r = d
        .task_management(0, 0, VIRTIO_SCSI_T_TMF_LOGICAL_UNIT_RESET, 0)
        .unwrap();
    assert_eq!(r, ScsiResponse::FunctionRejected);
    // Asynchronous notification.
    let (r, actual) = d
        .an_query(
            0,
            0,
            VIRTIO_SCSI_EVT_ASYNC_MEDIA_CHANGE | VIRTIO_SCSI_EVT_ASYNC_POWER_MGMT,
        )
        .unwrap();
    assert_eq!(
        (r, actual),
        (ScsiResponse::Ok, VIRTIO_SCSI_EVT_ASYNC_MEDIA_CHANGE)
    );
    let (r, _) = d
        .an_subscribe(0, 0, VIRTIO_SCSI_EVT_ASYNC_MEDIA_CHANGE)
        .unwrap();
    assert_eq!(r, ScsiResponse::Ok);
    with_dev(&b, |dev| {
        let (ty, ev, lun, _) = dev.controls[2];
        assert_eq!(
            (ty, ev, lun),
            (VIRTIO_SCSI_T_AN_QUERY, 20, [1, 0, 0, 0, 0, 0, 0, 0])
        );
        assert_eq!(dev.controls[3].0, VIRTIO_SCSI_T_AN_SUBSCRIBE);
    });
}

/// §5.6.6.1.2: a TARGET_FAILURE response is reported as such and is not
/// one to retry on another path.
#[test]
fn target_failure_is_not_retried_elsewhere() {
    let mem = memory();
    let mut dev = ScsiDev::new(&mem);
    dev.hold = true;
    let b = block(dev);
    let mut d: Drv = ScsiDriver::new(mmio(&b), &mem, opts()).unwrap();
    d.submit(0, ScsiCommand::new(0, 0, &[0; 6]), 1).unwrap();
    d.kick(0).unwrap();
    with_dev(&b, |dev| dev.release(VIRTIO_SCSI_S_TARGET_FAILURE));
    let c = d.poll(0).unwrap().unwrap();
    assert_eq!(c.response, ScsiResponse::TargetFailure);
    assert!(!c.response.retry_elsewhere());
    assert!(ScsiResponse::NexusFailure.retry_elsewhere());
    with_dev(&b, |dev| assert_eq!(dev.seen.len(), 1, "no retry"));
}

/// §5.6.6.3: events reach the driver, each buffer is made available again
/// (§5.6.6.3.1 SHOULD keep the queue populated), and a lost event shows as
/// EVENTS_MISSED, which asks for a rescan.
#[test]
fn events_and_missed_events() {
    let mem = memory();
    let b = block(ScsiDev::new(&mem));
    let o = ScsiOptions {
        event_buffers: 2,
        ..opts()
    };
    let mut d: Drv = ScsiDriver::new(mmio(&b), &mem, o).unwrap();
    assert!(d.poll_event().unwrap().is_none());
    with_dev(&b, |dev| {
        assert!(dev.push_event(
            VIRTIO_SCSI_T_TRANSPORT_RESET,
            [1, 2, 0, 0, 0, 0, 0, 0],
            VIRTIO_SCSI_EVT_RESET_RESCAN
        ));
    });
    let e = d.poll_event().unwrap().unwrap();
    assert_eq!(e.event, VIRTIO_SCSI_T_TRANSPORT_RESET);
    assert_eq!(e.lun, ScsiLun::Lun { target: 2, lun: 0 });
    assert!(!e.missed);
    assert!(
        e.needs_rescan(),
        "LUN 0 rescan: the whole target may be new"
    );
    with_dev(&b, |dev| assert_eq!(dev.event_buffers(), 2, "re-posted"));
    // Fill both buffers, lose a third event.
    with_dev(&b, |dev| {
        let lun = [1, 0, 0, 3, 0, 0, 0, 0];
        assert!(dev.push_event(VIRTIO_SCSI_T_PARAM_CHANGE, lun, 0x092a));
        assert!(dev.push_event(
            VIRTIO_SCSI_T_TRANSPORT_RESET,
            lun,
            VIRTIO_SCSI_EVT_RESET_REMOVED
        ));
        assert!(!dev.push_event(
            VIRTIO_SCSI_T_TRANSPORT_RESET,
            lun,
            VIRTIO_SCSI_EVT_RESET_HARD
        ));
    });
    let e = d.poll_event().unwrap().unwrap();
    assert_eq!(
        (e.event, e.reason, e.missed),
        (VIRTIO_SCSI_T_PARAM_CHANGE, 0x092a, false)
    );
    assert!(!e.needs_rescan());
    let e = d.poll_event().unwrap().unwrap();
    assert!(!e.needs_rescan(), "LUN 3 removed: not the whole target");
    assert!(d.poll_event().unwrap().is_none());
    with_dev(&b, |dev| {
        assert!(dev.push_event(VIRTIO_SCSI_T_NO_EVENT, [0; 8], 0));
    });
    let e = d.poll_event().unwrap().unwrap();
    assert!(e.missed && e.needs_rescan());
    assert_eq!(e.event, VIRTIO_SCSI_T_NO_EVENT);
    assert_eq!(d.event_buffers(), 2);
}

#[test]
fn short_event_is_an_error_and_the_buffer_is_reposted() {
    let mem = memory();
    let mut dev = ScsiDev::new(&mem);
    dev.event_used_len = Some(3);
    let b = block(dev);
    let mut d: Drv = ScsiDriver::new(mmio(&b), &mem, opts()).unwrap();
    with_dev(&b, |dev| {
        assert!(dev.push_event(VIRTIO_SCSI_T_TRANSPORT_RESET, [1, 0, 0, 0, 0, 0, 0, 0], 0))
    });
    assert_eq!(
        d.poll_event().unwrap_err(),
        ScsiError::ShortEvent { len: 3 }
    );
    assert_eq!(d.event_buffers(), 8);
    with_dev(&b, |dev| {
        assert_eq!(dev.event_buffers(), 8);
        dev.event_used_len = None;
        assert!(dev.push_event(VIRTIO_SCSI_T_TRANSPORT_RESET, [1, 0, 0, 0, 0, 0, 0, 0], 0));
    });
    assert!(d.poll_event().unwrap().is_some());
}

/// The blocking command keeps callers' completions for `poll`.
#[test]
fn blocking_commands_keep_callers_completions() {
    let mem = memory();
    let b = block(ScsiDev::new(&mem));
    let mut d: Drv = ScsiDriver::new(mmio(&b), &mem, opts()).unwrap();
    d.submit(0, ScsiCommand::new(0, 0, &[0; 6]), 5).unwrap();
    // Not kicked: the blocking command's kick sends both.
    let c = d.test_unit_ready(0, 1).unwrap();
    assert!(c.is_good());
    assert_eq!(d.in_flight(0), 1);
    assert_eq!(d.poll(0).unwrap().unwrap().token, 5);
    assert_eq!(d.in_flight(0), 0);
}
