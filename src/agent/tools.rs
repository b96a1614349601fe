//! Tool agents on this machine (MeshCentral's mesh agent, Fleet's orbit, or any other tool):
//! OpenFrame's `ToolInstallationMessage` on `machine.{id}.tool-installation` and its twin on
//! `machine.{id}.tool-uninstall`, read through the JetStream consumer
//! `machine_{id}_tool-installation_consumer` so a message sent while the machine was away is
//! still handled.
//!
//! Installing means: download the Linux build (its SHA-256 checked; a download from anywhere
//! but the appliance itself must carry one), fetch the assets, substitute the agent-side
//! placeholders (`${client.serverUrl}`, `${client.machineId}`, `${client.openframeSecret}`,
//! `${client.openframeTokenPath}`, `${client.assetPath.<assetId>}`), run the installation
//! command, keep the run command going (restarted with backoff when it exits), learn the tool's
//! own id for this machine, and report `installed-agent` and `tool-connection`.
//!
//! Everything lives in `<state dir>/tools/<toolAgentId>/`; `tools.json` remembers what is
//! installed so a restart brings the run commands back and a repeated message changes nothing.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use futures_util::StreamExt as _;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt as _;
use tokio_util::sync::CancellationToken;

use super::exec;
use super::state::{StateDir, write_atomically};

/// The platform whose download and asset names this agent uses.
const OS: &str = super::inventory::OS_TYPE;
/// The largest download accepted.
const MAX_DOWNLOAD: u64 = 512 * 1024 * 1024;
const INSTALLED: &str = "tools.json";
/// How long a run command may run: as long as the agent does.
const FOREVER: Duration = Duration::from_secs(100 * 365 * 86_400);

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Download {
    os: String,
    #[serde(default)]
    link: Option<String>,
    #[serde(default)]
    link_template: String,
    #[serde(default)]
    file_name: String,
    #[serde(default)]
    target_file_name: String,
    #[serde(default)]
    sha256: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LocalName {
    os: String,
    filename: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Asset {
    id: String,
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    local_filename_configuration: Vec<LocalName>,
    #[serde(default)]
    executable: bool,
    #[serde(default)]
    sha256: Option<String>,
}

/// OpenFrame's `ToolInstallationMessage` (also the body of an uninstall).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Installation {
    tool_agent_id: String,
    #[serde(default)]
    tool_id: String,
    tool_type: String,
    version: String,
    #[serde(default)]
    download_configurations: Vec<Download>,
    #[serde(default)]
    assets: Vec<Asset>,
    #[serde(default)]
    installation_command_args: Vec<String>,
    #[serde(default)]
    run_command_args: Vec<String>,
    #[serde(default)]
    tool_agent_id_command_args: Vec<String>,
    #[serde(default)]
    uninstallation_command_args: Vec<String>,
    #[serde(default)]
    reinstall: bool,
}

/// A tool agent as installed here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Installed {
    tool_type: String,
    version: String,
    executable: PathBuf,
    run_args: Vec<String>,
    id_args: Vec<String>,
}

/// Why a message was not carried out.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// Worth another try later (the network, the server).
    #[error("{0}")]
    Retry(String),
    /// Trying again will not help (a bad checksum, a failing installer, a bad message).
    #[error("{0}")]
    Refused(String),
}

/// What an install tells the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub tool_agent_id: String,
    pub tool_type: String,
    pub version: String,
    /// The tool's own id for this machine, when it has a command to tell it.
    pub agent_tool_id: Option<String>,
}

/// The tool agents of this machine, and their running processes.
#[derive(Debug)]
pub struct Tools {
    state: StateDir,
    server: String,
    machine_id: String,
    running: Mutex<HashMap<String, CancellationToken>>,
    /// One install or uninstall at a time.
    turn: tokio::sync::Mutex<()>,
    /// The agent's own end: run commands outlive NATS sessions, not the agent.
    stop: CancellationToken,
}

fn safe_name(field: &str, name: &str) -> Result<(), ToolError> {
    let ok = (1..=128).contains(&name.len())
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'-' | b'_'));
    if ok {
        Ok(())
    } else {
        Err(ToolError::Refused(format!(
            "{field} {name:?} must be 1 to 128 letters, digits, '.', '-' or '_'"
        )))
    }
}

/// `scheme://host:port` of a URL, to tell the appliance's own downloads from others.
fn origin(link: &str) -> Option<String> {
    let url = url::Url::parse(link).ok()?;
    Some(format!(
        "{}://{}:{}",
        url.scheme(),
        url.host_str()?,
        url.port_or_known_default()?
    ))
}

fn retry(error: impl std::fmt::Display) -> ToolError {
    ToolError::Retry(error.to_string())
}

impl Tools {
    pub fn new(
        state: StateDir,
        server: &str,
        machine_id: &str,
        stop: CancellationToken,
    ) -> Arc<Tools> {
        Arc::new(Tools {
            state,
            server: server.to_owned(),
            machine_id: machine_id.to_owned(),
            running: Mutex::new(HashMap::new()),
            turn: tokio::sync::Mutex::new(()),
            stop,
        })
    }

    fn root(&self) -> PathBuf {
        self.state.root().join("tools")
    }

    fn installed(&self) -> HashMap<String, Installed> {
        std::fs::read(self.root().join(INSTALLED))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default()
    }

    fn record(&self, tools: &HashMap<String, Installed>) -> Result<(), ToolError> {
        let bytes = serde_json::to_vec_pretty(tools).map_err(retry)?;
        write_atomically(&self.root().join(INSTALLED), &bytes).map_err(retry)
    }

    /// Starts the run commands of the tools installed before (at agent start).
    pub fn start_installed(self: &Arc<Self>) {
        for (id, tool) in self.installed() {
            if !tool.run_args.is_empty() {
                self.supervise(&id, &tool);
            }
        }
    }

    /// Keeps `tool`'s run command going until it is uninstalled or the agent stops.
    fn supervise(self: &Arc<Self>, id: &str, tool: &Installed) {
        let cancel = self.stop.child_token();
        if let Some(previous) = self
            .running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(id.to_owned(), cancel.clone())
        {
            previous.cancel();
        }
        let (id, tool) = (id.to_owned(), tool.clone());
        tokio::spawn(async move {
            let mut failures: u32 = 0;
            while !cancel.is_cancelled() {
                let mut command = tokio::process::Command::new(&tool.executable);
                command.args(&tool.run_args);
                if let Some(dir) = tool.executable.parent() {
                    command.current_dir(dir);
                }
                let started = std::time::Instant::now();
                // A run command is meant to keep running: no timeout to speak of.
                let outcome = exec::run_process(command, FOREVER, cancel.clone()).await;
                if cancel.is_cancelled() {
                    break;
                }
                // A run that lasted a while was healthy: the backoff starts over.
                if started.elapsed() > Duration::from_secs(600) {
                    failures = 0;
                }
                failures = failures.saturating_add(1);
                let delay = Duration::from_secs(5u64.saturating_mul(1 << failures.min(6)));
                tracing::warn!(tool = %id, exit_code = ?outcome.exit_code, error = ?outcome.error,
                    restart_in_seconds = delay.as_secs(), "a tool agent stopped; restarting it");
                tokio::select! {
                    () = cancel.cancelled() => break,
                    () = tokio::time::sleep(delay) => {}
                }
            }
        });
    }

    fn stop_running(&self, id: &str) {
        if let Some(token) = self
            .running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(id)
        {
            token.cancel();
        }
    }

    /// Downloads `link` into `to` (mode 0700 or 0600), checking its SHA-256 when given; without
    /// one, only the appliance's own downloads are accepted.
    async fn download(
        &self,
        http: &reqwest::Client,
        link: &str,
        bearer: Option<&str>,
        sha256: Option<&str>,
        to: &Path,
        executable: bool,
    ) -> Result<(), ToolError> {
        if sha256.is_none() && origin(link) != origin(&self.server) {
            return Err(ToolError::Refused(format!(
                "{link} is not on the appliance and comes without a sha256 to check it against"
            )));
        }
        // Tool builds can be large: the client's 30-second limit is for API calls.
        let mut request = http.get(link).timeout(Duration::from_secs(30 * 60));
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        let response = request
            .send()
            .await
            .map_err(|error| retry(format!("downloading {link}: {error}")))?;
        let status = response.status();
        if !status.is_success() {
            let why = format!("downloading {link}: the server answered {status}");
            return Err(if status.is_server_error() {
                ToolError::Retry(why)
            } else {
                ToolError::Refused(why)
            });
        }
        let partial = to.with_extension("download");
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&partial)
            .await
            .map_err(|error| retry(format!("cannot write {}: {error}", partial.display())))?;
        let mut digest = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        let mut size: u64 = 0;
        let mut body = response.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|error| retry(format!("downloading {link}: {error}")))?;
            size += chunk.len() as u64;
            if size > MAX_DOWNLOAD {
                let _ = tokio::fs::remove_file(&partial).await;
                return Err(ToolError::Refused(format!(
                    "{link} is larger than {} MiB",
                    MAX_DOWNLOAD >> 20
                )));
            }
            digest.update(&chunk);
            file.write_all(&chunk).await.map_err(retry)?;
        }
        file.sync_all().await.map_err(retry)?;
        drop(file);
        let found: String = digest
            .finish()
            .as_ref()
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        if let Some(expected) = sha256
            && !expected.eq_ignore_ascii_case(&found)
        {
            let _ = tokio::fs::remove_file(&partial).await;
            return Err(ToolError::Refused(format!(
                "{link} has SHA-256 {found}, not the expected {expected}: not installed"
            )));
        }
        let mode = if executable { 0o700 } else { 0o600 };
        std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(mode)).map_err(retry)?;
        std::fs::rename(&partial, to).map_err(retry)?;
        Ok(())
    }

    /// Installs (or reinstalls, or upgrades) a tool agent and says what to report.
    pub async fn install(
        self: &Arc<Self>,
        http: &reqwest::Client,
        token: &str,
        message: &Installation,
    ) -> Result<Report, ToolError> {
        let _turn = self.turn.lock().await;
        let id = message.tool_agent_id.as_str();
        safe_name("toolAgentId", id)?;
        let mut tools = self.installed();
        let report = |agent_tool_id| Report {
            tool_agent_id: id.to_owned(),
            tool_type: message.tool_type.clone(),
            version: message.version.clone(),
            agent_tool_id,
        };
        if let Some(known) = tools.get(id)
            && known.version == message.version
            && !message.reinstall
        {
            // Already in place: say so again (the first report may have been lost).
            return Ok(report(Self::tool_id(known).await));
        }
        let download = message
            .download_configurations
            .iter()
            .find(|download| download.os == OS)
            .ok_or_else(|| ToolError::Refused(format!("tool agent {id} has no {OS} download")))?;
        let dir = self.root().join(id);
        std::fs::create_dir_all(&dir).map_err(retry)?;
        for path in [self.root(), dir.clone()] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700))
                .map_err(retry)?;
        }
        let name = if download.target_file_name.is_empty() {
            download.file_name.as_str()
        } else {
            download.target_file_name.as_str()
        };
        safe_name("targetFileName", name)?;
        let link = download.link.clone().unwrap_or_else(|| {
            download
                .link_template
                .replace("{version}", &message.version)
        });
        let executable = dir.join(name);
        self.stop_running(id);
        self.download(
            http,
            &link,
            None,
            download.sha256.as_deref(),
            &executable,
            true,
        )
        .await?;
        let mut values = vec![
            ("${client.serverUrl}".to_owned(), self.server.clone()),
            ("${client.machineId}".to_owned(), self.machine_id.clone()),
            (
                "${client.openframeSecret}".to_owned(),
                self.state.shared_secret().map_err(retry)?,
            ),
            (
                "${client.openframeTokenPath}".to_owned(),
                self.state.shared_token_path().display().to_string(),
            ),
        ];
        self.state.share_token(token).map_err(retry)?;
        for asset in &message.assets {
            let Some(local) = asset
                .local_filename_configuration
                .iter()
                .find(|local| local.os == OS)
            else {
                continue;
            };
            safe_name("assetId", &asset.id)?;
            safe_name("localFilenameConfiguration.filename", &local.filename)?;
            let (link, bearer) = match (asset.source.as_deref(), asset.path.as_deref()) {
                (Some("TOOL_API"), Some(path)) => {
                    let path = substitute(path, &values)?;
                    if !path.starts_with('/') {
                        return Err(ToolError::Refused(format!(
                            "asset {}: its path must start with '/'",
                            asset.id
                        )));
                    }
                    safe_name("toolId", &message.tool_id)?;
                    (
                        format!("{}/tools/agent/{}{path}", self.server, message.tool_id),
                        Some(token),
                    )
                }
                _ => (
                    format!("{}/clients/tool-agent/{}?os={OS}", self.server, asset.id),
                    None,
                ),
            };
            let path = dir.join(&local.filename);
            self.download(
                http,
                &link,
                bearer,
                asset.sha256.as_deref(),
                &path,
                asset.executable,
            )
            .await?;
            values.push((
                format!("${{client.assetPath.{}}}", asset.id),
                path.display().to_string(),
            ));
        }
        let args = |list: &[String]| {
            list.iter()
                .map(|arg| substitute(arg, &values))
                .collect::<Result<Vec<_>, _>>()
        };
        let tool = Installed {
            tool_type: message.tool_type.clone(),
            version: message.version.clone(),
            executable: executable.clone(),
            run_args: args(&message.run_command_args)?,
            id_args: args(&message.tool_agent_id_command_args)?,
        };
        if !message.installation_command_args.is_empty() {
            let installation = args(&message.installation_command_args)?;
            Self::step(
                &executable,
                &installation,
                Duration::from_secs(600),
                "installation",
            )
            .await?;
        }
        tools.insert(id.to_owned(), tool.clone());
        self.record(&tools)?;
        if !tool.run_args.is_empty() {
            self.supervise(id, &tool);
        }
        tracing::info!(tool = id, version = %message.version, "tool agent installed");
        Ok(report(Self::tool_id(&tool).await))
    }

    /// Runs one step of a tool's lifecycle; a failure says how it ended.
    async fn step(
        executable: &Path,
        args: &[String],
        timeout: Duration,
        what: &str,
    ) -> Result<exec::Outcome, ToolError> {
        let mut command = tokio::process::Command::new(executable);
        command.args(args);
        if let Some(dir) = executable.parent() {
            command.current_dir(dir);
        }
        let outcome = exec::run_process(command, timeout, CancellationToken::new()).await;
        if outcome.exit_code == Some(0) {
            return Ok(outcome);
        }
        let said: String = outcome
            .stderr
            .chars()
            .rev()
            .take(500)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        Err(ToolError::Refused(format!(
            "the {what} command {} ended with {}: {}",
            executable.display(),
            outcome.exit_code.map_or_else(
                || outcome.error.clone().unwrap_or_default(),
                |code| format!("exit code {code}")
            ),
            said.trim()
        )))
    }

    /// The tool's own id for this machine (its first line of output), if it can tell.
    async fn tool_id(tool: &Installed) -> Option<String> {
        if tool.id_args.is_empty() {
            return None;
        }
        match Self::step(
            &tool.executable,
            &tool.id_args,
            Duration::from_secs(60),
            "tool id",
        )
        .await
        {
            Ok(outcome) => outcome
                .stdout
                .lines()
                .next()
                .map(str::trim)
                .filter(|id| !id.is_empty())
                .map(str::to_owned),
            Err(error) => {
                tracing::warn!(%error, "the tool's id could not be learned");
                None
            }
        }
    }

    /// Stops and removes a tool agent (its uninstallation command first, when it has one).
    pub async fn uninstall(&self, message: &Installation) -> Result<(), ToolError> {
        let _turn = self.turn.lock().await;
        let id = message.tool_agent_id.as_str();
        safe_name("toolAgentId", id)?;
        let mut tools = self.installed();
        let Some(tool) = tools.remove(id) else {
            // Never installed, or an install that failed half-way: only files to clear.
            let _ = std::fs::remove_dir_all(self.root().join(id));
            return Ok(());
        };
        self.stop_running(id);
        if !message.uninstallation_command_args.is_empty() && tool.executable.exists() {
            let values = [
                ("${client.serverUrl}".to_owned(), self.server.clone()),
                ("${client.machineId}".to_owned(), self.machine_id.clone()),
            ];
            let args = message
                .uninstallation_command_args
                .iter()
                .map(|arg| substitute(arg, &values))
                .collect::<Result<Vec<_>, _>>()?;
            if let Err(error) = Self::step(
                &tool.executable,
                &args,
                Duration::from_secs(600),
                "uninstallation",
            )
            .await
            {
                tracing::warn!(%error, tool = id, "the uninstallation command failed; removing the files anyway");
            }
        }
        let _ = std::fs::remove_dir_all(self.root().join(id));
        self.record(&tools)?;
        tracing::info!(tool = id, "tool agent removed");
        Ok(())
    }
}

/// Replaces the agent-side placeholders; one left unknown is refused rather than passed on.
fn substitute(arg: &str, values: &[(String, String)]) -> Result<String, ToolError> {
    let mut out = arg.to_owned();
    for (placeholder, value) in values {
        out = out.replace(placeholder.as_str(), value);
    }
    if let Some(at) = out.find("${client.") {
        let rest = &out[at..];
        let end = rest.find('}').map_or(rest.len(), |end| end + 1);
        return Err(ToolError::Refused(format!(
            "the placeholder {} is unknown to this agent",
            &rest[..end]
        )));
    }
    Ok(out)
}

/// Follows tool messages for the session: [`follow_once`], started again 30 s after it fails
/// (the streams may not exist yet while the appliance starts).
pub async fn follow(
    tools: Arc<Tools>,
    client: async_nats::Client,
    http: reqwest::Client,
    token: String,
    stop: CancellationToken,
) {
    while !stop.is_cancelled() {
        let outcome = follow_once(
            tools.clone(),
            client.clone(),
            http.clone(),
            token.clone(),
            stop.clone(),
        )
        .await;
        if let Err(error) = outcome {
            tracing::warn!(%error, "tool installation messages are not being read; trying again in 30 s");
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(30)) => {}
        }
    }
}

/// Reads installation messages until the session ends, installing one at a time, and reports
/// each outcome; the message is acknowledged once handled, or handed back for a later retry
/// when the trouble may pass.
async fn follow_once(
    tools: Arc<Tools>,
    client: async_nats::Client,
    http: reqwest::Client,
    token: String,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    use async_nats::jetstream::{self, consumer};
    let machine_id = tools.machine_id.clone();
    let name = format!("machine_{machine_id}_tool-installation_consumer");
    let context = jetstream::new(client.clone());
    let stream = context
        .get_stream("TOOL_INSTALLATION")
        .await
        .context("the TOOL_INSTALLATION stream is not there")?;
    let consumer = stream
        .get_or_create_consumer(
            &name,
            consumer::pull::Config {
                durable_name: Some(name.clone()),
                filter_subjects: vec![
                    format!("machine.{machine_id}.tool-installation"),
                    format!("machine.{machine_id}.tool-uninstall"),
                ],
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: Duration::from_secs(15 * 60),
                ..Default::default()
            },
        )
        .await
        .context("cannot create the tool installation consumer")?;
    let mut messages = consumer.messages().await?;
    loop {
        let message = tokio::select! {
            () = stop.cancelled() => return Ok(()),
            message = messages.next() => message,
        };
        let Some(message) = message else {
            anyhow::bail!("the tool installation consumer ended");
        };
        let message =
            message.map_err(|error| anyhow::anyhow!("reading a tool message: {error}"))?;
        let uninstall = message.subject.ends_with(".tool-uninstall");
        let outcome = match serde_json::from_slice::<Installation>(&message.payload) {
            Err(error) => Err(ToolError::Refused(format!(
                "not a tool installation message: {error}"
            ))),
            Ok(installation) if uninstall => tools.uninstall(&installation).await.map(|()| None),
            Ok(installation) => tools.install(&http, &token, &installation).await.map(Some),
        };
        match outcome {
            Ok(Some(report)) => {
                let installed = serde_json::json!({
                    "machineId": machine_id,
                    "agentType": report.tool_agent_id,
                    "version": report.version,
                });
                client
                    .publish(
                        format!("machine.{machine_id}.installed-agent"),
                        installed.to_string().into(),
                    )
                    .await?;
                if let Some(agent_tool_id) = &report.agent_tool_id {
                    let connection = serde_json::json!({
                        "toolType": report.tool_type,
                        "agentToolId": agent_tool_id,
                    });
                    client
                        .publish(
                            format!("machine.{machine_id}.tool-connection"),
                            connection.to_string().into(),
                        )
                        .await?;
                }
            }
            Ok(None) => {}
            Err(ToolError::Refused(why)) => {
                tracing::error!(why, subject = %message.subject, "a tool message was not carried out");
            }
            Err(ToolError::Retry(why)) => {
                let attempt = message.info().map_or(1, |info| info.delivered);
                let delay =
                    Duration::from_secs(30 * u64::try_from(attempt.clamp(1, 20)).unwrap_or(20));
                tracing::warn!(
                    why,
                    retry_in_seconds = delay.as_secs(),
                    "a tool message will be tried again"
                );
                message
                    .ack_with(jetstream::AckKind::Nak(Some(delay)))
                    .await
                    .map_err(|error| anyhow::anyhow!("handing a tool message back: {error}"))?;
                continue;
            }
        }
        message
            .ack()
            .await
            .map_err(|error| anyhow::anyhow!("acknowledging a tool message: {error}"))?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_filled_and_unknown_ones_refused() {
        let values = [
            (
                "${client.serverUrl}".to_owned(),
                "https://a:8443".to_owned(),
            ),
            (
                "${client.assetPath.osqueryd}".to_owned(),
                "/s/osqueryd".to_owned(),
            ),
        ];
        assert_eq!(
            substitute("--url=${client.serverUrl}", &values).unwrap(),
            "--url=https://a:8443"
        );
        assert_eq!(
            substitute("${client.assetPath.osqueryd}", &values).unwrap(),
            "/s/osqueryd"
        );
        let refused = substitute("${client.userHome}/x", &values).unwrap_err();
        assert!(
            refused.to_string().contains("${client.userHome}"),
            "{refused}"
        );
    }

    #[test]
    fn names_cannot_leave_the_tools_dir() {
        for bad in ["..", "../x", "a/b", ".hidden", ""] {
            assert!(safe_name("f", bad).is_err(), "{bad}");
        }
        assert!(safe_name("f", "meshagent").is_ok());
        assert_eq!(
            origin("https://Appliance:8443/clients/x"),
            origin("https://appliance:8443")
        );
        assert_ne!(
            origin("https://github.com/x"),
            origin("https://appliance:443")
        );
    }
}
