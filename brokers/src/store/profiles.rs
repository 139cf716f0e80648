//! Users' profile and preferences items ([`ProfileStore`]: the SQL stores, migration 0020 on
//! PostgreSQL and 0019 on SQLite, or DynamoDB), and the store's part of users' data requests
//! ([`PrivacyStore`]: exports to download, erasures and their audit rows).

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use pysaas_jobs::{Job, NewJob};
use uuid::Uuid;

use crate::Result;

/// One of a user's items.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProfileItem {
    /// Name, locale, time zone.
    Profile,
    /// Notification preferences ([`pysaas_jobs::preferences::Preferences`]).
    Preferences,
}

impl ProfileItem {
    /// Both items.
    pub const ALL: [ProfileItem; 2] = [ProfileItem::Profile, ProfileItem::Preferences];

    /// Its name (`profile`), the item's key beside the user's.
    pub fn as_str(self) -> &'static str {
        match self {
            ProfileItem::Profile => "profile",
            ProfileItem::Preferences => "preferences",
        }
    }
}

/// An item as stored: its document and the count of writes that made it.
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned {
    /// The document (a JSON object).
    pub data: serde_json::Value,
    /// 1 after the first write, one more after each.
    pub version: i64,
    /// Last written.
    pub updated_at: DateTime<Utc>,
}

/// Where profile items live. Every backend passes the same conformance suite
/// (`brokers/tests/profile_conformance.rs`).
#[async_trait]
pub trait ProfileStore: Send + Sync + std::fmt::Debug {
    /// Backend name (`postgres`, `sqlite`, `dynamodb`).
    fn profile_backend(&self) -> &'static str;

    /// Makes the backend ready: creates the table if it is missing (idempotent; the SQL stores'
    /// migrations already did).
    async fn prepare_profiles(&self) -> Result<()>;

    /// A user's item, if it was ever written.
    async fn get_item(&self, user_id: Uuid, item: ProfileItem) -> Result<Option<Versioned>>;

    /// Writes a user's item if its version is still `expected` (0: it must not exist yet), as
    /// one conditional write; the new version, or `None` when another write came first.
    async fn put_item(
        &self,
        user_id: Uuid,
        item: ProfileItem,
        data: &serde_json::Value,
        expected: i64,
        now: DateTime<Utc>,
    ) -> Result<Option<i64>>;

    /// Deletes every item of a user; how many there were.
    async fn erase_items(&self, user_id: Uuid) -> Result<u64>;
}

/// A data access request.
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileExport {
    /// Id.
    pub id: Uuid,
    /// The tenant it was asked in (and may only be downloaded in).
    pub tenant_id: String,
    /// Whose data.
    pub user_id: Uuid,
    /// `pending` or `ready`.
    pub status: String,
    /// The document, once ready.
    pub document: Option<serde_json::Value>,
    /// Asked.
    pub created_at: DateTime<Utc>,
    /// Built.
    pub completed_at: Option<DateTime<Utc>>,
}

/// An erasure's audit row: no personal data once done.
#[derive(Debug, Clone, PartialEq)]
pub struct Erasure {
    /// Id.
    pub id: Uuid,
    /// The tenant it was asked in.
    pub tenant_id: String,
    /// Whom to erase, until it is done (then `None`).
    pub user_id: Option<Uuid>,
    /// `pending` or `done`.
    pub status: String,
    /// Rows and items removed, by store and table.
    pub counts: Option<serde_json::Value>,
    /// Asked.
    pub requested_at: DateTime<Utc>,
    /// Finished.
    pub completed_at: Option<DateTime<Utc>>,
}

/// The job store's part of users' data requests.
#[async_trait]
pub trait PrivacyStore: Send + Sync {
    /// Records a pending export and the job that builds it, in one transaction; the job.
    async fn create_export(&self, export: &ProfileExport, job: NewJob) -> Result<Vec<Job>>;

    /// One export.
    async fn get_export(&self, id: Uuid) -> Result<Option<ProfileExport>>;

    /// Stores the built document; `false` when the export is gone (its user erased).
    async fn finish_export(
        &self,
        id: Uuid,
        document: &serde_json::Value,
        now: DateTime<Utc>,
    ) -> Result<bool>;

    /// Records a pending erasure and the job that carries it out, in one transaction.
    async fn create_erasure(&self, erasure: &Erasure, job: NewJob) -> Result<Vec<Job>>;

    /// One erasure.
    async fn get_erasure(&self, id: Uuid) -> Result<Option<Erasure>>;

    /// Marks an erasure done with what it removed, forgetting whom.
    async fn finish_erasure(
        &self,
        id: Uuid,
        counts: &serde_json::Value,
        now: DateTime<Utc>,
    ) -> Result<bool>;

    /// Deletes, in one transaction, what the store holds of the erasure's user: in the tenants
    /// they are a member of, the address, result and errors of finished emails to `email` and
    /// the billing address of subscriptions billed to it; everywhere, their in-app
    /// notifications, exports, the creator mark on API keys, sessions, memberships and the
    /// account. The counts, by table, are kept on the erasure's row in the same transaction
    /// (so a retry after a crash still reports them) and returned.
    async fn erase_user_rows(
        &self,
        erasure_id: Uuid,
        user_id: Uuid,
        email: &str,
        tenants: &[String],
    ) -> Result<BTreeMap<String, u64>>;
}
