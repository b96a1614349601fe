//! Edge hygiene applied to every request before routing: request ids, refusal of `Origin: null`
//! and of paths that could mean something else after normalisation, per-address limits for the
//! unauthenticated endpoints, and the optional HTTP→HTTPS redirect listener.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower_governor::GovernorError;
use tower_governor::governor::{GovernorConfig, GovernorConfigBuilder};
use tower_governor::key_extractor::KeyExtractor;

use crate::error::ApiError;
use crate::identity::http::PeerAddr;

/// A client-sent `X-Request-Id` is kept if it is short and plain; otherwise one is made. Either
/// way the request carries it (to handlers, logs and tools) and the answer returns it.
pub async fn request_id(mut request: Request, next: Next) -> Response {
    let given = request
        .headers()
        .get("x-request-id")
        .filter(|value| {
            let bytes = value.as_bytes();
            (1..=128).contains(&bytes.len())
                && bytes
                    .iter()
                    .all(|byte| byte.is_ascii_alphanumeric() || b"-_.:".contains(byte))
        })
        .cloned();
    let id = match given {
        Some(id) => id,
        None => match crate::identity::crypto::random_uuid()
            .ok()
            .and_then(|id| HeaderValue::from_str(&id).ok())
        {
            Some(id) => id,
            None => {
                return ApiError::Unexpected(anyhow::anyhow!("no randomness for a request id"))
                    .into_response();
            }
        },
    };
    request.headers_mut().insert("x-request-id", id.clone());
    let mut response = next.run(request).await;
    response.headers_mut().insert("x-request-id", id);
    response
}

/// Refuses what must never reach a handler: `Origin: null` (sandboxed frames, `file:` pages,
/// some redirects: no page of ours sends it) and paths with dot segments or empty segments,
/// which a tool or a later proxy might resolve to somewhere the access check did not see.
pub async fn sanity(request: Request, next: Next) -> Response {
    if request
        .headers()
        .get(header::ORIGIN)
        .is_some_and(|origin| origin.as_bytes().eq_ignore_ascii_case(b"null"))
    {
        return ApiError::Forbidden("requests with \"Origin: null\" are refused".into())
            .into_response();
    }
    let path = request.uri().path();
    let suspicious = path.split('/').skip(1).any(|segment| {
        let lowered = segment.to_ascii_lowercase();
        matches!(
            lowered.as_str(),
            "." | ".." | "%2e" | "%2e%2e" | ".%2e" | "%2e."
        )
    }) || path.contains("//");
    if suspicious {
        return ApiError::InvalidInput(
            "the path has empty, \".\" or \"..\" segments; send it normalised".into(),
        )
        .into_response();
    }
    next.run(request).await
}

/// Refuses a body announced larger than `gateway.max_body_bytes` before reading any of it
/// (bodies without a length are cut off at the limit by the extractors and the proxy).
pub async fn body_limit(
    axum::extract::State(limit): axum::extract::State<u64>,
    request: Request,
    next: Next,
) -> Response {
    let announced = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if announced.is_some_and(|length| length > limit) {
        return ApiError::PayloadTooLarge { limit }.into_response();
    }
    next.run(request).await
}

/// Keys the per-address limit by client address; IPv6 clients by their /64, since one host
/// commonly holds a whole /64.
#[derive(Debug, Clone, Copy)]
pub struct ClientNetwork;

impl KeyExtractor for ClientNetwork {
    type Key = IpAddr;

    fn extract<T>(&self, request: &axum::http::Request<T>) -> Result<IpAddr, GovernorError> {
        let peer = request
            .extensions()
            .get::<PeerAddr>()
            .map(|peer| peer.0.ip())
            .ok_or(GovernorError::UnableToExtractKey)?;
        Ok(match peer {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => {
                    let mut octets = v6.octets();
                    octets[8..].fill(0);
                    IpAddr::V6(octets.into())
                }
            },
            v4 => v4,
        })
    }
}

pub type PerAddress = GovernorConfig<ClientNetwork, governor::middleware::NoOpMiddleware>;

/// The per-address limit of `gateway.per_ip_*`; `None` when it is off.
pub fn per_address(per_second: u32, burst: u32) -> Option<Arc<PerAddress>> {
    if per_second == 0 {
        return None;
    }
    let period = Duration::from_nanos(1_000_000_000 / u64::from(per_second));
    GovernorConfigBuilder::default()
        .key_extractor(ClientNetwork)
        .period(period)
        .burst_size(burst.max(1))
        .finish()
        .map(Arc::new)
}

/// The per-address limit's answer: the same body and headers as an API key's limit.
pub fn too_many(error: GovernorError) -> Response {
    match error {
        GovernorError::TooManyRequests { wait_time, .. } => ApiError::RateLimited {
            retry_after: i64::try_from(wait_time.max(1)).unwrap_or(1),
        }
        .into_response(),
        GovernorError::UnableToExtractKey => {
            ApiError::Unexpected(anyhow::anyhow!("a request without a peer address"))
                .into_response()
        }
        GovernorError::Other { code, msg, .. } => (
            code,
            axum::Json(
                serde_json::json!({"code": "rate_limited", "message": msg.unwrap_or_default()}),
            ),
        )
            .into_response(),
    }
}

/// Serves the optional plain-HTTP listener: every request is answered with a permanent redirect
/// to the same path on `public_url`; nothing else is served in the clear.
pub async fn serve_redirects(
    listener: tokio::net::TcpListener,
    public_url: String,
    stop: tokio_util::sync::CancellationToken,
) {
    let router = axum::Router::new().fallback(move |request: Request| {
        let public_url = public_url.clone();
        async move {
            let path = request
                .uri()
                .path_and_query()
                .map_or("/", |path| path.as_str())
                .to_owned();
            match HeaderValue::from_str(&format!("{public_url}{path}")) {
                Ok(location) => (
                    StatusCode::PERMANENT_REDIRECT,
                    [(header::LOCATION, location)],
                )
                    .into_response(),
                Err(_) => StatusCode::BAD_REQUEST.into_response(),
            }
        }
    });
    let served = axum::serve(listener, router)
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await;
    if let Err(error) = served {
        tracing::warn!(%error, "the HTTP redirect listener stopped");
    }
}

/// The listener's address for logs.
pub fn describe(listener: &tokio::net::TcpListener) -> String {
    listener
        .local_addr()
        .map_or_else(|_| "?".into(), |address: SocketAddr| address.to_string())
}
