//! Usage records of the LLM gateway (one row per call) and the daily report over them; `impl_usage_store!`
//! writes the implementation for each backend's pool type (the SQL is the same on both).

use async_trait::async_trait;
use aura_core::Timestamp;

use crate::StoreError;

/// One LLM call as the gateway settled it. Money in integer micro-dollars.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRecord {
    /// Unique id.
    pub id: String,
    /// When the call ended.
    pub at: Timestamp,
    /// The UTC day of `at`, `YYYY-MM-DD`.
    pub day: String,
    /// The agent.
    pub agent: String,
    /// The model the agent asked for (after any downgrade).
    pub model: String,
    /// The provider that served it (`cache` for a cache hit).
    pub provider: String,
    /// The model upstream.
    pub upstream_model: String,
    /// Prompt tokens.
    pub input_tokens: i64,
    /// Completion tokens.
    pub output_tokens: i64,
    /// Prompt tokens read from the provider's cache.
    pub cached_tokens: i64,
    /// What it cost.
    pub cost_micros: i64,
    /// `ok`, `error`, `cut`, `halted`, `cancelled` or `cached`.
    pub status: String,
    /// Whether it was streamed.
    pub streamed: bool,
    /// Wall time of the call in milliseconds.
    pub latency_ms: i64,
}

/// Usage summed over one day, agent and model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageSummary {
    /// `YYYY-MM-DD`.
    pub day: String,
    /// The agent.
    pub agent: String,
    /// The model.
    pub model: String,
    /// Calls.
    pub calls: i64,
    /// Prompt tokens.
    pub input_tokens: i64,
    /// Completion tokens.
    pub output_tokens: i64,
    /// Cost in micro-dollars.
    pub cost_micros: i64,
}

/// Usage records. A supertrait of [`crate::Store`].
#[async_trait]
pub trait UsageStore: Send + Sync {
    /// Appends records in one transaction.
    async fn insert_usage(&self, records: &[UsageRecord]) -> Result<(), StoreError>;

    /// Sums per day, agent and model for days `>= since_day` (`YYYY-MM-DD`), ordered by day, agent, model.
    async fn usage_summary(&self, since_day: &str) -> Result<Vec<UsageSummary>, StoreError>;
}

pub(crate) const USAGE_INSERT_HEAD: &str = "INSERT INTO llm_usage (id, at, day, agent, model, provider, \
     upstream_model, input_tokens, output_tokens, cached_tokens, cost_micros, status, streamed, latency_ms) ";

/// Rows per `INSERT` statement: 14 bound values each, well under SQLite's 32,766 and PostgreSQL's 65,535.
pub(crate) const USAGE_ROWS_PER_STATEMENT: usize = 200;

pub(crate) const USAGE_SUMMARY: &str = "SELECT day, agent, model, COUNT(*) AS calls, \
     CAST(SUM(input_tokens) AS BIGINT) AS input_tokens, CAST(SUM(output_tokens) AS BIGINT) AS output_tokens, \
     CAST(SUM(cost_micros) AS BIGINT) AS cost_micros FROM llm_usage WHERE day >= $1 \
     GROUP BY day, agent, model ORDER BY day, agent, model";

/// Writes `impl UsageStore for $store` (needs `pool` and `target` fields and `begin_write`).
macro_rules! impl_usage_store {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::usage::UsageStore for $store {
            async fn insert_usage(
                &self,
                records: &[$crate::usage::UsageRecord],
            ) -> Result<(), $crate::StoreError> {
                if records.is_empty() {
                    return Ok(());
                }
                let mut tx = self.begin_write().await?;
                // One multi-row statement per chunk: each statement is a round trip to the driver (for SQLite,
                // to its worker thread), and the gateway writes a batch of rows every 50 ms under load.
                for chunk in records.chunks($crate::usage::USAGE_ROWS_PER_STATEMENT) {
                    let mut q = sqlx::QueryBuilder::new($crate::usage::USAGE_INSERT_HEAD);
                    q.push_values(chunk, |mut row, r| {
                        row.push_bind(r.id.as_str())
                            .push_bind(r.at.as_millis())
                            .push_bind(r.day.as_str())
                            .push_bind(r.agent.as_str())
                            .push_bind(r.model.as_str())
                            .push_bind(r.provider.as_str())
                            .push_bind(r.upstream_model.as_str())
                            .push_bind(r.input_tokens)
                            .push_bind(r.output_tokens)
                            .push_bind(r.cached_tokens)
                            .push_bind(r.cost_micros)
                            .push_bind(r.status.as_str())
                            .push_bind(i64::from(r.streamed))
                            .push_bind(r.latency_ms);
                    });
                    q.push(" ON CONFLICT (id) DO NOTHING");
                    q.build()
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| self.target.error(e))?;
                }
                tx.commit().await.map_err(|e| self.target.error(e))
            }

            async fn usage_summary(
                &self,
                since_day: &str,
            ) -> Result<Vec<$crate::usage::UsageSummary>, $crate::StoreError> {
                let rows: Vec<(String, String, String, i64, i64, i64, i64)> =
                    sqlx::query_as($crate::usage::USAGE_SUMMARY)
                        .bind(since_day)
                        .fetch_all(&self.pool)
                        .await
                        .map_err(|e| self.target.error(e))?;
                Ok(rows
                    .into_iter()
                    .map(
                        |(day, agent, model, calls, input_tokens, output_tokens, cost_micros)| {
                            $crate::usage::UsageSummary {
                                day,
                                agent,
                                model,
                                calls,
                                input_tokens,
                                output_tokens,
                                cost_micros,
                            }
                        },
                    )
                    .collect())
            }
        }
    };
}

pub(crate) use impl_usage_store;
