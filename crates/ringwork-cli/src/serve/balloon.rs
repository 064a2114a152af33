//! `ringwork serve balloon`: the memory balloon (VIRTIO 1.4 §5.5) and its
//! control socket.
//!
//! The control socket (`--control PATH`) takes text lines and answers
//! each with one line:
//!
//! * `target <N>M|<N>G|<N>K|<N>pages|<N>` (bytes without a suffix) →
//!   `ok`: sets `num_pages` and notifies the driver.
//! * `status` → `target=<bytes> actual=<bytes> inflated=<bytes>
//!   resident=<bytes> guest=<bytes> driver=<active|idle> stats_updates=<n>
//!   ... stats: <name>=<value>...` (sizes in bytes; `resident` is the guest
//!   memory resident on the host as the backend maps it, by `mincore`, or
//!   `unknown` without a running driver).
//! * `stats` → asks the driver for fresh statistics, waits up to 2 s, then
//!   answers like `status`.
//! * `hint start|stop|done` → `ok <cmd id>`: a free page hinting round.
//!
//! Errors are answered `error <reason>`. Lines are at most 256 bytes.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use ringwork_device::balloon::{Balloon, BalloonHandle, BalloonOptions, BalloonStatus};
use ringwork_device::model::Device;
use ringwork_spec::balloon::VIRTIO_BALLOON_PAGE_SIZE;

/// Longest control line accepted.
const MAX_LINE: u64 = 256;
const WAIT: Duration = Duration::from_secs(2);

/// Balloon options.
#[derive(Debug, Args)]
pub struct BalloonArgs {
    /// A unix socket this process listens on for control lines (`target
    /// 64M`, `status`, `stats`, `hint start|stop|done`).
    #[arg(long, value_name = "PATH")]
    control: Option<PathBuf>,
    /// The initial target: bytes with an optional K/M/G suffix, or
    /// `<N>pages` (4 KiB pages).
    #[arg(long, value_name = "SIZE", default_value = "0")]
    target: String,
    /// Ask the driver for fresh memory statistics every SECS seconds (0:
    /// only on demand).
    #[arg(long, value_name = "SECS", default_value_t = 0.0)]
    stats_interval: f64,
    /// Do not offer the statistics queue (VIRTIO_BALLOON_F_STATS_VQ).
    #[arg(long)]
    no_stats: bool,
    /// Offer VIRTIO_BALLOON_F_DEFLATE_ON_OOM.
    #[arg(long)]
    deflate_on_oom: bool,
    /// Offer VIRTIO_BALLOON_F_FREE_PAGE_HINT.
    #[arg(long)]
    free_page_hint: bool,
    /// Offer VIRTIO_BALLOON_F_PAGE_REPORTING.
    #[arg(long)]
    page_reporting: bool,
    /// Offer VIRTIO_BALLOON_F_PAGE_POISON.
    #[arg(long)]
    page_poison: bool,
}

/// Parses a size (`64M`, `1G`, `4096`, `100pages`) into 4 KiB pages.
pub fn parse_pages(s: &str) -> anyhow::Result<u32> {
    let s = s.trim();
    let page = VIRTIO_BALLOON_PAGE_SIZE as u64;
    let pages = if let Some(n) = s.strip_suffix("pages") {
        n.trim().parse::<u64>().context("page count")?
    } else {
        let (num, mult) = match s.char_indices().last() {
            Some((i, 'K' | 'k')) => (&s[..i], 1u64 << 10),
            Some((i, 'M' | 'm')) => (&s[..i], 1 << 20),
            Some((i, 'G' | 'g')) => (&s[..i], 1 << 30),
            _ => (s, 1),
        };
        let bytes = num
            .trim()
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(mult))
            .ok_or_else(|| anyhow::anyhow!("`{s}`: expected <N>[K|M|G] or <N>pages"))?;
        if bytes % page != 0 {
            anyhow::bail!("`{s}`: not a multiple of {page} bytes");
        }
        bytes / page
    };
    u32::try_from(pages).map_err(|_| anyhow::anyhow!("`{s}`: more than 2^32 pages"))
}

pub fn build(a: &BalloonArgs) -> anyhow::Result<Arc<dyn Device>> {
    if !(a.stats_interval >= 0.0 && a.stats_interval.is_finite()) {
        anyhow::bail!("--stats-interval must be a non-negative number of seconds");
    }
    let opts = BalloonOptions {
        target_pages: parse_pages(&a.target).context("--target")?,
        stats_vq: !a.no_stats,
        stats_interval: (a.stats_interval > 0.0).then(|| Duration::from_secs_f64(a.stats_interval)),
        deflate_on_oom: a.deflate_on_oom,
        free_page_hint: a.free_page_hint,
        page_reporting: a.page_reporting,
        page_poison: a.page_poison,
        ..BalloonOptions::default()
    };
    let balloon = Balloon::new(opts).context("setting up the balloon")?;
    if let Some(path) = &a.control {
        let listener = super::bind_control(path)?;
        let handle = balloon.handle();
        std::thread::Builder::new()
            .name("ringwork-balloon-control".into())
            .spawn(move || accept_loop(listener, handle))
            .context("starting the control thread")?;
        tracing::info!("balloon control socket {}", path.display());
    }
    Ok(Arc::new(balloon))
}

fn accept_loop(listener: UnixListener, handle: BalloonHandle) {
    for conn in listener.incoming() {
        match conn {
            Ok(c) => {
                let h = handle.clone();
                let spawned = std::thread::Builder::new()
                    .name("ringwork-balloon-client".into())
                    .spawn(move || {
                        if let Err(e) = serve_client(c, &h) {
                            tracing::debug!("balloon control client: {e}");
                        }
                    });
                if let Err(e) = spawned {
                    tracing::warn!("balloon control: no thread for a client: {e}");
                }
            }
            Err(e) => {
                tracing::warn!("balloon control accept failed: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

fn serve_client(conn: UnixStream, handle: &BalloonHandle) -> std::io::Result<()> {
    let mut out = conn.try_clone()?;
    let mut reader = BufReader::new(conn);
    loop {
        let mut line = Vec::new();
        let n = (&mut reader).take(MAX_LINE).read_until(b'\n', &mut line)?;
        if n == 0 {
            return Ok(());
        }
        let reply = if line.last() != Some(&b'\n') && n as u64 == MAX_LINE {
            // Skip the rest of an overlong line.
            let mut rest = Vec::new();
            reader.read_until(b'\n', &mut rest)?;
            format!("error line longer than {MAX_LINE} bytes")
        } else {
            match std::str::from_utf8(&line) {
                Ok(text) => command(text.trim(), handle),
                Err(_) => "error not UTF-8".into(),
            }
        };
        out.write_all(reply.as_bytes())?;
        out.write_all(b"\n")?;
    }
}

/// Handles one control line; returns the answer (without newline).
pub fn command(line: &str, handle: &BalloonHandle) -> String {
    let mut words = line.split_whitespace();
    match (words.next(), words.next(), words.next()) {
        (Some("target"), Some(size), None) => match parse_pages(size) {
            Ok(pages) => {
                let sent = handle.set_target_pages(pages);
                tracing::info!(
                    "balloon target {pages} pages{}",
                    if sent { "" } else { " (no driver yet)" }
                );
                "ok".into()
            }
            Err(e) => format!("error {e:#}"),
        },
        (Some("status"), None, None) => status_line(handle),
        (Some("stats"), None, None) => {
            let seen = handle.status().stats_updates;
            match handle.request_stats() {
                Ok(()) if handle.wait_stats(seen, WAIT) => status_line(handle),
                Ok(()) => format!("error no statistics within {WAIT:?}"),
                Err(e) => format!("error {e}"),
            }
        }
        (Some("hint"), Some(what), None) => {
            let r = match what {
                "start" => handle.start_free_page_hint(),
                "stop" => handle.stop_free_page_hint().map(|()| 0),
                "done" => handle.finish_free_page_hint().map(|()| 1),
                _ => return "error hint start|stop|done".into(),
            };
            match r {
                Ok(id) => format!("ok {id}"),
                Err(e) => format!("error {e}"),
            }
        }
        _ => "error commands: target SIZE | status | stats | hint start|stop|done".into(),
    }
}

/// The counters are read before the memory scan, so `resident` already
/// reflects every page the counters say was discarded (a report that
/// arrives in between can only lower it further).
fn status_line(handle: &BalloonHandle) -> String {
    let status = handle.status();
    let mem = if status.driver_active {
        handle.scan_memory(WAIT)
    } else {
        None
    };
    format_status(&status, mem.map(|m| (m.resident_bytes, m.total_bytes)))
}

/// The `status` answer for `st` with (resident, total) guest memory.
pub fn format_status(st: &BalloonStatus, mem: Option<(u64, u64)>) -> String {
    let page = VIRTIO_BALLOON_PAGE_SIZE as u64;
    let (resident, guest) = match mem {
        Some((r, t)) => (r.to_string(), t.to_string()),
        None => ("unknown".into(), "unknown".into()),
    };
    let c = &st.counters;
    format!(
        "target={} actual={} inflated={} resident={resident} guest={guest} driver={} \
         stats_updates={} bad_pfns={} discard_failures={} reported={} reported_kept={} \
         poison={} hint_cmd={} driver_cmd={} hinted={} stats: {}",
        u64::from(st.target_pages) * page,
        u64::from(st.actual_pages) * page,
        st.inflated_bytes(),
        if st.driver_active { "active" } else { "idle" },
        st.stats_updates,
        c.bad_pfns,
        c.discard_failures,
        c.reported_bytes,
        c.reported_kept_bytes,
        st.poison_val
            .map_or_else(|| "none".to_string(), |v| format!("{v:#x}")),
        st.free_page_hint.cmd_id,
        st.free_page_hint
            .driver_cmd_id
            .map_or_else(|| "none".to_string(), |v| v.to_string()),
        st.free_page_hint.hinted_bytes,
        st.stats.as_ref().map(|s| s.summary()).unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_pages("64M").unwrap(), 16384);
        assert_eq!(parse_pages("1G").unwrap(), 262144);
        assert_eq!(parse_pages("8k").unwrap(), 2);
        assert_eq!(parse_pages("4096").unwrap(), 1);
        assert_eq!(parse_pages("0").unwrap(), 0);
        assert_eq!(parse_pages("100pages").unwrap(), 100);
        assert!(parse_pages("100").is_err(), "not whole pages");
        assert!(parse_pages("M").is_err());
        assert!(parse_pages("-1M").is_err());
        assert!(parse_pages("99999999G").is_err());
        assert!(parse_pages("5000000000pages").is_err());
    }

    #[test]
    fn commands_without_driver() {
        let b = Balloon::new(BalloonOptions::default()).unwrap();
        let h = b.handle();
        assert_eq!(command("target 64M", &h), "ok");
        assert_eq!(h.target_pages(), 16384);
        assert!(command("target lots", &h).starts_with("error"));
        assert!(command("frobnicate", &h).starts_with("error"));
        assert!(
            command("hint start", &h).starts_with("error"),
            "not negotiated"
        );
        let s = format_status(&h.status(), None);
        assert!(
            s.starts_with("target=67108864 actual=0 inflated=0 resident=unknown"),
            "{s}"
        );
        assert!(s.contains("driver=idle"));
    }
}
