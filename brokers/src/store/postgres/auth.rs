//! [`AuthStore`] on PostgreSQL.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::Row;
use uuid::Uuid;

use super::PgStore;
use crate::store::auth::{
    ApiKeyRow, AuthChange, AuthStore, MembershipRow, RefreshRow, RefreshUse, TenantRow, UserRow,
};
use crate::Result;

fn tenant(row: &PgRow) -> Result<TenantRow> {
    Ok(TenantRow {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        plan: row.try_get("plan")?,
        created_at: row.try_get("created_at")?,
    })
}

fn user(row: &PgRow) -> Result<UserRow> {
    Ok(UserRow {
        id: row.try_get("id")?,
        email: row.try_get("email")?,
        password_hash: row.try_get("password_hash")?,
        failed_logins: row.try_get("failed_logins")?,
        locked_until: row.try_get("locked_until")?,
        created_at: row.try_get("created_at")?,
    })
}

fn membership(row: &PgRow) -> Result<MembershipRow> {
    Ok(MembershipRow {
        tenant_id: row.try_get("tenant_id")?,
        user_id: row.try_get("user_id")?,
        email: row.try_get("email")?,
        role: row.try_get("role")?,
        created_at: row.try_get("created_at")?,
    })
}

fn api_key(row: &PgRow) -> Result<ApiKeyRow> {
    Ok(ApiKeyRow {
        id: row.try_get("id")?,
        tenant_id: row.try_get("tenant_id")?,
        prefix: row.try_get("prefix")?,
        secret_hash: row.try_get("secret_hash")?,
        name: row.try_get("name")?,
        scopes: crate::store::split_scopes(row.try_get("scopes")?),
        created_by: row.try_get("created_by")?,
        created_at: row.try_get("created_at")?,
        last_used_at: row.try_get("last_used_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}

fn refresh(row: &PgRow) -> Result<RefreshRow> {
    Ok(RefreshRow {
        id: row.try_get("id")?,
        family_id: row.try_get("family_id")?,
        user_id: row.try_get("user_id")?,
        tenant_id: row.try_get("tenant_id")?,
        token_hash: row.try_get("token_hash")?,
        expires_at: row.try_get("expires_at")?,
        used_at: row.try_get("used_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}

const MEMBERS: &str = "SELECT m.tenant_id, m.user_id, u.email, m.role, m.created_at \
                       FROM memberships m JOIN users u ON u.id = m.user_id";

#[async_trait]
impl AuthStore for PgStore {
    fn auth_changes(&self) -> tokio::sync::broadcast::Receiver<AuthChange> {
        self.start_listener();
        self.auth_sender().subscribe()
    }

    fn auth_cache_ttl(&self) -> std::time::Duration {
        // Every process hears of changes; this only bounds how long a missed one could matter.
        std::time::Duration::from_secs(60)
    }

    async fn ensure_tenant(&self, t: &TenantRow) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO tenants (id, name, plan, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(&t.id)
        .bind(&t.name)
        .bind(&t.plan)
        .bind(t.created_at)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn get_tenant(&self, id: &str) -> Result<Option<TenantRow>> {
        let row = sqlx::query("SELECT * FROM tenants WHERE id = $1")
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(tenant).transpose()
    }

    async fn signup(&self, t: &TenantRow, u: &UserRow) -> Result<bool> {
        let mut tx = self.pool().begin().await?;
        let created = sqlx::query(
            "INSERT INTO users (id, email, password_hash, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (email) DO NOTHING",
        )
        .bind(u.id)
        .bind(&u.email)
        .bind(&u.password_hash)
        .bind(u.created_at)
        .execute(&mut *tx)
        .await?;
        if created.rows_affected() == 0 {
            return Ok(false);
        }
        sqlx::query("INSERT INTO tenants (id, name, plan, created_at) VALUES ($1, $2, $3, $4)")
            .bind(&t.id)
            .bind(&t.name)
            .bind(&t.plan)
            .bind(t.created_at)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO memberships (tenant_id, user_id, role, created_at) VALUES ($1, $2, 'owner', $3)",
        )
        .bind(&t.id)
        .bind(u.id)
        .bind(u.created_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn user_by_email(&self, email: &str) -> Result<Option<UserRow>> {
        let row = sqlx::query("SELECT * FROM users WHERE email = $1")
            .bind(email)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(user).transpose()
    }

    async fn user_by_id(&self, id: Uuid) -> Result<Option<UserRow>> {
        let row = sqlx::query("SELECT * FROM users WHERE id = $1")
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(user).transpose()
    }

    async fn login_failed(&self, user_id: Uuid) -> Result<i32> {
        Ok(sqlx::query_scalar(
            "UPDATE users SET failed_logins = failed_logins + 1 WHERE id = $1 RETURNING failed_logins",
        )
        .bind(user_id)
        .fetch_optional(self.pool())
        .await?
        .unwrap_or(0))
    }

    async fn lock_user(&self, user_id: Uuid, until: DateTime<Utc>) -> Result<()> {
        sqlx::query("UPDATE users SET locked_until = $2 WHERE id = $1")
            .bind(user_id)
            .bind(until)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    async fn login_succeeded(&self, user_id: Uuid) -> Result<()> {
        sqlx::query(
            "UPDATE users SET failed_logins = 0, locked_until = NULL WHERE id = $1 AND failed_logins > 0",
        )
        .bind(user_id)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    async fn memberships_of(&self, user_id: Uuid) -> Result<Vec<MembershipRow>> {
        let rows = sqlx::query(&format!(
            "{MEMBERS} WHERE m.user_id = $1 ORDER BY m.created_at, m.tenant_id"
        ))
        .bind(user_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(membership).collect()
    }

    async fn members(&self, tenant_id: &str) -> Result<Vec<MembershipRow>> {
        let rows = sqlx::query(&format!(
            "{MEMBERS} WHERE m.tenant_id = $1 ORDER BY m.created_at, u.email"
        ))
        .bind(tenant_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(membership).collect()
    }

    async fn set_membership(&self, tenant_id: &str, user_id: Uuid, role: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO memberships (tenant_id, user_id, role, created_at) VALUES ($1, $2, $3, now()) \
             ON CONFLICT (tenant_id, user_id) DO UPDATE SET role = EXCLUDED.role",
        )
        .bind(tenant_id)
        .bind(user_id)
        .bind(role)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    async fn remove_membership(&self, tenant_id: &str, user_id: Uuid) -> Result<bool> {
        let done = sqlx::query("DELETE FROM memberships WHERE tenant_id = $1 AND user_id = $2")
            .bind(tenant_id)
            .bind(user_id)
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn insert_api_key(&self, k: &ApiKeyRow) -> Result<()> {
        sqlx::query(
            "INSERT INTO api_keys (id, tenant_id, prefix, secret_hash, name, scopes, created_by, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(k.id)
        .bind(&k.tenant_id)
        .bind(&k.prefix)
        .bind(&k.secret_hash)
        .bind(&k.name)
        .bind(k.scopes.join(" "))
        .bind(k.created_by)
        .bind(k.created_at)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    async fn api_key_by_prefix(&self, prefix: &str) -> Result<Option<ApiKeyRow>> {
        let row = sqlx::query("SELECT * FROM api_keys WHERE prefix = $1")
            .bind(prefix)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(api_key).transpose()
    }

    async fn api_keys(&self, tenant_id: &str) -> Result<Vec<ApiKeyRow>> {
        let rows =
            sqlx::query("SELECT * FROM api_keys WHERE tenant_id = $1 ORDER BY created_at DESC")
                .bind(tenant_id)
                .fetch_all(self.pool())
                .await?;
        rows.iter().map(api_key).collect()
    }

    async fn revoke_api_key(&self, tenant_id: &str, id: Uuid) -> Result<bool> {
        // Every process caching the key hears of it on commit (NOTIFY in the same statement).
        let prefix: Option<String> = sqlx::query_scalar(
            "WITH r AS (UPDATE api_keys SET revoked_at = now() \
                        WHERE tenant_id = $1 AND id = $2 AND revoked_at IS NULL RETURNING prefix) \
             SELECT prefix FROM r WHERE pg_notify($3, prefix) IS NOT NULL",
        )
        .bind(tenant_id)
        .bind(id)
        .bind(self.auth_channel())
        .fetch_optional(self.pool())
        .await?;
        match prefix {
            Some(prefix) => {
                self.announce(AuthChange::KeyRevoked(prefix));
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn touch_api_key(&self, id: Uuid) -> Result<()> {
        sqlx::query(
            "UPDATE api_keys SET last_used_at = now() WHERE id = $1 \
               AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')",
        )
        .bind(id)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    async fn insert_refresh(&self, t: &RefreshRow) -> Result<()> {
        sqlx::query(
            "INSERT INTO refresh_tokens (id, family_id, user_id, tenant_id, token_hash, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(t.id)
        .bind(t.family_id)
        .bind(t.user_id)
        .bind(&t.tenant_id)
        .bind(&t.token_hash)
        .bind(t.expires_at)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    async fn use_refresh(&self, token_hash: &[u8]) -> Result<RefreshUse> {
        let used = sqlx::query(
            "UPDATE refresh_tokens SET used_at = now() WHERE token_hash = $1 AND used_at IS NULL \
               AND revoked_at IS NULL AND expires_at > now() RETURNING *",
        )
        .bind(token_hash)
        .fetch_optional(self.pool())
        .await?;
        if let Some(row) = used {
            return Ok(RefreshUse::Rotated(refresh(&row)?));
        }
        let row = sqlx::query("SELECT * FROM refresh_tokens WHERE token_hash = $1")
            .bind(token_hash)
            .fetch_optional(self.pool())
            .await?;
        match row.as_ref().map(refresh).transpose()? {
            Some(t) if t.used_at.is_some() || t.revoked_at.is_some() => {
                self.revoke_family(t.family_id).await?;
                Ok(RefreshUse::Reused(t))
            }
            _ => Ok(RefreshUse::Invalid),
        }
    }

    async fn revoke_family(&self, family_id: Uuid) -> Result<()> {
        sqlx::query(
            "UPDATE refresh_tokens SET revoked_at = now() WHERE family_id = $1 AND revoked_at IS NULL",
        )
        .bind(family_id)
        .execute(self.pool())
        .await?;
        Ok(())
    }
}
