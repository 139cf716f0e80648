//! Per-minute statistics for the overview's charts, from the workers' rollups in the store.

use std::collections::BTreeMap;

use axum::extract::{Query, State};
use axum::Json;
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use pysaas_brokers::store::stats::{minute_of, wait_quantile_ms, WAIT_BUCKETS};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::{JobsRead, TenantOf};
use crate::error::ApiError;
use crate::AppState;

/// A worker that has not reported for this long no longer counts as live.
const LIVE_WITHIN: TimeDelta = TimeDelta::seconds(60);
/// The per-queue rates are over this many minutes.
const RATE_MINUTES: i64 = 5;

/// How far back, and in which steps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Window {
    /// The last hour, minute by minute.
    #[default]
    Hour,
    /// The last day, in quarter hours.
    Day,
}

/// `GET /v1/stats` parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct StatsQuery {
    /// `hour` (default: 60 one-minute steps) or `day` (96 quarter-hour steps).
    #[param(value_type = Option<Window>)]
    pub(crate) window: Option<Window>,
}

/// One step of the charts.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub(crate) struct StatsPoint {
    /// Start of the step.
    pub(crate) at: DateTime<Utc>,
    /// Attempts that succeeded in it.
    pub(crate) succeeded: i64,
    /// Attempts that failed in it (retried later, or dead).
    pub(crate) failed: i64,
    /// Median wait from due to start, ms (the upper bound of its histogram bucket; `null`
    /// without attempts).
    pub(crate) wait_p50_ms: Option<u64>,
    /// 95th percentile of that wait, ms.
    pub(crate) wait_p95_ms: Option<u64>,
}

/// A queue's recent throughput.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub(crate) struct QueueRate {
    /// Queue.
    pub(crate) queue: String,
    /// Succeeded attempts per minute, over the last five minutes.
    pub(crate) succeeded_per_minute: f64,
    /// Failed attempts per minute, over the last five minutes.
    pub(crate) failed_per_minute: f64,
    /// Failed / all attempts over the window (`null` without attempts).
    pub(crate) failure_rate: Option<f64>,
}

/// The overview's statistics.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub(crate) struct StatsView {
    /// The window asked for.
    pub(crate) window: Window,
    /// Seconds per step.
    pub(crate) step_seconds: i64,
    /// Every step of the window, oldest first (steps without attempts included, as zeros).
    pub(crate) series: Vec<StatsPoint>,
    /// Per queue with attempts in the window, by name.
    pub(crate) queues: Vec<QueueRate>,
    /// Worker processes that reported within the last minute (the operator's tenant, `default`,
    /// only: they serve every tenant; `null` for the others).
    pub(crate) workers_live: Option<usize>,
}

/// Processed and failed attempts and the wait from due to start, per step over the last hour
/// or day; per-queue rates; live workers. Read from per-minute rollups the workers write every
/// few seconds (a primary-key range, never a scan of the jobs).
#[utoipa::path(get, path = "/v1/stats", operation_id = "getStats", tag = "queues", params(StatsQuery),
    responses((status = 200, body = StatsView),
              (status = 400, description = "Unknown parameter or window", content_type = "application/problem+json")))]
pub(crate) async fn stats(
    State(state): State<AppState>,
    TenantOf(tenant, _): TenantOf<JobsRead>,
    query: Result<Query<StatsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<StatsView>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let window = query.window.unwrap_or_default();
    let (steps, step): (i32, TimeDelta) = match window {
        Window::Hour => (60, TimeDelta::minutes(1)),
        Window::Day => (96, TimeDelta::minutes(15)),
    };
    let now = state.store().now().await?;
    // Steps aligned to their size, so that a quarter hour's figures do not shift every minute.
    let end = match window {
        Window::Hour => minute_of(now) + TimeDelta::minutes(1),
        Window::Day => {
            now.duration_trunc(TimeDelta::minutes(15)).unwrap_or(now) + TimeDelta::minutes(15)
        }
    };
    // The rates are over the last five whole minutes (the current one is still filling).
    let current = minute_of(now);
    let recent = current - TimeDelta::minutes(RATE_MINUTES);
    let start = end - step * steps;
    let rows = state.store().stats_since(&tenant, start).await?;
    let mut buckets = vec![(0i64, 0i64, [0i64; WAIT_BUCKETS]); usize::try_from(steps).unwrap_or(0)];
    let mut per_queue: BTreeMap<String, (i64, i64, i64, i64)> = BTreeMap::new();
    for row in &rows {
        let index = ((row.minute - start).num_seconds() / step.num_seconds())
            .clamp(0, i64::from(steps) - 1);
        let Some(slot) = usize::try_from(index).ok().and_then(|i| buckets.get_mut(i)) else {
            continue;
        };
        slot.0 += row.succeeded;
        slot.1 += row.failed;
        for (mine, n) in slot.2.iter_mut().zip(row.wait) {
            *mine += n;
        }
        let q = per_queue.entry(row.queue.clone()).or_default();
        q.0 += row.succeeded;
        q.1 += row.failed;
        if row.minute >= recent && row.minute < current {
            q.2 += row.succeeded;
            q.3 += row.failed;
        }
    }
    let series = buckets
        .iter()
        .enumerate()
        .map(|(i, (succeeded, failed, wait))| StatsPoint {
            at: start + step * i32::try_from(i).unwrap_or(0),
            succeeded: *succeeded,
            failed: *failed,
            wait_p50_ms: wait_quantile_ms(wait, 0.5),
            wait_p95_ms: wait_quantile_ms(wait, 0.95),
        })
        .collect();
    let queues = per_queue
        .into_iter()
        .map(|(queue, (ok, bad, recent_ok, recent_bad))| QueueRate {
            queue,
            succeeded_per_minute: recent_ok as f64 / RATE_MINUTES as f64,
            failed_per_minute: recent_bad as f64 / RATE_MINUTES as f64,
            failure_rate: (ok + bad > 0).then(|| bad as f64 / (ok + bad) as f64),
        })
        .collect();
    // Worker processes serve every tenant: how many run is the operator's to see.
    let workers_live = if tenant == pysaas_jobs::DEFAULT_TENANT {
        let workers = state.store().workers().await?;
        Some(
            workers
                .iter()
                .filter(|w| now - w.last_seen <= LIVE_WITHIN)
                .count(),
        )
    } else {
        None
    };
    Ok(Json(StatsView {
        window,
        step_seconds: step.num_seconds(),
        series,
        queues,
        workers_live,
    }))
}
