//! CDC over NATS: Debezium Server's NATS JetStream sink publishes change events on
//! `cdc.{messageType}` (or `cdc.{tenantId}.{messageType}`), one envelope per message. The `CDC`
//! stream keeps them; a durable pull consumer hands them to [`Stream::ingest_items`], and each
//! message is acknowledged only after its event is durable in the raw topic (or, if refused, in
//! the tenant's dead-letter topic). So a message is never lost between the two logs, and a
//! redelivered one changes nothing downstream.
//!
//! Messages that name no usable tenant or message type cannot enter any tenant's log: they go to
//! the `CDC_DEAD` stream (subject `openframe.cdc-dead.<original subject>`, with the reason in the
//! `Openframe-Reason` header) for an operator to inspect, and are counted.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer, stream};
use futures_util::StreamExt;
use openframe_storage::{TenantId, TenantStore};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::envelope::{BodyItem, Rejection};
use super::tools::MessageType;
use super::{IngestError, Stream};

pub const CDC_STREAM: &str = "CDC";
pub const DEAD_STREAM: &str = "CDC_DEAD";
const CONSUMER: &str = "openframe-ingest";
const DEAD_PREFIX: &str = "openframe.cdc-dead";
/// Messages taken per fetch; one ingest (one durable append) per tenant and type among them.
const FETCH: usize = 500;

/// Runs the consumer until `stop`, reconnecting and re-creating the consumer on failures.
pub async fn run(
    stream: Arc<Stream>,
    client: async_nats::Client,
    tenants: Arc<dyn TenantStore>,
    default_tenant: String,
    stop: CancellationToken,
) {
    let context = jetstream::new(client);
    let mut resolver = TenantResolver {
        tenants,
        configured: default_tenant,
        known: Vec::new(),
        read_at: None,
    };
    let mut failures: u32 = 0;
    while !stop.is_cancelled() {
        let outcome = consume(&stream, &context, &mut resolver, &stop).await;
        if stop.is_cancelled() {
            break;
        }
        failures = failures.saturating_add(1);
        let backoff = Duration::from_millis(200u64 << failures.min(5));
        if let Err(error) = outcome {
            tracing::warn!(%error, retry_in_ms = backoff.as_millis(), "CDC over NATS paused");
        }
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep(backoff) => {}
        }
    }
}

async fn consume(
    stream: &Stream,
    context: &jetstream::Context,
    resolver: &mut TenantResolver,
    stop: &CancellationToken,
) -> anyhow::Result<()> {
    let raw_days = i64::try_from(stream.settings.raw_retention_days).unwrap_or(7);
    let cdc = context
        .get_or_create_stream(stream::Config {
            name: CDC_STREAM.into(),
            subjects: vec!["cdc.>".into()],
            storage: stream::StorageType::File,
            max_age: Duration::from_secs(u64::try_from(raw_days).unwrap_or(7) * 86_400),
            ..Default::default()
        })
        .await?;
    context
        .get_or_create_stream(stream::Config {
            name: DEAD_STREAM.into(),
            subjects: vec![format!("{DEAD_PREFIX}.>")],
            storage: stream::StorageType::File,
            max_age: Duration::from_secs(30 * 86_400),
            ..Default::default()
        })
        .await?;
    let consumer: consumer::PullConsumer = cdc
        .get_or_create_consumer(
            CONSUMER,
            consumer::pull::Config {
                durable_name: Some(CONSUMER.into()),
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: Duration::from_secs(30),
                max_ack_pending: 20_000,
                ..Default::default()
            },
        )
        .await?;
    tracing::info!(stream = CDC_STREAM, "consuming CDC events over NATS");
    while !stop.is_cancelled() {
        let fetched = tokio::select! {
            () = stop.cancelled() => return Ok(()),
            fetched = consumer.fetch().max_messages(FETCH).expires(Duration::from_millis(500)).messages() => fetched?,
        };
        let messages: Vec<jetstream::Message> = fetched
            .filter_map(|message| async move { message.ok() })
            .collect()
            .await;
        if messages.is_empty() {
            continue;
        }
        handle(stream, context, resolver, messages).await?;
    }
    Ok(())
}

/// Routes a fetched batch: one ingest per (tenant, message type), in arrival order.
async fn handle(
    stream: &Stream,
    context: &jetstream::Context,
    resolver: &mut TenantResolver,
    messages: Vec<jetstream::Message>,
) -> anyhow::Result<()> {
    let mut groups: Vec<((TenantId, MessageType), Vec<jetstream::Message>)> = Vec::new();
    let mut index: HashMap<(TenantId, MessageType), usize> = HashMap::new();
    for message in messages {
        match resolver.route(message.subject.as_str()).await? {
            Ok(key) => {
                let slot = *index.entry(key.clone()).or_insert_with(|| {
                    groups.push((key.clone(), Vec::new()));
                    groups.len() - 1
                });
                if let Some((_, group)) = groups.get_mut(slot) {
                    group.push(message);
                }
            }
            Err(reason) => set_aside(stream, context, message, &reason).await?,
        }
    }
    let max_event_bytes = stream.max_event_bytes();
    for ((tenant, message_type), group) in groups {
        let items = group
            .iter()
            .map(|message| item(&message.payload, max_event_bytes))
            .collect();
        match stream.ingest_items(&tenant, message_type, items).await {
            Ok(_) => {
                for message in &group {
                    message
                        .ack()
                        .await
                        .map_err(|error| anyhow::anyhow!("{error}"))?;
                }
            }
            Err(error @ (IngestError::Overloaded { .. } | IngestError::Unavailable(_))) => {
                // Not acknowledged: JetStream keeps them and redelivers after the delay.
                for message in &group {
                    let _ = message
                        .ack_with(jetstream::AckKind::Nak(Some(Duration::from_secs(2))))
                        .await;
                }
                anyhow::bail!("ingest refused a batch for now: {error}");
            }
            Err(IngestError::InvalidBody(reason)) => {
                for message in group {
                    set_aside(stream, context, message, &reason).await?;
                }
            }
        }
    }
    Ok(())
}

/// One message's payload as an ingest item.
fn item(payload: &[u8], max_event_bytes: usize) -> BodyItem<'_> {
    if payload.len() > max_event_bytes {
        return BodyItem::Invalid {
            raw: payload,
            rejection: Rejection::new(
                "event_too_large",
                format!(
                    "the event is {} bytes; the limit is {max_event_bytes} (stream.max_event_bytes)",
                    payload.len()
                ),
            ),
        };
    }
    match serde_json::from_slice::<Value>(payload) {
        Ok(value) => BodyItem::Event {
            raw: payload,
            value,
        },
        Err(error) => BodyItem::Invalid {
            raw: payload,
            rejection: Rejection::new("malformed_json", format!("not valid JSON: {error}")),
        },
    }
}

/// Keeps a message no tenant can take in `CDC_DEAD`, then acknowledges it.
async fn set_aside(
    stream: &Stream,
    context: &jetstream::Context,
    message: jetstream::Message,
    reason: &str,
) -> anyhow::Result<()> {
    tracing::warn!(subject = %message.subject, %reason, "a CDC message was set aside in {DEAD_STREAM}");
    stream.count("unattributed_tenant", 1);
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Openframe-Reason", reason);
    let subject = format!("{DEAD_PREFIX}.{}", message.subject);
    context
        .publish_with_headers(subject, headers, message.payload.clone())
        .await?
        .await?;
    message
        .ack()
        .await
        .map_err(|error| anyhow::anyhow!("{error}"))?;
    Ok(())
}

/// Which tenant and message type a subject names.
struct TenantResolver {
    tenants: Arc<dyn TenantStore>,
    /// `stream.nats_tenant`.
    configured: String,
    /// Active tenants, re-read every 30 s.
    known: Vec<TenantId>,
    read_at: Option<Instant>,
}

impl TenantResolver {
    /// The tenant and message type of a subject, or why it names none. Only reading the
    /// tenants can fail as an error (then nothing is acknowledged and JetStream redelivers).
    async fn route(
        &mut self,
        subject: &str,
    ) -> anyhow::Result<Result<(TenantId, MessageType), String>> {
        let parts: Vec<&str> = subject.split('.').collect();
        let (tenant, name) = match parts.as_slice() {
            ["cdc", name] => (None, *name),
            ["cdc", tenant, name] => (Some(*tenant), *name),
            _ => {
                return Ok(Err(
                    "use cdc.{messageType} or cdc.{tenantId}.{messageType}".into()
                ));
            }
        };
        let Some(message_type) = MessageType::parse(name) else {
            return Ok(Err(format!(
                "{name:?} is not one of {}",
                MessageType::expected()
            )));
        };
        let wanted = tenant
            .map(str::to_owned)
            .or_else(|| (!self.configured.is_empty()).then(|| self.configured.clone()));
        // A tenant created since the last read is found by reading again once.
        for fresh in [false, true] {
            self.refresh(fresh).await?;
            let found = match &wanted {
                Some(id) => self
                    .known
                    .iter()
                    .find(|known| known.as_str() == id)
                    .cloned(),
                None => match self.known.as_slice() {
                    [only] => Some(only.clone()),
                    _ => None,
                },
            };
            if let Some(tenant) = found {
                return Ok(Ok((tenant, message_type)));
            }
        }
        Ok(Err(match wanted {
            Some(id) => format!("tenant {id:?} does not exist or is not active"),
            None => {
                "several tenants: publish on cdc.{tenantId}.{messageType} or set stream.nats_tenant"
                    .into()
            }
        }))
    }

    async fn refresh(&mut self, force: bool) -> anyhow::Result<()> {
        // Forced reads (an unknown tenant) at most once a second, so bad subjects cannot flood
        // the store.
        let fresh_enough = if force {
            Duration::from_secs(1)
        } else {
            Duration::from_secs(30)
        };
        if self.read_at.is_some_and(|at| at.elapsed() < fresh_enough) {
            return Ok(());
        }
        let tenants = self
            .tenants
            .tenants()
            .await
            .map_err(|error| anyhow::anyhow!("tenants unreadable: {error}"))?;
        self.known = tenants
            .into_iter()
            .filter(|tenant| tenant.status == openframe_storage::documents::TenantStatus::Active)
            .map(|tenant| tenant.id)
            .collect();
        self.read_at = Some(Instant::now());
        Ok(())
    }
}
