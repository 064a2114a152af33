//! The network device's workers: what each queue index is ([`Role`],
//! decided from the negotiated features when the worker starts), the
//! worker for it, and [`Group`], one worker serving several queues on one
//! thread ([`NetWorkers`]).

use std::os::fd::RawFd;
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

/// Workers that share a thread, called in turn: transmit queues first,
/// so that a frame a backend turns around at once (the [`Loopback`])
/// reaches its receive queue in the same call.
///
/// [`Loopback`]: super::Loopback
pub(super) struct Group(pub Vec<(Role, Box<dyn QueueWorker>)>);

impl Group {
    /// The workers for `roles`, transmit queues first.
    pub fn new(shared: &Arc<Shared>, mut roles: Vec<Role>, features: u64) -> Self {
        roles.sort_by_key(|r| match r {
            Role::Tx(_) => 0,
            Role::Rx(_) => 1,
            Role::Ctrl => 2,
            Role::Idle => 3,
        });
        roles.retain(|r| *r != Role::Idle);
        Self(
            roles
                .into_iter()
                .map(|r| (r, start(shared.clone(), r, features)))
                .collect(),
        )
    }
}

impl QueueWorker for Group {
    fn event_fds(&self) -> Vec<RawFd> {
        self.0.iter().flat_map(|(_, w)| w.event_fds()).collect()
    }

    /// Every member runs, even when an earlier one failed (its queue is
    /// then broken; the others carry on); the first error is returned.
    fn process(&mut self, queues: &mut QueueSet<'_>) -> Result<(), DeviceError> {
        let mut first = Ok(());
        for (_, w) in &mut self.0 {
            let r = w.process(queues);
            if first.is_ok() {
                first = r;
            }
        }
        first
    }

    fn quiesce(&mut self, queues: &mut QueueSet<'_>) -> Result<(), DeviceError> {
        let mut first = Ok(());
        for (_, w) in &mut self.0 {
            let r = w.quiesce(queues);
            if first.is_ok() {
                first = r;
            }
        }
        first
    }
}

/// A queue with no role: its buffers are left alone.
struct Idle;

impl QueueWorker for Idle {
    fn process(&mut self, _queues: &mut QueueSet<'_>) -> Result<(), DeviceError> {
        Ok(())
    }
}
