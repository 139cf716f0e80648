//! The worker's share of the per-minute statistics: finished attempts counted in memory per
//! tenant, queue and minute, added to the store every few seconds (one small write per flush,
//! never one per job), and once more at shutdown.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use pysaas_brokers::store::stats::minute_of;
use pysaas_brokers::{JobStore, MinuteStats};
use tokio_util::sync::CancellationToken;

/// How often the counts go to the store.
const FLUSH_EVERY: Duration = Duration::from_secs(5);

type Key = (String, String, DateTime<Utc>);

/// Counts not yet in the store.
#[derive(Debug, Default)]
pub(crate) struct Rollup {
    minutes: Mutex<HashMap<Key, MinuteStats>>,
}

impl Rollup {
    /// Counts an attempt of `tenant`'s job on `queue`, finished at `at` after waiting `waited`
    /// to start.
    pub(crate) fn record(
        &self,
        tenant: &str,
        queue: &str,
        at: DateTime<Utc>,
        succeeded: bool,
        waited: Duration,
    ) {
        let Ok(mut minutes) = self.minutes.lock() else {
            return;
        };
        let key = (tenant.to_owned(), queue.to_owned(), minute_of(at));
        minutes
            .entry(key)
            .or_insert_with(|| MinuteStats::new(tenant, queue, at))
            .record(succeeded, waited);
    }

    fn take(&self) -> Vec<MinuteStats> {
        self.minutes
            .lock()
            .map(|mut m| m.drain().map(|(_, s)| s).collect())
            .unwrap_or_default()
    }

    /// Puts back counts a failed flush could not write (added to what came meanwhile).
    fn put_back(&self, stats: Vec<MinuteStats>) {
        let Ok(mut minutes) = self.minutes.lock() else {
            return;
        };
        for s in stats {
            let key = (s.tenant_id.clone(), s.queue.clone(), s.minute);
            match minutes.get_mut(&key) {
                Some(mine) => mine.add(&s),
                None => {
                    minutes.insert(key, s);
                }
            }
        }
    }

    async fn flush(&self, store: &dyn JobStore) {
        let stats = self.take();
        if stats.is_empty() {
            return;
        }
        if let Err(err) = store.add_stats(&stats).await {
            tracing::warn!(error = %err, rows = stats.len(), "writing job statistics failed; kept for the next flush");
            self.put_back(stats);
        }
    }
}

/// Flushes `rollup` every few seconds until `stop`, then once more.
pub(crate) async fn run(store: Arc<dyn JobStore>, rollup: Arc<Rollup>, stop: CancellationToken) {
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            () = tokio::time::sleep(FLUSH_EVERY) => {}
        }
        rollup.flush(store.as_ref()).await;
    }
    rollup.flush(store.as_ref()).await;
}
