//! Logical units: an image file with its geometry ([`Lun`]), the set of
//! LUNs a device serves ([`LunTable`]), and their pending unit attention
//! conditions.
//!
//! Trust and panic contract: the table is shared by every worker and the
//! hot-plug handle; locks are held only for lookups and updates (never
//! across I/O) and poisoning is ignored (every update is a single
//! insertion or removal). File I/O errors are returned, never panicked on.

use std::collections::{BTreeMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt};
use std::sync::{Arc, Mutex, RwLock};

use ringwork_spec::scsi::{decode_lun, ScsiLun};

use super::options::{LunSpec, ScsiError};
use super::sense::Sense;
use super::sys;

/// Most unit attention conditions kept per LUN (older ones are dropped).
const MAX_PENDING_UA: usize = 4;

/// What the command emulation needs to know about a LUN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LunInfo {
    /// Target.
    pub target: u8,
    /// LUN.
    pub lun: u16,
    /// Capacity in logical blocks.
    pub blocks: u64,
    /// Logical block size in bytes.
    pub block_size: u32,
    /// Writes are refused.
    pub readonly: bool,
    /// Unit serial number.
    pub serial: String,
}

/// Most bytes one READ or WRITE may transfer (the Block Limits VPD
/// page's MAXIMUM TRANSFER LENGTH; `max_sectors` in the configuration).
pub const MAX_TRANSFER_BYTES: u32 = 4 << 20;
/// Most bytes one UNMAP or WRITE SAME may cover (MAXIMUM UNMAP LBA COUNT
/// and MAXIMUM WRITE SAME LENGTH, in blocks).
pub const MAX_UNMAP_BYTES: u64 = 1 << 30;
/// Most block descriptors in one UNMAP parameter list.
pub const MAX_UNMAP_DESCRIPTORS: u32 = 64;
/// Preferred unmap granularity in bytes (a page: what hole punching
/// frees).
pub const UNMAP_GRANULARITY_BYTES: u32 = 4096;

impl LunInfo {
    /// MAXIMUM TRANSFER LENGTH in blocks.
    pub(crate) fn max_transfer_blocks(&self) -> u32 {
        MAX_TRANSFER_BYTES / self.block_size
    }

    /// MAXIMUM UNMAP LBA COUNT (and MAXIMUM WRITE SAME LENGTH) in blocks;
    /// 0 for a read-only LUN.
    pub(crate) fn max_unmap_blocks(&self) -> u32 {
        if self.readonly {
            0
        } else {
            (MAX_UNMAP_BYTES / u64::from(self.block_size)) as u32
        }
    }

    /// MAXIMUM UNMAP BLOCK DESCRIPTOR COUNT; 0 for a read-only LUN.
    pub(crate) fn max_unmap_descriptors(&self) -> u32 {
        if self.readonly {
            0
        } else {
            MAX_UNMAP_DESCRIPTORS
        }
    }

    /// OPTIMAL UNMAP GRANULARITY (and transfer granularity) in blocks.
    pub(crate) fn granularity_blocks(&self) -> u32 {
        (UNMAP_GRANULARITY_BYTES / self.block_size).max(1)
    }

    /// Byte offset and length of `blocks` blocks at `lba`, or LOGICAL
    /// BLOCK ADDRESS OUT OF RANGE when they do not fit the capacity.
    pub(crate) fn range(&self, lba: u64, blocks: u64) -> Result<(u64, u64), Sense> {
        match lba.checked_add(blocks) {
            Some(end) if end <= self.blocks => {
                let bs = u64::from(self.block_size);
                Ok((lba * bs, blocks * bs))
            }
            _ => Err(Sense::LBA_OUT_OF_RANGE),
        }
    }
}

/// One logical unit backed by an image.
#[derive(Debug)]
pub(crate) struct Lun {
    /// Geometry and identity.
    pub info: LunInfo,
    file: File,
    ua: Mutex<VecDeque<Sense>>,
}

impl Lun {
    /// Opens `spec.path` and derives the geometry.
    pub(crate) fn open(spec: &LunSpec) -> Result<Self, ScsiError> {
        spec.validate()?;
        let path = &spec.path;
        let io_err = |source| ScsiError::Io {
            path: path.clone(),
            source,
        };
        // Check the type before opening: opening a FIFO would block.
        let meta = std::fs::metadata(path).map_err(io_err)?;
        let ft = meta.file_type();
        if !meta.is_file() && !ft.is_block_device() {
            return Err(ScsiError::NotAFileOrBlockDevice {
                path: path.clone(),
                kind: crate::blk::file_kind(ft),
            });
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(!spec.readonly)
            .open(path)
            .map_err(io_err)?;
        let size = if meta.is_file() {
            file.metadata().map_err(io_err)?.len()
        } else {
            file.seek(SeekFrom::End(0)).map_err(io_err)?
        };
        let bs = u64::from(spec.block_size);
        if size == 0 || size % bs != 0 {
            return Err(ScsiError::BadSize {
                path: path.clone(),
                size,
                block_size: spec.block_size,
            });
        }
        let serial = spec
            .serial
            .clone()
            .unwrap_or_else(|| format!("rw{:x}-{:x}", meta.ino(), meta.dev()));
        Ok(Self {
            info: LunInfo {
                target: spec.target,
                lun: spec.lun,
                blocks: size / bs,
                block_size: spec.block_size,
                readonly: spec.readonly,
                serial,
            },
            file,
            ua: Mutex::new(VecDeque::new()),
        })
    }

    /// Reads `buf.len()` bytes at `offset`; bytes past the end of the
    /// file (an image that shrank) read as zeroes.
    pub(crate) fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let mut done = 0;
        while done < buf.len() {
            let at = offset + done as u64;
            match self.file.read_at(&mut buf[done..], at) {
                Ok(0) => {
                    buf[done..].fill(0);
                    return Ok(());
                }
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Writes all of `buf` at `offset`.
    pub(crate) fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.file.write_all_at(buf, offset)
    }

    /// `fdatasync`.
    pub(crate) fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    /// Deallocates a byte range (it then reads as zeroes); falls back to
    /// writing zeroes where the file system cannot punch holes.
    pub(crate) fn punch(&self, offset: u64, len: u64, zeroes: &[u8]) -> io::Result<()> {
        match sys::punch_hole(&self.file, offset, len) {
            Ok(()) => Ok(()),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EOPNOTSUPP | libc::ENOSYS | libc::EINVAL | libc::ENODEV)
                ) =>
            {
                self.write_zeroes(offset, len, zeroes)
            }
            Err(e) => Err(e),
        }
    }

    /// Writes `len` zero bytes at `offset`, `zeroes` at a time.
    fn write_zeroes(&self, offset: u64, len: u64, zeroes: &[u8]) -> io::Result<()> {
        let mut done = 0u64;
        while done < len {
            let n = (len - done).min(zeroes.len() as u64) as usize;
            if n == 0 {
                return Err(io::Error::other("empty zero buffer"));
            }
            self.write_at(&zeroes[..n], offset + done)?;
            done += n as u64;
        }
        Ok(())
    }

    /// Establishes a unit attention condition (kept until reported).
    pub(crate) fn add_unit_attention(&self, s: Sense) {
        let mut q = self.ua.lock().unwrap_or_else(|e| e.into_inner());
        if q.contains(&s) {
            return;
        }
        if q.len() == MAX_PENDING_UA {
            q.pop_front();
        }
        q.push_back(s);
    }

    /// Takes the oldest pending unit attention condition.
    pub(crate) fn take_unit_attention(&self) -> Option<Sense> {
        self.ua
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop_front()
    }
}

/// The two-byte single-level LUN structure the device writes (REPORT
/// LUNS entries, event `lun` bytes 2..4): peripheral device addressing
/// (`00h`, LUN) below 256, flat space addressing (`40h | LUN >> 8`, LUN)
/// above, as SAM recommends and QEMU does. Linux decodes event LUNs
/// without masking the addressing method, so flat addressing for small
/// LUNs would show up there as LUN 16384 + n.
pub(crate) fn single_level_lun(lun: u16) -> [u8; 2] {
    if lun < 256 {
        [0, lun as u8]
    } else {
        [0x40 | ((lun >> 8) as u8 & 0x3f), lun as u8]
    }
}

/// What a `lun` field addresses on a device.
#[derive(Debug, Clone)]
pub(crate) enum Lookup {
    /// No such target (or an address format the device does not serve).
    BadTarget,
    /// The target exists but has no LUN here.
    Absent {
        /// Target.
        target: u8,
        /// Whether the address is LUN 0 (which must answer REPORT LUNS).
        lun0: bool,
    },
    /// The REPORT LUNS well-known logical unit.
    ReportLunsWlun,
    /// A logical unit.
    Present(Arc<Lun>),
}

/// The LUNs of a device, by (target, lun).
#[derive(Debug, Default)]
pub(crate) struct LunTable {
    map: RwLock<BTreeMap<(u8, u16), Arc<Lun>>>,
}

impl LunTable {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<(u8, u16), Arc<Lun>>> {
        self.map.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<(u8, u16), Arc<Lun>>> {
        self.map.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `target` has any LUN.
    pub(crate) fn has_target(&self, target: u8) -> bool {
        self.read()
            .range((target, 0)..=(target, u16::MAX))
            .next()
            .is_some()
    }

    /// Resolves a virtio-scsi `lun` field (VIRTIO 1.4 §5.6.6.1): the
    /// REPORT LUNS well-known LU, or target and single-level LUN; any
    /// other format on an existing target is an absent LUN, elsewhere a
    /// bad target.
    pub(crate) fn resolve(&self, addr: &[u8; 8]) -> Lookup {
        match decode_lun(addr) {
            ScsiLun::ReportLuns => Lookup::ReportLunsWlun,
            ScsiLun::Lun { target, lun } => self.lookup(target, lun),
            ScsiLun::Other(a) if a[0] == 1 && self.has_target(a[1]) => Lookup::Absent {
                target: a[1],
                lun0: false,
            },
            ScsiLun::Other(_) => Lookup::BadTarget,
        }
    }

    /// Resolves an address (see [`Lookup`]).
    pub(crate) fn lookup(&self, target: u8, lun: u16) -> Lookup {
        let map = self.read();
        if let Some(l) = map.get(&(target, lun)) {
            return Lookup::Present(l.clone());
        }
        if map.range((target, 0)..=(target, u16::MAX)).next().is_some() {
            Lookup::Absent {
                target,
                lun0: lun == 0,
            }
        } else {
            Lookup::BadTarget
        }
    }

    /// The LUN numbers of `target`, ascending.
    pub(crate) fn luns_of(&self, target: u8) -> Vec<u16> {
        self.read()
            .range((target, 0)..=(target, u16::MAX))
            .map(|(k, _)| k.1)
            .collect()
    }

    /// Every LUN, ascending by address.
    pub(crate) fn all(&self) -> Vec<Arc<Lun>> {
        self.read().values().cloned().collect()
    }

    /// Adds a LUN; the other LUNs of its target get a REPORTED LUNS DATA
    /// HAS CHANGED unit attention (SPC-4, REPORT LUNS).
    pub(crate) fn insert(&self, lun: Lun) -> Result<(), ScsiError> {
        let key = (lun.info.target, lun.info.lun);
        let mut map = self.write();
        if map.contains_key(&key) {
            return Err(ScsiError::LunExists {
                target: key.0,
                lun: key.1,
            });
        }
        for l in map.range((key.0, 0)..=(key.0, u16::MAX)).map(|(_, l)| l) {
            l.add_unit_attention(Sense::REPORTED_LUNS_CHANGED);
        }
        map.insert(key, Arc::new(lun));
        Ok(())
    }

    /// Removes a LUN (commands already running on it finish); the other
    /// LUNs of its target get a REPORTED LUNS DATA HAS CHANGED unit
    /// attention.
    pub(crate) fn remove(&self, target: u8, lun: u16) -> Result<Arc<Lun>, ScsiError> {
        let mut map = self.write();
        let l = map
            .remove(&(target, lun))
            .ok_or(ScsiError::NoSuchLun { target, lun })?;
        for o in map.range((target, 0)..=(target, u16::MAX)).map(|(_, l)| l) {
            o.add_unit_attention(Sense::REPORTED_LUNS_CHANGED);
        }
        Ok(l)
    }
}
