//! The block device (VIRTIO 1.4 §5.2) backed by a raw disk image: a
//! regular file or a host block device.
//!
//! ```no_run
//! use ringwork_device::blk::{Blk, BlkOptions};
//! use ringwork_device::model::Device;
//!
//! let blk = Blk::open(BlkOptions {
//!     num_queues: 4,
//!     ..BlkOptions::new("disk.raw")
//! })?;
//! println!("{} sectors, {:?} engine", blk.capacity(), blk.engine());
//! assert_eq!(blk.num_queues(), 4);
//! # Ok::<(), ringwork_device::blk::BlkError>(())
//! ```
//!
//! Requests served (§5.2.6): `IN`, `OUT`, `FLUSH` (`fdatasync`), `GET_ID`,
//! `DISCARD` (hole punching, best effort) and `WRITE_ZEROES` (hole punching
//! when `unmap` allows it, else `FALLOC_FL_ZERO_RANGE`, else writing
//! zeroes). Everything else is answered `VIRTIO_BLK_S_UNSUPP`.
//!
//! Features offered: the [ring features](crate::ring_features), `SIZE_MAX`,
//! `SEG_MAX`, `BLK_SIZE`, `FLUSH`, `TOPOLOGY`, `MQ` (more than one queue),
//! `DISCARD` and `WRITE_ZEROES` (read-write), `RO` (read-only). `FLUSH` is
//! always offered (§5.2.5.2 "SHOULD"); when the driver does not accept it,
//! every write is made stable before it completes (§5.2.6.2, case 1).
//!
//! Each worker serves one queue and owns one I/O engine ([`Engine`]):
//! `process` pops every available request, runs their I/O concurrently,
//! and completes all of them before returning, so nothing is ever in flight
//! between calls (`quiesce` has nothing to do).
//!
//! Trust and panic contract: requests come from the driver and are
//! validated field by field; malformed ones are answered with
//! `VIRTIO_BLK_S_IOERR` (or completed with used length 0 when they have no
//! status byte), never with a panic or a hang. A descriptor that points
//! outside guest memory breaks its queue (it is rejected when popped).
//! Host I/O errors become `VIRTIO_BLK_S_IOERR` and a `tracing` warning.

mod job;
mod options;
mod request;
mod sys;
mod worker;

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::os::fd::AsFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::sync::Arc;

use ringwork_spec::blk::{
    BlkConfig, BLK_CONFIG_SIZE, VIRTIO_BLK_F_BLK_SIZE, VIRTIO_BLK_F_DISCARD, VIRTIO_BLK_F_FLUSH,
    VIRTIO_BLK_F_MQ, VIRTIO_BLK_F_RO, VIRTIO_BLK_F_SEG_MAX, VIRTIO_BLK_F_SIZE_MAX,
    VIRTIO_BLK_F_TOPOLOGY, VIRTIO_BLK_F_WRITE_ZEROES, VIRTIO_BLK_ID_BYTES, VIRTIO_BLK_SECTOR_SIZE,
};
use ringwork_spec::device_id::{DeviceType, VIRTIO_ID_BLOCK};

pub(crate) use options::queue_option_error;
pub use options::{BlkError, BlkOptions, Engine, MAX_QUEUES};

use crate::model::{Device, DeviceError, DeviceEvents, QueueWorker};
use crate::ring_features;
use job::Caps;
use request::Rules;
use worker::{BlkWorker, Executor};

/// `size_max`: the largest data segment the driver may use, in bytes.
pub const SIZE_MAX: u32 = 1 << 20;
/// `max_discard_sectors` and `max_write_zeroes_sectors` (1 GiB).
pub const MAX_DISCARD_SECTORS: u32 = 1 << 21;
/// `max_discard_seg` and `max_write_zeroes_seg`.
pub const MAX_DISCARD_SEG: u32 = 32;

const SECTOR: u64 = VIRTIO_BLK_SECTOR_SIZE as u64;

/// What workers share: the image and what its file system supports.
#[derive(Debug)]
struct Backend {
    file: File,
    caps: Caps,
}

/// A virtio-blk device over a raw image. See the [module docs](self).
#[derive(Debug)]
pub struct Blk {
    backend: Arc<Backend>,
    opts: BlkOptions,
    capacity: u64,
    id: [u8; VIRTIO_BLK_ID_BYTES],
    engine: Engine,
    /// [`Engine::Auto`] resolved to io_uring: fall back per worker too.
    auto: bool,
    /// Threads per worker of the thread-pool engine.
    pool_threads: usize,
}

/// What kind of non-regular file `ft` is, for error messages.
pub(crate) fn file_kind(ft: std::fs::FileType) -> &'static str {
    if ft.is_dir() {
        "directory"
    } else if ft.is_fifo() {
        "FIFO"
    } else if ft.is_socket() {
        "socket"
    } else if ft.is_char_device() {
        "character device"
    } else if ft.is_symlink() {
        "symbolic link"
    } else {
        "special file"
    }
}

fn open_error(path: &Path, readonly: bool, e: io::Error) -> BlkError {
    let path = path.to_owned();
    match e.kind() {
        io::ErrorKind::NotFound => BlkError::NotFound { path },
        io::ErrorKind::PermissionDenied => BlkError::PermissionDenied { path, readonly },
        _ => BlkError::Io { path, source: e },
    }
}

impl Blk {
    /// Opens `opts.image` and checks every option. Nothing is read or
    /// written yet; with [`Engine::Auto`] this also probes io_uring.
    pub fn open(opts: BlkOptions) -> Result<Self, BlkError> {
        opts.validate()?;
        let path = opts.image.as_path();
        if path.as_os_str().is_empty() {
            return Err(BlkError::InvalidOption {
                option: "image",
                reason: "no image path given".into(),
            });
        }
        let readonly = opts.readonly;
        // Check the type before opening: opening a FIFO would block.
        let meta = std::fs::metadata(path).map_err(|e| open_error(path, readonly, e))?;
        if !meta.is_file() && !meta.file_type().is_block_device() {
            return Err(BlkError::NotAFileOrBlockDevice {
                path: path.to_owned(),
                kind: file_kind(meta.file_type()),
            });
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(!readonly)
            .open(path)
            .map_err(|e| open_error(path, readonly, e))?;
        let io_err = |source| BlkError::Io {
            path: path.to_owned(),
            source,
        };
        let meta = file.metadata().map_err(io_err)?;
        let size = if meta.is_file() {
            meta.len()
        } else if meta.file_type().is_block_device() {
            file.seek(SeekFrom::End(0)).map_err(io_err)?
        } else {
            return Err(BlkError::NotAFileOrBlockDevice {
                path: path.to_owned(),
                kind: file_kind(meta.file_type()),
            });
        };
        if size % SECTOR != 0 {
            return Err(BlkError::UnalignedSize {
                path: path.to_owned(),
                size,
            });
        }
        let mut id = [0u8; VIRTIO_BLK_ID_BYTES];
        let derived;
        let serial = match &opts.serial {
            Some(s) => s.as_bytes(),
            None => {
                derived = format!("rw{:x}-{:x}", meta.ino(), meta.dev());
                derived.as_bytes()
            }
        };
        let n = serial.len().min(VIRTIO_BLK_ID_BYTES);
        id[..n].copy_from_slice(&serial[..n]);

        let mut pool_threads = opts.pool_threads;
        let (engine, auto) = match opts.engine {
            Engine::ThreadPool => (Engine::ThreadPool, false),
            Engine::Null => (Engine::Null, false),
            Engine::Auto if sys::is_tmpfs(file.as_fd()) => {
                tracing::info!(
                    "block image is on tmpfs; block device does its I/O on the worker threads"
                );
                pool_threads = 0;
                (Engine::ThreadPool, false)
            }
            Engine::IoUring => {
                sys::Ring::new(8).map_err(BlkError::IoUring)?;
                (Engine::IoUring, false)
            }
            Engine::Auto => match sys::Ring::new(8) {
                Ok(_) => (Engine::IoUring, true),
                Err(e) => {
                    tracing::info!(error = %e, "io_uring unavailable; block device uses the thread-pool engine");
                    (Engine::ThreadPool, false)
                }
            },
        };
        Ok(Self {
            backend: Arc::new(Backend {
                file,
                caps: Caps::new(),
            }),
            capacity: size / SECTOR,
            id,
            engine,
            auto,
            pool_threads,
            opts,
        })
    }

    /// Disk size in 512-byte sectors (`capacity`).
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// The engine in use ([`Engine::Auto`] resolved).
    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// The options the device was opened with.
    pub fn options(&self) -> &BlkOptions {
        &self.opts
    }

    /// The 20-byte string `VIRTIO_BLK_T_GET_ID` returns (NUL-padded).
    pub fn id(&self) -> [u8; VIRTIO_BLK_ID_BYTES] {
        self.id
    }

    fn offers(&self, bit: u32) -> bool {
        self.features() & (1u64 << bit) != 0
    }

    fn discard_fields(&self) -> (u32, u32) {
        if self.opts.readonly {
            (0, 0)
        } else {
            (MAX_DISCARD_SECTORS, MAX_DISCARD_SEG)
        }
    }

    fn executor(&self) -> Result<Executor, DeviceError> {
        let pool = || {
            sys::Pool::new(self.pool_threads).map_err(|source| DeviceError::Io {
                what: "block I/O threads",
                source,
            })
        };
        match self.engine {
            Engine::ThreadPool => return Ok(Executor::Pool(pool()?)),
            Engine::Null => {
                let zero = std::fs::File::open("/dev/zero").map_err(|source| DeviceError::Io {
                    what: "opening /dev/zero",
                    source,
                })?;
                return Ok(Executor::Null(zero));
            }
            Engine::IoUring | Engine::Auto => {}
        }
        match sys::Ring::new(u32::from(self.opts.queue_size)) {
            Ok(r) => Ok(Executor::Uring(Box::new(r))),
            Err(e) if self.auto => {
                tracing::info!(error = %e, "io_uring setup failed; block worker uses the thread-pool engine");
                Ok(Executor::Pool(pool()?))
            }
            Err(source) => Err(DeviceError::Io {
                what: "io_uring setup",
                source,
            }),
        }
    }
}

impl Device for Blk {
    fn device_type(&self) -> DeviceType {
        DeviceType(VIRTIO_ID_BLOCK)
    }

    /// VIRTIO 1.4 §5.2.3; FLUSH always (§5.2.5.2), never CONFIG_WCE.
    fn features(&self) -> u64 {
        let bit = |b: u32| 1u64 << b;
        let mut f = ring_features()
            | bit(VIRTIO_BLK_F_SIZE_MAX)
            | bit(VIRTIO_BLK_F_SEG_MAX)
            | bit(VIRTIO_BLK_F_BLK_SIZE)
            | bit(VIRTIO_BLK_F_FLUSH)
            | bit(VIRTIO_BLK_F_TOPOLOGY);
        if self.opts.num_queues > 1 {
            f |= bit(VIRTIO_BLK_F_MQ);
        }
        if self.opts.readonly {
            f |= bit(VIRTIO_BLK_F_RO);
        } else {
            f |= bit(VIRTIO_BLK_F_DISCARD) | bit(VIRTIO_BLK_F_WRITE_ZEROES);
        }
        f
    }

    fn num_queues(&self) -> u16 {
        self.opts.num_queues
    }

    fn max_queue_size(&self) -> u16 {
        self.opts.queue_size
    }

    /// `struct virtio_blk_config` (§5.2.4), all 96 bytes; padding and the
    /// fields of features not offered are 0 (§5.2.5.2).
    fn config(&self) -> Vec<u8> {
        let mut bytes = vec![0u8; BLK_CONFIG_SIZE];
        let Ok(mut c) = BlkConfig::new_checked(&mut bytes[..]) else {
            return bytes;
        };
        let o = &self.opts;
        c.set_capacity(self.capacity);
        c.set_size_max(SIZE_MAX);
        c.set_seg_max(u32::from(o.queue_size) - 2);
        c.set_blk_size(o.block_size);
        c.set_topology_physical_block_exp(
            (o.physical_block_size / o.block_size).trailing_zeros() as u8
        );
        c.set_topology_alignment_offset(0);
        c.set_topology_min_io_size(1);
        c.set_topology_opt_io_size(0);
        c.set_num_queues(o.num_queues);
        let (max_sectors, max_seg) = self.discard_fields();
        c.set_max_discard_sectors(max_sectors);
        c.set_max_discard_seg(max_seg);
        c.set_discard_sector_alignment(if self.opts.readonly {
            0
        } else {
            o.physical_block_size / VIRTIO_BLK_SECTOR_SIZE as u32
        });
        c.set_max_write_zeroes_sectors(max_sectors);
        c.set_max_write_zeroes_seg(max_seg);
        // Write zeroes with unmap punches holes (deallocates) when the
        // file system allows it (§5.2.6.2).
        c.set_write_zeroes_may_unmap(u8::from(!self.opts.readonly));
        bytes
    }

    fn start_worker(
        &self,
        queues: &[u16],
        features: u64,
        _events: Arc<dyn DeviceEvents>,
    ) -> Result<Box<dyn QueueWorker>, DeviceError> {
        let has = |b: u32| features & (1u64 << b) != 0;
        let (max_sectors, max_seg) = self.discard_fields();
        let rules = Rules {
            capacity_bytes: self.capacity * SECTOR,
            readonly: self.opts.readonly,
            discard: has(VIRTIO_BLK_F_DISCARD),
            write_zeroes: has(VIRTIO_BLK_F_WRITE_ZEROES),
            // §5.2.6.2 case 1: FLUSH offered but neither it nor CONFIG_WCE
            // negotiated: completed writes must be stable.
            write_through: self.offers(VIRTIO_BLK_F_FLUSH) && !has(VIRTIO_BLK_F_FLUSH),
            max_discard_sectors: max_sectors,
            max_discard_seg: max_seg,
            max_write_zeroes_sectors: max_sectors,
            max_write_zeroes_seg: max_seg,
            id: self.id,
        };
        Ok(Box::new(BlkWorker::new(
            self.backend.clone(),
            queues.to_vec(),
            rules,
            self.executor()?,
        )))
    }
}
