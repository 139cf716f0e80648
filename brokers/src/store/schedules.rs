//! What the scheduler needs from the store: schedules, leader leases with fencing tokens, and
//! retention pruning. Both backends pass `brokers/tests/store_conformance.rs`.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use pysaas_jobs::{JobState, NewJob, Schedule};
use uuid::Uuid;

use super::Inserted;
use crate::Result;

/// A leader lease. `token` grows by one whenever the lease changes hands: it fences writes, so a
/// holder that lost the lease (paused, partitioned) cannot write as leader any more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The elected role (`scheduler`).
    pub name: String,
    /// The holder's id (host, pid and a random suffix).
    pub holder: String,
    /// Fencing token.
    pub token: i64,
    /// When this holder took the lease.
    pub acquired_at: DateTime<Utc>,
    /// When it lapses unless renewed.
    pub expires_at: DateTime<Utc>,
}

/// Ticks of one schedule to record, evaluated against `version` and `previous_fired_through`.
#[derive(Debug, Clone)]
pub struct ScheduleFire {
    /// Tenant.
    pub tenant_id: String,
    /// Schedule name.
    pub name: String,
    /// The version the ticks were computed from.
    pub version: i64,
    /// `fired_through` as read; another writer having moved it makes this fire stale.
    pub previous_fired_through: DateTime<Utc>,
    /// Every tick up to here is now handled.
    pub fired_through: DateTime<Utc>,
    /// The next tick.
    pub next_fire_at: Option<DateTime<Utc>>,
    /// One job per fired tick, each keyed by `schedule::tick_key`.
    pub jobs: Vec<NewJob>,
}

/// What became of a [`ScheduleFire`].
#[derive(Debug, Clone, PartialEq)]
pub enum FireResult {
    /// Recorded; the jobs (`created: false` for a tick some other writer already enqueued).
    Fired(Vec<Inserted>),
    /// The schedule changed, moved on or is gone: nothing written.
    Stale,
    /// The lease is not held with this token any more: nothing written.
    NotLeader,
}

/// Schedules, leader leases and pruning.
#[async_trait]
pub trait SchedulerStore: Send + Sync {
    /// Creates a schedule; `false` when the tenant already has one of that name.
    async fn create_schedule(&self, schedule: &Schedule) -> Result<bool>;

    /// One schedule.
    async fn get_schedule(&self, tenant_id: &str, name: &str) -> Result<Option<Schedule>>;

    /// A tenant's schedules by name.
    async fn list_schedules(&self, tenant_id: &str) -> Result<Vec<Schedule>>;

    /// Replaces definition, `paused`, `fired_through` and `next_fire_at` if the stored version is
    /// still `schedule.version`; bumps the version. `None`: changed meanwhile or gone.
    async fn update_schedule(&self, schedule: &Schedule) -> Result<Option<Schedule>>;

    /// Deletes a schedule; `false` when there was none.
    async fn delete_schedule(&self, tenant_id: &str, name: &str) -> Result<bool>;

    /// Unpaused schedules (all tenants) whose next tick is at or before `now`, soonest first.
    async fn due_schedules(&self, now: DateTime<Utc>, limit: i64) -> Result<Vec<Schedule>>;

    /// The soonest next tick of any unpaused schedule.
    async fn next_schedule_fire(&self) -> Result<Option<DateTime<Utc>>>;

    /// In one transaction: checks `lease` is still held with its token, checks the schedule is
    /// unchanged, inserts the jobs (idempotently) and moves `fired_through` on.
    async fn fire_schedule(&self, lease: &Lease, fire: ScheduleFire) -> Result<FireResult>;

    /// Records a manual trigger's job as the schedule's last fire.
    async fn record_trigger(
        &self,
        tenant_id: &str,
        name: &str,
        job_id: Uuid,
        at: DateTime<Utc>,
    ) -> Result<()>;

    /// Takes the lease `name` for `ttl` if it is free or lapsed, or renews it if `holder` has it.
    /// `None`: someone else holds it.
    async fn acquire_lease(&self, name: &str, holder: &str, ttl: Duration)
        -> Result<Option<Lease>>;

    /// Gives the lease up at once (a clean shutdown), if still held with this token.
    async fn release_lease(&self, lease: &Lease) -> Result<()>;

    /// The lease as stored (possibly lapsed).
    async fn current_lease(&self, name: &str) -> Result<Option<Lease>>;

    /// Deletes up to `limit` jobs in `state` that finished before `finished_before`; returns how
    /// many.
    async fn prune_finished(
        &self,
        state: JobState,
        finished_before: DateTime<Utc>,
        limit: i64,
    ) -> Result<u64>;
}
