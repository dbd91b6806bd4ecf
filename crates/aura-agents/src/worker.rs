//! The consuming loop of an agent or service: fetch from a consumer group, hand each message to a [`Handler`],
//! ack on success, retry with jittered backoff (honouring Retry-After) on a transient failure, dead-letter after
//! the last attempt or on a permanent failure. Graceful shutdown: on cancel, intake stops, the batch in hand is
//! finished within the drain bound, and anything left is released for redelivery.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aura_core::Clock;
use aura_mesh::{Mesh, Message, SubscribeOptions, Topic};
use tokio_util::sync::CancellationToken;

use crate::AgentsError;
use crate::dlq::DeadLetters;
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
    loop {
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
    Ok(report)
}
