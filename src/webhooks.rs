//! Webhooks: integrators subscribe a URL to unified event types, per tenant, and the appliance
//! POSTs each matching log entry there, signed, retried with backoff, with every delivery's
//! status kept for them to inspect. The edge (`external_api/webhooks.rs`) is the only caller.
//!
//! ```text
//! unified.events (per tenant) ──► dispatcher (consumer group `webhooks`) ──► webhook_deliveries
//!                                                          (durable, then the offset commits)
//! webhook_deliveries (pending, due) ──► delivery loop ──► POST, signed ──► delivered | retry | failed
//! ```
//!
//! - **Subscriptions** live in the `webhooks` collection (a [`Catalog`], so the dispatcher matches
//!   from memory). The secret is made here (`whsec_` + 32 random bytes, base64url), returned once,
//!   and stored sealed with the master key, bound to tenant and subscription.
//! - **Nothing is lost**: the dispatcher stores a delivery for every matching record and only then
//!   commits the group's offset, so a crash repeats records, never skips them. A delivery's id is
//!   derived from the record (its append time, its offset and the subscription), so a repeated
//!   record finds its delivery already stored. Receivers may still see a delivery twice (a crash
//!   after the POST and before its status is stored): they deduplicate by `X-OpenFrame-Delivery`.
//! - **Where a subscription starts**: at the end of the tenant's stream when it is created (or
//!   re-enabled), kept as `startOffset`; it never receives older entries, nor those appended
//!   while it was disabled.
//! - **The request**: `POST` with the JSON body `{id, eventType, subscriptionId, tenantId,
//!   occurredAt, data}` (`data`: the unified log entry as the live topic has it) and the headers
//!   `X-OpenFrame-Event`, `X-OpenFrame-Delivery`, `X-OpenFrame-Timestamp` (Unix seconds) and
//!   `X-OpenFrame-Signature: sha256=<hex HMAC-SHA256 of "{timestamp}.{body}">`, keyed with the
//!   secret exactly as returned (`whsec_…`, as UTF-8 bytes).
//! - **Retries**: any 2xx is delivered; anything else (another status, a redirect, which is not
//!   followed, a timeout, a refused connection) waits `webhooks.backoff_base_ms`, doubling per
//!   failure up to `webhooks.backoff_max_ms`, until `webhooks.max_attempts`, then the delivery is
//!   `failed`. Deliveries of one subscription are not ordered.
//! - **SSRF**: unless `webhooks.allow_private_targets`, targets are public `https://` URLs. That is
//!   checked when subscribing and again at each attempt, by the client's resolver, which refuses a
//!   name with any internal address and hands the connection exactly the addresses it checked (a
//!   name that re-resolves inward between check and connect cannot slip through).
//! - Finished deliveries are kept for [`DELIVERY_RETENTION_MS`].

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::hmac;
use openframe_storage::documents::MAX_LIST;
use openframe_storage::error::DocumentError;
use openframe_storage::model::{Collection, DocumentId, GroupId, Offset, Topic, UnixMillis};
use openframe_storage::{Clock, Storage, TenantId};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::catalog::{Catalog, CatalogError};
use crate::config::WebhookConfig;
use crate::domain::Invalid;
use crate::identity::crypto::{MasterKey, b64url, b64url_decode, fill_random, hex, random_token};
use crate::metrics::{Metrics, WebhookOutcomeLabels};
use crate::stream::{UNIFIED_TOPIC, taxonomy};

/// The consumer group the dispatcher commits its progress under, per tenant stream.
pub const GROUP: &str = "webhooks";
/// Subscriptions.
const SUBSCRIPTIONS: &str = "webhooks";
/// Deliveries, one document each.
const DELIVERIES: &str = "webhook_deliveries";
/// Subscriptions one tenant may hold.
pub const MAX_SUBSCRIPTIONS: usize = 25;
/// Event types one subscription may name.
pub const MAX_EVENT_TYPES: usize = 50;
pub const MAX_URL_BYTES: usize = 2048;
pub const MAX_DESCRIPTION_CHARS: usize = 500;
/// The event type of a test delivery (`POST …/webhooks/{id}/test`).
pub const TEST_EVENT_TYPE: &str = "WEBHOOK_TEST";
/// Delivered and failed deliveries are deleted this long after they were created.
pub const DELIVERY_RETENTION_MS: i64 = 7 * 24 * 60 * 60 * 1000;
/// Attempts in flight at once, over all tenants.
const MAX_IN_FLIGHT: usize = 16;
/// Records the dispatcher takes from a stream at once.
const READ_BATCH: usize = 500;
/// How often the delivery loop re-reads every pending delivery from the store (a safety net:
/// everything it learns of in-process is scheduled at once).
const RESCAN_EVERY: Duration = Duration::from_secs(300);
const SWEEP_EVERY: Duration = Duration::from_secs(3600);
/// The longest text kept in `lastError`.
const MAX_ERROR_CHARS: usize = 200;
/// Delivery ids start with this minus the creation time, so the store's ascending id order is
/// newest first (until the year 2286).
const NEWEST_FIRST: i64 = 9_999_999_999_999;

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    Pending,
    Delivered,
    Failed,
}

impl DeliveryStatus {
    pub const ALL: [DeliveryStatus; 3] = [Self::Pending, Self::Delivered, Self::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str().eq_ignore_ascii_case(value))
    }
}

/// A stored subscription.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Subscription {
    /// `wh_` + 16 hex digits.
    pub id: String,
    pub url: String,
    /// Unified event type names, each known to the taxonomy.
    pub event_types: Vec<String>,
    pub description: String,
    pub enabled: bool,
    /// The signing secret, sealed with the master key (base64url); never answered.
    pub sealed_secret: String,
    /// The first offset of the tenant's `unified.events` stream this subscription receives.
    pub start_offset: u64,
    /// The user the API key that created it belongs to.
    pub created_by: String,
    pub created_at: UnixMillis,
    pub updated_at: UnixMillis,
}

/// A stored delivery: one event for one subscription, and how sending it went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    pub id: String,
    pub subscription_id: String,
    /// `{subscriptionId}:{status}`: one store query finds a subscription's deliveries by status.
    pub subscription_status: String,
    pub event_type: String,
    pub status: DeliveryStatus,
    pub attempts: u32,
    /// When the event happened (the log entry's timestamp).
    pub occurred_at: UnixMillis,
    /// The unified log entry (`LogEntry::live_json`), or the test message.
    pub data: Value,
    pub created_at: UnixMillis,
    pub next_attempt_at: Option<UnixMillis>,
    pub last_attempt_at: Option<UnixMillis>,
    pub last_status_code: Option<u16>,
    pub last_error: Option<String>,
    pub delivered_at: Option<UnixMillis>,
}

impl Delivery {
    fn set_status(&mut self, status: DeliveryStatus) {
        self.status = status;
        self.subscription_status = subscription_status(&self.subscription_id, status);
    }
}

fn subscription_status(subscription: &str, status: DeliveryStatus) -> String {
    format!("{subscription}:{}", status.as_str())
}

/// A subscription to create.
#[derive(Debug, Clone)]
pub struct NewSubscription {
    pub url: String,
    pub event_types: Vec<String>,
    pub description: Option<String>,
}

/// Changes to a subscription; `None` keeps a field.
#[derive(Debug, Clone, Default)]
pub struct SubscriptionChange {
    pub url: Option<String>,
    pub event_types: Option<Vec<String>>,
    pub description: Option<String>,
    pub enabled: Option<bool>,
}

/// The webhooks of every tenant: subscriptions, the dispatcher and the delivery loop.
#[derive(Debug)]
pub struct Webhooks {
    storage: Storage,
    subscriptions: Catalog<Subscription>,
    deliveries: Collection,
    master: Arc<MasterKey>,
    clock: Arc<dyn Clock>,
    settings: WebhookConfig,
    metrics: Arc<Metrics>,
    /// No redirects, no proxy, the attempt timeout, and (unless private targets are allowed) the
    /// resolver that refuses internal addresses.
    client: reqwest::Client,
    /// Deliveries known to be pending, by `(tenant, id)`, with when they are due.
    due: std::sync::Mutex<HashMap<(TenantId, String), UnixMillis>>,
    /// Wakes the delivery loop when something became due now.
    wake: Notify,
}

impl Webhooks {
    pub fn new(
        storage: Storage,
        master: Arc<MasterKey>,
        clock: Arc<dyn Clock>,
        settings: WebhookConfig,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Webhooks> {
        let client = http_client(&settings)?;
        Ok(Webhooks {
            subscriptions: Catalog::new(storage.documents.clone(), SUBSCRIPTIONS)?,
            deliveries: Collection::parse(DELIVERIES)
                .map_err(|error| anyhow::anyhow!("collection {DELIVERIES:?}: {error}"))?,
            storage,
            master,
            clock,
            settings,
            metrics,
            client,
            due: std::sync::Mutex::new(HashMap::new()),
            wake: Notify::new(),
        })
    }

    /// The tenant's subscriptions, oldest first.
    pub async fn list(&self, tenant: &TenantId) -> Result<Vec<Subscription>, CatalogError> {
        let mut all: Vec<Subscription> = self
            .subscriptions
            .read(tenant, |entries| {
                entries.values().map(|entry| entry.value.clone()).collect()
            })
            .await?;
        all.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(all)
    }

    pub async fn get(
        &self,
        tenant: &TenantId,
        id: &str,
    ) -> Result<Option<Subscription>, CatalogError> {
        Ok(self
            .subscriptions
            .read(tenant, |entries| {
                entries.get(id).map(|entry| entry.value.clone())
            })
            .await?)
    }

    fn not_found(id: &str) -> CatalogError {
        CatalogError::NotFound(format!(
            "id: no webhook {:?}",
            id.chars().take(64).collect::<String>()
        ))
    }

    /// Creates a subscription; returns it with its secret, which is never shown again.
    pub async fn create(
        &self,
        tenant: &TenantId,
        actor: &str,
        new: NewSubscription,
    ) -> Result<(Subscription, String), CatalogError> {
        let event_types = check_event_types(&new.event_types)?;
        let description = check_description(new.description.as_deref().unwrap_or_default())?;
        let url = check_target(&new.url, self.settings.allow_private_targets).await?;
        let mut writer = self.subscriptions.write(tenant).await?;
        if writer.entries().len() >= MAX_SUBSCRIPTIONS {
            return Err(CatalogError::Conflict(format!(
                "this tenant holds {MAX_SUBSCRIPTIONS} webhooks, the most allowed; delete one first"
            )));
        }
        let mut id_bytes = [0u8; 8];
        fill_random(&mut id_bytes)?;
        let id = format!("wh_{}", hex(&id_bytes));
        let (secret, sealed_secret) = self.new_secret(tenant, &id)?;
        let now = self.clock.now_ms();
        let subscription = Subscription {
            start_offset: self.stream_end(tenant).await?,
            id: id.clone(),
            url,
            event_types,
            description,
            enabled: true,
            sealed_secret,
            created_by: actor.to_owned(),
            created_at: now,
            updated_at: now,
        };
        let stored = writer.put(&id, subscription).await?.clone();
        Ok((stored, secret))
    }

    pub async fn update(
        &self,
        tenant: &TenantId,
        id: &str,
        change: SubscriptionChange,
    ) -> Result<Subscription, CatalogError> {
        let event_types = change
            .event_types
            .as_deref()
            .map(check_event_types)
            .transpose()?;
        let description = change
            .description
            .as_deref()
            .map(check_description)
            .transpose()?;
        let url = match change.url.as_deref() {
            Some(url) => Some(check_target(url, self.settings.allow_private_targets).await?),
            None => None,
        };
        let mut writer = self.subscriptions.write(tenant).await?;
        let mut subscription = writer
            .entries()
            .get(id)
            .map(|entry| entry.value.clone())
            .ok_or_else(|| Self::not_found(id))?;
        if change.enabled == Some(true) && !subscription.enabled {
            // Re-enabled: from now on, not what was appended while it was off.
            subscription.start_offset = self.stream_end(tenant).await?;
        }
        if let Some(enabled) = change.enabled {
            subscription.enabled = enabled;
        }
        if let Some(event_types) = event_types {
            subscription.event_types = event_types;
        }
        if let Some(description) = description {
            subscription.description = description;
        }
        if let Some(url) = url {
            subscription.url = url;
        }
        subscription.updated_at = self.clock.now_ms();
        Ok(writer.put(id, subscription).await?.clone())
    }

    /// Replaces the secret; the new one is returned once. Deliveries sign with the secret held
    /// when they are attempted.
    pub async fn rotate_secret(
        &self,
        tenant: &TenantId,
        id: &str,
    ) -> Result<(Subscription, String), CatalogError> {
        let mut writer = self.subscriptions.write(tenant).await?;
        let mut subscription = writer
            .entries()
            .get(id)
            .map(|entry| entry.value.clone())
            .ok_or_else(|| Self::not_found(id))?;
        let (secret, sealed) = self.new_secret(tenant, id)?;
        subscription.sealed_secret = sealed;
        subscription.updated_at = self.clock.now_ms();
        let stored = writer.put(id, subscription).await?.clone();
        Ok((stored, secret))
    }

    /// Deletes a subscription and its deliveries (pending ones are not sent). `None` when there
    /// was none.
    pub async fn delete(
        &self,
        tenant: &TenantId,
        id: &str,
    ) -> Result<Option<Subscription>, CatalogError> {
        let removed = {
            let mut writer = self.subscriptions.write(tenant).await?;
            let Some(held) = writer.entries().get(id).map(|entry| entry.value.clone()) else {
                return Ok(None);
            };
            writer.remove(id).await?;
            held
        };
        let documents = &self.storage.documents;
        let field = Value::String(id.to_owned());
        loop {
            let page = documents
                .find_by_field(tenant, &self.deliveries, "subscriptionId", &field, MAX_LIST)
                .await?;
            if page.is_empty() {
                break;
            }
            for document in page {
                documents
                    .delete(tenant, &self.deliveries, &document.id, None)
                    .await?;
            }
        }
        Ok(Some(removed))
    }

    /// The subscription's newest deliveries, at most `limit`, optionally of one status.
    pub async fn deliveries(
        &self,
        tenant: &TenantId,
        id: &str,
        status: Option<DeliveryStatus>,
        limit: usize,
    ) -> Result<Vec<Delivery>, CatalogError> {
        if self.get(tenant, id).await?.is_none() {
            return Err(Self::not_found(id));
        }
        let (field, value) = match status {
            Some(status) => ("subscriptionStatus", subscription_status(id, status)),
            None => ("subscriptionId", id.to_owned()),
        };
        let documents = self
            .storage
            .documents
            .find_by_field(
                tenant,
                &self.deliveries,
                field,
                &Value::String(value),
                limit.clamp(1, MAX_LIST),
            )
            .await?;
        documents
            .into_iter()
            .map(|document| read_delivery(document.body))
            .collect()
    }

    /// Queues a `WEBHOOK_TEST` delivery to the subscription, sent at once.
    pub async fn send_test(&self, tenant: &TenantId, id: &str) -> Result<Delivery, CatalogError> {
        let subscription = self
            .get(tenant, id)
            .await?
            .ok_or_else(|| Self::not_found(id))?;
        if !subscription.enabled {
            return Err(CatalogError::Conflict(
                "the webhook is disabled; enable it before testing it".into(),
            ));
        }
        let now = self.clock.now_ms();
        let mut suffix = [0u8; 8];
        fill_random(&mut suffix)?;
        let delivery = new_delivery(
            format!("{}-test-{}", newest_first(now), hex(&suffix)),
            &subscription.id,
            TEST_EVENT_TYPE,
            now,
            serde_json::json!({
                "message": "A test delivery: the webhook is reachable and its signature can be checked.",
            }),
            now,
        );
        self.store_delivery(tenant, &delivery).await?;
        self.schedule(tenant, &delivery.id, now);
        Ok(delivery)
    }

    /// Starts the dispatcher and the delivery loop; both stop when `stop` is cancelled (attempts
    /// in flight get a moment to finish).
    pub fn spawn(self: &Arc<Self>, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
        let (dispatcher, sender) = (self.clone(), self.clone());
        tokio::spawn(async move {
            tokio::join!(
                dispatcher.run_dispatcher(stop.clone()),
                sender.run_deliveries(stop)
            );
        })
    }

    fn new_secret(&self, tenant: &TenantId, id: &str) -> anyhow::Result<(String, String)> {
        let secret = format!("whsec_{}", random_token()?);
        let sealed = self
            .master
            .seal(&seal_context(tenant, id), secret.as_bytes())?;
        Ok((secret, b64url(&sealed)))
    }

    fn open_secret(
        &self,
        tenant: &TenantId,
        subscription: &Subscription,
    ) -> anyhow::Result<String> {
        let sealed = b64url_decode(&subscription.sealed_secret)
            .ok_or_else(|| anyhow::anyhow!("a webhook's sealed secret is not base64url"))?;
        let secret = self
            .master
            .open(&seal_context(tenant, &subscription.id), &sealed)?;
        Ok(String::from_utf8(secret)?)
    }

    /// The offset the next record of the tenant's unified stream will get.
    async fn stream_end(&self, tenant: &TenantId) -> Result<u64, CatalogError> {
        let topic = unified_topic()?;
        let bounds =
            self.storage
                .events
                .bounds(tenant, &topic)
                .await
                .map_err(|error| match error {
                    // An outage of the log is a 503 to the caller, as a document store's is.
                    openframe_storage::error::LogError::Unavailable(failure) => {
                        CatalogError::Store(DocumentError::Unavailable(failure))
                    }
                    other => CatalogError::Unexpected(anyhow::anyhow!("the event log: {other}")),
                })?;
        Ok(bounds.end.0)
    }

    async fn store_delivery(
        &self,
        tenant: &TenantId,
        delivery: &Delivery,
    ) -> Result<bool, DocumentError> {
        let id = DocumentId::parse(&delivery.id)
            .map_err(|error| DocumentError::Invalid(format!("delivery id: {error}")))?;
        let body = serde_json::to_value(delivery)
            .map_err(|error| DocumentError::Invalid(format!("cannot serialise: {error}")))?;
        match self
            .storage
            .documents
            .insert(tenant, &self.deliveries, &id, &body)
            .await
        {
            Ok(_) => Ok(true),
            // The record was dispatched before a crash: its delivery is already there.
            Err(DocumentError::AlreadyExists { .. }) => Ok(false),
            Err(error) => Err(error),
        }
    }

    fn schedule(&self, tenant: &TenantId, id: &str, at: UnixMillis) {
        let mut due = self
            .due
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        due.entry((tenant.clone(), id.to_owned()))
            .and_modify(|held| *held = (*held).min(at))
            .or_insert(at);
        drop(due);
        self.wake.notify_one();
    }

    // ---- the dispatcher ------------------------------------------------------------------

    async fn run_dispatcher(self: Arc<Self>, stop: CancellationToken) {
        let mut positions: HashMap<TenantId, Offset> = HashMap::new();
        let mut watches: HashMap<TenantId, watch::Receiver<Offset>> = HashMap::new();
        let mut failures: u32 = 0;
        while !stop.is_cancelled() {
            match self.dispatch(&mut positions, &mut watches).await {
                Ok(true) => {
                    failures = 0;
                    continue;
                }
                Ok(false) => failures = 0,
                Err(error) => {
                    failures = failures.saturating_add(1);
                    let backoff = Duration::from_millis(100u64 << failures.min(6));
                    tracing::warn!(
                        error = format!("{error:#}"),
                        retry_in_ms = backoff.as_millis(),
                        "webhook dispatch cannot progress"
                    );
                    tokio::select! {
                        () = stop.cancelled() => break,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    continue;
                }
            }
            // Tail every stream; a second's sleep also finds tenants whose stream is new.
            let waits: Vec<_> = watches
                .iter_mut()
                .map(|(tenant, receiver)| {
                    Box::pin(async move { (tenant.clone(), receiver.changed().await.is_ok()) })
                })
                .collect();
            let changed = async move {
                if waits.is_empty() {
                    std::future::pending().await
                } else {
                    futures_util::future::select_all(waits).await.0
                }
            };
            let closed = tokio::select! {
                () = stop.cancelled() => break,
                () = tokio::time::sleep(Duration::from_secs(1)) => None,
                (tenant, open) = changed => (!open).then_some(tenant),
            };
            if let Some(tenant) = closed {
                watches.remove(&tenant);
            }
        }
    }

    /// One round over every tenant's unified stream; true when any records were dispatched.
    async fn dispatch(
        &self,
        positions: &mut HashMap<TenantId, Offset>,
        watches: &mut HashMap<TenantId, watch::Receiver<Offset>>,
    ) -> anyhow::Result<bool> {
        let topic = unified_topic()?;
        let group = GroupId::parse(GROUP).map_err(|error| anyhow::anyhow!("{error}"))?;
        let events = &self.storage.events;
        let mut progressed = false;
        for tenant in events.tenants_of(&topic).await? {
            if !watches.contains_key(&tenant) {
                let receiver = events.watch(&tenant, &topic);
                watches.insert(tenant.clone(), receiver);
            }
            let subscriptions: Vec<Subscription> = self
                .subscriptions
                .read(&tenant, |entries| {
                    entries
                        .values()
                        .filter(|entry| entry.value.enabled)
                        .map(|entry| entry.value.clone())
                        .collect()
                })
                .await?;
            let Some(first_wanted) = subscriptions.iter().map(|s| s.start_offset).min() else {
                continue;
            };
            let committed = match positions.get(&tenant) {
                Some(next) => *next,
                None => events
                    .committed_offset(&tenant, &topic, &group)
                    .await?
                    .unwrap_or(Offset(0)),
            };
            let from = Offset(committed.0.max(first_wanted));
            let records = events.read(&tenant, &topic, from, READ_BATCH).await?;
            let Some(next) = records.last().map(|record| record.offset.next()) else {
                positions.insert(tenant, from);
                continue;
            };
            let now = self.clock.now_ms();
            let mut stored = Vec::new();
            for record in &records {
                let Ok(entry) = serde_json::from_slice::<Value>(&record.record.value) else {
                    tracing::warn!(tenant = %tenant, offset = record.offset.0, "a unified log record is not JSON; no webhook gets it");
                    continue;
                };
                let Some(event_type) = entry.get("eventType").and_then(Value::as_str) else {
                    continue;
                };
                for subscription in &subscriptions {
                    let wanted = record.offset.0 >= subscription.start_offset
                        && subscription.event_types.iter().any(|t| t == event_type);
                    if !wanted {
                        continue;
                    }
                    let occurred_at = entry
                        .get("eventTimestamp")
                        .and_then(Value::as_i64)
                        .unwrap_or(record.appended_at);
                    let delivery = new_delivery(
                        format!(
                            "{}-{}-{}",
                            newest_first(record.appended_at),
                            record.offset.0,
                            subscription.id
                        ),
                        &subscription.id,
                        event_type,
                        occurred_at,
                        entry.clone(),
                        now,
                    );
                    if self.store_delivery(&tenant, &delivery).await? {
                        stored.push(delivery.id);
                    }
                }
            }
            // Stored first, then the offset: a crash in between repeats, never skips.
            events.commit_offset(&tenant, &topic, &group, next).await?;
            positions.insert(tenant.clone(), next);
            for id in stored {
                self.schedule(&tenant, &id, now);
            }
            progressed = true;
        }
        Ok(progressed)
    }

    // ---- the delivery loop ---------------------------------------------------------------

    async fn run_deliveries(self: Arc<Self>, stop: CancellationToken) {
        let mut attempts: JoinSet<()> = JoinSet::new();
        let mut in_flight: HashMap<tokio::task::Id, (TenantId, String)> = HashMap::new();
        let mut busy: HashSet<(TenantId, String)> = HashSet::new();
        let mut next_rescan = tokio::time::Instant::now();
        // The first sweep runs a minute after start, off the startup path.
        let mut next_sweep = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            if tokio::time::Instant::now() >= next_rescan {
                next_rescan = tokio::time::Instant::now() + RESCAN_EVERY;
                if let Err(error) = self.rescan().await {
                    tracing::warn!(%error, "reading pending webhook deliveries failed; retried in a minute");
                    next_rescan = tokio::time::Instant::now() + Duration::from_secs(60);
                }
            }
            if tokio::time::Instant::now() >= next_sweep {
                next_sweep = tokio::time::Instant::now() + SWEEP_EVERY;
                self.sweep().await;
            }
            let now = self.clock.now_ms();
            let mut wait_ms: i64 = 30_000;
            {
                let mut due = self
                    .due
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let mut ready: Vec<((TenantId, String), UnixMillis)> = due
                    .iter()
                    .filter(|(key, _)| !busy.contains(*key))
                    .map(|(key, at)| (key.clone(), *at))
                    .collect();
                ready.sort_by_key(|(_, at)| *at);
                for (key, at) in ready {
                    if at > now {
                        wait_ms = wait_ms.min(at - now);
                        break;
                    }
                    if busy.len() >= MAX_IN_FLIGHT {
                        break;
                    }
                    due.remove(&key);
                    busy.insert(key.clone());
                    let webhooks = self.clone();
                    let (tenant, id) = key.clone();
                    let handle = attempts.spawn(async move {
                        if let Some(next) = webhooks.attempt(&tenant, &id).await {
                            webhooks.schedule(&tenant, &id, next);
                        }
                    });
                    in_flight.insert(handle.id(), key);
                }
            }
            let wait = Duration::from_millis(u64::try_from(wait_ms.max(1)).unwrap_or(1));
            tokio::select! {
                () = stop.cancelled() => break,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(wait) => {}
                Some(done) = attempts.join_next_with_id(), if !attempts.is_empty() => {
                    let id = match done {
                        Ok((id, ())) => id,
                        Err(error) => error.id(),
                    };
                    if let Some(key) = in_flight.remove(&id) {
                        busy.remove(&key);
                    }
                }
            }
        }
        // Attempts under way may finish; one cut off is sent again by the next start.
        let finishing = async { while attempts.join_next().await.is_some() {} };
        if tokio::time::timeout(Duration::from_secs(2), finishing)
            .await
            .is_err()
        {
            attempts.abort_all();
        }
    }

    /// Schedules every pending delivery of every tenant that has webhooks.
    async fn rescan(&self) -> anyhow::Result<()> {
        for tenant in self.storage.tenants.tenants().await? {
            let tenant = tenant.id;
            if self
                .subscriptions
                .read(&tenant, |entries| entries.is_empty())
                .await?
            {
                continue;
            }
            let pending = self
                .storage
                .documents
                .find_by_field(
                    &tenant,
                    &self.deliveries,
                    "status",
                    &Value::String(DeliveryStatus::Pending.as_str().to_owned()),
                    MAX_LIST,
                )
                .await?;
            for document in pending {
                let Ok(delivery) = read_delivery(document.body) else {
                    continue;
                };
                let at = delivery.next_attempt_at.unwrap_or(delivery.created_at);
                let mut due = self
                    .due
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                due.entry((tenant.clone(), delivery.id)).or_insert(at);
            }
        }
        self.wake.notify_one();
        Ok(())
    }

    /// Deletes finished deliveries older than [`DELIVERY_RETENTION_MS`].
    async fn sweep(&self) {
        let cutoff = self.clock.now_ms().saturating_sub(DELIVERY_RETENTION_MS);
        let outcome = async {
            let mut removed: u64 = 0;
            // Ids are newest first: everything after the cutoff's prefix is older than it.
            let Ok(older) = DocumentId::parse(&newest_first(cutoff)) else {
                return Ok::<_, anyhow::Error>(0);
            };
            for tenant in self.storage.tenants.tenants().await? {
                let tenant = tenant.id;
                let mut after = older.clone();
                loop {
                    let page = self
                        .storage
                        .documents
                        .list(&tenant, &self.deliveries, Some(&after), MAX_LIST)
                        .await?;
                    let Some(last) = page.last().map(|document| document.id.clone()) else {
                        break;
                    };
                    for document in page {
                        let pending =
                            document.body.get("status").and_then(Value::as_str) == Some("pending");
                        if !pending {
                            self.storage
                                .documents
                                .delete(&tenant, &self.deliveries, &document.id, None)
                                .await?;
                            removed += 1;
                        }
                    }
                    after = last;
                }
            }
            Ok(removed)
        }
        .await;
        match outcome {
            Ok(0) => {}
            Ok(removed) => tracing::info!(removed, "deleted old webhook deliveries"),
            Err(error) => {
                tracing::warn!(
                    error = format!("{error:#}"),
                    "deleting old webhook deliveries failed; retried in an hour"
                )
            }
        }
    }

    /// Sends one delivery once and stores the outcome; the time of the next attempt if it
    /// stays pending.
    async fn attempt(&self, tenant: &TenantId, id: &str) -> Option<UnixMillis> {
        let retry_soon = Some(self.clock.now_ms().saturating_add(5_000));
        let document_id = DocumentId::parse(id).ok()?;
        let stored = match self
            .storage
            .documents
            .get(tenant, &self.deliveries, &document_id)
            .await
        {
            Ok(Some(stored)) => stored,
            // Deleted with its subscription.
            Ok(None) => return None,
            Err(error) => {
                tracing::warn!(%tenant, delivery = id, %error, "reading a webhook delivery failed");
                return retry_soon;
            }
        };
        let mut delivery = match read_delivery(stored.body) {
            Ok(delivery) => delivery,
            Err(error) => {
                tracing::error!(%tenant, delivery = id, %error, "a stored webhook delivery cannot be read");
                return None;
            }
        };
        if delivery.status != DeliveryStatus::Pending {
            return None;
        }
        let subscription = match self.get(tenant, &delivery.subscription_id).await {
            Ok(subscription) => subscription,
            Err(error) => {
                tracing::warn!(%tenant, delivery = id, %error, "reading a webhook failed");
                return retry_soon;
            }
        };
        let started = self.clock.now_ms();
        let outcome = match subscription {
            None => Outcome::Final("the webhook was deleted".into()),
            Some(subscription) if !subscription.enabled => {
                Outcome::Final("the webhook is disabled".into())
            }
            Some(subscription) => match self.open_secret(tenant, &subscription) {
                Ok(secret) => self.send(tenant, &subscription, &secret, &delivery).await,
                Err(error) => {
                    tracing::error!(%tenant, webhook = %subscription.id, error = format!("{error:#}"), "a webhook's secret does not open");
                    Outcome::Final("the webhook's secret cannot be opened".into())
                }
            },
        };
        // Waits count from the end of the attempt, so a slow receiver is not called back sooner.
        let now = self.clock.now_ms();
        delivery.last_attempt_at = Some(started);
        let label = match outcome {
            Outcome::Delivered(code) => {
                delivery.attempts = delivery.attempts.saturating_add(1);
                delivery.set_status(DeliveryStatus::Delivered);
                delivery.last_status_code = Some(code);
                delivery.last_error = None;
                delivery.delivered_at = Some(now);
                delivery.next_attempt_at = None;
                "delivered"
            }
            Outcome::Final(reason) => {
                delivery.set_status(DeliveryStatus::Failed);
                delivery.last_error = Some(reason);
                delivery.next_attempt_at = None;
                "failed"
            }
            Outcome::Failed { code, error } => {
                delivery.attempts = delivery.attempts.saturating_add(1);
                delivery.last_status_code = code;
                delivery.last_error = Some(error);
                if u64::from(delivery.attempts) >= self.settings.max_attempts {
                    delivery.set_status(DeliveryStatus::Failed);
                    delivery.next_attempt_at = None;
                    "failed"
                } else {
                    let wait = backoff_ms(&self.settings, delivery.attempts);
                    delivery.next_attempt_at = Some(now.saturating_add(wait));
                    "retried"
                }
            }
        };
        self.metrics
            .webhook_attempts
            .get_or_create(&WebhookOutcomeLabels { outcome: label })
            .inc();
        let body = match serde_json::to_value(&delivery) {
            Ok(body) => body,
            Err(error) => {
                tracing::error!(%tenant, delivery = id, %error, "a webhook delivery cannot be serialised");
                return None;
            }
        };
        match self
            .storage
            .documents
            .replace(
                tenant,
                &self.deliveries,
                &document_id,
                &body,
                Some(stored.version),
            )
            .await
        {
            Ok(_) => delivery.next_attempt_at,
            // Deleted (with its webhook) or changed meanwhile: nothing more to do here.
            Err(DocumentError::VersionConflict { .. } | DocumentError::NotFound { .. }) => None,
            Err(error) => {
                tracing::warn!(%tenant, delivery = id, %error, "storing a webhook delivery's outcome failed; it is attempted again");
                delivery.next_attempt_at.or(retry_soon)
            }
        }
    }

    async fn send(
        &self,
        tenant: &TenantId,
        subscription: &Subscription,
        secret: &str,
        delivery: &Delivery,
    ) -> Outcome {
        let target =
            match check_target_syntax(&subscription.url, self.settings.allow_private_targets) {
                Ok(target) => target,
                Err(invalid) => return Outcome::failed(invalid.problem),
            };
        // A literal address never reaches the resolver: checked here.
        if !self.settings.allow_private_targets
            && let Some(address) = literal_address(&target)
            && !is_public(address)
        {
            return Outcome::failed(format!("{address} is not a public address"));
        }
        let body = serde_json::json!({
            "id": delivery.id,
            "eventType": delivery.event_type,
            "subscriptionId": delivery.subscription_id,
            "tenantId": tenant.as_str(),
            "occurredAt": crate::api::iso(delivery.occurred_at),
            "data": delivery.data,
        });
        let body = match serde_json::to_vec(&body) {
            Ok(body) => body,
            Err(error) => return Outcome::Final(format!("cannot serialise the body: {error}")),
        };
        let timestamp = self.clock.now_ms().div_euclid(1000);
        let signature = sign(secret, timestamp, &body);
        let sent = self
            .client
            .post(target)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("X-OpenFrame-Event", &delivery.event_type)
            .header("X-OpenFrame-Delivery", &delivery.id)
            .header("X-OpenFrame-Timestamp", timestamp.to_string())
            .header("X-OpenFrame-Signature", format!("sha256={signature}"))
            .body(body)
            .send()
            .await;
        match sent {
            Ok(response) if response.status().is_success() => {
                Outcome::Delivered(response.status().as_u16())
            }
            Ok(response) => {
                let status = response.status();
                let error = if status.is_redirection() {
                    format!("answered {status}; redirects are not followed")
                } else {
                    format!("answered {status}")
                };
                Outcome::Failed {
                    code: Some(status.as_u16()),
                    error,
                }
            }
            Err(error) => Outcome::failed(describe(&error, self.settings.timeout_ms)),
        }
    }
}

/// How one attempt ended.
enum Outcome {
    Delivered(u16),
    /// Failed; tried again unless it was the last attempt.
    Failed {
        code: Option<u16>,
        error: String,
    },
    /// Cannot succeed (the webhook is gone or off): failed without counting an attempt.
    Final(String),
}

impl Outcome {
    fn failed(error: String) -> Outcome {
        Outcome::Failed { code: None, error }
    }
}

fn unified_topic() -> anyhow::Result<Topic> {
    Topic::parse(UNIFIED_TOPIC).map_err(|error| anyhow::anyhow!("built-in topic: {error}"))
}

fn seal_context(tenant: &TenantId, id: &str) -> Vec<u8> {
    format!("webhook-secret\0{}\0{id}", tenant.as_str()).into_bytes()
}

fn newest_first(at: UnixMillis) -> String {
    format!("{:013}", NEWEST_FIRST - at.clamp(0, NEWEST_FIRST))
}

fn new_delivery(
    id: String,
    subscription: &str,
    event_type: &str,
    occurred_at: UnixMillis,
    data: Value,
    now: UnixMillis,
) -> Delivery {
    Delivery {
        id,
        subscription_id: subscription.to_owned(),
        subscription_status: subscription_status(subscription, DeliveryStatus::Pending),
        event_type: event_type.to_owned(),
        status: DeliveryStatus::Pending,
        attempts: 0,
        occurred_at,
        data,
        created_at: now,
        next_attempt_at: Some(now),
        last_attempt_at: None,
        last_status_code: None,
        last_error: None,
        delivered_at: None,
    }
}

fn read_delivery(body: Value) -> Result<Delivery, CatalogError> {
    serde_json::from_value(body).map_err(|error| {
        CatalogError::Store(DocumentError::Invalid(format!(
            "a stored webhook delivery cannot be read: {error}"
        )))
    })
}

/// `hex(HMAC-SHA256(secret, "{timestamp}.{body}"))`: what `X-OpenFrame-Signature` carries after
/// `sha256=`.
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let mut context = hmac::Context::with_key(&key);
    context.update(timestamp.to_string().as_bytes());
    context.update(b".");
    context.update(body);
    hex(context.sign().as_ref())
}

/// The wait after the `failures`-th failed attempt: the base, doubled per further failure, capped.
pub fn backoff_ms(settings: &WebhookConfig, failures: u32) -> i64 {
    let doublings = failures.saturating_sub(1).min(40);
    let wait = settings
        .backoff_base_ms
        .saturating_mul(1u64 << doublings)
        .min(settings.backoff_max_ms);
    i64::try_from(wait).unwrap_or(i64::MAX)
}

/// Known unified event types, upper-cased, without repeats, in the order given.
fn check_event_types(given: &[String]) -> Result<Vec<String>, Invalid> {
    if given.is_empty() {
        return Err(Invalid::new(
            "eventTypes",
            "name at least one unified event type, e.g. [\"LOGIN\"]",
        ));
    }
    if given.len() > MAX_EVENT_TYPES {
        return Err(Invalid::new(
            "eventTypes",
            format!("at most {MAX_EVENT_TYPES} event types, got {}", given.len()),
        ));
    }
    let mut types: Vec<String> = Vec::with_capacity(given.len());
    for name in given {
        let upper = name.trim().to_ascii_uppercase();
        let Some(known) = taxonomy::event_type(&upper) else {
            return Err(Invalid::new(
                "eventTypes",
                format!(
                    "{:?} is not a unified event type (e.g. LOGIN, DEVICE_REGISTERED, SCRIPT_FAILED)",
                    name.chars().take(100).collect::<String>()
                ),
            ));
        };
        if !types.iter().any(|held| held == known.name) {
            types.push(known.name.to_owned());
        }
    }
    Ok(types)
}

fn check_description(value: &str) -> Result<String, Invalid> {
    let value = value.trim();
    if value.chars().count() > MAX_DESCRIPTION_CHARS
        || value.chars().any(|c| c.is_control() && c != '\n')
    {
        return Err(Invalid::new(
            "description",
            format!("must be at most {MAX_DESCRIPTION_CHARS} printable characters"),
        ));
    }
    Ok(value.to_owned())
}

/// The URL's form: `https://` (or `http://` with private targets allowed), a host, no user
/// information or fragment, at most [`MAX_URL_BYTES`].
fn check_target_syntax(value: &str, allow_private: bool) -> Result<url::Url, Invalid> {
    if value.len() > MAX_URL_BYTES {
        return Err(Invalid::new(
            "url",
            format!("must be at most {MAX_URL_BYTES} bytes"),
        ));
    }
    let parsed = url::Url::parse(value.trim()).map_err(|_| {
        Invalid::new(
            "url",
            "is not an absolute URL, e.g. https://example.com/hook",
        )
    })?;
    let scheme_ok = match parsed.scheme() {
        "https" => true,
        "http" => allow_private,
        _ => false,
    };
    if !scheme_ok {
        return Err(Invalid::new(
            "url",
            if allow_private {
                "must be an https:// or http:// URL"
            } else {
                "must be an https:// URL"
            },
        ));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(Invalid::new("url", "must name a host"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() || parsed.fragment().is_some() {
        return Err(Invalid::new(
            "url",
            "must not carry user information or a fragment",
        ));
    }
    Ok(parsed)
}

fn literal_address(url: &url::Url) -> Option<IpAddr> {
    match url.host()? {
        url::Host::Ipv4(address) => Some(IpAddr::V4(address)),
        url::Host::Ipv6(address) => Some(IpAddr::V6(address)),
        url::Host::Domain(_) => None,
    }
}

/// Checks a target when subscribing: its form and, unless private targets are allowed, that
/// every address it resolves to is public. Returns the URL as stored.
async fn check_target(value: &str, allow_private: bool) -> Result<String, Invalid> {
    let parsed = check_target_syntax(value, allow_private)?;
    if !allow_private {
        let refuse = |address: IpAddr| {
            Invalid::new(
                "url",
                format!(
                    "points at {address}, a loopback, private, link-local or otherwise internal address; webhooks call public https:// URLs only (an operator may set [webhooks] allow_private_targets = true)"
                ),
            )
        };
        match literal_address(&parsed) {
            Some(address) if !is_public(address) => return Err(refuse(address)),
            Some(_) => {}
            None => {
                let host = parsed.host_str().unwrap_or_default().to_owned();
                match public_addresses(&host).await {
                    Ok(_) => {}
                    Err(Refused::Internal(address)) => return Err(refuse(address)),
                    Err(Refused::Unresolved(why)) => {
                        return Err(Invalid::new(
                            "url",
                            format!("its host {host:?} does not resolve ({why})"),
                        ));
                    }
                }
            }
        }
    }
    Ok(parsed.to_string())
}

/// Why a host may not be called.
#[derive(Debug, thiserror::Error)]
enum Refused {
    #[error("the host resolves to {0}, which is not a public address")]
    Internal(IpAddr),
    #[error("the host does not resolve: {0}")]
    Unresolved(String),
}

/// Every address `host` resolves to, if all of them are public.
async fn public_addresses(host: &str) -> Result<Vec<SocketAddr>, Refused> {
    let lookup = tokio::net::lookup_host((host, 0));
    let addresses: Vec<SocketAddr> =
        match tokio::time::timeout(Duration::from_secs(5), lookup).await {
            Ok(Ok(addresses)) => addresses.collect(),
            Ok(Err(error)) => return Err(Refused::Unresolved(error.to_string())),
            Err(_) => return Err(Refused::Unresolved("no answer within 5 s".into())),
        };
    if addresses.is_empty() {
        return Err(Refused::Unresolved("no addresses".into()));
    }
    if let Some(internal) = addresses.iter().find(|address| !is_public(address.ip())) {
        return Err(Refused::Internal(internal.ip()));
    }
    Ok(addresses)
}

/// The delivery client's resolver when private targets are not allowed: a name resolves only
/// if all its addresses are public, and the connection is made to exactly those addresses.
#[derive(Debug)]
struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addresses = public_addresses(&host)
                .await
                .map_err(|refused| Box::new(refused) as Box<dyn std::error::Error + Send + Sync>)?;
            Ok(Box::new(addresses.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

fn http_client(settings: &WebhookConfig) -> anyhow::Result<reqwest::Client> {
    let timeout = Duration::from_millis(settings.timeout_ms);
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        // A proxy would connect to a name we did not check.
        .no_proxy()
        .timeout(timeout)
        .connect_timeout(timeout)
        .pool_idle_timeout(Duration::from_secs(30))
        .user_agent(concat!("OpenFrame-Webhooks/", env!("CARGO_PKG_VERSION")));
    if !settings.allow_private_targets {
        builder = builder.dns_resolver(Arc::new(PublicOnly));
    }
    Ok(builder.build()?)
}

/// A failed request in a few words, without the URL (it may carry a token in its query).
fn describe(error: &reqwest::Error, timeout_ms: u64) -> String {
    if error.is_timeout() {
        return format!("no answer within {timeout_ms} ms");
    }
    let mut innermost: Option<&dyn std::error::Error> = None;
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        innermost = Some(cause);
        source = cause.source();
    }
    let detail = innermost.map_or_else(|| "the request failed".to_owned(), ToString::to_string);
    let text = if error.is_connect() {
        format!("cannot connect: {detail}")
    } else {
        detail
    };
    text.chars().take(MAX_ERROR_CHARS).collect()
}

/// Whether the public internet routes `address` to someone else: not loopback, private,
/// link-local, shared (CGNAT), documentation, benchmarking, multicast, reserved or unspecified
/// (IPv4 inside IPv6 is judged as IPv4).
pub fn is_public(address: IpAddr) -> bool {
    match address {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public_v4(v4);
            }
            let segments = v6.segments();
            let embedded_v4 = |high: u16, low: u16| {
                let [a, b] = high.to_be_bytes();
                let [c, d] = low.to_be_bytes();
                Ipv4Addr::new(a, b, c, d)
            };
            match segments {
                // NAT64 (64:ff9b::/96) and 6to4 (2002::/16) reach the IPv4 address inside.
                [0x64, 0xff9b, 0, 0, 0, 0, high, low] => is_public_v4(embedded_v4(high, low)),
                [0x2002, high, low, ..] => is_public_v4(embedded_v4(high, low)),
                // The IPv4-compatible and other reserved ::/96 forms, loopback, unspecified.
                [0, 0, 0, 0, 0, 0, _, _] => false,
                [first, second, ..] => {
                    let unique_local = first & 0xfe00 == 0xfc00;
                    let link_local = first & 0xffc0 == 0xfe80;
                    let site_local = first & 0xffc0 == 0xfec0;
                    let multicast = first & 0xff00 == 0xff00;
                    let documentation = first == 0x2001 && second == 0x0db8;
                    // Teredo (2001::/32) tunnels to addresses this check cannot see.
                    let teredo = first == 0x2001 && second == 0;
                    !(unique_local
                        || link_local
                        || site_local
                        || multicast
                        || documentation
                        || teredo)
                }
            }
        }
    }
}

fn is_public_v4(address: Ipv4Addr) -> bool {
    let [a, b, c, _] = address.octets();
    let shared = a == 100 && (64..128).contains(&b);
    let protocol_assignments = a == 192 && b == 0 && c == 0;
    let benchmarking = a == 198 && (b == 18 || b == 19);
    let reserved = a >= 240;
    !(a == 0
        || address.is_loopback()
        || address.is_private()
        || address.is_link_local()
        || address.is_broadcast()
        || address.is_multicast()
        || address.is_documentation()
        || shared
        || protocol_assignments
        || benchmarking
        || reserved)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_are_public() {
        for (address, public) in [
            ("93.184.215.14", true),
            ("8.8.8.8", true),
            ("127.0.0.1", false),
            ("10.1.2.3", false),
            ("172.16.0.1", false),
            ("172.32.0.1", true),
            ("192.168.1.1", false),
            ("169.254.169.254", false),
            ("0.0.0.0", false),
            ("100.64.0.1", false),
            ("100.128.0.1", true),
            ("192.0.2.1", false),
            ("198.18.0.1", false),
            ("224.0.0.1", false),
            ("255.255.255.255", false),
            ("240.0.0.1", false),
            ("2606:4700::1111", true),
            ("::1", false),
            ("::", false),
            ("::ffff:127.0.0.1", false),
            ("::ffff:8.8.8.8", true),
            ("fd00::1", false),
            ("fe80::1", false),
            ("ff02::1", false),
            ("2001:db8::1", false),
            ("64:ff9b::a00:1", false),
            ("64:ff9b::808:808", true),
            ("2002:c0a8:101::1", false),
        ] {
            let parsed: IpAddr = address.parse().unwrap();
            assert_eq!(is_public(parsed), public, "{address}");
        }
    }

    #[test]
    fn backoff_doubles_from_the_base_up_to_the_cap() {
        let settings = WebhookConfig {
            backoff_base_ms: 200,
            backoff_max_ms: 1_000,
            ..WebhookConfig::default()
        };
        let waits: Vec<i64> = (1..=5).map(|n| backoff_ms(&settings, n)).collect();
        assert_eq!(waits, [200, 400, 800, 1_000, 1_000]);
        assert_eq!(backoff_ms(&WebhookConfig::default(), 1000), 900_000);
    }

    #[test]
    fn target_urls_are_checked_for_form() {
        let refused = |url: &str, allow_private: bool| {
            check_target_syntax(url, allow_private)
                .map(|_| ())
                .unwrap_err()
                .field
        };
        assert!(check_target_syntax("https://hooks.example.com/x?a=1", false).is_ok());
        assert!(check_target_syntax("http://10.0.0.1:8080/x", true).is_ok());
        assert_eq!(refused("http://hooks.example.com/x", false), "url");
        assert_eq!(refused("ftp://hooks.example.com/x", true), "url");
        assert_eq!(refused("https://user:pw@hooks.example.com/", false), "url");
        assert_eq!(refused("https://hooks.example.com/#x", false), "url");
        assert_eq!(refused("hooks.example.com/x", false), "url");
        let long = format!("https://hooks.example.com/{}", "a".repeat(MAX_URL_BYTES));
        assert_eq!(refused(&long, false), "url");
    }

    #[test]
    fn event_types_must_be_known_and_are_normalised() {
        assert_eq!(
            check_event_types(&["login".into(), "LOGIN".into(), "DEVICE_REGISTERED".into()])
                .unwrap(),
            ["LOGIN", "DEVICE_REGISTERED"]
        );
        assert_eq!(check_event_types(&[]).unwrap_err().field, "eventTypes");
        assert_eq!(
            check_event_types(&["NOT_A_TYPE".into()]).unwrap_err().field,
            "eventTypes"
        );
        let many: Vec<String> = vec!["LOGIN".into(); MAX_EVENT_TYPES + 1];
        assert_eq!(check_event_types(&many).unwrap_err().field, "eventTypes");
    }

    #[test]
    fn the_signature_is_hmac_sha256_of_timestamp_dot_body() {
        // Streamed in three parts, it must equal one HMAC over the whole message.
        let key = hmac::Key::new(hmac::HMAC_SHA256, b"whsec_test");
        let expected = hex(hmac::sign(&key, b"1700000000.{\"a\":1}").as_ref());
        assert_eq!(sign("whsec_test", 1_700_000_000, b"{\"a\":1}"), expected);
    }

    #[test]
    fn delivery_ids_sort_newest_first() {
        assert!(newest_first(2_000) < newest_first(1_000));
        assert_eq!(newest_first(0).len(), 13);
        assert_eq!(newest_first(1_763_629_201_000).len(), 13);
    }
}
