use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::{HandlerError, JobState, RetryPolicy};

/// What an attempt ended in, ready to be recorded by the store.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The handler succeeded.
    Succeeded {
        /// Its result, if any.
        result: Option<Value>,
    },
    /// The attempt failed and another is due at `run_at`.
    Retrying {
        /// Failure message.
        error: String,
        /// When the next attempt may start.
        run_at: DateTime<Utc>,
    },
    /// The job failed for good.
    Dead {
        /// Failure message.
        error: String,
    },
    /// The handler cancelled the job.
    Cancelled {
        /// Reason.
        error: String,
    },
}

impl Outcome {
    /// Maps a handler's result for attempt `attempt` (1-based) onto the next state.
    pub fn decide(
        result: Result<Option<Value>, HandlerError>,
        attempt: i32,
        max_attempts: i32,
        policy: &RetryPolicy,
        now: DateTime<Utc>,
    ) -> Self {
        match result {
            Ok(result) => Outcome::Succeeded { result },
            Err(HandlerError::Fail { message, .. }) => Outcome::Dead { error: message },
            Err(HandlerError::Cancel { message, .. }) => Outcome::Cancelled { error: message },
            Err(HandlerError::Retry { message, after, .. }) => {
                if attempt >= max_attempts {
                    Outcome::Dead {
                        error: format!(
                            "{message} (attempt {attempt} of {max_attempts}, no retries left)"
                        ),
                    }
                } else {
                    let delay = after.unwrap_or_else(|| policy.backoff(attempt));
                    let delay = chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX);
                    Outcome::Retrying {
                        error: message,
                        run_at: now.checked_add_signed(delay).unwrap_or(now),
                    }
                }
            }
        }
    }

    /// The state this outcome moves the job to.
    pub fn state(&self) -> JobState {
        match self {
            Outcome::Succeeded { .. } => JobState::Succeeded,
            Outcome::Retrying { .. } => JobState::Retrying,
            Outcome::Dead { .. } => JobState::Dead,
            Outcome::Cancelled { .. } => JobState::Cancelled,
        }
    }

    /// The failure message, if the attempt failed.
    pub fn error(&self) -> Option<&str> {
        match self {
            Outcome::Succeeded { .. } => None,
            Outcome::Retrying { error, .. }
            | Outcome::Dead { error }
            | Outcome::Cancelled { error } => Some(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn decide(result: Result<Option<Value>, HandlerError>, attempt: i32) -> Outcome {
        let policy = RetryPolicy {
            jitter: 0.0,
            ..RetryPolicy::default()
        };
        Outcome::decide(result, attempt, 3, &policy, DateTime::<Utc>::UNIX_EPOCH)
    }

    #[test]
    fn retries_until_attempts_run_out() {
        let out = decide(Err(HandlerError::retry("boom")), 2);
        assert_eq!(out.state(), JobState::Retrying);
        if let Outcome::Retrying { run_at, .. } = out {
            assert_eq!(run_at.timestamp(), 2);
        }
        assert_eq!(
            decide(Err(HandlerError::retry("boom")), 3).state(),
            JobState::Dead
        );
    }

    #[test]
    fn explicit_delay_overrides_backoff() {
        let out = decide(
            Err(HandlerError::retry_after("later", Duration::from_secs(30))),
            1,
        );
        assert_eq!(
            out,
            Outcome::Retrying {
                error: "later".into(),
                run_at: DateTime::<Utc>::UNIX_EPOCH + chrono::Duration::seconds(30)
            }
        );
    }

    #[test]
    fn fail_and_cancel_are_final() {
        assert_eq!(
            decide(Err(HandlerError::fail("bad")), 1).state(),
            JobState::Dead
        );
        assert_eq!(
            decide(Err(HandlerError::cancel("stop")), 1).state(),
            JobState::Cancelled
        );
        assert_eq!(decide(Ok(None), 1).state(), JobState::Succeeded);
    }
}
