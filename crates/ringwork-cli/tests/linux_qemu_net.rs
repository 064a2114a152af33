//! Linux as the judge of the network device under QEMU (TCG) with a Debian
//! cloud kernel, next to a User-Mode Linux guest on the same switch: QEMU's
//! `-netdev vhost-user` (which keeps the control queue to itself and turns
//! the guest's VQ_PAIRS_SET into SET_VRING_ENABLE per ring) and UML's
//! virtio_uml (which hands the control queue to the backend) connect to one
//! `ringwork serve net --switch` socket. The two guests ping each other,
//! the UML guest sends a file to the QEMU guest, which sends it back; both
//! compare SHA-256 sums.
//!
//! Fails loudly (guest consoles and backend log) when a check fails or a
//! host tool is missing; never skips.

mod common;

use std::thread;
use std::time::Duration;

use common::net::{listen, net_up, send};
use common::*;
use ringwork_guest_tests::{
    boot_qemu, boot_uml, guest_kernel, uml_modules, GuestRun, Initramfs, QemuGuest, TempDir,
    UmlGuest,
};

/// Kept small: TCG is slow.
const FILE_LEN: usize = 4 << 20;

/// The split ring with two queue pairs (QEMU `queues=2`, `mq=on`: the
/// second pair is switched on by SET_VRING_ENABLE once the guest asks QEMU
/// for two pairs).
#[test]
fn qemu_and_uml_guests_split_ring_two_pairs() {
    qemu_and_uml("qemu-net-split", false, 2);
}

/// The packed ring with one queue pair.
#[test]
fn qemu_and_uml_guests_packed_ring() {
    qemu_and_uml("qemu-net-packed", true, 1);
}

fn qemu_and_uml(tag: &str, packed: bool, pairs: u16) {
    let tmp = must(TempDir::new(tag), "temp dir");
    let socket = tmp.join("net.sock");
    let pairs_arg = pairs.to_string();
    let mut backend = serve(&["net", "--switch", "--queues", &pairs_arg], &socket);
    let data = pattern(0x5eed_0707 + u64::from(packed), FILE_LEN);

    // QEMU guest (10.0.0.1): takes the file, reports its checksum and
    // sends the file back.
    let qemu_body = format!(
        r#"{listen}{up}
info queues "$(ls /sys/class/net/eth0/queues | tr '\n' ' ')"
check receive wait $L
check size test "$(stat -c %s /tmp/recv.bin)" = {len}
info sha256 "$(sha256sum /tmp/recv.bin | cut -d' ' -f1)"
{reply}"#,
        listen = listen(5000, "/tmp/recv.bin"),
        up = net_up("10.0.0.1", "10.0.0.2", 1500),
        len = FILE_LEN,
        reply = send("send-back", "/tmp/recv.bin", "10.0.0.2", 5001),
    );
    // UML guest (10.0.0.2): sends the file, takes the copy back and
    // compares the checksums.
    let uml_body = format!(
        r#"{listen}{up}
sum=$(sha256sum /data.bin | cut -d' ' -f1)
info sha256 "$sum"
{send}check receive-back wait $L
check copy-matches test "$(sha256sum /tmp/copy.bin | cut -d' ' -f1)" = "$sum"
"#,
        listen = listen(5001, "/tmp/copy.bin"),
        up = net_up("10.0.0.2", "10.0.0.1", 1500),
        send = send("send", "/data.bin", "10.0.0.1", 5000),
    );

    let kernel = must(guest_kernel(), "locating the guest kernel");
    let tree = must(kernel.modules(), "guest kernel module tree");
    let mods = must(
        tree.resolve(&["virtio_pci", "failover", "net_failover", "virtio_net"]),
        "resolving guest modules",
    );
    let qemu_initrd = tmp.join("qemu.gz");
    must(
        Initramfs::new()
            .modules(mods)
            .body(qemu_body)
            .write(&qemu_initrd),
        "building the QEMU initramfs",
    );
    let mut qemu = QemuGuest::new(&kernel.vmlinuz, &qemu_initrd);
    qemu.chardevs.push(("c0".into(), socket.clone()));
    qemu.extra_args.extend([
        "-netdev".into(),
        format!("vhost-user,id=n0,chardev=c0,queues={pairs}"),
    ]);
    // vectors=0 (INTx): with MSI-X, QEMU 7.2 under TCG crashes (SIGSEGV in
    // vhost_net_start → msix_set_vector_notifiers → the virtio-net guest
    // notifier mask path) as soon as the guest driver starts the device,
    // before the backend sees SET_FEATURES; nothing the backend can avoid.
    let mut dev = String::from("virtio-net-pci,netdev=n0,mac=52:54:00:aa:00:01,vectors=0");
    if pairs > 1 {
        dev.push_str(",mq=on");
    }
    if packed {
        dev.push_str(",packed=on");
    }
    qemu.devices.push(dev);
    qemu.timeout = Duration::from_secs(240);

    let uml_mods = must(
        must(uml_modules(), "UML module tree").resolve(&["virtio_net"]),
        "resolving virtio_net",
    );
    let uml_initrd = tmp.join("uml.gz");
    must(
        Initramfs::new()
            .modules(uml_mods)
            .body(uml_body)
            .bytes("/data.bin", data.clone(), 0o644)
            .write(&uml_initrd),
        "building the UML initramfs",
    );
    let mut uml = UmlGuest::new(&uml_initrd);
    uml.devices.push((socket.clone(), 1));
    uml.timeout = Duration::from_secs(240);

    let tq = thread::spawn(move || boot_qemu(&qemu));
    let tu = thread::spawn(move || boot_uml(&uml));
    let (rq, ru): (GuestRun, GuestRun) = (
        must(tq.join().unwrap(), "booting the QEMU guest"),
        must(tu.join().unwrap(), "booting the UML guest"),
    );
    let common_checks = [
        "insmod-virtio_net",
        "set-mtu",
        "link-up",
        "addr",
        "carrier",
        "peer-reachable",
        "ping",
        "ping-full-size",
    ];
    let mut want_q = common_checks.to_vec();
    want_q.extend(["receive", "size", "send-back"]);
    let mut want_u = common_checks.to_vec();
    want_u.extend(["send", "receive-back", "copy-matches"]);
    let log = backend.output();
    let q = std::panic::catch_unwind(|| rq.assert_checks(&want_q));
    let u = std::panic::catch_unwind(|| ru.assert_checks(&want_u));
    if q.is_err() || u.is_err() {
        panic!(
            "a guest failed (QEMU ok: {}, UML ok: {}); backend log:\n{log}",
            q.is_ok(),
            u.is_ok()
        );
    }
    let (q, u) = (q.unwrap(), u.unwrap());
    assert_eq!(q.info("sha256"), u.info("sha256"), "checksums differ");
    assert_eq!(q.info("mac"), Some("52:54:00:aa:00:01"), "QEMU's MAC");
    // What the QEMU guest negotiated (one character per feature bit): the
    // control queue and its commands are QEMU's, the ring format ours.
    let features = q.info("features").unwrap_or_default().to_owned();
    let bit = |b: u32| features.as_bytes().get(b as usize) == Some(&b'1');
    use ringwork_spec::net::*;
    for b in [
        VIRTIO_NET_F_CSUM,
        VIRTIO_NET_F_GUEST_CSUM,
        VIRTIO_NET_F_MAC,
        VIRTIO_NET_F_MRG_RXBUF,
        VIRTIO_NET_F_STATUS,
        VIRTIO_NET_F_CTRL_VQ,
    ] {
        assert!(bit(b), "feature {b} not negotiated: {features}");
    }
    assert_eq!(bit(VIRTIO_NET_F_MQ), pairs > 1, "MQ: {features}");
    assert_eq!(
        bit(ringwork_spec::features::VIRTIO_F_RING_PACKED),
        packed,
        "packed ring: {features}"
    );
    let want_queues: String = (0..pairs)
        .map(|i| format!("rx-{i} "))
        .chain((0..pairs).map(|i| format!("tx-{i} ")))
        .collect();
    assert_eq!(
        q.info("queues").map(str::trim),
        Some(want_queues.trim_end()),
        "queues"
    );
    // The second pair, switched on by SET_VRING_ENABLE (QEMU carries the
    // guest's VQ_PAIRS_SET out itself), is in use on the device.
    assert_eq!(
        log.contains(": 2 queue pair(s) in use"),
        pairs > 1,
        "queue pairs in use:\n{log}"
    );
    must(backend.check_alive(), "ringwork serve net after the guests");
    let log = backend.stop();
    assert!(!log.contains("ERROR"), "backend logged errors:\n{log}");
}
