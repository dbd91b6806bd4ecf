//! Context plane over HTTP: sensors pushing their updates (`aura sensor --push`). Each push is a
//! `file_write` of the asset's file decided by the kernel and audited before it is written through
//! the same atomic writer the local sensor uses, so the catalog sees it through its file watch.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use aura_context::aav::{AssetKind, Health, SectionUpdate, valid_asset_id};
use aura_core::{AgentName, Timestamp};

use crate::app::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::services::audit::actor_of;
use crate::services::context::{self as ctx, PushError, PushedUpdate};

/// Largest accepted body of a sensor push.
pub(crate) const PUSH_BODY_LIMIT: usize = 256 * 1024;

/// Sections a sensor may push: the built-in sensors' sections.
const PUSHABLE: &[&str] = aura_context::sensors::BUILTIN;

/// One sensor update: sections replaced whole, statuses, health.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SensorPush {
    /// The acting agent; a token that acts for an agent may omit it, an admin token must give it.
    #[serde(default)]
    pub agent: Option<String>,
    /// Asset kind (`host`, `container`, `pod`, `service`, …) [default: host].
    #[serde(default)]
    pub kind: Option<String>,
    /// Display name [default: the asset id].
    #[serde(default)]
    pub name: Option<String>,
    /// `healthy`, `degraded`, `unhealthy` or `unknown`.
    #[serde(default)]
    pub health: Option<String>,
    /// When the sensor took the values (RFC 3339) [default: now]; at most 60 s in the future.
    #[serde(default)]
    pub at: Option<String>,
    /// Section name (`compute`, `memory`, `storage`, `network`, `services`) → its table.
    #[schema(value_type = Object)]
    pub sections: BTreeMap<String, serde_json::Value>,
    /// Sensor name → status line (recorded in `[meta.sensors]`).
    #[serde(default)]
    pub sensor_status: BTreeMap<String, String>,
}

/// A written push.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SensorPushed {
    /// The asset.
    pub asset_id: String,
    /// Sections written.
    pub sections: Vec<String>,
    /// The file's checksum after the write.
    pub checksum: String,
    /// The kernel's decision.
    pub decision_id: String,
    /// Where the decision is in the audit log.
    pub audit_seq: u64,
}

/// Writes a sensor's update into the asset's `.aav` file, decided (`file_write` of the file) and
/// audited first.
#[utoipa::path(post, path = "/api/v1/assets/{id}/sensor", tag = "catalog", request_body = SensorPush,
    params(("id" = String, Path, description = "Asset id")),
    responses((status = 200, body = SensorPushed),
        (status = 400, body = ErrorBody, description = "`invalid_asset_id` or `invalid_body`"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody, description = "`forbidden`, or `write_refused` by governance"),
        (status = 413, body = ErrorBody, description = "`too_large`"),
        (status = 422, body = ErrorBody, description = "`unknown_section`, `invalid_section`, `invalid_kind`, `invalid_health`, `invalid_time`, `invalid_action`"),
        (status = 500, body = ErrorBody)))]
pub(super) async fn push(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    body: Result<Json<SensorPush>, JsonRejection>,
) -> Result<Json<SensorPushed>, ApiError> {
    if !valid_asset_id(&id) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_asset_id",
            format!(
                "invalid asset id `{id}`: use 1 to 200 letters, digits, `.`, `_` or `-`, not starting with `.`"
            ),
        ));
    }
    let Json(req) = body.map_err(ApiError::from_json)?;
    let bytes = serde_json::to_vec(&req.sections).map_or(0, |v| v.len());
    let unprocessable = |code: &'static str, msg: String| {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, msg)
    };
    let agent = match (&caller.agent, req.agent.as_deref()) {
        (Some(own), None) => own.clone(),
        (Some(own), Some(asked)) if own.as_str() == asked => own.clone(),
        (Some(own), Some(asked)) if caller.role != aura_core::Role::Admin => {
            return Err(ApiError::forbidden(format!(
                "token of agent `{own}` cannot act as `{asked}`"
            )));
        }
        (_, Some(asked)) => {
            AgentName::new(asked).map_err(|e| unprocessable("invalid_action", e.to_string()))?
        }
        (None, None) => {
            return Err(unprocessable(
                "invalid_action",
                "name the acting `agent` (this token acts for no agent)".into(),
            ));
        }
    };
    let kind = match req.kind.as_deref() {
        None => AssetKind::Host,
        Some(k) => AssetKind::parse(k)
            .ok_or_else(|| unprocessable("invalid_kind", format!("unknown asset kind `{k}`")))?,
    };
    let name = req.name.clone().unwrap_or_else(|| id.clone());
    let mut update = SectionUpdate::new(&id, kind, &name);
    if let Some(h) = req.health.as_deref() {
        update.health = Some(Health::parse(h).ok_or_else(|| {
            unprocessable(
                "invalid_health",
                format!("unknown health `{h}`: expected healthy, degraded, unhealthy or unknown"),
            )
        })?);
    }
    let now = state.tokens.now();
    update.at = Some(match req.at.as_deref() {
        None => now,
        Some(t) => {
            let at = Timestamp::parse_rfc3339(t).ok_or_else(|| {
                unprocessable(
                    "invalid_time",
                    format!("`at`: `{t}` is not an RFC 3339 time"),
                )
            })?;
            if at.as_millis() > now.as_millis() + 60_000 {
                return Err(unprocessable(
                    "invalid_time",
                    format!("`at`: `{t}` is in the future"),
                ));
            }
            at
        }
    });
    if req.sections.is_empty() && req.sensor_status.is_empty() {
        return Err(unprocessable(
            "invalid_section",
            "nothing to write: give `sections` or `sensor_status`".into(),
        ));
    }
    for (section, value) in req.sections {
        if !PUSHABLE.contains(&section.as_str()) {
            return Err(unprocessable(
                "unknown_section",
                format!(
                    "unknown section `{section}`: a sensor writes one of {}",
                    PUSHABLE.join(", ")
                ),
            ));
        }
        let table = match toml::Value::try_from(&value) {
            Ok(toml::Value::Table(t)) => t,
            Ok(_) => {
                return Err(unprocessable(
                    "invalid_section",
                    format!("section `{section}` must be an object"),
                ));
            }
            Err(e) => {
                return Err(unprocessable(
                    "invalid_section",
                    format!("section `{section}` cannot be stored in TOML: {e}"),
                ));
            }
        };
        update.sections.push((section, table));
    }
    for (sensor, status) in req.sensor_status {
        if !PUSHABLE.contains(&sensor.as_str()) && sensor != "watchdog" {
            return Err(unprocessable(
                "unknown_section",
                format!("unknown sensor `{sensor}` in `sensor_status`"),
            ));
        }
        update.sensor_status.push((sensor, status));
    }
    let names: Vec<String> = update.sections.iter().map(|(n, _)| n.clone()).collect();
    let applied = ctx::apply_pushed(
        &state.governance,
        &state.config,
        actor_of(&caller),
        PushedUpdate {
            agent,
            update,
            bytes,
        },
    )
    .await
    .map_err(|e| match e {
        PushError::Refused { .. } => {
            ApiError::new(StatusCode::FORBIDDEN, "write_refused", e.to_string())
        }
        PushError::Invalid(msg) => unprocessable("invalid_action", msg),
        PushError::Write(msg) => ApiError::internal(msg),
    })?;
    Ok(Json(SensorPushed {
        asset_id: id,
        sections: names,
        checksum: applied.checksum,
        decision_id: applied.decision_id,
        audit_seq: applied.audit_seq,
    }))
}
