//! Execution rate limits, kept in the store so that every worker process shares them: each
//! limit's GCRA state (its theoretical arrival time), and the grants of jobs that were put back
//! to wait for the start they reserved (so that they do not reserve another when they return).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use pysaas_jobs::Rate;
use uuid::Uuid;

use crate::{Result, StoreError};

/// Reserved starts, and the store's time when they were reserved.
pub type Starts = (Vec<DateTime<Utc>>, DateTime<Utc>);

/// A claimed job put back to wait for its reserved start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deferral {
    /// The job (running, claimed by the caller).
    pub id: Uuid,
    /// The attempt it was claimed for: it runs as that attempt when it returns.
    pub attempt: i32,
    /// When it is queued again: a little before its start, so that it is back in a worker
    /// when its turn comes.
    pub run_at: DateTime<Utc>,
    /// Its reserved start.
    pub start_at: DateTime<Utc>,
}

/// Reservations of rate-limited starts.
#[async_trait]
pub trait RateLimits: Send + Sync {
    /// Reserves `n` consecutive starts of `rate` under `key` (GCRA); returns each one's earliest
    /// start, by the store's clock, and that clock's time now.
    async fn reserve_starts(&self, key: &str, rate: &Rate, n: u32) -> Result<Starts>;

    /// Puts running jobs claimed by `worker_id` back as `scheduled` until their reserved starts,
    /// without counting the attempt, each with a grant for the attempt it will run as; returns
    /// how many it put back (a job cancelled or rescued meanwhile is left alone).
    async fn defer_to_starts(&self, worker_id: &str, deferrals: &[Deferral]) -> Result<u64>;

    /// Takes (removes) the grants of these `(job, attempt)` pairs; returns the jobs that held
    /// one, with the start each reserved before it was put back.
    async fn take_grants(&self, jobs: &[(Uuid, i32)]) -> Result<Vec<(Uuid, DateTime<Utc>)>>;
}

/// The starts of `n` reservations from a limit's state after it took them (`tat`) and the
/// store's clock (`now`), both in microseconds since the epoch; and `now` itself.
pub(crate) fn starts_of(rate: &Rate, tat: i64, now: i64, n: u32) -> Result<Starts> {
    let time = |micros: i64| {
        DateTime::from_timestamp_micros(micros)
            .ok_or_else(|| StoreError::Corrupt(format!("rate limit time {micros} out of range")))
    };
    let starts = pysaas_jobs::rate::slot_starts(rate, tat, now, n)
        .into_iter()
        .map(time)
        .collect::<Result<_>>()?;
    Ok((starts, time(now)?))
}
