//! The unsafe core of the block device: iovecs over guest memory, the
//! system calls that use them, and the two executors that run them (an
//! io_uring ring and a thread pool).
//!
//! Everything `unsafe` in the block device lives here. The invariant every
//! executor keeps, and on which the safety of the whole module rests:
//!
//! **No operation is left in flight when an executor's `run` returns.**
//! `run` borrows its operations (and through them the iovec arrays and the
//! guest memory they point into, see [`IoVecs`]) for the duration of the
//! call, and it does not return, by value or by unwinding, before the
//! kernel (io_uring) or the pool threads are done with every one of them.
//! Where that cannot be guaranteed (io_uring refusing to report completions
//! of submitted requests, a "cannot happen" case) the process aborts rather
//! than let the kernel write into memory that may be reused.
//!
//! Panic contract: nothing here panics on peer input; the guest only
//! controls addresses and lengths, which were validated against guest
//! memory before they became [`IoVecs`].
#![allow(unsafe_code)]

use std::io;
use std::marker::PhantomData;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::thread::JoinHandle;

use io_uring::{opcode, types, IoUring, Probe};
use ringwork_queue::mem::MemSlice;

/// Most iovecs one readv/writev takes (Linux `UIO_MAXIOV`); longer lists
/// are transferred in several operations.
pub(crate) const MAX_IOVECS: usize = 1024;

/// Size of the shared zero buffer [`IoOp::WriteZeroes`] writes from.
pub(crate) const ZEROES_LEN: usize = 1 << 20;

/// `fallocate` mode: deallocate, keep the file size.
pub(crate) const PUNCH_HOLE: i32 = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
/// `fallocate` mode: zero the range, keep the file size.
pub(crate) const ZERO_RANGE: i32 = libc::FALLOC_FL_ZERO_RANGE | libc::FALLOC_FL_KEEP_SIZE;

/// The shared, immutable zero buffer (allocated on first use).
fn zeroes() -> &'static [u8] {
    static ZEROES: OnceLock<Box<[u8]>> = OnceLock::new();
    ZEROES.get_or_init(|| vec![0u8; ZEROES_LEN].into_boxed_slice())
}

/// A list of iovecs over guest memory windows that stay valid for `'m`.
///
/// Built only from [`MemSlice`]s, so every iovec points at memory that is
/// mapped, readable and writable for `'m`. The list can be advanced past
/// bytes already transferred (short reads and writes).
pub(crate) struct IoVecs<'m> {
    /// Inline for the common one- to four-segment buffers: building a
    /// request's list does not allocate.
    iov: smallvec::SmallVec<[libc::iovec; 4]>,
    start: usize,
    bytes: usize,
    _mem: PhantomData<MemSlice<'m>>,
}

// SAFETY: an iovec is an address and a length of guest memory; the windows
// they come from (MemSlice<'m>) are Send and Sync, and the only accesses
// made through these addresses are the kernel's and `fill_zero`'s, which
// goes through a MemSlice again.
unsafe impl Send for IoVecs<'_> {}
// SAFETY: as above; `&IoVecs` gives no way to write the iovec array.
unsafe impl Sync for IoVecs<'_> {}

impl core::fmt::Debug for IoVecs<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("IoVecs")
            .field("segments", &(self.iov.len() - self.start))
            .field("bytes", &self.bytes)
            .finish()
    }
}

impl<'m> IoVecs<'m> {
    /// An empty list.
    pub(crate) fn new() -> Self {
        Self {
            iov: smallvec::SmallVec::new(),
            start: 0,
            bytes: 0,
            _mem: PhantomData,
        }
    }

    /// Appends a window (empty windows are skipped).
    pub(crate) fn push(&mut self, s: MemSlice<'m>) {
        if s.is_empty() {
            return;
        }
        self.iov.push(libc::iovec {
            iov_base: s.as_ptr().cast(),
            iov_len: s.len(),
        });
        self.bytes += s.len();
    }

    /// Bytes not transferred yet.
    pub(crate) fn len(&self) -> usize {
        self.bytes
    }

    /// Whether everything was transferred.
    pub(crate) fn is_empty(&self) -> bool {
        self.bytes == 0
    }

    /// Marks the first `n` remaining bytes as transferred.
    pub(crate) fn advance(&mut self, n: usize) {
        let mut n = n.min(self.bytes);
        self.bytes -= n;
        while n > 0 {
            let Some(v) = self.iov.get_mut(self.start) else {
                break;
            };
            if n >= v.iov_len {
                n -= v.iov_len;
                self.start += 1;
            } else {
                v.iov_base = v.iov_base.cast::<u8>().wrapping_add(n).cast();
                v.iov_len -= n;
                n = 0;
            }
        }
    }

    /// The remaining iovecs.
    fn remaining(&self) -> &[libc::iovec] {
        self.iov.get(self.start..).unwrap_or(&[])
    }

    /// The remaining iovecs, at most [`MAX_IOVECS`] of them.
    fn raw(&self) -> (*const libc::iovec, usize) {
        let rest = self.iov.get(self.start..).unwrap_or(&[]);
        (rest.as_ptr(), rest.len().min(MAX_IOVECS))
    }

    /// Writes zeroes into every byte not transferred yet (so that a failed
    /// read leaves defined contents behind).
    pub(crate) fn fill_zero(&self) {
        for v in self.iov.get(self.start..).unwrap_or(&[]) {
            // SAFETY: `iov_base..+iov_len` is (a tail of) a window taken
            // from a MemSlice<'m>; `'m` has not ended while `self` exists,
            // so the memory is mapped and writable, and it is accessed only
            // through the new window's volatile stores.
            let s = unsafe { MemSlice::from_raw_parts(v.iov_base.cast(), v.iov_len) };
            // Cannot fail: the fill covers exactly the window.
            let _ = s.fill(0, v.iov_len, 0);
        }
    }
}

/// One file operation of a request.
#[derive(Debug)]
pub(crate) enum IoOp<'a> {
    /// `preadv` into the iovecs at `offset`.
    Readv {
        /// Destination.
        iov: &'a IoVecs<'a>,
        /// File offset.
        offset: u64,
    },
    /// `pwritev` from the iovecs at `offset`.
    Writev {
        /// Source.
        iov: &'a IoVecs<'a>,
        /// File offset.
        offset: u64,
    },
    /// `fdatasync`.
    Fdatasync,
    /// `fallocate(mode, offset, len)`.
    Fallocate {
        /// [`PUNCH_HOLE`] or [`ZERO_RANGE`].
        mode: i32,
        /// File offset.
        offset: u64,
        /// Bytes.
        len: u64,
    },
    /// `pwrite` of up to `len` (at most [`ZEROES_LEN`]) zero bytes.
    WriteZeroes {
        /// File offset.
        offset: u64,
        /// Bytes wanted.
        len: usize,
    },
}

fn off_t(v: u64) -> io::Result<libc::off_t> {
    libc::off_t::try_from(v).map_err(|_| io::Error::from_raw_os_error(libc::EOVERFLOW))
}

/// Runs `op` synchronously on the calling thread.
pub(crate) fn execute(fd: BorrowedFd<'_>, op: &IoOp<'_>) -> io::Result<usize> {
    let fd = fd.as_raw_fd();
    let r: isize = match *op {
        IoOp::Readv { iov, offset } => {
            let (p, n) = iov.raw();
            let off = off_t(offset)?;
            // SAFETY: `p` points to `n` (<= MAX_IOVECS) iovecs borrowed for
            // this call; each names guest memory valid for writes (IoVecs).
            unsafe { libc::preadv(fd, p, n as libc::c_int, off) }
        }
        IoOp::Writev { iov, offset } => {
            let (p, n) = iov.raw();
            let off = off_t(offset)?;
            // SAFETY: as for Readv; the kernel only reads the buffers.
            unsafe { libc::pwritev(fd, p, n as libc::c_int, off) }
        }
        IoOp::Fdatasync => {
            // SAFETY: a system call on a borrowed, open descriptor; no
            // memory is passed.
            let r = unsafe { libc::fdatasync(fd) };
            r as isize
        }
        IoOp::Fallocate { mode, offset, len } => {
            let (off, len) = (off_t(offset)?, off_t(len)?);
            // SAFETY: as for Fdatasync: no memory is passed.
            let r = unsafe { libc::fallocate(fd, mode, off, len) };
            r as isize
        }
        IoOp::WriteZeroes { offset, len } => {
            let z = zeroes();
            let off = off_t(offset)?;
            // SAFETY: `z` is a 'static buffer of at least `len.min(z.len())`
            // bytes; the kernel only reads it.
            unsafe { libc::pwrite(fd, z.as_ptr().cast(), len.min(z.len()), off) }
        }
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

/// "Runs" `op` without touching any file (the null engine): reads fill
/// their buffers with zeroes, everything else succeeds at once.
pub(crate) fn execute_null(op: &IoOp<'_>) -> io::Result<usize> {
    Ok(match *op {
        IoOp::Readv { iov, .. } => {
            iov.fill_zero();
            iov.len()
        }
        IoOp::Writev { iov, .. } => iov.len(),
        IoOp::Fdatasync | IoOp::Fallocate { .. } => 0,
        IoOp::WriteZeroes { len, .. } => len,
    })
}

/// Scratch space for [`execute_null_batch`]'s iovec list, kept so that
/// batches do not allocate.
#[derive(Debug, Default)]
pub(crate) struct IovScratch(Vec<libc::iovec>);

// SAFETY: the list is empty except during one `execute_null_batch` call on
// the owning thread, so no pointer it held ever moves between threads.
unsafe impl Send for IovScratch {}

/// The null engine over a batch: the buffers of every read are zeroed by
/// the kernel, with `preadv` from `/dev/zero` (`zero`) over all of them at
/// once (an in-kernel clear, much faster than stores from here, and the
/// guest memory is touched only through raw iovecs); everything else as
/// [`execute_null`]. `iov` is scratch space. Should the kernel not fill
/// everything, the reads are zeroed from here.
pub(crate) fn execute_null_batch(
    zero: BorrowedFd<'_>,
    ops: &[IoOp<'_>],
    results: &mut Vec<io::Result<usize>>,
    scratch: &mut IovScratch,
) {
    let iov = &mut scratch.0;
    iov.clear();
    for op in ops {
        if let IoOp::Readv { iov: v, .. } = op {
            iov.extend_from_slice(v.remaining());
        }
    }
    let mut zeroed = true;
    for chunk in iov.chunks(MAX_IOVECS) {
        let want: usize = chunk.iter().map(|v| v.iov_len).sum();
        // SAFETY: `chunk` holds at most MAX_IOVECS iovecs copied from live
        // IoVecs borrowed for this call; each names guest memory valid for
        // writes (IoVecs' contract).
        let n = unsafe {
            libc::preadv(
                zero.as_raw_fd(),
                chunk.as_ptr(),
                chunk.len() as libc::c_int,
                0,
            )
        };
        if usize::try_from(n).ok() != Some(want) {
            zeroed = false;
            break;
        }
    }
    iov.clear();
    results.clear();
    results.extend(ops.iter().map(|op| match op {
        IoOp::Readv { iov, .. } if zeroed => Ok(iov.len()),
        other => execute_null(other),
    }));
}

/// `TMPFS_MAGIC` from `<linux/magic.h>`.
const TMPFS_MAGIC: u64 = 0x0102_1994;

/// Whether `fd` lives on tmpfs (where io_uring punts every buffered read
/// to a kernel worker thread, so inline system calls are faster).
pub(crate) fn is_tmpfs(fd: BorrowedFd<'_>) -> bool {
    let mut st = std::mem::MaybeUninit::<libc::statfs>::uninit();
    // SAFETY: `st` is a writable `statfs` the call fills on success; the
    // descriptor is borrowed, hence open.
    let r = unsafe { libc::fstatfs(fd.as_raw_fd(), st.as_mut_ptr()) };
    if r != 0 {
        return false;
    }
    // SAFETY: fstatfs succeeded, so it initialized `st`.
    let st = unsafe { st.assume_init() };
    u64::try_from(st.f_type).ok() == Some(TMPFS_MAGIC)
}

/// Sets `results` to `n` placeholders.
fn reset_results(results: &mut Vec<io::Result<usize>>, n: usize) {
    results.clear();
    results.resize_with(n, || Err(io::Error::other("operation not executed")));
}

// ---------------------------------------------------------------------------
// io_uring
// ---------------------------------------------------------------------------

/// Aborts the process if dropped with operations in flight: the unwinding
/// path of [`Ring::run`] (which never unwinds in practice).
struct InFlightGuard(usize);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        if self.0 != 0 {
            tracing::error!(
                in_flight = self.0,
                "io_uring executor unwinding with I/O in flight; aborting"
            );
            std::process::abort();
        }
    }
}

/// One io_uring instance (one per worker).
pub(crate) struct Ring {
    ring: IoUring,
    cap: usize,
}

impl core::fmt::Debug for Ring {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Ring").field("entries", &self.cap).finish()
    }
}

impl Ring {
    /// A ring of `entries` submission entries, checked to support every
    /// opcode the block device uses.
    pub(crate) fn new(entries: u32) -> io::Result<Self> {
        let ring = IoUring::new(entries)?;
        let mut probe = Probe::new();
        ring.submitter().register_probe(&mut probe)?;
        for (code, name) in [
            (opcode::Readv::CODE, "READV"),
            (opcode::Writev::CODE, "WRITEV"),
            (opcode::Write::CODE, "WRITE"),
            (opcode::Fsync::CODE, "FSYNC"),
            (opcode::Fallocate::CODE, "FALLOCATE"),
        ] {
            if !probe.is_supported(code) {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    format!("the kernel's io_uring lacks IORING_OP_{name}"),
                ));
            }
        }
        let cap = (ring.params().sq_entries() as usize).max(1);
        Ok(Self { ring, cap })
    }

    fn entry(fd: RawFd, op: &IoOp<'_>) -> io_uring::squeue::Entry {
        let fd = types::Fd(fd);
        match *op {
            IoOp::Readv { iov, offset } => {
                let (p, n) = iov.raw();
                opcode::Readv::new(fd, p, n as u32).offset(offset).build()
            }
            IoOp::Writev { iov, offset } => {
                let (p, n) = iov.raw();
                opcode::Writev::new(fd, p, n as u32).offset(offset).build()
            }
            IoOp::Fdatasync => opcode::Fsync::new(fd)
                .flags(types::FsyncFlags::DATASYNC)
                .build(),
            IoOp::Fallocate { mode, offset, len } => opcode::Fallocate::new(fd, len)
                .offset(offset)
                .mode(mode)
                .build(),
            IoOp::WriteZeroes { offset, len } => {
                let z = zeroes();
                let n = len.min(z.len()) as u32;
                opcode::Write::new(fd, z.as_ptr(), n).offset(offset).build()
            }
        }
    }

    /// Runs every operation (concurrently, at most the ring's size in
    /// flight) and waits for all of them; `results[i]` is `ops[i]`'s.
    pub(crate) fn run(
        &mut self,
        fd: BorrowedFd<'_>,
        ops: &[IoOp<'_>],
        results: &mut Vec<io::Result<usize>>,
    ) {
        reset_results(results, ops.len());
        let raw_fd = fd.as_raw_fd();
        let mut next = 0;
        let mut guard = InFlightGuard(0);
        while next < ops.len() || guard.0 > 0 {
            let before = next;
            {
                let mut sq = self.ring.submission();
                while next < ops.len() && guard.0 < self.cap && !sq.is_full() {
                    let entry = Self::entry(raw_fd, &ops[next]).user_data(next as u64);
                    // SAFETY: the entry references the iovec array of an
                    // IoVecs borrowed (through `ops`) for this whole call,
                    // the guest memory it points to (valid for the IoVecs'
                    // lifetime, which outlives the borrow), the 'static zero
                    // buffer, and `fd`, borrowed for this call. This loop
                    // does not exit before every pushed entry's completion
                    // has been reaped (and the guard aborts on unwinding).
                    if unsafe { sq.push(&entry) }.is_err() {
                        break;
                    }
                    next += 1;
                    guard.0 += 1;
                }
            }
            if guard.0 == 0 && next == before {
                // Nothing in flight and nothing could be queued (cannot
                // happen with an empty ring): fail the rest, don't spin.
                for slot in results.iter_mut().skip(next) {
                    *slot = Err(io::Error::other("io_uring submission queue unusable"));
                }
                return;
            }
            if let Err(e) = self.ring.submit_and_wait(1) {
                let transient = matches!(
                    e.raw_os_error(),
                    Some(libc::EINTR | libc::EAGAIN | libc::EBUSY)
                );
                if !transient {
                    // Entries pushed but not consumed are reported as
                    // in flight too: we cannot tell them apart, so we
                    // cannot safely return.
                    tracing::error!(error = %e, "io_uring_enter failed with I/O in flight; aborting");
                    std::process::abort();
                }
            }
            for cqe in self.ring.completion() {
                guard.0 = guard.0.saturating_sub(1);
                let res = cqe.result();
                let r = if res < 0 {
                    Err(io::Error::from_raw_os_error(-res))
                } else {
                    Ok(res as usize)
                };
                if let Some(slot) = results.get_mut(cqe.user_data() as usize) {
                    *slot = r;
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Thread pool
// ---------------------------------------------------------------------------

/// One operation handed to a pool thread.
struct Task {
    index: usize,
    /// Points to an `IoOp` borrowed by [`Pool::run`], lifetime erased.
    op: *const IoOp<'static>,
    fd: RawFd,
}

// SAFETY: the pointee is an IoOp (Sync: it holds plain values and
// `&IoVecs`, which is Sync) that `Pool::run` keeps borrowed until the pool
// thread has replied for this task.
unsafe impl Send for Task {}

type Reply = (usize, io::Result<usize>);

/// A fixed set of threads that run operations synchronously.
pub(crate) struct Pool {
    tasks: Option<mpsc::Sender<Task>>,
    replies: mpsc::Receiver<Reply>,
    threads: Vec<JoinHandle<()>>,
}

impl core::fmt::Debug for Pool {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Pool")
            .field("threads", &self.threads.len())
            .finish()
    }
}

impl Pool {
    /// Starts `threads` threads (0: every operation runs on the caller).
    pub(crate) fn new(threads: usize) -> io::Result<Self> {
        let (tx, rx) = mpsc::channel::<Task>();
        let rx = Arc::new(Mutex::new(rx));
        let (reply_tx, replies) = mpsc::channel::<Reply>();
        let mut handles = Vec::with_capacity(threads);
        for i in 0..threads {
            let rx = rx.clone();
            let reply_tx = reply_tx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("ringwork-blk-io{i}"))
                .spawn(move || pool_thread(&rx, &reply_tx));
            match spawned {
                Ok(h) => handles.push(h),
                Err(e) if handles.is_empty() => return Err(e),
                Err(_) => break,
            }
        }
        // Only the threads hold reply senders: when all of them are gone,
        // `replies.recv()` fails instead of blocking.
        drop(reply_tx);
        Ok(Self {
            tasks: Some(tx),
            replies,
            threads: handles,
        })
    }

    /// Runs every operation on the pool's threads and waits for all of
    /// them; `results[i]` is `ops[i]`'s.
    pub(crate) fn run(
        &mut self,
        fd: BorrowedFd<'_>,
        ops: &[IoOp<'_>],
        results: &mut Vec<io::Result<usize>>,
    ) {
        reset_results(results, ops.len());
        let tasks = match &self.tasks {
            Some(t) if ops.len() > 1 && !self.threads.is_empty() => t,
            _ => {
                for (op, slot) in ops.iter().zip(results.iter_mut()) {
                    *slot = execute(fd, op);
                }
                return;
            }
        };
        let mut sent = 0usize;
        for (index, op) in ops.iter().enumerate() {
            let task = Task {
                index,
                op: (op as *const IoOp<'_>).cast::<IoOp<'static>>(),
                fd: fd.as_raw_fd(),
            };
            if tasks.send(task).is_ok() {
                sent += 1;
            } else if let Some(slot) = results.get_mut(index) {
                // No thread left to take it: run it here.
                *slot = execute(fd, op);
            }
        }
        // Every sent task's pointee stays borrowed until its reply arrives.
        // If all threads are gone (`recv` fails), none is running a task,
        // and the queued ones are never dereferenced.
        while sent > 0 {
            let Ok((index, r)) = self.replies.recv() else {
                break;
            };
            sent -= 1;
            if let Some(slot) = results.get_mut(index) {
                *slot = r;
            }
        }
    }
}

fn pool_thread(rx: &Mutex<mpsc::Receiver<Task>>, reply: &mpsc::Sender<Reply>) {
    loop {
        let task = {
            let guard = match rx.lock() {
                Ok(g) => g,
                Err(poisoned) => poisoned.into_inner(),
            };
            guard.recv()
        };
        let Ok(task) = task else {
            return;
        };
        let r = catch_unwind(AssertUnwindSafe(|| {
            // SAFETY: `Pool::run` keeps the IoOp (and everything it
            // borrows) alive until it receives this task's reply, sent
            // below after the last use of `op`.
            let op = unsafe { &*task.op };
            // SAFETY: the descriptor is borrowed by `Pool::run` for as long
            // as the op.
            let fd = unsafe { BorrowedFd::borrow_raw(task.fd) };
            execute(fd, op)
        }))
        .unwrap_or_else(|_| Err(io::Error::other("block I/O thread panicked")));
        if reply.send((task.index, r)).is_err() {
            return;
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.tasks = None;
        for h in self.threads.drain(..) {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests;
