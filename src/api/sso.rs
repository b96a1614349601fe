//! `/api/sso`: the tenant's single sign-on providers (OpenFrame's `SSOConfigController`).
//! Google and Microsoft by name, or any OpenID Connect issuer. The client secret is write-only:
//! it is sealed at rest and no answer carries it (`hasClientSecret` says it is there). A CA file
//! for a private issuer is a path on the server, so only the CLI (`openframe sso set`) sets it.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::json_body;
use crate::audit::AuditChange;
use crate::error::ApiError;
use crate::gateway::auth::Admin;
use crate::identity::sso::{NewSso, SsoConfig};
use crate::startup::AppState;

/// Providers known by name: (slug, display name).
const AVAILABLE: [(&str, &str); 2] = [("google", "Google SSO"), ("microsoft", "Microsoft SSO")];

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct SsoResponse {
    provider: String,
    display_name: String,
    issuer: String,
    client_id: String,
    has_client_secret: bool,
    allowed_domains: Vec<String>,
    auto_provision_users: bool,
    enabled: bool,
}

fn response(config: &SsoConfig) -> SsoResponse {
    SsoResponse {
        provider: config.provider.clone(),
        display_name: config.display_name.clone(),
        issuer: config.issuer.clone(),
        client_id: config.client_id.clone(),
        has_client_secret: !config.client_secret_sealed.is_empty(),
        allowed_domains: config.allowed_domains.clone(),
        auto_provision_users: config.auto_provision_users,
        enabled: config.enabled,
    }
}

fn snapshot(config: &SsoConfig) -> Option<serde_json::Value> {
    serde_json::to_value(response(config)).ok()
}

/// The tenant's provider, or `not_found`.
async fn configured(
    state: &AppState,
    admin: &Admin,
    provider: &str,
) -> Result<SsoConfig, ApiError> {
    state
        .identity
        .sso(&admin.tenant, provider)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("provider: {provider:?} is not configured")))
}

/// `GET /api/sso/providers`: the enabled providers.
pub(super) async fn enabled(
    State(state): State<AppState>,
    admin: Admin,
) -> Result<Response, ApiError> {
    let configs = state.identity.sso_configs(&admin.tenant).await?;
    let enabled: Vec<SsoResponse> = configs
        .iter()
        .filter(|config| config.enabled)
        .map(response)
        .collect();
    Ok(Json(enabled).into_response())
}

/// `GET /api/sso/providers/available`: what can be configured.
pub(super) async fn available(_admin: Admin) -> Response {
    let mut providers: Vec<serde_json::Value> = AVAILABLE
        .iter()
        .map(|(provider, name)| serde_json::json!({ "provider": provider, "displayName": name }))
        .collect();
    providers.push(serde_json::json!({
        "provider": "<your-slug>",
        "displayName": "Any OpenID Connect provider (give its issuer)",
    }));
    Json(providers).into_response()
}

pub(super) async fn get(
    State(state): State<AppState>,
    admin: Admin,
    Path(provider): Path<String>,
) -> Result<Response, ApiError> {
    let config = configured(&state, &admin, &provider).await?;
    Ok(Json(response(&config)).into_response())
}

/// OpenFrame's `SSOConfigRequest`, plus `issuer` and `displayName` for other providers.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SsoRequest {
    client_id: String,
    /// Required when the provider is new; left out, the stored secret stays.
    #[serde(default)]
    client_secret: Option<String>,
    #[serde(default)]
    auto_provision_users: bool,
    #[serde(default)]
    ms_tenant_id: Option<String>,
    allowed_domains: Vec<String>,
    #[serde(default)]
    issuer: Option<String>,
    #[serde(default)]
    display_name: Option<String>,
}

/// The issuer for a provider: Google's and Microsoft's by name, else the request's.
fn issuer(provider: &str, request: &SsoRequest) -> Result<String, ApiError> {
    match provider {
        "google" => Ok("https://accounts.google.com".into()),
        "microsoft" => {
            let tenant = request
                .ms_tenant_id
                .as_deref()
                .map(str::trim)
                .filter(|id| {
                    !id.is_empty()
                        && id.len() <= 64
                        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
                })
                .ok_or_else(|| {
                    ApiError::InvalidInput(
                        "msTenantId: your Microsoft Entra tenant id (a GUID or domain) is required"
                            .into(),
                    )
                })?;
            Ok(format!("https://login.microsoftonline.com/{tenant}/v2.0"))
        }
        _ => request
            .issuer
            .clone()
            .filter(|issuer| !issuer.trim().is_empty())
            .ok_or_else(|| {
                ApiError::InvalidInput(format!(
                    "issuer: {provider:?} is not google or microsoft, so give its OpenID Connect issuer URL"
                ))
            }),
    }
}

/// `POST` and `PUT /api/sso/{provider}`: adds or replaces the provider.
pub(super) async fn put(
    State(state): State<AppState>,
    admin: Admin,
    Path(provider): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request: SsoRequest = json_body(&headers, &body)?;
    let issuer = issuer(&provider, &request)?;
    let before = state.identity.sso(&admin.tenant, &provider).await?;
    let display_name = request.display_name.clone().unwrap_or_else(|| {
        AVAILABLE
            .iter()
            .find(|(slug, _)| *slug == provider)
            .map_or_else(|| provider.clone(), |(_, name)| (*name).to_owned())
    });
    let config = state
        .identity
        .set_sso(
            &admin.tenant,
            NewSso {
                provider: provider.clone(),
                display_name,
                issuer,
                client_id: request.client_id.trim().to_owned(),
                client_secret: request.client_secret.unwrap_or_default(),
                allowed_domains: request.allowed_domains,
                auto_provision_users: request.auto_provision_users,
                ca_file: before
                    .as_ref()
                    .map(|config| config.ca_file.clone())
                    .unwrap_or_default(),
            },
        )
        .await?;
    let status = if before.is_some() {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok(AuditChange {
        target_type: "SsoProvider",
        target_id: provider,
        before: before.as_ref().and_then(snapshot),
        after: snapshot(&config),
    }
    .on((status, Json(response(&config))).into_response()))
}

pub(super) async fn delete(
    State(state): State<AppState>,
    admin: Admin,
    Path(provider): Path<String>,
) -> Result<Response, ApiError> {
    let before = configured(&state, &admin, &provider).await?;
    state.identity.delete_sso(&admin.tenant, &provider).await?;
    Ok(AuditChange {
        target_type: "SsoProvider",
        target_id: provider,
        before: snapshot(&before),
        after: None,
    }
    .on(StatusCode::NO_CONTENT.into_response()))
}

/// `PATCH /api/sso/{provider}/toggle`: on becomes off and off on.
pub(super) async fn toggle(
    State(state): State<AppState>,
    admin: Admin,
    Path(provider): Path<String>,
) -> Result<Response, ApiError> {
    let before = configured(&state, &admin, &provider).await?;
    let config = state
        .identity
        .set_sso_enabled(&admin.tenant, &provider, !before.enabled)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("provider: {provider:?} is not configured")))?;
    Ok(AuditChange {
        target_type: "SsoProvider",
        target_id: provider,
        before: Some(serde_json::json!({ "enabled": before.enabled })),
        after: Some(serde_json::json!({ "enabled": config.enabled })),
    }
    .on(Json(response(&config)).into_response()))
}
