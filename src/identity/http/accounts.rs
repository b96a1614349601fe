//! Account endpoints: invitations (admins, `/api/invitations`, as OpenFrame's API service has
//! them; accepting at `/sas/invitations/accept`), password resets, self-registration, tenant
//! discovery, and the mail outbox for appliances without SMTP.
//!
//! Admin endpoints take the tenant from the verified access token, never from the request.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::collections::HashMap;

use crate::domain::{Email, Role};
use crate::error::ApiError;
use crate::identity::accounts::Registration;
use crate::mail::MailKind;
use crate::startup::AppState;

/// Admin endpoints take the caller the gateway verified (tenant, user, roles).
use crate::gateway::auth::Admin as AdminPrincipal;

fn json_body<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|error| ApiError::InvalidInput(format!("the JSON body is not valid: {error}")))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InviteRequest {
    email: String,
    #[serde(default)]
    roles: Vec<String>,
}

pub(super) async fn create_invitation(
    State(state): State<AppState>,
    admin: AdminPrincipal,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let request: InviteRequest = json_body(&body)?;
    let email = Email::parse(&request.email).map_err(|e| ApiError::InvalidInput(e.to_string()))?;
    let roles = request
        .roles
        .iter()
        .map(|role| Role::parse(role))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ApiError::InvalidInput(e.to_string()))?;
    let invitation = state
        .identity
        .invite(&admin.tenant, Some(&admin.user_id), email, roles)
        .await?;
    Ok((StatusCode::CREATED, Json(invitation)).into_response())
}

pub(super) async fn list_invitations(
    State(state): State<AppState>,
    admin: AdminPrincipal,
) -> Result<Response, ApiError> {
    Ok(Json(state.identity.list_invitations(&admin.tenant).await?).into_response())
}

pub(super) async fn revoke_invitation(
    State(state): State<AppState>,
    admin: AdminPrincipal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    Ok(Json(state.identity.revoke_invitation(&admin.tenant, &id).await?).into_response())
}

pub(super) async fn resend_invitation(
    State(state): State<AppState>,
    admin: AdminPrincipal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    Ok(Json(state.identity.resend_invitation(&admin.tenant, &id).await?).into_response())
}

pub(super) async fn outbox(
    State(state): State<AppState>,
    admin: AdminPrincipal,
) -> Result<Response, ApiError> {
    // A reset link for the owner, read by an admin, would hand the admin the owner's account.
    let kinds: &[MailKind] = if admin.owner {
        &[MailKind::Invitation, MailKind::PasswordReset]
    } else {
        &[MailKind::Invitation]
    };
    let messages = state.identity.mailer.outbox(&admin.tenant, kinds).await?;
    let mut response = Json(messages).into_response();
    super::no_store(response.headers_mut());
    Ok(response)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AcceptRequest {
    invitation_id: String,
    #[serde(default)]
    first_name: String,
    #[serde(default)]
    last_name: String,
    password: String,
    /// OpenFrame moves a user from another tenant with this; accounts here are per tenant, so
    /// it is accepted and has nothing to do.
    #[serde(default)]
    #[allow(dead_code)]
    switch_tenant: bool,
}

pub(super) async fn accept_invitation(
    State(state): State<AppState>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let request: AcceptRequest = json_body(&body)?;
    let (tenant, user) = state
        .identity
        .accept_invitation(
            &request.invitation_id,
            &request.first_name,
            &request.last_name,
            &request.password,
        )
        .await?;
    Ok(Json(serde_json::json!({
        "tenantId": tenant.as_str(),
        "userId": user.id,
        "email": user.email,
        "roles": user.roles,
    }))
    .into_response())
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ResetRequest {
    email: String,
    tenant_id: Option<String>,
}

pub(super) async fn request_password_reset(
    State(state): State<AppState>,
    peer: Option<axum::Extension<super::PeerAddr>>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let request: ResetRequest = json_body(&body)?;
    state
        .identity
        .request_password_reset(
            &request.email,
            request.tenant_id.as_deref(),
            super::peer_ip(peer.as_ref().map(|axum::Extension(peer)| peer)),
        )
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({
            "status": "ACCEPTED",
            "message": "if the email has an account, a reset link is on its way",
        })),
    )
        .into_response())
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConfirmRequest {
    token: String,
    new_password: String,
}

pub(super) async fn confirm_password_reset(
    State(state): State<AppState>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let request: ConfirmRequest = json_body(&body)?;
    state
        .identity
        .confirm_password_reset(&request.token, &request.new_password)
        .await?;
    Ok(Json(serde_json::json!({ "status": "PASSWORD_CHANGED" })).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RegisterRequest {
    email: String,
    #[serde(default)]
    first_name: String,
    #[serde(default)]
    last_name: String,
    password: String,
    tenant_name: String,
    tenant_domain: Option<String>,
}

pub(super) async fn register(
    State(state): State<AppState>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let request: RegisterRequest = json_body(&body)?;
    let registration = Registration {
        email: request.email,
        first_name: request.first_name,
        last_name: request.last_name,
        password: request.password,
        tenant_name: request.tenant_name,
        tenant_domain: request.tenant_domain,
    };
    let mode = state.config.identity.registration.clone();
    let (tenant, owner) = state.identity.register(&mode, registration).await?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({
            "id": tenant.id.as_str(),
            "name": tenant.name,
            "status": tenant.status.as_str(),
            "ownerId": owner.id,
            "createdAt": tenant.created_at,
            "issuer": state.identity.issuer(&tenant.id),
        })),
    )
        .into_response())
}

pub(super) async fn discover(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let email = query
        .get("email")
        .ok_or_else(|| ApiError::InvalidInput("email is required".into()))?;
    Ok(Json(state.identity.discover(email).await?).into_response())
}
