//! The block device configuration space as the driver uses it (VIRTIO 1.4
//! §5.2.4): read field by field with each field's width (§4.1.3.1,
//! §4.2.2.2), inside the generation retry loop (§2.5.1), into a private
//! copy parsed with `ringwork_spec::blk::BlkConfig`. Fields whose feature
//! was not negotiated are not read.
//!
//! Values the driver cannot work with (`seg_max` 0, `blk_size` not a
//! power of two between 512 and 64 KiB, `num_queues` 0) are errors; nothing
//! here panics. A `size_max` of 0 is read as "no limit": the spec sets no
//! lower bound, and qemu-storage-daemon's vhost-user-blk export offers
//! VIRTIO_BLK_F_SIZE_MAX with `size_max` 0 (as Linux, which only takes the
//! minimum with its own limit, we carry on).

use ringwork_spec::blk::{
    self as spec, BLK_CONFIG_SIZE, BLK_CONFIG_WRITEBACK_OFFSET, VIRTIO_BLK_F_BLK_SIZE,
    VIRTIO_BLK_F_CONFIG_WCE, VIRTIO_BLK_F_DISCARD, VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_F_GEOMETRY,
    VIRTIO_BLK_F_MQ, VIRTIO_BLK_F_SEG_MAX, VIRTIO_BLK_F_SIZE_MAX, VIRTIO_BLK_F_TOPOLOGY,
    VIRTIO_BLK_F_WRITE_ZEROES, VIRTIO_BLK_SECTOR_SIZE,
};
use ringwork_spec::features::FeatureSet;
use ringwork_transport::driver::{read_config_consistent, Transport};

use crate::common::SetupError;

/// Largest `blk_size` accepted.
pub const MAX_BLK_SIZE: u32 = 64 * 1024;

/// `geometry` (`VIRTIO_BLK_F_GEOMETRY`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlkGeometry {
    /// Cylinders.
    pub cylinders: u16,
    /// Heads.
    pub heads: u8,
    /// Sectors per track.
    pub sectors: u8,
}

/// `topology` (`VIRTIO_BLK_F_TOPOLOGY`): hints, in logical blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlkTopology {
    /// log2 of logical blocks per physical block.
    pub physical_block_exp: u8,
    /// Offset of the first aligned logical block.
    pub alignment_offset: u8,
    /// Suggested minimum I/O size, in blocks.
    pub min_io_size: u16,
    /// Optimal (suggested maximum) I/O size, in blocks.
    pub opt_io_size: u32,
}

/// Discard limits (`VIRTIO_BLK_F_DISCARD`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiscardLimits {
    /// `max_discard_sectors`: sectors per range.
    pub max_sectors: u32,
    /// `max_discard_seg`: ranges per request.
    pub max_seg: u32,
    /// `discard_sector_alignment`, in sectors (a hint).
    pub sector_alignment: u32,
}

/// Write-zeroes limits (`VIRTIO_BLK_F_WRITE_ZEROES`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteZeroesLimits {
    /// `max_write_zeroes_sectors`: sectors per range.
    pub max_sectors: u32,
    /// `max_write_zeroes_seg`: ranges per request.
    pub max_seg: u32,
    /// `write_zeroes_may_unmap`: the `unmap` flag may deallocate.
    pub may_unmap: bool,
}

/// The parsed configuration (VIRTIO 1.4 §5.2.4). `None` for fields whose
/// feature was not negotiated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlkConfig {
    /// Capacity in 512-byte sectors.
    pub capacity: u64,
    /// Maximum bytes per data segment (`VIRTIO_BLK_F_SIZE_MAX`).
    pub size_max: Option<u32>,
    /// Maximum data segments per request (`VIRTIO_BLK_F_SEG_MAX`).
    pub seg_max: Option<u32>,
    /// Disk geometry (`VIRTIO_BLK_F_GEOMETRY`).
    pub geometry: Option<BlkGeometry>,
    /// Optimal block size in bytes (`VIRTIO_BLK_F_BLK_SIZE`): a power of
    /// two between 512 and [`MAX_BLK_SIZE`].
    pub blk_size: Option<u32>,
    /// I/O alignment hints (`VIRTIO_BLK_F_TOPOLOGY`).
    pub topology: Option<BlkTopology>,
    /// Whether the device caches writes (writeback): the `writeback` field
    /// with `VIRTIO_BLK_F_CONFIG_WCE`; otherwise assumed from
    /// `VIRTIO_BLK_F_FLUSH` (§5.2.5.1: FLUSH without CONFIG_WCE means a
    /// writeback cache, neither means writethrough).
    pub writeback: bool,
    /// Request queues the device has (`VIRTIO_BLK_F_MQ`), at least 1.
    pub num_queues: Option<u16>,
    /// Discard limits (`VIRTIO_BLK_F_DISCARD`).
    pub discard: Option<DiscardLimits>,
    /// Write-zeroes limits (`VIRTIO_BLK_F_WRITE_ZEROES`).
    pub write_zeroes: Option<WriteZeroesLimits>,
}

impl BlkConfig {
    /// Capacity in bytes (saturating).
    pub fn capacity_bytes(&self) -> u64 {
        self.capacity.saturating_mul(VIRTIO_BLK_SECTOR_SIZE as u64)
    }

    /// Physical block size in bytes (`blk_size << physical_block_exp`),
    /// when both are known and it fits.
    pub fn physical_block_size(&self) -> Option<u64> {
        let b = u64::from(self.blk_size?);
        let exp = u32::from(self.topology?.physical_block_exp);
        b.checked_shl(exp).filter(|v| v >> exp == b)
    }
}

/// Feature "always present" marker in [`FIELDS`].
const ALWAYS: u32 = u32::MAX;

/// Every field the driver reads: (feature, offset, width). The offsets are
/// those of `ringwork_spec::blk::BlkConfig` (checked by a test).
pub(crate) const FIELDS: &[(u32, usize, usize)] = &[
    (ALWAYS, 0, 8),                                            // capacity
    (VIRTIO_BLK_F_SIZE_MAX, 8, 4),                             // size_max
    (VIRTIO_BLK_F_SEG_MAX, 12, 4),                             // seg_max
    (VIRTIO_BLK_F_GEOMETRY, 16, 2),                            // geometry.cylinders
    (VIRTIO_BLK_F_GEOMETRY, 18, 1),                            // geometry.heads
    (VIRTIO_BLK_F_GEOMETRY, 19, 1),                            // geometry.sectors
    (VIRTIO_BLK_F_BLK_SIZE, 20, 4),                            // blk_size
    (VIRTIO_BLK_F_TOPOLOGY, 24, 1),                            // topology.physical_block_exp
    (VIRTIO_BLK_F_TOPOLOGY, 25, 1),                            // topology.alignment_offset
    (VIRTIO_BLK_F_TOPOLOGY, 26, 2),                            // topology.min_io_size
    (VIRTIO_BLK_F_TOPOLOGY, 28, 4),                            // topology.opt_io_size
    (VIRTIO_BLK_F_CONFIG_WCE, BLK_CONFIG_WRITEBACK_OFFSET, 1), // writeback
    (VIRTIO_BLK_F_MQ, 34, 2),                                  // num_queues
    (VIRTIO_BLK_F_DISCARD, 36, 4),                             // max_discard_sectors
    (VIRTIO_BLK_F_DISCARD, 40, 4),                             // max_discard_seg
    (VIRTIO_BLK_F_DISCARD, 44, 4),                             // discard_sector_alignment
    (VIRTIO_BLK_F_WRITE_ZEROES, 48, 4),                        // max_write_zeroes_sectors
    (VIRTIO_BLK_F_WRITE_ZEROES, 52, 4),                        // max_write_zeroes_seg
    (VIRTIO_BLK_F_WRITE_ZEROES, 56, 1),                        // write_zeroes_may_unmap
];

/// Reads the fields of `features` (and `capacity`) into a private copy of
/// the configuration space, consistently (§2.5.1).
fn read_raw<T: Transport + ?Sized>(
    t: &mut T,
    features: FeatureSet,
) -> Result<[u8; BLK_CONFIG_SIZE], SetupError> {
    Ok(read_config_consistent(t, |t| {
        let mut buf = [0u8; BLK_CONFIG_SIZE];
        for &(bit, off, width) in FIELDS {
            if bit == ALWAYS || features.contains(bit) {
                if let Some(field) = buf.get_mut(off..off + width) {
                    t.read_config(off, field);
                }
            }
        }
        buf
    })?)
}

fn bad(field: &'static str, value: u64, reason: &'static str) -> SetupError {
    SetupError::BadConfig {
        field,
        value,
        reason,
    }
}

/// Reads and validates the configuration for the negotiated `features`.
pub(crate) fn read<T: Transport + ?Sized>(
    t: &mut T,
    features: FeatureSet,
) -> Result<BlkConfig, SetupError> {
    let raw = read_raw(t, features)?;
    parse(&raw, features)
}

/// Parses a private copy of the configuration space.
pub(crate) fn parse(
    raw: &[u8; BLK_CONFIG_SIZE],
    features: FeatureSet,
) -> Result<BlkConfig, SetupError> {
    // The buffer is exactly BLK_CONFIG_SIZE bytes: no accessor can panic.
    let v = spec::BlkConfig::new_unchecked(&raw[..]);
    let has = |bit| features.contains(bit);
    let size_max = if has(VIRTIO_BLK_F_SIZE_MAX) {
        match v.size_max() {
            0 => None,
            n => Some(n),
        }
    } else {
        None
    };
    let seg_max = if has(VIRTIO_BLK_F_SEG_MAX) {
        match v.seg_max() {
            0 => return Err(bad("seg_max", 0, "must not be 0")),
            n => Some(n),
        }
    } else {
        None
    };
    let blk_size = if has(VIRTIO_BLK_F_BLK_SIZE) {
        let b = v.blk_size();
        if !b.is_power_of_two() || b < VIRTIO_BLK_SECTOR_SIZE as u32 || b > MAX_BLK_SIZE {
            return Err(bad(
                "blk_size",
                b.into(),
                "not a power of two between 512 and 65536",
            ));
        }
        Some(b)
    } else {
        None
    };
    let num_queues = if has(VIRTIO_BLK_F_MQ) {
        match v.num_queues() {
            0 => return Err(bad("num_queues", 0, "must not be 0")),
            n => Some(n),
        }
    } else {
        None
    };
    let writeback = if has(VIRTIO_BLK_F_CONFIG_WCE) {
        v.writeback() != 0
    } else {
        has(VIRTIO_BLK_F_FLUSH)
    };
    Ok(BlkConfig {
        capacity: v.capacity(),
        size_max,
        seg_max,
        geometry: has(VIRTIO_BLK_F_GEOMETRY).then(|| BlkGeometry {
            cylinders: v.geometry_cylinders(),
            heads: v.geometry_heads(),
            sectors: v.geometry_sectors(),
        }),
        blk_size,
        topology: has(VIRTIO_BLK_F_TOPOLOGY).then(|| BlkTopology {
            physical_block_exp: v.topology_physical_block_exp(),
            alignment_offset: v.topology_alignment_offset(),
            min_io_size: v.topology_min_io_size(),
            opt_io_size: v.topology_opt_io_size(),
        }),
        writeback,
        num_queues,
        discard: has(VIRTIO_BLK_F_DISCARD).then(|| DiscardLimits {
            max_sectors: v.max_discard_sectors(),
            max_seg: v.max_discard_seg(),
            sector_alignment: v.discard_sector_alignment(),
        }),
        write_zeroes: has(VIRTIO_BLK_F_WRITE_ZEROES).then(|| WriteZeroesLimits {
            max_sectors: v.max_write_zeroes_sectors(),
            max_seg: v.max_write_zeroes_seg(),
            may_unmap: v.write_zeroes_may_unmap() != 0,
        }),
    })
}

/// Re-reads the fields a device may change while running (§5.2.6.2:
/// `capacity`, `writeback`, `write_zeroes_may_unmap`) into `config`.
pub(crate) fn refresh<T: Transport + ?Sized>(
    t: &mut T,
    features: FeatureSet,
    config: &mut BlkConfig,
) -> Result<(), SetupError> {
    let raw = read_raw(t, features)?;
    let v = spec::BlkConfig::new_unchecked(&raw[..]);
    config.capacity = v.capacity();
    if features.contains(VIRTIO_BLK_F_CONFIG_WCE) {
        config.writeback = v.writeback() != 0;
    }
    if let Some(wz) = &mut config.write_zeroes {
        wz.may_unmap = v.write_zeroes_may_unmap() != 0;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The field table matches the spec crate's layout: writing a field
    /// through the spec view touches exactly the bytes the table reads.
    #[test]
    fn field_table_matches_the_spec_layout() {
        type Setter = fn(&mut spec::BlkConfig<&mut [u8]>);
        let setters: [Setter; 19] = [
            |c| c.set_capacity(u64::MAX),
            |c| c.set_size_max(u32::MAX),
            |c| c.set_seg_max(u32::MAX),
            |c| c.set_geometry_cylinders(u16::MAX),
            |c| c.set_geometry_heads(u8::MAX),
            |c| c.set_geometry_sectors(u8::MAX),
            |c| c.set_blk_size(u32::MAX),
            |c| c.set_topology_physical_block_exp(u8::MAX),
            |c| c.set_topology_alignment_offset(u8::MAX),
            |c| c.set_topology_min_io_size(u16::MAX),
            |c| c.set_topology_opt_io_size(u32::MAX),
            |c| c.set_writeback(u8::MAX),
            |c| c.set_num_queues(u16::MAX),
            |c| c.set_max_discard_sectors(u32::MAX),
            |c| c.set_max_discard_seg(u32::MAX),
            |c| c.set_discard_sector_alignment(u32::MAX),
            |c| c.set_max_write_zeroes_sectors(u32::MAX),
            |c| c.set_max_write_zeroes_seg(u32::MAX),
            |c| c.set_write_zeroes_may_unmap(u8::MAX),
        ];
        assert_eq!(setters.len(), FIELDS.len());
        for (set, &(_, off, width)) in setters.iter().zip(FIELDS) {
            let mut buf = [0u8; BLK_CONFIG_SIZE];
            set(&mut spec::BlkConfig::new_unchecked(&mut buf[..]));
            let touched: alloc::vec::Vec<usize> =
                (0..BLK_CONFIG_SIZE).filter(|&i| buf[i] != 0).collect();
            assert_eq!(touched, (off..off + width).collect::<alloc::vec::Vec<_>>());
        }
    }

    fn config_with(f: impl FnOnce(&mut spec::BlkConfig<&mut [u8]>)) -> [u8; BLK_CONFIG_SIZE] {
        let mut buf = [0u8; BLK_CONFIG_SIZE];
        f(&mut spec::BlkConfig::new_unchecked(&mut buf[..]));
        buf
    }

    #[test]
    fn hostile_values_are_refused() {
        let all = FeatureSet::from_bits(&[
            VIRTIO_BLK_F_SEG_MAX,
            VIRTIO_BLK_F_SIZE_MAX,
            VIRTIO_BLK_F_BLK_SIZE,
            VIRTIO_BLK_F_MQ,
        ]);
        let good = |c: &mut spec::BlkConfig<&mut [u8]>| {
            c.set_capacity(8);
            c.set_seg_max(4);
            c.set_size_max(4096);
            c.set_blk_size(4096);
            c.set_num_queues(2);
        };
        let ok = parse(&config_with(good), all).unwrap();
        assert_eq!(ok.blk_size, Some(4096));
        assert_eq!(ok.num_queues, Some(2));
        for (field, edit) in [
            (
                "seg_max",
                (|c| c.set_seg_max(0)) as fn(&mut spec::BlkConfig<&mut [u8]>),
            ),
            ("blk_size", |c| c.set_blk_size(1000)),
            ("blk_size", |c| c.set_blk_size(256)),
            ("blk_size", |c| c.set_blk_size(1 << 20)),
            ("num_queues", |c| c.set_num_queues(0)),
        ] {
            let raw = config_with(|c| {
                good(c);
                edit(c);
            });
            match parse(&raw, all) {
                Err(SetupError::BadConfig { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: {other:?}"),
            }
        }
        // size_max 0 (qemu-storage-daemon offers it): no limit.
        let raw = config_with(|c| {
            good(c);
            c.set_size_max(0);
        });
        assert_eq!(parse(&raw, all).unwrap().size_max, None);
        // Without the features, the same bytes are not looked at.
        let raw = config_with(|c| c.set_seg_max(0));
        assert_eq!(parse(&raw, FeatureSet::EMPTY).unwrap().seg_max, None);
    }

    #[test]
    fn writeback_follows_the_features() {
        let raw = config_with(|c| c.set_writeback(0));
        assert!(!parse(&raw, FeatureSet::EMPTY).unwrap().writeback);
        assert!(
            parse(&raw, FeatureSet::from_bits(&[VIRTIO_BLK_F_FLUSH]))
                .unwrap()
                .writeback
        );
        let wce = FeatureSet::from_bits(&[VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_F_CONFIG_WCE]);
        assert!(!parse(&raw, wce).unwrap().writeback);
        let raw = config_with(|c| c.set_writeback(1));
        assert!(parse(&raw, wce).unwrap().writeback);
    }

    #[test]
    fn physical_block_size_never_overflows() {
        let mut c = parse(&config_with(|_| {}), FeatureSet::EMPTY).unwrap();
        assert_eq!(c.physical_block_size(), None);
        c.blk_size = Some(512);
        c.topology = Some(BlkTopology {
            physical_block_exp: 3,
            alignment_offset: 0,
            min_io_size: 0,
            opt_io_size: 0,
        });
        assert_eq!(c.physical_block_size(), Some(4096));
        c.topology = Some(BlkTopology {
            physical_block_exp: 200,
            alignment_offset: 0,
            min_io_size: 0,
            opt_io_size: 0,
        });
        assert_eq!(c.physical_block_size(), None);
        c.capacity = u64::MAX;
        assert_eq!(c.capacity_bytes(), u64::MAX);
    }
}
