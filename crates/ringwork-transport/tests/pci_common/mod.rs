//! Fixtures shared by the virtio-pci test crates: recording interrupt
//! sinks, a configurable dummy device, and little-endian accessors over a
//! `PciDevice`.
#![allow(dead_code)]

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use ringwork_queue::test_utils::TestMemory;
use ringwork_spec::device_id::DeviceType;
use ringwork_spec::features::FeatureSet;
use ringwork_spec::pci::*;
use ringwork_spec::ring::notify::NotificationData;
use ringwork_spec::status::{
    VIRTIO_CONFIG_S_ACKNOWLEDGE as ACK, VIRTIO_CONFIG_S_DRIVER as DRIVER,
    VIRTIO_CONFIG_S_DRIVER_OK as DRIVER_OK, VIRTIO_CONFIG_S_FEATURES_OK as FEATURES_OK,
};
use ringwork_transport::driver::RegisterAccess;
use ringwork_transport::pci::*;
use ringwork_transport::test_utils::EchoDevice;
use ringwork_transport::{
    Activation, DeviceError, IrqLine, ShmRegion, Signals, Violation, VirtioDevice,
};

#[derive(Default)]
pub struct Irq(pub Mutex<Vec<bool>>);
impl IrqLine for Irq {
    fn set_level(&self, asserted: bool) {
        self.0.lock().unwrap().push(asserted);
    }
}
impl Irq {
    pub fn last(&self) -> Option<bool> {
        self.0.lock().unwrap().last().copied()
    }
}

#[derive(Default)]
pub struct Msi(pub Mutex<Vec<(u64, u32)>>);
impl MsiSink for Msi {
    fn send(&self, address: u64, data: u32) {
        self.0.lock().unwrap().push((address, data));
    }
}
impl Msi {
    pub fn take(&self) -> Vec<(u64, u32)> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

/// A configurable device with no queue work, for layout tests.
pub struct Dummy {
    pub ty: u32,
    pub features: FeatureSet,
    pub queues: Vec<u16>,
    pub config: Vec<u8>,
    pub shm: Vec<ShmRegion>,
}

impl Dummy {
    pub fn new(ty: u32) -> Self {
        Self {
            ty,
            features: FeatureSet::EMPTY,
            queues: vec![16, 16],
            config: vec![0; 8],
            shm: Vec::new(),
        }
    }
}

impl VirtioDevice for Dummy {
    fn device_type(&self) -> DeviceType {
        DeviceType::from(self.ty)
    }
    fn device_features(&self) -> FeatureSet {
        self.features
    }
    fn queue_max_sizes(&self) -> &[u16] {
        &self.queues
    }
    fn config_len(&self) -> usize {
        self.config.len()
    }
    fn read_config(&self, offset: usize, data: &mut [u8]) {
        data.copy_from_slice(&self.config[offset..offset + data.len()]);
    }
    fn activate(&mut self, _: Activation, _: Signals) -> Result<(), DeviceError> {
        Ok(())
    }
    fn reset(&mut self) {}
    fn queue_notify(&mut self, _: u16, _: Option<NotificationData>) {}
    fn shm_regions(&self) -> &[ShmRegion] {
        &self.shm
    }
}

pub type Echo<'m> = EchoDevice<&'m TestMemory>;
pub type Dev<'m> = PciDevice<Echo<'m>>;

pub fn mem() -> TestMemory {
    TestMemory::new(0x10_0000, 1 << 20)
}

pub fn echo_dev(mem: &TestMemory, config: PciConfig) -> (Dev<'_>, Arc<Irq>, Arc<Msi>) {
    let irq = Arc::new(Irq::default());
    let msi = Arc::new(Msi::default());
    let d = PciDevice::new(
        EchoDevice::new(mem, 2, 64),
        irq.clone(),
        msi.clone(),
        config,
    )
    .unwrap();
    (d, irq, msi)
}

pub fn transitional(vectors: u16) -> PciConfig {
    PciConfig {
        mode: PciMode::Transitional,
        msix_vectors: vectors,
        ..PciConfig::default()
    }
}

/// Little-endian register accessors over the model.
pub trait Bytes {
    fn cfg(&mut self, off: u64, n: usize) -> u32;
    fn set_cfg(&mut self, off: u64, n: usize, v: u32);
    fn bar(&mut self, bar: u8, off: u64, n: usize) -> u32;
    fn set_bar(&mut self, bar: u8, off: u64, n: usize, v: u32);
    fn cc(&mut self, off: usize, n: usize) -> u32 {
        self.bar(
            MODERN_BAR_INDEX,
            (COMMON_CFG_BAR_OFFSET as usize + off) as u64,
            n,
        )
    }
    fn set_cc(&mut self, off: usize, n: usize, v: u32) {
        self.set_bar(
            MODERN_BAR_INDEX,
            (COMMON_CFG_BAR_OFFSET as usize + off) as u64,
            n,
            v,
        )
    }
}

impl<D: VirtioDevice> Bytes for PciDevice<D> {
    fn cfg(&mut self, off: u64, n: usize) -> u32 {
        let mut b = [0u8; 4];
        self.config_read(off, &mut b[..n]);
        u32::from_le_bytes(b)
    }
    fn set_cfg(&mut self, off: u64, n: usize, v: u32) {
        self.config_write(off, &v.to_le_bytes()[..n]);
    }
    fn bar(&mut self, bar: u8, off: u64, n: usize) -> u32 {
        let mut b = [0u8; 4];
        self.bar_read(bar, off, &mut b[..n]);
        u32::from_le_bytes(b)
    }
    fn set_bar(&mut self, bar: u8, off: u64, n: usize, v: u32) {
        self.bar_write(bar, off, &v.to_le_bytes()[..n]);
    }
}

/// Every capability: (offset, cap id).
pub fn cap_list<D: VirtioDevice>(d: &mut PciDevice<D>) -> Vec<(u64, u8)> {
    let mut out = Vec::new();
    let mut p = d.cfg(0x34, 1) as u64;
    while p != 0 && out.len() < 64 {
        out.push((p, d.cfg(p, 1) as u8));
        p = d.cfg(p + 1, 1) as u64;
    }
    out
}

/// Offset of the first virtio capability of `cfg_type`.
pub fn find_cap<D: VirtioDevice>(d: &mut PciDevice<D>, cfg_type: u8) -> u64 {
    cap_list(d)
        .into_iter()
        .find(|&(p, id)| id == PCI_CAP_ID_VNDR && d.cfg(p + 3, 1) as u8 == cfg_type)
        .map(|c| c.0)
        .expect("capability present")
}

pub fn last_violation<D: VirtioDevice>(d: &PciDevice<D>) -> Option<Violation> {
    d.core().violations().last().cloned()
}

pub fn offered(d: &mut Dev<'_>) -> FeatureSet {
    let mut w = [0u32; 4];
    for (i, x) in w.iter_mut().enumerate() {
        d.set_cc(COMMON_CFG_DEVICE_FEATURE_SELECT, 4, i as u32);
        *x = d.cc(COMMON_CFG_DEVICE_FEATURE, 4);
    }
    FeatureSet::from_words(w)
}

/// Reset, ACKNOWLEDGE, DRIVER, features, FEATURES_OK through the common
/// configuration.
pub fn negotiate<D: VirtioDevice>(d: &mut PciDevice<D>, features: FeatureSet) {
    d.set_cc(COMMON_CFG_DEVICE_STATUS, 1, 0);
    d.set_cc(COMMON_CFG_DEVICE_STATUS, 1, ACK.into());
    d.set_cc(COMMON_CFG_DEVICE_STATUS, 1, (ACK | DRIVER).into());
    for (i, w) in features.words().iter().enumerate() {
        d.set_cc(COMMON_CFG_DRIVER_FEATURE_SELECT, 4, i as u32);
        d.set_cc(COMMON_CFG_DRIVER_FEATURE, 4, *w);
    }
    d.set_cc(
        COMMON_CFG_DEVICE_STATUS,
        1,
        (ACK | DRIVER | FEATURES_OK).into(),
    );
    assert_eq!(
        d.cc(COMMON_CFG_DEVICE_STATUS, 1) as u8 & FEATURES_OK,
        FEATURES_OK
    );
}

pub fn driver_ok<D: VirtioDevice>(d: &mut PciDevice<D>) {
    let s = d.cc(COMMON_CFG_DEVICE_STATUS, 1);
    d.set_cc(COMMON_CFG_DEVICE_STATUS, 1, s | u32::from(DRIVER_OK));
}

/// Programs queue `q` with aligned addresses inside `mem` and enables it.
pub fn enable_queue<D: VirtioDevice>(d: &mut PciDevice<D>, q: u16, base: u64) {
    d.set_cc(COMMON_CFG_QUEUE_SELECT, 2, q.into());
    for (off, a) in [
        (COMMON_CFG_QUEUE_DESC, base),
        (COMMON_CFG_QUEUE_DRIVER, base + 0x1000),
        (COMMON_CFG_QUEUE_DEVICE, base + 0x2000),
    ] {
        d.set_cc(off, 4, a as u32);
        d.set_cc(off + 4, 4, (a >> 32) as u32);
    }
    d.set_cc(COMMON_CFG_QUEUE_ENABLE, 2, 1);
    assert_eq!(d.cc(COMMON_CFG_QUEUE_ENABLE, 2), 1);
}

pub fn msix_enable<D: VirtioDevice>(d: &mut PciDevice<D>, enable: bool, function_mask: bool) {
    let c = cap_list(d)
        .into_iter()
        .find(|c| c.1 == 0x11)
        .expect("MSI-X capability")
        .0;
    let v = (u32::from(enable) << 15) | (u32::from(function_mask) << 14);
    d.set_cfg(c + 2, 2, v);
}

pub fn msix_entry<D: VirtioDevice>(
    d: &mut PciDevice<D>,
    v: u64,
    addr: u64,
    data: u32,
    masked: bool,
) {
    d.set_bar(MSIX_BAR_INDEX, 16 * v, 4, addr as u32);
    d.set_bar(MSIX_BAR_INDEX, 16 * v + 4, 4, (addr >> 32) as u32);
    d.set_bar(MSIX_BAR_INDEX, 16 * v + 8, 4, data);
    d.set_bar(MSIX_BAR_INDEX, 16 * v + 12, 4, masked.into());
}

/// Hides the capability list (Status bit 4): what a legacy device looks
/// like.
pub struct NoCaps<R>(pub R);
impl<R: RegisterAccess> RegisterAccess for NoCaps<R> {
    fn read8(&self, o: usize) -> u8 {
        self.0.read8(o)
    }
    fn read16(&self, o: usize) -> u16 {
        let v = self.0.read16(o);
        if o == 6 {
            v & !0x10
        } else {
            v
        }
    }
    fn read32(&self, o: usize) -> u32 {
        self.0.read32(o)
    }
    fn write8(&self, o: usize, v: u8) {
        self.0.write8(o, v)
    }
    fn write16(&self, o: usize, v: u16) {
        self.0.write16(o, v)
    }
    fn write32(&self, o: usize, v: u32) {
        self.0.write32(o, v)
    }
}

#[derive(Default)]
pub struct SpyState {
    /// (BAR, offset, value) read overrides.
    pub overrides: Vec<(u8, usize, u32)>,
    /// (BAR, offset, value, width) writes.
    pub writes: Vec<(u8, usize, u32, usize)>,
}

/// A BAR window that logs writes and can fake read values: a device
/// presenting values of its own choosing.
pub struct Spy<R> {
    pub inner: R,
    pub bar: u8,
    pub state: Rc<RefCell<SpyState>>,
}

impl<R: RegisterAccess> Spy<R> {
    fn fake(&self, o: usize) -> Option<u32> {
        let s = self.state.borrow();
        s.overrides
            .iter()
            .find(|x| x.0 == self.bar && x.1 == o)
            .map(|x| x.2)
    }
    fn log(&self, o: usize, v: u32, w: usize) {
        self.state.borrow_mut().writes.push((self.bar, o, v, w));
    }
}

impl<R: RegisterAccess> RegisterAccess for Spy<R> {
    fn read8(&self, o: usize) -> u8 {
        self.fake(o)
            .map_or_else(|| self.inner.read8(o), |v| v as u8)
    }
    fn read16(&self, o: usize) -> u16 {
        self.fake(o)
            .map_or_else(|| self.inner.read16(o), |v| v as u16)
    }
    fn read32(&self, o: usize) -> u32 {
        self.fake(o).unwrap_or_else(|| self.inner.read32(o))
    }
    fn write8(&self, o: usize, v: u8) {
        self.log(o, v.into(), 1);
        self.inner.write8(o, v)
    }
    fn write16(&self, o: usize, v: u16) {
        self.log(o, v.into(), 2);
        self.inner.write16(o, v)
    }
    fn write32(&self, o: usize, v: u32) {
        self.log(o, v, 4);
        self.inner.write32(o, v)
    }
}
