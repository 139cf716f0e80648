//! Keeps leases on in-flight jobs alive, stops jobs this worker no longer holds (cancelled by a
//! user, or rescued after this worker was presumed dead), and records the queues it consumes.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pysaas_brokers::JobStore;
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

pub(crate) async fn run(
    store: Arc<dyn JobStore>,
    in_flight: InFlight,
    queues: Vec<String>,
    worker_id: String,
    lease: Duration,
    interval: Duration,
    stop: CancellationToken,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        // The API tells submitters of a queue nobody consumes; say that these are consumed.
        if let Err(err) = store.touch_consumed(&queues).await {
            tracing::warn!(error = %err, "recording consumed queues failed");
        }
        let ids = snapshot(&in_flight);
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
