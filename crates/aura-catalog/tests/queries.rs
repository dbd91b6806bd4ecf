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
    // A page of a one-field count (only the page's rows are built) equals the page of the general path.
    for page in ["limit 7 offset 3", "limit 1", "limit 10000"] {
        let fast = catalog.query(&format!("count() by host {page}")).unwrap();
        let general = catalog
            .query(&format!("kind exists | count() by host {page}"))
            .unwrap();
        assert_eq!(
            (fast.total, fast.truncated),
            (general.total, general.truncated)
        );
        assert_eq!(fast.rows.to_json(), general.rows.to_json(), "{page}");
    }
    // A regex side forces a scan of the whole `or`.
    // Values sit on the boundaries (readings are rounded to 0.1): `>` and `<` must leave them out, `>=` / `<=` in.
    for q in [
        "mem > 95 or disk > 98",
        "cpu > 97 or kind = vm",
        "health = unhealthy or mem < 3",
        "kind = container and cpu > 50",
        "kind in (pod, service) and cpu >= 50 and mem < 50",
        "cpu <= 50.5 and labels.app = web",
        "cpu = 50 or mem = 50",
        "nosuch.field > 3 or kind = host",
    ] {
        let fast = rows(&format!("{q} limit 10000 fields name"));
        let general = rows(&format!("({q}) or name ~ '^$' limit 10000 fields name"));
        assert!(!fast.is_empty(), "{q}");
        assert_eq!(fast, general, "{q}");
    }
    // Sorted pages (walked from the numeric index, ties ordered by id) equal a sort of the checked rows.
    for q in [
        "kind = container sort by cpu desc limit 10 fields cpu",
        "cpu > 20 sort by mem limit 25 offset 5 fields mem",
        "labels.app = web sort by cpu desc, id limit 7 fields cpu",
        "kind = pod limit 30",
    ] {
        let fast = catalog.query(q).unwrap();
        let general = catalog
            .query(&q.replacen(" sort", " or name ~ '^$' sort", 1).replacen(
                "pod limit",
                "pod or name ~ '^$' limit",
                1,
            ))
            .unwrap();
        assert_eq!(fast.total, general.total, "{q}");
        assert_eq!(fast.rows.to_json(), general.rows.to_json(), "{q}");
    }
}

/// `Answer::write_json` (documents copied as their kept JSON text) gives the same JSON as building the answer
/// value by value, for every query case and after an update replaces an asset's document.
#[test]
fn written_answers_equal_the_value_answers() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases/queries.txt");
    let text = std::fs::read_to_string(&path).unwrap();
    let catalog = fixture_catalog();
    let value_of = |a: &aura_catalog::Answer| {
        serde_json::json!({
            "kind": a.kind(), "matched": a.matched, "total": a.total, "returned": a.rows.len(),
            "truncated": a.truncated, "warnings": a.warnings, "took_us": a.took_us, "rows": a.rows.to_json(),
        })
    };
    let mut checked = 0;
    for line in text.lines().filter_map(|l| l.strip_prefix("query: ")) {
        let Ok(a) = catalog.query(line) else { continue };
        let mut out = Vec::new();
        a.write_json(&mut out);
        let written: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(written, value_of(&a), "{line}");
        checked += 1;
    }
    assert!(checked > 20);
    // A new version of an asset is written with its new document.
    let id = catalog.ids()[0].clone();
    let mut asset = (*catalog.get(&id).unwrap()).clone();
    let before = catalog.query(&format!("id = '{id}'")).unwrap();
    let mut out = Vec::new();
    before.write_json(&mut out);
    asset.doc["compute"]["cpu_percent"] = serde_json::json!(12.25);
    catalog.upsert(asset);
    let after = catalog.query(&format!("id = '{id}'")).unwrap();
    assert!(after.generation > before.generation);
    let mut out2 = Vec::new();
    after.write_json(&mut out2);
    let written: serde_json::Value = serde_json::from_slice(&out2).unwrap();
    assert_eq!(written["rows"][0]["compute"]["cpu_percent"], 12.25);
    assert_ne!(out, out2);
}
