//! Network driver errors, one enum per operation: setting up
//! ([`NetError`]), transmitting ([`SendError`]), receiving
//! ([`RecvError`]) and control commands ([`CtrlError`]).
//!
//! Trust and panic contract: nothing here reads device memory; the values
//! carried are what the queue code already checked (or the device's raw
//! values that failed a check, for diagnosis).

use ringwork_queue::UsedError;
use ringwork_transport::driver::TransportError;

use crate::common::{SetupError, WaitError};

/// Why [`NetDriver::new`](super::NetDriver::new) failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetError {
    /// Initialization failed (the device is left with FAILED set).
    #[error(transparent)]
    Setup(#[from] SetupError),
    /// Setting the address with `VIRTIO_NET_CTRL_MAC_ADDR_SET` after
    /// DRIVER_OK failed (the device is left with FAILED set).
    #[error("setting the MAC address: {0}")]
    Ctrl(#[from] CtrlError),
}

impl From<TransportError> for NetError {
    fn from(e: TransportError) -> Self {
        Self::Setup(SetupError::Transport(e))
    }
}

/// Why a frame was not sent. The frame was not queued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The pair index is not one the driver set up.
    #[error("queue pair {pair} does not exist ({pairs} set up)")]
    NoSuchPair {
        /// The pair asked for (0-based).
        pair: u16,
        /// Pairs set up.
        pairs: u16,
    },
    /// The pair is set up but not enabled with
    /// `VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET` (§5.1.9.5.6.1: only transmitq1
    /// before it, none beyond `virtqueue_pairs` after it).
    #[error("queue pair {pair} is not in use ({active} pairs in use)")]
    PairNotActive {
        /// The pair asked for.
        pair: u16,
        /// Pairs in use.
        active: u16,
    },
    /// A frame shorter than an Ethernet header.
    #[error("frame of {len} bytes is shorter than an Ethernet header ({min})")]
    TooShort {
        /// Frame length.
        len: usize,
        /// Least length.
        min: usize,
    },
    /// A frame longer than `mtu` plus its Ethernet header (§5.1.4.2 MUST
    /// NOT).
    #[error("frame of {len} bytes exceeds the {max} bytes the MTU allows")]
    TooLong {
        /// Frame length.
        len: usize,
        /// Largest frame for the MTU (and this frame's header).
        max: usize,
    },
    /// The checksum field does not lie inside the frame.
    #[error("checksum at {start}+{offset} does not fit a {len}-byte frame")]
    BadChecksum {
        /// `csum_start`.
        start: u16,
        /// `csum_offset`.
        offset: u16,
        /// Frame length.
        len: usize,
    },
    /// A [`NetBuf`](super::NetBuf) given to
    /// [`NetDriver::send_bufs`](super::NetDriver::send_bufs) was not
    /// usable.
    #[error(transparent)]
    Buf(#[from] super::bufs::BufError),
    /// A frame held in place spans more receive buffers than the
    /// transmitq has entries (and no indirect table takes it): it can never
    /// be sent from its buffers. Release it, or copy it out and send the
    /// copy. The queue is not affected.
    #[error("transmitq of pair {pair} has {size} entries, the frame spans {buffers} buffers")]
    TooManyBuffers {
        /// The pair.
        pair: u16,
        /// Buffers the frame spans.
        buffers: usize,
        /// Entries of the transmitq.
        size: u16,
    },
    /// Every transmit buffer is in flight: reclaim completions and retry.
    #[error("transmitq of pair {pair} is full")]
    QueueFull {
        /// The pair.
        pair: u16,
    },
    /// The device broke the queue; reset the driver.
    #[error("transmitq of pair {pair}: {source}")]
    Queue {
        /// The pair.
        pair: u16,
        /// What the queue found.
        source: UsedError,
    },
}

/// Why no frame was received.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecvError {
    /// The pair index is not one the driver set up.
    #[error("queue pair {pair} does not exist ({pairs} set up)")]
    NoSuchPair {
        /// The pair asked for (0-based).
        pair: u16,
        /// Pairs set up.
        pairs: u16,
    },
    /// The caller's buffer cannot hold the next frame. The frame stays
    /// queued: retry with a buffer of at least `need` bytes.
    #[error("frame of {need} bytes does not fit a {got}-byte buffer")]
    BufferTooSmall {
        /// Frame length.
        need: usize,
        /// Buffer length given.
        got: usize,
    },
    /// The device broke the receive queue (the ring itself, or a
    /// violation below); reset the driver.
    #[error("receiveq of pair {pair}: {source}")]
    Queue {
        /// The pair.
        pair: u16,
        /// What the queue found.
        source: UsedError,
    },
    /// The first buffer of a frame is shorter than the header. The
    /// queue is broken until reset.
    #[error("receiveq of pair {pair}: used length {len} is shorter than the {hdr}-byte header")]
    ShortBuffer {
        /// The pair.
        pair: u16,
        /// The used length.
        len: u32,
        /// Header size.
        hdr: usize,
    },
    /// `num_buffers` is 0, or more buffers than the device holds
    /// (§5.1.9.4). The queue is broken until reset.
    #[error("receiveq of pair {pair}: num_buffers {num_buffers}, the device holds {available}")]
    BadNumBuffers {
        /// The pair.
        pair: u16,
        /// The header's `num_buffers`.
        num_buffers: u16,
        /// Buffers the device could still have used for the frame.
        available: u16,
    },
    /// `NEEDS_CSUM` with a checksum field outside the frame. The frame is
    /// dropped; the queue goes on.
    #[error("receiveq of pair {pair}: checksum at {start}+{offset} outside a {len}-byte frame")]
    BadChecksum {
        /// The pair.
        pair: u16,
        /// `csum_start`.
        start: u16,
        /// `csum_offset`.
        offset: u16,
        /// Frame length.
        len: usize,
    },
    /// A segmentation offload `gso_type` the driver did not negotiate
    /// (the frame is not accepted, §5.1.9.4.2). Dropped; the queue goes on.
    #[error("receiveq of pair {pair}: gso_type {gso_type:#04x} was not negotiated")]
    UnexpectedGso {
        /// The pair.
        pair: u16,
        /// `gso_type`.
        gso_type: u8,
    },
    /// A blocking receive: the transport failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// A blocking receive: nothing arrived in time.
    #[error("no frame arrived in time")]
    Timeout,
    /// The device set DEVICE_NEEDS_RESET.
    #[error("device needs a reset")]
    NeedsReset,
}

impl From<WaitError> for RecvError {
    fn from(e: WaitError) -> Self {
        match e {
            WaitError::Transport(t) => Self::Transport(t),
            WaitError::Timeout => Self::Timeout,
            WaitError::NeedsReset => Self::NeedsReset,
        }
    }
}

/// Why a control command (§5.1.9.5) failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CtrlError {
    /// `VIRTIO_NET_F_CTRL_VQ` was not negotiated.
    #[error("no control queue (VIRTIO_NET_F_CTRL_VQ not negotiated)")]
    NoControlQueue,
    /// The command's feature was not negotiated, so the driver must not
    /// issue it.
    #[error("{command} needs feature bit {feature}, which was not negotiated")]
    NotNegotiated {
        /// The command (spec name).
        command: &'static str,
        /// The feature bit it needs.
        feature: u32,
    },
    /// The device answered with an `ack` other than `VIRTIO_NET_OK`
    /// (`VIRTIO_NET_ERR` is 1; a device that never wrote it shows the
    /// preset 0xff).
    #[error("device refused class {class} command {command}: ack {ack:#04x}")]
    Rejected {
        /// `class`.
        class: u8,
        /// `command`.
        command: u8,
        /// The `ack` byte.
        ack: u8,
    },
    /// A modern device completed the command with a used length that does
    /// not cover the `ack` byte.
    #[error("controlq: used length {len} does not cover the ack")]
    ShortAck {
        /// The used length.
        len: u32,
    },
    /// `virtqueue_pairs` of 0, above `max_virtqueue_pairs`, or above the
    /// pairs the driver set up (§5.1.9.5.6.1).
    #[error("{requested} queue pairs asked for, 1 to {max} possible")]
    BadPairs {
        /// Pairs asked for.
        requested: u16,
        /// Largest allowed.
        max: u16,
    },
    /// More MAC table entries than the driver's command buffer holds.
    #[error("{entries} MAC table entries, at most {max}")]
    TooManyMacs {
        /// Entries given.
        entries: usize,
        /// The limit.
        max: usize,
    },
    /// A unicast table entry that is a group address, or a multicast one
    /// that is not (§5.1.9.5.2.2).
    #[error("MAC table entry {index} is in the wrong table")]
    WrongTable {
        /// Index over both tables (unicast first).
        index: usize,
    },
    /// The control queue broke.
    #[error("controlq: {0}")]
    Queue(UsedError),
    /// The transport failed while waiting.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The device did not complete the command in time. It may still use
    /// the command buffer: further commands are refused until reset.
    #[error("device did not complete the command in time")]
    Timeout,
    /// The device set DEVICE_NEEDS_RESET.
    #[error("device needs a reset")]
    NeedsReset,
    /// A command timed out earlier; reset the driver.
    #[error("controlq is unusable after a timeout; reset the driver")]
    Broken,
}

impl From<WaitError> for CtrlError {
    fn from(e: WaitError) -> Self {
        match e {
            WaitError::Transport(t) => Self::Transport(t),
            WaitError::Timeout => Self::Timeout,
            WaitError::NeedsReset => Self::NeedsReset,
        }
    }
}
