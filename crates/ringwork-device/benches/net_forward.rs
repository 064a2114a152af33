//! The network device's forwarding path on one thread, cache-hot: frames
//! a driver transmits come back through the [`Loopback`] backend into its
//! receive buffers (`ringwork serve net --loopback`'s data path, without
//! the transport or a second core). Reports the device's time per frame;
//! the driver's side (the in-process fake) is set up outside the timing.
//! It measures the instructions the device spends per frame, not the cache
//! misses a real peer on another core adds (for those, see
//! docs/PERFORMANCE.md, "virtio-net: ringwork vs DPDK").
//!
//! `cargo bench -p ringwork-device --bench net_forward`

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use ringwork_device::harness::Harness;
use ringwork_device::model::Device;
use ringwork_device::net::{Loopback, MacAddr, Net, NetOptions, NetWorkers};
use ringwork_spec::features::{VIRTIO_F_RING_PACKED, VIRTIO_F_VERSION_1};
use ringwork_spec::net::VIRTIO_NET_F_MRG_RXBUF;

/// Frames forwarded by the bench just run (`bench/net-forward-ir.sh` divides
/// the instructions it counts by this).
static FRAMES: AtomicU64 = AtomicU64::new(0);

/// Frames per timed run (half a 256-entry ring, so the driver never waits).
const BURST: usize = 128;

fn device(packed: bool) -> Harness<Net> {
    let lb = Arc::new(Loopback::new(1).expect("eventfd"));
    let mac = MacAddr([0x52, 0x54, 0, 0, 0, 1]);
    let net = Net::new(
        NetOptions {
            workers: NetWorkers::One,
            ..NetOptions::new(mac)
        },
        lb,
    )
    .expect("net device");
    // What DPDK's virtio-user negotiates for io forwarding, roughly:
    // VERSION_1 and MRG_RXBUF, no offloads.
    let mut f = 1u64 << VIRTIO_F_VERSION_1 | 1 << VIRTIO_NET_F_MRG_RXBUF;
    if packed {
        f |= 1 << VIRTIO_F_RING_PACKED;
    }
    assert_eq!(net.features() & f, f, "features offered");
    Harness::with_features(net, f, 256).expect("harness")
}

/// A 64-byte broadcast frame behind a 12-byte header, for one segment (as
/// DPDK lays out a frame with its header in the headroom).
fn frame() -> Vec<u8> {
    let mut v = vec![0u8; 12];
    v.extend_from_slice(&[0xff; 6]);
    v.extend_from_slice(&[0x52, 0x54, 0, 0, 0, 2, 0x08, 0x00]);
    v.resize(12 + 64, 0xab);
    v
}

fn forward(c: &mut Criterion) {
    let mut g = c.benchmark_group("net_forward");
    g.measurement_time(Duration::from_secs(3));
    for packed in [false, true] {
        let name = if packed { "packed" } else { "split" };
        g.bench_function(BenchmarkId::new("loopback_64B", name), |b| {
            let mut h = device(packed);
            // The same buffers every round, so they stay in the cache: this
            // measures the device's own work per frame.
            let tx = h.put(&frame());
            let rx: Vec<_> = (0..BURST).map(|_| h.put(&[0u8; 2048])).collect();
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                let mut left = iters as usize;
                while left > 0 {
                    let n = left.min(BURST);
                    for r in &rx[..n] {
                        h.submit_segments(0, &[], &[*r]).expect("rx buffer");
                        h.submit_segments(1, &[tx], &[]).expect("tx frame");
                    }
                    let t = Instant::now();
                    h.run_polling().expect("device");
                    total += t.elapsed();
                    let rx = h.completed(0).expect("rx used");
                    let tx = h.completed(1).expect("tx used");
                    assert_eq!((rx.len(), tx.len()), (n, n), "every frame forwarded");
                    FRAMES.fetch_add(n as u64, Ordering::Relaxed);
                    left -= n;
                }
                total
            });
        });
        let frames = FRAMES.swap(0, Ordering::Relaxed);
        if frames > 0 {
            eprintln!("net_forward {name}: {frames} frames forwarded");
        }
    }
    g.finish();
}

criterion_group!(benches, forward);
criterion_main!(benches);
