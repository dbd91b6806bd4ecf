//! `aura sensor --push URL`: delivers the sensor's updates to a running Aura
//! (`POST /api/v1/assets/{id}/sensor`), which decides, audits and writes them through its own
//! asset-file writer. Updates wait in a bounded, coalescing [`Spool`] while Aura is unreachable
//! (one pending value per section, min/max kept) and are retried with exponential backoff
//! (0.5 s doubling to 30 s). A refusal (401, 403, 404, 413, 422) is not retried: that update is
//! dropped and counted. At shutdown, what is pending gets one more delivery attempt within 5 s;
//! whatever still fails is dropped and reported.

use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;

use aura_context::aav::SectionUpdate;
use aura_context::forward::Spool;

/// Where updates go.
#[derive(Debug, Clone)]
pub(crate) struct PushTarget {
    /// The server's base URL, e.g. `http://127.0.0.1:7470`.
    pub base: String,
    /// The bearer token.
    pub token: String,
}

/// What a push loop did.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct PushReport {
    /// Updates Aura accepted.
    pub delivered: u64,
    /// Updates Aura refused (dropped, not retried).
    pub refused: u64,
    /// Failed attempts that were retried.
    pub retries: u64,
    /// Sections still pending at exit (dropped).
    pub dropped_at_exit: usize,
}

enum Failure {
    /// Worth retrying: unreachable, timeout, 408, 429, 5xx.
    Retry(String),
    /// Aura said no: retrying the same update cannot help.
    Refused(String),
}

const BACKOFF_MIN: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
const FINAL_FLUSH: Duration = Duration::from_secs(5);

/// Delivers what `spool` holds until `cancel`, then flushes within [`FINAL_FLUSH`].
pub(crate) async fn run(spool: Spool, target: PushTarget, cancel: CancellationToken) -> PushReport {
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("aura sensor: cannot build the HTTP client ({e}); nothing is pushed");
            return PushReport::default();
        }
    };
    let mut report = PushReport::default();
    let mut backoff = BACKOFF_MIN;
    let mut failing = false;
    loop {
        if spool.is_empty() {
            tokio::select! {
                () = cancel.cancelled() => break,
                () = spool.ready() => {}
            }
        }
        let Some(update) = spool.take() else {
            continue;
        };
        match send(&client, &target, &update).await {
            Ok(()) => {
                if failing {
                    eprintln!("aura sensor: {} reachable again", target.base);
                    failing = false;
                }
                report.delivered += 1;
                backoff = BACKOFF_MIN;
            }
            Err(Failure::Refused(why)) => {
                report.refused += 1;
                eprintln!("aura sensor: update refused, dropped: {why}");
            }
            Err(Failure::Retry(why)) => {
                report.retries += 1;
                if !failing {
                    eprintln!(
                        "aura sensor: cannot deliver to {} ({why}); spooling and retrying",
                        target.base
                    );
                    failing = true;
                }
                spool.requeue(update);
                tokio::select! {
                    () = cancel.cancelled() => break,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
    // Final flush: whatever is pending (the pipeline's emergency flush included) gets one try.
    let deadline = tokio::time::Instant::now() + FINAL_FLUSH;
    while let Some(update) = spool.take() {
        match tokio::time::timeout_at(deadline, send(&client, &target, &update)).await {
            Ok(Ok(())) => {
                report.delivered += 1;
            }
            Ok(Err(Failure::Refused(why))) => {
                report.refused += 1;
                eprintln!("aura sensor: update refused, dropped: {why}");
            }
            Ok(Err(Failure::Retry(_))) | Err(_) => {
                report.dropped_at_exit = update.sections.len() + spool.pending_sections();
                break;
            }
        }
    }
    if report.dropped_at_exit > 0 {
        eprintln!(
            "aura sensor: {} unreachable at exit; {} pending section update(s) dropped",
            target.base, report.dropped_at_exit
        );
    }
    report
}

/// The JSON body of `POST /api/v1/assets/{id}/sensor`.
pub(crate) fn body_of(update: &SectionUpdate) -> Value {
    let sections: Map<String, Value> = update
        .sections
        .iter()
        .map(|(name, table)| {
            (
                name.clone(),
                serde_json::to_value(table).unwrap_or(Value::Null),
            )
        })
        .collect();
    let status: Map<String, Value> = update
        .sensor_status
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    let mut body = json!({
        "kind": update.kind.as_str(),
        "name": update.name,
        "sections": sections,
        "sensor_status": status,
    });
    if let Some(h) = update.health {
        body["health"] = Value::String(h.as_str().to_owned());
    }
    if let Some(at) = update.at {
        body["at"] = Value::String(at.to_rfc3339());
    }
    body
}

async fn send(
    client: &reqwest::Client,
    target: &PushTarget,
    update: &SectionUpdate,
) -> Result<(), Failure> {
    let url = format!(
        "{}/api/v1/assets/{}/sensor",
        target.base.trim_end_matches('/'),
        update.asset_id
    );
    let resp = client
        .post(&url)
        .bearer_auth(&target.token)
        .json(&body_of(update))
        .send()
        .await
        .map_err(|e| Failure::Retry(e.to_string()))?;
    let status = resp.status();
    if status.is_success() {
        return Ok(());
    }
    let text = resp.text().await.unwrap_or_default();
    let why = format!("{status}: {}", text.chars().take(300).collect::<String>());
    if status.is_server_error() || status.as_u16() == 408 || status.as_u16() == 429 {
        Err(Failure::Retry(why))
    } else {
        Err(Failure::Refused(why))
    }
}
