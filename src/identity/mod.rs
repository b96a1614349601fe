//! Identity: every tenant is its own OAuth 2.0 / OpenID Connect provider at
//! `{public_url}/sas/{tenant}`, with its own signing keys, users and clients.
//!
//! This module owns tenants' keys, users, clients, codes, refresh-token families and sign-in
//! sessions. It does not decide what a token may do at other endpoints (that is the gateway's
//! job); it issues, verifies and revokes.
//!
//! Reading order: [`crypto`] (master key, digests), [`jwt`] (pinned RS256), [`keys`] (rotation),
//! [`store`] (records), [`rules`] (PKCE, redirects, scopes), [`password`] and [`throttle`]
//! (sign-in), [`tokens`] (grants), [`accounts`] (invitations, resets, registration), [`sso`]
//! (upstream providers), [`http`] (the endpoints), [`admin`] (what the command line does).

pub mod accounts;
pub mod admin;
pub mod agent_tokens;
pub mod crypto;
pub mod http;
pub mod jwt;
pub mod keys;
pub mod password;
pub mod rules;
pub mod sso;
pub mod store;
pub mod throttle;
pub mod tokens;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use openframe_storage::documents::{Tenant, TenantStatus};
use openframe_storage::error::DocumentError;
use openframe_storage::model::{Clock, TenantId};
use openframe_storage::{DocumentStore, TenantStore};

use crate::domain::{Email, Invalid, Role};
use crypto::MasterKey;
use keys::SigningKeys;
use store::{ClientRecord, IdentityStore, UserRecord};
use throttle::{Limits, LoginThrottle};

/// The built-in browser client every tenant has (OpenFrame's BFF client).
pub const GATEWAY_CLIENT_ID: &str = "openframe-gateway";

/// Lifetimes and limits, from `[identity]`.
#[derive(Debug, Clone)]
pub struct Settings {
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
    pub code_ttl: Duration,
    pub session_ttl: Duration,
    pub invitation_ttl: Duration,
    pub reset_ttl: Duration,
}

/// The identity service: shared by the HTTP handlers and the command line.
#[derive(Debug)]
pub struct Identity {
    pub tenants: Arc<dyn TenantStore>,
    pub store: IdentityStore,
    pub keys: SigningKeys,
    master: Arc<MasterKey>,
    pub clock: Arc<dyn Clock>,
    pub settings: Settings,
    /// `https://host:port`, no trailing slash; issuers are `{public_url}/sas/{tenant}`.
    public_url: String,
    pub throttle: LoginThrottle,
    /// Password-reset requests, counted like failed sign-ins, so nobody can mail-bomb a user or
    /// fill the outbox: 3 per email and address an hour, 20 per address.
    pub reset_requests: LoginThrottle,
    pub mailer: crate::mail::Mailer,
    /// Upstream SSO discovery documents by issuer, fetched at most every few minutes, so
    /// unauthenticated hits on `/sas/{tenant}/sso/{provider}` do not each fetch from upstream.
    pub(crate) sso_metadata: std::sync::Mutex<
        std::collections::HashMap<String, (std::time::Instant, sso::UpstreamMetadata)>,
    >,
    /// argon2id with bounded concurrency and reused work memory.
    pub passwords: password::Passwords,
    /// Counts security events; `serve` registers it with the metrics, the CLI does not.
    pub events: prometheus_client::metrics::family::Family<
        crate::metrics::IdentityEventLabels,
        prometheus_client::metrics::counter::Counter,
    >,
    /// Where security events also go when `[audit] syslog` is set (see [`Identity::security_event`]).
    security_sink: std::sync::OnceLock<crate::audit::SyslogSink>,
}

/// Failures of identity operations that a caller can act on, plus the unexpected.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("tenant {0:?} does not exist or is not active")]
    InvalidTenant(String),
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    NotFound(String),
    /// The thing existed but can no longer be used (an accepted or expired invitation, a spent
    /// reset link).
    #[error("{0}")]
    Gone(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("a store is unavailable: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Unexpected(anyhow::Error),
}

impl From<DocumentError> for IdentityError {
    fn from(error: DocumentError) -> Self {
        match error {
            DocumentError::AlreadyExists { what } => {
                IdentityError::Conflict(format!("{what} already exists"))
            }
            DocumentError::NotFound { what } => {
                IdentityError::NotFound(format!("{what} not found"))
            }
            DocumentError::Unavailable(failure) => IdentityError::Unavailable(failure.to_string()),
            other => IdentityError::Unexpected(anyhow::anyhow!(other)),
        }
    }
}

impl From<anyhow::Error> for IdentityError {
    fn from(error: anyhow::Error) -> Self {
        IdentityError::Unexpected(error)
    }
}

/// A user to create.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub email: Email,
    pub password: Option<String>,
    pub roles: Vec<Role>,
    pub first_name: String,
    pub last_name: String,
    /// Whether the person has shown they read this mailbox (they followed a link sent to it, or
    /// an upstream provider vouches for it). Upstream SSO trusts only verified addresses.
    pub email_verified: bool,
}

/// A relying party to register.
#[derive(Debug, Clone)]
pub struct NewClient {
    pub name: String,
    pub public: bool,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    /// Empty: `authorization_code` and `refresh_token`.
    pub grant_types: Vec<String>,
    /// The scopes it may ask for. Empty: every supported scope.
    pub scopes: Vec<String>,
}

/// A registered client and, for a confidential one, its secret: shown once, never stored.
#[derive(Debug, Clone)]
pub struct CreatedClient {
    pub client: ClientRecord,
    pub secret: Option<String>,
}

const GRANTS: &[&str] = &["authorization_code", "refresh_token", "client_credentials"];

fn seconds(value: u64) -> Duration {
    Duration::from_secs(value)
}

impl Identity {
    /// Opens the identity service over the tenancy stores; creates the master key on first use.
    pub fn open(
        tenants: Arc<dyn TenantStore>,
        documents: Arc<dyn DocumentStore>,
        data_dir: &Path,
        config: &crate::config::Config,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Identity> {
        let public_url = config.public_url();
        let master = Arc::new(MasterKey::load_or_create(data_dir)?);
        let mailer = crate::mail::Mailer::new(
            &config.mail,
            documents.clone(),
            clock.clone(),
            master.clone(),
        )?;
        let config = &config.identity;
        let store = IdentityStore::new(documents)?;
        let settings = Settings {
            access_ttl: seconds(config.access_token_ttl_seconds),
            refresh_ttl: seconds(config.refresh_token_ttl_seconds),
            code_ttl: seconds(config.authorization_code_ttl_seconds),
            session_ttl: seconds(config.session_ttl_seconds),
            invitation_ttl: seconds(config.invitation_ttl_hours * 3600),
            reset_ttl: seconds(config.password_reset_ttl_minutes * 60),
        };
        let keys = SigningKeys::new(
            store.clone(),
            master.clone(),
            clock.clone(),
            seconds(config.key_rotation_lead_seconds),
            settings.access_ttl,
        );
        let limits = Limits {
            per_account: config.login_max_failures_per_account as usize,
            per_address: config.login_max_failures_per_address as usize,
            window_ms: i64::try_from(config.login_failure_window_seconds * 1000)
                .unwrap_or(i64::MAX),
        };
        Ok(Identity {
            tenants,
            store,
            keys,
            throttle: LoginThrottle::new(limits, clock.clone()),
            reset_requests: LoginThrottle::new(
                Limits {
                    per_account: 3,
                    per_address: 20,
                    window_ms: 3_600_000,
                },
                clock.clone(),
            ),
            mailer,
            events: Default::default(),
            security_sink: std::sync::OnceLock::new(),
            sso_metadata: Default::default(),
            passwords: password::Passwords::new(
                std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get),
            )?,
            master,
            clock,
            settings,
            public_url: public_url.trim_end_matches('/').to_owned(),
        })
    }

    /// Removes expired codes, tokens, sessions and links of every tenant; see
    /// [`IdentityStore::sweep_expired`]. `serve` runs it hourly.
    pub async fn sweep_expired(&self) -> Result<u64, IdentityError> {
        let now = self.clock.now_ms();
        let mut removed = 0;
        for tenant in self.tenants.tenants().await? {
            removed += self.store.sweep_expired(&tenant.id, now).await?;
        }
        Ok(removed)
    }

    /// Counts one security event (see `openframe_identity_events` in the metrics).
    pub fn count(&self, event: &'static str) {
        self.events
            .get_or_create(&crate::metrics::IdentityEventLabels { event })
            .inc();
    }

    /// Sends security events to the audit trail's syslog collector from now on.
    pub fn set_security_sink(&self, sink: crate::audit::SyslogSink) {
        let _ = self.security_sink.set(sink);
    }

    /// A security event (`signin_failed`, `signin_throttled`, `client_auth_failed`,
    /// `code_replayed`, `refresh_reused`, `api_key_rejected`): counted for the metrics and, with
    /// `[audit] syslog`, sent to the collector as RFC 5424 (authpriv, warning) with the tenant and
    /// `details` (addresses, client ids; never a secret or a password).
    pub fn security_event(
        &self,
        kind: &'static str,
        tenant: Option<&TenantId>,
        details: &[(&'static str, String)],
    ) {
        self.count(kind);
        if let Some(sink) = self.security_sink.get() {
            sink.security(self.clock.now_ms(), kind, tenant, details);
        }
    }

    pub fn public_url(&self) -> &str {
        &self.public_url
    }

    /// `{public_url}/sas/{tenant}`: the `iss` of everything this tenant signs.
    pub fn issuer(&self, tenant: &TenantId) -> String {
        format!("{}/sas/{}", self.public_url, tenant.as_str())
    }

    pub(crate) fn master(&self) -> &MasterKey {
        &self.master
    }

    /// The master key, for other parts that seal secrets (the tool registry).
    pub fn master_key(&self) -> Arc<MasterKey> {
        self.master.clone()
    }

    /// The tenant named in a path, if it exists and is active; otherwise `InvalidTenant`, the
    /// same answer for "malformed", "unknown" and "suspended", so nothing leaks.
    pub async fn active_tenant(&self, raw: &str) -> Result<Tenant, IdentityError> {
        let invalid = || IdentityError::InvalidTenant(raw.chars().take(63).collect());
        let id = TenantId::parse(raw).map_err(|_| invalid())?;
        match self.tenants.tenant(&id).await? {
            Some(tenant) if tenant.status == TenantStatus::Active => Ok(tenant),
            _ => Err(invalid()),
        }
    }

    /// Creates a tenant and its built-in browser client. Its first signing key is made on
    /// first need.
    pub async fn create_tenant(&self, id: &TenantId, name: &str) -> Result<Tenant, IdentityError> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
            return Err(Invalid::new("name", "must be 1 to 100 printable characters").into());
        }
        let tenant = Tenant {
            id: id.clone(),
            name: name.to_owned(),
            status: TenantStatus::Active,
            created_at: self.clock.now_ms(),
        };
        self.tenants
            .create_tenant(&tenant)
            .await
            .map_err(|error| match error {
                DocumentError::AlreadyExists { .. } => {
                    IdentityError::Conflict(format!("tenant {:?} already exists", id.as_str()))
                }
                other => other.into(),
            })?;
        self.ensure_gateway_client(id).await?;
        Ok(tenant)
    }

    /// The built-in client: public, PKCE required, redirecting to `{public_url}/oauth/callback`.
    pub async fn ensure_gateway_client(&self, tenant: &TenantId) -> Result<(), IdentityError> {
        if self
            .store
            .client(tenant, GATEWAY_CLIENT_ID)
            .await?
            .is_some()
        {
            return Ok(());
        }
        let client = ClientRecord {
            client_id: GATEWAY_CLIENT_ID.to_owned(),
            name: "OpenFrame browser sign-in".to_owned(),
            secret_hash: None,
            grant_types: vec!["authorization_code".into(), "refresh_token".into()],
            redirect_uris: Vec::new(),
            post_logout_redirect_uris: Vec::new(),
            scopes: rules::SUPPORTED_SCOPES
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            require_pkce: true,
            built_in: true,
            created_at: self.clock.now_ms(),
        };
        match self.store.insert_client(tenant, &client).await {
            Ok(()) | Err(DocumentError::AlreadyExists { .. }) => Ok(()),
            Err(other) => Err(other.into()),
        }
    }

    /// A client as the endpoints see it: the built-in one's URIs follow the public URL.
    pub async fn client(
        &self,
        tenant: &TenantId,
        client_id: &str,
    ) -> Result<Option<ClientRecord>, IdentityError> {
        let Some(mut client) = self.store.client(tenant, client_id).await? else {
            return Ok(None);
        };
        if client.built_in {
            client.redirect_uris = vec![format!("{}/oauth/callback", self.public_url)];
            client.post_logout_redirect_uris = vec![format!("{}/", self.public_url)];
        }
        Ok(Some(client))
    }

    pub async fn create_user(
        &self,
        tenant: &TenantId,
        new: NewUser,
    ) -> Result<UserRecord, IdentityError> {
        if new.roles.is_empty() {
            return Err(Invalid::new("roles", "give at least one role: OWNER or ADMIN").into());
        }
        for (field, name) in [("firstName", &new.first_name), ("lastName", &new.last_name)] {
            if !name.is_empty() {
                crate::domain::check_display_name(field, name)?;
            }
        }
        let password_hash = match new.password {
            Some(password) => {
                crate::domain::check_password_policy(&password)?;
                Some(self.passwords.hash(password).await?)
            }
            None => None,
        };
        let now = self.clock.now_ms();
        let user = UserRecord {
            id: crypto::random_uuid()?,
            email: new.email.as_str().to_owned(),
            first_name: new.first_name,
            last_name: new.last_name,
            roles: new
                .roles
                .iter()
                .map(|role| role.as_str().to_owned())
                .collect(),
            status: "ACTIVE".to_owned(),
            password_hash,
            login_provider: "LOCAL".to_owned(),
            email_verified: new.email_verified,
            created_at: now,
            updated_at: now,
            last_login: None,
            tokens_not_before: 0,
        };
        self.store.insert_user(tenant, &user).await?;
        Ok(user)
    }

    pub async fn create_client(
        &self,
        tenant: &TenantId,
        new: NewClient,
    ) -> Result<CreatedClient, IdentityError> {
        let name = new.name.trim();
        if name.is_empty() || name.chars().count() > 100 {
            return Err(Invalid::new("name", "must be 1 to 100 characters").into());
        }
        let grant_types = if new.grant_types.is_empty() {
            vec!["authorization_code".to_owned(), "refresh_token".to_owned()]
        } else {
            new.grant_types
        };
        for grant in &grant_types {
            if !GRANTS.contains(&grant.as_str()) {
                return Err(Invalid::new(
                    "grant",
                    format!("{grant:?} is not a grant; use authorization_code, refresh_token or client_credentials"),
                )
                .into());
            }
        }
        if new.public
            && grant_types
                .iter()
                .any(|grant| grant == "client_credentials")
        {
            return Err(Invalid::new(
                "grant",
                "a public client has no secret, so it cannot use client_credentials",
            )
            .into());
        }
        let wants_code = grant_types
            .iter()
            .any(|grant| grant == "authorization_code");
        if wants_code && new.redirect_uris.is_empty() {
            return Err(Invalid::new(
                "redirect_uri",
                "the authorization_code grant needs at least one redirect URI",
            )
            .into());
        }
        for uri in new
            .redirect_uris
            .iter()
            .chain(&new.post_logout_redirect_uris)
        {
            rules::check_redirect_uri(uri)
                .map_err(|problem| Invalid::new("redirect_uri", problem))?;
        }
        for scope in &new.scopes {
            if !rules::SUPPORTED_SCOPES.contains(&scope.as_str()) {
                return Err(Invalid::new(
                    "scope",
                    format!(
                        "{scope:?} is not a scope; use {}",
                        rules::SUPPORTED_SCOPES.join(", ")
                    ),
                )
                .into());
            }
        }
        let scopes = if new.scopes.is_empty() {
            rules::SUPPORTED_SCOPES
                .iter()
                .map(|s| (*s).to_owned())
                .collect()
        } else {
            new.scopes
        };
        let secret = if new.public {
            None
        } else {
            Some(format!("ofs_{}", crypto::random_token()?))
        };
        let client = ClientRecord {
            client_id: format!(
                "ofc_{}",
                crypto::random_token()?.get(..22).unwrap_or_default()
            ),
            name: name.to_owned(),
            secret_hash: secret
                .as_deref()
                .map(|secret| crypto::sha256_hex(secret.as_bytes())),
            grant_types,
            redirect_uris: new.redirect_uris,
            post_logout_redirect_uris: new.post_logout_redirect_uris,
            scopes,
            require_pkce: new.public,
            built_in: false,
            created_at: self.clock.now_ms(),
        };
        self.store.insert_client(tenant, &client).await?;
        Ok(CreatedClient { client, secret })
    }
}
