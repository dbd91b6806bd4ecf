//! The catalog service owned by `aura up`: loads `<data-dir>/assets/*.aav` into the catalog at start, follows
//! the directory while the server runs, and answers queries, summaries and watches for the edges.

use std::path::Path;
use std::sync::Arc;

use aura_catalog::cache::{HotCache, RedisTier, Tiers};
use aura_catalog::files::{AssetDir, AssetSource, follow, load_into};
use aura_catalog::{Answer, Catalog, CatalogSettings, HealthSummary, QueryError, Rows};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The catalog and where its assets live. Cheap to clone.
#[derive(Debug, Clone)]
pub struct CatalogService {
    catalog: Catalog,
    source: Arc<dyn AssetSource>,
    closing: CancellationToken,
    tiers: Option<Tiers>,
}

/// The catalog's settings from the `catalog` section of aura.yaml.
pub fn settings(config: &aura_config::CatalogConfig) -> CatalogSettings {
    CatalogSettings {
        default_limit: usize::try_from(config.default_limit).unwrap_or(usize::MAX),
        watch_buffer: usize::try_from(config.watch_buffer).unwrap_or(usize::MAX),
        parsed_cache: config.parsed_cache,
    }
}

impl CatalogService {
    /// Opens `<data_dir>/assets/` and loads every asset file (files that do not parse are logged and skipped).
    pub fn open(data_dir: &Path, settings: CatalogSettings) -> Result<CatalogService, String> {
        // Seam: the asset directory reader. `aura-context`'s reader replaces `AssetDir` here at merge.
        let dir = AssetDir::open(data_dir).map_err(|e| e.to_string())?;
        let catalog = Catalog::new(settings);
        let report = load_into(&dir, &catalog).map_err(|e| e.to_string())?;
        for rejected in &report.rejected {
            tracing::warn!(error = %rejected, "asset file rejected");
        }
        tracing::info!(assets = report.loaded, "catalog loaded");
        Ok(CatalogService {
            catalog,
            source: Arc::new(dir),
            closing: CancellationToken::new(),
            tiers: None,
        })
    }

    /// Opens the cache tiers of the `cache` section: the hot tier always, Redis when `redis_url` is set (an
    /// unreachable Redis is an error: the operator asked for it), the cold archive when `cold` is set (builds
    /// with feature `s3`; without it a configured cold tier is an error, never silently dropped).
    pub async fn with_tiers(
        mut self,
        config: &aura_config::CatalogCacheConfig,
    ) -> Result<CatalogService, String> {
        let ttl = std::time::Duration::from_secs(config.hot_ttl_seconds);
        let mut tiers = Tiers::new(HotCache::new(config.hot_capacity, ttl));
        if let Some(url) = &config.redis_url {
            let redis = RedisTier::connect(
                url,
                &config.redis_prefix,
                std::time::Duration::from_secs(config.redis_ttl_seconds),
            )
            .await
            .map_err(|e| format!("cache.redis_url: cannot connect: {e}"))?;
            tiers = tiers.with_redis(redis);
        }
        if let Some(cold) = &config.cold {
            tiers = with_cold(tiers, cold)?;
        }
        self.tiers = Some(tiers);
        Ok(self)
    }

    /// The cache tiers, when opened.
    pub fn tiers(&self) -> Option<&Tiers> {
        self.tiers.as_ref()
    }

    /// Hot, Redis and cold tier figures for `GET /api/v1/cache` and `aura cache stats`.
    pub async fn cache_stats(&self) -> Value {
        let Some(tiers) = &self.tiers else {
            return json!({"hot": null, "redis": null, "cold": null});
        };
        let redis = match &tiers.redis {
            Some(r) => match r.stats().await {
                Ok(s) => json!({"entries": s.entries, "hits": s.hits, "misses": s.misses}),
                Err(e) => json!({"error": e.to_string()}),
            },
            None => Value::Null,
        };
        json!({
            "hot": tiers.hot.stats(),
            "redis": redis,
            "cold": cold_stats(tiers).await,
            "activity": tiers.activity(),
        })
    }

    /// Follows the asset directory until `cancel`, as a task owned by `tasks`; with cache tiers, keeps them in
    /// step with the catalog and follows the other nodes' Redis invalidations.
    pub fn spawn_follower(&self, tasks: &TaskTracker, cancel: CancellationToken) {
        if let Some(tiers) = self.tiers.clone() {
            let catalog = self.catalog.clone();
            let stop = cancel.clone();
            tasks.spawn(async move { tiers.follow(&catalog, stop).await });
            if let Some(tiers) = self.tiers.clone()
                && let Some(redis) = tiers.redis.clone()
            {
                let stop = cancel.clone();
                tasks.spawn(async move {
                    if let Err(e) = redis
                        .follow_invalidations(tiers.hot.clone(), stop, || {})
                        .await
                    {
                        tracing::warn!(error = %e, "redis invalidation feed stopped");
                    }
                });
            }
        }
        let source = self.source.clone();
        let catalog = self.catalog.clone();
        let closing = self.closing.clone();
        tasks.spawn(async move {
            if let Err(e) = follow(source, catalog, cancel).await {
                tracing::error!(error = %e, "asset directory watch stopped");
            }
            // Server shutdown: close the watch streams too.
            closing.cancel();
        });
    }

    /// Cancelled when the server shuts down; watch streams end then.
    pub fn closing(&self) -> CancellationToken {
        self.closing.clone()
    }

    /// The catalog itself.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// Runs a query and counts it.
    pub fn query(&self, text: &str) -> Result<Answer, QueryError> {
        let result = self.catalog.query(text);
        let outcome = if result.is_ok() { "ok" } else { "error" };
        metrics::counter!("aura_catalog_queries_total", "outcome" => outcome).increment(1);
        result
    }

    /// Counts by health and kind.
    pub fn health_summary(&self) -> HealthSummary {
        self.catalog.health_summary()
    }

    /// Fleet-wide figures: asset counts, average and peak CPU and memory, hottest assets.
    pub fn system_metrics(&self) -> Value {
        let scalar = |q: &str| -> Value {
            match self.catalog.query(q).map(|a| a.rows) {
                Ok(Rows::Groups(rows)) => rows
                    .first()
                    .and_then(|r| r.values.first())
                    .and_then(|(_, v)| *v)
                    .map_or(Value::Null, aura_catalog::value::num_json),
                _ => Value::Null,
            }
        };
        let hottest = match self
            .catalog
            .query("exists cpu sort by cpu desc limit 5 fields name, kind, cpu, mem")
            .map(|a| a.rows)
        {
            Ok(rows) => Value::Array(rows.to_json()),
            Err(_) => Value::Array(vec![]),
        };
        json!({
            "assets": self.catalog.len(),
            "cpu_percent": {"avg": scalar("avg(cpu)"), "max": scalar("max(cpu)")},
            "memory_percent": {"avg": scalar("avg(mem)"), "max": scalar("max(mem)")},
            "storage_percent": {"avg": scalar("avg(disk)"), "max": scalar("max(disk)")},
            "hosts": {"cpu_percent_avg": scalar("kind = host | avg(cpu)"), "load_1_avg": scalar("kind = host | avg(load)")},
            "hottest": hottest,
            "watchers": self.catalog.watchers(),
        })
    }
}

#[cfg(feature = "s3")]
fn with_cold(tiers: Tiers, cold: &aura_config::ColdTierConfig) -> Result<Tiers, String> {
    let (bucket, prefix) = cold.bucket_and_prefix();
    let archive =
        aura_catalog::cache::cold::ColdArchive::open(&aura_catalog::cache::cold::ColdSettings {
            bucket,
            prefix,
            endpoint: cold.endpoint.clone(),
            region: cold.region.clone(),
            allow_http: cold.allow_http,
            credentials: None,
        })
        .map_err(|e| format!("cache.cold: {e}"))?;
    Ok(tiers.with_cold(archive))
}

#[cfg(not(feature = "s3"))]
fn with_cold(_: Tiers, _: &aura_config::ColdTierConfig) -> Result<Tiers, String> {
    Err("cache.cold: this build has no S3 support (cargo feature `s3`)".to_owned())
}

#[cfg(feature = "s3")]
async fn cold_stats(tiers: &Tiers) -> Value {
    match &tiers.cold {
        Some(c) => match c.stats().await {
            Ok(s) => {
                json!({"objects": s.objects, "bytes": s.bytes, "bucket": c.bucket(), "prefix": c.prefix()})
            }
            Err(e) => json!({"error": e.to_string()}),
        },
        None => Value::Null,
    }
}

#[cfg(not(feature = "s3"))]
async fn cold_stats(_: &Tiers) -> Value {
    Value::Null
}
