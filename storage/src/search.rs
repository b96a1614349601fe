//! The full-text index over log summaries and messages and device text.
//!
//! A derived store, rebuilt from the event log on demand (`openframe reindex`): unlike the log, an
//! acknowledged `index` call is *not* yet durable. It hands documents to the writer and returns;
//! they become searchable and durable at the next commit, which the engine makes by its commit
//! policy (every `commit_every_docs` operations or `commit_interval_ms`, whichever comes first),
//! when [`SearchIndex::refresh`] is called, or on close. After `refresh` returns, every document
//! indexed before the call is visible to searches. `refresh` commits for every tenant at once, so
//! request handlers should not call it per request.
//!
//! Contract for every engine:
//! - A search sees only the tenant's documents; ids are unique per tenant, not globally.
//! - `index` upserts by `(tenant, kind, id)`: indexing the same id again replaces the document.
//!   Ids are 1 to [`MAX_ID_BYTES`] bytes; others are refused with [`SearchError::InvalidDocument`].
//! - Hits are ordered by relevance, then newest first; `limit` is 1..=[`MAX_HITS`]. Scores compare
//!   only within one result set.
//! - The query language is plain words (all must match, case-insensitive), `"quoted phrases"`,
//!   and `-word` / `-"phrase"` to exclude; a word the analyzer splits (`web-01`, `10.0.0.1`) is
//!   matched as a phrase; anything else is matched as words, never an error for the user to decode.
//!   Empty text lists the filtered documents newest first; only exclusions return everything else;
//!   `from >= to` matches nothing.

use async_trait::async_trait;

use crate::Engine;
use crate::error::SearchError;
use crate::model::{TenantId, UnixMillis};

/// What a document describes. Searches are usually restricted to one kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DocumentKind {
    Log,
    Device,
}

/// A document to index. Text fields are analysed (lowercased, tokenised); absent ones are empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchDocument {
    pub kind: DocumentKind,
    /// The id the caller uses to fetch the real record (a log's `tool_event_id`, a machine id).
    pub id: String,
    pub timestamp: UnixMillis,
    pub summary: String,
    pub message: String,
    pub hostname: String,
    pub organization_name: String,
    pub user: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchQuery {
    pub text: String,
    pub kind: Option<DocumentKind>,
    /// Inclusive lower and exclusive upper bound on `timestamp`.
    pub from: Option<UnixMillis>,
    pub to: Option<UnixMillis>,
    pub limit: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SearchHit {
    pub kind: DocumentKind,
    pub id: String,
    pub timestamp: UnixMillis,
    pub score: f32,
}

/// The most hits one search may return.
pub const MAX_HITS: usize = 10_000;

/// The longest document id. Ids are index terms, which have a size limit of their own.
pub const MAX_ID_BYTES: usize = 512;

#[async_trait]
pub trait SearchIndex: Engine {
    /// Adds or replaces documents. They are searchable after the next commit.
    async fn index(
        &self,
        tenant: &TenantId,
        documents: Vec<SearchDocument>,
    ) -> Result<(), SearchError>;

    /// Removes documents by id; unknown ids are ignored.
    async fn delete(
        &self,
        tenant: &TenantId,
        kind: DocumentKind,
        ids: Vec<String>,
    ) -> Result<(), SearchError>;

    /// Removes the tenant's documents of `kind` older than `before` (retention).
    async fn delete_before(
        &self,
        tenant: &TenantId,
        kind: DocumentKind,
        before: UnixMillis,
    ) -> Result<(), SearchError>;

    async fn search(
        &self,
        tenant: &TenantId,
        query: &SearchQuery,
    ) -> Result<Vec<SearchHit>, SearchError>;

    /// Commits pending documents and reloads readers: afterwards, everything indexed before this
    /// call is searchable and durable in the index.
    async fn refresh(&self) -> Result<(), SearchError>;
}
