//! `/api/users`: the tenant's technicians (OpenFrame's `UserController`). List, read, rename,
//! delete, and hand the OWNER role to someone else.
//!
//! Deleting a user is soft, as OpenFrame's: the record stays (`status: DELETED`, so the audit
//! trail still names who did what), its sign-in sessions and refresh tokens are revoked at
//! once, and the email is freed for a new invitation. The owner cannot be deleted, and nobody
//! deletes themselves here.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::{iso, json_body};
use crate::audit::AuditChange;
use crate::error::ApiError;
use crate::gateway::auth::Admin;
use crate::identity::IdentityError;
use crate::identity::store::{UserRecord, Versioned};
use crate::startup::AppState;

/// OpenFrame's `UserResponse` (never the password hash).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct UserResponse {
    id: String,
    email: String,
    email_verified: bool,
    first_name: String,
    last_name: String,
    roles: Vec<String>,
    status: String,
    image: Option<String>,
    created_at: String,
    updated_at: String,
    last_login: Option<String>,
}

fn response(user: &UserRecord) -> UserResponse {
    UserResponse {
        id: user.id.clone(),
        email: user.email.clone(),
        email_verified: user.email_verified,
        first_name: user.first_name.clone(),
        last_name: user.last_name.clone(),
        roles: user.roles.clone(),
        status: user.status.clone(),
        image: None,
        created_at: iso(user.created_at),
        updated_at: iso(user.updated_at),
        last_login: user.last_login.map(iso),
    }
}

/// What the audit trail keeps of a user.
fn audited(user: &UserRecord) -> Option<serde_json::Value> {
    serde_json::to_value(response(user)).ok()
}

fn unavailable(error: impl Into<IdentityError>) -> ApiError {
    ApiError::from(error.into())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PageQuery {
    page: Option<String>,
    size: Option<String>,
}

fn number(
    name: &str,
    value: Option<&str>,
    default: usize,
    range: (usize, usize),
) -> Result<usize, ApiError> {
    let Some(text) = value else {
        return Ok(default);
    };
    text.parse::<usize>()
        .ok()
        .filter(|n| (range.0..=range.1).contains(n))
        .ok_or_else(|| {
            ApiError::InvalidInput(format!(
                "{name}: must be a number from {} to {}, got {text:?}",
                range.0, range.1
            ))
        })
}

/// `GET /api/users?page=0&size=20`: active users by email, as OpenFrame's `PageResponse`.
pub(super) async fn list(
    State(state): State<AppState>,
    admin: Admin,
    query: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|rejection| {
        ApiError::InvalidInput(format!(
            "query: {} (known: page, size)",
            rejection.body_text()
        ))
    })?;
    let page = number("page", query.page.as_deref(), 0, (0, 1_000_000))?;
    let size = number("size", query.size.as_deref(), 20, (1, 100))?;
    let mut users: Vec<UserRecord> = state
        .identity
        .store
        .users(&admin.tenant)
        .await
        .map_err(unavailable)?
        .into_iter()
        .map(|user| user.record)
        .filter(|user| user.status != "DELETED")
        .collect();
    users.sort_by(|a, b| a.email.cmp(&b.email));
    let total = users.len();
    let items: Vec<UserResponse> = users
        .iter()
        .skip(page.saturating_mul(size))
        .take(size)
        .map(response)
        .collect();
    Ok(Json(serde_json::json!({
        "items": items,
        "page": page,
        "size": size,
        "totalElements": total,
        "totalPages": total.div_ceil(size),
        "hasNext": (page + 1).saturating_mul(size) < total,
    }))
    .into_response())
}

/// A user of the caller's tenant that is not deleted.
async fn existing(
    state: &AppState,
    admin: &Admin,
    id: &str,
) -> Result<Versioned<UserRecord>, ApiError> {
    state
        .identity
        .store
        .user(&admin.tenant, id)
        .await
        .map_err(unavailable)?
        .filter(|user| user.record.status != "DELETED")
        .ok_or_else(|| ApiError::NotFound(format!("id: no user {id:?}")))
}

pub(super) async fn get(
    State(state): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let user = existing(&state, &admin, &id).await?;
    Ok(Json(response(&user.record)).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct UpdateUser {
    first_name: String,
    last_name: String,
}

fn check_name(field: &'static str, value: &str) -> Result<String, ApiError> {
    let value = value.trim();
    if value.is_empty() || value.chars().count() > 100 || value.chars().any(char::is_control) {
        return Err(ApiError::InvalidInput(format!(
            "{field}: must be 1 to 100 printable characters"
        )));
    }
    Ok(value.to_owned())
}

/// `PUT /api/users/{id}` with `{firstName, lastName}`.
pub(super) async fn update(
    State(state): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request: UpdateUser = json_body(&headers, &body)?;
    let first_name = check_name("firstName", &request.first_name)?;
    let last_name = check_name("lastName", &request.last_name)?;
    let mut user = existing(&state, &admin, &id).await?;
    let before = audited(&user.record);
    user.record.first_name = first_name;
    user.record.last_name = last_name;
    user.record.updated_at = state.identity.clock.now_ms();
    state
        .identity
        .store
        .replace_user(&admin.tenant, &user)
        .await
        .map_err(unavailable)?;
    Ok(AuditChange {
        target_type: "User",
        target_id: id,
        before,
        after: audited(&user.record),
    }
    .on(Json(response(&user.record)).into_response()))
}

/// `DELETE /api/users/{id}`: see the module documentation.
pub(super) async fn delete(
    State(state): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    if id == admin.user_id {
        return Err(ApiError::Conflict(
            "id: you cannot delete yourself; ask another administrator".into(),
        ));
    }
    let mut user = existing(&state, &admin, &id).await?;
    if user.record.roles.iter().any(|role| role == "OWNER") {
        return Err(ApiError::Conflict(
            "id: this user owns the tenant; transfer the ownership first".into(),
        ));
    }
    let before = audited(&user.record);
    user.record.status = "DELETED".into();
    user.record.updated_at = state.identity.clock.now_ms();
    user.record.tokens_not_before = user.record.updated_at;
    let store = &state.identity.store;
    // The status first: from here on no token or session of theirs is accepted.
    store
        .replace_user(&admin.tenant, &user)
        .await
        .map_err(unavailable)?;
    store
        .delete_sessions_of(&admin.tenant, &id)
        .await
        .map_err(unavailable)?;
    store
        .revoke_families_of(&admin.tenant, &id)
        .await
        .map_err(unavailable)?;
    store
        .release_email(&admin.tenant, &user.record.email)
        .await
        .map_err(unavailable)?;
    Ok(AuditChange {
        target_type: "User",
        target_id: id,
        before,
        after: audited(&user.record),
    }
    .on(StatusCode::NO_CONTENT.into_response()))
}

/// `POST /api/users/{id}/transfer-ownership`: the owner makes another active user the owner
/// and stays an administrator.
pub(super) async fn transfer_ownership(
    State(state): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    if !admin.owner {
        return Err(ApiError::Forbidden(
            "only the tenant's owner can transfer the ownership".into(),
        ));
    }
    if id == admin.user_id {
        return Err(ApiError::Conflict("id: you are the owner already".into()));
    }
    let mut heir = existing(&state, &admin, &id).await?;
    if !heir.record.is_active() {
        return Err(ApiError::Conflict(format!(
            "id: the user is {}; only an active user can own the tenant",
            heir.record.status
        )));
    }
    let mut owner = existing(&state, &admin, &admin.user_id).await?;
    let now = state.identity.clock.now_ms();
    let before = serde_json::json!({ "owner": owner.record.id });
    heir.record.roles = vec!["OWNER".into(), "ADMIN".into()];
    heir.record.updated_at = now;
    owner.record.roles.retain(|role| role != "OWNER");
    if !owner.record.roles.iter().any(|role| role == "ADMIN") {
        owner.record.roles.push("ADMIN".into());
    }
    owner.record.updated_at = now;
    let store = &state.identity.store;
    // The heir first: at every moment the tenant has an owner (briefly two, never none).
    store
        .replace_user(&admin.tenant, &heir)
        .await
        .map_err(unavailable)?;
    store
        .replace_user(&admin.tenant, &owner)
        .await
        .map_err(unavailable)?;
    Ok(AuditChange {
        target_type: "User",
        target_id: id,
        before: Some(before),
        after: Some(serde_json::json!({ "owner": heir.record.id })),
    }
    .on(Json(response(&heir.record)).into_response()))
}
