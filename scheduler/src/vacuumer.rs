//! Keeps the hot job table lean: every job passes through it, leaving dead row versions (and
//! dead entries at the head of the claim index, which every claim would step over) until they
//! are vacuumed. Autovacuum visits a table at most once a minute; at thousands of jobs a second
//! that lets claims slow down by the second. The leader vacuums the table whenever enough dead
//! versions have piled up (a cheap statement on a table that holds only unfinished jobs).

use std::sync::Arc;
use std::time::Duration;

use pysaas_brokers::JobStore;
use tokio_util::sync::CancellationToken;

/// How often the vacuumer looks.
pub const DEFAULT_VACUUM_INTERVAL: Duration = Duration::from_secs(2);
/// Dead row versions worth a vacuum.
pub const VACUUM_MIN_DEAD: i64 = 2000;

/// Runs the vacuumer until `shutdown`.
pub async fn run(store: Arc<dyn JobStore>, interval: Duration, shutdown: CancellationToken) {
    crate::service::every("vacuumer", interval, shutdown, || {
        let store = store.clone();
        async move { Ok(u64::from(store.vacuum_hot(VACUUM_MIN_DEAD).await?)) }
    })
    .await;
}
