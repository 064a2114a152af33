//! What a block device is made of ([`BlkOptions`], [`Engine`]) and what can
//! go wrong making it ([`BlkError`]).

use std::io;
use std::path::PathBuf;

use ringwork_spec::blk::{VIRTIO_BLK_ID_BYTES, VIRTIO_BLK_SECTOR_SIZE};

/// How a block device performs file I/O.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Engine {
    /// One io_uring per worker (Linux 5.6 or later). [`Blk::open`]
    /// fails with [`BlkError::IoUring`] when io_uring cannot be set up
    /// (an old kernel, a seccomp filter, `io_uring_disabled`).
    ///
    /// [`Blk::open`]: super::Blk::open
    IoUring,
    /// Blocking `preadv`/`pwritev`/`fdatasync`/`fallocate` on a few threads
    /// per worker ([`BlkOptions::pool_threads`]). Works everywhere.
    ThreadPool,
    /// io_uring when it can be set up, otherwise the thread pool (logged at
    /// `info` level). On tmpfs, where io_uring hands every read to a kernel
    /// worker thread, system calls made on the worker thread itself
    /// ([`Engine::ThreadPool`] without pool threads; logged at `info`
    /// level).
    #[default]
    Auto,
    /// No I/O at all, for benchmarking the virtio path (like
    /// qemu-storage-daemon's `null-co` with `read-zeroes=on`): reads fill
    /// the guest buffers with zeroes, writes, flushes, discards and write
    /// zeroes succeed without touching the image. The image still gives
    /// the capacity.
    Null,
}

/// Options of [`Blk::open`](super::Blk::open).
///
/// ```
/// use ringwork_device::blk::{BlkOptions, Engine};
///
/// let opts = BlkOptions {
///     readonly: true,
///     engine: Engine::ThreadPool,
///     ..BlkOptions::new("/var/lib/images/disk.raw")
/// };
/// assert_eq!(opts.num_queues, 1);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlkOptions {
    /// The raw disk image: a regular file or a block device whose size is a
    /// multiple of 512 bytes.
    pub image: PathBuf,
    /// Open the image read-only and offer `VIRTIO_BLK_F_RO`. Default: false.
    pub readonly: bool,
    /// Request queues (1 to [`MAX_QUEUES`]); more than one offers
    /// `VIRTIO_BLK_F_MQ`. Default: 1.
    pub num_queues: u16,
    /// Largest queue size accepted, a power of two from 4 to 32768;
    /// `seg_max` is this minus 2. Default: 256.
    pub queue_size: u16,
    /// The I/O engine. Default: [`Engine::Auto`].
    pub engine: Engine,
    /// The string `VIRTIO_BLK_T_GET_ID` returns: at most 20 printable ASCII
    /// bytes. Default: derived from the image's device and inode numbers.
    pub serial: Option<String>,
    /// Logical block size offered in `blk_size`: a power of two from 512
    /// to 65536. Requests still address 512-byte sectors. Default: 512.
    pub block_size: u32,
    /// Physical block size offered in `topology` (a power-of-two multiple of
    /// `block_size`); also the discard alignment. Default: 512.
    pub physical_block_size: u32,
    /// Threads per worker of [`Engine::ThreadPool`] (0: do the I/O on the
    /// worker thread itself). Default: 4.
    pub pool_threads: usize,
}

/// Most request queues a block device can have.
pub const MAX_QUEUES: u16 = 256;

impl BlkOptions {
    /// Default options for `image`.
    pub fn new(image: impl Into<PathBuf>) -> Self {
        Self {
            image: image.into(),
            readonly: false,
            num_queues: 1,
            queue_size: 256,
            engine: Engine::Auto,
            serial: None,
            block_size: VIRTIO_BLK_SECTOR_SIZE as u32,
            physical_block_size: VIRTIO_BLK_SECTOR_SIZE as u32,
            pool_threads: 4,
        }
    }

    /// Checks every option that does not need the image.
    pub(crate) fn validate(&self) -> Result<(), BlkError> {
        let bad =
            |option: &'static str, reason: String| Err(BlkError::InvalidOption { option, reason });
        if let Some((option, reason)) =
            queue_option_error(self.num_queues, MAX_QUEUES, self.queue_size)
        {
            return bad(option, reason);
        }
        if !self.block_size.is_power_of_two() || !(512..=65536).contains(&self.block_size) {
            return bad(
                "block_size",
                format!("{} is not a power of two in 512..=65536", self.block_size),
            );
        }
        let pbs = self.physical_block_size;
        if !pbs.is_power_of_two() || pbs < self.block_size {
            return bad(
                "physical_block_size",
                format!(
                    "{pbs} is not a power of two at least block_size ({})",
                    self.block_size
                ),
            );
        }
        if let Some(s) = &self.serial {
            if s.len() > VIRTIO_BLK_ID_BYTES {
                return bad(
                    "serial",
                    format!("{s:?} is longer than {VIRTIO_BLK_ID_BYTES} bytes"),
                );
            }
            if !s.bytes().all(|b| b.is_ascii_graphic() || b == b' ') {
                return bad("serial", format!("{s:?} is not printable ASCII"));
            }
        }
        Ok(())
    }
}

/// What is wrong with a request-queue count (1 to `max`) or a queue size
/// (a power of two from 4 to 32768), as (option name, reason); shared by
/// the devices' option checks.
pub(crate) fn queue_option_error(
    num_queues: u16,
    max: u16,
    queue_size: u16,
) -> Option<(&'static str, String)> {
    if num_queues == 0 || num_queues > max {
        return Some(("num_queues", format!("{num_queues} is not in 1..={max}")));
    }
    if !queue_size.is_power_of_two() || !(4..=32768).contains(&queue_size) {
        return Some((
            "queue_size",
            format!("{queue_size} is not a power of two in 4..=32768"),
        ));
    }
    None
}

impl Default for BlkOptions {
    /// Default options with an empty image path (set [`BlkOptions::image`]).
    fn default() -> Self {
        Self::new(PathBuf::new())
    }
}

/// Why a block device could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BlkError {
    /// The image does not exist.
    #[error("disk image {}: no such file or directory", .path.display())]
    NotFound {
        /// The image path.
        path: PathBuf,
    },
    /// The image may not be opened in the requested mode.
    #[error(
        "disk image {}: permission denied opening it {}",
        .path.display(),
        if *.readonly { "read-only" } else { "read-write (open it read-only, or fix its permissions)" }
    )]
    PermissionDenied {
        /// The image path.
        path: PathBuf,
        /// Whether it was being opened read-only.
        readonly: bool,
    },
    /// The image is neither a regular file nor a block device.
    #[error("disk image {}: is a {kind}, not a regular file or block device", .path.display())]
    NotAFileOrBlockDevice {
        /// The image path.
        path: PathBuf,
        /// What it is ("directory", "FIFO", ...).
        kind: &'static str,
    },
    /// The image size is not a whole number of 512-byte sectors.
    #[error(
        "disk image {}: size {size} bytes is not a multiple of 512 (the last {} bytes would be \
         unreachable); resize it, e.g. `truncate -s {}`",
        .path.display(),
        .size % 512,
        .size.div_ceil(512) * 512
    )]
    UnalignedSize {
        /// The image path.
        path: PathBuf,
        /// Its size in bytes.
        size: u64,
    },
    /// Opening or inspecting the image failed otherwise.
    #[error("disk image {}: {source}", .path.display())]
    Io {
        /// The image path.
        path: PathBuf,
        /// The operating-system error.
        #[source]
        source: io::Error,
    },
    /// An option is out of range.
    #[error("block device option {option}: {reason}")]
    InvalidOption {
        /// The option's field name.
        option: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// [`Engine::IoUring`] was asked for but io_uring cannot be used.
    #[error("io_uring engine unavailable: {0} (use Engine::ThreadPool or Engine::Auto)")]
    IoUring(#[source] io::Error),
}
