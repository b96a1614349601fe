//! API keys for integrators: OpenFrame's format `ak_<16 hex>.sk_<32 hex>` in `X-API-Key`.
//!
//! - **Secrets** are 128-bit random values; only HMAC-SHA256(server key, secret) is stored, so a
//!   stolen database yields no usable key, and checking one costs a microsecond, not a bcrypt.
//! - **Every key is held in memory** (they are few and small), so a request costs one hash
//!   lookup and one HMAC; every change goes through [`ApiKeys`], which writes the store first.
//!   Keys changed by another process (`openframe apikey …` beside `serve`) are read again every
//!   minute, and at once when an unknown key id is presented (at most every 10 s).
//! - **Scopes are enforced** (OpenFrame stores them but never checks them): the access table in
//!   [`super::auth`] names the scope each path needs.
//! - **Rate limits** are fixed calendar windows per key (minute, hour, day), OpenFrame's
//!   semantics and headers, plus the IETF `RateLimit-Policy` / `RateLimit` fields.
//! - **Statistics** (total, successful, failed, last used) are counted in memory and written in
//!   batches every `gateway.api_key_stats_flush_seconds` and at shutdown; reads add what is
//!   still pending, so they are exact.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use aws_lc_rs::hmac;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use openframe_storage::documents::MAX_LIST;
use openframe_storage::error::DocumentError;
use openframe_storage::model::{Clock, Collection, DocumentId, TenantId, UnixMillis};
use openframe_storage::{DocumentStore, TenantStore};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::identity::crypto::{constant_time_eq, fill_random, hex};
use crate::identity::{IdentityError, crypto::MasterKey};
use crate::startup::AppState;

/// Every scope a key can hold.
pub const SCOPES: &[&str] = &[
    "devices:read",
    "devices:write",
    "organizations:read",
    "organizations:write",
    "logs:read",
    "events:read",
    "events:write",
    "tools:read",
    "webhooks:read",
    "webhooks:write",
    "ingest",
];

/// What a key gets when its creator names no scopes: read access, nothing that changes data.
/// Not `webhooks:read`: a receiver's URL is often itself a credential (chat webhooks), so a key
/// sees them only when its creator asks for it.
pub const DEFAULT_SCOPES: &[&str] = &[
    "devices:read",
    "organizations:read",
    "logs:read",
    "events:read",
    "tools:read",
];

const KEY_ID_HEX: usize = 16;
/// Keys one tenant may hold: far more than any integration needs, few enough to keep in memory.
pub const MAX_KEYS_PER_TENANT: usize = 1000;
const SECRET_HEX: usize = 32;

/// Requests per window; `None` fields fall back to the appliance's defaults.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RateLimits {
    pub per_minute: Option<u64>,
    pub per_hour: Option<u64>,
    pub per_day: Option<u64>,
}

/// A stored key. The id is public (`ak_…`); the secret is known only by its MAC.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyRecord {
    pub id: String,
    pub name: String,
    pub description: String,
    pub secret_mac: String,
    pub enabled: bool,
    pub scopes: Vec<String>,
    pub expires_at: Option<UnixMillis>,
    pub rate_limits: RateLimits,
    /// The user who created it (OpenFrame forwards it as `X-User-Id`).
    pub user_id: String,
    pub created_at: UnixMillis,
    pub updated_at: UnixMillis,
}

/// Request statistics of one key.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct KeyStats {
    pub total_requests: u64,
    pub successful_requests: u64,
    pub failed_requests: u64,
    pub last_used: Option<UnixMillis>,
}

impl KeyStats {
    fn add(&mut self, other: &KeyStats) {
        self.total_requests += other.total_requests;
        self.successful_requests += other.successful_requests;
        self.failed_requests += other.failed_requests;
        self.last_used = self.last_used.max(other.last_used);
    }
}

/// A key's fields as a creator or editor gives them.
#[derive(Debug, Clone, Default)]
pub struct KeySettings {
    pub name: String,
    pub description: String,
    pub scopes: Option<Vec<String>>,
    pub expires_at: Option<UnixMillis>,
    pub rate_limits: RateLimits,
    pub enabled: bool,
}

/// A change to a key: `None` leaves a field as it is (`expires_at: Some(None)` removes the
/// expiry).
#[derive(Debug, Clone, Default)]
pub struct KeyChanges {
    pub name: Option<String>,
    pub description: Option<String>,
    pub scopes: Option<Vec<String>>,
    pub expires_at: Option<Option<UnixMillis>>,
    pub rate_limits: Option<RateLimits>,
    pub enabled: Option<bool>,
}

/// A key as the index holds it: its tenant and record (shared, so a request clones a pointer).
#[derive(Debug)]
pub struct KnownKey {
    pub tenant: TenantId,
    pub record: ApiKeyRecord,
    /// The secret's MAC as bytes, and what every request of the key needs, worked out once.
    mac: Vec<u8>,
    limits: [u64; 3],
    limit_values: [HeaderValue; 3],
    policy: HeaderValue,
    /// The secret, once a request has proven it against the MAC: later requests compare with
    /// it (constant time) instead of computing an HMAC. In memory only; a regenerated key is a
    /// new entry, so it cannot outlive its secret.
    proven: std::sync::OnceLock<Box<str>>,
    counters: Arc<KeyCounters>,
    /// The answer of `GET /external-api/api/v1/me`, which depends on the record alone: rendered
    /// once (an edited key is a new entry, so it cannot go stale).
    me: std::sync::OnceLock<bytes::Bytes>,
}

/// The caller of an API-key request, as the handler sees it.
#[derive(Debug, Clone)]
pub struct KeyCaller(pub Arc<KnownKey>);

impl KeyCaller {
    pub fn tenant(&self) -> &TenantId {
        &self.0.tenant
    }

    pub fn key(&self) -> &ApiKeyRecord {
        &self.0.record
    }

    /// The key's own `me` answer, rendered by `render` the first time.
    pub fn me_answer(&self, render: impl FnOnce(&KnownKey) -> bytes::Bytes) -> bytes::Bytes {
        self.0.me.get_or_init(|| render(&self.0)).clone()
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for KeyCaller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<KeyCaller>()
            .cloned()
            .ok_or_else(|| ApiError::Unauthorized("send an API key in X-API-Key".into()))
    }
}

/// One key's live counters, shared by every request of the key without a lock (two workers
/// taking one mutex per request cost a fifth of the throughput). They outlive the key's index
/// entry, so an edit or a reload resets neither the windows nor the unwritten statistics.
#[derive(Debug)]
struct KeyCounters {
    tenant: TenantId,
    /// Per window (minute, hour, day): the window's number (its start / its length) in the
    /// high 32 bits, the requests admitted in it in the low 32.
    windows: [std::sync::atomic::AtomicU64; 3],
    total: std::sync::atomic::AtomicU64,
    successful: std::sync::atomic::AtomicU64,
    failed: std::sync::atomic::AtomicU64,
    last_used: std::sync::atomic::AtomicI64,
}

impl KeyCounters {
    fn new(tenant: TenantId) -> KeyCounters {
        KeyCounters {
            tenant,
            windows: Default::default(),
            total: Default::default(),
            successful: Default::default(),
            failed: Default::default(),
            last_used: std::sync::atomic::AtomicI64::new(i64::MIN),
        }
    }

    /// What is counted and not yet written.
    fn pending(&self) -> KeyStats {
        use std::sync::atomic::Ordering::Relaxed;
        let last = self.last_used.load(Relaxed);
        KeyStats {
            total_requests: self.total.load(Relaxed),
            successful_requests: self.successful.load(Relaxed),
            failed_requests: self.failed.load(Relaxed),
            last_used: (last != i64::MIN).then_some(last),
        }
    }

    /// Takes what is pending, leaving zero.
    fn take(&self) -> KeyStats {
        use std::sync::atomic::Ordering::Relaxed;
        let last = self.last_used.swap(i64::MIN, Relaxed);
        KeyStats {
            total_requests: self.total.swap(0, Relaxed),
            successful_requests: self.successful.swap(0, Relaxed),
            failed_requests: self.failed.swap(0, Relaxed),
            last_used: (last != i64::MIN).then_some(last),
        }
    }

    /// Puts back what a failed write took.
    fn restore(&self, stats: &KeyStats) {
        use std::sync::atomic::Ordering::Relaxed;
        self.total.fetch_add(stats.total_requests, Relaxed);
        self.successful
            .fetch_add(stats.successful_requests, Relaxed);
        self.failed.fetch_add(stats.failed_requests, Relaxed);
        if let Some(last) = stats.last_used {
            self.last_used.fetch_max(last, Relaxed);
        }
    }
}

/// One rate window of a key as a request found it.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub name: &'static str,
    pub seconds: i64,
    pub limit: u64,
    pub used: u64,
    /// When the window began (Unix ms).
    pub start: i64,
}

impl Window {
    fn remaining(&self) -> u64 {
        self.limit.saturating_sub(self.used)
    }

    fn reset_seconds(&self, now: i64) -> i64 {
        (self.start + self.seconds * 1000 - now + 999)
            .div_euclid(1000)
            .max(1)
    }
}

/// The verdict on one request's key: its windows after counting it, or when to retry.
#[derive(Debug)]
pub enum Admission {
    Allowed([Window; 3]),
    Limited([Window; 3], i64),
}

/// Why a key was not accepted.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum KeyRejected {
    #[error("send an API key in the X-API-Key header")]
    Missing,
    #[error("the API key is malformed: expected ak_<16 hex digits>.sk_<32 hex digits>")]
    Malformed,
    #[error("the API key is not valid")]
    Unknown,
    #[error("the API key is disabled")]
    Disabled,
    #[error("the API key has expired")]
    Expired,
}

/// Splits `ak_<16 hex>.sk_<32 hex>` into key id and secret.
pub fn parse_key(raw: &str) -> Result<(&str, &str), KeyRejected> {
    let (id, secret) = raw.split_once('.').ok_or(KeyRejected::Malformed)?;
    let hex = |text: &str, len: usize| {
        text.len() == len
            && text
                .bytes()
                .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte))
    };
    let id_hex = id.strip_prefix("ak_").ok_or(KeyRejected::Malformed)?;
    let secret_hex = secret.strip_prefix("sk_").ok_or(KeyRejected::Malformed)?;
    if !hex(id_hex, KEY_ID_HEX) || !hex(secret_hex, SECRET_HEX) {
        return Err(KeyRejected::Malformed);
    }
    Ok((id, secret))
}

fn random_hex(bytes: usize) -> anyhow::Result<String> {
    let mut buffer = vec![0u8; bytes];
    fill_random(&mut buffer)?;
    Ok(hex(&buffer))
}

fn document_id(value: &str) -> Result<DocumentId, IdentityError> {
    DocumentId::parse(value)
        .map_err(|_| IdentityError::NotFound(format!("API key {value} not found")))
}

/// The appliance's API keys.
#[derive(Debug)]
pub struct ApiKeys {
    tenants: Arc<dyn TenantStore>,
    documents: Arc<dyn DocumentStore>,
    /// When the index was last read from the store (a monotonic instant).
    loaded_at: Mutex<Option<std::time::Instant>>,
    /// Held by every change and by every reload, so a reload never swaps in a list read
    /// before a change this process has just made.
    changing: tokio::sync::Mutex<()>,
    clock: Arc<dyn Clock>,
    mac: hmac::Key,
    keys_collection: Collection,
    stats_collection: Collection,
    /// Every key by id, with its tenant.
    index: RwLock<HashMap<String, Arc<KnownKey>>>,
    /// Live counters by key id (ids are unique across tenants).
    counters: RwLock<HashMap<String, Arc<KeyCounters>>>,

    defaults: RateLimits,
}

impl ApiKeys {
    pub fn new(
        tenants: Arc<dyn TenantStore>,
        documents: Arc<dyn DocumentStore>,
        clock: Arc<dyn Clock>,
        master: &MasterKey,
        gateway: &crate::config::GatewaySection,
    ) -> anyhow::Result<ApiKeys> {
        let collection =
            |name: &str| Collection::parse(name).map_err(|error| anyhow::anyhow!("{error}"));
        Ok(ApiKeys {
            tenants,
            documents,
            loaded_at: Mutex::new(None),
            changing: tokio::sync::Mutex::new(()),
            clock,
            mac: master.mac_key("api-key-secrets"),
            keys_collection: collection("api_keys")?,
            stats_collection: collection("api_key_stats")?,
            index: RwLock::new(HashMap::new()),
            counters: RwLock::new(HashMap::new()),
            defaults: RateLimits {
                per_minute: Some(gateway.api_key_requests_per_minute),
                per_hour: Some(gateway.api_key_requests_per_hour),
                per_day: Some(gateway.api_key_requests_per_day),
            },
        })
    }

    fn secret_tag(&self, key_id: &str, secret: &str) -> hmac::Tag {
        // The id is part of the message, so a secret MAC copied to another key's row is useless.
        let mut context = hmac::Context::with_key(&self.mac);
        context.update(key_id.as_bytes());
        context.update(b".");
        context.update(secret.as_bytes());
        context.sign()
    }

    fn secret_mac(&self, key_id: &str, secret: &str) -> String {
        hex(self.secret_tag(key_id, secret).as_ref())
    }

    fn existing_counters(&self, id: &str) -> Option<Arc<KeyCounters>> {
        self.counters
            .read()
            .ok()
            .and_then(|counters| counters.get(id).cloned())
    }

    fn counters_of(&self, tenant: &TenantId, id: &str) -> Arc<KeyCounters> {
        if let Some(existing) = self.existing_counters(id) {
            return existing;
        }
        let fresh = Arc::new(KeyCounters::new(tenant.clone()));
        match self.counters.write() {
            Ok(mut counters) => counters.entry(id.to_owned()).or_insert(fresh).clone(),
            Err(_) => fresh,
        }
    }

    fn known(&self, tenant: TenantId, record: ApiKeyRecord) -> KnownKey {
        let (tenant_for_counters, id_for_counters) = (tenant.clone(), record.id.clone());
        let limit = |own: Option<u64>, default: Option<u64>| own.or(default).unwrap_or(u64::MAX);
        let limits = [
            limit(record.rate_limits.per_minute, self.defaults.per_minute),
            limit(record.rate_limits.per_hour, self.defaults.per_hour),
            limit(record.rate_limits.per_day, self.defaults.per_day),
        ];
        let policy = format!(
            "\"minute\";q={};w=60, \"hour\";q={};w=3600, \"day\";q={};w=86400",
            limits[0], limits[1], limits[2]
        );
        let mac = (0..record.secret_mac.len() / 2)
            .filter_map(|at| {
                u8::from_str_radix(record.secret_mac.get(at * 2..at * 2 + 2)?, 16).ok()
            })
            .collect();
        KnownKey {
            tenant,
            record,
            mac,
            limits,
            limit_values: limits.map(HeaderValue::from),
            policy: HeaderValue::from_str(&policy).unwrap_or(HeaderValue::from_static("")),
            proven: std::sync::OnceLock::new(),
            counters: self.counters_of(&tenant_for_counters, &id_for_counters),
            me: std::sync::OnceLock::new(),
        }
    }

    /// Reads every tenant's keys into memory (at start, then to see other processes' changes).
    pub async fn load(&self) -> Result<usize, DocumentError> {
        let _changing = self.changing.lock().await;
        self.load_locked().await
    }

    async fn load_locked(&self) -> Result<usize, DocumentError> {
        let started = std::time::Instant::now();
        let tenants = self.tenants.tenants().await?;
        let mut loaded = HashMap::new();
        // A suspended tenant's keys are not loaded: its integrations stop with it.
        let active = tenants
            .iter()
            .filter(|tenant| tenant.status == openframe_storage::documents::TenantStatus::Active);
        for tenant in active.map(|tenant| &tenant.id) {
            let mut after: Option<DocumentId> = None;
            loop {
                let page = self
                    .documents
                    .list(tenant, &self.keys_collection, after.as_ref(), MAX_LIST)
                    .await?;
                let Some(last) = page.last() else { break };
                after = Some(last.id.clone());
                for document in page {
                    let record: ApiKeyRecord =
                        serde_json::from_value(document.body).map_err(|error| {
                            DocumentError::Invalid(format!("stored API key: {error}"))
                        })?;
                    let known = self.known(tenant.clone(), record);
                    loaded.insert(known.record.id.clone(), Arc::new(known));
                }
            }
        }
        let count = loaded.len();
        if let Ok(mut index) = self.index.write() {
            *index = loaded;
        }
        if let Ok(mut loaded_at) = self.loaded_at.lock() {
            *loaded_at = Some(started);
        }
        Ok(count)
    }

    /// Reads the keys again if that was last done more than `age` ago; says whether it did.
    /// One reload at a time: callers that find one running go on without waiting.
    pub async fn reload_if_older(&self, age: std::time::Duration) -> Result<bool, DocumentError> {
        let stale = || {
            self.loaded_at
                .lock()
                .map(|loaded_at| loaded_at.is_none_or(|at| at.elapsed() >= age))
                .unwrap_or(false)
        };
        if !stale() {
            return Ok(false);
        }
        let Ok(_changing) = self.changing.try_lock() else {
            return Ok(false);
        };
        if !stale() {
            return Ok(false);
        }
        self.load_locked().await?;
        Ok(true)
    }

    fn remember(&self, tenant: &TenantId, record: &ApiKeyRecord) {
        if let Ok(mut index) = self.index.write() {
            let known = self.known(tenant.clone(), record.clone());
            index.insert(record.id.clone(), Arc::new(known));
        }
    }

    fn check_settings(
        settings: &KeySettings,
        now: UnixMillis,
    ) -> Result<Vec<String>, IdentityError> {
        let invalid = |field: &'static str, why: String| {
            IdentityError::Invalid(crate::domain::Invalid::new(field, why))
        };
        let name = settings.name.trim();
        if name.is_empty() || name.chars().count() > 100 {
            return Err(invalid("name", "must be 1 to 100 characters".into()));
        }
        if settings.description.chars().count() > 1000 {
            return Err(invalid(
                "description",
                "must be at most 1000 characters".into(),
            ));
        }
        if settings.expires_at.is_some_and(|at| at <= now) {
            return Err(invalid("expiresAt", "must be in the future".into()));
        }
        let limits = settings.rate_limits;
        for (field, value) in [
            ("rateLimits.perMinute", limits.per_minute),
            ("rateLimits.perHour", limits.per_hour),
            ("rateLimits.perDay", limits.per_day),
        ] {
            if value.is_some_and(|value| value == 0 || value > u64::from(u32::MAX)) {
                return Err(invalid(
                    field,
                    format!("must be between 1 and {}", u32::MAX),
                ));
            }
        }
        let scopes = match &settings.scopes {
            None => DEFAULT_SCOPES
                .iter()
                .map(|scope| (*scope).to_owned())
                .collect(),
            Some(scopes) => {
                let mut checked: Vec<String> = Vec::new();
                for scope in scopes {
                    if !SCOPES.contains(&scope.as_str()) {
                        return Err(invalid(
                            "scopes",
                            format!("{scope:?} is not a scope; known: {}", SCOPES.join(", ")),
                        ));
                    }
                    if !checked.contains(scope) {
                        checked.push(scope.clone());
                    }
                }
                checked
            }
        };
        Ok(scopes)
    }

    /// Creates a key; the full key (`ak_….sk_…`) is returned once and never again.
    pub async fn create(
        &self,
        tenant: &TenantId,
        user_id: &str,
        settings: KeySettings,
    ) -> Result<(ApiKeyRecord, String), IdentityError> {
        let _changing = self.changing.lock().await;
        let now = self.clock.now_ms();
        let scopes = Self::check_settings(&settings, now)?;
        let held = self
            .index
            .read()
            .map(|index| index.values().filter(|key| key.tenant == *tenant).count())
            .unwrap_or(0);
        if held >= MAX_KEYS_PER_TENANT {
            return Err(IdentityError::Conflict(format!(
                "a tenant may hold at most {MAX_KEYS_PER_TENANT} API keys; delete unused ones first"
            )));
        }
        let id = format!("ak_{}", random_hex(KEY_ID_HEX / 2)?);
        let secret = format!("sk_{}", random_hex(SECRET_HEX / 2)?);
        let record = ApiKeyRecord {
            secret_mac: self.secret_mac(&id, &secret),
            id: id.clone(),
            name: settings.name.trim().to_owned(),
            description: settings.description,
            enabled: true,
            scopes,
            expires_at: settings.expires_at,
            rate_limits: settings.rate_limits,
            user_id: user_id.to_owned(),
            created_at: now,
            updated_at: now,
        };
        let body = serde_json::to_value(&record).map_err(anyhow::Error::from)?;
        self.documents
            .insert(tenant, &self.keys_collection, &document_id(&id)?, &body)
            .await?;
        self.remember(tenant, &record);
        Ok((record, format!("{id}.{secret}")))
    }

    /// The tenant's keys with their statistics, newest first.
    pub async fn list(
        &self,
        tenant: &TenantId,
    ) -> Result<Vec<(ApiKeyRecord, KeyStats)>, IdentityError> {
        let mut records: Vec<ApiKeyRecord> = self
            .index
            .read()
            .map(|index| {
                index
                    .values()
                    .filter(|key| key.tenant == *tenant)
                    .map(|key| key.record.clone())
                    .collect()
            })
            .unwrap_or_default();
        records.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(a.id.cmp(&b.id)));
        let mut listed = Vec::with_capacity(records.len());
        for record in records {
            let stats = self.stats(tenant, &record.id).await?;
            listed.push((record, stats));
        }
        Ok(listed)
    }

    pub async fn get(
        &self,
        tenant: &TenantId,
        id: &str,
    ) -> Result<(ApiKeyRecord, KeyStats), IdentityError> {
        let record = self.record(tenant, id)?;
        let stats = self.stats(tenant, id).await?;
        Ok((record, stats))
    }

    fn record(&self, tenant: &TenantId, id: &str) -> Result<ApiKeyRecord, IdentityError> {
        self.index
            .read()
            .ok()
            .and_then(|index| index.get(id).cloned())
            .filter(|key| key.tenant == *tenant)
            .map(|key| key.record.clone())
            .ok_or_else(|| {
                IdentityError::NotFound(format!(
                    "API key {} not found",
                    id.chars().take(40).collect::<String>()
                ))
            })
    }

    /// Stored statistics plus what is counted but not yet written.
    pub async fn stats(&self, tenant: &TenantId, id: &str) -> Result<KeyStats, IdentityError> {
        let mut stats = match self
            .documents
            .get(tenant, &self.stats_collection, &document_id(id)?)
            .await?
        {
            Some(document) => serde_json::from_value(document.body).map_err(anyhow::Error::from)?,
            None => KeyStats::default(),
        };
        if let Some(counters) = self.existing_counters(id)
            && counters.tenant == *tenant
        {
            stats.add(&counters.pending());
        }
        Ok(stats)
    }

    /// The key as the store has it now, with its version: changes start from it, not from the
    /// index, so a key another process deleted is never written back.
    async fn stored(
        &self,
        tenant: &TenantId,
        id: &str,
    ) -> Result<(ApiKeyRecord, u64), IdentityError> {
        self.record(tenant, id)?;
        let document = self
            .documents
            .get(tenant, &self.keys_collection, &document_id(id)?)
            .await?;
        match document {
            Some(document) => {
                let record = serde_json::from_value(document.body).map_err(anyhow::Error::from)?;
                Ok((record, document.version))
            }
            None => {
                if let Ok(mut index) = self.index.write() {
                    index.remove(id);
                }
                Err(IdentityError::NotFound(format!("API key {id} not found")))
            }
        }
    }

    async fn write(
        &self,
        tenant: &TenantId,
        record: &ApiKeyRecord,
        version: u64,
    ) -> Result<(), IdentityError> {
        let body = serde_json::to_value(record).map_err(anyhow::Error::from)?;
        self.documents
            .replace(
                tenant,
                &self.keys_collection,
                &document_id(&record.id)?,
                &body,
                Some(version),
            )
            .await?;
        self.remember(tenant, record);
        Ok(())
    }

    /// Changes what `changes` names; what it leaves out stays as it is.
    pub async fn update(
        &self,
        tenant: &TenantId,
        id: &str,
        changes: KeyChanges,
    ) -> Result<ApiKeyRecord, IdentityError> {
        let _changing = self.changing.lock().await;
        let (mut record, version) = self.stored(tenant, id).await?;
        let now = self.clock.now_ms();
        let settings = KeySettings {
            name: changes.name.unwrap_or_else(|| record.name.clone()),
            description: changes
                .description
                .unwrap_or_else(|| record.description.clone()),
            scopes: Some(changes.scopes.unwrap_or_else(|| record.scopes.clone())),
            expires_at: changes.expires_at.unwrap_or(record.expires_at),
            rate_limits: changes.rate_limits.unwrap_or(record.rate_limits),
            enabled: changes.enabled.unwrap_or(record.enabled),
        };
        // An expiry already in the past is allowed to stay (the key simply stays expired).
        let unchanged_expiry = settings.expires_at == record.expires_at;
        let scopes = Self::check_settings(
            &KeySettings {
                expires_at: if unchanged_expiry {
                    None
                } else {
                    settings.expires_at
                },
                ..settings.clone()
            },
            now,
        )?;
        record.name = settings.name.trim().to_owned();
        record.description = settings.description;
        record.scopes = scopes;
        record.expires_at = settings.expires_at;
        record.rate_limits = settings.rate_limits;
        record.enabled = settings.enabled;
        record.updated_at = now;
        self.write(tenant, &record, version).await?;
        Ok(record)
    }

    /// A new secret for the same key; the old one stops working at once.
    pub async fn regenerate(
        &self,
        tenant: &TenantId,
        id: &str,
    ) -> Result<(ApiKeyRecord, String), IdentityError> {
        let _changing = self.changing.lock().await;
        let (mut record, version) = self.stored(tenant, id).await?;
        let secret = format!("sk_{}", random_hex(SECRET_HEX / 2)?);
        record.secret_mac = self.secret_mac(&record.id, &secret);
        record.updated_at = self.clock.now_ms();
        self.write(tenant, &record, version).await?;
        let full = format!("{}.{secret}", record.id);
        Ok((record, full))
    }

    pub async fn delete(&self, tenant: &TenantId, id: &str) -> Result<(), IdentityError> {
        let _changing = self.changing.lock().await;
        let record = self.record(tenant, id)?;
        let doc = document_id(&record.id)?;
        self.documents
            .delete(tenant, &self.keys_collection, &doc, None)
            .await?;
        self.documents
            .delete(tenant, &self.stats_collection, &doc, None)
            .await?;
        if let Ok(mut index) = self.index.write() {
            index.remove(&record.id);
        }
        if let Ok(mut counters) = self.counters.write() {
            counters.remove(&record.id);
        }
        Ok(())
    }

    /// Checks a presented key: format, secret, enabled, expiry.
    pub fn authenticate(&self, raw: &str) -> Result<Arc<KnownKey>, KeyRejected> {
        let (id, secret) = parse_key(raw)?;
        let found = self
            .index
            .read()
            .ok()
            .and_then(|index| index.get(id).cloned());
        let Some(known) = found else {
            // The same work as for a known key, so timing does not tell ids apart.
            let _ = self.secret_tag(id, secret);
            return Err(KeyRejected::Unknown);
        };
        let record = &known.record;
        let proven = known
            .proven
            .get()
            .is_some_and(|proven| constant_time_eq(proven.as_bytes(), secret.as_bytes()));
        if !proven {
            let tag = self.secret_tag(id, secret);
            if known.mac.len() != 32 || !constant_time_eq(tag.as_ref(), &known.mac) {
                return Err(KeyRejected::Unknown);
            }
            let _ = known.proven.set(secret.into());
        }
        if !record.enabled {
            return Err(KeyRejected::Disabled);
        }
        if record
            .expires_at
            .is_some_and(|at| at <= self.clock.now_ms())
        {
            return Err(KeyRejected::Expired);
        }
        Ok(known)
    }

    /// Counts a request against the key's windows, unless one is full. Exact under concurrency:
    /// a window is only ever incremented below its limit, and a request refused by a later
    /// window gives back what it took from the earlier ones.
    pub fn admit(&self, key: &KnownKey) -> Admission {
        use std::sync::atomic::Ordering::AcqRel;
        let now = self.clock.now_ms();
        let shapes = [("minute", 60i64), ("hour", 3600), ("day", 86_400)];
        let mut current = [Window {
            name: "",
            seconds: 0,
            limit: 0,
            used: 0,
            start: 0,
        }; 3];
        let mut taken = 0;
        let mut refused = false;
        for (index, (name, seconds)) in shapes.into_iter().enumerate() {
            let length = seconds * 1000;
            let number = u64::try_from(now.div_euclid(length)).unwrap_or(0) & 0xffff_ffff;
            let limit = key.limits[index];
            let cell = &key.counters.windows[index];
            let mut used = 0;
            let outcome =
                cell.fetch_update(AcqRel, std::sync::atomic::Ordering::Acquire, |packed| {
                    let count = if packed >> 32 == number {
                        packed & 0xffff_ffff
                    } else {
                        0
                    };
                    used = count;
                    (count < limit && count < 0xffff_ffff).then_some(number << 32 | (count + 1))
                });
            current[index] = Window {
                name,
                seconds,
                limit,
                used: if outcome.is_ok() { used + 1 } else { used },
                start: now - now.rem_euclid(length),
            };
            if outcome.is_err() {
                refused = true;
                break;
            }
            taken += 1;
        }
        if refused {
            for (index, cell) in key.counters.windows.iter().enumerate().take(taken) {
                cell.fetch_sub(1, AcqRel);
                current[index].used -= 1;
            }
            // The windows not reached are reported as they stand.
            for (index, (name, seconds)) in shapes.into_iter().enumerate().skip(taken + 1) {
                let length = seconds * 1000;
                let number = u64::try_from(now.div_euclid(length)).unwrap_or(0) & 0xffff_ffff;
                let packed = key.counters.windows[index].load(std::sync::atomic::Ordering::Acquire);
                current[index] = Window {
                    name,
                    seconds,
                    limit: key.limits[index],
                    used: if packed >> 32 == number {
                        packed & 0xffff_ffff
                    } else {
                        0
                    },
                    start: now - now.rem_euclid(length),
                };
            }
            let retry_after = current
                .iter()
                .filter(|window| window.used >= window.limit)
                .map(|window| window.reset_seconds(now))
                .max()
                .unwrap_or(1);
            return Admission::Limited(current, retry_after);
        }
        Admission::Allowed(current)
    }

    /// Counts a finished request in the key's statistics (written at the next flush).
    pub fn count(&self, key: &KnownKey, success: bool) {
        use std::sync::atomic::Ordering::Relaxed;
        let counters = &key.counters;
        counters.total.fetch_add(1, Relaxed);
        if success {
            counters.successful.fetch_add(1, Relaxed);
        } else {
            counters.failed.fetch_add(1, Relaxed);
        }
        counters.last_used.fetch_max(self.clock.now_ms(), Relaxed);
    }

    /// Writes the pending statistics: one read and one write per key used since the last flush.
    pub async fn flush(&self) -> Result<usize, IdentityError> {
        let all: Vec<(String, Arc<KeyCounters>)> = match self.counters.read() {
            Ok(counters) => counters
                .iter()
                .map(|(id, counters)| (id.clone(), counters.clone()))
                .collect(),
            Err(_) => return Ok(0),
        };
        let mut written = 0;
        let mut failed: Option<IdentityError> = None;
        for (id, counters) in all {
            let delta = counters.take();
            if delta.total_requests == 0 {
                continue;
            }
            let tenant = &counters.tenant;
            let result = async {
                let doc = document_id(&id)?;
                let mut stats: KeyStats = match self
                    .documents
                    .get(tenant, &self.stats_collection, &doc)
                    .await?
                {
                    Some(document) => {
                        serde_json::from_value(document.body).map_err(anyhow::Error::from)?
                    }
                    None => KeyStats::default(),
                };
                stats.add(&delta);
                let body = serde_json::to_value(stats).map_err(anyhow::Error::from)?;
                self.documents
                    .replace(tenant, &self.stats_collection, &doc, &body, None)
                    .await?;
                Ok::<(), IdentityError>(())
            }
            .await;
            match result {
                Ok(()) => written += 1,
                Err(error) => {
                    // Keep the counts for the next flush rather than lose them.
                    counters.restore(&delta);
                    failed = Some(error);
                }
            }
        }
        match failed {
            Some(error) => Err(error),
            None => Ok(written),
        }
    }
}

/// OpenFrame's `X-RateLimit-*` headers and the IETF `RateLimit-Policy` / `RateLimit` fields
/// (draft-ietf-httpapi-ratelimit-headers), the latter for the window closest to its limit.
fn rate_headers(headers: &mut HeaderMap, windows: &[Window; 3], now: i64, key: &KnownKey) {
    use axum::http::HeaderName;
    // Header names are case-insensitive: OpenFrame's `X-RateLimit-Limit-Minute` is this one.
    const NAMES: [[HeaderName; 2]; 3] = [
        [
            HeaderName::from_static("x-ratelimit-limit-minute"),
            HeaderName::from_static("x-ratelimit-remaining-minute"),
        ],
        [
            HeaderName::from_static("x-ratelimit-limit-hour"),
            HeaderName::from_static("x-ratelimit-remaining-hour"),
        ],
        [
            HeaderName::from_static("x-ratelimit-limit-day"),
            HeaderName::from_static("x-ratelimit-remaining-day"),
        ],
    ];
    use std::fmt::Write as _;
    // The four values that change per request are written into one buffer and handed out as
    // slices of it: one allocation instead of four (this runs on every API-key request).
    let mut text = String::with_capacity(96);
    let mut ends = [0usize; 4];
    for (window, end) in windows.iter().zip(&mut ends) {
        let _ = write!(text, "{}", window.remaining());
        *end = text.len();
    }
    let tightest = windows.iter().min_by_key(|window| window.remaining());
    if let Some(tightest) = tightest {
        let _ = write!(
            text,
            "\"{}\";r={};t={}",
            tightest.name,
            tightest.remaining(),
            tightest.reset_seconds(now)
        );
    }
    ends[3] = text.len();
    let text = bytes::Bytes::from(text);
    let slice = |index: usize| {
        let start = if index == 0 { 0 } else { ends[index - 1] };
        HeaderValue::from_maybe_shared(text.slice(start..ends[index])).ok()
    };
    headers.reserve(8);
    for (index, ((limit, remaining), value)) in NAMES
        .into_iter()
        .map(|[limit, remaining]| (limit, remaining))
        .zip(&key.limit_values)
        .enumerate()
    {
        headers.insert(limit, value.clone());
        if let Some(left) = slice(index) {
            headers.insert(remaining, left);
        }
    }
    const POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
    const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
    headers.insert(POLICY, key.policy.clone());
    if tightest.is_some()
        && let Some(value) = slice(3)
    {
        headers.insert(RATELIMIT, value);
    }
}

/// The access check for API-key paths: key, scope, limits; then the handler; then statistics.
pub async fn authenticate(
    state: AppState,
    scope: &'static str,
    mut request: Request,
    next: Next,
) -> Response {
    let keys = &state.gateway.api_keys;
    let presented = request.headers_mut().remove("x-api-key");
    let raw: Result<Option<&str>, KeyRejected> = presented
        .as_ref()
        .map(|value| {
            super::auth::header_text(value)
                .map(str::trim)
                .ok_or(KeyRejected::Malformed)
        })
        .transpose();
    let mut verdict = match &raw {
        Ok(Some(raw)) => keys.authenticate(raw),
        Ok(None) => Err(KeyRejected::Missing),
        Err(rejected) => Err(rejected.clone()),
    };
    // A key made by another process since the last read: read again (at most every 10 s).
    if let (Err(KeyRejected::Unknown), Ok(Some(raw))) = (&verdict, &raw) {
        match keys
            .reload_if_older(std::time::Duration::from_secs(10))
            .await
        {
            Ok(true) => verdict = keys.authenticate(raw),
            Ok(false) => {}
            Err(error) => tracing::warn!(%error, "reading API keys failed"),
        }
    }
    let known = match verdict {
        Ok(found) => found,
        Err(rejected) => {
            state.identity.security_event(
                "api_key_rejected",
                None,
                &[("reason", rejected.to_string())],
            );
            return ApiError::Unauthorized(rejected.to_string()).into_response();
        }
    };
    let record = &known.record;
    let now = state.identity.clock.now_ms();
    let holds = scope == super::auth::ANY_SCOPE || record.scopes.iter().any(|held| held == scope);
    let mut response = if !holds {
        ApiError::Forbidden(if scope == "none" {
            "no API key may call this path".to_owned()
        } else {
            format!("the API key lacks the scope {scope:?} this path needs")
        })
        .into_response()
    } else {
        match keys.admit(&known) {
            Admission::Limited(windows, retry_after) => {
                let mut response = ApiError::RateLimited { retry_after }.into_response();
                rate_headers(response.headers_mut(), &windows, now, &known);
                response
            }
            Admission::Allowed(windows) => {
                // The key went no further than the edge (removed above); the handler learns
                // who called.
                request.extensions_mut().insert(KeyCaller(known.clone()));
                let mut response = next.run(request).await;
                rate_headers(response.headers_mut(), &windows, now, &known);
                response
            }
        }
    };
    let success = response.status() < StatusCode::BAD_REQUEST;
    keys.count(&known, success);
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_only_in_openframes_format() {
        let id = "ak_0123456789abcdef";
        let secret = "sk_0123456789abcdef0123456789abcdef";
        assert_eq!(parse_key(&format!("{id}.{secret}")), Ok((id, secret)));
        for bad in [
            "",
            "ak_0123456789abcdef",
            "ak_0123456789abcdef.",
            "ak_0123456789ABCDEF.sk_0123456789abcdef0123456789abcdef",
            "ak_0123456789abcde.sk_0123456789abcdef0123456789abcdef",
            "ak_0123456789abcdef.sk_0123456789abcdef0123456789abcde",
            "ak_0123456789abcdef.sk_0123456789abcdef0123456789abcdef0",
            "ak_0123456789abcdef.xk_0123456789abcdef0123456789abcdef",
            "bk_0123456789abcdef.sk_0123456789abcdef0123456789abcdef",
            "ak_0123456789abcdef.sk_0123456789abcdef0123456789abcdef.x",
            "ak_0123456789abcdeg.sk_0123456789abcdef0123456789abcdef",
        ] {
            assert_eq!(parse_key(bad), Err(KeyRejected::Malformed), "{bad}");
        }
    }
}
