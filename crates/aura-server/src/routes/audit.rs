//! The audit trail over HTTP: the latest signed checkpoint, the verifier key, entries (for replay) and Merkle proofs.

use axum::Json;
use axum::extract::{Path, Query, State};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use aura_audit::{LoggedEntry, ScanFilter};
use aura_core::Timestamp;

use crate::app::AppState;
use crate::error::{ApiError, ErrorBody};

const MAX_PAGE: usize = 1000;

/// The latest signed checkpoint (C2SP tlog-checkpoint signed note).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CheckpointView {
    /// The log's origin line.
    pub origin: String,
    /// Entries covered.
    pub tree_size: u64,
    /// Merkle root, hex.
    pub root: String,
    /// The complete signed note; verify it with the verifier key.
    pub note: String,
    /// The verifier key (`<origin>+<keyid>+<base64 key>`).
    pub verifier_key: String,
}

/// One audit entry.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct EntryView {
    /// Sequence number (leaf index).
    pub seq: u64,
    /// The entry, in the documented schema (docs/audit-format.md).
    #[schema(value_type = Object)]
    pub entry: serde_json::Value,
}

/// A page of entries.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct EntryPage {
    /// The entries, oldest first.
    pub items: Vec<EntryView>,
    /// Whether more entries matched than were returned; continue from `next_seq`.
    pub truncated: bool,
    /// Where the next page starts.
    pub next_seq: Option<u64>,
    /// Entries in the log.
    pub tree_size: u64,
}

/// Filters for listing entries.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct EntryQuery {
    /// Only this agent's entries.
    pub agent: Option<String>,
    /// Only this task's entries.
    pub task: Option<String>,
    /// Only entries at or after this time (milliseconds since the epoch).
    pub since_ms: Option<i64>,
    /// Only entries before this time (milliseconds since the epoch).
    pub until_ms: Option<i64>,
    /// Start at this sequence number.
    pub from_seq: Option<u64>,
    /// At most this many (default 100, max 1000).
    pub limit: Option<usize>,
}

/// An inclusion proof (RFC 9162 §2.1.3).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct InclusionView {
    /// The entry's index.
    pub leaf_index: u64,
    /// The tree size the proof is for.
    pub tree_size: u64,
    /// Audit path, hex, leaf to root.
    pub path: Vec<String>,
    /// Root of the tree of `tree_size`, hex.
    pub root: String,
}

/// Query of an inclusion proof.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct InclusionQuery {
    /// The entry's sequence number.
    pub seq: u64,
    /// Tree size (default: the latest checkpoint's).
    pub size: Option<u64>,
}

/// A consistency proof (RFC 9162 §2.1.4).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ConsistencyView {
    /// The older size.
    pub from: u64,
    /// The newer size.
    pub to: u64,
    /// Proof nodes, hex.
    pub path: Vec<String>,
    /// Root at `from`, hex.
    pub root_from: String,
    /// Root at `to`, hex.
    pub root_to: String,
}

/// Query of a consistency proof.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConsistencyQuery {
    /// The older tree size.
    pub from: u64,
    /// The newer tree size (default: the latest checkpoint's).
    pub to: Option<u64>,
}

/// The latest signed checkpoint and the verifier key.
#[utoipa::path(get, path = "/api/v1/audit/checkpoint", tag = "audit",
    responses((status = 200, body = CheckpointView), (status = 404, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(super) async fn checkpoint(
    State(state): State<AppState>,
) -> Result<Json<CheckpointView>, ApiError> {
    let cp = state
        .audit
        .checkpoint()
        .ok_or_else(|| ApiError::not_found("no checkpoint yet"))?;
    Ok(Json(CheckpointView {
        origin: cp.origin,
        tree_size: cp.tree_size,
        root: hex::encode(cp.root),
        note: cp.note,
        verifier_key: state.audit.public_key().to_owned(),
    }))
}

/// Entries, oldest first, filtered (what `aura audit replay` reads).
#[utoipa::path(get, path = "/api/v1/audit/entries", tag = "audit", params(EntryQuery),
    responses((status = 200, body = EntryPage), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(super) async fn entries(
    State(state): State<AppState>,
    Query(q): Query<EntryQuery>,
) -> Result<Json<EntryPage>, ApiError> {
    let limit = q.limit.unwrap_or(100).clamp(1, MAX_PAGE);
    let filter = ScanFilter {
        agent: q.agent,
        task: q.task,
        since: q.since_ms.map(Timestamp::from_millis),
        until: q.until_ms.map(Timestamp::from_millis),
        from_seq: q.from_seq.unwrap_or(0),
    };
    let (items, truncated) = state.audit.scan(filter, limit).await?;
    let next_seq = truncated.then(|| items.last().map(|e| e.seq + 1)).flatten();
    Ok(Json(EntryPage {
        items: items.into_iter().map(view).collect::<Result<_, _>>()?,
        truncated,
        next_seq,
        tree_size: state.audit.size(),
    }))
}

/// One entry.
#[utoipa::path(get, path = "/api/v1/audit/entries/{seq}", tag = "audit",
    params(("seq" = u64, Path, description = "Sequence number")),
    responses((status = 200, body = EntryView), (status = 404, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(super) async fn entry(
    State(state): State<AppState>,
    Path(seq): Path<u64>,
) -> Result<Json<EntryView>, ApiError> {
    let entry = state
        .audit
        .entry(seq)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no audit entry {seq}")))?;
    Ok(Json(view(entry)?))
}

/// Inclusion proof of one entry.
#[utoipa::path(get, path = "/api/v1/audit/proofs/inclusion", tag = "audit", params(InclusionQuery),
    responses((status = 200, body = InclusionView), (status = 422, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(super) async fn inclusion(
    State(state): State<AppState>,
    Query(q): Query<InclusionQuery>,
) -> Result<Json<InclusionView>, ApiError> {
    let size = q.size.unwrap_or_else(|| latest_size(&state));
    let (proof, root) = state.audit.inclusion(q.seq, size).await?;
    Ok(Json(InclusionView {
        leaf_index: proof.leaf_index,
        tree_size: proof.tree_size,
        path: proof.path.iter().map(hex::encode).collect(),
        root: hex::encode(root),
    }))
}

/// Consistency proof between two tree sizes.
#[utoipa::path(get, path = "/api/v1/audit/proofs/consistency", tag = "audit", params(ConsistencyQuery),
    responses((status = 200, body = ConsistencyView), (status = 422, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(super) async fn consistency(
    State(state): State<AppState>,
    Query(q): Query<ConsistencyQuery>,
) -> Result<Json<ConsistencyView>, ApiError> {
    let to = q.to.unwrap_or_else(|| latest_size(&state));
    let (proof, root_from, root_to) = state.audit.consistency(q.from, to).await?;
    Ok(Json(ConsistencyView {
        from: q.from,
        to,
        path: proof.path.iter().map(hex::encode).collect(),
        root_from: hex::encode(root_from),
        root_to: hex::encode(root_to),
    }))
}

fn latest_size(state: &AppState) -> u64 {
    state.audit.checkpoint().map_or(0, |c| c.tree_size)
}

fn view(logged: LoggedEntry) -> Result<EntryView, ApiError> {
    Ok(EntryView {
        seq: logged.seq,
        entry: serde_json::to_value(&logged.entry).map_err(ApiError::internal)?,
    })
}
