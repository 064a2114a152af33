//! The console driver against a fake console over the MMIO loopback:
//! single port and multiport (the control protocol both ways), input and
//! output, resizes, port removal, and hostile control messages.

mod common;

use common::console_dev::{ConsoleDev, PortSpec};
use common::{block, mmio, violations, with_dev, Block, Mmio};
use ringwork_driver::console::{
    ConsoleDriver, ConsoleError, ConsoleEvent, ConsoleOptions, ConsoleSize, ControlError,
    MAX_PORTS, RX_BUFFER_SIZE,
};
use ringwork_driver::RingPreference;
use ringwork_queue::test_utils::TestMemory;
use ringwork_queue::RingFormat;
use ringwork_spec::console::{
    VIRTIO_CONSOLE_CONSOLE_PORT, VIRTIO_CONSOLE_DEVICE_ADD, VIRTIO_CONSOLE_DEVICE_READY,
    VIRTIO_CONSOLE_DEVICE_REMOVE, VIRTIO_CONSOLE_F_EMERG_WRITE, VIRTIO_CONSOLE_PORT_NAME,
    VIRTIO_CONSOLE_PORT_OPEN, VIRTIO_CONSOLE_PORT_READY, VIRTIO_CONSOLE_RESIZE,
};

type Driver<'b, 'm> = ConsoleDriver<Mmio<'b, ConsoleDev<'m>>, &'m TestMemory>;

fn driver<'b, 'm>(
    b: &'b Block<ConsoleDev<'m>>,
    mem: &'m TestMemory,
    opts: ConsoleOptions,
) -> Driver<'b, 'm> {
    ConsoleDriver::new(mmio(b), mem, opts).expect("driver")
}

/// Every event until `poll` reports none.
fn events(d: &mut Driver<'_, '_>) -> Vec<ConsoleEvent> {
    std::iter::from_fn(|| d.poll().expect("poll")).collect()
}

fn read_all(d: &mut Driver<'_, '_>, port: u32) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 100];
    loop {
        let n = d.read(port, &mut buf);
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&buf[..n]);
    }
}

#[test]
fn single_port() {
    for (ring, format) in [
        (RingPreference::Split, RingFormat::Split),
        (RingPreference::Packed, RingFormat::Packed),
    ] {
        let mem = common::memory();
        let b = block(ConsoleDev::new(&mem, 0));
        let mut d = driver(
            &b,
            &mem,
            ConsoleOptions {
                ring,
                ..ConsoleOptions::default()
            },
        );
        assert_eq!(d.ring_format(), format);
        assert!(!d.is_multiport());
        assert_eq!(d.ports().collect::<Vec<_>>(), vec![0]);
        assert_eq!(d.config().size, Some(ConsoleSize { cols: 80, rows: 25 }));
        assert_eq!(d.config().max_nr_ports, None);
        let text: Vec<u8> = (0..3000).map(|i| b'a' + (i % 26) as u8).collect();
        d.write(0, &text).unwrap();
        assert_eq!(with_dev(&b, |dev| dev.output[&0].clone()), text);
        with_dev(&b, |dev| dev.push_input(0, b"hello, driver"));
        assert_eq!(events(&mut d), vec![ConsoleEvent::Data { port: 0 }]);
        assert!(d.has_input(0));
        assert_eq!(read_all(&mut d, 0), b"hello, driver");
        assert!(!d.has_input(0));
        // Not multiport: no other port, opening is a no-op.
        assert_eq!(d.write(1, b"x"), Err(ConsoleError::NoSuchPort { port: 1 }));
        d.open_port(0).unwrap();
        assert!(with_dev(&b, |dev| dev.control_in.is_empty()));
        assert_eq!(violations(&b), 0);
    }
}

/// Input longer than the receive buffers: the device waits for the driver
/// to read (buffers go back only when emptied), nothing is lost.
#[test]
fn input_back_pressure() {
    let mem = common::memory();
    let b = block(ConsoleDev::new(&mem, 0));
    let opts = ConsoleOptions {
        rx_buffers: 2,
        ..ConsoleOptions::default()
    };
    let mut d = driver(&b, &mem, opts);
    let input: Vec<u8> = (0..5 * RX_BUFFER_SIZE).map(|i| (i % 251) as u8).collect();
    with_dev(&b, |dev| dev.push_input(0, &input));
    assert_eq!(with_dev(&b, |dev| dev.pending_input(0)), 3 * RX_BUFFER_SIZE);
    assert_eq!(events(&mut d).len(), 2);
    let mut got = Vec::new();
    loop {
        let chunk = read_all(&mut d, 0);
        if chunk.is_empty() && with_dev(&b, |dev| dev.pending_input(0)) == 0 {
            break;
        }
        got.extend(chunk);
        events(&mut d);
    }
    assert_eq!(got, input);
}

fn multiport_device<'m>(mem: &'m TestMemory) -> ConsoleDev<'m> {
    let mut dev = ConsoleDev::new(mem, 4).offer_emerg();
    dev.auto_ports = vec![
        PortSpec {
            id: 0,
            name: None,
            console: true,
        },
        PortSpec {
            id: 1,
            name: Some("org.ringwork.one"),
            console: false,
        },
        PortSpec {
            id: 3,
            name: None,
            console: false,
        },
    ];
    dev
}

trait OfferEmerg {
    fn offer_emerg(self) -> Self;
}
impl OfferEmerg for ConsoleDev<'_> {
    fn offer_emerg(mut self) -> Self {
        self.features.insert(VIRTIO_CONSOLE_F_EMERG_WRITE);
        self
    }
}

#[test]
fn multiport_control_protocol() {
    for ring in [RingPreference::Split, RingPreference::Packed] {
        let mem = common::memory();
        let b = block(multiport_device(&mem));
        let mut d = driver(
            &b,
            &mem,
            ConsoleOptions {
                ring,
                ..ConsoleOptions::default()
            },
        );
        assert!(d.is_multiport());
        assert_eq!(d.config().max_nr_ports, Some(4));
        // §5.3.6.2.2: DEVICE_READY first.
        assert_eq!(
            with_dev(&b, |dev| dev.control_in.clone()),
            vec![(0, VIRTIO_CONSOLE_DEVICE_READY, 1)]
        );
        let ev = events(&mut d);
        assert_eq!(
            ev,
            vec![
                ConsoleEvent::PortAdded { port: 0 },
                ConsoleEvent::PortAdded { port: 1 },
                ConsoleEvent::PortAdded { port: 3 },
                ConsoleEvent::ConsolePort { port: 0 },
                ConsoleEvent::PortOpened {
                    port: 0,
                    open: true
                },
                ConsoleEvent::PortName {
                    port: 1,
                    name: "org.ringwork.one".into()
                },
                ConsoleEvent::PortOpened {
                    port: 1,
                    open: true
                },
                ConsoleEvent::PortOpened {
                    port: 3,
                    open: true
                },
            ],
            "{ring:?}"
        );
        let sent = with_dev(&b, |dev| dev.control_in.clone());
        assert_eq!(
            sent[1..],
            [
                (0, VIRTIO_CONSOLE_PORT_READY, 1),
                (1, VIRTIO_CONSOLE_PORT_READY, 1),
                (3, VIRTIO_CONSOLE_PORT_READY, 1),
                // §5.3.6.2.2: CONSOLE_PORT is answered with PORT_OPEN 1.
                (0, VIRTIO_CONSOLE_PORT_OPEN, 1),
            ]
        );
        assert_eq!(d.ports().collect::<Vec<_>>(), vec![0, 1, 3]);
        assert_eq!(d.port_name(1), Some("org.ringwork.one"));
        assert_eq!(d.port_name(0), None);
        let info = d.port_info(0).unwrap();
        assert!(info.console && info.host_open && info.guest_open);
        assert!(!d.port_info(1).unwrap().guest_open);

        d.open_port(1).unwrap();
        assert_eq!(
            with_dev(&b, |dev| *dev.control_in.last().unwrap()),
            (1, VIRTIO_CONSOLE_PORT_OPEN, 1)
        );
        assert!(d.port_info(1).unwrap().guest_open);
        d.close_port(1).unwrap();
        assert_eq!(
            with_dev(&b, |dev| *dev.control_in.last().unwrap()),
            (1, VIRTIO_CONSOLE_PORT_OPEN, 0)
        );
        assert_eq!(d.open_port(2), Err(ConsoleError::NoSuchPort { port: 2 }));

        // Data on several ports, each to its own queues.
        d.write(1, b"to one").unwrap();
        d.write(3, b"to three").unwrap();
        assert_eq!(
            d.write(2, b"nobody"),
            Err(ConsoleError::NoSuchPort { port: 2 })
        );
        with_dev(&b, |dev| {
            assert_eq!(dev.output[&1], b"to one");
            assert_eq!(dev.output[&3], b"to three");
            dev.push_input(3, b"from three");
            dev.push_input(0, b"from zero");
        });
        let mut ev = events(&mut d);
        ev.sort_by_key(|e| format!("{e:?}"));
        assert_eq!(
            ev,
            vec![
                ConsoleEvent::Data { port: 0 },
                ConsoleEvent::Data { port: 3 }
            ]
        );
        assert_eq!(read_all(&mut d, 3), b"from three");
        assert_eq!(read_all(&mut d, 0), b"from zero");
        assert_eq!(read_all(&mut d, 1), b"");

        d.emergency_write(b'!').unwrap();
        assert_eq!(with_dev(&b, |dev| dev.emergency.clone()), b"!");
        assert_eq!(violations(&b), 0);
    }
}

#[test]
fn resize_and_config_change() {
    let mem = common::memory();
    let b = block(multiport_device(&mem));
    let mut d = driver(&b, &mem, ConsoleOptions::default());
    events(&mut d);
    with_dev(&b, |dev| {
        dev.send(0, VIRTIO_CONSOLE_RESIZE, 0, &[132, 0, 43, 0])
    });
    assert_eq!(
        events(&mut d),
        vec![ConsoleEvent::Resize {
            port: 0,
            cols: 132,
            rows: 43
        }]
    );
    assert_eq!(
        d.port_info(0).unwrap().size,
        Some(ConsoleSize {
            cols: 132,
            rows: 43
        })
    );
    // VIRTIO_CONSOLE_F_SIZE: a configuration change resizes port 0.
    with_dev(&b, |dev| dev.resize(100, 30));
    assert_eq!(
        events(&mut d),
        vec![ConsoleEvent::Resize {
            port: 0,
            cols: 100,
            rows: 30
        }]
    );
    assert_eq!(
        d.config().size,
        Some(ConsoleSize {
            cols: 100,
            rows: 30
        })
    );
}

#[test]
fn port_removal_and_re_adding() {
    let mem = common::memory();
    let b = block(multiport_device(&mem));
    let mut d = driver(&b, &mem, ConsoleOptions::default());
    events(&mut d);
    with_dev(&b, |dev| dev.push_input(1, b"unread"));
    assert_eq!(events(&mut d), vec![ConsoleEvent::Data { port: 1 }]);
    with_dev(&b, |dev| dev.send(1, VIRTIO_CONSOLE_DEVICE_REMOVE, 0, &[]));
    assert_eq!(events(&mut d), vec![ConsoleEvent::PortRemoved { port: 1 }]);
    assert_eq!(d.ports().collect::<Vec<_>>(), vec![0, 3]);
    assert_eq!(d.port_name(1), None);
    assert_eq!(d.read(1, &mut [0u8; 10]), 0, "unread input dropped");
    assert_eq!(d.write(1, b"x"), Err(ConsoleError::NoSuchPort { port: 1 }));
    // Re-added: its buffers were kept and are still with the device.
    let before = mem.allocated();
    with_dev(&b, |dev| dev.send(1, VIRTIO_CONSOLE_DEVICE_ADD, 0, &[]));
    assert_eq!(events(&mut d)[0], ConsoleEvent::PortAdded { port: 1 });
    assert_eq!(mem.allocated(), before, "no new allocation");
    with_dev(&b, |dev| dev.push_input(1, b"again"));
    events(&mut d);
    assert_eq!(read_all(&mut d, 1), b"again");
}

#[test]
fn hostile_control_messages_are_rejected() {
    let mem = common::memory();
    let b = block(multiport_device(&mem));
    let mut d = driver(&b, &mem, ConsoleOptions::default());
    events(&mut d);
    let msg = |id: u32, event: u16, value: u16| {
        let mut v = id.to_le_bytes().to_vec();
        v.extend(event.to_le_bytes());
        v.extend(value.to_le_bytes());
        v
    };
    let cases: Vec<(Vec<u8>, ControlError)> = vec![
        (
            vec![1, 0, 0, 0],
            ControlError::Truncated { len: 4, needed: 8 },
        ),
        (
            msg(9, VIRTIO_CONSOLE_DEVICE_ADD, 0),
            ControlError::BadPort {
                port: 9,
                max_nr_ports: 4,
            },
        ),
        (
            msg(1, VIRTIO_CONSOLE_DEVICE_ADD, 0),
            ControlError::DuplicatePort { port: 1 },
        ),
        (
            msg(2, VIRTIO_CONSOLE_DEVICE_REMOVE, 0),
            ControlError::UnknownPort { port: 2 },
        ),
        (
            msg(2, VIRTIO_CONSOLE_PORT_NAME, 0),
            ControlError::UnknownPort { port: 2 },
        ),
        (
            msg(1, VIRTIO_CONSOLE_PORT_OPEN, 7),
            ControlError::BadValue {
                event: VIRTIO_CONSOLE_PORT_OPEN,
                value: 7,
            },
        ),
        (
            msg(0, VIRTIO_CONSOLE_RESIZE, 0),
            ControlError::Truncated { len: 8, needed: 12 },
        ),
        (
            msg(0, VIRTIO_CONSOLE_PORT_READY, 1),
            ControlError::UnexpectedEvent {
                port: 0,
                event: VIRTIO_CONSOLE_PORT_READY,
            },
        ),
        (
            msg(0, 99, 0),
            ControlError::UnexpectedEvent { port: 0, event: 99 },
        ),
        (
            [msg(1, VIRTIO_CONSOLE_PORT_NAME, 0), vec![0xff, 0xfe]].concat(),
            ControlError::BadName { port: 1 },
        ),
    ];
    for (bytes, want) in cases {
        with_dev(&b, |dev| dev.send_raw(bytes.clone()));
        match d.poll() {
            Err(ConsoleError::Control(e)) => assert_eq!(e, want, "{bytes:?}"),
            other => panic!("{bytes:?}: {other:?}"),
        }
        assert!(!ConsoleError::Control(want).is_fatal());
        assert_eq!(d.poll(), Ok(None));
    }
    // The driver keeps working: every buffer went back.
    with_dev(&b, |dev| {
        dev.send(1, VIRTIO_CONSOLE_PORT_NAME, 0, b"renamed\0")
    });
    assert_eq!(
        events(&mut d),
        vec![ConsoleEvent::PortName {
            port: 1,
            name: "renamed".into()
        }]
    );
    assert_eq!(with_dev(&b, |dev| dev.pending_control()), 0);
    assert_eq!(violations(&b), 0);
}

/// max_nr_ports far beyond what the driver serves: queues are set up for
/// MAX_PORTS ports only, and a port beyond is refused with PORT_READY 0.
#[test]
fn huge_max_nr_ports_is_capped() {
    let mem = common::memory();
    let mut dev = ConsoleDev::new(&mem, 64);
    dev.edit(|c| c.set_max_nr_ports(u32::MAX));
    let b = block(dev);
    let before = mem.allocated();
    let opts = ConsoleOptions {
        queue_size: 16,
        ..ConsoleOptions::default()
    };
    let mut d = driver(&b, &mem, opts);
    let used = mem.allocated() - before;
    assert!(used < 2 * MAX_PORTS as usize * 3 * 4096, "{used} bytes");
    let enabled = b
        .borrow()
        .core()
        .queues()
        .iter()
        .filter(|q| q.ready)
        .count();
    assert_eq!(enabled, 2 * MAX_PORTS as usize + 2);
    with_dev(&b, |dev| dev.send(40, VIRTIO_CONSOLE_DEVICE_ADD, 0, &[]));
    assert_eq!(
        d.poll(),
        Err(ConsoleError::Control(ControlError::PortUnavailable {
            port: 40
        }))
    );
    assert_eq!(
        with_dev(&b, |dev| *dev.control_in.last().unwrap()),
        (40, VIRTIO_CONSOLE_PORT_READY, 0)
    );
    with_dev(&b, |dev| dev.send(31, VIRTIO_CONSOLE_DEVICE_ADD, 0, &[]));
    assert_eq!(events(&mut d), vec![ConsoleEvent::PortAdded { port: 31 }]);
}

/// A port whose queues the device does not have is refused.
#[test]
fn port_without_queues_is_refused() {
    let mem = common::memory();
    let mut dev = ConsoleDev::new(&mem, 4);
    dev.max_sizes[6] = 0; // port 2's receiveq
    let b = block(dev);
    let mut d = driver(&b, &mem, ConsoleOptions::default());
    with_dev(&b, |dev| dev.send(2, VIRTIO_CONSOLE_DEVICE_ADD, 0, &[]));
    assert_eq!(
        d.poll(),
        Err(ConsoleError::Control(ControlError::PortUnavailable {
            port: 2
        }))
    );
    with_dev(&b, |dev| dev.send(1, VIRTIO_CONSOLE_DEVICE_ADD, 0, &[]));
    assert_eq!(d.poll(), Ok(Some(ConsoleEvent::PortAdded { port: 1 })));
}

#[test]
fn console_port_message_is_answered() {
    let mem = common::memory();
    let b = block(ConsoleDev::new(&mem, 2));
    let mut d = driver(&b, &mem, ConsoleOptions::default());
    with_dev(&b, |dev| {
        dev.send(1, VIRTIO_CONSOLE_DEVICE_ADD, 0, &[]);
        dev.send(1, VIRTIO_CONSOLE_CONSOLE_PORT, 1, &[]);
    });
    assert_eq!(
        events(&mut d),
        vec![
            ConsoleEvent::PortAdded { port: 1 },
            ConsoleEvent::ConsolePort { port: 1 }
        ]
    );
    let sent = with_dev(&b, |dev| dev.control_in.clone());
    assert_eq!(sent.last(), Some(&(1, VIRTIO_CONSOLE_PORT_OPEN, 1)));
}

#[test]
fn multiport_declined_by_the_driver() {
    let mem = common::memory();
    let b = block(multiport_device(&mem));
    let opts = ConsoleOptions {
        multiport: false,
        ..ConsoleOptions::default()
    };
    let mut d = driver(&b, &mem, opts);
    assert!(!d.is_multiport());
    assert_eq!(d.config().max_nr_ports, None);
    d.write(0, b"plain").unwrap();
    assert_eq!(with_dev(&b, |dev| dev.output[&0].clone()), b"plain");
    assert!(with_dev(&b, |dev| dev.control_in.is_empty()));
    let e = ConsoleDriver::new(
        mmio(&b),
        &mem,
        ConsoleOptions {
            rx_buffers: 0,
            ..ConsoleOptions::default()
        },
    );
    assert!(matches!(e, Err(ConsoleError::Setup(_))));
}

#[test]
fn reset_stops_the_device() {
    let mem = common::memory();
    let b = block(multiport_device(&mem));
    let mut d = driver(&b, &mem, ConsoleOptions::default());
    events(&mut d);
    let det = d.reset();
    assert!(det.reset.is_ok());
    assert_eq!(common::status(&b), 0);
    let mut d: Driver<'_, '_> =
        ConsoleDriver::new(det.transport, &mem, ConsoleOptions::default()).unwrap();
    assert_eq!(events(&mut d).len(), 8);
}
