//! `/external-api/api/v1/events`: generic application events (OpenFrame's `Event`), with the
//! same filters, search, paging and rules as GraphQL's `events`, reached with an API key.
//! Events an integrator records without a `userId` are the key creator's.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::openapi::EventPage;
use super::params::{Params, as_parameter};
use crate::audit::AuditChange;
use crate::error::ApiError;
use crate::events::EventInput;
use crate::gateway::api_keys::KeyCaller;
use crate::graphql::events::{self, EventFilterInput, EventSortField, Selection};
use crate::graphql::relay::PageArgs;
use crate::startup::AppState;

const FILTERS: &[&str] = &["userIds", "eventTypes", "startDate", "endDate", "search"];

fn selection(params: &Params) -> Result<Selection, ApiError> {
    let filter = EventFilterInput {
        user_ids: params.list("userIds")?,
        event_types: params.list("eventTypes")?,
        start_date: params.one("startDate")?,
        end_date: params.one("endDate")?,
    };
    Selection::new(Some(filter), params.one("search")?)
        .map_err(|error| as_parameter(ApiError::InvalidInput(error.message)))
}

#[utoipa::path(
    get,
    path = "/external-api/api/v1/events",
    tag = "events",
    operation_id = "listEvents",
    params(
        super::openapi::EventFilterParams,
        ("limit" = Option<i32>, Query, minimum = 1, maximum = 100),
        ("cursor" = Option<String>, Query),
        ("sortField" = Option<EventSortField>, Query),
        ("sortDirection" = Option<super::openapi::SortDirection>, Query, description = "Default `ASC`"),
    ),
    responses((status = 200, description = "A page of events", body = EventPage)),
    security(("ApiKeyAuth" = ["events:read"])),
)]
/// `GET /events?userIds&eventTypes&startDate&endDate&search&limit&cursor&sortField
/// &sortDirection` → `{events, pageInfo, filteredCount}`; oldest first unless sorted otherwise
/// (`sortField` `TIMESTAMP`, `TYPE` or `USER_ID`; `sortDirection` default `ASC`, as OpenFrame).
pub(super) async fn list(
    State(state): State<AppState>,
    caller: KeyCaller,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let mut known = FILTERS.to_vec();
    known.extend(["limit", "cursor", "sortField", "sortDirection"]);
    let params = Params::parse(query.as_deref(), &known)?;
    let selection = selection(&params)?;
    let field =
        match params.enums::<EventSortField>("sortField", &["TIMESTAMP", "TYPE", "USER_ID"])? {
            None => EventSortField::Timestamp,
            Some(fields) => match fields.as_slice() {
                [field] => *field,
                _ => {
                    return Err(ApiError::InvalidInput(
                        "sortField: give one of TIMESTAMP, TYPE, USER_ID".into(),
                    ));
                }
            },
        };
    let args = PageArgs {
        first: Some(params.limit()?),
        after: params.cursor()?,
        ..PageArgs::default()
    };
    let page = events::page_of_events(
        &state,
        caller.tenant(),
        &selection,
        field,
        params.ascending(true)?,
        &args,
    )
    .await?;
    Ok(Json(EventPage {
        events: page.rows.iter().map(|(_, event)| event).collect(),
        page_info: page.info,
        filtered_count: page.filtered_count,
    })
    .into_response())
}

#[utoipa::path(
    get,
    path = "/external-api/api/v1/events/filters",
    tag = "events",
    operation_id = "eventFilters",
    params(
        super::openapi::EventFilterParams,
    ),
    responses((status = 200, description = "User ids and event types, with counts", body = events::EventFilters)),
    security(("ApiKeyAuth" = ["events:read"])),
)]
/// `GET /events/filters` (the list's filters) → user ids and event types with counts.
pub(super) async fn filters(
    State(state): State<AppState>,
    caller: KeyCaller,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let params = Params::parse(query.as_deref(), FILTERS)?;
    let selection = selection(&params)?;
    Ok(Json(events::event_facets(&state, caller.tenant(), &selection).await?).into_response())
}

#[utoipa::path(
    get,
    path = "/external-api/api/v1/events/{id}",
    tag = "events",
    operation_id = "getEvent",
    params(("id" = String, Path)),
    responses((status = 200, description = "The event", body = crate::events::Event)),
    security(("ApiKeyAuth" = ["events:read"])),
)]
/// `GET /events/{id}`.
pub(super) async fn get(
    State(state): State<AppState>,
    caller: KeyCaller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let event = state
        .events
        .get(caller.tenant(), &id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("id: no event {id:?}")))?;
    Ok(Json(event).into_response())
}

/// `POST /events` and `PUT /events/{id}`: `{type, data, userId}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct EventRequest {
    /// Required on create: letters, digits, `_`, `-`, `.` or `:`, up to 100 characters.
    #[serde(rename = "type", default)]
    #[schema(pattern = "^[A-Za-z0-9_.:-]{1,100}$")]
    event_type: Option<String>,
    #[serde(default)]
    data: Option<String>,
    #[serde(default)]
    user_id: Option<String>,
}

impl From<EventRequest> for EventInput {
    fn from(request: EventRequest) -> Self {
        EventInput {
            event_type: request.event_type,
            data: request.data,
            user_id: request.user_id,
        }
    }
}

#[utoipa::path(
    post,
    path = "/external-api/api/v1/events",
    tag = "events",
    operation_id = "createEvent",
    request_body = EventRequest,
    responses((status = 201, description = "The event", body = crate::events::Event)),
    security(("ApiKeyAuth" = ["events:write"])),
)]
/// `POST /events` → 201 with the event, recorded now.
pub(super) async fn create(
    State(state): State<AppState>,
    caller: KeyCaller,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request: EventRequest = crate::api::json_body(&headers, &body)?;
    let event = state
        .events
        .create(caller.tenant(), &caller.key().user_id, request.into())
        .await?;
    Ok(AuditChange {
        target_type: "Event",
        target_id: event.id.clone(),
        before: None,
        after: serde_json::to_value(&event).ok(),
    }
    .on((StatusCode::CREATED, Json(&event)).into_response()))
}

#[utoipa::path(
    put,
    path = "/external-api/api/v1/events/{id}",
    tag = "events",
    operation_id = "updateEvent",
    params(("id" = String, Path)),
    request_body = EventRequest,
    responses((status = 200, description = "The event", body = crate::events::Event)),
    security(("ApiKeyAuth" = ["events:write"])),
)]
/// `PUT /events/{id}`: the fields given replace the stored ones.
pub(super) async fn update(
    State(state): State<AppState>,
    caller: KeyCaller,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request: EventRequest = crate::api::json_body(&headers, &body)?;
    let before = state
        .events
        .get(caller.tenant(), &id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("id: no event {id:?}")))?;
    let event = state
        .events
        .update(caller.tenant(), &id, request.into())
        .await?;
    Ok(AuditChange {
        target_type: "Event",
        target_id: id,
        before: serde_json::to_value(&before).ok(),
        after: serde_json::to_value(&event).ok(),
    }
    .on(Json(&event).into_response()))
}
