//! The credential operations PostgreSQL does its own way: change notices through `NOTIFY`.

use std::time::Duration;

use async_trait::async_trait;

use super::PgStore;
use crate::store::sql::{args, AuthDialect, SqlTx, Stmt};
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

    async fn notify_revoked(&self, tx: &mut Self::Tx<'_>, prefix: &str) -> Result<()> {
        // Delivered on commit: every process caching the key hears of it then.
        let channel = self.auth_channel();
        tx.execute(
            Stmt::write("SELECT pg_notify($1, $2)"),
            &args![&channel, prefix],
        )
        .await?;
        Ok(())
    }

    fn announce_revoked(&self, prefix: String) {
        self.announce(AuthChange::KeyRevoked(prefix));
    }
}
