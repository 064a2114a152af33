//! Proves the guest harness against someone else's vhost-user-blk backend,
//! qemu-storage-daemon: a UML guest formats, fills and re-reads an ext4 file
//! system on it, and a QEMU TCG guest (2 queues, packed ring requested) does
//! raw pattern I/O. Both fail loudly when a host tool is missing.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::time::Duration;

use ringwork_guest_tests::{
    boot_qemu, boot_uml, guest_kernel, make_image, pattern, qsd_blk_command, uml_modules, Backend,
    Initramfs, QemuGuest, TempDir, UmlGuest,
};

/// Size of the disk image exported by qemu-storage-daemon.
const DISK_SIZE: u64 = 64 << 20;
/// The raw pattern region: 1 MiB at 48 MiB (16 blocks of 64 KiB at block 768).
const PATTERN_LEN: usize = 1 << 20;
const PATTERN_OFFSET: u64 = 48 << 20;

/// Unwraps a harness result, panicking with the full error (which includes
/// captured guest/backend output and install hints).
fn must<T>(result: ringwork_guest_tests::Result<T>, what: &str) -> T {
    result.unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// Checks on the host that the guest's raw write reached the backend's file.
fn assert_pattern_in_image(image: &Path, expected: &[u8]) {
    let mut file = File::open(image).expect("open image");
    file.seek(SeekFrom::Start(PATTERN_OFFSET))
        .expect("seek image");
    let mut found = vec![0u8; expected.len()];
    file.read_exact(&mut found).expect("read image");
    let first_diff = found.iter().zip(expected).position(|(a, b)| a != b);
    assert!(
        first_diff.is_none(),
        "image differs from the guest's pattern at byte {first_diff:?} of the region"
    );
}

/// Shell lines that write /pattern.bin to the disk at PATTERN_OFFSET with
/// O_DIRECT and read it back (after dropping caches) for comparison.
const RAW_PATTERN_CHECKS: &str = r#"
check raw-write dd if=/pattern.bin of=/dev/vda bs=64k seek=768 conv=fsync oflag=direct
echo 3 > /proc/sys/vm/drop_caches
check raw-read eval 'dd if=/dev/vda of=/tmp/readback.bin bs=64k skip=768 count=16 iflag=direct && cmp /pattern.bin /tmp/readback.bin'
"#;

/// UML: mkfs.ext4 (the host's e2fsprogs copied into the initramfs with its
/// libraries, called by full path because busybox's shell prefers its own
/// limited `mke2fs` applet), write files, remount, verify md5sums, fsck, raw
/// pattern I/O.
const UML_BODY: &str = r#"
wait_for /dev/vda 10
check vda test -b /dev/vda
info vda-sectors "$(cat /sys/block/vda/size)"
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

#[test]
fn uml_guest_makes_ext4_on_qemu_storage_daemon() {
    let tmp = must(TempDir::new("uml-qsd"), "temp dir");
    let image = tmp.join("disk.img");
    let socket = tmp.join("qsd.sock");
    make_image(&image, DISK_SIZE);
    let backend = must(
        Backend::spawn(
            must(qsd_blk_command(&image, &socket, 1), "qsd command"),
            &socket,
            Duration::from_secs(10),
        ),
        "starting qemu-storage-daemon",
    );

    let data = pattern(0x5eed_0001, PATTERN_LEN);
    let modules = must(
        must(uml_modules(), "UML module tree").resolve(&["virtio_blk"]),
        "resolving virtio_blk",
    );
    let initrd = tmp.join("initrd.gz");
    must(
        Initramfs::new()
            .modules(modules)
            .host_binary("/sbin/mke2fs")
            .host_binary("/sbin/e2fsck")
            .file("/etc/mke2fs.conf", "/etc/mke2fs.conf")
            .bytes("/pattern.bin", data.clone(), 0o644)
            .body(format!("{UML_BODY}{RAW_PATTERN_CHECKS}"))
            .write(&initrd),
        "building the initramfs",
    );

    let mut guest = UmlGuest::new(&initrd);
    guest.devices.push((socket.clone(), 2));
    let run = must(boot_uml(&guest), "booting the UML guest");
    eprintln!("UML guest + test body: {:.2} s", run.elapsed.as_secs_f64());
    run.assert_checks(&[
        "insmod-virtio_blk",
        "vda",
        "mkfs",
        "mount",
        "files-write",
        "sync",
        "umount",
        "remount",
        "files-verify",
        "umount-again",
        "fsck",
        "raw-write",
        "raw-read",
    ]);
    let mut backend = backend;
    must(backend.check_alive(), "qemu-storage-daemon after the guest");
    assert_pattern_in_image(&image, &data);
}

/// QEMU: the device's queue count and negotiated features, then raw I/O.
const QEMU_BODY: &str = r#"
wait_for /dev/vda 30
check vda test -b /dev/vda
info queues "$(ls /sys/block/vda/mq | wc -l)"
info features "$(cat /sys/block/vda/device/features)"
info packed-ring "$(cut -c35 /sys/block/vda/device/features)"
"#;

#[test]
fn qemu_guest_does_raw_io_on_qemu_storage_daemon() {
    let tmp = must(TempDir::new("qemu-qsd"), "temp dir");
    let image = tmp.join("disk.img");
    let socket = tmp.join("qsd.sock");
    make_image(&image, DISK_SIZE);
    let backend = must(
        Backend::spawn(
            must(qsd_blk_command(&image, &socket, 2), "qsd command"),
            &socket,
            Duration::from_secs(10),
        ),
        "starting qemu-storage-daemon",
    );

    let kernel = must(guest_kernel(), "locating the guest kernel");
    let tree = must(kernel.modules(), "guest kernel module tree");
    let modules = must(
        tree.resolve(&["virtio_pci", "virtio_blk"]),
        "resolving virtio_pci, virtio_blk",
    );
    let data = pattern(0x5eed_0002, PATTERN_LEN);
    let initrd = tmp.join("initrd.gz");
    must(
        Initramfs::new()
            .modules(modules)
            .bytes("/pattern.bin", data.clone(), 0o644)
            .body(format!("{QEMU_BODY}{RAW_PATTERN_CHECKS}"))
            .write(&initrd),
        "building the initramfs",
    );

    let mut guest = QemuGuest::new(&kernel.vmlinuz, &initrd);
    guest.vhost_user("c0", &socket, "vhost-user-blk-pci,num-queues=2,packed=on");
    let run = must(boot_qemu(&guest), "booting the QEMU guest");
    eprintln!("QEMU guest + test body: {:.2} s", run.elapsed.as_secs_f64());
    let report = run.assert_checks(&[
        "insmod-virtio_pci",
        "insmod-virtio_blk",
        "vda",
        "raw-write",
        "raw-read",
    ]);
    eprintln!(
        "negotiated features: {:?}, packed ring: {:?}",
        report.info("features"),
        report.info("packed-ring")
    );
    assert_eq!(
        report.info("queues"),
        Some("2"),
        "blk-mq queue count\n{}",
        run.console
    );
    let mut backend = backend;
    must(backend.check_alive(), "qemu-storage-daemon after the guest");
    assert_pattern_in_image(&image, &data);
}
