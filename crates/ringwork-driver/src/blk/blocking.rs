//! Blocking conveniences on request queue 0: each operation copies through
//! a bounce buffer in DMA memory (allocated once, on first use), submits
//! one request at a time in the driver's own slot, and waits (bounded) for
//! its completion with [`Transport::wait_interrupt`]. Completions of
//! callers' requests that arrive meanwhile are kept for `poll`.
//!
//! A timeout leaves the request possibly in flight (the device may still
//! write the bounce buffer), so the driver then refuses further blocking
//! operations ([`BlkError::Broken`]) until it is reset.

use ringwork_queue::{Dma, Segment};
use ringwork_spec::blk::{VIRTIO_BLK_ID_BYTES, VIRTIO_BLK_SECTOR_SIZE};
use ringwork_transport::driver::Transport;

use super::error::{BlkError, BlkStatus, RequestError};
use super::queue::Owner;
use super::request::{validate, BlkRequest, DiscardRange};
use super::BlkDriver;
use crate::common::{kick, wait_for, DmaRegion};

/// Size of the bounce buffer blocking reads and writes go through: the
/// most one request of theirs carries.
pub const BOUNCE_SIZE: usize = 64 * 1024;

const SECTOR: usize = VIRTIO_BLK_SECTOR_SIZE;

impl<T: Transport, D: Dma + Clone, Tok> BlkDriver<T, D, Tok> {
    /// The bounce buffer, allocated on first use.
    fn bounce(&mut self) -> Result<(), BlkError> {
        if self.state.bounce.is_none() {
            let b = DmaRegion::new(self.dma.clone(), BOUNCE_SIZE, 4096)?;
            self.state.bounce = Some(b);
        }
        Ok(())
    }

    /// Bytes one blocking read or write request carries: the bounce buffer,
    /// limited by `seg_max` segments of at most `size_max` bytes, in whole
    /// sectors.
    fn chunk_len(&self) -> usize {
        let seg = self
            .config
            .size_max
            .map_or(BOUNCE_SIZE, |m| (m as usize).min(BOUNCE_SIZE));
        let by_segments = self.limits.max_data_segments.saturating_mul(seg);
        by_segments.min(BOUNCE_SIZE) / SECTOR * SECTOR
    }

    /// Segments covering `len` bytes of the bounce buffer, each at most
    /// `size_max`, into `scratch_data`.
    fn bounce_segments(&mut self, len: usize) {
        let seg = self
            .config
            .size_max
            .map_or(BOUNCE_SIZE, |m| (m as usize).min(BOUNCE_SIZE));
        let base = self.state.bounce.as_ref().map_or(0, |b| b.addr(0));
        self.scratch_data.clear();
        let mut off = 0;
        while off < len {
            let n = seg.min(len - off);
            self.scratch_data
                .push(Segment::new(base + off as u64, n as u32));
            off += n;
        }
    }

    /// Submits `req` in the driver's own slot of queue 0 and waits for it.
    /// Returns the bytes written on `VIRTIO_BLK_S_OK`.
    fn run(&mut self, req: BlkRequest<'_>) -> Result<u32, BlkError> {
        if self.broken {
            return Err(BlkError::Broken);
        }
        validate(&req, &self.config, &self.limits)?;
        let r = self.run_validated(&req);
        if matches!(r, Err(BlkError::Timeout)) {
            self.broken = true;
        }
        let changed = self.config_changed();
        let written = r?;
        changed?;
        Ok(written)
    }

    fn run_validated(&mut self, req: &BlkRequest<'_>) -> Result<u32, BlkError> {
        let Self {
            transport,
            state,
            irq,
            scratch_out,
            scratch_in,
            ..
        } = self;
        let Some(q) = state.queues.get_mut(0) else {
            return Err(BlkError::NoSuchQueue {
                queue: 0,
                queues: 0,
            });
        };
        // Make the request available; when the ring is full of callers'
        // requests, take completions (kept for `poll`) until it fits.
        loop {
            match q.enqueue(req, Owner::Internal, scratch_out, scratch_in) {
                Ok(()) => break,
                Err((RequestError::QueueFull { .. }, _)) => {
                    if q.vq().outstanding() == 0 {
                        return Err(RequestError::QueueFull { queue: 0 }.into());
                    }
                    kick(transport, q.vq())
                        .map_err(|source| BlkError::Queue { queue: 0, source })?;
                    wait_for(transport, irq, || -> Result<_, BlkError> {
                        Ok(q.reap()?.map(|_| ()))
                    })?;
                }
                Err((e, _)) => return Err(e.into()),
            }
        }
        kick(transport, q.vq()).map_err(|source| BlkError::Queue { queue: 0, source })?;
        let (status, written) = wait_for(transport, irq, || -> Result<_, BlkError> {
            loop {
                // Bounded: the queue accepts at most one used entry per
                // outstanding request.
                match q.reap()? {
                    Some(Some(done)) => return Ok(Some(done)),
                    Some(None) => continue,
                    None => return Ok(None),
                }
            }
        })?;
        if status != BlkStatus::Ok {
            return Err(BlkError::Status { status });
        }
        Ok(written)
    }

    /// Reads `buf.len()` bytes (a multiple of 512) starting at `sector`.
    pub fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), BlkError> {
        self.check_io(sector, buf.len())?;
        let chunk = self.chunk_len();
        let mut sector = sector;
        for part in buf.chunks_mut(chunk.max(SECTOR)) {
            self.bounce_segments(part.len());
            let data = core::mem::take(&mut self.scratch_data);
            let r = self.run(BlkRequest::Read {
                sector,
                data: &data,
            });
            self.scratch_data = data;
            let written = r?;
            let expected = part.len() as u32;
            if !self.legacy && written < expected {
                return Err(BlkError::ShortRead { expected, written });
            }
            if let Some(b) = &self.state.bounce {
                b.slice()
                    .read_bytes(0, part)
                    .map_err(|_| RequestError::TooLarge)?;
            }
            sector += (part.len() / SECTOR) as u64;
        }
        Ok(())
    }

    /// Writes `buf` (a multiple of 512 bytes) starting at `sector`.
    pub fn write(&mut self, sector: u64, buf: &[u8]) -> Result<(), BlkError> {
        if self.limits.read_only {
            return Err(RequestError::ReadOnly.into());
        }
        self.check_io(sector, buf.len())?;
        let chunk = self.chunk_len();
        let mut sector = sector;
        for part in buf.chunks(chunk.max(SECTOR)) {
            if let Some(b) = &self.state.bounce {
                b.slice()
                    .write_bytes(0, part)
                    .map_err(|_| RequestError::TooLarge)?;
            }
            self.bounce_segments(part.len());
            let data = core::mem::take(&mut self.scratch_data);
            let r = self.run(BlkRequest::Write {
                sector,
                data: &data,
            });
            self.scratch_data = data;
            r?;
            sector += (part.len() / SECTOR) as u64;
        }
        Ok(())
    }

    /// Checks a blocking read or write as a whole (so a bad one does no
    /// partial I/O) and allocates the bounce buffer.
    fn check_io(&mut self, sector: u64, len: usize) -> Result<(), BlkError> {
        if self.broken {
            return Err(BlkError::Broken);
        }
        if len % SECTOR != 0 {
            return Err(RequestError::NotSectorMultiple { len: len as u64 }.into());
        }
        let sectors = (len / SECTOR) as u64;
        if sector
            .checked_add(sectors)
            .is_none_or(|end| end > self.config.capacity)
        {
            return Err(RequestError::BeyondCapacity {
                sector,
                sectors,
                capacity: self.config.capacity,
            }
            .into());
        }
        if len > 0 && self.chunk_len() < SECTOR {
            // `seg_max` segments of `size_max` bytes cannot hold a sector.
            return Err(RequestError::TooManySegments {
                segments: SECTOR.div_ceil(self.config.size_max.unwrap_or(1).max(1) as usize),
                max: self.limits.max_data_segments,
            }
            .into());
        }
        self.bounce()
    }

    /// Flushes the device's volatile write cache (`VIRTIO_BLK_T_FLUSH`,
    /// needs `VIRTIO_BLK_F_FLUSH`).
    pub fn flush(&mut self) -> Result<(), BlkError> {
        self.run(BlkRequest::Flush).map(|_| ())
    }

    /// The device id string (`VIRTIO_BLK_T_GET_ID`): 20 bytes, NUL-padded,
    /// not NUL-terminated when 20 characters long.
    pub fn get_id(&mut self) -> Result<[u8; VIRTIO_BLK_ID_BYTES], BlkError> {
        if self.broken {
            return Err(BlkError::Broken);
        }
        self.bounce()?;
        let addr = self.state.bounce.as_ref().map_or(0, |b| b.addr(0));
        // Cleared first, so bytes the device does not write read as NUL.
        if let Some(b) = &self.state.bounce {
            let _ = b.slice().fill(0, VIRTIO_BLK_ID_BYTES, 0);
        }
        self.run(BlkRequest::GetId {
            buf: Segment::new(addr, VIRTIO_BLK_ID_BYTES as u32),
        })?;
        let mut id = [0u8; VIRTIO_BLK_ID_BYTES];
        if let Some(b) = &self.state.bounce {
            b.slice()
                .read_bytes(0, &mut id)
                .map_err(|_| RequestError::TooLarge)?;
        }
        Ok(id)
    }

    /// Discards `sectors` sectors from `sector` (`VIRTIO_BLK_T_DISCARD`),
    /// in requests of at most `max_discard_sectors` each.
    pub fn discard(&mut self, sector: u64, sectors: u32) -> Result<(), BlkError> {
        let max = self.config.discard.map_or(0, |d| d.max_sectors);
        self.ranges(sector, sectors, max, |ranges| BlkRequest::Discard {
            ranges,
        })
    }

    /// Writes zeroes to `sectors` sectors from `sector`
    /// (`VIRTIO_BLK_T_WRITE_ZEROES`), letting the device deallocate them if
    /// `unmap`, in requests of at most `max_write_zeroes_sectors` each.
    pub fn write_zeroes(&mut self, sector: u64, sectors: u32, unmap: bool) -> Result<(), BlkError> {
        let max = self.config.write_zeroes.map_or(0, |w| w.max_sectors);
        self.ranges(sector, sectors, max, |ranges| BlkRequest::WriteZeroes {
            ranges,
            unmap,
        })
    }

    /// One request per range of at most `max` sectors.
    fn ranges(
        &mut self,
        sector: u64,
        sectors: u32,
        max: u32,
        make: impl for<'a> Fn(&'a [DiscardRange]) -> BlkRequest<'a>,
    ) -> Result<(), BlkError> {
        if sectors == 0 {
            // Checked like a request: not negotiated, read-only.
            validate(
                &make(&[DiscardRange { sector, sectors: 1 }]),
                &super::config::BlkConfig {
                    capacity: u64::MAX,
                    ..self.config
                },
                &self.limits,
            )
            .map_err(BlkError::from)?;
            return Ok(());
        }
        let total = u64::from(sectors);
        if sector
            .checked_add(total)
            .is_none_or(|end| end > self.config.capacity)
        {
            return Err(RequestError::BeyondCapacity {
                sector,
                sectors: total,
                capacity: self.config.capacity,
            }
            .into());
        }
        let mut done = 0u32;
        while done < sectors {
            let n = (sectors - done).min(max.max(1));
            let range = [DiscardRange {
                sector: sector + u64::from(done),
                sectors: n,
            }];
            self.run(make(&range))?;
            done += n;
        }
        Ok(())
    }
}
