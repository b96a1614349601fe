//! `/external-api/api/v1/logs`: the unified log (OpenFrame's Pinot list and Cassandra details),
//! with the same filters, search and keyset paging as GraphQL's `logs`, `logFilters` and
//! `logDetails`, reached with an API key.

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};

use super::openapi::LogPage;
use super::params::{Params, as_parameter};
use crate::error::ApiError;
use crate::gateway::api_keys::KeyCaller;
use crate::graphql::logs::{self, DetailsKey, LogDetails, LogEvent, LogFilterInput, LogFilters};
use crate::graphql::relay::PageInfo;
use crate::startup::AppState;

const FILTERS: &[&str] = &[
    "startDate",
    "endDate",
    "toolTypes",
    "eventTypes",
    "severities",
    "organizationIds",
    "deviceId",
    "search",
];

/// OpenFrame's names of the one sortable column, the event's time.
const SORT_FIELDS: &[&str] = &["eventTimestamp", "timestamp"];

/// GraphQL's filter from the query parameters (values are matched as given, as OpenFrame does).
fn filter(params: &Params) -> Result<LogFilterInput, ApiError> {
    Ok(LogFilterInput {
        start_date: params.one("startDate")?,
        end_date: params.one("endDate")?,
        timestamp_from: None,
        timestamp_to: None,
        event_types: params.list("eventTypes")?,
        tool_types: params.list("toolTypes")?,
        severities: params.list("severities")?,
        organization_ids: params.list("organizationIds")?,
        device_id: params.one("deviceId")?,
    })
}

/// The storage filter of the filter and search parameters, with GraphQL's argument paths
/// renamed to the parameters.
async fn storage_filter(
    state: &AppState,
    caller: &KeyCaller,
    params: &Params,
) -> Result<openframe_storage::analytics::LogFilter, ApiError> {
    logs::storage_filter(
        state,
        caller.tenant(),
        Some(filter(params)?),
        params.one("search")?,
    )
    .await
    .map_err(as_parameter)
}

#[utoipa::path(
    get,
    path = "/external-api/api/v1/logs",
    tag = "logs",
    operation_id = "listLogs",
    params(
        super::openapi::LogFilterParams,
        ("limit" = Option<i32>, Query, minimum = 1, maximum = 100, description = "Rows a page (default 20)"),
        ("cursor" = Option<String>, Query, description = "A page's `pageInfo.endCursor`"),
        ("sortField" = Option<super::openapi::LogSortField>, Query),
        ("sortDirection" = Option<super::openapi::SortDirection>, Query, description = "Default `DESC`, newest first"),
    ),
    responses((status = 200, description = "A page of the log", body = LogPage)),
    security(("ApiKeyAuth" = ["logs:read"])),
)]
/// `GET /logs?startDate&endDate&toolTypes&eventTypes&severities&organizationIds&deviceId
/// &search&limit&cursor&sortField&sortDirection` → `{logs, pageInfo, filteredCount}`; newest
/// first unless `sortDirection=ASC`. Dates are UTC days (`yyyy-MM-dd`, both ends included).
pub(super) async fn list(
    State(state): State<AppState>,
    caller: KeyCaller,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let mut known = FILTERS.to_vec();
    known.extend(["limit", "cursor", "sortField", "sortDirection"]);
    let params = Params::parse(query.as_deref(), &known)?;
    if let Some(field) = params.one("sortField")?
        && !SORT_FIELDS.contains(&field.as_str())
    {
        return Err(ApiError::InvalidInput(format!(
            "sortField: {field:?} is not sortable (one of {})",
            SORT_FIELDS.join(", ")
        )));
    }
    let newest_first = !params.ascending(false)?;
    let limit = usize::try_from(params.limit()?).unwrap_or(1);
    let cursor = params
        .cursor()?
        .map(|cursor| logs::decode_cursor("cursor", &cursor))
        .transpose()
        .map_err(|error| ApiError::InvalidInput(error.message))?;
    let filter = storage_filter(&state, &caller, &params).await?;
    let (rows, more, total) = logs::read_logs(
        &state,
        caller.tenant(),
        &filter,
        cursor.as_ref(),
        newest_first,
        limit,
    )
    .await?;
    let rows: Vec<LogEvent> = rows.into_iter().map(LogEvent::from).collect();
    let page_info = PageInfo {
        has_next_page: more,
        has_previous_page: cursor.is_some(),
        start_cursor: rows.first().map(LogEvent::cursor),
        end_cursor: rows.last().map(LogEvent::cursor),
    };
    Ok(Json(LogPage {
        logs: rows.into_iter().map(LogEvent::into_json).collect(),
        page_info,
        filtered_count: total,
    })
    .into_response())
}

#[utoipa::path(
    get,
    path = "/external-api/api/v1/logs/filters",
    tag = "logs",
    operation_id = "logFilters",
    params(
        super::openapi::LogFilterParams,
    ),
    responses((status = 200, description = "The values present, with counts", body = LogFilters)),
    security(("ApiKeyAuth" = ["logs:read"])),
)]
/// `GET /logs/filters` (the list's filter parameters) → the values present, with counts.
pub(super) async fn filters(
    State(state): State<AppState>,
    caller: KeyCaller,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let params = Params::parse(query.as_deref(), FILTERS)?;
    let filter = storage_filter(&state, &caller, &params).await?;
    let facets = logs::log_filters_of(&state, caller.tenant(), &filter).await?;
    Ok(Json(facets).into_response())
}

#[utoipa::path(
    get,
    path = "/external-api/api/v1/logs/details",
    tag = "logs",
    operation_id = "logDetails",
    params(
        ("ingestDay" = String, Query, format = Date, min_length = 1),
        ("toolType" = String, Query, min_length = 1),
        ("eventType" = String, Query, min_length = 1),
        ("timestamp" = String, Query, min_length = 1, description = "RFC 3339, or epoch milliseconds"),
        ("toolEventId" = String, Query, min_length = 1),
    ),
    responses(
        (status = 200, description = "The entry in full", body = LogDetails),
        (status = 404, description = "No entry of the tenant has this key", body = crate::error::ErrorBody),
    ),
    security(("ApiKeyAuth" = ["logs:read"])),
)]
/// `GET /logs/details?ingestDay&toolType&eventType&timestamp&toolEventId` → one entry in full
/// (its message and the tool's details). `timestamp` is RFC 3339 or epoch milliseconds (the
/// first half of a log id); an entry the key does not name is a 404.
pub(super) async fn details(
    State(state): State<AppState>,
    caller: KeyCaller,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    const KEY: [&str; 5] = [
        "ingestDay",
        "toolType",
        "eventType",
        "timestamp",
        "toolEventId",
    ];
    let params = Params::parse(query.as_deref(), &KEY)?;
    let required = |name: &str| -> Result<String, ApiError> {
        params.one(name)?.ok_or_else(|| {
            ApiError::InvalidInput(format!(
                "{name}: required (a log entry is named by {})",
                KEY.join(", ")
            ))
        })
    };
    let timestamp = required("timestamp")?;
    let timestamp = match timestamp.parse::<i64>() {
        Ok(millis) if millis >= 0 => millis,
        _ => crate::graphql::logs::parse_instant("timestamp", &timestamp)
            .map_err(|error| ApiError::InvalidInput(error.message))?,
    };
    let key = DetailsKey {
        ingest_day: required("ingestDay")?,
        tool_type: required("toolType")?,
        event_type: required("eventType")?,
        timestamp,
        tool_event_id: required("toolEventId")?,
    };
    match logs::details_of(&state, caller.tenant(), key).await? {
        Some(details) => Ok(Json(details).into_response()),
        None => Err(ApiError::NotFound(
            "no log entry of this tenant has this key".into(),
        )),
    }
}
