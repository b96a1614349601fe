//! `/api/api-keys`: OpenFrame's API-key management for administrators. The full key is in the
//! answer to create and regenerate, and nowhere else, ever.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::iso;
use crate::error::ApiError;
use crate::gateway::api_keys::{ApiKeyRecord, KeyChanges, KeySettings, KeyStats, RateLimits};
use crate::gateway::auth::Admin;
use crate::startup::AppState;

/// OpenFrame's `ApiKeyResponse`, plus scopes and limits.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct KeyResponse {
    id: String,
    name: String,
    description: String,
    enabled: bool,
    scopes: Vec<String>,
    rate_limits: RateLimits,
    created_at: String,
    updated_at: String,
    last_used: Option<String>,
    expires_at: Option<String>,
    total_requests: u64,
    successful_requests: u64,
    failed_requests: u64,
}

fn response(record: ApiKeyRecord, stats: KeyStats) -> KeyResponse {
    KeyResponse {
        id: record.id,
        name: record.name,
        description: record.description,
        enabled: record.enabled,
        scopes: record.scopes,
        rate_limits: record.rate_limits,
        created_at: iso(record.created_at),
        updated_at: iso(record.updated_at),
        last_used: stats.last_used.map(iso),
        expires_at: record.expires_at.map(iso),
        total_requests: stats.total_requests,
        successful_requests: stats.successful_requests,
        failed_requests: stats.failed_requests,
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct KeyRequest {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    description: Option<String>,
    /// RFC 3339; `null` removes the expiry (so `null` and absent must stay apart).
    #[serde(default, deserialize_with = "present")]
    expires_at: Option<serde_json::Value>,
    #[serde(default)]
    scopes: Option<Vec<String>>,
    #[serde(default)]
    rate_limits: Option<RateLimits>,
    #[serde(default)]
    enabled: Option<bool>,
}

/// A field that is present, even as `null`.
fn present<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<serde_json::Value>, D::Error> {
    serde::Deserialize::deserialize(deserializer).map(Some)
}

/// The body as changes: absent fields stay as they are.
fn changes(body: &[u8]) -> Result<KeyChanges, ApiError> {
    let request: KeyRequest = serde_json::from_slice(body)
        .map_err(|error| ApiError::InvalidInput(format!("the JSON body is not valid: {error}")))?;
    let expires_at = match request.expires_at {
        None => None,
        Some(serde_json::Value::Null) => Some(None),
        Some(serde_json::Value::String(text)) => {
            let at = time::OffsetDateTime::parse(
                &text,
                &time::format_description::well_known::Rfc3339,
            )
            .map_err(|_| {
                ApiError::InvalidInput(format!(
                    "expiresAt: {text:?} is not an RFC 3339 time such as \"2027-01-31T00:00:00Z\""
                ))
            })?;
            Some(Some(
                i64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX),
            ))
        }
        Some(_) => {
            return Err(ApiError::InvalidInput(
                "expiresAt: must be an RFC 3339 time or null".into(),
            ));
        }
    };
    Ok(KeyChanges {
        name: request.name,
        description: request.description,
        scopes: request.scopes,
        expires_at,
        rate_limits: request.rate_limits,
        enabled: request.enabled,
    })
}

/// A new key's settings: a name is required, everything else has a default.
fn settings(body: &[u8]) -> Result<KeySettings, ApiError> {
    let changes = changes(body)?;
    Ok(KeySettings {
        name: changes
            .name
            .ok_or_else(|| ApiError::InvalidInput("name: a key needs a name".into()))?,
        description: changes.description.unwrap_or_default(),
        scopes: changes.scopes,
        expires_at: changes.expires_at.flatten(),
        rate_limits: changes.rate_limits.unwrap_or_default(),
        enabled: changes.enabled.unwrap_or(true),
    })
}

pub(super) async fn create(
    State(state): State<AppState>,
    admin: Admin,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let settings = settings(&body)?;
    let (record, full_key) = state
        .gateway
        .api_keys
        .create(&admin.tenant, &admin.user_id, settings)
        .await?;
    tracing::info!(tenant = %admin.tenant.as_str(), key = %record.id, by = %admin.user_id, "API key created");
    let body = serde_json::json!({
        "apiKey": response(record, KeyStats::default()),
        "fullKey": full_key,
    });
    Ok((StatusCode::CREATED, no_store(), Json(body)).into_response())
}

fn no_store() -> [(axum::http::HeaderName, &'static str); 1] {
    [(axum::http::header::CACHE_CONTROL, "no-store")]
}

pub(super) async fn list(
    State(state): State<AppState>,
    admin: Admin,
) -> Result<Response, ApiError> {
    let keys: Vec<KeyResponse> = state
        .gateway
        .api_keys
        .list(&admin.tenant)
        .await?
        .into_iter()
        .map(|(record, stats)| response(record, stats))
        .collect();
    Ok(Json(keys).into_response())
}

pub(super) async fn get(
    State(state): State<AppState>,
    admin: Admin,
    Path(key_id): Path<String>,
) -> Result<Response, ApiError> {
    let (record, stats) = state.gateway.api_keys.get(&admin.tenant, &key_id).await?;
    Ok(Json(response(record, stats)).into_response())
}

pub(super) async fn update(
    State(state): State<AppState>,
    admin: Admin,
    Path(key_id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let changes = changes(&body)?;
    let keys = &state.gateway.api_keys;
    let record = keys.update(&admin.tenant, &key_id, changes).await?;
    let stats = keys.stats(&admin.tenant, &key_id).await?;
    Ok(Json(response(record, stats)).into_response())
}

pub(super) async fn regenerate(
    State(state): State<AppState>,
    admin: Admin,
    Path(key_id): Path<String>,
) -> Result<Response, ApiError> {
    let keys = &state.gateway.api_keys;
    let (record, full_key) = keys.regenerate(&admin.tenant, &key_id).await?;
    let stats = keys.stats(&admin.tenant, &key_id).await?;
    tracing::info!(tenant = %admin.tenant.as_str(), key = %record.id, by = %admin.user_id, "API key regenerated");
    let body = serde_json::json!({
        "apiKey": response(record, stats),
        "fullKey": full_key,
    });
    Ok((no_store(), Json(body)).into_response())
}

pub(super) async fn delete(
    State(state): State<AppState>,
    admin: Admin,
    Path(key_id): Path<String>,
) -> Result<Response, ApiError> {
    state
        .gateway
        .api_keys
        .delete(&admin.tenant, &key_id)
        .await?;
    tracing::info!(tenant = %admin.tenant.as_str(), key = %key_id, by = %admin.user_id, "API key deleted");
    Ok(StatusCode::NO_CONTENT.into_response())
}
