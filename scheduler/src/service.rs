use std::future::Future;
use std::time::Duration;

use pysaas_brokers::Result;
use tokio_util::sync::CancellationToken;

/// Runs `pass` every `interval` until `shutdown`; failures are logged and the next pass retries.
pub(crate) async fn every<F, Fut>(
    name: &'static str,
    interval: Duration,
    shutdown: CancellationToken,
    mut pass: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<u64>>,
{
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        match pass().await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(service = name, rows = n, "maintenance pass"),
            Err(err) => tracing::warn!(service = name, error = %err, "maintenance pass failed"),
        }
    }
}
