//! Hostile driver, split ring (VIRTIO 1.4 §2.7).

use super::*;
use ringwork_queue::{ChainError, Segment};
use ringwork_spec::ring::VIRTQ_DESC_F_INDIRECT;

const INDIRECT: u16 = VIRTQ_DESC_F_INDIRECT;

fn rig(size: u16) -> Rig {
    Rig::new(RingFormat::Split, size, features(false, false))
}

fn rig_indirect(size: u16) -> Rig {
    Rig::new(RingFormat::Split, size, features(true, false))
}

fn chain_err(e: ChainError) -> DeviceQueueError {
    DeviceQueueError::Chain(e)
}

// ----- descriptor links -----

/// VIRTIO 1.4 §2.7.5.2 driver normative ("loops in the descriptor chain are
/// forbidden"): a two-descriptor loop a→b→a is cut at the table size.
#[test]
fn split_descriptor_loop_a_b_a() {
    let mut r = rig(8);
    r.desc(2, DATA, 16, NEXT, 5);
    r.desc(5, DATA + 16, 16, NEXT, 2);
    r.publish(2);
    r.reject(chain_err(ChainError::TooLong { limit: 8 }));
}

/// VIRTIO 1.4 §2.7.5.2 driver normative (no loops): a descriptor whose
/// `next` is itself is cut at the table size.
#[test]
fn split_descriptor_self_loop() {
    let mut r = rig(8);
    r.desc(3, DATA, 16, NEXT, 3);
    r.publish(3);
    r.reject(chain_err(ChainError::TooLong { limit: 8 }));
}

/// VIRTIO 1.4 §2.7.5 ("The number of descriptors in the table is defined by
/// the queue size"): a `next` beyond the table is refused.
#[test]
fn split_next_out_of_range() {
    let mut r = rig(8);
    r.desc(0, DATA, 16, NEXT, 1);
    r.desc(1, DATA, 16, NEXT, 8);
    r.publish(0);
    r.reject(chain_err(ChainError::NextOutOfRange {
        index: 1,
        next: 8,
        table_len: 8,
    }));
    r.desc(0, DATA, 16, NEXT, u16::MAX);
    r.publish(0);
    r.reject(chain_err(ChainError::NextOutOfRange {
        index: 0,
        next: u16::MAX,
        table_len: 8,
    }));
}

/// VIRTIO 1.4 §2.7.5.3.1 driver normative ("MUST NOT create a descriptor
/// chain longer than the Queue Size"): a chain using every descriptor once
/// is fine, one more link (back into the chain) is refused.
#[test]
fn split_chain_longer_than_queue_size() {
    let mut r = rig(8);
    for i in 0..8u16 {
        r.desc(i, DATA + 16 * u64::from(i), 16, NEXT, (i + 1) % 8);
    }
    r.desc(7, DATA + 16 * 7, 16, READ, 0);
    r.publish(0);
    let c = r.pop_ok();
    assert_eq!((c.segments().len(), c.readable_len()), (8, 128));
    // Descriptor 7 now links back to 0: a ninth element.
    r.desc(7, DATA + 16 * 7, 16, NEXT, 0);
    r.publish(0);
    r.expect_pop_err(chain_err(ChainError::TooLong { limit: 8 }));
    r.reset_and_recover();
}

// ----- available ring -----

/// VIRTIO 1.4 §2.7.6 (each available ring entry "refers to the head of a
/// descriptor chain"): a head outside the descriptor table is refused.
#[test]
fn split_head_index_out_of_range() {
    let mut r = rig(8);
    r.desc(0, DATA, 16, READ, 0);
    r.publish(8);
    r.reject(DeviceQueueError::HeadOutOfRange { head: 8, size: 8 });
    r.publish(u16::MAX);
    r.reject(DeviceQueueError::HeadOutOfRange {
        head: u16::MAX,
        size: 8,
    });
}

/// VIRTIO 1.4 §2.7 (at most Queue Size buffers are in the queue) and
/// §2.7.6.1 driver normative (idx is never decremented): an available idx
/// more than the queue size ahead is refused.
#[test]
fn split_avail_idx_jump_beyond_queue_size() {
    let mut r = rig(8);
    r.at(DRIVER).write_u16(s::AVAIL_IDX_OFFSET, 9).unwrap();
    r.reject(DeviceQueueError::AvailIndexJump {
        last: 0,
        idx: 9,
        size: 8,
    });
}

/// VIRTIO 1.4 §2.7.6.1 driver normative ("MUST NOT decrement the available
/// idx"): moving idx backwards (a jump of 65535 forward) is refused, also
/// after some buffers were consumed.
#[test]
fn split_avail_idx_moving_backwards() {
    let mut r = rig(8);
    r.desc(0, DATA, 16, READ, 0);
    r.publish(0);
    r.publish(0);
    r.pop_ok();
    r.pop_ok();
    r.at(DRIVER).write_u16(s::AVAIL_IDX_OFFSET, 1).unwrap();
    r.reject(DeviceQueueError::AvailIndexJump {
        last: 2,
        idx: 1,
        size: 8,
    });
}

/// VIRTIO 1.4 §2.7 (at most Queue Size buffers): a jump of exactly the queue
/// size is legal and gives exactly that many chains.
#[test]
fn split_avail_idx_jump_of_exactly_queue_size_accepted() {
    let mut r = rig(8);
    for i in 0..8 {
        r.desc(i, DATA + 16 * u64::from(i), 16, READ, 0);
        r.at(DRIVER)
            .write_u16(s::avail_ring_entry_offset(i), 7 - i)
            .unwrap();
    }
    r.at(DRIVER).write_u16(s::AVAIL_IDX_OFFSET, 8).unwrap();
    for i in 0..8 {
        assert_eq!(r.pop_ok().id(), 7 - i);
    }
    assert!(r.pop().unwrap().is_none());
    assert!(!r.q.is_broken());
}

// ----- buffer addresses and lengths -----

/// VIRTIO 1.4 §2.7.5 (`addr` is a guest-physical address): a buffer
/// (partly) outside shared memory is refused.
#[test]
fn split_buffer_outside_memory() {
    let mut r = rig(8);
    for (addr, len) in [(END - 8, 16u32), (END, 1), (BASE - 4, 8), (0, 1)] {
        r.desc(0, DATA, 8, NEXT, 1);
        r.desc(1, addr, len, WRITE, 0);
        r.publish(0);
        r.reject(chain_err(ChainError::OutOfMemory { addr, len }));
    }
    // A one-descriptor chain takes a shorter path through the pop: the same
    // check.
    for (addr, len) in [(END - 8, 16u32), (END, 1), (BASE - 4, 8), (0, 1)] {
        let mut r = rig(8);
        r.desc(0, addr, len, WRITE, 0);
        r.publish(0);
        r.reject(chain_err(ChainError::OutOfMemory { addr, len }));
    }
}

/// VIRTIO 1.4 §2.7.5: an `addr + len` that overflows u64 (and would wrap to
/// an address inside memory) is refused, not wrapped.
#[test]
fn split_buffer_addr_plus_len_overflows_u64() {
    let mut r = rig(8);
    // u64::MAX - 0xff + 0x1_0200 wraps to BASE + 0x100.
    let (addr, len) = (u64::MAX - 0xff, 0x1_0200u32);
    assert_eq!(addr.wrapping_add(u64::from(len)), BASE + 0x100);
    r.desc(0, addr, len, READ, 0);
    r.publish(0);
    r.reject(chain_err(ChainError::OutOfMemory { addr, len }));
}

/// VIRTIO 1.4 §2.7.5.2 driver normative ("MUST NOT add a descriptor chain
/// longer than 2^32 bytes in total"): 256 readable 16 MiB elements (all the
/// same memory) add up to 2^32 and are refused.
#[test]
fn split_total_length_overflows_u32() {
    const BIG: u32 = 1 << 24;
    let mem = BIG as usize + 0x10_0000;
    let mut r = Rig::with_layout(RingFormat::Split, 256, features(false, false), mem, addrs());
    let big = END; // past the small layout; inside the large memory
    for i in 0..256u16 {
        let last = i == 255;
        r.desc(i, big, BIG, if last { READ } else { NEXT }, i + 1);
    }
    r.publish(0);
    r.reject(chain_err(ChainError::LengthOverflow));
    // Readable and writable halves of 2^31 each overflow together.
    for i in 0..256u16 {
        let (last, w) = (i == 255, if i >= 128 { WRITE } else { READ });
        r.desc(i, big, BIG, w | if last { 0 } else { NEXT }, i + 1);
    }
    r.publish(0);
    r.reject(chain_err(ChainError::LengthOverflow));
}

/// VIRTIO 1.4 §2.7.4.2 driver normative ("MUST place any device-writable
/// descriptor elements after any device-readable descriptor elements").
#[test]
fn split_readable_after_writable() {
    let mut r = rig(8);
    r.desc(0, DATA, 8, READ | NEXT, 1);
    r.desc(1, DATA + 8, 8, WRITE | NEXT, 2);
    r.desc(2, DATA + 16, 8, READ, 0);
    r.publish(0);
    r.reject(chain_err(ChainError::ReadableAfterWritable));
}

/// VIRTIO 1.4 §2.7.4.1 device normative ("MUST NOT make assumptions about
/// the particular arrangement of descriptors"): zero-length elements are
/// accepted, and never dereferenced (even at an address outside memory).
#[test]
fn split_zero_length_descriptors_accepted() {
    let mut r = rig(8);
    r.at(DATA).write_bytes(0, b"abcd").unwrap();
    r.desc(0, 0, 0, READ | NEXT, 1);
    r.desc(1, DATA, 4, READ | NEXT, 2);
    r.desc(2, u64::MAX, 0, WRITE | NEXT, 3);
    r.desc(3, DATA + 0x100, 4, WRITE | NEXT, 4);
    r.desc(4, DATA + 0x200, 0, WRITE, 0);
    r.publish(0);
    let c = r.pop_ok();
    assert_eq!((c.readable_len(), c.writable_len()), (4, 4));
    assert_eq!(c.segments().len(), 5);
    assert_eq!(c.readable_segments()[0], Segment::new(0, 0));
    let mut rd = c.reader(&r.mem);
    let mut buf = [0u8; 8];
    assert_eq!(rd.read(&mut buf), Ok(4));
    assert_eq!(&buf[..4], b"abcd");
    let mut w = c.writer(&r.mem);
    assert_eq!(w.write(b"wxyz-more"), Ok(4));
    r.q.add_used(&r.mem, c.token(), w.bytes_written()).unwrap();
    assert!(!r.q.is_broken());
    // A chain that is one zero-length descriptor is accepted as well.
    r.desc(5, 0, 0, READ, 0);
    r.publish(5);
    let c = r.pop_ok();
    assert_eq!((c.readable_len(), c.writable_len()), (0, 0));
}

// ----- indirect descriptors -----

/// VIRTIO 1.4 §2.7.5.3.1 driver normative ("MUST NOT set the
/// VIRTQ_DESC_F_INDIRECT flag unless the VIRTIO_F_INDIRECT_DESC feature was
/// negotiated").
#[test]
fn split_indirect_without_feature() {
    let mut r = rig(8);
    r.split_desc_in(ITABLE, 0, DATA, 8, READ, 0);
    r.desc(0, ITABLE, 16, INDIRECT, 0);
    r.publish(0);
    r.reject(chain_err(ChainError::IndirectNotNegotiated));
}

/// VIRTIO 1.4 §2.7.5.3.1 driver normative ("MUST NOT set the
/// VIRTQ_DESC_F_INDIRECT flag within an indirect descriptor").
#[test]
fn split_nested_indirect() {
    let mut r = rig_indirect(8);
    r.split_desc_in(ITABLE + 0x100, 0, DATA, 8, READ, 0);
    r.split_desc_in(ITABLE, 0, DATA, 8, NEXT, 1);
    r.split_desc_in(ITABLE, 1, ITABLE + 0x100, 16, INDIRECT, 0);
    r.desc(0, ITABLE, 32, INDIRECT, 0);
    r.publish(0);
    r.reject(chain_err(ChainError::NestedIndirect));
}

/// VIRTIO 1.4 §2.7.5.3.1 driver normative ("MUST NOT set both
/// VIRTQ_DESC_F_INDIRECT and VIRTQ_DESC_F_NEXT").
#[test]
fn split_indirect_with_next() {
    let mut r = rig_indirect(8);
    r.split_desc_in(ITABLE, 0, DATA, 8, READ, 0);
    r.desc(0, ITABLE, 16, INDIRECT | NEXT, 1);
    r.desc(1, DATA, 8, WRITE, 0);
    r.publish(0);
    r.reject(chain_err(ChainError::IndirectChained));
}

/// VIRTIO 1.4 §2.7.5.3 (the table is `desc[len / 16]`): a zero-length
/// indirect table is refused.
#[test]
fn split_indirect_table_len_zero() {
    let mut r = rig_indirect(8);
    r.desc(0, ITABLE, 0, INDIRECT, 0);
    r.publish(0);
    r.reject(chain_err(ChainError::IndirectBadLength { len: 0 }));
}

/// VIRTIO 1.4 §2.7.5.3 (the table is `desc[len / 16]`): a table length that
/// is not a multiple of 16 is refused.
#[test]
fn split_indirect_table_len_not_multiple_of_16() {
    let mut r = rig_indirect(8);
    r.split_desc_in(ITABLE, 0, DATA, 8, READ, 0);
    for len in [8u32, 24, 17] {
        r.desc(0, ITABLE, len, INDIRECT, 0);
        r.publish(0);
        r.reject(chain_err(ChainError::IndirectBadLength { len }));
    }
}

/// VIRTIO 1.4 §2.7.4.1 device normative ("MAY have a reasonable limit of
/// descriptors it will allow in a chain"): a table above `set_max_indirect`
/// is refused, one at the limit accepted.
#[test]
fn split_indirect_table_larger_than_limit() {
    let mut r = rig_indirect(8);
    r.q.set_max_indirect(4);
    for i in 0..5u16 {
        r.split_desc_in(ITABLE, i, DATA, 8, READ | NEXT, i + 1);
    }
    r.split_desc_in(ITABLE, 3, DATA, 8, READ, 0);
    r.desc(0, ITABLE, 64, INDIRECT, 0);
    r.publish(0);
    assert_eq!(r.pop_ok().readable_len(), 32);
    r.desc(0, ITABLE, 80, INDIRECT, 0);
    r.publish(0);
    r.reject(chain_err(ChainError::IndirectTooLarge {
        entries: 5,
        limit: 4,
    }));
}

/// VIRTIO 1.4 §2.7.5.3: an indirect table (partly) outside shared memory is
/// refused.
#[test]
fn split_indirect_table_outside_memory() {
    let mut r = rig_indirect(8);
    for (addr, len) in [(END - 16, 32u32), (END + 0x1000, 16), (u64::MAX - 15, 32)] {
        r.desc(0, addr, len, INDIRECT, 0);
        r.publish(0);
        r.reject(chain_err(ChainError::OutOfMemory { addr, len }));
    }
}

/// VIRTIO 1.4 §2.7.5.2 driver normative (no loops) inside an indirect table:
/// the walk is cut at the table's entry count.
#[test]
fn split_loop_inside_indirect_table() {
    let mut r = rig_indirect(8);
    r.split_desc_in(ITABLE, 0, DATA, 8, NEXT, 1);
    r.split_desc_in(ITABLE, 1, DATA, 8, NEXT, 2);
    r.split_desc_in(ITABLE, 2, DATA, 8, NEXT, 0);
    r.split_desc_in(ITABLE, 3, DATA, 8, READ, 0);
    r.desc(0, ITABLE, 64, INDIRECT, 0);
    r.publish(0);
    r.reject(chain_err(ChainError::TooLong { limit: 4 }));
}

/// VIRTIO 1.4 §2.7.5.3 (indirect descriptors are "chained by next" within
/// the table): a `next` beyond the table's entry count is refused.
#[test]
fn split_next_out_of_range_inside_indirect_table() {
    let mut r = rig_indirect(8);
    r.split_desc_in(ITABLE, 0, DATA, 8, NEXT, 1);
    r.split_desc_in(ITABLE, 1, DATA, 8, NEXT, 2);
    r.split_desc_in(ITABLE, 2, DATA, 8, READ, 0); // beyond len = 32
    r.desc(0, ITABLE, 32, INDIRECT, 0);
    r.publish(0);
    r.reject(chain_err(ChainError::NextOutOfRange {
        index: 1,
        next: 2,
        table_len: 2,
    }));
}

/// VIRTIO 1.4 §2.7.5.3.2 device normative ("MUST ignore the write-only flag
/// in the descriptor that refers to an indirect table").
#[test]
fn split_write_flag_on_indirect_descriptor_ignored() {
    let mut r = rig_indirect(8);
    r.split_desc_in(ITABLE, 0, DATA, 8, READ | NEXT, 1);
    r.split_desc_in(ITABLE, 1, DATA + 0x100, 12, WRITE, 0);
    r.desc(0, ITABLE, 32, INDIRECT | WRITE, 0);
    r.publish(0);
    let c = r.pop_ok();
    assert!(c.is_indirect());
    assert_eq!(c.readable_segments(), &[Segment::new(DATA, 8)]);
    assert_eq!(c.writable_segments(), &[Segment::new(DATA + 0x100, 12)]);
    r.q.add_used(&r.mem, c.token(), 12).unwrap();
}

/// VIRTIO 1.4 §2.7.5.3.2 device normative ("MUST handle the case of zero or
/// more normal chained descriptors followed by a single descriptor with
/// flags&VIRTQ_DESC_F_INDIRECT"); the readable-before-writable rule holds
/// across the switch into the table (§2.7.4.2).
#[test]
fn split_direct_then_indirect() {
    let mut r = rig_indirect(8);
    r.split_desc_in(ITABLE, 0, DATA + 0x100, 12, WRITE, 0);
    r.desc(4, DATA, 8, READ | NEXT, 6);
    r.desc(6, ITABLE, 16, INDIRECT, 0);
    r.publish(4);
    let c = r.pop_ok();
    assert_eq!(c.id(), 4);
    assert!(c.is_indirect());
    assert_eq!(c.readable_segments(), &[Segment::new(DATA, 8)]);
    assert_eq!(c.writable_segments(), &[Segment::new(DATA + 0x100, 12)]);
    // A direct writable element followed by a readable one in the table.
    r.split_desc_in(ITABLE, 0, DATA, 8, READ, 0);
    r.desc(4, DATA + 0x100, 8, WRITE | NEXT, 6);
    r.publish(4);
    r.reject(chain_err(ChainError::ReadableAfterWritable));
}

// ----- ring areas -----

/// VIRTIO 1.4 §2.7 (each part of the queue is in guest memory): a
/// descriptor table reaching past memory is refused when first used.
#[test]
fn split_descriptor_table_outside_memory() {
    let desc = END - 64; // 8 entries need 128 bytes
    let a = QueueAddresses { desc, ..addrs() };
    let mut r = Rig::with_layout(RingFormat::Split, 8, features(false, false), MEM_SIZE, a);
    r.publish(0);
    let err = DeviceQueueError::RingOutOfMemory {
        area: RingArea::Descriptors,
        addr: desc,
        len: 128,
    };
    r.expect_pop_err(err);
    r.q.reset();
    assert!(!r.q.is_broken());
    assert_eq!(r.pop().unwrap_err(), err, "still refused after reset");
}

/// VIRTIO 1.4 §2.7 (each part of the queue is in guest memory): an
/// available ring reaching past memory is refused.
#[test]
fn split_avail_ring_outside_memory() {
    let driver = END - 16; // 6 + 2 * 8 = 22 bytes
    let a = QueueAddresses { driver, ..addrs() };
    let mut r = Rig::with_layout(RingFormat::Split, 8, features(false, false), MEM_SIZE, a);
    let err = DeviceQueueError::RingOutOfMemory {
        area: RingArea::Driver,
        addr: driver,
        len: 22,
    };
    r.expect_pop_err(err);
    r.q.reset();
    assert_eq!(r.q.needs_notification(&r.mem), Err(err));
    assert!(r.q.is_broken());
}

/// VIRTIO 1.4 §2.7 (each part of the queue is in guest memory): a used ring
/// reaching past memory is refused by pop (EVENT_IDX writes avail_event) and
/// by add_used.
#[test]
fn split_used_ring_outside_memory() {
    let device = END - 64; // 6 + 8 * 8 = 70 bytes
    let a = QueueAddresses { device, ..addrs() };
    let err = DeviceQueueError::RingOutOfMemory {
        area: RingArea::Device,
        addr: device,
        len: 70,
    };
    // With EVENT_IDX, a pop that finds the ring empty writes avail_event.
    let mut r = Rig::with_layout(RingFormat::Split, 8, features(false, true), MEM_SIZE, a);
    r.expect_pop_err(err);
    let mut r = Rig::with_layout(RingFormat::Split, 8, features(false, false), MEM_SIZE, a);
    r.desc(0, DATA, 8, READ, 0);
    r.publish(0);
    let c = r.pop_ok();
    assert_eq!(r.q.add_used(&r.mem, c.token(), 0), Err(err));
    r.assert_broken();
}

// ----- time of check / time of use -----

/// Project rule and VIRTIO 1.4 §2.7.13 (buffers belong to the device once
/// made available): a driver rewriting descriptors, the indirect table and
/// the available ring after pop cannot change the popped chain: it is a
/// private copy.
#[test]
fn split_rewrite_after_pop_does_not_change_chain() {
    let mut r = rig_indirect(8);
    r.at(DATA).write_bytes(0, b"request!").unwrap();
    r.desc(0, DATA, 8, READ | NEXT, 1);
    r.desc(1, DATA + 0x100, 16, WRITE, 0);
    r.split_desc_in(ITABLE, 0, DATA, 4, READ | NEXT, 1);
    r.split_desc_in(ITABLE, 1, DATA + 0x200, 4, WRITE, 0);
    r.desc(2, ITABLE, 32, INDIRECT, 0);
    r.publish(0);
    r.publish(2);
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
    // The hostile driver now points everything elsewhere.
    for i in 0..8 {
        r.desc(i, END - 4, 0xffff, WRITE | NEXT, i);
        r.split_desc_in(ITABLE, i, u64::MAX, 1, INDIRECT | NEXT, 7);
        r.at(DRIVER)
            .write_u16(s::avail_ring_entry_offset(i), 0xdead)
            .unwrap();
    }
    assert_eq!(snapshot(&direct), before_d);
    assert_eq!(snapshot(&indirect), before_i);
    let mut buf = [0u8; 8];
    assert_eq!(direct.reader(&r.mem).read(&mut buf), Ok(8));
    assert_eq!(&buf, b"request!");
    let mut w = direct.writer(&r.mem);
    assert_eq!(w.write(&[0x55; 32]), Ok(16));
    r.q.add_used(&r.mem, direct.token(), 16).unwrap();
    r.q.add_used(&r.mem, indirect.token(), 0).unwrap();
    let used = r.at(DEVICE);
    assert_eq!(used.read_u16(s::USED_IDX_OFFSET), Ok(2));
    assert_eq!(used.read_u32(s::used_ring_entry_offset(0)), Ok(0));
    assert_eq!(used.read_u32(s::used_ring_entry_offset(1)), Ok(2));
    assert!(!r.q.is_broken());
}

/// VIRTIO 1.4 §2.7 ("Queue Size corresponds to the maximum number of
/// buffers in the virtqueue"): with all `size` buffers popped and none used,
/// an available idx exposing one more buffer is a driver error (QEMU:
/// "Virtqueue size exceeded").
#[test]
fn split_more_buffers_outstanding_than_queue_size() {
    let mut r = rig(4);
    for i in 0..4 {
        r.desc(i, DATA, 8, READ, 0);
        r.publish(i);
    }
    for _ in 0..4 {
        r.pop_ok();
    }
    assert_eq!(r.q.in_flight(), 4);
    // Head 0 is still in flight; the driver offers it again (idx 5, used 0).
    r.publish(0);
    r.reject(DeviceQueueError::TooManyInFlight {
        in_flight: 5,
        size: 4,
    });
}
