//! The PySaaS job contract. Pure data and rules, no I/O.
//!
//! A job kind is a typed, serde-serialisable payload that implements [`JobKind`]: it names itself
//! (`"system.sleep"`), picks a default queue, priority, timeout and [`RetryPolicy`], and carries a
//! JSON Schema. A [`KindRegistry`] (built by the workers' `Handlers`, the one list of the kinds a
//! deployment runs) turns untyped submissions into validated ones, and [`Outcome::decide`] maps
//! what a handler returned onto the next [`JobState`].
//!
//! ```
//! use pysaas_jobs::{kinds, JobKind, KindRegistry};
//! let mut registry = KindRegistry::new();
//! registry.register::<kinds::system::Sleep>();
//! let spec = registry.get("system.sleep").unwrap();
//! assert_eq!(spec.kind, kinds::system::Sleep::KIND);
//! assert!(registry.validate("system.sleep", &serde_json::json!({"ms": 5})).is_ok());
//! assert!(registry.validate("system.sleep", &serde_json::json!({"ms": "x"})).is_err());
//! ```

mod backoff;
pub mod billing;
mod envelope;
mod error;
pub mod events;
mod job;
mod kind;
pub mod kinds;
mod outcome;
pub mod preferences;
pub mod rate;
mod registry;
mod retry;
pub mod schedule;
mod state;
pub mod trace;

pub use backoff::Backoff;
pub use envelope::{Envelope, EnvelopeError, ENVELOPE_VERSION};
pub use error::{HandlerError, JobsError, Result, DETAIL_MAX_BYTES};
pub use job::{AttemptError, Job, NewJob, DEFAULT_QUEUE, DEFAULT_TENANT, MAX_PRIORITY};
pub use kind::{JobKind, DEFAULT_TIMEOUT};
pub use outcome::Outcome;
pub use rate::{Rate, RateLimit, RateScope};
pub use registry::{
    valid_queue_name, whole_floats_as_integers, JobOptions, KindRegistry, KindSpec,
    IDEMPOTENCY_KEY_MAX, MAX_ATTEMPTS_LIMIT, QUEUE_NAME_MAX,
};
pub use retry::{
    RetryPolicy, DEFAULT_BACKOFF_BASE, DEFAULT_BACKOFF_MAX, DEFAULT_JITTER, DEFAULT_MAX_ATTEMPTS,
};
pub use schedule::{
    time_zone_names, CronSchedule, Misfire, MisfirePolicy, Schedule, ScheduleError, ScheduleSource,
    ScheduleSpec, CRON_PATTERN,
};
pub use state::JobState;
