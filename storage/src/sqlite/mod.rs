//! SQLite engine for tenancy and documents (MongoDB's role), through rusqlite with bundled SQLite.
//!
//! One writer connection and a few reader connections in WAL mode, so reads never wait for a write.
//! `synchronous = FULL` makes each commit durable before it returns (WAL's default `NORMAL` may
//! lose the last commits on power loss, which breaks the acknowledged-write contract).
//! Every tenant-owned row has `tenant_id` in its primary key; every statement binds it.
//! Write transactions begin IMMEDIATE: a deferred one reads first and upgrades to a write later,
//! and under load that upgrade failed at once with "database is locked" (no busy wait applies
//! to it), which surfaced as 503s from the token endpoint.

mod migrations;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};

use crate::Engine;
use crate::blocking;
use crate::documents::{
    Document, DocumentStore, Tenant, TenantStatus, TenantStore, check_field, check_limit,
    encode_body,
};
use crate::error::{DocumentError, EngineFailure, OpenError};
use crate::model::{Clock, Collection, DocumentId, TenantId};

const ENGINE: &str = "sqlite";
const READERS: usize = 2;
const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";

/// The SQLite-backed [`TenantStore`] and [`DocumentStore`].
#[derive(Debug, Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    /// The only connection that writes; SQLite allows one writer at a time anyway.
    writer: Mutex<Option<Connection>>,
    /// Readers see the last committed state without blocking the writer (WAL).
    readers: Vec<Mutex<Option<Connection>>>,
    next_reader: AtomicUsize,
    clock: Arc<dyn Clock>,
    /// Why the last write the engine refused failed (a full disk, an I/O error), until a write
    /// succeeds again: readiness reports it, since reads alone would look healthy.
    write_failure: Mutex<Option<String>>,
}

impl SqliteStore {
    /// Opens or creates the database at `path` and brings its schema up to date. Refuses files
    /// that are not ours or come from a newer release, without writing to them.
    pub fn open(path: &Path, clock: Arc<dyn Clock>) -> Result<SqliteStore, OpenError> {
        refuse_unless_sqlite(path)?;
        let mut writer = open_connection(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
        )?;
        let engine_error = |error: rusqlite::Error| OpenError::engine(path, error);
        // Decide whether the file is ours before changing anything: even switching the journal
        // mode rewrites a database's header.
        let version = refuse_foreign_schema(path, &writer)?;
        writer
            .execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;")
            .map_err(engine_error)?;
        migrate(path, &mut writer, version)?;
        let readers = (0..READERS)
            .map(|_| {
                open_connection(path, OpenFlags::SQLITE_OPEN_READ_ONLY).map(|c| Mutex::new(Some(c)))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                path: path.to_owned(),
                writer: Mutex::new(Some(writer)),
                readers,
                next_reader: AtomicUsize::new(0),
                clock,
                write_failure: Mutex::new(None),
            }),
        })
    }

    /// Runs `work` with the writer connection on the blocking pool.
    async fn write<T: Send + 'static>(
        &self,
        operation: &'static str,
        work: impl FnOnce(&mut Connection, &Inner) -> Result<T, DocumentError> + Send + 'static,
    ) -> Result<T, DocumentError> {
        let inner = self.inner.clone();
        blocking::run(ENGINE, operation, move || {
            let mut guard = inner
                .writer
                .lock()
                .map_err(|_| EngineFailure::new(ENGINE, operation, "writer lock poisoned"))?;
            let connection = guard.as_mut().ok_or_else(|| closed(operation))?;
            let result = work(connection, &inner);
            let failure = match &result {
                Ok(_) => Some(None),
                Err(DocumentError::Unavailable(failure)) => Some(Some(failure.to_string())),
                Err(_) => None,
            };
            if let (Some(failure), Ok(mut held)) = (failure, inner.write_failure.lock()) {
                *held = failure;
            }
            result
        })
        .await
    }

    /// Runs `work` with one of the reader connections on the blocking pool.
    async fn read<T: Send + 'static>(
        &self,
        operation: &'static str,
        work: impl FnOnce(&Connection) -> Result<T, DocumentError> + Send + 'static,
    ) -> Result<T, DocumentError> {
        let inner = self.inner.clone();
        blocking::run(ENGINE, operation, move || {
            let index = inner.next_reader.fetch_add(1, Ordering::Relaxed) % inner.readers.len();
            let guard = inner.readers[index]
                .lock()
                .map_err(|_| EngineFailure::new(ENGINE, operation, "reader lock poisoned"))?;
            let connection = guard.as_ref().ok_or_else(|| closed(operation))?;
            work(connection)
        })
        .await
    }
}

/// The schema version (`PRAGMA user_version`) this build migrates tenancy databases to.
pub fn schema_version() -> i64 {
    migrations::latest()
}

/// The schema version of the tenancy database at `path`, read without changing it: `None` when
/// there is no file yet, `Some(0)` for an empty one. Refuses what [`SqliteStore::open`] refuses.
pub fn stored_schema_version(path: &Path) -> Result<Option<i64>, OpenError> {
    if !path.exists() {
        return Ok(None);
    }
    refuse_unless_sqlite(path)?;
    let connection = open_connection(path, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
    refuse_foreign_schema(path, &connection).map(Some)
}

fn refuse_unless_sqlite(path: &Path) -> Result<(), OpenError> {
    crate::magic::refuse_unless_starts_with(
        path,
        SQLITE_MAGIC,
        "tenancy database",
        "the SQLite header",
    )
}

/// Copies the tenancy database at `path` to `target` (which must not exist) at the schema it has,
/// without migrating it, and flushes the copy to disk. `VACUUM INTO` reads one transaction, so the
/// copy is consistent even while another process writes.
pub fn copy_as_is(path: &Path, target: &Path) -> Result<(), OpenError> {
    stored_schema_version(path)?;
    let connection = open_connection(path, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
    let target_text = target
        .to_str()
        .ok_or_else(|| OpenError::copy(path, target, "the target path is not valid UTF-8"))?;
    connection
        .execute("VACUUM INTO ?1", params![target_text])
        .map_err(|error| OpenError::copy(path, target, error))?;
    std::fs::File::open(target)
        .and_then(|file| file.sync_all())
        .map_err(|error| OpenError::copy(path, target, error))
}

/// `find_by_field`'s statement for `field` (checked to be plain: it is written into the SQL).
/// The path is a literal so that SQLite matches it against the expression indexes of migration 2.
fn find_by_field_sql(field: &str) -> String {
    let indexed_by = migrations::INDEXED_FIELDS
        .iter()
        .find(|(indexed, _)| *indexed == field)
        .map(|(_, index)| format!(" INDEXED BY {index}"))
        .unwrap_or_default();
    format!(
        "SELECT id, version, body, updated_at FROM documents{indexed_by}
         WHERE tenant_id = ?1 AND collection = ?2 AND json_extract(body, '$.\"{field}\"') = ?3
         ORDER BY id LIMIT ?4"
    )
}

fn closed(operation: &'static str) -> EngineFailure {
    EngineFailure::new(ENGINE, operation, "the store is closed")
}

fn failure(operation: &'static str) -> impl Fn(rusqlite::Error) -> DocumentError {
    move |error| DocumentError::Unavailable(EngineFailure::new(ENGINE, operation, error))
}

fn open_connection(path: &Path, flags: OpenFlags) -> Result<Connection, OpenError> {
    let connection = Connection::open_with_flags(path, flags | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(|error| OpenError::engine(path, error))?;
    connection
        .execute_batch("PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;")
        .map_err(|error| OpenError::engine(path, error))?;
    Ok(connection)
}

/// Returns the schema version of a database that is ours (0 for a new, empty file), and refuses
/// one that belongs to another application or to a newer release.
fn refuse_foreign_schema(path: &Path, connection: &Connection) -> Result<i64, OpenError> {
    let engine_error = |error: rusqlite::Error| OpenError::engine(path, error);
    let application_id: i64 = connection
        .query_row("PRAGMA application_id", [], |row| row.get(0))
        .map_err(engine_error)?;
    let version: i64 = connection
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(engine_error)?;
    let tables: i64 = connection
        .query_row("SELECT count(*) FROM sqlite_schema", [], |row| row.get(0))
        .map_err(engine_error)?;
    let fresh = application_id == 0 && version == 0 && tables == 0;
    if !fresh && application_id != migrations::APPLICATION_ID {
        return Err(OpenError::Foreign {
            path: path.to_owned(),
            what: "tenancy database",
            detail: format!("SQLite application_id is {application_id:#x}, not OpenFrame's"),
        });
    }
    if version > migrations::latest() {
        return Err(OpenError::NewerSchema {
            path: path.to_owned(),
            found: version,
            supported: migrations::latest(),
        });
    }
    Ok(version)
}

fn migrate(path: &Path, connection: &mut Connection, version: i64) -> Result<(), OpenError> {
    let engine_error = |error: rusqlite::Error| OpenError::engine(path, error);
    for (target, sql) in migrations::MIGRATIONS
        .iter()
        .filter(|(target, _)| *target > version)
    {
        let transaction = connection.transaction().map_err(engine_error)?;
        transaction.execute_batch(sql).map_err(engine_error)?;
        transaction
            .execute_batch(&format!(
                "PRAGMA application_id = {}; PRAGMA user_version = {target};",
                migrations::APPLICATION_ID
            ))
            .map_err(engine_error)?;
        transaction.commit().map_err(engine_error)?;
        tracing::info!(path = %path.display(), version = target, "migrated tenancy database");
    }
    Ok(())
}

fn tenant_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<(String, String, String, i64)> {
    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
}

fn tenant_from_parts(
    (id, name, status, created_at): (String, String, String, i64),
) -> Result<Tenant, DocumentError> {
    let corrupt =
        |what: String| DocumentError::Unavailable(EngineFailure::new(ENGINE, "read tenant", what));
    Ok(Tenant {
        id: TenantId::parse(&id).map_err(|error| corrupt(error.to_string()))?,
        name,
        status: TenantStatus::parse(&status)
            .ok_or_else(|| corrupt(format!("unknown tenant status {status:?}")))?,
        created_at,
    })
}

type DocumentParts = (String, i64, String, i64);

fn document_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<DocumentParts> {
    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
}

fn document_from_parts(
    (id, version, body, updated_at): DocumentParts,
) -> Result<Document, DocumentError> {
    let corrupt = |what: String| {
        DocumentError::Unavailable(EngineFailure::new(ENGINE, "read document", what))
    };
    Ok(Document {
        id: DocumentId::parse(&id).map_err(|error| corrupt(error.to_string()))?,
        version: u64::try_from(version).map_err(|error| corrupt(error.to_string()))?,
        body: serde_json::from_str(&body).map_err(|error| corrupt(error.to_string()))?,
        updated_at,
    })
}

fn document_name(collection: &Collection, id: &DocumentId) -> String {
    format!("document {collection}/{id}")
}

/// The stored version of a document, read inside the writer's transaction.
fn stored_version(
    connection: &Connection,
    tenant: &TenantId,
    collection: &Collection,
    id: &DocumentId,
) -> Result<Option<u64>, DocumentError> {
    let version: Option<i64> = connection
        .query_row(
            "SELECT version FROM documents WHERE tenant_id = ?1 AND collection = ?2 AND id = ?3",
            params![tenant.as_str(), collection.as_str(), id.as_str()],
            |row| row.get(0),
        )
        .optional()
        .map_err(failure("read version"))?;
    Ok(version.map(|v| u64::try_from(v).unwrap_or(0)))
}

fn require_tenant(connection: &Connection, tenant: &TenantId) -> Result<(), DocumentError> {
    let exists: bool = connection
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM tenants WHERE id = ?1)",
            params![tenant.as_str()],
            |row| row.get(0),
        )
        .map_err(failure("check tenant"))?;
    if exists {
        Ok(())
    } else {
        Err(DocumentError::NotFound {
            what: format!("tenant {tenant}"),
        })
    }
}

#[async_trait]
impl Engine for SqliteStore {
    fn engine_name(&self) -> &'static str {
        ENGINE
    }

    async fn check(&self) -> Result<(), EngineFailure> {
        let write_failure = self
            .inner
            .write_failure
            .lock()
            .map_err(|_| EngineFailure::new(ENGINE, "check", "lock poisoned"))?
            .clone();
        if let Some(failure) = write_failure {
            return Err(EngineFailure::new(
                ENGINE,
                "check",
                format!("writes are failing: {failure}"),
            ));
        }
        let probe = self
            .read("check", |connection| {
                connection
                    .query_row("SELECT count(*) FROM tenants", [], |row| {
                        row.get::<_, i64>(0)
                    })
                    .map_err(failure("check"))
            })
            .await;
        match probe {
            Ok(_) => Ok(()),
            Err(DocumentError::Unavailable(failure)) => Err(failure),
            Err(other) => Err(EngineFailure::new(ENGINE, "check", other)),
        }
    }

    async fn close(&self) -> Result<(), EngineFailure> {
        let inner = self.inner.clone();
        blocking::run(ENGINE, "close", move || {
            for reader in &inner.readers {
                if let Ok(mut guard) = reader.lock() {
                    guard.take();
                }
            }
            let mut guard = inner
                .writer
                .lock()
                .map_err(|_| EngineFailure::new(ENGINE, "close", "writer lock poisoned"))?;
            if let Some(connection) = guard.take() {
                // Fold the WAL back into the main file so the data dir is one file at rest.
                connection
                    .execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
                    .map_err(|error| EngineFailure::new(ENGINE, "close", error))?;
                connection
                    .close()
                    .map_err(|(_, error)| EngineFailure::new(ENGINE, "close", error))?;
                tracing::debug!(path = %inner.path.display(), "closed tenancy database");
            }
            Ok(())
        })
        .await
    }

    /// `VACUUM INTO` on a reader connection: one read transaction, so writers go on meanwhile
    /// (WAL) and the copy is a compact, self-contained database without a WAL of its own.
    async fn snapshot(&self, into: &Path) -> Result<Vec<String>, EngineFailure> {
        let name = self
            .inner
            .path
            .file_name()
            .and_then(|name| name.to_str())
            .unwrap_or(crate::files::TENANCY)
            .to_owned();
        let target = into.join(&name);
        let copied = self
            .read("snapshot", move |connection| {
                let target_text = target.to_str().ok_or_else(|| {
                    DocumentError::Unavailable(EngineFailure::new(
                        ENGINE,
                        "snapshot",
                        format!("{} is not valid UTF-8", target.display()),
                    ))
                })?;
                connection
                    .execute("VACUUM INTO ?1", params![target_text])
                    .map_err(failure("snapshot"))?;
                std::fs::File::open(&target)
                    .and_then(|file| file.sync_all())
                    .map_err(|error| {
                        DocumentError::Unavailable(EngineFailure::new(ENGINE, "snapshot", error))
                    })
            })
            .await;
        match copied {
            Ok(()) => Ok(vec![name]),
            Err(DocumentError::Unavailable(failure)) => Err(failure),
            Err(other) => Err(EngineFailure::new(ENGINE, "snapshot", other)),
        }
    }
}

#[async_trait]
impl TenantStore for SqliteStore {
    async fn create_tenant(&self, tenant: &Tenant) -> Result<(), DocumentError> {
        let tenant = tenant.clone();
        self.write("create tenant", move |connection, _| {
            let inserted = connection
                .execute(
                    "INSERT INTO tenants (id, name, status, created_at) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (id) DO NOTHING",
                    params![
                        tenant.id.as_str(),
                        tenant.name,
                        tenant.status.as_str(),
                        tenant.created_at
                    ],
                )
                .map_err(failure("create tenant"))?;
            if inserted == 0 {
                return Err(DocumentError::AlreadyExists {
                    what: format!("tenant {}", tenant.id),
                });
            }
            Ok(())
        })
        .await
    }

    async fn tenant(&self, id: &TenantId) -> Result<Option<Tenant>, DocumentError> {
        let id = id.clone();
        self.read("read tenant", move |connection| {
            connection
                .query_row(
                    "SELECT id, name, status, created_at FROM tenants WHERE id = ?1",
                    params![id.as_str()],
                    tenant_from_row,
                )
                .optional()
                .map_err(failure("read tenant"))?
                .map(tenant_from_parts)
                .transpose()
        })
        .await
    }

    async fn tenants(&self) -> Result<Vec<Tenant>, DocumentError> {
        self.read("list tenants", |connection| {
            let mut statement = connection
                .prepare_cached("SELECT id, name, status, created_at FROM tenants ORDER BY id")
                .map_err(failure("list tenants"))?;
            let rows = statement
                .query_map([], tenant_from_row)
                .map_err(failure("list tenants"))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(failure("list tenants"))?;
            rows.into_iter().map(tenant_from_parts).collect()
        })
        .await
    }

    async fn set_tenant_status(
        &self,
        id: &TenantId,
        status: TenantStatus,
    ) -> Result<(), DocumentError> {
        let id = id.clone();
        self.write("set tenant status", move |connection, _| {
            let changed = connection
                .execute(
                    "UPDATE tenants SET status = ?2 WHERE id = ?1",
                    params![id.as_str(), status.as_str()],
                )
                .map_err(failure("set tenant status"))?;
            if changed == 0 {
                return Err(DocumentError::NotFound {
                    what: format!("tenant {id}"),
                });
            }
            Ok(())
        })
        .await
    }
}

#[async_trait]
impl DocumentStore for SqliteStore {
    async fn insert(
        &self,
        tenant: &TenantId,
        collection: &Collection,
        id: &DocumentId,
        body: &serde_json::Value,
    ) -> Result<Document, DocumentError> {
        let encoded = encode_body(body)?;
        let (tenant, collection, id, body) =
            (tenant.clone(), collection.clone(), id.clone(), body.clone());
        self.write("insert document", move |connection, inner| {
            let transaction = connection
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(failure("insert document"))?;
            require_tenant(&transaction, &tenant)?;
            let now = inner.clock.now_ms();
            let inserted = transaction
                .execute(
                    "INSERT INTO documents (tenant_id, collection, id, version, body, updated_at)
                     VALUES (?1, ?2, ?3, 1, ?4, ?5) ON CONFLICT DO NOTHING",
                    params![
                        tenant.as_str(),
                        collection.as_str(),
                        id.as_str(),
                        encoded,
                        now
                    ],
                )
                .map_err(failure("insert document"))?;
            if inserted == 0 {
                return Err(DocumentError::AlreadyExists {
                    what: document_name(&collection, &id),
                });
            }
            transaction.commit().map_err(failure("insert document"))?;
            Ok(Document {
                id,
                version: 1,
                body,
                updated_at: now,
            })
        })
        .await
    }

    async fn replace(
        &self,
        tenant: &TenantId,
        collection: &Collection,
        id: &DocumentId,
        body: &serde_json::Value,
        expected_version: Option<u64>,
    ) -> Result<Document, DocumentError> {
        let encoded = encode_body(body)?;
        let (tenant, collection, id, body) =
            (tenant.clone(), collection.clone(), id.clone(), body.clone());
        self.write("replace document", move |connection, inner| {
            let transaction = connection
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(failure("replace document"))?;
            require_tenant(&transaction, &tenant)?;
            let stored = stored_version(&transaction, &tenant, &collection, &id)?;
            let version = match (stored, expected_version) {
                (Some(found), Some(expected)) if found != expected => {
                    return Err(DocumentError::VersionConflict {
                        what: document_name(&collection, &id),
                        expected,
                        found,
                    });
                }
                (None, Some(_)) => {
                    return Err(DocumentError::NotFound {
                        what: document_name(&collection, &id),
                    });
                }
                (Some(found), _) => found + 1,
                (None, None) => 1,
            };
            let now = inner.clock.now_ms();
            let version_column = i64::try_from(version)
                .map_err(|_| DocumentError::Invalid("document version overflow".into()))?;
            transaction
                .execute(
                    "INSERT INTO documents (tenant_id, collection, id, version, body, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (tenant_id, collection, id)
                     DO UPDATE SET version = excluded.version, body = excluded.body,
                                   updated_at = excluded.updated_at",
                    params![
                        tenant.as_str(),
                        collection.as_str(),
                        id.as_str(),
                        version_column,
                        encoded,
                        now
                    ],
                )
                .map_err(failure("replace document"))?;
            transaction.commit().map_err(failure("replace document"))?;
            Ok(Document {
                id,
                version,
                body,
                updated_at: now,
            })
        })
        .await
    }

    async fn get(
        &self,
        tenant: &TenantId,
        collection: &Collection,
        id: &DocumentId,
    ) -> Result<Option<Document>, DocumentError> {
        let (tenant, collection, id) = (tenant.clone(), collection.clone(), id.clone());
        self.read("read document", move |connection| {
            connection
                .query_row(
                    "SELECT id, version, body, updated_at FROM documents
                     WHERE tenant_id = ?1 AND collection = ?2 AND id = ?3",
                    params![tenant.as_str(), collection.as_str(), id.as_str()],
                    document_from_row,
                )
                .optional()
                .map_err(failure("read document"))?
                .map(document_from_parts)
                .transpose()
        })
        .await
    }

    async fn list(
        &self,
        tenant: &TenantId,
        collection: &Collection,
        after: Option<&DocumentId>,
        limit: usize,
    ) -> Result<Vec<Document>, DocumentError> {
        check_limit(limit)?;
        let (tenant, collection) = (tenant.clone(), collection.clone());
        let after = after.map(|id| id.as_str().to_owned()).unwrap_or_default();
        self.read("list documents", move |connection| {
            let mut statement = connection
                .prepare_cached(
                    "SELECT id, version, body, updated_at FROM documents
                     WHERE tenant_id = ?1 AND collection = ?2 AND id > ?3
                     ORDER BY id LIMIT ?4",
                )
                .map_err(failure("list documents"))?;
            let rows = statement
                .query_map(
                    params![tenant.as_str(), collection.as_str(), after, limit as i64],
                    document_from_row,
                )
                .map_err(failure("list documents"))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(failure("list documents"))?;
            rows.into_iter().map(document_from_parts).collect()
        })
        .await
    }

    async fn find_by_field(
        &self,
        tenant: &TenantId,
        collection: &Collection,
        field: &str,
        value: &serde_json::Value,
        limit: usize,
    ) -> Result<Vec<Document>, DocumentError> {
        check_limit(limit)?;
        check_field(field)?;
        let bound: rusqlite::types::Value = match value {
            serde_json::Value::String(text) => text.clone().into(),
            serde_json::Value::Bool(flag) => i64::from(*flag).into(),
            serde_json::Value::Number(number) => match (number.as_i64(), number.as_f64()) {
                (Some(integer), _) => integer.into(),
                (None, Some(float)) => float.into(),
                (None, None) => return Err(DocumentError::Invalid("unsupported number".into())),
            },
            _ => {
                return Err(DocumentError::Invalid(
                    "find_by_field compares strings, numbers and booleans only".into(),
                ));
            }
        };
        let sql = find_by_field_sql(field);
        let (tenant, collection) = (tenant.clone(), collection.clone());
        self.read("find documents", move |connection| {
            let mut statement = connection
                .prepare_cached(&sql)
                .map_err(failure("find documents"))?;
            let rows = statement
                .query_map(
                    params![tenant.as_str(), collection.as_str(), bound, limit as i64],
                    document_from_row,
                )
                .map_err(failure("find documents"))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(failure("find documents"))?;
            rows.into_iter().map(document_from_parts).collect()
        })
        .await
    }

    async fn delete(
        &self,
        tenant: &TenantId,
        collection: &Collection,
        id: &DocumentId,
        expected_version: Option<u64>,
    ) -> Result<bool, DocumentError> {
        let (tenant, collection, id) = (tenant.clone(), collection.clone(), id.clone());
        self.write("delete document", move |connection, _| {
            let transaction = connection
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(failure("delete document"))?;
            let Some(found) = stored_version(&transaction, &tenant, &collection, &id)? else {
                return Ok(false);
            };
            if let Some(expected) = expected_version
                && expected != found
            {
                return Err(DocumentError::VersionConflict {
                    what: document_name(&collection, &id),
                    expected,
                    found,
                });
            }
            transaction
                .execute(
                    "DELETE FROM documents WHERE tenant_id = ?1 AND collection = ?2 AND id = ?3",
                    params![tenant.as_str(), collection.as_str(), id.as_str()],
                )
                .map_err(failure("delete document"))?;
            transaction.commit().map_err(failure("delete document"))?;
            Ok(true)
        })
        .await
    }

    async fn count(
        &self,
        tenant: &TenantId,
        collection: &Collection,
    ) -> Result<u64, DocumentError> {
        let (tenant, collection) = (tenant.clone(), collection.clone());
        self.read("count documents", move |connection| {
            let count: i64 = connection
                .query_row(
                    "SELECT count(*) FROM documents WHERE tenant_id = ?1 AND collection = ?2",
                    params![tenant.as_str(), collection.as_str()],
                    |row| row.get(0),
                )
                .map_err(failure("count documents"))?;
            Ok(u64::try_from(count).unwrap_or(0))
        })
        .await
    }

    async fn collections(&self, tenant: &TenantId) -> Result<Vec<Collection>, DocumentError> {
        let tenant = tenant.clone();
        self.read("list collections", move |connection| {
            let mut statement = connection
                .prepare_cached(
                    "SELECT DISTINCT collection FROM documents WHERE tenant_id = ?1 ORDER BY collection",
                )
                .map_err(failure("list collections"))?;
            let names = statement
                .query_map(params![tenant.as_str()], |row| row.get::<_, String>(0))
                .map_err(failure("list collections"))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(failure("list collections"))?;
            names
                .iter()
                .map(|name| {
                    Collection::parse(name).map_err(|error| {
                        DocumentError::Unavailable(EngineFailure::new(
                            ENGINE,
                            "list collections",
                            error.to_string(),
                        ))
                    })
                })
                .collect()
        })
        .await
    }

    async fn import(
        &self,
        tenant: &TenantId,
        collection: &Collection,
        document: &Document,
    ) -> Result<(), DocumentError> {
        let encoded = encode_body(&document.body)?;
        let version = i64::try_from(document.version)
            .map_err(|_| DocumentError::Invalid("the version is out of range".into()))?;
        let (tenant, collection, id, updated_at) = (
            tenant.clone(),
            collection.clone(),
            document.id.clone(),
            document.updated_at,
        );
        self.write("import document", move |connection, _| {
            require_tenant(connection, &tenant)?;
            connection
                .execute(
                    "INSERT INTO documents (tenant_id, collection, id, version, body, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (tenant_id, collection, id) DO UPDATE SET
                       version = excluded.version, body = excluded.body,
                       updated_at = excluded.updated_at",
                    params![
                        tenant.as_str(),
                        collection.as_str(),
                        id.as_str(),
                        version,
                        encoded,
                        updated_at
                    ],
                )
                .map_err(failure("import document"))?;
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests;
