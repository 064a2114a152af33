//! Linux as the judge of the SCSI host device under QEMU (TCG) with a
//! Debian cloud kernel: QEMU's vhost-user-scsi-pci frontend connects to
//! `ringwork serve scsi`, and the guest's virtio_pci, virtio_scsi and sd
//! drivers use two LUNs on two targets over two request queues, in the
//! packed ring format.
//!
//! Fails loudly (guest console, backend log, install hints) when a check
//! fails or a tool is missing; never skips.

mod common;

use common::*;
use ringwork_guest_tests::{boot_qemu, guest_kernel, Initramfs, QemuGuest, TempDir};

const DISK_MIB: u64 = 16;

/// VIRTIO 1.4 §5.6 through QEMU's vhost-user-scsi-pci: both disks are
/// found (target 0 LUN 0 read-write, target 1 LUN 3 read-only), a raw
/// pattern written over the first disk reads back and is in the image,
/// the read-only disk refuses writes and reads its contents.
#[test]
fn qemu_scsi_two_targets_packed_two_queues() {
    let tmp = must(TempDir::new("qemu-scsi"), "temp dir");
    let image = tmp.join("disk.img");
    let image_ro = tmp.join("ro.img");
    let socket = tmp.join("scsi.sock");
    make_image(&image, DISK_MIB << 20);
    let data = pattern(0x5c51_0303, 1 << 20);
    std::fs::write(&image_ro, data.repeat(4)).unwrap();
    let mut backend = serve(
        &[
            "scsi",
            "--lun",
            image.to_str().unwrap(),
            "--lun",
            &format!("{},target=1,lun=3,readonly", image_ro.display()),
            "--queues",
            "2",
        ],
        &socket,
    );
    let kernel = must(guest_kernel(), "locating the guest kernel");
    let tree = must(kernel.modules(), "guest kernel module tree");
    let mods = must(
        tree.resolve(&["virtio_pci", "virtio_scsi", "sd_mod"]),
        "resolving guest modules",
    );
    // The disks are found by address (sysfs), not by probe order.
    let body = format!(
        r#"
wait_for /sys/bus/scsi/devices/0:0:0:0/block 30
wait_for /sys/bus/scsi/devices/0:0:1:3/block 30
rw=$(ls /sys/bus/scsi/devices/0:0:0:0/block)
ro=$(ls /sys/bus/scsi/devices/0:0:1:3/block)
wait_for /dev/$rw 10
wait_for /dev/$ro 10
check rw-capacity test "$(cat /sys/block/$rw/size)" = {sectors}
check rw-writable test "$(cat /sys/block/$rw/ro)" = 0
check ro-capacity test "$(cat /sys/block/$ro/size)" = 8192
check ro-readonly test "$(cat /sys/block/$ro/ro)" = 1
check two-queues test "$(ls /sys/block/$rw/mq | wc -l)" = 2
check packed-ring test "$(cut -c35 /sys/bus/virtio/devices/virtio0/features)" = 1
check raw-write-all eval 'i=0; while [ $i -lt {mib} ]; do dd if=/pattern.bin of=/dev/'$rw' bs=1M seek=$i count=1 oflag=direct 2>/dev/null || exit 1; i=$((i+1)); done; sync'
echo 3 > /proc/sys/vm/drop_caches
check raw-read-all eval 'i=0; while [ $i -lt {mib} ]; do dd if=/dev/'$rw' of=/tmp/rb bs=1M skip=$i count=1 iflag=direct 2>/dev/null && cmp -s /pattern.bin /tmp/rb || exit 1; i=$((i+1)); done'
check ro-read eval 'dd if=/dev/'$ro' of=/tmp/rb bs=1M skip=2 count=1 iflag=direct 2>/dev/null && cmp -s /pattern.bin /tmp/rb'
check ro-write-refused eval '! dd if=/dev/zero of=/dev/'$ro' bs=4k count=1 oflag=direct 2>/dev/null'
"#,
        sectors = DISK_MIB * 2048,
        mib = DISK_MIB,
    );
    let initrd = tmp.join("initrd.gz");
    must(
        Initramfs::new()
            .modules(mods)
            .bytes("/pattern.bin", data.clone(), 0o644)
            .body(body)
            .write(&initrd),
        "building the initramfs",
    );
    let mut guest = QemuGuest::new(&kernel.vmlinuz, &initrd);
    guest.vhost_user("c0", &socket, "vhost-user-scsi-pci,num_queues=2,packed=on");
    let run = must(boot_qemu(&guest), "booting the QEMU guest");
    eprintln!("QEMU scsi guest: {:.2} s", run.elapsed.as_secs_f64());
    run.assert_checks(&[
        "insmod-virtio_scsi",
        "insmod-sd_mod",
        "rw-capacity",
        "rw-writable",
        "ro-capacity",
        "ro-readonly",
        "two-queues",
        "packed-ring",
        "raw-write-all",
        "raw-read-all",
        "ro-read",
        "ro-write-refused",
    ]);
    must(backend.check_alive(), "ringwork serve scsi after the guest");
    let img = read_image(&image);
    for (i, chunk) in img.chunks(1 << 20).enumerate() {
        assert!(chunk == data.as_slice(), "MiB {i} of the image differs");
    }
    assert!(
        read_image(&image_ro) == data.repeat(4),
        "the read-only image changed"
    );
    let log = backend.stop();
    assert!(!log.contains("ERROR"), "backend logged errors:\n{log}");
}
