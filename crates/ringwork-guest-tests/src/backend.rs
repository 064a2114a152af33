//! Backend processes and scratch directories.

use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::process::{kill_group, snapshot, spawn_captured, OutputBuf};
use crate::{io_err, require_tool, Error, Result};

/// A fresh directory under the system temp dir, removed (recursively) on drop.
///
/// Paths are kept short (`/tmp/rw-<prefix>-<pid>-<n>`) because unix socket
/// paths are limited to 107 bytes. Set `RINGWORK_KEEP_TMP=1` to keep the
/// directories for debugging (their paths are printed on stderr).
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates a new unique directory whose name contains `prefix`.
    pub fn new(prefix: &str) -> Result<TempDir> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let base = std::env::temp_dir();
        for _ in 0..100 {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0);
            let path = base.join(format!(
                "rw-{prefix}-{}-{n}{:x}",
                std::process::id(),
                nanos & 0xfff
            ));
            match std::fs::create_dir(&path) {
                Ok(()) => return Ok(TempDir { path }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io_err(format!("creating {}", path.display()))(e)),
            }
        }
        Err(Error::Other(format!(
            "could not create a unique temp dir in {}",
            base.display()
        )))
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `self.path().join(name)`.
    pub fn join(&self, name: impl AsRef<Path>) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("RINGWORK_KEEP_TMP").is_some_and(|v| v == "1") {
            eprintln!("ringwork-guest-tests: keeping {}", self.path.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// A running vhost-user backend process (ours or a peer's).
///
/// It runs in its own process group; dropping the `Backend` kills the whole
/// group and reaps the process. Its stdout and stderr are captured and
/// available through [`Backend::output`].
#[derive(Debug)]
pub struct Backend {
    child: Child,
    socket: PathBuf,
    output: OutputBuf,
    _readers: Vec<JoinHandle<()>>,
    killed: bool,
}

impl Backend {
    /// Spawns `cmd` and waits up to `timeout` for the unix socket `socket` to
    /// appear.
    ///
    /// Fails with [`Error::Backend`] (including everything the backend
    /// printed) when the process exits first or the socket does not appear in
    /// time. The socket is only checked for existence, never connected to, so
    /// single-connection backends are not disturbed. A stale socket at that
    /// path is removed first.
    pub fn spawn(mut cmd: Command, socket: impl AsRef<Path>, timeout: Duration) -> Result<Backend> {
        let socket = socket.as_ref().to_path_buf();
        if socket.exists() {
            std::fs::remove_file(&socket)
                .map_err(io_err(format!("removing stale {}", socket.display())))?;
        }
        let what = format!("backend {:?}", cmd.get_program());
        let (child, output, readers) = spawn_captured(&mut cmd, &what)?;
        let mut backend = Backend {
            child,
            socket,
            output,
            _readers: readers,
            killed: false,
        };
        let start = Instant::now();
        loop {
            let is_socket =
                std::fs::symlink_metadata(&backend.socket).is_ok_and(|m| m.file_type().is_socket());
            if is_socket {
                return Ok(backend);
            }
            if let Some(status) = backend
                .child
                .try_wait()
                .map_err(io_err("waiting for backend"))?
            {
                std::thread::sleep(Duration::from_millis(50)); // let the readers drain
                return Err(Error::Backend {
                    message: format!(
                        "{what} exited ({status}) before creating {}",
                        backend.socket.display()
                    ),
                    output: backend.output(),
                });
            }
            if start.elapsed() >= timeout {
                let output = backend.output();
                return Err(Error::Backend {
                    message: format!(
                        "{what} did not create socket {} within {:.1} s",
                        backend.socket.display(),
                        timeout.as_secs_f64()
                    ),
                    output,
                });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The socket path the backend listens on.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The process id (also its process group id).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the backend printed so far (stdout and stderr interleaved).
    pub fn output(&self) -> String {
        snapshot(&self.output)
    }

    /// Fails with [`Error::Backend`] if the backend has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        match self
            .child
            .try_wait()
            .map_err(io_err("waiting for backend"))?
        {
            None => Ok(()),
            Some(status) => Err(Error::Backend {
                message: format!("backend exited unexpectedly ({status})"),
                output: self.output(),
            }),
        }
    }

    /// Kills the backend's process group, reaps it and returns its output.
    pub fn stop(mut self) -> String {
        self.kill();
        std::thread::sleep(Duration::from_millis(20));
        self.output()
    }

    fn kill(&mut self) {
        if self.killed {
            return;
        }
        self.killed = true;
        if let Ok(None) = self.child.try_wait() {
            kill_group(self.child.id());
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A `qemu-storage-daemon` command exporting the raw file `image` as a
/// vhost-user-blk device on unix socket `socket` (writable, `num_queues`
/// queues). Fails when qemu-storage-daemon is not installed.
pub fn qsd_blk_command(image: &Path, socket: &Path, num_queues: u32) -> Result<Command> {
    let qsd = require_tool("qemu-storage-daemon")?;
    let mut cmd = Command::new(qsd);
    cmd.arg("--blockdev")
        .arg(format!("driver=file,node-name=f0,filename={}", image.display()))
        .arg("--export")
        .arg(format!(
            "type=vhost-user-blk,id=e0,node-name=f0,addr.type=unix,addr.path={},writable=on,num-queues={num_queues}",
            socket.display()
        ));
    Ok(cmd)
}
