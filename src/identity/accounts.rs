//! Accounts beyond sign-in: invitations, password resets, self-registration and email-first
//! tenant discovery. Links in mail carry 256-bit random secrets; password resets are stored as
//! hashes, single use, and end every session and token of the user when spent.

use openframe_storage::documents::Tenant;
use openframe_storage::model::TenantId;
use serde::Serialize;

use super::crypto::{random_token, sha256_hex};
use super::store::{InvitationRecord, ResetRecord, UserRecord, Versioned};
use super::{Identity, IdentityError, NewUser};
use crate::domain::{Email, Invalid, Role};
use crate::mail::{Delivery, MailKind, Message};

/// An invitation as admins see it; `status` includes the computed `EXPIRED`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InvitationView {
    pub id: String,
    pub email: String,
    pub roles: Vec<String>,
    pub status: String,
    pub expires_at: i64,
    pub created_at: i64,
    pub updated_at: i64,
    /// Whether the last invitation mail was sent, or kept in the outbox for an admin to forward.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivery: Option<&'static str>,
}

/// What self-registration asks for (OpenFrame's `TenantRegistrationRequest`, the parts we use).
#[derive(Debug, Clone)]
pub struct Registration {
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub password: String,
    pub tenant_name: String,
    pub tenant_domain: Option<String>,
}

/// Email-first discovery (`GET /sas/tenant/discover`).
#[derive(Debug, Clone, Serialize)]
pub struct Discovery {
    pub email: String,
    pub has_existing_accounts: bool,
    pub tenant_id: Option<String>,
    /// Every tenant with an account for this email (OpenFrame allows one; we allow several).
    pub tenant_ids: Vec<String>,
    pub auth_providers: Vec<String>,
}

fn gone(message: &str) -> IdentityError {
    IdentityError::Gone(message.to_owned())
}

impl Identity {
    fn invitation_view(
        &self,
        record: &InvitationRecord,
        delivery: Option<Delivery>,
    ) -> InvitationView {
        let expired = record.status == "PENDING" && record.expires_at <= self.clock.now_ms();
        InvitationView {
            id: record.id.clone(),
            email: record.email.clone(),
            roles: record.roles.clone(),
            status: if expired {
                "EXPIRED".to_owned()
            } else {
                record.status.clone()
            },
            expires_at: record.expires_at,
            created_at: record.created_at,
            updated_at: record.updated_at,
            delivery: delivery.map(Delivery::as_str),
        }
    }

    async fn mail_invitation(
        &self,
        tenant: &TenantId,
        record: &InvitationRecord,
        secret: &str,
    ) -> Result<Delivery, IdentityError> {
        let link = format!("{}/invitations?invitationId={secret}", self.public_url());
        let body = format!(
            "You are invited to OpenFrame ({tenant}).\n\nAccept within {hours} hours: {link}\n\nIf you did not expect this, ignore this message.\n",
            tenant = tenant.as_str(),
            hours = self.settings.invitation_ttl.as_secs() / 3600,
        );
        let message = Message {
            kind: MailKind::Invitation,
            expires_at: record.expires_at,
            to: record.email.clone(),
            subject: "Your invitation to OpenFrame".to_owned(),
            body,
        };
        Ok(self.mailer.send(tenant, message).await?)
    }

    pub async fn invite(
        &self,
        tenant: &TenantId,
        invited_by: Option<&str>,
        email: Email,
        roles: Vec<Role>,
    ) -> Result<InvitationView, IdentityError> {
        if self.store.user_by_email(tenant, &email).await?.is_some() {
            return Err(IdentityError::Conflict(format!(
                "{email} already has an account in this organisation"
            )));
        }
        let pending = self.store.invitations(tenant).await?.into_iter().any(|i| {
            i.email == email.as_str() && i.status == "PENDING" && i.expires_at > self.clock.now_ms()
        });
        if pending {
            return Err(IdentityError::Conflict(format!(
                "{email} already has a pending invitation; resend it instead"
            )));
        }
        let roles = if roles.is_empty() {
            vec![Role::Admin]
        } else {
            roles
        };
        if roles.contains(&Role::Owner) {
            return Err(Invalid::new(
                "roles",
                "invitations grant ADMIN; transfer ownership separately",
            )
            .into());
        }
        let now = self.clock.now_ms();
        let secret = random_token()?;
        let record = InvitationRecord {
            id: super::crypto::random_uuid()?,
            token_hash: sha256_hex(secret.as_bytes()),
            delivered_by_mail: self.mailer.has_smtp(),
            email: email.as_str().to_owned(),
            roles: roles.iter().map(|role| role.as_str().to_owned()).collect(),
            status: "PENDING".to_owned(),
            expires_at: now + ms(self.settings.invitation_ttl),
            invited_by: invited_by.map(str::to_owned),
            created_at: now,
            updated_at: now,
        };
        self.store.insert_invitation(tenant, &record).await?;
        let delivery = self.mail_invitation(tenant, &record, &secret).await?;
        Ok(self.invitation_view(&record, Some(delivery)))
    }

    pub async fn list_invitations(
        &self,
        tenant: &TenantId,
    ) -> Result<Vec<InvitationView>, IdentityError> {
        let mut records = self.store.invitations(tenant).await?;
        records.sort_by_key(|record| std::cmp::Reverse(record.created_at));
        Ok(records
            .iter()
            .map(|record| self.invitation_view(record, None))
            .collect())
    }

    async fn pending_invitation(
        &self,
        tenant: &TenantId,
        id: &str,
    ) -> Result<Versioned<InvitationRecord>, IdentityError> {
        let invitation = self
            .store
            .invitation(tenant, id)
            .await?
            .ok_or_else(|| IdentityError::NotFound("invitation not found".to_owned()))?;
        if invitation.record.status != "PENDING" {
            return Err(gone(&format!(
                "the invitation was already {}",
                invitation.record.status.to_lowercase()
            )));
        }
        Ok(invitation)
    }

    pub async fn revoke_invitation(
        &self,
        tenant: &TenantId,
        id: &str,
    ) -> Result<InvitationView, IdentityError> {
        let mut invitation = self.pending_invitation(tenant, id).await?;
        invitation.record.status = "REVOKED".to_owned();
        invitation.record.updated_at = self.clock.now_ms();
        self.store.replace_invitation(tenant, &invitation).await?;
        Ok(self.invitation_view(&invitation.record, None))
    }

    /// Sends the invitation again with a fresh expiry (an expired one can be resent too).
    pub async fn resend_invitation(
        &self,
        tenant: &TenantId,
        id: &str,
    ) -> Result<InvitationView, IdentityError> {
        let mut invitation = self.pending_invitation(tenant, id).await?;
        let now = self.clock.now_ms();
        // A new secret: the old link stops working.
        let secret = random_token()?;
        invitation.record.token_hash = sha256_hex(secret.as_bytes());
        invitation.record.delivered_by_mail = self.mailer.has_smtp();
        invitation.record.expires_at = now + ms(self.settings.invitation_ttl);
        invitation.record.updated_at = now;
        self.store.replace_invitation(tenant, &invitation).await?;
        let delivery = self
            .mail_invitation(tenant, &invitation.record, &secret)
            .await?;
        Ok(self.invitation_view(&invitation.record, Some(delivery)))
    }

    /// Accepts an invitation: creates the user with the invited roles. The invitation is found
    /// by the secret of its link alone (OpenFrame's `invitationId`), as the request names no
    /// tenant.
    pub async fn accept_invitation(
        &self,
        secret: &str,
        first_name: &str,
        last_name: &str,
        password: &str,
    ) -> Result<(TenantId, UserRecord), IdentityError> {
        let token_hash = sha256_hex(secret.as_bytes());
        let mut found = None;
        for tenant in self.tenants.tenants().await? {
            if let Some(invitation) = self
                .store
                .invitation_by_token(&tenant.id, &token_hash)
                .await?
            {
                found = Some((tenant, invitation));
                break;
            }
        }
        let Some((tenant, mut invitation)) = found else {
            return Err(IdentityError::NotFound("invitation not found".to_owned()));
        };
        self.active_tenant(tenant.id.as_str()).await?;
        if invitation.record.status != "PENDING" {
            return Err(gone(&format!(
                "the invitation was already {}",
                invitation.record.status.to_lowercase()
            )));
        }
        if invitation.record.expires_at <= self.clock.now_ms() {
            return Err(gone("the invitation has expired; ask for a new one"));
        }
        // Claim the invitation first, so two accepts cannot both create a user.
        invitation.record.status = "ACCEPTED".to_owned();
        invitation.record.updated_at = self.clock.now_ms();
        self.store
            .replace_invitation(&tenant.id, &invitation)
            .await
            .map_err(|error| match error {
                openframe_storage::error::DocumentError::VersionConflict { .. } => {
                    gone("the invitation was already accepted")
                }
                other => other.into(),
            })?;
        let roles = invitation
            .record
            .roles
            .iter()
            .filter_map(|r| Role::parse(r).ok())
            .collect();
        let new = NewUser {
            email: Email::parse(&invitation.record.email)?,
            password: Some(password.to_owned()),
            roles,
            first_name: first_name.trim().to_owned(),
            last_name: last_name.trim().to_owned(),
            // A link that came by mail proves the mailbox; one an admin forwarded does not.
            email_verified: invitation.record.delivered_by_mail,
        };
        match self.create_user(&tenant.id, new).await {
            Ok(user) => Ok((tenant.id, user)),
            Err(error) => {
                // Give the invitation back: a weak password must not burn it.
                let id = &invitation.record.id;
                if let Ok(Some(mut claimed)) = self.store.invitation(&tenant.id, id).await {
                    claimed.record.status = "PENDING".to_owned();
                    let _ = self.store.replace_invitation(&tenant.id, &claimed).await;
                }
                Err(error)
            }
        }
    }

    /// Starts a password reset. Always succeeds from the caller's point of view, whether or not
    /// the email has an account, so the endpoint cannot be used to find accounts.
    pub async fn request_password_reset(
        &self,
        email: &str,
        only_tenant: Option<&str>,
        address: std::net::IpAddr,
    ) -> Result<(), IdentityError> {
        let Ok(email) = Email::parse(email) else {
            return Ok(());
        };
        // Past the limit the request is dropped, with the same answer as always.
        if self.reset_requests.check(email.as_str(), address).is_err() {
            tracing::info!(%address, "password-reset request dropped: too many for this email or address");
            return Ok(());
        }
        self.reset_requests.record_failure(email.as_str(), address);
        for tenant in self.tenants.tenants().await? {
            if only_tenant.is_some_and(|only| only != tenant.id.as_str())
                || self.active_tenant(tenant.id.as_str()).await.is_err()
            {
                continue;
            }
            let Some(user) = self.store.user_by_email(&tenant.id, &email).await? else {
                continue;
            };
            if !user.record.is_active() {
                continue;
            }
            let secret = random_token()?;
            let reset = ResetRecord {
                user_id: user.record.id.clone(),
                delivered_by_mail: self.mailer.has_smtp(),
                expires_at: self.clock.now_ms() + ms(self.settings.reset_ttl),
                used: false,
            };
            self.store
                .insert_reset(&tenant.id, &sha256_hex(secret.as_bytes()), &reset)
                .await?;
            let link = format!(
                "{}/reset-password?token={}.{secret}",
                self.public_url(),
                tenant.id.as_str()
            );
            let body = format!(
                "Someone asked to reset the password of {email} at OpenFrame ({tenant}).\n\nChoose a new password within {minutes} minutes: {link}\n\nIf it was not you, ignore this message; your password stays as it is.\n",
                tenant = tenant.id.as_str(),
                minutes = self.settings.reset_ttl.as_secs() / 60,
            );
            let message = Message {
                kind: MailKind::PasswordReset,
                expires_at: reset.expires_at,
                to: email.as_str().to_owned(),
                subject: "Reset your OpenFrame password".to_owned(),
                body,
            };
            self.mailer.send(&tenant.id, message).await?;
        }
        Ok(())
    }

    /// Spends a reset token: sets the password, ends the user's sessions and revokes their tokens.
    pub async fn confirm_password_reset(
        &self,
        token: &str,
        new_password: &str,
    ) -> Result<(), IdentityError> {
        let invalid =
            || gone("the reset link is invalid, expired or already used; ask for a new one");
        let (tenant, secret) = token.split_once('.').ok_or_else(invalid)?;
        let tenant = self.active_tenant(tenant).await.map_err(|_| invalid())?;
        let hash = sha256_hex(secret.as_bytes());
        let reset = self
            .store
            .reset(&tenant.id, &hash)
            .await?
            .ok_or_else(invalid)?;
        if reset.record.used || reset.record.expires_at <= self.clock.now_ms() {
            return Err(invalid());
        }
        crate::domain::check_password_policy(new_password)?;
        let mut user = self
            .store
            .user(&tenant.id, &reset.record.user_id)
            .await?
            .ok_or_else(invalid)?;
        self.store
            .spend_reset(&tenant.id, &hash, &reset)
            .await
            .map_err(|_| invalid())?;
        // Following a link that came by mail proves the mailbox.
        user.record.email_verified |= reset.record.delivered_by_mail;
        self.replace_password(&tenant.id, user, new_password).await
    }

    /// Sets a user's password (checked against the policy) and ends every session and token
    /// the user had: after a reset, whoever knew the old password is out.
    pub async fn replace_password(
        &self,
        tenant: &TenantId,
        mut user: Versioned<UserRecord>,
        new_password: &str,
    ) -> Result<(), IdentityError> {
        crate::domain::check_password_policy(new_password)?;
        user.record.password_hash = Some(self.passwords.hash(new_password.to_owned()).await?);
        user.record.updated_at = self.clock.now_ms();
        user.record.tokens_not_before = user.record.updated_at;
        self.store.replace_user(tenant, &user).await?;
        self.store
            .delete_sessions_of(tenant, &user.record.id)
            .await?;
        self.store
            .revoke_families_of(tenant, &user.record.id)
            .await?;
        tracing::info!(tenant = tenant.as_str(), user_id = %user.record.id, "password replaced; sessions and tokens revoked");
        Ok(())
    }

    /// Self-registration: a new tenant and its OWNER, when `identity.registration` allows.
    pub async fn register(
        &self,
        mode: &str,
        request: Registration,
    ) -> Result<(Tenant, UserRecord), IdentityError> {
        let allowed = match mode {
            "open" => true,
            "bootstrap" => self.tenants.tenants().await?.is_empty(),
            _ => false,
        };
        if !allowed {
            return Err(IdentityError::Forbidden(
                "registration is closed on this appliance; ask an administrator for an invitation"
                    .to_owned(),
            ));
        }
        let email = Email::parse(&request.email)?;
        crate::domain::check_password_policy(&request.password)?;
        for (field, name) in [
            ("firstName", &request.first_name),
            ("lastName", &request.last_name),
        ] {
            crate::domain::check_display_name(field, name.trim())?;
        }
        let slug_source = request
            .tenant_domain
            .clone()
            .unwrap_or_else(|| request.tenant_name.clone());
        let id = TenantId::parse(&slugify(&slug_source))
            .map_err(|error| Invalid::new("tenantDomain", error.rule))?;
        let tenant = self.create_tenant(&id, &request.tenant_name).await?;
        let new = NewUser {
            email,
            password: Some(request.password),
            roles: vec![Role::Owner],
            first_name: request.first_name.trim().to_owned(),
            last_name: request.last_name.trim().to_owned(),
            email_verified: false,
        };
        let owner = self.create_user(&tenant.id, new).await?;
        tracing::info!(tenant = tenant.id.as_str(), "a tenant registered itself");
        Ok((tenant, owner))
    }

    /// Which tenants have an account for `email` (OpenFrame's email-first login).
    pub async fn discover(&self, email: &str) -> Result<Discovery, IdentityError> {
        let email = Email::parse(email)?;
        let mut tenant_ids = Vec::new();
        for tenant in self.tenants.tenants().await? {
            if self.active_tenant(tenant.id.as_str()).await.is_err() {
                continue;
            }
            if let Some(user) = self.store.user_by_email(&tenant.id, &email).await?
                && user.record.is_active()
            {
                tenant_ids.push(tenant.id.as_str().to_owned());
            }
        }
        Ok(Discovery {
            email: email.as_str().to_owned(),
            has_existing_accounts: !tenant_ids.is_empty(),
            tenant_id: tenant_ids.first().cloned(),
            tenant_ids,
            auth_providers: vec!["password".to_owned()],
        })
    }
}

fn ms(duration: std::time::Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX / 2)
}

/// `Acme IT, Ltd.` → `acme-it-ltd`: a tenant id from a name.
pub fn slugify(name: &str) -> String {
    let mut slug = String::new();
    for c in name.trim().to_lowercase().chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c);
        } else if !slug.ends_with('-') && !slug.is_empty() {
            slug.push('-');
        }
    }
    slug.trim_end_matches('-')
        .chars()
        .take(63)
        .collect::<String>()
        .trim_end_matches('-')
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::slugify;

    #[test]
    fn names_become_tenant_ids() {
        assert_eq!(slugify("Acme IT, Ltd."), "acme-it-ltd");
        assert_eq!(slugify("  --Zed  "), "zed");
        assert_eq!(slugify("Ünïcode Shop"), "n-code-shop");
        assert_eq!(slugify(&"a".repeat(80)).len(), 63);
    }
}
