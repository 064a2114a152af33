//! Telling what a backend is. vhost-user has no device-id message (QEMU's
//! generic `vhost-user-device` makes the user say it), so the frontend
//! infers the type from what the backend offers: device feature bits,
//! queue count and configuration space size (block, network, console,
//! entropy, balloon, SCSI). A user who knows better
//! passes the type explicitly.

use ringwork_spec::blk::{
    VIRTIO_BLK_F_BLK_SIZE, VIRTIO_BLK_F_DISCARD, VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_F_TOPOLOGY,
    VIRTIO_BLK_F_WRITE_ZEROES,
};
use ringwork_spec::device_id::{
    DeviceType, VIRTIO_ID_BALLOON, VIRTIO_ID_BLOCK, VIRTIO_ID_CONSOLE, VIRTIO_ID_NET,
    VIRTIO_ID_RNG, VIRTIO_ID_SCSI,
};

/// The size of the block device's configuration up to
/// `write_zeroes_may_unmap` and its padding (VIRTIO 1.4 §5.2.4): no other
/// charter device has a configuration space this large.
pub const BLK_CONFIG_PROBE: u32 = 60;

/// What was learned about a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    /// Offered virtio feature bits (without VHOST_USER_F_PROTOCOL_FEATURES).
    pub features: u64,
    /// GET_QUEUE_NUM, when the backend has MQ.
    pub queue_num: Option<u64>,
    /// Whether a GET_CONFIG of [`BLK_CONFIG_PROBE`] bytes succeeded (`None`:
    /// no CONFIG protocol feature, not asked).
    pub large_config: Option<bool>,
    /// Whether a GET_CONFIG of the console's 12 bytes succeeded.
    pub console_config: Option<bool>,
    /// Whether a GET_CONFIG of the balloon's 16 bytes succeeded.
    pub balloon_config: Option<bool>,
    /// Whether a GET_CONFIG of the SCSI host's 36 bytes succeeded.
    pub scsi_config: Option<bool>,
}

/// The device type a probe points at, or `None` when it is ambiguous.
pub fn identify(p: &Probe) -> Option<DeviceType> {
    let device_bits = p.features & 0xff_ffff;
    let blk_only = [
        VIRTIO_BLK_F_BLK_SIZE,
        VIRTIO_BLK_F_FLUSH,
        VIRTIO_BLK_F_TOPOLOGY,
        VIRTIO_BLK_F_DISCARD,
        VIRTIO_BLK_F_WRITE_ZEROES,
    ]
    .iter()
    .any(|&b| device_bits & (1 << b) != 0);
    if p.large_config == Some(true) || blk_only {
        return Some(DeviceType(VIRTIO_ID_BLOCK));
    }
    let queues = p.queue_num.unwrap_or(0);
    // Configuration spaces of exactly 36 (SCSI) or 16 (balloon) bytes, with
    // only that type's feature bits (SCSI 0..=3, balloon 0..=5).
    if p.scsi_config == Some(true) && device_bits & !0xf == 0 && queues >= 3 {
        return Some(DeviceType(VIRTIO_ID_SCSI));
    }
    if p.balloon_config == Some(true)
        && p.scsi_config != Some(true)
        && device_bits & !0x3f == 0
        && queues >= 2
    {
        return Some(DeviceType(VIRTIO_ID_BALLOON));
    }
    // Network device (§5.1.3): a device bit from 6 to 23 that is not a
    // block device's (those were caught above; the console, SCSI and
    // balloon define none), or one of bits 50 to 63, which only the
    // network device defines.
    let net_high = (p.features >> 50) & 0x3fff != 0;
    if device_bits & !0x3f != 0 || net_high {
        return Some(DeviceType(VIRTIO_ID_NET));
    }
    if device_bits == 0 && queues <= 1 && p.console_config != Some(true) {
        return Some(DeviceType(VIRTIO_ID_RNG));
    }
    // Console: receiveq + transmitq, plus control and port queues with
    // MULTIPORT; its configuration is 12 bytes.
    if p.console_config == Some(true) || (queues >= 2 && device_bits & !0b111 == 0) {
        return Some(DeviceType(VIRTIO_ID_CONSOLE));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(features: u64, queues: Option<u64>, large: Option<bool>, con: Option<bool>) -> Probe {
        Probe {
            features,
            queue_num: queues,
            large_config: large,
            console_config: con,
            balloon_config: con.map(|_| false),
            scsi_config: con.map(|_| false),
        }
    }

    #[test]
    fn charter_devices_are_told_apart() {
        let v1 = 1u64 << 32;
        // qemu-storage-daemon's blk export: SEG_MAX, BLK_SIZE, FLUSH, ...
        let qsd = v1 | 1 << 2 | 1 << 6 | 1 << 9 | 1 << 10 | 1 << 13 | 1 << 14;
        assert_eq!(
            identify(&probe(qsd, Some(1), None, None)),
            Some(DeviceType(VIRTIO_ID_BLOCK))
        );
        assert_eq!(
            identify(&probe(v1, Some(2), Some(true), Some(true))),
            Some(DeviceType(VIRTIO_ID_BLOCK))
        );
        assert_eq!(
            identify(&probe(v1, Some(1), Some(false), Some(false))),
            Some(DeviceType(VIRTIO_ID_RNG))
        );
        assert_eq!(
            identify(&probe(v1 | 0b11, Some(6), Some(false), Some(true))),
            Some(DeviceType(VIRTIO_ID_CONSOLE))
        );
        assert_eq!(
            identify(&probe(v1, Some(2), None, None)),
            Some(DeviceType(VIRTIO_ID_CONSOLE))
        );
        // A 16-byte space with balloon bits; a 36-byte one with SCSI bits.
        let balloon = Probe {
            balloon_config: Some(true),
            ..probe(v1 | 1 << 1 | 1 << 5, Some(4), Some(false), Some(true))
        };
        assert_eq!(identify(&balloon), Some(DeviceType(VIRTIO_ID_BALLOON)));
        let scsi = Probe {
            balloon_config: Some(true),
            scsi_config: Some(true),
            ..probe(v1 | 1 << 1 | 1 << 2, Some(4), Some(false), Some(true))
        };
        assert_eq!(identify(&scsi), Some(DeviceType(VIRTIO_ID_SCSI)));
        // Network device: MAC, STATUS, CTRL_VQ on 3 queues; SPEED_DUPLEX
        // (bit 63) alone; ringwork's `serve net` offer.
        assert_eq!(
            identify(&probe(
                v1 | 1 << 5 | 1 << 16 | 1 << 17,
                Some(3),
                Some(false),
                Some(false)
            )),
            Some(DeviceType(VIRTIO_ID_NET))
        );
        assert_eq!(
            identify(&probe(v1 | 1 << 63, None, None, None)),
            Some(DeviceType(VIRTIO_ID_NET))
        );
        let ours = v1 | 0b1011 | 1 << 5 | 0xff << 15 | 1 << 23 | 1 << 63;
        assert_eq!(
            identify(&probe(ours, Some(3), Some(false), Some(true))),
            Some(DeviceType(VIRTIO_ID_NET))
        );
        // Bits 0..=2 on two queues stay a console.
        assert_eq!(
            identify(&probe(v1 | 0b11, Some(2), None, None)),
            Some(DeviceType(VIRTIO_ID_CONSOLE))
        );
    }
}
