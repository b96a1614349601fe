//! Tenancy and documents: MongoDB's role in OpenFrame.
//!
//! Tenants are typed rows. Everything a tenant owns (machines, organizations, tools, ...) is a JSON
//! document in a named collection, addressed by `(tenant, collection, id)`; there is no call that
//! reaches a document without naming its tenant.
//!
//! Contract for every engine:
//! - Writes are durable (committed) when they return.
//! - Every document has a version, 1 on insert and +1 per replace; `replace` and `delete` can
//!   require the version the caller read (optimistic concurrency) and fail with
//!   [`DocumentError::VersionConflict`] otherwise, changing nothing.
//! - `list` pages by id in ascending byte order.

use async_trait::async_trait;

use crate::Engine;
use crate::error::DocumentError;
use crate::model::{Collection, DocumentId, TenantId, UnixMillis};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TenantStatus {
    Active,
    Suspended,
}

impl TenantStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "ACTIVE",
            Self::Suspended => "SUSPENDED",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "ACTIVE" => Some(Self::Active),
            "SUSPENDED" => Some(Self::Suspended),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    pub id: TenantId,
    pub name: String,
    pub status: TenantStatus,
    pub created_at: UnixMillis,
}

/// A stored document.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    pub id: DocumentId,
    pub version: u64,
    pub body: serde_json::Value,
    pub updated_at: UnixMillis,
}

/// The largest document body, serialised. MongoDB's own limit is 16 MiB; ours is smaller on purpose.
pub const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;
/// The largest page `list` returns.
pub const MAX_LIST: usize = 1000;

/// Both capabilities, as every document engine provides them in one object.
pub trait DocumentEngine: TenantStore + DocumentStore {}
impl<T: TenantStore + DocumentStore> DocumentEngine for T {}

#[async_trait]
pub trait TenantStore: Engine {
    /// Fails with [`DocumentError::AlreadyExists`] if the id is taken.
    async fn create_tenant(&self, tenant: &Tenant) -> Result<(), DocumentError>;
    async fn tenant(&self, id: &TenantId) -> Result<Option<Tenant>, DocumentError>;
    async fn tenants(&self) -> Result<Vec<Tenant>, DocumentError>;
    async fn set_tenant_status(
        &self,
        id: &TenantId,
        status: TenantStatus,
    ) -> Result<(), DocumentError>;
}

#[async_trait]
pub trait DocumentStore: Engine {
    /// Stores a new document at version 1; [`DocumentError::AlreadyExists`] if the id is taken.
    /// The tenant must exist.
    async fn insert(
        &self,
        tenant: &TenantId,
        collection: &Collection,
        id: &DocumentId,
        body: &serde_json::Value,
    ) -> Result<Document, DocumentError>;

    /// Replaces a document, or creates it when `expected_version` is `None` and it is absent.
    /// With `Some(v)`, the stored version must be `v`.
    async fn replace(
        &self,
        tenant: &TenantId,
        collection: &Collection,
        id: &DocumentId,
        body: &serde_json::Value,
        expected_version: Option<u64>,
    ) -> Result<Document, DocumentError>;

    async fn get(
        &self,
        tenant: &TenantId,
        collection: &Collection,
        id: &DocumentId,
    ) -> Result<Option<Document>, DocumentError>;

    /// Up to `limit` (1..=[`MAX_LIST`]) documents with ids greater than `after`, ascending.
    async fn list(
        &self,
        tenant: &TenantId,
        collection: &Collection,
        after: Option<&DocumentId>,
        limit: usize,
    ) -> Result<Vec<Document>, DocumentError>;

    /// Documents whose top-level `field` equals `value` (a string, number or bool), ascending by id.
    async fn find_by_field(
        &self,
        tenant: &TenantId,
        collection: &Collection,
        field: &str,
        value: &serde_json::Value,
        limit: usize,
    ) -> Result<Vec<Document>, DocumentError>;

    /// Deletes a document; `Ok(false)` if it was absent. With `Some(v)`, the stored version must be `v`.
    async fn delete(
        &self,
        tenant: &TenantId,
        collection: &Collection,
        id: &DocumentId,
        expected_version: Option<u64>,
    ) -> Result<bool, DocumentError>;

    async fn count(&self, tenant: &TenantId, collection: &Collection)
    -> Result<u64, DocumentError>;

    /// The collections in which the tenant has documents, ascending: for copying a store.
    async fn collections(&self, tenant: &TenantId) -> Result<Vec<Collection>, DocumentError>;

    /// Writes `document` exactly as given (id, version, body and time), replacing a document of
    /// the same id: for copying a store into another. The tenant must exist.
    async fn import(
        &self,
        tenant: &TenantId,
        collection: &Collection,
        document: &Document,
    ) -> Result<(), DocumentError>;
}

/// Serialises a body, refusing anything but an object and bodies over [`MAX_DOCUMENT_BYTES`].
pub(crate) fn encode_body(body: &serde_json::Value) -> Result<String, DocumentError> {
    if !body.is_object() {
        return Err(DocumentError::Invalid(
            "a document body must be a JSON object".into(),
        ));
    }
    let encoded = serde_json::to_string(body)
        .map_err(|error| DocumentError::Invalid(format!("cannot encode the body: {error}")))?;
    if encoded.len() > MAX_DOCUMENT_BYTES {
        return Err(DocumentError::Invalid(format!(
            "the body is {} bytes; the limit is {MAX_DOCUMENT_BYTES}",
            encoded.len()
        )));
    }
    Ok(encoded)
}

/// Refuses a page size outside `1..=MAX_LIST`.
pub(crate) fn check_limit(limit: usize) -> Result<(), DocumentError> {
    if (1..=MAX_LIST).contains(&limit) {
        Ok(())
    } else {
        Err(DocumentError::Invalid(format!(
            "limit must be between 1 and {MAX_LIST}, got {limit}"
        )))
    }
}

/// Refuses a `find_by_field` field that is not a plain top-level name (engines write it into
/// their query language).
pub(crate) fn check_field(field: &str) -> Result<(), DocumentError> {
    let plain = (1..=64).contains(&field.len())
        && field
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'_');
    if plain {
        Ok(())
    } else {
        Err(DocumentError::Invalid(format!(
            "field must be 1 to 64 characters of A-Z, a-z, 0-9 and '_', got {:?}",
            field.chars().take(80).collect::<String>()
        )))
    }
}
