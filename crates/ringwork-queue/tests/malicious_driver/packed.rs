//! Hostile driver, packed ring (VIRTIO 1.4 §2.8).

use super::*;
use ringwork_queue::{ChainError, Segment};
use ringwork_spec::ring::VIRTQ_DESC_F_INDIRECT;

const INDIRECT: u16 = VIRTQ_DESC_F_INDIRECT;

fn rig(size: u16) -> Rig {
    Rig::new(RingFormat::Packed, size, features(false, false))
}

fn rig_indirect(size: u16) -> Rig {
    Rig::new(RingFormat::Packed, size, features(true, false))
}

fn chain_err(e: ChainError) -> DeviceQueueError {
    DeviceQueueError::Chain(e)
}

// ----- chains in the ring -----

/// VIRTIO 1.4 §2.8.17 driver normative ("MUST NOT create a descriptor list
/// longer than the Queue Size"): a list whose every descriptor has NEXT,
/// wrapping around the whole ring, is cut at the queue size.
#[test]
fn packed_chain_longer_than_queue_size() {
    let mut r = rig(4);
    for i in 0..4 {
        r.avail(DATA + 16 * i, 16, 1, NEXT);
    }
    r.reject(chain_err(ChainError::TooLong { limit: 4 }));
}

/// VIRTIO 1.4 §2.8.17 driver normative ("MUST NOT make the first descriptor
/// in the list available before all subsequent descriptors comprising the
/// list are made available") and §2.8.15 device normative (a descriptor is
/// used only once its AVAIL bit changed): a list continuing into a
/// never-written descriptor, or into one marked used, is refused.
#[test]
fn packed_chain_continues_into_unavailable_descriptor() {
    let mut r = rig(8);
    r.avail(DATA, 16, 1, NEXT); // descriptor 1 is still all zeroes
    r.reject(chain_err(ChainError::NotAvailable { index: 1 }));
    // After the recovery request, the list starts at offset 2; offset 3
    // looks used (AVAIL = USED = 1), not available.
    r.avail(DATA, 16, 1, NEXT);
    assert_eq!(r.pos, 3);
    r.packed_desc_in(DESC, 3, DATA, 16, 1, p::used_flags(true));
    r.reject(chain_err(ChainError::NotAvailable { index: 3 }));
}

/// VIRTIO 1.4 §2.8.1 (wrap counters): a list crossing the end of the ring
/// into a descriptor still carrying the previous lap's flags is refused.
#[test]
fn packed_chain_wrapping_into_previous_lap_descriptor() {
    let mut r = rig(4);
    for i in 0..3 {
        r.avail(DATA, 8, i, READ);
        let c = r.pop_ok();
        r.q.add_used(&r.mem, c.token(), 0).unwrap();
    }
    // Offset 3 (wrap 1) continues into offset 0, which holds the used
    // descriptor of the first lap (AVAIL = USED = 1), not an available one
    // for wrap 0.
    r.avail(DATA, 8, 9, NEXT);
    r.reject(chain_err(ChainError::NotAvailable { index: 0 }));
}

/// VIRTIO 1.4 §2.8.1 (wrap counters) and §2.8.6 (chaining): a list crossing
/// the end of the ring with correct flags on both laps is accepted.
#[test]
fn packed_chain_wrapping_across_ring_end_accepted() {
    let mut r = rig(4);
    for i in 0..3 {
        r.avail(DATA, 8, i, READ);
        let c = r.pop_ok();
        r.q.add_used(&r.mem, c.token(), 0).unwrap();
    }
    r.avail(DATA, 8, 9, NEXT);
    r.avail(DATA + 0x100, 8, 9, WRITE);
    let c = r.pop_ok();
    assert_eq!(c.id(), 9);
    assert_eq!(
        c.segments(),
        &[Segment::new(DATA, 8), Segment::new(DATA + 0x100, 8)]
    );
    r.q.add_used(&r.mem, c.token(), 8).unwrap();
    // The used descriptor lands at offset 3 with the first lap's counter.
    let d = r.at(DESC + 48);
    assert_eq!(
        d.read_u16(p::DESC_FLAGS_OFFSET),
        Ok(p::used_flags(true) | WRITE)
    );
    assert!(r.pop().unwrap().is_none());
}

// ----- buffer addresses and lengths -----

/// VIRTIO 1.4 §2.8.4 (Element Address is a physical address): a buffer
/// (partly) outside shared memory is refused.
#[test]
fn packed_buffer_outside_memory() {
    let mut r = rig(8);
    for (addr, len) in [(END - 8, 16u32), (END, 1), (BASE - 4, 8), (0, 1)] {
        r.avail(DATA, 8, 0, NEXT);
        r.avail(addr, len, 0, WRITE);
        r.reject(chain_err(ChainError::OutOfMemory { addr, len }));
    }
    // A one-descriptor chain takes a shorter path through the pop: the same
    // check.
    for (addr, len) in [(END - 8, 16u32), (END, 1), (BASE - 4, 8), (0, 1)] {
        r.avail(addr, len, 0, WRITE);
        r.reject(chain_err(ChainError::OutOfMemory { addr, len }));
    }
}

/// VIRTIO 1.4 §2.8.4: an address + length overflowing u64 (and wrapping to
/// an address inside memory) is refused, not wrapped.
#[test]
fn packed_buffer_addr_plus_len_overflows_u64() {
    let mut r = rig(8);
    let (addr, len) = (u64::MAX - 0xff, 0x1_0200u32);
    assert_eq!(addr.wrapping_add(u64::from(len)), BASE + 0x100);
    r.avail(addr, len, 0, READ);
    r.reject(chain_err(ChainError::OutOfMemory { addr, len }));
}

/// VIRTIO 1.4 §2.7.5.2 / §2.8 (a buffer is at most 2^32 bytes; the used
/// length is 32 bits): 256 elements of 16 MiB add up to 2^32 and are
/// refused.
#[test]
fn packed_total_length_overflows_u32() {
    const BIG: u32 = 1 << 24;
    let mem = BIG as usize + 0x10_0000;
    let mut r = Rig::with_layout(
        RingFormat::Packed,
        256,
        features(false, false),
        mem,
        addrs(),
    );
    for i in 0..256 {
        r.avail(END, BIG, 3, if i == 255 { WRITE } else { WRITE | NEXT });
    }
    r.reject(chain_err(ChainError::LengthOverflow));
}

/// VIRTIO 1.4 §2.8.17 driver normative ("MUST place any device-writable
/// descriptor elements after any device-readable descriptor elements").
#[test]
fn packed_readable_after_writable() {
    let mut r = rig(8);
    r.avail(DATA, 8, 2, WRITE | NEXT);
    r.avail(DATA + 8, 8, 2, READ);
    r.reject(chain_err(ChainError::ReadableAfterWritable));
}

/// VIRTIO 1.4 §2.8.18 device normative / §2.7.4.1 (no assumptions about the
/// arrangement of elements): zero-length elements are accepted and never
/// dereferenced.
#[test]
fn packed_zero_length_descriptors_accepted() {
    let mut r = rig(8);
    r.at(DATA).write_bytes(0, b"abcd").unwrap();
    r.avail(0, 0, 5, READ | NEXT);
    r.avail(DATA, 4, 5, READ | NEXT);
    r.avail(u64::MAX, 0, 5, WRITE | NEXT);
    r.avail(DATA + 0x100, 4, 5, WRITE);
    let c = r.pop_ok();
    assert_eq!(c.id(), 5);
    assert_eq!((c.readable_len(), c.writable_len()), (4, 4));
    let mut buf = [0u8; 8];
    assert_eq!(c.reader(&r.mem).read(&mut buf), Ok(4));
    assert_eq!(&buf[..4], b"abcd");
    let mut w = c.writer(&r.mem);
    assert_eq!(w.write(b"wxyz-more"), Ok(4));
    r.q.add_used(&r.mem, c.token(), 4).unwrap();
    r.avail(END + 0x1000, 0, 6, READ);
    let c = r.pop_ok();
    assert_eq!((c.id(), c.readable_len(), c.writable_len()), (6, 0, 0));
    assert!(!r.q.is_broken());
}

// ----- indirect descriptors -----

/// VIRTIO 1.4 §2.8.19 driver normative ("MUST NOT set the
/// VIRTQ_DESC_F_INDIRECT flag unless the VIRTIO_F_INDIRECT_DESC feature was
/// negotiated").
#[test]
fn packed_indirect_without_feature() {
    let mut r = rig(8);
    r.packed_desc_in(ITABLE, 0, DATA, 8, 0, READ);
    r.avail(ITABLE, 16, 0, INDIRECT);
    r.reject(chain_err(ChainError::IndirectNotNegotiated));
}

/// VIRTIO 1.4 §2.8.19 driver normative (no indirect descriptor "in a
/// scatter-gather list linked by VIRTQ_DESC_F_NEXT"): an indirect head with
/// NEXT set is refused.
#[test]
fn packed_indirect_with_next() {
    let mut r = rig_indirect(8);
    r.packed_desc_in(ITABLE, 0, DATA, 8, 0, READ);
    r.avail(ITABLE, 16, 0, INDIRECT | NEXT);
    r.avail(DATA, 8, 0, WRITE);
    r.reject(chain_err(ChainError::IndirectChained));
}

/// VIRTIO 1.4 §2.8.19 driver normative (no indirect descriptor in a list
/// linked by NEXT): an indirect descriptor in the middle of a list is
/// refused.
#[test]
fn packed_indirect_in_middle_of_chain() {
    let mut r = rig_indirect(8);
    r.packed_desc_in(ITABLE, 0, DATA, 8, 0, WRITE);
    r.avail(DATA, 8, 4, READ | NEXT);
    r.avail(ITABLE, 16, 4, INDIRECT | NEXT);
    r.avail(DATA, 8, 4, WRITE);
    r.reject(chain_err(ChainError::IndirectChained));
    // ... and at the end of a list too.
    r.avail(DATA, 8, 4, READ | NEXT);
    r.avail(ITABLE, 16, 4, INDIRECT);
    r.reject(chain_err(ChainError::IndirectChained));
}

/// VIRTIO 1.4 §2.8.7 (the table is `desc[len / sizeof(struct
/// pvirtq_desc)]`): a zero-length table is refused.
#[test]
fn packed_indirect_table_len_zero() {
    let mut r = rig_indirect(8);
    r.avail(ITABLE, 0, 0, INDIRECT);
    r.reject(chain_err(ChainError::IndirectBadLength { len: 0 }));
}

/// VIRTIO 1.4 §2.8.7: a table length that is not a multiple of 16 is
/// refused.
#[test]
fn packed_indirect_table_len_not_multiple_of_16() {
    let mut r = rig_indirect(8);
    for len in [8u32, 24, 33] {
        r.avail(ITABLE, len, 0, INDIRECT);
        r.reject(chain_err(ChainError::IndirectBadLength { len }));
    }
}

/// VIRTIO 1.4 §2.8.5 / §2.8.18 device normative ("MAY limit the number of
/// buffers it will allow in a list"): a table above `set_max_indirect` is
/// refused, one at the limit accepted.
#[test]
fn packed_indirect_table_larger_than_limit() {
    let mut r = rig_indirect(8);
    r.q.set_max_indirect(4);
    for i in 0..5 {
        r.packed_desc_in(ITABLE, i, DATA, 8, 0, READ);
    }
    r.avail(ITABLE, 64, 0, INDIRECT);
    assert_eq!(r.pop_ok().readable_len(), 32);
    r.avail(ITABLE, 80, 0, INDIRECT);
    r.reject(chain_err(ChainError::IndirectTooLarge {
        entries: 5,
        limit: 4,
    }));
}

/// VIRTIO 1.4 §2.8.7: an indirect table (partly) outside shared memory is
/// refused.
#[test]
fn packed_indirect_table_outside_memory() {
    let mut r = rig_indirect(8);
    for (addr, len) in [(END - 16, 32u32), (END + 0x1000, 16), (u64::MAX - 15, 32)] {
        r.avail(addr, len, 0, INDIRECT);
        r.reject(chain_err(ChainError::OutOfMemory { addr, len }));
    }
}

/// VIRTIO 1.4 §2.8.17 (writable after readable) applies inside an indirect
/// table too.
#[test]
fn packed_readable_after_writable_inside_indirect_table() {
    let mut r = rig_indirect(8);
    r.packed_desc_in(ITABLE, 0, DATA, 8, 0, WRITE);
    r.packed_desc_in(ITABLE, 1, DATA, 8, 0, READ);
    r.avail(ITABLE, 32, 0, INDIRECT);
    r.reject(chain_err(ChainError::ReadableAfterWritable));
}

/// VIRTIO 1.4 §2.8.7 ("VIRTQ_DESC_F_WRITE is the only valid flag for
/// descriptors in the indirect table. Others are reserved and are ignored by
/// the device. Buffer ID is also reserved"): NEXT, INDIRECT, AVAIL, USED and
/// the id inside a table do not change how it is read (there is no nesting
/// in packed tables).
#[test]
fn packed_reserved_flags_inside_indirect_table_ignored() {
    let mut r = rig_indirect(8);
    let junk = NEXT | INDIRECT | p::VIRTQ_DESC_F_AVAIL | p::VIRTQ_DESC_F_USED;
    r.packed_desc_in(ITABLE, 0, DATA, 8, 0xbeef, junk);
    r.packed_desc_in(ITABLE, 1, DATA + 0x100, 16, 0xf00d, junk | WRITE);
    r.avail(ITABLE, 32, 3, INDIRECT);
    let c = r.pop_ok();
    assert_eq!(c.id(), 3);
    assert!(c.is_indirect());
    assert_eq!(c.readable_segments(), &[Segment::new(DATA, 8)]);
    assert_eq!(c.writable_segments(), &[Segment::new(DATA + 0x100, 16)]);
    assert!(!r.q.is_broken());
}

/// VIRTIO 1.4 §2.8.7 ("In descriptors with VIRTQ_DESC_F_INDIRECT set
/// VIRTQ_DESC_F_WRITE is reserved and is ignored by the device").
#[test]
fn packed_write_flag_on_indirect_descriptor_ignored() {
    let mut r = rig_indirect(8);
    r.packed_desc_in(ITABLE, 0, DATA, 8, 0, READ);
    r.packed_desc_in(ITABLE, 1, DATA + 0x100, 12, 0, WRITE);
    r.avail(ITABLE, 32, 2, INDIRECT | WRITE);
    let c = r.pop_ok();
    assert_eq!(c.readable_segments(), &[Segment::new(DATA, 8)]);
    assert_eq!(c.writable_segments(), &[Segment::new(DATA + 0x100, 12)]);
    r.q.add_used(&r.mem, c.token(), 12).unwrap();
    assert!(!r.q.is_broken());
}

// ----- ring areas -----

/// VIRTIO 1.4 §2.8 (each part of the queue is in guest memory): a
/// descriptor ring reaching past memory is refused.
#[test]
fn packed_descriptor_ring_outside_memory() {
    let desc = END - 32; // 4 entries need 64 bytes
    let a = QueueAddresses { desc, ..addrs() };
    let mut r = Rig::with_layout(RingFormat::Packed, 4, features(false, false), MEM_SIZE, a);
    let err = DeviceQueueError::RingOutOfMemory {
        area: RingArea::Descriptors,
        addr: desc,
        len: 64,
    };
    r.expect_pop_err(err);
    r.q.reset();
    assert!(!r.q.is_broken());
    assert_eq!(r.pop().unwrap_err(), err, "still refused after reset");
}

/// VIRTIO 1.4 §2.8 (each part of the queue is in guest memory): a driver
/// event suppression area outside memory is refused.
#[test]
fn packed_driver_area_outside_memory() {
    let a = QueueAddresses {
        driver: END,
        ..addrs()
    };
    let mut r = Rig::with_layout(RingFormat::Packed, 8, features(false, false), MEM_SIZE, a);
    r.avail(DATA, 8, 0, READ);
    let c = r.pop_ok();
    r.q.add_used(&r.mem, c.token(), 0).unwrap();
    let err = DeviceQueueError::RingOutOfMemory {
        area: RingArea::Driver,
        addr: END,
        len: 4,
    };
    assert_eq!(r.q.needs_notification(&r.mem), Err(err));
    r.assert_broken();
}

/// VIRTIO 1.4 §2.8 (each part of the queue is in guest memory): a device
/// event suppression area outside memory is refused by pop (EVENT_IDX
/// writes the event offset there) and by notification control.
#[test]
fn packed_device_area_outside_memory() {
    let a = QueueAddresses {
        device: END + 4,
        ..addrs()
    };
    let err = DeviceQueueError::RingOutOfMemory {
        area: RingArea::Device,
        addr: END + 4,
        len: 4,
    };
    // With EVENT_IDX, a pop that finds the ring empty writes the event offset.
    let mut r = Rig::with_layout(RingFormat::Packed, 8, features(false, true), MEM_SIZE, a);
    r.expect_pop_err(err);
    let mut r = Rig::with_layout(RingFormat::Packed, 8, features(false, false), MEM_SIZE, a);
    assert_eq!(r.q.disable_notification(&r.mem), Err(err));
    r.assert_broken();
}

// ----- time of check / time of use -----

/// Project rule and VIRTIO 1.4 §2.8.16 driver normative ("MUST NOT change a
/// descriptor after changing the VIRTQ_DESC_F_AVAIL bit"): a driver that
/// does so anyway after pop cannot change the popped chain (a private copy).
#[test]
fn packed_rewrite_after_pop_does_not_change_chain() {
    let mut r = rig_indirect(8);
    r.at(DATA).write_bytes(0, b"request!").unwrap();
    r.avail(DATA, 8, 1, READ | NEXT);
    r.avail(DATA + 0x100, 16, 1, WRITE);
    r.packed_desc_in(ITABLE, 0, DATA, 4, 0, READ);
    r.packed_desc_in(ITABLE, 1, DATA + 0x200, 4, 0, WRITE);
    r.avail(ITABLE, 32, 2, INDIRECT);
    let direct = r.pop_ok();
    let indirect = r.pop_ok();
    let snapshot = |c: &DescChain| {
        (
            c.id(),
            c.segments().to_vec(),
            c.readable_len(),
            c.writable_len(),
        )
    };
    let (before_d, before_i) = (snapshot(&direct), snapshot(&indirect));
    for i in 0..3 {
        let f = WRITE | NEXT | p::avail_flags(true);
        r.packed_desc_in(DESC, i, END - 4, 0xffff, 0x77, f);
        r.packed_desc_in(ITABLE, i, u64::MAX, 1, 0x77, INDIRECT | READ);
    }
    assert_eq!(snapshot(&direct), before_d);
    assert_eq!(snapshot(&indirect), before_i);
    assert_eq!((direct.id(), indirect.id()), (1, 2));
    let mut buf = [0u8; 8];
    assert_eq!(direct.reader(&r.mem).read(&mut buf), Ok(8));
    assert_eq!(&buf, b"request!");
    let mut w = direct.writer(&r.mem);
    assert_eq!(w.write(&[0x55; 32]), Ok(16));
    r.q.add_used(&r.mem, direct.token(), 16).unwrap();
    r.q.add_used(&r.mem, indirect.token(), 4).unwrap();
    let ring = r.at(DESC);
    assert_eq!(ring.read_u16(p::DESC_ID_OFFSET), Ok(1));
    assert_eq!(ring.read_u16(2 * 16 + p::DESC_ID_OFFSET), Ok(2));
    assert!(!r.q.is_broken());
}

/// VIRTIO 1.4 §2.8.10.1 ("Queue Size corresponds to the maximum number of
/// descriptors in the virtqueue") and §2.8.16 driver normative (a driver
/// changes a descriptor only after seeing it used): with every descriptor
/// popped and none used, a driver re-marking offset 0 available for the next
/// lap is in error; the device must not hold more than `size` descriptors.
#[test]
fn packed_more_descriptors_outstanding_than_queue_size() {
    let mut r = rig(4);
    for i in 0..4 {
        r.avail(DATA, 8, i, READ);
    }
    for _ in 0..4 {
        r.pop_ok();
    }
    assert_eq!(r.q.in_flight(), 4);
    // Offset 0 was never used, yet the driver makes it available again.
    r.avail(DATA, 8, 0, READ);
    r.reject(DeviceQueueError::TooManyInFlight {
        in_flight: 5,
        size: 4,
    });
}
