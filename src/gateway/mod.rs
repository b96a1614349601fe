//! The public HTTPS edge: the appliance's front page, the identity endpoints (`/sas/…`,
//! `/oauth/…`, the account APIs) and the JSON 404 for every other path. The rest of the route
//! table of ARCHITECTURE.md (APIs, agents, tools, ingest) mounts here as it arrives, behind the
//! same middleware.

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use tower_http::set_header::SetResponseHeaderLayer;

use crate::error::ApiError;
use crate::startup::AppState;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(front_page))
        .merge(crate::identity::http::router())
        .fallback(not_found)
        // Outermost last: metrics see the final status, security headers apply to every answer.
        .layer(middleware::from_fn_with_state(
            state.metrics.clone(),
            crate::metrics::track,
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'self'; frame-ancestors 'none'"),
        ))
        .with_state(state)
}

async fn front_page() -> Response {
    let page = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>OpenFrame Appliance</title></head>\
         <body><h1>OpenFrame Appliance</h1><p>Version {}. The appliance is running.</p></body></html>",
        env!("CARGO_PKG_VERSION")
    );
    (
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        Html(page),
    )
        .into_response()
}

async fn not_found(request: Request) -> ApiError {
    ApiError::RouteNotFound {
        method: request.method().to_string(),
        path: request.uri().path().chars().take(200).collect(),
    }
}
