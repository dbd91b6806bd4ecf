//! Governance over HTTP: decide and settle actions, policies and reloads, approvals, halts, budgets.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use aura_core::{Action, AgentName, Estimate, RawAction, Role};
use aura_govern::approvals::{Approval, ApprovalFilter, ApprovalState};
use aura_govern::halts::{Halt, HaltTarget};
use aura_govern::kernel::{ActionOutcome, Actual, Obligation};

use crate::app::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::services::audit::actor_of;

/// An action to decide.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DecideRequest {
    /// The acting agent; agents may omit it (their token names them); admins must give it.
    #[serde(default)]
    pub agent: Option<String>,
    /// Task or session id.
    #[serde(default)]
    pub task: Option<String>,
    /// `llm_call`, `tool_call`, `http_request`, `shell`, `file_read`, `file_write`, `message` or `custom`.
    pub kind: String,
    /// Model, tool, URL, program, path or recipient.
    pub target: String,
    /// Arguments (a JSON object).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub args: Option<serde_json::Value>,
    /// Estimates: tokens, cost_micros, risk, effort.
    #[serde(default)]
    pub estimate: Option<EstimateWire>,
    /// Free-form labels.
    #[serde(default)]
    pub labels: Option<BTreeMap<String, String>>,
}

/// Estimates of an action; money in integer micro-dollars.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct EstimateWire {
    /// Tokens.
    pub tokens: Option<u64>,
    /// Cost in micro-dollars.
    pub cost_micros: Option<i64>,
    /// Risk points.
    pub risk: Option<u32>,
    /// Effort in steps.
    pub effort: Option<u32>,
}

/// One reason.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ReasonView {
    /// Rule id (or built-in: `default_deny`, `kernel_error`, `halted`, …).
    pub rule: String,
    /// Why.
    pub message: String,
}

/// The kernel's decision.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DecisionView {
    /// Settle with this id after the effect.
    pub decision_id: String,
    /// `allow`, `deny`, `halt` or `escalate`.
    pub verdict: String,
    /// Every reason, strongest first.
    pub reasons: Vec<ReasonView>,
    /// What the caller must do besides the verdict: `{"type": "redact"|"downgrade_model"|"reduce_context"|"require_approval"|"warn", …}`.
    #[schema(value_type = Vec<Object>)]
    pub obligations: Vec<serde_json::Value>,
    /// The budget reservation held for an allow.
    pub reservation_id: Option<String>,
    /// When to retry, in milliseconds (rate limits, breakers).
    pub retry_after_ms: Option<u64>,
    /// The approval to wait on, or that allowed this.
    pub approval_id: Option<String>,
    /// Who approved.
    pub approved_by: Option<String>,
    /// The policy bundle in force.
    pub policy_hash: String,
    /// Budget movement.
    #[schema(value_type = Vec<Object>)]
    pub budget: Vec<serde_json::Value>,
    /// Args with secrets redacted, when secrets were found: forward these, not the originals.
    #[schema(value_type = Object)]
    pub redacted_args: Option<serde_json::Value>,
    /// Agents halted or paused by this decision.
    pub halted: Vec<String>,
    /// Where the decision is in the audit log.
    pub audit_seq: u64,
}

/// How an allowed action went.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SettleRequest {
    /// From the decision.
    pub decision_id: String,
    /// `success`, `failure` or `cancelled` (did not run; the reservation is released).
    pub outcome: String,
    /// Real usage.
    #[serde(default)]
    pub actual: Option<ActualWire>,
}

/// Real usage of a settled action.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ActualWire {
    /// Cost in micro-dollars.
    pub cost_micros: Option<i64>,
    /// Tokens.
    pub tokens: Option<u64>,
    /// Effort in steps.
    pub effort: Option<i64>,
    /// Risk points.
    pub risk: Option<i64>,
}

/// A settled action.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SettledView {
    /// The decision.
    pub decision_id: String,
    /// The reservation settled or released.
    pub reservation_id: Option<String>,
    /// Micro-dollars spent.
    pub spent_micros: i64,
    /// Budget keys touched.
    pub keys: Vec<String>,
}

/// The policy in force.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PolicyView {
    /// Directory policies are read from.
    pub dir: String,
    /// Bundle hash (SHA-256 over file names and contents).
    pub hash: String,
    /// Policy files.
    pub files: Vec<String>,
    /// Number of rules.
    pub rules: usize,
    /// Declared agents.
    pub agents: Vec<String>,
}

/// Body of a reload.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReloadRequest {
    /// Accept a set that widens what agents may do.
    #[serde(default)]
    pub force: bool,
}

/// A reload that was applied.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ReloadView {
    /// Hash before.
    pub old_hash: String,
    /// Hash now.
    pub new_hash: String,
    /// Widenings accepted (forced).
    pub widenings: Vec<String>,
}

/// An approval.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ApprovalView {
    /// Id.
    pub id: String,
    /// The agent.
    pub agent: String,
    /// Action kind.
    pub kind: String,
    /// Action target.
    pub target: String,
    /// Hash of kind, target and canonical args.
    pub action_hash: String,
    /// `pending`, `approved`, `denied` or `expired`.
    pub state: String,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub expires_at: String,
    /// Who decided.
    pub decided_by: Option<String>,
}

/// Approval listing filters.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct ApprovalQuery {
    /// Only this agent's.
    pub agent: Option<String>,
    /// Only in this state.
    pub state: Option<String>,
}

/// Approve or deny.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ApprovalDecisionRequest {
    /// Why.
    #[serde(default)]
    pub reason: Option<String>,
}

/// A halt or pause.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct HaltView {
    /// The agent, or `*` for all.
    pub agent: String,
    /// `halted` or `paused`.
    pub state: String,
    /// Why.
    pub reason: String,
    /// Who.
    pub by: String,
    /// RFC 3339.
    pub at: String,
    /// `manual`, `cascade from X`, `loop`, `budget`.
    pub cause: String,
}

/// Halt or pause agents.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct HaltRequest {
    /// The agent; omit with `all: true` for every agent.
    #[serde(default)]
    pub agent: Option<String>,
    /// Every agent (kill switch).
    #[serde(default)]
    pub all: bool,
    /// Why (recorded).
    pub reason: String,
    /// Pause (deny new actions, keep in-flight ones) instead of halt.
    #[serde(default)]
    pub pause: bool,
}

/// Budget usage of one key.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct BudgetView {
    /// The key.
    pub key: String,
    /// Settled micro-dollars.
    pub spent_micros: i64,
    /// Reserved micro-dollars.
    pub reserved_micros: i64,
    /// The limit.
    pub limit_micros: Option<i64>,
    /// Remaining micro-dollars.
    pub remaining_micros: Option<i64>,
    /// An operator override is in force.
    pub overridden: bool,
}

/// Budget query.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct BudgetQuery {
    /// The agent.
    pub agent: String,
}

fn bad_body(e: JsonRejection) -> ApiError {
    ApiError::from_json(e)
}

/// Decides an action before it happens. The answer is always 200 with a verdict; act only on `allow`.
#[utoipa::path(post, path = "/api/v1/decide", tag = "governance", request_body = DecideRequest,
    responses((status = 200, body = DecisionView), (status = 400, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(super) async fn decide(
    State(state): State<AppState>,
    Caller(caller): Caller,
    body: Result<Json<DecideRequest>, JsonRejection>,
) -> Result<Json<DecisionView>, ApiError> {
    let Json(req) = body.map_err(bad_body)?;
    let agent = acting_agent(&caller, req.agent.as_deref())?;
    let estimate = req.estimate.unwrap_or_default();
    let action = Action::extract(RawAction {
        agent,
        task: req.task,
        kind: req.kind,
        target: req.target,
        args: req.args.unwrap_or(serde_json::Value::Null),
        estimate: Estimate {
            tokens: estimate.tokens,
            cost_micros: estimate.cost_micros,
            risk: estimate.risk,
            effort: estimate.effort,
        },
        labels: req.labels.unwrap_or_default(),
    })
    .map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_action",
            e.to_string(),
        )
    })?;
    let decided = state.governance.decide(&action, actor_of(&caller)).await;
    let d = decided.decision;
    Ok(Json(DecisionView {
        decision_id: d.id,
        verdict: d.verdict.as_str().into(),
        reasons: d
            .reasons
            .into_iter()
            .map(|r| ReasonView {
                rule: r.rule,
                message: r.message,
            })
            .collect(),
        obligations: d.obligations.iter().map(obligation).collect(),
        reservation_id: d.reservation.map(|r| r.to_string()),
        retry_after_ms: d
            .retry_after
            .map(|r| u64::try_from(r.as_millis()).unwrap_or(u64::MAX)),
        approval_id: d.approval_id,
        approved_by: d.approved_by,
        policy_hash: d.policy_hash,
        budget: d
            .budget
            .iter()
            .map(|b| {
                serde_json::json!({"key": b.key, "before_micros": b.before_micros,
                    "after_micros": b.after_micros, "limit_micros": b.limit_micros})
            })
            .collect(),
        redacted_args: d.redacted_args,
        halted: d.halted,
        audit_seq: decided.audit_seq,
    }))
}

fn obligation(o: &Obligation) -> serde_json::Value {
    match o {
        Obligation::Redact { findings } => {
            serde_json::json!({"type": "redact", "findings": findings})
        }
        Obligation::DowngradeModel { to } => {
            serde_json::json!({"type": "downgrade_model", "to": to})
        }
        Obligation::ReduceContext { max_tokens } => {
            serde_json::json!({"type": "reduce_context", "max_tokens": max_tokens})
        }
        Obligation::RequireApproval { approval_id } => {
            serde_json::json!({"type": "require_approval", "approval_id": approval_id})
        }
        Obligation::Warn { budget, percent } => {
            serde_json::json!({"type": "warn", "budget": budget, "percent": percent})
        }
    }
}

/// Agents act as themselves; admins name the agent they act for.
fn acting_agent(
    caller: &aura_core::Principal,
    requested: Option<&str>,
) -> Result<AgentName, ApiError> {
    let invalid = |e: aura_core::NameError| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_action",
            e.to_string(),
        )
    };
    match (&caller.agent, requested) {
        (Some(own), None) => Ok(own.clone()),
        (Some(own), Some(req)) if own.as_str() == req => Ok(own.clone()),
        (Some(own), Some(req)) if caller.role != Role::Admin => Err(ApiError::forbidden(format!(
            "token of agent `{own}` cannot act as `{req}`"
        ))),
        (_, Some(req)) => AgentName::new(req).map_err(invalid),
        (None, None) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_action",
            "name the acting `agent` (this token acts for no agent)",
        )),
    }
}

/// Reports how an allowed action went; settles its reservation with the real usage.
#[utoipa::path(post, path = "/api/v1/settle", tag = "governance", request_body = SettleRequest,
    responses((status = 200, body = SettledView), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(super) async fn settle(
    State(state): State<AppState>,
    Caller(caller): Caller,
    body: Result<Json<SettleRequest>, JsonRejection>,
) -> Result<Json<SettledView>, ApiError> {
    let Json(req) = body.map_err(bad_body)?;
    let outcome = match req.outcome.as_str() {
        "success" => ActionOutcome::Success,
        "failure" => ActionOutcome::Failure,
        "cancelled" => ActionOutcome::Cancelled,
        other => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid",
                format!("unknown outcome `{other}`, expected success, failure or cancelled"),
            ));
        }
    };
    let a = req.actual.unwrap_or_default();
    if a.cost_micros.is_some_and(|c| c < 0) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            "`cost_micros` must not be negative",
        ));
    }
    let owner = if caller.role == Role::Admin {
        None
    } else {
        caller.agent.clone()
    };
    let settled = state
        .governance
        .settle(
            &req.decision_id,
            owner.as_ref(),
            outcome,
            Actual {
                cost_micros: a.cost_micros,
                tokens: a.tokens,
                effort: a.effort,
                risk: a.risk,
            },
            actor_of(&caller),
        )
        .await?;
    Ok(Json(SettledView {
        decision_id: settled.decision_id,
        reservation_id: settled.reservation,
        spent_micros: settled.spent_micros,
        keys: settled.keys,
    }))
}

/// The policy set in force.
#[utoipa::path(get, path = "/api/v1/policies", tag = "governance",
    responses((status = 200, body = PolicyView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(super) async fn policies(State(state): State<AppState>) -> Json<PolicyView> {
    let set = state.governance.kernel().policy();
    Json(PolicyView {
        dir: state.governance.policies_dir().display().to_string(),
        hash: set.bundle_hash().to_owned(),
        files: set.files().to_vec(),
        rules: set.rules().len(),
        agents: set.agents().iter().map(|a| a.name.clone()).collect(),
    })
}

/// Re-reads the policy directory and swaps it in atomically; 409 `conflict` when it widens permissions (unless
/// forced), 422 when a file is invalid. A refused reload changes nothing.
#[utoipa::path(post, path = "/api/v1/policies/reload", tag = "governance", request_body = ReloadRequest,
    responses((status = 200, body = ReloadView), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(super) async fn reload(
    State(state): State<AppState>,
    Caller(caller): Caller,
    body: Option<Json<ReloadRequest>>,
) -> Result<Json<ReloadView>, ApiError> {
    let force = body.map(|Json(b)| b.force).unwrap_or(false);
    let report = state.governance.reload(force, actor_of(&caller)).await?;
    Ok(Json(ReloadView {
        old_hash: report.old_hash,
        new_hash: report.new_hash,
        widenings: report.widenings.iter().map(ToString::to_string).collect(),
    }))
}

fn approval_view(a: &Approval) -> ApprovalView {
    ApprovalView {
        id: a.id.to_string(),
        agent: a.agent.to_string(),
        kind: a.kind.clone(),
        target: a.target.clone(),
        action_hash: a.action_hash.clone(),
        state: a.state.as_str().into(),
        created_at: a.created_at.to_rfc3339(),
        expires_at: a.expires_at.to_rfc3339(),
        decided_by: a.decided_by.clone(),
    }
}

/// Approvals, newest first.
#[utoipa::path(get, path = "/api/v1/approvals", tag = "governance", params(ApprovalQuery),
    responses((status = 200, body = Vec<ApprovalView>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(super) async fn approvals(
    State(state): State<AppState>,
    Query(q): Query<ApprovalQuery>,
) -> Result<Json<Vec<ApprovalView>>, ApiError> {
    let agent =
        q.agent.map(AgentName::new).transpose().map_err(|e| {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", e.to_string())
        })?;
    let state_filter = match q.state.as_deref() {
        None => None,
        Some("pending") => Some(ApprovalState::Pending),
        Some("approved") => Some(ApprovalState::Approved),
        Some("denied") => Some(ApprovalState::Denied),
        Some("expired") => Some(ApprovalState::Expired),
        Some(other) => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid",
                format!("unknown state `{other}`, expected pending, approved, denied or expired"),
            ));
        }
    };
    let list = state
        .governance
        .approvals(ApprovalFilter {
            agent,
            state: state_filter,
        })
        .await?;
    Ok(Json(list.iter().map(approval_view).collect()))
}

/// Approves a pending approval; the identical action may then run once.
#[utoipa::path(post, path = "/api/v1/approvals/{id}/approve", tag = "governance",
    params(("id" = String, Path, description = "Approval id")), request_body = ApprovalDecisionRequest,
    responses((status = 200, body = ApprovalView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(super) async fn approve(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    body: Option<Json<ApprovalDecisionRequest>>,
) -> Result<Json<ApprovalView>, ApiError> {
    let reason = body.and_then(|Json(b)| b.reason);
    let a = state
        .governance
        .decide_approval(&id, true, reason.as_deref(), actor_of(&caller))
        .await?;
    Ok(Json(approval_view(&a)))
}

/// Denies a pending approval.
#[utoipa::path(post, path = "/api/v1/approvals/{id}/deny", tag = "governance",
    params(("id" = String, Path, description = "Approval id")), request_body = ApprovalDecisionRequest,
    responses((status = 200, body = ApprovalView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(super) async fn deny(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    body: Option<Json<ApprovalDecisionRequest>>,
) -> Result<Json<ApprovalView>, ApiError> {
    let reason = body.and_then(|Json(b)| b.reason);
    let a = state
        .governance
        .decide_approval(&id, false, reason.as_deref(), actor_of(&caller))
        .await?;
    Ok(Json(approval_view(&a)))
}

fn halt_view(h: &Halt) -> HaltView {
    HaltView {
        agent: h.target.to_string(),
        state: format!("{:?}", h.state).to_lowercase(),
        reason: h.reason.clone(),
        by: h.by.clone(),
        at: h.at.to_rfc3339(),
        cause: match &h.cause {
            aura_govern::halts::HaltCause::Manual => "manual".into(),
            aura_govern::halts::HaltCause::Cascade { from } => format!("cascade from {from}"),
            aura_govern::halts::HaltCause::Loop => "loop".into(),
            aura_govern::halts::HaltCause::Budget => "budget".into(),
        },
    }
}

/// Current halts and pauses.
#[utoipa::path(get, path = "/api/v1/halts", tag = "governance",
    responses((status = 200, body = Vec<HaltView>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(super) async fn halts(State(state): State<AppState>) -> Json<Vec<HaltView>> {
    Json(state.governance.halts().iter().map(halt_view).collect())
}

/// Halts (or pauses) an agent or every agent; dependents follow per policy.
#[utoipa::path(post, path = "/api/v1/halts", tag = "governance", request_body = HaltRequest,
    responses((status = 200, body = Vec<HaltView>), (status = 422, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(super) async fn halt(
    State(state): State<AppState>,
    Caller(caller): Caller,
    body: Result<Json<HaltRequest>, JsonRejection>,
) -> Result<Json<Vec<HaltView>>, ApiError> {
    let Json(req) = body.map_err(bad_body)?;
    let target = halt_target(req.agent.as_deref(), req.all)?;
    if req.reason.trim().is_empty() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            "give a `reason`",
        ));
    }
    let applied = state
        .governance
        .halt(target, &req.reason, req.pause, actor_of(&caller))
        .await?;
    Ok(Json(applied.iter().map(halt_view).collect()))
}

/// Resumes an agent (`*` for the kill switch), and the agents its halt cascaded to.
#[utoipa::path(delete, path = "/api/v1/halts/{agent}", tag = "governance",
    params(("agent" = String, Path, description = "Agent name, or * for all")),
    responses((status = 200, body = Vec<String>), (status = 422, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(super) async fn resume(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(agent): Path<String>,
) -> Result<Json<Vec<String>>, ApiError> {
    let target = if agent == "*" {
        HaltTarget::All
    } else {
        halt_target(Some(&agent), false)?
    };
    Ok(Json(
        state.governance.resume(target, actor_of(&caller)).await?,
    ))
}

fn halt_target(agent: Option<&str>, all: bool) -> Result<HaltTarget, ApiError> {
    match (agent, all) {
        (None, true) => Ok(HaltTarget::All),
        (Some(a), false) => AgentName::new(a)
            .map(HaltTarget::Agent)
            .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", e.to_string())),
        _ => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            "give either `agent` or `all: true`",
        )),
    }
}

/// Budget usage of the keys an agent draws on now.
#[utoipa::path(get, path = "/api/v1/budgets", tag = "governance", params(BudgetQuery),
    responses((status = 200, body = Vec<BudgetView>), (status = 422, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(super) async fn budgets(
    State(state): State<AppState>,
    Query(q): Query<BudgetQuery>,
) -> Result<Json<Vec<BudgetView>>, ApiError> {
    let agent = AgentName::new(q.agent)
        .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", e.to_string()))?;
    let usage = state.governance.budgets(&agent).await?;
    Ok(Json(
        usage
            .into_iter()
            .map(|(key, u)| {
                let limit = u.limits.cost_micros;
                BudgetView {
                    key,
                    spent_micros: u.spent.cost_micros,
                    reserved_micros: u.reserved.cost_micros,
                    limit_micros: limit,
                    remaining_micros: limit
                        .map(|l| l - u.spent.cost_micros - u.reserved.cost_micros),
                    overridden: u.overridden,
                }
            })
            .collect(),
    ))
}

/// An operator override on a budget.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct OverrideRequest {
    /// The policy budget id.
    pub budget: String,
    /// For per-agent budgets: the agent.
    #[serde(default)]
    pub agent: Option<String>,
    /// For pool budgets: the pool.
    #[serde(default)]
    pub pool: Option<String>,
    /// Why (recorded).
    pub reason: String,
}

/// The key an override applies to.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct OverrideView {
    /// The budget key (budget, scope and period window) now overridden until the period ends.
    pub key: String,
}

/// Lifts a budget's hard stop / override requirement for the rest of its current period (audited).
#[utoipa::path(post, path = "/api/v1/budgets/override", tag = "governance", request_body = OverrideRequest,
    responses((status = 200, body = OverrideView), (status = 422, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(super) async fn grant_override(
    State(state): State<AppState>,
    Caller(caller): Caller,
    body: Result<Json<OverrideRequest>, JsonRejection>,
) -> Result<Json<OverrideView>, ApiError> {
    let Json(req) = body.map_err(bad_body)?;
    if req.reason.trim().is_empty() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            "give a `reason`",
        ));
    }
    let agent =
        req.agent.map(AgentName::new).transpose().map_err(|e| {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", e.to_string())
        })?;
    let key = state
        .governance
        .grant_override(
            &req.budget,
            agent.as_ref(),
            req.pool.as_deref(),
            &req.reason,
            actor_of(&caller),
        )
        .await?;
    Ok(Json(OverrideView { key }))
}
