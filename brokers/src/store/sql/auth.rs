//! [`AuthStore`] once for both backends.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use pysaas_jobs::events::{
    ApiKeyEvent, LoginEvent, MemberEvent, RefreshReuse, API_KEY_CREATED, API_KEY_REVOKED,
    LOGIN_FAILED as LOGIN_FAILED_EVENT, LOGIN_SUCCEEDED as LOGIN_SUCCEEDED_EVENT, MEMBER_REMOVED,
    MEMBER_ROLE_CHANGED, REFRESH_REUSE,
};

use super::events::record_event;
use super::rows::{api_key, membership, refresh, tenant, user};
use super::{args, Arg, AuthDialect, Columns, SqlTx, Stmt};
use crate::store::auth::{
    ApiKeyRow, AuthChange, AuthStore, MembershipRow, RefreshRow, RefreshUse, TenantRow, UserRow,
};
use crate::Result;

const ENSURE_TENANT: Stmt<'static> = Stmt::write(
    "INSERT INTO tenants (id, name, plan, created_at) VALUES ($1, $2, $3, $4) \
     ON CONFLICT (id) DO NOTHING",
);
const GET_TENANT: Stmt<'static> = Stmt::read("SELECT * FROM tenants WHERE id = $1");
const INSERT_USER: Stmt<'static> = Stmt::write(
    "INSERT INTO users (id, email, password_hash, created_at) VALUES ($1, $2, $3, $4) \
     ON CONFLICT (email) DO NOTHING",
);
const INSERT_TENANT: Stmt<'static> =
    Stmt::write("INSERT INTO tenants (id, name, plan, created_at) VALUES ($1, $2, $3, $4)");
const INSERT_OWNER: Stmt<'static> = Stmt::write(
    "INSERT INTO memberships (tenant_id, user_id, role, created_at) VALUES ($1, $2, 'owner', $3)",
);
const USER_BY_EMAIL: Stmt<'static> = Stmt::read("SELECT * FROM users WHERE email = $1");
const USER_BY_ID: Stmt<'static> = Stmt::read("SELECT * FROM users WHERE id = $1");
const LOGIN_FAILED: Stmt<'static> = Stmt::write(
    "UPDATE users SET failed_logins = failed_logins + 1 WHERE id = $1 RETURNING failed_logins",
);
const LOCK_USER: Stmt<'static> = Stmt::write("UPDATE users SET locked_until = $2 WHERE id = $1");
const LOGIN_SUCCEEDED: Stmt<'static> = Stmt::write(
    "UPDATE users SET failed_logins = 0, locked_until = NULL WHERE id = $1 AND failed_logins > 0",
);
const MEMBERSHIPS_OF: Stmt<'static> = Stmt::read(
    "SELECT m.tenant_id, m.user_id, u.email, m.role, m.created_at \
     FROM memberships m JOIN users u ON u.id = m.user_id \
     WHERE m.user_id = $1 ORDER BY m.created_at, m.tenant_id",
);
const MEMBERS: Stmt<'static> = Stmt::read(
    "SELECT m.tenant_id, m.user_id, u.email, m.role, m.created_at \
     FROM memberships m JOIN users u ON u.id = m.user_id \
     WHERE m.tenant_id = $1 ORDER BY m.created_at, u.email",
);
const ROLE_OF: &str = "SELECT role FROM memberships WHERE tenant_id = $1 AND user_id = $2";
const TENANTS_OF: Stmt<'static> =
    Stmt::read("SELECT tenant_id FROM memberships WHERE user_id = $1 ORDER BY tenant_id");
const SET_MEMBERSHIP: Stmt<'static> = Stmt::write(
    "INSERT INTO memberships (tenant_id, user_id, role, created_at) VALUES ($1, $2, $3, $4) \
     ON CONFLICT (tenant_id, user_id) DO UPDATE SET role = excluded.role",
);
const REMOVE_MEMBERSHIP: Stmt<'static> =
    Stmt::write("DELETE FROM memberships WHERE tenant_id = $1 AND user_id = $2 RETURNING role");
const REVOKE_KEY: Stmt<'static> = Stmt::write(
    "UPDATE api_keys SET revoked_at = $3 \
     WHERE tenant_id = $1 AND id = $2 AND revoked_at IS NULL RETURNING prefix",
);
const INSERT_API_KEY: Stmt<'static> = Stmt::write(
    "INSERT INTO api_keys (id, tenant_id, prefix, secret_hash, name, scopes, created_by, created_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
);
const API_KEY_BY_PREFIX: Stmt<'static> = Stmt::read("SELECT * FROM api_keys WHERE prefix = $1");
const API_KEYS: Stmt<'static> =
    Stmt::read("SELECT * FROM api_keys WHERE tenant_id = $1 ORDER BY created_at DESC");
/// Use of a key is recorded at most once a minute (`$3`: a minute before now).
const TOUCH_API_KEY: Stmt<'static> = Stmt::write(
    "UPDATE api_keys SET last_used_at = $2 WHERE id = $1 \
       AND (last_used_at IS NULL OR last_used_at < $3)",
);
const INSERT_REFRESH: Stmt<'static> = Stmt::write(
    "INSERT INTO refresh_tokens (id, family_id, user_id, tenant_id, token_hash, expires_at, created_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7)",
);
const USE_REFRESH: Stmt<'static> = Stmt::write(
    "UPDATE refresh_tokens SET used_at = $2 WHERE token_hash = $1 AND used_at IS NULL \
       AND revoked_at IS NULL AND expires_at > $2 RETURNING *",
);
const REFRESH_BY_HASH: Stmt<'static> =
    Stmt::read("SELECT * FROM refresh_tokens WHERE token_hash = $1");
const REVOKE_FAMILY: Stmt<'static> = Stmt::write(
    "UPDATE refresh_tokens SET revoked_at = $2 WHERE family_id = $1 AND revoked_at IS NULL",
);

fn user_subject(id: Uuid) -> String {
    format!("users/{id}")
}

fn key_subject(id: Uuid) -> String {
    format!("api-keys/{id}")
}

#[async_trait]
impl<S: AuthDialect> AuthStore for S {
    fn auth_changes(&self) -> tokio::sync::broadcast::Receiver<AuthChange> {
        self.changes()
    }

    fn auth_cache_ttl(&self) -> std::time::Duration {
        self.cache_ttl()
    }

    async fn ensure_tenant(&self, t: &TenantRow) -> Result<bool> {
        let args = args![&t.id, &t.name, &t.plan, t.created_at];
        Ok(self.execute(ENSURE_TENANT, &args).await? == 1)
    }

    async fn get_tenant(&self, id: &str) -> Result<Option<TenantRow>> {
        let row = self.fetch_optional(GET_TENANT, &args![id]).await?;
        row.as_ref().map(tenant).transpose()
    }

    async fn signup(&self, t: &TenantRow, u: &UserRow) -> Result<bool> {
        let user = args![u.id, &u.email, &u.password_hash, u.created_at];
        let tenant = args![&t.id, &t.name, &t.plan, t.created_at];
        let owner = args![&t.id, u.id, u.created_at];
        self.execute_all(&[
            (INSERT_USER, &user),
            (INSERT_TENANT, &tenant),
            (INSERT_OWNER, &owner),
        ])
        .await
    }

    async fn user_by_email(&self, email: &str) -> Result<Option<UserRow>> {
        let row = self.fetch_optional(USER_BY_EMAIL, &args![email]).await?;
        row.as_ref().map(user).transpose()
    }

    async fn user_by_id(&self, id: Uuid) -> Result<Option<UserRow>> {
        let row = self.fetch_optional(USER_BY_ID, &args![id]).await?;
        row.as_ref().map(user).transpose()
    }

    async fn login_failed(&self, user_id: Uuid) -> Result<i32> {
        let mut tx = self.begin_tx().await?;
        let Some(row) = tx.fetch_optional(LOGIN_FAILED, &args![user_id]).await? else {
            return Ok(0);
        };
        let failed_logins = row.int(0)?;
        let event = LoginEvent {
            user_id,
            failed_logins,
        };
        for row in tx.fetch_all(TENANTS_OF, &args![user_id]).await? {
            let tenant = row.text(0)?;
            record_event(
                &mut tx,
                &tenant,
                LOGIN_FAILED_EVENT,
                &user_subject(user_id),
                &event,
            )
            .await?;
        }
        tx.commit_tx().await?;
        Ok(failed_logins)
    }

    async fn lock_user(&self, user_id: Uuid, until: DateTime<Utc>) -> Result<()> {
        self.execute(LOCK_USER, &args![user_id, until]).await?;
        Ok(())
    }

    async fn login_succeeded(&self, user_id: Uuid, tenant_id: &str) -> Result<()> {
        let mut tx = self.begin_tx().await?;
        tx.execute(LOGIN_SUCCEEDED, &args![user_id]).await?;
        let event = LoginEvent {
            user_id,
            failed_logins: 0,
        };
        let subject = user_subject(user_id);
        record_event(&mut tx, tenant_id, LOGIN_SUCCEEDED_EVENT, &subject, &event).await?;
        tx.commit_tx().await?;
        Ok(())
    }

    async fn memberships_of(&self, user_id: Uuid) -> Result<Vec<MembershipRow>> {
        let rows = self.fetch_all(MEMBERSHIPS_OF, &args![user_id]).await?;
        rows.iter().map(membership).collect()
    }

    async fn members(&self, tenant_id: &str) -> Result<Vec<MembershipRow>> {
        let rows = self.fetch_all(MEMBERS, &args![tenant_id]).await?;
        rows.iter().map(membership).collect()
    }

    async fn set_membership(
        &self,
        tenant_id: &str,
        user_id: Uuid,
        role: &str,
        by: &str,
    ) -> Result<()> {
        let mut tx = self.begin_tx().await?;
        let role_of = format!("{ROLE_OF}{}", S::FOR_UPDATE);
        let before = tx
            .fetch_optional(Stmt::read(&role_of), &args![tenant_id, user_id])
            .await?
            .map(|row| row.text(0))
            .transpose()?;
        tx.execute(SET_MEMBERSHIP, &args![tenant_id, user_id, role, Arg::Now])
            .await?;
        if before.as_deref() != Some(role) {
            let event = MemberEvent {
                user_id,
                role: Some(role.to_owned()),
                previous_role: before,
                by: Some(by.to_owned()),
            };
            let subject = user_subject(user_id);
            record_event(&mut tx, tenant_id, MEMBER_ROLE_CHANGED, &subject, &event).await?;
        }
        tx.commit_tx().await?;
        Ok(())
    }

    async fn remove_membership(&self, tenant_id: &str, user_id: Uuid, by: &str) -> Result<bool> {
        let mut tx = self.begin_tx().await?;
        let Some(row) = tx
            .fetch_optional(REMOVE_MEMBERSHIP, &args![tenant_id, user_id])
            .await?
        else {
            return Ok(false);
        };
        let event = MemberEvent {
            user_id,
            role: None,
            previous_role: Some(row.text(0)?),
            by: Some(by.to_owned()),
        };
        record_event(
            &mut tx,
            tenant_id,
            MEMBER_REMOVED,
            &user_subject(user_id),
            &event,
        )
        .await?;
        tx.commit_tx().await?;
        Ok(true)
    }

    async fn insert_api_key(&self, k: &ApiKeyRow, by: Option<&str>) -> Result<()> {
        let scopes = k.scopes.join(" ");
        let args = args![
            k.id,
            &k.tenant_id,
            &k.prefix,
            &k.secret_hash,
            &k.name,
            &scopes,
            k.created_by,
            k.created_at
        ];
        let mut tx = self.begin_tx().await?;
        tx.execute(INSERT_API_KEY, &args).await?;
        let event = ApiKeyEvent {
            key_id: k.id,
            scopes: Some(k.scopes.clone()),
            by: by.map(str::to_owned),
        };
        record_event(
            &mut tx,
            &k.tenant_id,
            API_KEY_CREATED,
            &key_subject(k.id),
            &event,
        )
        .await?;
        tx.commit_tx().await?;
        Ok(())
    }

    async fn api_key_by_prefix(&self, prefix: &str) -> Result<Option<ApiKeyRow>> {
        let row = self
            .fetch_optional(API_KEY_BY_PREFIX, &args![prefix])
            .await?;
        row.as_ref().map(api_key).transpose()
    }

    async fn api_keys(&self, tenant_id: &str) -> Result<Vec<ApiKeyRow>> {
        let rows = self.fetch_all(API_KEYS, &args![tenant_id]).await?;
        rows.iter().map(api_key).collect()
    }

    async fn revoke_api_key(&self, tenant_id: &str, id: Uuid, by: &str) -> Result<bool> {
        let mut tx = self.begin_tx().await?;
        let Some(row) = tx
            .fetch_optional(REVOKE_KEY, &args![tenant_id, id, Arg::Now])
            .await?
        else {
            return Ok(false);
        };
        let prefix = row.text(0)?;
        self.notify_revoked(&mut tx, &prefix).await?;
        let event = ApiKeyEvent {
            key_id: id,
            scopes: None,
            by: Some(by.to_owned()),
        };
        record_event(
            &mut tx,
            tenant_id,
            API_KEY_REVOKED,
            &key_subject(id),
            &event,
        )
        .await?;
        tx.commit_tx().await?;
        self.announce_revoked(prefix);
        Ok(true)
    }

    async fn touch_api_key(&self, id: Uuid) -> Result<()> {
        let a_minute_ago = Utc::now() - chrono::TimeDelta::minutes(1);
        let args = args![id, Arg::Now, a_minute_ago];
        self.execute(TOUCH_API_KEY, &args).await?;
        Ok(())
    }

    async fn insert_refresh(&self, t: &RefreshRow) -> Result<()> {
        let args = args![
            t.id,
            t.family_id,
            t.user_id,
            &t.tenant_id,
            &t.token_hash,
            t.expires_at,
            Arg::Now
        ];
        self.execute(INSERT_REFRESH, &args).await?;
        Ok(())
    }

    async fn refresh_token(&self, token_hash: &[u8]) -> Result<Option<RefreshRow>> {
        let row = self
            .fetch_optional(REFRESH_BY_HASH, &args![token_hash])
            .await?;
        row.as_ref().map(refresh).transpose()
    }

    async fn use_refresh(&self, token_hash: &[u8]) -> Result<RefreshUse> {
        let args = args![token_hash, Arg::Now];
        if let Some(row) = self.fetch_optional(USE_REFRESH, &args).await? {
            return Ok(RefreshUse::Rotated(refresh(&row)?));
        }
        let row = self.fetch_optional(REFRESH_BY_HASH, &args[..1]).await?;
        match row.as_ref().map(refresh).transpose()? {
            Some(t) if t.used_at.is_some() || t.revoked_at.is_some() => {
                let mut tx = self.begin_tx().await?;
                tx.execute(REVOKE_FAMILY, &args![t.family_id, Arg::Now])
                    .await?;
                let event = RefreshReuse {
                    user_id: t.user_id,
                    family_id: t.family_id,
                };
                let subject = user_subject(t.user_id);
                record_event(&mut tx, &t.tenant_id, REFRESH_REUSE, &subject, &event).await?;
                tx.commit_tx().await?;
                Ok(RefreshUse::Reused(t))
            }
            _ => Ok(RefreshUse::Invalid),
        }
    }

    async fn revoke_family(&self, family_id: Uuid) -> Result<()> {
        let args = args![family_id, Arg::Now];
        self.execute(REVOKE_FAMILY, &args).await?;
        Ok(())
    }
}
