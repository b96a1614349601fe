//! `/api/notifications`: the signed-in technician's notifications and settings.
//!
//! - `GET /api/notifications?unread=true`: newest first (at most 100), each with `read` for
//!   the caller, and the caller's `unread` count.
//! - `POST /api/notifications/{id}/read`, `POST /api/notifications/read-all`.
//! - `GET`/`PUT /api/notifications/settings`: `{email, minSeverity, mutedCategories}`.
//!
//! New notifications arrive live on GraphQL's `notificationStream`. Marking read is one
//! person's reading state, not a change to the tenant: the audit trail leaves it out.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::json_body;
use crate::audit::{AuditChange, Unchanged};
use crate::error::ApiError;
use crate::gateway::auth::Admin;
use crate::notify::{Category, Settings, Severity};
use crate::startup::AppState;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListQuery {
    #[serde(default)]
    unread: Option<bool>,
}

pub(super) async fn list(
    State(state): State<AppState>,
    admin: Admin,
    Query(query): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let (notifications, unread) = state
        .notifications
        .list(&admin.tenant, &admin.user_id, query.unread.unwrap_or(false))
        .await?;
    Ok(Json(json!({"notifications": notifications, "unread": unread})).into_response())
}

pub(super) async fn read(
    State(state): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (_, notification) = state
        .notifications
        .mark_read(&admin.tenant, &admin.user_id, Some(&id))
        .await?;
    Ok(Unchanged.on(Json(notification).into_response()))
}

pub(super) async fn read_all(
    State(state): State<AppState>,
    admin: Admin,
) -> Result<Response, ApiError> {
    let (marked, _) = state
        .notifications
        .mark_read(&admin.tenant, &admin.user_id, None)
        .await?;
    Ok(Unchanged.on(Json(json!({"marked": marked})).into_response()))
}

pub(super) async fn settings(
    State(state): State<AppState>,
    admin: Admin,
) -> Result<Response, ApiError> {
    let settings = state
        .notifications
        .settings(&admin.tenant, &admin.user_id)
        .await?;
    Ok(Json(settings).into_response())
}

pub(super) async fn put_settings(
    State(state): State<AppState>,
    admin: Admin,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let body: Value = json_body(&headers, &body)?;
    let settings = parse_settings(&body)?;
    let before = state
        .notifications
        .settings(&admin.tenant, &admin.user_id)
        .await?;
    let stored = state
        .notifications
        .set_settings(&admin.tenant, &admin.user_id, settings)
        .await?;
    let change = AuditChange {
        target_type: "NotificationSettings",
        target_id: admin.user_id.clone(),
        before: Some(json!(before)),
        after: Some(json!(stored)),
    };
    Ok(change.on(Json(stored).into_response()))
}

/// Settings from a body, each field checked with its name in the error.
fn parse_settings(body: &Value) -> Result<Settings, ApiError> {
    let invalid = |message: String| ApiError::InvalidInput(message);
    if let Some(unknown) = body.as_object().and_then(|object| {
        object
            .keys()
            .find(|key| !matches!(key.as_str(), "email" | "minSeverity" | "mutedCategories"))
    }) {
        return Err(invalid(format!(
            "{unknown}: not a setting; send email, minSeverity and mutedCategories"
        )));
    }
    let email = body["email"]
        .as_bool()
        .ok_or_else(|| invalid("email: true or false".to_owned()))?;
    let min_severity = body["minSeverity"]
        .as_str()
        .and_then(Severity::parse)
        .ok_or_else(|| {
            invalid(format!(
                "minSeverity: must be one of {}",
                Severity::NAMES.join(", ")
            ))
        })?;
    let listed = body["mutedCategories"]
        .as_array()
        .ok_or_else(|| invalid("mutedCategories: a list of categories".to_owned()))?;
    let mut muted_categories = Vec::new();
    for value in listed {
        let category = value.as_str().and_then(Category::parse).ok_or_else(|| {
            invalid(format!(
                "mutedCategories: {value} is not one of {}",
                Category::NAMES.join(", ")
            ))
        })?;
        if !muted_categories.contains(&category) {
            muted_categories.push(category);
        }
    }
    Ok(Settings {
        email,
        min_severity,
        muted_categories,
    })
}
