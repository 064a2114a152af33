//! The entropy device (VIRTIO 1.4 §5.4): fills every writable buffer the
//! driver offers with bytes from the operating system's CSPRNG
//! (`getrandom(2)`).
//!
//! Trust and panic contract: chains come from the driver; their readable
//! part is ignored and their writable part is filled up to its length (the
//! device MUST NOT use readable descriptors' contents, §5.4.6.2). Nothing
//! here panics.

use std::sync::Arc;

use ringwork_queue::device::DescChain;
use ringwork_spec::device_id::{DeviceType, VIRTIO_ID_RNG};

use crate::model::{Device, DeviceError, DeviceEvents, QueueSet, QueueWorker};
use crate::ring_features;

/// Bytes written per chain at most (a driver asking for more gets this
/// much; Linux asks for at most a page).
pub const MAX_FILL: usize = 64 * 1024;

/// The entropy device.
#[derive(Debug, Default, Clone)]
pub struct Rng;

impl Rng {
    /// A new entropy device.
    pub fn new() -> Self {
        Self
    }
}

impl Device for Rng {
    fn device_type(&self) -> DeviceType {
        DeviceType(VIRTIO_ID_RNG)
    }
    fn features(&self) -> u64 {
        ring_features()
    }
    fn num_queues(&self) -> u16 {
        ringwork_spec::rng::RNG_NUM_QUEUES
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
        Ok(Box::new(RngWorker {
            chain: DescChain::new(),
            buf: vec![0; 4096],
        }))
    }
}

struct RngWorker {
    chain: DescChain,
    buf: Vec<u8>,
}

/// Fills `buf` from the OS CSPRNG.
pub fn fill_random(buf: &mut [u8]) -> std::io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        let rest = &mut buf[done..];
        #[allow(unsafe_code)]
        // SAFETY: getrandom writes at most `rest.len()` bytes into `rest`,
        // a valid, exclusively borrowed buffer.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        done += n as usize;
    }
    Ok(())
}

impl QueueWorker for RngWorker {
    fn process(&mut self, queues: &mut QueueSet<'_>) -> Result<(), DeviceError> {
        let Some(mut q) = queues.get(ringwork_spec::rng::RNG_REQUESTQ) else {
            return Ok(());
        };
        let mem = q.mem();
        loop {
            while q.pop_into(&mut self.chain)? {
                let mut w = self.chain.writer(mem);
                let mut left = w.remaining().min(MAX_FILL);
                while left > 0 {
                    let n = left.min(self.buf.len());
                    fill_random(&mut self.buf[..n]).map_err(|source| DeviceError::Io {
                        what: "getrandom",
                        source,
                    })?;
                    let wrote = match w.write(&self.buf[..n]) {
                        Ok(n) => n,
                        Err(e) => return Err(q.chain_error(e)),
                    };
                    if wrote == 0 {
                        break;
                    }
                    left -= wrote;
                }
                let len = w.bytes_written();
                q.add_used(self.chain.token(), len)?;
            }
            q.signal()?;
            if !q.enable_notification()? {
                return Ok(());
            }
        }
    }
}
