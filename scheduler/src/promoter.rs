//! Promotes due `scheduled` and `retrying` jobs to `queued`.

use std::sync::Arc;
use std::time::Duration;

use pysaas_brokers::JobStore;
use tokio_util::sync::CancellationToken;

/// Default promotion interval: a delayed job starts at most about this late (plus claim time).
/// The query only touches an index of due rows, so a short interval is cheap.
pub const DEFAULT_PROMOTE_INTERVAL: Duration = Duration::from_millis(100);

/// Runs the promoter until `shutdown`.
pub async fn run(store: Arc<dyn JobStore>, interval: Duration, shutdown: CancellationToken) {
    crate::service::every("promoter", interval, shutdown, || store.promote_due()).await;
}
