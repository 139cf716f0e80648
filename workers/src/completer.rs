//! The completer: records outcomes in batches (one statement for many jobs), then acknowledges
//! their deliveries. Modelled on River's batching completer.

use std::sync::Arc;
use std::time::Duration;

use pysaas_brokers::{Ack, Completion, JobStore};
use pysaas_jobs::Outcome;
use tokio::sync::mpsc;

use crate::metrics_names::KindMetrics;

/// Longest pause between attempts to write outcomes while the store is unreachable.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// One finished attempt on its way to the store.
#[derive(Debug)]
pub(crate) struct Finished {
    pub(crate) completion: Completion,
    pub(crate) ack: Option<Box<dyn Ack>>,
    pub(crate) metrics: Arc<KindMetrics>,
}

/// Drains `rx` until every sender is gone, writing up to `batch` outcomes per statement.
/// Outcomes are never dropped: a failed write is retried with backoff.
pub(crate) async fn run(store: Arc<dyn JobStore>, mut rx: mpsc::Receiver<Finished>, batch: usize) {
    let mut buffer: Vec<Finished> = Vec::with_capacity(batch);
    while rx.recv_many(&mut buffer, batch).await > 0 {
        let completions: Vec<Completion> = buffer.iter().map(|f| f.completion.clone()).collect();
        let mut backoff = Duration::from_millis(50);
        loop {
            match store.complete(&completions).await {
                Ok(changed) => {
                    if (changed as usize) < completions.len() {
                        tracing::debug!(
                            written = changed,
                            batch = completions.len(),
                            "some outcomes were stale (job cancelled or rescued meanwhile)"
                        );
                    }
                    break;
                }
                Err(err) => {
                    tracing::warn!(error = %err, batch = completions.len(), "recording outcomes failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
        // Acknowledge the batch's deliveries concurrently: one round trip, not one per job.
        let mut acks = Vec::with_capacity(buffer.len());
        for finished in buffer.drain(..) {
            record_metrics(&finished);
            if let Some(ack) = finished.ack {
                let id = finished.completion.id;
                acks.push(async move {
                    if let Err(err) = ack.ack().await {
                        tracing::warn!(error = %err, job_id = %id, "ack failed; the message will be redelivered");
                    }
                });
            }
        }
        futures::future::join_all(acks).await;
    }
}

fn record_metrics(finished: &Finished) {
    let m = &finished.metrics;
    match &finished.completion.outcome {
        Outcome::Succeeded { .. } => m.succeeded.increment(1),
        Outcome::Retrying { .. } => m.failed.increment(1),
        Outcome::Dead { .. } => {
            m.failed.increment(1);
            m.dead.increment(1);
        }
        Outcome::Cancelled { .. } => m.cancelled.increment(1),
    }
}
