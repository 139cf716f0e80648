//! Queue-depth gauges (leader only): `pysaas_queue_jobs{queue,state}` and
//! `pysaas_queue_oldest_queued_seconds{queue}`, the signals a Kubernetes HPA scales workers on.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use pysaas_brokers::JobStore;
use pysaas_jobs::JobState;
use tokio_util::sync::CancellationToken;

/// Default refresh interval.
pub const DEFAULT_GAUGE_INTERVAL: Duration = Duration::from_secs(5);

/// Unfinished states, reported even when empty so that a drained queue reads 0.
const LIVE_STATES: [JobState; 4] = [
    JobState::Scheduled,
    JobState::Queued,
    JobState::Running,
    JobState::Retrying,
];

/// Runs the gauge refresher until `shutdown`.
pub async fn run(store: Arc<dyn JobStore>, interval: Duration, shutdown: CancellationToken) {
    let seen = Arc::new(std::sync::Mutex::new(BTreeSet::<String>::new()));
    crate::service::every("gauges", interval, shutdown, || {
        let (store, seen) = (store.clone(), seen.clone());
        async move {
            let now = store.now().await?;
            let stats = store.live_queue_stats().await?;
            let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
            let current: BTreeSet<String> = stats.iter().map(|s| s.queue.clone()).collect();
            // Queues that vanished (pruned away) read 0 rather than their last value.
            for gone in seen.difference(&current) {
                for state in LIVE_STATES {
                    metrics::gauge!("pysaas_queue_jobs", "queue" => gone.clone(), "state" => state.as_str())
                        .set(0.0);
                }
                metrics::gauge!("pysaas_queue_oldest_queued_seconds", "queue" => gone.clone()).set(0.0);
            }
            for queue in &stats {
                for state in LIVE_STATES {
                    let n = queue.counts.get(&state).copied().unwrap_or(0);
                    metrics::gauge!("pysaas_queue_jobs", "queue" => queue.queue.clone(), "state" => state.as_str())
                        .set(n as f64);
                }
                let age = queue
                    .oldest_queued_at
                    .map(|t| (now - t).num_milliseconds().max(0) as f64 / 1000.0)
                    .unwrap_or(0.0);
                metrics::gauge!("pysaas_queue_oldest_queued_seconds", "queue" => queue.queue.clone())
                    .set(age);
            }
            *seen = current;
            Ok(stats.len() as u64)
        }
    })
    .await;
}
