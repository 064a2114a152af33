//! Linux as the judge of the SCSI host device, under User-Mode Linux:
//! the kernel's virtio_scsi, sd and sg drivers (through virtio_uml, a
//! vhost-user frontend) and the host's sg3-utils use a device served by
//! `ringwork serve scsi`. Checks: INQUIRY and READ CAPACITY through
//! sg_inq/sg_readcap, VPD pages through sg_vpd, ext4 on the disk, UNMAP
//! through sg_unmap (zeroes in the host image), and hot-plug: the test
//! adds a LUN through the control socket while the guest waits for
//! /dev/sdb, then removes it while the guest waits for it to go.
//!
//! Fails loudly (with the guest console and the backend log) when a check
//! fails or a host tool is missing; never skips.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::FileExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use ringwork_guest_tests::{boot_uml, uml_modules, Initramfs, TempDir, UmlGuest};

const DISK_MIB: u64 = 32;
const DISK2_MIB: u64 = 8;
/// Where the guest writes its hand-shake markers on /dev/sda (the last
/// block, after the ext4 checks are done with the disk).
const MARK_LBA: u64 = DISK_MIB * 2048 - 1;

/// Waits until the image holds `marker` at block `lba`.
fn wait_marker(image: &Path, lba: u64, marker: &[u8], limit: Duration) -> bool {
    let start = Instant::now();
    let mut buf = vec![0u8; marker.len()];
    while start.elapsed() < limit {
        if let Ok(f) = std::fs::File::open(image) {
            if f.read_exact_at(&mut buf, lba * 512).is_ok() && buf == marker {
                return true;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// Sends one control command; returns the reply line.
fn control(sock: &Path, line: &str) -> String {
    let mut s = UnixStream::connect(sock)
        .unwrap_or_else(|e| panic!("connecting to the control socket {}: {e}", sock.display()));
    s.write_all(format!("{line}\n").as_bytes()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut reply = String::new();
    BufReader::new(s).read_line(&mut reply).unwrap();
    reply.trim().to_owned()
}

fn initramfs(tmp: &TempDir, data: &[u8], body: &str) -> PathBuf {
    let modules = must(
        must(uml_modules(), "UML module tree").resolve(&["virtio_scsi", "sd_mod", "sg"]),
        "resolving virtio_scsi, sd_mod and sg",
    );
    let initrd = tmp.join("initrd.gz");
    must(
        Initramfs::new()
            .modules(modules)
            .host_binary("/usr/bin/sg_inq")
            .host_binary("/usr/bin/sg_readcap")
            .host_binary("/usr/bin/sg_vpd")
            .host_binary("/usr/bin/sg_unmap")
            .host_binary("/sbin/mke2fs")
            .host_binary("/sbin/e2fsck")
            .file("/etc/mke2fs.conf", "/etc/mke2fs.conf")
            .bytes("/pattern.bin", data.to_vec(), 0o644)
            .body(body)
            .write(&initrd),
        "building the initramfs (sg3-utils: apt-get install sg3-utils)",
    );
    initrd
}

/// VIRTIO 1.4 §5.6 through Linux's virtio_scsi + sd + sg and sg3-utils.
#[test]
fn uml_scsi_sg3_utils_ext4_unmap_and_hotplug() {
    let tmp = must(TempDir::new("uml-scsi"), "temp dir");
    let image = tmp.join("disk.img");
    let image2 = tmp.join("disk2.img");
    let socket = tmp.join("scsi.sock");
    let ctl = tmp.join("scsi-control.sock");
    make_image(&image, DISK_MIB << 20);
    let data = pattern(0x5c51_0001, 1 << 20);
    std::fs::write(&image2, data.repeat(DISK2_MIB as usize)).unwrap();
    let mut backend = serve(
        &[
            "scsi",
            "--lun",
            &format!("{},serial=RWDISK0", image.display()),
            "--queues",
            "2",
            "--control",
            ctl.to_str().unwrap(),
        ],
        &socket,
    );
    let body = format!(
        r#"
wait_for /dev/sda 20
check sda test -b /dev/sda
check capacity test "$(cat /sys/block/sda/size)" = {sectors}
check vendor eval 'grep -q RINGWORK /sys/block/sda/device/vendor'
check discard-offered test "$(cat /sys/block/sda/queue/discard_max_bytes)" -gt 0
wait_for /dev/sg0 10
check sg_inq eval '/usr/bin/sg_inq /dev/sg0 > /tmp/o; cat /tmp/o; grep -q "Vendor identification: RINGWORK" /tmp/o && grep -q "Product identification: VIRTIO SCSI DISK" /tmp/o'
check sg_readcap eval '/usr/bin/sg_readcap --long /dev/sg0 > /tmp/o; cat /tmp/o; grep -q "Last LBA={last}" /tmp/o && grep -q "Logical block length=512" /tmp/o'
check vpd-supported eval '/usr/bin/sg_vpd --page=0 /dev/sg0 > /tmp/o; cat /tmp/o; grep -qi "block limits" /tmp/o && grep -qi "logical block provisioning" /tmp/o'
check vpd-serial eval '/usr/bin/sg_vpd --page=sn /dev/sg0 > /tmp/o; cat /tmp/o; grep -q RWDISK0 /tmp/o'
check vpd-ident eval '/usr/bin/sg_vpd --page=di /dev/sg0 > /tmp/o; cat /tmp/o; grep -q RINGWORK /tmp/o'
check vpd-limits eval '/usr/bin/sg_vpd --page=bl /dev/sg0 > /tmp/o; cat /tmp/o; grep -q "Maximum unmap LBA count: 2097152" /tmp/o && grep -q "Maximum unmap block descriptor count: 64" /tmp/o'
check vpd-provisioning eval '/usr/bin/sg_vpd --page=lbpv /dev/sg0 > /tmp/o; cat /tmp/o; grep -q "Unmap command supported (LBPU): 1" /tmp/o'
check vpd-characteristics eval '/usr/bin/sg_vpd --page=bdc /dev/sg0 > /tmp/o; cat /tmp/o; grep -qi "non-rotating" /tmp/o'
check raw eval 'dd if=/pattern.bin of=/dev/sda bs=1M seek=3 count=1 oflag=direct 2>/dev/null && echo 3 > /proc/sys/vm/drop_caches && dd if=/dev/sda of=/tmp/rb bs=1M skip=3 count=1 iflag=direct 2>/dev/null && cmp -s /pattern.bin /tmp/rb'
{ext4}
check ready-for-add eval 'echo RINGWORK-ADD-LUN | dd of=/dev/sda bs=512 seek={mark} count=1 conv=sync oflag=direct 2>/dev/null'
check hotplug-sdb wait_for /dev/sdb 60
check sdb-is-lun-1 test -e /sys/bus/scsi/devices/0:0:0:1/block/sdb
check sdb-capacity test "$(cat /sys/block/sdb/size)" = {sectors2}
wait_for /dev/sg1 10
check sdb-readcap eval '/usr/bin/sg_readcap --long /dev/sg1 > /tmp/o; cat /tmp/o; grep -q "Last LBA={last2}" /tmp/o'
check sdb-read eval 'dd if=/dev/sdb of=/tmp/rb bs=1M skip=5 count=1 iflag=direct 2>/dev/null && cmp -s /pattern.bin /tmp/rb'
check sg_unmap /usr/bin/sg_unmap --force --lba=2048 --num=4096 /dev/sg1
echo 3 > /proc/sys/vm/drop_caches
check unmap-zeroes eval 'dd if=/dev/sdb of=/tmp/z bs=1M skip=1 count=2 iflag=direct 2>/dev/null && dd if=/dev/zero of=/tmp/zz bs=1M count=2 2>/dev/null && cmp -s /tmp/z /tmp/zz'
check after-unmap eval 'dd if=/dev/sdb of=/tmp/rb bs=1M skip=3 count=1 iflag=direct 2>/dev/null && cmp -s /pattern.bin /tmp/rb'
check ready-for-remove eval 'echo RINGWORK-DEL-LUN | dd of=/dev/sda bs=512 seek={mark} count=1 conv=sync oflag=direct 2>/dev/null'
check hot-unplug-sdb eval 'i=0; while [ -e /sys/block/sdb ]; do i=$((i+1)); [ $i -gt 600 ] && exit 1; sleep 0.1; done'
check sda-still-works eval 'dd if=/dev/sda of=/dev/null bs=1M count=1 iflag=direct 2>/dev/null'
"#,
        sectors = DISK_MIB * 2048,
        last = DISK_MIB * 2048 - 1,
        sectors2 = DISK2_MIB * 2048,
        last2 = DISK2_MIB * 2048 - 1,
        mark = MARK_LBA,
        ext4 = EXT4_FILES.replace("/dev/vda", "/dev/sda"),
    );
    let initrd = initramfs(&tmp, &data, &body);

    // The host side of the hot-plug hand-shake.
    let (img, img2, ctl2) = (image.clone(), image2.clone(), ctl.clone());
    let host = std::thread::spawn(move || {
        let mut log = Vec::new();
        if !wait_marker(
            &img,
            MARK_LBA,
            b"RINGWORK-ADD-LUN",
            Duration::from_secs(150),
        ) {
            log.push("the guest never asked for the LUN".to_owned());
            return log;
        }
        log.push(control(&ctl2, &format!("add 0:1 {}", img2.display())));
        if !wait_marker(&img, MARK_LBA, b"RINGWORK-DEL-LUN", Duration::from_secs(60)) {
            log.push("the guest never asked to remove the LUN".to_owned());
            return log;
        }
        log.push(control(&ctl2, "remove 0:1"));
        log
    });

    let mut guest = UmlGuest::new(&initrd);
    guest.devices.push((socket.clone(), 8));
    guest.timeout = Duration::from_secs(180);
    let run = must(boot_uml(&guest), "booting the UML guest");
    eprintln!("UML scsi guest: {:.2} s", run.elapsed.as_secs_f64());
    let replies = host.join().unwrap();
    let mut expected = vec![
        "insmod-virtio_scsi",
        "insmod-sd_mod",
        "insmod-sg",
        "sda",
        "capacity",
        "vendor",
        "discard-offered",
        "sg_inq",
        "sg_readcap",
        "vpd-supported",
        "vpd-serial",
        "vpd-ident",
        "vpd-limits",
        "vpd-provisioning",
        "vpd-characteristics",
        "raw",
    ];
    expected.extend_from_slice(EXT4_CHECKS);
    expected.extend_from_slice(&[
        "ready-for-add",
        "hotplug-sdb",
        "sdb-is-lun-1",
        "sdb-capacity",
        "sdb-readcap",
        "sdb-read",
        "sg_unmap",
        "unmap-zeroes",
        "after-unmap",
        "ready-for-remove",
        "hot-unplug-sdb",
        "sda-still-works",
    ]);
    run.assert_checks(&expected);
    assert_eq!(replies, ["ok", "ok"], "control socket replies");
    // sg_unmap deallocated blocks 2048..6143 of the second image; the rest
    // is untouched.
    let back = read_image(&image2);
    assert!(
        back[1 << 20..3 << 20].iter().all(|&b| b == 0),
        "the unmapped range is not zero in the host image"
    );
    assert!(back[3 << 20..] == data.repeat(DISK2_MIB as usize)[3 << 20..]);
    assert!(back[..1 << 20] == data[..]);
    must(backend.check_alive(), "ringwork serve scsi after the guest");
    let log = backend.stop();
    assert!(!log.contains("ERROR"), "backend logged errors:\n{log}");
}
