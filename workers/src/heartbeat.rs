//! Keeps leases on in-flight jobs alive, stops jobs this worker no longer holds (cancelled by a
//! user, or rescued after this worker was presumed dead), and records the queues it consumes.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pysaas_brokers::{JobStore, WorkerInfo};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Jobs running in this process, each with the token that stops it.
pub(crate) type InFlight = Arc<Mutex<HashMap<Uuid, CancellationToken>>>;

pub(crate) fn snapshot(in_flight: &InFlight) -> Vec<Uuid> {
    in_flight
        .lock()
        .map(|m| m.keys().copied().collect())
        .unwrap_or_default()
}

/// The host this process runs on (`/proc/sys/kernel/hostname`, else `host`).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".into())
}

/// Every `interval`: reports this worker (`me`, with how many jobs it runs), records its queues
/// as consumed, and extends the leases of its jobs. At `stop` it removes its report.
pub(crate) async fn run(
    store: Arc<dyn JobStore>,
    in_flight: InFlight,
    me: WorkerInfo,
    lease: Duration,
    interval: Duration,
    stop: CancellationToken,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let worker_id = me.id.clone();
    loop {
        tokio::select! {
            _ = stop.cancelled() => {
                if let Err(err) = store.remove_worker(&worker_id).await {
                    tracing::debug!(error = %err, "removing this worker's report failed; it lapses");
                }
                return;
            }
            _ = ticker.tick() => {}
        }
        // The API tells submitters of a queue nobody consumes; say that these are consumed.
        if let Err(err) = store.touch_consumed(&me.queues).await {
            tracing::warn!(error = %err, "recording consumed queues failed");
        }
        let ids = snapshot(&in_flight);
        let report = WorkerInfo {
            busy: i32::try_from(ids.len()).unwrap_or(i32::MAX),
            ..me.clone()
        };
        if let Err(err) = store.report_worker(&report).await {
            tracing::warn!(error = %err, "reporting this worker failed");
        }
        if ids.is_empty() {
            continue;
        }
        match store.heartbeat(&worker_id, &ids, lease).await {
            Ok(held) => {
                let held: HashSet<Uuid> = held.into_iter().collect();
                let lost: Vec<Uuid> = ids.into_iter().filter(|id| !held.contains(id)).collect();
                if lost.is_empty() {
                    continue;
                }
                if let Ok(map) = in_flight.lock() {
                    for id in &lost {
                        if let Some(token) = map.get(id) {
                            tracing::info!(job_id = %id, "job no longer held by this worker (cancelled or rescued); stopping it");
                            token.cancel();
                        }
                    }
                }
            }
            Err(err) => tracing::warn!(error = %err, jobs = ids.len(), "heartbeat failed"),
        }
    }
}
