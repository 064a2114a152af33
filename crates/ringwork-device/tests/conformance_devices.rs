//! Device-type requirements of VIRTIO 1.4 checked through the in-process
//! fake driver that have no test file of their own: the entropy device
//! (§5.4). Block and console requirements are in `blk.rs` and
//! `console.rs`; docs/CONFORMANCE.md maps each MUST to its test. Also
//! how the harness reads back a buffer with an empty segment.

use ringwork_device::harness::Harness;
use ringwork_device::rng::{Rng, MAX_FILL};
use ringwork_queue::RingFormat;

const FORMATS: [RingFormat; 2] = [RingFormat::Split, RingFormat::Packed];

/// VIRTIO 1.4 §5.4.6.2: the device places one or more random bytes into
/// every buffer (it may use less than all of it): buffers of one byte,
/// of several segments, with a readable part (ignored), and larger than
/// the device fills at once each come back with a used length of at
/// least 1, and bytes that differ between buffers.
#[test]
fn entropy_fills_every_buffer_with_random_bytes() {
    for format in FORMATS {
        let mut h = Harness::new(Rng::new(), format).unwrap();
        let shapes: [(&[&[u8]], &[u32]); 5] = [
            (&[], &[1]),
            (&[], &[4096]),
            (&[], &[3, 500, 4096]),
            (&[b"readable bytes are not entropy"], &[64]),
            (&[], &[(MAX_FILL + 4096) as u32]),
        ];
        let mut tokens = Vec::new();
        for (out, inp) in shapes {
            tokens.push(h.submit(0, out, inp).unwrap());
        }
        // Two more 4 KiB buffers to compare.
        let a = h.submit(0, &[], &[4096]).unwrap();
        let b = h.submit(0, &[], &[4096]).unwrap();
        h.run().unwrap();
        let done = h.completed(0).unwrap();
        assert_eq!(
            done.len(),
            shapes.len() + 2,
            "{format:?}: every buffer used"
        );
        let by = |t| &done.iter().find(|(tok, _)| *tok == t).unwrap().1;
        for (&token, (_, inp)) in tokens.iter().zip(shapes) {
            let bytes = by(token);
            let offered: usize = inp.iter().map(|&l| l as usize).sum();
            assert!(
                !bytes.is_empty(),
                "{format:?}: no byte in a buffer of {offered}"
            );
            assert!(bytes.len() <= offered.min(MAX_FILL));
            if bytes.len() >= 64 {
                assert!(bytes.iter().any(|&x| x != 0), "{format:?}: all zeros");
            }
        }
        assert_eq!((by(a).len(), by(b).len()), (4096, 4096));
        assert_ne!(by(a), by(b), "{format:?}: two buffers got the same bytes");
        assert!(h.broken_queues().is_empty());
    }
}

/// An empty writable segment holds nothing, wherever it points: the device
/// accepts one outside guest memory and fills the buffer's other segment,
/// and the harness reads the bytes back without touching the empty one.
#[test]
fn empty_segment_outside_memory_is_skipped() {
    use ringwork_device::harness::MEM_SIZE;
    use ringwork_queue::Segment;
    for format in FORMATS {
        let mut h = Harness::new(Rng::new(), format).unwrap();
        let good = h.put(&[0; 16]);
        let outside = Segment::new(MEM_SIZE as u64 + 4096, 0);
        let t = h.submit_segments(0, &[], &[outside, good]).unwrap();
        h.run().unwrap();
        let done = h
            .completed(0)
            .expect("completed reads only non-empty segments");
        assert_eq!(done.len(), 1, "{format:?}");
        assert_eq!(done[0].0, t);
        assert!(!done[0].1.is_empty() && done[0].1.len() <= 16, "{format:?}");
        assert!(h.broken_queues().is_empty(), "{format:?}");
    }
}
