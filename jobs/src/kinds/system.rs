//! Kinds for testing, benchmarking and smoke checks.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{JobKind, RetryPolicy};

/// Does nothing and succeeds: the unit of benchmarks.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Noop {}

impl JobKind for Noop {
    const KIND: &'static str = "system.noop";
}

/// Sleeps for `ms` milliseconds, then succeeds.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Sleep {
    /// How long to sleep: less than the kind's timeout (60 s).
    #[schemars(range(max = 59_999))]
    pub ms: u64,
}

impl JobKind for Sleep {
    const KIND: &'static str = "system.sleep";

    fn check(&self) -> Result<(), (String, String)> {
        let limit = Self::timeout();
        if Duration::from_millis(self.ms) >= limit {
            return Err((
                "ms".into(),
                format!(
                    "must be below the kind's timeout of {} ms (the job would time out every attempt)",
                    limit.as_millis()
                ),
            ));
        }
        Ok(())
    }
}

/// Fails its first `times` attempts with a retryable error, then succeeds.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Fail {
    /// Attempts that fail before one succeeds.
    pub times: u32,
}

impl JobKind for Fail {
    const KIND: &'static str = "system.fail";

    fn retry_policy() -> RetryPolicy {
        // Short steps so that demos and tests see the retries happen.
        RetryPolicy {
            backoff_base: Duration::from_millis(50),
            backoff_max: Duration::from_secs(5),
            ..RetryPolicy::default()
        }
    }
}
