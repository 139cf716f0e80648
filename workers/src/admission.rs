//! Rate-limited starts: before claimed jobs reach their queue's buffer, each one limited by its
//! kind or queue reserves its next start under every limit that applies (in the store, shared by
//! all worker processes). A job whose start is due runs; one whose start is near waits in the
//! worker until that moment; one whose start lies further ahead goes back to `scheduled` until
//! shortly before it, its attempt not counted, with a grant holding its start, so that it does
//! not reserve again when it returns and then waits in a worker for the exact moment. Jobs over
//! a limit wait; they never fail or spin. A job that returns more than half a second late (a
//! loaded machine) starts at once on its grant, so such delays can bring starts closer together.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use pysaas_brokers::store::Starts;
use pysaas_brokers::{Deferral, Delivery, JobStore};
use pysaas_jobs::{Rate, RateLimit};
use uuid::Uuid;

use crate::Handlers;

/// A reserved start this close is taken as due.
const DUE_WITHIN: TimeDelta = TimeDelta::milliseconds(5);
/// A job whose start is at most this far ahead waits in the worker; one further ahead is put
/// back until this long before its start (the promoter and a claim take well under it).
const HOLD_WITHIN: TimeDelta = TimeDelta::seconds(1);

/// What admission decided for a batch of claimed jobs.
#[derive(Debug, Default)]
pub(crate) struct Admitted {
    /// Jobs that may start now.
    pub(crate) now: Vec<Delivery>,
    /// Jobs to start after waiting this long in the worker.
    pub(crate) held: Vec<(Delivery, std::time::Duration)>,
}

/// The limits a worker enforces: those its kinds declare and those configured.
#[derive(Debug, Clone, Default)]
pub(crate) struct Limits {
    limits: Vec<RateLimit>,
}

impl Limits {
    pub(crate) fn new(handlers: &Handlers, configured: &[RateLimit]) -> Self {
        let mut limits: Vec<RateLimit> = handlers
            .registry()
            .specs()
            .flat_map(|spec| spec.rate_limits.iter().cloned())
            .collect();
        limits.extend(configured.iter().cloned());
        Limits { limits }
    }

    fn of<'a>(&'a self, kind: &'a str, queue: &'a str) -> impl Iterator<Item = &'a RateLimit> {
        self.limits.iter().filter(move |l| l.applies(kind, queue))
    }

    fn none_apply(&self, deliveries: &[Delivery]) -> bool {
        self.limits.is_empty()
            || deliveries
                .iter()
                .all(|d| self.of(&d.job.kind, &d.job.queue).next().is_none())
    }
}

/// Sorts claimed deliveries into those that may start now and those to hold in the worker
/// until their start; puts the others back to wait for theirs (acknowledging their messages: the
/// promoter publishes them again when they are due). If the store fails, the limited jobs are
/// released to their queue rather than run over a limit.
pub(crate) async fn admit(
    store: &Arc<dyn JobStore>,
    limits: &Limits,
    worker_id: &str,
    deliveries: Vec<Delivery>,
) -> Admitted {
    if limits.none_apply(&deliveries) {
        return Admitted {
            now: deliveries,
            held: Vec::new(),
        };
    }
    let (limited, now_ok): (Vec<Delivery>, Vec<Delivery>) = deliveries
        .into_iter()
        .partition(|d| limits.of(&d.job.kind, &d.job.queue).next().is_some());
    let mut admitted = Admitted {
        now: now_ok,
        held: Vec::new(),
    };
    match reserve(store, limits, &limited).await {
        Ok((starts, now)) => {
            let mut deferrals = Vec::new();
            let mut waiting = Vec::new();
            for (delivery, start) in limited.into_iter().zip(starts) {
                if start <= now + DUE_WITHIN {
                    admitted.now.push(delivery);
                } else if start <= now + HOLD_WITHIN {
                    let wait = (start - now).to_std().unwrap_or_default();
                    admitted.held.push((delivery, wait));
                } else {
                    deferrals.push(Deferral {
                        id: delivery.job.id,
                        attempt: delivery.job.attempts,
                        run_at: start - HOLD_WITHIN / 2,
                        start_at: start,
                    });
                    waiting.push(delivery);
                }
            }
            defer(store, worker_id, &deferrals, waiting).await;
        }
        Err(err) => {
            let ids: Vec<Uuid> = limited.iter().map(|d| d.job.id).collect();
            tracing::warn!(error = %err, jobs = ids.len(), "reserving rate-limited starts failed; releasing the jobs to their queue");
            if let Err(err) = store.release(worker_id, &ids).await {
                tracing::warn!(error = %err, "release failed; the rescuer will re-queue them when their leases expire");
            }
        }
    }
    admitted
}

/// Each limited job's start — the one its grant holds (reserved before it was put back), else
/// the latest of its starts under every limit that applies — and the store's time now.
async fn reserve(
    store: &Arc<dyn JobStore>,
    limits: &Limits,
    limited: &[Delivery],
) -> pysaas_brokers::Result<Starts> {
    let pairs: Vec<(Uuid, i32)> = limited.iter().map(|d| (d.job.id, d.job.attempts)).collect();
    let granted: BTreeMap<Uuid, DateTime<Utc>> =
        store.take_grants(&pairs).await?.into_iter().collect();
    // Per limit key: its rate and the jobs that reserve a start under it, in claim order.
    let mut by_key: BTreeMap<String, (Rate, Vec<usize>)> = BTreeMap::new();
    for (i, d) in limited.iter().enumerate() {
        if granted.contains_key(&d.job.id) {
            continue;
        }
        for limit in limits.of(&d.job.kind, &d.job.queue) {
            by_key
                .entry(limit.key(&d.job.tenant_id))
                .or_insert_with(|| (limit.rate, Vec::new()))
                .1
                .push(i);
        }
    }
    let mut starts: Vec<Option<DateTime<Utc>>> = limited
        .iter()
        .map(|d| granted.get(&d.job.id).copied())
        .collect();
    let mut now = None;
    for (key, (rate, jobs)) in &by_key {
        let n = u32::try_from(jobs.len()).unwrap_or(u32::MAX);
        let (slots, store_now) = store.reserve_starts(key, rate, n).await?;
        now = Some(store_now);
        for (i, slot) in jobs.iter().zip(slots) {
            starts[*i] = Some(starts[*i].map_or(slot, |s| s.max(slot)));
        }
    }
    // Only granted jobs: the store's clock was not read; the grants' starts are by it, so compare
    // them with this process's clock (the same on one machine; NTP keeps machines close).
    let now = now.unwrap_or_else(Utc::now);
    Ok((starts.into_iter().map(|s| s.unwrap_or(now)).collect(), now))
}

async fn defer(
    store: &Arc<dyn JobStore>,
    worker_id: &str,
    deferrals: &[Deferral],
    waiting: Vec<Delivery>,
) {
    if deferrals.is_empty() {
        return;
    }
    match store.defer_to_starts(worker_id, deferrals).await {
        Ok(n) => {
            tracing::debug!(
                deferred = n,
                "rate-limited jobs wait for their reserved starts"
            );
            for delivery in waiting {
                if let Some(ack) = delivery.ack {
                    if let Err(err) = ack.ack().await {
                        tracing::debug!(error = %err, "acknowledging a deferred job's message failed (its claim will fail harmlessly)");
                    }
                }
            }
        }
        Err(err) => {
            // Still running and leased to this worker: the rescuer re-queues them if the
            // release fails too.
            let ids: Vec<Uuid> = deferrals.iter().map(|d| d.id).collect();
            tracing::warn!(error = %err, jobs = ids.len(), "deferring rate-limited jobs failed; releasing them to their queue");
            if let Err(err) = store.release(worker_id, &ids).await {
                tracing::warn!(error = %err, "release failed; the rescuer will re-queue them when their leases expire");
            }
        }
    }
}
