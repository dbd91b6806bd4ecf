//! Decision helpers over the fixture fleet: each answer names its evidence and its blind spots.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use aura_catalog::files::{AssetDir, load_into};
use aura_catalog::helpers::{self, Requirements};
use aura_catalog::{Catalog, CatalogSettings};

fn catalog() -> Catalog {
    let dir =
        AssetDir::open(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")).unwrap();
    let c = Catalog::new(CatalogSettings::default());
    load_into(&dir, &c).unwrap();
    c
}

#[test]
fn deploy_safety_sees_unhealthy_instances_and_busy_hosts() {
    let c = catalog();
    let r = helpers::is_safe_to_deploy(&c, "api");
    assert_eq!(r.verdict, "unsafe");
    assert!(
        r.summary.contains("instance `api-1` is unhealthy"),
        "{}",
        r.summary
    );
    assert!(!r.evidence.is_empty());
    assert!(r.blind_spots.iter().any(|b| b.contains("incident")));
    let r = helpers::is_safe_to_deploy(&c, "postgres");
    assert_eq!(
        r.verdict, "unsafe",
        "db-01 has no CPU headroom: {}",
        r.summary
    );
    assert_eq!(
        helpers::is_safe_to_deploy(&c, "nothing-here").verdict,
        "unknown"
    );
}

#[test]
fn availability_and_placement() {
    let c = catalog();
    let req = Requirements {
        cpu_cores: 2.0,
        memory_bytes: 2 << 30,
        ..Requirements::default()
    };
    let r = helpers::check_resource_availability(&c, &req);
    assert_eq!(r.verdict, "available");
    assert_eq!(r.details["hosts"][0]["host"], "web-01");
    let r = helpers::find_optimal_placement(&c, &req);
    assert_eq!(r.verdict, "web-01");
    let too_big = Requirements {
        cpu_cores: 64.0,
        ..Requirements::default()
    };
    assert_eq!(
        helpers::find_optimal_placement(&c, &too_big).verdict,
        "none"
    );
    let labelled = Requirements {
        labels: [("role".to_owned(), "db".to_owned())].into(),
        ..Requirements::default()
    };
    let r = helpers::check_resource_availability(&c, &labelled);
    assert_eq!(r.details["hosts"][0]["host"], "db-01");
}

#[test]
fn cost_and_anomalies() {
    let c = catalog();
    let r = helpers::analyze_cost_optimization(&c);
    assert!(r.blind_spots.iter().any(|b| b.contains("pricing")));
    let r = helpers::detect_anomalies(&c, "2026-11-21T10:00:03Z");
    let stale: Vec<&str> = r.details["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["kind"] == "stale")
        .map(|f| f["asset"].as_str().unwrap())
        .collect();
    assert_eq!(stale.len(), 3, "{stale:?}");
}
