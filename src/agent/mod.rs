//! The endpoint agent (`openframe agent run`), speaking OpenFrame's client protocol so either
//! side can be swapped for OpenFrame's own: it registers with the initial key
//! (`POST /clients/api/agents/register`), keeps its credential in its state dir, takes tokens
//! (`POST /clients/oauth/token`, refreshed before they expire), and talks NATS over
//! `wss://…/ws/nats`: heartbeats, script and command executions, cancellations, and results.
//!
//! It is a subcommand of the same binary: the package then carries one file, and the agent's
//! code paths touch none of the appliance's stores, so its resident memory stays small.
//!
//! - **Trust**: with `--ca-file` only that certificate (bundle) is trusted for the server;
//!   without it, the system's roots.
//! - **Results** go through a durable outbox: written to the state dir before they are sent,
//!   sent as requests, removed once the appliance answers that it stored them, and sent again
//!   at the next heartbeat, reconnect or restart until then. The server takes one result per
//!   execution and machine, so a repeat changes nothing.
//! - It runs only what is addressed to it: it subscribes to its own subjects, and drops a
//!   message naming another machine.
//! - A revoked credential (the server answers 401 to the token grant) ends the agent with an
//!   error that says to register again; an unreachable server is retried with backoff.

pub mod cli;
pub mod exec;
pub mod inventory;
pub mod setup;
pub mod state;
pub mod tools;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use futures_util::StreamExt as _;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use state::{Credentials, OutboxEntry, StateDir};

/// How `openframe agent run` was asked to run.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    /// `https://host:port` of the appliance.
    pub server: String,
    /// The tenant's registration secret (needed only to register).
    pub initial_key: Option<String>,
    pub organization_id: Option<String>,
    /// `key=value` tags sent at registration.
    pub tags: Vec<(String, String)>,
    pub state_dir: PathBuf,
    pub ca_file: Option<PathBuf>,
    /// OpenFrame's agent heartbeats every 60 s.
    pub heartbeat: Duration,
    /// Overrides the hostname reported (default: the machine's).
    pub hostname: Option<String>,
    /// How often the inventory is collected again (and reported when it changed).
    pub inventory_every: Duration,
}

/// Why the agent stopped for good.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("{0}")]
    Revoked(String),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

fn http_client(ca_file: Option<&std::path::Path>) -> anyhow::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none());
    if let Some(path) = ca_file {
        let pem = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let certificates = reqwest::Certificate::from_pem_bundle(&pem)
            .with_context(|| format!("{} is not a PEM certificate", path.display()))?;
        builder = builder.tls_certs_only(certificates);
    }
    Ok(builder.build()?)
}

fn hostname(options: &AgentOptions) -> String {
    options.hostname.clone().unwrap_or_else(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|name| name.trim().to_owned())
            .unwrap_or_else(|_| "unknown".into())
    })
}

/// Registers with the initial key; the credential is saved before anything else happens.
async fn register(
    http: &reqwest::Client,
    options: &AgentOptions,
    state: &StateDir,
) -> Result<Credentials, AgentError> {
    let key = options.initial_key.as_deref().ok_or_else(|| {
        anyhow::anyhow!("this machine is not registered yet: give --initial-key and --org")
    })?;
    let mut tags: Vec<Value> = Vec::new();
    for (key, value) in &options.tags {
        tags.push(json!({"key": key, "values": [value]}));
    }
    // OpenFrame's registration carries the device data; the full inventory follows over NATS.
    let machine = inventory::collect(hostname(options));
    let body = json!({
        "hostname": machine.hostname,
        "organizationId": options.organization_id,
        "agentVersion": env!("CARGO_PKG_VERSION"),
        "osType": machine.os_type,
        "osVersion": machine.os_version,
        "ip": machine.ip,
        "macAddress": machine.mac_address,
        "osUuid": machine.os_uuid,
        "serialNumber": machine.serial_number,
        "manufacturer": machine.manufacturer,
        "model": machine.model,
        "timezone": machine.timezone,
        "tags": tags,
    });
    let response = http
        .post(format!("{}/clients/api/agents/register", options.server))
        .header("X-Initial-Key", key)
        .json(&body)
        .send()
        .await
        .context("the server could not be reached to register")?;
    let status = response.status();
    let answer: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        return Err(AgentError::Revoked(format!(
            "registration refused ({status}): {}",
            answer["message"].as_str().unwrap_or("no reason given")
        )));
    }
    let text = |field: &str| {
        answer[field]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow::anyhow!("the registration answer has no {field}"))
    };
    let credentials = Credentials {
        server: options.server.clone(),
        machine_id: text("machineId")?,
        client_id: text("clientId")?,
        client_secret: text("clientSecret")?,
        access_token: String::new(),
        refresh_token: String::new(),
        expires_at_ms: 0,
    };
    state.save_credentials(&credentials)?;
    tracing::info!(machine_id = %credentials.machine_id, "registered");
    Ok(credentials)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
        })
}

/// A fresh access token: the refresh token if there is one, else the client credential.
async fn refresh(
    http: &reqwest::Client,
    state: &StateDir,
    credentials: &mut Credentials,
) -> Result<(), AgentError> {
    let mut attempts: Vec<Vec<(&str, String)>> = Vec::new();
    if !credentials.refresh_token.is_empty() {
        attempts.push(vec![
            ("grant_type", "refresh_token".into()),
            ("refresh_token", credentials.refresh_token.clone()),
            ("client_id", credentials.client_id.clone()),
        ]);
    }
    attempts.push(vec![
        ("grant_type", "client_credentials".into()),
        ("client_id", credentials.client_id.clone()),
        ("client_secret", credentials.client_secret.clone()),
    ]);
    let mut refused = None;
    for form in attempts {
        let response = http
            .post(format!("{}/clients/oauth/token", credentials.server))
            .form(&form)
            .send()
            .await
            .context("the server could not be reached for a token")?;
        let status = response.status();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            credentials.access_token = answer["accessToken"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            credentials.refresh_token = answer["refreshToken"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let lifetime = answer["expiresIn"].as_i64().unwrap_or(300);
            credentials.expires_at_ms = now_ms() + lifetime * 1000;
            state.save_credentials(credentials)?;
            if let Err(error) = state.share_token(&credentials.access_token) {
                tracing::warn!(%error, "the token could not be shared with the tool agents");
            }
            return Ok(());
        }
        if status.is_server_error() {
            return Err(anyhow::anyhow!("the token endpoint answered {status}").into());
        }
        refused = Some(format!(
            "{status}: {}",
            answer["message"].as_str().unwrap_or("no reason given")
        ));
    }
    Err(AgentError::Revoked(format!(
        "the server refused this machine's credential ({}); it was revoked or the machine was \
         removed: register again with --initial-key",
        refused.unwrap_or_default()
    )))
}

/// The stored credential, if it is for `options.server`.
fn known_credentials(
    options: &AgentOptions,
    state: &StateDir,
) -> Result<Option<Credentials>, AgentError> {
    match state.credentials()? {
        Some(known) if known.server == options.server => Ok(Some(known)),
        Some(known) => Err(anyhow::anyhow!(
            "{} belongs to {}; use another --state-dir for {}",
            options.state_dir.display(),
            known.server,
            options.server
        )
        .into()),
        None => Ok(None),
    }
}

/// Registers (unless already registered) and takes a first token, proving the credential.
async fn enroll(options: &AgentOptions) -> Result<Credentials, AgentError> {
    let state = StateDir::open(&options.state_dir)?;
    let http = http_client(options.ca_file.as_deref())?;
    let mut credentials = match known_credentials(options, &state)? {
        Some(known) => known,
        None => register(&http, options, &state).await?,
    };
    refresh(&http, &state, &mut credentials).await?;
    Ok(credentials)
}

fn nats_url(server: &str, token: &str) -> String {
    let ws = server
        .replacen("https://", "wss://", 1)
        .replacen("http://", "ws://", 1);
    format!("{ws}/ws/nats?authorization={token}")
}

/// Connects to NATS once with the current token and makes one round trip.
async fn probe_nats(
    credentials: &Credentials,
    ca_file: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let mut connect = async_nats::ConnectOptions::new()
        .ignore_discovered_servers()
        .max_reconnects(Some(1));
    if let Some(path) = ca_file {
        connect = connect.add_root_certificates(path.to_path_buf());
    }
    let client = tokio::time::timeout(
        Duration::from_secs(15),
        connect.connect(nats_url(&credentials.server, &credentials.access_token)),
    )
    .await
    .context("connecting to NATS timed out")?
    .context("cannot connect to NATS")?;
    anyhow::ensure!(
        delivered(&client, &credentials.machine_id).await,
        "connected, but a round trip through NATS did not come back"
    );
    Ok(())
}

/// Runs the agent until `stop`. Transient trouble (network, server restarts) is retried with
/// backoff; a refused credential ends it with [`AgentError::Revoked`].
pub async fn run(options: AgentOptions, stop: CancellationToken) -> Result<(), AgentError> {
    // The NATS client's TLS needs a process-wide provider; the appliance's is aws-lc-rs.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let state = StateDir::open(&options.state_dir)?;
    let http = http_client(options.ca_file.as_deref())?;
    let mut credentials = match known_credentials(&options, &state)? {
        Some(known) => known,
        None => loop {
            match register(&http, &options, &state).await {
                Ok(credentials) => break credentials,
                Err(AgentError::Other(error)) => {
                    tracing::warn!(%error, "registration failed; retrying in 10 s");
                    tokio::select! {
                        () = stop.cancelled() => return Ok(()),
                        () = tokio::time::sleep(Duration::from_secs(10)) => {}
                    }
                }
                Err(refused) => return Err(refused),
            }
        },
    };
    let tools = tools::Tools::new(
        state.clone(),
        &options.server,
        &credentials.machine_id,
        stop.clone(),
    );
    tools.start_installed();
    let mut failures: u32 = 0;
    while !stop.is_cancelled() {
        if credentials.expires_at_ms - now_ms() < 60_000 {
            match refresh(&http, &state, &mut credentials).await {
                Ok(()) => {}
                Err(AgentError::Revoked(why)) => return Err(AgentError::Revoked(why)),
                Err(AgentError::Other(error)) => {
                    failures += 1;
                    let delay = Duration::from_secs(2u64.saturating_pow(failures.min(5)));
                    tracing::warn!(%error, retry_in_seconds = delay.as_secs(), "no token");
                    tokio::select! {
                        () = stop.cancelled() => return Ok(()),
                        () = tokio::time::sleep(delay) => {}
                    }
                    continue;
                }
            }
        }
        failures = 0;
        // A session lasts until shortly before its token expires, then reconnects with a
        // fresh one (the token is part of the WebSocket URL).
        let until = Duration::from_millis(
            u64::try_from((credentials.expires_at_ms - now_ms() - 60_000).max(5_000))
                .unwrap_or(5_000),
        );
        let link = Link {
            options: &options,
            state: &state,
            credentials: &credentials,
            http: &http,
            tools: &tools,
        };
        if let Err(error) = session(&link, until, &stop).await {
            tracing::warn!(%error, "the NATS session ended; reconnecting");
            // The token may be what was refused (a revoked credential): take a new one first,
            // which also tells a revoked machine apart from a network failure.
            credentials.expires_at_ms = 0;
            tokio::select! {
                () = stop.cancelled() => return Ok(()),
                () = tokio::time::sleep(Duration::from_secs(2)) => {}
            }
        }
    }
    Ok(())
}

/// Sends what the outbox holds, as requests: an entry is removed once the appliance answers
/// that it stored (or refused for good) the result. Without an answer (no responders while the
/// appliance is starting, a timeout, a lost connection) it stays and goes again at the next
/// heartbeat or reconnect. nats-server having a message is not enough: core NATS drops what no
/// subscriber is listening for.
async fn drain_outbox(client: &async_nats::Client, state: &StateDir) {
    for (key, entry) in state.outbox() {
        let answered = tokio::time::timeout(
            Duration::from_secs(10),
            client.request(entry.subject.clone(), entry.payload.clone().into()),
        )
        .await;
        if !matches!(answered, Ok(Ok(_))) {
            return;
        }
        if let Err(error) = state.outbox_remove(&key) {
            tracing::warn!(%error, key, "a delivered result could not be removed from the outbox");
        }
    }
}

/// Whether everything published so far has reached nats-server: a request nobody answers comes
/// back "no responders" only after the hub passed on what came before it.
async fn delivered(client: &async_nats::Client, machine_id: &str) -> bool {
    let asked = tokio::time::timeout(
        Duration::from_secs(10),
        client.request(format!("machine.{machine_id}.sync"), "".into()),
    )
    .await;
    matches!(asked, Ok(Err(error)) if error.kind() == async_nats::RequestErrorKind::NoResponders)
}

type Running = Arc<Mutex<HashMap<String, CancellationToken>>>;

/// Reports the hostname (OpenFrame's `machine.{id}.hostname`) and the inventory
/// (`machine.{id}.inventory`) when they differ from what this session last reported; free disk
/// space counts as a change when it moves by a GiB or more.
async fn report_machine(
    client: &async_nats::Client,
    options: &AgentOptions,
    machine_id: &str,
    reported: &mut Option<crate::inventory::InventoryReport>,
) -> anyhow::Result<()> {
    let options = options.clone();
    let current = tokio::task::spawn_blocking(move || inventory::collect(hostname(&options)))
        .await
        .context("collecting the inventory failed")?;
    let coarse = |inventory: &crate::inventory::InventoryReport| {
        let mut coarse = inventory.clone();
        for disk in &mut coarse.hardware.disks {
            disk.free_bytes >>= 30;
        }
        coarse
    };
    let before = reported.as_ref().map(coarse);
    if before.as_ref() == Some(&coarse(&current)) {
        return Ok(());
    }
    if before.as_ref().map(|before| &before.hostname) != Some(&current.hostname) {
        publish_stored(
            client,
            format!("machine.{machine_id}.hostname"),
            json!({"hostname": current.hostname})
                .to_string()
                .into_bytes(),
        )
        .await?;
    }
    publish_stored(
        client,
        format!("machine.{machine_id}.inventory"),
        serde_json::to_vec(&current)?,
    )
    .await?;
    tracing::info!(machine_id, "inventory reported");
    *reported = Some(current);
    Ok(())
}

/// Publishes a report into the appliance's JetStream stream for `subject` and waits for the
/// stream's acknowledgement. A plain publish is dropped when the stream is not there yet (an
/// appliance still starting), and the report would then never arrive.
async fn publish_stored(
    client: &async_nats::Client,
    subject: String,
    payload: Vec<u8>,
) -> anyhow::Result<()> {
    let reply = tokio::time::timeout(
        Duration::from_secs(10),
        client.request(subject.clone(), payload.into()),
    )
    .await
    .with_context(|| format!("no acknowledgement for {subject} within 10 s"))?
    .with_context(|| format!("{subject} was not stored"))?;
    let ack: Value = serde_json::from_slice(&reply.payload)
        .with_context(|| format!("{subject}: the acknowledgement is not JSON"))?;
    if ack.get("stream").is_none() || ack.get("error").is_some() {
        anyhow::bail!("{subject} was not stored: {ack}");
    }
    Ok(())
}

/// [`report_machine`], with a failure logged: whether the report went through.
async fn report(
    client: &async_nats::Client,
    options: &AgentOptions,
    machine_id: &str,
    reported: &mut Option<crate::inventory::InventoryReport>,
) -> bool {
    match report_machine(client, options, machine_id, reported).await {
        Ok(()) => true,
        Err(error) => {
            tracing::warn!(
                machine_id,
                error = format!("{error:#}"),
                "the inventory report will go again"
            );
            false
        }
    }
}

/// What a session works with.
struct Link<'a> {
    options: &'a AgentOptions,
    state: &'a StateDir,
    credentials: &'a Credentials,
    http: &'a reqwest::Client,
    tools: &'a Arc<tools::Tools>,
}

/// One NATS session: heartbeats, jobs, tool messages and results, until `until` passes or it
/// fails.
async fn session(link: &Link<'_>, until: Duration, stop: &CancellationToken) -> anyhow::Result<()> {
    let Link {
        options,
        state,
        credentials,
        ..
    } = *link;
    let machine_id = credentials.machine_id.clone();
    let url = nats_url(&options.server, &credentials.access_token);
    let mut connect = async_nats::ConnectOptions::new()
        .ignore_discovered_servers()
        .max_reconnects(Some(3))
        .reconnect_delay_callback(|attempt| {
            Duration::from_millis(500 * u64::try_from(attempt.min(6)).unwrap_or(6))
        })
        .name(format!("openframe-agent-{machine_id}"));
    if let Some(path) = &options.ca_file {
        connect = connect.add_root_certificates(path.clone());
    }
    let client = tokio::time::timeout(Duration::from_secs(30), connect.connect(url))
        .await
        .context("connecting to NATS timed out")?
        .context("cannot connect to NATS")?;
    let mut scripts = client
        .subscribe(format!("machine.{machine_id}.script-execution"))
        .await?;
    let mut commands = client
        .subscribe(format!("machine.{machine_id}.command-execution"))
        .await?;
    let mut cancels = client
        .subscribe(format!("machine.{machine_id}.command-cancel"))
        .await?;
    tracing::info!(machine_id, "connected");
    let mut reported = None;
    // A report that was not acknowledged goes again at the next heartbeat.
    let mut report_due = !report(&client, options, &machine_id, &mut reported).await;
    drain_outbox(&client, state).await;
    // Tool messages come through a JetStream consumer; trouble there leaves scripts running.
    let session_over = stop.child_token();
    let _ends_with_session = session_over.clone().drop_guard();
    tokio::spawn(tools::follow(
        link.tools.clone(),
        client.clone(),
        link.http.clone(),
        credentials.access_token.clone(),
        session_over,
    ));
    let running: Running = Arc::default();
    let mut heartbeat = tokio::time::interval(options.heartbeat);
    let mut recheck = tokio::time::interval(options.inventory_every);
    recheck.reset();
    let deadline = tokio::time::sleep(until);
    tokio::pin!(deadline);
    loop {
        let (message, script) = tokio::select! {
            () = stop.cancelled() => return Ok(()),
            () = &mut deadline => return Ok(()),
            _ = heartbeat.tick() => {
                client.publish(format!("machine.{machine_id}.heartbeat"), "{}".into()).await?;
                if client.connection_state() != async_nats::connection::State::Connected {
                    anyhow::bail!("the connection to NATS is down");
                }
                if report_due {
                    report_due = !report(&client, options, &machine_id, &mut reported).await;
                }
                // Results the appliance has not answered yet go again (a repeat changes nothing).
                if !state.outbox().is_empty() {
                    let (client, state) = (client.clone(), state.clone());
                    tokio::spawn(async move { drain_outbox(&client, &state).await });
                }
                continue;
            }
            _ = recheck.tick() => {
                report_due = !report(&client, options, &machine_id, &mut reported).await;
                continue;
            }
            message = scripts.next() => (message, true),
            message = commands.next() => (message, false),
            message = cancels.next() => {
                let Some(message) = message else { anyhow::bail!("the subscription ended") };
                if let Ok(body) = serde_json::from_slice::<Value>(&message.payload)
                    && let Some(execution) = body["executionId"].as_str()
                    && let Some(token) = running.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(execution)
                {
                    token.cancel();
                }
                continue;
            }
        };
        let Some(message) = message else {
            anyhow::bail!("the subscription ended");
        };
        let job: exec::Job = match serde_json::from_slice(&message.payload) {
            Ok(job) => job,
            Err(error) => {
                tracing::warn!(%error, "a job that does not parse was dropped");
                continue;
            }
        };
        if job
            .machine_id
            .as_deref()
            .is_some_and(|named| named != machine_id)
        {
            tracing::warn!(execution_id = %job.execution_id, "a job for another machine was dropped");
            continue;
        }
        let cancel = CancellationToken::new();
        running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(job.execution_id.clone(), cancel.clone());
        let (client, state, running, machine_id) = (
            client.clone(),
            state.clone(),
            running.clone(),
            machine_id.clone(),
        );
        tokio::spawn(async move {
            let outcome = exec::run(&job, script, &state.work_dir(), cancel).await;
            running
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(&job.execution_id);
            let kind = if script {
                "script-execution"
            } else {
                "command-execution"
            };
            let entry = OutboxEntry {
                subject: format!("machine.{machine_id}.{kind}.result"),
                payload: exec::result(&job, &machine_id, &outcome).to_string(),
            };
            let key = format!("{}:{machine_id}", job.execution_id);
            if let Err(error) = state.outbox_put(&key, &entry) {
                tracing::error!(%error, "a result could not be kept in the outbox");
            }
            drain_outbox(&client, &state).await;
        });
    }
}
