//! Per-tenant detection thresholds: each tenant's administrators override any of `[detection]`'s
//! thresholds for their tenant (`PUT /api/detection/settings`); what they leave alone follows
//! the config. The overrides are one document per tenant (`detection_settings/thresholds`),
//! keyed like the config file, and are checked exactly as the config is, so a tenant cannot
//! store what the operator could not.

use std::sync::Arc;

use openframe_storage::{DocumentStore, TenantId};
use serde_json::{Map, Value, json};

use super::Thresholds;
use crate::catalog::{Catalog, CatalogError};
use crate::config::DetectionSection;
use crate::error::ApiError;

const DOCUMENT: &str = "thresholds";

/// The keys a tenant may override, and whether each takes a fraction.
pub const KEYS: [(&str, bool); 12] = [
    ("login_failed_count", false),
    ("login_failed_window_minutes", false),
    ("offline_devices", false),
    ("offline_window_minutes", false),
    ("first_seen_learning_hours", false),
    ("first_seen_fleet_share", true),
    ("spike_min_count", false),
    ("policy_violation_min_count", false),
    ("spike_z", true),
    ("baseline_hours", false),
    ("quiet_minutes", false),
    ("correlation_window_minutes", false),
];

#[derive(Debug)]
pub struct DetectionSettings {
    base: DetectionSection,
    overrides: Catalog<Map<String, Value>>,
}

impl DetectionSettings {
    pub fn new(base: DetectionSection, documents: Arc<dyn DocumentStore>) -> anyhow::Result<Self> {
        Ok(DetectionSettings {
            base,
            overrides: Catalog::new(documents, "detection_settings")?,
        })
    }

    /// The tenant's overrides (only the keys it set).
    pub async fn overrides(&self, tenant: &TenantId) -> Result<Map<String, Value>, CatalogError> {
        Ok(self
            .overrides
            .read(tenant, |entries| {
                entries
                    .get(DOCUMENT)
                    .map(|entry| entry.value.clone())
                    .unwrap_or_default()
            })
            .await?)
    }

    /// The tenant's thresholds. Stored overrides were checked when set; should one no longer
    /// pass (a newer build's stricter range), the config's thresholds apply, with a warning.
    pub async fn thresholds(&self, tenant: &TenantId) -> Result<Thresholds, CatalogError> {
        let overrides = self.overrides(tenant).await?;
        match self.merged(&overrides) {
            Ok((_, thresholds)) => Ok(thresholds),
            Err(message) => {
                tracing::warn!(%tenant, %message, "stored detection overrides are not valid; the config's thresholds apply");
                self.base
                    .thresholds()
                    .map_err(|message| CatalogError::Unexpected(anyhow::anyhow!(message)))
            }
        }
    }

    /// The config's section with `overrides` applied, checked; the error names the key.
    fn merged(
        &self,
        overrides: &Map<String, Value>,
    ) -> Result<(Map<String, Value>, Thresholds), String> {
        let mut merged = self.view(&self.base);
        for (key, value) in overrides {
            let Some((_, fraction)) = KEYS.iter().find(|(known, _)| known == key) else {
                let known: Vec<&str> = KEYS.iter().map(|(key, _)| *key).collect();
                return Err(format!(
                    "{key}: not a threshold; one of {}",
                    known.join(", ")
                ));
            };
            let number = if *fraction {
                value.as_f64().map(Value::from)
            } else {
                value.as_u64().map(Value::from)
            };
            let Some(number) = number else {
                let kind = if *fraction {
                    "a number"
                } else {
                    "a whole number"
                };
                return Err(format!("{key}: {value} must be {kind}"));
            };
            merged.insert(key.clone(), number);
        }
        let mut section = serde_json::to_value(&self.base)
            .ok()
            .and_then(|value| value.as_object().cloned())
            .unwrap_or_default();
        section.extend(merged.clone());
        let section: DetectionSection = serde_json::from_value(Value::Object(section))
            .map_err(|error| format!("the thresholds cannot be read: {error}"))?;
        let thresholds = section.thresholds()?;
        Ok((merged, thresholds))
    }

    /// A section's thresholds as the API shows them (the keys of [`KEYS`]).
    fn view(&self, section: &DetectionSection) -> Map<String, Value> {
        let all = serde_json::to_value(section)
            .ok()
            .and_then(|value| value.as_object().cloned())
            .unwrap_or_default();
        all.into_iter()
            .filter(|(key, _)| KEYS.iter().any(|(known, _)| known == key))
            .collect()
    }

    /// `{effective, overrides, defaults}` for the API.
    pub async fn describe(&self, tenant: &TenantId) -> Result<Value, ApiError> {
        let overrides = self.overrides(tenant).await?;
        let effective = match self.merged(&overrides) {
            Ok((effective, _)) => effective,
            Err(_) => self.view(&self.base),
        };
        Ok(json!({
            "effective": effective,
            "overrides": overrides,
            "defaults": self.view(&self.base),
        }))
    }

    /// Replaces the tenant's overrides (an empty map returns it to the config's thresholds).
    pub async fn set(
        &self,
        tenant: &TenantId,
        overrides: Map<String, Value>,
    ) -> Result<(Value, Value), ApiError> {
        let before = self.describe(tenant).await?;
        self.merged(&overrides)
            .map_err(|message| ApiError::InvalidInput(format!("overrides.{message}")))?;
        let mut writer = self.overrides.write(tenant).await?;
        if overrides.is_empty() {
            writer.remove(DOCUMENT).await?;
        } else {
            writer.put(DOCUMENT, overrides).await?;
        }
        drop(writer);
        Ok((before, self.describe(tenant).await?))
    }
}
