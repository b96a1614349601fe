//! redb engine for the event log (Kafka's role) and the log details (Cassandra's `unified_logs`),
//! both in one file, `events.redb`.
//!
//! redb allows one write transaction at a time, and each durable commit costs an fsync. So all
//! writes go through one dedicated writer thread that **group-commits**: it takes every write
//! waiting in its queue (up to a bound), applies them in one transaction, commits once (one fsync),
//! and only then answers each caller. Under load that turns many small appends into one disk flush;
//! with a single caller it costs nothing extra. Reads use redb's MVCC read transactions on the
//! blocking pool and never wait for the writer.
//!
//! Tables: `records (tenant, topic, offset) -> encoded record`, `streams (tenant, topic) -> (start,
//! end, bytes)`, `groups (tenant, topic, group) -> next offset`, `details (tenant, timestamp,
//! tool_event_id) -> bytes`, and `meta` with the format version. The tenant leads every key.

mod codec;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;

use async_trait::async_trait;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::{mpsc, oneshot, watch};

use crate::Engine;
use crate::blocking;
use crate::details::{LogDetails, LogKey, MAX_SCAN};
use crate::error::{EngineFailure, LogError, OpenError};
use crate::log::{
    Appended, EventLog, LogRecord, MAX_RECORD_BYTES, NewRecord, RetentionPolicy, RetentionReport,
    StreamBounds, validate_batch,
};
use crate::model::{Clock, GroupId, Offset, TenantId, Topic, UnixMillis};

const ENGINE: &str = "redb";
/// The layout of the tables below; bumped (with a migration) when it changes.
const FORMAT_VERSION: u64 = 1;
const REDB_MAGIC: &[u8; 9] = b"redb\x1A\x0A\xA9\x0D\x0A";

const RECORDS: TableDefinition<(&str, &str, u64), &[u8]> = TableDefinition::new("records");
const STREAMS: TableDefinition<(&str, &str), (u64, u64, u64)> = TableDefinition::new("streams");
const GROUPS: TableDefinition<(&str, &str, &str), u64> = TableDefinition::new("groups");
const DETAILS: TableDefinition<(&str, i64, &str), &[u8]> = TableDefinition::new("details");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// How many queued writes one group commit takes at most, and how many payload bytes.
const MAX_GROUP_COMMANDS: usize = 4096;
const MAX_GROUP_BYTES: usize = 64 * 1024 * 1024;
/// Writes waiting for the writer thread; beyond this, callers wait (backpressure, not memory).
const QUEUE_DEPTH: usize = 8192;
/// redb's page cache unless configured: enough for the hot tail of every stream.
pub const DEFAULT_CACHE_BYTES: usize = 128 * 1024 * 1024;

type StreamKey = (TenantId, Topic);
type Reply<T> = oneshot::Sender<Result<T, LogError>>;

/// One write for the writer thread. Callers validate input first, so inside a transaction only
/// the engine can fail, and then the whole group fails together.
enum Command {
    Append {
        tenant: TenantId,
        topic: Topic,
        records: Vec<NewRecord>,
        reply: Reply<Appended>,
    },
    CommitOffset {
        tenant: TenantId,
        topic: Topic,
        group: GroupId,
        next: Offset,
        reply: Reply<()>,
    },
    PutDetails {
        tenant: TenantId,
        entries: Vec<(LogKey, Vec<u8>)>,
        reply: Reply<()>,
    },
    DeleteDetails {
        tenant: TenantId,
        before: UnixMillis,
        reply: Reply<u64>,
    },
    Retention {
        topic: Topic,
        policy: RetentionPolicy,
        reply: Reply<RetentionReport>,
    },
}

impl Command {
    fn payload_bytes(&self) -> usize {
        match self {
            Command::Append { records, .. } => records.iter().map(NewRecord::encoded_len).sum(),
            Command::PutDetails { entries, .. } => {
                entries.iter().map(|(_, value)| value.len()).sum()
            }
            _ => 0,
        }
    }
}

/// The redb-backed [`EventLog`] and [`LogDetails`].
#[derive(Debug, Clone)]
pub struct RedbLog {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    /// `None` once closed (and while the writer reopens the file); readers clone the `Arc` for
    /// the length of one read. Shared with the writer, which swaps in a reopened database.
    database: Arc<RwLock<Option<Arc<Database>>>>,
    /// The writer thread's queue; `None` once closed, which stops the thread.
    commands: RwLock<Option<mpsc::Sender<Command>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    /// End offsets of every stream, published after each durable append, for `watch`.
    ends: Arc<Mutex<HashMap<StreamKey, watch::Sender<Offset>>>>,
    /// Why the last group commit failed, until one succeeds: reads may still work while writes
    /// cannot (a full disk), and readiness must say so.
    commit_failure: Arc<Mutex<Option<String>>>,
}

impl RedbLog {
    /// Opens or creates `path`. Refuses a file that is not a redb database, or one written by a
    /// newer release, without writing to it.
    pub fn open(path: &Path, clock: Arc<dyn Clock>) -> Result<RedbLog, OpenError> {
        Self::open_with_cache(path, clock, DEFAULT_CACHE_BYTES)
    }

    /// [`RedbLog::open`] with redb's page cache bounded to `cache_bytes` (redb's own default is
    /// 1 GiB, too much for a small appliance; reads past the cache go to the OS page cache).
    pub fn open_with_cache(
        path: &Path,
        clock: Arc<dyn Clock>,
        cache_bytes: usize,
    ) -> Result<RedbLog, OpenError> {
        Self::open_with(path, clock, cache_bytes, |builder, path| {
            builder.create(path)
        })
    }

    /// Opens with a caller-chosen way to create the database (tests inject failing storage); the
    /// writer uses it again to reopen the file after a failed write.
    pub(crate) fn open_with(
        path: &Path,
        clock: Arc<dyn Clock>,
        cache_bytes: usize,
        mut create: impl FnMut(&redb::Builder, &Path) -> Result<Database, redb::DatabaseError>
        + Send
        + 'static,
    ) -> Result<RedbLog, OpenError> {
        crate::magic::refuse_unless_starts_with(
            path,
            REDB_MAGIC,
            "event log",
            "redb's magic number",
        )?;
        let mut builder = Database::builder();
        builder.set_cache_size(cache_bytes);
        let database = create(&builder, path).map_err(|error| match error {
            redb::DatabaseError::DatabaseAlreadyOpen => OpenError::engine(
                path,
                "the file is already open (is another openframe running on this data dir?)",
            ),
            other => OpenError::engine(path, other),
        })?;
        check_or_initialise_format(path, &database)?;
        let ends = load_stream_ends(path, &database)?;
        let database = Arc::new(database);
        let (sender, receiver) = mpsc::channel(QUEUE_DEPTH);
        let ends = Arc::new(Mutex::new(ends));
        let commit_failure = Arc::new(Mutex::new(None));
        let slot = Arc::new(RwLock::new(Some(database.clone())));
        let writer = Writer {
            database: Some(database),
            slot: slot.clone(),
            reopen: Reopen {
                path: path.to_owned(),
                cache_bytes,
                create: Box::new(create),
                needed: false,
                last_attempt: None,
            },
            ends: ends.clone(),
            commit_failure: commit_failure.clone(),
            clock,
        };
        let thread = std::thread::Builder::new()
            .name("redb-log-writer".into())
            .spawn(move || writer.run(receiver))
            .map_err(|error| OpenError::engine(path, error))?;
        Ok(RedbLog {
            inner: Arc::new(Inner {
                path: path.to_owned(),
                database: slot,
                commands: RwLock::new(Some(sender)),
                writer: Mutex::new(Some(thread)),
                ends,
                commit_failure,
            }),
        })
    }

    async fn submit<T>(
        &self,
        operation: &'static str,
        command: impl FnOnce(Reply<T>) -> Command,
    ) -> Result<T, LogError> {
        let sender = self
            .inner
            .commands
            .read()
            .map_err(|_| EngineFailure::new(ENGINE, operation, "lock poisoned"))?
            .clone()
            .ok_or_else(|| closed(operation))?;
        let (reply, answer) = oneshot::channel();
        sender
            .send(command(reply))
            .await
            .map_err(|_| closed(operation))?;
        answer
            .await
            .map_err(|_| EngineFailure::new(ENGINE, operation, "the writer thread stopped"))?
    }

    async fn read_snapshot<T: Send + 'static>(
        &self,
        operation: &'static str,
        work: impl FnOnce(&redb::ReadTransaction) -> Result<T, LogError> + Send + 'static,
    ) -> Result<T, LogError> {
        let database = self
            .inner
            .database
            .read()
            .map_err(|_| EngineFailure::new(ENGINE, operation, "lock poisoned"))?
            .clone()
            .ok_or_else(|| closed(operation))?;
        blocking::run(ENGINE, operation, move || {
            let transaction = database.begin_read().map_err(fail(operation))?;
            work(&transaction)
        })
        .await
    }
}

/// The table layout version this build writes (the `meta` table's `format_version`).
pub fn format_version() -> i64 {
    FORMAT_VERSION as i64
}

/// The format version of the event log at `path`, read without migrating it: `None` when there is
/// no file yet or it was never initialised. Opens the file exclusively (redb repairs it after an
/// unclean stop), so only the holder of the data dir may call it.
pub fn stored_format_version(path: &Path) -> Result<Option<i64>, OpenError> {
    with_file_as_is(path, || Ok(()))
}

/// Copies the event log at `path` to `target` (which must not exist) byte for byte, at the format
/// it has, after a clean open and close, and flushes the copy to disk. Only the holder of the data
/// dir may call it: that is what keeps writers out while it copies.
pub fn copy_as_is(path: &Path, target: &Path) -> Result<(), OpenError> {
    with_file_as_is(path, || {
        let copy_error = |error: std::io::Error| OpenError::copy(path, target, error);
        let mut to = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(target)
            .map_err(copy_error)?;
        let mut from = std::fs::File::open(path).map_err(copy_error)?;
        std::io::copy(&mut from, &mut to).map_err(copy_error)?;
        to.sync_all().map_err(copy_error)
    })?;
    Ok(())
}

/// Opens the database at `path` without initialising or migrating it (redb repairs it after an
/// unclean stop), closes it, runs `work`, and returns its format version.
fn with_file_as_is(
    path: &Path,
    work: impl FnOnce() -> Result<(), OpenError>,
) -> Result<Option<i64>, OpenError> {
    if std::fs::metadata(path).map_or(true, |metadata| metadata.len() == 0) {
        return Ok(None);
    }
    crate::magic::refuse_unless_starts_with(path, REDB_MAGIC, "event log", "redb's magic number")?;
    let engine_error = |error: redb::Error| OpenError::engine(path, error);
    let database = Database::open(path).map_err(|error| match error {
        redb::DatabaseError::DatabaseAlreadyOpen => OpenError::engine(
            path,
            "the file is already open (is another openframe running on this data dir?)",
        ),
        other => OpenError::engine(path, other),
    })?;
    let found = {
        let transaction = database.begin_read().map_err(|e| engine_error(e.into()))?;
        match transaction.open_table(META) {
            Ok(meta) => meta
                .get("format_version")
                .map_err(|e| engine_error(e.into()))?
                .map(|guard| guard.value()),
            Err(redb::TableError::TableDoesNotExist(_)) => None,
            Err(other) => return Err(engine_error(other.into())),
        }
    };
    if let Some(version) = found
        && version > FORMAT_VERSION
    {
        return Err(OpenError::NewerSchema {
            path: path.to_owned(),
            found: version as i64,
            supported: FORMAT_VERSION as i64,
        });
    }
    // Closed first, so the file is marked clean; the data dir's holder keeps others out.
    drop(database);
    work()?;
    Ok(found.map(|version| version as i64))
}

fn closed(operation: &'static str) -> EngineFailure {
    EngineFailure::new(ENGINE, operation, "the event log is closed")
}

/// A name read back from the log's own tables; one that does not parse means corruption.
fn parse_stored<T>(parsed: Result<T, crate::model::IdError>) -> Result<T, LogError> {
    parsed.map_err(|error| LogError::Unavailable(EngineFailure::new(ENGINE, "read names", error)))
}

fn fail<E: Into<redb::Error>>(operation: &'static str) -> impl Fn(E) -> LogError {
    move |error| LogError::Unavailable(EngineFailure::new(ENGINE, operation, error.into()))
}

fn check_or_initialise_format(path: &Path, database: &Database) -> Result<(), OpenError> {
    let engine_error = |error: redb::Error| OpenError::engine(path, error);
    let transaction = database.begin_write().map_err(|e| engine_error(e.into()))?;
    {
        let mut meta = transaction
            .open_table(META)
            .map_err(|e| engine_error(e.into()))?;
        let found = meta
            .get("format_version")
            .map_err(|e| engine_error(e.into()))?
            .map(|guard| guard.value());
        match found {
            Some(version) if version > FORMAT_VERSION => {
                return Err(OpenError::NewerSchema {
                    path: path.to_owned(),
                    found: version as i64,
                    supported: FORMAT_VERSION as i64,
                });
            }
            Some(_) => {}
            None => {
                meta.insert("format_version", FORMAT_VERSION)
                    .map_err(|e| engine_error(e.into()))?;
            }
        }
        // Create every table up front so readers never meet a missing table.
        transaction
            .open_table(RECORDS)
            .map_err(|e| engine_error(e.into()))?;
        transaction
            .open_table(STREAMS)
            .map_err(|e| engine_error(e.into()))?;
        transaction
            .open_table(GROUPS)
            .map_err(|e| engine_error(e.into()))?;
        transaction
            .open_table(DETAILS)
            .map_err(|e| engine_error(e.into()))?;
    }
    transaction.commit().map_err(|e| engine_error(e.into()))
}

fn load_stream_ends(
    path: &Path,
    database: &Database,
) -> Result<HashMap<StreamKey, watch::Sender<Offset>>, OpenError> {
    let engine_error = |error: redb::Error| OpenError::engine(path, error);
    let transaction = database.begin_read().map_err(|e| engine_error(e.into()))?;
    let streams = transaction
        .open_table(STREAMS)
        .map_err(|e| engine_error(e.into()))?;
    let mut ends = HashMap::new();
    for entry in streams.iter().map_err(|e| engine_error(e.into()))? {
        let (key, value) = entry.map_err(|e| engine_error(e.into()))?;
        let (tenant, topic) = key.value();
        let (tenant, topic) = match (TenantId::parse(tenant), Topic::parse(topic)) {
            (Ok(tenant), Ok(topic)) => (tenant, topic),
            _ => {
                return Err(OpenError::Foreign {
                    path: path.to_owned(),
                    what: "event log",
                    detail: format!("a stream is named {tenant:?}/{topic:?}"),
                });
            }
        };
        let (_, end, _) = value.value();
        ends.insert((tenant, topic), watch::Sender::new(Offset(end)));
    }
    Ok(ends)
}

/// The writer thread's state.
struct Writer {
    /// `None` while a reopen has not succeeded.
    database: Option<Arc<Database>>,
    /// The readers' handle, the same as `Inner::database`.
    slot: Arc<RwLock<Option<Arc<Database>>>>,
    reopen: Reopen,
    ends: Arc<Mutex<HashMap<StreamKey, watch::Sender<Offset>>>>,
    commit_failure: Arc<Mutex<Option<String>>>,
    clock: Arc<dyn Clock>,
}

/// redb refuses every write after an I/O error (a full disk) until the file is reopened: after a
/// failed group the writer closes the database and opens it again (redb repairs it to the last
/// commit), at most once per [`REOPEN_EVERY`], so writes resume once there is room again.
struct Reopen {
    path: PathBuf,
    cache_bytes: usize,
    create: Box<CreateDatabase>,
    needed: bool,
    last_attempt: Option<std::time::Instant>,
}

/// How the database file is opened: redb's own file, or a test's failing backend.
type CreateDatabase =
    dyn FnMut(&redb::Builder, &Path) -> Result<Database, redb::DatabaseError> + Send;

/// How often the writer tries to reopen a failing database; the 503s meanwhile say to retry.
const REOPEN_EVERY: std::time::Duration = std::time::Duration::from_secs(2);
/// How long a reopen waits for reads in flight to let go of the old database.
const READERS_LET_GO_WITHIN: std::time::Duration = std::time::Duration::from_secs(10);

/// What applying one command produced, answered to its caller only once the group's commit
/// has decided whether it stands.
enum Effect {
    Appended(Appended),
    Done,
    Count(u64),
    Retention(RetentionReport),
}

impl Writer {
    fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        while let Some(first) = commands.blocking_recv() {
            let mut bytes = first.payload_bytes();
            let mut group = vec![first];
            while group.len() < MAX_GROUP_COMMANDS && bytes < MAX_GROUP_BYTES {
                match commands.try_recv() {
                    Ok(command) => {
                        bytes += command.payload_bytes();
                        group.push(command);
                    }
                    Err(_) => break,
                }
            }
            self.commit_group(group);
        }
        tracing::debug!("event log writer stopped");
    }

    /// Applies every command of the group in one write transaction and commits once (one fsync).
    /// Callers hear back only after the commit: all succeed, or all get the engine's error.
    fn commit_group(&mut self, group: Vec<Command>) {
        if self.reopen.needed {
            self.try_reopen();
        }
        let outcome = match &self.database {
            Some(database) => self.apply_group(database, &group),
            None => Err(EngineFailure::new(
                ENGINE,
                "reopen",
                "the event log could not be reopened after a failed write; retrying",
            )),
        };
        self.reopen.needed = outcome.is_err();
        if let Ok(mut last_failure) = self.commit_failure.lock() {
            // A failure while reopening keeps the one that caused it visible.
            if outcome.is_ok() || self.database.is_some() || last_failure.is_none() {
                *last_failure = outcome.as_ref().err().map(ToString::to_string);
            }
        }
        match outcome {
            Ok(effects) => {
                let mut ends = match self.ends.lock() {
                    Ok(ends) => ends,
                    Err(poisoned) => poisoned.into_inner(),
                };
                for (command, effect) in group.into_iter().zip(effects) {
                    command.answer(effect, &mut ends);
                }
            }
            Err(failure) => {
                tracing::error!(error = %failure, "event log commit failed; nothing in the group was acknowledged");
                for command in group {
                    command.fail(&failure);
                }
            }
        }
    }

    fn apply_group(
        &self,
        database: &Database,
        group: &[Command],
    ) -> Result<Vec<Effect>, EngineFailure> {
        let mut transaction = database
            .begin_write()
            .map_err(|error| EngineFailure::new(ENGINE, "begin write", error))?;
        // Immediate durability is redb's default; say so, since the contract depends on it.
        transaction
            .set_durability(redb::Durability::Immediate)
            .map_err(|error| EngineFailure::new(ENGINE, "set durability", error))?;
        let now = self.clock.now_ms();
        let effects = {
            // Tables borrow the transaction, so they are closed before it commits.
            let mut tables = WriteTables::open(&transaction)?;
            group
                .iter()
                .map(|command| apply(&mut tables, command, now))
                .collect::<Result<Vec<_>, _>>()?
        };
        transaction
            .commit()
            .map_err(|error| EngineFailure::new(ENGINE, "commit", error))?;
        Ok(effects)
    }

    /// Closes the database and opens it again, unless tried within [`REOPEN_EVERY`]. Readers get
    /// "closed" meanwhile, and the old file handle is dropped only once no read holds it.
    fn try_reopen(&mut self) {
        let now = std::time::Instant::now();
        if self
            .reopen
            .last_attempt
            .is_some_and(|last| now.duration_since(last) < REOPEN_EVERY)
        {
            return;
        }
        self.reopen.last_attempt = Some(now);
        let path = self.reopen.path.clone();
        if let Some(old) = self.database.take() {
            if let Ok(mut slot) = self.slot.write() {
                slot.take();
            }
            let deadline = now + READERS_LET_GO_WITHIN;
            while Arc::strong_count(&old) > 1 && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            if Arc::strong_count(&old) > 1 {
                tracing::warn!(path = %path.display(), "reads still hold the event log; reopening later");
                self.put_back(old);
                return;
            }
            drop(old);
        }
        let mut builder = Database::builder();
        builder.set_cache_size(self.reopen.cache_bytes);
        match (self.reopen.create)(&builder, &path) {
            Ok(database) => {
                tracing::info!(path = %path.display(), "reopened the event log after a failed write");
                self.put_back(Arc::new(database));
            }
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "cannot reopen the event log yet");
            }
        }
    }

    fn put_back(&mut self, database: Arc<Database>) {
        if let Ok(mut slot) = self.slot.write() {
            *slot = Some(database.clone());
        }
        self.database = Some(database);
    }
}

impl Command {
    /// Answers the caller with the committed effect, publishing new stream ends to watchers.
    fn answer(self, effect: Effect, ends: &mut HashMap<StreamKey, watch::Sender<Offset>>) {
        match (self, effect) {
            (
                Command::Append {
                    tenant,
                    topic,
                    reply,
                    ..
                },
                Effect::Appended(appended),
            ) => {
                let end = appended.last.next();
                ends.entry((tenant, topic))
                    .and_modify(|sender| {
                        sender.send_replace(end);
                    })
                    .or_insert_with(|| watch::Sender::new(end));
                let _ = reply.send(Ok(appended));
            }
            (
                Command::CommitOffset { reply, .. } | Command::PutDetails { reply, .. },
                Effect::Done,
            ) => {
                let _ = reply.send(Ok(()));
            }
            (Command::DeleteDetails { reply, .. }, Effect::Count(count)) => {
                let _ = reply.send(Ok(count));
            }
            (Command::Retention { reply, .. }, Effect::Retention(report)) => {
                let _ = reply.send(Ok(report));
            }
            // `apply` produces the effect of the command's own kind, so this arm is unreachable;
            // dropping the command closes its reply, which its caller sees as a failure.
            (command, _) => {
                tracing::error!("event log writer paired a command with the wrong effect");
                drop(command);
            }
        }
    }

    /// Tells the caller that nothing of its write was committed.
    fn fail(self, failure: &EngineFailure) {
        let error = || {
            LogError::Unavailable(EngineFailure::new(
                ENGINE,
                failure.operation,
                failure.to_string(),
            ))
        };
        match self {
            Command::Append { reply, .. } => drop(reply.send(Err(error()))),
            Command::CommitOffset { reply, .. } | Command::PutDetails { reply, .. } => {
                drop(reply.send(Err(error())))
            }
            Command::DeleteDetails { reply, .. } => drop(reply.send(Err(error()))),
            Command::Retention { reply, .. } => drop(reply.send(Err(error()))),
        }
    }
}

/// The tables one write transaction works on, opened once per group rather than once per command.
struct WriteTables<'txn> {
    records: redb::Table<'txn, (&'static str, &'static str, u64), &'static [u8]>,
    streams: redb::Table<'txn, (&'static str, &'static str), (u64, u64, u64)>,
    groups: redb::Table<'txn, (&'static str, &'static str, &'static str), u64>,
    details: redb::Table<'txn, (&'static str, i64, &'static str), &'static [u8]>,
}

impl<'txn> WriteTables<'txn> {
    fn open(transaction: &'txn redb::WriteTransaction) -> Result<Self, EngineFailure> {
        let failure = |error: redb::TableError| EngineFailure::new(ENGINE, "open tables", error);
        Ok(WriteTables {
            records: transaction.open_table(RECORDS).map_err(failure)?,
            streams: transaction.open_table(STREAMS).map_err(failure)?,
            groups: transaction.open_table(GROUPS).map_err(failure)?,
            details: transaction.open_table(DETAILS).map_err(failure)?,
        })
    }
}

fn apply(
    tables: &mut WriteTables<'_>,
    command: &Command,
    now: UnixMillis,
) -> Result<Effect, EngineFailure> {
    let failure = |operation: &'static str| {
        move |error: redb::StorageError| EngineFailure::new(ENGINE, operation, error)
    };
    match command {
        Command::Append {
            tenant,
            topic,
            records,
            ..
        } => append(tables, tenant, topic, records, now).map(Effect::Appended),
        Command::CommitOffset {
            tenant,
            topic,
            group,
            next,
            ..
        } => tables
            .groups
            .insert((tenant.as_str(), topic.as_str(), group.as_str()), next.0)
            .map(|_| Effect::Done)
            .map_err(failure("commit offset")),
        Command::PutDetails {
            tenant, entries, ..
        } => {
            for (key, value) in entries {
                tables
                    .details
                    .insert(
                        (tenant.as_str(), key.timestamp, key.tool_event_id.as_str()),
                        value.as_slice(),
                    )
                    .map_err(failure("put details"))?;
            }
            Ok(Effect::Done)
        }
        Command::DeleteDetails { tenant, before, .. } => {
            let start = (tenant.as_str(), i64::MIN, "");
            let end = (tenant.as_str(), *before, "");
            let mut deleted = 0;
            for entry in tables
                .details
                .extract_from_if(start..end, |_, _| true)
                .map_err(failure("delete details"))?
            {
                entry.map_err(failure("delete details"))?;
                deleted += 1;
            }
            Ok(Effect::Count(deleted))
        }
        Command::Retention { topic, policy, .. } => {
            retain(tables, topic, *policy, now).map(Effect::Retention)
        }
    }
}

fn append(
    tables: &mut WriteTables<'_>,
    tenant: &TenantId,
    topic: &Topic,
    records: &[NewRecord],
    now: UnixMillis,
) -> Result<Appended, EngineFailure> {
    let failure = |error: redb::StorageError| EngineFailure::new(ENGINE, "append", error);
    let stream_key = (tenant.as_str(), topic.as_str());
    let (start, end, mut bytes) = tables
        .streams
        .get(stream_key)
        .map_err(failure)?
        .map_or((0, 0, 0), |guard| guard.value());
    let mut next = end;
    for record in records {
        let encoded = codec::encode(record, now);
        bytes += encoded.len() as u64;
        tables
            .records
            .insert((tenant.as_str(), topic.as_str(), next), encoded.as_slice())
            .map_err(failure)?;
        next += 1;
    }
    tables
        .streams
        .insert(stream_key, (start, next, bytes))
        .map_err(failure)?;
    Ok(Appended {
        first: Offset(end),
        last: Offset(next - 1),
    })
}

fn retain(
    tables: &mut WriteTables<'_>,
    topic: &Topic,
    policy: RetentionPolicy,
    now: UnixMillis,
) -> Result<RetentionReport, EngineFailure> {
    let failure =
        |error: redb::StorageError| EngineFailure::new(ENGINE, "enforce retention", error);
    let mut of_topic = Vec::new();
    for entry in tables.streams.iter().map_err(failure)? {
        let (key, value) = entry.map_err(failure)?;
        let (tenant, stream_topic) = key.value();
        if stream_topic == topic.as_str() {
            of_topic.push((tenant.to_owned(), value.value()));
        }
    }
    let cutoff = policy.max_age_ms.map(|age| now.saturating_sub(age));
    let mut report = RetentionReport::default();
    for (tenant, (start, end, mut bytes)) in of_topic {
        let mut new_start = start;
        let mut doomed = Vec::new();
        for entry in tables
            .records
            .range((tenant.as_str(), topic.as_str(), start)..(tenant.as_str(), topic.as_str(), end))
            .map_err(failure)?
        {
            let (key, value) = entry.map_err(failure)?;
            let stored = value.value();
            let too_old = match cutoff {
                Some(cutoff) => {
                    codec::appended_at(stored).map_err(|corrupt| {
                        EngineFailure::new(ENGINE, "enforce retention", corrupt)
                    })? < cutoff
                }
                None => false,
            };
            let too_big = policy.max_bytes.is_some_and(|max| bytes > max);
            if !(too_old || too_big) {
                break;
            }
            let (_, _, offset) = key.value();
            bytes -= stored.len() as u64;
            report.bytes += stored.len() as u64;
            report.records += 1;
            new_start = offset + 1;
            doomed.push(offset);
        }
        for offset in doomed {
            tables
                .records
                .remove((tenant.as_str(), topic.as_str(), offset))
                .map_err(failure)?;
        }
        if new_start != start {
            tables
                .streams
                .insert((tenant.as_str(), topic.as_str()), (new_start, end, bytes))
                .map_err(failure)?;
        }
    }
    Ok(report)
}

#[async_trait]
impl Engine for RedbLog {
    fn engine_name(&self) -> &'static str {
        ENGINE
    }

    async fn check(&self) -> Result<(), EngineFailure> {
        let writer_alive = self
            .inner
            .writer
            .lock()
            .map_err(|_| EngineFailure::new(ENGINE, "check", "lock poisoned"))?
            .as_ref()
            .is_some_and(|thread| !thread.is_finished());
        if !writer_alive {
            return Err(EngineFailure::new(
                ENGINE,
                "check",
                "the writer thread is not running",
            ));
        }
        let last_failure = self
            .inner
            .commit_failure
            .lock()
            .map_err(|_| EngineFailure::new(ENGINE, "check", "lock poisoned"))?
            .clone();
        if let Some(reason) = last_failure {
            return Err(EngineFailure::new(
                ENGINE,
                "check",
                format!("the last commit failed: {reason}"),
            ));
        }
        let probe = self
            .read_snapshot("check", |transaction| {
                transaction.open_table(META).map_err(fail("check"))?;
                Ok(())
            })
            .await;
        match probe {
            Ok(()) => Ok(()),
            Err(LogError::Unavailable(failure)) => Err(failure),
            Err(other) => Err(EngineFailure::new(ENGINE, "check", other)),
        }
    }

    async fn close(&self) -> Result<(), EngineFailure> {
        fn poisoned<T>(_: T) -> EngineFailure {
            EngineFailure::new(ENGINE, "close", "lock poisoned")
        }
        // Dropping the sender ends the writer's loop once it has drained the queue.
        self.inner.commands.write().map_err(poisoned)?.take();
        let thread = self.inner.writer.lock().map_err(poisoned)?.take();
        let slot = self.inner.database.clone();
        let path = self.inner.path.clone();
        blocking::run(ENGINE, "close", move || {
            if let Some(thread) = thread {
                thread.join().map_err(|_| {
                    EngineFailure::new(ENGINE, "close", "the writer thread panicked")
                })?;
            }
            // Taken after the writer stopped, which may have reopened the file meanwhile.
            let database = slot.write().map_err(poisoned)?.take();
            // Dropping the last handle closes the file; in-flight reads hold their own clone.
            drop(database);
            tracing::debug!(path = %path.display(), "closed event log");
            Ok(())
        })
        .await
    }

    /// One read transaction (MVCC: the writer thread goes on) copied table by table into a fresh
    /// redb file, committed durably.
    async fn snapshot(&self, into: &Path) -> Result<Vec<String>, EngineFailure> {
        let name = self
            .inner
            .path
            .file_name()
            .and_then(|name| name.to_str())
            .unwrap_or(crate::files::EVENTS)
            .to_owned();
        let target = into.join(&name);
        let copied = self
            .read_snapshot("snapshot", move |source| {
                copy_into(source, &target).map_err(fail("snapshot"))
            })
            .await;
        match copied {
            Ok(()) => Ok(vec![name]),
            Err(LogError::Unavailable(failure)) => Err(failure),
            Err(other) => Err(EngineFailure::new(ENGINE, "snapshot", other)),
        }
    }
}

/// Writes every table `source` sees into a new database at `target` (which must not exist).
fn copy_into(source: &redb::ReadTransaction, target: &Path) -> Result<(), redb::Error> {
    if target.exists() {
        return Err(redb::Error::Io(std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            format!("{} already exists", target.display()),
        )));
    }
    let copy = Database::create(target)?;
    let transaction = copy.begin_write()?;
    copy_table(source, &transaction, META)?;
    copy_table(source, &transaction, RECORDS)?;
    copy_table(source, &transaction, STREAMS)?;
    copy_table(source, &transaction, GROUPS)?;
    copy_table(source, &transaction, DETAILS)?;
    // A durable commit: redb flushes the file before it returns.
    transaction.commit()?;
    drop(copy);
    std::fs::File::open(target)
        .and_then(|file| file.sync_all())
        .map_err(redb::Error::Io)?;
    Ok(())
}

fn copy_table<K: redb::Key + 'static, V: redb::Value + 'static>(
    source: &redb::ReadTransaction,
    target: &redb::WriteTransaction,
    table: TableDefinition<K, V>,
) -> Result<(), redb::Error> {
    let from = source.open_table(table)?;
    let mut to = target.open_table(table)?;
    for entry in from.iter()? {
        let (key, value) = entry?;
        to.insert(key.value(), value.value())?;
    }
    Ok(())
}

#[async_trait]
impl EventLog for RedbLog {
    async fn append_batch(
        &self,
        tenant: &TenantId,
        topic: &Topic,
        records: Vec<NewRecord>,
    ) -> Result<Appended, LogError> {
        validate_batch(&records)?;
        let (tenant, topic) = (tenant.clone(), topic.clone());
        self.submit("append", |reply| Command::Append {
            tenant,
            topic,
            records,
            reply,
        })
        .await
    }

    async fn read(
        &self,
        tenant: &TenantId,
        topic: &Topic,
        from: Offset,
        max_records: usize,
    ) -> Result<Vec<LogRecord>, LogError> {
        let (tenant, topic) = (tenant.clone(), topic.clone());
        let max_records = max_records.min(100_000);
        self.read_snapshot("read", move |transaction| {
            let table = transaction.open_table(RECORDS).map_err(fail("read"))?;
            let mut out = Vec::new();
            let range = (tenant.as_str(), topic.as_str(), from.0)
                ..=(tenant.as_str(), topic.as_str(), u64::MAX);
            for entry in table.range(range).map_err(fail("read"))?.take(max_records) {
                let (key, value) = entry.map_err(fail("read"))?;
                let (_, _, offset) = key.value();
                let (record, appended_at) = codec::decode(value.value())
                    .map_err(|corrupt| EngineFailure::new(ENGINE, "read", corrupt))?;
                out.push(LogRecord {
                    offset: Offset(offset),
                    appended_at,
                    record,
                });
            }
            Ok(out)
        })
        .await
    }

    async fn bounds(&self, tenant: &TenantId, topic: &Topic) -> Result<StreamBounds, LogError> {
        let (tenant, topic) = (tenant.clone(), topic.clone());
        self.read_snapshot("read bounds", move |transaction| {
            let streams = transaction
                .open_table(STREAMS)
                .map_err(fail("read bounds"))?;
            let bounds = streams
                .get((tenant.as_str(), topic.as_str()))
                .map_err(fail("read bounds"))?
                .map_or_else(StreamBounds::default, |guard| {
                    let (start, end, bytes) = guard.value();
                    StreamBounds {
                        start: Offset(start),
                        end: Offset(end),
                        bytes,
                    }
                });
            Ok(bounds)
        })
        .await
    }

    async fn tenants_of(&self, topic: &Topic) -> Result<Vec<TenantId>, LogError> {
        let ends = self
            .inner
            .ends
            .lock()
            .map_err(|_| EngineFailure::new(ENGINE, "list tenants", "lock poisoned"))?;
        let mut tenants: Vec<TenantId> = ends
            .iter()
            .filter(|((_, stream_topic), end)| stream_topic == topic && end.borrow().0 > 0)
            .map(|((tenant, _), _)| tenant.clone())
            .collect();
        tenants.sort();
        Ok(tenants)
    }

    async fn commit_offset(
        &self,
        tenant: &TenantId,
        topic: &Topic,
        group: &GroupId,
        next: Offset,
    ) -> Result<(), LogError> {
        let (tenant, topic, group) = (tenant.clone(), topic.clone(), group.clone());
        self.submit("commit offset", |reply| Command::CommitOffset {
            tenant,
            topic,
            group,
            next,
            reply,
        })
        .await
    }

    async fn committed_offset(
        &self,
        tenant: &TenantId,
        topic: &Topic,
        group: &GroupId,
    ) -> Result<Option<Offset>, LogError> {
        let (tenant, topic, group) = (tenant.clone(), topic.clone(), group.clone());
        self.read_snapshot("read committed offset", move |transaction| {
            let groups = transaction
                .open_table(GROUPS)
                .map_err(fail("read committed offset"))?;
            let next = groups
                .get((tenant.as_str(), topic.as_str(), group.as_str()))
                .map_err(fail("read committed offset"))?
                .map(|guard| Offset(guard.value()));
            Ok(next)
        })
        .await
    }

    async fn streams(&self) -> Result<Vec<(TenantId, Topic)>, LogError> {
        self.read_snapshot("list streams", |transaction| {
            let streams = transaction
                .open_table(STREAMS)
                .map_err(fail("list streams"))?;
            let mut found = Vec::new();
            for entry in streams.iter().map_err(fail("list streams"))? {
                let (key, _) = entry.map_err(fail("list streams"))?;
                let (tenant, topic) = key.value();
                found.push((
                    parse_stored(TenantId::parse(tenant))?,
                    parse_stored(Topic::parse(topic))?,
                ));
            }
            Ok(found)
        })
        .await
    }

    async fn committed_offsets(
        &self,
        tenant: &TenantId,
        topic: &Topic,
    ) -> Result<Vec<(GroupId, Offset)>, LogError> {
        let (tenant, topic) = (tenant.clone(), topic.clone());
        self.read_snapshot("list committed offsets", move |transaction| {
            let groups = transaction
                .open_table(GROUPS)
                .map_err(fail("list committed offsets"))?;
            let mut found = Vec::new();
            let range = groups
                .range((tenant.as_str(), topic.as_str(), "")..)
                .map_err(fail("list committed offsets"))?;
            for entry in range {
                let (key, next) = entry.map_err(fail("list committed offsets"))?;
                let (stored_tenant, stored_topic, group) = key.value();
                if (stored_tenant, stored_topic) != (tenant.as_str(), topic.as_str()) {
                    break;
                }
                found.push((parse_stored(GroupId::parse(group))?, Offset(next.value())));
            }
            Ok(found)
        })
        .await
    }

    fn watch(&self, tenant: &TenantId, topic: &Topic) -> watch::Receiver<Offset> {
        let mut ends = match self.inner.ends.lock() {
            Ok(ends) => ends,
            Err(poisoned) => poisoned.into_inner(),
        };
        ends.entry((tenant.clone(), topic.clone()))
            .or_insert_with(|| watch::Sender::new(Offset(0)))
            .subscribe()
    }

    async fn enforce_retention(
        &self,
        topic: &Topic,
        policy: RetentionPolicy,
    ) -> Result<RetentionReport, LogError> {
        let topic = topic.clone();
        self.submit("enforce retention", |reply| Command::Retention {
            topic,
            policy,
            reply,
        })
        .await
    }
}

#[async_trait]
impl LogDetails for RedbLog {
    async fn put_batch(
        &self,
        tenant: &TenantId,
        entries: Vec<(LogKey, Vec<u8>)>,
    ) -> Result<(), LogError> {
        if entries.is_empty() {
            return Ok(());
        }
        if let Some((key, value)) = entries
            .iter()
            .find(|(_, value)| value.len() > MAX_RECORD_BYTES)
        {
            return Err(LogError::InvalidRecord(format!(
                "details of {} are {} bytes; the limit is {MAX_RECORD_BYTES}",
                key.tool_event_id,
                value.len()
            )));
        }
        let tenant = tenant.clone();
        self.submit("put details", |reply| Command::PutDetails {
            tenant,
            entries,
            reply,
        })
        .await
    }

    async fn get(&self, tenant: &TenantId, key: &LogKey) -> Result<Option<Vec<u8>>, LogError> {
        let (tenant, key) = (tenant.clone(), key.clone());
        self.read_snapshot("read details", move |transaction| {
            let details = transaction
                .open_table(DETAILS)
                .map_err(fail("read details"))?;
            let value = details
                .get((tenant.as_str(), key.timestamp, key.tool_event_id.as_str()))
                .map_err(fail("read details"))?
                .map(|guard| guard.value().to_vec());
            Ok(value)
        })
        .await
    }

    async fn scan(
        &self,
        tenant: &TenantId,
        from: UnixMillis,
        to: UnixMillis,
        after: Option<&LogKey>,
        limit: usize,
    ) -> Result<Vec<(LogKey, Vec<u8>)>, LogError> {
        if !(1..=MAX_SCAN).contains(&limit) {
            return Err(LogError::InvalidRecord(format!(
                "limit must be between 1 and {MAX_SCAN}, got {limit}"
            )));
        }
        let (tenant, after) = (tenant.clone(), after.cloned());
        self.read_snapshot("scan details", move |transaction| {
            let details = transaction
                .open_table(DETAILS)
                .map_err(fail("scan details"))?;
            let mut out = Vec::new();
            if from >= to {
                return Ok(out);
            }
            let start = match &after {
                Some(key) if key.timestamp >= from => {
                    Bound::Excluded((tenant.as_str(), key.timestamp, key.tool_event_id.as_str()))
                }
                _ => Bound::Included((tenant.as_str(), from, "")),
            };
            let end = Bound::Excluded((tenant.as_str(), to, ""));
            for entry in details
                .range((start, end))
                .map_err(fail("scan details"))?
                .take(limit)
            {
                let (key, value) = entry.map_err(fail("scan details"))?;
                let (_, timestamp, tool_event_id) = key.value();
                out.push((
                    LogKey {
                        timestamp,
                        tool_event_id: tool_event_id.to_owned(),
                    },
                    value.value().to_vec(),
                ));
            }
            Ok(out)
        })
        .await
    }

    async fn delete_before(&self, tenant: &TenantId, before: UnixMillis) -> Result<u64, LogError> {
        let tenant = tenant.clone();
        self.submit("delete details", |reply| Command::DeleteDetails {
            tenant,
            before,
            reply,
        })
        .await
    }
}
