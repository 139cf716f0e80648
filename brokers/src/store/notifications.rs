//! Notification settings (migration 0017 on PostgreSQL, 0016 on SQLite): each tenant's email
//! sender.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use uuid::Uuid;

use crate::Result;

/// Where a tenant's email comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailSender {
    /// `From` address (`billing@acme.example`).
    pub from_address: String,
    /// `From` display name (`Acme Billing`).
    pub from_name: Option<String>,
    /// `Reply-To` address.
    pub reply_to: Option<String>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

/// Notification settings.
#[async_trait]
pub trait NotificationStore: Send + Sync {
    /// The tenant's sender, if it set one.
    async fn email_sender(&self, tenant_id: &str) -> Result<Option<EmailSender>>;

    /// Sets the tenant's sender, or removes it (`None`: the deployment's default again).
    async fn set_email_sender(&self, tenant_id: &str, sender: Option<&EmailSender>) -> Result<()>;
}

/// A notification in a user's dashboard inbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InAppNotification {
    /// Id (time-ordered).
    pub id: Uuid,
    /// Tenant it belongs to.
    pub tenant_id: String,
    /// Recipient.
    pub user_id: Uuid,
    /// What made it (a job id): a cause makes one notification per recipient.
    pub source: String,
    /// Category (`alerts`).
    pub category: String,
    /// One line.
    pub title: String,
    /// Text.
    pub body: String,
    /// Where it links to.
    pub link: Option<String>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Read, if it was.
    pub read_at: Option<DateTime<Utc>>,
}

/// A page of a user's inbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxFilter {
    /// Tenant.
    pub tenant_id: String,
    /// Recipient.
    pub user_id: Uuid,
    /// Only unread ones.
    pub unread_only: bool,
    /// Only ids older than this one (the previous page's last).
    pub before: Option<Uuid>,
    /// Page size.
    pub limit: i64,
}

/// In-app notifications.
#[async_trait]
pub trait InboxStore: Send + Sync {
    /// Adds a notification unless its source already made one for the recipient; `true` when
    /// added.
    async fn add_notification(&self, n: &InAppNotification) -> Result<bool>;

    /// A page of a user's notifications in a tenant, newest first.
    async fn list_notifications(&self, filter: &InboxFilter) -> Result<Vec<InAppNotification>>;

    /// How many of a user's notifications in a tenant are unread.
    async fn unread_notifications(&self, tenant_id: &str, user_id: Uuid) -> Result<i64>;

    /// Marks one read (again is fine); `None` when it is not the user's in this tenant.
    async fn mark_notification_read(
        &self,
        tenant_id: &str,
        user_id: Uuid,
        id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<Option<InAppNotification>>;

    /// Marks all of a user's notifications in a tenant read; how many were unread.
    async fn mark_all_notifications_read(
        &self,
        tenant_id: &str,
        user_id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<u64>;

    /// Every notification of a user, in every tenant, oldest first (for a data export).
    async fn notifications_of_user(&self, user_id: Uuid) -> Result<Vec<InAppNotification>>;
}
