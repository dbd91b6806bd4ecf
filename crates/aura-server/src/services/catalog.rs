//! The catalog service owned by `aura up`: loads `<data-dir>/assets/*.aav` into the catalog at start, follows
//! the directory while the server runs, and answers queries, summaries and watches for the edges.

use std::path::Path;
use std::sync::Arc;

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
        })
    }

    /// Follows the asset directory until `cancel`, as a task owned by `tasks`.
    pub fn spawn_follower(&self, tasks: &TaskTracker, cancel: CancellationToken) {
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
