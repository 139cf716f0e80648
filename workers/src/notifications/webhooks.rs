//! Webhook endpoints: `notification.webhook_event` fans an event out to a tenant's endpoints;
//! `notification.webhook_delivery` POSTs it, signed, and keeps the delivery log.
//!
//! Signature: header `PySaaS-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>` where the HMAC
//! is keyed with the endpoint's secret over `<t>.<body>`. A receiver recomputes it, compares in
//! constant time and refuses a `t` more than five minutes away from its clock (a replayed
//! request carries an old `t`, and changing `t` breaks the signature).

use std::time::{Duration, Instant};

use async_trait::async_trait;
use pysaas_brokers::store::webhooks::{Attempt, DeliveryStatus};
use pysaas_jobs::kinds::notification::{
    Email, EmailTemplate, InApp, WebhookDelivery, WebhookEvent,
};
use pysaas_jobs::preferences::Category;
use pysaas_jobs::{HandlerError, NewJob};
use serde_json::{json, Value};

use crate::{JobContext, JobHandler};

/// The signature header.
pub const SIGNATURE_HEADER: &str = "PySaaS-Signature";
/// Longest `Retry-After` honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);
/// Characters of a failed answer kept in the log.
const ERROR_EXCERPT: usize = 300;

/// `t=<t>,v1=<hex>`: the signature of `body` sent at `t` with `secret`.
pub fn sign(secret: &str, t: i64, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let mut ctx = ring::hmac::Context::with_key(&key);
    ctx.update(t.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    let tag = ctx.sign();
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("t={t},v1={hex}")
}

/// Webhook endpoint settings.
#[derive(Debug, Clone, Copy)]
pub struct WebhookConfig {
    /// Let endpoints be loopback or private addresses (local development only).
    pub allow_private: bool,
    /// Failed attempts in a row after which an endpoint is disabled.
    pub disable_after: i32,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            allow_private: false,
            disable_after: 20,
        }
    }
}

fn store_error(e: pysaas_brokers::StoreError) -> HandlerError {
    HandlerError::retry(format!("webhook store: {e}"))
}

/// Runs `notification.webhook_event`.
#[derive(Debug, Clone, Copy, Default)]
pub struct WebhookEventHandler;

#[async_trait]
impl JobHandler<WebhookEvent> for WebhookEventHandler {
    async fn handle(
        &self,
        ctx: &JobContext,
        event: WebhookEvent,
    ) -> Result<Option<Value>, HandlerError> {
        // The event's id is the job's: a retried fan-out finds its deliveries made.
        let body = json!({
            "id": ctx.id,
            "type": event.event_type,
            "created_at": chrono::Utc::now(),
            "data": event.data,
        });
        let jobs = ctx
            .store()?
            .fan_out(&ctx.tenant_id, ctx.id, &event.event_type, &body)
            .await
            .map_err(store_error)?;
        Ok(Some(json!({ "deliveries": jobs.len() })))
    }
}

/// Runs `notification.webhook_delivery`.
#[derive(Debug, Clone)]
pub struct WebhookDeliveryHandler {
    client: reqwest::Client,
    config: WebhookConfig,
}

impl WebhookDeliveryHandler {
    /// A handler with `config`'s address policy.
    pub fn new(config: WebhookConfig) -> Self {
        WebhookDeliveryHandler {
            client: crate::handlers::egress::client(config.allow_private),
            config,
        }
    }
}

/// Why a delivery to a non-public address literal is not sent.
const REFUSED: &str = "endpoint URL points to a non-public address; refused";

#[async_trait]
impl JobHandler<WebhookDelivery> for WebhookDeliveryHandler {
    async fn handle(
        &self,
        ctx: &JobContext,
        job: WebhookDelivery,
    ) -> Result<Option<Value>, HandlerError> {
        let store = ctx.store()?;
        let Some((delivery, endpoint)) = store
            .delivery_target(job.delivery_id)
            .await
            .map_err(store_error)?
        else {
            return Err(HandlerError::cancel("the endpoint was deleted"));
        };
        if delivery.status == DeliveryStatus::Succeeded {
            return Ok(Some(json!({ "delivered_before": true })));
        }
        if !endpoint.enabled {
            return Err(HandlerError::cancel(format!(
                "endpoint {} is disabled: {}",
                endpoint.id,
                endpoint
                    .disabled_reason
                    .as_deref()
                    .unwrap_or("by its tenant")
            )));
        }
        let body = serde_json::to_vec(&delivery.payload)
            .map_err(|e| HandlerError::fail(format!("delivery body: {e}")))?;
        let t = chrono::Utc::now().timestamp();
        let url = reqwest::Url::parse(&endpoint.url)
            .map_err(|e| HandlerError::fail(format!("endpoint URL: {e}")))?;
        // The SSRF guard: an address literal is refused here (a name, by the client's resolver),
        // and the refusal is the delivery's last attempt, in its log.
        let refused = !self.config.allow_private && crate::handlers::egress::private_literal(&url);
        let started = Instant::now();
        let sent = if refused {
            None
        } else {
            let mut request = self
                .client
                .post(url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header(SIGNATURE_HEADER, sign(&endpoint.secret, t, &body))
                .header("PySaaS-Event-Id", delivery.event_id.to_string())
                .header("PySaaS-Event-Type", delivery.event_type.as_str())
                .header("PySaaS-Delivery-Id", delivery.id.to_string());
            if let Some(traceparent) = &ctx.trace_context {
                request = request.header("traceparent", traceparent);
            }
            Some(request.body(body).send().await)
        };
        let latency_ms = i32::try_from(started.elapsed().as_millis()).unwrap_or(i32::MAX);
        // A name resolving to no public address is refused by the client's resolver: as final.
        let refused = refused
            || matches!(&sent, Some(Err(e)) if crate::handlers::egress::refusal(e).is_some());
        let last = refused || ctx.attempt >= ctx.max_attempts;
        let (code, error, retry_after) = match sent {
            None => (None, Some(REFUSED.to_owned()), None),
            Some(Err(e)) if refused => (
                None,
                crate::handlers::egress::refusal(&e).map(|why| format!("request refused: {why}")),
                None,
            ),
            Some(Ok(response)) if response.status().is_success() => {
                (Some(i32::from(response.status().as_u16())), None, None)
            }
            Some(Ok(response)) => {
                let status = response.status().as_u16();
                let retry_after = response
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs)
                    .filter(|d| *d <= MAX_RETRY_AFTER);
                let text = response.text().await.unwrap_or_default();
                let excerpt: String = text.chars().take(ERROR_EXCERPT).collect();
                (
                    Some(i32::from(status)),
                    Some(format!("HTTP {status}: {excerpt}")),
                    retry_after,
                )
            }
            Some(Err(e)) => (None, Some(format!("request failed: {e}")), None),
        };
        let recorded = store
            .record_attempt(
                delivery.id,
                &Attempt {
                    response_code: code,
                    latency_ms,
                    error: error.clone(),
                    last,
                },
                self.config.disable_after,
            )
            .await
            .map_err(store_error)?;
        if let Some(recorded) = &recorded {
            if recorded.disabled_now {
                tell_admins(
                    ctx,
                    &recorded.endpoint.url,
                    recorded.endpoint.consecutive_failures,
                )
                .await;
            }
        }
        match error {
            None => Ok(Some(json!({ "status": code, "latency_ms": latency_ms }))),
            Some(message) if refused => Err(HandlerError::fail(message)),
            Some(message) => Err(match retry_after {
                Some(after) => HandlerError::retry_after(message, after),
                None => HandlerError::retry(message),
            }),
        }
    }
}

/// Tells the tenant's owners and admins that an endpoint was disabled, by email and in the
/// dashboard's inbox (keyed per endpoint and count, so a repeated attempt sends nothing
/// twice). Best effort: a failure is logged.
async fn tell_admins(ctx: &JobContext, url: &str, failures: i32) {
    let Ok(store) = ctx.store() else { return };
    let members = match store.members(&ctx.tenant_id).await {
        Ok(m) => m,
        Err(err) => {
            tracing::warn!(error = %err, "cannot list the tenant's admins to tell of a disabled endpoint");
            return;
        }
    };
    let body = format!(
        "Deliveries to {url} failed {failures} times in a row, so the endpoint was disabled. Fix \
         it and enable it again; deliveries made meanwhile can be replayed from the delivery log."
    );
    let mut jobs: Vec<NewJob> = members
        .iter()
        .filter(|m| matches!(m.role.as_str(), "owner" | "admin"))
        .filter_map(|m| {
            let email = Email {
                to: m.email.clone(),
                template: EmailTemplate::Notice,
                data: serde_json::Map::from_iter([
                    (
                        "subject".to_owned(),
                        json!("A webhook endpoint was disabled"),
                    ),
                    ("body".to_owned(), json!(body)),
                ]),
            };
            let mut job = NewJob::of(ctx.tenant_id.clone(), &email).ok()?;
            job.idempotency_key = Some(format!(
                "webhook-disabled-{}-{}-{}",
                ctx.id, m.user_id, failures
            ));
            Some(job)
        })
        .collect();
    let notice = InApp {
        user_id: None,
        category: Category::Alerts,
        title: "A webhook endpoint was disabled".to_owned(),
        body: body
            .chars()
            .take(pysaas_jobs::kinds::notification::IN_APP_BODY_MAX)
            .collect(),
        link: None,
    };
    if let Ok(mut job) = NewJob::of(ctx.tenant_id.clone(), &notice) {
        job.idempotency_key = Some(format!("webhook-disabled-in-app-{}-{failures}", ctx.id));
        jobs.push(job);
    }
    if let Err(err) = store.insert(jobs).await {
        tracing::warn!(error = %err, "cannot enqueue the disabled-endpoint notices");
    }
}
