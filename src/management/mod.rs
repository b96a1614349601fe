//! Management (OpenFrame's client and management services): what runs beside the request
//! handlers to keep agents and the appliance's moving parts alive.
//!
//! Reading order: [`nats`] (the supervised `nats-server`), [`agents`] (registration and agent
//! credentials), [`http`] (the `/clients` routes), [`nats_rules`] and [`nats_proxy`] (what a
//! machine may do on NATS, enforced in `/ws/nats`), [`presence`] (ONLINE/OFFLINE), and [`run`]
//! here: the JetStream streams and the subjects agents report on.

pub mod agents;
pub mod fleet;
pub mod http;
pub mod nats;
pub mod nats_proxy;
pub mod nats_rules;
pub mod presence;
pub mod rmm;
pub mod schedules;
pub mod tool_agents;

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use futures_util::StreamExt;
use openframe_storage::TenantId;
use openframe_storage::model::{Collection, DocumentId};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::inventory::{Inventory, ToolConnection};

/// The agent side of the appliance, shared by the handlers.
#[derive(Debug)]
pub struct Management {
    pub agents: Arc<agents::Agents>,
    pub presence: Arc<presence::Presence>,
    pub sessions: Arc<nats_proxy::Sessions>,
    /// Whether NATS is on at all (`nats.mode` is not `off`).
    pub nats_enabled: bool,
    /// The `/ws/nats` hub's connection to NATS, once made.
    pub hub: std::sync::OnceLock<async_nats::Client>,
    /// The appliance's own connection (dispatching scripts and commands), once made.
    pub client: std::sync::OnceLock<async_nats::Client>,
    /// Scripts, runs and their executions.
    pub rmm: Arc<rmm::Rmm>,
    /// Script schedules and their runs.
    pub schedules: Arc<schedules::Schedules>,
    /// Tool agent definitions and the installs pushed to machines.
    pub tool_agents: Arc<tool_agents::ToolAgents>,
    /// Fleet's host ids for the osquery UUIDs agents report.
    pub fleet: fleet::FleetHosts,
    pub clock: Arc<dyn openframe_storage::Clock>,
}

/// OpenFrame's JetStream streams (`NatsStreamConfigurationInitializer`), with their subjects.
pub const STREAMS: [(&str, &[&str]); 8] = [
    (
        "TOOL_INSTALLATION",
        &["machine.*.tool-installation", "machine.*.tool-uninstall"],
    ),
    ("CLIENT_UPDATE", &["machine.*.client-update"]),
    ("CLIENT_UNINSTALL", &["machine.*.client-uninstall"]),
    ("TOOL_UPDATE", &["machine.*.tool.*.update"]),
    ("TOOL_CONNECTIONS", &["machine.*.tool-connection"]),
    (
        "INSTALLED_AGENTS",
        &["machine.*.installed-agent", "user.*.installed-agent"],
    ),
    ("MACHINE_HOSTNAME", &["machine.*.hostname"]),
    // Beyond OpenFrame: the agent's inventory reports.
    ("MACHINE_INVENTORY", &["machine.*.inventory"]),
];

/// The agents' reports this appliance consumes: stream, durable consumer (names may not
/// contain dots, so not OpenFrame's `machine.tool-connection.delivery`).
const REPORTS: [(&str, &str); 4] = [
    ("TOOL_CONNECTIONS", "openframe-tool-connections"),
    ("INSTALLED_AGENTS", "openframe-installed-agents"),
    ("MACHINE_HOSTNAME", "openframe-machine-hostname"),
    ("MACHINE_INVENTORY", "openframe-machine-inventory"),
];

/// Runs until `stop`: provisions the streams, then follows heartbeats and reports, starting
/// again with backoff when NATS goes away.
pub async fn run(
    management: Arc<Management>,
    inventory: Arc<Inventory>,
    documents: Arc<dyn openframe_storage::DocumentStore>,
    client: async_nats::Client,
    stop: CancellationToken,
) {
    let _ = management.client.set(client.clone());
    let mut failures: u32 = 0;
    while !stop.is_cancelled() {
        let outcome = follow(&management, &inventory, &documents, &client, &stop).await;
        if stop.is_cancelled() {
            break;
        }
        failures = failures.saturating_add(1);
        let backoff = Duration::from_millis(200u64 << failures.min(5));
        if let Err(error) = outcome {
            tracing::warn!(%error, retry_in_ms = backoff.as_millis(), "agent messaging paused");
        }
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep(backoff) => {}
        }
    }
}

/// Creates the streams if they are missing (idempotent: an existing stream is left as it is).
pub async fn provision_streams(context: &jetstream::Context) -> anyhow::Result<()> {
    for (name, subjects) in STREAMS {
        context
            .get_or_create_stream(stream::Config {
                name: name.to_owned(),
                subjects: subjects
                    .iter()
                    .map(|subject| (*subject).to_owned())
                    .collect(),
                storage: stream::StorageType::File,
                retention: stream::RetentionPolicy::Limits,
                max_age: Duration::from_secs(30 * 86_400),
                ..Default::default()
            })
            .await
            .map_err(|error| anyhow::anyhow!("creating the JetStream stream {name}: {error}"))?;
    }
    Ok(())
}

async fn follow(
    management: &Management,
    inventory: &Inventory,
    documents: &Arc<dyn openframe_storage::DocumentStore>,
    client: &async_nats::Client,
    stop: &CancellationToken,
) -> anyhow::Result<()> {
    let mut heartbeats = client.subscribe("machine.*.heartbeat").await?;
    let mut results = futures_util::stream::select(
        client
            .subscribe("machine.*.script-execution.result")
            .await?,
        client
            .subscribe("machine.*.command-execution.result")
            .await?,
    );
    let context = jetstream::new(client.clone());
    provision_streams(&context).await?;
    let mut reports = Vec::new();
    for (stream_name, durable) in REPORTS {
        let stream = context.get_stream(stream_name).await?;
        let consumer = stream
            .get_or_create_consumer(
                durable,
                consumer::pull::Config {
                    durable_name: Some(durable.to_owned()),
                    ack_policy: consumer::AckPolicy::Explicit,
                    ack_wait: Duration::from_secs(30),
                    ..Default::default()
                },
            )
            .await?;
        reports.push(consumer.messages().await?);
    }
    let mut merged = futures_util::stream::select_all(reports);
    tracing::info!("following agent heartbeats and reports");
    loop {
        tokio::select! {
            () = stop.cancelled() => return Ok(()),
            heartbeat = heartbeats.next() => {
                let Some(heartbeat) = heartbeat else {
                    anyhow::bail!("the heartbeat subscription ended");
                };
                if let Some(machine) = machine_of(&heartbeat.subject)
                    && let Some(tenant) = management.agents.tenant_of(machine)
                {
                    management.presence.seen(&tenant, machine);
                }
            }
            result = results.next() => {
                let Some(result) = result else {
                    anyhow::bail!("the result subscriptions ended");
                };
                let subject = result.subject.as_str();
                // Err((transient, why)): a transient failure leaves the sender's copy in place.
                let outcome = match (machine_of(subject), rmm::Kind::of_result(subject)) {
                    (Some(machine), Some(kind)) => match management.agents.tenant_of(machine) {
                        Some(tenant) => management
                            .rmm
                            .record_result(&tenant, machine, kind, &result.payload)
                            .await
                            .map(|_| ())
                            .map_err(|error| {
                                (matches!(error, rmm::RmmError::Unavailable(_)), error.to_string())
                            }),
                        None => Err((false, "no registered machine".to_owned())),
                    },
                    _ => Err((false, "not a result subject".to_owned())),
                };
                if let Err((_, why)) = &outcome {
                    tracing::warn!(subject, why, "an execution result was refused");
                }
                // Our agent asks with a reply inbox and keeps the result until it is answered:
                // stored, or refused for good. A store outage stays unanswered, so it comes again.
                if let Some(reply) = result.reply.clone()
                    && !matches!(outcome, Err((true, _)))
                {
                    let answer = if outcome.is_ok() { "stored" } else { "refused" };
                    if let Err(error) = client.publish(reply, answer.into()).await {
                        tracing::warn!(%error, subject, "answering an execution result failed");
                    }
                }
            }
            report = merged.next() => {
                let Some(report) = report else {
                    anyhow::bail!("the report consumers ended");
                };
                let report = report.map_err(|error| anyhow::anyhow!("reading a report: {error}"))?;
                let outcome = match machine_of(&report.subject)
                    .and_then(|machine| Some((machine, management.agents.tenant_of(machine)?)))
                {
                    Some((machine, tenant)) => {
                        let now = management.clock.now_ms();
                        let attempt = report.info().map_or(1, |info| info.delivered);
                        let context = Report { management, inventory, documents, tenant: &tenant, machine, now, attempt };
                        handle_report(&context, &report.subject, &report.payload).await
                    }
                    None => Err(Refused::Permanent(format!("{} names no registered machine", report.subject))),
                };
                match outcome {
                    Ok(()) => {}
                    Err(Refused::Permanent(why)) => {
                        tracing::warn!(subject = %report.subject, why, "an agent report was refused");
                    }
                    Err(Refused::Retry(why)) => {
                        // Handed back: JetStream delivers it again after a delay that grows with
                        // each attempt (2 s, 4 s, … up to 30 s).
                        let attempt = report.info().map_or(1, |info| info.delivered);
                        let delay = Duration::from_secs(2 * u64::try_from(attempt.clamp(1, 15)).unwrap_or(15));
                        tracing::warn!(subject = %report.subject, why, retry_in_seconds = delay.as_secs(), "an agent report will be retried");
                        if let Err(error) = report.ack_with(jetstream::AckKind::Nak(Some(delay))).await {
                            tracing::warn!(%error, "handing an agent report back failed; it returns after the ack wait");
                        }
                        continue;
                    }
                }
                if let Err(error) = report.ack().await {
                    tracing::warn!(%error, "acknowledging an agent report failed");
                }
            }
        }
    }
}

/// `machine.{id}.…` → `id`.
fn machine_of(subject: &str) -> Option<&str> {
    let mut tokens = subject.split('.');
    match (tokens.next(), tokens.next()) {
        (Some("machine"), Some(id)) if id != "all" && !id.is_empty() => Some(id),
        _ => None,
    }
}

/// Fleet's host id for an osquery UUID; retried (by redelivery) while Fleet cannot say, then
/// the UUID itself.
async fn fleet_host_id(report: &Report<'_>, uuid: String) -> Result<String, Refused> {
    match report.management.fleet.host_id(report.tenant, &uuid).await {
        fleet::Lookup::Found(id) => Ok(id),
        fleet::Lookup::NoTool => {
            tracing::warn!(tenant = %report.tenant, machine_id = report.machine, "a Fleet connection is stored with its osquery UUID: the tenant has no Fleet tool to look it up");
            Ok(uuid)
        }
        fleet::Lookup::NotFound | fleet::Lookup::Failed(_)
            if report.attempt >= FLEET_LOOKUP_ATTEMPTS =>
        {
            tracing::warn!(tenant = %report.tenant, machine_id = report.machine, attempts = report.attempt, "Fleet never returned a host id; the connection is stored with its osquery UUID");
            Ok(uuid)
        }
        fleet::Lookup::NotFound => Err(Refused::Retry(format!(
            "Fleet has no host {uuid} yet (attempt {})",
            report.attempt
        ))),
        fleet::Lookup::Failed(why) => Err(Refused::Retry(format!(
            "looking up Fleet host {uuid}: {why} (attempt {})",
            report.attempt
        ))),
    }
}

#[derive(Debug)]
enum Refused {
    /// Bad input: acknowledged and dropped, with the reason logged.
    Permanent(String),
    /// The store failed: left for redelivery.
    Retry(String),
}

impl From<crate::inventory::InventoryError> for Refused {
    fn from(error: crate::inventory::InventoryError) -> Self {
        match error {
            crate::inventory::InventoryError::Unavailable(detail) => Refused::Retry(detail),
            other => Refused::Permanent(other.to_string()),
        }
    }
}

/// Where a report comes from and what handling it needs.
struct Report<'a> {
    management: &'a Management,
    inventory: &'a Inventory,
    documents: &'a Arc<dyn openframe_storage::DocumentStore>,
    /// The machine's tenant (already known to be its).
    tenant: &'a TenantId,
    machine: &'a str,
    now: i64,
    /// How many times JetStream has delivered it (1 the first time).
    attempt: i64,
}

/// How many deliveries a Fleet host lookup gets before the raw UUID is stored instead.
const FLEET_LOOKUP_ATTEMPTS: i64 = 10;

/// One report from a machine.
async fn handle_report(report: &Report<'_>, subject: &str, payload: &[u8]) -> Result<(), Refused> {
    let Report {
        inventory,
        documents,
        tenant,
        machine,
        now,
        ..
    } = *report;
    if subject.ends_with(".inventory") {
        let report: crate::inventory::InventoryReport = serde_json::from_slice(payload)
            .map_err(|error| Refused::Permanent(format!("not an inventory report: {error}")))?;
        report
            .validate()
            .map_err(|invalid| Refused::Permanent(invalid.to_string()))?;
        inventory
            .update_machine(tenant, machine, |record| report.apply(record, now))
            .await?;
        return Ok(());
    }
    let body: Value = serde_json::from_slice(payload)
        .map_err(|error| Refused::Permanent(format!("not JSON: {error}")))?;
    let text = |field: &str| {
        body.get(field)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|value| !value.is_empty() && value.len() <= 255)
            .map(str::to_owned)
            .ok_or_else(|| {
                Refused::Permanent(format!("`{field}` must be a string of 1 to 255 characters"))
            })
    };
    if subject.ends_with(".hostname") {
        let hostname = text("hostname")?;
        inventory
            .update_machine(tenant, machine, |record| record.hostname = hostname)
            .await?;
    } else if subject.ends_with(".tool-connection") {
        let tool_type = match text("toolType")?.to_ascii_uppercase().as_str() {
            "MESHCENTRAL" => "MESHCENTRAL",
            "FLEET" | "FLEET_MDM" | "FLEETMDM" => "FLEET_MDM",
            "OPENFRAME_RMM" => "OPENFRAME_RMM",
            other => {
                return Err(Refused::Permanent(format!(
                    "unknown toolType {other:?} (MESHCENTRAL, FLEET_MDM, OPENFRAME_RMM)"
                )));
            }
        };
        let raw = text("agentToolId")?;
        // MeshCentral agents report their raw node id; its events name `node//{id}`.
        let agent_tool_id = if tool_type == "MESHCENTRAL" && !raw.starts_with("node/") {
            format!("node//{raw}")
        } else if tool_type == "FLEET_MDM" && fleet::is_host_uuid(&raw) {
            fleet_host_id(report, raw).await?
        } else {
            raw
        };
        inventory
            .connect_tool(
                tenant,
                ToolConnection {
                    machine_id: machine.to_owned(),
                    tool_type: tool_type.to_owned(),
                    agent_tool_id,
                    status: "CONNECTED".into(),
                    connected_at: now,
                },
            )
            .await?;
    } else if subject.ends_with(".installed-agent") {
        let agent_type = text("agentType")?;
        let version = text("version")?;
        let valid_type = agent_type
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !valid_type {
            return Err(Refused::Permanent(format!(
                "agentType {agent_type:?} must be letters, digits, '-' or '_'"
            )));
        }
        let record = serde_json::json!({
            "machineId": machine,
            "agentType": agent_type,
            "version": version,
            "status": "INSTALLED",
            "updatedAt": now,
        });
        let collection = Collection::parse("installed_agents")
            .map_err(|error| Refused::Permanent(error.to_string()))?;
        let id = DocumentId::parse(&format!("{machine}:{agent_type}"))
            .map_err(|error| Refused::Permanent(error.to_string()))?;
        documents
            .replace(tenant, &collection, &id, &record, None)
            .await
            .map_err(|error| Refused::Retry(error.to_string()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_ids_come_from_the_subject() {
        assert_eq!(machine_of("machine.m-1.heartbeat"), Some("m-1"));
        assert_eq!(machine_of("machine.all.client-update"), None);
        assert_eq!(machine_of("user.u-1.installed-agent"), None);
        assert_eq!(machine_of("machine"), None);
    }

    #[test]
    fn every_agent_stream_is_provisioned_and_reports_read_provisioned_streams() {
        let provisioned: Vec<&str> = STREAMS.iter().map(|(name, _)| *name).collect();
        for stream in nats_rules::AGENT_STREAMS {
            assert!(provisioned.contains(&stream), "{stream}");
        }
        for (stream, _) in REPORTS {
            assert!(provisioned.contains(&stream), "{stream}");
        }
    }
}
