//! The network device's workers: what each queue index is ([`Role`],
//! decided from the negotiated features when the worker starts), the
//! worker for it, and [`Group`], one worker serving several queues on one
//! thread ([`NetWorkers`](super::NetWorkers)).

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

/// Most rounds of [`Group`]'s process call in which transmit queues
/// handle one burst each; in the last one they drain their rings.
const ROUNDS: usize = 16;

/// A member of a [`Group`]: transmit workers are kept by type, to run
/// them one burst at a time.
enum Member {
    Tx(TxWorker),
    Other(Box<dyn QueueWorker>),
}

impl Member {
    fn worker(&mut self) -> &mut dyn QueueWorker {
        match self {
            Member::Tx(t) => t,
            Member::Other(w) => w.as_mut(),
        }
    }
}

/// Workers that share a thread, called in turn: transmit queues first,
/// so that a frame a backend turns around at once (the [`Loopback`])
/// reaches its receive queue in the same call. When the group has
/// receive queues, the transmit queues handle one burst per round and
/// the receive queues run between rounds, so a stream is forwarded burst
/// by burst (the driver gets the first frames back while the device
/// still reads the next ones) instead of a whole ring at a time.
///
/// [`Loopback`]: super::Loopback
pub(super) struct Group {
    members: Vec<(Role, Member)>,
    /// Some members are receive queues (transmit queues then go one burst
    /// per round).
    receives: bool,
}

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
        let receives = roles.iter().any(|r| matches!(r, Role::Rx(_)));
        let members = roles
            .into_iter()
            .map(|r| {
                let m = match r {
                    Role::Tx(pair) => Member::Tx(TxWorker::new(shared.clone(), pair, features)),
                    r => Member::Other(start(shared.clone(), r, features)),
                };
                (r, m)
            })
            .collect();
        Self { members, receives }
    }
}

impl QueueWorker for Group {
    fn event_fds(&self) -> Vec<RawFd> {
        self.members
            .iter()
            .flat_map(|(_, m)| match m {
                Member::Tx(t) => t.event_fds(),
                Member::Other(w) => w.event_fds(),
            })
            .collect()
    }

    /// Every member runs, even when an earlier one failed (its queue is
    /// then broken; the others carry on); the first error is returned.
    /// Rounds repeat while a transmit queue stopped after a full burst;
    /// in the last round transmit queues drain their rings, so nothing
    /// is left for a call that may never come.
    fn process(&mut self, queues: &mut QueueSet<'_>) -> Result<(), DeviceError> {
        let mut first = Ok(());
        for round in 1..=ROUNDS {
            let mut more = false;
            // The last round drains the transmit rings.
            let one_burst = self.receives && round < ROUNDS;
            for (_, m) in &mut self.members {
                let r = match m {
                    Member::Tx(t) => t.run(queues, one_burst).map(|m| more |= m),
                    Member::Other(w) => w.process(queues),
                };
                if first.is_ok() {
                    first = r;
                }
            }
            if !more {
                break;
            }
        }
        first
    }

    fn quiesce(&mut self, queues: &mut QueueSet<'_>) -> Result<(), DeviceError> {
        let mut first = Ok(());
        for (_, m) in &mut self.members {
            let r = m.worker().quiesce(queues);
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
