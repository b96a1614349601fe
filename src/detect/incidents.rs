//! Incidents: alerts and the events around them, grouped so a technician handles one thing
//! instead of ten. The detection runner hands each pass's findings and log rows to
//! [`Incidents::correlate`]:
//!
//! - A triggered alert joins the incident that is not resolved, whose last activity is within
//!   the tenant's correlation window, and that shares a device or a customer with it (an alert
//!   about no device or customer joins one about none). Otherwise it opens a new incident, and a
//!   notification (category `INCIDENT`) goes out.
//! - A resolved alert is marked so on its incident's timeline; the incident stays until a
//!   technician resolves it.
//! - Other log entries of an incident's devices (any severity), or of its customers (warnings
//!   and worse), within the window join its timeline, so the evidence is in one place.
//! - Technicians acknowledge and resolve incidents (REST, GraphQL, the console), with the
//!   change on the timeline and in the audit trail.
//!
//! Correlating again what was correlated (the runner repeats a pass after a crash) changes
//! nothing: an alert is known by its key and trigger time, a log entry by its id, and a new
//! incident's id is made from the alert that opened it.

use std::collections::HashSet;
use std::sync::Arc;

use openframe_storage::analytics::LogRow;
use openframe_storage::{Clock, DocumentStore, TenantId};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Alert, Finding};
use crate::catalog::{Catalog, CatalogError};
use crate::error::ApiError;
use crate::notify::{Category, NewNotification, Notifications, Severity};

/// The most incidents kept per tenant; resolved ones go first, oldest first.
pub const MAX_INCIDENTS: usize = 1000;
/// The most timeline entries kept per incident; the oldest log entries go first.
pub const MAX_TIMELINE: usize = 200;
/// The most incidents one listing returns.
pub const MAX_LISTED: usize = 200;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IncidentAlert {
    pub key: String,
    pub rule: String,
    pub summary: String,
    pub severity: String,
    pub evidence: Value,
    pub triggered_at: i64,
    pub resolved_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TimelineEntry {
    pub at: i64,
    /// `ALERT_TRIGGERED`, `ALERT_RESOLVED`, `EVENT`, `ACKNOWLEDGED`, `RESOLVED`.
    pub kind: String,
    pub summary: String,
    pub event_type: Option<String>,
    pub severity: Option<String>,
    pub device_id: Option<String>,
    /// The technician, for `ACKNOWLEDGED` and `RESOLVED`.
    pub by: Option<String>,
    /// The log entry, for `EVENT`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_event_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Incident {
    pub id: String,
    pub title: String,
    /// `OPEN`, `ACKNOWLEDGED`, `RESOLVED`.
    pub status: String,
    pub severity: String,
    pub device_ids: Vec<String>,
    pub organization_ids: Vec<String>,
    pub alerts: Vec<IncidentAlert>,
    pub opened_at: i64,
    pub last_activity_at: i64,
    pub acknowledged_at: Option<i64>,
    pub acknowledged_by: Option<String>,
    pub resolved_at: Option<i64>,
    pub resolved_by: Option<String>,
    pub resolution_note: Option<String>,
    /// Every entry the timeline has had, including those dropped past [`MAX_TIMELINE`].
    pub timeline_count: u64,
    pub timeline: Vec<TimelineEntry>,
}

impl Incident {
    /// Without its timeline, for listings.
    pub fn summary(&self) -> Incident {
        Incident {
            timeline: Vec::new(),
            ..self.clone()
        }
    }

    fn push(&mut self, entry: TimelineEntry) {
        self.last_activity_at = self.last_activity_at.max(entry.at);
        self.timeline_count += 1;
        let at = self.timeline.partition_point(|held| held.at <= entry.at);
        self.timeline.insert(at, entry);
        if self.timeline.len() > MAX_TIMELINE {
            let drop = self
                .timeline
                .iter()
                .position(|held| held.kind == "EVENT")
                .unwrap_or(0);
            self.timeline.remove(drop);
        }
    }

    fn related(&self, devices: &[String], organization: Option<&str>) -> bool {
        if devices.is_empty() && organization.is_none() {
            return self.device_ids.is_empty() && self.organization_ids.is_empty();
        }
        devices
            .iter()
            .any(|device| self.device_ids.contains(device))
            || organization.is_some_and(|org| self.organization_ids.iter().any(|held| held == org))
    }
}

fn rank(severity: &str) -> usize {
    Severity::NAMES
        .iter()
        .position(|name| *name == severity)
        .unwrap_or(0)
}

/// The devices an alert is about: its own, and those its evidence lists (an offline wave).
fn devices_of(alert: &Alert) -> Vec<String> {
    let mut devices: Vec<String> = alert.device.iter().cloned().collect();
    if let Some(listed) = alert.evidence.get("devices").and_then(Value::as_array) {
        for device in listed.iter().filter_map(Value::as_str) {
            if !devices.iter().any(|held| held == device) {
                devices.push(device.to_owned());
            }
        }
    }
    devices
}

fn timeline_alert(alert: &Alert, kind: &str, at: i64) -> TimelineEntry {
    TimelineEntry {
        at,
        kind: kind.to_owned(),
        summary: alert.summary.clone(),
        event_type: Some(kind.to_owned()),
        severity: Some(alert.severity.to_owned()),
        device_id: alert.device.clone(),
        by: None,
        tool_event_id: None,
    }
}

/// Every tenant's incidents.
#[derive(Debug)]
pub struct Incidents {
    catalog: Catalog<Incident>,
    notifications: Arc<Notifications>,
    clock: Arc<dyn Clock>,
}

impl Incidents {
    pub fn new(
        documents: Arc<dyn DocumentStore>,
        notifications: Arc<Notifications>,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Incidents> {
        Ok(Incidents {
            catalog: Catalog::new(documents, "incidents")?,
            notifications,
            clock,
        })
    }

    /// Groups one detection pass's findings, and the log rows it read, into incidents.
    pub async fn correlate(
        &self,
        tenant: &TenantId,
        findings: &[Finding],
        rows: &[LogRow],
        window_ms: i64,
    ) -> Result<(), CatalogError> {
        if findings.is_empty() && rows.is_empty() {
            return Ok(());
        }
        let mut opened = Vec::new();
        {
            let mut writer = self.catalog.write(tenant).await?;
            // Incidents this pass may touch, as they are now (the lock is held throughout, so
            // a technician's change waits for the pass to be stored, and then applies to it).
            let mut live: Vec<Incident> = writer
                .entries()
                .values()
                .map(|entry| &entry.value)
                .filter(|incident| incident.status != "RESOLVED")
                .cloned()
                .collect();
            let mut changed = HashSet::new();
            for finding in findings {
                match finding {
                    Finding::Triggered(alert) => {
                        let known =
                            writer.entries().values().any(|entry| {
                                entry.value.alerts.iter().any(|held| {
                                    held.key == alert.key && held.triggered_at == alert.at
                                })
                            });
                        if known {
                            continue;
                        }
                        if let Some(incident) = join(&mut live, alert, window_ms) {
                            changed.insert(incident.id.clone());
                        } else {
                            let incident = open(alert);
                            changed.insert(incident.id.clone());
                            opened.push(incident.clone());
                            live.push(incident);
                        }
                    }
                    Finding::Resolved { alert, at } => {
                        for incident in &mut live {
                            let held = incident.alerts.iter_mut().find(|held| {
                                held.key == alert.key && held.triggered_at == alert.at
                            });
                            if let Some(held) = held
                                && held.resolved_at.is_none()
                            {
                                held.resolved_at = Some(*at);
                                incident.push(timeline_alert(alert, "ALERT_RESOLVED", *at));
                                changed.insert(incident.id.clone());
                            }
                        }
                    }
                }
            }
            for row in rows {
                if row.event_type.starts_with("ALERT_") || row.event_type == "DEVICE_HEARTBEAT" {
                    continue;
                }
                let serious = rank(&row.severity) >= rank("WARNING");
                for incident in &mut live {
                    let on_device = row
                        .device_id
                        .as_ref()
                        .is_some_and(|device| incident.device_ids.contains(device));
                    let on_customer = serious
                        && row
                            .organization_id
                            .as_ref()
                            .is_some_and(|org| incident.organization_ids.contains(org));
                    let near = row.event_timestamp >= incident.opened_at - window_ms
                        && row.event_timestamp <= incident.last_activity_at + window_ms;
                    if !(on_device || on_customer) || !near {
                        continue;
                    }
                    let known = incident.timeline.iter().any(|entry| {
                        entry.tool_event_id.as_deref() == Some(row.tool_event_id.as_str())
                    });
                    if !known {
                        incident.push(TimelineEntry {
                            at: row.event_timestamp,
                            kind: "EVENT".to_owned(),
                            summary: row.summary.clone(),
                            event_type: Some(row.event_type.clone()),
                            severity: Some(row.severity.clone()),
                            device_id: row.device_id.clone(),
                            by: None,
                            tool_event_id: Some(row.tool_event_id.clone()),
                        });
                        changed.insert(incident.id.clone());
                    }
                }
            }
            for incident in live {
                if changed.contains(&incident.id) {
                    let id = incident.id.clone();
                    writer.put(&id, incident).await?;
                }
            }
            self.trim(&mut writer).await?;
        }
        for incident in opened {
            self.notifications
                .notify(
                    tenant,
                    NewNotification {
                        title: format!("New incident: {}", incident.title),
                        message: format!(
                            "{} alert(s) on {} device(s). Open the incident to acknowledge it.",
                            incident.alerts.len(),
                            incident.device_ids.len()
                        ),
                        severity: Severity::parse(&incident.severity).unwrap_or(Severity::Warning),
                        category: Category::Incident,
                        link: Some(format!("/incidents?id={}", incident.id)),
                    },
                )
                .await;
        }
        Ok(())
    }

    /// Drops the oldest resolved incidents past [`MAX_INCIDENTS`].
    async fn trim(
        &self,
        writer: &mut crate::catalog::Writer<'_, Incident>,
    ) -> Result<(), CatalogError> {
        while writer.entries().len() > MAX_INCIDENTS {
            let oldest = writer
                .entries()
                .values()
                .map(|entry| &entry.value)
                .filter(|incident| incident.status == "RESOLVED")
                .min_by_key(|incident| incident.last_activity_at)
                .map(|incident| incident.id.clone());
            let Some(oldest) = oldest else {
                return Ok(());
            };
            writer.remove(&oldest).await?;
        }
        Ok(())
    }

    /// The tenant's incidents, most recent activity first, of one status or all.
    pub async fn list(
        &self,
        tenant: &TenantId,
        status: Option<&str>,
    ) -> Result<Vec<Incident>, CatalogError> {
        let mut incidents = self
            .catalog
            .read(tenant, |entries| {
                entries
                    .values()
                    .map(|entry| &entry.value)
                    .filter(|incident| status.is_none_or(|status| incident.status == status))
                    .map(Incident::summary)
                    .collect::<Vec<_>>()
            })
            .await?;
        incidents.sort_by(|a, b| {
            b.last_activity_at
                .cmp(&a.last_activity_at)
                .then(a.id.cmp(&b.id))
        });
        incidents.truncate(MAX_LISTED);
        Ok(incidents)
    }

    pub async fn get(&self, tenant: &TenantId, id: &str) -> Result<Incident, ApiError> {
        self.catalog
            .read(tenant, |entries| {
                entries.get(id).map(|entry| entry.value.clone())
            })
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("id: no incident {id:?}")))
    }

    /// A technician takes the incident on; again is a no-op. Returns it before and after.
    pub async fn acknowledge(
        &self,
        tenant: &TenantId,
        id: &str,
        by: &str,
    ) -> Result<(Incident, Incident), ApiError> {
        self.change(tenant, id, |incident, now| match incident.status.as_str() {
            "RESOLVED" => Err(ApiError::Conflict(format!(
                "the incident was resolved by {}; it cannot be acknowledged",
                incident.resolved_by.as_deref().unwrap_or("someone")
            ))),
            "ACKNOWLEDGED" => Ok(false),
            _ => {
                incident.status = "ACKNOWLEDGED".to_owned();
                incident.acknowledged_at = Some(now);
                incident.acknowledged_by = Some(by.to_owned());
                incident.push(TimelineEntry {
                    at: now,
                    kind: "ACKNOWLEDGED".to_owned(),
                    summary: format!("Acknowledged by {by}"),
                    event_type: None,
                    severity: None,
                    device_id: None,
                    by: Some(by.to_owned()),
                    tool_event_id: None,
                });
                Ok(true)
            }
        })
        .await
    }

    /// A technician closes the incident, with an optional note.
    pub async fn resolve(
        &self,
        tenant: &TenantId,
        id: &str,
        by: &str,
        note: Option<String>,
    ) -> Result<(Incident, Incident), ApiError> {
        self.change(tenant, id, |incident, now| {
            if incident.status == "RESOLVED" {
                return Err(ApiError::Conflict(format!(
                    "the incident was already resolved by {}",
                    incident.resolved_by.as_deref().unwrap_or("someone")
                )));
            }
            incident.status = "RESOLVED".to_owned();
            incident.resolved_at = Some(now);
            incident.resolved_by = Some(by.to_owned());
            incident.resolution_note = note;
            incident.push(TimelineEntry {
                at: now,
                kind: "RESOLVED".to_owned(),
                summary: match &incident.resolution_note {
                    Some(note) => format!("Resolved by {by}: {note}"),
                    None => format!("Resolved by {by}"),
                },
                event_type: None,
                severity: None,
                device_id: None,
                by: Some(by.to_owned()),
                tool_event_id: None,
            });
            Ok(true)
        })
        .await
    }

    /// Applies `change` under the catalog's lock; it returns whether anything changed.
    async fn change(
        &self,
        tenant: &TenantId,
        id: &str,
        change: impl FnOnce(&mut Incident, i64) -> Result<bool, ApiError>,
    ) -> Result<(Incident, Incident), ApiError> {
        let mut writer = self.catalog.write(tenant).await?;
        let before = writer
            .entries()
            .get(id)
            .map(|entry| entry.value.clone())
            .ok_or_else(|| ApiError::NotFound(format!("id: no incident {id:?}")))?;
        let mut after = before.clone();
        if change(&mut after, self.clock.now_ms())? {
            writer.put(id, after.clone()).await?;
        }
        Ok((before, after))
    }
}

/// Adds `alert` to the most recently active related incident within the window; `None` when
/// there is none. An alert already held (a repeated pass) changes nothing.
fn join<'a>(live: &'a mut [Incident], alert: &Alert, window_ms: i64) -> Option<&'a Incident> {
    let devices = devices_of(alert);
    let organization = alert.organization.as_deref();
    let index = live
        .iter()
        .enumerate()
        .filter(|(_, incident)| {
            incident.last_activity_at >= alert.at - window_ms
                && incident.related(&devices, organization)
        })
        .max_by_key(|(_, incident)| incident.last_activity_at)
        .map(|(index, _)| index)?;
    let incident = live.get_mut(index)?;
    let held = incident
        .alerts
        .iter()
        .any(|held| held.key == alert.key && held.triggered_at == alert.at);
    if !held {
        for device in devices {
            if !incident.device_ids.contains(&device) {
                incident.device_ids.push(device);
            }
        }
        if let Some(org) = organization
            && !incident.organization_ids.iter().any(|held| held == org)
        {
            incident.organization_ids.push(org.to_owned());
        }
        if rank(alert.severity) > rank(&incident.severity) {
            incident.severity = alert.severity.to_owned();
        }
        incident.alerts.push(incident_alert(alert));
        incident.push(timeline_alert(alert, "ALERT_TRIGGERED", alert.at));
    }
    Some(incident)
}

fn incident_alert(alert: &Alert) -> IncidentAlert {
    IncidentAlert {
        key: alert.key.clone(),
        rule: alert.rule.to_owned(),
        summary: alert.summary.clone(),
        severity: alert.severity.to_owned(),
        evidence: alert.evidence.clone(),
        triggered_at: alert.at,
        resolved_at: None,
    }
}

/// A new incident, opened by `alert`; its id is made from the alert, so opening it again is
/// the same incident.
fn open(alert: &Alert) -> Incident {
    // Stable across runs and builds: FNV-1a over the key and the trigger time.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in alert.key.bytes().chain(alert.at.to_be_bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    let mut incident = Incident {
        id: format!("inc-{:013}-{hash:016x}", alert.at.max(0)),
        title: alert.summary.clone(),
        status: "OPEN".to_owned(),
        severity: alert.severity.to_owned(),
        device_ids: devices_of(alert),
        organization_ids: alert.organization.iter().cloned().collect(),
        alerts: vec![incident_alert(alert)],
        opened_at: alert.at,
        last_activity_at: alert.at,
        acknowledged_at: None,
        acknowledged_by: None,
        resolved_at: None,
        resolved_by: None,
        resolution_note: None,
        timeline_count: 0,
        timeline: Vec::new(),
    };
    incident.push(timeline_alert(alert, "ALERT_TRIGGERED", alert.at));
    incident
}
