//! The network device's workers, one per queue: what each queue index is
//! ([`Role`], decided from the negotiated features when the worker starts)
//! and the worker for it.

use std::sync::Arc;

use super::ctrl::CtrlWorker;
use super::device::Shared;
use super::rx::RxWorker;
use super::tx::TxWorker;
use crate::model::{DeviceError, QueueSet, QueueWorker};

/// What a queue is, given the negotiated features (VIRTIO 1.4 §5.1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    /// receiveq(pair + 1).
    Rx(u16),
    /// transmitq(pair + 1).
    Tx(u16),
    /// The controlq.
    Ctrl,
    /// An index with no role under these features (e.g. the queues past
    /// pair 1 when VIRTIO_NET_F_MQ was not negotiated).
    Idle,
}

/// Creates the worker for `role`.
pub(super) fn start(shared: Arc<Shared>, role: Role, features: u64) -> Box<dyn QueueWorker> {
    match role {
        Role::Rx(pair) => Box::new(RxWorker::new(shared, pair, features)),
        Role::Tx(pair) => Box::new(TxWorker::new(shared, pair, features)),
        Role::Ctrl => Box::new(CtrlWorker::new(shared, features)),
        Role::Idle => Box::new(Idle),
    }
}

/// A queue with no role: its buffers are left alone.
struct Idle;

impl QueueWorker for Idle {
    fn process(&mut self, _queues: &mut QueueSet<'_>) -> Result<(), DeviceError> {
        Ok(())
    }
}
