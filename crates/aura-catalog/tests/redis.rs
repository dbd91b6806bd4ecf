//! The Redis hot tier against the local Redis (127.0.0.1:6379): get, set, mget, invalidate, pattern flush and
//! pub/sub invalidation of another node's in-process tier. Each test uses its own key prefix.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use aura_catalog::cache::{HotCache, RedisTier};
use aura_catalog::{Asset, AssetKind};
use tokio_util::sync::CancellationToken;

const URL: &str = "redis://127.0.0.1:6379/0";

fn prefix(name: &str) -> String {
    format!("aura-test-{name}-{}:", std::process::id())
}

fn asset(id: &str) -> Asset {
    Asset::new(id, AssetKind::Container, id, "2026-11-21T10:00:00Z")
}

#[tokio::test]
async fn get_set_mget_invalidate_flush() {
    let tier = RedisTier::connect(URL, &prefix("ops"), Duration::from_secs(60))
        .await
        .expect("Redis at 127.0.0.1:6379 (scripts/services.sh starts it)");
    for id in ["web-1", "web-2", "db-1"] {
        tier.set(&asset(id)).await.unwrap();
    }
    assert_eq!(tier.get("web-1").await.unwrap().unwrap().name, "web-1");
    assert!(tier.get("nope").await.unwrap().is_none());
    let many = tier.mget(&["db-1", "nope", "web-2"]).await.unwrap();
    assert_eq!(
        many.iter()
            .map(|a| a.as_ref().map(|a| a.id.to_string()))
            .collect::<Vec<_>>(),
        [Some("db-1".to_owned()), None, Some("web-2".to_owned())]
    );
    tier.invalidate("db-1").await.unwrap();
    assert!(tier.get("db-1").await.unwrap().is_none());
    assert_eq!(tier.flush_pattern("web-*").await.unwrap(), 2);
    assert_eq!(tier.stats().await.unwrap().entries, 0);
}

#[tokio::test]
async fn invalidation_reaches_other_nodes() {
    let p = prefix("pubsub");
    let node_a = RedisTier::connect(URL, &p, Duration::from_secs(60))
        .await
        .unwrap();
    let node_b = RedisTier::connect(URL, &p, Duration::from_secs(60))
        .await
        .unwrap();
    let hot_b = HotCache::new(1000, Duration::from_secs(60));
    hot_b.set(Arc::new(asset("web-1")));
    hot_b.set(Arc::new(asset("web-2")));
    hot_b.set(Arc::new(asset("db-1")));
    let cancel = CancellationToken::new();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let follower = {
        let (hot, cancel) = (hot_b.clone(), cancel.clone());
        tokio::spawn(async move {
            node_b
                .follow_invalidations(hot, cancel, move || {
                    let _ = ready_tx.send(());
                })
                .await
        })
    };
    ready_rx.await.unwrap();
    node_a.invalidate("db-1").await.unwrap();
    node_a.flush_pattern("web-*").await.unwrap();
    // Poll node B's in-process tier with a deadline until both invalidations have arrived.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let left = ["web-1", "web-2", "db-1"]
            .iter()
            .filter(|id| hot_b.get(id).is_some())
            .count();
        if left == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{left} entries survived the invalidation"
        );
        tokio::task::yield_now().await;
    }
    cancel.cancel();
    follower.await.unwrap().unwrap();
}

#[test]
fn hot_cache_counts_and_flushes() {
    let hot = HotCache::new(10, Duration::from_secs(60));
    hot.set(Arc::new(asset("a-1")));
    hot.set(Arc::new(asset("b-1")));
    assert!(hot.get("a-1").is_some());
    assert!(hot.get("zzz").is_none());
    hot.flush_pattern("a-*");
    assert!(hot.get("a-1").is_none());
    let s = hot.stats();
    assert_eq!((s.entries, s.hits, s.misses), (1, 1, 2));
}
