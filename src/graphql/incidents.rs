//! Incidents and notifications in GraphQL: `incidents`, `incident`, `acknowledgeIncident`,
//! `resolveIncident`, and the `notificationStream` subscription (the caller's new
//! notifications, as their settings admit them). The same service as REST
//! (`crate::detect::incidents`, `crate::notify`), so both say the same.

use async_graphql::{Context, Enum, Json, Object, SimpleObject, Subscription};
use futures_util::Stream;

use super::audit::{record, snapshot};
use super::{GqlResult, gql_error, request};
use crate::api::iso;
use crate::audit::AuditChange;
use crate::detect::incidents::{Incident, IncidentAlert, TimelineEntry};

#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum IncidentStatus {
    Open,
    Acknowledged,
    Resolved,
}

impl IncidentStatus {
    fn as_str(self) -> &'static str {
        match self {
            IncidentStatus::Open => "OPEN",
            IncidentStatus::Acknowledged => "ACKNOWLEDGED",
            IncidentStatus::Resolved => "RESOLVED",
        }
    }
}

#[derive(SimpleObject, Debug)]
#[graphql(name = "IncidentAlert")]
pub struct AlertObject {
    key: String,
    rule: String,
    summary: String,
    severity: String,
    evidence: Json<serde_json::Value>,
    triggered_at: String,
    resolved_at: Option<String>,
}

impl From<IncidentAlert> for AlertObject {
    fn from(alert: IncidentAlert) -> Self {
        AlertObject {
            key: alert.key,
            rule: alert.rule,
            summary: alert.summary,
            severity: alert.severity,
            evidence: Json(alert.evidence),
            triggered_at: iso(alert.triggered_at),
            resolved_at: alert.resolved_at.map(iso),
        }
    }
}

#[derive(SimpleObject, Debug)]
#[graphql(name = "IncidentTimelineEntry")]
pub struct TimelineObject {
    at: String,
    kind: String,
    summary: String,
    event_type: Option<String>,
    severity: Option<String>,
    device_id: Option<String>,
    by: Option<String>,
}

impl From<TimelineEntry> for TimelineObject {
    fn from(entry: TimelineEntry) -> Self {
        TimelineObject {
            at: iso(entry.at),
            kind: entry.kind,
            summary: entry.summary,
            event_type: entry.event_type,
            severity: entry.severity,
            device_id: entry.device_id,
            by: entry.by,
        }
    }
}

#[derive(SimpleObject, Debug)]
#[graphql(name = "Incident")]
pub struct IncidentObject {
    id: String,
    title: String,
    status: String,
    severity: String,
    device_ids: Vec<String>,
    organization_ids: Vec<String>,
    alerts: Vec<AlertObject>,
    opened_at: String,
    last_activity_at: String,
    acknowledged_at: Option<String>,
    acknowledged_by: Option<String>,
    resolved_at: Option<String>,
    resolved_by: Option<String>,
    resolution_note: Option<String>,
    /// Every entry the timeline has had; the oldest events beyond 200 are not kept.
    timeline_count: u64,
    timeline: Vec<TimelineObject>,
}

impl From<Incident> for IncidentObject {
    fn from(incident: Incident) -> Self {
        IncidentObject {
            id: incident.id,
            title: incident.title,
            status: incident.status,
            severity: incident.severity,
            device_ids: incident.device_ids,
            organization_ids: incident.organization_ids,
            alerts: incident.alerts.into_iter().map(AlertObject::from).collect(),
            opened_at: iso(incident.opened_at),
            last_activity_at: iso(incident.last_activity_at),
            acknowledged_at: incident.acknowledged_at.map(iso),
            acknowledged_by: incident.acknowledged_by,
            resolved_at: incident.resolved_at.map(iso),
            resolved_by: incident.resolved_by,
            resolution_note: incident.resolution_note,
            timeline_count: incident.timeline_count,
            timeline: incident
                .timeline
                .into_iter()
                .map(TimelineObject::from)
                .collect(),
        }
    }
}

#[derive(Default, Debug)]
pub struct IncidentQuery;

#[Object]
impl IncidentQuery {
    /// The tenant's incidents, most recent activity first (at most 200); timelines are read
    /// with `incident`.
    async fn incidents(
        &self,
        ctx: &Context<'_>,
        status: Option<IncidentStatus>,
    ) -> GqlResult<Vec<IncidentObject>> {
        let request = request(ctx);
        let incidents = request
            .state
            .incidents
            .list(&request.admin.tenant, status.map(IncidentStatus::as_str))
            .await
            .map_err(|error| gql_error(error.into()))?;
        Ok(incidents.into_iter().map(IncidentObject::from).collect())
    }

    /// One incident with its timeline; null when the tenant has none of that id.
    async fn incident(&self, ctx: &Context<'_>, id: String) -> GqlResult<Option<IncidentObject>> {
        let request = request(ctx);
        match request
            .state
            .incidents
            .get(&request.admin.tenant, &id)
            .await
        {
            Ok(incident) => Ok(Some(incident.into())),
            Err(crate::error::ApiError::NotFound(_)) => Ok(None),
            Err(error) => Err(gql_error(error)),
        }
    }
}

#[derive(Default, Debug)]
pub struct IncidentMutation;

#[Object]
impl IncidentMutation {
    /// Takes the incident on (again is a no-op); refused once it is resolved.
    async fn acknowledge_incident(
        &self,
        ctx: &Context<'_>,
        id: String,
    ) -> GqlResult<IncidentObject> {
        let request = request(ctx);
        let (before, after) = request
            .state
            .incidents
            .acknowledge(&request.admin.tenant, &id, &request.admin.email)
            .await
            .map_err(gql_error)?;
        audited(ctx, "acknowledgeIncident", &before, &after).await;
        Ok(after.into())
    }

    /// Closes the incident, with an optional note (at most 2000 characters).
    async fn resolve_incident(
        &self,
        ctx: &Context<'_>,
        id: String,
        note: Option<String>,
    ) -> GqlResult<IncidentObject> {
        let note = note
            .map(|note| note.trim().to_owned())
            .filter(|note| !note.is_empty());
        if note
            .as_ref()
            .is_some_and(|note| note.chars().count() > 2000)
        {
            return Err(super::invalid("note: at most 2000 characters"));
        }
        let request = request(ctx);
        let (before, after) = request
            .state
            .incidents
            .resolve(&request.admin.tenant, &id, &request.admin.email, note)
            .await
            .map_err(gql_error)?;
        audited(ctx, "resolveIncident", &before, &after).await;
        Ok(after.into())
    }
}

async fn audited(ctx: &Context<'_>, action: &str, before: &Incident, after: &Incident) {
    if before != after {
        record(
            ctx,
            action,
            AuditChange {
                target_type: "Incident",
                target_id: after.id.clone(),
                before: snapshot(&before.summary()),
                after: snapshot(&after.summary()),
            },
        )
        .await;
    }
}

/// A notification as it arrives (type `Notification`).
#[derive(SimpleObject, Debug, Clone)]
#[graphql(name = "Notification")]
pub struct NotificationObject {
    id: String,
    title: String,
    message: String,
    severity: String,
    category: String,
    link: Option<String>,
    created_at: String,
}

#[derive(Default, Debug)]
pub struct NotificationSubscription;

#[Subscription]
impl NotificationSubscription {
    /// The caller's tenant's new notifications, as the caller's settings admit them (minimum
    /// severity, muted categories; read again when each arrives, so a change applies at once).
    async fn notification_stream(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<impl Stream<Item = NotificationObject> + use<>> {
        let request = request(ctx);
        let notifications = request.state.notifications.clone();
        let tenant = request.admin.tenant.clone();
        let user = request.admin.user_id.clone();
        let receiver = notifications.subscribe();
        Ok(futures_util::stream::unfold(
            (receiver, notifications, tenant, user),
            |(mut receiver, notifications, tenant, user)| async move {
                loop {
                    let notification = match receiver.recv().await {
                        Ok(notification) => notification,
                        // A slow reader skips what it missed; the list still has it.
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                    };
                    let (for_tenant, notification) = &*notification;
                    if *for_tenant != tenant {
                        continue;
                    }
                    let admitted = notifications
                        .settings(&tenant, &user)
                        .await
                        .map(|settings| settings.admits(notification))
                        .unwrap_or(true);
                    if !admitted {
                        continue;
                    }
                    let object = NotificationObject {
                        id: notification.id.clone(),
                        title: notification.title.clone(),
                        message: notification.message.clone(),
                        severity: notification.severity.as_str().to_owned(),
                        category: notification.category.as_str().to_owned(),
                        link: notification.link.clone(),
                        created_at: iso(notification.created_at),
                    };
                    return Some((object, (receiver, notifications, tenant, user)));
                }
            },
        ))
    }
}
