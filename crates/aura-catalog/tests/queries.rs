//! Data-driven query cases: `tests/cases/queries.txt` holds query text and the expected rendered answer over the
//! fixture fleet in `tests/fixtures/assets/`. Run with `BLESS=1` to rewrite the expectations after a deliberate change.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use aura_catalog::files::{AssetDir, load_into};
use aura_catalog::{Catalog, CatalogSettings, QueryError, Rows};

fn fixture_catalog() -> Catalog {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let source = AssetDir::open(&dir).unwrap();
    let catalog = Catalog::new(CatalogSettings {
        default_limit: 5,
        ..CatalogSettings::default()
    });
    let report = load_into(&source, &catalog).unwrap();
    assert!(report.rejected.is_empty(), "{:?}", report.rejected);
    catalog
}

fn render(catalog: &Catalog, query: &str) -> String {
    match catalog.query(query) {
        Err(QueryError::Parse(e)) => format!(
            "error: {} (column {})\n{}{}",
            e.message,
            e.column,
            e.caret,
            e.hint.map(|h| format!("\nhint: {h}")).unwrap_or_default()
        ),
        Ok(a) => {
            let mut out = format!(
                "matched={} total={} returned={} truncated={}\n",
                a.matched,
                a.total,
                a.rows.len(),
                a.truncated
            );
            for w in &a.warnings {
                out.push_str(&format!("warning: {w}\n"));
            }
            match &a.rows {
                Rows::Assets(assets) => {
                    for asset in assets {
                        out.push_str(&format!("{} {} {}\n", asset.id, asset.kind, asset.health));
                    }
                }
                other => {
                    for row in other.to_json() {
                        out.push_str(&format!("{row}\n"));
                    }
                }
            }
            out.trim_end().to_owned()
        }
    }
}

#[test]
fn query_cases() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases/queries.txt");
    let text = std::fs::read_to_string(&path).unwrap();
    let catalog = fixture_catalog();
    let bless = std::env::var_os("BLESS").is_some();
    let mut rewritten = String::new();
    let mut failures = Vec::new();
    let mut cases = 0;
    for block in text.split("\n====\n") {
        let block = block.trim();
        if block.is_empty() {
            continue;
        }
        let (head, expected) = block.split_once("\n----\n").unwrap_or((block, ""));
        let query_line = head
            .lines()
            .find_map(|l| l.strip_prefix("query: "))
            .unwrap_or_else(|| panic!("case without `query:`: {head}"));
        cases += 1;
        let actual = render(&catalog, query_line);
        if actual != expected.trim_end() {
            failures.push(format!(
                "query: {query_line}\n--- expected\n{expected}\n--- actual\n{actual}\n"
            ));
        }
        rewritten.push_str(&format!("{head}\n----\n{actual}\n====\n"));
    }
    assert!(cases > 20, "only {cases} cases");
    if bless {
        std::fs::write(&path, rewritten).unwrap();
        return;
    }
    assert!(
        failures.is_empty(),
        "{} of {cases} cases differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The planner's fast paths (grouped counts read from the equality buckets, `or` answered from the union of index
/// candidates) give exactly what the general paths give, over a synthetic fleet with missing fields and deletions.
#[test]
fn fast_paths_agree_with_the_general_paths() {
    let catalog = Catalog::new(CatalogSettings::default());
    let fleet = aura_catalog::synth::fleet(3000, 7);
    for a in &fleet {
        catalog.upsert(a.clone());
    }
    // Free slots in the middle of the index.
    for a in fleet.iter().step_by(17) {
        catalog.remove(&a.id);
    }
    let rows = |q: &str| -> Vec<serde_json::Value> {
        let a = catalog.query(q).unwrap();
        let mut rows = a.rows.to_json();
        rows.sort_by_key(|r| r.to_string());
        rows
    };
    // `kind exists` forces the general group path (a filter), the same groups otherwise.
    for by in ["kind, health", "kind, labels.app", "health, host, kind"] {
        let fast = rows(&format!("count() by {by} limit 10000"));
        let general = rows(&format!("kind exists | count() by {by} limit 10000"));
        assert!(!fast.is_empty());
        assert_eq!(fast, general, "count() by {by}");
    }
    // A regex side forces a scan of the whole `or`.
    for q in [
        "mem > 95 or disk > 98",
        "cpu > 97 or kind = vm",
        "health = unhealthy or mem < 3",
    ] {
        let fast = rows(&format!("{q} limit 10000 fields name"));
        let general = rows(&format!("({q}) or name ~ '^$' limit 10000 fields name"));
        assert!(!fast.is_empty(), "{q}");
        assert_eq!(fast, general, "{q}");
    }
}
