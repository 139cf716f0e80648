use std::time::Duration;

use async_trait::async_trait;
use pysaas_jobs::kinds::notification::Webhook;
use pysaas_jobs::HandlerError;
use serde_json::{json, Value};

use crate::{JobContext, JobHandler};

/// Longest `Retry-After` a webhook target may ask for before the retry policy decides instead.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);
/// Characters of a failed answer's body kept with the attempt.
const BODY_EXCERPT: usize = 500;

/// Runs `notification.webhook`: a real HTTP POST; 2xx succeeds, anything else is retried.
#[derive(Debug, Clone)]
pub struct WebhookHandler {
    client: reqwest::Client,
    allow_private: bool,
}

impl Default for WebhookHandler {
    /// Public addresses only.
    fn default() -> Self {
        Self::with_policy(false)
    }
}

impl WebhookHandler {
    /// Public addresses only, unless `allow_private` (see [`super::egress`]).
    pub fn with_policy(allow_private: bool) -> Self {
        WebhookHandler {
            client: super::egress::client(allow_private),
            allow_private,
        }
    }

    /// A handler using `client` as it is (its own address policy).
    pub fn new(client: reqwest::Client) -> Self {
        WebhookHandler {
            client,
            allow_private: true,
        }
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
        if !self.allow_private && super::egress::private_literal(&url) {
            return Err(HandlerError::fail(
                "webhook URL points to a non-public address; refused",
            ));
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
        let response = request.send().await.map_err(|e| {
            // A refused address will not become public by retrying.
            match super::egress::refusal(&e) {
                Some(why) => HandlerError::fail(format!("webhook refused: {why}")),
                None => HandlerError::retry(format!("webhook request failed: {e}")),
            }
        })?;
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
        // The start of the answer, for whoever looks at the failed attempt: read only as much as
        // the excerpt needs (a large or endless answer is not held in memory).
        let mut response = response;
        let mut head = Vec::new();
        while head.len() < BODY_EXCERPT * 4 {
            match response.chunk().await {
                Ok(Some(chunk)) => head.extend_from_slice(&chunk),
                _ => break,
            }
        }
        let excerpt: String = String::from_utf8_lossy(&head)
            .chars()
            .take(BODY_EXCERPT)
            .collect();
        let detail = json!({
            "status": status.as_u16(),
            "retry_after_s": retry_after.map(|d| d.as_secs()),
            "body": excerpt,
        });
        Err(match retry_after {
            Some(after) => HandlerError::retry_after(message, after),
            None => HandlerError::retry(message),
        }
        .with_detail(detail))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn ctx() -> JobContext {
        JobContext::new("t", "notification.webhook", "notifications", 3)
    }

    fn hook(url: &str) -> Webhook {
        serde_json::from_value(json!({"url": url, "body": {}})).unwrap()
    }

    #[tokio::test]
    async fn internal_addresses_are_refused_for_good() {
        let handler = WebhookHandler::default();
        for url in [
            "http://127.0.0.1:9/",
            "http://169.254.169.254/latest/meta-data/",
            "http://[::1]:9/",
            "http://10.0.0.1/",
            "http://localhost:9/",
        ] {
            let err = handler.handle(&ctx(), hook(url)).await.unwrap_err();
            assert!(
                matches!(err, HandlerError::Fail { .. }),
                "{url}: {err:?} (must fail, not retry)"
            );
        }
    }

    #[tokio::test]
    async fn allowed_private_addresses_are_tried() {
        // Port 9 on loopback refuses the connection: a transient failure, so a retry.
        let err = WebhookHandler::with_policy(true)
            .handle(&ctx(), hook("http://127.0.0.1:9/"))
            .await
            .unwrap_err();
        assert!(matches!(err, HandlerError::Retry { .. }), "{err:?}");
    }
}
