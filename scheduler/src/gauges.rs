//! Queue-depth gauges (leader only), for deployments whose worker and scheduler processes are
//! scraped without an API: see [`pysaas_brokers::gauges`].

use std::sync::Arc;
use std::time::Duration;

use pysaas_brokers::gauges::QueueGauges;
use pysaas_brokers::JobStore;
use tokio_util::sync::CancellationToken;

/// Default refresh interval.
pub const DEFAULT_GAUGE_INTERVAL: Duration = Duration::from_secs(5);

/// Runs the gauge refresher until `shutdown`; then zeroes what it published, so a replica that
/// stopped leading does not keep reporting stale depths.
pub async fn run(store: Arc<dyn JobStore>, interval: Duration, shutdown: CancellationToken) {
    let gauges = Arc::new(QueueGauges::default());
    let publisher = gauges.clone();
    crate::service::every("gauges", interval, shutdown, || {
        let (store, gauges) = (store.clone(), publisher.clone());
        async move { gauges.refresh(store.as_ref()).await }
    })
    .await;
    gauges.zero();
}
