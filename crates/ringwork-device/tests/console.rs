//! The console device through the in-process fake driver: data both ways,
//! the multiport control handshake, malformed control messages, the Unix
//! socket, pty and emergency-write paths, backpressure and the event fd.

mod console_support;

use console_support::*;

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

use ringwork_device::harness::fd_readable as poll_readable;

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
