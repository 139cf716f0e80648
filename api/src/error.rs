//! The one error type at the HTTP edge: every error is an RFC 9457 `application/problem+json`.

use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use pysaas_brokers::StoreError;
use pysaas_jobs::JobsError;
use serde::Serialize;
use serde_json::{Map, Value};

/// Media type of problem documents.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An HTTP error as a problem document.
#[derive(Debug, Clone)]
pub struct ApiError {
    status: StatusCode,
    title: &'static str,
    detail: String,
    extra: Map<String, Value>,
    retry_after: Option<u64>,
    headers: Vec<(header::HeaderName, HeaderValue)>,
}

/// One field-level validation error.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    /// Index in a batch, when the request was a batch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    /// JSON path of the field (`payload.url`).
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl ApiError {
    /// A problem with `status` and a human-readable `detail`.
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        ApiError {
            status,
            title: status.canonical_reason().unwrap_or("Error"),
            detail: detail.into(),
            extra: Map::new(),
            retry_after: None,
            headers: Vec::new(),
        }
    }

    /// 400.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, detail)
    }

    /// 404.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, detail)
    }

    /// 409.
    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, detail)
    }

    /// 422.
    pub fn unprocessable(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, detail)
    }

    /// 422 listing field errors.
    pub fn invalid_fields(detail: impl Into<String>, errors: Vec<FieldError>) -> Self {
        Self::unprocessable(detail).with("errors", serde_json::to_value(errors).unwrap_or_default())
    }

    /// 422 for one field (`path`), saying `message` of it.
    pub fn invalid_field(
        detail: impl Into<String>,
        path: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self::invalid_fields(
            detail,
            vec![FieldError {
                index: None,
                path: path.into(),
                message: message.into(),
            }],
        )
    }

    /// Adds an extension member.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.extra.insert(key.to_owned(), value.into());
        self
    }

    /// Adds a response header.
    pub fn with_header(mut self, name: header::HeaderName, value: &'static str) -> Self {
        self.headers.push((name, HeaderValue::from_static(value)));
        self
    }

    /// Adds a response header with a computed value (dropped if it is not a valid value).
    pub fn with_header_value(mut self, name: header::HeaderName, value: String) -> Self {
        if let Ok(value) = HeaderValue::from_str(&value) {
            self.headers.push((name, value));
        }
        self
    }

    /// Sets `Retry-After` (seconds).
    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// The status code.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = Map::new();
        body.insert("type".into(), "about:blank".into());
        body.insert("title".into(), self.title.into());
        body.insert("status".into(), self.status.as_u16().into());
        body.insert("detail".into(), self.detail.into());
        body.extend(self.extra);
        let mut response = (self.status, Value::Object(body).to_string()).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        for (name, value) in self.headers {
            headers.insert(name, value);
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        if err.is_unavailable() {
            tracing::warn!(error = %err, "store unavailable");
            let which = if matches!(err, StoreError::ProfilesUnavailable(_)) {
                "profile"
            } else {
                "job"
            };
            let mut problem = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("the {which} store is unreachable; try again shortly"),
            );
            problem.retry_after = Some(1);
            problem
        } else {
            tracing::error!(error = %err, "job store error");
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
        }
    }
}

impl From<JobsError> for ApiError {
    fn from(err: JobsError) -> Self {
        match err {
            JobsError::UnknownKind { ref known, .. } => {
                let known = known.clone();
                ApiError::unprocessable(err.to_string()).with("known_kinds", known)
            }
            JobsError::InvalidPayload {
                ref kind,
                ref path,
                ref message,
            } => {
                let path = payload_path(path);
                let message = humane(message);
                ApiError::invalid_fields(
                    format!("invalid payload for `{kind}`: `{path}` {message}"),
                    vec![FieldError {
                        index: None,
                        path,
                        message,
                    }],
                )
            }
            JobsError::InvalidField { field, ref message } => ApiError::invalid_fields(
                err.to_string(),
                vec![FieldError {
                    index: None,
                    path: field.to_owned(),
                    message: message.clone(),
                }],
            ),
            other => ApiError::unprocessable(other.to_string()),
        }
    }
}

impl From<BytesRejection> for ApiError {
    fn from(rejection: BytesRejection) -> Self {
        let status = rejection.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                status,
                format!("request body is larger than {} bytes", crate::BODY_LIMIT),
            )
        } else {
            ApiError::new(status, rejection.body_text())
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        // "Failed to deserialize query string: state: unknown variant ``, expected one of …"
        let text = rejection.body_text();
        let rest = text
            .split_once("query string: ")
            .map_or(text.as_str(), |(_, r)| r);
        let (field, message) = match rest.split_once(": ") {
            Some((field, message)) if !field.contains(' ') => (field.to_owned(), message),
            _ => (String::new(), rest),
        };
        let message = humane(message);
        let detail = if field.is_empty() {
            format!("invalid query string: {message}")
        } else {
            format!("invalid query parameter `{field}`: {message}")
        };
        ApiError::invalid_fields(
            detail,
            vec![FieldError {
                index: None,
                path: field,
                message,
            }],
        )
    }
}

/// A serde message in the API's words: JSON types instead of Rust's, no parser positions.
pub(crate) fn humane(message: &str) -> String {
    let mut m = message.to_owned();
    // " at line 1 column 41"
    if let Some(i) = m.find(" at line ") {
        m.truncate(i);
    }
    // chrono's parse errors: the field holds a date-time.
    for chrono in [
        "input contains invalid characters",
        "premature end of input",
        "trailing input",
        "input is out of range",
        "input is not enough for unique date and time",
    ] {
        if m == chrono {
            return "must be an RFC 3339 date-time, e.g. 2026-12-01T12:00:00Z".into();
        }
    }
    if let Some(rest) = m.strip_prefix("unknown variant ``, expected ") {
        return format!("must not be empty: expected {rest}");
    }
    for (rust, json) in [
        ("expected u8", "expected a non-negative whole number"),
        ("expected u16", "expected a non-negative whole number"),
        ("expected u32", "expected a non-negative whole number"),
        ("expected u64", "expected a non-negative whole number"),
        ("expected usize", "expected a non-negative whole number"),
        ("expected i16", "expected a whole number"),
        ("expected i32", "expected a whole number"),
        ("expected i64", "expected a whole number"),
        ("expected f64", "expected a number"),
        ("expected f32", "expected a number"),
        ("invalid digit found in string", "expected a whole number"),
        (
            "cannot parse integer from empty string",
            "must not be empty: expected a whole number",
        ),
    ] {
        if let Some(i) = m.find(rust) {
            m.replace_range(i..i + rust.len(), json);
        }
    }
    if let Some(i) = m.find("expected struct ") {
        // "expected struct SubmitJob with 7 elements" / "expected struct Noop"
        m.truncate(i);
        m.push_str("expected an object");
    }
    m = m.replace(", there are no fields", ": no fields are accepted here");
    m = m.replace("invalid type: ", "got ");
    m
}

/// `payload.<path>` (the whole payload: `payload`), as both `detail` and `errors[].path` say it.
pub(crate) fn payload_path(path: &str) -> String {
    if path == "." || path.is_empty() {
        "payload".into()
    } else {
        format!("payload.{path}")
    }
}

/// Parses a JSON body: malformed JSON is 400, a well-formed body of the wrong shape is 422 with
/// the field path.
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    // Every body is an object; serde would otherwise take a struct from an array, by position.
    if let Some(first) = body.iter().find(|b| !b.is_ascii_whitespace()) {
        if matches!(first, b'[' | b'"' | b'0'..=b'9' | b'-' | b't' | b'f' | b'n') {
            return Err(ApiError::invalid_fields(
                "invalid request body: must be a JSON object",
                vec![FieldError {
                    index: None,
                    path: ".".into(),
                    message: "must be a JSON object".into(),
                }],
            ));
        }
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = match serde_path_to_error::deserialize::<_, T>(&mut de) {
        Ok(value) => de
            .end()
            .map(|()| value)
            .map_err(|e| ApiError::bad_request(format!("malformed JSON: {e}"))),
        // JSON has one kind of number: `3.0` is the integer 3 (as JSON Schema says), though
        // serde refuses it for an integer field. Only when a body fails is it read again with
        // whole floats as integers, so the usual path pays nothing.
        Err(err) => {
            let Ok(mut value) = serde_json::from_slice::<Value>(body) else {
                return Err(body_error(err));
            };
            if !pysaas_jobs::whole_floats_as_integers(&mut value) {
                return Err(body_error(err));
            }
            serde_path_to_error::deserialize::<_, T>(value).map_err(body_error)
        }
    }?;
    Ok(value)
}

/// A body that is JSON but not the expected shape (422, naming the field), or not JSON (400).
fn body_error(err: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let path = err.path().to_string();
    let inner = err.into_inner();
    match inner.classify() {
        serde_json::error::Category::Data => {
            let message = humane(&inner.to_string());
            let detail = if path == "." {
                format!("invalid request body: {message}")
            } else {
                format!("invalid request body: `{path}` {message}")
            };
            ApiError::invalid_fields(
                detail,
                vec![FieldError {
                    index: None,
                    path,
                    message,
                }],
            )
        }
        _ => ApiError::bad_request(format!("malformed JSON: {inner}")),
    }
}
