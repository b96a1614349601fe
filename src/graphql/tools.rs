//! Integrated tools: `integratedTools` and `toolFilters`. Credentials never leave the
//! registry; a tool says `hasCredentials` instead (OpenFrame returns them to every admin).

use std::collections::BTreeSet;

use async_graphql::{Context, Enum, ID, InputObject, Object, SimpleObject};

use super::devices::SortDirection;
use super::relay;
use super::{GqlResult, gql_error, request};
use crate::gateway::tools::ToolRecord;

/// OpenFrame's category for the remote-management tools it integrates.
const CATEGORY: &str = "Device Management";
/// OpenFrame's `platformCategory` for tools behind the gateway.
const PLATFORM_CATEGORY: &str = "Integrated Tool";

/// A tool as GraphQL shows it (type `IntegratedTool`).
#[derive(Debug, Clone)]
pub struct IntegratedTool(ToolRecord);

/// A tool's latest health check.
#[derive(SimpleObject, Debug, Clone)]
pub struct ToolHealth {
    pub healthy: bool,
    pub upstream_status: Option<i32>,
    pub latency_ms: i64,
    pub message: String,
    pub checked_at: String,
}

/// One of a tool's endpoints (OpenFrame's `ToolUrl`).
#[derive(SimpleObject, Debug, Clone)]
pub struct ToolUrl {
    pub url: String,
    pub port: Option<i32>,
    /// `API` or `WS` (OpenFrame's `ToolUrlType`).
    #[graphql(name = "type")]
    pub url_type: String,
}

fn tool_url(url: &str, url_type: &str) -> ToolUrl {
    let port = url::Url::parse(url)
        .ok()
        .and_then(|parsed| parsed.port_or_known_default())
        .map(i32::from);
    ToolUrl {
        url: url.to_owned(),
        port,
        url_type: url_type.to_owned(),
    }
}

#[Object(name = "IntegratedTool")]
impl IntegratedTool {
    /// The global id (`IntegratedTool:<key>`).
    pub async fn id(&self) -> ID {
        relay::global_id("IntegratedTool", &self.0.id)
    }
    /// The id in gateway paths (`/tools/{key}/…`), e.g. `meshcentral-server`.
    async fn key(&self) -> &str {
        &self.0.id
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// `MESHCENTRAL`, `FLEET_MDM`, `OPENFRAME_RMM`, …
    async fn tool_type(&self) -> &str {
        &self.0.tool_type
    }
    #[graphql(name = "type")]
    async fn kind(&self) -> &str {
        &self.0.tool_type
    }
    async fn category(&self) -> &str {
        CATEGORY
    }
    async fn platform_category(&self) -> &str {
        PLATFORM_CATEGORY
    }
    async fn enabled(&self) -> bool {
        self.0.enabled
    }
    async fn tool_urls(&self) -> Vec<ToolUrl> {
        std::iter::once(tool_url(&self.0.api_url, "API"))
            .chain(self.0.ws_url.as_deref().map(|url| tool_url(url, "WS")))
            .collect()
    }
    /// Whether the gateway injects a credential (which no answer ever contains).
    async fn has_credentials(&self) -> bool {
        self.0.credential.is_some()
    }
    async fn health_check_endpoint(&self) -> &str {
        &self.0.health_path
    }
    /// Seconds between the appliance's own health checks (0: none).
    async fn health_check_interval(&self) -> u64 {
        self.0.health_check_seconds
    }
    /// The latest health check; null until the tool has been checked.
    async fn health(&self, ctx: &Context<'_>) -> Option<ToolHealth> {
        let request = super::request(ctx);
        request
            .state
            .gateway
            .health
            .report(&request.admin.tenant, &self.0.id)
            .map(|report| ToolHealth {
                healthy: report.healthy,
                upstream_status: report.upstream_status.map(i32::from),
                latency_ms: i64::try_from(report.latency_ms).unwrap_or(i64::MAX),
                message: report.message,
                checked_at: crate::api::iso(report.checked_at),
            })
    }
    async fn created_at(&self) -> String {
        crate::api::iso(self.0.created_at)
    }
    async fn updated_at(&self) -> String {
        crate::api::iso(self.0.updated_at)
    }
}

/// OpenFrame's `ToolFilterInput`.
#[derive(InputObject, Default, Debug, Clone)]
pub struct ToolFilterInput {
    pub enabled: Option<bool>,
    #[graphql(name = "type")]
    pub tool_type: Option<String>,
    pub category: Option<String>,
    pub platform_category: Option<String>,
}

#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum ToolSortField {
    Name,
    Key,
}

#[derive(InputObject, Debug, Clone)]
pub struct ToolSortInput {
    pub field: ToolSortField,
    pub direction: Option<SortDirection>,
}

/// OpenFrame's `ToolList`.
#[derive(SimpleObject, Debug)]
pub struct ToolList {
    pub tools: Vec<IntegratedTool>,
}

/// OpenFrame's `ToolFilters`: the values the filter can take.
#[derive(SimpleObject, Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ToolFilters {
    pub types: Vec<String>,
    pub categories: Vec<String>,
    pub platform_categories: Vec<String>,
}

impl ToolFilters {
    /// The types, categories and platform categories of these tools (GraphQL's `toolFilters`
    /// and the external API's `GET /tools/filters`).
    pub(crate) fn of(tools: &[ToolRecord]) -> ToolFilters {
        let types: BTreeSet<String> = tools.iter().map(|tool| tool.tool_type.clone()).collect();
        let present = !tools.is_empty();
        ToolFilters {
            types: types.into_iter().collect(),
            categories: present.then(|| CATEGORY.to_owned()).into_iter().collect(),
            platform_categories: present
                .then(|| PLATFORM_CATEGORY.to_owned())
                .into_iter()
                .collect(),
        }
    }
}

async fn registered(ctx: &Context<'_>) -> GqlResult<Vec<ToolRecord>> {
    let request = request(ctx);
    request
        .state
        .gateway
        .tools
        .list(&request.admin.tenant)
        .await
        .map_err(|error| gql_error(error.into()))
}

pub(super) async fn by_tool_id(ctx: &Context<'_>, id: &str) -> GqlResult<Option<IntegratedTool>> {
    let request = request(ctx);
    Ok(request
        .state
        .gateway
        .tools
        .get(&request.admin.tenant, id)
        .await
        .map_err(|error| gql_error(error.into()))?
        .map(IntegratedTool))
}

#[derive(Default, Debug)]
pub struct ToolQuery;

#[Object]
impl ToolQuery {
    /// The tenant's tools, filtered, searched (name, key, type) and sorted (default: name).
    async fn integrated_tools(
        &self,
        ctx: &Context<'_>,
        filter: Option<ToolFilterInput>,
        search: Option<String>,
        sort: Option<ToolSortInput>,
    ) -> GqlResult<ToolList> {
        let filter = filter.unwrap_or_default();
        let search = relay::search_text(search)?;
        let mut tools: Vec<ToolRecord> = registered(ctx)
            .await?
            .into_iter()
            .filter(|tool| filter.enabled.is_none_or(|enabled| tool.enabled == enabled))
            .filter(|tool| {
                filter
                    .tool_type
                    .as_ref()
                    .is_none_or(|kind| tool.tool_type.eq_ignore_ascii_case(kind))
            })
            .filter(|_| filter.category.as_deref().is_none_or(|c| c == CATEGORY))
            .filter(|_| {
                filter
                    .platform_category
                    .as_deref()
                    .is_none_or(|c| c == PLATFORM_CATEGORY)
            })
            .filter(|tool| {
                search.as_ref().is_none_or(|text| {
                    [&tool.name, &tool.id, &tool.tool_type]
                        .iter()
                        .any(|field| field.to_lowercase().contains(text))
                })
            })
            .collect();
        let (field, direction) = sort.map_or((ToolSortField::Name, SortDirection::Asc), |sort| {
            (sort.field, sort.direction.unwrap_or_default())
        });
        tools.sort_by_cached_key(|tool| match field {
            ToolSortField::Name => relay::text_key(&tool.name, &tool.id),
            ToolSortField::Key => tool.id.clone(),
        });
        if direction == SortDirection::Desc {
            tools.reverse();
        }
        Ok(ToolList {
            tools: tools.into_iter().map(IntegratedTool).collect(),
        })
    }

    /// The types, categories and platform categories of the tenant's tools.
    async fn tool_filters(&self, ctx: &Context<'_>) -> GqlResult<ToolFilters> {
        Ok(ToolFilters::of(&registered(ctx).await?))
    }
}
