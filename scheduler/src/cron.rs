//! The cron service (leader only): sleeps until the soonest tick, then fires every due schedule.
//!
//! Exactly once, twice over: each fire is one transaction that re-checks the leader's fencing
//! token and the schedule's `version`/`fired_through`, and each tick's job carries the
//! idempotency key `schedule:<name>:<tick>`, so even two leaders at once cannot make two jobs for
//! one tick.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use pysaas_brokers::{Dispatcher, FireResult, JobStore, Lease, ScheduleFire};
use pysaas_jobs::{JobState, KindRegistry, NewJob, Schedule};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Schedules fired per pass at most (the next pass follows at once when there were more).
const DUE_BATCH: i64 = 100;
/// Longest sleep between passes, so that schedules created or changed over the API are seen.
pub const MAX_IDLE: Duration = Duration::from_millis(500);

/// Runs the cron service while `lease` holds one; returns when `shutdown` is cancelled or the
/// lease is gone.
pub async fn run(
    store: Arc<dyn JobStore>,
    dispatcher: Arc<dyn Dispatcher>,
    registry: KindRegistry,
    misfire_threshold: Duration,
    mut lease: watch::Receiver<Option<Lease>>,
    shutdown: CancellationToken,
) {
    let broker = dispatcher.name() != "store";
    loop {
        let Some(current) = lease.borrow_and_update().clone() else {
            return;
        };
        let started = Instant::now();
        let pause = match pass(&store, &registry, &current, misfire_threshold).await {
            Ok(Pass { fired, more, next }) => {
                if broker && !fired.is_empty() {
                    if let Err(err) = dispatcher.dispatch(&fired).await {
                        tracing::warn!(error = %err, "fired jobs not announced; the relay will");
                    }
                }
                match (more, next) {
                    (true, _) => Duration::ZERO,
                    (false, Some(wait)) => wait.saturating_sub(started.elapsed()).min(MAX_IDLE),
                    (false, None) => MAX_IDLE,
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, "cron pass failed");
                MAX_IDLE
            }
        };
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return,
            changed = lease.changed() => if changed.is_err() { return },
            _ = tokio::time::sleep(pause) => {}
        }
    }
}

struct Pass {
    /// Jobs created queued (to announce to a broker).
    fired: Vec<pysaas_jobs::Job>,
    /// More schedules were due than one batch.
    more: bool,
    /// Time until the soonest next tick.
    next: Option<Duration>,
}

async fn pass(
    store: &Arc<dyn JobStore>,
    registry: &KindRegistry,
    lease: &Lease,
    misfire_threshold: Duration,
) -> pysaas_brokers::Result<Pass> {
    let now = store.now().await?;
    let due = store.due_schedules(now, DUE_BATCH).await?;
    let more = due.len() as i64 == DUE_BATCH;
    let mut fired = Vec::new();
    for schedule in due {
        let fire = plan(registry, &schedule, now, misfire_threshold);
        let ticks = fire.jobs.len();
        match store.fire_schedule(lease, fire).await? {
            FireResult::Fired(inserted) => {
                let created = inserted.iter().filter(|i| i.created).count();
                let (tenant, name) = (&schedule.tenant_id, &schedule.spec.name);
                match ticks {
                    0 => {}
                    1 => tracing::debug!(%tenant, schedule = %name, created, "schedule fired"),
                    _ => {
                        tracing::info!(%tenant, schedule = %name, ticks, created, "schedule caught up on missed ticks")
                    }
                }
                metrics::counter!("pysaas_schedule_ticks_total", "tenant" => schedule.tenant_id.clone(), "schedule" => schedule.spec.name.clone())
                    .increment(created as u64);
                pysaas_brokers::gauges::count_enqueued(
                    inserted.iter().filter(|i| i.created).map(|i| &i.job),
                    "cron",
                );
                fired.extend(
                    inserted
                        .into_iter()
                        .filter(|i| i.created && i.job.state == JobState::Queued)
                        .map(|i| i.job),
                );
            }
            FireResult::Stale => {
                tracing::debug!(schedule = %schedule.spec.name, "schedule changed meanwhile; re-evaluated next pass");
            }
            FireResult::NotLeader => {
                tracing::warn!(token = lease.token, "lease lost; not firing as leader");
                return Ok(Pass {
                    fired,
                    more: false,
                    next: None,
                });
            }
        }
    }
    let next = store
        .next_schedule_fire()
        .await?
        .map(|at| (at - now).to_std().unwrap_or(Duration::ZERO));
    Ok(Pass { fired, more, next })
}

/// What to record for a due schedule at `now`: the ticks its misfire policy fires, one job each.
/// A schedule whose definition no longer works (a kind removed in a deploy) has its ticks
/// skipped, with an error logged, rather than blocking the others.
pub fn plan(
    registry: &KindRegistry,
    schedule: &Schedule,
    now: DateTime<Utc>,
    misfire_threshold: Duration,
) -> ScheduleFire {
    let name = &schedule.spec.name;
    let fired_through = schedule.fired_through.max(now);
    let (jobs, next_fire_at) = match schedule.spec.cron_schedule() {
        Ok(cron) => {
            let ticks = cron.due(
                schedule.fired_through,
                now,
                schedule.spec.policy(),
                misfire_threshold,
            );
            let jobs: Result<Vec<NewJob>, _> = ticks
                .iter()
                .map(|tick| schedule.spec.new_job(registry, &schedule.tenant_id, *tick))
                .collect();
            let jobs = jobs.unwrap_or_else(|err| {
                tracing::error!(schedule = %name, error = %err, ticks = ticks.len(), "schedule ticks skipped: its job is invalid");
                metrics::counter!("pysaas_schedule_errors_total", "tenant" => schedule.tenant_id.clone(), "schedule" => name.clone()).increment(1);
                Vec::new()
            });
            (jobs, cron.next_after(fired_through))
        }
        Err(err) => {
            // Parked (no next tick) until its definition is fixed.
            tracing::error!(schedule = %name, error = %err, "schedule cannot be evaluated; parked");
            (Vec::new(), None)
        }
    };
    ScheduleFire {
        tenant_id: schedule.tenant_id.clone(),
        name: name.clone(),
        version: schedule.version,
        previous_fired_through: schedule.fired_through,
        fired_through,
        next_fire_at,
        jobs,
    }
}
