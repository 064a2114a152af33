//! A hostile vhost-user backend against our frontend
//! (`ringwork_vhost_user::transport::VhostUserTransport`, the transport our
//! drivers run over): a thread plays the backend over a socket pair and
//! answers every message the frontend sends with what the input says.
//!
//! Input layout: byte 0 is the device type the frontend is told to expect
//! (0 entropy, 1 network, 2 block, 3 none: the frontend identifies the
//! device itself, through GET_CONFIG); then one answer per message
//! received, until the input runs out (then the backend closes the
//! socket). An answer is a mode byte and, for modes that send a reply, a
//! little-endian u16 length (modulo 512) and that many payload bytes:
//! - mode bits 0-1: 0 a reply to the message (its request code, the REPLY
//!   flag), 1 a reply with another request code (the next input byte), 2
//!   raw bytes without a header, 3 no answer at all;
//! - bit 2: attach a 1 MiB memfd (as for GET_INFLIGHT_FD);
//! - bit 3: a wrong version in the flags.
//!
//! The frontend then runs the handshake and, if that succeeds, what a
//! driver does through the `Transport` trait: features, status, config
//! reads and writes, one queue set up and notified, a reset. Replies are
//! waited for at most 20 ms. The frontend must not panic or hang,
//! whatever the backend answers.
#![no_main]

use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use ringwork_queue::driver::{DriverQueue, DriverQueueConfig};
use ringwork_queue::{QueueFeatures, RingFormat};
use ringwork_spec::device_id::{DeviceType, VIRTIO_ID_BLOCK, VIRTIO_ID_NET, VIRTIO_ID_RNG};
use ringwork_spec::status::DeviceStatus;
use ringwork_transport::driver::{QueueConfig, Transport};
use ringwork_vhost_user::msg::{FLAG_REPLY, HEADER_SIZE, VERSION};
use ringwork_vhost_user::sys::{memfd, recv_with_fds, send_with_fds};
use ringwork_vhost_user::transport::{TransportOptions, VhostUserTransport};

/// Reads the input front to back; past the end it yields zeroes.
struct Input(Vec<u8>, usize);

impl Input {
    fn is_empty(&self) -> bool {
        self.1 >= self.0.len()
    }
    fn u8(&mut self) -> u8 {
        let b = self.0.get(self.1).copied().unwrap_or(0);
        self.1 += 1;
        b
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.u8()).collect()
    }
}

/// The hostile backend: one answer per message received, until the input
/// runs out or the frontend closes the socket.
fn backend(mut sock: UnixStream, mut input: Input) {
    let _ = sock.set_read_timeout(Some(Duration::from_millis(200)));
    loop {
        let mut hb = [0u8; HEADER_SIZE];
        let mut fds: Vec<OwnedFd> = Vec::new();
        match recv_with_fds(&sock, &mut hb, &mut fds) {
            Ok(n) if n == HEADER_SIZE => {}
            _ => return,
        }
        let size = u32::from_ne_bytes([hb[8], hb[9], hb[10], hb[11]]) as usize;
        let mut payload = vec![0u8; size.min(1 << 16)];
        if sock.read_exact(&mut payload).is_err() {
            return;
        }
        if input.is_empty() {
            return;
        }
        let mode = input.u8();
        let request = match mode & 3 {
            1 => u32::from(input.u8()),
            _ => u32::from_ne_bytes([hb[0], hb[1], hb[2], hb[3]]),
        };
        if mode & 3 == 3 {
            continue;
        }
        let len = usize::from(u16::from_le_bytes([input.u8(), input.u8()]) % 512);
        let body = input.bytes(len);
        let sent = if mode & 3 == 2 {
            sock.write_all(&body).is_ok()
        } else {
            let flags = if mode & 8 != 0 { 2 } else { VERSION } | FLAG_REPLY;
            let mut b = Vec::with_capacity(HEADER_SIZE + len);
            b.extend_from_slice(&request.to_ne_bytes());
            b.extend_from_slice(&flags.to_ne_bytes());
            b.extend_from_slice(&(len as u32).to_ne_bytes());
            b.extend_from_slice(&body);
            let fd = (mode & 4 != 0)
                .then(|| memfd(c"ringwork-fuzz", 1 << 20).ok())
                .flatten();
            let fds: Vec<BorrowedFd<'_>> = fd.iter().map(|f| f.as_fd()).collect();
            send_with_fds(&sock, &b, &fds).is_ok()
        };
        if !sent {
            return;
        }
    }
}

/// What a driver does through the transport after the handshake.
fn drive(t: &mut VhostUserTransport) {
    let _ = t.device_type();
    let offered = t.device_features();
    t.set_status(DeviceStatus::ACKNOWLEDGE);
    t.set_status(DeviceStatus::ACKNOWLEDGE | DeviceStatus::DRIVER);
    t.set_driver_features(offered);
    t.set_status(DeviceStatus::ACKNOWLEDGE | DeviceStatus::DRIVER | DeviceStatus::FEATURES_OK);
    let _ = t.status();
    let _ = t.config_generation();
    let mut cfg = [0u8; 16];
    t.read_config(0, &mut cfg);
    t.write_config(4, &cfg[..4]);
    let size = t.max_queue_size(0).clamp(1, 64);
    if let Ok(q) = DriverQueue::<_, u32>::new(
        t.memory().clone(),
        DriverQueueConfig::new(
            RingFormat::Split,
            size.next_power_of_two().min(64),
            QueueFeatures::default(),
        ),
    ) {
        let _ = t.setup_queue(
            0,
            &QueueConfig {
                size: q.size(),
                addresses: q.addresses(),
            },
        );
        t.notify(0, 0);
    }
    t.set_status(
        DeviceStatus::ACKNOWLEDGE
            | DeviceStatus::DRIVER
            | DeviceStatus::FEATURES_OK
            | DeviceStatus::DRIVER_OK,
    );
    let _ = t.ack_interrupt();
    let _ = t.reset_queue(0);
    let _ = t.reset();
}

fuzz_target!(|data: &[u8]| {
    let Some((&kind, rest)) = data.split_first() else {
        return;
    };
    let device_type = match kind % 4 {
        0 => Some(DeviceType(VIRTIO_ID_RNG)),
        1 => Some(DeviceType(VIRTIO_ID_NET)),
        2 => Some(DeviceType(VIRTIO_ID_BLOCK)),
        _ => None,
    };
    let Ok((ours, theirs)) = UnixStream::pair() else {
        return;
    };
    let input = Input(rest.to_vec(), 0);
    let fake = std::thread::spawn(move || backend(theirs, input));
    let opts = TransportOptions {
        device_type,
        timeout: Duration::from_millis(20),
        memory_size: 1 << 20,
        ..TransportOptions::default()
    };
    if let Ok(mut t) = VhostUserTransport::from_stream(ours, opts) {
        drive(&mut t);
    }
    let _ = fake.join();
});
