//! `/external-api/api/v1/devices` and `/organizations`: the same inventory and the same rules
//! as the technician API (GraphQL's `devices` and `deviceFilters`, REST's organization and
//! device-status handlers), reached with an API key. Lists are keyset-paged: a cursor names a
//! row's sort key, so a page stays where it was while rows are added elsewhere.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::openapi::{DevicePage, OrganizationPage};
use super::params::{Params, as_parameter};
use crate::api::{CallerTenant, organizations};
use crate::audit::AuditChange;
use crate::error::ApiError;
use crate::gateway::api_keys::KeyCaller;
use crate::graphql::devices::{
    self, DeviceFilterInput, DeviceFilters, DeviceStatus, DeviceType, Selection, SortDirection,
    SortInput,
};
use crate::graphql::relay::{self, PageArgs};
use crate::management::agents::DEVICE_TYPES;
use crate::startup::AppState;

const FILTERS: &[&str] = &[
    "statuses",
    "deviceTypes",
    "osTypes",
    "organizationIds",
    "tagKeys",
    "tagValues",
    "search",
];

/// The filter and search parameters (shared by the list and its facets).
fn selection(params: &Params) -> Result<Selection, ApiError> {
    let filter = DeviceFilterInput {
        statuses: params.enums::<DeviceStatus>("statuses", &organizations::DEVICE_STATUSES)?,
        device_types: params.enums::<DeviceType>("deviceTypes", &DEVICE_TYPES)?,
        os_types: params.list("osTypes")?.map(|types| {
            types
                .into_iter()
                .map(|os| os.to_ascii_uppercase())
                .collect()
        }),
        organization_ids: params.list("organizationIds")?,
        tag_keys: params.list("tagKeys")?,
        tag_values: params.list("tagValues")?,
    };
    Selection::new(Some(filter), params.one("search")?).map_err(as_parameter)
}

#[utoipa::path(
    get,
    path = "/external-api/api/v1/devices",
    tag = "devices",
    operation_id = "listDevices",
    params(
        super::openapi::DeviceFilterParams,
        ("includeTags" = Option<bool>, Query),
        ("limit" = Option<i32>, Query, minimum = 1, maximum = 100, description = "Rows a page (default 20)"),
        ("cursor" = Option<String>, Query, description = "A page's `pageInfo.endCursor`"),
        ("sortField" = Option<super::openapi::DeviceSortField>, Query, description = "Default `lastSeen`"),
        ("sortDirection" = Option<super::openapi::SortDirection>, Query, description = "Default `DESC`"),
    ),
    responses((status = 200, description = "A page of devices", body = DevicePage)),
    security(("ApiKeyAuth" = ["devices:read"])),
)]
/// `GET /devices?statuses&deviceTypes&osTypes&organizationIds&tagKeys&tagValues&search
/// &includeTags&limit&cursor&sortField&sortDirection` → `{devices, pageInfo, filteredCount}`;
/// newest activity first unless sorted otherwise (`sortField` default `lastSeen`,
/// `sortDirection` default `DESC`).
pub(super) async fn list(
    State(state): State<AppState>,
    caller: KeyCaller,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let mut known = FILTERS.to_vec();
    known.extend([
        "includeTags",
        "limit",
        "cursor",
        "sortField",
        "sortDirection",
    ]);
    let params = Params::parse(query.as_deref(), &known)?;
    let selection = selection(&params)?;
    let field = params
        .one("sortField")?
        .unwrap_or_else(|| "lastSeen".to_owned());
    if !devices::SORT_FIELDS.contains(&field.as_str()) {
        return Err(ApiError::InvalidInput(format!(
            "sortField: {field:?} is not sortable (one of {})",
            devices::SORT_FIELDS.join(", ")
        )));
    }
    let sort = SortInput {
        field: Some(field),
        direction: Some(if params.ascending(false)? {
            SortDirection::Asc
        } else {
            SortDirection::Desc
        }),
    };
    let args = PageArgs {
        first: Some(params.limit()?),
        after: params.cursor()?,
        ..PageArgs::default()
    };
    let include_tags = params.flag("includeTags")?;
    let page =
        devices::page_of_devices(&state, caller.tenant(), &selection, Some(sort), &args).await?;
    let rows: Vec<serde_json::Value> = page
        .rows
        .iter()
        .map(|(_, device)| device.to_json(include_tags))
        .collect();
    Ok(Json(DevicePage {
        devices: rows,
        page_info: page.info,
        filtered_count: page.filtered_count,
    })
    .into_response())
}

#[utoipa::path(
    get,
    path = "/external-api/api/v1/devices/filters",
    tag = "devices",
    operation_id = "deviceFilters",
    params(
        super::openapi::DeviceFilterParams,
    ),
    responses((status = 200, description = "Every facet of the filtered list, with counts", body = DeviceFilters)),
    security(("ApiKeyAuth" = ["devices:read"])),
)]
/// `GET /devices/filters` (the list's filter parameters) → the facets with counts.
pub(super) async fn filters(
    State(state): State<AppState>,
    caller: KeyCaller,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let params = Params::parse(query.as_deref(), FILTERS)?;
    let selection = selection(&params)?;
    let facets = devices::facets(&state, caller.tenant(), &selection).await?;
    Ok(Json(facets).into_response())
}

#[utoipa::path(
    get,
    path = "/external-api/api/v1/devices/{machineId}",
    tag = "devices",
    operation_id = "getDevice",
    params(("machineId" = String, Path), ("includeTags" = Option<bool>, Query)),
    responses((status = 200, description = "The device", body = super::openapi::DeviceView)),
    security(("ApiKeyAuth" = ["devices:read"])),
)]
/// `GET /devices/{machineId}?includeTags`.
pub(super) async fn get(
    State(state): State<AppState>,
    caller: KeyCaller,
    Path(machine_id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let params = Params::parse(query.as_deref(), &["includeTags"])?;
    let device = devices::device_of(&state, caller.tenant(), &machine_id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("machineId: no device {machine_id:?}")))?;
    Ok(Json(device.to_json(params.flag("includeTags")?)).into_response())
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NicknameRequest {
    /// Up to 100 characters; null or "" clears it.
    #[serde(default)]
    nickname: Option<String>,
}

#[utoipa::path(
    patch,
    path = "/external-api/api/v1/devices/{machineId}/nickname",
    tag = "devices",
    operation_id = "setDeviceNickname",
    params(("machineId" = String, Path)),
    request_body = NicknameRequest,
    responses((status = 200, description = "The device", body = super::openapi::DeviceView)),
    security(("ApiKeyAuth" = ["devices:write"])),
)]
/// `PATCH /devices/{machineId}/nickname` with `{nickname}` (null or "" clears it).
pub(super) async fn set_nickname(
    State(state): State<AppState>,
    caller: KeyCaller,
    Path(machine_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request: NicknameRequest = crate::api::json_body(&headers, &body)?;
    let (before, machine) =
        devices::set_nickname(&state, caller.tenant(), &machine_id, request.nickname).await?;
    let device = devices::device_of(&state, caller.tenant(), &machine_id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("machineId: no device {machine_id:?}")))?;
    Ok(AuditChange {
        target_type: "Machine",
        target_id: machine_id,
        before: Some(serde_json::json!({ "nickname": before })),
        after: Some(serde_json::json!({ "nickname": machine.nickname })),
    }
    .on(Json(device.to_json(false)).into_response()))
}

#[utoipa::path(
    get,
    path = "/external-api/api/v1/organizations",
    tag = "organizations",
    operation_id = "listOrganizations",
    params(
        ("search" = Option<String>, Query, max_length = 200, description = "Part of the name"),
        ("status" = Option<super::openapi::OrganizationStatus>, Query),
        ("limit" = Option<i32>, Query, minimum = 1, maximum = 100),
        ("cursor" = Option<String>, Query),
    ),
    responses((status = 200, description = "A page of organizations, by name", body = OrganizationPage)),
    security(("ApiKeyAuth" = ["organizations:read"])),
)]
/// `GET /organizations?search&status&limit&cursor` → `{organizations, pageInfo,
/// filteredCount}`, by name.
pub(super) async fn organizations(
    State(state): State<AppState>,
    caller: CallerTenant,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let params = Params::parse(query.as_deref(), &["search", "status", "limit", "cursor"])?;
    let search = relay::search_text(params.one("search")?)
        .map_err(|error| ApiError::InvalidInput(error.message))?;
    let status = match params
        .one("status")?
        .map(|status| status.to_ascii_uppercase())
    {
        Some(status) if status != "ACTIVE" && status != "ARCHIVED" => {
            return Err(ApiError::InvalidInput(format!(
                "status: {status:?} must be ACTIVE or ARCHIVED"
            )));
        }
        status => status,
    };
    let args = PageArgs {
        first: Some(params.limit()?),
        after: params.cursor()?,
        ..PageArgs::default()
    };
    let page = state
        .inventory
        .view(&caller.0, |_, organizations| {
            let mut sorted: Vec<(String, serde_json::Value)> = organizations
                .values()
                .filter(|org| status.as_ref().is_none_or(|status| &org.status == status))
                .filter(|org| {
                    search
                        .as_ref()
                        .is_none_or(|text| org.name.to_lowercase().contains(text))
                })
                .map(|org| {
                    (
                        relay::text_key(&org.name, &org.organization_id),
                        serde_json::to_value(org).unwrap_or_default(),
                    )
                })
                .collect();
            sorted.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            relay::paginate(sorted, true, &args)
        })
        .await?
        .map_err(|error| ApiError::InvalidInput(error.message))?;
    let rows: Vec<serde_json::Value> = page.rows.into_iter().map(|(_, row)| row).collect();
    Ok(Json(OrganizationPage {
        organizations: rows,
        page_info: page.info,
        filtered_count: page.filtered_count,
    })
    .into_response())
}

#[utoipa::path(
    get,
    path = "/external-api/api/v1/organizations/by-organization-id/{organizationId}",
    tag = "organizations",
    operation_id = "getOrganizationByOrganizationId",
    params(("organizationId" = String, Path)),
    responses((status = 200, description = "The organization", body = crate::inventory::Organization)),
    security(("ApiKeyAuth" = ["organizations:read"])),
)]
/// `GET /organizations/by-organization-id/{organizationId}`: OpenFrame's lookup by its
/// business id, which is this appliance's only id.
pub(super) async fn organization_by_id(
    state: State<AppState>,
    caller: CallerTenant,
    id: Path<String>,
) -> Result<Response, ApiError> {
    organizations::get(state, caller, id).await
}
