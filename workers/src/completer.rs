//! The completer: records outcomes in batches (one statement for many jobs), then acknowledges
//! their deliveries. Modelled on River's batching completer.

use std::sync::Arc;
use std::time::Duration;

use pysaas_brokers::{Ack, Completion, JobStore};
use pysaas_jobs::Outcome;
use tokio::sync::mpsc;

use crate::metrics_names::KindMetrics;
use crate::stats::Rollup;

/// Longest pause between attempts to write outcomes while the store is unreachable.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// One finished attempt on its way to the store.
#[derive(Debug)]
pub(crate) struct Finished {
    pub(crate) completion: Completion,
    pub(crate) ack: Option<Box<dyn Ack>>,
    pub(crate) metrics: Arc<KindMetrics>,
    /// The job's queue and how long the attempt waited to start once due (for the statistics).
    pub(crate) queue: String,
    pub(crate) waited: Duration,
}

/// Outcome batches written at once: the next batch's statement runs while the last one's
/// deliveries are acknowledged and its commit is flushed.
const IN_FLIGHT: usize = 2;

/// Drains `rx` until every sender is gone, writing up to `batch` outcomes per statement, at
/// most [`IN_FLIGHT`] statements at a time; returns once every outcome is written and its
/// delivery acknowledged. Outcomes are never dropped: a failed write is retried with backoff.
pub(crate) async fn run(
    store: Arc<dyn JobStore>,
    mut rx: mpsc::Receiver<Finished>,
    batch: usize,
    rollup: Arc<Rollup>,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    let mut writers = tokio::task::JoinSet::new();
    let mut buffer: Vec<Finished> = Vec::with_capacity(batch);
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            break;
        };
        if rx.recv_many(&mut buffer, batch).await == 0 {
            break;
        }
        let finished = std::mem::replace(&mut buffer, Vec::with_capacity(batch));
        let store = store.clone();
        let rollup = rollup.clone();
        writers.spawn(async move {
            write(store.as_ref(), finished, &rollup).await;
            drop(slot);
        });
        // Reap finished writers as we go, so the set stays small.
        while writers.try_join_next().is_some() {}
    }
    while writers.join_next().await.is_some() {}
}

/// Records one batch (retrying until the store takes it), then acknowledges its deliveries.
async fn write(store: &dyn JobStore, finished: Vec<Finished>, rollup: &Rollup) {
    let mut completions = Vec::with_capacity(finished.len());
    let mut rest = Vec::with_capacity(finished.len());
    for f in finished {
        let kind = outcome_kind(&f.completion.outcome);
        let counted = match kind {
            OutcomeKind::Succeeded => Some(true),
            OutcomeKind::Retrying | OutcomeKind::Dead => Some(false),
            OutcomeKind::Cancelled => None,
        };
        if let Some(succeeded) = counted {
            rollup.record(
                &f.completion.tenant_id,
                &f.queue,
                chrono::Utc::now(),
                succeeded,
                f.waited,
            );
        }
        rest.push((f.completion.id, f.ack, f.metrics, kind));
        completions.push(f.completion);
    }
    let mut backoff = pysaas_jobs::Backoff::new(Duration::from_millis(50), MAX_BACKOFF);
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
                tokio::time::sleep(backoff.next_wait()).await;
            }
        }
    }
    // Acknowledge the batch's deliveries concurrently: one round trip, not one per job.
    let mut acks = Vec::with_capacity(rest.len());
    for (id, ack, metrics, kind) in rest {
        record_metrics(&metrics, kind);
        if let Some(ack) = ack {
            acks.push(async move {
                if let Err(err) = ack.ack().await {
                    tracing::warn!(error = %err, job_id = %id, "ack failed; the message will be redelivered");
                }
            });
        }
    }
    futures::future::join_all(acks).await;
}

/// Which counter an outcome bumps.
#[derive(Debug, Clone, Copy)]
enum OutcomeKind {
    Succeeded,
    Retrying,
    Dead,
    Cancelled,
}

fn outcome_kind(outcome: &Outcome) -> OutcomeKind {
    match outcome {
        Outcome::Succeeded { .. } => OutcomeKind::Succeeded,
        Outcome::Retrying { .. } => OutcomeKind::Retrying,
        Outcome::Dead { .. } => OutcomeKind::Dead,
        Outcome::Cancelled { .. } => OutcomeKind::Cancelled,
    }
}

fn record_metrics(m: &KindMetrics, kind: OutcomeKind) {
    match kind {
        OutcomeKind::Succeeded => m.succeeded.increment(1),
        OutcomeKind::Retrying => m.failed.increment(1),
        OutcomeKind::Dead => {
            m.failed.increment(1);
            m.dead.increment(1);
        }
        OutcomeKind::Cancelled => m.cancelled.increment(1),
    }
}
