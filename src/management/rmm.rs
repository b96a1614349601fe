//! OpenFrame RMM: the scripts library, running a script or an ad-hoc command on machines, and
//! their executions (OpenFrame's `scripts`, `script_executions`, `command_executions`).
//!
//! - A run makes one execution per machine (`PENDING`), then sends the agent OpenFrame's
//!   `ScriptMessage` on `machine.{id}.script-execution` (or `CommandMessage` on
//!   `machine.{id}.command-execution`), core NATS, and marks it `DISPATCHED`.
//! - The agent answers on `….result` (snake_case, as OpenFrame's agent sends it). A result is
//!   taken only from the machine the execution was sent to, only once, and only while the
//!   execution is `DISPATCHED`; stdout and stderr are cut at 64 KiB each (flagged). The result
//!   also goes into the unified log (`SCRIPT_EXECUTED`, `SCRIPT_FAILED`, `COMMAND_RUN_FINISHED`),
//!   where the output is searchable.
//! - A watchdog fails executions whose agent has not answered within their timeout plus a grace
//!   period (`timedOut: true`, `error` says why); cancelling sends `machine.{id}.command-cancel`.
//! - Secret environment variables are sealed at rest with the master key and never shown again;
//!   the agent receives them in the dispatch message only.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use openframe_storage::model::{Collection, DocumentId};
use openframe_storage::{Clock, DocumentStore, TenantId};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::domain::Invalid;
use crate::identity::crypto::{MasterKey, b64url, b64url_decode, random_uuid};
use crate::inventory::Inventory;
use crate::stream::Stream;
use crate::stream::tools::MessageType;

const SCRIPTS: &str = "scripts";
const SCRIPT_EXECUTIONS: &str = "script_executions";
const COMMAND_EXECUTIONS: &str = "command_executions";
const SEAL_CONTEXT: &[u8] = b"openframe script secret env var";
/// What an execution keeps of each output stream (OpenFrame's cap).
pub const MAX_OUTPUT: usize = 64 * 1024;
/// How long past its timeout an execution waits for its agent before the watchdog fails it.
pub const WATCHDOG_GRACE_MS: i64 = 30_000;
/// Machines one run may target.
const MAX_TARGETS: usize = 500;

pub const SHELLS: [&str; 6] = ["POWERSHELL", "CMD", "BASH", "PYTHON", "NUSHELL", "SHELL"];
pub const PLATFORMS: [&str; 3] = ["WINDOWS", "MAC_OS", "LINUX"];

#[derive(Debug, thiserror::Error)]
pub enum RmmError {
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unavailable(String),
    /// Agent messaging (NATS) is not running, so nothing can be sent to an agent.
    #[error("agent messaging is not running (NATS is off or starting); retry shortly")]
    NotConnected,
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl From<openframe_storage::error::DocumentError> for RmmError {
    fn from(error: openframe_storage::error::DocumentError) -> Self {
        RmmError::Unavailable(error.to_string())
    }
}

impl From<crate::inventory::InventoryError> for RmmError {
    fn from(error: crate::inventory::InventoryError) -> Self {
        use crate::inventory::InventoryError;
        match error {
            InventoryError::Invalid(invalid) => RmmError::Invalid(invalid),
            InventoryError::NotFound(what) => RmmError::NotFound(what),
            InventoryError::Unavailable(detail) => RmmError::Unavailable(detail),
        }
    }
}

impl From<RmmError> for crate::error::ApiError {
    fn from(error: RmmError) -> Self {
        use crate::error::ApiError;
        match error {
            RmmError::Invalid(invalid) => ApiError::InvalidInput(invalid.to_string()),
            RmmError::NotFound(what) => ApiError::NotFound(what),
            RmmError::Conflict(why) => ApiError::Conflict(why),
            RmmError::Unavailable(detail) => ApiError::StoreUnavailable(detail),
            RmmError::NotConnected => ApiError::Overloaded(RmmError::NotConnected.to_string()),
            RmmError::Unexpected(error) => ApiError::Unexpected(error),
        }
    }
}

/// An environment variable of a script or a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvVar {
    pub name: String,
    /// Absent when shown for a secret; sealed at rest for a secret.
    #[serde(default)]
    pub value: Option<String>,
    #[serde(default)]
    pub secret: bool,
}

/// What an administrator sends to create or replace a script.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScriptInput {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub shell: String,
    #[serde(default)]
    pub privilege_level: Option<String>,
    pub script_body: String,
    #[serde(default)]
    pub supported_platforms: Vec<String>,
    #[serde(default)]
    pub default_timeout_seconds: Option<u64>,
    #[serde(default)]
    pub default_args: Vec<String>,
    #[serde(default)]
    pub env_vars: Vec<EnvVar>,
    #[serde(default)]
    pub tags: Vec<String>,
}

/// A script as stored (secret values sealed) and as shown (secret values absent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Script {
    pub id: String,
    pub name: String,
    pub description: String,
    pub shell: String,
    pub privilege_level: String,
    pub script_body: String,
    pub supported_platforms: Vec<String>,
    pub default_timeout_seconds: u64,
    pub default_args: Vec<String>,
    pub env_vars: Vec<EnvVar>,
    pub tags: Vec<String>,
    pub created_by: String,
    pub created_at: i64,
    pub updated_at: i64,
    /// `ACTIVE`, `ARCHIVED`, `DELETED`.
    pub status: String,
    pub status_changed_at: i64,
}

/// One machine's execution of a script or command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Execution {
    pub execution_id: String,
    pub machine_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule_id: Option<String>,
    /// Ad-hoc commands only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    pub shell: String,
    pub privilege_level: String,
    pub timeout_seconds: u64,
    pub initiated_by: String,
    /// `MANUAL`, `SCHEDULED`, `AI_ASSISTANT`.
    pub source: String,
    /// `PENDING`, `DISPATCHED`, `SUCCESS`, `FAILED`, `CANCELLED`.
    pub status: String,
    pub dispatched_at: Option<i64>,
    pub status_changed_at: i64,
    pub finished_at: Option<i64>,
    pub exit_code: Option<i64>,
    pub execution_time_ms: Option<i64>,
    pub timed_out: bool,
    pub stdout: Option<String>,
    pub stdout_truncated: bool,
    pub stderr: Option<String>,
    pub stderr_truncated: bool,
    pub error: Option<String>,
}

/// A run's targets and overrides.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RunInput {
    pub machine_ids: Vec<String>,
    #[serde(default)]
    pub args: Option<Vec<String>>,
    #[serde(default)]
    pub env_vars: Vec<EnvVar>,
    #[serde(default)]
    pub timeout_seconds: Option<u64>,
    #[serde(default)]
    pub privilege_level: Option<String>,
}

/// An ad-hoc command.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CommandInput {
    pub machine_ids: Vec<String>,
    pub shell: String,
    pub command: String,
    #[serde(default)]
    pub timeout_seconds: Option<u64>,
    #[serde(default)]
    pub privilege_level: Option<String>,
}

/// A result as OpenFrame's agent sends it (snake_case).
#[derive(Debug, Clone, Deserialize)]
pub struct AgentResult {
    pub execution_id: String,
    /// Optional: the subject names the machine; if given, it must be the same one.
    #[serde(default)]
    pub machine_id: Option<String>,
    #[serde(default)]
    pub stdout: Option<String>,
    #[serde(default)]
    pub stderr: Option<String>,
    #[serde(default)]
    pub exit_code: Option<i64>,
    #[serde(default)]
    pub execution_time_ms: Option<i64>,
    #[serde(default)]
    pub timed_out: bool,
    #[serde(default)]
    pub error: Option<String>,
}

/// Which kind of execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Script,
    Command,
}

impl Kind {
    fn collection(self) -> &'static str {
        match self {
            Kind::Script => SCRIPT_EXECUTIONS,
            Kind::Command => COMMAND_EXECUTIONS,
        }
    }

    fn subject(self) -> &'static str {
        match self {
            Kind::Script => "script-execution",
            Kind::Command => "command-execution",
        }
    }

    /// The kind a result subject (`machine.{id}.script-execution.result`) belongs to.
    pub fn of_result(subject: &str) -> Option<Kind> {
        if subject.ends_with(".script-execution.result") {
            Some(Kind::Script)
        } else if subject.ends_with(".command-execution.result") {
            Some(Kind::Command)
        } else {
            None
        }
    }
}

/// An execution still waiting for its agent: where to find it, when to give up.
#[derive(Debug, Clone)]
struct Waiting {
    tenant: TenantId,
    kind: Kind,
    deadline: i64,
}

#[derive(Debug)]
pub struct Rmm {
    documents: Arc<dyn DocumentStore>,
    inventory: Arc<Inventory>,
    stream: Arc<Stream>,
    master: Arc<MasterKey>,
    clock: Arc<dyn Clock>,
    /// `{executionId}:{machineId}` → the execution waiting for a result.
    waiting: Mutex<HashMap<String, Waiting>>,
    /// Execution writes take turns, so a result and the watchdog never both finish one.
    writing: tokio::sync::Mutex<()>,
}

impl Rmm {
    pub fn new(
        documents: Arc<dyn DocumentStore>,
        inventory: Arc<Inventory>,
        stream: Arc<Stream>,
        master: Arc<MasterKey>,
        clock: Arc<dyn Clock>,
    ) -> Rmm {
        Rmm {
            documents,
            inventory,
            stream,
            master,
            clock,
            waiting: Mutex::new(HashMap::new()),
            writing: tokio::sync::Mutex::new(()),
        }
    }

    fn waiting(&self) -> std::sync::MutexGuard<'_, HashMap<String, Waiting>> {
        self.waiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Executions left `DISPATCHED` or `PENDING` by an earlier run of the appliance are watched again.
    pub async fn watch_unfinished(&self, tenants: &[TenantId]) -> Result<(), RmmError> {
        for tenant in tenants {
            for kind in [Kind::Script, Kind::Command] {
                for status in ["DISPATCHED", "PENDING"] {
                    let found = self
                        .documents
                        .find_by_field(
                            tenant,
                            &collection(kind.collection())?,
                            "status",
                            &Value::from(status),
                            openframe_storage::documents::MAX_LIST,
                        )
                        .await?;
                    for document in found {
                        if let Ok(execution) = serde_json::from_value::<Execution>(document.body) {
                            self.wait_for(tenant, kind, &execution);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn wait_for(&self, tenant: &TenantId, kind: Kind, execution: &Execution) {
        let timeout_ms =
            i64::try_from(execution.timeout_seconds.saturating_mul(1000)).unwrap_or(i64::MAX);
        let from = execution
            .dispatched_at
            .unwrap_or(execution.status_changed_at);
        self.waiting().insert(
            key(&execution.execution_id, &execution.machine_id),
            Waiting {
                tenant: tenant.clone(),
                kind,
                deadline: from
                    .saturating_add(timeout_ms)
                    .saturating_add(WATCHDOG_GRACE_MS),
            },
        );
    }

    // --- The scripts library. ---

    pub async fn create_script(
        &self,
        tenant: &TenantId,
        by: &str,
        input: ScriptInput,
    ) -> Result<Script, RmmError> {
        let now = self.clock.now_ms();
        let mut script = Script {
            id: random_uuid()?,
            name: String::new(),
            description: String::new(),
            shell: String::new(),
            privilege_level: String::new(),
            script_body: String::new(),
            supported_platforms: Vec::new(),
            default_timeout_seconds: 0,
            default_args: Vec::new(),
            env_vars: Vec::new(),
            tags: Vec::new(),
            created_by: by.to_owned(),
            created_at: now,
            updated_at: now,
            status: "ACTIVE".into(),
            status_changed_at: now,
        };
        self.apply(&mut script, input, &[])?;
        self.put(tenant, SCRIPTS, &script.id, &script).await?;
        Ok(shown(script))
    }

    /// PUT semantics. A secret env var sent without a value keeps its stored value.
    pub async fn update_script(
        &self,
        tenant: &TenantId,
        id: &str,
        input: ScriptInput,
    ) -> Result<Script, RmmError> {
        let mut script = self.stored_script(tenant, id).await?;
        if script.status == "DELETED" {
            return Err(RmmError::NotFound(format!("no script {id:?}")));
        }
        let kept = script.env_vars.clone();
        self.apply(&mut script, input, &kept)?;
        script.updated_at = self.clock.now_ms();
        self.put(tenant, SCRIPTS, &script.id, &script).await?;
        Ok(shown(script))
    }

    /// `ACTIVE` → `ARCHIVED` (or back), or `DELETED` (soft, as OpenFrame).
    pub async fn set_script_status(
        &self,
        tenant: &TenantId,
        id: &str,
        status: &str,
    ) -> Result<Script, RmmError> {
        let mut script = self.stored_script(tenant, id).await?;
        if script.status == "DELETED" {
            return Err(RmmError::NotFound(format!("no script {id:?}")));
        }
        if script.status != status {
            script.status = status.to_owned();
            script.status_changed_at = self.clock.now_ms();
            self.put(tenant, SCRIPTS, &script.id, &script).await?;
        }
        Ok(shown(script))
    }

    pub async fn script(&self, tenant: &TenantId, id: &str) -> Result<Script, RmmError> {
        let script = self.stored_script(tenant, id).await?;
        if script.status == "DELETED" {
            return Err(RmmError::NotFound(format!("no script {id:?}")));
        }
        Ok(shown(script))
    }

    /// Every script that is not deleted, by name.
    pub async fn scripts(&self, tenant: &TenantId) -> Result<Vec<Script>, RmmError> {
        let mut scripts = self.all_scripts(tenant).await?;
        scripts.retain(|script| script.status != "DELETED");
        scripts.sort_by_key(|script| script.name.to_lowercase());
        Ok(scripts)
    }

    /// Every script, deleted ones included, as shown (secret values absent), in no order.
    pub async fn all_scripts(&self, tenant: &TenantId) -> Result<Vec<Script>, RmmError> {
        Ok(
            crate::inventory::read_all(self.documents.as_ref(), tenant, &collection(SCRIPTS)?)
                .await?
                .into_iter()
                .map(shown)
                .collect(),
        )
    }

    async fn stored_script(&self, tenant: &TenantId, id: &str) -> Result<Script, RmmError> {
        self.get(tenant, SCRIPTS, id)
            .await?
            .ok_or_else(|| RmmError::NotFound(format!("no script {id:?}")))
    }

    /// Validates `input` into `script`; secrets are sealed (or kept from `kept` when sent
    /// without a value).
    fn apply(
        &self,
        script: &mut Script,
        input: ScriptInput,
        kept: &[EnvVar],
    ) -> Result<(), RmmError> {
        let name = input.name.trim();
        if name.is_empty() || name.chars().count() > 200 {
            return Err(Invalid::new("name", "must be 1 to 200 characters").into());
        }
        if input.description.chars().count() > 2000 {
            return Err(Invalid::new("description", "must be at most 2000 characters").into());
        }
        let body = &input.script_body;
        if body.trim().is_empty() || body.len() > 256 * 1024 {
            return Err(Invalid::new("scriptBody", "must be 1 byte to 256 KiB").into());
        }
        script.name = name.to_owned();
        script.description = input.description.trim().to_owned();
        script.shell = one_of(&input.shell, &SHELLS, "shell")?;
        script.privilege_level = privilege(input.privilege_level.as_deref())?;
        script.script_body = input.script_body;
        script.supported_platforms = input
            .supported_platforms
            .iter()
            .map(|platform| one_of(platform, &PLATFORMS, "supportedPlatforms"))
            .collect::<Result<_, _>>()?;
        script.default_timeout_seconds =
            timeout(input.default_timeout_seconds, "defaultTimeoutSeconds")?;
        if input.default_args.len() > 100 || input.default_args.iter().any(|arg| arg.len() > 4096) {
            return Err(Invalid::new("defaultArgs", "at most 100 arguments of 4 KiB each").into());
        }
        script.default_args = input.default_args;
        if input.tags.len() > 50
            || input
                .tags
                .iter()
                .any(|tag| tag.is_empty() || tag.len() > 64)
        {
            return Err(Invalid::new("tags", "at most 50 tags of 1 to 64 characters").into());
        }
        script.tags = input.tags;
        script.env_vars = self.env_vars(input.env_vars, kept, "envVars")?;
        Ok(())
    }

    /// Validated env vars; secret values sealed.
    fn env_vars(
        &self,
        vars: Vec<EnvVar>,
        kept: &[EnvVar],
        field: &'static str,
    ) -> Result<Vec<EnvVar>, RmmError> {
        if vars.len() > 100 {
            return Err(Invalid::new(field, "at most 100 variables").into());
        }
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::with_capacity(vars.len());
        for var in vars {
            let valid_name = var
                .name
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && var.name.len() <= 128
                && var
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid_name {
                return Err(Invalid::new(
                    field,
                    format!(
                        "{:?} is not a valid variable name (letters, digits, '_')",
                        var.name
                    ),
                )
                .into());
            }
            if !seen.insert(var.name.clone()) {
                return Err(Invalid::new(field, format!("{:?} is given twice", var.name)).into());
            }
            let value = match (var.secret, var.value) {
                (_, Some(value)) if value.len() > 32 * 1024 => {
                    return Err(Invalid::new(
                        field,
                        format!("the value of {:?} is over 32 KiB", var.name),
                    )
                    .into());
                }
                (true, Some(value)) => {
                    Some(b64url(&self.master.seal(SEAL_CONTEXT, value.as_bytes())?))
                }
                (true, None) => match kept.iter().find(|old| old.name == var.name && old.secret) {
                    Some(old) => old.value.clone(),
                    None => {
                        return Err(Invalid::new(
                            field,
                            format!("the secret {:?} needs a value", var.name),
                        )
                        .into());
                    }
                },
                (false, value) => Some(value.unwrap_or_default()),
            };
            out.push(EnvVar {
                name: var.name,
                value,
                secret: var.secret,
            });
        }
        Ok(out)
    }

    /// Env vars as the agent receives them: secrets unsealed.
    fn reveal(&self, vars: &[EnvVar]) -> Result<Vec<Value>, RmmError> {
        vars.iter()
            .map(|var| {
                let value = match (&var.value, var.secret) {
                    (Some(sealed), true) => {
                        let bytes = b64url_decode(sealed)
                            .ok_or_else(|| anyhow::anyhow!("a sealed variable is not base64url"))?;
                        String::from_utf8(self.master.open(SEAL_CONTEXT, &bytes)?)
                            .map_err(|_| anyhow::anyhow!("a sealed variable is not UTF-8"))?
                    }
                    (value, _) => value.clone().unwrap_or_default(),
                };
                Ok(serde_json::json!({"name": var.name, "value": value, "secret": var.secret}))
            })
            .collect()
    }

    // --- Runs. ---

    /// Runs a script on machines: one execution each, dispatched over NATS. Returns the
    /// execution id they share.
    pub async fn run_script(
        &self,
        tenant: &TenantId,
        by: &str,
        script_id: &str,
        input: RunInput,
        nats: Option<&async_nats::Client>,
    ) -> Result<String, RmmError> {
        self.run_script_for(tenant, by, script_id, input, nats, None)
            .await
    }

    /// A run a schedule started: its executions carry the schedule's id and the source
    /// `SCHEDULED`.
    pub async fn run_script_for(
        &self,
        tenant: &TenantId,
        by: &str,
        script_id: &str,
        input: RunInput,
        nats: Option<&async_nats::Client>,
        schedule_id: Option<&str>,
    ) -> Result<String, RmmError> {
        let script = self.stored_script(tenant, script_id).await?;
        if script.status != "ACTIVE" {
            return Err(RmmError::Conflict(format!(
                "the script is {}; only ACTIVE scripts run",
                script.status
            )));
        }
        let machines = self.targets(tenant, &input.machine_ids).await?;
        let args = input.args.unwrap_or_else(|| script.default_args.clone());
        if args.len() > 100 || args.iter().any(|arg| arg.len() > 4096) {
            return Err(Invalid::new("args", "at most 100 arguments of 4 KiB each").into());
        }
        let timeout_seconds = match input.timeout_seconds {
            Some(seconds) => timeout(Some(seconds), "timeoutSeconds")?,
            None => script.default_timeout_seconds,
        };
        let privilege_level = match input.privilege_level.as_deref() {
            Some(level) => privilege(Some(level))?,
            None => script.privilege_level.clone(),
        };
        // A run's variables override the script's of the same name.
        let overrides = self.env_vars(input.env_vars, &[], "envVars")?;
        let mut vars: Vec<EnvVar> = script
            .env_vars
            .iter()
            .filter(|var| !overrides.iter().any(|new| new.name == var.name))
            .cloned()
            .collect();
        vars.extend(overrides);
        let env_vars = self.reveal(&vars)?;
        let nats = nats.ok_or(RmmError::NotConnected)?;
        let execution_id = random_uuid()?;
        for machine in &machines {
            let message = serde_json::json!({
                "executionId": execution_id,
                "scheduleId": schedule_id,
                "scriptId": script.id,
                "machineId": machine,
                "code": script.script_body,
                "shell": script.shell,
                "privilegeLevel": privilege_level,
                "args": args,
                "timeoutSeconds": timeout_seconds,
                "envVars": env_vars,
            });
            let mut execution = self.pending(
                &execution_id,
                machine,
                Some(&script.id),
                schedule_id,
                &script.shell,
                &privilege_level,
                timeout_seconds,
                by,
            );
            if schedule_id.is_some() {
                execution.source = "SCHEDULED".into();
            }
            self.dispatch(tenant, Kind::Script, execution, message, nats)
                .await?;
        }
        tracing::info!(%tenant, script_id, execution_id, machines = machines.len(), by, "script dispatched");
        Ok(execution_id)
    }

    /// Runs an ad-hoc command on machines.
    pub async fn run_command(
        &self,
        tenant: &TenantId,
        by: &str,
        input: CommandInput,
        nats: Option<&async_nats::Client>,
    ) -> Result<String, RmmError> {
        let shell = one_of(&input.shell, &SHELLS, "shell")?;
        if input.command.trim().is_empty() || input.command.len() > 64 * 1024 {
            return Err(Invalid::new("command", "must be 1 byte to 64 KiB").into());
        }
        let timeout_seconds = timeout(input.timeout_seconds, "timeoutSeconds")?;
        let privilege_level = privilege(input.privilege_level.as_deref())?;
        let machines = self.targets(tenant, &input.machine_ids).await?;
        let nats = nats.ok_or(RmmError::NotConnected)?;
        let execution_id = random_uuid()?;
        for machine in &machines {
            let message = serde_json::json!({
                "executionId": execution_id,
                "code": input.command,
                "shell": shell,
                "privilegeLevel": privilege_level,
                "timeout": timeout_seconds,
            });
            let mut execution = self.pending(
                &execution_id,
                machine,
                None,
                None,
                &shell,
                &privilege_level,
                timeout_seconds,
                by,
            );
            execution.command = Some(input.command.clone());
            self.dispatch(tenant, Kind::Command, execution, message, nats)
                .await?;
        }
        tracing::info!(%tenant, execution_id, machines = machines.len(), by, "command dispatched");
        Ok(execution_id)
    }

    /// The machines of a run: 1 to 500 distinct machines of the tenant, none deleted.
    async fn targets(&self, tenant: &TenantId, ids: &[String]) -> Result<Vec<String>, RmmError> {
        if ids.is_empty() || ids.len() > MAX_TARGETS {
            return Err(Invalid::new(
                "machineIds",
                format!("must name 1 to {MAX_TARGETS} machines"),
            )
            .into());
        }
        let mut machines = Vec::with_capacity(ids.len());
        for id in ids {
            if machines.contains(id) {
                continue;
            }
            match self.inventory.machine(tenant, id).await? {
                Some(machine) if !matches!(machine.status.as_str(), "DELETED" | "ARCHIVED") => {
                    machines.push(id.clone());
                }
                _ => {
                    return Err(Invalid::new(
                        "machineIds",
                        format!("no machine {id:?} in this tenant"),
                    )
                    .into());
                }
            }
        }
        Ok(machines)
    }

    #[allow(clippy::too_many_arguments)]
    fn pending(
        &self,
        execution_id: &str,
        machine_id: &str,
        script_id: Option<&str>,
        schedule_id: Option<&str>,
        shell: &str,
        privilege_level: &str,
        timeout_seconds: u64,
        by: &str,
    ) -> Execution {
        Execution {
            execution_id: execution_id.to_owned(),
            machine_id: machine_id.to_owned(),
            script_id: script_id.map(str::to_owned),
            schedule_id: schedule_id.map(str::to_owned),
            command: None,
            shell: shell.to_owned(),
            privilege_level: privilege_level.to_owned(),
            timeout_seconds,
            initiated_by: by.to_owned(),
            source: "MANUAL".into(),
            status: "PENDING".into(),
            dispatched_at: None,
            status_changed_at: self.clock.now_ms(),
            finished_at: None,
            exit_code: None,
            execution_time_ms: None,
            timed_out: false,
            stdout: None,
            stdout_truncated: false,
            stderr: None,
            stderr_truncated: false,
            error: None,
        }
    }

    /// Stores the execution `PENDING`, sends the message, then marks it `DISPATCHED`: a crash
    /// in between leaves a `PENDING` execution that the watchdog fails, never a lost run.
    async fn dispatch(
        &self,
        tenant: &TenantId,
        kind: Kind,
        mut execution: Execution,
        message: Value,
        nats: &async_nats::Client,
    ) -> Result<(), RmmError> {
        let id = key(&execution.execution_id, &execution.machine_id);
        self.put(tenant, kind.collection(), &id, &execution).await?;
        self.wait_for(tenant, kind, &execution);
        let subject = format!("machine.{}.{}", execution.machine_id, kind.subject());
        let sent = nats.publish(subject, message.to_string().into()).await;
        let now = self.clock.now_ms();
        let _turn = self.writing.lock().await;
        match sent {
            Ok(()) => {
                execution.status = "DISPATCHED".into();
                execution.dispatched_at = Some(now);
            }
            Err(error) => {
                execution.status = "FAILED".into();
                execution.error = Some(format!("could not send it to the agent: {error}"));
                execution.finished_at = Some(now);
                self.waiting().remove(&id);
            }
        }
        execution.status_changed_at = now;
        self.put(tenant, kind.collection(), &id, &execution).await?;
        if execution.status == "DISPATCHED" {
            self.wait_for(tenant, kind, &execution);
        }
        Ok(())
    }

    /// Every machine's execution of one run.
    pub async fn executions(
        &self,
        tenant: &TenantId,
        execution_id: &str,
    ) -> Result<Vec<Execution>, RmmError> {
        let mut found = Vec::new();
        for kind in [Kind::Script, Kind::Command] {
            let documents = self
                .documents
                .find_by_field(
                    tenant,
                    &collection(kind.collection())?,
                    "executionId",
                    &Value::from(execution_id),
                    MAX_TARGETS,
                )
                .await?;
            for document in documents {
                found.push(serde_json::from_value(document.body).map_err(anyhow::Error::from)?);
            }
        }
        if found.is_empty() {
            return Err(RmmError::NotFound(format!("no execution {execution_id:?}")));
        }
        Ok(found)
    }

    /// Every execution of a script, newest first.
    pub async fn script_executions(
        &self,
        tenant: &TenantId,
        script_id: &str,
    ) -> Result<Vec<Execution>, RmmError> {
        self.script(tenant, script_id).await?;
        let mut found = self
            .find_all(tenant, SCRIPT_EXECUTIONS, "scriptId", script_id)
            .await?;
        found.sort_by_key(|execution: &Execution| std::cmp::Reverse(execution.status_changed_at));
        Ok(found)
    }

    /// Every execution a schedule started, in no order.
    pub async fn schedule_executions(
        &self,
        tenant: &TenantId,
        schedule_id: &str,
    ) -> Result<Vec<Execution>, RmmError> {
        self.find_all(tenant, SCRIPT_EXECUTIONS, "scheduleId", schedule_id)
            .await
    }

    /// The records of a collection whose `field` is `value` (the first 1,000 by id); records
    /// that do not read as `T` are skipped.
    pub(super) async fn find_all<T: serde::de::DeserializeOwned>(
        &self,
        tenant: &TenantId,
        name: &str,
        field: &str,
        value: &str,
    ) -> Result<Vec<T>, RmmError> {
        let documents = self
            .documents
            .find_by_field(
                tenant,
                &collection(name)?,
                field,
                &Value::from(value),
                openframe_storage::documents::MAX_LIST,
            )
            .await?;
        Ok(documents
            .into_iter()
            .filter_map(|document| serde_json::from_value(document.body).ok())
            .collect())
    }

    /// Cancels a run on a machine: the agent is told, the execution is `CANCELLED`.
    pub async fn cancel(
        &self,
        tenant: &TenantId,
        execution_id: &str,
        machine_id: &str,
        nats: Option<&async_nats::Client>,
    ) -> Result<Execution, RmmError> {
        let _turn = self.writing.lock().await;
        let id = key(execution_id, machine_id);
        let (kind, mut execution) = self.find(tenant, &id).await?.ok_or_else(|| {
            RmmError::NotFound(format!(
                "no execution {execution_id:?} on machine {machine_id:?}"
            ))
        })?;
        if !matches!(execution.status.as_str(), "PENDING" | "DISPATCHED") {
            return Err(RmmError::Conflict(format!(
                "the execution has already finished ({})",
                execution.status
            )));
        }
        let nats = nats.ok_or(RmmError::NotConnected)?;
        let message = serde_json::json!({ "executionId": execution_id });
        if let Err(error) = nats
            .publish(
                format!("machine.{machine_id}.command-cancel"),
                message.to_string().into(),
            )
            .await
        {
            tracing::warn!(%error, execution_id, machine_id, "could not tell the agent to cancel");
        }
        let now = self.clock.now_ms();
        execution.status = "CANCELLED".into();
        execution.status_changed_at = now;
        execution.finished_at = Some(now);
        execution.error = Some("cancelled by an administrator".into());
        self.put(tenant, kind.collection(), &id, &execution).await?;
        self.waiting().remove(&id);
        Ok(execution)
    }

    /// One machine's execution of a run, script or command.
    pub async fn execution(
        &self,
        tenant: &TenantId,
        execution_id: &str,
        machine_id: &str,
    ) -> Result<Option<Execution>, RmmError> {
        Ok(self
            .find(tenant, &key(execution_id, machine_id))
            .await?
            .map(|(_, execution)| execution))
    }

    async fn find(
        &self,
        tenant: &TenantId,
        id: &str,
    ) -> Result<Option<(Kind, Execution)>, RmmError> {
        for kind in [Kind::Script, Kind::Command] {
            if let Some(execution) = self.get(tenant, kind.collection(), id).await? {
                return Ok(Some((kind, execution)));
            }
        }
        Ok(None)
    }

    // --- Results and the watchdog. ---

    /// A result from machine `machine` (the subject's, which the NATS hub vouches for) of
    /// `tenant`. Refusals say why; they change nothing.
    pub async fn record_result(
        &self,
        tenant: &TenantId,
        machine: &str,
        kind: Kind,
        payload: &[u8],
    ) -> Result<Execution, RmmError> {
        let result: AgentResult = serde_json::from_slice(payload)
            .map_err(|error| Invalid::new("result", format!("not a result: {error}")))?;
        if result
            .machine_id
            .as_deref()
            .is_some_and(|named| named != machine)
        {
            return Err(
                Invalid::new("machine_id", "names another machine than the subject").into(),
            );
        }
        let _turn = self.writing.lock().await;
        let id = key(&result.execution_id, machine);
        let mut execution: Execution =
            self.get(tenant, kind.collection(), &id)
                .await?
                .ok_or_else(|| {
                    RmmError::NotFound(format!(
                        "no execution {:?} on this machine",
                        result.execution_id
                    ))
                })?;
        if execution.status != "DISPATCHED" && execution.status != "PENDING" {
            return Err(RmmError::Conflict(format!(
                "the execution is already {}",
                execution.status
            )));
        }
        let now = self.clock.now_ms();
        let (stdout, stdout_truncated) = capped(result.stdout);
        let (stderr, stderr_truncated) = capped(result.stderr);
        let error = result
            .error
            .map(|error| capped(Some(error)).0.unwrap_or_default())
            .filter(|e| !e.is_empty());
        let failed =
            result.timed_out || error.is_some() || result.exit_code.is_none_or(|code| code != 0);
        execution.status = if failed { "FAILED" } else { "SUCCESS" }.into();
        execution.status_changed_at = now;
        execution.finished_at = Some(now);
        execution.exit_code = result.exit_code;
        execution.execution_time_ms = result.execution_time_ms.filter(|ms| *ms >= 0);
        execution.timed_out = result.timed_out;
        execution.stdout = stdout;
        execution.stdout_truncated = stdout_truncated;
        execution.stderr = stderr;
        execution.stderr_truncated = stderr_truncated;
        execution.error = error;
        self.put(tenant, kind.collection(), &id, &execution).await?;
        self.waiting().remove(&id);
        self.log(tenant, kind, &execution).await;
        Ok(execution)
    }

    /// Into the unified log, as OpenFrame's `RmmResultEvent`.
    async fn log(&self, tenant: &TenantId, kind: Kind, execution: &Execution) {
        let message_type = match kind {
            Kind::Script => MessageType::ScriptExecuted,
            Kind::Command => MessageType::CommandExecuted,
        };
        let event = serde_json::json!({"after": {
            "machineId": execution.machine_id,
            "executionId": execution.execution_id,
            "scriptId": execution.script_id,
            "scheduleId": execution.schedule_id,
            "stdout": execution.stdout,
            "stderr": execution.stderr,
            "exitCode": execution.exit_code,
            "executionTimeMs": execution.execution_time_ms,
            "timedOut": execution.timed_out,
            "error": execution.error,
            "initiatedBy": execution.initiated_by,
            "eventTimestamp": execution.finished_at.unwrap_or(execution.status_changed_at),
        }});
        if let Err(error) = self
            .stream
            .ingest(tenant, message_type, event.to_string().as_bytes(), false)
            .await
        {
            tracing::warn!(%tenant, execution_id = %execution.execution_id, %error, "could not log an execution's result");
        }
    }

    /// Fails executions whose agent never answered. Returns how many.
    pub async fn watchdog(&self) -> usize {
        let now = self.clock.now_ms();
        let overdue: Vec<(String, Waiting)> = self
            .waiting()
            .iter()
            .filter(|(_, waiting)| waiting.deadline <= now)
            .map(|(id, waiting)| (id.clone(), waiting.clone()))
            .collect();
        let mut failed = 0;
        for (id, waiting) in overdue {
            let _turn = self.writing.lock().await;
            let outcome = async {
                let Some(mut execution) = self
                    .get::<Execution>(&waiting.tenant, waiting.kind.collection(), &id)
                    .await?
                else {
                    return Ok::<_, RmmError>(None);
                };
                if !matches!(execution.status.as_str(), "PENDING" | "DISPATCHED") {
                    return Ok(None);
                }
                execution.status = "FAILED".into();
                execution.timed_out = true;
                execution.error = Some(format!(
                    "the agent did not answer within {} s (plus {} s of grace)",
                    execution.timeout_seconds,
                    WATCHDOG_GRACE_MS / 1000
                ));
                execution.status_changed_at = now;
                execution.finished_at = Some(now);
                self.put(&waiting.tenant, waiting.kind.collection(), &id, &execution)
                    .await?;
                Ok(Some(execution))
            }
            .await;
            match outcome {
                Ok(finished) => {
                    self.waiting().remove(&id);
                    if let Some(execution) = finished {
                        self.log(&waiting.tenant, waiting.kind, &execution).await;
                        failed += 1;
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, execution = %id, "the watchdog could not fail an execution")
                }
            }
        }
        failed
    }

    pub(super) async fn get<T: serde::de::DeserializeOwned>(
        &self,
        tenant: &TenantId,
        name: &str,
        id: &str,
    ) -> Result<Option<T>, RmmError> {
        let Ok(document_id) = DocumentId::parse(id) else {
            return Ok(None);
        };
        let found = self
            .documents
            .get(tenant, &collection(name)?, &document_id)
            .await?;
        found
            .map(|document| serde_json::from_value(document.body))
            .transpose()
            .map_err(|error| RmmError::Unavailable(format!("an unreadable {name} record: {error}")))
    }

    pub(super) async fn put<T: Serialize>(
        &self,
        tenant: &TenantId,
        name: &str,
        id: &str,
        record: &T,
    ) -> Result<(), RmmError> {
        let body = serde_json::to_value(record).map_err(anyhow::Error::from)?;
        let id = DocumentId::parse(id).map_err(|_| Invalid::new("id", DocumentId::RULE))?;
        self.documents
            .replace(tenant, &collection(name)?, &id, &body, None)
            .await?;
        Ok(())
    }
}

fn key(execution_id: &str, machine_id: &str) -> String {
    format!("{execution_id}:{machine_id}")
}

/// A script as an administrator sees it: secret values left out.
fn shown(mut script: Script) -> Script {
    for var in &mut script.env_vars {
        if var.secret {
            var.value = None;
        }
    }
    script
}

/// Refuses (`machineIds`) the first of `ids` that is not one of the tenant's machines, or is
/// deleted.
pub(super) async fn require_machines(
    inventory: &Inventory,
    tenant: &TenantId,
    ids: &[String],
) -> Result<(), RmmError> {
    let unknown = inventory
        .view(tenant, |machines, _| {
            ids.iter()
                .find(|id| {
                    machines
                        .get(*id)
                        .is_none_or(|machine| machine.status == "DELETED")
                })
                .cloned()
        })
        .await?;
    match unknown {
        Some(unknown) => Err(Invalid::new(
            "machineIds",
            format!("no machine {unknown:?} in this tenant"),
        )
        .into()),
        None => Ok(()),
    }
}

pub(super) fn one_of(
    value: &str,
    allowed: &[&str],
    field: &'static str,
) -> Result<String, Invalid> {
    let value = value.trim().to_ascii_uppercase();
    if allowed.contains(&value.as_str()) {
        Ok(value)
    } else {
        Err(Invalid::new(
            field,
            format!("must be one of {}", allowed.join(", ")),
        ))
    }
}

fn privilege(level: Option<&str>) -> Result<String, Invalid> {
    match level {
        None => Ok("USER".into()),
        Some(level) => one_of(level, &["USER", "ADMIN"], "privilegeLevel"),
    }
}

/// 1 s to 24 h; default 300 s.
fn timeout(seconds: Option<u64>, field: &'static str) -> Result<u64, Invalid> {
    match seconds {
        None => Ok(300),
        Some(seconds) if (1..=86_400).contains(&seconds) => Ok(seconds),
        Some(_) => Err(Invalid::new(field, "must be 1 to 86400 seconds")),
    }
}

/// At most [`MAX_OUTPUT`] bytes, cut on a character boundary; whether it was cut.
pub(crate) fn capped(text: Option<String>) -> (Option<String>, bool) {
    match text {
        Some(mut text) if text.len() > MAX_OUTPUT => {
            let mut end = MAX_OUTPUT;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.truncate(end);
            (Some(text), true)
        }
        other => (other, false),
    }
}

pub(super) fn collection(name: &str) -> Result<Collection, RmmError> {
    Collection::parse(name).map_err(|error| RmmError::Unavailable(error.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_are_capped_on_a_character_boundary() {
        let (text, cut) = capped(Some("é".repeat(MAX_OUTPUT)));
        let text = text.unwrap();
        assert!(cut);
        assert!(text.len() <= MAX_OUTPUT && text.len() > MAX_OUTPUT - 2);
        assert_eq!(capped(Some("ok".into())), (Some("ok".into()), false));
        assert_eq!(capped(None), (None, false));
    }

    #[test]
    fn enumerations_and_limits_name_the_field() {
        assert_eq!(one_of("bash", &SHELLS, "shell"), Ok("BASH".into()));
        assert_eq!(one_of("zsh", &SHELLS, "shell").unwrap_err().field, "shell");
        assert_eq!(privilege(None), Ok("USER".into()));
        assert_eq!(privilege(Some("root")).unwrap_err().field, "privilegeLevel");
        assert_eq!(timeout(None, "t"), Ok(300));
        assert!(timeout(Some(0), "t").is_err() && timeout(Some(86_401), "t").is_err());
        assert_eq!(
            Kind::of_result("machine.m.script-execution.result"),
            Some(Kind::Script)
        );
        assert_eq!(
            Kind::of_result("machine.m.command-execution.result"),
            Some(Kind::Command)
        );
        assert_eq!(Kind::of_result("machine.m.heartbeat"), None);
    }
}
