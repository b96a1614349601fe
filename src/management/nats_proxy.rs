//! `/ws/nats`: agents speak NATS over a WebSocket to the gateway, and the gateway is their NATS
//! server. It reads every operation an agent sends and carries the allowed ones over one shared
//! connection to the real server (the hub), as the NATS user `agents`.
//!
//! Why a hub and not a byte relay: one upstream connection instead of one per agent halves the
//! appliance's file descriptors and spares nats-server ten thousand clients; agents keep their
//! WebSocket while nats-server restarts (the hub reconnects and resubscribes for them); and
//! enforcement happens where the verified machine id is known. nats-server (Debian's 2.9) has no
//! per-connection identity for a shared user short of operator-mode JWTs or a config reload per
//! machine, so:
//! - each `PUB`/`HPUB`/`SUB` is checked against [`MachineScope`]; a refused one is dropped and
//!   answered with nats-server's own `-ERR 'Permissions Violation for Publish to "…"'` (or
//!   `Subscription to`), after which the session carries on, as with nats-server; the `agents`
//!   user's server-side permissions are a second fence;
//! - an over-long control line or payload, or a malformed operation, ends the session as
//!   nats-server would; a machine publishing faster than its budget gets
//!   `-ERR 'Publish Rate Exceeded'` for the excess, and one with too many subscriptions
//!   `-ERR 'Maximum Subscriptions Exceeded'`;
//! - messages reach a session only through its own subscriptions, under its own sids; a slow
//!   agent loses its own messages (NATS's slow-consumer rule), never anyone else's.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use tokio::sync::mpsc;
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
/// Subscriptions one session may hold (OpenFrame's agent needs about ten).
const MAX_SUBSCRIPTIONS: usize = 100;
/// The subject of the hub's round trips (no agent may use it; the `agents` user may publish it).
pub const HUB_SYNC_SUBJECT: &str = "_HUB.sync";
/// Messages waiting for one slow agent before its subscriptions start losing them.
const SESSION_BACKLOG: usize = 256;

/// The proxy's live sessions, and the signal that ends them at shutdown.
#[derive(Debug, Default)]
pub struct Sessions {
    open: AtomicUsize,
    next_id: AtomicU64,
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
    if !management.nats_enabled {
        return Err(ApiError::NotFound(
            "NATS is off on this appliance (nats.mode = \"off\")".into(),
        ));
    }
    let Some(hub) = management.hub.get().cloned() else {
        return Err(ApiError::Overloaded(
            "agent messaging is starting; retry shortly".into(),
        ));
    };
    management.presence.seen(&agent.tenant, &agent.machine_id);
    let response = upgrade
        // Agents' frames are small (a heartbeat is about 200 bytes); a larger frame reserves
        // its own length. 512 bytes instead of 4 KiB saves 35 MiB at 10,000 sessions.
        .read_buffer_size(512)
        .write_buffer_size(0)
        .max_write_buffer_size(4 * MAX_AGENT_PAYLOAD)
        .max_message_size(MAX_AGENT_PAYLOAD + MAX_CONTROL_LINE)
        .max_frame_size(MAX_AGENT_PAYLOAD + MAX_CONTROL_LINE)
        .on_upgrade(move |socket| async move {
            let sessions = management.sessions.clone();
            sessions.open.fetch_add(1, Ordering::Relaxed);
            let client_id = sessions.next_id.fetch_add(1, Ordering::Relaxed) + 1;
            let credential = Credential {
                agents: management.agents.clone(),
                tenant: agent.tenant.clone(),
                epoch: agent.epoch,
            };
            let mut session = Session::new(hub, MachineScope::new(&agent.machine_id), credential);
            let ended = session
                .run(socket, client_id, &agent.machine_id, sessions.stop.clone())
                .await;
            session.close();
            sessions.open.fetch_sub(1, Ordering::Relaxed);
            tracing::debug!(tenant = %agent.tenant, machine_id = %agent.machine_id, why = ended, "agent NATS session ended");
        });
    Ok(response)
}

/// A client operation, parsed.
#[derive(Debug, PartialEq)]
pub(crate) enum Op {
    /// `echo: false` is not honoured: the hub delivers an agent's own messages back to it
    /// when it subscribes to them (OpenFrame's agent never does).
    Connect {
        verbose: bool,
    },
    Ping,
    Pong,
    Pub {
        subject: String,
        reply: Option<String>,
        /// The `NATS/1.0` header block of an `HPUB`.
        headers: Option<Bytes>,
        payload: Bytes,
    },
    Sub {
        subject: String,
        queue: Option<String>,
        sid: String,
    },
    Unsub {
        sid: String,
        max: Option<u64>,
    },
}

/// Tells an agent whose credential was revoked, as nats-server tells a client whose
/// authorization is gone, and closes.
async fn end_revoked(socket: &mut WebSocket) -> &'static str {
    let _ = socket
        .send(Message::Binary(Bytes::from_static(
            b"-ERR 'Authorization Violation'\r\n",
        )))
        .await;
    let _ = socket.send(Message::Close(None)).await;
    "the machine's credential was revoked"
}

/// A protocol error: what nats-server would send, and whether the session ends.
#[derive(Debug, PartialEq)]
pub(crate) struct Violation {
    error: &'static str,
    fatal: bool,
}

const UNKNOWN: Violation = Violation {
    error: "Unknown Protocol Operation",
    fatal: true,
};

/// The client-to-server half of the NATS protocol.
#[derive(Debug, Default)]
struct Parser {
    buffer: BytesMut,
    /// A `PUB`/`HPUB` whose payload (and its CRLF) is still arriving.
    pending: Option<PendingPub>,
}

#[derive(Debug)]
struct PendingPub {
    subject: String,
    reply: Option<String>,
    header_bytes: Option<usize>,
    /// Payload bytes plus the trailing CRLF.
    length: usize,
}

impl Parser {
    /// The next complete operation, `None` when more bytes are needed.
    fn next(&mut self) -> Result<Option<Op>, Violation> {
        if let Some(pending) = &self.pending {
            if self.buffer.len() < pending.length {
                return Ok(None);
            }
            let mut body = self.buffer.split_to(pending.length);
            let Some(pending) = self.pending.take() else {
                return Ok(None);
            };
            if !body.ends_with(b"\r\n") {
                return Err(UNKNOWN);
            }
            body.truncate(body.len() - 2);
            let mut body = body.freeze();
            let headers = pending.header_bytes.map(|size| body.split_to(size));
            return Ok(Some(Op::Pub {
                subject: pending.subject,
                reply: pending.reply,
                headers,
                payload: body,
            }));
        }
        let Some(end) = self.buffer.windows(2).position(|pair| pair == b"\r\n") else {
            // A trailing CR may be the start of the line's end, whose LF is in the next frame:
            // only what comes before it counts, as it does once the line is whole.
            let line = self.buffer.len() - usize::from(self.buffer.ends_with(b"\r"));
            if line > MAX_CONTROL_LINE {
                return Err(Violation {
                    error: "Maximum Control Line Exceeded",
                    fatal: true,
                });
            }
            return Ok(None);
        };
        if end > MAX_CONTROL_LINE {
            return Err(Violation {
                error: "Maximum Control Line Exceeded",
                fatal: true,
            });
        }
        let line = self.buffer.split_to(end + 2);
        let text = std::str::from_utf8(&line[..end]).map_err(|_| UNKNOWN)?;
        let (op, args) = text
            .trim_start()
            .split_once([' ', '\t'])
            .unwrap_or((text.trim(), ""));
        let fields: Vec<&str> = args.split_ascii_whitespace().collect();
        match op.to_ascii_uppercase().as_str() {
            "CONNECT" => {
                let options: serde_json::Value =
                    serde_json::from_str(args.trim()).map_err(|_| UNKNOWN)?;
                let flag = |name: &str, default: bool| {
                    options
                        .get(name)
                        .and_then(serde_json::Value::as_bool)
                        .unwrap_or(default)
                };
                Ok(Some(Op::Connect {
                    verbose: flag("verbose", false),
                }))
            }
            "PING" => Ok(Some(Op::Ping)),
            "PONG" => Ok(Some(Op::Pong)),
            "PUB" | "HPUB" => {
                let sizes = if op.eq_ignore_ascii_case("PUB") { 1 } else { 2 };
                if fields.len() < 1 + sizes || fields.len() > 2 + sizes {
                    return Err(UNKNOWN);
                }
                let numbers: Vec<usize> = fields[fields.len() - sizes..]
                    .iter()
                    .map(|size| size.parse::<usize>())
                    .collect::<Result<_, _>>()
                    .map_err(|_| UNKNOWN)?;
                let total = numbers[numbers.len() - 1];
                let header_bytes = (sizes == 2).then(|| numbers[0]);
                if header_bytes.is_some_and(|headers| headers > total) {
                    return Err(UNKNOWN);
                }
                if total > MAX_AGENT_PAYLOAD {
                    return Err(Violation {
                        error: "Maximum Payload Violation",
                        fatal: true,
                    });
                }
                self.pending = Some(PendingPub {
                    subject: fields[0].to_owned(),
                    reply: (fields.len() - sizes == 2).then(|| fields[1].to_owned()),
                    header_bytes,
                    length: total + 2,
                });
                self.next()
            }
            "SUB" => match fields.as_slice() {
                [subject, sid] => Ok(Some(Op::Sub {
                    subject: (*subject).to_owned(),
                    queue: None,
                    sid: (*sid).to_owned(),
                })),
                [subject, queue, sid] => Ok(Some(Op::Sub {
                    subject: (*subject).to_owned(),
                    queue: Some((*queue).to_owned()),
                    sid: (*sid).to_owned(),
                })),
                _ => Err(UNKNOWN),
            },
            "UNSUB" => match fields.as_slice() {
                [sid] => Ok(Some(Op::Unsub {
                    sid: (*sid).to_owned(),
                    max: None,
                })),
                [sid, max] => Ok(Some(Op::Unsub {
                    sid: (*sid).to_owned(),
                    max: Some(max.parse().map_err(|_| UNKNOWN)?),
                })),
                _ => Err(UNKNOWN),
            },
            _ => Err(UNKNOWN),
        }
    }
}

/// Parses `input` handed over in pieces of `piece` bytes (at least 1), as WebSocket frames would
/// bring it: the operations, and the violation that ended the session, if one did. The fuzz
/// target checks that where frames split a stream never changes what it means.
pub(crate) fn parse_pieces(input: &[u8], piece: usize) -> (Vec<Op>, Option<Violation>) {
    let mut parser = Parser::default();
    let mut ops = Vec::new();
    for chunk in input.chunks(piece.max(1)) {
        parser.buffer.extend_from_slice(chunk);
        loop {
            match parser.next() {
                Ok(Some(op)) => ops.push(op),
                Ok(None) => break,
                Err(violation) if violation.fatal => return (ops, Some(violation)),
                Err(_) => {}
            }
        }
    }
    (ops, None)
}

/// A token bucket for one session's publishes.
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

/// One subscription's forwarder: the task, and how many messages it may still deliver.
#[derive(Debug)]
struct Forwarder {
    task: tokio::task::JoinHandle<()>,
    limit: Arc<AtomicU64>,
}

/// The credential a session was opened with, checked again before every frame either way: a
/// machine reinstalled, uninstalled, deleted or caught reusing a refresh token loses its open
/// session at once, not when it reconnects.
#[derive(Debug)]
struct Credential {
    agents: Arc<super::agents::Agents>,
    tenant: openframe_storage::TenantId,
    epoch: u64,
}

/// One agent's NATS session on the hub.
#[derive(Debug)]
struct Session {
    hub: async_nats::Client,
    scope: MachineScope,
    credential: Credential,
    parser: Parser,
    budget: Budget,
    connected: bool,
    verbose: bool,
    subscriptions: std::collections::HashMap<String, Forwarder>,
    /// Boxed: a channel allocates its first block of slots up front, and ten thousand
    /// sessions' blocks of whole messages would cost megabytes for nothing.
    deliveries: mpsc::Sender<Box<(Arc<str>, async_nats::Message)>>,
    delivered: mpsc::Receiver<Box<(Arc<str>, async_nats::Message)>>,
}

impl Session {
    fn new(hub: async_nats::Client, scope: MachineScope, credential: Credential) -> Session {
        let (deliveries, delivered) = mpsc::channel(SESSION_BACKLOG);
        Session {
            hub,
            scope,
            credential,
            parser: Parser::default(),
            budget: Budget::new(),
            connected: false,
            verbose: false,
            subscriptions: std::collections::HashMap::new(),
            deliveries,
            delivered,
        }
    }

    /// Whether the machine's credential has moved on since the session opened.
    fn revoked(&self, machine_id: &str) -> bool {
        !self
            .credential
            .agents
            .admits(&self.credential.tenant, machine_id, self.credential.epoch)
    }

    /// Serves until either side closes; returns why it ended.
    async fn run(
        &mut self,
        mut socket: WebSocket,
        client_id: u64,
        machine_id: &str,
        stop: CancellationToken,
    ) -> &'static str {
        let info = serde_json::json!({
            "server_id": "openframe-gateway",
            "server_name": "openframe",
            "version": "2.10.0",
            "proto": 1,
            "headers": true,
            "jetstream": true,
            "max_payload": MAX_AGENT_PAYLOAD,
            "client_id": client_id,
            "auth_required": false,
            "tls_required": false,
        });
        if socket
            .send(Message::Binary(Bytes::from(format!("INFO {info}\r\n"))))
            .await
            .is_err()
        {
            return "the agent's connection failed";
        }
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
                    if self.revoked(machine_id) {
                        return end_revoked(&mut socket).await;
                    }
                    if self.parser.buffer.is_empty() && self.parser.buffer.capacity() > 16 * 1024 {
                        // A large message has passed: give its buffer back.
                        self.parser.buffer = BytesMut::new();
                    }
                    self.parser.buffer.extend_from_slice(&data);
                    let mut answer = Vec::new();
                    // Boxed: carrying out operations awaits the hub (publish, subscribe, a
                    // request for PING), and those futures inlined would make every idle
                    // session's task kilobytes larger.
                    let outcome = Box::pin(self.drain(machine_id, &mut answer)).await;
                    if !answer.is_empty()
                        && socket.send(Message::Binary(Bytes::from(answer))).await.is_err()
                    {
                        return "the agent's connection failed";
                    }
                    if let Err(why) = outcome {
                        let _ = socket.send(Message::Close(None)).await;
                        return why;
                    }
                }
                Some(delivery) = self.delivered.recv() => {
                    if self.revoked(machine_id) {
                        return end_revoked(&mut socket).await;
                    }
                    let mut frame = encode(&delivery.0, &delivery.1);
                    // Whatever else is already waiting goes in the same frame.
                    while frame.len() < 64 * 1024 {
                        match self.delivered.try_recv() {
                            Ok(delivery) => frame.extend_from_slice(&encode(&delivery.0, &delivery.1)),
                            Err(_) => break,
                        }
                    }
                    if socket.send(Message::Binary(Bytes::from(frame))).await.is_err() {
                        return "the agent's connection failed";
                    }
                }
            }
        }
    }

    /// Carries out every complete operation in the buffer; what the agent must be told goes
    /// into `answer`. `Err` ends the session.
    async fn drain(&mut self, machine_id: &str, answer: &mut Vec<u8>) -> Result<(), &'static str> {
        loop {
            let op = match self.parser.next() {
                Ok(Some(op)) => op,
                Ok(None) => return Ok(()),
                Err(violation) => {
                    answer.extend_from_slice(format!("-ERR '{}'\r\n", violation.error).as_bytes());
                    if violation.fatal {
                        return Err(violation.error);
                    }
                    continue;
                }
            };
            if !self.connected && !matches!(op, Op::Connect { .. }) {
                answer.extend_from_slice(b"-ERR 'Authorization Violation'\r\n");
                return Err("the agent did not start with CONNECT");
            }
            let accepted = match op {
                Op::Connect { verbose, .. } => {
                    if self.connected {
                        answer.extend_from_slice(b"-ERR 'Unknown Protocol Operation'\r\n");
                        return Err("a second CONNECT");
                    }
                    self.connected = true;
                    self.verbose = verbose;
                    true
                }
                Op::Ping => {
                    // A client's PING/PONG means "the server has processed everything I sent"
                    // (a subscription made before a flush receives what is published after
                    // it). The hub's `flush` only writes its buffer, so it makes a round trip
                    // through nats-server: a request nobody answers comes back as "no
                    // responders" once everything before it on the hub's connection is done.
                    // During an outage the PONG still comes, after at most 10 s.
                    let _ = tokio::time::timeout(
                        Duration::from_secs(10),
                        self.hub.request(HUB_SYNC_SUBJECT, Bytes::new()),
                    )
                    .await;
                    answer.extend_from_slice(b"PONG\r\n");
                    false
                }
                Op::Pong => false,
                Op::Pub {
                    subject,
                    reply,
                    headers,
                    payload,
                } => {
                    self.publish(machine_id, subject, reply, headers, payload, answer)
                        .await?
                }
                Op::Sub {
                    subject,
                    queue,
                    sid,
                } => self.subscribe(subject, queue, sid, answer).await?,
                Op::Unsub { sid, max } => {
                    self.unsubscribe(&sid, max);
                    true
                }
            };
            if accepted && self.verbose {
                answer.extend_from_slice(b"+OK\r\n");
            }
        }
    }

    async fn publish(
        &mut self,
        machine_id: &str,
        subject: String,
        reply: Option<String>,
        headers: Option<Bytes>,
        payload: Bytes,
        answer: &mut Vec<u8>,
    ) -> Result<bool, &'static str> {
        let reply_ok = reply
            .as_deref()
            .is_none_or(|reply| self.scope.may_subscribe(reply) && !reply.contains(['*', '>']));
        if !reply_ok || !self.scope.may_send(&subject, &payload) {
            refuse(answer, "Publish", &subject);
            return Ok(false);
        }
        if !self.budget.take() {
            if self
                .budget
                .warned
                .is_none_or(|at| at.elapsed() > Duration::from_secs(60))
            {
                self.budget.warned = Some(Instant::now());
                tracing::warn!(
                    machine_id,
                    "an agent publishes faster than its budget; excess messages are dropped"
                );
            }
            answer.extend_from_slice(b"-ERR 'Publish Rate Exceeded'\r\n");
            return Ok(false);
        }
        let headers = match headers {
            Some(block) => Some(parse_headers(&block).ok_or_else(|| {
                answer.extend_from_slice(b"-ERR 'Unknown Protocol Operation'\r\n");
                "malformed message headers"
            })?),
            None => None,
        };
        let sent = match (reply, headers) {
            (None, None) => self.hub.publish(subject, payload).await,
            (Some(reply), None) => self.hub.publish_with_reply(subject, reply, payload).await,
            (None, Some(headers)) => {
                self.hub
                    .publish_with_headers(subject, headers, payload)
                    .await
            }
            (Some(reply), Some(headers)) => {
                self.hub
                    .publish_with_reply_and_headers(subject, reply, headers, payload)
                    .await
            }
        };
        if let Err(error) = sent {
            tracing::warn!(machine_id, %error, "forwarding an agent's message failed");
        }
        Ok(true)
    }

    async fn subscribe(
        &mut self,
        subject: String,
        queue: Option<String>,
        sid: String,
        answer: &mut Vec<u8>,
    ) -> Result<bool, &'static str> {
        if !self.scope.may_subscribe(&subject) {
            refuse(answer, "Subscription", &subject);
            return Ok(false);
        }
        if sid.len() > 64 || self.subscriptions.contains_key(&sid) {
            answer.extend_from_slice(b"-ERR 'Invalid Subscription'\r\n");
            return Ok(false);
        }
        if self.subscriptions.len() >= MAX_SUBSCRIPTIONS {
            answer.extend_from_slice(b"-ERR 'Maximum Subscriptions Exceeded'\r\n");
            return Ok(false);
        }
        let subscribed = match queue {
            Some(queue) => self.hub.queue_subscribe(subject, queue).await,
            None => self.hub.subscribe(subject).await,
        };
        let mut subscriber = match subscribed {
            Ok(subscriber) => subscriber,
            Err(_) => {
                answer.extend_from_slice(b"-ERR 'Invalid Subject'\r\n");
                return Ok(false);
            }
        };
        let limit = Arc::new(AtomicU64::new(u64::MAX));
        let (deliveries, shared_sid, counted) = (
            self.deliveries.clone(),
            Arc::<str>::from(sid.as_str()),
            limit.clone(),
        );
        let task = tokio::spawn(async move {
            let mut delivered: u64 = 0;
            while delivered < counted.load(Ordering::Relaxed) {
                let Some(message) = subscriber.next().await else {
                    break;
                };
                delivered += 1;
                if deliveries
                    .send(Box::new((shared_sid.clone(), message)))
                    .await
                    .is_err()
                {
                    break;
                }
            }
        });
        self.subscriptions.insert(sid, Forwarder { task, limit });
        Ok(true)
    }

    fn unsubscribe(&mut self, sid: &str, max: Option<u64>) {
        match max {
            Some(max) if max > 0 => {
                if let Some(forwarder) = self.subscriptions.get(sid) {
                    forwarder.limit.store(max, Ordering::Relaxed);
                }
            }
            _ => {
                if let Some(forwarder) = self.subscriptions.remove(sid) {
                    forwarder.task.abort();
                }
            }
        }
    }

    /// Ends every subscription (dropping a subscriber unsubscribes it on the hub).
    fn close(&mut self) {
        for (_, forwarder) in self.subscriptions.drain() {
            forwarder.task.abort();
        }
    }
}

fn refuse(answer: &mut Vec<u8>, what: &str, subject: &str) {
    let subject: String = subject
        .chars()
        .filter(|c| !c.is_control() && *c != '\'')
        .take(256)
        .collect();
    answer.extend_from_slice(
        format!("-ERR 'Permissions Violation for {what} to \"{subject}\"'\r\n").as_bytes(),
    );
}

/// `NATS/1.0\r\nName: value\r\n…\r\n` into a header map.
fn parse_headers(block: &[u8]) -> Option<async_nats::HeaderMap> {
    let text = std::str::from_utf8(block).ok()?;
    let mut lines = text.split("\r\n");
    if !lines.next()?.starts_with("NATS/1.0") {
        return None;
    }
    let mut headers = async_nats::HeaderMap::new();
    for line in lines.filter(|line| !line.is_empty()) {
        let (name, value) = line.split_once(':')?;
        let name: async_nats::header::HeaderName = name.trim().parse().ok()?;
        headers.append(name, value.trim());
    }
    Some(headers)
}

/// A delivered message as `MSG`, or `HMSG` when it has headers or a status.
fn encode(sid: &str, message: &async_nats::Message) -> Vec<u8> {
    let reply = message
        .reply
        .as_ref()
        .map(|reply| format!(" {reply}"))
        .unwrap_or_default();
    let payload = &message.payload;
    if message.headers.is_none() && message.status.is_none() {
        let mut frame =
            format!("MSG {} {sid}{reply} {}\r\n", message.subject, payload.len()).into_bytes();
        frame.extend_from_slice(payload);
        frame.extend_from_slice(b"\r\n");
        return frame;
    }
    let mut block = String::from("NATS/1.0");
    if let Some(status) = message.status {
        block.push_str(&format!(" {}", status.as_u16()));
        if let Some(description) = &message.description {
            block.push(' ');
            block.push_str(description);
        }
    }
    block.push_str("\r\n");
    if let Some(headers) = &message.headers {
        for (name, values) in headers.iter() {
            for value in values {
                let (name, value): (&str, &str) = (name.as_ref(), value.as_ref());
                block.push_str(&format!("{name}: {value}\r\n"));
            }
        }
    }
    block.push_str("\r\n");
    let mut frame = format!(
        "HMSG {} {sid}{reply} {} {}\r\n",
        message.subject,
        block.len(),
        block.len() + payload.len()
    )
    .into_bytes();
    frame.extend_from_slice(block.as_bytes());
    frame.extend_from_slice(payload);
    frame.extend_from_slice(b"\r\n");
    frame
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(input: &[u8]) -> (Vec<Op>, Option<Violation>) {
        parse_pieces(input, input.len())
    }

    #[test]
    fn every_client_operation_parses() {
        let (ops, violation) = parse_all(
            b"CONNECT {\"verbose\":true,\"echo\":false}\r\nPING\r\npong\r\nPUB a.b 5\r\nhello\r\n\
              PUB a.b _INBOX.x.1 2\r\nhi\r\nHPUB a.b 12 14\r\nNATS/1.0\r\n\r\nok\r\n\
              SUB a.> 1\r\nSUB a.> workers 2\r\nUNSUB 1\r\nUNSUB 2 5\r\n",
        );
        assert_eq!(violation, None);
        assert_eq!(
            ops,
            vec![
                Op::Connect { verbose: true },
                Op::Ping,
                Op::Pong,
                Op::Pub {
                    subject: "a.b".into(),
                    reply: None,
                    headers: None,
                    payload: Bytes::from_static(b"hello")
                },
                Op::Pub {
                    subject: "a.b".into(),
                    reply: Some("_INBOX.x.1".into()),
                    headers: None,
                    payload: Bytes::from_static(b"hi")
                },
                Op::Pub {
                    subject: "a.b".into(),
                    reply: None,
                    headers: Some(Bytes::from_static(b"NATS/1.0\r\n\r\n")),
                    payload: Bytes::from_static(b"ok")
                },
                Op::Sub {
                    subject: "a.>".into(),
                    queue: None,
                    sid: "1".into()
                },
                Op::Sub {
                    subject: "a.>".into(),
                    queue: Some("workers".into()),
                    sid: "2".into()
                },
                Op::Unsub {
                    sid: "1".into(),
                    max: None
                },
                Op::Unsub {
                    sid: "2".into(),
                    max: Some(5)
                },
            ]
        );
    }

    #[test]
    fn a_payload_split_across_frames_waits_for_its_end() {
        let mut parser = Parser::default();
        let mut ops = Vec::new();
        for part in ["PUB a.", "b 5\r\nhel", "lo\r", "\n"] {
            parser.buffer.extend_from_slice(part.as_bytes());
            while let Some(op) = parser.next().unwrap() {
                ops.push(op);
            }
        }
        assert_eq!(
            ops,
            vec![Op::Pub {
                subject: "a.b".into(),
                reply: None,
                headers: None,
                payload: Bytes::from_static(b"hello")
            }]
        );
    }

    #[test]
    fn protocol_abuse_is_refused_as_nats_server_would() {
        let fatal = |input: &[u8]| parse_all(input).1.unwrap().error;
        assert_eq!(fatal(b"PUB a 99999999\r\n"), "Maximum Payload Violation");
        assert_eq!(
            fatal(format!("SUB {} 1\r\n", "a".repeat(5000)).as_bytes()),
            "Maximum Control Line Exceeded"
        );
        assert_eq!(fatal(&[b'x'; 5000]), "Maximum Control Line Exceeded");
        assert_eq!(fatal(b"RSUB x\r\n"), "Unknown Protocol Operation");
        assert_eq!(fatal(b"PUB a 1\r\nab\r\n"), "Unknown Protocol Operation");
        assert_eq!(fatal(b"PUB a x\r\n"), "Unknown Protocol Operation");
        assert_eq!(fatal(b"HPUB a 9 3\r\n"), "Unknown Protocol Operation");
        assert_eq!(fatal(b"CONNECT {nope\r\n"), "Unknown Protocol Operation");
        assert_eq!(fatal(b"UNSUB 1 x\r\n"), "Unknown Protocol Operation");
    }

    #[test]
    fn a_line_of_the_longest_length_means_the_same_however_the_frames_cut_it() {
        let line = format!(
            "SUB {} 1\r\n",
            "a".repeat(MAX_CONTROL_LINE - "SUB  1".len())
        );
        assert_eq!(line.len(), MAX_CONTROL_LINE + 2);
        let whole = parse_all(line.as_bytes());
        assert_eq!(whole.1, None, "the longest line is allowed");
        assert_eq!(whole.0.len(), 1);
        // Cut between its CR and LF (as 17 frames of 241 bytes cut it), it used to be refused.
        assert_eq!(parse_pieces(line.as_bytes(), 241), whole);
        assert_eq!(parse_pieces(line.as_bytes(), 1), whole);
        // One byte longer is refused, however it is cut.
        let longer = format!(
            "SUB {} 1\r\n",
            "a".repeat(MAX_CONTROL_LINE + 1 - "SUB  1".len())
        );
        for piece in [1, 241, longer.len()] {
            assert_eq!(
                parse_pieces(longer.as_bytes(), piece).1.unwrap().error,
                "Maximum Control Line Exceeded"
            );
        }
    }

    #[test]
    fn headers_round_trip_and_statuses_are_kept() {
        let headers = parse_headers(b"NATS/1.0\r\nNats-Msg-Id: abc\r\n\r\n").unwrap();
        assert_eq!(
            headers.get("Nats-Msg-Id").map(|value| value.as_str()),
            Some("abc")
        );
        assert!(parse_headers(b"HTTP/1.1\r\n\r\n").is_none());
        let message = async_nats::Message {
            subject: "machine.m.x".into(),
            reply: Some("_INBOX.a.b".into()),
            payload: Bytes::from_static(b"{}"),
            headers: Some(headers),
            status: None,
            description: None,
            length: 0,
        };
        let encoded = String::from_utf8(encode("7", &message)).unwrap();
        assert_eq!(
            encoded,
            "HMSG machine.m.x 7 _INBOX.a.b 30 32\r\nNATS/1.0\r\nNats-Msg-Id: abc\r\n\r\n{}\r\n"
        );
        let plain = async_nats::Message {
            headers: None,
            reply: None,
            ..message
        };
        assert_eq!(
            String::from_utf8(encode("7", &plain)).unwrap(),
            "MSG machine.m.x 7 2\r\n{}\r\n"
        );
        // JetStream's pull replies are statuses: they must reach the agent as such.
        let status = async_nats::Message {
            status: Some(async_nats::StatusCode::NOT_FOUND),
            description: Some("No Messages".into()),
            payload: Bytes::new(),
            ..plain
        };
        assert_eq!(
            String::from_utf8(encode("7", &status)).unwrap(),
            "HMSG machine.m.x 7 28 28\r\nNATS/1.0 404 No Messages\r\n\r\n\r\n"
        );
    }
}
