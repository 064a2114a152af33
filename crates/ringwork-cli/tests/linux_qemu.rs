//! Linux as the judge, under QEMU (TCG) with a Debian cloud kernel: QEMU's
//! vhost-user-blk-pci and vhost-user-rng-pci frontends connect to
//! `ringwork serve`, and the guest kernel's virtio_pci, virtio_blk and
//! virtio_rng drivers use the devices.
//!
//! Each test fails loudly (guest console, backend log, install hints)
//! when a check fails or a tool is missing; none skips.

mod common;

use common::*;
use ringwork_guest_tests::{boot_qemu, guest_kernel, Initramfs, QemuGuest, TempDir};

const DISK_MIB: u32 = 16;

/// Boots a QEMU guest with one vhost-user device and `body`.
fn run_guest(
    tmp: &TempDir,
    socket: &std::path::Path,
    device: &str,
    modules: &[&str],
    data: &[u8],
    body: &str,
) -> ringwork_guest_tests::GuestRun {
    let kernel = must(guest_kernel(), "locating the guest kernel");
    let tree = must(kernel.modules(), "guest kernel module tree");
    let mods = must(tree.resolve(modules), "resolving guest modules");
    let initrd = tmp.join("initrd.gz");
    must(
        Initramfs::new()
            .modules(mods)
            .bytes("/pattern.bin", data.to_vec(), 0o644)
            .body(body)
            .write(&initrd),
        "building the initramfs",
    );
    let mut guest = QemuGuest::new(&kernel.vmlinuz, &initrd);
    guest.vhost_user("c0", socket, device);
    must(boot_qemu(&guest), "booting the QEMU guest")
}

/// vhost-user-blk-pci with 2 queues, `packed`: the guest sees both queues
/// and the ring format asked for, and a raw pattern written over the whole
/// disk reads back (and is in the image on the host).
fn qemu_block(packed: bool) {
    let tmp = must(TempDir::new("qemu-blk"), "temp dir");
    let image = tmp.join("disk.img");
    let socket = tmp.join("blk.sock");
    make_image(&image, u64::from(DISK_MIB) << 20);
    let mut backend = serve(
        &["blk", "--image", image.to_str().unwrap(), "--queues", "2"],
        &socket,
    );
    let data = pattern(0x5eed_0303 + u64::from(packed), 1 << 20);
    let body = format!(
        r#"
wait_for /dev/vda 30
check vda test -b /dev/vda
check capacity test "$(cat /sys/block/vda/size)" = {sectors}
check queues test "$(ls /sys/block/vda/mq | wc -l)" = 2
check packed-ring test "$(cut -c35 /sys/block/vda/device/features)" = {packed_bit}
{raw}
check flush eval 'dd if=/pattern.bin of=/dev/vda bs=1M count=1 conv=fsync 2>/dev/null'
"#,
        sectors = u64::from(DISK_MIB) * 2048,
        packed_bit = u8::from(packed),
        raw = whole_disk_pattern(DISK_MIB),
    );
    let device = format!(
        "vhost-user-blk-pci,num-queues=2,packed={}",
        if packed { "on" } else { "off" }
    );
    let run = run_guest(
        &tmp,
        &socket,
        &device,
        &["virtio_pci", "virtio_blk"],
        &data,
        &body,
    );
    eprintln!("QEMU blk guest: {:.2} s", run.elapsed.as_secs_f64());
    run.assert_checks(&[
        "insmod-virtio_blk",
        "vda",
        "capacity",
        "queues",
        "packed-ring",
        "raw-write-all",
        "raw-read-all",
        "flush",
    ]);
    must(backend.check_alive(), "ringwork serve blk after the guest");
    let img = read_image(&image);
    for (i, chunk) in img.chunks(1 << 20).enumerate() {
        assert!(chunk == data.as_slice(), "MiB {i} of the image differs");
    }
    let log = backend.stop();
    assert!(!log.contains("ERROR"), "backend logged errors:\n{log}");
}

#[test]
fn qemu_block_packed_ring_two_queues() {
    qemu_block(true);
}

#[test]
fn qemu_block_split_ring_two_queues() {
    qemu_block(false);
}

/// VIRTIO 1.4 §5.4 through Linux's virtio_rng: the hw_random core picks
/// the virtio device and /dev/hwrng yields bytes (not all zero).
#[test]
fn qemu_entropy_feeds_dev_hwrng() {
    let tmp = must(TempDir::new("qemu-rng"), "temp dir");
    let socket = tmp.join("rng.sock");
    let mut backend = serve(&["rng"], &socket);
    let body = r#"
wait_for /sys/class/misc/hw_random/rng_current 30
check rng-current eval 'grep -q virtio_rng /sys/class/misc/hw_random/rng_current'
check hwrng-read eval 'dd if=/dev/hwrng of=/tmp/r bs=4096 count=4 2>/dev/null && test "$(wc -c < /tmp/r)" = 16384'
check hwrng-nonzero eval 'test -n "$(tr -d "\000" < /tmp/r | head -c 64)"'
info rng "$(cat /sys/class/misc/hw_random/rng_current)"
"#;
    let run = run_guest(
        &tmp,
        &socket,
        "vhost-user-rng-pci",
        &["virtio_pci", "virtio_rng"],
        &[],
        body,
    );
    run.assert_checks(&[
        "insmod-virtio_rng",
        "rng-current",
        "hwrng-read",
        "hwrng-nonzero",
    ]);
    must(backend.check_alive(), "ringwork serve rng after the guest");
}
