//! What a SCSI device is made of ([`ScsiOptions`], [`LunSpec`]) and what
//! can go wrong making it or changing its logical units ([`ScsiError`]).

use std::io;
use std::path::PathBuf;

use ringwork_spec::scsi::MAX_LUN_HINT;

use crate::blk::queue_option_error;

/// Most request queues a SCSI device can have.
pub const MAX_QUEUES: u16 = 256;

/// One logical unit: a raw image served as a direct-access block device
/// at `target`:`lun`.
///
/// ```
/// use ringwork_device::scsi::LunSpec;
///
/// let l = LunSpec { readonly: true, ..LunSpec::new(0, 1, "disk.raw") };
/// assert_eq!((l.target, l.lun, l.block_size), (0, 1, 512));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LunSpec {
    /// Target number (the second byte of the virtio-scsi LUN address).
    pub target: u8,
    /// Logical unit number, 0 to 16383 (VIRTIO 1.4 §5.6.6.1).
    pub lun: u16,
    /// The raw image: a regular file or block device whose size is a
    /// multiple of `block_size`.
    pub path: PathBuf,
    /// Open the image read-only: writes fail with DATA PROTECT, WRITE
    /// PROTECTED, and MODE SENSE reports WP.
    pub readonly: bool,
    /// Logical block size: 512 or 4096. Default: 512.
    pub block_size: u32,
    /// Unit serial number (VPD page 80h): printable ASCII, at most 32
    /// bytes. Default: derived from the image's device and inode numbers.
    pub serial: Option<String>,
}

impl LunSpec {
    /// A read-write LUN with 512-byte blocks.
    pub fn new(target: u8, lun: u16, path: impl Into<PathBuf>) -> Self {
        Self {
            target,
            lun,
            path: path.into(),
            readonly: false,
            block_size: 512,
            serial: None,
        }
    }

    /// Checks everything that does not need the image.
    pub(crate) fn validate(&self) -> Result<(), ScsiError> {
        let bad =
            |option: &'static str, reason: String| Err(ScsiError::InvalidOption { option, reason });
        if u32::from(self.lun) > MAX_LUN_HINT {
            return bad("lun", format!("{} is not in 0..={MAX_LUN_HINT}", self.lun));
        }
        if self.block_size != 512 && self.block_size != 4096 {
            return bad(
                "block_size",
                format!("{} is not 512 or 4096", self.block_size),
            );
        }
        if self.path.as_os_str().is_empty() {
            return bad("path", "no image path given".into());
        }
        if let Some(s) = &self.serial {
            if s.is_empty() || s.len() > 32 || !s.bytes().all(|b| b.is_ascii_graphic()) {
                return bad(
                    "serial",
                    format!("{s:?} is not 1 to 32 printable ASCII characters without spaces"),
                );
            }
        }
        Ok(())
    }
}

/// Options of [`Scsi::open`](super::Scsi::open).
///
/// ```
/// use ringwork_device::scsi::{LunSpec, ScsiOptions};
///
/// let opts = ScsiOptions {
///     luns: vec![LunSpec::new(0, 0, "a.raw"), LunSpec::new(1, 0, "b.raw")],
///     num_queues: 2,
///     ..ScsiOptions::default()
/// };
/// assert_eq!(opts.queue_size, 256);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScsiOptions {
    /// The logical units present at start (more can be hot-plugged).
    pub luns: Vec<LunSpec>,
    /// Request queues, 1 to [`MAX_QUEUES`]. Default: 1.
    pub num_queues: u16,
    /// Largest queue size accepted, a power of two from 4 to 32768;
    /// `seg_max` is this minus 2. Default: 256.
    pub queue_size: u16,
    /// `max_target` in the configuration space (a scanning hint for the
    /// driver, at most 255). Default: 255.
    pub max_target: u16,
}

impl Default for ScsiOptions {
    fn default() -> Self {
        Self {
            luns: Vec::new(),
            num_queues: 1,
            queue_size: 256,
            max_target: 255,
        }
    }
}

impl ScsiOptions {
    /// Checks every option that does not need the images.
    pub(crate) fn validate(&self) -> Result<(), ScsiError> {
        let bad =
            |option: &'static str, reason: String| Err(ScsiError::InvalidOption { option, reason });
        if let Some((option, reason)) =
            queue_option_error(self.num_queues, MAX_QUEUES, self.queue_size)
        {
            return bad(option, reason);
        }
        if self.max_target > 255 {
            return bad("max_target", format!("{} is above 255", self.max_target));
        }
        for (i, l) in self.luns.iter().enumerate() {
            l.validate()?;
            if self.luns[..i]
                .iter()
                .any(|o| (o.target, o.lun) == (l.target, l.lun))
            {
                return Err(ScsiError::LunExists {
                    target: l.target,
                    lun: l.lun,
                });
            }
        }
        Ok(())
    }
}

/// Why a SCSI device or logical unit could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScsiError {
    /// An option is out of range.
    #[error("SCSI option {option}: {reason}")]
    InvalidOption {
        /// The option's field name.
        option: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A LUN is already configured at this address.
    #[error("LUN {target}:{lun} already exists")]
    LunExists {
        /// Target.
        target: u8,
        /// LUN.
        lun: u16,
    },
    /// No LUN at this address.
    #[error("no LUN {target}:{lun}")]
    NoSuchLun {
        /// Target.
        target: u8,
        /// LUN.
        lun: u16,
    },
    /// The image is neither a regular file nor a block device.
    #[error("image {}: is a {kind}, not a regular file or block device", .path.display())]
    NotAFileOrBlockDevice {
        /// The image path.
        path: PathBuf,
        /// What it is.
        kind: &'static str,
    },
    /// The image size is not a positive multiple of the block size.
    #[error(
        "image {}: size {size} bytes is not a positive multiple of the {block_size}-byte block size",
        .path.display()
    )]
    BadSize {
        /// The image path.
        path: PathBuf,
        /// Its size in bytes.
        size: u64,
        /// The LUN's block size.
        block_size: u32,
    },
    /// Opening or inspecting the image failed.
    #[error("image {}: {source}", .path.display())]
    Io {
        /// The image path.
        path: PathBuf,
        /// The operating-system error.
        #[source]
        source: io::Error,
    },
    /// The hot-plug wake-up eventfd could not be created.
    #[error("SCSI hot-plug eventfd: {0}")]
    EventFd(#[source] io::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation() {
        assert!(ScsiOptions::default().validate().is_ok());
        let dup = ScsiOptions {
            luns: vec![LunSpec::new(1, 2, "a"), LunSpec::new(1, 2, "b")],
            ..ScsiOptions::default()
        };
        assert!(matches!(
            dup.validate(),
            Err(ScsiError::LunExists { target: 1, lun: 2 })
        ));
        let big = LunSpec::new(0, 16384, "a");
        assert!(big.validate().is_err());
        let bs = LunSpec {
            block_size: 1024,
            ..LunSpec::new(0, 0, "a")
        };
        assert!(bs.validate().is_err());
        let q = ScsiOptions {
            num_queues: 0,
            ..ScsiOptions::default()
        };
        assert!(q.validate().is_err());
    }
}
