//! The relay: announces queued jobs that a message broker does not hold a message for — the
//! API's publish failed (broker down) or never happened (the process died after the commit), a
//! job was rescued or released, or the broker lost a message — so that a broker outage delays
//! jobs but never loses them. Runs only with a broker dispatcher.
//!
//! It keeps no per-job marks: for each queue with queued jobs it asks the broker how many
//! messages it still holds for the queue that no consumer has taken. While that is above 0 the
//! consumers are still working through messages, which may well be the ones for the queued
//! jobs. When it is 0, every job still queued in the store for longer than [`DEFAULT_RELAY_GRACE`]
//! has no message waiting, and is announced again (a duplicate is harmless: claims are
//! conditional).

use std::sync::Arc;
use std::time::Duration;

use pysaas_brokers::{Dispatcher, JobStore};
use tokio_util::sync::CancellationToken;

/// How often the relay looks for jobs to announce.
pub const DEFAULT_RELAY_INTERVAL: Duration = Duration::from_millis(250);
/// How long a fresh job is left to the API's own publish before the relay announces it.
pub const DEFAULT_RELAY_GRACE: Duration = Duration::from_millis(500);
/// Most jobs announced per queue and pass.
const RELAY_BATCH: usize = 1000;

/// One pass: returns how many jobs were announced.
pub async fn relay_once(
    store: &dyn JobStore,
    dispatcher: &dyn Dispatcher,
) -> pysaas_brokers::Result<u64> {
    let mut total = 0;
    for queue in store.queued_queues().await? {
        match dispatcher.backlog(&queue).await? {
            Some(0) => {}
            Some(_) | None => continue,
        }
        let jobs = store
            .stale_queued(&queue, DEFAULT_RELAY_GRACE, RELAY_BATCH)
            .await?;
        if jobs.is_empty() {
            continue;
        }
        dispatcher.dispatch(&jobs).await?;
        tracing::info!(queue = %queue, jobs = jobs.len(), "announced queued jobs the broker held no message for");
        total += jobs.len() as u64;
    }
    Ok(total)
}

/// Runs the relay until `shutdown`.
pub async fn run(
    store: Arc<dyn JobStore>,
    dispatcher: Arc<dyn Dispatcher>,
    interval: Duration,
    shutdown: CancellationToken,
) {
    crate::service::every("relay", interval, shutdown, || {
        let (store, dispatcher) = (store.clone(), dispatcher.clone());
        async move { relay_once(store.as_ref(), dispatcher.as_ref()).await }
    })
    .await;
}
