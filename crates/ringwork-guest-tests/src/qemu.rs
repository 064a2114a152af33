//! QEMU (TCG) guests and the Debian cloud kernel they boot.

use std::cmp::Ordering;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use crate::modules::ModuleTree;
use crate::process::{run_guest, run_host, GuestRun};
use crate::{io_err, require_tool, Error, Result};

/// Environment variable naming a directory with an unpacked guest kernel.
const KERNEL_DIR_ENV: &str = "RINGWORK_GUEST_KERNEL_DIR";
/// Debian's metapackage whose dependency names the current cloud kernel.
const META_PACKAGE: &str = "linux-image-cloud-amd64";

/// An unpacked Debian `linux-image-*-cloud-amd64-unsigned` package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestKernel {
    /// Kernel release, e.g. `6.1.0-56-cloud-amd64`.
    pub version: String,
    /// The bootable image (`boot/vmlinuz-<version>`).
    pub vmlinuz: PathBuf,
    /// Its module tree (`lib/modules/<version>`).
    pub modules_dir: PathBuf,
}

impl GuestKernel {
    /// The kernel's module tree. The unpacked package has no `modules.dep`;
    /// dependencies are read from the modules themselves. virtio, virtio_ring,
    /// virtio_pci and virtio_blk are modules in the cloud kernel; ext4 is
    /// built in.
    pub fn modules(&self) -> Result<ModuleTree> {
        ModuleTree::open(&self.modules_dir)
    }

    /// Finds unpacked kernels in `dir`: `dir` itself or any of its
    /// subdirectories laid out like `dpkg-deb -x` output (`boot/vmlinuz-V`
    /// and `lib/modules/V/kernel`). Newest first.
    pub fn find_in(dir: &Path) -> Vec<GuestKernel> {
        let mut roots = vec![dir.to_path_buf()];
        if let Ok(entries) = std::fs::read_dir(dir) {
            roots.extend(entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
        }
        let mut found: Vec<GuestKernel> = roots
            .iter()
            .flat_map(|root| {
                let boot = std::fs::read_dir(root.join("boot"))
                    .into_iter()
                    .flatten()
                    .flatten();
                boot.filter_map(|entry| {
                    let name = entry.file_name().to_string_lossy().into_owned();
                    let version = name.strip_prefix("vmlinuz-")?.to_string();
                    let modules_dir = root.join("lib/modules").join(&version);
                    modules_dir.join("kernel").is_dir().then(|| GuestKernel {
                        vmlinuz: entry.path(),
                        modules_dir,
                        version,
                    })
                })
                .collect::<Vec<_>>()
            })
            .collect();
        found.sort_by(|a, b| compare_versions(&b.version, &a.version));
        found
    }
}

/// Compares version strings, digit runs numerically (`6.12` > `6.1.9`).
fn compare_versions(a: &str, b: &str) -> Ordering {
    fn chunks(s: &str) -> Vec<(bool, &str)> {
        let mut out = Vec::new();
        let mut start = 0;
        for (i, c) in s.char_indices().skip(1) {
            let prev = s[..i]
                .chars()
                .next_back()
                .is_some_and(|p| p.is_ascii_digit());
            if c.is_ascii_digit() != prev {
                out.push((prev, &s[start..i]));
                start = i;
            }
        }
        if !s.is_empty() {
            out.push((
                s[start..].starts_with(|c: char| c.is_ascii_digit()),
                &s[start..],
            ));
        }
        out
    }
    for (x, y) in chunks(a).into_iter().zip(chunks(b)) {
        let ord = match (x, y) {
            ((true, x), (true, y)) => x
                .parse::<u64>()
                .unwrap_or(0)
                .cmp(&y.parse::<u64>().unwrap_or(0)),
            ((_, x), (_, y)) => x.cmp(y),
        };
        if ord != Ordering::Equal {
            return ord;
        }
    }
    a.len().cmp(&b.len())
}

/// The directory where fetched kernels are cached:
/// `<workspace>/target/guest-kernel`.
pub fn guest_kernel_cache_dir() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let workspace = manifest.parent().and_then(Path::parent).unwrap_or(manifest);
    workspace.join("target/guest-kernel")
}

/// Locates (or fetches) the x86-64 Linux kernel for QEMU guests.
///
/// 1. If `RINGWORK_GUEST_KERNEL_DIR` is set, the newest kernel unpacked
///    there (see [`GuestKernel::find_in`]) is used, and its absence is an
///    error.
/// 2. Otherwise the newest kernel in [`guest_kernel_cache_dir`] is used.
/// 3. Otherwise the package `linux-image-<ver>-cloud-amd64-unsigned` (the
///    version `linux-image-cloud-amd64` depends on, else the newest one
///    `apt-cache` knows) is fetched with `apt-get download` and unpacked with
///    `dpkg-deb -x` into the cache. This needs `apt-get update` to have run.
pub fn guest_kernel() -> Result<GuestKernel> {
    if let Some(dir) = std::env::var_os(KERNEL_DIR_ENV) {
        let dir = PathBuf::from(dir);
        return GuestKernel::find_in(&dir)
            .into_iter()
            .next()
            .ok_or_else(|| {
                Error::Other(format!(
                    "{KERNEL_DIR_ENV}={} holds no unpacked kernel (expected boot/vmlinuz-VER and \
                 lib/modules/VER/ as `dpkg-deb -x linux-image-*.deb DIR` creates)",
                    dir.display()
                ))
            });
    }
    static FETCH: Mutex<()> = Mutex::new(());
    let _guard = FETCH.lock().unwrap_or_else(|e| e.into_inner());
    let cache = guest_kernel_cache_dir();
    if let Some(kernel) = GuestKernel::find_in(&cache).into_iter().next() {
        return Ok(kernel);
    }
    fetch_kernel(&cache).map_err(|e| {
        Error::Other(format!(
            "could not fetch a guest kernel for QEMU tests: {e}\n\
             FIX: run `apt-get update` (apt-cache must know {META_PACKAGE}) and retry, or fetch one by hand:\n  \
             mkdir -p {dir} && cd {dir} && apt-get download $(apt-cache depends {META_PACKAGE} | \
             sed -n 's/.*Depends: \\(linux-image-.*\\)/\\1-unsigned/p' | head -n1) && \
             dpkg-deb -x linux-image-*.deb kernel && rm linux-image-*.deb\n\
             or point {KERNEL_DIR_ENV} at a directory holding an unpacked linux-image package.",
            dir = cache.display()
        ))
    })
}

/// The package name of the cloud kernel to fetch.
fn kernel_package() -> Result<String> {
    let apt_cache = require_tool("apt-cache")?;
    if let Ok(out) = run_host(Command::new(&apt_cache).args(["depends", META_PACKAGE])) {
        let text = String::from_utf8_lossy(&out);
        let dep = text.lines().find_map(|l| {
            l.trim()
                .strip_prefix("Depends:")?
                .trim()
                .strip_prefix("linux-image-")
        });
        if let Some(dep) = dep {
            let name = format!("linux-image-{dep}");
            return Ok(if name.ends_with("-unsigned") {
                name
            } else {
                format!("{name}-unsigned")
            });
        }
    }
    let out = run_host(Command::new(&apt_cache).args([
        "search",
        "--names-only",
        "^linux-image-.*-cloud-amd64-unsigned$",
    ]))?;
    let text = String::from_utf8_lossy(&out);
    let mut names: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    names.sort_by(|a, b| compare_versions(b, a));
    names.first().map(|n| n.to_string()).ok_or_else(|| {
        Error::Other("apt-cache knows no linux-image-*-cloud-amd64-unsigned package".into())
    })
}

/// Downloads and unpacks the cloud kernel into `cache/<package>`.
fn fetch_kernel(cache: &Path) -> Result<GuestKernel> {
    let package = kernel_package()?;
    let apt_get = require_tool("apt-get")?;
    let dpkg_deb = require_tool("dpkg-deb")?;
    std::fs::create_dir_all(cache).map_err(io_err(format!("creating {}", cache.display())))?;
    let staging = cache.join(format!(".fetch-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging).map_err(io_err(format!("creating {}", staging.display())))?;
    eprintln!(
        "ringwork-guest-tests: fetching {package} into {}",
        cache.display()
    );
    let result = (|| {
        run_host(
            Command::new(&apt_get)
                .args(["download", "-q", &package])
                .current_dir(&staging),
        )?;
        let deb = std::fs::read_dir(&staging)
            .map_err(io_err(format!("reading {}", staging.display())))?
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|e| e == "deb"))
            .ok_or_else(|| Error::Other(format!("apt-get download {package} produced no .deb")))?;
        let unpacked = staging.join("root");
        run_host(Command::new(&dpkg_deb).arg("-x").arg(&deb).arg(&unpacked))?;
        let dest = cache.join(&package);
        if std::fs::rename(&unpacked, &dest).is_err() && !dest.is_dir() {
            return Err(Error::Other(format!(
                "could not move the unpacked kernel to {}",
                dest.display()
            )));
        }
        GuestKernel::find_in(&dest)
            .into_iter()
            .next()
            .ok_or_else(|| {
                Error::Other(format!(
                    "{package} unpacked to {} contains no kernel",
                    dest.display()
                ))
            })
    })();
    let _ = std::fs::remove_dir_all(&staging);
    result
}

/// How to boot a QEMU TCG guest (x86-64, q35, shared memfd guest memory as
/// vhost-user requires).
#[derive(Debug, Clone)]
pub struct QemuGuest {
    /// The QEMU binary; default `qemu-system-x86_64` (looked up on `PATH`).
    pub qemu: PathBuf,
    /// The kernel image (e.g. [`GuestKernel::vmlinuz`]).
    pub kernel: PathBuf,
    /// The initramfs (see [`Initramfs`](crate::Initramfs)).
    pub initrd: PathBuf,
    /// Guest memory, used for `-m` and the memfd backend's `size=` (default `512M`).
    pub mem: String,
    /// Number of vCPUs (default 2).
    pub smp: u32,
    /// Socket chardevs: (id, path) → `-chardev socket,id=ID,path=PATH`.
    pub chardevs: Vec<(String, PathBuf)>,
    /// `-device` values, e.g. `vhost-user-blk-pci,chardev=c0,num-queues=2`.
    pub devices: Vec<String>,
    /// Kernel arguments appended to `console=ttyS0 quiet panic=-1`.
    pub append: Vec<String>,
    /// More QEMU arguments, appended last.
    pub extra_args: Vec<String>,
    /// Time limit for the whole run (default 180 s); QEMU is killed after it.
    pub timeout: Duration,
}

impl QemuGuest {
    /// A guest booting `kernel` with `initrd` and the defaults described on
    /// each field.
    pub fn new(kernel: impl Into<PathBuf>, initrd: impl Into<PathBuf>) -> QemuGuest {
        QemuGuest {
            qemu: PathBuf::from("qemu-system-x86_64"),
            kernel: kernel.into(),
            initrd: initrd.into(),
            mem: "512M".into(),
            smp: 2,
            chardevs: Vec::new(),
            devices: Vec::new(),
            append: Vec::new(),
            extra_args: Vec::new(),
            timeout: Duration::from_secs(180),
        }
    }

    /// Adds a vhost-user device: chardev `id` on `socket` and
    /// `-device <device>,chardev=<id>` (e.g. `device` =
    /// `vhost-user-blk-pci,num-queues=2,packed=on`).
    pub fn vhost_user(
        &mut self,
        id: &str,
        socket: impl Into<PathBuf>,
        device: &str,
    ) -> &mut QemuGuest {
        self.chardevs.push((id.to_string(), socket.into()));
        self.devices.push(format!("{device},chardev={id}"));
        self
    }

    /// The QEMU arguments.
    pub fn args(&self) -> Vec<String> {
        let mut append = String::from("console=ttyS0 quiet panic=-1");
        for arg in &self.append {
            append.push(' ');
            append.push_str(arg);
        }
        let mut args: Vec<String> = [
            "-accel",
            "tcg",
            "-nographic",
            "-no-reboot",
            "-net",
            "none",
            "-machine",
            "q35,memory-backend=mem",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend([
            "-m".into(),
            self.mem.clone(),
            "-smp".into(),
            self.smp.to_string(),
            "-object".into(),
            format!("memory-backend-memfd,id=mem,size={},share=on", self.mem),
            "-kernel".into(),
            self.kernel.display().to_string(),
            "-initrd".into(),
            self.initrd.display().to_string(),
            "-append".into(),
            append,
        ]);
        for (id, path) in &self.chardevs {
            args.push("-chardev".into());
            args.push(format!("socket,id={id},path={}", path.display()));
        }
        for device in &self.devices {
            args.push("-device".into());
            args.push(device.clone());
        }
        args.extend(self.extra_args.iter().cloned());
        args
    }
}

/// Boots a QEMU TCG guest and waits for it to exit (`-no-reboot` turns the
/// guest's `poweroff -f` or a panic into an exit).
///
/// Returns the captured serial console whatever the exit status; fails with
/// [`Error::Timeout`] (carrying the console so far) after `guest.timeout`, and
/// with [`Error::MissingTool`] when QEMU is not installed.
pub fn boot_qemu(guest: &QemuGuest) -> Result<GuestRun> {
    let qemu = require_tool(&guest.qemu.to_string_lossy())?;
    for path in [&guest.kernel, &guest.initrd] {
        if !path.is_file() {
            return Err(Error::Other(format!(
                "QEMU guest file {} does not exist",
                path.display()
            )));
        }
    }
    let mut cmd = Command::new(qemu);
    cmd.args(guest.args());
    run_guest(cmd, "QEMU guest", guest.timeout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_numerically() {
        assert_eq!(
            compare_versions("6.12.107+deb12-cloud", "6.1.0-56-cloud"),
            Ordering::Greater
        );
        assert_eq!(
            compare_versions("6.1.0-9-cloud", "6.1.0-56-cloud"),
            Ordering::Less
        );
        assert_eq!(compare_versions("6.1.0-56", "6.1.0-56"), Ordering::Equal);
    }
}
