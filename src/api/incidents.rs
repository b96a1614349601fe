//! `/api/incidents` and `/api/detection/settings`: what detection found, grouped, and the
//! thresholds it uses for this tenant.
//!
//! - `GET /api/incidents?status=OPEN|ACKNOWLEDGED|RESOLVED`: newest activity first, without
//!   timelines. `GET /api/incidents/{id}`: one, with its timeline.
//! - `POST /api/incidents/{id}/acknowledge`: 409 once resolved; again is a no-op.
//! - `POST /api/incidents/{id}/resolve` `{note?}`: 409 when already resolved.
//! - `GET /api/detection/settings`: `{effective, overrides, defaults}`.
//!   `PUT /api/detection/settings` `{overrides: {key: number}}`: replaces the overrides.
//!
//! Changes are audited with the object before and after.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{json_body, optional_json_body, status_filter};
use crate::audit::AuditChange;
use crate::error::ApiError;
use crate::gateway::auth::Admin;
use crate::startup::AppState;

/// The longest resolution note.
const MAX_NOTE: usize = 2000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListQuery {
    #[serde(default)]
    status: Option<String>,
}

pub(super) async fn list(
    State(state): State<AppState>,
    admin: Admin,
    Query(query): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let status = status_filter(query.status, &["OPEN", "ACKNOWLEDGED", "RESOLVED"])?;
    let incidents = state
        .incidents
        .list(&admin.tenant, status.as_deref())
        .await?;
    Ok(Json(json!({"incidents": incidents})).into_response())
}

pub(super) async fn get(
    State(state): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    Ok(Json(state.incidents.get(&admin.tenant, &id).await?).into_response())
}

fn changed(
    before: impl serde::Serialize,
    after: impl serde::Serialize,
    id: String,
    kind: &'static str,
) -> impl FnOnce(Response) -> Response {
    let change = AuditChange {
        target_type: kind,
        target_id: id,
        before: Some(json!(before)),
        after: Some(json!(after)),
    };
    move |response| change.on(response)
}

pub(super) async fn acknowledge(
    State(state): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (before, after) = state
        .incidents
        .acknowledge(&admin.tenant, &id, &admin.email)
        .await?;
    if before == after {
        return Ok(crate::audit::Unchanged.on(Json(after).into_response()));
    }
    let audited = changed(before.summary(), after.summary(), id, "Incident");
    Ok(audited(Json(after).into_response()))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResolveBody {
    #[serde(default)]
    note: Option<String>,
}

pub(super) async fn resolve(
    State(state): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let body: ResolveBody = optional_json_body(&headers, &body)?;
    let note = body
        .note
        .map(|note| note.trim().to_owned())
        .filter(|note| !note.is_empty());
    if note
        .as_ref()
        .is_some_and(|note| note.chars().count() > MAX_NOTE)
    {
        return Err(ApiError::InvalidInput(format!(
            "note: at most {MAX_NOTE} characters"
        )));
    }
    let (before, after) = state
        .incidents
        .resolve(&admin.tenant, &id, &admin.email, note)
        .await?;
    let audited = changed(before.summary(), after.summary(), id, "Incident");
    Ok(audited(Json(after).into_response()))
}

pub(super) async fn detection_settings(
    State(state): State<AppState>,
    admin: Admin,
) -> Result<Response, ApiError> {
    Ok(Json(state.detection_settings.describe(&admin.tenant).await?).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SettingsBody {
    overrides: Map<String, Value>,
}

pub(super) async fn put_detection_settings(
    State(state): State<AppState>,
    admin: Admin,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let body: SettingsBody = json_body(&headers, &body)?;
    let (before, after) = state
        .detection_settings
        .set(&admin.tenant, body.overrides)
        .await?;
    let audited = changed(
        before["overrides"].clone(),
        after["overrides"].clone(),
        "detection_settings".to_owned(),
        "DetectionSettings",
    );
    Ok(audited(Json(after).into_response()))
}
