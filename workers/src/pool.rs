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
use pysaas_jobs::trace::TraceParent;
use pysaas_jobs::{HandlerError, Outcome, RetryPolicy};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use tracing::Instrument;

use std::collections::BTreeSet;
use tokio::sync::{mpsc, watch, Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use crate::admission::{self, Limits};
use crate::completer::{self, Finished};
use crate::heartbeat::{self, InFlight};
use crate::metrics_names::MetricsCache;
use crate::{Handlers, JobContext, QueueConfig, WorkerConfig, PREFETCH_HORIZON};

/// How long a job whose kind this worker has no handler for waits before another try (a newer
/// worker version may have it).
const NO_HANDLER_RETRY: Duration = Duration::from_secs(60);
/// When the previous claim filled every free slot (a backlog), the fetch loop waits up to this
/// long for half the slots to free up, so that it claims in batches instead of one job at a time.
const FETCH_COALESCE: Duration = Duration::from_millis(2);
/// Longest pause of a fetch loop after the store or broker failed.
const MAX_FETCH_BACKOFF: Duration = Duration::from_secs(5);
/// How often the worker reads which queues are paused: a pause stops claims within this (plus
/// a claim already under way).
pub(crate) const PAUSE_POLL: Duration = Duration::from_millis(500);

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
    profiles: Option<Arc<dyn pysaas_brokers::ProfileStore>>,
    dispatcher: Arc<dyn Dispatcher>,
    handlers: Handlers,
    config: WorkerConfig,
}

struct Shared {
    store: Arc<dyn JobStore>,
    profiles: Option<Arc<dyn pysaas_brokers::ProfileStore>>,
    worker_id: String,
    handlers: Handlers,
    in_flight: InFlight,
    completions: mpsc::Sender<Finished>,
    tracker: TaskTracker,
    metrics: MetricsCache,
    limits: Limits,
}

/// Frees a job's execution slot and tells the claimer, however its task ends.
struct SlotGuard {
    state: Arc<QueueState>,
    permit: Option<OwnedSemaphorePermit>,
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        // Free the slot first, then wake the claimer (`notify_one` keeps the wake-up for it if
        // it is not waiting yet).
        self.permit.take();
        self.state.ended.notify_one();
    }
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
            profiles: None,
            dispatcher,
            handlers,
            config,
        }
    }

    /// Handlers find profiles and preferences in `profiles` (DynamoDB, say) instead of the
    /// job store's tables.
    pub fn with_profiles(mut self, profiles: Arc<dyn pysaas_brokers::ProfileStore>) -> Self {
        self.profiles = Some(profiles);
        self
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
        // Read before the first claim, so that a queue paused before this worker started is
        // never claimed from.
        let initial: BTreeSet<String> = (self.store.paused_queues().await?)
            .into_iter()
            .map(|p| p.queue)
            .collect();
        let total: usize = config.queues.iter().map(|q| q.concurrency).sum();
        let (tx, rx) = mpsc::channel(total.max(config.completer_batch) * 2);
        let rollup = Arc::new(crate::stats::Rollup::default());
        let completer = tokio::spawn(completer::run(
            self.store.clone(),
            rx,
            config.completer_batch.max(1),
            rollup.clone(),
        ));
        let shared = Arc::new(Shared {
            store: self.store.clone(),
            profiles: self.profiles.clone(),
            worker_id: config.worker_id.clone(),
            handlers: self.handlers.clone(),
            in_flight: InFlight::default(),
            completions: tx,
            tracker: TaskTracker::new(),
            metrics: MetricsCache::default(),
            limits: Limits::new(&self.handlers, &config.rate_limits),
        });
        let heartbeat_stop = CancellationToken::new();
        let me = pysaas_brokers::WorkerInfo {
            id: config.worker_id.clone(),
            host: heartbeat::hostname(),
            pid: i64::from(std::process::id()),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            queues: config.queues.iter().map(|q| q.name.clone()).collect(),
            concurrency: i32::try_from(total).unwrap_or(i32::MAX),
            busy: 0,
            started_at: chrono::Utc::now(),
            last_seen: chrono::Utc::now(),
        };
        let heartbeat = tokio::spawn(heartbeat::run(
            self.store.clone(),
            shared.in_flight.clone(),
            me,
            config.lease,
            config.heartbeat_interval.max(Duration::from_millis(10)),
            heartbeat_stop.clone(),
        ));

        let stats = tokio::spawn(crate::stats::run(
            self.store.clone(),
            rollup,
            heartbeat_stop.clone(),
        ));
        let (paused_tx, paused) = watch::channel(initial);
        let pauses = tokio::spawn(watch_pauses(
            self.store.clone(),
            paused_tx,
            heartbeat_stop.clone(),
        ));

        let mut fetchers = Vec::with_capacity(config.queues.len());
        for queue in &config.queues {
            let spec = ConsumerSpec {
                queue: queue.name.clone(),
                worker_id: config.worker_id.clone(),
                lease: config.lease,
                // A broker delivers up to about twice this ahead of acknowledgements, whether or
                // not the jobs are fast: claim-ahead beyond the concurrency counts only up to the
                // concurrency here, so that slow jobs' messages do not pile up in one worker.
                capacity: queue.concurrency + queue.prefetch.min(queue.concurrency),
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
                paused.clone(),
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
        let mut unstarted = Vec::new();
        for fetcher in fetchers {
            unstarted.extend(fetcher.await.unwrap_or_default());
        }
        if !unstarted.is_empty() {
            // Claimed ahead but never started: back to their queues at once, no attempt counted.
            match self.store.release(&config.worker_id, &unstarted).await {
                Ok(n) => {
                    tracing::info!(released = n, "released jobs claimed ahead but not started")
                }
                Err(err) => {
                    tracing::warn!(error = %err, jobs = unstarted.len(), "release failed; the rescuer will re-queue them when their leases expire")
                }
            }
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
        // Every job task has ended and removed itself from the in-flight set: what is still
        // there was claimed and never started (a race of the shutdown with a claim being
        // admitted), and is released with the rest.
        for id in heartbeat::snapshot(&shared.in_flight) {
            if !unfinished.contains(&id) {
                unfinished.push(id);
            }
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
        let _ = pauses.await;
        let _ = stats.await;
        tracing::info!(worker_id = %config.worker_id, "worker stopped");
        Ok(())
    }
}

/// Keeps `paused` up to date with the store's paused queues until `stop`. A failed read keeps
/// the last answer (the fetch loops' own claims report the store's trouble).
async fn watch_pauses(
    store: Arc<dyn JobStore>,
    paused: watch::Sender<BTreeSet<String>>,
    stop: CancellationToken,
) {
    loop {
        match store.paused_queues().await {
            Ok(list) => {
                let now: BTreeSet<String> = list.into_iter().map(|p| p.queue).collect();
                paused.send_if_modified(|old| {
                    let changed = *old != now;
                    if changed {
                        *old = now;
                    }
                    changed
                });
            }
            Err(err) => tracing::debug!(error = %err, "reading paused queues failed"),
        }
        tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            () = tokio::time::sleep(PAUSE_POLL) => {}
        }
    }
}

/// Waits while `queue` is paused; `false` when `shutdown` came first.
async fn wait_while_paused(
    queue: &str,
    consumer: &mut dyn JobConsumer,
    paused: &mut watch::Receiver<BTreeSet<String>>,
    shutdown: &CancellationToken,
) -> bool {
    if !paused.borrow_and_update().contains(queue) {
        return true;
    }
    consumer.pause().await;
    tracing::info!(
        queue,
        "queue paused: claiming nothing from it until it is resumed"
    );
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return false,
            changed = paused.changed() => {
                if changed.is_err() || !paused.borrow_and_update().contains(queue) {
                    break;
                }
            }
        }
    }
    tracing::info!(queue, "queue resumed");
    true
}

/// What a queue's claimer and starter share.
struct QueueState {
    /// Free execution slots.
    run_slots: Arc<Semaphore>,
    /// Claimed jobs waiting for a slot.
    buffered: AtomicUsize,
    /// Exponentially weighted mean run time in microseconds (`u64::MAX` until a job ran).
    mean_run_us: AtomicU64,
    /// Signalled whenever a job ends (demand for more jobs may have grown).
    ended: Notify,
    /// The queue's concurrency.
    run_slots_total: usize,
}

impl QueueState {
    /// Jobs worth claiming ahead: what the slots run in [`PREFETCH_HORIZON`] at the mean run
    /// time, at most `cap` (none until a job has run).
    fn ahead(&self, cap: usize) -> usize {
        let mean = self.mean_run_us.load(Ordering::Relaxed);
        if mean == u64::MAX {
            return 0;
        }
        let horizon = u64::try_from(PREFETCH_HORIZON.as_micros()).unwrap_or(u64::MAX);
        let slots = self.run_slots_total as u64;
        usize::try_from(slots.saturating_mul(horizon) / mean.max(1))
            .unwrap_or(usize::MAX)
            .min(cap)
    }

    /// Whether claims should wait to come in batches (a backlog of jobs worth claiming ahead).
    fn fast(&self) -> bool {
        self.ahead(usize::MAX) >= self.run_slots_total
    }

    /// How many jobs to claim now: free slots not yet promised to buffered jobs, plus the jobs
    /// worth claiming ahead (see [`QueueState::ahead`]) while there is a backlog.
    fn demand(&self, prefetch: usize, backlog: bool) -> usize {
        let extra = if backlog { self.ahead(prefetch) } else { 0 };
        (self.run_slots.available_permits() + extra)
            .saturating_sub(self.buffered.load(Ordering::Relaxed))
    }

    fn record_run(&self, elapsed: Duration) {
        let sample = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX - 1);
        let mean = self.mean_run_us.load(Ordering::Relaxed);
        // Weighted 1/8 to the newest attempt; the first one sets it.
        let next = if mean == u64::MAX {
            sample
        } else {
            mean - mean / 8 + sample / 8
        };
        self.mean_run_us.store(next, Ordering::Relaxed);
    }
}

/// Claims jobs for one queue and starts them, until `shutdown`. Claiming runs apart from
/// starting, so the next claim is in flight while the last batch runs: claimed jobs wait in a
/// buffer for an execution slot — at most `concurrency`, plus under a backlog what the slots
/// would run in [`PREFETCH_HORIZON`] (at most `prefetch`). Returns the ids of jobs claimed but
/// never started (to be released).
async fn fetch_loop(
    shared: Arc<Shared>,
    queue: QueueConfig,
    mut consumer: Box<dyn JobConsumer>,
    mut paused: watch::Receiver<BTreeSet<String>>,
    shutdown: CancellationToken,
) -> Vec<Uuid> {
    let state = Arc::new(QueueState {
        run_slots: Arc::new(Semaphore::new(queue.concurrency)),
        buffered: AtomicUsize::new(0),
        mean_run_us: AtomicU64::new(u64::MAX),
        ended: Notify::new(),
        run_slots_total: queue.concurrency,
    });
    let (tx, rx) = mpsc::channel::<Delivery>(queue.concurrency + queue.prefetch);
    let starter = tokio::spawn(start_loop(
        shared.clone(),
        state.clone(),
        rx,
        (queue.name.clone(), paused.clone()),
        shutdown.clone(),
    ));
    let mut backoff = pysaas_jobs::Backoff::new(Duration::from_millis(50), MAX_FETCH_BACKOFF);
    let mut backlog = false;
    loop {
        let batch_target = ((queue.concurrency + state.ahead(queue.prefetch)) / 2).max(1);
        // Wait for demand; under a backlog of fast jobs, wait (briefly) for half the capacity
        // so that claims come in batches.
        let deadline = tokio::time::Instant::now() + FETCH_COALESCE;
        let mut asked = state.demand(queue.prefetch, backlog);
        while asked == 0 || (backlog && state.fast() && asked < batch_target) {
            let ended = state.ended.notified();
            tokio::pin!(ended);
            ended.as_mut().enable();
            asked = state.demand(queue.prefetch, backlog);
            if asked > 0 && !(backlog && state.fast() && asked < batch_target) {
                break;
            }
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => {
                    drop(tx);
                    return starter.await.unwrap_or_default();
                }
                () = &mut ended => {}
                () = tokio::time::sleep_until(deadline), if asked > 0 => break,
            }
            asked = state.demand(queue.prefetch, backlog);
        }
        if shutdown.is_cancelled()
            || !wait_while_paused(&queue.name, consumer.as_mut(), &mut paused, &shutdown).await
        {
            break;
        }
        match consumer.poll(asked).await {
            Ok(deliveries) if deliveries.is_empty() => {
                backoff.reset();
                backlog = false;
                tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => break,
                    () = consumer.wait() => {}
                }
            }
            Ok(deliveries) => {
                backoff.reset();
                backlog = deliveries.len() >= asked;
                let admitted =
                    admission::admit(&shared.store, &shared.limits, &shared.worker_id, deliveries)
                        .await;
                for (delivery, wait) in admitted.held {
                    hold(
                        &shared,
                        &state,
                        delivery,
                        wait,
                        tx.clone(),
                        shutdown.clone(),
                    );
                }
                let mut now = admitted.now.into_iter();
                for delivery in now.by_ref() {
                    // In flight from the claim on: the heartbeat keeps buffered jobs' leases.
                    if let Ok(mut map) = shared.in_flight.lock() {
                        map.insert(delivery.job.id, CancellationToken::new());
                    }
                    state.buffered.fetch_add(1, Ordering::Relaxed);
                    if let Err(mpsc::error::SendError(back)) = tx.send(delivery).await {
                        // The starter stopped (shutdown) while this batch was being admitted:
                        // the rest of it was claimed but will never start, so it is released
                        // with what the starter left.
                        state.buffered.fetch_sub(1, Ordering::Relaxed);
                        let orphans: Vec<Uuid> = std::iter::once(back.job.id)
                            .chain(now.by_ref().map(|d| d.job.id))
                            .collect();
                        if let Ok(mut map) = shared.in_flight.lock() {
                            orphans.iter().for_each(|id| {
                                map.remove(id);
                            });
                        }
                        let mut unstarted = starter.await.unwrap_or_default();
                        unstarted.extend(orphans);
                        return unstarted;
                    }
                }
            }
            Err(err) => {
                let wait = backoff.next_wait();
                tracing::warn!(error = %err, queue = %queue.name, retry_in = ?wait, "claiming jobs failed");
                tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => break,
                    () = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
    drop(tx);
    starter.await.unwrap_or_default()
}

/// Buffers a rate-limited job once its reserved start comes (`wait`); at shutdown first, or if
/// the buffer is gone, releases it instead (no attempt counted).
fn hold(
    shared: &Arc<Shared>,
    state: &Arc<QueueState>,
    delivery: Delivery,
    wait: Duration,
    tx: mpsc::Sender<Delivery>,
    shutdown: CancellationToken,
) {
    let id = delivery.job.id;
    if let Ok(mut map) = shared.in_flight.lock() {
        map.insert(id, CancellationToken::new());
    }
    state.buffered.fetch_add(1, Ordering::Relaxed);
    let (shared, state) = (shared.clone(), state.clone());
    tokio::spawn(async move {
        let unsent = tokio::select! {
            biased;
            _ = shutdown.cancelled() => true,
            () = tokio::time::sleep(wait) => tx.send(delivery).await.is_err(),
        };
        if unsent {
            state.buffered.fetch_sub(1, Ordering::Relaxed);
            if let Ok(mut map) = shared.in_flight.lock() {
                map.remove(&id);
            }
            if let Err(err) = shared.store.release(&shared.worker_id, &[id]).await {
                tracing::warn!(error = %err, job_id = %id, "release failed; the rescuer will re-queue it when its lease expires");
            }
        }
    });
}

/// Starts buffered jobs as execution slots free up; at shutdown, stops starting them and
/// returns the ids of those left in the buffer (removed from the in-flight set).
async fn start_loop(
    shared: Arc<Shared>,
    state: Arc<QueueState>,
    mut rx: mpsc::Receiver<Delivery>,
    (queue, paused): (String, watch::Receiver<BTreeSet<String>>),
    shutdown: CancellationToken,
) -> Vec<Uuid> {
    loop {
        let next = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            next = rx.recv() => next,
        };
        let Some(delivery) = next else { break };
        let run = tokio::select! {
            biased;
            _ = shutdown.cancelled() => {
                rx.close();
                return unstarted(&shared, &state, Some(delivery), rx).await;
            }
            run = state.run_slots.clone().acquire_owned() => run,
        };
        let Ok(run) = run else { break };
        if paused.borrow().contains(&queue) {
            // Paused while these waited: they go back to the queue rather than start.
            drop(run);
            release_buffered(&shared, &state, delivery, &mut rx).await;
            continue;
        }
        state.buffered.fetch_sub(1, Ordering::Relaxed);
        shared
            .tracker
            .spawn(run_job(shared.clone(), state.clone(), delivery, run));
    }
    rx.close();
    unstarted(&shared, &state, None, rx).await
}

/// Releases `first` and every job buffered behind it back to `queued` (their queue was paused);
/// their deliveries are dropped unacknowledged, as at shutdown.
async fn release_buffered(
    shared: &Shared,
    state: &QueueState,
    first: Delivery,
    rx: &mut mpsc::Receiver<Delivery>,
) {
    let mut ids = vec![first.job.id];
    while let Ok(delivery) = rx.try_recv() {
        ids.push(delivery.job.id);
    }
    state.buffered.fetch_sub(ids.len(), Ordering::Relaxed);
    if let Ok(mut map) = shared.in_flight.lock() {
        for id in &ids {
            map.remove(id);
        }
    }
    match shared.store.release(&shared.worker_id, &ids).await {
        Ok(n) => tracing::info!(released = n, "queue paused: released jobs claimed ahead"),
        Err(err) => {
            tracing::warn!(error = %err, jobs = ids.len(), "release failed; the rescuer will re-queue them when their leases expire")
        }
    }
}

/// Empties the buffer of jobs that will not start; their deliveries are dropped unacknowledged
/// (the broker delivers them again) and their rows are released by the caller.
async fn unstarted(
    shared: &Shared,
    state: &QueueState,
    first: Option<Delivery>,
    mut rx: mpsc::Receiver<Delivery>,
) -> Vec<Uuid> {
    let mut ids: Vec<Uuid> = first.map(|d| d.job.id).into_iter().collect();
    while let Some(delivery) = rx.recv().await {
        ids.push(delivery.job.id);
    }
    state.buffered.fetch_sub(ids.len(), Ordering::Relaxed);
    if let Ok(mut map) = shared.in_flight.lock() {
        for id in &ids {
            map.remove(id);
        }
    }
    ids
}

async fn run_job(
    shared: Arc<Shared>,
    state: Arc<QueueState>,
    delivery: Delivery,
    permit: OwnedSemaphorePermit,
) {
    let _slot = SlotGuard {
        state: state.clone(),
        permit: Some(permit),
    };
    let Delivery { job, ack } = delivery;
    let stop = match shared.in_flight.lock() {
        Ok(mut map) => map.entry(job.id).or_default().clone(),
        Err(_) => CancellationToken::new(),
    };
    let _guard = InFlightGuard {
        in_flight: &shared.in_flight,
        id: job.id,
    };
    let metrics = shared.metrics.get(&job.queue, &job.kind);
    metrics.started.increment(1);
    if let Some(started) = job.started_at {
        let wait = (started - job.run_at).to_std().unwrap_or_default();
        metrics.queue_wait.record(wait.as_secs_f64());
    }
    let mut ctx = JobContext::of(&job, &shared.store, &shared.profiles);
    // This attempt's span: a child of the submitting request's (or a new trace, for a job that
    // came without one); the handler's outgoing calls carry it on (`ctx.trace_context`).
    let parent = job.trace_context.as_deref().and_then(TraceParent::parse);
    let trace = parent
        .as_ref()
        .map_or_else(TraceParent::new_root, TraceParent::child);
    let span = tracing::info_span!(
        "job",
        job_id = %job.id,
        kind = %job.kind,
        queue = %job.queue,
        attempt = job.attempts,
        request_id = job.request_id.as_deref().unwrap_or(""),
        trace_id = trace.trace_id(),
        span_id = trace.span_id(),
    );
    ctx.trace_context = Some(trace.to_string());
    let clock = Instant::now();
    let (result, policy) = match shared.handlers.get(&job.kind) {
        Some(registered) => {
            let timeout = Duration::from_millis(u64::try_from(job.timeout_ms).unwrap_or(1).max(1));
            let call = AssertUnwindSafe(registered.call(&ctx, job.payload.clone()))
                .catch_unwind()
                .instrument(span.clone());
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
    let elapsed = clock.elapsed();
    metrics.run_duration.record(elapsed.as_secs_f64());
    state.record_run(elapsed);
    let detail = result
        .as_ref()
        .err()
        .and_then(HandlerError::detail)
        .cloned();
    let outcome = Outcome::decide(result, job.attempts, job.max_attempts, &policy, Utc::now());
    if pysaas_jobs::trace::exporting() {
        let started_at = std::time::SystemTime::now() - clock.elapsed();
        pysaas_jobs::trace::export(job_span(
            &job,
            &trace,
            parent.as_ref(),
            started_at,
            &outcome,
        ));
    }
    span.in_scope(|| match &outcome {
        // One line per job, as Celery and Sidekiq log one (filter with PYSAAS_LOG).
        Outcome::Succeeded { .. } => tracing::info!(
            elapsed_ms = clock.elapsed().as_millis() as u64,
            "job succeeded"
        ),
        Outcome::Retrying { error, run_at } => {
            tracing::info!(%error, %run_at, "job attempt failed; will retry")
        }
        Outcome::Dead { error } => tracing::warn!(%error, "job failed for good"),
        Outcome::Cancelled { error } => tracing::info!(%error, "job cancelled by its handler"),
    });
    let waited = job
        .started_at
        .and_then(|started| (started - job.run_at).to_std().ok())
        .unwrap_or_default();
    let queue = job.queue;
    let finished = Finished {
        completion: Completion {
            id: job.id,
            tenant_id: job.tenant_id,
            attempt: job.attempts,
            outcome,
            detail,
        },
        ack,
        metrics,
        queue,
        waited,
    };
    if shared.completions.send(finished).await.is_err() {
        tracing::error!(job_id = %ctx.id, "completer is gone; outcome not recorded (the job will be rescued)");
    }
}

/// The attempt as an exported span (OTLP, when configured).
fn job_span(
    job: &pysaas_jobs::Job,
    trace: &TraceParent,
    parent: Option<&TraceParent>,
    start: std::time::SystemTime,
    outcome: &Outcome,
) -> pysaas_jobs::trace::FinishedSpan {
    let (result, error) = match outcome {
        Outcome::Succeeded { .. } => ("succeeded", None),
        Outcome::Retrying { error, .. } => ("retrying", Some(error.clone())),
        Outcome::Dead { error } => ("dead", Some(error.clone())),
        Outcome::Cancelled { error } => ("cancelled", Some(error.clone())),
    };
    pysaas_jobs::trace::FinishedSpan {
        context: trace.clone(),
        parent_span_id: parent.map(|p| p.span_id().to_owned()),
        name: format!("job {}", job.kind),
        kind: pysaas_jobs::trace::SpanKind::Consumer,
        start,
        end: std::time::SystemTime::now(),
        attributes: vec![
            ("messaging.system", "pysaas".to_owned()),
            ("messaging.destination.name", job.queue.clone()),
            ("messaging.message.id", job.id.to_string()),
            ("pysaas.job.kind", job.kind.clone()),
            ("pysaas.job.attempt", job.attempts.to_string()),
            ("pysaas.job.outcome", result.to_owned()),
        ],
        error,
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned())
}
