//! The technician API under `/api` (OpenFrame's API service): every route here needs an
//! administrator of a tenant, which the gateway has already verified; handlers take [`Admin`]
//! and act on that tenant only.
//!
//! Here: `/api/me`, API keys, users, organizations, a device's status, SSO providers and the
//! audit trail. Invitations are identity's (`crate::identity::http`), scripts and the agent
//! registration secret management's, GraphQL is [`crate::graphql`].

mod api_keys;
mod audit_trail;
mod incidents;
mod notifications;
pub(crate) mod organizations;
mod sso;
mod tools;
mod users;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};

use crate::error::ApiError;
use crate::gateway::auth::Admin;
use crate::startup::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/me", get(me))
        .route("/api/incidents", get(incidents::list))
        .route("/api/incidents/{id}", get(incidents::get))
        .route(
            "/api/incidents/{id}/acknowledge",
            post(incidents::acknowledge),
        )
        .route("/api/incidents/{id}/resolve", post(incidents::resolve))
        .route(
            "/api/detection/settings",
            get(incidents::detection_settings).put(incidents::put_detection_settings),
        )
        .route("/api/notifications", get(notifications::list))
        .route("/api/notifications/read-all", post(notifications::read_all))
        .route("/api/notifications/{id}/read", post(notifications::read))
        .route(
            "/api/notifications/settings",
            get(notifications::settings).put(notifications::put_settings),
        )
        .merge(crate::assist::http::router())
        .route("/api/audit", get(audit_trail::list))
        .route("/api/audit/export", get(audit_trail::export))
        .route("/api/users", get(users::list))
        .route(
            "/api/users/{id}",
            get(users::get).put(users::update).delete(users::delete),
        )
        .route(
            "/api/users/{id}/transfer-ownership",
            post(users::transfer_ownership),
        )
        .route("/api/organizations", post(organizations::create))
        .route(
            "/api/organizations/{id}",
            get(organizations::get).put(organizations::update),
        )
        .route(
            "/api/organizations/{id}/can-archive",
            get(organizations::can_archive),
        )
        .route(
            "/api/organizations/{id}/status",
            patch(organizations::set_status),
        )
        .route(
            "/api/devices/{machine_id}",
            patch(organizations::set_device_status),
        )
        .route("/api/sso/providers", get(sso::enabled))
        .route("/api/sso/providers/available", get(sso::available))
        .route(
            "/api/sso/{provider}",
            get(sso::get)
                .post(sso::put)
                .put(sso::put)
                .delete(sso::delete),
        )
        .route("/api/sso/{provider}/toggle", patch(sso::toggle))
        .route("/api/tools", get(tools::list))
        .route(
            "/api/tools/{id}",
            get(tools::get).put(tools::put).delete(tools::delete),
        )
        .route("/api/api-keys", get(api_keys::list).post(api_keys::create))
        .route(
            "/api/api-keys/{key_id}",
            get(api_keys::get)
                .put(api_keys::update)
                .delete(api_keys::delete),
        )
        .route(
            "/api/api-keys/{key_id}/regenerate",
            post(api_keys::regenerate),
        )
}

/// The tenant of whoever the gateway let through, for handlers the technician API and the
/// external API share: an administrator's token on `/api`, an API key (with the path's scope)
/// on `/external-api`.
#[derive(Debug, Clone)]
pub struct CallerTenant(pub openframe_storage::TenantId);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for CallerTenant {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        if let Some(caller) = parts
            .extensions
            .get::<crate::gateway::api_keys::KeyCaller>()
        {
            return Ok(CallerTenant(caller.tenant().clone()));
        }
        let admin = Admin::from_request_parts(parts, state).await?;
        Ok(CallerTenant(admin.tenant))
    }
}

/// A JSON body of type `T`, or `T::default()` when the request has no body at all.
pub(crate) fn optional_json_body<T: serde::de::DeserializeOwned + Default>(
    headers: &HeaderMap,
    body: &[u8],
) -> Result<T, ApiError> {
    if body.is_empty() {
        Ok(T::default())
    } else {
        json_body(headers, body)
    }
}

/// A `status` query parameter: absent or empty for all, else one of `allowed`.
pub(crate) fn status_filter(
    status: Option<String>,
    allowed: &[&str],
) -> Result<Option<String>, ApiError> {
    match status.filter(|status| !status.is_empty()) {
        Some(status) if !allowed.contains(&status.as_str()) => Err(ApiError::InvalidInput(
            format!("status: {status:?} must be one of {}", allowed.join(", ")),
        )),
        status => Ok(status),
    }
}

/// A JSON body of type `T`; unknown fields and wrong types are named in the 400.
pub(crate) fn json_body<T: serde::de::DeserializeOwned>(
    headers: &HeaderMap,
    body: &[u8],
) -> Result<T, ApiError> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.to_ascii_lowercase().starts_with("application/json"));
    if !json {
        return Err(ApiError::InvalidInput(
            "send the body as JSON (Content-Type: application/json)".into(),
        ));
    }
    // Every body is an object: serde would also fill a struct from an array (`[null, null]`).
    if body.trim_ascii_start().first() != Some(&b'{') {
        return Err(ApiError::InvalidInput(
            "the JSON body must be an object ({\"field\": value, …})".into(),
        ));
    }
    serde_json::from_slice(body)
        .map_err(|error| ApiError::InvalidInput(format!("the JSON body is not valid: {error}")))
}

/// Unix milliseconds as RFC 3339 (OpenFrame's `Instant`); empty when out of range.
pub(crate) fn iso(millis: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000)
        .ok()
        .and_then(|at| {
            at.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// The administrator's name as the UI shows it: first and last name, else the email.
pub(crate) async fn display_name(state: &AppState, admin: &Admin) -> Result<String, ApiError> {
    let user = state
        .identity
        .store
        .user(&admin.tenant, &admin.user_id)
        .await
        .map_err(crate::identity::IdentityError::from)?
        .map(|user| user.record);
    Ok(user
        .map(|user| {
            format!("{} {}", user.first_name, user.last_name)
                .trim()
                .to_owned()
        })
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| admin.email.clone()))
}

/// OpenFrame's roles of an administrator (OWNER implies ADMIN).
pub(crate) fn roles(admin: &Admin) -> Vec<&'static str> {
    if admin.owner {
        vec!["ADMIN", "OWNER"]
    } else {
        vec!["ADMIN"]
    }
}

/// OpenFrame's `GET /api/me`: `{authenticated, user{id, email, displayName, roles, tenantId}}`.
async fn me(State(state): State<AppState>, admin: Admin) -> Result<Response, ApiError> {
    let display_name = display_name(&state, &admin).await?;
    let roles = roles(&admin);
    Ok(axum::Json(serde_json::json!({
        "authenticated": true,
        "user": {
            "id": admin.user_id,
            "email": admin.email,
            "displayName": display_name,
            "roles": roles,
            "tenantId": admin.tenant.as_str(),
        }
    }))
    .into_response())
}
