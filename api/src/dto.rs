//! Request and response bodies, with their OpenAPI schemas.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use pysaas_brokers::QueueStats;
use pysaas_jobs::{Job, JobState, Misfire, Schedule, ScheduleSource, ScheduleSpec};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

/// A job submission.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitJob {
    /// Registered kind, e.g. `system.noop` (see `GET /v1/kinds`).
    #[schema(example = "system.sleep")]
    pub kind: String,
    /// The kind's typed payload.
    #[serde(default = "empty_object")]
    #[schema(value_type = Object, example = json!({"ms": 100}))]
    pub payload: Value,
    /// Queue; defaults to the kind's queue.
    #[schema(pattern = r"^[a-z0-9][a-z0-9._-]{0,63}$")]
    pub queue: Option<String>,
    /// 0 (default) ..= 9; higher runs first.
    #[schema(minimum = 0, maximum = 9)]
    pub priority: Option<i16>,
    /// Earliest start (RFC 3339); in the future makes the job `scheduled`.
    pub run_at: Option<DateTime<Utc>>,
    /// Attempts before the job is dead; defaults to the kind's policy.
    #[schema(minimum = 1, maximum = 1000)]
    pub max_attempts: Option<i32>,
    /// Same key, same job (also accepted as the `Idempotency-Key` header).
    #[schema(pattern = r"^[ -~]{1,255}$")]
    pub idempotency_key: Option<String>,
}

fn empty_object() -> Value {
    Value::Object(serde_json::Map::new())
}

/// A batch submission: up to 1,000 jobs, inserted all or none.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitBatch {
    /// The jobs.
    #[schema(min_items = 1, max_items = 1000)]
    pub jobs: Vec<SubmitJob>,
}

/// A job as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JobView {
    /// UUIDv7.
    pub id: Uuid,
    /// Owning tenant.
    pub tenant_id: String,
    /// Kind.
    pub kind: String,
    /// Queue.
    pub queue: String,
    /// `scheduled`, `queued`, `running`, `succeeded`, `retrying`, `dead` or `cancelled`.
    #[schema(value_type = String, example = "queued")]
    pub state: JobState,
    /// Priority, 0 ..= 9.
    pub priority: i16,
    /// Attempts started.
    pub attempts: i32,
    /// Attempts allowed.
    pub max_attempts: i32,
    /// Payload.
    #[schema(value_type = Object)]
    pub payload: Value,
    /// Result of the successful attempt.
    #[schema(value_type = Option<Object>)]
    pub result: Option<Value>,
    /// Latest failure message.
    pub last_error: Option<String>,
    /// Per-attempt timeout (ms).
    pub timeout_ms: i64,
    /// Idempotency key.
    pub idempotency_key: Option<String>,
    /// Worker that ran (or runs) the latest attempt.
    pub worker_id: Option<String>,
    /// `X-Request-Id` of the submitting request.
    pub request_id: Option<String>,
    /// Insert time.
    pub created_at: DateTime<Utc>,
    /// Earliest start of the next attempt.
    pub run_at: DateTime<Utc>,
    /// Start of the latest attempt.
    pub started_at: Option<DateTime<Utc>>,
    /// When the job finished.
    pub finished_at: Option<DateTime<Utc>>,
    /// Every failed attempt, oldest first (a job that succeeded after failures keeps them here;
    /// its `last_error` is cleared).
    pub errors: Vec<AttemptView>,
    /// Every attempt, oldest first: the failed ones (from `errors`) and the one that succeeded
    /// or is running, each with its worker, start, end, duration and outcome.
    pub history: Vec<AttemptRun>,
    /// On submission only: why the job may not start soon (no worker has ever consumed its
    /// queue: it waits until one does).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

/// One failed attempt.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AttemptView {
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
    #[schema(value_type = Option<Object>)]
    pub detail: Option<Value>,
}

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcome {
    /// Still running.
    Running,
    /// The handler succeeded.
    Succeeded,
    /// It failed (and was retried, or the job then ended `dead` or `cancelled`).
    Failed,
}

/// One attempt of a job.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AttemptRun {
    /// Attempt number (1-based).
    pub attempt: i32,
    /// How it ended.
    pub outcome: AttemptOutcome,
    /// The worker that ran it.
    pub worker_id: Option<String>,
    /// When it started.
    pub started_at: Option<DateTime<Utc>>,
    /// When it ended (`null` while running).
    pub finished_at: Option<DateTime<Utc>>,
    /// How long it ran, in milliseconds (`null` while running or when its start is unknown).
    pub duration_ms: Option<i64>,
    /// What went wrong (failed attempts).
    pub error: Option<String>,
    /// The handler's structured detail of a failed attempt, if it gave one.
    #[schema(value_type = Option<Object>)]
    pub detail: Option<Value>,
}

/// Every attempt of `job`, oldest first.
fn history_of(job: &Job) -> Vec<AttemptRun> {
    let ran = |start: Option<DateTime<Utc>>, end: Option<DateTime<Utc>>| match (start, end) {
        (Some(start), Some(end)) => Some((end - start).num_milliseconds().max(0)),
        _ => None,
    };
    let mut history: Vec<AttemptRun> = job
        .errors
        .iter()
        .map(|e| AttemptRun {
            attempt: e.attempt,
            outcome: AttemptOutcome::Failed,
            worker_id: e.worker_id.clone(),
            started_at: e.started_at,
            finished_at: Some(e.finished_at),
            duration_ms: ran(e.started_at, Some(e.finished_at)),
            error: Some(e.error.clone()),
            detail: e.detail.clone(),
        })
        .collect();
    let last = match job.state {
        JobState::Running => Some((AttemptOutcome::Running, None)),
        JobState::Succeeded => Some((AttemptOutcome::Succeeded, job.finished_at)),
        _ => None,
    };
    if let Some((outcome, finished_at)) = last {
        history.push(AttemptRun {
            attempt: job.attempts,
            outcome,
            worker_id: job.worker_id.clone(),
            started_at: job.started_at,
            finished_at,
            duration_ms: ran(job.started_at, finished_at),
            error: None,
            detail: None,
        });
    }
    history
}

impl From<Job> for JobView {
    fn from(job: Job) -> Self {
        let history = history_of(&job);
        JobView {
            history,
            id: job.id,
            tenant_id: job.tenant_id,
            kind: job.kind,
            queue: job.queue,
            state: job.state,
            priority: job.priority,
            attempts: job.attempts,
            max_attempts: job.max_attempts,
            payload: job.payload,
            result: job.result,
            last_error: job.last_error,
            timeout_ms: job.timeout_ms,
            idempotency_key: job.idempotency_key,
            worker_id: job.worker_id,
            request_id: job.request_id,
            created_at: job.created_at,
            run_at: job.run_at,
            started_at: job.started_at,
            finished_at: job.finished_at,
            errors: job
                .errors
                .into_iter()
                .map(|e| AttemptView {
                    attempt: e.attempt,
                    error: e.error,
                    worker_id: e.worker_id,
                    started_at: e.started_at,
                    finished_at: e.finished_at,
                    detail: e.detail,
                })
                .collect(),
            warning: None,
        }
    }
}

/// Jobs accepted by a batch.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BatchAccepted {
    /// The jobs, in submission order.
    pub jobs: Vec<JobView>,
}

/// A page of jobs.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JobPage {
    /// Newest first.
    pub jobs: Vec<JobView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// The OpenAPI schema of a job state: one of [`JobState::ALL`], as the API spells them.
fn string_enum(values: impl IntoIterator<Item = &'static str>) -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(values))
        .build()
}

fn cron_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .description(Some(
            "Six fields, seconds first. The document's pattern is the subset a generated client \
             can build safely; the server also takes ranges, names and a year field.",
        ))
        .pattern(Some(pysaas_jobs::CRON_PATTERN))
        .build()
}

pub(crate) fn time_zone_schema() -> utoipa::openapi::Object {
    string_enum(pysaas_jobs::time_zone_names())
}

fn misfire_schema() -> utoipa::openapi::Object {
    string_enum(["skip", "fire_once", "catch_up"])
}

/// A job state (`null`: any).
fn job_state_schema() -> utoipa::openapi::Object {
    let mut schema = string_enum(JobState::ALL.iter().map(|s| s.as_str()));
    schema.schema_type = utoipa::openapi::schema::SchemaType::from_iter([
        utoipa::openapi::schema::Type::String,
        utoipa::openapi::schema::Type::Null,
    ]);
    if let Some(values) = &mut schema.enum_values {
        values.push(serde_json::Value::Null);
    }
    schema
}

/// A payload filter: at most 8 members, plainly named, each a scalar (or null for none).
fn payload_filter_schema() -> utoipa::openapi::Object {
    use utoipa::openapi::schema::{SchemaType, Type};
    use utoipa::openapi::ObjectBuilder;
    let name = ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some("^[A-Za-z0-9_-]{1,64}$"))
        .build();
    let scalar = ObjectBuilder::new().schema_type(SchemaType::from_iter([
        Type::String,
        Type::Number,
        Type::Boolean,
        Type::Null,
    ]));
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::Object, Type::Null]))
        .max_properties(Some(8))
        .property_names(Some(name))
        .additional_properties(Some(scalar))
        .build()
}

/// Which of a tenant's jobs a bulk action applies to (every field optional: `{}` is all).
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkFilter {
    /// Only jobs in this state.
    #[schema(schema_with = job_state_schema)]
    pub state: Option<JobState>,
    /// Only this kind.
    pub kind: Option<String>,
    /// Only this queue.
    pub queue: Option<String>,
    /// Only these jobs (rows selected on a page; up to 1,000; ids of other tenants match
    /// nothing).
    #[schema(max_items = 1000)]
    pub ids: Option<Vec<Uuid>>,
    /// Only jobs whose payload holds these members, as the list's `payload` search (e.g.
    /// `{"user_id": 42}`: at most 8 plainly named members with scalar values).
    #[schema(schema_with = payload_filter_schema)]
    pub payload: Option<serde_json::Map<String, serde_json::Value>>,
}

/// What a bulk action does to each matching job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum BulkVerb {
    /// Run dead and cancelled jobs again (succeeded ones too when `filter.state` names them).
    Retry,
    /// Cancel unfinished jobs (others are skipped).
    Cancel,
    /// Delete finished jobs (others are skipped).
    Delete,
}

impl BulkVerb {
    /// Its name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            BulkVerb::Retry => "retry",
            BulkVerb::Cancel => "cancel",
            BulkVerb::Delete => "delete",
        }
    }
}

/// `POST /v1/jobs/bulk`: an action on every job matching a filter, newest first, at most `limit`
/// of them per request (repeat while `more` is true).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkRequest {
    /// The jobs.
    #[serde(default)]
    pub filter: BulkFilter,
    /// What to do.
    pub action: BulkVerb,
    /// Most jobs to act on, 1 ..= 1000 (default 1000).
    #[schema(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
}

/// What a bulk action did.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BulkResult {
    /// The action.
    pub action: BulkVerb,
    /// Jobs that matched the filter (at most `limit`).
    pub matched: u64,
    /// Jobs the action changed (the others were in a state it does not apply to).
    pub changed: u64,
    /// More jobs may match: send the request again.
    pub more: bool,
}

/// A job state, or empty for any (as a form leaves an unset filter).
fn state_schema() -> utoipa::openapi::Object {
    string_enum(std::iter::once("").chain(JobState::ALL.iter().map(|s| s.as_str())))
}

/// An empty query value (`?state=`) means the filter is not set, as a form leaves it.
fn empty_as_none<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    let raw: Option<String> = Option::deserialize(d)?;
    match raw.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(v) => v.parse().map(Some).map_err(serde::de::Error::custom),
    }
}

/// List filters.
#[derive(Debug, Clone, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Only jobs in this state (empty: any).
    #[param(schema_with = state_schema)]
    #[serde(default, deserialize_with = "empty_as_none")]
    pub state: Option<JobState>,
    /// Only this kind (empty: any).
    #[serde(default, deserialize_with = "empty_as_none")]
    pub kind: Option<String>,
    /// Only this queue (empty: any).
    #[serde(default, deserialize_with = "empty_as_none")]
    pub queue: Option<String>,
    /// Page size, 1 ..= 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page (empty: the first page).
    #[param(value_type = Option<String>, pattern = r"^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})?$")]
    #[serde(default, deserialize_with = "empty_as_none")]
    pub cursor: Option<String>,
    /// Only jobs whose payload holds these top-level members: a JSON object of up to 8 names
    /// (letters, digits, `_`, `-`) with scalar values, e.g. `{"user_id":42}` (empty: any).
    #[param(value_type = Option<String>, pattern = r#"^(\{( *"[A-Za-z0-9_-]{1,64}" *: *("[ !#-\[\]-~]{0,64}"|-?(0|[1-9][0-9]{0,14})|true|false|null) *(, *"[A-Za-z0-9_-]{1,64}" *: *("[ !#-\[\]-~]{0,64}"|-?(0|[1-9][0-9]{0,14})|true|false|null) *){0,7})? *\})?$"#)]
    #[serde(default, deserialize_with = "empty_as_none")]
    pub payload: Option<String>,
}

/// One queue's counts.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct QueueView {
    /// Queue name.
    pub name: String,
    /// Jobs per state (every state present, zero included).
    pub counts: BTreeMap<String, i64>,
    /// Age in seconds of the oldest queued job (0 when none is queued).
    pub oldest_queued_age_seconds: f64,
    /// When a worker last said it consumes this queue; `null`: no worker ever has, and its jobs
    /// wait until one does.
    pub last_consumed_at: Option<DateTime<Utc>>,
    /// Paused: workers claim nothing from it.
    pub paused: bool,
    /// Since when (`null` when not paused).
    pub paused_at: Option<DateTime<Utc>>,
}

/// A queue's pause, after a pause or resume.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct QueuePause {
    /// Queue name.
    pub queue: String,
    /// Paused: workers claim nothing from it.
    pub paused: bool,
    /// Since when (`null` when not paused).
    pub paused_at: Option<DateTime<Utc>>,
    /// Who paused it (`user …` or `key …`; `null` when not paused).
    pub paused_by: Option<String>,
}

impl QueueView {
    /// Builds the view at time `now`; `last_consumed_at` from the workers' records,
    /// `paused_at` from the queue's pause.
    pub fn new(
        stats: QueueStats,
        now: DateTime<Utc>,
        last_consumed_at: Option<DateTime<Utc>>,
        paused_at: Option<DateTime<Utc>>,
    ) -> Self {
        let counts = JobState::ALL
            .iter()
            .map(|s| {
                (
                    s.as_str().to_owned(),
                    stats.counts.get(s).copied().unwrap_or(0),
                )
            })
            .collect();
        let age = stats
            .oldest_queued_at
            .map(|t| (now - t).num_milliseconds().max(0) as f64 / 1000.0)
            .unwrap_or(0.0);
        QueueView {
            name: stats.queue,
            counts,
            oldest_queued_age_seconds: age,
            last_consumed_at,
            paused: paused_at.is_some(),
            paused_at,
        }
    }
}

/// All queues.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct QueueList {
    /// Sorted by name.
    pub queues: Vec<QueueView>,
}

/// A worker process, as its heartbeats report it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WorkerView {
    /// Worker id (host, pid and a random suffix).
    pub id: String,
    /// Host name.
    pub host: String,
    /// Process id.
    pub pid: i64,
    /// PySaaS version.
    pub version: String,
    /// Queues it consumes.
    pub queues: Vec<String>,
    /// Jobs it runs at once.
    pub concurrency: i32,
    /// Jobs it was running at its last report.
    pub busy: i32,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// Its last report.
    pub last_seen: DateTime<Utc>,
    /// `live`, or `lost` when it has not reported for a minute (it is dropped after an hour).
    #[schema(pattern = "^(live|lost)$")]
    pub status: String,
}

/// Worker processes, most recently seen first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WorkerList {
    /// The workers.
    pub workers: Vec<WorkerView>,
}

/// A registered kind.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct KindView {
    /// Kind name.
    pub kind: String,
    /// Default queue.
    pub queue: String,
    /// Default priority.
    pub priority: i16,
    /// Per-attempt timeout (ms).
    pub timeout_ms: u64,
    /// Default attempts.
    pub max_attempts: i32,
    /// JSON Schema of the payload.
    #[schema(value_type = Object)]
    pub payload_schema: Value,
    /// Whether it can be submitted (`false`: PySaaS creates these jobs itself, from the API
    /// call that asks for one).
    pub submittable: bool,
}

/// All kinds.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct KindList {
    /// Sorted by name.
    pub kinds: Vec<KindView>,
}

/// Health answer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// `ok`.
    pub status: String,
}

/// `POST /v1/cron/preview`: when a cron expression would fire, before it is saved.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CronPreview {
    /// Cron expression, seconds first.
    #[schema(example = "0 30 3 * * *", schema_with = cron_schema)]
    pub cron: String,
    /// IANA time zone (default `UTC`).
    #[schema(example = "Europe/Berlin", schema_with = time_zone_schema)]
    pub timezone: Option<String>,
    /// How many fire times, 1 ..= 20 (default 5).
    #[schema(minimum = 1, maximum = 20)]
    pub count: Option<u8>,
}

/// The next fire times of a cron expression.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CronTimes {
    /// Soonest first.
    pub next_fire_times: Vec<DateTime<Utc>>,
}

/// A change to a schedule (`PATCH /v1/schedules/{name}`, a JSON merge patch): any of a
/// schedule's fields but its name; `kind` and `payload` only together (the payload is replaced
/// as a whole). In the document, one variant per kind and one for the other fields alone.
#[derive(Debug, ToSchema)]
pub struct SchedulePatch {}

/// A schedule to create (`POST /v1/schedules`).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSchedule {
    /// Unique per tenant: 1 to 128 characters of a-z, A-Z, 0-9, `.`, `_`, `-`.
    #[schema(example = "nightly-report", pattern = r"^[a-zA-Z0-9._-]{1,128}$")]
    pub name: String,
    /// Cron expression, seconds first: `sec min hour day-of-month month day-of-week [year]`.
    #[schema(example = "0 30 3 * * *", schema_with = cron_schema)]
    pub cron: String,
    /// IANA time zone the expression is read in (default `UTC`).
    #[schema(example = "Europe/Berlin", schema_with = time_zone_schema)]
    pub timezone: Option<String>,
    /// Job kind each tick enqueues.
    #[schema(example = "system.noop")]
    pub kind: String,
    /// The kind's payload.
    #[serde(default = "empty_object")]
    #[schema(value_type = Object)]
    pub payload: Value,
    /// Queue; defaults to the kind's.
    #[schema(pattern = r"^[a-z0-9][a-z0-9._-]{0,63}$")]
    pub queue: Option<String>,
    /// Priority; defaults to the kind's.
    #[schema(minimum = 0, maximum = 9)]
    pub priority: Option<i16>,
    /// Attempts; defaults to the kind's retry policy.
    #[schema(minimum = 1, maximum = 1000)]
    pub max_attempts: Option<i32>,
    /// `skip`, `fire_once` (default) or `catch_up`: what to do with ticks missed while no
    /// scheduler ran.
    #[schema(example = "fire_once", schema_with = misfire_schema)]
    pub misfire: Option<Misfire>,
    /// Most missed ticks `catch_up` fires (default 100).
    #[schema(minimum = 1, maximum = 10000)]
    pub catch_up_max: Option<u32>,
    /// Create paused.
    #[serde(default)]
    pub paused: bool,
}

impl From<CreateSchedule> for ScheduleSpec {
    fn from(c: CreateSchedule) -> Self {
        ScheduleSpec {
            name: c.name,
            cron: c.cron,
            timezone: c.timezone.unwrap_or_else(|| "UTC".to_owned()),
            kind: c.kind,
            payload: {
                let mut payload = c.payload;
                pysaas_jobs::whole_floats_as_integers(&mut payload);
                payload
            },
            queue: c.queue,
            priority: c.priority,
            max_attempts: c.max_attempts,
            misfire: c.misfire.unwrap_or_default(),
            catch_up_max: c
                .catch_up_max
                .unwrap_or(pysaas_jobs::schedule::DEFAULT_CATCH_UP_MAX),
            paused: c.paused,
        }
    }
}

/// A schedule as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ScheduleView {
    /// Name.
    pub name: String,
    /// Owning tenant.
    pub tenant_id: String,
    /// Cron expression (seconds first).
    pub cron: String,
    /// IANA time zone.
    pub timezone: String,
    /// Kind enqueued.
    pub kind: String,
    /// Payload.
    #[schema(value_type = Object)]
    pub payload: Value,
    /// Queue (the kind's when absent).
    pub queue: Option<String>,
    /// Priority (the kind's when absent).
    pub priority: Option<i16>,
    /// Attempts (the kind's when absent).
    pub max_attempts: Option<i32>,
    /// Misfire policy.
    #[schema(value_type = String, example = "fire_once")]
    pub misfire: Misfire,
    /// Bound of `catch_up`.
    pub catch_up_max: u32,
    /// Paused schedules fire nothing.
    pub paused: bool,
    /// `config` (re-applied when a scheduler starts) or `api`.
    #[schema(value_type = String, example = "api")]
    pub source: ScheduleSource,
    /// The next five ticks (empty while paused).
    pub next_fire_times: Vec<DateTime<Utc>>,
    /// When it last enqueued a job.
    pub last_fire_at: Option<DateTime<Utc>>,
    /// The job it last enqueued.
    pub last_job_id: Option<Uuid>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Definition last changed.
    pub updated_at: DateTime<Utc>,
    /// Bumped by every change.
    pub version: i64,
}

impl ScheduleView {
    /// The view at time `now`.
    pub fn new(schedule: Schedule, now: DateTime<Utc>) -> Self {
        let next_fire_times = schedule.upcoming(now, 5);
        let spec = schedule.spec;
        ScheduleView {
            name: spec.name,
            tenant_id: schedule.tenant_id,
            cron: spec.cron,
            timezone: spec.timezone,
            kind: spec.kind,
            payload: spec.payload,
            queue: spec.queue,
            priority: spec.priority,
            max_attempts: spec.max_attempts,
            misfire: spec.misfire,
            catch_up_max: spec.catch_up_max,
            paused: spec.paused,
            source: schedule.source,
            next_fire_times,
            last_fire_at: schedule.last_fire_at,
            last_job_id: schedule.last_job_id,
            created_at: schedule.created_at,
            updated_at: schedule.updated_at,
            version: schedule.version,
        }
    }
}

/// A tenant's schedules.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ScheduleList {
    /// Sorted by name.
    pub schedules: Vec<ScheduleView>,
}
