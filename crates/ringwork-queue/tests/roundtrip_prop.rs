//! Property test: a driver-side queue and a device-side queue share one
//! memory region; random workloads deliver every buffer exactly once with
//! its bytes intact (VIRTIO 1.4 §2.7 split, §2.8 packed), across queue
//! sizes 1..32768 (non-powers of two for packed), chain lengths, indirect
//! on/off, EVENT_IDX on/off and IN_ORDER, and across index wrap at 65536.

mod common;

use common::{Harness, Params};
use proptest::prelude::*;
use ringwork_queue::test_utils::TestMemory;
use ringwork_queue::{QueueFeatures, RingFormat};

fn params() -> impl Strategy<Value = Params> {
    (
        any::<bool>(),
        0u32..16,
        1u16..=32768,
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        1usize..=8,
        any::<u64>(),
    )
        .prop_map(
            |(packed, pow, any_size, indirect, event_idx, in_order, max_segments, seed)| {
                let format = if packed {
                    RingFormat::Packed
                } else {
                    RingFormat::Split
                };
                // Split sizes are powers of two; packed ones anything.
                let size = if packed {
                    any_size
                } else {
                    1u16 << pow.min(15)
                };
                Params {
                    format,
                    size,
                    features: QueueFeatures {
                        indirect_desc: indirect,
                        event_idx,
                        in_order,
                        ..Default::default()
                    },
                    max_segments,
                    max_outstanding: usize::from(size).min(64),
                    seed,
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn every_buffer_delivered_once_intact(p in params(), steps in 50usize..400) {
        let mem = TestMemory::new(0x1_0000, Harness::memory_size(&p));
        let mut h = Harness::new(&mem, p);
        h.run(steps);
    }
}

/// Runs enough traffic through a tiny queue that the split indices and the
/// packed wrap counters wrap many times (split: past 65536).
fn wrap_run(format: RingFormat, size: u16, in_order: bool, event_idx: bool, indirect: bool) {
    let p = Params {
        format,
        size,
        features: QueueFeatures {
            indirect_desc: indirect,
            event_idx,
            in_order,
            ..Default::default()
        },
        max_segments: 2,
        max_outstanding: usize::from(size).min(8),
        seed: 0x9e37_79b9_7f4a_7c15 ^ u64::from(size),
    };
    let mem = TestMemory::new(0x1_0000, Harness::memory_size(&p));
    let mut h = Harness::new(&mem, p);
    while h.added < 70_000 {
        for _ in 0..4 {
            h.add_one();
        }
        let _ = h.driver.kick_prepare().unwrap();
        h.device_pop(4);
        let n = h.popped.len();
        h.device_complete(n);
        h.driver_reap();
    }
    h.drain();
    assert!(h.delivered >= 70_000);
}

#[test]
fn split_indices_wrap_past_65536() {
    for (in_order, event_idx, indirect) in [(false, true, false), (true, false, true)] {
        wrap_run(RingFormat::Split, 4, in_order, event_idx, indirect);
    }
}

#[test]
fn packed_wrap_counters_flip_many_times() {
    for (size, in_order, event_idx, indirect) in [(3, false, true, true), (5, true, true, false)] {
        wrap_run(RingFormat::Packed, size, in_order, event_idx, indirect);
    }
}
