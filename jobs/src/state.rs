use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Where a job is in its lifecycle. See `docs/job-lifecycle.md` for the drawn state machine.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// `run_at` is in the future; the promoter makes it `queued` when due.
    Scheduled,
    /// Ready to be claimed by a worker.
    Queued,
    /// Claimed by a worker holding a lease.
    Running,
    /// Finished successfully (terminal until a manual retry).
    Succeeded,
    /// Failed an attempt; waits for its backoff to elapse, then is promoted to `queued`.
    Retrying,
    /// Failed for good: attempts exhausted or a permanent error (terminal until a manual retry).
    Dead,
    /// Cancelled by a user or by its handler (terminal until a manual retry).
    Cancelled,
}

impl JobState {
    /// Every state, in lifecycle order.
    pub const ALL: [JobState; 7] = [
        JobState::Scheduled,
        JobState::Queued,
        JobState::Running,
        JobState::Succeeded,
        JobState::Retrying,
        JobState::Dead,
        JobState::Cancelled,
    ];

    /// The lower-case name stored in the database and shown over the API.
    pub const fn as_str(self) -> &'static str {
        match self {
            JobState::Scheduled => "scheduled",
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Retrying => "retrying",
            JobState::Dead => "dead",
            JobState::Cancelled => "cancelled",
        }
    }

    /// A finished job no longer runs unless a user retries it.
    pub const fn is_finished(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Dead | JobState::Cancelled
        )
    }

    /// States from which `cancel` is allowed.
    pub const fn can_cancel(self) -> bool {
        !self.is_finished()
    }

    /// States from which a manual `retry` is allowed.
    pub const fn can_retry(self) -> bool {
        self.is_finished()
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobState {
    type Err = crate::JobsError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JobState::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| crate::JobsError::UnknownState(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_strings() {
        for state in JobState::ALL {
            assert_eq!(state.as_str().parse::<JobState>().ok(), Some(state));
        }
        assert!("done".parse::<JobState>().is_err());
    }

    #[test]
    fn only_finished_jobs_can_be_retried_and_only_unfinished_cancelled() {
        for state in JobState::ALL {
            assert_ne!(state.can_cancel(), state.can_retry(), "{state}");
        }
    }
}
