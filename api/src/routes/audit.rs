//! The audit log and the analytics rollups (`docs/events.md`), as the event consumers keep them.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::Json;
use chrono::{DateTime, TimeDelta, Utc};
use pysaas_brokers::store::stats::wait_quantile_ms;
use pysaas_brokers::store::{AuditEntry, AuditFilter};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::{Admin, Authorized, JobsRead, TenantOf};
use crate::error::ApiError;
use crate::AppState;

/// Most entries per page of the audit log.
const AUDIT_PAGE_MAX: i64 = 500;
/// The widest analytics window.
const ANALYTICS_WINDOW_MAX: TimeDelta = TimeDelta::days(7);
/// The widest revenue window.
const REVENUE_WINDOW_MAX: TimeDelta = TimeDelta::days(366);

/// `GET /v1/audit` parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct AuditQuery {
    /// Only entries about this subject, e.g. `jobs/<id>` (empty: any).
    subject: Option<String>,
    /// Only entries of this type, e.g. `pysaas.job.dead` (empty: any).
    #[serde(rename = "type")]
    #[param(rename = "type")]
    event_type: Option<String>,
    /// At or after this time (RFC 3339).
    from: Option<DateTime<Utc>>,
    /// Before this time (RFC 3339). To page back, pass the last entry's `time` here and its
    /// `id` as `before`.
    to: Option<DateTime<Utc>>,
    /// With `to`: the id of the last entry of the previous page (entries at `to`'s exact time
    /// that sort before it come next).
    before: Option<uuid::Uuid>,
    /// 1 to 500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<i64>,
}

/// One audit entry: an event of the audit stream.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct AuditEntryView {
    /// The event's id (CloudEvents `id`).
    pub(crate) id: uuid::Uuid,
    /// What happened (`docs/events.md` lists the types).
    #[serde(rename = "type")]
    pub(crate) event_type: String,
    /// What it happened to.
    pub(crate) subject: String,
    /// When.
    pub(crate) time: DateTime<Utc>,
    /// The event's data, of its type's schema.
    pub(crate) data: serde_json::Value,
    /// The W3C trace context of the request that caused it.
    pub(crate) traceparent: Option<String>,
}

impl From<AuditEntry> for AuditEntryView {
    fn from(e: AuditEntry) -> Self {
        AuditEntryView {
            id: e.id,
            event_type: e.event_type,
            subject: e.subject,
            time: e.time,
            data: e.data.to_value(),
            traceparent: e.traceparent,
        }
    }
}

/// A page of the audit log, newest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct AuditPage {
    /// The entries.
    pub(crate) entries: Vec<AuditEntryView>,
}

/// The tenant's audit log: who did what, when — every job transition and audited action, as
/// the audit consumer stored it (with events enabled). Filter by subject, type and time.
#[utoipa::path(get, path = "/v1/audit", operation_id = "listAudit", tag = "audit", params(AuditQuery),
    responses((status = 200, body = AuditPage),
              (status = 400, description = "Unknown or malformed parameter", content_type = "application/problem+json"),
              (status = 422, description = "`limit` out of range", content_type = "application/problem+json")))]
pub(crate) async fn list_audit(
    State(state): State<AppState>,
    TenantOf(tenant, _): TenantOf<Admin>,
    query: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Json<AuditPage>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let limit = super::page_limit(q.limit, 100, AUDIT_PAGE_MAX)?;
    let entries = state
        .store()
        .audit_log(&AuditFilter {
            tenant_id: tenant,
            subject: q.subject.filter(|s| !s.is_empty()),
            event_type: q.event_type.filter(|t| !t.is_empty()),
            from: q.from,
            to: q.to,
            before: q.before.filter(|_| q.to.is_some()),
            limit: usize::try_from(limit).unwrap_or(1),
        })
        .await?;
    Ok(Json(AuditPage {
        entries: entries.into_iter().map(Into::into).collect(),
    }))
}

/// `GET /v1/analytics/jobs` parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct AnalyticsQuery {
    /// From this minute (RFC 3339; default: an hour before `to`).
    from: Option<DateTime<Utc>>,
    /// Up to this minute, excluded (RFC 3339; default: now). The window is at most 7 days: an
    /// earlier `from` is moved up to 7 days before `to` (the answer's `from` says so).
    to: Option<DateTime<Utc>>,
}

/// Finished jobs of one minute, kind, queue and outcome.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct JobRollupView {
    /// Start of the minute.
    pub(crate) minute: DateTime<Utc>,
    /// Kind.
    pub(crate) kind: String,
    /// Queue.
    pub(crate) queue: String,
    /// `succeeded`, `dead` or `cancelled`.
    pub(crate) outcome: String,
    /// How many jobs.
    pub(crate) jobs: i64,
    /// Their attempts, summed.
    pub(crate) attempts: i64,
    /// Mean duration of their last attempt (ms; `null` when none ran, e.g. cancels).
    pub(crate) mean_ms: Option<f64>,
    /// Median of that duration (ms, the upper bound of its histogram bucket).
    pub(crate) p50_ms: Option<u64>,
    /// 95th percentile (ms, likewise).
    pub(crate) p95_ms: Option<u64>,
}

/// Submissions of one minute, kind and queue.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct SubmissionRollupView {
    /// Start of the minute.
    pub(crate) minute: DateTime<Utc>,
    /// Kind.
    pub(crate) kind: String,
    /// Queue.
    pub(crate) queue: String,
    /// How many jobs were submitted.
    pub(crate) jobs: i64,
}

/// The tenant's job analytics over a window.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct JobAnalytics {
    /// The window's start.
    pub(crate) from: DateTime<Utc>,
    /// Its end (excluded).
    pub(crate) to: DateTime<Utc>,
    /// Finished jobs, by minute, kind, queue and outcome.
    pub(crate) finished: Vec<JobRollupView>,
    /// Submissions, by minute, kind and queue.
    pub(crate) submitted: Vec<SubmissionRollupView>,
}

/// Jobs submitted and finished per minute, kind, queue and outcome, with duration percentiles:
/// the rollups the analytics consumer keeps from the analytics stream (with events enabled).
#[utoipa::path(get, path = "/v1/analytics/jobs", operation_id = "getJobAnalytics", tag = "audit", params(AnalyticsQuery),
    responses((status = 200, body = JobAnalytics),
              (status = 400, description = "Unknown or malformed parameter", content_type = "application/problem+json")))]
pub(crate) async fn job_analytics(
    State(state): State<AppState>,
    TenantOf(tenant, _): TenantOf<JobsRead>,
    query: Result<Query<AnalyticsQuery>, QueryRejection>,
) -> Result<Json<JobAnalytics>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let to = match q.to {
        Some(to) => to,
        None => state.store().now().await?,
    };
    // At most seven days, ending at `to`; an empty window (`from` at or after `to`) holds
    // nothing.
    let earliest = to
        .checked_sub_signed(ANALYTICS_WINDOW_MAX)
        .ok_or_else(|| ApiError::bad_request("`to` is out of range"))?;
    let from = q
        .from
        .or_else(|| to.checked_sub_signed(TimeDelta::hours(1)))
        .unwrap_or(earliest)
        .max(earliest);
    let store = state.store();
    let finished = store
        .job_rollups(&tenant, from, to)
        .await?
        .into_iter()
        .map(|r| {
            let timed: i64 = r.durations.iter().sum();
            JobRollupView {
                minute: r.minute,
                kind: r.kind,
                queue: r.queue,
                outcome: r.outcome.as_str().to_owned(),
                jobs: r.jobs,
                attempts: r.attempts,
                mean_ms: (timed > 0).then(|| r.duration_ms as f64 / timed as f64),
                p50_ms: wait_quantile_ms(&r.durations, 0.5),
                p95_ms: wait_quantile_ms(&r.durations, 0.95),
            }
        })
        .collect();
    let submitted = store
        .submission_rollups(&tenant, from, to)
        .await?
        .into_iter()
        .map(|r| SubmissionRollupView {
            minute: r.minute,
            kind: r.kind,
            queue: r.queue,
            jobs: r.jobs,
        })
        .collect();
    Ok(Json(JobAnalytics {
        from,
        to,
        finished,
        submitted,
    }))
}

/// `GET /v1/analytics/revenue` parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct RevenueQuery {
    /// From the start of this time's UTC day (RFC 3339; default: 30 days before `to`).
    from: Option<DateTime<Utc>>,
    /// Up to this time, excluded (RFC 3339; default: now). The window is at most 366 days: an
    /// earlier `from` is moved up (the answer's `from` says so).
    to: Option<DateTime<Utc>>,
}

/// Revenue recognised on one UTC day in one currency.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct RevenueDayView {
    /// Start of the day (UTC).
    pub(crate) day: DateTime<Utc>,
    /// ISO 4217 code.
    pub(crate) currency: String,
    /// Invoices paid.
    pub(crate) invoices: i64,
    /// Their totals, in minor units.
    pub(crate) amount_minor: i64,
}

/// The operator's revenue over a window.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct RevenueAnalytics {
    /// The window's start.
    pub(crate) from: DateTime<Utc>,
    /// Its end (excluded).
    pub(crate) to: DateTime<Utc>,
    /// Revenue by day and currency, over every paying tenant.
    pub(crate) days: Vec<RevenueDayView>,
}

/// Revenue recognised per day and currency (paid invoices, over every tenant): the rollup the
/// analytics consumer keeps from the analytics stream. The operator's admins only.
#[utoipa::path(get, path = "/v1/analytics/revenue", operation_id = "getRevenueAnalytics", tag = "audit", params(RevenueQuery),
    responses((status = 200, body = RevenueAnalytics),
              (status = 400, description = "Unknown or malformed parameter", content_type = "application/problem+json"),
              (status = 403, description = "Not an admin of the operator's tenant", content_type = "application/problem+json")))]
pub(crate) async fn revenue_analytics(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<Admin>,
    query: Result<Query<RevenueQuery>, QueryRejection>,
) -> Result<Json<RevenueAnalytics>, ApiError> {
    if principal.tenant_id != pysaas_jobs::DEFAULT_TENANT {
        return Err(ApiError::new(
            axum::http::StatusCode::FORBIDDEN,
            "revenue is shown to the operator's admins only (the `default` tenant)",
        ));
    }
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let to = match q.to {
        Some(to) => to,
        None => state.store().now().await?,
    };
    let earliest = to
        .checked_sub_signed(REVENUE_WINDOW_MAX)
        .ok_or_else(|| ApiError::bad_request("`to` is out of range"))?;
    // Whole days: the day `from` falls in, from its start (UTC).
    let from = q
        .from
        .or_else(|| to.checked_sub_signed(TimeDelta::days(30)))
        .unwrap_or(earliest)
        .max(earliest);
    let from = from.date_naive().and_time(chrono::NaiveTime::MIN).and_utc();
    let days = state
        .store()
        .revenue_rollups(from, to)
        .await?
        .into_iter()
        .map(|r| RevenueDayView {
            day: r.day,
            currency: r.currency,
            invoices: r.invoices,
            amount_minor: r.amount_minor,
        })
        .collect();
    Ok(Json(RevenueAnalytics { from, to, days }))
}
