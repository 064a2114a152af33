//! A test device that keeps some buffers in flight.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use ringwork_device::model::{Device, DeviceError, DeviceEvents, QueueSet, QueueWorker};
use ringwork_queue::device::DescChain;
use ringwork_spec::device_id::{DeviceType, VIRTIO_ID_RNG};

/// A device of `queues` queues whose worker echoes each buffer's readable
/// bytes on queue `queue` into its writable part (the other queues are
/// left alone). With `hold`, it keeps buffers whose first byte is `H` and
/// completes them only when a later buffer (`R`, tag) names them, so
/// buffers stay in flight when the backend goes away.
pub struct Holder {
    /// Queues the device has.
    pub queues: u16,
    /// The queue served.
    pub queue: u16,
    /// Hold `H` buffers.
    pub hold: bool,
    /// Chains popped so far.
    pub popped: Arc<AtomicUsize>,
}

impl Device for Holder {
    fn device_type(&self) -> DeviceType {
        DeviceType(VIRTIO_ID_RNG)
    }
    fn features(&self) -> u64 {
        ringwork_device::ring_features()
    }
    fn num_queues(&self) -> u16 {
        self.queues
    }
    fn config(&self) -> Vec<u8> {
        Vec::new()
    }
    fn start_worker(
        &self,
        _queues: &[u16],
        _features: u64,
        _events: Arc<dyn DeviceEvents>,
    ) -> Result<Box<dyn QueueWorker>, DeviceError> {
        Ok(Box::new(HolderWorker {
            queue: self.queue,
            hold: self.hold,
            popped: self.popped.clone(),
            held: Vec::new(),
        }))
    }
}

struct HolderWorker {
    queue: u16,
    hold: bool,
    popped: Arc<AtomicUsize>,
    held: Vec<([u8; 16], DescChain)>,
}

impl QueueWorker for HolderWorker {
    fn process(&mut self, queues: &mut QueueSet<'_>) -> Result<(), DeviceError> {
        let Some(mut q) = queues.get(self.queue) else {
            return Ok(());
        };
        let mem = q.mem();
        let echo = |q: &mut ringwork_device::model::QueueCtx<'_>, c: &DescChain, p: &[u8; 16]| {
            let n = c.writer(mem).write(p).map_err(|e| q.chain_error(e))?;
            q.add_used(c.token(), n as u32)
        };
        loop {
            while let Some(c) = q.pop()? {
                self.popped.fetch_add(1, Ordering::SeqCst);
                let mut p = [0u8; 16];
                c.reader(mem).read(&mut p).map_err(|e| q.chain_error(e))?;
                match p[0] {
                    b'H' if self.hold => self.held.push((p, c)),
                    b'R' if self.hold => {
                        if let Some(i) = self.held.iter().position(|(h, _)| h[1] == p[2]) {
                            let (hp, hc) = self.held.remove(i);
                            echo(&mut q, &hc, &hp)?;
                        }
                        echo(&mut q, &c, &p)?;
                    }
                    _ => echo(&mut q, &c, &p)?,
                }
            }
            q.signal()?;
            if !q.enable_notification()? {
                return Ok(());
            }
        }
        // Held buffers are abandoned when the worker goes (quiesce does not
        // complete them), as if the backend had crashed.
    }
}
