//! A harness that runs our driver-side and device-side queues against each
//! other over one shared `TestMemory`, checking every buffer's bytes.
#![allow(dead_code)]

use std::collections::HashMap;

use ringwork_queue::test_utils::TestMemory;
use ringwork_queue::{
    DescChain, DeviceQueue, DriverQueue, DriverQueueConfig, GuestMemory, QueueFeatures, RingFormat,
    Segment, UsedToken,
};

/// Bytes of data space per buffer slot.
pub const SLOT_BYTES: u64 = 1024;
/// Base guest address of the data area.
pub const DATA_BASE: u64 = 0x100_0000;

/// A driver queue and the device queue over the same rings, `size`
/// entries, `f` negotiated.
pub fn pair(
    mem: &TestMemory,
    format: RingFormat,
    size: u16,
    f: QueueFeatures,
) -> (DriverQueue<&TestMemory, u32>, DeviceQueue) {
    let drv = DriverQueue::new(mem, DriverQueueConfig::new(format, size, f)).unwrap();
    let dev = DeviceQueue::new(format, size, drv.addresses(), f).unwrap();
    (drv, dev)
}

/// Deterministic xorshift generator for workload choices.
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
}

/// Content the driver puts in buffer `token`'s readable part.
pub fn out_byte(token: u64, i: usize) -> u8 {
    (token as u8).wrapping_mul(31).wrapping_add(i as u8) ^ 0x5a
}

/// Content the device writes into buffer `token`'s writable part.
pub fn in_byte(token: u64, i: usize) -> u8 {
    (token as u8).wrapping_mul(17).wrapping_add(i as u8) ^ 0xa5
}

/// What the driver asked for in one buffer.
#[derive(Debug, Clone)]
pub struct Expect {
    pub out: Vec<Segment>,
    pub inp: Vec<Segment>,
    pub len: Option<u32>,
}

/// Workload parameters.
#[derive(Debug, Clone, Copy)]
pub struct Params {
    pub format: RingFormat,
    pub size: u16,
    pub features: QueueFeatures,
    pub max_segments: usize,
    pub max_outstanding: usize,
    pub seed: u64,
}

pub struct Harness<'m> {
    pub mem: &'m TestMemory,
    pub driver: DriverQueue<&'m TestMemory, u64>,
    pub device: DeviceQueue,
    pub p: Params,
    pub rng: Rng,
    next_token: u64,
    /// token -> what was added
    pub expect: HashMap<u64, Expect>,
    /// ring id -> token, for outstanding buffers
    pub by_id: HashMap<u16, u64>,
    /// free data slots
    slots: Vec<u64>,
    slot_of: HashMap<u64, u64>,
    /// popped by the device, not yet completed: (token, chain token, len)
    pub popped: Vec<(u64, UsedToken, u32)>,
    pub delivered: u64,
    pub added: u64,
    chain: DescChain,
}

impl<'m> Harness<'m> {
    pub fn new(mem: &'m TestMemory, p: Params) -> Self {
        let cfg = DriverQueueConfig::new(p.format, p.size, p.features);
        let driver = DriverQueue::new(mem, cfg).expect("driver queue");
        let device =
            DeviceQueue::new(p.format, p.size, driver.addresses(), p.features).expect("device");
        Self {
            mem,
            driver,
            device,
            p,
            rng: Rng(p.seed | 1),
            next_token: 0,
            expect: HashMap::new(),
            by_id: HashMap::new(),
            slots: (0..p.max_outstanding as u64).rev().collect(),
            slot_of: HashMap::new(),
            popped: Vec::new(),
            delivered: 0,
            added: 0,
            chain: DescChain::new(),
        }
    }

    /// Memory needed for a workload with these parameters.
    pub fn memory_size(p: &Params) -> usize {
        (DATA_BASE - 0x1_0000) as usize
            + p.max_outstanding * SLOT_BYTES as usize
            + usize::from(p.size) * 64
    }

    /// Driver: try to add one random buffer. Returns whether it was added.
    pub fn add_one(&mut self) -> bool {
        let Some(&slot) = self.slots.last() else {
            return false;
        };
        let nseg = 1 + self.rng.below(self.p.max_segments as u64) as usize;
        let n_out = self.rng.below(nseg as u64 + 1) as usize;
        let base = DATA_BASE + slot * SLOT_BYTES;
        let per = SLOT_BYTES / nseg as u64;
        let mut segs = Vec::with_capacity(nseg);
        for i in 0..nseg {
            let len = self.rng.below(per + 1) as u32; // zero-length allowed
            segs.push(Segment::new(base + i as u64 * per, len));
        }
        let (out, inp) = segs.split_at(n_out);
        let token = self.next_token;
        // Fill the readable part and poison the writable part.
        let mut k = 0;
        for s in out {
            for j in 0..s.len as usize {
                let w = self.mem.slice(s.addr + j as u64, 1).unwrap();
                w.write_u8(0, out_byte(token, k)).unwrap();
                k += 1;
            }
        }
        for s in inp {
            let w = self.mem.slice(s.addr, s.len as usize).unwrap();
            w.fill(0, s.len as usize, 0xee).unwrap();
        }
        match self.driver.add(out, inp, token) {
            Ok(id) => {
                self.slots.pop();
                self.slot_of.insert(token, slot);
                assert!(self.by_id.insert(id, token).is_none(), "id {id} reused");
                self.expect.insert(
                    token,
                    Expect {
                        out: out.to_vec(),
                        inp: inp.to_vec(),
                        len: None,
                    },
                );
                self.next_token += 1;
                self.added += 1;
                true
            }
            Err(r) => {
                assert_eq!(r.token, token, "token handed back");
                false
            }
        }
    }

    /// Device: pop up to `n` chains, checking them and writing replies.
    pub fn device_pop(&mut self, n: usize) -> usize {
        let mut got = 0;
        while got < n {
            let mut chain = std::mem::take(&mut self.chain);
            if !self
                .device
                .pop_into(self.mem, &mut chain)
                .expect("device pop")
            {
                self.chain = chain;
                break;
            }
            let token = *self
                .by_id
                .get(&chain.id())
                .expect("popped id is outstanding");
            let e = self.expect.get(&token).unwrap().clone();
            assert_eq!(
                chain.readable_segments(),
                &e.out[..],
                "token {token} readable"
            );
            assert_eq!(
                chain.writable_segments(),
                &e.inp[..],
                "token {token} writable"
            );
            // Read everything back through the reader.
            let mut buf = vec![0u8; chain.readable_len() as usize];
            let mut r = chain.reader(self.mem);
            assert_eq!(r.read(&mut buf).unwrap(), buf.len());
            for (i, b) in buf.iter().enumerate() {
                assert_eq!(*b, out_byte(token, i), "token {token} byte {i}");
            }
            // Write the whole writable part; report a random prefix.
            let cap = chain.writable_len() as usize;
            let data: Vec<u8> = (0..cap).map(|i| in_byte(token, i)).collect();
            let mut w = chain.writer(self.mem);
            assert_eq!(w.write(&data).unwrap(), cap);
            let len = self.rng.below(cap as u64 + 1) as u32;
            self.popped.push((token, chain.token(), len));
            self.chain = chain;
            got += 1;
        }
        got
    }

    /// Device: complete up to `n` popped chains (random order unless
    /// IN_ORDER, batched at random).
    pub fn device_complete(&mut self, n: usize) {
        let n = n.min(self.popped.len());
        if n == 0 {
            return;
        }
        let mut batch = Vec::with_capacity(n);
        for _ in 0..n {
            let i = if self.p.features.in_order {
                0
            } else {
                self.rng.below(self.popped.len() as u64) as usize
            };
            batch.push(self.popped.remove(i));
        }
        let in_order_batch = self.p.features.in_order && batch.len() > 1;
        for (token, _, len) in batch.iter() {
            // Every buffer's length reaches the driver, in an in-order
            // batch too: the device skips the entries of completely used
            // buffers only, whose length is their capacity.
            let e = self.expect.get_mut(token).unwrap();
            e.len = Some(*len);
        }
        let used: Vec<(UsedToken, u32)> = batch.iter().map(|(_, t, l)| (*t, *l)).collect();
        if self.rng.below(2) == 0 || in_order_batch {
            self.device
                .add_used_batch(self.mem, &used)
                .expect("add_used_batch");
        } else {
            for (t, l) in used {
                self.device.add_used(self.mem, t, l).expect("add_used");
            }
        }
        let _ = self
            .device
            .needs_notification(self.mem)
            .expect("needs_notification");
    }

    /// Driver: take every used buffer, checking token, len and bytes.
    pub fn driver_reap(&mut self) -> usize {
        let mut n = 0;
        while let Some(u) = self.driver.pop_used().expect("pop_used") {
            let e = self.expect.remove(&u.token).expect("token delivered once");
            assert_eq!(Some(u.len), e.len, "token {} len", u.token);
            assert_eq!(self.by_id.remove(&u.id), Some(u.token), "id matches token");
            let mut k = 0usize;
            'outer: for s in &e.inp {
                for j in 0..s.len as usize {
                    if k >= u.len as usize {
                        break 'outer;
                    }
                    let b = self
                        .mem
                        .slice(s.addr + j as u64, 1)
                        .unwrap()
                        .read_u8(0)
                        .unwrap();
                    assert_eq!(b, in_byte(u.token, k), "token {} reply byte {k}", u.token);
                    k += 1;
                }
            }
            let slot = self.slot_of.remove(&u.token).unwrap();
            self.slots.push(slot);
            self.delivered += 1;
            n += 1;
        }
        n
    }

    /// Runs `steps` random steps, then drains everything and checks that
    /// every buffer came back exactly once.
    pub fn run(&mut self, steps: usize) {
        for _ in 0..steps {
            match self.rng.below(4) {
                0 | 1 => {
                    let k = 1 + self.rng.below(8);
                    for _ in 0..k {
                        if !self.add_one() {
                            break;
                        }
                    }
                    let _ = self.driver.kick_prepare().unwrap();
                }
                2 => {
                    let k = 1 + self.rng.below(8) as usize;
                    self.device_pop(k);
                    let k = self.rng.below(8) as usize + 1;
                    self.device_complete(k);
                }
                _ => {
                    self.driver_reap();
                }
            }
        }
        self.drain();
    }

    pub fn drain(&mut self) {
        loop {
            self.device_pop(usize::MAX);
            let n = self.popped.len();
            self.device_complete(n);
            self.driver_reap();
            if self.expect.is_empty() {
                break;
            }
            assert!(
                !self.popped.is_empty() || self.device_pop(1) > 0 || self.driver.has_used(),
                "stuck with {} outstanding",
                self.expect.len()
            );
        }
        assert_eq!(self.added, self.delivered);
        assert_eq!(self.driver.outstanding(), 0);
        assert_eq!(self.device.in_flight(), 0);
        assert_eq!(self.driver.num_free(), self.p.size);
    }
}
