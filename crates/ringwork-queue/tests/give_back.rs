//! `DeviceQueue::give_back`: chains popped and not used go back to the
//! driver's side of the ring, in both formats, with and without IN_ORDER,
//! across the end of the ring; anything but the last chains popped is
//! refused and changes nothing.

use ringwork_queue::test_utils::TestMemory;
use ringwork_queue::{DeviceQueueError, DriverQueue, QueueFeatures, RingFormat, Segment};

const DATA: u64 = 0x8_0000;

mod common;
use common::pair;

/// A writable buffer of `segs` segments (so `segs` packed descriptors).
fn add(drv: &mut DriverQueue<&TestMemory, u32>, t: u32, segs: usize) {
    let base = DATA + u64::from(t % 32) * 256;
    let s: Vec<Segment> = (0..segs)
        .map(|i| Segment::new(base + i as u64 * 64, 64))
        .collect();
    drv.add(&[], &s, t).unwrap();
}

#[test]
fn given_back_chains_are_popped_again_and_the_position_rewinds() {
    let mem = TestMemory::new(0x1_0000, 2 << 20);
    for format in [RingFormat::Split, RingFormat::Packed] {
        for in_order in [false, true] {
            let f = QueueFeatures {
                in_order,
                event_idx: true,
                ..Default::default()
            };
            let (mut drv, mut dev) = pair(&mem, format, 8, f);
            let mut t = 0u32;
            // Rounds of 1 + 2 + 2 descriptors in a ring of 8: the packed
            // ring wraps many times, and the chains given back (4
            // descriptors) cross its end in some rounds, one of them split
            // over its last and first slot in others.
            for round in 0..25 {
                for segs in [1, 2, 2] {
                    add(&mut drv, t, segs);
                    t += 1;
                }
                let first = dev.pop(&mem).unwrap().expect("first");
                let before = dev.position();
                let in_flight = dev.in_flight();
                let a = dev.pop(&mem).unwrap().expect("second");
                let b = dev.pop(&mem).unwrap().expect("third");
                dev.give_back(&[a.token(), b.token()]).unwrap();
                assert_eq!(dev.position(), before, "{format:?} round {round}");
                assert_eq!(dev.in_flight(), in_flight);
                // The same chains come out again, in the same order.
                let a2 = dev.pop(&mem).unwrap().expect("second again");
                let b2 = dev.pop(&mem).unwrap().expect("third again");
                assert_eq!(a2.token().id(), a.token().id());
                assert_eq!(a2.writable_len(), a.writable_len());
                assert_eq!(b2.token().id(), b.token().id());
                assert_eq!(b2.writable_len(), b.writable_len());
                assert!(dev.pop(&mem).unwrap().is_none());
                for c in [first, a2, b2] {
                    dev.add_used(&mem, c.token(), 0).unwrap();
                }
                for want in t - 3..t {
                    let u = drv.pop_used().unwrap().expect("used");
                    assert_eq!(u.token, want, "{format:?} in_order {in_order}");
                }
                assert!(drv.pop_used().unwrap().is_none());
            }
        }
    }
}

#[test]
fn give_back_refuses_chains_that_are_not_the_last_popped() {
    let mem = TestMemory::new(0x1_0000, 2 << 20);
    for format in [RingFormat::Split, RingFormat::Packed] {
        let (mut drv, mut dev) = pair(&mem, format, 8, QueueFeatures::default());
        for t in 0..3 {
            add(&mut drv, t, 1);
        }
        let c: Vec<_> = (0..3).map(|_| dev.pop(&mem).unwrap().unwrap()).collect();
        let (pos, in_flight) = (dev.position(), dev.in_flight());
        let usage = |r: Result<(), DeviceQueueError>| matches!(r, Err(DeviceQueueError::Usage(_)));
        // Not the last one popped.
        assert!(usage(dev.give_back(&[c[1].token()])), "{format:?}");
        // Not in pop order.
        assert!(usage(dev.give_back(&[c[2].token(), c[1].token()])));
        // A gap.
        assert!(usage(dev.give_back(&[c[0].token(), c[2].token()])));
        assert_eq!(dev.position(), pos, "refusals change nothing");
        assert_eq!(dev.in_flight(), in_flight);
        assert!(!dev.is_broken());
        // A completed chain is no longer in flight.
        dev.add_used(&mem, c[0].token(), 0).unwrap();
        assert!(usage(dev.give_back(&[
            c[0].token(),
            c[1].token(),
            c[2].token()
        ])));
        // The last two can go back, and nothing is left to give.
        dev.give_back(&[c[1].token(), c[2].token()]).unwrap();
        assert_eq!(dev.in_flight(), 0);
        assert!(usage(dev.give_back(&[c[2].token()])));
        dev.give_back(&[]).unwrap();
        // A broken queue takes nothing back.
        let c = dev.pop(&mem).unwrap().unwrap();
        dev.mark_broken();
        assert!(matches!(
            dev.give_back(&[c.token()]),
            Err(DeviceQueueError::Broken)
        ));
    }
}
