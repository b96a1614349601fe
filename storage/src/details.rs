//! Log details: the replacement for OpenFrame's Cassandra table `unified_logs`, a key-value store
//! of each unified event's full record, read by its key (the UI's "log details" panel).
//!
//! Contract for every engine:
//! - Keys are ordered by `(timestamp, tool_event_id)` within a tenant; scans return that order.
//! - `put_batch` is durable when it returns, atomic, and idempotent: putting a key again replaces
//!   its value (a redelivered event rewrites the same row).
//! - The value is opaque bytes; the event pipeline owns its format.

use async_trait::async_trait;

use crate::Engine;
use crate::error::LogError;
use crate::model::{TenantId, UnixMillis};

/// The key of one unified log entry. OpenFrame's log id is `"{epochMillis}_{toolEventId}"`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LogKey {
    pub timestamp: UnixMillis,
    pub tool_event_id: String,
}

/// The most entries one scan may return.
pub const MAX_SCAN: usize = 10_000;

#[async_trait]
pub trait LogDetails: Engine {
    async fn put_batch(
        &self,
        tenant: &TenantId,
        entries: Vec<(LogKey, Vec<u8>)>,
    ) -> Result<(), LogError>;

    async fn get(&self, tenant: &TenantId, key: &LogKey) -> Result<Option<Vec<u8>>, LogError>;

    /// Entries with `from <= timestamp < to`, oldest first, at most `limit` (1..=[`MAX_SCAN`]),
    /// starting strictly after `after` when given (keyset paging).
    async fn scan(
        &self,
        tenant: &TenantId,
        from: UnixMillis,
        to: UnixMillis,
        after: Option<&LogKey>,
        limit: usize,
    ) -> Result<Vec<(LogKey, Vec<u8>)>, LogError>;

    /// Deletes the tenant's entries older than `before`; returns how many went.
    async fn delete_before(&self, tenant: &TenantId, before: UnixMillis) -> Result<u64, LogError>;
}
