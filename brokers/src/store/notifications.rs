//! Notification settings (migration 0017 on PostgreSQL, 0016 on SQLite): each tenant's email
//! sender.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

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
