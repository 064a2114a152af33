//! VIRTIO 1.4 §5.2 Block Device.
//!
//! Contents: the feature bits (`VIRTIO_BLK_F_*`, bit numbers), the
//! configuration space ([`BlkConfig`], `struct virtio_blk_config`, zoned
//! characteristics included), the request header ([`BlkReqHeader`]), the
//! discard / write-zeroes / secure-erase segment ([`BlkDiscardWriteZeroes`]),
//! the lifetime reply ([`BlkLifetime`]), the zone report header and zone
//! descriptor, the request types (`VIRTIO_BLK_T_*`, [`BlkReqType`]), status
//! values (`VIRTIO_BLK_S_*`, [`BlkStatus`]), zoned models, zone types and
//! states, and the feature rules ([`BLK_FEATURE_RULES`],
//! [`BLK_OFFER_RULES`]).
//!
//! A request is `header (16 bytes, device-readable) | data | status (1 byte,
//! device-writable)`; a `VIRTIO_BLK_T_ZONE_APPEND` request ends with
//! [`BlkZoneAppendFooter`] (`append_sector` then `status`) instead.
//! Sectors are always 512 bytes ([`VIRTIO_BLK_SECTOR_SIZE`]), whatever
//! `blk_size` says.
//!
//! Queues: `requestq1..requestqN` are queues `0..N-1`; N is 1 unless
//! `VIRTIO_BLK_F_MQ` is negotiated, then it is `num_queues`
//! ([`num_request_queues`]).
//!
//! ```
//! use ringwork_spec::blk::{BlkReqHeader, BlkReqType, VIRTIO_BLK_T_IN};
//!
//! let mut bytes = [0u8; 16];
//! let mut hdr = BlkReqHeader::new_checked(&mut bytes[..]).unwrap();
//! hdr.set_type_(VIRTIO_BLK_T_IN);
//! hdr.set_sector(8);
//! assert_eq!(BlkReqType::from(hdr.type_()), BlkReqType::In);
//! assert_eq!(bytes[8], 8);
//! ```

use crate::features::{FeatureRule, VIRTIO_F_VERSION_1};
use crate::le::{Le16, Le32, Le64};
use crate::wire_view;

// ---------------------------------------------------------------------------
// Feature bits (§5.2.3)
// ---------------------------------------------------------------------------

/// Maximum size of any single segment is in `size_max`.
pub const VIRTIO_BLK_F_SIZE_MAX: u32 = 1;
/// Maximum number of segments in a request is in `seg_max`.
pub const VIRTIO_BLK_F_SEG_MAX: u32 = 2;
/// Disk-style geometry specified in `geometry`.
pub const VIRTIO_BLK_F_GEOMETRY: u32 = 4;
/// Device is read-only.
pub const VIRTIO_BLK_F_RO: u32 = 5;
/// Block size of disk is in `blk_size`.
pub const VIRTIO_BLK_F_BLK_SIZE: u32 = 6;
/// Cache flush command support (legacy name `VIRTIO_BLK_F_WCE`).
#[doc(alias = "VIRTIO_BLK_F_WCE")]
pub const VIRTIO_BLK_F_FLUSH: u32 = 9;
/// Device exports information on optimal I/O alignment (`topology`).
pub const VIRTIO_BLK_F_TOPOLOGY: u32 = 10;
/// Device can toggle its cache between writeback and writethrough modes
/// (`writeback`).
pub const VIRTIO_BLK_F_CONFIG_WCE: u32 = 11;
/// Device supports multiqueue (`num_queues`).
pub const VIRTIO_BLK_F_MQ: u32 = 12;
/// Device supports discard (`max_discard_sectors`, `max_discard_seg`).
pub const VIRTIO_BLK_F_DISCARD: u32 = 13;
/// Device supports write zeroes (`max_write_zeroes_sectors`,
/// `max_write_zeroes_seg`).
pub const VIRTIO_BLK_F_WRITE_ZEROES: u32 = 14;
/// Device supports providing storage lifetime information.
pub const VIRTIO_BLK_F_LIFETIME: u32 = 15;
/// Device supports secure erase (`max_secure_erase_sectors`,
/// `max_secure_erase_seg`).
pub const VIRTIO_BLK_F_SECURE_ERASE: u32 = 16;
/// Device is a zoned block device (`zoned`).
pub const VIRTIO_BLK_F_ZONED: u32 = 17;
/// Legacy: device supports request barriers.
pub const VIRTIO_BLK_F_BARRIER: u32 = 0;
/// Legacy: device supports SCSI packet commands.
pub const VIRTIO_BLK_F_SCSI: u32 = 7;

/// Feature dependency rules of §5.2, for offered and accepted sets alike
/// (see [`FeatureRule`]).
///
/// - `VIRTIO_BLK_F_ZONED` requires `VIRTIO_F_VERSION_1`: "Legacy devices
///   MUST NOT offer VIRTIO_BLK_F_ZONED feature bit"; it "cannot be properly
///   negotiated without FEATURES_OK" (§5.2.5.2).
///
/// Not expressible here, because it depends on the `zoned_model` config
/// field: with ZONED offered and model [`VIRTIO_BLK_Z_HM`], the driver MUST
/// NOT negotiate `VIRTIO_BLK_F_DISCARD` (§5.2.5.1).
pub const BLK_FEATURE_RULES: &[FeatureRule] =
    &[FeatureRule::new(VIRTIO_BLK_F_ZONED, "§5.2.5.2").all_of(&[VIRTIO_F_VERSION_1])];

/// Rules that constrain only the features a device *offers*, not those a
/// driver accepts.
///
/// - Devices "MUST offer [VIRTIO_BLK_F_FLUSH] if they offer
///   VIRTIO_BLK_F_CONFIG_WCE" (§5.2.5.2). Negotiating CONFIG_WCE without
///   FLUSH is allowed (the device then starts with `writeback` 0), so this
///   rule is not in [`BLK_FEATURE_RULES`].
pub const BLK_OFFER_RULES: &[FeatureRule] =
    &[FeatureRule::new(VIRTIO_BLK_F_CONFIG_WCE, "§5.2.5.2").all_of(&[VIRTIO_BLK_F_FLUSH])];

/// A driver SHOULD accept these if offered: `VIRTIO_BLK_F_RO` (§5.2.6.1).
pub const BLK_SHOULD_ACCEPT_IF_OFFERED: &[u32] = &[VIRTIO_BLK_F_RO];

// ---------------------------------------------------------------------------
// Configuration space (§5.2.4)
// ---------------------------------------------------------------------------

/// Size of a sector: the unit of `capacity`, `sector` and every
/// `*_sectors` field, independent of `blk_size`.
#[doc(alias = "SECTOR_SIZE")]
pub const VIRTIO_BLK_SECTOR_SIZE: usize = 512;
/// `log2(VIRTIO_BLK_SECTOR_SIZE)`.
#[doc(alias = "SECTOR_SHIFT")]
pub const VIRTIO_BLK_SECTOR_SHIFT: u32 = 9;

/// Offset of `writeback` in [`BlkConfig`] (driver-writable with
/// `VIRTIO_BLK_F_CONFIG_WCE`).
pub const BLK_CONFIG_WRITEBACK_OFFSET: usize = 32;

/// `writeback` value: writethrough cache.
pub const VIRTIO_BLK_WRITEBACK_WRITETHROUGH: u8 = 0;
/// `writeback` value: writeback cache.
pub const VIRTIO_BLK_WRITEBACK_WRITEBACK: u8 = 1;

/// Zoned model: drive-managed or non-zoned; treat as a regular device.
pub const VIRTIO_BLK_Z_NONE: u8 = 0;
/// Zoned model: host-managed (sequential write required zones).
pub const VIRTIO_BLK_Z_HM: u8 = 1;
/// Zoned model: host-aware (sequential write preferred zones).
pub const VIRTIO_BLK_Z_HA: u8 = 2;

wire_view! {
    /// The block device configuration space (`struct virtio_blk_config`),
    /// nested structures flattened (`geometry.cylinders` →
    /// `geometry_cylinders`, ...). Fields past `capacity` are only valid with
    /// the feature that introduces them.
    ///
    /// Devices may expose a shorter configuration space (older devices end
    /// before the fields of features they do not offer); copy what is there
    /// into a zeroed buffer of [`BLK_CONFIG_SIZE`] bytes to use this view.
    #[doc(alias = "virtio_blk_config")]
    pub struct BlkConfig, size BLK_CONFIG_SIZE = 96 {
        /// Capacity in 512-byte sectors (always valid).
        @0 capacity / set_capacity: Le64,
        /// Maximum segment size (`VIRTIO_BLK_F_SIZE_MAX`).
        @8 size_max / set_size_max: Le32,
        /// Maximum segments per request (`VIRTIO_BLK_F_SEG_MAX`).
        @12 seg_max / set_seg_max: Le32,
        /// `geometry.cylinders` (`VIRTIO_BLK_F_GEOMETRY`).
        @16 geometry_cylinders / set_geometry_cylinders: Le16,
        /// `geometry.heads`.
        @18 geometry_heads / set_geometry_heads: u8,
        /// `geometry.sectors`.
        @19 geometry_sectors / set_geometry_sectors: u8,
        /// Optimal block size in bytes (`VIRTIO_BLK_F_BLK_SIZE`).
        @20 blk_size / set_blk_size: Le32,
        /// `topology.physical_block_exp`: log2 of logical blocks per physical
        /// block (`VIRTIO_BLK_F_TOPOLOGY`).
        @24 topology_physical_block_exp / set_topology_physical_block_exp: u8,
        /// `topology.alignment_offset`: offset of first aligned logical block.
        @25 topology_alignment_offset / set_topology_alignment_offset: u8,
        /// `topology.min_io_size`: suggested minimum I/O size in blocks.
        @26 topology_min_io_size / set_topology_min_io_size: Le16,
        /// `topology.opt_io_size`: optimal (suggested maximum) I/O size in
        /// blocks.
        @28 topology_opt_io_size / set_topology_opt_io_size: Le32,
        /// Cache mode, 0 writethrough / 1 writeback (`VIRTIO_BLK_F_CONFIG_WCE`;
        /// driver-writable).
        @32 writeback / set_writeback: u8,
        /// Padding, 0.
        @33 unused0 / set_unused0: u8,
        /// Number of request queues (`VIRTIO_BLK_F_MQ`).
        @34 num_queues / set_num_queues: Le16,
        /// Maximum discard sectors per request (`VIRTIO_BLK_F_DISCARD`).
        @36 max_discard_sectors / set_max_discard_sectors: Le32,
        /// Maximum discard segments per request.
        @40 max_discard_seg / set_max_discard_seg: Le32,
        /// Discard alignment, in sectors.
        @44 discard_sector_alignment / set_discard_sector_alignment: Le32,
        /// Maximum write-zeroes sectors per request
        /// (`VIRTIO_BLK_F_WRITE_ZEROES`).
        @48 max_write_zeroes_sectors / set_max_write_zeroes_sectors: Le32,
        /// Maximum write-zeroes segments per request.
        @52 max_write_zeroes_seg / set_max_write_zeroes_seg: Le32,
        /// Whether write zeroes with `unmap` may deallocate.
        @56 write_zeroes_may_unmap / set_write_zeroes_may_unmap: u8,
        /// Padding, 0.
        @57 unused1 / set_unused1: [u8; 3],
        /// Maximum secure-erase sectors per request
        /// (`VIRTIO_BLK_F_SECURE_ERASE`).
        @60 max_secure_erase_sectors / set_max_secure_erase_sectors: Le32,
        /// Maximum secure-erase segments per request.
        @64 max_secure_erase_seg / set_max_secure_erase_seg: Le32,
        /// Secure-erase alignment, in sectors.
        @68 secure_erase_sector_alignment / set_secure_erase_sector_alignment: Le32,
        /// `zoned.zone_sectors`: zone size in sectors (`VIRTIO_BLK_F_ZONED`).
        @72 zoned_zone_sectors / set_zoned_zone_sectors: Le32,
        /// `zoned.max_open_zones` (0: no limit).
        @76 zoned_max_open_zones / set_zoned_max_open_zones: Le32,
        /// `zoned.max_active_zones` (0: no limit).
        @80 zoned_max_active_zones / set_zoned_max_active_zones: Le32,
        /// `zoned.max_append_sectors` (0: ZONE_APPEND unsupported).
        @84 zoned_max_append_sectors / set_zoned_max_append_sectors: Le32,
        /// `zoned.write_granularity`, in bytes.
        @88 zoned_write_granularity / set_zoned_write_granularity: Le32,
        /// `zoned.model`: `VIRTIO_BLK_Z_*`.
        @92 zoned_model / set_zoned_model: u8,
        /// `zoned.unused2`: padding, 0.
        @93 zoned_unused2 / set_zoned_unused2: [u8; 3],
    }
}

/// Number of request queues: `num_queues` if `VIRTIO_BLK_F_MQ` was
/// negotiated, otherwise 1. Request queue `k` (`requestq{k+1}`) has
/// virtqueue index `k`.
#[inline]
pub const fn num_request_queues(mq_negotiated: bool, num_queues: u16) -> u16 {
    if mq_negotiated {
        num_queues
    } else {
        1
    }
}

/// Number of zones: `(capacity + zone_sectors - 1) / zone_sectors`
/// (§5.2.5.2); 0 when `zone_sectors` is 0.
#[inline]
pub const fn nr_zones(capacity: u64, zone_sectors: u32) -> u64 {
    if zone_sectors == 0 {
        0
    } else {
        capacity.div_ceil(zone_sectors as u64)
    }
}

/// Size in sectors of the last zone: `capacity - (nr_zones - 1) *
/// zone_sectors` (§5.2.5.2); 0 when there are no zones.
#[inline]
pub const fn last_zone_sectors(capacity: u64, zone_sectors: u32) -> u64 {
    let n = nr_zones(capacity, zone_sectors);
    if n == 0 {
        0
    } else {
        capacity - (n - 1) * zone_sectors as u64
    }
}

// ---------------------------------------------------------------------------
// Requests (§5.2.6)
// ---------------------------------------------------------------------------

/// Read (`data` device-writable).
pub const VIRTIO_BLK_T_IN: u32 = 0;
/// Write (`data` device-readable).
pub const VIRTIO_BLK_T_OUT: u32 = 1;
/// Flush the volatile write cache (`sector` 0, no data).
pub const VIRTIO_BLK_T_FLUSH: u32 = 4;
/// Fetch the device ID string ([`VIRTIO_BLK_ID_BYTES`] bytes).
pub const VIRTIO_BLK_T_GET_ID: u32 = 8;
/// Fetch lifetime information ([`BlkLifetime`]).
pub const VIRTIO_BLK_T_GET_LIFETIME: u32 = 10;
/// Discard ranges ([`BlkDiscardWriteZeroes`] segments).
pub const VIRTIO_BLK_T_DISCARD: u32 = 11;
/// Write zeroes to ranges ([`BlkDiscardWriteZeroes`] segments).
pub const VIRTIO_BLK_T_WRITE_ZEROES: u32 = 13;
/// Securely erase ranges ([`BlkDiscardWriteZeroes`] segments).
pub const VIRTIO_BLK_T_SECURE_ERASE: u32 = 14;
/// Zone append (write; uses [`BlkZoneAppendFooter`]).
pub const VIRTIO_BLK_T_ZONE_APPEND: u32 = 15;
/// Zone report (read; [`BlkZoneReport`] + [`BlkZoneDescriptor`]s).
pub const VIRTIO_BLK_T_ZONE_REPORT: u32 = 16;
/// Explicitly open the zone at `sector`.
pub const VIRTIO_BLK_T_ZONE_OPEN: u32 = 18;
/// Close the zone at `sector`.
pub const VIRTIO_BLK_T_ZONE_CLOSE: u32 = 20;
/// Finish the zone at `sector`.
pub const VIRTIO_BLK_T_ZONE_FINISH: u32 = 22;
/// Reset the zone at `sector`.
pub const VIRTIO_BLK_T_ZONE_RESET: u32 = 24;
/// Reset all zones (`sector` unused, 0).
pub const VIRTIO_BLK_T_ZONE_RESET_ALL: u32 = 26;
/// Legacy: SCSI packet command.
pub const VIRTIO_BLK_T_SCSI_CMD: u32 = 2;
/// Legacy: SCSI packet command (same as [`VIRTIO_BLK_T_SCSI_CMD`]).
pub const VIRTIO_BLK_T_SCSI_CMD_OUT: u32 = 3;
/// Legacy synonym of [`VIRTIO_BLK_T_FLUSH`]; drivers MUST treat it as FLUSH.
pub const VIRTIO_BLK_T_FLUSH_OUT: u32 = 5;
/// Legacy: high bit of `type` marking a barrier request
/// (`VIRTIO_BLK_F_BARRIER`); a flag ORed into the type, not a type.
pub const VIRTIO_BLK_T_BARRIER: u32 = 0x8000_0000;

/// Length of the `VIRTIO_BLK_T_GET_ID` data: a NUL-padded ASCII string, not
/// NUL-terminated when 20 bytes long.
pub const VIRTIO_BLK_ID_BYTES: usize = 20;
/// Legacy: size of the `sense` buffer of a SCSI packet command.
pub const SCSI_SENSE_BUFFERSIZE: usize = 96;

/// A request type, for matching. Unknown values are kept in
/// [`Unknown`](Self::Unknown); `u32::from` gives back the wire value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BlkReqType {
    /// [`VIRTIO_BLK_T_IN`].
    In,
    /// [`VIRTIO_BLK_T_OUT`].
    Out,
    /// [`VIRTIO_BLK_T_FLUSH`].
    Flush,
    /// [`VIRTIO_BLK_T_GET_ID`].
    GetId,
    /// [`VIRTIO_BLK_T_GET_LIFETIME`].
    GetLifetime,
    /// [`VIRTIO_BLK_T_DISCARD`].
    Discard,
    /// [`VIRTIO_BLK_T_WRITE_ZEROES`].
    WriteZeroes,
    /// [`VIRTIO_BLK_T_SECURE_ERASE`].
    SecureErase,
    /// [`VIRTIO_BLK_T_ZONE_APPEND`].
    ZoneAppend,
    /// [`VIRTIO_BLK_T_ZONE_REPORT`].
    ZoneReport,
    /// [`VIRTIO_BLK_T_ZONE_OPEN`].
    ZoneOpen,
    /// [`VIRTIO_BLK_T_ZONE_CLOSE`].
    ZoneClose,
    /// [`VIRTIO_BLK_T_ZONE_FINISH`].
    ZoneFinish,
    /// [`VIRTIO_BLK_T_ZONE_RESET`].
    ZoneReset,
    /// [`VIRTIO_BLK_T_ZONE_RESET_ALL`].
    ZoneResetAll,
    /// Legacy [`VIRTIO_BLK_T_SCSI_CMD`].
    ScsiCmd,
    /// Legacy [`VIRTIO_BLK_T_SCSI_CMD_OUT`].
    ScsiCmdOut,
    /// Legacy [`VIRTIO_BLK_T_FLUSH_OUT`] (to be treated as a flush).
    FlushOut,
    /// Any other value (including legacy barrier-flagged types).
    Unknown(u32),
}

impl From<u32> for BlkReqType {
    fn from(v: u32) -> Self {
        match v {
            VIRTIO_BLK_T_IN => Self::In,
            VIRTIO_BLK_T_OUT => Self::Out,
            VIRTIO_BLK_T_FLUSH => Self::Flush,
            VIRTIO_BLK_T_GET_ID => Self::GetId,
            VIRTIO_BLK_T_GET_LIFETIME => Self::GetLifetime,
            VIRTIO_BLK_T_DISCARD => Self::Discard,
            VIRTIO_BLK_T_WRITE_ZEROES => Self::WriteZeroes,
            VIRTIO_BLK_T_SECURE_ERASE => Self::SecureErase,
            VIRTIO_BLK_T_ZONE_APPEND => Self::ZoneAppend,
            VIRTIO_BLK_T_ZONE_REPORT => Self::ZoneReport,
            VIRTIO_BLK_T_ZONE_OPEN => Self::ZoneOpen,
            VIRTIO_BLK_T_ZONE_CLOSE => Self::ZoneClose,
            VIRTIO_BLK_T_ZONE_FINISH => Self::ZoneFinish,
            VIRTIO_BLK_T_ZONE_RESET => Self::ZoneReset,
            VIRTIO_BLK_T_ZONE_RESET_ALL => Self::ZoneResetAll,
            VIRTIO_BLK_T_SCSI_CMD => Self::ScsiCmd,
            VIRTIO_BLK_T_SCSI_CMD_OUT => Self::ScsiCmdOut,
            VIRTIO_BLK_T_FLUSH_OUT => Self::FlushOut,
            other => Self::Unknown(other),
        }
    }
}

impl From<BlkReqType> for u32 {
    fn from(t: BlkReqType) -> u32 {
        match t {
            BlkReqType::In => VIRTIO_BLK_T_IN,
            BlkReqType::Out => VIRTIO_BLK_T_OUT,
            BlkReqType::Flush => VIRTIO_BLK_T_FLUSH,
            BlkReqType::GetId => VIRTIO_BLK_T_GET_ID,
            BlkReqType::GetLifetime => VIRTIO_BLK_T_GET_LIFETIME,
            BlkReqType::Discard => VIRTIO_BLK_T_DISCARD,
            BlkReqType::WriteZeroes => VIRTIO_BLK_T_WRITE_ZEROES,
            BlkReqType::SecureErase => VIRTIO_BLK_T_SECURE_ERASE,
            BlkReqType::ZoneAppend => VIRTIO_BLK_T_ZONE_APPEND,
            BlkReqType::ZoneReport => VIRTIO_BLK_T_ZONE_REPORT,
            BlkReqType::ZoneOpen => VIRTIO_BLK_T_ZONE_OPEN,
            BlkReqType::ZoneClose => VIRTIO_BLK_T_ZONE_CLOSE,
            BlkReqType::ZoneFinish => VIRTIO_BLK_T_ZONE_FINISH,
            BlkReqType::ZoneReset => VIRTIO_BLK_T_ZONE_RESET,
            BlkReqType::ZoneResetAll => VIRTIO_BLK_T_ZONE_RESET_ALL,
            BlkReqType::ScsiCmd => VIRTIO_BLK_T_SCSI_CMD,
            BlkReqType::ScsiCmdOut => VIRTIO_BLK_T_SCSI_CMD_OUT,
            BlkReqType::FlushOut => VIRTIO_BLK_T_FLUSH_OUT,
            BlkReqType::Unknown(v) => v,
        }
    }
}

wire_view! {
    /// The device-readable header of every block request (the first three
    /// fields of `struct virtio_blk_req` / `struct virtio_blk_req_za`).
    #[doc(alias = "virtio_blk_req")]
    #[doc(alias = "virtio_blk_outhdr")]
    pub struct BlkReqHeader, size BLK_REQ_HEADER_SIZE = 16 {
        /// Request type, `VIRTIO_BLK_T_*` (see [`BlkReqType`]).
        @0 type_ / set_type_: Le32,
        /// Reserved (legacy `ioprio`), 0.
        @4 reserved / set_reserved: Le32,
        /// Start sector (512-byte units) for reads, writes and zone
        /// operations; 0 otherwise.
        @8 sector / set_sector: Le64,
    }
}

/// Size of the device-writable `status` byte that ends a request.
pub const BLK_STATUS_SIZE: usize = 1;

wire_view! {
    /// The device-writable end of a `VIRTIO_BLK_T_ZONE_APPEND` request
    /// (`append_sector` and `status` of `struct virtio_blk_req_za`).
    #[doc(alias = "virtio_blk_req_za")]
    pub struct BlkZoneAppendFooter, size BLK_ZONE_APPEND_FOOTER_SIZE = 9 {
        /// Sector at which the data was appended (valid on success).
        @0 append_sector / set_append_sector: Le64,
        /// `VIRTIO_BLK_S_*`.
        @8 status / set_status: u8,
    }
}

/// `flags` bit of [`BlkDiscardWriteZeroes`]: the device may deallocate the
/// range (write zeroes only; MUST be 0 for discard).
#[doc(alias = "unmap")]
pub const VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP: u32 = 1 << 0;

wire_view! {
    /// One segment of a discard, write-zeroes or secure-erase request
    /// (`struct virtio_blk_discard_write_zeroes`).
    #[doc(alias = "virtio_blk_discard_write_zeroes")]
    pub struct BlkDiscardWriteZeroes, size BLK_DISCARD_WRITE_ZEROES_SIZE = 16 {
        /// Start sector (512-byte units).
        @0 sector / set_sector: Le64,
        /// Number of sectors.
        @8 num_sectors / set_num_sectors: Le32,
        /// Bit 0 `unmap` ([`VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP`]); bits 1..31
        /// reserved.
        @12 flags / set_flags: Le32,
    }
}

impl<B: AsRef<[u8]>> BlkDiscardWriteZeroes<B> {
    /// The `unmap` bit of `flags`.
    #[inline]
    pub fn unmap(&self) -> bool {
        self.flags() & VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP != 0
    }
}

/// `pre_eol_info`: value not available.
pub const VIRTIO_BLK_PRE_EOL_INFO_UNDEFINED: u16 = 0;
/// `pre_eol_info`: < 80% of reserved blocks are consumed.
pub const VIRTIO_BLK_PRE_EOL_INFO_NORMAL: u16 = 1;
/// `pre_eol_info`: 80% of reserved blocks are consumed.
pub const VIRTIO_BLK_PRE_EOL_INFO_WARNING: u16 = 2;
/// `pre_eol_info`: 90% of reserved blocks are consumed.
pub const VIRTIO_BLK_PRE_EOL_INFO_URGENT: u16 = 3;

wire_view! {
    /// Reply data of `VIRTIO_BLK_T_GET_LIFETIME` (`struct virtio_blk_lifetime`).
    #[doc(alias = "virtio_blk_lifetime")]
    pub struct BlkLifetime, size BLK_LIFETIME_SIZE = 6 {
        /// `VIRTIO_BLK_PRE_EOL_INFO_*`.
        @0 pre_eol_info / set_pre_eol_info: Le16,
        /// SLC wear, in 10% steps: 0 undefined, 1 up to 10% used, ..., 11
        /// exceeded; above 11 reserved.
        @2 device_lifetime_est_typ_a / set_device_lifetime_est_typ_a: Le16,
        /// MLC wear, same scale as `device_lifetime_est_typ_a`.
        @4 device_lifetime_est_typ_b / set_device_lifetime_est_typ_b: Le16,
    }
}

// ---------------------------------------------------------------------------
// Status (§5.2.6)
// ---------------------------------------------------------------------------

/// Success.
pub const VIRTIO_BLK_S_OK: u8 = 0;
/// Device or driver error.
pub const VIRTIO_BLK_S_IOERR: u8 = 1;
/// Request unsupported by the device.
pub const VIRTIO_BLK_S_UNSUPP: u8 = 2;
/// Zoned: invalid command for the zone or its state.
pub const VIRTIO_BLK_S_ZONE_INVALID_CMD: u8 = 3;
/// Zoned: write not at the zone's write pointer.
pub const VIRTIO_BLK_S_ZONE_UNALIGNED_WP: u8 = 4;
/// Zoned: open zone limit exceeded.
pub const VIRTIO_BLK_S_ZONE_OPEN_RESOURCE: u8 = 5;
/// Zoned: active zone limit exceeded.
pub const VIRTIO_BLK_S_ZONE_ACTIVE_RESOURCE: u8 = 6;

/// A request status, for matching. Unknown values are kept in
/// [`Unknown`](Self::Unknown); `u8::from` gives back the wire value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BlkStatus {
    /// [`VIRTIO_BLK_S_OK`].
    Ok,
    /// [`VIRTIO_BLK_S_IOERR`].
    IoErr,
    /// [`VIRTIO_BLK_S_UNSUPP`].
    Unsupp,
    /// [`VIRTIO_BLK_S_ZONE_INVALID_CMD`].
    ZoneInvalidCmd,
    /// [`VIRTIO_BLK_S_ZONE_UNALIGNED_WP`].
    ZoneUnalignedWp,
    /// [`VIRTIO_BLK_S_ZONE_OPEN_RESOURCE`].
    ZoneOpenResource,
    /// [`VIRTIO_BLK_S_ZONE_ACTIVE_RESOURCE`].
    ZoneActiveResource,
    /// Any other value.
    Unknown(u8),
}

impl From<u8> for BlkStatus {
    fn from(v: u8) -> Self {
        match v {
            VIRTIO_BLK_S_OK => Self::Ok,
            VIRTIO_BLK_S_IOERR => Self::IoErr,
            VIRTIO_BLK_S_UNSUPP => Self::Unsupp,
            VIRTIO_BLK_S_ZONE_INVALID_CMD => Self::ZoneInvalidCmd,
            VIRTIO_BLK_S_ZONE_UNALIGNED_WP => Self::ZoneUnalignedWp,
            VIRTIO_BLK_S_ZONE_OPEN_RESOURCE => Self::ZoneOpenResource,
            VIRTIO_BLK_S_ZONE_ACTIVE_RESOURCE => Self::ZoneActiveResource,
            other => Self::Unknown(other),
        }
    }
}

impl From<BlkStatus> for u8 {
    fn from(s: BlkStatus) -> u8 {
        match s {
            BlkStatus::Ok => VIRTIO_BLK_S_OK,
            BlkStatus::IoErr => VIRTIO_BLK_S_IOERR,
            BlkStatus::Unsupp => VIRTIO_BLK_S_UNSUPP,
            BlkStatus::ZoneInvalidCmd => VIRTIO_BLK_S_ZONE_INVALID_CMD,
            BlkStatus::ZoneUnalignedWp => VIRTIO_BLK_S_ZONE_UNALIGNED_WP,
            BlkStatus::ZoneOpenResource => VIRTIO_BLK_S_ZONE_OPEN_RESOURCE,
            BlkStatus::ZoneActiveResource => VIRTIO_BLK_S_ZONE_ACTIVE_RESOURCE,
            BlkStatus::Unknown(v) => v,
        }
    }
}

// ---------------------------------------------------------------------------
// Zone report (§5.2.6)
// ---------------------------------------------------------------------------

/// Zone type: conventional (random writes).
pub const VIRTIO_BLK_ZT_CONV: u8 = 1;
/// Zone type: sequential write required.
pub const VIRTIO_BLK_ZT_SWR: u8 = 2;
/// Zone type: sequential write preferred.
pub const VIRTIO_BLK_ZT_SWP: u8 = 3;

/// Zone state: not write-pointer (conventional zones).
pub const VIRTIO_BLK_ZS_NOT_WP: u8 = 0;
/// Zone state: empty.
pub const VIRTIO_BLK_ZS_EMPTY: u8 = 1;
/// Zone state: implicitly open.
pub const VIRTIO_BLK_ZS_IOPEN: u8 = 2;
/// Zone state: explicitly open.
pub const VIRTIO_BLK_ZS_EOPEN: u8 = 3;
/// Zone state: closed.
pub const VIRTIO_BLK_ZS_CLOSED: u8 = 4;
/// Zone state: read-only.
pub const VIRTIO_BLK_ZS_RDONLY: u8 = 13;
/// Zone state: full.
pub const VIRTIO_BLK_ZS_FULL: u8 = 14;
/// Zone state: offline.
pub const VIRTIO_BLK_ZS_OFFLINE: u8 = 15;

wire_view! {
    /// Header of a `VIRTIO_BLK_T_ZONE_REPORT` reply
    /// (`struct virtio_blk_zone_report`), followed by `nr_zones`
    /// [`BlkZoneDescriptor`]s.
    #[doc(alias = "virtio_blk_zone_report")]
    pub struct BlkZoneReport, size BLK_ZONE_REPORT_SIZE = 64 {
        /// Number of fully transferred zone descriptors.
        @0 nr_zones / set_nr_zones: Le64,
        /// Reserved.
        @8 reserved / set_reserved: [u8; 56],
    }
}

wire_view! {
    /// One zone of a zone report (`struct virtio_blk_zone_descriptor`).
    #[doc(alias = "virtio_blk_zone_descriptor")]
    pub struct BlkZoneDescriptor, size BLK_ZONE_DESCRIPTOR_SIZE = 64 {
        /// Writable capacity of the zone, in sectors.
        @0 z_cap / set_z_cap: Le64,
        /// Zone start sector.
        @8 z_start / set_z_start: Le64,
        /// Write pointer sector (undefined for some types/states).
        @16 z_wp / set_z_wp: Le64,
        /// `VIRTIO_BLK_ZT_*`.
        @24 z_type / set_z_type: u8,
        /// `VIRTIO_BLK_ZS_*`.
        @25 z_state / set_z_state: u8,
        /// Reserved.
        @26 reserved / set_reserved: [u8; 38],
    }
}

#[cfg(test)]
mod tests;
