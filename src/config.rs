//! Configuration: sections with defaults, read with the precedence file < environment < CLI flags.
//!
//! The file is TOML (`config.example.toml` documents every key). An environment variable
//! `OPENFRAME_SECTION__KEY` sets `key` in `[section]` (nested sections add more `__` parts). Unknown
//! keys are errors wherever they come from, and every error names the key, where it came from, and
//! how to fix it: a typo must never silently fall back to a default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The environment variable prefix for settings.
pub const ENV_PREFIX: &str = "OPENFRAME_";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub tls: TlsConfig,
    pub storage: StorageSection,
    pub analytics: AnalyticsSection,
    pub search: SearchSection,
    pub identity: IdentitySection,
    pub mail: MailSection,
    pub gateway: GatewaySection,
    pub stream: StreamSection,
    pub nats: NatsSection,
    pub agents: AgentsSection,
    pub api: ApiSection,
    pub audit: AuditSection,
    pub webhooks: WebhookConfig,
    pub backup: BackupSection,
    pub detection: DetectionSection,
    pub assistant: AssistantSection,
    pub log: LogConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// The public HTTPS listener.
    pub listen: SocketAddr,
    /// The plain-HTTP admin listener (health, metrics). Keep it on loopback.
    pub admin_listen: SocketAddr,
    /// The URL clients use to reach the appliance; issuers and links are built from it.
    /// Empty: `https://{hostname}:{listen port}`.
    pub public_url: String,
    /// How long shutdown waits for in-flight requests before closing connections.
    pub shutdown_grace_seconds: u64,
    /// How long a client may take to finish the TLS handshake.
    pub tls_handshake_timeout_seconds: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8443)),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 9090)),
            public_url: String::new(),
            shutdown_grace_seconds: 30,
            tls_handshake_timeout_seconds: 10,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// The operator's certificate chain (PEM). Empty: a self-signed certificate is generated in
    /// `<data_dir>/tls/` on first start and reused after.
    pub cert_file: String,
    /// The operator's private key (PEM), required with `cert_file`.
    pub key_file: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageSection {
    pub data_dir: PathBuf,
    /// `sqlite` (embedded) or `mongo` (an external MongoDB, `[storage.mongo]`).
    pub documents: String,
    /// `redb` (embedded) or `kafka` (an external Kafka cluster, `[storage.kafka]`).
    pub events: String,
    pub kafka: KafkaSection,
    pub mongo: MongoSection,
    /// The embedded event log's page cache, in MiB. It bounds most of the appliance's memory
    /// under load; reads beyond it are served by the OS page cache.
    pub event_log_cache_mb: u64,
}

impl Default for StorageSection {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./openframe-data"),
            documents: "sqlite".into(),
            events: "redb".into(),
            kafka: KafkaSection::default(),
            mongo: MongoSection::default(),
            event_log_cache_mb: 128,
        }
    }
}

/// `[storage.kafka]`: the cluster that holds the event log with `storage.events = "kafka"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaSection {
    /// Bootstrap brokers, `host:port[,host:port...]`.
    pub brokers: String,
    /// Prefix of the appliance's topics (`<prefix><tenant>.<topic>`), so appliances can share a cluster.
    pub topic_prefix: String,
    /// Replication factor of the topics the appliance creates; -1 takes the broker's default.
    pub replication_factor: i16,
    /// How long a call keeps retrying an unreachable cluster before it fails (ingest answers 503).
    pub timeout_ms: u64,
    /// A tenant whose streams are OpenFrame's own unprefixed topics (`meshcentral.mongodb.events`,
    /// ...), to plug in an existing OpenFrame Kafka + Debezium deployment. Empty: none.
    pub openframe_tenant: String,
    /// SASL authentication: `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`. Empty: none.
    pub sasl_mechanism: String,
    /// The SASL user.
    pub username: String,
    /// A file holding the SASL password, so the secret stays out of the config file.
    pub password_file: String,
}

impl Default for KafkaSection {
    fn default() -> Self {
        let defaults = openframe_storage::KafkaSettings::new("");
        Self {
            brokers: String::new(),
            topic_prefix: defaults.topic_prefix,
            replication_factor: defaults.replication_factor,
            timeout_ms: u64::try_from(defaults.timeout.as_millis()).unwrap_or(u64::MAX),
            openframe_tenant: String::new(),
            sasl_mechanism: String::new(),
            username: String::new(),
            password_file: String::new(),
        }
    }
}

/// `[storage.mongo]`: the server that holds tenancy and documents with `storage.documents = "mongo"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MongoSection {
    /// `mongodb://user:password@host:port/database?...`; the database defaults to `openframe`.
    pub uri: String,
    /// How long a call waits for a usable server before it fails.
    pub timeout_ms: u64,
}

impl Default for MongoSection {
    fn default() -> Self {
        Self {
            uri: String::new(),
            timeout_ms: 10_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnalyticsSection {
    pub memory_limit_mb: u32,
    pub threads: u16,
}

impl Default for AnalyticsSection {
    fn default() -> Self {
        let defaults = openframe_storage::AnalyticsSettings::default();
        Self {
            memory_limit_mb: defaults.memory_limit_mb,
            threads: defaults.threads,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SearchSection {
    pub commit_interval_ms: u64,
    pub commit_every_docs: usize,
    pub writer_memory_mb: usize,
}

impl Default for SearchSection {
    fn default() -> Self {
        let defaults = openframe_storage::SearchSettings::default();
        Self {
            commit_interval_ms: defaults.commit_interval_ms,
            commit_every_docs: defaults.commit_every_docs,
            writer_memory_mb: defaults.writer_memory_mb,
        }
    }
}

/// The OAuth2/OIDC provider: token lifetimes, key rotation and sign-in throttling.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdentitySection {
    /// Lifetime of access and ID tokens (OpenFrame: 900).
    pub access_token_ttl_seconds: u64,
    /// Lifetime of a refresh token; each use issues a new one (OpenFrame: 604800, 7 days).
    pub refresh_token_ttl_seconds: u64,
    /// How long an authorization code may wait to be redeemed.
    pub authorization_code_ttl_seconds: u64,
    /// How long a sign-in at `/sas/{tenant}/login` lasts before the user must sign in again.
    pub session_ttl_seconds: u64,
    /// How long a rotated-in signing key is published before it signs, so relying parties
    /// that cache the JWKS learn it first.
    pub key_rotation_lead_seconds: u64,
    /// Failed sign-ins per account, within the window, before further attempts are refused.
    pub login_max_failures_per_account: u32,
    /// Failed sign-ins per client address, within the window, before it is refused.
    pub login_max_failures_per_address: u32,
    pub login_failure_window_seconds: u64,
    /// Self-registration at `POST /sas/oauth/register`: `bootstrap` (only while no tenant
    /// exists), `open` (anyone may create a tenant) or `closed`.
    pub registration: String,
    /// How long an invitation may wait to be accepted.
    pub invitation_ttl_hours: u64,
    /// How long a password-reset link works.
    pub password_reset_ttl_minutes: u64,
}

impl Default for IdentitySection {
    fn default() -> Self {
        Self {
            access_token_ttl_seconds: 900,
            refresh_token_ttl_seconds: 7 * 24 * 3600,
            authorization_code_ttl_seconds: 120,
            session_ttl_seconds: 8 * 3600,
            key_rotation_lead_seconds: 3600,
            login_max_failures_per_account: 5,
            login_max_failures_per_address: 50,
            login_failure_window_seconds: 900,
            registration: "bootstrap".into(),
            invitation_ttl_hours: 24,
            password_reset_ttl_minutes: 60,
        }
    }
}

/// Outgoing mail (invitations, password resets). Without `smtp_host`, messages are not sent:
/// they are logged and kept for admins to read and forward.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MailSection {
    pub smtp_host: String,
    pub smtp_port: u16,
    /// `starttls` (upgrade on the submission port), `tls` (implicit TLS, port 465) or `none`
    /// (plain, allowed only to a loopback relay).
    pub smtp_security: String,
    pub smtp_username: String,
    /// A file holding the SMTP password, so the secret stays out of the config file.
    pub smtp_password_file: String,
    /// The sender: `Name <address>` or an address.
    pub from: String,
}

impl Default for MailSection {
    fn default() -> Self {
        Self {
            smtp_host: String::new(),
            smtp_port: 587,
            smtp_security: "starttls".into(),
            smtp_username: String::new(),
            smtp_password_file: String::new(),
            from: "OpenFrame <openframe@localhost>".into(),
        }
    }
}

/// The public edge: limits, cross-origin access, API keys and the tool proxy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewaySection {
    /// The largest request body accepted, in bytes.
    pub max_body_bytes: u64,
    /// How long a client may take to send a request's headers (slow clients are dropped).
    pub header_read_timeout_seconds: u64,
    /// Origins (`https://host[:port]`, comma-separated) whose pages may call the APIs from a
    /// browser. Empty: only the appliance's own pages.
    pub cors_allowed_origins: String,
    /// A plain-HTTP listener that only redirects to HTTPS (e.g. `0.0.0.0:80`). Empty: none.
    pub http_redirect_listen: String,
    /// Unauthenticated endpoints (sign-in, tokens, agent registration): requests per second
    /// per client address, sustained. 0 turns the limit off.
    pub per_ip_requests_per_second: u32,
    /// ... and the burst allowed above that rate.
    pub per_ip_burst: u32,
    /// API keys' default limits (OpenFrame's), overridable per key.
    pub api_key_requests_per_minute: u64,
    pub api_key_requests_per_hour: u64,
    pub api_key_requests_per_day: u64,
    /// API keys' request statistics are written in batches, this often.
    pub api_key_stats_flush_seconds: u64,
    /// A verified access token is remembered this long (never past its expiry, and forgotten at
    /// once when anything is revoked in this process). 0 verifies every request in full.
    pub token_cache_seconds: u64,
    /// The tool proxy's limit for one upstream request.
    pub tool_timeout_seconds: u64,
}

impl Default for GatewaySection {
    fn default() -> Self {
        Self {
            max_body_bytes: 10 * 1024 * 1024,
            header_read_timeout_seconds: 10,
            cors_allowed_origins: String::new(),
            http_redirect_listen: String::new(),
            per_ip_requests_per_second: 20,
            per_ip_burst: 200,
            api_key_requests_per_minute: 100,
            api_key_requests_per_hour: 3_000,
            api_key_requests_per_day: 30_000,
            api_key_stats_flush_seconds: 10,
            token_cache_seconds: 30,
            tool_timeout_seconds: 30,
        }
    }
}

impl GatewaySection {
    /// The configured CORS origins, parsed and validated.
    pub fn cors_origins(&self) -> Result<Vec<String>, String> {
        self.cors_allowed_origins
            .split(',')
            .map(str::trim)
            .filter(|origin| !origin.is_empty())
            .map(|origin| {
                let parsed = url::Url::parse(origin).map_err(|_| {
                    format!("{origin:?} is not an origin such as \"https://portal.example.com\"")
                })?;
                let serialised = parsed.origin().ascii_serialization();
                if serialised != origin || !matches!(parsed.scheme(), "https" | "http") {
                    return Err(format!(
                        "{origin:?} is not an origin: give scheme, host and port only, e.g. \"{serialised}\""
                    ));
                }
                Ok(serialised)
            })
            .collect()
    }

    pub fn redirect_listen(&self) -> Result<Option<SocketAddr>, String> {
        if self.http_redirect_listen.is_empty() {
            return Ok(None);
        }
        self.http_redirect_listen.parse().map(Some).map_err(|_| {
            format!(
                "{:?} is not an address such as \"0.0.0.0:80\"",
                self.http_redirect_listen
            )
        })
    }
}

/// The event pipeline: ingest limits, backpressure, the Fleet join and log retention.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StreamSection {
    /// The largest single event accepted by ingest, in bytes; larger ones are refused with a
    /// reason (and kept in the dead-letter topic).
    pub max_event_bytes: u64,
    /// When this many accepted events wait to be processed, ingest answers 503 with
    /// `Retry-After` instead of growing the backlog.
    pub max_backlog_events: u64,
    /// How long a Fleet activity waits for its `host_activities` row before it is logged
    /// without a host (OpenFrame's join window is 5 s).
    pub fleet_join_window_ms: u64,
    /// How often the pipeline makes its progress durable: the search index is committed and
    /// consumer offsets are written. After a crash, at most this much work is redone.
    pub checkpoint_interval_ms: u64,
    /// Records a consumer takes from the log at once.
    pub consumer_batch: u64,
    /// While ingest runs faster than this many events per second, processing yields the CPU to
    /// it (one pass a second), so a burst is acknowledged at full speed and processed after;
    /// past half of `max_backlog_events` processing runs flat out again. 0: never yield.
    pub yield_to_ingest_above: u64,
    /// Unified log entries older than this are deleted (OpenFrame's Pinot retention).
    pub log_retention_days: u64,
    /// Per-tenant exceptions to `log_retention_days`: `{ acme = 365 }`.
    pub tenant_log_retention_days: std::collections::BTreeMap<String, u64>,
    /// Raw tool events are kept this long in the event log.
    pub raw_retention_days: u64,
    /// ... and each tenant's raw stream of a topic is cut to this many MiB (oldest first).
    /// 0: no size bound.
    pub raw_retention_max_mb: u64,
    /// Events published on `cdc.{messageType}` (without a tenant in the subject) belong to this
    /// tenant. Empty: to the only tenant when there is exactly one; otherwise they are kept aside
    /// in the `CDC_DEAD` stream and `cdc.{tenantId}.{messageType}` must be used.
    pub nats_tenant: String,
    /// Operators' mappings of tool event types, ahead of the built-in tables (see
    /// `[[stream.mapping_overrides]]` in config.example.toml). Admins can add more per tenant
    /// through `/api/stream/mappings`.
    pub mapping_overrides: Vec<MappingOverrideConfig>,
}

/// Agent and CDC messaging: a supervised `nats-server`, or an external one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatsSection {
    /// `embedded` (the appliance runs `nats-server` on loopback), `external` (use `url`), or
    /// `off` (no NATS: agents and CDC over NATS are unavailable; HTTP ingest still works).
    pub mode: String,
    /// The `nats-server` binary; empty: the first on PATH. Debian's 2.9 package works; 2.10 or
    /// newer adds `sync_interval` and key-value buckets.
    pub server_path: String,
    /// Embedded: loopback ports for clients and WebSocket; 0 picks free ones at start.
    pub client_port: u16,
    pub websocket_port: u16,
    /// External: `nats://user:password@host:4222`.
    pub url: String,
}

impl Default for NatsSection {
    fn default() -> Self {
        Self {
            mode: "embedded".into(),
            server_path: String::new(),
            client_port: 0,
            websocket_port: 0,
            url: String::new(),
        }
    }
}

/// Endpoint agents: presence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentsSection {
    /// An ONLINE machine silent this long turns OFFLINE (OpenFrame: 130 s; agents heartbeat
    /// every 60 s).
    pub offline_after_seconds: u64,
}

impl Default for AgentsSection {
    fn default() -> Self {
        Self {
            offline_after_seconds: 130,
        }
    }
}

/// The technician API (`/api`, GraphQL at `/api/graphql`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiSection {
    /// Serve the GraphiQL page on `GET /api/graphql` (still behind the ADMIN check).
    pub graphiql: bool,
    /// Answer schema introspection queries (`__schema`, `__type`).
    pub introspection: bool,
    /// The deepest selection a GraphQL query may nest.
    pub max_depth: u64,
    /// The most work a GraphQL query may ask for: each field counts 1, and a connection's
    /// selection counts once per row it may return (`first`/`last`, 20 when absent).
    pub max_complexity: u64,
}

impl Default for ApiSection {
    fn default() -> Self {
        Self {
            graphiql: false,
            introspection: true,
            max_depth: 15,
            max_complexity: 5_000,
        }
    }
}

/// The audit trail of technicians' changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct AuditSection {
    /// Forward each audit record to a syslog collector as RFC 5424: `udp://host:port` or
    /// `tcp://host:port` (octet-counted frames, RFC 6587). Empty: off.
    pub syslog: String,
}

impl AuditSection {
    /// `(transport, address)` of the collector, or `None` when forwarding is off.
    pub fn syslog_target(&self) -> Result<Option<(SyslogTransport, String)>, String> {
        if self.syslog.is_empty() {
            return Ok(None);
        }
        let (transport, address) = if let Some(rest) = self.syslog.strip_prefix("udp://") {
            (SyslogTransport::Udp, rest)
        } else if let Some(rest) = self.syslog.strip_prefix("tcp://") {
            (SyslogTransport::Tcp, rest)
        } else {
            return Err(format!(
                "{:?} must be udp://host:port or tcp://host:port",
                self.syslog
            ));
        };
        let port_ok = address.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
        });
        if !port_ok {
            return Err(format!(
                "{:?} must name a host and a port, e.g. udp://127.0.0.1:514",
                self.syslog
            ));
        }
        Ok(Some((transport, address.to_owned())))
    }
}

/// Offline anomaly detection over the unified log (`src/detect/`): the thresholds of every
/// tenant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectionSection {
    pub enabled: bool,
    /// How often the detectors read the new log entries and resolve what went quiet.
    pub interval_seconds: u64,
    pub login_failed_count: u64,
    pub login_failed_window_minutes: u64,
    pub offline_devices: u64,
    pub offline_window_minutes: u64,
    pub first_seen_learning_hours: u64,
    pub first_seen_fleet_share: f64,
    pub spike_min_count: u64,
    pub policy_violation_min_count: u64,
    pub spike_z: f64,
    pub baseline_hours: u64,
    pub quiet_minutes: u64,
    /// Alerts about the same device or customer this close together are one incident.
    pub correlation_window_minutes: u64,
}

impl Default for DetectionSection {
    fn default() -> Self {
        let defaults = crate::detect::Thresholds::default();
        let minutes = |ms: i64| u64::try_from(ms / 60_000).unwrap_or_default();
        Self {
            enabled: true,
            interval_seconds: 15,
            login_failed_count: defaults.login_failed_count as u64,
            login_failed_window_minutes: minutes(defaults.login_failed_window_ms),
            offline_devices: defaults.offline_devices as u64,
            offline_window_minutes: minutes(defaults.offline_window_ms),
            first_seen_learning_hours: minutes(defaults.first_seen_learning_ms) / 60,
            first_seen_fleet_share: defaults.first_seen_fleet_share,
            spike_min_count: defaults.spike_min_count,
            policy_violation_min_count: defaults.policy_violation_min_count,
            spike_z: defaults.spike_z,
            baseline_hours: defaults.baseline_hours as u64,
            quiet_minutes: minutes(defaults.quiet_ms),
            correlation_window_minutes: minutes(defaults.correlation_window_ms),
        }
    }
}

impl DetectionSection {
    /// The detectors' thresholds, or what is wrong with the section (the key named).
    pub fn thresholds(&self) -> Result<crate::detect::Thresholds, String> {
        let positive = [
            ("interval_seconds", self.interval_seconds),
            ("login_failed_count", self.login_failed_count),
            (
                "login_failed_window_minutes",
                self.login_failed_window_minutes,
            ),
            ("offline_devices", self.offline_devices),
            ("offline_window_minutes", self.offline_window_minutes),
            ("spike_min_count", self.spike_min_count),
            (
                "policy_violation_min_count",
                self.policy_violation_min_count,
            ),
            ("quiet_minutes", self.quiet_minutes),
            (
                "correlation_window_minutes",
                self.correlation_window_minutes,
            ),
        ];
        for (key, value) in positive {
            if value == 0 || value > 1_000_000 {
                return Err(format!("{key}: {value} must be between 1 and 1000000"));
            }
        }
        if !(24..=24 * 90).contains(&self.baseline_hours) {
            return Err(format!(
                "baseline_hours: {} must be between 24 and 2160 (90 days)",
                self.baseline_hours
            ));
        }
        if self.first_seen_learning_hours > 24 * 90 {
            return Err("first_seen_learning_hours: at most 2160 (90 days)".to_owned());
        }
        if !(self.first_seen_fleet_share > 0.0 && self.first_seen_fleet_share <= 1.0) {
            return Err(format!(
                "first_seen_fleet_share: {} must be above 0 and at most 1",
                self.first_seen_fleet_share
            ));
        }
        if !(self.spike_z.is_finite() && self.spike_z >= 1.0) {
            return Err(format!("spike_z: {} must be at least 1", self.spike_z));
        }
        let ms = |minutes: u64| i64::try_from(minutes * 60_000).unwrap_or(i64::MAX);
        Ok(crate::detect::Thresholds {
            login_failed_count: self.login_failed_count as usize,
            login_failed_window_ms: ms(self.login_failed_window_minutes),
            offline_devices: self.offline_devices as usize,
            offline_window_ms: ms(self.offline_window_minutes),
            first_seen_learning_ms: ms(self.first_seen_learning_hours * 60),
            first_seen_fleet_share: self.first_seen_fleet_share,
            spike_min_count: self.spike_min_count,
            policy_violation_min_count: self.policy_violation_min_count,
            spike_z: self.spike_z,
            baseline_hours: self.baseline_hours as usize,
            quiet_ms: ms(self.quiet_minutes),
            correlation_window_ms: ms(self.correlation_window_minutes),
        })
    }
}

/// The optional assistant (`src/assist/`): which language model, where, and how long to wait.
/// Off by default; nothing leaves the appliance unless an operator turns it on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AssistantSection {
    pub enabled: bool,
    /// `anthropic` (the Messages API) or `openai` (any OpenAI-compatible chat completions
    /// server, such as a local model server on an air-gapped site).
    pub provider: String,
    /// Empty: `https://api.anthropic.com` for `anthropic`; required for `openai`, ending in
    /// `/v1` (e.g. `http://127.0.0.1:8000/v1`).
    pub base_url: String,
    pub model: String,
    /// A file holding the provider's API key (kept out of this file). Empty: no key is sent,
    /// which local model servers accept.
    pub api_key_file: String,
    /// The longest a technician waits for an answer.
    pub timeout_seconds: u64,
    pub max_tokens: u32,
    /// The most log entries a device summary reads.
    pub max_log_entries: usize,
}

impl Default for AssistantSection {
    fn default() -> Self {
        Self {
            enabled: false,
            provider: "anthropic".into(),
            base_url: String::new(),
            model: String::new(),
            api_key_file: String::new(),
            timeout_seconds: 30,
            max_tokens: 1024,
            max_log_entries: 100,
        }
    }
}

impl AssistantSection {
    /// The base URL to use, or what is wrong with the section (the key named).
    pub fn resolved_base_url(&self) -> Result<String, String> {
        let url = match (self.provider.as_str(), self.base_url.trim()) {
            ("anthropic", "") => "https://api.anthropic.com".to_owned(),
            ("openai", "") => {
                return Err(
                    "base_url: required for provider \"openai\" (e.g. \"http://127.0.0.1:8000/v1\")"
                        .to_owned(),
                );
            }
            ("anthropic" | "openai", url) => url.trim_end_matches('/').to_owned(),
            (other, _) => {
                return Err(format!(
                    "provider: {other:?} must be \"anthropic\" or \"openai\""
                ));
            }
        };
        let parsed =
            url::Url::parse(&url).map_err(|error| format!("base_url: {url:?}: {error}"))?;
        if !matches!(parsed.scheme(), "https" | "http") || parsed.host_str().is_none() {
            return Err(format!(
                "base_url: {url:?} must be an http:// or https:// URL"
            ));
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err("base_url: put the key in api_key_file, not in the URL".to_owned());
        }
        Ok(url)
    }

    /// Checks an enabled section: provider, URL, model, limits.
    pub fn check(&self) -> Result<(), String> {
        if !self.enabled {
            return Ok(());
        }
        self.resolved_base_url()?;
        if self.model.trim().is_empty() {
            return Err("model: required when the assistant is enabled".to_owned());
        }
        if !(1..=600).contains(&self.timeout_seconds) {
            return Err(format!(
                "timeout_seconds: {} must be between 1 and 600",
                self.timeout_seconds
            ));
        }
        if !(64..=32_000).contains(&self.max_tokens) {
            return Err(format!(
                "max_tokens: {} must be between 64 and 32000",
                self.max_tokens
            ));
        }
        if !(1..=1000).contains(&self.max_log_entries) {
            return Err(format!(
                "max_log_entries: {} must be between 1 and 1000",
                self.max_log_entries
            ));
        }
        Ok(())
    }
}

/// Scheduled backups: the serving appliance writes one archive (as `openframe backup` does) every
/// `interval_hours` into `dir`, keeping the newest `keep`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackupSection {
    /// Hours between scheduled backups; 0 turns them off.
    pub interval_hours: u64,
    /// Archives kept; older ones are deleted after each new one.
    pub keep: u64,
    /// Where archives go; empty means `<data_dir>/backups`.
    pub dir: String,
}

impl Default for BackupSection {
    fn default() -> Self {
        Self {
            interval_hours: 24,
            keep: 7,
            dir: String::new(),
        }
    }
}

impl BackupSection {
    /// The directory archives go to.
    pub fn directory(&self, data_dir: &std::path::Path) -> std::path::PathBuf {
        if self.dir.trim().is_empty() {
            data_dir.join("backups")
        } else {
            std::path::PathBuf::from(self.dir.trim())
        }
    }
}

/// Webhooks of the public API: how deliveries are sent and retried.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookConfig {
    /// Allow `http://` targets and targets on loopback, private, link-local and other internal
    /// addresses. Off, a subscription can only make the appliance call public `https://` URLs
    /// (checked when subscribing and again, on the resolved address, at every delivery).
    pub allow_private_targets: bool,
    /// Attempts per delivery, the first included; after the last failed one it is `failed`.
    pub max_attempts: u64,
    /// The wait after the first failed attempt; it doubles after each further failure...
    pub backoff_base_ms: u64,
    /// ... up to this.
    pub backoff_max_ms: u64,
    /// One attempt (connect, send, answer) may take this long before it counts as failed.
    pub timeout_ms: u64,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            allow_private_targets: false,
            max_attempts: 8,
            backoff_base_ms: 1_000,
            backoff_max_ms: 15 * 60 * 1000,
            timeout_ms: 10_000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyslogTransport {
    Udp,
    Tcp,
}

/// One configured mapping: events of `tool` with `source_event_type` become `event_type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MappingOverrideConfig {
    /// Only this tenant; absent: every tenant.
    #[serde(default)]
    pub tenant: Option<String>,
    /// `meshcentral`, `fleet-mdm` or `rmm`.
    pub tool: String,
    /// MeshCentral `etype.action`, Fleet `activity_type`, …
    pub source_event_type: String,
    /// A unified event type (`LOGIN`, `HOST_LOCKED`, …).
    pub event_type: String,
    /// `INFO`, `WARNING`, `ERROR` or `CRITICAL`; absent: the type's own.
    #[serde(default)]
    pub severity: Option<String>,
}

impl Default for StreamSection {
    fn default() -> Self {
        Self {
            max_event_bytes: 128 * 1024,
            max_backlog_events: 1_000_000,
            fleet_join_window_ms: 5_000,
            checkpoint_interval_ms: 250,
            consumer_batch: 2_000,
            yield_to_ingest_above: 20_000,
            log_retention_days: 60,
            tenant_log_retention_days: std::collections::BTreeMap::new(),
            raw_retention_days: 7,
            raw_retention_max_mb: 4096,
            nats_tenant: String::new(),
            mapping_overrides: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Pretty,
    /// One JSON object per line, for journald and log shippers.
    Json,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A tracing filter: `info`, `openframe=debug,info`, ...
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Pretty,
            level: "info".into(),
        }
    }
}

/// Settings given as command-line flags: the last word.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CliOverrides {
    pub data_dir: Option<PathBuf>,
    pub listen: Option<SocketAddr>,
    pub admin_listen: Option<SocketAddr>,
    pub log_format: Option<LogFormat>,
}

/// A configuration problem: which key, where it came from, what is wrong and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{source_name}: {message}")]
pub struct ConfigError {
    /// `config file /etc/openframe/config.toml`, `environment variable OPENFRAME_X__Y`, ...
    pub source_name: String,
    pub message: String,
}

impl ConfigError {
    fn new(source_name: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            source_name: source_name.into(),
            message: message.into(),
        }
    }
}

impl Config {
    /// Reads the file (if any), then the environment, then the flags, and validates the result.
    pub fn load(
        file: Option<&Path>,
        environment: impl IntoIterator<Item = (String, String)>,
        flags: &CliOverrides,
    ) -> Result<Config, ConfigError> {
        let mut merged = toml::Table::new();
        if let Some(path) = file {
            let source_name = format!("config file {}", path.display());
            let text = std::fs::read_to_string(path).map_err(|error| {
                ConfigError::new(&source_name, format!("cannot read it: {error}"))
            })?;
            merged = Config::file_table(&text, &source_name)?;
        }
        let mut environment: Vec<(String, String)> = environment
            .into_iter()
            .filter(|(name, _)| name.starts_with(ENV_PREFIX))
            .collect();
        environment.sort();
        if !environment.is_empty() {
            // The defaults name every setting and its type; env values are checked against them.
            let known = toml::Value::try_from(Config::default())
                .map_err(|error| ConfigError::new("defaults", error.to_string()))?;
            for (name, value) in environment {
                apply_env(&mut merged, &known, &name, &value)?;
            }
        }
        let mut config = Config::from_table(&merged, "environment")?;
        config.apply(flags);
        config.validate()?;
        Ok(config)
    }

    /// A config file's text alone, validated: what `load` makes of a file when no environment
    /// variable or flag changes it.
    pub fn from_file_text(text: &str, source_name: &str) -> Result<Config, ConfigError> {
        let config = Config::from_table(&Config::file_table(text, source_name)?, source_name)?;
        config.validate()?;
        Ok(config)
    }

    /// The file's settings as a table, deserialised alone first so its errors point at the file.
    fn file_table(text: &str, source_name: &str) -> Result<toml::Table, ConfigError> {
        let table = toml::from_str(text)
            .map_err(|error| ConfigError::new(source_name, one_line(&error.to_string())))?;
        Config::from_table(&table, source_name)?;
        Ok(table)
    }

    fn from_table(table: &toml::Table, source_name: &str) -> Result<Config, ConfigError> {
        toml::Value::Table(table.clone())
            .try_into()
            .map_err(|error: toml::de::Error| {
                ConfigError::new(source_name, one_line(error.message()))
            })
    }

    fn apply(&mut self, flags: &CliOverrides) {
        if let Some(data_dir) = &flags.data_dir {
            self.storage.data_dir = data_dir.clone();
        }
        if let Some(listen) = flags.listen {
            self.server.listen = listen;
        }
        if let Some(admin_listen) = flags.admin_listen {
            self.server.admin_listen = admin_listen;
        }
        if let Some(format) = flags.log_format {
            self.log.format = format;
        }
    }

    /// Checks what the types cannot: combinations, ranges and formats.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid =
            |key: &str, message: String| ConfigError::new(format!("setting {key}"), message);
        self.audit
            .syslog_target()
            .map_err(|message| invalid("audit.syslog", message))?;
        self.detection
            .thresholds()
            .map_err(|message| invalid("detection", message))?;
        self.assistant
            .check()
            .map_err(|message| invalid("assistant", message))?;
        if !self.server.public_url.is_empty() {
            let url = &self.server.public_url;
            let well_formed = url.starts_with("https://")
                && url.len() > "https://".len()
                && !url.ends_with('/')
                && !url.contains(char::is_whitespace);
            if !well_formed {
                return Err(invalid(
                    "server.public_url",
                    format!(
                        "{url:?} must be an https:// URL without a trailing slash, e.g. \"https://openframe.example.com\""
                    ),
                ));
            }
        }
        // Port 0 asks the OS for any free port, so two zeros never collide.
        if self.server.listen == self.server.admin_listen && self.server.listen.port() != 0 {
            return Err(invalid(
                "server.admin_listen",
                format!(
                    "{} is also server.listen; give the admin listener its own port",
                    self.server.listen
                ),
            ));
        }
        if self.tls.cert_file.is_empty() != self.tls.key_file.is_empty() {
            return Err(invalid(
                "tls.cert_file",
                "tls.cert_file and tls.key_file go together: set both, or neither for a self-signed certificate".into(),
            ));
        }
        if self.storage.data_dir.as_os_str().is_empty() {
            return Err(invalid("storage.data_dir", "must not be empty".into()));
        }
        match self.storage.documents.as_str() {
            "sqlite" => {}
            "mongo" if !self.storage.mongo.uri.is_empty() => {}
            "mongo" => {
                return Err(invalid(
                    "storage.mongo.uri",
                    "required when storage.documents = \"mongo\"".into(),
                ));
            }
            other => {
                return Err(invalid(
                    "storage.documents",
                    format!("{other:?} is not a backend; use \"sqlite\" or \"mongo\""),
                ));
            }
        }
        match self.storage.events.as_str() {
            "redb" => {}
            "kafka" if !self.storage.kafka.brokers.trim().is_empty() => {}
            "kafka" => {
                return Err(invalid(
                    "storage.kafka.brokers",
                    "required when storage.events = \"kafka\"; give host:port[,host:port...]"
                        .into(),
                ));
            }
            other => {
                return Err(invalid(
                    "storage.events",
                    format!("{other:?} is not a backend; use \"redb\" or \"kafka\""),
                ));
            }
        }
        let kafka = &self.storage.kafka;
        if !kafka.openframe_tenant.is_empty()
            && let Err(error) = openframe_storage::TenantId::parse(&kafka.openframe_tenant)
        {
            return Err(invalid("storage.kafka.openframe_tenant", error.to_string()));
        }
        if !(kafka.topic_prefix.is_empty()
            || openframe_storage::model::Topic::parse(&kafka.topic_prefix).is_ok()
                && kafka.topic_prefix.len() <= 64)
        {
            return Err(invalid(
                "storage.kafka.topic_prefix",
                "at most 64 characters of A-Z, a-z, 0-9, '.', '_' and '-'".into(),
            ));
        }
        if !kafka.sasl_mechanism.is_empty() {
            if openframe_storage::SaslMechanism::parse(&kafka.sasl_mechanism).is_none() {
                return Err(invalid(
                    "storage.kafka.sasl_mechanism",
                    format!(
                        "{:?} is not a mechanism; use {}",
                        kafka.sasl_mechanism,
                        openframe_storage::SaslMechanism::NAMES
                    ),
                ));
            }
            if kafka.username.is_empty() || kafka.password_file.is_empty() {
                return Err(invalid(
                    "storage.kafka.username",
                    "username and password_file are required with sasl_mechanism".into(),
                ));
            }
        }
        if kafka.replication_factor == 0 || kafka.replication_factor < -1 {
            return Err(invalid(
                "storage.kafka.replication_factor",
                format!(
                    "{} is not a replication factor; use -1 (the broker's default) or 1 and up",
                    kafka.replication_factor
                ),
            ));
        }
        for (key, timeout) in [
            ("storage.kafka.timeout_ms", kafka.timeout_ms),
            ("storage.mongo.timeout_ms", self.storage.mongo.timeout_ms),
        ] {
            if !(100..=600_000).contains(&timeout) {
                return Err(invalid(
                    key,
                    format!("{timeout} is out of range 100..=600000"),
                ));
            }
        }
        if !(16..=1_048_576).contains(&self.analytics.memory_limit_mb) {
            return Err(invalid(
                "analytics.memory_limit_mb",
                format!(
                    "{} is out of range 16..=1048576",
                    self.analytics.memory_limit_mb
                ),
            ));
        }
        if !(1..=256).contains(&self.analytics.threads) {
            return Err(invalid(
                "analytics.threads",
                format!("{} is out of range 1..=256", self.analytics.threads),
            ));
        }
        if self.search.writer_memory_mb < 15 {
            return Err(invalid(
                "search.writer_memory_mb",
                format!(
                    "{} is below tantivy's minimum of 15",
                    self.search.writer_memory_mb
                ),
            ));
        }
        if self.search.commit_every_docs == 0 || self.search.commit_interval_ms == 0 {
            return Err(invalid(
                "search.commit_every_docs",
                "search.commit_every_docs and search.commit_interval_ms must be at least 1".into(),
            ));
        }
        let identity = &self.identity;
        let lifetimes = [
            (
                "identity.access_token_ttl_seconds",
                identity.access_token_ttl_seconds,
                60,
                86_400,
            ),
            (
                "identity.refresh_token_ttl_seconds",
                identity.refresh_token_ttl_seconds,
                300,
                90 * 86_400,
            ),
            (
                "identity.authorization_code_ttl_seconds",
                identity.authorization_code_ttl_seconds,
                10,
                600,
            ),
            (
                "identity.session_ttl_seconds",
                identity.session_ttl_seconds,
                60,
                30 * 86_400,
            ),
            (
                "identity.key_rotation_lead_seconds",
                identity.key_rotation_lead_seconds,
                0,
                30 * 86_400,
            ),
            (
                "identity.login_failure_window_seconds",
                identity.login_failure_window_seconds,
                1,
                86_400,
            ),
        ];
        for (key, value, low, high) in lifetimes {
            if !(low..=high).contains(&value) {
                return Err(invalid(
                    key,
                    format!("{value} is out of range {low}..={high}"),
                ));
            }
        }
        if identity.login_max_failures_per_account == 0
            || identity.login_max_failures_per_address == 0
        {
            return Err(invalid(
                "identity.login_max_failures_per_account",
                "identity.login_max_failures_per_account and _per_address must be at least 1"
                    .into(),
            ));
        }
        match self.identity.registration.as_str() {
            "bootstrap" | "open" | "closed" => {}
            other => {
                return Err(invalid(
                    "identity.registration",
                    format!("{other:?} is not a mode; use \"bootstrap\", \"open\" or \"closed\""),
                ));
            }
        }
        let mail = &self.mail;
        match mail.smtp_security.as_str() {
            "starttls" | "tls" => {}
            "none"
                if mail.smtp_host.is_empty()
                    || matches!(mail.smtp_host.as_str(), "localhost" | "127.0.0.1" | "::1") => {}
            "none" => {
                return Err(invalid(
                    "mail.smtp_security",
                    "\"none\" sends passwords and links in the clear; it is allowed only to a relay on localhost".into(),
                ));
            }
            other => {
                return Err(invalid(
                    "mail.smtp_security",
                    format!("{other:?} is not a mode; use \"starttls\", \"tls\" or \"none\""),
                ));
            }
        }
        if mail.smtp_username.is_empty() != mail.smtp_password_file.is_empty() {
            return Err(invalid(
                "mail.smtp_username",
                "mail.smtp_username and mail.smtp_password_file go together".into(),
            ));
        }
        if mail.from.parse::<lettre::message::Mailbox>().is_err() {
            return Err(invalid(
                "mail.from",
                format!(
                    "{:?} is not a sender such as \"OpenFrame <openframe@example.com>\"",
                    mail.from
                ),
            ));
        }
        let gateway = &self.gateway;
        if let Err(message) = gateway.cors_origins() {
            return Err(invalid("gateway.cors_allowed_origins", message));
        }
        if let Err(message) = gateway.redirect_listen() {
            return Err(invalid("gateway.http_redirect_listen", message));
        }
        let limits = [
            (
                "gateway.max_body_bytes",
                gateway.max_body_bytes,
                1024,
                1 << 30,
            ),
            (
                "gateway.header_read_timeout_seconds",
                gateway.header_read_timeout_seconds,
                1,
                300,
            ),
            (
                "gateway.api_key_requests_per_minute",
                gateway.api_key_requests_per_minute,
                1,
                u64::from(u32::MAX),
            ),
            (
                "gateway.api_key_requests_per_hour",
                gateway.api_key_requests_per_hour,
                1,
                u64::from(u32::MAX),
            ),
            (
                "gateway.api_key_requests_per_day",
                gateway.api_key_requests_per_day,
                1,
                u64::from(u32::MAX),
            ),
            (
                "gateway.api_key_stats_flush_seconds",
                gateway.api_key_stats_flush_seconds,
                1,
                3600,
            ),
            (
                "gateway.token_cache_seconds",
                gateway.token_cache_seconds,
                0,
                300,
            ),
            (
                "gateway.tool_timeout_seconds",
                gateway.tool_timeout_seconds,
                1,
                3600,
            ),
        ];
        for (key, value, low, high) in limits {
            if !(low..=high).contains(&value) {
                return Err(invalid(
                    key,
                    format!("{value} is out of range {low}..={high}"),
                ));
            }
        }
        let stream = &self.stream;
        let stream_limits = [
            (
                "storage.event_log_cache_mb",
                self.storage.event_log_cache_mb,
                8,
                1 << 20,
            ),
            (
                "stream.max_event_bytes",
                stream.max_event_bytes,
                1024,
                u64::try_from(openframe_storage::log::MAX_RECORD_BYTES).unwrap_or(u64::MAX),
            ),
            (
                "stream.max_backlog_events",
                stream.max_backlog_events,
                1_000,
                u64::MAX,
            ),
            (
                "stream.fleet_join_window_ms",
                stream.fleet_join_window_ms,
                0,
                3_600_000,
            ),
            (
                "stream.checkpoint_interval_ms",
                stream.checkpoint_interval_ms,
                10,
                60_000,
            ),
            ("stream.consumer_batch", stream.consumer_batch, 1, 100_000),
            (
                "agents.offline_after_seconds",
                self.agents.offline_after_seconds,
                5,
                86_400,
            ),
            ("api.max_depth", self.api.max_depth, 3, 64),
            (
                "api.max_complexity",
                self.api.max_complexity,
                100,
                1_000_000,
            ),
            (
                "stream.log_retention_days",
                stream.log_retention_days,
                1,
                36_500,
            ),
            (
                "stream.raw_retention_days",
                stream.raw_retention_days,
                1,
                36_500,
            ),
        ];
        let webhooks = &self.webhooks;
        let webhook_limits = [
            ("webhooks.max_attempts", webhooks.max_attempts, 1, 50),
            (
                "webhooks.backoff_base_ms",
                webhooks.backoff_base_ms,
                10,
                3_600_000,
            ),
            (
                "webhooks.backoff_max_ms",
                webhooks.backoff_max_ms,
                webhooks.backoff_base_ms,
                86_400_000,
            ),
            ("webhooks.timeout_ms", webhooks.timeout_ms, 100, 120_000),
            (
                "backup.interval_hours",
                self.backup.interval_hours,
                0,
                24 * 366,
            ),
            ("backup.keep", self.backup.keep, 1, 1000),
        ];
        for (key, value, low, high) in stream_limits.into_iter().chain(webhook_limits) {
            if !(low..=high).contains(&value) {
                return Err(invalid(
                    key,
                    format!("{value} is out of range {low}..={high}"),
                ));
            }
        }
        if !matches!(self.nats.mode.as_str(), "embedded" | "external" | "off") {
            return Err(invalid(
                "nats.mode",
                format!("{:?} is not one of embedded, external, off", self.nats.mode),
            ));
        }
        if self.nats.mode == "external" && !self.nats.url.starts_with("nats://") {
            return Err(invalid(
                "nats.url",
                "with nats.mode = \"external\", give the server as nats://[user:password@]host:port".into(),
            ));
        }
        for (tenant, days) in &stream.tenant_log_retention_days {
            if !(1..=36_500).contains(days) {
                return Err(invalid(
                    &format!("stream.tenant_log_retention_days.{tenant}"),
                    format!("{days} is out of range 1..=36500"),
                ));
            }
        }
        for (index, entry) in stream.mapping_overrides.iter().enumerate() {
            crate::stream::mappings::MappingOverride::parse(
                &entry.tool,
                &entry.source_event_type,
                &entry.event_type,
                entry.severity.as_deref(),
            )
            .map_err(|problem| {
                invalid(
                    &format!("stream.mapping_overrides[{index}].{}", problem.field),
                    problem.problem,
                )
            })?;
        }
        if gateway.per_ip_requests_per_second > 0 && gateway.per_ip_burst == 0 {
            return Err(invalid(
                "gateway.per_ip_burst",
                "must be at least 1 while gateway.per_ip_requests_per_second is set".into(),
            ));
        }
        if let Err(error) = tracing_subscriber::EnvFilter::try_new(&self.log.level) {
            return Err(invalid(
                "log.level",
                format!(
                    "{:?} is not a log filter ({error}); try \"info\" or \"openframe=debug,info\"",
                    self.log.level
                ),
            ));
        }
        Ok(())
    }

    /// The URL clients reach the appliance at.
    pub fn public_url(&self) -> String {
        if self.server.public_url.is_empty() {
            default_public_url(self.server.listen)
        } else {
            self.server.public_url.clone()
        }
    }

    /// Fills in `server.public_url` from the address actually bound (port 0 becomes the real
    /// port), so issuers and links are right from the first request.
    pub fn resolve_public_url(&mut self, bound: SocketAddr) {
        if self.server.public_url.is_empty() {
            self.server.public_url = default_public_url(bound);
        }
    }

    /// `[storage.mongo]` for the storage crate; `None` without a URI.
    pub fn mongo_settings(&self) -> Option<openframe_storage::MongoSettings> {
        let mongo = &self.storage.mongo;
        (!mongo.uri.is_empty()).then(|| openframe_storage::MongoSettings {
            uri: mongo.uri.clone(),
            timeout: Duration::from_millis(mongo.timeout_ms),
        })
    }

    /// `[storage.kafka]` for the storage crate; `None` without brokers.
    pub fn kafka_settings(&self) -> Option<openframe_storage::KafkaSettings> {
        let kafka = &self.storage.kafka;
        (!kafka.brokers.trim().is_empty()).then(|| openframe_storage::KafkaSettings {
            brokers: kafka.brokers.clone(),
            topic_prefix: kafka.topic_prefix.clone(),
            replication_factor: kafka.replication_factor,
            timeout: Duration::from_millis(kafka.timeout_ms),
            openframe_tenant: openframe_storage::TenantId::parse(&kafka.openframe_tenant).ok(),
            sasl: openframe_storage::SaslMechanism::parse(&kafka.sasl_mechanism).map(|mechanism| {
                openframe_storage::KafkaSasl {
                    mechanism,
                    username: kafka.username.clone(),
                    password_file: PathBuf::from(&kafka.password_file),
                }
            }),
        })
    }

    /// The storage crate's view of this configuration.
    pub fn storage_config(&self) -> openframe_storage::StorageConfig {
        use openframe_storage::{DocumentBackend, EventBackend};
        openframe_storage::StorageConfig {
            data_dir: self.storage.data_dir.clone(),
            event_log_cache_mb: usize::try_from(self.storage.event_log_cache_mb)
                .unwrap_or(usize::MAX),
            documents: match (self.storage.documents.as_str(), self.mongo_settings()) {
                ("mongo", Some(settings)) => DocumentBackend::Mongo(settings),
                _ => DocumentBackend::Sqlite,
            },
            events: match (self.storage.events.as_str(), self.kafka_settings()) {
                ("kafka", Some(settings)) => EventBackend::Kafka(settings),
                _ => EventBackend::Redb,
            },
            analytics: openframe_storage::AnalyticsSettings {
                memory_limit_mb: self.analytics.memory_limit_mb,
                threads: self.analytics.threads,
            },
            search: openframe_storage::SearchSettings {
                commit_every_docs: self.search.commit_every_docs,
                commit_interval_ms: self.search.commit_interval_ms,
                writer_memory_mb: self.search.writer_memory_mb,
            },
        }
    }
}

/// A loopback-only listener is reachable only as localhost; otherwise the machine's name.
fn default_public_url(listen: SocketAddr) -> String {
    let host = if listen.ip().is_loopback() {
        "localhost".to_owned()
    } else {
        gethostname::gethostname().to_string_lossy().into_owned()
    };
    format!("https://{host}:{}", listen.port())
}

/// Sets the key an `OPENFRAME_SECTION__KEY` variable names, refusing names that match no setting.
fn apply_env(
    merged: &mut toml::Table,
    known: &toml::Value,
    name: &str,
    raw: &str,
) -> Result<(), ConfigError> {
    let source_name = format!("environment variable {name}");
    let path: Vec<String> = name[ENV_PREFIX.len()..]
        .split("__")
        .map(str::to_ascii_lowercase)
        .collect();
    let mut expected = known;
    for (depth, part) in path.iter().enumerate() {
        match expected.get(part) {
            Some(next) if depth + 1 < path.len() && next.is_table() => expected = next,
            Some(next) if depth + 1 == path.len() && !next.is_table() => expected = next,
            _ => {
                return Err(ConfigError::new(
                    source_name,
                    format!(
                        "names no setting ({}); settings are OPENFRAME_<SECTION>__<KEY>, e.g. OPENFRAME_SERVER__LISTEN, as listed in config.example.toml",
                        path.join(".")
                    ),
                ));
            }
        }
    }
    // Interpret the text by the type the setting has, so "8443" can be a number and "true" a bool.
    let value = match expected {
        toml::Value::Integer(_) => raw
            .trim()
            .parse::<i64>()
            .map(toml::Value::Integer)
            .map_err(|_| {
                ConfigError::new(&source_name, format!("{raw:?} is not a whole number"))
            })?,
        toml::Value::Boolean(_) => raw
            .trim()
            .parse::<bool>()
            .map(toml::Value::Boolean)
            .map_err(|_| ConfigError::new(&source_name, format!("{raw:?} is not true or false")))?,
        toml::Value::Float(_) => raw
            .trim()
            .parse::<f64>()
            .map(toml::Value::Float)
            .map_err(|_| ConfigError::new(&source_name, format!("{raw:?} is not a number")))?,
        _ => toml::Value::String(raw.to_owned()),
    };
    let mut table = merged;
    let (last, sections) = match path.split_last() {
        Some(split) => split,
        None => return Err(ConfigError::new(source_name, "names no setting")),
    };
    for section in sections {
        let entry = table
            .entry(section.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        table = match entry {
            toml::Value::Table(inner) => inner,
            _ => {
                return Err(ConfigError::new(
                    &source_name,
                    format!("{section} is not a section"),
                ));
            }
        };
    }
    table.insert(last.clone(), value);
    Ok(())
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn write(dir: &tempfile::TempDir, text: &str) -> PathBuf {
        let path = dir.path().join("config.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn defaults_match_the_documented_ports_and_data_dir() {
        let config = Config::load(None, env(&[]), &CliOverrides::default()).unwrap();
        assert_eq!(config.server.listen.to_string(), "0.0.0.0:8443");
        assert_eq!(config.server.admin_listen.to_string(), "127.0.0.1:9090");
        assert_eq!(config.storage.data_dir, PathBuf::from("./openframe-data"));
        assert_eq!(
            (
                config.storage.documents.as_str(),
                config.storage.events.as_str()
            ),
            ("sqlite", "redb")
        );
    }

    #[test]
    fn file_then_environment_then_flags_take_precedence() {
        let dir = tempfile::TempDir::new().unwrap();
        let file = write(
            &dir,
            "[server]\nlisten = \"127.0.0.1:1111\"\nadmin_listen = \"127.0.0.1:2222\"\npublic_url = \"https://file.example\"\n[log]\nlevel = \"debug\"\n",
        );
        let environment = env(&[
            ("OPENFRAME_SERVER__ADMIN_LISTEN", "127.0.0.1:3333"),
            ("OPENFRAME_SERVER__PUBLIC_URL", "https://env.example"),
            ("OPENFRAME_ANALYTICS__THREADS", "4"),
            ("UNRELATED", "x"),
        ]);
        let flags = CliOverrides {
            admin_listen: Some("127.0.0.1:4444".parse().unwrap()),
            ..CliOverrides::default()
        };
        let config = Config::load(Some(&file), environment, &flags).unwrap();
        assert_eq!(
            config.server.listen.to_string(),
            "127.0.0.1:1111",
            "file over default"
        );
        assert_eq!(
            config.server.public_url, "https://env.example",
            "env over file"
        );
        assert_eq!(
            config.server.admin_listen.to_string(),
            "127.0.0.1:4444",
            "flag over env"
        );
        assert_eq!(
            config.analytics.threads, 4,
            "env numbers are typed by the setting"
        );
        assert_eq!(config.log.level, "debug");
    }

    #[test]
    fn unknown_keys_are_errors_that_name_the_key_and_the_source() {
        let dir = tempfile::TempDir::new().unwrap();
        let file = write(&dir, "[server]\nlisten_port = 8443\n");
        let error = Config::load(Some(&file), env(&[]), &CliOverrides::default()).unwrap_err();
        assert!(error.source_name.contains("config.toml"), "{error}");
        assert!(error.message.contains("listen_port"), "{error}");

        let file = write(&dir, "[sever]\nlisten = \"0.0.0.0:1\"\n");
        let error = Config::load(Some(&file), env(&[]), &CliOverrides::default()).unwrap_err();
        assert!(error.message.contains("sever"), "{error}");

        let error = Config::load(
            None,
            env(&[("OPENFRAME_SERVER__LISTN", "x")]),
            &CliOverrides::default(),
        )
        .unwrap_err();
        assert_eq!(
            error.source_name,
            "environment variable OPENFRAME_SERVER__LISTN"
        );
        assert!(error.message.contains("server.listn"), "{error}");
        let error = Config::load(
            None,
            env(&[("OPENFRAME_SERVER", "x")]),
            &CliOverrides::default(),
        )
        .unwrap_err();
        assert!(error.message.contains("names no setting"), "{error}");
    }

    #[test]
    fn badly_typed_values_say_what_is_wrong() {
        let error = Config::load(
            None,
            env(&[("OPENFRAME_ANALYTICS__THREADS", "many")]),
            &CliOverrides::default(),
        )
        .unwrap_err();
        assert!(
            error.message.contains("\"many\" is not a whole number"),
            "{error}"
        );
        let error = Config::load(
            None,
            env(&[("OPENFRAME_SERVER__LISTEN", "localhost")]),
            &CliOverrides::default(),
        )
        .unwrap_err();
        assert!(error.message.contains("socket address"), "{error}");
        let dir = tempfile::TempDir::new().unwrap();
        let file = write(&dir, "[server\nlisten = 1");
        let error = Config::load(Some(&file), env(&[]), &CliOverrides::default()).unwrap_err();
        assert!(error.source_name.starts_with("config file"), "{error}");
        assert!(!error.to_string().contains('\n'), "one line: {error}");
    }

    #[test]
    fn validation_names_the_setting_and_the_fix() {
        type Case = (
            &'static [(&'static str, &'static str)],
            &'static str,
            &'static str,
        );
        let cases: &[Case] = &[
            (
                &[("OPENFRAME_SERVER__PUBLIC_URL", "http://x")],
                "server.public_url",
                "https://",
            ),
            (
                &[("OPENFRAME_SERVER__ADMIN_LISTEN", "0.0.0.0:8443")],
                "server.admin_listen",
                "own port",
            ),
            (
                &[("OPENFRAME_TLS__CERT_FILE", "/etc/cert.pem")],
                "tls.cert_file",
                "set both",
            ),
            (
                &[("OPENFRAME_STORAGE__DOCUMENTS", "postgres")],
                "storage.documents",
                "\"sqlite\" or \"mongo\"",
            ),
            (
                &[("OPENFRAME_STORAGE__EVENTS", "kafka")],
                "storage.kafka.brokers",
                "required",
            ),
            (
                &[("OPENFRAME_ANALYTICS__MEMORY_LIMIT_MB", "1")],
                "analytics.memory_limit_mb",
                "out of range",
            ),
            (
                &[("OPENFRAME_SEARCH__WRITER_MEMORY_MB", "1")],
                "search.writer_memory_mb",
                "minimum",
            ),
            (
                &[("OPENFRAME_LOG__LEVEL", "info,[")],
                "log.level",
                "not a log filter",
            ),
        ];
        for (environment, key, hint) in cases {
            let error = Config::load(None, env(environment), &CliOverrides::default()).unwrap_err();
            assert_eq!(error.source_name, format!("setting {key}"), "{error}");
            assert!(error.message.contains(hint), "{error}");
        }
    }

    #[test]
    fn a_missing_config_file_is_an_error_not_a_default() {
        let error = Config::load(
            Some(Path::new("/nonexistent/openframe.toml")),
            env(&[]),
            &CliOverrides::default(),
        )
        .unwrap_err();
        assert!(
            error.to_string().contains("/nonexistent/openframe.toml"),
            "{error}"
        );
        assert!(error.message.contains("cannot read"), "{error}");
    }
}
