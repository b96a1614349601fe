//! The audit trail: every change a technician makes, with who, what, which object, the object
//! before and after, and when. MSP users ask for it first: "who archived this customer?"
//!
//! - REST changes are recorded by [`record_rest`], a middleware around every route: each
//!   successful `POST`/`PUT`/`PATCH`/`DELETE` by a signed-in administrator becomes a record,
//!   named by its route (`PATCH /api/organizations/{id}/status`). A handler that knows the
//!   object attaches an [`AuditChange`] to its response, which adds the target and the object
//!   before and after. So a new route cannot forget to be audited.
//! - GraphQL mutations record themselves ([`Audit::record`]), named by their field
//!   (`createTag`).
//! - Records are stored in the document store (collection `audit_log`) before the answer goes
//!   out, under ids that sort newest first, and are read back in pages ([`Audit::page`]), or all
//!   of them as NDJSON. With `[audit] syslog`, each is also sent to a collector as RFC 5424.
//!
//! Records never hold secrets: handlers describe objects without them, and the middleware never
//! reads bodies.

use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use openframe_storage::documents::MAX_LIST;
use openframe_storage::error::DocumentError;
use openframe_storage::model::{Collection, DocumentId};
use openframe_storage::{Clock, DocumentStore, TenantId};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use crate::config::{AuditSection, SyslogTransport};
use crate::gateway::auth::{Principal, Who};
use crate::identity::crypto::random_uuid;
use crate::startup::AppState;

/// The largest time an id can encode (Unix ms, year 2286): ids are `{BOUND - ms}-{uuid}`.
const BOUND: i64 = 9_999_999_999_999;
/// How many records one filtered page may read before it answers with what it found.
pub const MAX_SCAN: usize = 10_000;

/// One recorded change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord {
    pub id: String,
    /// Unix ms.
    pub at: i64,
    pub actor_id: String,
    pub actor_email: String,
    /// The route (`POST /api/api-keys`) or the GraphQL mutation (`createTag`).
    pub action: String,
    /// `Tag`, `Organization`, `Device`, …; empty when the route did not say.
    pub target_type: String,
    pub target_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<Value>,
    /// The HTTP status of a REST change (GraphQL: 200).
    pub status: u16,
}

/// What a handler tells the audit trail about the object it changed (a response extension).
#[derive(Debug, Clone, Default)]
pub struct AuditChange {
    pub target_type: &'static str,
    pub target_id: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

impl AuditChange {
    /// Attaches the change to a handler's response, for [`record_rest`].
    pub fn on(self, mut response: Response) -> Response {
        response.extensions_mut().insert(self);
        response
    }
}

/// A response extension saying the request changed nothing worth a record (acknowledging what
/// is already acknowledged, marking a notification read): [`record_rest`] skips it.
#[derive(Debug, Clone, Copy)]
pub struct Unchanged;

impl Unchanged {
    pub fn on(self, mut response: Response) -> Response {
        response.extensions_mut().insert(self);
        response
    }
}

/// Who made a change.
#[derive(Debug, Clone)]
pub struct Actor {
    pub tenant: TenantId,
    pub user_id: String,
    pub email: String,
}

/// What a page of the trail keeps.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub actor_id: Option<String>,
    pub action: Option<String>,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
}

impl AuditFilter {
    fn keeps(&self, record: &AuditRecord) -> bool {
        let matches = |wanted: &Option<String>, value: &str| {
            wanted.as_deref().is_none_or(|wanted| wanted == value)
        };
        matches(&self.actor_id, &record.actor_id)
            && matches(&self.action, &record.action)
            && matches(&self.target_type, &record.target_type)
            && matches(&self.target_id, &record.target_id)
    }
}

/// A page of records, newest first, and where the next one starts.
#[derive(Debug)]
pub struct AuditPage {
    pub records: Vec<AuditRecord>,
    pub next: Option<String>,
}

#[derive(Debug)]
pub struct Audit {
    documents: Arc<dyn DocumentStore>,
    collection: Collection,
    clock: Arc<dyn Clock>,
    syslog: Option<SyslogSink>,
}

/// The way into the syslog forwarder: messages formatted here, sent by [`Forwarder`].
#[derive(Debug, Clone)]
pub struct SyslogSink {
    sender: mpsc::Sender<String>,
    hostname: String,
}

impl SyslogSink {
    fn send(&self, message: String, what: &str) {
        if self.sender.try_send(message).is_err() {
            tracing::warn!(
                what,
                "the syslog forwarder is behind; this message is not forwarded"
            );
        }
    }

    /// A security event as RFC 5424: facility authpriv (10), severity warning (4).
    pub fn security(
        &self,
        at: i64,
        kind: &str,
        tenant: Option<&TenantId>,
        details: &[(&'static str, String)],
    ) {
        self.send(
            security_rfc5424(&self.hostname, at, kind, tenant, details),
            "security event",
        );
    }
}

impl Audit {
    /// The trail; with a syslog target, also the task that forwards to it (spawned by the caller
    /// on a runtime).
    pub fn new(
        documents: Arc<dyn DocumentStore>,
        clock: Arc<dyn Clock>,
        config: &AuditSection,
    ) -> anyhow::Result<(Audit, Option<Forwarder>)> {
        let (syslog, forwarder) = match config
            .syslog_target()
            .map_err(|message| anyhow::anyhow!("audit.syslog: {message}"))?
        {
            Some((transport, address)) => {
                let (sender, receiver) = mpsc::channel(4096);
                (
                    Some(SyslogSink {
                        sender,
                        hostname: hostname(),
                    }),
                    Some(Forwarder {
                        transport,
                        address,
                        receiver,
                    }),
                )
            }
            None => (None, None),
        };
        Ok((
            Audit {
                documents,
                collection: Collection::parse("audit_log")
                    .map_err(|error| anyhow::anyhow!("{error}"))?,
                clock,
                syslog,
            },
            forwarder,
        ))
    }

    /// The syslog sink, when `[audit] syslog` is set: security events go there too.
    pub fn syslog_sink(&self) -> Option<SyslogSink> {
        self.syslog.clone()
    }

    /// Stores a record (durable when this returns) and queues it for syslog.
    pub async fn record(
        &self,
        actor: &Actor,
        action: &str,
        change: AuditChange,
        status: u16,
    ) -> Result<AuditRecord, DocumentError> {
        let at = self.clock.now_ms();
        let suffix = random_uuid().map_err(|error| DocumentError::Invalid(error.to_string()))?;
        let record = AuditRecord {
            id: format!("{:013}-{suffix}", BOUND - at.clamp(0, BOUND)),
            at,
            actor_id: actor.user_id.clone(),
            actor_email: actor.email.clone(),
            action: action.to_owned(),
            target_type: change.target_type.to_owned(),
            target_id: change.target_id,
            before: change.before,
            after: change.after,
            status,
        };
        let id = DocumentId::parse(&record.id)
            .map_err(|error| DocumentError::Invalid(error.to_string()))?;
        let body = serde_json::to_value(&record)
            .map_err(|error| DocumentError::Invalid(error.to_string()))?;
        self.documents
            .insert(&actor.tenant, &self.collection, &id, &body)
            .await?;
        if let Some(syslog) = &self.syslog {
            // Stored either way; a collector that falls behind loses the forwarded copy only.
            syslog.send(
                rfc5424(&syslog.hostname, &actor.tenant, &record),
                "audit record",
            );
        }
        Ok(record)
    }

    /// Up to `limit` records (newest first) after the cursor `after` that `filter` keeps,
    /// reading at most [`MAX_SCAN`] records; `next` continues where this page stopped.
    pub async fn page(
        &self,
        tenant: &TenantId,
        filter: &AuditFilter,
        after: Option<&str>,
        limit: usize,
    ) -> Result<AuditPage, DocumentError> {
        let mut cursor = after
            .map(|after| {
                DocumentId::parse(after)
                    .map_err(|_| DocumentError::Invalid(format!("cursor {after:?}")))
            })
            .transpose()?;
        let mut records = Vec::new();
        let mut scanned = 0;
        loop {
            let batch = self
                .documents
                .list(
                    tenant,
                    &self.collection,
                    cursor.as_ref(),
                    MAX_LIST.min(limit.max(100)),
                )
                .await?;
            let exhausted = batch.is_empty();
            for document in batch {
                scanned += 1;
                cursor = Some(document.id.clone());
                let record: AuditRecord =
                    serde_json::from_value(document.body).map_err(|error| {
                        DocumentError::Invalid(format!(
                            "audit record {}: {error}",
                            document.id.as_str()
                        ))
                    })?;
                if filter.keeps(&record) {
                    records.push(record);
                    if records.len() == limit {
                        break;
                    }
                }
            }
            if exhausted {
                return Ok(AuditPage {
                    records,
                    next: None,
                });
            }
            if records.len() == limit || scanned >= MAX_SCAN {
                // Whether anything follows is only known by looking; a last empty page is
                // the price of not counting.
                return Ok(AuditPage {
                    records,
                    next: cursor.map(|id| id.as_str().to_owned()),
                });
            }
        }
    }
}

/// The actor of a request: a signed-in administrator, else `None`.
pub fn actor_of(principal: &Principal) -> Option<Actor> {
    match &principal.who {
        Who::User { user_id, email, .. } if principal.is_admin() => Some(Actor {
            tenant: principal.tenant.clone(),
            user_id: user_id.clone(),
            email: email.clone(),
        }),
        _ => None,
    }
}

/// Records every successful change a technician makes through a REST route (see the module
/// documentation). GraphQL records its mutations itself.
pub async fn record_rest(State(state): State<AppState>, request: Request, next: Next) -> Response {
    // Reads, the most requests by far, pass straight through: nothing is looked up or copied.
    if !matches!(
        *request.method(),
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    ) {
        return next.run(request).await;
    }
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_owned());
    // An administrator, or an integrator's API key (recorded as the key's creator, through it).
    let actor = request
        .extensions()
        .get::<Principal>()
        .and_then(actor_of)
        .or_else(|| {
            let caller = request
                .extensions()
                .get::<crate::gateway::api_keys::KeyCaller>()?;
            Some(Actor {
                tenant: caller.tenant().clone(),
                user_id: caller.key().user_id.clone(),
                email: format!("api key {}", caller.key().id),
            })
        });
    let (Some(route), Some(actor)) = (route, actor) else {
        return next.run(request).await;
    };
    if route == "/api/graphql" {
        return next.run(request).await;
    }
    let action = format!("{} {route}", request.method());
    let path = request.uri().path().to_owned();
    let mut response = next.run(request).await;
    if !response.status().is_success() || response.extensions().get::<Unchanged>().is_some() {
        return response;
    }
    let mut change = response
        .extensions_mut()
        .remove::<AuditChange>()
        .unwrap_or_default();
    if change.target_id.is_empty() {
        change.target_id = path;
    }
    if let Err(error) = state
        .audit
        .record(&actor, &action, change, response.status().as_u16())
        .await
    {
        tracing::error!(%error, %action, actor = %actor.user_id, "an audit record could not be stored");
    }
    response
}

/// Sends audit records and security events to a syslog collector, one RFC 5424 message each.
#[derive(Debug)]
pub struct Forwarder {
    transport: SyslogTransport,
    address: String,
    receiver: mpsc::Receiver<String>,
}

impl Forwarder {
    /// Runs until the trail is dropped. A collector that is down costs the records sent
    /// meanwhile (they stay in the store and the export); TCP reconnects on the next record.
    pub async fn run(mut self) {
        let mut tcp: Option<tokio::net::TcpStream> = None;
        let udp = match self.transport {
            SyslogTransport::Udp => match tokio::net::UdpSocket::bind("0.0.0.0:0").await {
                Ok(socket) => Some(socket),
                Err(error) => {
                    tracing::error!(%error, "cannot open a UDP socket for audit syslog");
                    return;
                }
            },
            SyslogTransport::Tcp => None,
        };
        while let Some(message) = self.receiver.recv().await {
            let sent = match (&udp, self.transport) {
                (Some(socket), _) => socket
                    .send_to(message.as_bytes(), &self.address)
                    .await
                    .map(|_| ()),
                (None, _) => {
                    if tcp.is_none() {
                        tcp = tokio::net::TcpStream::connect(&self.address).await.ok();
                    }
                    match tcp.as_mut() {
                        // RFC 6587 octet counting: "LEN SP MSG".
                        Some(stream) => {
                            let framed = format!("{} {message}", message.len());
                            let written = stream.write_all(framed.as_bytes()).await;
                            if written.is_err() {
                                tcp = None;
                            }
                            written
                        }
                        None => Err(std::io::Error::new(
                            std::io::ErrorKind::NotConnected,
                            "the collector refused the connection",
                        )),
                    }
                }
            };
            if let Err(error) = sent {
                tracing::warn!(%error, address = %self.address, "a message was not forwarded to syslog");
            }
        }
    }
}

fn hostname() -> String {
    let name = gethostname::gethostname()
        .to_string_lossy()
        .trim()
        .to_owned();
    // RFC 5424 HOSTNAME: printable US-ASCII, 255 at most; "-" when unknown.
    if name.is_empty() || name.len() > 255 || !name.bytes().all(|b| b.is_ascii_graphic()) {
        "-".to_owned()
    } else {
        name
    }
}

/// An SD-PARAM value with `"`, `\` and `]` escaped (RFC 5424 §6.3.3).
fn sd_value(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '"' | '\\' | ']') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// The record as an RFC 5424 message: facility log audit (13), severity notice (5), the record
/// in structured data and as JSON in the message.
pub fn rfc5424(hostname: &str, tenant: &TenantId, record: &AuditRecord) -> String {
    let timestamp = crate::api::iso(record.at);
    let json = serde_json::to_string(record).unwrap_or_default();
    format!(
        "<{pri}>1 {timestamp} {hostname} openframe - audit [audit@32473 tenant=\"{tenant}\" actor=\"{actor}\" action=\"{action}\" targetType=\"{target_type}\" targetId=\"{target_id}\"] {json}",
        pri = 13 * 8 + 5,
        tenant = sd_value(tenant.as_str()),
        actor = sd_value(&record.actor_email),
        action = sd_value(&record.action),
        target_type = sd_value(&record.target_type),
        target_id = sd_value(&record.target_id),
    )
}

/// A security event as an RFC 5424 message: facility authpriv (10), severity warning (4), the
/// event in structured data.
pub fn security_rfc5424(
    hostname: &str,
    at: i64,
    kind: &str,
    tenant: Option<&TenantId>,
    details: &[(&'static str, String)],
) -> String {
    let mut parameters = format!("event=\"{}\"", sd_value(kind));
    if let Some(tenant) = tenant {
        parameters.push_str(&format!(" tenant=\"{}\"", sd_value(tenant.as_str())));
    }
    for (name, value) in details {
        parameters.push_str(&format!(" {name}=\"{}\"", sd_value(value)));
    }
    format!(
        "<{pri}>1 {timestamp} {hostname} openframe - {kind} [security@32473 {parameters}] security event {kind}",
        pri = 10 * 8 + 4,
        timestamp = crate::api::iso(at),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> AuditRecord {
        AuditRecord {
            id: "x".into(),
            at: 1_795_168_800_000,
            actor_id: "u1".into(),
            actor_email: "ops@acme.example".into(),
            action: "PATCH /api/organizations/{id}/status".into(),
            target_type: "Organization".into(),
            target_id: "org \"1\" ]x\\".into(),
            before: None,
            after: Some(serde_json::json!({"status": "ARCHIVED"})),
            status: 200,
        }
    }

    #[test]
    fn security_events_are_authpriv_warnings_with_escaped_details() {
        let tenant = TenantId::parse("acme").unwrap();
        let message = security_rfc5424(
            "host-1",
            1_795_168_800_000,
            "client_auth_failed",
            Some(&tenant),
            &[("client_id", "app \"x\"]".to_owned())],
        );
        assert_eq!(
            message,
            "<84>1 2026-11-20T10:00:00Z host-1 openframe - client_auth_failed [security@32473 event=\"client_auth_failed\" tenant=\"acme\" client_id=\"app \\\"x\\\"\\]\"] security event client_auth_failed"
        );
    }

    #[test]
    fn syslog_messages_follow_rfc_5424_and_escape_parameter_values() {
        let tenant = TenantId::parse("acme").unwrap();
        let message = rfc5424("box", &tenant, &record());
        assert!(
            message.starts_with("<109>1 2026-11-20T10:00:00Z box openframe - audit [audit@32473 tenant=\"acme\" actor=\"ops@acme.example\""),
            "{message}"
        );
        assert!(
            message.contains(r#"targetId="org \"1\" \]x\\"]"#),
            "{message}"
        );
        let json = message
            .split_once("] {")
            .map(|(_, rest)| format!("{{{rest}"))
            .unwrap();
        let parsed: AuditRecord = serde_json::from_str(&json).unwrap();
        assert_eq!(parsed, record());
    }

    #[test]
    fn ids_sort_newest_first() {
        let id = |at: i64| format!("{:013}-z", BOUND - at);
        assert!(id(2_000) < id(1_000));
        assert!(id(1_795_168_800_001) < id(1_795_168_800_000));
    }
}
