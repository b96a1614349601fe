//! Each tenant's RSA-2048 signing keys: generated on first need (off the executor), sealed at
//! rest with the master key, cached decrypted in memory, and rotated without breaking anyone.
//!
//! Rotation contract. A new key is stored with `signs_from = now + key_rotation_lead`: from that
//! moment it is in the JWKS, so relying parties can fetch it before they ever see a token it
//! signed. The previous key keeps signing until then, and stays in the JWKS until every token
//! it signed has expired (`signs_from` of its successor + the longest token lifetime).
//! Nothing is updated in place: a key's window follows from its successor's, so a rotation is
//! one insert, safe against crashes and against a second process (the CLI) doing the same.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{KeyPair, RsaKeyPair};
use openframe_storage::model::{Clock, TenantId, UnixMillis};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::crypto::{MasterKey, b64url, b64url_decode, random_token};
use super::jwt::{self, JwtError, RsaPublic};
use super::store::{IdentityStore, KeyRecord};

/// How long a loaded key ring is trusted before it is read again, so keys rotated by another
/// process (the CLI) are picked up.
const RING_TTL: Duration = Duration::from_secs(30);
/// A token naming an unknown kid reloads the ring at most this often, so random kids cannot
/// turn into a flood of store reads.
const UNKNOWN_KID_RELOAD: Duration = Duration::from_secs(2);

struct LoadedKey {
    kid: String,
    created_at: UnixMillis,
    signs_from: UnixMillis,
    public: RsaPublic,
    /// Present while the key may still sign; retired keys only verify.
    pair: Option<Arc<RsaKeyPair>>,
}

struct Ring {
    /// Ascending by `signs_from`.
    keys: Vec<LoadedKey>,
    loaded: Instant,
}

impl Ring {
    fn signing(&self, now: UnixMillis) -> Option<&LoadedKey> {
        self.keys.iter().rev().find(|key| key.signs_from <= now)
    }

    /// Keys in the JWKS now: every key whose tokens may still be alive, and every future key.
    fn published(&self, now: UnixMillis, lifetime_ms: i64) -> impl Iterator<Item = &LoadedKey> {
        self.keys
            .iter()
            .enumerate()
            .filter_map(move |(index, key)| {
                let retired_until = self
                    .keys
                    .get(index + 1)
                    .map(|successor| successor.signs_from.saturating_add(lifetime_ms));
                let alive = retired_until.is_none_or(|until| until > now);
                (alive && key.created_at <= now).then_some(key)
            })
    }
}

/// What a rotation did.
#[derive(Debug, Clone, Serialize)]
pub struct Rotation {
    pub new_kid: String,
    /// When the new key starts signing (Unix ms).
    pub signs_from: UnixMillis,
    /// The key signing until then.
    pub previous_kid: Option<String>,
}

pub struct SigningKeys {
    store: IdentityStore,
    master: Arc<MasterKey>,
    clock: Arc<dyn Clock>,
    rotation_lead_ms: i64,
    /// The longest lifetime of a token we sign; a retired key stays published this long.
    token_lifetime_ms: i64,
    rings: Mutex<HashMap<TenantId, Arc<Ring>>>,
    /// Serialises first-need generation, so concurrent first requests create one key, not many.
    generating: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeys")
            .field("rotation_lead_ms", &self.rotation_lead_ms)
            .field("token_lifetime_ms", &self.token_lifetime_ms)
            .finish_non_exhaustive()
    }
}

fn key_context(tenant: &TenantId, kid: &str) -> Vec<u8> {
    format!("openframe/tenant-key/{}/{kid}", tenant.as_str()).into_bytes()
}

impl SigningKeys {
    pub fn new(
        store: IdentityStore,
        master: Arc<MasterKey>,
        clock: Arc<dyn Clock>,
        rotation_lead: Duration,
        token_lifetime: Duration,
    ) -> SigningKeys {
        SigningKeys {
            store,
            master,
            clock,
            rotation_lead_ms: i64::try_from(rotation_lead.as_millis()).unwrap_or(i64::MAX),
            token_lifetime_ms: i64::try_from(token_lifetime.as_millis()).unwrap_or(i64::MAX),
            rings: Mutex::new(HashMap::new()),
            generating: tokio::sync::Mutex::new(()),
        }
    }

    fn cached(&self, tenant: &TenantId) -> Option<Arc<Ring>> {
        let rings = self
            .rings
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        rings.get(tenant).cloned()
    }

    async fn load(&self, tenant: &TenantId) -> anyhow::Result<Arc<Ring>> {
        let records = self.store.keys(tenant).await?;
        let now = self.clock.now_ms();
        let master = self.master.clone();
        let tenant_owned = tenant.clone();
        // Keys already decrypted stay as they are: a reload (every JWKS request) then costs a
        // store read, not RSA parsing an unauthenticated client could make us repeat.
        let known: HashMap<String, Arc<RsaKeyPair>> = self
            .cached(tenant)
            .map(|ring| {
                ring.keys
                    .iter()
                    .filter_map(|key| key.pair.clone().map(|pair| (key.kid.clone(), pair)))
                    .collect()
            })
            .unwrap_or_default();
        // Decrypting and parsing RSA keys is CPU work: off the executor.
        let ring = tokio::task::spawn_blocking(move || {
            build_ring(&tenant_owned, records, &master, now, &known)
        })
        .await
        .context("the key loading task failed")??;
        let ring = Arc::new(ring);
        let mut rings = self
            .rings
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        rings.insert(tenant.clone(), ring.clone());
        Ok(ring)
    }

    async fn ring(&self, tenant: &TenantId) -> anyhow::Result<Arc<Ring>> {
        match self.cached(tenant) {
            Some(ring) if ring.loaded.elapsed() < RING_TTL => Ok(ring),
            _ => self.load(tenant).await,
        }
    }

    /// Signs `claims` with the tenant's current key, creating the tenant's first key if needed.
    /// Returns the token and the kid that signed it.
    pub async fn sign<C: Serialize>(
        &self,
        tenant: &TenantId,
        claims: &C,
    ) -> anyhow::Result<String> {
        let mut now = self.clock.now_ms();
        let mut ring = self.ring(tenant).await?;
        if ring
            .signing(now)
            .and_then(|key| key.pair.as_ref())
            .is_none()
        {
            self.ensure_key(tenant).await?;
            ring = self.load(tenant).await?;
            now = self.clock.now_ms();
        }
        let key = ring
            .signing(now)
            .context("no signing key after generating one")?;
        let pair = key
            .pair
            .clone()
            .context("the signing key has no private part")?;
        let kid = key.kid.clone();
        let payload = serde_json::to_value(claims)?;
        tokio::task::spawn_blocking(move || jwt::sign(&pair, &kid, &payload))
            .await
            .context("the signing task failed")?
    }

    /// Verifies a token's signature against the keys this tenant publishes now.
    pub async fn verify<C: DeserializeOwned>(
        &self,
        tenant: &TenantId,
        token: &str,
    ) -> Result<C, VerifyError> {
        let kid = jwt::peek_kid(token)?;
        let now = self.clock.now_ms();
        let mut ring = self.ring(tenant).await.map_err(VerifyError::Unexpected)?;
        let known = |ring: &Ring| {
            ring.published(now, self.token_lifetime_ms)
                .find(|key| key.kid == kid)
                .map(|key| key.public.clone())
        };
        if known(&ring).is_none() && ring.loaded.elapsed() >= UNKNOWN_KID_RELOAD {
            ring = self.load(tenant).await.map_err(VerifyError::Unexpected)?;
        }
        let public = known(&ring);
        Ok(jwt::verify(token, |_| public)?)
    }

    /// The tenant's JWKS (RFC 7517), creating the first key if there is none yet.
    pub async fn jwks(&self, tenant: &TenantId) -> anyhow::Result<serde_json::Value> {
        let mut now = self.clock.now_ms();
        // Always read the store: the JWKS must show a key the moment it is created, even by
        // another process, and it is fetched rarely.
        let mut ring = self.load(tenant).await?;
        if ring.signing(now).is_none() {
            self.ensure_key(tenant).await?;
            ring = self.load(tenant).await?;
            now = self.clock.now_ms();
        }
        let keys: Vec<serde_json::Value> = ring
            .published(now, self.token_lifetime_ms)
            .map(|key| {
                serde_json::json!({
                    "kty": "RSA",
                    "use": "sig",
                    "alg": "RS256",
                    "kid": key.kid,
                    "n": b64url(&key.public.n),
                    "e": b64url(&key.public.e),
                })
            })
            .collect();
        Ok(serde_json::json!({ "keys": keys }))
    }

    /// Creates the tenant's first key if it has none that signs now.
    async fn ensure_key(&self, tenant: &TenantId) -> anyhow::Result<()> {
        let _generating = self.generating.lock().await;
        let now = self.clock.now_ms();
        let ring = self.load(tenant).await?;
        if ring.signing(now).is_some() {
            return Ok(());
        }
        let record = self.generate(tenant, now).await?;
        self.store.insert_key(tenant, &record).await?;
        tracing::info!(tenant = tenant.as_str(), kid = %record.kid, "created the tenant's first signing key");
        Ok(())
    }

    /// Adds a key that starts signing after the rotation lead; see the module docs.
    pub async fn rotate(&self, tenant: &TenantId) -> anyhow::Result<Rotation> {
        let _generating = self.generating.lock().await;
        let now = self.clock.now_ms();
        let ring = self.load(tenant).await?;
        let previous_kid = ring.keys.last().map(|key| key.kid.clone());
        // The new key must start after every key already scheduled, or windows would overlap.
        let latest = ring.keys.last().map_or(now, |key| key.signs_from);
        let signs_from = now.saturating_add(self.rotation_lead_ms).max(latest + 1);
        let mut record = self.generate(tenant, now).await?;
        record.signs_from = signs_from;
        self.store.insert_key(tenant, &record).await?;
        self.load(tenant).await?;
        tracing::info!(tenant = tenant.as_str(), kid = %record.kid, signs_from, "rotated the signing key");
        Ok(Rotation {
            new_kid: record.kid,
            signs_from,
            previous_kid,
        })
    }

    async fn generate(&self, tenant: &TenantId, now: UnixMillis) -> anyhow::Result<KeyRecord> {
        let master = self.master.clone();
        let tenant = tenant.clone();
        tokio::task::spawn_blocking(move || -> anyhow::Result<KeyRecord> {
            let pair = RsaKeyPair::generate(KeySize::Rsa2048)
                .map_err(|_| anyhow::anyhow!("RSA key generation failed"))?;
            let pkcs8 = pair
                .as_der()
                .map_err(|_| anyhow::anyhow!("cannot encode the RSA key"))?;
            let kid = random_token()?;
            let public = pair.public_key();
            Ok(KeyRecord {
                n: b64url(public.modulus().big_endian_without_leading_zero()),
                e: b64url(public.exponent().big_endian_without_leading_zero()),
                private_sealed: b64url(&master.seal(&key_context(&tenant, &kid), pkcs8.as_ref())?),
                kid,
                created_at: now,
                signs_from: now,
            })
        })
        .await
        .context("the key generation task failed")?
    }
}

fn build_ring(
    tenant: &TenantId,
    mut records: Vec<KeyRecord>,
    master: &MasterKey,
    now: UnixMillis,
    known: &HashMap<String, Arc<RsaKeyPair>>,
) -> anyhow::Result<Ring> {
    records.sort_by(|a, b| (a.signs_from, &a.kid).cmp(&(b.signs_from, &b.kid)));
    let mut keys = Vec::with_capacity(records.len());
    for (index, record) in records.iter().enumerate() {
        let successor_from = records.get(index + 1).map(|next| next.signs_from);
        let may_sign = successor_from.is_none_or(|from| from > now);
        let pair = if !may_sign {
            None
        } else if let Some(pair) = known.get(&record.kid) {
            Some(pair.clone())
        } else {
            let sealed = b64url_decode(&record.private_sealed)
                .context("a stored signing key is not base64url")?;
            let pkcs8 = master
                .open(&key_context(tenant, &record.kid), &sealed)
                .with_context(|| {
                    format!("signing key {} of tenant {}", record.kid, tenant.as_str())
                })?;
            Some(Arc::new(RsaKeyPair::from_pkcs8(&pkcs8).map_err(
                |error| anyhow::anyhow!("signing key {} does not parse: {error}", record.kid),
            )?))
        };
        keys.push(LoadedKey {
            kid: record.kid.clone(),
            created_at: record.created_at,
            signs_from: record.signs_from,
            public: RsaPublic {
                n: b64url_decode(&record.n).context("a stored modulus is not base64url")?,
                e: b64url_decode(&record.e).context("a stored exponent is not base64url")?,
            },
            pair,
        });
    }
    Ok(Ring {
        keys,
        loaded: Instant::now(),
    })
}

/// Why a token did not verify: the token's fault, or ours.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Token(#[from] JwtError),
    #[error(transparent)]
    Unexpected(anyhow::Error),
}
