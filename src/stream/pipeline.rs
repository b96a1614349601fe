//! The pipeline's worker: one task that consumes the raw topics of every tenant, joins Fleet
//! activities with their hosts, turns events into unified log entries and writes the sinks.
//!
//! Progress is tracked per `(tenant, topic, group)` in memory and made durable at checkpoints
//! (every `stream.checkpoint_interval_ms`, when idle, and at shutdown): the search index is
//! committed first, then the offsets. A crash therefore repeats at most one checkpoint's work,
//! and every sink is idempotent by `toolEventId`, so repeating it changes nothing.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openframe_storage::TenantId;
use openframe_storage::analytics::LogRow;
use openframe_storage::details::LogKey;
use openframe_storage::error::{AnalyticsError, LogError, SearchError};
use openframe_storage::log::{LogRecord, NewRecord, RetentionPolicy};
use openframe_storage::model::{Collection, DocumentId, GroupId, Offset, Topic, UnixMillis};
use openframe_storage::search::{DocumentKind, SearchDocument};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::envelope::{Envelope, Rejection};
use super::tools::{self, DeviceRef, MessageType, Parsed, ToolEvent, fleet};
use super::{
    DEAD_LETTER_TOPIC, MESSAGE_TYPE_HEADER, Stream, UNIFIED_TOPIC, dead_letter, taxonomy,
    topic_named,
};
use crate::inventory::Attribution;

/// OpenFrame's consumer group for the unified log.
const UNIFIED_GROUP: &str = "openframe-oss-tenant-stream";
/// The Fleet join's consumer group.
const JOIN_GROUP: &str = "openframe-stream-fleet-join";
/// The group whose offset marks how far admins have replayed the dead letters.
const REPLAY_GROUP: &str = "openframe-dead-letter-replay";
/// Where the join keeps `activity id → host id`, so a restart does not forget a host.
const HOST_ACTIVITIES: &str = "fleet_host_activities";
/// The topics the unified consumer reads (the join's output among them).
const UNIFIED_INPUTS: [MessageType; 5] = [
    MessageType::MeshcentralEvent,
    MessageType::FleetMdmEvent,
    MessageType::FleetMdmQueryResultEvent,
    MessageType::FleetMdmPolicyMembershipEvent,
    MessageType::CommandExecuted,
];
const DAY_MS: i64 = 24 * 60 * 60 * 1000;
/// How often progress is made durable while ingest bursts (see `stream.yield_to_ingest_above`).
const BURST_CHECKPOINT: Duration = Duration::from_secs(2);
/// The longest summary kept in the `logs` table; the full message is in the details.
const SUMMARY_CHARS: usize = 500;

/// A unified log entry: what every sink stores, in its own shape.
#[derive(Debug, Clone, PartialEq)]
pub struct LogEntry {
    pub tool_event_id: String,
    pub timestamp: UnixMillis,
    pub ingest_day: String,
    pub tool_type: &'static str,
    pub event_type: &'static str,
    pub severity: &'static str,
    pub summary: String,
    pub message: String,
    pub user: Option<String>,
    pub attribution: Attribution,
    pub source_event_type: String,
    pub details: Value,
    pub source: Value,
    /// Why the event names a device the inventory does not know (it is logged all the same).
    pub unattributed: Option<String>,
}

impl LogEntry {
    fn key(&self) -> LogKey {
        LogKey {
            timestamp: self.timestamp,
            tool_event_id: self.tool_event_id.clone(),
        }
    }

    /// The log-details record (OpenFrame's Cassandra `unified_logs` row), camelCase JSON.
    pub fn details_json(&self) -> Value {
        serde_json::json!({
            "id": format!("{}_{}", self.timestamp, self.tool_event_id),
            "toolEventId": self.tool_event_id,
            "eventTimestamp": self.timestamp,
            "ingestDay": self.ingest_day,
            "toolType": self.tool_type,
            "eventType": self.event_type,
            "severity": self.severity,
            "summary": self.summary,
            "message": self.message,
            "userId": self.user,
            "deviceId": self.attribution.machine_id,
            "hostname": self.attribution.hostname,
            "organizationId": self.attribution.organization_id,
            "organizationName": self.attribution.organization_name,
            "sourceEventType": self.source_event_type,
            "details": self.details,
            "debeziumMessage": self.source,
            "unattributed": self.unattributed,
        })
    }

    /// The `unified.events` record: the list columns and the log id, without the message,
    /// details and source document (read them from the details by the key).
    pub fn live_json(&self) -> Value {
        serde_json::json!({
            "id": format!("{}_{}", self.timestamp, self.tool_event_id),
            "toolEventId": self.tool_event_id,
            "eventTimestamp": self.timestamp,
            "ingestDay": self.ingest_day,
            "toolType": self.tool_type,
            "eventType": self.event_type,
            "severity": self.severity,
            "summary": self.summary,
            "userId": self.user,
            "deviceId": self.attribution.machine_id,
            "hostname": self.attribution.hostname,
            "organizationId": self.attribution.organization_id,
            "organizationName": self.attribution.organization_name,
        })
    }

    /// A record of the live topic ([`LogEntry::live_json`]) as the log row it announces.
    pub fn live_row(value: &Value) -> Option<LogRow> {
        let text = |field: &str| value.get(field).and_then(Value::as_str).map(str::to_owned);
        Some(LogRow {
            tool_event_id: text("toolEventId")?,
            event_timestamp: value.get("eventTimestamp")?.as_i64()?,
            ingest_day: text("ingestDay").unwrap_or_default(),
            tool_type: text("toolType")?,
            event_type: text("eventType")?,
            severity: text("severity")?,
            summary: text("summary").unwrap_or_default(),
            user_id: text("userId"),
            device_id: text("deviceId"),
            hostname: text("hostname"),
            organization_id: text("organizationId"),
            organization_name: text("organizationName"),
        })
    }

    /// Reads a log-details record back ([`LogEntry::details_json`]'s shape); `None` when it is
    /// not one (or names a type or tool this build does not know).
    pub fn from_details_json(value: &Value) -> Option<LogEntry> {
        let text = |field: &str| value.get(field).and_then(Value::as_str).map(str::to_owned);
        let event_type = taxonomy::event_type(value.get("eventType")?.as_str()?)?;
        let severity = taxonomy::Severity::parse(value.get("severity")?.as_str()?)?;
        let tool_type = value.get("toolType")?.as_str()?;
        let tool_type = tools::INTEGRATIONS
            .iter()
            .map(|integration| integration.tool_type())
            .find(|known| *known == tool_type)?;
        Some(LogEntry {
            tool_event_id: text("toolEventId")?,
            timestamp: value.get("eventTimestamp")?.as_i64()?,
            ingest_day: text("ingestDay")?,
            tool_type,
            event_type: event_type.name,
            severity: severity.as_str(),
            summary: text("summary").unwrap_or_default(),
            message: text("message").unwrap_or_default(),
            user: text("userId"),
            attribution: Attribution {
                machine_id: text("deviceId"),
                hostname: text("hostname"),
                organization_id: text("organizationId"),
                organization_name: text("organizationName"),
            },
            source_event_type: text("sourceEventType").unwrap_or_default(),
            details: value.get("details").cloned().unwrap_or(Value::Null),
            source: value.get("debeziumMessage").cloned().unwrap_or(Value::Null),
            unattributed: text("unattributed"),
        })
    }

    pub fn row(&self) -> LogRow {
        LogRow {
            tool_event_id: self.tool_event_id.clone(),
            event_timestamp: self.timestamp,
            ingest_day: self.ingest_day.clone(),
            tool_type: self.tool_type.to_owned(),
            event_type: self.event_type.to_owned(),
            severity: self.severity.to_owned(),
            summary: self.summary.clone(),
            user_id: self.user.clone(),
            device_id: self.attribution.machine_id.clone(),
            hostname: self.attribution.hostname.clone(),
            organization_id: self.attribution.organization_id.clone(),
            organization_name: self.attribution.organization_name.clone(),
        }
    }

    pub fn search_document(&self) -> SearchDocument {
        SearchDocument {
            kind: DocumentKind::Log,
            id: self.tool_event_id.clone(),
            timestamp: self.timestamp,
            summary: self.summary.clone(),
            message: self.message.clone(),
            hostname: self.attribution.hostname.clone().unwrap_or_default(),
            organization_name: self
                .attribution
                .organization_name
                .clone()
                .unwrap_or_default(),
            user: self.user.clone().unwrap_or_default(),
        }
    }
}

/// A failure that stops a pass: a store is unavailable. The worker backs off and retries; the
/// data stays in the log.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Unavailable(String);

impl From<LogError> for Unavailable {
    fn from(error: LogError) -> Self {
        Unavailable(error.to_string())
    }
}

/// Why an event did not become a log entry.
enum EntryFailure {
    /// The event itself is bad: it goes to the dead-letter topic.
    Event(Rejection),
    Store(Unavailable),
}

impl From<Rejection> for EntryFailure {
    fn from(rejection: Rejection) -> Self {
        EntryFailure::Event(rejection)
    }
}

/// A sink's answer to a batch.
enum SinkFailure {
    /// The sink refuses the data itself; retrying cannot help.
    Refused(String),
    Unavailable(Unavailable),
}

impl From<LogError> for SinkFailure {
    fn from(error: LogError) -> Self {
        match error {
            LogError::InvalidRecord(why) => SinkFailure::Refused(why),
            other => SinkFailure::Unavailable(other.into()),
        }
    }
}

impl From<AnalyticsError> for SinkFailure {
    fn from(error: AnalyticsError) -> Self {
        match error {
            AnalyticsError::InvalidQuery(why) => SinkFailure::Refused(why),
            other => SinkFailure::Unavailable(Unavailable(other.to_string())),
        }
    }
}

impl From<SearchError> for SinkFailure {
    fn from(error: SearchError) -> Self {
        match error {
            SearchError::InvalidDocument(why) | SearchError::InvalidQuery(why) => {
                SinkFailure::Refused(why)
            }
            other => SinkFailure::Unavailable(Unavailable(other.to_string())),
        }
    }
}

type StreamKey = (TenantId, Topic, GroupId);

#[derive(Debug, Clone, Copy)]
struct Position {
    next: Offset,
    committed: Option<Offset>,
}

/// The worker's state: positions, the join's memory, and its timers.
struct Worker {
    stream: Arc<Stream>,
    positions: HashMap<StreamKey, Position>,
    /// `(tenant, activity id)` → Fleet host id; a cache of the durable join table.
    host_of: HashMap<(TenantId, String), String>,
    /// The earliest time a waiting Fleet activity's window ends.
    join_wakes_at: Option<UnixMillis>,
    /// When each record processed since the last checkpoint was appended: at the checkpoint,
    /// how long each took to become searchable is observed.
    appended_since_checkpoint: Vec<UnixMillis>,
    last_checkpoint: Instant,
    last_recount: Instant,
    next_retention: Instant,
}

impl Stream {
    /// Starts the worker. It stops, after a last checkpoint, when `stop` is cancelled.
    pub fn spawn_worker(self: &Arc<Self>, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
        let worker = Worker {
            stream: self.clone(),
            positions: HashMap::new(),
            host_of: HashMap::new(),
            join_wakes_at: None,
            appended_since_checkpoint: Vec::new(),
            last_checkpoint: Instant::now(),
            last_recount: Instant::now(),
            // The first retention pass runs a minute after start, off the startup path.
            next_retention: Instant::now() + Duration::from_secs(60),
        };
        tokio::spawn(worker.run(stop))
    }

    /// The tenant's dead letters not yet replayed, oldest first, at most `limit`.
    pub async fn dead_letters(
        &self,
        tenant: &TenantId,
        limit: usize,
    ) -> Result<(Vec<LogRecord>, u64), Unavailable> {
        let topic = topic_named(DEAD_LETTER_TOPIC).map_err(Unavailable)?;
        let group = group_named(REPLAY_GROUP)?;
        let events = &self.storage.events;
        let from = events
            .committed_offset(tenant, &topic, &group)
            .await?
            .unwrap_or(Offset(0));
        let bounds = events.bounds(tenant, &topic).await?;
        let pending = bounds.end.0.saturating_sub(from.0.max(bounds.start.0));
        let records = events.read(tenant, &topic, from, limit).await?;
        Ok((records, pending))
    }

    /// Puts every pending dead letter back on the topic it came from, so the pipeline tries it
    /// again (after a mapping fix, a new device, …). Returns how many went back.
    pub async fn replay_dead_letters(&self, tenant: &TenantId) -> Result<u64, Unavailable> {
        let topic = topic_named(DEAD_LETTER_TOPIC).map_err(Unavailable)?;
        let group = group_named(REPLAY_GROUP)?;
        let events = &self.storage.events;
        let mut from = events
            .committed_offset(tenant, &topic, &group)
            .await?
            .unwrap_or(Offset(0));
        let end = events.bounds(tenant, &topic).await?.end;
        let mut replayed = 0;
        while from < end {
            let records = events.read(tenant, &topic, from, 500).await?;
            let Some(last) = records.last() else { break };
            let next = last.offset.next();
            let mut by_topic: HashMap<String, Vec<NewRecord>> = HashMap::new();
            for stored in records.into_iter().filter(|stored| stored.offset < end) {
                let source = stored
                    .record
                    .header(super::DEAD_LETTER_SOURCE)
                    .map(|name| String::from_utf8_lossy(name).into_owned());
                let message_type = stored
                    .record
                    .header(MESSAGE_TYPE_HEADER)
                    .map(<[u8]>::to_vec);
                let (Some(source), Some(message_type)) = (source, message_type) else {
                    continue;
                };
                by_topic.entry(source).or_default().push(NewRecord {
                    key: stored.record.key,
                    headers: vec![(MESSAGE_TYPE_HEADER.to_owned(), message_type)],
                    value: stored.record.value,
                });
            }
            for (name, batch) in by_topic {
                let Ok(target) = Topic::parse(&name) else {
                    continue;
                };
                let count = u64::try_from(batch.len()).unwrap_or(0);
                let added = i64::try_from(count).unwrap_or(0);
                self.add_backlog(added);
                if let Err(error) = events.append_batch(tenant, &target, batch).await {
                    self.add_backlog(-added);
                    return Err(error.into());
                }
                replayed += count;
            }
            events
                .commit_offset(tenant, &topic, &group, next.min(end))
                .await?;
            from = next;
        }
        self.wake.notify_one();
        Ok(replayed)
    }

    /// Runs hourly in the worker (and on demand): deletes log entries past `stream.log_retention_days` from every store, and raw records
    /// past `stream.raw_retention_days` from the event log.
    pub async fn enforce_retention(&self) {
        let settings = &self.settings;
        let storage = &self.storage;
        let now = self.clock.now_ms();
        let log_days = i64::try_from(settings.log_retention_days).unwrap_or(i64::MAX);
        let raw_days = i64::try_from(settings.raw_retention_days).unwrap_or(i64::MAX);
        let tenants = match storage.tenants.tenants().await {
            Ok(tenants) => tenants,
            Err(error) => {
                tracing::warn!(%error, "log retention skipped: tenants unreadable");
                return;
            }
        };
        for tenant in tenants {
            let id = &tenant.id;
            let days = settings
                .tenant_log_retention_days
                .get(id.as_str())
                .and_then(|days| i64::try_from(*days).ok())
                .unwrap_or(log_days);
            let cutoff = now.saturating_sub(days.saturating_mul(DAY_MS));
            let outcome = async {
                let rows = storage
                    .analytics
                    .delete_logs_before(id, cutoff)
                    .await
                    .map_err(|e| e.to_string())?;
                let details = storage
                    .details
                    .delete_before(id, cutoff)
                    .await
                    .map_err(|e| e.to_string())?;
                storage
                    .search
                    .delete_before(id, DocumentKind::Log, cutoff)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok::<_, String>((rows, details))
            }
            .await;
            match outcome {
                Ok((0, 0)) => {}
                Ok((rows, details)) => {
                    tracing::info!(tenant = %id, rows, details, "deleted log entries past retention")
                }
                Err(error) => {
                    tracing::warn!(tenant = %id, %error, "log retention failed; retried in an hour")
                }
            }
        }
        let raw = RetentionPolicy {
            max_age_ms: Some(raw_days.saturating_mul(DAY_MS)),
            max_bytes: (settings.raw_retention_max_mb > 0)
                .then(|| settings.raw_retention_max_mb.saturating_mul(1024 * 1024)),
        };
        let logs = RetentionPolicy {
            max_age_ms: Some(log_days.saturating_mul(DAY_MS)),
            max_bytes: None,
        };
        let mut topics: Vec<(&str, RetentionPolicy)> = MessageType::ALL
            .iter()
            .map(|message_type| (message_type.topic(), raw))
            .collect();
        topics.push((UNIFIED_TOPIC, raw));
        topics.push((DEAD_LETTER_TOPIC, logs));
        topics.sort_by_key(|(name, _)| *name);
        topics.dedup_by_key(|(name, _)| *name);
        for (name, policy) in topics {
            let Ok(topic) = topic_named(name) else {
                continue;
            };
            if let Err(error) = storage.events.enforce_retention(&topic, policy).await {
                tracing::warn!(topic = name, %error, "event log retention failed; retried in an hour");
            }
        }
    }

    /// Reads one raw record into a log entry; `None` for events OpenFrame skips.
    async fn unified_entry(
        &self,
        tenant: &TenantId,
        record: &LogRecord,
    ) -> Result<Option<LogEntry>, EntryFailure> {
        let message_type = message_type_of(&record.record)?;
        let integration = tools::integration_for(message_type).ok_or_else(|| {
            Rejection::new(
                "unknown_message_type",
                format!("no tool reads {}", message_type.as_str()),
            )
        })?;
        let value: Value = serde_json::from_slice(&record.record.value).map_err(|error| {
            Rejection::new(
                "malformed_json",
                format!("the stored event is not JSON: {error}"),
            )
        })?;
        let envelope = Envelope::parse(value)?;
        let event = match integration.parse(message_type, &envelope)? {
            Parsed::Skip(_) => return Ok(None),
            Parsed::Event(event) => *event,
        };
        let overridden = self
            .mappings
            .resolve(tenant, integration.db_name(), &event.source_event_type)
            .await
            .map_err(|error| EntryFailure::Store(Unavailable(error.to_string())))?;
        let (event_type, severity) = match overridden {
            Some(chosen) => (chosen.event_type, chosen.severity),
            None => (
                integration
                    .map(&event.source_event_type)
                    .and_then(taxonomy::event_type)
                    .unwrap_or_else(taxonomy::unknown),
                None,
            ),
        };
        let attribution = match &event.device {
            Some(device) => self
                .inventory
                .attribute(tenant, device)
                .await
                .map_err(|error| EntryFailure::Store(Unavailable(error.to_string())))?,
            None => Attribution::default(),
        };
        let unattributed = match &event.device {
            Some(_) if attribution.hostname.is_some() => None,
            Some(DeviceRef::AgentToolId { tool_type, id }) => Some(format!(
                "no {tool_type} tool connection has agentToolId {id:?}: connect the device to attribute its events"
            )),
            Some(DeviceRef::Machine(id)) => Some(format!("machine {id:?} is not in the inventory")),
            None => None,
        };
        if unattributed.is_some() {
            self.count("unattributed", 1);
        }
        let mut entry = entry(
            integration.tool_type(),
            event_type,
            severity,
            event,
            attribution,
        );
        entry.unattributed = unattributed;
        Ok(Some(entry))
    }

    /// Writes entries to every sink: log details, analytics, search and the live topic.
    async fn write_sinks(
        &self,
        tenant: &TenantId,
        entries: &[LogEntry],
    ) -> Result<(), SinkFailure> {
        if entries.is_empty() {
            return Ok(());
        }
        let storage = &self.storage;
        let details = entries
            .iter()
            .map(|entry| {
                let bytes = serde_json::to_vec(&entry.details_json()).unwrap_or_default();
                (entry.key(), bytes)
            })
            .collect();
        let unified =
            topic_named(UNIFIED_TOPIC).map_err(|why| SinkFailure::Unavailable(Unavailable(why)))?;
        // Live subscribers get what they filter on and the key of the details: the full record
        // is one point read away, and the log is not written twice.
        let live = entries
            .iter()
            .map(|entry| NewRecord {
                key: Some(entry.tool_event_id.clone().into_bytes()),
                headers: Vec::new(),
                value: serde_json::to_vec(&entry.live_json()).unwrap_or_default(),
            })
            .collect();
        let rows = entries.iter().map(LogEntry::row).collect();
        let documents = entries.iter().map(LogEntry::search_document).collect();
        // The sinks are independent engines on their own threads: written concurrently, so a
        // batch costs the slowest of them, not their sum. Offsets move only after all succeed.
        let (details, analytics, search, live) = tokio::join!(
            storage.details.put_batch(tenant, details),
            storage.analytics.append_logs(tenant, rows),
            storage.search.index(tenant, documents),
            storage.events.append_batch(tenant, &unified, live),
        );
        details?;
        analytics?;
        search?;
        live?;
        Ok(())
    }
}

impl Worker {
    async fn run(mut self, stop: CancellationToken) {
        if let Err(error) = self.recount_backlog().await {
            tracing::warn!(%error, "counting the event backlog failed");
        }
        let checkpoint_every = Duration::from_millis(self.stream.settings.checkpoint_interval_ms);
        let mut failures: u32 = 0;
        let mut last_pass = Instant::now();
        while !stop.is_cancelled() {
            // During an ingest burst, acknowledging comes first: one pass a second, and a
            // checkpoint (a search commit, which makes segments to merge) every two.
            let bursting = self.stream.ingest_is_bursting();
            if bursting && last_pass.elapsed() < Duration::from_secs(1) {
                if self.dirty() && self.last_checkpoint.elapsed() >= BURST_CHECKPOINT {
                    self.checkpoint().await;
                }
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep(Duration::from_millis(20)) => {}
                }
                continue;
            }
            last_pass = Instant::now();
            let progressed = match self.pass().await {
                Ok(progressed) => {
                    failures = 0;
                    progressed
                }
                Err(error) => {
                    failures = failures.saturating_add(1);
                    let backoff = Duration::from_millis(100u64 << failures.min(6));
                    tracing::warn!(%error, retry_in_ms = backoff.as_millis(), "the event pipeline cannot progress");
                    tokio::select! {
                        () = stop.cancelled() => break,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    continue;
                }
            };
            if progressed {
                self.stream
                    .idle
                    .store(false, std::sync::atomic::Ordering::Release);
            }
            let every = if bursting {
                BURST_CHECKPOINT
            } else {
                checkpoint_every
            };
            let idle_now = !progressed && !bursting;
            if self.dirty() && (idle_now || self.last_checkpoint.elapsed() >= every) {
                self.checkpoint().await;
            }
            if Instant::now() >= self.next_retention {
                self.next_retention = Instant::now() + Duration::from_secs(3600);
                self.stream.enforce_retention().await;
            }
            if !progressed {
                if !self.dirty() {
                    self.stream
                        .idle
                        .store(true, std::sync::atomic::Ordering::Release);
                }
                let idle = self.idle_wait();
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = self.stream.wake.notified() => {}
                    () = tokio::time::sleep(idle) => {}
                }
            }
        }
        self.checkpoint().await;
    }

    /// How long to sleep with nothing to do: until a waiting Fleet activity's window ends, or a
    /// second (events appended by other producers, such as a Kafka connector, are found then).
    fn idle_wait(&self) -> Duration {
        let second = Duration::from_secs(1);
        match self.join_wakes_at {
            Some(at) => {
                let wait = at.saturating_sub(self.stream.clock.now_ms()).max(10);
                Duration::from_millis(u64::try_from(wait).unwrap_or(1000)).min(second)
            }
            None => second,
        }
    }

    fn dirty(&self) -> bool {
        self.positions
            .values()
            .any(|position| position.committed != Some(position.next))
    }

    /// One round over every stream; true when anything moved.
    async fn pass(&mut self) -> Result<bool, Unavailable> {
        let mut progressed = false;
        let hosts = topic_named(MessageType::FleetHostActivity.topic()).map_err(Unavailable)?;
        for tenant in self.stream.storage.events.tenants_of(&hosts).await? {
            progressed |= self.join_hosts(&tenant, &hosts).await?;
        }
        self.join_wakes_at = None;
        let activities = topic_named(MessageType::FleetActivity.topic()).map_err(Unavailable)?;
        for tenant in self.stream.storage.events.tenants_of(&activities).await? {
            progressed |= self.join_activities(&tenant, &activities).await?;
        }
        for message_type in UNIFIED_INPUTS {
            let topic = topic_named(message_type.topic()).map_err(Unavailable)?;
            for tenant in self.stream.storage.events.tenants_of(&topic).await? {
                progressed |= self.unify(&tenant, &topic).await?;
            }
        }
        Ok(progressed)
    }

    async fn position(
        &mut self,
        tenant: &TenantId,
        topic: &Topic,
        group: &str,
    ) -> Result<(StreamKey, Position), Unavailable> {
        let key = (tenant.clone(), topic.clone(), group_named(group)?);
        if let Some(position) = self.positions.get(&key) {
            return Ok((key, *position));
        }
        let committed = self
            .stream
            .storage
            .events
            .committed_offset(tenant, topic, &key.2)
            .await?;
        let position = Position {
            next: committed.unwrap_or(Offset(0)),
            committed,
        };
        self.positions.insert(key.clone(), position);
        Ok((key, position))
    }

    fn advance(&mut self, key: &StreamKey, next: Offset, processed: usize) {
        if let Some(position) = self.positions.get_mut(key) {
            position.next = next;
        }
        self.stream
            .add_backlog(-i64::try_from(processed).unwrap_or(0));
    }

    /// The next batch of a stream for `group`, with the stream's position.
    async fn read(
        &mut self,
        tenant: &TenantId,
        topic: &Topic,
        group: &str,
    ) -> Result<(StreamKey, Position, Vec<LogRecord>), Unavailable> {
        let (key, position) = self.position(tenant, topic, group).await?;
        let batch = usize::try_from(self.stream.settings.consumer_batch).unwrap_or(1000);
        let records = self
            .stream
            .storage
            .events
            .read(tenant, topic, position.next, batch)
            .await?;
        Ok((key, position, records))
    }

    /// Appends refused events to the tenant's dead-letter topic.
    async fn bury(&self, tenant: &TenantId, dead: Vec<NewRecord>) -> Result<(), Unavailable> {
        if dead.is_empty() {
            return Ok(());
        }
        self.stream.count("dead_lettered", dead.len());
        let dead_topic = topic_named(DEAD_LETTER_TOPIC).map_err(Unavailable)?;
        self.stream
            .storage
            .events
            .append_batch(tenant, &dead_topic, dead)
            .await?;
        Ok(())
    }

    /// The unified consumer on one stream: parse, map, enrich, write the sinks.
    async fn unify(&mut self, tenant: &TenantId, topic: &Topic) -> Result<bool, Unavailable> {
        let (key, _, records) = self.read(tenant, topic, UNIFIED_GROUP).await?;
        let Some(last) = records.last() else {
            return Ok(false);
        };
        let next = last.offset.next();
        let mut entries = Vec::with_capacity(records.len());
        let mut dead = Vec::new();
        let mut skipped = 0;
        for record in &records {
            match self.stream.unified_entry(tenant, record).await {
                Ok(Some(entry)) => entries.push(entry),
                Ok(None) => skipped += 1,
                Err(EntryFailure::Event(rejection)) => {
                    dead.push(dead_letter_of(record, topic, &rejection));
                }
                Err(EntryFailure::Store(unavailable)) => return Err(unavailable),
            }
        }
        match self.stream.write_sinks(tenant, &entries).await {
            Ok(()) => {}
            Err(SinkFailure::Unavailable(unavailable)) => return Err(unavailable),
            // One entry the sinks refuse must not hold back the rest: write them one by one
            // and dead-letter the refused.
            Err(SinkFailure::Refused(_)) => {
                let mut kept = Vec::with_capacity(entries.len());
                for entry in entries.drain(..) {
                    match self
                        .stream
                        .write_sinks(tenant, std::slice::from_ref(&entry))
                        .await
                    {
                        Ok(()) => kept.push(entry),
                        Err(SinkFailure::Unavailable(unavailable)) => return Err(unavailable),
                        Err(SinkFailure::Refused(why)) => {
                            if let Some(record) = records.iter().find(|record| {
                                record.record.key.as_deref() == Some(entry.tool_event_id.as_bytes())
                            }) {
                                dead.push(dead_letter_of(
                                    record,
                                    topic,
                                    &Rejection::new("sink_refused", why),
                                ));
                            } else {
                                tracing::error!(tenant = %tenant, tool_event_id = %entry.tool_event_id, reason = %why, "a sink refused an event");
                            }
                        }
                    }
                }
                entries = kept;
            }
        }
        self.bury(tenant, dead).await?;
        self.stream.count("logged", entries.len());
        if self.appended_since_checkpoint.len() < 1_000_000 {
            self.appended_since_checkpoint
                .extend(records.iter().map(|record| record.appended_at));
        }
        self.stream.count("skipped", skipped);
        self.advance(&key, next, records.len());
        Ok(true)
    }

    /// The join's first half: remember which host each activity concerned, durably.
    async fn join_hosts(&mut self, tenant: &TenantId, topic: &Topic) -> Result<bool, Unavailable> {
        let (key, _, records) = self.read(tenant, topic, JOIN_GROUP).await?;
        let Some(last) = records.last() else {
            return Ok(false);
        };
        let next = last.offset.next();
        let collection =
            Collection::parse(HOST_ACTIVITIES).map_err(|error| Unavailable(error.to_string()))?;
        let mut dead = Vec::new();
        for record in &records {
            let pair = parse_stored(&record.record).and_then(|envelope| {
                let after = envelope.after()?;
                fleet::host_activity(&after)
            });
            let (activity, host) = match pair {
                Ok(pair) => pair,
                Err(rejection) => {
                    dead.push(dead_letter_of(record, topic, &rejection));
                    continue;
                }
            };
            let Ok(id) = DocumentId::parse(&activity) else {
                dead.push(dead_letter_of(
                    record,
                    topic,
                    &Rejection::new("invalid_field", "`after.activity_id` is not a usable id"),
                ));
                continue;
            };
            let body = serde_json::json!({ "hostId": host, "seenAt": record.appended_at });
            self.stream
                .storage
                .documents
                .replace(tenant, &collection, &id, &body, None)
                .await
                .map_err(|error| Unavailable(error.to_string()))?;
            self.host_of.insert((tenant.clone(), activity), host);
        }
        self.bury(tenant, dead).await?;
        self.advance(&key, next, records.len());
        Ok(true)
    }

    /// The join's second half: an activity goes on, with its host, once the host is known or
    /// its window has passed (then without one: most activities concern no host).
    async fn join_activities(
        &mut self,
        tenant: &TenantId,
        topic: &Topic,
    ) -> Result<bool, Unavailable> {
        let (key, position, records) = self.read(tenant, topic, JOIN_GROUP).await?;
        if records.is_empty() {
            return Ok(false);
        }
        let window = i64::try_from(self.stream.settings.fleet_join_window_ms).unwrap_or(i64::MAX);
        let now = self.stream.clock.now_ms();
        let mut next = position.next;
        let mut consumed = 0;
        let mut joined = Vec::new();
        let mut dead = Vec::new();
        for record in &records {
            let parsed = parse_stored(&record.record).and_then(|envelope| {
                let after = envelope.after()?;
                let id = fleet::activity_id(&after).ok_or_else(|| {
                    Rejection::new("missing_field", "`after.id` (the activity id) is required")
                })?;
                Ok((envelope, after, id))
            });
            let (envelope, mut after, activity) = match parsed {
                Ok(parsed) => parsed,
                Err(rejection) => {
                    dead.push(dead_letter_of(record, topic, &rejection));
                    next = record.offset.next();
                    consumed += 1;
                    continue;
                }
            };
            let host = self.host_for(tenant, &activity).await?;
            if host.is_none() && record.appended_at.saturating_add(window) > now {
                // Order is kept: this activity and the ones after it wait.
                let wakes = record.appended_at.saturating_add(window);
                self.join_wakes_at = Some(self.join_wakes_at.map_or(wakes, |at| at.min(wakes)));
                break;
            }
            if let Some(host) = host {
                after.insert(fleet::JOINED_HOST_FIELD.to_owned(), Value::String(host));
            }
            let policy = after
                .get("activity_type")
                .and_then(Value::as_str)
                .is_some_and(|kind| fleet::POLICY_ACTIVITIES.contains(&kind));
            let message_type = if policy {
                MessageType::FleetMdmPolicyActivityEvent
            } else {
                MessageType::FleetMdmEvent
            };
            let mut payload = envelope.payload;
            payload.insert("after".to_owned(), Value::Object(after));
            joined.push(NewRecord {
                key: record.record.key.clone(),
                headers: vec![(
                    MESSAGE_TYPE_HEADER.to_owned(),
                    message_type.as_str().as_bytes().to_vec(),
                )],
                value: serde_json::to_vec(&payload).unwrap_or_default(),
            });
            next = record.offset.next();
            consumed += 1;
        }
        if consumed == 0 {
            return Ok(false);
        }
        if !joined.is_empty() {
            let output = topic_named(MessageType::FleetMdmEvent.topic()).map_err(Unavailable)?;
            let count = i64::try_from(joined.len()).unwrap_or(0);
            self.stream.add_backlog(count);
            if let Err(error) = self
                .stream
                .storage
                .events
                .append_batch(tenant, &output, joined)
                .await
            {
                self.stream.add_backlog(-count);
                return Err(error.into());
            }
        }
        self.bury(tenant, dead).await?;
        self.advance(&key, next, consumed);
        Ok(true)
    }

    async fn host_for(
        &mut self,
        tenant: &TenantId,
        activity: &str,
    ) -> Result<Option<String>, Unavailable> {
        if let Some(host) = self.host_of.get(&(tenant.clone(), activity.to_owned())) {
            return Ok(Some(host.clone()));
        }
        let (Ok(collection), Ok(id)) = (
            Collection::parse(HOST_ACTIVITIES),
            DocumentId::parse(activity),
        ) else {
            return Ok(None);
        };
        let stored = self
            .stream
            .storage
            .documents
            .get(tenant, &collection, &id)
            .await
            .map_err(|error| Unavailable(error.to_string()))?;
        let host = stored.and_then(|document| {
            document
                .body
                .get("hostId")
                .and_then(Value::as_str)
                .map(str::to_owned)
        });
        if let Some(host) = &host {
            self.host_of
                .insert((tenant.clone(), activity.to_owned()), host.clone());
        }
        Ok(host)
    }

    /// Makes progress durable: the search index first (so no committed offset points past a
    /// document that only lived in memory), then every moved offset.
    async fn checkpoint(&mut self) {
        if let Err(error) = self.stream.storage.search.refresh().await {
            tracing::warn!(%error, "committing the search index failed; offsets are kept back");
            return;
        }
        let moved: Vec<(StreamKey, Offset)> = self
            .positions
            .iter()
            .filter(|(_, position)| position.committed != Some(position.next))
            .map(|(key, position)| (key.clone(), position.next))
            .collect();
        for ((tenant, topic, group), next) in moved {
            match self
                .stream
                .storage
                .events
                .commit_offset(&tenant, &topic, &group, next)
                .await
            {
                Ok(()) => {
                    if let Some(position) = self.positions.get_mut(&(tenant, topic, group)) {
                        position.committed = Some(next);
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "committing a consumer offset failed; it is retried")
                }
            }
        }
        self.last_checkpoint = Instant::now();
        let now = self.stream.clock.now_ms();
        let histogram = &self.stream.metrics.stream_searchable_seconds;
        for appended_at in self.appended_since_checkpoint.drain(..) {
            histogram.observe(now.saturating_sub(appended_at).max(0) as f64 / 1000.0);
        }
        if self.last_recount.elapsed() >= Duration::from_secs(5)
            && let Err(error) = self.recount_backlog().await
        {
            tracing::warn!(%error, "counting the event backlog failed");
        }
        // The join's memory is bounded: activities older than the window are found in the
        // store if they ever come back (a replay).
        if self.host_of.len() > 100_000 {
            self.host_of.clear();
        }
    }

    /// Sets the backlog to what the log says: records past each consumer's position.
    async fn recount_backlog(&mut self) -> Result<(), Unavailable> {
        let mut total: u64 = 0;
        let inputs = [
            (MessageType::FleetHostActivity, JOIN_GROUP),
            (MessageType::FleetActivity, JOIN_GROUP),
        ]
        .into_iter()
        .chain(
            UNIFIED_INPUTS
                .into_iter()
                .map(|message_type| (message_type, UNIFIED_GROUP)),
        );
        for (message_type, group) in inputs {
            let topic = topic_named(message_type.topic()).map_err(Unavailable)?;
            for tenant in self.stream.storage.events.tenants_of(&topic).await? {
                let (_, position) = self.position(&tenant, &topic, group).await?;
                let bounds = self.stream.storage.events.bounds(&tenant, &topic).await?;
                total += bounds
                    .end
                    .0
                    .saturating_sub(position.next.0.max(bounds.start.0));
            }
        }
        let total = i64::try_from(total).unwrap_or(i64::MAX);
        self.stream
            .backlog
            .store(total, std::sync::atomic::Ordering::Relaxed);
        self.stream.metrics.stream_backlog.set(total.max(0));
        self.last_recount = Instant::now();
        Ok(())
    }
}

fn group_named(name: &str) -> Result<GroupId, Unavailable> {
    GroupId::parse(name).map_err(|error| Unavailable(error.to_string()))
}

fn message_type_of(record: &NewRecord) -> Result<MessageType, Rejection> {
    let header = record.header(MESSAGE_TYPE_HEADER).ok_or_else(|| {
        Rejection::new(
            "missing_message_type",
            "the record has no message-type header",
        )
    })?;
    let name = std::str::from_utf8(header).unwrap_or("");
    MessageType::parse(name).ok_or_else(|| {
        Rejection::new(
            "unknown_message_type",
            format!(
                "message-type {name:?} is not one of {}",
                MessageType::expected()
            ),
        )
    })
}

fn parse_stored(record: &NewRecord) -> Result<Envelope, Rejection> {
    let value: Value = serde_json::from_slice(&record.value).map_err(|error| {
        Rejection::new(
            "malformed_json",
            format!("the stored event is not JSON: {error}"),
        )
    })?;
    Envelope::parse(value)
}

fn dead_letter_of(record: &LogRecord, topic: &Topic, rejection: &Rejection) -> NewRecord {
    let message_type = message_type_of(&record.record).unwrap_or(MessageType::MeshcentralEvent);
    let mut letter = dead_letter(
        message_type,
        topic.as_str(),
        rejection,
        &record.record.value,
    );
    // Keep the header exactly as it was, even when it named no known type.
    if let Some(original) = record.record.header(MESSAGE_TYPE_HEADER)
        && let Some(header) = letter
            .headers
            .iter_mut()
            .find(|(name, _)| name == MESSAGE_TYPE_HEADER)
    {
        header.1 = original.to_vec();
    }
    letter.key = record.record.key.clone();
    letter
}

/// Builds the unified entry: the type's severity and summary, the tool's message, the device.
fn entry(
    tool_type: &'static str,
    event_type: &'static taxonomy::EventType,
    severity: Option<taxonomy::Severity>,
    event: ToolEvent,
    attribution: Attribution,
) -> LogEntry {
    let message = event.message.unwrap_or_default();
    let first_line = message.lines().next().unwrap_or("").trim();
    let summary = if first_line.is_empty() {
        event_type.summary.to_owned()
    } else {
        first_line.chars().take(SUMMARY_CHARS).collect()
    };
    LogEntry {
        ingest_day: utc_day(event.timestamp),
        tool_event_id: event.tool_event_id,
        timestamp: event.timestamp,
        tool_type,
        event_type: event_type.name,
        severity: severity.unwrap_or(event_type.severity).as_str(),
        summary,
        message: if message.is_empty() {
            event_type.summary.to_owned()
        } else {
            message
        },
        user: event.user,
        attribution,
        source_event_type: event.source_event_type,
        details: event.details,
        source: event.source,
        unattributed: None,
    }
}

/// `YYYY-MM-DD` of a timestamp in UTC (the event's day, so a re-sent event lands on the same
/// partition).
pub fn utc_day(timestamp: UnixMillis) -> String {
    let moment = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(timestamp) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let date = moment.date();
    format!(
        "{:04}-{:02}-{:02}",
        date.year(),
        u8::from(date.month()),
        date.day()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_are_utc_and_zero_padded() {
        assert_eq!(utc_day(1763629201000), "2025-11-20");
        assert_eq!(utc_day(0), "1970-01-01");
        assert_eq!(utc_day(-1), "1969-12-31");
    }

    #[test]
    fn an_entry_takes_the_type_summary_only_when_the_tool_says_nothing() {
        let event = |message: Option<&str>| ToolEvent {
            tool_event_id: "id".into(),
            source_event_type: "user.login".into(),
            timestamp: 1763629201000,
            message: message.map(str::to_owned),
            user: Some("admin".into()),
            device: None,
            details: Value::Null,
            source: Value::Null,
        };
        let login = taxonomy::event_type("LOGIN").unwrap();
        let silent = entry(
            "MESHCENTRAL",
            login,
            None,
            event(None),
            Attribution::default(),
        );
        assert_eq!(silent.summary, "User logged in");
        assert_eq!(silent.message, "User logged in");
        let spoken = entry(
            "MESHCENTRAL",
            login,
            Some(taxonomy::Severity::Error),
            event(Some("Account login\nsecond line")),
            Attribution::default(),
        );
        assert_eq!(spoken.summary, "Account login");
        assert_eq!(spoken.message, "Account login\nsecond line");
        assert_eq!((silent.severity, spoken.severity), ("INFO", "ERROR"));
        assert_eq!(spoken.details_json()["id"], "1763629201000_id");
        assert_eq!(spoken.row().ingest_day, "2025-11-20");
    }
}
