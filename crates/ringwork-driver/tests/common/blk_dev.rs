//! An in-memory virtio block device for the driver tests: a disk image in
//! a `Vec`, every request type the driver sends, a configurable
//! configuration space (hostile values included), completion modes
//! (immediate, reversed batches, never) and a hostile used length. It
//! records every configuration read (and whether FEATURES_OK was set by
//! then) and the features the driver asked for at FEATURES_OK.

use std::cell::RefCell;

use ringwork_queue::test_utils::TestMemory;
use ringwork_queue::DescChain;
use ringwork_spec::blk::{
    BlkConfig, BlkDiscardWriteZeroes, BlkReqHeader, BLK_CONFIG_SIZE, BLK_CONFIG_WRITEBACK_OFFSET,
    VIRTIO_BLK_F_BLK_SIZE, VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_F_RO, VIRTIO_BLK_F_SEG_MAX,
    VIRTIO_BLK_F_SIZE_MAX, VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_OK, VIRTIO_BLK_S_UNSUPP,
    VIRTIO_BLK_T_DISCARD, VIRTIO_BLK_T_FLUSH, VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_T_IN,
    VIRTIO_BLK_T_OUT, VIRTIO_BLK_T_WRITE_ZEROES,
};
use ringwork_spec::device_id::{DeviceType, VIRTIO_ID_BLOCK};
use ringwork_spec::features::{
    FeatureSet, VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC, VIRTIO_F_IN_ORDER, VIRTIO_F_RING_PACKED,
};
use ringwork_spec::ring::notify::NotificationData;
use ringwork_transport::{Activation, DeviceError, Signals, VirtioDevice};

use ringwork_driver::blk::{BlkDriver, BlkOptions};

use super::{mmio, read_all, Block, Mmio, Queues};

/// The block driver over a [`BlkDev`], with `u32` tokens.
pub type Driver<'b, 'm> = BlkDriver<Mmio<'b, BlkDev<'m>>, &'m TestMemory, u32>;

/// A block driver for `b`.
pub fn driver<'b, 'm>(
    b: &'b Block<BlkDev<'m>>,
    mem: &'m TestMemory,
    opts: BlkOptions,
) -> Driver<'b, 'm> {
    BlkDriver::new(mmio(b), mem, opts).expect("driver")
}

/// When the device completes what it pops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// At once, in order.
    Immediate,
    /// Once this many requests were popped, all of them, last first.
    Reverse(usize),
    /// Never (until `release`).
    Hold,
}

/// A request the device saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// Queue.
    pub queue: u16,
    /// Header type.
    pub req_type: u32,
    /// Header sector.
    pub sector: u64,
    /// Descriptors in the chain.
    pub segments: usize,
    /// Device-readable bytes after the header.
    pub out_len: usize,
    /// Device-writable bytes before the status.
    pub in_len: usize,
    /// Discard / write-zeroes ranges: (sector, sectors, flags).
    pub ranges: Vec<(u64, u32, u32)>,
    /// The status it answered.
    pub status: u8,
}

/// The fake block device. See the [module docs](self).
pub struct BlkDev<'m> {
    mem: &'m TestMemory,
    /// The disk.
    pub disk: Vec<u8>,
    /// Offered features.
    pub features: FeatureSet,
    /// The configuration space.
    pub config: [u8; BLK_CONFIG_SIZE],
    /// Queue maximum sizes (their number is the queue count).
    pub max_sizes: Vec<u16>,
    /// The GET_ID answer.
    pub id: [u8; 20],
    /// Completion mode.
    pub mode: Mode,
    /// Report this used length instead of the real one (hostile).
    pub used_len: Option<u32>,
    /// Never write the status byte (hostile).
    pub skip_status: bool,
    /// Every request, in completion order.
    pub log: Vec<Seen>,
    /// Configuration reads: (offset, length, FEATURES_OK set by then).
    pub config_reads: RefCell<Vec<(usize, usize, bool)>>,
    /// The features the driver asked for when it set FEATURES_OK.
    pub proposed: Option<FeatureSet>,
    queues: Queues,
    held: Vec<(u16, DescChain)>,
}

impl<'m> BlkDev<'m> {
    /// A device of `sectors` sectors with FLUSH, SEG_MAX (126), SIZE_MAX
    /// (64 KiB), BLK_SIZE (4096) and the ring features (packed, event idx,
    /// indirect, in order), one queue of up to 256 entries.
    pub fn new(mem: &'m TestMemory, sectors: u64) -> Self {
        let mut d = Self {
            mem,
            disk: vec![0u8; sectors as usize * 512],
            features: FeatureSet::from_bits(&[
                VIRTIO_BLK_F_FLUSH,
                VIRTIO_BLK_F_SEG_MAX,
                VIRTIO_BLK_F_SIZE_MAX,
                VIRTIO_BLK_F_BLK_SIZE,
                VIRTIO_F_RING_PACKED,
                VIRTIO_F_EVENT_IDX,
                VIRTIO_F_INDIRECT_DESC,
                VIRTIO_F_IN_ORDER,
            ]),
            config: [0u8; BLK_CONFIG_SIZE],
            max_sizes: vec![256],
            id: *b"ringwork-fake-disk\0\0",
            mode: Mode::Immediate,
            used_len: None,
            skip_status: false,
            log: Vec::new(),
            config_reads: RefCell::new(Vec::new()),
            proposed: None,
            queues: Queues::default(),
            held: Vec::new(),
        };
        d.edit(|c| {
            c.set_capacity(sectors);
            c.set_seg_max(126);
            c.set_size_max(64 * 1024);
            c.set_blk_size(4096);
        });
        d
    }

    /// Edits the configuration space.
    pub fn edit(&mut self, f: impl FnOnce(&mut BlkConfig<&mut [u8]>)) {
        f(&mut BlkConfig::new_unchecked(&mut self.config[..]));
    }

    /// Adds offered features.
    pub fn offer(mut self, bits: &[u32]) -> Self {
        for &b in bits {
            self.features.insert(b);
        }
        self
    }

    /// Removes offered features.
    pub fn withdraw(mut self, bits: &[u32]) -> Self {
        self.features.remove_all(bits);
        self
    }

    /// The features the driver accepted (at DRIVER_OK).
    pub fn negotiated(&self) -> Option<FeatureSet> {
        self.queues.activation.as_ref().map(|a| a.features)
    }

    /// Changes the capacity and signals a configuration change.
    pub fn set_capacity(&mut self, sectors: u64) {
        self.edit(|c| c.set_capacity(sectors));
        self.disk.resize(sectors as usize * 512, 0);
        if let Some(s) = self.queues.signals() {
            s.config_changed();
        }
    }

    /// Completes every held request, last first (first first with
    /// VIRTIO_F_IN_ORDER, which forbids anything else).
    pub fn release(&mut self) {
        let mut held: Vec<_> = self.held.drain(..).collect();
        if !self
            .negotiated()
            .is_some_and(|f| f.contains(VIRTIO_F_IN_ORDER))
        {
            held.reverse();
        }
        for (q, chain) in held {
            self.complete(q, chain);
        }
    }

    /// Requests popped and not completed.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    fn capacity(&self) -> u64 {
        BlkConfig::new_unchecked(&self.config[..]).capacity()
    }

    fn complete(&mut self, q: u16, chain: DescChain) {
        let (mut len, status, seen) = self.execute(q, &chain);
        if let Some(l) = self.used_len {
            len = l;
        }
        self.log.push(Seen { status, ..seen });
        self.queues.used(self.mem, q, chain.token(), len);
    }

    /// Runs one request; returns (used length, status, what was seen).
    fn execute(&mut self, queue: u16, chain: &DescChain) -> (u32, u8, Seen) {
        let mem = self.mem;
        let readable = read_all(mem, chain);
        let writable = chain.writable_len() as usize;
        let mut seen = Seen {
            queue,
            req_type: u32::MAX,
            sector: 0,
            segments: chain.segments().len(),
            out_len: readable.len().saturating_sub(16),
            in_len: writable.saturating_sub(1),
            ranges: Vec::new(),
            status: 0,
        };
        if readable.len() < 16 || writable == 0 {
            return (0, VIRTIO_BLK_S_IOERR, seen);
        }
        let h = BlkReqHeader::new_unchecked(&readable[..16]);
        seen.req_type = h.type_();
        seen.sector = h.sector();
        let data = &readable[16..];
        let in_len = writable - 1;
        let ro = self.features.contains(VIRTIO_BLK_F_RO);
        let cap = self.capacity();
        let in_range = |sector: u64, bytes: usize| {
            sector
                .checked_add(bytes.div_ceil(512) as u64)
                .is_some_and(|e| e <= cap)
        };
        let mut reply = vec![0u8; in_len];
        let status = match seen.req_type {
            VIRTIO_BLK_T_IN if in_len % 512 == 0 && in_range(seen.sector, in_len) => {
                let a = seen.sector as usize * 512;
                reply.copy_from_slice(&self.disk[a..a + in_len]);
                VIRTIO_BLK_S_OK
            }
            VIRTIO_BLK_T_OUT if ro => VIRTIO_BLK_S_IOERR,
            VIRTIO_BLK_T_OUT if data.len() % 512 == 0 && in_range(seen.sector, data.len()) => {
                let a = seen.sector as usize * 512;
                self.disk[a..a + data.len()].copy_from_slice(data);
                VIRTIO_BLK_S_OK
            }
            VIRTIO_BLK_T_FLUSH => VIRTIO_BLK_S_OK,
            VIRTIO_BLK_T_GET_ID if in_len == 20 => {
                reply.copy_from_slice(&self.id);
                VIRTIO_BLK_S_OK
            }
            t @ (VIRTIO_BLK_T_DISCARD | VIRTIO_BLK_T_WRITE_ZEROES) => {
                let mut ok = data.len() % 16 == 0 && !ro;
                for e in data.chunks_exact(16) {
                    let r = BlkDiscardWriteZeroes::new_unchecked(e);
                    seen.ranges.push((r.sector(), r.num_sectors(), r.flags()));
                    let bytes = r.num_sectors() as usize * 512;
                    if !in_range(r.sector(), bytes) || (t == VIRTIO_BLK_T_DISCARD && r.unmap()) {
                        ok = false;
                        continue;
                    }
                    let a = r.sector() as usize * 512;
                    // Discarded sectors read back as 0xdd, zeroed as 0.
                    let fill = if t == VIRTIO_BLK_T_DISCARD { 0xdd } else { 0 };
                    self.disk[a..a + bytes].fill(fill);
                }
                if ok {
                    VIRTIO_BLK_S_OK
                } else {
                    VIRTIO_BLK_S_IOERR
                }
            }
            VIRTIO_BLK_T_IN | VIRTIO_BLK_T_OUT | VIRTIO_BLK_T_GET_ID => VIRTIO_BLK_S_IOERR,
            _ => VIRTIO_BLK_S_UNSUPP,
        };
        let wrote_data = status == VIRTIO_BLK_S_OK
            && matches!(seen.req_type, VIRTIO_BLK_T_IN | VIRTIO_BLK_T_GET_ID);
        let mut w = chain.writer(mem);
        if wrote_data {
            w.write(&reply).expect("write data");
        } else {
            w.skip(in_len);
        }
        if self.skip_status {
            w.skip(1);
        } else {
            w.write(&[status]).expect("write status");
        }
        let len = if wrote_data { writable as u32 } else { 1 };
        (len, status, seen)
    }

    fn serve(&mut self, q: u16) {
        while let Some(chain) = self.queues.pop(self.mem, q) {
            match self.mode {
                Mode::Immediate => self.complete(q, chain),
                Mode::Reverse(n) => {
                    self.held.push((q, chain));
                    if self.held.len() >= n {
                        self.release();
                    }
                }
                Mode::Hold => self.held.push((q, chain)),
            }
        }
    }
}

impl VirtioDevice for BlkDev<'_> {
    fn device_type(&self) -> DeviceType {
        DeviceType(VIRTIO_ID_BLOCK)
    }
    fn device_features(&self) -> FeatureSet {
        self.features
    }
    fn queue_max_sizes(&self) -> &[u16] {
        &self.max_sizes
    }
    fn config_len(&self) -> usize {
        BLK_CONFIG_SIZE
    }
    fn read_config(&self, offset: usize, data: &mut [u8]) {
        self.config_reads
            .borrow_mut()
            .push((offset, data.len(), self.proposed.is_some()));
        data.copy_from_slice(&self.config[offset..offset + data.len()]);
    }
    fn accept_features(&mut self, features: FeatureSet) -> Result<(), DeviceError> {
        self.proposed = Some(features);
        Ok(())
    }
    fn write_config(&mut self, offset: usize, data: &[u8]) {
        if offset == BLK_CONFIG_WRITEBACK_OFFSET && data.len() == 1 {
            self.config[offset] = data[0];
        }
    }
    fn activate(&mut self, a: Activation, s: Signals) -> Result<(), DeviceError> {
        self.queues.activate(a, s);
        Ok(())
    }
    fn reset(&mut self) {
        self.queues.reset();
        self.held.clear();
        self.proposed = None;
    }
    fn queue_notify(&mut self, queue: u16, _: Option<NotificationData>) {
        self.serve(queue);
    }
}
