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
    /// The kind is created by PySaaS itself only ([`crate::JobKind::INTERNAL`]).
    #[error("`{0}` jobs are created by PySaaS itself (from the API call that asks for one), not submitted")]
    InternalKind(String),
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
        /// Structured detail kept with the attempt (see [`HandlerError::with_detail`]).
        detail: Option<serde_json::Value>,
    },
    /// A permanent failure: the job goes `dead` whatever attempts remain.
    #[error("{message}")]
    Fail {
        /// Human-readable reason.
        message: String,
        /// Structured detail kept with the attempt.
        detail: Option<serde_json::Value>,
    },
    /// The handler decided the job should not run: it ends `cancelled`.
    #[error("{message}")]
    Cancel {
        /// Human-readable reason.
        message: String,
        /// Structured detail kept with the attempt.
        detail: Option<serde_json::Value>,
    },
}

impl HandlerError {
    /// A retryable error with the kind's default backoff.
    pub fn retry(message: impl Into<String>) -> Self {
        HandlerError::Retry {
            message: message.into(),
            after: None,
            detail: None,
        }
    }

    /// A retryable error that asks for a specific delay.
    pub fn retry_after(message: impl Into<String>, after: Duration) -> Self {
        HandlerError::Retry {
            message: message.into(),
            after: Some(after),
            detail: None,
        }
    }

    /// A permanent error.
    pub fn fail(message: impl Into<String>) -> Self {
        HandlerError::Fail {
            message: message.into(),
            detail: None,
        }
    }

    /// Cancel the job.
    pub fn cancel(message: impl Into<String>) -> Self {
        HandlerError::Cancel {
            message: message.into(),
            detail: None,
        }
    }

    /// Keeps `detail` (a status code, a response excerpt, what was tried) with the attempt; the
    /// dashboard shows it beside the message. A JSON object; anything else is kept as
    /// `{"value": …}`. Keep it free of secrets; one over [`DETAIL_MAX_BYTES`] of JSON is kept as
    /// `{"truncated": true, "bytes": n}` so no attempt row grows without bound.
    #[must_use]
    pub fn with_detail(mut self, value: serde_json::Value) -> Self {
        let mut value = if value.is_object() {
            value
        } else {
            serde_json::json!({ "value": value })
        };
        // PostgreSQL's jsonb (and text) refuse the NUL character: one in a remote's answer
        // must not make the outcome unrecordable.
        strip_nul(&mut value);
        let bytes = value.to_string().len();
        let value = if bytes > DETAIL_MAX_BYTES {
            serde_json::json!({ "truncated": true, "bytes": bytes })
        } else {
            value
        };
        match &mut self {
            HandlerError::Retry { detail, .. }
            | HandlerError::Fail { detail, .. }
            | HandlerError::Cancel { detail, .. } => *detail = Some(value),
        }
        self
    }

    /// The detail given with [`HandlerError::with_detail`].
    pub fn detail(&self) -> Option<&serde_json::Value> {
        match self {
            HandlerError::Retry { detail, .. }
            | HandlerError::Fail { detail, .. }
            | HandlerError::Cancel { detail, .. } => detail.as_ref(),
        }
    }
}

/// Removes NUL characters from every string (and member name) of `value`.
fn strip_nul(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::String(s) if s.contains('\0') => s.retain(|c| c != '\0'),
        serde_json::Value::Array(items) => items.iter_mut().for_each(strip_nul),
        serde_json::Value::Object(members) => {
            if members.keys().any(|k| k.contains('\0')) {
                *members = std::mem::take(members)
                    .into_iter()
                    .map(|(k, v)| (k.replace('\0', ""), v))
                    .collect();
            }
            members.values_mut().for_each(strip_nul);
        }
        _ => {}
    }
}

/// Most bytes of JSON an error's detail keeps (see [`HandlerError::with_detail`]).
pub const DETAIL_MAX_BYTES: usize = 4096;

#[cfg(test)]
mod tests {
    use super::{HandlerError, DETAIL_MAX_BYTES};
    use serde_json::json;

    #[test]
    fn detail_rides_with_any_error_and_is_always_an_object() {
        let e = HandlerError::retry("x").with_detail(json!({"status": 503}));
        assert_eq!(e.detail(), Some(&json!({"status": 503})));
        assert_eq!(e.to_string(), "x");
        let e = HandlerError::fail("y").with_detail(json!("just text"));
        assert_eq!(e.detail(), Some(&json!({"value": "just text"})));
        assert_eq!(HandlerError::cancel("z").detail(), None);
        let e =
            HandlerError::retry("v").with_detail(json!({"body": "a\u{0}b", "k\u{0}": ["\u{0}"]}));
        assert_eq!(e.detail(), Some(&json!({"body": "ab", "k": [""]})));
        let big = "x".repeat(DETAIL_MAX_BYTES);
        let e = HandlerError::retry("w").with_detail(json!({ "body": big }));
        assert_eq!(
            e.detail(),
            Some(&json!({"truncated": true, "bytes": DETAIL_MAX_BYTES + 11}))
        );
    }
}
