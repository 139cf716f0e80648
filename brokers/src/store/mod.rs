//! The job store: every job row and its state. See `docs/job-lifecycle.md`.

/// The columns every job query selects, in the order the row codecs read them (`j.`-qualified
/// with `j`, for statements that join).
macro_rules! job_columns {
    () => {
        "id, tenant_id, kind, queue, state, priority, attempts, max_attempts, payload, result, \
         last_error, timeout_ms, idempotency_key, trace_context, request_id, worker_id, created_at, \
         run_at, started_at, finished_at, lease_expires_at, errors"
    };
    (j) => {
        "j.id, j.tenant_id, j.kind, j.queue, j.state, j.priority, j.attempts, j.max_attempts, \
         j.payload, j.result, j.last_error, j.timeout_ms, j.idempotency_key, j.trace_context, \
         j.request_id, j.worker_id, j.created_at, j.run_at, j.started_at, j.finished_at, \
         j.lease_expires_at, j.errors"
    };
}

mod auth;
pub mod billing;
pub mod consumers;
#[cfg(feature = "dynamodb")]
mod dynamodb;
pub mod events;
mod group_commit;
pub mod notifications;
#[cfg(feature = "postgres")]
mod postgres;
pub mod profiles;
mod queues;
pub(crate) mod rates;
mod schedules;
#[cfg(any(feature = "postgres", feature = "sqlite"))]
mod sql;
#[cfg(feature = "sqlite")]
mod sqlite;
pub mod stats;
pub mod webhooks;
mod workers;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use pysaas_jobs::{AttemptError, Job, JobState, NewJob, Outcome};
use tokio::sync::watch;
use uuid::Uuid;

pub use auth::{
    ApiKeyRow, AuthChange, AuthStore, MembershipRow, RefreshRow, RefreshUse, TenantRow, UserRow,
};
pub use billing::BillingStore;
pub use consumers::{
    AuditEntry, AuditFilter, EventRecords, JobRollup, RevenueRollup, SubmissionRollup,
};
#[cfg(feature = "dynamodb")]
pub use dynamodb::{DynamoConfig, DynamoProfileStore};
pub use events::{EventOutbox, OutboxBacklog, OutboxEntry, OutboxPosition};
pub use group_commit::{GroupCommit, GROUP_COMMIT_CONCURRENCY, GROUP_COMMIT_MAX_BATCH};
pub use notifications::{
    EmailSender, InAppNotification, InboxFilter, InboxStore, NotificationStore,
};
#[cfg(feature = "postgres")]
pub use postgres::{PgStore, PgTransaction};
pub use profiles::{Erasure, PrivacyStore, ProfileExport, ProfileItem, ProfileStore, Versioned};
pub use queues::{PausedQueue, QueuePauses};
pub use rates::{Deferral, RateLimits, Starts};
pub use schedules::{FireResult, Lease, ScheduleFire, SchedulerStore};
#[cfg(feature = "sqlite")]
pub use sqlite::{SqliteStore, SqliteTransaction};
pub use stats::{JobStats, MinuteStats};
pub use webhooks::WebhookStore;
pub use workers::{WorkerInfo, WorkerRegistry};

use crate::{Result, StoreError};

/// Announced by [`JobStore::changes`] when changes may have been missed (a reconnect): any
/// tenant's jobs may have changed.
pub const ANY_TENANT: &str = "*";

/// Largest page `list` returns.
pub const LIST_LIMIT_MAX: i64 = 1000;

/// Default PostgreSQL schema for PySaaS tables, so they never mix with an application's own.
pub const DEFAULT_PG_SCHEMA: &str = "pysaas";
/// Default pool size: enough for the API, a worker's claim loop, completer and heartbeat.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 16;
/// How long a request waits for a pooled connection before the store reports itself unavailable.
pub const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

/// How to open a store.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// `postgres://…` or `sqlite://path` (`sqlite::memory:` for a throw-away store).
    pub url: String,
    /// PostgreSQL schema holding the tables (ignored for SQLite).
    pub schema: String,
    /// Pool size.
    pub max_connections: u32,
    /// Pool acquire timeout.
    pub acquire_timeout: Duration,
}

impl StoreConfig {
    /// Defaults for `url`.
    pub fn new(url: impl Into<String>) -> Self {
        StoreConfig {
            url: url.into(),
            schema: DEFAULT_PG_SCHEMA.to_owned(),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            acquire_timeout: DEFAULT_ACQUIRE_TIMEOUT,
        }
    }
}

/// Opens the store the URL names.
pub async fn connect(config: &StoreConfig) -> Result<Arc<dyn JobStore>> {
    let scheme = config.url.split(':').next().unwrap_or_default();
    match scheme {
        #[cfg(feature = "postgres")]
        "postgres" | "postgresql" => Ok(Arc::new(PgStore::connect(config).await?)),
        #[cfg(feature = "sqlite")]
        "sqlite" => Ok(Arc::new(SqliteStore::connect(config).await?)),
        #[cfg(not(feature = "postgres"))]
        "postgres" | "postgresql" => Err(StoreError::Config(
            "this build has no PostgreSQL store (cargo feature `postgres`)".into(),
        )),
        #[cfg(not(feature = "sqlite"))]
        "sqlite" => Err(StoreError::Config(
            "this build has no SQLite store (cargo feature `sqlite`)".into(),
        )),
        _ => Err(StoreError::Config(format!(
            "database URL must start with postgres:// or sqlite:// (got scheme `{scheme}`)"
        ))),
    }
}

/// The result of an insert.
#[derive(Debug, Clone, PartialEq)]
pub struct Inserted {
    /// The stored job.
    pub job: Job,
    /// `false` when the idempotency key matched an existing job, which is returned instead.
    pub created: bool,
}

impl Inserted {
    /// The jobs of `inserted` that were created (not found by their idempotency key).
    pub fn created_jobs(inserted: &[Inserted]) -> impl Iterator<Item = Job> + '_ {
        inserted.iter().filter(|i| i.created).map(|i| i.job.clone())
    }
}

/// The result of a user-requested state change (cancel, retry).
#[derive(Debug, Clone, PartialEq)]
pub enum Transition {
    /// Done; the job as it is now.
    Done(Box<Job>),
    /// No such job for this tenant.
    NotFound,
    /// The job's state does not allow it.
    Conflict(JobState),
}

/// An attempt's outcome, for the batched completer.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// Job id.
    pub id: Uuid,
    /// Its tenant (announced as changed once the outcome is written).
    pub tenant_id: String,
    /// The attempt this outcome belongs to: a fencing token, so a stale worker cannot overwrite
    /// a newer attempt.
    pub attempt: i32,
    /// What happened.
    pub outcome: Outcome,
    /// The handler's detail of a failed attempt (kept in the job's `errors`).
    pub detail: Option<serde_json::Value>,
}

/// Filters and keyset pagination for `list`.
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    /// Tenant (always applied).
    pub tenant_id: String,
    /// Only this state.
    pub state: Option<JobState>,
    /// Only this kind.
    pub kind: Option<String>,
    /// Only this queue.
    pub queue: Option<String>,
    /// Page size (1 ..= [`LIST_LIMIT_MAX`]).
    pub limit: i64,
    /// Only ids older than this one (the previous page's last id).
    pub before: Option<Uuid>,
    /// Only jobs whose payload holds these top-level members (JSON containment: each key with
    /// this scalar value). Not index-backed: pages are found by scanning newest first.
    pub payload: Option<serde_json::Map<String, serde_json::Value>>,
}

/// Counts per queue.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct QueueStats {
    /// Queue name.
    pub queue: String,
    /// Jobs per state (states with no jobs are absent).
    pub counts: BTreeMap<JobState, i64>,
    /// `run_at` of the oldest queued job.
    pub oldest_queued_at: Option<DateTime<Utc>>,
}

/// What the API, the dispatchers and the gauges read about jobs and queues: the same statements
/// on every SQL backend (`store/sql/jobs.rs`).
#[async_trait]
pub trait JobReads: Send + Sync {
    /// Checks the store answers.
    async fn ping(&self) -> Result<()>;

    /// One job of a tenant.
    async fn get(&self, tenant_id: &str, id: Uuid) -> Result<Option<Job>>;

    /// A page of a tenant's jobs, newest first.
    async fn list(&self, filter: &JobFilter) -> Result<Vec<Job>>;

    /// Per-queue counts (all tenants when `tenant_id` is `None`).
    async fn queue_stats(&self, tenant_id: Option<&str>) -> Result<Vec<QueueStats>>;

    /// Per-queue counts of unfinished jobs only (all tenants), read through the partial indexes
    /// of those states: cheap however many finished rows the table holds (queue-depth gauges).
    async fn live_queue_stats(&self) -> Result<Vec<QueueStats>>;

    /// Queues that hold queued jobs (read through the claim index: one probe per queue).
    async fn queued_queues(&self) -> Result<Vec<String>>;

    /// Every queue a worker has ever consumed, with when one last said so.
    async fn consumed_queues(&self) -> Result<BTreeMap<String, DateTime<Utc>>>;

    /// The first `limit` queued jobs of `queue` in claim order that became claimable more than
    /// `older_than` ago: what the relay announces again when the broker says it holds nothing
    /// for the queue (a publish that failed or never happened, or a message the broker lost).
    async fn stale_queued(
        &self,
        queue: &str,
        older_than: Duration,
        limit: usize,
    ) -> Result<Vec<Job>>;
}

/// Durable job storage. Every backend passes the same conformance suite
/// (`brokers/tests/store_conformance.rs`).
#[async_trait]
pub trait JobStore:
    JobReads
    + WorkerRegistry
    + QueuePauses
    + RateLimits
    + BillingStore
    + NotificationStore
    + InboxStore
    + PrivacyStore
    + EventOutbox
    + EventRecords
    + ProfileStore
    + WebhookStore
    + JobStats
    + SchedulerStore
    + AuthStore
    + Send
    + Sync
    + std::fmt::Debug
    + 'static
{
    /// Backend name (`postgres`, `sqlite`).
    fn backend(&self) -> &'static str;

    /// Creates or upgrades the schema.
    async fn migrate(&self) -> Result<()>;

    /// The store's clock (the database server's, for PostgreSQL).
    async fn now(&self) -> Result<DateTime<Utc>>;

    /// Inserts jobs in one transaction: all or none. A job whose idempotency key already exists
    /// for its tenant is not inserted; the existing one is returned with `created: false`.
    async fn insert(&self, jobs: Vec<NewJob>) -> Result<Vec<Inserted>>;

    /// Cancels an unfinished job.
    async fn cancel(&self, tenant_id: &str, id: Uuid) -> Result<Transition>;

    /// Re-queues a finished job for a new attempt.
    async fn retry(&self, tenant_id: &str, id: Uuid) -> Result<Transition>;

    /// Claims up to `limit` queued jobs of `queue` (highest priority, then oldest first) for
    /// `worker`, holding a lease of `lease`. Each claim starts a new attempt.
    async fn claim(
        &self,
        queue: &str,
        limit: usize,
        worker: &str,
        lease: Duration,
    ) -> Result<Vec<Job>>;

    /// Claims the given ids if they are still queued (used behind a message broker; ids already
    /// claimed or finished are skipped, which makes duplicate deliveries harmless).
    async fn claim_ids(&self, ids: &[Uuid], worker_id: &str, lease: Duration) -> Result<Vec<Job>>;

    /// Records outcomes in one statement. An outcome applies only while the job is still
    /// `running` the same attempt; the count of rows changed is returned.
    async fn complete(&self, completions: &[Completion]) -> Result<u64>;

    /// Extends the lease on `ids` held by `worker_id`; returns the ids it still holds (a job
    /// cancelled or rescued meanwhile is missing, and its worker should stop it).
    async fn heartbeat(&self, worker_id: &str, ids: &[Uuid], lease: Duration) -> Result<Vec<Uuid>>;

    /// Gives running jobs back to the queue (graceful shutdown): the interrupted attempt is not
    /// counted.
    async fn release(&self, worker_id: &str, ids: &[Uuid]) -> Result<u64>;

    /// Moves due `scheduled` and `retrying` jobs to `queued` (at most a batch); returns them, so
    /// that a broker can be told at once.
    async fn promote_due(&self) -> Result<Vec<Job>>;

    /// Re-queues running jobs whose lease expired (their worker died); those out of attempts go
    /// `dead`. Returns how many rows changed.
    async fn rescue_expired(&self) -> Result<u64>;

    /// Records that a worker consumes `queues` now (workers call it every few seconds).
    async fn touch_consumed(&self, queues: &[String]) -> Result<()>;

    /// Deletes a tenant's finished jobs among `ids` (their idempotency keys with them); returns
    /// how many. Unfinished jobs are left alone: cancel them first.
    async fn delete_finished(&self, tenant_id: &str, ids: &[Uuid]) -> Result<u64>;

    /// Cleans the hot table of the row versions its churn leaves behind, when there are enough
    /// to matter (PostgreSQL: `VACUUM`, which autovacuum runs at most once a minute — too rarely
    /// for a table every job passes through, whose claim index scans would otherwise step over
    /// every job claimed since; SQLite has nothing to do). Returns whether it cleaned. On
    /// PostgreSQL it first folds the history counters' delta rows (migration 0013), which the
    /// queue list sums: the scheduler's leader calls this every few seconds.
    async fn vacuum_hot(&self, min_dead: i64) -> Result<bool>;

    /// A counter bumped whenever jobs may have become claimable; consumers wait on it between
    /// empty claims.
    fn wakeups(&self) -> watch::Receiver<u64>;

    /// Tenants whose jobs changed state (inserted, claimed, finished, cancelled, retried,
    /// released, promoted, deleted), as every process sharing the store announces them, within
    /// about a tenth of a second of the commit. Best effort: a lagging receiver skips some
    /// (live pages refresh now and then as well); [`ANY_TENANT`] after a reconnect.
    fn changes(&self) -> tokio::sync::broadcast::Receiver<String>;
}

/// Folds `(queue, state, count, oldest run_at)` rows, sorted by queue, into per-queue stats.
pub(crate) fn fold_queue_stats(
    rows: impl IntoIterator<Item = (String, JobState, i64, Option<DateTime<Utc>>)>,
) -> Vec<QueueStats> {
    let mut stats: Vec<QueueStats> = Vec::new();
    for (queue, state, n, oldest) in rows {
        if stats.last().is_none_or(|s| s.queue != queue) {
            stats.push(QueueStats {
                queue,
                ..QueueStats::default()
            });
        }
        if let Some(entry) = stats.last_mut() {
            entry.counts.insert(state, n);
            if state == JobState::Queued {
                entry.oldest_queued_at = oldest;
            }
        }
    }
    stats
}

/// Claim order: highest priority first, then oldest `run_at`, then id.
pub(crate) fn sort_claimed(jobs: &mut [Job]) {
    jobs.sort_by(|a, b| {
        b.priority
            .cmp(&a.priority)
            .then(a.run_at.cmp(&b.run_at))
            .then(a.id.cmp(&b.id))
    });
}

/// [`sort_claimed`] for deliveries.
pub(crate) fn sort_claimed_deliveries(deliveries: &mut [crate::Delivery]) {
    deliveries.sort_by(|a, b| {
        let (a, b) = (&a.job, &b.job);
        b.priority
            .cmp(&a.priority)
            .then(a.run_at.cmp(&b.run_at))
            .then(a.id.cmp(&b.id))
    });
}

/// Scopes stored space-separated.
pub(crate) fn split_scopes(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_owned).collect()
}

/// The parts of the job tables a listing reads, each with the state predicate that selects its
/// index (written literally, so that a partial index serves generic plans too): waiting hot
/// rows, running hot rows (few, found through the lease index), and the history, whole or only
/// its failures.
pub(crate) fn list_sources(state: Option<JobState>) -> &'static [&'static str] {
    const HOT_WAITING: &str = "jobs WHERE state <> 'running'";
    const HOT_RUNNING: &str = "jobs WHERE lease_expires_at IS NOT NULL AND state = 'running'";
    const HISTORY: &str = "job_history WHERE true";
    const HISTORY_FAILED: &str = "job_history WHERE state <> 'succeeded'";
    match state {
        None => &[HOT_WAITING, HOT_RUNNING, HISTORY],
        Some(JobState::Running) => &[HOT_RUNNING],
        Some(s) if !s.is_finished() => &[HOT_WAITING],
        Some(JobState::Succeeded) => &[HISTORY],
        Some(_) => &[HISTORY_FAILED],
    }
}

/// Decodes the `errors` column (a JSON array of failed attempts).
pub(crate) fn attempt_errors(value: Option<serde_json::Value>) -> Result<Vec<AttemptError>> {
    match value {
        None | Some(serde_json::Value::Null) => Ok(Vec::new()),
        Some(v) => serde_json::from_value(v)
            .map_err(|e| StoreError::Corrupt(format!("invalid `errors` column: {e}"))),
    }
}

/// Parses a stored state name.
pub(crate) fn parse_state(s: &str) -> Result<JobState> {
    s.parse()
        .map_err(|_| StoreError::Corrupt(format!("unknown state `{s}`")))
}

/// Outcome columns shared by both backends: (state, result JSON, error, next run_at).
pub(crate) fn outcome_columns(
    outcome: &Outcome,
) -> (
    &'static str,
    Option<String>,
    Option<String>,
    Option<DateTime<Utc>>,
) {
    let state = outcome.state().as_str();
    let error = outcome.error().map(str::to_owned);
    match outcome {
        Outcome::Succeeded { result } => {
            (state, result.as_ref().map(|r| r.to_string()), None, None)
        }
        Outcome::Retrying { run_at, .. } => (state, None, error, Some(*run_at)),
        Outcome::Dead { .. } | Outcome::Cancelled { .. } => (state, None, error, None),
    }
}

/// Error text recorded on jobs rescued from a dead worker.
pub(crate) const RESCUED_ERROR: &str = "worker lost: lease expired before the attempt finished";
/// Error text recorded on jobs released at a graceful shutdown.
pub(crate) const RELEASED_ERROR: &str = "released at worker shutdown before the attempt finished";
