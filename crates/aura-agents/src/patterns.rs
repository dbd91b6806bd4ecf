//! Inter-agent patterns over the mesh: direct send and broadcast, peer consult (request/reply with a timeout),
//! parallel fan-out/fan-in, sequential pipelines and handoff (ownership moves with a summary and artifact
//! references, never the whole history). Every message leaves through an [`Outbox`], which the server implements
//! by asking the governance kernel first.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aura_core::{AgentName, Timestamp};
use aura_mesh::{Mesh, Receipt, StartAt, SubscribeOptions, Subscription, Topic};
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::AgentsError;
use crate::envelope::{BROADCAST_TOPIC, Envelope, MessageType, inbox};

/// Where messages leave: implementations decide (govern) and publish.
#[async_trait]
pub trait Outbox: Send + Sync {
    /// Publishes `envelope` on `topic` once allowed; returns the durable receipt.
    async fn send(&self, topic: &Topic, envelope: &Envelope) -> Result<Receipt, AgentsError>;
}

/// An outbox that publishes straight to a mesh (no governance: for tests, benchmarks and trusted internals).
#[derive(Debug, Clone)]
pub struct MeshOutbox(pub Arc<dyn Mesh>);

#[async_trait]
impl Outbox for MeshOutbox {
    async fn send(&self, topic: &Topic, envelope: &Envelope) -> Result<Receipt, AgentsError> {
        envelope.validate()?;
        Ok(self.0.publish(topic, envelope.to_outgoing()?).await?)
    }
}

/// The topic an envelope is addressed to: the target's inbox, or the broadcast topic for `*`.
pub fn topic_for(envelope: &Envelope) -> Result<Topic, AgentsError> {
    let name = if envelope.target == "*" {
        BROADCAST_TOPIC.to_owned()
    } else {
        inbox(&envelope.target)
    };
    Ok(Topic::new(&name)?)
}

/// Sends `envelope` to its target (or everyone).
pub async fn send(outbox: &dyn Outbox, envelope: &Envelope) -> Result<Receipt, AgentsError> {
    outbox.send(&topic_for(envelope)?, envelope).await
}

/// Sends `payload` of `kind` to every agent.
pub async fn broadcast(
    outbox: &dyn Outbox,
    now: Timestamp,
    source: &AgentName,
    kind: MessageType,
    payload: Value,
) -> Result<Envelope, AgentsError> {
    let e = Envelope::new(now, source, "*", kind, payload);
    send(outbox, &e).await?;
    Ok(e)
}

/// A handoff: `task_id` moves from `from` to `to` with a summary and references to artifacts.
pub fn handoff(
    now: Timestamp,
    from: &AgentName,
    to: &AgentName,
    task_id: &str,
    summary: &str,
    artifacts: &[String],
) -> Envelope {
    let mut e = Envelope::new(
        now,
        from,
        to.as_str(),
        MessageType::Handoff,
        json!({"task_id": task_id, "summary": summary, "artifacts": artifacts}),
    );
    e.task_id = Some(task_id.to_owned());
    e
}

/// The replies an agent receives (its `reply.<agent>` topic, consumer group of its own).
pub struct Replies {
    topic: Topic,
    sub: Box<dyn Subscription>,
    early: HashMap<String, Envelope>,
}

impl Replies {
    /// Opens `agent`'s reply topic. Open it before sending, so no reply is missed.
    pub async fn open(mesh: &dyn Mesh, agent: &AgentName) -> Result<Replies, AgentsError> {
        let topic = Topic::new(&format!("reply.{agent}"))?;
        let sub = mesh
            .subscribe(
                &topic,
                &format!("replies-{}", agent.as_str().replace('.', "_")),
                SubscribeOptions {
                    start: StartAt::Latest,
                    ack_wait: Duration::from_secs(30),
                },
            )
            .await?;
        Ok(Replies {
            topic,
            sub,
            early: HashMap::new(),
        })
    }

    /// The topic replies come to.
    pub fn topic(&self) -> &Topic {
        &self.topic
    }

    /// Waits until a reply to each of `ids` arrived or `timeout` passed; the map holds those that arrived.
    pub async fn wait_for(
        &mut self,
        ids: &[String],
        timeout: Duration,
    ) -> Result<HashMap<String, Envelope>, AgentsError> {
        let deadline = Instant::now() + timeout;
        let mut got = HashMap::new();
        for id in ids {
            if let Some(e) = self.early.remove(id) {
                got.insert(id.clone(), e);
            }
        }
        while got.len() < ids.len() {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            for d in self.sub.fetch(64, deadline - now).await? {
                d.ack().await?;
                let Ok(e) = Envelope::from_message(&d.message) else {
                    tracing::warn!(topic = %self.topic, offset = d.message.offset, "ignoring a reply that is not an envelope");
                    continue;
                };
                let Some(corr) = e.correlation_id.clone() else {
                    continue;
                };
                if ids.contains(&corr) {
                    got.insert(corr, e);
                } else {
                    self.early.insert(corr, e);
                }
            }
        }
        Ok(got)
    }
}

/// Peer consult: sends `query` (its `reply_to` set to our reply topic) and waits for the answer.
pub async fn consult(
    outbox: &dyn Outbox,
    replies: &mut Replies,
    mut query: Envelope,
    timeout: Duration,
) -> Result<Envelope, AgentsError> {
    query.reply_to = Some(replies.topic().to_string());
    send(outbox, &query).await?;
    let mut got = replies
        .wait_for(std::slice::from_ref(&query.id), timeout)
        .await?;
    got.remove(&query.id).ok_or_else(|| {
        AgentsError::Timeout(format!(
            "no answer from `{}` to `{}` within {} ms",
            query.target,
            query.id,
            timeout.as_millis()
        ))
    })
}

/// Parallel fan-out/fan-in: sends every envelope, then gathers the answers; a slot is `None` when its answer did
/// not come within `timeout` (partial results are the caller's to judge).
pub async fn fan_out_in(
    outbox: &dyn Outbox,
    replies: &mut Replies,
    mut envelopes: Vec<Envelope>,
    timeout: Duration,
) -> Result<Vec<Option<Envelope>>, AgentsError> {
    for e in &mut envelopes {
        e.reply_to = Some(replies.topic().to_string());
        send(outbox, e).await?;
    }
    let ids: Vec<String> = envelopes.iter().map(|e| e.id.clone()).collect();
    let mut got = replies.wait_for(&ids, timeout).await?;
    Ok(ids.iter().map(|id| got.remove(id)).collect())
}

/// Sequential pipeline: each step is consulted in turn, its payload's `input` set to the previous answer's
/// payload; returns every answer. Stops at the first step that does not answer in time.
pub async fn sequential(
    outbox: &dyn Outbox,
    replies: &mut Replies,
    steps: Vec<Envelope>,
    step_timeout: Duration,
) -> Result<Vec<Envelope>, AgentsError> {
    let mut answers: Vec<Envelope> = Vec::new();
    for mut step in steps {
        if let Some(prev) = answers.last()
            && let Value::Object(map) = &mut step.payload
        {
            map.insert("input".into(), prev.payload.clone());
        }
        answers.push(consult(outbox, replies, step, step_timeout).await?);
    }
    Ok(answers)
}
