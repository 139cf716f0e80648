//! Promotes due `scheduled` and `retrying` jobs to `queued`, and tells a message broker about
//! them at once (the relay would only after its grace period).

use std::sync::Arc;
use std::time::Duration;

use pysaas_brokers::{Dispatcher, JobStore};
use tokio_util::sync::CancellationToken;

/// Default promotion interval: a delayed job starts at most about this late (plus claim time).
/// The query only touches an index of due rows, so a short interval is cheap.
pub const DEFAULT_PROMOTE_INTERVAL: Duration = Duration::from_millis(50);

/// Runs the promoter until `shutdown`.
pub async fn run(
    store: Arc<dyn JobStore>,
    dispatcher: Arc<dyn Dispatcher>,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let broker = dispatcher.name() != "store";
    crate::service::every("promoter", interval, shutdown, || {
        let (store, dispatcher) = (store.clone(), dispatcher.clone());
        async move {
            let jobs = store.promote_due().await?;
            pysaas_brokers::gauges::count_enqueued(&jobs, "promoted");
            if broker && !jobs.is_empty() {
                // A failed publish is not lost: the relay announces what was not marked.
                if let Err(err) = dispatcher.dispatch(&jobs).await {
                    tracing::warn!(error = %err, jobs = jobs.len(), "promoted jobs not announced; the relay will");
                }
            }
            Ok(jobs.len() as u64)
        }
    })
    .await;
}
