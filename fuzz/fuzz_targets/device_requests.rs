//! A hostile driver against whole devices: SCSI, block, network (loopback
//! backend) and balloon, each behind `ringwork_device::harness` (our
//! driver-side queues over 64 MiB of anonymous guest memory, the device's
//! own workers).
//!
//! Input layout:
//! - byte 0: the device (0 SCSI, 1 block, 2 network, 3 balloon);
//! - bytes 1..9: a mask over the device's offered features (little
//!   endian); byte 9 bit 0: packed ring (when offered); byte 9 bit 1: run
//!   the workers the polling way;
//! - then requests, until the input runs out. Each starts with a control
//!   byte: bits 0-3 the queue (modulo the device's queue count), bit 4 run
//!   the workers after this request, bit 5 raw segments (addresses from
//!   the input: in the harness's data area, across its end or outside
//!   guest memory; never over the rings), bit 6 (SCSI request
//!   queues) address target 0 / LUN 0 in the request header (bit 7: LUN
//!   1); then a count
//!   byte (bits 0-1 readable segments, bits 2-3 writable ones); each
//!   readable segment is a little-endian u16 length (modulo 2 KiB)
//!   followed by that many bytes (short input is padded with zeroes); each
//!   writable one a u16 length (modulo 8 KiB). Raw segments take a u32
//!   address and a u16 length instead.
//!
//! The devices must never panic and never hang; the driver side checks
//! every used entry the device writes (`Harness::completed` fails on a bad
//! id or a length beyond what the buffer can take), which would be a
//! device bug: the target asserts it does not happen (except for the
//! balloon, which a driver can ask to discard the harness's own rings).
//! Disk images are emptied before every input.
#![no_main]

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use ringwork_device::balloon::{Balloon, BalloonOptions};
use ringwork_device::blk::{Blk, BlkOptions};
use ringwork_device::harness::{Harness, DATA_BASE, MEM_SIZE};
use ringwork_device::model::Device;
use ringwork_device::net::{Loopback, MacAddr, Net, NetOptions};
use ringwork_device::scsi::{LunSpec, Scsi, ScsiOptions};
use ringwork_queue::Segment;
use ringwork_spec::features::VIRTIO_F_RING_PACKED;

/// Disk images for the block and SCSI devices (1 MiB each, sparse), made
/// once per fuzzing process.
fn image(name: &str) -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let base = if std::path::Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let d = base.join(format!("ringwork-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&d).expect("image directory");
        for n in ["blk.img", "scsi0.img", "scsi1.img"] {
            let f = std::fs::File::create(d.join(n)).expect("image");
            f.set_len(1 << 20).expect("image size");
        }
        d
    });
    let path = dir.join(name);
    // Empty again for every input, so a crash does not depend on what
    // earlier inputs wrote.
    if let Ok(f) = std::fs::OpenOptions::new().write(true).open(&path) {
        let _ = f.set_len(0);
        let _ = f.set_len(1 << 20);
    }
    path
}

/// Reads the input front to back; past the end it yields zeroes.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let take = n.min(self.0.len());
        let mut v = self.0[..take].to_vec();
        self.0 = &self.0[take..];
        v.resize(n, 0);
        v
    }
}

/// `check_used`: assert that every used entry passes the driver side's
/// checks. Not for the balloon, whose inflate requests name pages by
/// number: a driver can hand the harness's own ring pages to the device,
/// which then discards them as asked.
fn drive<D: Device>(device: D, input: &mut Input<'_>, scsi: bool, check_used: bool) {
    let mut mask = 0u64;
    for i in 0..8 {
        mask |= u64::from(input.u8()) << (8 * i);
    }
    let mode = input.u8();
    let offered = device.features();
    let mut features = offered & mask & !(1 << VIRTIO_F_RING_PACKED);
    if mode & 1 != 0 {
        features |= offered & (1 << VIRTIO_F_RING_PACKED);
    }
    let polling = mode & 2 != 0;
    let queues = device.num_queues();
    let Ok(mut h) = Harness::with_features(device, features, 64) else {
        return;
    };
    let run = |h: &mut Harness<D>| {
        // A device error (a broken queue, a failed backend) is an allowed
        // answer to a hostile driver; a panic is not.
        let _ = if polling { h.run_polling() } else { h.run() };
    };
    while !input.is_empty() {
        let ctl = input.u8();
        let q = u16::from(ctl & 0x0f) % queues;
        let counts = input.u8();
        let (n_out, n_in) = (counts & 3, (counts >> 2) & 3);
        if ctl & 0x20 != 0 {
            // Never over the harness's rings (below its data area): a
            // driver that points a device at its own rings only fools
            // itself. Inside the data area, straddling its end, or outside
            // guest memory altogether.
            let mut seg = || {
                let a = input.u32();
                let addr = if a & 1 << 31 != 0 {
                    MEM_SIZE as u64 + u64::from(a & !(1 << 31))
                } else {
                    DATA_BASE + u64::from(a) % (MEM_SIZE as u64 - DATA_BASE)
                };
                Segment::new(addr, u32::from(input.u16()))
            };
            let out: Vec<Segment> = (0..n_out).map(|_| seg()).collect();
            let inp: Vec<Segment> = (0..n_in).map(|_| seg()).collect();
            let _ = h.submit_segments(q, &out, &inp);
        } else {
            let mut out: Vec<Vec<u8>> = (0..n_out)
                .map(|_| {
                    let len = usize::from(input.u16() % 2048);
                    input.bytes(len)
                })
                .collect();
            if scsi && q >= 2 && ctl & 0x40 != 0 {
                if let Some(hdr) = out.first_mut().filter(|o| o.len() >= 8) {
                    // Target 0, LUN 0 or (bit 7) LUN 1, flat addressing.
                    let lun = if ctl & 0x80 != 0 { 1 } else { 0 };
                    hdr[..8].copy_from_slice(&[1, 0, 0x40, lun, 0, 0, 0, 0]);
                }
            }
            let inp: Vec<u32> = (0..n_in).map(|_| u32::from(input.u16() % 8192)).collect();
            let out: Vec<&[u8]> = out.iter().map(|o| o.as_slice()).collect();
            let _ = h.submit(q, &out, &inp);
        }
        if ctl & 0x10 != 0 {
            run(&mut h);
        }
    }
    run(&mut h);
    let broken = h.broken_queues();
    for q in 0..queues {
        let r = h.completed(q);
        assert!(
            r.is_ok() || broken.contains(&q) || !check_used,
            "queue {q}: the device wrote a bad used entry: {r:?}"
        );
    }
    let _ = h.quiesce();
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    match input.u8() % 4 {
        0 => {
            let luns = vec![
                LunSpec::new(0, 0, image("scsi0.img")),
                LunSpec {
                    readonly: true,
                    block_size: 4096,
                    ..LunSpec::new(0, 1, image("scsi1.img"))
                },
            ];
            let Ok(dev) = Scsi::open(ScsiOptions {
                luns,
                ..ScsiOptions::default()
            }) else {
                return;
            };
            drive(dev, &mut input, true, true);
        }
        1 => {
            let Ok(dev) = Blk::open(BlkOptions::new(image("blk.img"))) else {
                return;
            };
            drive(dev, &mut input, false, true);
        }
        2 => {
            let mac = MacAddr([0x52, 0x54, 0, 0x12, 0x34, 0x56]);
            let Ok(backend) = Loopback::new(2) else {
                return;
            };
            // Received frames written with ordinary or streaming stores.
            let rx_streaming_stores = input.u8() & 1 == 1;
            let Ok(dev) = Net::new(
                NetOptions {
                    queue_pairs: 2,
                    rx_streaming_stores,
                    ..NetOptions::new(mac)
                },
                Arc::new(backend),
            ) else {
                return;
            };
            drive(dev, &mut input, false, true);
        }
        _ => {
            let Ok(dev) = Balloon::new(BalloonOptions {
                target_pages: 64,
                deflate_on_oom: true,
                free_page_hint: true,
                page_poison: true,
                page_reporting: true,
                ..BalloonOptions::default()
            }) else {
                return;
            };
            drive(dev, &mut input, false, false);
        }
    }
});
