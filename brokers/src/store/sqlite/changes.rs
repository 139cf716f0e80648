//! Changes made by another process on the same SQLite file (a `pysaas worker` beside a
//! `pysaas api`): SQLite has no notifications, but `PRAGMA data_version` on one connection
//! changes whenever another connection commits. A watcher polls it while someone listens and
//! announces [`ANY_TENANT`] when the file changed without a write of this process.

use std::sync::atomic::Ordering;
use std::time::Duration;

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, SqliteConnection};

use super::SqliteStore;
use crate::store::ANY_TENANT;

/// How often the watcher reads `data_version`: a change shows on a page well within a second.
pub(super) const WATCH_EVERY: Duration = Duration::from_millis(100);

impl SqliteStore {
    /// Starts the watcher once (the first listener does), unless the database is in memory (no
    /// other process can share it).
    pub(super) fn watch_other_processes(&self) {
        let Some(options) = self.options.clone() else {
            return;
        };
        if self.watcher.set(()).is_err() {
            return;
        }
        let changes = self.changes.clone();
        // Weak: the watcher ends once the store (every clone of it) is gone.
        let own = std::sync::Arc::downgrade(&self.own_writes);
        tokio::spawn(async move {
            let mut conn: Option<SqliteConnection> = None;
            // (data_version, own writes) at the last tick, and own writes the tick before.
            let mut last: Option<(i64, u64, u64)> = None;
            loop {
                tokio::time::sleep(WATCH_EVERY).await;
                if own.strong_count() == 0 {
                    return;
                }
                if changes.receiver_count() == 0 {
                    last = None;
                    continue;
                }
                let Some(writes) = own.upgrade().map(|w| w.load(Ordering::Relaxed)) else {
                    return;
                };
                let Some(version) = data_version(&mut conn, &options).await else {
                    last = None;
                    continue;
                };
                if let Some((seen, seen_writes, before)) = last {
                    // Changed while this process wrote nothing over two ticks (a write of ours
                    // is counted when it starts, so one straddling a tick is not taken for
                    // another's): another process did, for a tenant unknown.
                    if version != seen && writes == seen_writes && writes == before {
                        let _ = changes.send(ANY_TENANT.to_owned());
                    }
                    last = Some((version, writes, seen_writes));
                } else {
                    last = Some((version, writes, writes));
                }
            }
        });
    }
}

/// `PRAGMA data_version` on the watcher's own connection (opened, or reopened after an error).
async fn data_version(
    conn: &mut Option<SqliteConnection>,
    options: &SqliteConnectOptions,
) -> Option<i64> {
    if conn.is_none() {
        match options.connect().await {
            Ok(c) => *conn = Some(c),
            Err(err) => {
                tracing::warn!(error = %err, "SQLite change watcher cannot connect");
                return None;
            }
        }
    }
    let c = conn.as_mut()?;
    match sqlx::query_scalar("PRAGMA data_version").fetch_one(c).await {
        Ok(v) => Some(v),
        Err(err) => {
            tracing::warn!(error = %err, "SQLite change watcher failed; reconnecting");
            *conn = None;
            None
        }
    }
}
