//! A fake memory balloon: records the pages inflated and deflated, the
//! `actual` values the driver writes, statistics and free page reports;
//! can hold its acknowledgements, ask for statistics, and misbehave.

use std::collections::BTreeSet;

use ringwork_queue::test_utils::TestMemory;
use ringwork_queue::DescChain;
use ringwork_spec::balloon::{
    BalloonQueues, VIRTIO_BALLOON_F_DEFLATE_ON_OOM, VIRTIO_BALLOON_F_MUST_TELL_HOST,
    VIRTIO_BALLOON_F_PAGE_REPORTING, VIRTIO_BALLOON_F_STATS_VQ,
};
use ringwork_spec::device_id::{DeviceType, VIRTIO_ID_BALLOON};
use ringwork_spec::features::{FeatureSet, VIRTIO_F_EVENT_IDX, VIRTIO_F_RING_PACKED};
use ringwork_spec::ring::notify::NotificationData;
use ringwork_transport::{Activation, DeviceError, Signals, VirtioDevice};

use super::{read_all, Queues};

/// The fake balloon. See the [module docs](self).
pub struct BalloonDev<'m> {
    mem: &'m TestMemory,
    /// Offered features.
    pub features: FeatureSet,
    /// `num_pages`.
    pub num_pages: u32,
    /// Every value the driver wrote to `actual`.
    pub actual_writes: Vec<u32>,
    /// PFNs in the balloon.
    pub inflated: BTreeSet<u32>,
    /// Protocol violations seen (deflating a page not inflated, inflating
    /// one twice, a PFN array of odd length).
    pub violations: Vec<String>,
    /// Hold inflate/deflate acknowledgements.
    pub hold: bool,
    /// Statistics buffers received (tag, value lists).
    pub stats: Vec<Vec<(u16, u64)>>,
    /// Free page report ranges received (address, length).
    pub reports: Vec<(u64, u32)>,
    /// Negotiated features.
    pub negotiated: FeatureSet,
    max: [u16; 4],
    queues: Queues,
    held: Vec<(u16, DescChain)>,
    stats_buf: Option<DescChain>,
}

impl<'m> BalloonDev<'m> {
    /// A balloon offering MUST_TELL_HOST, STATS_VQ, DEFLATE_ON_OOM and
    /// PAGE_REPORTING.
    pub fn new(mem: &'m TestMemory) -> Self {
        Self {
            mem,
            features: FeatureSet::from_bits(&[
                VIRTIO_F_RING_PACKED,
                VIRTIO_F_EVENT_IDX,
                VIRTIO_BALLOON_F_MUST_TELL_HOST,
                VIRTIO_BALLOON_F_STATS_VQ,
                VIRTIO_BALLOON_F_DEFLATE_ON_OOM,
                VIRTIO_BALLOON_F_PAGE_REPORTING,
            ]),
            num_pages: 0,
            actual_writes: Vec::new(),
            inflated: BTreeSet::new(),
            violations: Vec::new(),
            hold: false,
            stats: Vec::new(),
            reports: Vec::new(),
            negotiated: FeatureSet::new(),
            max: [64; 4],
            queues: Queues::default(),
            held: Vec::new(),
            stats_buf: None,
        }
    }

    fn numbering(&self) -> BalloonQueues {
        BalloonQueues::from_features(|b| self.negotiated.contains(b))
    }

    /// Acknowledges held inflate/deflate buffers.
    pub fn release(&mut self) {
        for (q, c) in std::mem::take(&mut self.held) {
            self.apply(q, c);
        }
    }

    /// Asks for fresh statistics (uses the stats buffer); false if the
    /// device holds none.
    pub fn request_stats(&mut self) -> bool {
        let Some(c) = self.stats_buf.take() else {
            return false;
        };
        let q = self.numbering().statsq.unwrap();
        self.queues.used(self.mem, q, c.token(), 0);
        true
    }

    fn apply(&mut self, q: u16, c: DescChain) {
        let bytes = read_all(self.mem, &c);
        if bytes.len() % 4 != 0 {
            self.violations
                .push(format!("PFN array of {} bytes", bytes.len()));
        }
        let inflate = q == self.numbering().inflateq;
        for pfn in bytes.chunks_exact(4) {
            let pfn = u32::from_le_bytes(pfn.try_into().unwrap());
            let ok = if inflate {
                self.inflated.insert(pfn)
            } else {
                self.inflated.remove(&pfn)
            };
            if !ok {
                self.violations.push(format!(
                    "{} pfn {pfn:#x} twice",
                    if inflate { "inflate" } else { "deflate" }
                ));
            }
        }
        self.queues.used(self.mem, q, c.token(), 0);
    }
}

impl VirtioDevice for BalloonDev<'_> {
    fn device_type(&self) -> DeviceType {
        DeviceType(VIRTIO_ID_BALLOON)
    }
    fn device_features(&self) -> FeatureSet {
        self.features
    }
    fn queue_max_sizes(&self) -> &[u16] {
        let n = BalloonQueues::from_features(|b| self.features.contains(b)).num_queues();
        &self.max[..usize::from(n).min(4)]
    }
    fn config_len(&self) -> usize {
        16
    }
    fn read_config(&self, offset: usize, data: &mut [u8]) {
        let mut c = [0u8; 16];
        c[0..4].copy_from_slice(&self.num_pages.to_le_bytes());
        c[4..8].copy_from_slice(
            &self
                .actual_writes
                .last()
                .copied()
                .unwrap_or(0)
                .to_le_bytes(),
        );
        for (i, b) in data.iter_mut().enumerate() {
            *b = c.get(offset + i).copied().unwrap_or(0);
        }
    }
    fn write_config(&mut self, offset: usize, data: &[u8]) {
        if offset == 4 && data.len() == 4 {
            self.actual_writes
                .push(u32::from_le_bytes(data.try_into().unwrap()));
        } else {
            self.violations
                .push(format!("config write at {offset}, {} bytes", data.len()));
        }
    }
    fn accept_features(&mut self, features: FeatureSet) -> Result<(), DeviceError> {
        self.negotiated = features;
        Ok(())
    }
    fn activate(&mut self, a: Activation, s: Signals) -> Result<(), DeviceError> {
        self.queues.activate(a, s);
        Ok(())
    }
    fn reset(&mut self) {
        self.queues.reset();
        self.held.clear();
        self.stats_buf = None;
    }
    fn queue_notify(&mut self, queue: u16, _: Option<NotificationData>) {
        let n = self.numbering();
        while let Some(c) = self.queues.pop(self.mem, queue) {
            if queue == n.inflateq || queue == n.deflateq {
                if self.hold {
                    self.held.push((queue, c));
                } else {
                    self.apply(queue, c);
                }
            } else if Some(queue) == n.statsq {
                let bytes = read_all(self.mem, &c);
                let entries = bytes
                    .chunks_exact(10)
                    .map(|e| {
                        (
                            u16::from_le_bytes([e[0], e[1]]),
                            u64::from_le_bytes(e[2..10].try_into().unwrap()),
                        )
                    })
                    .collect();
                self.stats.push(entries);
                if self.stats_buf.replace(c).is_some() {
                    self.violations.push("two stats buffers".into());
                }
            } else if Some(queue) == n.reporting_vq {
                if c.readable_len() > 0 {
                    self.violations.push("device-readable report buffer".into());
                }
                for d in c.segments() {
                    self.reports.push((d.addr, d.len));
                }
                self.queues.used(self.mem, queue, c.token(), 0);
            }
        }
    }
}
