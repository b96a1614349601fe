//! The event pipeline (OpenFrame's stream service): tool events in, one unified, enriched,
//! searchable log out.
//!
//! ```text
//! POST /ingest/v1/debezium ──► validate ──► raw topic (durable append) ──► 200 {accepted, rejected}
//!                                 │ refused: dead-letter topic, with the reason
//! fleet.activities + fleet.host_activities ──► join (window) ──► fleet.mysql.events
//! raw topics ──► parse (tools/) ──► map (taxonomy) ──► enrich (inventory) ──► sinks:
//!     log details (point reads) · analytics `logs` (lists, facets) · search · `unified.events`
//! ```
//!
//! Delivery is at-least-once: consumers commit their offsets at checkpoints, after the sinks have
//! the data, and every sink is idempotent by `toolEventId`. Ingest acknowledges only after the raw
//! append is durable; past that point nothing is lost, and a crash only repeats work.
//!
//! Reading order: [`envelope`], [`tools`] (one file per tool), [`taxonomy`], then [`pipeline`].
//! This module must not know HTTP; `http` is the edge.

pub mod cdc;
pub mod envelope;
pub mod http;
pub mod mappings;
pub mod pipeline;
pub mod reindex;
pub mod taxonomy;
pub mod tools;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use openframe_storage::log::NewRecord;
use openframe_storage::model::Topic;
use openframe_storage::{Clock, Storage, TenantId};
use tokio::sync::Notify;

use crate::config::StreamSection;
use crate::inventory::Inventory;
use crate::metrics::{Metrics, StreamEventLabels};
use envelope::{BodyItem, Envelope, Rejection};
use tools::{MessageType, Parsed};

/// The Kafka-style header that says what a raw record is.
pub const MESSAGE_TYPE_HEADER: &str = "message-type";
/// Events that could not be processed, with the reason, for admins to inspect and replay.
pub const DEAD_LETTER_TOPIC: &str = "dead-letter.events";
/// Every unified log entry, for live subscribers.
pub const UNIFIED_TOPIC: &str = "unified.events";

/// Dead-letter headers: why, and where the record came from.
pub const DEAD_LETTER_CODE: &str = "dead-letter-code";
pub const DEAD_LETTER_REASON: &str = "dead-letter-reason";
pub const DEAD_LETTER_SOURCE: &str = "dead-letter-topic";

/// How much of a refused event the dead-letter topic keeps.
const DEAD_LETTER_MAX_BYTES: usize = 256 * 1024;

/// What ingest did with a request's events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestReport {
    pub topic: &'static str,
    pub accepted: usize,
    /// Events OpenFrame deliberately ignores (MeshCentral timeline statistics, tombstones).
    pub skipped: usize,
    pub rejected: Vec<RejectedEvent>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedEvent {
    /// The event's position in the body (0-based, counting every envelope and NDJSON line).
    pub index: usize,
    pub code: &'static str,
    pub reason: String,
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("{0}")]
    InvalidBody(String),
    #[error("{backlog} events are waiting to be processed (limit {limit}); retry shortly")]
    Overloaded { backlog: i64, limit: u64 },
    #[error("the event log is unavailable: {0}")]
    Unavailable(String),
}

/// The pipeline's shared state: ingest runs on request tasks, processing on one worker task
/// ([`pipeline`]).
#[derive(Debug)]
pub struct Stream {
    storage: Storage,
    inventory: Arc<Inventory>,
    mappings: Arc<mappings::Mappings>,
    settings: StreamSection,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    /// Woken by ingest so the worker starts at once instead of at its next tick.
    wake: Notify,
    /// Accepted records the worker has not processed yet: the backpressure signal. Producers
    /// add before they append, so the worker never subtracts what was not yet counted.
    backlog: AtomicI64,
    /// True while the worker has nothing to do and every offset is committed.
    idle: AtomicBool,
    /// Events accepted recently, for the worker to yield to a burst.
    ingest_rate: std::sync::Mutex<RateMeter>,
}

/// Events per second over short windows.
#[derive(Debug)]
struct RateMeter {
    window_start: std::time::Instant,
    in_window: u64,
    /// The rate of the last complete window.
    last_rate: f64,
}

impl RateMeter {
    const WINDOW: std::time::Duration = std::time::Duration::from_millis(200);

    fn record(&mut self, events: u64) {
        self.roll();
        self.in_window += events;
    }

    fn roll(&mut self) {
        let elapsed = self.window_start.elapsed();
        if elapsed >= Self::WINDOW {
            // A gap of more than two windows means the burst is over.
            self.last_rate = if elapsed >= Self::WINDOW * 2 {
                0.0
            } else {
                self.in_window as f64 / elapsed.as_secs_f64()
            };
            self.window_start = std::time::Instant::now();
            self.in_window = 0;
        }
    }

    fn rate(&mut self) -> f64 {
        self.roll();
        self.last_rate
    }
}

impl Stream {
    pub fn new(
        storage: Storage,
        inventory: Arc<Inventory>,
        mappings: Arc<mappings::Mappings>,
        settings: StreamSection,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
    ) -> Stream {
        Stream {
            storage,
            inventory,
            mappings,
            settings,
            clock,
            metrics,
            wake: Notify::new(),
            backlog: AtomicI64::new(0),
            idle: AtomicBool::new(false),
            ingest_rate: std::sync::Mutex::new(RateMeter {
                window_start: std::time::Instant::now(),
                in_window: 0,
                last_rate: 0.0,
            }),
        }
    }

    pub fn inventory(&self) -> &Arc<Inventory> {
        &self.inventory
    }

    /// Operators' event-type mappings.
    pub fn mappings(&self) -> &Arc<mappings::Mappings> {
        &self.mappings
    }

    /// Accepted events not processed yet.
    pub fn backlog(&self) -> i64 {
        self.backlog.load(Ordering::Relaxed)
    }

    /// True when nothing accepted is waiting and all progress is durable (the search index
    /// committed, offsets written): what a caller waits for before reading every store.
    pub fn is_idle(&self) -> bool {
        self.backlog() <= 0 && self.idle.load(Ordering::Acquire)
    }

    /// True while ingest runs above `stream.yield_to_ingest_above` and the backlog has room: the
    /// worker then leaves the CPU to it.
    fn ingest_is_bursting(&self) -> bool {
        let threshold = self.settings.yield_to_ingest_above;
        if threshold == 0 {
            return false;
        }
        let room =
            u64::try_from(self.backlog()).unwrap_or(0) < self.settings.max_backlog_events / 2;
        let rate = self
            .ingest_rate
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .rate();
        room && rate > threshold as f64
    }

    fn add_backlog(&self, change: i64) {
        if change > 0 {
            self.idle.store(false, Ordering::Release);
        }
        let now = self.backlog.fetch_add(change, Ordering::Relaxed) + change;
        self.metrics.stream_backlog.set(now.max(0));
    }

    fn count(&self, outcome: &'static str, by: usize) {
        if by > 0 {
            self.metrics
                .stream_events
                .get_or_create(&StreamEventLabels { outcome })
                .inc_by(u64::try_from(by).unwrap_or(u64::MAX));
        }
    }

    /// Validates every event of `body`, appends the good ones to the message type's raw topic in
    /// one durable batch and the refused ones to the dead-letter topic, and says which were which.
    /// Returns only after both appends are durable.
    pub async fn ingest(
        &self,
        tenant: &TenantId,
        message_type: MessageType,
        body: &[u8],
        ndjson: bool,
    ) -> Result<IngestReport, IngestError> {
        self.admit()?;
        let items = envelope::split_body(body, ndjson, self.max_event_bytes())
            .map_err(IngestError::InvalidBody)?;
        self.ingest_items(tenant, message_type, items).await
    }

    /// Refuses new events while the backlog is at its bound (checked before any parsing).
    fn admit(&self) -> Result<(), IngestError> {
        let backlog = self.backlog();
        if u64::try_from(backlog).unwrap_or(0) >= self.settings.max_backlog_events {
            return Err(IngestError::Overloaded {
                backlog,
                limit: self.settings.max_backlog_events,
            });
        }
        Ok(())
    }

    /// The largest single event ingest accepts.
    pub fn max_event_bytes(&self) -> usize {
        usize::try_from(self.settings.max_event_bytes).unwrap_or(usize::MAX)
    }

    /// [`Stream::ingest`] for events already split (one per NATS message).
    pub async fn ingest_items(
        &self,
        tenant: &TenantId,
        message_type: MessageType,
        items: Vec<BodyItem<'_>>,
    ) -> Result<IngestReport, IngestError> {
        self.admit()?;
        let integration = tools::integration_for(message_type).ok_or_else(|| {
            IngestError::InvalidBody(format!("no tool reads {}", message_type.as_str()))
        })?;
        let topic = message_type.topic();
        let mut report = IngestReport {
            topic,
            accepted: 0,
            skipped: 0,
            rejected: Vec::new(),
        };
        let mut accepted = Vec::new();
        let mut refused = Vec::new();
        for (index, item) in items.into_iter().enumerate() {
            let (raw, value) = match item {
                BodyItem::Event { raw, value } => (raw, value),
                BodyItem::Invalid { raw, rejection } => {
                    refused.push(dead_letter(message_type, topic, &rejection, raw));
                    report.rejected.push(rejected(index, rejection));
                    continue;
                }
            };
            let outcome = Envelope::parse(value).and_then(|envelope| {
                let parsed = integration.parse(message_type, &envelope)?;
                Ok((envelope, parsed))
            });
            match outcome {
                Ok((_, Parsed::Skip(_))) if message_type != MessageType::FleetHostActivity => {
                    report.skipped += 1;
                }
                Ok((envelope, parsed)) => {
                    let key = match parsed {
                        Parsed::Event(event) => Some(event.tool_event_id.into_bytes()),
                        Parsed::Skip(_) => None,
                    };
                    let value = if raw.is_empty() || envelope.was_wrapped {
                        envelope.to_bytes()
                    } else {
                        raw.to_vec()
                    };
                    accepted.push(NewRecord {
                        key,
                        headers: vec![(
                            MESSAGE_TYPE_HEADER.to_owned(),
                            message_type.as_str().as_bytes().to_vec(),
                        )],
                        value,
                    });
                }
                Err(rejection) => {
                    refused.push(dead_letter(message_type, topic, &rejection, raw));
                    report.rejected.push(rejected(index, rejection));
                }
            }
        }
        report.accepted = accepted.len();
        if !accepted.is_empty() {
            let count = i64::try_from(report.accepted).unwrap_or(i64::MAX);
            self.add_backlog(count);
            self.ingest_rate
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .record(u64::try_from(report.accepted).unwrap_or(0));
            if let Err(error) = self.append(tenant, topic, accepted).await {
                self.add_backlog(-count);
                return Err(error);
            }
            self.wake.notify_one();
        }
        if !refused.is_empty() {
            self.append(tenant, DEAD_LETTER_TOPIC, refused).await?;
        }
        self.count("accepted", report.accepted);
        self.count("skipped", report.skipped);
        self.count("rejected", report.rejected.len());
        Ok(report)
    }

    async fn append(
        &self,
        tenant: &TenantId,
        topic: &str,
        records: Vec<NewRecord>,
    ) -> Result<(), IngestError> {
        let topic = topic_named(topic).map_err(IngestError::Unavailable)?;
        self.storage
            .events
            .append_batch(tenant, &topic, records)
            .await
            .map(|_| ())
            .map_err(|error| IngestError::Unavailable(error.to_string()))
    }
}

fn rejected(index: usize, rejection: Rejection) -> RejectedEvent {
    RejectedEvent {
        index,
        code: rejection.code,
        reason: rejection.reason,
    }
}

/// A refused event as the dead-letter topic keeps it: the bytes (cut to a bound) and why.
fn dead_letter(
    message_type: MessageType,
    source_topic: &str,
    rejection: &Rejection,
    raw: &[u8],
) -> NewRecord {
    let kept = raw.len().min(DEAD_LETTER_MAX_BYTES);
    NewRecord {
        key: None,
        headers: vec![
            (
                MESSAGE_TYPE_HEADER.to_owned(),
                message_type.as_str().as_bytes().to_vec(),
            ),
            (
                DEAD_LETTER_CODE.to_owned(),
                rejection.code.as_bytes().to_vec(),
            ),
            (
                DEAD_LETTER_REASON.to_owned(),
                rejection.reason.as_bytes().to_vec(),
            ),
            (
                DEAD_LETTER_SOURCE.to_owned(),
                source_topic.as_bytes().to_vec(),
            ),
        ],
        value: raw.get(..kept).unwrap_or_default().to_vec(),
    }
}

/// The topics named here are constants that satisfy Kafka's naming rule (a test checks each).
fn topic_named(name: &str) -> Result<Topic, String> {
    Topic::parse(name).map_err(|error| format!("built-in topic: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_topic_names_are_valid() {
        let mut names: Vec<&str> = MessageType::ALL.iter().map(|t| t.topic()).collect();
        names.extend([DEAD_LETTER_TOPIC, UNIFIED_TOPIC]);
        for name in names {
            assert!(Topic::parse(name).is_ok(), "{name}");
        }
    }
}
