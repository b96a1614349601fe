//! The public HTTPS edge. Every request passes, outermost first: metrics, security headers,
//! request id, CORS (configured origins only), sanity (`Origin: null`, dot segments), the body
//! limit, then the access check of [`auth`] (JWT from any tenant's issuer or the agent issuer,
//! or an API key with its scope and limits), and only then routing.
//!
//! Reading order: [`auth`] (path rules, token sources, verification, the typed callers),
//! [`api_keys`] (keys, scopes, limits, statistics), [`edge`] (hygiene), [`tools`] and [`proxy`]
//! (the tool registry and the REST/WebSocket proxy).

pub mod api_keys;
pub mod auth;
pub mod edge;
pub mod health;
pub mod proxy;
pub mod tools;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::middleware;
use axum::routing::{any, get, post};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::set_header::SetResponseHeaderLayer;

use crate::error::ApiError;
use crate::startup::AppState;

/// The edge's own state: verifiers, keys, tools.
#[derive(Debug)]
pub struct Gateway {
    pub tokens: auth::TokenVerifier,
    pub api_keys: api_keys::ApiKeys,
    pub tools: tools::ToolRegistry,
    pub upstreams: proxy::Upstreams,
    /// The tools' latest health reports.
    pub health: health::HealthBoard,
    /// The appliance's own origin and the configured CORS origins: pages that may send
    /// cookie-authenticated changes.
    trusted_origins: Vec<String>,
    pub per_address: Option<Arc<edge::PerAddress>>,
}

impl Gateway {
    pub fn new(
        config: &crate::config::Config,
        api_keys: api_keys::ApiKeys,
        tools: tools::ToolRegistry,
    ) -> anyhow::Result<Gateway> {
        let public = url::Url::parse(&config.public_url())?
            .origin()
            .ascii_serialization();
        let mut trusted_origins = vec![public];
        trusted_origins.extend(
            config
                .gateway
                .cors_origins()
                .map_err(|message| anyhow::anyhow!("gateway.cors_allowed_origins: {message}"))?,
        );
        Ok(Gateway {
            tokens: auth::TokenVerifier::new(config.gateway.token_cache_seconds),
            api_keys,
            tools,
            upstreams: proxy::Upstreams::default(),
            health: health::HealthBoard::default(),
            trusted_origins,
            per_address: edge::per_address(
                config.gateway.per_ip_requests_per_second,
                config.gateway.per_ip_burst,
            ),
        })
    }

    pub fn is_trusted_origin(&self, origin: &str) -> bool {
        self.trusted_origins.iter().any(|trusted| trusted == origin)
    }
}

pub fn router(state: AppState) -> Router {
    let gateway = &state.gateway;
    // Sign-in, tokens, registration: open to anyone, so limited per client address.
    let mut identity = crate::identity::http::router();
    // Agent registration and the agent token endpoint: open too, so limited the same way.
    let mut agent_bootstrap = crate::management::http::bootstrap_router();
    if let Some(config) = &gateway.per_address {
        identity = identity.layer(
            tower_governor::GovernorLayer::new(config.clone()).error_handler(edge::too_many),
        );
        agent_bootstrap = agent_bootstrap.layer(
            tower_governor::GovernorLayer::new(config.clone()).error_handler(edge::too_many),
        );
    }
    let mut router = Router::new()
        .route("/internal/authz/probe", get(auth::probe))
        .route("/tools/agent/{tool}/{*rest}", any(proxy::agent_rest))
        .route("/tools/{tool}/health", get(proxy::health))
        .route("/tools/{tool}/test", post(proxy::health))
        .route("/tools/{tool}/{*rest}", any(proxy::admin_rest))
        .route("/ws/tools/agent/{tool}/{*rest}", get(proxy::agent_ws))
        .route("/ws/tools/{tool}/{*rest}", get(proxy::admin_ws))
        .merge(crate::api::router())
        .merge(crate::graphql::router(&state))
        .merge(crate::external_api::router())
        .merge(crate::stream::http::router())
        .merge(crate::management::http::router())
        .merge(agent_bootstrap)
        .merge(identity)
        .merge(crate::ui::router())
        .fallback(not_found)
        // Layers run bottom-up for a request: the access check is the last thing before routing,
        // and the audit trail sees the verified caller.
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::audit::record_rest,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::authorize,
        ))
        .layer(DefaultBodyLimit::max(
            usize::try_from(state.config.gateway.max_body_bytes).unwrap_or(usize::MAX),
        ))
        .layer(middleware::from_fn_with_state(
            state.config.gateway.max_body_bytes,
            edge::body_limit,
        ))
        .layer(middleware::from_fn(edge::sanity));
    let origins = state.config.gateway.cors_origins().unwrap_or_default();
    if !origins.is_empty() {
        let origins: Vec<HeaderValue> = origins
            .iter()
            .filter_map(|origin| HeaderValue::from_str(origin).ok())
            .collect();
        router = router.layer(
            CorsLayer::new()
                .allow_origin(AllowOrigin::list(origins))
                .allow_credentials(true)
                .allow_methods([
                    Method::GET,
                    Method::POST,
                    Method::PUT,
                    Method::PATCH,
                    Method::DELETE,
                ])
                .allow_headers([
                    header::AUTHORIZATION,
                    header::CONTENT_TYPE,
                    HeaderName::from_static("x-api-key"),
                    HeaderName::from_static("access-token"),
                    HeaderName::from_static("x-request-id"),
                ])
                .expose_headers([
                    HeaderName::from_static("x-request-id"),
                    HeaderName::from_static("x-ratelimit-limit-minute"),
                    HeaderName::from_static("x-ratelimit-remaining-minute"),
                    HeaderName::from_static("x-ratelimit-limit-hour"),
                    HeaderName::from_static("x-ratelimit-remaining-hour"),
                    HeaderName::from_static("x-ratelimit-limit-day"),
                    HeaderName::from_static("x-ratelimit-remaining-day"),
                    HeaderName::from_static("ratelimit"),
                    HeaderName::from_static("ratelimit-policy"),
                    header::RETRY_AFTER,
                ])
                .max_age(std::time::Duration::from_secs(600)),
        );
    }
    router
        .layer(middleware::from_fn(edge::request_id))
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
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'self'; frame-ancestors 'none'"),
        ))
        // Never to another site (URLs here can carry codes and ids). Not `no-referrer`: under it
        // a browser sends `Origin: null` with a form's POST (Fetch §3.2.5), and the sign-in
        // form, whose origin the edge checks, could never be sent from a real browser.
        .layer(SetResponseHeaderLayer::if_not_present(
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        ))
        .with_state(state)
}

async fn not_found(request: Request) -> ApiError {
    ApiError::RouteNotFound {
        method: request.method().to_string(),
        path: request.uri().path().chars().take(200).collect(),
    }
}
