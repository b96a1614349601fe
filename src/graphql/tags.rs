//! Tags: `tags`, `tagValueOptions`, `tagKeySuggestions`, `tagValueSuggestions`, `createTag`,
//! `updateTag` and `deleteTag`. A device tag's values are the ones devices carry; all of it is
//! read from memory (the tag catalog and the inventory directory).

use std::collections::{BTreeMap, BTreeSet};

use async_graphql::{Context, ID, Object};

use super::audit::{record, snapshot};
use super::devices::{DeviceFilterOption, HIDDEN_BY_DEFAULT, tag_value};
use super::relay;
use super::{GqlResult, gql_error, invalid, request};
use crate::audit::AuditChange;
use crate::error::ApiError;
use crate::tags::{Tag, TagChange, device_tag_key};

/// A tag as GraphQL shows it (type `Tag`): the definition and the values in use.
#[derive(Debug, Clone)]
pub struct TagNode {
    tag: Tag,
    values: Vec<String>,
}

impl TagNode {
    pub(super) fn new(tag: Tag, values: Vec<String>) -> TagNode {
        TagNode { tag, values }
    }
}

#[Object(name = "Tag")]
impl TagNode {
    /// The global id (`Tag:<id>`).
    pub async fn id(&self) -> ID {
        relay::global_id("Tag", &self.tag.id)
    }
    async fn key(&self) -> &str {
        &self.tag.key
    }
    async fn description(&self) -> Option<&str> {
        self.tag.description.as_deref()
    }
    /// `#rrggbb`.
    async fn color(&self) -> Option<&str> {
        self.tag.color.as_deref()
    }
    /// For a device tag, the values devices carry (on a device's `tags`, that device's values).
    async fn values(&self) -> &[String] {
        &self.values
    }
    /// `DEVICE`, `TICKET`, `KNOWLEDGE_ARTICLE` or `SCRIPT`.
    async fn entity_type(&self) -> &str {
        &self.tag.entity_type
    }
    async fn created_at(&self) -> String {
        crate::api::iso(self.tag.created_at)
    }
    /// The technician's user id, or `agent` for a key an agent brought at registration.
    async fn created_by(&self) -> &str {
        &self.tag.created_by
    }
    async fn updated_at(&self) -> String {
        crate::api::iso(self.tag.updated_at)
    }
}

/// Every value each device tag key has across the tenant's devices.
async fn device_values(ctx: &Context<'_>) -> GqlResult<BTreeMap<String, BTreeSet<String>>> {
    let request = request(ctx);
    request
        .state
        .inventory
        .view(&request.admin.tenant, |machines, _| {
            let mut values = BTreeMap::<String, BTreeSet<String>>::new();
            for tag in machines.values().flat_map(|machine| &machine.tags) {
                let entry = values.entry(device_tag_key(tag).to_owned()).or_default();
                let value = tag_value(tag);
                if !value.is_empty() {
                    entry.insert(value.to_owned());
                }
            }
            values
        })
        .await
        .map_err(|error| gql_error(error.into()))
}

async fn all_tags(ctx: &Context<'_>, entity_type: Option<&str>) -> GqlResult<Vec<TagNode>> {
    let request = request(ctx);
    let tags = request
        .state
        .tags
        .list(&request.admin.tenant, entity_type)
        .await
        .map_err(|error| gql_error(error.into()))?;
    let mut values = if tags.iter().any(|tag| tag.entity_type == "DEVICE") {
        device_values(ctx).await?
    } else {
        BTreeMap::new()
    };
    Ok(tags
        .into_iter()
        .map(|tag| {
            let in_use = if tag.entity_type == "DEVICE" {
                values.remove(&tag.key).unwrap_or_default()
            } else {
                BTreeSet::new()
            };
            TagNode::new(tag, in_use.into_iter().collect())
        })
        .collect())
}

pub(super) async fn by_tag_id(ctx: &Context<'_>, id: &str) -> GqlResult<Option<TagNode>> {
    let request = request(ctx);
    let Some(tag) = request
        .state
        .tags
        .get(&request.admin.tenant, id)
        .await
        .map_err(|error| gql_error(error.into()))?
    else {
        return Ok(None);
    };
    let values = if tag.entity_type == "DEVICE" {
        device_values(ctx)
            .await?
            .remove(&tag.key)
            .unwrap_or_default()
            .into_iter()
            .collect()
    } else {
        Vec::new()
    };
    Ok(Some(TagNode::new(tag, values)))
}

/// The tag a mutation names by global id; `not_found` for another type or tenant.
fn tag_id(id: &ID) -> GqlResult<String> {
    relay::local_id("id", id, "Tag")?
        .ok_or_else(|| gql_error(ApiError::NotFound(format!("id: no tag {:?}", id.as_str()))))
}

fn check_limit(limit: Option<i32>) -> GqlResult<usize> {
    let limit = limit.unwrap_or(10);
    if !(1..=relay::MAX_PAGE).contains(&limit) {
        return Err(invalid(format!(
            "limit: must be between 1 and {}, got {limit}",
            relay::MAX_PAGE
        )));
    }
    Ok(usize::try_from(limit).unwrap_or(10))
}

/// Matches first by prefix, then anywhere, each alphabetically.
fn suggest<'a>(
    candidates: impl Iterator<Item = &'a str>,
    search: Option<&str>,
    limit: usize,
) -> Vec<&'a str> {
    let mut ranked: Vec<(bool, &str)> = candidates
        .filter_map(|candidate| {
            let lower = candidate.to_lowercase();
            match search {
                None => Some((false, candidate)),
                Some(text) if lower.starts_with(text) => Some((false, candidate)),
                Some(text) if lower.contains(text) => Some((true, candidate)),
                Some(_) => None,
            }
        })
        .collect();
    ranked.sort_unstable();
    ranked.dedup();
    ranked.into_iter().take(limit).map(|(_, c)| c).collect()
}

fn check_entity_type_argument(entity_type: Option<String>) -> GqlResult<Option<String>> {
    entity_type
        .map(|kind| {
            let upper = kind.trim().to_ascii_uppercase();
            if crate::tags::ENTITY_TYPES.contains(&upper.as_str()) {
                Ok(upper)
            } else {
                Err(invalid(format!(
                    "entityType: {kind:?} is not one of {}",
                    crate::tags::ENTITY_TYPES.join(", ")
                )))
            }
        })
        .transpose()
}

#[derive(Default, Debug)]
pub struct TagQuery;

#[Object]
impl TagQuery {
    /// The tenant's tags (of one entity type when given), by key.
    async fn tags(
        &self,
        ctx: &Context<'_>,
        entity_type: Option<String>,
    ) -> GqlResult<Vec<TagNode>> {
        let entity_type = check_entity_type_argument(entity_type)?;
        all_tags(ctx, entity_type.as_deref()).await
    }

    /// The values of a device tag key with how many devices of the default device list carry
    /// each (the same count `devices(filter: {tagValues: ["key:value"]})` gives).
    async fn tag_value_options(
        &self,
        ctx: &Context<'_>,
        tag_key: String,
    ) -> GqlResult<Vec<DeviceFilterOption>> {
        let request = request(ctx);
        request
            .state
            .inventory
            .view(&request.admin.tenant, |machines, _| {
                let mut counts = BTreeMap::<&str, i32>::new();
                for machine in machines
                    .values()
                    .filter(|machine| !HIDDEN_BY_DEFAULT.contains(&machine.status.as_str()))
                {
                    let values: BTreeSet<&str> = machine
                        .tags
                        .iter()
                        .filter(|tag| device_tag_key(tag) == tag_key)
                        .map(|tag| tag_value(tag))
                        .filter(|value| !value.is_empty())
                        .collect();
                    for value in values {
                        *counts.entry(value).or_default() += 1;
                    }
                }
                counts
                    .into_iter()
                    .map(|(value, count)| DeviceFilterOption {
                        value: format!("{tag_key}:{value}"),
                        label: value.to_owned(),
                        count,
                    })
                    .collect()
            })
            .await
            .map_err(|error| gql_error(error.into()))
    }

    /// Device tags whose key matches `search` (prefix matches first), at most `limit` (10).
    async fn tag_key_suggestions(
        &self,
        ctx: &Context<'_>,
        search: Option<String>,
        limit: Option<i32>,
    ) -> GqlResult<Vec<TagNode>> {
        let limit = check_limit(limit)?;
        let search = relay::search_text(search)?;
        let tags = all_tags(ctx, Some("DEVICE")).await?;
        let keys: Vec<String> = suggest(
            tags.iter().map(|node| node.tag.key.as_str()),
            search.as_deref(),
            limit,
        )
        .into_iter()
        .map(str::to_owned)
        .collect();
        let mut by_key: BTreeMap<String, TagNode> = tags
            .into_iter()
            .map(|node| (node.tag.key.clone(), node))
            .collect();
        Ok(keys.iter().filter_map(|key| by_key.remove(key)).collect())
    }

    /// Values devices carry for `tagKey` that match `search`, at most `limit` (10).
    async fn tag_value_suggestions(
        &self,
        ctx: &Context<'_>,
        tag_key: String,
        search: Option<String>,
        limit: Option<i32>,
    ) -> GqlResult<Vec<String>> {
        let limit = check_limit(limit)?;
        let search = relay::search_text(search)?;
        let values = device_values(ctx)
            .await?
            .remove(&tag_key)
            .unwrap_or_default();
        Ok(
            suggest(values.iter().map(String::as_str), search.as_deref(), limit)
                .into_iter()
                .map(str::to_owned)
                .collect(),
        )
    }
}

#[derive(Default, Debug)]
pub struct TagMutation;

#[Object]
impl TagMutation {
    /// Defines a tag; keys are unique per entity type (`conflict` otherwise).
    async fn create_tag(
        &self,
        ctx: &Context<'_>,
        key: String,
        entity_type: String,
        description: Option<String>,
        color: Option<String>,
    ) -> GqlResult<TagNode> {
        let request = request(ctx);
        let tag = request
            .state
            .tags
            .create(
                &request.admin.tenant,
                &request.admin.user_id,
                &key,
                &entity_type,
                description.as_deref(),
                color.as_deref(),
            )
            .await
            .map_err(|error| gql_error(error.into()))?;
        record(
            ctx,
            "createTag",
            AuditChange {
                target_type: "Tag",
                target_id: tag.id.clone(),
                before: None,
                after: snapshot(&tag),
            },
        )
        .await;
        by_tag_id(ctx, &tag.id)
            .await?
            .ok_or_else(|| gql_error(ApiError::NotFound(format!("id: no tag {:?}", tag.id))))
    }

    /// Changes a tag's key, description or colour (an empty text clears the latter two).
    /// Renaming a device tag renames it on every device.
    async fn update_tag(
        &self,
        ctx: &Context<'_>,
        id: ID,
        key: Option<String>,
        description: Option<String>,
        color: Option<String>,
    ) -> GqlResult<TagNode> {
        let local = tag_id(&id)?;
        let request = request(ctx);
        let before = request
            .state
            .tags
            .get(&request.admin.tenant, &local)
            .await
            .map_err(|error| gql_error(error.into()))?;
        let after = request
            .state
            .tags
            .update(
                &request.admin.tenant,
                &local,
                TagChange {
                    key,
                    description,
                    color,
                },
            )
            .await
            .map_err(|error| gql_error(error.into()))?;
        if before.as_ref() != Some(&after) {
            record(
                ctx,
                "updateTag",
                AuditChange {
                    target_type: "Tag",
                    target_id: local.clone(),
                    before: before.as_ref().and_then(snapshot),
                    after: snapshot(&after),
                },
            )
            .await;
        }
        by_tag_id(ctx, &local)
            .await?
            .ok_or_else(|| gql_error(ApiError::NotFound(format!("id: no tag {local:?}"))))
    }

    /// Deletes a tag (a device tag comes off every device); false when there was none.
    async fn delete_tag(&self, ctx: &Context<'_>, id: ID) -> GqlResult<bool> {
        let Some(local) = relay::local_id("id", &id, "Tag")? else {
            return Ok(false);
        };
        let request = request(ctx);
        let before = request
            .state
            .tags
            .get(&request.admin.tenant, &local)
            .await
            .map_err(|error| gql_error(error.into()))?;
        let deleted = request
            .state
            .tags
            .delete(&request.admin.tenant, &local)
            .await
            .map_err(|error| gql_error(error.into()))?;
        if deleted {
            record(
                ctx,
                "deleteTag",
                AuditChange {
                    target_type: "Tag",
                    target_id: local,
                    before: before.as_ref().and_then(snapshot),
                    after: None,
                },
            )
            .await;
        }
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_rank_prefixes_first() {
        let keys = ["location", "site", "customer-site", "Site-B", "os"];
        assert_eq!(
            suggest(keys.into_iter(), Some("site"), 10),
            ["Site-B", "site", "customer-site"]
        );
        assert_eq!(
            suggest(keys.into_iter(), None, 2),
            ["Site-B", "customer-site"]
        );
        assert!(suggest(keys.into_iter(), Some("zzz"), 10).is_empty());
    }
}
