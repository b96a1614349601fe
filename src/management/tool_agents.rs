//! Tool agents (OpenFrame's `integrated_tool_agents`): how a machine installs, runs, identifies
//! and removes a tool's agent (MeshCentral's mesh agent, Fleet's orbit), and the messages that
//! tell machines to do so over JetStream.
//!
//! - Definitions are seeded per tenant from `seeds/tool_agents.json` (OpenFrame's two) the first
//!   time the tenant's list is read, and are editable (`PUT`). A server-side secret for
//!   `${server.registrationSecret}` (Fleet's enroll secret) is write-only and sealed at rest.
//! - **Install** publishes OpenFrame's `ToolInstallationMessage` on
//!   `machine.{id}.tool-installation` (stream `TOOL_INSTALLATION`), with the server-side
//!   placeholder substituted; the agent substitutes its own (`${client.…}`). **Uninstall**
//!   publishes on `machine.{id}.tool-uninstall`. **Update** publishes `ToolAgentUpdateMessage` to
//!   each of the tenant's machines on `machine.{id}.tool.{toolAgentId}.update` (stream
//!   `TOOL_UPDATE`) rather than OpenFrame's `machine.all.tool.…`: one NATS serves every tenant
//!   here, and `machine.all` would reach other tenants' machines.
//! - A machine that registers gets an install of every enabled tool agent whose tool the tenant
//!   has registered; a reinstalled one gets them again (`reinstall: true`) and its tool
//!   connections turn `DISCONNECTED` until its agents report again.

use std::sync::Arc;

use openframe_storage::{Clock, DocumentStore, TenantId};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::rmm::{self, Rmm, RmmError};
use crate::domain::Invalid;
use crate::identity::crypto::{MasterKey, b64url, b64url_decode};
use crate::inventory::Inventory;

const TOOL_AGENTS: &str = "integrated_tool_agents";
const SEAL_CONTEXT: &[u8] = b"openframe tool agent registration secret";
const SEEDS: &str = include_str!("seeds/tool_agents.json");
/// The placeholder the server fills in.
const SERVER_SECRET: &str = "${server.registrationSecret}";
/// Machines one install or uninstall may name.
const MAX_TARGETS: usize = 1000;

/// Where a platform's agent comes from (OpenFrame's `downloadConfigurations[]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DownloadConfiguration {
    /// `WINDOWS`, `MAC_OS`, `LINUX`.
    pub os: String,
    /// `{version}` is replaced by the agent's version.
    pub link_template: String,
    pub file_name: String,
    #[serde(default)]
    pub target_file_name: String,
    /// `STANDARD`, `GUI_APP`, `SERVICE`.
    #[serde(default = "standard")]
    pub installation_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
    /// Beyond OpenFrame: the download's SHA-256 (hex), which the agent checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

fn standard() -> String {
    "STANDARD".into()
}

/// A tool agent definition, as stored (the secret sealed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolAgent {
    pub id: String,
    pub tool_id: String,
    pub tool_type: String,
    pub version: String,
    /// `SERVICE`, `CONSOLE`, `USER`.
    pub session_type: String,
    pub download_configurations: Vec<DownloadConfiguration>,
    /// OpenFrame's asset descriptions, passed to the agent as they are.
    #[serde(default)]
    pub assets: Vec<Value>,
    #[serde(default)]
    pub installation_command_args: Vec<String>,
    #[serde(default)]
    pub run_command_args: Vec<String>,
    #[serde(default)]
    pub agent_tool_id_command_args: Vec<String>,
    #[serde(default)]
    pub uninstallation_command_args: Vec<String>,
    /// `ENABLED`, `DISABLED`.
    pub status: String,
    /// Sealed, base64url; never shown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration_secret: Option<String>,
    #[serde(default)]
    pub updated_at: i64,
}

/// What an administrator sends to replace a definition.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ToolAgentInput {
    pub tool_id: String,
    pub tool_type: String,
    pub version: String,
    pub session_type: String,
    pub download_configurations: Vec<DownloadConfiguration>,
    #[serde(default)]
    pub assets: Vec<Value>,
    #[serde(default)]
    pub installation_command_args: Vec<String>,
    #[serde(default)]
    pub run_command_args: Vec<String>,
    #[serde(default)]
    pub agent_tool_id_command_args: Vec<String>,
    #[serde(default)]
    pub uninstallation_command_args: Vec<String>,
    pub status: String,
    /// Absent: keep the stored one; `""`: remove it.
    #[serde(default)]
    pub registration_secret: Option<String>,
}

#[derive(Debug)]
pub struct ToolAgents {
    documents: Arc<dyn DocumentStore>,
    inventory: Arc<Inventory>,
    rmm: Arc<Rmm>,
    master: Arc<MasterKey>,
    clock: Arc<dyn Clock>,
}

fn rule(field: &'static str, problem: impl Into<String>) -> RmmError {
    Invalid::new(field, problem).into()
}

/// A definition as administrators see it: the secret replaced by whether there is one.
pub fn shown(agent: &ToolAgent) -> Value {
    let mut value = serde_json::to_value(agent).unwrap_or(Value::Null);
    if let Some(object) = value.as_object_mut() {
        object.remove("registrationSecret");
        object.insert(
            "hasRegistrationSecret".into(),
            Value::Bool(agent.registration_secret.is_some()),
        );
    }
    value
}

fn args_ok(field: &'static str, args: &[String]) -> Result<(), RmmError> {
    if args.len() > 100 || args.iter().any(|arg| arg.len() > 4096) {
        return Err(rule(field, "at most 100 arguments of 4 KiB each"));
    }
    Ok(())
}

impl ToolAgents {
    pub fn new(
        documents: Arc<dyn DocumentStore>,
        inventory: Arc<Inventory>,
        rmm: Arc<Rmm>,
        master: Arc<MasterKey>,
        clock: Arc<dyn Clock>,
    ) -> ToolAgents {
        ToolAgents {
            documents,
            inventory,
            rmm,
            master,
            clock,
        }
    }

    /// The tenant's definitions, by id; the seeded ones are stored the first time.
    pub async fn list(&self, tenant: &TenantId) -> Result<Vec<ToolAgent>, RmmError> {
        let mut stored: Vec<ToolAgent> = crate::inventory::read_all(
            self.documents.as_ref(),
            tenant,
            &rmm::collection(TOOL_AGENTS)?,
        )
        .await?;
        let seeds: Vec<ToolAgent> = serde_json::from_str(SEEDS)
            .map_err(|error| anyhow::anyhow!("the tool agent seeds do not parse: {error}"))?;
        for mut seed in seeds {
            if stored.iter().any(|agent| agent.id == seed.id) {
                continue;
            }
            seed.updated_at = self.clock.now_ms();
            self.rmm.put(tenant, TOOL_AGENTS, &seed.id, &seed).await?;
            stored.push(seed);
        }
        stored.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(stored)
    }

    pub async fn get(&self, tenant: &TenantId, id: &str) -> Result<ToolAgent, RmmError> {
        self.list(tenant)
            .await?
            .into_iter()
            .find(|agent| agent.id == id)
            .ok_or_else(|| RmmError::NotFound(format!("no tool agent {id:?}")))
    }

    /// Creates or replaces a definition.
    pub async fn put(
        &self,
        tenant: &TenantId,
        id: &str,
        input: ToolAgentInput,
    ) -> Result<ToolAgent, RmmError> {
        crate::gateway::tools::check_tool_id(id)?;
        crate::gateway::tools::check_tool_id(&input.tool_id)
            .map_err(|_| rule("toolId", "must be a tool id such as \"fleetmdm-server\""))?;
        let version = input.version.trim();
        if version.is_empty() || version.len() > 64 || version.contains(['/', '\\', ' ']) {
            return Err(rule(
                "version",
                "must be 1 to 64 characters, no spaces or slashes",
            ));
        }
        let session_type = rmm::one_of(
            &input.session_type,
            &["SERVICE", "CONSOLE", "USER"],
            "sessionType",
        )?;
        let status = rmm::one_of(&input.status, &["ENABLED", "DISABLED"], "status")?;
        if input.download_configurations.len() > 10 || input.assets.len() > 20 {
            return Err(rule(
                "downloadConfigurations",
                "at most 10 download configurations and 20 assets",
            ));
        }
        for download in &input.download_configurations {
            rmm::one_of(&download.os, &rmm::PLATFORMS, "downloadConfigurations.os")?;
            rmm::one_of(
                &download.installation_type,
                &["STANDARD", "GUI_APP", "SERVICE"],
                "downloadConfigurations.installationType",
            )?;
            let link = download.link_template.replace("{version}", version);
            crate::gateway::tools::check_url(
                "downloadConfigurations.linkTemplate",
                &link,
                &["https", "http"],
            )?;
            if download.sha256.as_ref().is_some_and(|hash| {
                hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit())
            }) {
                return Err(rule(
                    "downloadConfigurations.sha256",
                    "must be 64 hex digits",
                ));
            }
        }
        args_ok("installationCommandArgs", &input.installation_command_args)?;
        args_ok("runCommandArgs", &input.run_command_args)?;
        args_ok("agentToolIdCommandArgs", &input.agent_tool_id_command_args)?;
        args_ok(
            "uninstallationCommandArgs",
            &input.uninstallation_command_args,
        )?;
        let kept = match self.get(tenant, id).await {
            Ok(existing) => existing.registration_secret,
            Err(RmmError::NotFound(_)) => None,
            Err(error) => return Err(error),
        };
        let registration_secret = match input.registration_secret.as_deref() {
            None => kept,
            Some("") => None,
            Some(secret) if secret.len() > 4096 => {
                return Err(rule("registrationSecret", "must be at most 4 KiB"));
            }
            Some(secret) => Some(b64url(&self.master.seal(SEAL_CONTEXT, secret.as_bytes())?)),
        };
        let agent = ToolAgent {
            id: id.to_owned(),
            tool_id: input.tool_id,
            tool_type: input.tool_type.trim().to_ascii_uppercase(),
            version: version.to_owned(),
            session_type,
            download_configurations: input.download_configurations,
            assets: input.assets,
            installation_command_args: input.installation_command_args,
            run_command_args: input.run_command_args,
            agent_tool_id_command_args: input.agent_tool_id_command_args,
            uninstallation_command_args: input.uninstallation_command_args,
            status,
            registration_secret,
            updated_at: self.clock.now_ms(),
        };
        self.rmm.put(tenant, TOOL_AGENTS, &agent.id, &agent).await?;
        Ok(agent)
    }

    /// Replaces the server-side placeholder in `args`.
    fn substituted(&self, agent: &ToolAgent, args: &[String]) -> Result<Vec<String>, RmmError> {
        if !args.iter().any(|arg| arg.contains(SERVER_SECRET)) {
            return Ok(args.to_vec());
        }
        let sealed = agent.registration_secret.as_deref().ok_or_else(|| {
            RmmError::Conflict(format!(
                "tool agent {} needs its registrationSecret (its arguments use {SERVER_SECRET})",
                agent.id
            ))
        })?;
        let bytes = b64url_decode(sealed)
            .ok_or_else(|| anyhow::anyhow!("a sealed registration secret is not base64url"))?;
        let secret = String::from_utf8(self.master.open(SEAL_CONTEXT, &bytes)?)
            .map_err(|_| anyhow::anyhow!("a sealed registration secret is not UTF-8"))?;
        Ok(args
            .iter()
            .map(|arg| arg.replace(SERVER_SECRET, &secret))
            .collect())
    }

    /// OpenFrame's `ToolInstallationMessage`.
    fn installation(&self, agent: &ToolAgent, reinstall: bool) -> Result<Value, RmmError> {
        let downloads: Vec<Value> = agent
            .download_configurations
            .iter()
            .map(|download| {
                let mut value = serde_json::to_value(download).unwrap_or(Value::Null);
                if let Some(object) = value.as_object_mut() {
                    object.insert(
                        "link".into(),
                        Value::String(download.link_template.replace("{version}", &agent.version)),
                    );
                }
                value
            })
            .collect();
        Ok(serde_json::json!({
            "toolAgentId": agent.id,
            "toolId": agent.tool_id,
            "toolType": agent.tool_type,
            "version": agent.version,
            "sessionType": agent.session_type,
            "downloadConfigurations": downloads,
            "assets": agent.assets,
            "installationCommandArgs": self.substituted(agent, &agent.installation_command_args)?,
            "runCommandArgs": self.substituted(agent, &agent.run_command_args)?,
            "toolAgentIdCommandArgs": self.substituted(agent, &agent.agent_tool_id_command_args)?,
            "uninstallationCommandArgs": self.substituted(agent, &agent.uninstallation_command_args)?,
            "reinstall": reinstall,
        }))
    }

    /// The machines named, checked: 1 to 1000 of the tenant's, none deleted.
    async fn targets(&self, tenant: &TenantId, ids: &[String]) -> Result<Vec<String>, RmmError> {
        if ids.is_empty() || ids.len() > MAX_TARGETS {
            return Err(rule(
                "machineIds",
                format!("must name 1 to {MAX_TARGETS} machines"),
            ));
        }
        rmm::require_machines(&self.inventory, tenant, ids).await?;
        let mut targets = ids.to_vec();
        targets.sort();
        targets.dedup();
        Ok(targets)
    }

    /// Publishes `message` on each subject and waits for JetStream to store it.
    async fn publish(
        nats: &async_nats::Client,
        messages: Vec<(String, Value)>,
    ) -> Result<usize, RmmError> {
        let jetstream = async_nats::jetstream::new(nats.clone());
        let mut published = 0;
        for (subject, message) in messages {
            let stored = jetstream
                .publish(subject.clone(), message.to_string().into())
                .await
                .map_err(|error| {
                    RmmError::Unavailable(format!("publishing on {subject}: {error}"))
                })?
                .await
                .map_err(|error| {
                    RmmError::Unavailable(format!("JetStream did not store {subject}: {error}"))
                })?;
            tracing::debug!(
                subject,
                sequence = stored.sequence,
                "tool agent message stored"
            );
            published += 1;
        }
        Ok(published)
    }

    /// Tells machines to install (or reinstall) a tool agent.
    pub async fn install(
        &self,
        tenant: &TenantId,
        id: &str,
        machine_ids: &[String],
        reinstall: bool,
        nats: Option<&async_nats::Client>,
    ) -> Result<usize, RmmError> {
        let agent = self.get(tenant, id).await?;
        if agent.status != "ENABLED" {
            return Err(RmmError::Conflict(format!(
                "tool agent {id} is {}",
                agent.status
            )));
        }
        let targets = self.targets(tenant, machine_ids).await?;
        let message = self.installation(&agent, reinstall)?;
        let nats = nats.ok_or(RmmError::NotConnected)?;
        let messages = targets
            .iter()
            .map(|machine| {
                (
                    format!("machine.{machine}.tool-installation"),
                    message.clone(),
                )
            })
            .collect();
        Self::publish(nats, messages).await
    }

    /// Tells machines to remove a tool agent.
    pub async fn uninstall(
        &self,
        tenant: &TenantId,
        id: &str,
        machine_ids: &[String],
        nats: Option<&async_nats::Client>,
    ) -> Result<usize, RmmError> {
        let agent = self.get(tenant, id).await?;
        let targets = self.targets(tenant, machine_ids).await?;
        let message = self.installation(&agent, false)?;
        let nats = nats.ok_or(RmmError::NotConnected)?;
        let messages = targets
            .iter()
            .map(|machine| (format!("machine.{machine}.tool-uninstall"), message.clone()))
            .collect();
        Self::publish(nats, messages).await
    }

    /// Tells every machine of the tenant that is not deleted about the agent's current version
    /// (OpenFrame's `ToolAgentUpdateMessage`).
    pub async fn update(
        &self,
        tenant: &TenantId,
        id: &str,
        nats: Option<&async_nats::Client>,
    ) -> Result<usize, RmmError> {
        let agent = self.get(tenant, id).await?;
        if agent.status != "ENABLED" {
            return Err(RmmError::Conflict(format!(
                "tool agent {id} is {}",
                agent.status
            )));
        }
        let installation = self.installation(&agent, false)?;
        let message = serde_json::json!({
            "toolAgentId": agent.id,
            "version": agent.version,
            "sessionType": agent.session_type,
            "downloadConfigurations": installation["downloadConfigurations"],
            "assets": agent.assets,
        });
        let machines: Vec<String> = self
            .inventory
            .view(tenant, |machines, _| {
                machines
                    .values()
                    .filter(|machine| !matches!(machine.status.as_str(), "DELETED" | "ARCHIVED"))
                    .map(|machine| machine.machine_id.clone())
                    .collect()
            })
            .await?;
        let nats = nats.ok_or(RmmError::NotConnected)?;
        let messages = machines
            .iter()
            .map(|machine| {
                (
                    format!("machine.{machine}.tool.{}.update", agent.id),
                    message.clone(),
                )
            })
            .collect();
        Self::publish(nats, messages).await
    }

    /// A machine registered (or reinstalled): it gets every enabled tool agent whose tool the
    /// tenant has registered. Failures are logged; registration has succeeded either way.
    pub async fn provision(
        &self,
        tenant: &TenantId,
        machine_id: &str,
        registered_tools: &[String],
        reinstall: bool,
        nats: Option<&async_nats::Client>,
    ) -> usize {
        let agents = match self.list(tenant).await {
            Ok(agents) => agents,
            Err(error) => {
                tracing::warn!(%tenant, machine_id, %error, "cannot read tool agents for a new machine");
                return 0;
            }
        };
        let mut sent = 0;
        for agent in agents {
            if agent.status != "ENABLED" || !registered_tools.contains(&agent.tool_id) {
                continue;
            }
            match self
                .install(tenant, &agent.id, &[machine_id.to_owned()], reinstall, nats)
                .await
            {
                Ok(count) => sent += count,
                Err(error) => {
                    tracing::warn!(%tenant, machine_id, tool_agent = %agent.id, %error, "a tool agent could not be queued for a new machine");
                }
            }
        }
        sent
    }
}
