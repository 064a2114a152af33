//! VIRTIO 1.4 §5.4 Entropy Device.
//!
//! The entropy device (device ID 4, [`crate::device_id::VIRTIO_ID_RNG`])
//! is the simplest device type, and this module is correspondingly small:
//!
//! - **Virtqueues**: one, `requestq`, at index [`RNG_REQUESTQ`].
//! - **Feature bits**: none defined.
//! - **Configuration space**: none defined ([`RNG_CONFIG_SIZE`] is 0).
//! - **Operation**: the driver makes device-writable buffers available
//!   (it MUST NOT place device-readable buffers in the queue); the device
//!   fills them with random bytes and MAY use fewer than the buffer length,
//!   so the driver MUST read the used length to know how many bytes it got.
//!   There is no request header and no status byte.
//!
//! ```
//! use ringwork_spec::rng::{RNG_NUM_QUEUES, RNG_REQUESTQ};
//! assert_eq!((RNG_REQUESTQ, RNG_NUM_QUEUES), (0, 1));
//! ```

/// Virtqueue index of the `requestq`, the device's only queue.
#[doc(alias = "requestq")]
pub const RNG_REQUESTQ: u16 = 0;

/// Number of virtqueues of an entropy device.
pub const RNG_NUM_QUEUES: u16 = 1;

/// Size of the device configuration space: the spec defines none.
pub const RNG_CONFIG_SIZE: usize = 0;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entropy_device_shape() {
        assert_eq!(RNG_REQUESTQ, 0);
        assert_eq!(RNG_NUM_QUEUES, 1);
        assert_eq!(RNG_CONFIG_SIZE, 0);
        assert_eq!(crate::device_id::VIRTIO_ID_RNG, 4);
    }
}
