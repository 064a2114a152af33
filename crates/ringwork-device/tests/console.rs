//! The console device through the in-process fake driver: data both ways,
//! the multiport control handshake, malformed control messages, the Unix
//! socket, pty and emergency-write paths, backpressure and the event fd.

use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Duration;

use ringwork_device::console::{
    Console, ConsoleError, ConsoleOptions, PortBackend, PortSpec, WindowSize,
};
use ringwork_device::harness::Harness;
use ringwork_device::model::Device;
use ringwork_queue::RingFormat;
use ringwork_spec::console::{
    ConsoleControl, ConsoleResize, CONSOLE_CONTROL_SIZE, VIRTIO_CONSOLE_CONSOLE_PORT,
    VIRTIO_CONSOLE_DEVICE_ADD, VIRTIO_CONSOLE_DEVICE_READY, VIRTIO_CONSOLE_DEVICE_REMOVE,
    VIRTIO_CONSOLE_F_EMERG_WRITE, VIRTIO_CONSOLE_F_MULTIPORT, VIRTIO_CONSOLE_F_SIZE,
    VIRTIO_CONSOLE_PORT_NAME, VIRTIO_CONSOLE_PORT_OPEN, VIRTIO_CONSOLE_PORT_READY,
    VIRTIO_CONSOLE_RESIZE,
};

const FORMATS: [RingFormat; 2] = [RingFormat::Split, RingFormat::Packed];
const CTRL_RX: u16 = 2;
const CTRL_TX: u16 = 3;

/// A socketpair port: the device's backend and the host's end.
fn pair() -> (PortBackend, UnixStream) {
    let (dev, host) = UnixStream::pair().unwrap();
    host.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let write = OwnedFd::from(dev.try_clone().unwrap());
    (
        PortBackend::Fds {
            read: OwnedFd::from(dev),
            write,
        },
        host,
    )
}

fn read_n(s: &mut UnixStream, n: usize) -> Vec<u8> {
    let mut v = vec![0; n];
    s.read_exact(&mut v).unwrap();
    v
}

/// Whatever the host end has now.
fn read_now(s: &mut UnixStream) -> Vec<u8> {
    s.set_nonblocking(true).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) => panic!("{e}"),
        }
    }
    s.set_nonblocking(false).unwrap();
    out
}

fn sock_path(name: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!(
        "ringwork-console-{}-{name}.sock",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&p);
    p
}

fn ctrl(id: u32, event: u16, value: u16) -> Vec<u8> {
    let mut b = vec![0u8; CONSOLE_CONTROL_SIZE];
    let mut m = ConsoleControl::new_checked(&mut b[..]).unwrap();
    m.set_id(id);
    m.set_event(event);
    m.set_value(value);
    b
}

/// A device → driver message: (id, event, value, payload).
type Msg = (u32, u16, u16, Vec<u8>);

fn parse(b: &[u8]) -> Msg {
    let m = ConsoleControl::new_checked(b).unwrap();
    (
        m.id(),
        m.event(),
        m.value(),
        b[CONSOLE_CONTROL_SIZE..].to_vec(),
    )
}

fn post_ctrl_buffers(h: &mut Harness<Console>, n: usize) {
    for _ in 0..n {
        h.submit(CTRL_RX, &[], &[128]).unwrap();
    }
}

/// Sends driver control messages and returns what the device answered.
fn send(h: &mut Harness<Console>, msgs: &[Vec<u8>]) -> Vec<Msg> {
    let mut tokens = Vec::new();
    for m in msgs {
        tokens.push(h.submit(CTRL_TX, &[m], &[]).unwrap());
    }
    h.run().unwrap();
    let done = h.completed(CTRL_TX).unwrap();
    assert_eq!(done.len(), tokens.len(), "every control message is used");
    assert!(done.iter().all(|(_, d)| d.is_empty()), "used len 0");
    received(h)
}

fn received(h: &mut Harness<Console>) -> Vec<Msg> {
    h.completed(CTRL_RX)
        .unwrap()
        .iter()
        .map(|(_, b)| parse(b))
        .collect()
}

fn msg(id: u32, event: u16, value: u16) -> Msg {
    (id, event, value, Vec::new())
}

#[test]
fn guest_to_host() {
    for format in FORMATS {
        let (backend, mut host) = pair();
        let mut h = Harness::new(
            Console::new(ConsoleOptions::single(backend)).unwrap(),
            format,
        )
        .unwrap();
        h.submit(1, &[b"hello "], &[]).unwrap();
        h.submit(1, &[b"wo", b"rld"], &[]).unwrap();
        h.run().unwrap();
        let done = h.completed(1).unwrap();
        assert_eq!(done.len(), 2);
        assert!(done.iter().all(|(_, d)| d.is_empty()), "tx used len is 0");
        assert_eq!(read_n(&mut host, 11), b"hello world");
        assert!(h.broken_queues().is_empty());
    }
}

#[test]
fn host_to_guest() {
    for format in FORMATS {
        let (backend, mut host) = pair();
        let mut h = Harness::new(
            Console::new(ConsoleOptions::single(backend)).unwrap(),
            format,
        )
        .unwrap();
        // Input before any receive buffer waits in the device.
        host.write_all(b"ping\n").unwrap();
        h.run().unwrap();
        let t = h.submit(0, &[], &[3]).unwrap();
        let t2 = h.submit(0, &[], &[64]).unwrap();
        h.run().unwrap();
        let done = h.completed(0).unwrap();
        assert_eq!(done, vec![(t, b"pin".to_vec()), (t2, b"g\n".to_vec())]);
    }
}

#[test]
fn bulk_input_is_not_lost() {
    let (backend, host) = pair();
    let mut h = Harness::new(
        Console::new(ConsoleOptions::single(backend)).unwrap(),
        RingFormat::Split,
    )
    .unwrap();
    let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let writer = {
        let mut host = host.try_clone().unwrap();
        let data = data.clone();
        std::thread::spawn(move || host.write_all(&data).unwrap())
    };
    let mut got = Vec::new();
    for _ in 0..10_000 {
        if got.len() == data.len() {
            break;
        }
        for _ in 0..8 {
            h.submit(0, &[], &[1000]).unwrap();
        }
        h.run().unwrap();
        for (_, d) in h.completed(0).unwrap() {
            got.extend_from_slice(&d);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    writer.join().unwrap();
    assert_eq!(got.len(), data.len());
    assert!(got == data);
}

/// Three ports: a console, a named generic port, a socket.
fn three_ports(sock: &Path) -> (Console, UnixStream, UnixStream) {
    let (b0, h0) = pair();
    let (b1, h1) = pair();
    let console = Console::new(ConsoleOptions::new(vec![
        PortSpec::console(b0),
        PortSpec::named("org.test.one", b1),
        PortSpec {
            name: None,
            backend: PortBackend::UnixSocket(sock.to_owned()),
            console: false,
        },
    ]))
    .unwrap();
    (console, h0, h1)
}

#[test]
fn multiport_handshake() {
    for format in FORMATS {
        let sock = sock_path(&format!("handshake-{format}"));
        let (console, _h0, mut h1) = three_ports(&sock);
        assert!(console.is_multiport());
        assert_eq!(console.num_queues(), 8);
        assert_eq!(console.socket_path(2), Some(sock.as_path()));
        let mut h = Harness::new(console, format).unwrap();

        // No control receive buffers yet: the PORT_ADDs wait.
        assert!(send(&mut h, &[ctrl(0, VIRTIO_CONSOLE_DEVICE_READY, 1)]).is_empty());
        post_ctrl_buffers(&mut h, 16);
        h.run().unwrap();
        assert_eq!(
            received(&mut h),
            (0..3)
                .map(|p| msg(p, VIRTIO_CONSOLE_DEVICE_ADD, 0))
                .collect::<Vec<_>>()
        );
        // A repeated DEVICE_READY adds nothing (§5.3.6.2.1).
        assert!(send(&mut h, &[ctrl(0, VIRTIO_CONSOLE_DEVICE_READY, 1)]).is_empty());

        let got = send(
            &mut h,
            &[
                ctrl(0, VIRTIO_CONSOLE_PORT_READY, 1),
                ctrl(1, VIRTIO_CONSOLE_PORT_READY, 1),
                ctrl(2, VIRTIO_CONSOLE_PORT_READY, 1),
            ],
        );
        assert_eq!(
            got,
            vec![
                msg(0, VIRTIO_CONSOLE_CONSOLE_PORT, 1),
                msg(0, VIRTIO_CONSOLE_PORT_OPEN, 1),
                (1, VIRTIO_CONSOLE_PORT_NAME, 1, b"org.test.one".to_vec()),
                msg(1, VIRTIO_CONSOLE_PORT_OPEN, 1),
                // Port 2's socket has no client: no PORT_OPEN.
            ]
        );

        // Port 1's input waits until the guest opens the port.
        h1.write_all(b"to port 1").unwrap();
        let t = h.submit(4, &[], &[64]).unwrap();
        h.run().unwrap();
        assert!(h.completed(4).unwrap().is_empty());
        assert!(send(&mut h, &[ctrl(1, VIRTIO_CONSOLE_PORT_OPEN, 1)]).is_empty());
        assert_eq!(h.completed(4).unwrap(), vec![(t, b"to port 1".to_vec())]);

        // Port 1's output.
        h.submit(5, &[b"from port 1"], &[]).unwrap();
        h.run().unwrap();
        assert_eq!(h.completed(5).unwrap().len(), 1);
        assert_eq!(read_n(&mut h1, 11), b"from port 1");

        // The socket port: connect, data both ways, disconnect.
        let mut client = UnixStream::connect(&sock).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        h.run().unwrap();
        assert_eq!(received(&mut h), vec![msg(2, VIRTIO_CONSOLE_PORT_OPEN, 1)]);
        assert!(send(&mut h, &[ctrl(2, VIRTIO_CONSOLE_PORT_OPEN, 1)]).is_empty());
        client.write_all(b"sock in").unwrap();
        let t = h.submit(6, &[], &[64]).unwrap();
        h.submit(7, &[b"sock out"], &[]).unwrap();
        h.run().unwrap();
        assert_eq!(h.completed(6).unwrap(), vec![(t, b"sock in".to_vec())]);
        let mut buf = [0u8; 8];
        client.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"sock out");
        drop(client);
        h.run().unwrap();
        assert_eq!(received(&mut h), vec![msg(2, VIRTIO_CONSOLE_PORT_OPEN, 0)]);
        // Output while no client is connected is dropped.
        h.submit(7, &[b"lost"], &[]).unwrap();
        h.run().unwrap();
        assert_eq!(h.completed(7).unwrap().len(), 2);
        // A new client is announced again.
        let _client = UnixStream::connect(&sock).unwrap();
        h.run().unwrap();
        assert_eq!(received(&mut h), vec![msg(2, VIRTIO_CONSOLE_PORT_OPEN, 1)]);
        assert!(h.broken_queues().is_empty());
        drop(h);
        assert!(!sock.exists(), "socket file removed with the console");
    }
}

#[test]
fn malformed_control_messages_are_ignored() {
    for format in FORMATS {
        let sock = sock_path(&format!("malformed-{format}"));
        let (console, _h0, _h1) = three_ports(&sock);
        let mut h = Harness::new(console, format).unwrap();
        post_ctrl_buffers(&mut h, 16);
        let before_ready = send(
            &mut h,
            &[
                vec![1, 2, 3],                           // short header
                Vec::new(),                              // empty
                ctrl(0, VIRTIO_CONSOLE_PORT_READY, 1),   // before DEVICE_READY
                ctrl(0, VIRTIO_CONSOLE_PORT_OPEN, 1),    // before DEVICE_READY
                ctrl(0, VIRTIO_CONSOLE_DEVICE_READY, 7), // bad value
            ],
        );
        assert!(before_ready.is_empty());
        assert_eq!(
            send(&mut h, &[ctrl(0, VIRTIO_CONSOLE_DEVICE_READY, 1)]).len(),
            3
        );
        let garbage = send(
            &mut h,
            &[
                ctrl(0, 99, 1),                              // unknown event
                ctrl(0, VIRTIO_CONSOLE_DEVICE_ADD, 0),       // device-only event
                ctrl(0, VIRTIO_CONSOLE_RESIZE, 0),           // device-only event
                ctrl(3, VIRTIO_CONSOLE_PORT_READY, 1),       // port beyond max_nr_ports
                ctrl(u32::MAX, VIRTIO_CONSOLE_PORT_OPEN, 1), // port beyond max_nr_ports
                ctrl(0, VIRTIO_CONSOLE_PORT_OPEN, 1),        // before PORT_READY
                ctrl(0, VIRTIO_CONSOLE_PORT_READY, 9),       // bad value
            ],
        );
        assert!(garbage.is_empty());
        // A control message with a device-writable part still works.
        h.submit(CTRL_TX, &[&ctrl(1, VIRTIO_CONSOLE_PORT_READY, 0)], &[16])
            .unwrap();
        h.run().unwrap();
        assert_eq!(h.completed(CTRL_TX).unwrap().len(), 1);
        // Port 1 failed: later messages for it are ignored.
        assert!(send(&mut h, &[ctrl(1, VIRTIO_CONSOLE_PORT_READY, 1)]).is_empty());
        assert!(h.broken_queues().is_empty());
    }
}

#[test]
fn short_control_receive_buffer() {
    for format in FORMATS {
        let console = Console::new(ConsoleOptions::new(vec![
            PortSpec::console(pair().0),
            PortSpec::named("x", pair().0),
        ]))
        .unwrap();
        let mut h = Harness::new(console, format).unwrap();
        // Too small for a message: used empty; the message waits.
        h.submit(CTRL_RX, &[], &[4]).unwrap();
        h.submit(CTRL_TX, &[&ctrl(0, VIRTIO_CONSOLE_DEVICE_READY, 1)], &[])
            .unwrap();
        h.run().unwrap();
        assert_eq!(h.completed(CTRL_TX).unwrap().len(), 1);
        assert_eq!(h.completed(CTRL_RX).unwrap(), vec![(1, Vec::new())]);
        assert_eq!(h.completed(CTRL_RX).unwrap().len(), 0);
        post_ctrl_buffers(&mut h, 2);
        h.run().unwrap();
        assert_eq!(
            received(&mut h),
            vec![
                msg(0, VIRTIO_CONSOLE_DEVICE_ADD, 0),
                msg(1, VIRTIO_CONSOLE_DEVICE_ADD, 0)
            ]
        );
        // A name longer than the buffer is truncated, not dropped.
        h.submit(CTRL_RX, &[], &[CONSOLE_CONTROL_SIZE as u32])
            .unwrap();
        let got = send(&mut h, &[ctrl(1, VIRTIO_CONSOLE_PORT_READY, 1)]);
        assert_eq!(got, vec![(1, VIRTIO_CONSOLE_PORT_NAME, 1, Vec::new())]);
        assert!(h.broken_queues().is_empty());
    }
}

#[test]
fn unix_socket_single_port() {
    let sock = sock_path("single");
    let console = Console::new(ConsoleOptions::single(PortBackend::UnixSocket(
        sock.clone(),
    )))
    .unwrap();
    let mut h = Harness::new(console, RingFormat::Split).unwrap();
    // No client: output is dropped, the chain still completes.
    h.submit(1, &[b"nobody"], &[]).unwrap();
    h.run().unwrap();
    assert_eq!(h.completed(1).unwrap().len(), 1);
    let mut c = UnixStream::connect(&sock).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    // A second client waits in the backlog.
    let mut c2 = UnixStream::connect(&sock).unwrap();
    c2.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    h.submit(1, &[b"hi"], &[]).unwrap();
    h.run().unwrap();
    let mut buf = [0u8; 2];
    c.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"hi");
    drop(c);
    h.run().unwrap();
    h.submit(1, &[b"second"], &[]).unwrap();
    h.run().unwrap();
    let mut buf = [0u8; 6];
    c2.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"second");
}

#[test]
fn socket_path_busy() {
    let sock = sock_path("busy");
    let _listener = UnixListener::bind(&sock).unwrap();
    let err = Console::new(ConsoleOptions::single(PortBackend::UnixSocket(
        sock.clone(),
    )))
    .unwrap_err();
    assert!(matches!(err, ConsoleError::SocketBusy(_)), "{err}");
    assert!(err.to_string().contains("busy"));
    drop(_listener);
    // A stale socket file (nobody listening) is replaced.
    let c = Console::new(ConsoleOptions::single(PortBackend::UnixSocket(
        sock.clone(),
    )))
    .unwrap();
    assert!(UnixStream::connect(&sock).is_ok());
    drop(c);
    assert!(!sock.exists());
}

#[test]
fn option_errors() {
    assert!(matches!(
        Console::new(ConsoleOptions::new(Vec::new())),
        Err(ConsoleError::NoPorts)
    ));
    let dup = Console::new(ConsoleOptions::new(vec![
        PortSpec::named("a", pair().0),
        PortSpec::named("a", pair().0),
    ]));
    assert!(matches!(dup, Err(ConsoleError::DuplicateName(n)) if n == "a"));
    let bad = Console::new(ConsoleOptions::new(vec![PortSpec::named("a\0b", pair().0)]));
    assert!(matches!(bad, Err(ConsoleError::BadName { port: 0, .. })));
}

#[test]
fn features_and_config() {
    let single = Console::new(ConsoleOptions::single(pair().0)).unwrap();
    assert_eq!(single.num_queues(), 2);
    assert_eq!(single.features() & (1 << VIRTIO_CONSOLE_F_MULTIPORT), 0);
    assert_eq!(single.features() & (1 << VIRTIO_CONSOLE_F_SIZE), 0);
    assert_ne!(single.features() & (1 << VIRTIO_CONSOLE_F_EMERG_WRITE), 0);
    assert_eq!(single.worker_map(), vec![vec![0, 1]]);

    let mut opts = ConsoleOptions::new(vec![
        PortSpec::console(pair().0),
        PortSpec::named("b", pair().0),
        PortSpec::named("c", pair().0),
    ]);
    opts.size = Some(WindowSize {
        cols: 132,
        rows: 43,
    });
    opts.emerg_write = false;
    let multi = Console::new(opts).unwrap();
    assert_eq!(multi.num_queues(), 8);
    assert_eq!(multi.worker_map(), vec![(0..8).collect::<Vec<u16>>()]);
    let f = multi.features();
    assert_ne!(f & (1 << VIRTIO_CONSOLE_F_MULTIPORT), 0);
    assert_ne!(f & (1 << VIRTIO_CONSOLE_F_SIZE), 0);
    assert_eq!(f & (1 << VIRTIO_CONSOLE_F_EMERG_WRITE), 0);
    assert_eq!(multi.config(), [132, 0, 43, 0, 3, 0, 0, 0, 0, 0, 0, 0]);

    // One named port turns multiport on.
    let named = Console::new(ConsoleOptions::new(vec![PortSpec::named("n", pair().0)])).unwrap();
    assert!(named.is_multiport());
    assert_eq!(named.num_queues(), 4);
}

#[test]
fn multiport_device_driven_without_multiport() {
    // The driver declines MULTIPORT: port 0 works as a plain console and
    // the other ports stay idle.
    let (b0, mut h0) = pair();
    let console = Console::new(ConsoleOptions::new(vec![
        PortSpec::console(b0),
        PortSpec::named("idle", pair().0),
    ]))
    .unwrap();
    let features = console.features() & !(1 << VIRTIO_CONSOLE_F_MULTIPORT);
    let mut h = Harness::with_features(console, features, 64).unwrap();
    h0.write_all(b"in").unwrap();
    let t = h.submit(0, &[], &[8]).unwrap();
    h.submit(1, &[b"out"], &[]).unwrap();
    h.run().unwrap();
    assert_eq!(h.completed(0).unwrap(), vec![(t, b"in".to_vec())]);
    assert_eq!(read_n(&mut h0, 3), b"out");
}

#[test]
fn emergency_write() {
    let (b, mut host) = pair();
    let console = Console::new(ConsoleOptions::single(b)).unwrap();
    // Before any worker (an unconfigured device, §5.3.5.1).
    console.write_config(8, &[b'A', 0, 0, 0]);
    assert_eq!(read_n(&mut host, 1), b"A");
    let mut h = Harness::new(console, RingFormat::Packed).unwrap();
    // While the worker runs: handed to it; a write ending at emerg_wr's
    // low byte counts, other writes do not.
    h.device().write_config(8, b"B");
    h.device().write_config(5, &[0, 0, 0, b'C']);
    h.device().write_config(0, b"xy");
    h.device().write_config(9, b"z");
    assert!(poll_readable(h.worker_fds()[0]));
    h.run().unwrap();
    assert_eq!(read_n(&mut host, 2), b"BC");
    h.run().unwrap();
    assert!(read_now(&mut host).is_empty());
}

/// Whether `fd` is readable now.
#[allow(unsafe_code)]
fn poll_readable(fd: RawFd) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, count 1; `fd` is open (the worker's).
    let r = unsafe { libc::poll(&mut p, 1, 0) };
    r == 1 && p.revents & libc::POLLIN != 0
}

#[test]
fn event_fd_does_not_spin() {
    let (b, mut host) = pair();
    let mut h = Harness::new(
        Console::new(ConsoleOptions::single(b)).unwrap(),
        RingFormat::Split,
    )
    .unwrap();
    let fds = h.worker_fds();
    assert_eq!(fds.len(), 1);
    let fd = fds[0];
    h.run().unwrap();
    assert!(!poll_readable(fd));
    host.write_all(b"x").unwrap();
    assert!(poll_readable(fd), "input wakes the worker");
    h.run().unwrap();
    assert!(!poll_readable(fd), "input taken");
    // More input than the device buffers, and no receive buffers: the
    // worker stops watching the input instead of being woken forever.
    host.write_all(&vec![b'y'; 64 * 1024]).unwrap();
    for _ in 0..8 {
        h.run().unwrap();
    }
    assert!(!poll_readable(fd), "full buffer: input not watched");
    // Receive buffers: the input flows again, nothing lost.
    let mut got = 0;
    for _ in 0..64 {
        for _ in 0..16 {
            h.submit(0, &[], &[4096]).unwrap();
        }
        h.run().unwrap();
        got += h
            .completed(0)
            .unwrap()
            .iter()
            .map(|(_, d)| d.len())
            .sum::<usize>();
        if got == 64 * 1024 + 1 {
            break;
        }
    }
    assert_eq!(got, 64 * 1024 + 1);
}

#[test]
fn slow_host_holds_transmit_and_quiesce_completes_it() {
    for format in FORMATS {
        let (b, mut host) = pair();
        let mut h = Harness::new(Console::new(ConsoleOptions::single(b)).unwrap(), format).unwrap();
        let fd = h.worker_fds()[0];
        h.run().unwrap();
        // Far more than a socket buffer holds.
        let big: Vec<u8> = (0..4u32 << 20).map(|i| i as u8).collect();
        h.submit(1, &[&big], &[]).unwrap();
        h.submit(1, &[b"after"], &[]).unwrap();
        h.run().unwrap();
        assert!(
            h.completed(1).unwrap().is_empty(),
            "the host is slow: the chain waits"
        );
        assert!(!poll_readable(fd), "nothing to do until the host reads");
        let mut got = read_now(&mut host);
        assert!(!got.is_empty());
        assert!(poll_readable(fd), "the host made room: the worker is woken");
        h.run().unwrap();
        got.extend(read_now(&mut host));
        // Stop with the chain in flight: quiesce completes it.
        h.quiesce().unwrap();
        assert_eq!(h.completed(1).unwrap().len(), 1);
        assert_eq!(&got[..], &big[..got.len()]);
        assert!(h.broken_queues().is_empty());
    }
}

#[test]
fn pty_backend() {
    let console = Console::new(ConsoleOptions::single(PortBackend::Pty)).unwrap();
    let path = console.pty_path(0).expect("pty path").to_owned();
    assert!(path.starts_with("/dev/pts"));
    assert_eq!(console.pty_path(1), None);
    let mut h = Harness::new(console, RingFormat::Split).unwrap();
    let mut slave = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    slave.write_all(b"typed").unwrap();
    let mut got = Vec::new();
    for _ in 0..1000 {
        let t = h.submit(0, &[], &[64]);
        assert!(t.is_some());
        h.run().unwrap();
        for (_, d) in h.completed(0).unwrap() {
            got.extend(d);
        }
        if got.len() >= 5 {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(got, b"typed");
    h.submit(1, &[b"shown\n"], &[]).unwrap();
    h.run().unwrap();
    let mut buf = [0u8; 6];
    slave.read_exact(&mut buf).unwrap();
    // Raw mode: no "\r\n" rewriting, no echo.
    assert_eq!(&buf, b"shown\n");
}

#[test]
fn pty_resize_in_multiport() {
    let console = Console::new(ConsoleOptions::new(vec![
        PortSpec::console(PortBackend::Pty),
        PortSpec::named("p", pair().0),
    ]))
    .unwrap();
    let path = console.pty_path(0).unwrap().to_owned();
    let slave = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    let mut h = Harness::new(console, RingFormat::Split).unwrap();
    post_ctrl_buffers(&mut h, 16);
    assert_eq!(
        send(&mut h, &[ctrl(0, VIRTIO_CONSOLE_DEVICE_READY, 1)]).len(),
        2
    );
    let got = send(&mut h, &[ctrl(0, VIRTIO_CONSOLE_PORT_READY, 1)]);
    assert_eq!(got[0], msg(0, VIRTIO_CONSOLE_CONSOLE_PORT, 1));
    set_size(&slave, 90, 33);
    h.run().unwrap();
    let got = received(&mut h);
    let resize = got
        .iter()
        .find(|m| m.1 == VIRTIO_CONSOLE_RESIZE)
        .expect("RESIZE sent");
    let r = ConsoleResize::new_checked(&resize.3[..]).unwrap();
    assert_eq!((resize.0, r.cols(), r.rows()), (0, 90, 33));
    assert_eq!(
        h.device().window_size(),
        Some(WindowSize { cols: 90, rows: 33 })
    );
}

#[test]
fn pty_resize_single_port_changes_config() {
    let console = Console::new(ConsoleOptions::single(PortBackend::Pty)).unwrap();
    // A new pty starts at 80x24, so F_SIZE is offered.
    assert_ne!(console.features() & (1 << VIRTIO_CONSOLE_F_SIZE), 0);
    assert_eq!(&console.config()[..4], &[80, 0, 24, 0]);
    let path = console.pty_path(0).unwrap().to_owned();
    let slave = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    let mut h = Harness::new(console, RingFormat::Split).unwrap();
    h.run().unwrap();
    assert_eq!(h.events.config_changes.load(Ordering::SeqCst), 0);
    set_size(&slave, 100, 40);
    h.run().unwrap();
    assert_eq!(&h.device().config()[..4], &[100, 0, 40, 0]);
    assert_eq!(h.events.config_changes.load(Ordering::SeqCst), 1);
    h.run().unwrap();
    assert_eq!(h.events.config_changes.load(Ordering::SeqCst), 1);
}

#[allow(unsafe_code)]
fn set_size(tty: &std::fs::File, cols: u16, rows: u16) {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize from a valid local; the fd is open.
    let r = unsafe { libc::ioctl(tty.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    assert_eq!(r, 0);
}

#[test]
fn control_state_survives_worker_restart_and_not_reset() {
    let sock = sock_path("restart");
    let (console, _h0, _h1) = three_ports(&sock);
    let features = console.features();
    let mut h = Harness::new(console, RingFormat::Split).unwrap();
    post_ctrl_buffers(&mut h, 32);
    assert_eq!(
        send(&mut h, &[ctrl(0, VIRTIO_CONSOLE_DEVICE_READY, 1)]).len(),
        3
    );
    send(&mut h, &[ctrl(2, VIRTIO_CONSOLE_PORT_READY, 1)]);
    // Queues stop and start again (no reset): the ports stay announced
    // and ready, so a client is announced without a new handshake.
    h.restart_workers(features).unwrap();
    assert!(send(&mut h, &[ctrl(0, VIRTIO_CONSOLE_DEVICE_READY, 1)]).is_empty());
    let _client = UnixStream::connect(&sock).unwrap();
    h.run().unwrap();
    assert_eq!(received(&mut h), vec![msg(2, VIRTIO_CONSOLE_PORT_OPEN, 1)]);
    // A device reset forgets the protocol: DEVICE_READY adds the ports
    // again; the socket client stays connected.
    h.device().reset();
    h.restart_workers(features).unwrap();
    assert_eq!(
        send(&mut h, &[ctrl(0, VIRTIO_CONSOLE_DEVICE_READY, 1)]).len(),
        3
    );
    assert_eq!(
        send(&mut h, &[ctrl(2, VIRTIO_CONSOLE_PORT_READY, 1)]),
        vec![msg(2, VIRTIO_CONSOLE_PORT_OPEN, 1)]
    );
}

/// VIRTIO 1.4 §5.3.6.2.1: DEVICE_ADD never names a port that exists (a
/// port is added once until a device reset) nor one at or beyond
/// `max_nr_ports`, and DEVICE_REMOVE is never sent (so never for a port
/// that was not added), through a whole session: repeated DEVICE_READY,
/// every port readied, a socket client coming and going, queues
/// restarted, a device reset and a second handshake.
#[test]
fn device_adds_each_port_once_below_max_nr_ports_and_never_removes() {
    for format in FORMATS {
        let sock = sock_path(&format!("adds-{format}"));
        let (console, _h0, _h1) = three_ports(&sock);
        let config = console.config();
        let max_nr_ports = u32::from_le_bytes(config[4..8].try_into().unwrap());
        assert_eq!(max_nr_ports, 3);
        let features = console.features();
        let mut h = Harness::new(console, format).unwrap();
        post_ctrl_buffers(&mut h, 64);
        let ready = ctrl(0, VIRTIO_CONSOLE_DEVICE_READY, 1);
        let ports_ready: Vec<Vec<u8>> = (0..3)
            .map(|p| ctrl(p, VIRTIO_CONSOLE_PORT_READY, 1))
            .collect();

        // Messages of each epoch (between device resets).
        let mut epochs: Vec<Vec<Msg>> = Vec::new();
        let mut epoch = send(&mut h, &[ready.clone(), ready.clone()]);
        epoch.extend(send(&mut h, &ports_ready));
        epoch.extend(send(&mut h, std::slice::from_ref(&ready)));
        let client = UnixStream::connect(&sock).unwrap();
        h.run().unwrap();
        epoch.extend(received(&mut h));
        drop(client);
        h.run().unwrap();
        epoch.extend(received(&mut h));
        h.restart_workers(features).unwrap();
        epoch.extend(send(&mut h, std::slice::from_ref(&ready)));
        epochs.push(epoch);

        h.device().reset();
        h.restart_workers(features).unwrap();
        post_ctrl_buffers(&mut h, 64);
        let mut epoch = send(&mut h, std::slice::from_ref(&ready));
        epoch.extend(send(&mut h, &ports_ready));
        epoch.extend(send(&mut h, std::slice::from_ref(&ready)));
        epochs.push(epoch);

        for (i, epoch) in epochs.iter().enumerate() {
            let mut added: Vec<u32> = epoch
                .iter()
                .filter(|m| m.1 == VIRTIO_CONSOLE_DEVICE_ADD)
                .map(|m| m.0)
                .collect();
            assert!(
                added.iter().all(|&p| p < max_nr_ports),
                "epoch {i}: {added:?}"
            );
            let n = added.len();
            added.sort_unstable();
            added.dedup();
            assert_eq!(added.len(), n, "epoch {i}: a port added twice");
            assert_eq!(added, [0, 1, 2], "epoch {i}: every port added");
            assert!(
                epoch.iter().all(|m| m.1 != VIRTIO_CONSOLE_DEVICE_REMOVE),
                "epoch {i}: DEVICE_REMOVE sent: {epoch:?}"
            );
        }
        assert!(h.broken_queues().is_empty());
    }
}
