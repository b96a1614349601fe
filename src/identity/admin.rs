//! What the command line does to identity: bootstrap, tenants, users, clients, key rotation.
//! Each operation works on the tenancy store alone, so it runs whether or not `serve` is
//! running on the same data dir, and returns a value the CLI prints as text or JSON.

use openframe_storage::model::TenantId;
use serde::Serialize;

use super::keys::Rotation;
use super::{Identity, IdentityError, NewClient, NewUser};
use crate::domain::{Email, Invalid, Role};

#[derive(Debug, Clone, Serialize)]
pub struct TenantSummary {
    pub id: String,
    pub name: String,
    pub status: &'static str,
    pub issuer: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct UserSummary {
    pub id: String,
    pub tenant_id: String,
    pub email: String,
    pub roles: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ClientSummary {
    pub tenant_id: String,
    pub client_id: String,
    /// Shown once: only its hash is stored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    pub name: String,
    pub public: bool,
    pub grant_types: Vec<String>,
    pub redirect_uris: Vec<String>,
    pub scopes: Vec<String>,
}

/// What `openframe init` did.
#[derive(Debug, Clone, Serialize)]
pub struct InitOutcome {
    pub tenant: TenantSummary,
    pub tenant_created: bool,
    pub admin_email: String,
    pub admin_created: bool,
    /// Present when init generated the password: shown once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generated_password: Option<String>,
    pub sign_in_url: String,
}

pub fn parse_tenant(raw: &str) -> Result<TenantId, IdentityError> {
    TenantId::parse(raw)
        .map_err(|error| IdentityError::Invalid(Invalid::new("tenant", error.to_string())))
}

fn summary(identity: &Identity, tenant: &openframe_storage::documents::Tenant) -> TenantSummary {
    TenantSummary {
        id: tenant.id.as_str().to_owned(),
        name: tenant.name.clone(),
        status: tenant.status.as_str(),
        issuer: identity.issuer(&tenant.id),
    }
}

pub async fn create_tenant(
    identity: &Identity,
    id: &str,
    name: &str,
) -> Result<TenantSummary, IdentityError> {
    let id = parse_tenant(id)?;
    let tenant = identity.create_tenant(&id, name).await?;
    Ok(summary(identity, &tenant))
}

pub async fn list_tenants(identity: &Identity) -> Result<Vec<TenantSummary>, IdentityError> {
    let tenants = identity.tenants.tenants().await?;
    Ok(tenants
        .iter()
        .map(|tenant| summary(identity, tenant))
        .collect())
}

async fn existing_tenant(identity: &Identity, raw: &str) -> Result<TenantId, IdentityError> {
    let id = parse_tenant(raw)?;
    match identity.tenants.tenant(&id).await? {
        Some(_) => Ok(id),
        None => Err(IdentityError::NotFound(format!(
            "tenant {raw:?} does not exist; create it with `openframe tenant create --id {raw} --name NAME`"
        ))),
    }
}

pub async fn rotate_keys(identity: &Identity, tenant: &str) -> Result<Rotation, IdentityError> {
    let id = existing_tenant(identity, tenant).await?;
    Ok(identity.keys.rotate(&id).await?)
}

pub async fn create_user(
    identity: &Identity,
    tenant: &str,
    email: &str,
    password: &str,
    role: &str,
) -> Result<UserSummary, IdentityError> {
    let id = existing_tenant(identity, tenant).await?;
    let new = NewUser {
        email: Email::parse(email)?,
        password: Some(password.to_owned()),
        roles: vec![Role::parse(role)?],
        first_name: String::new(),
        last_name: String::new(),
        email_verified: false,
    };
    let user = identity.create_user(&id, new).await?;
    Ok(UserSummary {
        id: user.id,
        tenant_id: id.as_str().to_owned(),
        email: user.email,
        roles: user.roles,
    })
}

pub async fn create_client(
    identity: &Identity,
    tenant: &str,
    new: NewClient,
) -> Result<ClientSummary, IdentityError> {
    let id = existing_tenant(identity, tenant).await?;
    let created = identity.create_client(&id, new).await?;
    Ok(ClientSummary {
        tenant_id: id.as_str().to_owned(),
        public: created.client.is_public(),
        client_id: created.client.client_id,
        client_secret: created.secret,
        name: created.client.name,
        grant_types: created.client.grant_types,
        redirect_uris: created.client.redirect_uris,
        scopes: created.client.scopes,
    })
}

/// A password that meets the policy: 24 random base64url characters plus one of each class.
pub fn generate_password() -> anyhow::Result<String> {
    Ok(format!(
        "{}Aa1!",
        super::crypto::random_token()?.get(..24).unwrap_or_default()
    ))
}

/// Idempotent bootstrap: the tenant, its built-in client and an OWNER. Running it again with
/// the same arguments changes nothing and says so; it never resets an existing password.
pub async fn init(
    identity: &Identity,
    tenant: &str,
    tenant_name: Option<&str>,
    admin_email: &str,
    admin_password: Option<&str>,
) -> Result<InitOutcome, IdentityError> {
    let id = parse_tenant(tenant)?;
    let email = Email::parse(admin_email)?;
    if let Some(password) = admin_password {
        crate::domain::check_password_policy(password)?;
    }
    let (tenant_record, tenant_created) = match identity.tenants.tenant(&id).await? {
        Some(existing) => {
            identity.ensure_gateway_client(&id).await?;
            (existing, false)
        }
        None => (
            identity
                .create_tenant(&id, tenant_name.unwrap_or(tenant))
                .await?,
            true,
        ),
    };
    let mut generated_password = None;
    let admin_created = match identity.store.user_by_email(&id, &email).await? {
        Some(_) => false,
        None => {
            let password = match admin_password {
                Some(password) => password.to_owned(),
                None => {
                    let password = generate_password()?;
                    generated_password = Some(password.clone());
                    password
                }
            };
            let new = NewUser {
                email: email.clone(),
                password: Some(password),
                roles: vec![Role::Owner],
                first_name: String::new(),
                last_name: String::new(),
                email_verified: false,
            };
            identity.create_user(&id, new).await?;
            true
        }
    };
    Ok(InitOutcome {
        tenant: summary(identity, &tenant_record),
        tenant_created,
        admin_email: email.as_str().to_owned(),
        admin_created,
        generated_password,
        sign_in_url: format!("{}/login", identity.issuer(&id)),
    })
}

/// The tenant and owner a first `serve` on an empty data dir creates.
pub const DEFAULT_TENANT: &str = "default";
pub const DEFAULT_OWNER_EMAIL: &str = "admin@openframe.local";
/// Where a first start leaves the generated password (mode 0600), for whoever runs the service.
pub const INITIAL_PASSWORD_FILE: &str = "initial-admin-password";

/// First start: with no tenant at all, creates `default` and an OWNER with a generated password,
/// written to `<data_dir>/initial-admin-password` (0600). Returns `None` when tenants exist.
pub async fn bootstrap_if_empty(
    identity: &Identity,
    data_dir: &std::path::Path,
) -> Result<Option<InitOutcome>, IdentityError> {
    if !identity.tenants.tenants().await?.is_empty() {
        return Ok(None);
    }
    let outcome = init(
        identity,
        DEFAULT_TENANT,
        Some("Default"),
        DEFAULT_OWNER_EMAIL,
        None,
    )
    .await?;
    if let Some(password) = &outcome.generated_password {
        crate::tls::write_atomically(
            &data_dir.join(INITIAL_PASSWORD_FILE),
            format!("{password}\n").as_bytes(),
            0o600,
        )?;
    }
    Ok(Some(outcome))
}

/// What `openframe sso set` did, with the URI to register at the upstream provider.
#[derive(Debug, Clone, Serialize)]
pub struct SsoSummary {
    pub tenant_id: String,
    pub provider: String,
    pub issuer: String,
    pub client_id: String,
    pub allowed_domains: Vec<String>,
    pub auto_provision_users: bool,
    /// Register this as a redirect URI at the upstream provider.
    pub redirect_uri: String,
}

pub async fn set_sso(
    identity: &Identity,
    tenant: &str,
    new: super::sso::NewSso,
) -> Result<SsoSummary, IdentityError> {
    let id = existing_tenant(identity, tenant).await?;
    let config = identity.set_sso(&id, new).await?;
    Ok(SsoSummary {
        tenant_id: id.as_str().to_owned(),
        redirect_uri: format!("{}/sso/{}/callback", identity.issuer(&id), config.provider),
        provider: config.provider,
        issuer: config.issuer,
        client_id: config.client_id,
        allowed_domains: config.allowed_domains,
        auto_provision_users: config.auto_provision_users,
    })
}

/// Sets a user's password from the command line: how the operator recovers an account (even
/// the only owner's) on an appliance without SMTP. Every session and token of the user ends.
pub async fn set_password(
    identity: &Identity,
    tenant: &str,
    email: &str,
    password: &str,
) -> Result<UserSummary, IdentityError> {
    let id = existing_tenant(identity, tenant).await?;
    let email = Email::parse(email)?;
    let user = identity
        .store
        .user_by_email(&id, &email)
        .await?
        .ok_or_else(|| IdentityError::NotFound(format!("no user {email} in tenant {tenant}")))?;
    let summary = UserSummary {
        id: user.record.id.clone(),
        tenant_id: id.as_str().to_owned(),
        email: user.record.email.clone(),
        roles: user.record.roles.clone(),
    };
    identity.replace_password(&id, user, password).await?;
    Ok(summary)
}
