//! The agent service's HTTP surface (OpenFrame's client service under `/clients`), the
//! administrators' view of the registration secret, and the `/ws/nats` entry.
//!
//! | Route | Who |
//! |---|---|
//! | `POST /clients/api/agents/register` | `X-Initial-Key` |
//! | `POST /clients/api/agents/reinstall` | `X-Initial-Key`, `X-Machine-Id`, `X-Client-Secret` |
//! | `POST /clients/api/agents/uninstall` | `X-Machine-Id`, `X-Client-Secret` |
//! | `POST /clients/oauth/token` | client credentials or a refresh token, form-encoded |
//! | `GET /api/agents/registration-secret`, `POST …/rotate` | an administrator |
//! | `GET /ws/nats` | an agent token (WebSocket) |
//!
//! The first four are open at the gateway and limited per client address there.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use super::agents::Registration;
use crate::api::json_body;
use crate::error::ApiError;
use crate::gateway::auth::Admin;
use crate::startup::AppState;

/// The open bootstrap routes (the gateway puts its per-address limit on them).
pub fn bootstrap_router() -> Router<AppState> {
    Router::new()
        .route("/clients/api/agents/register", post(register))
        .route("/clients/api/agents/reinstall", post(reinstall))
        .route("/clients/api/agents/uninstall", post(uninstall))
        .route("/clients/oauth/token", post(token))
}

/// Routes that need a verified caller.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/agents/registration-secret", get(registration_secret))
        .route(
            "/api/agents/registration-secret/rotate",
            post(rotate_registration_secret),
        )
        // OpenFrame's paths for the same.
        .route("/api/agent/registration-secret", get(registration_secret))
        .route(
            "/api/agent/registration-secret/active",
            get(registration_secret),
        )
        .route(
            "/api/agent/registration-secret/generate",
            post(rotate_registration_secret),
        )
        .route("/ws/nats", get(super::nats_proxy::upgrade))
        .route("/api/scripts", get(list_scripts).post(create_script))
        .route(
            "/api/scripts/{id}",
            get(get_script).put(update_script).delete(delete_script),
        )
        .route("/api/scripts/{id}/archive", post(archive_script))
        .route("/api/scripts/{id}/unarchive", post(unarchive_script))
        .route("/api/scripts/{id}/run", post(run_script))
        .route("/api/scripts/{id}/executions", get(script_executions))
        .route("/api/commands/run", post(run_command))
        .route("/api/executions/{execution_id}", get(executions))
        .route("/api/executions/{execution_id}/cancel", post(cancel))
        .route("/clients/tool-agent/{asset_id}", get(tool_asset))
        .route("/api/tool-agents", get(list_tool_agents))
        .route(
            "/api/tool-agents/{id}",
            get(get_tool_agent).put(put_tool_agent),
        )
        .route("/api/tool-agents/{id}/install", post(install_tool_agent))
        .route(
            "/api/tool-agents/{id}/uninstall",
            post(uninstall_tool_agent),
        )
        .route("/api/tool-agents/{id}/update", post(update_tool_agent))
}

fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Result<&'a str, ApiError> {
    headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .map(str::trim)
        .filter(|value| !value.is_empty())
        .ok_or_else(|| ApiError::Unauthorized(format!("the {name} header is required")))
}

fn no_store(response: impl IntoResponse) -> Response {
    let mut response = response.into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    response
}

async fn register(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let key = header_text(&headers, "X-Initial-Key")?;
    let registration: Registration = json_body(&headers, &body)?;
    let enrolled = state.management.agents.register(key, registration).await?;
    define_tag_keys(&state, &enrolled.machine_id).await;
    provision_tools(&state, &enrolled.machine_id, false).await;
    Ok(no_store(axum::Json(enrolled)))
}

/// Queues the tenant's tool agents for a machine that registered or reinstalled.
async fn provision_tools(state: &AppState, machine_id: &str, reinstall: bool) {
    let Some(tenant) = state.management.agents.tenant_of(machine_id) else {
        return;
    };
    let tools: Vec<String> = match state.gateway.tools.list(&tenant).await {
        Ok(tools) => tools
            .into_iter()
            .filter(|tool| tool.enabled)
            .map(|tool| tool.id)
            .collect(),
        Err(error) => {
            tracing::warn!(%tenant, machine_id, %error, "cannot list tools for a new machine");
            return;
        }
    };
    if tools.is_empty() {
        return;
    }
    let queued = state
        .management
        .tool_agents
        .provision(
            &tenant,
            machine_id,
            &tools,
            reinstall,
            state.management.client.get(),
        )
        .await;
    tracing::info!(%tenant, machine_id, queued, reinstall, "tool agents queued for a machine");
}

/// Gives the tag keys a machine arrived with a definition (technicians then name and colour
/// them). The machine is registered either way; a failure here only leaves keys undefined.
async fn define_tag_keys(state: &AppState, machine_id: &str) {
    let Some(tenant) = state.management.agents.tenant_of(machine_id) else {
        return;
    };
    let tags = match state.inventory.machine(&tenant, machine_id).await {
        Ok(Some(machine)) => machine.tags,
        Ok(None) => return,
        Err(error) => {
            tracing::warn!(%error, machine_id, "cannot read a new machine's tags");
            return;
        }
    };
    if tags.is_empty() {
        return;
    }
    if let Err(error) = state.tags.define_device_keys(&tenant, &tags).await {
        tracing::warn!(%error, machine_id, "cannot define a new machine's tag keys");
    }
}

async fn reinstall(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let key = header_text(&headers, "X-Initial-Key")?;
    let machine_id = header_text(&headers, "X-Machine-Id")?;
    let secret = header_text(&headers, "X-Client-Secret")?;
    let registration: Registration = json_body(&headers, &body)?;
    let enrolled = state
        .management
        .agents
        .reinstall(key, machine_id, secret, registration)
        .await?;
    define_tag_keys(&state, &enrolled.machine_id).await;
    // The old installation's tools are gone with it: they connect again once reinstalled.
    if let Some(tenant) = state.management.agents.tenant_of(&enrolled.machine_id) {
        match state
            .inventory
            .disconnect_tools(&tenant, &enrolled.machine_id)
            .await
        {
            Ok(changed) if !changed.is_empty() => {
                tracing::info!(%tenant, machine_id = %enrolled.machine_id, tools = changed.len(), "tool connections of a reinstalled machine are DISCONNECTED");
            }
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(%tenant, machine_id = %enrolled.machine_id, %error, "cannot mark a reinstalled machine's tool connections");
            }
        }
    }
    provision_tools(&state, &enrolled.machine_id, true).await;
    Ok(no_store(axum::Json(enrolled)))
}

async fn uninstall(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let machine_id = header_text(&headers, "X-Machine-Id")?;
    let secret = header_text(&headers, "X-Client-Secret")?;
    state
        .management
        .agents
        .uninstall(machine_id, secret)
        .await?;
    // An uninstalled machine is no longer watched for silence.
    state.management.presence.forget(machine_id);
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// OpenFrame's agent token endpoint: form parameters `grant_type`, `client_id`,
/// `client_secret`, `refresh_token`; the answer is camelCase JSON.
async fn token(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let form_encoded = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| {
            value
                .to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        });
    if !form_encoded {
        return Err(ApiError::InvalidInput(
            "send the token request form-encoded (Content-Type: application/x-www-form-urlencoded)"
                .into(),
        ));
    }
    let mut form = std::collections::HashMap::new();
    for (name, value) in url::form_urlencoded::parse(&body) {
        if form.insert(name.clone(), value).is_some() {
            return Err(ApiError::InvalidInput(format!(
                "the parameter {name:?} is given twice"
            )));
        }
    }
    let field = |name: &str| form.get(name).map(|value| value.as_ref());
    let tokens = match field("grant_type") {
        Some("client_credentials") => {
            let (Some(client_id), Some(secret)) = (field("client_id"), field("client_secret"))
            else {
                return Err(ApiError::InvalidInput(
                    "client_credentials needs client_id and client_secret".into(),
                ));
            };
            state
                .management
                .agents
                .client_credentials(client_id, secret)
                .await?
        }
        Some("refresh_token") => {
            let Some(refresh) = field("refresh_token") else {
                return Err(ApiError::InvalidInput(
                    "refresh_token needs the refresh_token parameter".into(),
                ));
            };
            state
                .management
                .agents
                .refresh(refresh, field("client_id"))
                .await?
        }
        _ => {
            return Err(ApiError::InvalidInput(
                "grant_type must be client_credentials or refresh_token".into(),
            ));
        }
    };
    Ok(no_store(axum::Json(tokens)))
}

/// The tenant's active registration secret and the agent install command that uses it.
async fn registration_secret(
    State(state): State<AppState>,
    admin: Admin,
) -> Result<Response, ApiError> {
    let secret = state
        .management
        .agents
        .registration_secret(&admin.tenant)
        .await?;
    Ok(no_store(axum::Json(describe_secret(&state, secret))))
}

async fn rotate_registration_secret(
    State(state): State<AppState>,
    admin: Admin,
) -> Result<Response, ApiError> {
    let secret = state.management.agents.rotate_secret(&admin.tenant).await?;
    tracing::info!(tenant = %admin.tenant, by = %admin.user_id, "agent registration secret rotated");
    Ok(no_store(axum::Json(describe_secret(&state, secret))))
}

fn describe_secret(
    state: &AppState,
    secret: super::agents::RegistrationSecret,
) -> serde_json::Value {
    let command = format!(
        "openframe agent install --server {} --initial-key {} --org <organizationId>",
        state.config.public_url(),
        secret.secret
    );
    // `key` and `active` are OpenFrame's names (`{id, key, createdAt, active}`).
    serde_json::json!({
        "id": secret.id,
        "key": secret.secret,
        "secret": secret.secret,
        "active": true,
        "createdAt": secret.created_at,
        "installCommand": command,
    })
}

async fn list_scripts(State(state): State<AppState>, admin: Admin) -> Result<Response, ApiError> {
    let scripts = state.management.rmm.scripts(&admin.tenant).await?;
    Ok(axum::Json(serde_json::json!({ "scripts": scripts })).into_response())
}

async fn create_script(
    State(state): State<AppState>,
    admin: Admin,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let input = json_body(&headers, &body)?;
    let script = state
        .management
        .rmm
        .create_script(&admin.tenant, &admin.user_id, input)
        .await?;
    tracing::info!(tenant = %admin.tenant, script_id = %script.id, by = %admin.user_id, "script created");
    Ok((StatusCode::CREATED, axum::Json(script)).into_response())
}

async fn get_script(
    State(state): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let script = state.management.rmm.script(&admin.tenant, &id).await?;
    Ok(axum::Json(script).into_response())
}

async fn update_script(
    State(state): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let input = json_body(&headers, &body)?;
    let script = state
        .management
        .rmm
        .update_script(&admin.tenant, &id, input)
        .await?;
    Ok(axum::Json(script).into_response())
}

async fn set_status(
    state: &AppState,
    admin: &Admin,
    id: &str,
    status: &str,
) -> Result<Response, ApiError> {
    let script = state
        .management
        .rmm
        .set_script_status(&admin.tenant, id, status)
        .await?;
    tracing::info!(tenant = %admin.tenant, script_id = %id, status, by = %admin.user_id, "script status changed");
    Ok(axum::Json(script).into_response())
}

async fn archive_script(
    State(state): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    set_status(&state, &admin, &id, "ARCHIVED").await
}

async fn unarchive_script(
    State(state): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    set_status(&state, &admin, &id, "ACTIVE").await
}

async fn delete_script(
    State(state): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    set_status(&state, &admin, &id, "DELETED").await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn run_script(
    State(state): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let input = json_body(&headers, &body)?;
    let execution_id = state
        .management
        .rmm
        .run_script(
            &admin.tenant,
            &admin.user_id,
            &id,
            input,
            state.management.client.get(),
        )
        .await?;
    Ok(dispatched(&execution_id))
}

async fn run_command(
    State(state): State<AppState>,
    admin: Admin,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let input = json_body(&headers, &body)?;
    let execution_id = state
        .management
        .rmm
        .run_command(
            &admin.tenant,
            &admin.user_id,
            input,
            state.management.client.get(),
        )
        .await?;
    Ok(dispatched(&execution_id))
}

/// OpenFrame's `DispatchResponse`: 202 `{executionId}`.
fn dispatched(execution_id: &str) -> Response {
    (
        StatusCode::ACCEPTED,
        axum::Json(serde_json::json!({ "executionId": execution_id })),
    )
        .into_response()
}

async fn script_executions(
    State(state): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let found = state
        .management
        .rmm
        .script_executions(&admin.tenant, &id)
        .await?;
    Ok(axum::Json(serde_json::json!({ "executions": found })).into_response())
}

async fn executions(
    State(state): State<AppState>,
    admin: Admin,
    Path(execution_id): Path<String>,
) -> Result<Response, ApiError> {
    let found = state
        .management
        .rmm
        .executions(&admin.tenant, &execution_id)
        .await?;
    Ok(axum::Json(serde_json::json!({ "executions": found })).into_response())
}

#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CancelInput {
    machine_id: String,
}

async fn cancel(
    State(state): State<AppState>,
    admin: Admin,
    Path(execution_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let input: CancelInput = json_body(&headers, &body)?;
    let execution = state
        .management
        .rmm
        .cancel(
            &admin.tenant,
            &execution_id,
            &input.machine_id,
            state.management.client.get(),
        )
        .await?;
    Ok(axum::Json(execution).into_response())
}

async fn list_tool_agents(
    State(state): State<AppState>,
    admin: Admin,
) -> Result<Response, ApiError> {
    let agents = state.management.tool_agents.list(&admin.tenant).await?;
    let shown: Vec<serde_json::Value> = agents.iter().map(super::tool_agents::shown).collect();
    Ok(axum::Json(serde_json::json!({ "toolAgents": shown })).into_response())
}

async fn get_tool_agent(
    State(state): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let agent = state.management.tool_agents.get(&admin.tenant, &id).await?;
    Ok(axum::Json(super::tool_agents::shown(&agent)).into_response())
}

async fn put_tool_agent(
    State(state): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let input = json_body(&headers, &body)?;
    let before = state
        .management
        .tool_agents
        .get(&admin.tenant, &id)
        .await
        .ok();
    let agent = state
        .management
        .tool_agents
        .put(&admin.tenant, &id, input)
        .await?;
    tracing::info!(tenant = %admin.tenant, tool_agent = %id, by = %admin.user_id, "tool agent changed");
    let change = crate::audit::AuditChange {
        target_type: "ToolAgent",
        target_id: id,
        before: before.as_ref().map(super::tool_agents::shown),
        after: Some(super::tool_agents::shown(&agent)),
    };
    Ok(change.on(axum::Json(super::tool_agents::shown(&agent)).into_response()))
}

#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct MachinesInput {
    machine_ids: Vec<String>,
    #[serde(default)]
    reinstall: bool,
}

/// 202 `{published}`: how many machines' messages JetStream stored.
fn published(count: usize) -> Response {
    (
        StatusCode::ACCEPTED,
        axum::Json(serde_json::json!({ "published": count })),
    )
        .into_response()
}

async fn install_tool_agent(
    State(state): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let input: MachinesInput = json_body(&headers, &body)?;
    let count = state
        .management
        .tool_agents
        .install(
            &admin.tenant,
            &id,
            &input.machine_ids,
            input.reinstall,
            state.management.client.get(),
        )
        .await?;
    tracing::info!(tenant = %admin.tenant, tool_agent = %id, machines = count, by = %admin.user_id, "tool agent installation pushed");
    Ok(published(count))
}

async fn uninstall_tool_agent(
    State(state): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let input: MachinesInput = json_body(&headers, &body)?;
    let count = state
        .management
        .tool_agents
        .uninstall(
            &admin.tenant,
            &id,
            &input.machine_ids,
            state.management.client.get(),
        )
        .await?;
    tracing::info!(tenant = %admin.tenant, tool_agent = %id, machines = count, by = %admin.user_id, "tool agent removal pushed");
    Ok(published(count))
}

async fn update_tool_agent(
    State(state): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let count = state
        .management
        .tool_agents
        .update(&admin.tenant, &id, state.management.client.get())
        .await?;
    tracing::info!(tenant = %admin.tenant, tool_agent = %id, machines = count, by = %admin.user_id, "tool agent update pushed");
    Ok(published(count))
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct AssetQuery {
    #[serde(default)]
    os: Option<String>,
}

/// `GET /clients/tool-agent/{assetId}[?os=WINDOWS|MAC_OS|LINUX]`: a tool agent's asset from
/// `<data_dir>/tool-assets/` (`{os}/{assetId}` first, then `{assetId}`), so machines on an
/// air-gapped site install tools without reaching GitHub. Open, as OpenFrame's: put only what
/// any machine may download there.
async fn tool_asset(
    State(state): State<AppState>,
    Path(asset_id): Path<String>,
    axum::extract::Query(query): axum::extract::Query<AssetQuery>,
) -> Result<Response, ApiError> {
    let well_formed = (1..=128).contains(&asset_id.len())
        && !asset_id.starts_with('.')
        && asset_id
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'-' | b'_'));
    if !well_formed {
        return Err(ApiError::InvalidInput(
            "assetId: letters, digits, '.', '-' or '_' (not starting with '.'), at most 128".into(),
        ));
    }
    let os = match query.os.as_deref() {
        None => None,
        Some(os) => Some(
            super::rmm::one_of(os, &super::rmm::PLATFORMS, "os")
                .map_err(|invalid| ApiError::InvalidInput(invalid.to_string()))?,
        ),
    };
    let root = state.config.storage.data_dir.join("tool-assets");
    let candidates = os
        .iter()
        .map(|os| root.join(os).join(&asset_id))
        .chain(std::iter::once(root.join(&asset_id)));
    for path in candidates {
        let file = match tokio::fs::File::open(&path).await {
            Ok(file) => file,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
            Err(error) => {
                return Err(ApiError::Unexpected(anyhow::anyhow!(
                    "opening {}: {error}",
                    path.display()
                )));
            }
        };
        let metadata = file
            .metadata()
            .await
            .map_err(|error| ApiError::Unexpected(error.into()))?;
        if !metadata.is_file() {
            continue;
        }
        let body = axum::body::Body::from_stream(tokio_util::io::ReaderStream::new(file));
        let response = Response::builder()
            .header(axum::http::header::CONTENT_TYPE, "application/octet-stream")
            .header(axum::http::header::CONTENT_LENGTH, metadata.len())
            .header(
                axum::http::header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{asset_id}\""),
            )
            .body(body)
            .map_err(|error| ApiError::Unexpected(error.into()))?;
        tracing::debug!(
            asset_id,
            os = os.as_deref().unwrap_or("any"),
            "tool asset served"
        );
        return Ok(response);
    }
    Err(ApiError::NotFound(format!(
        "no tool asset {asset_id:?}{}: put it in the data dir's tool-assets/ folder",
        os.map(|os| format!(" for {os}")).unwrap_or_default()
    )))
}
