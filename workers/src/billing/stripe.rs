//! A client for the subset of Stripe's PaymentIntents API that billing uses: create-and-confirm
//! a PaymentIntent (form-encoded, `Idempotency-Key`), read one back. Pointed at
//! `https://api.stripe.com` with a test-mode secret key it charges Stripe's test cards; pointed at
//! PySaaS's local provider (`pysaas payments-sim`) it needs no network.

use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;

use super::provider::{Captured, ChargeRequest, PaymentProvider, ProviderError};

/// Longest `Retry-After` honoured; a longer one falls back to the job's own backoff.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// Stripe's PaymentIntents API (or a server that speaks its subset).
#[derive(Clone)]
pub struct StripeProvider {
    name: String,
    base: reqwest::Url,
    secret_key: String,
    client: reqwest::Client,
}

impl std::fmt::Debug for StripeProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret key is never printed.
        f.debug_struct("StripeProvider")
            .field("name", &self.name)
            .field("base", &self.base.as_str())
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Deserialize)]
struct Intent {
    id: String,
    status: String,
    #[serde(default)]
    last_payment_error: Option<ApiError>,
}

#[derive(Debug, Deserialize)]
struct ErrorBody {
    error: ApiError,
}

#[derive(Debug, Deserialize)]
struct ApiError {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    decline_code: Option<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    payment_intent: Option<Box<Intent>>,
}

impl StripeProvider {
    /// A client of the API at `base` (`https://api.stripe.com`), authenticated with
    /// `secret_key`, giving up on a request after `timeout`; payments record `name`.
    pub fn new(
        name: impl Into<String>,
        base: &str,
        secret_key: impl Into<String>,
        timeout: Duration,
    ) -> Result<Self, String> {
        let base =
            reqwest::Url::parse(base).map_err(|e| format!("payment provider URL `{base}`: {e}"))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(format!("payment provider URL `{base}` is not http(s)"));
        }
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .build()
            .map_err(|e| format!("payment provider client: {e}"))?;
        Ok(StripeProvider {
            name: name.into(),
            base,
            secret_key: secret_key.into(),
            client,
        })
    }

    fn url(&self, path: &str) -> Result<reqwest::Url, ProviderError> {
        self.base
            .join(path)
            .map_err(|e| ProviderError::Rejected(format!("bad provider URL: {e}")))
    }

    /// Reads a PaymentIntent back (one still `processing` when created).
    async fn retrieve(&self, id: &str) -> Result<Intent, ProviderError> {
        let response = self
            .client
            .get(self.url(&format!("v1/payment_intents/{id}"))?)
            .bearer_auth(&self.secret_key)
            .send()
            .await
            .map_err(unavailable)?;
        read(response).await
    }
}

fn unavailable(e: reqwest::Error) -> ProviderError {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    ProviderError::Unavailable {
        message: format!("{what}: {e}"),
        retry_after: None,
    }
}

fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    response
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
        .filter(|d| *d <= MAX_RETRY_AFTER)
}

/// An answer as an intent, or the error it stands for.
async fn read(response: reqwest::Response) -> Result<Intent, ProviderError> {
    let status = response.status();
    let wait = retry_after(&response);
    let body = response.bytes().await.map_err(unavailable)?;
    if status.is_success() {
        return serde_json::from_slice(&body).map_err(|e| ProviderError::Unavailable {
            message: format!("unreadable answer (HTTP {status}): {e}"),
            retry_after: None,
        });
    }
    let error = serde_json::from_slice::<ErrorBody>(&body)
        .ok()
        .map(|b| b.error);
    let message = error
        .as_ref()
        .and_then(|e| e.message.clone())
        .unwrap_or_else(|| format!("HTTP {}", status.as_u16()));
    if status.as_u16() == 429 || status.is_server_error() {
        return Err(ProviderError::Unavailable {
            message: format!("HTTP {}: {message}", status.as_u16()),
            retry_after: wait,
        });
    }
    match error {
        // A card error (402) or an invalid request about this payment (400, e.g. a payment
        // method that does not exist): this attempt is over.
        Some(e)
            if e.kind == "card_error"
                || (status.as_u16() == 400 && e.kind == "invalid_request_error") =>
        {
            Err(ProviderError::Declined {
                payment_intent: e.payment_intent.map(|i| i.id),
                code: e.decline_code.or(e.code).unwrap_or_else(|| e.kind.clone()),
                message,
            })
        }
        Some(e) => Err(ProviderError::Rejected(format!(
            "HTTP {} {}: {message}",
            status.as_u16(),
            e.kind
        ))),
        None => Err(ProviderError::Rejected(format!(
            "HTTP {}: {message}",
            status.as_u16()
        ))),
    }
}

/// What an intent's status means for the charge.
fn settle(intent: Intent) -> Result<Captured, ProviderError> {
    match intent.status.as_str() {
        "succeeded" => Ok(Captured { id: intent.id }),
        "processing" => Err(ProviderError::Unavailable {
            message: format!("payment {} is still processing", intent.id),
            retry_after: Some(Duration::from_secs(5)),
        }),
        "requires_action" => Err(ProviderError::Declined {
            payment_intent: Some(intent.id),
            code: "authentication_required".into(),
            message: "the payment method needs the customer to authenticate".into(),
        }),
        other => {
            let (code, message) = intent
                .last_payment_error
                .map(|e| {
                    (
                        e.decline_code.or(e.code).unwrap_or(e.kind),
                        e.message.unwrap_or_default(),
                    )
                })
                .unwrap_or_else(|| (other.to_owned(), format!("payment is `{other}`")));
            Err(ProviderError::Declined {
                payment_intent: Some(intent.id),
                code,
                message,
            })
        }
    }
}

#[async_trait]
impl PaymentProvider for StripeProvider {
    fn name(&self) -> &str {
        &self.name
    }

    async fn charge(&self, request: &ChargeRequest<'_>) -> Result<Captured, ProviderError> {
        let invoice = request.invoice_id.to_string();
        let form = [
            ("amount", request.amount_minor.to_string()),
            ("currency", request.currency.to_ascii_lowercase()),
            ("payment_method", request.payment_method.to_owned()),
            ("payment_method_types[]", "card".to_owned()),
            ("confirm", "true".to_owned()),
            ("description", request.description.to_owned()),
            ("metadata[invoice_id]", invoice),
            ("metadata[tenant_id]", request.tenant_id.to_owned()),
        ];
        let response = self
            .client
            .post(self.url("v1/payment_intents")?)
            .bearer_auth(&self.secret_key)
            .header("Idempotency-Key", request.idempotency_key)
            .form(&form)
            .send()
            .await
            .map_err(unavailable)?;
        let intent = read(response).await?;
        if intent.status == "processing" {
            // The replay of a key answers the first response again: ask for the intent as it is.
            return settle(self.retrieve(&intent.id).await?);
        }
        settle(intent)
    }
}
