//! Shared pieces of the Linux-guest tests: starting `ringwork serve`,
//! images and patterns, and the guest-side shell snippets.
#![allow(dead_code, unused_imports)]

pub mod blk_pass;
pub mod net;

use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use ringwork_guest_tests::Backend;
pub use ringwork_guest_tests::{make_image, pattern};

/// Unwraps a harness result, panicking with the full error (captured guest
/// and backend output, install hints).
pub fn must<T>(result: ringwork_guest_tests::Result<T>, what: &str) -> T {
    result.unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// Starts `ringwork serve <args>` and waits for its socket.
pub fn serve(args: &[&str], socket: &Path) -> Backend {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ringwork"));
    cmd.arg("serve").args(args).arg("--socket-path").arg(socket);
    cmd.env(
        "RUST_LOG",
        std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
    );
    must(
        Backend::spawn(cmd, socket, Duration::from_secs(10)),
        "starting ringwork serve",
    )
}

/// Reads the whole image.
pub fn read_image(path: &Path) -> Vec<u8> {
    let mut v = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut v))
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    v
}

/// Guest shell: writes /pattern.bin (1 MiB) to every MiB of /dev/vda with
/// O_DIRECT, drops caches, and reads every MiB back for comparison. The
/// disk is `mib` MiB.
pub fn whole_disk_pattern(mib: u32) -> String {
    format!(
        r#"
check raw-write-all eval 'i=0; while [ $i -lt {mib} ]; do dd if=/pattern.bin of=/dev/vda bs=1M seek=$i count=1 oflag=direct 2>/dev/null || exit 1; i=$((i+1)); done; sync'
echo 3 > /proc/sys/vm/drop_caches
check raw-read-all eval 'i=0; while [ $i -lt {mib} ]; do dd if=/dev/vda of=/tmp/rb bs=1M skip=$i count=1 iflag=direct 2>/dev/null && cmp -s /pattern.bin /tmp/rb || exit 1; i=$((i+1)); done'
"#
    )
}

/// Guest shell: mkfs.ext4 with the host's e2fsprogs (copied into the
/// initramfs; full paths, since busybox prefers its own applets), files
/// written, synced, remounted read-only, checksums verified, fsck.
pub const EXT4_FILES: &str = r#"
check mkfs /sbin/mke2fs -t ext4 -F -q /dev/vda
mkdir -p /mnt/disk
check mount mount -t ext4 /dev/vda /mnt/disk
check files-write eval 'mkdir -p /mnt/disk/dir/sub &&
    dd if=/dev/urandom of=/mnt/disk/random.bin bs=64k count=64 2>/dev/null &&
    cp /pattern.bin /mnt/disk/dir/pattern.bin &&
    seq 1 20000 > /mnt/disk/dir/sub/numbers.txt &&
    echo hello > /mnt/disk/small.txt &&
    (cd /mnt/disk && md5sum random.bin dir/pattern.bin dir/sub/numbers.txt small.txt > /tmp/sums)'
check sync sync
check umount umount /mnt/disk
echo 3 > /proc/sys/vm/drop_caches
check remount mount -t ext4 -o ro /dev/vda /mnt/disk
check files-verify eval '(cd /mnt/disk && md5sum -c /tmp/sums)'
check umount-again umount /mnt/disk
check fsck /sbin/e2fsck -f -n /dev/vda
"#;

/// The checks [`EXT4_FILES`] reports.
pub const EXT4_CHECKS: &[&str] = &[
    "mkfs",
    "mount",
    "files-write",
    "sync",
    "umount",
    "remount",
    "files-verify",
    "umount-again",
    "fsck",
];
