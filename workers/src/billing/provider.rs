//! The payment provider behind billing's charges.

use std::time::Duration;

use async_trait::async_trait;
use uuid::Uuid;

/// One charge to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargeRequest<'a> {
    /// Amount in minor units (positive).
    pub amount_minor: i64,
    /// ISO 4217 code.
    pub currency: &'a str,
    /// The provider's payment method (`pm_…`).
    pub payment_method: &'a str,
    /// The same key for every request of one attempt: the provider charges once per key.
    pub idempotency_key: &'a str,
    /// The invoice charged (sent as metadata).
    pub invoice_id: Uuid,
    /// The invoice's tenant (sent as metadata).
    pub tenant_id: &'a str,
    /// Shown on the provider's dashboard.
    pub description: &'a str,
}

/// A captured charge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Captured {
    /// The provider's id (`pi_…`).
    pub id: String,
}

/// Why a charge did not capture.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// Declined or refused for good: this attempt is over (dunning tries again later, with a
    /// new attempt).
    #[error("declined ({code}): {message}")]
    Declined {
        /// The provider's id, if it created one.
        payment_intent: Option<String>,
        /// `card_declined`, `insufficient_funds`, `authentication_required`, …
        code: String,
        /// The provider's message.
        message: String,
    },
    /// No answer, or an answer that says "later" (timeout, connection lost, 429, 5xx): whether
    /// it captured is unknown, so the same attempt is sent again, under the same key.
    #[error("provider unavailable: {message}")]
    Unavailable {
        /// What happened.
        message: String,
        /// How long the provider asked to wait.
        retry_after: Option<Duration>,
    },
    /// The request itself is wrong (bad credentials, an idempotency key reused with other
    /// parameters): sending it again cannot help until someone fixes it.
    #[error("provider refused the request: {0}")]
    Rejected(String),
}

/// A payment provider.
#[async_trait]
pub trait PaymentProvider: Send + Sync + std::fmt::Debug + 'static {
    /// Stored with each payment (`stripe`, `local`).
    fn name(&self) -> &str;

    /// Charges once per idempotency key: a request repeated with the same key answers what the
    /// first did and never captures again.
    async fn charge(&self, request: &ChargeRequest<'_>) -> Result<Captured, ProviderError>;
}
