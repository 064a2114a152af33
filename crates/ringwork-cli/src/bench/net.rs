//! `ringwork bench net`: packets per second of ringwork's network driver
//! (`ringwork_driver::net::NetDriver`, one queue pair) over vhost-user,
//! like `dpdk-testpmd --forward-mode=io` with `start tx_first`. The driver
//! injects `inject` bursts of `burst` frames, one per round of forwarding
//! until all are in (so the peer's first replies find receive buffers),
//! and forwards: every frame received is sent straight back (receive batch, transmit batch, take
//! back completed transmit buffers). Against a peer that forwards too
//! (`ringwork serve net --loopback`, testpmd as the vhost-user backend in
//! io mode) the frames circulate; the report gives received and sent
//! packets per second and this process's CPU time.
//!
//! By default frames are forwarded in place, as testpmd's io mode does:
//! received into the driver's buffers ([`NetDriver::recv_bufs`]) and sent
//! from them ([`NetDriver::send_bufs`]), never copied. With `--copy` they
//! are copied out of the receive queue ([`NetDriver::recv_batch`]) into
//! one buffer allocated at setup and copied into transmit slots
//! ([`NetDriver::send_batch`]). Either way the hot path allocates nothing. Frames are Ethernet frames to the broadcast address from
//! the driver's address (EtherType 0x88b5, local experimental), so a
//! device's receive filter and DPDK accept them.
//!
//! Exit codes: 0 done, 1 the backend failed (closed the connection, broke
//! a queue, no answer while waiting for interrupts), 2 bad command line,
//! 3 setup failed (no backend, not a network device, `--packed` without
//! packed rings, a frame size the MTU does not allow).
//!
//! Trust: the backend is hostile; everything it hands back is checked by
//! the driver, and any error ends the run with a message (no panic).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use ringwork_driver::net::{
    NetBuf, NetDriver, NetError, NetOptions, TxFrame, DEFAULT_RX_BUFFER_LEN,
};
use ringwork_driver::{RingPreference, SetupError as DriverSetupError};
use ringwork_queue::RingFormat;
use ringwork_spec::device_id::{DeviceType, VIRTIO_ID_NET};
use ringwork_spec::features::{FeatureSet, FEATURE_BITS};
use ringwork_spec::net::{
    VIRTIO_NET_F_CTRL_VQ, VIRTIO_NET_F_MAC, VIRTIO_NET_F_MQ, VIRTIO_NET_F_MTU,
    VIRTIO_NET_F_SPEED_DUPLEX, VIRTIO_NET_F_STATUS,
};
use ringwork_transport::driver::{Transport, TransportError};
use ringwork_vhost_user::msg::protocol;
use ringwork_vhost_user::{SharedMemory, TransportOptions, VhostUserTransport};
use serde_json::{json, Value};

use super::cpu::cpu_time;
use super::report::human_count;
use super::{parse_duration, SetupFailed};

type Driver = NetDriver<VhostUserTransport, Arc<SharedMemory>>;

/// How long one reply or one wait for an interrupt may take.
const TIMEOUT: Duration = Duration::from_secs(10);
/// Largest `--burst`.
const MAX_BURST: u16 = 512;
/// EtherType of the frames (IEEE local experimental 1).
const ETHERTYPE: [u8; 2] = [0x88, 0xb5];
/// Loop rounds between two clock reads.
const CLOCK_EVERY: u32 = 64;

/// Arguments of `ringwork bench net`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Durations: 10s, 500ms, 2m (a bare number is seconds).\n\n\
                        Exit codes: 0 done, 1 the backend failed (closed connection, \
                        broken queue, no answer), 2 bad command line, 3 setup failed."
)]
pub struct NetArgs {
    /// The backend's socket.
    #[arg(long)]
    pub socket_path: PathBuf,
    /// Use packed rings (fails if the backend does not offer
    /// VIRTIO_F_RING_PACKED).
    #[arg(long, conflicts_with = "split")]
    pub packed: bool,
    /// Use split rings (the default).
    #[arg(long)]
    pub split: bool,
    /// How long to forward.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub time: Duration,
    /// Bytes per injected frame (Ethernet header and payload, no FCS).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(14..=9018))]
    pub size: u16,
    /// Frames per receive and transmit batch.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=i64::from(MAX_BURST)))]
    pub burst: u16,
    /// Bursts injected, one per round as forwarding starts (like testpmd's
    /// `start tx_first N` against a peer already forwarding).
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(0..=65536))]
    pub inject: u32,
    /// Entries per queue (the backend must accept it).
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u16).range(2..=32768))]
    pub queue_size: u16,
    /// Busy-poll the receive queue (the default).
    #[arg(long, overrides_with = "no_poll")]
    pub poll: bool,
    /// Wait for the backend's interrupts when nothing arrived instead of
    /// busy-polling.
    #[arg(long)]
    pub no_poll: bool,
    /// Copy every frame out of the receive queue and into a transmit slot
    /// (the driver's copying API) instead of forwarding it in place.
    #[arg(long)]
    pub copy: bool,
    /// Bytes per receive buffer when VIRTIO_NET_F_MRG_RXBUF is negotiated
    /// (at least the 12-byte header; larger frames span buffers).
    #[arg(long, default_value_t = DEFAULT_RX_BUFFER_LEN,
          value_parser = clap::value_parser!(u32).range(12..=1 << 20))]
    pub rx_buffer_len: u32,
    /// Feature bits not to accept even if the backend offers them
    /// (comma-separated bit numbers, e.g. 29 for VIRTIO_F_EVENT_IDX).
    #[arg(long, value_delimiter = ',',
          value_parser = clap::value_parser!(u32).range(0..i64::from(FEATURE_BITS)))]
    pub withhold: Vec<u32>,
    /// No per-second progress lines on stderr.
    #[arg(long, short)]
    pub quiet: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// What a run measured.
#[derive(Debug, Clone, PartialEq)]
pub struct NetBenchResult {
    /// "split" or "packed".
    pub ring: &'static str,
    /// Entries per queue.
    pub queue_size: u16,
    /// Bytes per injected frame.
    pub frame_size: u16,
    /// Frames per batch.
    pub burst: u16,
    /// Frames injected.
    pub injected: u64,
    /// "poll" or "interrupt".
    pub wait: &'static str,
    /// "in-place" or "copy".
    pub forward: &'static str,
    /// The driver's address.
    pub mac: [u8; 6],
    /// Measured seconds.
    pub seconds: f64,
    /// Frames received.
    pub rx_packets: u64,
    /// Bytes received (frames, no header).
    pub rx_bytes: u64,
    /// Frames sent back.
    pub tx_packets: u64,
    /// Received frames not sent back (transmit queue full).
    pub tx_dropped: u64,
    /// CPU seconds of this process (utime + stime) in the measured time.
    pub cpu_s: f64,
    /// The negotiated feature bits.
    pub features: u128,
    /// Bytes per receive buffer.
    pub rx_buffer_len: u32,
}

impl NetBenchResult {
    fn per_s(&self, v: u64) -> f64 {
        if self.seconds > 0.0 {
            v as f64 / self.seconds
        } else {
            0.0
        }
    }

    /// Received frames per second.
    pub fn rx_pps(&self) -> f64 {
        self.per_s(self.rx_packets)
    }

    /// Sent frames per second.
    pub fn tx_pps(&self) -> f64 {
        self.per_s(self.tx_packets)
    }

    /// The JSON report.
    pub fn to_json(&self) -> Value {
        let r3 = |v: f64| (v * 1000.0).round() / 1000.0;
        json!({
            "ring": self.ring,
            "queue_size": self.queue_size,
            "frame_size": self.frame_size,
            "burst": self.burst,
            "injected": self.injected,
            "wait": self.wait,
            "forward": self.forward,
            "mac": mac_string(self.mac),
            "seconds": r3(self.seconds),
            "rx_packets": self.rx_packets,
            "rx_bytes": self.rx_bytes,
            "rx_pps": self.rx_pps().round(),
            "tx_packets": self.tx_packets,
            "tx_pps": self.tx_pps().round(),
            "tx_dropped": self.tx_dropped,
            "cpu_s": r3(self.cpu_s),
            "features": format!("{:#x}", self.features),
            "rx_buffer_len": self.rx_buffer_len,
        })
    }

    /// The human-readable report.
    pub fn print(&self, out: &mut impl Write) -> std::io::Result<()> {
        writeln!(
            out,
            "net io-forward ({}): {} B frames, burst {}, {} injected, {} rings of {}, {} waits, mac {}",
            self.forward,
            self.frame_size,
            self.burst,
            self.injected,
            self.ring,
            self.queue_size,
            self.wait,
            mac_string(self.mac)
        )?;
        writeln!(
            out,
            "  features {:#x}, receive buffers of {} B",
            self.features, self.rx_buffer_len
        )?;
        writeln!(
            out,
            "  rx: {} packets, {} pps ({:.3} Mpps)",
            self.rx_packets,
            human_count(self.rx_pps()),
            self.rx_pps() / 1e6
        )?;
        writeln!(
            out,
            "  tx: {} packets, {} pps ({:.3} Mpps), {} dropped",
            self.tx_packets,
            human_count(self.tx_pps()),
            self.tx_pps() / 1e6,
            self.tx_dropped
        )?;
        writeln!(
            out,
            "  cpu: {:.2} s in {:.2} s ({:.0}%)",
            self.cpu_s,
            self.seconds,
            if self.seconds > 0.0 {
                self.cpu_s / self.seconds * 100.0
            } else {
                0.0
            }
        )
    }
}

fn mac_string(m: [u8; 6]) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}

fn setup_err(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(SetupFailed(msg.into()))
}

/// An injected frame: broadcast destination, `src`, EtherType 0x88b5, the
/// frame number, zeros.
fn make_frame(buf: &mut [u8], src: [u8; 6], n: u32) {
    buf.fill(0);
    buf[..6].fill(0xff);
    buf[6..12].copy_from_slice(&src);
    buf[12..14].copy_from_slice(&ETHERTYPE);
    if let Some(b) = buf.get_mut(14..18) {
        b.copy_from_slice(&n.to_be_bytes());
    }
}

/// Connects and sets the device up.
fn setup(a: &NetArgs) -> anyhow::Result<Driver> {
    if a.time.is_zero() {
        return Err(setup_err("--time must be more than 0"));
    }
    let topts = TransportOptions {
        device_type: Some(DeviceType(VIRTIO_ID_NET)),
        max_queue_size: a.queue_size,
        timeout: TIMEOUT,
        // Rings, receive buffers (2 KiB, twice: the spares) and transmit
        // slots per entry.
        memory_size: usize::from(a.queue_size) * (4096 + 3 * 9216) + (4 << 20),
        ..TransportOptions::default()
    };
    let path = &a.socket_path;
    let transport = VhostUserTransport::connect(path, topts)
        .map_err(|e| setup_err(format!("connecting to {}: {e}", path.display())))?;
    let mem = transport.memory().clone();
    // The benchmark needs no controlq. A backend without a configuration
    // space (no VHOST_USER_PROTOCOL_F_CONFIG, e.g. DPDK's vhost library,
    // where the VMM owns the config) reads as zeros: do not accept the
    // features whose fields would then be read (§5.1.4), and let the
    // driver generate an address.
    let mut withhold = vec![VIRTIO_NET_F_CTRL_VQ];
    if !transport.has_protocol(protocol::CONFIG) {
        withhold.extend([
            VIRTIO_NET_F_MAC,
            VIRTIO_NET_F_MTU,
            VIRTIO_NET_F_STATUS,
            VIRTIO_NET_F_SPEED_DUPLEX,
            VIRTIO_NET_F_MQ,
        ]);
    }
    withhold.extend(&a.withhold);
    let nopts = NetOptions {
        queue_pairs: 1,
        queue_size: a.queue_size,
        ring: if a.packed {
            RingPreference::Packed
        } else {
            RingPreference::Split
        },
        withhold: FeatureSet::from_bits(&withhold),
        rx_buffer_len: a.rx_buffer_len,
        ..NetOptions::default()
    };
    let drv = NetDriver::new(transport, mem, nopts).map_err(|e| match e {
        NetError::Setup(DriverSetupError::PackedUnavailable) => {
            setup_err("--packed: the backend does not offer VIRTIO_F_RING_PACKED")
        }
        e => setup_err(format!("setting up the network device: {e}")),
    })?;
    let mtu_frame = usize::from(drv.mtu()) + 14;
    if usize::from(a.size) > mtu_frame {
        return Err(setup_err(format!(
            "--size {}: the device's MTU {} allows frames of {mtu_frame} bytes",
            a.size,
            drv.mtu()
        )));
    }
    Ok(drv)
}

/// Why the backend failed, from a transport error.
fn backend_failure(drv: &mut Driver, e: TransportError) -> anyhow::Error {
    let t = drv.transport();
    let why = t.error().map_or_else(|| e.to_string(), str::to_owned);
    match e {
        TransportError::Unresponsive => anyhow!(
            "nothing arrived in {} s (frames lost; the peer does not forward?)",
            TIMEOUT.as_secs()
        ),
        _ => anyhow!("lost the backend: {why}"),
    }
}

/// Reuses the allocation of an empty frame list for frames of another
/// lifetime (no allocation: the element layout is the same).
fn recycle<'b>(mut v: Vec<TxFrame<'_>>) -> Vec<TxFrame<'b>> {
    v.clear();
    v.into_iter().map(|_| TxFrame::new(&[])).collect()
}

/// Counters of one progress interval or of the whole run.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    rx: u64,
    rx_bytes: u64,
    tx: u64,
    dropped: u64,
}

/// Runs the benchmark.
pub fn run_net(a: &NetArgs, progress: bool) -> anyhow::Result<NetBenchResult> {
    let mut drv = setup(a)?;
    let poll = !a.no_poll;
    // A polling driver never needs the device's used buffer notifications.
    drv.set_rx_polling(poll);
    let ring = match drv.ring_format() {
        RingFormat::Split => "split",
        RingFormat::Packed => "packed",
    };
    let mac = drv.mac();
    let burst = usize::from(a.burst);
    let stride = (usize::from(drv.mtu()) + 18).max(usize::from(a.size));
    // Frames of the current batch: frame i at bufs[i * stride..][..lens[i]].
    let mut bufs = vec![0u8; burst * stride];
    let mut lens = vec![0usize; burst];
    let mut frames: Vec<TxFrame<'static>> = Vec::with_capacity(burst);
    let mut held: Vec<NetBuf> = Vec::with_capacity(burst);

    // The frames to inject: `a.inject` bursts, sent one per round of the
    // forwarding loop, so that frames the peer turns around at once find
    // receive buffers (injecting everything first overflowed the receive
    // ring, and the peer dropped all but a ring's worth).
    let size = usize::from(a.size);
    let mut tmpl = vec![0u8; burst * stride];
    for (i, chunk) in tmpl.chunks_mut(stride).enumerate() {
        make_frame(&mut chunk[..size], mac, i as u32);
    }
    let mut injected = 0u64;
    let mut to_inject = a.inject;
    if progress {
        eprintln!(
            "ringwork bench net: io-forward, {size} B frames, burst {burst}, {} bursts injected, \
             {ring} rings of {}, {} waits, {:.1} s",
            a.inject,
            a.queue_size,
            if poll { "polled" } else { "interrupt" },
            a.time.as_secs_f64()
        );
    }

    let cpu0 = cpu_time(None)?;
    let start = Instant::now();
    let end = start + a.time;
    let mut next_tick = start + Duration::from_secs(1);
    let mut tick = Counts::default();
    let mut total = Counts::default();
    let mut now;
    let mut rounds = 0u32;
    loop {
        if to_inject > 0 {
            let mut f = recycle(std::mem::take(&mut frames));
            f.extend(tmpl.chunks(stride).map(|c| TxFrame::new(&c[..size])));
            let n = drv
                .send_batch(0, &f)
                .map_err(|e| anyhow!("injecting frames: {e}"))?;
            frames = recycle(f);
            injected += n as u64;
            if n > 0 {
                to_inject -= 1;
            }
        }
        rounds = rounds.wrapping_add(1);
        if rounds % CLOCK_EVERY == 0 {
            now = Instant::now();
            if now >= end {
                break;
            }
            if now >= next_tick {
                if progress {
                    let secs = (now - start).as_secs_f64().round();
                    eprintln!(
                        "[{secs:>3}s] rx {} pps, tx {} pps",
                        human_count(tick.rx as f64),
                        human_count(tick.tx as f64)
                    );
                }
                tick = Counts::default();
                next_tick += Duration::from_secs(1);
                // send_batch takes completed buffers back; this catches up
                // while nothing arrives.
                drv.reclaim(0).map_err(|e| anyhow!("transmit queue: {e}"))?;
                if drv.transport().take_queue_error(0) || drv.transport().take_queue_error(1) {
                    bail!("the backend signalled an error on a queue (its err eventfd)");
                }
            }
        }
        let (got, sent, bytes) = if a.copy {
            let mut k = 0usize;
            let mut bytes = 0u64;
            let got = drv
                .recv_batch(0, burst, |data, _| {
                    if let (Some(dst), Some(l)) = (
                        bufs.get_mut(k * stride..k * stride + data.len()),
                        lens.get_mut(k),
                    ) {
                        dst.copy_from_slice(data);
                        *l = data.len();
                        bytes += data.len() as u64;
                        k += 1;
                    }
                })
                .map_err(|e| anyhow!("receiving: {e}"))?;
            let mut sent = 0;
            if got > 0 {
                let mut f = recycle(std::mem::take(&mut frames));
                f.extend(
                    bufs.chunks(stride)
                        .zip(&lens)
                        .take(k)
                        .map(|(c, &l)| TxFrame::new(&c[..l])),
                );
                sent = drv.send_batch(0, &f).map_err(|e| anyhow!("sending: {e}"))?;
                frames = recycle(f);
            }
            (got, sent, bytes)
        } else {
            let got = drv
                .recv_bufs(0, burst, &mut held)
                .map_err(|e| anyhow!("receiving: {e}"))?;
            let bytes: u64 = held.iter().map(|b| b.len() as u64).sum();
            let mut sent = 0;
            if got > 0 {
                sent = drv
                    .send_bufs(0, &mut held)
                    .map_err(|e| anyhow!("sending: {e}"))?;
                // Not sent (transmitq full): dropped, as testpmd does.
                drv.release_bufs(held.drain(..));
            }
            (got, sent, bytes)
        };
        if got == 0 {
            if !poll {
                drv.reclaim(0).map_err(|e| anyhow!("transmit queue: {e}"))?;
                // Re-check the clock soon, then block.
                rounds = CLOCK_EVERY - 1;
                if let Err(e) = drv.transport().wait_interrupt() {
                    return Err(backend_failure(&mut drv, e));
                }
            }
            continue;
        }
        tick.rx += got as u64;
        tick.tx += sent as u64;
        total.rx += got as u64;
        total.rx_bytes += bytes;
        total.tx += sent as u64;
        total.dropped += (got - sent) as u64;
    }
    let seconds = (now - start).as_secs_f64();
    let cpu_s = (cpu_time(None)? - cpu0).as_secs_f64();
    let features = drv
        .features()
        .words()
        .iter()
        .rev()
        .fold(0u128, |acc, &w| (acc << 32) | u128::from(w));
    let rx_buffer_len = drv.rx_buffer_len();
    let detached = drv.reset();
    if let Err(e) = detached.reset {
        tracing::debug!("device reset after the run: {e}");
    }
    Ok(NetBenchResult {
        ring,
        queue_size: a.queue_size,
        frame_size: a.size,
        burst: a.burst,
        injected,
        wait: if poll { "poll" } else { "interrupt" },
        forward: if a.copy { "copy" } else { "in-place" },
        mac,
        seconds,
        rx_packets: total.rx,
        rx_bytes: total.rx_bytes,
        tx_packets: total.tx,
        tx_dropped: total.dropped,
        cpu_s,
        features,
        rx_buffer_len,
    })
}

/// Runs `ringwork bench net`.
pub fn run(a: NetArgs) -> ExitCode {
    super::finish(
        "ringwork bench net",
        run_net(&a, !a.quiet),
        a.json,
        |r| r.to_json(),
        |r, out| r.print(out),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_broadcast_from_our_address() {
        let mut b = [7u8; 64];
        make_frame(&mut b, [2, 0, 0, 0, 0, 1], 5);
        assert_eq!(&b[..6], &[0xff; 6]);
        assert_eq!(&b[6..12], &[2, 0, 0, 0, 0, 1]);
        assert_eq!(&b[12..14], &ETHERTYPE);
        assert_eq!(&b[14..18], &5u32.to_be_bytes());
        assert!(b[18..].iter().all(|&x| x == 0));
    }

    #[test]
    fn recycled_frame_lists_keep_their_allocation() {
        let mut v: Vec<TxFrame<'static>> = Vec::with_capacity(32);
        let cap = v.capacity();
        let ptr = v.as_ptr() as usize;
        let data = vec![1u8; 20];
        let mut w = recycle(std::mem::take(&mut v));
        w.push(TxFrame::new(&data));
        let v2: Vec<TxFrame<'static>> = recycle(w);
        assert_eq!(v2.capacity(), cap);
        assert_eq!(v2.as_ptr() as usize, ptr);
    }
}
