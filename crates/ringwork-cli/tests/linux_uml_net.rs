//! Linux as the judge of the network device, under User-Mode Linux: two
//! guests at the same time, each with the kernel's own virtio_net driver
//! (through virtio_uml, a vhost-user frontend) on the same
//! `ringwork serve net --switch` socket, form a LAN on the built-in
//! userspace switch: they ping each other and move an 8 MiB file with
//! busybox nc, its SHA-256 compared on both sides. No host networking is
//! involved (the addresses exist only inside the guests).
//!
//! Fails loudly (guest consoles and backend log) when a check fails or a
//! host tool is missing; never skips.

mod common;

use std::thread;
use std::time::Duration;

use common::net::{listen, net_up, send};
use common::*;
use ringwork_guest_tests::{boot_uml, uml_modules, GuestRun, Initramfs, TempDir, UmlGuest};

const FILE_LEN: usize = 8 << 20;

fn guest(
    tmp: &TempDir,
    name: &str,
    socket: &std::path::Path,
    body: String,
    data: Option<&[u8]>,
) -> UmlGuest {
    let modules = must(
        must(uml_modules(), "UML module tree").resolve(&["virtio_net"]),
        "resolving virtio_net",
    );
    let initrd = tmp.join(format!("{name}.gz"));
    let mut fs = Initramfs::new().modules(modules).body(body);
    if let Some(d) = data {
        fs = fs.bytes("/data.bin", d.to_vec(), 0o644);
    }
    must(fs.write(&initrd), "building the initramfs");
    let mut g = UmlGuest::new(&initrd);
    g.devices.push((socket.to_owned(), 1));
    g.timeout = Duration::from_secs(180);
    g
}

/// VIRTIO 1.4 §5.1 through Linux's virtio_net, twice at once: two guests
/// on one switch ping each other and move 8 MiB over TCP; both sides agree
/// on its SHA-256. Received frames are written with streaming stores
/// (`--rx-streaming-stores`; at this MTU a frame fits one of Linux's
/// mergeable buffers, so the bulk of the transfer takes that path).
#[test]
fn uml_two_guests_ping_and_transfer_over_the_switch() {
    two_guests("uml-net", &["--rx-streaming-stores"], 1500);
}

/// The same with VIRTIO_NET_F_MQ offered (2 pairs: Linux negotiates MQ,
/// so the controlq is queue 4, and sends VQ_PAIRS_SET) and a 9000-byte
/// MTU (jumbo frames spread over merged receive buffers).
#[test]
fn uml_two_guests_multiqueue_jumbo_frames() {
    two_guests("uml-net-mq", &["--queues", "2", "--mtu", "9000"], 9000);
}

fn two_guests(tag: &str, args: &[&str], mtu: u32) {
    let tmp = must(TempDir::new(tag), "temp dir");
    let socket = tmp.join("net.sock");
    let mut serve_args = vec!["net", "--switch"];
    serve_args.extend_from_slice(args);
    let mut backend = serve(&serve_args, &socket);
    let data = pattern(0x5eed_0606, FILE_LEN);

    // Receiver (10.0.0.1): takes the file, reports its checksum, sends the
    // checksum back to the sender.
    let receiver = format!(
        r#"{listen}{up}
check receive wait $L
check size test "$(stat -c %s /tmp/recv.bin)" = {len}
sum=$(sha256sum /tmp/recv.bin | cut -d' ' -f1)
info sha256 "$sum"
echo "$sum" > /tmp/sum
{reply}"#,
        listen = listen(5000, "/tmp/recv.bin"),
        up = net_up("10.0.0.1", "10.0.0.2", mtu),
        len = FILE_LEN,
        reply = send("send-sum", "/tmp/sum", "10.0.0.2", 5001),
    );
    // Sender (10.0.0.2): sends the file, waits for the receiver's
    // checksum and compares it with its own.
    let sender = format!(
        r#"{listen}{up}
sum=$(sha256sum /data.bin | cut -d' ' -f1)
info sha256 "$sum"
{send}check receive-sum wait $L
check sums-match test "$(cat /tmp/peer-sum)" = "$sum"
"#,
        listen = listen(5001, "/tmp/peer-sum"),
        up = net_up("10.0.0.2", "10.0.0.1", mtu),
        send = send("send", "/data.bin", "10.0.0.1", 5000),
    );
    let ga = guest(&tmp, "receiver", &socket, receiver, None);
    let gb = guest(&tmp, "sender", &socket, sender, Some(&data));
    let ta = thread::spawn(move || boot_uml(&ga));
    // Distinct port numbers (hence MACs) in a known order.
    thread::sleep(Duration::from_millis(300));
    let tb = thread::spawn(move || boot_uml(&gb));
    let (ra, rb): (GuestRun, GuestRun) = (
        must(ta.join().unwrap(), "booting the receiver"),
        must(tb.join().unwrap(), "booting the sender"),
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
    let mut want_a = common_checks.to_vec();
    want_a.extend(["receive", "size", "send-sum"]);
    let mut want_b = common_checks.to_vec();
    want_b.extend(["send", "receive-sum", "sums-match"]);
    let log = backend.output();
    let a = std::panic::catch_unwind(|| ra.assert_checks(&want_a));
    let b = std::panic::catch_unwind(|| rb.assert_checks(&want_b));
    if a.is_err() || b.is_err() {
        panic!(
            "a guest failed (receiver ok: {}, sender ok: {}); backend log:\n{log}",
            a.is_ok(),
            b.is_ok()
        );
    }
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.info("sha256"), b.info("sha256"), "checksums differ");
    assert_ne!(a.info("mac"), b.info("mac"), "both guests got the same MAC");
    // What Linux negotiated (one character per feature bit).
    let features = a.info("features").unwrap_or_default().to_owned();
    let bit = |b: usize| features.as_bytes().get(b) == Some(&b'1');
    use ringwork_spec::net::*;
    for b in [
        VIRTIO_NET_F_CSUM,
        VIRTIO_NET_F_GUEST_CSUM,
        VIRTIO_NET_F_MAC,
        VIRTIO_NET_F_MTU,
        VIRTIO_NET_F_MRG_RXBUF,
        VIRTIO_NET_F_STATUS,
        VIRTIO_NET_F_CTRL_VQ,
        VIRTIO_NET_F_CTRL_RX,
        VIRTIO_NET_F_CTRL_VLAN,
    ] {
        assert!(bit(b as usize), "feature {b} not negotiated: {features}");
    }
    assert_eq!(
        bit(VIRTIO_NET_F_MQ as usize),
        args.contains(&"--queues"),
        "MQ: {features}"
    );
    let mtu = mtu.to_string();
    assert_eq!(a.info("mtu"), Some(mtu.as_str()));
    must(backend.check_alive(), "ringwork serve net after the guests");
    let log = backend.stop();
    assert!(!log.contains("ERROR"), "backend logged errors:\n{log}");
}
