//! Endpoint agents' credentials (OpenFrame's client service): registration secrets, machine
//! registration, reinstall and uninstall, and the agent token endpoint's grants.
//!
//! - A tenant has one active **registration secret** (the installer's `--initialKey`). It is kept
//!   sealed with the master key, so an administrator can show it in the install command, and
//!   looked up by its SHA-256; rotating it refuses the old one at once.
//! - Registering creates the machine (`PENDING`) and its credential: `clientId = agent_{machineId}`
//!   and a 256-bit `clientSecret`, stored as SHA-256 only. A secret of 256 random bits cannot be
//!   guessed, so a slow hash would add latency and nothing else (OpenFrame uses BCrypt).
//! - Each credential has an **epoch**, written into every agent token. Reinstalling or
//!   uninstalling moves it on, and the gateway refuses tokens of an older epoch.
//! - Refresh tokens are `{machineId}.{secret}`, rotated on every use. Presenting one that was
//!   already rotated out means it leaked: the credential's epoch moves on and every token of the
//!   machine stops working until the agent authenticates with its client secret again.
//!
//! Agents carry no tenant in what they send, so the lookups (secret → tenant, machine → tenant)
//! are in memory, loaded at start and kept in step with every write.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use openframe_storage::model::{Collection, DocumentId};
use openframe_storage::{Clock, DocumentStore, TenantId, TenantStore};
use serde::{Deserialize, Serialize};

use crate::domain::{Invalid, check_tag_part};
use crate::identity::Identity;
use crate::identity::crypto::{
    MasterKey, b64url, b64url_decode, constant_time_eq, random_token, random_uuid, sha256,
};
use crate::inventory::{Inventory, InventoryError, Machine};

const SECRETS: &str = "agent_registration_secrets";
const CREDENTIALS: &str = "agent_credentials";
/// What the sealed registration secret is bound to, so a sealed value cannot be moved elsewhere.
const SEAL_CONTEXT: &[u8] = b"openframe agent registration secret";

/// OpenFrame's `osType`, plus `LINUX`.
pub const OS_TYPES: [&str; 3] = ["WINDOWS", "MAC_OS", "LINUX"];
/// OpenFrame's `DeviceType`.
pub const DEVICE_TYPES: [&str; 10] = [
    "DESKTOP",
    "LAPTOP",
    "SERVER",
    "MOBILE_DEVICE",
    "TABLET",
    "NETWORK_DEVICE",
    "IOT_DEVICE",
    "VIRTUAL_MACHINE",
    "CONTAINER_HOST",
    "OTHER",
];

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Invalid(#[from] Invalid),
    /// Wrong, rotated or missing credentials: the same answer for each, so nothing leaks.
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    NotFound(String),
    #[error("the agent store is unavailable: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl From<InventoryError> for AgentError {
    fn from(error: InventoryError) -> Self {
        match error {
            InventoryError::Invalid(invalid) => AgentError::Invalid(invalid),
            InventoryError::NotFound(what) => AgentError::NotFound(what),
            InventoryError::Unavailable(detail) => AgentError::Unavailable(detail),
        }
    }
}

impl From<openframe_storage::error::DocumentError> for AgentError {
    fn from(error: openframe_storage::error::DocumentError) -> Self {
        AgentError::Unavailable(error.to_string())
    }
}

impl From<AgentError> for crate::error::ApiError {
    fn from(error: AgentError) -> Self {
        use crate::error::ApiError;
        match error {
            AgentError::Invalid(invalid) => ApiError::InvalidInput(invalid.to_string()),
            AgentError::Unauthorized(why) => ApiError::Unauthorized(why),
            AgentError::NotFound(what) => ApiError::NotFound(what),
            AgentError::Unavailable(detail) => ApiError::StoreUnavailable(detail),
            AgentError::Unexpected(error) => ApiError::Unexpected(error),
        }
    }
}

/// A registration tag: `--tag site=CHICAGO` arrives as `{key: "site", values: ["CHICAGO"]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistrationTag {
    pub key: String,
    #[serde(default)]
    pub values: Vec<String>,
}

/// OpenFrame's `AgentRegistrationRequest`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Registration {
    pub hostname: Option<String>,
    pub organization_id: Option<String>,
    pub user_id: Option<String>,
    pub ip: Option<String>,
    pub mac_address: Option<String>,
    pub os_uuid: Option<String>,
    pub agent_version: Option<String>,
    /// Ignored: a machine starts `PENDING` whatever the agent says.
    pub status: Option<String>,
    pub display_name: Option<String>,
    pub serial_number: Option<String>,
    pub manufacturer: Option<String>,
    pub model: Option<String>,
    #[serde(rename = "type")]
    pub device_type: Option<String>,
    pub os_type: Option<String>,
    pub os_version: Option<String>,
    pub os_build: Option<String>,
    pub timezone: Option<String>,
    #[serde(default)]
    pub tags: Vec<RegistrationTag>,
}

/// What registration answers: OpenFrame's `{machineId, clientId, clientSecret}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Enrolled {
    pub machine_id: String,
    pub client_id: String,
    pub client_secret: String,
}

/// OpenFrame's token answer: `{accessToken, refreshToken, tokenType, expiresIn}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentTokens {
    pub access_token: String,
    pub refresh_token: String,
    pub token_type: String,
    pub expires_in: u64,
}

/// The active registration secret, as an administrator sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RegistrationSecret {
    pub id: String,
    pub secret: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SecretRecord {
    id: String,
    /// The secret sealed with the master key, base64url.
    sealed: String,
    /// SHA-256 of the secret, hex.
    hash: String,
    /// `ACTIVE` or `ROTATED`.
    status: String,
    created_at: i64,
    #[serde(default)]
    rotated_at: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CredentialRecord {
    machine_id: String,
    client_id: String,
    /// SHA-256 of the client secret, hex.
    secret_hash: String,
    epoch: u64,
    #[serde(default)]
    refresh_hash: Option<String>,
    #[serde(default)]
    refresh_expires_at: Option<i64>,
    /// The refresh token rotated out last: seeing it again means it leaked.
    #[serde(default)]
    previous_refresh_hash: Option<String>,
    created_at: i64,
    updated_at: i64,
}

/// What the memory holds about a registered machine.
#[derive(Debug, Clone)]
struct Registered {
    tenant: TenantId,
    epoch: u64,
}

#[derive(Debug)]
pub struct Agents {
    tenants: Arc<dyn TenantStore>,
    documents: Arc<dyn DocumentStore>,
    inventory: Arc<Inventory>,
    identity: Arc<Identity>,
    clock: Arc<dyn Clock>,
    registration: RegistrationSecrets,
    /// SHA-256 of each active registration secret → its tenant.
    secrets: RwLock<HashMap<Vec<u8>, TenantId>>,
    /// When the secrets were last read from the store (see `tenant_for_key`: secrets the CLI
    /// makes or rotates while serving take effect without a restart).
    secrets_read_at: std::sync::Mutex<Option<std::time::Instant>>,
    /// Registered machines (machine id → tenant and epoch).
    machines: RwLock<HashMap<String, Registered>>,
    /// Credential changes take turns, so two refreshes of one token cannot both succeed.
    writing: tokio::sync::Mutex<()>,
}

impl Agents {
    /// Loads every tenant's active secrets and registered machines.
    pub async fn load(
        tenants: Arc<dyn TenantStore>,
        documents: Arc<dyn DocumentStore>,
        inventory: Arc<Inventory>,
        identity: Arc<Identity>,
    ) -> Result<Agents, AgentError> {
        let agents = Agents {
            registration: RegistrationSecrets::new(
                documents.clone(),
                identity.master_key(),
                identity.clock.clone(),
            ),
            tenants,
            documents,
            inventory,
            clock: identity.clock.clone(),
            identity,
            secrets: RwLock::new(HashMap::new()),
            secrets_read_at: std::sync::Mutex::new(None),
            machines: RwLock::new(HashMap::new()),
            writing: tokio::sync::Mutex::new(()),
        };
        agents.reload().await?;
        Ok(agents)
    }

    /// Reads the lookups again from the store (at start, and when another process, such as
    /// the CLI, may have changed them).
    pub async fn reload(&self) -> Result<(), AgentError> {
        self.reload_secrets().await?;
        let mut machines = HashMap::new();
        for tenant in self.tenants.tenants().await? {
            for credential in self
                .all::<CredentialRecord>(&tenant.id, CREDENTIALS)
                .await?
            {
                machines.insert(
                    credential.machine_id,
                    Registered {
                        tenant: tenant.id.clone(),
                        epoch: credential.epoch,
                    },
                );
            }
        }
        *self.machines.write().unwrap_or_else(|p| p.into_inner()) = machines;
        Ok(())
    }

    async fn reload_secrets(&self) -> Result<(), AgentError> {
        let mut secrets = HashMap::new();
        for tenant in self.tenants.tenants().await? {
            for hash in self.registration.active_hashes(&tenant.id).await? {
                secrets.insert(hash, tenant.id.clone());
            }
        }
        *self.secrets.write().unwrap_or_else(|p| p.into_inner()) = secrets;
        *self
            .secrets_read_at
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(std::time::Instant::now());
        Ok(())
    }

    /// Whether an agent token of this tenant, machine and epoch may still be used.
    pub fn admits(&self, tenant: &TenantId, machine_id: &str, epoch: u64) -> bool {
        self.machines
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(machine_id)
            .is_some_and(|known| &known.tenant == tenant && known.epoch == epoch)
    }

    /// The tenant a registered machine belongs to.
    pub fn tenant_of(&self, machine_id: &str) -> Option<TenantId> {
        self.machines
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(machine_id)
            .map(|known| known.tenant.clone())
    }

    /// The tenant's active registration secret, made on first need.
    pub async fn registration_secret(
        &self,
        tenant: &TenantId,
    ) -> Result<RegistrationSecret, AgentError> {
        let _turn = self.writing.lock().await;
        let current = self.registration.current(tenant).await?;
        self.secrets
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(sha256(current.secret.as_bytes()), tenant.clone());
        Ok(current)
    }

    /// Makes a new active registration secret; the old one is refused from now on. Agents
    /// already registered keep working: the secret only admits new machines.
    pub async fn rotate_secret(&self, tenant: &TenantId) -> Result<RegistrationSecret, AgentError> {
        let _turn = self.writing.lock().await;
        let (made, retired) = self.registration.rotate(tenant).await?;
        let mut secrets = self.secrets.write().unwrap_or_else(|p| p.into_inner());
        for hash in retired {
            secrets.remove(&hash);
        }
        secrets.insert(sha256(made.secret.as_bytes()), tenant.clone());
        tracing::info!(%tenant, secret_id = %made.id, "agent registration secret rotated");
        Ok(made)
    }

    /// The tenant whose active registration secret this is.
    async fn tenant_for_key(&self, initial_key: &str) -> Result<TenantId, AgentError> {
        let refused = || {
            AgentError::Unauthorized(
                "the initial key (X-Initial-Key) is not an active registration secret".into(),
            )
        };
        let key = initial_key.trim();
        if key.is_empty() || key.len() > 256 {
            return Err(refused());
        }
        let hash = sha256(key.as_bytes());
        let lookup = || {
            self.secrets
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .get(&hash)
                .cloned()
        };
        let read_within = |limit: std::time::Duration| {
            self.secrets_read_at
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_some_and(|at| at.elapsed() <= limit)
        };
        // Another process (the CLI) may have rotated or made secrets: what is known is read
        // again when it is 10 s old, and an unknown key rereads at most four times a second.
        if !read_within(std::time::Duration::from_secs(10)) {
            self.reload_secrets().await?;
        }
        if let Some(tenant) = lookup() {
            return Ok(tenant);
        }
        if !read_within(std::time::Duration::from_millis(250)) {
            self.reload_secrets().await?;
        }
        lookup().ok_or_else(refused)
    }

    /// `POST /clients/api/agents/register`: a new machine, `PENDING`, and its credential.
    pub async fn register(
        &self,
        initial_key: &str,
        registration: Registration,
    ) -> Result<Enrolled, AgentError> {
        let tenant = self.tenant_for_key(initial_key).await?;
        let machine_id = random_uuid()?;
        let mut machine = Machine {
            machine_id: machine_id.clone(),
            status: "PENDING".into(),
            registered_at: Some(self.clock.now_ms()),
            ..Machine::default()
        };
        self.describe(&tenant, &mut machine, registration).await?;
        let _turn = self.writing.lock().await;
        let (credential, secret) = self.new_credential(&machine_id, 1)?;
        // The credential first: a machine without one is invisible to agents and harmless;
        // the other order could leave a machine that nobody can ever authenticate as.
        self.put(&tenant, CREDENTIALS, &machine_id, &credential)
            .await?;
        self.inventory.put_machine(&tenant, machine).await?;
        self.remember(&machine_id, &tenant, 1);
        tracing::info!(%tenant, machine_id, "agent registered");
        Ok(Enrolled {
            client_id: credential.client_id,
            machine_id,
            client_secret: secret,
        })
    }

    /// `POST /clients/api/agents/reinstall`: the same machine id with a new client secret; every
    /// token of the old installation stops working.
    pub async fn reinstall(
        &self,
        initial_key: &str,
        machine_id: &str,
        client_secret: &str,
        registration: Registration,
    ) -> Result<Enrolled, AgentError> {
        let tenant = self.tenant_for_key(initial_key).await?;
        let _turn = self.writing.lock().await;
        let (owner, old) = self.check_secret(machine_id, client_secret).await?;
        if owner != tenant {
            return Err(AgentError::Unauthorized(
                "the machine id and client secret do not match".into(),
            ));
        }
        let mut described = Machine::default();
        self.describe(&tenant, &mut described, registration).await?;
        let epoch = old.epoch + 1;
        let (mut credential, secret) = self.new_credential(machine_id, epoch)?;
        credential.created_at = old.created_at;
        self.put(&tenant, CREDENTIALS, machine_id, &credential)
            .await?;
        self.remember(machine_id, &tenant, epoch);
        self.inventory
            .update_machine(&tenant, machine_id, |machine| {
                let (status, registered_at, last_seen) = (
                    machine.status.clone(),
                    machine.registered_at,
                    machine.last_seen,
                );
                *machine = Machine {
                    machine_id: machine.machine_id.clone(),
                    status: if status == "DELETED" {
                        "PENDING".into()
                    } else {
                        status
                    },
                    registered_at,
                    last_seen,
                    ..described
                };
            })
            .await?;
        tracing::info!(%tenant, machine_id, epoch, "agent reinstalled");
        Ok(Enrolled {
            machine_id: machine_id.to_owned(),
            client_id: credential.client_id,
            client_secret: secret,
        })
    }

    /// `POST /clients/api/agents/uninstall`: the credential is deleted (every token stops
    /// working) and the machine is marked `DELETED`; its history stays.
    pub async fn uninstall(&self, machine_id: &str, client_secret: &str) -> Result<(), AgentError> {
        let _turn = self.writing.lock().await;
        let (tenant, _) = self.check_secret(machine_id, client_secret).await?;
        let id = document_id(machine_id)?;
        self.documents
            .delete(&tenant, &collection(CREDENTIALS)?, &id, None)
            .await?;
        self.machines
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(machine_id);
        self.inventory
            .update_machine(&tenant, machine_id, |machine| {
                machine.status = "DELETED".into();
            })
            .await?;
        tracing::info!(%tenant, machine_id, "agent uninstalled");
        Ok(())
    }

    /// An administrator deleted the machine: its credential goes, so its tokens, refreshes and
    /// new `/ws/nats` sessions are refused from now on; the machine and its history stay.
    /// `false` when the tenant has no credential for it (never registered here, or uninstalled).
    pub async fn retire(&self, tenant: &TenantId, machine_id: &str) -> Result<bool, AgentError> {
        let _turn = self.writing.lock().await;
        if self.tenant_of(machine_id).as_ref() != Some(tenant) {
            return Ok(false);
        }
        self.documents
            .delete(
                tenant,
                &collection(CREDENTIALS)?,
                &document_id(machine_id)?,
                None,
            )
            .await?;
        self.machines
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(machine_id);
        tracing::info!(%tenant, machine_id, "agent credential revoked: the machine was deleted");
        Ok(true)
    }

    /// `grant_type=client_credentials`.
    pub async fn client_credentials(
        &self,
        client_id: &str,
        client_secret: &str,
    ) -> Result<AgentTokens, AgentError> {
        let machine_id = client_id
            .strip_prefix("agent_")
            .ok_or_else(|| AgentError::Unauthorized("the client credentials are wrong".into()))?;
        let _turn = self.writing.lock().await;
        let (tenant, credential) = self
            .check_secret(machine_id, client_secret)
            .await
            .map_err(|_| AgentError::Unauthorized("the client credentials are wrong".into()))?;
        self.grant(&tenant, credential, "client_credentials").await
    }

    /// `grant_type=refresh_token`, rotating the refresh token.
    pub async fn refresh(
        &self,
        refresh_token: &str,
        client_id: Option<&str>,
    ) -> Result<AgentTokens, AgentError> {
        let refused = || AgentError::Unauthorized("the refresh token is invalid or expired".into());
        let (machine_id, _) = refresh_token.split_once('.').ok_or_else(refused)?;
        if client_id.is_some_and(|client| client != format!("agent_{machine_id}")) {
            return Err(refused());
        }
        let _turn = self.writing.lock().await;
        let tenant = self.tenant_of(machine_id).ok_or_else(refused)?;
        let mut credential: CredentialRecord = self
            .get(&tenant, CREDENTIALS, machine_id)
            .await?
            .ok_or_else(refused)?;
        let presented = sha256(refresh_token.as_bytes());
        let matches = |stored: &Option<String>| {
            stored
                .as_deref()
                .and_then(hex_decode)
                .is_some_and(|stored| constant_time_eq(&stored, &presented))
        };
        if matches(&credential.previous_refresh_hash) {
            // A rotated-out token came back: someone else holds a copy. Stop them both.
            credential.epoch += 1;
            credential.refresh_hash = None;
            credential.previous_refresh_hash = None;
            credential.updated_at = self.clock.now_ms();
            self.put(&tenant, CREDENTIALS, machine_id, &credential)
                .await?;
            self.remember(machine_id, &tenant, credential.epoch);
            tracing::warn!(%tenant, machine_id, "an agent refresh token was used twice; the machine's tokens are revoked");
            return Err(AgentError::Unauthorized(
                "the refresh token was already used; the machine must authenticate with its client secret again".into(),
            ));
        }
        let now = self.clock.now_ms();
        if !matches(&credential.refresh_hash)
            || credential.refresh_expires_at.is_none_or(|at| at <= now)
        {
            return Err(refused());
        }
        self.grant(&tenant, credential, "refresh_token").await
    }

    /// Issues an access token and a fresh refresh token (the old one becomes "previous").
    async fn grant(
        &self,
        tenant: &TenantId,
        mut credential: CredentialRecord,
        grant_type: &str,
    ) -> Result<AgentTokens, AgentError> {
        let machine_id = credential.machine_id.clone();
        let access = self
            .identity
            .issue_agent_token(tenant, &machine_id, credential.epoch, grant_type)
            .await?;
        let refresh_token = format!("{machine_id}.{}", random_token()?);
        let now = self.clock.now_ms();
        let ttl_ms =
            i64::try_from(self.identity.settings.refresh_ttl.as_millis()).unwrap_or(i64::MAX);
        credential.previous_refresh_hash = credential.refresh_hash.take();
        credential.refresh_hash = Some(crate::identity::crypto::sha256_hex(
            refresh_token.as_bytes(),
        ));
        credential.refresh_expires_at = Some(now.saturating_add(ttl_ms));
        credential.updated_at = now;
        self.put(tenant, CREDENTIALS, &machine_id, &credential)
            .await?;
        Ok(AgentTokens {
            access_token: access.token,
            refresh_token,
            token_type: "Bearer".into(),
            expires_in: access.expires_in,
        })
    }

    /// The machine's tenant and credential, if `client_secret` is its secret.
    async fn check_secret(
        &self,
        machine_id: &str,
        client_secret: &str,
    ) -> Result<(TenantId, CredentialRecord), AgentError> {
        let refused =
            || AgentError::Unauthorized("the machine id and client secret do not match".into());
        let tenant = self.tenant_of(machine_id).ok_or_else(refused)?;
        let credential: CredentialRecord = self
            .get(&tenant, CREDENTIALS, machine_id)
            .await?
            .ok_or_else(refused)?;
        let stored = hex_decode(&credential.secret_hash).ok_or_else(refused)?;
        if client_secret.is_empty()
            || client_secret.len() > 256
            || !constant_time_eq(&stored, &sha256(client_secret.as_bytes()))
        {
            return Err(refused());
        }
        Ok((tenant, credential))
    }

    fn new_credential(
        &self,
        machine_id: &str,
        epoch: u64,
    ) -> Result<(CredentialRecord, String), AgentError> {
        let secret = random_token()?;
        let now = self.clock.now_ms();
        Ok((
            CredentialRecord {
                machine_id: machine_id.to_owned(),
                client_id: format!("agent_{machine_id}"),
                secret_hash: crate::identity::crypto::sha256_hex(secret.as_bytes()),
                epoch,
                refresh_hash: None,
                refresh_expires_at: None,
                previous_refresh_hash: None,
                created_at: now,
                updated_at: now,
            },
            secret,
        ))
    }

    fn remember(&self, machine_id: &str, tenant: &TenantId, epoch: u64) {
        self.machines
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                machine_id.to_owned(),
                Registered {
                    tenant: tenant.clone(),
                    epoch,
                },
            );
    }

    /// Validates what the agent reported and writes it into `machine`.
    async fn describe(
        &self,
        tenant: &TenantId,
        machine: &mut Machine,
        registration: Registration,
    ) -> Result<(), AgentError> {
        let hostname = required(registration.hostname, "hostname")?;
        let organization_id = required(registration.organization_id, "organizationId")?;
        if !self
            .inventory
            .has_organization(tenant, &organization_id)
            .await?
        {
            return Err(Invalid::new(
                "organizationId",
                format!("no organization {organization_id:?} exists in this tenant"),
            )
            .into());
        }
        let agent_version = required(registration.agent_version, "agentVersion")?;
        let os_type = required(registration.os_type, "osType")?.to_ascii_uppercase();
        if !OS_TYPES.contains(&os_type.as_str()) {
            return Err(
                Invalid::new("osType", format!("must be one of {}", OS_TYPES.join(", "))).into(),
            );
        }
        let device_type = match registration.device_type {
            Some(kind) if !kind.trim().is_empty() => {
                let kind = kind.trim().to_ascii_uppercase();
                if !DEVICE_TYPES.contains(&kind.as_str()) {
                    return Err(Invalid::new(
                        "type",
                        format!("must be one of {}", DEVICE_TYPES.join(", ")),
                    )
                    .into());
                }
                kind
            }
            _ => "DESKTOP".into(),
        };
        let mut tags = Vec::new();
        for tag in registration.tags {
            check_tag_part(&tag.key, "tags.key")?;
            if tag.values.is_empty() {
                tags.push(tag.key.clone());
            }
            for value in &tag.values {
                check_tag_part(value, "tags.values")?;
                tags.push(format!("{}:{value}", tag.key));
            }
        }
        if tags.len() > 64 {
            return Err(Invalid::new("tags", "at most 64 tag values").into());
        }
        machine.hostname = hostname;
        machine.organization_id = Some(organization_id);
        machine.agent_version = Some(agent_version);
        machine.os_type = os_type;
        machine.device_type = device_type;
        machine.tags = tags;
        machine.user_id = optional(registration.user_id, "userId")?;
        machine.ip = optional(registration.ip, "ip")?;
        machine.mac_address = optional(registration.mac_address, "macAddress")?;
        machine.os_uuid = optional(registration.os_uuid, "osUuid")?;
        machine.display_name = optional(registration.display_name, "displayName")?;
        machine.serial_number = optional(registration.serial_number, "serialNumber")?;
        machine.manufacturer = optional(registration.manufacturer, "manufacturer")?;
        machine.model = optional(registration.model, "model")?;
        machine.os_version = optional(registration.os_version, "osVersion")?;
        machine.os_build = optional(registration.os_build, "osBuild")?;
        machine.timezone = optional(registration.timezone, "timezone")?;
        Ok(())
    }

    async fn get<T: serde::de::DeserializeOwned>(
        &self,
        tenant: &TenantId,
        name: &str,
        id: &str,
    ) -> Result<Option<T>, AgentError> {
        let found = self
            .documents
            .get(tenant, &collection(name)?, &document_id(id)?)
            .await?;
        found
            .map(|document| serde_json::from_value(document.body))
            .transpose()
            .map_err(|error| {
                AgentError::Unavailable(format!("an unreadable {name} record: {error}"))
            })
    }

    async fn put<T: Serialize>(
        &self,
        tenant: &TenantId,
        name: &str,
        id: &str,
        record: &T,
    ) -> Result<(), AgentError> {
        let body = serde_json::to_value(record).map_err(anyhow::Error::from)?;
        self.documents
            .replace(tenant, &collection(name)?, &document_id(id)?, &body, None)
            .await?;
        Ok(())
    }

    async fn all<T: serde::de::DeserializeOwned>(
        &self,
        tenant: &TenantId,
        name: &str,
    ) -> Result<Vec<T>, AgentError> {
        let collection = collection(name)?;
        Ok(crate::inventory::read_all(self.documents.as_ref(), tenant, &collection).await?)
    }
}

/// A tenant's registration secrets in the store: sealed, looked up by digest. Shared by the
/// running appliance ([`Agents`]) and the CLI (`openframe agent secret`).
#[derive(Debug)]
pub struct RegistrationSecrets {
    documents: Arc<dyn DocumentStore>,
    master: Arc<MasterKey>,
    clock: Arc<dyn Clock>,
}

impl RegistrationSecrets {
    pub fn new(
        documents: Arc<dyn DocumentStore>,
        master: Arc<MasterKey>,
        clock: Arc<dyn Clock>,
    ) -> RegistrationSecrets {
        RegistrationSecrets {
            documents,
            master,
            clock,
        }
    }

    async fn records(&self, tenant: &TenantId) -> Result<Vec<SecretRecord>, AgentError> {
        Ok(
            crate::inventory::read_all(self.documents.as_ref(), tenant, &collection(SECRETS)?)
                .await?,
        )
    }

    /// SHA-256 of each active secret.
    async fn active_hashes(&self, tenant: &TenantId) -> Result<Vec<Vec<u8>>, AgentError> {
        Ok(self
            .records(tenant)
            .await?
            .iter()
            .filter(|record| record.status == "ACTIVE")
            .filter_map(|record| hex_decode(&record.hash))
            .collect())
    }

    /// The active secret, made on first need.
    pub async fn current(&self, tenant: &TenantId) -> Result<RegistrationSecret, AgentError> {
        let active = self
            .records(tenant)
            .await?
            .into_iter()
            .find(|record| record.status == "ACTIVE");
        match active {
            Some(record) => self.reveal(&record),
            None => self.make(tenant).await,
        }
    }

    /// A new active secret; returns it and the digests of the ones it retired.
    pub async fn rotate(
        &self,
        tenant: &TenantId,
    ) -> Result<(RegistrationSecret, Vec<Vec<u8>>), AgentError> {
        let now = self.clock.now_ms();
        let mut retired = Vec::new();
        for mut record in self.records(tenant).await? {
            if record.status != "ACTIVE" {
                continue;
            }
            record.status = "ROTATED".into();
            record.rotated_at = Some(now);
            self.put(tenant, &record).await?;
            retired.extend(hex_decode(&record.hash));
        }
        Ok((self.make(tenant).await?, retired))
    }

    async fn make(&self, tenant: &TenantId) -> Result<RegistrationSecret, AgentError> {
        let secret = random_token()?;
        let record = SecretRecord {
            id: random_uuid()?,
            sealed: b64url(&self.master.seal(SEAL_CONTEXT, secret.as_bytes())?),
            hash: crate::identity::crypto::sha256_hex(secret.as_bytes()),
            status: "ACTIVE".into(),
            created_at: self.clock.now_ms(),
            rotated_at: None,
        };
        self.put(tenant, &record).await?;
        Ok(RegistrationSecret {
            id: record.id,
            secret,
            created_at: record.created_at,
        })
    }

    async fn put(&self, tenant: &TenantId, record: &SecretRecord) -> Result<(), AgentError> {
        let body = serde_json::to_value(record).map_err(anyhow::Error::from)?;
        self.documents
            .replace(
                tenant,
                &collection(SECRETS)?,
                &document_id(&record.id)?,
                &body,
                None,
            )
            .await?;
        Ok(())
    }

    fn reveal(&self, record: &SecretRecord) -> Result<RegistrationSecret, AgentError> {
        let sealed = b64url_decode(&record.sealed)
            .ok_or_else(|| anyhow::anyhow!("a sealed registration secret is not base64url"))?;
        let secret = String::from_utf8(self.master.open(SEAL_CONTEXT, &sealed)?)
            .map_err(|_| anyhow::anyhow!("a registration secret is not UTF-8"))?;
        Ok(RegistrationSecret {
            id: record.id.clone(),
            secret,
            created_at: record.created_at,
        })
    }
}

fn required(value: Option<String>, field: &'static str) -> Result<String, Invalid> {
    match optional(value, field)? {
        Some(value) => Ok(value),
        None => Err(Invalid::new(field, "is required")),
    }
}

/// Trimmed; empty means absent; at most 255 characters without control characters.
fn optional(value: Option<String>, field: &'static str) -> Result<Option<String>, Invalid> {
    let Some(value) = value else {
        return Ok(None);
    };
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    if value.chars().count() > 255 || value.chars().any(char::is_control) {
        return Err(Invalid::new(
            field,
            "must be at most 255 characters without control characters",
        ));
    }
    Ok(Some(value.to_owned()))
}

fn hex_decode(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(text.get(at..at + 2)?, 16).ok())
        .collect()
}

fn collection(name: &str) -> Result<Collection, AgentError> {
    Collection::parse(name).map_err(|error| AgentError::Unavailable(error.to_string()))
}

fn document_id(id: &str) -> Result<DocumentId, AgentError> {
    DocumentId::parse(id).map_err(|_| AgentError::Unauthorized("unknown machine".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_follow_openframes_rule() {
        for good in ["site", "CHICAGO", "a-b_c", "9"] {
            assert!(check_tag_part(good, "tags.key").is_ok(), "{good}");
        }
        for bad in ["", "-x", "_x", "a b", "a:b", &"x".repeat(65)] {
            let refused = check_tag_part(bad, "tags.key").unwrap_err();
            assert_eq!(refused.field, "tags.key");
        }
    }

    #[test]
    fn hex_round_trips_and_refuses_garbage() {
        let bytes = sha256(b"secret");
        assert_eq!(
            hex_decode(&crate::identity::crypto::hex(&bytes)),
            Some(bytes)
        );
        assert_eq!(hex_decode("abc"), None);
        assert_eq!(hex_decode("zz"), None);
    }

    #[test]
    fn text_fields_are_trimmed_bounded_and_optional() {
        assert_eq!(optional(Some("  x ".into()), "ip"), Ok(Some("x".into())));
        assert_eq!(optional(Some("   ".into()), "ip"), Ok(None));
        assert!(optional(Some("a\u{0}b".into()), "ip").is_err());
        assert_eq!(
            required(None, "hostname").unwrap_err().to_string(),
            "hostname: is required"
        );
    }
}
