//! Retention: deletes finished jobs once they are older than their state's retention, in
//! batches so that a large backlog never holds long locks.

use std::sync::Arc;
use std::time::Duration;

use pysaas_brokers::JobStore;
use pysaas_jobs::JobState;
use tokio_util::sync::CancellationToken;

/// Default pruning interval.
pub const DEFAULT_PRUNE_INTERVAL: Duration = Duration::from_secs(60);
/// Rows deleted per statement.
const PRUNE_BATCH: i64 = 5_000;

/// How long finished jobs are kept, per state; `None` keeps them forever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// `succeeded` jobs (default 24 hours).
    pub succeeded: Option<Duration>,
    /// `cancelled` jobs (default 7 days).
    pub cancelled: Option<Duration>,
    /// `dead` jobs (default 7 days: long enough to inspect and retry them).
    pub dead: Option<Duration>,
    /// Outbox facts every consumer has read, this long after they were recorded (default one
    /// hour: the outbox is a hand-off, not the archive — Kafka and the audit log are).
    pub events: Option<Duration>,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            succeeded: Some(Duration::from_secs(24 * 3600)),
            cancelled: Some(Duration::from_secs(7 * 24 * 3600)),
            dead: Some(Duration::from_secs(7 * 24 * 3600)),
            events: Some(Duration::from_secs(3600)),
        }
    }
}

impl Retention {
    fn by_state(&self) -> [(JobState, Option<Duration>); 3] {
        [
            (JobState::Succeeded, self.succeeded),
            (JobState::Cancelled, self.cancelled),
            (JobState::Dead, self.dead),
        ]
    }
}

/// One pruning pass: every state past its retention, batch after batch. Returns rows deleted.
pub async fn prune(store: &dyn JobStore, retention: Retention) -> pysaas_brokers::Result<u64> {
    let now = store.now().await?;
    // Workers silent for an hour are gone (a clean shutdown removes its own report at once).
    store
        .forget_workers(now - chrono::TimeDelta::hours(1))
        .await?;
    // The overview charts the last day of per-minute statistics; keep two.
    store.prune_stats(now - chrono::TimeDelta::days(2)).await?;
    let mut total = 0;
    for (state, keep) in retention.by_state() {
        let Some(keep) = keep else { continue };
        let Ok(keep) = chrono::Duration::from_std(keep) else {
            continue;
        };
        let cutoff = now - keep;
        loop {
            let n = store.prune_finished(state, cutoff, PRUNE_BATCH).await?;
            total += n;
            if n > 0 {
                metrics::counter!("pysaas_jobs_pruned_total", "state" => state.as_str())
                    .increment(n);
            }
            if n < PRUNE_BATCH as u64 {
                break;
            }
        }
    }
    // The analytics consumer's counted ids: a redelivery comes within minutes, not a week.
    store
        .prune_analytics_seen(now - chrono::TimeDelta::days(7))
        .await?;
    if let Some(keep) = retention
        .events
        .and_then(|k| chrono::Duration::from_std(k).ok())
    {
        loop {
            let n = store.outbox_prune(now - keep, PRUNE_BATCH as usize).await?;
            total += n;
            if n < PRUNE_BATCH as u64 {
                break;
            }
        }
    }
    Ok(total)
}

/// Runs the pruner until `shutdown`.
pub async fn run(
    store: Arc<dyn JobStore>,
    retention: Retention,
    interval: Duration,
    shutdown: CancellationToken,
) {
    crate::service::every("pruner", interval, shutdown, || {
        let store = store.clone();
        async move { prune(store.as_ref(), retention).await }
    })
    .await;
}
