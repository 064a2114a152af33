//! Helpers shared by the console device tests: socket-pair ports,
//! control messages, and the control-queue driver steps.
#![allow(dead_code, unused_imports)]

pub use std::io::{ErrorKind, Read, Write};
pub use std::os::fd::{AsRawFd, OwnedFd, RawFd};
pub use std::os::unix::net::{UnixListener, UnixStream};
pub use std::path::{Path, PathBuf};
pub use std::sync::atomic::Ordering;
pub use std::time::Duration;

pub use ringwork_device::console::{
    Console, ConsoleError, ConsoleOptions, PortBackend, PortSpec, WindowSize,
};
pub use ringwork_device::harness::Harness;
pub use ringwork_device::model::Device;
pub use ringwork_queue::RingFormat;
pub use ringwork_spec::console::{
    ConsoleControl, ConsoleResize, CONSOLE_CONTROL_SIZE, VIRTIO_CONSOLE_CONSOLE_PORT,
    VIRTIO_CONSOLE_DEVICE_ADD, VIRTIO_CONSOLE_DEVICE_READY, VIRTIO_CONSOLE_DEVICE_REMOVE,
    VIRTIO_CONSOLE_F_EMERG_WRITE, VIRTIO_CONSOLE_F_MULTIPORT, VIRTIO_CONSOLE_F_SIZE,
    VIRTIO_CONSOLE_PORT_NAME, VIRTIO_CONSOLE_PORT_OPEN, VIRTIO_CONSOLE_PORT_READY,
    VIRTIO_CONSOLE_RESIZE,
};

pub const FORMATS: [RingFormat; 2] = [RingFormat::Split, RingFormat::Packed];
pub const CTRL_RX: u16 = 2;
pub const CTRL_TX: u16 = 3;

/// A socketpair port: the device's backend and the host's end.
pub fn pair() -> (PortBackend, UnixStream) {
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

pub fn read_n(s: &mut UnixStream, n: usize) -> Vec<u8> {
    let mut v = vec![0; n];
    s.read_exact(&mut v).unwrap();
    v
}

/// Whatever the host end has now.
pub fn read_now(s: &mut UnixStream) -> Vec<u8> {
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

pub fn sock_path(name: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!(
        "ringwork-console-{}-{name}.sock",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&p);
    p
}

pub fn ctrl(id: u32, event: u16, value: u16) -> Vec<u8> {
    let mut b = vec![0u8; CONSOLE_CONTROL_SIZE];
    let mut m = ConsoleControl::new_checked(&mut b[..]).unwrap();
    m.set_id(id);
    m.set_event(event);
    m.set_value(value);
    b
}

/// A device → driver message: (id, event, value, payload).
pub type Msg = (u32, u16, u16, Vec<u8>);

pub fn parse(b: &[u8]) -> Msg {
    let m = ConsoleControl::new_checked(b).unwrap();
    (
        m.id(),
        m.event(),
        m.value(),
        b[CONSOLE_CONTROL_SIZE..].to_vec(),
    )
}

pub fn post_ctrl_buffers(h: &mut Harness<Console>, n: usize) {
    for _ in 0..n {
        h.submit(CTRL_RX, &[], &[128]).unwrap();
    }
}

/// Sends driver control messages and returns what the device answered.
pub fn send(h: &mut Harness<Console>, msgs: &[Vec<u8>]) -> Vec<Msg> {
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

pub fn received(h: &mut Harness<Console>) -> Vec<Msg> {
    h.completed(CTRL_RX)
        .unwrap()
        .iter()
        .map(|(_, b)| parse(b))
        .collect()
}

pub fn msg(id: u32, event: u16, value: u16) -> Msg {
    (id, event, value, Vec::new())
}

/// Three ports: a console, a named generic port, a socket.
pub fn three_ports(sock: &Path) -> (Console, UnixStream, UnixStream) {
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
