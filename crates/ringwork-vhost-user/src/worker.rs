//! Worker threads: one per group of queues ([`Device::worker_map`]), each
//! waiting on its queues' kick eventfds and its device worker's own file
//! descriptors, and calling [`QueueWorker::process`].
//!
//! The control thread (the one reading the socket) changes a group's
//! state under its mutex: it adds and removes running queues, swaps guest
//! memory, and creates or drops the device worker. A worker thread holds
//! the mutex only while processing.
//!
//! Trust and panic contract: errors from processing (a broken ring, a
//! failed backend) are logged, signalled on the queue's error eventfd when
//! the frontend gave one, and mark the device as needing reset; the thread
//! keeps serving the other queues. Nothing panics on peer input.
//!
//! [`Device::worker_map`]: ringwork_device::model::Device::worker_map

use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Instant;

use ringwork_device::model::{DeviceError, Memory, QueueSet, QueueWorker, RunningQueue};
use ringwork_queue::QueuePosition;

use crate::poll::PollPolicy;
use crate::sys::{Epoll, EventFd};

const WAKE: u64 = u64::MAX;
const DEVICE_FD: u64 = 1 << 32;

/// A running queue's host-side descriptors.
#[derive(Debug, Clone)]
pub(crate) struct QueueFds {
    pub index: u16,
    pub kick: Option<Arc<EventFd>>,
    pub err: Option<Arc<EventFd>>,
}

/// What a worker thread works on.
pub(crate) struct GroupState {
    pub mem: Arc<Memory>,
    pub queues: Vec<RunningQueue>,
    pub fds: Vec<QueueFds>,
    pub worker: Option<Box<dyn QueueWorker>>,
    device_fds: Vec<RawFd>,
    /// Scratch: ring positions before a `process` call.
    positions: Vec<QueuePosition>,
}

/// One group's shared state.
pub(crate) struct Group {
    pub state: Mutex<GroupState>,
    epoll: Epoll,
    wake: EventFd,
    stop: AtomicBool,
    /// Set when processing failed (the device needs a reset).
    pub failed: Arc<AtomicBool>,
    /// How long to poll the rings after processing before sleeping.
    poll: PollPolicy,
    /// Times the thread woke from `epoll_wait` (tests look for spinning).
    #[cfg(test)]
    wakeups: std::sync::atomic::AtomicU64,
}

impl Group {
    pub fn new(
        mem: Arc<Memory>,
        failed: Arc<AtomicBool>,
        poll: PollPolicy,
    ) -> std::io::Result<Arc<Self>> {
        let g = Arc::new(Self {
            state: Mutex::new(GroupState {
                mem,
                queues: Vec::new(),
                fds: Vec::new(),
                worker: None,
                device_fds: Vec::new(),
                positions: Vec::new(),
            }),
            epoll: Epoll::new()?,
            wake: EventFd::new()?,
            stop: AtomicBool::new(false),
            failed,
            poll,
            #[cfg(test)]
            wakeups: std::sync::atomic::AtomicU64::new(0),
        });
        g.epoll.add(g.wake.as_raw_fd(), WAKE)?;
        Ok(g)
    }

    pub fn lock(&self) -> MutexGuard<'_, GroupState> {
        // A worker thread that panicked (a bug, not peer input) poisons the
        // lock; the state is still consistent enough to stop queues.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a kick eventfd for `queue`.
    pub fn watch_kick(&self, queue: u16, kick: &EventFd) -> std::io::Result<()> {
        self.epoll.add(kick.as_raw_fd(), u64::from(queue))
    }

    /// Unregisters a kick eventfd.
    pub fn unwatch(&self, fd: RawFd) {
        self.epoll.remove(fd);
    }

    /// Makes the thread call `process` soon.
    pub fn wake(&self) {
        if let Err(e) = self.wake.signal() {
            tracing::warn!("waking a worker thread failed: {e}");
        }
    }

    /// Starts the thread.
    pub fn spawn(self: &Arc<Self>, name: String) -> std::io::Result<JoinHandle<()>> {
        let g = self.clone();
        std::thread::Builder::new()
            .name(name)
            .spawn(move || g.run())
    }

    /// Asks the thread to end (it finishes the current `process` first).
    pub fn shutdown(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.wake();
    }

    /// Polls the running queues' rings until `deadline` (the group's lock
    /// held: the control thread waits at most that long); true when one
    /// has buffers that were not popped yet (or cannot be read: `process`
    /// reports that). Buffers found this way were made available while
    /// notifications were enabled, so their kick is read on the next wake.
    fn poll_rings(&self, deadline: Option<Instant>) -> bool {
        let Some(deadline) = deadline else {
            return false;
        };
        let st = self.lock();
        if st.worker.is_none() || st.queues.is_empty() {
            return false;
        }
        let mem = &*st.mem;
        loop {
            // The deadline first: a ring holding buffers the worker leaves
            // there (a receive queue waiting for input, a broken ring) must
            // not keep the thread from sleeping once the window has passed.
            if Instant::now() >= deadline || self.stop.load(Ordering::Relaxed) {
                return false;
            }
            if st
                .queues
                .iter()
                .any(|q| q.queue.has_available(mem).unwrap_or(true))
            {
                return true;
            }
            for _ in 0..16 {
                std::hint::spin_loop();
            }
        }
    }

    /// The worker loop. With a poll window (fixed, or adapted after each
    /// sleep: [`PollPolicy`]), the rings are polled (and the worker called
    /// while they have buffers) until the window has passed since the
    /// worker last made progress, i.e. popped or completed a
    /// buffer: a receive queue full of buffers waiting for input keeps
    /// the thread polling only while input keeps coming. While polling,
    /// the driver is asked not to notify ([`QueueSet::polling`]); when the
    /// window closes, notifications are enabled again and the worker
    /// called once more before the thread sleeps.
    fn run(&self) {
        let mut ready = Vec::new();
        // The polling window: fixed, or adapted after every sleep.
        let mut window = self.poll.initial_window();
        let mut last_work = Instant::now();
        let mut polled = false;
        loop {
            let deadline = (!window.is_zero()).then(|| last_work + window);
            if self.poll_rings(deadline) {
                if self.stop.load(Ordering::Relaxed) {
                    return;
                }
                let mut st = self.lock();
                polled = true;
                if self.process(&mut st, true) {
                    last_work = Instant::now();
                }
                continue;
            }
            if polled {
                polled = false;
                let mut st = self.lock();
                let GroupState { mem, queues, .. } = &mut *st;
                QueueSet::new(mem, queues).resume_notifications();
                if self.process(&mut st, false) {
                    last_work = Instant::now();
                    continue;
                }
            }
            if let Err(e) = self.epoll.wait(&mut ready, -1) {
                tracing::error!("worker epoll failed: {e}");
                return;
            }
            #[cfg(test)]
            self.wakeups.fetch_add(1, Ordering::Relaxed);
            window = self.poll.next_window(window, last_work.elapsed());
            // Drain the wake eventfd before looking at `stop`: `shutdown`
            // sets `stop` and then signals, so a signal drained here is
            // always followed by a look that sees `stop`. (Looking first
            // could drain shutdown's signal after seeing `stop` unset, and
            // the thread would then sleep forever.)
            if ready.contains(&WAKE) {
                let _ = self.wake.drain();
            }
            if self.stop.load(Ordering::SeqCst) {
                return;
            }
            tracing::trace!(?ready, "worker woke");
            let mut st = self.lock();
            // Reset the kick eventfds that fired (tokens below DEVICE_FD
            // are queue indices); the others are not read. A kick
            // descriptor that cannot be read (a pipe or socket at end of
            // file, which stays readable for ever) is no longer watched:
            // otherwise this thread would wake without end. The queue
            // then runs on other wake-ups only, until a new SET_VRING_KICK
            // (a restart of the queue watches the same descriptor again,
            // and it is dropped again at its first wake).
            for f in &st.fds {
                if let Some(k) = f
                    .kick
                    .as_ref()
                    .filter(|_| ready.contains(&u64::from(f.index)))
                {
                    if let Err(e) = k.drain().or_else(|e| match e.kind() {
                        std::io::ErrorKind::Interrupted => Ok(0),
                        _ => Err(e),
                    }) {
                        tracing::warn!(
                            queue = f.index,
                            "kick descriptor unreadable ({e}): no longer watched"
                        );
                        self.epoll.remove(k.as_raw_fd());
                    }
                }
            }
            self.process(&mut st, false);
            last_work = Instant::now();
        }
    }

    /// Calls the worker (told whether the host is polling); true when it
    /// made progress (a queue's ring position moved).
    fn process(&self, st: &mut GroupState, polling: bool) -> bool {
        let GroupState {
            mem,
            queues,
            fds,
            worker,
            device_fds,
            positions,
        } = st;
        let Some(worker) = worker.as_mut() else {
            return false;
        };
        if queues.is_empty() {
            return false;
        }
        positions.clear();
        positions.extend(queues.iter().map(|q| q.queue.position()));
        let mut set = if polling {
            QueueSet::polling(mem, queues)
        } else {
            QueueSet::new(mem, queues)
        };
        let r = worker.process(&mut set).and_then(|()| set.signal_all());
        if let Err(e) = r {
            self.report(&e, fds);
        }
        // Positions only move forward, and a call cannot take a queue
        // round a whole lap unnoticed (it would have popped buffers).
        let moved = queues.len() != positions.len()
            || queues
                .iter()
                .zip(positions.iter())
                .any(|(q, p)| q.queue.position() != *p);
        // Re-query the worker's descriptors (it returns only those it can
        // serve now, so level-triggered readiness cannot spin). Only
        // before the thread may sleep: while polling nothing waits on them
        // (and the query allocates).
        if polling {
            return moved;
        }
        let now = worker.event_fds();
        if now != *device_fds {
            for fd in device_fds.iter() {
                self.epoll.remove(*fd);
            }
            for (i, fd) in now.iter().enumerate() {
                if let Err(e) = self.epoll.add(*fd, DEVICE_FD | i as u64) {
                    tracing::warn!("watching device fd {fd} failed: {e}");
                }
            }
            *device_fds = now;
        }
        moved
    }

    fn report(&self, e: &DeviceError, fds: &[QueueFds]) {
        tracing::error!("device error: {e}");
        self.failed.store(true, Ordering::SeqCst);
        if let DeviceError::Queue { queue, .. } = e {
            if let Some(err) = fds
                .iter()
                .find(|f| f.index == *queue)
                .and_then(|f| f.err.as_ref())
            {
                let _ = err.signal();
            }
        }
    }

    /// Stops `queue`: lets the worker finish in-flight work, then removes
    /// it from the running set and returns it. Drops the device worker
    /// when no queue is left running.
    pub fn take_queue(&self, queue: u16) -> Option<RunningQueue> {
        let mut st = self.lock();
        let pos = st.queues.iter().position(|q| q.index == queue)?;
        let GroupState {
            mem,
            queues,
            fds,
            worker,
            ..
        } = &mut *st;
        if let Some(w) = worker.as_mut() {
            let mut set = QueueSet::new(mem, queues);
            if let Err(e) = w.quiesce(&mut set).and_then(|()| set.signal_all()) {
                self.report(&e, fds);
            }
        }
        let q = st.queues.remove(pos);
        if let Some(i) = st.fds.iter().position(|f| f.index == queue) {
            let f = st.fds.remove(i);
            if let Some(k) = f.kick {
                self.epoll.remove(k.as_raw_fd());
            }
        }
        if st.queues.is_empty() {
            let old: Vec<RawFd> = std::mem::take(&mut st.device_fds);
            for fd in old {
                self.epoll.remove(fd);
            }
            st.worker = None;
        }
        Some(q)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A kick descriptor at end of file (here a socket whose peer is
    /// gone, as a hostile frontend can send) is readable for ever; the
    /// thread must stop watching it instead of waking without end.
    #[test]
    fn kick_descriptor_at_end_of_file_is_not_watched_for_ever() {
        let g = Group::new(
            Arc::new(Memory::new()),
            Arc::new(AtomicBool::new(false)),
            PollPolicy::fixed(Duration::ZERO),
        )
        .unwrap();
        let (rd, wr) = std::os::unix::net::UnixStream::pair().unwrap();
        let rd = std::os::fd::OwnedFd::from(rd);
        // As the backend treats a descriptor the frontend sends.
        crate::sys::set_nonblocking(std::os::fd::AsFd::as_fd(&rd)).unwrap();
        let kick = Arc::new(EventFd::from_owned(rd));
        g.watch_kick(0, &kick).unwrap();
        g.lock().fds.push(QueueFds {
            index: 0,
            kick: Some(kick.clone()),
            err: None,
        });
        let t = g.spawn("test-eof".into()).unwrap();
        drop(wr);
        std::thread::sleep(Duration::from_millis(300));
        let n = g.wakeups.load(Ordering::Relaxed);
        g.shutdown();
        t.join().unwrap();
        // Once for the end of file, once more at most (shutdown's wake is
        // after the read); a thread spinning on it wakes thousands of times.
        assert!(n <= 2, "the worker woke {n} times on a kick at end of file");
    }

    /// A wake just before `shutdown` (an in-band VRING_KICK, which the
    /// backend accepted at the time, then the connection closing) must
    /// not leave the thread asleep: it once
    /// drained shutdown's signal after having seen `stop` unset, and the
    /// connection's drop then waited forever in `join` (found by the
    /// `backend_messages` fuzz target). The race window is small, so the
    /// sequence runs many times; a thread that does not end in time fails
    /// the test instead of hanging it.
    #[test]
    fn shutdown_right_after_a_wake_always_ends_the_thread() {
        for i in 0..2000u64 {
            let g = Group::new(
                Arc::new(Memory::new()),
                Arc::new(AtomicBool::new(false)),
                PollPolicy::fixed(Duration::ZERO),
            )
            .unwrap();
            let t = g.spawn(format!("test-{i}")).unwrap();
            g.wake();
            // Shut down at varying moments of the thread's wake-up.
            let until = Instant::now() + Duration::from_nanos((i % 97) * 500);
            while Instant::now() < until {
                std::hint::spin_loop();
            }
            g.shutdown();
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let _ = t.join();
                let _ = tx.send(());
            });
            assert!(
                rx.recv_timeout(Duration::from_secs(10)).is_ok(),
                "round {i}: the worker thread did not end after shutdown"
            );
        }
    }
}
