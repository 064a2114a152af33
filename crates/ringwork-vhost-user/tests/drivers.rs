//! ringwork's drivers over the vhost-user frontend transport against
//! ringwork's backends: block (multiqueue, many requests in flight, both
//! ring formats), entropy, the multiport console, and SCSI (both ring
//! formats), all through a real unix socket and shared memfd memory.

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
use ringwork_device::scsi::{LunSpec, Scsi, ScsiOptions as DevScsiOptions};
use ringwork_driver::blk::{BlkDriver, BlkOptions, BlkRequest, BlkStatus};
use ringwork_driver::console::{ConsoleDriver, ConsoleEvent, ConsoleOptions};
use ringwork_driver::rng::RngDriver;
use ringwork_driver::scsi::{ScsiCommand, ScsiDriver, ScsiOptions, ScsiResponse};
use ringwork_driver::RingPreference;
use ringwork_queue::{Dma, RingFormat, Segment};
use ringwork_spec::device_id::{DeviceType, VIRTIO_ID_SCSI};
use ringwork_transport::driver::Transport;
use ringwork_vhost_user::{SharedMemory, TransportOptions, VhostUserTransport};

fn connect(path: &Path) -> (VhostUserTransport, Arc<SharedMemory>) {
    connect_as(path, None)
}

/// Connects naming the device type (`None`: inferred).
fn connect_as(
    path: &Path,
    device_type: Option<DeviceType>,
) -> (VhostUserTransport, Arc<SharedMemory>) {
    let t = VhostUserTransport::connect(
        path,
        TransportOptions {
            device_type,
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
    // Host to guest first: the device reads the client only once it has
    // accepted it, while output written before that would be dropped (no
    // client yet), so this order leaves no race.
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
    // Guest to host, to the client the device has accepted.
    d.write(1, b"hello from the driver\n").unwrap();
    let mut got = vec![0u8; 22];
    client.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"hello from the driver\n");
}

/// ringwork's SCSI driver against ringwork's SCSI device: INQUIRY, REPORT
/// LUNS, READ CAPACITY (16), writes and reads through the image, many
/// commands in flight on two queues, and a LOGICAL UNIT RESET.
fn scsi(ring: RingPreference) {
    let dir = temp_dir(&format!("scsi-{ring:?}"));
    let image = dir.0.join("lun0.img");
    std::fs::write(&image, vec![0u8; 2 << 20]).unwrap();
    let opts = DevScsiOptions {
        luns: vec![LunSpec::new(0, 0, &image), LunSpec::new(0, 300, &image)],
        num_queues: 2,
        ..DevScsiOptions::default()
    };
    let sock = dir.0.join("scsi.sock");
    serve(&sock, Arc::new(Scsi::open(opts).unwrap()));
    // A SCSI backend offers only HOTPLUG / CHANGE: the type cannot be
    // inferred from its features (it would look like a console).
    let (t, mem) = connect_as(&sock, Some(DeviceType(VIRTIO_ID_SCSI)));
    let mut d: ScsiDriver<_, _, u64> = ScsiDriver::new(
        t,
        mem.clone(),
        ScsiOptions {
            queues: 2,
            ring,
            ..ScsiOptions::default()
        },
    )
    .unwrap();
    assert_eq!(d.num_queues(), 2);
    assert_eq!(
        d.ring_format() == RingFormat::Packed,
        ring == RingPreference::Packed
    );
    let inq = d.inquiry(0, 0).unwrap();
    assert!(inq.len() >= 36, "{} bytes", inq.len());
    assert_eq!(inq[0] & 0x1f, 0, "direct-access block device");
    assert!(d.test_unit_ready(0, 0).unwrap().is_good());
    assert_eq!(d.report_luns(0).unwrap(), [0, 300]);
    let cap = d.read_capacity16(0, 0).unwrap();
    assert_eq!((cap.blocks(), cap.block_size), (4096, 512));
    // Blocking write and read back through the flat-addressed LUN 300.
    let data = pattern(3, 4096);
    let wb = mem.alloc(4096, 4096).unwrap();
    wb.slice().write_bytes(0, &data).unwrap();
    let seg = [Segment::new(wb.device_addr(), 4096)];
    d.write16(0, 300, 3, 8, &seg).unwrap();
    let rb = mem.alloc(4096, 4096).unwrap();
    let rseg = [Segment::new(rb.device_addr(), 4096)];
    let c = d.read16(0, 0, 3, 8, &rseg).unwrap();
    assert_eq!(c.residual, 0);
    let mut back = vec![0u8; 4096];
    rb.slice().read_bytes(0, &mut back).unwrap();
    assert_eq!(back, data);
    // 64 writes of 4 KiB in flight over both queues.
    const N: u64 = 64;
    let bufs: Vec<_> = (0..N).map(|_| mem.alloc(4096, 4096).unwrap()).collect();
    for i in 0..N {
        let lba = 64 + i * 8;
        bufs[i as usize]
            .slice()
            .write_bytes(0, &pattern(lba, 4096))
            .unwrap();
        let seg = [Segment::new(bufs[i as usize].device_addr(), 4096)];
        let mut cdb = [0u8; 16];
        cdb[0] = 0x8a;
        cdb[2..10].copy_from_slice(&lba.to_be_bytes());
        cdb[10..14].copy_from_slice(&8u32.to_be_bytes());
        d.submit(
            (i % 2) as u16,
            ScsiCommand::new(0, 0, &cdb).data_out(&seg),
            i,
        )
        .unwrap();
    }
    d.kick(0).unwrap();
    d.kick(1).unwrap();
    let mut left = N;
    while left > 0 {
        let mut any = false;
        for q in 0..2 {
            while let Some(c) = d.poll(q).unwrap() {
                assert!(c.is_good(), "{c:?}");
                left -= 1;
                any = true;
            }
        }
        if !any {
            d.transport().wait_interrupt().unwrap();
        }
    }
    // SYNCHRONIZE CACHE (10), then the image holds every write.
    assert!(d
        .command(ScsiCommand::new(0, 0, &[0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0]))
        .unwrap()
        .is_good());
    let disk = std::fs::read(&image).unwrap();
    assert_eq!(&disk[3 * 512..3 * 512 + 4096], &data[..]);
    for i in 0..N {
        let lba = 64 + i * 8;
        let off = lba as usize * 512;
        assert_eq!(&disk[off..off + 4096], &pattern(lba, 4096)[..], "lba {lba}");
    }
    let r = d
        .task_management(
            0,
            0,
            ringwork_spec::scsi::VIRTIO_SCSI_T_TMF_LOGICAL_UNIT_RESET,
            0,
        )
        .unwrap();
    assert_eq!(r, ScsiResponse::Ok);
    let detached = d.reset();
    detached.reset.unwrap();
    assert!(detached.tokens.is_empty());
}

#[test]
fn scsi_split() {
    scsi(RingPreference::Split);
}

#[test]
fn scsi_packed() {
    scsi(RingPreference::Packed);
}
