//! The identity module's records and how they sit in the document store, one collection each.
//! Everything is addressed by tenant, so nothing one tenant issued is even visible to another.
//!
//! Presented secrets (codes, refresh tokens, sessions) are stored under the SHA-256 of the secret,
//! never the secret. Single use is enforced with the store's optimistic versions: of two requests
//! racing to use one code, exactly one wins the versioned replace.

use std::sync::Arc;

use openframe_storage::DocumentStore;
use openframe_storage::documents::Document;
use openframe_storage::error::DocumentError;
use openframe_storage::model::{Collection, DocumentId, TenantId, UnixMillis};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::crypto::sha256_hex;
use crate::domain::Email;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct UserRecord {
    pub id: String,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    /// `OWNER`, `ADMIN`: the stored roles; tokens carry the effective ones.
    pub roles: Vec<String>,
    /// `ACTIVE` or `DISABLED`.
    pub status: String,
    /// argon2id in PHC format; `None` for users who only sign in through an upstream provider.
    pub password_hash: Option<String>,
    pub login_provider: String,
    pub email_verified: bool,
    pub created_at: UnixMillis,
    pub updated_at: UnixMillis,
    pub last_login: Option<UnixMillis>,
    /// Tokens and sign-ins from before this moment are void (set by a password reset), whether
    /// or not their families could all be found and revoked.
    #[serde(default)]
    pub tokens_not_before: UnixMillis,
}

impl UserRecord {
    pub fn is_active(&self) -> bool {
        self.status == "ACTIVE"
    }
}

/// A relying party registered with one tenant.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ClientRecord {
    pub client_id: String,
    pub name: String,
    /// SHA-256 (hex) of the secret, for confidential clients. Secrets are 256-bit random values,
    /// so a fast hash is enough; the secret itself is shown once, at creation.
    pub secret_hash: Option<String>,
    pub grant_types: Vec<String>,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub scopes: Vec<String>,
    /// PKCE (S256) is required of public clients and of the built-in browser client.
    pub require_pkce: bool,
    /// The built-in browser client, whose redirect URI follows `server.public_url`.
    pub built_in: bool,
    pub created_at: UnixMillis,
}

impl ClientRecord {
    pub fn is_public(&self) -> bool {
        self.secret_hash.is_none()
    }

    pub fn allows_grant(&self, grant: &str) -> bool {
        self.grant_types.iter().any(|allowed| allowed == grant)
    }
}

/// A tenant's RSA signing key. It signs from `signs_from` until a newer key's `signs_from`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct KeyRecord {
    pub kid: String,
    /// Modulus and exponent, base64url: what the JWKS publishes.
    pub n: String,
    pub e: String,
    /// PKCS#8 DER of the private key, sealed with the master key (AES-256-GCM), base64url.
    pub private_sealed: String,
    pub created_at: UnixMillis,
    pub signs_from: UnixMillis,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CodeRecord {
    pub client_id: String,
    pub user_id: String,
    pub redirect_uri: String,
    pub scope: String,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub auth_time: UnixMillis,
    pub expires_at: UnixMillis,
    /// Set when redeemed; a second redemption revokes what the first one issued (RFC 6749 §4.1.2).
    pub family: Option<String>,
}

/// Every token descending from one authorization (one sign-in of one user at one client).
/// Revoking the family revokes them all: access tokens name it in `sid`.
///
/// The family also holds its refresh token. A refresh token is `{family id}.{secret}`; the
/// family keeps the SHA-256 of the live secret and of the recently spent ones, so a refresh is
/// one versioned replace of this record (one durable write), and a spent secret coming back is
/// recognised as reuse rather than mistaken for garbage.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FamilyRecord {
    pub client_id: String,
    pub user_id: String,
    pub revoked: bool,
    pub created_at: UnixMillis,
    /// The scope granted at sign-in; refreshes may narrow what an access token carries.
    pub scope: String,
    pub auth_time: UnixMillis,
    /// SHA-256 (hex) of the live refresh secret; `None` if the client gets no refresh tokens.
    pub current_hash: Option<String>,
    /// SHA-256 of the newest spent secrets (at most [`SPENT_KEPT`]).
    pub spent_hashes: Vec<String>,
    /// When the live secret replaced the one spent last (0 before the first refresh; records
    /// written before this field existed read as 0, so they get no retry grace).
    #[serde(default)]
    pub rotated_at: UnixMillis,
    /// When the live refresh token expires.
    pub expires_at: UnixMillis,
    /// When the record may be deleted: after its refresh token and every access token from it
    /// have expired.
    pub purge_at: UnixMillis,
}

/// How many spent refresh secrets a family remembers for reuse detection.
pub const SPENT_KEPT: usize = 32;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SessionRecord {
    pub user_id: String,
    pub auth_time: UnixMillis,
    pub expires_at: UnixMillis,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RevokedRecord {
    pub expires_at: UnixMillis,
}

/// An invitation to join a tenant. Its `id` is public (admins list, revoke and resend by it);
/// the link in the mail carries a separate 256-bit secret, stored only as `token_hash`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct InvitationRecord {
    pub id: String,
    pub token_hash: String,
    /// The link went out by SMTP (so accepting proves the mailbox), rather than through the
    /// outbox, where an admin saw it.
    pub delivered_by_mail: bool,
    pub email: String,
    pub roles: Vec<String>,
    /// `PENDING`, `ACCEPTED` or `REVOKED`; `EXPIRED` is computed, never stored.
    pub status: String,
    pub expires_at: UnixMillis,
    pub invited_by: Option<String>,
    pub created_at: UnixMillis,
    pub updated_at: UnixMillis,
}

/// A password-reset request, keyed by the SHA-256 of the token in the link.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ResetRecord {
    pub user_id: String,
    pub delivered_by_mail: bool,
    pub expires_at: UnixMillis,
    pub used: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
struct EmailClaim {
    user_id: String,
}

/// A record and the version the store holds, for versioned replaces.
#[derive(Debug, Clone)]
pub struct Versioned<T> {
    pub record: T,
    pub version: u64,
}

#[derive(Debug, Clone)]
struct Collections {
    users: Collection,
    user_emails: Collection,
    clients: Collection,
    keys: Collection,
    codes: Collection,
    families: Collection,
    sessions: Collection,
    revoked: Collection,
    invitations: Collection,
    resets: Collection,
    outbox: Collection,
}

#[derive(Debug, Clone)]
pub struct IdentityStore {
    documents: Arc<dyn DocumentStore>,
    c: Collections,
    /// Per tenant, moves on every write that can end a token's validity (a revocation, a user's
    /// status, roles or password changed), so caches of verified tokens (the gateway's) know to
    /// verify that tenant's tokens again.
    revocations: Arc<std::sync::RwLock<std::collections::HashMap<TenantId, u64>>>,
}

fn collection(name: &str) -> anyhow::Result<Collection> {
    Collection::parse(name).map_err(|error| anyhow::anyhow!("{error}"))
}

fn id(value: &str) -> Result<DocumentId, DocumentError> {
    DocumentId::parse(value).map_err(|error| DocumentError::Invalid(error.to_string()))
}

fn decode<T: DeserializeOwned>(document: Document) -> Result<Versioned<T>, DocumentError> {
    let record = serde_json::from_value(document.body).map_err(|error| {
        DocumentError::Invalid(format!("stored record {}: {error}", document.id.as_str()))
    })?;
    Ok(Versioned {
        record,
        version: document.version,
    })
}

fn encode<T: Serialize>(record: &T) -> Result<serde_json::Value, DocumentError> {
    serde_json::to_value(record).map_err(|error| DocumentError::Invalid(error.to_string()))
}

impl IdentityStore {
    pub fn new(documents: Arc<dyn DocumentStore>) -> anyhow::Result<IdentityStore> {
        Ok(IdentityStore {
            documents,
            c: Collections {
                users: collection("users")?,
                user_emails: collection("user_emails")?,
                clients: collection("oauth_clients")?,
                keys: collection("tenant_keys")?,
                codes: collection("oauth_codes")?,
                families: collection("oauth_token_families")?,
                sessions: collection("sas_sessions")?,
                revoked: collection("oauth_revoked_tokens")?,
                invitations: collection("invitations")?,
                resets: collection("password_resets")?,
                outbox: collection(crate::mail::OUTBOX)?,
            },
            revocations: Arc::default(),
        })
    }

    /// The tenant's revocation epoch: it changes whenever one of its tokens may have stopped
    /// being valid.
    pub fn revocation_epoch(&self, tenant: &TenantId) -> u64 {
        self.revocations
            .read()
            .ok()
            .and_then(|epochs| epochs.get(tenant).copied())
            .unwrap_or(0)
    }

    /// Marks the tenant's cached verdicts stale (also for changes made outside this module,
    /// such as a tenant's suspension).
    pub fn revoked_something(&self, tenant: &TenantId) {
        if let Ok(mut epochs) = self.revocations.write() {
            *epochs.entry(tenant.clone()).or_insert(0) += 1;
        }
    }

    /// The document store itself, for identity records kept outside this file (SSO settings).
    pub fn documents(&self) -> &Arc<dyn DocumentStore> {
        &self.documents
    }

    async fn get<T: DeserializeOwned>(
        &self,
        tenant: &TenantId,
        collection: &Collection,
        key: &str,
    ) -> Result<Option<Versioned<T>>, DocumentError> {
        match self.documents.get(tenant, collection, &id(key)?).await? {
            Some(document) => Ok(Some(decode(document)?)),
            None => Ok(None),
        }
    }

    async fn insert<T: Serialize>(
        &self,
        tenant: &TenantId,
        collection: &Collection,
        key: &str,
        record: &T,
    ) -> Result<(), DocumentError> {
        self.documents
            .insert(tenant, collection, &id(key)?, &encode(record)?)
            .await
            .map(|_| ())
    }

    async fn replace<T: Serialize>(
        &self,
        tenant: &TenantId,
        collection: &Collection,
        key: &str,
        record: &T,
        expected_version: Option<u64>,
    ) -> Result<(), DocumentError> {
        self.documents
            .replace(
                tenant,
                collection,
                &id(key)?,
                &encode(record)?,
                expected_version,
            )
            .await
            .map(|_| ())
    }

    // Users. The email claim document makes "one account per email per tenant" atomic.

    pub async fn insert_user(
        &self,
        tenant: &TenantId,
        user: &UserRecord,
    ) -> Result<(), DocumentError> {
        let claim_id = sha256_hex(user.email.as_bytes());
        let claim = EmailClaim {
            user_id: user.id.clone(),
        };
        self.insert(tenant, &self.c.user_emails, &claim_id, &claim)
            .await
            .map_err(|error| match error {
                DocumentError::AlreadyExists { .. } => DocumentError::AlreadyExists {
                    what: format!("a user with email {}", user.email),
                },
                other => other,
            })?;
        if let Err(error) = self.insert(tenant, &self.c.users, &user.id, user).await {
            // Give the email back, so a failed creation can be retried.
            let _ = self
                .documents
                .delete(tenant, &self.c.user_emails, &id(&claim_id)?, None)
                .await;
            return Err(error);
        }
        Ok(())
    }

    pub async fn user(
        &self,
        tenant: &TenantId,
        user_id: &str,
    ) -> Result<Option<Versioned<UserRecord>>, DocumentError> {
        self.get(tenant, &self.c.users, user_id).await
    }

    pub async fn user_by_email(
        &self,
        tenant: &TenantId,
        email: &Email,
    ) -> Result<Option<Versioned<UserRecord>>, DocumentError> {
        let claim: Option<Versioned<EmailClaim>> = self
            .get(
                tenant,
                &self.c.user_emails,
                &sha256_hex(email.as_str().as_bytes()),
            )
            .await?;
        match claim {
            Some(claim) => self.user(tenant, &claim.record.user_id).await,
            None => Ok(None),
        }
    }

    pub async fn replace_user(
        &self,
        tenant: &TenantId,
        user: &Versioned<UserRecord>,
    ) -> Result<(), DocumentError> {
        let replaced = self
            .replace(
                tenant,
                &self.c.users,
                &user.record.id,
                &user.record,
                Some(user.version),
            )
            .await;
        // Roles, status or `tokens_not_before` may have changed: cached verdicts are stale.
        self.revoked_something(tenant);
        replaced
    }

    /// Records a sign-in's time: nothing that decides a token's validity changes, so cached
    /// verdicts stay.
    pub async fn touch_user(
        &self,
        tenant: &TenantId,
        user: &Versioned<UserRecord>,
    ) -> Result<(), DocumentError> {
        self.replace(
            tenant,
            &self.c.users,
            &user.record.id,
            &user.record,
            Some(user.version),
        )
        .await
    }

    /// Every user of the tenant (deleted ones too), by id.
    pub async fn users(
        &self,
        tenant: &TenantId,
    ) -> Result<Vec<Versioned<UserRecord>>, DocumentError> {
        let mut users = Vec::new();
        let mut after: Option<DocumentId> = None;
        loop {
            let page = self
                .documents
                .list(
                    tenant,
                    &self.c.users,
                    after.as_ref(),
                    openframe_storage::documents::MAX_LIST,
                )
                .await?;
            let full = page.len() == openframe_storage::documents::MAX_LIST;
            after = page.last().map(|document| document.id.clone());
            for document in page {
                users.push(decode(document)?);
            }
            if !full {
                return Ok(users);
            }
        }
    }

    /// Frees a deleted user's email, so the address can be invited again.
    pub async fn release_email(&self, tenant: &TenantId, email: &str) -> Result<(), DocumentError> {
        self.documents
            .delete(
                tenant,
                &self.c.user_emails,
                &id(&sha256_hex(email.as_bytes()))?,
                None,
            )
            .await
            .map(|_| ())
    }

    pub async fn count_users(&self, tenant: &TenantId) -> Result<u64, DocumentError> {
        self.documents.count(tenant, &self.c.users).await
    }

    // Clients.

    pub async fn insert_client(
        &self,
        tenant: &TenantId,
        client: &ClientRecord,
    ) -> Result<(), DocumentError> {
        self.insert(tenant, &self.c.clients, &client.client_id, client)
            .await
    }

    pub async fn client(
        &self,
        tenant: &TenantId,
        client_id: &str,
    ) -> Result<Option<ClientRecord>, DocumentError> {
        if DocumentId::parse(client_id).is_err() {
            return Ok(None);
        }
        Ok(self
            .get(tenant, &self.c.clients, client_id)
            .await?
            .map(|versioned| versioned.record))
    }

    // Signing keys.

    pub async fn keys(&self, tenant: &TenantId) -> Result<Vec<KeyRecord>, DocumentError> {
        let mut keys = Vec::new();
        let mut after: Option<DocumentId> = None;
        loop {
            let page = self
                .documents
                .list(tenant, &self.c.keys, after.as_ref(), 100)
                .await?;
            let Some(last) = page.last() else { break };
            after = Some(last.id.clone());
            let full = page.len() == 100;
            for document in page {
                keys.push(decode::<KeyRecord>(document)?.record);
            }
            if !full {
                break;
            }
        }
        Ok(keys)
    }

    pub async fn insert_key(
        &self,
        tenant: &TenantId,
        key: &KeyRecord,
    ) -> Result<(), DocumentError> {
        self.insert(tenant, &self.c.keys, &key.kid, key).await
    }

    // Authorization codes, keyed by the SHA-256 of the code.

    pub async fn insert_code(
        &self,
        tenant: &TenantId,
        code_hash: &str,
        code: &CodeRecord,
    ) -> Result<(), DocumentError> {
        self.insert(tenant, &self.c.codes, code_hash, code).await
    }

    pub async fn code(
        &self,
        tenant: &TenantId,
        code_hash: &str,
    ) -> Result<Option<Versioned<CodeRecord>>, DocumentError> {
        self.get(tenant, &self.c.codes, code_hash).await
    }

    /// Marks a code redeemed; fails with a version conflict if someone else redeemed it first.
    pub async fn redeem_code(
        &self,
        tenant: &TenantId,
        code_hash: &str,
        code: &Versioned<CodeRecord>,
    ) -> Result<(), DocumentError> {
        self.replace(
            tenant,
            &self.c.codes,
            code_hash,
            &code.record,
            Some(code.version),
        )
        .await
    }

    // Token families, which hold the refresh tokens.

    pub async fn insert_family(
        &self,
        tenant: &TenantId,
        family_id: &str,
        family: &FamilyRecord,
    ) -> Result<(), DocumentError> {
        self.insert(tenant, &self.c.families, family_id, family)
            .await
    }

    pub async fn family(
        &self,
        tenant: &TenantId,
        family_id: &str,
    ) -> Result<Option<FamilyRecord>, DocumentError> {
        Ok(self
            .family_versioned(tenant, family_id)
            .await?
            .map(|versioned| versioned.record))
    }

    pub async fn family_versioned(
        &self,
        tenant: &TenantId,
        family_id: &str,
    ) -> Result<Option<Versioned<FamilyRecord>>, DocumentError> {
        if DocumentId::parse(family_id).is_err() {
            return Ok(None);
        }
        self.get(tenant, &self.c.families, family_id).await
    }

    /// Replaces a family if nobody changed it since it was read (a refresh's one write).
    pub async fn replace_family(
        &self,
        tenant: &TenantId,
        family_id: &str,
        family: &Versioned<FamilyRecord>,
    ) -> Result<(), DocumentError> {
        let replaced = self
            .replace(
                tenant,
                &self.c.families,
                family_id,
                &family.record,
                Some(family.version),
            )
            .await;
        if family.record.revoked {
            self.revoked_something(tenant);
        }
        replaced
    }

    /// Revokes every token of a family. Idempotent; a missing family is created revoked, so a
    /// token naming it can never become valid.
    pub async fn revoke_family(
        &self,
        tenant: &TenantId,
        family_id: &str,
        fallback: FamilyRecord,
    ) -> Result<(), DocumentError> {
        let mut family = self
            .get::<FamilyRecord>(tenant, &self.c.families, family_id)
            .await?
            .map_or(fallback, |versioned| versioned.record);
        family.revoked = true;
        let replaced = self
            .replace(tenant, &self.c.families, family_id, &family, None)
            .await;
        self.revoked_something(tenant);
        replaced
    }

    // Revoked access tokens, by jti, kept until they would have expired anyway.

    pub async fn revoke_jti(
        &self,
        tenant: &TenantId,
        jti: &str,
        expires_at: UnixMillis,
    ) -> Result<(), DocumentError> {
        let replaced = self
            .replace(
                tenant,
                &self.c.revoked,
                jti,
                &RevokedRecord { expires_at },
                None,
            )
            .await;
        self.revoked_something(tenant);
        replaced
    }

    pub async fn is_jti_revoked(
        &self,
        tenant: &TenantId,
        jti: &str,
    ) -> Result<bool, DocumentError> {
        if DocumentId::parse(jti).is_err() {
            return Ok(true);
        }
        Ok(self
            .get::<RevokedRecord>(tenant, &self.c.revoked, jti)
            .await?
            .is_some())
    }

    // Browser sessions at the authorization server, keyed by the SHA-256 of the cookie value.

    pub async fn insert_session(
        &self,
        tenant: &TenantId,
        session_hash: &str,
        session: &SessionRecord,
    ) -> Result<(), DocumentError> {
        self.insert(tenant, &self.c.sessions, session_hash, session)
            .await
    }

    pub async fn session(
        &self,
        tenant: &TenantId,
        session_hash: &str,
    ) -> Result<Option<SessionRecord>, DocumentError> {
        Ok(self
            .get(tenant, &self.c.sessions, session_hash)
            .await?
            .map(|versioned| versioned.record))
    }

    pub async fn delete_session(
        &self,
        tenant: &TenantId,
        session_hash: &str,
    ) -> Result<(), DocumentError> {
        self.documents
            .delete(tenant, &self.c.sessions, &id(session_hash)?, None)
            .await
            .map(|_| ())
    }

    /// Ends every sign-in session of a user (after a password change).
    pub async fn delete_sessions_of(
        &self,
        tenant: &TenantId,
        user_id: &str,
    ) -> Result<(), DocumentError> {
        let value = serde_json::Value::from(user_id);
        loop {
            let sessions = self
                .documents
                .find_by_field(tenant, &self.c.sessions, "userId", &value, 100)
                .await?;
            if sessions.is_empty() {
                return Ok(());
            }
            for session in sessions {
                self.documents
                    .delete(tenant, &self.c.sessions, &session.id, None)
                    .await?;
            }
        }
    }

    /// Revokes every token family of a user (after a password change).
    pub async fn revoke_families_of(
        &self,
        tenant: &TenantId,
        user_id: &str,
    ) -> Result<(), DocumentError> {
        let families = self
            .documents
            .find_by_field(
                tenant,
                &self.c.families,
                "userId",
                &serde_json::Value::from(user_id),
                openframe_storage::documents::MAX_LIST,
            )
            .await?;
        for document in families {
            let mut family: Versioned<FamilyRecord> = decode(document.clone())?;
            if !family.record.revoked {
                family.record.revoked = true;
                self.replace(
                    tenant,
                    &self.c.families,
                    document.id.as_str(),
                    &family.record,
                    None,
                )
                .await?;
                self.revoked_something(tenant);
            }
        }
        Ok(())
    }

    // Invitations.

    pub async fn insert_invitation(
        &self,
        tenant: &TenantId,
        invitation: &InvitationRecord,
    ) -> Result<(), DocumentError> {
        self.insert(tenant, &self.c.invitations, &invitation.id, invitation)
            .await
    }

    pub async fn invitation(
        &self,
        tenant: &TenantId,
        id: &str,
    ) -> Result<Option<Versioned<InvitationRecord>>, DocumentError> {
        if DocumentId::parse(id).is_err() {
            return Ok(None);
        }
        self.get(tenant, &self.c.invitations, id).await
    }

    /// The invitation whose link secret hashes to `token_hash`.
    pub async fn invitation_by_token(
        &self,
        tenant: &TenantId,
        token_hash: &str,
    ) -> Result<Option<Versioned<InvitationRecord>>, DocumentError> {
        let found = self
            .documents
            .find_by_field(
                tenant,
                &self.c.invitations,
                "tokenHash",
                &serde_json::Value::from(token_hash),
                1,
            )
            .await?;
        found.into_iter().next().map(decode).transpose()
    }

    pub async fn replace_invitation(
        &self,
        tenant: &TenantId,
        invitation: &Versioned<InvitationRecord>,
    ) -> Result<(), DocumentError> {
        self.replace(
            tenant,
            &self.c.invitations,
            &invitation.record.id,
            &invitation.record,
            Some(invitation.version),
        )
        .await
    }

    pub async fn invitations(
        &self,
        tenant: &TenantId,
    ) -> Result<Vec<InvitationRecord>, DocumentError> {
        self.documents
            .list(
                tenant,
                &self.c.invitations,
                None,
                openframe_storage::documents::MAX_LIST,
            )
            .await?
            .into_iter()
            .map(|document| {
                decode(document).map(|versioned: Versioned<InvitationRecord>| versioned.record)
            })
            .collect()
    }

    // Password resets.

    pub async fn insert_reset(
        &self,
        tenant: &TenantId,
        token_hash: &str,
        reset: &ResetRecord,
    ) -> Result<(), DocumentError> {
        self.insert(tenant, &self.c.resets, token_hash, reset).await
    }

    pub async fn reset(
        &self,
        tenant: &TenantId,
        token_hash: &str,
    ) -> Result<Option<Versioned<ResetRecord>>, DocumentError> {
        self.get(tenant, &self.c.resets, token_hash).await
    }

    pub async fn spend_reset(
        &self,
        tenant: &TenantId,
        token_hash: &str,
        reset: &Versioned<ResetRecord>,
    ) -> Result<(), DocumentError> {
        let mut spent = reset.record.clone();
        spent.used = true;
        self.replace(
            tenant,
            &self.c.resets,
            token_hash,
            &spent,
            Some(reset.version),
        )
        .await
    }

    /// Deletes what can no longer be used: codes, sessions, reset links and revocation markers
    /// whose `expiresAt` has passed, and token families past their `purgeAt`. Returns how many
    /// records went.
    pub async fn sweep_expired(
        &self,
        tenant: &TenantId,
        now: UnixMillis,
    ) -> Result<u64, DocumentError> {
        let mut removed = 0;
        for (collection, field) in [
            (&self.c.codes, "expiresAt"),
            (&self.c.families, "purgeAt"),
            (&self.c.sessions, "expiresAt"),
            (&self.c.resets, "expiresAt"),
            (&self.c.revoked, "expiresAt"),
            (&self.c.outbox, "expiresAt"),
        ] {
            let mut after: Option<DocumentId> = None;
            loop {
                let page = self
                    .documents
                    .list(tenant, collection, after.as_ref(), 500)
                    .await?;
                let Some(last) = page.last() else { break };
                after = Some(last.id.clone());
                let full = page.len() == 500;
                for document in page {
                    let expired = document.body[field].as_i64().is_some_and(|at| at <= now);
                    if expired
                        && self
                            .documents
                            .delete(tenant, collection, &document.id, Some(document.version))
                            .await?
                    {
                        removed += 1;
                    }
                }
                if !full {
                    break;
                }
            }
        }
        Ok(removed)
    }
}
