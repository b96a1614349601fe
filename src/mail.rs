//! Outgoing mail. With an SMTP server configured, messages go through it (lettre, rustls);
//! without one, nothing leaves the machine: each message is logged and kept in the tenant's
//! outbox, where admins can read it and forward the link by hand. Either way the caller learns
//! which happened, so an API can tell an admin "sent" or "not sent: see the outbox".

use std::sync::Arc;

use anyhow::Context;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use openframe_storage::DocumentStore;
use openframe_storage::model::{Clock, Collection, DocumentId, TenantId};

use crate::config::MailSection;

/// What a message is for: admins may read invitations in the outbox; only owners may read
/// password resets, or an admin could take over the owner's account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailKind {
    Invitation,
    PasswordReset,
    /// A notification, for someone who asked for mail (sent only through SMTP, never kept).
    Notification,
}

impl MailKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MailKind::Invitation => "INVITATION",
            MailKind::PasswordReset => "PASSWORD_RESET",
            MailKind::Notification => "NOTIFICATION",
        }
    }
}

/// A message to one person.
#[derive(Debug, Clone)]
pub struct Message {
    pub kind: MailKind,
    /// When the message's link stops working; a kept message is deleted then.
    pub expires_at: openframe_storage::model::UnixMillis,
    pub to: String,
    pub subject: String,
    pub body: String,
}

/// What became of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Handed to the SMTP server.
    Sent,
    /// No SMTP server: kept in the tenant's outbox for admins.
    KeptInOutbox,
}

impl Delivery {
    pub fn as_str(self) -> &'static str {
        match self {
            Delivery::Sent => "SENT",
            Delivery::KeptInOutbox => "IN_OUTBOX",
        }
    }
}

/// The most messages kept per tenant in the outbox listing.
pub const OUTBOX_LIST_LIMIT: usize = 100;

pub struct Mailer {
    smtp: Option<AsyncSmtpTransport<Tokio1Executor>>,
    from: Mailbox,
    documents: Arc<dyn DocumentStore>,
    clock: Arc<dyn Clock>,
    outbox: Collection,
    /// Seals kept bodies: they hold live one-time links, which must not sit readable in the
    /// database or its backups.
    master: Arc<crate::identity::crypto::MasterKey>,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer")
            .field("smtp", &self.smtp.is_some())
            .field("from", &self.from.to_string())
            .finish_non_exhaustive()
    }
}

impl Mailer {
    pub fn new(
        config: &MailSection,
        documents: Arc<dyn DocumentStore>,
        clock: Arc<dyn Clock>,
        master: Arc<crate::identity::crypto::MasterKey>,
    ) -> anyhow::Result<Mailer> {
        let from: Mailbox = config
            .from
            .parse()
            .with_context(|| format!("mail.from {:?}", config.from))?;
        let smtp = if config.smtp_host.is_empty() {
            None
        } else {
            let builder = match config.smtp_security.as_str() {
                "tls" => AsyncSmtpTransport::<Tokio1Executor>::relay(&config.smtp_host)?,
                "starttls" => {
                    AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&config.smtp_host)?
                }
                // Validated to be loopback only.
                _ => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&config.smtp_host),
            };
            let mut builder = builder
                .port(config.smtp_port)
                .timeout(Some(std::time::Duration::from_secs(20)));
            if !config.smtp_username.is_empty() {
                let password =
                    std::fs::read_to_string(&config.smtp_password_file).with_context(|| {
                        format!(
                            "cannot read mail.smtp_password_file {}",
                            config.smtp_password_file
                        )
                    })?;
                builder = builder.credentials(Credentials::new(
                    config.smtp_username.clone(),
                    password.trim_end().to_owned(),
                ));
            }
            Some(builder.build())
        };
        Ok(Mailer {
            smtp,
            from,
            documents,
            clock,
            master,
            outbox: Collection::parse(OUTBOX).map_err(|error| anyhow::anyhow!("{error}"))?,
        })
    }

    /// Whether messages leave the machine (an SMTP server is configured).
    pub fn has_smtp(&self) -> bool {
        self.smtp.is_some()
    }

    /// Sends `message`, or keeps it in the tenant's outbox when no SMTP server is configured.
    /// An SMTP failure is an error: the caller decides whether to retry or report it.
    pub async fn send(&self, tenant: &TenantId, message: Message) -> anyhow::Result<Delivery> {
        match &self.smtp {
            Some(smtp) => {
                let to: Mailbox = message
                    .to
                    .parse()
                    .with_context(|| format!("recipient {:?}", message.to))?;
                let email = lettre::Message::builder()
                    .from(self.from.clone())
                    .to(to)
                    .subject(message.subject.clone())
                    .header(lettre::message::header::ContentType::TEXT_PLAIN)
                    .body(message.body.clone())?;
                smtp.send(email)
                    .await
                    .context("the SMTP server refused the message")?;
                tracing::info!(tenant = tenant.as_str(), subject = %message.subject, "mail sent");
                Ok(Delivery::Sent)
            }
            None => {
                // Ids sort by creation time, so listing pages come oldest first.
                let now = self.clock.now_ms();
                let id = format!("{now:013}-{}", crate::identity::crypto::random_uuid()?);
                let sealed = self
                    .master
                    .seal(&outbox_context(tenant, &id), message.body.as_bytes())?;
                let document = serde_json::json!({
                    "id": id,
                    "kind": message.kind.as_str(),
                    "to": message.to,
                    "subject": message.subject,
                    "bodySealed": crate::identity::crypto::b64url(&sealed),
                    "createdAt": now,
                    "expiresAt": message.expires_at,
                });
                let document_id =
                    DocumentId::parse(&id).map_err(|error| anyhow::anyhow!("{error}"))?;
                self.documents
                    .insert(tenant, &self.outbox, &document_id, &document)
                    .await?;
                // The body holds a one-time link; the log says where to find it, not what it is.
                tracing::info!(
                    tenant = tenant.as_str(),
                    subject = %message.subject,
                    outbox_id = %id,
                    "no SMTP server configured: the message is in the tenant's outbox (GET /api/identity/outbox)"
                );
                Ok(Delivery::KeptInOutbox)
            }
        }
    }

    /// The tenant's kept messages of the given kinds, newest first, bodies opened.
    pub async fn outbox(
        &self,
        tenant: &TenantId,
        kinds: &[MailKind],
    ) -> anyhow::Result<Vec<serde_json::Value>> {
        let mut messages = Vec::new();
        let mut after: Option<DocumentId> = None;
        loop {
            let page = self
                .documents
                .list(
                    tenant,
                    &self.outbox,
                    after.as_ref(),
                    openframe_storage::documents::MAX_LIST,
                )
                .await?;
            let Some(last) = page.last() else { break };
            after = Some(last.id.clone());
            let full = page.len() == openframe_storage::documents::MAX_LIST;
            for document in page {
                let wanted = kinds
                    .iter()
                    .any(|kind| document.body["kind"] == kind.as_str());
                let live = document.body["expiresAt"]
                    .as_i64()
                    .is_none_or(|at| at > self.clock.now_ms());
                if wanted && live {
                    messages.push(self.opened(tenant, document)?);
                }
            }
            if !full {
                break;
            }
        }
        messages.reverse();
        messages.truncate(OUTBOX_LIST_LIMIT);
        Ok(messages)
    }

    fn opened(
        &self,
        tenant: &TenantId,
        document: openframe_storage::documents::Document,
    ) -> anyhow::Result<serde_json::Value> {
        let mut body = document.body;
        let sealed = body["bodySealed"]
            .as_str()
            .and_then(crate::identity::crypto::b64url_decode)
            .context("a kept message has no sealed body")?;
        let text = self
            .master
            .open(&outbox_context(tenant, document.id.as_str()), &sealed)?;
        if let Some(object) = body.as_object_mut() {
            object.remove("bodySealed");
            object.insert(
                "body".into(),
                String::from_utf8_lossy(&text).into_owned().into(),
            );
        }
        Ok(body)
    }
}

/// The outbox collection; the identity sweep deletes its expired messages.
pub const OUTBOX: &str = "mail_outbox";

fn outbox_context(tenant: &TenantId, id: &str) -> Vec<u8> {
    format!("openframe/outbox/{}/{id}", tenant.as_str()).into_bytes()
}
