//! Tenancy and documents on an external MongoDB (feature `mongo`), through the official driver.
//!
//! Layout in the database (the URI's database, `openframe` if it names none):
//! - Tenants are documents of the collection `_tenants` (`_id` = tenant id). Caller collections
//!   start with a letter, so none can be named so.
//! - A document of collection `machines` lives in the MongoDB collection `machines` (OpenFrame's
//!   own names, where they match) as
//!   `{_id: "<tenant>/<id>", tenantId, docId, version, updatedAt, fields, body}`:
//!   - `body` is the document's JSON text, the source of truth, so numbers and key names come
//!     back exactly as written;
//!   - `fields` holds the body's top-level strings, numbers and booleans as BSON, which
//!     `find_by_field` queries (and operators can read with MongoDB's own tools).
//! - Every query the adapter sends names `tenantId` (or an `_id` that starts with the tenant):
//!   the tenant filter is enforced here, not by callers.
//!
//! Writes use write concern `majority` with journaling, so an acknowledged write is durable.
//! Optimistic concurrency uses a filter on `version`; no multi-document transactions are needed.
//!
//! The server is reached lazily: opening never fails for an unreachable server. Calls then fail
//! with [`DocumentError::Unavailable`] after the server-selection timeout, and
//! [`Engine::check`] (readiness) says what is wrong, until the server answers again.

use std::collections::HashSet;
use std::sync::Mutex;

use async_trait::async_trait;
use mongodb::bson::{Bson, Document as BsonDocument, doc};
use mongodb::error::{ErrorKind, WriteFailure};
use mongodb::options::{
    Acknowledgment, ClientOptions, DatabaseOptions, IndexOptions, WriteConcern,
};
use mongodb::{Client, Collection as MongoCollection, Database, IndexModel};

use crate::documents::{
    Document, DocumentStore, Tenant, TenantStatus, TenantStore, check_field, check_limit,
    encode_body,
};
use crate::error::{DocumentError, EngineFailure};
use crate::model::{Clock, Collection, DocumentId, TenantId};
use crate::{Engine, MongoSettings};

const ENGINE: &str = "mongo";
/// The collection of tenants: a name no caller collection can have.
pub const TENANTS: &str = "_tenants";
const DUPLICATE_KEY: i32 = 11000;

pub struct MongoStore {
    database: Database,
    clock: std::sync::Arc<dyn Clock>,
    /// Collections whose indexes were created by this process.
    indexed: Mutex<HashSet<String>>,
    /// Tenants known to exist (tenants are never deleted, so this only grows).
    known_tenants: Mutex<HashSet<TenantId>>,
    closed: std::sync::atomic::AtomicBool,
    description: String,
    timeout: std::time::Duration,
}

impl std::fmt::Debug for MongoStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MongoStore")
            .field("server", &self.description)
            .finish_non_exhaustive()
    }
}

fn failure(operation: &'static str) -> impl Fn(mongodb::error::Error) -> DocumentError {
    move |error| DocumentError::Unavailable(EngineFailure::new(ENGINE, operation, error))
}

fn is_duplicate_key(error: &mongodb::error::Error) -> bool {
    matches!(&*error.kind, ErrorKind::Write(WriteFailure::WriteError(write)) if write.code == DUPLICATE_KEY)
}

fn corrupt(operation: &'static str, what: impl Into<String>) -> DocumentError {
    DocumentError::Unavailable(EngineFailure::new(ENGINE, operation, what.into()))
}

impl MongoStore {
    /// Parses the URI and prepares the client; the server is contacted on first use.
    pub async fn open(
        settings: &MongoSettings,
        clock: std::sync::Arc<dyn Clock>,
    ) -> Result<Self, crate::OpenError> {
        let invalid = |error: mongodb::error::Error| crate::OpenError::Engine {
            path: std::path::PathBuf::from("storage.mongo.uri"),
            source: format!("not a usable MongoDB connection string: {error}").into(),
        };
        let mut options = ClientOptions::parse(&settings.uri).await.map_err(invalid)?;
        options.server_selection_timeout = Some(settings.timeout);
        options.connect_timeout = Some(settings.timeout);
        options.app_name = Some("openframe-appliance".into());
        let database_name = options
            .default_database
            .clone()
            .unwrap_or_else(|| "openframe".into());
        let description = format!(
            "{} (database {database_name})",
            options
                .hosts
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(",")
        );
        let client = Client::with_options(options).map_err(invalid)?;
        let durable = WriteConcern::builder()
            .w(Acknowledgment::Majority)
            .journal(true)
            .build();
        let database = client.database_with_options(
            &database_name,
            DatabaseOptions::builder().write_concern(durable).build(),
        );
        Ok(Self {
            database,
            clock,
            indexed: Mutex::new(HashSet::new()),
            known_tenants: Mutex::new(HashSet::new()),
            closed: std::sync::atomic::AtomicBool::new(false),
            description,
            timeout: settings.timeout,
        })
    }

    fn ensure_open(&self, operation: &'static str) -> Result<(), DocumentError> {
        if self.closed.load(std::sync::atomic::Ordering::Acquire) {
            return Err(corrupt(operation, "the MongoDB store is closed"));
        }
        Ok(())
    }

    /// The collection, with its index on `(tenantId, docId)` created on first use.
    async fn documents(
        &self,
        collection: &Collection,
        operation: &'static str,
    ) -> Result<MongoCollection<BsonDocument>, DocumentError> {
        self.ensure_open(operation)?;
        let handle = self
            .database
            .collection::<BsonDocument>(collection.as_str());
        let indexed = self
            .indexed
            .lock()
            .map(|set| set.contains(collection.as_str()))
            .unwrap_or(false);
        if !indexed {
            let index = IndexModel::builder()
                .keys(doc! {"tenantId": 1, "docId": 1})
                .options(
                    IndexOptions::builder()
                        .name("tenant_doc".to_owned())
                        .unique(true)
                        .build(),
                )
                .build();
            handle
                .create_index(index)
                .await
                .map_err(failure(operation))?;
            if let Ok(mut set) = self.indexed.lock() {
                set.insert(collection.as_str().to_owned());
            }
        }
        Ok(handle)
    }

    fn tenants_collection(&self) -> MongoCollection<BsonDocument> {
        self.database.collection::<BsonDocument>(TENANTS)
    }

    async fn require_tenant(&self, tenant: &TenantId) -> Result<(), DocumentError> {
        let known = self
            .known_tenants
            .lock()
            .map(|set| set.contains(tenant))
            .unwrap_or(false);
        if known {
            return Ok(());
        }
        if self.tenant(tenant).await?.is_none() {
            return Err(DocumentError::NotFound {
                what: format!("tenant {tenant}"),
            });
        }
        if let Ok(mut set) = self.known_tenants.lock() {
            set.insert(tenant.clone());
        }
        Ok(())
    }

    fn stored(
        &self,
        tenant: &TenantId,
        id: &DocumentId,
        version: u64,
        body: &serde_json::Value,
        encoded: String,
    ) -> Result<(BsonDocument, i64), DocumentError> {
        self.stored_at(tenant, id, version, body, encoded, self.clock.now_ms())
    }

    fn stored_at(
        &self,
        tenant: &TenantId,
        id: &DocumentId,
        version: u64,
        body: &serde_json::Value,
        encoded: String,
        now: i64,
    ) -> Result<(BsonDocument, i64), DocumentError> {
        let stored = doc! {
            "_id": key(tenant, id),
            "tenantId": tenant.as_str(),
            "docId": id.as_str(),
            "version": i64::try_from(version).map_err(|_| DocumentError::Invalid("version overflow".into()))?,
            "updatedAt": now,
            "fields": scalar_fields(body),
            "body": encoded,
        };
        Ok((stored, now))
    }

    async fn stored_version(
        &self,
        documents: &MongoCollection<BsonDocument>,
        tenant: &TenantId,
        id: &DocumentId,
        operation: &'static str,
    ) -> Result<Option<u64>, DocumentError> {
        let found = documents
            .find_one(doc! {"_id": key(tenant, id), "tenantId": tenant.as_str()})
            .projection(doc! {"version": 1})
            .await
            .map_err(failure(operation))?;
        found.map(|found| version_of(&found, operation)).transpose()
    }
}

fn key(tenant: &TenantId, id: &DocumentId) -> String {
    format!("{tenant}/{id}")
}

fn document_name(collection: &Collection, id: &DocumentId) -> String {
    format!("document {collection}/{id}")
}

/// The top-level strings, numbers and booleans of a body, as BSON, for `find_by_field`.
fn scalar_fields(body: &serde_json::Value) -> BsonDocument {
    let mut fields = BsonDocument::new();
    if let Some(object) = body.as_object() {
        for (name, value) in object {
            if let Some(bson) = scalar(value) {
                fields.insert(name.clone(), bson);
            }
        }
    }
    fields
}

fn scalar(value: &serde_json::Value) -> Option<Bson> {
    match value {
        serde_json::Value::String(text) => Some(Bson::String(text.clone())),
        serde_json::Value::Bool(flag) => Some(Bson::Boolean(*flag)),
        serde_json::Value::Number(number) => match (number.as_i64(), number.as_f64()) {
            (Some(integer), _) => Some(Bson::Int64(integer)),
            (None, Some(float)) => Some(Bson::Double(float)),
            (None, None) => None,
        },
        _ => None,
    }
}

fn version_of(stored: &BsonDocument, operation: &'static str) -> Result<u64, DocumentError> {
    let version = match stored.get("version") {
        Some(Bson::Int64(version)) => *version,
        Some(Bson::Int32(version)) => i64::from(*version),
        Some(Bson::Double(version)) if version.fract() == 0.0 => *version as i64,
        other => return Err(corrupt(operation, format!("version is {other:?}"))),
    };
    u64::try_from(version).map_err(|_| corrupt(operation, format!("version is {version}")))
}

fn document_of(stored: &BsonDocument, operation: &'static str) -> Result<Document, DocumentError> {
    let id = stored
        .get_str("docId")
        .map_err(|error| corrupt(operation, error.to_string()))?;
    let body = stored
        .get_str("body")
        .map_err(|error| corrupt(operation, error.to_string()))?;
    let updated_at = match stored.get("updatedAt") {
        Some(Bson::Int64(at)) => *at,
        Some(Bson::Int32(at)) => i64::from(*at),
        other => return Err(corrupt(operation, format!("updatedAt is {other:?}"))),
    };
    Ok(Document {
        id: DocumentId::parse(id).map_err(|error| corrupt(operation, error.to_string()))?,
        version: version_of(stored, operation)?,
        body: serde_json::from_str(body).map_err(|error| corrupt(operation, error.to_string()))?,
        updated_at,
    })
}

fn tenant_of(stored: &BsonDocument) -> Result<Tenant, DocumentError> {
    let operation = "read tenant";
    let text = |name: &str| {
        stored
            .get_str(name)
            .map(str::to_owned)
            .map_err(|error| corrupt(operation, format!("{name}: {error}")))
    };
    let status = text("status")?;
    Ok(Tenant {
        id: TenantId::parse(&text("_id")?)
            .map_err(|error| corrupt(operation, error.to_string()))?,
        name: text("name")?,
        status: TenantStatus::parse(&status)
            .ok_or_else(|| corrupt(operation, format!("unknown tenant status {status:?}")))?,
        created_at: match stored.get("createdAt") {
            Some(Bson::Int64(at)) => *at,
            Some(Bson::Int32(at)) => i64::from(*at),
            other => return Err(corrupt(operation, format!("createdAt is {other:?}"))),
        },
    })
}

/// Up to `limit` documents matching `filter`, ascending by id.
async fn find_page(
    documents: &MongoCollection<BsonDocument>,
    filter: BsonDocument,
    limit: usize,
    operation: &'static str,
) -> Result<Vec<Document>, DocumentError> {
    let cursor = documents
        .find(filter)
        .sort(doc! {"docId": 1})
        .limit(i64::try_from(limit).unwrap_or(i64::MAX))
        .await
        .map_err(failure(operation))?;
    collect(cursor, operation)
        .await?
        .iter()
        .map(|stored| document_of(stored, operation))
        .collect()
}

async fn collect(
    mut cursor: mongodb::Cursor<BsonDocument>,
    operation: &'static str,
) -> Result<Vec<BsonDocument>, DocumentError> {
    let mut found = Vec::new();
    while cursor.advance().await.map_err(failure(operation))? {
        found.push(cursor.deserialize_current().map_err(failure(operation))?);
    }
    Ok(found)
}

#[async_trait]
impl Engine for MongoStore {
    fn engine_name(&self) -> &'static str {
        ENGINE
    }

    async fn check(&self) -> Result<(), EngineFailure> {
        if self.closed.load(std::sync::atomic::Ordering::Acquire) {
            return Err(EngineFailure::new(
                ENGINE,
                "check",
                "the MongoDB store is closed",
            ));
        }
        let wait = self.timeout.min(crate::CHECK_TIMEOUT);
        let answer = tokio::time::timeout(wait, self.database.run_command(doc! {"ping": 1})).await;
        let why = match answer {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(error)) => error.to_string(),
            Err(_) => format!("no answer within {} ms", wait.as_millis()),
        };
        Err(EngineFailure::new(
            ENGINE,
            "check",
            format!("MongoDB at {} does not answer: {why}", self.description),
        ))
    }

    async fn close(&self) -> Result<(), EngineFailure> {
        self.closed
            .store(true, std::sync::atomic::Ordering::Release);
        Ok(())
    }
}

#[async_trait]
impl TenantStore for MongoStore {
    async fn create_tenant(&self, tenant: &Tenant) -> Result<(), DocumentError> {
        self.ensure_open("create tenant")?;
        let stored = doc! {
            "_id": tenant.id.as_str(),
            "name": &tenant.name,
            "status": tenant.status.as_str(),
            "createdAt": tenant.created_at,
        };
        match self.tenants_collection().insert_one(stored).await {
            Ok(_) => Ok(()),
            Err(error) if is_duplicate_key(&error) => Err(DocumentError::AlreadyExists {
                what: format!("tenant {}", tenant.id),
            }),
            Err(error) => Err(failure("create tenant")(error)),
        }
    }

    async fn tenant(&self, id: &TenantId) -> Result<Option<Tenant>, DocumentError> {
        self.ensure_open("read tenant")?;
        self.tenants_collection()
            .find_one(doc! {"_id": id.as_str()})
            .await
            .map_err(failure("read tenant"))?
            .map(|stored| tenant_of(&stored))
            .transpose()
    }

    async fn tenants(&self) -> Result<Vec<Tenant>, DocumentError> {
        self.ensure_open("list tenants")?;
        let cursor = self
            .tenants_collection()
            .find(doc! {})
            .sort(doc! {"_id": 1})
            .await
            .map_err(failure("list tenants"))?;
        collect(cursor, "list tenants")
            .await?
            .iter()
            .map(tenant_of)
            .collect()
    }

    async fn set_tenant_status(
        &self,
        id: &TenantId,
        status: TenantStatus,
    ) -> Result<(), DocumentError> {
        self.ensure_open("set tenant status")?;
        let updated = self
            .tenants_collection()
            .update_one(
                doc! {"_id": id.as_str()},
                doc! {"$set": {"status": status.as_str()}},
            )
            .await
            .map_err(failure("set tenant status"))?;
        if updated.matched_count == 0 {
            return Err(DocumentError::NotFound {
                what: format!("tenant {id}"),
            });
        }
        Ok(())
    }
}

#[async_trait]
impl DocumentStore for MongoStore {
    async fn insert(
        &self,
        tenant: &TenantId,
        collection: &Collection,
        id: &DocumentId,
        body: &serde_json::Value,
    ) -> Result<Document, DocumentError> {
        let encoded = encode_body(body)?;
        self.require_tenant(tenant).await?;
        let documents = self.documents(collection, "insert document").await?;
        let (stored, updated_at) = self.stored(tenant, id, 1, body, encoded)?;
        match documents.insert_one(stored).await {
            Ok(_) => Ok(Document {
                id: id.clone(),
                version: 1,
                body: body.clone(),
                updated_at,
            }),
            Err(error) if is_duplicate_key(&error) => Err(DocumentError::AlreadyExists {
                what: document_name(collection, id),
            }),
            Err(error) => Err(failure("insert document")(error)),
        }
    }

    async fn replace(
        &self,
        tenant: &TenantId,
        collection: &Collection,
        id: &DocumentId,
        body: &serde_json::Value,
        expected_version: Option<u64>,
    ) -> Result<Document, DocumentError> {
        let operation = "replace document";
        let encoded = encode_body(body)?;
        self.require_tenant(tenant).await?;
        let documents = self.documents(collection, operation).await?;
        // Without an expected version, replace whatever is there; a concurrent writer between
        // the read and the write makes the filter miss, and the loop reads again.
        loop {
            let current = self
                .stored_version(&documents, tenant, id, operation)
                .await?;
            let version = match (expected_version, current) {
                (Some(expected), Some(found)) if expected != found => {
                    return Err(DocumentError::VersionConflict {
                        what: document_name(collection, id),
                        expected,
                        found,
                    });
                }
                (Some(_), None) => {
                    return Err(DocumentError::NotFound {
                        what: document_name(collection, id),
                    });
                }
                (_, Some(found)) => found,
                (None, None) => match self.insert(tenant, collection, id, body).await {
                    Err(DocumentError::AlreadyExists { .. }) => continue,
                    other => return other,
                },
            };
            let (stored, updated_at) =
                self.stored(tenant, id, version + 1, body, encoded.clone())?;
            let filter = doc! {
                "_id": key(tenant, id),
                "tenantId": tenant.as_str(),
                "version": i64::try_from(version).unwrap_or(i64::MAX),
            };
            let replaced = documents
                .replace_one(filter, stored)
                .await
                .map_err(failure(operation))?;
            if replaced.matched_count == 1 {
                return Ok(Document {
                    id: id.clone(),
                    version: version + 1,
                    body: body.clone(),
                    updated_at,
                });
            }
        }
    }

    async fn get(
        &self,
        tenant: &TenantId,
        collection: &Collection,
        id: &DocumentId,
    ) -> Result<Option<Document>, DocumentError> {
        let documents = self.documents(collection, "read document").await?;
        documents
            .find_one(doc! {"_id": key(tenant, id), "tenantId": tenant.as_str()})
            .await
            .map_err(failure("read document"))?
            .map(|stored| document_of(&stored, "read document"))
            .transpose()
    }

    async fn list(
        &self,
        tenant: &TenantId,
        collection: &Collection,
        after: Option<&DocumentId>,
        limit: usize,
    ) -> Result<Vec<Document>, DocumentError> {
        check_limit(limit)?;
        let documents = self.documents(collection, "list documents").await?;
        let filter = match after {
            Some(after) => doc! {"tenantId": tenant.as_str(), "docId": {"$gt": after.as_str()}},
            None => doc! {"tenantId": tenant.as_str()},
        };
        find_page(&documents, filter, limit, "list documents").await
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
        let Some(wanted) = scalar(value) else {
            return Err(DocumentError::Invalid(
                "find_by_field compares strings, numbers and booleans only".into(),
            ));
        };
        let documents = self.documents(collection, "find documents").await?;
        let mut filter = doc! {"tenantId": tenant.as_str()};
        filter.insert(format!("fields.{field}"), wanted);
        find_page(&documents, filter, limit, "find documents").await
    }

    async fn delete(
        &self,
        tenant: &TenantId,
        collection: &Collection,
        id: &DocumentId,
        expected_version: Option<u64>,
    ) -> Result<bool, DocumentError> {
        let operation = "delete document";
        let documents = self.documents(collection, operation).await?;
        let mut filter = doc! {"_id": key(tenant, id), "tenantId": tenant.as_str()};
        if let Some(expected) = expected_version {
            filter.insert("version", i64::try_from(expected).unwrap_or(i64::MAX));
        }
        let deleted = documents
            .delete_one(filter)
            .await
            .map_err(failure(operation))?;
        if deleted.deleted_count == 1 {
            return Ok(true);
        }
        match (
            expected_version,
            self.stored_version(&documents, tenant, id, operation)
                .await?,
        ) {
            (Some(expected), Some(found)) => Err(DocumentError::VersionConflict {
                what: document_name(collection, id),
                expected,
                found,
            }),
            _ => Ok(false),
        }
    }

    async fn count(
        &self,
        tenant: &TenantId,
        collection: &Collection,
    ) -> Result<u64, DocumentError> {
        let documents = self.documents(collection, "count documents").await?;
        documents
            .count_documents(doc! {"tenantId": tenant.as_str()})
            .await
            .map_err(failure("count documents"))
    }

    async fn collections(&self, tenant: &TenantId) -> Result<Vec<Collection>, DocumentError> {
        let operation = "list collections";
        self.ensure_open(operation)?;
        let mut names = self
            .database
            .list_collection_names()
            .await
            .map_err(failure(operation))?;
        names.sort();
        let mut found = Vec::new();
        for name in names {
            let Ok(collection) = Collection::parse(&name) else {
                continue; // `_tenants` and collections that are not ours
            };
            let any = self
                .database
                .collection::<BsonDocument>(&name)
                .find_one(doc! {"tenantId": tenant.as_str()})
                .projection(doc! {"_id": 1})
                .await
                .map_err(failure(operation))?;
            if any.is_some() {
                found.push(collection);
            }
        }
        Ok(found)
    }

    async fn import(
        &self,
        tenant: &TenantId,
        collection: &Collection,
        document: &Document,
    ) -> Result<(), DocumentError> {
        let operation = "import document";
        let encoded = encode_body(&document.body)?;
        self.require_tenant(tenant).await?;
        let documents = self.documents(collection, operation).await?;
        let (stored, _) = self.stored_at(
            tenant,
            &document.id,
            document.version,
            &document.body,
            encoded,
            document.updated_at,
        )?;
        documents
            .replace_one(
                doc! {"_id": key(tenant, &document.id), "tenantId": tenant.as_str()},
                stored,
            )
            .upsert(true)
            .await
            .map_err(failure(operation))?;
        Ok(())
    }
}
