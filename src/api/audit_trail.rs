//! `/api/audit`: the tenant's audit trail, paged newest first, and `/api/audit/export`, all of
//! it as NDJSON (one record per line), streamed so a long trail never sits in memory.

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::audit::{AuditFilter, AuditRecord};
use crate::error::ApiError;
use crate::gateway::auth::Admin;
use crate::graphql::audit::is_record_id;
use crate::startup::AppState;

/// The largest page.
const MAX_LIMIT: usize = 500;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct AuditQuery {
    limit: Option<String>,
    cursor: Option<String>,
    actor_id: Option<String>,
    action: Option<String>,
    target_type: Option<String>,
    target_id: Option<String>,
}

fn unavailable(error: impl std::fmt::Display) -> ApiError {
    ApiError::StoreUnavailable(error.to_string())
}

/// `GET /api/audit?limit=&cursor=&actorId=&action=&targetType=&targetId=` →
/// `{items: [...], nextCursor}`.
pub(super) async fn list(
    State(state): State<AppState>,
    admin: Admin,
    query: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|rejection| {
        ApiError::InvalidInput(format!(
            "query: {} (known: limit, cursor, actorId, action, targetType, targetId)",
            rejection.body_text()
        ))
    })?;
    let limit = match query.limit.as_deref() {
        None => 50,
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|limit| (1..=MAX_LIMIT).contains(limit))
            .ok_or_else(|| {
                ApiError::InvalidInput(format!(
                    "limit: must be a number from 1 to {MAX_LIMIT}, got {text:?}"
                ))
            })?,
    };
    if let Some(cursor) = &query.cursor
        && !is_record_id(cursor)
    {
        return Err(ApiError::InvalidInput(format!(
            "cursor: {cursor:?} is not a nextCursor this list returned"
        )));
    }
    let filter = AuditFilter {
        actor_id: query.actor_id,
        action: query.action,
        target_type: query.target_type,
        target_id: query.target_id,
    };
    let page = state
        .audit
        .page(&admin.tenant, &filter, query.cursor.as_deref(), limit)
        .await
        .map_err(unavailable)?;
    Ok(Json(serde_json::json!({
        "items": page.records,
        "nextCursor": page.next,
    }))
    .into_response())
}

/// `GET /api/audit/export`: every record, newest first, one JSON object per line.
pub(super) async fn export(State(state): State<AppState>, admin: Admin) -> Response {
    let pages = futures_util::stream::unfold(
        (state, admin, None::<String>, false),
        |(state, admin, cursor, done)| async move {
            if done {
                return None;
            }
            let page = state
                .audit
                .page(
                    &admin.tenant,
                    &AuditFilter::default(),
                    cursor.as_deref(),
                    1000,
                )
                .await;
            match page {
                Ok(page) => {
                    let lines = ndjson(&page.records);
                    let done = page.next.is_none();
                    Some((Ok(lines), (state, admin, page.next, done)))
                }
                Err(error) => {
                    tracing::error!(%error, "the audit export stopped: a store read failed");
                    // The stream ends with an error, so the client sees a broken transfer
                    // rather than a silently short file.
                    Some((
                        Err(std::io::Error::other(error.to_string())),
                        (state, admin, None, true),
                    ))
                }
            }
        },
    );
    (
        [
            (header::CONTENT_TYPE, "application/x-ndjson"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"openframe-audit.ndjson\"",
            ),
            (header::CACHE_CONTROL, "no-store"),
        ],
        Body::from_stream(pages),
    )
        .into_response()
}

fn ndjson(records: &[AuditRecord]) -> Bytes {
    let mut out = Vec::new();
    for record in records {
        if serde_json::to_writer(&mut out, record).is_ok() {
            out.push(b'\n');
        }
    }
    Bytes::from(out)
}
