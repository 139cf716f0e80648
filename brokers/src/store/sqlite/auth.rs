//! The credential operations SQLite does its own way: change notices in-process only.

use std::time::Duration;

use async_trait::async_trait;

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

    async fn notify_revoked(&self, _tx: &mut Self::Tx<'_>, _prefix: &str) -> Result<()> {
        Ok(())
    }

    fn announce_revoked(&self, prefix: String) {
        let _ = self.auth.send(AuthChange::KeyRevoked(prefix));
    }
}
