//! Helpers shared by the block device tests: images, engines, request
//! builders and a driver wrapper over the harness.
#![allow(dead_code, unused_imports)]

pub use std::path::PathBuf;
pub use std::sync::atomic::{AtomicU32, Ordering};
pub use std::sync::OnceLock;

pub use ringwork_device::blk::{Blk, BlkError, BlkOptions, Engine, MAX_DISCARD_SEG, SIZE_MAX};
pub use ringwork_device::harness::{Harness, Token, MEM_SIZE};
pub use ringwork_device::model::Device;
pub use ringwork_queue::{RingFormat, Segment};
pub use ringwork_spec::blk::{
    BlkConfig, BlkDiscardWriteZeroes, BlkReqHeader, VIRTIO_BLK_F_BARRIER, VIRTIO_BLK_F_BLK_SIZE,
    VIRTIO_BLK_F_CONFIG_WCE, VIRTIO_BLK_F_DISCARD, VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_F_GEOMETRY,
    VIRTIO_BLK_F_LIFETIME, VIRTIO_BLK_F_MQ, VIRTIO_BLK_F_RO, VIRTIO_BLK_F_SCSI,
    VIRTIO_BLK_F_SECURE_ERASE, VIRTIO_BLK_F_SEG_MAX, VIRTIO_BLK_F_SIZE_MAX, VIRTIO_BLK_F_TOPOLOGY,
    VIRTIO_BLK_F_WRITE_ZEROES, VIRTIO_BLK_F_ZONED, VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_OK,
    VIRTIO_BLK_S_UNSUPP, VIRTIO_BLK_T_DISCARD, VIRTIO_BLK_T_FLUSH, VIRTIO_BLK_T_GET_ID,
    VIRTIO_BLK_T_GET_LIFETIME, VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT, VIRTIO_BLK_T_SCSI_CMD,
    VIRTIO_BLK_T_SECURE_ERASE, VIRTIO_BLK_T_WRITE_ZEROES, VIRTIO_BLK_T_ZONE_APPEND,
    VIRTIO_BLK_T_ZONE_CLOSE, VIRTIO_BLK_T_ZONE_FINISH, VIRTIO_BLK_T_ZONE_OPEN,
    VIRTIO_BLK_T_ZONE_REPORT, VIRTIO_BLK_T_ZONE_RESET, VIRTIO_BLK_T_ZONE_RESET_ALL,
    VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP, VIRTIO_BLK_Z_NONE,
};

pub const FORMATS: [RingFormat; 2] = [RingFormat::Split, RingFormat::Packed];
/// Image size used by most tests: 1 MiB, 2048 sectors.
pub const IMAGE: usize = 1 << 20;
pub const SECTORS: u64 = (IMAGE / 512) as u64;
/// What writable buffers hold before the device writes them.
pub const FILL: u8 = 0xee;

/// A temporary image file, removed on drop.
pub struct Image {
    pub path: PathBuf,
}

impl Image {
    pub fn with(contents: &[u8]) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "ringwork-blk-test-{}-{}.img",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&path, contents).unwrap();
        Self { path }
    }

    pub fn zeroed(size: usize) -> Self {
        Self::with(&vec![0; size])
    }

    pub fn contents(&self) -> Vec<u8> {
        std::fs::read(&self.path).unwrap()
    }
}

impl Drop for Image {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The engines this kernel can run (io_uring may be blocked by seccomp).
pub fn engines() -> &'static [Engine] {
    static ENGINES: OnceLock<Vec<Engine>> = OnceLock::new();
    ENGINES.get_or_init(|| {
        let img = Image::zeroed(4096);
        match Blk::open(BlkOptions {
            engine: Engine::IoUring,
            ..BlkOptions::new(&img.path)
        }) {
            Ok(_) => vec![Engine::IoUring, Engine::ThreadPool],
            Err(e) => {
                eprintln!("skipping the io_uring engine: {e}");
                vec![Engine::ThreadPool]
            }
        }
    })
}

/// Every (engine, ring format) pair.
pub fn combos() -> Vec<(Engine, RingFormat)> {
    engines()
        .iter()
        .flat_map(|&e| FORMATS.map(|f| (e, f)))
        .collect()
}

pub fn open(img: &Image, engine: Engine, tweak: impl FnOnce(&mut BlkOptions)) -> Blk {
    let mut o = BlkOptions {
        engine,
        ..BlkOptions::new(&img.path)
    };
    tweak(&mut o);
    let blk = Blk::open(o).unwrap();
    assert_eq!(blk.engine(), engine);
    blk
}

pub fn hdr(ty: u32, sector: u64) -> [u8; 16] {
    let mut b = [0u8; 16];
    let mut h = BlkReqHeader::new_checked(&mut b[..]).unwrap();
    h.set_type_(ty);
    h.set_sector(sector);
    b
}

/// One discard / write-zeroes segment: (sector, num_sectors, flags).
pub type Seg = (u64, u32, u32);

/// Discard / write-zeroes payload.
pub fn segments(list: &[Seg]) -> Vec<u8> {
    let mut out = Vec::new();
    for &(sector, n, flags) in list {
        let mut b = [0u8; 16];
        let mut s = BlkDiscardWriteZeroes::new_checked(&mut b[..]).unwrap();
        s.set_sector(sector);
        s.set_num_sectors(n);
        s.set_flags(flags);
        out.extend_from_slice(&b);
    }
    out
}

pub fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) | 1)
        .collect()
}

/// A harness around a block device, with request helpers.
pub struct Dev {
    pub h: Harness<Blk>,
}

impl Dev {
    pub fn new(blk: Blk, format: RingFormat) -> Self {
        Self {
            h: Harness::new(blk, format).unwrap(),
        }
    }

    /// Makes a request available: readable `out`, writable `inp`
    /// pre-filled with [`FILL`].
    pub fn submit(&mut self, q: u16, out: &[&[u8]], inp: &[u32]) -> Token {
        let out: Vec<Segment> = out.iter().map(|o| self.h.put(o)).collect();
        let inp: Vec<Segment> = inp
            .iter()
            .map(|&l| self.h.put(&vec![FILL; l as usize]))
            .collect();
        self.h.submit_segments(q, &out, &inp).unwrap()
    }

    /// Submits, runs, and returns the bytes within the used length.
    pub fn one(&mut self, q: u16, out: &[&[u8]], inp: &[u32]) -> Vec<u8> {
        let t = self.submit(q, out, inp);
        self.h.run().unwrap();
        let mut done = self.h.completed(q).unwrap();
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].0, t);
        done.pop().unwrap().1
    }

    /// A request whose only writable byte is the status.
    pub fn status(&mut self, q: u16, out: &[&[u8]]) -> u8 {
        let r = self.one(q, out, &[1]);
        assert_eq!(r.len(), 1, "used length of a status-only request");
        r[0]
    }

    pub fn write(&mut self, q: u16, sector: u64, data: &[&[u8]]) -> u8 {
        let h = hdr(VIRTIO_BLK_T_OUT, sector);
        let mut out = vec![&h[..]];
        out.extend_from_slice(data);
        self.status(q, &out)
    }

    pub fn read(&mut self, q: u16, sector: u64, lens: &[u32]) -> (u8, Vec<u8>) {
        let mut inp = lens.to_vec();
        inp.push(1);
        let mut r = self.one(q, &[&hdr(VIRTIO_BLK_T_IN, sector)], &inp);
        let total: u32 = lens.iter().sum();
        assert_eq!(r.len(), total as usize + 1, "used length of a read");
        let status = r.pop().unwrap();
        (status, r)
    }

    pub fn ranges(&mut self, ty: u32, list: &[Seg]) -> u8 {
        self.status(0, &[&hdr(ty, 0), &segments(list)])
    }
}
