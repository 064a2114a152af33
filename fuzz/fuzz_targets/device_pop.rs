//! Fuzz target `device_pop`: a hostile driver against `DeviceQueue`.
//!
//! The input is a small header, an image of guest memory (rings, indirect
//! tables and buffers are wherever the bytes say), then a script of device
//! actions: pop chains (reading and writing them through `ChainReader` /
//! `ChainWriter`), complete them now, later, in batches or in reverse, poke
//! ring memory between pops (a driver racing the device), toggle
//! notifications and reset.
//!
//! The library must never panic on any of it. Besides that, the target
//! checks what the trust contract promises: every segment of a popped chain
//! is inside shared memory, lengths add up, reading and writing a validated
//! chain never fails, a driver-caused error always breaks the queue, and a
//! broken queue only ever answers `Broken`.
//!
//! Header (missing bytes read as 0):
//! - byte 0: bit 0 packed, bit 1 INDIRECT_DESC, bit 2 EVENT_IDX, bit 3
//!   IN_ORDER, bit 4 raw queue size, bit 5 ring addresses from the input
//! - bytes 1-2: queue size (raw, or mapped to a valid size up to 256)
//! - bytes 3-14 (only with bit 5): desc, driver, device addresses (u32 each)
//! - next byte: indirect table limit / 8 (0: default)
//! - next 2 bytes: length of the memory image that follows
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringwork_queue::test_utils::TestMemory;
use ringwork_queue::{
    DescChain, DeviceQueue, DeviceQueueError, GuestMemory, QueueAddresses, QueueFeatures,
    RingFormat, UsedToken,
};

/// Guest memory: 64 KiB at guest address 0, so small numbers are valid
/// addresses and the fuzzer finds real chains quickly.
const MEM_SIZE: usize = 64 * 1024;
/// Script steps run at most.
const MAX_OPS: usize = 512;
/// Bytes read and written per chain at most (the rest is skipped).
const MAX_IO: usize = 4096;
/// Chains held back for later completion at most.
const MAX_HELD: usize = 1024;

struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn take(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.0.len());
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        head
    }
    fn u8(&mut self) -> u8 {
        self.take(1).first().copied().unwrap_or(0)
    }
    fn u16(&mut self) -> u16 {
        u16::from(self.u8()) | (u16::from(self.u8()) << 8)
    }
    fn u32(&mut self) -> u32 {
        u32::from(self.u16()) | (u32::from(self.u16()) << 16)
    }
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fuzz_target!(|data: &[u8]| run(data));

fn run(data: &[u8]) {
    let mut input = Input(data);
    let flags = input.u8();
    let format = if flags & 1 != 0 {
        RingFormat::Packed
    } else {
        RingFormat::Split
    };
    let features = QueueFeatures {
        indirect_desc: flags & 2 != 0,
        event_idx: flags & 4 != 0,
        in_order: flags & 8 != 0,
        ..QueueFeatures::default()
    };
    let raw_size = input.u16();
    let size = if flags & 0x10 != 0 {
        raw_size
    } else {
        match format {
            RingFormat::Split => 1 << (raw_size % 9),
            RingFormat::Packed => 1 + raw_size % 256,
        }
    };
    let addrs = if flags & 0x20 != 0 {
        QueueAddresses {
            desc: u64::from(input.u32()),
            driver: u64::from(input.u32()),
            device: u64::from(input.u32()),
        }
    } else {
        QueueAddresses {
            desc: 0,
            driver: 0x1000,
            device: 0x2000,
        }
    };
    let max_indirect = input.u8();
    let image_len = usize::from(input.u16()).min(MEM_SIZE);
    let image = input.take(image_len);

    let mem = TestMemory::new(0, MEM_SIZE);
    mem.all().write_bytes(0, image).expect("image fits memory");
    let Ok(mut q) = DeviceQueue::new(format, size, addrs, features) else {
        return;
    };
    if max_indirect != 0 {
        q.set_max_indirect(u32::from(max_indirect) * 8);
    }

    let mut held: Vec<(UsedToken, u32)> = Vec::new();
    let mut reused = DescChain::new();
    let mut scratch = vec![0u8; MAX_IO];
    for _ in 0..MAX_OPS {
        if input.is_empty() {
            break;
        }
        let op = input.u8();
        match op % 10 {
            // Pop, use, complete at once.
            0 | 1 => {
                let was = q.is_broken();
                let r = if op % 10 == 0 {
                    q.pop(&mem)
                } else {
                    q.pop_into(&mem, &mut reused)
                        .map(|got| got.then(|| reused.clone()))
                };
                if let Some(Some(chain)) = check(&q, was, r) {
                    let len = use_chain(&mem, &chain, op, &mut scratch);
                    let was = q.is_broken();
                    let r = q.add_used(&mem, chain.token(), len);
                    check(&q, was, r);
                }
            }
            // Pop and use now, complete later.
            2 => {
                let was = q.is_broken();
                let r = q.pop(&mem);
                if let Some(Some(chain)) = check(&q, was, r) {
                    let len = use_chain(&mem, &chain, op, &mut scratch);
                    if held.len() < MAX_HELD {
                        held.push((chain.token(), len));
                    }
                }
            }
            // Complete everything held as one batch.
            3 => {
                let was = q.is_broken();
                let r = q.add_used_batch(&mem, &held);
                check(&q, was, r);
                held.clear();
            }
            // Complete everything held one by one, newest first.
            4 => {
                for (token, len) in held.drain(..).rev() {
                    let was = q.is_broken();
                    let r = q.add_used(&mem, token, len);
                    check(&q, was, r);
                }
            }
            // The driver writes ring memory between device steps.
            5 => {
                let off = usize::from(input.u16());
                let value = input.u16();
                let _ = mem.all().write_u16(off, value);
            }
            6 => {
                let was = q.is_broken();
                let r = q.needs_notification(&mem);
                check(&q, was, r);
            }
            7 => {
                let was = q.is_broken();
                let r = q.enable_notification(&mem);
                check(&q, was, r);
            }
            8 => {
                let was = q.is_broken();
                let r = q.disable_notification(&mem);
                check(&q, was, r);
            }
            _ => {
                q.reset();
                held.clear();
                assert!(!q.is_broken());
                assert_eq!(q.in_flight(), 0);
            }
        }
    }
    // Whatever happened, a reset queue is usable (errors are allowed: the
    // rings are still whatever the input made them; panics are not).
    q.reset();
    let was = q.is_broken();
    let r = q.pop(&mem);
    check(&q, was, r);
}

/// Checks the error contract of one call; returns the value when it worked.
fn check<T>(q: &DeviceQueue, was_broken: bool, r: Result<T, DeviceQueueError>) -> Option<T> {
    match r {
        Ok(v) => {
            assert!(!was_broken, "a broken queue must refuse");
            assert!(!q.is_broken());
            Some(v)
        }
        Err(DeviceQueueError::Broken) => {
            assert!(was_broken, "Broken only from a broken queue");
            assert!(q.is_broken());
            None
        }
        Err(DeviceQueueError::Usage(_)) => {
            assert!(!was_broken);
            assert_eq!(q.is_broken(), was_broken, "device misuse does not break");
            None
        }
        Err(e) => {
            assert!(!was_broken);
            assert!(e.is_driver_fault());
            assert!(q.is_broken(), "{e} must break the queue");
            None
        }
    }
}

/// Validates a popped chain against memory, reads its readable part and
/// writes its writable part (up to `MAX_IO` bytes each); returns the used
/// length to report.
fn use_chain(mem: &TestMemory, chain: &DescChain, mode: u8, scratch: &mut [u8]) -> u32 {
    let (mut readable, mut writable) = (0u64, 0u64);
    for s in chain.readable_segments() {
        assert!(s.len == 0 || mem.contains(s.addr, s.len as usize));
        readable += u64::from(s.len);
    }
    for s in chain.writable_segments() {
        assert!(s.len == 0 || mem.contains(s.addr, s.len as usize));
        writable += u64::from(s.len);
    }
    assert_eq!(readable, u64::from(chain.readable_len()));
    assert_eq!(writable, u64::from(chain.writable_len()));
    assert!(readable + writable <= u64::from(u32::MAX));
    assert_eq!(
        chain.segments().len(),
        chain.readable_segments().len() + chain.writable_segments().len()
    );

    let mut r = chain.reader(mem);
    if mode & 0x10 != 0 {
        let header = r.read_array::<16>().expect("validated chain reads");
        assert_eq!(header.is_some(), chain.readable_len() >= 16);
    }
    if mode & 0x20 != 0 {
        while let Some(piece) = r.next_slice(977).expect("validated chain reads") {
            assert!(piece.len() <= 977 && !piece.is_empty());
            if r.bytes_read() >= MAX_IO {
                break;
            }
        }
    } else {
        let want = r.remaining().min(MAX_IO);
        let n = r.read(&mut scratch[..want]).expect("validated chain reads");
        assert_eq!(n, want);
    }
    r.skip(usize::MAX);
    assert_eq!(r.remaining(), 0);
    assert_eq!(r.bytes_read(), chain.readable_len() as usize);

    let mut w = chain.writer(mem);
    let want = w.remaining().min(MAX_IO);
    scratch[..want].fill(mode);
    let n = w.write(&scratch[..want]).expect("validated chain writes");
    assert_eq!(n, want);
    if mode & 0x40 != 0 {
        w.skip(usize::from(mode));
    }
    let written = w.bytes_written();
    assert!(written <= chain.writable_len());
    written
}
