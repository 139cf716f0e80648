use std::time::Duration;

use serde::{de::DeserializeOwned, Serialize};

use crate::{Rate, RetryPolicy, DEFAULT_QUEUE};

/// Default per-attempt timeout: long enough for a slow HTTP call, short enough to free a slot.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// A typed job kind: the payload type plus the defaults that govern how it runs.
pub trait JobKind:
    Serialize + DeserializeOwned + schemars::JsonSchema + Send + Sync + 'static
{
    /// Stable kind name, `area.action` (for example `billing.invoice`).
    const KIND: &'static str;
    /// Queue the kind lands on unless the submission names one.
    const QUEUE: &'static str = DEFAULT_QUEUE;
    /// Default priority (0 ..= 9, higher first).
    const PRIORITY: i16 = 0;
    /// Created only by PySaaS itself, as the consequence of a write it checked (a data export,
    /// an erasure, a webhook delivery): the API and schedules refuse it, so that nobody can
    /// name another user's export or erasure in a payload of their own.
    const INTERNAL: bool = false;

    /// Per-attempt timeout.
    fn timeout() -> Duration {
        DEFAULT_TIMEOUT
    }

    /// Retry policy.
    fn retry_policy() -> RetryPolicy {
        RetryPolicy::default()
    }

    /// Starts of this kind allowed over all tenants together (none: unlimited). Jobs over the
    /// rate wait, in every worker process, until a start is free; they do not fail.
    fn rate_limit() -> Option<Rate> {
        None
    }

    /// Starts of this kind allowed for each tenant on its own (none: unlimited).
    fn rate_limit_per_tenant() -> Option<Rate> {
        None
    }

    /// Checks what the type alone cannot say (a URL's scheme, a bound relative to the timeout),
    /// at submission: `Err((field, message))` refuses the job with 422 naming the field, instead
    /// of accepting one that can never run.
    fn check(&self) -> Result<(), (String, String)> {
        Ok(())
    }
}
