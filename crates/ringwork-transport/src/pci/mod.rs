//! Virtio over PCI (VIRTIO 1.4 §4.1). (In progress.)

/// A destination for MSI-X messages, supplied by the VMM.
pub trait MsiSink: Send + Sync {
    /// Sends the message `data` to `address`.
    fn send(&self, address: u64, data: u32);
}
