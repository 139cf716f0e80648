//! The worker runtime: one fetch loop per queue, each bounded by its own concurrency; jobs run
//! under a timeout and a heartbeated lease; outcomes go to the batched completer.
//!
//! ```text
//! fetch loop ──claim──▶ job task ──outcome──▶ completer ──batch UPDATE──▶ store
//!                         ▲                                  └──▶ ack delivery
//!            heartbeat ───┘ (extends leases, stops jobs no longer held)
//! ```

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::FutureExt;
use pysaas_brokers::{
    Completion, ConsumerSpec, Delivery, Dispatcher, JobConsumer, JobStore, StoreError,
};
use pysaas_jobs::{HandlerError, Outcome, RetryPolicy};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use crate::completer::{self, Finished};
use crate::heartbeat::{self, InFlight};
use crate::metrics_names as m;
use crate::{Handlers, JobContext, QueueConfig, WorkerConfig};

/// How long a job whose kind this worker has no handler for waits before another try (a newer
/// worker version may have it).
const NO_HANDLER_RETRY: Duration = Duration::from_secs(60);
/// When the previous claim filled every free slot (a backlog), the fetch loop waits up to this
/// long for half the slots to free up, so that it claims in batches instead of one job at a time.
const FETCH_COALESCE: Duration = Duration::from_millis(2);
/// Longest pause of a fetch loop after the store or broker failed.
const MAX_FETCH_BACKOFF: Duration = Duration::from_secs(5);

/// Errors that stop a worker.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkerError {
    /// The store or dispatcher failed at start.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The configuration cannot run.
    #[error("invalid worker configuration: {0}")]
    Config(String),
}

/// A worker process's pool.
#[derive(Debug)]
pub struct Worker {
    store: Arc<dyn JobStore>,
    dispatcher: Arc<dyn Dispatcher>,
    handlers: Handlers,
    config: WorkerConfig,
}

struct Shared {
    store: Arc<dyn JobStore>,
    handlers: Handlers,
    in_flight: InFlight,
    completions: mpsc::Sender<Finished>,
    tracker: TaskTracker,
}

/// Removes a job from the in-flight set however its task ends.
struct InFlightGuard<'a> {
    in_flight: &'a InFlight,
    id: Uuid,
}

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        if let Ok(mut map) = self.in_flight.lock() {
            map.remove(&self.id);
        }
    }
}

impl Worker {
    /// A worker over `store`, fed by `dispatcher`.
    pub fn new(
        store: Arc<dyn JobStore>,
        dispatcher: Arc<dyn Dispatcher>,
        handlers: Handlers,
        config: WorkerConfig,
    ) -> Self {
        Worker {
            store,
            dispatcher,
            handlers,
            config,
        }
    }

    /// Runs until `shutdown` is cancelled, then stops claiming, gives in-flight jobs the grace
    /// period to finish, releases the rest back to `queued` and flushes the completer.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), WorkerError> {
        let config = self.config;
        if config.queues.is_empty() {
            return Err(WorkerError::Config("no queues to consume".into()));
        }
        if let Some(q) = config.queues.iter().find(|q| q.concurrency == 0) {
            return Err(WorkerError::Config(format!(
                "queue `{}` has concurrency 0",
                q.name
            )));
        }
        let total: usize = config.queues.iter().map(|q| q.concurrency).sum();
        let (tx, rx) = mpsc::channel(total.max(config.completer_batch) * 2);
        let completer = tokio::spawn(completer::run(
            self.store.clone(),
            rx,
            config.completer_batch.max(1),
        ));
        let shared = Arc::new(Shared {
            store: self.store.clone(),
            handlers: self.handlers,
            in_flight: InFlight::default(),
            completions: tx,
            tracker: TaskTracker::new(),
        });
        let heartbeat_stop = CancellationToken::new();
        let heartbeat = tokio::spawn(heartbeat::run(
            self.store.clone(),
            shared.in_flight.clone(),
            config.worker_id.clone(),
            config.lease,
            config.heartbeat_interval.max(Duration::from_millis(10)),
            heartbeat_stop.clone(),
        ));

        let mut fetchers = Vec::with_capacity(config.queues.len());
        for queue in &config.queues {
            let spec = ConsumerSpec {
                queue: queue.name.clone(),
                worker_id: config.worker_id.clone(),
                lease: config.lease,
            };
            let consumer = match self.dispatcher.consumer(spec).await {
                Ok(consumer) => consumer,
                Err(err) => {
                    shutdown.cancel();
                    return Err(err.into());
                }
            };
            fetchers.push(tokio::spawn(fetch_loop(
                shared.clone(),
                queue.clone(),
                consumer,
                shutdown.clone(),
            )));
        }
        tracing::info!(
            worker_id = %config.worker_id,
            dispatcher = self.dispatcher.name(),
            queues = ?config.queues.iter().map(|q| format!("{}={}", q.name, q.concurrency)).collect::<Vec<_>>(),
            "worker started"
        );

        shutdown.cancelled().await;
        for fetcher in fetchers {
            let _ = fetcher.await;
        }
        shared.tracker.close();
        let in_flight = heartbeat::snapshot(&shared.in_flight);
        tracing::info!(in_flight = in_flight.len(), grace = ?config.shutdown_grace, "worker stopping; finishing in-flight jobs");
        let mut unfinished = Vec::new();
        if tokio::time::timeout(config.shutdown_grace, shared.tracker.wait())
            .await
            .is_err()
        {
            unfinished = heartbeat::snapshot(&shared.in_flight);
            if let Ok(map) = shared.in_flight.lock() {
                map.values().for_each(CancellationToken::cancel);
            }
            shared.tracker.wait().await;
        }
        let store = shared.store.clone();
        drop(shared);
        // Every job task has ended, so every outcome is in the channel: flush them before
        // releasing, so that a finished job is never re-queued.
        let _ = completer.await;
        if !unfinished.is_empty() {
            match store.release(&config.worker_id, &unfinished).await {
                Ok(n) => tracing::info!(
                    released = n,
                    "released unfinished jobs back to their queues"
                ),
                Err(err) => {
                    tracing::warn!(error = %err, jobs = unfinished.len(), "release failed; the rescuer will re-queue them when their leases expire")
                }
            }
        }
        heartbeat_stop.cancel();
        let _ = heartbeat.await;
        tracing::info!(worker_id = %config.worker_id, "worker stopped");
        Ok(())
    }
}

async fn fetch_loop(
    shared: Arc<Shared>,
    queue: QueueConfig,
    mut consumer: Box<dyn JobConsumer>,
    shutdown: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(queue.concurrency));
    let mut backoff = Duration::from_millis(50);
    let mut backlog = false;
    let batch_target = (queue.concurrency / 2).max(1);
    loop {
        let first = tokio::select! {
            biased;
            _ = shutdown.cancelled() => return,
            permit = slots.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
        };
        let mut permits = vec![first];
        while let Ok(permit) = slots.clone().try_acquire_owned() {
            permits.push(permit);
        }
        if backlog && permits.len() < batch_target {
            let deadline = tokio::time::Instant::now() + FETCH_COALESCE;
            while permits.len() < batch_target && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(1)).await;
                while let Ok(permit) = slots.clone().try_acquire_owned() {
                    permits.push(permit);
                }
            }
        }
        let asked = permits.len();
        match consumer.poll(asked).await {
            Ok(deliveries) if deliveries.is_empty() => {
                backoff = Duration::from_millis(50);
                backlog = false;
                drop(permits);
                tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => return,
                    () = consumer.wait() => {}
                }
            }
            Ok(deliveries) => {
                backoff = Duration::from_millis(50);
                backlog = deliveries.len() >= asked;
                for delivery in deliveries {
                    let permit = permits.pop();
                    shared
                        .tracker
                        .spawn(run_job(shared.clone(), delivery, permit));
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, queue = %queue.name, retry_in = ?backoff, "claiming jobs failed");
                drop(permits);
                tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_FETCH_BACKOFF);
            }
        }
    }
}

async fn run_job(shared: Arc<Shared>, delivery: Delivery, permit: Option<OwnedSemaphorePermit>) {
    let Delivery { job, ack } = delivery;
    let stop = CancellationToken::new();
    if let Ok(mut map) = shared.in_flight.lock() {
        map.insert(job.id, stop.clone());
    }
    let _guard = InFlightGuard {
        in_flight: &shared.in_flight,
        id: job.id,
    };
    let labels = [("kind", job.kind.clone()), ("queue", job.queue.clone())];
    metrics::counter!(m::STARTED, &labels).increment(1);
    if let Some(started) = job.started_at {
        let wait = (started - job.run_at).to_std().unwrap_or_default();
        metrics::histogram!(m::QUEUE_WAIT, &labels).record(wait.as_secs_f64());
    }
    let ctx = JobContext::of(&job);
    let span = tracing::info_span!(
        "job",
        job_id = %job.id,
        kind = %job.kind,
        queue = %job.queue,
        attempt = job.attempts,
        request_id = job.request_id.as_deref().unwrap_or(""),
    );
    let clock = Instant::now();
    let (result, policy) = match shared.handlers.get(&job.kind) {
        Some(registered) => {
            let timeout = Duration::from_millis(u64::try_from(job.timeout_ms).unwrap_or(1).max(1));
            let call = AssertUnwindSafe(registered.call(&ctx, job.payload.clone())).catch_unwind();
            let result = tokio::select! {
                outcome = tokio::time::timeout(timeout, call) => match outcome {
                    Ok(Ok(result)) => result,
                    Ok(Err(panic)) => Err(HandlerError::retry(format!("handler panicked: {}", panic_message(&*panic)))),
                    Err(_) => Err(HandlerError::retry(format!("timed out after {} ms", job.timeout_ms))),
                },
                _ = stop.cancelled() => {
                    // Cancelled by a user, rescued elsewhere, or aborted at shutdown: not ours to record.
                    return;
                }
            };
            (result, registered.spec.retry)
        }
        None => (
            Err(HandlerError::retry_after(
                format!("no handler for kind `{}` on this worker", job.kind),
                NO_HANDLER_RETRY,
            )),
            RetryPolicy::default(),
        ),
    };
    metrics::histogram!(m::RUN_DURATION, &labels).record(clock.elapsed().as_secs_f64());
    let outcome = Outcome::decide(result, job.attempts, job.max_attempts, &policy, Utc::now());
    span.in_scope(|| match &outcome {
        Outcome::Succeeded { .. } => tracing::debug!(
            elapsed_ms = clock.elapsed().as_millis() as u64,
            "job succeeded"
        ),
        Outcome::Retrying { error, run_at } => {
            tracing::info!(%error, %run_at, "job attempt failed; will retry")
        }
        Outcome::Dead { error } => tracing::warn!(%error, "job failed for good"),
        Outcome::Cancelled { error } => tracing::info!(%error, "job cancelled by its handler"),
    });
    let finished = Finished {
        completion: Completion {
            id: job.id,
            attempt: job.attempts,
            outcome,
        },
        ack,
        kind: job.kind,
        queue: job.queue,
    };
    if shared.completions.send(finished).await.is_err() {
        tracing::error!(job_id = %ctx.id, "completer is gone; outcome not recorded (the job will be rescued)");
    }
    drop(permit);
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned())
}
