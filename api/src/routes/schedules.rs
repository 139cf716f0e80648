//! `/v1/schedules`: cron schedules. The scheduler's leader fires them; here they are created,
//! changed, paused, resumed and triggered by hand.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use pysaas_jobs::{JobOptions, Schedule, ScheduleSource, ScheduleSpec};
use serde_json::Value;

use crate::auth::{JobsRead, SchedulesWrite, TenantOf};
use crate::dto::{
    CreateSchedule, CronPreview, CronTimes, JobView, ScheduleList, SchedulePatch, ScheduleView,
};
use crate::error::{parse_json, ApiError, FieldError};
use crate::AppState;

/// Attempts of a read-modify-write against concurrent changes before answering 409.
const UPDATE_ATTEMPTS: usize = 3;

fn not_found(name: &str) -> ApiError {
    ApiError::not_found(format!("no schedule `{name}`"))
}

fn location(name: &str) -> HeaderValue {
    HeaderValue::from_str(&format!("/v1/schedules/{name}"))
        .unwrap_or_else(|_| HeaderValue::from_static("/v1/schedules"))
}

async fn view(state: &AppState, schedule: Schedule) -> Result<ScheduleView, ApiError> {
    let now = state.store().now().await?;
    Ok(ScheduleView::new(schedule, now))
}

/// When a cron expression would fire next, in a time zone: what an editor shows before saving.
#[utoipa::path(post, path = "/v1/cron/preview", operation_id = "previewCron", tag = "schedules", request_body = CronPreview,
    responses((status = 200, body = CronTimes)))]
pub(crate) async fn preview(
    State(state): State<AppState>,
    _caller: crate::auth::Authorized<crate::auth::Any>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<CronTimes>, ApiError> {
    let request: CronPreview = parse_json(&body?)?;
    let count = request.count.unwrap_or(5);
    if !(1..=20).contains(&count) {
        return Err(ApiError::invalid_fields(
            "`count` must be between 1 and 20",
            vec![FieldError {
                index: None,
                path: "count".into(),
                message: "1 to 20".into(),
            }],
        ));
    }
    let timezone = request.timezone.unwrap_or_else(|| "UTC".into());
    let cron = pysaas_jobs::CronSchedule::parse_fields(&request.cron, &timezone)?;
    let now = state.store().now().await?;
    Ok(Json(CronTimes {
        next_fire_times: cron.upcoming(now, usize::from(count)),
    }))
}

/// The tenant's schedules with their next five fire times.
#[utoipa::path(get, path = "/v1/schedules", operation_id = "listSchedules", tag = "schedules",
    responses((status = 200, body = ScheduleList)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    TenantOf(tenant, _): TenantOf<JobsRead>,
) -> Result<Json<ScheduleList>, ApiError> {
    let now = state.store().now().await?;
    let schedules = state
        .store()
        .list_schedules(&tenant)
        .await?
        .into_iter()
        .map(|s| ScheduleView::new(s, now))
        .collect();
    Ok(Json(ScheduleList { schedules }))
}

/// Create a schedule. Ticks before its creation never fire.
#[utoipa::path(post, path = "/v1/schedules", operation_id = "createSchedule", tag = "schedules", request_body = CreateSchedule,
    responses(
        (status = 201, body = ScheduleView),
        (status = 409, description = "A schedule of that name exists", content_type = "application/problem+json"),
        (status = 422, description = "Invalid field (cron, timezone, kind, payload, …), named in `errors`", content_type = "application/problem+json"),
    ))]
pub(crate) async fn create(
    State(state): State<AppState>,
    TenantOf(tenant, _): TenantOf<SchedulesWrite>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let spec: ScheduleSpec = parse_json::<CreateSchedule>(&body?)?.into();
    let cron = spec.validate(state.registry())?;
    let now = state.store().now().await?;
    let schedule = Schedule::new(&tenant, spec, ScheduleSource::Api, &cron, now);
    if !state.store().create_schedule(&schedule).await? {
        return Err(ApiError::conflict(format!(
            "a schedule named `{}` already exists",
            schedule.spec.name
        )));
    }
    let name = schedule.spec.name.clone();
    let stored = state
        .store()
        .get_schedule(&tenant, &name)
        .await?
        .ok_or_else(|| not_found(&name))?;
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location(&name))],
        Json(view(&state, stored).await?),
    )
        .into_response())
}

/// One schedule with its next five fire times and its last fire.
#[utoipa::path(get, path = "/v1/schedules/{name}", operation_id = "getSchedule", tag = "schedules", params(("name" = String, Path, description = "Schedule name")),
    responses((status = 200, body = ScheduleView), (status = 404, description = "No such schedule", content_type = "application/problem+json")))]
pub(crate) async fn get(
    State(state): State<AppState>,
    TenantOf(tenant, _): TenantOf<JobsRead>,
    Path(name): Path<String>,
) -> Result<Json<ScheduleView>, ApiError> {
    let schedule = state
        .store()
        .get_schedule(&tenant, &name)
        .await?
        .ok_or_else(|| not_found(&name))?;
    Ok(Json(view(&state, schedule).await?))
}

/// Applies an RFC 7396 merge patch to `target`.
fn merge_patch(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(target), Value::Object(patch)) => {
            for (key, value) in patch {
                if value.is_null() {
                    target.remove(key);
                } else {
                    merge_patch(target.entry(key.clone()).or_insert(Value::Null), value);
                }
            }
        }
        (target, patch) => *target = patch.clone(),
    }
}

/// Reads, changes and writes a schedule, retrying when another change got in between.
async fn modify(
    state: &AppState,
    tenant: &str,
    name: &str,
    change: impl Fn(&mut Schedule, chrono::DateTime<chrono::Utc>) -> Result<(), ApiError>,
) -> Result<Json<ScheduleView>, ApiError> {
    for _ in 0..UPDATE_ATTEMPTS {
        let mut schedule = state
            .store()
            .get_schedule(tenant, name)
            .await?
            .ok_or_else(|| not_found(name))?;
        let now = state.store().now().await?;
        change(&mut schedule, now)?;
        if let Some(updated) = state.store().update_schedule(&schedule).await? {
            return Ok(Json(ScheduleView::new(updated, now)));
        }
    }
    Err(ApiError::conflict(format!(
        "schedule `{name}` kept changing; try again"
    )))
}

/// Change a schedule with a JSON merge patch (RFC 7396) of its fields. A new `cron` or
/// `timezone` applies from now on. The name cannot change.
#[utoipa::path(patch, path = "/v1/schedules/{name}", operation_id = "updateSchedule", tag = "schedules", params(("name" = String, Path, description = "Schedule name")),
    request_body(content = SchedulePatch, content_type = "application/merge-patch+json", description = "Fields of the schedule to change"),
    responses(
        (status = 200, body = ScheduleView),
        (status = 404, description = "No such schedule", content_type = "application/problem+json"),
        (status = 422, description = "Invalid field, named in `errors`", content_type = "application/problem+json"),
    ))]
pub(crate) async fn patch(
    State(state): State<AppState>,
    TenantOf(tenant, _): TenantOf<SchedulesWrite>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<ScheduleView>, ApiError> {
    let patch: Value = parse_json(&body?)?;
    let Value::Object(fields) = &patch else {
        return Err(ApiError::unprocessable(
            "a schedule patch is a JSON object of the fields to change",
        ));
    };
    if fields
        .get("name")
        .is_some_and(|n| n.as_str() != Some(name.as_str()))
    {
        return Err(ApiError::invalid_fields(
            "a schedule cannot be renamed; create a new one and delete this one",
            vec![FieldError {
                index: None,
                path: "name".into(),
                message: "cannot change".into(),
            }],
        ));
    }
    // `kind` and `payload` change together: a payload is only valid for its kind, so a patch
    // that names one without the other could only be checked against the stored schedule.
    for (present, missing) in [("kind", "payload"), ("payload", "kind")] {
        if fields.contains_key(present) && !fields.contains_key(missing) {
            return Err(ApiError::invalid_fields(
                format!(
                    "`kind` and `payload` change together: `{present}` came without `{missing}`"
                ),
                vec![FieldError {
                    index: None,
                    path: missing.into(),
                    message: format!("required with `{present}`"),
                }],
            ));
        }
    }
    if fields.get("payload").is_some_and(Value::is_null) {
        return Err(ApiError::invalid_fields(
            "`payload` cannot be removed: it is the kind's document (send `{}` for none)",
            vec![FieldError {
                index: None,
                path: "payload".into(),
                message: "must be a JSON object".into(),
            }],
        ));
    }
    let registry = state.registry().clone();
    modify(&state, &tenant, &name, move |schedule, now| {
        let mut merged = serde_json::to_value(&schedule.spec)
            .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        merge_patch(&mut merged, &patch);
        // The payload is the kind's document, replaced as a whole rather than merged member by
        // member (a merged payload would mix two kinds' fields).
        if let (Some(payload), Some(target)) = (patch.get("payload"), merged.as_object_mut()) {
            target.insert("payload".into(), payload.clone());
        }
        pysaas_jobs::whole_floats_as_integers(&mut merged);
        let spec: ScheduleSpec = parse_json(merged.to_string().as_bytes())?;
        spec.validate(&registry)?;
        let paused = spec.paused;
        schedule.apply_spec(spec, now)?;
        schedule.set_paused(paused, now)?;
        Ok(())
    })
    .await
}

/// Delete a schedule. Jobs it already enqueued are kept.
#[utoipa::path(delete, path = "/v1/schedules/{name}", operation_id = "deleteSchedule", tag = "schedules", params(("name" = String, Path, description = "Schedule name")),
    responses((status = 204, description = "Deleted"), (status = 404, description = "No such schedule", content_type = "application/problem+json")))]
pub(crate) async fn delete(
    State(state): State<AppState>,
    TenantOf(tenant, _): TenantOf<SchedulesWrite>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    if state.store().delete_schedule(&tenant, &name).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(not_found(&name))
    }
}

/// Pause a schedule: it fires nothing until resumed.
#[utoipa::path(post, path = "/v1/schedules/{name}/pause", operation_id = "pauseSchedule", tag = "schedules", params(("name" = String, Path, description = "Schedule name")),
    responses((status = 200, body = ScheduleView), (status = 404, description = "No such schedule", content_type = "application/problem+json")))]
pub(crate) async fn pause(
    State(state): State<AppState>,
    TenantOf(tenant, _): TenantOf<SchedulesWrite>,
    Path(name): Path<String>,
) -> Result<Json<ScheduleView>, ApiError> {
    modify(
        &state,
        &tenant,
        &name,
        |s, now| Ok(s.set_paused(true, now)?),
    )
    .await
}

/// Resume a paused schedule. Ticks missed while paused are not fired.
#[utoipa::path(post, path = "/v1/schedules/{name}/resume", operation_id = "resumeSchedule", tag = "schedules", params(("name" = String, Path, description = "Schedule name")),
    responses((status = 200, body = ScheduleView), (status = 404, description = "No such schedule", content_type = "application/problem+json")))]
pub(crate) async fn resume(
    State(state): State<AppState>,
    TenantOf(tenant, _): TenantOf<SchedulesWrite>,
    Path(name): Path<String>,
) -> Result<Json<ScheduleView>, ApiError> {
    modify(&state, &tenant, &name, |s, now| {
        Ok(s.set_paused(false, now)?)
    })
    .await
}

/// Enqueue the schedule's job now, outside its ticks (works while paused too).
#[utoipa::path(post, path = "/v1/schedules/{name}/trigger", operation_id = "triggerSchedule", tag = "schedules", params(("name" = String, Path, description = "Schedule name")),
    responses((status = 202, body = JobView), (status = 404, description = "No such schedule", content_type = "application/problem+json"),
              (status = 422, description = "The schedule's job is no longer valid", content_type = "application/problem+json")))]
pub(crate) async fn trigger(
    State(state): State<AppState>,
    TenantOf(tenant, _): TenantOf<SchedulesWrite>,
    Path(name): Path<String>,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    let schedule = state
        .store()
        .get_schedule(&tenant, &name)
        .await?
        .ok_or_else(|| not_found(&name))?;
    let spec = &schedule.spec;
    let job = state.registry().new_job(
        &tenant,
        &spec.kind,
        spec.payload.clone(),
        JobOptions {
            queue: spec.queue.clone(),
            priority: spec.priority,
            max_attempts: spec.max_attempts,
            request_id: super::jobs::request_id(&headers),
            ..JobOptions::default()
        },
    )?;
    let inserted = super::jobs::insert(&state, vec![job])
        .await?
        .pop()
        .ok_or_else(|| {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "insert returned nothing")
        })?;
    state
        .store()
        .record_trigger(&tenant, &name, inserted.job.id, inserted.job.created_at)
        .await?;
    Ok((StatusCode::ACCEPTED, Json(JobView::from(inserted.job))).into_response())
}
