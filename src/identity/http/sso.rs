//! The browser side of upstream SSO: `/sas/{tenant}/sso/{provider}` sends the browser to the
//! upstream provider; `/sas/{tenant}/sso/{provider}/callback` comes back, signs the person in
//! and continues the authorization request that was waiting. The PKCE verifier, nonce and state
//! ride in a MAC'd ten-minute cookie scoped to the tenant's SSO paths.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::authorize::signed_in;
use super::{cookie, escape_html, no_store, page, set_cookie, tenant};
use crate::identity::crypto::{
    b64url, b64url_decode, random_token, sign_value, verify_signed_value,
};
use crate::identity::rules::{is_safe_continuation, s256_challenge};
use crate::identity::{Identity, IdentityError};
use crate::startup::AppState;

const COOKIE: &str = "of_sso";
const TTL_SECONDS: i64 = 600;

#[derive(Debug, Serialize, Deserialize)]
struct PendingSso {
    tenant: String,
    provider: String,
    state: String,
    nonce: String,
    verifier: String,
    continuation: Option<String>,
    expires_at: i64,
}

fn refused(status: StatusCode, message: &str) -> Response {
    page(
        status,
        "Single sign-on refused",
        &format!("<p>{}</p>", escape_html(message)),
    )
}

/// Where the upstream returns: register this URI with the upstream provider.
pub fn callback_uri(identity: &Identity, tenant: &str, provider: &str) -> String {
    format!(
        "{}/sas/{tenant}/sso/{provider}/callback",
        identity.public_url()
    )
}

fn key(identity: &Identity) -> aws_lc_rs::hmac::Key {
    identity.master().mac_key("sso-state")
}

async fn enabled_config(
    identity: &Identity,
    tenant: &openframe_storage::model::TenantId,
    provider: &str,
) -> Result<crate::identity::sso::SsoConfig, Response> {
    match identity.sso(tenant, provider).await {
        Ok(Some(config)) if config.enabled => Ok(config),
        Ok(_) => Err(refused(
            StatusCode::NOT_FOUND,
            "This sign-in option is not configured.",
        )),
        Err(error) => Err(crate::error::ApiError::from(error).into_response()),
    }
}

pub(super) async fn start(
    State(state): State<AppState>,
    Path((raw, provider)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let identity = &state.identity;
    let tenant = match tenant(identity, &raw).await {
        Ok(tenant) => tenant,
        Err(reply) => return reply.into_response(),
    };
    let config = match enabled_config(identity, &tenant.id, &provider).await {
        Ok(config) => config,
        Err(response) => return response,
    };
    let prefix = format!("/sas/{}", tenant.id.as_str());
    let continuation = query
        .get("return")
        .filter(|target| is_safe_continuation(&prefix, target))
        .cloned();
    let metadata = match identity.upstream_metadata(&config).await {
        Ok(metadata) => metadata,
        Err(error) => {
            tracing::warn!(tenant = tenant.id.as_str(), provider = %provider, error = format!("{error:#}"), "upstream discovery failed");
            return refused(
                StatusCode::BAD_GATEWAY,
                "The sign-in provider cannot be reached; try again or sign in with a password.",
            );
        }
    };
    let Ok((state_value, nonce, verifier)) =
        (|| -> anyhow::Result<_> { Ok((random_token()?, random_token()?, random_token()?)) })()
    else {
        return refused(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Cannot start a sign-in; see the appliance's log.",
        );
    };
    let pending = PendingSso {
        tenant: tenant.id.as_str().to_owned(),
        provider: provider.clone(),
        state: state_value.clone(),
        nonce: nonce.clone(),
        verifier: verifier.clone(),
        continuation,
        expires_at: identity.clock.now_ms() / 1000 + TTL_SECONDS,
    };
    let Ok(encoded) = serde_json::to_vec(&pending) else {
        return refused(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Cannot start a sign-in; see the appliance's log.",
        );
    };
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("response_type", "code")
        .append_pair("client_id", &config.client_id)
        .append_pair(
            "redirect_uri",
            &callback_uri(identity, tenant.id.as_str(), &provider),
        )
        .append_pair("scope", "openid email profile")
        .append_pair("state", &state_value)
        .append_pair("nonce", &nonce)
        .append_pair("code_challenge", &s256_challenge(&verifier))
        .append_pair("code_challenge_method", "S256")
        .finish();
    let separator = if metadata.authorization_endpoint.contains('?') {
        '&'
    } else {
        '?'
    };
    let mut response = StatusCode::FOUND.into_response();
    if let Ok(location) = HeaderValue::from_str(&format!(
        "{}{separator}{query}",
        metadata.authorization_endpoint
    )) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    let cookie_value = set_cookie(
        COOKIE,
        &sign_value(&key(identity), &b64url(&encoded)),
        &format!("{prefix}/sso"),
        TTL_SECONDS as u64,
    );
    if let Ok(value) = HeaderValue::from_str(&cookie_value) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    no_store(response.headers_mut());
    response
}

pub(super) async fn callback(
    State(state): State<AppState>,
    Path((raw, provider)): Path<(String, String)>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let identity = &state.identity;
    let tenant = match tenant(identity, &raw).await {
        Ok(tenant) => tenant,
        Err(reply) => return reply.into_response(),
    };
    let pending = cookie(&headers, COOKIE)
        .and_then(|sealed| verify_signed_value(&key(identity), &sealed).map(str::to_owned))
        .and_then(|encoded| b64url_decode(&encoded))
        .and_then(|bytes| serde_json::from_slice::<PendingSso>(&bytes).ok())
        .filter(|pending| {
            pending.tenant == tenant.id.as_str()
                && pending.provider == provider
                && pending.expires_at > identity.clock.now_ms() / 1000
                && query.get("state") == Some(&pending.state)
        });
    let Some(pending) = pending else {
        return refused(
            StatusCode::BAD_REQUEST,
            "This sign-in expired or was started in another browser. Please try again.",
        );
    };
    if let Some(error) = query.get("error") {
        return refused(
            StatusCode::FORBIDDEN,
            &format!(
                "The sign-in provider said: {}.",
                error.chars().take(100).collect::<String>()
            ),
        );
    }
    let Some(code) = query.get("code") else {
        return refused(
            StatusCode::BAD_REQUEST,
            "The sign-in provider sent no code.",
        );
    };
    let config = match enabled_config(identity, &tenant.id, &provider).await {
        Ok(config) => config,
        Err(response) => return response,
    };
    let redirect_uri = callback_uri(identity, tenant.id.as_str(), &provider);
    let person = identity
        .upstream_identity(
            &tenant.id,
            &config,
            code,
            &redirect_uri,
            &pending.verifier,
            &pending.nonce,
        )
        .await;
    let user = match person {
        Ok((email, subject, first, last)) => {
            identity
                .sso_user(&tenant.id, &config, email, &subject, first, last)
                .await
        }
        Err(error) => Err(error),
    };
    let user = match user {
        Ok(user) => user,
        Err(IdentityError::Forbidden(why)) => {
            tracing::warn!(tenant = tenant.id.as_str(), provider = %provider, reason = %why, "upstream sign-in refused");
            return refused(StatusCode::FORBIDDEN, &why);
        }
        Err(error) => return crate::error::ApiError::from(error).into_response(),
    };
    let mut response = signed_in(identity, &tenant, &user, pending.continuation.as_deref()).await;
    let cleared = set_cookie(COOKIE, "", &format!("/sas/{}/sso", tenant.id.as_str()), 0);
    if let Ok(value) = HeaderValue::from_str(&cleared) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}
