//! Health of the integrated tools: one check (`GET {apiUrl}{healthPath}` with the tool's
//! credential, 10 s at most), used by `GET /tools/{id}/health` on demand and by a monitor that
//! checks every enabled tool on its own interval (`healthCheckSeconds`, default 60).
//!
//! The monitor keeps each tool's latest report in memory (shown by `GET /api/tools` and GraphQL
//! `integratedTools`), and logs a `TOOL_LIFECYCLE` event into the unified log when a tool turns
//! unhealthy (`SYSTEM_ERROR`) and when it recovers (`SYSTEM_MONITORING`), so a tool that is down
//! shows up where technicians look for trouble, once per change rather than once per check.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use openframe_storage::model::TenantId;
use serde::Serialize;

use super::tools::ToolRecord;
use crate::startup::AppState;
use crate::stream::tools::MessageType;

/// One check's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthReport {
    pub healthy: bool,
    /// The tool's HTTP status, when it answered.
    pub upstream_status: Option<u16>,
    pub latency_ms: u64,
    pub message: String,
    /// Unix ms.
    pub checked_at: i64,
}

/// The latest report of every checked tool.
#[derive(Debug, Default)]
pub struct HealthBoard {
    reports: Mutex<HashMap<(TenantId, String), HealthReport>>,
}

impl HealthBoard {
    fn reports(&self) -> std::sync::MutexGuard<'_, HashMap<(TenantId, String), HealthReport>> {
        self.reports
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The latest report about a tool, if it has been checked.
    pub fn report(&self, tenant: &TenantId, tool: &str) -> Option<HealthReport> {
        self.reports()
            .get(&(tenant.clone(), tool.to_owned()))
            .cloned()
    }

    /// Records a report; the previous one, if any.
    fn record(&self, tenant: &TenantId, tool: &str, report: HealthReport) -> Option<HealthReport> {
        self.reports()
            .insert((tenant.clone(), tool.to_owned()), report)
    }

    /// Forgets a removed tool.
    pub fn forget(&self, tenant: &TenantId, tool: &str) {
        self.reports().remove(&(tenant.clone(), tool.to_owned()));
    }
}

/// Checks a tool once. Never fails: what went wrong is the report's message.
pub async fn check(state: &AppState, tenant: &TenantId, tool: &ToolRecord) -> HealthReport {
    let checked_at = state.identity.clock.now_ms();
    let client = match state.gateway.upstreams.client(tool) {
        Ok(client) => client,
        Err(error) => {
            return HealthReport {
                healthy: false,
                upstream_status: None,
                latency_ms: 0,
                message: error.to_string(),
                checked_at,
            };
        }
    };
    let mut request = client
        .get(format!("{}{}", tool.api_url, tool.health_path))
        .timeout(Duration::from_secs(
            state.config.gateway.tool_timeout_seconds.min(10),
        ));
    match state.gateway.tools.credential(tenant, tool) {
        Ok(Some((name, value, _))) => request = request.header(name, value),
        Ok(None) => {}
        Err(error) => {
            tracing::error!(%tenant, tool = %tool.id, %error, "a tool's credential cannot be opened");
            return HealthReport {
                healthy: false,
                upstream_status: None,
                latency_ms: 0,
                message: "the stored credential cannot be opened; register the tool again".into(),
                checked_at,
            };
        }
    }
    let started = Instant::now();
    let outcome = request.send().await;
    let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let (healthy, upstream_status, message) = match outcome {
        Ok(response) => {
            let status = response.status();
            let message = if status.is_success() {
                "the tool answered".to_owned()
            } else {
                format!("the tool answered HTTP {}", status.as_u16())
            };
            (status.is_success(), Some(status.as_u16()), message)
        }
        Err(error) => (
            false,
            None,
            super::proxy::upstream_error(tool, &error).to_string(),
        ),
    };
    HealthReport {
        healthy,
        upstream_status,
        latency_ms,
        message,
        checked_at,
    }
}

/// Logs a tool event (`added`, `updated`, `deleted`, `health_down`, `health_up`) into the
/// unified log. A failure is logged, never returned: the change itself has been made.
pub async fn log_tool_event(
    state: &AppState,
    tenant: &TenantId,
    tool: &ToolRecord,
    event: &str,
    message: Option<&str>,
    user: Option<&str>,
) {
    // Two changes in the same millisecond are two events: each gets its own id.
    let event_id = crate::identity::crypto::random_uuid().unwrap_or_default();
    let body = serde_json::json!({"after": {
        "eventId": event_id,
        "toolId": tool.id,
        "toolType": tool.tool_type,
        "event": event,
        "message": message,
        "user": user,
        "eventTimestamp": state.identity.clock.now_ms(),
    }});
    if let Err(error) = state
        .stream
        .ingest(
            tenant,
            MessageType::ToolLifecycle,
            body.to_string().as_bytes(),
            false,
        )
        .await
    {
        tracing::warn!(%tenant, tool = %tool.id, event, %error, "a tool event could not be logged");
    }
}

/// One pass of the monitor: checks every enabled tool whose interval has passed, records the
/// reports, and logs changes. Checks run one after another (each at most 10 s).
pub async fn sweep(state: &AppState) {
    let tenants = match state.storage.tenants.tenants().await {
        Ok(tenants) => tenants,
        Err(error) => {
            tracing::warn!(%error, "tool health: cannot list tenants");
            return;
        }
    };
    let now = state.identity.clock.now_ms();
    for tenant in tenants {
        let tenant = tenant.id;
        let tools = match state.gateway.tools.list(&tenant).await {
            Ok(tools) => tools,
            Err(error) => {
                tracing::warn!(%tenant, %error, "tool health: cannot list tools");
                continue;
            }
        };
        for tool in tools {
            if !tool.enabled || tool.health_check_seconds == 0 {
                continue;
            }
            let interval_ms =
                i64::try_from(tool.health_check_seconds.saturating_mul(1000)).unwrap_or(i64::MAX);
            let due = state
                .gateway
                .health
                .report(&tenant, &tool.id)
                .is_none_or(|last| now.saturating_sub(last.checked_at) >= interval_ms);
            if !due {
                continue;
            }
            let report = check(state, &tenant, &tool).await;
            let previous = state
                .gateway
                .health
                .record(&tenant, &tool.id, report.clone());
            let was_healthy = previous.map(|previous| previous.healthy);
            match (was_healthy, report.healthy) {
                (Some(true) | None, false) => {
                    tracing::warn!(%tenant, tool = %tool.id, message = %report.message, "a tool is unhealthy");
                    log_tool_event(
                        state,
                        &tenant,
                        &tool,
                        "health_down",
                        Some(&report.message),
                        None,
                    )
                    .await;
                }
                (Some(false), true) => {
                    tracing::info!(%tenant, tool = %tool.id, "a tool is healthy again");
                    log_tool_event(state, &tenant, &tool, "health_up", None, None).await;
                }
                _ => {}
            }
        }
    }
}

/// Runs [`sweep`] every `every` until `stop`.
pub fn spawn(
    state: AppState,
    every: Duration,
    stop: tokio_util::sync::CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                _ = tick.tick() => sweep(&state).await,
            }
        }
    })
}
