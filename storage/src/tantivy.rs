//! The embedded [`SearchIndex`]: a tantivy index in the `search/` directory of the data directory.
//!
//! One background thread owns the only `IndexWriter`; `index`, `delete` and `delete_before` hand
//! it their operation over a channel and return once it has accepted it. The thread commits by the
//! policy in [`SearchSettings`] (every `commit_every_docs` pending operations, or
//! `commit_interval_ms` after the first pending one) or when [`SearchIndex::refresh`] asks, and
//! reloads the reader after every commit, so searches, which run on the blocking pool with a
//! snapshot `Searcher`, see whole commits only.
//!
//! The user's query text is parsed here, not by tantivy's `QueryParser`: its syntax errors and
//! `field:value` selectors would hand users a query language the trait does not promise. Every
//! stored term and every query carries the tenant, so one tenant's search, upsert or delete can
//! never reach another's documents.

use std::collections::HashSet;
use std::fmt;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ::tantivy::collector::sort_key::{SortBySimilarityScore, SortByStaticFastValue};
use ::tantivy::collector::{Count, TopDocs};
use ::tantivy::directory::MmapDirectory;
use ::tantivy::directory::error::OpenReadError;
use ::tantivy::indexer::UserOperation;
use ::tantivy::query::{
    BooleanQuery, ConstScoreQuery, EmptyQuery, Occur, PhraseQuery, Query, RangeQuery, TermQuery,
};
use ::tantivy::schema::{
    FAST, Field, INDEXED, IndexRecordOption, STORED, STRING, Schema, TEXT, Value,
};
use ::tantivy::tokenizer::{TextAnalyzer, TokenStream};
use ::tantivy::{
    DocAddress, Index, IndexReader, IndexWriter, ReloadPolicy, Score, Searcher, TantivyDocument,
    TantivyError, Term,
};
use async_trait::async_trait;
use tokio::sync::oneshot;

use crate::error::{EngineFailure, OpenError, SearchError};
use crate::model::{TenantId, UnixMillis};
use crate::search::{
    DocumentKind, MAX_HITS, MAX_ID_BYTES, SearchDocument, SearchHit, SearchIndex, SearchQuery,
};
use crate::{Engine, SearchSettings};

const ENGINE: &str = "tantivy";

/// tantivy refuses a writer budget below 15 MB (its `MEMORY_BUDGET_NUM_BYTES_MIN`, not exported).
const MIN_WRITER_MEMORY_BYTES: usize = 15_000_000;

/// The file whose presence makes a directory a tantivy index.
const META_FILE: &str = "meta.json";

/// Separates tenant, kind and id in the per-document key term. Tenant ids and kind names never
/// contain it, so the key is unambiguous whatever the id holds.
const KEY_SEPARATOR: char = '\u{1f}';

/// The schema's field handles.
#[derive(Debug, Clone, Copy)]
struct Fields {
    tenant: Field,
    kind: Field,
    id: Field,
    /// `"{tenant}\u{1f}{kind}\u{1f}{id}"`: the one term an upsert or delete removes by, so it can
    /// only ever match that tenant's document.
    key: Field,
    timestamp: Field,
    summary: Field,
    message: Field,
    hostname: Field,
    organization_name: Field,
    user: Field,
}

impl Fields {
    fn schema() -> (Schema, Fields) {
        let mut builder = Schema::builder();
        let fields = Fields {
            tenant: builder.add_text_field("tenant", STRING),
            kind: builder.add_text_field("kind", STRING | STORED),
            id: builder.add_text_field("id", STRING | STORED),
            key: builder.add_text_field("key", STRING),
            // Indexed for the range filter and retention deletes, fast for ranking ties by time.
            timestamp: builder.add_i64_field("timestamp", FAST | INDEXED | STORED),
            summary: builder.add_text_field("summary", TEXT),
            message: builder.add_text_field("message", TEXT),
            hostname: builder.add_text_field("hostname", TEXT),
            organization_name: builder.add_text_field("organization_name", TEXT),
            user: builder.add_text_field("user", TEXT),
        };
        (builder.build(), fields)
    }

    fn text(&self) -> [Field; 5] {
        [
            self.summary,
            self.message,
            self.hostname,
            self.organization_name,
            self.user,
        ]
    }

    fn tenant_term(&self, tenant: &TenantId) -> Term {
        Term::from_field_text(self.tenant, tenant.as_str())
    }

    fn kind_term(&self, kind: DocumentKind) -> Term {
        Term::from_field_text(self.kind, kind_name(kind))
    }

    fn key_term(&self, tenant: &TenantId, kind: DocumentKind, id: &str) -> Term {
        Term::from_field_text(self.key, &key_text(tenant, kind, id))
    }

    fn document(&self, tenant: &TenantId, document: &SearchDocument) -> TantivyDocument {
        let mut indexed = TantivyDocument::new();
        indexed.add_text(self.tenant, tenant.as_str());
        indexed.add_text(self.kind, kind_name(document.kind));
        indexed.add_text(self.id, &document.id);
        indexed.add_text(self.key, key_text(tenant, document.kind, &document.id));
        indexed.add_i64(self.timestamp, document.timestamp);
        let texts = [
            (self.summary, &document.summary),
            (self.message, &document.message),
            (self.hostname, &document.hostname),
            (self.organization_name, &document.organization_name),
            (self.user, &document.user),
        ];
        for (field, text) in texts {
            if !text.is_empty() {
                indexed.add_text(field, text);
            }
        }
        indexed
    }
}

fn key_text(tenant: &TenantId, kind: DocumentKind, id: &str) -> String {
    format!(
        "{tenant}{KEY_SEPARATOR}{kind}{KEY_SEPARATOR}{id}",
        tenant = tenant.as_str(),
        kind = kind_name(kind),
    )
}

fn kind_name(kind: DocumentKind) -> &'static str {
    match kind {
        DocumentKind::Log => "log",
        DocumentKind::Device => "device",
    }
}

fn kind_from_name(name: &str) -> Option<DocumentKind> {
    match name {
        "log" => Some(DocumentKind::Log),
        "device" => Some(DocumentKind::Device),
        _ => None,
    }
}

type Reply = oneshot::Sender<Result<(), EngineFailure>>;

/// What the writer thread is asked to do. Each carries the channel its answer goes back on.
enum Command {
    Index {
        tenant: TenantId,
        documents: Vec<SearchDocument>,
        accepted: Reply,
    },
    Delete {
        tenant: TenantId,
        kind: DocumentKind,
        ids: Vec<String>,
        accepted: Reply,
    },
    DeleteBefore {
        tenant: TenantId,
        kind: DocumentKind,
        before: UnixMillis,
        accepted: Reply,
    },
    /// Commit whatever is pending and reload the reader.
    Refresh { done: Reply },
    /// Commit, wait for merges and stop.
    Close { done: Reply },
}

/// The tantivy search engine. Cheap to share behind an `Arc`; every method is safe to call
/// concurrently.
pub struct TantivySearch {
    /// The index directory, for diagnostics.
    path: PathBuf,
    fields: Fields,
    /// The analyzer the text fields were indexed with, so query words are tokenised the same way.
    analyzer: TextAnalyzer,
    /// Shared with the writer thread, which reloads it after each commit.
    reader: IndexReader,
    /// The writer thread's inbox. Dropping the last sender stops the thread after a final commit.
    commands: mpsc::Sender<Command>,
    /// Taken (and joined) by `close`; `check` asks it whether the thread still runs.
    writer_thread: Mutex<Option<JoinHandle<()>>>,
    /// Set by the first `close`; every later call is refused with an [`EngineFailure`].
    closed: AtomicBool,
    /// The latest commit failure of the writer thread, cleared by the next successful commit, so
    /// `check` can report a writer that cannot persist (a full disk) before anyone calls `refresh`.
    commit_failure: Arc<Mutex<Option<String>>>,
}

impl fmt::Debug for TantivySearch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TantivySearch")
            .field("path", &self.path)
            .field("closed", &self.closed.load(Ordering::Acquire))
            .finish_non_exhaustive()
    }
}

impl TantivySearch {
    /// Opens the index in `dir`, creating the directory and an empty index if needed, and starts
    /// the writer thread. Blocking: call it off the async executor.
    ///
    /// A directory holding anything but a tantivy index of this schema is refused and left alone.
    pub fn open(dir: &Path, settings: &SearchSettings) -> Result<TantivySearch, OpenError> {
        std::fs::create_dir_all(dir).map_err(|error| OpenError::engine(dir, error))?;
        let has_meta = dir.join(META_FILE).exists();
        if !has_meta {
            refuse_foreign_files(dir)?;
        }

        let (schema, fields) = Fields::schema();
        let directory = MmapDirectory::open(dir).map_err(|error| OpenError::engine(dir, error))?;
        let index = Index::open_or_create(directory, schema).map_err(|error| {
            if has_meta && is_not_our_index(&error) {
                // tantivy's message quotes the unreadable meta.json, which may be anything: keep it
                // out of the one-line start-up error and in the debug log.
                tracing::debug!(dir = %dir.display(), %error, "refusing a foreign search index");
                OpenError::Foreign {
                    path: dir.to_path_buf(),
                    what: "search index",
                    detail: "its meta.json is not a search index this release can read".to_owned(),
                }
            } else {
                OpenError::engine(dir, error)
            }
        })?;
        let analyzer = index
            .tokenizer_for_field(fields.summary)
            .map_err(|error| OpenError::engine(dir, error))?;
        let memory_budget = settings
            .writer_memory_mb
            .saturating_mul(1024 * 1024)
            .max(MIN_WRITER_MEMORY_BYTES);
        let writer: IndexWriter<TantivyDocument> = index
            .writer(memory_budget)
            .map_err(|error| OpenError::engine(dir, error))?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(|error| OpenError::engine(dir, error))?;

        let commit_failure = Arc::new(Mutex::new(None));
        let writer_loop = WriterLoop {
            writer,
            reader: reader.clone(),
            commit_every_docs: settings.commit_every_docs.max(1),
            commit_interval: Duration::from_millis(settings.commit_interval_ms),
            pending_operations: 0,
            pending_since: None,
            fields,
            commit_failure: commit_failure.clone(),
        };
        let (commands, inbox) = mpsc::channel();
        let writer_thread = std::thread::Builder::new()
            .name("tantivy-writer".to_owned())
            .spawn(move || writer_loop.run(inbox))
            .map_err(|error| OpenError::engine(dir, error))?;

        Ok(TantivySearch {
            path: dir.to_path_buf(),
            fields,
            analyzer,
            reader,
            commands,
            writer_thread: Mutex::new(Some(writer_thread)),
            closed: AtomicBool::new(false),
            commit_failure,
        })
    }

    fn ensure_open(&self, operation: &'static str) -> Result<(), EngineFailure> {
        if self.closed.load(Ordering::Acquire) {
            Err(EngineFailure::new(
                ENGINE,
                operation,
                "the search index is closed",
            ))
        } else {
            Ok(())
        }
    }

    /// Sends one command to the writer thread and waits for its answer.
    async fn submit(
        &self,
        operation: &'static str,
        command: impl FnOnce(Reply) -> Command,
    ) -> Result<(), EngineFailure> {
        self.ensure_open(operation)?;
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(command(reply))
            .map_err(|_| writer_gone(operation))?;
        answer.await.map_err(|_| writer_gone(operation))?
    }
}

/// Whether opening failed because the directory holds something other than an index of our schema
/// (as opposed to an I/O failure, which an operator fixes differently).
fn is_not_our_index(error: &TantivyError) -> bool {
    matches!(
        error,
        TantivyError::DataCorruption(_)
            | TantivyError::SchemaError(_)
            | TantivyError::IncompatibleIndex(_)
            | TantivyError::DeserializeError(_)
            | TantivyError::OpenReadError(OpenReadError::IncompatibleIndex(_))
    )
}

fn writer_gone(operation: &'static str) -> EngineFailure {
    EngineFailure::new(ENGINE, operation, "the index writer thread has stopped")
}

/// Refuses a directory without `meta.json` that holds anything but tantivy's own bookkeeping
/// files (left behind when a first open was interrupted): creating an index there would mix our
/// files into someone else's directory.
fn refuse_foreign_files(dir: &Path) -> Result<(), OpenError> {
    let entries = std::fs::read_dir(dir).map_err(|error| OpenError::engine(dir, error))?;
    for entry in entries {
        let entry = entry.map_err(|error| OpenError::engine(dir, error))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let tantivy_bookkeeping = name == ".managed.json" || name.starts_with(".tantivy-");
        if !tantivy_bookkeeping {
            return Err(OpenError::Foreign {
                path: dir.to_path_buf(),
                what: "search index",
                detail: format!("it holds {name:?} but no {META_FILE}"),
            });
        }
    }
    Ok(())
}

#[async_trait]
impl Engine for TantivySearch {
    fn engine_name(&self) -> &'static str {
        ENGINE
    }

    async fn check(&self) -> Result<(), EngineFailure> {
        self.ensure_open("check")?;
        let writer_running = self
            .writer_thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .is_some_and(|thread| !thread.is_finished());
        if !writer_running {
            return Err(writer_gone("check"));
        }
        let commit_failure = self
            .commit_failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(failure) = commit_failure {
            return Err(EngineFailure::new(ENGINE, "commit", failure));
        }
        let searcher = self.reader.searcher();
        let probe = TermQuery::new(
            Term::from_field_text(self.fields.tenant, ""),
            IndexRecordOption::Basic,
        );
        crate::blocking::run(ENGINE, "check", move || {
            searcher
                .search(&probe, &Count)
                .map(|_| ())
                .map_err(|error| EngineFailure::new(ENGINE, "check", error))
        })
        .await
    }

    async fn close(&self) -> Result<(), EngineFailure> {
        if self.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let (done, finished) = oneshot::channel();
        let closed = match self.commands.send(Command::Close { done }) {
            Ok(()) => finished.await.unwrap_or_else(|_| Err(writer_gone("close"))),
            Err(_) => Err(writer_gone("close")),
        };
        let writer_thread = self
            .writer_thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(writer_thread) = writer_thread {
            // The thread has answered and is returning; joining makes sure it released the
            // writer's lock before close returns, so the directory can be opened again.
            crate::blocking::run(ENGINE, "close", move || {
                writer_thread.join().map_err(|_| {
                    EngineFailure::new(ENGINE, "close", "the index writer thread panicked")
                })
            })
            .await?;
        }
        closed
    }
}

#[async_trait]
impl SearchIndex for TantivySearch {
    async fn index(
        &self,
        tenant: &TenantId,
        documents: Vec<SearchDocument>,
    ) -> Result<(), SearchError> {
        if let Some(bad) = documents
            .iter()
            .find(|document| document.id.is_empty() || document.id.len() > MAX_ID_BYTES)
        {
            return Err(SearchError::InvalidDocument(format!(
                "ids must be 1 to {MAX_ID_BYTES} bytes; got one of {} bytes",
                bad.id.len()
            )));
        }
        let tenant = tenant.clone();
        self.submit("index documents", |accepted| Command::Index {
            tenant,
            documents,
            accepted,
        })
        .await?;
        Ok(())
    }

    async fn delete(
        &self,
        tenant: &TenantId,
        kind: DocumentKind,
        ids: Vec<String>,
    ) -> Result<(), SearchError> {
        let tenant = tenant.clone();
        self.submit("delete documents", |accepted| Command::Delete {
            tenant,
            kind,
            ids,
            accepted,
        })
        .await?;
        Ok(())
    }

    async fn delete_before(
        &self,
        tenant: &TenantId,
        kind: DocumentKind,
        before: UnixMillis,
    ) -> Result<(), SearchError> {
        let tenant = tenant.clone();
        self.submit("delete old documents", |accepted| Command::DeleteBefore {
            tenant,
            kind,
            before,
            accepted,
        })
        .await?;
        Ok(())
    }

    async fn search(
        &self,
        tenant: &TenantId,
        query: &SearchQuery,
    ) -> Result<Vec<SearchHit>, SearchError> {
        self.ensure_open("search")?;
        if !(1..=MAX_HITS).contains(&query.limit) {
            return Err(SearchError::InvalidQuery(format!(
                "limit must be between 1 and {MAX_HITS}, got {}",
                query.limit
            )));
        }
        if let (Some(from), Some(to)) = (query.from, query.to)
            && from >= to
        {
            return Ok(Vec::new());
        }
        let searcher = self.reader.searcher();
        let fields = self.fields;
        let mut analyzer = self.analyzer.clone();
        let tenant = tenant.clone();
        let query = query.clone();
        crate::blocking::run(ENGINE, "search", move || {
            let tantivy_query = build_query(fields, &mut analyzer, &tenant, &query);
            collect_hits(&searcher, fields, tantivy_query.as_ref(), query.limit)
                .map_err(SearchError::Unavailable)
        })
        .await
    }

    async fn refresh(&self) -> Result<(), SearchError> {
        self.submit("refresh", |done| Command::Refresh { done })
            .await?;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// The writer thread.

/// The state of the writer thread: the only `IndexWriter` and the commit policy's counters.
struct WriterLoop {
    writer: IndexWriter<TantivyDocument>,
    /// Reloaded after each commit so searches see it.
    reader: IndexReader,
    fields: Fields,
    commit_every_docs: usize,
    commit_interval: Duration,
    /// Documents added plus ids deleted (a retention delete counts one) since the last commit.
    pending_operations: usize,
    /// When the oldest uncommitted operation was accepted; `None` when nothing is pending.
    pending_since: Option<Instant>,
    commit_failure: Arc<Mutex<Option<String>>>,
}

impl WriterLoop {
    fn run(mut self, inbox: mpsc::Receiver<Command>) {
        loop {
            if self.commit_is_due() {
                // A failure is logged and kept for `check`; the next trigger retries.
                let _ = self.commit_and_reload();
            }
            let received = match self.pending_since {
                None => inbox.recv().map_err(|_| RecvTimeoutError::Disconnected),
                Some(since) => {
                    inbox.recv_timeout(self.commit_interval.saturating_sub(since.elapsed()))
                }
            };
            match received {
                Ok(Command::Close { done }) => {
                    let _ = done.send(self.finish());
                    return;
                }
                Ok(command) => self.handle(command),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        // Every handle was dropped without `close`: keep what was accepted anyway.
        if let Err(failure) = self.finish() {
            tracing::error!(error = %failure, "search index commit on shutdown failed");
        }
    }

    fn commit_is_due(&self) -> bool {
        self.pending_operations >= self.commit_every_docs
            || self
                .pending_since
                .is_some_and(|since| since.elapsed() >= self.commit_interval)
    }

    fn handle(&mut self, command: Command) {
        match command {
            Command::Index {
                tenant,
                documents,
                accepted,
            } => {
                let _ = accepted.send(self.index(&tenant, &documents));
            }
            Command::Delete {
                tenant,
                kind,
                ids,
                accepted,
            } => {
                let _ = accepted.send(self.delete(&tenant, kind, &ids));
            }
            Command::DeleteBefore {
                tenant,
                kind,
                before,
                accepted,
            } => {
                let _ = accepted.send(self.delete_before(&tenant, kind, before));
            }
            Command::Refresh { done } => {
                let _ = done.send(self.commit_and_reload());
            }
            Command::Close { done } => {
                // `run` handles Close itself, since finishing consumes the writer.
                let _ = done.send(Err(EngineFailure::new(
                    ENGINE,
                    "close",
                    "close was misrouted",
                )));
            }
        }
    }

    fn index(
        &mut self,
        tenant: &TenantId,
        documents: &[SearchDocument],
    ) -> Result<(), EngineFailure> {
        if documents.is_empty() {
            return Ok(());
        }
        let count = documents.len();
        // Delete-then-add under consecutive opstamps: the delete removes every earlier version of
        // the key, including one added earlier in this same batch, but not the document after it.
        let mut operations = Vec::with_capacity(count * 2);
        for document in documents {
            operations.push(UserOperation::Delete(self.fields.key_term(
                tenant,
                document.kind,
                &document.id,
            )));
            operations.push(UserOperation::Add(self.fields.document(tenant, document)));
        }
        self.writer
            .run(operations)
            .map_err(|error| EngineFailure::new(ENGINE, "index documents", error))?;
        self.note_pending(count);
        Ok(())
    }

    fn delete(
        &mut self,
        tenant: &TenantId,
        kind: DocumentKind,
        ids: &[String],
    ) -> Result<(), EngineFailure> {
        if ids.is_empty() {
            return Ok(());
        }
        let count = ids.len();
        let operations: Vec<UserOperation<TantivyDocument>> = ids
            .iter()
            .map(|id| UserOperation::Delete(self.fields.key_term(tenant, kind, id)))
            .collect();
        self.writer
            .run(operations)
            .map_err(|error| EngineFailure::new(ENGINE, "delete documents", error))?;
        self.note_pending(count);
        Ok(())
    }

    fn delete_before(
        &mut self,
        tenant: &TenantId,
        kind: DocumentKind,
        before: UnixMillis,
    ) -> Result<(), EngineFailure> {
        let fields = self.fields;
        let older: Box<dyn Query> = Box::new(BooleanQuery::new(vec![
            (Occur::Must, term_query(fields.tenant_term(tenant))),
            (Occur::Must, term_query(fields.kind_term(kind))),
            (
                Occur::Must,
                Box::new(RangeQuery::new(
                    Bound::Unbounded,
                    Bound::Excluded(Term::from_field_i64(fields.timestamp, before)),
                )),
            ),
        ]));
        self.writer
            .delete_query(older)
            .map_err(|error| EngineFailure::new(ENGINE, "delete old documents", error))?;
        self.note_pending(1);
        Ok(())
    }

    fn note_pending(&mut self, operations: usize) {
        self.pending_operations = self.pending_operations.saturating_add(operations);
        self.pending_since.get_or_insert_with(Instant::now);
    }

    /// Commits what is pending (if anything) and reloads the reader, so searches see the commit.
    fn commit_and_reload(&mut self) -> Result<(), EngineFailure> {
        if self.pending_operations > 0 {
            if let Err(error) = self.writer.commit() {
                let failure = EngineFailure::new(ENGINE, "commit the index", error);
                tracing::error!(error = %failure, "search index commit failed");
                *self
                    .commit_failure
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some(failure.to_string());
                // Retry after another interval rather than in a tight loop.
                self.pending_since = Some(Instant::now());
                return Err(failure);
            }
            self.pending_operations = 0;
            self.pending_since = None;
            *self
                .commit_failure
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = None;
        }
        self.reader
            .reload()
            .map_err(|error| EngineFailure::new(ENGINE, "reload the index reader", error))
    }

    /// Commits what is pending and waits for background merges, releasing the writer's lock.
    fn finish(mut self) -> Result<(), EngineFailure> {
        let committed = self.commit_and_reload();
        let merged = self
            .writer
            .wait_merging_threads()
            .map_err(|error| EngineFailure::new(ENGINE, "wait for merges", error));
        committed.and(merged)
    }
}

// ---------------------------------------------------------------------------------------------
// Queries.

/// One unit of the user's query text: a word or a quoted phrase, possibly excluded with `-`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct QueryClause {
    excluded: bool,
    /// The raw text, analysed later: a word that the analyzer splits into several tokens
    /// (`web-01`, `10.0.0.1`, `status:failed`) is matched as a phrase, like a quoted one.
    text: String,
}

/// Splits query text into words, `"quoted phrases"` and `-exclusions`. Never fails: a quote
/// without its closing partner is just part of a word (the analyzer drops it), and anything that
/// looks like operator syntax elsewhere is text here.
fn parse_query_text(text: &str) -> Vec<QueryClause> {
    let chars: Vec<char> = text.chars().collect();
    let mut clauses = Vec::new();
    let mut position = 0;
    while position < chars.len() {
        if chars[position].is_whitespace() {
            position += 1;
            continue;
        }
        let excluded = chars[position] == '-';
        if excluded {
            position += 1;
        }
        if chars.get(position) == Some(&'"')
            && let Some(length) = chars[position + 1..].iter().position(|&c| c == '"')
        {
            let closing = position + 1 + length;
            clauses.push(QueryClause {
                excluded,
                text: chars[position + 1..closing].iter().collect(),
            });
            position = closing + 1;
            continue;
        }
        let end = chars[position..]
            .iter()
            .position(|c| c.is_whitespace())
            .map_or(chars.len(), |length| position + length);
        if end > position {
            clauses.push(QueryClause {
                excluded,
                text: chars[position..end].iter().collect(),
            });
        }
        position = end;
    }
    clauses
}

/// The analysed tokens of `text` with their positions, as the index stored them.
fn analyze(analyzer: &mut TextAnalyzer, text: &str) -> Vec<(usize, String)> {
    let mut tokens = Vec::new();
    let mut stream = analyzer.token_stream(text);
    while stream.advance() {
        let token = stream.token();
        tokens.push((token.position, token.text.clone()));
    }
    tokens
}

fn term_query(term: Term) -> Box<dyn Query> {
    Box::new(TermQuery::new(term, IndexRecordOption::Basic))
}

/// A filter restricts the hits without adding to their score, so relevance comes from the text
/// alone and a query without text ranks purely by time.
fn filter(query: Box<dyn Query>) -> Box<dyn Query> {
    Box::new(ConstScoreQuery::new(query, 0.0))
}

/// The tenant's documents (of the kind, in the time range, when given) matching the text.
fn build_query(
    fields: Fields,
    analyzer: &mut TextAnalyzer,
    tenant: &TenantId,
    query: &SearchQuery,
) -> Box<dyn Query> {
    let mut clauses: Vec<(Occur, Box<dyn Query>)> =
        vec![(Occur::Must, filter(term_query(fields.tenant_term(tenant))))];
    if let Some(kind) = query.kind {
        clauses.push((Occur::Must, filter(term_query(fields.kind_term(kind)))));
    }
    if query.from.is_some() || query.to.is_some() {
        let bound = |value: Option<UnixMillis>, make: fn(Term) -> Bound<Term>| {
            value.map_or(Bound::Unbounded, |millis| {
                make(Term::from_field_i64(fields.timestamp, millis))
            })
        };
        let range = RangeQuery::new(
            bound(query.from, Bound::Included),
            bound(query.to, Bound::Excluded),
        );
        clauses.push((Occur::Must, filter(Box::new(range))));
    }
    // A long pasted query repeats itself; each distinct clause is matched once.
    let mut seen = HashSet::new();
    for clause in parse_query_text(&query.text) {
        let tokens = analyze(analyzer, &clause.text);
        if tokens.is_empty() || !seen.insert((clause.excluded, tokens.clone())) {
            continue;
        }
        let occur = if clause.excluded {
            Occur::MustNot
        } else {
            Occur::Must
        };
        clauses.push((occur, text_query(fields, &tokens)));
    }
    Box::new(BooleanQuery::new(clauses))
}

/// Matches the tokens (one word, or a phrase of several) in any of the text fields.
fn text_query(fields: Fields, tokens: &[(usize, String)]) -> Box<dyn Query> {
    let per_field = fields
        .text()
        .into_iter()
        .map(|field| -> (Occur, Box<dyn Query>) {
            let query: Box<dyn Query> = match tokens {
                [] => Box::new(EmptyQuery),
                [(_, word)] => Box::new(TermQuery::new(
                    Term::from_field_text(field, word),
                    IndexRecordOption::WithFreqs,
                )),
                _ => Box::new(PhraseQuery::new_with_offset(
                    tokens
                        .iter()
                        .map(|(position, word)| (*position, Term::from_field_text(field, word)))
                        .collect(),
                )),
            };
            (Occur::Should, query)
        })
        .collect();
    Box::new(BooleanQuery::new(per_field))
}

/// The top `limit` hits by score, ties broken by newest timestamp.
fn collect_hits(
    searcher: &Searcher,
    fields: Fields,
    query: &dyn Query,
    limit: usize,
) -> Result<Vec<SearchHit>, EngineFailure> {
    let by_score_then_time = TopDocs::with_limit(limit).order_by((
        SortBySimilarityScore,
        SortByStaticFastValue::<i64>::for_field("timestamp"),
    ));
    let top: Vec<((Score, Option<i64>), DocAddress)> = searcher
        .search(query, &by_score_then_time)
        .map_err(|error| EngineFailure::new(ENGINE, "search", error))?;
    top.into_iter()
        .map(|((score, _), address)| read_hit(searcher, fields, address, score))
        .collect()
}

fn read_hit(
    searcher: &Searcher,
    fields: Fields,
    address: DocAddress,
    score: Score,
) -> Result<SearchHit, EngineFailure> {
    let stored: TantivyDocument = searcher
        .doc(address)
        .map_err(|error| EngineFailure::new(ENGINE, "read a hit", error))?;
    let kind = stored
        .get_first(fields.kind)
        .and_then(|value| value.as_str())
        .and_then(kind_from_name);
    let id = stored.get_first(fields.id).and_then(|value| value.as_str());
    let timestamp = stored
        .get_first(fields.timestamp)
        .and_then(|value| value.as_i64());
    match (kind, id, timestamp) {
        (Some(kind), Some(id), Some(timestamp)) => Ok(SearchHit {
            kind,
            id: id.to_owned(),
            timestamp,
            score,
        }),
        _ => Err(EngineFailure::new(
            ENGINE,
            "read a hit",
            format!("stored document {address:?} lacks its kind, id or timestamp"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tempfile::TempDir;

    fn settings() -> SearchSettings {
        // A long interval: commits happen on refresh (or by count), never by the clock.
        SearchSettings {
            commit_every_docs: 10_000,
            commit_interval_ms: 3_600_000,
            writer_memory_mb: 15,
        }
    }

    async fn open_at(path: &Path, settings: SearchSettings) -> Result<TantivySearch, OpenError> {
        let path = path.to_path_buf();
        crate::blocking::run_open(move || TantivySearch::open(&path, &settings)).await
    }

    async fn open_in_temp_dir() -> (Box<TantivySearch>, TempDir) {
        let dir = TempDir::new().unwrap();
        let store = open_at(&dir.path().join("search"), settings())
            .await
            .unwrap();
        (Box::new(store), dir)
    }

    crate::search_conformance!(open_in_temp_dir());

    fn tenant() -> TenantId {
        TenantId::parse("acme").unwrap()
    }

    fn log(id: &str, timestamp: UnixMillis, summary: &str) -> SearchDocument {
        SearchDocument {
            kind: DocumentKind::Log,
            id: id.to_owned(),
            timestamp,
            summary: summary.to_owned(),
            message: String::new(),
            hostname: String::new(),
            organization_name: String::new(),
            user: String::new(),
        }
    }

    fn words(text: &str) -> SearchQuery {
        SearchQuery {
            text: text.to_owned(),
            kind: None,
            from: None,
            to: None,
            limit: 100,
        }
    }

    async fn ids(store: &TantivySearch, text: &str) -> Vec<String> {
        let mut ids: Vec<String> = store
            .search(&tenant(), &words(text))
            .await
            .unwrap()
            .into_iter()
            .map(|hit| hit.id)
            .collect();
        ids.sort();
        ids
    }

    /// Polls until `text` finds `expected` hits: a bounded wait for the writer thread's
    /// asynchronous commit, not a timing assertion.
    async fn wait_for_hits(store: &TantivySearch, text: &str, expected: usize) {
        for _ in 0..500 {
            if ids(store, text).await.len() == expected {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{expected} hits for {text:?} never became visible");
    }

    fn listing(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn the_query_parser_splits_words_phrases_and_exclusions() {
        let clause = |excluded: bool, text: &str| QueryClause {
            excluded,
            text: text.to_owned(),
        };
        let cases: Vec<(&str, Vec<QueryClause>)> = vec![
            ("", vec![]),
            ("   \t\n", vec![]),
            (
                "disk full",
                vec![clause(false, "disk"), clause(false, "full")],
            ),
            (
                "\"disk full\" web01",
                vec![clause(false, "disk full"), clause(false, "web01")],
            ),
            (
                "-web01 disk",
                vec![clause(true, "web01"), clause(false, "disk")],
            ),
            ("-\"disk full\"", vec![clause(true, "disk full")]),
            (
                "\"disk full",
                vec![clause(false, "\"disk"), clause(false, "full")],
            ),
            (
                "disk full\"",
                vec![clause(false, "disk"), clause(false, "full\"")],
            ),
            ("\"\"", vec![clause(false, "")]),
            ("- -", vec![]),
            ("--x", vec![clause(true, "-x")]),
            ("status:failed", vec![clause(false, "status:failed")]),
            (
                "a\"b c\"",
                vec![clause(false, "a\"b"), clause(false, "c\"")],
            ),
            ("\"a\"b", vec![clause(false, "a"), clause(false, "b")]),
        ];
        for (input, expected) in cases {
            assert_eq!(parse_query_text(input), expected, "parsing {input:?}");
        }
    }

    #[tokio::test]
    async fn a_word_the_analyzer_splits_matches_as_a_phrase() {
        let (store, _dir) = open_in_temp_dir().await;
        store
            .index(
                &tenant(),
                vec![
                    SearchDocument {
                        hostname: "web-01.acme.local".into(),
                        ..log("web-01", 1_000, "")
                    },
                    log("apart", 2_000, "web traffic on port 01"),
                    log("reversed", 3_000, "01 web"),
                ],
            )
            .await
            .unwrap();
        store.refresh().await.unwrap();

        assert_eq!(ids(&store, "web-01").await, ["web-01"]);
        assert_eq!(ids(&store, "WEB-01.ACME").await, ["web-01"]);
        assert_eq!(ids(&store, "web 01").await, ["apart", "reversed", "web-01"]);
        assert_eq!(ids(&store, "-\"web 01\" web").await, ["apart", "reversed"]);
        assert_eq!(ids(&store, "-web-01").await, ["apart", "reversed"]);
        store.close().await.unwrap();
    }

    #[tokio::test]
    async fn commit_every_docs_makes_documents_visible_without_refresh() {
        let dir = TempDir::new().unwrap();
        let store = open_at(
            dir.path(),
            SearchSettings {
                commit_every_docs: 3,
                ..settings()
            },
        )
        .await
        .unwrap();

        store
            .index(
                &tenant(),
                vec![log("1", 1_000, "kestrel"), log("2", 2_000, "kestrel")],
            )
            .await
            .unwrap();
        store
            .index(&tenant(), vec![log("3", 3_000, "kestrel")])
            .await
            .unwrap();
        wait_for_hits(&store, "kestrel", 3).await;
        store.close().await.unwrap();
    }

    #[tokio::test]
    async fn commit_interval_makes_documents_visible_without_refresh() {
        let dir = TempDir::new().unwrap();
        let store = open_at(
            dir.path(),
            SearchSettings {
                commit_interval_ms: 20,
                ..settings()
            },
        )
        .await
        .unwrap();

        store
            .index(&tenant(), vec![log("1", 1_000, "kestrel")])
            .await
            .unwrap();
        wait_for_hits(&store, "kestrel", 1).await;
        store.close().await.unwrap();
    }

    #[tokio::test]
    async fn close_commits_pending_documents_and_they_survive_a_reopen() {
        let dir = TempDir::new().unwrap();
        let store = open_at(dir.path(), settings()).await.unwrap();
        store
            .index(
                &tenant(),
                vec![log("kept", 1_000, "kestrel"), log("gone", 2_000, "kestrel")],
            )
            .await
            .unwrap();
        store.refresh().await.unwrap();
        // Pending at close, never refreshed: close must commit them.
        store
            .delete(&tenant(), DocumentKind::Log, vec!["gone".to_owned()])
            .await
            .unwrap();
        store
            .index(&tenant(), vec![log("late", 3_000, "kestrel")])
            .await
            .unwrap();
        store.close().await.unwrap();

        let reopened = open_at(dir.path(), settings()).await.unwrap();
        assert_eq!(ids(&reopened, "kestrel").await, ["kept", "late"]);
        reopened.close().await.unwrap();
    }

    #[tokio::test]
    async fn a_directory_with_a_garbage_meta_json_is_refused_and_left_untouched() {
        let dir = TempDir::new().unwrap();
        std::fs::write(dir.path().join("meta.json"), "this is not an index").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "keep me").unwrap();

        let error = open_at(dir.path(), settings()).await.unwrap_err();
        assert!(matches!(error, OpenError::Foreign { .. }), "{error:?}");
        assert!(
            error
                .to_string()
                .contains(&dir.path().display().to_string()),
            "{error}"
        );
        assert_eq!(listing(dir.path()), ["meta.json", "notes.txt"]);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("meta.json")).unwrap(),
            "this is not an index"
        );
    }

    #[tokio::test]
    async fn a_directory_of_unrelated_files_is_refused_and_left_untouched() {
        let dir = TempDir::new().unwrap();
        std::fs::write(dir.path().join("photo.jpg"), "not ours").unwrap();

        let error = open_at(dir.path(), settings()).await.unwrap_err();
        assert!(matches!(error, OpenError::Foreign { .. }), "{error:?}");
        assert!(
            error
                .to_string()
                .contains(&dir.path().display().to_string()),
            "{error}"
        );
        assert_eq!(listing(dir.path()), ["photo.jpg"]);
    }

    #[tokio::test]
    async fn an_index_with_another_schema_is_refused() {
        let dir = TempDir::new().unwrap();
        let mut builder = Schema::builder();
        builder.add_text_field("title", TEXT);
        drop(Index::create_in_dir(dir.path(), builder.build()).unwrap());

        let error = open_at(dir.path(), settings()).await.unwrap_err();
        assert!(matches!(error, OpenError::Foreign { .. }), "{error:?}");
    }

    #[tokio::test]
    async fn a_directory_that_cannot_be_created_is_an_engine_error_naming_it() {
        let dir = TempDir::new().unwrap();
        std::fs::write(dir.path().join("occupied"), "a file, not a directory").unwrap();
        let path = dir.path().join("occupied").join("search");

        let error = open_at(&path, settings()).await.unwrap_err();
        assert!(matches!(error, OpenError::Engine { .. }), "{error:?}");
        assert!(
            error.to_string().contains(&path.display().to_string()),
            "{error}"
        );
    }

    #[tokio::test]
    async fn open_creates_missing_parent_directories() {
        let dir = TempDir::new().unwrap();
        let path = dir.path().join("data").join("search");
        let store = open_at(&path, settings()).await.unwrap();
        store.check().await.unwrap();
        assert!(path.join(META_FILE).exists());
        assert!(ids(&store, "").await.is_empty());
        assert!(ids(&store, "kestrel").await.is_empty());
        store.close().await.unwrap();
    }

    #[tokio::test]
    async fn a_second_open_of_the_same_directory_fails_while_the_first_is_open() {
        let dir = TempDir::new().unwrap();
        let first = open_at(dir.path(), settings()).await.unwrap();

        let error = open_at(dir.path(), settings()).await.unwrap_err();
        assert!(matches!(error, OpenError::Engine { .. }), "{error:?}");

        first.close().await.unwrap();
        let again = open_at(dir.path(), settings()).await.unwrap();
        again.close().await.unwrap();
    }

    #[tokio::test]
    async fn closing_twice_is_fine_and_every_later_call_fails() {
        let (store, _dir) = open_in_temp_dir().await;
        assert_eq!(store.engine_name(), "tantivy");
        store.check().await.unwrap();
        store
            .index(&tenant(), vec![log("1", 1_000, "kestrel")])
            .await
            .unwrap();

        store.close().await.unwrap();
        store.close().await.unwrap();

        assert!(store.check().await.is_err());
        let unavailable =
            |result: Result<(), SearchError>| matches!(result, Err(SearchError::Unavailable(_)));
        assert!(unavailable(
            store
                .index(&tenant(), vec![log("2", 2_000, "kestrel")])
                .await
        ));
        assert!(unavailable(
            store
                .delete(&tenant(), DocumentKind::Log, vec!["1".to_owned()])
                .await
        ));
        assert!(unavailable(
            store
                .delete_before(&tenant(), DocumentKind::Log, 5_000)
                .await
        ));
        assert!(unavailable(store.refresh().await));
        assert!(matches!(
            store.search(&tenant(), &words("kestrel")).await,
            Err(SearchError::Unavailable(_))
        ));
    }

    #[tokio::test]
    async fn dropping_the_store_without_close_still_commits() {
        let dir = TempDir::new().unwrap();
        let store = open_at(dir.path(), settings()).await.unwrap();
        store
            .index(&tenant(), vec![log("1", 1_000, "kestrel")])
            .await
            .unwrap();
        drop(store);

        // The writer thread commits and releases its lock on its own; reopening waits for that.
        for _ in 0..500 {
            match open_at(dir.path(), settings()).await {
                Ok(reopened) => {
                    assert_eq!(ids(&reopened, "kestrel").await, ["1"]);
                    reopened.close().await.unwrap();
                    return;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
        panic!("the dropped store never released the index");
    }
}
