//! The browser sign-in of OpenFrame's own UI (the "BFF"): `/oauth/login`, `/oauth/callback`,
//! `/oauth/refresh`, `/oauth/logout`. The browser never sees a token in script: they live in
//! HttpOnly cookies, `access_token` (path `/`) and `refresh_token` (path `/oauth`).
//!
//! The flow is the tenant's own authorization code + PKCE with the built-in client
//! `openframe-gateway`. Its verifier, nonce and destination travel in a cookie named after the
//! state, MAC'd with the master key and valid for three minutes, so the server keeps no state
//! for half-finished sign-ins. `redirectTo` may only name this appliance.

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use openframe_storage::documents::Tenant;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

use super::authorize::{clear_session_cookie, end_session};
use super::{OAuthReply, cookie, escape_html, no_store, page, set_cookie, tenant};
use crate::identity::crypto::{
    b64url, b64url_decode, random_token, sign_value, verify_signed_value,
};
use crate::identity::rules::s256_challenge;
use crate::identity::store::ClientRecord;
use crate::identity::tokens::{OAuthError, TokenResponse};
use crate::identity::{GATEWAY_CLIENT_ID, Identity};
use crate::startup::AppState;

/// How long a started sign-in may take before its state cookie expires.
const STATE_TTL_SECONDS: i64 = 180;
const STATE_COOKIE_PREFIX: &str = "of_oauth_";
const ACCESS_COOKIE: &str = "access_token";
const REFRESH_COOKIE: &str = "refresh_token";

/// What a started sign-in must remember until the callback.
#[derive(Debug, Serialize, Deserialize)]
struct PendingSignIn {
    tenant: String,
    verifier: String,
    nonce: String,
    redirect_to: String,
    expires_at: i64,
}

fn bad_request(message: &str) -> Response {
    page(
        StatusCode::BAD_REQUEST,
        "Sign-in refused",
        &format!("<p>{}</p>", escape_html(message)),
    )
}

/// Where a sign-in may return: a path on this appliance, or an absolute URL with exactly its
/// origin. Everything else (other hosts, `//host`, `/\host`, schemes like `javascript:`) is an
/// open-redirect attempt.
pub fn safe_redirect_target(public_url: &str, requested: &str) -> Option<String> {
    if requested.is_empty() {
        return Some("/".to_owned());
    }
    if requested.chars().any(|c| c.is_control() || c == '\\') {
        return None;
    }
    if requested.starts_with('/') {
        return (!requested.starts_with("//")).then(|| requested.to_owned());
    }
    let origin = url::Url::parse(public_url).ok()?.origin();
    let target = url::Url::parse(requested).ok()?;
    (target.origin() == origin).then(|| requested.to_owned())
}

fn state_key(identity: &Identity) -> aws_lc_rs::hmac::Key {
    identity.master().mac_key("bff-state")
}

fn callback_uri(identity: &Identity) -> String {
    format!("{}/oauth/callback", identity.public_url())
}

fn append_cookie(response: &mut Response, cookie_value: &str) {
    if let Ok(value) = HeaderValue::from_str(cookie_value) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
}

fn redirect(location: &str) -> Response {
    let mut response = StatusCode::FOUND.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    no_store(response.headers_mut());
    response
}

/// `GET /oauth/login?tenantId=&redirectTo=`: starts the tenant's authorization code flow.
pub(super) async fn login(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let identity = &state.identity;
    let Some(raw) = query.get("tenantId") else {
        return bad_request("tenantId is required.");
    };
    let tenant = match tenant(identity, raw).await {
        Ok(tenant) => tenant,
        Err(reply) => return reply.into_response(),
    };
    let requested = query.get("redirectTo").map_or("", String::as_str);
    let Some(redirect_to) = safe_redirect_target(identity.public_url(), requested) else {
        tracing::warn!(
            tenant = tenant.id.as_str(),
            "refused a sign-in with an off-site redirectTo"
        );
        return bad_request("redirectTo must be a path or URL of this appliance.");
    };
    let started = (|| -> anyhow::Result<(String, String, String)> {
        Ok((random_token()?, random_token()?, random_token()?))
    })();
    let Ok((state_value, verifier, nonce)) = started else {
        return bad_request("Cannot start a sign-in; see the appliance's log.");
    };
    let pending = PendingSignIn {
        tenant: tenant.id.as_str().to_owned(),
        verifier: verifier.clone(),
        nonce: nonce.clone(),
        redirect_to,
        expires_at: identity.clock.now_ms() / 1000 + STATE_TTL_SECONDS,
    };
    let Ok(encoded) = serde_json::to_vec(&pending) else {
        return bad_request("Cannot start a sign-in; see the appliance's log.");
    };
    let sealed = sign_value(&state_key(identity), &b64url(&encoded));
    let mut authorize = url::form_urlencoded::Serializer::new(String::new());
    authorize
        .append_pair("response_type", "code")
        .append_pair("client_id", GATEWAY_CLIENT_ID)
        .append_pair("redirect_uri", &callback_uri(identity))
        .append_pair("scope", "openid profile email offline_access")
        .append_pair("state", &state_value)
        .append_pair("nonce", &nonce)
        .append_pair("code_challenge", &s256_challenge(&verifier))
        .append_pair("code_challenge_method", "S256");
    // The console asks for the email first: the sign-in page then shows it filled in (OIDC's
    // `login_hint`; only a hint, the page checks nothing against it).
    if let Some(hint) = query.get("loginHint").filter(|hint| hint.len() <= 254) {
        authorize.append_pair("login_hint", hint);
    }
    let authorize = authorize.finish();
    let mut response = redirect(&format!(
        "/sas/{}/oauth2/authorize?{authorize}",
        tenant.id.as_str()
    ));
    append_cookie(
        &mut response,
        &set_cookie(
            &format!("{STATE_COOKIE_PREFIX}{state_value}"),
            &sealed,
            "/oauth",
            STATE_TTL_SECONDS as u64,
        ),
    );
    response
}

fn pending_sign_in(
    identity: &Identity,
    headers: &HeaderMap,
    state_value: &str,
) -> Option<PendingSignIn> {
    let sealed = cookie(headers, &format!("{STATE_COOKIE_PREFIX}{state_value}"))?;
    let encoded = verify_signed_value(&state_key(identity), &sealed)?;
    let pending: PendingSignIn = serde_json::from_slice(&b64url_decode(encoded)?).ok()?;
    (pending.expires_at > identity.clock.now_ms() / 1000).then_some(pending)
}

async fn gateway_client(identity: &Identity, tenant: &Tenant) -> Result<ClientRecord, OAuthReply> {
    identity
        .client(&tenant.id, GATEWAY_CLIENT_ID)
        .await
        .map_err(OAuthReply::from)?
        .ok_or_else(|| {
            OAuthReply::from(OAuthError::Unexpected(anyhow::anyhow!(
                "the built-in client is missing"
            )))
        })
}

fn set_token_cookies(identity: &Identity, response: &mut Response, tokens: &TokenResponse) {
    append_cookie(
        response,
        &set_cookie(ACCESS_COOKIE, &tokens.access_token, "/", tokens.expires_in),
    );
    if let Some(refresh) = &tokens.refresh_token {
        append_cookie(
            response,
            &set_cookie(
                REFRESH_COOKIE,
                refresh,
                "/oauth",
                identity.settings.refresh_ttl.as_secs(),
            ),
        );
    }
}

fn clear_token_cookies(response: &mut Response) {
    append_cookie(response, &set_cookie(ACCESS_COOKIE, "", "/", 0));
    append_cookie(response, &set_cookie(REFRESH_COOKIE, "", "/oauth", 0));
}

/// `GET /oauth/callback?code=&state=`: exchanges the code and sets the token cookies.
pub(super) async fn callback(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let identity = &state.identity;
    let Some(state_value) = query.get("state") else {
        return bad_request("state is missing.");
    };
    let Some(pending) = pending_sign_in(identity, &headers, state_value) else {
        return bad_request(
            "This sign-in expired or was started in another browser. Please sign in again.",
        );
    };
    let clear_state = set_cookie(
        &format!("{STATE_COOKIE_PREFIX}{state_value}"),
        "",
        "/oauth",
        0,
    );
    if let Some(error) = query.get("error") {
        let mut response = bad_request(&format!(
            "The sign-in did not complete: {}.",
            error.chars().take(100).collect::<String>()
        ));
        append_cookie(&mut response, &clear_state);
        return response;
    }
    let Some(code) = query.get("code") else {
        return bad_request("code is missing.");
    };
    let tenant = match tenant(identity, &pending.tenant).await {
        Ok(tenant) => tenant,
        Err(reply) => return reply.into_response(),
    };
    let client = match gateway_client(identity, &tenant).await {
        Ok(client) => client,
        Err(reply) => return reply.into_response(),
    };
    let redirect_uri = callback_uri(identity);
    let tokens = match identity
        .redeem_code(
            &tenant.id,
            &client,
            code,
            Some(&redirect_uri),
            Some(&pending.verifier),
        )
        .await
    {
        Ok(tokens) => tokens,
        Err(OAuthError::Rejected { description, .. }) => {
            return bad_request(&format!("The sign-in failed: {description}."));
        }
        Err(other) => return OAuthReply::from(other).into_response(),
    };
    let mut response = redirect(&pending.redirect_to);
    append_cookie(&mut response, &clear_state);
    set_token_cookies(identity, &mut response, &tokens);
    response
}

/// The tenant of a refresh or logout: `tenantId`, or the `tenant_id` of the access-token
/// cookie (read, not trusted: the refresh token is looked up in that tenant and must exist).
async fn tenant_of(
    identity: &Identity,
    headers: &HeaderMap,
    query: &HashMap<String, String>,
) -> Result<Tenant, OAuthReply> {
    let named = match query.get("tenantId") {
        Some(raw) => Some(raw.clone()),
        None => cookie(headers, ACCESS_COOKIE).and_then(|token| {
            let payload = b64url_decode(token.split('.').nth(1)?)?;
            let claims: serde_json::Value = serde_json::from_slice(&payload).ok()?;
            claims["tenant_id"].as_str().map(str::to_owned)
        }),
    };
    let raw = named.ok_or_else(|| {
        OAuthReply::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "tenantId is required",
        )
    })?;
    tenant(identity, &raw).await
}

/// `POST /oauth/refresh?tenantId=`: a new access token (and refresh token) in cookies, 204.
/// The refresh token comes from its cookie or, for non-browser clients, a `Refresh-Token` header.
/// A refresh whose answer the browser lost can be retried for a few seconds
/// ([`crate::identity::tokens::BROWSER_RETRY_GRACE_MS`]).
pub(super) async fn refresh(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let identity = &state.identity;
    let outcome = async {
        let tenant = tenant_of(identity, &headers, &query).await?;
        let presented = cookie(&headers, REFRESH_COOKIE)
            .or_else(|| {
                headers
                    .get("refresh-token")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            })
            .ok_or_else(|| {
                OAuthReply::new(
                    StatusCode::UNAUTHORIZED,
                    "invalid_grant",
                    "no refresh token: sign in again",
                )
            })?;
        let client = gateway_client(identity, &tenant).await?;
        identity
            .refresh_from_browser(&tenant.id, &client, &presented)
            .await
            .map_err(|error| match error {
                OAuthError::Rejected { code, description } => {
                    OAuthReply::new(StatusCode::UNAUTHORIZED, code, description)
                }
                other => OAuthReply::from(other),
            })
    }
    .await;
    match outcome {
        Ok(tokens) => {
            let mut response = StatusCode::NO_CONTENT.into_response();
            no_store(response.headers_mut());
            set_token_cookies(identity, &mut response, &tokens);
            response
        }
        Err(reply) => {
            let mut response = reply.into_response();
            clear_token_cookies(&mut response);
            response
        }
    }
}

/// `GET /oauth/logout?tenantId=`: revokes the refresh token's whole family, ends the sign-in
/// session and clears every cookie; 204.
pub(super) async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let identity = &state.identity;
    if super::started_by_another_site(&headers) {
        return OAuthReply::new(
            StatusCode::FORBIDDEN,
            "invalid_request",
            "sign-out must be started from this appliance's own pages",
        )
        .into_response();
    }
    let tenant = match tenant_of(identity, &headers, &query).await {
        Ok(tenant) => tenant,
        Err(reply) => return reply.into_response(),
    };
    let revoked = async {
        if let Some(refresh) = cookie(&headers, REFRESH_COOKIE) {
            let client = gateway_client(identity, &tenant).await?;
            identity
                .revoke(&tenant.id, &client, &refresh)
                .await
                .map_err(OAuthReply::from)?;
        }
        end_session(identity, &tenant, &headers)
            .await
            .map_err(|error| OAuthReply::from(OAuthError::from(error)))
    }
    .await;
    if let Err(reply) = revoked {
        return reply.into_response();
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    no_store(response.headers_mut());
    clear_token_cookies(&mut response);
    clear_session_cookie(&tenant, response.headers_mut());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_targets_stay_on_this_appliance() {
        let public = "https://openframe.example.com:8443";
        for (requested, expected) in [
            ("", Some("/")),
            ("/devices?x=1", Some("/devices?x=1")),
            (
                "https://openframe.example.com:8443/logs",
                Some("https://openframe.example.com:8443/logs"),
            ),
            ("https://openframe.example.com/logs", None),
            ("https://evil.example/", None),
            ("//evil.example/", None),
            ("/\\evil.example", None),
            ("javascript:alert(1)", None),
            ("http://openframe.example.com:8443/", None),
            ("/ok\r\nSet-Cookie: x=1", None),
        ] {
            assert_eq!(
                safe_redirect_target(public, requested).as_deref(),
                expected,
                "{requested:?}"
            );
        }
    }
}
