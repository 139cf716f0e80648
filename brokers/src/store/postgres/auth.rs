//! The credential operations PostgreSQL does its own way: change notices through `NOTIFY`.

use std::time::Duration;

use async_trait::async_trait;
use uuid::Uuid;

use super::PgStore;
use crate::store::sql::AuthDialect;
use crate::store::AuthChange;
use crate::Result;

#[async_trait]
impl AuthDialect for PgStore {
    fn changes(&self) -> tokio::sync::broadcast::Receiver<AuthChange> {
        self.start_listener();
        self.auth_sender().subscribe()
    }

    fn cache_ttl(&self) -> Duration {
        // Every process hears of changes; this only bounds how long a missed one could matter.
        Duration::from_secs(60)
    }

    async fn revoke_key(&self, tenant_id: &str, id: Uuid) -> Result<Option<String>> {
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
        if let Some(prefix) = &prefix {
            self.announce(AuthChange::KeyRevoked(prefix.clone()));
        }
        Ok(prefix)
    }
}
