//! PySaaS scheduler: cron schedules fired exactly once across replicas, delayed-job promotion,
//! and the maintenance services. See `docs/scheduling.md`.
//!
//! Any number of scheduler processes run [`spawn`]; they elect one leader through a lease row with
//! a fencing token ([`leader`]). Only the leader runs the services:
//!
//! - [`cron`]: fires due schedule ticks, each one job with the idempotency key
//!   `schedule:<name>:<tick>`, recorded in the same transaction that checks the fencing token.
//! - [`promoter`]: moves due `scheduled` and `retrying` jobs to `queued` (and tells a broker).
//! - [`rescuer`]: re-queues `running` jobs whose worker stopped heartbeating.
//! - [`relay`]: announces to a message broker the queued jobs it holds no message for.
//! - [`pruner`]: deletes finished jobs past their state's retention.
//! - [`publisher`]: publishes the event outbox to the event stream (Kafka), when one is set.
//! - [`gauges`]: publishes queue depth per queue and state as Prometheus gauges.
//! - [`vacuumer`]: vacuums the hot job table when its churn has left enough dead rows.

pub mod cron;
pub mod gauges;
pub mod leader;
pub mod promoter;
pub mod pruner;
pub mod publisher;
pub mod relay;
pub mod rescuer;
mod service;
mod sync;
pub mod vacuumer;

use std::sync::Arc;
use std::time::Duration;

use pysaas_brokers::stream::EventSink;
use pysaas_brokers::{Dispatcher, JobStore};
use pysaas_jobs::KindRegistry;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use leader::{DEFAULT_LEADER_TTL, LEADER_LEASE};
pub use promoter::DEFAULT_PROMOTE_INTERVAL;
pub use pruner::Retention;
pub use rescuer::DEFAULT_RESCUE_INTERVAL;
pub use sync::{sync_schedules, SyncError, SyncReport};

/// Registers the scheduler metrics' help texts with the installed recorder.
pub fn describe_metrics() {
    use metrics::{describe_counter, describe_gauge};
    describe_gauge!(
        "pysaas_scheduler_leader",
        "1 while this process is the scheduler leader"
    );
    describe_counter!(
        "pysaas_schedule_ticks_total",
        "Jobs enqueued by schedule ticks"
    );
    describe_counter!(
        "pysaas_schedule_errors_total",
        "Schedule ticks skipped because the schedule's job is invalid"
    );
    describe_counter!(
        "pysaas_jobs_pruned_total",
        "Finished jobs deleted by retention"
    );
    pysaas_brokers::gauges::QueueGauges::describe();
    publisher::describe_metrics();
}

/// Settings of the scheduler and its services.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// This process's id in the leader election (host, pid, random suffix).
    pub holder: String,
    /// Lease length: a leader that stops renewing is replaced after at most this long.
    pub leader_ttl: Duration,
    /// How often a follower tries to take the lease.
    pub follower_poll: Duration,
    /// How often due jobs are promoted.
    pub promote_interval: Duration,
    /// How often expired leases are rescued.
    pub rescue_interval: Duration,
    /// How often the relay runs (broker dispatchers only).
    pub relay_interval: Duration,
    /// How often finished jobs are pruned.
    pub prune_interval: Duration,
    /// How long finished jobs are kept, per state.
    pub retention: Retention,
    /// How often queue-depth gauges are refreshed.
    pub gauge_interval: Duration,
    /// How often the hot job table is checked for a vacuum.
    pub vacuum_interval: Duration,
    /// A tick evaluated later than this is a misfire, handled by the schedule's policy.
    pub misfire_threshold: Duration,
    /// How long an idle event publisher waits before looking at the outbox again.
    pub publish_interval: Duration,
}

impl SchedulerConfig {
    /// Defaults for the holder id `holder`.
    pub fn new(holder: impl Into<String>) -> Self {
        SchedulerConfig {
            holder: holder.into(),
            leader_ttl: DEFAULT_LEADER_TTL,
            follower_poll: leader::DEFAULT_FOLLOWER_POLL,
            promote_interval: DEFAULT_PROMOTE_INTERVAL,
            rescue_interval: DEFAULT_RESCUE_INTERVAL,
            relay_interval: relay::DEFAULT_RELAY_INTERVAL,
            prune_interval: pruner::DEFAULT_PRUNE_INTERVAL,
            retention: Retention::default(),
            gauge_interval: gauges::DEFAULT_GAUGE_INTERVAL,
            vacuum_interval: vacuumer::DEFAULT_VACUUM_INTERVAL,
            misfire_threshold: pysaas_jobs::schedule::DEFAULT_MISFIRE_THRESHOLD,
            publish_interval: publisher::DEFAULT_PUBLISH_INTERVAL,
        }
    }
}

/// What the leader's services work on.
#[derive(Debug, Clone)]
pub struct Context {
    /// The store.
    pub store: Arc<dyn JobStore>,
    /// Where queued jobs are announced.
    pub dispatcher: Arc<dyn Dispatcher>,
    /// Kinds, to build each tick's job.
    pub registry: KindRegistry,
    /// Settings.
    pub config: SchedulerConfig,
    /// Where the event outbox is published, when events go to a stream.
    pub events: Option<Arc<dyn EventSink>>,
}

/// Runs leader election until `shutdown`; while this process leads, it runs every service. On
/// shutdown the lease is released so that another replica takes over at once.
pub fn spawn(context: Context, shutdown: CancellationToken) -> TaskTracker {
    let tracker = TaskTracker::new();
    tracker.spawn(leader::run(context, shutdown));
    tracker.close();
    tracker
}

/// Starts the leader's services under `lease`; they stop when `stop` is cancelled or the lease
/// is lost.
pub(crate) fn spawn_services(
    context: &Context,
    lease: tokio::sync::watch::Receiver<Option<pysaas_brokers::Lease>>,
    stop: CancellationToken,
) -> TaskTracker {
    let tracker = TaskTracker::new();
    let Context {
        store,
        dispatcher,
        registry,
        config,
        events,
    } = context.clone();
    tracker.spawn(cron::run(
        store.clone(),
        dispatcher.clone(),
        registry,
        config.misfire_threshold,
        lease,
        stop.clone(),
    ));
    tracker.spawn(promoter::run(
        store.clone(),
        dispatcher.clone(),
        config.promote_interval,
        stop.clone(),
    ));
    if dispatcher.name() != "store" {
        tracker.spawn(relay::run(
            store.clone(),
            dispatcher,
            config.relay_interval,
            stop.clone(),
        ));
    }
    tracker.spawn(rescuer::run(
        store.clone(),
        config.rescue_interval,
        stop.clone(),
    ));
    tracker.spawn(pruner::run(
        store.clone(),
        config.retention,
        config.prune_interval,
        stop.clone(),
    ));
    tracker.spawn(vacuumer::run(
        store.clone(),
        config.vacuum_interval,
        stop.clone(),
    ));
    if let Some(sink) = events {
        tracker.spawn(publisher::run(
            store.clone(),
            sink,
            config.publish_interval,
            stop.clone(),
        ));
    }
    tracker.spawn(gauges::run(store, config.gauge_interval, stop));
    tracker.close();
    tracker
}
