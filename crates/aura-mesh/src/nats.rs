//! The NATS JetStream backend: one file-backed stream per topic (subject `aura.mesh.<topic>`, the topic name in the
//! stream's description), one durable pull consumer per group with explicit acks, offsets = stream sequences.
//! A publish is acknowledged once the server's PubAck says the message is stored. Messages carrying an `aura-id`
//! header are published with it as `Nats-Msg-Id`, so a resend after an ambiguous failure is de-duplicated.

use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use async_trait::async_trait;
use aura_core::Timestamp;
use futures_util::StreamExt as _;

use crate::{
    Acker, Delivery, Mesh, MeshError, Message, Outgoing, Receipt, StartAt, SubscribeOptions,
    Subscription, Topic, TopicInfo, validate_group,
};

/// How to reach NATS.
#[derive(Debug, Clone)]
pub struct NatsConfig {
    /// Server URL, e.g. `nats://127.0.0.1:4222`.
    pub url: String,
    /// Bound on connecting and on waiting for a PubAck.
    pub timeout: Duration,
}

/// The NATS JetStream mesh.
#[derive(Debug, Clone)]
pub struct NatsMesh {
    client: async_nats::Client,
    js: jetstream::Context,
}

const KEY_HEADER: &str = "aura-key";
const ID_HEADER: &str = "aura-id";

fn unavailable(e: impl std::fmt::Display) -> MeshError {
    MeshError::Unavailable(e.to_string())
}

fn backend(e: impl std::fmt::Display) -> MeshError {
    MeshError::Backend(e.to_string())
}

/// Stream name for a topic: `AURA_` + the topic with `_` doubled and `.` written `_d`.
fn stream_name(topic: &Topic) -> String {
    let mut s = String::from("AURA_");
    for c in topic.as_str().chars() {
        match c {
            '_' => s.push_str("__"),
            '.' => s.push_str("_d"),
            c => s.push(c),
        }
    }
    s
}

fn subject(topic: &Topic) -> String {
    format!("aura.mesh.{}", topic.as_str())
}

fn to_ms(t: time::OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

fn from_ms(ms: i64) -> Result<time::OffsetDateTime, MeshError> {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .map_err(|e| MeshError::Invalid(format!("time out of range: {e}")))
}

fn deliver_policy(start: StartAt) -> Result<consumer::DeliverPolicy, MeshError> {
    Ok(match start {
        StartAt::Earliest => consumer::DeliverPolicy::All,
        StartAt::Latest => consumer::DeliverPolicy::New,
        StartAt::Offset(o) => consumer::DeliverPolicy::ByStartSequence {
            start_sequence: o.max(1),
        },
        StartAt::Time(t) => consumer::DeliverPolicy::ByStartTime {
            start_time: from_ms(t.as_millis())?,
        },
    })
}

fn headers_of(m: &Outgoing) -> async_nats::HeaderMap {
    let mut h = async_nats::HeaderMap::new();
    for (k, v) in &m.headers {
        h.insert(k.as_str(), v.as_str());
    }
    if let Some(key) = &m.key {
        h.insert(KEY_HEADER, key.as_str());
    }
    if let Some(id) = m.headers.get(ID_HEADER) {
        h.insert("Nats-Msg-Id", id.as_str());
    }
    h
}

fn message_of(
    topic: &Topic,
    offset: u64,
    ms: i64,
    headers: Option<&async_nats::HeaderMap>,
    payload: &[u8],
) -> Message {
    let mut key = None;
    let mut out = std::collections::BTreeMap::new();
    if let Some(h) = headers {
        for (name, values) in h.iter() {
            let name: &str = name.as_ref();
            let Some(v) = values.first() else { continue };
            if name == KEY_HEADER {
                key = Some(v.to_string());
            } else if name != "Nats-Msg-Id" {
                out.insert(name.to_owned(), v.to_string());
            }
        }
    }
    Message {
        topic: topic.clone(),
        offset,
        timestamp: Timestamp::from_millis(ms),
        key,
        headers: out,
        payload: payload.to_vec(),
    }
}

impl NatsMesh {
    /// Connects to NATS (failing after `config.timeout`).
    pub async fn connect(config: &NatsConfig) -> Result<NatsMesh, MeshError> {
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(config.timeout)
            .retry_on_initial_connect()
            .max_reconnects(None)
            .connect(config.url.as_str())
            .await
            .map_err(unavailable)?;
        // The initial connect retries in the background: wait for it within the bound.
        let deadline = tokio::time::Instant::now() + config.timeout;
        while client.connection_state() != async_nats::connection::State::Connected {
            if tokio::time::Instant::now() >= deadline {
                return Err(MeshError::Unavailable(format!(
                    "cannot connect to NATS at `{}`",
                    config.url
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut js = jetstream::new(client.clone());
        js.set_timeout(config.timeout);
        Ok(NatsMesh { client, js })
    }

    /// The underlying client (for raw-client benchmarks).
    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    fn connected(&self) -> Result<(), MeshError> {
        if self.client.connection_state() == async_nats::connection::State::Connected {
            Ok(())
        } else {
            Err(MeshError::Unavailable("NATS is disconnected".into()))
        }
    }

    async fn stream(&self, topic: &Topic) -> Result<stream::Stream, MeshError> {
        self.connected()?;
        self.js
            .get_or_create_stream(stream::Config {
                name: stream_name(topic),
                subjects: vec![subject(topic)],
                storage: stream::StorageType::File,
                description: Some(topic.as_str().to_owned()),
                ..Default::default()
            })
            .await
            .map_err(unavailable)
    }

    async fn existing_stream(&self, topic: &Topic) -> Result<Option<stream::Stream>, MeshError> {
        self.connected()?;
        match self.js.get_stream(stream_name(topic)).await {
            Ok(s) => Ok(Some(s)),
            Err(e)
                if matches!(
                    e.kind(),
                    jetstream::context::GetStreamErrorKind::JetStream(_)
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(unavailable(e)),
        }
    }
}

struct NatsSubscription {
    topic: Topic,
    consumer: consumer::PullConsumer,
}

struct NatsAcker {
    message: jetstream::Message,
}

#[async_trait]
impl Acker for NatsAcker {
    async fn ack(&self) -> Result<(), MeshError> {
        self.message.double_ack().await.map_err(unavailable)
    }
    async fn nack(&self, delay: Duration) -> Result<(), MeshError> {
        let delay = if delay.is_zero() { None } else { Some(delay) };
        self.message
            .ack_with(jetstream::AckKind::Nak(delay))
            .await
            .map_err(unavailable)
    }
}

#[async_trait]
impl Subscription for NatsSubscription {
    async fn fetch(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivery>, MeshError> {
        let max = max.max(1);
        let mut batch = if wait < Duration::from_millis(10) {
            self.consumer
                .fetch()
                .max_messages(max)
                .messages()
                .await
                .map_err(unavailable)?
        } else {
            self.consumer
                .batch()
                .max_messages(max)
                .expires(wait)
                .messages()
                .await
                .map_err(unavailable)?
        };
        let mut out = Vec::new();
        while let Some(m) = batch.next().await {
            let m = m.map_err(unavailable)?;
            let (seq, attempt, ms) = {
                let info = m.info().map_err(backend)?;
                (
                    info.stream_sequence,
                    u32::try_from(info.delivered).unwrap_or(u32::MAX),
                    to_ms(info.published),
                )
            };
            let message = message_of(&self.topic, seq, ms, m.headers.as_ref(), &m.payload);
            out.push(Delivery::new(
                message,
                attempt,
                Box::new(NatsAcker { message: m }),
            ));
        }
        Ok(out)
    }
}

#[async_trait]
impl Mesh for NatsMesh {
    fn backend(&self) -> &'static str {
        "nats"
    }

    async fn ensure_topic(&self, topic: &Topic) -> Result<(), MeshError> {
        self.stream(topic).await.map(|_| ())
    }

    async fn delete_topic(&self, topic: &Topic) -> Result<bool, MeshError> {
        if self.existing_stream(topic).await?.is_none() {
            return Ok(false);
        }
        self.js
            .delete_stream(stream_name(topic))
            .await
            .map(|_| true)
            .map_err(unavailable)
    }

    async fn topics(&self) -> Result<Vec<TopicInfo>, MeshError> {
        self.connected()?;
        let mut streams = self.js.streams();
        let mut out = Vec::new();
        while let Some(info) = streams.next().await {
            let info = info.map_err(unavailable)?;
            if !info.config.name.starts_with("AURA_") {
                continue;
            }
            let Some(topic) = info
                .config
                .description
                .as_deref()
                .and_then(|d| Topic::new(d).ok())
            else {
                continue;
            };
            let stream = self
                .js
                .get_stream(&info.config.name)
                .await
                .map_err(unavailable)?;
            let mut names = stream.consumer_names();
            let mut groups = Vec::new();
            while let Some(n) = names.next().await {
                groups.push(n.map_err(unavailable)?);
            }
            groups.sort();
            out.push(TopicInfo {
                topic,
                messages: info.state.messages,
                first_offset: if info.state.messages == 0 {
                    0
                } else {
                    info.state.first_sequence
                },
                last_offset: info.state.last_sequence,
                groups,
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
        self.connected()?;
        let subject = subject(topic);
        let mut acks = Vec::with_capacity(messages.len());
        let mut created = false;
        for m in &messages {
            let ack = self
                .js
                .publish_with_headers(subject.clone(), headers_of(m), m.payload.clone().into())
                .await
                .map_err(unavailable)?;
            acks.push(ack);
        }
        let mut out = Vec::with_capacity(acks.len());
        let mut retry_from = None;
        for (i, ack) in acks.into_iter().enumerate() {
            match ack.await {
                Ok(a) => out.push(Receipt {
                    offset: a.sequence,
                    spooled: false,
                }),
                Err(e) if e.kind() == jetstream::context::PublishErrorKind::StreamNotFound => {
                    retry_from = Some(i);
                    break;
                }
                Err(e) => return Err(unavailable(e)),
            }
        }
        if let Some(i) = retry_from {
            // No stream yet: create it and publish the rest.
            if !created {
                self.stream(topic).await?;
                created = true;
            }
            let _ = created;
            for m in &messages[i..] {
                let a = self
                    .js
                    .publish_with_headers(subject.clone(), headers_of(m), m.payload.clone().into())
                    .await
                    .map_err(unavailable)?
                    .await
                    .map_err(unavailable)?;
                out.push(Receipt {
                    offset: a.sequence,
                    spooled: false,
                });
            }
        }
        Ok(out)
    }

    async fn subscribe(
        &self,
        topic: &Topic,
        group: &str,
        options: SubscribeOptions,
    ) -> Result<Box<dyn Subscription>, MeshError> {
        validate_group(group)?;
        let stream = self.stream(topic).await?;
        let consumer: consumer::PullConsumer = stream
            .get_or_create_consumer(
                group,
                consumer::pull::Config {
                    durable_name: Some(group.to_owned()),
                    ack_policy: consumer::AckPolicy::Explicit,
                    ack_wait: options.ack_wait,
                    deliver_policy: deliver_policy(options.start)?,
                    max_deliver: -1,
                    max_ack_pending: 100_000,
                    ..Default::default()
                },
            )
            .await
            .map_err(unavailable)?;
        Ok(Box::new(NatsSubscription {
            topic: topic.clone(),
            consumer,
        }))
    }

    async fn read(
        &self,
        topic: &Topic,
        from: StartAt,
        max: usize,
    ) -> Result<Vec<Message>, MeshError> {
        let stream = self
            .existing_stream(topic)
            .await?
            .ok_or_else(|| MeshError::NoTopic(topic.to_string()))?;
        if max == 0 || from == StartAt::Latest {
            return Ok(Vec::new());
        }
        let consumer: consumer::PullConsumer = stream
            .create_consumer(consumer::pull::Config {
                ack_policy: consumer::AckPolicy::None,
                deliver_policy: deliver_policy(from)?,
                inactive_threshold: Duration::from_secs(30),
                ..Default::default()
            })
            .await
            .map_err(unavailable)?;
        let mut out = Vec::new();
        while out.len() < max {
            let mut batch = consumer
                .fetch()
                .max_messages((max - out.len()).min(1000))
                .messages()
                .await
                .map_err(unavailable)?;
            let before = out.len();
            while let Some(m) = batch.next().await {
                let m = m.map_err(unavailable)?;
                let info = m.info().map_err(backend)?;
                out.push(message_of(
                    topic,
                    info.stream_sequence,
                    to_ms(info.published),
                    m.headers.as_ref(),
                    &m.payload,
                ));
            }
            if out.len() == before {
                break;
            }
        }
        let name = consumer.cached_info().name.clone();
        let _ = stream.delete_consumer(&name).await;
        Ok(out)
    }

    async fn lag(&self, topic: &Topic, group: &str) -> Result<Option<u64>, MeshError> {
        let Some(stream) = self.existing_stream(topic).await? else {
            return Ok(None);
        };
        match stream.consumer_info(group).await {
            Ok(info) => Ok(Some(info.num_pending + info.num_ack_pending as u64)),
            Err(e) => {
                if e.to_string().contains("not found") {
                    Ok(None)
                } else {
                    Err(unavailable(e))
                }
            }
        }
    }

    async fn healthy(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    async fn close(&self) {
        let _ = self.client.flush().await;
    }
}
