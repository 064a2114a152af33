//! User-Mode Linux guests.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::modules::ModuleTree;
use crate::process::{run_guest, run_host, GuestRun};
use crate::{require_tool, Error, Result};

/// Where Debian's `user-mode-linux` package puts the UML kernel's modules.
const UML_MODULES_BASE: &str = "/usr/lib/uml/modules";

/// How to boot a User-Mode Linux guest.
///
/// The command line is
/// `linux.uml mem=<mem> initrd=<initrd> con=null con0=fd:0,fd:1
/// virtio_uml.device=<socket>:<id>... <extra_args>...` with stdin from
/// /dev/null; the console (stdout) is captured.
#[derive(Debug, Clone)]
pub struct UmlGuest {
    /// The UML kernel binary; default `linux.uml` (looked up on `PATH`).
    pub kernel: PathBuf,
    /// The initramfs (see [`Initramfs`](crate::Initramfs)).
    pub initrd: PathBuf,
    /// Guest memory, a `mem=` value such as `256M` (the default).
    pub mem: String,
    /// vhost-user devices: (backend socket, virtio device id), e.g.
    /// `(sock, 2)` for a block device. Each becomes
    /// `virtio_uml.device=SOCKET:ID`; the backend must already listen.
    pub devices: Vec<(PathBuf, u32)>,
    /// More kernel arguments, appended last.
    pub extra_args: Vec<String>,
    /// Time limit for the whole run (default 60 s); the guest's process
    /// group is killed when it is exceeded.
    pub timeout: Duration,
    /// `TMPDIR` for the UML process, which creates its (unlinked) guest
    /// memory file there; the directory must allow `mmap` with `PROT_EXEC`
    /// (not `noexec`) and should be tmpfs (UML warns otherwise). `None` (the
    /// default) inherits the environment: UML then uses `$TMPDIR`, `$TMP` or
    /// `$TEMP`, else `/dev/shm` when it is tmpfs, else `/tmp`.
    pub tmpdir: Option<PathBuf>,
}

impl UmlGuest {
    /// A guest booting `initrd` with the defaults described on each field.
    pub fn new(initrd: impl Into<PathBuf>) -> UmlGuest {
        UmlGuest {
            kernel: PathBuf::from("linux.uml"),
            initrd: initrd.into(),
            mem: "256M".into(),
            devices: Vec::new(),
            extra_args: Vec::new(),
            timeout: Duration::from_secs(60),
            tmpdir: None,
        }
    }

    /// The kernel command line (everything after the program name).
    pub fn args(&self) -> Vec<String> {
        let mut args = vec![
            format!("mem={}", self.mem),
            format!("initrd={}", self.initrd.display()),
            "con=null".into(),
            "con0=fd:0,fd:1".into(),
        ];
        for (socket, id) in &self.devices {
            args.push(format!("virtio_uml.device={}:{id}", socket.display()));
        }
        args.extend(self.extra_args.iter().cloned());
        args
    }
}

/// Boots a UML guest and waits for it to power off.
///
/// Returns the captured console whatever the exit status (judge the run with
/// [`GuestRun::assert_checks`]); fails with [`Error::Timeout`] (carrying the
/// console so far) when the guest runs longer than `guest.timeout`, and with
/// [`Error::MissingTool`] when `linux.uml` is not installed.
pub fn boot_uml(guest: &UmlGuest) -> Result<GuestRun> {
    let kernel = require_tool(&guest.kernel.to_string_lossy())?;
    if !guest.initrd.is_file() {
        return Err(Error::Other(format!(
            "UML initrd {} does not exist",
            guest.initrd.display()
        )));
    }
    for (socket, _) in &guest.devices {
        if !socket.exists() {
            return Err(Error::Other(format!(
                "vhost-user socket {} does not exist (start the backend first)",
                socket.display()
            )));
        }
    }
    let mut cmd = Command::new(kernel);
    cmd.args(guest.args());
    if let Some(tmp) = &guest.tmpdir {
        cmd.env("TMPDIR", tmp);
    }
    run_guest(cmd, "UML guest", guest.timeout)
}

/// The module directory of the installed UML kernel:
/// `/usr/lib/uml/modules/<version>`, where the version is what
/// `linux.uml --version` prints.
pub fn uml_module_dir() -> Result<PathBuf> {
    let kernel = require_tool("linux.uml")?;
    let out = run_host(Command::new(kernel).arg("--version"))?;
    let version = String::from_utf8_lossy(&out).trim().to_string();
    let dir = Path::new(UML_MODULES_BASE).join(&version);
    if dir.join("modules.dep").is_file() {
        return Ok(dir);
    }
    let available: Vec<String> = std::fs::read_dir(UML_MODULES_BASE)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    Err(Error::Other(format!(
        "linux.uml is version {version:?} but {} has no modules.dep (available: {available:?}); \
         reinstall the user-mode-linux package",
        dir.display()
    )))
}

/// The UML kernel's [`ModuleTree`] (see [`uml_module_dir`]). In Debian's UML
/// build virtio, virtio_ring, virtio_uml, hostfs and ext4 are built in;
/// virtio_blk, virtio_net, virtio_console, ... are modules.
pub fn uml_modules() -> Result<ModuleTree> {
    ModuleTree::open(uml_module_dir()?)
}
