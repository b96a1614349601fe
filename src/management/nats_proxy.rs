//! `/ws/nats`: agents speak NATS over a WebSocket to the gateway, and the gateway speaks it to
//! the NATS server's loopback client port, reading every operation the agent sends.
//!
//! Enforcement lives here, in the proxy, because the proxy is where the verified machine id is
//! known: nats-server (Debian's 2.9) has no per-connection identity for a shared user short of
//! operator-mode JWTs or a config reload per machine. So:
//! - the agent's `CONNECT` is replaced by one with the proxy's own NATS user (`agents`, whose
//!   server-side permissions are the union of what any machine may do: a second fence);
//! - each `PUB`/`HPUB`/`SUB` is checked against [`MachineScope`]; a refused one is dropped and
//!   answered with nats-server's own `-ERR 'Permissions Violation for Publish to "…"'` (or
//!   `Subscription to`), after which the connection carries on, as with nats-server;
//! - an over-long control line or payload ends the connection as nats-server would, and a
//!   machine publishing faster than its budget gets `-ERR 'Publish Rate Exceeded'` for the
//!   excess (its messages are dropped, nobody else's);
//! - what the server sends goes back unchanged: it only ever delivers what the proxy let the
//!   agent subscribe to.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::nats_rules::MachineScope;
use crate::error::ApiError;
use crate::gateway::auth::Agent;
use crate::startup::AppState;

/// nats-server's default `max_control_line`.
const MAX_CONTROL_LINE: usize = 4096;
/// The largest message an agent may publish (script outputs are capped at 64 KiB each).
pub const MAX_AGENT_PAYLOAD: usize = 1024 * 1024;
/// Publishes per second a machine may sustain, and the burst above it.
const PUBLISH_RATE: f64 = 100.0;
const PUBLISH_BURST: f64 = 1000.0;

/// Where the proxy connects and as whom.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub address: String,
    pub credentials: Option<(String, String)>,
}

/// The proxy's live sessions, and the signal that ends them at shutdown.
#[derive(Debug, Default)]
pub struct Sessions {
    open: AtomicUsize,
    stop: CancellationToken,
}

impl Sessions {
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Ends every session (the agents reconnect to whoever serves next).
    pub fn close_all(&self) {
        self.stop.cancel();
    }
}

/// `GET /ws/nats` (an agent token; the gateway has checked it and the machine's epoch).
pub async fn upgrade(
    State(state): State<AppState>,
    agent: Agent,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let upgrade = upgrade.map_err(|rejection| {
        ApiError::InvalidInput(format!(
            "/ws/nats speaks NATS over a WebSocket: open it with a WebSocket upgrade ({rejection})"
        ))
    })?;
    let management = state.management.clone();
    let Some(upstream) = management.upstream.clone() else {
        return Err(ApiError::NotFound(
            "NATS is off on this appliance (nats.mode = \"off\")".into(),
        ));
    };
    // Connect first: while NATS is down the agent gets a 503 and retries, rather than a
    // WebSocket that closes at once.
    let server = match tokio::time::timeout(
        Duration::from_secs(5),
        TcpStream::connect(upstream.address.as_str()),
    )
    .await
    {
        Ok(Ok(server)) => server,
        _ => {
            return Err(ApiError::Overloaded(
                "the NATS server is not reachable right now; retry shortly".into(),
            ));
        }
    };
    let _ = server.set_nodelay(true);
    management.presence.seen(&agent.tenant, &agent.machine_id);
    let response = upgrade
        .read_buffer_size(4096)
        .write_buffer_size(0)
        .max_write_buffer_size(4 * MAX_AGENT_PAYLOAD)
        .max_message_size(MAX_AGENT_PAYLOAD + MAX_CONTROL_LINE)
        .max_frame_size(MAX_AGENT_PAYLOAD + MAX_CONTROL_LINE)
        .on_upgrade(move |socket| async move {
            let sessions = &management.sessions;
            sessions.open.fetch_add(1, Ordering::Relaxed);
            let scope = MachineScope::new(&agent.machine_id);
            let ended = relay(
                socket,
                server,
                &upstream,
                &scope,
                &agent.machine_id,
                sessions.stop.clone(),
            )
            .await;
            sessions.open.fetch_sub(1, Ordering::Relaxed);
            tracing::debug!(tenant = %agent.tenant, machine_id = %agent.machine_id, why = ended, "agent NATS session ended");
        });
    Ok(response)
}

/// Relays until either side closes; returns why it ended.
async fn relay(
    mut socket: WebSocket,
    mut server: TcpStream,
    upstream: &Upstream,
    scope: &MachineScope,
    machine_id: &str,
    stop: CancellationToken,
) -> &'static str {
    let mut from_agent = Parser::default();
    let mut from_server = BytesMut::with_capacity(4096);
    let mut budget = Budget::new();
    loop {
        tokio::select! {
            () = stop.cancelled() => {
                let _ = socket.send(Message::Close(None)).await;
                return "the appliance is stopping";
            }
            message = socket.recv() => {
                let data = match message {
                    Some(Ok(Message::Binary(data))) => data,
                    Some(Ok(Message::Text(text))) => Bytes::from(text.as_str().to_owned()),
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    Some(Ok(Message::Close(_))) | None => return "the agent closed",
                    Some(Err(_)) => return "the agent's connection failed",
                };
                from_agent.buffer.extend_from_slice(&data);
                let mut to_server = Vec::new();
                let mut to_agent = Vec::new();
                let outcome = from_agent.drain(scope, machine_id, upstream, &mut budget, &mut to_server, &mut to_agent);
                if !to_server.is_empty() && server.write_all(&to_server).await.is_err() {
                    return "the NATS server closed";
                }
                if !to_agent.is_empty()
                    && socket.send(Message::Binary(Bytes::from(to_agent))).await.is_err()
                {
                    return "the agent's connection failed";
                }
                if let Err(why) = outcome {
                    let _ = socket.send(Message::Close(None)).await;
                    return why;
                }
            }
            read = server.read_buf(&mut from_server) => {
                match read {
                    Ok(0) | Err(_) => {
                        let _ = socket.send(Message::Close(None)).await;
                        return "the NATS server closed";
                    }
                    Ok(_) => {
                        let chunk = from_server.split().freeze();
                        if socket.send(Message::Binary(chunk)).await.is_err() {
                            return "the agent's connection failed";
                        }
                        if from_server.capacity() < 1024 {
                            from_server.reserve(4096);
                        }
                    }
                }
            }
        }
    }
}

/// A token bucket for one connection's publishes.
#[derive(Debug)]
struct Budget {
    tokens: f64,
    at: Instant,
    warned: Option<Instant>,
}

impl Budget {
    fn new() -> Budget {
        Budget {
            tokens: PUBLISH_BURST,
            at: Instant::now(),
            warned: None,
        }
    }

    fn take(&mut self) -> bool {
        let now = Instant::now();
        let elapsed = now.duration_since(self.at).as_secs_f64();
        self.at = now;
        self.tokens = (self.tokens + elapsed * PUBLISH_RATE).min(PUBLISH_BURST);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The client-to-server half of the NATS protocol, parsed just enough to check it.
#[derive(Debug, Default)]
struct Parser {
    buffer: BytesMut,
    connected: bool,
    /// A `PUB`/`HPUB` whose payload (and its CRLF) is still arriving.
    pending: Option<Pending>,
}

#[derive(Debug)]
struct Pending {
    /// The control line, as it will be forwarded.
    line: Vec<u8>,
    subject: String,
    /// Payload bytes plus the trailing CRLF.
    length: usize,
    allowed: bool,
}

impl Parser {
    /// Takes every complete operation out of the buffer: forwards what is allowed, answers
    /// what is not. `Err` ends the connection.
    fn drain(
        &mut self,
        scope: &MachineScope,
        machine_id: &str,
        upstream: &Upstream,
        budget: &mut Budget,
        to_server: &mut Vec<u8>,
        to_agent: &mut Vec<u8>,
    ) -> Result<(), &'static str> {
        loop {
            if let Some(pending) = &self.pending {
                if self.buffer.len() < pending.length {
                    return Ok(());
                }
                let body = self.buffer.split_to(pending.length);
                let Some(pending) = self.pending.take() else {
                    return Ok(());
                };
                if !body.ends_with(b"\r\n") {
                    to_agent.extend_from_slice(b"-ERR 'Unknown Protocol Operation'\r\n");
                    return Err("a payload did not end where its size said");
                }
                let payload = &body[..body.len() - 2];
                // The header block of an HPUB is part of what a consumer create request sends
                // only in theory; the JSON body follows it. Check the whole payload.
                let allowed = pending.allowed && scope.may_send(&pending.subject, payload);
                if !allowed {
                    refuse(to_agent, "Publish", &pending.subject);
                } else if !budget.take() {
                    if budget
                        .warned
                        .is_none_or(|at| at.elapsed() > Duration::from_secs(60))
                    {
                        budget.warned = Some(Instant::now());
                        tracing::warn!(
                            machine_id,
                            "an agent publishes faster than its budget; excess messages are dropped"
                        );
                    }
                    to_agent.extend_from_slice(b"-ERR 'Publish Rate Exceeded'\r\n");
                } else {
                    to_server.extend_from_slice(&pending.line);
                    to_server.extend_from_slice(&body);
                }
                continue;
            }
            let Some(end) = self.buffer.windows(2).position(|pair| pair == b"\r\n") else {
                if self.buffer.len() > MAX_CONTROL_LINE {
                    to_agent.extend_from_slice(b"-ERR 'Maximum Control Line Exceeded'\r\n");
                    return Err("a control line was too long");
                }
                return Ok(());
            };
            if end > MAX_CONTROL_LINE {
                to_agent.extend_from_slice(b"-ERR 'Maximum Control Line Exceeded'\r\n");
                return Err("a control line was too long");
            }
            let line = self.buffer.split_to(end + 2);
            let text = std::str::from_utf8(&line[..end]).map_err(|_| {
                to_agent.extend_from_slice(b"-ERR 'Unknown Protocol Operation'\r\n");
                "a control line was not UTF-8"
            })?;
            let (op, args) = text
                .trim_start()
                .split_once([' ', '\t'])
                .unwrap_or((text.trim(), ""));
            let op = op.to_ascii_uppercase();
            if !self.connected && op != "CONNECT" {
                to_agent.extend_from_slice(b"-ERR 'Authorization Violation'\r\n");
                return Err("the agent did not start with CONNECT");
            }
            let fields: Vec<&str> = args.split_ascii_whitespace().collect();
            match op.as_str() {
                "CONNECT" => {
                    if self.connected {
                        to_agent.extend_from_slice(b"-ERR 'Unknown Protocol Operation'\r\n");
                        return Err("a second CONNECT");
                    }
                    self.connected = true;
                    to_server.extend_from_slice(&connect_line(args, machine_id, upstream));
                }
                "PING" | "PONG" => to_server.extend_from_slice(&line),
                "PUB" | "HPUB" => {
                    let sizes = if op == "PUB" { 1 } else { 2 };
                    if fields.len() < 1 + sizes || fields.len() > 2 + sizes {
                        to_agent.extend_from_slice(b"-ERR 'Unknown Protocol Operation'\r\n");
                        return Err("a malformed publish");
                    }
                    let Some(total) = fields.last().and_then(|size| size.parse::<usize>().ok())
                    else {
                        to_agent.extend_from_slice(b"-ERR 'Unknown Protocol Operation'\r\n");
                        return Err("a malformed publish size");
                    };
                    if total > MAX_AGENT_PAYLOAD {
                        to_agent.extend_from_slice(b"-ERR 'Maximum Payload Violation'\r\n");
                        return Err("a payload was too large");
                    }
                    let subject = fields[0].to_owned();
                    let reply_ok = match fields.len() - sizes {
                        2 => scope.may_subscribe(fields[1]) && !fields[1].contains(['*', '>']),
                        _ => true,
                    };
                    let allowed = reply_ok
                        && (subject.starts_with("$JS.API.CONSUMER.")
                            || scope.may_publish(&subject));
                    self.pending = Some(Pending {
                        line: line.to_vec(),
                        subject,
                        length: total + 2,
                        allowed,
                    });
                }
                "SUB" => {
                    if fields.len() < 2 || fields.len() > 3 {
                        to_agent.extend_from_slice(b"-ERR 'Unknown Protocol Operation'\r\n");
                        return Err("a malformed subscription");
                    }
                    if scope.may_subscribe(fields[0]) {
                        to_server.extend_from_slice(&line);
                    } else {
                        refuse(to_agent, "Subscription", fields[0]);
                    }
                }
                "UNSUB" => to_server.extend_from_slice(&line),
                _ => {
                    to_agent.extend_from_slice(b"-ERR 'Unknown Protocol Operation'\r\n");
                    return Err("an unknown protocol operation");
                }
            }
        }
    }
}

fn refuse(to_agent: &mut Vec<u8>, what: &str, subject: &str) {
    let subject: String = subject
        .chars()
        .filter(|c| !c.is_control() && *c != '\'')
        .take(256)
        .collect();
    to_agent.extend_from_slice(
        format!("-ERR 'Permissions Violation for {what} to \"{subject}\"'\r\n").as_bytes(),
    );
}

/// The agent's CONNECT, keeping its protocol options and replacing who it is.
fn connect_line(args: &str, machine_id: &str, upstream: &Upstream) -> Vec<u8> {
    let given: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(args.trim()).unwrap_or_default();
    let mut connect = serde_json::Map::new();
    for key in [
        "verbose",
        "pedantic",
        "lang",
        "version",
        "protocol",
        "echo",
        "headers",
        "no_responders",
    ] {
        if let Some(value) = given.get(key) {
            connect.insert(key.to_owned(), value.clone());
        }
    }
    connect.insert("tls_required".into(), false.into());
    connect.insert("name".into(), format!("agent_{machine_id}").into());
    if let Some((user, password)) = &upstream.credentials {
        connect.insert("user".into(), user.clone().into());
        connect.insert("pass".into(), password.clone().into());
    }
    let mut line = b"CONNECT ".to_vec();
    line.extend_from_slice(serde_json::Value::Object(connect).to_string().as_bytes());
    line.extend_from_slice(b"\r\n");
    line
}

/// The client address of a `nats://host:port` URL.
pub fn client_address(url: &str) -> Option<String> {
    let parsed = url::Url::parse(url).ok()?;
    let host = parsed.host_str()?;
    let port = parsed.port().unwrap_or(4222);
    Some(match host.parse::<std::net::IpAddr>() {
        Ok(ip) => SocketAddr::new(ip, port).to_string(),
        Err(_) => format!("{host}:{port}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: &str = "3f6c1c9e-0000-4000-8000-000000000001";

    fn run(input: &[u8]) -> (Result<(), &'static str>, String, String) {
        let upstream = Upstream {
            address: "127.0.0.1:4222".into(),
            credentials: Some(("agents".into(), "pw".into())),
        };
        let mut parser = Parser::default();
        parser.buffer.extend_from_slice(input);
        let (mut to_server, mut to_agent) = (Vec::new(), Vec::new());
        let outcome = parser.drain(
            &MachineScope::new(ME),
            ME,
            &upstream,
            &mut Budget::new(),
            &mut to_server,
            &mut to_agent,
        );
        (
            outcome,
            String::from_utf8(to_server).unwrap(),
            String::from_utf8(to_agent).unwrap(),
        )
    }

    #[test]
    fn connect_is_rewritten_with_the_proxys_user_and_the_machines_name() {
        let (outcome, server, agent) = run(
            b"CONNECT {\"verbose\":false,\"user\":\"openframe\",\"pass\":\"guess\",\"headers\":true,\"name\":\"x\"}\r\nPING\r\n",
        );
        assert_eq!(outcome, Ok(()));
        assert_eq!(agent, "");
        let (connect, rest) = server.split_once("\r\n").unwrap();
        let json: serde_json::Value =
            serde_json::from_str(connect.strip_prefix("CONNECT ").unwrap()).unwrap();
        assert_eq!(json["user"], "agents");
        assert_eq!(json["pass"], "pw");
        assert_eq!(json["name"], format!("agent_{ME}"));
        assert_eq!(json["headers"], true);
        assert_eq!(rest, "PING\r\n");
    }

    #[test]
    fn refused_operations_get_nats_servers_errors_and_the_rest_passes() {
        let input = format!(
            "CONNECT {{}}\r\nPUB machine.{ME}.heartbeat 2\r\n{{}}\r\nPUB machine.other.heartbeat 2\r\n{{}}\r\nSUB machine.other.> 1\r\nSUB machine.{ME}.> 2\r\nHPUB machine.{ME}.hostname 12 14\r\nNATS/1.0\r\n\r\nok\r\n"
        );
        let (outcome, server, agent) = run(input.as_bytes());
        assert_eq!(outcome, Ok(()));
        assert_eq!(
            agent,
            "-ERR 'Permissions Violation for Publish to \"machine.other.heartbeat\"'\r\n\
             -ERR 'Permissions Violation for Subscription to \"machine.other.>\"'\r\n"
        );
        assert!(server.contains(&format!("PUB machine.{ME}.heartbeat 2\r\n{{}}\r\n")));
        assert!(server.contains(&format!("SUB machine.{ME}.> 2\r\n")));
        assert!(server.contains("NATS/1.0\r\n\r\nok\r\n"));
        assert!(!server.contains("machine.other"));
    }

    #[test]
    fn a_payload_split_across_frames_waits_for_its_end() {
        let upstream = Upstream {
            address: String::new(),
            credentials: None,
        };
        let mut parser = Parser::default();
        let (mut server, mut agent) = (Vec::new(), Vec::new());
        let scope = MachineScope::new(ME);
        let mut budget = Budget::new();
        for part in [
            "CONNECT {}\r\nPUB machine.".to_owned(),
            format!("{ME}.heartbeat 5\r\nhel"),
            "lo\r".to_owned(),
            "\n".to_owned(),
        ] {
            parser.buffer.extend_from_slice(part.as_bytes());
            parser
                .drain(&scope, ME, &upstream, &mut budget, &mut server, &mut agent)
                .unwrap();
        }
        let server = String::from_utf8(server).unwrap();
        assert!(
            server.ends_with(&format!("PUB machine.{ME}.heartbeat 5\r\nhello\r\n")),
            "{server}"
        );
        assert!(agent.is_empty());
    }

    #[test]
    fn protocol_abuse_ends_the_connection_as_nats_server_would() {
        let (outcome, server, agent) = run(b"PUB machine.x.y 1\r\na\r\n");
        assert!(outcome.is_err());
        assert_eq!(agent, "-ERR 'Authorization Violation'\r\n");
        assert_eq!(server, "");

        let (outcome, _, agent) =
            run(format!("CONNECT {{}}\r\nPUB machine.{ME}.x 99999999\r\n").as_bytes());
        assert!(outcome.is_err());
        assert_eq!(agent, "-ERR 'Maximum Payload Violation'\r\n");

        let long = format!("CONNECT {{}}\r\nSUB {} 1\r\n", "a".repeat(5000));
        let (outcome, _, agent) = run(long.as_bytes());
        assert!(outcome.is_err());
        assert_eq!(agent, "-ERR 'Maximum Control Line Exceeded'\r\n");

        let (outcome, _, agent) = run(b"CONNECT {}\r\nRSUB x\r\n");
        assert!(outcome.is_err());
        assert_eq!(agent, "-ERR 'Unknown Protocol Operation'\r\n");

        let (outcome, _, _) =
            run(format!("CONNECT {{}}\r\nPUB machine.{ME}.x 1\r\nab\r\n").as_bytes());
        assert!(outcome.is_err());
    }

    #[test]
    fn client_addresses_come_from_nats_urls() {
        assert_eq!(
            client_address("nats://127.0.0.1:4333").as_deref(),
            Some("127.0.0.1:4333")
        );
        assert_eq!(
            client_address("nats://nats.internal").as_deref(),
            Some("nats.internal:4222")
        );
        assert_eq!(client_address("not a url"), None);
    }
}
