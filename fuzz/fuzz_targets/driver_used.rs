//! Fuzz target `driver_used`: a hostile device against `DriverQueue`, the
//! driver side of a virtqueue.
//!
//! The driver adds buffers (one at a time, deferred, or in bursts with
//! `add_deferred_burst`), takes used buffers back (`pop_used`,
//! `pop_used_burst`), toggles notifications and resets. Between those
//! steps the device either behaves (a `DeviceQueue` on the same rings pops
//! chains and completes them, in order or not, in batches or not) or
//! writes whatever bytes the input says anywhere in the ring memory.
//!
//! The library must never panic. Besides that, the target checks the
//! driver's trust contract: every token handed back is one that was
//! outstanding, and only once; a used length never exceeds the buffer's
//! writable size; an error breaks the queue, after which adds are refused
//! with their token handed back; a burst never asks for more buffers than
//! fit; and a reset hands back exactly the tokens still outstanding.
//!
//! Header (missing bytes read as 0): byte 0: bit 0 packed, bit 1
//! IN_ORDER, bit 2 INDIRECT_DESC, bit 3 EVENT_IDX, bit 4 indirect tables
//! for single segments too; byte 1: queue size (split: 2^(1 + b % 5), packed:
//! 1 + b % 24). Then a script of steps, one opcode byte each with its
//! arguments.
#![no_main]

use std::collections::{BTreeMap, BTreeSet};

use libfuzzer_sys::fuzz_target;
use ringwork_queue::test_utils::TestMemory;
use ringwork_queue::{
    AddError, DeviceQueue, DriverQueue, DriverQueueConfig, GuestMemory, QueueFeatures, Rejected,
    RingFormat, Segment, UsedToken,
};

const BASE: u64 = 0x1_0000;
const MEM_SIZE: usize = 0x10_0000;
/// Buffers live here, 256 bytes per token slot (never read or written by
/// the driver: only their addresses matter).
const DATA: u64 = BASE + 0x8_0000;
const MAX_OPS: usize = 400;

struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

struct State {
    next_token: u32,
    /// Outstanding tokens and each one's writable size.
    outstanding: BTreeMap<u32, u32>,
}

impl State {
    fn new_token(&mut self) -> u32 {
        self.next_token += 1;
        self.next_token
    }
    fn segments(&self, token: u32, n: usize, write_mask: u8) -> (Vec<Segment>, Vec<Segment>, u32) {
        let (mut out, mut inp, mut cap) = (Vec::new(), Vec::new(), 0);
        for i in 0..n {
            let s = Segment::new(
                DATA + u64::from(token % 2048) * 256 + 32 * i as u64,
                8 + i as u32,
            );
            if write_mask & (1 << i) != 0 {
                cap += s.len;
                inp.push(s);
            } else {
                out.push(s);
            }
        }
        // Readable segments first, as the API requires.
        (out, inp, cap)
    }
    fn used(&mut self, token: u32, len: u32, broken: bool) {
        assert!(!broken, "a broken queue handed back token {token}");
        let cap = self
            .outstanding
            .remove(&token)
            .unwrap_or_else(|| panic!("token {token} handed back but not outstanding"));
        assert!(len <= cap, "used length {len} above the writable {cap}");
    }
}

fuzz_target!(|data: &[u8]| {
    let mut inp = Input(data);
    let flags = inp.byte();
    let size_b = inp.byte();
    let format = if flags & 1 != 0 {
        RingFormat::Packed
    } else {
        RingFormat::Split
    };
    let size = match format {
        RingFormat::Split => 1u16 << (1 + size_b % 5),
        RingFormat::Packed => 1 + u16::from(size_b % 24),
    };
    let features = QueueFeatures {
        in_order: flags & 2 != 0,
        indirect_desc: flags & 4 != 0,
        event_idx: flags & 8 != 0,
        ..QueueFeatures::default()
    };
    let mem = TestMemory::new(BASE, MEM_SIZE);
    let mut cfg = DriverQueueConfig::new(format, size, features);
    if flags & 16 != 0 {
        cfg.indirect_threshold = 1;
    }
    cfg.indirect_tables = cfg.indirect_tables.min(8);
    let Ok(mut d) = DriverQueue::<_, u32>::new(&mem, cfg) else {
        return;
    };
    let mut dev = DeviceQueue::new(format, size, d.addresses(), features).ok();
    // Chains the device popped and has not completed: (token, writable).
    let mut held: Vec<(UsedToken, u32)> = Vec::new();
    let mut st = State {
        next_token: 0,
        outstanding: BTreeMap::new(),
    };
    let ring_lo = d
        .addresses()
        .desc
        .min(d.addresses().driver)
        .min(d.addresses().device);

    for _ in 0..MAX_OPS {
        if inp.is_empty() {
            break;
        }
        let broken = d.is_broken();
        match inp.byte() % 10 {
            0 => {
                // One buffer, 1-4 segments, some writable.
                let a = inp.byte();
                let n = 1 + usize::from(a % 4);
                let t = st.new_token();
                let (out, i, cap) = st.segments(t, n, a >> 2);
                let deferred = a & 0x80 != 0;
                let r = if deferred {
                    d.add_deferred(&out, &i, t)
                } else {
                    d.add(&out, &i, t)
                };
                match r {
                    Ok(_) => {
                        assert!(!broken, "a broken queue took a buffer");
                        st.outstanding.insert(t, cap);
                    }
                    Err(Rejected { error, token }) => {
                        assert_eq!(token, t, "the refused token is not the one given");
                        if broken {
                            assert_eq!(error, AddError::Broken);
                        }
                    }
                }
            }
            1 => {
                // A burst of one-segment buffers.
                let a = inp.byte();
                let want = usize::from(a % 40);
                let writable = a & 0x80 != 0;
                let room = usize::from(d.num_free());
                let mut given = Vec::new();
                let (n, refused) = d.add_deferred_burst(writable, || {
                    if given.len() >= want {
                        return None;
                    }
                    let t = st.new_token();
                    given.push(t);
                    let s = Segment::new(DATA + u64::from(t % 2048) * 256, 16);
                    Some((s, t))
                });
                assert!(
                    given.len() <= room.max(usize::from(broken)),
                    "asked beyond room"
                );
                match refused {
                    Some(r) => {
                        assert!(broken, "refused on a working queue: {:?}", r.error);
                        assert_eq!(Some(&r.token), given.last());
                        assert_eq!(n, 0);
                    }
                    None => {
                        assert_eq!(n, given.len(), "added and asked differ");
                        assert!(!broken || n == 0);
                    }
                }
                for &t in given.iter().take(n) {
                    st.outstanding.insert(t, if writable { 16 } else { 0 });
                }
            }
            2 => {
                if let Ok(Some(u)) = d.pop_used() {
                    st.used(u.token, u.len, broken);
                }
            }
            3 => {
                let max = usize::from(inp.byte() % 16);
                let mut got = Vec::new();
                let _ = d.pop_used_burst(max, |u| got.push(u));
                assert!(got.len() <= max);
                for u in got {
                    st.used(u.token, u.len, broken);
                }
            }
            4 => {
                // The device writes anything anywhere in the rings.
                let off = u64::from(inp.u16() % 0x3000);
                let n = usize::from(inp.byte() % 16);
                let bytes: Vec<u8> = (0..n).map(|_| inp.byte()).collect();
                if let Some(w) = mem.slice(ring_lo + off, bytes.len()) {
                    let _ = w.write_bytes(0, &bytes);
                }
            }
            5 => {
                // A well-behaved device pops what is available.
                let k = inp.byte() % 16;
                if let Some(q) = dev.as_mut() {
                    for _ in 0..k {
                        match q.pop(&mem) {
                            Ok(Some(c)) => held.push((c.token(), c.writable_len())),
                            Ok(None) => break,
                            Err(_) => {
                                dev = None;
                                break;
                            }
                        }
                    }
                }
            }
            6 => {
                // ... and completes some, in order or from the back.
                let a = inp.byte();
                let k = usize::from(a % 16).min(held.len());
                let batch: Vec<(UsedToken, u32)> = if a & 0x80 != 0 {
                    held.drain(held.len() - k..).rev().collect()
                } else {
                    held.drain(..k).collect()
                };
                let batch: Vec<(UsedToken, u32)> = batch
                    .into_iter()
                    .map(|(t, w)| (t, if w == 0 { 0 } else { u32::from(a) % (w + 1) }))
                    .collect();
                if let Some(q) = dev.as_mut() {
                    let r = if a & 0x40 != 0 {
                        q.add_used_batch(&mem, &batch)
                    } else {
                        batch.iter().try_for_each(|&(t, l)| q.add_used(&mem, t, l))
                    };
                    if r.is_err() {
                        dev = None;
                    }
                }
            }
            7 => {
                let a = inp.byte();
                match a % 4 {
                    0 => d.disable_callbacks(),
                    1 => {
                        let _ = d.enable_callbacks();
                    }
                    2 => {
                        let _ = d.enable_callbacks_delayed();
                    }
                    _ => d.publish(),
                }
            }
            8 => {
                let _ = d.kick_prepare();
                let _ = d.has_used();
                d.prefetch_adds(u16::from(inp.byte()));
            }
            _ => {
                // Reset: exactly the outstanding tokens come back.
                if inp.byte() % 8 == 0 {
                    let tokens: BTreeSet<u32> = d.reset().into_iter().collect();
                    let want: BTreeSet<u32> = st.outstanding.keys().copied().collect();
                    assert_eq!(tokens, want, "reset lost or invented tokens");
                    st.outstanding.clear();
                    held.clear();
                    dev = DeviceQueue::new(format, size, d.addresses(), features).ok();
                    assert!(!d.is_broken());
                }
            }
        }
        if d.is_broken() {
            // Broken stays broken until reset.
            assert!(d.pop_used().is_err());
        }
    }
});
