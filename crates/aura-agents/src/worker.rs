//! The consuming loop of an agent or service: fetch from a consumer group, hand each message to a [`Handler`],
//! ack on success, retry with jittered backoff (honouring Retry-After) on a transient failure, dead-letter after
//! the last attempt or on a permanent failure. With a [`Heartbeat`], the loop heartbeats on `agents.heartbeat`
//! while it runs. Graceful shutdown, in order: on cancel, intake stops; the batch in hand is finished within the
//! drain bound and anything left is released for redelivery (every outcome is already durable: acks, nacks and
//! dead letters are written before the next message); then a final heartbeat says the agent stopped and what it
//! did.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aura_core::{AgentName, Clock};
use aura_mesh::{Mesh, Message, SubscribeOptions, Topic};
use tokio_util::sync::CancellationToken;

use crate::AgentsError;
use crate::dlq::DeadLetters;
use crate::envelope::{Envelope, HEARTBEAT_TOPIC, MessageType};
use crate::patterns::Outbox;
use crate::retry::RetryPolicy;

/// Counter: messages delivered to a handler, by topic.
pub const DELIVERED: &str = "aura_mesh_delivered_total";
/// Counter: redeliveries (attempt > 1), by topic.
pub const REDELIVERED: &str = "aura_mesh_redelivered_total";

/// What a handler says about a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Done: acknowledge.
    Done,
    /// Failed, may succeed later (after at least `retry_after` if given).
    Retry {
        /// Why.
        reason: String,
        /// The failing side's Retry-After.
        retry_after: Option<Duration>,
    },
    /// Failed for good: dead-letter now.
    Reject {
        /// Why.
        reason: String,
    },
}

/// Handles one message.
#[async_trait]
pub trait Handler: Send + Sync {
    /// Processes `message` (delivery `attempt`, 1-based).
    async fn handle(&self, message: &Message, attempt: u32) -> Outcome;
}

/// How the loop runs.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Topic to consume.
    pub topic: Topic,
    /// Consumer group.
    pub group: String,
    /// Subscription options.
    pub subscribe: SubscribeOptions,
    /// Retries.
    pub retry: RetryPolicy,
    /// Messages per fetch.
    pub batch: usize,
    /// Bound on finishing in-flight work at shutdown.
    pub drain_timeout: Duration,
    /// Seed of the jitter RNG.
    pub seed: u64,
    /// Heartbeats of the agent running this loop (none: the loop does not heartbeat).
    pub heartbeat: Option<Heartbeat>,
}

/// Who heartbeats, through which outbox, how often.
#[derive(Clone)]
pub struct Heartbeat {
    /// The agent.
    pub agent: AgentName,
    /// Where heartbeats are sent (the server's governed outbox, or a mesh).
    pub outbox: Arc<dyn Outbox>,
    /// Between two heartbeats while running.
    pub every: Duration,
}

impl std::fmt::Debug for Heartbeat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Heartbeat")
            .field("agent", &self.agent)
            .field("every", &self.every)
            .finish_non_exhaustive()
    }
}

/// What a loop did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkerReport {
    /// Acknowledged after success.
    pub done: u64,
    /// Sent back for a retry.
    pub retried: u64,
    /// Dead-lettered.
    pub dead_lettered: u64,
    /// Released unprocessed at shutdown.
    pub released: u64,
}

/// Runs the loop until `cancel`; returns what it did.
pub async fn run(
    mesh: Arc<dyn Mesh>,
    dlq: DeadLetters,
    clock: Arc<dyn Clock>,
    handler: Arc<dyn Handler>,
    config: WorkerConfig,
    cancel: CancellationToken,
) -> Result<WorkerReport, AgentsError> {
    let mut sub = mesh
        .subscribe(&config.topic, &config.group, config.subscribe)
        .await?;
    let mut rng = fastrand::Rng::with_seed(config.seed);
    let mut report = WorkerReport::default();
    let topic_label = config.topic.to_string();
    let mut last_beat: Option<tokio::time::Instant> = None;
    loop {
        if let Some(hb) = &config.heartbeat
            && last_beat.is_none_or(|t| t.elapsed() >= hb.every)
        {
            beat(hb, &*clock, "running", &report).await;
            last_beat = Some(tokio::time::Instant::now());
        }
        let batch = tokio::select! {
            () = cancel.cancelled() => break,
            b = sub.fetch(config.batch.max(1), Duration::from_secs(1)) => b?,
        };
        let drain_deadline = tokio::time::Instant::now() + config.drain_timeout;
        for d in batch {
            if cancel.is_cancelled() && tokio::time::Instant::now() >= drain_deadline {
                d.nack(Duration::ZERO).await?;
                report.released += 1;
                continue;
            }
            metrics::counter!(DELIVERED, "topic" => topic_label.clone()).increment(1);
            if d.attempt > 1 {
                metrics::counter!(REDELIVERED, "topic" => topic_label.clone()).increment(1);
            }
            let outcome = handler.handle(&d.message, d.attempt).await;
            match outcome {
                Outcome::Done => {
                    d.ack().await?;
                    report.done += 1;
                }
                Outcome::Retry {
                    reason,
                    retry_after,
                } if config.retry.should_retry(d.attempt) => {
                    let delay = config.retry.delay(d.attempt, retry_after, &mut rng);
                    tracing::info!(topic = %config.topic, offset = d.message.offset, attempt = d.attempt, delay_ms = delay.as_millis() as u64, reason, "retrying");
                    d.nack(delay).await?;
                    report.retried += 1;
                }
                Outcome::Retry { reason, .. } | Outcome::Reject { reason } => {
                    dlq.put(&d.message, d.attempt, &reason, clock.now()).await?;
                    d.ack().await?;
                    report.dead_lettered += 1;
                }
            }
        }
    }
    if let Some(hb) = &config.heartbeat {
        beat(hb, &*clock, "stopped", &report).await;
    }
    Ok(report)
}

/// Sends one heartbeat; a failure is logged (the watchdog notices missing heartbeats).
async fn beat(hb: &Heartbeat, clock: &dyn Clock, status: &str, report: &WorkerReport) {
    let env = Envelope::new(
        clock.now(),
        &hb.agent,
        "*",
        MessageType::Heartbeat,
        serde_json::json!({
            "status": status,
            "done": report.done,
            "retried": report.retried,
            "dead_lettered": report.dead_lettered,
            "released": report.released,
        }),
    );
    let sent = match aura_mesh::Topic::new(HEARTBEAT_TOPIC) {
        Ok(topic) => hb.outbox.send(&topic, &env).await.map(|_| ()),
        Err(e) => Err(e.into()),
    };
    if let Err(e) = sent {
        tracing::warn!(agent = %hb.agent, status, error = %e, "heartbeat not sent");
    }
}
