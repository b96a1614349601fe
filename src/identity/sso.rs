//! Upstream single sign-on: a tenant may let its people sign in with another OpenID Connect
//! provider (Google Workspace, Microsoft Entra, or any standard one, including another tenant
//! of this appliance). We are the relying party: authorization code with PKCE, the ID token's
//! signature checked against the upstream's JWKS (RS256 only), its issuer, audience, expiry and
//! nonce checked, and the email accepted only if the upstream says it is verified and its domain
//! is one the tenant allows. Unknown people are created (as ADMIN) only with auto-provisioning.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::crypto::{b64url, b64url_decode};
use super::jwt::{self, RsaPublic};
use super::store::UserRecord;
use super::{Identity, IdentityError, NewUser};
use crate::domain::{Email, Invalid, Role};
use openframe_storage::model::{Collection, DocumentId, TenantId};

/// How long an upstream's discovery document is reused.
const METADATA_TTL: Duration = Duration::from_secs(300);

/// A tenant's upstream provider, as stored. The client secret is sealed with the master key.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SsoConfig {
    /// The provider's slug in URLs: `/sas/{tenant}/sso/{provider}`.
    pub provider: String,
    pub display_name: String,
    pub issuer: String,
    pub client_id: String,
    pub client_secret_sealed: String,
    pub allowed_domains: Vec<String>,
    pub auto_provision_users: bool,
    pub enabled: bool,
    /// A PEM file of CA certificates to trust for this provider (an internal IdP), or empty
    /// for the system's roots.
    pub ca_file: String,
}

/// What an operator sets with `openframe sso set`.
#[derive(Debug, Clone)]
pub struct NewSso {
    pub provider: String,
    pub display_name: String,
    pub issuer: String,
    pub client_id: String,
    pub client_secret: String,
    pub allowed_domains: Vec<String>,
    pub auto_provision_users: bool,
    pub ca_file: String,
}

/// The upstream's discovery document, the parts we use.
#[derive(Debug, Clone, Deserialize)]
pub struct UpstreamMetadata {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
}

/// The upstream ID token's claims we check and use.
#[derive(Debug, Deserialize)]
struct UpstreamClaims {
    iss: String,
    sub: String,
    aud: super::tokens::Audience,
    exp: i64,
    nonce: Option<String>,
    email: Option<String>,
    email_verified: Option<bool>,
    given_name: Option<String>,
    family_name: Option<String>,
}

fn collection() -> Result<Collection, IdentityError> {
    Collection::parse("sso_configs")
        .map_err(|error| IdentityError::Unexpected(anyhow::anyhow!("{error}")))
}

fn secret_context(tenant: &TenantId, provider: &str) -> Vec<u8> {
    format!("openframe/sso-secret/{}/{provider}", tenant.as_str()).into_bytes()
}

fn http_client(ca_file: &str) -> anyhow::Result<reqwest::Client> {
    let builder = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .redirect(reqwest::redirect::Policy::none());
    let builder = if ca_file.is_empty() {
        builder
    } else {
        let pem = std::fs::read(Path::new(ca_file))
            .with_context(|| format!("cannot read the SSO CA file {ca_file}"))?;
        let certificates =
            reqwest::Certificate::from_pem_bundle(&pem).context("the SSO CA file is not PEM")?;
        builder.tls_certs_only(certificates)
    };
    Ok(builder.build()?)
}

impl Identity {
    /// Registers (or replaces) a tenant's upstream provider.
    pub async fn set_sso(
        &self,
        tenant: &TenantId,
        new: NewSso,
    ) -> Result<SsoConfig, IdentityError> {
        let slug_ok = !new.provider.is_empty()
            && new.provider.len() <= 32
            && new
                .provider
                .bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-');
        if !slug_ok {
            return Err(Invalid::new("provider", "1 to 32 characters of a-z, 0-9 and '-'").into());
        }
        let issuer = url::Url::parse(&new.issuer)
            .map_err(|error| Invalid::new("issuer", error.to_string()))?;
        if issuer.scheme() != "https" {
            return Err(Invalid::new("issuer", "must be an https URL").into());
        }
        if new.allowed_domains.is_empty() {
            return Err(Invalid::new(
                "allowed_domain",
                "name at least one email domain whose people may sign in this way",
            )
            .into());
        }
        // Changing a provider may leave the secret out: the stored one stays.
        let existing = self.sso(tenant, &new.provider).await?;
        if new.client_id.is_empty() || (new.client_secret.is_empty() && existing.is_none()) {
            return Err(Invalid::new(
                "client_id",
                "the client id and secret the upstream issued are required",
            )
            .into());
        }
        if !new.ca_file.is_empty() {
            http_client(&new.ca_file)?;
        }
        let sealed = match &existing {
            Some(existing) if new.client_secret.is_empty() => existing.client_secret_sealed.clone(),
            _ => b64url(&self.master().seal(
                &secret_context(tenant, &new.provider),
                new.client_secret.as_bytes(),
            )?),
        };
        let config = SsoConfig {
            display_name: if new.display_name.is_empty() {
                new.provider.clone()
            } else {
                new.display_name
            },
            provider: new.provider,
            issuer: new.issuer.trim_end_matches('/').to_owned(),
            client_id: new.client_id,
            client_secret_sealed: sealed,
            allowed_domains: new
                .allowed_domains
                .iter()
                .map(|d| d.trim().to_lowercase())
                .collect(),
            auto_provision_users: new.auto_provision_users,
            enabled: existing.as_ref().is_none_or(|existing| existing.enabled),
            ca_file: new.ca_file,
        };
        let id = DocumentId::parse(&config.provider)
            .map_err(|error| Invalid::new("provider", error.to_string()))?;
        let body = serde_json::to_value(&config).map_err(anyhow::Error::from)?;
        self.store
            .documents()
            .replace(tenant, &collection()?, &id, &body, None)
            .await?;
        Ok(config)
    }

    pub async fn sso(
        &self,
        tenant: &TenantId,
        provider: &str,
    ) -> Result<Option<SsoConfig>, IdentityError> {
        let Ok(id) = DocumentId::parse(provider) else {
            return Ok(None);
        };
        match self
            .store
            .documents()
            .get(tenant, &collection()?, &id)
            .await?
        {
            Some(document) => Ok(Some(
                serde_json::from_value(document.body).map_err(anyhow::Error::from)?,
            )),
            None => Ok(None),
        }
    }

    /// Every provider of the tenant, enabled or not.
    pub async fn sso_configs(&self, tenant: &TenantId) -> Result<Vec<SsoConfig>, IdentityError> {
        let documents = self
            .store
            .documents()
            .list(tenant, &collection()?, None, 100)
            .await?;
        documents
            .into_iter()
            .map(|document| {
                serde_json::from_value(document.body)
                    .map_err(|error| IdentityError::Unexpected(error.into()))
            })
            .collect()
    }

    /// Turns a provider on or off; `None` when the tenant has no such provider.
    pub async fn set_sso_enabled(
        &self,
        tenant: &TenantId,
        provider: &str,
        enabled: bool,
    ) -> Result<Option<SsoConfig>, IdentityError> {
        let Some(mut config) = self.sso(tenant, provider).await? else {
            return Ok(None);
        };
        config.enabled = enabled;
        let id = DocumentId::parse(provider)
            .map_err(|error| Invalid::new("provider", error.to_string()))?;
        let body = serde_json::to_value(&config).map_err(anyhow::Error::from)?;
        self.store
            .documents()
            .replace(tenant, &collection()?, &id, &body, None)
            .await?;
        Ok(Some(config))
    }

    /// Removes a provider; `false` when there was none.
    pub async fn delete_sso(
        &self,
        tenant: &TenantId,
        provider: &str,
    ) -> Result<bool, IdentityError> {
        let Ok(id) = DocumentId::parse(provider) else {
            return Ok(false);
        };
        Ok(self
            .store
            .documents()
            .delete(tenant, &collection()?, &id, None)
            .await?)
    }

    /// (provider, display name) of each enabled provider, for the login page.
    pub async fn sso_buttons(&self, tenant: &TenantId) -> Vec<(String, String)> {
        let Ok(collection) = collection() else {
            return Vec::new();
        };
        match self
            .store
            .documents()
            .list(tenant, &collection, None, 20)
            .await
        {
            Ok(documents) => documents
                .into_iter()
                .filter_map(|document| serde_json::from_value::<SsoConfig>(document.body).ok())
                .filter(|config| config.enabled)
                .map(|config| (config.provider, config.display_name))
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Fetches the upstream's discovery document and checks it names the configured issuer.
    pub async fn upstream_metadata(&self, config: &SsoConfig) -> anyhow::Result<UpstreamMetadata> {
        let key = format!("{}|{}", config.issuer, config.ca_file);
        {
            let cache = self
                .sso_metadata
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
            if let Some((fetched, metadata)) = cache.get(&key)
                && fetched.elapsed() < METADATA_TTL
            {
                return Ok(metadata.clone());
            }
        }
        let metadata = self.fetch_upstream_metadata(config).await?;
        let mut cache = self
            .sso_metadata
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        cache.insert(key, (std::time::Instant::now(), metadata.clone()));
        Ok(metadata)
    }

    async fn fetch_upstream_metadata(
        &self,
        config: &SsoConfig,
    ) -> anyhow::Result<UpstreamMetadata> {
        let client = http_client(&config.ca_file)?;
        let url = format!("{}/.well-known/openid-configuration", config.issuer);
        let metadata: UpstreamMetadata = client
            .get(&url)
            .send()
            .await
            .with_context(|| format!("fetching {url}"))?
            .error_for_status()?
            .json()
            .await
            .with_context(|| format!("reading {url}"))?;
        if metadata.issuer.trim_end_matches('/') != config.issuer {
            anyhow::bail!(
                "the upstream's discovery names issuer {:?}, not {:?}",
                metadata.issuer,
                config.issuer
            );
        }
        Ok(metadata)
    }

    /// Redeems the upstream's code and returns the verified person: (email, subject, names).
    pub async fn upstream_identity(
        &self,
        tenant: &TenantId,
        config: &SsoConfig,
        code: &str,
        redirect_uri: &str,
        verifier: &str,
        nonce: &str,
    ) -> Result<(Email, String, String, String), IdentityError> {
        let refuse = |why: String| IdentityError::Forbidden(why);
        let metadata = self.upstream_metadata(config).await?;
        let client = http_client(&config.ca_file)?;
        let sealed = b64url_decode(&config.client_secret_sealed)
            .context("a stored SSO secret is not base64url")?;
        let secret = String::from_utf8(
            self.master()
                .open(&secret_context(tenant, &config.provider), &sealed)?,
        )
        .context("a stored SSO secret is not text")?;
        let response = client
            .post(&metadata.token_endpoint)
            .basic_auth(
                url::form_urlencoded::byte_serialize(config.client_id.as_bytes())
                    .collect::<String>(),
                Some(url::form_urlencoded::byte_serialize(secret.as_bytes()).collect::<String>()),
            )
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", redirect_uri),
                ("code_verifier", verifier),
            ])
            .send()
            .await
            .context("the upstream's token endpoint did not answer")?;
        if !response.status().is_success() {
            let status = response.status();
            let body: serde_json::Value = response.json().await.unwrap_or_default();
            return Err(refuse(format!(
                "the upstream refused the sign-in ({status}: {})",
                body["error"].as_str().unwrap_or("no error code")
            )));
        }
        let tokens: serde_json::Value = response
            .json()
            .await
            .context("the upstream's token response is not JSON")?;
        let id_token = tokens["id_token"]
            .as_str()
            .ok_or_else(|| refuse("the upstream sent no ID token".into()))?;
        let jwks: serde_json::Value = client
            .get(&metadata.jwks_uri)
            .send()
            .await
            .context("fetching the upstream's JWKS")?
            .json()
            .await
            .context("the upstream's JWKS is not JSON")?;
        let claims: UpstreamClaims = jwt::verify(id_token, |kid| {
            jwks["keys"].as_array()?.iter().find_map(|key| {
                (key["kid"] == kid && key["kty"] == "RSA").then(|| {
                    Some(RsaPublic {
                        n: b64url_decode(key["n"].as_str()?)?,
                        e: b64url_decode(key["e"].as_str()?)?,
                    })
                })?
            })
        })
        .map_err(|error| refuse(format!("the upstream's ID token does not verify: {error}")))?;
        if claims.iss.trim_end_matches('/') != config.issuer {
            return Err(refuse(
                "the upstream's ID token names another issuer".into(),
            ));
        }
        if !claims.aud.contains(&config.client_id) {
            return Err(refuse(
                "the upstream's ID token is for another client".into(),
            ));
        }
        if claims.exp <= self.clock.now_ms() / 1000 - super::tokens::LEEWAY_SECONDS {
            return Err(refuse("the upstream's ID token has expired".into()));
        }
        if claims.nonce.as_deref() != Some(nonce) {
            return Err(refuse(
                "the upstream's ID token does not carry this sign-in's nonce".into(),
            ));
        }
        let email = claims
            .email
            .as_deref()
            .map(Email::parse)
            .transpose()?
            .ok_or_else(|| refuse("the upstream did not share an email address".into()))?;
        if claims.email_verified != Some(true) {
            return Err(refuse(format!("the upstream has not verified {email}")));
        }
        if !config
            .allowed_domains
            .iter()
            .any(|domain| domain == email.domain())
        {
            return Err(refuse(format!(
                "{} is not a domain allowed to sign in here",
                email.domain()
            )));
        }
        Ok((
            email,
            claims.sub,
            claims.given_name.unwrap_or_default(),
            claims.family_name.unwrap_or_default(),
        ))
    }

    /// The local user for a verified upstream person: found by email, or created when the
    /// provider auto-provisions.
    pub async fn sso_user(
        &self,
        tenant: &TenantId,
        config: &SsoConfig,
        email: Email,
        subject: &str,
        first_name: String,
        last_name: String,
    ) -> Result<UserRecord, IdentityError> {
        if let Some(user) = self.store.user_by_email(tenant, &email).await? {
            if !user.record.is_active() {
                return Err(IdentityError::Forbidden(format!(
                    "the account of {email} is disabled"
                )));
            }
            return Ok(user.record);
        }
        if !config.auto_provision_users {
            return Err(IdentityError::Forbidden(format!(
                "{email} has no account here; ask an administrator for an invitation"
            )));
        }
        let names_ok =
            |name: &str| name.is_empty() || crate::domain::check_display_name("name", name).is_ok();
        let new = NewUser {
            email,
            password: None,
            roles: vec![Role::Admin],
            first_name: if names_ok(&first_name) {
                first_name
            } else {
                String::new()
            },
            last_name: if names_ok(&last_name) {
                last_name
            } else {
                String::new()
            },
            email_verified: true,
        };
        let mut user = self.create_user(tenant, new).await?;
        if let Some(mut stored) = self.store.user(tenant, &user.id).await? {
            stored.record.login_provider = config.provider.to_uppercase();
            self.store.replace_user(tenant, &stored).await?;
            user = stored.record;
        }
        tracing::info!(tenant = tenant.as_str(), provider = %config.provider, upstream_subject = %subject, "provisioned a user from upstream SSO");
        Ok(user)
    }
}
