//! The traditional memory balloon device (VIRTIO 1.4 §5.5), device side.
//!
//! ```
//! use ringwork_device::balloon::{Balloon, BalloonOptions};
//! use ringwork_device::model::Device;
//!
//! let balloon = Balloon::new(BalloonOptions {
//!     free_page_hint: true,
//!     ..BalloonOptions::default()
//! })?;
//! let handle = balloon.handle();
//! // No driver yet: the target waits in the configuration space.
//! assert!(!handle.set_target_pages(16384));
//! assert_eq!(&balloon.config()[..4], &16384u32.to_le_bytes());
//! assert_eq!(balloon.num_queues(), 4); // inflate, deflate, stats, free page
//! # Ok::<(), ringwork_device::balloon::BalloonError>(())
//! ```
//!
//! The host sets the target (`num_pages`) through a [`BalloonHandle`]; the
//! handle sends a configuration change notification through the
//! [`DeviceEvents`] the host gave the latest worker (vhost-user:
//! `VHOST_USER_BACKEND_CONFIG_CHANGE_MSG`). The driver inflates (the
//! device records each page and gives it back to the host: `MADV_REMOVE`
//! on the shared guest memory, see [`pages`]) and deflates, and writes
//! `actual`. What the worker does per queue is under [Queues](self#queues).
//!
//! Features offered (by [`BalloonOptions`]): the
//! [ring features](crate::ring_features), `MUST_TELL_HOST` and
//! `STATS_VQ` (default on), `DEFLATE_ON_OOM`, `FREE_PAGE_HINT`,
//! `PAGE_POISON`, `PAGE_REPORTING` (default off). Queue numbers follow the
//! negotiated features ([`BalloonQueues`]); the device offers as many
//! queues as its offered features need, and one worker serves them all.
//!
//! Feature semantics on the device side:
//! * `MUST_TELL_HOST`: pages are only modified (discarded) while an inflate
//!   request is being handled, before it is used, so the driver may reuse
//!   deflated pages as early as either rule allows; the device does not
//!   refuse FEATURES_OK without it (§5.5.3.2 "MAY").
//! * `DEFLATE_ON_OOM`: deflates are accepted whenever they come; those that
//!   take the balloon below its target are counted
//!   ([`BalloonCounters::unrequested_deflates`]) and, without the feature,
//!   logged as a driver violation (§5.5.6.1).
//! * `PAGE_POISON`: `poison_val` is driver-writable; with a nonzero value,
//!   reported pages are not discarded (§5.5.6.7.2). Inflated pages are
//!   discarded either way (the driver writes the poison value after
//!   deflating, §5.5.6.6).
//! * `FREE_PAGE_HINT`: rounds run by the handle (start, stop, finish), see
//!   [`BalloonHandle::start_free_page_hint`]; hints are counted, never
//!   acted on.
//!
//! # Queues
//! * `inflateq`: each le32 page frame number is checked against guest
//!   memory, recorded, and its page discarded *before* the buffer is used
//!   (the device may modify it until then, §5.5.6.1).
//! * `deflateq`: page frame numbers leave the record (a discarded page
//!   faults in as zeros when the guest touches it again).
//! * `statsq`: the device holds the driver's buffer and returns it to ask
//!   for fresh statistics ([`BalloonOptions::stats_interval`],
//!   [`BalloonHandle::request_stats`]); see [`stats`] for parsing.
//! * `free_page_vq`: command IDs and hinted pages, counted while the
//!   driver's command ID is the current one.
//! * `reporting_vq`: reported ranges are discarded before the buffer is
//!   used, unless PAGE_POISON with a nonzero `poison_val` forbids it.
//!
//! Trust and panic contract: the driver is hostile. Page frame numbers
//! are checked against guest memory one by one; the record of inflated
//! pages is bounded by guest memory; buffers are read through the chain
//! reader only, malformed ones are used with length 0 and counted;
//! configuration writes touch only `actual` and (with PAGE_POISON)
//! `poison_val`. Nothing panics on driver input.

mod handle;
pub mod pages;
pub mod stats;
mod sys;
mod worker;

use std::sync::Arc;
use std::time::Duration;

use ringwork_spec::balloon::{
    BalloonConfig, BalloonQueues, BALLOON_CONFIG_ACTUAL_OFFSET, BALLOON_CONFIG_POISON_VAL_OFFSET,
    BALLOON_CONFIG_SIZE, VIRTIO_BALLOON_F_DEFLATE_ON_OOM, VIRTIO_BALLOON_F_FREE_PAGE_HINT,
    VIRTIO_BALLOON_F_MUST_TELL_HOST, VIRTIO_BALLOON_F_PAGE_POISON, VIRTIO_BALLOON_F_PAGE_REPORTING,
    VIRTIO_BALLOON_F_STATS_VQ,
};
use ringwork_spec::device_id::{DeviceType, VIRTIO_ID_BALLOON};

pub use handle::{
    BalloonCounters, BalloonError, BalloonHandle, BalloonStatus, FreePageHintStatus, MemoryUsage,
};
pub use stats::BalloonStats;
pub use worker::MAX_PFNS_PER_BUFFER;

use crate::model::{Device, DeviceError, DeviceEvents, QueueWorker};
use crate::ring_features;
use handle::Shared;

/// What the balloon offers and how it behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BalloonOptions {
    /// `num_pages` before the host sets it (4 KiB pages).
    pub target_pages: u32,
    /// Offer VIRTIO_BALLOON_F_MUST_TELL_HOST (default on).
    pub must_tell_host: bool,
    /// Offer VIRTIO_BALLOON_F_STATS_VQ (default on).
    pub stats_vq: bool,
    /// Ask for fresh statistics this often (with STATS_VQ); `None`: only
    /// on demand ([`BalloonHandle::request_stats`]).
    pub stats_interval: Option<Duration>,
    /// Offer VIRTIO_BALLOON_F_DEFLATE_ON_OOM.
    pub deflate_on_oom: bool,
    /// Offer VIRTIO_BALLOON_F_FREE_PAGE_HINT.
    pub free_page_hint: bool,
    /// Offer VIRTIO_BALLOON_F_PAGE_POISON.
    pub page_poison: bool,
    /// Offer VIRTIO_BALLOON_F_PAGE_REPORTING.
    pub page_reporting: bool,
}

impl Default for BalloonOptions {
    fn default() -> Self {
        Self {
            target_pages: 0,
            must_tell_host: true,
            stats_vq: true,
            stats_interval: None,
            deflate_on_oom: false,
            free_page_hint: false,
            page_poison: false,
            page_reporting: false,
        }
    }
}

/// The balloon device. See the [module docs](self).
pub struct Balloon {
    shared: Arc<Shared>,
    features: u64,
    queues: BalloonQueues,
    stats_interval: Option<Duration>,
}

impl core::fmt::Debug for Balloon {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Balloon")
            .field("features", &self.features)
            .field("queues", &self.queues)
            .finish_non_exhaustive()
    }
}

impl Balloon {
    /// A balloon offering what `opts` asks for.
    pub fn new(opts: BalloonOptions) -> Result<Self, BalloonError> {
        let mut features = ring_features();
        for (on, bit) in [
            (opts.must_tell_host, VIRTIO_BALLOON_F_MUST_TELL_HOST),
            (opts.stats_vq, VIRTIO_BALLOON_F_STATS_VQ),
            (opts.deflate_on_oom, VIRTIO_BALLOON_F_DEFLATE_ON_OOM),
            (opts.free_page_hint, VIRTIO_BALLOON_F_FREE_PAGE_HINT),
            (opts.page_poison, VIRTIO_BALLOON_F_PAGE_POISON),
            (opts.page_reporting, VIRTIO_BALLOON_F_PAGE_REPORTING),
        ] {
            if on {
                features |= 1 << bit;
            }
        }
        Ok(Self {
            shared: Arc::new(Shared::new(opts.target_pages)?),
            features,
            queues: BalloonQueues::from_bits(features),
            stats_interval: opts.stats_interval.filter(|_| opts.stats_vq),
        })
    }

    /// A handle for the host: target, status, statistics, hinting.
    pub fn handle(&self) -> BalloonHandle {
        BalloonHandle {
            shared: self.shared.clone(),
        }
    }
}

/// Merges a driver write into a 4-byte field at `field` (config offset)
/// held in `staging`; returns whether the field's last byte was written.
fn merge(staging: &mut [u8; 4], field: usize, offset: u64, data: &[u8]) -> (bool, bool) {
    let (mut touched, mut last) = (false, false);
    for (i, slot) in staging.iter_mut().enumerate() {
        let at = (field + i) as u64;
        let Some(rel) = at.checked_sub(offset) else {
            continue;
        };
        if let Some(&b) = usize::try_from(rel).ok().and_then(|r| data.get(r)) {
            *slot = b;
            touched = true;
            last |= i == 3;
        }
    }
    (touched, last)
}

impl Device for Balloon {
    fn device_type(&self) -> DeviceType {
        DeviceType(VIRTIO_ID_BALLOON)
    }

    fn features(&self) -> u64 {
        self.features
    }

    fn num_queues(&self) -> u16 {
        self.queues.num_queues()
    }

    fn config(&self) -> Vec<u8> {
        let st = self.shared.lock();
        let mut b = vec![0u8; BALLOON_CONFIG_SIZE];
        let mut c = BalloonConfig::new_unchecked(&mut b[..]);
        c.set_num_pages(st.target);
        c.set_actual(st.actual);
        c.set_free_page_hint_cmd_id(st.hint.cmd_id);
        c.set_poison_val(st.poison_val);
        b
    }

    /// `actual` is taken when its most significant byte is written (so a
    /// byte-by-byte writer is seen only once complete, as §5.5.6.2.1 asks
    /// of legacy devices); `poison_val` is taken with PAGE_POISON
    /// negotiated. `num_pages` and `free_page_hint_cmd_id` are the device's
    /// and ignore writes.
    fn write_config(&self, offset: u32, data: &[u8]) {
        let offset = u64::from(offset);
        let mut st = self.shared.lock();
        let mut staging = st.actual_staging;
        let (_, commit) = merge(&mut staging, BALLOON_CONFIG_ACTUAL_OFFSET, offset, data);
        st.actual_staging = staging;
        if commit {
            st.actual = u32::from_le_bytes(staging);
            tracing::debug!(
                "balloon: driver reports {} page(s) in the balloon",
                st.actual
            );
        }
        let mut poison = st.poison_staging;
        let (touched, _) = merge(&mut poison, BALLOON_CONFIG_POISON_VAL_OFFSET, offset, data);
        if touched {
            if !st.has(VIRTIO_BALLOON_F_PAGE_POISON) {
                tracing::debug!("balloon: poison_val write without PAGE_POISON ignored");
                return;
            }
            if st.worker_id != 0 {
                tracing::warn!("balloon: driver changed poison_val while running (§5.5.6.6.1)");
            }
            st.poison_staging = poison;
            st.poison_val = u32::from_le_bytes(poison);
        }
    }

    fn set_features(&self, features: u64) {
        self.shared.lock().features = features & self.features;
    }

    fn worker_map(&self) -> Vec<Vec<u16>> {
        vec![(0..self.num_queues()).collect()]
    }

    fn start_worker(
        &self,
        _queues: &[u16],
        features: u64,
        events: Arc<dyn DeviceEvents>,
    ) -> Result<Box<dyn QueueWorker>, DeviceError> {
        let features = features & self.features;
        let ticker = match self
            .stats_interval
            .filter(|_| features & (1 << VIRTIO_BALLOON_F_STATS_VQ) != 0)
        {
            Some(d) => Some(sys::Ticker::new(d).map_err(|source| DeviceError::Io {
                what: "balloon stats timer",
                source,
            })?),
            None => None,
        };
        let id = {
            let mut st = self.shared.lock();
            let id = st.next_worker_id;
            st.next_worker_id += 1;
            st.worker_id = id;
            st.features = features;
            st.events = Some(events);
            id
        };
        Ok(Box::new(worker::BalloonWorker::new(
            self.shared.clone(),
            id,
            features,
            ticker,
        )))
    }

    /// Forgets the driver's state: features, `actual`, `poison_val`, the
    /// record of inflated pages (the driver starts again with an empty
    /// balloon), statistics and hinting. The target stays.
    fn reset(&self) {
        self.shared.lock().reset();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_tracks_bytes() {
        let mut s = [0u8; 4];
        assert_eq!(merge(&mut s, 4, 4, &[1, 2]), (true, false));
        assert_eq!(merge(&mut s, 4, 6, &[3]), (true, false));
        assert_eq!(merge(&mut s, 4, 7, &[4, 9, 9]), (true, true));
        assert_eq!(s, [1, 2, 3, 4]);
        assert_eq!(merge(&mut s, 4, 0, &[7; 4]), (false, false));
        assert_eq!(
            merge(&mut s, 4, u64::from(u32::MAX), &[7; 4]),
            (false, false)
        );
        assert_eq!(merge(&mut s, 4, 0, &[5; 16]), (true, true));
        assert_eq!(s, [5; 4]);
    }
}
