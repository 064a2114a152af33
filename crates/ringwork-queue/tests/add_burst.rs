//! `DriverQueue::add_deferred_burst`: each buffer reaches the device with
//! its segment, direction and token, in both ring formats, with and
//! without IN_ORDER, direct and through indirect tables (as the queue is
//! configured); split-ring additions stay unpublished until the kick check;
//! the generator is not asked for more than fits, and a broken queue hands
//! the first token back.

use ringwork_queue::test_utils::TestMemory;
use ringwork_queue::{
    AddError, DeviceQueue, DriverQueue, DriverQueueConfig, GuestMemory, QueueFeatures, Rejected,
    RingFormat, Segment, Used, UsedError,
};
use ringwork_spec::ring::packed as p;

const BASE: u64 = 0x10_0000;
const DATA: u64 = BASE + 0x10_0000;

fn seg(token: u32) -> Segment {
    Segment::new(DATA + 0x1000 * u64::from(token), 100 + token)
}

fn queue(
    mem: &TestMemory,
    format: RingFormat,
    f: QueueFeatures,
    indirect_single: bool,
) -> DriverQueue<&TestMemory, u32> {
    let mut c = DriverQueueConfig::new(format, 8, f);
    if indirect_single {
        c.indirect_threshold = 1;
    }
    DriverQueue::new(mem, c).unwrap()
}

#[test]
fn burst_adds_what_fits_and_the_device_sees_each_buffer() {
    for format in [RingFormat::Split, RingFormat::Packed] {
        for (in_order, indirect) in [(false, false), (true, false), (false, true), (true, true)] {
            for writable in [false, true] {
                let what = format!("{format} in_order {in_order} indirect {indirect} w {writable}");
                let m = TestMemory::new(BASE, 0x20_0000);
                let f = QueueFeatures {
                    in_order,
                    indirect_desc: indirect,
                    ..QueueFeatures::default()
                };
                let mut d = queue(&m, format, f, indirect);
                let mut dev = DeviceQueue::new(format, 8, d.addresses(), f).unwrap();
                for round in 0..3u32 {
                    // Ten offered, eight fit: the generator is asked eight
                    // times, not nine.
                    let mut asked = 0u32;
                    let (n, refused) = d.add_deferred_burst(writable, || {
                        let t = round * 10 + asked;
                        asked += 1;
                        (asked <= 10).then(|| (seg(t), t))
                    });
                    assert_eq!((n, refused, asked), (8, None, 8), "{what}");
                    assert_eq!(d.num_free(), 0, "{what}");
                    let (n, _) = d.add_deferred_burst(writable, || panic!("asked when full"));
                    assert_eq!(n, 0, "{what}");
                    if format == RingFormat::Split {
                        // Deferred: `avail.idx` is stored by the kick check.
                        assert!(dev.pop(&m).unwrap().is_none(), "{what}");
                    }
                    let _ = d.kick_prepare().unwrap();
                    let mut used = Vec::new();
                    for k in 0..8u32 {
                        let c = dev.pop(&m).unwrap().expect("a buffer per add");
                        let t = round * 10 + k;
                        let (r, w): (&[Segment], &[Segment]) = if writable {
                            (&[], &[seg(t)])
                        } else {
                            (&[seg(t)], &[])
                        };
                        assert_eq!(
                            (c.readable_segments(), c.writable_segments()),
                            (r, w),
                            "{what}"
                        );
                        assert_eq!(c.is_indirect(), indirect, "{what}");
                        used.push((c.token(), if writable { k } else { 0 }));
                    }
                    assert!(dev.pop(&m).unwrap().is_none(), "{what}");
                    dev.add_used_batch(&m, &used).unwrap();
                    for k in 0..8u32 {
                        let u = d.pop_used().unwrap().expect("used");
                        assert_eq!(
                            (u.token, u.len),
                            (round * 10 + k, if writable { k } else { 0 }),
                            "{what}"
                        );
                    }
                    assert_eq!(d.pop_used(), Ok(None::<Used<u32>>), "{what}");
                }
                assert!(!d.is_broken(), "{what}");
            }
        }
    }
}

/// A queue the device broke refuses the first buffer and hands its token
/// back, and the generator is not asked again; a full ring, broken or not,
/// is not asked at all. Both formats, direct and through indirect tables.
#[test]
fn burst_on_a_broken_queue_hands_the_token_back() {
    for format in [RingFormat::Split, RingFormat::Packed] {
        for indirect in [false, true] {
            let what = format!("{format} indirect {indirect}");
            let m = TestMemory::new(BASE, 0x20_0000);
            let f = QueueFeatures {
                indirect_desc: indirect,
                ..QueueFeatures::default()
            };
            let mut d = queue(&m, format, f, indirect);
            for fill in [2u32, 8] {
                d.reset();
                let mut t = 0;
                let (n, _) = d.add_deferred_burst(true, || {
                    t += 1;
                    (t <= fill).then(|| (seg(t), t))
                });
                assert_eq!(n, fill as usize, "{what}");
                if fill == 2 {
                    // Publish (split), so that the used entry below names
                    // an index the device could have used.
                    let _ = d.kick_prepare().unwrap();
                }
                break_queue(&m, &d, format);
                assert_eq!(d.pop_used(), Err(UsedError::BadId { id: 8 }), "{what}");
                assert!(d.is_broken(), "{what}");
                let mut asked = 0;
                let r = d.add_deferred_burst(true, || {
                    asked += 1;
                    Some((seg(9), 9))
                });
                if fill == 8 {
                    assert_eq!((r, asked), ((0, None), 0), "{what}: a full ring");
                } else {
                    let refused = Rejected {
                        error: AddError::Broken,
                        token: 9,
                    };
                    assert_eq!((r, asked), ((0, Some(refused)), 1), "{what}");
                }
            }
        }
    }
}

/// Makes the device return id 8 (beyond the 8-entry queue) as the first
/// used buffer.
fn break_queue(m: &TestMemory, d: &DriverQueue<&TestMemory, u32>, format: RingFormat) {
    let a = d.addresses();
    match format {
        RingFormat::Packed => {
            let desc = m.slice(a.desc, 16).unwrap();
            desc.write_u16(p::DESC_ID_OFFSET, 8).unwrap();
            desc.write_u16(p::DESC_FLAGS_OFFSET, p::used_flags(true))
                .unwrap();
        }
        RingFormat::Split => {
            // used ring: flags, idx, then (id: u32, len: u32) entries.
            let used = m.slice(a.device, 12).unwrap();
            used.write_u32(4, 8).unwrap();
            used.write_u32(8, 0).unwrap();
            used.write_u16(2, 1).unwrap();
        }
    }
}
