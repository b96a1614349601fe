//! Operators' event-type mappings: per tenant, through the API (stored in the document store),
//! or for one or every tenant in the config (`[[stream.mapping_overrides]]`). They win over the
//! tools' built-in tables, so a new tool event type, or a severity that matters more to one
//! customer, needs no new release. They apply to events processed after the change.
//!
//! Resolution for `(tool, source type)`: the tenant's API override, then a config override for
//! the tenant, then one for every tenant, then the tool's table, then `UNKNOWN`.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use openframe_storage::documents::MAX_LIST;
use openframe_storage::model::{Collection, DocumentId};
use openframe_storage::{DocumentStore, TenantId};
use serde::{Deserialize, Serialize};

use super::taxonomy::{self, EventType, Severity};
use super::tools;
use crate::config::MappingOverrideConfig;
use crate::domain::Invalid;

const COLLECTION: &str = "event_type_mappings";
/// The most overrides one tenant may keep through the API.
pub const MAX_PER_TENANT: usize = 1_000;

/// One override: events of `tool` with `source_event_type` become `event_type`, at `severity`
/// when given (otherwise the type's own).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappingOverride {
    /// The tool's db name: `meshcentral`, `fleet-mdm`, `rmm`.
    pub tool: String,
    pub source_event_type: String,
    pub event_type: &'static EventType,
    pub severity: Option<Severity>,
}

impl MappingOverride {
    /// Validates an override as a client or the config gives it.
    pub fn parse(
        tool: &str,
        source_event_type: &str,
        event_type: &str,
        severity: Option<&str>,
    ) -> Result<MappingOverride, Invalid> {
        if !tools::INTEGRATIONS
            .iter()
            .any(|known| known.db_name() == tool)
        {
            let known: Vec<&str> = tools::INTEGRATIONS
                .iter()
                .map(|known| known.db_name())
                .collect();
            return Err(Invalid::new(
                "tool",
                format!("{tool:?} is not one of {}", known.join(", ")),
            ));
        }
        let printable = |text: &str| text.bytes().all(|byte| byte.is_ascii_graphic());
        if source_event_type.is_empty()
            || source_event_type.len() > 100
            || !printable(source_event_type)
        {
            return Err(Invalid::new(
                "sourceEventType",
                "must be 1 to 100 printable ASCII characters without spaces",
            ));
        }
        let event_type = taxonomy::event_type(event_type).ok_or_else(|| {
            Invalid::new(
                "eventType",
                format!(
                    "{event_type:?} is not a unified event type (e.g. LOGIN, HOST_LOCKED, UNKNOWN)"
                ),
            )
        })?;
        let severity = match severity {
            None => None,
            Some(severity) => Some(Severity::parse(severity).ok_or_else(|| {
                Invalid::new(
                    "severity",
                    format!("{severity:?} is not one of INFO, WARNING, ERROR, CRITICAL"),
                )
            })?),
        };
        Ok(MappingOverride {
            tool: tool.to_owned(),
            source_event_type: source_event_type.to_owned(),
            event_type,
            severity,
        })
    }

    fn key(&self) -> (String, String) {
        (self.tool.clone(), self.source_event_type.clone())
    }
}

/// The stored form.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredOverride {
    tool: String,
    source_event_type: String,
    event_type: String,
    severity: Option<String>,
}

impl From<&MappingOverride> for StoredOverride {
    fn from(value: &MappingOverride) -> Self {
        StoredOverride {
            tool: value.tool.clone(),
            source_event_type: value.source_event_type.clone(),
            event_type: value.event_type.name.to_owned(),
            severity: value.severity.map(|severity| severity.as_str().to_owned()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MappingError {
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error("a tenant keeps at most {MAX_PER_TENANT} mapping overrides")]
    TooMany,
    #[error("the mapping store is unavailable: {0}")]
    Unavailable(String),
}

type Table = HashMap<(String, String), MappingOverride>;

#[derive(Debug)]
pub struct Mappings {
    documents: Arc<dyn DocumentStore>,
    /// From the config: `None` applies to every tenant.
    configured: Vec<(Option<String>, MappingOverride)>,
    /// Each tenant's API overrides, loaded on first use and written through.
    tenants: RwLock<HashMap<TenantId, Arc<Table>>>,
    writing: tokio::sync::Mutex<()>,
}

impl Mappings {
    /// Validates the configured overrides; a bad one stops start-up with the entry named.
    pub fn new(
        documents: Arc<dyn DocumentStore>,
        configured: &[MappingOverrideConfig],
    ) -> Result<Mappings, String> {
        let configured = configured
            .iter()
            .enumerate()
            .map(|(index, entry)| {
                MappingOverride::parse(
                    &entry.tool,
                    &entry.source_event_type,
                    &entry.event_type,
                    entry.severity.as_deref(),
                )
                .map(|parsed| (entry.tenant.clone(), parsed))
                .map_err(|invalid| format!("stream.mapping_overrides[{index}].{invalid}"))
            })
            .collect::<Result<_, _>>()?;
        Ok(Mappings {
            documents,
            configured,
            tenants: RwLock::new(HashMap::new()),
            writing: tokio::sync::Mutex::new(()),
        })
    }

    /// The override for an event, if any.
    pub async fn resolve(
        &self,
        tenant: &TenantId,
        tool: &str,
        source_event_type: &str,
    ) -> Result<Option<MappingOverride>, MappingError> {
        let table = self.table(tenant).await?;
        // The common case, on every processed event: no override anywhere, no allocation.
        if table.is_empty() && self.configured.is_empty() {
            return Ok(None);
        }
        if let Some(found) = table.get(&(tool.to_owned(), source_event_type.to_owned())) {
            return Ok(Some(found.clone()));
        }
        let configured = |for_tenant: Option<&str>| {
            self.configured.iter().find(|(scope, entry)| {
                scope.as_deref() == for_tenant
                    && entry.tool == tool
                    && entry.source_event_type == source_event_type
            })
        };
        Ok(configured(Some(tenant.as_str()))
            .or_else(|| configured(None))
            .map(|(_, entry)| entry.clone()))
    }

    /// The tenant's API overrides, by tool and source type.
    pub async fn list(&self, tenant: &TenantId) -> Result<Vec<MappingOverride>, MappingError> {
        let mut list: Vec<MappingOverride> = self.table(tenant).await?.values().cloned().collect();
        list.sort_by_key(MappingOverride::key);
        Ok(list)
    }

    pub async fn put(&self, tenant: &TenantId, entry: MappingOverride) -> Result<(), MappingError> {
        let _turn = self.writing.lock().await;
        let table = self.table(tenant).await?;
        if !table.contains_key(&entry.key()) && table.len() >= MAX_PER_TENANT {
            return Err(MappingError::TooMany);
        }
        let body = serde_json::to_value(StoredOverride::from(&entry))
            .map_err(|error| MappingError::Unavailable(error.to_string()))?;
        self.documents
            .replace(tenant, &collection()?, &document_id(&entry)?, &body, None)
            .await
            .map_err(|error| MappingError::Unavailable(error.to_string()))?;
        let mut updated = (*table).clone();
        updated.insert(entry.key(), entry);
        self.store_table(tenant, updated);
        Ok(())
    }

    /// Removes an override; `false` when there was none.
    pub async fn delete(
        &self,
        tenant: &TenantId,
        tool: &str,
        source_event_type: &str,
    ) -> Result<bool, MappingError> {
        let _turn = self.writing.lock().await;
        let table = self.table(tenant).await?;
        let key = (tool.to_owned(), source_event_type.to_owned());
        let Some(entry) = table.get(&key) else {
            return Ok(false);
        };
        self.documents
            .delete(tenant, &collection()?, &document_id(entry)?, None)
            .await
            .map_err(|error| MappingError::Unavailable(error.to_string()))?;
        let mut updated = (*table).clone();
        updated.remove(&key);
        self.store_table(tenant, updated);
        Ok(true)
    }

    fn store_table(&self, tenant: &TenantId, table: Table) {
        self.tenants
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(tenant.clone(), Arc::new(table));
    }

    async fn table(&self, tenant: &TenantId) -> Result<Arc<Table>, MappingError> {
        if let Some(table) = self
            .tenants
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(tenant)
        {
            return Ok(table.clone());
        }
        let mut table = Table::new();
        let stored = self
            .documents
            .list(tenant, &collection()?, None, MAX_LIST)
            .await
            .map_err(|error| MappingError::Unavailable(error.to_string()))?;
        for document in stored {
            let parsed = serde_json::from_value::<StoredOverride>(document.body)
                .ok()
                .and_then(|stored| {
                    MappingOverride::parse(
                        &stored.tool,
                        &stored.source_event_type,
                        &stored.event_type,
                        stored.severity.as_deref(),
                    )
                    .ok()
                });
            match parsed {
                Some(entry) => {
                    table.insert(entry.key(), entry);
                }
                None => {
                    tracing::warn!(%tenant, id = %document.id, "skipping an unreadable mapping override")
                }
            }
        }
        let table = Arc::new(table);
        self.tenants
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(tenant.clone())
            .or_insert_with(|| table.clone());
        Ok(table)
    }
}

fn collection() -> Result<Collection, MappingError> {
    Collection::parse(COLLECTION).map_err(|error| MappingError::Unavailable(error.to_string()))
}

fn document_id(entry: &MappingOverride) -> Result<DocumentId, MappingError> {
    DocumentId::parse(&format!("{}:{}", entry.tool, entry.source_event_type))
        .map_err(|_| MappingError::Invalid(Invalid::new("sourceEventType", DocumentId::RULE)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_name_a_known_tool_type_and_severity() {
        let ok = MappingOverride::parse(
            "fleet-mdm",
            "some_brand_new_activity",
            "CONFIGURATION_UPDATED",
            Some("ERROR"),
        )
        .unwrap();
        assert_eq!(ok.event_type.name, "CONFIGURATION_UPDATED");
        assert_eq!(ok.severity, Some(Severity::Error));
        for (tool, source, event_type, severity, field) in [
            ("fleet", "x", "LOGIN", None, "tool"),
            ("fleet-mdm", "", "LOGIN", None, "sourceEventType"),
            ("fleet-mdm", "has space", "LOGIN", None, "sourceEventType"),
            ("fleet-mdm", "x", "LOGGED_IN", None, "eventType"),
            ("fleet-mdm", "x", "LOGIN", Some("info"), "severity"),
        ] {
            let invalid = MappingOverride::parse(tool, source, event_type, severity).unwrap_err();
            assert_eq!(invalid.field, field);
        }
        assert!(Collection::parse(COLLECTION).is_ok());
    }
}
