use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::JobState;

/// The queue a job lands on when neither the kind nor the submission names one.
pub const DEFAULT_QUEUE: &str = "default";
/// The tenant that owns jobs until authentication assigns real ones.
pub const DEFAULT_TENANT: &str = "default";
/// Priorities run from 0 (lowest, the default) to this value (highest); higher runs first.
pub const MAX_PRIORITY: i16 = 9;

/// A job about to be inserted: the envelope every transport carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewJob {
    /// UUIDv7: time-ordered, so ids sort by creation and index well.
    pub id: Uuid,
    /// Owning tenant.
    pub tenant_id: String,
    /// Registered kind name.
    pub kind: String,
    /// Queue the job is dispatched on.
    pub queue: String,
    /// Validated payload.
    pub payload: Value,
    /// 0 ..= [`MAX_PRIORITY`]; higher first.
    pub priority: i16,
    /// Attempts before the job is dead.
    pub max_attempts: i32,
    /// Earliest start. In the future: the job starts `scheduled`.
    pub run_at: DateTime<Utc>,
    /// Per-attempt timeout in milliseconds.
    pub timeout_ms: i64,
    /// The same key (per tenant) always yields the same job.
    pub idempotency_key: Option<String>,
    /// W3C `traceparent` of the submitting request, if any.
    pub trace_context: Option<String>,
    /// `X-Request-Id` of the submitting request, if any.
    pub request_id: Option<String>,
}

impl NewJob {
    /// A job of `kind` on `queue` for `tenant_id`, to run now with the defaults a submission
    /// without options gets: priority 0, [`crate::DEFAULT_MAX_ATTEMPTS`] attempts,
    /// [`crate::DEFAULT_TIMEOUT`] per attempt, no idempotency key. The payload is not checked
    /// here (the registry does that for submissions); set other fields directly.
    pub fn new(
        tenant_id: impl Into<String>,
        kind: impl Into<String>,
        queue: impl Into<String>,
        payload: Value,
    ) -> Self {
        NewJob {
            id: Uuid::now_v7(),
            tenant_id: tenant_id.into(),
            kind: kind.into(),
            queue: queue.into(),
            payload,
            priority: 0,
            max_attempts: crate::DEFAULT_MAX_ATTEMPTS,
            run_at: Utc::now(),
            timeout_ms: i64::try_from(crate::DEFAULT_TIMEOUT.as_millis()).unwrap_or(i64::MAX),
            idempotency_key: None,
            trace_context: None,
            request_id: None,
        }
    }

    /// A job of kind `K` for `tenant_id` with the kind's own defaults (queue, priority, attempts,
    /// timeout), to run now: what code that causes a job (a handler, a store's transaction)
    /// builds instead of naming the kind by string.
    pub fn of<K: crate::JobKind>(
        tenant_id: impl Into<String>,
        payload: &K,
    ) -> Result<Self, serde_json::Error> {
        let mut job = NewJob::new(tenant_id, K::KIND, K::QUEUE, serde_json::to_value(payload)?);
        job.priority = K::PRIORITY;
        job.max_attempts = K::retry_policy().max_attempts;
        job.timeout_ms = i64::try_from(K::timeout().as_millis()).unwrap_or(i64::MAX);
        Ok(job)
    }

    /// The state the job is inserted in, given the current time.
    pub fn initial_state(&self, now: DateTime<Utc>) -> JobState {
        if self.run_at > now {
            JobState::Scheduled
        } else {
            JobState::Queued
        }
    }
}

/// A job as the store records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Job {
    /// UUIDv7 id.
    pub id: Uuid,
    /// Owning tenant.
    pub tenant_id: String,
    /// Registered kind name.
    pub kind: String,
    /// Queue.
    pub queue: String,
    /// Lifecycle state.
    pub state: JobState,
    /// 0 ..= 9, higher first.
    pub priority: i16,
    /// Attempts started so far (the running attempt included).
    pub attempts: i32,
    /// Attempts allowed.
    pub max_attempts: i32,
    /// Payload as submitted.
    pub payload: Value,
    /// What the handler returned on success.
    pub result: Option<Value>,
    /// Message of the latest failure.
    pub last_error: Option<String>,
    /// Per-attempt timeout in milliseconds.
    pub timeout_ms: i64,
    /// Idempotency key, if the submission had one.
    pub idempotency_key: Option<String>,
    /// W3C trace context of the submission.
    pub trace_context: Option<String>,
    /// `X-Request-Id` of the submitting request, if any.
    #[serde(default)]
    pub request_id: Option<String>,
    /// Worker holding the current lease.
    pub worker_id: Option<String>,
    /// When the row was inserted.
    pub created_at: DateTime<Utc>,
    /// Earliest start of the next attempt.
    pub run_at: DateTime<Utc>,
    /// When the latest attempt started.
    pub started_at: Option<DateTime<Utc>>,
    /// When the job reached a finished state.
    pub finished_at: Option<DateTime<Utc>>,
    /// Until when the running worker's lease holds.
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// Every failed attempt, oldest first (a succeeded job's last attempt is the one above).
    #[serde(default)]
    pub errors: Vec<AttemptError>,
}

/// One failed attempt of a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AttemptError {
    /// Attempt number (1-based).
    pub attempt: i32,
    /// What went wrong.
    pub error: String,
    /// The worker that ran it.
    pub worker_id: Option<String>,
    /// When the attempt started.
    pub started_at: Option<DateTime<Utc>>,
    /// When it ended.
    pub finished_at: DateTime<Utc>,
    /// The handler's structured detail, if it gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<Value>,
}
