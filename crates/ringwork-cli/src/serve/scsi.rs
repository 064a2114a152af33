//! `ringwork serve scsi`: the SCSI host device's options (`--lun`
//! specifications) and its hot-plug control socket (`--control PATH`: a
//! unix socket accepting one command per line, `add T:L PATH [readonly]`,
//! `remove T:L`, `list`, each answered `ok` (with the list after `list`)
//! or `error: ...`).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use ringwork_device::model::Device;
use ringwork_device::scsi::{LunSpec, Scsi, ScsiHandle, ScsiOptions};

/// SCSI device options.
#[derive(Debug, Args)]
pub struct ScsiArgs {
    // (`help` rather than a doc comment: the brackets are not links.)
    #[arg(
        long = "lun",
        value_name = "SPEC",
        help = "A logical unit: PATH[,target=T][,lun=L][,readonly][,block-size=512|4096][,serial=S]. \
                Repeatable. The target defaults to 0, the LUN to the next free one on the target."
    )]
    luns: Vec<String>,
    /// Number of request queues.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    queues: u16,
    /// Largest queue size accepted (a power of two, 4 to 32768).
    #[arg(long, default_value_t = 256)]
    queue_size: u16,
    /// Listen on this unix socket for hot-plug commands, one per line:
    /// `add T:L PATH [readonly]`, `remove T:L`, `list`.
    #[arg(long, value_name = "PATH")]
    control: Option<PathBuf>,
}

/// Parses a `--lun` specification; `taken` are the (target, lun) pairs
/// given before it.
pub(super) fn parse_lun(spec: &str, taken: &[(u8, u16)]) -> anyhow::Result<LunSpec> {
    let mut parts = spec.split(',');
    let path = parts.next().unwrap_or_default();
    if path.is_empty() {
        anyhow::bail!("--lun `{spec}`: no image path");
    }
    let (mut target, mut lun, mut readonly, mut bs, mut serial) = (0u8, None, false, 512, None);
    for p in parts {
        match p.split_once('=') {
            Some(("target", v)) => {
                target = v
                    .parse()
                    .with_context(|| format!("--lun `{spec}`: target `{v}`"))?
            }
            Some(("lun", v)) => {
                lun = Some(
                    v.parse()
                        .with_context(|| format!("--lun `{spec}`: lun `{v}`"))?,
                )
            }
            Some(("block-size", v)) => {
                bs = v
                    .parse()
                    .with_context(|| format!("--lun `{spec}`: block-size `{v}`"))?
            }
            Some(("serial", v)) => serial = Some(v.to_owned()),
            None if p == "readonly" || p == "ro" => readonly = true,
            _ => anyhow::bail!(
                "--lun `{spec}`: unknown option `{p}` (expected target=T, lun=L, readonly, \
                 block-size=N or serial=S)"
            ),
        }
    }
    let lun = match lun {
        Some(l) => l,
        None => (0..=16383u16)
            .find(|l| !taken.contains(&(target, *l)))
            .ok_or_else(|| anyhow::anyhow!("--lun `{spec}`: target {target} is full"))?,
    };
    Ok(LunSpec {
        readonly,
        block_size: bs,
        serial,
        ..LunSpec::new(target, lun, path)
    })
}

/// Opens the device and, with `--control`, starts the control socket.
pub(super) fn build_scsi(a: &ScsiArgs) -> anyhow::Result<Arc<dyn Device>> {
    let mut luns: Vec<LunSpec> = Vec::new();
    for s in &a.luns {
        let taken: Vec<(u8, u16)> = luns.iter().map(|l| (l.target, l.lun)).collect();
        luns.push(parse_lun(s, &taken)?);
    }
    let scsi = Scsi::open(ScsiOptions {
        luns: luns.clone(),
        num_queues: a.queues,
        queue_size: a.queue_size,
        ..ScsiOptions::default()
    })
    .context("opening the SCSI device")?;
    for l in &luns {
        tracing::info!(
            "LUN {}:{}: {}{}",
            l.target,
            l.lun,
            l.path.display(),
            if l.readonly { " (read-only)" } else { "" }
        );
    }
    if let Some(path) = &a.control {
        let listener = super::bind_control(path)?;
        let handle = scsi.handle();
        std::thread::Builder::new()
            .name("ringwork-scsi-control".into())
            .spawn(move || control_loop(&listener, &handle))
            .context("starting the control socket thread")?;
        tracing::info!("SCSI control socket on {}", path.display());
    }
    Ok(Arc::new(scsi))
}

fn control_loop(listener: &UnixListener, handle: &ScsiHandle) {
    for conn in listener.incoming() {
        match conn {
            Ok(s) => {
                if let Err(e) = serve_conn(s, handle) {
                    tracing::warn!("SCSI control connection: {e}");
                }
            }
            Err(e) => {
                tracing::warn!("SCSI control socket accept: {e}");
                return;
            }
        }
    }
}

fn serve_conn(s: UnixStream, handle: &ScsiHandle) -> std::io::Result<()> {
    let mut out = s.try_clone()?;
    for line in BufReader::new(s).lines() {
        let line = line?;
        let reply = match command(line.trim(), handle) {
            Ok(r) => r,
            Err(e) => format!("error: {e:#}"),
        };
        tracing::info!(
            "SCSI control: `{}` -> {}",
            line.trim(),
            reply.replace('\n', "; ")
        );
        out.write_all(reply.as_bytes())?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

fn address(s: &str) -> anyhow::Result<(u8, u16)> {
    let (t, l) = s
        .split_once(':')
        .ok_or_else(|| anyhow::anyhow!("`{s}`: expected TARGET:LUN"))?;
    Ok((
        t.parse().with_context(|| format!("target `{t}`"))?,
        l.parse().with_context(|| format!("lun `{l}`"))?,
    ))
}

/// Runs one control command.
pub(super) fn command(line: &str, handle: &ScsiHandle) -> anyhow::Result<String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        ["add", addr, path, rest @ ..] => {
            let (target, lun) = address(addr)?;
            let readonly = match rest {
                [] => false,
                ["readonly" | "ro"] => true,
                _ => anyhow::bail!("usage: add T:L PATH [readonly]"),
            };
            handle.add_lun(LunSpec {
                readonly,
                ..LunSpec::new(target, lun, *path)
            })?;
            Ok("ok".into())
        }
        ["remove", addr] => {
            let (target, lun) = address(addr)?;
            handle.remove_lun(target, lun)?;
            Ok("ok".into())
        }
        ["list"] => {
            let mut s = String::from("ok");
            for (t, l) in handle.luns() {
                s.push_str(&format!(" {t}:{l}"));
            }
            Ok(s)
        }
        _ => anyhow::bail!(
            "unknown command (expected `add T:L PATH [readonly]`, `remove T:L` or `list`)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lun_specs() {
        let l = parse_lun("a.img", &[]).unwrap();
        assert_eq!((l.target, l.lun, l.readonly), (0, 0, false));
        let l = parse_lun("b.img,target=2,readonly", &[(2, 0)]).unwrap();
        assert_eq!((l.target, l.lun, l.readonly), (2, 1, true));
        let l = parse_lun("c.img,lun=7,block-size=4096,serial=X1", &[]).unwrap();
        assert_eq!(
            (l.lun, l.block_size, l.serial.as_deref()),
            (7, 4096, Some("X1"))
        );
        assert!(parse_lun("", &[]).is_err());
        assert!(parse_lun("a,target=300", &[]).is_err());
        assert!(parse_lun("a,bogus", &[]).is_err());
    }

    #[test]
    fn control_commands() {
        let dir = std::env::temp_dir().join(format!("ringwork-cli-scsi-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let img = dir.join("a.img");
        std::fs::write(&img, vec![0u8; 4096]).unwrap();
        let scsi = Scsi::open(ScsiOptions::default()).unwrap();
        let h = scsi.handle();
        let add = format!("add 0:1 {} readonly", img.display());
        assert_eq!(command(&add, &h).unwrap(), "ok");
        assert_eq!(command("list", &h).unwrap(), "ok 0:1");
        assert!(command(&add, &h)
            .unwrap_err()
            .to_string()
            .contains("already exists"));
        assert!(command("remove 0:2", &h).is_err());
        assert!(command("remove x", &h).is_err());
        assert!(command("frobnicate", &h).is_err());
        assert_eq!(command("remove 0:1", &h).unwrap(), "ok");
        assert_eq!(command("list", &h).unwrap(), "ok");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
