//! Keeps docs/CONFORMANCE.md true: every test it cites as `path::function`
//! must exist as `fn function(` in that file.

use std::path::Path;

#[test]
fn every_cited_test_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("../../docs/CONFORMANCE.md"))
        .expect("docs/CONFORMANCE.md");
    let mut cited = 0;
    for piece in doc.split('`').skip(1).step_by(2) {
        let Some((path, func)) = piece.rsplit_once("::") else {
            continue;
        };
        if !path.ends_with(".rs") {
            continue;
        }
        let file = root.join(path);
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
