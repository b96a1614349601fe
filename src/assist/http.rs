//! `/api/assistant`: the assistant for administrators of a tenant.
//!
//! - `GET /api/assistant`: whether it is on, with which provider and model.
//! - `POST /api/assistant/devices/{machineId}/summary`: the device's recent log, summarised.
//! - `POST /api/assistant/incidents/{id}/explain`: an incident and its evidence, explained.
//! - `POST /api/assistant/scripts/draft` `{goal, machineId?}`: a drafted script, stored as a
//!   pending approval request (201).
//! - `GET /api/assistant/approvals?status=`: the requests, newest first.
//! - `POST /api/assistant/approvals/{id}/accept`: stores the draft in the script library (it
//!   does not run it). `…/decline` `{reason?}`: closes the request. Both are audited with the
//!   request before and after.
//!
//! When the assistant is off, everything but the listing answers 409 `assistant_disabled`; a
//! provider that fails answers 502 `upstream_unavailable`, or 504 `upstream_timeout`.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use openframe_storage::analytics::LogFilter;
use serde::Deserialize;
use serde_json::json;

use super::{Decision, MAX_GOAL_CHARS, ROLE};
use crate::api::{json_body, optional_json_body, status_filter};
use crate::audit::AuditChange;
use crate::error::ApiError;
use crate::gateway::auth::Admin;
use crate::management::rmm::ScriptInput;
use crate::startup::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/assistant", get(status))
        .route(
            "/api/assistant/devices/{machine_id}/summary",
            post(summarise_device),
        )
        .route(
            "/api/assistant/incidents/{id}/explain",
            post(explain_incident),
        )
        .route("/api/assistant/scripts/draft", post(draft_script))
        .route("/api/assistant/approvals", get(approvals))
        .route("/api/assistant/approvals/{id}/accept", post(accept))
        .route("/api/assistant/approvals/{id}/decline", post(decline))
}

async fn status(State(state): State<AppState>, _admin: Admin) -> Json<serde_json::Value> {
    Json(state.assistant.status())
}

/// What the assistant may know of a device: inventory without addresses of its own.
async fn device_context(
    state: &AppState,
    admin: &Admin,
    machine_id: &str,
) -> Result<String, ApiError> {
    let machine = state
        .inventory
        .machine(&admin.tenant, machine_id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("machineId: no device {machine_id:?}")))?;
    Ok(format!(
        "hostname: {}\nstatus: {}\ntype: {}\noperating system: {} {}\nagent version: {}",
        machine.hostname,
        machine.status,
        machine.device_type,
        machine.os_type,
        machine.os_version.as_deref().unwrap_or(""),
        machine.agent_version.as_deref().unwrap_or("unknown"),
    ))
}

async fn summarise_device(
    State(state): State<AppState>,
    admin: Admin,
    Path(machine_id): Path<String>,
) -> Result<Response, ApiError> {
    state.assistant.require_enabled()?;
    let device = device_context(&state, &admin, &machine_id).await?;
    let filter = LogFilter {
        device_id: Some(machine_id.clone()),
        ..LogFilter::default()
    };
    let rows = state
        .storage
        .analytics
        .query_logs(
            &admin.tenant,
            &filter,
            None,
            state.assistant.max_log_entries(),
        )
        .await
        .map_err(|error| ApiError::StoreUnavailable(error.to_string()))?;
    let mut material = format!("Device:\n{device}\n\nRecent log, newest first:\n");
    if rows.is_empty() {
        material.push_str("(no entries)\n");
    }
    for row in &rows {
        material.push_str(&format!(
            "- {} {} {} {}: {}\n",
            crate::api::iso(row.event_timestamp),
            row.severity,
            row.tool_type,
            row.event_type,
            row.summary
        ));
    }
    let answer = state
        .assistant
        .answer(
            &format!(
                "{ROLE} Summarise what happened on this device: what matters first, then \
                 patterns, then anything a technician should check. At most 10 lines."
            ),
            &material,
        )
        .await?;
    Ok(Json(answer).into_response())
}

async fn explain_incident(
    State(state): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    state.assistant.require_enabled()?;
    let incident = state.incidents.get(&admin.tenant, &id).await?;
    let mut material = format!(
        "Incident: {}\nstatus: {}\nseverity: {}\ndevices: {}\ncustomers: {}\n\nAlerts:\n",
        incident.title,
        incident.status,
        incident.severity,
        incident.device_ids.join(", "),
        incident.organization_ids.join(", "),
    );
    for alert in &incident.alerts {
        material.push_str(&format!(
            "- {} ({}): {} evidence: {}\n",
            alert.rule, alert.severity, alert.summary, alert.evidence
        ));
    }
    material.push_str("\nTimeline:\n");
    for entry in &incident.timeline {
        material.push_str(&format!(
            "- {} {} {}\n",
            crate::api::iso(entry.at),
            entry.kind,
            entry.summary
        ));
    }
    let answer = state
        .assistant
        .answer(
            &format!(
                "{ROLE} Explain this incident to the technician: what the evidence shows, the \
                 likely causes in order, and the next checks to make."
            ),
            &material,
        )
        .await?;
    Ok(Json(answer).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct DraftBody {
    goal: String,
    #[serde(default)]
    machine_id: Option<String>,
}

async fn draft_script(
    State(state): State<AppState>,
    admin: Admin,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    state.assistant.require_enabled()?;
    let body: DraftBody = json_body(&headers, &body)?;
    let goal = body.goal.trim();
    if goal.is_empty() || goal.chars().count() > MAX_GOAL_CHARS {
        return Err(ApiError::InvalidInput(format!(
            "goal: say what the script should do, in 1 to {MAX_GOAL_CHARS} characters"
        )));
    }
    let machine_id = body.machine_id.filter(|id| !id.trim().is_empty());
    let context = match &machine_id {
        Some(id) => device_context(&state, &admin, id).await?,
        None => "(none named; write for the operating system the goal implies)".to_owned(),
    };
    let approval = state
        .assistant
        .draft_script(&admin.tenant, &admin.email, goal, machine_id, &context)
        .await?;
    state
        .notifications
        .notify(
            &admin.tenant,
            crate::notify::NewNotification {
                title: format!(
                    "A drafted script waits for approval: {}",
                    approval.draft.name
                ),
                message: format!("{} asked: {}", admin.email, approval.goal),
                severity: crate::notify::Severity::Info,
                category: crate::notify::Category::Approval,
                link: Some("/settings/approvals".to_owned()),
            },
        )
        .await;
    let change = AuditChange {
        target_type: "AssistantApproval",
        target_id: approval.id.clone(),
        before: None,
        after: Some(json!(approval)),
    };
    Ok(change.on((StatusCode::CREATED, Json(json!({"approval": approval}))).into_response()))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApprovalsQuery {
    #[serde(default)]
    status: Option<String>,
}

async fn approvals(
    State(state): State<AppState>,
    admin: Admin,
    Query(query): Query<ApprovalsQuery>,
) -> Result<Response, ApiError> {
    let status = status_filter(query.status, &["PENDING", "ACCEPTED", "DECLINED"])?;
    let approvals = state
        .assistant
        .approvals(&admin.tenant, status.as_deref())
        .await?;
    Ok(Json(json!({"approvals": approvals})).into_response())
}

async fn accept(
    State(state): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let rmm = state.management.rmm.clone();
    let (tenant, user) = (admin.tenant.clone(), admin.user_id.clone());
    let (before, after) = state
        .assistant
        .decide(
            &admin.tenant,
            &id,
            &admin.email,
            Decision::Accept,
            |draft| async move {
                let input = ScriptInput {
                    name: draft.name,
                    description: draft.description,
                    shell: draft.shell,
                    privilege_level: None,
                    script_body: draft.body,
                    supported_platforms: Vec::new(),
                    default_timeout_seconds: None,
                    default_args: Vec::new(),
                    env_vars: Vec::new(),
                    tags: Vec::new(),
                };
                Ok(rmm.create_script(&tenant, &user, input).await?.id)
            },
        )
        .await?;
    decided(before, after)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeclineBody {
    #[serde(default)]
    reason: Option<String>,
}

async fn decline(
    State(state): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let body: DeclineBody = optional_json_body(&headers, &body)?;
    let reason = body
        .reason
        .map(|reason| reason.trim().to_owned())
        .filter(|reason| !reason.is_empty());
    if reason
        .as_ref()
        .is_some_and(|reason| reason.chars().count() > 2000)
    {
        return Err(ApiError::InvalidInput(
            "reason: at most 2000 characters".to_owned(),
        ));
    }
    let (before, after) = state
        .assistant
        .decide(
            &admin.tenant,
            &id,
            &admin.email,
            Decision::Decline { reason },
            |_| async {
                Err(ApiError::Unexpected(anyhow::anyhow!(
                    "a decline never acts"
                )))
            },
        )
        .await?;
    decided(before, after)
}

fn decided(before: super::Approval, after: super::Approval) -> Result<Response, ApiError> {
    let change = AuditChange {
        target_type: "AssistantApproval",
        target_id: after.id.clone(),
        before: Some(json!(before)),
        after: Some(json!(after)),
    };
    Ok(change.on(Json(after).into_response()))
}
