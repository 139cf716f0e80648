//! What the event consumers keep (`docs/events.md`): the audit log and the analytics rollups,
//! each write idempotent by event id, so a consumer that sees an event again (a republished
//! batch, a restart before its commit) changes nothing.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use pysaas_jobs::events::{CloudEvent, Fact};
use pysaas_jobs::JobState;

use super::stats::WAIT_BUCKETS;
use crate::Result;

/// One entry of the audit log: an audit event as it was published, in the form of the fact it
/// was made from (id, tenant, type, subject, time, data, trace context).
pub type AuditEntry = Fact;

/// Which audit entries to read: a tenant's, newest first.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// The tenant (always applied).
    pub tenant_id: String,
    /// Only this subject (`jobs/<id>`).
    pub subject: Option<String>,
    /// Only this type.
    pub event_type: Option<String>,
    /// At or after.
    pub from: Option<DateTime<Utc>>,
    /// Before this time — or, with [`AuditFilter::before`], at it too for the entries whose id
    /// sorts before that one (the next page after an entry: its time and id).
    pub to: Option<DateTime<Utc>>,
    /// With `to`: the last entry of the previous page.
    pub before: Option<uuid::Uuid>,
    /// At most this many.
    pub limit: usize,
}

/// Finished jobs of one minute, kind, queue and outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRollup {
    /// Start of the minute.
    pub minute: DateTime<Utc>,
    /// Kind.
    pub kind: String,
    /// Queue.
    pub queue: String,
    /// `succeeded`, `dead` or `cancelled`.
    pub outcome: JobState,
    /// How many.
    pub jobs: i64,
    /// Their attempts, summed.
    pub attempts: i64,
    /// Their run durations (ms), summed.
    pub duration_ms: i64,
    /// Their run durations as a histogram (`store::stats::WAIT_BOUNDS_MS` buckets; cancels,
    /// which have none, are not in it).
    pub durations: [i64; WAIT_BUCKETS],
}

/// Submissions of one minute, kind and queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubmissionRollup {
    /// Start of the minute.
    pub minute: DateTime<Utc>,
    /// Kind.
    pub kind: String,
    /// Queue.
    pub queue: String,
    /// How many.
    pub jobs: i64,
}

/// Revenue recognised on one UTC day in one currency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevenueRollup {
    /// Start of the day.
    pub day: DateTime<Utc>,
    /// ISO 4217 code.
    pub currency: String,
    /// Invoices paid.
    pub invoices: i64,
    /// Their totals, in minor units.
    pub amount_minor: i64,
}

/// Storage of the consumers' results.
#[async_trait]
pub trait EventRecords: Send + Sync {
    /// Adds audit events to the log (one already there is left as it is); how many were new.
    async fn record_audit(&self, events: &[CloudEvent]) -> Result<u64>;

    /// A page of the audit log.
    async fn audit_log(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>>;

    /// Counts analytics events into the rollups, in one transaction, each id once ever; how
    /// many were new.
    async fn record_analytics(&self, events: &[CloudEvent]) -> Result<u64>;

    /// A tenant's finished-job rollups for the minutes in `[from, to)`.
    async fn job_rollups(
        &self,
        tenant_id: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<JobRollup>>;

    /// A tenant's submission rollups for the minutes in `[from, to)`.
    async fn submission_rollups(
        &self,
        tenant_id: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<SubmissionRollup>>;

    /// Revenue recognised on the days in `[from, to)`, over every tenant (the operator's
    /// revenue), by day and currency.
    async fn revenue_rollups(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<RevenueRollup>>;

    /// Forgets counted ids recorded before `before` (an event delivered again after that long
    /// would count twice; Kafka redelivers within minutes, not days).
    async fn prune_analytics_seen(&self, before: DateTime<Utc>) -> Result<u64>;
}
