//! `/v1/jobs`: submission, reads and user actions.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use pysaas_brokers::{Inserted, JobFilter, Transition, LIST_LIMIT_MAX};
use pysaas_jobs::events::{BulkAction, BULK_ACTION};
use pysaas_jobs::{Job, JobOptions, JobState, JobsError, NewJob};
use uuid::Uuid;

use crate::auth::{Authorized, JobsRead, JobsWrite, TenantOf};
use crate::dto::{
    BatchAccepted, BulkRequest, BulkResult, BulkVerb, JobPage, JobView, ListParams, SubmitBatch,
    SubmitJob,
};
use crate::error::{parse_json, ApiError, FieldError};
use crate::AppState;

/// Most jobs in one batch.
pub const BATCH_MAX: usize = 1000;
/// Default page size of `GET /v1/jobs`.
pub const LIST_LIMIT_DEFAULT: i64 = 100;
pub use pysaas_jobs::{valid_queue_name, MAX_ATTEMPTS_LIMIT};

fn invalid(field: &'static str, message: impl Into<String>) -> JobsError {
    JobsError::InvalidField {
        field,
        message: message.into(),
    }
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, ApiError> {
    headers
        .get(name)
        .map(|v| {
            v.to_str()
                .map_err(|_| ApiError::bad_request(format!("header `{name}` is not visible ASCII")))
        })
        .transpose()
}

/// Turns a submission into a validated job row.
fn prepare(
    state: &AppState,
    tenant: &str,
    sub: SubmitJob,
    header_key: Option<&str>,
    headers: &HeaderMap,
) -> Result<NewJob, JobsError> {
    let idempotency_key = match (header_key, sub.idempotency_key) {
        (Some(h), Some(b)) if h != b => {
            return Err(invalid(
                "idempotency_key",
                "differs from the Idempotency-Key header",
            ));
        }
        (Some(h), _) => Some(h.to_owned()),
        (None, b) => b,
    };
    state.registry().new_job(
        tenant,
        &sub.kind,
        sub.payload,
        JobOptions {
            queue: sub.queue,
            priority: sub.priority,
            max_attempts: sub.max_attempts,
            run_at: sub.run_at,
            idempotency_key,
            trace_context: traceparent(headers),
            request_id: request_id(headers),
        },
    )
}

/// The request id the gateway accepted or generated (`X-Request-Id`), at most 128 characters.
pub(crate) fn request_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map(str::to_owned)
}

/// The request's W3C `traceparent`: the API's own span, which the `trace_context` middleware
/// (`lib.rs`) parsed or made and wrote back, so it is taken as it is (once per job of a batch).
fn traceparent(headers: &HeaderMap) -> Option<String> {
    headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() == 55)
        .map(str::to_owned)
}

pub(crate) async fn insert(
    state: &AppState,
    mut jobs: Vec<NewJob>,
) -> Result<Vec<Inserted>, ApiError> {
    let inserted = if jobs.len() == 1 {
        // One job: group commit (shared transaction and broker publish with concurrent
        // submissions; answered once committed).
        let job = jobs
            .pop()
            .ok_or_else(|| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "no job to insert"))?;
        vec![state.group_commit().insert(job).await?]
    } else {
        let inserted = state.store().insert(jobs).await?;
        let ready: Vec<_> = inserted
            .iter()
            .filter(|i| i.created && i.job.state == JobState::Queued)
            .map(|i| i.job.clone())
            .collect();
        if !ready.is_empty() {
            if let Err(err) = state.dispatcher().dispatch(&ready).await {
                // The rows are committed; the relay re-dispatches queued jobs the broker missed.
                tracing::warn!(error = %err, jobs = ready.len(), "dispatch after commit failed");
            }
        }
        inserted
    };
    // Delayed jobs are counted when the promoter makes them queued.
    pysaas_brokers::gauges::count_enqueued(
        inserted.iter().filter(|i| i.created).map(|i| &i.job),
        "api",
    );
    Ok(inserted)
}

fn location(id: Uuid) -> HeaderValue {
    HeaderValue::from_str(&format!("/v1/jobs/{id}"))
        .unwrap_or_else(|_| HeaderValue::from_static("/v1/jobs"))
}

/// Submit a job. An `Idempotency-Key` header is taken as the body's `idempotency_key` (the two
/// must agree when both are sent).
#[utoipa::path(post, path = "/v1/jobs", operation_id = "submitJob", tag = "jobs", request_body = SubmitJob,
    responses(
        (status = 202, description = "Accepted: the job is recorded", body = JobView),
        (status = 200, description = "Idempotent replay: the job created earlier with this key", body = JobView),
        (status = 409, description = "Idempotency key used for a different job", content_type = "application/problem+json"),
        (status = 422, description = "Unknown kind or invalid payload", content_type = "application/problem+json"),
    ))]
pub(crate) async fn submit(
    State(state): State<AppState>,
    TenantOf(tenant, _): TenantOf<JobsWrite>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let sub: SubmitJob = parse_json(&body?)?;
    let header_key = header_str(&headers, "idempotency-key")?;
    let job = prepare(&state, &tenant, sub, header_key, &headers)?;
    let (kind, payload) = (job.kind.clone(), job.payload.clone());
    let inserted = insert(&state, vec![job]).await?.pop().ok_or_else(|| {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "insert returned nothing")
    })?;
    let id = inserted.job.id;
    if inserted.created {
        let view = with_warning(&state, JobView::from(inserted.job)).await;
        return Ok((
            StatusCode::ACCEPTED,
            [(header::LOCATION, location(id))],
            Json(view),
        )
            .into_response());
    }
    if inserted.job.kind != kind || inserted.job.payload != payload {
        return Err(ApiError::conflict(
            "this idempotency key was already used for a different job",
        )
        .with("job_id", id.to_string()));
    }
    Ok((
        StatusCode::OK,
        [
            (header::LOCATION, location(id)),
            (
                header::HeaderName::from_static("idempotent-replayed"),
                HeaderValue::from_static("true"),
            ),
        ],
        Json(JobView::from(inserted.job)),
    )
        .into_response())
}

/// Submit up to 1,000 jobs in one transaction (all or none).
#[utoipa::path(post, path = "/v1/jobs/batch", operation_id = "submitJobBatch", tag = "jobs", request_body = SubmitBatch,
    responses(
        (status = 202, description = "All jobs recorded", body = BatchAccepted),
        (status = 422, description = "Empty, over 1,000 jobs, or an invalid job (nothing is inserted)", content_type = "application/problem+json"),
    ))]
pub(crate) async fn submit_batch(
    State(state): State<AppState>,
    TenantOf(tenant, _): TenantOf<JobsWrite>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let batch: SubmitBatch = parse_json(&body?)?;
    if batch.jobs.is_empty() || batch.jobs.len() > BATCH_MAX {
        return Err(ApiError::invalid_fields(
            format!(
                "a batch holds 1 to {BATCH_MAX} jobs (got {})",
                batch.jobs.len()
            ),
            vec![FieldError {
                index: None,
                path: "jobs".into(),
                message: format!("1 to {BATCH_MAX} items"),
            }],
        ));
    }
    let mut jobs = Vec::with_capacity(batch.jobs.len());
    let mut errors = Vec::new();
    for (index, sub) in batch.jobs.into_iter().enumerate() {
        match prepare(&state, &tenant, sub, None, &headers) {
            Ok(job) => jobs.push(job),
            Err(err) => errors.push(field_error(index, err)),
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::invalid_fields(
            match errors.len() {
                1 => "1 of the jobs is invalid; none was inserted".to_owned(),
                n => format!("{n} of the jobs are invalid; none was inserted"),
            },
            errors,
        ));
    }
    let inserted = insert(&state, jobs).await?;
    let mut jobs = Vec::with_capacity(inserted.len());
    for i in inserted {
        jobs.push(with_warning(&state, JobView::from(i.job)).await);
    }
    Ok((StatusCode::ACCEPTED, Json(BatchAccepted { jobs })).into_response())
}

/// Adds a warning to a just-submitted job whose queue no worker has ever consumed: it is
/// accepted (workers may come later) but will wait until one does.
async fn with_warning(state: &AppState, mut view: JobView) -> JobView {
    if !state
        .consumed()
        .consumed(state.store().as_ref(), &view.queue)
        .await
    {
        view.warning = Some(format!(
            "no worker has consumed queue `{}` yet: the job waits until one does (`pysaas worker --queues {}`)",
            view.queue, view.queue
        ));
    }
    view
}

fn field_error(index: usize, err: JobsError) -> FieldError {
    let (path, message) = match &err {
        JobsError::UnknownKind { .. } => ("kind".to_owned(), err.to_string()),
        JobsError::InvalidPayload { path, message, .. } => (
            crate::error::payload_path(path),
            crate::error::humane(message),
        ),
        JobsError::InvalidField { field, message } => ((*field).to_owned(), message.clone()),
        other => (String::new(), other.to_string()),
    };
    FieldError {
        index: Some(index),
        path: format!("jobs[{index}].{path}"),
        message,
    }
}

/// One job.
#[utoipa::path(get, path = "/v1/jobs/{id}", operation_id = "getJob", tag = "jobs", params(("id" = String, Path, description = "Job id")),
    responses((status = 200, body = JobView), (status = 404, description = "No such job", content_type = "application/problem+json")))]
pub(crate) async fn get(
    State(state): State<AppState>,
    TenantOf(tenant, _): TenantOf<JobsRead>,
    Path(id): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    let id = super::parse_id("job", &id)?;
    let job = state
        .store()
        .get(&tenant, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no job `{id}`")))?;
    Ok(Json(job.into()))
}

/// List jobs, newest first, with keyset pagination.
#[utoipa::path(get, path = "/v1/jobs", operation_id = "listJobs", tag = "jobs", params(ListParams),
    responses((status = 200, body = JobPage), (status = 422, description = "Invalid filter", content_type = "application/problem+json")))]
pub(crate) async fn list(
    State(state): State<AppState>,
    TenantOf(tenant, _): TenantOf<JobsRead>,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<JobPage>, ApiError> {
    let Query(params) = params?;
    let limit = params.limit.unwrap_or(LIST_LIMIT_DEFAULT);
    if !(1..=LIST_LIMIT_MAX).contains(&limit) {
        return Err(JobsError::InvalidField {
            field: "limit",
            message: format!("must be between 1 and {LIST_LIMIT_MAX}"),
        }
        .into());
    }
    let before = params
        .cursor
        .as_deref()
        .map(|c| {
            Uuid::parse_str(c).map_err(|_| JobsError::InvalidField {
                field: "cursor",
                message: "not a cursor from a previous page".into(),
            })
        })
        .transpose()?;
    let payload = params.payload.as_deref().map(payload_filter).transpose()?;
    let filter = JobFilter {
        tenant_id: tenant,
        state: params.state,
        kind: params.kind,
        queue: params.queue,
        limit,
        before,
        payload,
    };
    let jobs = state.store().list(&filter).await?;
    let next_cursor = (jobs.len() as i64 == limit)
        .then(|| jobs.last().map(|j| j.id.to_string()))
        .flatten();
    Ok(Json(JobPage {
        jobs: jobs.into_iter().map(JobView::from).collect(),
        next_cursor,
    }))
}

fn transition(result: Transition, id: Uuid, action: &str) -> Result<Json<JobView>, ApiError> {
    match result {
        Transition::Done(job) => Ok(Json((*job).into())),
        Transition::NotFound => Err(ApiError::not_found(format!("no job `{id}`"))),
        Transition::Conflict(state) => Err(ApiError::conflict(format!(
            "cannot {action} a job that is {state}"
        ))
        .with("state", state.as_str())),
    }
}

/// Cancel a job that has not finished.
#[utoipa::path(post, path = "/v1/jobs/{id}/cancel", operation_id = "cancelJob", tag = "jobs", params(("id" = String, Path, description = "Job id")),
    responses((status = 200, body = JobView), (status = 404, description = "No such job", content_type = "application/problem+json"),
              (status = 409, description = "Already finished", content_type = "application/problem+json")))]
pub(crate) async fn cancel(
    State(state): State<AppState>,
    TenantOf(tenant, _): TenantOf<JobsWrite>,
    Path(id): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    let id = super::parse_id("job", &id)?;
    transition(state.store().cancel(&tenant, id).await?, id, "cancel")
}

/// Run a finished (succeeded, dead or cancelled) job again, as a new attempt.
#[utoipa::path(post, path = "/v1/jobs/{id}/retry", operation_id = "retryJob", tag = "jobs", params(("id" = String, Path, description = "Job id")),
    responses((status = 200, body = JobView), (status = 404, description = "No such job", content_type = "application/problem+json"),
              (status = 409, description = "Not finished", content_type = "application/problem+json")))]
pub(crate) async fn retry(
    State(state): State<AppState>,
    TenantOf(tenant, _): TenantOf<JobsWrite>,
    Path(id): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    let id = super::parse_id("job", &id)?;
    let result = state.store().retry(&tenant, id).await?;
    if let Transition::Done(job) = &result {
        pysaas_brokers::gauges::count_enqueued([job.as_ref()], "retry");
        if let Err(err) = state.dispatcher().dispatch(std::slice::from_ref(job)).await {
            tracing::warn!(error = %err, job_id = %id, "dispatch after retry failed");
        }
    }
    transition(result, id, "retry")
}

/// A `payload` query value: a JSON object of at most 8 plainly named, scalar members.
fn payload_filter(raw: &str) -> Result<serde_json::Map<String, serde_json::Value>, ApiError> {
    match serde_json::from_str(raw) {
        Ok(serde_json::Value::Object(wanted)) => checked_payload_filter(wanted, "payload"),
        _ => Err(JobsError::InvalidField {
            field: "payload",
            message: "must be a JSON object like {\"user_id\":42}".to_owned(),
        }
        .into()),
    }
}

/// A payload filter (`field` names it in errors): at most 8 plainly named, scalar members,
/// numbers normalised as stored payloads are.
fn checked_payload_filter(
    mut wanted: serde_json::Map<String, serde_json::Value>,
    field: &'static str,
) -> Result<serde_json::Map<String, serde_json::Value>, ApiError> {
    let bad = |message: &str| JobsError::InvalidField {
        field,
        message: message.to_owned(),
    };
    if wanted.len() > 8 {
        return Err(bad("at most 8 members").into());
    }
    for (key, value) in &mut wanted {
        let plain = !key.is_empty()
            && key.len() <= 64
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !plain {
            return Err(bad("member names are 1 to 64 letters, digits, `_` or `-`").into());
        }
        if value.is_object() || value.is_array() {
            return Err(bad("member values are strings, numbers, booleans or null").into());
        }
        pysaas_jobs::whole_floats_as_integers(value);
    }
    Ok(wanted)
}

/// Most jobs one bulk request acts on.
const BULK_LIMIT: i64 = 1000;
/// Most ids one bulk request may name.
const BULK_IDS_MAX: usize = 1000;

/// Retry, cancel or delete every job matching a filter (newest first, at most `limit` per
/// request), or the jobs `filter.ids` names (rows selected on a page). Only jobs in a state the action applies to match: retry takes dead and cancelled
/// ones (succeeded too when `filter.state` names it), delete finished ones, cancel unfinished
/// ones.
#[utoipa::path(post, path = "/v1/jobs/bulk", operation_id = "bulkJobs", tag = "jobs", request_body = BulkRequest,
    responses((status = 200, body = BulkResult)))]
pub(crate) async fn bulk(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<JobsWrite>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<BulkResult>, ApiError> {
    let tenant = principal.tenant_id.clone();
    let request: BulkRequest = parse_json(&body?)?;
    let limit = request.limit.unwrap_or(BULK_LIMIT);
    if !(1..=BULK_LIMIT).contains(&limit) {
        return Err(ApiError::invalid_field(
            format!("`limit` must be between 1 and {BULK_LIMIT}"),
            "limit",
            format!("1 to {BULK_LIMIT}"),
        ));
    }
    // Only the states the action applies to are listed (so every pass makes progress); retry
    // takes dead and cancelled jobs unless `succeeded` is asked for by name.
    let applicable: &[JobState] = match request.action {
        BulkVerb::Retry => &[JobState::Dead, JobState::Cancelled],
        BulkVerb::Delete => &[JobState::Succeeded, JobState::Dead, JobState::Cancelled],
        BulkVerb::Cancel => &[
            JobState::Queued,
            JobState::Scheduled,
            JobState::Retrying,
            JobState::Running,
        ],
    };
    let states = match request.filter.state {
        None => applicable.to_vec(),
        Some(s) if applicable.contains(&s) => vec![s],
        Some(JobState::Succeeded) if request.action == BulkVerb::Retry => vec![JobState::Succeeded],
        // A state the action does not apply to matches nothing to act on.
        Some(_) => Vec::new(),
    };
    let kind = request.filter.kind.clone().filter(|k| !k.is_empty());
    let queue = request.filter.queue.clone().filter(|q| !q.is_empty());
    let payload = request
        .filter
        .payload
        .clone()
        .map(|p| checked_payload_filter(p, "filter.payload"))
        .transpose()?;
    // As the store's containment test: numbers equal by value (9 and 9.0), other values exactly.
    let same = |a: &serde_json::Value, b: &serde_json::Value| match (a, b) {
        (serde_json::Value::Number(x), serde_json::Value::Number(y)) => {
            x == y || (x.as_f64().is_some() && x.as_f64() == y.as_f64())
        }
        _ => a == b,
    };
    let holds = |job: &Job| {
        payload.as_ref().is_none_or(|p| {
            p.iter()
                .all(|(k, v)| job.payload.get(k).is_some_and(|have| same(have, v)))
        })
    };
    let jobs = match &request.filter.ids {
        Some(ids) => {
            if ids.len() > BULK_IDS_MAX {
                return Err(ApiError::invalid_field(
                    format!("`filter.ids` names at most {BULK_IDS_MAX} jobs"),
                    "filter.ids",
                    format!("at most {BULK_IDS_MAX} ids"),
                ));
            }
            let mut jobs = Vec::new();
            for id in ids
                .iter()
                .take(usize::try_from(limit).unwrap_or(usize::MAX))
            {
                // Another tenant's id is not found: it matches nothing.
                if let Some(job) = state.store().get(&tenant, *id).await? {
                    let wanted = states.contains(&job.state)
                        && kind.as_ref().is_none_or(|k| *k == job.kind)
                        && queue.as_ref().is_none_or(|q| *q == job.queue)
                        && holds(&job);
                    if wanted {
                        jobs.push(job);
                    }
                }
            }
            jobs
        }
        None => {
            let mut jobs = Vec::new();
            for state_filter in states {
                let remaining = limit - i64::try_from(jobs.len()).unwrap_or(i64::MAX);
                if remaining <= 0 {
                    break;
                }
                let filter = JobFilter {
                    tenant_id: tenant.clone(),
                    state: Some(state_filter),
                    kind: kind.clone(),
                    queue: queue.clone(),
                    limit: remaining,
                    before: None,
                    payload: payload.clone(),
                };
                jobs.extend(state.store().list(&filter).await?);
            }
            jobs
        }
    };
    let finished = |state: JobState| state.is_finished();
    let store = state.store();
    let changed = match request.action {
        BulkVerb::Delete => {
            let ids: Vec<Uuid> = jobs
                .iter()
                .filter(|j| finished(j.state))
                .map(|j| j.id)
                .collect();
            store.delete_finished(&tenant, &ids).await?
        }
        BulkVerb::Cancel => {
            let mut changed = 0;
            for job in jobs.iter().filter(|j| !finished(j.state)) {
                if matches!(store.cancel(&tenant, job.id).await?, Transition::Done(_)) {
                    changed += 1;
                }
            }
            changed
        }
        BulkVerb::Retry => {
            let mut retried = Vec::new();
            for job in jobs.iter().filter(|j| finished(j.state)) {
                if let Transition::Done(job) = store.retry(&tenant, job.id).await? {
                    retried.push(*job);
                }
            }
            pysaas_brokers::gauges::count_enqueued(retried.iter(), "retry");
            if let Err(err) = state.dispatcher().dispatch(&retried).await {
                tracing::warn!(error = %err, jobs = retried.len(), "dispatch after bulk retry failed");
            }
            retried.len() as u64
        }
    };
    let matched = jobs.len() as u64;
    let fact = BulkAction {
        action: request.action.as_str().to_owned(),
        matched,
        changed,
        state: request.filter.state.map(|s| s.as_str().to_owned()),
        kind,
        queue,
        ids: request.filter.ids.as_ref().map(|ids| ids.len() as u64),
        by: Some(principal.actor()),
    };
    // Once done (the action spans many transactions; each job's move has its own event).
    super::record_after(&state, &tenant, BULK_ACTION, "jobs", &fact).await;
    Ok(Json(BulkResult {
        action: request.action,
        matched,
        changed,
        more: i64::try_from(matched).unwrap_or(i64::MAX) >= limit,
    }))
}

#[cfg(test)]
mod tests {
    use super::valid_queue_name;

    #[test]
    fn queue_names() {
        for ok in ["default", "billing", "a", "eu-west.billing_2"] {
            assert!(valid_queue_name(ok), "{ok}");
        }
        for bad in ["", "Billing", "-x", "a b", "a/b", &"x".repeat(65)] {
            assert!(!valid_queue_name(bad), "{bad}");
        }
    }
}
