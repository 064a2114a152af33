//! ringwork's drivers over the vhost-user frontend transport against
//! ringwork's backends: block (multiqueue, many requests in flight, both
//! ring formats), entropy, and the multiport console, all through a real
//! unix socket and shared memfd memory.

mod common;
use common::{serve, temp_dir};

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ringwork_device::blk::{Blk, BlkOptions as DevBlkOptions};
use ringwork_device::console::{
    Console, ConsoleOptions as DevConsoleOptions, PortBackend, PortSpec,
};
use ringwork_device::rng::Rng;
use ringwork_driver::blk::{BlkDriver, BlkOptions, BlkRequest, BlkStatus};
use ringwork_driver::console::{ConsoleDriver, ConsoleEvent, ConsoleOptions};
use ringwork_driver::rng::RngDriver;
use ringwork_driver::RingPreference;
use ringwork_queue::{Dma, RingFormat, Segment};
use ringwork_transport::driver::Transport;
use ringwork_vhost_user::{SharedMemory, TransportOptions, VhostUserTransport};

fn connect(path: &Path) -> (VhostUserTransport, Arc<SharedMemory>) {
    let t = VhostUserTransport::connect(
        path,
        TransportOptions {
            memory_size: 16 << 20,
            timeout: Duration::from_secs(5),
            ..TransportOptions::default()
        },
    )
    .unwrap();
    let m = t.memory().clone();
    (t, m)
}

fn pattern(sector: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (sector as usize * 31 + i * 7 + i / 512) as u8)
        .collect()
}

fn blk(ring: RingPreference) {
    let tag = format!("blk-{ring:?}");
    let dir = temp_dir(&tag);
    let image = dir.0.join("disk.img");
    std::fs::write(&image, vec![0u8; 4 << 20]).unwrap();
    let mut o = DevBlkOptions::new(&image);
    o.num_queues = 2;
    o.serial = Some("ringwork-test".into());
    let sock = dir.0.join("blk.sock");
    serve(&sock, Arc::new(Blk::open(o).unwrap()));
    let (t, mem) = connect(&sock);
    let mut d: BlkDriver<_, _, u64> = BlkDriver::new(
        t,
        mem.clone(),
        BlkOptions {
            queues: 2,
            queue_size: 128,
            ring,
            ..BlkOptions::default()
        },
    )
    .unwrap();
    assert_eq!(d.num_queues(), 2);
    assert_eq!(
        d.ring_format() == RingFormat::Packed,
        ring == RingPreference::Packed
    );
    assert_eq!(d.config().capacity, 8192);
    // 100 writes of 4 KiB in flight at once, spread over both queues, each
    // from its own buffer; completions come back in any order.
    const N: u64 = 100;
    let bufs: Vec<_> = (0..N).map(|_| mem.alloc(4096, 4096).unwrap()).collect();
    for i in 0..N {
        let sector = i * 8 * 7 % 8192;
        bufs[i as usize]
            .slice()
            .write_bytes(0, &pattern(sector, 4096))
            .unwrap();
        let seg = [Segment::new(bufs[i as usize].device_addr(), 4096)];
        d.submit((i % 2) as u16, BlkRequest::Write { sector, data: &seg }, i)
            .unwrap();
    }
    d.kick(0).unwrap();
    d.kick(1).unwrap();
    let mut done = vec![false; N as usize];
    let mut left = N;
    while left > 0 {
        let mut any = false;
        for q in 0..2 {
            while let Some(c) = d.poll(q).unwrap() {
                assert_eq!(c.status, BlkStatus::Ok);
                assert!(!done[c.token as usize], "token {} twice", c.token);
                done[c.token as usize] = true;
                left -= 1;
                any = true;
            }
        }
        if !any {
            d.transport().wait_interrupt().unwrap();
        }
    }
    d.flush().unwrap();
    // Read back through the driver and from the image itself.
    let disk = std::fs::read(&image).unwrap();
    for i in 0..N {
        let sector = i * 8 * 7 % 8192;
        let mut b = vec![0u8; 4096];
        d.read(sector, &mut b).unwrap();
        assert_eq!(b, pattern(sector, 4096), "sector {sector}");
        let off = sector as usize * 512;
        assert_eq!(&disk[off..off + 4096], &b[..]);
    }
    let id = d.get_id().unwrap();
    assert_eq!(&id[..13], b"ringwork-test");
    d.discard(0, 8).unwrap();
    d.write_zeroes(8, 8, false).unwrap();
    let mut b = vec![1u8; 8192];
    d.read(0, &mut b).unwrap();
    assert!(b.iter().all(|&x| x == 0));
    let detached = d.reset();
    detached.reset.unwrap();
    assert!(detached.tokens.is_empty());
}

#[test]
fn blk_split_multiqueue() {
    blk(RingPreference::Split);
}

#[test]
fn blk_packed_multiqueue() {
    blk(RingPreference::Packed);
}

#[test]
fn rng_both_formats() {
    for ring in [RingPreference::Split, RingPreference::Packed] {
        let dir = temp_dir(&format!("rng-{ring:?}"));
        let sock = dir.0.join("rng.sock");
        serve(&sock, Arc::new(Rng::new()));
        let (t, mem) = connect(&sock);
        let mut d = RngDriver::new(t, mem, 64, ring).unwrap();
        let mut buf = vec![0u8; 10_000];
        let mut got = 0;
        while got < buf.len() {
            got += d.fill(&mut buf[got..]).unwrap();
        }
        // 10 000 random bytes are not all the same.
        assert!(buf.iter().any(|&b| b != buf[0]));
        d.reset().reset.unwrap();
    }
}

#[test]
fn console_multiport_round_trip() {
    let dir = temp_dir("console");
    let port_sock = dir.0.join("port1.sock");
    let mut opts = DevConsoleOptions::new(vec![
        PortSpec::console(PortBackend::UnixSocket(dir.0.join("port0.sock"))),
        PortSpec::named(
            "org.ringwork.test",
            PortBackend::UnixSocket(port_sock.clone()),
        ),
    ]);
    opts.multiport = true;
    let sock = dir.0.join("console.sock");
    serve(&sock, Arc::new(Console::new(opts).unwrap()));
    let (t, mem) = connect(&sock);
    let mut d = ConsoleDriver::new(
        t,
        mem,
        ConsoleOptions {
            multiport: true,
            ..ConsoleOptions::default()
        },
    )
    .unwrap();
    assert!(d.is_multiport());
    // Wait for both ports and port 1's name.
    let mut named = false;
    for _ in 0..1000 {
        match d.poll().unwrap() {
            Some(ConsoleEvent::PortName { port: 1, name }) => {
                assert_eq!(name, "org.ringwork.test");
                named = true;
            }
            Some(_) => {}
            None => {
                if named && d.ports().count() == 2 {
                    break;
                }
                d.transport().wait_interrupt().unwrap();
            }
        }
    }
    assert!(named);
    assert_eq!(d.port_name(1), Some("org.ringwork.test"));
    d.open_port(1).unwrap();
    let mut client = UnixStream::connect(&port_sock).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    // Guest to host.
    d.write(1, b"hello from the driver\n").unwrap();
    let mut got = vec![0u8; 22];
    client.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"hello from the driver\n");
    // Host to guest.
    client.write_all(b"and back").unwrap();
    let mut data = Vec::new();
    for _ in 0..1000 {
        let mut b = [0u8; 64];
        let n = d.read(1, &mut b);
        data.extend_from_slice(&b[..n]);
        if data.len() >= 8 {
            break;
        }
        if d.poll().unwrap().is_none() && !d.has_input(1) {
            d.transport().wait_interrupt().unwrap();
        }
    }
    assert_eq!(&data, b"and back");
}
