//! The event log: Kafka's role in OpenFrame, here a set of append-only streams.
//!
//! A topic (`meshcentral.mongodb.events`, `logs.events`, ...) is split into one stream per tenant,
//! the way a Kafka topic is split into partitions: a stream is addressed by `(tenant, topic)`, so a
//! reader can only ever see the tenant it asked for.
//!
//! Contract for every engine:
//! - **Ordering**: offsets in a stream start at 0, increase by exactly one per record and are never
//!   reused, even after retention deletes records. `append_batch` gives a batch consecutive offsets.
//! - **Durability**: when `append_batch` or `commit_offset` returns `Ok`, the write survives a crash
//!   of the process or the machine (it was fsync'd). Concurrent appends may be group-committed: many
//!   batches, one fsync, each caller answered only after that fsync.
//! - **Atomicity**: a batch is written whole or not at all. On `Err`, nothing of it is readable.
//! - **Idempotency**: the log does not deduplicate; consumers are at-least-once and their sinks must
//!   be idempotent (a re-sent event carries the same `toolEventId`).
//! - **Errors**: [`LogError::InvalidRecord`] is the caller's fault and not retryable;
//!   [`LogError::Unavailable`] is the engine's (I/O, full disk) and may succeed later.

use async_trait::async_trait;
use tokio::sync::watch;

use crate::Engine;
use crate::error::LogError;
use crate::model::{GroupId, Offset, TenantId, Topic, UnixMillis};

/// The largest record the log accepts (key + headers + value). Larger payloads belong elsewhere.
pub const MAX_RECORD_BYTES: usize = 1024 * 1024;

/// A record to append.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NewRecord {
    pub key: Option<Vec<u8>>,
    /// Kafka-style headers, e.g. `message-type: MESHCENTRAL_EVENT`.
    pub headers: Vec<(String, Vec<u8>)>,
    pub value: Vec<u8>,
}

impl NewRecord {
    pub fn encoded_len(&self) -> usize {
        self.key.as_ref().map_or(0, Vec::len)
            + self
                .headers
                .iter()
                .map(|(name, value)| name.len() + value.len())
                .sum::<usize>()
            + self.value.len()
    }

    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(header, _)| header == name)
            .map(|(_, value)| value.as_slice())
    }
}

/// Refuses an empty batch or a record over [`MAX_RECORD_BYTES`]: the checks every engine makes
/// before writing anything.
pub(crate) fn validate_batch(records: &[NewRecord]) -> Result<(), LogError> {
    if records.is_empty() {
        return Err(LogError::InvalidRecord(
            "a batch must hold at least one record".into(),
        ));
    }
    for (index, record) in records.iter().enumerate() {
        let len = record.encoded_len();
        if len > MAX_RECORD_BYTES {
            return Err(LogError::InvalidRecord(format!(
                "record {index} is {len} bytes; the limit is {MAX_RECORD_BYTES}"
            )));
        }
        if record.headers.len() > usize::from(u16::MAX)
            || record
                .headers
                .iter()
                .any(|(name, _)| name.len() > usize::from(u16::MAX))
        {
            return Err(LogError::InvalidRecord(format!(
                "record {index} has too many or too long headers"
            )));
        }
    }
    Ok(())
}

/// A stored record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    pub offset: Offset,
    /// When the log accepted the record (the log's clock), used for retention by age.
    pub appended_at: UnixMillis,
    pub record: NewRecord,
}

/// Where an appended batch landed: offsets `first..=last`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub first: Offset,
    pub last: Offset,
}

/// The extent of one stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StreamBounds {
    /// The oldest retained offset (equal to `end` when the stream is empty).
    pub start: Offset,
    /// The offset the next record will get.
    pub end: Offset,
    /// Bytes of the retained records.
    pub bytes: u64,
}

/// How much of a topic to keep, per stream. `None` keeps everything on that axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RetentionPolicy {
    /// Records appended longer ago than this are deleted.
    pub max_age_ms: Option<i64>,
    /// Oldest records are deleted while a stream holds more than this many bytes.
    pub max_bytes: Option<u64>,
}

/// What a retention pass deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RetentionReport {
    pub records: u64,
    pub bytes: u64,
}

#[async_trait]
pub trait EventLog: Engine {
    /// Appends `records` to the tenant's stream of `topic`, durably, with consecutive offsets.
    /// An empty batch or a record over [`MAX_RECORD_BYTES`] is refused whole.
    async fn append_batch(
        &self,
        tenant: &TenantId,
        topic: &Topic,
        records: Vec<NewRecord>,
    ) -> Result<Appended, LogError>;

    /// Up to `max_records` records from `from` on, in offset order. If `from` was deleted by
    /// retention, reading starts at the oldest retained record; past the end it returns nothing.
    async fn read(
        &self,
        tenant: &TenantId,
        topic: &Topic,
        from: Offset,
        max_records: usize,
    ) -> Result<Vec<LogRecord>, LogError>;

    async fn bounds(&self, tenant: &TenantId, topic: &Topic) -> Result<StreamBounds, LogError>;

    /// The tenants that have a stream of `topic` (Kafka's partitions of a topic).
    async fn tenants_of(&self, topic: &Topic) -> Result<Vec<TenantId>, LogError>;

    /// Durably records that `group` has processed the stream up to, not including, `next`.
    async fn commit_offset(
        &self,
        tenant: &TenantId,
        topic: &Topic,
        group: &GroupId,
        next: Offset,
    ) -> Result<(), LogError>;

    /// The offset `group` committed last for this stream, if any.
    async fn committed_offset(
        &self,
        tenant: &TenantId,
        topic: &Topic,
        group: &GroupId,
    ) -> Result<Option<Offset>, LogError>;

    /// Every stream the log holds, as `(tenant, topic)`, ascending: for copying a log.
    async fn streams(&self) -> Result<Vec<(TenantId, Topic)>, LogError>;

    /// Every group's committed offset on the stream, ascending by group: for copying a log.
    async fn committed_offsets(
        &self,
        tenant: &TenantId,
        topic: &Topic,
    ) -> Result<Vec<(GroupId, Offset)>, LogError>;

    /// A receiver of the stream's end offset, updated after every durable append; consumers wait
    /// on it to tail the stream. Its first value is the end at the time of the call.
    fn watch(&self, tenant: &TenantId, topic: &Topic) -> watch::Receiver<Offset>;

    /// Deletes old records from every stream of `topic` according to `policy`, using the log's
    /// clock. Offsets of later records do not change.
    async fn enforce_retention(
        &self,
        topic: &Topic,
        policy: RetentionPolicy,
    ) -> Result<RetentionReport, LogError>;
}
