//! CPU time of a process from `/proc/PID/stat` (utime + stime, all
//! threads, in clock ticks of `USER_HZ`).

use std::time::Duration;

/// Clock ticks per second in `/proc/PID/stat` (`USER_HZ`, 100 on every
/// Linux architecture this runs on; `sysconf(_SC_CLK_TCK)` says the same).
const USER_HZ: u64 = 100;

/// utime + stime of process `pid` (`None`: this process).
pub fn cpu_time(pid: Option<u32>) -> std::io::Result<Duration> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/stat"),
        None => "/proc/self/stat".to_owned(),
    };
    let text = std::fs::read_to_string(&path)?;
    parse_stat(&text).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{path}: unexpected format"),
        )
    })
}

/// utime + stime from the text of a `stat` file. The command name (field
/// 2) is in parentheses and may contain spaces and parentheses: fields are
/// counted after the last `)`.
fn parse_stat(text: &str) -> Option<Duration> {
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    // After the name: state (3), ..., utime (14), stime (15).
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    let ticks = utime + stime;
    Some(Duration::from_millis(ticks * 1000 / USER_HZ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_lines() {
        let line =
            "1234 (my (odd) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 3 0 1 2 3";
        assert_eq!(parse_stat(line), Some(Duration::from_millis(3250)));
        assert_eq!(parse_stat("1 (x) S 1"), None);
        assert!(cpu_time(None).is_ok());
        assert!(cpu_time(Some(std::process::id())).is_ok());
    }
}
