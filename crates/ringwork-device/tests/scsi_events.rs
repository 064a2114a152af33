//! The SCSI host device's control and event queues (VIRTIO 1.4
//! §5.6.6.2, §5.6.6.3) through the in-process fake driver: task
//! management functions and their unit attentions, asynchronous
//! notification query/subscribe, malformed control requests, hot-plug
//! through [`ScsiHandle`] from another thread, missed events, short event
//! buffers, and multiqueue.

mod scsi_support;

use scsi_support::*;

const TUR: [u8; 6] = [0; 6];

fn two_luns(a: &Image, b: &Image, format: RingFormat) -> Dev {
    Dev::new(
        open(vec![
            LunSpec::new(0, 0, &a.path),
            LunSpec::new(0, 1, &b.path),
        ]),
        format,
    )
}

#[test]
fn task_management_functions() {
    for format in FORMATS {
        let (a, b) = (Image::zeroed(IMAGE), Image::zeroed(IMAGE));
        let mut d = two_luns(&a, &b, format);
        // Nothing is ever active between process calls: abort and clear
        // complete at once, queries find nothing.
        assert_eq!(d.tmf(VIRTIO_SCSI_T_TMF_ABORT_TASK, l(0, 0), 7), 0);
        assert_eq!(d.tmf(VIRTIO_SCSI_T_TMF_ABORT_TASK_SET, l(0, 0), 0), 0);
        assert_eq!(d.tmf(VIRTIO_SCSI_T_TMF_CLEAR_TASK_SET, l(0, 1), 0), 0);
        assert_eq!(d.tmf(VIRTIO_SCSI_T_TMF_QUERY_TASK, l(0, 0), 7), 0);
        assert_eq!(d.tmf(VIRTIO_SCSI_T_TMF_QUERY_TASK_SET, l(0, 0), 0), 0);
        // No ACA: CLEAR ACA is rejected; so is an unknown function.
        assert_eq!(
            d.tmf(VIRTIO_SCSI_T_TMF_CLEAR_ACA, l(0, 0), 0),
            VIRTIO_SCSI_S_FUNCTION_REJECTED
        );
        assert_eq!(d.tmf(99, l(0, 0), 0), VIRTIO_SCSI_S_FUNCTION_REJECTED);
        // Addressing.
        assert_eq!(
            d.tmf(VIRTIO_SCSI_T_TMF_ABORT_TASK, l(3, 0), 0),
            VIRTIO_SCSI_S_BAD_TARGET
        );
        assert_eq!(
            d.tmf(VIRTIO_SCSI_T_TMF_LOGICAL_UNIT_RESET, l(0, 9), 0),
            VIRTIO_SCSI_S_INCORRECT_LUN
        );
        assert_eq!(
            d.tmf(VIRTIO_SCSI_T_TMF_I_T_NEXUS_RESET, l(1, 0), 0),
            VIRTIO_SCSI_S_BAD_TARGET
        );
        // LOGICAL UNIT RESET: unit attention 29h/03h on that LUN only.
        assert_eq!(d.tmf(VIRTIO_SCSI_T_TMF_LOGICAL_UNIT_RESET, l(0, 1), 0), 0);
        assert!(d.cmd(l(0, 0), &TUR, &[], 0).good());
        // INQUIRY does not report the unit attention.
        assert!(d.cmd(l(0, 1), &inquiry(false, 0, 36), &[], 36).good());
        let r = d.cmd(l(0, 1), &TUR, &[], 0);
        assert_eq!(r.status, CHECK);
        assert_eq!(
            r.sense,
            [0x70, 0, 6, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x29, 3, 0, 0, 0, 0]
        );
        assert!(d.cmd(l(0, 1), &TUR, &[], 0).good());
        // I_T NEXUS RESET (the LUN byte is ignored): 29h/07h everywhere;
        // REQUEST SENSE returns and clears it.
        assert_eq!(d.tmf(VIRTIO_SCSI_T_TMF_I_T_NEXUS_RESET, l(0, 77), 0), 0);
        assert_eq!(d.cmd(l(0, 0), &TUR, &[], 0).key_asc(), (6, 0x29, 7));
        let r = d.cmd(l(0, 1), &[3, 0, 0, 0, 18, 0], &[], 18);
        assert!(r.good());
        assert_eq!((r.data[2], r.data[12], r.data[13]), (6, 0x29, 7));
        assert!(d.cmd(l(0, 1), &TUR, &[], 0).good());
        assert!(d.cmd(l(0, 0), &TUR, &[], 0).good());
    }
}

#[test]
fn async_notification_and_malformed_control() {
    let (a, b) = (Image::zeroed(IMAGE), Image::zeroed(IMAGE));
    let mut d = two_luns(&a, &b, RingFormat::Split);
    let an = |ty: u32, lun: [u8; 8]| {
        let mut r = vec![0u8; 16];
        r[..4].copy_from_slice(&ty.to_le_bytes());
        r[4..12].copy_from_slice(&lun);
        r[12..16].copy_from_slice(&0x7eu32.to_le_bytes());
        r
    };
    // No asynchronous events are supported: event_actual 0, OK.
    assert_eq!(
        d.ctrl(&an(VIRTIO_SCSI_T_AN_QUERY, l(0, 0)), 5),
        [0, 0, 0, 0, 0]
    );
    assert_eq!(
        d.ctrl(&an(VIRTIO_SCSI_T_AN_SUBSCRIBE, l(0, 1)), 5),
        [0, 0, 0, 0, 0]
    );
    assert_eq!(
        d.ctrl(&an(VIRTIO_SCSI_T_AN_QUERY, l(2, 0)), 5),
        [0, 0, 0, 0, VIRTIO_SCSI_S_BAD_TARGET]
    );
    assert_eq!(
        d.ctrl(&an(VIRTIO_SCSI_T_AN_SUBSCRIBE, l(0, 5)), 5),
        [0, 0, 0, 0, VIRTIO_SCSI_S_INCORRECT_LUN]
    );
    // Unknown type, short requests: FAILURE in the first writable byte.
    assert_eq!(
        d.ctrl(&[7, 0, 0, 0, 0, 0, 0, 0], 1),
        [VIRTIO_SCSI_S_FAILURE]
    );
    assert_eq!(
        d.ctrl(&[0, 0, 0, 0, 5, 0, 0, 0], 1),
        [VIRTIO_SCSI_S_FAILURE]
    );
    assert_eq!(d.ctrl(&an(1, l(0, 0))[..12], 5), [VIRTIO_SCSI_S_FAILURE]);
    let t = d.h.submit(0, &[], &[1]).unwrap();
    d.h.run().unwrap();
    assert_eq!(
        d.h.completed(0).unwrap(),
        vec![(t, vec![VIRTIO_SCSI_S_FAILURE])]
    );
    // No room for the response: completed with nothing written.
    assert_eq!(
        d.ctrl(&an(VIRTIO_SCSI_T_AN_QUERY, l(0, 0)), 4),
        Vec::<u8>::new()
    );
    let t = d.h.submit(0, &[&[0u8; 24]], &[]).unwrap();
    d.h.run().unwrap();
    assert_eq!(d.h.completed(0).unwrap(), vec![(t, vec![])]);
    assert!(d.h.broken_queues().is_empty());
    // A control buffer outside guest memory breaks the control queue only.
    let resp = d.h.put(&[0]);
    d.h.submit_segments(0, &[Segment::new(1 << 40, 24)], &[resp]);
    assert!(d.h.run().is_err());
    assert_eq!(d.h.broken_queues(), vec![0]);
}

#[test]
fn hotplug_events_from_another_thread() {
    for format in FORMATS {
        let (a, b) = (Image::zeroed(IMAGE), Image::with(&pattern(3, IMAGE)));
        let mut d = dev1(&a, format);
        d.event_buffers(4, 16);
        assert!(
            d.events().is_empty(),
            "events are held until something happens"
        );
        // The worker's eventfd becomes readable when the handle queues an
        // event from another thread.
        let fds = d.h.worker_fds();
        assert_eq!(fds.len(), 1);
        let h = d.handle.clone();
        let path = b.path.clone();
        std::thread::spawn(move || h.add_lun(LunSpec::new(0, 1, path)).unwrap())
            .join()
            .unwrap();
        assert!(ringwork_device::harness::fd_readable(fds[0]));
        assert_eq!(
            d.events(),
            vec![(
                VIRTIO_SCSI_T_TRANSPORT_RESET,
                [1, 0, 0, 1, 0, 0, 0, 0],
                VIRTIO_SCSI_EVT_RESET_RESCAN
            )]
        );
        // The new LUN answers; the old one reports the LUN inventory
        // change once.
        let r = d.cmd(l(0, 1), &read10(0, 1), &[], 512);
        assert_eq!(r.data, pattern(3, IMAGE)[..512]);
        let r = d.cmd(l(0, 0), &TUR, &[], 0);
        assert_eq!(r.key_asc(), (6, 0x3f, 0x0e));
        assert!(d.cmd(l(0, 0), &TUR, &[], 0).good());
        assert_eq!(d.handle.luns(), vec![(0, 0), (0, 1)]);
        // Removal.
        d.handle.remove_lun(0, 1).unwrap();
        assert_eq!(
            d.events(),
            vec![(
                VIRTIO_SCSI_T_TRANSPORT_RESET,
                [1, 0, 0, 1, 0, 0, 0, 0],
                VIRTIO_SCSI_EVT_RESET_REMOVED
            )]
        );
        assert_eq!(d.cmd(l(0, 1), &TUR, &[], 0).key_asc(), (5, 0x25, 0));
        assert_eq!(d.cmd(l(0, 0), &TUR, &[], 0).key_asc(), (6, 0x3f, 0x0e));
        // A new target.
        d.handle.add_lun(LunSpec::new(5, 0, &b.path)).unwrap();
        let ev = d.events();
        assert_eq!(ev[0].1, [1, 5, 0, 0, 0, 0, 0, 0]);
        assert!(d.cmd(l(5, 0), &TUR, &[], 0).good());
        // LUNs from 256 up use flat space addressing in events.
        d.handle.add_lun(LunSpec::new(5, 300, &b.path)).unwrap();
        assert_eq!(d.events()[0].1, [1, 5, 0x41, 0x2c, 0, 0, 0, 0]);
        // Handle errors.
        assert!(matches!(
            d.handle.add_lun(LunSpec::new(5, 0, &b.path)),
            Err(ScsiError::LunExists { target: 5, lun: 0 })
        ));
        assert!(matches!(
            d.handle.remove_lun(9, 9),
            Err(ScsiError::NoSuchLun { target: 9, lun: 9 })
        ));
        assert!(matches!(
            d.handle.add_lun(LunSpec::new(6, 0, "/nonexistent/x.img")),
            Err(ScsiError::Io { .. })
        ));
        assert!(d.events().is_empty());
    }
}

#[test]
fn events_missed_without_buffers() {
    let (a, b, c) = (
        Image::zeroed(IMAGE),
        Image::zeroed(IMAGE),
        Image::zeroed(IMAGE),
    );
    let mut d = dev1(&a, RingFormat::Split);
    // No eventq buffer: the event is dropped.
    d.handle.add_lun(LunSpec::new(0, 1, &b.path)).unwrap();
    assert!(d.events().is_empty());
    // The next buffer reports NO_EVENT with EVENTS_MISSED.
    d.event_buffers(2, 16);
    assert_eq!(d.events(), vec![(VIRTIO_SCSI_T_EVENTS_MISSED, [0; 8], 0)]);
    // Then events flow normally, without the flag.
    d.handle.remove_lun(0, 1).unwrap();
    assert_eq!(
        d.events(),
        vec![(
            VIRTIO_SCSI_T_TRANSPORT_RESET,
            [1, 0, 0, 1, 0, 0, 0, 0],
            VIRTIO_SCSI_EVT_RESET_REMOVED
        )]
    );
    // Dropped again, then a real event carries the flag.
    d.handle.add_lun(LunSpec::new(0, 1, &b.path)).unwrap();
    assert!(d.events().is_empty());
    d.handle.add_lun(LunSpec::new(0, 2, &c.path)).unwrap();
    d.event_buffers(1, 16);
    assert_eq!(
        d.events(),
        vec![(
            VIRTIO_SCSI_T_TRANSPORT_RESET | VIRTIO_SCSI_T_EVENTS_MISSED,
            [1, 0, 0, 2, 0, 0, 0, 0],
            VIRTIO_SCSI_EVT_RESET_RESCAN
        )]
    );
    // Short buffers are returned at once with a NO_EVENT dummy.
    let t = d.h.submit(1, &[], &[6]).unwrap();
    d.handle.remove_lun(0, 2).unwrap();
    d.event_buffers(1, 16);
    d.h.run().unwrap();
    let done = d.h.completed(1).unwrap();
    assert_eq!(done[0], (t, vec![0; 6]));
    assert_eq!(
        &done[1].1[..4],
        &VIRTIO_SCSI_T_TRANSPORT_RESET.to_le_bytes()
    );
}

#[test]
fn no_hotplug_events_unless_negotiated() {
    let (a, b) = (Image::zeroed(IMAGE), Image::zeroed(IMAGE));
    let scsi = open(vec![LunSpec::new(0, 0, &a.path)]);
    let f = scsi.features() & !(1 << VIRTIO_SCSI_F_HOTPLUG) & !(1 << 34);
    let mut d = Dev::with_features(scsi, f);
    d.event_buffers(2, 16);
    d.handle.add_lun(LunSpec::new(0, 1, &b.path)).unwrap();
    d.handle.remove_lun(0, 1).unwrap();
    assert!(d.events().is_empty());
    // The inventory change is still reported as a unit attention.
    assert_eq!(d.cmd(l(0, 0), &TUR, &[], 0).key_asc(), (6, 0x3f, 0x0e));
}

#[test]
fn reset_forgets_pending_events() {
    let (a, b) = (Image::zeroed(IMAGE), Image::zeroed(IMAGE));
    let mut d = dev1(&a, RingFormat::Split);
    d.handle.add_lun(LunSpec::new(0, 1, &b.path)).unwrap();
    d.h.device().reset();
    // After a reset nothing is negotiated: no events are queued either.
    d.handle.remove_lun(0, 1).unwrap();
    d.event_buffers(1, 16);
    assert!(d.events().is_empty());
}

#[test]
fn multiqueue_and_multiple_targets() {
    let (a, b) = (Image::zeroed(IMAGE), Image::zeroed(2 * IMAGE));
    let scsi = Scsi::open(ScsiOptions {
        luns: vec![LunSpec::new(0, 0, &a.path), LunSpec::new(3, 16383, &b.path)],
        num_queues: 3,
        queue_size: 64,
        max_target: 3,
    })
    .unwrap();
    assert_eq!(scsi.num_queues(), 5);
    assert_eq!(&scsi.config()[..8], &[3, 0, 0, 0, 62, 0, 0, 0]);
    assert_eq!(&scsi.config()[28..36], &[0, 0, 3, 0, 0xff, 0x3f, 0, 0]);
    let mut d = Dev::new(scsi, RingFormat::Packed);
    let data = pattern(6, 4096);
    let r = d.cmd_q(4, l(3, 16383), &write10(4000, 8), &data, 0);
    assert!(r.good());
    let r = d.cmd_q(3, l(3, 16383), &read10(4000, 8), &[], 4096);
    assert!(r.data == data);
    assert_eq!(b.contents()[4000 * 512..4008 * 512], data[..]);
    let r = d.cmd_q(2, l(3, 0), &inquiry(false, 0, 36), &[], 36);
    assert_eq!(r.data[0], 0x7f);
    // Several commands on one queue complete in one process call.
    let tokens: Vec<Token> = (0..16)
        .map(|i| d.submit_cmd(2, l(0, 0), &read10(i, 1), &[], 512))
        .collect();
    d.h.run().unwrap();
    let done = d.h.completed(2).unwrap();
    assert_eq!(done.iter().map(|x| x.0).collect::<Vec<_>>(), tokens);
}

#[test]
fn open_errors() {
    let odd = Image::zeroed(1000);
    assert!(matches!(
        Scsi::open(ScsiOptions {
            luns: vec![LunSpec::new(0, 0, &odd.path)],
            ..ScsiOptions::default()
        }),
        Err(ScsiError::BadSize { size: 1000, .. })
    ));
    let small = Image::zeroed(2048);
    let e = Scsi::open(ScsiOptions {
        luns: vec![LunSpec {
            block_size: 4096,
            ..LunSpec::new(0, 0, &small.path)
        }],
        ..ScsiOptions::default()
    });
    assert!(matches!(e, Err(ScsiError::BadSize { .. })));
    let e = Scsi::open(ScsiOptions {
        luns: vec![LunSpec::new(0, 0, std::env::temp_dir())],
        ..ScsiOptions::default()
    });
    assert!(matches!(
        e,
        Err(ScsiError::NotAFileOrBlockDevice {
            kind: "directory",
            ..
        })
    ));
    // No LUN at all is fine (hot-plug later); every target is bad.
    let mut d = Dev::new(open(vec![]), RingFormat::Split);
    let r = d.cmd(l(0, 0), &inquiry(false, 0, 36), &[], 36);
    assert_eq!(r.response, VIRTIO_SCSI_S_BAD_TARGET);
}
