//! [`AuthStore`] on SQLite (ids as text, times as integer microseconds).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::SqliteRow;
use sqlx::{Connection, Row};
use uuid::Uuid;

use super::SqliteStore;
use super::{from_micros, micros, opt_time};
use crate::store::auth::{
    ApiKeyRow, AuthChange, AuthStore, MembershipRow, RefreshRow, RefreshUse, TenantRow, UserRow,
};
use crate::{Result, StoreError};

/// Microseconds in a minute (API-key use is recorded at most once a minute).
const MINUTE_US: i64 = 60_000_000;

fn uuid(row: &SqliteRow, col: &str) -> Result<Uuid> {
    let text: &str = row.try_get(col)?;
    Uuid::parse_str(text).map_err(|e| StoreError::Corrupt(format!("{col} `{text}`: {e}")))
}

fn opt_uuid(row: &SqliteRow, col: &str) -> Result<Option<Uuid>> {
    let text: Option<&str> = row.try_get(col)?;
    text.map(|t| Uuid::parse_str(t).map_err(|e| StoreError::Corrupt(format!("{col} `{t}`: {e}"))))
        .transpose()
}

fn tenant(row: &SqliteRow) -> Result<TenantRow> {
    Ok(TenantRow {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        plan: row.try_get("plan")?,
        created_at: from_micros(row.try_get("created_at")?)?,
    })
}

fn user(row: &SqliteRow) -> Result<UserRow> {
    Ok(UserRow {
        id: uuid(row, "id")?,
        email: row.try_get("email")?,
        password_hash: row.try_get("password_hash")?,
        failed_logins: row.try_get("failed_logins")?,
        locked_until: opt_time(row, "locked_until")?,
        created_at: from_micros(row.try_get("created_at")?)?,
    })
}

fn membership(row: &SqliteRow) -> Result<MembershipRow> {
    Ok(MembershipRow {
        tenant_id: row.try_get("tenant_id")?,
        user_id: uuid(row, "user_id")?,
        email: row.try_get("email")?,
        role: row.try_get("role")?,
        created_at: from_micros(row.try_get("created_at")?)?,
    })
}

fn api_key(row: &SqliteRow) -> Result<ApiKeyRow> {
    Ok(ApiKeyRow {
        id: uuid(row, "id")?,
        tenant_id: row.try_get("tenant_id")?,
        prefix: row.try_get("prefix")?,
        secret_hash: row.try_get("secret_hash")?,
        name: row.try_get("name")?,
        scopes: crate::store::split_scopes(row.try_get("scopes")?),
        created_by: opt_uuid(row, "created_by")?,
        created_at: from_micros(row.try_get("created_at")?)?,
        last_used_at: opt_time(row, "last_used_at")?,
        revoked_at: opt_time(row, "revoked_at")?,
    })
}

fn refresh(row: &SqliteRow) -> Result<RefreshRow> {
    Ok(RefreshRow {
        id: uuid(row, "id")?,
        family_id: uuid(row, "family_id")?,
        user_id: uuid(row, "user_id")?,
        tenant_id: row.try_get("tenant_id")?,
        token_hash: row.try_get("token_hash")?,
        expires_at: from_micros(row.try_get("expires_at")?)?,
        used_at: opt_time(row, "used_at")?,
        revoked_at: opt_time(row, "revoked_at")?,
    })
}

const MEMBERS: &str = "SELECT m.tenant_id, m.user_id, u.email, m.role, m.created_at \
                       FROM memberships m JOIN users u ON u.id = m.user_id";

#[async_trait]
impl AuthStore for SqliteStore {
    fn auth_changes(&self) -> tokio::sync::broadcast::Receiver<AuthChange> {
        self.auth.subscribe()
    }

    fn auth_cache_ttl(&self) -> std::time::Duration {
        // Changes made by another process on the same file are not announced here.
        std::time::Duration::from_secs(1)
    }

    async fn ensure_tenant(&self, t: &TenantRow) -> Result<bool> {
        let (mut conn, _) = self.write().await?;
        let done = sqlx::query(
            "INSERT INTO tenants (id, name, plan, created_at) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(&t.id)
        .bind(&t.name)
        .bind(&t.plan)
        .bind(micros(t.created_at))
        .execute(&mut *conn)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn get_tenant(&self, id: &str) -> Result<Option<TenantRow>> {
        let row = sqlx::query("SELECT * FROM tenants WHERE id = ?1")
            .bind(id)
            .fetch_optional(self.reader())
            .await?;
        row.as_ref().map(tenant).transpose()
    }

    async fn signup(&self, t: &TenantRow, u: &UserRow) -> Result<bool> {
        let (mut conn, _) = self.write().await?;
        let mut tx = conn.begin().await?;
        let created = sqlx::query(
            "INSERT INTO users (id, email, password_hash, created_at) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (email) DO NOTHING",
        )
        .bind(u.id.to_string())
        .bind(&u.email)
        .bind(&u.password_hash)
        .bind(micros(u.created_at))
        .execute(&mut *tx)
        .await?;
        if created.rows_affected() == 0 {
            return Ok(false);
        }
        sqlx::query("INSERT INTO tenants (id, name, plan, created_at) VALUES (?1, ?2, ?3, ?4)")
            .bind(&t.id)
            .bind(&t.name)
            .bind(&t.plan)
            .bind(micros(t.created_at))
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO memberships (tenant_id, user_id, role, created_at) VALUES (?1, ?2, 'owner', ?3)",
        )
        .bind(&t.id)
        .bind(u.id.to_string())
        .bind(micros(u.created_at))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn user_by_email(&self, email: &str) -> Result<Option<UserRow>> {
        let row = sqlx::query("SELECT * FROM users WHERE email = ?1")
            .bind(email)
            .fetch_optional(self.reader())
            .await?;
        row.as_ref().map(user).transpose()
    }

    async fn user_by_id(&self, id: Uuid) -> Result<Option<UserRow>> {
        let row = sqlx::query("SELECT * FROM users WHERE id = ?1")
            .bind(id.to_string())
            .fetch_optional(self.reader())
            .await?;
        row.as_ref().map(user).transpose()
    }

    async fn login_failed(&self, user_id: Uuid) -> Result<i32> {
        let (mut conn, _) = self.write().await?;
        Ok(sqlx::query_scalar(
            "UPDATE users SET failed_logins = failed_logins + 1 WHERE id = ?1 RETURNING failed_logins",
        )
        .bind(user_id.to_string())
        .fetch_optional(&mut *conn)
        .await?
        .unwrap_or(0))
    }

    async fn lock_user(&self, user_id: Uuid, until: DateTime<Utc>) -> Result<()> {
        let (mut conn, _) = self.write().await?;
        sqlx::query("UPDATE users SET locked_until = ?2 WHERE id = ?1")
            .bind(user_id.to_string())
            .bind(micros(until))
            .execute(&mut *conn)
            .await?;
        Ok(())
    }

    async fn login_succeeded(&self, user_id: Uuid) -> Result<()> {
        let (mut conn, _) = self.write().await?;
        sqlx::query(
            "UPDATE users SET failed_logins = 0, locked_until = NULL WHERE id = ?1 AND failed_logins > 0",
        )
        .bind(user_id.to_string())
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    async fn memberships_of(&self, user_id: Uuid) -> Result<Vec<MembershipRow>> {
        let rows = sqlx::query(&format!(
            "{MEMBERS} WHERE m.user_id = ?1 ORDER BY m.created_at, m.tenant_id"
        ))
        .bind(user_id.to_string())
        .fetch_all(self.reader())
        .await?;
        rows.iter().map(membership).collect()
    }

    async fn members(&self, tenant_id: &str) -> Result<Vec<MembershipRow>> {
        let rows = sqlx::query(&format!(
            "{MEMBERS} WHERE m.tenant_id = ?1 ORDER BY m.created_at, u.email"
        ))
        .bind(tenant_id)
        .fetch_all(self.reader())
        .await?;
        rows.iter().map(membership).collect()
    }

    async fn set_membership(&self, tenant_id: &str, user_id: Uuid, role: &str) -> Result<()> {
        let (mut conn, now) = self.write().await?;
        sqlx::query(
            "INSERT INTO memberships (tenant_id, user_id, role, created_at) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (tenant_id, user_id) DO UPDATE SET role = excluded.role",
        )
        .bind(tenant_id)
        .bind(user_id.to_string())
        .bind(role)
        .bind(now)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    async fn remove_membership(&self, tenant_id: &str, user_id: Uuid) -> Result<bool> {
        let (mut conn, _) = self.write().await?;
        let done = sqlx::query("DELETE FROM memberships WHERE tenant_id = ?1 AND user_id = ?2")
            .bind(tenant_id)
            .bind(user_id.to_string())
            .execute(&mut *conn)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn insert_api_key(&self, k: &ApiKeyRow) -> Result<()> {
        let (mut conn, _) = self.write().await?;
        sqlx::query(
            "INSERT INTO api_keys (id, tenant_id, prefix, secret_hash, name, scopes, created_by, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )
        .bind(k.id.to_string())
        .bind(&k.tenant_id)
        .bind(&k.prefix)
        .bind(&k.secret_hash)
        .bind(&k.name)
        .bind(k.scopes.join(" "))
        .bind(k.created_by.map(|u| u.to_string()))
        .bind(micros(k.created_at))
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    async fn api_key_by_prefix(&self, prefix: &str) -> Result<Option<ApiKeyRow>> {
        let row = sqlx::query("SELECT * FROM api_keys WHERE prefix = ?1")
            .bind(prefix)
            .fetch_optional(self.reader())
            .await?;
        row.as_ref().map(api_key).transpose()
    }

    async fn api_keys(&self, tenant_id: &str) -> Result<Vec<ApiKeyRow>> {
        let rows =
            sqlx::query("SELECT * FROM api_keys WHERE tenant_id = ?1 ORDER BY created_at DESC")
                .bind(tenant_id)
                .fetch_all(self.reader())
                .await?;
        rows.iter().map(api_key).collect()
    }

    async fn revoke_api_key(&self, tenant_id: &str, id: Uuid) -> Result<bool> {
        let (mut conn, now) = self.write().await?;
        let done = sqlx::query(
            "UPDATE api_keys SET revoked_at = ?3 WHERE tenant_id = ?1 AND id = ?2 AND revoked_at IS NULL",
        )
        .bind(tenant_id)
        .bind(id.to_string())
        .bind(now)
        .execute(&mut *conn)
        .await?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        let prefix: Option<String> =
            sqlx::query_scalar("SELECT prefix FROM api_keys WHERE id = ?1")
                .bind(id.to_string())
                .fetch_optional(&mut *conn)
                .await?;
        if let Some(prefix) = prefix {
            let _ = self.auth.send(AuthChange::KeyRevoked(prefix));
        }
        Ok(true)
    }

    async fn touch_api_key(&self, id: Uuid) -> Result<()> {
        let (mut conn, now) = self.write().await?;
        sqlx::query(
            "UPDATE api_keys SET last_used_at = ?2 WHERE id = ?1 \
               AND (last_used_at IS NULL OR last_used_at < ?2 - ?3)",
        )
        .bind(id.to_string())
        .bind(now)
        .bind(MINUTE_US)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    async fn insert_refresh(&self, t: &RefreshRow) -> Result<()> {
        let (mut conn, now) = self.write().await?;
        sqlx::query(
            "INSERT INTO refresh_tokens (id, family_id, user_id, tenant_id, token_hash, expires_at, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )
        .bind(t.id.to_string())
        .bind(t.family_id.to_string())
        .bind(t.user_id.to_string())
        .bind(&t.tenant_id)
        .bind(&t.token_hash)
        .bind(micros(t.expires_at))
        .bind(now)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    async fn use_refresh(&self, token_hash: &[u8]) -> Result<RefreshUse> {
        let found = {
            let (mut conn, now) = self.write().await?;
            let used = sqlx::query(
                "UPDATE refresh_tokens SET used_at = ?2 WHERE token_hash = ?1 AND used_at IS NULL \
                   AND revoked_at IS NULL AND expires_at > ?2 RETURNING *",
            )
            .bind(token_hash)
            .bind(now)
            .fetch_optional(&mut *conn)
            .await?;
            if let Some(row) = used {
                return Ok(RefreshUse::Rotated(refresh(&row)?));
            }
            let row = sqlx::query("SELECT * FROM refresh_tokens WHERE token_hash = ?1")
                .bind(token_hash)
                .fetch_optional(&mut *conn)
                .await?;
            row.as_ref().map(refresh).transpose()?
        };
        match found {
            Some(t) if t.used_at.is_some() || t.revoked_at.is_some() => {
                self.revoke_family(t.family_id).await?;
                Ok(RefreshUse::Reused(t))
            }
            _ => Ok(RefreshUse::Invalid),
        }
    }

    async fn revoke_family(&self, family_id: Uuid) -> Result<()> {
        let (mut conn, now) = self.write().await?;
        sqlx::query(
            "UPDATE refresh_tokens SET revoked_at = ?2 WHERE family_id = ?1 AND revoked_at IS NULL",
        )
        .bind(family_id.to_string())
        .bind(now)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }
}
