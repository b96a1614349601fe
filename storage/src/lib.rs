//! The OpenFrame Appliance's storage boundary.
//!
//! OpenFrame runs MongoDB, Kafka, Cassandra, Pinot and Redis. The appliance replaces them with
//! embedded engines behind small capability traits, each with a documented contract that every
//! engine (embedded, or a connector to a real cluster) must keep:
//!
//! | trait | role in OpenFrame | embedded engine |
//! |---|---|---|
//! | [`TenantStore`], [`DocumentStore`] | MongoDB | SQLite ([`sqlite`]) |
//! | [`EventLog`] | Kafka | redb ([`redb_log`]) |
//! | [`LogDetails`] | Cassandra `unified_logs` | redb ([`redb_log`]) |
//! | [`Analytics`] | Pinot `logs`, `devices` | DuckDB (`duckdb`, feature `duckdb`) |
//! | [`SearchIndex`] | Pinot text indexes | tantivy ([`tantivy`]) |
//!
//! Reading order: [`model`] (ids and time), [`error`], the traits ([`documents`], [`log`],
//! [`details`], [`analytics`], [`search`]), then [`Storage`], which opens the configured engines.
//!
//! Architecture invariants:
//! - Nothing outside this crate names an engine. Callers hold `Arc<dyn Trait>`.
//! - Every method that touches tenant-owned data takes a [`TenantId`]; engines put it in every key,
//!   row and index entry, so a caller cannot forget a tenant filter.
//! - Blocking engines never run on the async executor: calls go through `spawn_blocking` or a
//!   dedicated thread.

pub mod analytics;
pub mod details;
pub mod documents;
pub mod error;
pub mod log;
pub mod model;
pub mod search;

#[cfg(feature = "duckdb")]
pub mod duckdb;
#[cfg(feature = "kafka")]
pub mod kafka;
#[cfg(feature = "mongo")]
pub mod mongo;
pub mod redb_log;
pub mod sqlite;
pub mod tantivy;

#[cfg(any(test, feature = "test-util"))]
pub mod conformance;

mod blocking;
#[cfg(all(test, feature = "kafka", feature = "mongo"))]
mod connector_tests;
mod magic;
#[cfg(any(test, feature = "test-util"))]
pub mod peers;
#[cfg(test)]
mod snapshot_tests;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

pub use analytics::Analytics;
pub use details::LogDetails;
pub use documents::{DocumentEngine, DocumentStore, TenantStore};
pub use error::{EngineFailure, OpenError};
pub use log::EventLog;
pub use model::{Clock, TenantId};
pub use search::SearchIndex;

/// What every engine can do besides its capability: report health and close cleanly.
#[async_trait]
pub trait Engine: Send + Sync + std::fmt::Debug {
    /// The engine's short name for health reports and metrics (`sqlite`, `redb`, ...).
    fn engine_name(&self) -> &'static str;

    /// A cheap probe that the engine can serve requests (a trivial read).
    async fn check(&self) -> Result<(), EngineFailure>;

    /// Flushes everything pending and releases files. Later calls fail with an [`EngineFailure`].
    /// Closing twice is harmless.
    async fn close(&self) -> Result<(), EngineFailure>;

    /// Writes a consistent copy of the engine's files into `into` (an existing directory) while
    /// the engine keeps serving, and returns the names of the files written, relative to `into`.
    /// The copy is one point in time: every write acknowledged before the call is in it, and no
    /// write is half in it. Each file is flushed to disk before this returns.
    ///
    /// The default copies nothing: for engines whose data is derived from others (analytics,
    /// search: `openframe reindex` rebuilds them) or lives outside the data dir.
    async fn snapshot(&self, into: &Path) -> Result<Vec<String>, EngineFailure> {
        let _ = into;
        Ok(Vec::new())
    }
}

/// The longest an external engine's [`Engine::check`] takes: readiness probes time out in seconds.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// Which engine holds tenancy and documents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DocumentBackend {
    Sqlite,
    /// An external MongoDB (feature `mongo`).
    Mongo(MongoSettings),
}

/// Which engine holds the event log. The log details (Cassandra's role) stay in the embedded
/// log file either way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventBackend {
    Redb,
    /// An external Kafka cluster (feature `kafka`).
    Kafka(KafkaSettings),
}

/// Where the cluster is and how the appliance names things in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaSettings {
    /// Bootstrap brokers, `host:port[,host:port...]`.
    pub brokers: String,
    /// Prefix of the appliance's topic names; lets several appliances share a cluster.
    pub topic_prefix: String,
    /// Replication factor of the topics the appliance creates; `-1` takes the broker's default.
    pub replication_factor: i16,
    /// How long a call keeps retrying an unreachable or failing cluster before giving up.
    pub timeout: Duration,
    /// The tenant whose streams are OpenFrame's own, unprefixed topics, if any.
    pub openframe_tenant: Option<TenantId>,
    /// SASL authentication, if the cluster asks for it.
    pub sasl: Option<KafkaSasl>,
}

/// SASL credentials for Kafka. The password stays in its file until a connection needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaSasl {
    pub mechanism: SaslMechanism,
    pub username: String,
    /// A file holding the password (trailing newline ignored), so the secret stays out of the
    /// config file and out of logs.
    pub password_file: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaslMechanism {
    Plain,
    ScramSha256,
    ScramSha512,
}

impl SaslMechanism {
    pub const NAMES: &'static str = "\"PLAIN\", \"SCRAM-SHA-256\" or \"SCRAM-SHA-512\"";

    pub fn parse(name: &str) -> Option<SaslMechanism> {
        match name {
            "PLAIN" => Some(SaslMechanism::Plain),
            "SCRAM-SHA-256" => Some(SaslMechanism::ScramSha256),
            "SCRAM-SHA-512" => Some(SaslMechanism::ScramSha512),
            _ => None,
        }
    }
}

impl KafkaSettings {
    pub fn new(brokers: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            topic_prefix: "openframe.".into(),
            replication_factor: -1,
            timeout: Duration::from_secs(10),
            openframe_tenant: None,
            sasl: None,
        }
    }
}

/// Where the server is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MongoSettings {
    /// `mongodb://...`; its path names the database (default `openframe`).
    pub uri: String,
    /// How long a call waits for a usable server before failing.
    pub timeout: Duration,
}

impl MongoSettings {
    pub fn new(uri: impl Into<String>) -> Self {
        Self {
            uri: uri.into(),
            timeout: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnalyticsSettings {
    /// DuckDB's memory limit; it spills to disk beyond it.
    pub memory_limit_mb: u32,
    /// Worker threads DuckDB may use.
    pub threads: u16,
}

impl Default for AnalyticsSettings {
    fn default() -> Self {
        Self {
            memory_limit_mb: 256,
            threads: 2,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchSettings {
    /// Commit after this many documents are pending...
    pub commit_every_docs: usize,
    /// ...or after this long with any pending, whichever comes first.
    pub commit_interval_ms: u64,
    /// The index writer's memory budget (tantivy needs at least 15 MB).
    pub writer_memory_mb: usize,
}

impl Default for SearchSettings {
    fn default() -> Self {
        Self {
            commit_every_docs: 10_000,
            commit_interval_ms: 250,
            writer_memory_mb: 32,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageConfig {
    pub data_dir: PathBuf,
    /// The event log's page cache, in MiB (redb's default of 1 GiB is too much for a small box).
    pub event_log_cache_mb: usize,
    pub documents: DocumentBackend,
    pub events: EventBackend,
    pub analytics: AnalyticsSettings,
    pub search: SearchSettings,
}

impl StorageConfig {
    /// Embedded engines under `data_dir` with default settings.
    pub fn embedded(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            event_log_cache_mb: redb_log::DEFAULT_CACHE_BYTES / (1024 * 1024),
            documents: DocumentBackend::Sqlite,
            events: EventBackend::Redb,
            analytics: AnalyticsSettings::default(),
            search: SearchSettings::default(),
        }
    }
}

/// The files the embedded engines keep in the data directory.
pub mod files {
    pub const TENANCY: &str = "tenancy.sqlite";
    pub const EVENTS: &str = "events.redb";
    pub const ANALYTICS: &str = "analytics.duckdb";
    pub const SEARCH: &str = "search";
}

/// One engine's state, for `/health/ready`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineHealth {
    /// What the engine does here: `documents`, `events`, `analytics`, `search`.
    pub role: &'static str,
    pub engine: &'static str,
    /// `None` when healthy, otherwise what is wrong.
    pub problem: Option<String>,
}

/// Every store the appliance uses, opened from one [`StorageConfig`].
#[derive(Debug, Clone)]
pub struct Storage {
    pub tenants: Arc<dyn TenantStore>,
    pub documents: Arc<dyn DocumentStore>,
    pub events: Arc<dyn EventLog>,
    pub details: Arc<dyn LogDetails>,
    pub analytics: Arc<dyn Analytics>,
    pub search: Arc<dyn SearchIndex>,
}

impl Storage {
    /// Opens (creating if needed) every configured engine. Blocking work runs off the executor.
    /// On failure, engines opened so far are closed again, so their files are released.
    pub async fn open(config: &StorageConfig, clock: Arc<dyn Clock>) -> Result<Storage, OpenError> {
        let mut opened: Vec<Arc<dyn Engine>> = Vec::new();
        let result = Self::open_each(config, clock, &mut opened).await;
        if result.is_err() {
            for engine in opened.iter().rev() {
                let _ = engine.close().await;
            }
        }
        result
    }

    /// Opens only tenancy and documents: what the command line needs for tenants, users and
    /// clients. SQLite admits other processes, so this works while `serve` holds the rest.
    pub async fn open_tenancy(
        config: &StorageConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Tenancy, OpenError> {
        let documents = open_documents(config, clock).await?;
        Ok(Tenancy {
            tenants: documents.clone(),
            documents,
        })
    }

    async fn open_each(
        config: &StorageConfig,
        clock: Arc<dyn Clock>,
        opened: &mut Vec<Arc<dyn Engine>>,
    ) -> Result<Storage, OpenError> {
        let documents = open_documents(config, clock.clone()).await?;
        opened.push(documents.clone());
        let log = open_events(config, clock).await?;
        opened.extend(log.engines());
        let analytics = open_analytics(&config.data_dir, &config.analytics).await?;
        opened.push(analytics.clone());
        let search_dir = config.data_dir.join(files::SEARCH);
        let search_settings = config.search.clone();
        let search = Arc::new(
            blocking::run_open(move || tantivy::TantivySearch::open(&search_dir, &search_settings))
                .await?,
        );
        opened.push(search.clone());
        Ok(Storage {
            tenants: documents.clone(),
            documents,
            details: log.details,
            events: log.events,
            analytics,
            search,
        })
    }

    /// Each engine's state, probed now.
    pub async fn health(&self) -> Vec<EngineHealth> {
        let mut engines: Vec<(&'static str, &dyn Engine)> =
            vec![("documents", &*self.documents), ("events", &*self.events)];
        if !same_engine(&*self.events, &*self.details) {
            engines.push(("details", &*self.details));
        }
        engines.extend([
            ("analytics", &*self.analytics as &dyn Engine),
            ("search", &*self.search),
        ]);
        let mut report = Vec::with_capacity(engines.len());
        for (role, engine) in engines {
            report.push(EngineHealth {
                role,
                engine: engine.engine_name(),
                problem: engine
                    .check()
                    .await
                    .err()
                    .map(|failure| failure.to_string()),
            });
        }
        report
    }

    /// Writes a consistent copy of every engine that holds data of its own into `into` (an
    /// existing directory), each engine once, and returns the files written, relative to `into`.
    /// Tenants and documents are one engine; so are the event log and the log details.
    /// Engines are copied one after the other, each at its own point in time.
    pub async fn snapshot(&self, into: &Path) -> Result<Vec<String>, EngineFailure> {
        let mut written = self.records().snapshot(into).await?;
        for engine in [&*self.analytics as &dyn Engine, &*self.search] {
            written.extend(engine.snapshot(into).await?);
        }
        Ok(written)
    }

    /// Flushes and closes every engine, reporting the first failure after trying them all.
    pub async fn close(&self) -> Result<(), EngineFailure> {
        let mut first_failure = None;
        let mut engines: Vec<&dyn Engine> = vec![&*self.search, &*self.analytics, &*self.events];
        if !same_engine(&*self.events, &*self.details) {
            engines.push(&*self.details);
        }
        engines.push(&*self.documents);
        for engine in engines {
            if let Err(failure) = engine.close().await {
                tracing::error!(engine = engine.engine_name(), error = %failure, "closing failed");
                first_failure.get_or_insert(failure);
            }
        }
        first_failure.map_or(Ok(()), Err)
    }
}

/// The stores of record alone: tenancy and documents, the event log and the log details, without
/// the stores derived from them (analytics, search). What a backup holds.
#[derive(Debug, Clone)]
pub struct Records {
    pub tenants: Arc<dyn TenantStore>,
    pub documents: Arc<dyn DocumentStore>,
    pub events: Arc<dyn EventLog>,
    pub details: Arc<dyn LogDetails>,
}

impl Storage {
    /// Opens (creating if needed) only the stores of record, e.g. to read a snapshot's copies.
    pub async fn open_records(
        config: &StorageConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Records, OpenError> {
        let documents = open_documents(config, clock.clone()).await?;
        let log = match open_events(config, clock).await {
            Ok(log) => log,
            Err(error) => {
                let _ = documents.close().await;
                return Err(error);
            }
        };
        Ok(Records {
            tenants: documents.clone(),
            documents,
            details: log.details,
            events: log.events,
        })
    }
}

impl Storage {
    /// The stores of record of these stores (the same engines, shared).
    pub fn records(&self) -> Records {
        Records {
            tenants: self.tenants.clone(),
            documents: self.documents.clone(),
            events: self.events.clone(),
            details: self.details.clone(),
        }
    }
}

impl Records {
    /// [`Storage::snapshot`] of these stores: each engine once, into `into`.
    pub async fn snapshot(&self, into: &Path) -> Result<Vec<String>, EngineFailure> {
        let mut written = self.documents.snapshot(into).await?;
        written.extend(self.events.snapshot(into).await?);
        if !same_engine(&*self.events, &*self.details) {
            written.extend(self.details.snapshot(into).await?);
        }
        Ok(written)
    }

    /// Closes every engine, reporting the first failure after trying them all.
    pub async fn close(&self) -> Result<(), EngineFailure> {
        let events = self.events.close().await;
        let details = if same_engine(&*self.events, &*self.details) {
            Ok(())
        } else {
            self.details.close().await
        };
        let documents = self.documents.close().await;
        events.and(details).and(documents)
    }
}

/// The schema version a store of record's files carry, as found on disk before opening it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSchema {
    /// `tenancy` or `events`, as in [`schema_versions`].
    pub role: &'static str,
    pub path: PathBuf,
    /// `None` when the store has no files yet.
    pub found: Option<i64>,
    /// The version this build migrates the store to when it opens it.
    pub supported: i64,
}

impl StoredSchema {
    /// Whether opening the store will migrate files an older release wrote.
    pub fn needs_migration(&self) -> bool {
        matches!(self.found, Some(found) if found > 0 && found < self.supported)
    }

    /// The version recorded for a copy of the store as it is: what was found, or this build's
    /// version for a store that has no files yet.
    pub fn version(&self) -> i64 {
        self.found
            .filter(|found| *found > 0)
            .unwrap_or(self.supported)
    }
}

/// Reads the schema version of each embedded store of record in the data dir without changing
/// it, and refuses files that are not ours or come from a newer release. The event log is opened
/// exclusively: only the holder of the data dir may call this (see [`stored_tenancy_schema`]).
/// External engines are not listed; they keep their own schema.
pub fn stored_schemas(config: &StorageConfig) -> Result<Vec<StoredSchema>, OpenError> {
    let mut found = Vec::new();
    if config.documents == DocumentBackend::Sqlite {
        found.push(stored_tenancy_schema(config)?);
    }
    {
        // The embedded log file holds the log details with either event backend.
        let path = config.data_dir.join(files::EVENTS);
        found.push(StoredSchema {
            role: "events",
            found: redb_log::stored_format_version(&path)?,
            supported: redb_log::format_version(),
            path,
        });
    }
    Ok(found)
}

/// The tenancy database's schema alone, read without changing it: safe while `serve` runs.
pub fn stored_tenancy_schema(config: &StorageConfig) -> Result<StoredSchema, OpenError> {
    let path = config.data_dir.join(files::TENANCY);
    Ok(StoredSchema {
        role: "tenancy",
        found: sqlite::stored_schema_version(&path)?,
        supported: sqlite::schema_version(),
        path,
    })
}

/// Copies the embedded stores of record of the data dir into `into` (an existing directory) as
/// they are on disk, without migrating them, and returns the files written (relative to `into`).
/// For a data dir nothing serves: the caller holds it, so nothing writes to the event log.
pub fn copy_stores_as_is(config: &StorageConfig, into: &Path) -> Result<Vec<String>, OpenError> {
    let mut written = Vec::new();
    let tenancy = config.data_dir.join(files::TENANCY);
    if config.documents == DocumentBackend::Sqlite && tenancy.exists() {
        sqlite::copy_as_is(&tenancy, &into.join(files::TENANCY))?;
        written.push(files::TENANCY.to_owned());
    }
    let events = config.data_dir.join(files::EVENTS);
    if events.exists() {
        redb_log::copy_as_is(&events, &into.join(files::EVENTS))?;
        written.push(files::EVENTS.to_owned());
    }
    Ok(written)
}

/// The schema (format) version of each store of record this build writes and reads, by role:
/// a backup records them, so a restore can refuse the files of a newer release.
pub fn schema_versions() -> [(&'static str, i64); 2] {
    [
        ("tenancy", sqlite::schema_version()),
        ("events", redb_log::format_version()),
    ]
}

/// The tenancy engine alone, for processes that must not hold the whole data dir.
#[derive(Debug, Clone)]
pub struct Tenancy {
    pub tenants: Arc<dyn TenantStore>,
    pub documents: Arc<dyn DocumentStore>,
}

impl Tenancy {
    pub async fn close(&self) -> Result<(), EngineFailure> {
        self.documents.close().await
    }
}

async fn open_documents(
    config: &StorageConfig,
    clock: Arc<dyn Clock>,
) -> Result<Arc<dyn DocumentEngine>, OpenError> {
    match &config.documents {
        DocumentBackend::Sqlite => {
            let path = config.data_dir.join(files::TENANCY);
            Ok(Arc::new(
                blocking::run_open(move || sqlite::SqliteStore::open(&path, clock)).await?,
            ))
        }
        #[cfg(feature = "mongo")]
        DocumentBackend::Mongo(settings) => {
            Ok(Arc::new(mongo::MongoStore::open(settings, clock).await?))
        }
        #[cfg(not(feature = "mongo"))]
        DocumentBackend::Mongo(_) => Err(not_compiled("documents", "mongo")),
    }
}

/// The event log and the log details, which may be one engine or two.
struct OpenedLog {
    events: Arc<dyn EventLog>,
    details: Arc<dyn LogDetails>,
    /// Each engine once, for closing on a failed open.
    distinct: Vec<Arc<dyn Engine>>,
}

impl OpenedLog {
    fn engines(&self) -> Vec<Arc<dyn Engine>> {
        self.distinct.clone()
    }
}

async fn open_events(
    config: &StorageConfig,
    clock: Arc<dyn Clock>,
) -> Result<OpenedLog, OpenError> {
    let path = config.data_dir.join(files::EVENTS);
    let cache_bytes = config.event_log_cache_mb.saturating_mul(1024 * 1024);
    let redb_clock = clock.clone();
    let redb = Arc::new(
        blocking::run_open(move || {
            redb_log::RedbLog::open_with_cache(&path, redb_clock, cache_bytes)
        })
        .await?,
    );
    match &config.events {
        EventBackend::Redb => Ok(OpenedLog {
            events: redb.clone(),
            details: redb.clone(),
            distinct: vec![redb],
        }),
        #[cfg(feature = "kafka")]
        EventBackend::Kafka(settings) => {
            let kafka = Arc::new(kafka::KafkaLog::open(settings.clone(), clock));
            Ok(OpenedLog {
                events: kafka.clone(),
                details: redb.clone(),
                distinct: vec![kafka, redb],
            })
        }
        #[cfg(not(feature = "kafka"))]
        EventBackend::Kafka(_) => {
            let _ = (redb.close().await, clock);
            Err(not_compiled("events", "kafka"))
        }
    }
}

/// The configured external event log alone, without the embedded log file (which holds the log
/// details either way): what copying the embedded log into Kafka writes to.
pub fn open_external_events(
    settings: &KafkaSettings,
    clock: Arc<dyn Clock>,
) -> Result<Arc<dyn EventLog>, OpenError> {
    #[cfg(feature = "kafka")]
    {
        Ok(Arc::new(kafka::KafkaLog::open(settings.clone(), clock)))
    }
    #[cfg(not(feature = "kafka"))]
    {
        let _ = (settings, clock);
        Err(not_compiled("events", "kafka"))
    }
}

/// Whether two trait objects are the same engine (one object serving two roles).
fn same_engine(a: &dyn Engine, b: &dyn Engine) -> bool {
    std::ptr::addr_eq(a as *const dyn Engine, b as *const dyn Engine)
}

#[cfg_attr(
    all(feature = "kafka", feature = "mongo", feature = "duckdb"),
    allow(dead_code)
)]
fn not_compiled(role: &'static str, backend: &'static str) -> OpenError {
    OpenError::NotCompiled {
        role,
        backend,
        feature: backend,
    }
}

#[cfg(feature = "duckdb")]
async fn open_analytics(
    data_dir: &Path,
    settings: &AnalyticsSettings,
) -> Result<Arc<dyn Analytics>, OpenError> {
    let path = data_dir.join(files::ANALYTICS);
    let settings = settings.clone();
    let analytics =
        blocking::run_open(move || duckdb::DuckDbAnalytics::open(&path, &settings)).await?;
    Ok(Arc::new(analytics))
}

#[cfg(not(feature = "duckdb"))]
async fn open_analytics(
    _data_dir: &Path,
    _settings: &AnalyticsSettings,
) -> Result<Arc<dyn Analytics>, OpenError> {
    Err(not_compiled("analytics", "duckdb"))
}
