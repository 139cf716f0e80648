//! Queue-depth gauges: `pysaas_queue_depth{queue,state}` for the unfinished states and
//! `pysaas_queue_oldest_queued_age_seconds{queue}`, read with [`crate::JobReads::live_queue_stats`]
//! (partial indexes only). Published by the API on every scrape and by the scheduler leader every
//! few seconds (for processes without the API); every publisher reads the same store, so any of
//! them is right — aggregate with `max by (queue, state)`.

use std::collections::BTreeSet;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use pysaas_jobs::JobState;

use crate::{JobStore, QueueStats, Result};

/// Name of the counter of jobs entering `queued`, labelled `kind`, `queue` and `source`: `api`
/// (submitted ready to run), `promoted` (a delayed job or a retry whose time came), `cron` (fired
/// by a schedule), `retry` (a user's retry of a finished job), `rescued` (its worker was lost and
/// the lease expired), `released` (given back by a worker shutting down).
pub const JOBS_ENQUEUED: &str = "pysaas_jobs_enqueued_total";

/// Counts `jobs` (those now `queued`) as entering the queue from `source`.
pub fn count_enqueued<'a>(
    jobs: impl IntoIterator<Item = &'a pysaas_jobs::Job>,
    source: &'static str,
) {
    for job in jobs {
        if job.state == JobState::Queued {
            count_one_enqueued(&job.kind, &job.queue, source);
        }
    }
}

/// Counts one job of `kind` entering `queue` from `source`.
pub fn count_one_enqueued(kind: &str, queue: &str, source: &'static str) {
    metrics::counter!(JOBS_ENQUEUED, "kind" => kind.to_owned(), "queue" => queue.to_owned(), "source" => source)
        .increment(1);
}

/// Name of the depth gauge.
pub const QUEUE_DEPTH: &str = "pysaas_queue_depth";
/// Name of the oldest-queued-job age gauge.
pub const QUEUE_OLDEST_AGE: &str = "pysaas_queue_oldest_queued_age_seconds";

/// Unfinished states: reported even when empty, so a drained queue reads 0.
const LIVE_STATES: [JobState; 4] = [
    JobState::Scheduled,
    JobState::Queued,
    JobState::Running,
    JobState::Retrying,
];

/// Publishes the gauges and remembers which queues it published, so that a queue that emptied
/// (and left the statistics) reads 0 rather than its last value.
#[derive(Debug, Default)]
pub struct QueueGauges {
    seen: Mutex<BTreeSet<String>>,
}

fn set(queue: &str, counts: impl Fn(JobState) -> i64, age: f64) {
    for state in LIVE_STATES {
        metrics::gauge!(QUEUE_DEPTH, "queue" => queue.to_owned(), "state" => state.as_str())
            .set(counts(state) as f64);
    }
    metrics::gauge!(QUEUE_OLDEST_AGE, "queue" => queue.to_owned()).set(age);
}

impl QueueGauges {
    /// Registers the gauges' help texts with the installed recorder.
    pub fn describe() {
        metrics::describe_gauge!(
            QUEUE_DEPTH,
            "Jobs per queue in each unfinished state (scheduled, queued, running, retrying)"
        );
        metrics::describe_gauge!(
            QUEUE_OLDEST_AGE,
            metrics::Unit::Seconds,
            "Age of the oldest queued job per queue (0 when none is queued)"
        );
    }

    /// Publishes `stats` as of `now`.
    pub fn publish(&self, stats: &[QueueStats], now: DateTime<Utc>) {
        let current: BTreeSet<String> = stats.iter().map(|s| s.queue.clone()).collect();
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        for gone in seen.difference(&current) {
            set(gone, |_| 0, 0.0);
        }
        for queue in stats {
            let age = queue
                .oldest_queued_at
                .map(|t| (now - t).num_milliseconds().max(0) as f64 / 1000.0)
                .unwrap_or(0.0);
            set(
                &queue.queue,
                |s| queue.counts.get(&s).copied().unwrap_or(0),
                age,
            );
        }
        *seen = current;
    }

    /// Reads the store and publishes; returns how many queues.
    pub async fn refresh(&self, store: &dyn JobStore) -> Result<u64> {
        let now = store.now().await?;
        let stats = store.live_queue_stats().await?;
        self.publish(&stats, now);
        Ok(stats.len() as u64)
    }

    /// Sets every published gauge to 0 (a leader stepping down stops reporting).
    pub fn zero(&self) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        for queue in seen.iter() {
            set(queue, |_| 0, 0.0);
        }
        seen.clear();
    }
}
