//! Who may call what. Every request passes [`authorize`]: the path decides the [`Access`] it
//! needs (OpenFrame's rules), the credential is found and verified here, once, and the verified
//! caller travels to the handler as a typed request extension ([`Principal`] or
//! [`super::api_keys::KeyCaller`]). Handlers take [`Admin`], [`Agent`] or [`Caller`] as
//! extractors, so a handler cannot run without a verified tenant.
//!
//! Tokens are accepted from, in order: `Authorization: Bearer`, the `access_token` cookie, the
//! `Access-Token` header, and (WebSocket upgrades only) the `authorization` query parameter.
//! The issuer must be `{public_url}/sas/{tenant}` of an active tenant, or the agent issuer; keys
//! come from the in-process key ring, pinned to RS256.
//!
//! Full verification reads the store (client, revocations, family, user). A verified token is
//! therefore remembered for a short while: until it expires, at most
//! `gateway.token_cache_seconds`, and only while nothing has been revoked in this process. The
//! cache is found by the token's last 32 characters (the end of its signature: random, and
//! unknown to anyone without the token) and a hit needs the whole token to be equal, so a
//! lookup costs one comparison instead of hashing a kilobyte on every request.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use openframe_storage::model::TenantId;

use crate::domain::Role;
use crate::error::ApiError;
use crate::identity::crypto::{b64url_decode, constant_time_eq, sha256};
use crate::identity::tokens::TokenRejected;
use crate::identity::{GATEWAY_CLIENT_ID, Identity};
use crate::startup::AppState;

/// The scope of paths any valid API key may call.
pub const ANY_SCOPE: &str = "*";

/// What a path requires at the edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone (identity, the UI, health, agent bootstrap): the handler decides.
    Open,
    /// A signed-in administrator of a tenant.
    Admin,
    /// An endpoint agent.
    Agent,
    /// An agent or an administrator (`/ws/nats`).
    AgentOrAdmin,
    /// Any valid access token (`/internal/authz/probe`).
    AnyToken,
    /// An API key holding `scope`.
    ApiKey { scope: &'static str },
}

fn under(path: &str, prefix: &str) -> bool {
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// OpenFrame's path rules (reference §4.5), plus API-key scopes, which OpenFrame stores but never
/// enforces: a resource's `:read` scope for GET and HEAD, its `:write` scope otherwise.
pub fn access_for(method: &Method, path: &str) -> Access {
    if method == Method::OPTIONS {
        return Access::Open;
    }
    if under(path, "/api") {
        return Access::Admin;
    }
    if under(path, "/clients") {
        let bootstrap = [
            "/clients/api/agents/register",
            "/clients/api/agents/reinstall",
            "/clients/api/agents/uninstall",
            "/clients/api/release-version",
            "/clients/oauth/token",
        ];
        let open = bootstrap.contains(&path)
            || under(path, "/clients/tool-agent")
            || under(path, "/clients/metrics");
        return if open { Access::Open } else { Access::Agent };
    }
    if under(path, "/tools/agent") || under(path, "/ws/tools/agent") {
        return Access::Agent;
    }
    if under(path, "/tools") || under(path, "/ws/tools") {
        return Access::Admin;
    }
    if path == "/ws/nats" || path == "/ws/nats-api" {
        return Access::AgentOrAdmin;
    }
    if path == "/internal/authz/probe" {
        return Access::AnyToken;
    }
    if under(path, "/ingest") {
        return Access::ApiKey { scope: "ingest" };
    }
    if let Some(rest) = path.strip_prefix("/external-api/api/v1/") {
        let read = matches!(*method, Method::GET | Method::HEAD);
        let scope = match rest.split('/').next().unwrap_or_default() {
            "devices" if read => "devices:read",
            "devices" => "devices:write",
            "organizations" if read => "organizations:read",
            "organizations" => "organizations:write",
            "logs" if read => "logs:read",
            "events" if read => "events:read",
            "events" => "events:write",
            "tools" if read => "tools:read",
            "webhooks" if read => "webhooks:read",
            "webhooks" => "webhooks:write",
            // Any valid key may ask about itself.
            "me" if read => ANY_SCOPE,
            // No key holds this: unknown resources and writes to read-only ones are refused.
            _ => "none",
        };
        return Access::ApiKey { scope };
    }
    if under(path, "/external-api") {
        // The API's documentation is public, as OpenFrame's Swagger UI is.
        let docs = under(path, "/external-api/api-docs") || under(path, "/external-api/docs");
        return if docs {
            Access::Open
        } else {
            Access::ApiKey { scope: "none" }
        };
    }
    Access::Open
}

/// Where a request's token came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenSource {
    Bearer,
    Cookie,
    AccessTokenHeader,
    Query,
}

/// A verified caller: the tenant, and who within it.
#[derive(Debug, Clone)]
pub struct Principal {
    /// Shared with the verdict cache: handing a caller to a handler copies a pointer.
    pub verified: Arc<Verified>,
    pub source: TokenSource,
}

/// What verifying a token established.
#[derive(Debug)]
pub struct Verified {
    pub tenant: TenantId,
    pub who: Who,
    /// When the token expires (Unix ms): long-lived connections end then.
    pub expires_at_ms: i64,
}

impl std::ops::Deref for Principal {
    type Target = Verified;

    fn deref(&self) -> &Verified {
        &self.verified
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Who {
    /// A person signed in through the appliance's own browser client; `roles` are the effective
    /// roles the store held when the token was verified.
    User {
        user_id: String,
        email: String,
        roles: Vec<Role>,
    },
    /// A token of another client of the tenant (a relying party acting for a user, or a
    /// client-credentials token). It is valid, but holds no role at the edge.
    Client {
        client_id: String,
        user_id: Option<String>,
    },
    /// An endpoint agent.
    Agent { machine_id: String, epoch: u64 },
}

impl Principal {
    pub fn is_admin(&self) -> bool {
        matches!(&self.who, Who::User { roles, .. } if roles.contains(&Role::Admin))
    }

    pub fn is_agent(&self) -> bool {
        matches!(self.who, Who::Agent { .. })
    }

    /// The roles as OpenFrame names them, for `/internal/authz/probe` and `/api/me`.
    pub fn role_names(&self) -> Vec<&'static str> {
        match &self.who {
            Who::User { roles, .. } => roles.iter().map(|role| role.as_str()).collect(),
            Who::Client { .. } => Vec::new(),
            Who::Agent { .. } => vec!["AGENT"],
        }
    }
}

/// A verified token and how long that verdict may be reused.
#[derive(Clone)]
struct Verdict {
    /// SHA-256 of the whole token the verdict is about (32 bytes instead of the ~1 KB token:
    /// ten thousand agents' verdicts cost 8 MiB less).
    digest: [u8; 32],
    verified: Arc<Verified>,
    valid_until_ms: i64,
    epoch: u64,
}

/// The token is a bearer secret: debug output leaves it out.
impl std::fmt::Debug for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verdict")
            .field("digest", &"<redacted>")
            .field("verified", &self.verified)
            .field("valid_until_ms", &self.valid_until_ms)
            .field("epoch", &self.epoch)
            .finish()
    }
}

/// Verified tokens, remembered briefly (see the module documentation).
#[derive(Debug)]
pub struct TokenVerifier {
    cache: RwLock<HashMap<[u8; TAIL], Verdict>>,
    ttl_ms: i64,
}

/// Enough for every token a busy appliance sees in a cache period (each entry about 200 bytes);
/// beyond it, expired verdicts go, then everything. [`TokenVerifier::forget_expired`] also
/// clears expired verdicts periodically.
const CACHE_CAPACITY: usize = 30_000;

/// How much of a token's end finds its cache entry.
const TAIL: usize = 32;

/// The cache key of a token: its last [`TAIL`] bytes (shorter tokens are never verified).
fn tail_of(token: &str) -> Option<[u8; TAIL]> {
    let bytes = token.as_bytes();
    bytes
        .len()
        .checked_sub(TAIL)
        .and_then(|start| bytes[start..].try_into().ok())
}

impl TokenVerifier {
    pub fn new(ttl_seconds: u64) -> TokenVerifier {
        TokenVerifier {
            cache: RwLock::new(HashMap::new()),
            ttl_ms: i64::try_from(ttl_seconds.saturating_mul(1000)).unwrap_or(i64::MAX),
        }
    }

    /// Drops the verdicts that can no longer be used, so the cache holds what the last
    /// `token_cache_seconds` verified rather than everything since it last filled up.
    pub fn forget_expired(&self, now_ms: i64) {
        if let Ok(mut cache) = self.cache.write() {
            cache.retain(|_, verdict| verdict.valid_until_ms > now_ms);
        }
    }

    /// Verifies `token` completely, or finds a recent verdict about it.
    pub async fn verify(
        &self,
        identity: &Identity,
        token: &str,
        source: TokenSource,
    ) -> Result<Principal, ApiError> {
        if token.len() > crate::identity::jwt::MAX_TOKEN_BYTES {
            return Err(ApiError::Unauthorized(
                "the access token is too long".into(),
            ));
        }
        let key = tail_of(token);
        let now = identity.clock.now_ms();
        if self.ttl_ms > 0
            && let Some(key) = &key
        {
            let cached = self.cache.read().ok().and_then(|cache| {
                cache
                    .get(key)
                    .filter(|verdict| constant_time_eq(&verdict.digest, &sha256(token.as_bytes())))
                    .map(|verdict| {
                        (
                            verdict.verified.clone(),
                            verdict.valid_until_ms,
                            verdict.epoch,
                        )
                    })
            });
            if let Some((verified, valid_until_ms, epoch)) = cached
                && epoch == identity.store.revocation_epoch(&verified.tenant)
                && now < valid_until_ms
            {
                return Ok(Principal { verified, source });
            }
        }
        // The epoch is read before verifying: a revocation that lands during verification
        // makes this verdict stale at once.
        let (tenant, who, expires_at, epoch) = verify_fully(identity, token).await?;
        let expires_at_ms = expires_at.saturating_mul(1000);
        let verified = Arc::new(Verified {
            tenant,
            who,
            expires_at_ms,
        });
        if self.ttl_ms > 0
            && let Some(key) = key
        {
            let Ok(digest) = <[u8; 32]>::try_from(sha256(token.as_bytes())) else {
                return Ok(Principal { verified, source });
            };
            let verdict = Verdict {
                digest,
                verified: verified.clone(),
                valid_until_ms: expires_at_ms.min(now + self.ttl_ms),
                epoch,
            };
            if let Ok(mut cache) = self.cache.write() {
                if cache.len() >= CACHE_CAPACITY {
                    cache.retain(|_, verdict| verdict.valid_until_ms > now);
                    if cache.len() >= CACHE_CAPACITY / 2 {
                        cache.clear();
                    }
                }
                cache.insert(key, verdict);
            }
        }
        Ok(Principal { verified, source })
    }
}

/// The unverified claims that say which issuer (and so which keys) to verify with.
#[derive(Debug, serde::Deserialize)]
struct Routing {
    iss: String,
    #[serde(default)]
    tenant_id: Option<String>,
}

async fn verify_fully(
    identity: &Identity,
    token: &str,
) -> Result<(TenantId, Who, i64, u64), ApiError> {
    let unauthorized = |why: &str| ApiError::Unauthorized(why.to_owned());
    let routing: Routing = token
        .split('.')
        .nth(1)
        .and_then(b64url_decode)
        .and_then(|payload| serde_json::from_slice(&payload).ok())
        .ok_or_else(|| unauthorized("the access token is malformed"))?;
    let failed = |error: TokenRejected| match error {
        TokenRejected::Invalid(why) => ApiError::Unauthorized(why),
        TokenRejected::Failed(error) => {
            ApiError::Unexpected(anyhow::anyhow!("verifying an access token: {error}"))
        }
    };
    if routing.iss == identity.agent_issuer() {
        let claimed = routing
            .tenant_id
            .ok_or_else(|| unauthorized("the agent token names no tenant"))?;
        let tenant = identity
            .active_tenant(&claimed)
            .await
            .map_err(|_| unauthorized("the access token's tenant is not active"))?;
        let epoch = identity.store.revocation_epoch(&tenant.id);
        let claims = identity
            .verify_agent_token(&tenant.id, token)
            .await
            .map_err(failed)?;
        let who = Who::Agent {
            machine_id: claims.machine_id,
            epoch: claims.epoch,
        };
        return Ok((tenant.id, who, claims.exp, epoch));
    }
    let prefix = format!("{}/sas/", identity.public_url());
    let Some(claimed) = routing.iss.strip_prefix(&prefix) else {
        return Err(unauthorized(
            "the access token was issued by an issuer this appliance does not trust",
        ));
    };
    let tenant = identity
        .active_tenant(claimed)
        .await
        .map_err(|_| unauthorized("the access token's tenant is not active"))?;
    let epoch = identity.store.revocation_epoch(&tenant.id);
    let (claims, user) = identity
        .verify_user_token(&tenant.id, token)
        .await
        .map_err(failed)?;
    // Only the appliance's own browser client acts for administrators: a token a third-party
    // relying party obtained for a user (to read their profile) must not also manage the tenant.
    let who = match user {
        Some(user) if claims.client_id == GATEWAY_CLIENT_ID => {
            let roles: Vec<Role> = user
                .roles
                .iter()
                .filter_map(|role| Role::parse(role).ok())
                .collect();
            Who::User {
                user_id: user.id,
                email: user.email,
                roles: Role::effective(&roles),
            }
        }
        user => Who::Client {
            client_id: claims.client_id,
            user_id: user.map(|user| user.id),
        },
    };
    Ok((tenant.id, who, claims.exp, epoch))
}

fn cookie_token(headers: &HeaderMap) -> Option<String> {
    crate::identity::http::cookie(headers, "access_token")
}

/// Finds the request's token in OpenFrame's order. `Ok(None)`: there is none.
/// Header tokens are borrowed: a cache hit then copies nothing.
fn find_token<'a>(
    headers: &'a HeaderMap,
    query: Option<&str>,
    websocket: bool,
) -> Result<Option<(Cow<'a, str>, TokenSource)>, ApiError> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let value = header_text(value)
            .ok_or_else(|| ApiError::Unauthorized("the Authorization header is not text".into()))?;
        let Some(token) = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
        else {
            return Err(ApiError::Unauthorized(
                "the Authorization header must be \"Bearer <access token>\"".into(),
            ));
        };
        return Ok(Some((Cow::Borrowed(token.trim()), TokenSource::Bearer)));
    }
    if let Some(token) = cookie_token(headers) {
        return Ok(Some((Cow::Owned(token), TokenSource::Cookie)));
    }
    if let Some(value) = headers.get("access-token") {
        let token = header_text(value)
            .ok_or_else(|| ApiError::Unauthorized("the Access-Token header is not text".into()))?;
        return Ok(Some((
            Cow::Borrowed(token.trim()),
            TokenSource::AccessTokenHeader,
        )));
    }
    // A browser cannot set headers on a WebSocket; anywhere else a token in the URL would end
    // up in histories and logs, so it is not looked for.
    if websocket
        && let Some(query) = query
        && let Some((_, token)) =
            url::form_urlencoded::parse(query.as_bytes()).find(|(name, _)| name == "authorization")
    {
        let token = token.strip_prefix("Bearer ").unwrap_or(&token).to_owned();
        return Ok(Some((Cow::Owned(token), TokenSource::Query)));
    }
    Ok(None)
}

/// A header's value as text when it is ASCII, checked a word at a time (`HeaderValue::to_str`
/// goes byte by byte, and a bearer token is a kilobyte on every request). Control characters
/// need no check here: the HTTP parser refuses them, and a token is only ever hashed or
/// verified, which no such token survives.
pub(crate) fn header_text(value: &HeaderValue) -> Option<&str> {
    let bytes = value.as_bytes();
    if !bytes.is_ascii() {
        return None;
    }
    std::str::from_utf8(bytes).ok()
}

pub fn is_websocket_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.eq_ignore_ascii_case("websocket"))
}

/// The edge's access check; see the module documentation.
pub async fn authorize(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let access = access_for(request.method(), request.uri().path());
    match access {
        Access::Open => next.run(request).await,
        Access::ApiKey { scope } => {
            super::api_keys::authenticate(state, scope, request, next).await
        }
        Access::Admin | Access::Agent | Access::AgentOrAdmin | Access::AnyToken => {
            let (method, uri, headers) = (request.method(), request.uri(), request.headers());
            match principal_for(&state, access, method, uri, headers).await {
                Ok(principal) => {
                    request.extensions_mut().insert(principal);
                    next.run(request).await
                }
                Err(error) => error.into_response(),
            }
        }
    }
}

async fn principal_for(
    state: &AppState,
    access: Access,
    method: &Method,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
) -> Result<Principal, ApiError> {
    let websocket = is_websocket_upgrade(headers);
    let Some((token, source)) = find_token(headers, uri.query(), websocket)? else {
        return Err(ApiError::Unauthorized(
            "sign in first: send an access token (Authorization: Bearer, or the access_token cookie)"
                .into(),
        ));
    };
    let principal = state
        .gateway
        .tokens
        .verify(&state.identity, &token, source)
        .await?;
    // A browser sends the cookie with any request to us, also one a hostile page starts: a
    // cookie-authenticated change must come from a page of this appliance (or a configured
    // origin, which CORS has already checked).
    let safe_method = matches!(*method, Method::GET | Method::HEAD);
    // Through the tool proxy even a GET can change something in the tool (and SameSite=Lax
    // lets a cross-site navigation carry the cookie), so there every method needs it.
    let path = uri.path();
    let tool_path = under(path, "/tools") || under(path, "/ws/tools");
    let same_origin = headers
        .get("sec-fetch-site")
        .is_some_and(|site| site.as_bytes() == b"same-origin");
    let needs_origin = source == TokenSource::Cookie && (!safe_method || websocket || tool_path);
    // A browser's own word that a GET came from one of our pages will do for a tool's GET.
    let vouched = tool_path && safe_method && !websocket && same_origin;
    if needs_origin && !vouched {
        let origin = headers
            .get(header::ORIGIN)
            .and_then(|value| value.to_str().ok());
        if !origin.is_some_and(|origin| state.gateway.is_trusted_origin(origin)) {
            return Err(ApiError::Forbidden(
                "a change authenticated by cookie must come from this appliance's own pages (Origin)"
                    .into(),
            ));
        }
    }
    let allowed = match access {
        Access::Admin => principal.is_admin(),
        Access::Agent => principal.is_agent(),
        Access::AgentOrAdmin => principal.is_admin() || principal.is_agent(),
        _ => true,
    };
    if !allowed {
        if let Who::Client {
            user_id: Some(_), ..
        } = &principal.who
            && access != Access::Agent
        {
            return Err(ApiError::Forbidden(
                "this endpoint accepts only tokens of the appliance's own sign-in (openframe-gateway)"
                    .into(),
            ));
        }
        let needed = match access {
            Access::Admin => "the ADMIN role",
            Access::Agent => "an agent token",
            _ => "an agent token or the ADMIN role",
        };
        return Err(ApiError::Forbidden(format!("this path needs {needed}")));
    }
    // An agent token holds only while its machine is registered and at the token's credential
    // generation (checked on every request, cached verdict or not: it is one map lookup).
    if let Who::Agent { machine_id, epoch } = &principal.who
        && !state
            .management
            .agents
            .admits(&principal.tenant, machine_id, *epoch)
    {
        return Err(ApiError::Unauthorized(
            "the agent's machine was uninstalled or reinstalled since this token was issued; register again".into(),
        ));
    }
    Ok(principal)
}

fn missing() -> ApiError {
    ApiError::Unauthorized("sign in first: this endpoint needs a verified caller".into())
}

/// Any verified token holder: the handler decides what it may see.
#[derive(Debug, Clone)]
pub struct Caller(pub Principal);

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<Principal>()
            .cloned()
            .map(Caller)
            .ok_or_else(missing)
    }
}

/// A signed-in administrator of a tenant.
#[derive(Debug, Clone)]
pub struct Admin {
    pub tenant: TenantId,
    pub user_id: String,
    pub email: String,
    pub owner: bool,
    /// When the caller's token expires (Unix ms).
    pub expires_at_ms: i64,
}

impl<S: Send + Sync> FromRequestParts<S> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let principal = parts.extensions.get::<Principal>().ok_or_else(missing)?;
        match &principal.who {
            Who::User {
                user_id,
                email,
                roles,
            } if roles.contains(&Role::Admin) => Ok(Admin {
                tenant: principal.tenant.clone(),
                user_id: user_id.clone(),
                email: email.clone(),
                owner: roles.contains(&Role::Owner),
                expires_at_ms: principal.expires_at_ms,
            }),
            _ => Err(ApiError::Forbidden(
                "this endpoint needs the ADMIN role".into(),
            )),
        }
    }
}

/// An endpoint agent of a tenant.
#[derive(Debug, Clone)]
pub struct Agent {
    pub tenant: TenantId,
    pub machine_id: String,
    /// The credential epoch the token was issued under.
    pub epoch: u64,
    /// When the agent's token expires (Unix ms).
    pub expires_at_ms: i64,
}

impl<S: Send + Sync> FromRequestParts<S> for Agent {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let principal = parts.extensions.get::<Principal>().ok_or_else(missing)?;
        match &principal.who {
            Who::Agent { machine_id, epoch } => Ok(Agent {
                tenant: principal.tenant.clone(),
                machine_id: machine_id.clone(),
                epoch: *epoch,
                expires_at_ms: principal.expires_at_ms,
            }),
            _ => Err(ApiError::Forbidden("this endpoint is for agents".into())),
        }
    }
}

/// `GET /internal/authz/probe`: 200 with who the credential belongs to, for a reverse proxy's
/// `auth_request`; the access check has already answered 401 otherwise.
pub async fn probe(Caller(principal): Caller) -> Response {
    #[derive(serde::Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe<'a> {
        authenticated: bool,
        tenant_id: &'a str,
        roles: Vec<&'static str>,
    }
    let mut response = axum::Json(Probe {
        authenticated: true,
        tenant_id: principal.tenant.as_str(),
        roles: principal.role_names(),
    })
    .into_response();
    if let Ok(value) = principal.tenant.as_str().parse() {
        response.headers_mut().insert("x-tenant-id", value);
    }
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    response
}

/// Shares the verifier between the gateway's parts.
pub type SharedVerifier = Arc<TokenVerifier>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openframe_path_rules() {
        let get = Method::GET;
        let post = Method::POST;
        let cases = [
            (&get, "/api/graphql", Access::Admin),
            (&get, "/api", Access::Admin),
            (&get, "/apiary", Access::Open),
            (&post, "/clients/api/agents/register", Access::Open),
            (&post, "/clients/oauth/token", Access::Open),
            (&get, "/clients/tool-agent/x", Access::Open),
            (&get, "/clients/api/agents/register/x", Access::Agent),
            (&get, "/clients/api/machines", Access::Agent),
            (&get, "/tools/agent/mesh/agent.ashx", Access::Agent),
            (&get, "/ws/tools/agent/mesh/agent.ashx", Access::Agent),
            (&get, "/tools/mesh/api", Access::Admin),
            (&get, "/ws/tools/mesh/control.ashx", Access::Admin),
            (&get, "/ws/nats", Access::AgentOrAdmin),
            (&get, "/internal/authz/probe", Access::AnyToken),
            (
                &get,
                "/external-api/api/v1/tools",
                Access::ApiKey {
                    scope: "tools:read",
                },
            ),
            (
                &post,
                "/external-api/api/v1/tools",
                Access::ApiKey { scope: "none" },
            ),
            (
                &post,
                "/external-api/api/v1/devices/x",
                Access::ApiKey {
                    scope: "devices:write",
                },
            ),
            (
                &get,
                "/external-api/api/v1/logs",
                Access::ApiKey { scope: "logs:read" },
            ),
            (
                &post,
                "/external-api/api/v1/webhooks/wh_1/test",
                Access::ApiKey {
                    scope: "webhooks:write",
                },
            ),
            (
                &get,
                "/external-api/api/v1/webhooks/wh_1/deliveries",
                Access::ApiKey {
                    scope: "webhooks:read",
                },
            ),
            (&get, "/external-api/api-docs", Access::Open),
            (
                &get,
                "/external-api/api/v1/me",
                Access::ApiKey { scope: ANY_SCOPE },
            ),
            (
                &get,
                "/external-api/anything",
                Access::ApiKey { scope: "none" },
            ),
            (
                &post,
                "/ingest/v1/debezium",
                Access::ApiKey { scope: "ingest" },
            ),
            (&get, "/sas/acme/oauth2/jwks", Access::Open),
            (&get, "/oauth/login", Access::Open),
            (&get, "/", Access::Open),
            (&Method::OPTIONS, "/api/me", Access::Open),
        ];
        for (method, path, expected) in cases {
            assert_eq!(access_for(method, path), expected, "{method} {path}");
        }
    }

    #[test]
    fn cached_tokens_stay_out_of_debug_output() {
        let verifier = TokenVerifier::new(60);
        let token = "header.payload.signature-0123456789abcdefghijklmnopqrstuv";
        let verdict = Verdict {
            digest: sha256(token.as_bytes()).try_into().unwrap(),
            verified: Arc::new(Verified {
                tenant: TenantId::parse("acme").unwrap(),
                who: Who::Agent {
                    machine_id: "m-1".into(),
                    epoch: 0,
                },
                expires_at_ms: 0,
            }),
            valid_until_ms: 0,
            epoch: 0,
        };
        if let Some(key) = tail_of(token)
            && let Ok(mut cache) = verifier.cache.write()
        {
            cache.insert(key, verdict);
        }
        let shown = format!("{verifier:?}");
        assert!(
            shown.contains("<redacted>") && !shown.contains("signature-0123"),
            "{shown}"
        );
        assert_eq!(
            tail_of("short"),
            None,
            "tokens under 32 bytes are never cached"
        );
    }

    #[test]
    fn expired_verdicts_are_forgotten_and_live_ones_kept() {
        let verifier = TokenVerifier::new(60);
        let verdict = |valid_until_ms: i64| Verdict {
            digest: [0; 32],
            verified: Arc::new(Verified {
                tenant: TenantId::parse("acme").unwrap(),
                who: Who::Agent {
                    machine_id: "m-1".into(),
                    epoch: 0,
                },
                expires_at_ms: valid_until_ms,
            }),
            valid_until_ms,
            epoch: 0,
        };
        if let Ok(mut cache) = verifier.cache.write() {
            cache.insert([1; TAIL], verdict(1_000));
            cache.insert([2; TAIL], verdict(5_000));
        }
        verifier.forget_expired(2_000);
        let kept: Vec<[u8; TAIL]> = verifier.cache.read().unwrap().keys().copied().collect();
        assert_eq!(kept, vec![[2; TAIL]]);
    }

    #[test]
    fn tokens_are_found_in_openframe_order() {
        let mut headers = HeaderMap::new();
        headers.insert("access-token", "from-header".parse().unwrap());
        headers.insert(
            header::COOKIE,
            "a=b; access_token=from-cookie".parse().unwrap(),
        );
        let found = find_token(&headers, Some("authorization=from-query"), true).unwrap();
        assert_eq!(found, Some(("from-cookie".into(), TokenSource::Cookie)));
        headers.insert(header::AUTHORIZATION, "Bearer from-bearer".parse().unwrap());
        let found = find_token(&headers, None, false).unwrap();
        assert_eq!(found, Some(("from-bearer".into(), TokenSource::Bearer)));

        let none = HeaderMap::new();
        assert_eq!(
            find_token(&none, Some("authorization=q"), false).unwrap(),
            None
        );
        assert_eq!(
            find_token(&none, Some("x=1&authorization=q"), true).unwrap(),
            Some(("q".into(), TokenSource::Query))
        );
        let mut basic = HeaderMap::new();
        basic.insert(header::AUTHORIZATION, "Basic dXNlcjpwdw==".parse().unwrap());
        assert!(find_token(&basic, None, false).is_err());
    }
}
