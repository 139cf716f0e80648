//! Queues, kinds, health, readiness and metrics.

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::auth::{Admin, Any, Authorized, JobsRead, Principal, TenantOf};
use crate::dto::{
    Health, KindList, KindView, QueueList, QueuePause, QueueView, WorkerList, WorkerView,
};
use crate::error::ApiError;
use crate::AppState;

/// A worker that has not reported for this long is shown as lost (heartbeats come every 10 s
/// by default).
const WORKER_LOST_AFTER: chrono::TimeDelta = chrono::TimeDelta::seconds(60);

/// The worker processes serving this deployment. They serve every tenant (their hosts, queues
/// and load are the operator's business), so only the admins of the operator's tenant — the
/// `default` tenant, which `pysaas dev` and `admin create-key` use — may list them; a signed-up
/// tenant's owner may not.
#[utoipa::path(get, path = "/v1/workers", operation_id = "listWorkers", tag = "queues", responses((status = 200, body = WorkerList)))]
pub(crate) async fn workers(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<Admin>,
) -> Result<Json<WorkerList>, ApiError> {
    operator_only(&principal, "worker processes are shown")?;
    let now = state.store().now().await?;
    let workers = state.store().workers().await?;
    Ok(Json(WorkerList {
        workers: workers
            .into_iter()
            .map(|w| WorkerView {
                status: if now - w.last_seen > WORKER_LOST_AFTER {
                    "lost"
                } else {
                    "live"
                }
                .into(),
                id: w.id,
                host: w.host,
                pid: w.pid,
                version: w.version,
                queues: w.queues,
                concurrency: w.concurrency,
                busy: w.busy,
                started_at: w.started_at,
                last_seen: w.last_seen,
            })
            .collect(),
    }))
}

/// Refuses (403) a principal that is not an admin of the operator's tenant (`default`): what
/// `what` does concerns every tenant.
fn operator_only(principal: &Principal, what: &str) -> Result<(), ApiError> {
    if principal.tenant_id == pysaas_jobs::DEFAULT_TENANT {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        format!("{what} to the operator's admins only (the `default` tenant)"),
    ))
}

fn queue_name(name: &str) -> Result<(), ApiError> {
    if pysaas_jobs::valid_queue_name(name) {
        return Ok(());
    }
    Err(ApiError::unprocessable(format!(
        "`{name}` is not a queue name: 1 to 64 of a-z, 0-9, `.`, `_`, `-`, a letter or digit first"
    )))
}

/// Pause a queue: within a second no worker claims from it, on every transport; jobs still
/// enqueue and wait. Queues serve every tenant, so only the operator's admins (the `default`
/// tenant) may pause one. The pause is kept in the store and outlives restarts.
#[utoipa::path(post, path = "/v1/queues/{name}/pause", operation_id = "pauseQueue", tag = "queues",
    params(("name" = String, Path, description = "Queue name", pattern = r"^[a-z0-9][a-z0-9._-]{0,63}$")),
    responses((status = 200, body = QueuePause),
        (status = 403, description = "Not an admin of the operator's tenant", content_type = "application/problem+json"),
        (status = 422, description = "Not a queue name", content_type = "application/problem+json")))]
pub(crate) async fn pause_queue(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<Admin>,
    Path(name): Path<String>,
) -> Result<Json<QueuePause>, ApiError> {
    set_paused(&state, &principal, name, true).await
}

/// Resume a paused queue: workers claim from it again within a second.
#[utoipa::path(post, path = "/v1/queues/{name}/resume", operation_id = "resumeQueue", tag = "queues",
    params(("name" = String, Path, description = "Queue name", pattern = r"^[a-z0-9][a-z0-9._-]{0,63}$")),
    responses((status = 200, body = QueuePause),
        (status = 403, description = "Not an admin of the operator's tenant", content_type = "application/problem+json"),
        (status = 422, description = "Not a queue name", content_type = "application/problem+json")))]
pub(crate) async fn resume_queue(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<Admin>,
    Path(name): Path<String>,
) -> Result<Json<QueuePause>, ApiError> {
    set_paused(&state, &principal, name, false).await
}

/// Pauses or resumes `queue` for the operator; answers with the queue's pause as it now stands.
async fn set_paused(
    state: &AppState,
    principal: &Principal,
    queue: String,
    paused: bool,
) -> Result<Json<QueuePause>, ApiError> {
    operator_only(principal, "queues are paused and resumed")?;
    queue_name(&queue)?;
    let by = principal.actor();
    let changed = if paused {
        state.store().pause_queue(&queue, &by).await?
    } else {
        state.store().resume_queue(&queue).await?
    };
    if changed {
        tracing::info!(queue = %queue, by = %by, paused, "queue pause changed");
    }
    let pause = state
        .store()
        .paused_queues()
        .await?
        .into_iter()
        .find(|p| p.queue == queue);
    Ok(Json(QueuePause {
        paused: pause.is_some(),
        paused_at: pause.as_ref().map(|p| p.paused_at),
        paused_by: pause.map(|p| p.paused_by),
        queue,
    }))
}

/// Per-queue counts by state and the age of the oldest queued job.
#[utoipa::path(get, path = "/v1/queues", operation_id = "listQueues", tag = "queues", responses((status = 200, body = QueueList)))]
pub(crate) async fn queues(
    State(state): State<AppState>,
    TenantOf(tenant, _): TenantOf<JobsRead>,
) -> Result<Json<QueueList>, ApiError> {
    let mut stats = state.store().queue_stats(Some(&tenant)).await?;
    let consumed = state.store().consumed_queues().await?;
    let paused = state.store().paused_queues().await?;
    let now = state.store().now().await?;
    // The operator sees a paused queue even before it holds any jobs (other tenants see the
    // flag on the queues they use, not the names of the rest).
    let operator = tenant == pysaas_jobs::DEFAULT_TENANT;
    for p in paused.iter().filter(|_| operator) {
        if !stats.iter().any(|s| s.queue == p.queue) {
            stats.push(pysaas_brokers::QueueStats {
                queue: p.queue.clone(),
                ..Default::default()
            });
        }
    }
    stats.sort_by(|a, b| a.queue.cmp(&b.queue));
    Ok(Json(QueueList {
        queues: stats
            .into_iter()
            .map(|s| {
                let seen = consumed.get(&s.queue).copied();
                let pause = paused.iter().find(|p| p.queue == s.queue);
                QueueView::new(s, now, seen, pause.map(|p| p.paused_at))
            })
            .collect(),
    }))
}

/// The job kinds this deployment accepts, with their payload schemas.
#[utoipa::path(get, path = "/v1/kinds", operation_id = "listKinds", tag = "jobs", responses((status = 200, body = KindList)))]
pub(crate) async fn kinds(
    State(state): State<AppState>,
    _caller: Authorized<Any>,
) -> Json<KindList> {
    let kinds = state
        .registry()
        .specs()
        .map(|spec| KindView {
            kind: spec.kind.to_owned(),
            queue: spec.queue.to_owned(),
            priority: spec.priority,
            timeout_ms: u64::try_from(spec.timeout.as_millis()).unwrap_or(u64::MAX),
            max_attempts: spec.retry.max_attempts,
            payload_schema: spec.schema.clone(),
            submittable: !spec.internal,
        })
        .collect();
    Json(KindList { kinds })
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", operation_id = "getHealth", tag = "system", security(()), responses((status = 200, body = Health)))]
pub(crate) async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

/// Readiness: the job store answers.
#[utoipa::path(get, path = "/readyz", operation_id = "getReadiness", tag = "system", security(()),
    responses((status = 200, body = Health), (status = 503, description = "Store unreachable", content_type = "application/problem+json")))]
pub(crate) async fn readyz(State(state): State<AppState>) -> Result<Json<Health>, ApiError> {
    state.store().ping().await.map_err(|err| {
        tracing::warn!(error = %err, "readiness check failed");
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "job store unreachable")
    })?;
    Ok(Json(Health {
        status: "ok".into(),
    }))
}

/// Prometheus metrics (text exposition format).
#[utoipa::path(get, path = "/metrics", operation_id = "getMetrics", tag = "system", security(()),
    responses((status = 200, content_type = "text/plain"),
              (status = 404, description = "Not served on this port (see metrics_listen)", content_type = "application/problem+json")))]
pub(crate) async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let Some(handle) = state.metrics() else {
        return Err(ApiError::not_found(
            "metrics are not served on the public API (they name every tenant's queues): scrape metrics_listen (PYSAAS_METRICS_LISTEN), or set api.public_metrics",
        ));
    };
    if let Err(err) = state.queue_gauges().refresh(state.store().as_ref()).await {
        tracing::warn!(error = %err, "queue depth gauges not refreshed");
    }
    handle.run_upkeep();
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        handle.render(),
    )
        .into_response())
}
