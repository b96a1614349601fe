//! The browser side: the authorization endpoint, the sign-in form and RP-initiated logout.
//!
//! Before `client_id` and `redirect_uri` are known good, errors are pages, never redirects
//! (RFC 6749 §4.1.2.1), so the endpoint cannot be used to bounce browsers to arbitrary sites.
//! Sign-in sets a session cookie scoped to `/sas/{tenant}`; the CSRF token of the form is a MAC
//! over a cookie nonce, so a cross-site form post cannot forge it.

use std::collections::HashMap;

use axum::Extension;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use openframe_storage::documents::Tenant;

use super::{
    OAuthParams, PeerAddr, cookie, escape_html, no_store, page, parameters, peer_ip, set_cookie,
    tenant,
};
use crate::domain::Email;
use crate::identity::Identity;
use crate::identity::crypto::{random_token, sha256_hex, sign_value, verify_signed_value};
use crate::identity::rules;
use crate::identity::store::{SessionRecord, UserRecord};
use crate::identity::tokens::CodeRequest;
use crate::startup::AppState;

/// The sign-in session's cookie, one per tenant. Its path is `/` so that `/oauth/logout` (the
/// browser client's logout) can end it too, not only `/sas/{tenant}/connect/logout`.
pub(super) fn session_cookie(tenant: &Tenant) -> String {
    format!("of_sas_session_{}", tenant.id.as_str())
}
const CSRF_COOKIE: &str = "of_csrf";

fn error_page(status: StatusCode, message: &str) -> Response {
    page(
        status,
        "Sign-in request refused",
        &format!("<p>{}</p>", escape_html(message)),
    )
}

fn tenant_prefix(tenant: &Tenant) -> String {
    format!("/sas/{}", tenant.id.as_str())
}

/// The path's tenant and the request's parameters, or the page that says what is wrong.
async fn tenant_and_parameters(
    identity: &Identity,
    raw: &str,
    pairs: Vec<(String, String)>,
) -> Result<(Tenant, HashMap<String, String>), Response> {
    let tenant = tenant(identity, raw)
        .await
        .map_err(IntoResponse::into_response)?;
    let params =
        parameters(pairs).map_err(|problem| error_page(StatusCode::BAD_REQUEST, &problem))?;
    Ok((tenant, params))
}

/// The signed-in user of this tenant's session cookie, if the session is live.
async fn current_session(
    identity: &Identity,
    tenant: &Tenant,
    headers: &HeaderMap,
) -> Result<Option<(SessionRecord, UserRecord)>, Response> {
    let Some(value) = cookie(headers, &session_cookie(tenant)) else {
        return Ok(None);
    };
    let failed = |error: openframe_storage::error::DocumentError| {
        tracing::warn!(%error, "session lookup failed");
        error_page(
            StatusCode::SERVICE_UNAVAILABLE,
            "The sign-in service is unavailable; retry shortly.",
        )
    };
    let Some(session) = identity
        .store
        .session(&tenant.id, &sha256_hex(value.as_bytes()))
        .await
        .map_err(failed)?
    else {
        return Ok(None);
    };
    if session.expires_at <= identity.clock.now_ms() {
        return Ok(None);
    }
    match identity
        .store
        .user(&tenant.id, &session.user_id)
        .await
        .map_err(failed)?
    {
        Some(user) if user.record.is_active() => Ok(Some((session, user.record))),
        _ => Ok(None),
    }
}

pub(super) async fn authorize(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    headers: HeaderMap,
    OAuthParams(pairs): OAuthParams,
) -> Response {
    let identity = &state.identity;
    let (tenant, params) = match tenant_and_parameters(identity, &raw, pairs).await {
        Ok(resolved) => resolved,
        Err(response) => return response,
    };
    let Some(client_id) = params.get("client_id") else {
        return error_page(StatusCode::BAD_REQUEST, "client_id is missing.");
    };
    let client = match identity.client(&tenant.id, client_id).await {
        Ok(Some(client)) => client,
        Ok(None) => {
            return error_page(
                StatusCode::BAD_REQUEST,
                "The client is not registered with this organisation.",
            );
        }
        Err(error) => return super::OAuthReply::from(error).into_response(),
    };
    let Some(redirect_uri) = params.get("redirect_uri") else {
        return error_page(StatusCode::BAD_REQUEST, "redirect_uri is missing.");
    };
    if !rules::redirect_uri_registered(&client.redirect_uris, redirect_uri) {
        tracing::warn!(tenant = tenant.id.as_str(), client_id = %client.client_id, "authorize with an unregistered redirect_uri");
        return error_page(
            StatusCode::BAD_REQUEST,
            "redirect_uri is not registered for this client.",
        );
    }

    // From here on, errors go back to the client's registered redirect URI.
    let issuer = identity.issuer(&tenant.id);
    let state_param = params.get("state").map(String::as_str);
    let back = |pairs: &[(&str, &str)]| -> Response {
        let mut all: Vec<(&str, &str)> = pairs.to_vec();
        if let Some(value) = state_param {
            all.push(("state", value));
        }
        all.push(("iss", &issuer));
        match rules::with_query(redirect_uri, &all) {
            Ok(location) => redirect_found(&location),
            Err(_) => error_page(StatusCode::BAD_REQUEST, "redirect_uri is not a valid URL."),
        }
    };
    let refuse = |code: &str, description: &str| {
        back(&[("error", code), ("error_description", description)])
    };

    if params.get("response_type").map(String::as_str) != Some("code") {
        return refuse("unsupported_response_type", "response_type must be code");
    }
    if params
        .get("response_mode")
        .is_some_and(|mode| mode != "query")
    {
        return refuse("invalid_request", "response_mode must be query");
    }
    if params.contains_key("request") || params.contains_key("request_uri") {
        return refuse("request_not_supported", "request objects are not supported");
    }
    if !client.allows_grant("authorization_code") {
        return refuse(
            "unauthorized_client",
            "this client may not use the authorization code grant",
        );
    }
    let scope = match rules::parse_scope(
        params.get("scope").map_or("", String::as_str),
        &client.scopes,
    ) {
        Ok(scope) => scope,
        Err(problem) => return refuse("invalid_scope", &problem),
    };
    let challenge = params.get("code_challenge");
    match (
        challenge,
        params.get("code_challenge_method").map(String::as_str),
    ) {
        (None, _) if client.require_pkce => {
            return refuse(
                "invalid_request",
                "code_challenge is required (PKCE with S256)",
            );
        }
        (None, _) => {}
        (Some(_), Some("S256")) => {}
        (Some(_), None | Some("plain")) => {
            return refuse(
                "invalid_request",
                "code_challenge_method must be S256; plain is not accepted",
            );
        }
        (Some(_), Some(_)) => {
            return refuse("invalid_request", "code_challenge_method must be S256");
        }
    }
    if challenge.is_some_and(|challenge| !rules::is_valid_s256_challenge(challenge)) {
        return refuse(
            "invalid_request",
            "code_challenge must be 43 base64url characters (S256)",
        );
    }

    let prompt: Vec<&str> = params
        .get("prompt")
        .map_or_else(Vec::new, |p| p.split(' ').collect());
    let session = match current_session(identity, &tenant, &headers).await {
        Ok(session) => session,
        Err(response) => return response,
    };
    let session = if prompt.contains(&"login") {
        None
    } else {
        session
    };
    let Some((session, user)) = session else {
        if prompt.contains(&"none") {
            return refuse("login_required", "the user is not signed in");
        }
        // Come back here after signing in, without `prompt`, so prompt=login does not loop.
        let mut continuation: Vec<(&String, &String)> = params
            .iter()
            .filter(|(name, _)| *name != "prompt")
            .collect();
        continuation.sort();
        let query = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(continuation)
            .finish();
        let target = format!("{}/oauth2/authorize?{query}", tenant_prefix(&tenant));
        let login = format!(
            "{}/login?{}",
            tenant_prefix(&tenant),
            url::form_urlencoded::Serializer::new(String::new())
                .append_pair("return", &target)
                .finish()
        );
        return redirect_found(&login);
    };

    let request = CodeRequest {
        client_id: client.client_id.clone(),
        user_id: user.id.clone(),
        redirect_uri: redirect_uri.clone(),
        scope,
        nonce: params.get("nonce").cloned(),
        code_challenge: challenge.cloned(),
        auth_time: session.auth_time,
    };
    match identity.issue_code(&tenant.id, request).await {
        Ok(code) => back(&[("code", &code)]),
        Err(error) => super::OAuthReply::from(error).into_response(),
    }
}

fn redirect_found(location: &str) -> Response {
    let mut response = StatusCode::FOUND.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    no_store(response.headers_mut());
    response
}

fn login_form(
    tenant: &Tenant,
    csrf: &str,
    continuation: Option<&str>,
    email: &str,
    message: Option<&str>,
    providers: &[(String, String)],
) -> String {
    let return_query = continuation.map_or_else(String::new, |target| {
        format!(
            "?{}",
            url::form_urlencoded::Serializer::new(String::new())
                .append_pair("return", target)
                .finish()
        )
    });
    let sso: String = providers
        .iter()
        .map(|(id, name)| {
            format!(
                "<p><a href=\"{prefix}/sso/{id}{query}\">Sign in with {name}</a></p>",
                prefix = escape_html(&tenant_prefix(tenant)),
                id = escape_html(id),
                query = escape_html(&return_query),
                name = escape_html(name),
            )
        })
        .collect();
    let notice = message.map_or_else(String::new, |message| {
        format!("<p role=\"alert\">{}</p>", escape_html(message))
    });
    let continuation = continuation.map_or_else(String::new, |target| {
        format!(
            "<input type=\"hidden\" name=\"return\" value=\"{}\">",
            escape_html(target)
        )
    });
    format!(
        "<p>Sign in to {name}.</p>{notice}\
         <form method=\"post\" action=\"{prefix}/login\">\
         <input type=\"hidden\" name=\"_csrf\" value=\"{csrf}\">{continuation}\
         <label>Email <input name=\"username\" type=\"email\" autocomplete=\"username\" value=\"{email}\" required></label>\
         <label>Password <input name=\"password\" type=\"password\" autocomplete=\"current-password\" required></label>\
         <button type=\"submit\">Sign in</button></form>{sso}",
        name = escape_html(&tenant.name),
        prefix = escape_html(&tenant_prefix(tenant)),
        csrf = escape_html(csrf),
        email = escape_html(email),
    )
}

/// A fresh CSRF pair: the cookie's nonce and the form's MAC over tenant and nonce.
fn csrf_pair(identity: &Identity, tenant: &Tenant) -> anyhow::Result<(String, String)> {
    let nonce = random_token()?;
    let key = identity.master().mac_key("csrf");
    let token = sign_value(&key, &format!("{}:{nonce}", tenant.id.as_str()));
    Ok((nonce, token))
}

fn csrf_ok(
    identity: &Identity,
    tenant: &Tenant,
    headers: &HeaderMap,
    token: Option<&String>,
) -> bool {
    let (Some(nonce), Some(token)) = (cookie(headers, CSRF_COOKIE), token) else {
        return false;
    };
    let key = identity.master().mac_key("csrf");
    verify_signed_value(&key, token) == Some(format!("{}:{nonce}", tenant.id.as_str()).as_str())
}

async fn render_login(
    identity: &Identity,
    tenant: &Tenant,
    status: StatusCode,
    continuation: Option<&str>,
    email: &str,
    message: Option<&str>,
) -> Response {
    let providers = identity.sso_buttons(&tenant.id).await;
    let (nonce, token) = match csrf_pair(identity, tenant) {
        Ok(pair) => pair,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "cannot make a CSRF token");
            return error_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "The sign-in page cannot be shown; see the appliance's log.",
            );
        }
    };
    let mut response = page(
        status,
        "Sign in",
        &login_form(tenant, &token, continuation, email, message, &providers),
    );
    let csrf_cookie = set_cookie(
        CSRF_COOKIE,
        &nonce,
        &format!("{}/login", tenant_prefix(tenant)),
        3600,
    );
    if let Ok(value) = HeaderValue::from_str(&csrf_cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

pub(super) async fn login_page(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let identity = &state.identity;
    let tenant = match tenant(identity, &raw).await {
        Ok(tenant) => tenant,
        Err(reply) => return reply.into_response(),
    };
    let continuation = query
        .get("return")
        .map(String::as_str)
        .filter(|target| rules::is_safe_continuation(&tenant_prefix(&tenant), target));
    // The authorization request's `login_hint` (OIDC Core §3.1.2.1) fills in the email.
    let hint = continuation
        .and_then(|target| url::Url::parse(&format!("https://hint.invalid{target}")).ok())
        .and_then(|target| {
            target
                .query_pairs()
                .find(|(name, _)| name == "login_hint")
                .map(|(_, value)| value.chars().take(254).collect::<String>())
        })
        .unwrap_or_default();
    render_login(identity, &tenant, StatusCode::OK, continuation, &hint, None).await
}

pub(super) async fn login_submit(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    peer: Option<Extension<PeerAddr>>,
    headers: HeaderMap,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    let identity = &state.identity;
    let tenant = match tenant(identity, &raw).await {
        Ok(tenant) => tenant,
        Err(reply) => return reply.into_response(),
    };
    let form = match parameters(pairs) {
        Ok(form) => form,
        Err(problem) => return error_page(StatusCode::BAD_REQUEST, &problem),
    };
    let continuation = form
        .get("return")
        .map(String::as_str)
        .filter(|target| rules::is_safe_continuation(&tenant_prefix(&tenant), target));
    let typed_email = form.get("username").map_or("", String::as_str);
    if !csrf_ok(identity, &tenant, &headers, form.get("_csrf")) {
        return render_login(
            identity,
            &tenant,
            StatusCode::FORBIDDEN,
            continuation,
            typed_email,
            Some("The sign-in form expired or did not come from this site. Please try again."),
        )
        .await;
    }
    let password_given = form.get("password").cloned().unwrap_or_default();
    let wrong = "Wrong email or password.";
    let Ok(email) = Email::parse(typed_email) else {
        return render_login(
            identity,
            &tenant,
            StatusCode::UNAUTHORIZED,
            continuation,
            typed_email,
            Some(wrong),
        )
        .await;
    };
    if password_given.chars().count() > crate::domain::MAX_PASSWORD_CHARS {
        return render_login(
            identity,
            &tenant,
            StatusCode::UNAUTHORIZED,
            continuation,
            email.as_str(),
            Some(wrong),
        )
        .await;
    }
    let account = format!("{}/{}", tenant.id.as_str(), email.as_str());
    let address = peer_ip(peer.as_ref().map(|Extension(peer)| peer));
    if let Err(wait) = identity.throttle.check(&account, address) {
        identity.security_event(
            "signin_throttled",
            Some(&tenant.id),
            &[("address", address.to_string())],
        );
        tracing::warn!(tenant = tenant.id.as_str(), %address, "sign-in refused: too many failed attempts");
        let minutes = wait.0.div_ceil(60);
        let mut response = render_login(
            identity,
            &tenant,
            StatusCode::TOO_MANY_REQUESTS,
            continuation,
            email.as_str(),
            Some(&format!(
                "Too many failed sign-in attempts. Try again in {minutes} minute(s)."
            )),
        )
        .await;
        if let Ok(value) = HeaderValue::from_str(&wait.0.to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        return response;
    }
    let user = match identity.store.user_by_email(&tenant.id, &email).await {
        Ok(user) => user.map(|user| user.record),
        Err(error) => {
            tracing::warn!(%error, "user lookup failed");
            return error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                "The sign-in service is unavailable; retry shortly.",
            );
        }
    };
    let stored_hash = user.as_ref().and_then(|user| user.password_hash.clone());
    let matches = match identity.passwords.verify(password_given, stored_hash).await {
        Ok(matches) => matches,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "password verification failed");
            return error_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Sign-in failed; see the appliance's log.",
            );
        }
    };
    let user = match user {
        Some(user) if matches && user.is_active() => user,
        _ => {
            identity.throttle.record_failure(&account, address);
            identity.security_event(
                "signin_failed",
                Some(&tenant.id),
                &[("address", address.to_string())],
            );
            tracing::info!(tenant = tenant.id.as_str(), %address, "sign-in failed");
            return render_login(
                identity,
                &tenant,
                StatusCode::UNAUTHORIZED,
                continuation,
                email.as_str(),
                Some(wrong),
            )
            .await;
        }
    };
    identity.throttle.record_success(&account, address);

    signed_in(identity, &tenant, &user, continuation).await
}

/// Starts a sign-in session for `user` and continues to `continuation` (or a "signed in" page).
/// Shared by the password form and upstream SSO.
pub(super) async fn signed_in(
    identity: &Identity,
    tenant: &Tenant,
    user: &UserRecord,
    continuation: Option<&str>,
) -> Response {
    let (session_value, session) = match new_session(identity, user) {
        Ok(pair) => pair,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "cannot create a session");
            return error_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Sign-in failed; see the appliance's log.",
            );
        }
    };
    if let Err(error) = identity
        .store
        .insert_session(&tenant.id, &sha256_hex(session_value.as_bytes()), &session)
        .await
    {
        tracing::warn!(%error, "cannot store a session");
        return error_page(
            StatusCode::SERVICE_UNAVAILABLE,
            "The sign-in service is unavailable; retry shortly.",
        );
    }
    tracing::info!(tenant = tenant.id.as_str(), user_id = %user.id, "signed in");
    let mut response = match continuation {
        Some(target) => Redirect::to(target).into_response(),
        None => page(
            StatusCode::OK,
            "Signed in",
            "<p>You are signed in. You can close this page.</p>",
        ),
    };
    let cookie_value = set_cookie(
        &session_cookie(tenant),
        &session_value,
        "/",
        identity.settings.session_ttl.as_secs(),
    );
    if let Ok(value) = HeaderValue::from_str(&cookie_value) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    no_store(response.headers_mut());
    response
}

fn new_session(identity: &Identity, user: &UserRecord) -> anyhow::Result<(String, SessionRecord)> {
    let now = identity.clock.now_ms();
    let ttl = i64::try_from(identity.settings.session_ttl.as_millis()).unwrap_or(i64::MAX / 2);
    Ok((
        random_token()?,
        SessionRecord {
            user_id: user.id.clone(),
            auth_time: now,
            expires_at: now + ttl,
        },
    ))
}

/// OIDC RP-Initiated Logout 1.0: ends the session here and returns to the client only if the
/// `post_logout_redirect_uri` is registered for it.
pub(super) async fn logout(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    headers: HeaderMap,
    OAuthParams(pairs): OAuthParams,
) -> Response {
    let identity = &state.identity;
    // Without an ID token hint (which proves a relying party sent the browser here), a
    // cross-site request is refused rather than allowed to sign the person out.
    if super::started_by_another_site(&headers)
        && !pairs.iter().any(|(name, _)| name == "id_token_hint")
    {
        return error_page(
            StatusCode::FORBIDDEN,
            "Sign-out must be started from this appliance or with an id_token_hint.",
        );
    }
    let (tenant, params) = match tenant_and_parameters(identity, &raw, pairs).await {
        Ok(resolved) => resolved,
        Err(response) => return response,
    };
    // Which client is asking: from the ID token hint (signature checked, expiry not: a hint
    // may be old) or from client_id.
    let mut client_id = params.get("client_id").cloned();
    if let Some(hint) = params.get("id_token_hint") {
        match identity
            .keys
            .verify::<serde_json::Value>(&tenant.id, hint)
            .await
        {
            Ok(claims) if claims["iss"] == identity.issuer(&tenant.id) => {
                let audience = claims["aud"].as_str().map(str::to_owned);
                if client_id.is_some() && client_id != audience {
                    return error_page(
                        StatusCode::BAD_REQUEST,
                        "client_id does not match the id_token_hint.",
                    );
                }
                client_id = audience;
            }
            _ => {
                return error_page(
                    StatusCode::BAD_REQUEST,
                    "id_token_hint is not an ID token of this organisation.",
                );
            }
        }
    }
    let mut destination = None;
    if let Some(uri) = params.get("post_logout_redirect_uri") {
        let client = match &client_id {
            Some(id) => identity.client(&tenant.id, id).await.ok().flatten(),
            None => None,
        };
        let registered = client.is_some_and(|client| {
            rules::redirect_uri_registered(&client.post_logout_redirect_uris, uri)
        });
        if !registered {
            return error_page(
                StatusCode::BAD_REQUEST,
                "post_logout_redirect_uri is not registered for this client.",
            );
        }
        let mut pairs: Vec<(&str, &str)> = Vec::new();
        if let Some(state_value) = params.get("state") {
            pairs.push(("state", state_value));
        }
        destination = rules::with_query(uri, &pairs).ok();
    }
    if let Err(error) = end_session(identity, &tenant, &headers).await {
        tracing::warn!(%error, "cannot delete a session");
        return error_page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Signing out failed; retry shortly.",
        );
    }
    let mut response = match destination {
        Some(location) => redirect_found(&location),
        None => page(StatusCode::OK, "Signed out", "<p>You are signed out.</p>"),
    };
    clear_session_cookie(&tenant, response.headers_mut());
    response
}

/// Ends the tenant's sign-in session named by the request's cookie, if any.
pub(super) async fn end_session(
    identity: &Identity,
    tenant: &Tenant,
    headers: &HeaderMap,
) -> Result<(), openframe_storage::error::DocumentError> {
    match cookie(headers, &session_cookie(tenant)) {
        Some(value) => {
            identity
                .store
                .delete_session(&tenant.id, &sha256_hex(value.as_bytes()))
                .await
        }
        None => Ok(()),
    }
}

pub(super) fn clear_session_cookie(tenant: &Tenant, headers: &mut HeaderMap) {
    let cleared = set_cookie(&session_cookie(tenant), "", "/", 0);
    if let Ok(value) = HeaderValue::from_str(&cleared) {
        headers.append(header::SET_COOKIE, value);
    }
}
