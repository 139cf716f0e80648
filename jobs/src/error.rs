use std::time::Duration;

/// Errors raised by the job contract (validation of submissions).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JobsError {
    /// No job kind is registered under this name.
    #[error("unknown job kind `{kind}`; known kinds: {}", known.join(", "))]
    UnknownKind {
        /// The kind that was asked for.
        kind: String,
        /// Every registered kind, sorted.
        known: Vec<String>,
    },
    /// The payload does not match the kind's type.
    #[error("invalid payload for `{kind}` at `{path}`: {message}")]
    InvalidPayload {
        /// The job kind.
        kind: String,
        /// JSON path of the offending field (`.` for the whole payload).
        path: String,
        /// What serde said.
        message: String,
    },
    /// A state name that is not one of [`crate::JobState`].
    #[error("unknown job state `{0}`")]
    UnknownState(String),
    /// A field of the submission is out of range.
    #[error("invalid `{field}`: {message}")]
    InvalidField {
        /// The field name.
        field: &'static str,
        /// Why it is invalid.
        message: String,
    },
}

/// Result alias for this crate.
pub type Result<T, E = JobsError> = std::result::Result<T, E>;

/// What a handler says went wrong, and therefore what happens next.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum HandlerError {
    /// A transient failure: try again (after `after`, or the kind's backoff) if attempts remain.
    #[error("{message}")]
    Retry {
        /// Human-readable reason, stored as `last_error`.
        message: String,
        /// Overrides the retry policy's backoff for this attempt.
        after: Option<Duration>,
    },
    /// A permanent failure: the job goes `dead` whatever attempts remain.
    #[error("{message}")]
    Fail {
        /// Human-readable reason.
        message: String,
    },
    /// The handler decided the job should not run: it ends `cancelled`.
    #[error("{message}")]
    Cancel {
        /// Human-readable reason.
        message: String,
    },
}

impl HandlerError {
    /// A retryable error with the kind's default backoff.
    pub fn retry(message: impl Into<String>) -> Self {
        HandlerError::Retry {
            message: message.into(),
            after: None,
        }
    }

    /// A retryable error that asks for a specific delay.
    pub fn retry_after(message: impl Into<String>, after: Duration) -> Self {
        HandlerError::Retry {
            message: message.into(),
            after: Some(after),
        }
    }

    /// A permanent error.
    pub fn fail(message: impl Into<String>) -> Self {
        HandlerError::Fail {
            message: message.into(),
        }
    }

    /// Cancel the job.
    pub fn cancel(message: impl Into<String>) -> Self {
        HandlerError::Cancel {
            message: message.into(),
        }
    }
}
