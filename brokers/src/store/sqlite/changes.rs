//! Changes made by another process on the same SQLite file (a `pysaas worker` beside a
//! `pysaas api`): SQLite has no notifications, but `PRAGMA data_version` on a connection changes
//! exactly when *another* connection commits. Every write of this process goes through its one
//! writer connection, so read there the value changes only for other processes' commits. A
//! watcher polls it while someone listens and announces [`ANY_TENANT`] (which tenant changed is
//! not known) when it moved.

use std::time::Duration;

use super::SqliteStore;
use crate::store::ANY_TENANT;

/// How often the watcher reads `data_version`: a change shows on a page well within a second.
pub(super) const WATCH_EVERY: Duration = Duration::from_millis(100);
/// How long the watcher waits for the writer (busy with a write of this process) before
/// trying again at the next tick; the version it reads then covers the skipped ticks too.
const WRITER_WAIT: Duration = Duration::from_millis(20);

impl SqliteStore {
    /// Starts the watcher once (the first listener does), unless the database is in memory (no
    /// other process can share it).
    pub(super) fn watch_other_processes(&self) {
        if self.in_memory || self.watcher.set(()).is_err() {
            return;
        }
        let changes = self.changes.clone();
        let writer = self.writer.clone();
        // Weak: the watcher ends once the store (every clone of it) is gone.
        let alive = std::sync::Arc::downgrade(&self.watcher);
        tokio::spawn(async move {
            let mut last: Option<i64> = None;
            loop {
                tokio::time::sleep(WATCH_EVERY).await;
                if alive.strong_count() == 0 {
                    return;
                }
                if changes.receiver_count() == 0 {
                    last = None;
                    continue;
                }
                let Ok(Ok(mut conn)) = tokio::time::timeout(WRITER_WAIT, writer.acquire()).await
                else {
                    continue;
                };
                let version: i64 = match sqlx::query_scalar("PRAGMA data_version")
                    .fetch_one(&mut *conn)
                    .await
                {
                    Ok(v) => v,
                    Err(err) => {
                        tracing::warn!(error = %err, "SQLite change watcher failed");
                        last = None;
                        continue;
                    }
                };
                drop(conn);
                if last.is_some_and(|seen| seen != version) {
                    let _ = changes.send(ANY_TENANT.to_owned());
                }
                last = Some(version);
            }
        });
    }
}
