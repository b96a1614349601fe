//! `/api/organizations` (customers: create, read, update, can-archive, status) and
//! `PATCH /api/devices/{machineId}` (a device's status), as OpenFrame's API service has them.
//! Lists and searches are GraphQL's (`organizations`, `devices`).
//!
//! Archiving a customer that still has devices in use is refused (`conflict`): archive or
//! delete its devices first, as `can-archive` says.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::CallerTenant;
use super::json_body;
use crate::audit::AuditChange;
use crate::error::ApiError;
use crate::identity::crypto::random_uuid;
use crate::inventory::{Machine, Organization};
use crate::startup::AppState;
use openframe_storage::TenantId;

/// Device statuses that no longer count as in use.
const RETIRED: [&str; 3] = ["ARCHIVED", "DELETED", "DECOMMISSIONED"];
/// OpenFrame's `DeviceStatus`.
pub(crate) const DEVICE_STATUSES: [&str; 10] = [
    "ACTIVE",
    "PENDING",
    "INACTIVE",
    "MAINTENANCE",
    "DECOMMISSIONED",
    "ONLINE",
    "OFFLINE",
    "PENDING_DELETION",
    "DELETED",
    "ARCHIVED",
];
/// The largest `contactInformation`, serialised.
const MAX_CONTACTS_BYTES: usize = 16 * 1024;

/// OpenFrame's `CreateOrganizationRequest` (also the body of `PUT`, which replaces every field).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct OrganizationRequest {
    /// Unique in the tenant, 1 to 200 characters.
    #[schema(min_length = 1, max_length = 200)]
    name: String,
    #[serde(default)]
    category: Option<String>,
    #[serde(default)]
    #[schema(format = Int64, minimum = 0, maximum = 4294967295_u64)]
    number_of_employees: Option<u32>,
    #[serde(default)]
    website_url: Option<String>,
    #[serde(default)]
    notes: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    contact_information: Option<serde_json::Value>,
    /// A number or a decimal string.
    #[serde(default)]
    #[schema(schema_with = decimal_schema)]
    monthly_revenue: Option<serde_json::Value>,
    #[serde(default)]
    contract_start_date: Option<String>,
    #[serde(default)]
    contract_end_date: Option<String>,
}

/// A decimal as a JSON number or a string, or null.
fn decimal_schema() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([
            Type::Number,
            Type::String,
            Type::Null,
        ]))
        .build()
        .into()
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::InvalidInput(message.into())
}

fn text(field: &str, value: Option<String>, max: usize) -> Result<Option<String>, ApiError> {
    let Some(value) = value.map(|value| value.trim().to_owned()) else {
        return Ok(None);
    };
    if value.chars().count() > max {
        return Err(invalid(format!("{field}: at most {max} characters")));
    }
    if value
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(invalid(format!(
            "{field}: control characters are not allowed"
        )));
    }
    Ok((!value.is_empty()).then_some(value))
}

fn day(field: &str, value: Option<String>) -> Result<Option<String>, ApiError> {
    let Some(value) = value.filter(|value| !value.trim().is_empty()) else {
        return Ok(None);
    };
    let format = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(value.trim(), &format)
        .map(|_| Some(value.trim().to_owned()))
        .map_err(|_| invalid(format!("{field}: {value:?} is not a date (yyyy-MM-dd)")))
}

/// A non-negative decimal with at most two places, as text.
fn money(value: Option<serde_json::Value>) -> Result<Option<String>, ApiError> {
    let text = match value {
        None | Some(serde_json::Value::Null) => return Ok(None),
        Some(serde_json::Value::Number(number)) => number.to_string(),
        Some(serde_json::Value::String(text)) => text.trim().to_owned(),
        Some(_) => {
            return Err(invalid(
                "monthlyRevenue: must be a number or a decimal string, e.g. 1250.50",
            ));
        }
    };
    let (whole, fraction) = text.split_once('.').unwrap_or((&text, ""));
    let well_formed = !whole.is_empty()
        && whole.len() <= 15
        && whole.bytes().all(|b| b.is_ascii_digit())
        && fraction.len() <= 2
        && fraction.bytes().all(|b| b.is_ascii_digit());
    if !well_formed {
        return Err(invalid(format!(
            "monthlyRevenue: {text:?} must be a non-negative amount with at most two decimals"
        )));
    }
    Ok(Some(text))
}

/// Checks a request and applies it to `organization` (every field replaced).
fn apply(request: OrganizationRequest, organization: &mut Organization) -> Result<(), ApiError> {
    // The limit counts what was sent, as the API's document states it; the name kept is trimmed.
    let name = request.name.trim();
    if name.is_empty() || request.name.chars().count() > 200 || name.chars().any(char::is_control) {
        return Err(invalid("name: must be 1 to 200 printable characters"));
    }
    let website_url = text("websiteUrl", request.website_url, 500)?;
    if let Some(url) = &website_url {
        let parsed = url::Url::parse(url)
            .map_err(|_| invalid(format!("websiteUrl: {url:?} is not a URL")))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err(invalid("websiteUrl: must be an http or https URL"));
        }
    }
    if let Some(contacts) = &request.contact_information {
        if !contacts.is_object() {
            return Err(invalid("contactInformation: must be an object"));
        }
        if contacts.to_string().len() > MAX_CONTACTS_BYTES {
            return Err(invalid(format!(
                "contactInformation: at most {MAX_CONTACTS_BYTES} bytes"
            )));
        }
    }
    let start = day("contractStartDate", request.contract_start_date)?;
    let end = day("contractEndDate", request.contract_end_date)?;
    if let (Some(start), Some(end)) = (&start, &end)
        && end < start
    {
        return Err(invalid(
            "contractEndDate: must not be before contractStartDate",
        ));
    }
    organization.name = name.to_owned();
    organization.category = text("category", request.category, 100)?;
    organization.number_of_employees = request.number_of_employees;
    organization.website_url = website_url;
    organization.notes = text("notes", request.notes, 5000)?;
    organization.contact_information = request.contact_information;
    organization.monthly_revenue = money(request.monthly_revenue)?;
    organization.contract_start_date = start;
    organization.contract_end_date = end;
    Ok(())
}

fn snapshot(organization: &Organization) -> Option<serde_json::Value> {
    serde_json::to_value(organization).ok()
}

/// The tenant's organization, or `not_found`.
async fn existing(state: &AppState, tenant: &TenantId, id: &str) -> Result<Organization, ApiError> {
    state
        .inventory
        .view(tenant, |_, organizations| organizations.get(id).cloned())
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("id: no organization {id:?}")))
}

/// Refuses a second organization with the same name (case-insensitive), so technicians can tell
/// customers apart.
async fn check_unique_name(
    state: &AppState,
    tenant: &TenantId,
    organization: &Organization,
) -> Result<(), ApiError> {
    let wanted = organization.name.to_lowercase();
    let taken = state
        .inventory
        .view(tenant, |_, organizations| {
            organizations.values().any(|other| {
                other.organization_id != organization.organization_id
                    && other.name.to_lowercase() == wanted
            })
        })
        .await?;
    if taken {
        return Err(ApiError::Conflict(format!(
            "name: an organization named {:?} exists already",
            organization.name
        )));
    }
    Ok(())
}

#[utoipa::path(
    post,
    path = "/external-api/api/v1/organizations",
    tag = "organizations",
    operation_id = "createOrganization",
    request_body = OrganizationRequest,
    responses(
        (status = 201, description = "The organization", body = crate::inventory::Organization),
        (status = 409, description = "An organization has this name", body = crate::error::ErrorBody),
    ),
    security(("ApiKeyAuth" = ["organizations:write"])),
)]
/// `POST /api/organizations` → 201 with the organization.
pub(crate) async fn create(
    State(state): State<AppState>,
    caller: CallerTenant,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request: OrganizationRequest = json_body(&headers, &body)?;
    let mut organization = Organization::named(random_uuid()?, "");
    apply(request, &mut organization)?;
    let now = state.identity.clock.now_ms();
    organization.created_at = Some(now);
    organization.updated_at = Some(now);
    check_unique_name(&state, &caller.0, &organization).await?;
    state
        .inventory
        .put_organization(&caller.0, organization.clone())
        .await?;
    Ok(AuditChange {
        target_type: "Organization",
        target_id: organization.organization_id.clone(),
        before: None,
        after: snapshot(&organization),
    }
    .on((StatusCode::CREATED, Json(&organization)).into_response()))
}

#[utoipa::path(
    get,
    path = "/external-api/api/v1/organizations/{id}",
    tag = "organizations",
    operation_id = "getOrganization",
    params(("id" = String, Path, description = "The organization's id")),
    responses((status = 200, description = "The organization", body = crate::inventory::Organization)),
    security(("ApiKeyAuth" = ["organizations:read"])),
)]
pub(crate) async fn get(
    State(state): State<AppState>,
    caller: CallerTenant,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    Ok(Json(existing(&state, &caller.0, &id).await?).into_response())
}

#[utoipa::path(
    put,
    path = "/external-api/api/v1/organizations/{id}",
    tag = "organizations",
    operation_id = "updateOrganization",
    params(("id" = String, Path)),
    request_body = OrganizationRequest,
    responses(
        (status = 200, description = "The organization", body = crate::inventory::Organization),
        (status = 409, description = "Another organization has this name", body = crate::error::ErrorBody),
    ),
    security(("ApiKeyAuth" = ["organizations:write"])),
)]
/// `PUT /api/organizations/{id}`: every editable field replaced by the body's.
pub(crate) async fn update(
    State(state): State<AppState>,
    caller: CallerTenant,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request: OrganizationRequest = json_body(&headers, &body)?;
    let before = existing(&state, &caller.0, &id).await?;
    let mut organization = before.clone();
    apply(request, &mut organization)?;
    check_unique_name(&state, &caller.0, &organization).await?;
    organization.updated_at = Some(state.identity.clock.now_ms());
    state
        .inventory
        .put_organization(&caller.0, organization.clone())
        .await?;
    Ok(AuditChange {
        target_type: "Organization",
        target_id: id,
        before: snapshot(&before),
        after: snapshot(&organization),
    }
    .on(Json(&organization).into_response()))
}

/// Devices of the organization still in use.
async fn devices_in_use(state: &AppState, tenant: &TenantId, id: &str) -> Result<usize, ApiError> {
    Ok(state
        .inventory
        .view(tenant, |machines, _| {
            machines
                .values()
                .filter(|machine| machine.organization_id.as_deref() == Some(id))
                .filter(|machine| !RETIRED.contains(&machine.status.as_str()))
                .count()
        })
        .await?)
}

/// Whether an organization can be archived.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CanArchive {
    can_archive: bool,
    /// Devices of the organization still in use (archiving waits for none).
    devices_in_use: usize,
}

#[utoipa::path(
    get,
    path = "/external-api/api/v1/organizations/{id}/can-archive",
    tag = "organizations",
    operation_id = "canArchiveOrganization",
    params(("id" = String, Path)),
    responses((status = 200, description = "Whether it can be archived", body = CanArchive)),
    security(("ApiKeyAuth" = ["organizations:read"])),
)]
/// `GET /api/organizations/{id}/can-archive` → `{canArchive, devicesInUse}`.
pub(crate) async fn can_archive(
    State(state): State<AppState>,
    caller: CallerTenant,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    existing(&state, &caller.0, &id).await?;
    let in_use = devices_in_use(&state, &caller.0, &id).await?;
    Ok(Json(CanArchive {
        can_archive: in_use == 0,
        devices_in_use: in_use,
    })
    .into_response())
}

/// `{status}`, for organizations and devices.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct StatusRequest {
    /// An organization's `ACTIVE` or `ARCHIVED`; a device's `DeviceStatus`.
    status: String,
}

#[utoipa::path(
    patch,
    path = "/external-api/api/v1/organizations/{id}/status",
    tag = "organizations",
    operation_id = "setOrganizationStatus",
    params(("id" = String, Path)),
    request_body = StatusRequest,
    responses(
        (status = 200, description = "The organization", body = crate::inventory::Organization),
        (status = 409, description = "Devices of the organization are still in use", body = crate::error::ErrorBody),
    ),
    security(("ApiKeyAuth" = ["organizations:write"])),
)]
/// `PATCH /api/organizations/{id}/status` with `{status: ACTIVE | ARCHIVED}`.
pub(crate) async fn set_status(
    State(state): State<AppState>,
    caller: CallerTenant,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request: StatusRequest = json_body(&headers, &body)?;
    let status = request.status.trim().to_ascii_uppercase();
    if !matches!(status.as_str(), "ACTIVE" | "ARCHIVED") {
        return Err(invalid(format!(
            "status: {:?} must be ACTIVE or ARCHIVED",
            request.status
        )));
    }
    let before = existing(&state, &caller.0, &id).await?;
    if status == "ARCHIVED" && before.status != "ARCHIVED" {
        let in_use = devices_in_use(&state, &caller.0, &id).await?;
        if in_use > 0 {
            return Err(ApiError::Conflict(format!(
                "status: the organization still has {in_use} device(s) in use; archive or delete them first"
            )));
        }
    }
    let mut organization = before.clone();
    if organization.status != status {
        let now = state.identity.clock.now_ms();
        organization.status = status;
        organization.status_changed_at = Some(now);
        organization.updated_at = Some(now);
        state
            .inventory
            .put_organization(&caller.0, organization.clone())
            .await?;
    }
    Ok(AuditChange {
        target_type: "Organization",
        target_id: id,
        before: Some(serde_json::json!({ "status": before.status })),
        after: Some(serde_json::json!({ "status": organization.status })),
    }
    .on(Json(&organization).into_response()))
}

#[utoipa::path(
    patch,
    path = "/external-api/api/v1/devices/{machineId}",
    tag = "devices",
    operation_id = "setDeviceStatus",
    params(("machineId" = String, Path)),
    request_body = StatusRequest,
    responses((status = 200, description = "The machine", body = crate::inventory::Machine)),
    security(("ApiKeyAuth" = ["devices:write"])),
)]
/// `PATCH /api/devices/{machineId}` with `{status}` (OpenFrame's `DeviceStatus`). `DELETED`
/// also revokes the agent's credential.
pub(crate) async fn set_device_status(
    State(state): State<AppState>,
    caller: CallerTenant,
    Path(machine_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request: StatusRequest = json_body(&headers, &body)?;
    let status = request.status.trim().to_ascii_uppercase();
    if !DEVICE_STATUSES.contains(&status.as_str()) {
        return Err(invalid(format!(
            "status: {:?} is not a device status (one of {})",
            request.status,
            DEVICE_STATUSES.join(", ")
        )));
    }
    let known = state
        .inventory
        .view(&caller.0, |machines, _| machines.contains_key(&machine_id))
        .await?;
    if !known {
        return Err(ApiError::NotFound(format!(
            "machineId: no device {machine_id:?}"
        )));
    }
    // A deleted device's agent may no longer connect (it can register again with the
    // installer's key, as a new machine).
    if status == "DELETED" {
        state
            .management
            .agents
            .retire(&caller.0, &machine_id)
            .await?;
    }
    let mut before = String::new();
    let machine: Machine = state
        .inventory
        .update_machine(&caller.0, &machine_id, |machine| {
            before = machine.status.clone();
            machine.status = status;
        })
        .await?;
    Ok(AuditChange {
        target_type: "Machine",
        target_id: machine_id,
        before: Some(serde_json::json!({ "status": before })),
        after: Some(serde_json::json!({ "status": machine.status })),
    }
    .on(Json(&machine).into_response()))
}
