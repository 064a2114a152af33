//! The block request checks of the main session: GET_ID, FLUSH, the
//! statuses a device must answer bad or unsupported requests with
//! (§5.2.6, §5.2.6.2), discard and write zeroes. Checks that may change
//! data restore it ([`Io::preserve`]).

use ringwork_driver::blk::BlkStatus;
use ringwork_spec::blk::{
    BlkDiscardWriteZeroes, BLK_DISCARD_WRITE_ZEROES_SIZE, VIRTIO_BLK_F_DISCARD, VIRTIO_BLK_F_FLUSH,
    VIRTIO_BLK_F_RO, VIRTIO_BLK_F_SIZE_MAX, VIRTIO_BLK_F_WRITE_ZEROES, VIRTIO_BLK_ID_BYTES,
    VIRTIO_BLK_T_DISCARD, VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_T_WRITE_ZEROES, VIRTIO_BLK_T_ZONE_CLOSE,
    VIRTIO_BLK_T_ZONE_FINISH, VIRTIO_BLK_T_ZONE_OPEN, VIRTIO_BLK_T_ZONE_RESET,
    VIRTIO_BLK_T_ZONE_RESET_ALL, VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP,
};

use super::blk_io::{raw, Io, HALF, T_IN, T_OUT};
use super::common::compare;
use super::report::Outcome;

/// A request type no VIRTIO version defines.
const UNKNOWN_TYPE: u32 = 0x7f;

/// The request checks of the main session: (id, section, description).
pub(crate) const REQUEST_CHECKS: &[(&str, &str, &str)] = &[
    (
        "blk.get-id",
        "§5.2.6",
        "GET_ID answers at most 20 bytes, NUL-padded, and writes every byte its used length claims (§2.7.8.2)",
    ),
    (
        "blk.size-max",
        "§5.2.4",
        "a read in one data segment of size_max bytes is served (1 MiB at most; size_max 0 read as no limit)",
    ),
    (
        "blk.flush",
        "§5.2.6",
        "FLUSH completes with VIRTIO_BLK_S_OK",
    ),
    (
        "blk.unknown-type",
        "§5.2.6",
        "an unknown request type is answered VIRTIO_BLK_S_UNSUPP",
    ),
    (
        "blk.zoned-types",
        "§5.2.6.2",
        "zoned requests without VIRTIO_BLK_F_ZONED negotiated are answered VIRTIO_BLK_S_UNSUPP",
    ),
    (
        "blk.beyond-capacity",
        "§5.2.6",
        "reads past capacity (and straddling it) are answered VIRTIO_BLK_S_IOERR",
    ),
    (
        "blk.read-only",
        "§5.2.6.2",
        "with VIRTIO_BLK_F_RO a write is answered VIRTIO_BLK_S_IOERR and writes nothing",
    ),
    (
        "blk.discard",
        "§5.2.6",
        "DISCARD completes with VIRTIO_BLK_S_OK and the range stays readable",
    ),
    (
        "blk.discard.unmap-flag",
        "§5.2.6.2",
        "DISCARD with the unmap flag is answered VIRTIO_BLK_S_UNSUPP",
    ),
    (
        "blk.write-zeroes",
        "§5.2.6.2",
        "after WRITE_ZEROES (unmap 0) the range reads back as zeroes",
    ),
    (
        "blk.write-zeroes.unmap",
        "§5.2.6.2",
        "after WRITE_ZEROES with unmap the range reads back as zeroes",
    ),
    (
        "blk.write-zeroes.unknown-flag",
        "§5.2.6.2",
        "WRITE_ZEROES with an unknown flag is answered VIRTIO_BLK_S_UNSUPP",
    ),
];

/// The request checks, in [`REQUEST_CHECKS`] order.
pub(crate) fn requests(io: &mut Io) -> Vec<anyhow::Result<Outcome>> {
    let f = io.d.features();
    let ro = io.read_only;
    let cap = io.capacity;
    let chunk = io.chunk;
    // Ranges for the data-changing checks, away from the ring suites'.
    let at = |eighths: u64, n: u64| ((cap / 8) * eighths / chunk + n) * chunk;
    let not = |what: &str| Ok(Outcome::Skip(format!("{what} is not offered")));
    let read_only = |what: &str| Ok(Outcome::Skip(format!("read-only device: no {what}")));
    vec![
        get_id(io),
        if f.contains(VIRTIO_BLK_F_SIZE_MAX) {
            size_max(io)
        } else {
            not("VIRTIO_BLK_F_SIZE_MAX")
        },
        if f.contains(VIRTIO_BLK_F_FLUSH) {
            io.d.flush().map(|()| Outcome::Pass).map_err(Into::into)
        } else {
            not("VIRTIO_BLK_F_FLUSH")
        },
        expect_status(io, &[UNKNOWN_TYPE], 0, 512, BlkStatus::Unsupp),
        expect_status(
            io,
            &[
                VIRTIO_BLK_T_ZONE_OPEN,
                VIRTIO_BLK_T_ZONE_CLOSE,
                VIRTIO_BLK_T_ZONE_FINISH,
                VIRTIO_BLK_T_ZONE_RESET,
                VIRTIO_BLK_T_ZONE_RESET_ALL,
            ],
            0,
            0,
            BlkStatus::Unsupp,
        ),
        beyond_capacity(io),
        if f.contains(VIRTIO_BLK_F_RO) {
            read_only_write(io, at(5, 0))
        } else {
            Ok(Outcome::Skip("VIRTIO_BLK_F_RO is not offered".into()))
        },
        if !f.contains(VIRTIO_BLK_F_DISCARD) {
            not("VIRTIO_BLK_F_DISCARD")
        } else if ro {
            read_only("discard")
        } else {
            discard(io, at(5, 1))
        },
        if !f.contains(VIRTIO_BLK_F_DISCARD) {
            not("VIRTIO_BLK_F_DISCARD")
        } else if ro {
            read_only("discard")
        } else {
            range_status(
                io,
                VIRTIO_BLK_T_DISCARD,
                at(5, 2),
                VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP,
            )
        },
        if !f.contains(VIRTIO_BLK_F_WRITE_ZEROES) {
            not("VIRTIO_BLK_F_WRITE_ZEROES")
        } else if ro {
            read_only("write zeroes")
        } else {
            write_zeroes(io, at(5, 3), false)
        },
        if !f.contains(VIRTIO_BLK_F_WRITE_ZEROES) {
            not("VIRTIO_BLK_F_WRITE_ZEROES")
        } else if ro {
            read_only("write zeroes")
        } else {
            write_zeroes(io, at(5, 4), true)
        },
        if !f.contains(VIRTIO_BLK_F_WRITE_ZEROES) {
            not("VIRTIO_BLK_F_WRITE_ZEROES")
        } else if ro {
            read_only("write zeroes")
        } else {
            range_status(io, VIRTIO_BLK_T_WRITE_ZEROES, at(5, 5), 1 << 1)
        },
    ]
}

/// One read of `size_max` bytes (capped at 1 MiB) in a single segment.
fn size_max(io: &mut Io) -> anyhow::Result<Outcome> {
    let max = io.d.config().size_max.unwrap_or(u32::MAX) as usize;
    let len = max.min(1 << 20).min((io.capacity / 2) as usize * 512) / 512 * 512;
    if len == 0 {
        return Ok(Outcome::Skip(format!("size_max {max} is below one sector")));
    }
    let got = io.read_segs(0, 0, &[len])?;
    Ok(if got.len() == len {
        Outcome::Pass
    } else {
        Outcome::Fail(format!("{} bytes of {len}", got.len()))
    })
}

fn get_id(io: &mut Io) -> anyhow::Result<Outcome> {
    let _ = io.put(HALF, &[0xaa; VIRTIO_BLK_ID_BYTES]);
    let buf = [io.seg(HALF, VIRTIO_BLK_ID_BYTES)];
    let c = io.exec(0, raw(VIRTIO_BLK_T_GET_ID, 0, &[], &buf))?;
    match c.status {
        BlkStatus::Ok => {}
        BlkStatus::Unsupp => {
            return Ok(Outcome::Skip(
                "the device answered VIRTIO_BLK_S_UNSUPP (it has no id string)".into(),
            ))
        }
        s => return Ok(Outcome::Fail(format!("GET_ID completed with {s}"))),
    }
    if c.written as usize > VIRTIO_BLK_ID_BYTES {
        return Ok(Outcome::Fail(format!(
            "the device reports {} bytes written",
            c.written
        )));
    }
    let id = io.get(HALF, c.written as usize)?;
    if let Some(p) = id.iter().position(|&b| b == 0) {
        if id[p..].iter().any(|&b| b != 0) {
            return Ok(Outcome::Fail(format!(
                "the used length claims {} bytes, but after the NUL at byte {p} they are not NUL \
                 padding (the buffer's 0xaa fill was left unwritten): {id:x?}",
                c.written
            )));
        }
    }
    Ok(Outcome::Pass)
}

/// Each request type of `types` at `sector` (with `inp` device-writable
/// bytes) completes with `want`.
fn expect_status(
    io: &mut Io,
    types: &[u32],
    sector: u64,
    inp: usize,
    want: BlkStatus,
) -> anyhow::Result<Outcome> {
    let buf = [io.seg(HALF, inp.max(1))];
    let inp: &[_] = if inp == 0 { &[] } else { &buf };
    for &ty in types {
        let c = io.exec(0, raw(ty, sector, &[], inp))?;
        if c.status != want {
            return Ok(Outcome::Fail(format!(
                "request type {ty} completed with {}, expected {want}",
                c.status
            )));
        }
    }
    Ok(Outcome::Pass)
}

fn beyond_capacity(io: &mut Io) -> anyhow::Result<Outcome> {
    let cap = io.capacity;
    for (sector, len) in [(cap, 512), (cap - 1, 1024), (cap + 1024, 4096)] {
        let buf = [io.seg(HALF, len)];
        let c = io.exec(0, raw(T_IN, sector, &[], &buf))?;
        if c.status != BlkStatus::IoErr {
            return Ok(Outcome::Fail(format!(
                "a {len}-byte read at sector {sector} (capacity {cap}) completed with {}",
                c.status
            )));
        }
    }
    Ok(Outcome::Pass)
}

fn read_only_write(io: &mut Io, sector: u64) -> anyhow::Result<Outcome> {
    let cb = io.chunk_bytes();
    let before = io.read_whole(0, sector, cb)?;
    let data = io.pattern(40, sector, cb);
    io.put(0, &data)?;
    let out = [io.seg(0, cb)];
    let c = io.exec(0, raw(T_OUT, sector, &out, &[]))?;
    let after = io.read_whole(0, sector, cb)?;
    if after != before {
        // The device wrote: put the data back the same way.
        io.put(0, &before)?;
        let _ = io.exec(0, raw(T_OUT, sector, &out, &[]));
        return Ok(Outcome::Fail(format!(
            "the write changed the data (it completed with {})",
            c.status
        )));
    }
    if c.status != BlkStatus::IoErr {
        return Ok(Outcome::Fail(format!(
            "the write completed with {}",
            c.status
        )));
    }
    Ok(Outcome::Pass)
}

fn discard(io: &mut Io, sector: u64) -> anyhow::Result<Outcome> {
    let chunk = io.chunk;
    io.preserve(sector, chunk, |io| {
        io.d.discard(sector, chunk as u32)?;
        let cb = io.chunk_bytes();
        io.read_whole(0, sector, cb)?;
        Ok(Outcome::Pass)
    })
}

fn write_zeroes(io: &mut Io, sector: u64, unmap: bool) -> anyhow::Result<Outcome> {
    let chunk = io.chunk;
    io.preserve(sector, chunk, |io| {
        let cb = io.chunk_bytes();
        let data = io.pattern(41, sector, cb);
        io.write_whole(0, sector, &data)?;
        io.d.write_zeroes(sector, chunk as u32, unmap)?;
        let back = io.read_whole(0, sector, cb)?;
        Ok(compare(
            &format!("sector {sector} after write zeroes"),
            &back,
            &vec![0; cb],
        ))
    })
}

/// A one-range DISCARD / WRITE_ZEROES with `flags` must be answered
/// UNSUPP (the data is restored whatever the device did).
fn range_status(io: &mut Io, ty: u32, sector: u64, flags: u32) -> anyhow::Result<Outcome> {
    let chunk = io.chunk;
    io.preserve(sector, chunk, |io| {
        let mut e = [0u8; BLK_DISCARD_WRITE_ZEROES_SIZE];
        {
            let mut v = BlkDiscardWriteZeroes::new_unchecked(&mut e[..]);
            v.set_sector(sector);
            v.set_num_sectors(chunk as u32);
            v.set_flags(flags);
        }
        io.put(0, &e)?;
        let out = [io.seg(0, e.len())];
        let c = io.exec(0, raw(ty, 0, &out, &[]))?;
        Ok(if c.status == BlkStatus::Unsupp {
            Outcome::Pass
        } else {
            Outcome::Fail(format!("flags {flags:#x}: completed with {}", c.status))
        })
    })
}
