//! Keeps docs/CONFORMANCE.md true: every test it cites as `path::function`
//! must exist as `fn function(` in that file (paths starting with `crates/`
//! are from the repository root, others from this crate), and in tables
//! with a "Covered" column the stated totals must add up.

use std::path::Path;

#[test]
fn every_cited_test_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let repo = root.join("../..");
    let doc =
        std::fs::read_to_string(repo.join("docs/CONFORMANCE.md")).expect("docs/CONFORMANCE.md");
    let mut cited = 0;
    for piece in doc.split('`').skip(1).step_by(2) {
        let Some((path, func)) = piece.rsplit_once("::") else {
            continue;
        };
        if !path.ends_with(".rs") {
            continue;
        }
        let file = if path.starts_with("crates/") {
            repo.join(path)
        } else {
            root.join(path)
        };
        let text = std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("{path} cited in CONFORMANCE.md: {e}"));
        assert!(
            text.contains(&format!("fn {func}(")),
            "CONFORMANCE.md cites {path}::{func}, which does not exist"
        );
        cited += 1;
    }
    assert!(cited > 40, "only {cited} citations found");
}

/// In each `## ` section whose table has a Covered column, the
/// "**Covered: X of Y MUST statements**" line matches the rows' sums, and
/// no row claims more than its MUST count.
#[test]
fn covered_totals_add_up() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("../../docs/CONFORMANCE.md"))
        .expect("docs/CONFORMANCE.md");
    let mut checked = 0;
    for section in doc.split("\n## ") {
        let (mut must, mut covered, mut rows) = (0u32, 0u32, 0);
        for line in section.lines() {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            // | section | side | MUST | Covered | checked by |
            if cells.len() != 7 {
                continue;
            }
            let (Ok(m), Ok(c)) = (cells[3].parse::<u32>(), cells[4].parse::<u32>()) else {
                continue;
            };
            assert!(c <= m, "row claims {c} of {m}: {line}");
            if c < m {
                assert!(
                    cells[5].contains("Not covered") || cells[5].contains("not covered"),
                    "row with uncovered MUSTs gives no reason: {line}"
                );
            }
            must += m;
            covered += c;
            rows += 1;
        }
        if rows == 0 {
            continue;
        }
        let claim = format!("**Covered: {covered} of {must} MUST statements**");
        assert!(
            section.contains(&claim),
            "section {:?} should state {claim}",
            section.lines().next()
        );
        checked += 1;
    }
    assert!(checked >= 1, "no table with a Covered column");
    // The summary at the top repeats the section totals.
    let summary = doc
        .lines()
        .find(|l| l.starts_with("Summary:"))
        .map(|l| {
            let i = doc.find(l).unwrap();
            &doc[i..i + doc[i..].find("\n\n").unwrap_or(doc.len() - i)]
        })
        .expect("a Summary paragraph");
    for part in summary.split("**").skip(1).step_by(2) {
        let claim = format!("**Covered: {part} MUST statements**");
        assert!(doc.contains(&claim), "summary says {part}, no section does");
    }
}
