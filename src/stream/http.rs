//! The pipeline's HTTP edge: `POST /ingest/v1/debezium` for tools (API key with scope
//! `ingest`), and the dead-letter list and replay for admins under `/api/stream`.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use super::mappings::{MappingError, MappingOverride};
use serde::{Deserialize, Serialize};

use super::tools::MessageType;
use super::{
    DEAD_LETTER_CODE, DEAD_LETTER_REASON, DEAD_LETTER_SOURCE, IngestError, MESSAGE_TYPE_HEADER,
};
use crate::error::ApiError;
use crate::gateway::api_keys::KeyCaller;
use crate::gateway::auth::Admin;
use crate::startup::AppState;

/// How much of a dead letter's payload the list shows.
const PAYLOAD_PREVIEW_BYTES: usize = 4096;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/ingest/v1/debezium", post(ingest))
        .route("/api/stream/dead-letters", get(dead_letters))
        .route("/api/stream/dead-letters/replay", post(replay))
        .route(
            "/api/stream/mappings",
            get(list_mappings).put(put_mapping).delete(delete_mapping),
        )
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct IngestResponse<'a> {
    topic: &'a str,
    accepted: usize,
    skipped: usize,
    rejected: Vec<RejectedDto<'a>>,
}

#[derive(Serialize)]
struct RejectedDto<'a> {
    index: usize,
    code: &'a str,
    reason: &'a str,
}

/// `POST /ingest/v1/debezium`: one Debezium envelope, a JSON array of them, or NDJSON, with the
/// `message-type` header. 200 once every accepted event is durable; refused events are listed
/// with a reason (and kept in the dead-letter topic), so one bad event never blocks a connector.
async fn ingest(
    State(state): State<AppState>,
    caller: KeyCaller,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let message_type = match headers.get(MESSAGE_TYPE_HEADER).map(|value| value.to_str()) {
        None => {
            return Err(ApiError::InvalidInput(format!(
                "the message-type header is required: one of {}",
                MessageType::expected()
            )));
        }
        Some(Ok(name)) => MessageType::parse(name.trim()).ok_or_else(|| {
            ApiError::InvalidInput(format!(
                "message-type {name:?} is unknown: use one of {}",
                MessageType::expected()
            ))
        })?,
        Some(Err(_)) => {
            return Err(ApiError::InvalidInput(
                "the message-type header must be plain ASCII".into(),
            ));
        }
    };
    let ndjson = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|content_type| {
            let essence = content_type.split(';').next().unwrap_or("").trim();
            matches!(
                essence.to_ascii_lowercase().as_str(),
                "application/x-ndjson"
                    | "application/ndjson"
                    | "application/jsonl"
                    | "application/jsonlines"
            )
        });
    let report = state
        .stream
        .ingest(caller.tenant(), message_type, &body, ndjson)
        .await
        .map_err(|error| match error {
            IngestError::InvalidBody(message) => ApiError::InvalidInput(message),
            overloaded @ IngestError::Overloaded { .. } => {
                ApiError::Overloaded(overloaded.to_string())
            }
            IngestError::Unavailable(detail) => ApiError::StoreUnavailable(detail),
        })?;
    let response = IngestResponse {
        topic: report.topic,
        accepted: report.accepted,
        skipped: report.skipped,
        rejected: report
            .rejected
            .iter()
            .map(|rejected| RejectedDto {
                index: rejected.index,
                code: rejected.code,
                reason: &rejected.reason,
            })
            .collect(),
    };
    Ok(axum::Json(response).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    limit: Option<usize>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DeadLetterDto {
    offset: u64,
    appended_at: i64,
    message_type: String,
    source_topic: String,
    code: String,
    reason: String,
    /// The start of the event as text, for a person to see what was wrong with it.
    payload: String,
    payload_bytes: usize,
}

/// `GET /api/stream/dead-letters?limit=N` (ADMIN): events the pipeline could not use, oldest
/// first, that have not been replayed.
async fn dead_letters(
    State(state): State<AppState>,
    admin: Admin,
    Query(query): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::InvalidInput(format!(
            "limit must be 1 to 1000, not {limit}"
        )));
    }
    let (records, pending) = state
        .stream
        .dead_letters(&admin.tenant, limit)
        .await
        .map_err(|error| ApiError::StoreUnavailable(error.to_string()))?;
    let header = |record: &openframe_storage::log::NewRecord, name: &str| {
        record
            .header(name)
            .map(|value| String::from_utf8_lossy(value).into_owned())
            .unwrap_or_default()
    };
    let items: Vec<DeadLetterDto> = records
        .iter()
        .map(|stored| {
            let value = &stored.record.value;
            let preview = value
                .get(..value.len().min(PAYLOAD_PREVIEW_BYTES))
                .unwrap_or_default();
            DeadLetterDto {
                offset: stored.offset.0,
                appended_at: stored.appended_at,
                message_type: header(&stored.record, MESSAGE_TYPE_HEADER),
                source_topic: header(&stored.record, DEAD_LETTER_SOURCE),
                code: header(&stored.record, DEAD_LETTER_CODE),
                reason: header(&stored.record, DEAD_LETTER_REASON),
                payload: String::from_utf8_lossy(preview).into_owned(),
                payload_bytes: value.len(),
            }
        })
        .collect();
    Ok(axum::Json(serde_json::json!({ "pending": pending, "items": items })).into_response())
}

/// `POST /api/stream/dead-letters/replay` (ADMIN): puts every pending dead letter back on its
/// topic, for the pipeline to try again.
async fn replay(State(state): State<AppState>, admin: Admin) -> Result<Response, ApiError> {
    let replayed = state
        .stream
        .replay_dead_letters(&admin.tenant)
        .await
        .map_err(|error| ApiError::StoreUnavailable(error.to_string()))?;
    tracing::info!(tenant = %admin.tenant, user = %admin.user_id, replayed, "dead letters replayed");
    Ok(axum::Json(serde_json::json!({ "replayed": replayed })).into_response())
}

impl From<MappingError> for ApiError {
    fn from(error: MappingError) -> Self {
        match error {
            MappingError::Invalid(invalid) => ApiError::InvalidInput(invalid.to_string()),
            too_many @ MappingError::TooMany => ApiError::Conflict(too_many.to_string()),
            MappingError::Unavailable(detail) => ApiError::StoreUnavailable(detail),
        }
    }
}

/// A mapping override on the wire.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct MappingDto {
    tool: String,
    source_event_type: String,
    event_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    severity: Option<String>,
}

impl From<&MappingOverride> for MappingDto {
    fn from(entry: &MappingOverride) -> Self {
        MappingDto {
            tool: entry.tool.clone(),
            source_event_type: entry.source_event_type.clone(),
            event_type: entry.event_type.name.to_owned(),
            severity: entry.severity.map(|severity| severity.as_str().to_owned()),
        }
    }
}

/// `GET /api/stream/mappings` (ADMIN): the tenant's event-type overrides.
async fn list_mappings(State(state): State<AppState>, admin: Admin) -> Result<Response, ApiError> {
    let overrides = state.stream.mappings().list(&admin.tenant).await?;
    let overrides: Vec<MappingDto> = overrides.iter().map(MappingDto::from).collect();
    Ok(axum::Json(serde_json::json!({ "overrides": overrides })).into_response())
}

/// `PUT /api/stream/mappings` (ADMIN): adds or replaces the override of one tool event type.
/// It applies to events processed from now on.
async fn put_mapping(
    State(state): State<AppState>,
    admin: Admin,
    axum::Json(body): axum::Json<MappingDto>,
) -> Result<Response, ApiError> {
    let entry = MappingOverride::parse(
        &body.tool,
        &body.source_event_type,
        &body.event_type,
        body.severity.as_deref(),
    )
    .map_err(|invalid| ApiError::InvalidInput(invalid.to_string()))?;
    state
        .stream
        .mappings()
        .put(&admin.tenant, entry.clone())
        .await?;
    tracing::info!(tenant = %admin.tenant, user = %admin.user_id, tool = %entry.tool,
        source_event_type = %entry.source_event_type, event_type = entry.event_type.name, "event-type mapping set");
    Ok(axum::Json(MappingDto::from(&entry)).into_response())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct MappingKey {
    tool: String,
    source_event_type: String,
}

/// `DELETE /api/stream/mappings?tool=…&sourceEventType=…` (ADMIN): back to the built-in table.
async fn delete_mapping(
    State(state): State<AppState>,
    admin: Admin,
    Query(key): Query<MappingKey>,
) -> Result<Response, ApiError> {
    if state
        .stream
        .mappings()
        .delete(&admin.tenant, &key.tool, &key.source_event_type)
        .await?
    {
        Ok(axum::http::StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::NotFound(format!(
            "there is no override for {}:{}",
            key.tool, key.source_event_type
        )))
    }
}
