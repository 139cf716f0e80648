//! Notification kinds.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::JobKind;

/// POSTs `body` as JSON to `url`; a non-2xx answer or a network error is retried.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Webhook {
    /// Absolute `http` or `https` URL. The schema's pattern is the plain-host subset a form or
    /// generated client can build safely; any URL with an http(s) scheme and a host is accepted.
    #[schemars(regex(
        pattern = r"^https?://([a-z0-9-]+\.)*[a-z][a-z0-9-]*(:[1-9][0-9]{0,3})?(/[A-Za-z0-9._~-]*)*$"
    ))]
    pub url: String,
    /// JSON body to send.
    pub body: Value,
}

impl JobKind for Webhook {
    const KIND: &'static str = "notification.webhook";
    const QUEUE: &'static str = "notifications";

    fn timeout() -> Duration {
        Duration::from_secs(30)
    }

    fn check(&self) -> Result<(), (String, String)> {
        match url::Url::parse(&self.url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(()),
            Ok(u) => Err((
                "url".into(),
                format!("must be an http or https URL (got scheme `{}`)", u.scheme()),
            )),
            Err(e) => Err((
                "url".into(),
                format!("must be an absolute http or https URL ({e})"),
            )),
        }
    }
}

/// Whether `s` is a plain email address (`ada@example.com`: no display name, no spaces).
pub fn valid_email_address(s: &str) -> bool {
    s.trim() == s && !s.contains(['<', '>', ' ']) && email_address::EmailAddress::is_valid(s)
}

/// Largest `data` an email job may carry, as JSON.
pub const EMAIL_DATA_MAX_BYTES: usize = 16 * 1024;

/// The templates `notification.email` renders (text and HTML parts and a subject each).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EmailTemplate {
    /// Welcome to a plan (`plan`, optional `name`).
    Welcome,
    /// A paid invoice (`invoice_number`, `total`).
    Receipt,
    /// A declined charge (`invoice_number`, `total`, optional `next_attempt_at`).
    PaymentFailed,
    /// A subscription ended (`plan`, optional `reason`).
    SubscriptionCancelled,
    /// Any message (`subject`, `body`).
    Notice,
}

impl EmailTemplate {
    /// The template's name (`welcome`).
    pub fn as_str(self) -> &'static str {
        match self {
            EmailTemplate::Welcome => "welcome",
            EmailTemplate::Receipt => "receipt",
            EmailTemplate::PaymentFailed => "payment_failed",
            EmailTemplate::SubscriptionCancelled => "subscription_cancelled",
            EmailTemplate::Notice => "notice",
        }
    }
}

/// Sends an email rendered from a template over SMTP, from the tenant's sender. A temporary
/// refusal (4xx) or an unreachable server is retried; a permanent one (5xx) is final.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Email {
    /// Recipient address (`ada@example.com`).
    #[schemars(email)]
    pub to: String,
    /// What to render.
    pub template: EmailTemplate,
    /// Values the template reads (at most 16 KiB as JSON).
    #[serde(default)]
    pub data: serde_json::Map<String, Value>,
}

impl JobKind for Email {
    const KIND: &'static str = "notification.email";
    const QUEUE: &'static str = "notifications";

    fn timeout() -> Duration {
        Duration::from_secs(60)
    }

    fn retry_policy() -> crate::RetryPolicy {
        // Mail servers ask to come back later in minutes (greylisting), not seconds.
        crate::RetryPolicy {
            max_attempts: 12,
            backoff_base: Duration::from_secs(10),
            backoff_max: Duration::from_secs(3600),
            ..crate::RetryPolicy::default()
        }
    }

    fn check(&self) -> Result<(), (String, String)> {
        if !valid_email_address(&self.to) {
            return Err((
                "to".into(),
                format!("`{}` is not an email address like ada@example.com", self.to),
            ));
        }
        let size = serde_json::to_vec(&self.data).map_or(usize::MAX, |v| v.len());
        if size > EMAIL_DATA_MAX_BYTES {
            return Err((
                "data".into(),
                format!("is {size} bytes as JSON; at most {EMAIL_DATA_MAX_BYTES}"),
            ));
        }
        Ok(())
    }
}
