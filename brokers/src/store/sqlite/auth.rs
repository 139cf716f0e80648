//! The credential operations SQLite does its own way: change notices in-process only.

use std::time::Duration;

use async_trait::async_trait;
use uuid::Uuid;

use super::SqliteStore;
use crate::store::sql::AuthDialect;
use crate::store::AuthChange;
use crate::Result;

#[async_trait]
impl AuthDialect for SqliteStore {
    fn changes(&self) -> tokio::sync::broadcast::Receiver<AuthChange> {
        self.auth.subscribe()
    }

    fn cache_ttl(&self) -> Duration {
        // Changes made by another process on the same file are not announced here.
        Duration::from_secs(1)
    }

    async fn revoke_key(&self, tenant_id: &str, id: Uuid) -> Result<Option<String>> {
        let (mut conn, now) = self.write().await?;
        let prefix: Option<String> = sqlx::query_scalar(
            "UPDATE api_keys SET revoked_at = ?3 \
             WHERE tenant_id = ?1 AND id = ?2 AND revoked_at IS NULL RETURNING prefix",
        )
        .bind(tenant_id)
        .bind(id.to_string())
        .bind(now)
        .fetch_optional(&mut *conn)
        .await?;
        if let Some(prefix) = &prefix {
            let _ = self.auth.send(AuthChange::KeyRevoked(prefix.clone()));
        }
        Ok(prefix)
    }
}
