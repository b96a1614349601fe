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
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use super::agents::Registration;
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
        .route("/ws/nats", get(super::nats_proxy::upgrade))
}

fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Result<&'a str, ApiError> {
    headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .map(str::trim)
        .filter(|value| !value.is_empty())
        .ok_or_else(|| ApiError::Unauthorized(format!("the {name} header is required")))
}

fn registration(headers: &HeaderMap, body: &[u8]) -> Result<Registration, ApiError> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.to_ascii_lowercase().starts_with("application/json"));
    if !json {
        return Err(ApiError::InvalidInput(
            "send the registration as JSON (Content-Type: application/json)".into(),
        ));
    }
    serde_json::from_slice(body).map_err(|error| {
        ApiError::InvalidInput(format!("the registration is not valid JSON: {error}"))
    })
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
    let registration = registration(&headers, &body)?;
    let enrolled = state.management.agents.register(key, registration).await?;
    Ok(no_store(axum::Json(enrolled)))
}

async fn reinstall(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let key = header_text(&headers, "X-Initial-Key")?;
    let machine_id = header_text(&headers, "X-Machine-Id")?;
    let secret = header_text(&headers, "X-Client-Secret")?;
    let registration = registration(&headers, &body)?;
    let enrolled = state
        .management
        .agents
        .reinstall(key, machine_id, secret, registration)
        .await?;
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
    serde_json::json!({
        "id": secret.id,
        "secret": secret.secret,
        "createdAt": secret.created_at,
        "installCommand": command,
    })
}
