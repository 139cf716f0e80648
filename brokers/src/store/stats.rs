//! Per-minute job statistics: what finished per tenant, queue and minute, and how long attempts
//! waited to start once due — rolled up by the workers in memory and added to the store every
//! few seconds (never one write per job), read by the dashboard's overview.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, DurationRound, TimeDelta, Utc};

use crate::Result;

/// Upper bounds (milliseconds) of the wait histogram's buckets; a last bucket holds the rest.
pub const WAIT_BOUNDS_MS: [u64; 15] = [
    1, 2, 5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000,
];
/// Buckets of the wait histogram.
pub const WAIT_BUCKETS: usize = WAIT_BOUNDS_MS.len() + 1;

/// One tenant's, queue's and minute's finished attempts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MinuteStats {
    /// Tenant.
    pub tenant_id: String,
    /// Queue.
    pub queue: String,
    /// The minute (truncated).
    pub minute: DateTime<Utc>,
    /// Attempts that succeeded.
    pub succeeded: i64,
    /// Attempts that failed (retried later, or dead).
    pub failed: i64,
    /// How long attempts waited to start once due, by bucket of [`WAIT_BOUNDS_MS`].
    pub wait: [i64; WAIT_BUCKETS],
}

impl MinuteStats {
    /// Empty counts for `tenant_id`, `queue` and the minute holding `at`.
    pub fn new(tenant_id: &str, queue: &str, at: DateTime<Utc>) -> Self {
        MinuteStats {
            tenant_id: tenant_id.to_owned(),
            queue: queue.to_owned(),
            minute: minute_of(at),
            succeeded: 0,
            failed: 0,
            wait: [0; WAIT_BUCKETS],
        }
    }

    /// Counts one finished attempt that waited `waited` to start.
    pub fn record(&mut self, succeeded: bool, waited: Duration) {
        if succeeded {
            self.succeeded += 1;
        } else {
            self.failed += 1;
        }
        let ms = u64::try_from(waited.as_millis()).unwrap_or(u64::MAX);
        self.wait[bucket_of_ms(ms)] += 1;
    }

    /// Adds `other`'s counts (same tenant, queue and minute).
    pub fn add(&mut self, other: &MinuteStats) {
        self.succeeded += other.succeeded;
        self.failed += other.failed;
        for (mine, theirs) in self.wait.iter_mut().zip(other.wait) {
            *mine += theirs;
        }
    }
}

/// The minute holding `at`.
pub fn minute_of(at: DateTime<Utc>) -> DateTime<Utc> {
    at.duration_trunc(TimeDelta::minutes(1)).unwrap_or(at)
}

/// The histogram bucket of `ms` milliseconds.
pub fn bucket_of_ms(ms: u64) -> usize {
    WAIT_BOUNDS_MS
        .iter()
        .position(|&bound| ms <= bound)
        .unwrap_or(WAIT_BUCKETS - 1)
}

/// The `q`-quantile (0..=1) of a wait histogram, as the upper bound of the bucket that holds it
/// (milliseconds; `None` when empty; the last bucket reports its lower bound).
pub fn wait_quantile_ms(wait: &[i64; WAIT_BUCKETS], q: f64) -> Option<u64> {
    let total: i64 = wait.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = (q.clamp(0.0, 1.0) * total as f64).ceil().max(1.0) as i64;
    let mut seen = 0;
    for (i, n) in wait.iter().enumerate() {
        seen += n;
        if seen >= rank {
            return Some(WAIT_BOUNDS_MS.get(i).copied().unwrap_or(WAIT_BOUNDS_MS[14]));
        }
    }
    Some(WAIT_BOUNDS_MS[14])
}

/// Storage of the rollups.
#[async_trait]
pub trait JobStats: Send + Sync {
    /// Adds `stats` to what is stored for their tenants, queues and minutes.
    async fn add_stats(&self, stats: &[MinuteStats]) -> Result<()>;

    /// A tenant's rollups from `since` on, by minute then queue.
    async fn stats_since(&self, tenant_id: &str, since: DateTime<Utc>) -> Result<Vec<MinuteStats>>;

    /// Removes rollups older than `before`; returns how many rows went.
    async fn prune_stats(&self, before: DateTime<Utc>) -> Result<u64>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_fall_into_buckets_and_quantiles_read_them() {
        let mut s = MinuteStats::new("t", "q", Utc::now());
        for ms in [0, 1, 3, 3, 40, 900, 70_000] {
            s.record(true, Duration::from_millis(ms));
        }
        s.record(false, Duration::from_millis(3));
        assert_eq!((s.succeeded, s.failed), (7, 1));
        assert_eq!(s.wait[0], 2); // 0 and 1 ms
        assert_eq!(s.wait[2], 3); // 3, 3, 3 ms: at most 5
        assert_eq!(s.wait[WAIT_BUCKETS - 1], 1);
        assert_eq!(wait_quantile_ms(&s.wait, 0.5), Some(5));
        assert_eq!(wait_quantile_ms(&s.wait, 0.95), Some(60_000));
        assert_eq!(wait_quantile_ms(&[0; WAIT_BUCKETS], 0.5), None);
    }
}
