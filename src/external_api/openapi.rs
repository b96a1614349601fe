//! The external API's OpenAPI 3.1 document, derived from the handlers' `#[utoipa::path]`
//! annotations and the types they send, served at `/external-api/api-docs`; and the bodies of
//! its lists, typed so that the document describes exactly what is sent.
//!
//! Every operation shares the error responses (`{code, message}`) and, on success, the
//! rate-limit headers the gateway adds; a modifier writes them once instead of per handler.

use serde::Serialize;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::openapi::{HeaderBuilder, ObjectBuilder, RefOr, Response, ResponseBuilder, Type};
use utoipa::{IntoParams, Modify, OpenApi, ToSchema};

use crate::events::Event;
use crate::graphql::devices::{DeviceStatus, DeviceType};
use crate::graphql::events::EventSortField;
use crate::graphql::logs::LogRowJson;
use crate::graphql::relay::PageInfo;
use crate::inventory::{Machine, Organization};

/// The name of the API-key security scheme (OpenFrame's Swagger names it the same).
pub(super) const API_KEY_AUTH: &str = "ApiKeyAuth";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "OpenFrame Appliance public API",
        description = "The public API for integrators: devices, organizations, the unified log, \
            events, tools and webhooks of one tenant, reached with an API key in `X-API-Key`. \
            Each key holds scopes (`devices:read`, `devices:write`, …); a request outside them \
            is a 403. Lists are keyset-paged: pass a page's `pageInfo.endCursor` as `cursor` \
            for the next one. Errors are `{code, message}`, the message naming the parameter \
            or field at fault.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        super::me,
        super::devices::list,
        super::devices::filters,
        super::devices::get,
        crate::api::organizations::set_device_status,
        super::devices::set_nickname,
        super::devices::organizations,
        crate::api::organizations::create,
        crate::api::organizations::get,
        super::devices::organization_by_id,
        crate::api::organizations::update,
        crate::api::organizations::can_archive,
        crate::api::organizations::set_status,
        super::logs::list,
        super::logs::filters,
        super::logs::details,
        super::events::list,
        super::events::filters,
        super::events::get,
        super::events::create,
        super::events::update,
        super::tools,
        super::tool_filters,
        super::webhooks::list,
        super::webhooks::create,
        super::webhooks::one,
        super::webhooks::update,
        super::webhooks::remove,
        super::webhooks::deliveries,
        super::webhooks::send_test,
        super::webhooks::rotate_secret,
    ),
    components(schemas(
        crate::error::ErrorBody,
        DeviceStatus,
        DeviceType,
        EventSortField,
        OsType,
        SortDirection,
        DeviceSortField,
        LogSortField,
        OrganizationStatus,
        DeliveryStatusParam,
    )),
    modifiers(&Conventions),
    security(("ApiKeyAuth" = [])),
    tags(
        (name = "devices", description = "Managed devices (`devices:read`, `devices:write`)"),
        (name = "organizations", description = "Customers (`organizations:read`, `organizations:write`)"),
        (name = "logs", description = "The unified log of every tool (`logs:read`)"),
        (name = "events", description = "Application events (`events:read`, `events:write`)"),
        (name = "tools", description = "Integrated tools, never their credentials (`tools:read`)"),
        (name = "webhooks", description = "Signed deliveries of unified events to integrators' URLs (`webhooks:read`, `webhooks:write`)"),
        (name = "keys", description = "The calling key itself (any key)"),
    )
)]
pub(super) struct ApiDoc;

/// The document, built once.
pub(super) fn document() -> &'static serde_json::Value {
    static DOCUMENT: std::sync::OnceLock<serde_json::Value> = std::sync::OnceLock::new();
    DOCUMENT.get_or_init(|| serde_json::to_value(ApiDoc::openapi()).unwrap_or_default())
}

/// The statuses every operation may answer with an error, and why.
const ERRORS: &[(&str, &str)] = &[
    (
        "400",
        "A parameter or the body is not valid; the message names it (`invalid_input`)",
    ),
    ("401", "No API key, or not a valid one (`unauthorized`)"),
    ("403", "The key lacks the operation's scope (`forbidden`)"),
    (
        "429",
        "The key's rate limit is spent (`RATE_LIMIT_EXCEEDED`); see `Retry-After`",
    ),
    ("503", "A store is unavailable; retry shortly"),
];

/// The rate-limit headers of every answer to a key (OpenFrame's and the IETF draft's).
const RATE_HEADERS: &[(&str, &str)] = &[
    (
        "X-RateLimit-Limit-Minute",
        "Requests the key may make a minute",
    ),
    ("X-RateLimit-Remaining-Minute", "Requests left this minute"),
    (
        "X-RateLimit-Limit-Hour",
        "Requests the key may make an hour",
    ),
    ("X-RateLimit-Remaining-Hour", "Requests left this hour"),
    ("X-RateLimit-Limit-Day", "Requests the key may make a day"),
    ("X-RateLimit-Remaining-Day", "Requests left today"),
];

/// The security scheme, the shared error responses and the rate-limit headers.
#[derive(Debug)]
struct Conventions;

impl Modify for Conventions {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            API_KEY_AUTH,
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-API-Key",
                "An API key `ak_{keyId}.sk_{secret}`, created by an administrator",
            ))),
        );
        for item in openapi.paths.paths.values_mut() {
            let has_path_parameters = item.parameters.iter().flatten().any(in_path);
            for operation in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.patch,
                &mut item.delete,
            ]
            .into_iter()
            .flatten()
            {
                conventions(operation, has_path_parameters);
            }
        }
    }
}

fn in_path(parameter: &RefOr<utoipa::openapi::path::Parameter>) -> bool {
    matches!(parameter, RefOr::T(parameter)
        if parameter.parameter_in == utoipa::openapi::path::ParameterIn::Path)
}

fn error_response(description: &str) -> RefOr<Response> {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            utoipa::openapi::content::ContentBuilder::new()
                .schema(Some(utoipa::openapi::Ref::from_schema_name("Error")))
                .build(),
        )
        .build()
        .into()
}

fn conventions(operation: &mut Operation, has_path_parameters: bool) {
    let in_path = has_path_parameters || operation.parameters.iter().flatten().any(in_path);
    let responses = &mut operation.responses.responses;
    for (status, response) in responses.iter_mut() {
        if let (true, RefOr::T(response)) = (status.starts_with('2'), response) {
            for (name, description) in RATE_HEADERS {
                response.headers.insert(
                    (*name).to_owned(),
                    HeaderBuilder::new()
                        .schema(Some(ObjectBuilder::new().schema_type(Type::Integer)))
                        .description(Some(*description))
                        .build()
                        .into(),
                );
            }
        }
    }
    for (status, description) in ERRORS {
        responses
            .entry((*status).to_owned())
            .or_insert_with(|| error_response(description));
    }
    if in_path {
        responses
            .entry("404".to_owned())
            .or_insert_with(|| error_response("No such object in the key's tenant"));
    }
    if operation.request_body.is_some() {
        responses.entry("413".to_owned()).or_insert_with(|| {
            error_response("The body is larger than the API accepts (`payload_too_large`)")
        });
    }
}

/// A device as the external API returns it: the machine's fields (`tags` only with
/// `includeTags=true`) and its organization. Described here, built by `Device::to_json`
/// (which leaves `tags` out); the spec test checks the two agree.
#[allow(dead_code)]
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct DeviceView {
    #[serde(flatten)]
    machine: Machine,
    organization: Option<OrganizationRef>,
}

/// The organization a device belongs to.
#[allow(dead_code)]
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct OrganizationRef {
    organization_id: String,
    name: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct DevicePage {
    #[schema(value_type = Vec<DeviceView>)]
    pub(super) devices: Vec<serde_json::Value>,
    pub(super) page_info: PageInfo,
    pub(super) filtered_count: i32,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct OrganizationPage {
    #[schema(value_type = Vec<Organization>)]
    pub(super) organizations: Vec<serde_json::Value>,
    pub(super) page_info: PageInfo,
    pub(super) filtered_count: i32,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct EventPage<'a> {
    #[schema(value_type = Vec<Event>)]
    pub(super) events: Vec<&'a Event>,
    pub(super) page_info: PageInfo,
    pub(super) filtered_count: i32,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct LogPage {
    pub(super) logs: Vec<LogRowJson>,
    pub(super) page_info: PageInfo,
    pub(super) filtered_count: u64,
}

/// An integrated tool, without its credentials.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct ToolView {
    pub(super) id: String,
    pub(super) name: String,
    pub(super) tool_type: String,
    pub(super) enabled: bool,
    /// Whether credentials are stored (they are never returned).
    pub(super) has_credentials: bool,
    pub(super) has_web_socket: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub(super) struct ToolList {
    pub(super) tools: Vec<ToolView>,
}

/// The calling key: which it is and what it may do.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct KeyInfo<'a> {
    pub(super) key_id: &'a str,
    pub(super) tenant_id: &'a str,
    pub(super) user_id: &'a str,
    pub(super) scopes: &'a [String],
}

// Values of query parameters the handlers check as text; described here so that the document
// lists them (the handlers' error messages list the same).

/// `osTypes`.
#[allow(dead_code)]
#[derive(Debug, ToSchema)]
#[schema(rename_all = "SCREAMING_SNAKE_CASE")]
pub(super) enum OsType {
    Windows,
    MacOs,
    Linux,
}

/// `sortDirection`.
#[allow(dead_code)]
#[derive(Debug, ToSchema)]
#[schema(rename_all = "UPPERCASE")]
pub(super) enum SortDirection {
    Asc,
    Desc,
}

/// The devices' `sortField`.
#[allow(dead_code)]
#[derive(Debug, ToSchema)]
pub(super) enum DeviceSortField {
    #[schema(rename = "_id")]
    Id,
    #[schema(rename = "hostname")]
    Hostname,
    #[schema(rename = "displayName")]
    DisplayName,
    #[schema(rename = "nickname")]
    Nickname,
    #[schema(rename = "status")]
    Status,
    #[schema(rename = "lastSeen")]
    LastSeen,
}

/// The log's `sortField`.
#[allow(dead_code)]
#[derive(Debug, ToSchema)]
pub(super) enum LogSortField {
    #[schema(rename = "eventTimestamp")]
    EventTimestamp,
    #[schema(rename = "timestamp")]
    Timestamp,
}

/// An organization's `status`.
#[allow(dead_code)]
#[derive(Debug, ToSchema)]
#[schema(rename_all = "UPPERCASE")]
pub(super) enum OrganizationStatus {
    Active,
    Archived,
}

/// A delivery's `status`.
#[allow(dead_code)]
#[derive(Debug, ToSchema)]
#[schema(rename_all = "lowercase")]
pub(super) enum DeliveryStatusParam {
    Pending,
    Delivered,
    Failed,
}

// The filter parameters a list and its facets share, described once. The handlers read them
// with `Params`, which also takes comma-separated lists.

/// The devices' filters and search.
#[allow(dead_code)]
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query, rename_all = "camelCase")]
pub(super) struct DeviceFilterParams {
    statuses: Option<Vec<DeviceStatus>>,
    device_types: Option<Vec<DeviceType>>,
    os_types: Option<Vec<OsType>>,
    organization_ids: Option<Vec<String>>,
    tag_keys: Option<Vec<String>>,
    tag_values: Option<Vec<String>>,
    /// Hostname, display name, nickname, IP, serial number.
    #[param(max_length = 200)]
    search: Option<String>,
}

/// The events' filters and search.
#[allow(dead_code)]
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query, rename_all = "camelCase")]
pub(super) struct EventFilterParams {
    user_ids: Option<Vec<String>>,
    event_types: Option<Vec<String>>,
    /// The first UTC day, `yyyy-MM-dd`.
    #[param(format = Date)]
    start_date: Option<String>,
    /// The last UTC day, included.
    #[param(format = Date)]
    end_date: Option<String>,
    #[param(max_length = 200)]
    search: Option<String>,
}

/// The log's filters and search.
#[allow(dead_code)]
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query, rename_all = "camelCase")]
pub(super) struct LogFilterParams {
    /// The first UTC day, `yyyy-MM-dd`.
    #[param(format = Date)]
    start_date: Option<String>,
    /// The last UTC day, included.
    #[param(format = Date)]
    end_date: Option<String>,
    /// `MESHCENTRAL`, `FLEET`, `RMM`, …
    tool_types: Option<Vec<String>>,
    /// Unified event types.
    event_types: Option<Vec<String>>,
    /// `INFO`, `WARNING`, `ERROR`, `CRITICAL`.
    severities: Option<Vec<String>>,
    organization_ids: Option<Vec<String>>,
    device_id: Option<String>,
    /// Full text: summary, message, hostname, organization, user.
    #[param(max_length = 200)]
    search: Option<String>,
}
