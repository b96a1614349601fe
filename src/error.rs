//! The edge's one error table: every error a client can see maps to an HTTP status, a stable
//! snake_case code and a message. Clients branch on the code; the message is for people.
//! Unexpected errors are logged once, in full, and answered with an opaque message.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("no route for {method} {path}")]
    RouteNotFound { method: String, path: String },
    #[error("the appliance is shutting down")]
    ShuttingDown,
    #[error("a store is unavailable: {0}")]
    StoreUnavailable(String),
    #[error("{0}")]
    InvalidInput(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Gone(String),
    #[error("tenant {0:?} does not exist or is not active")]
    InvalidTenant(String),
    /// OpenFrame's answer, code and all, so its integrators' retry logic keeps working.
    #[error("Too many requests. Please try again later.")]
    RateLimited { retry_after: i64 },
    #[error("the request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: u64 },
    /// A tool behind the proxy could not be reached or answered badly.
    #[error("{0}")]
    BadGateway(String),
    #[error("{0}")]
    GatewayTimeout(String),
    /// The appliance is behind (e.g. the event pipeline's backlog is full); retry later.
    #[error("{0}")]
    Overloaded(String),
    /// The optional assistant is off in the config.
    #[error("{0}")]
    AssistantDisabled(String),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl From<crate::identity::IdentityError> for ApiError {
    fn from(error: crate::identity::IdentityError) -> Self {
        use crate::identity::IdentityError;
        match error {
            IdentityError::InvalidTenant(tenant) => ApiError::InvalidTenant(tenant),
            IdentityError::Invalid(invalid) => ApiError::InvalidInput(invalid.to_string()),
            IdentityError::Conflict(message) => ApiError::Conflict(message),
            IdentityError::NotFound(message) => ApiError::NotFound(message),
            IdentityError::Gone(message) => ApiError::Gone(message),
            IdentityError::Forbidden(message) => ApiError::Forbidden(message),
            IdentityError::Unavailable(detail) => ApiError::StoreUnavailable(detail),
            IdentityError::Unexpected(error) => ApiError::Unexpected(error),
        }
    }
}

impl ApiError {
    /// The table: (status, stable code).
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::RouteNotFound { .. } => (StatusCode::NOT_FOUND, "route_not_found"),
            ApiError::ShuttingDown => (StatusCode::SERVICE_UNAVAILABLE, "shutting_down"),
            ApiError::StoreUnavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable"),
            ApiError::InvalidInput(_) => (StatusCode::BAD_REQUEST, "invalid_input"),
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::Gone(_) => (StatusCode::GONE, "gone"),
            ApiError::InvalidTenant(_) => (StatusCode::NOT_FOUND, "invalid_tenant"),
            ApiError::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "RATE_LIMIT_EXCEEDED"),
            ApiError::PayloadTooLarge { .. } => {
                (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
            }
            ApiError::BadGateway(_) => (StatusCode::BAD_GATEWAY, "upstream_unavailable"),
            ApiError::GatewayTimeout(_) => (StatusCode::GATEWAY_TIMEOUT, "upstream_timeout"),
            ApiError::Overloaded(_) => (StatusCode::SERVICE_UNAVAILABLE, "overloaded"),
            ApiError::AssistantDisabled(_) => (StatusCode::CONFLICT, "assistant_disabled"),
            ApiError::Unexpected(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal_error"),
        }
    }
}

/// The JSON body of every error response.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody {
    /// A stable, machine-readable code (`invalid_input`, `not_found`, `forbidden`, …).
    pub code: &'static str,
    /// What went wrong and what to fix, naming the parameter or field at fault.
    pub message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let retry_after = match &self {
            ApiError::RateLimited { retry_after } => Some(*retry_after),
            _ => None,
        };
        let message = match &self {
            ApiError::Unexpected(error) => {
                tracing::error!(error = format!("{error:#}"), "unexpected error");
                "an unexpected error occurred; the details are in the appliance's log".to_owned()
            }
            ApiError::StoreUnavailable(detail) => {
                tracing::warn!(%detail, "store unavailable");
                "a store is unavailable; retry shortly".to_owned()
            }
            other => other.to_string(),
        };
        let mut response = (status, Json(ErrorBody { code, message })).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        if let Some(seconds) = retry_after
            && let Ok(value) = axum::http::HeaderValue::from_str(&seconds.to_string())
        {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, value);
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("5"),
            );
        }
        response
    }
}
