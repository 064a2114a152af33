//! The balloon's shared state and the host's handle on it
//! ([`BalloonHandle`]): set the target, read the status, ask for fresh
//! statistics or a memory scan, run free page hinting rounds.
//!
//! Panic contract: nothing here panics. A poisoned lock (a panicking
//! thread, never peer input) is recovered: the state stays consistent
//! field by field.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ringwork_spec::balloon::{
    is_hinting_cmd_id, VIRTIO_BALLOON_CMD_ID_DONE, VIRTIO_BALLOON_CMD_ID_STOP,
    VIRTIO_BALLOON_F_FREE_PAGE_HINT, VIRTIO_BALLOON_F_PAGE_POISON, VIRTIO_BALLOON_F_STATS_VQ,
    VIRTIO_BALLOON_PAGE_SIZE,
};

use super::pages::PfnSet;
use super::stats::BalloonStats;
use super::sys::Doorbell;
use crate::model::DeviceEvents;

/// What the handle can fail at.
#[derive(Debug, thiserror::Error)]
pub enum BalloonError {
    /// The driver did not negotiate the feature the operation needs.
    #[error("the driver did not negotiate {0}")]
    NotNegotiated(&'static str),
    /// Setting up the device's event descriptors failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being set up.
        what: &'static str,
        /// The operating-system error.
        #[source]
        source: std::io::Error,
    },
}

/// Counts of what the driver sent, including what was refused.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BalloonCounters {
    /// Buffers used on `inflateq`.
    pub inflate_buffers: u64,
    /// Buffers used on `deflateq`.
    pub deflate_buffers: u64,
    /// Pages added to the balloon.
    pub inflated_pages: u64,
    /// Pages taken out of the balloon.
    pub deflated_pages: u64,
    /// Page frame numbers outside guest memory (logged, skipped).
    pub bad_pfns: u64,
    /// Inflated page frame numbers already in the balloon (discarded
    /// again, counted once in the balloon).
    pub duplicate_inflates: u64,
    /// Deflated page frame numbers not in the balloon (skipped).
    pub unknown_deflates: u64,
    /// Pages deflated while the balloon was at or below the target: what
    /// VIRTIO_BALLOON_F_DEFLATE_ON_OOM allows (§5.5.6.1), a driver
    /// violation otherwise (accepted all the same: the guest has the page).
    pub unrequested_deflates: u64,
    /// Buffers whose length was not a multiple of 4 (the tail ignored),
    /// or that carried more than the per-buffer limit.
    pub malformed_buffers: u64,
    /// Guest pages given back to the host (inflate and reporting).
    pub discarded_pages: u64,
    /// Discards the host kernel refused (logged; the pages stay counted in
    /// the balloon).
    pub discard_failures: u64,
    /// Stats buffers received.
    pub stats_buffers: u64,
    /// Stats buffers the driver added while the device held one (the older
    /// one was returned; §5.5.6.3.1 allows one at a time).
    pub extra_stats_buffers: u64,
    /// Buffers used on `reporting_vq`.
    pub report_buffers: u64,
    /// Reported bytes given back to the host.
    pub reported_bytes: u64,
    /// Reported bytes left alone because VIRTIO_BALLOON_F_PAGE_POISON with
    /// a nonzero `poison_val` forbids changing them (§5.5.6.7.2).
    pub reported_kept_bytes: u64,
}

/// Free page hinting as the device sees it (§5.5.6.5).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FreePageHintStatus {
    /// `free_page_hint_cmd_id` as the configuration space shows it.
    pub cmd_id: u32,
    /// The command ID the driver last announced on `free_page_vq`
    /// (`Some(0)` after its STOP).
    pub driver_cmd_id: Option<u32>,
    /// Rounds started by the host.
    pub rounds: u64,
    /// Whether the driver ended the current round with
    /// VIRTIO_BALLOON_CMD_ID_STOP.
    pub driver_stopped: bool,
    /// Hinted bytes accepted in the current round (reset by a new round).
    pub hinted_bytes: u64,
    /// Hinted bytes ignored because their command ID was not the current
    /// one (§5.5.6.5.2 "MUST ignore").
    pub ignored_bytes: u64,
    /// Output buffers on `free_page_vq` that were not 4 bytes.
    pub malformed: u64,
}

/// Guest memory as the backend sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryUsage {
    /// Bytes of guest memory mapped.
    pub total_bytes: u64,
    /// Bytes of it resident on the host (`mincore`).
    pub resident_bytes: u64,
}

/// A snapshot of the balloon.
#[derive(Debug, Clone)]
pub struct BalloonStatus {
    /// `num_pages`: the pages the host wants in the balloon.
    pub target_pages: u32,
    /// `actual` as the driver last wrote it.
    pub actual_pages: u32,
    /// Pages the device has recorded as inflated.
    pub inflated_pages: u64,
    /// Negotiated features (0 before negotiation).
    pub features: u64,
    /// Whether a worker runs (the driver started the queues).
    pub driver_active: bool,
    /// `poison_val`, when VIRTIO_BALLOON_F_PAGE_POISON was negotiated.
    pub poison_val: Option<u32>,
    /// What the driver sent.
    pub counters: BalloonCounters,
    /// The latest statistics.
    pub stats: Option<BalloonStats>,
    /// How many stats buffers arrived (to wait for a fresh one).
    pub stats_updates: u64,
    /// The last memory scan ([`BalloonHandle::scan_memory`]).
    pub memory: Option<MemoryUsage>,
    /// Memory scans done (to wait for a fresh one).
    pub memory_scans: u64,
    /// Free page hinting.
    pub free_page_hint: FreePageHintStatus,
}

impl BalloonStatus {
    /// Bytes in the balloon by the device's record.
    pub fn inflated_bytes(&self) -> u64 {
        self.inflated_pages * VIRTIO_BALLOON_PAGE_SIZE as u64
    }
}

/// The mutable state shared by the device, its worker and handles.
pub(super) struct State {
    pub target: u32,
    pub actual: u32,
    /// Bytes of `actual` as written so far (committed with the last byte).
    pub actual_staging: [u8; 4],
    pub poison_val: u32,
    pub poison_staging: [u8; 4],
    pub features: u64,
    pub events: Option<Arc<dyn DeviceEvents>>,
    /// Identifies the running worker (0: none).
    pub worker_id: u64,
    pub next_worker_id: u64,
    pub inflated: PfnSet,
    pub counters: BalloonCounters,
    pub stats: Option<BalloonStats>,
    pub stats_wanted: bool,
    pub scan_wanted: bool,
    pub memory: Option<MemoryUsage>,
    pub memory_scans: u64,
    pub hint: FreePageHintStatus,
    pub next_cmd_id: u32,
}

impl State {
    pub(super) fn new(target: u32) -> Self {
        Self {
            target,
            actual: 0,
            actual_staging: [0; 4],
            poison_val: 0,
            poison_staging: [0; 4],
            features: 0,
            events: None,
            worker_id: 0,
            next_worker_id: 1,
            inflated: PfnSet::new(),
            counters: BalloonCounters::default(),
            stats: None,
            stats_wanted: false,
            scan_wanted: false,
            memory: None,
            memory_scans: 0,
            hint: FreePageHintStatus {
                cmd_id: VIRTIO_BALLOON_CMD_ID_DONE,
                ..Default::default()
            },
            next_cmd_id: VIRTIO_BALLOON_CMD_ID_DONE + 1,
        }
    }

    /// Forgets everything the driver negotiated or sent (device reset);
    /// the target and the counters stay.
    pub(super) fn reset(&mut self) {
        let fresh = State::new(self.target);
        *self = State {
            counters: std::mem::take(&mut self.counters),
            next_worker_id: self.next_worker_id,
            next_cmd_id: self.next_cmd_id,
            hint: FreePageHintStatus {
                rounds: self.hint.rounds,
                ..fresh.hint.clone()
            },
            ..fresh
        };
    }

    pub(super) fn has(&self, bit: u32) -> bool {
        self.features & (1 << bit) != 0
    }

    /// Whether reported pages must keep their contents: PAGE_POISON with a
    /// nonzero `poison_val` (a discarded page reads as zeros, which only
    /// equals a poison value of 0; §5.5.6.7.2).
    pub(super) fn must_preserve_reported(&self) -> bool {
        self.has(VIRTIO_BALLOON_F_PAGE_POISON) && self.poison_val != 0
    }

    /// Whether hints carrying the driver's last command ID count now.
    pub(super) fn accepting_hints(&self) -> bool {
        is_hinting_cmd_id(self.hint.cmd_id) && self.hint.driver_cmd_id == Some(self.hint.cmd_id)
    }
}

/// State plus the worker's doorbell and a condition for waiters.
pub(super) struct Shared {
    state: Mutex<State>,
    pub cond: Condvar,
    pub doorbell: Doorbell,
}

impl Shared {
    pub(super) fn new(target: u32) -> Result<Self, BalloonError> {
        Ok(Self {
            state: Mutex::new(State::new(target)),
            cond: Condvar::new(),
            doorbell: Doorbell::new().map_err(|source| BalloonError::Io {
                what: "balloon doorbell eventfd",
                source,
            })?,
        })
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A thread-safe handle on a [`Balloon`](super::Balloon): what the host
/// (a VMM, the `ringwork serve balloon` control socket) uses.
#[derive(Clone)]
pub struct BalloonHandle {
    pub(super) shared: Arc<Shared>,
}

impl core::fmt::Debug for BalloonHandle {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("BalloonHandle").finish_non_exhaustive()
    }
}

impl BalloonHandle {
    /// Sets `num_pages`, the pages the host wants in the balloon, and sends
    /// a configuration change notification (§5.5.6: the driver acts on
    /// it). Returns whether the notification went out (`false` while no
    /// driver runs: it reads the target when it starts).
    pub fn set_target_pages(&self, pages: u32) -> bool {
        let events = {
            let mut st = self.shared.lock();
            st.target = pages;
            st.events.clone().filter(|_| st.worker_id != 0)
        };
        match events {
            Some(e) => {
                e.config_changed();
                true
            }
            None => false,
        }
    }

    /// The current target in pages.
    pub fn target_pages(&self) -> u32 {
        self.shared.lock().target
    }

    /// A snapshot of the balloon.
    pub fn status(&self) -> BalloonStatus {
        let st = self.shared.lock();
        BalloonStatus {
            target_pages: st.target,
            actual_pages: st.actual,
            inflated_pages: st.inflated.len(),
            features: st.features,
            driver_active: st.worker_id != 0,
            poison_val: st
                .has(VIRTIO_BALLOON_F_PAGE_POISON)
                .then_some(st.poison_val),
            counters: st.counters.clone(),
            stats: st.stats.clone(),
            stats_updates: st.counters.stats_buffers,
            memory: st.memory,
            memory_scans: st.memory_scans,
            free_page_hint: st.hint.clone(),
        }
    }

    /// Asks the driver for fresh statistics: the device returns the stats
    /// buffer it holds (§5.5.6.3). Fails without VIRTIO_BALLOON_F_STATS_VQ.
    pub fn request_stats(&self) -> Result<(), BalloonError> {
        {
            let mut st = self.shared.lock();
            if !st.has(VIRTIO_BALLOON_F_STATS_VQ) {
                return Err(BalloonError::NotNegotiated("VIRTIO_BALLOON_F_STATS_VQ"));
            }
            st.stats_wanted = true;
        }
        self.shared.doorbell.ring();
        Ok(())
    }

    /// Waits until more than `seen` stats buffers have arrived (see
    /// [`BalloonStatus::stats_updates`]); `false` on timeout.
    pub fn wait_stats(&self, seen: u64, timeout: Duration) -> bool {
        self.wait(timeout, |st| st.counters.stats_buffers > seen)
    }

    /// Asks the worker to measure guest memory residency (non-blocking;
    /// the result shows in [`BalloonStatus::memory`] once
    /// [`BalloonStatus::memory_scans`] moves). Returns the current scan
    /// count.
    pub fn request_memory_scan(&self) -> u64 {
        let n = {
            let mut st = self.shared.lock();
            st.scan_wanted = true;
            st.memory_scans
        };
        self.shared.doorbell.ring();
        n
    }

    /// Measures guest memory residency through the worker and waits for
    /// the result; `None` when no worker ran it within `timeout`.
    pub fn scan_memory(&self, timeout: Duration) -> Option<MemoryUsage> {
        let n = self.request_memory_scan();
        self.wait(timeout, |st| st.memory_scans > n)
            .then(|| self.shared.lock().memory)
            .flatten()
    }

    fn wait(&self, timeout: Duration, done: impl Fn(&State) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let mut st = self.shared.lock();
        loop {
            if done(&st) {
                return true;
            }
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return false;
            };
            st = match self.shared.cond.wait_timeout(st, left) {
                Ok((g, _)) => g,
                Err(e) => e.into_inner().0,
            };
        }
    }

    /// Starts a free page hinting round (§5.5.6.5): a fresh command ID
    /// (never reused before the driver's STOP: IDs only grow) goes into
    /// `free_page_hint_cmd_id` and the driver is notified. Returns the ID.
    pub fn start_free_page_hint(&self) -> Result<u32, BalloonError> {
        self.set_cmd_id(|st| {
            let id = st.next_cmd_id;
            st.next_cmd_id = match id.checked_add(1) {
                Some(n) => n,
                None => VIRTIO_BALLOON_CMD_ID_DONE + 1,
            };
            st.hint.rounds += 1;
            st.hint.hinted_bytes = 0;
            st.hint.driver_stopped = false;
            id
        })
    }

    /// Stops hinting, keeping hinted pages hinted: `free_page_hint_cmd_id`
    /// becomes VIRTIO_BALLOON_CMD_ID_STOP (what a device SHOULD do when it
    /// cannot use hints, §5.5.6.5.2).
    pub fn stop_free_page_hint(&self) -> Result<(), BalloonError> {
        self.set_cmd_id(|_| VIRTIO_BALLOON_CMD_ID_STOP).map(drop)
    }

    /// Ends hinting and releases the hinted pages to the guest:
    /// `free_page_hint_cmd_id` becomes VIRTIO_BALLOON_CMD_ID_DONE (the
    /// device MUST report DONE when it no longer needs them, §5.5.6.5.2;
    /// the device never modified them).
    pub fn finish_free_page_hint(&self) -> Result<(), BalloonError> {
        self.set_cmd_id(|_| VIRTIO_BALLOON_CMD_ID_DONE).map(drop)
    }

    fn set_cmd_id(&self, pick: impl FnOnce(&mut State) -> u32) -> Result<u32, BalloonError> {
        let (id, events) = {
            let mut st = self.shared.lock();
            if !st.has(VIRTIO_BALLOON_F_FREE_PAGE_HINT) {
                return Err(BalloonError::NotNegotiated(
                    "VIRTIO_BALLOON_F_FREE_PAGE_HINT",
                ));
            }
            let id = pick(&mut st);
            st.hint.cmd_id = id;
            (id, st.events.clone())
        };
        if let Some(e) = events {
            e.config_changed();
        }
        Ok(id)
    }
}
