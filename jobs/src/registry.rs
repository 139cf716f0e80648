use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use crate::{JobKind, JobsError, NewJob, RateLimit, RetryPolicy, MAX_PRIORITY};

/// Turns every whole float in `value` (`3.0`) into the integer it is; `true` if any changed.
/// JSON has one kind of number and JSON Schema counts `3.0` as an integer, but serde refuses it
/// for an integer field; payloads are normalised this way before they are checked and stored, so
/// that a client (or a language) writing `3.0` is not refused.
pub fn whole_floats_as_integers(value: &mut Value) -> bool {
    match value {
        Value::Number(n) if n.is_f64() => {
            let Some(f) = n.as_f64() else { return false };
            // Below 2^53 a float holds its integer exactly.
            let whole = f.fract() == 0.0 && f.abs() < 9.0e15;
            if whole {
                #[allow(clippy::cast_possible_truncation)]
                let i = f as i64;
                *value = Value::from(i);
            }
            whole
        }
        Value::Array(items) => items
            .iter_mut()
            .fold(false, |any, v| whole_floats_as_integers(v) | any),
        Value::Object(map) => map
            .values_mut()
            .fold(false, |any, v| whole_floats_as_integers(v) | any),
        _ => false,
    }
}

/// Upper bound a submission may set for `max_attempts`.
pub const MAX_ATTEMPTS_LIMIT: i32 = 1000;
/// Longest idempotency key.
pub const IDEMPOTENCY_KEY_MAX: usize = 255;
/// Longest queue name.
pub const QUEUE_NAME_MAX: usize = 64;

/// Queue names: lower-case letters, digits, `.`, `_`, `-`; 1 to 64 characters; a letter or digit
/// first. Safe as RabbitMQ queue and Redis key parts.
pub fn valid_queue_name(name: &str) -> bool {
    name.len() <= QUEUE_NAME_MAX
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
}

/// What a submission may set beside kind and payload; `None` takes the kind's default.
#[derive(Debug, Clone, Default)]
pub struct JobOptions {
    /// Queue.
    pub queue: Option<String>,
    /// Priority, 0 ..= [`MAX_PRIORITY`].
    pub priority: Option<i16>,
    /// Attempts, 1 ..= [`MAX_ATTEMPTS_LIMIT`].
    pub max_attempts: Option<i32>,
    /// Earliest start; now when absent.
    pub run_at: Option<DateTime<Utc>>,
    /// Same key (per tenant), same job.
    pub idempotency_key: Option<String>,
    /// W3C `traceparent`.
    pub trace_context: Option<String>,
    /// `X-Request-Id`.
    pub request_id: Option<String>,
}

fn invalid(field: &'static str, message: impl Into<String>) -> JobsError {
    JobsError::InvalidField {
        field,
        message: message.into(),
    }
}

/// Everything the platform knows about one kind, without its Rust type.
#[derive(Debug, Clone)]
pub struct KindSpec {
    /// Kind name.
    pub kind: &'static str,
    /// Default queue.
    pub queue: &'static str,
    /// Default priority.
    pub priority: i16,
    /// Per-attempt timeout.
    pub timeout: Duration,
    /// Retry policy.
    pub retry: RetryPolicy,
    /// JSON Schema of the payload (draft 2020-12, from schemars).
    pub schema: Value,
    /// Created only by PySaaS itself ([`JobKind::INTERNAL`]): not accepted from outside.
    pub internal: bool,
    /// Execution rate limits the kind declares ([`JobKind::rate_limit`] and
    /// [`JobKind::rate_limit_per_tenant`]).
    pub rate_limits: Vec<RateLimit>,
    validate: fn(&Value) -> Result<(), (String, String)>,
}

fn validate_as<K: JobKind>(payload: &Value) -> Result<(), (String, String)> {
    // serde would take a struct from an array, by position; a payload is an object.
    if !payload.is_object() {
        return Err((".".into(), "must be a JSON object".into()));
    }
    let typed = serde_path_to_error::deserialize::<_, K>(payload)
        .map_err(|e| (e.path().to_string(), e.inner().to_string()))?;
    typed.check()
}

impl KindSpec {
    /// The spec of a typed kind.
    pub fn of<K: JobKind>() -> Self {
        KindSpec {
            kind: K::KIND,
            queue: K::QUEUE,
            priority: K::PRIORITY,
            internal: K::INTERNAL,
            timeout: K::timeout(),
            retry: K::retry_policy(),
            schema: serde_json::to_value(schemars::schema_for!(K)).unwrap_or(Value::Null),
            rate_limits: K::rate_limit()
                .map(|rate| RateLimit::kind(K::KIND, rate))
                .into_iter()
                .chain(
                    K::rate_limit_per_tenant()
                        .map(|rate| RateLimit::kind(K::KIND, rate).per_tenant()),
                )
                .collect(),
            validate: validate_as::<K>,
        }
    }
}

/// The set of kinds this deployment accepts.
#[derive(Debug, Clone, Default)]
pub struct KindRegistry {
    specs: BTreeMap<&'static str, KindSpec>,
}

impl KindRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a kind (replacing one of the same name).
    pub fn register<K: JobKind>(&mut self) -> &mut Self {
        self.insert(KindSpec::of::<K>())
    }

    /// Adds a spec (replacing one of the same kind).
    pub fn insert(&mut self, spec: KindSpec) -> &mut Self {
        self.specs.insert(spec.kind, spec);
        self
    }

    /// The distinct default queues of the registered kinds, sorted.
    pub fn default_queues(&self) -> Vec<&'static str> {
        let mut queues: Vec<_> = self.specs.values().map(|s| s.queue).collect();
        queues.sort_unstable();
        queues.dedup();
        queues
    }

    /// The spec of `kind`, or [`JobsError::UnknownKind`].
    pub fn get(&self, kind: &str) -> Result<&KindSpec, JobsError> {
        self.specs.get(kind).ok_or_else(|| JobsError::UnknownKind {
            kind: kind.to_owned(),
            known: self.known().map(str::to_owned).collect(),
        })
    }

    /// Registered kind names, sorted.
    pub fn known(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.specs.keys().copied()
    }

    /// All specs, sorted by kind.
    pub fn specs(&self) -> impl Iterator<Item = &KindSpec> {
        self.specs.values()
    }

    /// Checks `payload` against the kind's type; the error names the offending field path. An
    /// internal kind ([`JobKind::INTERNAL`]) is refused: this is the check of what comes from
    /// outside (submissions, schedules).
    pub fn validate(&self, kind: &str, payload: &Value) -> Result<&KindSpec, JobsError> {
        let spec = self.get(kind)?;
        if spec.internal {
            return Err(JobsError::InternalKind(kind.to_owned()));
        }
        (spec.validate)(payload).map_err(|(path, message)| JobsError::InvalidPayload {
            kind: kind.to_owned(),
            path,
            message,
        })?;
        Ok(spec)
    }

    /// A validated job row: the payload checked against the kind's schema, options checked and
    /// defaulted from the kind. The error names the offending field.
    pub fn new_job(
        &self,
        tenant_id: &str,
        kind: &str,
        payload: Value,
        options: JobOptions,
    ) -> Result<NewJob, JobsError> {
        let mut payload = payload;
        whole_floats_as_integers(&mut payload);
        let spec = self.validate(kind, &payload)?;
        let queue = options.queue.unwrap_or_else(|| spec.queue.to_owned());
        if !valid_queue_name(&queue) {
            return Err(invalid(
                "queue",
                "1 to 64 characters of a-z, 0-9, `.`, `_`, `-`, starting with a letter or digit",
            ));
        }
        let priority = options.priority.unwrap_or(spec.priority);
        if !(0..=MAX_PRIORITY).contains(&priority) {
            return Err(invalid(
                "priority",
                format!("must be between 0 and {MAX_PRIORITY}"),
            ));
        }
        let max_attempts = options.max_attempts.unwrap_or(spec.retry.max_attempts);
        if !(1..=MAX_ATTEMPTS_LIMIT).contains(&max_attempts) {
            return Err(invalid(
                "max_attempts",
                format!("must be between 1 and {MAX_ATTEMPTS_LIMIT}"),
            ));
        }
        if let Some(key) = &options.idempotency_key {
            if key.is_empty()
                || key.len() > IDEMPOTENCY_KEY_MAX
                || key.chars().any(char::is_control)
            {
                return Err(invalid(
                    "idempotency_key",
                    format!("must be 1 to {IDEMPOTENCY_KEY_MAX} printable characters"),
                ));
            }
        }
        Ok(NewJob {
            id: Uuid::now_v7(),
            tenant_id: tenant_id.to_owned(),
            kind: spec.kind.to_owned(),
            queue,
            payload,
            priority,
            max_attempts,
            run_at: options.run_at.unwrap_or_else(Utc::now),
            timeout_ms: i64::try_from(spec.timeout.as_millis()).unwrap_or(i64::MAX),
            idempotency_key: options.idempotency_key,
            trace_context: options.trace_context,
            request_id: options.request_id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds;
    use serde_json::json;

    /// The kinds these tests need (the one list of deployed kinds is the workers' `Handlers`).
    fn registry() -> KindRegistry {
        let mut registry = KindRegistry::new();
        registry
            .register::<kinds::system::Noop>()
            .register::<kinds::system::Sleep>()
            .register::<kinds::notification::Webhook>();
        registry
    }

    #[test]
    fn unknown_kind_names_the_known_ones() {
        let err = registry().validate("nope", &json!({})).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("system.noop") && text.contains("notification.webhook"),
            "{text}"
        );
    }

    #[test]
    fn payload_errors_carry_the_field_path() {
        let registry = registry();
        match registry.validate("notification.webhook", &json!({"url": 5, "body": {}})) {
            Err(JobsError::InvalidPayload { path, .. }) => assert_eq!(path, "url"),
            other => panic!("unexpected {other:?}"),
        }
        match registry.validate("system.sleep", &json!({"ms": 1, "extra": true})) {
            Err(JobsError::InvalidPayload { message, .. }) => assert!(message.contains("extra")),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn jobs_that_can_never_run_are_refused_naming_the_field() {
        let registry = registry();
        for (kind, payload, field, says) in [
            (
                "notification.webhook",
                json!({"url": "ftp://x.example/f", "body": {}}),
                "url",
                "http",
            ),
            (
                "notification.webhook",
                json!({"url": "/relative", "body": {}}),
                "url",
                "absolute",
            ),
            ("system.sleep", json!({"ms": 3_600_000}), "ms", "timeout"),
        ] {
            match registry.validate(kind, &payload) {
                Err(JobsError::InvalidPayload { path, message, .. }) => {
                    assert_eq!(path, field, "{payload}");
                    assert!(message.contains(says), "{message}");
                }
                other => panic!("{payload} accepted: {other:?}"),
            }
        }
        assert!(registry
            .validate(
                "notification.webhook",
                &json!({"url": "https://hooks.example.com/x", "body": {}})
            )
            .is_ok());
        assert!(registry
            .validate("system.sleep", &json!({"ms": 10}))
            .is_ok());
    }

    #[test]
    fn schemas_are_objects() {
        for spec in registry().specs() {
            assert!(spec.schema.is_object(), "{}", spec.kind);
        }
    }
}
