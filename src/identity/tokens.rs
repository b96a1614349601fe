//! Issuing, verifying and revoking tokens: the grants of RFC 6749 (authorization code with
//! PKCE, refresh with rotation, client credentials), introspection (RFC 7662) and revocation
//! (RFC 7009). No HTTP here; [`super::http`] parses requests and renders answers.
//!
//! Refresh tokens rotate: each use returns a new one and spends the old. Presenting a spent one
//! means two parties hold the chain (one of them a thief), so the whole family (every refresh
//! and access token descending from that sign-in) is revoked. Access tokens name their family
//! in `sid`, so the revocation reaches them too.

use openframe_storage::error::DocumentError;
use openframe_storage::model::{TenantId, UnixMillis};
use serde::{Deserialize, Serialize};

use super::crypto::{b64url, random_token, random_uuid, sha256, sha256_hex};
use super::jwt::JwtError;
use super::keys::VerifyError;
use super::store::{ClientRecord, CodeRecord, FamilyRecord, SPENT_KEPT, UserRecord, Versioned};
use super::{Identity, IdentityError, rules};
use crate::domain::Role;

/// The longest a sign-in lasts however often its refresh token is used: 30 days.
pub const MAX_FAMILY_AGE_MS: i64 = 30 * 24 * 3600 * 1000;

/// Clock skew tolerated when checking `exp`, `nbf` and `iat`.
pub const LEEWAY_SECONDS: i64 = 30;

/// How long the browser's cookie refresh (`/oauth/refresh`) accepts the secret spent last once
/// more. A navigation can cancel a refresh after the appliance rotated but before the browser
/// stored the new cookie; the page that loads next presents the spent secret. Within this
/// window that is a lost answer, not a thief: the family rotates again. After it, or for any
/// older secret, it is reuse and the family is revoked. The token endpoint has no grace.
pub const BROWSER_RETRY_GRACE_MS: i64 = 10_000;

/// An RFC 6749 §5.2 error: a registered code and a description for the developer.
#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    #[error("{code}: {description}")]
    Rejected {
        code: &'static str,
        description: String,
    },
    #[error("a store is unavailable: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Unexpected(anyhow::Error),
}

impl OAuthError {
    pub fn new(code: &'static str, description: impl Into<String>) -> OAuthError {
        OAuthError::Rejected {
            code,
            description: description.into(),
        }
    }

    pub fn invalid_grant(description: impl Into<String>) -> OAuthError {
        Self::new("invalid_grant", description)
    }
}

impl From<IdentityError> for OAuthError {
    fn from(error: IdentityError) -> Self {
        match error {
            IdentityError::InvalidTenant(tenant) => Self::new(
                "invalid_tenant",
                format!("tenant {tenant:?} does not exist or is not active"),
            ),
            IdentityError::Invalid(invalid) => Self::new("invalid_request", invalid.to_string()),
            IdentityError::Unavailable(detail) => OAuthError::Unavailable(detail),
            other => OAuthError::Unexpected(anyhow::anyhow!(other)),
        }
    }
}

impl From<openframe_storage::error::DocumentError> for OAuthError {
    fn from(error: openframe_storage::error::DocumentError) -> Self {
        IdentityError::from(error).into()
    }
}

impl From<anyhow::Error> for OAuthError {
    fn from(error: anyhow::Error) -> Self {
        OAuthError::Unexpected(error)
    }
}

/// `aud` is a string or an array of strings (RFC 7519 §4.1.3).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    pub fn contains(&self, value: &str) -> bool {
        match self {
            Audience::One(one) => one == value,
            Audience::Many(many) => many.iter().any(|one| one == value),
        }
    }
}

/// The claims of an access token: Spring Authorization Server's, plus OpenFrame's `tenant_id`,
/// `userId` and `roles`, which the gateway and APIs read.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AccessClaims {
    pub iss: String,
    /// The user's email (as OpenFrame does), or the client id for client credentials.
    pub sub: String,
    pub aud: Audience,
    pub exp: i64,
    pub iat: i64,
    pub nbf: i64,
    pub jti: String,
    #[serde(default)]
    pub scope: String,
    pub client_id: String,
    pub tenant_id: String,
    #[serde(rename = "userId", default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(default)]
    pub roles: Vec<String>,
    /// The token family (one sign-in); revoking it revokes this token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

/// A successful token response (RFC 6749 §5.1).
#[derive(Debug, Clone, Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: u64,
    pub scope: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
}

/// What the authorize endpoint hands to [`Identity::issue_code`].
#[derive(Debug, Clone)]
pub struct CodeRequest {
    pub client_id: String,
    pub user_id: String,
    pub redirect_uri: String,
    pub scope: Vec<String>,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub auth_time: UnixMillis,
}

/// Why an access token was refused, for `WWW-Authenticate` and logs.
#[derive(Debug, thiserror::Error)]
pub enum TokenRejected {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Failed(#[from] OAuthError),
}

fn to_seconds(millis: UnixMillis) -> i64 {
    millis.div_euclid(1000)
}

fn ttl_ms(duration: std::time::Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// Left half of the SHA-256 of the access token, base64url: OIDC Core §3.1.3.6 `at_hash`.
pub fn at_hash(access_token: &str) -> String {
    let digest = sha256(access_token.as_bytes());
    b64url(&digest[..digest.len() / 2])
}

impl Identity {
    /// Stores a fresh authorization code and returns it; only its hash is kept.
    pub async fn issue_code(
        &self,
        tenant: &TenantId,
        request: CodeRequest,
    ) -> Result<String, IdentityError> {
        let code = random_token()?;
        let record = CodeRecord {
            client_id: request.client_id,
            user_id: request.user_id,
            redirect_uri: request.redirect_uri,
            scope: request.scope.join(" "),
            nonce: request.nonce,
            code_challenge: request.code_challenge,
            auth_time: request.auth_time,
            expires_at: self.clock.now_ms() + ttl_ms(self.settings.code_ttl),
            family: None,
        };
        self.store
            .insert_code(tenant, &sha256_hex(code.as_bytes()), &record)
            .await?;
        Ok(code)
    }

    /// The authorization_code grant.
    pub async fn redeem_code(
        &self,
        tenant: &TenantId,
        client: &ClientRecord,
        code: &str,
        redirect_uri: Option<&str>,
        code_verifier: Option<&str>,
    ) -> Result<TokenResponse, OAuthError> {
        let hash = sha256_hex(code.as_bytes());
        let unknown = || {
            OAuthError::invalid_grant(
                "the authorization code is invalid, expired or was issued to another client",
            )
        };
        let Some(stored) = self.store.code(tenant, &hash).await? else {
            return Err(unknown());
        };
        let now = self.clock.now_ms();
        if stored.record.client_id != client.client_id {
            return Err(unknown());
        }
        if let Some(family) = &stored.record.family {
            self.revoke_family(
                tenant,
                family,
                &stored.record.client_id,
                &stored.record.user_id,
            )
            .await?;
            self.security_event(
                "code_replayed",
                Some(tenant),
                &[("client_id", client.client_id.clone())],
            );
            tracing::warn!(
                tenant = tenant.as_str(),
                client_id = %client.client_id,
                "an authorization code was presented twice; the tokens issued from it are revoked"
            );
            return Err(OAuthError::invalid_grant(
                "the authorization code was already used; the tokens issued from it have been revoked",
            ));
        }
        if stored.record.expires_at <= now {
            return Err(unknown());
        }
        if redirect_uri != Some(stored.record.redirect_uri.as_str()) {
            return Err(OAuthError::invalid_grant(
                "redirect_uri must be the one sent to the authorization endpoint",
            ));
        }
        match (&stored.record.code_challenge, code_verifier) {
            (Some(challenge), Some(verifier)) if rules::pkce_matches(verifier, challenge) => {}
            (Some(_), Some(_)) => {
                return Err(OAuthError::invalid_grant(
                    "code_verifier does not match the code_challenge",
                ));
            }
            (Some(_), None) => {
                return Err(OAuthError::invalid_grant(
                    "code_verifier is required: the authorization request used PKCE",
                ));
            }
            (None, Some(_)) => {
                return Err(OAuthError::invalid_grant(
                    "code_verifier was sent but the authorization request had no code_challenge",
                ));
            }
            (None, None) => {}
        }

        let family_id = random_uuid()?;
        let refresh_secret = if client.allows_grant("refresh_token") {
            Some(random_token()?)
        } else {
            None
        };
        let access_ttl = ttl_ms(self.settings.access_ttl);
        let expires_at = if refresh_secret.is_some() {
            now + ttl_ms(self.settings.refresh_ttl)
        } else {
            now + access_ttl
        };
        let family = FamilyRecord {
            client_id: client.client_id.clone(),
            user_id: stored.record.user_id.clone(),
            revoked: false,
            created_at: now,
            scope: stored.record.scope.clone(),
            auth_time: stored.record.auth_time,
            current_hash: refresh_secret
                .as_deref()
                .map(|secret| sha256_hex(secret.as_bytes())),
            spent_hashes: Vec::new(),
            rotated_at: 0,
            expires_at,
            purge_at: expires_at + access_ttl,
        };
        self.store
            .insert_family(tenant, &family_id, &family)
            .await?;
        let mut redeemed = stored.clone();
        redeemed.record.family = Some(family_id.clone());
        match self.store.redeem_code(tenant, &hash, &redeemed).await {
            Ok(()) => {}
            Err(DocumentError::VersionConflict { .. }) => {
                return Err(self
                    .code_raced(tenant, client, &hash, &family_id, family)
                    .await);
            }
            Err(other) => return Err(other.into()),
        }

        let user = self.active_user(tenant, &stored.record.user_id).await?;
        let scope: Vec<String> = stored
            .record
            .scope
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        let mut response = self
            .mint(tenant, client, Some(&user), &scope, Some(&family_id))
            .await?;
        if scope.iter().any(|s| s == "openid") {
            response.id_token = Some(
                self.id_token(
                    tenant,
                    client,
                    &user,
                    stored.record.nonce.as_deref(),
                    stored.record.auth_time,
                    &response.access_token,
                )
                .await?,
            );
        }
        response.refresh_token = refresh_secret.map(|secret| format!("{family_id}.{secret}"));
        self.touch_last_login(tenant, &user.id).await;
        Ok(response)
    }

    /// The refresh_token grant, with rotation and reuse detection.
    pub async fn refresh(
        &self,
        tenant: &TenantId,
        client: &ClientRecord,
        refresh_token: &str,
        requested_scope: Option<&str>,
    ) -> Result<TokenResponse, OAuthError> {
        self.rotate(tenant, client, refresh_token, requested_scope, 0)
            .await
    }

    /// The browser's refresh through its cookie: as [`Self::refresh`], except that the secret
    /// spent last is accepted once more within [`BROWSER_RETRY_GRACE_MS`] of its rotation.
    pub async fn refresh_from_browser(
        &self,
        tenant: &TenantId,
        client: &ClientRecord,
        refresh_token: &str,
    ) -> Result<TokenResponse, OAuthError> {
        self.rotate(tenant, client, refresh_token, None, BROWSER_RETRY_GRACE_MS)
            .await
    }

    async fn rotate(
        &self,
        tenant: &TenantId,
        client: &ClientRecord,
        refresh_token: &str,
        requested_scope: Option<&str>,
        grace_ms: i64,
    ) -> Result<TokenResponse, OAuthError> {
        let invalid =
            || OAuthError::invalid_grant("the refresh token is invalid, expired or revoked");
        let Some((family_id, secret)) = refresh_token.split_once('.') else {
            return Err(invalid());
        };
        let Some(mut family) = self.store.family_versioned(tenant, family_id).await? else {
            return Err(invalid());
        };
        if family.record.client_id != client.client_id || family.record.revoked {
            return Err(invalid());
        }
        let presented = sha256_hex(secret.as_bytes());
        let now = self.clock.now_ms();
        if family.record.current_hash.as_deref() != Some(presented.as_str()) {
            let answer_lost = family.record.spent_hashes.last() == Some(&presented)
                && now - family.record.rotated_at <= grace_ms;
            if !answer_lost {
                if family.record.spent_hashes.contains(&presented) {
                    return Err(self
                        .refresh_reused(tenant, client, family_id, &family.record)
                        .await);
                }
                return Err(invalid());
            }
        }
        if family.record.expires_at <= now {
            return Err(invalid());
        }
        let original: Vec<String> = family
            .record
            .scope
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        let scope = match requested_scope {
            Some(requested) => rules::parse_scope(requested, &original).map_err(|_| {
                OAuthError::new(
                    "invalid_scope",
                    "a refresh may only narrow the scope originally granted",
                )
            })?,
            None => original,
        };
        let user = self.active_user(tenant, &family.record.user_id).await?;
        if family.record.created_at < user.tokens_not_before {
            return Err(invalid());
        }

        // Rotate: one versioned write spends the live secret (the presented one, or after a lost
        // answer the one that answer carried) and stores the next one.
        let next = random_token()?;
        let read = family.record.clone();
        let record = &mut family.record;
        if let Some(live) = record.current_hash.take() {
            record.spent_hashes.push(live);
        }
        record.rotated_at = now;
        if record.spent_hashes.len() > SPENT_KEPT {
            let excess = record.spent_hashes.len() - SPENT_KEPT;
            record.spent_hashes.drain(..excess);
        }
        record.current_hash = Some(sha256_hex(next.as_bytes()));
        // Each use slides the expiry, but never past the family's absolute lifetime: a thief
        // who keeps refreshing cannot keep a sign-in alive forever.
        record.expires_at =
            (now + ttl_ms(self.settings.refresh_ttl)).min(record.created_at + MAX_FAMILY_AGE_MS);
        record.purge_at = record.expires_at + ttl_ms(self.settings.access_ttl);
        match self.store.replace_family(tenant, family_id, &family).await {
            Ok(()) => {}
            // Spent concurrently by someone else: the same signal as reuse.
            Err(DocumentError::VersionConflict { .. }) => {
                return Err(self.refresh_reused(tenant, client, family_id, &read).await);
            }
            Err(other) => return Err(other.into()),
        }
        let mut response = self
            .mint(tenant, client, Some(&user), &scope, Some(family_id))
            .await?;
        response.refresh_token = Some(format!("{family_id}.{next}"));
        Ok(response)
    }

    /// Someone redeemed the code between our read and our write: a replay race. Both lose:
    /// the family we were about to fill, and the winner's.
    async fn code_raced(
        &self,
        tenant: &TenantId,
        client: &ClientRecord,
        code_hash: &str,
        our_family: &str,
        family: FamilyRecord,
    ) -> OAuthError {
        let revoked = async {
            let user_id = family.user_id.clone();
            self.store.revoke_family(tenant, our_family, family).await?;
            if let Some(winner) = self
                .store
                .code(tenant, code_hash)
                .await?
                .and_then(|c| c.record.family)
            {
                self.revoke_family(tenant, &winner, &client.client_id, &user_id)
                    .await?;
            }
            Ok::<(), OAuthError>(())
        };
        if let Err(error) = revoked.await {
            return error;
        }
        tracing::warn!(tenant = tenant.as_str(), client_id = %client.client_id, "an authorization code was redeemed concurrently");
        OAuthError::invalid_grant("the authorization code was already used")
    }

    /// A spent refresh token came back: two parties hold the chain, so the family is revoked.
    async fn refresh_reused(
        &self,
        tenant: &TenantId,
        client: &ClientRecord,
        family_id: &str,
        family: &FamilyRecord,
    ) -> OAuthError {
        if let Err(error) = self
            .revoke_family(tenant, family_id, &client.client_id, &family.user_id)
            .await
        {
            return error;
        }
        self.security_event(
            "refresh_reused",
            Some(tenant),
            &[("client_id", client.client_id.clone())],
        );
        tracing::warn!(
            tenant = tenant.as_str(),
            client_id = %client.client_id,
            "a spent refresh token was presented again; its whole family is revoked"
        );
        OAuthError::invalid_grant(
            "the refresh token was already used; every token from this sign-in has been revoked",
        )
    }

    /// The client_credentials grant: a token for the client itself, no user.
    pub async fn client_credentials(
        &self,
        tenant: &TenantId,
        client: &ClientRecord,
        requested_scope: Option<&str>,
    ) -> Result<TokenResponse, OAuthError> {
        let allowed: Vec<String> = client
            .scopes
            .iter()
            .filter(|scope| !matches!(scope.as_str(), "openid" | "offline_access"))
            .cloned()
            .collect();
        let scope = rules::parse_scope(requested_scope.unwrap_or(""), &allowed)
            .map_err(|problem| OAuthError::new("invalid_scope", problem))?;
        self.mint(tenant, client, None, &scope, None).await
    }

    async fn active_user(
        &self,
        tenant: &TenantId,
        user_id: &str,
    ) -> Result<UserRecord, OAuthError> {
        match self.store.user(tenant, user_id).await? {
            Some(user) if user.record.is_active() => Ok(user.record),
            _ => Err(OAuthError::invalid_grant(
                "the user no longer exists or is disabled",
            )),
        }
    }

    async fn touch_last_login(&self, tenant: &TenantId, user_id: &str) {
        // Best effort: a lost race with another update only loses a timestamp.
        if let Ok(Some(mut user)) = self.store.user(tenant, user_id).await {
            user.record.last_login = Some(self.clock.now_ms());
            let _ = self.store.touch_user(tenant, &user).await;
        }
    }

    async fn mint(
        &self,
        tenant: &TenantId,
        client: &ClientRecord,
        user: Option<&UserRecord>,
        scope: &[String],
        family: Option<&str>,
    ) -> Result<TokenResponse, OAuthError> {
        let now = to_seconds(self.clock.now_ms());
        let ttl = self.settings.access_ttl.as_secs();
        let roles = user.map_or_else(Vec::new, |user| {
            let parsed: Vec<Role> = user
                .roles
                .iter()
                .filter_map(|r| Role::parse(r).ok())
                .collect();
            Role::effective(&parsed)
                .iter()
                .map(|role| role.as_str().to_owned())
                .collect()
        });
        let claims = AccessClaims {
            iss: self.issuer(tenant),
            sub: user.map_or_else(|| client.client_id.clone(), |user| user.email.clone()),
            aud: Audience::One(client.client_id.clone()),
            exp: now + i64::try_from(ttl).unwrap_or(i64::MAX / 2),
            iat: now,
            nbf: now,
            jti: random_uuid()?,
            scope: scope.join(" "),
            client_id: client.client_id.clone(),
            tenant_id: tenant.as_str().to_owned(),
            user_id: user.map(|user| user.id.clone()),
            roles,
            sid: family.map(str::to_owned),
            email: user.map(|user| user.email.clone()),
        };
        let access_token = self.keys.sign(tenant, &claims).await?;
        Ok(TokenResponse {
            access_token,
            token_type: "Bearer",
            expires_in: ttl,
            scope: scope.join(" "),
            refresh_token: None,
            id_token: None,
        })
    }

    async fn id_token(
        &self,
        tenant: &TenantId,
        client: &ClientRecord,
        user: &UserRecord,
        nonce: Option<&str>,
        auth_time: UnixMillis,
        access_token: &str,
    ) -> Result<String, OAuthError> {
        let now = to_seconds(self.clock.now_ms());
        let ttl = i64::try_from(self.settings.access_ttl.as_secs()).unwrap_or(i64::MAX / 2);
        let name = format!("{} {}", user.first_name, user.last_name)
            .trim()
            .to_owned();
        let mut claims = serde_json::json!({
            "iss": self.issuer(tenant),
            "sub": user.email,
            "aud": client.client_id,
            "azp": client.client_id,
            "exp": now + ttl,
            "iat": now,
            "auth_time": to_seconds(auth_time),
            "at_hash": at_hash(access_token),
            "email": user.email,
            "email_verified": user.email_verified,
            "tenant_id": tenant.as_str(),
            "userId": user.id,
        });
        if let Some(nonce) = nonce {
            claims["nonce"] = nonce.into();
        }
        if !name.is_empty() {
            claims["name"] = name.into();
        }
        Ok(self.keys.sign(tenant, &claims).await?)
    }

    async fn revoke_family(
        &self,
        tenant: &TenantId,
        family: &str,
        client_id: &str,
        user_id: &str,
    ) -> Result<(), OAuthError> {
        let now = self.clock.now_ms();
        let fallback = FamilyRecord {
            client_id: client_id.to_owned(),
            user_id: user_id.to_owned(),
            revoked: true,
            created_at: now,
            purge_at: now + ttl_ms(self.settings.refresh_ttl) + ttl_ms(self.settings.access_ttl),
            ..FamilyRecord::default()
        };
        Ok(self.store.revoke_family(tenant, family, fallback).await?)
    }

    /// Verifies an access token of this tenant completely: signature with a published key of
    /// this tenant, issuer, tenant, lifetime, audience (a client of this tenant) and revocation.
    pub async fn verify_access_token(
        &self,
        tenant: &TenantId,
        token: &str,
    ) -> Result<AccessClaims, TokenRejected> {
        Ok(self.verify_user_token(tenant, token).await?.0)
    }

    /// [`Self::verify_access_token`], also returning the token's user as checking found it
    /// (`None` for a client's own token), so callers that need the user read it once.
    pub async fn verify_user_token(
        &self,
        tenant: &TenantId,
        token: &str,
    ) -> Result<(AccessClaims, Option<UserRecord>), TokenRejected> {
        let claims: AccessClaims =
            self.keys
                .verify(tenant, token)
                .await
                .map_err(|error| match error {
                    VerifyError::Token(JwtError::Claims(_)) => TokenRejected::Invalid(
                        "the token is not an access token of this issuer".into(),
                    ),
                    VerifyError::Token(error) => TokenRejected::Invalid(error.to_string()),
                    VerifyError::Unexpected(error) => {
                        TokenRejected::Failed(OAuthError::Unexpected(error))
                    }
                })?;
        let user = self.check_claims(tenant, &claims).await?;
        Ok((claims, user))
    }

    async fn check_claims(
        &self,
        tenant: &TenantId,
        claims: &AccessClaims,
    ) -> Result<Option<UserRecord>, TokenRejected> {
        let invalid = |why: &str| Err(TokenRejected::Invalid(why.to_owned()));
        if claims.iss != self.issuer(tenant) {
            return invalid("the token was issued by another issuer");
        }
        if claims.tenant_id != tenant.as_str() {
            return invalid("the token belongs to another tenant");
        }
        let now = to_seconds(self.clock.now_ms());
        if claims.exp <= now - LEEWAY_SECONDS {
            return invalid("the token has expired");
        }
        if claims.nbf > now + LEEWAY_SECONDS || claims.iat > now + LEEWAY_SECONDS {
            return invalid("the token is not valid yet");
        }
        if !claims.aud.contains(&claims.client_id)
            || self
                .client(tenant, &claims.client_id)
                .await
                .map_err(OAuthError::from)?
                .is_none()
        {
            return invalid("the token's audience is not a client of this tenant");
        }
        if self
            .store
            .is_jti_revoked(tenant, &claims.jti)
            .await
            .map_err(OAuthError::from)?
        {
            return invalid("the token has been revoked");
        }
        if let Some(family) = &claims.sid {
            let family = self
                .store
                .family(tenant, family)
                .await
                .map_err(OAuthError::from)?;
            if family.is_none_or(|family| family.revoked) {
                return invalid("the token has been revoked");
            }
        }
        // A user's token lives only as long as the user does, as an active user, and not past
        // a password reset.
        let Some(user_id) = &claims.user_id else {
            return Ok(None);
        };
        let user = self
            .store
            .user(tenant, user_id)
            .await
            .map_err(OAuthError::from)?;
        match user {
            Some(user) if user.record.is_active() => {
                if claims.iat.saturating_mul(1000) < user.record.tokens_not_before - 999 {
                    return invalid("the token has been revoked");
                }
                Ok(Some(user.record))
            }
            _ => invalid("the token's user no longer exists or is disabled"),
        }
    }

    /// RFC 7662 introspection, answered only about tokens issued to the asking client.
    pub async fn introspect(
        &self,
        tenant: &TenantId,
        caller: &ClientRecord,
        token: &str,
    ) -> Result<serde_json::Value, OAuthError> {
        let inactive = serde_json::json!({ "active": false });
        if token.matches('.').count() == 2 {
            return match self.verify_access_token(tenant, token).await {
                Ok(claims) if claims.client_id == caller.client_id => {
                    let mut answer = serde_json::json!({
                        "active": true,
                        "token_type": "Bearer",
                        "scope": claims.scope,
                        "client_id": claims.client_id,
                        "sub": claims.sub,
                        "aud": claims.aud,
                        "iss": claims.iss,
                        "exp": claims.exp,
                        "iat": claims.iat,
                        "nbf": claims.nbf,
                        "jti": claims.jti,
                        "tenant_id": claims.tenant_id,
                        "roles": claims.roles,
                    });
                    if let Some(user_id) = claims.user_id {
                        answer["userId"] = user_id.into();
                        answer["username"] = claims.sub.clone().into();
                    }
                    Ok(answer)
                }
                Ok(_) | Err(TokenRejected::Invalid(_)) => Ok(inactive),
                Err(TokenRejected::Failed(error)) => Err(error),
            };
        }
        let Some((_, record, state)) = self.refresh_family(tenant, token).await? else {
            return Ok(inactive);
        };
        let live = state == RefreshState::Live && record.expires_at > self.clock.now_ms();
        if !live || record.client_id != caller.client_id {
            return Ok(inactive);
        }
        let username = self
            .store
            .user(tenant, &record.user_id)
            .await?
            .map(|user: Versioned<UserRecord>| user.record.email);
        Ok(serde_json::json!({
            "active": true,
            "token_type": "refresh_token",
            "scope": record.scope,
            "client_id": record.client_id,
            "username": username,
            "userId": record.user_id,
            "exp": to_seconds(record.expires_at),
            "iss": self.issuer(tenant),
            "tenant_id": tenant.as_str(),
        }))
    }

    /// RFC 7009 revocation. Unknown tokens and other clients' tokens are ignored, as the RFC
    /// asks, so the endpoint reveals nothing.
    pub async fn revoke(
        &self,
        tenant: &TenantId,
        caller: &ClientRecord,
        token: &str,
    ) -> Result<(), OAuthError> {
        if token.matches('.').count() == 2 {
            let claims: AccessClaims = match self.keys.verify(tenant, token).await {
                Ok(claims) => claims,
                Err(VerifyError::Unexpected(error)) => return Err(OAuthError::Unexpected(error)),
                Err(VerifyError::Token(_)) => return Ok(()),
            };
            if claims.client_id != caller.client_id || claims.iss != self.issuer(tenant) {
                return Ok(());
            }
            self.store
                .revoke_jti(tenant, &claims.jti, claims.exp.saturating_mul(1000))
                .await?;
            return Ok(());
        }
        if let Some((family_id, record, _)) = self.refresh_family(tenant, token).await?
            && record.client_id == caller.client_id
        {
            self.revoke_family(tenant, &family_id, &caller.client_id, &record.user_id)
                .await?;
        }
        Ok(())
    }

    /// The family a refresh token names, if the token is one of its secrets (live or spent);
    /// `None` for anything else.
    async fn refresh_family(
        &self,
        tenant: &TenantId,
        token: &str,
    ) -> Result<Option<(String, FamilyRecord, RefreshState)>, OAuthError> {
        let Some((family_id, secret)) = token.split_once('.') else {
            return Ok(None);
        };
        let Some(family) = self.store.family(tenant, family_id).await? else {
            return Ok(None);
        };
        let presented = sha256_hex(secret.as_bytes());
        let state = if family.revoked {
            RefreshState::Revoked
        } else if family.current_hash.as_deref() == Some(presented.as_str()) {
            RefreshState::Live
        } else if family.spent_hashes.contains(&presented) {
            RefreshState::Spent
        } else {
            return Ok(None);
        };
        Ok(Some((family_id.to_owned(), family, state)))
    }
}

/// Where a presented refresh token stands in its family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RefreshState {
    Live,
    Spent,
    Revoked,
}
