//! `DescChain::readable_window` / `writable_window` / `prefetch`: the
//! one-translation fast paths device workers take for a one-segment
//! request, checked against what the chain's segments say, for chains
//! short enough to stay inline and long enough to spill, on both rings.

use ringwork_queue::test_utils::TestMemory;
use ringwork_queue::{
    DeviceQueue, DriverQueue, DriverQueueConfig, QueueFeatures, RingFormat, Segment,
};

const BASE: u64 = 0x1_0000;

fn seg(i: u64, len: u32) -> Segment {
    Segment::new(0x8_0000 + i * 0x100, len)
}

/// Offers one chain and pops it on the device side; checks the windows.
fn check(format: RingFormat, readable: &[Segment], writable: &[Segment]) {
    let mem = TestMemory::new(BASE, 1 << 20);
    let f = QueueFeatures::default();
    let mut driver = DriverQueue::<_, u32>::new(&mem, DriverQueueConfig::new(format, 64, f))
        .expect("driver queue");
    let mut device = DeviceQueue::new(format, 64, driver.addresses(), f).expect("device queue");
    driver.add(readable, writable, 7).expect("add");
    let chain = device.pop(&mem).expect("pop").expect("a chain");
    let shape = format!("{format:?} {}r/{}w", readable.len(), writable.len());
    assert_eq!(chain.readable_segments(), readable, "{shape}");
    assert_eq!(chain.writable_segments(), writable, "{shape}");
    for (first, window, name) in [
        (
            readable.first(),
            chain.readable_window(&mem, 16),
            "readable",
        ),
        (
            writable.first(),
            chain.writable_window(&mem, 16),
            "writable",
        ),
    ] {
        match first {
            // The window is the first segment's first 16 bytes: write through
            // it, read back at the segment's address.
            Some(s) => {
                let w = window.unwrap_or_else(|| panic!("{shape}: {name} window"));
                assert_eq!(w.len(), 16, "{shape}");
                w.write_bytes(0, &[0x5a; 16]).unwrap();
                let mut back = [0u8; 16];
                mem.all()
                    .read_bytes((s.addr - BASE) as usize, &mut back)
                    .unwrap();
                assert_eq!(back, [0x5a; 16], "{shape}: {name} window at the segment");
                mem.all().fill((s.addr - BASE) as usize, 16, 0).unwrap();
            }
            None => assert!(window.is_none(), "{shape}: no {name} part, no window"),
        }
    }
    // Longer than the first segment: no window (the reader/writer path).
    assert!(chain.readable_window(&mem, 0x41).is_none(), "{shape}");
    assert!(chain.writable_window(&mem, 0x41).is_none(), "{shape}");
    // Prefetching is a hint: it changes nothing either way.
    chain.prefetch(&mem, 128, false);
    chain.prefetch(&mem, 128, true);
}

#[test]
fn windows_match_the_first_segment_of_each_part() {
    for format in [RingFormat::Split, RingFormat::Packed] {
        let r = |n: u64| (0..n).map(|i| seg(i, 0x40)).collect::<Vec<_>>();
        let w = |n: u64| (0..n).map(|i| seg(100 + i, 0x40)).collect::<Vec<_>>();
        // One segment either way; both parts; inline; spilled past the
        // eight inline segments with the writable part inline, straddling,
        // and entirely in the spill.
        for (nr, nw) in [
            (1, 0),
            (0, 1),
            (1, 1),
            (3, 2),
            (7, 3),
            (8, 1),
            (9, 2),
            (12, 0),
        ] {
            check(format, &r(nr), &w(nw));
        }
    }
}
