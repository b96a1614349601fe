//! The provider's HTTP endpoints under `/sas/{tenant}`: OpenFrame's Spring Authorization Server
//! paths. Every path first resolves the tenant; an unknown, malformed or suspended tenant gets
//! 404 `invalid_tenant`, whatever the path.
//!
//! OAuth endpoints answer errors with RFC 6749 §5.2 bodies (`error`, `error_description`) and
//! `Cache-Control: no-store`; the browser-facing ones (authorize, login, logout) render pages
//! and never redirect anywhere that is not registered.

pub mod accounts;
mod authorize;
pub mod bff;
mod discovery;
pub mod sso;
mod token;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{any, get, post};
use openframe_storage::documents::Tenant;

use super::tokens::OAuthError;
use super::{Identity, IdentityError};
use crate::startup::AppState;

/// Requests to these endpoints are small forms; anything bigger is an attack or a mistake.
const MAX_BODY_BYTES: usize = 16 * 1024;

/// The parameters of an endpoint that takes both GET (query) and POST (form), as OIDC asks of
/// the authorization and logout endpoints.
#[derive(Debug)]
pub(crate) struct OAuthParams(pub(crate) Vec<(String, String)>);

impl<S: Send + Sync> axum::extract::FromRequest<S> for OAuthParams {
    type Rejection = Response;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, Response> {
        if request.method() == axum::http::Method::GET {
            let query = axum::extract::Query::<Vec<(String, String)>>::from_request(request, state)
                .await
                .map_err(IntoResponse::into_response)?;
            Ok(OAuthParams(query.0))
        } else {
            let form = axum::extract::Form::<Vec<(String, String)>>::from_request(request, state)
                .await
                .map_err(IntoResponse::into_response)?;
            Ok(OAuthParams(form.0))
        }
    }
}

/// The client's address, attached to each request by the accept loop.
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub SocketAddr);

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/sas/{tenant}/.well-known/openid-configuration",
            get(discovery::openid_configuration),
        )
        .route(
            "/sas/{tenant}/.well-known/oauth-authorization-server",
            get(discovery::authorization_server_metadata),
        )
        // RFC 8414 §3 places metadata for an issuer with a path here.
        .route(
            "/.well-known/oauth-authorization-server/sas/{tenant}",
            get(discovery::authorization_server_metadata),
        )
        .route("/sas/{tenant}/oauth2/jwks", get(discovery::jwks))
        .route(
            "/sas/{tenant}/oauth2/authorize",
            get(authorize::authorize).post(authorize::authorize),
        )
        .route(
            "/sas/{tenant}/login",
            get(authorize::login_page).post(authorize::login_submit),
        )
        .route(
            "/sas/{tenant}/connect/logout",
            get(authorize::logout).post(authorize::logout),
        )
        .route("/sas/{tenant}/sso/{provider}", get(sso::start))
        .route("/sas/{tenant}/sso/{provider}/callback", get(sso::callback))
        .route("/sas/{tenant}/oauth2/token", post(token::token))
        .route("/sas/{tenant}/oauth2/introspect", post(token::introspect))
        .route("/sas/{tenant}/oauth2/revoke", post(token::revoke))
        .route(
            "/sas/{tenant}/userinfo",
            get(token::userinfo).post(token::userinfo),
        )
        .route("/sas/{tenant}/{*rest}", any(unknown_path))
        .route("/oauth/login", get(bff::login))
        .route("/sas/oauth/register", post(accounts::register))
        .route("/sas/invitations/accept", post(accounts::accept_invitation))
        .route(
            "/sas/password-reset/request",
            post(accounts::request_password_reset),
        )
        .route(
            "/sas/password-reset/confirm",
            post(accounts::confirm_password_reset),
        )
        .route("/sas/tenant/discover", get(accounts::discover))
        .route(
            "/api/invitations",
            get(accounts::list_invitations).post(accounts::create_invitation),
        )
        .route(
            "/api/invitations/{id}",
            axum::routing::delete(accounts::revoke_invitation),
        )
        .route(
            "/api/invitations/{id}/resend",
            post(accounts::resend_invitation),
        )
        .route("/api/identity/outbox", get(accounts::outbox))
        .route("/oauth/callback", get(bff::callback))
        .route("/oauth/refresh", post(bff::refresh))
        .route("/oauth/logout", get(bff::logout))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
}

/// Under a tenant, a path we do not serve: `invalid_tenant` first, so probing paths does not
/// reveal which tenants exist.
async fn unknown_path(
    axum::extract::State(state): axum::extract::State<AppState>,
    axum::extract::Path((tenant, rest)): axum::extract::Path<(String, String)>,
    method: axum::http::Method,
) -> Response {
    if let Err(error) = state.identity.active_tenant(&tenant).await {
        return OAuthReply::from(OAuthError::from(error)).into_response();
    }
    crate::error::ApiError::RouteNotFound {
        method: method.to_string(),
        path: format!(
            "/sas/{tenant}/{}",
            rest.chars().take(200).collect::<String>()
        ),
    }
    .into_response()
}

/// An OAuth error as HTTP.
#[derive(Debug)]
pub(crate) struct OAuthReply {
    status: StatusCode,
    code: &'static str,
    description: String,
    www_authenticate: Option<String>,
}

impl OAuthReply {
    pub(crate) fn new(
        status: StatusCode,
        code: &'static str,
        description: impl Into<String>,
    ) -> Self {
        OAuthReply {
            status,
            code,
            description: description.into(),
            www_authenticate: None,
        }
    }

    fn with_challenge(mut self, challenge: String) -> Self {
        self.www_authenticate = Some(challenge);
        self
    }
}

impl From<OAuthError> for OAuthReply {
    fn from(error: OAuthError) -> Self {
        match error {
            OAuthError::Rejected { code, description } => {
                let status = match code {
                    "invalid_client" => StatusCode::UNAUTHORIZED,
                    "invalid_tenant" => StatusCode::NOT_FOUND,
                    _ => StatusCode::BAD_REQUEST,
                };
                OAuthReply::new(status, code, description)
            }
            OAuthError::Unavailable(detail) => {
                tracing::warn!(%detail, "identity store unavailable");
                OAuthReply::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "temporarily_unavailable",
                    "a store is unavailable; retry shortly",
                )
            }
            OAuthError::Unexpected(error) => {
                tracing::error!(error = format!("{error:#}"), "unexpected identity error");
                OAuthReply::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "server_error",
                    "an unexpected error occurred; the details are in the appliance's log",
                )
            }
        }
    }
}

impl From<IdentityError> for OAuthReply {
    fn from(error: IdentityError) -> Self {
        OAuthReply::from(OAuthError::from(error))
    }
}

impl IntoResponse for OAuthReply {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.code, "error_description": self.description });
        let mut response = (self.status, axum::Json(body)).into_response();
        no_store(response.headers_mut());
        if let Some(challenge) = self.www_authenticate
            && let Ok(value) = HeaderValue::from_str(&challenge)
        {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, value);
        }
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        response
    }
}

/// Token responses and anything carrying a secret must not be cached (RFC 6749 §5.1).
pub(crate) fn no_store(headers: &mut HeaderMap) {
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

/// Resolves the path's tenant or answers `invalid_tenant`.
pub(crate) async fn tenant(identity: &Identity, raw: &str) -> Result<Tenant, OAuthReply> {
    identity.active_tenant(raw).await.map_err(OAuthReply::from)
}

/// Form or query parameters as a map. A repeated parameter is an error (RFC 6749 §3.1), and so
/// is an oversized one.
pub(crate) fn parameters(pairs: Vec<(String, String)>) -> Result<HashMap<String, String>, String> {
    let mut map = HashMap::with_capacity(pairs.len());
    for (name, value) in pairs {
        if value.len() > super::rules::MAX_PARAMETER_CHARS {
            return Err(format!(
                "parameter {:?} is longer than {} characters",
                name.chars().take(40).collect::<String>(),
                super::rules::MAX_PARAMETER_CHARS
            ));
        }
        if map.contains_key(&name) {
            return Err(format!(
                "parameter {:?} appears more than once",
                name.chars().take(40).collect::<String>()
            ));
        }
        map.insert(name, value);
    }
    Ok(map)
}

/// Whether the browser says another site started this request (`Sec-Fetch-Site: cross-site`).
/// Sign-out by GET is OpenFrame's interface; a hostile page must not be able to sign people
/// out by pointing an image or a link at it.
pub(crate) fn started_by_another_site(headers: &HeaderMap) -> bool {
    headers
        .get("sec-fetch-site")
        .and_then(|value| value.to_str().ok())
        .is_some_and(|site| site.eq_ignore_ascii_case("cross-site"))
}

pub(crate) fn peer_ip(peer: Option<&PeerAddr>) -> IpAddr {
    peer.map_or(IpAddr::from([0, 0, 0, 0]), |peer| peer.0.ip())
}

/// The value of cookie `name`, if the request carries it.
pub(crate) fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_owned())
}

/// A `Set-Cookie` value with the attributes every identity cookie has.
pub(crate) fn set_cookie(name: &str, value: &str, path: &str, max_age_seconds: u64) -> String {
    format!(
        "{name}={value}; Path={path}; Max-Age={max_age_seconds}; HttpOnly; Secure; SameSite=Lax"
    )
}

pub(crate) fn escape_html(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            other => escaped.push(other),
        }
    }
    escaped
}

/// A small server-rendered page: the login form, errors that must not redirect, sign-out.
pub(crate) fn page(status: StatusCode, title: &str, body_html: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"color-scheme\" content=\"light dark\">\
         <link rel=\"stylesheet\" href=\"/assets/app.css\">\
         <title>{title} · OpenFrame</title></head><body class=\"centered\">\
         <main class=\"card narrow sign-in\"><h1>{title}</h1>{body_html}</main></body></html>",
        title = escape_html(title)
    );
    let mut response = (status, Html(html)).into_response();
    no_store(response.headers_mut());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_and_oversized_parameters_are_refused() {
        let ok = parameters(vec![("a".into(), "1".into()), ("b".into(), "2".into())]).unwrap();
        assert_eq!(ok["b"], "2");
        let repeated = parameters(vec![("a".into(), "1".into()), ("a".into(), "2".into())]);
        assert_eq!(
            repeated.unwrap_err(),
            "parameter \"a\" appears more than once"
        );
        let huge = parameters(vec![("state".into(), "x".repeat(5000))]);
        assert!(huge.unwrap_err().contains("longer than 2048"));
    }

    #[test]
    fn cookies_are_found_by_exact_name() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("of_x=1; of_sas_session=abc; other=2"),
        );
        assert_eq!(cookie(&headers, "of_sas_session").as_deref(), Some("abc"));
        assert_eq!(cookie(&headers, "sas_session"), None);
    }

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            escape_html("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }
}
