//! The marker protocol between guest scripts and tests.
//!
//! A guest prints, each on a line of its own console (anything may precede
//! the marker on the line, e.g. interleaved kernel messages):
//!
//! * `RINGWORK-START` when `/init` has mounted the basics and loaded modules;
//! * `RINGWORK-CHECK <name> ok` for a passed check;
//! * `RINGWORK-CHECK <name> FAIL <detail>` for a failed one;
//! * `RINGWORK-INFO <name> <value>` for a measured value (queue counts, ...);
//! * `RINGWORK-EXIT <code>` with the exit status of the test body;
//! * `RINGWORK-DONE` last, just before powering off.
//!
//! The `/init` written by [`Initramfs`](crate::Initramfs) provides shell
//! functions that print these (`check`, `pass`, `fail`, `info`).

/// Outcome of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckStatus {
    /// `RINGWORK-CHECK <name> ok`.
    Ok,
    /// `RINGWORK-CHECK <name> FAIL <detail>`, with the detail.
    Fail(String),
}

/// One `RINGWORK-CHECK` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// The check's name (no whitespace).
    pub name: String,
    /// Its outcome.
    pub status: CheckStatus,
}

/// Everything the markers of one console output say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// Whether `RINGWORK-START` appeared.
    pub started: bool,
    /// All checks, in order of appearance (a name may repeat).
    pub checks: Vec<Check>,
    /// All `RINGWORK-INFO` lines as (name, value), in order.
    pub infos: Vec<(String, String)>,
    /// The test body's exit status from `RINGWORK-EXIT`, if printed.
    pub body_exit: Option<i32>,
    /// Whether `RINGWORK-DONE` appeared.
    pub done: bool,
}

impl CheckReport {
    /// The last status reported for check `name`.
    pub fn status(&self, name: &str) -> Option<&CheckStatus> {
        self.checks
            .iter()
            .rev()
            .find(|c| c.name == name)
            .map(|c| &c.status)
    }

    /// The last value reported by `RINGWORK-INFO <name> <value>`.
    pub fn info(&self, name: &str) -> Option<&str> {
        self.infos
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The problems that make this report a failure given the checks that
    /// must have passed: any failed check (expected or not), any expected
    /// check that is missing, and a missing `RINGWORK-DONE`. Empty means pass.
    pub fn problems(&self, expected: &[&str]) -> Vec<String> {
        let mut problems: Vec<String> = self
            .checks
            .iter()
            .filter_map(|c| match &c.status {
                CheckStatus::Fail(detail) => Some(format!("check `{}` failed: {detail}", c.name)),
                CheckStatus::Ok => None,
            })
            .collect();
        for name in expected {
            if self.status(name).is_none() {
                problems.push(format!("check `{name}` never reported"));
            }
        }
        if !self.started {
            problems.push(
                "RINGWORK-START never appeared (the guest did not reach /init's test body)".into(),
            );
        }
        if !self.done {
            problems.push(
                "RINGWORK-DONE never appeared (the guest crashed, hung or the body exited early)"
                    .into(),
            );
        }
        problems
    }
}

/// Finds `marker` followed by a space or the end of the line in `line` and
/// returns what follows it.
fn after_marker<'a>(line: &'a str, marker: &str) -> Option<&'a str> {
    let start = line.find(marker)? + marker.len();
    let rest = &line[start..];
    if rest.is_empty() || rest.starts_with(' ') {
        Some(rest.trim())
    } else {
        None
    }
}

/// Parses the marker lines of a console output.
pub fn parse_checks(console: &str) -> CheckReport {
    let mut report = CheckReport::default();
    for line in console.lines() {
        let line = line.trim_end_matches('\r');
        if let Some(rest) = after_marker(line, "RINGWORK-CHECK") {
            let mut parts = rest.splitn(3, ' ');
            let name = parts.next().unwrap_or_default().to_string();
            let status = match parts.next() {
                Some("ok") => CheckStatus::Ok,
                Some("FAIL") => CheckStatus::Fail(parts.next().unwrap_or("").trim().to_string()),
                other => {
                    CheckStatus::Fail(format!("malformed check line (status {other:?}): {line}"))
                }
            };
            report.checks.push(Check { name, status });
        } else if let Some(rest) = after_marker(line, "RINGWORK-INFO") {
            let (name, value) = rest.split_once(' ').unwrap_or((rest, ""));
            report
                .infos
                .push((name.to_string(), value.trim().to_string()));
        } else if let Some(rest) = after_marker(line, "RINGWORK-EXIT") {
            report.body_exit = rest.parse().ok();
        } else if after_marker(line, "RINGWORK-START").is_some() {
            report.started = true;
        } else if after_marker(line, "RINGWORK-DONE").is_some() {
            report.done = true;
        }
    }
    report
}

/// Asserts that every check in `expected` passed, that no check failed, and
/// that the guest printed `RINGWORK-DONE`; returns the parsed report.
///
/// # Panics
///
/// With the list of problems and the whole console output otherwise.
#[track_caller]
pub fn assert_checks(console: &str, expected: &[&str]) -> CheckReport {
    let report = parse_checks(console);
    let problems = report.problems(expected);
    if !problems.is_empty() {
        panic!(
            "guest checks failed:\n  - {}\n(test body exit status: {:?})\n\
             ===== guest console output =====\n{console}\n===== end of guest console output =====",
            problems.join("\n  - "),
            report.body_exit
        );
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str =
        "booting\r\nRINGWORK-START\nRINGWORK-CHECK mkfs ok\n[ 1.0] x RINGWORK-CHECK files ok\n\
                        RINGWORK-INFO queues 2\nRINGWORK-EXIT 0\nRINGWORK-DONE\r\n";

    #[test]
    fn parses_all_markers() {
        let r = parse_checks(GOOD);
        assert!(r.started && r.done);
        assert_eq!(r.checks.len(), 2);
        assert_eq!(r.status("files"), Some(&CheckStatus::Ok));
        assert_eq!(r.info("queues"), Some("2"));
        assert_eq!(r.body_exit, Some(0));
        assert!(r.problems(&["mkfs", "files"]).is_empty());
    }

    #[test]
    fn failure_detail_and_missing_checks() {
        let r = parse_checks(
            "RINGWORK-START\nRINGWORK-CHECK dd FAIL rc=1 short write\nRINGWORK-CHECK x bogus\n",
        );
        assert_eq!(
            r.status("dd"),
            Some(&CheckStatus::Fail("rc=1 short write".into()))
        );
        let problems = r.problems(&["dd", "md5"]);
        assert_eq!(problems.len(), 4, "{problems:?}"); // dd failed, x malformed, md5 missing, no DONE
    }

    #[test]
    fn marker_prefix_must_end_at_word_boundary() {
        let r = parse_checks("RINGWORK-DONEX\nRINGWORK-STARTED\n");
        assert!(!r.done && !r.started);
    }

    #[test]
    #[should_panic(expected = "never reported")]
    fn assert_checks_panics_on_missing() {
        assert_checks(GOOD, &["mkfs", "mount"]);
    }

    #[test]
    #[should_panic(expected = "guest console output")]
    fn assert_checks_panics_without_done() {
        assert_checks("RINGWORK-START\nRINGWORK-CHECK a ok\n", &["a"]);
    }
}
