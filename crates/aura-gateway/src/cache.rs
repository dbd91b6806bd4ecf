//! Exact-match caches of responses and embeddings (seed 004's embedding cache), keyed by a SHA-256 of the
//! normalized request: in process (bounded in entries, with a time to live) or in Redis (shared by every node,
//! expiring by TTL). A Redis error is a miss, never a failed call.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// A cache of answers, in process or in Redis.
#[derive(Debug)]
pub enum AnswerCache {
    /// In process.
    Memory(Cache),
    /// In Redis.
    Redis(RedisCache),
}

impl AnswerCache {
    /// The cached body, if fresh.
    pub async fn get(&self, key: &[u8; 32]) -> Option<Bytes> {
        match self {
            AnswerCache::Memory(c) => c.get(key),
            AnswerCache::Redis(r) => r.get(key).await,
        }
    }

    /// Stores `body`.
    pub async fn put(&self, key: [u8; 32], body: Bytes) {
        match self {
            AnswerCache::Memory(c) => c.put(key, body),
            AnswerCache::Redis(r) => r.put(key, body).await,
        }
    }
}

/// Answers in Redis under `aura:gateway:<kind>:<sha256 hex>`, set with an expiry of the TTL.
#[derive(Clone)]
pub struct RedisCache {
    conn: redis::aio::ConnectionManager,
    prefix: String,
    ttl_seconds: u64,
}

impl std::fmt::Debug for RedisCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCache")
            .field("prefix", &self.prefix)
            .field("ttl_seconds", &self.ttl_seconds)
            .finish_non_exhaustive()
    }
}

impl RedisCache {
    /// Connects to `url`; entries of this cache are named `aura:gateway:<kind>:…` and live `ttl`.
    pub async fn connect(url: &str, kind: &str, ttl: Duration) -> Result<RedisCache, String> {
        let client =
            redis::Client::open(url).map_err(|e| format!("gateway cache: redis url: {e}"))?;
        let conn = redis::aio::ConnectionManager::new(client)
            .await
            .map_err(|e| format!("gateway cache: cannot reach redis: {e}"))?;
        Ok(RedisCache {
            conn,
            prefix: format!("aura:gateway:{kind}:"),
            ttl_seconds: ttl.as_secs().max(1),
        })
    }

    fn name(&self, key: &[u8; 32]) -> String {
        let mut name = String::with_capacity(self.prefix.len() + 64);
        name.push_str(&self.prefix);
        for b in key {
            name.push_str(&format!("{b:02x}"));
        }
        name
    }

    /// The cached body (a miss when Redis fails).
    pub async fn get(&self, key: &[u8; 32]) -> Option<Bytes> {
        let mut conn = self.conn.clone();
        let got: redis::RedisResult<Option<Vec<u8>>> = redis::cmd("GET")
            .arg(self.name(key))
            .query_async(&mut conn)
            .await;
        match got {
            Ok(v) => v.map(Bytes::from),
            Err(e) => {
                tracing::warn!(error = %e, "gateway cache read failed; treated as a miss");
                None
            }
        }
    }

    /// Stores `body` with the TTL (a failure is logged and ignored).
    pub async fn put(&self, key: [u8; 32], body: Bytes) {
        let mut conn = self.conn.clone();
        let set: redis::RedisResult<()> = redis::cmd("SET")
            .arg(self.name(&key))
            .arg(body.as_ref())
            .arg("EX")
            .arg(self.ttl_seconds)
            .query_async(&mut conn)
            .await;
        if let Err(e) = set {
            tracing::warn!(error = %e, "gateway cache write failed");
        }
    }
}

/// A bounded, expiring map from request hashes to response bodies.
#[derive(Debug)]
pub struct Cache {
    ttl: Duration,
    max_entries: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    map: HashMap<[u8; 32], (Instant, Bytes)>,
    order: VecDeque<[u8; 32]>,
}

impl Cache {
    /// A cache keeping at most `max_entries` for `ttl` each.
    pub fn new(ttl: Duration, max_entries: usize) -> Cache {
        Cache {
            ttl,
            max_entries: max_entries.max(1),
            inner: Mutex::new(Inner::default()),
        }
    }

    /// The key of a request: the endpoint, the model and the body with `stream` and `user` removed; object
    /// keys are sorted, so field order does not matter.
    pub fn key(endpoint: &str, model: &str, body: &Value) -> [u8; 32] {
        let mut normalized = body.clone();
        if let Value::Object(map) = &mut normalized {
            map.remove("stream");
            map.remove("stream_options");
            map.remove("user");
        }
        let mut h = Sha256::new();
        h.update(endpoint.as_bytes());
        h.update([0]);
        h.update(model.as_bytes());
        h.update([0]);
        h.update(normalized.to_string().as_bytes());
        h.finalize().into()
    }

    /// The cached body, if fresh.
    pub fn get(&self, key: &[u8; 32]) -> Option<Bytes> {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner
            .map
            .get(key)
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, b)| b.clone())
    }

    /// Stores `body`, evicting the oldest entries past the bound.
    pub fn put(&self, key: [u8; 32], body: Bytes) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if inner.map.insert(key, (Instant::now(), body)).is_none() {
            inner.order.push_back(key);
        }
        while inner.map.len() > self.max_entries {
            let Some(old) = inner.order.pop_front() else {
                break;
            };
            inner.map.remove(&old);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn key_ignores_field_order_and_stream_and_bound_holds() {
        let a = Cache::key("chat", "m", &json!({"a": 1, "b": 2, "stream": false}));
        let b = Cache::key("chat", "m", &json!({"b": 2, "a": 1}));
        assert_eq!(a, b);
        assert_ne!(a, Cache::key("chat", "other", &json!({"a": 1, "b": 2})));
        let c = Cache::new(Duration::from_secs(60), 2);
        c.put([1; 32], Bytes::from_static(b"1"));
        c.put([2; 32], Bytes::from_static(b"2"));
        c.put([3; 32], Bytes::from_static(b"3"));
        assert!(c.get(&[1; 32]).is_none());
        assert_eq!(c.get(&[3; 32]).unwrap(), Bytes::from_static(b"3"));
        let expired = Cache::new(Duration::ZERO, 2);
        expired.put([1; 32], Bytes::from_static(b"1"));
        assert!(expired.get(&[1; 32]).is_none());
    }
}
