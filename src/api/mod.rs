//! The technician API under `/api` (OpenFrame's API service): every route here needs an
//! administrator of a tenant, which the gateway has already verified; handlers take [`Admin`]
//! and act on that tenant only.
//!
//! So far: `GET /api/me` and the API keys (`/api/api-keys`). GraphQL and the rest of the REST
//! surface arrive with the technician-API issue.

mod api_keys;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::error::ApiError;
use crate::gateway::auth::Admin;
use crate::startup::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/me", get(me))
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
