//! The token, introspection and revocation endpoints (client-authenticated, form-encoded) and
//! userinfo (bearer-authenticated).

use axum::Json;
use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use openframe_storage::documents::Tenant;
use std::collections::HashMap;

use super::{OAuthReply, no_store, parameters, tenant};
use crate::identity::Identity;
use crate::identity::crypto::{constant_time_eq, sha256_hex};
use crate::identity::store::ClientRecord;
use crate::identity::tokens::{OAuthError, TokenRejected};
use crate::startup::AppState;

fn invalid_request(description: impl Into<String>) -> OAuthReply {
    OAuthReply::new(StatusCode::BAD_REQUEST, "invalid_request", description)
}

/// Who is calling: RFC 6749 §2.3 with `client_secret_basic`, `client_secret_post`, or `none`
/// (a public client naming itself) where `allow_public`.
async fn authenticate_client(
    identity: &Identity,
    tenant: &Tenant,
    headers: &HeaderMap,
    form: &HashMap<String, String>,
    allow_public: bool,
) -> Result<ClientRecord, OAuthReply> {
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Basic "));
    let challenge = format!("Basic realm=\"{}\"", identity.issuer(&tenant.id));
    let refuse = |description: &str| {
        let reply = OAuthReply::new(StatusCode::UNAUTHORIZED, "invalid_client", description);
        if basic.is_some() {
            reply.with_challenge(challenge.clone())
        } else {
            reply
        }
    };
    let (client_id, secret) = match (basic, form.get("client_secret")) {
        (Some(_), Some(_)) => {
            return Err(invalid_request(
                "use one client authentication method, not both Basic and client_secret",
            ));
        }
        (Some(encoded), None) => {
            let decoded = STANDARD
                .decode(encoded.trim())
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .ok_or_else(|| refuse("the Basic credentials are not valid base64"))?;
            let (id, secret) = decoded
                .split_once(':')
                .ok_or_else(|| refuse("the Basic credentials must be client_id:client_secret"))?;
            // RFC 6749 §2.3.1: both parts are form-urlencoded before joining.
            let decode = |part: &str| {
                url::form_urlencoded::parse(format!("x={part}").as_bytes())
                    .next()
                    .map(|(_, value)| value.into_owned())
                    .unwrap_or_default()
            };
            if form
                .get("client_id")
                .is_some_and(|named| *named != decode(id))
            {
                return Err(invalid_request(
                    "client_id in the body differs from the Basic credentials",
                ));
            }
            (decode(id), Some(decode(secret)))
        }
        (None, secret) => {
            let id = form
                .get("client_id")
                .ok_or_else(|| refuse("client authentication is required"))?;
            (id.clone(), secret.cloned())
        }
    };
    let unknown = "the client is unknown or its credentials are wrong";
    let Some(client) = identity
        .client(&tenant.id, &client_id)
        .await
        .map_err(OAuthReply::from)?
    else {
        tracing::info!(tenant = tenant.id.as_str(), client_id = ?client_id.chars().take(64).collect::<String>(), "unknown client");
        return Err(refuse(unknown));
    };
    match (&client.secret_hash, secret) {
        (Some(stored), Some(presented)) => {
            if !constant_time_eq(
                stored.as_bytes(),
                sha256_hex(presented.as_bytes()).as_bytes(),
            ) {
                identity.security_event(
                    "client_auth_failed",
                    Some(&tenant.id),
                    &[("client_id", client.client_id.clone())],
                );
                tracing::warn!(tenant = tenant.id.as_str(), client_id = %client.client_id, "wrong client secret");
                return Err(refuse(unknown));
            }
        }
        (Some(_), None) => {
            return Err(refuse(
                "this client is confidential: authenticate with its secret",
            ));
        }
        (None, Some(_)) => return Err(refuse("this client is public and has no secret")),
        (None, None) if !allow_public => {
            return Err(OAuthReply::new(
                StatusCode::BAD_REQUEST,
                "unauthorized_client",
                "public clients may not use this endpoint or grant",
            ));
        }
        (None, None) => {}
    }
    Ok(client)
}

fn json_no_store(body: impl serde::Serialize) -> Response {
    let mut response = Json(body).into_response();
    no_store(response.headers_mut());
    response
}

pub(super) async fn token(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    headers: HeaderMap,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Result<Response, OAuthReply> {
    let identity = &state.identity;
    let tenant = tenant(identity, &raw).await?;
    let form = parameters(pairs).map_err(invalid_request)?;
    let grant = form
        .get("grant_type")
        .ok_or_else(|| invalid_request("grant_type is required"))?
        .as_str();
    if !matches!(
        grant,
        "authorization_code" | "refresh_token" | "client_credentials"
    ) {
        return Err(OAuthReply::new(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "grant_type must be authorization_code, refresh_token or client_credentials",
        ));
    }
    let client = authenticate_client(
        identity,
        &tenant,
        &headers,
        &form,
        grant != "client_credentials",
    )
    .await?;
    if !client.allows_grant(grant) {
        return Err(OAuthReply::new(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            format!("this client may not use the {grant} grant"),
        ));
    }
    let required = |name: &str| {
        form.get(name)
            .map(String::as_str)
            .ok_or_else(|| invalid_request(format!("{name} is required")))
    };
    let issued = match grant {
        "authorization_code" => {
            identity
                .redeem_code(
                    &tenant.id,
                    &client,
                    required("code")?,
                    form.get("redirect_uri").map(String::as_str),
                    form.get("code_verifier").map(String::as_str),
                )
                .await
        }
        "refresh_token" => {
            identity
                .refresh(
                    &tenant.id,
                    &client,
                    required("refresh_token")?,
                    form.get("scope").map(String::as_str),
                )
                .await
        }
        _ => {
            identity
                .client_credentials(&tenant.id, &client, form.get("scope").map(String::as_str))
                .await
        }
    };
    match issued {
        Ok(response) => Ok(json_no_store(response)),
        Err(error) => {
            if let OAuthError::Rejected { code, description } = &error {
                tracing::info!(tenant = tenant.id.as_str(), client_id = %client.client_id, grant, code, description, "token request refused");
            }
            Err(error.into())
        }
    }
}

/// Introspection and revocation: a client-authenticated form naming one `token`.
async fn token_about(
    state: &AppState,
    raw: &str,
    headers: &HeaderMap,
    pairs: Vec<(String, String)>,
    allow_public: bool,
) -> Result<(Tenant, ClientRecord, String), OAuthReply> {
    let identity = &state.identity;
    let tenant = tenant(identity, raw).await?;
    let form = parameters(pairs).map_err(invalid_request)?;
    let client = authenticate_client(identity, &tenant, headers, &form, allow_public).await?;
    let token = form
        .get("token")
        .ok_or_else(|| invalid_request("token is required"))?;
    Ok((tenant, client, token.clone()))
}

pub(super) async fn introspect(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    headers: HeaderMap,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Result<Response, OAuthReply> {
    let (tenant, client, token) = token_about(&state, &raw, &headers, pairs, false).await?;
    let answer = state
        .identity
        .introspect(&tenant.id, &client, &token)
        .await?;
    Ok(json_no_store(answer))
}

pub(super) async fn revoke(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    headers: HeaderMap,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Result<Response, OAuthReply> {
    let (tenant, client, token) = token_about(&state, &raw, &headers, pairs, true).await?;
    state.identity.revoke(&tenant.id, &client, &token).await?;
    let mut response = StatusCode::OK.into_response();
    no_store(response.headers_mut());
    Ok(response)
}

/// RFC 6750 errors: `WWW-Authenticate: Bearer error=...` and the same in the body.
fn bearer_error(
    identity: &Identity,
    tenant: &Tenant,
    status: StatusCode,
    code: &'static str,
    description: &str,
) -> OAuthReply {
    let challenge = format!(
        "Bearer realm=\"{}\", error=\"{code}\", error_description=\"{}\"",
        identity.issuer(&tenant.id),
        description.replace('"', "'")
    );
    OAuthReply::new(status, code, description).with_challenge(challenge)
}

pub(super) async fn userinfo(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    headers: HeaderMap,
) -> Result<Response, OAuthReply> {
    let identity = &state.identity;
    let tenant = tenant(identity, &raw).await?;
    let Some(token) = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
    else {
        let challenge = format!("Bearer realm=\"{}\"", identity.issuer(&tenant.id));
        return Err(OAuthReply::new(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "a bearer access token is required",
        )
        .with_challenge(challenge));
    };
    let (claims, user) = match identity.verify_user_token(&tenant.id, token.trim()).await {
        Ok(verified) => verified,
        Err(TokenRejected::Invalid(why)) => {
            tracing::info!(tenant = tenant.id.as_str(), reason = %why, "userinfo refused a token");
            return Err(bearer_error(
                identity,
                &tenant,
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                &why,
            ));
        }
        Err(TokenRejected::Failed(error)) => return Err(error.into()),
    };
    if !claims.scope.split(' ').any(|scope| scope == "openid") {
        return Err(bearer_error(
            identity,
            &tenant,
            StatusCode::FORBIDDEN,
            "insufficient_scope",
            "userinfo needs the openid scope",
        ));
    }
    // Verification checked the user is active; a client's own token has no user.
    let Some(user) = user else {
        return Err(bearer_error(
            identity,
            &tenant,
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "the token's user no longer exists or is disabled",
        ));
    };
    let scopes: Vec<&str> = claims.scope.split(' ').collect();
    let mut body = serde_json::json!({
        "sub": claims.sub,
        "tenant_id": tenant.id.as_str(),
        "userId": user.id,
        "roles": claims.roles,
    });
    if scopes.contains(&"email") {
        body["email"] = user.email.clone().into();
        body["email_verified"] = user.email_verified.into();
    }
    if scopes.contains(&"profile") {
        let name = format!("{} {}", user.first_name, user.last_name)
            .trim()
            .to_owned();
        body["name"] = name.into();
        body["given_name"] = user.first_name.clone().into();
        body["family_name"] = user.last_name.clone().into();
    }
    Ok(json_no_store(body))
}
