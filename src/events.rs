//! Generic application events (OpenFrame's `events` collection): anything an integration or a
//! technician wants to record, `{type, data, userId, timestamp}`. Not the unified tool log (that
//! is [`crate::stream`]); these are created and edited through the API.
//!
//! Ids start with the creation time (`{ms:013}-{uuid}`), so the store's id order is time order.

use std::sync::Arc;

use openframe_storage::{Clock, DocumentStore, TenantId};
use serde::{Deserialize, Serialize};

use crate::catalog::{Catalog, CatalogError};
use crate::domain::Invalid;
use crate::identity::crypto::random_uuid;

/// The most events a tenant keeps (they are held in memory for queries).
pub const MAX_EVENTS: usize = 100_000;
/// The largest `data`, in bytes.
pub const MAX_DATA: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    /// Free text, usually JSON (OpenFrame's `payload`).
    pub data: String,
    pub user_id: String,
    /// When it happened (Unix ms); the creation time unless given.
    pub timestamp: i64,
    pub created_by: String,
    pub updated_at: i64,
}

/// What `createEvent` and `updateEvent` take; on update, `None` keeps a field.
#[derive(Debug, Clone, Default)]
pub struct EventInput {
    pub event_type: Option<String>,
    pub data: Option<String>,
    pub user_id: Option<String>,
}

fn check_type(value: &str) -> Result<String, Invalid> {
    let value = value.trim();
    let ok = (1..=100).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.:".contains(&b));
    if ok {
        Ok(value.to_owned())
    } else {
        Err(Invalid::new(
            "type",
            "must be 1 to 100 letters, digits, '_', '-', '.' or ':', e.g. BACKUP_COMPLETED",
        ))
    }
}

fn check_data(value: &str) -> Result<String, Invalid> {
    if value.len() > MAX_DATA {
        return Err(Invalid::new(
            "data",
            format!("must be at most {MAX_DATA} bytes, got {}", value.len()),
        ));
    }
    Ok(value.to_owned())
}

fn check_user_id(value: &str) -> Result<String, Invalid> {
    let value = value.trim();
    if value.is_empty() || value.len() > 128 || value.chars().any(char::is_control) {
        return Err(Invalid::new(
            "userId",
            "must be 1 to 128 printable characters",
        ));
    }
    Ok(value.to_owned())
}

#[derive(Debug)]
pub struct Events {
    catalog: Catalog<Event>,
    clock: Arc<dyn Clock>,
}

impl Events {
    pub fn new(documents: Arc<dyn DocumentStore>, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        Ok(Events {
            catalog: Catalog::new(documents, "events")?,
            clock,
        })
    }

    /// Lets `look` read the tenant's events, oldest first.
    pub async fn view<R>(
        &self,
        tenant: &TenantId,
        look: impl FnOnce(&mut dyn Iterator<Item = &Event>) -> R,
    ) -> Result<R, CatalogError> {
        Ok(self
            .catalog
            .read(tenant, |entries| {
                look(&mut entries.values().map(|entry| &entry.value))
            })
            .await?)
    }

    pub async fn get(&self, tenant: &TenantId, id: &str) -> Result<Option<Event>, CatalogError> {
        Ok(self
            .catalog
            .read(tenant, |entries| {
                entries.get(id).map(|entry| entry.value.clone())
            })
            .await?)
    }

    /// Records an event; `userId` defaults to the actor.
    pub async fn create(
        &self,
        tenant: &TenantId,
        actor: &str,
        input: EventInput,
    ) -> Result<Event, CatalogError> {
        let event_type = check_type(input.event_type.as_deref().unwrap_or_default())?;
        let data = check_data(input.data.as_deref().unwrap_or_default())?;
        let user_id = check_user_id(input.user_id.as_deref().unwrap_or(actor))?;
        let now = self.clock.now_ms();
        let mut writer = self.catalog.write(tenant).await?;
        if writer.entries().len() >= MAX_EVENTS {
            return Err(CatalogError::Conflict(format!(
                "this tenant holds {MAX_EVENTS} events, the most kept; no more can be recorded"
            )));
        }
        let event = Event {
            id: format!("{:013}-{}", now.max(0), random_uuid()?),
            event_type,
            data,
            user_id,
            timestamp: now,
            created_by: actor.to_owned(),
            updated_at: now,
        };
        Ok(writer.put(&event.id.clone(), event).await?.clone())
    }

    pub async fn update(
        &self,
        tenant: &TenantId,
        id: &str,
        input: EventInput,
    ) -> Result<Event, CatalogError> {
        let event_type = input.event_type.as_deref().map(check_type).transpose()?;
        let data = input.data.as_deref().map(check_data).transpose()?;
        let user_id = input.user_id.as_deref().map(check_user_id).transpose()?;
        let mut writer = self.catalog.write(tenant).await?;
        let Some(mut event) = writer.entries().get(id).map(|entry| entry.value.clone()) else {
            return Err(CatalogError::NotFound(format!("id: no event {id:?}")));
        };
        let before = event.clone();
        event.event_type = event_type.unwrap_or(event.event_type);
        event.data = data.unwrap_or(event.data);
        event.user_id = user_id.unwrap_or(event.user_id);
        if event == before {
            return Ok(event);
        }
        event.updated_at = self.clock.now_ms();
        Ok(writer.put(id, event).await?.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_are_names() {
        assert_eq!(
            check_type(" BACKUP_COMPLETED ").unwrap(),
            "BACKUP_COMPLETED"
        );
        assert_eq!(
            check_type("psa.ticket:closed").unwrap(),
            "psa.ticket:closed"
        );
        for bad in ["", "has space", "semi;colon", &"x".repeat(101)] {
            assert_eq!(check_type(bad).unwrap_err().field, "type", "{bad:?}");
        }
    }

    #[test]
    fn data_is_bounded() {
        assert!(check_data(&"x".repeat(MAX_DATA)).is_ok());
        let refused = check_data(&"x".repeat(MAX_DATA + 1)).unwrap_err();
        assert_eq!(refused.field, "data");
    }
}
