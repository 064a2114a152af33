//! A fake entropy device: fills buffers with a running counter, optionally
//! only part of each buffer, none at all, never, or with a hostile used
//! length.

use ringwork_queue::test_utils::TestMemory;
use ringwork_queue::DescChain;
use ringwork_spec::device_id::{DeviceType, VIRTIO_ID_RNG};
use ringwork_spec::features::{
    FeatureSet, VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC, VIRTIO_F_IN_ORDER, VIRTIO_F_RING_PACKED,
};
use ringwork_spec::ring::notify::NotificationData;
use ringwork_transport::{Activation, DeviceError, Signals, VirtioDevice};

use super::Queues;

/// The fake entropy device. See the [module docs](self).
pub struct RngDev<'m> {
    mem: &'m TestMemory,
    /// Offered features.
    pub features: FeatureSet,
    /// Queue maximum size.
    pub max_size: [u16; 1],
    /// Write at most this many bytes per buffer.
    pub per_request: Option<usize>,
    /// Report this used length instead of the real one (hostile).
    pub used_len: Option<u32>,
    /// Keep requests instead of completing them.
    pub hold: bool,
    /// The next byte value.
    pub counter: u8,
    /// Requests completed.
    pub completed: usize,
    /// Device-readable bytes the driver put in requests (it must not).
    pub readable_seen: usize,
    queues: Queues,
    held: Vec<DescChain>,
}

impl<'m> RngDev<'m> {
    /// A device with the ring features and a queue of up to 128 entries.
    pub fn new(mem: &'m TestMemory) -> Self {
        Self {
            mem,
            features: FeatureSet::from_bits(&[
                VIRTIO_F_RING_PACKED,
                VIRTIO_F_EVENT_IDX,
                VIRTIO_F_INDIRECT_DESC,
                VIRTIO_F_IN_ORDER,
            ]),
            max_size: [128],
            per_request: None,
            used_len: None,
            hold: false,
            counter: 0,
            completed: 0,
            readable_seen: 0,
            queues: Queues::default(),
            held: Vec::new(),
        }
    }

    /// Requests held.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// Completes held requests.
    pub fn release(&mut self) {
        for chain in std::mem::take(&mut self.held) {
            self.complete(chain);
        }
    }

    fn complete(&mut self, chain: DescChain) {
        self.readable_seen += chain.readable_len() as usize;
        let mut n = chain.writable_len() as usize;
        if let Some(max) = self.per_request {
            n = n.min(max);
        }
        let bytes: Vec<u8> = (0..n)
            .map(|_| {
                self.counter = self.counter.wrapping_add(1);
                self.counter
            })
            .collect();
        let mut w = chain.writer(self.mem);
        w.write(&bytes).expect("write");
        let len = self.used_len.unwrap_or(w.bytes_written());
        self.completed += 1;
        self.queues.used(self.mem, 0, chain.token(), len);
    }
}

impl VirtioDevice for RngDev<'_> {
    fn device_type(&self) -> DeviceType {
        DeviceType(VIRTIO_ID_RNG)
    }
    fn device_features(&self) -> FeatureSet {
        self.features
    }
    fn queue_max_sizes(&self) -> &[u16] {
        &self.max_size
    }
    fn config_len(&self) -> usize {
        0
    }
    fn read_config(&self, _: usize, _: &mut [u8]) {}
    fn activate(&mut self, a: Activation, s: Signals) -> Result<(), DeviceError> {
        self.queues.activate(a, s);
        Ok(())
    }
    fn reset(&mut self) {
        self.queues.reset();
        self.held.clear();
    }
    fn queue_notify(&mut self, queue: u16, _: Option<NotificationData>) {
        while let Some(chain) = self.queues.pop(self.mem, queue) {
            if self.hold {
                self.held.push(chain);
            } else {
                self.complete(chain);
            }
        }
    }
}
