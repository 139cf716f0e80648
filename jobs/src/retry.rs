use std::time::Duration;

use rand::Rng;

/// Default attempts before a job is dead; the same as Sidekiq's and River's default.
pub const DEFAULT_MAX_ATTEMPTS: i32 = 25;
/// Default first backoff step.
pub const DEFAULT_BACKOFF_BASE: Duration = Duration::from_secs(1);
/// Default cap on one backoff: an hour keeps 25 attempts within about a day.
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(3600);
/// Default jitter as a share of the computed delay (±), so retries of a burst do not stampede.
pub const DEFAULT_JITTER: f64 = 0.2;

/// How often and how fast a kind is retried: exponential backoff with jitter, capped.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Total attempts including the first.
    pub max_attempts: i32,
    /// Delay after the first failed attempt; doubles with each further one.
    pub backoff_base: Duration,
    /// Upper bound of a single delay.
    pub backoff_max: Duration,
    /// Random spread, as a share of the delay (0.0 ..= 1.0).
    pub jitter: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            backoff_base: DEFAULT_BACKOFF_BASE,
            backoff_max: DEFAULT_BACKOFF_MAX,
            jitter: DEFAULT_JITTER,
        }
    }
}

impl RetryPolicy {
    /// For work that must finish through outages (a charge, an erasure): 30 attempts from 2 s
    /// up to an hour apart, about a day in all.
    pub fn about_a_day() -> Self {
        RetryPolicy {
            max_attempts: 30,
            backoff_base: Duration::from_secs(2),
            backoff_max: Duration::from_secs(3600),
            ..RetryPolicy::default()
        }
    }

    /// The delay before the next attempt, after `attempt` (1-based) failed.
    pub fn backoff(&self, attempt: i32) -> Duration {
        self.backoff_with(attempt, &mut rand::thread_rng())
    }

    /// [`Self::backoff`] with a caller-supplied random source (deterministic in tests).
    pub fn backoff_with(&self, attempt: i32, rng: &mut impl Rng) -> Duration {
        let exponent = u32::try_from(attempt.saturating_sub(1).clamp(0, 30)).unwrap_or(0);
        let raw = self
            .backoff_base
            .saturating_mul(2u32.saturating_pow(exponent))
            .min(self.backoff_max);
        let jitter = self.jitter.clamp(0.0, 1.0);
        if jitter == 0.0 {
            return raw;
        }
        let factor = 1.0 + rng.gen_range(-jitter..=jitter);
        raw.mul_f64(factor).min(self.backoff_max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{rngs::StdRng, SeedableRng};

    #[test]
    fn doubles_and_caps_without_jitter() {
        let policy = RetryPolicy {
            jitter: 0.0,
            backoff_max: Duration::from_secs(10),
            ..RetryPolicy::default()
        };
        assert_eq!(policy.backoff(1), Duration::from_secs(1));
        assert_eq!(policy.backoff(2), Duration::from_secs(2));
        assert_eq!(policy.backoff(4), Duration::from_secs(8));
        assert_eq!(policy.backoff(5), Duration::from_secs(10));
        assert_eq!(policy.backoff(500), Duration::from_secs(10));
    }

    #[test]
    fn jitter_stays_within_its_band() {
        let policy = RetryPolicy::default();
        let mut rng = StdRng::seed_from_u64(7);
        for _ in 0..1000 {
            let d = policy.backoff_with(3, &mut rng);
            assert!(
                d >= Duration::from_millis(3200) && d <= Duration::from_millis(4800),
                "{d:?}"
            );
        }
    }
}
