//! Watch streams end to end through the asset directory: a file written by the sink reaches the catalog through
//! the directory follower, and watchers see diffs (added, changed fields, left the filter, deleted).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use aura_catalog::files::{AssetDir, AssetSink, AssetSource, follow, load_into};
use aura_catalog::{Asset, AssetKind, Catalog, CatalogSettings, Gone, Health, WatchEvent};
use tokio_util::sync::CancellationToken;

async fn next(w: &mut aura_catalog::Watch) -> WatchEvent {
    tokio::time::timeout(Duration::from_secs(10), w.next())
        .await
        .expect("no watch event within 10 s")
        .expect("catalog closed")
}

fn container(id: &str, cpu: f64) -> Asset {
    let mut a = Asset::new(id, AssetKind::Container, id, "2026-11-21T10:00:00Z");
    a.set_health(Health::Healthy);
    a.set_host("web-01");
    let mut c = serde_json::Map::new();
    c.insert("cpu_percent".into(), serde_json::json!(cpu));
    a.set_section("compute", c);
    a
}

#[tokio::test]
async fn file_changes_reach_watchers_as_diffs() {
    let dir = tempfile::tempdir().unwrap();
    let assets = AssetDir::open(dir.path()).unwrap();
    assets.write(&container("c1", 10.0)).unwrap();
    let catalog = Catalog::new(CatalogSettings::default());
    load_into(&assets, &catalog).unwrap();
    assert_eq!(catalog.len(), 1);

    let mut hot = catalog.watch(Some("cpu > 80")).unwrap();
    let mut one = catalog.watch_asset("c1");
    let cancel = CancellationToken::new();
    let source: Arc<dyn AssetSource> = Arc::new(assets.clone());
    let follower = tokio::spawn(follow(source, catalog.clone(), cancel.clone()));

    // c1 heats up: it enters the hot filter; the per-asset watch sees the changed field only.
    assets.write(&container("c1", 95.0)).unwrap();
    match next(&mut hot).await {
        WatchEvent::Added { asset, .. } => assert_eq!(&*asset.id, "c1"),
        other => panic!("expected added, got {other:?}"),
    }
    match next(&mut one).await {
        WatchEvent::Changed { changes, .. } => {
            let paths: Vec<&str> = changes.iter().map(|c| &*c.path).collect();
            assert_eq!(paths, ["compute.cpu_percent"], "{changes:?}");
            assert_eq!(changes[0].new.as_ref().and_then(|v| v.as_num()), Some(95.0));
        }
        other => panic!("expected changed, got {other:?}"),
    }
    // Cools down: leaves the filter.
    assets.write(&container("c1", 5.0)).unwrap();
    match next(&mut hot).await {
        WatchEvent::Removed { reason, .. } => assert_eq!(reason, Gone::LeftFilter),
        other => panic!("expected removed, got {other:?}"),
    }
    // A broken file leaves the previous version in place; a new file is added; deletion is seen.
    std::fs::write(assets.path_of("c1"), "not toml [").unwrap();
    assets.write(&container("c2", 99.0)).unwrap();
    match next(&mut hot).await {
        WatchEvent::Added { asset, .. } => assert_eq!(&*asset.id, "c2"),
        other => panic!("expected added c2, got {other:?}"),
    }
    assert!(catalog.get("c1").is_some());
    assets.delete("c2").unwrap();
    match next(&mut hot).await {
        WatchEvent::Removed { id, reason, .. } => {
            assert_eq!(&*id, "c2");
            assert_eq!(reason, Gone::Deleted);
        }
        other => panic!("expected deleted, got {other:?}"),
    }
    cancel.cancel();
    follower.await.unwrap().unwrap();
}

#[test]
fn index_stays_consistent_under_updates() {
    // Differential check: indexed answers equal a plain scan after many random updates and removals.
    let catalog = Catalog::new(CatalogSettings::default());
    let mut rng = aura_catalog::synth::Rng::new(7);
    let mut fleet = aura_catalog::synth::fleet(300, 1);
    for a in &fleet {
        catalog.upsert(a.clone());
    }
    for round in 0..2000 {
        let i = rng.below(fleet.len() as u64) as usize;
        if round % 97 == 0 {
            catalog.remove(&fleet[i].id.clone());
            continue;
        }
        aura_catalog::synth::update_metrics(&mut fleet[i], &mut rng);
        catalog.upsert(fleet[i].clone());
    }
    for q in [
        "cpu > 50",
        "cpu <= 20 and kind = container",
        "kind in (pod, service) or mem > 90",
        "labels.app = web and cpu >= 10",
        "health = degraded",
    ] {
        let indexed = catalog.query(&format!("{q} limit 10000")).unwrap();
        // `not not` defeats the planner: a full scan with the same predicate.
        let scanned = catalog
            .query(&format!("not not ({q}) limit 10000"))
            .unwrap();
        let ids = |a: &aura_catalog::Answer| -> Vec<String> {
            a.rows
                .to_json()
                .iter()
                .map(|r| r["meta"]["asset_id"].to_string())
                .collect()
        };
        assert_eq!(indexed.total, scanned.total, "{q}");
        assert_eq!(ids(&indexed), ids(&scanned), "{q}");
    }
}
