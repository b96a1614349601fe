//! `/external-api/api/v1/webhooks`: integrators subscribe URLs to unified event types and read
//! how each delivery went (see [`crate::webhooks`] for delivery, signing and retries). Scopes:
//! `webhooks:read` for `GET`, `webhooks:write` for the rest. The signing secret is answered
//! once, on create and on rotation (with `Cache-Control: no-store`), and never again.

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::params::Params;
use crate::api::iso;
use crate::audit::AuditChange;
use crate::error::ApiError;
use crate::gateway::api_keys::KeyCaller;
use crate::startup::AppState;
use crate::webhooks::{
    Delivery, DeliveryStatus, NewSubscription, Subscription, SubscriptionChange,
};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/external-api/api/v1/webhooks", get(list).post(create))
        .route(
            "/external-api/api/v1/webhooks/{id}",
            get(one).patch(update).delete(remove),
        )
        .route(
            "/external-api/api/v1/webhooks/{id}/deliveries",
            get(deliveries),
        )
        .route("/external-api/api/v1/webhooks/{id}/test", post(send_test))
        .route(
            "/external-api/api/v1/webhooks/{id}/rotate-secret",
            post(rotate_secret),
        )
}

/// A webhook as answered: everything but the secret.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct WebhookView {
    id: String,
    url: String,
    /// Unified event types (`LOGIN`, `SCRIPT_EXECUTED`, …).
    event_types: Vec<String>,
    description: String,
    enabled: bool,
    /// The user who created the key that created it.
    created_by: String,
    created_at: String,
    updated_at: String,
}

fn view(subscription: &Subscription) -> WebhookView {
    WebhookView {
        id: subscription.id.clone(),
        url: subscription.url.clone(),
        event_types: subscription.event_types.clone(),
        description: subscription.description.clone(),
        enabled: subscription.enabled,
        created_by: subscription.created_by.clone(),
        created_at: iso(subscription.created_at),
        updated_at: iso(subscription.updated_at),
    }
}

/// A webhook with its signing secret: the answers of create and rotate, the only ones that
/// show it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct WebhookWithSecret {
    #[serde(flatten)]
    webhook: WebhookView,
    /// `whsec_…`: the HMAC-SHA256 key of `X-OpenFrame-Signature`. Shown once.
    secret: String,
}

fn with_secret(subscription: &Subscription, secret: &str, status: StatusCode) -> Response {
    let body = WebhookWithSecret {
        webhook: view(subscription),
        secret: secret.to_owned(),
    };
    (status, [(header::CACHE_CONTROL, "no-store")], Json(body)).into_response()
}

#[derive(Debug, Serialize, ToSchema)]
pub(super) struct WebhookList {
    webhooks: Vec<WebhookView>,
}

/// One delivery of an event to a webhook, and how it went.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct DeliveryView {
    /// Also sent as `X-OpenFrame-Delivery`, for receivers to deduplicate by.
    id: String,
    subscription_id: String,
    event_type: String,
    /// `pending`, `delivered` or `failed`.
    status: String,
    attempts: u32,
    last_status_code: Option<u16>,
    last_error: Option<String>,
    occurred_at: String,
    created_at: String,
    last_attempt_at: Option<String>,
    next_attempt_at: Option<String>,
    delivered_at: Option<String>,
    /// The unified log entry sent (the body's `data`).
    #[schema(value_type = Object)]
    data: Value,
}

fn delivery_view(delivery: &Delivery) -> DeliveryView {
    let time = |at: Option<i64>| at.map(iso);
    DeliveryView {
        id: delivery.id.clone(),
        subscription_id: delivery.subscription_id.clone(),
        event_type: delivery.event_type.clone(),
        status: delivery.status.as_str().to_owned(),
        attempts: delivery.attempts,
        last_status_code: delivery.last_status_code,
        last_error: delivery.last_error.clone(),
        occurred_at: iso(delivery.occurred_at),
        created_at: iso(delivery.created_at),
        last_attempt_at: time(delivery.last_attempt_at),
        next_attempt_at: time(delivery.next_attempt_at),
        delivered_at: time(delivery.delivered_at),
        data: delivery.data.clone(),
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub(super) struct DeliveryList {
    deliveries: Vec<DeliveryView>,
}

fn not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!(
        "id: no webhook {:?}",
        id.chars().take(64).collect::<String>()
    ))
}

async fn held(state: &AppState, caller: &KeyCaller, id: &str) -> Result<Subscription, ApiError> {
    state
        .webhooks
        .get(caller.tenant(), id)
        .await?
        .ok_or_else(|| not_found(id))
}

#[utoipa::path(
    get,
    path = "/external-api/api/v1/webhooks",
    tag = "webhooks",
    operation_id = "listWebhooks",
    responses((status = 200, description = "The tenant's webhooks, oldest first", body = WebhookList)),
    security(("ApiKeyAuth" = ["webhooks:read"])),
)]
/// `GET /webhooks` → `{webhooks}`, oldest first.
pub(super) async fn list(
    State(state): State<AppState>,
    caller: KeyCaller,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    Params::parse(query.as_deref(), &[])?;
    let webhooks = state
        .webhooks
        .list(caller.tenant())
        .await?
        .iter()
        .map(view)
        .collect();
    Ok(Json(WebhookList { webhooks }).into_response())
}

/// `POST /webhooks` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct CreateRequest {
    /// A public `https://` URL (internal addresses only where the operator allows them).
    #[schema(min_length = 1, max_length = 2048)]
    url: String,
    /// Unified event types, 1 to 50.
    #[schema(min_items = 1, max_items = 50)]
    event_types: Vec<String>,
    #[serde(default)]
    description: Option<String>,
}

#[utoipa::path(
    post,
    path = "/external-api/api/v1/webhooks",
    tag = "webhooks",
    operation_id = "createWebhook",
    request_body = CreateRequest,
    responses((status = 201, description = "The webhook with its secret, shown once", body = WebhookWithSecret), (status = 409, description = "The tenant holds the most webhooks it may", body = crate::error::ErrorBody)),
    security(("ApiKeyAuth" = ["webhooks:write"])),
)]
/// `POST /webhooks` `{url, eventTypes, description?}` → 201 with the webhook and its `secret`.
pub(super) async fn create(
    State(state): State<AppState>,
    caller: KeyCaller,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request: CreateRequest = crate::api::json_body(&headers, &body)?;
    let (subscription, secret) = state
        .webhooks
        .create(
            caller.tenant(),
            &caller.key().user_id,
            NewSubscription {
                url: request.url,
                event_types: request.event_types,
                description: request.description,
            },
        )
        .await?;
    Ok(AuditChange {
        target_type: "Webhook",
        target_id: subscription.id.clone(),
        before: None,
        after: serde_json::to_value(view(&subscription)).ok(),
    }
    .on(with_secret(&subscription, &secret, StatusCode::CREATED)))
}

#[utoipa::path(
    get,
    path = "/external-api/api/v1/webhooks/{id}",
    tag = "webhooks",
    operation_id = "getWebhook",
    params(("id" = String, Path)),
    responses((status = 200, description = "The webhook", body = WebhookView)),
    security(("ApiKeyAuth" = ["webhooks:read"])),
)]
/// `GET /webhooks/{id}`.
pub(super) async fn one(
    State(state): State<AppState>,
    caller: KeyCaller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let subscription = held(&state, &caller, &id).await?;
    Ok(Json(view(&subscription)).into_response())
}

/// `PATCH /webhooks/{id}` body: the fields given replace the stored ones.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct UpdateRequest {
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    event_types: Option<Vec<String>>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    enabled: Option<bool>,
}

#[utoipa::path(
    patch,
    path = "/external-api/api/v1/webhooks/{id}",
    tag = "webhooks",
    operation_id = "updateWebhook",
    params(("id" = String, Path)),
    request_body = UpdateRequest,
    responses((status = 200, description = "The webhook", body = WebhookView)),
    security(("ApiKeyAuth" = ["webhooks:write"])),
)]
/// `PATCH /webhooks/{id}` `{url?, eventTypes?, description?, enabled?}`. Re-enabling starts
/// from the events appended after it.
pub(super) async fn update(
    State(state): State<AppState>,
    caller: KeyCaller,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request: UpdateRequest = crate::api::json_body(&headers, &body)?;
    if request.url.is_none()
        && request.event_types.is_none()
        && request.description.is_none()
        && request.enabled.is_none()
    {
        return Err(ApiError::InvalidInput(
            "body: give at least one of url, eventTypes, description, enabled".into(),
        ));
    }
    let before = held(&state, &caller, &id).await?;
    let subscription = state
        .webhooks
        .update(
            caller.tenant(),
            &id,
            SubscriptionChange {
                url: request.url,
                event_types: request.event_types,
                description: request.description,
                enabled: request.enabled,
            },
        )
        .await?;
    Ok(AuditChange {
        target_type: "Webhook",
        target_id: id,
        before: serde_json::to_value(view(&before)).ok(),
        after: serde_json::to_value(view(&subscription)).ok(),
    }
    .on(Json(view(&subscription)).into_response()))
}

#[utoipa::path(
    delete,
    path = "/external-api/api/v1/webhooks/{id}",
    tag = "webhooks",
    operation_id = "deleteWebhook",
    params(("id" = String, Path)),
    responses((status = 204, description = "Deleted, with its deliveries")),
    security(("ApiKeyAuth" = ["webhooks:write"])),
)]
/// `DELETE /webhooks/{id}` → 204; its deliveries go with it, pending ones unsent.
pub(super) async fn remove(
    State(state): State<AppState>,
    caller: KeyCaller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let removed = state
        .webhooks
        .delete(caller.tenant(), &id)
        .await?
        .ok_or_else(|| not_found(&id))?;
    Ok(AuditChange {
        target_type: "Webhook",
        target_id: id,
        before: serde_json::to_value(view(&removed)).ok(),
        after: None,
    }
    .on(StatusCode::NO_CONTENT.into_response()))
}

#[utoipa::path(
    get,
    path = "/external-api/api/v1/webhooks/{id}/deliveries",
    tag = "webhooks",
    operation_id = "listWebhookDeliveries",
    params(
        ("id" = String, Path),
        ("limit" = Option<i32>, Query, minimum = 1, maximum = 100),
        ("status" = Option<super::openapi::DeliveryStatusParam>, Query),
    ),
    responses((status = 200, description = "The newest deliveries", body = DeliveryList)),
    security(("ApiKeyAuth" = ["webhooks:read"])),
)]
/// `GET /webhooks/{id}/deliveries?limit&status` → `{deliveries}`, newest first; `status` is
/// `pending`, `delivered` or `failed`.
pub(super) async fn deliveries(
    State(state): State<AppState>,
    caller: KeyCaller,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let params = Params::parse(query.as_deref(), &["limit", "status"])?;
    let limit = usize::try_from(params.limit()?).unwrap_or(1);
    let status = match params.one("status")? {
        None => None,
        Some(text) => Some(DeliveryStatus::parse(text.trim()).ok_or_else(|| {
            ApiError::InvalidInput(format!(
                "status: {text:?} is not one of pending, delivered, failed"
            ))
        })?),
    };
    let deliveries = state
        .webhooks
        .deliveries(caller.tenant(), &id, status, limit)
        .await?
        .iter()
        .map(delivery_view)
        .collect();
    Ok(Json(DeliveryList { deliveries }).into_response())
}

#[utoipa::path(
    post,
    path = "/external-api/api/v1/webhooks/{id}/test",
    tag = "webhooks",
    operation_id = "testWebhook",
    params(("id" = String, Path)),
    responses((status = 202, description = "A test delivery, sent at once", body = DeliveryView)),
    security(("ApiKeyAuth" = ["webhooks:write"])),
)]
/// `POST /webhooks/{id}/test` → 202 with a `WEBHOOK_TEST` delivery, sent at once (and retried
/// like any other).
pub(super) async fn send_test(
    State(state): State<AppState>,
    caller: KeyCaller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let delivery = state.webhooks.send_test(caller.tenant(), &id).await?;
    Ok(AuditChange {
        target_type: "Webhook",
        target_id: id,
        before: None,
        after: None,
    }
    .on((StatusCode::ACCEPTED, Json(delivery_view(&delivery))).into_response()))
}

#[utoipa::path(
    post,
    path = "/external-api/api/v1/webhooks/{id}/rotate-secret",
    tag = "webhooks",
    operation_id = "rotateWebhookSecret",
    params(("id" = String, Path)),
    responses((status = 200, description = "The webhook with its new secret", body = WebhookWithSecret)),
    security(("ApiKeyAuth" = ["webhooks:write"])),
)]
/// `POST /webhooks/{id}/rotate-secret` → the webhook with its new `secret`; the old one stops
/// signing at once.
pub(super) async fn rotate_secret(
    State(state): State<AppState>,
    caller: KeyCaller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (subscription, secret) = state.webhooks.rotate_secret(caller.tenant(), &id).await?;
    Ok(AuditChange {
        target_type: "Webhook",
        target_id: id,
        before: None,
        after: serde_json::to_value(view(&subscription)).ok(),
    }
    .on(with_secret(&subscription, &secret, StatusCode::OK)))
}
