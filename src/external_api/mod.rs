//! The public API for integrators under `/external-api/api/v1` (OpenFrame's external API).
//! The gateway has checked the API key, its scope and its limits; handlers take [`KeyCaller`]
//! and see only the key's tenant.
//!
//! Devices (list, get, filters, status, nickname), organizations (list, get, by organization
//! id, create, update, can-archive, status), logs (list, filters, details), events (list,
//! filters, get, create, update), tools (list, filters) and webhooks; the OpenAPI 3.1 document
//! of them all at `/external-api/api-docs` ([`openapi`]) and its reference page at
//! `/external-api/docs` ([`docs`]).

mod devices;
mod docs;
mod events;
mod logs;
mod openapi;
mod params;
mod webhooks;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch};

use crate::api::organizations;

use crate::error::ApiError;
use crate::gateway::api_keys::KeyCaller;
use crate::startup::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/external-api/api-docs", get(api_docs))
        .route("/external-api/docs", get(docs::page))
        .route(docs::STYLESHEET, get(docs::stylesheet))
        .route("/external-api/api/v1/me", get(me))
        .route("/external-api/api/v1/tools", get(tools))
        .route("/external-api/api/v1/tools/filters", get(tool_filters))
        .route("/external-api/api/v1/devices", get(devices::list))
        .route(
            "/external-api/api/v1/devices/filters",
            get(devices::filters),
        )
        .route(
            "/external-api/api/v1/devices/{machine_id}",
            get(devices::get).patch(organizations::set_device_status),
        )
        .route(
            "/external-api/api/v1/devices/{machine_id}/nickname",
            patch(devices::set_nickname),
        )
        .route(
            "/external-api/api/v1/organizations",
            get(devices::organizations).post(organizations::create),
        )
        .route(
            "/external-api/api/v1/organizations/by-organization-id/{id}",
            get(devices::organization_by_id),
        )
        .route(
            "/external-api/api/v1/organizations/{id}",
            get(organizations::get).put(organizations::update),
        )
        .route(
            "/external-api/api/v1/organizations/{id}/can-archive",
            get(organizations::can_archive),
        )
        .route(
            "/external-api/api/v1/organizations/{id}/status",
            patch(organizations::set_status),
        )
        .route(
            "/external-api/api/v1/events",
            get(events::list).post(events::create),
        )
        .route("/external-api/api/v1/events/filters", get(events::filters))
        .route(
            "/external-api/api/v1/events/{id}",
            get(events::get).put(events::update),
        )
        .route("/external-api/api/v1/logs", get(logs::list))
        .route("/external-api/api/v1/logs/filters", get(logs::filters))
        .route("/external-api/api/v1/logs/details", get(logs::details))
        .merge(webhooks::routes())
}

#[utoipa::path(
    get,
    path = "/external-api/api/v1/me",
    tag = "keys",
    operation_id = "me",
    responses((status = 200, description = "The calling key", body = openapi::KeyInfo)),
    security(("ApiKeyAuth" = [])),
)]
/// `GET /external-api/api/v1/me` (any key; beyond OpenFrame): which key this is and what it may
/// do, so an integrator can check a key before wiring it in.
async fn me(caller: KeyCaller) -> Response {
    let body = caller.me_answer(|known| {
        let key = &known.record;
        serde_json::to_vec(&openapi::KeyInfo {
            key_id: &key.id,
            tenant_id: known.tenant.as_str(),
            user_id: &key.user_id,
            scopes: &key.scopes,
        })
        .unwrap_or_default()
        .into()
    });
    (
        [(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

#[utoipa::path(
    get,
    path = "/external-api/api/v1/tools",
    tag = "tools",
    operation_id = "listTools",
    responses((status = 200, description = "The tenant's tools", body = openapi::ToolList)),
    security(("ApiKeyAuth" = ["tools:read"])),
)]
/// `GET /external-api/api/v1/tools` (scope `tools:read`): the tenant's integrated tools, never
/// their credentials.
async fn tools(State(state): State<AppState>, caller: KeyCaller) -> Result<Response, ApiError> {
    let tools = state
        .gateway
        .tools
        .list(caller.tenant())
        .await?
        .into_iter()
        .map(|tool| openapi::ToolView {
            has_credentials: tool.credential.is_some(),
            has_web_socket: tool.ws_url.is_some(),
            id: tool.id,
            name: tool.name,
            tool_type: tool.tool_type,
            enabled: tool.enabled,
        })
        .collect();
    Ok(axum::Json(openapi::ToolList { tools }).into_response())
}

#[utoipa::path(
    get,
    path = "/external-api/api/v1/tools/filters",
    tag = "tools",
    operation_id = "toolFilters",
    responses((status = 200, description = "Types and categories", body = crate::graphql::tools::ToolFilters)),
    security(("ApiKeyAuth" = ["tools:read"])),
)]
/// `GET /external-api/api/v1/tools/filters` (scope `tools:read`): the types and categories of
/// the tenant's tools, as GraphQL's `toolFilters`.
async fn tool_filters(
    State(state): State<AppState>,
    caller: KeyCaller,
) -> Result<Response, ApiError> {
    let tools = state.gateway.tools.list(caller.tenant()).await?;
    Ok(axum::Json(crate::graphql::tools::ToolFilters::of(&tools)).into_response())
}

/// `GET /external-api/api-docs` (public, as OpenFrame's): the OpenAPI 3.1 document.
async fn api_docs() -> Response {
    axum::Json(openapi::document()).into_response()
}
