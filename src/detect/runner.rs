//! Runs one [`Detector`] per tenant over the tenant's unified log (`unified.events`, the topic the
//! live log tails), under the consumer group `detection`, every `detection.interval_seconds`.
//! Findings go back into the pipeline as `DETECTION_ALERT` events, so an alert is a log entry
//! (`ALERT_TRIGGERED`, `ALERT_RESOLVED`) like any tool's: searchable, live, sent to webhooks.
//!
//! Alerts are emitted before the offset is committed: a crash in between emits them again,
//! under the same ids, which the pipeline keeps once. At start a detector replays up to
//! [`WARM_UP`] earlier entries without emitting, so its windows and histories are not empty; on
//! a tenant's very first pass it starts at the end of the log (no alerts about the past).
//!
//! Each pass also hands its findings and the log rows it read to [`Incidents::correlate`], and
//! picks up the tenant's own thresholds ([`DetectionSettings`]) as they are changed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use openframe_storage::model::{GroupId, Offset, Topic};
use openframe_storage::{Clock, Storage, TenantId};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::incidents::Incidents;
use super::settings::DetectionSettings;
use super::{Detector, Finding, Observation};
use crate::stream::pipeline::LogEntry;
use crate::stream::tools::MessageType;
use crate::stream::{Stream, UNIFIED_TOPIC};
use openframe_storage::analytics::LogRow;

const GROUP: &str = "detection";
/// Entries read per call.
const BATCH: usize = 1000;
/// Earlier entries replayed (without alerting) when a detector starts.
pub const WARM_UP: u64 = 200_000;
/// The most log rows one pass hands to correlation (the newest are kept).
const MAX_RELATED: usize = 10_000;

#[derive(Debug)]
pub struct Runner {
    storage: Storage,
    stream: Arc<Stream>,
    clock: Arc<dyn Clock>,
    settings: Arc<DetectionSettings>,
    incidents: Arc<Incidents>,
    interval: Duration,
}

impl Runner {
    pub fn new(
        storage: Storage,
        stream: Arc<Stream>,
        clock: Arc<dyn Clock>,
        settings: Arc<DetectionSettings>,
        incidents: Arc<Incidents>,
        interval: Duration,
    ) -> Runner {
        Runner {
            storage,
            stream,
            clock,
            settings,
            incidents,
            interval,
        }
    }

    pub fn spawn(self, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut detectors: HashMap<TenantId, (Detector, Offset)> = HashMap::new();
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(self.interval) => {}
                }
                if let Err(error) = self.pass(&mut detectors).await {
                    tracing::warn!(
                        error = format!("{error:#}"),
                        "anomaly detection pass failed; retrying"
                    );
                }
            }
        })
    }

    /// Reads every tenant's new entries, and emits what they (and the time) show.
    pub async fn pass(
        &self,
        detectors: &mut HashMap<TenantId, (Detector, Offset)>,
    ) -> anyhow::Result<()> {
        let topic = Topic::parse(UNIFIED_TOPIC)?;
        let group = GroupId::parse(GROUP)?;
        let events = &self.storage.events;
        for tenant in events.tenants_of(&topic).await? {
            if !detectors.contains_key(&tenant) {
                let started = self.start(&tenant, &topic, &group).await?;
                detectors.insert(tenant.clone(), started);
            }
            let Some((detector, next)) = detectors.get_mut(&tenant) else {
                continue;
            };
            let thresholds = self.settings.thresholds(&tenant).await?;
            if *detector.thresholds() != thresholds {
                tracing::info!(%tenant, "the tenant's detection thresholds changed");
                detector.set_thresholds(thresholds.clone());
            }
            let mut findings = Vec::new();
            let mut related = std::collections::VecDeque::new();
            let mut position = *next;
            loop {
                let records = events.read(&tenant, &topic, position, BATCH).await?;
                let Some(last) = records.last() else {
                    break;
                };
                position = last.offset.next();
                for record in &records {
                    let (row, found) = observe(detector, &record.record.value);
                    findings.extend(found);
                    if let Some(row) =
                        row.filter(|row| row.device_id.is_some() || row.organization_id.is_some())
                    {
                        if related.len() == MAX_RELATED {
                            related.pop_front();
                        }
                        related.push_back(row);
                    }
                }
                if records.len() < BATCH {
                    break;
                }
            }
            findings.extend(detector.tick(self.clock.now_ms()));
            if !findings.is_empty() {
                self.emit(&tenant, &findings).await?;
            }
            // Before the offset moves on, like the alerts: a repeated pass changes nothing.
            self.incidents
                .correlate(
                    &tenant,
                    &findings,
                    related.make_contiguous(),
                    thresholds.correlation_window_ms,
                )
                .await?;
            if position != *next {
                events
                    .commit_offset(&tenant, &topic, &group, position)
                    .await?;
                *next = position;
            }
        }
        Ok(())
    }

    /// A tenant's detector, warmed up on the entries before where it goes on.
    async fn start(
        &self,
        tenant: &TenantId,
        topic: &Topic,
        group: &GroupId,
    ) -> anyhow::Result<(Detector, Offset)> {
        let events = &self.storage.events;
        let bounds = events.bounds(tenant, topic).await?;
        let committed = events.committed_offset(tenant, topic, group).await?;
        let resume = committed.unwrap_or(bounds.end);
        let mut detector = Detector::new(self.settings.thresholds(tenant).await?);
        let mut position = Offset(resume.0.saturating_sub(WARM_UP).max(bounds.start.0));
        while position < resume {
            let records = events.read(tenant, topic, position, BATCH).await?;
            let Some(last) = records.last() else {
                break;
            };
            for record in records.iter().filter(|record| record.offset < resume) {
                observe(&mut detector, &record.record.value);
            }
            position = last.offset.next();
        }
        if committed.is_none() {
            // Never run for this tenant: what the past shows was never announced, so it is not
            // resolved later either. From here on, every entry is looked at, restarts or not.
            detector.forget_open();
            events.commit_offset(tenant, topic, group, resume).await?;
        }
        tracing::info!(%tenant, from = resume.0, "anomaly detection started");
        Ok((detector, resume))
    }

    async fn emit(&self, tenant: &TenantId, findings: &[Finding]) -> anyhow::Result<()> {
        let mut body = String::new();
        for finding in findings {
            let (alert, transition, at) = match finding {
                Finding::Triggered(alert) => (alert, "triggered", alert.at),
                Finding::Resolved { alert, at } => (alert, "resolved", *at),
            };
            let event = json!({"after": {
                "key": alert.key,
                "rule": alert.rule,
                "transition": transition,
                "summary": alert.summary,
                "severity": alert.severity,
                "evidence": alert.evidence,
                "deviceId": alert.device,
                "triggeredAt": alert.at,
                "eventTimestamp": at,
            }});
            body.push_str(&event.to_string());
            body.push('\n');
            tracing::info!(%tenant, key = %alert.key, transition, "anomaly detection");
        }
        let report = self
            .stream
            .ingest(tenant, MessageType::DetectionAlert, body.as_bytes(), true)
            .await
            .map_err(|error| anyhow::anyhow!("writing alerts: {error}"))?;
        if !report.rejected.is_empty() {
            anyhow::bail!("the pipeline refused alerts: {:?}", report.rejected);
        }
        Ok(())
    }
}

/// Feeds one unified log record to the detector; the row, and what it found.
fn observe(detector: &mut Detector, value: &[u8]) -> (Option<LogRow>, Vec<Finding>) {
    let Some(row) = serde_json::from_slice(value)
        .ok()
        .and_then(|value| LogEntry::live_row(&value))
    else {
        return (None, Vec::new());
    };
    let found = detector.observe(Observation {
        at: row.event_timestamp,
        event_type: &row.event_type,
        device: row.device_id.as_deref(),
        user: row.user_id.as_deref(),
        organization: row.organization_id.as_deref(),
    });
    (Some(row), found)
}
