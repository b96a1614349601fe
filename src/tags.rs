//! Tags (OpenFrame's `tags` collection): keys technicians define for devices, scripts, tickets
//! and knowledge articles, with a description and a colour. A device carries tags as
//! `key:value` (or a bare `key`) on its machine document, which is what filters and facet
//! counts read; the definition here names and colours the key. Renaming or deleting a device
//! tag changes every device that carries it, as OpenFrame's assignments do.
//!
//! Keys are unique per tenant and entity type. Agents may bring keys at registration that no one
//! defined yet; [`Tags::define_device_keys`] adds definitions for them.

use std::sync::Arc;

use openframe_storage::{Clock, DocumentStore, TenantId};
use serde::{Deserialize, Serialize};

use crate::catalog::{Catalog, CatalogError};
use crate::domain::{Invalid, check_tag_part};
use crate::identity::crypto::random_uuid;
use crate::inventory::Inventory;

/// OpenFrame's `TagEntityType`.
pub const ENTITY_TYPES: [&str; 4] = ["DEVICE", "TICKET", "KNOWLEDGE_ARTICLE", "SCRIPT"];
/// The longest description.
pub const MAX_DESCRIPTION: usize = 500;
/// The most tags a tenant may define.
pub const MAX_TAGS: usize = 10_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Tag {
    pub id: String,
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `#rrggbb`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub color: Option<String>,
    pub entity_type: String,
    pub created_at: i64,
    /// The user id of the technician who defined it, or `agent` for keys an agent brought.
    pub created_by: String,
    pub updated_at: i64,
}

/// What `updateTag` changes; `None` leaves a field as it is, an empty text clears it.
#[derive(Debug, Clone, Default)]
pub struct TagChange {
    pub key: Option<String>,
    pub description: Option<String>,
    pub color: Option<String>,
}

fn check_entity_type(value: &str) -> Result<String, Invalid> {
    let value = value.trim().to_ascii_uppercase();
    if ENTITY_TYPES.contains(&value.as_str()) {
        Ok(value)
    } else {
        Err(Invalid::new(
            "entityType",
            format!("must be one of {}", ENTITY_TYPES.join(", ")),
        ))
    }
}

/// `None` for an empty text (clears the field).
fn check_description(value: &str) -> Result<Option<String>, Invalid> {
    let value = value.trim();
    if value.chars().count() > MAX_DESCRIPTION {
        return Err(Invalid::new(
            "description",
            format!("must be at most {MAX_DESCRIPTION} characters"),
        ));
    }
    if value.chars().any(|c| c.is_control() && c != '\n') {
        return Err(Invalid::new(
            "description",
            "must not contain control characters",
        ));
    }
    Ok((!value.is_empty()).then(|| value.to_owned()))
}

/// `#rgb` or `#rrggbb`, stored lower-case as `#rrggbb`; `None` for an empty text.
fn check_color(value: &str) -> Result<Option<String>, Invalid> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    let hex = value.strip_prefix('#').unwrap_or("");
    if !(hex.len() == 3 || hex.len() == 6) || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Invalid::new(
            "color",
            format!("{value:?} is not a colour; write it as #rrggbb, e.g. #1f6feb"),
        ));
    }
    let hex = hex.to_ascii_lowercase();
    Ok(Some(if hex.len() == 3 {
        hex.chars()
            .flat_map(|c| [c, c])
            .fold(String::from("#"), |mut out, c| {
                out.push(c);
                out
            })
    } else {
        format!("#{hex}")
    }))
}

/// The key of a device's `key:value` (or bare `key`) tag.
pub fn device_tag_key(tag: &str) -> &str {
    tag.split_once(':').map_or(tag, |(key, _)| key)
}

#[derive(Debug)]
pub struct Tags {
    catalog: Catalog<Tag>,
    inventory: Arc<Inventory>,
    clock: Arc<dyn Clock>,
}

impl Tags {
    pub fn new(
        documents: Arc<dyn DocumentStore>,
        inventory: Arc<Inventory>,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Tags> {
        Ok(Tags {
            catalog: Catalog::new(documents, "tags")?,
            inventory,
            clock,
        })
    }

    /// The tenant's tags of `entity_type` (all types when `None`), by key.
    pub async fn list(
        &self,
        tenant: &TenantId,
        entity_type: Option<&str>,
    ) -> Result<Vec<Tag>, CatalogError> {
        let mut tags = self
            .catalog
            .read(tenant, |entries| {
                entries
                    .values()
                    .map(|entry| &entry.value)
                    .filter(|tag| entity_type.is_none_or(|kind| tag.entity_type == kind))
                    .cloned()
                    .collect::<Vec<_>>()
            })
            .await?;
        tags.sort_by(|a, b| (&a.key, &a.entity_type, &a.id).cmp(&(&b.key, &b.entity_type, &b.id)));
        Ok(tags)
    }

    /// The DEVICE tags with these keys, by key (a device's tags: only those are copied).
    pub async fn device_tags(
        &self,
        tenant: &TenantId,
        keys: &[&str],
    ) -> Result<Vec<Tag>, CatalogError> {
        let mut tags = self
            .catalog
            .read(tenant, |entries| {
                entries
                    .values()
                    .map(|entry| &entry.value)
                    .filter(|tag| tag.entity_type == "DEVICE" && keys.contains(&tag.key.as_str()))
                    .cloned()
                    .collect::<Vec<_>>()
            })
            .await?;
        tags.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(tags)
    }

    pub async fn get(&self, tenant: &TenantId, id: &str) -> Result<Option<Tag>, CatalogError> {
        Ok(self
            .catalog
            .read(tenant, |entries| {
                entries.get(id).map(|entry| entry.value.clone())
            })
            .await?)
    }

    pub async fn create(
        &self,
        tenant: &TenantId,
        actor: &str,
        key: &str,
        entity_type: &str,
        description: Option<&str>,
        color: Option<&str>,
    ) -> Result<Tag, CatalogError> {
        let key = key.trim();
        check_tag_part(key, "key")?;
        let entity_type = check_entity_type(entity_type)?;
        let description = description.map(check_description).transpose()?.flatten();
        let color = color.map(check_color).transpose()?.flatten();
        let mut writer = self.catalog.write(tenant).await?;
        let entries = writer.entries();
        if entries.len() >= MAX_TAGS {
            return Err(CatalogError::Conflict(format!(
                "this tenant has {MAX_TAGS} tags, the most allowed; delete unused ones first"
            )));
        }
        if entries
            .values()
            .any(|entry| entry.value.key == key && entry.value.entity_type == entity_type)
        {
            return Err(CatalogError::Conflict(format!(
                "key: a {entity_type} tag {key:?} exists already"
            )));
        }
        let now = self.clock.now_ms();
        let tag = Tag {
            id: random_uuid()?,
            key: key.to_owned(),
            description,
            color,
            entity_type,
            created_at: now,
            created_by: actor.to_owned(),
            updated_at: now,
        };
        Ok(writer.put(&tag.id.clone(), tag).await?.clone())
    }

    /// Applies `change`; renaming a device tag renames it on every device that carries it.
    pub async fn update(
        &self,
        tenant: &TenantId,
        id: &str,
        change: TagChange,
    ) -> Result<Tag, CatalogError> {
        let key = change
            .key
            .as_deref()
            .map(|key| {
                let key = key.trim();
                check_tag_part(key, "key").map(|()| key.to_owned())
            })
            .transpose()?;
        let description = change
            .description
            .as_deref()
            .map(check_description)
            .transpose()?;
        let color = change.color.as_deref().map(check_color).transpose()?;
        let mut writer = self.catalog.write(tenant).await?;
        let Some(before) = writer.entries().get(id).map(|entry| entry.value.clone()) else {
            return Err(CatalogError::NotFound(format!("id: no tag {id:?}")));
        };
        let mut tag = before.clone();
        if let Some(key) = key {
            if key != before.key
                && writer.entries().values().any(|entry| {
                    entry.value.key == key && entry.value.entity_type == before.entity_type
                })
            {
                return Err(CatalogError::Conflict(format!(
                    "key: a {} tag {key:?} exists already",
                    before.entity_type
                )));
            }
            tag.key = key;
        }
        if let Some(description) = description {
            tag.description = description;
        }
        if let Some(color) = color {
            tag.color = color;
        }
        if tag == before {
            return Ok(tag);
        }
        tag.updated_at = self.clock.now_ms();
        let tag = writer.put(id, tag).await?.clone();
        if tag.entity_type == "DEVICE" && tag.key != before.key {
            self.retag_devices(tenant, &before.key, Some(&tag.key))
                .await?;
        }
        Ok(tag)
    }

    /// Deletes a tag; a device tag is taken off every device. `false` when there was none.
    pub async fn delete(&self, tenant: &TenantId, id: &str) -> Result<bool, CatalogError> {
        let mut writer = self.catalog.write(tenant).await?;
        let Some(before) = writer.entries().get(id).map(|entry| entry.value.clone()) else {
            return Ok(false);
        };
        writer.remove(id).await?;
        if before.entity_type == "DEVICE" {
            self.retag_devices(tenant, &before.key, None).await?;
        }
        Ok(true)
    }

    /// Defines the device keys an agent brought that have no definition yet.
    pub async fn define_device_keys(
        &self,
        tenant: &TenantId,
        device_tags: &[String],
    ) -> Result<(), CatalogError> {
        let mut writer = self.catalog.write(tenant).await?;
        let mut missing: Vec<&str> = device_tags
            .iter()
            .map(|tag| device_tag_key(tag))
            .filter(|key| {
                !writer
                    .entries()
                    .values()
                    .any(|entry| entry.value.key == *key && entry.value.entity_type == "DEVICE")
            })
            .collect();
        missing.sort_unstable();
        missing.dedup();
        let now = self.clock.now_ms();
        for key in missing {
            let tag = Tag {
                id: random_uuid()?,
                key: key.to_owned(),
                description: None,
                color: None,
                entity_type: "DEVICE".into(),
                created_at: now,
                created_by: "agent".into(),
                updated_at: now,
            };
            writer.put(&tag.id.clone(), tag).await?;
        }
        Ok(())
    }

    /// Renames (`Some`) or removes (`None`) a tag key on every device of the tenant.
    async fn retag_devices(
        &self,
        tenant: &TenantId,
        key: &str,
        renamed: Option<&str>,
    ) -> Result<(), CatalogError> {
        let carrying: Vec<String> = self
            .inventory
            .view(tenant, |machines, _| {
                machines
                    .values()
                    .filter(|machine| machine.tags.iter().any(|tag| device_tag_key(tag) == key))
                    .map(|machine| machine.machine_id.clone())
                    .collect()
            })
            .await?;
        for machine_id in carrying {
            self.inventory
                .update_machine(tenant, &machine_id, |machine| {
                    machine.tags = std::mem::take(&mut machine.tags)
                        .into_iter()
                        .filter_map(|tag| {
                            if device_tag_key(&tag) != key {
                                return Some(tag);
                            }
                            let renamed = renamed?;
                            Some(match tag.split_once(':') {
                                Some((_, value)) => format!("{renamed}:{value}"),
                                None => renamed.to_owned(),
                            })
                        })
                        .collect();
                    machine.tags.dedup();
                })
                .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_are_normalised_or_refused() {
        assert_eq!(check_color("#ABC").unwrap().as_deref(), Some("#aabbcc"));
        assert_eq!(
            check_color(" #1F6feb ").unwrap().as_deref(),
            Some("#1f6feb")
        );
        assert_eq!(check_color("").unwrap(), None);
        for bad in ["red", "#12", "#12345g", "1f6feb", "#1234567"] {
            let refused = check_color(bad).unwrap_err();
            assert_eq!(refused.field, "color", "{bad}");
        }
    }

    #[test]
    fn entity_types_are_openframes() {
        assert_eq!(check_entity_type("device").unwrap(), "DEVICE");
        assert_eq!(check_entity_type("SCRIPT").unwrap(), "SCRIPT");
        assert_eq!(check_entity_type("USER").unwrap_err().field, "entityType");
    }

    #[test]
    fn descriptions_are_trimmed_and_bounded() {
        assert_eq!(check_description("  ").unwrap(), None);
        assert_eq!(
            check_description(" Chicago office ").unwrap().as_deref(),
            Some("Chicago office")
        );
        assert!(check_description(&"x".repeat(MAX_DESCRIPTION + 1)).is_err());
        assert!(check_description("bell\u{7}").is_err());
    }

    #[test]
    fn device_tag_keys() {
        assert_eq!(device_tag_key("site:CHICAGO"), "site");
        assert_eq!(device_tag_key("vip"), "vip");
    }
}
