//! A tenant's small collection (tags, generic events), read from memory and written through.
//!
//! The first read of a tenant loads the whole collection from the document store; after that,
//! reads never touch the store, so a list that resolves a field per row costs no query per row.
//! Every write goes to the store first (durable when it returns) and to memory after, under one
//! lock per catalog, so memory never shows something the store does not hold and two writers
//! cannot both pass a uniqueness check.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use openframe_storage::DocumentStore;
use openframe_storage::documents::MAX_LIST;
use openframe_storage::error::DocumentError;
use openframe_storage::model::{Collection, DocumentId, TenantId};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{RwLock, RwLockMappedWriteGuard, RwLockWriteGuard};

use crate::domain::Invalid;
use crate::error::ApiError;
use crate::inventory::InventoryError;

#[derive(Debug, thiserror::Error)]
/// Why a catalog call failed, in the terms the API answers with.
pub enum CatalogError {
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] DocumentError),
    #[error(transparent)]
    Inventory(#[from] InventoryError),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl From<CatalogError> for ApiError {
    fn from(error: CatalogError) -> Self {
        match error {
            CatalogError::Invalid(invalid) => ApiError::InvalidInput(invalid.to_string()),
            CatalogError::Conflict(message) => ApiError::Conflict(message),
            CatalogError::NotFound(message) => ApiError::NotFound(message),
            CatalogError::Store(DocumentError::Unavailable(failure)) => {
                ApiError::StoreUnavailable(failure.to_string())
            }
            CatalogError::Store(other) => ApiError::Unexpected(other.into()),
            CatalogError::Inventory(inner) => inner.into(),
            CatalogError::Unexpected(inner) => ApiError::Unexpected(inner),
        }
    }
}

impl From<DocumentError> for ApiError {
    fn from(error: DocumentError) -> Self {
        CatalogError::Store(error).into()
    }
}

/// One stored value and the version the store gave it.
#[derive(Debug, Clone)]
pub struct Entry<T> {
    pub version: u64,
    pub value: T,
}

/// A tenant's entries by document id.
pub type Entries<T> = BTreeMap<String, Entry<T>>;

#[derive(Debug)]
pub struct Catalog<T> {
    documents: Arc<dyn DocumentStore>,
    collection: Collection,
    tenants: RwLock<HashMap<TenantId, Entries<T>>>,
}

impl<T> Catalog<T>
where
    T: Serialize + DeserializeOwned + Send + Sync,
{
    pub fn new(documents: Arc<dyn DocumentStore>, collection: &str) -> anyhow::Result<Self> {
        Ok(Catalog {
            documents,
            collection: Collection::parse(collection)
                .map_err(|error| anyhow::anyhow!("collection {collection:?}: {error}"))?,
            tenants: RwLock::new(HashMap::new()),
        })
    }

    /// Runs `read` over the tenant's entries (loading them on first use).
    pub async fn read<R>(
        &self,
        tenant: &TenantId,
        read: impl FnOnce(&Entries<T>) -> R,
    ) -> Result<R, DocumentError> {
        {
            let tenants = self.tenants.read().await;
            if let Some(entries) = tenants.get(tenant) {
                return Ok(read(entries));
            }
        }
        let writer = self.write(tenant).await?;
        Ok(read(writer.entries()))
    }

    /// Exclusive access to the tenant's entries, to check and then change them.
    pub async fn write(&self, tenant: &TenantId) -> Result<Writer<'_, T>, DocumentError> {
        let mut tenants = self.tenants.write().await;
        if !tenants.contains_key(tenant) {
            let loaded = self.load(tenant).await?;
            tenants.insert(tenant.clone(), loaded);
        }
        let entries = RwLockWriteGuard::map(tenants, |tenants| {
            tenants.entry(tenant.clone()).or_default()
        });
        Ok(Writer {
            catalog: self,
            tenant: tenant.clone(),
            entries,
        })
    }

    async fn load(&self, tenant: &TenantId) -> Result<Entries<T>, DocumentError> {
        let mut entries = BTreeMap::new();
        let mut after: Option<DocumentId> = None;
        loop {
            let page = self
                .documents
                .list(tenant, &self.collection, after.as_ref(), MAX_LIST)
                .await?;
            let full = page.len() == MAX_LIST;
            for document in page {
                let value = serde_json::from_value(document.body).map_err(|error| {
                    DocumentError::Invalid(format!(
                        "stored {} {} cannot be read: {error}",
                        self.collection.as_str(),
                        document.id.as_str()
                    ))
                })?;
                entries.insert(
                    document.id.as_str().to_owned(),
                    Entry {
                        version: document.version,
                        value,
                    },
                );
                after = Some(document.id);
            }
            if !full {
                return Ok(entries);
            }
        }
    }
}

/// Holds a catalog's lock: reads see every earlier write, and writes are stored before they show.
#[derive(Debug)]
pub struct Writer<'a, T> {
    catalog: &'a Catalog<T>,
    tenant: TenantId,
    entries: RwLockMappedWriteGuard<'a, Entries<T>>,
}

impl<T> Writer<'_, T>
where
    T: Serialize + DeserializeOwned + Send + Sync,
{
    pub fn entries(&self) -> &Entries<T> {
        &self.entries
    }

    /// Stores `value` under `id`: a new document, or the next version of the one held.
    pub async fn put(&mut self, id: &str, value: T) -> Result<&T, DocumentError> {
        let document_id = DocumentId::parse(id)
            .map_err(|error| DocumentError::Invalid(format!("document id {id:?}: {error}")))?;
        let body = serde_json::to_value(&value)
            .map_err(|error| DocumentError::Invalid(format!("cannot serialise: {error}")))?;
        let held = self.entries().get(id).map(|entry| entry.version);
        let catalog = self.catalog;
        let stored = match held {
            Some(version) => {
                catalog
                    .documents
                    .replace(
                        &self.tenant,
                        &catalog.collection,
                        &document_id,
                        &body,
                        Some(version),
                    )
                    .await?
            }
            None => {
                catalog
                    .documents
                    .insert(&self.tenant, &catalog.collection, &document_id, &body)
                    .await?
            }
        };
        let entry = Entry {
            version: stored.version,
            value,
        };
        let held = match self.entries.entry(id.to_owned()) {
            std::collections::btree_map::Entry::Occupied(mut occupied) => {
                occupied.insert(entry);
                occupied.into_mut()
            }
            std::collections::btree_map::Entry::Vacant(vacant) => vacant.insert(entry),
        };
        Ok(&held.value)
    }

    /// Deletes `id`; `false` when it was not there.
    pub async fn remove(&mut self, id: &str) -> Result<bool, DocumentError> {
        let Some(version) = self.entries().get(id).map(|entry| entry.version) else {
            return Ok(false);
        };
        let document_id = DocumentId::parse(id)
            .map_err(|error| DocumentError::Invalid(format!("document id {id:?}: {error}")))?;
        let catalog = self.catalog;
        let removed = catalog
            .documents
            .delete(
                &self.tenant,
                &catalog.collection,
                &document_id,
                Some(version),
            )
            .await?;
        self.entries.remove(id);
        Ok(removed)
    }
}
