//! Rescues jobs whose worker died: a `running` job whose lease expired goes back to `queued`
//! (or `dead` once its attempts are used up).

use std::sync::Arc;
use std::time::Duration;

use pysaas_brokers::JobStore;
use tokio_util::sync::CancellationToken;

/// Default rescue interval. A dead worker's jobs restart within lease + this interval.
pub const DEFAULT_RESCUE_INTERVAL: Duration = Duration::from_secs(1);

/// Runs the rescuer until `shutdown`.
pub async fn run(store: Arc<dyn JobStore>, interval: Duration, shutdown: CancellationToken) {
    crate::service::every("rescuer", interval, shutdown, || store.rescue_expired()).await;
}
