//! PySaaS scheduler: the maintenance services that keep the job table moving.
//!
//! - [`promoter`]: moves due `scheduled` and `retrying` jobs to `queued`.
//! - [`relay`]: announces to a message broker the queued jobs it has not been told about.
//! - [`rescuer`]: re-queues `running` jobs whose worker stopped heartbeating (a `kill -9`, a lost
//!   node), or marks them `dead` when their attempts are used up.
//!
//! - [`schedule`]: cron expressions in IANA time zones (DST-safe) and misfire policies.
//!
//! The maintenance services are idempotent conditional updates, so running them in several processes at once is
//! safe (only wasteful); cron and leader election build on this crate.

pub mod promoter;
pub mod relay;
pub mod rescuer;
pub mod schedule;
mod service;

use std::sync::Arc;
use std::time::Duration;

use pysaas_brokers::{Dispatcher, JobStore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use promoter::DEFAULT_PROMOTE_INTERVAL;
pub use rescuer::DEFAULT_RESCUE_INTERVAL;
pub use schedule::{CronSchedule, MisfirePolicy, ScheduleError, DEFAULT_MISFIRE_THRESHOLD};

/// Settings of the maintenance services.
#[derive(Debug, Clone)]
pub struct MaintenanceConfig {
    /// How often due jobs are promoted.
    pub promote_interval: Duration,
    /// How often expired leases are rescued.
    pub rescue_interval: Duration,
    /// How often the relay runs (broker dispatchers only).
    pub relay_interval: Duration,
}

impl Default for MaintenanceConfig {
    fn default() -> Self {
        MaintenanceConfig {
            promote_interval: DEFAULT_PROMOTE_INTERVAL,
            rescue_interval: DEFAULT_RESCUE_INTERVAL,
            relay_interval: relay::DEFAULT_RELAY_INTERVAL,
        }
    }
}

/// Starts every maintenance service (the relay only for a broker dispatcher); they stop when
/// `shutdown` is cancelled.
pub fn spawn(
    store: Arc<dyn JobStore>,
    dispatcher: Arc<dyn Dispatcher>,
    config: &MaintenanceConfig,
    shutdown: CancellationToken,
) -> TaskTracker {
    let tracker = TaskTracker::new();
    tracker.spawn(promoter::run(
        store.clone(),
        config.promote_interval,
        shutdown.clone(),
    ));
    if dispatcher.name() != "store" {
        tracker.spawn(relay::run(
            store.clone(),
            dispatcher,
            config.relay_interval,
            shutdown.clone(),
        ));
    }
    tracker.spawn(rescuer::run(store, config.rescue_interval, shutdown));
    tracker.close();
    tracker
}
