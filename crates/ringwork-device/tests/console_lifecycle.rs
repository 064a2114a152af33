//! The console device's pty backend (data, window size in single-port
//! and multiport mode) and its lifecycle: control state across worker
//! restarts and resets, and the port add/remove rules.

mod console_support;

use console_support::*;

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
