//! Executor tests: every operation runs, results line up.
use super::*;
use ringwork_queue::mem::GuestMemory;
use ringwork_queue::mmap::{GuestMemoryMmap, MmapRegion};
use std::os::fd::AsFd;

/// Runs operations on one executor.
type Run<'r> = dyn FnMut(&[IoOp<'_>], &mut Vec<io::Result<usize>>) + 'r;

/// More operations than the ring has entries, and than the pool has
/// threads: every one runs, and results line up with operations.
#[test]
fn executors_run_every_op() {
    let path = std::env::temp_dir().join(format!("ringwork-blk-sys-{}.img", std::process::id()));
    std::fs::write(&path, vec![0x55u8; 64 * 1024]).unwrap();
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    let mut mem = GuestMemoryMmap::new();
    mem.add_region(0, MmapRegion::anonymous(64 * 1024).unwrap())
        .unwrap();
    let mut results = Vec::new();
    let mut check = |run: &mut Run<'_>| {
        let iovs: Vec<IoVecs<'_>> = (0..8u64)
            .map(|i| {
                let mut v = IoVecs::new();
                v.push(mem.slice(i * 4096, 1024).unwrap());
                v.push(mem.slice(i * 4096 + 2048, 1024).unwrap());
                v
            })
            .collect();
        // Zeroes first, then reads overlapping them (separate runs:
        // operations within one run are concurrent).
        let mut ops: Vec<IoOp<'_>> = (0..8u64)
            .map(|i| IoOp::WriteZeroes {
                offset: i * 8192,
                len: 512 + i as usize,
            })
            .collect();
        ops.push(IoOp::Fdatasync);
        run(&ops, &mut results);
        let got: Vec<usize> = results.drain(..).map(|r| r.unwrap()).collect();
        let mut want: Vec<usize> = (0..8).map(|i| 512 + i).collect();
        want.push(0);
        assert_eq!(got, want);
        let ops: Vec<IoOp<'_>> = iovs
            .iter()
            .enumerate()
            .map(|(i, iov)| IoOp::Readv {
                iov,
                offset: i as u64 * 8192 + 256,
            })
            .collect();
        run(&ops, &mut results);
        let got: Vec<usize> = results.drain(..).map(|r| r.unwrap()).collect();
        assert_eq!(got, [2048; 8]);
        let mut b = [0u8; 1024];
        mem.slice(4096 + 2048, 1024)
            .unwrap()
            .read_bytes(0, &mut b)
            .unwrap();
        // Read from file offset 8192 + 256 + 1024: past the zeroes.
        assert!(b.iter().all(|&x| x == 0x55));
        mem.slice(4096, 1024)
            .unwrap()
            .read_bytes(0, &mut b)
            .unwrap();
        assert!(b[..257].iter().all(|&x| x == 0) && b[257..].iter().all(|&x| x == 0x55));
    };
    let fd = file.as_fd();
    if let Ok(mut ring) = Ring::new(2) {
        assert!(ring.cap <= 4);
        check(&mut |ops, res| ring.run(fd, ops, res));
    }
    for threads in [0, 3] {
        let mut pool = Pool::new(threads).unwrap();
        check(&mut |ops, res| pool.run(fd, ops, res));
    }
    // Errors come back per operation.
    let mut pool = Pool::new(2).unwrap();
    let ops = [
        IoOp::Fallocate {
            mode: PUNCH_HOLE,
            offset: u64::MAX,
            len: 1,
        },
        IoOp::Fdatasync,
    ];
    pool.run(fd, &ops, &mut results);
    assert!(results[0].is_err() && results[1].is_ok());
    drop(file);
    std::fs::remove_file(&path).unwrap();
}
