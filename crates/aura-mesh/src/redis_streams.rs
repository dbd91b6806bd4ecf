//! The Redis Streams backend: one stream per topic (`aura:mesh:<topic>`), consumer groups with XREADGROUP, XACK and
//! XAUTOCLAIM for redelivery after `ack_wait`. Blocking reads run on a dedicated connection per subscription (a
//! blocking XREADGROUP would stall a shared multiplexed connection); everything else shares one ConnectionManager.
//!
//! Offsets encode the stream entry ID `ms-seq` as `ms << 22 | seq`, so they grow with publish order and a time maps
//! to an offset. Durability is Redis's: with `appendonly yes` + `appendfsync always` an acknowledged XADD is on disk.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use async_trait::async_trait;
use aura_core::Timestamp;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::streams::{
    StreamAutoClaimReply, StreamId, StreamPendingCountReply, StreamRangeReply, StreamReadReply,
};
use redis::{AsyncConnectionConfig, Value};

use crate::{
    Acker, Delivery, Mesh, MeshError, Message, Outgoing, Receipt, StartAt, SubscribeOptions,
    Subscription, Topic, TopicInfo, validate_group,
};

/// How to reach Redis.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// URL, e.g. `redis://127.0.0.1:6379`.
    pub url: String,
    /// Bound on connecting and on each command.
    pub timeout: Duration,
}

/// The Redis Streams mesh.
#[derive(Clone)]
pub struct RedisMesh {
    client: redis::Client,
    conn: ConnectionManager,
    timeout: Duration,
}

impl std::fmt::Debug for RedisMesh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisMesh").finish_non_exhaustive()
    }
}

const TOPICS_KEY: &str = "aura:mesh:topics";
const SEQ_BITS: u32 = 22;

fn stream_key(topic: &Topic) -> String {
    format!("aura:mesh:{}", topic.as_str())
}

fn map_err(e: redis::RedisError) -> MeshError {
    if e.is_io_error() || e.is_connection_refusal() || e.is_timeout() || e.is_connection_dropped() {
        MeshError::Unavailable(e.to_string())
    } else {
        MeshError::Backend(e.to_string())
    }
}

/// `ms-seq` → offset.
fn offset_of(id: &str) -> Result<u64, MeshError> {
    let (ms, seq) = id
        .split_once('-')
        .ok_or_else(|| MeshError::Backend(format!("bad stream id `{id}`")))?;
    let ms: u64 = ms
        .parse()
        .map_err(|_| MeshError::Backend(format!("bad stream id `{id}`")))?;
    let seq: u64 = seq
        .parse()
        .map_err(|_| MeshError::Backend(format!("bad stream id `{id}`")))?;
    Ok((ms << SEQ_BITS) | seq.min((1 << SEQ_BITS) - 1))
}

/// offset → `ms-seq`.
fn id_of(offset: u64) -> String {
    format!("{}-{}", offset >> SEQ_BITS, offset & ((1 << SEQ_BITS) - 1))
}

fn bytes(v: Option<&Value>) -> Vec<u8> {
    match v {
        Some(Value::BulkString(b)) => b.clone(),
        Some(Value::SimpleString(s)) => s.as_bytes().to_vec(),
        _ => Vec::new(),
    }
}

fn message_of(topic: &Topic, entry: &StreamId) -> Result<Message, MeshError> {
    let offset = offset_of(&entry.id)?;
    let key = entry
        .map
        .get("k")
        .map(|v| String::from_utf8_lossy(&bytes(Some(v))).into_owned());
    let headers: BTreeMap<String, String> = match entry.map.get("h") {
        Some(v) => serde_json::from_slice(&bytes(Some(v)))
            .map_err(|e| MeshError::Corrupt(format!("headers of `{}`: {e}", entry.id)))?,
        None => BTreeMap::new(),
    };
    Ok(Message {
        topic: topic.clone(),
        offset,
        timestamp: Timestamp::from_millis((offset >> SEQ_BITS) as i64),
        key,
        headers,
        payload: bytes(entry.map.get("p")),
    })
}

impl RedisMesh {
    /// Connects (failing after `config.timeout`).
    pub async fn connect(config: &RedisConfig) -> Result<RedisMesh, MeshError> {
        let client = redis::Client::open(config.url.as_str())
            .map_err(|e| MeshError::Invalid(format!("redis url: {e}")))?;
        let conn = tokio::time::timeout(
            config.timeout,
            ConnectionManager::new_with_config(
                client.clone(),
                ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(config.timeout))
                    .set_response_timeout(Some(config.timeout))
                    .set_number_of_retries(1),
            ),
        )
        .await
        .map_err(|_| MeshError::Unavailable("redis connect timed out".into()))?
        .map_err(map_err)?;
        Ok(RedisMesh {
            client,
            conn,
            timeout: config.timeout,
        })
    }

    /// A connection of its own (for blocking readers and raw-client benchmarks).
    pub async fn dedicated_connection(&self) -> Result<MultiplexedConnection, MeshError> {
        self.client
            .get_multiplexed_async_connection_with_config(
                &AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(self.timeout))
                    .set_response_timeout(None),
            )
            .await
            .map_err(map_err)
    }

    async fn create_group(
        &self,
        topic: &Topic,
        group: &str,
        start: StartAt,
    ) -> Result<(), MeshError> {
        let start_id = match start {
            StartAt::Earliest => "0".to_owned(),
            StartAt::Latest => "$".to_owned(),
            StartAt::Offset(o) => id_of(o.saturating_sub(1)),
            StartAt::Time(t) => {
                id_of(((t.as_millis().max(0) as u64) << SEQ_BITS).saturating_sub(1))
            }
        };
        let mut conn = self.conn.clone();
        let r: Result<Value, _> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(stream_key(topic))
            .arg(group)
            .arg(start_id)
            .arg("MKSTREAM")
            .query_async(&mut conn)
            .await;
        match r {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
            Err(e) => Err(map_err(e)),
        }
    }
}

struct RedisSubscription {
    topic: Topic,
    key: String,
    group: String,
    consumer: String,
    ack_wait: Duration,
    reader: MultiplexedConnection,
    conn: ConnectionManager,
}

struct RedisAcker {
    conn: ConnectionManager,
    key: String,
    group: String,
    consumer: String,
    id: String,
    ack_wait: Duration,
}

#[async_trait]
impl Acker for RedisAcker {
    async fn ack(&self) -> Result<(), MeshError> {
        let mut conn = self.conn.clone();
        redis::cmd("XACK")
            .arg(&self.key)
            .arg(&self.group)
            .arg(&self.id)
            .query_async::<i64>(&mut conn)
            .await
            .map(|_| ())
            .map_err(map_err)
    }

    async fn nack(&self, delay: Duration) -> Result<(), MeshError> {
        // Make the entry look idle for `ack_wait - delay`, so XAUTOCLAIM picks it up after `delay`.
        let idle = self.ack_wait.saturating_sub(delay).as_millis() as u64;
        let mut conn = self.conn.clone();
        redis::cmd("XCLAIM")
            .arg(&self.key)
            .arg(&self.group)
            .arg(&self.consumer)
            .arg(0)
            .arg(&self.id)
            .arg("IDLE")
            .arg(idle)
            .arg("JUSTID")
            .query_async::<Value>(&mut conn)
            .await
            .map(|_| ())
            .map_err(map_err)
    }
}

impl RedisSubscription {
    fn delivery(&self, entry: &StreamId, attempt: u32) -> Result<Delivery, MeshError> {
        Ok(Delivery::new(
            message_of(&self.topic, entry)?,
            attempt,
            Box::new(RedisAcker {
                conn: self.conn.clone(),
                key: self.key.clone(),
                group: self.group.clone(),
                consumer: self.consumer.clone(),
                id: entry.id.clone(),
                ack_wait: self.ack_wait,
            }),
        ))
    }

    async fn claim_due(&mut self, max: usize) -> Result<Vec<Delivery>, MeshError> {
        let reply: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
            .arg(&self.key)
            .arg(&self.group)
            .arg(&self.consumer)
            .arg(self.ack_wait.as_millis() as u64)
            .arg("0-0")
            .arg("COUNT")
            .arg(max)
            .query_async(&mut self.conn)
            .await
            .map_err(map_err)?;
        if reply.claimed.is_empty() {
            return Ok(Vec::new());
        }
        let first = &reply.claimed[0].id;
        let last = &reply.claimed[reply.claimed.len() - 1].id;
        let pending: StreamPendingCountReply = redis::cmd("XPENDING")
            .arg(&self.key)
            .arg(&self.group)
            .arg(first)
            .arg(last)
            .arg(reply.claimed.len())
            .arg(&self.consumer)
            .query_async(&mut self.conn)
            .await
            .map_err(map_err)?;
        let counts: HashMap<&str, usize> = pending
            .ids
            .iter()
            .map(|p| (p.id.as_str(), p.times_delivered))
            .collect();
        reply
            .claimed
            .iter()
            .map(|e| {
                let attempt = counts.get(e.id.as_str()).copied().unwrap_or(2);
                self.delivery(e, u32::try_from(attempt).unwrap_or(u32::MAX))
            })
            .collect()
    }
}

#[async_trait]
impl Subscription for RedisSubscription {
    async fn fetch(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivery>, MeshError> {
        let max = max.max(1);
        let mut out = self.claim_due(max).await?;
        if out.len() >= max {
            return Ok(out);
        }
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(&self.group)
            .arg(&self.consumer)
            .arg("COUNT")
            .arg(max - out.len());
        // Block only when nothing is ready, and never past ack_wait, so redeliveries are noticed.
        let block = wait.min(self.ack_wait).as_millis() as u64;
        if out.is_empty() && block > 0 {
            cmd.arg("BLOCK").arg(block);
        }
        cmd.arg("STREAMS").arg(&self.key).arg(">");
        let reply: Option<StreamReadReply> =
            cmd.query_async(&mut self.reader).await.map_err(map_err)?;
        if let Some(reply) = reply {
            for k in &reply.keys {
                for e in &k.ids {
                    out.push(self.delivery(e, 1)?);
                }
            }
        }
        Ok(out)
    }
}

#[async_trait]
impl Mesh for RedisMesh {
    fn backend(&self) -> &'static str {
        "redis"
    }

    async fn ensure_topic(&self, topic: &Topic) -> Result<(), MeshError> {
        let mut conn = self.conn.clone();
        redis::cmd("SADD")
            .arg(TOPICS_KEY)
            .arg(topic.as_str())
            .query_async::<i64>(&mut conn)
            .await
            .map_err(map_err)?;
        // A stream exists once it has a group or an entry; a placeholder group keeps it empty but present.
        self.create_group(topic, "_aura", StartAt::Latest).await
    }

    async fn delete_topic(&self, topic: &Topic) -> Result<bool, MeshError> {
        let mut conn = self.conn.clone();
        let removed: i64 = redis::cmd("SREM")
            .arg(TOPICS_KEY)
            .arg(topic.as_str())
            .query_async(&mut conn)
            .await
            .map_err(map_err)?;
        let deleted: i64 = redis::cmd("DEL")
            .arg(stream_key(topic))
            .query_async(&mut conn)
            .await
            .map_err(map_err)?;
        Ok(removed > 0 || deleted > 0)
    }

    async fn topics(&self) -> Result<Vec<TopicInfo>, MeshError> {
        let mut conn = self.conn.clone();
        let names: Vec<String> = redis::cmd("SMEMBERS")
            .arg(TOPICS_KEY)
            .query_async(&mut conn)
            .await
            .map_err(map_err)?;
        let mut out = Vec::new();
        for name in names {
            let Ok(topic) = Topic::new(&name) else {
                continue;
            };
            let key = stream_key(&topic);
            let len: u64 = redis::cmd("XLEN")
                .arg(&key)
                .query_async(&mut conn)
                .await
                .map_err(map_err)?;
            let first: StreamRangeReply = redis::cmd("XRANGE")
                .arg(&key)
                .arg("-")
                .arg("+")
                .arg("COUNT")
                .arg(1)
                .query_async(&mut conn)
                .await
                .map_err(map_err)?;
            let last: StreamRangeReply = redis::cmd("XREVRANGE")
                .arg(&key)
                .arg("+")
                .arg("-")
                .arg("COUNT")
                .arg(1)
                .query_async(&mut conn)
                .await
                .map_err(map_err)?;
            let groups: Value = redis::cmd("XINFO")
                .arg("GROUPS")
                .arg(&key)
                .query_async(&mut conn)
                .await
                .unwrap_or(Value::Nil);
            let mut group_names = group_names(&groups);
            group_names.retain(|g| g != "_aura");
            group_names.sort();
            out.push(TopicInfo {
                topic,
                messages: len,
                first_offset: first
                    .ids
                    .first()
                    .map(|e| offset_of(&e.id))
                    .transpose()?
                    .unwrap_or(0),
                last_offset: last
                    .ids
                    .first()
                    .map(|e| offset_of(&e.id))
                    .transpose()?
                    .unwrap_or(0),
                groups: group_names,
            });
        }
        out.sort_by(|a, b| a.topic.cmp(&b.topic));
        Ok(out)
    }

    async fn publish(&self, topic: &Topic, message: Outgoing) -> Result<Receipt, MeshError> {
        let mut r = self.publish_batch(topic, vec![message]).await?;
        r.pop()
            .ok_or_else(|| MeshError::Backend("no receipt".into()))
    }

    async fn publish_batch(
        &self,
        topic: &Topic,
        messages: Vec<Outgoing>,
    ) -> Result<Vec<Receipt>, MeshError> {
        let key = stream_key(topic);
        let mut pipe = redis::pipe();
        pipe.cmd("SADD")
            .arg(TOPICS_KEY)
            .arg(topic.as_str())
            .ignore();
        for m in &messages {
            let c = pipe.cmd("XADD").arg(&key).arg("*");
            if let Some(k) = &m.key {
                c.arg("k").arg(k.as_str());
            }
            if !m.headers.is_empty() {
                let h = serde_json::to_vec(&m.headers)
                    .map_err(|e| MeshError::Invalid(e.to_string()))?;
                c.arg("h").arg(h);
            }
            c.arg("p").arg(m.payload.as_slice());
        }
        let mut conn = self.conn.clone();
        let ids: Vec<String> = pipe.query_async(&mut conn).await.map_err(map_err)?;
        ids.iter()
            .map(|id| {
                Ok(Receipt {
                    offset: offset_of(id)?,
                    spooled: false,
                })
            })
            .collect()
    }

    async fn subscribe(
        &self,
        topic: &Topic,
        group: &str,
        options: SubscribeOptions,
    ) -> Result<Box<dyn Subscription>, MeshError> {
        validate_group(group)?;
        let mut conn = self.conn.clone();
        redis::cmd("SADD")
            .arg(TOPICS_KEY)
            .arg(topic.as_str())
            .query_async::<i64>(&mut conn)
            .await
            .map_err(map_err)?;
        self.create_group(topic, group, options.start).await?;
        let reader = self.dedicated_connection().await?;
        Ok(Box::new(RedisSubscription {
            topic: topic.clone(),
            key: stream_key(topic),
            group: group.to_owned(),
            consumer: format!("c-{:016x}", fastrand::u64(..)),
            ack_wait: options.ack_wait,
            reader,
            conn,
        }))
    }

    async fn read(
        &self,
        topic: &Topic,
        from: StartAt,
        max: usize,
    ) -> Result<Vec<Message>, MeshError> {
        let mut conn = self.conn.clone();
        let exists: i64 = redis::cmd("EXISTS")
            .arg(stream_key(topic))
            .query_async(&mut conn)
            .await
            .map_err(map_err)?;
        if exists == 0 {
            return Err(MeshError::NoTopic(topic.to_string()));
        }
        let start = match from {
            StartAt::Earliest => "-".to_owned(),
            StartAt::Latest => return Ok(Vec::new()),
            StartAt::Offset(o) => id_of(o),
            StartAt::Time(t) => format!("{}-0", t.as_millis().max(0)),
        };
        let reply: StreamRangeReply = redis::cmd("XRANGE")
            .arg(stream_key(topic))
            .arg(start)
            .arg("+")
            .arg("COUNT")
            .arg(max)
            .query_async(&mut conn)
            .await
            .map_err(map_err)?;
        reply.ids.iter().map(|e| message_of(topic, e)).collect()
    }

    async fn lag(&self, topic: &Topic, group: &str) -> Result<Option<u64>, MeshError> {
        let mut conn = self.conn.clone();
        let groups: Value = match redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(stream_key(topic))
            .query_async(&mut conn)
            .await
        {
            Ok(v) => v,
            Err(e) if e.code() == Some("ERR") => return Ok(None),
            Err(e) => return Err(map_err(e)),
        };
        Ok(group_field(&groups, group, "pending")
            .map(|pending| pending + group_field(&groups, group, "lag").unwrap_or(0)))
    }

    async fn healthy(&self) -> bool {
        let mut conn = self.conn.clone();
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .is_ok()
    }

    async fn close(&self) {}
}

fn group_entries(v: &Value) -> Vec<HashMap<String, Value>> {
    let Value::Array(items) = v else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|item| match item {
            Value::Array(kv) => Some(
                kv.chunks(2)
                    .filter_map(|c| match (&c[0], c.get(1)) {
                        (Value::BulkString(k), Some(v)) => {
                            Some((String::from_utf8_lossy(k).into_owned(), v.clone()))
                        }
                        (Value::SimpleString(k), Some(v)) => Some((k.clone(), v.clone())),
                        _ => None,
                    })
                    .collect(),
            ),
            Value::Map(kv) => Some(
                kv.iter()
                    .filter_map(|(k, v)| match k {
                        Value::BulkString(k) => {
                            Some((String::from_utf8_lossy(k).into_owned(), v.clone()))
                        }
                        Value::SimpleString(k) => Some((k.clone(), v.clone())),
                        _ => None,
                    })
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

fn group_names(v: &Value) -> Vec<String> {
    group_entries(v)
        .iter()
        .filter_map(|m| {
            m.get("name")
                .map(|n| String::from_utf8_lossy(&bytes(Some(n))).into_owned())
        })
        .collect()
}

fn group_field(v: &Value, group: &str, field: &str) -> Option<u64> {
    group_entries(v)
        .iter()
        .find(|m| {
            m.get("name")
                .is_some_and(|n| bytes(Some(n)) == group.as_bytes())
        })
        .and_then(|m| match m.get(field) {
            Some(Value::Int(i)) => u64::try_from(*i).ok(),
            _ => None,
        })
}
