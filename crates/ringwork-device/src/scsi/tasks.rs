//! The task set: commands a request worker has popped and not yet
//! completed, so that task management functions on the control queue can
//! find them (QUERY TASK), and wait for them before they complete (ABORT
//! TASK, LOGICAL UNIT RESET, ...: VIRTIO 1.4 §5.6.6.2 requires their
//! effects on active commands to happen before the TMF completes).
//!
//! Commands complete synchronously inside one `process` call, so a TMF
//! never has to cancel anything: it waits (bounded) until the commands it
//! addresses have been completed on their queues.
//!
//! Panic contract: nothing here panics; poisoning is ignored (the set is
//! only ever inserted into and removed from).

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// One active command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Task {
    /// Target.
    pub target: u8,
    /// LUN.
    pub lun: u16,
    /// The driver's command identifier.
    pub id: u64,
}

/// The active commands of a device.
#[derive(Debug, Default)]
pub(crate) struct Tasks {
    active: Mutex<Vec<Task>>,
    done: Condvar,
}

/// Removes its task from the set when dropped (after the command was
/// completed on its queue).
#[derive(Debug)]
pub(crate) struct TaskGuard<'a> {
    tasks: &'a Tasks,
    task: Task,
}

impl Drop for TaskGuard<'_> {
    fn drop(&mut self) {
        let mut a = self.tasks.lock();
        if let Some(i) = a.iter().position(|t| *t == self.task) {
            a.swap_remove(i);
        }
        drop(a);
        self.tasks.done.notify_all();
    }
}

impl Tasks {
    fn lock(&self) -> MutexGuard<'_, Vec<Task>> {
        self.active.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records an active command until the guard is dropped.
    pub(crate) fn begin(&self, task: Task) -> TaskGuard<'_> {
        self.lock().push(task);
        TaskGuard { tasks: self, task }
    }

    /// Whether a command matching `f` is active.
    pub(crate) fn any(&self, f: impl Fn(&Task) -> bool) -> bool {
        self.lock().iter().any(f)
    }

    /// Waits until no command matching `f` is active; `false` when some
    /// still are after `timeout`.
    pub(crate) fn wait_idle(&self, f: impl Fn(&Task) -> bool, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut a = self.lock();
        loop {
            if !a.iter().any(&f) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            a = match self.done.wait_timeout(a, deadline - now) {
                Ok((g, _)) => g,
                Err(e) => e.into_inner().0,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn wait_for_other_thread() {
        let tasks = Arc::new(Tasks::default());
        let t = Task {
            target: 1,
            lun: 2,
            id: 3,
        };
        let (tx, rx) = std::sync::mpsc::channel();
        let th = {
            let tasks = tasks.clone();
            std::thread::spawn(move || {
                let g = tasks.begin(t);
                tx.send(()).unwrap();
                std::thread::sleep(Duration::from_millis(50));
                drop(g);
            })
        };
        rx.recv().unwrap();
        assert!(tasks.any(|x| x.id == 3));
        assert!(!tasks.wait_idle(|x| x.lun == 2, Duration::from_millis(1)));
        assert!(tasks.wait_idle(|x| x.lun == 2, Duration::from_secs(10)));
        assert!(!tasks.any(|_| true));
        th.join().unwrap();
    }
}
