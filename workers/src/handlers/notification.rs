use std::time::Duration;

use async_trait::async_trait;
use pysaas_jobs::kinds::notification::Webhook;
use pysaas_jobs::HandlerError;
use serde_json::{json, Value};

use crate::{JobContext, JobHandler};

/// Longest `Retry-After` a webhook target may ask for before the retry policy decides instead.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// Runs `notification.webhook`: a real HTTP POST; 2xx succeeds, anything else is retried.
#[derive(Debug, Clone)]
pub struct WebhookHandler {
    client: reqwest::Client,
}

impl Default for WebhookHandler {
    fn default() -> Self {
        let client = reqwest::Client::builder()
            .user_agent(concat!("pysaas-webhook/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::limited(3))
            .build()
            .unwrap_or_default();
        WebhookHandler { client }
    }
}

impl WebhookHandler {
    /// A handler using `client`.
    pub fn new(client: reqwest::Client) -> Self {
        WebhookHandler { client }
    }
}

#[async_trait]
impl JobHandler<Webhook> for WebhookHandler {
    async fn handle(
        &self,
        ctx: &JobContext,
        payload: Webhook,
    ) -> Result<Option<Value>, HandlerError> {
        let url = reqwest::Url::parse(&payload.url)
            .map_err(|e| HandlerError::fail(format!("invalid webhook URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(HandlerError::fail(format!(
                "webhook URL scheme `{}` is not http(s)",
                url.scheme()
            )));
        }
        let mut request = self
            .client
            .post(url)
            .header("Idempotency-Key", ctx.id.to_string())
            .header("X-PySaaS-Job-Id", ctx.id.to_string())
            .header("X-PySaaS-Attempt", ctx.attempt.to_string())
            .json(&payload.body);
        if let Some(traceparent) = &ctx.trace_context {
            request = request.header("traceparent", traceparent);
        }
        let response = request
            .send()
            .await
            .map_err(|e| HandlerError::retry(format!("webhook request failed: {e}")))?;
        let status = response.status();
        if status.is_success() {
            return Ok(Some(json!({ "status": status.as_u16() })));
        }
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs)
            .filter(|d| *d <= MAX_RETRY_AFTER);
        let message = format!("webhook answered HTTP {}", status.as_u16());
        Err(match retry_after {
            Some(after) => HandlerError::retry_after(message, after),
            None => HandlerError::retry(message),
        })
    }
}
