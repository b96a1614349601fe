//! The simulated agents of `tests/load/agents.sh`. Each one does what OpenFrame's agent does on
//! the wire: registers (`POST /clients/api/agents/register` with the initial key), gets a token
//! (`POST /clients/oauth/token`, client credentials), opens `wss://…/ws/nats?authorization=…`,
//! and publishes `machine.{id}.heartbeat` every INTERVAL seconds, answering the server's PINGs.
//! It speaks raw NATS over the WebSocket (not async-nats), so ten thousand agents fit in one
//! small process. Prints one JSON line at the end:
//!
//! `{"agents":…,"registered":…,"connected":…,"heartbeats":…,"errors":…,"dropped":…}`
//!
//!   agent_swarm URL CA_FILE INITIAL_KEY ORG AGENTS INTERVAL_S SECONDS CONNECTS_PER_S

#![allow(clippy::print_stdout, clippy::print_stderr)] // Its output is what the load script reads.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::{SinkExt, StreamExt};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio_tungstenite::tungstenite::Message;

#[derive(Debug, Default)]
struct Counters {
    registered: AtomicU64,
    connected: AtomicU64,
    heartbeats: AtomicU64,
    errors: AtomicU64,
    dropped: AtomicU64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, ca, key, org, agents, interval, seconds, rate] = args.as_slice() else {
        anyhow::bail!(
            "usage: agent_swarm URL CA_FILE INITIAL_KEY ORG AGENTS INTERVAL_S SECONDS CONNECTS_PER_S"
        );
    };
    let agents: usize = agents.parse().context("AGENTS")?;
    let interval = Duration::from_secs(interval.parse().context("INTERVAL_S")?);
    let run_for = Duration::from_secs(seconds.parse().context("SECONDS")?);
    let rate: u64 = rate.parse().context("CONNECTS_PER_S")?;
    let base = url::Url::parse(url).context("URL")?;
    let port = base.port().unwrap_or(443);
    let address = format!("{}:{port}", base.host_str().unwrap_or("127.0.0.1"));

    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_file(ca).context("CA_FILE")?)?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let http = reqwest::Client::builder()
        .tls_backend_preconfigured(tls.clone())
        .build()?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(tls));
    let counters = Arc::new(Counters::default());

    // Registration and tokens, 16 at a time.
    let started = Instant::now();
    let machines: Vec<(String, String)> = futures_util::stream::iter(0..agents)
        .map(|n| {
            let (http, url, key, org, counters) = (&http, url, key, org, &counters);
            async move {
                let result = enroll(http, url, key, org, n).await;
                match result {
                    Ok(machine) => {
                        counters.registered.fetch_add(1, Ordering::Relaxed);
                        Some(machine)
                    }
                    Err(error) => {
                        eprintln!("agent {n}: {error:#}");
                        counters.errors.fetch_add(1, Ordering::Relaxed);
                        None
                    }
                }
            }
        })
        .buffer_unordered(16)
        .filter_map(|machine| async move { machine })
        .collect()
        .await;
    eprintln!(
        "registered {} agents in {:.1} s",
        machines.len(),
        started.elapsed().as_secs_f64()
    );

    // Connections, CONNECTS_PER_S a second; each agent's first heartbeat at a random point of
    // its interval, as real agents started at different times.
    let connect_gap = Duration::from_micros(1_000_000 / rate.max(1));
    let until = Instant::now() + run_for;
    let mut tasks = Vec::with_capacity(machines.len());
    for (n, (machine_id, token)) in machines.into_iter().enumerate() {
        let (connector, address, counters) = (connector.clone(), address.clone(), counters.clone());
        let start_after = connect_gap * u32::try_from(n).unwrap_or(u32::MAX);
        let offset = interval.mul_f64((n as f64 * 0.618_034).fract());
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(start_after).await;
            if let Err(error) = heartbeat(
                &connector,
                &address,
                port,
                &machine_id,
                &token,
                interval,
                offset,
                until,
                &counters,
            )
            .await
            {
                eprintln!("agent {machine_id}: {error:#}");
                counters.errors.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let reporter = {
        let counters = counters.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(10)).await;
                eprintln!(
                    "connected {} heartbeats {} errors {} dropped {}",
                    counters.connected.load(Ordering::Relaxed),
                    counters.heartbeats.load(Ordering::Relaxed),
                    counters.errors.load(Ordering::Relaxed),
                    counters.dropped.load(Ordering::Relaxed)
                );
            }
        })
    };
    for task in tasks {
        let _ = task.await;
    }
    reporter.abort();
    println!(
        "{}",
        serde_json::json!({
            "agents": agents,
            "registered": counters.registered.load(Ordering::Relaxed),
            "connected": counters.connected.load(Ordering::Relaxed),
            "heartbeats": counters.heartbeats.load(Ordering::Relaxed),
            "errors": counters.errors.load(Ordering::Relaxed),
            "dropped": counters.dropped.load(Ordering::Relaxed),
        })
    );
    Ok(())
}

/// Registers machine `n`; returns its id and an access token.
async fn enroll(
    http: &reqwest::Client,
    url: &str,
    key: &str,
    org: &str,
    n: usize,
) -> anyhow::Result<(String, String)> {
    let enrolled: serde_json::Value = http
        .post(format!("{url}/clients/api/agents/register"))
        .header("X-Initial-Key", key)
        .json(&serde_json::json!({
            "hostname": format!("swarm-{n:05}"),
            "organizationId": org,
            "agentVersion": "0.0.0-swarm",
            "osType": "LINUX",
        }))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let field = |name: &str| {
        enrolled[name]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("no {name} in {enrolled}"))
    };
    let (machine_id, client_id, secret) = (
        field("machineId")?,
        field("clientId")?,
        field("clientSecret")?,
    );
    let tokens: serde_json::Value = http
        .post(format!("{url}/clients/oauth/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", client_id.as_str()),
            ("client_secret", secret.as_str()),
        ])
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let token = tokens["accessToken"]
        .as_str()
        .with_context(|| format!("no accessToken in {tokens}"))?
        .to_owned();
    Ok((machine_id, token))
}

/// One agent's session until `until`.
#[allow(clippy::too_many_arguments)]
async fn heartbeat(
    connector: &tokio_rustls::TlsConnector,
    address: &str,
    port: u16,
    machine_id: &str,
    token: &str,
    interval: Duration,
    offset: Duration,
    until: Instant,
    counters: &Counters,
) -> anyhow::Result<()> {
    let tcp = tokio::net::TcpStream::connect(address).await?;
    tcp.set_nodelay(true)?;
    let tls = connector
        .connect(ServerName::try_from("localhost")?.to_owned(), tcp)
        .await?;
    let url = format!("wss://localhost:{port}/ws/nats?authorization={token}");
    let (mut socket, _) = tokio_tungstenite::client_async(url, tls).await?;
    socket
        .send(Message::Binary(
            "CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":true,\"lang\":\"swarm\",\"version\":\"0\"}\r\nPING\r\n"
                .into(),
        ))
        .await?;
    counters.connected.fetch_add(1, Ordering::Relaxed);
    let publish = format!("PUB machine.{machine_id}.heartbeat 2\r\n{{}}\r\n");
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + offset, interval);
    let deadline = tokio::time::Instant::from_std(until);
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(deadline) => break,
            _ = ticks.tick() => {
                socket.send(Message::Binary(publish.clone().into())).await?;
                counters.heartbeats.fetch_add(1, Ordering::Relaxed);
            }
            frame = socket.next() => match frame {
                Some(Ok(Message::Binary(data))) => {
                    let text = String::from_utf8_lossy(&data);
                    if text.contains("PING\r\n") {
                        socket.send(Message::Binary("PONG\r\n".into())).await?;
                    }
                    if text.contains("-ERR") {
                        eprintln!("agent {machine_id}: {}", text.trim());
                        counters.errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => {
                    counters.dropped.fetch_add(1, Ordering::Relaxed);
                    counters.connected.fetch_sub(1, Ordering::Relaxed);
                    return Ok(());
                }
            }
        }
    }
    let _ = socket.close(None).await;
    Ok(())
}
