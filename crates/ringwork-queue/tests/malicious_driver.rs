//! A hostile DRIVER against our device-side queue ([`DeviceQueue`]).
//!
//! The driver side is played by hand: every test lays the rings out itself
//! in a [`TestMemory`] and writes raw descriptor, available-ring and flag
//! bytes, including the ones a conforming driver never writes. Each test
//! checks the exact error, that the queue is then broken (every later call
//! returns [`DeviceQueueError::Broken`]) and that [`DeviceQueue::reset`]
//! makes it usable again.
//!
//! Split-ring cases live in `malicious_driver/split.rs` (VIRTIO 1.4 §2.7),
//! packed-ring cases in `malicious_driver/packed.rs` (§2.8); this file holds
//! the shared rig and the configuration checks of `DeviceQueue::new`.

#[path = "malicious_driver/packed.rs"]
mod packed;
#[path = "malicious_driver/split.rs"]
mod split;

use ringwork_queue::device::RingArea;
use ringwork_queue::test_utils::TestMemory;
use ringwork_queue::{
    ConfigError, DescChain, DeviceQueue, DeviceQueueError, GuestMemory, MemSlice, QueueAddresses,
    QueueFeatures, RingFormat,
};
use ringwork_spec::ring::packed as p;
use ringwork_spec::ring::split as s;
use ringwork_spec::ring::{VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE};

/// Guest address of the first byte of the fake guest memory.
const BASE: u64 = 0x1_0000;
/// Default size of the fake guest memory.
const MEM_SIZE: usize = 0x2_0000;
/// Descriptor table (split) / descriptor ring (packed).
const DESC: u64 = BASE;
/// Available ring (split) / driver event suppression area (packed).
const DRIVER: u64 = BASE + 0x1000;
/// Used ring (split) / device event suppression area (packed).
const DEVICE: u64 = BASE + 0x2000;
/// Where tests put indirect tables.
const ITABLE: u64 = BASE + 0x3000;
/// Where tests put buffers.
const DATA: u64 = BASE + 0x8000;
/// One past the last byte of the default memory.
const END: u64 = BASE + MEM_SIZE as u64;

const READ: u16 = 0;
const WRITE: u16 = VIRTQ_DESC_F_WRITE;
const NEXT: u16 = VIRTQ_DESC_F_NEXT;

fn addrs() -> QueueAddresses {
    QueueAddresses {
        desc: DESC,
        driver: DRIVER,
        device: DEVICE,
    }
}

/// Both queue features off/on as the tests need them.
fn features(indirect_desc: bool, event_idx: bool) -> QueueFeatures {
    QueueFeatures {
        indirect_desc,
        event_idx,
        ..QueueFeatures::default()
    }
}

/// A device-side queue, its memory, and the hostile driver's own position.
struct Rig {
    mem: TestMemory,
    q: DeviceQueue,
    size: u16,
    /// Split: the driver's available index.
    avail_idx: u16,
    /// Packed: the driver's next ring offset and wrap counter.
    pos: u16,
    wrap: bool,
}

impl Rig {
    fn new(format: RingFormat, size: u16, features: QueueFeatures) -> Self {
        Self::with_layout(format, size, features, MEM_SIZE, addrs())
    }

    fn with_layout(
        format: RingFormat,
        size: u16,
        features: QueueFeatures,
        mem_size: usize,
        addrs: QueueAddresses,
    ) -> Self {
        Self {
            mem: TestMemory::new(BASE, mem_size),
            q: DeviceQueue::new(format, size, addrs, features).expect("valid queue config"),
            size,
            avail_idx: 0,
            pos: 0,
            wrap: true,
        }
    }

    /// The window on guest address `addr` and the rest of memory after it.
    fn at(&self, addr: u64) -> MemSlice<'_> {
        let len = self.mem.size() - (addr - BASE) as usize;
        self.mem
            .slice(addr, len)
            .expect("test address inside memory")
    }

    fn pop(&mut self) -> Result<Option<DescChain>, DeviceQueueError> {
        self.q.pop(&self.mem)
    }

    fn pop_ok(&mut self) -> DescChain {
        self.pop()
            .expect("a valid chain is accepted")
            .expect("a chain is available")
    }

    // ----- split driver -----

    /// Writes split descriptor `i` of the table at `table`.
    fn split_desc_in(&self, table: u64, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let d = self.at(table + 16 * u64::from(i));
        d.write_u64(0, addr).unwrap();
        d.write_u32(8, len).unwrap();
        d.write_u16(12, flags).unwrap();
        d.write_u16(14, next).unwrap();
    }

    /// Writes split descriptor `i` of the main table.
    fn desc(&self, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        self.split_desc_in(DESC, i, addr, len, flags, next);
    }

    /// Puts `head` in the next available ring slot and bumps `idx`.
    fn publish(&mut self, head: u16) {
        let slot = self.avail_idx % self.size;
        self.avail_idx = self.avail_idx.wrapping_add(1);
        let avail = self.at(DRIVER);
        avail
            .write_u16(s::avail_ring_entry_offset(slot), head)
            .unwrap();
        avail
            .write_u16(s::AVAIL_IDX_OFFSET, self.avail_idx)
            .unwrap();
    }

    // ----- packed driver -----

    /// Writes packed descriptor `i` of the ring or table at `table`.
    fn packed_desc_in(&self, table: u64, i: u16, addr: u64, len: u32, id: u16, flags: u16) {
        let d = self.at(table + 16 * u64::from(i));
        d.write_u64(0, addr).unwrap();
        d.write_u32(8, len).unwrap();
        d.write_u16(p::DESC_ID_OFFSET, id).unwrap();
        d.write_u16(p::DESC_FLAGS_OFFSET, flags).unwrap();
    }

    /// Makes the next ring descriptor available with `flags` (plus the
    /// AVAIL/USED bits for the driver's wrap counter) and advances.
    fn avail(&mut self, addr: u64, len: u32, id: u16, flags: u16) {
        let f = flags | p::avail_flags(self.wrap);
        self.packed_desc_in(DESC, self.pos, addr, len, id, f);
        self.pos += 1;
        if self.pos == self.size {
            self.pos = 0;
            self.wrap = !self.wrap;
        }
    }

    // ----- checks -----

    /// The next pop fails with exactly `expected`; the queue is then broken.
    fn expect_pop_err(&mut self, expected: DeviceQueueError) {
        let got = self.pop().expect_err("hostile input must be rejected");
        assert_eq!(got, expected);
        assert!(got.is_driver_fault(), "{got:?} blames the driver");
        self.assert_broken();
    }

    /// The queue is broken: every operation refuses with `Broken`.
    fn assert_broken(&mut self) {
        assert!(self.q.is_broken());
        assert_eq!(self.pop().unwrap_err(), DeviceQueueError::Broken);
        let token = self.q.inflight_token(0, 1);
        assert_eq!(
            self.q.add_used(&self.mem, token, 0),
            Err(DeviceQueueError::Broken)
        );
        assert_eq!(
            self.q.needs_notification(&self.mem),
            Err(DeviceQueueError::Broken)
        );
        assert_eq!(
            self.q.enable_notification(&self.mem),
            Err(DeviceQueueError::Broken)
        );
        assert_eq!(
            self.q.disable_notification(&self.mem),
            Err(DeviceQueueError::Broken)
        );
        assert!(self.q.is_broken());
    }

    /// Resets the queue (as after DEVICE_NEEDS_RESET and a driver re-init)
    /// and checks a well-formed request goes through end to end.
    fn reset_and_recover(&mut self) {
        self.q.reset();
        assert!(!self.q.is_broken());
        assert_eq!(self.q.in_flight(), 0);
        // The driver re-initialises its rings.
        self.at(DESC).fill(0, 0x3000, 0).unwrap();
        self.avail_idx = 0;
        self.pos = 0;
        self.wrap = true;
        let (req, resp) = (DATA + 0x10, DATA + 0x100);
        self.at(req).write_bytes(0, b"hello").unwrap();
        let id = match self.q.format() {
            RingFormat::Split => {
                self.desc(0, req, 5, NEXT, 1);
                self.desc(1, resp, 8, WRITE, 0);
                self.publish(0);
                0
            }
            RingFormat::Packed => {
                self.packed_desc_in(DESC, 1, resp, 8, 7, WRITE | p::avail_flags(true));
                self.packed_desc_in(DESC, 0, req, 5, 7, NEXT | p::avail_flags(true));
                self.pos = 2;
                7
            }
        };
        let chain = self.pop_ok();
        assert_eq!(chain.id(), id);
        assert_eq!((chain.readable_len(), chain.writable_len()), (5, 8));
        let mut got = [0u8; 5];
        assert_eq!(chain.reader(&self.mem).read(&mut got), Ok(5));
        assert_eq!(&got, b"hello");
        let mut w = chain.writer(&self.mem);
        assert_eq!(w.write(b"world!!!"), Ok(8));
        self.q
            .add_used(&self.mem, chain.token(), w.bytes_written())
            .unwrap();
        let mut out = [0u8; 8];
        self.at(resp).read_bytes(0, &mut out).unwrap();
        assert_eq!(&out, b"world!!!");
        match self.q.format() {
            RingFormat::Split => {
                let used = self.at(DEVICE);
                assert_eq!(used.read_u16(s::USED_IDX_OFFSET), Ok(1));
                let elem = s::used_ring_entry_offset(0);
                assert_eq!(used.read_u32(elem), Ok(0));
                assert_eq!(used.read_u32(elem + 4), Ok(8));
            }
            RingFormat::Packed => {
                let d = self.at(DESC);
                assert_eq!(
                    d.read_u16(p::DESC_FLAGS_OFFSET),
                    Ok(p::used_flags(true) | WRITE)
                );
                assert_eq!(d.read_u16(p::DESC_ID_OFFSET), Ok(7));
                assert_eq!(d.read_u32(8), Ok(8));
            }
        }
        assert!(self.pop().unwrap().is_none());
        assert!(!self.q.is_broken());
    }

    /// [`Self::expect_pop_err`] then [`Self::reset_and_recover`].
    fn reject(&mut self, expected: DeviceQueueError) {
        self.expect_pop_err(expected);
        self.reset_and_recover();
    }
}

// ----- configuration checks (both formats) -----

/// VIRTIO 1.4 §2.7 (split alignment table: descriptor table 16, available
/// ring 2, used ring 4): misaligned split ring parts are refused by `new`.
#[test]
fn split_misaligned_ring_addresses_rejected() {
    let f = QueueFeatures::default();
    let cases = [
        (
            DESC + 8,
            DRIVER,
            DEVICE,
            RingArea::Descriptors,
            DESC + 8,
            16,
        ),
        (DESC, DRIVER + 1, DEVICE, RingArea::Driver, DRIVER + 1, 2),
        (DESC, DRIVER, DEVICE + 2, RingArea::Device, DEVICE + 2, 4),
    ];
    for (desc, driver, device, area, addr, align) in cases {
        let a = QueueAddresses {
            desc,
            driver,
            device,
        };
        assert_eq!(
            DeviceQueue::new(RingFormat::Split, 8, a, f).unwrap_err(),
            ConfigError::Misaligned { area, addr, align }
        );
    }
    // Minimum alignments are enough.
    let a = QueueAddresses {
        desc: DESC + 16,
        driver: DRIVER + 2,
        device: DEVICE + 4,
    };
    assert!(DeviceQueue::new(RingFormat::Split, 8, a, f).is_ok());
}

/// VIRTIO 1.4 §2.8.10.1 (packed alignment table: descriptor ring 16, event
/// suppression areas 4): misaligned packed ring parts are refused by `new`.
#[test]
fn packed_misaligned_ring_addresses_rejected() {
    let f = QueueFeatures::default();
    let cases = [
        (
            DESC + 4,
            DRIVER,
            DEVICE,
            RingArea::Descriptors,
            DESC + 4,
            16,
        ),
        (DESC, DRIVER + 2, DEVICE, RingArea::Driver, DRIVER + 2, 4),
        (DESC, DRIVER, DEVICE + 1, RingArea::Device, DEVICE + 1, 4),
    ];
    for (desc, driver, device, area, addr, align) in cases {
        let a = QueueAddresses {
            desc,
            driver,
            device,
        };
        assert_eq!(
            DeviceQueue::new(RingFormat::Packed, 8, a, f).unwrap_err(),
            ConfigError::Misaligned { area, addr, align }
        );
    }
    let a = QueueAddresses {
        desc: DESC + 16,
        driver: DRIVER + 4,
        device: DEVICE + 4,
    };
    assert!(DeviceQueue::new(RingFormat::Packed, 8, a, f).is_ok());
}

/// VIRTIO 1.4 §2.7 ("Queue Size value is always a power of 2. The maximum
/// Queue Size value is 32768"): split sizes 0, non-powers of two and values
/// above 32768 are refused.
#[test]
fn split_invalid_queue_sizes_rejected() {
    let f = QueueFeatures::default();
    for size in [0u16, 3, 6, 100, 32767, 32769, 49152, u16::MAX] {
        assert_eq!(
            DeviceQueue::new(RingFormat::Split, size, addrs(), f).unwrap_err(),
            ConfigError::InvalidSize {
                format: RingFormat::Split,
                size
            },
            "size {size}"
        );
    }
    for size in [1u16, 2, 256, 32768] {
        assert!(DeviceQueue::new(RingFormat::Split, size, addrs(), f).is_ok());
    }
}

/// VIRTIO 1.4 §2.8 ("up to 2^15 entries") and §2.8.10.1 ("does not have to
/// be a power of 2"): packed sizes 0 and above 32768 are refused, any other
/// size is accepted.
#[test]
fn packed_invalid_queue_sizes_rejected() {
    let f = QueueFeatures::default();
    for size in [0u16, 32769, 40000, u16::MAX] {
        assert_eq!(
            DeviceQueue::new(RingFormat::Packed, size, addrs(), f).unwrap_err(),
            ConfigError::InvalidSize {
                format: RingFormat::Packed,
                size
            },
            "size {size}"
        );
    }
    for size in [1u16, 3, 100, 32767, 32768] {
        assert!(DeviceQueue::new(RingFormat::Packed, size, addrs(), f).is_ok());
    }
}
