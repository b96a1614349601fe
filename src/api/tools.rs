//! `/api/tools`: the integrated tools registry for administrators (OpenFrame registers tools
//! with `POST /v1/tools/{key}` on its internal management service; here it is an admin API).
//!
//! - `GET /api/tools`, `GET /api/tools/{id}`: tools with `hasCredentials` and their latest health
//!   report, never the credential.
//! - `PUT /api/tools/{id}`: registers or replaces a tool (201 when new). Without `credential` the
//!   stored one is kept (`clearCredential: true` removes it), so a change need not resend the
//!   secret. A CA file can be set only from the CLI (it names a file on the appliance).
//! - `DELETE /api/tools/{id}`: 204.
//! - Hooks run before anything is stored, per tool type: for `FLEET_MDM`, `fleetLogin: {email,
//!   password}` signs in to Fleet (`POST {apiUrl}/api/v1/fleet/login`) and stores the API token
//!   it returns as the tool's bearer credential (OpenFrame's `FleetMdmSetupService`); the password
//!   is used once and never stored.
//!
//! Every change is audited and logged into the unified log (`INTEGRATION_ADDED`, `…_UPDATED`,
//! `…_DELETED`).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::json_body;
use crate::audit::AuditChange;
use crate::error::ApiError;
use crate::gateway::auth::Admin;
use crate::gateway::health::log_tool_event;
use crate::gateway::tools::{CredentialKind, NewTool, ToolRecord};
use crate::startup::AppState;

/// The tool types the appliance knows (OpenFrame's `ToolType`).
pub(super) const TOOL_TYPES: [&str; 4] =
    ["MESHCENTRAL", "FLEET_MDM", "OPENFRAME_RMM", "TACTICAL_RMM"];

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CredentialBody {
    /// `BEARER_TOKEN` or `HEADER`.
    kind: String,
    #[serde(default)]
    header_name: String,
    secret: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FleetLogin {
    email: String,
    password: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ToolBody {
    name: String,
    tool_type: String,
    api_url: String,
    #[serde(default)]
    ws_url: Option<String>,
    #[serde(default)]
    credential: Option<CredentialBody>,
    #[serde(default)]
    clear_credential: bool,
    #[serde(default)]
    fleet_login: Option<FleetLogin>,
    allowed_paths: Vec<String>,
    #[serde(default)]
    agent_allowed_paths: Vec<String>,
    #[serde(default = "yes")]
    tls_verify: bool,
    #[serde(default = "root")]
    health_path: String,
    #[serde(default = "default_interval")]
    health_check_seconds: u64,
}

fn yes() -> bool {
    true
}

fn root() -> String {
    "/".into()
}

fn default_interval() -> u64 {
    crate::gateway::tools::DEFAULT_HEALTH_CHECK_SECONDS
}

/// A tool as administrators see it: no credential, its health.
fn view(state: &AppState, admin: &Admin, tool: &ToolRecord) -> Value {
    json!({
        "id": tool.id,
        "name": tool.name,
        "toolType": tool.tool_type,
        "apiUrl": tool.api_url,
        "wsUrl": tool.ws_url,
        "hasCredentials": tool.credential.is_some(),
        "credentialKind": tool.credential.as_ref().map(|credential| credential.kind),
        "allowedPaths": tool.allowed_paths,
        "agentAllowedPaths": tool.agent_allowed_paths,
        "tlsVerify": tool.tls_verify,
        "hasCaFile": !tool.ca_file.is_empty(),
        "healthPath": tool.health_path,
        "healthCheckSeconds": tool.health_check_seconds,
        "enabled": tool.enabled,
        "createdAt": super::iso(tool.created_at),
        "updatedAt": super::iso(tool.updated_at),
        "health": state.gateway.health.report(&admin.tenant, &tool.id).map(|report| json!({
            "healthy": report.healthy,
            "upstreamStatus": report.upstream_status,
            "latencyMs": report.latency_ms,
            "message": report.message,
            "checkedAt": super::iso(report.checked_at),
        })),
    })
}

/// What the audit trail keeps of a tool: the view without its health.
fn audited(state: &AppState, admin: &Admin, tool: &ToolRecord) -> Value {
    let mut shown = view(state, admin, tool);
    if let Some(object) = shown.as_object_mut() {
        object.remove("health");
    }
    shown
}

pub(super) async fn list(
    State(state): State<AppState>,
    admin: Admin,
) -> Result<Response, ApiError> {
    let mut tools = state.gateway.tools.list(&admin.tenant).await?;
    tools.sort_by(|a, b| a.id.cmp(&b.id));
    let shown: Vec<Value> = tools
        .iter()
        .map(|tool| view(&state, &admin, tool))
        .collect();
    Ok(axum::Json(json!({ "tools": shown })).into_response())
}

async fn found(state: &AppState, admin: &Admin, id: &str) -> Result<ToolRecord, ApiError> {
    state
        .gateway
        .tools
        .get(&admin.tenant, id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no tool {id:?}")))
}

pub(super) async fn get(
    State(state): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let tool = found(&state, &admin, &id).await?;
    Ok(axum::Json(view(&state, &admin, &tool)).into_response())
}

pub(super) async fn put(
    State(state): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let body: ToolBody = json_body(&headers, &body)?;
    crate::gateway::tools::check_tool_id(&id)
        .map_err(|invalid| ApiError::InvalidInput(invalid.to_string()))?;
    if !TOOL_TYPES.contains(&body.tool_type.as_str()) {
        return Err(ApiError::InvalidInput(format!(
            "toolType: must be one of {}",
            TOOL_TYPES.join(", ")
        )));
    }
    if body.credential.is_some() && (body.clear_credential || body.fleet_login.is_some()) {
        return Err(ApiError::InvalidInput(
            "credential: give a credential, clearCredential or fleetLogin, not several".into(),
        ));
    }
    if body.fleet_login.is_some() && body.tool_type != "FLEET_MDM" {
        return Err(ApiError::InvalidInput(
            "fleetLogin: only a FLEET_MDM tool signs in to Fleet".into(),
        ));
    }
    let before = state.gateway.tools.get(&admin.tenant, &id).await?;
    let mut credential = match body.credential {
        None => None,
        Some(given) => {
            let kind = match given.kind.as_str() {
                "BEARER_TOKEN" => CredentialKind::BearerToken,
                "HEADER" => CredentialKind::Header,
                _ => {
                    return Err(ApiError::InvalidInput(
                        "credential.kind: must be BEARER_TOKEN or HEADER".into(),
                    ));
                }
            };
            Some((kind, given.header_name, given.secret))
        }
    };
    let mut new = NewTool {
        id: id.clone(),
        name: body.name,
        tool_type: body.tool_type,
        api_url: body.api_url,
        ws_url: body.ws_url,
        credential: None,
        keep_credential: !body.clear_credential,
        allowed_paths: body.allowed_paths,
        agent_allowed_paths: body.agent_allowed_paths,
        ca_file: before
            .as_ref()
            .map(|tool| tool.ca_file.clone())
            .unwrap_or_default(),
        tls_verify: body.tls_verify,
        health_path: body.health_path,
        health_check_seconds: body.health_check_seconds,
    };
    if let Some(login) = body.fleet_login {
        let token = fleet_api_token(&state, &new, &login).await?;
        credential = Some((CredentialKind::BearerToken, String::new(), token));
    }
    new.credential = credential;
    let tool = state.gateway.tools.set(&admin.tenant, new).await?;
    let (status, event) = if before.is_some() {
        (StatusCode::OK, "updated")
    } else {
        (StatusCode::CREATED, "added")
    };
    tracing::info!(tenant = %admin.tenant, tool = %tool.id, by = %admin.user_id, event, "tool registered");
    log_tool_event(
        &state,
        &admin.tenant,
        &tool,
        event,
        None,
        Some(&admin.email),
    )
    .await;
    let change = AuditChange {
        target_type: "IntegratedTool",
        target_id: tool.id.clone(),
        before: before.as_ref().map(|old| audited(&state, &admin, old)),
        after: Some(audited(&state, &admin, &tool)),
    };
    Ok(change.on((status, axum::Json(view(&state, &admin, &tool))).into_response()))
}

pub(super) async fn delete(
    State(state): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let tool = found(&state, &admin, &id).await?;
    state.gateway.tools.delete(&admin.tenant, &id).await?;
    state.gateway.health.forget(&admin.tenant, &id);
    tracing::info!(tenant = %admin.tenant, tool = %id, by = %admin.user_id, "tool removed");
    log_tool_event(
        &state,
        &admin.tenant,
        &tool,
        "deleted",
        None,
        Some(&admin.email),
    )
    .await;
    let change = AuditChange {
        target_type: "IntegratedTool",
        target_id: id,
        before: Some(audited(&state, &admin, &tool)),
        after: None,
    };
    Ok(change.on(StatusCode::NO_CONTENT.into_response()))
}

/// Fleet's post-save hook: signs in with the administrator's Fleet account and returns the API
/// token Fleet issues. The tool is not stored yet, so the request uses a draft of it (its URL
/// checked first, its TLS settings honoured).
async fn fleet_api_token(
    state: &AppState,
    tool: &NewTool,
    login: &FleetLogin,
) -> Result<String, ApiError> {
    crate::gateway::tools::check_url("apiUrl", &tool.api_url, &["http", "https"])
        .map_err(|invalid| ApiError::InvalidInput(invalid.to_string()))?;
    let draft = ToolRecord {
        id: tool.id.clone(),
        name: tool.name.clone(),
        tool_type: tool.tool_type.clone(),
        api_url: tool.api_url.trim_end_matches('/').to_owned(),
        ws_url: None,
        credential: None,
        allowed_paths: Vec::new(),
        agent_allowed_paths: Vec::new(),
        ca_file: tool.ca_file.clone(),
        tls_verify: tool.tls_verify,
        health_path: tool.health_path.clone(),
        health_check_seconds: 0,
        enabled: true,
        created_at: 0,
        updated_at: 0,
    };
    let client = state.gateway.upstreams.client(&draft)?;
    let failed =
        |why: String| ApiError::BadGateway(format!("fleetLogin: {why}; nothing was stored"));
    let response = client
        .post(format!("{}/api/v1/fleet/login", draft.api_url))
        .timeout(std::time::Duration::from_secs(
            state.config.gateway.tool_timeout_seconds.min(15),
        ))
        .json(&json!({"email": login.email, "password": login.password}))
        .send()
        .await
        .map_err(|error| failed(format!("Fleet could not be reached ({error})")))?;
    let status = response.status();
    if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
        return Err(ApiError::InvalidInput(
            "fleetLogin: Fleet refused the email and password; nothing was stored".into(),
        ));
    }
    if !status.is_success() {
        return Err(failed(format!("Fleet answered HTTP {}", status.as_u16())));
    }
    let answer: Value = response
        .json()
        .await
        .map_err(|_| failed("Fleet's answer is not JSON".into()))?;
    answer
        .get("token")
        .and_then(Value::as_str)
        .filter(|token| !token.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| failed("Fleet's answer has no token".into()))
}
