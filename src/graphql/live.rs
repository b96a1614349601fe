//! Live logs (beyond OpenFrame, which has none): the subscription `logStream(filter)` over
//! WebSocket (`graphql-transport-ws`, or the older `graphql-ws`), on the same path as queries.
//!
//! Each subscription tails the tenant's `unified.events` topic from the moment it starts: the
//! pipeline appends every log entry there as it writes the other sinks, and the event log's
//! watch wakes the subscription, so nothing polls. A subscription ends when the token it was
//! opened with expires (close code 4401); the client reconnects with a fresh one.

use std::collections::VecDeque;
use std::sync::Arc;

use async_graphql::http::{ALL_WEBSOCKET_PROTOCOLS, WebSocketProtocols as Protocols, WsMessage};
use async_graphql::{Context, InputObject, Subscription};
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::http::header::SEC_WEBSOCKET_PROTOCOL;
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, Stream, StreamExt};
use openframe_storage::model::{Offset, Topic};
use openframe_storage::{EventLog, TenantId};

use super::logs::LogEvent;
use super::{ApiSchema, gql_error, invalid, request};
use crate::error::ApiError;
use crate::gateway::auth::Admin;
use crate::startup::AppState;
use crate::stream::UNIFIED_TOPIC;
use crate::stream::pipeline::LogEntry;

/// What a live log subscription keeps; absent fields keep everything.
#[derive(InputObject, Default, Debug, Clone)]
pub struct LogStreamFilter {
    pub event_types: Option<Vec<String>>,
    pub tool_types: Option<Vec<String>>,
    pub severities: Option<Vec<String>>,
    pub organization_ids: Option<Vec<String>>,
    pub device_id: Option<String>,
}

impl LogStreamFilter {
    fn keeps(&self, row: &openframe_storage::analytics::LogRow) -> bool {
        let any = |wanted: &Option<Vec<String>>, value: Option<&str>| {
            wanted
                .as_ref()
                .is_none_or(|wanted| value.is_some_and(|value| wanted.iter().any(|w| w == value)))
        };
        any(&self.event_types, Some(&row.event_type))
            && any(&self.tool_types, Some(&row.tool_type))
            && any(&self.severities, Some(&row.severity))
            && any(&self.organization_ids, row.organization_id.as_deref())
            && self
                .device_id
                .as_deref()
                .is_none_or(|device| row.device_id.as_deref() == Some(device))
    }
}

/// The most filter values a subscription may name.
const MAX_FILTER_VALUES: usize = 100;

#[derive(Default, Debug)]
pub struct LiveSubscription;

#[Subscription]
impl LiveSubscription {
    /// New entries of the tenant's unified log as they are written, filtered.
    async fn log_stream(
        &self,
        ctx: &Context<'_>,
        filter: Option<LogStreamFilter>,
    ) -> async_graphql::Result<impl Stream<Item = LogEvent> + use<>> {
        let filter = filter.unwrap_or_default();
        for (name, values) in [
            ("filter.eventTypes", &filter.event_types),
            ("filter.toolTypes", &filter.tool_types),
            ("filter.severities", &filter.severities),
            ("filter.organizationIds", &filter.organization_ids),
        ] {
            if values.as_ref().is_some_and(|v| v.len() > MAX_FILTER_VALUES) {
                return Err(invalid(format!(
                    "{name}: at most {MAX_FILTER_VALUES} values"
                )));
            }
        }
        let request = request(ctx);
        let topic = Topic::parse(UNIFIED_TOPIC)
            .map_err(|error| gql_error(ApiError::Unexpected(anyhow::anyhow!("{error}"))))?;
        let events = request.state.storage.events.clone();
        let tenant = request.admin.tenant.clone();
        let watch = events.watch(&tenant, &topic);
        let from = *watch.borrow();
        let tail = Tail {
            events,
            tenant,
            topic,
            watch,
            next: from,
            buffered: VecDeque::new(),
            filter,
        };
        Ok(futures_util::stream::unfold(tail, |mut tail| async move {
            tail.next_row().await.map(|row| (LogEvent::from(row), tail))
        }))
    }
}

/// A subscription's position in the live topic.
struct Tail {
    events: Arc<dyn EventLog>,
    tenant: TenantId,
    topic: Topic,
    watch: tokio::sync::watch::Receiver<Offset>,
    next: Offset,
    buffered: VecDeque<openframe_storage::analytics::LogRow>,
    filter: LogStreamFilter,
}

impl Tail {
    /// The next row the filter keeps, waiting for it; `None` when the log is closing.
    async fn next_row(&mut self) -> Option<openframe_storage::analytics::LogRow> {
        loop {
            if let Some(row) = self.buffered.pop_front() {
                return Some(row);
            }
            let records = match self
                .events
                .read(&self.tenant, &self.topic, self.next, 500)
                .await
            {
                Ok(records) => records,
                Err(error) => {
                    tracing::warn!(%error, "a live log subscription cannot read; it ends");
                    return None;
                }
            };
            if let Some(last) = records.last() {
                self.next = last.offset.next();
            }
            for record in &records {
                if let Some(row) = serde_json::from_slice(&record.record.value)
                    .ok()
                    .and_then(|value| LogEntry::live_row(&value))
                    .filter(|row| self.filter.keeps(row))
                {
                    self.buffered.push_back(row);
                }
            }
            if records.is_empty() && self.watch.changed().await.is_err() {
                return None;
            }
        }
    }
}

/// `GET /api/graphql` with a WebSocket upgrade: subscriptions (and queries) over
/// `graphql-transport-ws` or `graphql-ws`.
pub(super) async fn upgrade(
    schema: ApiSchema,
    state: AppState,
    admin: Admin,
    headers: &HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let protocol = headers
        .get(SEC_WEBSOCKET_PROTOCOL)
        .and_then(|value| value.to_str().ok())
        .and_then(|offered| {
            offered
                .split(',')
                .find_map(|name| name.trim().parse::<Protocols>().ok())
        });
    let Some(protocol) = protocol else {
        return ApiError::InvalidInput(format!(
            "Sec-WebSocket-Protocol: offer one of {}",
            ALL_WEBSOCKET_PROTOCOLS.join(", ")
        ))
        .into_response();
    };
    upgrade
        .protocols(ALL_WEBSOCKET_PROTOCOLS)
        .on_upgrade(move |socket| serve(schema, state, admin, socket, protocol))
}

async fn serve(
    schema: ApiSchema,
    state: AppState,
    admin: Admin,
    socket: WebSocket,
    protocol: Protocols,
) {
    let (mut sink, source) = socket.split();
    let incoming = source
        .take_while(|message| {
            std::future::ready(matches!(
                message,
                Ok(Message::Text(_) | Message::Binary(_) | Message::Ping(_) | Message::Pong(_))
            ))
        })
        .filter_map(|message| {
            std::future::ready(match message {
                Ok(Message::Text(text)) => Some(text.as_str().as_bytes().to_vec()),
                Ok(Message::Binary(bytes)) => Some(bytes.to_vec()),
                _ => None,
            })
        });
    let mut data = async_graphql::Data::default();
    let expires_at_ms = admin.expires_at_ms;
    data.insert(state.clone());
    data.insert(admin);
    let mut outgoing = async_graphql::http::WebSocket::new(schema, incoming, protocol)
        .connection_data(data)
        .keepalive_timeout(std::time::Duration::from_secs(60));
    let left_ms = expires_at_ms
        .saturating_sub(state.identity.clock.now_ms())
        .max(0);
    let expiry = tokio::time::sleep(std::time::Duration::from_millis(
        u64::try_from(left_ms).unwrap_or(0),
    ));
    tokio::pin!(expiry);
    loop {
        tokio::select! {
            message = outgoing.next() => match message {
                Some(WsMessage::Text(text)) => {
                    if sink.send(Message::Text(text.into())).await.is_err() {
                        break;
                    }
                }
                Some(WsMessage::Close(code, reason)) => {
                    let _ = sink
                        .send(Message::Close(Some(CloseFrame { code, reason: reason.into() })))
                        .await;
                    break;
                }
                None => break,
            },
            () = &mut expiry => {
                let _ = sink
                    .send(Message::Close(Some(CloseFrame {
                        code: 4401,
                        reason: "the access token expired; reconnect with a fresh one".into(),
                    })))
                    .await;
                break;
            }
        }
    }
}
