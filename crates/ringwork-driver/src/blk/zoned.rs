//! Host-managed zoned devices during feature negotiation (VIRTIO 1.4
//! §5.2.5.1).
//!
//! The driver never negotiates `VIRTIO_BLK_F_ZONED` (it cannot handle
//! zoned devices), but one rule applies whenever the device merely
//! *offers* it: "If the VIRTIO_BLK_F_ZONED feature is offered by the device
//! with the VIRTIO_BLK_Z_HM zone model, then the VIRTIO_BLK_F_DISCARD
//! feature MUST NOT be offered by the driver." The zone model is a
//! configuration field, so the rule cannot be a
//! [`FeatureRule`](ringwork_spec::features::FeatureRule): [`ZonedGuard`]
//! wraps the transport for `driver::negotiate` and, when the driver
//! writes its features, reads `zoned.model` (§3.1.1 step 4 allows reading
//! the configuration there) and drops DISCARD for a host-managed device.
//!
//! A host-managed device cannot be driven without ZONED at all (such a
//! device "MUST fail to set the FEATURES_OK device status bit when the
//! driver does not accept the VIRTIO_BLK_F_ZONED feature bit", §5.2.5.2),
//! so the guard also holds back FEATURES_OK: negotiation then fails and
//! sets FAILED, whatever the device would have done.

use ringwork_spec::blk::{VIRTIO_BLK_F_DISCARD, VIRTIO_BLK_F_ZONED, VIRTIO_BLK_Z_HM};
use ringwork_spec::device_id::DeviceType;
use ringwork_spec::features::FeatureSet;
use ringwork_spec::status::DeviceStatus;
use ringwork_transport::driver::{InterruptCause, QueueConfig, Transport, TransportError};

/// Offset of `zoned.model` in the configuration space.
pub(crate) const ZONED_MODEL_OFFSET: usize = 92;

/// A transport seen through the zoned-model check. See the
/// [module docs](self).
pub(crate) struct ZonedGuard<'a, T: Transport> {
    t: &'a mut T,
    offered: FeatureSet,
    /// The device offered ZONED with the host-managed model.
    pub host_managed: bool,
}

impl<'a, T: Transport> ZonedGuard<'a, T> {
    pub(crate) fn new(t: &'a mut T) -> Self {
        Self {
            t,
            offered: FeatureSet::EMPTY,
            host_managed: false,
        }
    }
}

impl<T: Transport> Transport for ZonedGuard<'_, T> {
    fn device_type(&self) -> DeviceType {
        self.t.device_type()
    }
    fn is_legacy(&self) -> bool {
        self.t.is_legacy()
    }
    fn device_features(&mut self) -> FeatureSet {
        self.offered = self.t.device_features();
        self.offered
    }
    fn set_driver_features(&mut self, mut features: FeatureSet) {
        if self.offered.contains(VIRTIO_BLK_F_ZONED) {
            let mut model = [0u8; 1];
            self.t.read_config(ZONED_MODEL_OFFSET, &mut model);
            if model[0] == VIRTIO_BLK_Z_HM {
                self.host_managed = true;
                features.remove(VIRTIO_BLK_F_DISCARD);
            }
        }
        self.t.set_driver_features(features);
    }
    fn status(&mut self) -> DeviceStatus {
        self.t.status()
    }
    fn set_status(&mut self, status: DeviceStatus) {
        if self.host_managed && status.contains(DeviceStatus::FEATURES_OK) {
            // Not set: `negotiate` sees it missing and sets FAILED.
            return;
        }
        self.t.set_status(status);
    }
    fn reset(&mut self) -> Result<(), TransportError> {
        self.host_managed = false;
        self.t.reset()
    }
    fn max_queue_size(&mut self, queue: u16) -> u16 {
        self.t.max_queue_size(queue)
    }
    fn legacy_queue_align(&self) -> Option<u32> {
        self.t.legacy_queue_align()
    }
    fn setup_queue(&mut self, queue: u16, config: &QueueConfig) -> Result<(), TransportError> {
        self.t.setup_queue(queue, config)
    }
    fn reset_queue(&mut self, queue: u16) -> Result<(), TransportError> {
        self.t.reset_queue(queue)
    }
    fn notify(&mut self, queue: u16, data: u32) {
        self.t.notify(queue, data);
    }
    fn config_generation(&mut self) -> u32 {
        self.t.config_generation()
    }
    fn read_config(&mut self, offset: usize, data: &mut [u8]) {
        self.t.read_config(offset, data);
    }
    fn write_config(&mut self, offset: usize, data: &[u8]) {
        self.t.write_config(offset, data);
    }
    fn ack_interrupt(&mut self) -> InterruptCause {
        self.t.ack_interrupt()
    }
    fn wait_interrupt(&mut self) -> Result<(), TransportError> {
        self.t.wait_interrupt()
    }
    fn supports_feature(&self, bit: u32) -> bool {
        self.t.supports_feature(bit)
    }
}
