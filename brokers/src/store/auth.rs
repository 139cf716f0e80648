//! Tenants, users, memberships, API keys and refresh tokens. Secrets never reach the store: only
//! password hashes (argon2id) and SHA-256 digests of API-key and refresh-token secrets.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::Result;

/// An organisation: every job, schedule and key belongs to one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantRow {
    /// Id (`default`, or a generated `t_…`).
    pub id: String,
    /// Display name.
    pub name: String,
    /// Plan (rate limits are per plan).
    pub plan: String,
    /// Created.
    pub created_at: DateTime<Utc>,
}

/// A person who logs in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRow {
    /// Id.
    pub id: Uuid,
    /// Lower-cased email.
    pub email: String,
    /// argon2id PHC string.
    pub password_hash: String,
    /// Consecutive failed logins.
    pub failed_logins: i32,
    /// No login succeeds before this.
    pub locked_until: Option<DateTime<Utc>>,
    /// Created.
    pub created_at: DateTime<Utc>,
}

/// A user's role in a tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MembershipRow {
    /// Tenant.
    pub tenant_id: String,
    /// User.
    pub user_id: Uuid,
    /// The user's email (joined in for listings).
    pub email: String,
    /// `owner`, `admin`, `member` or `viewer`.
    pub role: String,
    /// Since when.
    pub created_at: DateTime<Utc>,
}

/// An API key (its secret is not stored; `secret_hash` is its SHA-256).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRow {
    /// Id.
    pub id: Uuid,
    /// Tenant it acts for.
    pub tenant_id: String,
    /// The visible, unique part of the key.
    pub prefix: String,
    /// SHA-256 of the secret part.
    pub secret_hash: Vec<u8>,
    /// Label.
    pub name: String,
    /// Scopes granted.
    pub scopes: Vec<String>,
    /// The user who created it, if any.
    pub created_by: Option<Uuid>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last authenticated request (updated at most once a minute).
    pub last_used_at: Option<DateTime<Utc>>,
    /// Revoked keys authenticate nothing.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A refresh token (hash only), one of a family descending from one login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshRow {
    /// Id.
    pub id: Uuid,
    /// The login it descends from.
    pub family_id: Uuid,
    /// User.
    pub user_id: Uuid,
    /// Tenant the session acts for.
    pub tenant_id: String,
    /// SHA-256 of the token.
    pub token_hash: Vec<u8>,
    /// Unusable after this.
    pub expires_at: DateTime<Utc>,
    /// Set when exchanged for a new pair: a second use is a theft signal.
    pub used_at: Option<DateTime<Utc>>,
    /// Set on logout or family revocation.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// What presenting a refresh token did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshUse {
    /// It was valid and is now used up; issue the next one of its family.
    Rotated(RefreshRow),
    /// It had been used or revoked before: its whole family is now revoked.
    Reused(RefreshRow),
    /// Unknown or expired.
    Invalid,
}

/// A change to credentials that caches of them must see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthChange {
    /// The API key with this prefix was revoked.
    KeyRevoked(String),
    /// Changes may have been missed (a listener reconnected): forget everything cached.
    Reset,
}

/// Storage of tenants and credentials.
#[async_trait]
pub trait AuthStore: Send + Sync {
    /// Credential changes made by any process on this store: revocations arrive here within
    /// moments (PostgreSQL `NOTIFY`; in-process for SQLite).
    fn auth_changes(&self) -> tokio::sync::broadcast::Receiver<AuthChange>;

    /// How long a cached credential may be trusted without a change notice: long where every
    /// process is notified, short where other processes cannot be (SQLite shared by several).
    fn auth_cache_ttl(&self) -> std::time::Duration;

    /// Creates the tenant if missing; `true` when created.
    async fn ensure_tenant(&self, tenant: &TenantRow) -> Result<bool>;

    /// One tenant.
    async fn get_tenant(&self, id: &str) -> Result<Option<TenantRow>>;

    /// Creates a tenant, a user and the user's `owner` membership in one transaction; `false`
    /// (nothing written) when the email is taken.
    async fn signup(&self, tenant: &TenantRow, user: &UserRow) -> Result<bool>;

    /// A user by (lower-cased) email.
    async fn user_by_email(&self, email: &str) -> Result<Option<UserRow>>;

    /// A user by id.
    async fn user_by_id(&self, id: Uuid) -> Result<Option<UserRow>>;

    /// Counts a failed login; returns the new count of consecutive failures. Recorded as
    /// `pysaas.auth.login_failed` in each of the user's tenants, in the same transaction (so is
    /// every change below that has an audit event: `docs/events.md`).
    async fn login_failed(&self, user_id: Uuid) -> Result<i32>;

    /// Sets when the account unlocks.
    async fn lock_user(&self, user_id: Uuid, until: DateTime<Utc>) -> Result<()>;

    /// Resets the failure count after a successful login into `tenant_id`.
    async fn login_succeeded(&self, user_id: Uuid, tenant_id: &str) -> Result<()>;

    /// A user's memberships, oldest first.
    async fn memberships_of(&self, user_id: Uuid) -> Result<Vec<MembershipRow>>;

    /// A tenant's members, oldest first.
    async fn members(&self, tenant_id: &str) -> Result<Vec<MembershipRow>>;

    /// Adds a member or changes their role; `by` is who did it (`user <id>`, `key <prefix>`).
    async fn set_membership(
        &self,
        tenant_id: &str,
        user_id: Uuid,
        role: &str,
        by: &str,
    ) -> Result<()>;

    /// Removes a member; `false` when they were not one.
    async fn remove_membership(&self, tenant_id: &str, user_id: Uuid, by: &str) -> Result<bool>;

    /// Stores a new API key, created by `by` (`user <id>`, `key <prefix>`; none from the
    /// command line).
    async fn insert_api_key(&self, key: &ApiKeyRow, by: Option<&str>) -> Result<()>;

    /// A key by its visible prefix (revoked ones too).
    async fn api_key_by_prefix(&self, prefix: &str) -> Result<Option<ApiKeyRow>>;

    /// A tenant's keys, newest first.
    async fn api_keys(&self, tenant_id: &str) -> Result<Vec<ApiKeyRow>>;

    /// Revokes a tenant's key; `false` when there is no such unrevoked key.
    async fn revoke_api_key(&self, tenant_id: &str, id: Uuid, by: &str) -> Result<bool>;

    /// Records use of a key (at most one write a minute per key).
    async fn touch_api_key(&self, id: Uuid) -> Result<()>;

    /// Stores a new refresh token.
    async fn insert_refresh(&self, token: &RefreshRow) -> Result<()>;

    /// The refresh token with this hash, as it is (used, revoked or not), without using it.
    async fn refresh_token(&self, token_hash: &[u8]) -> Result<Option<RefreshRow>>;

    /// Uses up the refresh token with this hash, atomically: only one of two concurrent uses
    /// rotates; the other (and any later one) is a reuse and revokes the family.
    async fn use_refresh(&self, token_hash: &[u8]) -> Result<RefreshUse>;

    /// Revokes every token of a family (logout, or theft detected).
    async fn revoke_family(&self, family_id: Uuid) -> Result<()>;
}
