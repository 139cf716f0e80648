//! The relay: announces queued jobs that a message broker has not been told about — the API's
//! publish failed (broker down), a job was promoted, rescued or released, or a message was lost —
//! so that a broker outage delays jobs but never loses them. Runs only with a broker dispatcher.

use std::sync::Arc;
use std::time::Duration;

use pysaas_brokers::{Dispatcher, JobStore};
use tokio_util::sync::CancellationToken;

/// How often the relay looks for jobs to announce.
pub const DEFAULT_RELAY_INTERVAL: Duration = Duration::from_millis(200);
/// How long a fresh job is left to the API's own publish before the relay announces it.
pub const DEFAULT_RELAY_GRACE: Duration = Duration::from_millis(500);
/// A job announced this long ago and still queued is announced again (its message was lost).
pub const DEFAULT_REDISPATCH_AFTER: Duration = Duration::from_secs(300);
/// Most jobs announced per pass.
const RELAY_BATCH: usize = 1000;

/// Runs the relay until `shutdown`.
pub async fn run(
    store: Arc<dyn JobStore>,
    dispatcher: Arc<dyn Dispatcher>,
    interval: Duration,
    shutdown: CancellationToken,
) {
    crate::service::every("relay", interval, shutdown, || {
        let (store, dispatcher) = (store.clone(), dispatcher.clone());
        async move {
            let mut total = 0;
            loop {
                let jobs = store
                    .undispatched(DEFAULT_RELAY_GRACE, DEFAULT_REDISPATCH_AFTER, RELAY_BATCH)
                    .await?;
                if jobs.is_empty() {
                    return Ok(total);
                }
                dispatcher.dispatch(&jobs).await?;
                total += jobs.len() as u64;
                if jobs.len() < RELAY_BATCH {
                    return Ok(total);
                }
            }
        }
    })
    .await;
}
