//! What a network device is made of ([`NetOptions`]) and what can go
//! wrong making it ([`NetError`]).

use ringwork_spec::net::{DUPLEX_FULL, MTU_MIN};

use super::packet::{MacAddr, MAX_MTU};

/// Most queue pairs a device offers (`max_virtqueue_pairs`; the spec
/// allows 0x8000, each pair costs worker threads).
pub const MAX_QUEUE_PAIRS: u16 = 64;

/// Options of [`Net::new`](super::Net::new).
///
/// ```
/// use ringwork_device::net::{MacAddr, NetOptions};
///
/// let opts = NetOptions {
///     queue_pairs: 2,
///     ..NetOptions::new(MacAddr([0x52, 0x54, 0, 0x12, 0x34, 0x56]))
/// };
/// assert_eq!(opts.mtu, 1500);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetOptions {
    /// The device's address (`mac`, with VIRTIO_NET_F_MAC); a unicast
    /// address.
    pub mac: MacAddr,
    /// Queue pairs (1 to [`MAX_QUEUE_PAIRS`]); more than one offers
    /// VIRTIO_NET_F_MQ. Default: 1.
    pub queue_pairs: u16,
    /// The MTU offered with VIRTIO_NET_F_MTU (68 to
    /// [`MAX_MTU`]). Default: 1500.
    pub mtu: u16,
    /// `speed` in Mbit/s (VIRTIO_NET_F_SPEED_DUPLEX). Default: 10000.
    pub speed: u32,
    /// `duplex`. Default: full ([`DUPLEX_FULL`]).
    pub duplex: u8,
    /// Largest queue size accepted. Default: 1024.
    pub queue_size: u16,
    /// How queues share worker threads. Default: one thread per queue.
    pub workers: NetWorkers,
    /// Write received frames into the driver's buffers with streaming
    /// (non-temporal) stores ([`MemSlice::write_bytes_streaming`]): for
    /// the frame's bytes from its first 16-byte boundary on, the device's
    /// core does not wait to take the buffer's cache lines from the
    /// driver's core, and the driver reads them from memory instead of
    /// from the device's cache. The bytes before that boundary and after
    /// the last whole 16 are ordinary stores, so the gain is largest when
    /// frames start 16-byte aligned (as in DPDK's buffers). Measured
    /// worth it with a polling driver on another core
    /// (docs/PERFORMANCE.md); expected to cost where the two share a
    /// cache (hyperthreads of one core), not measured. Only a frame
    /// written into one buffer in one piece is streamed
    /// ([`NetStats::rx_streamed`](super::NetStats::rx_streamed)), and no
    /// receive buffer is prefetched. Default: off.
    ///
    /// [`MemSlice::write_bytes_streaming`]: ringwork_queue::MemSlice::write_bytes_streaming
    pub rx_streaming_stores: bool,
}

/// How a network device's queues are spread over worker threads.
///
/// One thread per queue lets receive and transmit of a busy guest run on
/// two cores; one thread for the device keeps a polling device (whose
/// threads spin on their rings, `ringwork serve --poll-us`) on one core.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NetWorkers {
    /// One thread per queue.
    #[default]
    PerQueue,
    /// One thread per queue pair (the controlq with the first pair).
    PerPair,
    /// One thread for every queue of the device.
    One,
}

impl NetOptions {
    /// The defaults, with address `mac`.
    pub fn new(mac: MacAddr) -> Self {
        Self {
            mac,
            queue_pairs: 1,
            mtu: 1500,
            speed: 10_000,
            duplex: DUPLEX_FULL,
            queue_size: 1024,
            workers: NetWorkers::PerQueue,
            rx_streaming_stores: false,
        }
    }

    pub(super) fn check(&self) -> Result<(), NetError> {
        if self.mac.is_multicast() {
            return Err(NetError::MulticastMac(self.mac));
        }
        if self.queue_pairs == 0 || self.queue_pairs > MAX_QUEUE_PAIRS {
            return Err(NetError::QueuePairs(self.queue_pairs));
        }
        if self.mtu < MTU_MIN || self.mtu > MAX_MTU {
            return Err(NetError::Mtu(self.mtu));
        }
        if !self.queue_size.is_power_of_two() || self.queue_size < 2 {
            return Err(NetError::QueueSize(self.queue_size));
        }
        Ok(())
    }
}

/// Errors setting up a network device.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The address is a group address.
    #[error("MAC address {0} is a multicast address")]
    MulticastMac(MacAddr),
    /// Queue pairs out of range.
    #[error("{0} queue pairs (1 to {MAX_QUEUE_PAIRS})")]
    QueuePairs(u16),
    /// MTU out of range.
    #[error("MTU {0} (68 to {MAX_MTU})")]
    Mtu(u16),
    /// Queue size not a power of two.
    #[error("queue size {0} (a power of two)")]
    QueueSize(u16),
    /// The backend could not be set up.
    #[error("{what}: {source}")]
    Io {
        /// What was being set up.
        what: &'static str,
        /// The operating-system error.
        #[source]
        source: std::io::Error,
    },
}
