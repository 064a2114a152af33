//! The benchmark's result: human-readable and JSON reports.

use std::io::{self, Write};

use serde_json::{json, Value};

use super::hist::Histogram;
use super::Rw;

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LatencySummary {
    /// Smallest.
    pub min: f64,
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest.
    pub max: f64,
}

impl LatencySummary {
    /// From a histogram of nanoseconds.
    pub(super) fn from_hist(h: &Histogram) -> Self {
        let us = |ns: u64| ns as f64 / 1000.0;
        Self {
            min: us(h.min()),
            mean: h.mean() / 1000.0,
            p50: us(h.quantile(0.5)),
            p99: us(h.quantile(0.99)),
            p999: us(h.quantile(0.999)),
            max: us(h.max()),
        }
    }

    fn to_json(self) -> Value {
        let r = |v: f64| (v * 1000.0).round() / 1000.0;
        json!({
            "min": r(self.min),
            "mean": r(self.mean),
            "p50": r(self.p50),
            "p99": r(self.p99),
            "p999": r(self.p999),
            "max": r(self.max),
        })
    }
}

/// Completed requests of one kind (or all) in the measured time.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct OpStats {
    /// Requests completed.
    pub ios: u64,
    /// Bytes transferred.
    pub bytes: u64,
    /// Submission to completion.
    pub lat_us: LatencySummary,
}

impl OpStats {
    pub(super) fn from_hist(h: &Histogram, bs: u64) -> Self {
        Self {
            ios: h.count(),
            bytes: h.count() * bs,
            lat_us: LatencySummary::from_hist(h),
        }
    }

    fn per_s(v: u64, seconds: f64) -> f64 {
        if seconds > 0.0 {
            v as f64 / seconds
        } else {
            0.0
        }
    }

    fn to_json(self, seconds: f64) -> Value {
        json!({
            "ios": self.ios,
            "iops": Self::per_s(self.ios, seconds).round(),
            "bandwidth_bytes_per_s": Self::per_s(self.bytes, seconds).round(),
            "lat_us": self.lat_us.to_json(),
        })
    }
}

/// What `ringwork bench blk` measured.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchResult {
    /// Access pattern.
    pub rw: Rw,
    /// Bytes per request.
    pub bs: u64,
    /// Requests in flight per queue.
    pub iodepth: u16,
    /// Queues used.
    pub queues: u16,
    /// Entries per queue.
    pub queue_size: u16,
    /// "split" or "packed".
    pub ring: &'static str,
    /// How completions were waited for: "interrupt" or "poll".
    pub wait: &'static str,
    /// Bytes of the disk used.
    pub region_bytes: u64,
    /// Measured wall-clock time.
    pub seconds: f64,
    /// All requests.
    pub total: OpStats,
    /// Reads, for [`Rw::Mixed`].
    pub read: Option<OpStats>,
    /// Writes, for [`Rw::Mixed`].
    pub write: Option<OpStats>,
    /// CPU time of this process in the measured time.
    pub frontend_cpu_s: f64,
    /// CPU time of the backend in the measured time (`--backend-pid`).
    pub backend_cpu_s: Option<f64>,
}

impl BenchResult {
    /// Requests per second.
    pub fn iops(&self) -> f64 {
        OpStats::per_s(self.total.ios, self.seconds)
    }

    /// Bytes per second.
    pub fn bandwidth(&self) -> f64 {
        OpStats::per_s(self.total.bytes, self.seconds)
    }

    /// Requests per second of backend CPU time.
    pub fn iops_per_backend_cpu_s(&self) -> Option<f64> {
        self.backend_cpu_s.map(|c| {
            if c > 0.0 {
                self.total.ios as f64 / c
            } else {
                0.0
            }
        })
    }

    /// The JSON report.
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "rw": self.rw.name(),
            "bs": self.bs,
            "iodepth": self.iodepth,
            "queues": self.queues,
            "queue_size": self.queue_size,
            "ring": self.ring,
            "wait": self.wait,
            "size": self.region_bytes,
            "seconds": (self.seconds * 1000.0).round() / 1000.0,
            "ios": self.total.ios,
            "iops": self.iops().round(),
            "bandwidth_bytes_per_s": self.bandwidth().round(),
            "lat_us": self.total.lat_us.to_json(),
            "frontend_cpu_s": self.frontend_cpu_s,
            "backend_cpu_s": self.backend_cpu_s,
            "iops_per_backend_cpu_s": self.iops_per_backend_cpu_s().map(f64::round),
        });
        if let Some(r) = self.read {
            v["read"] = r.to_json(self.seconds);
        }
        if let Some(w) = self.write {
            v["write"] = w.to_json(self.seconds);
        }
        v
    }

    /// The human-readable report.
    pub fn print(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(
            out,
            "{}: bs {}, iodepth {}, {} queue{} of {}, {} rings, {} waits, {} region, {:.2} s",
            self.rw.name(),
            human_bytes(self.bs),
            self.iodepth,
            self.queues,
            if self.queues == 1 { "" } else { "s" },
            self.queue_size,
            self.ring,
            self.wait,
            human_bytes(self.region_bytes),
            self.seconds,
        )?;
        let mut line = |name: &str, s: &OpStats| -> io::Result<()> {
            let iops = OpStats::per_s(s.ios, self.seconds);
            let bw = OpStats::per_s(s.bytes, self.seconds);
            writeln!(
                out,
                "  {name:<5} IOPS {:.0} ({}), BW {:.1} MiB/s ({:.1} MB/s), {} I/Os",
                iops,
                human_count(iops),
                bw / (1 << 20) as f64,
                bw / 1e6,
                s.ios,
            )?;
            let l = &s.lat_us;
            writeln!(
                out,
                "        lat (us): min {:.1}, mean {:.1}, p50 {:.1}, p99 {:.1}, p99.9 {:.1}, max {:.1}",
                l.min, l.mean, l.p50, l.p99, l.p999, l.max
            )
        };
        let name = match self.rw {
            Rw::Randread | Rw::Read => "read",
            Rw::Randwrite | Rw::Write => "write",
            Rw::Mixed => "all",
        };
        line(name, &self.total)?;
        if let Some(r) = &self.read {
            line("read", r)?;
        }
        if let Some(w) = &self.write {
            line("write", w)?;
        }
        let pct = |c: f64| {
            if self.seconds > 0.0 {
                c / self.seconds * 100.0
            } else {
                0.0
            }
        };
        write!(
            out,
            "  cpu   frontend {:.2} s ({:.0}%)",
            self.frontend_cpu_s,
            pct(self.frontend_cpu_s)
        )?;
        if let (Some(b), Some(per)) = (self.backend_cpu_s, self.iops_per_backend_cpu_s()) {
            write!(
                out,
                ", backend {b:.2} s ({:.0}%), {per:.0} I/Os per backend CPU-second",
                pct(b)
            )?;
        }
        writeln!(out)
    }
}

/// 4096 -> "4KiB", 1073741824 -> "1GiB"; exact multiples only, else bytes.
pub(super) fn human_bytes(v: u64) -> String {
    for (shift, unit) in [(40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")] {
        if v >= 1 << shift && v % (1 << shift) == 0 {
            return format!("{}{unit}", v >> shift);
        }
    }
    format!("{v}B")
}

/// 412345.6 -> "412.3k".
pub(super) fn human_count(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> BenchResult {
        let mut h = Histogram::new();
        for v in [10_000, 20_000, 30_000] {
            h.record(v);
        }
        let s = OpStats::from_hist(&h, 4096);
        BenchResult {
            rw: Rw::Mixed,
            bs: 4096,
            iodepth: 4,
            queues: 2,
            queue_size: 128,
            ring: "split",
            wait: "interrupt",
            region_bytes: 1 << 30,
            seconds: 2.0,
            total: s,
            read: Some(s),
            write: Some(OpStats::default()),
            frontend_cpu_s: 1.0,
            backend_cpu_s: Some(0.5),
        }
    }

    #[test]
    fn json_has_the_documented_fields() {
        let v = sample().to_json();
        assert_eq!(v["rw"], "mixed");
        assert_eq!(v["ios"], 3);
        assert_eq!(v["iops"], 2.0);
        assert_eq!(v["bandwidth_bytes_per_s"], 6144.0);
        assert_eq!(v["lat_us"]["max"], 30.0);
        assert_eq!(v["iops_per_backend_cpu_s"], 6.0);
        assert_eq!(v["read"]["ios"], 3);
        assert_eq!(v["write"]["ios"], 0);
        let mut text = Vec::new();
        sample().print(&mut text).unwrap();
        let text = String::from_utf8(text).unwrap();
        assert!(text.contains("IOPS 2 "), "{text}");
        assert!(text.contains("backend 0.50 s"), "{text}");
        assert_eq!(human_bytes(4096), "4KiB");
        assert_eq!(human_bytes(1000), "1000B");
        assert_eq!(human_count(412_345.0), "412.3k");
    }
}
