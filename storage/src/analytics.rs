//! The analytics store: OpenFrame's Pinot tables `logs` and `devices`, for lists, facet counts and
//! time buckets.
//!
//! It is a derived store: everything in it can be rebuilt from the event log (`openframe reindex`),
//! so writes are committed before they return but are not the system of record.
//!
//! Contract for every engine:
//! - Every row belongs to exactly one tenant; no query returns or counts another tenant's rows.
//! - `append_logs` is idempotent by `(tenant, tool_event_id)`: appending a row again changes nothing
//!   (OpenFrame's Pinot upsert on `toolEventId`). `upsert_devices` replaces by `(tenant, machine_id)`.
//! - A write is visible to every query issued after it returns.
//! - Lists are ordered by `(event_timestamp DESC, tool_event_id DESC)` and paged by keyset cursor.
//! - Duplicates within one call behave as if the rows were written one by one: the first of a
//!   log's duplicates is kept, the last of a device's.
//! - Facets count rows (for tags: devices, so a tag repeated in one device's list counts once);
//!   a missing value (`None`) is not a facet value. Facets are not paged: the cardinality of the
//!   faceted columns is bounded by the tenant's devices and organisations.
//! - Time buckets start at multiples of the width from the epoch, rounding down (also before 1970).
//! - Devices are counted and faceted here; listing them is the document store's job.

use async_trait::async_trait;

use crate::Engine;
use crate::error::AnalyticsError;
use crate::model::{TenantId, UnixMillis};

/// One row of the `logs` table (Pinot `logs` schema).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRow {
    pub tool_event_id: String,
    pub event_timestamp: UnixMillis,
    /// UTC day of ingestion, `YYYY-MM-DD`.
    pub ingest_day: String,
    pub tool_type: String,
    pub event_type: String,
    pub severity: String,
    pub summary: String,
    pub user_id: Option<String>,
    pub device_id: Option<String>,
    pub hostname: Option<String>,
    pub organization_id: Option<String>,
    pub organization_name: Option<String>,
}

/// One row of the `devices` table (Pinot `devices` schema).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRow {
    pub machine_id: String,
    pub status: String,
    pub device_type: String,
    pub os_type: String,
    pub organization_id: Option<String>,
    pub tags: Vec<String>,
    /// `key:value` pairs.
    pub tag_key_values: Vec<String>,
    pub ingestion_time: UnixMillis,
}

/// Filters over `logs`. Empty lists and `None` mean "no filter on this column".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogFilter {
    /// Inclusive lower bound on `event_timestamp`.
    pub from: Option<UnixMillis>,
    /// Exclusive upper bound on `event_timestamp`.
    pub to: Option<UnixMillis>,
    pub tool_types: Vec<String>,
    pub event_types: Vec<String>,
    pub severities: Vec<String>,
    pub organization_ids: Vec<String>,
    pub device_id: Option<String>,
    /// Restrict to these tool event ids (the search index's hits); `None` means no restriction,
    /// `Some(empty)` matches nothing.
    pub tool_event_ids: Option<Vec<String>>,
}

/// Keyset position: the last row of the previous page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogCursor {
    pub event_timestamp: UnixMillis,
    pub tool_event_id: String,
}

/// The columns of `logs` that have facets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LogFacet {
    ToolType,
    EventType,
    Severity,
    OrganizationId,
    DeviceId,
    IngestDay,
}

/// The columns of `devices` that have facets. `Tag` and `TagKeyValue` unnest the multi-values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeviceFacet {
    Status,
    DeviceType,
    OsType,
    OrganizationId,
    Tag,
    TagKeyValue,
}

/// Filters over `devices`. Empty lists mean "no filter on this column"; `tags` requires every tag.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceFilter {
    pub statuses: Vec<String>,
    pub device_types: Vec<String>,
    pub os_types: Vec<String>,
    pub organization_ids: Vec<String>,
    pub tags: Vec<String>,
}

/// A distinct value and how many rows have it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FacetCount {
    pub value: String,
    pub count: u64,
}

/// The number of rows whose timestamp falls in `[start, start + width)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeBucket {
    pub start: UnixMillis,
    pub count: u64,
}

/// The largest page a list query may ask for.
pub const MAX_PAGE: usize = 1000;

#[async_trait]
pub trait Analytics: Engine {
    /// Appends rows, ignoring any whose `(tenant, tool_event_id)` is already stored. Returns how
    /// many rows were new. The whole call is one transaction: all new rows or none.
    async fn append_logs(
        &self,
        tenant: &TenantId,
        rows: Vec<LogRow>,
    ) -> Result<u64, AnalyticsError>;

    /// Up to `limit` (1..=[`MAX_PAGE`]) rows matching `filter`, newest first, strictly after `after`.
    async fn query_logs(
        &self,
        tenant: &TenantId,
        filter: &LogFilter,
        after: Option<&LogCursor>,
        limit: usize,
    ) -> Result<Vec<LogRow>, AnalyticsError>;

    /// The same, oldest first, strictly after `after` in that order: a newest-first list pages
    /// backward with it (the rows just newer than a cursor), and an oldest-first list forward.
    async fn query_logs_oldest_first(
        &self,
        tenant: &TenantId,
        filter: &LogFilter,
        after: Option<&LogCursor>,
        limit: usize,
    ) -> Result<Vec<LogRow>, AnalyticsError>;

    /// How many rows match `filter`.
    async fn count_logs(
        &self,
        tenant: &TenantId,
        filter: &LogFilter,
    ) -> Result<u64, AnalyticsError>;

    /// Distinct values of `facet` among rows matching `filter`, most frequent first, ties by value.
    async fn log_facets(
        &self,
        tenant: &TenantId,
        filter: &LogFilter,
        facet: LogFacet,
    ) -> Result<Vec<FacetCount>, AnalyticsError>;

    /// Several facets and the number of matching rows, in one pass over the rows: each facet's
    /// values as [`Analytics::log_facets`] gives them, in the order `facets` asks (each at most
    /// once), and the count [`Analytics::count_logs`] gives.
    async fn log_facets_and_count(
        &self,
        tenant: &TenantId,
        filter: &LogFilter,
        facets: &[LogFacet],
    ) -> Result<(Vec<Vec<FacetCount>>, u64), AnalyticsError>;

    /// Counts of matching rows per bucket of `width_ms` aligned to the epoch, oldest first, with
    /// empty buckets omitted.
    async fn log_time_buckets(
        &self,
        tenant: &TenantId,
        filter: &LogFilter,
        width_ms: i64,
    ) -> Result<Vec<TimeBucket>, AnalyticsError>;

    /// Deletes the tenant's rows with `event_timestamp < before`; returns how many went.
    async fn delete_logs_before(
        &self,
        tenant: &TenantId,
        before: UnixMillis,
    ) -> Result<u64, AnalyticsError>;

    /// Inserts or replaces devices by `machine_id`.
    async fn upsert_devices(
        &self,
        tenant: &TenantId,
        rows: Vec<DeviceRow>,
    ) -> Result<(), AnalyticsError>;

    /// Distinct values of `facet` among devices matching `filter`, most frequent first, ties by value.
    async fn device_facets(
        &self,
        tenant: &TenantId,
        filter: &DeviceFilter,
        facet: DeviceFacet,
    ) -> Result<Vec<FacetCount>, AnalyticsError>;

    /// How many devices match `filter`.
    async fn count_devices(
        &self,
        tenant: &TenantId,
        filter: &DeviceFilter,
    ) -> Result<u64, AnalyticsError>;
}
