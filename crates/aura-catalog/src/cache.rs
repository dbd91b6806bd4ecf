//! Cache tiers: an in-process hot cache (moka, TTL + size-bounded LRU-like eviction) and an optional Redis hot
//! tier shared between Aura nodes (get, set, mget, invalidate, pattern flush, pub/sub invalidation), with the
//! asset files as the warm tier and, with feature `s3`, an S3 cold archive of asset history (module `cold`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use redis::AsyncCommands as _;
use tokio_util::sync::CancellationToken;

use crate::asset::Asset;

/// Why a cache operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// Redis refused or could not be reached.
    #[error("redis: {0}")]
    Redis(String),
    /// A cached value did not decode.
    #[error("cached value for `{0}` is not a valid asset")]
    Corrupt(String),
    /// The cold tier (S3-compatible storage) refused or could not be reached.
    #[error("cold tier: {0}")]
    Cold(String),
}

impl From<redis::RedisError> for CacheError {
    fn from(e: redis::RedisError) -> Self {
        CacheError::Redis(e.to_string())
    }
}

/// Counters of a tier.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct CacheStats {
    /// Entries held.
    pub entries: u64,
    /// Lookups answered.
    pub hits: u64,
    /// Lookups not answered.
    pub misses: u64,
}

/// The in-process hot tier: assets by id, bounded in count and age.
#[derive(Debug, Clone)]
pub struct HotCache {
    inner: moka::sync::Cache<Arc<str>, Arc<Asset>>,
    hits: Arc<AtomicU64>,
    misses: Arc<AtomicU64>,
}

impl HotCache {
    /// At most `capacity` assets, each kept at most `ttl`.
    pub fn new(capacity: u64, ttl: Duration) -> HotCache {
        HotCache {
            inner: moka::sync::Cache::builder()
                .max_capacity(capacity)
                .time_to_live(ttl)
                .build(),
            hits: Arc::default(),
            misses: Arc::default(),
        }
    }

    /// An asset, when cached.
    pub fn get(&self, id: &str) -> Option<Arc<Asset>> {
        let found = self.inner.get(id);
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// Caches an asset.
    pub fn set(&self, asset: Arc<Asset>) {
        self.inner.insert(asset.id.clone(), asset);
    }

    /// Drops one asset.
    pub fn invalidate(&self, id: &str) {
        self.inner.invalidate(id);
    }

    /// Drops the assets whose id matches `pattern` (`*` and `?` globs).
    pub fn flush_pattern(&self, pattern: &str) {
        let doomed: Vec<Arc<str>> = self
            .inner
            .iter()
            .filter(|(k, _)| glob_match(pattern, k))
            .map(|(k, _)| (*k).clone())
            .collect();
        for k in doomed {
            self.inner.invalidate(&k);
        }
    }

    /// Entries, hits and misses.
    pub fn stats(&self) -> CacheStats {
        self.inner.run_pending_tasks();
        CacheStats {
            entries: self.inner.entry_count(),
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
        }
    }
}

/// `*` matches any run, `?` one character.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

/// The Redis hot tier shared by several Aura nodes. Keys are `<prefix>asset:<id>` holding the asset document
/// as JSON with a TTL; invalidations are published on `<prefix>invalidate` so every node drops its hot copy.
#[derive(Clone)]
pub struct RedisTier {
    client: redis::Client,
    conn: redis::aio::ConnectionManager,
    prefix: String,
    ttl: Duration,
    hits: Arc<AtomicU64>,
    misses: Arc<AtomicU64>,
}

impl std::fmt::Debug for RedisTier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisTier")
            .field("prefix", &self.prefix)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl RedisTier {
    /// Connects to `url` (`redis://127.0.0.1:6379/0`); keys start with `prefix` (e.g. `aura:`).
    pub async fn connect(url: &str, prefix: &str, ttl: Duration) -> Result<RedisTier, CacheError> {
        let client = redis::Client::open(url)?;
        let conn = redis::aio::ConnectionManager::new(client.clone()).await?;
        Ok(RedisTier {
            client,
            conn,
            prefix: prefix.to_owned(),
            ttl,
            hits: Arc::default(),
            misses: Arc::default(),
        })
    }

    fn key(&self, id: &str) -> String {
        format!("{}asset:{id}", self.prefix)
    }

    fn channel(&self) -> String {
        format!("{}invalidate", self.prefix)
    }

    /// One asset.
    pub async fn get(&self, id: &str) -> Result<Option<Asset>, CacheError> {
        let mut conn = self.conn.clone();
        let raw: Option<String> = conn.get(self.key(id)).await?;
        self.count(raw.is_some());
        raw.map(|r| decode(id, &r)).transpose()
    }

    /// Several assets, in order (`None` where missing).
    pub async fn mget(&self, ids: &[&str]) -> Result<Vec<Option<Asset>>, CacheError> {
        if ids.is_empty() {
            return Ok(vec![]);
        }
        let mut conn = self.conn.clone();
        let keys: Vec<String> = ids.iter().map(|id| self.key(id)).collect();
        let raws: Vec<Option<String>> =
            redis::cmd("MGET").arg(&keys).query_async(&mut conn).await?;
        raws.into_iter()
            .zip(ids)
            .map(|(raw, id)| {
                self.count(raw.is_some());
                raw.map(|r| decode(id, &r)).transpose()
            })
            .collect()
    }

    fn count(&self, hit: bool) {
        let c = if hit { &self.hits } else { &self.misses };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Stores an asset with the tier's TTL.
    pub async fn set(&self, asset: &Asset) -> Result<(), CacheError> {
        let mut conn = self.conn.clone();
        let body = asset.doc.to_string();
        let ttl = self.ttl.as_secs().max(1);
        let _: () = conn.set_ex(self.key(&asset.id), body, ttl).await?;
        Ok(())
    }

    /// Deletes one asset and tells every node to drop its hot copy.
    pub async fn invalidate(&self, id: &str) -> Result<(), CacheError> {
        let mut conn = self.conn.clone();
        let _: () = conn.del(self.key(id)).await?;
        let _: () = conn.publish(self.channel(), id).await?;
        Ok(())
    }

    /// Deletes every asset whose id matches the glob `pattern` (SCAN, never KEYS); returns how many.
    pub async fn flush_pattern(&self, pattern: &str) -> Result<u64, CacheError> {
        let mut conn = self.conn.clone();
        let keys = self.scan_keys(&mut conn, pattern).await?;
        let mut n = 0u64;
        for chunk in keys.chunks(500) {
            let deleted: u64 = conn.del(chunk).await?;
            n += deleted;
        }
        let _: () = conn
            .publish(self.channel(), format!("pattern:{pattern}"))
            .await?;
        Ok(n)
    }

    async fn scan_keys(
        &self,
        conn: &mut redis::aio::ConnectionManager,
        pattern: &str,
    ) -> Result<Vec<String>, CacheError> {
        let mut cursor: u64 = 0;
        let mut keys = Vec::new();
        let matcher = format!("{}asset:{pattern}", self.prefix);
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&matcher)
                .arg("COUNT")
                .arg(1000)
                .query_async(conn)
                .await?;
            keys.extend(batch);
            if next == 0 {
                return Ok(keys);
            }
            cursor = next;
        }
    }

    /// Entries under the prefix, hits and misses of this process.
    pub async fn stats(&self) -> Result<CacheStats, CacheError> {
        let mut conn = self.conn.clone();
        let keys = self.scan_keys(&mut conn, "*").await?;
        Ok(CacheStats {
            entries: keys.len() as u64,
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
        })
    }

    /// Follows invalidations published by any node and applies them to `hot` until `cancel`. Uses its own
    /// connection (a subscribed connection can do nothing else). Calls `ready` once subscribed.
    pub async fn follow_invalidations(
        &self,
        hot: HotCache,
        cancel: CancellationToken,
        ready: impl FnOnce(),
    ) -> Result<(), CacheError> {
        use futures_util::StreamExt as _;
        let mut pubsub = self.client.get_async_pubsub().await?;
        pubsub.subscribe(self.channel()).await?;
        ready();
        let mut stream = pubsub.on_message();
        loop {
            tokio::select! {
                () = cancel.cancelled() => return Ok(()),
                msg = stream.next() => {
                    let Some(msg) = msg else { return Ok(()) };
                    let payload: String = msg.get_payload().unwrap_or_default();
                    match payload.strip_prefix("pattern:") {
                        Some(p) => hot.flush_pattern(p),
                        None => hot.invalidate(&payload),
                    }
                }
            }
        }
    }
}

/// The tiers `aura up` keeps in step with the catalog: every new asset version goes to the hot tier, the Redis
/// tier (when configured) and the cold archive (when configured, feature `s3`); a removed asset is invalidated.
#[derive(Debug, Clone)]
pub struct Tiers {
    /// The in-process hot tier.
    pub hot: HotCache,
    /// The shared Redis tier.
    pub redis: Option<RedisTier>,
    /// The cold archive of asset history.
    #[cfg(feature = "s3")]
    pub cold: Option<Arc<cold::ColdArchive>>,
    counters: Arc<TierCounters>,
}

#[derive(Debug, Default)]
struct TierCounters {
    redis_writes: AtomicU64,
    redis_errors: AtomicU64,
    archived: AtomicU64,
    archive_errors: AtomicU64,
    missed: AtomicU64,
}

/// What the tiers did since start.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct TierActivity {
    /// Versions written to Redis.
    pub redis_writes: u64,
    /// Redis writes or invalidations that failed.
    pub redis_errors: u64,
    /// Versions archived to the cold tier.
    pub archived: u64,
    /// Archive writes that failed.
    pub archive_errors: u64,
    /// Changes missed because the tiers fell behind (those versions are not archived).
    pub missed: u64,
}

impl Tiers {
    /// Only the hot tier.
    pub fn new(hot: HotCache) -> Tiers {
        Tiers {
            hot,
            redis: None,
            #[cfg(feature = "s3")]
            cold: None,
            counters: Arc::default(),
        }
    }

    /// Adds the Redis tier.
    #[must_use]
    pub fn with_redis(mut self, redis: RedisTier) -> Tiers {
        self.redis = Some(redis);
        self
    }

    /// Adds the cold archive.
    #[cfg(feature = "s3")]
    #[must_use]
    pub fn with_cold(mut self, cold: cold::ColdArchive) -> Tiers {
        self.cold = Some(Arc::new(cold));
        self
    }

    /// Counters since start.
    pub fn activity(&self) -> TierActivity {
        let c = &self.counters;
        TierActivity {
            redis_writes: c.redis_writes.load(Ordering::Relaxed),
            redis_errors: c.redis_errors.load(Ordering::Relaxed),
            archived: c.archived.load(Ordering::Relaxed),
            archive_errors: c.archive_errors.load(Ordering::Relaxed),
            missed: c.missed.load(Ordering::Relaxed),
        }
    }

    /// Applies every catalog change to the tiers until `cancel` (or the catalog is gone).
    pub async fn follow(&self, catalog: &crate::Catalog, cancel: CancellationToken) {
        let mut feed = catalog.follow_changes();
        loop {
            let change = tokio::select! {
                () = cancel.cancelled() => return,
                c = feed.next() => c,
            };
            match change {
                None => return,
                Some(Err(missed)) => {
                    self.counters.missed.fetch_add(missed, Ordering::Relaxed);
                    tracing::warn!(missed, "cache tiers fell behind the catalog");
                }
                Some(Ok(change)) => self.apply(&change).await,
            }
        }
    }

    async fn apply(&self, change: &crate::Change) {
        let c = &self.counters;
        match &change.new {
            Some(entry) => {
                let asset = entry.asset.clone();
                self.hot.set(asset.clone());
                if let Some(redis) = &self.redis {
                    match redis.set(&asset).await {
                        Ok(()) => c.redis_writes.fetch_add(1, Ordering::Relaxed),
                        Err(e) => {
                            tracing::warn!(asset = %asset.id, error = %e, "redis tier write failed");
                            c.redis_errors.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                }
                #[cfg(feature = "s3")]
                if let Some(cold) = &self.cold {
                    match cold.archive(&asset).await {
                        Ok(_) => c.archived.fetch_add(1, Ordering::Relaxed),
                        Err(e) => {
                            tracing::warn!(asset = %asset.id, error = %e, "cold tier archive failed");
                            c.archive_errors.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                }
            }
            None => {
                self.hot.invalidate(&change.id);
                if let Some(redis) = &self.redis
                    && let Err(e) = redis.invalidate(&change.id).await
                {
                    tracing::warn!(asset = %change.id, error = %e, "redis tier invalidation failed");
                    c.redis_errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

fn decode(id: &str, raw: &str) -> Result<Asset, CacheError> {
    let doc: serde_json::Value =
        serde_json::from_str(raw).map_err(|_| CacheError::Corrupt(id.to_owned()))?;
    Asset::from_document(doc).map_err(|_| CacheError::Corrupt(id.to_owned()))
}

/// The cold tier: asset history archived to S3-compatible storage (feature `s3`).
#[cfg(feature = "s3")]
pub mod cold {
    use object_store::ObjectStoreExt as _;
    use object_store::aws::AmazonS3Builder;
    use object_store::path::Path;

    use super::CacheError;
    use crate::asset::Asset;

    /// Where history goes.
    #[derive(Debug, Clone)]
    pub struct ColdSettings {
        /// Bucket.
        pub bucket: String,
        /// Key prefix, e.g. `aura/history`.
        pub prefix: String,
        /// Endpoint of an S3-compatible server; AWS when `None`.
        pub endpoint: Option<String>,
        /// Region.
        pub region: String,
        /// Allow plain HTTP (test servers).
        pub allow_http: bool,
        /// Credentials; the standard AWS environment variables when `None`.
        pub credentials: Option<ColdCredentials>,
    }

    /// Explicit S3 credentials (never written anywhere).
    #[derive(Clone)]
    pub struct ColdCredentials {
        /// Access key id.
        pub access_key_id: String,
        /// Secret access key.
        pub secret_access_key: String,
        /// Session token.
        pub session_token: Option<String>,
    }

    impl std::fmt::Debug for ColdCredentials {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("ColdCredentials")
                .field("access_key_id", &self.access_key_id)
                .finish_non_exhaustive()
        }
    }

    /// Objects archived in the cold tier.
    #[derive(Debug, Clone, Copy, Default, serde::Serialize)]
    pub struct ColdStats {
        /// Archived versions.
        pub objects: u64,
        /// Their total size.
        pub bytes: u64,
    }

    /// An archive of asset versions: `<prefix>/<asset_id>/<updated_at>-<checksum>.aav`, never overwritten.
    #[derive(Debug)]
    pub struct ColdArchive {
        store: Box<dyn object_store::ObjectStore>,
        bucket: String,
        prefix: String,
    }

    impl ColdArchive {
        /// Opens the bucket (credentials from the environment, as the AWS tools read them).
        pub fn open(settings: &ColdSettings) -> Result<ColdArchive, CacheError> {
            let mut b = AmazonS3Builder::from_env()
                .with_bucket_name(&settings.bucket)
                .with_region(&settings.region)
                .with_allow_http(settings.allow_http);
            if let Some(e) = &settings.endpoint {
                // S3-compatible servers (MinIO, moto) answer path-style requests.
                b = b.with_endpoint(e).with_virtual_hosted_style_request(false);
            }
            if let Some(c) = &settings.credentials {
                b = b
                    .with_access_key_id(&c.access_key_id)
                    .with_secret_access_key(&c.secret_access_key);
                if let Some(t) = &c.session_token {
                    b = b.with_token(t);
                }
            }
            let store = b.build().map_err(|e| CacheError::Cold(e.to_string()))?;
            Ok(ColdArchive {
                store: Box::new(store),
                bucket: settings.bucket.clone(),
                prefix: settings.prefix.trim_matches('/').to_owned(),
            })
        }

        /// The bucket.
        pub fn bucket(&self) -> &str {
            &self.bucket
        }

        /// The key prefix (no leading or trailing `/`).
        pub fn prefix(&self) -> &str {
            &self.prefix
        }

        fn key(&self, rest: &str) -> String {
            if self.prefix.is_empty() {
                rest.to_owned()
            } else {
                format!("{}/{rest}", self.prefix)
            }
        }

        /// Archives one version of an asset as its `.aav` text; returns its key
        /// (`<prefix>/<id>/<updated_at>-<checksum>.aav`: versions sort by time and are never overwritten).
        pub async fn archive(&self, asset: &Asset) -> Result<String, CacheError> {
            let text = asset
                .to_toml()
                .map_err(|e| CacheError::Cold(e.to_string()))?;
            let sum = crate::asset::content_checksum(&asset.doc);
            let sum = sum.trim_start_matches("sha256:");
            let key = self.key(&format!(
                "{}/{}-{}.aav",
                asset.id,
                asset.updated_at.replace(':', "-"),
                &sum[..sum.len().min(12)]
            ));
            self.store
                .put(&Path::from(key.as_str()), text.into_bytes().into())
                .await
                .map_err(|e| CacheError::Cold(e.to_string()))?;
            Ok(key)
        }

        /// One archived version, parsed back.
        pub async fn read(&self, key: &str) -> Result<Asset, CacheError> {
            let bytes = self
                .store
                .get(&Path::from(key))
                .await
                .map_err(|e| CacheError::Cold(e.to_string()))?
                .bytes()
                .await
                .map_err(|e| CacheError::Cold(e.to_string()))?;
            let text = String::from_utf8(bytes.to_vec())
                .map_err(|_| CacheError::Corrupt(key.to_owned()))?;
            Asset::from_toml(&text).map_err(|_| CacheError::Corrupt(key.to_owned()))
        }

        /// Objects and bytes under the prefix.
        pub async fn stats(&self) -> Result<ColdStats, CacheError> {
            use futures_util::StreamExt as _;
            let prefix = (!self.prefix.is_empty()).then(|| Path::from(self.prefix.as_str()));
            let mut list = self.store.list(prefix.as_ref());
            let mut stats = ColdStats::default();
            while let Some(item) = list.next().await {
                let meta = item.map_err(|e| CacheError::Cold(e.to_string()))?;
                stats.objects += 1;
                stats.bytes += meta.size;
            }
            Ok(stats)
        }

        /// Archived versions of an asset, oldest first.
        pub async fn history(&self, id: &str) -> Result<Vec<String>, CacheError> {
            use futures_util::StreamExt as _;
            let prefix = Path::from(self.key(id).as_str());
            let mut list = self.store.list(Some(&prefix));
            let mut keys = Vec::new();
            while let Some(item) = list.next().await {
                let meta = item.map_err(|e| CacheError::Cold(e.to_string()))?;
                keys.push(meta.location.to_string());
            }
            keys.sort();
            Ok(keys)
        }
    }
}
