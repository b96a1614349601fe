//! Discovery (OIDC Discovery 1.0, RFC 8414) and the JWKS.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use openframe_storage::model::TenantId;

use super::{OAuthReply, tenant};
use crate::identity::Identity;
use crate::identity::rules::SUPPORTED_SCOPES;
use crate::startup::AppState;

fn metadata(identity: &Identity, tenant: &TenantId) -> serde_json::Value {
    let issuer = identity.issuer(tenant);
    serde_json::json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/oauth2/authorize"),
        "token_endpoint": format!("{issuer}/oauth2/token"),
        "jwks_uri": format!("{issuer}/oauth2/jwks"),
        "userinfo_endpoint": format!("{issuer}/userinfo"),
        "end_session_endpoint": format!("{issuer}/connect/logout"),
        "introspection_endpoint": format!("{issuer}/oauth2/introspect"),
        "revocation_endpoint": format!("{issuer}/oauth2/revoke"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "scopes_supported": SUPPORTED_SCOPES,
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "code_challenge_methods_supported": ["S256"],
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "at_hash", "azp",
            "email", "email_verified", "name", "given_name", "family_name", "tenant_id", "userId", "roles"],
        "authorization_response_iss_parameter_supported": true,
        "request_parameter_supported": false,
        "request_uri_parameter_supported": false,
        "claims_parameter_supported": false,
    })
}

fn cacheable(body: serde_json::Value, max_age: &'static str) -> Response {
    let mut response = Json(body).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static(max_age));
    response
}

pub(super) async fn openid_configuration(
    State(state): State<AppState>,
    Path(raw): Path<String>,
) -> Result<Response, OAuthReply> {
    let tenant = tenant(&state.identity, &raw).await?;
    Ok(cacheable(
        metadata(&state.identity, &tenant.id),
        "public, max-age=300",
    ))
}

pub(super) async fn authorization_server_metadata(
    State(state): State<AppState>,
    Path(raw): Path<String>,
) -> Result<Response, OAuthReply> {
    let tenant = tenant(&state.identity, &raw).await?;
    let mut body = metadata(&state.identity, &tenant.id);
    if let Some(object) = body.as_object_mut() {
        object.remove("userinfo_endpoint");
        object.remove("end_session_endpoint");
        object.remove("subject_types_supported");
        object.remove("id_token_signing_alg_values_supported");
        object.remove("claims_supported");
    }
    Ok(cacheable(body, "public, max-age=300"))
}

pub(super) async fn jwks(
    State(state): State<AppState>,
    Path(raw): Path<String>,
) -> Result<Response, OAuthReply> {
    let tenant = tenant(&state.identity, &raw).await?;
    let keys = state
        .identity
        .keys
        .jwks(&tenant.id)
        .await
        .map_err(|error| {
            OAuthReply::from(crate::identity::tokens::OAuthError::Unexpected(error))
        })?;
    // Short: a rotation's lead time is far longer, so caches always learn a key before it signs.
    Ok(cacheable(keys, "public, max-age=60"))
}
