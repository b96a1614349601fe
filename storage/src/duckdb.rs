//! The embedded [`Analytics`] engine: OpenFrame's Pinot tables `logs` and `devices` in one DuckDB
//! file (`analytics.duckdb`), answering lists, counts, facets and time buckets with columnar scans.
//!
//! This module owns the file's schema (numbered migrations recorded in `schema_version`), the one
//! DuckDB connection and the SQL. It must not be named outside `storage/`, and it never formats a
//! caller's value into SQL: values are bound as parameters, and only fixed column names chosen
//! from the facet enums are spliced into statement text.
//!
//! One connection behind a mutex serialises every call. DuckDB parallelises inside a query, which
//! is where analytics spends its time, and one connection keeps a write visible to every query
//! issued after it returns without any cross-connection bookkeeping.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ::duckdb::types::Value;
use ::duckdb::{Connection, params, params_from_iter};
use async_trait::async_trait;

use crate::analytics::{
    Analytics, DeviceFacet, DeviceFilter, DeviceRow, FacetCount, LogCursor, LogFacet, LogFilter,
    LogRow, MAX_PAGE, TimeBucket,
};
use crate::error::{AnalyticsError, EngineFailure, OpenError};
use crate::model::{TenantId, UnixMillis};
use crate::{AnalyticsSettings, Engine, blocking};

const ENGINE: &str = "duckdb";

/// The schema, one step per entry: entry `n - 1` takes a file from version `n - 1` to `n`. Steps
/// are append-only; a released step is never edited, because files in the field already ran it.
const MIGRATIONS: &[&str] = &[
    // 1: the two Pinot tables. Keys lead with the tenant so every row is owned by exactly one.
    "CREATE TABLE logs (
        tenant_id VARCHAR NOT NULL,
        tool_event_id VARCHAR NOT NULL,
        event_timestamp BIGINT NOT NULL,
        ingest_day VARCHAR NOT NULL,
        tool_type VARCHAR NOT NULL,
        event_type VARCHAR NOT NULL,
        severity VARCHAR NOT NULL,
        summary VARCHAR NOT NULL,
        user_id VARCHAR,
        device_id VARCHAR,
        hostname VARCHAR,
        organization_id VARCHAR,
        organization_name VARCHAR,
        PRIMARY KEY (tenant_id, tool_event_id)
    );
    CREATE TABLE devices (
        tenant_id VARCHAR NOT NULL,
        machine_id VARCHAR NOT NULL,
        status VARCHAR NOT NULL,
        device_type VARCHAR NOT NULL,
        os_type VARCHAR NOT NULL,
        organization_id VARCHAR,
        tags VARCHAR[] NOT NULL,
        tag_key_values VARCHAR[] NOT NULL,
        ingestion_time BIGINT NOT NULL,
        PRIMARY KEY (tenant_id, machine_id)
    );",
];

/// The newest schema this build knows.
const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Per-connection staging tables for the bulk paths. The appender fills them fast, then one
/// `INSERT ... SELECT` moves the rows with the conflict rule applied by the engine. They are
/// `TEMP`, so they never reach the file and need no migration.
const STAGING_TABLES: &str = "
    CREATE TEMP TABLE log_staging (
        tool_event_id VARCHAR,
        event_timestamp BIGINT,
        ingest_day VARCHAR,
        tool_type VARCHAR,
        event_type VARCHAR,
        severity VARCHAR,
        summary VARCHAR,
        user_id VARCHAR,
        device_id VARCHAR,
        hostname VARCHAR,
        organization_id VARCHAR,
        organization_name VARCHAR
    );
    CREATE TEMP TABLE device_staging (
        machine_id VARCHAR,
        status VARCHAR,
        device_type VARCHAR,
        os_type VARCHAR,
        organization_id VARCHAR,
        tags VARCHAR[],
        tag_key_values VARCHAR[],
        ingestion_time BIGINT
    );";

const LOG_COLUMNS: &str = "tool_event_id, event_timestamp, ingest_day, tool_type, event_type, \
     severity, summary, user_id, device_id, hostname, organization_id, organization_name";

/// DuckDB writes `DUCK` after the first block's 8-byte checksum; anything else is not its file.
const MAGIC: &[u8; 4] = b"DUCK";
const MAGIC_OFFSET: usize = 8;

/// The analytics store in one DuckDB file.
pub struct DuckDbAnalytics {
    /// Where the file lives, so `Debug` output says which store it is.
    path: PathBuf,
    /// The only connection. `None` once [`Engine::close`] ran, so later calls fail instead of
    /// reopening behind the caller's back. `Arc` because each call moves a handle onto the
    /// blocking pool.
    connection: Arc<Mutex<Option<Connection>>>,
}

impl fmt::Debug for DuckDbAnalytics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DuckDbAnalytics")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl DuckDbAnalytics {
    /// Opens the file at `path`, creating it if missing, and brings its schema up to date.
    /// Blocking: call it from `spawn_blocking`.
    pub fn open(path: &Path, settings: &AnalyticsSettings) -> Result<DuckDbAnalytics, OpenError> {
        refuse_foreign_file(path)?;
        // Extensions are never installed or loaded on demand: the appliance runs air-gapped, and
        // every function these queries use is compiled in.
        let config = ::duckdb::Config::default()
            .with("memory_limit", format!("{}MiB", settings.memory_limit_mb))
            .and_then(|config| config.threads(i64::from(settings.threads)))
            .and_then(|config| config.enable_autoload_extension(false))
            .map_err(|error| OpenError::engine(path, error))?;
        let mut connection = Connection::open_with_flags(path, config)
            .map_err(|error| OpenError::engine(path, error))?;
        migrate(&mut connection, path)?;
        connection
            .execute_batch(STAGING_TABLES)
            .map_err(|error| OpenError::engine(path, error))?;
        Ok(DuckDbAnalytics {
            path: path.to_owned(),
            connection: Arc::new(Mutex::new(Some(connection))),
        })
    }

    /// Runs `work` on the blocking pool with the connection, turning a DuckDB error into an
    /// [`EngineFailure`] that names `operation`.
    async fn with_connection<T, E>(
        &self,
        operation: &'static str,
        work: impl FnOnce(&mut Connection) -> Result<T, ::duckdb::Error> + Send + 'static,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<EngineFailure> + Send + 'static,
    {
        let connection = Arc::clone(&self.connection);
        blocking::run(ENGINE, operation, move || {
            let mut guard = connection.lock().map_err(|_| {
                EngineFailure::new(ENGINE, operation, "the connection lock is poisoned")
            })?;
            let connection = guard
                .as_mut()
                .ok_or_else(|| EngineFailure::new(ENGINE, operation, "the engine is closed"))?;
            work(connection).map_err(|error| E::from(EngineFailure::new(ENGINE, operation, error)))
        })
        .await
    }
}

/// Refuses a file that is not a DuckDB database before DuckDB touches it, so an operator who
/// pointed the data dir at the wrong place keeps their file exactly as it was.
fn refuse_foreign_file(path: &Path) -> Result<(), OpenError> {
    let Some(header) = crate::magic::leading_bytes(path, MAGIC_OFFSET + MAGIC.len())? else {
        return Ok(());
    };
    if header.is_empty() {
        // A crash between creating the file and DuckDB writing its header leaves it empty. The
        // store is derived and the file holds nothing, so start afresh instead of refusing to
        // boot until someone deletes it by hand.
        return std::fs::remove_file(path).map_err(|error| OpenError::engine(path, error));
    }
    if header.get(MAGIC_OFFSET..) != Some(MAGIC.as_slice()) {
        return Err(OpenError::Foreign {
            path: path.to_owned(),
            what: "analytics database",
            detail: "no DuckDB header".to_owned(),
        });
    }
    Ok(())
}

/// Applies every migration the file has not seen, each in its own transaction with its version.
fn migrate(connection: &mut Connection, path: &Path) -> Result<(), OpenError> {
    let engine = |error: ::duckdb::Error| OpenError::engine(path, error);
    let tables: Vec<String> = connection
        .prepare(
            "SELECT table_name FROM information_schema.tables \
             WHERE table_catalog = current_database() AND table_schema = 'main'",
        )
        .and_then(|mut statement| {
            statement
                .query_map([], |row| row.get::<_, String>(0))?
                .collect::<Result<_, _>>()
        })
        .map_err(engine)?;
    if !tables.is_empty() && !tables.iter().any(|table| table == "schema_version") {
        return Err(OpenError::Foreign {
            path: path.to_owned(),
            what: "analytics database",
            detail: format!(
                "a DuckDB database with tables {} but no schema_version",
                tables.join(", ")
            ),
        });
    }
    connection
        .execute_batch("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT PRIMARY KEY)")
        .map_err(engine)?;
    let found: i64 = connection
        .query_row(
            "SELECT coalesce(max(version), 0) FROM schema_version",
            [],
            |row| row.get(0),
        )
        .map_err(engine)?;
    if found > SCHEMA_VERSION {
        return Err(OpenError::NewerSchema {
            path: path.to_owned(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    for (version, migration) in (1_i64..).zip(MIGRATIONS) {
        if version <= found {
            continue;
        }
        let transaction = connection.transaction().map_err(engine)?;
        transaction.execute_batch(migration).map_err(engine)?;
        transaction
            .execute("INSERT INTO schema_version (version) VALUES (?)", [version])
            .map_err(engine)?;
        transaction.commit().map_err(engine)?;
        tracing::info!(path = %path.display(), version, "analytics schema migrated");
    }
    Ok(())
}

impl DuckDbAnalytics {
    /// A keyset page of logs, newest first or (`oldest_first`) oldest first, strictly after
    /// `after` in that order. Ties on the timestamp are broken by the tool event id the same way.
    async fn page_logs(
        &self,
        tenant: &TenantId,
        filter: &LogFilter,
        after: Option<&LogCursor>,
        limit: usize,
        oldest_first: bool,
    ) -> Result<Vec<LogRow>, AnalyticsError> {
        validate_limit(limit)?;
        let mut query = Query::new(&format!("SELECT {LOG_COLUMNS} FROM logs"));
        where_logs(&mut query, tenant, filter);
        keyset_page(&mut query, " AND", after, limit, oldest_first);
        self.with_connection("query logs", move |connection| {
            query.collect(connection, log_row)
        })
        .await
    }
}

/// A statement under construction: its text and the values for its `?` placeholders, grown
/// together so a placeholder and its value cannot drift apart.
struct Query {
    sql: String,
    params: Vec<Value>,
}

impl Query {
    fn new(sql: &str) -> Self {
        Self {
            sql: sql.to_owned(),
            params: Vec::new(),
        }
    }

    fn push(&mut self, sql: &str) {
        self.sql.push_str(sql);
    }

    /// Appends `sql`, which holds exactly one `?`, bound to `value`.
    fn bind(&mut self, sql: &str, value: Value) {
        self.sql.push_str(sql);
        self.params.push(value);
    }

    /// `AND column IN (...)`; nothing when `values` is empty ("no filter on this column").
    fn and_in(&mut self, column: &'static str, values: &[String]) {
        if values.is_empty() {
            return;
        }
        self.sql.push_str(" AND ");
        self.sql.push_str(column);
        self.sql.push_str(" IN (");
        for (index, value) in values.iter().enumerate() {
            self.sql.push_str(if index == 0 { "?" } else { ", ?" });
            self.params.push(text(value));
        }
        self.sql.push(')');
    }

    fn collect<T>(
        &self,
        connection: &Connection,
        map: impl FnMut(&::duckdb::Row<'_>) -> Result<T, ::duckdb::Error>,
    ) -> Result<Vec<T>, ::duckdb::Error> {
        let mut statement = connection.prepare(&self.sql)?;
        let rows = statement.query_map(params_from_iter(&self.params), map)?;
        rows.collect()
    }

    fn count(&self, connection: &Connection) -> Result<u64, ::duckdb::Error> {
        connection.query_row(&self.sql, params_from_iter(&self.params), |row| row.get(0))
    }
}

fn text(value: &str) -> Value {
    Value::Text(value.to_owned())
}

/// The keyset condition after `after` (joined with `keyword`), the order and the limit of a
/// page of logs, newest first or `oldest_first`. `ts {beyond}= X AND (ts {beyond} X OR id {beyond} Y)`
/// keeps the same rows as the plain keyset condition, with a range on the timestamp alone that the
/// engine can use to skip row groups by their min/max; ties on the timestamp are broken by the
/// tool event id the same way.
fn keyset_page(
    query: &mut Query,
    keyword: &str,
    after: Option<&LogCursor>,
    limit: usize,
    oldest_first: bool,
) {
    let (beyond, order) = if oldest_first {
        (">", "ASC")
    } else {
        ("<", "DESC")
    };
    if let Some(cursor) = after {
        query.bind(
            &format!("{keyword} event_timestamp {beyond}= ?"),
            Value::BigInt(cursor.event_timestamp),
        );
        query.bind(
            &format!(" AND (event_timestamp {beyond} ?"),
            Value::BigInt(cursor.event_timestamp),
        );
        query.bind(
            &format!(" OR tool_event_id {beyond} ?)"),
            text(&cursor.tool_event_id),
        );
    }
    query.bind(
        &format!(" ORDER BY event_timestamp {order}, tool_event_id {order} LIMIT ?"),
        Value::BigInt(i64::try_from(limit).unwrap_or(i64::MAX)),
    );
}

/// `WHERE tenant_id = ? AND ...` for `logs`: the tenant always leads.
fn where_logs(query: &mut Query, tenant: &TenantId, filter: &LogFilter) {
    query.bind(" WHERE tenant_id = ?", text(tenant.as_str()));
    if let Some(from) = filter.from {
        query.bind(" AND event_timestamp >= ?", Value::BigInt(from));
    }
    if let Some(to) = filter.to {
        query.bind(" AND event_timestamp < ?", Value::BigInt(to));
    }
    query.and_in("tool_type", &filter.tool_types);
    query.and_in("event_type", &filter.event_types);
    query.and_in("severity", &filter.severities);
    query.and_in("organization_id", &filter.organization_ids);
    if let Some(device_id) = &filter.device_id {
        query.bind(" AND device_id = ?", text(device_id));
    }
    match &filter.tool_event_ids {
        None => {}
        // The search index found nothing: an empty `IN ()` is not SQL, and "no restriction"
        // would be the opposite of what the caller means.
        Some(ids) if ids.is_empty() => query.push(" AND FALSE"),
        // One list parameter and a semi-join: with thousands of hits, binding each id as its
        // own placeholder costs more than the scan (measured: 48 ms against 38 ms for 2,000 ids
        // over a million rows).
        Some(ids) => query.bind(
            " AND tool_event_id IN (SELECT unnest(?::VARCHAR[]))",
            Value::List(ids.iter().map(|id| text(id)).collect()),
        ),
    }
}

/// `WHERE tenant_id = ? AND ...` for `devices`: the tenant always leads.
fn where_devices(query: &mut Query, tenant: &TenantId, filter: &DeviceFilter) {
    query.bind(" WHERE tenant_id = ?", text(tenant.as_str()));
    query.and_in("status", &filter.statuses);
    query.and_in("device_type", &filter.device_types);
    query.and_in("os_type", &filter.os_types);
    query.and_in("organization_id", &filter.organization_ids);
    for tag in &filter.tags {
        query.bind(" AND list_contains(tags, ?)", text(tag));
    }
}

fn log_facet_column(facet: LogFacet) -> &'static str {
    match facet {
        LogFacet::ToolType => "tool_type",
        LogFacet::EventType => "event_type",
        LogFacet::Severity => "severity",
        LogFacet::OrganizationId => "organization_id",
        LogFacet::DeviceId => "device_id",
        LogFacet::IngestDay => "ingest_day",
    }
}

/// The expression a device facet groups by. Multi-value columns are unnested per device, with
/// repeats inside one device's list counted once, so a tag's count is the number of devices
/// carrying it (what `DeviceFilter::tags` with that tag counts).
fn device_facet_expression(facet: DeviceFacet) -> &'static str {
    match facet {
        DeviceFacet::Status => "status",
        DeviceFacet::DeviceType => "device_type",
        DeviceFacet::OsType => "os_type",
        DeviceFacet::OrganizationId => "organization_id",
        DeviceFacet::Tag => "unnest(list_distinct(tags))",
        DeviceFacet::TagKeyValue => "unnest(list_distinct(tag_key_values))",
    }
}

fn facet_count(row: &::duckdb::Row<'_>) -> Result<FacetCount, ::duckdb::Error> {
    Ok(FacetCount {
        value: row.get(0)?,
        count: row.get(1)?,
    })
}

fn log_row(row: &::duckdb::Row<'_>) -> Result<LogRow, ::duckdb::Error> {
    Ok(LogRow {
        tool_event_id: row.get(0)?,
        event_timestamp: row.get(1)?,
        ingest_day: row.get(2)?,
        tool_type: row.get(3)?,
        event_type: row.get(4)?,
        severity: row.get(5)?,
        summary: row.get(6)?,
        user_id: row.get(7)?,
        device_id: row.get(8)?,
        hostname: row.get(9)?,
        organization_id: row.get(10)?,
        organization_name: row.get(11)?,
    })
}

fn string_list(values: &[String]) -> Value {
    Value::List(values.iter().map(|value| text(value)).collect())
}

fn validate_limit(limit: usize) -> Result<(), AnalyticsError> {
    if (1..=MAX_PAGE).contains(&limit) {
        Ok(())
    } else {
        Err(AnalyticsError::InvalidQuery(format!(
            "limit must be between 1 and {MAX_PAGE}, got {limit}"
        )))
    }
}

fn affected(rows: usize) -> u64 {
    u64::try_from(rows).unwrap_or(u64::MAX)
}

fn append_logs_blocking(
    connection: &mut Connection,
    tenant: &TenantId,
    rows: Vec<LogRow>,
) -> Result<u64, ::duckdb::Error> {
    if rows.is_empty() {
        return Ok(0);
    }
    // A repeat inside the batch is dropped here, so the first occurrence wins exactly as if the
    // rows had been appended one by one, whatever DuckDB does with in-statement duplicates.
    let mut seen = HashSet::with_capacity(rows.len());
    let rows: Vec<LogRow> = rows
        .into_iter()
        .filter(|row| seen.insert(row.tool_event_id.clone()))
        .collect();
    let transaction = connection.transaction()?;
    // Left over only if a previous call failed between staging and clearing.
    transaction.execute("DELETE FROM log_staging", [])?;
    {
        let mut appender = transaction.appender_to_catalog_and_db("log_staging", "temp", "main")?;
        for row in &rows {
            appender.append_row(params![
                row.tool_event_id,
                row.event_timestamp,
                row.ingest_day,
                row.tool_type,
                row.event_type,
                row.severity,
                row.summary,
                row.user_id,
                row.device_id,
                row.hostname,
                row.organization_id,
                row.organization_name,
            ])?;
        }
        appender.flush()?;
    }
    let inserted = transaction.execute(
        &format!(
            "INSERT INTO logs (tenant_id, {LOG_COLUMNS}) \
             SELECT CAST(? AS VARCHAR), {LOG_COLUMNS} FROM log_staging \
             ON CONFLICT DO NOTHING"
        ),
        [tenant.as_str()],
    )?;
    transaction.execute("DELETE FROM log_staging", [])?;
    transaction.commit()?;
    Ok(affected(inserted))
}

fn upsert_devices_blocking(
    connection: &mut Connection,
    tenant: &TenantId,
    rows: Vec<DeviceRow>,
) -> Result<(), ::duckdb::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    // The last occurrence of a machine wins, as if the rows had been upserted one by one; DuckDB
    // refuses to update one row twice in a statement.
    let mut latest: HashMap<String, DeviceRow> = HashMap::with_capacity(rows.len());
    for row in rows {
        latest.insert(row.machine_id.clone(), row);
    }
    let transaction = connection.transaction()?;
    transaction.execute("DELETE FROM device_staging", [])?;
    {
        let mut appender =
            transaction.appender_to_catalog_and_db("device_staging", "temp", "main")?;
        for row in latest.values() {
            appender.append_row(params![
                row.machine_id,
                row.status,
                row.device_type,
                row.os_type,
                row.organization_id,
                string_list(&row.tags),
                string_list(&row.tag_key_values),
                row.ingestion_time,
            ])?;
        }
        appender.flush()?;
    }
    transaction.execute(
        "INSERT INTO devices (tenant_id, machine_id, status, device_type, os_type, organization_id, \
             tags, tag_key_values, ingestion_time) \
         SELECT CAST(? AS VARCHAR), machine_id, status, device_type, os_type, organization_id, \
             tags, tag_key_values, ingestion_time FROM device_staging \
         ON CONFLICT (tenant_id, machine_id) DO UPDATE SET \
             status = excluded.status, device_type = excluded.device_type, \
             os_type = excluded.os_type, organization_id = excluded.organization_id, \
             tags = excluded.tags, tag_key_values = excluded.tag_key_values, \
             ingestion_time = excluded.ingestion_time",
        [tenant.as_str()],
    )?;
    transaction.execute("DELETE FROM device_staging", [])?;
    transaction.commit()
}

#[async_trait]
impl Engine for DuckDbAnalytics {
    fn engine_name(&self) -> &'static str {
        ENGINE
    }

    async fn check(&self) -> Result<(), EngineFailure> {
        self.with_connection("check", |connection| {
            connection.query_row("SELECT 1", [], |row| row.get::<_, i64>(0))?;
            Ok(())
        })
        .await
    }

    async fn close(&self) -> Result<(), EngineFailure> {
        let connection = Arc::clone(&self.connection);
        blocking::run(ENGINE, "close", move || {
            let mut guard = connection.lock().map_err(|_| {
                EngineFailure::new(ENGINE, "close", "the connection lock is poisoned")
            })?;
            let Some(connection) = guard.take() else {
                return Ok(());
            };
            // The WAL already holds every commit; the checkpoint folds it into the file so the
            // next open does not replay it. The connection goes either way: a failed checkpoint
            // loses nothing, and a closed engine must stay closed.
            let checkpoint = connection.execute_batch("CHECKPOINT");
            drop(connection);
            checkpoint.map_err(|error| EngineFailure::new(ENGINE, "close", error))
        })
        .await
    }
}

#[async_trait]
impl Analytics for DuckDbAnalytics {
    async fn append_logs(
        &self,
        tenant: &TenantId,
        rows: Vec<LogRow>,
    ) -> Result<u64, AnalyticsError> {
        let tenant = tenant.clone();
        self.with_connection("append logs", move |connection| {
            append_logs_blocking(connection, &tenant, rows)
        })
        .await
    }

    async fn query_logs(
        &self,
        tenant: &TenantId,
        filter: &LogFilter,
        after: Option<&LogCursor>,
        limit: usize,
    ) -> Result<Vec<LogRow>, AnalyticsError> {
        self.page_logs(tenant, filter, after, limit, false).await
    }

    async fn query_logs_oldest_first(
        &self,
        tenant: &TenantId,
        filter: &LogFilter,
        after: Option<&LogCursor>,
        limit: usize,
    ) -> Result<Vec<LogRow>, AnalyticsError> {
        self.page_logs(tenant, filter, after, limit, true).await
    }

    async fn count_logs(
        &self,
        tenant: &TenantId,
        filter: &LogFilter,
    ) -> Result<u64, AnalyticsError> {
        let mut query = Query::new("SELECT count(*) FROM logs");
        where_logs(&mut query, tenant, filter);
        self.with_connection("count logs", move |connection| query.count(connection))
            .await
    }

    async fn log_facets(
        &self,
        tenant: &TenantId,
        filter: &LogFilter,
        facet: LogFacet,
    ) -> Result<Vec<FacetCount>, AnalyticsError> {
        let column = log_facet_column(facet);
        let mut query = Query::new(&format!(
            "SELECT {column} AS value, count(*) AS n FROM logs"
        ));
        where_logs(&mut query, tenant, filter);
        // A missing value (no device, no organization) is not a value to filter by.
        query.push(&format!(
            " AND {column} IS NOT NULL GROUP BY {column} ORDER BY n DESC, value ASC"
        ));
        self.with_connection("count log facets", move |connection| {
            query.collect(connection, facet_count)
        })
        .await
    }

    async fn log_facets_and_count(
        &self,
        tenant: &TenantId,
        filter: &LogFilter,
        facets: &[LogFacet],
    ) -> Result<(Vec<Vec<FacetCount>>, u64), AnalyticsError> {
        let columns: Vec<&str> = facets
            .iter()
            .map(|facet| log_facet_column(*facet))
            .collect();
        if columns
            .iter()
            .enumerate()
            .any(|(i, column)| columns[..i].contains(column))
        {
            return Err(AnalyticsError::InvalidQuery(
                "each facet at most once".to_owned(),
            ));
        }
        if columns.is_empty() {
            return Ok((Vec::new(), self.count_logs(tenant, filter).await?));
        }
        // One scan, one aggregate per grouping set; `grouping_id` says which set a row is of
        // (bit n-1-i is set when column i is not in the set), which a NULL value cannot.
        let list = columns.join(", ");
        let sets: Vec<String> = columns.iter().map(|column| format!("({column})")).collect();
        let mut query = Query::new(&format!(
            "SELECT grouping_id({list}) AS g, {list}, count(*) AS n FROM logs"
        ));
        where_logs(&mut query, tenant, filter);
        query.push(&format!(
            " GROUP BY GROUPING SETS ({}, ())",
            sets.join(", ")
        ));
        let width = columns.len();
        let rows: Vec<(i64, Vec<Option<String>>, i64)> = self
            .with_connection::<_, AnalyticsError>("count log facets", move |connection| {
                query.collect(connection, |row| {
                    let group: i64 = row.get(0)?;
                    let mut values = Vec::with_capacity(width);
                    for i in 0..width {
                        values.push(row.get::<_, Option<String>>(i + 1)?);
                    }
                    let n: i64 = row.get(width + 1)?;
                    Ok((group, values, n))
                })
            })
            .await?;
        let all = (1_i64 << width) - 1;
        let mut counts: Vec<Vec<FacetCount>> = vec![Vec::new(); width];
        let mut total = 0;
        for (group, values, n) in rows {
            let n = u64::try_from(n).unwrap_or(0);
            if group == all {
                total = n;
                continue;
            }
            let Some(i) = (0..width).find(|i| group == all & !(1 << (width - 1 - i))) else {
                continue;
            };
            // A missing value (no device, no organization) is not a value to filter by.
            if let Some(value) = values.into_iter().nth(i).flatten() {
                counts[i].push(FacetCount { value, count: n });
            }
        }
        for facet in &mut counts {
            facet.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.value.cmp(&b.value)));
        }
        Ok((counts, total))
    }

    async fn log_time_buckets(
        &self,
        tenant: &TenantId,
        filter: &LogFilter,
        width_ms: i64,
    ) -> Result<Vec<TimeBucket>, AnalyticsError> {
        if width_ms <= 0 {
            return Err(AnalyticsError::InvalidQuery(format!(
                "width_ms must be positive, got {width_ms}"
            )));
        }
        // `%` truncates toward zero, so a timestamp before the epoch is moved down one more bucket
        // to keep buckets floor-aligned. Written without `ts + width` so no width can overflow.
        let width = || Value::BigInt(width_ms);
        let mut query = Query::new("SELECT bucket, count(*) FROM (SELECT CASE");
        query.bind(" WHEN event_timestamp % ? < 0", width());
        query.bind(" THEN event_timestamp - event_timestamp % ?", width());
        query.bind(" - ?", width());
        query.bind(
            " ELSE event_timestamp - event_timestamp % ? END AS bucket FROM logs",
            width(),
        );
        where_logs(&mut query, tenant, filter);
        query.push(") GROUP BY bucket ORDER BY bucket");
        self.with_connection("count log time buckets", move |connection| {
            query.collect(connection, |row| {
                Ok(TimeBucket {
                    start: row.get(0)?,
                    count: row.get(1)?,
                })
            })
        })
        .await
    }

    async fn delete_logs_before(
        &self,
        tenant: &TenantId,
        before: UnixMillis,
    ) -> Result<u64, AnalyticsError> {
        let tenant = tenant.clone();
        self.with_connection("delete logs", move |connection| {
            let deleted = connection.execute(
                "DELETE FROM logs WHERE tenant_id = ? AND event_timestamp < ?",
                params![tenant.as_str(), before],
            )?;
            Ok(affected(deleted))
        })
        .await
    }

    async fn upsert_devices(
        &self,
        tenant: &TenantId,
        rows: Vec<DeviceRow>,
    ) -> Result<(), AnalyticsError> {
        let tenant = tenant.clone();
        self.with_connection("upsert devices", move |connection| {
            upsert_devices_blocking(connection, &tenant, rows)
        })
        .await
    }

    async fn device_facets(
        &self,
        tenant: &TenantId,
        filter: &DeviceFilter,
        facet: DeviceFacet,
    ) -> Result<Vec<FacetCount>, AnalyticsError> {
        let expression = device_facet_expression(facet);
        let mut query = Query::new(&format!(
            "SELECT value, count(*) AS n FROM (SELECT {expression} AS value FROM devices"
        ));
        where_devices(&mut query, tenant, filter);
        query.push(") WHERE value IS NOT NULL GROUP BY value ORDER BY n DESC, value ASC");
        self.with_connection("count device facets", move |connection| {
            query.collect(connection, facet_count)
        })
        .await
    }

    async fn count_devices(
        &self,
        tenant: &TenantId,
        filter: &DeviceFilter,
    ) -> Result<u64, AnalyticsError> {
        let mut query = Query::new("SELECT count(*) FROM devices");
        where_devices(&mut query, tenant, filter);
        self.with_connection("count devices", move |connection| query.count(connection))
            .await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tempfile::TempDir;

    use super::*;

    async fn open_at(
        path: &Path,
        settings: AnalyticsSettings,
    ) -> Result<DuckDbAnalytics, OpenError> {
        let path = path.to_owned();
        tokio::task::spawn_blocking(move || DuckDbAnalytics::open(&path, &settings))
            .await
            .unwrap()
    }

    async fn open_temp_store() -> (Arc<DuckDbAnalytics>, TempDir) {
        let dir = TempDir::new().unwrap();
        let path = dir.path().join(crate::files::ANALYTICS);
        let store = open_at(&path, AnalyticsSettings::default()).await.unwrap();
        (Arc::new(store), dir)
    }

    crate::analytics_conformance!(open_temp_store());

    fn tenant(name: &str) -> TenantId {
        TenantId::parse(name).unwrap()
    }

    fn row(id: &str, event_timestamp: UnixMillis) -> LogRow {
        LogRow {
            tool_event_id: id.to_owned(),
            event_timestamp,
            ingest_day: "2024-05-01".to_owned(),
            tool_type: "MESHCENTRAL".to_owned(),
            event_type: "LOGIN".to_owned(),
            severity: "INFO".to_owned(),
            summary: format!("summary of {id}"),
            user_id: Some("user-1".to_owned()),
            device_id: Some("machine-1".to_owned()),
            hostname: None,
            organization_id: Some("org-1".to_owned()),
            organization_name: None,
        }
    }

    fn device(machine_id: &str, tags: &[&str]) -> DeviceRow {
        DeviceRow {
            machine_id: machine_id.to_owned(),
            status: "ONLINE".to_owned(),
            device_type: "DESKTOP".to_owned(),
            os_type: "WINDOWS".to_owned(),
            organization_id: None,
            tags: tags.iter().map(|tag| (*tag).to_owned()).collect(),
            tag_key_values: vec!["site:hq".to_owned()],
            ingestion_time: 1_714_521_600_000,
        }
    }

    /// Runs `sql` against the file with a plain DuckDB connection, as an operator or a newer
    /// build would. The store must be closed: two engines on one file in one process would not
    /// see each other's locks.
    fn poke(path: &Path, sql: &str) {
        let connection = ::duckdb::Connection::open(path).unwrap();
        connection.execute_batch(sql).unwrap();
    }

    fn schema_versions(store: &DuckDbAnalytics) -> Vec<i64> {
        let guard = store.connection.lock().unwrap();
        let connection = guard.as_ref().unwrap();
        let mut statement = connection
            .prepare("SELECT version FROM schema_version ORDER BY version")
            .unwrap();
        statement
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[tokio::test]
    async fn reopening_after_close_keeps_every_row() {
        let dir = TempDir::new().unwrap();
        let path = dir.path().join("analytics.duckdb");
        let acme = tenant("acme");
        let rows: Vec<LogRow> = (0..50)
            .map(|index| row(&format!("evt-{index:02}"), index))
            .collect();

        let store = open_at(&path, AnalyticsSettings::default()).await.unwrap();
        assert_eq!(store.append_logs(&acme, rows.clone()).await.unwrap(), 50);
        store
            .upsert_devices(&acme, vec![device("m1", &["vip"]), device("m2", &[])])
            .await
            .unwrap();
        store.close().await.unwrap();
        drop(store);

        let reopened = open_at(&path, AnalyticsSettings::default()).await.unwrap();
        let mut newest_first = rows;
        newest_first.reverse();
        let listed = reopened
            .query_logs(&acme, &LogFilter::default(), None, MAX_PAGE)
            .await
            .unwrap();
        assert_eq!(listed, newest_first);
        assert_eq!(
            reopened
                .count_devices(&acme, &DeviceFilter::default())
                .await
                .unwrap(),
            2
        );
        assert_eq!(
            reopened
                .device_facets(&acme, &DeviceFilter::default(), DeviceFacet::Tag)
                .await
                .unwrap(),
            vec![FacetCount {
                value: "vip".to_owned(),
                count: 1
            }]
        );
        // Migrations ran once, when the file was created.
        assert_eq!(schema_versions(&reopened), [1]);
        // Appends after a reopen still see what is stored.
        assert_eq!(
            reopened
                .append_logs(&acme, vec![row("evt-00", 0)])
                .await
                .unwrap(),
            0
        );
        reopened.close().await.unwrap();
    }

    #[tokio::test]
    async fn a_schema_newer_than_this_build_is_refused() {
        let dir = TempDir::new().unwrap();
        let path = dir.path().join("analytics.duckdb");
        let store = open_at(&path, AnalyticsSettings::default()).await.unwrap();
        store.close().await.unwrap();
        drop(store);
        poke(
            &path,
            &format!("INSERT INTO schema_version VALUES ({})", SCHEMA_VERSION + 1),
        );

        let error = open_at(&path, AnalyticsSettings::default())
            .await
            .unwrap_err();
        match &error {
            OpenError::NewerSchema {
                path: reported,
                found,
                supported,
            } => {
                assert_eq!(reported, &path);
                assert_eq!((*found, *supported), (SCHEMA_VERSION + 1, SCHEMA_VERSION));
            }
            other => panic!("expected NewerSchema, got {other:?}"),
        }
        assert!(
            error.to_string().contains(&path.display().to_string()),
            "{error}"
        );
    }

    #[tokio::test]
    async fn a_file_that_is_not_duckdb_is_refused_and_left_untouched() {
        let dir = TempDir::new().unwrap();
        let path = dir.path().join("analytics.duckdb");
        let garbage: Vec<u8> = b"PK\x03\x04 this is a spreadsheet someone saved here\n"
            .iter()
            .copied()
            .cycle()
            .take(10_000)
            .collect();
        std::fs::write(&path, &garbage).unwrap();

        let error = open_at(&path, AnalyticsSettings::default())
            .await
            .unwrap_err();
        assert!(
            matches!(
                &error,
                OpenError::Foreign {
                    what: "analytics database",
                    ..
                } | OpenError::Engine { .. }
            ),
            "{error:?}"
        );
        assert!(
            error.to_string().contains(&path.display().to_string()),
            "{error}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), garbage);
        // Nor did opening leave a WAL or anything else beside it.
        let entries: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        assert_eq!(entries, [std::ffi::OsString::from("analytics.duckdb")]);
    }

    #[tokio::test]
    async fn a_file_shorter_than_a_header_is_refused() {
        let dir = TempDir::new().unwrap();
        let path = dir.path().join("analytics.duckdb");
        std::fs::write(&path, b"DUCK").unwrap();
        let error = open_at(&path, AnalyticsSettings::default())
            .await
            .unwrap_err();
        assert!(matches!(error, OpenError::Foreign { .. }), "{error:?}");
        assert_eq!(std::fs::read(&path).unwrap(), b"DUCK");
    }

    #[tokio::test]
    async fn a_duckdb_database_of_another_application_is_refused() {
        let dir = TempDir::new().unwrap();
        let path = dir.path().join("analytics.duckdb");
        poke(
            &path,
            "CREATE TABLE invoices (id INTEGER); INSERT INTO invoices VALUES (1)",
        );

        let error = open_at(&path, AnalyticsSettings::default())
            .await
            .unwrap_err();
        match &error {
            OpenError::Foreign {
                path: reported,
                what,
                detail,
            } => {
                assert_eq!((reported, *what), (&path, "analytics database"));
                assert!(detail.contains("invoices"), "{detail}");
            }
            other => panic!("expected Foreign, got {other:?}"),
        }
        // Its data is still there, and it did not get our tables.
        let connection = ::duckdb::Connection::open(&path).unwrap();
        let tables: i64 = connection
            .query_row(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'main'",
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(tables, 1);
    }

    #[tokio::test]
    async fn an_empty_file_becomes_a_new_store() {
        let dir = TempDir::new().unwrap();
        let path = dir.path().join("analytics.duckdb");
        std::fs::write(&path, b"").unwrap();
        let store = open_at(&path, AnalyticsSettings::default()).await.unwrap();
        assert_eq!(
            store
                .append_logs(&tenant("acme"), vec![row("a", 1)])
                .await
                .unwrap(),
            1
        );
        assert_eq!(schema_versions(&store), [1]);
        store.close().await.unwrap();
    }

    #[tokio::test]
    async fn closing_twice_is_harmless_and_later_calls_fail_as_unavailable() {
        let (store, _dir) = open_temp_store().await;
        assert_eq!(store.engine_name(), "duckdb");
        store.check().await.unwrap();
        store.close().await.unwrap();
        store.close().await.unwrap();

        let failure = store.check().await.unwrap_err();
        assert!(failure.to_string().contains("closed"), "{failure}");
        let acme = tenant("acme");
        match store.append_logs(&acme, vec![row("a", 1)]).await {
            Err(AnalyticsError::Unavailable(failure)) => {
                assert_eq!(
                    (failure.engine, failure.operation),
                    ("duckdb", "append logs")
                );
                assert!(failure.to_string().contains("closed"), "{failure}");
            }
            other => panic!("expected Unavailable, got {other:?}"),
        }
        let queried = store
            .query_logs(&acme, &LogFilter::default(), None, 10)
            .await;
        assert!(
            matches!(queried, Err(AnalyticsError::Unavailable(_))),
            "{queried:?}"
        );
        let counted = store.count_devices(&acme, &DeviceFilter::default()).await;
        assert!(
            matches!(counted, Err(AnalyticsError::Unavailable(_))),
            "{counted:?}"
        );
    }

    #[tokio::test]
    async fn open_applies_the_memory_limit_and_thread_count() {
        let dir = TempDir::new().unwrap();
        let path = dir.path().join("analytics.duckdb");
        let settings = AnalyticsSettings {
            memory_limit_mb: 128,
            threads: 1,
        };
        let store = open_at(&path, settings).await.unwrap();
        let (memory_limit, threads) = {
            let guard = store.connection.lock().unwrap();
            let connection = guard.as_ref().unwrap();
            connection
                .query_row(
                    "SELECT current_setting('memory_limit'), current_setting('threads')",
                    [],
                    |row| Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?)),
                )
                .unwrap()
        };
        assert_eq!(threads, 1);
        assert!(memory_limit.starts_with("128"), "{memory_limit}");
        store.close().await.unwrap();
    }

    #[tokio::test]
    async fn a_large_batch_goes_in_through_the_appender_in_one_call() {
        let (store, _dir) = open_temp_store().await;
        let acme = tenant("acme");
        let batch: Vec<LogRow> = (0..20_000)
            .map(|index| row(&format!("evt-{index:05}"), index))
            .collect();
        assert_eq!(
            store.append_logs(&acme, batch.clone()).await.unwrap(),
            20_000
        );
        // Half old, half new: only the new half counts, and nothing is doubled.
        let overlapping: Vec<LogRow> = (10_000..30_000)
            .map(|index| row(&format!("evt-{index:05}"), index))
            .collect();
        assert_eq!(store.append_logs(&acme, overlapping).await.unwrap(), 10_000);
        assert_eq!(
            store
                .count_logs(&acme, &LogFilter::default())
                .await
                .unwrap(),
            30_000
        );
        assert_eq!(
            store
                .log_facets(&acme, &LogFilter::default(), LogFacet::DeviceId)
                .await
                .unwrap(),
            vec![FacetCount {
                value: "machine-1".to_owned(),
                count: 30_000
            }]
        );
        let newest = store
            .query_logs(&acme, &LogFilter::default(), None, 1)
            .await
            .unwrap();
        assert_eq!(newest, vec![row("evt-29999", 29_999)]);
        store.close().await.unwrap();
    }
}
