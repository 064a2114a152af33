//! Test support for booting real Linux guests against vhost-user backends.
//!
//! Two guest kinds are supported:
//!
//! * **User-Mode Linux** ([`boot_uml`]): `linux.uml` from the `user-mode-linux`
//!   package, whose `virtio_uml` driver is a vhost-user frontend. Boots in ~2 s.
//! * **QEMU TCG** ([`boot_qemu`]): `qemu-system-x86_64 -accel tcg` with a Debian
//!   cloud kernel ([`guest_kernel`], fetched with `apt-get download` on first
//!   use and cached under `<workspace>/target/guest-kernel/`).
//!
//! Guests run a busybox [`Initramfs`] whose `/init` loads kernel modules, runs
//! a test body (a shell script) and powers off. The body reports results as
//! console lines (`RINGWORK-CHECK <name> ok|FAIL ...`, see [`checks`]), which
//! [`assert_checks`] verifies, panicking with the whole console output when
//! anything is wrong. Backends are spawned with [`Backend`], scratch space comes
//! from [`TempDir`].
//!
//! Every missing host tool is an error naming the Debian package to install:
//! tests using this crate fail loudly instead of skipping.
//!
//! ```no_run
//! use ringwork_guest_tests::*;
//! use std::time::Duration;
//!
//! let tmp = TempDir::new("example").unwrap();
//! let sock = tmp.join("blk.sock");
//! let image = tmp.join("disk.img");
//! std::fs::File::create(&image).unwrap().set_len(64 << 20).unwrap();
//! let _backend = Backend::spawn(
//!     qsd_blk_command(&image, &sock, 1).unwrap(),
//!     &sock,
//!     Duration::from_secs(10),
//! )
//! .unwrap();
//! let initrd = tmp.join("initrd.gz");
//! Initramfs::new()
//!     .modules(uml_modules().unwrap().resolve(&["virtio_blk"]).unwrap())
//!     .body("wait_for /dev/vda 10\ncheck read dd if=/dev/vda of=/dev/null bs=4k count=16\n")
//!     .write(&initrd)
//!     .unwrap();
//! let mut guest = UmlGuest::new(&initrd);
//! guest.devices.push((sock.clone(), 2));
//! let run = boot_uml(&guest).unwrap();
//! run.assert_checks(&["read"]);
//! ```

#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod backend;
pub mod checks;
mod data;
mod elf;
mod initramfs;
mod modules;
mod process;
mod qemu;
mod uml;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use backend::{qsd_blk_command, Backend, TempDir};
pub use checks::{assert_checks, parse_checks, Check, CheckReport, CheckStatus};
pub use data::{make_image, pattern};
pub use initramfs::Initramfs;
pub use modules::{read_module, ModuleTree};
pub use process::GuestRun;
pub use qemu::{boot_qemu, guest_kernel, guest_kernel_cache_dir, GuestKernel, QemuGuest};
pub use uml::{boot_uml, uml_module_dir, uml_modules, UmlGuest};

/// Everything that can go wrong while preparing or running a guest.
#[derive(Debug)]
pub enum Error {
    /// A host program is not installed (or not on `PATH`).
    MissingTool {
        /// The program that was looked for.
        tool: String,
        /// What to do about it (usually the Debian package to install).
        hint: String,
    },
    /// An I/O operation failed.
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A guest or backend did not finish in time and was killed.
    Timeout {
        /// What timed out.
        what: String,
        /// The time limit.
        after: Duration,
        /// Everything it printed before it was killed.
        output: String,
    },
    /// A backend exited early or never created its socket.
    Backend {
        /// What went wrong.
        message: String,
        /// The backend's stdout and stderr so far.
        output: String,
    },
    /// A host command ran but failed.
    Command {
        /// The command line.
        command: String,
        /// What went wrong (exit status).
        message: String,
        /// Its captured stdout and stderr.
        output: String,
    },
    /// Anything else: a missing kernel, module, bad input, ...
    Other(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::MissingTool { tool, hint } => {
                write!(f, "required host tool `{tool}` not found: {hint}")
            }
            Error::Io { context, source } => write!(f, "{context}: {source}"),
            Error::Timeout {
                what,
                after,
                output,
            } => write!(
                f,
                "{what} timed out after {:.1} s and was killed; its output:\n{output}",
                after.as_secs_f64()
            ),
            Error::Backend { message, output } => {
                write!(f, "{message}; backend output:\n{output}")
            }
            Error::Command {
                command,
                message,
                output,
            } => {
                write!(f, "`{command}` {message}; output:\n{output}")
            }
            Error::Other(msg) => f.write_str(msg),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Result type of this crate.
pub type Result<T> = std::result::Result<T, Error>;

/// Attaches a description to an I/O error.
pub(crate) fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let context = context.into();
    move |source| Error::Io { context, source }
}

/// The Debian package that provides a host tool, for error messages.
fn package_of(tool: &str) -> &'static str {
    match tool {
        "linux.uml" => "user-mode-linux",
        "qemu-system-x86_64" => "qemu-system-x86",
        "qemu-storage-daemon" => "qemu-system-common",
        "busybox" => "busybox-static",
        "mke2fs" | "mkfs.ext4" => "e2fsprogs",
        "gzip" => "gzip",
        "xz" => "xz-utils",
        "zstd" => "zstd",
        "ldd" => "libc-bin",
        "apt-get" | "apt-cache" => "apt",
        "dpkg-deb" => "dpkg",
        "kill" => "procps",
        "ip" => "iproute2",
        _ => "the package that provides it",
    }
}

/// Finds `tool` on `PATH` (or checks it when it contains a `/`).
///
/// The error names the Debian package to install, e.g. `user-mode-linux` for
/// `linux.uml`; callers should propagate it so that a test fails instead of
/// silently skipping.
pub fn require_tool(tool: &str) -> Result<PathBuf> {
    let missing = || Error::MissingTool {
        tool: tool.to_string(),
        hint: format!(
            "install it with `apt-get install -y {}` (CI: add it to .ci/run)",
            package_of(tool.rsplit('/').next().unwrap_or(tool))
        ),
    };
    if tool.contains('/') {
        return if Path::new(tool).is_file() {
            Ok(PathBuf::from(tool))
        } else {
            Err(missing())
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let extra = ["/usr/sbin", "/sbin"].iter().map(PathBuf::from);
    std::env::split_paths(&path)
        .chain(extra)
        .map(|dir| dir.join(tool))
        .find(|candidate| candidate.is_file())
        .ok_or_else(missing)
}
