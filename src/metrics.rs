//! Prometheus metrics, served as text on the admin listener at `/metrics`.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use openframe_storage::documents::Document;
use openframe_storage::error::{DocumentError, EngineFailure};
use openframe_storage::model::{Collection, DocumentId, TenantId};
use openframe_storage::{DocumentStore, Engine};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: String,
    /// The matched route template, never the raw path, so ids do not explode cardinality.
    pub route: String,
    pub status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StoreLabels {
    pub role: String,
    pub engine: String,
}

/// Security-relevant identity events, for alerting: failed and throttled sign-ins, replayed
/// codes and refresh tokens, wrong client secrets.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IdentityEventLabels {
    pub event: &'static str,
}

/// What happened to events in the pipeline: `accepted`, `rejected`, `skipped` (ingest);
/// `logged`, `unattributed`, `dead_lettered` (processing); `unattributed_tenant` (CDC over NATS).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StreamEventLabels {
    pub outcome: &'static str,
}

/// What became of a webhook delivery attempt: `delivered`, `retried` (failed, tried again
/// later) or `failed` (failed for the last time).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WebhookOutcomeLabels {
    pub outcome: &'static str,
}

/// A store's files on disk: `tenancy`, `events`, `analytics`, `search`, `nats`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StoreFileLabels {
    pub store: &'static str,
}

/// A document-store call, by operation (`get`, `list`, `insert`, …).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DocumentCallLabels {
    pub operation: &'static str,
}

/// Every metric the appliance exports, registered once.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub http_requests: Family<RequestLabels, Counter>,
    pub http_duration: Family<RequestLabels, Histogram>,
    pub store_up: Family<StoreLabels, Gauge>,
    /// Each store's size on disk, set when `/metrics` is scraped.
    pub store_bytes: Family<StoreFileLabels, Gauge>,
    pub nats_up: Gauge,
    pub nats_restarts: Gauge,
    /// When the last backup this process took (scheduled, or for `openframe backup`) or the
    /// newest scheduled archive at start was written, Unix seconds; 0 when none is known.
    pub backup_last_success: Gauge,
    /// Seconds since then, set at scrape time (absent while none is known).
    pub backup_age: Gauge,
    pub tls_handshake_failures: Counter,
    pub open_connections: Gauge,
    pub identity_events: Family<IdentityEventLabels, Counter>,
    pub stream_events: Family<StreamEventLabels, Counter>,
    /// Accepted events not yet processed by the pipeline.
    pub stream_backlog: Gauge,
    /// From an event's durable append (its acknowledgement) to the checkpoint that made it
    /// searchable and durable in every store.
    pub stream_searchable_seconds: Histogram,
    /// Agents' open `/ws/nats` sessions.
    pub agent_sessions: Gauge,
    /// Machines currently ONLINE.
    pub agents_online: Gauge,
    /// Calls to the document store (how a list that costs a query per row shows itself).
    pub document_calls: Family<DocumentCallLabels, Counter>,
    /// Webhook delivery attempts by outcome.
    pub webhook_attempts: Family<WebhookOutcomeLabels, Counter>,
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        let mut registry = Registry::with_prefix("openframe");
        registry.register(
            "build",
            "The running build",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );
        let http_requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTPS requests answered",
            http_requests.clone(),
        );
        let http_duration = Family::<RequestLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 16))
        });
        registry.register(
            "http_request_duration_seconds",
            "Time to answer HTTPS requests",
            http_duration.clone(),
        );
        let store_up = Family::<StoreLabels, Gauge>::default();
        registry.register(
            "store_up",
            "1 when the store answered its last health probe",
            store_up.clone(),
        );
        let tls_handshake_failures = Counter::default();
        registry.register(
            "tls_handshake_failures",
            "TLS handshakes that failed or timed out",
            tls_handshake_failures.clone(),
        );
        let open_connections = Gauge::default();
        registry.register(
            "open_connections",
            "HTTPS connections open now",
            open_connections.clone(),
        );
        let identity_events = Family::<IdentityEventLabels, Counter>::default();
        registry.register(
            "identity_events",
            "Security-relevant identity events (signin_failed, signin_throttled, code_replayed, refresh_reused, client_auth_failed)",
            identity_events.clone(),
        );
        let stream_events = Family::<StreamEventLabels, Counter>::default();
        registry.register(
            "stream_events",
            "Tool events by outcome (accepted, rejected, skipped, logged, unattributed, dead_lettered, unattributed_tenant)",
            stream_events.clone(),
        );
        let stream_backlog = Gauge::default();
        registry.register(
            "stream_backlog",
            "Accepted tool events waiting to be processed",
            stream_backlog.clone(),
        );
        let stream_searchable_seconds = Histogram::new([
            0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.0,
            3.0, 5.0, 10.0, 30.0, 60.0,
        ]);
        registry.register(
            "stream_searchable_seconds",
            "Time from a tool event's acknowledged append to the checkpoint after which it is searchable",
            stream_searchable_seconds.clone(),
        );
        let agent_sessions = Gauge::default();
        registry.register(
            "agent_sessions",
            "Agents' open NATS sessions on /ws/nats",
            agent_sessions.clone(),
        );
        let agents_online = Gauge::default();
        registry.register(
            "agents_online",
            "Machines currently ONLINE",
            agents_online.clone(),
        );
        let document_calls = Family::<DocumentCallLabels, Counter>::default();
        registry.register(
            "document_store_calls",
            "Calls to the document store by operation",
            document_calls.clone(),
        );
        let webhook_attempts = Family::<WebhookOutcomeLabels, Counter>::default();
        registry.register(
            "webhook_attempts",
            "Webhook delivery attempts by outcome (delivered, retried, failed)",
            webhook_attempts.clone(),
        );
        let store_bytes = Family::<StoreFileLabels, Gauge>::default();
        registry.register(
            "store_bytes",
            "Bytes each store holds on disk (tenancy, events, analytics, search, nats), read at scrape time",
            store_bytes.clone(),
        );
        let nats_up = Gauge::default();
        registry.register(
            "nats_up",
            "1 when NATS (the supervised nats-server, or the external one) is up, 0 otherwise",
            nats_up.clone(),
        );
        let nats_restarts = Gauge::default();
        registry.register(
            "nats_restarts",
            "Times the supervisor restarted nats-server since the appliance started",
            nats_restarts.clone(),
        );
        let backup_last_success = Gauge::default();
        registry.register(
            "backup_last_success_timestamp_seconds",
            "When the last successful backup was written (Unix seconds); 0 when none is known",
            backup_last_success.clone(),
        );
        let backup_age = Gauge::default();
        registry.register(
            "backup_age_seconds",
            "Seconds since the last successful backup, set at scrape time; -1 when none is known",
            backup_age.clone(),
        );
        Arc::new(Metrics {
            registry,
            backup_last_success,
            backup_age,
            store_bytes,
            nats_up,
            nats_restarts,
            webhook_attempts,
            document_calls,
            agent_sessions,
            agents_online,
            http_requests,
            http_duration,
            store_up,
            tls_handshake_failures,
            open_connections,
            identity_events,
            stream_events,
            stream_backlog,
            stream_searchable_seconds,
        })
    }

    /// The registry in Prometheus' text format.
    pub fn render(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

/// Middleware counting and timing every request by route.
pub async fn track(State(metrics): State<Arc<Metrics>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let response = next.run(request).await;
    let labels = RequestLabels {
        method,
        route,
        status: response.status().as_u16(),
    };
    metrics.http_requests.get_or_create(&labels).inc();
    metrics
        .http_duration
        .get_or_create(&labels)
        .observe(started.elapsed().as_secs_f64());
    response
}

/// The document store with every call counted in `openframe_document_store_calls_total`.
#[derive(Debug)]
pub struct CountedDocuments {
    inner: Arc<dyn DocumentStore>,
    calls: Family<DocumentCallLabels, Counter>,
}

impl CountedDocuments {
    pub fn wrap(inner: Arc<dyn DocumentStore>, metrics: &Metrics) -> Arc<dyn DocumentStore> {
        Arc::new(CountedDocuments {
            inner,
            calls: metrics.document_calls.clone(),
        })
    }

    fn tally(&self, operation: &'static str) {
        self.calls
            .get_or_create(&DocumentCallLabels { operation })
            .inc();
    }
}

#[async_trait::async_trait]
impl Engine for CountedDocuments {
    fn engine_name(&self) -> &'static str {
        self.inner.engine_name()
    }

    async fn check(&self) -> Result<(), EngineFailure> {
        self.inner.check().await
    }

    async fn close(&self) -> Result<(), EngineFailure> {
        self.inner.close().await
    }

    async fn snapshot(&self, into: &std::path::Path) -> Result<Vec<String>, EngineFailure> {
        self.inner.snapshot(into).await
    }
}

#[async_trait::async_trait]
impl DocumentStore for CountedDocuments {
    async fn insert(
        &self,
        tenant: &TenantId,
        collection: &Collection,
        id: &DocumentId,
        body: &serde_json::Value,
    ) -> Result<Document, DocumentError> {
        self.tally("insert");
        self.inner.insert(tenant, collection, id, body).await
    }

    async fn replace(
        &self,
        tenant: &TenantId,
        collection: &Collection,
        id: &DocumentId,
        body: &serde_json::Value,
        expected_version: Option<u64>,
    ) -> Result<Document, DocumentError> {
        self.tally("replace");
        self.inner
            .replace(tenant, collection, id, body, expected_version)
            .await
    }

    async fn get(
        &self,
        tenant: &TenantId,
        collection: &Collection,
        id: &DocumentId,
    ) -> Result<Option<Document>, DocumentError> {
        self.tally("get");
        self.inner.get(tenant, collection, id).await
    }

    async fn list(
        &self,
        tenant: &TenantId,
        collection: &Collection,
        after: Option<&DocumentId>,
        limit: usize,
    ) -> Result<Vec<Document>, DocumentError> {
        self.tally("list");
        self.inner.list(tenant, collection, after, limit).await
    }

    async fn find_by_field(
        &self,
        tenant: &TenantId,
        collection: &Collection,
        field: &str,
        value: &serde_json::Value,
        limit: usize,
    ) -> Result<Vec<Document>, DocumentError> {
        self.tally("find_by_field");
        self.inner
            .find_by_field(tenant, collection, field, value, limit)
            .await
    }

    async fn delete(
        &self,
        tenant: &TenantId,
        collection: &Collection,
        id: &DocumentId,
        expected_version: Option<u64>,
    ) -> Result<bool, DocumentError> {
        self.tally("delete");
        self.inner
            .delete(tenant, collection, id, expected_version)
            .await
    }

    async fn count(
        &self,
        tenant: &TenantId,
        collection: &Collection,
    ) -> Result<u64, DocumentError> {
        self.tally("count");
        self.inner.count(tenant, collection).await
    }

    async fn collections(&self, tenant: &TenantId) -> Result<Vec<Collection>, DocumentError> {
        self.tally("collections");
        self.inner.collections(tenant).await
    }

    async fn import(
        &self,
        tenant: &TenantId,
        collection: &Collection,
        document: &openframe_storage::documents::Document,
    ) -> Result<(), DocumentError> {
        self.tally("import");
        self.inner.import(tenant, collection, document).await
    }
}
