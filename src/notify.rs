//! In-app notifications (OpenFrame's model: a severity, a category, a read state per person,
//! and settings per person), pushed live to open consoles (GraphQL `notificationStream`), and
//! mailed through the operator's SMTP server to those who asked for it.
//!
//! - A tenant's notifications are one collection (`notifications`, a [`Catalog`]), newest
//!   kept: past [`MAX_KEPT`] the oldest go. Who has read one is kept on it (`readBy`).
//! - Settings are per user (`notification_settings`, under the user's id): mail or not, the
//!   lowest severity shown, and muted categories. They filter the live stream and the mail; the
//!   list shows everything, so nothing is lost to a setting.
//! - Notifying never fails the caller and never waits for mail: a store error is logged, and
//!   mail goes out on its own task.

use std::sync::Arc;

use openframe_storage::{Clock, DocumentStore, TenantId};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::catalog::{Catalog, CatalogError};
use crate::error::ApiError;
use crate::identity::Identity;
use crate::identity::crypto::random_uuid;

/// The most notifications kept per tenant.
pub const MAX_KEPT: usize = 500;
/// The most notifications one listing returns.
pub const MAX_LISTED: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Severity {
    Info,
    Warning,
    Error,
    Critical,
}

impl Severity {
    pub const NAMES: [&'static str; 4] = ["INFO", "WARNING", "ERROR", "CRITICAL"];

    pub fn parse(name: &str) -> Option<Severity> {
        match name {
            "INFO" => Some(Severity::Info),
            "WARNING" => Some(Severity::Warning),
            "ERROR" => Some(Severity::Error),
            "CRITICAL" => Some(Severity::Critical),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        Self::NAMES[self as usize]
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Category {
    Incident,
    Alert,
    Approval,
    System,
}

impl Category {
    pub const NAMES: [&'static str; 4] = ["INCIDENT", "ALERT", "APPROVAL", "SYSTEM"];

    pub fn parse(name: &str) -> Option<Category> {
        match name {
            "INCIDENT" => Some(Category::Incident),
            "ALERT" => Some(Category::Alert),
            "APPROVAL" => Some(Category::Approval),
            "SYSTEM" => Some(Category::System),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        Self::NAMES[self as usize]
    }
}

/// What a part of the appliance has to say.
#[derive(Debug, Clone)]
pub struct NewNotification {
    pub title: String,
    pub message: String,
    pub severity: Severity,
    pub category: Category,
    /// A console path to open.
    pub link: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Notification {
    pub id: String,
    pub title: String,
    pub message: String,
    pub severity: Severity,
    pub category: Category,
    pub link: Option<String>,
    pub created_at: i64,
    /// The ids of the users who have read it.
    #[serde(default)]
    pub read_by: Vec<String>,
}

impl Notification {
    /// As one user sees it.
    pub fn view(&self, user_id: &str) -> serde_json::Value {
        serde_json::json!({
            "id": self.id,
            "title": self.title,
            "message": self.message,
            "severity": self.severity,
            "category": self.category,
            "link": self.link,
            "createdAt": self.created_at,
            "read": self.read_by.iter().any(|reader| reader == user_id),
        })
    }
}

/// One user's choices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Settings {
    /// Mail each notification that passes the filter (needs `[mail] smtp_host`).
    pub email: bool,
    pub min_severity: Severity,
    pub muted_categories: Vec<Category>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            email: false,
            min_severity: Severity::Info,
            muted_categories: Vec::new(),
        }
    }
}

impl Settings {
    /// Whether a notification reaches this user live (and by mail, when asked).
    pub fn admits(&self, notification: &Notification) -> bool {
        notification.severity >= self.min_severity
            && !self.muted_categories.contains(&notification.category)
    }
}

/// Every tenant's notifications.
#[derive(Debug)]
pub struct Notifications {
    kept: Catalog<Notification>,
    settings: Catalog<Settings>,
    live: broadcast::Sender<Arc<(TenantId, Notification)>>,
    identity: Arc<Identity>,
    clock: Arc<dyn Clock>,
}

impl Notifications {
    pub fn new(
        documents: Arc<dyn DocumentStore>,
        identity: Arc<Identity>,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Notifications> {
        Ok(Notifications {
            kept: Catalog::new(documents.clone(), "notifications")?,
            settings: Catalog::new(documents, "notification_settings")?,
            live: broadcast::channel(256).0,
            identity,
            clock,
        })
    }

    /// Stores, pushes and mails a notification; failures are logged, never returned.
    pub async fn notify(&self, tenant: &TenantId, new: NewNotification) {
        if let Err(error) = self.store(tenant, new).await {
            tracing::warn!(%tenant, %error, "a notification could not be stored");
        }
    }

    async fn store(&self, tenant: &TenantId, new: NewNotification) -> anyhow::Result<()> {
        let now = self.clock.now_ms();
        // Ids sort by time, so the oldest is the first entry.
        let notification = Notification {
            id: format!("{now:013}-{}", random_uuid()?),
            title: new.title.chars().take(300).collect(),
            message: new.message.chars().take(2000).collect(),
            severity: new.severity,
            category: new.category,
            link: new.link,
            created_at: now,
            read_by: Vec::new(),
        };
        {
            let mut writer = self.kept.write(tenant).await?;
            while writer.entries().len() >= MAX_KEPT {
                let Some(oldest) = writer.entries().keys().next().cloned() else {
                    break;
                };
                writer.remove(&oldest).await?;
            }
            writer.put(&notification.id, notification.clone()).await?;
        }
        // Nobody listening is fine.
        let _ = self
            .live
            .send(Arc::new((tenant.clone(), notification.clone())));
        self.mail(tenant, notification).await;
        Ok(())
    }

    /// Mails the notification to every active user who asked for mail of its kind.
    async fn mail(&self, tenant: &TenantId, notification: Notification) {
        if !self.identity.mailer.has_smtp() {
            return;
        }
        let wanted = match self
            .settings
            .read(tenant, |entries| {
                entries
                    .iter()
                    .filter(|(_, entry)| entry.value.email && entry.value.admits(&notification))
                    .map(|(user_id, _)| user_id.clone())
                    .collect::<Vec<_>>()
            })
            .await
        {
            Ok(wanted) if !wanted.is_empty() => wanted,
            Ok(_) => return,
            Err(error) => {
                tracing::warn!(%tenant, %error, "notification settings could not be read; no mail sent");
                return;
            }
        };
        let identity = self.identity.clone();
        let tenant = tenant.clone();
        tokio::spawn(async move {
            let users = match identity.store.users(&tenant).await {
                Ok(users) => users,
                Err(error) => {
                    tracing::warn!(%tenant, %error, "users could not be read; no notification mail sent");
                    return;
                }
            };
            for user in users.iter().map(|versioned| &versioned.record) {
                if !user.is_active() || !wanted.contains(&user.id) {
                    continue;
                }
                let message = crate::mail::Message {
                    kind: crate::mail::MailKind::Notification,
                    expires_at: 0,
                    to: user.email.clone(),
                    subject: format!(
                        "[OpenFrame] {} {}",
                        notification.severity.as_str(),
                        notification.title
                    ),
                    body: format!(
                        "{}\n\n{}\n\nSeverity: {}\nCategory: {}\n{}\nYou receive this because mail is on in your notification settings.\n",
                        notification.title,
                        notification.message,
                        notification.severity.as_str(),
                        notification.category.as_str(),
                        notification
                            .link
                            .as_deref()
                            .map(|link| format!("Open: {link}\n"))
                            .unwrap_or_default(),
                    ),
                };
                if let Err(error) = identity.mailer.send(&tenant, message).await {
                    tracing::warn!(%tenant, error = format!("{error:#}"), "a notification mail could not be sent");
                }
            }
        });
    }

    /// The newest notifications as `user_id` sees them, and how many are unread.
    pub async fn list(
        &self,
        tenant: &TenantId,
        user_id: &str,
        unread_only: bool,
    ) -> Result<(Vec<serde_json::Value>, usize), CatalogError> {
        Ok(self
            .kept
            .read(tenant, |entries| {
                let unread = |notification: &Notification| {
                    !notification.read_by.iter().any(|reader| reader == user_id)
                };
                let listed = entries
                    .values()
                    .rev()
                    .map(|entry| &entry.value)
                    .filter(|notification| !unread_only || unread(notification))
                    .take(MAX_LISTED)
                    .map(|notification| notification.view(user_id))
                    .collect();
                let count = entries
                    .values()
                    .filter(|entry| unread(&entry.value))
                    .count();
                (listed, count)
            })
            .await?)
    }

    /// Marks one notification (or, without `id`, every one) read for `user_id`; how many
    /// changed, and the one named.
    pub async fn mark_read(
        &self,
        tenant: &TenantId,
        user_id: &str,
        id: Option<&str>,
    ) -> Result<(usize, Option<serde_json::Value>), ApiError> {
        let mut writer = self.kept.write(tenant).await?;
        let targets: Vec<(String, Notification)> = match id {
            Some(id) => {
                let entry = writer
                    .entries()
                    .get(id)
                    .ok_or_else(|| ApiError::NotFound(format!("id: no notification {id:?}")))?;
                vec![(id.to_owned(), entry.value.clone())]
            }
            None => writer
                .entries()
                .iter()
                .map(|(id, entry)| (id.clone(), entry.value.clone()))
                .collect(),
        };
        let mut marked = 0;
        let mut named = None;
        for (id, mut notification) in targets {
            if !notification.read_by.iter().any(|reader| reader == user_id) {
                notification.read_by.push(user_id.to_owned());
                writer.put(&id, notification.clone()).await?;
                marked += 1;
            }
            named = Some(notification.view(user_id));
        }
        Ok((marked, named))
    }

    pub async fn settings(
        &self,
        tenant: &TenantId,
        user_id: &str,
    ) -> Result<Settings, CatalogError> {
        Ok(self
            .settings
            .read(tenant, |entries| {
                entries
                    .get(user_id)
                    .map(|entry| entry.value.clone())
                    .unwrap_or_default()
            })
            .await?)
    }

    pub async fn set_settings(
        &self,
        tenant: &TenantId,
        user_id: &str,
        settings: Settings,
    ) -> Result<Settings, CatalogError> {
        let mut writer = self.settings.write(tenant).await?;
        Ok(writer.put(user_id, settings).await?.clone())
    }

    /// How many live streams are open (every tenant's).
    pub fn listeners(&self) -> usize {
        self.live.receiver_count()
    }

    /// Every notification as it is stored, for the live stream to filter.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<(TenantId, Notification)>> {
        self.live.subscribe()
    }
}
