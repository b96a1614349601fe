//! The unified log (OpenFrame's `logs`, `logFilters`, `logDetails`): lists and facets from
//! the analytics table, full-text search through the search index, details from the log
//! details store.
//!
//! Lists run newest first and page forward (`first`/`after`), keyset by OpenFrame's log id
//! `"{epochMillis}_{toolEventId}"`, so a page costs the same at any depth.

use async_graphql::{Context, Enum, ID, InputObject, Object, SimpleObject};
use openframe_storage::TenantId;
use openframe_storage::analytics::{LogCursor, LogFacet, LogFilter, LogRow};
use openframe_storage::details::LogKey;
use openframe_storage::search::{DocumentKind, MAX_HITS, SearchQuery};
use time::format_description::well_known::Rfc3339;

use super::devices::SortDirection;
use super::relay::{self, DEFAULT_PAGE, PageArgs, PageInfo};
use super::{GqlResult, gql_error, invalid, request};
use crate::error::ApiError;
use crate::startup::AppState;

/// OpenFrame's `LogFilterInput`. Dates are `yyyy-MM-dd` (UTC days, both ends included);
/// instants are RFC 3339 (`timestampTo` excluded).
#[derive(InputObject, Default, Debug, Clone)]
pub struct LogFilterInput {
    pub start_date: Option<String>,
    pub end_date: Option<String>,
    pub timestamp_from: Option<String>,
    pub timestamp_to: Option<String>,
    pub event_types: Option<Vec<String>>,
    pub tool_types: Option<Vec<String>>,
    pub severities: Option<Vec<String>>,
    pub organization_ids: Option<Vec<String>>,
    pub device_id: Option<String>,
}

#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum LogSortField {
    Timestamp,
}

#[derive(InputObject, Debug, Clone)]
pub struct LogSortInput {
    pub field: Option<LogSortField>,
    pub direction: Option<SortDirection>,
}

/// One row of the unified log (type `LogEvent`).
#[derive(Debug, Clone)]
pub struct LogEvent(LogRow);

impl From<LogRow> for LogEvent {
    fn from(row: LogRow) -> Self {
        LogEvent(row)
    }
}

fn log_id(timestamp: i64, tool_event_id: &str) -> String {
    format!("{timestamp}_{tool_event_id}")
}

/// A row of the unified log as the external API returns it.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct LogRowJson {
    /// OpenFrame's log id, `"{epochMillis}_{toolEventId}"`.
    id: String,
    tool_event_id: String,
    event_type: String,
    /// The UTC day the event was ingested, `yyyy-MM-dd`.
    ingest_day: String,
    tool_type: String,
    severity: String,
    user_id: Option<String>,
    device_id: Option<String>,
    hostname: Option<String>,
    organization_id: Option<String>,
    organization_name: Option<String>,
    summary: String,
    /// When the event happened (RFC 3339).
    timestamp: String,
}

impl LogEvent {
    /// The row as the external API returns it: the GraphQL type's fields, with the log id
    /// (`"{epochMillis}_{toolEventId}"`) as `id`.
    pub(crate) fn into_json(self) -> LogRowJson {
        let row = self.0;
        LogRowJson {
            id: log_id(row.event_timestamp, &row.tool_event_id),
            timestamp: crate::api::iso(row.event_timestamp),
            tool_event_id: row.tool_event_id,
            event_type: row.event_type,
            ingest_day: row.ingest_day,
            tool_type: row.tool_type,
            severity: row.severity,
            user_id: row.user_id,
            device_id: row.device_id,
            hostname: row.hostname,
            organization_id: row.organization_id,
            organization_name: row.organization_name,
            summary: row.summary,
        }
    }

    /// OpenFrame's cursor of this row.
    pub(crate) fn cursor(&self) -> String {
        relay::encode_cursor(&log_id(self.0.event_timestamp, &self.0.tool_event_id))
    }
}

#[Object]
impl LogEvent {
    /// The global id (`LogEvent:{epochMillis}_{toolEventId}`).
    pub async fn id(&self) -> ID {
        relay::global_id(
            "LogEvent",
            &log_id(self.0.event_timestamp, &self.0.tool_event_id),
        )
    }
    async fn tool_event_id(&self) -> &str {
        &self.0.tool_event_id
    }
    async fn event_type(&self) -> &str {
        &self.0.event_type
    }
    async fn ingest_day(&self) -> &str {
        &self.0.ingest_day
    }
    async fn tool_type(&self) -> &str {
        &self.0.tool_type
    }
    async fn severity(&self) -> &str {
        &self.0.severity
    }
    async fn user_id(&self) -> Option<&str> {
        self.0.user_id.as_deref()
    }
    async fn device_id(&self) -> Option<&str> {
        self.0.device_id.as_deref()
    }
    async fn hostname(&self) -> Option<&str> {
        self.0.hostname.as_deref()
    }
    async fn organization_id(&self) -> Option<&str> {
        self.0.organization_id.as_deref()
    }
    async fn organization_name(&self) -> Option<&str> {
        self.0.organization_name.as_deref()
    }
    async fn summary(&self) -> &str {
        &self.0.summary
    }
    /// When the event happened (RFC 3339).
    async fn timestamp(&self) -> String {
        crate::api::iso(self.0.event_timestamp)
    }
}

#[derive(SimpleObject, Debug)]
pub struct LogEdge {
    pub node: LogEvent,
    pub cursor: String,
}

#[derive(SimpleObject, Debug)]
pub struct LogConnection {
    pub edges: Vec<LogEdge>,
    pub page_info: PageInfo,
    pub filtered_count: i32,
}

#[derive(SimpleObject, serde::Serialize, utoipa::ToSchema, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub struct LogOrganizationOption {
    pub id: String,
    pub name: String,
}

/// The most buckets `logTimeline` answers with.
const MAX_TIMELINE_BUCKETS: usize = 2000;

/// How many log entries fall in one time bucket (`logTimeline`).
#[derive(SimpleObject, Debug)]
pub struct LogTimeBucket {
    /// The bucket's start (RFC 3339).
    pub start: String,
    pub count: i32,
}

/// How many log rows of the filtered list have a value.
#[derive(SimpleObject, serde::Serialize, utoipa::ToSchema, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub struct LogFacetCount {
    /// `TOOL_TYPE`, `EVENT_TYPE`, `SEVERITY` or `ORGANIZATION`.
    pub facet: String,
    pub value: String,
    pub count: i32,
}

/// OpenFrame's `LogFilters` (the values present in the filtered list), with their counts.
#[derive(SimpleObject, serde::Serialize, utoipa::ToSchema, Debug)]
#[serde(rename_all = "camelCase")]
pub struct LogFilters {
    pub tool_types: Vec<String>,
    pub event_types: Vec<String>,
    pub severities: Vec<String>,
    pub organizations: Vec<LogOrganizationOption>,
    pub counts: Vec<LogFacetCount>,
    pub filtered_count: i32,
}

/// One log entry in full (type `LogDetails`): the row, the tool's message and its details.
#[derive(SimpleObject, serde::Serialize, utoipa::ToSchema, Debug)]
#[serde(rename_all = "camelCase")]
pub struct LogDetails {
    #[schema(value_type = String)]
    pub id: ID,
    pub tool_event_id: String,
    pub event_type: String,
    pub ingest_day: String,
    pub tool_type: String,
    pub severity: String,
    pub user_id: Option<String>,
    pub device_id: Option<String>,
    pub hostname: Option<String>,
    pub organization_id: Option<String>,
    pub organization_name: Option<String>,
    pub summary: String,
    pub timestamp: String,
    pub message: String,
    /// The tool-specific details, as JSON text.
    pub details: Option<String>,
}

fn unavailable(error: impl std::fmt::Display) -> ApiError {
    ApiError::StoreUnavailable(error.to_string())
}

/// A parse error of an argument, for callers outside GraphQL (the message names it).
fn input(error: async_graphql::Error) -> ApiError {
    ApiError::InvalidInput(error.message)
}

pub(super) const DAY_MS: i64 = 86_400_000;

pub(crate) fn parse_instant(argument: &str, text: &str) -> GqlResult<i64> {
    time::OffsetDateTime::parse(text, &Rfc3339)
        .ok()
        .and_then(|at| i64::try_from(at.unix_timestamp_nanos() / 1_000_000).ok())
        .ok_or_else(|| {
            invalid(format!(
                "{argument}: {text:?} is not an RFC 3339 instant (2026-11-27T09:00:00Z)"
            ))
        })
}

pub(super) fn parse_day(argument: &str, text: &str) -> GqlResult<i64> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(text, &format)
        .ok()
        .map(|day| day.midnight().assume_utc().unix_timestamp() * 1000)
        .ok_or_else(|| invalid(format!("{argument}: {text:?} is not a date (yyyy-MM-dd)")))
}

/// The longest search text.
const MAX_SEARCH: usize = 200;

/// The storage filter for a GraphQL filter and search (the search becomes the set of matching
/// event ids; a search with more than [`MAX_HITS`] hits keeps the newest of them).
pub(crate) async fn storage_filter(
    state: &AppState,
    tenant: &TenantId,
    filter: Option<LogFilterInput>,
    search: Option<String>,
) -> Result<LogFilter, ApiError> {
    let mut storage = filter_fields(filter)?;
    let search = search
        .map(|text| text.trim().to_owned())
        .filter(|text| !text.is_empty());
    if let Some(text) = search {
        if text.chars().count() > MAX_SEARCH {
            return Err(ApiError::InvalidInput(format!(
                "search: at most {MAX_SEARCH} characters"
            )));
        }
        let hits = state
            .storage
            .search
            .search(
                tenant,
                &SearchQuery {
                    text,
                    kind: Some(DocumentKind::Log),
                    from: storage.from,
                    to: storage.to,
                    limit: MAX_HITS,
                },
            )
            .await
            .map_err(unavailable)?;
        // The hits' time span bounds the rows too: the same answer, and the analytics engine
        // skips the stretches of the log that hold none of them.
        if let (Some(first), Some(last)) = (
            hits.iter().map(|hit| hit.timestamp).min(),
            hits.iter().map(|hit| hit.timestamp).max(),
        ) {
            storage.from = Some(storage.from.map_or(first, |from| from.max(first)));
            storage.to = Some(storage.to.map_or(last + 1, |to| to.min(last + 1)));
        }
        storage.tool_event_ids = Some(hits.into_iter().map(|hit| hit.id).collect());
    }
    Ok(storage)
}

/// [`storage_filter`] without the search: the dates and lists of a GraphQL filter, checked.
pub(crate) fn filter_fields(filter: Option<LogFilterInput>) -> Result<LogFilter, ApiError> {
    let filter = filter.unwrap_or_default();
    let mut from = None;
    let mut to = None;
    if let Some(day) = &filter.start_date {
        from = Some(parse_day("filter.startDate", day).map_err(input)?);
    }
    if let Some(day) = &filter.end_date {
        to = Some(parse_day("filter.endDate", day).map_err(input)? + DAY_MS);
    }
    if let Some(at) = &filter.timestamp_from {
        let at = parse_instant("filter.timestampFrom", at).map_err(input)?;
        from = Some(from.map_or(at, |from: i64| from.max(at)));
    }
    if let Some(at) = &filter.timestamp_to {
        let at = parse_instant("filter.timestampTo", at).map_err(input)?;
        to = Some(to.map_or(at, |to: i64| to.min(at)));
    }
    Ok(LogFilter {
        from,
        to,
        tool_types: filter.tool_types.unwrap_or_default(),
        event_types: filter.event_types.unwrap_or_default(),
        severities: filter.severities.unwrap_or_default(),
        organization_ids: filter.organization_ids.unwrap_or_default(),
        device_id: filter.device_id,
        tool_event_ids: None,
    })
}

fn count(value: u64) -> i32 {
    i32::try_from(value).unwrap_or(i32::MAX)
}

#[derive(Default, Debug)]
pub struct LogQuery;

#[Object]
impl LogQuery {
    /// The tenant's unified log, newest first (or oldest first with `sort.direction: ASC`),
    /// filtered and searched (summary, message, hostname, organization, user), paged both ways
    /// by OpenFrame's log id.
    #[allow(clippy::too_many_arguments)]
    #[graphql(complexity = "PageArgs::size(first, last) * child_complexity + 1")]
    async fn logs(
        &self,
        ctx: &Context<'_>,
        filter: Option<LogFilterInput>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
        search: Option<String>,
        sort: Option<LogSortInput>,
    ) -> GqlResult<LogConnection> {
        let args = PageArgs::new(first, after, last, before)?;
        let newest_first = sort.and_then(|sort| sort.direction) != Some(SortDirection::Asc);
        let after = args
            .after
            .as_deref()
            .map(|cursor| decode_cursor("after", cursor))
            .transpose()?;
        let before = args
            .before
            .as_deref()
            .map(|cursor| decode_cursor("before", cursor))
            .transpose()?;
        if after.is_some() && before.is_some() {
            return Err(invalid(
                "after, before: give one of them (after pages forward, before backward)",
            ));
        }
        let request = request(ctx);
        let tenant = &request.admin.tenant;
        let filter = storage_filter(request.state, tenant, filter, search)
            .await
            .map_err(gql_error)?;
        // `last`/`before` page backward: read the other way from the cursor and turn the page
        // round, so it is in the list's order.
        let backward = args.last.is_some() || before.is_some();
        let limit = usize::try_from(args.first.or(args.last).unwrap_or(DEFAULT_PAGE)).unwrap_or(1);
        let cursor = if backward {
            before.as_ref()
        } else {
            after.as_ref()
        };
        let (mut rows, more, total) = read_logs(
            request.state,
            tenant,
            &filter,
            cursor,
            newest_first != backward,
            limit,
        )
        .await
        .map_err(gql_error)?;
        if backward {
            rows.reverse();
        }
        let (has_next_page, has_previous_page) = if backward {
            (cursor.is_some(), more)
        } else {
            (more, cursor.is_some())
        };
        let edges: Vec<LogEdge> = rows
            .into_iter()
            .map(|row| {
                let node = LogEvent(row);
                LogEdge {
                    cursor: node.cursor(),
                    node,
                }
            })
            .collect();
        Ok(LogConnection {
            page_info: PageInfo {
                has_next_page,
                has_previous_page,
                start_cursor: edges.first().map(|edge| edge.cursor.clone()),
                end_cursor: edges.last().map(|edge| edge.cursor.clone()),
            },
            edges,
            filtered_count: count(total),
        })
    }

    /// The values present in the filtered log, with counts (the same filter and search as
    /// `logs`; each facet's counts add up to `filteredCount`, except organizations, which
    /// leave out events of no organization).
    async fn log_filters(
        &self,
        ctx: &Context<'_>,
        filter: Option<LogFilterInput>,
        search: Option<String>,
    ) -> GqlResult<LogFilters> {
        let request = request(ctx);
        let tenant = &request.admin.tenant;
        let filter = storage_filter(request.state, tenant, filter, search)
            .await
            .map_err(gql_error)?;
        log_filters_of(request.state, tenant, &filter)
            .await
            .map_err(gql_error)
    }

    /// How many entries of the filtered log fall in each time bucket of `bucketMinutes`
    /// (1 to 1440, default 60), aligned to the epoch, oldest first; empty buckets are left out
    /// (beyond OpenFrame: the console's events-per-hour chart). The same filter and search as
    /// `logs`; a range of more than 2,000 non-empty buckets is refused.
    async fn log_timeline(
        &self,
        ctx: &Context<'_>,
        filter: Option<LogFilterInput>,
        search: Option<String>,
        bucket_minutes: Option<i32>,
    ) -> GqlResult<Vec<LogTimeBucket>> {
        let minutes = bucket_minutes.unwrap_or(60);
        if !(1..=1440).contains(&minutes) {
            return Err(invalid(format!(
                "bucketMinutes: {minutes} must be between 1 and 1440"
            )));
        }
        let request = request(ctx);
        let tenant = &request.admin.tenant;
        let filter = storage_filter(request.state, tenant, filter, search)
            .await
            .map_err(gql_error)?;
        let buckets = request
            .state
            .storage
            .analytics
            .log_time_buckets(tenant, &filter, i64::from(minutes) * 60_000)
            .await
            .map_err(|error| gql_error(unavailable(error)))?;
        if buckets.len() > MAX_TIMELINE_BUCKETS {
            return Err(invalid(format!(
                "bucketMinutes: the filtered log spans {} buckets of {minutes} minutes, more than \
                 {MAX_TIMELINE_BUCKETS}; narrow filter.timestampFrom/timestampTo or widen the buckets",
                buckets.len()
            )));
        }
        Ok(buckets
            .into_iter()
            .map(|bucket| LogTimeBucket {
                start: crate::api::iso(bucket.start),
                count: count(bucket.count),
            })
            .collect())
    }

    /// One log entry in full, by the fields of its key (as OpenFrame's Cassandra table);
    /// null when the tenant has no such entry.
    async fn log_details(
        &self,
        ctx: &Context<'_>,
        ingest_day: String,
        tool_type: String,
        event_type: String,
        timestamp: String,
        tool_event_id: String,
    ) -> GqlResult<Option<LogDetails>> {
        let at = parse_instant("timestamp", &timestamp)?;
        let request = request(ctx);
        let key = DetailsKey {
            ingest_day,
            tool_type,
            event_type,
            timestamp: at,
            tool_event_id,
        };
        details_of(request.state, &request.admin.tenant, key)
            .await
            .map_err(gql_error)
    }
}

/// Up to `limit` rows of the filtered log from `cursor` on (not included) in either order,
/// whether more follow, and how many rows the filter matches in all.
pub(crate) async fn read_logs(
    state: &AppState,
    tenant: &TenantId,
    filter: &LogFilter,
    cursor: Option<&LogCursor>,
    newest_first: bool,
    limit: usize,
) -> Result<(Vec<LogRow>, bool, u64), ApiError> {
    let analytics = &state.storage.analytics;
    let (rows, total) = tokio::join!(
        async {
            if newest_first {
                analytics
                    .query_logs(tenant, filter, cursor, limit + 1)
                    .await
            } else {
                analytics
                    .query_logs_oldest_first(tenant, filter, cursor, limit + 1)
                    .await
            }
        },
        analytics.count_logs(tenant, filter),
    );
    let mut rows = rows.map_err(unavailable)?;
    let total = total.map_err(unavailable)?;
    let more = rows.len() > limit;
    rows.truncate(limit);
    Ok((rows, more, total))
}

/// The facets of the filtered log (GraphQL's `logFilters`, the external API's `/logs/filters`).
pub(crate) async fn log_filters_of(
    state: &AppState,
    tenant: &TenantId,
    filter: &LogFilter,
) -> Result<LogFilters, ApiError> {
    let analytics = &state.storage.analytics;
    let (mut found, total) = analytics
        .log_facets_and_count(
            tenant,
            filter,
            &[
                LogFacet::ToolType,
                LogFacet::EventType,
                LogFacet::Severity,
                LogFacet::OrganizationId,
            ],
        )
        .await
        .map_err(unavailable)?;
    let mut take = |index: usize| std::mem::take(&mut found[index]);
    let facets = [
        ("TOOL_TYPE", take(0)),
        ("EVENT_TYPE", take(1)),
        ("SEVERITY", take(2)),
        ("ORGANIZATION", take(3)),
    ];
    let values = |index: usize| -> Vec<String> {
        facets[index]
            .1
            .iter()
            .map(|facet| facet.value.clone())
            .collect()
    };
    let organization_ids = values(3);
    let organizations = state
        .inventory
        .view(tenant, |_, known| {
            organization_ids
                .iter()
                .map(|id| LogOrganizationOption {
                    id: id.clone(),
                    name: known
                        .get(id)
                        .map_or_else(|| id.clone(), |org| org.name.clone()),
                })
                .collect()
        })
        .await?;
    Ok(LogFilters {
        tool_types: values(0),
        event_types: values(1),
        severities: values(2),
        organizations,
        counts: facets
            .iter()
            .flat_map(|(facet, counts)| {
                counts.iter().map(|value| LogFacetCount {
                    facet: (*facet).to_owned(),
                    value: value.value.clone(),
                    count: count(value.count),
                })
            })
            .collect(),
        filtered_count: count(total),
    })
}

/// The fields of a log entry's key, as OpenFrame's Cassandra table has them.
#[derive(Debug, Clone)]
pub(crate) struct DetailsKey {
    pub(crate) ingest_day: String,
    pub(crate) tool_type: String,
    pub(crate) event_type: String,
    pub(crate) timestamp: i64,
    pub(crate) tool_event_id: String,
}

/// One log entry in full; `None` when the tenant has no entry with this key.
pub(crate) async fn details_of(
    state: &AppState,
    tenant: &TenantId,
    key: DetailsKey,
) -> Result<Option<LogDetails>, ApiError> {
    let DetailsKey {
        ingest_day,
        tool_type,
        event_type,
        timestamp: at,
        tool_event_id,
    } = key;
    let found = state
        .storage
        .details
        .get(
            tenant,
            &LogKey {
                timestamp: at,
                tool_event_id: tool_event_id.clone(),
            },
        )
        .await
        .map_err(unavailable)?;
    let Some(bytes) = found else {
        return Ok(None);
    };
    let record: serde_json::Value = serde_json::from_slice(&bytes).map_err(unavailable)?;
    let text = |name: &str| record[name].as_str().map(str::to_owned);
    // The other key fields must agree, as they would in OpenFrame's primary key.
    if text("ingestDay").as_deref() != Some(ingest_day.as_str())
        || text("toolType").as_deref() != Some(tool_type.as_str())
        || text("eventType").as_deref() != Some(event_type.as_str())
    {
        return Ok(None);
    }
    Ok(Some(LogDetails {
        id: relay::global_id("LogDetails", &log_id(at, &tool_event_id)),
        tool_event_id,
        event_type,
        ingest_day,
        tool_type,
        severity: text("severity").unwrap_or_default(),
        user_id: text("userId"),
        device_id: text("deviceId"),
        hostname: text("hostname"),
        organization_id: text("organizationId"),
        organization_name: text("organizationName"),
        summary: text("summary").unwrap_or_default(),
        timestamp: crate::api::iso(at),
        message: text("message").unwrap_or_default(),
        details: record
            .get("details")
            .filter(|details| !details.is_null())
            .map(|details| details.to_string()),
    }))
}

/// A log cursor is OpenFrame's log id, `"{epochMillis}_{toolEventId}"`.
pub(crate) fn decode_cursor(argument: &str, cursor: &str) -> GqlResult<LogCursor> {
    let key = relay::decode_cursor(argument, cursor)?;
    key.split_once('_')
        .and_then(|(at, id)| {
            Some(LogCursor {
                event_timestamp: at.parse().ok()?,
                tool_event_id: id.to_owned(),
            })
        })
        .ok_or_else(|| {
            invalid(format!(
                "{argument}: {cursor:?} is not a cursor this list returned"
            ))
        })
}
