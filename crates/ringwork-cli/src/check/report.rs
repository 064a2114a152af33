//! What `ringwork check` found: one [`CheckResult`] per check, printed as a
//! table ([`Report::print_table`]) or as JSON ([`Report::to_json`]).

use std::io::{self, Write};

use serde_json::{json, Value};

/// How one check ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The device behaved as the spec section says.
    Pass,
    /// It did not; the string says what was seen.
    Fail(String),
    /// Not applicable (a feature not offered, a protocol feature missing,
    /// `--quick`), or not run because something it needs failed first.
    Skip(String),
}

impl Outcome {
    /// `pass`, `fail` or `skip` (the JSON spelling).
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Fail(_) => "fail",
            Outcome::Skip(_) => "skip",
        }
    }

    /// Why it failed or was skipped.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Outcome::Pass => None,
            Outcome::Fail(r) | Outcome::Skip(r) => Some(r),
        }
    }
}

/// One check and its outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckResult {
    /// Stable identifier (`blk.split.rw-end`), for scripts.
    pub id: String,
    /// The VIRTIO 1.4 section the requirement comes from (`§5.2.6`).
    pub section: &'static str,
    /// What was checked, in words.
    pub description: String,
    /// How it went.
    pub outcome: Outcome,
}

/// Everything `ringwork check` found about one backend.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// The device type checked (`blk`, `rng`, `console`).
    pub device: String,
    /// The socket checked.
    pub target: String,
    /// The checks, in the order they ran.
    pub checks: Vec<CheckResult>,
    /// Facts learned on the way (offered features, configuration, queue
    /// counts) and warnings (data that could not be restored).
    pub notes: Vec<String>,
}

impl Report {
    /// Checks that failed.
    pub fn failed(&self) -> usize {
        self.count("fail")
    }

    fn count(&self, label: &str) -> usize {
        self.checks
            .iter()
            .filter(|c| c.outcome.label() == label)
            .count()
    }

    /// The summary line: `N checks: P passed, F failed, S skipped`.
    pub fn summary(&self) -> String {
        format!(
            "{} checks: {} passed, {} failed, {} skipped",
            self.checks.len(),
            self.count("pass"),
            self.failed(),
            self.count("skip")
        )
    }

    /// Prints the report as a table: result, id, spec section,
    /// description, and the reason under each failed or skipped check.
    pub fn print_table(&self, out: &mut impl Write) -> io::Result<()> {
        writeln!(
            out,
            "ringwork check: {} device at {}",
            self.device, self.target
        )?;
        for n in &self.notes {
            writeln!(out, "  {n}")?;
        }
        let idw = self
            .checks
            .iter()
            .map(|c| c.id.chars().count())
            .max()
            .unwrap_or(5)
            .max(5);
        let secw = self
            .checks
            .iter()
            .map(|c| c.section.chars().count())
            .max()
            .unwrap_or(7)
            .max(7);
        writeln!(out)?;
        writeln!(
            out,
            "{:<6}  {:<idw$}  {:<secw$}  DESCRIPTION",
            "RESULT", "CHECK", "SECTION"
        )?;
        for c in &self.checks {
            let label = match c.outcome {
                Outcome::Pass => "pass",
                Outcome::Fail(_) => "FAIL",
                Outcome::Skip(_) => "skip",
            };
            writeln!(
                out,
                "{label:<6}  {:<idw$}  {:<secw$}  {}",
                c.id, c.section, c.description
            )?;
            if let Some(r) = c.outcome.reason() {
                writeln!(out, "{:<6}  {:<idw$}  {:<secw$}    -> {r}", "", "", "")?;
            }
        }
        writeln!(out)?;
        writeln!(out, "{}", self.summary())
    }

    /// The report as JSON: `device`, `target`, counts, `checks` (each with
    /// `id`, `section`, `description`, `outcome` and, unless it passed,
    /// `reason`) and `notes`.
    pub fn to_json(&self) -> Value {
        let checks: Vec<Value> = self
            .checks
            .iter()
            .map(|c| {
                let mut v = json!({
                    "id": c.id,
                    "section": c.section,
                    "description": c.description,
                    "outcome": c.outcome.label(),
                });
                if let Some(r) = c.outcome.reason() {
                    v["reason"] = json!(r);
                }
                v
            })
            .collect();
        json!({
            "device": self.device,
            "target": self.target,
            "passed": self.count("pass"),
            "failed": self.failed(),
            "skipped": self.count("skip"),
            "checks": checks,
            "notes": self.notes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> Report {
        let c = |id: &str, outcome| CheckResult {
            id: id.into(),
            section: "§5.2.6",
            description: format!("check {id}"),
            outcome,
        };
        Report {
            device: "blk".into(),
            target: "/tmp/x.sock".into(),
            checks: vec![
                c("a.pass", Outcome::Pass),
                c("b.fail", Outcome::Fail("wrong data".into())),
                c("c.skip", Outcome::Skip("not offered".into())),
            ],
            notes: vec!["features: VERSION_1".into()],
        }
    }

    #[test]
    fn counts_table_and_json_agree() {
        let r = report();
        assert_eq!(r.failed(), 1);
        assert_eq!(r.summary(), "3 checks: 1 passed, 1 failed, 1 skipped");
        let mut out = Vec::new();
        r.print_table(&mut out).unwrap();
        let s = String::from_utf8(out).unwrap();
        assert!(s.contains("FAIL    b.fail"), "{s}");
        assert!(s.contains("-> wrong data"), "{s}");
        assert!(s.contains("features: VERSION_1"), "{s}");
        let j = r.to_json();
        assert_eq!(j["failed"], 1);
        assert_eq!(j["checks"][1]["outcome"], "fail");
        assert_eq!(j["checks"][1]["reason"], "wrong data");
        assert_eq!(j["checks"][0].get("reason"), None);
        assert_eq!(j["checks"][2]["section"], "§5.2.6");
    }
}
