//! The I/O a parsed request needs, as a small state machine that both
//! engines drive the same way: ask [`Job::op`] for the next file operation,
//! run it, feed the result to [`Job::complete`], until [`Job::status`] is
//! known.
//!
//! Short transfers are continued, interrupted operations retried (a bounded
//! number of times), and `fallocate` modes the file system refuses fall
//! back to the next method (punch hole → zero range → writing zeroes). What
//! the file system refused is remembered in [`Caps`] so later requests skip
//! it.
//!
//! Panic contract: nothing here panics; every result the kernel returns
//! (including impossible ones, like 0-byte progress) ends the job.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};

use ringwork_spec::blk::{VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_OK};

use super::sys::{IoOp, IoVecs, PUNCH_HOLE, ZEROES_LEN, ZERO_RANGE};

/// Consecutive `EINTR`/`EAGAIN` results tolerated before a request fails.
const MAX_RETRIES: u8 = 16;

/// What the backing file's file system turned out to support (shared by
/// all workers; starts optimistic).
#[derive(Debug)]
pub(crate) struct Caps {
    punch_hole: AtomicBool,
    zero_range: AtomicBool,
}

impl Caps {
    pub(crate) fn new() -> Self {
        Self {
            punch_hole: AtomicBool::new(true),
            zero_range: AtomicBool::new(true),
        }
    }
}

/// One range of a discard or write-zeroes request, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Range {
    pub(crate) offset: u64,
    pub(crate) len: u64,
    /// Write zeroes: the driver allows deallocation.
    pub(crate) unmap: bool,
}

/// How a range is being cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    Punch,
    ZeroRange,
    Write,
}

#[derive(Debug)]
struct Ranges<'a> {
    discard: bool,
    list: Vec<Range>,
    next: usize,
    method: Method,
    /// Bytes of the current range written by [`Method::Write`].
    done: u64,
    caps: &'a Caps,
}

impl Ranges<'_> {
    /// The first method to try on `r`, or `None` to skip it.
    fn first_method(&self, r: &Range) -> Option<Method> {
        if r.len == 0 {
            return None;
        }
        let punch = self.caps.punch_hole.load(Ordering::Relaxed);
        if self.discard {
            // Discard may deallocate (VIRTIO 1.4 §5.2.6.2) but need not:
            // without hole punching it does nothing.
            return punch.then_some(Method::Punch);
        }
        Some(if r.unmap && punch {
            Method::Punch
        } else {
            self.zero_method()
        })
    }

    fn zero_method(&self) -> Method {
        if self.caps.zero_range.load(Ordering::Relaxed) {
            Method::ZeroRange
        } else {
            Method::Write
        }
    }

    /// Moves to the next range that needs work; `false` when none is left.
    fn seek(&mut self) -> bool {
        while let Some(r) = self.list.get(self.next) {
            if let Some(m) = self.first_method(r) {
                self.method = m;
                self.done = 0;
                return true;
            }
            self.next += 1;
        }
        false
    }

    fn op(&self) -> Option<IoOp<'_>> {
        let r = self.list.get(self.next)?;
        Some(match self.method {
            Method::Punch => IoOp::Fallocate {
                mode: PUNCH_HOLE,
                offset: r.offset,
                len: r.len,
            },
            Method::ZeroRange => IoOp::Fallocate {
                mode: ZERO_RANGE,
                offset: r.offset,
                len: r.len,
            },
            Method::Write => IoOp::WriteZeroes {
                offset: r.offset + self.done,
                len: (r.len - self.done).min(ZEROES_LEN as u64) as usize,
            },
        })
    }

    /// Feeds one result; `Ok(true)` when every range is done.
    fn complete(&mut self, res: io::Result<usize>) -> io::Result<bool> {
        let Some(r) = self.list.get(self.next).copied() else {
            return Ok(true);
        };
        match (self.method, res) {
            (Method::Write, Ok(0)) => {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "writing zeroes made no progress",
                ))
            }
            (Method::Write, Ok(n)) => {
                self.done += n as u64;
                if self.done < r.len {
                    return Ok(false);
                }
            }
            (Method::Punch | Method::ZeroRange, Ok(_)) => {}
            (method @ (Method::Punch | Method::ZeroRange), Err(e)) => {
                let errno = e.raw_os_error();
                let unsupported = matches!(errno, Some(libc::EOPNOTSUPP | libc::ENOSYS));
                if !unsupported && errno != Some(libc::EINVAL) {
                    return Err(e);
                }
                let flag = if method == Method::Punch {
                    &self.caps.punch_hole
                } else {
                    &self.caps.zero_range
                };
                if unsupported && flag.swap(false, Ordering::Relaxed) {
                    tracing::info!(
                        mode = if method == Method::Punch {
                            "punch hole"
                        } else {
                            "zero range"
                        },
                        "block image file system refuses fallocate mode; falling back"
                    );
                }
                if method == Method::Punch && !self.discard {
                    self.method = self.zero_method();
                    return Ok(false);
                }
                if method == Method::ZeroRange {
                    self.method = Method::Write;
                    self.done = 0;
                    return Ok(false);
                }
                // A discard that cannot deallocate is a no-op.
            }
            (Method::Write, Err(e)) => return Err(e),
        }
        self.next += 1;
        Ok(!self.seek())
    }
}

#[derive(Debug)]
enum Work<'a> {
    None,
    Read { iov: IoVecs<'a>, offset: u64 },
    Write { iov: IoVecs<'a>, offset: u64 },
    Flush,
    Ranges(Ranges<'a>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Main,
    /// Write-through: `fdatasync` after the data.
    Sync,
    Done(u8),
}

/// The I/O of one request. See the [module docs](self).
#[derive(Debug)]
pub(crate) struct Job<'a> {
    work: Work<'a>,
    sync_after: bool,
    retries: u8,
    state: State,
}

impl<'a> Job<'a> {
    fn new(work: Work<'a>, sync_after: bool) -> Self {
        Self {
            work,
            sync_after,
            retries: 0,
            state: State::Main,
        }
    }

    /// A request answered without I/O.
    pub(crate) fn done(status: u8) -> Self {
        Self {
            work: Work::None,
            sync_after: false,
            retries: 0,
            state: State::Done(status),
        }
    }

    /// Reads the file at `offset` into `iov` (not empty).
    pub(crate) fn read(iov: IoVecs<'a>, offset: u64) -> Self {
        Self::new(Work::Read { iov, offset }, false)
    }

    /// Writes `iov` (not empty) at `offset`; `sync_after`: make it stable
    /// before completing.
    pub(crate) fn write(iov: IoVecs<'a>, offset: u64, sync_after: bool) -> Self {
        Self::new(Work::Write { iov, offset }, sync_after)
    }

    /// `fdatasync`.
    pub(crate) fn flush() -> Self {
        Self::new(Work::Flush, false)
    }

    /// Discards (`discard`) or zeroes `list`.
    pub(crate) fn ranges(
        discard: bool,
        list: Vec<Range>,
        caps: &'a Caps,
        sync_after: bool,
    ) -> Self {
        let mut r = Ranges {
            discard,
            list,
            next: 0,
            method: Method::Write,
            done: 0,
            caps,
        };
        if r.seek() {
            Self::new(Work::Ranges(r), sync_after)
        } else if sync_after {
            Self {
                state: State::Sync,
                ..Self::new(Work::None, true)
            }
        } else {
            Self::done(VIRTIO_BLK_S_OK)
        }
    }

    /// The final status, once known.
    pub(crate) fn status(&self) -> Option<u8> {
        match self.state {
            State::Done(s) => Some(s),
            _ => None,
        }
    }

    /// Whether this is a read.
    pub(crate) fn is_read(&self) -> bool {
        matches!(self.work, Work::Read { .. })
    }

    /// The next operation to run, or `None` when the job is finished.
    pub(crate) fn op(&self) -> Option<IoOp<'_>> {
        match self.state {
            State::Done(_) => None,
            State::Sync => Some(IoOp::Fdatasync),
            State::Main => match &self.work {
                Work::None => None,
                Work::Read { iov, offset } => Some(IoOp::Readv {
                    iov,
                    offset: *offset,
                }),
                Work::Write { iov, offset } => Some(IoOp::Writev {
                    iov,
                    offset: *offset,
                }),
                Work::Flush => Some(IoOp::Fdatasync),
                Work::Ranges(r) => r.op(),
            },
        }
    }

    /// Feeds the result of the operation [`Self::op`] returned.
    pub(crate) fn complete(&mut self, res: io::Result<usize>) {
        if let Err(e) = &res {
            if matches!(
                e.kind(),
                io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock
            ) {
                self.retries += 1;
                if self.retries > MAX_RETRIES {
                    self.fail(e);
                }
                return;
            }
        }
        self.retries = 0;
        match self.state {
            State::Done(_) => {}
            State::Sync => match res {
                Ok(_) => self.state = State::Done(VIRTIO_BLK_S_OK),
                Err(e) => self.fail(&e),
            },
            State::Main => match (&mut self.work, res) {
                (Work::None, _) => self.state = State::Done(VIRTIO_BLK_S_IOERR),
                (Work::Read { .. } | Work::Write { .. }, Ok(0)) => {
                    let e = io::Error::new(io::ErrorKind::UnexpectedEof, "no progress");
                    self.fail(&e);
                }
                (Work::Read { iov, offset } | Work::Write { iov, offset }, Ok(n)) => {
                    iov.advance(n);
                    *offset += n as u64;
                    if iov.is_empty() {
                        self.main_done();
                    }
                }
                (Work::Flush, Ok(_)) => self.main_done(),
                (Work::Ranges(r), res) => match r.complete(res) {
                    Ok(true) => self.main_done(),
                    Ok(false) => {}
                    Err(e) => self.fail(&e),
                },
                (_, Err(e)) => self.fail(&e),
            },
        }
    }

    fn main_done(&mut self) {
        self.state = if self.sync_after {
            State::Sync
        } else {
            State::Done(VIRTIO_BLK_S_OK)
        };
    }

    fn fail(&mut self, e: &io::Error) {
        let what = match (&self.work, self.state) {
            (_, State::Sync) | (Work::Flush, _) => "fdatasync",
            (Work::Read { .. }, _) => "read",
            (Work::Write { .. }, _) => "write",
            (Work::Ranges(r), _) if r.discard => "discard",
            (Work::Ranges(_), _) => "write zeroes",
            (Work::None, _) => "request",
        };
        tracing::warn!(error = %e, "block image {what} failed; answering VIRTIO_BLK_S_IOERR");
        self.state = State::Done(VIRTIO_BLK_S_IOERR);
    }

    /// After a failed read: zero what was not read, so the whole data area
    /// the used length covers has been written.
    pub(crate) fn fill_unread(&self) {
        if let Work::Read { iov, .. } = &self.work {
            iov.fill_zero();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringwork_queue::mem::GuestMemory;
    use ringwork_queue::mmap::{GuestMemoryMmap, MmapRegion};

    fn errno(e: i32) -> io::Result<usize> {
        Err(io::Error::from_raw_os_error(e))
    }

    fn op_kind(job: &Job<'_>) -> Option<(i32, u64, u64)> {
        job.op().map(|op| match op {
            IoOp::Fallocate { mode, offset, len } => (mode, offset, len),
            IoOp::WriteZeroes { offset, len } => (-1, offset, len as u64),
            IoOp::Readv { offset, .. } => (-2, offset, 0),
            IoOp::Writev { offset, .. } => (-3, offset, 0),
            IoOp::Fdatasync => (-4, 0, 0),
        })
    }

    #[test]
    fn write_zeroes_falls_back_and_remembers() {
        let caps = Caps::new();
        let r = Range {
            offset: 4096,
            len: 4096,
            unmap: true,
        };
        let mut job = Job::ranges(false, vec![r], &caps, false);
        assert_eq!(op_kind(&job), Some((PUNCH_HOLE, 4096, 4096)));
        job.complete(errno(libc::EOPNOTSUPP));
        assert_eq!(op_kind(&job), Some((ZERO_RANGE, 4096, 4096)));
        job.complete(errno(libc::EINTR));
        assert_eq!(op_kind(&job), Some((ZERO_RANGE, 4096, 4096)));
        job.complete(errno(libc::ENOSYS));
        assert_eq!(op_kind(&job), Some((-1, 4096, 4096)));
        job.complete(Ok(1000));
        assert_eq!(op_kind(&job), Some((-1, 5096, 3096)));
        job.complete(Ok(3096));
        assert_eq!(job.status(), Some(VIRTIO_BLK_S_OK));
        // Learned: the next request writes zeroes straight away.
        let mut job = Job::ranges(false, vec![r, r], &caps, true);
        assert_eq!(op_kind(&job), Some((-1, 4096, 4096)));
        job.complete(Ok(4096));
        job.complete(Ok(4096));
        assert_eq!(op_kind(&job), Some((-4, 0, 0)), "write-through sync");
        job.complete(Ok(0));
        assert_eq!(job.status(), Some(VIRTIO_BLK_S_OK));
        // Other errors fail the request.
        let mut job = Job::ranges(false, vec![r], &caps, false);
        job.complete(errno(libc::EIO));
        assert_eq!(job.status(), Some(VIRTIO_BLK_S_IOERR));
        let mut job = Job::ranges(false, vec![r], &caps, false);
        job.complete(Ok(0));
        assert_eq!(job.status(), Some(VIRTIO_BLK_S_IOERR), "no progress");
    }

    #[test]
    fn discard_is_best_effort() {
        let caps = Caps::new();
        let r = |offset| Range {
            offset,
            len: 512,
            unmap: false,
        };
        let mut job = Job::ranges(true, vec![r(0), r(512), r(1024)], &caps, false);
        job.complete(errno(libc::EINVAL));
        assert_eq!(
            op_kind(&job),
            Some((PUNCH_HOLE, 512, 512)),
            "EINVAL: next range"
        );
        job.complete(errno(libc::EOPNOTSUPP));
        assert_eq!(
            job.status(),
            Some(VIRTIO_BLK_S_OK),
            "no punching: nothing to do"
        );
        assert!(Job::ranges(true, vec![r(0)], &caps, false).status() == Some(VIRTIO_BLK_S_OK));
        let fresh = Caps::new();
        let job = Job::ranges(true, vec![], &fresh, false);
        assert!(job.op().is_none());
        assert_eq!(job.status(), Some(VIRTIO_BLK_S_OK));
    }

    #[test]
    fn short_reads_continue_and_failures_zero_the_rest() {
        let mut mem = GuestMemoryMmap::new();
        mem.add_region(0, MmapRegion::anonymous(8192).unwrap())
            .unwrap();
        mem.slice(0, 8192).unwrap().fill(0, 8192, 0xaa).unwrap();
        let mut iov = IoVecs::new();
        iov.push(mem.slice(0, 100).unwrap());
        iov.push(mem.slice(4096, 924).unwrap());
        let mut job = Job::read(iov, 512);
        assert!(job.is_read());
        job.complete(Ok(150));
        assert_eq!(op_kind(&job), Some((-2, 662, 0)));
        for _ in 0..MAX_RETRIES {
            job.complete(errno(libc::EINTR));
            assert_eq!(job.status(), None);
        }
        job.complete(errno(libc::EAGAIN));
        assert_eq!(
            job.status(),
            Some(VIRTIO_BLK_S_IOERR),
            "retries are bounded"
        );
        job.fill_unread();
        let mut b = vec![0u8; 8192];
        mem.slice(0, 8192).unwrap().read_bytes(0, &mut b).unwrap();
        assert!(b[..4146].iter().all(|&x| x == 0xaa), "read part kept");
        assert!(b[4146..5020].iter().all(|&x| x == 0), "unread part zeroed");
        assert!(b[5020..].iter().all(|&x| x == 0xaa), "outside untouched");

        let mut iov = IoVecs::new();
        iov.push(mem.slice(0, 1024).unwrap());
        let mut job = Job::write(iov, 0, true);
        job.complete(Ok(1000));
        assert_eq!(op_kind(&job), Some((-3, 1000, 0)));
        job.complete(Ok(24));
        assert_eq!(op_kind(&job), Some((-4, 0, 0)));
        job.complete(errno(libc::EIO));
        assert_eq!(job.status(), Some(VIRTIO_BLK_S_IOERR), "failed sync");
        let mut iov = IoVecs::new();
        iov.push(mem.slice(0, 1024).unwrap());
        let mut job = Job::write(iov, 0, false);
        job.complete(Ok(0));
        assert_eq!(job.status(), Some(VIRTIO_BLK_S_IOERR), "no progress");
    }
}
